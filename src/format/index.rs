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
    /// What prune and repair add (format-spec/v1-locks-prune.md): when the
    /// file was written and which packs wait for deletion. Travels in the
    /// file's extension block; `None` writes none.
    #[serde(skip)]
    pub prune: Option<IndexPrune>,
}

/// The extension block of an index file written by prune or repair.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPrune {
    /// When the file was written (Unix seconds): the files it supersedes
    /// have been superseded since then.
    pub time: i64,
    /// Packs marked for deletion: nothing referenced them when they were
    /// marked. Readers may still read them; backups do not deduplicate
    /// against them; a later prune deletes them once the grace period has
    /// passed, unless a snapshot has come to need them meanwhile.
    pub marked: Vec<MarkedPack>,
}

/// A pack waiting for deletion.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarkedPack {
    /// The pack and its blobs (empty when the pack was never indexed: a
    /// pack file left by an interrupted or still running backup).
    pub pack: IndexPack,
    /// When it was first marked (Unix seconds).
    pub marked_at: i64,
}

impl IndexFile {
    /// An index file listing `packs`, superseding nothing.
    pub fn of_packs(packs: Vec<IndexPack>) -> IndexFile {
        IndexFile {
            packs,
            ..IndexFile::default()
        }
    }

    /// The marked packs this file lists (none for most files).
    pub fn marked(&self) -> &[MarkedPack] {
        self.prune.as_ref().map_or(&[], |p| &p.marked)
    }

    /// Seals the index file.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal_plain(key, MAGIC, &self.to_plaintext()?)
    }

    /// The plaintext: the version 1 fields, then the extension block if
    /// there is one.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        let mut plain = envelope::to_postcard(self)?;
        if let Some(p) = &self.prune {
            plain.extend_from_slice(&envelope::to_postcard(p)?);
        }
        Ok(plain)
    }

    /// Opens an index file and checks that entries are well formed.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<IndexFile> {
        let plain = envelope::open_plain(key, MAGIC, bytes, what)?;
        IndexFile::from_plaintext(&plain, what)
    }

    /// Decodes and validates the plaintext of an index file.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<IndexFile> {
        let (mut f, prune) = envelope::from_postcard_ext::<IndexFile, IndexPrune>(plain, what)?;
        validate_packs(&f.packs, what)?;
        if let Some(p) = &prune {
            let packs: Vec<IndexPack> = p.marked.iter().map(|m| m.pack.clone()).collect();
            validate_packs(&packs, what)?;
        }
        f.prune = prune;
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
