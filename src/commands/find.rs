//! `find`: search snapshots for paths matching patterns, or for the files
//! and directories that use given blob, tree or pack ids (to map damage
//! that `check` names back to what it costs).
//!
//! Snapshots of one history share most of their trees, so each is walked
//! against the walk of the snapshot before it: a directory with the same
//! tree id at the same path holds the same matches, copied instead of
//! read again, and in id searches a tree known to use none of the ids is
//! skipped wherever it appears. Only what differs between neighbours is
//! read.

use crate::commands::ls::entry_limit;
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{MAX_TREE_DEPTH, Node, NodeKind, Tree};
use crate::patterns::PatternSet;
use crate::repository::browse::too_deep;
use crate::repository::{FullIndex, Locate, Repository, SnapshotFilter};
use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

/// What the patterns are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum FindWhat {
    /// Path patterns (restic's: `*.py`, `src/*.rs`, `/etc/**`).
    #[default]
    Paths,
    /// Blob ids (or prefixes): data blobs, content lists, tree blobs.
    Blobs,
    /// Tree ids (or prefixes): directories.
    Trees,
    /// Pack ids (or prefixes): every blob stored in the packs.
    Packs,
}

/// Which snapshots.
#[derive(Clone, Debug, Default)]
pub enum Which {
    /// Every snapshot passing the filter.
    #[default]
    All,
    /// These (id prefixes or `latest`).
    Ids(Vec<String>),
    /// The newest at or before this time (Unix seconds, nanoseconds).
    At(i64, u32),
}

/// How to search.
#[derive(Clone, Debug, Default)]
pub struct FindOptions {
    /// Patterns or id prefixes.
    pub patterns: Vec<String>,
    /// What the patterns are.
    pub what: FindWhat,
    /// Match path patterns regardless of case.
    pub ignore_case: bool,
    /// Only entries modified at or after this time (Unix seconds).
    pub oldest: Option<i64>,
    /// Only entries modified at or before this time (Unix seconds).
    pub newest: Option<i64>,
    /// Which snapshots.
    pub which: Which,
    /// Snapshot filter (`--host/--tag/--path`).
    pub filter: SnapshotFilter,
    /// Oldest snapshot first (default newest first, like restic).
    pub oldest_first: bool,
}

/// The object an id search found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Object {
    /// A data blob a file's content uses.
    Data(Id),
    /// A content-list blob of a file (its content's index).
    ContentList(Id),
    /// The tree blob of a directory.
    Tree(Id),
}

impl Object {
    /// The object's id.
    pub fn id(&self) -> &Id {
        match self {
            Object::Data(id) | Object::ContentList(id) | Object::Tree(id) => id,
        }
    }
    /// What it is, for output.
    pub fn kind(&self) -> &'static str {
        match self {
            Object::Data(_) => "data blob",
            Object::ContentList(_) => "content list",
            Object::Tree(_) => "tree",
        }
    }
}

/// One match.
#[derive(Clone, Debug)]
pub struct Hit {
    /// Full path in the snapshot.
    pub path: PathBuf,
    /// The entry (content ids and inline listings left out).
    pub node: Node,
    /// In id searches: what matched (a file can match several ids).
    pub objects: Vec<Object>,
    /// In pack searches: the pack of each object.
    pub packs: Vec<Id>,
}

/// Totals.
#[derive(Clone, Debug, Default)]
pub struct FindReport {
    /// Snapshots searched.
    pub snapshots: usize,
    /// Matches over all snapshots.
    pub hits: u64,
    /// Distinct trees read.
    pub trees_read: u64,
}

/// Receives each searched snapshot with its matches.
pub type OnSnapshot<'a> = dyn FnMut(&Id, &Snapshot, &[Hit]) -> Result<()> + 'a;

/// Searches the chosen snapshots; `found` gets each snapshot with its
/// matches (in walk order), also when there are none.
pub fn find<S>(
    repo: &Repository<S>,
    opts: &FindOptions,
    found: &mut OnSnapshot,
) -> Result<FindReport> {
    if opts.patterns.is_empty() {
        return Err(Error::InvalidInput(
            "give at least one pattern (or id with --blob, --tree, --pack)".into(),
        ));
    }
    let repo = &repo.with_full_index()?;
    let mut snapshots = choose(repo, opts)?;
    if !opts.oldest_first {
        snapshots.reverse();
    }
    let matcher = Matcher::new(repo, opts)?;
    let mut search = Search {
        repo,
        matcher: &matcher,
        opts,
        prev: Vec::new(),
        prev_ranges: HashMap::new(),
        clean_trees: HashSet::new(),
        trees_read: 0,
    };
    let mut report = FindReport::default();
    for (id, s) in &snapshots {
        let hits = search.snapshot(s)?;
        report.snapshots += 1;
        report.hits += hits.len() as u64;
        found(id, s, &hits)?;
        search.prev = hits;
    }
    report.trees_read = search.trees_read;
    Ok(report)
}

/// The snapshots to search, oldest first.
fn choose<S>(repo: &Repository<S>, opts: &FindOptions) -> Result<Vec<(Id, Snapshot)>> {
    let all = repo.load_snapshots()?;
    Ok(match &opts.which {
        Which::All => all
            .into_iter()
            .filter(|(_, s)| opts.filter.matches(s))
            .collect(),
        Which::Ids(ids) => {
            let mut out: Vec<(Id, Snapshot)> = Vec::new();
            for sel in ids {
                let found = repo.find_snapshot_in(&all, sel, &opts.filter)?;
                if !out.iter().any(|(id, _)| *id == found.0) {
                    out.push(found);
                }
            }
            crate::repository::snapshots::sort_by_time(&mut out);
            out
        }
        Which::At(secs, nsec) => {
            let found = all
                .into_iter()
                .rfind(|(_, s)| opts.filter.matches(s) && (s.time, s.time_nsec) <= (*secs, *nsec))
                .ok_or_else(|| Error::SnapshotNotFound("at or before the given time".into()))?;
            vec![found]
        }
    })
}

/// Decides what matches.
enum Matcher {
    Paths(PatternSet),
    Ids {
        /// Lower-case hex prefixes.
        prefixes: Vec<String>,
        /// Whether file contents count (not for `--tree`).
        contents: bool,
        /// For `--pack`: the pack of each wanted blob.
        packs: Option<HashMap<Id, Id>>,
    },
}

impl Matcher {
    fn new(repo: &Repository<FullIndex>, opts: &FindOptions) -> Result<Matcher> {
        let prefixes = || -> Result<Vec<String>> {
            opts.patterns
                .iter()
                .map(|p| {
                    let lower = p.trim().to_ascii_lowercase();
                    if lower.is_empty()
                        || lower.len() > 64
                        || !lower.bytes().all(|b| b.is_ascii_hexdigit())
                    {
                        return Err(Error::InvalidInput(format!(
                            "{p:?} is not an id (up to 64 hex digits)"
                        )));
                    }
                    Ok(lower)
                })
                .collect()
        };
        Ok(match opts.what {
            FindWhat::Paths => {
                let trimmed: Vec<String> = opts
                    .patterns
                    .iter()
                    .map(|p| p.trim_end_matches('/').to_string())
                    .collect();
                if trimmed.iter().any(String::is_empty) {
                    return Err(Error::InvalidInput(
                        "an empty pattern matches nothing".into(),
                    ));
                }
                if opts.ignore_case {
                    Matcher::Paths(PatternSet::case_insensitive(&trimmed)?)
                } else {
                    Matcher::Paths(PatternSet::new(&trimmed)?)
                }
            }
            FindWhat::Blobs => Matcher::Ids {
                prefixes: prefixes()?,
                contents: true,
                packs: None,
            },
            FindWhat::Trees => Matcher::Ids {
                prefixes: prefixes()?,
                contents: false,
                packs: None,
            },
            FindWhat::Packs => {
                let packs = prefixes()?;
                let mut wanted = HashMap::new();
                for (blob, pack, _) in repo.index().iter() {
                    let hex = pack.to_hex();
                    if packs.iter().any(|p| hex.starts_with(p)) {
                        wanted.insert(*blob, pack);
                    }
                }
                Matcher::Ids {
                    prefixes: Vec::new(),
                    contents: true,
                    packs: Some(wanted),
                }
            }
        })
    }

    /// Whether an id is one searched for.
    fn wants(&self, id: &Id) -> bool {
        match self {
            Matcher::Paths(_) => false,
            Matcher::Ids {
                prefixes, packs, ..
            } => match packs {
                Some(p) => p.contains_key(id),
                None => {
                    let hex = id.to_hex();
                    prefixes.iter().any(|p| hex.starts_with(p.as_str()))
                }
            },
        }
    }

    fn pack_of(&self, id: &Id) -> Option<Id> {
        match self {
            Matcher::Ids { packs: Some(p), .. } => p.get(id).copied(),
            _ => None,
        }
    }
}

/// One directory being walked.
struct Frame {
    tree: Tree,
    pos: usize,
    path: PathBuf,
    /// The directory's tree id (none for an inline listing or the root
    /// lookup) and where its matches start in the current results.
    id: Option<Id>,
    start: usize,
    /// Id searches: whether anything below matched.
    matched: bool,
}

/// State carried from one snapshot to the next.
struct Search<'a, S> {
    repo: &'a Repository<S>,
    matcher: &'a Matcher,
    opts: &'a FindOptions,
    /// The previous snapshot's matches.
    prev: Vec<Hit>,
    /// Path searches: (tree id, path) → range of `prev` with its matches.
    prev_ranges: HashMap<(Id, PathBuf), (usize, usize)>,
    /// Id searches: trees known to use none of the ids.
    clean_trees: HashSet<Id>,
    trees_read: u64,
}

impl<S: Locate> Search<'_, S> {
    fn load(&mut self, id: &Id) -> Result<Tree> {
        self.trees_read += 1;
        self.repo.load_tree(id)
    }

    /// Searches one snapshot.
    fn snapshot(&mut self, s: &Snapshot) -> Result<Vec<Hit>> {
        let mut hits: Vec<Hit> = Vec::new();
        let mut ranges: HashMap<(Id, PathBuf), (usize, usize)> = HashMap::new();
        let limit = entry_limit(s);
        let mut visited = 0u64;
        let root = self.load(&s.tree)?;
        let mut stack = vec![Frame {
            tree: root,
            pos: 0,
            path: PathBuf::from("/"),
            id: Some(s.tree),
            start: 0,
            matched: false,
        }];
        // The root tree itself can be what `--tree`/`--blob` look for.
        let root_hit = self.matcher.wants(&s.tree);
        loop {
            let depth = stack.len();
            let Some(top) = stack.last_mut() else { break };
            let Some(node) = top.tree.nodes.get(top.pos) else {
                let done = stack.pop().expect("a frame");
                if let Some(id) = done.id {
                    match self.matcher {
                        Matcher::Paths(_) => {
                            ranges.insert((id, done.path), (done.start, hits.len()));
                        }
                        Matcher::Ids { .. } => {
                            if !done.matched {
                                self.clean_trees.insert(id);
                            }
                        }
                    }
                }
                if let (true, Some(parent)) = (done.matched, stack.last_mut()) {
                    parent.matched = true;
                }
                continue;
            };
            top.pos += 1;
            visited += 1;
            if visited > limit {
                return Err(Error::corrupt(
                    "tree",
                    format!(
                        "the snapshot's trees name more than {limit} entries though it records far fewer (damaged or hostile)"
                    ),
                ));
            }
            let path = top.path.join(OsStr::from_bytes(&node.name));
            let objects = self.node_objects(node)?;
            if self.node_matches(&path, node, &objects) {
                hits.push(Hit {
                    path: path.clone(),
                    packs: objects
                        .iter()
                        .filter_map(|o| self.matcher.pack_of(o.id()))
                        .collect(),
                    node: slim(node),
                    objects,
                });
                top.matched = true;
            }
            if !node.is_dir() {
                continue;
            }
            let (subtree, inline) = (node.subtree, node.inline.clone());
            // A directory: reuse what is known about it, or descend.
            if let Some(id) = subtree {
                match self.matcher {
                    Matcher::Paths(_) => {
                        if let Some(&(a, b)) = self.prev_ranges.get(&(id, path.clone())) {
                            let start = hits.len();
                            hits.extend_from_slice(&self.prev[a..b]);
                            visited += (b - a) as u64;
                            ranges.insert((id, path), (start, hits.len()));
                            continue;
                        }
                    }
                    Matcher::Ids { .. } => {
                        if self.clean_trees.contains(&id) {
                            continue;
                        }
                    }
                }
            }
            if depth >= MAX_TREE_DEPTH {
                return Err(too_deep(&path));
            }
            let tree = match (inline, subtree) {
                (Some(t), _) => *t,
                (None, Some(id)) => self.load(&id)?,
                (None, None) => {
                    return Err(Error::corrupt(
                        "tree",
                        format!("{} has no directory listing", path.display()),
                    ));
                }
            };
            let start = hits.len();
            stack.push(Frame {
                tree,
                pos: 0,
                path,
                id: subtree,
                start,
                matched: false,
            });
        }
        if root_hit {
            let mut root = Node::new(b"/".to_vec(), NodeKind::Dir);
            root.subtree = Some(s.tree);
            root.mode = 0o755;
            hits.insert(
                0,
                Hit {
                    path: PathBuf::from("/"),
                    node: root,
                    objects: vec![Object::Tree(s.tree)],
                    packs: self.matcher.pack_of(&s.tree).into_iter().collect(),
                },
            );
        }
        self.prev_ranges = ranges;
        Ok(hits)
    }

    /// Id searches: the searched-for objects this node uses.
    fn node_objects(&self, node: &Node) -> Result<Vec<Object>> {
        let Matcher::Ids { contents, .. } = self.matcher else {
            return Ok(Vec::new());
        };
        let mut out = Vec::new();
        if let Some(id) = node.subtree.filter(|id| self.matcher.wants(id)) {
            out.push(Object::Tree(id));
        }
        if !*contents || node.kind != NodeKind::File {
            return Ok(out);
        }
        let mut lists = Vec::new();
        let mut data = Vec::new();
        let mut seen: HashSet<Id> = HashSet::new();
        let mut scan = |content: &[Id], depth: u8| -> Result<()> {
            self.repo.visit_content(
                content,
                depth,
                &mut |id| {
                    lists.push(*id);
                    seen.insert(*id)
                },
                &mut |id| data.push(*id),
                &mut |_, e| Err(e),
            )
        };
        scan(&node.content, node.content_depth)?;
        if let Some(base) = &node.delta_base {
            scan(&base.content, base.depth)?;
        }
        let mut found: HashSet<Id> = HashSet::new();
        for id in lists {
            if self.matcher.wants(&id) && found.insert(id) {
                out.push(Object::ContentList(id));
            }
        }
        for id in data {
            if self.matcher.wants(&id) && found.insert(id) {
                out.push(Object::Data(id));
            }
        }
        Ok(out)
    }

    fn node_matches(&self, path: &Path, node: &Node, objects: &[Object]) -> bool {
        let in_time = self.opts.oldest.is_none_or(|t| node.mtime >= t)
            && self.opts.newest.is_none_or(|t| node.mtime <= t);
        match self.matcher {
            Matcher::Paths(set) => in_time && set.matches(path),
            Matcher::Ids { .. } => !objects.is_empty(),
        }
    }
}

/// A node without what output never shows (content ids, inline listings).
fn slim(node: &Node) -> Node {
    let mut n = node.clone();
    n.content = Vec::new();
    n.inline = None;
    n.delta_base = None;
    n
}
