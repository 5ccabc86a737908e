//! Reading the source file system: entry metadata (and the exclusion
//! patterns, [`PatternSet`], applied to it). An excluded directory is not
//! descended into.

use crate::format::tree::{Node, NodeKind};
pub use crate::patterns::PatternSet;
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// Builds a node (without content or subtree) from `lstat` metadata.
pub fn node_from_metadata(name: &[u8], md: &Metadata) -> Node {
    let ft = md.file_type();
    let kind = if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_file() {
        NodeKind::File
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else {
        NodeKind::Socket
    };
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = md.mode() & 0o7777;
    n.uid = md.uid();
    n.gid = md.gid();
    n.mtime = md.mtime();
    n.mtime_nsec = md.mtime_nsec().clamp(0, 999_999_999) as u32;
    n.ctime = md.ctime();
    n.ctime_nsec = md.ctime_nsec().clamp(0, 999_999_999) as u32;
    n.inode = md.ino();
    n.device = md.dev();
    n.links = md.nlink();
    n.rdev = if matches!(kind, NodeKind::CharDevice | NodeKind::BlockDevice) {
        md.rdev()
    } else {
        0
    };
    n.size = if kind == NodeKind::File { md.len() } else { 0 };
    n
}

/// The final component of a path as bytes (`/` for the root).
pub fn file_name_bytes(path: &Path) -> Vec<u8> {
    path.file_name()
        .map(|n| n.as_bytes().to_vec())
        .unwrap_or_else(|| b"/".to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_like_restic() {
        let p = PatternSet::new(&["*.log".into(), "/tmp/x".into(), "cache/tmp".into()]).unwrap();
        assert!(p.matches(Path::new("/a/b/c.log")));
        assert!(!p.matches(Path::new("/a/b/c.log2")));
        assert!(p.matches(Path::new("/tmp/x")));
        assert!(!p.matches(Path::new("/a/tmp/x")));
        assert!(p.matches(Path::new("/a/cache/tmp")));
        assert!(!p.matches(Path::new("/a/cache/tmp2")));
        assert!(PatternSet::new(&["a[".into()]).is_err());
        assert!(!PatternSet::new(&[]).unwrap().matches(Path::new("/x")));
    }
}
