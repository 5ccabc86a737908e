//! A short-lived cache of an unlocked master key, so that a command run
//! once per WAL segment (`wal push`, `wal fetch`) does not stretch the
//! password with Argon2id every time.
//!
//! Why it is safe enough: the file is written only for commands that ask
//! for it ([`super::OpenOptions::session_ttl`]), lives in the user's cache
//! directory (`sessions/`, mode 0700; the file 0600, written atomically),
//! and expires after the lifetime given (minutes). The process that uses it
//! must present the same password (a keyed hash of the password under the
//! master key is compared), and the key file it came from must still exist
//! in the repository (`key remove` ends every session of that key at once).
//! Anyone who can read the file can read the password file PostgreSQL's
//! `archive_command` uses anyway (same user); what the cache adds is a
//! copy of the key that outlives a changed password by at most its
//! lifetime.

use crate::format::crypto::MasterKey;
use crate::format::id::Id;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAGIC: &[u8; 8] = b"CAIRNSK1";
const LEN: usize = 8 + 8 + 32 + 32 + 3 * 32;

/// Where the session of the repository at `location` is kept.
pub(crate) fn path(base: &Path, location: &str) -> PathBuf {
    let name = blake3::hash(location.as_bytes()).to_hex();
    base.join("sessions").join(&name[..32])
}

fn verifier(key: &MasterKey, password: &[u8]) -> [u8; 32] {
    let k = blake3::derive_key("cairn 2026 session password verifier", &key.encryption);
    *blake3::keyed_hash(&k, password).as_bytes()
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// The key id and master key of a live session for `password`, if any.
pub(crate) fn load(path: &Path, password: &[u8]) -> Option<(Id, MasterKey)> {
    let md = std::fs::symlink_metadata(path).ok()?;
    // Only a plain file of ours that nobody else can read is trusted.
    use std::os::unix::fs::MetadataExt;
    if !md.is_file() || md.mode() & 0o077 != 0 || md.uid() != crate::sys::uid() {
        return None;
    }
    let bytes = std::fs::read(path).ok()?;
    if bytes.len() != LEN || &bytes[..8] != MAGIC {
        return None;
    }
    let expires = i64::from_le_bytes(bytes[8..16].try_into().ok()?);
    if now() >= expires {
        let _ = std::fs::remove_file(path);
        return None;
    }
    let arr = |o: usize| -> [u8; 32] { bytes[o..o + 32].try_into().expect("32 bytes") };
    let key_id = Id(arr(16));
    let check = arr(48);
    let key = MasterKey {
        encryption: arr(80),
        id: arr(112),
        chunker: arr(144),
    };
    (verifier(&key, password) == check).then_some((key_id, key))
}

/// Writes a session valid for `ttl` (best effort: a session is never needed).
pub(crate) fn store(path: &Path, password: &[u8], key_id: &Id, key: &MasterKey, ttl: Duration) {
    let Some(dir) = path.parent() else { return };
    if std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .is_err()
    {
        return;
    }
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let expires = now().saturating_add(i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX));
    let mut bytes = Vec::with_capacity(LEN);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&expires.to_le_bytes());
    bytes.extend_from_slice(&key_id.0);
    bytes.extend_from_slice(&verifier(key, password));
    bytes.extend_from_slice(&key.encryption);
    bytes.extend_from_slice(&key.id);
    bytes.extend_from_slice(&key.chunker);
    let tmp = dir.join(format!(".tmp-{}", std::process::id()));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
    if written.is_err() || std::fs::rename(&tmp, path).is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
}

/// Ends a session (a key it named is gone, or its key no longer opens the
/// repository).
pub(crate) fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_opens_only_with_its_password_and_expires() {
        let dir = tempfile::tempdir().unwrap();
        let p = path(dir.path(), "/repo");
        let key = MasterKey::generate().unwrap();
        let kid = Id([3; 32]);
        store(&p, b"pw", &kid, &key, Duration::from_secs(60));
        let (id, k) = load(&p, b"pw").unwrap();
        assert_eq!(
            (id, k.encryption, k.id, k.chunker),
            (kid, key.encryption, key.id, key.chunker)
        );
        assert!(load(&p, b"other").is_none());
        use std::os::unix::fs::MetadataExt;
        assert_eq!(std::fs::metadata(&p).unwrap().mode() & 0o777, 0o600);
        // Readable by others: ignored.
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(load(&p, b"pw").is_none());
        // Expired: removed.
        store(&p, b"pw", &kid, &key, Duration::ZERO);
        assert!(load(&p, b"pw").is_none());
        assert!(!p.exists());
        // Damaged: ignored.
        store(&p, b"pw", &kid, &key, Duration::from_secs(60));
        let mut b = std::fs::read(&p).unwrap();
        b[100] ^= 1;
        std::fs::write(&p, &b).unwrap();
        assert!(load(&p, b"pw").is_none());
    }
}
