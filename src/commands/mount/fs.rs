//! The file system the kernel talks to: FUSE requests answered from the
//! inode table, the snapshot views and the repository.
//!
//! Every request is answered from what is at hand or read on the spot;
//! nothing is read ahead except file data for sequential readers. Entries of
//! snapshot trees never change, so the kernel may cache their names,
//! attributes, directory listings and file pages for long; the virtual
//! directories above them change as snapshots are added and are cached for
//! a second only. Errors reading the repository become `EIO` for the
//! caller and one message (once per distinct message) to the shell.

use super::inodes::{Inode, ROOT, Table, VirtualDir, What};
use super::names::{LATEST, Views};
use super::reader::{BlobCache, FileMap, Prefetcher};
use super::{MountEvents, MountOptions};
use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, NodeKind, Tree};
use crate::repository::{FullIndex, NoIndex, Repository, SnapshotFilter};
use fuser::{
    Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo, InitFlags,
    KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData, ReplyDirectory,
    ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, Request,
};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// How long the kernel may cache entries of snapshot trees (they never
/// change while they exist).
const TREE_TTL: Duration = Duration::from_secs(3600);
/// How long it may cache the virtual directories' entries.
const VIRTUAL_TTL: Duration = Duration::from_secs(1);
/// A read this close to where the previous read of the same open file
/// ended counts as sequential (the kernel's read-ahead sends several reads
/// at once, and threads may answer them out of order).
const SEQUENTIAL_WINDOW: u64 = 4 << 20;
/// Most messages remembered to say each once.
const MAX_REPORTED: usize = 1000;

/// What the snapshot list looked like when last read.
struct Known {
    at: Instant,
    /// Every readable snapshot (unfiltered).
    snapshots: HashMap<Id, Arc<Snapshot>>,
    /// Snapshot files that are damaged (not read again).
    broken: HashSet<Id>,
    /// When the index was last reloaded because a blob was missing.
    index_reloaded: Option<Instant>,
}

/// An open file or directory.
enum Handle {
    File {
        map: Arc<FileMap>,
        /// Where the previous read ended (`u64::MAX` before the first).
        next: AtomicU64,
        /// Blobs before this position were queued for read-ahead.
        ahead: AtomicUsize,
    },
    /// A virtual directory's entries when it was opened.
    Virtual(Vec<(Vec<u8>, Arc<Inode>)>),
    /// A snapshot directory's listing.
    Tree(Arc<Tree>),
}

/// Everything the file system shares between its threads.
pub struct Shared {
    base: Repository<NoIndex>,
    repo: RwLock<Arc<Repository<FullIndex>>>,
    filter: SnapshotFilter,
    views: RwLock<Arc<Views>>,
    known: Mutex<Known>,
    refresh_interval: Duration,
    table: Mutex<Table>,
    handles: Mutex<HashMap<u64, Arc<Handle>>>,
    next_handle: AtomicU64,
    cache: Arc<BlobCache>,
    prefetch: Prefetcher,
    prefetch_bytes: u64,
    events: Arc<dyn MountEvents>,
    reported: Mutex<HashSet<String>>,
    uid: u32,
    gid: u32,
    started: SystemTime,
    /// Where it is mounted (for messages).
    mountpoint: std::path::PathBuf,
}

impl Shared {
    /// Loads the snapshot list and sets everything up.
    pub fn new(
        base: Repository<NoIndex>,
        repo: Repository<FullIndex>,
        opts: &MountOptions,
        events: Arc<dyn MountEvents>,
    ) -> Result<Shared> {
        let snapshots: HashMap<Id, Arc<Snapshot>> = base
            .load_snapshots()?
            .into_iter()
            .map(|(id, s)| (id, Arc::new(s)))
            .collect();
        let cache = Arc::new(BlobCache::new(opts.cache_bytes));
        let shared = Shared {
            base,
            repo: RwLock::new(Arc::new(repo)),
            filter: opts.filter.clone(),
            views: RwLock::new(Arc::new(Views::default())),
            known: Mutex::new(Known {
                at: Instant::now(),
                snapshots,
                broken: HashSet::new(),
                index_reloaded: None,
            }),
            refresh_interval: opts.refresh_interval,
            table: Mutex::new(Table::new()),
            handles: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            prefetch: Prefetcher::start(opts.prefetch_threads.max(1), cache.clone()),
            cache,
            prefetch_bytes: opts.prefetch_bytes,
            events,
            reported: Mutex::new(HashSet::new()),
            uid: crate::sys::uid(),
            gid: crate::sys::gid(),
            started: SystemTime::now(),
            mountpoint: opts.mountpoint.clone(),
        };
        let known = crate::sys::lock(&shared.known);
        shared.show(&known.snapshots);
        drop(known);
        Ok(shared)
    }

    /// How many snapshots the mount shows.
    pub fn snapshot_count(&self) -> usize {
        self.views().snapshots.len()
    }

    /// Blobs fetched from the repository so far.
    pub fn blobs_fetched(&self) -> u64 {
        self.cache.fetched()
    }

    /// Stops the read-ahead threads.
    pub fn shutdown(&self) {
        self.prefetch.stop();
    }

    fn views(&self) -> Arc<Views> {
        self.views.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    fn repo(&self) -> Arc<Repository<FullIndex>> {
        self.repo.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Rebuilds the views from `snapshots` (those passing the filter).
    fn show(&self, snapshots: &HashMap<Id, Arc<Snapshot>>) {
        let mut list: Vec<(Id, Arc<Snapshot>)> = snapshots
            .iter()
            .filter(|(_, s)| self.filter.matches(s))
            .map(|(id, s)| (*id, s.clone()))
            .collect();
        list.sort_by_key(|(id, s)| (s.time, s.time_nsec, *id));
        let mut views = (*self.views()).clone();
        views.update(list);
        *self.views.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(views);
    }

    /// Tells the shell about a problem, once per distinct message.
    fn problem(&self, msg: String) {
        let mut seen = crate::sys::lock(&self.reported);
        if seen.len() >= MAX_REPORTED || !seen.insert(msg.clone()) {
            return;
        }
        drop(seen);
        self.events.problem(&msg);
    }

    /// Reads the snapshot list again if it is older than the refresh
    /// interval: new snapshots appear, removed ones go; the index is
    /// reloaded when a new snapshot's tree is not in it.
    fn refresh(&self) {
        let mut known = crate::sys::lock(&self.known);
        if known.at.elapsed() < self.refresh_interval {
            return;
        }
        known.at = Instant::now();
        let ids = match self.base.snapshot_ids() {
            Ok(ids) => ids,
            Err(e) => {
                self.problem(format!("reading the snapshot list: {e}"));
                return;
            }
        };
        let present: HashSet<Id> = ids.iter().copied().collect();
        let before = known.snapshots.len();
        known.snapshots.retain(|id, _| present.contains(id));
        let removed = known.snapshots.len() != before;
        let mut added = Vec::new();
        for id in ids {
            if known.snapshots.contains_key(&id) || known.broken.contains(&id) {
                continue;
            }
            match self.base.load_snapshot(&id) {
                Ok(s) => added.push((id, Arc::new(s))),
                Err(e) if e.is_not_found() => {}
                // Damaged: not read again. Anything else (the storage did
                // not answer) is tried again at the next refresh.
                Err(e @ Error::Corrupt { .. }) => {
                    known.broken.insert(id);
                    self.problem(format!("{e}; this snapshot is not shown"));
                }
                Err(e) => self.problem(format!("reading snapshot {}: {e}", id.short())),
            }
        }
        if !removed && added.is_empty() {
            return;
        }
        let repo = self.repo();
        if added.iter().any(|(_, s)| !repo.has_blob(&s.tree)) {
            self.reload_index();
        }
        known.snapshots.extend(added);
        self.show(&known.snapshots);
    }

    fn reload_index(&self) {
        match self.base.with_full_index() {
            Ok(r) => *self.repo.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(r),
            Err(e) => self.problem(format!("reloading the index: {e}")),
        }
    }

    /// Runs `op` on the repository; if it fails because a blob is not in
    /// the index (a snapshot newer than the index, written by a backup
    /// that ran meanwhile), reloads the index once and tries again.
    fn with_repo<T>(&self, op: impl Fn(&Repository<FullIndex>) -> Result<T>) -> Result<T> {
        match op(&self.repo()) {
            Err(Error::Corrupt { file, .. }) if file == "index" => {
                {
                    let mut known = crate::sys::lock(&self.known);
                    let recent = known
                        .index_reloaded
                        .is_some_and(|t| t.elapsed() < self.refresh_interval);
                    if !recent {
                        known.index_reloaded = Some(Instant::now());
                        self.reload_index();
                    }
                }
                op(&self.repo())
            }
            other => other,
        }
    }

    fn inode(&self, ino: INodeNo) -> std::result::Result<Arc<Inode>, Errno> {
        crate::sys::lock(&self.table)
            .get(ino.0)
            .ok_or(Errno::ESTALE)
    }

    /// The path of an inode (under the mount point), for messages.
    fn path(&self, inode: &Inode) -> String {
        let table = crate::sys::lock(&self.table);
        let mut parts = vec![inode.name.clone()];
        let mut at = inode.parent;
        while at != ROOT && parts.len() < 4096 {
            match table.get(at) {
                Some(p) => {
                    parts.push(p.name.clone());
                    at = p.parent;
                }
                None => break,
            }
        }
        parts.reverse();
        let joined: Vec<u8> = parts.join(&b'/');
        format!(
            "{}/{}",
            self.mountpoint.display(),
            String::from_utf8_lossy(&joined)
        )
    }

    /// Reports `e` as a problem with `inode` and returns `EIO`.
    fn failed(&self, inode: &Inode, e: Error) -> Errno {
        self.problem(format!("{}: {e}", self.path(inode)));
        Errno::EIO
    }

    /// A snapshot directory's listing (read once).
    fn listing(&self, dir: &Inode) -> std::result::Result<Arc<Tree>, Errno> {
        if let Some(t) = dir.listing.get() {
            return Ok(t.clone());
        }
        let tree = match &dir.what {
            What::SnapshotRoot { snapshot, .. } => {
                let root = snapshot.tree;
                self.with_repo(|r| r.load_tree(&root))
            }
            What::Node { .. } => match dir.node() {
                Some(n) if n.is_dir() => self.with_repo(|r| r.listing(n).map(|c| c.into_owned())),
                _ => return Err(Errno::ENOTDIR),
            },
            _ => return Err(Errno::ENOTDIR),
        }
        .map_err(|e| self.failed(dir, e))?;
        let _ = dir.listing.set(Arc::new(tree));
        Ok(dir.listing.get().expect("set above").clone())
    }

    /// A file's blob map (built once).
    fn file_map(&self, inode: &Inode) -> std::result::Result<Arc<FileMap>, Errno> {
        if let Some(m) = inode.file.get() {
            return Ok(m.clone());
        }
        let node = inode.node().ok_or(Errno::EISDIR)?;
        if node.kind != NodeKind::File {
            return Err(Errno::EINVAL);
        }
        // However the content lists repeat themselves, a file cannot hold
        // more blobs than this (no chunker cuts below 512 bytes).
        let most = (node.size / 512).saturating_add(16).min(64 << 20);
        let blobs = self
            .with_repo(|r| {
                let mut out = Vec::new();
                for b in r.file_blobs(node)? {
                    if out.len() as u64 >= most {
                        return Err(Error::corrupt(
                            "tree",
                            "the file's content lists name more blobs than its size allows (damaged)",
                        ));
                    }
                    out.push(b?);
                }
                Ok(out)
            })
            .map_err(|e| self.failed(inode, e))?;
        let _ = inode.file.set(Arc::new(FileMap::new(blobs, node.size)));
        Ok(inode.file.get().expect("set above").clone())
    }

    fn time(secs: i64, nsec: u32) -> SystemTime {
        let nsec = nsec.min(999_999_999);
        if secs >= 0 {
            UNIX_EPOCH + Duration::new(secs as u64, nsec)
        } else {
            UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
                + Duration::from_nanos(u64::from(nsec))
        }
    }

    fn dir_attr(&self, ino: u64, time: SystemTime, uid: u32, gid: u32) -> FileAttr {
        FileAttr {
            ino: INodeNo(ino),
            size: 0,
            blocks: 0,
            atime: time,
            mtime: time,
            ctime: time,
            crtime: time,
            kind: FileType::Directory,
            perm: 0o555,
            // 1: "not counted", which tools that walk trees understand.
            nlink: 1,
            uid,
            gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        }
    }

    /// The attributes the kernel sees.
    fn attr(&self, inode: &Inode) -> FileAttr {
        match &inode.what {
            What::Virtual(_) => self.dir_attr(inode.ino, self.started, self.uid, self.gid),
            What::Latest(target) => FileAttr {
                kind: FileType::Symlink,
                perm: 0o777,
                size: target.len() as u64,
                ..self.dir_attr(inode.ino, self.started, self.uid, self.gid)
            },
            What::SnapshotRoot { snapshot, .. } => self.dir_attr(
                inode.ino,
                Self::time(snapshot.time, snapshot.time_nsec),
                snapshot.uid,
                snapshot.gid,
            ),
            What::Node { .. } => {
                let Some(n) = inode.node() else {
                    return self.dir_attr(inode.ino, self.started, self.uid, self.gid);
                };
                node_attr(inode.ino, n)
            }
        }
    }

    fn ttl(inode: &Inode) -> Duration {
        match inode.what {
            What::Node { .. } | What::SnapshotRoot { .. } => TREE_TTL,
            _ => VIRTUAL_TTL,
        }
    }

    /// The entries of a virtual directory, as (name, what the entry is).
    fn virtual_entries(&self, dir: &VirtualDir) -> Vec<(String, Spec)> {
        let v = self.views();
        let view_entries = |view: &super::names::View| {
            let mut out: Vec<(String, Spec)> = view
                .entries
                .iter()
                .map(|(n, id)| (n.clone(), Spec::Snapshot(*id)))
                .collect();
            if let Some(l) = &view.latest {
                out.push((LATEST.to_string(), Spec::Latest(l.clone())));
            }
            out
        };
        match dir {
            VirtualDir::Root => [
                ("ids", VirtualDir::Ids),
                ("snapshots", VirtualDir::Snapshots),
                ("hosts", VirtualDir::Hosts),
                ("tags", VirtualDir::Tags),
            ]
            .into_iter()
            .map(|(n, d)| (n.to_string(), Spec::Dir(d)))
            .collect(),
            VirtualDir::Ids => v
                .ids
                .iter()
                .map(|(n, id)| (n.clone(), Spec::Snapshot(*id)))
                .collect(),
            VirtualDir::Snapshots => view_entries(&v.all),
            VirtualDir::Hosts => v
                .hosts
                .dirs
                .keys()
                .map(|n| (n.clone(), Spec::Dir(VirtualDir::Host(n.clone()))))
                .collect(),
            VirtualDir::Tags => v
                .tags
                .dirs
                .keys()
                .map(|n| (n.clone(), Spec::Dir(VirtualDir::Tag(n.clone()))))
                .collect(),
            VirtualDir::Host(h) => v.hosts.dirs.get(h).map(view_entries).unwrap_or_default(),
            VirtualDir::Tag(t) => v.tags.dirs.get(t).map(view_entries).unwrap_or_default(),
        }
    }

    /// One entry of a virtual directory.
    fn virtual_entry(&self, dir: &VirtualDir, name: &[u8]) -> Option<Spec> {
        let name = std::str::from_utf8(name).ok()?;
        let v = self.views();
        let in_view = |view: &super::names::View| {
            if name == LATEST {
                return view.latest.clone().map(Spec::Latest);
            }
            view.entries.get(name).map(|id| Spec::Snapshot(*id))
        };
        match dir {
            VirtualDir::Root => match name {
                "ids" => Some(Spec::Dir(VirtualDir::Ids)),
                "snapshots" => Some(Spec::Dir(VirtualDir::Snapshots)),
                "hosts" => Some(Spec::Dir(VirtualDir::Hosts)),
                "tags" => Some(Spec::Dir(VirtualDir::Tags)),
                _ => None,
            },
            VirtualDir::Ids => v.ids.get(name).map(|id| Spec::Snapshot(*id)),
            VirtualDir::Snapshots => in_view(&v.all),
            VirtualDir::Hosts => v
                .hosts
                .dirs
                .contains_key(name)
                .then(|| Spec::Dir(VirtualDir::Host(name.to_string()))),
            VirtualDir::Tags => v
                .tags
                .dirs
                .contains_key(name)
                .then(|| Spec::Dir(VirtualDir::Tag(name.to_string()))),
            VirtualDir::Host(h) => v.hosts.dirs.get(h).and_then(in_view),
            VirtualDir::Tag(t) => v.tags.dirs.get(t).and_then(in_view),
        }
    }

    /// The inode of a virtual entry.
    fn intern_virtual(
        &self,
        parent: u64,
        name: &[u8],
        spec: Spec,
        count: bool,
    ) -> Option<Arc<Inode>> {
        let views = self.views();
        let mut table = crate::sys::lock(&self.table);
        Some(match spec {
            Spec::Dir(d) => table.virtual_child(parent, name, b"", count, || What::Virtual(d)),
            Spec::Latest(target) => {
                let t = target.clone().into_bytes();
                table.virtual_child(parent, name, &t, count, || What::Latest(t.clone()))
            }
            Spec::Snapshot(id) => {
                let snapshot = views.snapshots.get(&id)?.clone();
                table.virtual_child(parent, name, &id.0, count, || What::SnapshotRoot {
                    id,
                    snapshot,
                })
            }
        })
    }

    fn lookup(&self, parent: INodeNo, name: &[u8]) -> std::result::Result<Arc<Inode>, Errno> {
        let p = self.inode(parent)?;
        match &p.what {
            What::Virtual(dir) => {
                self.refresh();
                let spec = self.virtual_entry(dir, name).ok_or(Errno::ENOENT)?;
                self.intern_virtual(p.ino, name, spec, true)
                    .ok_or(Errno::ENOENT)
            }
            What::Latest(_) => Err(Errno::ENOTDIR),
            What::SnapshotRoot { .. } | What::Node { .. } => {
                let listing = self.listing(&p)?;
                let index = listing
                    .nodes
                    .binary_search_by(|n| n.name.as_slice().cmp(name))
                    .map_err(|_| Errno::ENOENT)?;
                let root = p.root().unwrap_or(p.ino);
                Ok(crate::sys::lock(&self.table).node_child(p.ino, root, &listing, index, true))
            }
        }
    }

    fn open_dir(&self, ino: INodeNo) -> std::result::Result<(Handle, FopenFlags), Errno> {
        let dir = self.inode(ino)?;
        match &dir.what {
            What::Virtual(v) => {
                self.refresh();
                let entries = self
                    .virtual_entries(v)
                    .into_iter()
                    .filter_map(|(name, spec)| {
                        let inode = self.intern_virtual(dir.ino, name.as_bytes(), spec, false)?;
                        Some((name.into_bytes(), inode))
                    })
                    .collect();
                Ok((Handle::Virtual(entries), FopenFlags::empty()))
            }
            What::Latest(_) => Err(Errno::ENOTDIR),
            _ => {
                let listing = self.listing(&dir)?;
                // A snapshot's directories never change: the kernel may
                // keep their listings.
                Ok((
                    Handle::Tree(listing),
                    FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
                ))
            }
        }
    }

    fn add_handle(&self, h: Handle) -> FileHandle {
        let fh = self.next_handle.fetch_add(1, Ordering::Relaxed);
        crate::sys::lock(&self.handles).insert(fh, Arc::new(h));
        FileHandle(fh)
    }

    fn handle(&self, fh: FileHandle) -> std::result::Result<Arc<Handle>, Errno> {
        crate::sys::lock(&self.handles)
            .get(&fh.0)
            .cloned()
            .ok_or(Errno::EBADF)
    }

    /// Entry `i` of an open directory (0 is `.`, 1 is `..`), as
    /// (inode, name); `count` counts a lookup for a real entry.
    fn dir_entry(
        &self,
        dir: &Inode,
        h: &Handle,
        i: usize,
        count: bool,
    ) -> Option<(Arc<Inode>, Vec<u8>)> {
        match i {
            0 => return Some((self.inode(INodeNo(dir.ino)).ok()?, b".".to_vec())),
            1 => {
                let parent = self.inode(INodeNo(dir.parent)).ok()?;
                return Some((parent, b"..".to_vec()));
            }
            _ => {}
        }
        match h {
            Handle::Virtual(entries) => {
                let (name, inode) = entries.get(i - 2)?;
                if count {
                    crate::sys::lock(&self.table).count(inode.ino);
                }
                Some((inode.clone(), name.clone()))
            }
            Handle::Tree(listing) => {
                let node = listing.nodes.get(i - 2)?;
                let root = dir.root().unwrap_or(dir.ino);
                let inode =
                    crate::sys::lock(&self.table).node_child(dir.ino, root, listing, i - 2, count);
                Some((inode, node.name.clone()))
            }
            Handle::File { .. } => None,
        }
    }

    fn read(
        &self,
        fh: FileHandle,
        offset: u64,
        size: u32,
    ) -> std::result::Result<Vec<u8>, (Errno, Option<Error>)> {
        let h = self.handle(fh).map_err(|e| (e, None))?;
        let Handle::File { map, next, ahead } = h.as_ref() else {
            return Err((Errno::EISDIR, None));
        };
        let repo = self.repo();
        let fetch = |b: &crate::repository::blobs::FileBlob| {
            self.cache.get(&b.id, || {
                self.with_repo(|r| r.read_blob(BlobType::Data, &b.id))
            })
        };
        let (data, last) = map
            .read(offset, size, &fetch)
            .map_err(|e| (Errno::EIO, Some(e)))?;
        let end = offset + data.len() as u64;
        // The first read of an open file is sequential if it starts at 0.
        let prev = next.swap(end, Ordering::Relaxed);
        let sequential = match prev {
            u64::MAX => offset == 0,
            _ => offset.abs_diff(prev) <= SEQUENTIAL_WINDOW,
        };
        if self.prefetch_bytes > 0 && end < map.size() && sequential {
            let target = map.blob_at(end.saturating_add(self.prefetch_bytes).min(map.size() - 1));
            let mut from = ahead.load(Ordering::Relaxed);
            if from <= last || from > target + 1 {
                from = last + 1;
            }
            if from <= target {
                ahead.store(target + 1, Ordering::Relaxed);
                self.prefetch
                    .ahead(&repo, &self.cache, map, from, target + 1);
            }
        }
        Ok(data)
    }
}

/// What a virtual entry is, before it has an inode.
enum Spec {
    Dir(VirtualDir),
    Snapshot(Id),
    Latest(String),
}

fn file_type(kind: NodeKind) -> FileType {
    match kind {
        NodeKind::File => FileType::RegularFile,
        NodeKind::Dir => FileType::Directory,
        NodeKind::Symlink => FileType::Symlink,
        NodeKind::Fifo => FileType::NamedPipe,
        NodeKind::CharDevice => FileType::CharDevice,
        NodeKind::BlockDevice => FileType::BlockDevice,
        NodeKind::Socket => FileType::Socket,
    }
}

/// A device number as the FUSE protocol carries it (the kernel's
/// `new_encode_dev`), from the `st_rdev` recorded at backup time.
fn fuse_rdev(rdev: u64) -> u32 {
    let major = libc::major(rdev as libc::dev_t) as u64;
    let minor = libc::minor(rdev as libc::dev_t) as u64;
    ((minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)) as u32
}

/// The attributes of a snapshot's tree entry.
fn node_attr(ino: u64, n: &Node) -> FileAttr {
    let mtime = Shared::time(n.mtime, n.mtime_nsec);
    let ctime = Shared::time(n.ctime, n.ctime_nsec);
    let size = match n.kind {
        NodeKind::File => n.size,
        NodeKind::Symlink => n.link_target.len() as u64,
        _ => 0,
    };
    FileAttr {
        ino: INodeNo(ino),
        size,
        blocks: size.div_ceil(512),
        atime: mtime,
        mtime,
        ctime,
        crtime: mtime,
        kind: file_type(n.kind),
        perm: (n.mode & 0o7777) as u16,
        nlink: if n.is_dir() {
            1
        } else {
            n.links.clamp(1, u64::from(u32::MAX)) as u32
        },
        uid: n.uid,
        gid: n.gid,
        rdev: match n.kind {
            NodeKind::CharDevice | NodeKind::BlockDevice => fuse_rdev(n.rdev),
            _ => 0,
        },
        blksize: 4096,
        flags: 0,
    }
}

/// The [`Filesystem`] fuser drives.
pub struct CairnFs(pub Arc<Shared>);

impl Filesystem for CairnFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Directory listings with attributes: `ls -l` and `find` need no
        // lookup per entry. The rest where the kernel offers them.
        for cap in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(cap);
        }
        let _ = config.set_max_background(64);
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.0.lookup(parent, name.as_bytes()) {
            Ok(inode) => reply.entry(&Shared::ttl(&inode), &self.0.attr(&inode), Generation(0)),
            Err(e) => reply.error(e),
        }
    }

    // (fuser's default `batch_forget` calls this for each inode.)
    fn forget(&self, _req: &Request, ino: INodeNo, nlookup: u64) {
        crate::sys::lock(&self.0.table).forget(ino.0, nlookup);
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.0.inode(ino) {
            Ok(inode) => reply.attr(&Shared::ttl(&inode), &self.0.attr(&inode)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let inode = match self.0.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        match (&inode.what, inode.node()) {
            (What::Latest(target), _) => reply.data(target),
            (_, Some(n)) if n.kind == NodeKind::Symlink => reply.data(&n.link_target),
            _ => reply.error(Errno::EINVAL),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        let inode = match self.0.inode(ino) {
            Ok(i) => i,
            Err(e) => return reply.error(e),
        };
        if inode.is_dir() {
            return reply.error(Errno::EISDIR);
        }
        match self.0.file_map(&inode) {
            Ok(map) => {
                let fh = self.0.add_handle(Handle::File {
                    map,
                    next: AtomicU64::new(u64::MAX),
                    ahead: AtomicUsize::new(0),
                });
                // Contents never change: pages read once stay valid.
                reply.opened(fh, FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        match self.0.read(fh, offset, size) {
            Ok(data) => reply.data(&data),
            Err((errno, e)) => {
                if let (Some(e), Ok(inode)) = (e, self.0.inode(ino)) {
                    self.0.failed(&inode, e);
                }
                reply.error(errno)
            }
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        reply.ok();
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        crate::sys::lock(&self.0.handles).remove(&fh.0);
        reply.ok();
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.0.open_dir(ino) {
            Ok((h, flags)) => reply.opened(self.0.add_handle(h), flags),
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let (dir, h) = match (self.0.inode(ino), self.0.handle(fh)) {
            (Ok(d), Ok(h)) => (d, h),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let mut i = offset as usize;
        while let Some((inode, name)) = self.0.dir_entry(&dir, &h, i, false) {
            let kind = self.0.attr(&inode).kind;
            if reply.add(
                INodeNo(inode.ino),
                i as u64 + 1,
                kind,
                OsStr::from_bytes(&name),
            ) {
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let (dir, h) = match (self.0.inode(ino), self.0.handle(fh)) {
            (Ok(d), Ok(h)) => (d, h),
            (Err(e), _) | (_, Err(e)) => return reply.error(e),
        };
        let mut i = offset as usize;
        // The kernel takes a reference to every entry but `.` and `..`.
        while let Some((inode, name)) = self.0.dir_entry(&dir, &h, i, i >= 2) {
            let attr = self.0.attr(&inode);
            let ttl = Shared::ttl(&inode);
            let full = reply.add(
                INodeNo(inode.ino),
                i as u64 + 1,
                OsStr::from_bytes(&name),
                &ttl,
                &attr,
                Generation(0),
            );
            if full {
                // Not sent: the kernel holds no reference to it.
                if i >= 2 {
                    crate::sys::lock(&self.0.table).forget(inode.ino, 1);
                }
                break;
            }
            i += 1;
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        crate::sys::lock(&self.0.handles).remove(&fh.0);
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        reply.statfs(0, 0, 0, 0, 0, 4096, 255, 4096);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_numbers_use_the_kernel_encoding() {
        let dev = |maj: u32, min: u32| libc::makedev(maj, min) as u64;
        assert_eq!(fuse_rdev(dev(1, 3)), (1 << 8) | 3);
        assert_eq!(fuse_rdev(dev(8, 17)), (8 << 8) | 17);
        // Minors above 255 move to bits 20 and up.
        assert_eq!(fuse_rdev(dev(4, 0x1234)), 0x34 | (4 << 8) | (0x12 << 20));
    }

    #[test]
    fn times_before_1970_keep_their_nanoseconds() {
        let t = Shared::time(-123_456_789, 42);
        let d = UNIX_EPOCH.duration_since(t).unwrap();
        assert_eq!(d, Duration::new(123_456_788, 999_999_958));
        assert_eq!(Shared::time(5, 7), UNIX_EPOCH + Duration::new(5, 7));
    }

    #[test]
    fn node_attributes() {
        let mut n = Node::new(b"f".to_vec(), NodeKind::File);
        n.mode = 0o4755;
        n.size = 1000;
        n.links = 3;
        n.uid = 12;
        n.gid = 34;
        let a = node_attr(9, &n);
        assert_eq!(
            (a.perm, a.size, a.blocks, a.nlink, a.uid, a.gid),
            (0o4755, 1000, 2, 3, 12, 34)
        );
        assert_eq!(a.kind, FileType::RegularFile);
        let mut l = Node::new(b"l".to_vec(), NodeKind::Symlink);
        l.link_target = b"target".to_vec();
        assert_eq!(node_attr(1, &l).size, 6);
        let d = Node::new(b"d".to_vec(), NodeKind::Dir);
        assert_eq!(node_attr(1, &d).nlink, 1);
    }
}
