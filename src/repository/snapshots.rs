//! Snapshot files: reading, choosing, writing and removing them.
//!
//! A snapshot file is written last, after everything it references is
//! durable, so every snapshot that exists restores. Choosing one follows
//! restic: a unique id prefix, `latest`, or the newest at or before a time,
//! among the snapshots that pass a [`SnapshotFilter`].
//!
//! A damaged snapshot file costs that snapshot only: listings skip it with
//! a warning naming the file, every other snapshot stays usable, `check`
//! reports it, and `forget` can remove it by id.

use super::Repository;
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use std::collections::{HashMap, HashSet};

/// Filters applied when selecting snapshots (`--host`, `--tag`, `--path`).
#[derive(Clone, Debug, Default)]
pub struct SnapshotFilter {
    /// Keep snapshots whose host is one of these (any if empty).
    pub hosts: Vec<String>,
    /// Keep snapshots matching one of these tag lists; a list like `a,b`
    /// matches a snapshot that has both tags (any if empty).
    pub tags: Vec<Vec<String>>,
    /// Keep snapshots whose paths include all of these (any if empty).
    pub paths: Vec<String>,
}

impl SnapshotFilter {
    /// Whether `s` passes the filter.
    pub fn matches(&self, s: &Snapshot) -> bool {
        (self.hosts.is_empty() || self.hosts.contains(&s.hostname))
            && (self.tags.is_empty() || self.tags.iter().any(|set| s.has_tags(set)))
            && self.paths.iter().all(|p| s.paths.iter().any(|sp| sp == p))
    }
}

impl<S> Repository<S> {
    /// Reads one snapshot.
    pub fn load_snapshot(&self, id: &Id) -> Result<Snapshot> {
        let bytes = self.read_file(FileKind::Snapshot, id)?;
        let what = Handle::new(FileKind::Snapshot, *id).rel_path();
        Snapshot::decode(&self.core.key, &bytes, &what)
    }

    /// Ids of every snapshot file.
    pub fn snapshot_ids(&self) -> Result<Vec<Id>> {
        Ok(self
            .core
            .backend
            .list(FileKind::Snapshot)?
            .into_iter()
            .map(|(id, _)| id)
            .collect())
    }

    /// Reads every snapshot that can be read, oldest first, except those
    /// hidden behind a replacement (see [`SnapshotSet`]). A damaged
    /// snapshot file is skipped with a warning (it costs that snapshot
    /// only); a file removed meanwhile is skipped silently; any other error
    /// (the storage cannot be read) fails.
    pub fn load_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        Ok(self.load_snapshot_set()?.shown)
    }

    /// Reads every snapshot that can be read, shown and hidden.
    pub fn load_snapshot_set(&self) -> Result<SnapshotSet> {
        Ok(SnapshotSet::new(self.load_all_snapshots()?))
    }

    fn load_all_snapshots(&self) -> Result<Vec<(Id, Snapshot)>> {
        let mut out = Vec::new();
        let ids = self.snapshot_ids()?;
        let at_once = self.core.backend.write_concurrency().max(1);
        let plain = self.without_index();
        let plain = &plain;
        let mut loaded = Vec::with_capacity(ids.len());
        for group in ids.chunks(at_once) {
            if group.len() == 1 {
                loaded.push((group[0], self.load_snapshot(&group[0])));
                continue;
            }
            // A remote store answers several reads at once.
            std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|id| (*id, s.spawn(move || plain.load_snapshot(id))))
                    .collect();
                for (id, h) in handles {
                    let r = h.join().unwrap_or_else(|_| {
                        Err(Error::InvalidInput("snapshot reader panicked".into()))
                    });
                    loaded.push((id, r));
                }
            });
        }
        for (id, r) in loaded {
            match r {
                Ok(s) => out.push((id, s)),
                Err(e) if e.is_not_found() => {}
                Err(e @ Error::Corrupt { .. }) => self.core.warn(format!(
                    "{e}; this snapshot is skipped (`cairn forget {}` removes it)",
                    id.short()
                )),
                Err(e) => return Err(e),
            }
        }
        sort_by_time(&mut out);
        Ok(out)
    }

    /// The one snapshot file whose id starts with `prefix`, readable or
    /// not (for `forget`, which must be able to remove a damaged one).
    pub fn find_snapshot_id(&self, prefix: &str) -> Result<Id> {
        if prefix == "latest" {
            return Ok(self.find_snapshot(prefix, &SnapshotFilter::default())?.0);
        }
        let lower = check_prefix(prefix)?;
        let matches: Vec<Id> = self
            .snapshot_ids()?
            .into_iter()
            .filter(|id| id.to_hex().starts_with(&lower))
            .collect();
        match matches.len() {
            0 => Err(Error::SnapshotNotFound(prefix.into())),
            1 => Ok(matches[0]),
            n => Err(Error::AmbiguousSnapshot(prefix.into(), n)),
        }
    }

    /// Writes a snapshot; returns its id.
    pub fn save_snapshot(&self, s: &Snapshot) -> Result<Id> {
        self.write_file(FileKind::Snapshot, &s.encode(&self.core.key)?)
    }

    /// Removes a snapshot file (hides it while Object Lock retains it).
    /// The caller holds an exclusive lock.
    pub fn remove_snapshot(&self, id: &Id) -> Result<()> {
        self.core
            .remove_or_hide(Handle::new(FileKind::Snapshot, *id))
    }

    /// Resolves a snapshot selector: `latest`, or a unique id prefix,
    /// among snapshots passing `filter`.
    pub fn find_snapshot(&self, selector: &str, filter: &SnapshotFilter) -> Result<(Id, Snapshot)> {
        self.find_snapshot_in(&self.load_snapshots()?, selector, filter)
    }

    /// [`Self::find_snapshot`] among already loaded snapshots (oldest first).
    pub fn find_snapshot_in(
        &self,
        loaded: &[(Id, Snapshot)],
        selector: &str,
        filter: &SnapshotFilter,
    ) -> Result<(Id, Snapshot)> {
        let mut cands: Vec<_> = loaded
            .iter()
            .filter(|(_, s)| filter.matches(s))
            .cloned()
            .collect();
        if selector == "latest" {
            return cands
                .pop()
                .ok_or_else(|| Error::SnapshotNotFound(selector.into()));
        }
        let lower = check_prefix(selector)?;
        cands.retain(|(id, _)| id.to_hex().starts_with(&lower));
        match cands.len() {
            0 => {
                // Name the damage rather than "no such snapshot".
                let damaged = self
                    .snapshot_ids()?
                    .into_iter()
                    .find(|id| id.to_hex().starts_with(&lower));
                match damaged.map(|id| self.load_snapshot(&id)) {
                    Some(Err(e @ Error::Corrupt { .. })) => Err(e),
                    _ => Err(Error::SnapshotNotFound(selector.into())),
                }
            }
            1 => Ok(cands.remove(0)),
            n => Err(Error::AmbiguousSnapshot(selector.into(), n)),
        }
    }

    /// The newest snapshot at or before `time` (Unix seconds, nanoseconds)
    /// passing `filter`.
    pub fn find_snapshot_at(
        &self,
        time: (i64, u32),
        filter: &SnapshotFilter,
    ) -> Result<(Id, Snapshot)> {
        self.load_snapshots()?
            .into_iter()
            .rfind(|(_, s)| filter.matches(s) && (s.time, s.time_nsec) <= time)
            .ok_or_else(|| {
                let when = chrono::DateTime::from_timestamp(time.0, time.1)
                    .map(|t| t.with_timezone(&chrono::Local).to_rfc3339())
                    .unwrap_or_default();
                Error::SnapshotNotFound(format!("at or before {when}"))
            })
    }
}

/// The readable snapshots, split into those shown and those hidden behind
/// a replacement: `cairn tag` writes a snapshot that `replaces` the old
/// one and then deletes the old file; a crash in between leaves both, and
/// the old one is hidden (format-spec/v1-databases.md section 5).
#[derive(Clone, Debug, Default)]
pub struct SnapshotSet {
    /// Snapshots shown to users, oldest first.
    pub shown: Vec<(Id, Snapshot)>,
    /// Hidden snapshots, each with the id of the snapshot that replaces it.
    pub hidden: Vec<(Id, Snapshot, Id)>,
}

impl SnapshotSet {
    /// Splits `all` (oldest first).
    pub fn new(all: Vec<(Id, Snapshot)>) -> SnapshotSet {
        let by_id: HashMap<Id, &Snapshot> = all.iter().map(|(id, s)| (*id, s)).collect();
        let mut hidden_by: HashMap<Id, Id> = HashMap::new();
        for (id, s) in &all {
            let Some(old_id) = s.replaces else { continue };
            let Some(old) = by_id.get(&old_id) else {
                continue;
            };
            let same = old.tree == s.tree
                && (old.time, old.time_nsec) == (s.time, s.time_nsec)
                && old.hostname == s.hostname
                && old.paths == s.paths;
            if same && old_id != *id {
                hidden_by.insert(old_id, *id);
            }
        }
        // A cycle would hide every member; show them all instead (no
        // writer makes one, and a hidden file must never be the last copy
        // of a snapshot).
        let in_cycle = |start: Id| {
            let mut at = start;
            for _ in 0..=hidden_by.len() {
                match hidden_by.get(&at) {
                    Some(next) if *next == start => return true,
                    Some(next) => at = *next,
                    None => return false,
                }
            }
            true
        };
        let cyclic: HashSet<Id> = hidden_by
            .keys()
            .copied()
            .filter(|id| in_cycle(*id))
            .collect();
        hidden_by.retain(|id, _| !cyclic.contains(id));
        let mut set = SnapshotSet::default();
        for (id, s) in all {
            match hidden_by.get(&id) {
                Some(by) => set.hidden.push((id, s, *by)),
                None => set.shown.push((id, s)),
            }
        }
        set
    }

    /// The hidden snapshots behind `id` (directly or through other hidden
    /// ones), deepest first: the order to delete them in, so that a crash
    /// midway never uncovers one.
    pub fn hidden_behind(&self, id: &Id) -> Vec<Id> {
        let mut chain = Vec::new();
        let mut frontier = vec![*id];
        while let Some(at) = frontier.pop() {
            for (hid, _, by) in &self.hidden {
                if *by == at && !chain.contains(hid) {
                    chain.push(*hid);
                    frontier.push(*hid);
                }
            }
        }
        chain.reverse();
        chain
    }

    /// Every readable snapshot, shown or hidden (what `prune` must keep).
    pub fn all(&self) -> impl Iterator<Item = (&Id, &Snapshot)> {
        self.shown
            .iter()
            .map(|(id, s)| (id, s))
            .chain(self.hidden.iter().map(|(id, s, _)| (id, s)))
    }
}

/// A snapshot id prefix in lower case, or the error for one that is not hex.
fn check_prefix(selector: &str) -> Result<String> {
    let lower = selector.to_ascii_lowercase();
    if lower.is_empty() || !lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Error::InvalidInput(format!(
            "{selector:?} is not a snapshot id (hex digits) or \"latest\""
        )));
    }
    Ok(lower)
}

/// Sorts snapshots oldest first (ties by id, so the order is total).
pub fn sort_by_time(list: &mut [(Id, Snapshot)]) {
    list.sort_by_key(|a| (a.1.time, a.1.time_nsec, a.0));
}
