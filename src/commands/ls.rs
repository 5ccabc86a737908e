//! `ls`: the entries of a snapshot, or of one directory in it.

use crate::commands::select::SnapshotSelector;
use crate::error::Result;
use crate::format::id::Id;
use crate::format::snapshot::{DatabaseRecord, Snapshot};

use crate::repository::Repository;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::format::tree::{Node, NodeKind};

/// A listing of a snapshot.
#[derive(Debug)]
pub struct Listing {
    /// The snapshot's id.
    pub id: Id,
    /// The snapshot.
    pub snapshot: Snapshot,
    /// Every entry at or below the path asked for, depth first, with its
    /// full path in the snapshot.
    pub entries: Vec<(PathBuf, Node)>,
}

impl Listing {
    /// The database record of the file at `path`, if it is one.
    pub fn database(&self, path: &Path) -> Option<&DatabaseRecord> {
        self.snapshot
            .databases
            .iter()
            .find(|d| Path::new(&d.path) == path)
    }
}

/// Lists the entries at or below `path` (default: everything) of the
/// selected snapshot, under a shared lock.
pub fn ls<S>(
    repo: &Repository<S>,
    selector: &SnapshotSelector,
    path: Option<&Path>,
) -> Result<Listing> {
    let _lock = repo.lock_shared()?;
    let repo = repo.with_full_index()?;
    let (id, snapshot) = selector.resolve(&repo)?;
    let start = path.map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let node = crate::repository::browse::lookup(&repo, &snapshot.tree, &start)?;
    let prefix = PathBuf::from("/").join(
        crate::repository::browse::components(&start)?
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect::<PathBuf>(),
    );
    let mut entries = Vec::new();
    if node.kind != NodeKind::Dir || prefix != Path::new("/") {
        entries.push((prefix.clone(), node.clone()));
    }
    if node.is_dir() {
        crate::repository::browse::walk(&repo, &node, &prefix, &mut |p, n| {
            entries.push((p.to_path_buf(), n.clone()));
            true
        })?;
    }
    Ok(Listing {
        id,
        snapshot,
        entries,
    })
}
