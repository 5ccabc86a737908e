//! `copy`: snapshots from one repository into another (an offsite copy).
//!
//! A snapshot is copied once: one the destination already holds (same
//! time, host, user, paths and tags, and with shared blob ids the same
//! tree) is skipped, so `copy` is idempotent and safe to run from cron.
//! Each copied snapshot is written only after every blob it needs is durable
//! in the destination, as a backup's is.
//!
//! Two ways, chosen by the repositories:
//!
//! * **Shared blob ids** (`init --from-repo SRC --copy-chunker-params`):
//!   the same content has the same id in both, so the trees are copied as
//!   they are and only blobs the destination lacks are read, decrypted and
//!   sealed again under the destination's key (delta blobs stay deltas).
//! * **Unrelated repositories**: every blob is read and stored under the
//!   destination's id for its content, content lists are rebuilt and trees
//!   re-encoded with the new ids. Chunks keep the source's boundaries (copy
//!   never re-chunks), so dedup against the destination's own backups is
//!   only as good as the two chunkers agree; database page deltas are
//!   stored as whole pages. It costs reading every blob of every copied
//!   snapshot once per run.

use crate::commands::progress::{Counters, Progress, check_cancelled, run_reporting};
use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{INLINE_MAX, MAX_TREE_DEPTH, Node, NodeKind, Tree};
use crate::repository::packer::Packer;
use crate::repository::{BackupIndex, FullIndex, Repository, SnapshotFilter};
use std::collections::{HashMap, HashSet};

/// Which snapshots to copy.
#[derive(Clone, Debug, Default)]
pub struct CopyOptions {
    /// Snapshots by id prefix (or `latest`); empty: every snapshot passing
    /// `filter`.
    pub ids: Vec<String>,
    /// Only snapshots passing this filter.
    pub filter: SnapshotFilter,
    /// Decide and report, copy nothing.
    pub dry_run: bool,
}

/// One snapshot copied (or that would be).
#[derive(Clone, Debug)]
pub struct CopiedSnapshot {
    /// Its id in the source.
    pub source_id: Id,
    /// Its id in the destination (None in a dry run).
    pub target_id: Option<Id>,
    /// The snapshot (as in the source).
    pub snapshot: Snapshot,
}

/// What `copy` did.
#[derive(Clone, Debug, Default)]
pub struct CopyReport {
    /// Snapshots copied (or to copy, in a dry run), oldest first.
    pub copied: Vec<CopiedSnapshot>,
    /// Snapshots the destination already held: (source id, its copy's id).
    pub present: Vec<(Id, Id)>,
    /// Whether the two repositories share blob ids.
    pub shared_blob_ids: bool,
    /// Blobs stored in the destination.
    pub blobs_copied: u64,
    /// Their plaintext bytes.
    pub bytes_copied: u64,
    /// Their stored (compressed, encrypted) bytes.
    pub bytes_stored: u64,
    /// Whether this was a dry run.
    pub dry_run: bool,
    /// Archived PostgreSQL WAL files copied (or to copy): those of the
    /// clusters whose base backups were selected, that the destination
    /// lacked.
    pub wal_copied: Vec<String>,
}

/// Whether `d` is a copy of `s`: same time, host, user, paths and tags
/// (and, when the repositories share blob ids, the same tree).
fn same_snapshot(s: &Snapshot, d: &Snapshot, compare_trees: bool) -> bool {
    s.time == d.time
        && s.time_nsec == d.time_nsec
        && s.hostname == d.hostname
        && s.username == d.username
        && s.paths == d.paths
        && s.tags == d.tags
        && (!compare_trees || s.tree == d.tree)
}

/// Copies the selected snapshots of `source` that `dest` lacks, under a
/// shared lock on each (copying only adds to the destination).
pub fn copy<S, T>(
    source: &Repository<S>,
    dest: &Repository<T>,
    opts: &CopyOptions,
    progress: &dyn Progress,
) -> Result<CopyReport> {
    let shared = source.shares_blob_ids(dest);
    let mut wanted: Vec<(Id, Snapshot)> = if opts.ids.is_empty() {
        source
            .load_snapshots()?
            .into_iter()
            .filter(|(_, s)| opts.filter.matches(s))
            .collect()
    } else {
        let mut v = Vec::new();
        for sel in &opts.ids {
            let found = source.find_snapshot(sel, &opts.filter)?;
            if !v.iter().any(|(id, _)| *id == found.0) {
                v.push(found);
            }
        }
        v
    };
    crate::repository::snapshots::sort_by_time(&mut wanted);
    let existing = dest.load_snapshots()?;
    let mut report = CopyReport {
        shared_blob_ids: shared,
        dry_run: opts.dry_run,
        ..Default::default()
    };
    let mut todo = Vec::new();
    for (id, s) in wanted {
        match existing.iter().find(|(_, d)| same_snapshot(&s, d, shared)) {
            Some((did, _)) => report.present.push((id, *did)),
            None => todo.push((id, s)),
        }
    }
    // The WAL of the clusters whose base backups are selected goes along:
    // a base backup restores to a point in time only with it.
    let clusters: HashSet<u64> = wanted_clusters(&report, &todo, &existing);
    let wal_todo = crate::commands::wal::missing_in(source, dest, &clusters)?;
    report.wal_copied = wal_todo.iter().map(|w| w.name.clone()).collect();
    if !opts.dry_run {
        crate::commands::wal::copy_records(source, dest, &wal_todo)?;
    }
    if opts.dry_run || todo.is_empty() {
        report.copied = todo
            .into_iter()
            .map(|(source_id, snapshot)| CopiedSnapshot {
                source_id,
                target_id: None,
                snapshot,
            })
            .collect();
        return Ok(report);
    }
    let source = source.with_full_index()?;
    let dest = dest.with_backup_index()?;
    let counters = Counters::with_totals(
        todo.len() as u64,
        todo.iter()
            .map(|(_, s)| s.summary.total_bytes)
            .fold(0u64, u64::saturating_add),
    );
    run_reporting(progress, &counters, || {
        let mut copier = Copier {
            source: &source,
            dest: &dest,
            done: HashSet::new(),
            tree_ids: HashMap::new(),
            data_ids: HashMap::new(),
            counters: &counters,
        };
        for (id, s) in todo {
            check_cancelled(progress)?;
            let packer = Packer::new(&dest);
            let tree = if shared {
                copier.copy_shared(&packer, &s)?;
                s.tree
            } else {
                copier.copy_reencoded(&packer, &s)?
            };
            // Last: everything the snapshot needs is durable now.
            packer.finish()?;
            let st = &packer.stats;
            report.blobs_copied += st.blobs.load(std::sync::atomic::Ordering::Relaxed);
            report.bytes_copied += st.raw_bytes.load(std::sync::atomic::Ordering::Relaxed);
            report.bytes_stored += st.stored_bytes.load(std::sync::atomic::Ordering::Relaxed);
            // `replaces` names a file of the source repository.
            let copy = Snapshot {
                tree,
                replaces: None,
                ..s.clone()
            };
            let target_id = dest.save_snapshot(&copy)?;
            counters.add_done(1, s.summary.total_bytes);
            report.copied.push(CopiedSnapshot {
                source_id: id,
                target_id: Some(target_id),
                snapshot: s,
            });
        }
        Ok(report)
    })
}

/// The clusters whose base backups are among the selected snapshots
/// (copied now or present already).
fn wanted_clusters(
    report: &CopyReport,
    todo: &[(Id, Snapshot)],
    existing: &[(Id, Snapshot)],
) -> HashSet<u64> {
    let present = report
        .present
        .iter()
        .filter_map(|(_, did)| existing.iter().find(|(id, _)| id == did));
    todo.iter()
        .chain(present)
        .filter_map(|(_, s)| s.postgres.as_ref().map(|p| p.system_id))
        .collect()
}

struct Copier<'a> {
    source: &'a Repository<FullIndex>,
    dest: &'a Repository<BackupIndex>,
    /// Blobs handled in this run (stored, or found in the destination).
    done: HashSet<Id>,
    /// Re-encoding: source tree id -> destination tree id.
    tree_ids: HashMap<Id, Id>,
    /// Re-encoding: source data blob id -> destination id.
    data_ids: HashMap<Id, Id>,
    counters: &'a Counters,
}

impl Copier<'_> {
    /// Whether a blob still has to be stored (and marks it handled).
    fn needs(&mut self, id: &Id) -> bool {
        self.done.insert(*id) && !self.dest.has_blob(id)
    }

    /// Shared blob ids: stores every blob of the snapshot the destination
    /// lacks, walking its trees (each once per run).
    fn copy_shared(&mut self, packer: &Packer, s: &Snapshot) -> Result<()> {
        let mut trees = vec![(s.tree, 0usize)];
        while let Some((tid, depth)) = trees.pop() {
            if depth > MAX_TREE_DEPTH {
                return Err(crate::repository::browse::too_deep(std::path::Path::new(
                    "/",
                )));
            }
            // A tree handled in this run had everything below it handled.
            // One the destination holds from before is walked all the same:
            // an interrupted copy may have left a tree without its data.
            if !self.done.insert(tid) {
                continue;
            }
            let plain = self.source.read_blob(BlobType::Tree, &tid)?;
            if !self.dest.has_blob(&tid) {
                packer.save_with_id(BlobType::Tree, tid, &plain)?;
            }
            let tree = Tree::decode(&plain, &format!("tree {}", tid.short()))?;
            self.copy_listing(packer, &tree, depth, &mut trees)?;
        }
        Ok(())
    }

    /// The nodes of one listing (inline listings in place).
    fn copy_listing(
        &mut self,
        packer: &Packer,
        tree: &Tree,
        depth: usize,
        trees: &mut Vec<(Id, usize)>,
    ) -> Result<()> {
        for n in &tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree {
                        trees.push((sub, depth + 1));
                    }
                    if let Some(inline) = &n.inline {
                        self.copy_listing(packer, inline, depth + 1, trees)?;
                    }
                }
                NodeKind::File => {
                    self.copy_content(packer, &n.content, n.content_depth)?;
                    if let Some(b) = &n.delta_base {
                        self.copy_content(packer, &b.content, b.depth)?;
                    }
                    self.counters.add_done(0, 0);
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// A content's lists and data blobs.
    fn copy_content(&mut self, packer: &Packer, content: &[Id], depth: u8) -> Result<()> {
        if depth == 0 {
            for id in content {
                if self.needs(id) {
                    let (plain, base) = self.source.read_blob_and_base(BlobType::Data, id)?;
                    let base = match base {
                        Some(b) => Some((b, self.source.read_base(&b)?)),
                        None => None,
                    };
                    packer.save_copy(*id, &plain, base.as_ref().map(|(b, p)| (b, &p[..])))?;
                }
            }
            return Ok(());
        }
        for id in content {
            // A list handled before had its children handled too.
            if !self.done.insert(*id) {
                continue;
            }
            let list = self.source.load_content_list(id, depth)?;
            if !self.dest.has_blob(id) {
                packer.save_with_id(BlobType::Tree, *id, &list.encode()?)?;
            }
            self.copy_content(packer, &list.ids, depth - 1)?;
        }
        Ok(())
    }

    /// Unrelated repositories: stores every blob under the destination's id
    /// for it and re-encodes the trees; returns the new root tree's id.
    fn copy_reencoded(&mut self, packer: &Packer, s: &Snapshot) -> Result<Id> {
        /// A listing being rewritten: its source id (None: inline), the
        /// source nodes, the next one, the new nodes so far.
        struct Frame {
            id: Option<Id>,
            nodes: Vec<Node>,
            next: usize,
            out: Vec<Node>,
        }
        let root = self.source.load_tree(&s.tree)?;
        let mut stack = vec![Frame {
            id: Some(s.tree),
            nodes: root.nodes,
            next: 0,
            out: Vec::new(),
        }];
        loop {
            let depth = stack.len();
            let top = stack
                .last_mut()
                .expect("the root frame stays until the end");
            let Some(node) = top.nodes.get(top.next).cloned() else {
                let done = stack.pop().expect("a frame");
                let mut tree = Tree { nodes: done.out };
                let bytes = tree.encode()?;
                let Some(parent) = stack.last_mut() else {
                    // The root is always a blob of its own.
                    return Ok(packer.save(BlobType::Tree, &bytes)?.0);
                };
                let mut dir = parent.nodes[parent.next - 1].clone();
                dir.subtree = None;
                dir.inline = None;
                if done.id.is_none() && bytes.len() <= INLINE_MAX {
                    dir.inline = Some(Box::new(tree));
                } else {
                    let new_id = packer.save(BlobType::Tree, &bytes)?.0;
                    if let Some(old) = done.id {
                        self.tree_ids.insert(old, new_id);
                    }
                    dir.subtree = Some(new_id);
                }
                parent.out.push(dir);
                continue;
            };
            top.next += 1;
            match node.kind {
                NodeKind::Dir => {
                    if depth > MAX_TREE_DEPTH {
                        return Err(crate::repository::browse::too_deep(std::path::Path::new(
                            &node.display_name(),
                        )));
                    }
                    if let Some(new) = node.subtree.and_then(|id| self.tree_ids.get(&id)) {
                        let mut dir = node.clone();
                        dir.subtree = Some(*new);
                        top.out.push(dir);
                        continue;
                    }
                    let (id, nodes) = match (&node.subtree, &node.inline) {
                        (Some(id), _) => (Some(*id), self.source.load_tree(id)?.nodes),
                        (None, Some(t)) => (None, t.nodes.clone()),
                        (None, None) => {
                            return Err(Error::corrupt(
                                "tree",
                                format!("{} has no directory listing", node.display_name()),
                            ));
                        }
                    };
                    stack.push(Frame {
                        id,
                        nodes,
                        next: 0,
                        out: Vec::new(),
                    });
                }
                NodeKind::File => {
                    let file = self.reencode_file(packer, &node)?;
                    top.out.push(file);
                }
                _ => top.out.push(node),
            }
        }
    }

    /// A file node with its content stored under the destination's ids
    /// (as ordinary blobs: a delta's base is not carried over).
    fn reencode_file(&mut self, packer: &Packer, node: &Node) -> Result<Node> {
        let mut ids = Vec::new();
        for b in self.source.file_blobs(node)? {
            let b = b?;
            let new = match self.data_ids.get(&b.id) {
                Some(new) => *new,
                None => {
                    let plain = self.source.read_blob(BlobType::Data, &b.id)?;
                    let (new, _) = packer.save(BlobType::Data, &plain)?;
                    self.data_ids.insert(b.id, new);
                    new
                }
            };
            ids.push(new);
        }
        let mut out = node.clone();
        (out.content, out.content_depth) =
            crate::format::content::build(ids, &|b| Ok(packer.save(BlobType::Tree, b)?.0))?;
        out.delta_base = None;
        Ok(out)
    }
}
