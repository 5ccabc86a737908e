//! `tag`: change the tags of existing snapshots.
//!
//! A snapshot file is immutable (its id is the hash of its bytes), so a
//! tag change writes a new snapshot that `replaces` the old one, makes it
//! durable, and only then deletes the old file. A crash in between leaves
//! both files; readers hide the old one (format-spec/v1-databases.md
//! section 5), and the next `tag` or `forget` of the new one deletes it.

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::repository::{Repository, SnapshotFilter};

/// What to do to the tags.
#[derive(Clone, Debug, Default)]
pub struct TagChange {
    /// Tags to add.
    pub add: Vec<String>,
    /// Tags to remove.
    pub remove: Vec<String>,
    /// Replace all tags with these (exclusive with add/remove).
    pub set: Option<Vec<String>>,
}

impl TagChange {
    /// Refuses an empty or contradictory change and bad tag names.
    pub fn validate(&self) -> Result<()> {
        if self.set.is_some() && (!self.add.is_empty() || !self.remove.is_empty()) {
            return Err(Error::InvalidInput(
                "--set replaces all tags; it cannot be combined with --add or --remove".into(),
            ));
        }
        if self.set.is_none() && self.add.is_empty() && self.remove.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to do: give --add, --remove or --set".into(),
            ));
        }
        for t in self.add.iter().chain(self.set.iter().flatten()) {
            check_tag(t)?;
        }
        Ok(())
    }

    /// The tags `old` becomes, sorted and unique.
    pub fn apply(&self, old: &[String]) -> Vec<String> {
        let mut tags: Vec<String> = match &self.set {
            Some(set) => set.clone(),
            None => old
                .iter()
                .filter(|t| !self.remove.contains(t))
                .cloned()
                .chain(self.add.iter().cloned())
                .collect(),
        };
        tags.sort();
        tags.dedup();
        tags
    }
}

/// Refuses a tag that cannot be given back on the command line: empty,
/// with a comma (the list separator), or with control characters.
pub fn check_tag(t: &str) -> Result<()> {
    if t.is_empty() || t.contains(',') || t.chars().any(char::is_control) {
        return Err(Error::InvalidInput(format!(
            "{t:?} is not a valid tag (tags are non-empty, without commas or control characters)"
        )));
    }
    Ok(())
}

/// One rewritten snapshot.
#[derive(Clone, Debug)]
pub struct Retagged {
    /// The old snapshot's id (deleted).
    pub old: Id,
    /// The new snapshot's id.
    pub new: Id,
    /// Tags before.
    pub old_tags: Vec<String>,
    /// Tags after.
    pub new_tags: Vec<String>,
}

/// What `tag` did.
#[derive(Clone, Debug, Default)]
pub struct TagReport {
    /// Snapshots rewritten.
    pub changed: Vec<Retagged>,
    /// Snapshots selected whose tags were already as asked.
    pub unchanged: Vec<Id>,
    /// Left-over files of interrupted earlier runs that were deleted.
    pub leftovers_removed: usize,
}

/// Changes the tags of the snapshots named by `ids` (id prefixes or
/// `latest`) or, without ids, of every snapshot passing `filter`.
pub fn tag<S>(
    repo: &Repository<S>,
    ids: &[String],
    filter: &SnapshotFilter,
    change: &TagChange,
) -> Result<TagReport> {
    change.validate()?;
    repo.check_may_delete("tag")?;
    let _lock = repo.lock_exclusive()?;
    let set = repo.load_snapshot_set()?;
    let mut chosen: Vec<(Id, Snapshot)> = Vec::new();
    if ids.is_empty() {
        chosen.extend(set.shown.iter().filter(|(_, s)| filter.matches(s)).cloned());
    } else {
        for sel in ids {
            let (id, s) = repo.find_snapshot_in(&set.shown, sel, filter)?;
            if !chosen.iter().any(|(c, _)| *c == id) {
                chosen.push((id, s));
            }
        }
    }
    let mut report = TagReport::default();
    for (old_id, old) in chosen {
        let new_tags = change.apply(&old.tags);
        if new_tags == old.tags {
            report.unchanged.push(old_id);
            continue;
        }
        let mut new = old.clone();
        new.tags = new_tags.clone();
        new.replaces = Some(old_id);
        // Durable before anything is deleted.
        let new_id = repo.save_snapshot(&new)?;
        for hidden in set.hidden_behind(&old_id) {
            repo.remove_snapshot(&hidden)?;
            report.leftovers_removed += 1;
        }
        repo.remove_snapshot(&old_id)?;
        report.changed.push(Retagged {
            old: old_id,
            new: new_id,
            old_tags: old.tags,
            new_tags,
        });
    }
    Ok(report)
}
