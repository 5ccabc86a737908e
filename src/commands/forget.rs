//! Forget: choose which snapshots a retention policy removes, per group.
//!
//! Snapshots are grouped (by default by host and paths, like restic) and
//! the policy is applied to each group on its own, so one host's hourly
//! snapshots never push out another host's. The policy semantics live in
//! [`crate::retention`]; this module only groups, maps and deletes.

use crate::commands::prune::{PruneOptions, PruneReport, prune_unlocked};
use crate::commands::retention::{self, KeepReason, Policy, SnapshotInfo};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::repository::{Repository, SnapshotFilter};

pub use crate::commands::snapshots::{GroupBy, GroupKey, key_of};

/// A kept snapshot and why.
#[derive(Clone, Debug)]
pub struct Kept {
    /// Snapshot id.
    pub id: Id,
    /// Snapshot.
    pub snapshot: Snapshot,
    /// restic-style reason.
    pub reason: KeepReason,
}

/// The decision for one group.
#[derive(Clone, Debug)]
pub struct GroupDecision {
    /// Group key.
    pub key: GroupKey,
    /// Kept snapshots, newest first.
    pub keep: Vec<Kept>,
    /// Removed snapshots, newest first.
    pub remove: Vec<(Id, Snapshot)>,
}

/// Applies `policy` to each group of the snapshots passing `filter`.
pub fn plan(
    snapshots: Vec<(Id, Snapshot)>,
    filter: &SnapshotFilter,
    policy: &Policy,
    group_by: GroupBy,
) -> Vec<GroupDecision> {
    let mut groups: std::collections::BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = Default::default();
    for (id, s) in snapshots.into_iter().filter(|(_, s)| filter.matches(s)) {
        groups
            .entry(key_of(&s, group_by))
            .or_default()
            .push((id, s));
    }
    groups
        .into_iter()
        .map(|(key, list)| {
            let infos: Vec<SnapshotInfo> = list
                .iter()
                .map(|(_, s)| SnapshotInfo {
                    time: s.datetime(),
                    tags: s.tags.clone(),
                })
                .collect();
            let d = retention::apply_policy(&infos, policy);
            let keep = d
                .reasons
                .into_iter()
                .map(|r| Kept {
                    id: list[r.index].0,
                    snapshot: list[r.index].1.clone(),
                    reason: r,
                })
                .collect();
            let remove = d.remove.iter().map(|&i| list[i].clone()).collect();
            GroupDecision { key, keep, remove }
        })
        .collect()
}

/// Deletes snapshot files. The caller holds an exclusive lock.
pub fn remove_snapshots<S>(repo: &Repository<S>, ids: &[Id]) -> Result<()> {
    // First a sealed record of what goes, so that clients that saw these
    // snapshots know they were forgotten, not rolled back.
    repo.record_forget(ids)?;
    for id in ids {
        repo.remove_snapshot(id)?;
    }
    Ok(())
}

/// Refuses a decision that would remove every snapshot of a group.
pub fn check_not_removing_all(groups: &[GroupDecision]) -> Result<()> {
    for g in groups {
        if g.keep.is_empty() && !g.remove.is_empty() {
            return Err(Error::InvalidInput(format!(
                "the policy would remove all {} snapshots of group {}; refusing (use --unsafe-allow-remove-all)",
                g.remove.len(),
                serde_json::to_string(&g.key).unwrap_or_default()
            )));
        }
    }
    Ok(())
}

/// What `forget` removes, and whether prune follows.
#[derive(Clone, Debug, Default)]
pub struct ForgetOptions {
    /// Snapshots to remove by id prefix (instead of a policy).
    pub ids: Vec<String>,
    /// The retention policy (instead of ids).
    pub policy: Policy,
    /// How snapshots are grouped before the policy applies.
    pub group_by: GroupBy,
    /// Only snapshots passing this filter are considered.
    pub filter: SnapshotFilter,
    /// Decide and report, remove nothing.
    pub dry_run: bool,
    /// Allow a policy to remove every snapshot of a group.
    pub allow_remove_all: bool,
    /// Prune afterwards with these options (a dry run reports what
    /// forgetting would free).
    pub prune: Option<PruneOptions>,
}

impl ForgetOptions {
    /// Checks that exactly one of ids and policy is given.
    pub fn validate(&self) -> Result<()> {
        if self.policy.is_empty() && self.ids.is_empty() {
            return Err(Error::InvalidInput(
                "no policy and no snapshot ids given: refusing to remove anything (see `cairn forget --help`)".into(),
            ));
        }
        if !self.policy.is_empty() && !self.ids.is_empty() {
            return Err(Error::InvalidInput(
                "give either snapshot ids or a policy, not both".into(),
            ));
        }
        Ok(())
    }
}

/// How the snapshots to remove were chosen.
#[derive(Clone, Debug)]
pub enum ForgetDecision {
    /// By id.
    Ids(Vec<Id>),
    /// By policy, per group.
    Policy(Vec<GroupDecision>),
}

/// What `forget` decided and did.
#[derive(Clone, Debug)]
pub struct ForgetReport {
    /// The decision.
    pub decision: ForgetDecision,
    /// The snapshots removed (or that would be, in a dry run).
    pub removed: Vec<Id>,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Archived WAL files no kept base backup needs any more, removed with
    /// the snapshots (or that would be, in a dry run).
    pub wal_removed: Vec<String>,
    /// The prune that followed, if asked for.
    pub prune: Option<PruneReport>,
}

/// Removes snapshots by id or policy under an exclusive lock, then prunes
/// if asked to.
pub fn forget<S>(repo: &Repository<S>, opts: &ForgetOptions) -> Result<ForgetReport> {
    opts.validate()?;
    repo.check_may_delete("forget")?;
    let _lock = repo.lock_exclusive()?;
    let set = repo.load_snapshot_set()?;
    let decision = if !opts.ids.is_empty() {
        let mut ids = Vec::new();
        for sel in &opts.ids {
            // Also a snapshot whose file is damaged: forgetting it is how
            // the repository gets back to a state `check` accepts.
            ids.push(repo.find_snapshot_id(sel)?);
        }
        ForgetDecision::Ids(ids)
    } else {
        let groups = plan(set.shown.clone(), &opts.filter, &opts.policy, opts.group_by);
        if !opts.allow_remove_all {
            check_not_removing_all(&groups)?;
        }
        ForgetDecision::Policy(groups)
    };
    let removed: Vec<Id> = match &decision {
        ForgetDecision::Ids(ids) => ids.clone(),
        ForgetDecision::Policy(groups) => groups
            .iter()
            .flat_map(|g| g.remove.iter().map(|(id, _)| *id))
            .collect(),
    };
    // The files a removed snapshot hides (an interrupted `tag`) go first,
    // so none reappears.
    let mut files = Vec::new();
    for id in &removed {
        for hidden in set.hidden_behind(id) {
            if !files.contains(&hidden) && !removed.contains(&hidden) {
                files.push(hidden);
            }
        }
        files.push(*id);
    }
    if !opts.dry_run {
        remove_snapshots(repo, &files)?;
    }
    let wal_removed = expire_wal(repo, &set, &files, opts.dry_run)?;
    let removed = files;
    let prune = match &opts.prune {
        Some(p) => {
            let mut p = p.clone();
            p.dry_run = opts.dry_run;
            if opts.dry_run {
                p.assume_removed = removed.clone();
            }
            Some(prune_unlocked(repo, &p)?)
        }
        None => None,
    };
    Ok(ForgetReport {
        decision,
        removed,
        dry_run: opts.dry_run,
        wal_removed,
        prune,
    })
}

/// Removes the archived WAL that no base backup left after removing
/// `removed` needs (see [`crate::commands::wal::expired`]); returns the
/// names. Nothing is removed while any WAL record cannot be read.
fn expire_wal<S>(
    repo: &Repository<S>,
    set: &crate::repository::SnapshotSet,
    removed: &[Id],
    dry_run: bool,
) -> Result<Vec<String>> {
    let wal = repo.load_wal_records()?;
    if wal.records.is_empty() {
        return Ok(Vec::new());
    }
    if let Some((id, e)) = wal.unreadable.first() {
        return Err(Error::corrupt(
            format!("wal/{}", id.to_hex()),
            format!("{e}; no WAL was removed (run `cairn check`)"),
        ));
    }
    let kept: Vec<&crate::format::snapshot::PostgresRecord> = set
        .all()
        .filter(|(id, _)| !removed.contains(id))
        .filter_map(|(_, s)| s.postgres.as_ref())
        .collect();
    let expired = crate::commands::wal::expired(&wal.records, &kept);
    if !dry_run {
        for (id, _) in &expired {
            repo.remove_wal_record(id)?;
        }
    }
    Ok(expired.into_iter().map(|(_, name)| name).collect())
}
