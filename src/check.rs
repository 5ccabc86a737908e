//! Check: prove the repository is consistent, and optionally that every
//! stored byte still decrypts to what its id says.
//!
//! Structure checks read index files, pack headers, snapshots and trees;
//! `--read-data` also reads pack contents (all, a random fraction, or part
//! n of m, so a big repository can be verified over several days). Every
//! problem is reported with the snapshots and files it affects. Unreferenced
//! data is reported as information, never as an error: it is what an
//! interrupted backup leaves, and prune reclaims it.

use crate::backend::{FileKind, LocalBackend};
use crate::blob::{self, BlobType};
use crate::error::Result;
use crate::id::Id;
use crate::index::{IndexFile, IndexPack};
use crate::pack::{self, PackEntry};
use crate::repo::{Repository, check_file_name};
use crate::snapshot::Snapshot;
use crate::tree::{NodeKind, Tree};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::PathBuf;

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
                let r: [u8; 8] = crate::crypto::random_array().unwrap_or([0; 8]);
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
}

/// Findings.
#[derive(Debug, Default, serde::Serialize)]
pub struct CheckReport {
    /// Problems; non-empty means the check failed.
    pub errors: Vec<String>,
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
}

/// Runs the check.
pub fn check(repo: &mut Repository, opts: &CheckOptions) -> Result<CheckReport> {
    let mut rep = CheckReport::default();

    // Index files, one by one so one bad file does not hide the others.
    let mut files: Vec<(Id, IndexFile)> = Vec::new();
    for id in repo.backend.list(FileKind::Index)? {
        let what = LocalBackend::rel_path(FileKind::Index, &id);
        let r = repo
            .backend
            .read(FileKind::Index, &id)
            .and_then(|b| check_file_name(&id, &b, &what).map(|_| b))
            .and_then(|b| IndexFile::decode(&repo.key, &b, &what));
        match r {
            Ok(f) => files.push((id, f)),
            Err(e) => rep.errors.push(format!("{e}")),
        }
    }
    let superseded: HashSet<Id> = files
        .iter()
        .flat_map(|(_, f)| f.supersedes.iter().copied())
        .collect();
    files.retain(|(id, _)| !superseded.contains(id));
    let mut packs: BTreeMap<Id, IndexPack> = BTreeMap::new();
    for (_, f) in &files {
        for p in &f.packs {
            packs.entry(p.id).or_insert_with(|| p.clone());
        }
    }
    let mut index = crate::index::Index::new();
    for p in packs.values() {
        index.add_pack(p.id, &p.blobs);
    }
    repo.index = index;
    rep.packs = packs.len();

    // Packs: present, header agrees with the index, optionally content.
    let on_disk: HashSet<Id> = repo.backend.list(FileKind::Pack)?.into_iter().collect();
    let mut bad_blobs: HashMap<Id, String> = HashMap::new();
    // Delta blobs whose base could not be read: damage only if a snapshot
    // uses them (prune may keep an unused delta in a pack while deleting
    // its base).
    let mut base_missing: HashMap<Id, String> = HashMap::new();
    // Delta blobs read (with --read-data) and the base each names.
    let mut delta_bases: HashMap<Id, Id> = HashMap::new();
    let mut unindexed_packs = 0usize;
    for id in on_disk.iter().filter(|id| !packs.contains_key(id)) {
        unindexed_packs += 1;
        rep.info.push(format!(
            "{}: not in any index (left by an interrupted backup; `cairn prune` removes it)",
            LocalBackend::rel_path(FileKind::Pack, id)
        ));
    }
    for (pid, p) in &packs {
        let what = LocalBackend::rel_path(FileKind::Pack, pid);
        if !on_disk.contains(pid) {
            rep.errors.push(format!(
                "{what}: pack is missing ({} blobs lost)",
                p.blobs.len()
            ));
            for e in &p.blobs {
                bad_blobs.insert(e.id, format!("pack {} is missing", pid.short()));
            }
            continue;
        }
        let read_all = opts.read_data.is_some_and(|s| s.selects(pid));
        let problem = if read_all {
            rep.packs_read += 1;
            check_pack_data(
                repo,
                pid,
                p,
                &mut bad_blobs,
                &mut base_missing,
                &mut delta_bases,
                &mut rep.blobs_read,
            )
        } else {
            check_pack_header(repo, pid, &p.blobs)
        };
        if let Err(msg) = problem {
            rep.errors.push(format!("{what}: {msg}"));
            if !read_all {
                for e in &p.blobs {
                    bad_blobs
                        .entry(e.id)
                        .or_insert_with(|| format!("pack {} is damaged", pid.short()));
                }
            }
        }
    }

    // Snapshots and everything they reference.
    let mut snapshots: Vec<(Id, Snapshot)> = Vec::new();
    for id in repo.backend.list(FileKind::Snapshot)? {
        match repo.load_snapshot(&id) {
            Ok(s) => snapshots.push((id, s)),
            Err(e) => rep.errors.push(format!("{e}")),
        }
    }
    rep.snapshots = snapshots.len();
    let mut used: HashSet<Id> = HashSet::new();
    let mut tree_problems: HashMap<Id, String> = HashMap::new();
    let mut damaged: BTreeMap<String, Vec<String>> = BTreeMap::new();
    // Set when a tree could not be read: what lies below it is unknown.
    let mut walk_incomplete = false;
    for (sid, s) in &snapshots {
        // Work items: a tree blob to read, or an inline listing that is part
        // of an already read blob (and shares its first-visit flag).
        let mut stack = vec![(Listing::Blob(s.tree), PathBuf::from("/"))];
        let mut visited_here: HashSet<Id> = HashSet::new();
        while let Some((listing, path)) = stack.pop() {
            let (tree, first_visit) = match listing {
                Listing::Inline(tree, first_visit) => (*tree, first_visit),
                Listing::Blob(tid) => {
                    if !visited_here.insert(tid) {
                        continue;
                    }
                    let first_visit = used.insert(tid);
                    if let Some(p) = tree_problems.get(&tid) {
                        damaged
                            .entry(sid.short())
                            .or_default()
                            .push(format!("{}: {p}", path.display()));
                        continue;
                    }
                    if let Some(p) = bad_blobs.get(&tid) {
                        walk_incomplete = true;
                        damaged
                            .entry(sid.short())
                            .or_default()
                            .push(format!("{} (directory): {p}", path.display()));
                        continue;
                    }
                    match repo.load_tree(&tid) {
                        Ok(t) => {
                            if first_visit {
                                rep.trees += 1;
                            }
                            (t, first_visit)
                        }
                        Err(e) => {
                            let msg = format!("tree {} unreadable: {e}", tid.short());
                            rep.errors.push(format!(
                                "snapshot {}: {}: {msg}",
                                sid.short(),
                                path.display()
                            ));
                            tree_problems.insert(tid, msg.clone());
                            walk_incomplete = true;
                            damaged
                                .entry(sid.short())
                                .or_default()
                                .push(format!("{}: {msg}", path.display()));
                            continue;
                        }
                    }
                }
            };
            for n in &tree.nodes {
                let child = path.join(std::ffi::OsStr::new(&n.display_name()));
                match n.kind {
                    NodeKind::Dir => {
                        if let Some(sub) = n.subtree {
                            stack.push((Listing::Blob(sub), child));
                        } else if let Some(inline) = &n.inline {
                            stack.push((Listing::Inline(inline.clone(), first_visit), child));
                        }
                    }
                    NodeKind::File => {
                        // Content-list blobs (indirect content) are used too.
                        let (mut content, mut list_problem) = crate::content::expand_lenient(
                            repo,
                            &n.content,
                            n.content_depth,
                            &mut |id| {
                                used.insert(*id);
                            },
                        );
                        // A delta file's base version is part of the file.
                        let base = n.delta_base.as_ref().map(|b| {
                            crate::content::expand_lenient(repo, &b.content, b.depth, &mut |id| {
                                used.insert(*id);
                            })
                        });
                        // Each delta read must name the base's blob at its
                        // position, or prune could delete what it needs.
                        if list_problem.is_none() && !delta_bases.is_empty() {
                            let base_ids = base.as_ref().map(|(ids, _)| ids.as_slice());
                            list_problem = misplaced_delta(&content, base_ids, &delta_bases);
                        }
                        if let Some((base_ids, p)) = base {
                            content.extend(base_ids);
                            list_problem =
                                list_problem.or_else(|| p.map(|p| format!("delta base: {p}")));
                        }
                        if let Some(p) = list_problem {
                            if first_visit {
                                rep.errors.push(format!(
                                    "snapshot {}: {}: {p}",
                                    sid.short(),
                                    child.display()
                                ));
                            }
                            damaged
                                .entry(sid.short())
                                .or_default()
                                .push(format!("{}: {p}", child.display()));
                        }
                        // Every blob of the file is referenced, also those
                        // after a damaged one (the loop stops at the first).
                        used.extend(content.iter().copied());
                        for b in &content {
                            let problem =
                                if let Some(p) = bad_blobs.get(b).or_else(|| base_missing.get(b)) {
                                    Some(p.clone())
                                } else if repo.index.get(b).is_none() {
                                    Some(format!("data blob {} is not in the index", b.short()))
                                } else {
                                    None
                                };
                            if let Some(p) = problem {
                                if first_visit {
                                    rep.errors.push(format!(
                                        "snapshot {}: {}: {p}",
                                        sid.short(),
                                        child.display()
                                    ));
                                }
                                damaged
                                    .entry(sid.short())
                                    .or_default()
                                    .push(format!("{}: {p}", child.display()));
                                break;
                            }
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    rep.damaged_snapshots = damaged
        .iter()
        .map(|(s, files)| {
            format!(
                "snapshot {s}: {} damaged: {}",
                files.len(),
                files.iter().take(5).cloned().collect::<Vec<_>>().join("; ")
            )
        })
        .collect();
    for (sid, files) in &damaged {
        if !rep
            .errors
            .iter()
            .any(|e| e.starts_with(&format!("snapshot {sid}")))
        {
            rep.errors.push(format!(
                "snapshot {sid}: {} damaged: {}",
                files.len(),
                files[0]
            ));
        }
    }
    let unused: Vec<_> = repo
        .index
        .iter()
        .filter(|(id, _, _)| !used.contains(id))
        .collect();
    rep.unused_blobs = unused.len() as u64;
    if walk_incomplete && unindexed_packs > 0 {
        rep.info.push(format!(
            "{unindexed_packs} packs are in no index while trees are missing from it: the index may be lost or damaged; `cairn repair index` rebuilds it from the packs"
        ));
    }
    if !unused.is_empty() {
        let bytes: u64 = unused.iter().map(|(_, _, l)| l.length as u64).sum();
        rep.info.push(if walk_incomplete {
            // Blobs below an unreadable tree look unreferenced but may not
            // be; prune refuses to run until the trees are repaired.
            format!(
                "{} blobs ({bytes} bytes) are not referenced by any readable tree (some may be referenced by the unreadable trees above)",
                unused.len()
            )
        } else {
            format!(
                "{} blobs ({bytes} bytes) are not referenced by any snapshot (`cairn prune` removes them)",
                unused.len()
            )
        });
    }
    Ok(rep)
}

/// Reads a pack's trailer and header and compares them with the index.
fn check_pack_header(
    repo: &Repository,
    id: &Id,
    expected: &[PackEntry],
) -> std::result::Result<(), String> {
    let what = LocalBackend::rel_path(FileKind::Pack, id);
    let file = repo
        .backend
        .open(FileKind::Pack, id)
        .map_err(|e| e.to_string())?;
    let len = file.metadata().map_err(|e| e.to_string())?.len();
    if len < pack::TRAILER_LEN as u64 {
        return Err("pack too short (truncated?)".into());
    }
    let trailer = LocalBackend::read_at(
        &file,
        len - pack::TRAILER_LEN as u64,
        pack::TRAILER_LEN,
        &what,
    )
    .map_err(|e| e.to_string())?;
    let hlen = pack::header_len_from_trailer(&trailer, len, &what).map_err(|e| problem(&e))?;
    let start = len - pack::TRAILER_LEN as u64 - hlen as u64;
    let sealed = LocalBackend::read_at(&file, start, hlen, &what).map_err(|e| e.to_string())?;
    let entries = pack::decode_header(&repo.key, &sealed, start, &what).map_err(|e| problem(&e))?;
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
    repo: &Repository,
    id: &Id,
    p: &IndexPack,
    bad: &mut HashMap<Id, String>,
    base_missing: &mut HashMap<Id, String>,
    delta_bases: &mut HashMap<Id, Id>,
    blobs_read: &mut u64,
) -> std::result::Result<(), String> {
    let what = LocalBackend::rel_path(FileKind::Pack, id);
    let bytes = repo
        .backend
        .read(FileKind::Pack, id)
        .map_err(|e| e.to_string())?;
    let mut problems = Vec::new();
    if Id::of_file(&bytes) != *id {
        problems.push("content does not match its name (damaged)".to_string());
    }
    match pack::parse(&repo.key, &bytes, &what) {
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
                let decoded = blob::decode(&repo.key, e.kind, &e.id, enc, &what, &lookup);
                if let Some(b) = named_base.get() {
                    delta_bases.insert(e.id, b);
                }
                match decoded {
                    Ok(plain) => plain.len() == e.raw_length as usize,
                    Err(_) => match lost_base.take() {
                        // Not this pack's fault; reported if the blob is used.
                        Some(msg) => {
                            base_missing.insert(e.id, msg);
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
            bad.insert(
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

/// Whether a file's `content` lists a delta blob (among those read) whose
/// base is not the blob at the same position of the file's base version
/// (`base_ids`, `None` if the file has none): describes the first.
fn misplaced_delta(
    content: &[Id],
    base_ids: Option<&[Id]>,
    delta_bases: &HashMap<Id, Id>,
) -> Option<String> {
    for (pos, id) in content.iter().enumerate() {
        let Some(named) = delta_bases.get(id) else {
            continue;
        };
        let Some(base_ids) = base_ids else {
            return Some(format!(
                "delta blob {} is listed by a file without a delta base",
                id.short()
            ));
        };
        if base_ids.get(pos) != Some(named) {
            return Some(format!(
                "delta blob {} at position {pos} names base {}, not the file's base blob there",
                id.short(),
                named.short()
            ));
        }
    }
    None
}

fn problem(e: &crate::error::Error) -> String {
    match e {
        crate::error::Error::Corrupt { problem, .. } => problem.clone(),
        other => other.to_string(),
    }
}

/// A directory listing still to be checked.
enum Listing {
    /// A tree blob.
    Blob(Id),
    /// An inline listing, with whether its enclosing blob was seen first here.
    Inline(Box<Tree>, bool),
}
