//! Objects a key holder can craft: trees, file nodes and snapshots written
//! through the library with the repository's key, for the hostile-input
//! tests (`tests/hostile.rs`, `tests/hostile_readers.rs`).

use super::{PASSWORD, Repo, SMALL_CHUNKS, Workspace, write};
use cairn::Repository;
use cairn::format::blob::BlobType;
use cairn::format::id::Id;
use cairn::format::snapshot::Snapshot;
use cairn::format::tree::{Node, NodeKind, Tree};
use cairn::repository::packer::Packer;
use cairn::repository::{FullIndex, SnapshotFilter};
use std::path::PathBuf;

/// What `base` backs up as `src/f.txt`.
pub const CONTENT: &[u8] = b"hello hostile world\n";

/// The repository opened through the library, index loaded.
pub fn open(repo: &Repo) -> Repository<FullIndex> {
    Repository::open(&repo.path, PASSWORD.as_bytes())
        .unwrap()
        .with_full_index()
        .unwrap()
}

/// A repository with one real snapshot of a small tree (`src/f.txt`).
pub fn base(ws: &Workspace) -> (Repo, PathBuf, String) {
    let src = ws.path("src");
    write(&src.join("f.txt"), CONTENT);
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let id = repo.backup(&[&src], &[]);
    (repo, src, id)
}

/// The snapshot `id` with another root tree and recorded counts.
pub fn with_tree(r: &Repository<FullIndex>, id: &str, tree: Id, files: u64, dirs: u64) -> Snapshot {
    let (_, mut s) = r.find_snapshot(id, &SnapshotFilter::default()).unwrap();
    s.tree = tree;
    s.summary.total_files = files;
    s.summary.dirs = dirs;
    s
}

pub fn file_node(name: &str, content: Vec<Id>, depth: u8, size: u64) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
    n.mode = 0o644;
    n.links = 1;
    n.content = content;
    n.content_depth = depth;
    n.size = size;
    n
}

pub fn dir_node(name: &str, subtree: Id) -> Node {
    let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::Dir);
    n.mode = 0o755;
    n.subtree = Some(subtree);
    n
}

pub fn save_tree(p: &Packer, nodes: Vec<Node>) -> Id {
    let mut t = Tree { nodes };
    p.save(BlobType::Tree, &t.encode().unwrap()).unwrap().0
}
