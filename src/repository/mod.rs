//! An opened repository: its keys, settings, index, blobs, snapshots and
//! locks, on any [`Backend`].
//!
//! [`Repository`] is the one way the commands reach stored data. Its state
//! is private; what it can do depends on which index it has loaded, and the
//! type says which ([`NoIndex`], [`FullIndex`], [`BackupIndex`]), so "read
//! a blob before loading the index" does not compile. Opening only reads:
//! nothing here changes the repository except the explicit `init`, `save_*`,
//! `remove_*` and key operations, so a wrong password or a damaged file
//! leaves the repository as it was.
//!
//! Where things live: [`index`] (the one index loader and the in-memory
//! index), [`blobs`] (reading and authenticating blobs, trees, content
//! lists), [`packer`] (storing new blobs in packs), [`snapshots`],
//! [`keys`], [`lock`], [`browse`] (paths inside a snapshot) and
//! [`reachable`] (what snapshots reference).

pub mod blobs;
pub mod browse;
pub mod index;
pub mod keys;
pub mod lock;
mod original;
pub mod packer;
pub mod packs;
pub mod reachable;
pub mod rollback;
mod session;
pub mod snapshots;
pub mod wal;

use crate::backend::{Backend, FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::chunker::{Chunker, ChunkerParams, DatabaseChunking};
use crate::format::config::Config;
use crate::format::crypto::{KdfParams, MasterKey};
use crate::format::id::Id;
use crate::format::keyfile::KeyFile;
use index::{BlobLocation, BlobSet, Index};
use std::sync::Arc;
use std::time::Duration;

pub use blobs::{BlobRun, RunBlob};
pub use lock::LockGuard;
pub use snapshots::{SnapshotFilter, SnapshotSet};

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
    /// S3 Object Lock: keep every object under this retention (the bucket
    /// is created with Object Lock, or must have it).
    pub object_lock: Option<crate::format::config::Retention>,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            chunker: ChunkerParams::DEFAULT,
            compression_level: 3,
            pack_size: Config::DEFAULT_PACK_SIZE,
            kdf: KdfParams::DEFAULT,
            database_chunking: DatabaseChunking::DEFAULT,
            object_lock: None,
        }
    }
}

/// How an opened repository behaves towards other processes.
#[derive(Clone, Debug, Default)]
pub struct OpenOptions {
    /// How long to wait for a conflicting lock to go away.
    pub retry_lock: Duration,
    /// Kept for scripts written for older versions: readers and backups
    /// take no lock at all now, and commands that delete always do.
    pub no_lock: bool,
    /// Told of every warning as it happens (see [`Repository::warnings`]).
    pub on_warning: Option<WarningHandler>,
    /// Where to cache a remote repository's metadata (default:
    /// `$XDG_CACHE_HOME/cairn`); see [`crate::backend::cache`].
    pub cache_dir: Option<std::path::PathBuf>,
    /// Use no cache.
    pub no_cache: bool,
    /// Keep the unlocked key in the cache directory for this long and use
    /// it instead of stretching the password again (`wal push`/`wal fetch`,
    /// run once per WAL segment); see `session.rs` for why this is safe.
    pub session_ttl: Option<Duration>,
    /// The command will delete: the storage is asked whether these
    /// credentials may (see [`Repository::check_may_delete`]) while the key
    /// is stretched, so that the round trip costs no time of its own.
    pub will_delete: bool,
}

/// A callback for warnings: damage that cost one object but not the
/// command (a snapshot file that cannot be read, say).
#[derive(Clone)]
pub struct WarningHandler(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for WarningHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WarningHandler")
    }
}

/// A repository location, reached but not yet opened.
pub struct Connection {
    backend: Arc<dyn Backend>,
}

/// Reaches the repository at `location`: a local path, or
/// `s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX]` / `s3:BUCKET[/PREFIX]` for
/// S3-compatible object storage (credentials from `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). `options` are the
/// `-o KEY=VALUE` pairs (`s3.region`, `s3.storage-class`, ...). Nothing is
/// sent until the connection is used.
pub fn connect(location: &str, options: &[(String, String)]) -> Result<Connection> {
    if location.is_empty() {
        return Err(Error::InvalidInput("empty repository location".into()));
    }
    if let Some((k, _)) = options.iter().find(|(k, _)| !k.starts_with("s3.")) {
        return Err(Error::InvalidInput(format!(
            "-o {k}: unknown option (backend options start with s3.)"
        )));
    }
    if let Some(rest) = location.strip_prefix("s3:") {
        let opts = crate::backend::s3::S3Options::from_env(options)?;
        let loc = crate::backend::s3::S3Location::parse(rest, &opts.region)?;
        return Ok(Connection::new(Arc::new(crate::backend::S3Backend::new(
            loc, opts,
        )?)));
    }
    if let Some((k, _)) = options.iter().find(|(k, _)| k.starts_with("s3.")) {
        return Err(Error::InvalidInput(format!(
            "-o {k}: S3 options need an s3: repository location"
        )));
    }
    Ok(Connection::new(Arc::new(
        crate::backend::LocalBackend::new(location),
    )))
}

impl Connection {
    /// A connection to an already built backend.
    pub fn new(backend: Arc<dyn Backend>) -> Connection {
        Connection { backend }
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.backend.location()
    }

    /// Whether a repository exists there (its config file does).
    pub fn exists(&self) -> Result<bool> {
        self.backend.exists(Handle::Config)
    }

    /// Like [`Connection::exists`], but a missing bucket is just "no
    /// repository yet" (`init` creates the bucket).
    pub fn exists_or_no_bucket(&self) -> Result<bool> {
        match self.exists() {
            Err(Error::NoSuchBucket { .. }) => Ok(false),
            other => other,
        }
    }

    /// Creates a new repository with `password` as its first key.
    pub fn init(self, password: &[u8], opts: &InitOptions) -> Result<Repository> {
        self.init_with_key(password, opts, MasterKey::generate()?)
    }

    /// Creates a repository that shares `source`'s chunking and blob-id
    /// secrets and chunker settings (`init --copy-chunker-params`), with an
    /// encryption key and password of its own: the same files give the
    /// same blob ids in both, so `copy` moves only what the destination
    /// lacks and never re-chunks.
    pub fn init_sharing<S>(
        self,
        password: &[u8],
        opts: &InitOptions,
        source: &Repository<S>,
    ) -> Result<Repository> {
        let src = source.config();
        let opts = InitOptions {
            chunker: src.chunker,
            database_chunking: src.database_chunking.unwrap_or(opts.database_chunking),
            ..opts.clone()
        };
        let mut key = MasterKey::generate()?;
        key.id = source.key().id;
        key.chunker = source.key().chunker;
        self.init_with_key(password, &opts, key)
    }

    fn init_with_key(
        self,
        password: &[u8],
        opts: &InitOptions,
        key: MasterKey,
    ) -> Result<Repository> {
        if password.is_empty() {
            return Err(Error::InvalidInput(
                "empty password: refusing to create a repository without a password".into(),
            ));
        }
        opts.kdf.validate().map_err(Error::InvalidInput)?;
        let backend = self.backend;
        let mut config = Config::new(opts.chunker, opts.compression_level, opts.pack_size)?;
        config.database_chunking = Some(opts.database_chunking);
        config.object_lock = opts.object_lock.clone();
        config.validate().map_err(Error::InvalidInput)?;
        let chunker = Chunker::new(config.chunker, &key.chunker).map_err(Error::InvalidInput)?;
        if let Some(rule) = &config.object_lock {
            backend.enable_object_lock(rule)?;
            backend.write_retained(rule);
        }
        backend.create()?;
        let kf = KeyFile::create(
            &key,
            password,
            opts.kdf,
            &crate::sys::hostname(),
            &crate::sys::username(),
        )?;
        let kbytes = kf.encode()?;
        let key_id = Id::of_file(&kbytes);
        backend.write(Handle::new(FileKind::Key, key_id), &kbytes)?;
        // The config goes last: its presence is what makes this a repository.
        backend.write(Handle::Config, &config.encode(&key)?)?;
        Ok(Repository::from_core(Core {
            backend,
            key,
            config,
            chunker,
            key_id,
            options: OpenOptions::default(),
            warnings: Default::default(),
        }))
    }

    /// Opens the repository with `password`.
    pub fn open(self, password: &[u8], options: OpenOptions) -> Result<Repository> {
        let backend = self.backend;
        let session = session_path(backend.as_ref(), &options);
        if let Some(sp) = &session
            && let Some((kid, key)) = session::load(sp, password)
        {
            // A live session: no key stretching. Its key file must still
            // exist and its key must still open the config.
            let opened = backend
                .exists(Handle::new(FileKind::Key, kid))
                .and_then(|exists| {
                    if !exists {
                        return Ok(None);
                    }
                    let config = backend.read(Handle::Config)?;
                    Ok(Config::decode(&key, &config).is_ok().then_some(config))
                });
            match opened {
                Ok(Some(config)) => {
                    return finish_open(backend, &config, kid, key, options);
                }
                Ok(None) => session::remove(sp),
                Err(_) => {}
            }
        }
        // On a remote store each request waits on the network: the config
        // is fetched while the key is found and unwrapped, and a hint
        // (the key that opened this location last time) saves listing keys.
        let hint = key_hint_path(backend.as_ref(), &options);
        let (config_bytes, unlocked) = std::thread::scope(|s| {
            let config = s.spawn(|| backend.read(Handle::Config));
            if options.will_delete {
                // The backend remembers the answer; the command asks again
                // (and reports a refusal) once the repository is open.
                s.spawn(|| backend.check_may_delete());
            }
            let hinted = hint
                .as_deref()
                .and_then(|p| std::fs::read_to_string(p).ok())
                .and_then(|hex| Id::from_hex(hex.trim()))
                .and_then(|kid| {
                    let key = unlock_key(backend.as_ref(), kid, password).ok().flatten()?;
                    Some(Ok((kid, key)))
                });
            let unlocked = hinted.unwrap_or_else(|| unlock_any_key(backend.as_ref(), password));
            let config = config
                .join()
                .unwrap_or_else(|_| Err(Error::InvalidInput("config reader panicked".into())));
            (config, unlocked)
        });
        let config_bytes = match config_bytes {
            Ok(b) => b,
            Err(e) if e.is_not_found() => {
                return Err(Error::NotARepository(backend.location()));
            }
            Err(e) => return Err(e),
        };
        let (key_id, key) = unlocked?;
        if let Some(p) = &hint {
            let _ = p.parent().map(std::fs::create_dir_all);
            let _ = std::fs::write(p, key_id.to_hex());
        }
        let repo = finish_open(backend, &config_bytes, key_id, key, options)?;
        if let (Some(sp), Some(ttl)) = (&session, repo.core.options.session_ttl) {
            session::store(sp, password, &key_id, &repo.core.key, ttl);
        }
        Ok(repo)
    }
}

/// The rest of opening once the key is unwrapped: the config, the chunker
/// and the cache.
fn finish_open(
    backend: Arc<dyn Backend>,
    config_bytes: &[u8],
    key_id: Id,
    key: MasterKey,
    options: OpenOptions,
) -> Result<Repository> {
    let config = match Config::decode(&key, config_bytes) {
        Ok(c) => c,
        // Overwritten? A versioned bucket may keep the original.
        Err(e) => original::read_decoded(
            backend.as_ref(),
            Handle::Config,
            &|m| eprintln!("cairn: warning: {m}"),
            |b| Config::decode(&key, b),
        )
        .map_err(|_| e)?,
    };
    let chunker =
        Chunker::new(config.chunker, &key.chunker).map_err(|p| Error::corrupt("config", p))?;
    if let Some(rule) = &config.object_lock {
        backend.write_retained(rule);
    }
    let backend = with_cache(backend, &config, &options)?;
    Ok(Repository::from_core(Core {
        backend,
        key,
        config,
        chunker,
        key_id,
        options,
        warnings: Default::default(),
    }))
}

/// Where the session of this location lives, if sessions are asked for.
fn session_path(backend: &dyn Backend, options: &OpenOptions) -> Option<std::path::PathBuf> {
    if options.no_cache || options.session_ttl.is_none_or(|t| t.is_zero()) {
        return None;
    }
    let base = options
        .cache_dir
        .clone()
        .or_else(crate::backend::cache::default_dir)?;
    Some(session::path(&base, &backend.location()))
}

/// Reads, checks and unwraps one key file; `None` if the password is not
/// its password.
fn unlock_key(backend: &dyn Backend, kid: Id, password: &[u8]) -> Result<Option<MasterKey>> {
    let h = Handle::new(FileKind::Key, kid);
    let what = h.rel_path();
    read_key_file(backend, kid)?.unwrap_key(password, &what)
}

/// Reads and decodes one key file (its original, if it was overwritten).
fn read_key_file(backend: &dyn Backend, kid: Id) -> Result<KeyFile> {
    let h = Handle::new(FileKind::Key, kid);
    let what = h.rel_path();
    original::read_decoded(backend, h, &|m| eprintln!("cairn: warning: {m}"), |b| {
        check_file_name(&kid, b, &what)?;
        KeyFile::decode(b, &what)
    })
}

/// Finds the key file `password` opens among all of them.
fn unlock_any_key(backend: &dyn Backend, password: &[u8]) -> Result<(Id, MasterKey)> {
    let keys = backend.list(FileKind::Key)?;
    if keys.is_empty() {
        // No keys and no config: not a repository at all.
        if !backend.exists(Handle::Config).unwrap_or(true) {
            return Err(Error::NotARepository(backend.location()));
        }
        return Err(Error::corrupt("keys/", "repository has no key files"));
    }
    // Decode every key file first, then try the cheapest to stretch first:
    // a key file anyone can add with extreme Argon2id costs (within the
    // bounds) then delays only a wrong password.
    let mut first_err = None;
    let mut readable = Vec::new();
    for (kid, _) in keys {
        let what = Handle::new(FileKind::Key, kid).rel_path();
        match read_key_file(backend, kid) {
            Ok(kf) => readable.push((kid, kf, what)),
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    readable.sort_by_key(|(kid, kf, _)| {
        (
            u64::from(kf.kdf.memory_kib) * u64::from(kf.kdf.iterations),
            *kid,
        )
    });
    let readable_keys = readable.len();
    for (kid, kf, what) in readable {
        match kf.unwrap_key(password, &what) {
            Ok(Some(k)) => return Ok((kid, k)),
            Ok(None) => {}
            Err(e) => {
                first_err.get_or_insert(e);
            }
        }
    }
    // A damaged key file among good ones does not make a wrong password
    // anything else.
    Err(match first_err {
        Some(e) if readable_keys == 0 => e,
        _ => Error::WrongPassword,
    })
}

/// Where the id of the key that last opened a remote location is kept (in
/// the cache directory; key ids are file names, not secrets).
fn key_hint_path(backend: &dyn Backend, options: &OpenOptions) -> Option<std::path::PathBuf> {
    if !backend.is_remote() || options.no_cache {
        return None;
    }
    let base = options
        .cache_dir
        .clone()
        .or_else(crate::backend::cache::default_dir)?;
    let name = blake3::hash(backend.location().as_bytes()).to_hex();
    Some(base.join("key-hints").join(&name[..32]))
}

/// A remote backend behind a local cache, unless caching is off.
fn with_cache(
    backend: Arc<dyn Backend>,
    config: &Config,
    options: &OpenOptions,
) -> Result<Arc<dyn Backend>> {
    if !backend.is_remote() || options.no_cache {
        return Ok(backend);
    }
    let Some(base) = options
        .cache_dir
        .clone()
        .or_else(crate::backend::cache::default_dir)
    else {
        return Ok(backend);
    };
    let id = hex::encode(config.id);
    Ok(Arc::new(crate::backend::cache::CachedBackend::new(
        backend, &base, &id,
    )?))
}

/// What every state of an open repository shares.
pub(crate) struct Core {
    pub(crate) backend: Arc<dyn Backend>,
    pub(crate) key: MasterKey,
    pub(crate) config: Config,
    pub(crate) chunker: Chunker,
    pub(crate) key_id: Id,
    pub(crate) options: OpenOptions,
    pub(crate) warnings: std::sync::Mutex<Vec<String>>,
}

impl Core {
    /// Reads `h` and decodes it; falls back to the original version of an
    /// overwritten or deleted file where the storage keeps versions.
    pub(crate) fn read_decoded<T>(
        &self,
        h: Handle,
        decode: impl Fn(&[u8]) -> Result<T>,
    ) -> Result<T> {
        original::read_decoded(self.backend.as_ref(), h, &|m| self.warn(m), decode)
    }

    /// After pack `h` failed to read or authenticate: whether the storage
    /// kept an intact original (reads of `h` now go to it).
    pub(crate) fn recover_pack(&self, h: Handle) -> bool {
        original::recover_pack(self.backend.as_ref(), h, &|m| self.warn(m))
    }

    /// Runs `read` (something read from pack `h`); if that fails as
    /// damage or a missing file and the storage kept an intact original of
    /// the pack, runs it once more against the original.
    pub(crate) fn with_original_pack<T>(
        &self,
        h: Handle,
        read: impl Fn() -> Result<T>,
    ) -> Result<T> {
        match read() {
            Err(e @ (Error::Corrupt { .. } | Error::NotFound { .. })) => {
                if self.recover_pack(h) {
                    read()
                } else {
                    Err(e)
                }
            }
            r => r,
        }
    }

    /// Removes a file the repository no longer needs: deletes it, or, when
    /// Object Lock still retains it, hides it (a delete marker; prune
    /// deletes the retained version once its retention ends).
    pub(crate) fn remove_or_hide(&self, h: Handle) -> Result<()> {
        if self.backend.object_lock()?.is_some() && self.backend.retained_until(h)?.is_some() {
            return self.backend.hide(h);
        }
        self.backend.remove(h)
    }

    /// Records a warning (once) and tells the handler.
    pub(crate) fn warn(&self, msg: String) {
        let mut w = crate::sys::lock(&self.warnings);
        if w.contains(&msg) {
            return;
        }
        if let Some(h) = &self.options.on_warning {
            (h.0)(&msg);
        }
        w.push(msg);
    }
}

/// An open repository; `S` says which index is loaded.
pub struct Repository<S = NoIndex> {
    core: Arc<Core>,
    index: S,
}

/// No index loaded: snapshots, keys, locks and config only.
pub struct NoIndex;

/// Every blob's location is known.
pub struct FullIndex {
    index: Index,
}

/// What a backup needs, in bounded memory: the locations of tree blobs (to
/// read the parent snapshot and content lists), a compact set of data blob
/// ids (to deduplicate), and the locations of data blobs loaded on request
/// (delta bases).
pub struct BackupIndex {
    located: Index,
    data: BlobSet,
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::NoIndex {}
    impl Sealed for super::FullIndex {}
    impl Sealed for super::BackupIndex {}
}

/// An index that can locate blobs for reading.
pub trait Locate: sealed::Sealed + Sync {
    /// The pack and position of a blob, if it is located.
    fn locate(&self, id: &Id) -> Option<(Id, BlobLocation)>;
    /// Whether the blob is stored (located or only known by id).
    fn knows(&self, id: &Id) -> bool;
    /// Every located copy of a blob, the preferred one first.
    fn locations(&self, id: &Id) -> Vec<(Id, BlobLocation)> {
        self.locate(id).into_iter().collect()
    }
}

impl Locate for FullIndex {
    fn locate(&self, id: &Id) -> Option<(Id, BlobLocation)> {
        self.index.get(id)
    }
    fn locations(&self, id: &Id) -> Vec<(Id, BlobLocation)> {
        self.index.locations(id)
    }
    fn knows(&self, id: &Id) -> bool {
        self.index.contains(id)
    }
}

impl Locate for BackupIndex {
    fn locate(&self, id: &Id) -> Option<(Id, BlobLocation)> {
        self.located.get(id)
    }
    fn locations(&self, id: &Id) -> Vec<(Id, BlobLocation)> {
        self.located.locations(id)
    }
    fn knows(&self, id: &Id) -> bool {
        self.located.contains(id) || self.data.contains(id)
    }
}

impl Repository<NoIndex> {
    /// Opens the repository at a local path with default options (for
    /// tools and tests; the CLI goes through [`connect`]).
    pub fn open(path: impl AsRef<std::path::Path>, password: &[u8]) -> Result<Repository> {
        let path = path.as_ref();
        Connection::new(Arc::new(crate::backend::LocalBackend::new(path)))
            .open(password, OpenOptions::default())
    }

    /// Creates a repository at a local path (for tools and tests).
    pub fn init(
        path: impl AsRef<std::path::Path>,
        password: &[u8],
        opts: &InitOptions,
    ) -> Result<Repository> {
        Connection::new(Arc::new(crate::backend::LocalBackend::new(path.as_ref())))
            .init(password, opts)
    }

    fn from_core(core: Core) -> Repository {
        Repository {
            core: Arc::new(core),
            index: NoIndex,
        }
    }
}

impl<S> Repository<S> {
    /// Whether `other` names blobs as this repository does (both use the
    /// same blob-id secret, as `init --copy-chunker-params` makes them).
    pub fn shares_blob_ids<T>(&self, other: &Repository<T>) -> bool {
        self.core.key.id == other.core.key.id
    }

    /// The repository's settings.
    pub fn config(&self) -> &Config {
        &self.core.config
    }

    /// The repository's id (hex).
    pub fn id_hex(&self) -> String {
        hex::encode(self.core.config.id)
    }

    /// The key file this repository was opened with.
    pub fn key_id(&self) -> Id {
        self.core.key_id
    }

    /// The master key (for tools and tests that build repository objects).
    pub fn key(&self) -> &MasterKey {
        &self.core.key
    }

    /// The storage (for tools and tests; commands go through the methods).
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.core.backend
    }

    /// The content-defined chunker for ordinary files.
    pub fn chunker(&self) -> &Chunker {
        &self.core.chunker
    }

    /// Where the repository is, for messages.
    pub fn location(&self) -> String {
        self.core.backend.location()
    }

    /// The warnings so far: damage that cost one object, not the command.
    pub fn warnings(&self) -> Vec<String> {
        crate::sys::lock(&self.core.warnings).clone()
    }

    /// The same repository with no index loaded.
    pub fn without_index(&self) -> Repository<NoIndex> {
        Repository {
            core: self.core.clone(),
            index: NoIndex,
        }
    }

    /// The same repository with every blob's location loaded.
    pub fn with_full_index(&self) -> Result<Repository<FullIndex>> {
        let index = index::load_full(&self.core)?;
        Ok(self.with_index(index))
    }

    /// The same repository with a given index (built by `check` from the
    /// index files it could read).
    pub(crate) fn with_index(&self, index: Index) -> Repository<FullIndex> {
        Repository {
            core: self.core.clone(),
            index: FullIndex { index },
        }
    }

    /// The same repository with what a backup needs ([`BackupIndex`]).
    pub fn with_backup_index(&self) -> Result<Repository<BackupIndex>> {
        let (located, data) = index::load_for_backup(&self.core)?;
        Ok(Repository {
            core: self.core.clone(),
            index: BackupIndex { located, data },
        })
    }

    /// Finds the one file of `kind` whose id starts with `prefix`.
    pub fn find_file(&self, kind: FileKind, prefix: &str) -> Result<Id> {
        let p = prefix.to_ascii_lowercase();
        let matches: Vec<Id> = self
            .core
            .backend
            .list(kind)?
            .into_iter()
            .map(|(id, _)| id)
            .filter(|id| id.to_hex().starts_with(&p))
            .collect();
        match matches.len() {
            0 => Err(Error::InvalidInput(format!(
                "no {} file matches {prefix:?}",
                kind.name()
            ))),
            1 => Ok(matches[0]),
            n => Err(Error::InvalidInput(format!(
                "{} id prefix {prefix:?} is ambiguous: it matches {n} files",
                kind.name()
            ))),
        }
    }

    /// Reads a content-addressed file and checks that it is what its name
    /// says.
    pub(crate) fn read_file(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        let h = Handle::new(kind, *id);
        self.core.read_decoded(h, |b| {
            check_file_name(id, b, &h.rel_path())?;
            Ok(b.to_vec())
        })
    }

    /// Writes a content-addressed file; returns its id.
    pub(crate) fn write_file(&self, kind: FileKind, bytes: &[u8]) -> Result<Id> {
        let id = Id::of_file(bytes);
        self.core.backend.write(Handle::new(kind, id), bytes)?;
        Ok(id)
    }

    /// Total size of every repository file (what it costs to store).
    pub fn storage_bytes(&self) -> Result<u64> {
        let mut total = self.core.backend.size(Handle::Config)?;
        for kind in FileKind::ALL {
            total += self
                .core
                .backend
                .list(kind)?
                .iter()
                .map(|(_, s)| s)
                .sum::<u64>();
        }
        Ok(total)
    }

    /// Takes the lock that keeps commands that delete apart (readers and
    /// backups take none: format-spec/v1-locks-prune.md).
    pub fn lock_exclusive(&self) -> Result<LockGuard> {
        lock::Lock::acquire(&self.core, true, self.core.options.retry_lock).map(LockGuard::held)
    }

    /// Fails, before anything is changed, when the storage does not let
    /// these credentials delete: `what` (forget, prune, ...) would need to.
    pub fn check_may_delete(&self, what: &str) -> Result<()> {
        self.core.backend.check_may_delete().map_err(|e| match e {
            Error::PermissionDenied(why) => Error::PermissionDenied(format!(
                "{what}: {why}; nothing was changed (these are backup-only credentials? {what} needs credentials that may delete)"
            )),
            e => e,
        })
    }
}

impl<S: Locate> Repository<S> {
    /// Whether a blob is stored.
    pub fn has_blob(&self, id: &Id) -> bool {
        self.index.knows(id)
    }

    /// Where a blob is stored, if it is located.
    pub fn locate(&self, id: &Id) -> Option<(Id, BlobLocation)> {
        self.index.locate(id)
    }

    pub(crate) fn index_state(&self) -> &S {
        &self.index
    }
}

impl<S> Repository<S> {
    pub(crate) fn core_ref(&self) -> &Core {
        &self.core
    }
}

impl Repository<FullIndex> {
    /// The loaded index.
    pub fn index(&self) -> &Index {
        &self.index.index
    }
}

impl Repository<BackupIndex> {
    /// How many data blobs are known by id, and how many blobs are located.
    pub fn backup_index_sizes(&self) -> (usize, usize) {
        (self.index.data.len(), self.index.located.len())
    }

    /// Loads the locations of the data blobs in `wanted` (a backup's index
    /// holds tree locations only); returns how many were found. Index
    /// files are decoded one at a time, so memory follows `wanted`, not the
    /// repository's size.
    pub fn load_data_locations(&mut self, wanted: &std::collections::HashSet<Id>) -> Result<usize> {
        index::load_locations(&self.core, &mut self.index.located, wanted)?;
        Ok(wanted
            .iter()
            .filter(|id| self.index.located.contains(id))
            .count())
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
