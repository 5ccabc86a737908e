//! Where repository bytes live, behind one trait.
//!
//! A [`Backend`] stores named files and knows nothing of encryption or
//! formats. The repository layer asks it for whole files, byte ranges and
//! listings, and gives it whole files to store; everything cairn promises
//! about durability rests on the contract written on each method below, so
//! a new implementation (a folder, memory, an object store) is correct when
//! it keeps those promises. `conformance` checks them and every
//! implementation runs it.
//!
//! Files are named by a [`Handle`]: the config file, or a file of some
//! [`FileKind`] named by its 32-byte id. Every file except the config and
//! locks is content-addressed (its name is the BLAKE3 hash of its bytes),
//! so files are never overwritten: a write to an existing name fails.

pub mod cache;
pub mod conformance;
pub mod local;
pub mod memory;
pub mod s3;

use crate::error::{Error, Result};
use crate::format::id::Id;
use std::io::Write;
use std::time::Duration;

pub use crate::format::config::{Retention, RetentionMode};
pub use local::LocalBackend;
pub use memory::MemoryBackend;
pub use s3::S3Backend;

/// The kinds of files in a repository, each in its own folder.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FileKind {
    /// `keys/<id>`
    Key,
    /// `snapshots/<id>`
    Snapshot,
    /// `index/<id>`
    Index,
    /// `data/<first two hex digits>/<id>`
    Pack,
    /// `locks/<id>`
    Lock,
    /// `wal/<id>`: records of archived PostgreSQL WAL files, named by a
    /// keyed hash of the cluster and file name (not content-addressed).
    Wal,
    /// `forgotten/<id>`: which snapshots a `forget` removed.
    Forget,
}

impl FileKind {
    /// Every kind, in the order a repository lists them.
    pub const ALL: [FileKind; 7] = [
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Lock,
        FileKind::Wal,
        FileKind::Forget,
    ];

    /// Folder name under the repository root.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Lock => "locks",
            FileKind::Wal => "wal",
            FileKind::Forget => "forgotten",
        }
    }

    /// Human name for messages.
    pub fn name(self) -> &'static str {
        match self {
            FileKind::Key => "key",
            FileKind::Snapshot => "snapshot",
            FileKind::Index => "index",
            FileKind::Pack => "pack",
            FileKind::Lock => "lock",
            FileKind::Wal => "WAL record",
            FileKind::Forget => "forget record",
        }
    }
}

/// The name of one repository file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Handle {
    /// The repository's `config` file.
    Config,
    /// A file of a kind, named by its id.
    File(FileKind, Id),
}

impl Handle {
    /// A file of `kind` named `id`.
    pub fn new(kind: FileKind, id: Id) -> Handle {
        Handle::File(kind, id)
    }

    /// The path relative to the repository root, e.g. `data/ab/ab12…`;
    /// also how messages name the file.
    pub fn rel_path(&self) -> String {
        match self {
            Handle::Config => "config".into(),
            Handle::File(FileKind::Pack, id) => {
                let hex = id.to_hex();
                format!("data/{}/{}", &hex[..2], hex)
            }
            Handle::File(kind, id) => format!("{}/{}", kind.dir(), id.to_hex()),
        }
    }
}

impl std::fmt::Display for Handle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.rel_path())
    }
}

/// Storage for one repository.
///
/// Every method may be called from several threads at once. Errors name the
/// file (its [`Handle::rel_path`]) they concern.
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Where the repository is, for messages (a path, a URL).
    fn location(&self) -> String;

    /// Prepares the location for a new repository (creating folders or a
    /// bucket as needed). Fails with [`Error::AlreadyExists`] if the
    /// location already holds a repository or any other file, and then
    /// changes nothing.
    fn create(&self) -> Result<()>;

    /// Whether a file exists. `Ok(false)` only when the backend answered
    /// that it does not; an unreachable backend is an error.
    fn exists(&self, h: Handle) -> Result<bool> {
        match self.size(h) {
            Ok(_) => Ok(true),
            Err(Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Every file of `kind`, with its size in bytes, in no particular
    /// order. Only canonical names are listed: 64 lower-case hex digits
    /// (for packs, inside the folder their first two digits name).
    /// Temporary files of writers and anything else are left out. Every
    /// write and removal that completed before the call is reflected;
    /// files written or removed during the call may or may not be.
    fn list(&self, kind: FileKind) -> Result<Vec<(Id, u64)>>;

    /// The whole content of a file. A missing file is
    /// [`Error::NotFound`].
    fn read(&self, h: Handle) -> Result<Vec<u8>>;

    /// Like [`Backend::read_range`], for a range of a pack that holds
    /// metadata (tree blobs, content lists): a caching backend keeps the
    /// whole pack, since the next tree read will want its neighbours.
    fn read_metadata_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        self.read_range(h, offset, len)
    }

    /// `len` bytes starting at `offset`. A range that does not lie wholly
    /// inside the file is an error ([`Error::Corrupt`] naming the file:
    /// "shorter than expected"), never a short result. A missing file is
    /// [`Error::NotFound`].
    fn read_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>>;

    /// The size of a file in bytes; [`Error::NotFound`] if it is missing.
    fn size(&self, h: Handle) -> Result<u64>;

    /// Stores a whole file. When this returns `Ok`, the file is durable
    /// and every later read or listing sees it complete; a crash or an
    /// error at any moment leaves either no file under that name or the
    /// complete one, never a part. If a file of that name already exists,
    /// fails with [`Error::AlreadyExists`] and leaves it unchanged (names
    /// are content hashes or fresh random ids, so this never happens to a
    /// writer that follows the format).
    fn write(&self, h: Handle, bytes: &[u8]) -> Result<()>;

    /// A place to write a large file piece by piece (a pack being filled)
    /// before it is stored with [`Backend::write_staged`]. Staged bytes are
    /// not part of the repository and not listed.
    fn stage(&self) -> Result<Staged> {
        Staged::temp_file_in(&std::env::temp_dir())
    }

    /// Stores a staged file under `h`, with the guarantees of
    /// [`Backend::write`]. The staging space is released either way.
    fn write_staged(&self, h: Handle, staged: Staged) -> Result<()> {
        let bytes = staged.into_bytes()?;
        self.write(h, &bytes)
    }

    /// Like [`Backend::write_staged`], for a pack of metadata (a caching
    /// backend keeps a copy).
    fn write_staged_metadata(&self, h: Handle, staged: Staged) -> Result<()> {
        self.write_staged(h, staged)
    }

    /// Whether every request crosses a network (a cache pays off).
    fn is_remote(&self) -> bool {
        false
    }

    /// Removes a file. Removing a file that does not exist is not an
    /// error. When this returns `Ok`, the removal is durable.
    fn remove(&self, h: Handle) -> Result<()>;

    /// Removes several files, as [`Backend::remove`] does each (an object
    /// store deletes many with one request).
    fn remove_batch(&self, hs: &[Handle]) -> Result<()> {
        for h in hs {
            self.remove(*h)?;
        }
        Ok(())
    }

    /// Fails with [`Error::PermissionDenied`] when these credentials may
    /// not remove files (backup-only credentials), changing nothing; a
    /// command that deletes asks before it writes anything.
    fn check_may_delete(&self) -> Result<()> {
        Ok(())
    }

    /// How many large writes (packs) are worth running at once: 1 for a
    /// local disk, more for a remote store where each request waits on the
    /// network.
    fn write_concurrency(&self) -> usize {
        1
    }

    /// The retention every new object gets when the storage has S3 Object
    /// Lock on (the bucket's default retention); `None` otherwise.
    fn object_lock(&self) -> Result<Option<Retention>> {
        Ok(None)
    }

    /// When the retention of the current version of `h` ends (Unix
    /// seconds), if it has one that has not ended yet.
    fn retained_until(&self, _h: Handle) -> Result<Option<i64>> {
        Ok(None)
    }

    /// Extends the retention of the current version of `h` to `until` (Unix
    /// seconds) under `rule`'s mode. Never shortens one.
    fn extend_retention(&self, h: Handle, _rule: &Retention, _until: i64) -> Result<()> {
        Err(Error::InvalidInput(format!(
            "{}: this storage has no object retention",
            h.rel_path()
        )))
    }

    /// Files of `kind` with their last-modified times (Unix seconds).
    fn list_modified(&self, kind: FileKind) -> Result<Vec<(Id, i64)>> {
        Err(Error::InvalidInput(format!(
            "{}: this storage does not list modification times",
            kind.dir()
        )))
    }

    /// Makes a file disappear whose retention has not ended (on a versioned
    /// bucket: a delete marker; the retained version stays until
    /// [`Backend::purge_hidden`] removes it after its retention). Elsewhere
    /// the same as [`Backend::remove`].
    fn hide(&self, h: Handle) -> Result<()> {
        self.remove(h)
    }

    /// Deletes the versions of hidden files of `kind` whose retention has
    /// ended; returns how many versions were deleted and how many wait.
    fn purge_hidden(&self, _kind: FileKind) -> Result<(usize, usize)> {
        Ok((0, 0))
    }

    /// Called when what a read of `h` returned fails verification: looks
    /// for an older version of `h` that `verify` accepts (an object
    /// overwritten on a versioned bucket) and, if there is one, reads that
    /// version of `h` from now on. Returns whether it found one.
    fn recover_original(&self, _h: Handle, _verify: &dyn Fn(&[u8]) -> bool) -> Result<bool> {
        Ok(false)
    }

    /// Puts Object Lock on the location (a new bucket with Object Lock; or
    /// an existing empty one that has it), so that every object can be
    /// written under `rule`. Only object stores have it.
    fn enable_object_lock(&self, _rule: &Retention) -> Result<()> {
        Err(Error::InvalidInput(format!(
            "{}: Object Lock needs an S3 bucket (a local folder cannot refuse deletion; see the README's security model)",
            self.location()
        )))
    }

    /// From now on, writes every new object under `rule` (the repository's
    /// config says so).
    fn write_retained(&self, _rule: &Retention) {}

    /// Removes what writers that died mid-write left behind (temporary
    /// files) and that is older than `min_age`; returns how many. Call it
    /// only when no writer can be alive (under an exclusive lock).
    fn remove_stale_temporaries(&self, _min_age: Duration) -> Result<usize> {
        Ok(0)
    }
}

/// Bytes being written before they become a repository file.
pub struct Staged {
    inner: StagedInner,
    len: u64,
}

enum StagedInner {
    /// A temporary file (named for messages).
    File(std::io::BufWriter<tempfile::NamedTempFile>),
    /// Memory (the in-memory backend).
    Memory(Vec<u8>),
}

impl Staged {
    /// Staging in memory.
    pub fn in_memory() -> Staged {
        Staged::in_memory_with_capacity(0)
    }

    /// Staging in memory, with room for `capacity` bytes reserved.
    pub fn in_memory_with_capacity(capacity: usize) -> Staged {
        Staged {
            inner: StagedInner::Memory(Vec::with_capacity(capacity)),
            len: 0,
        }
    }

    /// Staging in a new temporary file in `dir` (named `.tmp-pack-…`).
    pub fn temp_file_in(dir: &std::path::Path) -> Result<Staged> {
        let tmp = tempfile::Builder::new()
            .prefix(".tmp-pack-")
            .tempfile_in(dir)
            .map_err(|e| Error::io(dir, e))?;
        Ok(Staged {
            inner: StagedInner::File(std::io::BufWriter::with_capacity(1 << 20, tmp)),
            len: 0,
        })
    }

    /// Bytes staged so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether nothing was staged.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The staged bytes as a flushed temporary file, or in memory.
    pub fn into_inner(self) -> Result<StagedData> {
        match self.inner {
            StagedInner::Memory(v) => Ok(StagedData::Memory(v)),
            StagedInner::File(w) => {
                let path = w.get_ref().path().to_path_buf();
                let file = w
                    .into_inner()
                    .map_err(|e| Error::io(path, e.into_error()))?;
                Ok(StagedData::File(file))
            }
        }
    }

    /// The staged bytes, read back into memory.
    pub fn into_bytes(self) -> Result<Vec<u8>> {
        match self.into_inner()? {
            StagedData::Memory(v) => Ok(v),
            StagedData::File(f) => std::fs::read(f.path()).map_err(|e| Error::io(f.path(), e)),
        }
    }
}

/// Staged bytes ready to be stored.
pub enum StagedData {
    /// In a flushed (not yet fsynced) temporary file.
    File(tempfile::NamedTempFile),
    /// In memory.
    Memory(Vec<u8>),
}

impl Write for Staged {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = match &mut self.inner {
            StagedInner::File(w) => w.write(buf)?,
            StagedInner::Memory(v) => v.write(buf)?,
        };
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.inner {
            StagedInner::File(w) => w.flush(),
            StagedInner::Memory(_) => Ok(()),
        }
    }
}

impl std::fmt::Debug for Staged {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Staged({} bytes)", self.len)
    }
}

/// The error a backend returns for a range outside a file.
pub fn short_read(h: Handle) -> Error {
    Error::corrupt(
        h.rel_path(),
        "shorter than expected (truncated?): a read ends past the end of the file",
    )
}

/// Whether `name` is a canonical file name: 64 lower-case hex digits.
pub fn parse_name(name: &str) -> Option<Id> {
    let id = Id::from_hex(name)?;
    (id.to_hex() == name).then_some(id)
}
