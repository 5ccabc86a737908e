//! Index files and the in-memory blob index.
//!
//! An index file lists packs and the blobs in each, so opening a repository
//! reads a few index files instead of every pack header. Index files are
//! written after the packs they describe are durable, and before any snapshot
//! that needs them. Several index files may list the same blob (two backups
//! racing, or a pack written twice after a crash); any copy will do for reading.

use crate::blob::BlobType;
use crate::crypto::MasterKey;
use crate::envelope;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::pack::PackEntry;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// Magic of an index file (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNIX1";

/// One pack as listed in an index file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (its file name).
    pub id: Id,
    /// Its blobs, in pack order.
    pub blobs: Vec<PackEntry>,
}

/// Content of an index file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexFile {
    /// Packs described.
    pub packs: Vec<IndexPack>,
    /// Index files this one replaces (written by prune and repair; the
    /// replaced files are deleted afterwards).
    pub supersedes: Vec<Id>,
}

impl IndexFile {
    /// Seals the index file.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal(key, MAGIC, self)
    }

    /// Opens an index file and checks that entries are well formed.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<IndexFile> {
        let plain = envelope::open_plain(key, MAGIC, bytes, what)?;
        IndexFile::from_plaintext(&plain, what)
    }

    /// Decodes and validates the plaintext of an index file.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<IndexFile> {
        let f: IndexFile = envelope::from_postcard(plain, what)?;
        for p in &f.packs {
            let mut expect = 0u64;
            for e in &p.blobs {
                if e.offset != expect {
                    return Err(Error::corrupt(
                        what,
                        format!("pack {}: entries are not contiguous", p.id.short()),
                    ));
                }
                if !crate::pack::entry_lengths_ok(e) {
                    return Err(Error::corrupt(
                        what,
                        format!(
                            "pack {}: blob {} length out of range",
                            p.id.short(),
                            e.id.short()
                        ),
                    ));
                }
                expect = e.offset.saturating_add(e.length as u64);
            }
        }
        Ok(f)
    }
}

/// Where a blob can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    /// Blob type.
    pub kind: BlobType,
    /// Offset in the pack.
    pub offset: u64,
    /// Encoded length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

/// All blobs known to the repository, by id.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_pos: HashMap<Id, u32>,
    blobs: HashMap<Id, BlobLocation>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds every blob of a pack (first location of a blob wins).
    pub fn add_pack(&mut self, pack: Id, entries: &[PackEntry]) {
        let pos = *self.pack_pos.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            self.blobs.entry(e.id).or_insert(BlobLocation {
                pack: pos,
                kind: e.kind,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            });
        }
    }

    /// Location of a blob.
    pub fn get(&self, id: &Id) -> Option<(Id, BlobLocation)> {
        self.blobs
            .get(id)
            .map(|l| (self.packs[l.pack as usize], *l))
    }

    /// Whether the blob is known.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Packs known to the index.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Whether a pack is listed.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Every blob with its pack.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, Id, &BlobLocation)> {
        self.blobs
            .iter()
            .map(|(id, l)| (id, self.packs[l.pack as usize], l))
    }
}

/// A compact set of blob ids for deduplication during backup.
///
/// A backup only needs to know *whether* a data blob exists, not where, so
/// it keeps the first 128 bits of each id in one sorted array: 16 bytes per
/// blob, 160 MB for ten million chunks, instead of a hash map of full
/// locations. Ids are keyed BLAKE3 outputs that an attacker cannot compute
/// without the key, and the chance of two of 10^7 ids sharing a 128-bit
/// prefix is below 10^-24. Were it to happen, the backup would skip storing a
/// chunk and `check` would report that blob as missing from the index.
#[derive(Default, Debug)]
pub struct BlobSet {
    prefixes: Vec<u128>,
}

impl BlobSet {
    /// The 128-bit prefix of an id.
    fn prefix(id: &Id) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&id.0[..16]);
        u128::from_be_bytes(b)
    }

    /// An empty set with room for `n` ids.
    pub fn with_capacity(n: usize) -> BlobSet {
        BlobSet {
            prefixes: Vec::with_capacity(n),
        }
    }

    /// Adds an id (call [`BlobSet::seal`] before looking up).
    pub fn push(&mut self, id: &Id) {
        self.prefixes.push(Self::prefix(id));
    }

    /// Sorts and removes duplicates; frees spare capacity.
    pub fn seal(&mut self) {
        self.prefixes.sort_unstable();
        self.prefixes.dedup();
        self.prefixes.shrink_to_fit();
    }

    /// Whether the id is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.prefixes.binary_search(&Self::prefix(id)).is_ok()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_set_membership() {
        let ids: Vec<Id> = (0..1000u32)
            .map(|i| Id::of_file(&i.to_le_bytes()))
            .collect();
        let mut s = BlobSet::with_capacity(10);
        for id in ids.iter().chain(ids.iter().take(10)) {
            s.push(id);
        }
        s.seal();
        assert_eq!(s.len(), 1000);
        assert!(ids.iter().all(|id| s.contains(id)));
        assert!(!s.contains(&Id::of_file(b"absent")));
    }
}
