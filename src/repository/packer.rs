//! Saving blobs: deduplicate, encode, fill packs, store them in the background.
//!
//! Many threads call [`Packer::save`] at once. Each blob id is *claimed*
//! first, so a chunk seen twice at the same moment is stored once. Packs are
//! filled in a staging area the backend provides (a temporary file beside
//! the packs for a local folder), and full packs are handed to one writer
//! thread through a queue of bounded depth, which stores them through the
//! backend, so pack uploads overlap with hashing and compression while
//! memory stays bounded.
//! The writer records an index file every [`INDEX_EVERY`] packs and at the
//! end, and [`Packer::finish`] returns only when all packs and index files
//! are durable — the caller writes its snapshot after that, never before.

use super::{Core, Locate, Repository};
use crate::backend::{Backend, FileKind, Handle, Staged};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::crypto::MasterKey;
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack};
use crate::format::pack::{FinishedPackWriter, PackWriter};
use crate::sys::lock;
use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Packs per intermediate index file.
pub const INDEX_EVERY: usize = 32;

/// Counts of what a packer stored.
#[derive(Default, Debug)]
pub struct PackerStats {
    /// Blobs stored.
    pub blobs: AtomicU64,
    /// Plaintext bytes stored.
    pub raw_bytes: AtomicU64,
    /// Encoded bytes stored.
    pub stored_bytes: AtomicU64,
    /// Packs written.
    pub packs: AtomicU64,
}

type Builder = PackWriter<Staged>;
type Finished = FinishedPackWriter<Staged>;

struct Builders {
    data: Option<Builder>,
    tree: Option<Builder>,
}

/// Concurrent blob saver for one repository session.
pub struct Packer<'r> {
    core: &'r Core,
    index: &'r dyn Locate,
    level: i32,
    pack_size: usize,
    claimed: Mutex<HashSet<Id>>,
    builders: Mutex<Builders>,
    tx: Mutex<Option<SyncSender<Finished>>>,
    writer: Mutex<Option<JoinHandle<Result<Vec<IndexPack>>>>>,
    failed: Arc<Mutex<Option<String>>>,
    /// What has been stored so far.
    pub stats: PackerStats,
    /// Bytes of the pack files stored so far.
    file_bytes: Arc<AtomicU64>,
    /// Fill packs in memory instead of the backend's staging area.
    stage_in_memory: bool,
}

impl<'r> Packer<'r> {
    /// A packer writing into `repo`, deduplicating against its loaded index.
    pub fn new<S: Locate>(repo: &'r Repository<S>) -> Packer<'r> {
        Packer::build(repo, true)
    }

    /// A packer for repacking (prune). It writes no index files of its
    /// own: the caller lists the packs [`Packer::finish`] returns in the
    /// index it writes next. Until then they are unindexed, which costs
    /// nothing but the space: a later prune marks them. For a remote store
    /// packs are filled in memory rather than in a temporary file: they are
    /// read back into memory for the upload anyway, and repacking keeps few
    /// packs open at once.
    pub fn for_repack<S: Locate>(repo: &'r Repository<S>) -> Packer<'r> {
        let mut p = Packer::build(repo, false);
        p.stage_in_memory = repo.core.backend.is_remote();
        p
    }

    fn build<S: Locate>(repo: &'r Repository<S>, write_indexes: bool) -> Packer<'r> {
        let core: &Core = &repo.core;
        let pack_size = core.config.pack_size as usize;
        let backend = core.backend.clone();
        let (tx, rx) = sync_channel::<Finished>(2);
        let key = core.key.clone();
        let failed = Arc::new(Mutex::new(None));
        let failed_w = failed.clone();
        let file_bytes = Arc::new(AtomicU64::new(0));
        let file_bytes_w = file_bytes.clone();
        let uploads = backend.write_concurrency().max(1);
        // The writer: `uploads` threads take finished packs from the queue
        // and store them (several at once for a remote store); every
        // INDEX_EVERY stored packs, one of them writes an index file naming
        // only packs already durable.
        let writer = std::thread::spawn(move || -> Result<Vec<IndexPack>> {
            let rx = Mutex::new(rx);
            // (stored but not yet indexed, indexed)
            let state: Mutex<(Vec<IndexPack>, Vec<IndexPack>)> = Mutex::default();
            let first_error: Mutex<Option<Error>> = Mutex::new(None);
            let store = |pack: Finished| -> Result<()> {
                let h = Handle::new(FileKind::Pack, pack.id);
                file_bytes_w.fetch_add(pack.out.len(), Ordering::Relaxed);
                match pack.kind {
                    BlobType::Tree => backend.write_staged_metadata(h, pack.out)?,
                    BlobType::Data => backend.write_staged(h, pack.out)?,
                }
                let batch = {
                    let mut st = lock(&state);
                    st.0.push(IndexPack {
                        id: pack.id,
                        blobs: pack.entries,
                    });
                    (write_indexes && st.0.len() >= INDEX_EVERY).then(|| std::mem::take(&mut st.0))
                };
                if let Some(batch) = batch {
                    write_index(backend.as_ref(), &key, &batch)?;
                    lock(&state).1.extend(batch);
                }
                Ok(())
            };
            std::thread::scope(|s| {
                for _ in 0..uploads {
                    s.spawn(|| {
                        // Keep draining after a failure, so senders never block.
                        while let Ok(pack) = {
                            let rx = lock(&rx);
                            rx.recv()
                        } {
                            if lock(&first_error).is_some() {
                                continue;
                            }
                            if let Err(e) = store(pack) {
                                *lock(&failed_w) = Some(e.to_string());
                                lock(&first_error).get_or_insert(e);
                            }
                        }
                    });
                }
            });
            if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
                return Err(e);
            }
            let (rest, mut all) = state.into_inner().unwrap_or_else(|p| p.into_inner());
            if !write_indexes {
                all.extend(rest);
                return Ok(all);
            }
            if !rest.is_empty() {
                if let Err(e) = write_index(backend.as_ref(), &key, &rest) {
                    *lock(&failed_w) = Some(e.to_string());
                    return Err(e);
                }
                all.extend(rest);
            }
            Ok(all)
        });
        Packer {
            core,
            index: repo.index_state(),
            level: core.config.compression_level,
            pack_size,
            claimed: Mutex::new(HashSet::new()),
            builders: Mutex::new(Builders {
                data: None,
                tree: None,
            }),
            tx: Mutex::new(Some(tx)),
            writer: Mutex::new(Some(writer)),
            failed,
            stats: PackerStats::default(),
            file_bytes,
            stage_in_memory: false,
        }
    }

    /// Whether the blob is already stored or being stored.
    pub fn known(&self, id: &Id) -> bool {
        self.index.knows(id) || lock(&self.claimed).contains(id)
    }

    /// Claims `id` for storing; false if it is already stored or claimed.
    fn claim(&self, id: &Id) -> bool {
        !self.index.knows(id) && lock(&self.claimed).insert(*id)
    }

    /// Stores a blob unless it is already known; returns its id and whether
    /// it was new.
    pub fn save(&self, kind: BlobType, plaintext: &[u8]) -> Result<(Id, bool)> {
        let id = self.core.key.blob_id(plaintext);
        let new = self.save_with_id(kind, id, plaintext)?;
        Ok((id, new))
    }

    /// Like [`Packer::save`] for a blob whose id is already computed.
    pub fn save_with_id(&self, kind: BlobType, id: Id, plaintext: &[u8]) -> Result<bool> {
        if !self.claim(&id) {
            return Ok(false);
        }
        let encoded = blob::encode(&self.core.key, kind, &id, plaintext, self.level)?;
        self.add_encoded(kind, id, &encoded, plaintext.len())?;
        Ok(true)
    }

    /// Stores `plaintext` as a delta against `base` (data blob `base_id`)
    /// under the delta id `id`, unless known. Returns false, storing
    /// nothing, if the delta would not be smaller than the plaintext
    /// compressed alone (the decision depends only on the bytes, so any
    /// thread storing the same delta decides alike).
    pub fn save_delta(&self, id: Id, base_id: &Id, base: &[u8], plaintext: &[u8]) -> Result<bool> {
        if self.known(&id) {
            return Ok(true);
        }
        let Some(encoded) = blob::encode_delta(
            &self.core.key,
            &id,
            base_id,
            base,
            plaintext,
            self.level.max(1),
        )?
        else {
            return Ok(false);
        };
        if self.claim(&id) {
            self.add_encoded(BlobType::Data, id, &encoded, plaintext.len())?;
        }
        Ok(true)
    }

    /// Stores a data blob copied from another repository under its id
    /// `id`: as a delta against `base` (its id and plaintext) when given and
    /// smaller, else compressed alone (a delta id still names the same
    /// plaintext either way). Returns whether it was new.
    pub fn save_copy(&self, id: Id, plaintext: &[u8], base: Option<(&Id, &[u8])>) -> Result<bool> {
        if !self.claim(&id) {
            return Ok(false);
        }
        let delta = match base {
            Some((base_id, base)) => blob::encode_delta(
                &self.core.key,
                &id,
                base_id,
                base,
                plaintext,
                self.level.max(1),
            )?,
            None => None,
        };
        let encoded = match delta {
            Some(d) => d,
            None => blob::encode(&self.core.key, BlobType::Data, &id, plaintext, self.level)?,
        };
        self.add_encoded(BlobType::Data, id, &encoded, plaintext.len())?;
        Ok(true)
    }

    /// Adds an already encoded blob (used by prune to copy blobs unchanged).
    pub fn add_encoded(
        &self,
        kind: BlobType,
        id: Id,
        encoded: &[u8],
        raw_len: usize,
    ) -> Result<()> {
        self.check_failed()?;
        self.stats.blobs.fetch_add(1, Ordering::Relaxed);
        self.stats
            .raw_bytes
            .fetch_add(raw_len as u64, Ordering::Relaxed);
        self.stats
            .stored_bytes
            .fetch_add(encoded.len() as u64, Ordering::Relaxed);
        let full = {
            let mut b = lock(&self.builders);
            let slot = match kind {
                BlobType::Data => &mut b.data,
                BlobType::Tree => &mut b.tree,
            };
            if slot.is_none() {
                let staged = if self.stage_in_memory {
                    // Room for a full pack and its header: no regrowing.
                    Staged::in_memory_with_capacity(self.pack_size + (self.pack_size >> 4))
                } else {
                    self.core.backend.stage()?
                };
                *slot = Some(PackWriter::new(staged, kind));
            }
            let builder = slot.as_mut().expect("just created");
            builder.add(id, encoded, raw_len).map_err(staging_error)?;
            if builder.len() >= self.pack_size {
                slot.take()
            } else {
                None
            }
        };
        if let Some(full) = full {
            self.send(full)?;
        }
        Ok(())
    }

    /// Bytes of the pack files stored so far.
    pub fn pack_file_bytes(&self) -> u64 {
        self.file_bytes.load(Ordering::Relaxed)
    }

    /// Claims an id without storing anything (for blobs copied by prune).
    pub fn claim_for_copy(&self, id: &Id) -> bool {
        lock(&self.claimed).insert(*id)
    }

    fn send(&self, builder: Builder) -> Result<()> {
        let finished = builder.finish(&self.core.key).map_err(staging_error)?;
        self.stats.packs.fetch_add(1, Ordering::Relaxed);
        let tx = lock(&self.tx).clone();
        match tx {
            Some(tx) => tx.send(finished).map_err(|_| self.writer_error()),
            None => Err(Error::InvalidInput("packer already finished".into())),
        }
    }

    fn writer_error(&self) -> Error {
        let msg = lock(&self.failed)
            .clone()
            .unwrap_or_else(|| "pack writer stopped".into());
        Error::Io {
            path: "repository".into(),
            error: std::io::Error::other(msg),
        }
    }

    fn check_failed(&self) -> Result<()> {
        if lock(&self.failed).is_some() {
            return Err(self.writer_error());
        }
        Ok(())
    }

    /// Writes the partly filled packs, waits until every pack and index file
    /// is durable, and returns what was written.
    pub fn finish(&self) -> Result<Vec<IndexPack>> {
        let (data, tree) = {
            let mut b = lock(&self.builders);
            (b.data.take(), b.tree.take())
        };
        for b in [data, tree].into_iter().flatten() {
            if !b.is_empty() {
                self.send(b)?;
            }
        }
        lock(&self.tx).take();
        let handle = lock(&self.writer).take();
        match handle {
            Some(h) => h
                .join()
                .map_err(|_| Error::InvalidInput("pack writer panicked".into()))?,
            None => Ok(Vec::new()),
        }
    }
}

impl Drop for Packer<'_> {
    fn drop(&mut self) {
        lock(&self.tx).take();
        if let Some(h) = lock(&self.writer).take() {
            let _ = h.join();
        }
    }
}

fn write_index(backend: &dyn Backend, key: &MasterKey, packs: &[IndexPack]) -> Result<()> {
    let f = IndexFile {
        packs: packs.to_vec(),
        supersedes: Vec::new(),
        prune: None,
    };
    let bytes = f.encode(key)?;
    backend.write(Handle::new(FileKind::Index, Id::of_file(&bytes)), &bytes)
}

fn staging_error(e: std::io::Error) -> Error {
    Error::io("pack staging area", e)
}
