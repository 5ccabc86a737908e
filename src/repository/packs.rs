//! Reading pack files as a whole or by their header.
//!
//! A pack describes itself in a sealed header at its end
//! ([`crate::format::pack`]), so the index can always be rebuilt or checked
//! from the packs. The header is found from the pack's size: the last
//! [`pack::TRAILER_LEN`] bytes give its length.

use super::Repository;
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::pack::{self, PackEntry};

impl<S> Repository<S> {
    /// Reads one pack's header with ranged reads (trailer, then header) and
    /// returns its entries, validated against the pack's size.
    pub fn read_pack_header(&self, id: &Id) -> Result<Vec<PackEntry>> {
        let h = Handle::new(FileKind::Pack, *id);
        let what = h.rel_path();
        let backend = &self.core.backend;
        let len = backend.size(h)?;
        if len < pack::TRAILER_LEN as u64 {
            return Err(Error::corrupt(&what, "pack too short (truncated?)"));
        }
        let trailer = backend.read_range(h, len - pack::TRAILER_LEN as u64, pack::TRAILER_LEN)?;
        let hlen = pack::header_len_from_trailer(&trailer, len, &what)?;
        let start = len - pack::TRAILER_LEN as u64 - hlen as u64;
        let sealed = backend.read_range(h, start, hlen)?;
        pack::decode_header(&self.core.key, &sealed, start, &what)
    }

    /// Reads a whole pack (not yet checked against its name).
    pub fn read_pack(&self, id: &Id) -> Result<Vec<u8>> {
        self.core.backend.read(Handle::new(FileKind::Pack, *id))
    }

    /// Every pack file with its size.
    pub fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        self.core.backend.list(FileKind::Pack)
    }

    /// Removes an index file.
    pub(crate) fn remove_index_file(&self, id: &Id) -> Result<()> {
        self.core.backend.remove(Handle::new(FileKind::Index, *id))
    }
}
