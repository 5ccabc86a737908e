//! Lock files: who holds a lock on the repository, and since when.
//!
//! A lock file is a sealed envelope (`CAIRNLK1`) around a [`LockInfo`]. What
//! a lock means and how it is taken is the repository layer's business
//! (`repository::lock`); this module only encodes and decodes the bytes.

use crate::error::Result;
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use serde::{Deserialize, Serialize};

/// Magic of a lock file.
pub const MAGIC: &[u8; 8] = b"CAIRNLK1";

/// Content of a lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// When the lock was taken or last refreshed, Unix seconds.
    pub time: i64,
    /// Whether this lock excludes every other lock.
    pub exclusive: bool,
    /// Host of the holder.
    pub hostname: String,
    /// User of the holder.
    pub username: String,
    /// Process id of the holder.
    pub pid: u32,
}

impl LockInfo {
    /// Seals the lock file.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal(key, MAGIC, self)
    }

    /// Opens a lock file; `what` names it in errors. Its time must lie in
    /// years 1 to 9999, like a snapshot's.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<LockInfo> {
        let info: LockInfo = envelope::open(key, MAGIC, bytes, what)?;
        if !crate::format::snapshot::time_in_range(info.time) {
            return Err(crate::Error::corrupt(what, "lock time out of range"));
        }
        Ok(info)
    }
}
