//! Key files: the master key wrapped under a password.
//!
//! Several key files may wrap the same master key (one per person or
//! machine); adding or removing one never touches data. The Argon2id
//! parameters and salt are stored in the clear so the password can be
//! stretched again; they are bounded on load so a hostile key file cannot ask
//! for unbounded memory or time.

use crate::error::{Error, Result};
use crate::format::crypto::{self, KdfParams, MasterKey};
use crate::format::envelope::{from_postcard, to_postcard};
use serde::{Deserialize, Serialize};

/// Magic of a key file (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNKY1";

/// A key file's content after the magic.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyFile {
    /// When the key was added (Unix seconds).
    pub created: i64,
    /// Host that added it.
    pub hostname: String,
    /// User that added it.
    pub username: String,
    /// Argon2id parameters.
    pub kdf: KdfParams,
    /// Argon2id salt (32 random bytes).
    pub salt: [u8; 32],
    /// The sealed master key: `nonce || postcard(MasterKey) encrypted || tag`,
    /// under the Argon2id output, associated data = [`MAGIC`].
    pub wrapped: Vec<u8>,
}

impl KeyFile {
    /// Wraps `master` under `password`.
    pub fn create(
        master: &MasterKey,
        password: &[u8],
        kdf: KdfParams,
        hostname: &str,
        username: &str,
    ) -> Result<KeyFile> {
        let salt: [u8; 32] = crypto::random_array()?;
        let wrapping = kdf.derive(password, &salt)?;
        let wrapped = crypto::seal_with(&wrapping, MAGIC, &to_postcard(master)?)?;
        Ok(KeyFile {
            created: chrono::Utc::now().timestamp(),
            hostname: hostname.to_string(),
            username: username.to_string(),
            kdf,
            salt,
            wrapped,
        })
    }

    /// Bytes of the key file.
    pub fn encode(&self) -> Result<Vec<u8>> {
        let mut out = MAGIC.to_vec();
        out.extend_from_slice(&to_postcard(self)?);
        Ok(out)
    }

    /// Parses a key file (without the password). `what` names it in errors.
    pub fn decode(bytes: &[u8], what: &str) -> Result<KeyFile> {
        if bytes.len() < 8 || &bytes[..8] != MAGIC {
            return Err(Error::corrupt(what, "not a cairn key file (bad magic)"));
        }
        let k: KeyFile = from_postcard(&bytes[8..], what)?;
        k.kdf.validate().map_err(|p| Error::corrupt(what, p))?;
        if k.wrapped.len() > 4096 {
            return Err(Error::corrupt(what, "wrapped key too long"));
        }
        Ok(k)
    }

    /// Unwraps the master key; `None` if the password is wrong (or the file
    /// was tampered with: the two cannot be told apart, by design).
    pub fn unwrap_key(&self, password: &[u8], what: &str) -> Result<Option<MasterKey>> {
        let wrapping = self.kdf.derive(password, &self.salt)?;
        match crypto::open_with(&wrapping, MAGIC, &self.wrapped) {
            None => Ok(None),
            Some(plain) => Ok(Some(from_postcard(&plain, what)?)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrap_unwrap() {
        let m = MasterKey::generate().unwrap();
        let kdf = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let kf = KeyFile::create(&m, b"secret", kdf, "h", "u").unwrap();
        let bytes = kf.encode().unwrap();
        let back = KeyFile::decode(&bytes, "k").unwrap();
        assert_eq!(back.unwrap_key(b"secret", "k").unwrap(), Some(m));
        assert_eq!(back.unwrap_key(b"wrong", "k").unwrap(), None);
        assert!(KeyFile::decode(&bytes[..bytes.len() - 1], "k").is_err());
    }
}
