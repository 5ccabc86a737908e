//! `key`: list, add, change and remove the passwords of a repository.

use crate::backend::FileKind;
use crate::error::Result;

use crate::format::id::Id;
use crate::repository::Repository;

pub use crate::format::crypto::KdfParams;
pub use crate::repository::keys::{KeyInfo, PasswordChange};

/// Every key file, described.
pub fn list<S>(repo: &Repository<S>) -> Result<Vec<KeyInfo>> {
    repo.key_infos()
}

/// Adds a key for `password`; returns its id.
pub fn add<S>(repo: &Repository<S>, password: &[u8], kdf: KdfParams) -> Result<Id> {
    repo.add_key(password, kdf)
}

/// Replaces the key in use with one for `password`.
pub fn passwd<S>(repo: &Repository<S>, password: &[u8], kdf: KdfParams) -> Result<PasswordChange> {
    repo.change_password(password, kdf)
}

/// Removes the key whose id starts with `prefix` (not the one in use);
/// returns its id.
pub fn remove<S>(repo: &Repository<S>, prefix: &str) -> Result<Id> {
    repo.check_may_delete("key remove")?;
    let id = repo.find_file(FileKind::Key, prefix)?;
    repo.remove_key(&id)?;
    Ok(id)
}
