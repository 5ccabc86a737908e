//! A repository held in memory, for tests.
//!
//! It keeps the [`Backend`] contract exactly (create-new writes, typed "not
//! found", strict ranges), so the library's commands can be exercised end
//! to end without a disk, and a test can damage or remove any file.

use super::{Backend, FileKind, Handle, Staged, short_read};
use crate::error::{Error, Result};
use crate::format::id::Id;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A repository in memory; clones share the same files.
#[derive(Clone, Default)]
pub struct MemoryBackend {
    files: Arc<Mutex<BTreeMap<Handle, Arc<Vec<u8>>>>>,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MemoryBackend({} files)", self.files().len())
    }
}

impl MemoryBackend {
    /// An empty backend.
    pub fn new() -> MemoryBackend {
        MemoryBackend::default()
    }

    fn files(&self) -> std::sync::MutexGuard<'_, BTreeMap<Handle, Arc<Vec<u8>>>> {
        self.files.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Replaces a file's bytes (tests that simulate damage).
    pub fn corrupt(&self, h: Handle, bytes: Vec<u8>) {
        self.files().insert(h, Arc::new(bytes));
    }

    fn get(&self, h: Handle) -> Result<Arc<Vec<u8>>> {
        self.files()
            .get(&h)
            .cloned()
            .ok_or_else(|| Error::not_found(h.rel_path()))
    }
}

impl Backend for MemoryBackend {
    fn location(&self) -> String {
        "memory".into()
    }

    fn create(&self) -> Result<()> {
        if !self.files().is_empty() {
            return Err(Error::AlreadyExists(
                "memory: the repository is not empty".into(),
            ));
        }
        Ok(())
    }

    fn list(&self, kind: FileKind) -> Result<Vec<(Id, u64)>> {
        Ok(self
            .files()
            .iter()
            .filter_map(|(h, b)| match h {
                Handle::File(k, id) if *k == kind => Some((*id, b.len() as u64)),
                _ => None,
            })
            .collect())
    }

    fn read(&self, h: Handle) -> Result<Vec<u8>> {
        Ok(self.get(h)?.as_ref().clone())
    }

    fn read_range(&self, h: Handle, offset: u64, len: usize) -> Result<Vec<u8>> {
        let bytes = self.get(h)?;
        let start = usize::try_from(offset).map_err(|_| short_read(h))?;
        let end = start.checked_add(len).ok_or_else(|| short_read(h))?;
        bytes
            .get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| short_read(h))
    }

    fn size(&self, h: Handle) -> Result<u64> {
        Ok(self.get(h)?.len() as u64)
    }

    fn write(&self, h: Handle, bytes: &[u8]) -> Result<()> {
        let mut files = self.files();
        if files.contains_key(&h) {
            return Err(Error::AlreadyExists(format!(
                "{}: a file of that name already exists; not replaced",
                h.rel_path()
            )));
        }
        files.insert(h, Arc::new(bytes.to_vec()));
        Ok(())
    }

    fn stage(&self) -> Result<Staged> {
        Ok(Staged::in_memory())
    }

    fn remove(&self, h: Handle) -> Result<()> {
        self.files().remove(&h);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn conformance() {
        super::super::conformance::run_all(&|| Box::new(super::MemoryBackend::new()));
    }
}
