//! Blob encoding: compress if it helps, then seal with the blob's type and id
//! bound in as associated data.
//!
//! Binding the id means a blob copied to another place in a pack, or a tree
//! blob swapped for a data blob, fails to authenticate: what `decode` returns
//! is exactly what was stored under that id.
//!
//! A data blob may also be a *delta*: compressed with another data blob (its
//! base) as zstd dictionary. A database page rewritten in place shares most
//! of its bytes with its previous version, and a delta against that version
//! is a tenth of the page compressed alone (README, "Database backups").
//! A delta's id is derived from its base and plaintext
//! ([`MasterKey::delta_blob_id`]), never equal to a content id, and its base
//! must be an ordinary (non-delta) blob, so decoding needs at most one
//! further blob.

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::id::Id;
use serde::{Deserialize, Serialize};
use std::cell::RefCell;

/// What a blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[repr(u8)]
pub enum BlobType {
    /// File content (a chunk).
    Data = 0,
    /// A directory listing ([`crate::format::tree::Tree`]).
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
const ZSTD_DELTA: u8 = 2;

/// Put before a base's plaintext to form a delta's zstd dictionary: zstd
/// would take a base starting with its dictionary magic for a formatted
/// dictionary; with these four bytes first, every base is raw content.
pub const DELTA_DICT_PREFIX: &[u8; 4] = b"CDB1";

/// Supplies the plaintext of a delta blob's base (a data blob that is not
/// itself a delta).
pub type BaseLookup<'a> = &'a dyn Fn(&Id) -> Result<Vec<u8>>;

/// A [`BaseLookup`] for blobs that must not be deltas (bases themselves, and
/// places without access to other blobs).
pub fn no_base(base: &Id) -> Result<Vec<u8>> {
    Err(Error::corrupt(
        "blob",
        format!(
            "delta blob where none is allowed (base {} would be needed)",
            base.short()
        ),
    ))
}

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
    static DELTA_CCTX: RefCell<Option<zstd::zstd_safe::CCtx<'static>>> = const { RefCell::new(None) };
    static DELTA_DCTX: RefCell<Option<zstd::zstd_safe::DCtx<'static>>> = const { RefCell::new(None) };
}

/// A delta's dictionary: [`DELTA_DICT_PREFIX`] and the base plaintext.
fn delta_dictionary(base: &[u8]) -> Vec<u8> {
    let mut d = Vec::with_capacity(4 + base.len());
    d.extend_from_slice(DELTA_DICT_PREFIX);
    d.extend_from_slice(base);
    d
}

fn zstd_error(code: usize) -> Error {
    Error::InvalidInput(format!("zstd: {}", zstd::zstd_safe::get_error_name(code)))
}

/// Encodes `plaintext` as a delta against `base` (whose id is `base_id`),
/// under the delta id `id` ([`MasterKey::delta_blob_id`]). Returns `None`
/// when the delta would not be smaller than the plaintext compressed alone
/// (then store it as an ordinary blob under its content id).
pub fn encode_delta(
    key: &MasterKey,
    id: &Id,
    base_id: &Id,
    base: &[u8],
    plaintext: &[u8],
    level: i32,
) -> Result<Option<Vec<u8>>> {
    if plaintext.len() > MAX_BLOB_SIZE {
        return Ok(None);
    }
    let dict = delta_dictionary(base);
    let (delta, alone) = DELTA_CCTX.with(|cell| -> Result<(Vec<u8>, usize)> {
        let mut slot = cell.borrow_mut();
        let cctx = match &mut *slot {
            Some(c) => c,
            None => slot.insert(zstd::zstd_safe::CCtx::create()),
        };
        let bound = zstd::zstd_safe::compress_bound(plaintext.len());
        let mut delta = Vec::with_capacity(bound);
        cctx.compress_using_dict(&mut delta, plaintext, &dict, level)
            .map_err(zstd_error)?;
        let mut alone = Vec::with_capacity(bound);
        cctx.compress(&mut alone, plaintext, level)
            .map_err(zstd_error)?;
        Ok((delta, alone.len()))
    })?;
    if delta.len() >= alone || delta.len() + 37 >= plaintext.len() {
        return Ok(None);
    }
    let mut header = [0u8; 37];
    header[0] = ZSTD_DELTA;
    header[1..33].copy_from_slice(&base_id.0);
    header[33..].copy_from_slice(&(plaintext.len() as u32).to_le_bytes());
    Ok(Some(key.seal_parts(
        &aad(BlobType::Data, id),
        &[&header, &delta],
    )?))
}

/// Decodes the body of a delta blob (after the flag byte).
fn decode_delta(
    key: &MasterKey,
    kind: BlobType,
    id: &Id,
    body: &[u8],
    what: &str,
    base: BaseLookup,
) -> Result<Vec<u8>> {
    if kind != BlobType::Data {
        return Err(Error::corrupt(what, "a tree blob cannot be a delta"));
    }
    if body.len() < 36 {
        return Err(Error::corrupt(what, "delta blob too short"));
    }
    let base_id = Id(body[..32].try_into().expect("32 bytes"));
    let raw_len = u32::from_le_bytes([body[32], body[33], body[34], body[35]]) as usize;
    if raw_len > MAX_BLOB_SIZE {
        return Err(Error::corrupt(
            what,
            format!("blob declares {raw_len} bytes"),
        ));
    }
    let base_plain = base(&base_id).map_err(|e| {
        Error::corrupt(
            what,
            format!(
                "base {} of delta blob {} unavailable: {e}",
                base_id.short(),
                id.short()
            ),
        )
    })?;
    let dict = delta_dictionary(&base_plain);
    let out = DELTA_DCTX.with(|cell| -> Result<Vec<u8>> {
        let mut slot = cell.borrow_mut();
        let dctx = match &mut *slot {
            Some(d) => d,
            None => slot.insert(zstd::zstd_safe::DCtx::create()),
        };
        let mut out = Vec::with_capacity(raw_len);
        dctx.decompress_using_dict(&mut out, &body[36..], &dict)
            .map_err(|c| {
                Error::corrupt(
                    what,
                    format!(
                        "decompression failed: {}",
                        zstd::zstd_safe::get_error_name(c)
                    ),
                )
            })?;
        Ok(out)
    })?;
    if out.len() != raw_len {
        return Err(Error::corrupt(what, "decompressed length mismatch"));
    }
    if key.delta_blob_id(&base_id, &out) != *id {
        return Err(Error::corrupt(
            what,
            format!("blob {} content does not match its id", id.short()),
        ));
    }
    Ok(out)
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
/// `what` names the blob's location for error messages; `base` supplies a
/// delta blob's base ([`no_base`] where deltas are not expected).
pub fn decode(
    key: &MasterKey,
    kind: BlobType,
    id: &Id,
    sealed: &[u8],
    what: &str,
    base: BaseLookup,
) -> Result<Vec<u8>> {
    let inner = key.open(&aad(kind, id), sealed, what)?;
    let plain = match inner.first() {
        Some(&ZSTD_DELTA) => return decode_delta(key, kind, id, &inner[1..], what, base),
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
            assert_eq!(
                decode(&key, BlobType::Data, &id, &enc, "t", &no_base).unwrap(),
                data
            );
            assert!(decode(&key, BlobType::Tree, &id, &enc, "t", &no_base).is_err());
            let other = key.blob_id(b"x");
            assert!(decode(&key, BlobType::Data, &other, &enc, "t", &no_base).is_err());
        }
        let zeros = vec![0u8; 10000];
        let id = key.blob_id(&zeros);
        assert!(encode(&key, BlobType::Data, &id, &zeros, 3).unwrap().len() < 1000);
    }

    #[test]
    fn delta_round_trip_and_base_rules() {
        let key = MasterKey::generate().unwrap();
        let base: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
        let base_id = key.blob_id(&base);
        let mut page = base.clone();
        page[100..110].copy_from_slice(b"0123456789");
        let id = key.delta_blob_id(&base_id, &page);
        assert_ne!(id, key.blob_id(&page));
        let enc = encode_delta(&key, &id, &base_id, &base, &page, 3)
            .unwrap()
            .expect("a small change makes a small delta");
        assert!(enc.len() < 120, "{}", enc.len());
        let lookup = |b: &Id| {
            assert_eq!(*b, base_id);
            Ok(base.clone())
        };
        assert_eq!(
            decode(&key, BlobType::Data, &id, &enc, "t", &lookup).unwrap(),
            page
        );
        // No base available, a wrong base, a tree-typed delta: all refused.
        assert!(decode(&key, BlobType::Data, &id, &enc, "t", &no_base).is_err());
        let wrong = |_: &Id| Ok(vec![0u8; 4096]);
        assert!(decode(&key, BlobType::Data, &id, &enc, "t", &wrong).is_err());
        assert!(decode(&key, BlobType::Tree, &id, &enc, "t", &lookup).is_err());
        // A base beginning with zstd's dictionary magic is still raw content.
        let mut magic = base.clone();
        magic[..4].copy_from_slice(&0xEC30_A437u32.to_le_bytes());
        let magic_id = key.blob_id(&magic);
        let did = key.delta_blob_id(&magic_id, &page);
        let enc = encode_delta(&key, &did, &magic_id, &magic, &page, 3)
            .unwrap()
            .unwrap();
        let lookup = |_: &Id| Ok(magic.clone());
        assert_eq!(
            decode(&key, BlobType::Data, &did, &enc, "t", &lookup).unwrap(),
            page
        );
        // Unrelated content: no delta.
        let other: Vec<u8> = (0..4096u32).map(|i| (i * 131 % 256) as u8).collect();
        let oid = key.delta_blob_id(&base_id, &other);
        let _ = encode_delta(&key, &oid, &base_id, &base, &other, 3).unwrap();
    }
}
