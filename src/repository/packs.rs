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
        self.core
            .with_original_pack(Handle::new(FileKind::Pack, *id), || {
                self.read_pack_header_once(id)
            })
    }

    fn read_pack_header_once(&self, id: &Id) -> Result<Vec<PackEntry>> {
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

    /// Reads a whole pack (not yet checked against its name; but a pack
    /// whose content does not match its name is read from its original
    /// version where the storage kept one).
    pub fn read_pack(&self, id: &Id) -> Result<Vec<u8>> {
        let h = Handle::new(FileKind::Pack, *id);
        match self.core.backend.read(h) {
            Ok(b) if Id::of_file(&b) == *id => Ok(b),
            Ok(b) => {
                if self.core.recover_pack(h) {
                    self.core.backend.read(h)
                } else {
                    Ok(b)
                }
            }
            Err(e) if e.is_not_found() && self.core.recover_pack(h) => self.core.backend.read(h),
            Err(e) => Err(e),
        }
    }

    /// Every pack file with its size.
    pub fn list_packs(&self) -> Result<Vec<(Id, u64)>> {
        self.core.backend.list(FileKind::Pack)
    }

    /// Removes an index file.
    pub(crate) fn remove_index_file(&self, id: &Id) -> Result<()> {
        self.core.remove_or_hide(Handle::new(FileKind::Index, *id))
    }
}
