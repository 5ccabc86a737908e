//! `repair index`: rebuild the index from the pack headers.
//!
//! Packs are self-describing, so a lost or damaged index costs nothing but
//! time. The new index supersedes every old index file; a pack whose header
//! cannot be read is reported and left in place, never deleted.

use crate::backend::FileKind;
use crate::error::Result;
use crate::format::index::IndexPack;
use crate::repository::Repository;

/// What the repair did.
#[derive(Debug, Default, serde::Serialize)]
pub struct RepairReport {
    /// Packs indexed.
    pub packs: usize,
    /// Blobs indexed.
    pub blobs: usize,
    /// Old index files replaced.
    pub old_index_files: usize,
    /// Packs whose header could not be read.
    pub unreadable: Vec<String>,
}

/// Rebuilds the index under an exclusive lock.
pub fn repair_index<S>(repo: &Repository<S>) -> Result<RepairReport> {
    repo.check_may_delete("repair index")?;
    let _lock = repo.lock_exclusive()?;
    let old: Vec<_> = repo
        .backend()
        .list(FileKind::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut rep = RepairReport {
        old_index_files: old.len(),
        ..Default::default()
    };
    let mut packs = Vec::new();
    for (id, _) in repo.list_packs()? {
        match repo.read_pack_header(&id) {
            Ok(blobs) => {
                rep.blobs += blobs.len();
                packs.push(IndexPack { id, blobs });
            }
            Err(e) => rep.unreadable.push(e.to_string()),
        }
    }
    rep.packs = packs.len();
    let now = chrono::Utc::now().timestamp();
    let new_ids = repo.save_index_replacing(packs, Vec::new(), old.clone(), now)?;
    for id in old.iter().filter(|i| !new_ids.contains(i)) {
        repo.remove_index_file(id)?;
    }
    Ok(rep)
}
