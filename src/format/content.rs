//! A file's content as a tree of content-list blobs.
//!
//! A file's content is the concatenation of its data blobs. For a small file
//! the node lists the data blob ids itself. A large file chunked finely (a
//! database split at page boundaries has one id per few KiB) would make that
//! list megabytes long and rewrite it whole in every snapshot. Instead the
//! id list is cut into *content-list blobs* of a few dozen ids, at cut points
//! chosen by the ids themselves (so a run of unchanged ids produces the same
//! list blobs again and deduplicates), and those blobs' ids are listed one
//! level up, until at most [`INLINE_MAX`] ids remain for the node.
//!
//! Content-list blobs are stored as tree-type blobs (metadata, kept in tree
//! packs, whose locations a backup loads). Their plaintext is the postcard
//! encoding of [`ContentList`]. The byte format is in
//! `format-spec/v1-databases.md`.

use crate::error::{Error, Result};
use crate::format::envelope::{from_postcard, to_postcard};
use crate::format::id::Id;
use serde::{Deserialize, Serialize};

/// Deepest content-list nesting a node may declare.
pub const MAX_DEPTH: u8 = 4;
/// Most ids a node lists itself; longer lists go into content-list blobs.
pub const INLINE_MAX: usize = 64;
/// Fewest ids in a content-list blob (except the last of a level).
pub const LIST_MIN: usize = 8;
/// Cut-point modulus: a list ends after an id whose first two bytes, as a
/// little-endian u16, are `LIST_AVG - 1` modulo `LIST_AVG` (average ≈ this
/// many ids past the minimum).
pub const LIST_AVG: u16 = 32;
/// Most ids in a content-list blob written by cairn.
pub const LIST_MAX: usize = 128;
/// Most ids a reader accepts in one content-list blob.
pub const LIST_MAX_DECODE: usize = 65_536;

/// Plaintext of a content-list blob.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentList {
    /// Level of this list: 1 lists data blobs, n > 1 lists lists of level n - 1.
    pub depth: u8,
    /// The ids, in content order.
    pub ids: Vec<Id>,
}

impl ContentList {
    /// Encodes the list (the blob plaintext).
    pub fn encode(&self) -> Result<Vec<u8>> {
        to_postcard(self)
    }

    /// Decodes a list that must be of level `depth`.
    pub fn decode(bytes: &[u8], depth: u8, what: &str) -> Result<ContentList> {
        let l: ContentList = from_postcard(bytes, what)?;
        if l.depth != depth {
            return Err(Error::corrupt(
                what,
                format!(
                    "content list of level {} where {depth} was expected",
                    l.depth
                ),
            ));
        }
        if l.ids.is_empty() || l.ids.len() > LIST_MAX_DECODE {
            return Err(Error::corrupt(
                what,
                format!("content list with {} ids", l.ids.len()),
            ));
        }
        Ok(l)
    }
}

/// Whether a content list ends after `id` (given it already has enough ids).
fn cut_after(id: &Id) -> bool {
    u16::from_le_bytes([id.0[0], id.0[1]]) % LIST_AVG == LIST_AVG - 1
}

/// Splits one level of ids into groups at content-defined cut points.
pub fn split(ids: &[Id]) -> Vec<&[Id]> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, id) in ids.iter().enumerate() {
        let len = i + 1 - start;
        if len >= LIST_MAX || (len >= LIST_MIN && cut_after(id)) {
            out.push(&ids[start..=i]);
            start = i + 1;
        }
    }
    if start < ids.len() {
        out.push(&ids[start..]);
    }
    out
}

/// Turns a file's data blob ids into the node's `(content, content_depth)`,
/// storing content-list blobs through `save` (which returns the blob id).
pub fn build(ids: Vec<Id>, save: &(dyn Fn(&[u8]) -> Result<Id> + Sync)) -> Result<(Vec<Id>, u8)> {
    use rayon::prelude::*;
    let mut cur = ids;
    let mut depth = 0u8;
    while cur.len() > INLINE_MAX {
        depth += 1;
        if depth > MAX_DEPTH {
            return Err(Error::InvalidInput("file has too many chunks".into()));
        }
        let groups = split(&cur);
        let next: Vec<Result<Id>> = groups
            .par_iter()
            .map(|g| {
                save(
                    &ContentList {
                        depth,
                        ids: g.to_vec(),
                    }
                    .encode()?,
                )
            })
            .collect();
        cur = next.into_iter().collect::<Result<Vec<Id>>>()?;
    }
    Ok((cur, depth))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn ids(n: usize, seed: u8) -> Vec<Id> {
        (0..n)
            .map(|i| {
                let h = blake3::hash(&[&(i as u64).to_le_bytes()[..], &[seed]].concat());
                Id(*h.as_bytes())
            })
            .collect()
    }

    #[test]
    fn split_respects_limits_and_resynchronises() {
        let a = ids(20_000, 1);
        let groups = split(&a);
        assert_eq!(groups.iter().map(|g| g.len()).sum::<usize>(), a.len());
        for g in &groups[..groups.len() - 1] {
            assert!((LIST_MIN..=LIST_MAX).contains(&g.len()));
        }
        // Change one id: only the groups around it change.
        let mut b = a.clone();
        b[10_000] = Id([7; 32]);
        let gb = split(&b);
        let sa: std::collections::HashSet<_> = groups.iter().collect();
        let changed = gb.iter().filter(|g| !sa.contains(g)).count();
        assert!(changed <= 3, "{changed}");
    }

    #[test]
    fn decode_rejects_bad_lists() {
        let good = ContentList {
            depth: 1,
            ids: ids(3, 9),
        }
        .encode()
        .unwrap();
        assert_eq!(ContentList::decode(&good, 1, "t").unwrap().ids.len(), 3);
        assert!(ContentList::decode(&good, 2, "t").is_err());
        let empty = ContentList {
            depth: 1,
            ids: vec![],
        }
        .encode()
        .unwrap();
        assert!(ContentList::decode(&empty, 1, "t").is_err());
        for i in 0..good.len() {
            assert!(ContentList::decode(&good[..i], 1, "t").is_err());
            let mut m = good.clone();
            m[i] ^= 0x80;
            let _ = ContentList::decode(&m, 1, "t");
        }
        // A hostile length prefix does not allocate.
        assert!(ContentList::decode(&[1, 0xff, 0xff, 0xff, 0xff, 0x0f], 1, "t").is_err());
    }

    #[test]
    fn build_and_small_lists() {
        let store = Mutex::new(std::collections::HashMap::new());
        let save = |b: &[u8]| {
            let id = Id(*blake3::hash(b).as_bytes());
            store.lock().unwrap().insert(id, b.to_vec());
            Ok(id)
        };
        let (c, d) = build(ids(10, 2), &save).unwrap();
        assert_eq!((c.len(), d), (10, 0));
        let big = ids(50_000, 3);
        let (c, d) = build(big.clone(), &save).unwrap();
        assert!(c.len() <= INLINE_MAX && d >= 2, "{} {d}", c.len());
        // Expand by hand.
        let store = store.into_inner().unwrap();
        let mut cur = c;
        for level in (1..=d).rev() {
            let mut next = Vec::new();
            for id in &cur {
                next.extend(ContentList::decode(&store[id], level, "t").unwrap().ids);
            }
            cur = next;
        }
        assert_eq!(cur, big);
    }
}
