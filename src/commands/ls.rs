//! `ls`: the entries of a snapshot, or of one directory in it, streamed.

use crate::commands::select::SnapshotSelector;
use crate::error::Result;
use crate::format::id::Id;
use crate::format::snapshot::{DatabaseRecord, Snapshot};
use crate::repository::Repository;
use crate::repository::browse;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

pub use crate::format::tree::{Node, NodeKind};

/// The most entries a walk of `snapshot` may visit: twice what it records
/// (files and directories; symlinks and other entries are not counted
/// there) plus a margin. Trees that name more share subtrees in a way no
/// backup writes, and would make a walk run for ever.
pub fn entry_limit(snapshot: &Snapshot) -> u64 {
    let s = &snapshot.summary;
    s.total_files
        .saturating_add(s.dirs)
        .saturating_mul(2)
        .saturating_add(1_000_000)
}

/// The database record of the file at `path` in `snapshot`, if it is one.
pub fn database<'s>(snapshot: &'s Snapshot, path: &Path) -> Option<&'s DatabaseRecord> {
    snapshot
        .databases
        .iter()
        .find(|d| Path::new(&d.path) == path)
}

/// Lists the entries at or below `path` (default: everything) of the
/// selected snapshot, under a shared lock: `start` gets the snapshot first,
/// then `entry` every entry, depth first, with its full path.
pub fn ls<S>(
    repo: &Repository<S>,
    selector: &SnapshotSelector,
    path: Option<&Path>,
    start: &mut dyn FnMut(&Id, &Snapshot) -> Result<()>,
    entry: &mut dyn FnMut(&Path, &Node) -> Result<()>,
) -> Result<()> {
    let repo = repo.with_full_index()?;
    let (id, snapshot) = selector.resolve(&repo)?;
    let at = path.map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let node = browse::lookup(&repo, &snapshot.tree, &at)?;
    let prefix = PathBuf::from("/").join(
        browse::components(&at)?
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect::<PathBuf>(),
    );
    if node.is_dir() {
        browse::count_entries(&repo, &node, entry_limit(&snapshot))?;
    }
    start(&id, &snapshot)?;
    if node.kind != NodeKind::Dir || prefix != Path::new("/") {
        entry(&prefix, &node)?;
    }
    if node.is_dir() {
        browse::walk(&repo, &node, &prefix, &mut |p, n| {
            entry(p, n)?;
            Ok(true)
        })?;
    }
    Ok(())
}
