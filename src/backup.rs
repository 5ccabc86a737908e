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

use crate::blob::BlobType;
use crate::error::{Error, IoContext, Result};
use crate::id::Id;
use crate::packer::{Packer, lock};
use crate::repo::{Repository, hostname, username};
use crate::snapshot::{Snapshot, SnapshotFilter, Summary};
use crate::tree::{Node, NodeKind, Tree};
use crate::walk::{PatternSet, node_from_metadata};
use chrono::{DateTime, FixedOffset, Local};
use rayon::prelude::*;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    if opts.paths.is_empty() {
        return Err(Error::InvalidInput("no source paths given".into()));
    }
    let mut sources = Vec::new();
    for p in &opts.paths {
        let abs = std::path::absolute(p).at(p)?;
        let abs = normalize(&abs);
        std::fs::symlink_metadata(&abs).at(&abs)?;
        sources.push(abs);
    }
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

    let repo: &Repository = repo;
    let archiver = Archiver {
        repo,
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
        Some((_, s)) => archiver.load_parent_tree(Some(&s.tree)),
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
        node.subtree
            .ok_or_else(|| Error::InvalidInput("could not read /".into()))?
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

    fn load_parent_tree(&self, id: Option<&Id>) -> Option<Tree> {
        // A parent tree that cannot be read only costs speed, never correctness.
        id.and_then(|id| self.repo.load_tree(id).ok())
    }

    fn save_tree(&self, mut tree: Tree) -> Result<Id> {
        let bytes = tree.encode()?;
        Ok(self.packer.save(BlobType::Tree, &bytes)?.0)
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
                        let ptree = self.load_parent_tree(pnode.and_then(|n| n.subtree.as_ref()));
                        let id = self.archive_virtual(sub, ptree.as_ref())?;
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
        if self.excludes.matches(path) {
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
                let ptree = self.load_parent_tree(
                    parent
                        .filter(|p| p.kind == NodeKind::Dir)
                        .and_then(|p| p.subtree.as_ref()),
                );
                let node =
                    self.archive_dir(path, node, ptree.as_ref(), root_dev.unwrap_or(md.dev()))?;
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
                            && p.content.iter().all(|id| self.packer.known(id))
                    });
                if let (true, Some(p)) = (unchanged, parent) {
                    node.content = p.content.clone();
                    self.files_unchanged.fetch_add(1, Ordering::Relaxed);
                } else {
                    match self.read_file(path, &mut node) {
                        Ok(()) => {}
                        Err(e) => {
                            self.record_error(path, e);
                            return Ok(None);
                        }
                    }
                    if parent.is_some_and(|p| p.kind == NodeKind::File && p.content == node.content)
                    {
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
        node.subtree = Some(self.save_tree(tree)?);
        self.dirs.fetch_add(1, Ordering::Relaxed);
        self.progress.dirs.fetch_add(1, Ordering::Relaxed);
        Ok(node)
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
        let max = self.repo.chunker.params().max_size as usize;
        // Keep several chunks in flight so large files use every core.
        // Bounded: a few maximum-size chunks per worker thread at most.
        let window = (max * rayon::current_num_threads().clamp(2, 4)).max(4 << 20);
        let mut buf: Vec<u8> = Vec::with_capacity((md.len() as usize).min(window) + 1);
        let mut content = Vec::new();
        let mut size = 0u64;
        let mut eof = false;
        let expected = md.len();
        let mut read_total = 0u64;
        while !eof || !buf.is_empty() {
            while !eof && buf.len() < window {
                let start = buf.len();
                // Size reads by what the file should still hold (plus a little,
                // to see EOF or growth) so small files cost small buffers.
                let left = expected.saturating_sub(read_total) as usize;
                let want = (window - start).min(left.max(64 * 1024) + 1);
                buf.resize(start + want, 0);
                let n = read_retry(&mut file, &mut buf[start..]).at(path)?;
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
                let n = self.repo.chunker.next_cut(&buf[pos..]);
                cuts.push((pos, n));
                pos += n;
            }
            let ids: Vec<Result<Id>> = cuts
                .par_iter()
                .map(|&(off, n)| {
                    let chunk = &buf[off..off + n];
                    let id = self.repo.key.blob_id(chunk);
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
        node.content = content;
        node.size = size;
        Ok(())
    }
}

fn read_retry(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
