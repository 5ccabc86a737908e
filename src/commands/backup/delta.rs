//! Database files stored as deltas against an earlier version of themselves.
//!
//! SQLite rewrites pages in place: in an hourly workload about 15% of the
//! pages change, scattered over the file, and a changed page usually differs
//! from its previous version in a few rows. Stored alone, each changed page
//! costs its full compressed size; compressed with its previous version as
//! zstd dictionary it costs about a tenth of that (README, "Database
//! backups").
//!
//! The scheme, kept deliberately shallow so that decoding and prune stay
//! simple (format-spec/v1-databases.md, "Delta blobs"):
//!
//! * A database version stored with ordinary blobs only can serve as a
//!   *base*. The first backup of a database is such a version.
//! * A later backup of the same path stores the page at position i, when it
//!   differs from the base's page at position i and is not stored yet, as a
//!   delta against that base page (if the delta is smaller than the page
//!   compressed alone), and records the base in the file's node. Prune keeps
//!   everything a node's base references; a delta never has a delta as base.
//! * When most of the pages of the previous version differ from its base,
//!   the base has served its time for a SQLite database: the next backup
//!   stores ordinary blobs again and becomes the new base, so an old base
//!   is not kept alive for a file that no longer resembles it
//!   ([`OnRebase::Fresh`]). A PostgreSQL relation file keeps its base
//!   ([`OnRebase::KeepBase`]): a chunk is stored as a delta only when that
//!   is smaller than the chunk alone, so a version never costs more than
//!   storing it afresh would, while a table rewritten in a burst and then
//!   left alone is not stored again, and a table whose rows change all
//!   over costs its deltas (measured on pgbench, against a fresh copy:
//!   20 MB instead of 50 MB).

use crate::error::Result;
use crate::format::id::Id;
use crate::format::tree::{BaseContent, Node, NodeKind};
use crate::repository::{BackupIndex, Repository};
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};

/// A SQLite database starts a new base when more than this share (numerator,
/// denominator) of the previous version's blobs differ from its base's
/// blobs at the same positions.
pub const REBASE_WHEN_DIFFERENT: (usize, usize) = (4, 5);

/// Most pages a delta plan holds in memory (64M pages: a 256 GiB database
/// of 4 KiB pages); a larger database is stored without deltas.
pub const MAX_PLAN_IDS: usize = 1 << 26;

/// How a database file is stored against a base version.
#[derive(Debug)]
pub struct DeltaPlan {
    /// The base, as recorded in the node.
    pub base: BaseContent,
    /// The base's data blob ids, by position.
    pub base_ids: Vec<Id>,
    /// Delta blobs the new version references (stored now or before).
    pub deltas_used: AtomicU64,
}

impl DeltaPlan {
    /// The base blob at chunk position `pos`, if the base is that long.
    pub fn base_at(&self, pos: usize) -> Option<&Id> {
        self.base_ids.get(pos)
    }

    /// Counts one delta blob referenced by the new version.
    pub fn note_delta(&self) {
        self.deltas_used.fetch_add(1, Ordering::Relaxed);
    }

    /// The base to record in the new node: only if some blob is a delta
    /// (otherwise the new version is itself a fine base for the next one).
    pub fn recorded_base(&self) -> Option<BaseContent> {
        (self.deltas_used.load(Ordering::Relaxed) > 0).then(|| self.base.clone())
    }
}

/// What a new version does when its previous version no longer resembles
/// the base.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OnRebase {
    /// Store ordinary blobs: this version becomes the new base.
    Fresh,
    /// Keep the base: deltas against it wherever they are smaller.
    KeepBase,
}

/// Chooses the base for a new version of the database stored at `path`,
/// from that path's node in the parent snapshot (root tree `parent_root`).
/// `None` means "store ordinary blobs": no usable previous version, a
/// previous version that no longer resembles its base, or a base that cannot
/// be read (a damaged repository costs space, never correctness). Loads the
/// base blobs' locations into the repository's index (a backup's index holds
/// only tree locations).
pub fn plan(
    repo: &mut Repository<BackupIndex>,
    parent_root: Option<&Id>,
    path: &std::path::Path,
) -> Result<Option<DeltaPlan>> {
    let Some(root) = parent_root else {
        return Ok(None);
    };
    let Ok(prev) = crate::repository::browse::lookup(repo, root, path) else {
        return Ok(None);
    };
    let mut plans = plan_all(repo, vec![(path.to_path_buf(), prev)], OnRebase::Fresh)?;
    Ok(plans.remove(path))
}

/// Plans many files at once from their previous versions' nodes, loading
/// the base blobs' locations with one pass over the index; files without a
/// usable base are left out.
pub fn plan_all(
    repo: &mut Repository<BackupIndex>,
    previous: Vec<(std::path::PathBuf, Node)>,
    on_rebase: OnRebase,
) -> Result<HashMap<std::path::PathBuf, DeltaPlan>> {
    let mut plans = HashMap::new();
    for (path, prev) in previous {
        if let Some(p) = choose_base(repo, &prev, on_rebase) {
            plans.insert(path, p);
        }
    }
    let wanted: HashSet<Id> = plans
        .values()
        .flat_map(|p| p.base_ids.iter().copied())
        .collect();
    if wanted.is_empty() {
        return Ok(plans);
    }
    repo.load_data_locations(&wanted)?;
    plans.retain(|_, p| p.base_ids.iter().all(|id| repo.locate(id).is_some()));
    Ok(plans)
}

/// The base for the next version of the file whose previous version is
/// `prev` (its locations not yet loaded).
fn choose_base(
    repo: &Repository<BackupIndex>,
    prev: &Node,
    on_rebase: OnRebase,
) -> Option<DeltaPlan> {
    if prev.kind != NodeKind::File || prev.content.is_empty() {
        return None;
    }
    // A database of `size` bytes has at most size / 512 pages (the smallest
    // SQLite page); more ids than that is a damaged or hostile list.
    let max_ids = usize::try_from(prev.size / 512 + 1)
        .unwrap_or(usize::MAX)
        .min(MAX_PLAN_IDS);
    let prev_ids = repo.data_ids_at_most(prev, max_ids).ok()?;
    let (base, base_ids) = match &prev.delta_base {
        // The previous version is ordinary blobs only: it becomes the base.
        None => (
            BaseContent {
                depth: prev.content_depth,
                content: prev.content.clone(),
            },
            prev_ids,
        ),
        Some(b) => {
            let base_ids: Result<Vec<Id>> = repo
                .content_ids(&b.content, b.depth)
                .and_then(|ids| ids.take(max_ids.saturating_add(1)).collect());
            let base_ids = base_ids.ok()?;
            if base_ids.len() > max_ids {
                return None;
            }
            let differing = prev_ids
                .iter()
                .enumerate()
                .filter(|(i, id)| base_ids.get(*i) != Some(id))
                .count();
            let (num, den) = REBASE_WHEN_DIFFERENT;
            if differing * den > prev_ids.len() * num && on_rebase == OnRebase::Fresh {
                return None;
            }
            (b.clone(), base_ids)
        }
    };
    Some(DeltaPlan {
        base,
        base_ids,
        deltas_used: AtomicU64::new(0),
    })
}
