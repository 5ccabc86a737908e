//! Keys, key derivation and authenticated encryption.
//!
//! One random *master key* per repository holds three independent 32-byte
//! secrets: the encryption key (XChaCha20-Poly1305), the id key (keyed BLAKE3
//! for blob ids, so that nobody without the key can test whether a known file
//! is in the repository) and the chunker key (from which the FastCDC gear
//! table is derived, so chunk boundaries do not leak file contents either).
//! Key files wrap the master key under a password-derived key (Argon2id), so
//! a password change never re-encrypts data.
//!
//! Every sealed object is `nonce (24) || ciphertext || tag (16)` with a random
//! nonce; the associated data names what the object is (and, for blobs, its
//! id and type), so an object moved to another place fails to authenticate.

use crate::error::{Error, Result};
use crate::format::id::Id;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};

/// Length of the random nonce prefixed to every sealed object.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag appended to every sealed object.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed object adds to its plaintext.
pub const SEAL_OVERHEAD: usize = NONCE_LEN + TAG_LEN;

/// BLAKE3 key-derivation context of the delta blob id key.
pub const DELTA_ID_CONTEXT: &str = "cairn 2026-11-29 delta blob id";

/// The secret material shared by all key files of one repository.
#[derive(Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct MasterKey {
    /// XChaCha20-Poly1305 key for every encrypted object.
    pub encryption: [u8; 32],
    /// BLAKE3 key for blob ids.
    pub id: [u8; 32],
    /// Seed for the chunker's gear table.
    pub chunker: [u8; 32],
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MasterKey(..)")
    }
}

impl MasterKey {
    /// A fresh random master key.
    pub fn generate() -> Result<Self> {
        Ok(MasterKey {
            encryption: random_array()?,
            id: random_array()?,
            chunker: random_array()?,
        })
    }

    /// The id of a blob: BLAKE3 keyed with the id key, over the plaintext.
    pub fn blob_id(&self, plaintext: &[u8]) -> Id {
        Id(*blake3::keyed_hash(&self.id, plaintext).as_bytes())
    }

    /// The id of a blob stored as a delta against the blob `base`: BLAKE3
    /// keyed with a key derived from the id key (so it never equals a
    /// content id), over `base || plaintext`. Binding the base means two
    /// references to the same id always need the same base.
    pub fn delta_blob_id(&self, base: &Id, plaintext: &[u8]) -> Id {
        let key = blake3::derive_key(DELTA_ID_CONTEXT, &self.id);
        let mut h = blake3::Hasher::new_keyed(&key);
        h.update(&base.0);
        h.update(plaintext);
        Id(*h.finalize().as_bytes())
    }

    /// Encrypts `plaintext` with the repository encryption key.
    pub fn seal(&self, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
        seal_with(&self.encryption, aad, plaintext)
    }

    /// Like [`MasterKey::seal`] for a plaintext given as consecutive parts
    /// (saves assembling it first).
    pub fn seal_parts(&self, aad: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
        seal_parts_with(&self.encryption, aad, parts)
    }

    /// Decrypts and authenticates an object sealed by [`MasterKey::seal`].
    /// `what` names the object in the error.
    pub fn open(&self, aad: &[u8], sealed: &[u8], what: &str) -> Result<Vec<u8>> {
        open_with(&self.encryption, aad, sealed)
            .ok_or_else(|| Error::corrupt(what, "authentication failed (damaged or tampered with)"))
    }
}

/// Fills an array from the operating system's random source.
pub fn random_array<const N: usize>() -> Result<[u8; N]> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out)
        .map_err(|e| Error::io("random source", std::io::Error::other(e.to_string())))?;
    Ok(out)
}

/// Seals `plaintext` under `key`: `nonce || ciphertext || tag`.
pub fn seal_with(key: &[u8; 32], aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>> {
    seal_parts_with(key, aad, &[plaintext])
}

/// [`seal_with`] for the concatenation of `parts`.
fn seal_parts_with(key: &[u8; 32], aad: &[u8], parts: &[&[u8]]) -> Result<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = random_array()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + SEAL_OVERHEAD);
    out.extend_from_slice(&nonce);
    for p in parts {
        out.extend_from_slice(p);
    }
    let tag = cipher
        .encrypt_inout_detached(&XNonce::from(nonce), aad, (&mut out[NONCE_LEN..]).into())
        .map_err(|_| Error::InvalidInput("object too large to encrypt".into()))?;
    out.extend_from_slice(&tag);
    Ok(out)
}

/// Opens an object sealed by [`seal_with`]; `None` if it does not authenticate.
pub fn open_with(key: &[u8; 32], aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < SEAL_OVERHEAD {
        return None;
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ct, tag) = rest.split_at(rest.len() - TAG_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().ok()?;
    let tag: [u8; TAG_LEN] = tag.try_into().ok()?;
    let cipher = XChaCha20Poly1305::new(&(*key).into());
    let mut buf = ct.to_vec();
    cipher
        .decrypt_inout_detached(
            &XNonce::from(nonce),
            aad,
            buf.as_mut_slice().into(),
            &tag.into(),
        )
        .ok()?;
    Some(buf)
}

/// Argon2id parameters, stored in each key file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Number of passes.
    pub iterations: u32,
    /// Degree of parallelism.
    pub parallelism: u32,
}

impl KdfParams {
    /// Default for new key files: 32 MiB, 4 passes, 4 lanes (about 0.1 s
    /// of one current core, split over the cores there are; above OWASP's
    /// recommended minimums for Argon2id, lanes as RFC 9106 recommends,
    /// and small enough that key derivation does not dominate a command's
    /// memory). Lanes divide the same work, so they cost an attacker
    /// nothing less per guess.
    pub const DEFAULT: KdfParams = KdfParams {
        memory_kib: 32 * 1024,
        iterations: 4,
        parallelism: 4,
    };
    /// Largest memory a key file may ask for (4 GiB); a hostile key file must
    /// not make `open` allocate without bound.
    pub const MAX_MEMORY_KIB: u32 = 4 * 1024 * 1024;
    /// Largest pass count a key file may ask for.
    pub const MAX_ITERATIONS: u32 = 64;
    /// Largest parallelism a key file may ask for.
    pub const MAX_PARALLELISM: u32 = 64;

    /// Checks the bounds above and Argon2's own minimums.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.memory_kib > Self::MAX_MEMORY_KIB
            || self.iterations > Self::MAX_ITERATIONS
            || self.parallelism > Self::MAX_PARALLELISM
        {
            return Err(format!("Argon2id parameters out of range: {self:?}"));
        }
        argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| format!("invalid Argon2id parameters {self:?}: {e}"))?;
        Ok(())
    }

    /// Derives a 32-byte key from `password` and `salt`.
    pub fn derive(&self, password: &[u8], salt: &[u8]) -> Result<[u8; 32]> {
        self.validate().map_err(Error::InvalidInput)?;
        let params =
            argon2::Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
                .map_err(|e| Error::InvalidInput(format!("Argon2id: {e}")))?;
        let argon =
            argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        argon
            .hash_password_into(password, salt, &mut out)
            .map_err(|e| Error::InvalidInput(format!("Argon2id: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_round_trip_and_tamper() {
        let key = MasterKey::generate().unwrap();
        let sealed = key.seal(b"ad", b"hello").unwrap();
        assert_eq!(sealed.len(), 5 + SEAL_OVERHEAD);
        assert_eq!(key.open(b"ad", &sealed, "x").unwrap(), b"hello");
        assert!(key.open(b"other", &sealed, "x").is_err());
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 1;
            assert!(key.open(b"ad", &bad, "x").is_err(), "flip at {i}");
        }
        assert!(key.open(b"ad", &sealed[..10], "x").is_err());
    }

    #[test]
    fn kdf_bounds() {
        let p = KdfParams {
            memory_kib: u32::MAX,
            iterations: 1,
            parallelism: 1,
        };
        assert!(p.validate().is_err());
        let p = KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        };
        let a = p.derive(b"pw", b"saltsaltsaltsalt").unwrap();
        let b = p.derive(b"pw", b"saltsaltsaltsalt").unwrap();
        assert_eq!(a, b);
    }
}
