//! The walk: turn source entries into nodes, file contents into blobs,
//! directories into trees.
//!
//! Directories are processed in parallel (rayon), files within a directory
//! in parallel, and chunks of a large file in parallel batches, so every
//! core hashes, compresses and encrypts while the packer's writer thread
//! stores packs. A file whose size, mtime, ctime and inode equal its node in
//! the parent snapshot is not read: its chunk list is reused (`force`
//! disables this). An unchanged directory then encodes to the same tree
//! blob and costs nothing. Unreadable entries are recorded as
//! [`SourceError`]s and skipped.

use super::PageDir;
use super::delta::DeltaPlan;
use super::{SourceError, StdinSource};
use crate::commands::progress::{Counters, Progress};
use crate::error::{Error, IoContext, Result};
use crate::format::blob::BlobType;
use crate::format::chunker::{Chunker, DatabaseChunking};
use crate::format::id::Id;
use crate::format::tree::{INLINE_MAX, Node, NodeKind, Tree};
use crate::repository::packer::Packer;
use crate::repository::{BackupIndex, Repository};
use crate::sources::stream::{read_retry, run_command};
use crate::sources::walk::{PatternSet, node_from_metadata};
use crate::sys::lock;
use rayon::prelude::*;
use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

/// One backup's walk over its sources.
pub(super) struct Archiver<'a> {
    repo: &'a Repository<BackupIndex>,
    /// Nodes prepared before the walk (databases, the stdin file), by path.
    pub overrides: HashMap<PathBuf, Node>,
    /// Paths never stored: journal and WAL files of the databases.
    pub skip: HashSet<PathBuf>,
    /// Folders whose files are cut at page boundaries when their length
    /// is a multiple of the page size (PostgreSQL relation files).
    pub page_dirs: Vec<PageDir>,
    /// Page-cut files stored as deltas against their parent version, by path.
    pub file_deltas: HashMap<PathBuf, DeltaPlan>,
    pub packer: Packer<'a>,
    excludes: PatternSet,
    one_file_system: bool,
    force: bool,
    counters: &'a Counters,
    progress: &'a dyn Progress,
    errors: Mutex<Vec<SourceError>>,
    warnings: Mutex<Vec<SourceError>>,
    pub counts: WalkCounts,
}

/// What the walk counted (the snapshot's summary).
#[derive(Default)]
pub(super) struct WalkCounts {
    pub files_new: AtomicU64,
    pub files_changed: AtomicU64,
    pub files_unchanged: AtomicU64,
    pub dirs: AtomicU64,
    pub total_files: AtomicU64,
    pub total_bytes: AtomicU64,
    pub bytes_read: AtomicU64,
}

/// A directory of the root tree that leads to source paths.
#[derive(Default)]
pub(super) struct VirtualDir {
    pub real_path: PathBuf,
    /// A folder on the way to a source stored under another path: it need
    /// not exist here (it is recorded like `/`).
    pub synthetic: bool,
    pub children: BTreeMap<Vec<u8>, Entry>,
}

/// An entry of a [`VirtualDir`].
pub(super) enum Entry {
    /// A source path, walked for real.
    Source(PathBuf),
    /// A directory on the way to source paths.
    Dir(VirtualDir),
}

impl<'a> Archiver<'a> {
    /// An archiver storing into `repo`.
    pub fn new(
        repo: &'a Repository<BackupIndex>,
        excludes: PatternSet,
        one_file_system: bool,
        force: bool,
        counters: &'a Counters,
        progress: &'a dyn Progress,
    ) -> Archiver<'a> {
        Archiver {
            repo,
            overrides: HashMap::new(),
            skip: HashSet::new(),
            page_dirs: Vec::new(),
            file_deltas: HashMap::new(),
            packer: Packer::new(repo),
            excludes,
            one_file_system,
            force,
            counters,
            progress,
            errors: Mutex::new(Vec::new()),
            warnings: Mutex::new(Vec::new()),
            counts: WalkCounts::default(),
        }
    }

    /// The unreadable entries met so far (taken out).
    pub fn take_errors(&self) -> Vec<SourceError> {
        std::mem::take(&mut *lock(&self.errors))
    }

    /// Entries stored with a caveat (taken out).
    pub fn take_warnings(&self) -> Vec<SourceError> {
        std::mem::take(&mut *lock(&self.warnings))
    }
}

impl Archiver<'_> {
    fn record_warning(&self, path: &Path, message: String) {
        lock(&self.warnings).push(SourceError {
            path: path.to_path_buf(),
            message,
        });
    }

    fn record_error(&self, path: &Path, e: impl std::fmt::Display) {
        self.counters.add_error();
        lock(&self.errors).push(SourceError {
            path: path.to_path_buf(),
            message: e.to_string(),
        });
    }

    /// The listing of the parent snapshot's node for a directory, if any.
    fn parent_listing<'n>(&self, node: Option<&'n Node>) -> Option<Cow<'n, Tree>> {
        // A parent tree that cannot be read only costs speed, never correctness.
        node.filter(|n| n.is_dir())
            .and_then(|n| self.repo.listing(n).ok())
    }

    pub fn save_tree(&self, mut tree: Tree) -> Result<Id> {
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

    pub fn archive_virtual(&self, dir: &VirtualDir, parent: Option<&Tree>) -> Result<Id> {
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
                            Err(_) if sub.synthetic => std::fs::metadata("/").at("/")?,
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
        crate::commands::progress::check_cancelled(self.progress)?;
        if let Some(prepared) = self.overrides.get(path) {
            let mut node = prepared.clone();
            node.name = name.to_vec();
            if parent.is_some_and(|p| {
                p.kind == NodeKind::File
                    && p.content == node.content
                    && p.content_depth == node.content_depth
            }) {
                self.counts.files_unchanged.fetch_add(1, Ordering::Relaxed);
            } else if parent.is_some() {
                self.counts.files_changed.fetch_add(1, Ordering::Relaxed);
            } else {
                self.counts.files_new.fetch_add(1, Ordering::Relaxed);
            }
            self.counts.total_files.fetch_add(1, Ordering::Relaxed);
            self.counts
                .total_bytes
                .fetch_add(node.size, Ordering::Relaxed);
            self.counters.add_done(1, 0);
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
                    self.counts.files_unchanged.fetch_add(1, Ordering::Relaxed);
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
                        self.counts.files_unchanged.fetch_add(1, Ordering::Relaxed);
                    } else if parent.is_some() {
                        self.counts.files_changed.fetch_add(1, Ordering::Relaxed);
                    } else {
                        self.counts.files_new.fetch_add(1, Ordering::Relaxed);
                    }
                }
                self.counts.total_files.fetch_add(1, Ordering::Relaxed);
                self.counts
                    .total_bytes
                    .fetch_add(node.size, Ordering::Relaxed);
                self.counters.add_done(1, 0);
                if unchanged {
                    self.counters.add_done(0, node.size);
                }
            }
            _ => {}
        }
        Ok(Some(node))
    }

    pub fn archive_dir(
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
        self.counts.dirs.fetch_add(1, Ordering::Relaxed);
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
        let all = std::cell::Cell::new(true);
        let mut seen = HashSet::new();
        let walked = self.repo.visit_content(
            content,
            depth,
            &mut |list| {
                all.set(all.get() && self.packer.known(list));
                all.get() && seen.insert(*list)
            },
            &mut |id| all.set(all.get() && self.packer.known(id)),
            &mut |_, e| Err(e),
        );
        walked.is_ok() && all.get()
    }

    /// Stores content-list blobs for `ids` if there are many; returns the
    /// node's `(content, content_depth)`.
    fn content_list(&self, ids: Vec<Id>) -> Result<(Vec<Id>, u8)> {
        crate::format::content::build(ids, &|b| Ok(self.packer.save(BlobType::Tree, b)?.0))
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
        let mut header = [0u8; 100];
        let header = match std::os::unix::fs::FileExt::read_at(&file, &mut header, 0) {
            Ok(n) => &header[..n],
            Err(_) => &[][..],
        };
        let is_sqlite = header.starts_with(crate::sources::sqlite::HEADER_MAGIC);
        if is_sqlite && let Some(beside) = live_database_files(path) {
            self.record_warning(
                path,
                format!(
                    "a live SQLite database ({beside} beside it) stored as it is on disk, which may be torn; back it up with --sqlite {}",
                    path.display()
                ),
            );
        }
        let page_size = (md.len() >= PAGE_CUT_MIN_FILE)
            .then(|| crate::sources::sqlite::header_page_size(header))
            .flatten();
        let page_dir = self.page_dirs.iter().find(|p| {
            path.starts_with(&p.dir) && md.len() > 0 && md.len() % u64::from(p.page_size) == 0
        });
        let cut = match (page_size, page_dir) {
            (None, Some(p)) => Cut::Pages {
                chunking: DatabaseChunking::FixedPages {
                    pages: p.pages_per_chunk,
                },
                page_size: p.page_size as usize,
                key: &self.repo.key().chunker,
            },
            _ => self.cut(page_size),
        };
        let delta = match cut {
            Cut::Pages { .. } => self.file_deltas.get(path),
            Cut::Cdc(_) => None,
        };
        let (ids, size) = self.store_stream(&mut file, Some(md.len()), &cut, path, delta)?;
        (node.content, node.content_depth) = self.content_list(ids)?;
        node.delta_base = delta.and_then(|d| d.recorded_base());
        node.size = size;
        Ok(())
    }

    /// Stores the consistent copy of the database `src` as a file node
    /// with `src`'s metadata, cut at page boundaries, as deltas against the
    /// base version in `delta` if given.
    pub fn store_database(
        &self,
        src: &Path,
        copy: &crate::sources::sqlite::DatabaseCopy,
        delta: Option<&DeltaPlan>,
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
    pub fn store_stream_source(&self, src: &StdinSource) -> Result<Node> {
        let mut node = Node::new(src.filename.as_bytes().to_vec(), NodeKind::File);
        node.mode = 0o644;
        node.uid = crate::sys::uid();
        node.gid = crate::sys::gid();
        let now = chrono::Utc::now();
        node.mtime = now.timestamp();
        node.mtime_nsec = now.timestamp_subsec_nanos().min(999_999_999);
        node.links = 1;
        let what = PathBuf::from("/").join(&src.filename);
        let cut = Cut::Cdc(self.repo.chunker());
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
        delta: Option<&DeltaPlan>,
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
                    let id = self.repo.key().blob_id(chunk);
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
            self.counts
                .bytes_read
                .fetch_add(pos as u64, Ordering::Relaxed);
            self.counters.add_done(0, pos as u64);
            buf.drain(..pos);
        }
        Ok((content, size))
    }
}

impl Archiver<'_> {
    /// How to cut a file: at its pages if it is a database of `page_size`
    /// and the repository says how databases are chunked, else by content.
    fn cut(&self, page_size: Option<u32>) -> Cut<'_> {
        match (self.repo.config().database_chunking, page_size) {
            (Some(chunking), Some(page_size)) => Cut::Pages {
                chunking,
                page_size: page_size as usize,
                key: &self.repo.key().chunker,
            },
            _ => Cut::Cdc(self.repo.chunker()),
        }
    }

    /// Stores the chunk at position `pos` (content id `id`) as a delta
    /// against the base's chunk at that position, and returns the delta id;
    /// `None` means "store it as an ordinary blob": it equals its base chunk
    /// or is stored already, the base is shorter or unreadable, or the delta
    /// would not be smaller.
    fn save_as_delta(
        &self,
        plan: &DeltaPlan,
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
        let did = self.repo.key().delta_blob_id(base_id, chunk);
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

/// The journal or WAL file beside a database at `path` that shows it is in
/// use ("app.db-wal"), if there is a non-empty one.
fn live_database_files(path: &Path) -> Option<String> {
    ["-wal", "-journal"].into_iter().find_map(|suffix| {
        let mut p = path.as_os_str().to_os_string();
        p.push(suffix);
        let p = PathBuf::from(p);
        let md = std::fs::symlink_metadata(&p).ok()?;
        (md.is_file() && md.len() > 0).then(|| {
            p.file_name()
                .map_or_else(String::new, |n| n.to_string_lossy().into_owned())
        })
    })
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
