//! Prune: delete what no snapshot references, repack what is mostly unused.
//!
//! It runs under an exclusive lock, so no backup adds data meanwhile. First
//! a survey (which blobs the snapshots reach, which packs exist), then a
//! plan (keep, repack or delete each pack), then the execution, in an order
//! chosen so that a kill at any instant loses nothing a snapshot references
//! and a rerun finishes the job:
//!
//! 1. write the new packs (blobs still used, copied out of packs that are
//!    mostly garbage) and make them durable;
//! 2. write one new index describing every pack that stays, which
//!    *supersedes* every index file that existed before;
//! 3. delete the superseded index files;
//! 4. delete the packs no longer listed.
//!
//! Until step 2 is durable the old index is authoritative and all its packs
//! exist; after it, the new index is, and it lists only packs that exist.
//! Every copied blob is decrypted and re-hashed before it is trusted.

use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::id::Id;
use crate::format::index::IndexPack;
use crate::format::pack::PackEntry;
use crate::repository::index::{BlobLocation, OnDamage, live_packs};
use crate::repository::packer::Packer;
use crate::repository::reachable::{Reachable, reachable};
use crate::repository::{FullIndex, Repository};
use std::collections::{HashMap, HashSet};

/// How aggressively to reclaim space.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    /// Repack a pack when more than this fraction of it is unused (0.0..=1.0).
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
}

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
    /// Packs the live index lists, once each.
    packs: Vec<IndexPack>,
    /// Pack files on disk that no index lists.
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
}

/// Runs prune under an exclusive lock.
pub fn prune<S>(repo: &Repository<S>, opts: &PruneOptions) -> Result<PruneReport> {
    let _lock = repo.lock_exclusive()?;
    prune_unlocked(repo, opts)
}

/// Runs prune; the caller holds an exclusive lock.
pub fn prune_unlocked<S>(repo: &Repository<S>, opts: &PruneOptions) -> Result<PruneReport> {
    let survey = survey(repo, opts)?;
    let (plans, mut report) = plan(&survey, opts)?;
    if !opts.dry_run {
        // Under the exclusive lock no writer is alive; a minute's margin
        // covers clocks and a writer that has only just been killed.
        report.temp_files_removed = survey
            .repo
            .backend()
            .remove_stale_temporaries(std::time::Duration::from_secs(60))?;
    }
    let nothing_to_do =
        report.packs_deleted == 0 && report.packs_repacked == 0 && survey.unindexed.is_empty();
    if opts.dry_run || nothing_to_do {
        if nothing_to_do {
            report.size_after = report.size_before;
        }
        return Ok(report);
    }
    execute(&survey, &plans, &mut report)?;
    Ok(report)
}

/// Loads the index and the snapshots, finds what they reach and which
/// packs exist; refuses to go on if the index misses anything they use.
fn survey<S>(repo: &Repository<S>, opts: &PruneOptions) -> Result<Survey> {
    let live = live_packs(repo.core_ref(), OnDamage::Fail)?;
    let repo = repo.with_full_index()?;
    // Hidden snapshots (left behind by an interrupted `tag`) are durable
    // references too.
    let snapshots = repo.load_snapshot_set()?;
    let trees = snapshots
        .all()
        .filter(|(id, _)| !opts.assume_removed.contains(id))
        .map(|(_, s)| s.tree);
    let mut used = reachable(&repo, trees)?;
    // Archived WAL is a durable reference too; a record that cannot be read
    // may reference anything, so nothing is pruned until it is dealt with.
    let wal = repo.load_wal_records()?;
    if let Some((id, e)) = wal.unreadable.first() {
        return Err(Error::corrupt(
            Handle::new(FileKind::Wal, *id).rel_path(),
            format!("{e}; prune cannot tell what it references (run `cairn check`)"),
        ));
    }
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
    let size_of: HashMap<Id, u64> = repo.list_packs()?.into_iter().collect();
    let listed: HashSet<Id> = live.value.iter().map(|p| p.id).collect();
    let mut unindexed: Vec<Id> = size_of
        .keys()
        .filter(|id| !listed.contains(id))
        .copied()
        .collect();
    unindexed.sort();
    for p in &live.value {
        if !size_of.contains_key(&p.id) {
            return Err(Error::corrupt(
                Handle::new(FileKind::Pack, p.id).rel_path(),
                "pack listed in the index is missing; run `cairn check` before pruning",
            ));
        }
    }
    Ok(Survey {
        repo,
        index_files: live.all_files,
        packs: live.value,
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
        })
        .collect();
    // ... unless it is damaged and another copy is not.
    report.duplicates_checked = secure_survivors(&s.repo, &mut plans, &s.used)?;
    let small = s.repo.config().pack_size as u64 / 4;
    for p in &mut plans {
        let (mut used_bytes, mut unused_bytes) = (0u64, 0u64);
        for (e, keep) in p.pack.blobs.iter().zip(&p.keep) {
            if *keep {
                used_bytes += e.length as u64;
            } else {
                unused_bytes += e.length as u64;
                report.blobs_unused += 1;
            }
        }
        report.bytes_unused += unused_bytes;
        let total = (used_bytes + unused_bytes).max(1);
        p.action = if used_bytes == 0 {
            Action::Delete
        } else if unused_bytes as f64 / total as f64 > opts.max_unused
            || (opts.repack_small && size(&p.pack.id) < small)
        {
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
            let total: u64 = p
                .pack
                .blobs
                .iter()
                .map(|e| e.length as u64)
                .sum::<u64>()
                .max(1);
            if p.action == Action::Repack
                && size(&p.pack.id) < small
                && unused as f64 / total as f64 <= opts.max_unused
            {
                p.action = Action::Keep;
                report.bytes_unused_kept += unused;
            }
        }
    }
}

/// Carries the plan out, in the crash-safe order of the module docs.
fn execute(s: &Survey, plans: &[PackPlan], report: &mut PruneReport) -> Result<()> {
    let repo = &s.repo;
    // 1. Copy still-used blobs out of packs being repacked.
    let new_packs = repack(repo, plans)?;
    report.packs_written = new_packs.len();

    // 2. One index for everything that stays, superseding all earlier ones
    //    (including the files the repacking itself wrote).
    let written_index: Vec<Id> = repo
        .backend()
        .list(FileKind::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .filter(|id| !s.index_files.contains(id))
        .collect();
    let mut keep_packs: Vec<IndexPack> = plans
        .iter()
        .filter(|p| p.action == Action::Keep)
        .map(|p| p.pack.clone())
        .collect();
    keep_packs.extend(new_packs);
    let mut supersedes = s.index_files.clone();
    supersedes.extend(written_index);
    let new_ids = repo.save_index_replacing(keep_packs, supersedes.clone())?;

    // 3. Old index files go.
    let old_index: Vec<Handle> = supersedes
        .iter()
        .filter(|id| !new_ids.contains(id))
        .map(|id| Handle::new(FileKind::Index, *id))
        .collect();
    remove_all(repo, &old_index)?;
    // 4. Then the packs nothing lists any more.
    let gone: Vec<Handle> = plans
        .iter()
        .filter(|p| p.action != Action::Keep)
        .map(|p| p.pack.id)
        .chain(s.unindexed.iter().copied())
        .map(|id| Handle::new(FileKind::Pack, id))
        .collect();
    remove_all(repo, &gone)?;
    report.size_after = repo.list_packs()?.iter().map(|(_, size)| size).sum();
    Ok(())
}

/// Removes files, several at once on a remote store (deletions are
/// idempotent, and a file already gone is fine).
fn remove_all(repo: &Repository<FullIndex>, files: &[Handle]) -> Result<()> {
    let backend = repo.backend();
    let at_once = backend.write_concurrency().max(1);
    for group in files.chunks(at_once) {
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .iter()
                .map(|h| s.spawn(move || backend.remove(*h)))
                .collect();
            handles
                .into_iter()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err(Error::InvalidInput("remover panicked".into())))
                })
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
    }
    Ok(())
}

/// Writes the used blobs of every pack being repacked into new packs; each
/// is decrypted and re-hashed before it is trusted. Returns the new packs.
fn repack(repo: &Repository<FullIndex>, plans: &[PackPlan]) -> Result<Vec<IndexPack>> {
    let packer = Packer::new(repo);
    for p in plans.iter().filter(|p| p.action == Action::Repack) {
        let h = Handle::new(FileKind::Pack, p.pack.id);
        let what = h.rel_path();
        // Only what is kept is read: neighbouring kept blobs with one
        // request (small gaps read through), not the whole pack.
        let kept: Vec<&PackEntry> = p
            .pack
            .blobs
            .iter()
            .zip(&p.keep)
            .filter(|(_, k)| **k)
            .map(|(e, _)| e)
            .collect();
        for group in kept.chunk_by(|a, b| b.offset <= a.offset + u64::from(a.length) + REPACK_GAP) {
            let start = group[0].offset;
            let last = group[group.len() - 1];
            let end = last.offset + u64::from(last.length);
            let bytes = repo
                .backend()
                .read_range(h, start, (end - start) as usize)?;
            for e in group {
                let from = (e.offset - start) as usize;
                let encoded = bytes
                    .get(from..from + e.length as usize)
                    .ok_or_else(|| Error::corrupt(&what, "pack is shorter than its index entry"))?;
                blob::decode(repo.key(), e.kind, &e.id, encoded, &what, &|b| {
                    repo.read_base(b)
                })?;
                packer.add_encoded(e.kind, e.id, encoded, e.raw_length as usize)?;
            }
        }
    }
    packer.finish()
}

/// Unneeded bytes between kept blobs that repacking reads through rather
/// than paying another request.
const REPACK_GAP: u64 = 256 << 10;
