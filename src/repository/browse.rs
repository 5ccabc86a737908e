//! Navigating a snapshot's trees by path (for `ls`, `dump` and `restore`).
//!
//! Walks are iterative with an explicit stack bounded by
//! [`MAX_TREE_DEPTH`], so no input can overflow the call stack, and
//! [`count_entries`] measures what a walk would visit (reading each distinct
//! tree once) before anyone starts one: trees that share subtrees can name
//! more paths than any disk holds.

use super::{Locate, Repository};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::tree::{MAX_TREE_DEPTH, Node, NodeKind, Tree};
use std::collections::HashMap;
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
/// from `f` skips a directory's contents; an error from `f` stops the walk.
pub fn walk<S: Locate>(
    repo: &Repository<S>,
    dir: &Node,
    prefix: &Path,
    f: &mut dyn FnMut(&Path, &Node) -> Result<bool>,
) -> Result<()> {
    let mut stack: Vec<(Tree, usize, PathBuf)> =
        vec![(repo.listing(dir)?.into_owned(), 0, prefix.to_path_buf())];
    loop {
        let depth = stack.len();
        let Some((tree, pos, path)) = stack.last_mut() else {
            break;
        };
        let Some(node) = tree.nodes.get(*pos) else {
            stack.pop();
            continue;
        };
        *pos += 1;
        let child = path.join(std::ffi::OsStr::from_bytes(&node.name));
        if f(&child, node)? && node.is_dir() {
            if depth >= MAX_TREE_DEPTH {
                return Err(too_deep(&child));
            }
            let listing = repo.listing(node)?.into_owned();
            stack.push((listing, 0, child));
        }
    }
    Ok(())
}

/// The error for a tree nested deeper than [`MAX_TREE_DEPTH`].
pub fn too_deep(path: &Path) -> Error {
    let shown = path.to_string_lossy();
    let shown = match shown.char_indices().nth(120) {
        Some((cut, _)) => format!("{}...", &shown[..cut]),
        None => shown.into_owned(),
    };
    Error::corrupt(
        "tree",
        format!(
            "{shown}: directories nested deeper than {MAX_TREE_DEPTH} levels (damaged or hostile)"
        ),
    )
}

/// How many entries lie below the directory node `dir` (at any depth),
/// counting a shared subtree once per place it appears but reading it
/// once; stops with an error as soon as the count passes `limit` or the
/// nesting passes [`MAX_TREE_DEPTH`].
pub fn count_entries<S: Locate>(repo: &Repository<S>, dir: &Node, limit: u64) -> Result<u64> {
    struct Frame {
        id: Option<Id>,
        tree: Tree,
        pos: usize,
        sum: u64,
    }
    let over = |n: u64| {
        Error::corrupt(
            "tree",
            format!(
                "the snapshot's trees name more than {limit} entries ({n} counted so far) though it records far fewer: its trees share subtrees in a way no backup writes (damaged or hostile)"
            ),
        )
    };
    let mut memo: HashMap<Id, u64> = HashMap::new();
    let mut stack = vec![Frame {
        id: dir.subtree,
        tree: repo.listing(dir)?.into_owned(),
        pos: 0,
        sum: 0,
    }];
    let mut total = 0u64;
    // Everything counted so far, in every frame.
    let mut running = 0u64;
    loop {
        let depth = stack.len();
        let Some(top) = stack.last_mut() else { break };
        if let Some(node) = top.tree.nodes.get(top.pos) {
            top.pos += 1;
            top.sum = top.sum.saturating_add(1);
            running = running.saturating_add(1);
            if node.is_dir() {
                let known = node.subtree.and_then(|id| memo.get(&id).copied());
                match known {
                    Some(n) => {
                        top.sum = top.sum.saturating_add(n);
                        running = running.saturating_add(n);
                    }
                    None => {
                        if depth >= MAX_TREE_DEPTH {
                            return Err(too_deep(Path::new(&node.display_name())));
                        }
                        let frame = Frame {
                            id: node.subtree,
                            tree: repo.listing(node)?.into_owned(),
                            pos: 0,
                            sum: 0,
                        };
                        stack.push(frame);
                    }
                }
            }
            if running > limit {
                return Err(over(running));
            }
            continue;
        }
        let done = stack.pop().expect("a frame");
        if let Some(id) = done.id {
            memo.insert(id, done.sum);
        }
        match stack.last_mut() {
            Some(parent) => parent.sum = parent.sum.saturating_add(done.sum),
            None => total = done.sum,
        }
    }
    Ok(total)
}
