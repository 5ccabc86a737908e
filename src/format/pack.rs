//! Pack files: many encoded blobs in one file, with a sealed header at the end.
//!
//! ```text
//! blob_0 || blob_1 || ... || blob_n-1 || sealed header || header_len (u32 LE) || "CAIRNPK1"
//! ```
//!
//! Packs keep the number of files small (what matters on object storage) and
//! hide individual blob sizes from anyone without the key only partially:
//! the header with types, ids and lengths is encrypted. A pack is
//! self-describing, so the index can always be rebuilt from pack headers
//! (`cairn repair index`). Blobs are contiguous from offset 0 up to the
//! header; the header decoder enforces that, so an entry can never point
//! outside its pack.

use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::crypto::{MasterKey, SEAL_OVERHEAD};
use crate::format::envelope::{from_postcard, to_postcard};
use crate::format::id::Id;
use serde::{Deserialize, Serialize};

/// Magic at the very end of a pack (format version 1).
pub const TRAILER_MAGIC: &[u8; 8] = b"CAIRNPK1";
/// Associated data of the sealed header.
pub const HEADER_AAD: &[u8; 8] = b"CAIRNPH1";
/// Trailer length: header length (4) + magic (8).
pub const TRAILER_LEN: usize = 12;
/// Largest sealed header accepted (bounds memory on hostile packs).
pub const MAX_HEADER_LEN: usize = 64 * 1024 * 1024;

/// Where one blob sits in a pack.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PackEntry {
    /// Blob type.
    pub kind: BlobType,
    /// Blob id (keyed hash of the plaintext).
    pub id: Id,
    /// Offset of the encoded blob from the start of the pack.
    pub offset: u64,
    /// Length of the encoded blob.
    pub length: u32,
    /// Length of the plaintext.
    pub raw_length: u32,
}

/// Accumulates encoded blobs of one type into a pack in memory.
pub struct PackBuilder {
    /// Type of every blob in this pack.
    pub kind: BlobType,
    data: Vec<u8>,
    entries: Vec<PackEntry>,
}

/// A finished pack: its bytes, its id and what it holds.
pub struct FinishedPack {
    /// BLAKE3 of `bytes`: the pack's file name.
    pub id: Id,
    /// The whole file.
    pub bytes: Vec<u8>,
    /// The blobs it holds.
    pub entries: Vec<PackEntry>,
}

impl PackBuilder {
    /// An empty pack for blobs of `kind`.
    pub fn new(kind: BlobType, capacity: usize) -> PackBuilder {
        PackBuilder {
            kind,
            data: Vec::with_capacity(capacity),
            entries: Vec::new(),
        }
    }

    /// Appends an encoded blob.
    pub fn add(&mut self, id: Id, encoded: &[u8], raw_length: usize) {
        self.entries.push(PackEntry {
            kind: self.kind,
            id,
            offset: self.data.len() as u64,
            length: encoded.len() as u32,
            raw_length: raw_length as u32,
        });
        self.data.extend_from_slice(encoded);
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Seals the header, appends the trailer and names the pack.
    pub fn finish(self, key: &MasterKey) -> Result<FinishedPack> {
        let PackBuilder {
            mut data, entries, ..
        } = self;
        data.extend_from_slice(&header_and_trailer(key, &entries)?);
        Ok(FinishedPack {
            id: Id::of_file(&data),
            bytes: data,
            entries,
        })
    }
}

/// The bytes that end every pack: sealed header, its length, the magic.
pub fn header_and_trailer(key: &MasterKey, entries: &[PackEntry]) -> Result<Vec<u8>> {
    let header = key.seal(HEADER_AAD, &to_postcard(&entries)?)?;
    let mut out = Vec::with_capacity(header.len() + TRAILER_LEN);
    out.extend_from_slice(&header);
    out.extend_from_slice(&(header.len() as u32).to_le_bytes());
    out.extend_from_slice(TRAILER_MAGIC);
    Ok(out)
}

/// A pack streamed into any writer as blobs arrive (the repository layer
/// hands it a staging file), so a backup holds no whole pack in memory; the
/// pack id is hashed along the way.
pub struct PackWriter<W: std::io::Write> {
    /// Type of every blob in this pack.
    pub kind: BlobType,
    out: W,
    hasher: blake3::Hasher,
    len: u64,
    entries: Vec<PackEntry>,
}

/// A finished pack in its writer: id and entries known, bytes written.
pub struct FinishedPackWriter<W> {
    /// BLAKE3 of the pack bytes: its file name.
    pub id: Id,
    /// Type of every blob in it.
    pub kind: BlobType,
    /// The writer, with every byte of the pack written to it (not flushed).
    pub out: W,
    /// The blobs it holds.
    pub entries: Vec<PackEntry>,
}

impl<W: std::io::Write> PackWriter<W> {
    /// Starts a pack of `kind` blobs written to `out`.
    pub fn new(out: W, kind: BlobType) -> PackWriter<W> {
        PackWriter {
            kind,
            out,
            hasher: blake3::Hasher::new(),
            len: 0,
            entries: Vec::new(),
        }
    }

    fn write(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.out.write_all(bytes)?;
        self.hasher.update(bytes);
        self.len += bytes.len() as u64;
        Ok(())
    }

    /// Appends an encoded blob.
    pub fn add(&mut self, id: Id, encoded: &[u8], raw_length: usize) -> std::io::Result<()> {
        self.entries.push(PackEntry {
            kind: self.kind,
            id,
            offset: self.len,
            length: encoded.len() as u32,
            raw_length: raw_length as u32,
        });
        self.write(encoded)
    }

    /// Bytes of blob data so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// Whether no blob was added.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Writes the sealed header and the trailer; returns the pack's id,
    /// the writer and the entries.
    pub fn finish(mut self, key: &MasterKey) -> std::io::Result<FinishedPackWriter<W>> {
        let tail = header_and_trailer(key, &self.entries).map_err(std::io::Error::other)?;
        self.write(&tail)?;
        Ok(FinishedPackWriter {
            id: Id(*self.hasher.finalize().as_bytes()),
            kind: self.kind,
            out: self.out,
            entries: self.entries,
        })
    }
}

/// Whether an entry's lengths are possible for an encoded blob: at least the
/// sealing overhead, and no more than the largest blob plus its framing.
pub fn entry_lengths_ok(e: &PackEntry) -> bool {
    let max_encoded = crate::format::blob::MAX_BLOB_SIZE + SEAL_OVERHEAD + 5;
    (e.length as usize) >= SEAL_OVERHEAD
        && (e.length as usize) <= max_encoded
        && e.raw_length as usize <= crate::format::blob::MAX_BLOB_SIZE
}

/// Parses the trailer of a pack of `pack_len` bytes whose last
/// [`TRAILER_LEN`] bytes are `trailer`; returns the sealed header's length.
pub fn header_len_from_trailer(trailer: &[u8], pack_len: u64, what: &str) -> Result<usize> {
    if trailer.len() != TRAILER_LEN || pack_len < TRAILER_LEN as u64 {
        return Err(Error::corrupt(what, "pack too short (truncated?)"));
    }
    if &trailer[4..] != TRAILER_MAGIC {
        return Err(Error::corrupt(
            what,
            "pack trailer missing (truncated or not a pack)",
        ));
    }
    let len = u32::from_le_bytes([trailer[0], trailer[1], trailer[2], trailer[3]]) as usize;
    if !(SEAL_OVERHEAD..=MAX_HEADER_LEN).contains(&len)
        || len as u64 > pack_len - TRAILER_LEN as u64
    {
        return Err(Error::corrupt(
            what,
            format!("pack header length {len} out of range"),
        ));
    }
    Ok(len)
}

/// Decrypts and validates a pack header. `header_start` is the offset of
/// the sealed header in the pack, i.e. where the blob region ends.
pub fn decode_header(
    key: &MasterKey,
    sealed: &[u8],
    header_start: u64,
    what: &str,
) -> Result<Vec<PackEntry>> {
    let plain = key.open(HEADER_AAD, sealed, what)?;
    header_from_plaintext(&plain, header_start, what)
}

/// Decodes and validates the plaintext of a pack header.
pub fn header_from_plaintext(
    plain: &[u8],
    header_start: u64,
    what: &str,
) -> Result<Vec<PackEntry>> {
    let entries: Vec<PackEntry> = from_postcard(plain, what)?;
    let mut expect = 0u64;
    for e in &entries {
        if e.offset != expect {
            return Err(Error::corrupt(
                what,
                format!(
                    "blob {} at offset {} overlaps or leaves a gap",
                    e.id.short(),
                    e.offset
                ),
            ));
        }
        if !entry_lengths_ok(e) {
            return Err(Error::corrupt(
                what,
                format!("blob {} length out of range", e.id.short()),
            ));
        }
        expect += e.length as u64;
    }
    if expect != header_start {
        return Err(Error::corrupt(
            what,
            "pack header does not cover the pack's blobs",
        ));
    }
    Ok(entries)
}

/// Parses a whole pack held in memory: returns its entries.
pub fn parse(key: &MasterKey, pack: &[u8], what: &str) -> Result<Vec<PackEntry>> {
    if pack.len() < TRAILER_LEN {
        return Err(Error::corrupt(what, "pack too short (truncated?)"));
    }
    let t = &pack[pack.len() - TRAILER_LEN..];
    let hlen = header_len_from_trailer(t, pack.len() as u64, what)?;
    let header_start = pack.len() - TRAILER_LEN - hlen;
    decode_header(
        key,
        &pack[header_start..pack.len() - TRAILER_LEN],
        header_start as u64,
        what,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob;

    #[test]
    fn build_and_parse() {
        let key = MasterKey::generate().unwrap();
        let mut b = PackBuilder::new(BlobType::Data, 0);
        let mut ids = vec![];
        for i in 0..5u8 {
            let data = vec![i; 1000 * i as usize];
            let id = key.blob_id(&data);
            let enc = blob::encode(&key, BlobType::Data, &id, &data, 3).unwrap();
            b.add(id, &enc, data.len());
            ids.push(id);
        }
        let p = b.finish(&key).unwrap();
        let entries = parse(&key, &p.bytes, "p").unwrap();
        assert_eq!(entries, p.entries);
        for e in &entries {
            let s = &p.bytes[e.offset as usize..(e.offset + e.length as u64) as usize];
            let plain = blob::decode(&key, e.kind, &e.id, s, "p", &blob::no_base).unwrap();
            assert_eq!(plain.len(), e.raw_length as usize);
        }
        for cut in [0, 1, 11, 12, p.bytes.len() - 1] {
            assert!(parse(&key, &p.bytes[..cut], "p").is_err());
        }
    }
}
