//! `diff`: what changed between two snapshots (or two directories in them).
//!
//! Both trees are walked side by side, merging the sorted listings by
//! name; a directory with the same tree id on both sides is identical and
//! skipped unread, so the work follows the size of the change, not of the
//! snapshots. Bytes added and removed are counted over blobs: those only
//! the new side's changed entries use, and those only the old side's use.
//! Databases recorded with `--sqlite` are compared by their records
//! (schema hash, row counts per table); when the schema changed, both
//! versions are read to show which tables, indexes, views and triggers
//! changed.

use crate::commands::dump::write_file;
use crate::commands::ls::entry_limit;
use crate::commands::select::SnapshotSelector;
use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::Id;
use crate::format::snapshot::{DatabaseRecord, Snapshot};
use crate::format::tree::{MAX_TREE_DEPTH, Node, NodeKind, Tree};
use crate::repository::browse::{self, too_deep};
use crate::repository::{FullIndex, Repository};
use crate::sources::sqlite::{SchemaObject, schema_objects};
use serde::Serialize;
use std::cmp::Ordering;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// Databases larger than this are not read to show a schema change (the
/// change is still reported, from the snapshot records).
pub const SCHEMA_READ_LIMIT: u64 = 4 << 30;

/// One side of a diff: a snapshot and a directory (or file) in it.
#[derive(Clone, Debug)]
pub struct Side {
    /// Which snapshot.
    pub selector: SnapshotSelector,
    /// Path inside it (`/` for all of it).
    pub path: PathBuf,
}

/// How one entry changed, as restic prints it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Change {
    /// `+`: only in the new snapshot.
    #[serde(rename = "+")]
    Added,
    /// `-`: only in the old snapshot.
    #[serde(rename = "-")]
    Removed,
    /// `M`: content changed (a file's data, a symlink's target, a device's number).
    #[serde(rename = "M")]
    Modified,
    /// `T`: the type changed (file, directory, symlink, ...).
    #[serde(rename = "T")]
    TypeChanged,
    /// `U`: only metadata changed (mode, owner, times).
    #[serde(rename = "U")]
    Metadata,
}

impl Change {
    /// restic's one-letter mark.
    pub fn mark(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Modified => 'M',
            Change::TypeChanged => 'T',
            Change::Metadata => 'U',
        }
    }
}

/// One changed entry.
#[derive(Clone, Debug)]
pub struct Entry<'a> {
    /// Path (in the new snapshot's naming when the sides differ).
    pub path: &'a Path,
    /// What changed.
    pub change: Change,
    /// The old entry.
    pub old: Option<&'a Node>,
    /// The new entry.
    pub new: Option<&'a Node>,
}

/// Counts, restic's categories.
#[derive(Clone, Debug, Default, Serialize)]
pub struct DiffStats {
    /// Files only in the new snapshot.
    pub files_new: u64,
    /// Files only in the old snapshot.
    pub files_removed: u64,
    /// Files whose content changed.
    pub files_changed: u64,
    /// Directories only in the new snapshot.
    pub dirs_new: u64,
    /// Directories only in the old snapshot.
    pub dirs_removed: u64,
    /// Other entries (symlinks, devices, ...) only in the new snapshot.
    pub others_new: u64,
    /// Other entries only in the old snapshot.
    pub others_removed: u64,
    /// Entries whose type changed.
    pub type_changed: u64,
    /// Entries of which only metadata changed.
    pub metadata_changed: u64,
    /// Data blobs the new side's changes use that the old side's do not.
    pub data_blobs_new: u64,
    /// Data blobs the old side's changes used that the new side's do not.
    pub data_blobs_removed: u64,
    /// Tree blobs (listings, content lists) new.
    pub tree_blobs_new: u64,
    /// Tree blobs removed.
    pub tree_blobs_removed: u64,
    /// Plaintext bytes of the new blobs.
    pub bytes_added: u64,
    /// Plaintext bytes of the removed blobs.
    pub bytes_removed: u64,
}

/// A table's row counts on both sides.
#[derive(Clone, Debug, Serialize)]
pub struct TableChange {
    /// Table name.
    pub name: String,
    /// Rows in the old snapshot (none: no such table).
    pub old_rows: Option<u64>,
    /// Rows in the new snapshot.
    pub new_rows: Option<u64>,
}

/// A schema object that differs.
#[derive(Clone, Debug, Serialize)]
pub struct SchemaChange {
    /// `table`, `index`, `view`, `trigger`.
    pub kind: String,
    /// Name.
    pub name: String,
    /// Its statement in the old snapshot (none: added).
    pub old_sql: Option<String>,
    /// Its statement in the new snapshot (none: removed).
    pub new_sql: Option<String>,
}

/// How a database recorded with `--sqlite` changed.
#[derive(Clone, Debug, Serialize)]
pub struct DatabaseDiff {
    /// Path of the database.
    pub path: String,
    /// `added`, `removed` or `changed` (present on both sides).
    pub status: &'static str,
    /// Whether the schema hash differs.
    pub schema_changed: bool,
    /// The objects that differ, when both versions could be read.
    pub schema_changes: Vec<SchemaChange>,
    /// Why `schema_changes` is missing though the schema changed.
    pub schema_note: Option<String>,
    /// Tables whose row count differs (or that exist on one side only).
    pub tables: Vec<TableChange>,
}

/// What `diff` found.
#[derive(Clone, Debug)]
pub struct DiffReport {
    /// The old snapshot.
    pub old: (Id, Snapshot),
    /// The new snapshot.
    pub new: (Id, Snapshot),
    /// Counts.
    pub stats: DiffStats,
    /// Databases that changed.
    pub databases: Vec<DatabaseDiff>,
}

/// Options.
#[derive(Clone, Debug, Default)]
pub struct DiffOptions {
    /// Also report entries of which only metadata changed (`U`).
    pub metadata: bool,
}

/// Compares `old` with `new` under a shared lock; `entry` gets every
/// changed entry in path order (`U` entries only with `opts.metadata`).
pub fn diff<S>(
    repo: &Repository<S>,
    old: &Side,
    new: &Side,
    opts: &DiffOptions,
    entry: &mut dyn FnMut(&Entry) -> Result<()>,
) -> Result<DiffReport> {
    let repo = repo.with_full_index()?;
    let a = old.selector.resolve(&repo)?;
    let b = new.selector.resolve(&repo)?;
    let node_a = browse::lookup(&repo, &a.1.tree, &old.path)?;
    let node_b = browse::lookup(&repo, &b.1.tree, &new.path)?;
    let mut walk = Walk {
        repo: &repo,
        opts,
        stats: DiffStats::default(),
        before: HashSet::new(),
        after: HashSet::new(),
        visited: 0,
        limit: entry_limit(&a.1).saturating_add(entry_limit(&b.1)),
        entry,
    };
    let shown = PathBuf::from("/").join(
        browse::components(&new.path)?
            .iter()
            .map(|c| OsStr::from_bytes(c))
            .collect::<PathBuf>(),
    );
    walk.pair(&shown, &node_a, &node_b)?;
    walk.count_blobs();
    let stats = walk.stats;
    let same_place = browse::components(&old.path)? == browse::components(&new.path)?;
    let databases = if same_place {
        database_diffs(&repo, &a.1, &b.1, &shown)?
    } else {
        Vec::new()
    };
    Ok(DiffReport {
        old: a,
        new: b,
        stats,
        databases,
    })
}

/// The side-by-side walk.
struct Walk<'a, 'e> {
    repo: &'a Repository<FullIndex>,
    opts: &'a DiffOptions,
    stats: DiffStats,
    /// Blobs the old side's changed entries use.
    before: HashSet<Id>,
    /// Blobs the new side's changed entries use.
    after: HashSet<Id>,
    visited: u64,
    limit: u64,
    entry: &'e mut dyn FnMut(&Entry) -> Result<()>,
}

/// A directory pair still to compare.
struct Pending {
    path: PathBuf,
    old: Tree,
    new: Tree,
}

/// Which side a one-sided entry is on.
#[derive(Clone, Copy, PartialEq, Eq)]
enum OneSide {
    Old,
    New,
}

impl Walk<'_, '_> {
    fn emit(
        &mut self,
        path: &Path,
        change: Change,
        old: Option<&Node>,
        new: Option<&Node>,
    ) -> Result<()> {
        (self.entry)(&Entry {
            path,
            change,
            old,
            new,
        })
    }

    fn tick(&mut self) -> Result<()> {
        self.visited += 1;
        if self.visited > self.limit {
            return Err(Error::corrupt(
                "tree",
                format!(
                    "the snapshots' trees name more than {} entries though they record far fewer (damaged or hostile)",
                    self.limit
                ),
            ));
        }
        Ok(())
    }

    /// Compares two nodes at `path` (the roots of the comparison, or a
    /// matched pair of entries), then every directory pair below them.
    fn pair(&mut self, path: &Path, old: &Node, new: &Node) -> Result<()> {
        let mut pending: Vec<Pending> = Vec::new();
        self.compare(path, old, new, &mut pending)?;
        while let Some(p) = pending.pop() {
            if p.path.components().count() > MAX_TREE_DEPTH {
                return Err(too_deep(&p.path));
            }
            // Merge the two sorted listings; directory pairs found are
            // compared after this listing, in reverse so the stack pops
            // them in name order.
            let mut below = Vec::new();
            let (mut i, mut j) = (0, 0);
            while i < p.old.nodes.len() || j < p.new.nodes.len() {
                let order = match (p.old.nodes.get(i), p.new.nodes.get(j)) {
                    (Some(a), Some(b)) => a.name.cmp(&b.name),
                    (Some(_), None) => Ordering::Less,
                    (None, _) => Ordering::Greater,
                };
                match order {
                    Ordering::Less => {
                        let a = &p.old.nodes[i];
                        let child = p.path.join(OsStr::from_bytes(&a.name));
                        self.one_sided(&child, a, OneSide::Old)?;
                        i += 1;
                    }
                    Ordering::Greater => {
                        let b = &p.new.nodes[j];
                        let child = p.path.join(OsStr::from_bytes(&b.name));
                        self.one_sided(&child, b, OneSide::New)?;
                        j += 1;
                    }
                    Ordering::Equal => {
                        let (a, b) = (&p.old.nodes[i], &p.new.nodes[j]);
                        let child = p.path.join(OsStr::from_bytes(&a.name));
                        self.compare(&child, a, b, &mut below)?;
                        i += 1;
                        j += 1;
                    }
                }
            }
            below.reverse();
            pending.extend(below);
        }
        Ok(())
    }

    /// Compares one pair; a pair of differing directories is queued.
    fn compare(
        &mut self,
        path: &Path,
        a: &Node,
        b: &Node,
        pending: &mut Vec<Pending>,
    ) -> Result<()> {
        self.tick()?;
        if a.kind != b.kind {
            self.stats.type_changed += 1;
            self.emit(path, Change::TypeChanged, Some(a), Some(b))?;
            // What the old entry held is gone, what the new one holds is new.
            self.below_one_side(path, a, OneSide::Old)?;
            self.below_one_side(path, b, OneSide::New)?;
            self.uses(a, OneSide::Old)?;
            self.uses(b, OneSide::New)?;
            return Ok(());
        }
        let meta = metadata_differs(a, b);
        if a.is_dir() {
            if meta && self.opts.metadata {
                self.emit(path, Change::Metadata, Some(a), Some(b))?;
            }
            if meta {
                self.stats.metadata_changed += 1;
            }
            let same = match (a.subtree, b.subtree) {
                (Some(x), Some(y)) => x == y,
                _ => false,
            };
            if !same {
                if let Some(x) = a.subtree {
                    self.before.insert(x);
                }
                if let Some(y) = b.subtree {
                    self.after.insert(y);
                }
                pending.push(Pending {
                    path: path.to_path_buf(),
                    old: self.repo.listing(a)?.into_owned(),
                    new: self.repo.listing(b)?.into_owned(),
                });
            }
            return Ok(());
        }
        if content_differs(a, b) {
            self.stats.files_changed += u64::from(a.kind == NodeKind::File);
            self.emit(path, Change::Modified, Some(a), Some(b))?;
            self.uses(a, OneSide::Old)?;
            self.uses(b, OneSide::New)?;
        } else if meta {
            self.stats.metadata_changed += 1;
            if self.opts.metadata {
                self.emit(path, Change::Metadata, Some(a), Some(b))?;
            }
        }
        Ok(())
    }

    /// An entry on one side only, and everything below it.
    fn one_sided(&mut self, path: &Path, n: &Node, side: OneSide) -> Result<()> {
        self.tick()?;
        self.count_one_sided(n, side);
        let change = if side == OneSide::Old {
            Change::Removed
        } else {
            Change::Added
        };
        let (old, new) = if side == OneSide::Old {
            (Some(n), None)
        } else {
            (None, Some(n))
        };
        self.emit(path, change, old, new)?;
        self.uses(n, side)?;
        self.below_one_side(path, n, side)
    }

    /// Everything below a directory that exists on one side only.
    fn below_one_side(&mut self, path: &Path, dir: &Node, side: OneSide) -> Result<()> {
        if !dir.is_dir() {
            return Ok(());
        }
        let change = if side == OneSide::Old {
            Change::Removed
        } else {
            Change::Added
        };
        let repo = self.repo;
        browse::walk(repo, dir, path, &mut |p, n| {
            self.tick()?;
            self.count_one_sided(n, side);
            let (old, new) = if side == OneSide::Old {
                (Some(n), None)
            } else {
                (None, Some(n))
            };
            self.emit(p, change, old, new)?;
            self.uses(n, side)?;
            Ok(true)
        })
    }

    fn count_one_sided(&mut self, n: &Node, side: OneSide) {
        let s = &mut self.stats;
        let counter = match (n.kind, side) {
            (NodeKind::File, OneSide::New) => &mut s.files_new,
            (NodeKind::File, OneSide::Old) => &mut s.files_removed,
            (NodeKind::Dir, OneSide::New) => &mut s.dirs_new,
            (NodeKind::Dir, OneSide::Old) => &mut s.dirs_removed,
            (_, OneSide::New) => &mut s.others_new,
            (_, OneSide::Old) => &mut s.others_removed,
        };
        *counter += 1;
    }

    /// Records the blobs an entry uses (its listing, its content lists and
    /// data) on one side.
    fn uses(&mut self, n: &Node, side: OneSide) -> Result<()> {
        let set = if side == OneSide::Old {
            &mut self.before
        } else {
            &mut self.after
        };
        if let Some(t) = n.subtree {
            set.insert(t);
        }
        if n.kind != NodeKind::File {
            return Ok(());
        }
        let mut lists = Vec::new();
        let mut data = Vec::new();
        self.repo.visit_content(
            &n.content,
            n.content_depth,
            &mut |id| {
                lists.push(*id);
                true
            },
            &mut |id| data.push(*id),
            &mut |_, e| Err(e),
        )?;
        set.extend(lists);
        set.extend(data);
        Ok(())
    }

    /// Turns the two blob sets into counts and bytes.
    fn count_blobs(&mut self) {
        let index = self.repo.index();
        for (set, other, new) in [
            (&self.after, &self.before, true),
            (&self.before, &self.after, false),
        ] {
            for id in set.difference(other) {
                let Some((_, loc)) = index.get(id) else {
                    continue;
                };
                let s = &mut self.stats;
                let (blobs, bytes) = match (loc.kind, new) {
                    (BlobType::Data, true) => (&mut s.data_blobs_new, &mut s.bytes_added),
                    (BlobType::Data, false) => (&mut s.data_blobs_removed, &mut s.bytes_removed),
                    (_, true) => (&mut s.tree_blobs_new, &mut s.bytes_added),
                    (_, false) => (&mut s.tree_blobs_removed, &mut s.bytes_removed),
                };
                *blobs += 1;
                *bytes += u64::from(loc.raw_length);
            }
        }
    }
}

/// Whether the data of two entries of the same kind differs.
fn content_differs(a: &Node, b: &Node) -> bool {
    match a.kind {
        NodeKind::File => {
            a.size != b.size || a.content_depth != b.content_depth || a.content != b.content
        }
        NodeKind::Symlink => a.link_target != b.link_target,
        NodeKind::CharDevice | NodeKind::BlockDevice => a.rdev != b.rdev,
        _ => false,
    }
}

/// Whether what `ls -l` shows besides the data differs. Inode numbers and
/// change times are left out: they change when a tree is copied or
/// restored, without anything a user would call a change.
fn metadata_differs(a: &Node, b: &Node) -> bool {
    a.mode != b.mode
        || a.uid != b.uid
        || a.gid != b.gid
        || (a.mtime, a.mtime_nsec) != (b.mtime, b.mtime_nsec)
}

/// Compares the database records of the two snapshots under `under`.
fn database_diffs(
    repo: &Repository<FullIndex>,
    a: &Snapshot,
    b: &Snapshot,
    under: &Path,
) -> Result<Vec<DatabaseDiff>> {
    let mut paths: Vec<&str> = a
        .databases
        .iter()
        .chain(&b.databases)
        .map(|d| d.path.as_str())
        .filter(|p| Path::new(p).starts_with(under))
        .collect();
    paths.sort();
    paths.dedup();
    let mut out = Vec::new();
    for path in paths {
        let da = a.databases.iter().find(|d| d.path == path);
        let db = b.databases.iter().find(|d| d.path == path);
        let status = match (da, db) {
            (None, Some(_)) => "added",
            (Some(_), None) => "removed",
            _ => "changed",
        };
        let tables = table_changes(da, db);
        let schema_changed = match (da, db) {
            (Some(x), Some(y)) => x.schema_hash != y.schema_hash,
            _ => false,
        };
        if status == "changed" && !schema_changed && tables.is_empty() {
            continue;
        }
        let (schema_changes, schema_note) = if schema_changed {
            match schema_change(repo, a, b, path) {
                Ok(c) => (c, None),
                Err(note) => (Vec::new(), Some(note)),
            }
        } else {
            (Vec::new(), None)
        };
        out.push(DatabaseDiff {
            path: path.to_string(),
            status,
            schema_changed,
            schema_changes,
            schema_note,
            tables,
        });
    }
    Ok(out)
}

fn table_changes(a: Option<&DatabaseRecord>, b: Option<&DatabaseRecord>) -> Vec<TableChange> {
    let rows = |d: Option<&DatabaseRecord>, name: &str| {
        d.and_then(|d| d.tables.iter().find(|t| t.name == name))
            .map(|t| t.rows)
    };
    let mut names: Vec<&str> = a
        .iter()
        .chain(b.iter())
        .flat_map(|d| d.tables.iter().map(|t| t.name.as_str()))
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| TableChange {
            name: name.to_string(),
            old_rows: rows(a, name),
            new_rows: rows(b, name),
        })
        .filter(|t| t.old_rows != t.new_rows)
        .collect()
}

/// Reads both versions of the database at `path` into temporary files and
/// compares their `sqlite_master`; an error is a note saying why not.
fn schema_change(
    repo: &Repository<FullIndex>,
    a: &Snapshot,
    b: &Snapshot,
    path: &str,
) -> std::result::Result<Vec<SchemaChange>, String> {
    let read = |s: &Snapshot| -> std::result::Result<Vec<SchemaObject>, String> {
        let node = browse::lookup(repo, &s.tree, path).map_err(|e| e.to_string())?;
        if node.size > SCHEMA_READ_LIMIT {
            return Err(format!(
                "not read to compare schemas: {} bytes is over the {} byte limit",
                node.size, SCHEMA_READ_LIMIT
            ));
        }
        let mut tmp = tempfile::Builder::new()
            .prefix("cairn-diff-")
            .suffix(".db")
            .tempfile()
            .map_err(|e| format!("temporary file: {e}"))?;
        write_file(repo, &node, tmp.as_file_mut(), "temporary file").map_err(|e| e.to_string())?;
        schema_objects(tmp.path()).map_err(|e| e.to_string())
    };
    let old = read(a)?;
    let new = read(b)?;
    let key = |o: &SchemaObject| (o.kind.clone(), o.name.clone());
    let mut keys: Vec<(String, String)> = old.iter().chain(&new).map(key).collect();
    keys.sort();
    keys.dedup();
    let sql_of = |list: &[SchemaObject], k: &(String, String)| {
        list.iter()
            .find(|o| key(o) == *k)
            .map(|o| o.sql.clone().unwrap_or_default())
    };
    Ok(keys
        .into_iter()
        .filter_map(|k| {
            let (o, n) = (sql_of(&old, &k), sql_of(&new, &k));
            (o != n).then_some(SchemaChange {
                kind: k.0,
                name: k.1,
                old_sql: o,
                new_sql: n,
            })
        })
        .collect())
}
