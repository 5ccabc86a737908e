//! Check: prove the repository is consistent, and optionally that every
//! stored byte still decrypts to what its id says.
//!
//! The steps: read the index files one by one (one bad file does not hide
//! the others); check every pack the index lists (its header against the
//! index, or with `--read-data` every byte: all packs, a random fraction,
//! or part n of m, so a big repository can be verified over several days);
//! read every snapshot and walk its trees, checking that every blob a file
//! needs is indexed and intact. Every problem is reported with the
//! snapshots and files it affects ([`Problem`]). Unreferenced data is
//! reported as information, never as an error: it is what an interrupted
//! backup leaves, and prune reclaims it.

use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::id::Id;
use crate::format::index::IndexPack;
use crate::format::pack::{self, PackEntry};
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repository::index::{Index, OnDamage, live_packs, marked_packs};
use crate::repository::{FullIndex, Repository, SnapshotFilter, check_file_name};
use serde::{Serialize, Serializer};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};

/// Which packs `--read-data` reads.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// Each pack with this probability (0..=1), chosen at random.
    Fraction(f64),
    /// Part `n` (1-based) of `m`, chosen by pack id, so that parts 1..=m
    /// together cover every pack exactly once.
    Part(u32, u32),
}

impl std::str::FromStr for Subset {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Subset, String> {
        if let Some(p) = s.strip_suffix('%') {
            let v: f64 = p
                .trim()
                .parse()
                .map_err(|_| format!("bad percentage {s:?}"))?;
            if !(0.0..=100.0).contains(&v) || v.is_nan() {
                return Err(format!("percentage {s:?} out of range 0..100"));
            }
            return Ok(Subset::Fraction(v / 100.0));
        }
        if let Some((n, m)) = s.split_once('/') {
            let n: u32 = n.trim().parse().map_err(|_| format!("bad subset {s:?}"))?;
            let m: u32 = m.trim().parse().map_err(|_| format!("bad subset {s:?}"))?;
            if m == 0 || n == 0 || n > m {
                return Err(format!("subset {s:?}: need 1 <= n <= m"));
            }
            return Ok(Subset::Part(n, m));
        }
        Err(format!(
            "bad subset {s:?}: use n/m (e.g. 2/7) or a percentage (e.g. 10%)"
        ))
    }
}

impl Subset {
    fn selects(&self, id: &Id) -> bool {
        match *self {
            Subset::All => true,
            Subset::Fraction(f) => {
                let r: [u8; 8] = crate::format::crypto::random_array().unwrap_or([0; 8]);
                (u64::from_le_bytes(r) as f64 / u64::MAX as f64) < f
            }
            Subset::Part(n, m) => {
                let v = u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]]);
                v % m == n - 1
            }
        }
    }
}

/// What to check.
#[derive(Clone, Debug, Default)]
pub struct CheckOptions {
    /// Read pack contents too.
    pub read_data: Option<Subset>,
    /// Fail if a host/path group's newest snapshot is older than this.
    pub max_age: Option<MaxAge>,
    /// Which snapshots `max_age` looks at.
    pub filter: SnapshotFilter,
}

/// A freshness limit, with the text the user gave (for messages).
#[derive(Clone, Debug)]
pub struct MaxAge {
    /// The limit.
    pub limit: std::time::Duration,
    /// How it was written (`26h`).
    pub text: String,
}

impl std::str::FromStr for MaxAge {
    type Err = Error;
    fn from_str(s: &str) -> Result<MaxAge> {
        Ok(MaxAge {
            limit: crate::timespec::parse_duration(s)?,
            text: s.to_string(),
        })
    }
}

/// One problem `check` found. Its text (and its JSON form, a string) names
/// the file, snapshot or path concerned.
#[derive(Clone, Debug, PartialEq)]
pub enum Problem {
    /// An index file that cannot be read or decoded.
    IndexFile(String),
    /// A pack the index lists that is missing or damaged.
    Pack {
        /// The pack file.
        file: String,
        /// What is wrong with it.
        problem: String,
    },
    /// A snapshot file that cannot be read or decoded.
    SnapshotFile(String),
    /// Something a snapshot needs that is missing or damaged.
    InSnapshot {
        /// Short snapshot id.
        snapshot: String,
        /// The path in the snapshot.
        path: PathBuf,
        /// What is wrong.
        problem: String,
    },
    /// A snapshot with damaged files, when no other problem names it.
    DamagedSnapshot {
        /// Short snapshot id.
        snapshot: String,
        /// How many of its entries are damaged.
        count: usize,
        /// The first of them.
        first: String,
    },
    /// A host/path group whose newest snapshot is too old (`--max-age`),
    /// or a cluster whose newest archived WAL is.
    Stale(String),
    /// Archived WAL that is damaged, or missing where a base backup needs it.
    Wal(String),
    /// What this client saw before and the repository no longer shows
    /// (rollback detection).
    Rollback(String),
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::IndexFile(e) | Problem::SnapshotFile(e) => f.write_str(e),
            Problem::Pack { file, problem } => write!(f, "{file}: {problem}"),
            Problem::InSnapshot {
                snapshot,
                path,
                problem,
            } => write!(f, "snapshot {snapshot}: {}: {problem}", path.display()),
            Problem::DamagedSnapshot {
                snapshot,
                count,
                first,
            } => write!(f, "snapshot {snapshot}: {count} damaged: {first}"),
            Problem::Stale(s) => write!(f, "stale backup: {s}"),
            Problem::Wal(s) => write!(f, "WAL: {s}"),
            Problem::Rollback(s) => f.write_str(s),
        }
    }
}

impl Serialize for Problem {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Findings.
#[derive(Debug, Default, Serialize)]
pub struct CheckReport {
    /// Problems; non-empty means the check failed.
    pub errors: Vec<Problem>,
    /// Things worth knowing that are not damage (unreferenced packs or blobs).
    pub info: Vec<String>,
    /// Snapshots checked.
    pub snapshots: usize,
    /// Packs in the index.
    pub packs: usize,
    /// Packs whose content was read.
    pub packs_read: usize,
    /// Blobs decrypted and hashed while reading data.
    pub blobs_read: u64,
    /// Trees walked.
    pub trees: usize,
    /// Blobs no snapshot references.
    pub unused_blobs: u64,
    /// Snapshots affected by a problem.
    pub damaged_snapshots: Vec<String>,
    /// Groups whose newest snapshot is older than `max_age`.
    pub stale_groups: Vec<String>,
    /// Archived PostgreSQL WAL: records checked and the newest segment of
    /// each cluster (absent when the repository holds no WAL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wal: Option<WalSummary>,
    /// What this client saw before and the repository no longer shows:
    /// snapshots without a forget record, an older index (rollback).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rollback: Option<crate::repository::rollback::Rollback>,
}

/// What `check` reports about archived WAL.
#[derive(Debug, Default, Serialize)]
pub struct WalSummary {
    /// WAL records checked.
    pub records: usize,
    /// The newest archived segment of each cluster.
    pub newest: Vec<NewestWal>,
}

/// The newest archived segment of one cluster.
#[derive(Debug, Serialize)]
pub struct NewestWal {
    /// The cluster's system identifier (a string: JSON numbers lose digits).
    pub system_id: String,
    /// Segment name.
    pub name: String,
    /// When it was archived (RFC 3339).
    pub archived: String,
    /// Seconds since.
    pub age_seconds: i64,
}

impl CheckReport {
    /// Whether no problem was found.
    pub fn ok(&self) -> bool {
        self.errors.is_empty()
    }
}

/// What the pack and snapshot steps learn about blobs.
#[derive(Default)]
struct Findings {
    /// Blobs known to be unreadable, with why.
    bad_blobs: HashMap<Id, String>,
    /// Stored copies known to be unreadable: (pack, blob).
    bad_copies: HashSet<(Id, Id)>,
    /// Delta blobs whose base could not be read: damage only if a snapshot
    /// uses them (prune may keep an unused delta in a pack while deleting
    /// its base).
    base_missing: HashMap<Id, String>,
    /// Delta blobs read (with `--read-data`) and the base each names.
    delta_bases: HashMap<Id, Id>,
    /// Packs on disk that no index lists.
    unindexed_packs: usize,
    /// Blobs some snapshot references.
    used: HashSet<Id>,
    /// Trees that could not be read, with why.
    tree_problems: HashMap<Id, String>,
    /// Content lists read: the bytes under each and its first problem.
    lists: HashMap<Id, (u64, Option<String>)>,
    /// Damaged entries per snapshot (short id).
    damaged: BTreeMap<String, Vec<String>>,
    /// Set when a tree could not be read: what lies below it is unknown.
    walk_incomplete: bool,
}

/// Runs the check under a shared lock.
pub fn check<S>(repo: &Repository<S>, opts: &CheckOptions) -> Result<CheckReport> {
    check_unlocked(repo, opts)
}

/// Runs the check; the caller holds a lock (or knows no writer runs).
pub fn check_unlocked<S>(repo: &Repository<S>, opts: &CheckOptions) -> Result<CheckReport> {
    let mut rep = CheckReport::default();
    let mut found = Findings::default();
    // Snapshots first: a backup running meanwhile writes its index before
    // its snapshot, so every snapshot seen has its blobs in the index.
    let snapshots = load_snapshots(repo, &mut rep)?;
    let seen = crate::repository::index::index_seen(repo.core_ref())?;
    let rollback = repo.detect_rollback(&snapshots, Some(&seen))?;
    rep.errors
        .extend(rollback.lines().into_iter().map(Problem::Rollback));
    if rollback.detected() {
        rep.rollback = Some(rollback);
    }
    let (repo, packs, marked) = load_index(repo, &mut rep)?;
    check_packs(&repo, &packs, &marked, opts, &mut rep, &mut found)?;
    for (sid, s) in &snapshots {
        walk_snapshot(&repo, sid, s, &mut rep, &mut found);
    }
    check_wal(&repo, &snapshots, opts, &mut rep, &mut found)?;
    report_damage(&mut rep, &found);
    report_unused(&repo, &packs, &mut rep, &found);
    if let Some(max_age) = &opts.max_age {
        rep.stale_groups = stale_groups(&snapshots, max_age, &opts.filter);
        rep.errors
            .extend(rep.stale_groups.iter().cloned().map(Problem::Stale));
        if let Some(wal) = &rep.wal {
            for n in &wal.newest {
                if n.age_seconds > max_age.limit.as_secs() as i64 {
                    rep.errors.push(Problem::Stale(format!(
                        "cluster {}: newest archived WAL segment {} is from {} ({}h old, limit {}); is archive_command failing?",
                        n.system_id,
                        n.name,
                        n.archived,
                        n.age_seconds / 3600,
                        max_age.text
                    )));
                }
            }
        }
    }
    Ok(rep)
}

/// Archived WAL: every record readable, its blobs stored (and with
/// `--read-data` its content intact), and no gap between a kept base
/// backup's start and the newest archived segment of its cluster.
fn check_wal(
    repo: &Repository<FullIndex>,
    snapshots: &[(Id, Snapshot)],
    opts: &CheckOptions,
    rep: &mut CheckReport,
    found: &mut Findings,
) -> Result<()> {
    let wal = repo.load_wal_records()?;
    let backups: Vec<(Id, &crate::format::snapshot::PostgresRecord)> = snapshots
        .iter()
        .filter_map(|(id, s)| s.postgres.as_ref().map(|p| (*id, p)))
        .collect();
    if wal.records.is_empty() && wal.unreadable.is_empty() && backups.is_empty() {
        return Ok(());
    }
    for (id, e) in &wal.unreadable {
        rep.errors
            .push(Problem::Wal(format!("wal/{}: {e}", id.to_hex())));
    }
    for (_, w) in &wal.records {
        let mut problem = None;
        for b in &w.content {
            found.used.insert(*b);
            if problem.is_none() {
                if !repo.has_blob(b) {
                    problem = Some(format!("blob {} is not in the index", b.short()));
                } else if let Some(why) = found.bad_blobs.get(b) {
                    problem = Some(format!("blob {}: {why}", b.short()));
                }
            }
        }
        if problem.is_none() && opts.read_data.is_some() {
            problem = crate::commands::wal::assemble(repo, w)
                .err()
                .map(|e| e.to_string());
        }
        if let Some(p) = problem {
            rep.errors.push(Problem::Wal(format!(
                "cluster {}: {} is damaged: {p}",
                w.system_id, w.name
            )));
        }
    }
    let history = |w: &crate::format::wal::WalFile| crate::commands::wal::assemble(repo, w).ok();
    let c = crate::commands::wal::continuity(&wal.records, &backups, &history);
    for (snap, gaps) in &c.gaps {
        for g in gaps {
            if g.none_archived {
                rep.errors.push(Problem::Wal(format!(
                    "cluster {}: no WAL of this cluster is archived here; base backup {} restores only to its own end (is archive_command pushing into this repository?)",
                    g.system_id,
                    snap.short()
                )));
                continue;
            }
            let range = if g.first == g.last {
                format!("segment {} is missing", g.first)
            } else {
                format!("segments {} to {} are missing", g.first, g.last)
            };
            rep.errors.push(Problem::Wal(format!(
                "cluster {}: {range}; base backup {} cannot be recovered past it",
                g.system_id,
                snap.short()
            )));
        }
    }
    let now = chrono::Utc::now().timestamp();
    rep.wal = Some(WalSummary {
        records: c.records,
        newest: c
            .newest
            .iter()
            .map(|n| NewestWal {
                system_id: n.system_id.to_string(),
                name: n.name.clone(),
                archived: chrono::DateTime::from_timestamp(n.archived, 0)
                    .map_or_else(String::new, |t| t.to_rfc3339()),
                age_seconds: now.saturating_sub(n.archived),
            })
            .collect(),
    });
    Ok(())
}

/// Describes every host/path group (of the snapshots passing `filter`)
/// whose newest snapshot is older than `max_age`.
pub fn stale_groups(
    snapshots: &[(Id, Snapshot)],
    max_age: &MaxAge,
    filter: &SnapshotFilter,
) -> Vec<String> {
    let mut sorted = snapshots.to_vec();
    crate::repository::snapshots::sort_by_time(&mut sorted);
    let groups = crate::commands::forget::plan(
        sorted,
        filter,
        &crate::commands::retention::Policy {
            last: -1,
            ..Default::default()
        },
        crate::commands::forget::GroupBy::default(),
    );
    let now = chrono::Utc::now().timestamp();
    let mut stale = Vec::new();
    if groups.is_empty() {
        stale.push("no snapshots match".to_string());
    }
    for gr in &groups {
        if let Some(newest) = gr.keep.first() {
            let age_s = now.saturating_sub(newest.snapshot.time);
            if age_s > max_age.limit.as_secs() as i64 {
                stale.push(format!(
                    "host {} paths [{}]: newest snapshot {} is from {} ({}h old, limit {})",
                    gr.key.hostname.clone().unwrap_or_default(),
                    gr.key.paths.clone().unwrap_or_default().join(", "),
                    newest.id.short(),
                    crate::commands::views::local_time(&newest.snapshot),
                    age_s / 3600,
                    max_age.text
                ));
            }
        }
    }
    stale
}

/// The packs of an index, one description per pack.
type PackMap = BTreeMap<Id, IndexPack>;

/// Reads every live index file it can; returns the repository with that
/// index, the packs it lists and the packs it marks for deletion (after
/// the live ones in the index, so readers look there last).
fn load_index<S>(
    repo: &Repository<S>,
    rep: &mut CheckReport,
) -> Result<(Repository<FullIndex>, PackMap, PackMap)> {
    let live = live_packs(repo.core_ref(), OnDamage::Collect)?;
    rep.errors.extend(
        live.problems
            .iter()
            .map(|e| Problem::IndexFile(e.to_string())),
    );
    let packs: PackMap = live.value.into_iter().map(|p| (p.id, p)).collect();
    let marked: PackMap = marked_packs(repo.core_ref())?
        .into_iter()
        .filter(|m| !packs.contains_key(&m.pack.id))
        .map(|m| (m.pack.id, m.pack))
        .collect();
    let mut index = Index::new();
    for p in packs.values().chain(marked.values()) {
        index.add_pack(p.id, &p.blobs);
    }
    rep.packs = packs.len();
    if !marked.is_empty() {
        rep.info.push(format!(
            "{} pack(s) marked for deletion by prune (deleted by a later prune once the grace period has passed, unless a snapshot needs them again)",
            marked.len()
        ));
    }
    Ok((repo.with_index(index), packs, marked))
}

/// Packs: present, header agrees with the index, optionally content.
fn check_packs(
    repo: &Repository<FullIndex>,
    packs: &PackMap,
    marked: &PackMap,
    opts: &CheckOptions,
    rep: &mut CheckReport,
    found: &mut Findings,
) -> Result<()> {
    let on_disk: HashSet<Id> = repo.list_packs()?.into_iter().map(|(id, _)| id).collect();
    let mut unindexed: Vec<&Id> = on_disk
        .iter()
        .filter(|id| !packs.contains_key(id) && !marked.contains_key(id))
        .collect();
    unindexed.sort();
    for id in unindexed {
        found.unindexed_packs += 1;
        rep.info.push(format!(
            "{}: not in any index (left by an interrupted backup; `cairn prune` removes it)",
            pack_file(id)
        ));
    }
    // A marked pack that is gone or damaged loses nothing by itself: prune
    // found nothing that needed it. A snapshot that needs one of its blobs
    // with no other copy is reported through that blob.
    let all = packs
        .iter()
        .map(|p| (p, false))
        .chain(marked.iter().map(|p| (p, true)));
    for ((pid, p), is_marked) in all {
        let what = pack_file(pid);
        let complain = |rep: &mut CheckReport, problem: String| {
            if is_marked {
                rep.info
                    .push(format!("{what}: marked for deletion and {problem}"));
            } else {
                rep.errors.push(Problem::Pack {
                    file: what.clone(),
                    problem,
                });
            }
        };
        if is_marked && p.blobs.is_empty() {
            // Marked before it was indexed: nothing to compare.
            continue;
        }
        if !on_disk.contains(pid) {
            complain(
                rep,
                if is_marked {
                    "already deleted".to_string()
                } else {
                    format!("pack is missing ({} blobs lost)", p.blobs.len())
                },
            );
            for e in &p.blobs {
                found
                    .bad_blobs
                    .insert(e.id, format!("pack {} is missing", pid.short()));
                found.bad_copies.insert((*pid, e.id));
            }
            continue;
        }
        let read_all = opts.read_data.is_some_and(|s| s.selects(pid));
        let result = if read_all {
            rep.packs_read += 1;
            check_pack_data(repo, pid, p, found, &mut rep.blobs_read)
        } else {
            check_pack_header(repo, pid, &p.blobs)
        };
        if let Err(problem) = result {
            complain(rep, problem);
            if !read_all {
                for e in &p.blobs {
                    found
                        .bad_blobs
                        .entry(e.id)
                        .or_insert_with(|| format!("pack {} is damaged", pid.short()));
                    found.bad_copies.insert((*pid, e.id));
                }
            }
        }
    }
    // A blob stored more than once is lost only with its last copy:
    // readers fall back to the others (a pack listed twice, or an index
    // naming a pack that does not exist, costs no snapshot that has an
    // intact copy elsewhere).
    let bad_copies = std::mem::take(&mut found.bad_copies);
    found.bad_blobs.retain(|id, _| {
        repo.index()
            .locations(id)
            .iter()
            .all(|(pack, _)| bad_copies.contains(&(*pack, *id)))
    });
    Ok(())
}

/// Every snapshot file that can be read; the others are problems.
fn load_snapshots<S>(repo: &Repository<S>, rep: &mut CheckReport) -> Result<Vec<(Id, Snapshot)>> {
    let mut snapshots = Vec::new();
    for id in repo.snapshot_ids()? {
        match repo.load_snapshot(&id) {
            Ok(s) => snapshots.push((id, s)),
            // Forgotten since the listing.
            Err(e) if e.is_not_found() => {}
            Err(e) => rep.errors.push(Problem::SnapshotFile(e.to_string())),
        }
    }
    rep.snapshots = snapshots.len();
    let set = crate::repository::SnapshotSet::new(snapshots.clone());
    for (id, _, by) in &set.hidden {
        rep.info.push(format!(
            "snapshot {} is left over from an interrupted `tag` and hidden behind {}; the next `tag` or `forget` of {} removes it",
            id.short(),
            by.short(),
            by.short()
        ));
    }
    Ok(snapshots)
}

/// A directory listing still to be checked.
enum Listing {
    /// A tree blob.
    Blob(Id),
    /// An inline listing, with whether its enclosing blob was seen first here.
    Inline(Box<Tree>, bool),
}

/// Walks one snapshot's trees: every tree readable, every file's blobs
/// indexed and not known to be damaged.
fn walk_snapshot(
    repo: &Repository<FullIndex>,
    sid: &Id,
    s: &Snapshot,
    rep: &mut CheckReport,
    found: &mut Findings,
) {
    // Work items: a tree blob to read, or an inline listing that is part
    // of an already read blob (and shares its first-visit flag).
    let mut stack = vec![(Listing::Blob(s.tree), PathBuf::from("/"), 0usize)];
    let mut visited_here: HashSet<Id> = HashSet::new();
    while let Some((listing, path, depth)) = stack.pop() {
        if depth > crate::format::tree::MAX_TREE_DEPTH {
            let problem = crate::repository::browse::too_deep(&path).to_string();
            rep.errors.push(Problem::InSnapshot {
                snapshot: sid.short(),
                path: PathBuf::from("/"),
                problem: problem.clone(),
            });
            found.damaged.entry(sid.short()).or_default().push(problem);
            found.walk_incomplete = true;
            return;
        }
        let (tree, first_visit) = match listing {
            Listing::Inline(tree, first_visit) => (*tree, first_visit),
            Listing::Blob(tid) => {
                if !visited_here.insert(tid) {
                    continue;
                }
                match read_tree(repo, sid, tid, &path, rep, found) {
                    Some(t) => t,
                    None => continue,
                }
            }
        };
        for n in &tree.nodes {
            let child = path.join(std::ffi::OsStr::new(&n.display_name()));
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        stack.push((Listing::Blob(sub), child, depth + 1));
                    } else if let Some(inline) = &n.inline {
                        let listing = Listing::Inline(inline.clone(), first_visit);
                        stack.push((listing, child, depth + 1));
                    }
                }
                NodeKind::File => check_file(repo, sid, n, &child, first_visit, rep, found),
                _ => {}
            }
        }
    }
}

/// Reads a tree blob of snapshot `sid` at `path`, noting problems; returns
/// it with whether this is its first visit in this check.
fn read_tree(
    repo: &Repository<FullIndex>,
    sid: &Id,
    tid: Id,
    path: &Path,
    rep: &mut CheckReport,
    found: &mut Findings,
) -> Option<(Tree, bool)> {
    let first_visit = found.used.insert(tid);
    if let Some(p) = found.tree_problems.get(&tid) {
        let p = format!("{}: {p}", path.display());
        found.damaged.entry(sid.short()).or_default().push(p);
        return None;
    }
    if let Some(p) = found.bad_blobs.get(&tid) {
        found.walk_incomplete = true;
        let p = format!("{} (directory): {p}", path.display());
        found.damaged.entry(sid.short()).or_default().push(p);
        return None;
    }
    match repo.load_tree(&tid) {
        Ok(t) => {
            if first_visit {
                rep.trees += 1;
            }
            Some((t, first_visit))
        }
        Err(e) => {
            let msg = format!("tree {} unreadable: {e}", tid.short());
            rep.errors.push(Problem::InSnapshot {
                snapshot: sid.short(),
                path: path.to_path_buf(),
                problem: msg.clone(),
            });
            found.tree_problems.insert(tid, msg.clone());
            found.walk_incomplete = true;
            let p = format!("{}: {msg}", path.display());
            found.damaged.entry(sid.short()).or_default().push(p);
            None
        }
    }
}

/// Checks one file node: its content lists, its delta base, that every
/// blob it needs is indexed and not known to be damaged, and that its
/// content adds up to its recorded size.
fn check_file(
    repo: &Repository<FullIndex>,
    sid: &Id,
    n: &Node,
    child: &Path,
    first_visit: bool,
    rep: &mut CheckReport,
    found: &mut Findings,
) {
    let mut problems = Vec::new();
    let (bytes, problem) = content_summary(repo, &n.content, n.content_depth, found);
    problems.extend(problem);
    if problems.is_empty() && bytes != n.size {
        problems.push(format!(
            "its content holds {bytes} bytes, its node records {}",
            n.size
        ));
    }
    // A delta file's base version is part of the file.
    if let Some(b) = &n.delta_base {
        let (_, problem) = content_summary(repo, &b.content, b.depth, found);
        problems.extend(problem.map(|p| format!("delta base: {p}")));
    }
    // Each delta read must name the base's blob at its position, or prune
    // could delete what it needs.
    if problems.is_empty() && !found.delta_bases.is_empty() {
        problems.extend(misplaced_delta(repo, n, &found.delta_bases));
    }
    for p in problems {
        if first_visit {
            rep.errors.push(Problem::InSnapshot {
                snapshot: sid.short(),
                path: child.to_path_buf(),
                problem: p.clone(),
            });
        }
        let p = format!("{}: {p}", child.display());
        found.damaged.entry(sid.short()).or_default().push(p);
    }
}

/// What a content holds: its plaintext bytes (by the index; saturating) and
/// the first problem with it. Every blob met is marked used. A content
/// list is read once per check, however many files (or positions of one
/// hostile file) share it: its summary is remembered.
fn content_summary(
    repo: &Repository<FullIndex>,
    content: &[Id],
    depth: u8,
    found: &mut Findings,
) -> (u64, Option<String>) {
    if depth > crate::format::content::MAX_DEPTH {
        return (0, Some(format!("content depth {depth} out of range")));
    }
    let mut bytes = 0u64;
    let mut problem = None;
    for id in content {
        let (b, p) = if depth == 0 {
            data_summary(repo, id, found)
        } else {
            list_summary(repo, id, depth, found)
        };
        bytes = bytes.saturating_add(b);
        if problem.is_none() {
            problem = p;
        }
    }
    (bytes, problem)
}

fn data_summary(
    repo: &Repository<FullIndex>,
    id: &Id,
    found: &mut Findings,
) -> (u64, Option<String>) {
    found.used.insert(*id);
    let location = repo.locate(id);
    let problem = if let Some(p) = found
        .bad_blobs
        .get(id)
        .or_else(|| found.base_missing.get(id))
    {
        Some(p.clone())
    } else {
        match location {
            None => Some(format!("data blob {} is not in the index", id.short())),
            // Content that names a tree blob (a listing, a content list)
            // cannot be read as file data: restore fails on it.
            Some((_, l)) if l.kind != BlobType::Data => Some(format!(
                "blob {} is a {} blob, not file data",
                id.short(),
                l.kind.name()
            )),
            Some(_) => None,
        }
    };
    (
        location.map_or(0, |(_, l)| u64::from(l.raw_length)),
        problem,
    )
}

fn list_summary(
    repo: &Repository<FullIndex>,
    id: &Id,
    level: u8,
    found: &mut Findings,
) -> (u64, Option<String>) {
    if let Some(s) = found.lists.get(id) {
        return s.clone();
    }
    found.used.insert(*id);
    let summary = match repo.load_content_list(id, level) {
        Ok(l) => content_summary(repo, &l.ids, level - 1, found),
        Err(e) => (
            0,
            Some(format!("content list {} unreadable: {e}", id.short())),
        ),
    };
    found.lists.insert(*id, summary.clone());
    summary
}

/// Summarises damaged snapshots; names each that no other problem names.
fn report_damage(rep: &mut CheckReport, found: &Findings) {
    rep.damaged_snapshots = found
        .damaged
        .iter()
        .map(|(s, files)| {
            format!(
                "snapshot {s}: {} damaged: {}",
                files.len(),
                files.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    for (sid, files) in &found.damaged {
        let named = rep.errors.iter().any(|e| match e {
            Problem::InSnapshot { snapshot, .. } | Problem::DamagedSnapshot { snapshot, .. } => {
                snapshot == sid
            }
            _ => false,
        });
        if !named {
            rep.errors.push(Problem::DamagedSnapshot {
                snapshot: sid.clone(),
                count: files.len(),
                first: files[0].clone(),
            });
        }
    }
}

/// Reports blobs no snapshot references (information, not damage).
fn report_unused(
    repo: &Repository<FullIndex>,
    packs: &BTreeMap<Id, IndexPack>,
    rep: &mut CheckReport,
    found: &Findings,
) {
    // Blobs of packs marked for deletion are accounted for already.
    let unused: Vec<_> = repo
        .index()
        .iter()
        .filter(|(id, pack, _)| !found.used.contains(id) && packs.contains_key(pack))
        .collect();
    rep.unused_blobs = unused.len() as u64;
    if found.walk_incomplete && found.unindexed_packs > 0 {
        rep.info.push(format!(
            "{} packs are in no index while trees are missing from it: the index may be lost or damaged; `cairn repair index` rebuilds it from the packs",
            found.unindexed_packs
        ));
    }
    if !unused.is_empty() {
        let bytes: u64 = unused.iter().map(|(_, _, l)| l.length as u64).sum();
        rep.info.push(if found.walk_incomplete {
            // Blobs below an unreadable tree look unreferenced but may not
            // be; prune refuses to run until the trees are repaired.
            format!(
                "{} blobs ({bytes} bytes) are not referenced by any readable tree (some may be referenced by the unreadable trees above)",
                unused.len()
            )
        } else {
            let (freed, kept) = what_prune_frees(packs, &found.used);
            format!(
                "{} blobs ({bytes} bytes) are not referenced by any snapshot: `cairn prune` frees {freed} bytes in packs more than {}% unused and leaves {kept} bytes in packs it keeps (`cairn prune --max-unused 0%` frees them too)",
                unused.len(),
                (crate::commands::prune::PruneOptions::default().max_unused * 100.0).round()
            )
        });
    }
}

/// The stored bytes of unused blobs (and of second copies of used ones)
/// that `prune` with its default settings frees, and those it leaves in
/// packs it keeps, by the rule prune applies.
fn what_prune_frees(packs: &BTreeMap<Id, IndexPack>, used: &HashSet<Id>) -> (u64, u64) {
    let max_unused = crate::commands::prune::PruneOptions::default().max_unused;
    let mut claimed = HashSet::new();
    let shares: Vec<(u64, u64)> = packs
        .values()
        .map(|p| {
            let (mut used_bytes, mut unused_bytes) = (0u64, 0u64);
            for e in &p.blobs {
                if used.contains(&e.id) && claimed.insert(e.id) {
                    used_bytes += u64::from(e.length);
                } else {
                    unused_bytes += u64::from(e.length);
                }
            }
            (used_bytes, unused_bytes)
        })
        .collect();
    let chosen = crate::commands::prune::choose_repacks(&shares, max_unused);
    let (mut freed, mut kept) = (0u64, 0u64);
    for (&(used_bytes, unused_bytes), repack) in shares.iter().zip(chosen) {
        if used_bytes == 0 || repack {
            freed += unused_bytes;
        } else {
            kept += unused_bytes;
        }
    }
    (freed, kept)
}

fn pack_file(id: &Id) -> String {
    Handle::new(FileKind::Pack, *id).rel_path()
}

/// Reads a pack's trailer and header and compares them with the index.
fn check_pack_header(
    repo: &Repository<FullIndex>,
    id: &Id,
    expected: &[PackEntry],
) -> std::result::Result<(), String> {
    let entries = repo.read_pack_header(id).map_err(|e| problem(&e))?;
    compare_entries(&entries, expected)
}

fn compare_entries(
    actual: &[PackEntry],
    expected: &[PackEntry],
) -> std::result::Result<(), String> {
    if actual != expected {
        let a: HashSet<_> = actual.iter().collect();
        let diff = expected.iter().find(|e| !a.contains(e));
        return Err(match diff {
            Some(e) => format!(
                "index entry for {} blob {} (offset {}, length {}) does not match the pack header",
                e.kind.name(),
                e.id.short(),
                e.offset,
                e.length
            ),
            None => "pack header lists blobs the index does not".into(),
        });
    }
    Ok(())
}

/// Reads a whole pack: name hash, header, every blob decrypted and re-hashed.
fn check_pack_data(
    repo: &Repository<FullIndex>,
    id: &Id,
    p: &IndexPack,
    found: &mut Findings,
    blobs_read: &mut u64,
) -> std::result::Result<(), String> {
    let what = pack_file(id);
    let bytes = repo.read_pack(id).map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if check_file_name(id, &bytes, &what).is_err() {
        problems.push("content does not match its name (damaged)".to_string());
    }
    match pack::parse(repo.key(), &bytes, &what) {
        Ok(entries) => {
            if let Err(m) = compare_entries(&entries, &p.blobs) {
                problems.push(m);
            }
        }
        Err(e) => problems.push(problem(&e)),
    }
    for e in &p.blobs {
        let end = e.offset as usize + e.length as usize;
        let ok = match bytes.get(e.offset as usize..end) {
            Some(enc) => {
                *blobs_read += 1;
                let lost_base = std::cell::Cell::new(None);
                let named_base = std::cell::Cell::new(None);
                let lookup = |b: &Id| {
                    named_base.set(Some(*b));
                    repo.read_base(b).inspect_err(|err| {
                        lost_base.set(Some(format!(
                            "data blob {} in pack {}: its delta base {} is unreadable ({})",
                            e.id.short(),
                            id.short(),
                            b.short(),
                            problem(err)
                        )))
                    })
                };
                let decoded = blob::decode(repo.key(), e.kind, &e.id, enc, &what, &lookup);
                if let Some(b) = named_base.get() {
                    found.delta_bases.insert(e.id, b);
                }
                match decoded {
                    Ok(plain) => plain.len() == e.raw_length as usize,
                    Err(_) => match lost_base.take() {
                        // Not this pack's fault; reported if the blob is used.
                        Some(msg) => {
                            found.base_missing.insert(e.id, msg);
                            true
                        }
                        None => false,
                    },
                }
            }
            None => false,
        };
        if !ok {
            let kind = if e.kind == BlobType::Tree {
                "tree"
            } else {
                "data"
            };
            problems.push(format!("{kind} blob {} is damaged", e.id.short()));
            found.bad_copies.insert((*id, e.id));
            found.bad_blobs.insert(
                e.id,
                format!(
                    "{kind} blob {} in pack {} is damaged",
                    e.id.short(),
                    id.short()
                ),
            );
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// Whether a file lists a delta blob (among those read) whose base is not
/// the blob at the same position of the file's base version: describes the
/// first. Both id lists are read one content list at a time.
fn misplaced_delta(
    repo: &Repository<FullIndex>,
    node: &Node,
    delta_bases: &HashMap<Id, Id>,
) -> Option<String> {
    let ids = match repo.content_ids(&node.content, node.content_depth) {
        Ok(ids) => ids,
        Err(e) => return Some(e.to_string()),
    };
    let mut base_ids = match &node.delta_base {
        Some(b) => match repo.content_ids(&b.content, b.depth) {
            Ok(ids) => Some(ids),
            Err(e) => return Some(e.to_string()),
        },
        None => None,
    };
    // A database has at most one blob per 512 bytes (the smallest page).
    let max = node.size / 512 + 1;
    for (pos, id) in ids.enumerate() {
        if pos as u64 > max {
            return Some("its content lists name more blobs than it can hold".into());
        }
        let id = match id {
            Ok(id) => id,
            Err(e) => return Some(e.to_string()),
        };
        let base_here = match base_ids.as_mut().map(Iterator::next) {
            Some(Some(Ok(b))) => Some(b),
            Some(Some(Err(e))) => return Some(format!("delta base: {e}")),
            _ => None,
        };
        let Some(named) = delta_bases.get(&id) else {
            continue;
        };
        if base_ids.is_none() {
            return Some(format!(
                "delta blob {} is listed by a file without a delta base",
                id.short()
            ));
        }
        if base_here != Some(*named) {
            return Some(format!(
                "delta blob {} at position {pos} names base {}, not the file's base blob there",
                id.short(),
                named.short()
            ));
        }
    }
    None
}

fn problem(e: &Error) -> String {
    match e {
        Error::Corrupt { problem, .. } => problem.clone(),
        other => other.to_string(),
    }
}
