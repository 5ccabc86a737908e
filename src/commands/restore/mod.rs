//! Restore: recreate a snapshot's files under a target directory.
//!
//! Safety rules, whatever the snapshot says: every path is the target joined
//! with validated plain names (tree decoding rejects `..`, `/` and empty
//! names); existing entries in the way are checked with `lstat` and replaced,
//! never followed; files are opened with `O_NOFOLLOW`; symlinks are created
//! last, after everything that could be written through them. Every blob is
//! authenticated and its id re-hashed before a byte reaches the disk; a file
//! whose content cannot be read is removed rather than left with wrong data.
//! Directory metadata is applied last, deepest first. File contents are
//! read pack by pack ([`contents`]).

mod contents;

use crate::commands::progress::{Counters, Progress, run_reporting};
use crate::error::{Error, IoContext, Result};
use crate::format::id::Id;
use crate::format::snapshot::DatabaseRecord;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repository::{FullIndex, Repository};
use crate::sources::walk::PatternSet;
use crate::sys::lock;
use rayon::prelude::*;
use std::collections::HashMap;
use std::fs::{self, OpenOptions};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// What to restore and where.
#[derive(Clone, Debug, Default)]
pub struct RestoreOptions {
    /// Directory to restore into (created if missing).
    pub target: PathBuf,
    /// Restore only these snapshot paths (or glob patterns) and what is below them.
    pub includes: Vec<String>,
    /// Skip entries matching these patterns.
    pub excludes: Vec<String>,
    /// Re-read restored files and check them against the snapshot.
    pub verify: bool,
    /// The snapshot's database records: each restored database is re-opened,
    /// checked and compared with its record (always, not only with `verify`).
    pub databases: Vec<DatabaseRecord>,
    /// Refuse trees that name more entries than this (see
    /// [`crate::commands::ls::entry_limit`]); `None`: no limit.
    pub max_entries: Option<u64>,
}

/// Outcome of checking one restored database against its record.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DatabaseVerification {
    /// The database's path in the snapshot.
    pub path: String,
    /// Where it was restored.
    pub restored_to: PathBuf,
    /// Whether it passed every comparison.
    pub verified: bool,
    /// What did not match (empty when verified).
    pub problems: Vec<String>,
}

/// What a restore did.
#[derive(Debug, Default)]
pub struct RestoreStats {
    /// Regular files restored (including hard links).
    pub files: u64,
    /// Directories restored.
    pub dirs: u64,
    /// Other entries (symlinks, fifos, devices).
    pub others: u64,
    /// Content bytes restored.
    pub bytes: u64,
    /// Files checked by `verify`.
    pub verified: u64,
    /// Problems, one line each. Empty means success.
    pub errors: Vec<String>,
    /// Entries restored differently from the snapshot, or not at all,
    /// without that being an error (device nodes without root, hard links
    /// whose recorded contents differ).
    pub warnings: Vec<String>,
    /// Restored databases and whether each matches its record.
    pub databases: Vec<DatabaseVerification>,
}

struct Item {
    rel: PathBuf,
    node: Node,
}

struct Plan {
    dirs: Vec<Item>,
    files: Vec<Item>,
    others: Vec<Item>,
}

struct Selector {
    literal: Vec<Vec<Vec<u8>>>,
    globs: PatternSet,
    has_globs: bool,
    excludes: PatternSet,
}

impl Selector {
    fn new(opts: &RestoreOptions) -> Result<Selector> {
        let mut literal = Vec::new();
        let mut globs = Vec::new();
        for inc in &opts.includes {
            if inc.contains(['*', '?', '[']) {
                globs.push(inc.clone());
            } else {
                literal.push(crate::repository::browse::components(inc)?);
            }
        }
        Ok(Selector {
            literal,
            has_globs: !globs.is_empty(),
            globs: PatternSet::new(&globs)?,
            excludes: PatternSet::new(&opts.excludes)?,
        })
    }

    fn everything(&self) -> bool {
        self.literal.is_empty() && !self.has_globs
    }

    /// Whether the entry at `comps` is selected by itself.
    fn selects(&self, comps: &[Vec<u8>], abs: &Path) -> bool {
        self.literal.iter().any(|l| comps.starts_with(l)) || self.globs.matches(abs)
    }

    /// Whether a directory at `comps` may contain selected entries.
    fn may_contain(&self, comps: &[Vec<u8>]) -> bool {
        self.has_globs || self.literal.iter().any(|l| l.starts_with(comps))
    }
}

/// Restores the tree `root` into `opts.target`, reporting files and bytes
/// written to `progress` (totals: `total_files`, `total_bytes`).
pub fn restore_tree(
    repo: &Repository<FullIndex>,
    root: &Id,
    opts: &RestoreOptions,
    totals: (u64, u64),
    progress: &dyn Progress,
) -> Result<RestoreStats> {
    let counters = Counters::with_totals(totals.0, totals.1);
    run_reporting(progress, &counters, || {
        restore_counted(repo, root, opts, &counters, progress)
    })
}

fn restore_counted(
    repo: &Repository<FullIndex>,
    root: &Id,
    opts: &RestoreOptions,
    progress: &Counters,
    cancel: &dyn Progress,
) -> Result<RestoreStats> {
    let sel = Selector::new(opts)?;
    let mut root_node = Node::new(b"/".to_vec(), NodeKind::Dir);
    root_node.subtree = Some(*root);
    if let Some(limit) = opts.max_entries {
        crate::repository::browse::count_entries(repo, &root_node, limit)?;
    }
    let mut plan = Plan {
        dirs: Vec::new(),
        files: Vec::new(),
        others: Vec::new(),
    };
    collect(
        repo,
        repo.load_tree(root)?,
        sel.everything(),
        &sel,
        &mut plan,
    )?;

    let target = &opts.target;
    fs::create_dir_all(target).at(target)?;
    let errors = Mutex::new(Vec::new());
    let err =
        |p: &Path, e: &dyn std::fmt::Display| lock(&errors).push(format!("{}: {e}", p.display()));
    let mut warnings = Vec::new();

    for d in &plan.dirs {
        let p = target.join(&d.rel);
        if let Err(e) = ensure_dir(&p) {
            err(&p, &e);
        }
    }

    // Hard links: the first path of each (device, inode) gets the content,
    // the others become links to it, unless the snapshot records different
    // content for them (then each is restored with its own).
    let mut first_of: HashMap<(u64, u64), usize> = HashMap::new();
    let mut links: Vec<(usize, usize)> = Vec::new();
    for (i, f) in plan.files.iter().enumerate() {
        if f.node.links > 1 {
            match first_of.get(&(f.node.device, f.node.inode)) {
                Some(&first) if same_content(&plan.files[first].node, &f.node) => {
                    links.push((i, first));
                }
                Some(&first) => warnings.push(format!(
                    "{}: recorded as a hard link of {} but with different content; restored as a separate file",
                    target.join(&f.rel).display(),
                    target.join(&plan.files[first].rel).display()
                )),
                None => {
                    first_of.insert((f.node.device, f.node.inode), i);
                }
            }
        }
    }
    let linked: std::collections::HashSet<usize> = links.iter().map(|l| l.0).collect();
    let written: Vec<AtomicBool> = plan.files.iter().map(|_| AtomicBool::new(false)).collect();
    let euid = crate::sys::euid();
    let jobs: Vec<(usize, contents::FileJob)> = plan
        .files
        .iter()
        .enumerate()
        .filter(|(i, _)| !linked.contains(i))
        .map(|(i, f)| {
            (
                i,
                contents::FileJob {
                    path: target.join(&f.rel),
                    node: &f.node,
                },
            )
        })
        .collect();
    let (indexes, jobs): (Vec<usize>, Vec<contents::FileJob>) = jobs.into_iter().unzip();
    let outcomes = contents::write_contents(repo, &jobs, progress, cancel);
    indexes
        .par_iter()
        .zip(&jobs)
        .zip(outcomes)
        .for_each(|((i, job), outcome)| match outcome {
            None => {
                written[*i].store(true, Ordering::Relaxed);
                if let Err(e) = apply_metadata(&job.path, job.node, euid) {
                    err(&job.path, &e);
                }
            }
            Some(why) => err(&job.path, &why),
        });
    crate::commands::progress::check_cancelled(cancel)?;
    for (i, first) in &links {
        let p = target.join(&plan.files[*i].rel);
        if !written[*first].load(Ordering::Relaxed) {
            err(
                &p,
                &"not linked: the file it links to could not be restored",
            );
            continue;
        }
        let src = target.join(&plan.files[*first].rel);
        match remove_existing(&p).and_then(|_| fs::hard_link(&src, &p).at(&p)) {
            Ok(()) => written[*i].store(true, Ordering::Relaxed),
            Err(e) => err(&p, &e),
        }
    }
    let mut others = 0u64;
    for o in &plan.others {
        let p = target.join(&o.rel);
        match create_special(&p, &o.node, euid) {
            Ok(Special::Created) => others += 1,
            Ok(Special::Skipped(Some(why))) => warnings.push(format!("{}: {why}", p.display())),
            Ok(Special::Skipped(None)) => {}
            Err(e) => err(&p, &e),
        }
    }
    for d in plan.dirs.iter().rev() {
        let p = target.join(&d.rel);
        if let Err(e) = apply_metadata(&p, &d.node, euid) {
            err(&p, &e);
        }
    }

    let restored = |i: &usize| written[*i].load(Ordering::Relaxed);
    let mut stats = RestoreStats {
        files: (0..plan.files.len()).filter(restored).count() as u64,
        dirs: plan.dirs.len() as u64,
        others,
        bytes: (0..plan.files.len())
            .filter(restored)
            .fold(0u64, |sum, i| sum.saturating_add(plan.files[i].node.size)),
        warnings,
        ..Default::default()
    };
    if opts.verify {
        let verified = AtomicU64::new(0);
        plan.files.par_iter().for_each(|f| {
            let p = target.join(&f.rel);
            match verify_file(repo, &p, &f.node) {
                Ok(()) => {
                    verified.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => err(&p, &format!("verification failed: {e}")),
            }
        });
        stats.verified = verified.into_inner();
    }
    for rec in &opts.databases {
        let rel = rec.path.trim_start_matches('/');
        let Some(f) = plan
            .files
            .iter()
            .find(|f| f.rel.as_os_str().as_bytes() == rel.as_bytes())
        else {
            continue; // not selected for this restore
        };
        let p = target.join(&f.rel);
        let problems = crate::sources::sqlite::verify_restored(&p, rec);
        if !problems.is_empty() {
            err(
                &p,
                &format!("database NOT verified: {}", problems.join("; ")),
            );
        }
        stats.databases.push(DatabaseVerification {
            path: rec.path.clone(),
            restored_to: p,
            verified: problems.is_empty(),
            problems,
        });
    }
    stats.errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    Ok(stats)
}

/// Whether two nodes recorded as one hard-linked file hold the same content.
fn same_content(a: &Node, b: &Node) -> bool {
    a.size == b.size
        && a.content == b.content
        && a.content_depth == b.content_depth
        && a.delta_base == b.delta_base
}

/// One directory being walked by [`collect`].
struct CollectFrame {
    tree: Tree,
    next: usize,
    /// Whether everything below is selected.
    selected: bool,
    /// Whether something below was selected.
    any: bool,
    /// This directory's entry in `plan.dirs` (None for the root).
    dir_at: Option<usize>,
    /// Whether this directory is selected by itself.
    dir_selected: bool,
}

/// Walks the tree `root` (iteratively: no input can overflow the stack)
/// and fills `plan` with the selected entries; a directory is kept only if
/// it is selected or holds something selected. Returns whether anything
/// was selected.
fn collect(
    repo: &Repository<FullIndex>,
    root: Tree,
    selected: bool,
    sel: &Selector,
    plan: &mut Plan,
) -> Result<bool> {
    let mut comps: Vec<Vec<u8>> = Vec::new();
    let mut stack = vec![CollectFrame {
        tree: root,
        next: 0,
        selected,
        any: false,
        dir_at: None,
        dir_selected: false,
    }];
    loop {
        let depth = stack.len();
        let top = stack
            .last_mut()
            .expect("the root frame stays until the end");
        let Some(node) = top.tree.nodes.get(top.next) else {
            let done = stack.pop().expect("a frame");
            let Some(parent) = stack.last_mut() else {
                return Ok(done.any);
            };
            comps.pop();
            if done.dir_selected || done.any {
                parent.any = true;
            } else if let Some(at) = done.dir_at {
                // Nothing selected below: do not create it after all.
                plan.dirs.truncate(at);
            }
            continue;
        };
        top.next += 1;
        let frame_selected = top.selected;
        comps.push(node.name.clone());
        let rel: PathBuf = comps
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect();
        let abs = Path::new("/").join(&rel);
        if sel.excludes.matches(&abs) {
            comps.pop();
            continue;
        }
        let this_selected = frame_selected || sel.selects(&comps, &abs);
        match node.kind {
            NodeKind::Dir if (this_selected || sel.may_contain(&comps)) => {
                if depth >= crate::format::tree::MAX_TREE_DEPTH {
                    return Err(crate::repository::browse::too_deep(&abs));
                }
                let listing = repo.listing(node)?.into_owned();
                let mut dir = node.clone();
                dir.inline = None; // the listing is walked here, not kept
                let at = plan.dirs.len();
                plan.dirs.push(Item { rel, node: dir });
                stack.push(CollectFrame {
                    tree: listing,
                    next: 0,
                    selected: this_selected,
                    any: false,
                    dir_at: Some(at),
                    dir_selected: this_selected,
                });
                // The name stays pushed until the directory is done.
                continue;
            }
            NodeKind::File if this_selected => {
                plan.files.push(Item {
                    rel,
                    node: node.clone(),
                });
                top.any = true;
            }
            _ if this_selected => {
                plan.others.push(Item {
                    rel,
                    node: node.clone(),
                });
                top.any = true;
            }
            _ => {}
        }
        comps.pop();
    }
}

/// Makes `p` a real directory, replacing whatever non-directory is there.
fn ensure_dir(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => return Ok(()),
        Ok(_) => remove_existing(p)?,
        Err(_) => {}
    }
    fs::create_dir(p).at(p)?;
    Ok(())
}

/// Removes a non-directory entry at `p` (a symlink is removed, not followed).
fn remove_existing(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(md) if md.is_dir() => fs::remove_dir_all(p).at(p),
        Ok(_) => fs::remove_file(p).at(p),
        Err(_) => Ok(()),
    }
}

/// What [`create_special`] did.
enum Special {
    /// The entry exists now.
    Created,
    /// It was not created (for this reason, worth a warning, if given).
    Skipped(Option<&'static str>),
}

fn create_special(p: &Path, node: &Node, euid: u32) -> Result<Special> {
    if node.kind == NodeKind::Socket {
        // A socket belongs to the program that listened on it; like other
        // tools, restore does not recreate it.
        return Ok(Special::Skipped(None));
    }
    if matches!(node.kind, NodeKind::CharDevice | NodeKind::BlockDevice) && euid != 0 {
        return Ok(Special::Skipped(Some(
            "device node not created (only root can create one)",
        )));
    }
    remove_existing(p)?;
    let cpath = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidInput(format!("{}: path contains NUL", p.display())))?;
    match node.kind {
        NodeKind::Symlink => {
            std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(&node.link_target), p).at(p)?;
        }
        NodeKind::Fifo => {
            // SAFETY: cpath is a valid NUL-terminated string.
            if unsafe { libc::mkfifo(cpath.as_ptr(), 0o600) } != 0 {
                return Err(Error::io(p, std::io::Error::last_os_error()));
            }
        }
        NodeKind::CharDevice | NodeKind::BlockDevice => {
            let kind = if node.kind == NodeKind::CharDevice {
                libc::S_IFCHR
            } else {
                libc::S_IFBLK
            };
            // SAFETY: cpath is a valid NUL-terminated string.
            if unsafe { libc::mknod(cpath.as_ptr(), kind | 0o600, node.rdev as libc::dev_t) } != 0 {
                return Err(Error::io(p, std::io::Error::last_os_error()));
            }
        }
        _ => return Ok(Special::Skipped(None)),
    }
    apply_metadata(p, node, euid)?;
    Ok(Special::Created)
}

/// Owner (as root), mode (not for symlinks) and times, without following links.
fn apply_metadata(p: &Path, node: &Node, euid: u32) -> Result<()> {
    let cpath = std::ffi::CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::InvalidInput(format!("{}: path contains NUL", p.display())))?;
    if euid == 0 {
        // SAFETY: cpath is a valid NUL-terminated string.
        if unsafe { libc::lchown(cpath.as_ptr(), node.uid, node.gid) } != 0 {
            return Err(Error::io(p, std::io::Error::last_os_error()));
        }
    }
    if node.kind != NodeKind::Symlink {
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(p, fs::Permissions::from_mode(node.mode)).at(p)?;
    }
    let mtime = filetime::FileTime::from_unix_time(node.mtime, node.mtime_nsec);
    filetime::set_symlink_file_times(p, mtime, mtime).at(p)?;
    Ok(())
}

fn verify_file(repo: &Repository<FullIndex>, p: &Path, node: &Node) -> Result<()> {
    let mut f = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)
        .at(p)?;
    // A delta blob's id is derived from its base's id and its content; the
    // base's ids are read along, one list at a time.
    let mut base_ids = match &node.delta_base {
        Some(b) => Some(repo.content_ids(&b.content, b.depth)?),
        None => None,
    };
    for b in repo.file_blobs(node)? {
        let b = b?;
        let base = match base_ids.as_mut().and_then(Iterator::next) {
            Some(id) => Some(id?),
            None => None,
        };
        let mut buf = vec![0u8; b.location.raw_length as usize];
        f.read_exact(&mut buf).at(p)?;
        let matches = repo.key().blob_id(&buf) == b.id
            || base.is_some_and(|base| repo.key().delta_blob_id(&base, &buf) == b.id);
        if !matches {
            return Err(Error::InvalidInput(format!(
                "content differs at offset {}",
                b.file_offset
            )));
        }
    }
    let mut extra = [0u8; 1];
    if f.read(&mut extra).at(p)? != 0 {
        return Err(Error::InvalidInput(
            "file is longer than in the snapshot".into(),
        ));
    }
    Ok(())
}

/// What `restore` did, and to which snapshot.
#[derive(Debug)]
pub struct RestoreReport {
    /// The snapshot restored.
    pub snapshot_id: Id,
    /// What was written.
    pub stats: RestoreStats,
    /// Wall time.
    pub duration: std::time::Duration,
}

/// Restores the selected snapshot into `opts.target` under a shared lock.
/// `opts.databases` is filled from the snapshot.
pub fn restore<S>(
    repo: &Repository<S>,
    selector: &crate::commands::select::SnapshotSelector,
    opts: &RestoreOptions,
    progress: &dyn Progress,
) -> Result<RestoreReport> {
    let start = std::time::Instant::now();
    // Index and snapshots side by side (each is waiting on a remote store).
    let plain = repo.without_index();
    let (repo, chosen) = std::thread::scope(|s| {
        let chosen = s.spawn(|| selector.resolve(&plain));
        let repo = repo.with_full_index();
        let chosen = chosen
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("snapshot reader panicked".into())));
        (repo, chosen)
    });
    let repo = repo?;
    let (id, snap) = chosen?;
    let opts = RestoreOptions {
        databases: snap.databases.clone(),
        max_entries: Some(crate::commands::ls::entry_limit(&snap)),
        ..opts.clone()
    };
    let stats = restore_tree(
        &repo,
        &snap.tree,
        &opts,
        (snap.summary.total_files, snap.summary.total_bytes),
        progress,
    )?;
    Ok(RestoreReport {
        snapshot_id: id,
        stats,
        duration: start.elapsed(),
    })
}
