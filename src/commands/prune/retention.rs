//! Object Lock upkeep, done by prune: what the kept snapshots need stays
//! under retention, and what cairn hid (forgotten snapshots, removed keys,
//! released locks) is deleted once its retention has ended.
//!
//! Every object gets the bucket's default retention when it is written.
//! An object written longer ago than half that period is looked at (one
//! HEAD), and if its retention ends within half a period it is extended to
//! a full period from now. Prune runs far more often than that, so nothing
//! a kept snapshot needs ever becomes deletable, while an object nothing
//! needs any more (a forgotten snapshot, a pack marked for deletion) is no
//! longer extended and can be deleted once its last retention ends.

use super::{PruneReport, for_each_concurrently};
use crate::backend::{FileKind, Handle, Retention};
use crate::error::Result;
use crate::format::id::Id;
use crate::repository::{FullIndex, Repository};
use std::collections::HashSet;

/// Extends the retention of what is still needed and purges what was
/// hidden. `gone` names the packs and index files that are not needed
/// (marked, deleted or superseded).
pub(super) fn maintain(
    repo: &Repository<FullIndex>,
    rule: &Retention,
    gone: &HashSet<Id>,
    now: i64,
    report: &mut PruneReport,
) -> Result<()> {
    let backend = repo.backend().as_ref();
    let period = rule.seconds();
    let mut old: Vec<Handle> = vec![Handle::Config];
    for kind in [
        FileKind::Key,
        FileKind::Snapshot,
        FileKind::Index,
        FileKind::Pack,
        FileKind::Wal,
    ] {
        for (id, modified) in backend.list_modified(kind)? {
            let unneeded = matches!(kind, FileKind::Index | FileKind::Pack) && gone.contains(&id);
            if !unneeded && modified.saturating_add(period / 2) <= now {
                old.push(Handle::new(kind, id));
            }
        }
    }
    let until = now.saturating_add(period);
    let extended = for_each_concurrently(backend, &old, |h| {
        match backend.retained_until(h) {
            Ok(Some(t)) if t.saturating_sub(now) >= period / 2 => return Ok(false),
            Err(e) if e.is_not_found() => return Ok(false),
            Err(e) => return Err(e),
            _ => {}
        }
        backend.extend_retention(h, rule, until).map(|()| true)
    })?;
    report.retention_extended = extended.into_iter().filter(|e| *e).count();
    for kind in [
        FileKind::Snapshot,
        FileKind::Key,
        FileKind::Lock,
        FileKind::Wal,
        FileKind::Index,
    ] {
        let (deleted, waiting) = backend.purge_hidden(kind)?;
        report.hidden_versions_deleted += deleted;
        report.hidden_versions_waiting += waiting;
    }
    Ok(())
}
