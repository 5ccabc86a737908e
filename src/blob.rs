//! Blob encoding: compress if it helps, then seal with the blob's type and id
//! bound in as associated data.
//!
//! Binding the id means a blob copied to another place in a pack, or a tree
//! blob swapped for a data blob, fails to authenticate: what `decode` returns
//! is exactly what was stored under that id.

use crate::crypto::MasterKey;
use crate::error::{Error, Result};
use crate::id::Id;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobType {
    /// File content (a chunk).
    Data = 0,
    /// A directory listing ([`crate::tree::Tree`]).
    Tree = 1,
}

impl BlobType {
    /// Lower-case name for messages and JSON.
    pub fn name(self) -> &'static str {
        match self {
            BlobType::Data => "data",
            BlobType::Tree => "tree",
        }
    }
}

/// Largest plaintext a blob may declare; bounds memory when decoding hostile input.
pub const MAX_BLOB_SIZE: usize = 512 * 1024 * 1024;

const AAD_PREFIX: &[u8; 8] = b"CAIRNBL1";
const RAW: u8 = 0;
const ZSTD: u8 = 1;

fn aad(kind: BlobType, id: &Id) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..8].copy_from_slice(AAD_PREFIX);
    a[8] = kind as u8;
    a[9..].copy_from_slice(&id.0);
    a
}

/// Largest compression output buffer a thread keeps between blobs.
const KEEP_BUFFER: usize = 2 << 20;

/// A zstd context per thread, for one level, and its output buffer.
type Compression = (i32, zstd::bulk::Compressor<'static>, Vec<u8>);

thread_local! {
    // Creating a zstd context per blob cost ~8% of a backup's CPU (perf),
    // so each thread keeps one; likewise for decompression.
    static COMPRESSOR: RefCell<Option<Compression>> = const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Encodes a blob whose id is already known. `level` 0 disables compression.
pub fn encode(
    key: &MasterKey,
    kind: BlobType,
    id: &Id,
    plaintext: &[u8],
    level: i32,
) -> Result<Vec<u8>> {
    let aad = aad(kind, id);
    if level != 0 && plaintext.len() >= 64 {
        let sealed = COMPRESSOR.with(|cell| -> Result<Option<Vec<u8>>> {
            let mut slot = cell.borrow_mut();
            let (_, compressor, buf) = match &mut *slot {
                Some(c) if c.0 == level => c,
                _ => {
                    let c = zstd::bulk::Compressor::new(level)
                        .map_err(|e| Error::InvalidInput(format!("zstd level {level}: {e}")))?;
                    slot.insert((level, c, Vec::new()))
                }
            };
            buf.clear();
            // Output that would not be smaller does not fit: zstd stops early.
            buf.reserve(plaintext.len());
            let sealed = match compressor.compress_to_buffer(plaintext, buf) {
                Ok(n) if n + 5 < plaintext.len() => {
                    let mut header = [ZSTD, 0, 0, 0, 0];
                    header[1..].copy_from_slice(&(plaintext.len() as u32).to_le_bytes());
                    Some(key.seal_parts(&aad, &[&header, &buf[..n]])?)
                }
                _ => None,
            };
            if buf.capacity() > KEEP_BUFFER {
                *buf = Vec::new(); // do not hold a large chunk's worth per thread
            }
            Ok(sealed)
        })?;
        if let Some(sealed) = sealed {
            return Ok(sealed);
        }
    }
    key.seal_parts(&aad, &[&[RAW], plaintext])
}

/// Decompresses exactly `raw_len` bytes with this thread's context.
fn decompress(data: &[u8], raw_len: usize) -> std::io::Result<Vec<u8>> {
    DECOMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::bulk::Decompressor::new()?),
        };
        d.decompress(data, raw_len)
    })
}

/// Decodes and authenticates a blob and checks its id against the plaintext.
/// `what` names the blob's location for error messages.
pub fn decode(
    key: &MasterKey,
    kind: BlobType,
    id: &Id,
    sealed: &[u8],
    what: &str,
) -> Result<Vec<u8>> {
    let inner = key.open(&aad(kind, id), sealed, what)?;
    let plain = match inner.first() {
        Some(&RAW) => inner[1..].to_vec(),
        Some(&ZSTD) => {
            if inner.len() < 5 {
                return Err(Error::corrupt(what, "compressed blob too short"));
            }
            let raw_len = u32::from_le_bytes([inner[1], inner[2], inner[3], inner[4]]) as usize;
            if raw_len > MAX_BLOB_SIZE {
                return Err(Error::corrupt(
                    what,
                    format!("blob declares {raw_len} bytes"),
                ));
            }
            let out = decompress(&inner[5..], raw_len)
                .map_err(|e| Error::corrupt(what, format!("decompression failed: {e}")))?;
            if out.len() != raw_len {
                return Err(Error::corrupt(what, "decompressed length mismatch"));
            }
            out
        }
        _ => return Err(Error::corrupt(what, "unknown blob compression")),
    };
    if key.blob_id(&plain) != *id {
        return Err(Error::corrupt(
            what,
            format!("blob {} content does not match its id", id.short()),
        ));
    }
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_compressed_and_raw() {
        let key = MasterKey::generate().unwrap();
        for data in [vec![0u8; 10000], (0..=255u8).collect::<Vec<_>>(), vec![]] {
            let id = key.blob_id(&data);
            let enc = encode(&key, BlobType::Data, &id, &data, 3).unwrap();
            assert_eq!(decode(&key, BlobType::Data, &id, &enc, "t").unwrap(), data);
            assert!(decode(&key, BlobType::Tree, &id, &enc, "t").is_err());
            let other = key.blob_id(b"x");
            assert!(decode(&key, BlobType::Data, &other, &enc, "t").is_err());
        }
        let zeros = vec![0u8; 10000];
        let id = key.blob_id(&zeros);
        assert!(encode(&key, BlobType::Data, &id, &zeros, 3).unwrap().len() < 1000);
    }
}
