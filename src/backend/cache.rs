//! A local cache in front of a remote backend.
//!
//! On object storage every request costs time and money, and most of what
//! a command reads again and again never changes: index files, snapshots,
//! and the packs that hold tree blobs and content lists (what an unchanged
//! backup reads to compare with its parent). All of them are
//! content-addressed, so a cached copy is either exactly right or damaged,
//! and damage is detectable: a cached file is used only after its BLAKE3
//! hash matches its name (once per process for packs), and is fetched again
//! otherwise. Files the remote no longer lists are removed from the cache
//! when a listing shows it. The cache is never needed: deleting it costs
//! only requests.
//!
//! Layout: `DIR/<repository id>/{index,snapshots,data}/<id>` and a
//! `CACHEDIR.TAG`, so backup tools skip it.

use super::{Backend, FileKind, Handle, Staged};
use crate::error::{Error, IoContext, Result};
use crate::format::id::Id;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A remote backend with a local cache.
pub struct CachedBackend {
    remote: Arc<dyn Backend>,
    dir: PathBuf,
    /// Cached packs whose hash was checked in this process.
    verified: Mutex<HashSet<Id>>,
}

impl std::fmt::Debug for CachedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "CachedBackend({:?}, {})",
            self.remote,
            self.dir.display()
        )
    }
}

/// The default cache directory: `$XDG_CACHE_HOME/cairn`, else `~/.cache/cairn`.
pub fn default_dir() -> Option<PathBuf> {
    let env = |k: &str| {
        std::env::var_os(k)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    env("XDG_CACHE_HOME")
        .or_else(|| env("HOME").map(|h| h.join(".cache")))
        .map(|d| d.join("cairn"))
}

const TAG: &str = "Signature: 8a477f597d28d172789f06886806bc55\n# This directory is a cache of cairn (https://github.com): it can be deleted at any time.\n";

impl CachedBackend {
    /// A cache for the repository with id `repo_id` below `base`.
    pub fn new(remote: Arc<dyn Backend>, base: &Path, repo_id: &str) -> Result<CachedBackend> {
        let dir = base.join(repo_id);
        for sub in ["index", "snapshots", "data", "wal"] {
            let p = dir.join(sub);
            std::fs::create_dir_all(&p).at(&p)?;
        }
        let tag = base.join("CACHEDIR.TAG");
        if !tag.exists() {
            let _ = std::fs::write(&tag, TAG);
        }
        Ok(CachedBackend {
            remote,
            dir,
            verified: Mutex::new(HashSet::new()),
        })
    }

    /// The cache's directory for this repository.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where a cached file lives, for the kinds that are cached.
    fn path(&self, h: Handle) -> Option<PathBuf> {
        match h {
            Handle::File(FileKind::Index, id) => Some(self.dir.join("index").join(id.to_hex())),
            Handle::File(FileKind::Snapshot, id) => {
                Some(self.dir.join("snapshots").join(id.to_hex()))
            }
            Handle::File(FileKind::Pack, id) => Some(self.dir.join("data").join(id.to_hex())),
            Handle::File(FileKind::Wal, id) => Some(self.dir.join("wal").join(id.to_hex())),
            _ => None,
        }
    }

    /// Stores bytes in the cache (best effort: the cache is never needed).
    fn put(&self, h: Handle, bytes: &[u8]) {
        let Some(p) = self.path(h) else { return };
        let Some(dir) = p.parent() else { return };
        if let Ok(mut tmp) = tempfile::Builder::new().prefix(".tmp-").tempfile_in(dir) {
            use std::io::Write;
            // WAL records are not named by their content: their cached copy
            // carries its own hash in front.
            if matches!(h, Handle::File(FileKind::Wal, _))
                && tmp.write_all(blake3::hash(bytes).as_bytes()).is_err()
            {
                return;
            }
            if tmp.write_all(bytes).is_ok()
                && tmp.persist(&p).is_ok()
                && let Handle::File(FileKind::Pack, id) = h
            {
                crate::sys::lock(&self.verified).insert(id);
            }
        }
    }

    /// A cached file's bytes if they are what its name says.
    fn get(&self, h: Handle) -> Option<Vec<u8>> {
        let Handle::File(_, id) = h else { return None };
        let p = self.path(h)?;
        let bytes = std::fs::read(&p).ok()?;
        if let Handle::File(FileKind::Wal, _) = h {
            if bytes.len() >= 32 && blake3::hash(&bytes[32..]).as_bytes()[..] == bytes[..32] {
                return Some(bytes[32..].to_vec());
            }
            let _ = std::fs::remove_file(&p);
            return None;
        }
        if Id::of_file(&bytes) == id {
            Some(bytes)
        } else {
            let _ = std::fs::remove_file(&p);
            None
        }
    }

    /// An open cached pack, checked once per process.
    fn pack_file(&self, h: Handle) -> Option<std::fs::File> {
        let Handle::File(FileKind::Pack, id) = h else {
            return None;
        };
        let p = self.path(h)?;
        let file = std::fs::File::open(&p).ok()?;
        if !crate::sys::lock(&self.verified).contains(&id) {
            self.get(h)?;
            crate::sys::lock(&self.verified).insert(id);
        }
        Some(file)
    }

    /// Removes cached files of `kind` that the remote listing lacks.
    fn prune_stale(&self, kind: FileKind, listed: &[(Id, u64)]) {
        let Some(sample) = self.path(Handle::File(kind, Id::default())) else {
            return;
        };
        let Some(dir) = sample.parent() else { return };
        let keep: HashSet<String> = listed.iter().map(|(id, _)| id.to_hex()).collect();
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if !keep.contains(&name) {
                    let _ = std::fs::remove_file(e.path());
                }
            }
        }
    }
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.remote.location()
    }

    fn create(&self) -> Result<()> {
        self.remote.create()
    }

    fn exists(&self, h: Handle) -> Result<bool> {
        self.remote.exists(h)
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        let listed = self.remote.list(kind)?;
        self.prune_stale(kind, &listed);
        Ok(listed)
    }

    fn read(&self, h: Handle) -> Result<Vec<u8>> {
        if matches!(
            h,
            Handle::File(FileKind::Index | FileKind::Snapshot | FileKind::Wal, _)
        ) {
            if let Some(b) = self.get(h) {
                return Ok(b);
            }
            let b = self.remote.read(h)?;
            self.put(h, &b);
            return Ok(b);
        }
        if let Some(mut file) = self.pack_file(h) {
            use std::io::Read;
            let mut b = Vec::new();
            if file.read_to_end(&mut b).is_ok() {
                return Ok(b);
            }
        }
        self.remote.read(h)
    }

    fn read_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        if let Some(file) = self.pack_file(h) {
            use std::os::unix::fs::FileExt;
            let mut buf = vec![0u8; len];
            if file.read_exact_at(&mut buf, offset).is_ok() {
                return Ok(buf);
            }
        }
        self.remote.read_range(h, offset, len)
    }

    fn read_metadata_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        if self.pack_file(h).is_none() && matches!(h, Handle::File(FileKind::Pack, _)) {
            // A pack of tree blobs: keep all of it, the next tree read (and
            // the next backup) will want its neighbours.
            let whole = self.remote.read(h)?;
            let Handle::File(_, id) = h else {
                unreachable!()
            };
            if Id::of_file(&whole) != id {
                return Err(Error::corrupt(
                    h.rel_path(),
                    "content does not match its name (damaged)",
                ));
            }
            self.put(h, &whole);
            let start = usize::try_from(offset).map_err(|_| super::short_read(h))?;
            let end = start.checked_add(len).ok_or_else(|| super::short_read(h))?;
            return whole
                .get(start..end)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| super::short_read(h));
        }
        self.read_range(h, offset, len)
    }

    fn size(&self, h: Handle) -> Result<u64> {
        self.remote.size(h)
    }

    fn write(&self, h: Handle, bytes: &[u8]) -> Result<()> {
        self.remote.write(h, bytes)?;
        if matches!(
            h,
            Handle::File(FileKind::Index | FileKind::Snapshot | FileKind::Wal, _)
        ) {
            self.put(h, bytes);
        }
        Ok(())
    }

    fn stage(&self) -> Result<Staged> {
        self.remote.stage()
    }

    fn write_staged(&self, h: Handle, staged: Staged) -> Result<()> {
        self.remote.write_staged(h, staged)
    }

    fn write_staged_metadata(&self, h: Handle, staged: Staged) -> Result<()> {
        let bytes = staged.into_bytes()?;
        self.remote.write(h, &bytes)?;
        self.put(h, &bytes);
        Ok(())
    }

    fn remove(&self, h: Handle) -> Result<()> {
        self.remote.remove(h)?;
        if let Some(p) = self.path(h) {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    fn write_concurrency(&self) -> usize {
        self.remote.write_concurrency()
    }

    fn is_remote(&self) -> bool {
        true
    }

    fn remove_stale_temporaries(&self, min_age: std::time::Duration) -> Result<usize> {
        self.remote.remove_stale_temporaries(min_age)
    }

    fn check_may_delete(&self) -> Result<()> {
        self.remote.check_may_delete()
    }

    fn remove_batch(&self, hs: &[Handle]) -> Result<()> {
        self.remote.remove_batch(hs)?;
        for h in hs {
            if let Some(p) = self.path(*h) {
                let _ = std::fs::remove_file(p);
            }
        }
        Ok(())
    }

    fn enable_object_lock(&self, rule: &super::Retention) -> Result<()> {
        self.remote.enable_object_lock(rule)
    }

    fn write_retained(&self, rule: &super::Retention) {
        self.remote.write_retained(rule)
    }

    fn object_lock(&self) -> Result<Option<super::Retention>> {
        self.remote.object_lock()
    }

    fn retained_until(&self, h: Handle) -> Result<Option<i64>> {
        self.remote.retained_until(h)
    }

    fn extend_retention(&self, h: Handle, rule: &super::Retention, until: i64) -> Result<()> {
        self.remote.extend_retention(h, rule, until)
    }

    fn list_modified(&self, kind: FileKind) -> Result<Vec<(Id, i64)>> {
        self.remote.list_modified(kind)
    }

    fn hide(&self, h: Handle) -> Result<()> {
        self.remote.hide(h)?;
        if let Some(p) = self.path(h) {
            let _ = std::fs::remove_file(p);
        }
        Ok(())
    }

    fn purge_hidden(&self, kind: FileKind) -> Result<(usize, usize)> {
        self.remote.purge_hidden(kind)
    }

    fn recover_original(&self, h: Handle, verify: &dyn Fn(&[u8]) -> bool) -> Result<bool> {
        // The cached copy is what failed (or came from the same bad
        // version): drop it either way.
        if let Some(p) = self.path(h) {
            let _ = std::fs::remove_file(p);
        }
        self.remote.recover_original(h, verify)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::MemoryBackend;

    #[test]
    fn conformance() {
        let t = tempfile::tempdir().unwrap();
        let n = std::sync::atomic::AtomicU32::new(0);
        super::super::conformance::run_all(&|| {
            let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            Box::new(
                CachedBackend::new(Arc::new(MemoryBackend::new()), t.path(), &format!("r{i}"))
                    .unwrap(),
            )
        });
    }

    #[test]
    fn damaged_and_stale_cache_entries_are_not_used() {
        let t = tempfile::tempdir().unwrap();
        let remote = Arc::new(MemoryBackend::new());
        let c = CachedBackend::new(remote.clone(), t.path(), "r").unwrap();
        let bytes = b"an index file".to_vec();
        let id = Id::of_file(&bytes);
        let h = Handle::new(FileKind::Index, id);
        c.write(h, &bytes).unwrap();
        let cached = t.path().join("r/index").join(id.to_hex());
        assert_eq!(std::fs::read(&cached).unwrap(), bytes);
        // Damage in the cache is noticed and the remote copy used.
        std::fs::write(&cached, b"damaged").unwrap();
        assert_eq!(c.read(h).unwrap(), bytes);
        assert_eq!(std::fs::read(&cached).unwrap(), bytes);
        // Removed remotely by someone else: a listing drops the cached copy.
        remote.remove(h).unwrap();
        assert!(c.list(FileKind::Index).unwrap().is_empty());
        assert!(!cached.exists());
    }
}
