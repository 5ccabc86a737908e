//! Which blobs the snapshots reference.
//!
//! Prune deletes only what this walk does not reach, so the walk is strict:
//! any tree it cannot read stops it with an error instead of under-counting.

use crate::error::Result;
use crate::id::Id;
use crate::repo::Repository;
use crate::tree::NodeKind;
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
pub fn reachable(repo: &Repository, roots: impl IntoIterator<Item = Id>) -> Result<Reachable> {
    let mut r = Reachable::default();
    let mut stack: Vec<Id> = roots.into_iter().collect();
    while let Some(id) = stack.pop() {
        if !r.trees.insert(id) {
            continue;
        }
        let tree = repo.load_tree(&id)?;
        for n in tree.nodes {
            match n.kind {
                NodeKind::Dir => {
                    if let Some(sub) = n.subtree
                        && !r.trees.contains(&sub)
                    {
                        stack.push(sub);
                    }
                }
                NodeKind::File => r.data.extend(n.content),
                _ => {}
            }
        }
    }
    Ok(r)
}
