//! Prune: delete what no snapshot references, repack what is mostly unused.
//!
//! Backups keep running while prune works: prune takes only the lock that
//! keeps deleting commands apart, and deletes in two phases
//! (format-spec/v1-locks-prune.md). A pack nothing references is first
//! *marked* in the index; backups do not deduplicate against marked packs,
//! readers still read them, and a later prune deletes a marked pack only
//! once it has been marked for longer than the grace period (longer than
//! any backup runs) and still no snapshot needs it. A backup that started
//! before the mark and reused a blob of the pack finishes within the grace
//! period, and its snapshot then brings the pack back to life. Index files
//! that prune supersedes wait out the grace period the same way, so a
//! reader that listed them can still read them. `--instant-delete` skips
//! the wait, for a repository nobody else writes to.
//!
//! First a survey (which blobs the snapshots reach, which packs exist),
//! then a plan (keep, repack or mark each pack; which marks are due), then
//! the execution, in an order chosen so that a kill at any instant loses
//! nothing a snapshot references and a rerun finishes the job:
//!
//! 1. write the new packs (blobs still used, copied out of packs that are
//!    mostly garbage) and make them durable;
//! 2. write one new index describing every pack that stays and every pack
//!    still waiting, which *supersedes* every index file that existed before;
//! 3. delete the superseded index files whose grace period has passed;
//! 4. delete the marked packs whose grace period has passed.
//!
//! Until step 2 is durable the old index is authoritative and all its packs
//! exist; after it, the new index is, and it lists only packs that exist.
//! Every copied blob is decrypted and re-hashed before it is trusted.

use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::id::Id;
use crate::format::index::{IndexPack, MarkedPack};
use crate::format::pack::PackEntry;
use crate::repository::index::{BlobLocation, Index, PruneState, load_prune_state};
use crate::repository::packer::Packer;
use crate::repository::reachable::{Reachable, reachable};
use crate::repository::{FullIndex, Repository};
use std::collections::{HashMap, HashSet};

mod retention;

/// How aggressively to reclaim space.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Unused space to tolerate in the repository after prune, as a
    /// fraction of it (0.0..=1.0): the packs with the largest unused share
    /// are repacked until what is left is within it (as restic does).
    pub max_unused: f64,
    /// Also repack packs smaller than a quarter of the target pack size.
    pub repack_small: bool,
    /// Only report what would be done.
    pub dry_run: bool,
    /// Snapshots to count as already removed (a `forget --dry-run --prune`
    /// reports what forgetting them would free).
    pub assume_removed: Vec<Id>,
    /// Repack at most this many bytes of packs in one run (the rest waits
    /// for the next): bounds the downloads and uploads of one prune.
    pub max_repack_bytes: Option<u64>,
    /// How long a pack or index file stays marked before it is deleted:
    /// longer than any backup runs.
    pub grace: std::time::Duration,
    /// Delete at once instead of marking (nobody else writes to the
    /// repository).
    pub instant_delete: bool,
}

/// The default grace period: a day.
pub const DEFAULT_GRACE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Parses a `--max-unused` value such as `5%` or `5` (percent) into a
/// fraction.
pub fn parse_max_unused(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| Error::InvalidInput(format!("bad percentage {s:?}")))?;
    if !(0.0..=100.0).contains(&v) {
        return Err(Error::InvalidInput(format!(
            "percentage {s:?} out of range 0..100"
        )));
    }
    Ok(v / 100.0)
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            repack_small: false,
            dry_run: false,
            assume_removed: Vec::new(),
            max_repack_bytes: None,
            grace: DEFAULT_GRACE,
            instant_delete: false,
        }
    }
}

/// What prune found and did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct PruneReport {
    /// Snapshots whose data is kept.
    pub snapshots: usize,
    /// Packs before.
    pub packs_before: usize,
    /// Packs deleted because nothing in them is used.
    pub packs_deleted: usize,
    /// Packs rewritten because much of them is unused (or they are small).
    pub packs_repacked: usize,
    /// Pack files not in any index (left by interrupted backups), deleted.
    pub packs_unindexed: usize,
    /// New packs written by repacking.
    pub packs_written: usize,
    /// Blobs referenced by no snapshot (incl. duplicate copies).
    pub blobs_unused: u64,
    /// Their stored size.
    pub bytes_unused: u64,
    /// Unused bytes left in kept packs (below the repack threshold).
    pub bytes_unused_kept: u64,
    /// Bytes of pack files before.
    pub size_before: u64,
    /// Bytes of pack files after (estimated for a dry run).
    pub size_after: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Temporary files of interrupted writers removed.
    pub temp_files_removed: usize,
    /// Used blobs stored more than once whose surviving copy was read and
    /// authenticated before any other copy could go.
    pub duplicates_checked: u64,
    /// Packs marked for deletion by this run (deleted by a later prune once
    /// the grace period has passed).
    pub packs_marked: usize,
    /// Their size.
    pub bytes_marked: u64,
    /// Packs marked earlier whose grace period has passed, deleted now.
    pub packs_due_deleted: usize,
    /// Packs marked earlier that still wait for their grace period.
    pub packs_waiting: usize,
    /// Their size.
    pub bytes_waiting: u64,
    /// When the first of them may be deleted (RFC 3339), if any waits.
    pub next_deletion: Option<String>,
    /// Marked packs a snapshot has come to need (a backup that ran while
    /// they were marked): listed as live again.
    pub packs_revived: usize,
    /// Index files deleted (superseded for longer than the grace period).
    pub index_files_deleted: usize,
    /// Whether this run deleted at once instead of marking.
    pub instant_delete: bool,
    /// Object Lock: packs due for deletion still under retention (they
    /// stay marked).
    pub packs_retained: usize,
    /// Object Lock: superseded index files still under retention.
    pub index_files_retained: usize,
    /// When the first of those retentions ends (RFC 3339).
    pub retained_until: Option<String>,
    /// Object Lock: objects whose retention was extended because kept
    /// snapshots need them.
    pub retention_extended: usize,
    /// Object Lock: retained versions of hidden files (forgotten
    /// snapshots, removed keys, released locks) deleted now that their
    /// retention has ended, and those still waiting.
    pub hidden_versions_deleted: usize,
    /// See `hidden_versions_deleted`.
    pub hidden_versions_waiting: usize,
}

impl PruneReport {
    /// Space returned.
    pub fn bytes_freed(&self) -> u64 {
        self.size_before.saturating_sub(self.size_after)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Action {
    Keep,
    Delete,
    Repack,
}

/// What prune learns before deciding anything.
struct Survey {
    repo: Repository<FullIndex>,
    /// Every index file there was when prune started.
    index_files: Vec<Id>,
    /// Since when each superseded index file has been superseded.
    superseded_since: HashMap<Id, i64>,
    /// Packs the live index lists, once each, and marked packs a snapshot
    /// needs again.
    packs: Vec<IndexPack>,
    /// Packs marked for deletion that nothing needs.
    marked: Vec<MarkedPack>,
    /// How many marked packs a snapshot needs again.
    revived: usize,
    /// Pack files on disk that no index lists or marks.
    unindexed: Vec<Id>,
    /// Size of every pack file on disk.
    size_of: HashMap<Id, u64>,
    /// Blobs the kept snapshots reach.
    used: Reachable,
    /// Snapshots whose data is kept.
    snapshots: usize,
}

/// One pack's fate; `keep[i]` says whether its i-th blob is the surviving
/// copy of a used blob.
struct PackPlan {
    pack: IndexPack,
    action: Action,
    keep: Vec<bool>,
    /// Chosen for repacking by the unused-space rule.
    wasteful: bool,
}

/// Which partly used packs to repack so that the unused space left in the
/// repository is at most `max_unused` of it (restic's rule): given each
/// pack's (used, unused) bytes, the packs with the largest unused share
/// first, until what is left is within the limit; the last of them is then
/// swapped for the pack with the least used bytes that brings the rest
/// within the limit just as well. Wholly unused packs (deleted anyway) are
/// never chosen.
pub(crate) fn choose_repacks(shares: &[(u64, u64)], max_unused: f64) -> Vec<bool> {
    let mut chosen = vec![false; shares.len()];
    if max_unused >= 1.0 {
        return chosen;
    }
    let used: u64 = shares.iter().map(|(u, _)| u).sum();
    let mut unused: u64 = shares.iter().filter(|(u, _)| *u > 0).map(|(_, n)| n).sum();
    // Unused at most `max_unused` of (used + unused).
    let limit = (used as f64 * max_unused / (1.0 - max_unused)) as u64;
    let mut order: Vec<usize> = (0..shares.len())
        .filter(|&i| shares[i].0 > 0 && shares[i].1 > 0)
        .collect();
    let share = |i: usize| shares[i].1 as f64 / (shares[i].0 + shares[i].1) as f64;
    order.sort_by(|&a, &b| share(b).total_cmp(&share(a)).then(a.cmp(&b)));
    // The last pack chosen and the unused bytes left before it was.
    let mut last: Option<(usize, u64)> = None;
    for &i in &order {
        if unused <= limit {
            break;
        }
        chosen[i] = true;
        last = Some((i, unused));
        unused -= shares[i].1;
    }
    // The last pick only has to bring what is left within the limit: any
    // pack not chosen whose unused bytes do that serves as well, and the
    // one with the least used bytes costs the least to copy.
    if let Some((last, before)) = last {
        let needed = before - limit;
        let cheapest = order
            .iter()
            .copied()
            .filter(|&j| (j == last || !chosen[j]) && shares[j].1 >= needed)
            .min_by_key(|&j| (shares[j].0, j));
        if let Some(j) = cheapest {
            chosen[last] = false;
            chosen[j] = true;
        }
    }
    chosen
}

/// Runs prune under the lock that keeps deleting commands apart (backups
/// may run meanwhile).
pub fn prune<S>(repo: &Repository<S>, opts: &PruneOptions) -> Result<PruneReport> {
    repo.check_may_delete("prune")?;
    // The snapshots and WAL records are read while the lock is taken: a
    // `forget` that still held it meanwhile only removes snapshots, so
    // what is read is at worst more than there is (prune keeps more). The
    // index is loaded only under the lock.
    let plain = repo.without_index();
    let (lock, refs) = std::thread::scope(|s| {
        let refs = s.spawn(|| load_references(&plain));
        // Whether the storage retains objects is asked now too (the
        // backend remembers it for the plan).
        let backend = repo.backend();
        s.spawn(move || backend.object_lock());
        let lock = repo.lock_exclusive();
        let refs = refs
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("snapshot reader panicked".into())));
        (lock, refs)
    });
    let _lock = lock?;
    prune_with(repo, opts, refs?)
}

/// What keeps data alive: every snapshot (hidden ones too) and every
/// archived WAL record.
type References = (
    crate::repository::SnapshotSet,
    crate::repository::wal::WalRecords,
);

/// Loads the snapshots and the WAL records side by side.
fn load_references(plain: &Repository<crate::repository::NoIndex>) -> Result<References> {
    let (snapshots, wal) = std::thread::scope(|s| {
        let wal = s.spawn(|| plain.load_wal_records());
        let snapshots = plain.load_snapshot_set();
        let wal = wal
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("WAL reader panicked".into())));
        (snapshots, wal)
    });
    Ok((snapshots?, wal?))
}

/// Runs prune; the caller holds the exclusive lock.
pub fn prune_unlocked<S>(repo: &Repository<S>, opts: &PruneOptions) -> Result<PruneReport> {
    let refs = load_references(&repo.without_index())?;
    prune_with(repo, opts, refs)
}

/// Runs prune with the references already loaded; the caller holds the
/// exclusive lock.
fn prune_with<S>(
    repo: &Repository<S>,
    opts: &PruneOptions,
    refs: References,
) -> Result<PruneReport> {
    let now = chrono::Utc::now().timestamp();
    let survey = survey(repo, opts, refs)?;
    let (plans, mut report) = plan(&survey, opts)?;
    let mut due = Due::new(&survey, &plans, opts, now, &mut report);
    let lock_rule = survey.repo.backend().object_lock()?;
    if lock_rule.is_some() {
        due.keep_retained(&survey, now, &mut report)?;
    }
    if !opts.dry_run {
        // Temporary files of writers: a running backup may own young ones
        // (and a backup whose source stalls may not touch its staged pack
        // for long), so they wait at least a day unless nobody else writes.
        let min_age = if opts.instant_delete {
            std::time::Duration::from_secs(60)
        } else {
            opts.grace.max(DEFAULT_GRACE)
        };
        report.temp_files_removed = survey.repo.backend().remove_stale_temporaries(min_age)?;
    }
    let nothing_to_do = report.packs_deleted == 0
        && report.packs_repacked == 0
        && survey.unindexed.is_empty()
        && survey.revived == 0
        && due.packs.is_empty()
        && due.index_files.is_empty();
    if nothing_to_do {
        report.size_after = report.size_before;
    }
    if opts.dry_run {
        return Ok(report);
    }
    // Packs and index files nothing needs after this run.
    let mut gone: HashSet<Id> = due.packs.iter().copied().collect();
    gone.extend(due.marked.iter().map(|m| m.pack.id));
    gone.extend(survey.superseded_since.keys().copied());
    if !nothing_to_do {
        execute(&survey, &plans, &due, now, &mut report)?;
        gone.extend(survey.index_files.iter().copied());
    }
    if let Some(rule) = &lock_rule {
        retention::maintain(&survey.repo, rule, &gone, now, &mut report)?;
    }
    Ok(report)
}

/// What this run deletes, and what stays marked.
struct Due {
    /// Every pack that could be deleted now, as it would stay marked.
    candidates: HashMap<Id, MarkedPack>,
    /// Packs to delete now.
    packs: Vec<Id>,
    /// Superseded index files to delete now (besides, with
    /// `--instant-delete`, the files this run supersedes).
    index_files: Vec<Id>,
    /// Packs the new index marks for deletion.
    marked: Vec<MarkedPack>,
}

impl Due {
    fn new(
        s: &Survey,
        plans: &[PackPlan],
        opts: &PruneOptions,
        now: i64,
        report: &mut PruneReport,
    ) -> Due {
        let size = |id: &Id| s.size_of.get(id).copied().unwrap_or(0);
        let deadline = now.saturating_sub(opts.grace.as_secs() as i64);
        let mut due = Due {
            candidates: HashMap::new(),
            packs: Vec::new(),
            index_files: Vec::new(),
            marked: Vec::new(),
        };
        let newly: Vec<MarkedPack> = plans
            .iter()
            .filter(|p| p.action != Action::Keep)
            .map(|p| p.pack.clone())
            .chain(s.unindexed.iter().map(|id| IndexPack {
                id: *id,
                blobs: Vec::new(),
            }))
            .map(|pack| MarkedPack {
                pack,
                marked_at: now,
            })
            .collect();
        let mut first_due: Option<i64> = None;
        for m in &s.marked {
            if opts.instant_delete || m.marked_at <= deadline {
                due.packs.push(m.pack.id);
                due.candidates.insert(m.pack.id, m.clone());
                report.packs_due_deleted += 1;
            } else {
                report.packs_waiting += 1;
                report.bytes_waiting += size(&m.pack.id);
                let at = m.marked_at.saturating_add(opts.grace.as_secs() as i64);
                first_due = Some(first_due.map_or(at, |f| f.min(at)));
                due.marked.push(m.clone());
            }
        }
        if opts.instant_delete {
            due.packs.extend(newly.iter().map(|m| m.pack.id));
            due.candidates
                .extend(newly.iter().map(|m| (m.pack.id, m.clone())));
        } else {
            report.packs_marked = newly.len();
            report.bytes_marked = newly.iter().map(|m| size(&m.pack.id)).sum();
            if !newly.is_empty() {
                let at = now.saturating_add(opts.grace.as_secs() as i64);
                first_due = Some(first_due.map_or(at, |f| f.min(at)));
            }
            due.marked.extend(newly);
        }
        report.next_deletion = first_due.and_then(|t| {
            chrono::DateTime::from_timestamp(t, 0)
                .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
        });
        for id in &s.index_files {
            // With `--instant-delete` every file there was goes: the new
            // index supersedes them all.
            let superseded_long = s
                .superseded_since
                .get(id)
                .is_some_and(|since| *since <= deadline);
            if opts.instant_delete || superseded_long {
                due.index_files.push(*id);
            }
        }
        due
    }

    /// Object Lock: what is due but still retained is not deleted; packs
    /// stay marked, index files superseded, until a prune after their
    /// retention date.
    fn keep_retained(&mut self, s: &Survey, now: i64, report: &mut PruneReport) -> Result<()> {
        let backend = s.repo.backend().as_ref();
        let handles: Vec<Handle> = self
            .packs
            .iter()
            .map(|id| Handle::new(FileKind::Pack, *id))
            .chain(
                self.index_files
                    .iter()
                    .map(|id| Handle::new(FileKind::Index, *id)),
            )
            .collect();
        let until =
            for_each_concurrently(backend, &handles, |h| match backend.retained_until(h) {
                Err(e) if e.is_not_found() => Ok(None),
                r => r,
            })?;
        let retained: HashMap<Handle, i64> = handles
            .into_iter()
            .zip(until)
            .filter_map(|(h, t)| t.filter(|t| *t > now).map(|t| (h, t)))
            .collect();
        let is_retained = |kind, id: &Id| retained.contains_key(&Handle::new(kind, *id));
        for id in self
            .packs
            .iter()
            .filter(|id| is_retained(FileKind::Pack, id))
        {
            if let Some(m) = self.candidates.get(id) {
                self.marked.push(m.clone());
            }
            report.packs_retained += 1;
        }
        report.index_files_retained = self
            .index_files
            .iter()
            .filter(|id| is_retained(FileKind::Index, id))
            .count();
        report.retained_until = retained.values().min().and_then(|t| {
            chrono::DateTime::from_timestamp(*t, 0)
                .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
        });
        self.packs.retain(|id| !is_retained(FileKind::Pack, id));
        self.index_files
            .retain(|id| !is_retained(FileKind::Index, id));
        Ok(())
    }
}

/// Runs `f` on every handle, several at once on a remote store; the
/// results in order.
fn for_each_concurrently<T: Send>(
    backend: &dyn crate::backend::Backend,
    handles: &[Handle],
    f: impl Fn(Handle) -> Result<T> + Sync,
) -> Result<Vec<T>> {
    let at_once = backend.write_concurrency().max(1);
    let mut out = Vec::with_capacity(handles.len());
    for group in handles.chunks(at_once) {
        let results: Vec<Result<T>> = std::thread::scope(|s| {
            let spawned: Vec<_> = group.iter().map(|h| s.spawn(|| f(*h))).collect();
            spawned
                .into_iter()
                .map(|j| {
                    j.join()
                        .unwrap_or_else(|_| Err(Error::InvalidInput("worker panicked".into())))
                })
                .collect()
        });
        for r in results {
            out.push(r?);
        }
    }
    Ok(out)
}

/// Loads the index and the snapshots, finds what they reach and which
/// packs exist; refuses to go on if the index misses anything they use.
fn survey<S>(repo: &Repository<S>, opts: &PruneOptions, refs: References) -> Result<Survey> {
    // Snapshots and WAL records are listed before the index is loaded: a
    // backup writes its index before its snapshot, so every snapshot seen
    // here has its blobs in the index loaded next. Hidden snapshots (left
    // behind by an interrupted `tag`) are durable references too. Archived
    // WAL is a durable reference too (loaded alongside); a record that
    // cannot be read may reference anything, so nothing is pruned until it
    // is dealt with.
    let plain = repo.without_index();
    let (snapshots, wal) = refs;
    if let Some((id, e)) = wal.unreadable.first() {
        return Err(Error::corrupt(
            Handle::new(FileKind::Wal, *id).rel_path(),
            format!("{e}; prune cannot tell what it references (run `cairn check`)"),
        ));
    }
    // The pack files are listed alongside (a pack listed by an index file
    // loaded here exists: index files are written after their packs).
    let (state, pack_files) = std::thread::scope(|s| {
        let packs = s.spawn(|| plain.list_packs());
        let state = load_prune_state(repo.core_ref());
        let packs = packs
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("pack lister panicked".into())));
        (state, packs)
    });
    let (state, pack_files) = (state?, pack_files?);
    // Marked packs are in the index too (after the live ones): a snapshot
    // written by a backup that ran while they were marked reads from them.
    let mut index = Index::new();
    for p in &state.live {
        index.add_pack(p.id, &p.blobs);
    }
    for m in &state.marked {
        index.add_pack(m.pack.id, &m.pack.blobs);
    }
    let repo = repo.with_index(index);
    let trees = snapshots
        .all()
        .filter(|(id, _)| !opts.assume_removed.contains(id))
        .map(|(_, s)| s.tree);
    let mut used = reachable(&repo, trees)?;
    for (_, w) in &wal.records {
        used.data.extend(w.content.iter().copied());
    }
    for id in used.data.iter() {
        if !repo.has_blob(id) {
            return Err(Error::corrupt(
                "repository",
                format!(
                    "data blob {} is referenced but not in the index; run `cairn check` and `cairn repair index` before pruning",
                    id.short()
                ),
            ));
        }
    }
    let PruneState {
        live: mut packs,
        marked,
        all_files,
        superseded_since,
    } = state;
    let mut size_of: HashMap<Id, u64> = pack_files.into_iter().collect();
    // A running backup may have written a pack and its index between the
    // listing and the index load: list once more before calling it missing.
    if packs.iter().any(|p| !size_of.contains_key(&p.id)) {
        size_of = repo.list_packs()?.into_iter().collect();
    }
    let live_ids: HashSet<Id> = packs.iter().map(|p| p.id).collect();
    // A marked pack holding a used blob that no live pack holds comes back.
    let live_copy = |id: &Id| {
        repo.index()
            .locations(id)
            .iter()
            .any(|(pack, _)| live_ids.contains(pack))
    };
    let (revived, marked): (Vec<MarkedPack>, Vec<MarkedPack>) = marked.into_iter().partition(|m| {
        m.pack
            .blobs
            .iter()
            .any(|e| used.contains(&e.id) && !live_copy(&e.id))
    });
    for m in &revived {
        if !size_of.contains_key(&m.pack.id) {
            return Err(Error::corrupt(
                Handle::new(FileKind::Pack, m.pack.id).rel_path(),
                "a snapshot needs this pack, which was marked for deletion, and it is gone; run `cairn check`",
            ));
        }
    }
    let revived_count = revived.len();
    packs.extend(revived.into_iter().map(|m| m.pack));
    let listed: HashSet<Id> = packs
        .iter()
        .map(|p| p.id)
        .chain(marked.iter().map(|m| m.pack.id))
        .collect();
    let mut unindexed: Vec<Id> = size_of
        .keys()
        .filter(|id| !listed.contains(id))
        .copied()
        .collect();
    unindexed.sort();
    for p in &packs {
        if !size_of.contains_key(&p.id) {
            return Err(Error::corrupt(
                Handle::new(FileKind::Pack, p.id).rel_path(),
                "pack listed in the index is missing; run `cairn check` before pruning",
            ));
        }
    }
    Ok(Survey {
        repo,
        index_files: all_files,
        superseded_since,
        packs,
        marked,
        revived: revived_count,
        unindexed,
        size_of,
        used,
        snapshots: snapshots
            .shown
            .iter()
            .filter(|(id, _)| !opts.assume_removed.contains(id))
            .count(),
    })
}

/// Decides each pack's fate and what that will free.
fn plan(s: &Survey, opts: &PruneOptions) -> Result<(Vec<PackPlan>, PruneReport)> {
    let size = |id: &Id| s.size_of.get(id).copied().unwrap_or(0);
    let mut report = PruneReport {
        snapshots: s.snapshots,
        packs_before: s.size_of.len(),
        packs_unindexed: s.unindexed.len(),
        size_before: s.size_of.values().sum(),
        dry_run: opts.dry_run,
        instant_delete: opts.instant_delete,
        packs_revived: s.revived,
        ..Default::default()
    };
    // Which copy of each used blob survives: the first one seen...
    let mut claimed: HashSet<Id> = HashSet::new();
    let mut plans: Vec<PackPlan> = s
        .packs
        .iter()
        .map(|p| PackPlan {
            keep: p
                .blobs
                .iter()
                .map(|e| s.used.contains(&e.id) && claimed.insert(e.id))
                .collect(),
            pack: p.clone(),
            action: Action::Keep,
            wasteful: false,
        })
        .collect();
    // ... unless it is damaged and another copy is not.
    report.duplicates_checked = secure_survivors(&s.repo, &mut plans, &s.used)?;
    let small = s.repo.config().pack_size as u64 / 4;
    let shares: Vec<(u64, u64)> = plans
        .iter()
        .map(|p| {
            let (mut used_bytes, mut unused_bytes) = (0u64, 0u64);
            for (e, keep) in p.pack.blobs.iter().zip(&p.keep) {
                if *keep {
                    used_bytes += e.length as u64;
                } else {
                    unused_bytes += e.length as u64;
                }
            }
            (used_bytes, unused_bytes)
        })
        .collect();
    let wasteful = choose_repacks(&shares, opts.max_unused);
    for (i, p) in plans.iter_mut().enumerate() {
        let (used_bytes, unused_bytes) = shares[i];
        report.blobs_unused += p.keep.iter().filter(|k| !**k).count() as u64;
        report.bytes_unused += unused_bytes;
        p.wasteful = wasteful[i];
        p.action = if used_bytes == 0 {
            Action::Delete
        } else if wasteful[i] || (opts.repack_small && size(&p.pack.id) < small) {
            Action::Repack
        } else {
            report.bytes_unused_kept += unused_bytes;
            Action::Keep
        };
    }
    keep_lone_small_packs(&mut plans, opts, small, &size, &mut report);
    if let Some(limit) = opts.max_repack_bytes {
        let mut budget = limit;
        for p in plans.iter_mut().filter(|p| p.action == Action::Repack) {
            let bytes = size(&p.pack.id);
            if bytes <= budget {
                budget -= bytes;
            } else {
                p.action = Action::Keep;
                report.bytes_unused_kept += p
                    .pack
                    .blobs
                    .iter()
                    .zip(&p.keep)
                    .filter(|(_, k)| !**k)
                    .map(|(e, _)| u64::from(e.length))
                    .sum::<u64>();
            }
        }
    }
    let count = |a: Action| plans.iter().filter(|p| p.action == a).count();
    report.packs_deleted = count(Action::Delete);
    report.packs_repacked = count(Action::Repack);
    let kept_size: u64 = plans
        .iter()
        .filter(|p| p.action == Action::Keep)
        .map(|p| size(&p.pack.id))
        .sum();
    let repacked_used: u64 = plans
        .iter()
        .filter(|p| p.action == Action::Repack)
        .flat_map(|p| {
            p.pack
                .blobs
                .iter()
                .zip(p.keep.iter())
                .filter(|(_, k)| **k)
                .map(|(e, _)| e.length as u64)
        })
        .sum();
    report.size_after = kept_size + repacked_used;
    Ok((plans, report))
}

/// For every used blob stored more than once, makes sure the copy that
/// survives reads back intact: the claimed copy is read and authenticated,
/// and if it is damaged the claim moves to the first copy that is not.
/// Prune then never deletes the last intact copy of a blob a snapshot
/// needs; if no copy is intact it refuses to run. Returns how many blobs
/// were checked.
fn secure_survivors(
    repo: &Repository<FullIndex>,
    plans: &mut [PackPlan],
    used: &Reachable,
) -> Result<u64> {
    let mut copies: HashMap<Id, Vec<(usize, usize)>> = HashMap::new();
    for (pi, p) in plans.iter().enumerate() {
        for (ei, e) in p.pack.blobs.iter().enumerate() {
            if used.contains(&e.id) {
                copies.entry(e.id).or_default().push((pi, ei));
            }
        }
    }
    copies.retain(|_, list| list.len() > 1);
    let mut ids: Vec<Id> = copies.keys().copied().collect();
    ids.sort();
    let intact = |plans: &[PackPlan], (pi, ei): (usize, usize)| {
        let p = &plans[pi].pack;
        let e = &p.blobs[ei];
        let loc = BlobLocation {
            pack: 0,
            kind: e.kind,
            offset: e.offset,
            length: e.length,
            raw_length: e.raw_length,
        };
        repo.copy_is_intact(&e.id, p.id, loc)
    };
    for id in &ids {
        let list = &copies[id];
        let Some(&claimed) = list.iter().find(|(pi, ei)| plans[*pi].keep[*ei]) else {
            continue;
        };
        if intact(plans, claimed) {
            continue;
        }
        match list
            .iter()
            .copied()
            .find(|&c| c != claimed && intact(plans, c))
        {
            Some((pi, ei)) => {
                plans[claimed.0].keep[claimed.1] = false;
                plans[pi].keep[ei] = true;
            }
            None => {
                return Err(Error::corrupt(
                    "repository",
                    format!(
                        "blob {} is needed by a kept snapshot and none of its {} stored copies reads back intact; prune deletes nothing while that is so (run `cairn check --read-data`)",
                        id.short(),
                        list.len()
                    ),
                ));
            }
        }
    }
    Ok(ids.len() as u64)
}

/// Repacking one lone small pack into a new small pack gains nothing.
/// Data and tree blobs never share a pack, so this holds per blob type: one
/// small data pack and one small tree pack would otherwise be rewritten
/// into the same two small packs by every run.
fn keep_lone_small_packs(
    plans: &mut [PackPlan],
    opts: &PruneOptions,
    small: u64,
    size: &dyn Fn(&Id) -> u64,
    report: &mut PruneReport,
) {
    let kind_of = |p: &IndexPack| p.blobs.first().map(|e| e.kind);
    for kind in [BlobType::Data, BlobType::Tree] {
        let small_repacks = plans
            .iter()
            .filter(|p| {
                p.action == Action::Repack
                    && kind_of(&p.pack) == Some(kind)
                    && size(&p.pack.id) < small
            })
            .count();
        if !(opts.repack_small && small_repacks == 1) {
            continue;
        }
        for p in plans.iter_mut() {
            if kind_of(&p.pack) != Some(kind) {
                continue;
            }
            let unused: u64 = p
                .pack
                .blobs
                .iter()
                .zip(p.keep.iter())
                .filter(|(_, k)| !**k)
                .map(|(e, _)| e.length as u64)
                .sum();
            if p.action == Action::Repack && size(&p.pack.id) < small && !p.wasteful {
                p.action = Action::Keep;
                report.bytes_unused_kept += unused;
            }
        }
    }
}

/// Carries the plan out, in the crash-safe order of the module docs.
fn execute(
    s: &Survey,
    plans: &[PackPlan],
    due: &Due,
    now: i64,
    report: &mut PruneReport,
) -> Result<()> {
    let repo = &s.repo;
    // 1. Copy still-used blobs out of packs being repacked.
    let (new_packs, new_bytes) = repack(repo, plans)?;
    report.packs_written = new_packs.len();

    // 2. One index for everything that stays or waits, superseding every
    //    file there was when prune started: not the files written since,
    //    by running backups (and by the repacking, which stay live until the
    //    next prune: listing a pack twice is harmless).
    let mut keep_packs: Vec<IndexPack> = plans
        .iter()
        .filter(|p| p.action == Action::Keep)
        .map(|p| p.pack.clone())
        .collect();
    keep_packs.extend(new_packs);
    let supersedes = s.index_files.clone();
    let new_ids =
        repo.save_index_replacing(keep_packs, due.marked.clone(), supersedes.clone(), now)?;

    // 3. Index files superseded for long enough go (with `--instant-delete`
    //    all superseded files), and the packs whose time has come: the
    //    live index names none of them any more, so one batch does.
    let old_index: Vec<Handle> = due
        .index_files
        .iter()
        .filter(|id| !new_ids.contains(id))
        .map(|id| Handle::new(FileKind::Index, *id))
        .collect();
    report.index_files_deleted = old_index.len();
    let mut gone = old_index;
    gone.extend(due.packs.iter().map(|id| Handle::new(FileKind::Pack, *id)));
    remove_all(repo, &gone)?;
    // What prune did (packs written by backups meanwhile are not counted).
    let deleted: u64 = due
        .packs
        .iter()
        .map(|id| s.size_of.get(id).copied().unwrap_or(0))
        .sum();
    report.size_after = report.size_before.saturating_sub(deleted) + new_bytes;
    Ok(())
}

/// Removes files, several at once on a remote store (deletions are
/// idempotent, and a file already gone is fine).
fn remove_all(repo: &Repository<FullIndex>, files: &[Handle]) -> Result<()> {
    repo.backend().remove_batch(files)
}

/// Writes the used blobs of every pack being repacked into new packs; each
/// is decrypted and re-hashed before it is trusted. Several ranges are
/// read at once on a remote store (each request waits on the network).
/// Returns the new packs.
fn repack(repo: &Repository<FullIndex>, plans: &[PackPlan]) -> Result<(Vec<IndexPack>, u64)> {
    // The new packs go into the index prune writes next.
    let packer = Packer::for_repack(repo);
    // Only what is kept is read: neighbouring kept blobs with one request
    // (small gaps read through), not the whole pack.
    let mut work: Vec<(Id, Vec<&PackEntry>)> = Vec::new();
    for p in plans.iter().filter(|p| p.action == Action::Repack) {
        let kept: Vec<&PackEntry> = p
            .pack
            .blobs
            .iter()
            .zip(&p.keep)
            .filter(|(_, k)| **k)
            .map(|(e, _)| e)
            .collect();
        // Runs of at most REPACK_READ bytes, so that several readers keep
        // memory bounded and a large pack is read by several at once.
        let mut run: Vec<&PackEntry> = Vec::new();
        for e in kept {
            if let (Some(first), Some(prev)) = (run.first(), run.last()) {
                let gap_ok = e.offset <= prev.offset + u64::from(prev.length) + REPACK_GAP;
                let span_ok = e.offset + u64::from(e.length) - first.offset <= REPACK_READ;
                if !(gap_ok && span_ok) {
                    work.push((p.pack.id, std::mem::take(&mut run)));
                }
            }
            run.push(e);
        }
        if !run.is_empty() {
            work.push((p.pack.id, run));
        }
    }
    let readers = repo.backend().write_concurrency().clamp(1, 16);
    let next = std::sync::atomic::AtomicUsize::new(0);
    let failed: std::sync::Mutex<Option<Error>> = std::sync::Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..readers {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((pack, group)) = work.get(i) else {
                        break;
                    };
                    if crate::sys::lock(&failed).is_some() {
                        break;
                    }
                    if let Err(e) = copy_group(repo, &packer, *pack, group) {
                        crate::sys::lock(&failed).get_or_insert(e);
                        break;
                    }
                }
            });
        }
    });
    if let Some(e) = failed.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(e);
    }
    let packs = packer.finish()?;
    Ok((packs, packer.pack_file_bytes()))
}

/// Reads one run of kept blobs of `pack`, checks each and hands it to the
/// packer (from the pack's original version if the one stored was
/// overwritten and the storage kept it).
fn copy_group(
    repo: &Repository<FullIndex>,
    packer: &Packer,
    pack: Id,
    group: &[&PackEntry],
) -> Result<()> {
    let h = Handle::new(FileKind::Pack, pack);
    let what = h.rel_path();
    let start = group[0].offset;
    let last = group[group.len() - 1];
    let end = last.offset + u64::from(last.length);
    // The run is read and every blob in it checked before any is copied.
    let read = || -> Result<Vec<u8>> {
        let bytes = repo
            .backend()
            .read_range(h, start, (end - start) as usize)?;
        for e in group {
            let encoded = blob_bytes(&bytes, start, e, &what)?;
            blob::decode(repo.key(), e.kind, &e.id, encoded, &what, &|b| {
                repo.read_base(b)
            })?;
        }
        Ok(bytes)
    };
    let bytes = repo.core_ref().with_original_pack(h, read)?;
    for e in group {
        let encoded = blob_bytes(&bytes, start, e, &what)?;
        packer.add_encoded(e.kind, e.id, encoded, e.raw_length as usize)?;
    }
    Ok(())
}

/// The bytes of blob `e` in a read of its pack from offset `start` on.
fn blob_bytes<'a>(bytes: &'a [u8], start: u64, e: &PackEntry, what: &str) -> Result<&'a [u8]> {
    let from = (e.offset - start) as usize;
    bytes
        .get(from..from + e.length as usize)
        .ok_or_else(|| Error::corrupt(what, "pack is shorter than its index entry"))
}

/// Unneeded bytes between kept blobs that repacking reads through rather
/// than paying another request. Through a 20 ms link with 8 requests in
/// flight a request costs about what 300-400 KB take to arrive; 256 KiB
/// halves the requests of 128 KiB for 7% more bytes (benches/prune_compare.sh:
/// 0.81 s and 70 MB against 0.88 s and 65 MB; restic reads 78 MB).
const REPACK_GAP: u64 = 256 << 10;

/// Most bytes one repacking read asks for.
const REPACK_READ: u64 = 4 << 20;

#[cfg(test)]
mod tests {
    use super::choose_repacks;

    const MB: u64 = 1 << 20;

    #[test]
    fn most_wasteful_packs_are_repacked_until_the_rest_is_within_the_limit() {
        // 10% allowed of what stays. Used 90 MB in all: limit 10 MB.
        let shares = [
            (30 * MB, 0),
            (20 * MB, 8 * MB),
            (20 * MB, 6 * MB),
            (20 * MB, 4 * MB),
        ];
        // 18 MB unused; the 8 MB pack (largest share) leaves 10 MB: done.
        assert_eq!(
            choose_repacks(&shares, 0.1),
            vec![false, true, false, false]
        );
        // Nothing to do within the limit; all allowed with 100%.
        assert_eq!(choose_repacks(&shares, 0.5), vec![false; 4]);
        assert_eq!(choose_repacks(&shares, 1.0), vec![false; 4]);
    }

    #[test]
    fn the_last_pick_is_the_cheapest_pack_that_suffices() {
        // Used 100 MB in all: limit 10% of what stays, ~11.1 MB; unused
        // 18.5 MB. By share, the first pack leaves 15.5 MB and the second
        // 5.5 MB, but the third (less to copy) brings it within too.
        let shares = [
            (MB, 3 * MB),       // share 0.75: picked first
            (50 * MB, 10 * MB), // share 0.17: greedy second, 50 MB to copy
            (30 * MB, 5 * MB),  // share 0.14: enough too, 30 MB to copy
            (19 * MB, MB / 2),  // share 0.03: not enough
        ];
        let chosen = choose_repacks(&shares, 0.1);
        assert_eq!(chosen, vec![true, false, true, false]);
        let used: u64 = shares.iter().map(|s| s.0).sum();
        let left: u64 = shares
            .iter()
            .zip(&chosen)
            .filter(|(_, c)| !**c)
            .map(|(s, _)| s.1)
            .sum();
        assert!(left as f64 <= used as f64 * 0.1 / 0.9);
    }

    #[test]
    fn wholly_unused_packs_are_never_chosen() {
        let shares = [(0, 10 * MB), (10 * MB, 10 * MB)];
        assert_eq!(choose_repacks(&shares, 0.05), vec![false, true]);
    }
}
