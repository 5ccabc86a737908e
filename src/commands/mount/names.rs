//! The virtual top of a mount: which snapshot directories exist and what
//! they are called.
//!
//! The layout is restic's: `ids/<full id>/`, `snapshots/<time>/` with a
//! `latest` symlink, `hosts/<host>/<time>/` and `tags/<tag>/<time>/` (each
//! with its own `latest`). A time name is the snapshot's time in local time
//! to the second, with the offset as restic writes it
//! ([`time_name`]). Two snapshots of the same second are told apart by a
//! suffix: the older (by time, then id) keeps the plain name, the next gets
//! `-1`, then `-2`.
//!
//! Names are stable for the life of a mount: when the snapshot list is
//! reloaded, a snapshot keeps the name it had, and only new snapshots are
//! given names (none taken before), so a path a user is reading from never
//! starts pointing at another snapshot.

use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use chrono::TimeZone;
use std::collections::{BTreeMap, HashMap};
use std::hash::Hash;
use std::sync::Arc;

/// The name of the symlink to the newest snapshot of a directory.
pub const LATEST: &str = "latest";

/// A snapshot's directory name: its time in local time, to the second, as
/// restic writes it (Go's `2006-01-02T15:04:05Z07:00`):
/// `2026-12-02T05:47:55Z` where local time is UTC,
/// `2026-12-02T06:47:55+01:00` elsewhere.
pub fn time_name(s: &Snapshot) -> String {
    time_name_in(s, &chrono::Local)
}

/// [`time_name`] in the time zone `tz`.
pub fn time_name_in<Tz: TimeZone>(s: &Snapshot, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    use chrono::Offset;
    let t = s.datetime().with_timezone(tz);
    if t.offset().fix().local_minus_utc() == 0 {
        t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        t.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// A host name or tag made into one path component: `/` and NUL become
/// `_`, an empty name is `_`, and `.` and `..` get a leading `_`.
pub fn dir_name(s: &str) -> String {
    let clean: String = s
        .chars()
        .map(|c| if c == '/' || c == '\0' { '_' } else { c })
        .collect();
    match clean.as_str() {
        "" => "_".into(),
        "." | ".." => format!("_{clean}"),
        _ => clean,
    }
}

/// Unique names for keys, kept once given: `base`, else `base-1`, `base-2`...
#[derive(Clone, Debug)]
struct Names<K> {
    by_key: HashMap<K, String>,
    owner: HashMap<String, K>,
}

impl<K> Default for Names<K> {
    fn default() -> Self {
        Names {
            by_key: HashMap::new(),
            owner: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq + Clone> Names<K> {
    /// The name of `key`: the one it has, or a new one from `base` that no
    /// other key has and that is not `reserved`.
    fn name(&mut self, key: &K, base: &str, reserved: &[&str]) -> String {
        if let Some(n) = self.by_key.get(key) {
            return n.clone();
        }
        let mut name = base.to_string();
        let mut i = 1u64;
        while self.owner.contains_key(&name) || reserved.contains(&name.as_str()) {
            name = format!("{base}-{i}");
            i += 1;
        }
        self.by_key.insert(key.clone(), name.clone());
        self.owner.insert(name.clone(), key.clone());
        name
    }

    /// Forgets the names of keys for which `keep` is false.
    fn retain(&mut self, keep: impl Fn(&K) -> bool) {
        self.by_key.retain(|k, _| keep(k));
        self.owner.retain(|_, k| keep(k));
    }
}

/// One directory of snapshots named by time (`snapshots/`,
/// `hosts/<host>/`, `tags/<tag>/`).
#[derive(Clone, Debug, Default)]
pub struct View {
    /// Name → snapshot, sorted by name.
    pub entries: BTreeMap<String, Id>,
    /// The name of the newest snapshot (the target of `latest`).
    pub latest: Option<String>,
    names: Names<Id>,
}

impl View {
    /// Makes the view show `list` (oldest first), keeping the names of
    /// snapshots it showed before.
    fn update(&mut self, list: &[(Id, &Snapshot)]) {
        let ids: std::collections::HashSet<Id> = list.iter().map(|(id, _)| *id).collect();
        self.names.retain(|id| ids.contains(id));
        self.entries.clear();
        self.latest = None;
        for (id, s) in list {
            let name = self.names.name(id, &time_name(s), &[LATEST]);
            self.entries.insert(name.clone(), *id);
            self.latest = Some(name);
        }
    }
}

/// Views grouped by a key (`hosts/`, `tags/`): one directory per host or tag.
#[derive(Clone, Debug, Default)]
pub struct Group {
    /// Directory name → its view.
    pub dirs: BTreeMap<String, View>,
    names: Names<String>,
}

impl Group {
    /// Makes the group show `list` (oldest first), each snapshot under
    /// every key `keys` gives it.
    fn update<'a>(
        &mut self,
        list: &[(Id, &'a Snapshot)],
        keys: impl Fn(&'a Snapshot) -> Vec<&'a str>,
    ) {
        let mut members: Vec<(String, Vec<(Id, &Snapshot)>)> = Vec::new();
        let mut pos: HashMap<&str, usize> = HashMap::new();
        for (id, s) in list {
            for k in keys(s) {
                let i = *pos.entry(k).or_insert_with(|| {
                    members.push((k.to_string(), Vec::new()));
                    members.len() - 1
                });
                members[i].1.push((*id, s));
            }
        }
        let present: std::collections::HashSet<&String> = members.iter().map(|(k, _)| k).collect();
        self.names.retain(|k| present.contains(k));
        let mut old = std::mem::take(&mut self.dirs);
        for (key, snaps) in &members {
            let dir = self.names.name(key, &dir_name(key), &[]);
            let mut view = old.remove(&dir).unwrap_or_default();
            view.update(snaps);
            self.dirs.insert(dir, view);
        }
    }
}

/// Everything the virtual directories show, for one state of the snapshot
/// list.
#[derive(Clone, Debug, Default)]
pub struct Views {
    /// The snapshots shown (those passing the mount's filter), by id.
    pub snapshots: HashMap<Id, Arc<Snapshot>>,
    /// `ids/`: full hex id → snapshot.
    pub ids: BTreeMap<String, Id>,
    /// `snapshots/`.
    pub all: View,
    /// `hosts/`.
    pub hosts: Group,
    /// `tags/`.
    pub tags: Group,
}

impl Views {
    /// Makes the views show `list` (sorted oldest first), keeping every
    /// name given before to a snapshot still listed.
    pub fn update(&mut self, list: Vec<(Id, Arc<Snapshot>)>) {
        let refs: Vec<(Id, &Snapshot)> = list.iter().map(|(id, s)| (*id, s.as_ref())).collect();
        self.all.update(&refs);
        self.hosts.update(&refs, |s| vec![s.hostname.as_str()]);
        self.tags
            .update(&refs, |s| s.tags.iter().map(String::as_str).collect());
        self.ids = list.iter().map(|(id, _)| (id.to_hex(), *id)).collect();
        self.snapshots = list.into_iter().collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::snapshot::Snapshot;

    fn snap(time: i64, nsec: u32, host: &str, tags: &[&str]) -> Snapshot {
        Snapshot {
            time,
            time_nsec: nsec,
            utc_offset: 0,
            hostname: host.into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/data".into()],
            tags: tags.iter().map(|t| t.to_string()).collect(),
            tree: Id([7; 32]),
            parent: None,
            summary: Default::default(),
            error_messages: Vec::new(),
            program_version: String::new(),
            databases: Vec::new(),
            replaces: None,
            postgres: None,
        }
    }

    fn id(n: u8) -> Id {
        Id([n; 32])
    }

    #[test]
    fn time_names_follow_restic() {
        let s = snap(1_796_190_475, 5, "h", &[]);
        let utc = chrono::Utc;
        assert_eq!(time_name_in(&s, &utc), "2026-12-02T05:47:55Z");
        let plus1 = chrono::FixedOffset::east_opt(3600).unwrap();
        assert_eq!(time_name_in(&s, &plus1), "2026-12-02T06:47:55+01:00");
        let minus = chrono::FixedOffset::west_opt(5 * 3600 + 1800).unwrap();
        assert_eq!(time_name_in(&s, &minus), "2026-12-02T00:17:55-05:30");
    }

    #[test]
    fn host_and_tag_names_are_one_component() {
        assert_eq!(dir_name("web01"), "web01");
        assert_eq!(dir_name("a/b"), "a_b");
        assert_eq!(dir_name(""), "_");
        assert_eq!(dir_name(".."), "_..");
        assert_eq!(dir_name("."), "_.");
        assert_eq!(dir_name("x\0y"), "x_y");
    }

    fn ordered(list: Vec<(Id, Snapshot)>) -> Vec<(Id, Arc<Snapshot>)> {
        let mut l: Vec<(Id, Snapshot)> = list;
        crate::repository::snapshots::sort_by_time(&mut l);
        l.into_iter().map(|(i, s)| (i, Arc::new(s))).collect()
    }

    #[test]
    fn clashes_get_suffixes_and_names_stay_put() {
        let t = 1_796_190_475;
        let mut v = Views::default();
        v.update(ordered(vec![
            (id(2), snap(t, 100, "a", &["x"])),
            (id(1), snap(t, 100, "a", &[])),
            (id(3), snap(t + 60, 0, "b", &["x", "y"])),
        ]));
        let names: Vec<(&str, Id)> = v
            .all
            .entries
            .iter()
            .map(|(n, i)| (n.as_str(), *i))
            .collect();
        let base = time_name(&snap(t, 0, "a", &[]));
        let next = time_name(&snap(t + 60, 0, "a", &[]));
        let dup = format!("{base}-1");
        // Same second: ordered by id, the first keeps the plain name.
        assert_eq!(
            names,
            vec![
                (base.as_str(), id(1)),
                (dup.as_str(), id(2)),
                (next.as_str(), id(3))
            ]
        );
        assert_eq!(v.all.latest.as_deref(), Some(next.as_str()));
        assert_eq!(v.hosts.dirs.keys().collect::<Vec<_>>(), vec!["a", "b"]);
        assert_eq!(v.hosts.dirs["a"].entries.len(), 2);
        assert_eq!(v.tags.dirs["x"].entries.len(), 2);
        assert_eq!(v.tags.dirs["y"].entries.len(), 1);
        assert_eq!(v.ids.len(), 3);

        // The older one goes away; a new one of the same second arrives:
        // the remaining snapshot keeps its "-1" name, the new one takes the
        // free plain name, never a name another snapshot has.
        v.update(ordered(vec![
            (id(2), snap(t, 100, "a", &["x"])),
            (id(3), snap(t + 60, 0, "b", &["x", "y"])),
            (id(9), snap(t, 200, "a", &[])),
        ]));
        assert_eq!(v.all.entries.get(&dup), Some(&id(2)));
        assert_eq!(v.all.entries.get(&base), Some(&id(9)));
        assert_eq!(v.all.entries.get(&next), Some(&id(3)));
        assert_eq!(v.all.latest.as_deref(), Some(next.as_str()));
        assert!(!v.ids.contains_key(&id(1).to_hex()));
    }

    #[test]
    fn hosts_that_clean_up_alike_get_separate_directories() {
        let mut v = Views::default();
        v.update(ordered(vec![
            (id(1), snap(100, 0, "a/b", &[])),
            (id(2), snap(200, 0, "a_b", &[])),
        ]));
        assert_eq!(
            v.hosts.dirs.keys().collect::<Vec<_>>(),
            vec!["a_b", "a_b-1"]
        );
    }
}
