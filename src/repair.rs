//! `repair index`: rebuild the index from the pack headers.
//!
//! Packs are self-describing, so a lost or damaged index costs nothing but
//! time. The new index supersedes every old index file; a pack whose header
//! cannot be read is reported and left in place, never deleted.

use crate::backend::{FileKind, LocalBackend};
use crate::error::Result;
use crate::id::Id;
use crate::index::IndexPack;
use crate::pack;
use crate::repo::Repository;

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

/// Reads one pack's header with positional reads.
pub fn read_pack_header(repo: &Repository, id: &Id) -> Result<Vec<pack::PackEntry>> {
    let what = LocalBackend::rel_path(FileKind::Pack, id);
    let file = repo.backend.open(FileKind::Pack, id)?;
    let len = file
        .metadata()
        .map_err(|e| crate::Error::io(&what, e))?
        .len();
    if len < pack::TRAILER_LEN as u64 {
        return Err(crate::Error::corrupt(&what, "pack too short (truncated?)"));
    }
    let trailer = LocalBackend::read_at(
        &file,
        len - pack::TRAILER_LEN as u64,
        pack::TRAILER_LEN,
        &what,
    )?;
    let hlen = pack::header_len_from_trailer(&trailer, len, &what)?;
    let start = len - pack::TRAILER_LEN as u64 - hlen as u64;
    let sealed = LocalBackend::read_at(&file, start, hlen, &what)?;
    pack::decode_header(&repo.key, &sealed, start, &what)
}

/// Rebuilds the index. The caller holds an exclusive lock.
pub fn repair_index(repo: &mut Repository) -> Result<RepairReport> {
    let old = repo.backend.list(FileKind::Index)?;
    let mut rep = RepairReport {
        old_index_files: old.len(),
        ..Default::default()
    };
    let mut packs = Vec::new();
    for id in repo.backend.list(FileKind::Pack)? {
        match read_pack_header(repo, &id) {
            Ok(blobs) => {
                rep.blobs += blobs.len();
                packs.push(IndexPack { id, blobs });
            }
            Err(e) => rep.unreadable.push(e.to_string()),
        }
    }
    rep.packs = packs.len();
    let new_ids = repo.save_index_replacing(packs, old.clone())?;
    for id in old.iter().filter(|i| !new_ids.contains(i)) {
        repo.backend.remove(FileKind::Index, id)?;
    }
    repo.load_index()?;
    Ok(rep)
}
