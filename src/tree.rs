//! Directory listings (tree blobs) and the metadata of each entry.
//!
//! A tree is stored as a blob of its own, named by its content, so an
//! unchanged directory produces the same tree id and is stored once no matter
//! how many snapshots contain it. Names are raw bytes (Unix file names need
//! not be UTF-8) and must be plain names: decoding rejects `.`, `..`, empty
//! names, names with `/` or NUL, and duplicates, because restore builds paths
//! from them and must never be steered outside its target.

use crate::envelope::{from_postcard, to_postcard};
use crate::error::{Error, Result};
use crate::id::Id;
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
    /// Data blob ids of a file's content, in order.
    pub content: Vec<Id>,
    /// Tree blob id of a directory's listing.
    pub subtree: Option<Id>,
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
        }
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
    pub fn encode(&mut self) -> Result<Vec<u8>> {
        self.sort();
        to_postcard(self)
    }

    /// Decodes and validates a tree blob plaintext.
    pub fn decode(bytes: &[u8], what: &str) -> Result<Tree> {
        let t: Tree = from_postcard(bytes, what)?;
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
                NodeKind::Dir if n.subtree.is_none() => {
                    return Err(format!("directory {} has no subtree", n.display_name()));
                }
                NodeKind::Dir => {}
                _ if n.subtree.is_some() => {
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
