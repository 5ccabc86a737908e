//! Sealed repository files: `magic (8) || nonce (24) || ciphertext || tag (16)`.
//!
//! Config, snapshot, index and pack-header objects share this envelope. The
//! magic says what the file is and which format version wrote it, and is also
//! the associated data, so a snapshot renamed into `index/` does not open.
//! The plaintext is the object encoded with postcard; trailing bytes are an
//! error. (postcard accepts non-minimal varints, so a key holder could craft
//! a second encoding of the same object; cairn's own encoder never does, and
//! nobody without the key can produce any encoding at all.)

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use serde::Serialize;
use serde::de::DeserializeOwned;

/// Encodes `value` with postcard and seals it behind `magic`.
pub fn seal<T: Serialize>(key: &MasterKey, magic: &[u8; 8], value: &T) -> Result<Vec<u8>> {
    let plain = to_postcard(value)?;
    let sealed = key.seal(magic, &plain)?;
    let mut out = Vec::with_capacity(8 + sealed.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Seals an already encoded plaintext behind `magic`.
pub fn seal_plain(key: &MasterKey, magic: &[u8; 8], plain: &[u8]) -> Result<Vec<u8>> {
    let sealed = key.seal(magic, plain)?;
    let mut out = Vec::with_capacity(8 + sealed.len());
    out.extend_from_slice(magic);
    out.extend_from_slice(&sealed);
    Ok(out)
}

/// Decodes a version 1 object optionally followed by one extension block
/// (format-spec/v1-databases.md): returns the object and the block, if any.
/// Both parts are decoded strictly.
pub fn from_postcard_ext<T: DeserializeOwned, E: DeserializeOwned>(
    bytes: &[u8],
    what: &str,
) -> Result<(T, Option<E>)> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| Error::corrupt(what, format!("malformed content: {e}")))?;
    if rest.is_empty() {
        return Ok((value, None));
    }
    Ok((value, Some(from_postcard(rest, what)?)))
}

/// Checks the magic, opens the envelope and decodes the object.
/// `what` names the file in errors.
pub fn open<T: DeserializeOwned>(
    key: &MasterKey,
    magic: &[u8; 8],
    bytes: &[u8],
    what: &str,
) -> Result<T> {
    from_postcard(&open_plain(key, magic, bytes, what)?, what)
}

/// Checks the magic and opens the envelope; returns the plaintext.
pub fn open_plain(key: &MasterKey, magic: &[u8; 8], bytes: &[u8], what: &str) -> Result<Vec<u8>> {
    if bytes.len() < 8 || &bytes[..8] != magic {
        return Err(Error::corrupt(
            what,
            format!(
                "not a {} file (bad magic; truncated or wrong type)",
                String::from_utf8_lossy(magic)
            ),
        ));
    }
    key.open(magic, &bytes[8..], what)
}

/// postcard encoding (infallible for our types, but typed anyway).
pub fn to_postcard<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    postcard::to_allocvec(value).map_err(|e| Error::InvalidInput(format!("encoding failed: {e}")))
}

/// Strict postcard decoding: the whole input must be one value.
pub fn from_postcard<T: DeserializeOwned>(bytes: &[u8], what: &str) -> Result<T> {
    let (value, rest) = postcard::take_from_bytes::<T>(bytes)
        .map_err(|e| Error::corrupt(what, format!("malformed content: {e}")))?;
    if !rest.is_empty() {
        return Err(Error::corrupt(
            what,
            format!("{} trailing bytes after content", rest.len()),
        ));
    }
    Ok(value)
}
