//! Forget records: which snapshots a `forget` removed, and when.
//!
//! A client remembers the snapshots it has seen (rollback detection,
//! `crate::repository::rollback`). When one of them is later missing, a
//! forget record naming it says that a key holder removed it on purpose;
//! without one, the repository was rolled back to an older state or files
//! were deleted behind cairn's back. Records are sealed like every other
//! file, so nobody without the key can explain a deletion away.

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use crate::format::id::Id;
use serde::{Deserialize, Serialize};

/// Magic of a forget record (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNFG1";

/// Most snapshots one record may name.
pub const MAX_SNAPSHOTS: usize = 1_000_000;

/// Content of a forget record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForgetRecord {
    /// When the snapshots were forgotten (Unix seconds).
    pub time: i64,
    /// Host of the client that forgot them.
    pub hostname: String,
    /// User of the client that forgot them.
    pub username: String,
    /// The snapshot ids removed.
    pub snapshots: Vec<Id>,
}

impl ForgetRecord {
    /// Seals the record.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal(key, MAGIC, self)
    }

    /// Opens and checks a record.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<ForgetRecord> {
        let plain = envelope::open_plain(key, MAGIC, bytes, what)?;
        ForgetRecord::from_plaintext(&plain, what)
    }

    /// Decodes and checks the plaintext of a record.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<ForgetRecord> {
        let r: ForgetRecord = envelope::from_postcard(plain, what)?;
        if r.snapshots.len() > MAX_SNAPSHOTS {
            return Err(Error::corrupt(what, "names too many snapshots"));
        }
        if chrono::DateTime::from_timestamp(r.time, 0).is_none() {
            return Err(Error::corrupt(what, "time out of range"));
        }
        Ok(r)
    }
}
