//! Rollback detection: each client remembers the newest state of each
//! repository it has seen, and notices when the repository later shows an
//! older one.
//!
//! Whoever controls the storage (or holds credentials that may delete, or
//! restores older object versions) can present an older repository: the
//! newest snapshots gone, the index as it was. Every file in it is still
//! authentic, so nothing else notices. The client keeps, in its cache
//! folder, the ids of the snapshots it has seen and the newest index state
//! (the latest time a prune or repair wrote into the index, and the live
//! index files then). A snapshot that has disappeared is explained only by
//! a sealed forget record naming it or by a snapshot that replaces it
//! (`tag`); an index state older than the one seen, or an index file gone
//! with no prune since, is explained by nothing. Both are reported until
//! the repository shows the newer state again or the user removes the
//! state file (after restoring an older copy on purpose).

use super::{Core, Repository};
use crate::backend::{FileKind, Handle};
use crate::error::Result;
use crate::format::forget::ForgetRecord;
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// What a client remembers of one repository.
#[derive(Default, Serialize, Deserialize)]
struct SeenState {
    /// Snapshot ids seen (and not explained away since).
    snapshots: BTreeSet<String>,
    /// The newest `time` of an index file written by prune or repair.
    index_time: i64,
    /// The live index files when `index_time` was seen.
    index_files: BTreeSet<String>,
    /// The files those superseded: none may be live again.
    #[serde(default)]
    superseded: BTreeSet<String>,
    /// When this client last saw the repository (Unix seconds).
    seen: i64,
}

/// The index state a command saw: its live files and the newest prune or
/// repair time among them.
pub struct IndexSeen {
    /// Live index files.
    pub live: Vec<Id>,
    /// Newest `time` of a prune or repair extension block (0: none).
    pub newest_time: i64,
    /// Live files written by prune or repair.
    pub written_by_prune: Vec<Id>,
    /// Files the live files supersede.
    pub superseded: Vec<Id>,
}

/// What disappeared since this client last looked.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Rollback {
    /// Snapshots seen before, gone now, with no forget record or
    /// replacement explaining it.
    pub missing_snapshots: Vec<String>,
    /// Index files seen live before, gone now, with no prune since.
    pub missing_index_files: Vec<String>,
    /// The index's newest prune time went back: (seen before, now).
    pub index_went_back: Option<(i64, i64)>,
    /// Index files a prune this client saw had replaced are live again.
    pub replaced_index_files_back: Vec<String>,
    /// When this client last saw the repository (RFC 3339).
    pub last_seen: Option<String>,
    /// The state file to remove to accept the older state.
    pub state_file: String,
}

impl Rollback {
    /// Whether anything disappeared.
    pub fn detected(&self) -> bool {
        !self.missing_snapshots.is_empty()
            || !self.missing_index_files.is_empty()
            || self.index_went_back.is_some()
            || !self.replaced_index_files_back.is_empty()
    }

    /// One line per finding, for warnings and `check`.
    pub fn lines(&self) -> Vec<String> {
        let since = self.last_seen.as_deref().unwrap_or("before");
        let mut out = Vec::new();
        if !self.missing_snapshots.is_empty() {
            let shown: Vec<&str> = self
                .missing_snapshots
                .iter()
                .take(10)
                .map(|s| &s[..8.min(s.len())])
                .collect();
            out.push(format!(
                "ROLLBACK? {} snapshot(s) this client saw (last at {since}) are gone and no forget record explains it: {}{}",
                self.missing_snapshots.len(),
                shown.join(", "),
                if self.missing_snapshots.len() > 10 { ", ..." } else { "" }
            ));
        }
        if let Some((before, now)) = self.index_went_back {
            out.push(format!(
                "ROLLBACK? the index is older than the one this client saw (prune state of {} now, {} before)",
                fmt_time(now),
                fmt_time(before)
            ));
        }
        if !self.replaced_index_files_back.is_empty() {
            out.push(format!(
                "ROLLBACK? {} index file(s) that a prune this client saw had replaced are live again (first: {})",
                self.replaced_index_files_back.len(),
                &self.replaced_index_files_back[0][..16.min(self.replaced_index_files_back[0].len())]
            ));
        }
        if !self.missing_index_files.is_empty() {
            out.push(format!(
                "ROLLBACK? {} index file(s) this client saw are gone with no prune since (first: {})",
                self.missing_index_files.len(),
                &self.missing_index_files[0][..16.min(self.missing_index_files[0].len())]
            ));
        }
        if !out.is_empty() {
            out.push(format!(
                "the repository may have been rolled back or files deleted behind cairn's back; if an older copy was restored on purpose, remove {} to accept it",
                self.state_file
            ));
        }
        out
    }
}

fn fmt_time(t: i64) -> String {
    chrono::DateTime::from_timestamp(t, 0)
        .map(|t| t.to_rfc3339())
        .unwrap_or_else(|| t.to_string())
}

/// Where this client keeps what it saw of repository `id`.
fn state_path(core: &Core) -> Option<PathBuf> {
    let base = core
        .options
        .cache_dir
        .clone()
        .or_else(crate::backend::cache::default_dir)?;
    Some(
        base.join("seen")
            .join(format!("{}.json", hex::encode(core.config.id))),
    )
}

fn load(path: &std::path::Path) -> Option<SeenState> {
    let text = std::fs::read_to_string(path).ok()?;
    serde_json::from_str(&text).ok()
}

fn store(path: &std::path::Path, state: &SeenState) {
    let Some(dir) = path.parent() else { return };
    if std::fs::create_dir_all(dir).is_err() {
        return;
    }
    let Ok(text) = serde_json::to_vec(state) else {
        return;
    };
    // Atomic: a torn state file would be read as no state at all.
    if let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) {
        use std::io::Write;
        if tmp.write_all(&text).is_ok() && tmp.as_file().sync_all().is_ok() {
            let _ = tmp.persist(path);
        }
    }
}

impl<S> Repository<S> {
    /// Writes a sealed record that `snapshots` are being forgotten (before
    /// their files are removed).
    pub(crate) fn record_forget(&self, snapshots: &[Id]) -> Result<()> {
        if snapshots.is_empty() {
            return Ok(());
        }
        let r = ForgetRecord {
            time: chrono::Utc::now().timestamp(),
            hostname: crate::sys::hostname(),
            username: crate::sys::username(),
            snapshots: snapshots.to_vec(),
        };
        self.write_file(FileKind::Forget, &r.encode(&self.core.key)?)?;
        Ok(())
    }

    /// Every snapshot id some readable forget record names.
    fn forgotten(&self) -> Result<BTreeSet<Id>> {
        let mut out = BTreeSet::new();
        for (id, _) in self.core.backend.list(FileKind::Forget)? {
            let h = Handle::new(FileKind::Forget, id);
            let what = h.rel_path();
            let key = &self.core.key;
            let read = self.core.read_decoded(h, |b| {
                super::check_file_name(&id, b, &what)?;
                ForgetRecord::decode(key, b, &what)
            });
            // A record that cannot be read explains nothing.
            if let Ok(r) = read {
                out.extend(r.snapshots);
            }
        }
        Ok(out)
    }

    /// Compares what the repository shows now (its snapshots, and the
    /// index state if the command loaded it) with what this client saw
    /// last, remembers the newer state, and says what disappeared.
    pub fn detect_rollback(
        &self,
        snapshots: &[(Id, Snapshot)],
        index: Option<&IndexSeen>,
    ) -> Result<Rollback> {
        let Some(path) = state_path(&self.core) else {
            return Ok(Rollback::default());
        };
        let mut found = Rollback {
            state_file: path.display().to_string(),
            ..Default::default()
        };
        let now_ids: BTreeSet<String> = snapshots.iter().map(|(id, _)| id.to_hex()).collect();
        let Some(mut state) = load(&path) else {
            let mut state = SeenState {
                snapshots: now_ids,
                seen: chrono::Utc::now().timestamp(),
                ..Default::default()
            };
            if let Some(ix) = index {
                state.index_time = ix.newest_time;
                state.index_files = ix.live.iter().map(Id::to_hex).collect();
                state.superseded = ix.superseded.iter().map(Id::to_hex).collect();
            }
            store(&path, &state);
            return Ok(found);
        };
        found.last_seen = chrono::DateTime::from_timestamp(state.seen, 0).map(|t| t.to_rfc3339());
        let mut gone: Vec<String> = state.snapshots.difference(&now_ids).cloned().collect();
        // A snapshot file that is there but cannot be read is damage
        // (reported as such), not a rollback; it stays remembered.
        let mut unreadable = Vec::new();
        if !gone.is_empty() {
            let listed: BTreeSet<String> = self.snapshot_ids()?.iter().map(Id::to_hex).collect();
            (unreadable, gone) = gone.into_iter().partition(|id| listed.contains(id));
        }
        if !gone.is_empty() {
            let mut explained: BTreeSet<String> =
                self.forgotten()?.iter().map(Id::to_hex).collect();
            explained.extend(
                snapshots
                    .iter()
                    .filter_map(|(_, s)| s.replaces.map(|r| r.to_hex())),
            );
            found.missing_snapshots = gone
                .into_iter()
                .filter(|id| !explained.contains(id))
                .collect();
        }
        if let Some(ix) = index {
            let live: BTreeSet<String> = ix.live.iter().map(Id::to_hex).collect();
            found.replaced_index_files_back =
                live.intersection(&state.superseded).cloned().collect();
            if ix.newest_time < state.index_time {
                found.index_went_back = Some((state.index_time, ix.newest_time));
            } else if ix.newest_time == state.index_time {
                // Index files go only when a prune or repair writes new
                // ones (with a time; two may share a second): a live file
                // written by one that this client has not seen explains it.
                let new_prune = ix
                    .written_by_prune
                    .iter()
                    .any(|id| !state.index_files.contains(&id.to_hex()));
                if !new_prune {
                    found.missing_index_files =
                        state.index_files.difference(&live).cloned().collect();
                }
            }
            if !found.detected() {
                state.index_time = ix.newest_time;
                state.index_files = live;
                state.superseded = ix.superseded.iter().map(Id::to_hex).collect();
            }
        }
        // Remember the newer state; what disappeared unexplained stays
        // remembered, so the warning repeats until it is dealt with, and so
        // does a snapshot that is there but unreadable.
        state.snapshots = now_ids;
        state.snapshots.extend(unreadable);
        state
            .snapshots
            .extend(found.missing_snapshots.iter().cloned());
        state.seen = chrono::Utc::now().timestamp();
        store(&path, &state);
        Ok(found)
    }

    /// Adds a snapshot this client just wrote to what it has seen.
    pub fn remember_snapshot(&self, id: &Id) {
        let Some(path) = state_path(&self.core) else {
            return;
        };
        if let Some(mut state) = load(&path) {
            state.snapshots.insert(id.to_hex());
            store(&path, &state);
        }
    }

    /// Warns (through the repository's warning handler) about whatever
    /// disappeared; returns the findings.
    pub fn warn_rollback(&self, snapshots: &[(Id, Snapshot)]) -> Result<Rollback> {
        let r = self.detect_rollback(snapshots, None)?;
        for line in r.lines() {
            self.core.warn(line);
        }
        Ok(r)
    }
}
