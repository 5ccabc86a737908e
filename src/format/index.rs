//! Index files: which blobs each pack holds.
//!
//! An index file lists packs and the blobs in each, so opening a repository
//! reads a few index files instead of every pack header. Index files are
//! written after the packs they describe are durable, and before any snapshot
//! that needs them. Several index files may list the same blob (two backups
//! racing, or a pack written twice after a crash); any copy will do for reading.

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use crate::format::id::Id;
use crate::format::pack::PackEntry;
use serde::{Deserialize, Serialize};

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
        validate_packs(&f.packs, what)?;
        Ok(f)
    }
}

/// Checks that each pack's entries are contiguous from offset 0 and every
/// length is in range (index files, and the pack lists of WAL records).
pub fn validate_packs(packs: &[IndexPack], what: &str) -> Result<()> {
    for p in packs {
        let mut expect = 0u64;
        for e in &p.blobs {
            if e.offset != expect {
                return Err(Error::corrupt(
                    what,
                    format!("pack {}: entries are not contiguous", p.id.short()),
                ));
            }
            if !crate::format::pack::entry_lengths_ok(e) {
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
    Ok(())
}
