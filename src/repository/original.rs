//! Reading the original of a file that was overwritten or deleted.
//!
//! Credentials that may write may also overwrite (S3 cannot refuse a PUT to
//! an existing name), and credentials that may delete leave, on a versioned
//! bucket, the old versions behind. Every read of a repository file already
//! checks what it got (its name is the hash of its content, or it is
//! authenticated); when that check fails, or the file is gone, these
//! helpers ask the storage for an older version that passes the same check
//! and read that one from then on, with a warning. On storage without
//! versions nothing changes: the first error stands.

use crate::backend::{Backend, Handle};
use crate::error::{Error, Result};

/// Whether an error might be undone by an older version of the file.
fn recoverable(e: &Error) -> bool {
    matches!(e, Error::Corrupt { .. } | Error::NotFound { .. })
}

/// Reads `h` and decodes it with `decode`; when the bytes do not decode (or
/// the file is missing), falls back to the oldest version of `h` the
/// storage kept that does. `warn` hears of a fallback.
pub(crate) fn read_decoded<T>(
    backend: &dyn Backend,
    h: Handle,
    warn: &dyn Fn(String),
    decode: impl Fn(&[u8]) -> Result<T>,
) -> Result<T> {
    let first = backend.read(h).and_then(|b| decode(&b));
    match first {
        Err(e) if recoverable(&e) => {
            if recover(backend, h, warn, &|b| decode(b).is_ok()) {
                backend.read(h).and_then(|b| decode(&b))
            } else {
                Err(e)
            }
        }
        r => r,
    }
}

/// After `h` failed to read or verify: whether an older version that
/// `verify` accepts was found (reads of `h` now go to it).
pub(crate) fn recover(
    backend: &dyn Backend,
    h: Handle,
    warn: &dyn Fn(String),
    verify: &dyn Fn(&[u8]) -> bool,
) -> bool {
    match backend.recover_original(h, verify) {
        Ok(true) => {
            warn(format!(
                "{h}: the current version is damaged, overwritten or deleted; reading the original version the bucket kept (someone with write access changed it: see `cairn check`)"
            ));
            true
        }
        _ => false,
    }
}

/// After pack `h` failed to read or authenticate: whether an older version
/// whose content hashes to its name was found.
pub(crate) fn recover_pack(backend: &dyn Backend, h: Handle, warn: &dyn Fn(String)) -> bool {
    let Handle::File(_, id) = h else {
        return false;
    };
    recover(backend, h, warn, &|b| {
        crate::format::id::Id::of_file(b) == id
    })
}
