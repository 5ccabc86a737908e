//! Reading the source file system: exclusion patterns and entry metadata.
//!
//! Patterns follow restic's habits: a pattern starting with `/` is matched
//! against the whole absolute path, any other pattern against the trailing
//! components at any depth (`*.log` excludes every `.log` file, `cache/tmp`
//! every `tmp` inside a `cache`). `*` does not cross `/`; `**` does. An
//! excluded directory is not descended into.

use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use std::fs::Metadata;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

/// A compiled set of exclusion patterns.
#[derive(Clone, Debug)]
pub struct PatternSet {
    set: GlobSet,
    empty: bool,
}

impl PatternSet {
    /// Compiles patterns; a bad pattern is an error naming it.
    pub fn new(patterns: &[String]) -> Result<PatternSet> {
        let mut b = GlobSetBuilder::new();
        let mut empty = true;
        for p in patterns {
            let p = p.trim_end_matches('/');
            if p.is_empty() {
                continue;
            }
            empty = false;
            let full = if p.starts_with('/') {
                p.to_string()
            } else {
                format!("**/{p}")
            };
            let g = GlobBuilder::new(&full)
                .literal_separator(true)
                .backslash_escape(true)
                .build()
                .map_err(|e| Error::InvalidInput(format!("invalid pattern {p:?}: {e}")))?;
            b.add(g);
        }
        let set = b
            .build()
            .map_err(|e| Error::InvalidInput(format!("invalid patterns: {e}")))?;
        Ok(PatternSet { set, empty })
    }

    /// Reads patterns from a file: one per line, `#` comments and blank
    /// lines ignored.
    pub fn read_file(path: &Path) -> Result<Vec<String>> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Ok(text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(String::from)
            .collect())
    }

    /// Whether `path` (absolute) matches any pattern.
    pub fn matches(&self, path: &Path) -> bool {
        !self.empty && self.set.is_match(path)
    }

    /// Whether the set has no patterns.
    pub fn is_empty(&self) -> bool {
        self.empty
    }
}

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
