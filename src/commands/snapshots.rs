//! `snapshots`: the snapshots passing a filter, oldest first.

use crate::error::Result;
use crate::format::id::Id;

use crate::repository::{Repository, SnapshotFilter};
use serde::Serialize;
use std::collections::BTreeMap;

pub use crate::format::snapshot::{CheckKind, DatabaseRecord, Snapshot, Summary};

/// The snapshots passing `filter`, oldest first (under a shared lock).
/// Warns when snapshots this client saw before have disappeared
/// (rollback detection).
pub fn list<S>(repo: &Repository<S>, filter: &SnapshotFilter) -> Result<Vec<(Id, Snapshot)>> {
    let all = repo.load_snapshots()?;
    repo.warn_rollback(&all)?;
    Ok(all.into_iter().filter(|(_, s)| filter.matches(s)).collect())
}

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

/// The group `s` belongs to.
pub fn key_of(s: &Snapshot, g: GroupBy) -> GroupKey {
    GroupKey {
        hostname: g.host.then(|| s.hostname.clone()),
        paths: g.paths.then(|| s.paths.clone()),
        tags: g.tags.then(|| s.tags.clone()),
    }
}

/// Snapshots of one group, oldest first.
#[derive(Clone, Debug)]
pub struct SnapshotGroup {
    /// The group's key (all `None` when not grouping).
    pub key: GroupKey,
    /// Its snapshots, oldest first.
    pub snapshots: Vec<(Id, Snapshot)>,
}

/// How `snapshots` lists.
#[derive(Clone, Debug, Default)]
pub struct ListOptions {
    /// Which snapshots.
    pub filter: SnapshotFilter,
    /// Only the newest N of each host and path set (restic's `--latest`).
    pub latest: Option<usize>,
    /// Group by these fields (`None`: one group).
    pub group_by: Option<GroupBy>,
}

/// The snapshots passing the filter, grouped, oldest first in each group.
pub fn list_grouped<S>(repo: &Repository<S>, opts: &ListOptions) -> Result<Vec<SnapshotGroup>> {
    let mut list = list(repo, &opts.filter)?;
    if let Some(n) = opts.latest {
        list = newest_per_host_and_paths(list, n);
    }
    let Some(g) = opts.group_by else {
        return Ok(vec![SnapshotGroup {
            key: GroupKey {
                hostname: None,
                paths: None,
                tags: None,
            },
            snapshots: list,
        }]);
    };
    let mut groups: BTreeMap<GroupKey, Vec<(Id, Snapshot)>> = BTreeMap::new();
    for (id, s) in list {
        groups.entry(key_of(&s, g)).or_default().push((id, s));
    }
    Ok(groups
        .into_iter()
        .map(|(key, snapshots)| SnapshotGroup { key, snapshots })
        .collect())
}

/// Keeps the newest `n` snapshots of each host and path set (oldest first).
fn newest_per_host_and_paths(list: Vec<(Id, Snapshot)>, n: usize) -> Vec<(Id, Snapshot)> {
    let mut seen: std::collections::HashMap<(String, Vec<String>), usize> = Default::default();
    let mut keep: Vec<(Id, Snapshot)> = list
        .into_iter()
        .rev()
        .filter(|(_, s)| {
            let count = seen
                .entry((s.hostname.clone(), s.paths.clone()))
                .or_default();
            *count += 1;
            *count <= n
        })
        .collect();
    keep.reverse();
    keep
}
