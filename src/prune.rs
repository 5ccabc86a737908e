//! Prune: delete what no snapshot references, repack what is mostly unused.
//!
//! The caller holds an exclusive lock, so no backup adds data meanwhile.
//! Order of operations, chosen so that a kill at any instant loses nothing a
//! snapshot references and a rerun finishes the job:
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

use crate::backend::{FileKind, LocalBackend};
use crate::blob;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::index::IndexPack;
use crate::packer::Packer;
use crate::reachable::reachable;
use crate::repo::Repository;
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
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            repack_small: false,
            dry_run: false,
            assume_removed: Vec::new(),
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
}

impl PruneReport {
    /// Space returned.
    pub fn bytes_freed(&self) -> u64 {
        self.size_before.saturating_sub(self.size_after)
    }
}

enum Action {
    Keep,
    Delete,
    Repack,
}

/// Runs prune. The caller must hold an exclusive lock.
pub fn prune(repo: &mut Repository, opts: &PruneOptions) -> Result<PruneReport> {
    let all_index_ids = repo.backend.list(FileKind::Index)?;
    let live = repo.live_index_files()?;
    repo.load_index()?;
    let mut snapshots = repo.load_snapshots()?;
    snapshots.retain(|(id, _)| !opts.assume_removed.contains(id));
    let used = reachable(repo, snapshots.iter().map(|(_, s)| s.tree))?;
    for id in used.data.iter() {
        if !repo.index.contains(id) {
            return Err(Error::corrupt(
                "repository",
                format!(
                    "data blob {} is referenced but not in the index; run `cairn check` and `cairn repair index` before pruning",
                    id.short()
                ),
            ));
        }
    }

    // One description per pack; the first index listing a pack wins.
    let mut packs: Vec<IndexPack> = Vec::new();
    let mut seen = HashSet::new();
    for (_, f) in live {
        for p in f.packs {
            if seen.insert(p.id) {
                packs.push(p);
            }
        }
    }
    let on_disk: HashSet<Id> = repo.backend.list(FileKind::Pack)?.into_iter().collect();
    let unindexed: Vec<Id> = on_disk
        .iter()
        .filter(|id| !seen.contains(id))
        .copied()
        .collect();
    let mut size_of: HashMap<Id, u64> = HashMap::new();
    for id in &on_disk {
        size_of.insert(*id, repo.backend.size(FileKind::Pack, id)?);
    }
    for p in &packs {
        if !on_disk.contains(&p.id) {
            return Err(Error::corrupt(
                LocalBackend::rel_path(FileKind::Pack, &p.id),
                "pack listed in the index is missing; run `cairn check` before pruning",
            ));
        }
    }

    let mut report = PruneReport {
        snapshots: snapshots.len(),
        packs_before: on_disk.len(),
        packs_unindexed: unindexed.len(),
        size_before: size_of.values().sum(),
        dry_run: opts.dry_run,
        ..Default::default()
    };

    // Decide which copy of each used blob survives: the first one seen.
    let mut claimed: HashSet<Id> = HashSet::new();
    let mut plan: Vec<(IndexPack, Action, Vec<bool>)> = Vec::new();
    let small = repo.config.pack_size as u64 / 4;
    for p in packs {
        let mut keep_flags = Vec::with_capacity(p.blobs.len());
        let (mut used_bytes, mut unused_bytes) = (0u64, 0u64);
        for e in &p.blobs {
            let is_used = used.contains(&e.id) && claimed.insert(e.id);
            keep_flags.push(is_used);
            if is_used {
                used_bytes += e.length as u64;
            } else {
                unused_bytes += e.length as u64;
                report.blobs_unused += 1;
            }
        }
        report.bytes_unused += unused_bytes;
        let total = (used_bytes + unused_bytes).max(1);
        let size = size_of.get(&p.id).copied().unwrap_or(0);
        let action = if used_bytes == 0 {
            Action::Delete
        } else if unused_bytes as f64 / total as f64 > opts.max_unused
            || (opts.repack_small && size < small)
        {
            Action::Repack
        } else {
            report.bytes_unused_kept += unused_bytes;
            Action::Keep
        };
        plan.push((p, action, keep_flags));
    }
    // Repacking one lone small pack into a new small pack gains nothing.
    // Data and tree blobs never share a pack, so this holds per blob type:
    // one small data pack and one small tree pack would otherwise be
    // rewritten into the same two small packs by every run.
    let kind_of = |p: &IndexPack| p.blobs.first().map(|e| e.kind);
    for kind in [blob::BlobType::Data, blob::BlobType::Tree] {
        let small_repacks = plan
            .iter()
            .filter(|(p, a, _)| {
                matches!(a, Action::Repack)
                    && kind_of(p) == Some(kind)
                    && size_of.get(&p.id).copied().unwrap_or(0) < small
            })
            .count();
        if !(opts.repack_small && small_repacks == 1) {
            continue;
        }
        for (p, a, flags) in plan.iter_mut() {
            if kind_of(p) != Some(kind) {
                continue;
            }
            let size = size_of.get(&p.id).copied().unwrap_or(0);
            let unused: u64 = p
                .blobs
                .iter()
                .zip(flags.iter())
                .filter(|(_, k)| !**k)
                .map(|(e, _)| e.length as u64)
                .sum();
            let total: u64 = p.blobs.iter().map(|e| e.length as u64).sum::<u64>().max(1);
            if matches!(a, Action::Repack)
                && size < small
                && unused as f64 / total as f64 <= opts.max_unused
            {
                *a = Action::Keep;
                report.bytes_unused_kept += unused;
            }
        }
    }

    report.packs_deleted = plan
        .iter()
        .filter(|(_, a, _)| matches!(a, Action::Delete))
        .count();
    report.packs_repacked = plan
        .iter()
        .filter(|(_, a, _)| matches!(a, Action::Repack))
        .count();
    let kept_size: u64 = plan
        .iter()
        .filter(|(_, a, _)| matches!(a, Action::Keep))
        .map(|(p, _, _)| size_of.get(&p.id).copied().unwrap_or(0))
        .sum();
    let repacked_used: u64 = plan
        .iter()
        .filter(|(_, a, _)| matches!(a, Action::Repack))
        .flat_map(|(p, _, f)| {
            p.blobs
                .iter()
                .zip(f.iter())
                .filter(|(_, k)| **k)
                .map(|(e, _)| e.length as u64)
        })
        .sum();
    report.size_after = kept_size + repacked_used;

    if !opts.dry_run {
        // Under the exclusive lock no writer is alive; a minute's margin
        // covers clocks and a writer that has only just been killed.
        report.temp_files_removed = repo
            .backend
            .remove_stale_temp_files(std::time::Duration::from_secs(60))?;
    }
    let nothing_to_do =
        report.packs_deleted == 0 && report.packs_repacked == 0 && unindexed.is_empty();
    if opts.dry_run || nothing_to_do {
        if nothing_to_do {
            report.size_after = report.size_before;
        }
        return Ok(report);
    }

    // 1. Copy still-used blobs out of packs being repacked.
    let mut new_packs: Vec<IndexPack> = Vec::new();
    {
        let packer = Packer::new(repo);
        for (p, action, flags) in &plan {
            if !matches!(action, Action::Repack) {
                continue;
            }
            let what = LocalBackend::rel_path(FileKind::Pack, &p.id);
            let bytes = repo.backend.read(FileKind::Pack, &p.id)?;
            for (e, keep) in p.blobs.iter().zip(flags) {
                if !keep {
                    continue;
                }
                let end = e.offset as usize + e.length as usize;
                let encoded = bytes
                    .get(e.offset as usize..end)
                    .ok_or_else(|| Error::corrupt(&what, "pack is shorter than its index entry"))?;
                blob::decode(&repo.key, e.kind, &e.id, encoded, &what, &|b| {
                    repo.read_base(b)
                })?;
                packer.add_encoded(e.kind, e.id, encoded, e.raw_length as usize)?;
            }
        }
        new_packs.extend(packer.finish()?);
    }
    report.packs_written = new_packs.len();

    // 2. One index for everything that stays, superseding all earlier ones.
    let written_index: Vec<Id> = repo
        .backend
        .list(FileKind::Index)?
        .into_iter()
        .filter(|id| !all_index_ids.contains(id))
        .collect();
    let mut keep_packs: Vec<IndexPack> = plan
        .iter()
        .filter(|(_, a, _)| matches!(a, Action::Keep))
        .map(|(p, _, _)| p.clone())
        .collect();
    keep_packs.extend(new_packs);
    let mut supersedes = all_index_ids.clone();
    supersedes.extend(written_index);
    let new_ids = repo.save_index_replacing(keep_packs, supersedes.clone())?;

    // 3. Old index files go.
    for id in supersedes.iter().filter(|id| !new_ids.contains(id)) {
        repo.backend.remove(FileKind::Index, id)?;
    }
    // 4. Then the packs nothing lists any more.
    for (p, action, _) in &plan {
        if !matches!(action, Action::Keep) {
            repo.backend.remove(FileKind::Pack, &p.id)?;
        }
    }
    for id in &unindexed {
        repo.backend.remove(FileKind::Pack, id)?;
    }
    report.size_after = repo
        .backend
        .list(FileKind::Pack)?
        .iter()
        .map(|id| repo.backend.size(FileKind::Pack, id).unwrap_or(0))
        .sum();
    repo.load_index()?;
    Ok(report)
}
