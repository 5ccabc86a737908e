//! The checks every [`Backend`] implementation must pass.
//!
//! Each check takes a factory that returns a fresh, created, empty backend
//! and panics with a message naming the broken promise. Implementations
//! call [`run_all`] from their tests (the local folder and memory backends
//! here; the S3 backend from `tests/` against a real server).

use super::{Backend, FileKind, Handle};
use crate::error::Error;
use crate::format::id::Id;
use std::io::Write;

/// Makes a fresh, created, empty backend.
pub type Factory<'a> = &'a (dyn Fn() -> Box<dyn Backend> + Sync);

/// Runs every check, each on a fresh backend.
pub fn run_all(new: Factory<'_>) {
    empty_listing(new().as_ref());
    write_read_list_remove(new().as_ref());
    missing_files(new().as_ref());
    create_new_never_replaces(new().as_ref());
    byte_ranges(new().as_ref());
    staged_writes(new().as_ref());
    large_file(new().as_ref());
    concurrent_writers(new().as_ref());
    racing_writers_of_one_name(new().as_ref());
    create_refuses_used_location(new().as_ref());
}

fn id(n: u64) -> Id {
    Id::of_file(&n.to_le_bytes())
}

fn bytes(n: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len);
    let mut x = n.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A new backend lists nothing of any kind.
pub fn empty_listing(b: &dyn Backend) {
    for kind in FileKind::ALL {
        assert!(
            b.list(kind).expect("list").is_empty(),
            "a new backend lists {} files",
            kind.name()
        );
    }
    assert!(!b.exists(Handle::Config).expect("exists"), "config exists");
}

/// What is written is read back whole, listed with its size under its kind
/// only, and gone after removal.
pub fn write_read_list_remove(b: &dyn Backend) {
    for (n, kind) in FileKind::ALL.into_iter().enumerate() {
        let h = Handle::new(kind, id(n as u64));
        let data = bytes(n as u64, 1000 + n);
        b.write(h, &data).expect("write");
        assert_eq!(b.read(h).expect("read"), data, "{h}: read back");
        assert_eq!(b.size(h).expect("size"), data.len() as u64, "{h}: size");
        assert!(b.exists(h).expect("exists"), "{h}: exists");
        for other in FileKind::ALL {
            let listed = b.list(other).expect("list");
            if other == kind {
                assert_eq!(
                    listed,
                    vec![(id(n as u64), data.len() as u64)],
                    "{h}: listing"
                );
            } else {
                assert!(
                    !listed.iter().any(|(i, _)| *i == id(n as u64)),
                    "{h} listed as a {} file",
                    other.name()
                );
            }
        }
        b.remove(h).expect("remove");
        assert!(
            b.list(kind).expect("list").is_empty(),
            "{h}: listed after removal"
        );
        assert!(
            b.read(h).unwrap_err().is_not_found(),
            "{h}: read after removal"
        );
    }
    b.write(Handle::Config, b"config bytes")
        .expect("write config");
    assert_eq!(
        b.read(Handle::Config).expect("read config"),
        b"config bytes"
    );
    for kind in FileKind::ALL {
        assert!(
            b.list(kind).expect("list").is_empty(),
            "config listed as {kind:?}"
        );
    }
}

/// A missing file is "not found" for every read, and removing it is fine.
pub fn missing_files(b: &dyn Backend) {
    let h = Handle::new(FileKind::Pack, id(7));
    assert!(
        b.read(h).unwrap_err().is_not_found(),
        "read of a missing file"
    );
    assert!(
        b.read_range(h, 0, 1).unwrap_err().is_not_found(),
        "range of a missing file"
    );
    assert!(
        b.size(h).unwrap_err().is_not_found(),
        "size of a missing file"
    );
    assert!(!b.exists(h).expect("exists"), "a missing file exists");
    b.remove(h)
        .expect("removing a missing file is not an error");
}

/// A second write to a name fails and leaves the first content.
pub fn create_new_never_replaces(b: &dyn Backend) {
    let h = Handle::new(FileKind::Index, id(1));
    b.write(h, b"first").expect("write");
    match b.write(h, b"second") {
        Err(Error::AlreadyExists(_)) => {}
        other => panic!("second write of {h}: {other:?}, expected AlreadyExists"),
    }
    assert_eq!(b.read(h).expect("read"), b"first", "{h} was replaced");
    b.write(Handle::Config, b"c1").expect("write config");
    assert!(
        matches!(b.write(Handle::Config, b"c2"), Err(Error::AlreadyExists(_))),
        "config replaced"
    );
}

/// Ranges inside a file are exact; a range past its end is an error.
pub fn byte_ranges(b: &dyn Backend) {
    let h = Handle::new(FileKind::Pack, id(3));
    let data = bytes(3, 10_000);
    b.write(h, &data).expect("write");
    for (off, len) in [
        (0usize, 10usize),
        (5, 100),
        (9_990, 10),
        (0, 10_000),
        (10_000, 0),
    ] {
        assert_eq!(
            b.read_range(h, off as u64, len).expect("range"),
            data[off..off + len],
            "{h}: range {off}+{len}"
        );
    }
    for (off, len) in [
        (9_995u64, 10usize),
        (10_000, 1),
        (u64::MAX - 1, 4),
        (20_000, 0),
    ] {
        let r = b.read_range(h, off, len);
        assert!(
            matches!(r, Err(Error::Corrupt { .. })),
            "{h}: range {off}+{len} past the end gave {:?}",
            r.map(|v| v.len())
        );
    }
}

/// A staged file is stored like a written one, and only then visible.
pub fn staged_writes(b: &dyn Backend) {
    let h = Handle::new(FileKind::Pack, id(4));
    let mut s = b.stage().expect("stage");
    let data = bytes(4, 300_000);
    for part in data.chunks(7_000) {
        s.write_all(part).expect("staged write");
    }
    assert_eq!(s.len(), data.len() as u64);
    assert!(
        b.list(FileKind::Pack).expect("list").is_empty(),
        "staged file listed"
    );
    b.write_staged(h, s).expect("write staged");
    assert_eq!(b.read(h).expect("read"), data);
    let mut again = b.stage().expect("stage");
    again.write_all(b"other").expect("staged write");
    assert!(
        matches!(b.write_staged(h, again), Err(Error::AlreadyExists(_))),
        "staged write replaced {h}"
    );
    assert_eq!(b.read(h).expect("read"), data);
}

/// A file of several MiB round-trips.
pub fn large_file(b: &dyn Backend) {
    let h = Handle::new(FileKind::Pack, id(5));
    let data = bytes(5, 6 << 20);
    b.write(h, &data).expect("write");
    assert_eq!(b.read(h).expect("read").len(), data.len());
    assert_eq!(
        b.read_range(h, (5 << 20) + 3, 1000).expect("range"),
        data[(5 << 20) + 3..(5 << 20) + 1003]
    );
}

/// Many threads writing different files all succeed, and all are listed.
pub fn concurrent_writers(b: &dyn Backend) {
    std::thread::scope(|s| {
        for t in 0..8u64 {
            s.spawn(move || {
                for i in 0..16u64 {
                    let n = 1000 + t * 100 + i;
                    b.write(Handle::new(FileKind::Snapshot, id(n)), &bytes(n, 500))
                        .expect("concurrent write");
                }
            });
        }
    });
    let listed = b.list(FileKind::Snapshot).expect("list");
    assert_eq!(listed.len(), 128, "files lost by concurrent writers");
    for (i, _) in listed {
        assert!(b.read(Handle::new(FileKind::Snapshot, i)).is_ok());
    }
}

/// Threads racing to create one name: exactly one wins, the rest see
/// "already exists", and the file is one writer's complete content.
pub fn racing_writers_of_one_name(b: &dyn Backend) {
    let h = Handle::new(FileKind::Lock, id(9));
    let wins = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let wins = &wins;
            s.spawn(move || match b.write(h, &bytes(t, 50_000)) {
                Ok(()) => {
                    wins.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                }
                Err(Error::AlreadyExists(_)) => {}
                Err(e) => panic!("racing write: {e}"),
            });
        }
    });
    assert_eq!(wins.into_inner(), 1, "not exactly one writer won");
    let got = b.read(h).expect("read");
    assert!(
        (0..8).any(|t| got == bytes(t, 50_000)),
        "the file is no writer's complete content"
    );
}

/// `create` on a location that holds files refuses and changes nothing.
pub fn create_refuses_used_location(b: &dyn Backend) {
    b.write(Handle::Config, b"cfg").expect("write config");
    assert!(
        matches!(b.create(), Err(Error::AlreadyExists(_))),
        "create over an existing repository"
    );
    assert_eq!(b.read(Handle::Config).expect("read"), b"cfg");
}
