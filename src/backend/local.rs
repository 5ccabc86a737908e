//! A repository in a local folder.
//!
//! Layout: `config`, and one folder per [`FileKind`] (`keys/`, `snapshots/`,
//! `index/`, `locks/`, and `data/00/` … `data/ff/` for packs). Every write
//! goes to a temporary name (`.tmp-…`) in the target folder, is fsynced,
//! renamed into place without replacing anything (`renameat2`
//! `RENAME_NOREPLACE`, or link and unlink), and the folder is fsynced, so a
//! crash leaves either no file or the complete one. Packs are staged as
//! temporary files inside `data/`, so storing one is a rename, not a copy.
//! Positional reads keep a small cache of open pack files.

use super::{Backend, FileKind, Handle, Staged, StagedData, parse_name, short_read};
use crate::error::{Error, IoContext, Result};
use crate::format::id::Id;
use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Open pack files kept for positional reads.
const HANDLE_CACHE: usize = 128;

/// A repository in a local directory.
pub struct LocalBackend {
    root: PathBuf,
    handles: Mutex<HashMap<Id, Arc<File>>>,
}

impl std::fmt::Debug for LocalBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LocalBackend({})", self.root.display())
    }
}

impl LocalBackend {
    /// A backend rooted at `root` (not checked).
    pub fn new(root: impl Into<PathBuf>) -> LocalBackend {
        LocalBackend {
            root: root.into(),
            handles: Mutex::new(HashMap::new()),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Absolute path of a file.
    pub fn path(&self, h: Handle) -> PathBuf {
        self.root.join(h.rel_path())
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

    /// Moves a complete, fsynced temporary file to `h` without replacing
    /// anything, then makes the rename durable.
    fn persist(&self, tmp: tempfile::NamedTempFile, h: Handle) -> Result<()> {
        let target = self.path(h);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        tmp.as_file().sync_all().at(tmp.path())?;
        match tmp.persist_noclobber(&target) {
            Ok(_) => {}
            Err(e) if e.error.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(already_exists(h));
            }
            Err(e) => return Err(Error::io(&target, e.error)),
        }
        sync_dir(&dir)
    }

    fn open_cached(&self, h: Handle) -> Result<Arc<File>> {
        let Handle::File(FileKind::Pack, id) = h else {
            return Ok(Arc::new(open(&self.path(h), h)?));
        };
        let mut cache = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(f) = cache.get(&id) {
            return Ok(f.clone());
        }
        if cache.len() >= HANDLE_CACHE {
            cache.clear();
        }
        let f = Arc::new(open(&self.path(h), h)?);
        cache.insert(id, f.clone());
        Ok(f)
    }

    fn forget_handle(&self, h: Handle) {
        if let Handle::File(FileKind::Pack, id) = h {
            self.handles
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id);
        }
    }
}

fn already_exists(h: Handle) -> Error {
    Error::AlreadyExists(format!(
        "{}: a file of that name already exists; not replaced",
        h.rel_path()
    ))
}

/// Maps "no such file" to [`Error::NotFound`], anything else to an I/O error.
fn io_error(path: &Path, h: Handle, e: std::io::Error) -> Error {
    // A repository path that is a file: nothing can be inside it.
    if matches!(
        e.kind(),
        std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
    ) {
        Error::not_found(h.rel_path())
    } else {
        Error::io(path, e)
    }
}

fn open(path: &Path, h: Handle) -> Result<File> {
    File::open(path).map_err(|e| io_error(path, h, e))
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn create(&self) -> Result<()> {
        if self.root.join("config").exists() {
            return Err(Error::AlreadyExists(format!(
                "{}: a repository already exists here; refusing to overwrite it",
                self.root.display()
            )));
        }
        if self.root.exists() {
            let non_empty = fs::read_dir(&self.root).at(&self.root)?.next().is_some();
            if non_empty {
                return Err(Error::AlreadyExists(format!(
                    "{}: directory is not empty; refusing to create a repository in it",
                    self.root.display()
                )));
            }
        }
        fs::create_dir_all(&self.root).at(&self.root)?;
        for kind in FileKind::ALL {
            let p = self.root.join(kind.dir());
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

    fn list(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        let dir = self.root.join(kind.dir());
        let mut dirs = Vec::new();
        if kind == FileKind::Pack {
            let rd = match fs::read_dir(&dir) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                Err(e) => return Err(Error::io(&dir, e)),
            };
            for e in rd {
                let e = e.at(&dir)?;
                if e.file_type().at(e.path())?.is_dir() {
                    dirs.push(e.path());
                }
            }
        } else {
            dirs.push(dir);
        }
        let mut out = Vec::new();
        for d in dirs {
            let rd = match fs::read_dir(&d) {
                Ok(rd) => rd,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&d, e)),
            };
            for e in rd {
                let e = e.at(&d)?;
                let name = e.file_name();
                let Some(id) = name.to_str().and_then(parse_name) else {
                    continue;
                };
                if kind == FileKind::Pack
                    && d.file_name().and_then(|n| n.to_str()) != Some(&id.to_hex()[..2])
                {
                    continue;
                }
                // Removed between reading the folder and looking at it.
                let Ok(md) = e.metadata() else { continue };
                if md.is_file() {
                    out.push((id, md.len()));
                }
            }
        }
        out.sort();
        Ok(out)
    }

    fn read(&self, h: Handle) -> Result<Vec<u8>> {
        let p = self.path(h);
        fs::read(&p).map_err(|e| io_error(&p, h, e))
    }

    fn read_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        let file = self.open_cached(h)?;
        let size = file
            .metadata()
            .map_err(|e| Error::io(self.path(h), e))?
            .len();
        if offset.checked_add(len as u64).is_none_or(|end| end > size) {
            return Err(short_read(h));
        }
        let mut buf = vec![0u8; len];
        match file.read_exact_at(&mut buf, offset) {
            Ok(()) => Ok(buf),
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Err(short_read(h)),
            Err(e) => Err(Error::io(self.path(h), e)),
        }
    }

    fn size(&self, h: Handle) -> Result<u64> {
        let p = self.path(h);
        let md = fs::metadata(&p).map_err(|e| io_error(&p, h, e))?;
        Ok(md.len())
    }

    fn write(&self, h: Handle, bytes: &[u8]) -> Result<()> {
        let target = self.path(h);
        let dir = target.parent().unwrap_or(&self.root).to_path_buf();
        self.ensure_dir(&dir)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".tmp-")
            .tempfile_in(&dir)
            .at(&dir)?;
        tmp.write_all(bytes).at(tmp.path())?;
        self.persist(tmp, h)
    }

    fn stage(&self) -> Result<Staged> {
        let dir = self.root.join("data");
        Staged::temp_file_in(&dir)
    }

    fn write_staged(&self, h: Handle, staged: Staged) -> Result<()> {
        match staged.into_inner()? {
            StagedData::Memory(bytes) => self.write(h, &bytes),
            StagedData::File(tmp) => {
                let target = self.path(h);
                let dir = target.parent().unwrap_or(&self.root).to_path_buf();
                self.ensure_dir(&dir)?;
                self.persist(tmp, h)
            }
        }
    }

    fn remove(&self, h: Handle) -> Result<()> {
        self.forget_handle(h);
        let p = self.path(h);
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

    fn remove_stale_temporaries(&self, min_age: Duration) -> Result<usize> {
        let mut dirs = vec![self.root.clone()];
        for kind in FileKind::ALL {
            dirs.push(self.root.join(kind.dir()));
        }
        if let Ok(rd) = fs::read_dir(self.root.join("data")) {
            dirs.extend(rd.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()));
        }
        let mut removed = 0;
        for d in dirs {
            let Ok(rd) = fs::read_dir(&d) else { continue };
            for e in rd.flatten() {
                if !e.file_name().to_string_lossy().starts_with(".tmp-") {
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
    fn conformance() {
        let t = tempfile::tempdir().unwrap();
        super::super::conformance::run_all(&|| {
            let dir = tempfile::tempdir_in(t.path()).unwrap().keep();
            let b = LocalBackend::new(dir.join("repo"));
            b.create().unwrap();
            Box::new(b)
        });
    }

    #[test]
    fn temporaries_and_strays_are_not_listed() {
        let t = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(t.path().join("repo"));
        b.create().unwrap();
        let id = Id::of_file(b"x");
        b.write(Handle::new(FileKind::Snapshot, id), b"x").unwrap();
        fs::write(t.path().join("repo/snapshots/.tmp-abc"), b"junk").unwrap();
        fs::write(t.path().join("repo/snapshots/README"), b"junk").unwrap();
        let upper = id.to_hex().to_uppercase();
        fs::write(t.path().join("repo/snapshots").join(upper), b"x").unwrap();
        // A pack in the wrong fan-out folder is not a pack.
        let other = if id.to_hex().starts_with("00") {
            "01"
        } else {
            "00"
        };
        fs::write(
            t.path().join("repo/data").join(other).join(id.to_hex()),
            b"x",
        )
        .unwrap();
        assert_eq!(b.list(FileKind::Snapshot).unwrap(), vec![(id, 1)]);
        assert!(b.list(FileKind::Pack).unwrap().is_empty());
        // An old temporary is removed on request, a young one is not.
        assert_eq!(
            b.remove_stale_temporaries(Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert_eq!(b.remove_stale_temporaries(Duration::ZERO).unwrap(), 1);
    }

    #[test]
    fn create_refuses_a_non_empty_folder() {
        let t = tempfile::tempdir().unwrap();
        fs::write(t.path().join("something"), b"x").unwrap();
        let b = LocalBackend::new(t.path());
        assert!(matches!(b.create(), Err(Error::AlreadyExists(_))));
        assert!(!t.path().join("keys").exists());
    }
}
