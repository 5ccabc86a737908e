//! Which blobs the snapshots reference.
//!
//! Prune deletes only what this walk does not reach, so the walk is strict:
//! any tree (or content-list blob) it cannot read stops it with an error
//! instead of under-counting.

use super::{Locate, Repository};
use crate::error::Result;
use crate::format::id::Id;
use crate::format::tree::{NodeKind, Tree};
use std::collections::HashSet;

/// Blobs reachable from a set of snapshots.
#[derive(Default, Debug)]
pub struct Reachable {
    /// Tree blobs.
    pub trees: HashSet<Id>,
    /// Data blobs.
    pub data: HashSet<Id>,
}

impl Reachable {
    /// Whether a blob of either type is reachable.
    pub fn contains(&self, id: &Id) -> bool {
        self.trees.contains(id) || self.data.contains(id)
    }
}

/// Walks every tree under `roots` (the index must be loaded).
pub fn reachable<S: Locate>(
    repo: &Repository<S>,
    roots: impl IntoIterator<Item = Id>,
) -> Result<Reachable> {
    let mut r = Reachable::default();
    let mut stack: Vec<Id> = roots.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !r.trees.insert(id) {
            continue;
        }
        let tree = repo.load_tree(&id)?;
        visit(repo, &tree, &mut r, &mut stack)?;
    }
    Ok(r)
}

/// Records what the nodes of `tree` reference; inline subtrees are part of
/// the tree blob and are visited in place.
fn visit<S: Locate>(
    repo: &Repository<S>,
    tree: &Tree,
    r: &mut Reachable,
    stack: &mut Vec<Id>,
) -> Result<()> {
    for n in &tree.nodes {
        match n.kind {
            NodeKind::Dir => {
                if let Some(inline) = &n.inline {
                    visit(repo, inline, r, stack)?;
                }
                if let Some(sub) = n.subtree
                    && !r.trees.contains(&sub)
                {
                    stack.push(sub);
                }
            }
            NodeKind::File => {
                mark_content(repo, &n.content, n.content_depth, r)?;
                // A delta file's base version: its blobs are needed to decode
                // the file's delta blobs.
                if let Some(b) = &n.delta_base {
                    mark_content(repo, &b.content, b.depth, r)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Marks a file content's data blobs and content-list blobs (tree-type
/// blobs prune must keep); a list already marked is not read again.
fn mark_content<S: Locate>(
    repo: &Repository<S>,
    content: &[Id],
    depth: u8,
    r: &mut Reachable,
) -> Result<()> {
    let Reachable { trees, data } = r;
    repo.visit_content(
        content,
        depth,
        &mut |list| trees.insert(*list),
        &mut |id| {
            data.insert(*id);
        },
        &mut |_, e| Err(e),
    )
}
