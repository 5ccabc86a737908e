//! Forget: choose which snapshots a retention policy removes, per group.
//!
//! Snapshots are grouped (by default by host and paths, like restic) and
//! the policy is applied to each group on its own, so one host's hourly
//! snapshots never push out another host's. The policy semantics live in
//! [`crate::retention`]; this module only groups, maps and deletes.

use crate::backend::FileKind;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::Repository;
use crate::retention::{self, KeepReason, Policy, SnapshotInfo};
use crate::snapshot::{Snapshot, SnapshotFilter};
use serde::Serialize;

/// Which snapshot fields form a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GroupBy {
    /// Group by host name.
    pub host: bool,
    /// Group by the set of paths.
    pub paths: bool,
    /// Group by the set of tags.
    pub tags: bool,
}

impl Default for GroupBy {
    fn default() -> Self {
        GroupBy {
            host: true,
            paths: true,
            tags: false,
        }
    }
}

impl std::str::FromStr for GroupBy {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<GroupBy, String> {
        let mut g = GroupBy {
            host: false,
            paths: false,
            tags: false,
        };
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "host" => g.host = true,
                "paths" | "path" => g.paths = true,
                "tags" | "tag" => g.tags = true,
                other => {
                    return Err(format!(
                        "unknown group-by field {other:?} (use host, paths, tags)"
                    ));
                }
            }
        }
        Ok(g)
    }
}

/// The key of one group; fields not grouped by are `None`.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct GroupKey {
    /// Host name.
    pub hostname: Option<String>,
    /// Paths.
    pub paths: Option<Vec<String>>,
    /// Tags.
    pub tags: Option<Vec<String>>,
}

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

fn key_of(s: &Snapshot, g: GroupBy) -> GroupKey {
    GroupKey {
        hostname: g.host.then(|| s.hostname.clone()),
        paths: g.paths.then(|| s.paths.clone()),
        tags: g.tags.then(|| s.tags.clone()),
    }
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
pub fn remove_snapshots(repo: &Repository, ids: &[Id]) -> Result<()> {
    for id in ids {
        repo.backend.remove(FileKind::Snapshot, id)?;
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
