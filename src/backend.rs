//! Where repository bytes live: a local folder.
//!
//! The backend knows nothing about encryption or formats; it stores named
//! files durably. Every write goes to a temporary name in the target
//! directory, is fsynced, renamed into place, and the directory is fsynced,
//! so a crash leaves either the old state or the complete new file — never a
//! half-written file under a real name. Temporary names start with `.tmp-`
//! and are ignored by listings.

use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// The kinds of files in a repository, each in its own directory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
}

impl FileKind {
    /// Directory name under the repository root.
    pub fn dir(self) -> &'static str {
        match self {
            FileKind::Key => "keys",
            FileKind::Snapshot => "snapshots",
            FileKind::Index => "index",
            FileKind::Pack => "data",
            FileKind::Lock => "locks",
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
        }
    }
}

/// A repository in a local directory.
#[derive(Clone, Debug)]
pub struct LocalBackend {
    root: PathBuf,
}

/// The name of the config file.
pub const CONFIG: &str = "config";

impl LocalBackend {
    /// A backend rooted at `root` (not checked).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Relative path of a file, e.g. `data/ab/ab12...`.
    pub fn rel_path(kind: FileKind, id: &Id) -> String {
        let hex = id.to_hex();
        match kind {
            FileKind::Pack => format!("data/{}/{}", &hex[..2], hex),
            _ => format!("{}/{}", kind.dir(), hex),
        }
    }

    /// Absolute path of a file.
    pub fn path(&self, kind: FileKind, id: &Id) -> PathBuf {
        self.root.join(Self::rel_path(kind, id))
    }

    /// Creates the directory skeleton of a new repository.
    pub fn create_layout(&self) -> Result<()> {
        fs::create_dir_all(&self.root).at(&self.root)?;
        for d in ["keys", "snapshots", "index", "data", "locks"] {
            let p = self.root.join(d);
            fs::create_dir_all(&p).at(&p)?;
        }
        for i in 0..=255u8 {
            let p = self.root.join("data").join(format!("{i:02x}"));
            fs::create_dir_all(&p).at(&p)?;
        }
        sync_dir(&self.root.join("data"))?;
        sync_dir(&self.root)?;
        Ok(())
    }

    /// Writes `bytes` to `rel` atomically and durably.
    pub fn write_atomic(&self, rel: &str, bytes: &[u8]) -> Result<()> {
        let target = self.root.join(rel);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .at(&dir)?;
        tmp.write_all(bytes).at(tmp.path())?;
        tmp.as_file().sync_all().at(tmp.path())?;
        tmp.persist(&target)
            .map_err(|e| Error::io(&target, e.error))?;
        sync_dir(&dir)
    }

    /// Makes a finished pack durable under its name: fsync, rename into
    /// `data/XX/`, fsync that directory.
    pub fn persist_pack(&self, file: tempfile::NamedTempFile, id: &Id) -> Result<()> {
        let target = self.path(FileKind::Pack, id);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir)?;
        file.as_file().sync_all().at(file.path())?;
        file.persist(&target)
            .map_err(|e| Error::io(&target, e.error))?;
        sync_dir(&dir)
    }

    /// Creates a missing directory (e.g. a `data/XX` that a copy dropped)
    /// and makes its entry durable in its parent.
    fn ensure_dir(&self, dir: &Path) -> Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        fs::create_dir_all(dir).at(dir)?;
        match dir.parent() {
            Some(parent) => sync_dir(parent),
            None => Ok(()),
        }
    }

    /// Writes a file of `kind` named by `id`.
    pub fn write(&self, kind: FileKind, id: &Id, bytes: &[u8]) -> Result<()> {
        self.write_atomic(&Self::rel_path(kind, id), bytes)
    }

    /// Reads a whole file.
    pub fn read_rel(&self, rel: &str) -> Result<Vec<u8>> {
        let p = self.root.join(rel);
        fs::read(&p).at(p)
    }

    /// Reads a whole file of `kind`.
    pub fn read(&self, kind: FileKind, id: &Id) -> Result<Vec<u8>> {
        self.read_rel(&Self::rel_path(kind, id))
    }

    /// Size of a file.
    pub fn size(&self, kind: FileKind, id: &Id) -> Result<u64> {
        let p = self.path(kind, id);
        Ok(fs::metadata(&p).at(&p)?.len())
    }

    /// Opens a file for positional reads.
    pub fn open(&self, kind: FileKind, id: &Id) -> Result<File> {
        let p = self.path(kind, id);
        File::open(&p).at(p)
    }

    /// Reads `len` bytes at `offset` from an open file, failing on a short read.
    pub fn read_at(file: &File, offset: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; len];
        file.read_exact_at(&mut buf, offset).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::corrupt(what, "pack is shorter than the index says (truncated?)")
            } else {
                Error::io(what, e)
            }
        })?;
        Ok(buf)
    }

    /// Whether a relative path exists.
    pub fn exists_rel(&self, rel: &str) -> bool {
        self.root.join(rel).exists()
    }

    /// Lists the ids of all files of `kind`. Names that are not 64 hex
    /// digits (temporary files, strays) are skipped.
    pub fn list(&self, kind: FileKind) -> Result<Vec<Id>> {
        let dir = self.root.join(kind.dir());
        let mut out = Vec::new();
        let mut dirs = vec![dir.clone()];
        if kind == FileKind::Pack {
            dirs.clear();
            for e in fs::read_dir(&dir).at(&dir)? {
                let e = e.at(&dir)?;
                if e.file_type().at(e.path())?.is_dir() {
                    dirs.push(e.path());
                }
            }
        }
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&d, e)),
            };
            for e in rd {
                let e = e.at(&d)?;
                // Only canonical names: lowercase hex, and packs in the
                // directory their first two digits name.
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(Id::from_hex) else {
                    continue;
                };
                if name.to_str() != Some(id.to_hex().as_str()) {
                    continue;
                }
                if kind == FileKind::Pack
                    && d.file_name().and_then(|n| n.to_str()) != Some(&id.to_hex()[..2])
                {
                    continue;
                }
                out.push(id);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes a file (missing is not an error) and syncs its directory.
    pub fn remove(&self, kind: FileKind, id: &Id) -> Result<()> {
        let p = self.path(kind, id);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(&p, e)),
        }
        if let Some(d) = p.parent() {
            sync_dir(d)?;
        }
        Ok(())
    }
}

impl LocalBackend {
    /// Removes temporary files (`.tmp-*`) older than `min_age` left by
    /// processes that died mid-write. Only call this under an exclusive lock:
    /// then no live writer can own one. Returns how many were removed.
    pub fn remove_stale_temp_files(&self, min_age: std::time::Duration) -> Result<usize> {
        let mut dirs = vec![self.root.clone()];
        for d in ["keys", "snapshots", "index", "data", "locks"] {
            dirs.push(self.root.join(d));
        }
        if let Ok(rd) = fs::read_dir(self.root.join("data")) {
            dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
        let mut removed = 0;
        for d in dirs {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                let name = e.file_name();
                if !name.to_string_lossy().starts_with(".tmp-") {
                    continue;
                }
                let old = e
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| t.elapsed().ok())
                    .is_some_and(|age| age >= min_age);
                if old && fs::remove_file(e.path()).is_ok() {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// fsyncs a directory so that renames and unlinks in it are durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    let f = OpenOptions::new().read(true).open(dir).at(dir)?;
    f.sync_all().at(dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_read_list_remove() {
        let t = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(t.path().join("repo"));
        b.create_layout().unwrap();
        let id = Id::of_file(b"x");
        b.write(FileKind::Pack, &id, b"x").unwrap();
        b.write(FileKind::Snapshot, &id, b"y").unwrap();
        assert_eq!(b.read(FileKind::Pack, &id).unwrap(), b"x");
        assert_eq!(b.list(FileKind::Pack).unwrap(), vec![id]);
        assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![id]);
        fs::write(t.path().join("repo/snapshots/.tmp-abc"), b"junk").unwrap();
        assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![id]);
        b.remove(FileKind::Pack, &id).unwrap();
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
    }
}
