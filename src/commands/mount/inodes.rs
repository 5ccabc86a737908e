//! The inode table: which number the kernel knows each entry by.
//!
//! Numbers are handed out lazily, from a counter that never goes back, the
//! first time the kernel looks an entry up (or sees it in a directory
//! listing), so a mount of a repository with millions of files costs
//! nothing until they are visited. An entry is found again by a key:
//!
//! - `(parent inode, name)` for everything, which makes every directory
//!   have exactly one path (the kernel does not allow a directory to
//!   appear in two places, so even one snapshot shown under `ids/` and
//!   `snapshots/` is two directories);
//! - `(snapshot directory, device, inode)` for a file recorded with more
//!   than one link, so that hard links of one snapshot share one inode
//!   number and `ls -i`, `find -samefile`, `du` and `tar` see them as one
//!   file. Two links whose recorded contents disagree (the file changed
//!   while the backup read it) are kept apart.
//!
//! The kernel counts its references ("lookups") and returns them with
//! `forget`; an entry of a snapshot's tree whose count drops to zero is
//! dropped, so memory follows what the kernel caches, not everything ever
//! visited. The virtual directories (`ids/`, `snapshots/`, ...) and
//! snapshot roots are few and stay.

use super::reader::FileMap;
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::format::tree::{Node, Tree};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

/// The inode number of the mount's root.
pub const ROOT: u64 = 1;

/// A virtual directory (everything above the snapshots' own trees).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VirtualDir {
    /// The mount's root: `ids`, `snapshots`, `hosts`, `tags`.
    Root,
    /// `ids/`.
    Ids,
    /// `snapshots/`.
    Snapshots,
    /// `hosts/`.
    Hosts,
    /// `tags/`.
    Tags,
    /// `hosts/<dir>/`.
    Host(String),
    /// `tags/<dir>/`.
    Tag(String),
}

/// What an inode is.
#[derive(Debug)]
pub enum What {
    /// A virtual directory.
    Virtual(VirtualDir),
    /// A `latest` symlink with this target (a new target is a new inode).
    Latest(Vec<u8>),
    /// The root directory of a snapshot.
    SnapshotRoot {
        /// The snapshot's id.
        id: Id,
        /// The snapshot.
        snapshot: Arc<Snapshot>,
    },
    /// An entry of a snapshot's tree: node `index` of `tree`.
    Node {
        /// The directory listing holding the node.
        tree: Arc<Tree>,
        /// Its position there.
        index: usize,
        /// The inode of the snapshot root it belongs to.
        root: u64,
    },
}

/// One inode.
#[derive(Debug)]
pub struct Inode {
    /// Its number.
    pub ino: u64,
    /// The directory it was first found in (its `..` if it is one).
    pub parent: u64,
    /// Its name there.
    pub name: Vec<u8>,
    /// What it is.
    pub what: What,
    /// A directory's listing, once read.
    pub listing: OnceLock<Arc<Tree>>,
    /// A file's blobs, once listed.
    pub file: OnceLock<Arc<FileMap>>,
}

impl Inode {
    fn new(ino: u64, parent: u64, name: Vec<u8>, what: What) -> Inode {
        Inode {
            ino,
            parent,
            name,
            what,
            listing: OnceLock::new(),
            file: OnceLock::new(),
        }
    }

    /// The tree node, for entries of a snapshot's tree.
    pub fn node(&self) -> Option<&Node> {
        match &self.what {
            What::Node { tree, index, .. } => tree.nodes.get(*index),
            _ => None,
        }
    }

    /// The snapshot root this entry belongs to (itself for a root).
    pub fn root(&self) -> Option<u64> {
        match &self.what {
            What::Node { root, .. } => Some(*root),
            What::SnapshotRoot { .. } => Some(self.ino),
            _ => None,
        }
    }

    /// Whether it is a directory.
    pub fn is_dir(&self) -> bool {
        match &self.what {
            What::Virtual(_) | What::SnapshotRoot { .. } => true,
            What::Latest(_) => false,
            What::Node { .. } => self.node().is_some_and(Node::is_dir),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Key {
    /// A directory entry: parent and name (for virtual entries, the name
    /// followed by NUL and what tells two versions apart).
    Name(u64, Vec<u8>),
    /// A hard-linked file: snapshot root, device, inode at backup time.
    Link(u64, u64, u64),
}

struct Slot {
    inode: Arc<Inode>,
    lookups: u64,
    key: Option<Key>,
    /// Kept whatever the kernel forgets (virtual entries, snapshot roots).
    permanent: bool,
}

/// The inode table. Callers hold it behind a mutex and keep the lock only
/// for these quick operations.
pub struct Table {
    next: u64,
    slots: HashMap<u64, Slot>,
    keys: HashMap<Key, u64>,
}

impl Default for Table {
    fn default() -> Self {
        Table::new()
    }
}

impl Table {
    /// A table holding the root directory.
    pub fn new() -> Table {
        let root = Inode::new(ROOT, ROOT, Vec::new(), What::Virtual(VirtualDir::Root));
        let mut slots = HashMap::new();
        slots.insert(
            ROOT,
            Slot {
                inode: Arc::new(root),
                lookups: 0,
                key: None,
                permanent: true,
            },
        );
        Table {
            next: ROOT + 1,
            slots,
            keys: HashMap::new(),
        }
    }

    /// The inode numbered `ino`, if the kernel may still use it.
    pub fn get(&self, ino: u64) -> Option<Arc<Inode>> {
        self.slots.get(&ino).map(|s| s.inode.clone())
    }

    /// How many inodes are held (for tests and reports).
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Whether only the root is held.
    pub fn is_empty(&self) -> bool {
        self.slots.len() <= 1
    }

    /// The virtual entry `name` of `parent`, told apart from earlier
    /// versions of the same name by `version` (a snapshot id, a link
    /// target); made by `make` if new. Counts a lookup if `count`.
    pub fn virtual_child(
        &mut self,
        parent: u64,
        name: &[u8],
        version: &[u8],
        count: bool,
        make: impl FnOnce() -> What,
    ) -> Arc<Inode> {
        let mut k = name.to_vec();
        k.push(0);
        k.extend_from_slice(version);
        self.intern(Key::Name(parent, k), parent, name, count, true, make)
    }

    /// The inode of node `index` of `tree`, listed in directory `parent`
    /// of the snapshot whose root is `root`. Counts a lookup if `count`.
    pub fn node_child(
        &mut self,
        parent: u64,
        root: u64,
        tree: &Arc<Tree>,
        index: usize,
        count: bool,
    ) -> Arc<Inode> {
        let node = &tree.nodes[index];
        let make = || What::Node {
            tree: tree.clone(),
            index,
            root,
        };
        if !node.is_dir() && node.links > 1 {
            let key = Key::Link(root, node.device, node.inode);
            let same = match self.keys.get(&key).and_then(|i| self.slots.get(i)) {
                None => true,
                Some(s) => s.inode.node().is_some_and(|n| {
                    n.kind == node.kind && n.size == node.size && n.content == node.content
                }),
            };
            if same {
                return self.intern(key, parent, &node.name, count, false, make);
            }
        }
        let key = Key::Name(parent, node.name.clone());
        self.intern(key, parent, &node.name, count, false, make)
    }

    fn intern(
        &mut self,
        key: Key,
        parent: u64,
        name: &[u8],
        count: bool,
        permanent: bool,
        make: impl FnOnce() -> What,
    ) -> Arc<Inode> {
        if let Some(slot) = self.keys.get(&key).and_then(|i| self.slots.get_mut(i)) {
            if count {
                slot.lookups += 1;
            }
            return slot.inode.clone();
        }
        let ino = self.next;
        self.next += 1;
        let inode = Arc::new(Inode::new(ino, parent, name.to_vec(), make()));
        self.keys.insert(key.clone(), ino);
        self.slots.insert(
            ino,
            Slot {
                inode: inode.clone(),
                lookups: u64::from(count),
                key: Some(key),
                permanent,
            },
        );
        inode
    }

    /// Counts one more lookup of an inode the caller holds.
    pub fn count(&mut self, ino: u64) {
        if let Some(s) = self.slots.get_mut(&ino) {
            s.lookups += 1;
        }
    }

    /// The kernel dropped `n` references; an entry of a snapshot's tree
    /// with none left is forgotten.
    pub fn forget(&mut self, ino: u64, n: u64) {
        let Some(slot) = self.slots.get_mut(&ino) else {
            return;
        };
        slot.lookups = slot.lookups.saturating_sub(n);
        if slot.lookups > 0 || slot.permanent {
            return;
        }
        if let Some(slot) = self.slots.remove(&ino)
            && let Some(key) = slot.key
            && self.keys.get(&key) == Some(&ino)
        {
            self.keys.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tree::NodeKind;

    fn file(name: &str, dev: u64, ino: u64, links: u64, content: u8) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        n.device = dev;
        n.inode = ino;
        n.links = links;
        n.size = 10;
        n.content = vec![Id([content; 32])];
        n
    }

    fn tree(nodes: Vec<Node>) -> Arc<Tree> {
        let mut t = Tree { nodes };
        t.sort();
        Arc::new(t)
    }

    #[test]
    fn hard_links_of_one_snapshot_share_an_inode() {
        let mut t = Table::new();
        let root = t.virtual_child(ROOT, b"snap", b"id", true, || {
            What::Virtual(VirtualDir::Ids)
        });
        let a = tree(vec![file("a", 1, 50, 2, 9), file("solo", 1, 51, 1, 9)]);
        let b = tree(vec![
            file("b", 1, 50, 2, 9),
            file("c", 1, 52, 2, 8),
            file("d", 1, 52, 2, 7),
        ]);
        let ia = t.node_child(10, root.ino, &a, 0, true);
        let ib = t.node_child(11, root.ino, &b, 0, true);
        assert_eq!(ia.ino, ib.ino, "same device and inode: one inode");
        let solo = t.node_child(10, root.ino, &a, 1, true);
        assert_ne!(solo.ino, ia.ino);
        // Same device and inode but different recorded content: apart.
        let c = t.node_child(11, root.ino, &b, 1, true);
        let d = t.node_child(11, root.ino, &b, 2, true);
        assert_ne!(c.ino, d.ino);
        // The same links in another snapshot are another file.
        let other = t.virtual_child(ROOT, b"snap2", b"id2", true, || {
            What::Virtual(VirtualDir::Ids)
        });
        let ia2 = t.node_child(20, other.ino, &a, 0, true);
        assert_ne!(ia2.ino, ia.ino);
        // Looking a name up again gives the same inode.
        assert_eq!(t.node_child(10, root.ino, &a, 1, true).ino, solo.ino);
    }

    #[test]
    fn forgotten_tree_entries_go_and_come_back_with_new_numbers() {
        let mut t = Table::new();
        let root = t.virtual_child(ROOT, b"snap", b"id", true, || {
            What::Virtual(VirtualDir::Ids)
        });
        let a = tree(vec![file("a", 1, 50, 1, 9)]);
        let ia = t.node_child(root.ino, root.ino, &a, 0, true);
        t.node_child(root.ino, root.ino, &a, 0, true);
        let held = t.len();
        t.forget(ia.ino, 1);
        assert!(t.get(ia.ino).is_some(), "one lookup left");
        t.forget(ia.ino, 1);
        assert!(t.get(ia.ino).is_none());
        assert_eq!(t.len(), held - 1);
        let again = t.node_child(root.ino, root.ino, &a, 0, true);
        assert!(again.ino > ia.ino, "numbers are never reused");
        // Virtual entries stay whatever the kernel forgets.
        t.forget(root.ino, 5);
        assert!(t.get(root.ino).is_some());
        // Unknown numbers are ignored.
        t.forget(9999, 1);
    }

    #[test]
    fn virtual_entries_are_versioned() {
        let mut t = Table::new();
        let l1 = t.virtual_child(ROOT, b"latest", b"A", true, || What::Latest(b"A".to_vec()));
        let l1b = t.virtual_child(ROOT, b"latest", b"A", true, || What::Latest(b"A".to_vec()));
        let l2 = t.virtual_child(ROOT, b"latest", b"B", true, || What::Latest(b"B".to_vec()));
        assert_eq!(l1.ino, l1b.ino);
        assert_ne!(l1.ino, l2.ino);
        assert_eq!(l2.name, b"latest");
    }
}
