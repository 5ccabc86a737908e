//! Key files: the passwords that open a repository.
//!
//! Every key file wraps the same master key, so adding, removing or
//! replacing one never touches data. The key in use cannot be removed, so a
//! repository never ends up with no key a user knows.

use super::{Repository, check_file_name};
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::crypto::KdfParams;
use crate::format::id::Id;
use crate::format::keyfile::KeyFile;
use serde::Serialize;

/// What a key file says about itself (in the clear, unauthenticated).
#[derive(Clone, Debug, Serialize)]
pub struct KeyInfo {
    /// Key file id.
    pub id: String,
    /// Whether it is the key this repository was opened with.
    pub current: bool,
    /// When it was added (RFC 3339), if the recorded time is valid.
    pub created: Option<String>,
    /// Host that added it.
    pub hostname: String,
    /// User that added it.
    pub username: String,
    /// Argon2id parameters.
    pub kdf: KdfInfo,
}

/// The key derivation parameters of a key file.
#[derive(Clone, Debug, Serialize)]
pub struct KdfInfo {
    /// Always `argon2id`.
    pub algorithm: &'static str,
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

/// The outcome of a password change.
#[derive(Clone, Copy, Debug)]
pub struct PasswordChange {
    /// The new key file.
    pub added: Id,
    /// The key file it replaced.
    pub removed: Id,
}

impl<S> Repository<S> {
    /// Reads and describes one key file.
    pub fn key_info(&self, id: &Id) -> Result<KeyInfo> {
        let h = Handle::new(FileKind::Key, *id);
        let what = h.rel_path();
        let k = self.core.read_decoded(h, |bytes| {
            check_file_name(id, bytes, &what)?;
            KeyFile::decode(bytes, &what)
        })?;
        Ok(KeyInfo {
            id: id.to_hex(),
            current: *id == self.core.key_id,
            created: chrono::DateTime::from_timestamp(k.created, 0).map(|t| t.to_rfc3339()),
            hostname: k.hostname,
            username: k.username,
            kdf: KdfInfo {
                algorithm: "argon2id",
                memory_kib: k.kdf.memory_kib,
                iterations: k.kdf.iterations,
                parallelism: k.kdf.parallelism,
            },
        })
    }

    /// Every key file, described.
    pub fn key_infos(&self) -> Result<Vec<KeyInfo>> {
        self.core
            .backend
            .list(FileKind::Key)?
            .iter()
            .map(|(id, _)| self.key_info(id))
            .collect()
    }

    /// Adds a key file wrapping this repository's master key under `password`.
    pub fn add_key(&self, password: &[u8], kdf: KdfParams) -> Result<Id> {
        if password.is_empty() {
            return Err(Error::InvalidInput("empty password refused".into()));
        }
        kdf.validate().map_err(Error::InvalidInput)?;
        let kf = KeyFile::create(
            &self.core.key,
            password,
            kdf,
            &crate::sys::hostname(),
            &crate::sys::username(),
        )?;
        self.write_file(FileKind::Key, &kf.encode()?)
    }

    /// Removes a key file other than the one in use.
    pub fn remove_key(&self, id: &Id) -> Result<()> {
        if *id == self.core.key_id {
            return Err(Error::InvalidInput(format!(
                "refusing to remove the key in use ({}); open the repository with another password",
                id.short()
            )));
        }
        self.check_may_delete("key remove")?;
        self.core.remove_or_hide(Handle::new(FileKind::Key, *id))
    }

    /// Replaces the key in use with one for `password`: the new key file is
    /// durable before the old one is removed.
    pub fn change_password(&self, password: &[u8], kdf: KdfParams) -> Result<PasswordChange> {
        self.check_may_delete("key passwd")?;
        let added = self.add_key(password, kdf)?;
        let removed = self.core.key_id;
        self.core
            .remove_or_hide(Handle::new(FileKind::Key, removed))?;
        Ok(PasswordChange { added, removed })
    }
}
