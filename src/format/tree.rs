//! Directory listings (tree blobs) and the metadata of each entry.
//!
//! A tree is stored as a blob of its own, named by its content, so an
//! unchanged directory produces the same tree id and is stored once no matter
//! how many snapshots contain it. Names are raw bytes (Unix file names need
//! not be UTF-8) and must be plain names: decoding rejects `.`, `..`, empty
//! names, names with `/` or NUL, and duplicates, because restore builds paths
//! from them and must never be steered outside its target.

use crate::error::{Error, Result};
use crate::format::envelope::{from_postcard, to_postcard};
use crate::format::id::Id;
use serde::{Deserialize, Serialize};

/// What kind of file system object a node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum NodeKind {
    /// Regular file; content in [`Node::content`].
    File,
    /// Directory; listing in [`Node::subtree`].
    Dir,
    /// Symbolic link; target in [`Node::link_target`].
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device; number in [`Node::rdev`].
    CharDevice,
    /// Block device; number in [`Node::rdev`].
    BlockDevice,
    /// Unix socket (recorded, not restored).
    Socket,
}

impl NodeKind {
    /// Lower-case name for listings and JSON.
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "chardev",
            NodeKind::BlockDevice => "blockdev",
            NodeKind::Socket => "socket",
        }
    }
}

/// One directory entry with its metadata.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (raw bytes).
    pub name: Vec<u8>,
    /// Object kind.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// Modification time, seconds since the Unix epoch.
    pub mtime: i64,
    /// Nanoseconds part of the modification time (< 10^9).
    pub mtime_nsec: u32,
    /// Status change time, seconds (for change detection only).
    pub ctime: i64,
    /// Nanoseconds part of the change time.
    pub ctime_nsec: u32,
    /// Inode number at backup time (hard links, change detection).
    pub inode: u64,
    /// Device id at backup time.
    pub device: u64,
    /// Hard link count at backup time.
    pub links: u64,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Device number for character and block devices.
    pub rdev: u64,
    /// Target of a symlink (raw bytes).
    pub link_target: Vec<u8>,
    /// A file's content, in order: data blob ids when `content_depth` is
    /// 0, else ids of content-list blobs of that depth (see [`crate::format::content`]).
    pub content: Vec<Id>,
    /// Tree blob id of a directory's listing.
    pub subtree: Option<Id>,
    /// How many levels of content-list blobs lie between `content` and the
    /// data blobs (0: `content` lists the data blobs themselves). Not part
    /// of the version 1 node encoding: it travels in the tree's extension
    /// block (format-spec/v1-databases.md), so trees without indirect
    /// content encode exactly as before.
    #[serde(skip)]
    pub content_depth: u8,
    /// A small directory's listing stored inside this node instead of as a
    /// tree blob of its own (then `subtree` is `None`). Travels in the
    /// tree's extension block, like `content_depth`.
    #[serde(skip)]
    pub inline: Option<Box<Tree>>,
    /// The file version this node's delta blobs are encoded against (see
    /// [`crate::format::blob`]); it must stay stored as long as this node does.
    /// Travels in the tree's extension block.
    #[serde(skip)]
    pub delta_base: Option<BaseContent>,
}

/// A file version that delta blobs are encoded against: the data blob at
/// position i of a delta file is either an ordinary blob or a delta against
/// the data blob at position i of its base.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BaseContent {
    /// Content-list levels under `content` (like [`Node::content_depth`]).
    pub depth: u8,
    /// The base's content ids (data blobs at depth 0, else content lists).
    pub content: Vec<Id>,
}

impl Node {
    /// An empty node of `kind` named `name`, to be filled in.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Node {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            mtime: 0,
            mtime_nsec: 0,
            ctime: 0,
            ctime_nsec: 0,
            inode: 0,
            device: 0,
            links: 0,
            size: 0,
            rdev: 0,
            link_target: Vec::new(),
            content: Vec::new(),
            subtree: None,
            content_depth: 0,
            inline: None,
            delta_base: None,
        }
    }

    /// Whether this is a directory (with a listing, inline or not).
    pub fn is_dir(&self) -> bool {
        self.kind == NodeKind::Dir
    }

    /// The name for display (lossy UTF-8).
    pub fn display_name(&self) -> String {
        String::from_utf8_lossy(&self.name).into_owned()
    }
}

/// Checks that `name` is a single, plain path component.
pub fn validate_name(name: &[u8]) -> std::result::Result<(), String> {
    if name.is_empty() {
        return Err("empty file name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!(
            "file name {:?} is not allowed",
            String::from_utf8_lossy(name)
        ));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!(
            "file name {:?} contains '/' or NUL",
            String::from_utf8_lossy(name)
        ));
    }
    Ok(())
}

/// Per-node fields of the tree extension block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct NodeExt {
    content_depth: u8,
    /// The complete encoding of an inline subtree.
    inline: Option<Vec<u8>>,
    /// The file version this file's delta blobs are encoded against.
    delta_base: Option<BaseContent>,
}

/// A directory listing whose encoding is at most this many bytes is stored
/// inline in its parent's node rather than as a tree blob of its own. Small
/// directories are common (`locale/xx/LC_MESSAGES`), and a blob costs ~130
/// bytes of sealing, pack header and index entry besides compressing worse
/// alone (measured in the README: Django releases).
pub const INLINE_MAX: usize = 1024;

/// How deeply directories may nest below a snapshot's root tree. Writers
/// never exceed it (a path that deep is longer than any path the kernel
/// accepts); readers refuse deeper trees with an error instead of walking
/// them.
pub const MAX_TREE_DEPTH: usize = 4096;

/// How deeply inline subtrees may nest (bounds decoder recursion; an
/// encoder that honours [`INLINE_MAX`] cannot nest deeper than ~12).
pub const MAX_INLINE_DEPTH: usize = 32;

/// The tree extension block: one entry per node, in node order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct TreeExt {
    nodes: Vec<NodeExt>,
}

/// A directory listing: nodes sorted by name bytes, names unique.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tree {
    /// The entries, strictly ascending by `name`.
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Sorts the nodes into canonical order.
    pub fn sort(&mut self) {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
    }

    /// Canonical encoding (the blob plaintext). Sorts first.
    ///
    /// The version 1 encoding of the nodes, followed by the extension block
    /// only if some node needs it (a file with indirect content, or an
    /// inline subtree).
    pub fn encode(&mut self) -> Result<Vec<u8>> {
        self.sort();
        let mut out = to_postcard(self)?;
        if self
            .nodes
            .iter()
            .any(|n| n.content_depth != 0 || n.inline.is_some() || n.delta_base.is_some())
        {
            let mut nodes = Vec::with_capacity(self.nodes.len());
            for n in &mut self.nodes {
                nodes.push(NodeExt {
                    content_depth: n.content_depth,
                    inline: match &mut n.inline {
                        Some(t) => Some(t.encode()?),
                        None => None,
                    },
                    delta_base: n.delta_base.clone(),
                });
            }
            out.extend_from_slice(&to_postcard(&TreeExt { nodes })?);
        }
        Ok(out)
    }

    /// Decodes and validates a tree blob plaintext.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Tree> {
        Tree::decode_nested(bytes, what, 0)
    }

    fn decode_nested(bytes: &[u8], what: &str, depth: usize) -> Result<Tree> {
        if depth > MAX_INLINE_DEPTH {
            return Err(Error::corrupt(
                what,
                format!("inline subtrees nested deeper than {MAX_INLINE_DEPTH}"),
            ));
        }
        let (mut t, rest) = postcard::take_from_bytes::<Tree>(bytes)
            .map_err(|e| Error::corrupt(what, format!("malformed content: {e}")))?;
        if !rest.is_empty() {
            let ext: TreeExt = from_postcard(rest, what)?;
            if ext.nodes.len() != t.nodes.len() {
                return Err(Error::corrupt(
                    what,
                    format!(
                        "extension block describes {} nodes, the tree has {}",
                        ext.nodes.len(),
                        t.nodes.len()
                    ),
                ));
            }
            if ext
                .nodes
                .iter()
                .all(|e| e.content_depth == 0 && e.inline.is_none() && e.delta_base.is_none())
            {
                // The encoder omits a block that says nothing: one encoding per tree.
                return Err(Error::corrupt(what, "empty extension block"));
            }
            for (n, e) in t.nodes.iter_mut().zip(ext.nodes) {
                n.content_depth = e.content_depth;
                n.delta_base = e.delta_base;
                if let Some(b) = e.inline {
                    n.inline = Some(Box::new(Tree::decode_nested(&b, what, depth + 1)?));
                }
            }
        }
        t.validate().map_err(|p| Error::corrupt(what, p))?;
        Ok(t)
    }

    /// Structural checks applied to every decoded tree.
    pub fn validate(&self) -> std::result::Result<(), String> {
        for (i, n) in self.nodes.iter().enumerate() {
            validate_name(&n.name)?;
            if i > 0 && self.nodes[i - 1].name >= n.name {
                return Err(format!(
                    "entries not strictly sorted at {:?}",
                    n.display_name()
                ));
            }
            if n.mtime_nsec >= 1_000_000_000 || n.ctime_nsec >= 1_000_000_000 {
                return Err(format!("{}: nanoseconds out of range", n.display_name()));
            }
            if n.mode > 0o7777 {
                return Err(format!(
                    "{}: mode {:o} out of range",
                    n.display_name(),
                    n.mode
                ));
            }
            match n.kind {
                NodeKind::Dir if n.subtree.is_some() == n.inline.is_some() => {
                    return Err(format!(
                        "directory {} needs exactly one of a subtree id and an inline listing",
                        n.display_name()
                    ));
                }
                NodeKind::Dir => {}
                _ if n.subtree.is_some() || n.inline.is_some() => {
                    return Err(format!(
                        "{} is not a directory but has a subtree",
                        n.display_name()
                    ));
                }
                _ => {}
            }
            if n.kind != NodeKind::File && !n.content.is_empty() {
                return Err(format!(
                    "{} is not a file but has content",
                    n.display_name()
                ));
            }
            if n.content_depth != 0 && (n.kind != NodeKind::File || n.content.is_empty()) {
                return Err(format!(
                    "{}: indirect content on a {} without content",
                    n.display_name(),
                    n.kind.name()
                ));
            }
            if let Some(b) = &n.delta_base {
                if n.kind != NodeKind::File || n.content.is_empty() || b.content.is_empty() {
                    return Err(format!(
                        "{}: delta base on a {} without content, or an empty base",
                        n.display_name(),
                        n.kind.name()
                    ));
                }
                if b.depth > crate::format::content::MAX_DEPTH {
                    return Err(format!(
                        "{}: delta base depth {} out of range",
                        n.display_name(),
                        b.depth
                    ));
                }
            }
            if n.content_depth > crate::format::content::MAX_DEPTH {
                return Err(format!(
                    "{}: content depth {} out of range",
                    n.display_name(),
                    n.content_depth
                ));
            }
        }
        Ok(())
    }

    /// Finds a node by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_hostile_names() {
        for bad in [&b""[..], b".", b"..", b"a/b", b"/etc", b"a\0b"] {
            let t = Tree {
                nodes: vec![Node::new(bad.to_vec(), NodeKind::File)],
            };
            let bytes = to_postcard(&t).unwrap();
            assert!(Tree::decode(&bytes, "t").is_err(), "{bad:?}");
        }
        let t = Tree {
            nodes: vec![
                Node::new(b"a".to_vec(), NodeKind::File),
                Node::new(b"a".to_vec(), NodeKind::File),
            ],
        };
        assert!(Tree::decode(&to_postcard(&t).unwrap(), "t").is_err());
    }

    #[test]
    fn extension_block_round_trip_and_rules() {
        let mut plain = Tree {
            nodes: vec![Node::new(b"a".to_vec(), NodeKind::File)],
        };
        let v1 = plain.encode().unwrap();
        assert_eq!(
            v1,
            to_postcard(&plain).unwrap(),
            "no block without indirect content"
        );
        let mut f = Node::new(b"big".to_vec(), NodeKind::File);
        f.content = vec![Id([1; 32])];
        f.content_depth = 2;
        let mut t = Tree {
            nodes: vec![f, Node::new(b"dir".to_vec(), NodeKind::File)],
        };
        let bytes = t.encode().unwrap();
        assert_eq!(Tree::decode(&bytes, "t").unwrap(), t);
        // A block of zeros, a block of the wrong length, and indirect
        // content on an empty file are rejected.
        let zeros = [
            v1.clone(),
            to_postcard(&TreeExt {
                nodes: vec![NodeExt {
                    content_depth: 0,
                    inline: None,
                    delta_base: None,
                }],
            })
            .unwrap(),
        ]
        .concat();
        assert!(Tree::decode(&zeros, "t").is_err());
        let short = [
            to_postcard(&t).unwrap(),
            to_postcard(&TreeExt {
                nodes: vec![NodeExt {
                    content_depth: 1,
                    inline: None,
                    delta_base: None,
                }],
            })
            .unwrap(),
        ]
        .concat();
        assert!(Tree::decode(&short, "t").is_err());
        let empty = [
            v1,
            to_postcard(&TreeExt {
                nodes: vec![NodeExt {
                    content_depth: 1,
                    inline: None,
                    delta_base: None,
                }],
            })
            .unwrap(),
        ]
        .concat();
        assert!(Tree::decode(&empty, "t").is_err());
        // Every truncation or extension of the bytes fails cleanly.
        for i in 0..bytes.len() {
            let _ = Tree::decode(&bytes[..i], "t");
        }
        assert!(Tree::decode(&[bytes.clone(), vec![0]].concat(), "t").is_err());
    }

    fn dir(name: &[u8], inline: Tree) -> Node {
        let mut d = Node::new(name.to_vec(), NodeKind::Dir);
        d.inline = Some(Box::new(inline));
        d
    }

    #[test]
    fn inline_subtrees_round_trip_and_are_bounded() {
        let leaf = Tree {
            nodes: vec![Node::new(b"f".to_vec(), NodeKind::File)],
        };
        let mut with_sub = Node::new(b"sub".to_vec(), NodeKind::Dir);
        with_sub.subtree = Some(Id([7; 32]));
        let mut t = Tree {
            nodes: vec![
                dir(
                    b"b",
                    Tree {
                        nodes: vec![dir(b"c", leaf.clone())],
                    },
                ),
                dir(b"a", leaf.clone()),
                with_sub,
            ],
        };
        let bytes = t.encode().unwrap();
        let back = Tree::decode(&bytes, "t").unwrap();
        assert_eq!(back, t);
        assert_eq!(back.nodes[0].name, b"a");
        // Every truncation fails cleanly.
        for i in 0..bytes.len() {
            let _ = Tree::decode(&bytes[..i], "t");
        }
        // A directory with both an id and an inline listing, and a file
        // with an inline listing, are rejected.
        let mut both = dir(b"d", leaf.clone());
        both.subtree = Some(Id([1; 32]));
        let mut file = dir(b"f", leaf.clone());
        file.kind = NodeKind::File;
        for bad in [both, file] {
            let mut t = Tree { nodes: vec![bad] };
            let bytes = t.encode().unwrap();
            assert!(Tree::decode(&bytes, "t").is_err());
        }
        // Nesting is bounded (no stack overflow on hostile input).
        let mut deep = leaf;
        for _ in 0..MAX_INLINE_DEPTH + 2 {
            deep = Tree {
                nodes: vec![dir(b"x", deep)],
            };
        }
        let err = Tree::decode(&deep.encode().unwrap(), "t").unwrap_err();
        assert!(err.to_string().contains("nested deeper"), "{err}");
    }

    #[test]
    fn round_trip_and_lookup() {
        let mut t = Tree {
            nodes: vec![
                Node::new(b"b".to_vec(), NodeKind::File),
                Node::new(vec![0xff, 0x01], NodeKind::Symlink),
            ],
        };
        let bytes = t.encode().unwrap();
        let back = Tree::decode(&bytes, "t").unwrap();
        assert_eq!(back, t);
        assert!(back.get(b"b").is_some());
        assert!(back.get(b"c").is_none());
    }
}
