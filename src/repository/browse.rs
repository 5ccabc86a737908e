//! Navigating a snapshot's trees by path (for `ls`, `dump` and `restore`).

use super::{Locate, Repository};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::tree::{Node, NodeKind};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Splits a snapshot path like `/home/me/file` into components; `.` and
/// empty components are ignored, `..` is refused.
pub fn components(path: impl AsRef<Path>) -> Result<Vec<Vec<u8>>> {
    let path = path.as_ref();
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n.as_bytes().to_vec()),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(Error::InvalidInput(format!(
                    "{}: '..' is not allowed in a snapshot path",
                    path.display()
                )));
            }
        }
    }
    Ok(out)
}

/// Finds the node at `path` in the tree `root`. The root itself is returned
/// as a synthetic directory node named `/`.
pub fn lookup<S: Locate>(repo: &Repository<S>, root: &Id, path: impl AsRef<Path>) -> Result<Node> {
    let path = path.as_ref();
    let mut node = Node::new(b"/".to_vec(), NodeKind::Dir);
    node.subtree = Some(*root);
    node.mode = 0o755;
    for comp in components(path)? {
        if !node.is_dir() {
            return Err(Error::PathNotFound(path.display().to_string()));
        }
        let next = repo
            .listing(&node)?
            .get(&comp)
            .cloned()
            .ok_or_else(|| Error::PathNotFound(path.display().to_string()))?;
        node = next;
    }
    Ok(node)
}

/// Calls `f` for every node below the directory node `dir`, depth first,
/// with its full path (`prefix` joined with the names). Returning `false`
/// from `f` skips a directory's contents.
pub fn walk<S: Locate>(
    repo: &Repository<S>,
    dir: &Node,
    prefix: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> bool,
) -> Result<()> {
    let tree = repo.listing(dir)?;
    for node in &tree.nodes {
        let path: PathBuf = prefix.join(std::ffi::OsStr::from_bytes(&node.name));
        let descend = f(&path, node);
        if descend && node.is_dir() {
            walk(repo, node, &path, f)?;
        }
    }
    Ok(())
}
