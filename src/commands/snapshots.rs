//! `snapshots`: the snapshots passing a filter, oldest first.

use crate::error::Result;
use crate::format::id::Id;

use crate::repository::{Repository, SnapshotFilter};

pub use crate::format::snapshot::{CheckKind, DatabaseRecord, Snapshot, Summary};

/// The snapshots passing `filter`, oldest first (under a shared lock).
pub fn list<S>(repo: &Repository<S>, filter: &SnapshotFilter) -> Result<Vec<(Id, Snapshot)>> {
    let _lock = repo.lock_shared()?;
    Ok(repo
        .load_snapshots()?
        .into_iter()
        .filter(|(_, s)| filter.matches(s))
        .collect())
}
