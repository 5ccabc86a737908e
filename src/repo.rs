//! An opened repository: master key, config, blob index and snapshot access.
//!
//! Opening reads only; nothing here changes the repository except the
//! explicit `init`, `save_*` and key operations, so a wrong password or a
//! damaged file leaves the repository exactly as it was.

use crate::backend::{CONFIG, FileKind, LocalBackend};
use crate::blob::{self, BlobType};
use crate::chunker::{Chunker, ChunkerParams, DatabaseChunking};
use crate::config::Config;
use crate::crypto::{KdfParams, MasterKey};
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::{BlobSet, Index, IndexFile, IndexPack};

/// Most blobs listed in one index file written by prune or repair, so that
/// decoding any single index file needs little memory.
pub const INDEX_FILE_BLOBS: usize = 50_000;
use crate::keyfile::KeyFile;
use crate::snapshot::{Snapshot, SnapshotFilter};
use crate::tree::{Node, Tree};
use std::collections::HashMap;
use std::fs::File;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Settings for a new repository.
#[derive(Clone, Debug)]
pub struct InitOptions {
    /// Chunk size limits.
    pub chunker: ChunkerParams,
    /// zstd level.
    pub compression_level: i32,
    /// Target pack size.
    pub pack_size: u32,
    /// Argon2id parameters of the first key file.
    pub kdf: KdfParams,
    /// How database files are chunked.
    pub database_chunking: DatabaseChunking,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::DEFAULT,
            compression_level: 3,
            pack_size: Config::DEFAULT_PACK_SIZE,
            kdf: KdfParams::DEFAULT,
            database_chunking: DatabaseChunking::DEFAULT,
        }
    }
}

/// Blobs stored back to back in one pack ([`Repository::blob_runs`]).
#[derive(Clone, Debug)]
pub struct BlobRun {
    /// The pack.
    pub pack: Id,
    /// Offset of the first blob in the pack.
    pub offset: u64,
    /// Encoded bytes of all blobs together.
    pub length: u64,
    /// The blobs, in order.
    pub blobs: Vec<RunBlob>,
}

/// One blob of a [`BlobRun`].
#[derive(Clone, Copy, Debug)]
pub struct RunBlob {
    /// Blob id.
    pub id: Id,
    /// Offset in the pack.
    pub offset: u64,
    /// Encoded length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Blob type (per the index).
    pub kind: BlobType,
}

/// An open repository.
pub struct Repository {
    /// Storage.
    pub backend: LocalBackend,
    /// Secrets.
    pub key: MasterKey,
    /// Settings.
    pub config: Config,
    /// Chunker built from config and key.
    pub chunker: Chunker,
    /// Blob index (empty until [`Repository::load_index`]).
    pub index: Index,
    /// Data blobs known by id only ([`Repository::load_index_for_backup`]).
    pub data_blobs: BlobSet,
    /// The key file that was used to open.
    pub key_id: Id,
    handles: Mutex<HashMap<Id, Arc<File>>>,
}

/// Host name of this machine.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: buf is valid for buf.len() bytes; gethostname NUL-terminates on success.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".into();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Name of the current user (from the environment, else the uid).
pub fn username() -> String {
    std::env::var("USER")
        .or_else(|_| std::env::var("LOGNAME"))
        .unwrap_or_else(|_| {
            // SAFETY: getuid has no preconditions.
            unsafe { libc::getuid() }.to_string()
        })
}

impl Repository {
    /// Creates a new repository at `path`.
    pub fn init(path: &Path, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        let backend = LocalBackend::new(path);
        if backend.exists_rel(CONFIG) {
            return Err(Error::AlreadyExists(format!(
                "{}: a repository already exists here; refusing to overwrite it",
                path.display()
            )));
        }
        if path.exists() {
            let non_empty = std::fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .next()
                .is_some();
            if non_empty {
                return Err(Error::AlreadyExists(format!(
                    "{}: directory is not empty; refusing to create a repository in it",
                    path.display()
                )));
            }
        }
        let key = MasterKey::generate()?;
        let mut config = Config::new(opts.chunker, opts.compression_level, opts.pack_size)?;
        config.database_chunking = Some(opts.database_chunking);
        config.validate().map_err(Error::InvalidInput)?;
        let chunker = Chunker::new(config.chunker, &key.chunker).map_err(Error::InvalidInput)?;
        backend.create_layout()?;
        let kf = KeyFile::create(&key, password, opts.kdf, &hostname(), &username())?;
        let kbytes = kf.encode()?;
        let key_id = Id::of_file(&kbytes);
        backend.write(FileKind::Key, &key_id, &kbytes)?;
        // The config goes last: its presence is what makes this a repository.
        backend.write_atomic(CONFIG, &config.encode(&key)?)?;
        Ok(Repository::assemble(backend, key, config, chunker, key_id))
    }

    /// An opened repository with nothing loaded yet.
    fn assemble(
        backend: LocalBackend,
        key: MasterKey,
        config: Config,
        chunker: Chunker,
        key_id: Id,
    ) -> Repository {
        Repository {
            backend,
            key,
            config,
            chunker,
            index: Index::new(),
            data_blobs: BlobSet::default(),
            key_id,
            handles: Mutex::new(HashMap::new()),
        }
    }

    /// Opens the repository at `path` with `password`.
    pub fn open(path: &Path, password: &[u8]) -> Result<Repository> {
        let backend = LocalBackend::new(path);
        if !backend.exists_rel(CONFIG) {
            return Err(Error::NotARepository(path.to_path_buf()));
        }
        let keys = backend.list(FileKind::Key)?;
        if keys.is_empty() {
            return Err(Error::corrupt("keys/", "repository has no key files"));
        }
        let mut found = None;
        let mut first_err = None;
        for kid in keys {
            let what = LocalBackend::rel_path(FileKind::Key, &kid);
            let parsed = backend.read(FileKind::Key, &kid).and_then(|b| {
                check_file_name(&kid, &b, &what)?;
                KeyFile::decode(&b, &what)
            });
            match parsed.and_then(|kf| kf.unwrap_key(password, &what)) {
                Ok(Some(k)) => {
                    found = Some((kid, k));
                    break;
                }
                Ok(None) => {}
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        let Some((key_id, key)) = found else {
            return Err(first_err.unwrap_or(Error::WrongPassword));
        };
        let config = Config::decode(&key, &backend.read_rel(CONFIG)?)?;
        let chunker =
            Chunker::new(config.chunker, &key.chunker).map_err(|p| Error::corrupt("config", p))?;
        Ok(Repository::assemble(backend, key, config, chunker, key_id))
    }

    /// Loads every live index file into memory.
    pub fn load_index(&mut self) -> Result<()> {
        let mut index = Index::new();
        for (_, f) in self.live_index_files()? {
            for p in &f.packs {
                index.add_pack(p.id, &p.blobs);
            }
        }
        self.index = index;
        Ok(())
    }

    /// Reads and decodes every index file.
    pub fn read_index_files(&self) -> Result<Vec<(Id, IndexFile)>> {
        let mut out = Vec::new();
        for id in self.backend.list(FileKind::Index)? {
            let what = LocalBackend::rel_path(FileKind::Index, &id);
            let bytes = self.backend.read(FileKind::Index, &id)?;
            check_file_name(&id, &bytes, &what)?;
            out.push((id, IndexFile::decode(&self.key, &bytes, &what)?));
        }
        Ok(out)
    }

    /// Loads what a backup needs, in bounded memory: locations of tree blobs
    /// (to read the parent snapshot) and a compact set of data blob ids (to
    /// deduplicate). Index files are decoded one at a time.
    pub fn load_index_for_backup(&mut self) -> Result<()> {
        let ids = self.backend.list(FileKind::Index)?;
        let mut bytes_total = 0u64;
        for id in &ids {
            bytes_total += self.backend.size(FileKind::Index, id)?;
        }
        // Superseded files exist only after an interrupted prune or repair:
        // decode everything once, and only in that rare case a second time.
        let mut skip = std::collections::HashSet::new();
        loop {
            // An encoded entry takes at least ~45 bytes; reserve once, no regrowth.
            let mut set = BlobSet::with_capacity((bytes_total / 45) as usize + 16);
            let mut index = Index::new();
            let mut superseded = std::collections::HashSet::new();
            for id in ids.iter().filter(|id| !skip.contains(*id)) {
                let what = LocalBackend::rel_path(FileKind::Index, id);
                let bytes = self.backend.read(FileKind::Index, id)?;
                check_file_name(id, &bytes, &what)?;
                let f = IndexFile::decode(&self.key, &bytes, &what)?;
                superseded.extend(f.supersedes.iter().copied());
                for p in &f.packs {
                    let trees: Vec<_> = p
                        .blobs
                        .iter()
                        .filter(|e| e.kind == BlobType::Tree)
                        .copied()
                        .collect();
                    if !trees.is_empty() {
                        index.add_pack(p.id, &trees);
                    }
                    for e in p.blobs.iter().filter(|e| e.kind == BlobType::Data) {
                        set.push(&e.id);
                    }
                }
            }
            if ids
                .iter()
                .any(|id| superseded.contains(id) && !skip.contains(id))
            {
                skip = superseded;
                continue;
            }
            set.seal();
            self.index = index;
            self.data_blobs = set;
            return Ok(());
        }
    }

    /// Adds the locations of the data blobs in `wanted` to the index (a
    /// backup's index holds tree blobs only); returns how many were found.
    /// Index files are decoded one at a time, so memory follows `wanted`,
    /// not the repository's size.
    pub fn load_data_locations(&mut self, wanted: &std::collections::HashSet<Id>) -> Result<usize> {
        let mut superseded = std::collections::HashSet::new();
        let mut found: Vec<(Id, IndexPack)> = Vec::new();
        for id in self.backend.list(FileKind::Index)? {
            let what = LocalBackend::rel_path(FileKind::Index, &id);
            let bytes = self.backend.read(FileKind::Index, &id)?;
            check_file_name(&id, &bytes, &what)?;
            let f = IndexFile::decode(&self.key, &bytes, &what)?;
            superseded.extend(f.supersedes.iter().copied());
            for p in f.packs {
                let blobs: Vec<_> = p
                    .blobs
                    .into_iter()
                    .filter(|e| e.kind == BlobType::Data && wanted.contains(&e.id))
                    .collect();
                if !blobs.is_empty() {
                    found.push((id, IndexPack { id: p.id, blobs }));
                }
            }
        }
        // An index file superseded by an interrupted prune may name packs
        // that prune has deleted since.
        for (_, p) in found.iter().filter(|(f, _)| !superseded.contains(f)) {
            self.index.add_pack(p.id, &p.blobs);
        }
        Ok(wanted.iter().filter(|id| self.index.contains(id)).count())
    }

    /// Whether a blob is stored (in the full index or the backup id set).
    pub fn has_blob(&self, id: &Id) -> bool {
        self.index.contains(id) || self.data_blobs.contains(id)
    }

    /// Index files that no other index file supersedes. A superseded file
    /// is left behind only by an interrupted prune or repair, which had
    /// already written the complete replacement.
    pub fn live_index_files(&self) -> Result<Vec<(Id, IndexFile)>> {
        let all = self.read_index_files()?;
        let superseded: std::collections::HashSet<Id> = all
            .iter()
            .flat_map(|(_, f)| f.supersedes.iter().copied())
            .collect();
        Ok(all
            .into_iter()
            .filter(|(id, _)| !superseded.contains(id))
            .collect())
    }

    /// Writes an index file; returns its id.
    pub fn save_index(&self, f: &IndexFile) -> Result<Id> {
        let bytes = f.encode(&self.key)?;
        let id = Id::of_file(&bytes);
        self.backend.write(FileKind::Index, &id, &bytes)?;
        Ok(id)
    }

    /// Writes index files describing `packs` that together replace the
    /// index files `supersedes`. The packs are spread over files of at most
    /// [`INDEX_FILE_BLOBS`] blobs, written first; a last, pack-less file
    /// carries the `supersedes` list. Until that last file is durable the
    /// old files stay authoritative, so a crash never leaves a pack unlisted.
    /// Returns the ids of all files written.
    pub fn save_index_replacing(
        &self,
        packs: Vec<IndexPack>,
        supersedes: Vec<Id>,
    ) -> Result<Vec<Id>> {
        let mut written = Vec::new();
        let mut batch: Vec<IndexPack> = Vec::new();
        let mut blobs = 0usize;
        for p in packs {
            blobs += p.blobs.len();
            batch.push(p);
            if blobs >= INDEX_FILE_BLOBS {
                written.push(self.save_index(&IndexFile {
                    packs: std::mem::take(&mut batch),
                    supersedes: Vec::new(),
                })?);
                blobs = 0;
            }
        }
        if !batch.is_empty() {
            written.push(self.save_index(&IndexFile {
                packs: batch,
                supersedes: Vec::new(),
            })?);
        }
        if !supersedes.is_empty() {
            written.push(self.save_index(&IndexFile {
                packs: Vec::new(),
                supersedes,
            })?);
        }
        Ok(written)
    }

    /// Reads one snapshot.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let what = LocalBackend::rel_path(FileKind::Snapshot, id);
        let bytes = self.backend.read(FileKind::Snapshot, id)?;
        check_file_name(id, &bytes, &what)?;
        Snapshot::decode(&self.key, &bytes, &what)
    }

    /// Reads every snapshot, oldest first.
    pub fn load_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        for id in self.backend.list(FileKind::Snapshot)? {
            out.push((id, self.load_snapshot(&id)?));
        }
        out.sort_by_key(|a| (a.1.time, a.1.time_nsec, a.0));
        Ok(out)
    }

    /// Writes a snapshot; returns its id.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<Id> {
        let bytes = s.encode(&self.key)?;
        let id = Id::of_file(&bytes);
        self.backend.write(FileKind::Snapshot, &id, &bytes)?;
        Ok(id)
    }

    /// Resolves a snapshot selector: `latest`, or a unique id prefix,
    /// among snapshots passing `filter`.
    pub fn find_snapshot(&self, selector: &str, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        let all = self.load_snapshots()?;
        let mut cands: Vec<_> = all.into_iter().filter(|(_, s)| filter.matches(s)).collect();
        if selector == "latest" {
            return cands
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound(selector.into()));
        }
        let lower = selector.to_ascii_lowercase();
        if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(Error::InvalidInput(format!(
                "{selector:?} is not a snapshot id (hex digits) or \"latest\""
            )));
        }
        cands.retain(|(id, _)| id.to_hex().starts_with(&lower));
        match cands.len() {
            0 => Err(Error::SnapshotNotFound(selector.into())),
            1 => Ok(cands.remove(0)),
            n => Err(Error::AmbiguousSnapshot(selector.into(), n)),
        }
    }

    /// The newest snapshot at or before `time` (Unix seconds, nanoseconds)
    /// passing `filter`.
    pub fn find_snapshot_at(
        &self,
        time: (i64, u32),
        filter: &SnapshotFilter,
    ) -> Result<(Id, Snapshot)> {
        self.load_snapshots()?
            .into_iter()
            .rfind(|(_, s)| filter.matches(s) && (s.time, s.time_nsec) <= time)
            .ok_or_else(|| {
                let when = chrono::DateTime::from_timestamp(time.0, time.1)
                    .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
                    .unwrap_or_default();
                Error::SnapshotNotFound(format!("at or before {when}"))
            })
    }

    fn pack_handle(&self, pack: &Id) -> Result<Arc<File>> {
        let mut h = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = h.get(pack) {
            return Ok(f.clone());
        }
        if h.len() >= 128 {
            h.clear();
        }
        let f = Arc::new(self.backend.open(FileKind::Pack, pack)?);
        h.insert(*pack, f.clone());
        Ok(f)
    }

    /// Reads, authenticates and returns a blob's plaintext (reading a delta
    /// blob's base too).
    pub fn read_blob(&self, kind: BlobType, id: &Id) -> Result<Vec<u8>> {
        self.read_blob_with(kind, id, &|base| self.read_base(base))
    }

    /// Groups the data blobs `ids` (a file's content, in order) into runs
    /// stored back to back in one pack, each at most `max_bytes` long, so
    /// that a restore reads a run with one request instead of one per blob
    /// (a database cut at its pages has one blob per 4 KiB).
    pub fn blob_runs(&self, ids: &[Id], max_bytes: u64) -> Result<Vec<BlobRun>> {
        let mut runs: Vec<BlobRun> = Vec::new();
        for id in ids {
            let (pack, loc) = self.index.get(id).ok_or_else(|| {
                Error::corrupt(
                    "index",
                    format!("data blob {} is not in the index", id.short()),
                )
            })?;
            let blob = RunBlob {
                id: *id,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
                kind: loc.kind,
            };
            match runs.last_mut() {
                Some(r)
                    if r.pack == pack
                        && r.offset + r.length == loc.offset
                        && r.length + u64::from(loc.length) <= max_bytes =>
                {
                    r.length += u64::from(loc.length);
                    r.blobs.push(blob);
                }
                _ => runs.push(BlobRun {
                    pack,
                    offset: loc.offset,
                    length: u64::from(loc.length),
                    blobs: vec![blob],
                }),
            }
        }
        Ok(runs)
    }

    /// Reads a run of data blobs with one request; returns their plaintexts
    /// in order (each authenticated and checked like [`Repository::read_blob`]).
    pub fn read_run(&self, run: &BlobRun) -> Result<Vec<Vec<u8>>> {
        let what = LocalBackend::rel_path(FileKind::Pack, &run.pack);
        let file = self.pack_handle(&run.pack)?;
        let len =
            usize::try_from(run.length).map_err(|_| Error::corrupt(&what, "blob run too long"))?;
        let bytes = LocalBackend::read_at(&file, run.offset, len, &what)?;
        let mut out = Vec::with_capacity(run.blobs.len());
        for b in &run.blobs {
            if b.kind != BlobType::Data {
                return Err(Error::corrupt(
                    "index",
                    format!(
                        "blob {} is a {} blob, expected data",
                        b.id.short(),
                        b.kind.name()
                    ),
                ));
            }
            let start = (b.offset - run.offset) as usize;
            let sealed = &bytes[start..start + b.length as usize];
            let plain = blob::decode(&self.key, BlobType::Data, &b.id, sealed, &what, &|base| {
                self.read_base(base)
            })?;
            // Restore places blobs by the index's lengths.
            if plain.len() != b.raw_length as usize {
                return Err(Error::corrupt(
                    &what,
                    format!(
                        "blob {} holds {} bytes, the index says {}",
                        b.id.short(),
                        plain.len(),
                        b.raw_length
                    ),
                ));
            }
            out.push(plain);
        }
        Ok(out)
    }

    /// Reads a delta blob's base: a data blob that is not itself a delta.
    pub fn read_base(&self, base: &Id) -> Result<Vec<u8>> {
        self.read_blob_with(BlobType::Data, base, &blob::no_base)
    }

    fn read_blob_with(&self, kind: BlobType, id: &Id, base: blob::BaseLookup) -> Result<Vec<u8>> {
        let (pack, loc) = self.index.get(id).ok_or_else(|| {
            Error::corrupt(
                "index",
                format!(
                    "{} blob {} is not in the index (missing pack?)",
                    kind.name(),
                    id.short()
                ),
            )
        })?;
        if loc.kind != kind {
            return Err(Error::corrupt(
                "index",
                format!(
                    "blob {} is a {} blob, expected {}",
                    id.short(),
                    loc.kind.name(),
                    kind.name()
                ),
            ));
        }
        let what = LocalBackend::rel_path(FileKind::Pack, &pack);
        let file = self.pack_handle(&pack)?;
        let sealed = LocalBackend::read_at(&file, loc.offset, loc.length as usize, &what)?;
        blob::decode(&self.key, kind, id, &sealed, &what, base)
    }

    /// A directory node's listing: its inline tree, or its tree blob.
    pub fn listing<'n>(&self, node: &'n Node) -> Result<std::borrow::Cow<'n, Tree>> {
        match (&node.inline, &node.subtree) {
            (Some(t), _) => Ok(std::borrow::Cow::Borrowed(t)),
            (None, Some(id)) => Ok(std::borrow::Cow::Owned(self.load_tree(id)?)),
            (None, None) => Err(Error::corrupt(
                "tree",
                format!("{} has no directory listing", node.display_name()),
            )),
        }
    }

    /// Reads and decodes a tree blob.
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        Tree::decode(&bytes, &format!("tree {}", id.short()))
    }

    /// Adds a key file wrapping this repository's master key under `password`.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        let kf = KeyFile::create(&self.key, password, kdf, &hostname(), &username())?;
        let bytes = kf.encode()?;
        let id = Id::of_file(&bytes);
        self.backend.write(FileKind::Key, &id, &bytes)?;
        Ok(id)
    }
}

/// Checks that a content-addressed file's bytes hash to its name.
pub fn check_file_name(id: &Id, bytes: &[u8], what: &str) -> Result<()> {
    if Id::of_file(bytes) != *id {
        return Err(Error::corrupt(
            what,
            "content does not match its name (damaged or truncated)",
        ));
    }
    Ok(())
}
