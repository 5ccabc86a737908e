//! Backup: walk the sources, store what is new, write the snapshot last.
//!
//! Directories are processed in parallel (rayon), files within a directory
//! in parallel, and chunks of a large file in parallel batches, so every core
//! hashes, compresses and encrypts while the packer's writer thread writes.
//! A file whose size, mtime, ctime and inode equal its node in the parent
//! snapshot is not read: its chunk list is reused (`force` disables this).
//! An unchanged directory then encodes to the same tree blob and costs nothing.
//!
//! Unreadable entries are recorded and skipped; the snapshot is still saved
//! and the error count tells the caller to exit with status 3.
//!
//! Besides paths, a backup can take live SQLite databases (`--sqlite`):
//! each is copied consistently with SQLite's online backup API, checked, and
//! stored under its own path in place of the live file, cut at page
//! boundaries ([`crate::chunker::DatabaseChunking`]); and one stream
//! (standard input or a command's output) stored as `/NAME`. Files with many
//! chunks list them through content-list blobs ([`crate::content`]).

use crate::blob::BlobType;
use crate::chunker::{Chunker, DatabaseChunking};
use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::packer::{Packer, lock};
use crate::repo::{Repository, hostname, username};
use crate::snapshot::{DatabaseRecord, Snapshot, SnapshotFilter, Summary};
use crate::sqlite::SqliteOptions;
use crate::tree::{INLINE_MAX, Node, NodeKind, Tree};
use crate::walk::{PatternSet, node_from_metadata};
use chrono::{DateTime, FixedOffset, Local};
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Source paths (made absolute).
    pub paths: Vec<PathBuf>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Tags to record.
    pub tags: Vec<String>,
    /// Snapshot time (default: now).
    pub time: Option<DateTime<FixedOffset>>,
    /// Exclusion patterns.
    pub excludes: Vec<String>,
    /// Do not cross file system boundaries.
    pub one_file_system: bool,
    /// Parent snapshot (default: newest with the same host and paths).
    pub parent: Option<Id>,
    /// Read every file even if unchanged.
    pub force: bool,
    /// Live SQLite databases to copy consistently, check and store.
    pub sqlite: Vec<PathBuf>,
    /// How databases are copied and checked.
    pub sqlite_options: SqliteOptions,
    /// Save a database that fails its check (marked failed) instead of
    /// aborting the backup.
    pub sqlite_allow_corrupt: bool,
    /// Store standard input or a command's output as a file.
    pub stdin: Option<StdinSource>,
}

/// A stream stored as the file `/filename` of the snapshot.
#[derive(Clone, Debug, Default)]
pub struct StdinSource {
    /// File name (a single plain name).
    pub filename: String,
    /// Run this command (program and arguments) and store its standard
    /// output; `None` stores this process's standard input.
    pub command: Option<Vec<OsString>>,
}

/// Live counters for progress display.
#[derive(Default, Debug)]
pub struct Progress {
    /// Files finished.
    pub files: AtomicU64,
    /// Directories finished.
    pub dirs: AtomicU64,
    /// Bytes of file content processed (read or reused).
    pub bytes: AtomicU64,
    /// Errors so far.
    pub errors: AtomicU64,
    /// Files found by the size scan (for an ETA); grows while scanning.
    pub total_files: AtomicU64,
    /// Bytes found by the size scan.
    pub total_bytes: AtomicU64,
    /// Whether the size scan has finished.
    pub scan_done: std::sync::atomic::AtomicBool,
}

/// Walks the sources once, counting regular files and their bytes into
/// `progress`, so progress displays can show a total and an ETA. Only
/// metadata is read; exclusions are honoured; errors are ignored here (the
/// backup itself reports them).
pub fn scan_totals(paths: &[PathBuf], excludes: &[String], progress: &Progress) {
    let Ok(patterns) = PatternSet::new(excludes) else {
        return;
    };
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::path::absolute(p).ok())
        .map(|p| normalize(&p))
        .collect();
    while let Some(p) = stack.pop() {
        if patterns.matches(&p) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() {
            progress.total_files.fetch_add(1, Ordering::Relaxed);
            progress.total_bytes.fetch_add(md.len(), Ordering::Relaxed);
        }
    }
    progress.scan_done.store(true, Ordering::Relaxed);
}

/// Outcome of a backup.
#[derive(Debug)]
pub struct BackupResult {
    /// Id of the saved snapshot.
    pub snapshot_id: Id,
    /// The saved snapshot.
    pub snapshot: Snapshot,
    /// Unreadable entries, with their errors.
    pub errors: Vec<String>,
}

struct Archiver<'a> {
    repo: &'a Repository,
    /// Nodes prepared before the walk (databases, the stdin file), by path.
    overrides: HashMap<PathBuf, Node>,
    /// Paths never stored: journal and WAL files of the databases.
    skip: HashSet<PathBuf>,
    packer: Packer<'a>,
    excludes: PatternSet,
    one_file_system: bool,
    force: bool,
    progress: &'a Progress,
    errors: Mutex<Vec<String>>,
    files_new: AtomicU64,
    files_changed: AtomicU64,
    files_unchanged: AtomicU64,
    dirs: AtomicU64,
    total_files: AtomicU64,
    total_bytes: AtomicU64,
    bytes_read: AtomicU64,
}

/// A directory of the root tree that leads to source paths.
#[derive(Default)]
struct VirtualDir {
    real_path: PathBuf,
    children: BTreeMap<Vec<u8>, Entry>,
}

enum Entry {
    Source(PathBuf),
    Dir(VirtualDir),
}

/// Runs a backup of `opts.paths` into `repo`. The index is loaded here.
pub fn backup(
    repo: &mut Repository,
    opts: &BackupOptions,
    progress: &Progress,
) -> Result<BackupResult> {
    let started = chrono::Utc::now();
    if opts.paths.is_empty() && opts.sqlite.is_empty() && opts.stdin.is_none() {
        return Err(Error::InvalidInput("no source paths given".into()));
    }
    let mut sources = Vec::new();
    for p in &opts.paths {
        let abs = std::path::absolute(p).at(p)?;
        let abs = normalize(&abs);
        std::fs::symlink_metadata(&abs).at(&abs)?;
        sources.push(abs);
    }
    let plain_sources = sources.clone();
    let mut databases: Vec<PathBuf> = Vec::new();
    for p in &opts.sqlite {
        let abs = normalize(&std::path::absolute(p).at(p)?);
        match std::fs::metadata(&abs) {
            Ok(md) if md.is_file() => {}
            Ok(_) => {
                return Err(Error::InvalidInput(format!(
                    "database {}: not a regular file",
                    abs.display()
                )));
            }
            Err(e) => {
                return Err(Error::InvalidInput(format!(
                    "database {}: {e}",
                    abs.display()
                )));
            }
        }
        if !databases.contains(&abs) {
            databases.push(abs.clone());
        }
        sources.push(abs);
    }
    databases.sort();
    let stdin_path = match &opts.stdin {
        Some(s) => {
            crate::tree::validate_name(s.filename.as_bytes())
                .map_err(|e| Error::InvalidInput(format!("--stdin-filename: {e}")))?;
            let p = PathBuf::from("/").join(&s.filename);
            if let Some(c) = plain_sources
                .iter()
                .chain(databases.iter())
                .find(|c| c.starts_with(&p) || p.starts_with(c))
            {
                return Err(Error::InvalidInput(format!(
                    "--stdin-filename {}: {} would overlap the source path {}",
                    s.filename,
                    p.display(),
                    c.display()
                )));
            }
            if s.command.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(Error::InvalidInput(
                    "--stdin-from-command needs a command after --".into(),
                ));
            }
            sources.push(p.clone());
            Some(p)
        }
        None => None,
    };
    sources.sort();
    sources.dedup();
    // Drop paths inside other paths: the outer one covers them.
    let mut kept: Vec<PathBuf> = Vec::new();
    for s in sources {
        if !kept.iter().any(|k| s.starts_with(k)) {
            kept.push(s);
        }
    }
    let paths: Vec<String> = kept
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let host = opts.host.clone().unwrap_or_else(hostname);

    repo.load_index_for_backup()?;
    let parent = match opts.parent {
        Some(id) => Some((id, repo.load_snapshot(&id)?)),
        None => {
            let filter = SnapshotFilter {
                hosts: vec![host.clone()],
                ..Default::default()
            };
            repo.load_snapshots()?
                .into_iter()
                .rfind(|(_, s)| filter.matches(s) && s.paths == paths)
        }
    };

    // Databases are stored as deltas against an earlier version of theirs.
    let mut delta_plans: HashMap<PathBuf, crate::delta::DeltaPlan> = HashMap::new();
    if repo.config.database_chunking.is_some() {
        let parent_tree = parent.as_ref().map(|(_, s)| s.tree);
        for db in &databases {
            if let Some(plan) = crate::delta::plan(repo, parent_tree.as_ref(), db)? {
                delta_plans.insert(db.clone(), plan);
            }
        }
    }

    let repo: &Repository = repo;
    let mut archiver = Archiver {
        repo,
        overrides: HashMap::new(),
        skip: HashSet::new(),
        packer: Packer::new(repo),
        excludes: PatternSet::new(&opts.excludes)?,
        one_file_system: opts.one_file_system,
        force: opts.force,
        progress,
        errors: Mutex::new(Vec::new()),
        files_new: AtomicU64::new(0),
        files_changed: AtomicU64::new(0),
        files_unchanged: AtomicU64::new(0),
        dirs: AtomicU64::new(0),
        total_files: AtomicU64::new(0),
        total_bytes: AtomicU64::new(0),
        bytes_read: AtomicU64::new(0),
    };

    // Databases and the stream first: a database failing its check, or a
    // failing command, ends the backup before the walk.
    let mut records: Vec<DatabaseRecord> = Vec::new();
    let mut overrides = HashMap::new();
    for db in &databases {
        let copy = crate::sqlite::copy_database(db, &opts.sqlite_options)?;
        if !copy.record.check_ok && !opts.sqlite_allow_corrupt {
            return Err(Error::InvalidInput(format!(
                "database {} failed its {}: {}; no snapshot was saved (--sqlite-allow-corrupt saves it anyway, marked as failed)",
                db.display(),
                copy.record.check.pragma(),
                copy.record.check_messages.join("; ")
            )));
        }
        let node = archiver.store_database(db, &copy, delta_plans.get(db))?;
        overrides.insert(db.clone(), node);
        records.push(copy.record.clone());
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut s = db.clone().into_os_string();
            s.push(suffix);
            archiver.skip.insert(PathBuf::from(s));
        }
    }
    if let (Some(src), Some(p)) = (&opts.stdin, &stdin_path) {
        let node = archiver.store_stream_source(src)?;
        overrides.insert(p.clone(), node);
    }
    archiver.overrides = overrides;

    let mut root = VirtualDir {
        real_path: PathBuf::from("/"),
        ..Default::default()
    };
    for src in &kept {
        let comps: Vec<_> = src.components().skip(1).collect();
        let mut dir = &mut root;
        let mut cur = PathBuf::from("/");
        for (i, c) in comps.iter().enumerate() {
            let name = c.as_os_str().as_bytes().to_vec();
            cur.push(c);
            if i + 1 == comps.len() {
                dir.children.insert(name, Entry::Source(src.clone()));
            } else {
                let e = dir.children.entry(name).or_insert_with(|| {
                    Entry::Dir(VirtualDir {
                        real_path: cur.clone(),
                        ..Default::default()
                    })
                });
                dir = match e {
                    Entry::Dir(d) => d,
                    Entry::Source(_) => unreachable!("sources inside other sources were removed"),
                };
            }
        }
    }
    let parent_root = match &parent {
        Some((_, s)) => repo.load_tree(&s.tree).ok(),
        None => None,
    };
    let root_id = if kept.iter().any(|k| k == Path::new("/")) {
        // Backing up "/" itself: the root tree is the real root directory.
        let md = std::fs::symlink_metadata("/").at("/")?;
        let node = archiver.archive_dir(
            Path::new("/"),
            node_from_metadata(b"/", &md),
            parent_root.as_ref(),
            md.dev(),
        )?;
        // The snapshot's root is always a tree blob of its own.
        match (node.subtree, node.inline) {
            (Some(id), _) => id,
            (None, Some(tree)) => archiver.save_tree(*tree)?,
            (None, None) => return Err(Error::InvalidInput("could not read /".into())),
        }
    } else {
        archiver.archive_virtual(&root, parent_root.as_ref())?
    };

    archiver.packer.finish()?;
    let errors = std::mem::take(&mut *lock(&archiver.errors));
    let finished = chrono::Utc::now();
    let time = opts.time.unwrap_or_else(|| Local::now().fixed_offset());
    let stats = &archiver.packer.stats;
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    let snapshot = Snapshot {
        time: time.timestamp(),
        time_nsec: time.timestamp_subsec_nanos().min(999_999_999),
        utc_offset: time.offset().local_minus_utc(),
        hostname: host,
        username: username(),
        // SAFETY: getuid/getgid have no preconditions.
        uid: unsafe { libc::getuid() },
        gid: unsafe { libc::getgid() },
        paths,
        tags,
        tree: root_id,
        parent: parent.map(|(id, _)| id),
        summary: Summary {
            files_new: archiver.files_new.load(Ordering::Relaxed),
            files_changed: archiver.files_changed.load(Ordering::Relaxed),
            files_unchanged: archiver.files_unchanged.load(Ordering::Relaxed),
            dirs: archiver.dirs.load(Ordering::Relaxed),
            total_files: archiver.total_files.load(Ordering::Relaxed),
            total_bytes: archiver.total_bytes.load(Ordering::Relaxed),
            bytes_read: archiver.bytes_read.load(Ordering::Relaxed),
            blobs_added: stats.blobs.load(Ordering::Relaxed),
            bytes_added: stats.raw_bytes.load(Ordering::Relaxed),
            bytes_added_stored: stats.stored_bytes.load(Ordering::Relaxed),
            errors: errors.len() as u64,
            started_ns: started.timestamp_nanos_opt().unwrap_or(0),
            finished_ns: finished.timestamp_nanos_opt().unwrap_or(0),
        },
        error_messages: errors.iter().take(100).cloned().collect(),
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        databases: records,
    };
    let snapshot_id = repo.save_snapshot(&snapshot)?;
    Ok(BackupResult {
        snapshot_id,
        snapshot,
        errors,
    })
}

/// Removes `.` components and resolves `..` lexically (the path is absolute).
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

impl Archiver<'_> {
    fn record_error(&self, path: &Path, e: impl std::fmt::Display) {
        self.progress.errors.fetch_add(1, Ordering::Relaxed);
        lock(&self.errors).push(format!("{}: {e}", path.display()));
    }

    /// The listing of the parent snapshot's node for a directory, if any.
    fn parent_listing<'n>(&self, node: Option<&'n Node>) -> Option<Cow<'n, Tree>> {
        // A parent tree that cannot be read only costs speed, never correctness.
        node.filter(|n| n.is_dir())
            .and_then(|n| self.repo.listing(n).ok())
    }

    fn save_tree(&self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode()?;
        Ok(self.packer.save(BlobType::Tree, &bytes)?.0)
    }

    /// Gives `node` its listing: inline when small, else a tree blob.
    fn attach_listing(&self, node: &mut Node, mut tree: Tree) -> Result<()> {
        let bytes = tree.encode()?;
        if bytes.len() <= INLINE_MAX {
            node.inline = Some(Box::new(tree));
        } else {
            node.subtree = Some(self.packer.save(BlobType::Tree, &bytes)?.0);
        }
        Ok(())
    }

    fn archive_virtual(&self, dir: &VirtualDir, parent: Option<&Tree>) -> Result<Id> {
        let nodes: Vec<Result<Option<Node>>> = dir
            .children
            .par_iter()
            .map(|(name, entry)| {
                let pnode = parent.and_then(|t| t.get(name));
                match entry {
                    Entry::Source(path) => self.archive_entry(path, name, pnode, None),
                    Entry::Dir(sub) => {
                        // A parent of a source path may be a symlink (/var/run -> /run):
                        // record the directory it leads to, not the link's 0777 mode.
                        let md = match std::fs::metadata(&sub.real_path) {
                            Ok(md) => md,
                            Err(e) => return Err(Error::io(&sub.real_path, e)),
                        };
                        let ptree = self.parent_listing(pnode);
                        let id = self.archive_virtual(sub, ptree.as_deref())?;
                        let mut node = node_from_metadata(name, &md);
                        node.kind = NodeKind::Dir;
                        node.subtree = Some(id);
                        Ok(Some(node))
                    }
                }
            })
            .collect();
        let mut tree = Tree::default();
        for n in nodes {
            if let Some(n) = n? {
                tree.nodes.push(n);
            }
        }
        self.save_tree(tree)
    }

    /// Archives one entry; `None` if excluded or unreadable (recorded).
    fn archive_entry(
        &self,
        path: &Path,
        name: &[u8],
        parent: Option<&Node>,
        root_dev: Option<u64>,
    ) -> Result<Option<Node>> {
        if let Some(prepared) = self.overrides.get(path) {
            let mut node = prepared.clone();
            node.name = name.to_vec();
            if parent.is_some_and(|p| {
                p.kind == NodeKind::File
                    && p.content == node.content
                    && p.content_depth == node.content_depth
            }) {
                self.files_unchanged.fetch_add(1, Ordering::Relaxed);
            } else if parent.is_some() {
                self.files_changed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.files_new.fetch_add(1, Ordering::Relaxed);
            }
            self.total_files.fetch_add(1, Ordering::Relaxed);
            self.total_bytes.fetch_add(node.size, Ordering::Relaxed);
            self.progress.files.fetch_add(1, Ordering::Relaxed);
            return Ok(Some(node));
        }
        if self.excludes.matches(path) || self.skip.contains(path) {
            return Ok(None);
        }
        let md = match std::fs::symlink_metadata(path) {
            Ok(md) => md,
            Err(e) => {
                self.record_error(path, e);
                return Ok(None);
            }
        };
        if let Some(dev) = root_dev
            && self.one_file_system
            && md.dev() != dev
        {
            return Ok(None);
        }
        let mut node = node_from_metadata(name, &md);
        match node.kind {
            NodeKind::Dir => {
                let ptree = self.parent_listing(parent);
                let node =
                    self.archive_dir(path, node, ptree.as_deref(), root_dev.unwrap_or(md.dev()))?;
                return Ok(Some(node));
            }
            NodeKind::Symlink => match std::fs::read_link(path) {
                Ok(t) => node.link_target = t.as_os_str().as_bytes().to_vec(),
                Err(e) => {
                    self.record_error(path, e);
                    return Ok(None);
                }
            },
            NodeKind::File => {
                let unchanged = !self.force
                    && parent.is_some_and(|p| {
                        p.kind == NodeKind::File
                            && p.size == node.size
                            && p.mtime == node.mtime
                            && p.mtime_nsec == node.mtime_nsec
                            && p.ctime == node.ctime
                            && p.ctime_nsec == node.ctime_nsec
                            && p.inode == node.inode
                            && self.content_known(p)
                    });
                if let (true, Some(p)) = (unchanged, parent) {
                    node.content = p.content.clone();
                    node.content_depth = p.content_depth;
                    node.delta_base = p.delta_base.clone();
                    self.files_unchanged.fetch_add(1, Ordering::Relaxed);
                } else {
                    match self.read_file(path, &mut node) {
                        Ok(()) => {}
                        Err(e) => {
                            self.record_error(path, e);
                            return Ok(None);
                        }
                    }
                    if parent.is_some_and(|p| {
                        p.kind == NodeKind::File
                            && p.content == node.content
                            && p.content_depth == node.content_depth
                    }) {
                        // Re-read (e.g. --force or a touched mtime) but identical.
                        self.files_unchanged.fetch_add(1, Ordering::Relaxed);
                    } else if parent.is_some() {
                        self.files_changed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.files_new.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.total_files.fetch_add(1, Ordering::Relaxed);
                self.total_bytes.fetch_add(node.size, Ordering::Relaxed);
                self.progress.files.fetch_add(1, Ordering::Relaxed);
                if unchanged {
                    self.progress.bytes.fetch_add(node.size, Ordering::Relaxed);
                }
            }
            _ => {}
        }
        Ok(Some(node))
    }

    fn archive_dir(
        &self,
        path: &Path,
        mut node: Node,
        parent: Option<&Tree>,
        dev: u64,
    ) -> Result<Node> {
        let mut names: Vec<Vec<u8>> = Vec::new();
        match std::fs::read_dir(path) {
            Ok(rd) => {
                for e in rd {
                    match e {
                        Ok(e) => names.push(e.file_name().as_bytes().to_vec()),
                        Err(e) => self.record_error(path, e),
                    }
                }
            }
            Err(e) => self.record_error(path, e),
        }
        names.sort();
        let results: Vec<Result<Option<Node>>> = names
            .par_iter()
            .map(|name| {
                let child = path.join(std::ffi::OsStr::from_bytes(name));
                self.archive_entry(&child, name, parent.and_then(|t| t.get(name)), Some(dev))
            })
            .collect();
        let mut tree = Tree::default();
        for r in results {
            if let Some(n) = r? {
                tree.nodes.push(n);
            }
        }
        self.attach_listing(&mut node, tree)?;
        self.dirs.fetch_add(1, Ordering::Relaxed);
        self.progress.dirs.fetch_add(1, Ordering::Relaxed);
        Ok(node)
    }

    /// Whether every blob a parent's file node references is stored (so the
    /// node can be reused without reading the file).
    fn content_known(&self, p: &Node) -> bool {
        self.blobs_known(&p.content, p.content_depth)
            && p.delta_base
                .as_ref()
                .is_none_or(|b| self.blobs_known(&b.content, b.depth))
    }

    /// Whether every blob of a content (lists and data blobs) is stored.
    fn blobs_known(&self, content: &[Id], depth: u8) -> bool {
        if depth == 0 {
            return content.iter().all(|id| self.packer.known(id));
        }
        let mut lists_known = true;
        match crate::content::expand_with(self.repo, content, depth, &mut |id| {
            lists_known &= self.packer.known(id)
        }) {
            Ok(ids) => lists_known && ids.iter().all(|id| self.packer.known(id)),
            Err(_) => false,
        }
    }

    /// Stores content-list blobs for `ids` if there are many; returns the
    /// node's `(content, content_depth)`.
    fn content_list(&self, ids: Vec<Id>) -> Result<(Vec<Id>, u8)> {
        crate::content::build(ids, &|b| Ok(self.packer.save(BlobType::Tree, b)?.0))
    }

    /// Reads, chunks and stores a file's content; sets `content` and `size`.
    fn read_file(&self, path: &Path, node: &mut Node) -> Result<()> {
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
            .at(path)?;
        let md = file.metadata().at(path)?;
        if !md.is_file() {
            return Err(Error::InvalidInput(format!(
                "{}: changed type during backup",
                path.display()
            )));
        }
        let cut = self.cut(sqlite_page_size(&file, &md));
        let (ids, size) = self.store_stream(&mut file, Some(md.len()), &cut, path, None)?;
        (node.content, node.content_depth) = self.content_list(ids)?;
        node.size = size;
        Ok(())
    }

    /// Stores the consistent copy of the database `src` as a file node
    /// with `src`'s metadata, cut at page boundaries, as deltas against the
    /// base version in `delta` if given.
    fn store_database(
        &self,
        src: &Path,
        copy: &crate::sqlite::DatabaseCopy,
        delta: Option<&crate::delta::DeltaPlan>,
    ) -> Result<Node> {
        let md = std::fs::metadata(src).at(src)?;
        let mut node = node_from_metadata(b"db", &md);
        node.kind = NodeKind::File;
        let mut file = File::open(&copy.path).at(&copy.path)?;
        let len = file.metadata().at(&copy.path)?.len();
        let cut = self.cut(Some(copy.record.page_size));
        let (ids, size) = self.store_stream(&mut file, Some(len), &cut, src, delta)?;
        (node.content, node.content_depth) = self.content_list(ids)?;
        node.delta_base = delta.and_then(|d| d.recorded_base());
        node.size = size;
        Ok(node)
    }

    /// Stores standard input or a command's output as a file node.
    fn store_stream_source(&self, src: &StdinSource) -> Result<Node> {
        let mut node = Node::new(src.filename.as_bytes().to_vec(), NodeKind::File);
        node.mode = 0o644;
        // SAFETY: getuid/getgid have no preconditions.
        node.uid = unsafe { libc::getuid() };
        node.gid = unsafe { libc::getgid() };
        let now = chrono::Utc::now();
        node.mtime = now.timestamp();
        node.mtime_nsec = now.timestamp_subsec_nanos().min(999_999_999);
        node.links = 1;
        let what = PathBuf::from("/").join(&src.filename);
        let cut = Cut::Cdc(&self.repo.chunker);
        let (ids, size) = match &src.command {
            None => {
                let stdin = std::io::stdin();
                let mut lock = stdin.lock();
                self.store_stream(&mut lock, None, &cut, Path::new("standard input"), None)?
            }
            Some(cmd) => run_command(cmd, |out| self.store_stream(out, None, &cut, &what, None))?,
        };
        (node.content, node.content_depth) = self.content_list(ids)?;
        node.size = size;
        Ok(node)
    }

    /// Reads `reader` to its end, cutting with `cut` and storing each chunk
    /// (as a delta against the base's chunk at the same position if `delta`
    /// is given and that is smaller); returns the data blob ids and the
    /// length. Memory stays bounded by a window of a few maximum-size chunks
    /// per worker, whatever the length.
    fn store_stream(
        &self,
        reader: &mut dyn Read,
        expected: Option<u64>,
        cut: &Cut<'_>,
        path: &Path,
        delta: Option<&crate::delta::DeltaPlan>,
    ) -> Result<(Vec<Id>, u64)> {
        let max = cut.max();
        // Keep several chunks of a large file in flight so one big file uses
        // every core; but only for as many large files at a time as there
        // are cores (more threads than cores read concurrently, and nested
        // parallel work may start further files): memory stays bounded.
        let large = expected.is_none_or(|e| e > max as u64);
        let wide = large.then(WideWindow::try_acquire).flatten();
        let window = if wide.is_some() {
            (max * 2).max(4 << 20)
        } else {
            max.max(4 << 20)
        };
        let initial = expected.map_or(window, |e| (e as usize).min(window) + 1);
        let mut buf: Vec<u8> = Vec::with_capacity(initial);
        let mut content = Vec::new();
        let mut size = 0u64;
        let mut eof = false;
        let expected = expected.unwrap_or(u64::MAX);
        let mut read_total = 0u64;
        while !eof || !buf.is_empty() {
            while !eof && buf.len() < window {
                let start = buf.len();
                // Size reads by what the file should still hold (plus one byte,
                // to see EOF or growth) so small files cost small buffers; a
                // file that grows is read in 64 KiB steps.
                let left = expected.saturating_sub(read_total).min(window as u64) as usize;
                let step = if left == 0 { 64 * 1024 } else { left + 1 };
                let want = (window - start).min(step);
                buf.resize(start + want, 0);
                let n = read_retry(reader, &mut buf[start..]).at(path)?;
                buf.truncate(start + n);
                read_total += n as u64;
                if n == 0 {
                    eof = true;
                }
            }
            // Cut as many whole chunks as the window allows.
            let mut cuts = Vec::new();
            let mut pos = 0;
            while pos < buf.len() && (eof || buf.len() - pos >= max) {
                let n = cut.next(&buf[pos..]);
                cuts.push((pos, n));
                pos += n;
            }
            let first = content.len();
            let ids: Vec<Result<Id>> = cuts
                .par_iter()
                .enumerate()
                .map(|(j, &(off, n))| {
                    let chunk = &buf[off..off + n];
                    let id = self.repo.key.blob_id(chunk);
                    if let Some(plan) = delta
                        && let Some(did) = self.save_as_delta(plan, first + j, &id, chunk)?
                    {
                        return Ok(did);
                    }
                    self.packer.save_with_id(BlobType::Data, id, chunk)?;
                    Ok(id)
                })
                .collect();
            for id in ids {
                content.push(id?);
            }
            size += pos as u64;
            self.bytes_read.fetch_add(pos as u64, Ordering::Relaxed);
            self.progress.bytes.fetch_add(pos as u64, Ordering::Relaxed);
            buf.drain(..pos);
        }
        Ok((content, size))
    }
}

impl Archiver<'_> {
    /// How to cut a file: at its pages if it is a database of `page_size`
    /// and the repository says how databases are chunked, else by content.
    fn cut(&self, page_size: Option<u32>) -> Cut<'_> {
        match (self.repo.config.database_chunking, page_size) {
            (Some(chunking), Some(page_size)) => Cut::Pages {
                chunking,
                page_size: page_size as usize,
                key: &self.repo.key.chunker,
            },
            _ => Cut::Cdc(&self.repo.chunker),
        }
    }

    /// Stores the chunk at position `pos` (content id `id`) as a delta
    /// against the base's chunk at that position, and returns the delta id;
    /// `None` means "store it as an ordinary blob": it equals its base chunk
    /// or is stored already, the base is shorter or unreadable, or the delta
    /// would not be smaller.
    fn save_as_delta(
        &self,
        plan: &crate::delta::DeltaPlan,
        pos: usize,
        id: &Id,
        chunk: &[u8],
    ) -> Result<Option<Id>> {
        let Some(base_id) = plan.base_at(pos) else {
            return Ok(None);
        };
        if base_id == id || self.packer.known(id) {
            return Ok(None);
        }
        let did = self.repo.key.delta_blob_id(base_id, chunk);
        if !self.packer.known(&did) {
            let Ok(base) = self.repo.read_base(base_id) else {
                return Ok(None);
            };
            if !self.packer.save_delta(did, base_id, &base, chunk)? {
                return Ok(None);
            }
        }
        plan.note_delta();
        Ok(Some(did))
    }
}

/// Database files found among ordinary files (not given with `--sqlite`)
/// are cut at page boundaries like `--sqlite` copies when at least this big:
/// SQLite rewrites pages in place, and content-defined chunks around a
/// changed page store megabytes again. Smaller files are one or two
/// content-defined chunks anyway.
pub const PAGE_CUT_MIN_FILE: u64 = 1 << 20;

/// The page size of a regular file that starts like a SQLite database and is
/// at least [`PAGE_CUT_MIN_FILE`] long.
fn sqlite_page_size(file: &File, md: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::FileExt;
    if md.len() < PAGE_CUT_MIN_FILE {
        return None;
    }
    let mut header = [0u8; 100];
    file.read_exact_at(&mut header, 0).ok()?;
    crate::sqlite::header_page_size(&header)
}

/// How a stream is cut into chunks.
enum Cut<'a> {
    /// Content-defined chunking (ordinary files, streams).
    Cdc(&'a Chunker),
    /// Database pages.
    Pages {
        chunking: DatabaseChunking,
        page_size: usize,
        key: &'a [u8; 32],
    },
}

impl Cut<'_> {
    /// Largest chunk.
    fn max(&self) -> usize {
        match self {
            Cut::Cdc(c) => c.params().max_size as usize,
            Cut::Pages {
                chunking,
                page_size,
                ..
            } => chunking.max_pages() as usize * page_size.max(&1),
        }
    }

    /// Length of the next chunk at the start of `data`.
    fn next(&self, data: &[u8]) -> usize {
        match self {
            Cut::Cdc(c) => c.next_cut(data),
            Cut::Pages {
                chunking,
                page_size,
                key,
            } => chunking.next_cut(data, *page_size, key),
        }
    }
}

/// A permit for a file read with a wide window (several chunks in flight);
/// at most one per core exist at a time.
struct WideWindow;

static WIDE_WINDOWS: AtomicUsize = AtomicUsize::new(0);

impl WideWindow {
    fn try_acquire() -> Option<WideWindow> {
        static CORES: OnceLock<usize> = OnceLock::new();
        let limit =
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        WIDE_WINDOWS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| WideWindow)
    }
}

impl Drop for WideWindow {
    fn drop(&mut self) {
        WIDE_WINDOWS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs `cmd` with its standard output piped to `consume`. Its standard
/// error passes through to ours, and its last lines are kept for the error
/// if it fails. A command that exits non-zero is an error, whatever
/// `consume` returned.
fn run_command<T>(cmd: &[OsString], consume: impl FnOnce(&mut dyn Read) -> Result<T>) -> Result<T> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let shown = cmd
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut child = Command::new(&cmd[0])
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::InvalidInput(format!("cannot run {shown:?}: {e}")))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let tail = std::thread::spawn(move || {
        const KEEP: usize = 4096;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * KEEP {
                        tail.drain(..tail.len() - KEEP);
                    }
                }
            }
        }
        let start = tail.len().saturating_sub(KEEP);
        String::from_utf8_lossy(&tail[start..]).into_owned()
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let result = consume(&mut stdout);
    if result.is_err() {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child.wait().map_err(|e| Error::io(&cmd[0], e))?;
    let tail = tail.join().unwrap_or_default();
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let desc = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => status.to_string(),
        };
        let lines: Vec<&str> = tail.lines().collect();
        let stderr_tail = lines[lines.len().saturating_sub(10)..].join("\n");
        return Err(Error::CommandFailed {
            command: shown,
            status: desc,
            code: status.code(),
            stderr_tail,
        });
    }
    result
}

fn read_retry(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
