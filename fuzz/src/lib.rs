//! Fuzz-target bodies for cairn's decoders of repository bytes, plus the
//! generator of the seed corpus.
//!
//! This one file is shared: the cargo-fuzz binaries in `fuzz_targets/` call
//! these functions, and the main crate's `tests/fuzz_corpus.rs` includes the
//! file with `#[path]` and runs the same functions over the corpus and over
//! mutations of it. Keep it dependent on `cairn` and `std` only.
//!
//! Each target takes raw fuzzer bytes, never panics on malformed input
//! (decoding errors are the expected outcome), and returns whether the
//! decoder it aims at accepted the input. What a successful decode promises
//! is checked with `assert!`: a failed assertion is a bug in cairn, found.
//!
//! Input framing (the first byte selects what is fuzzed):
//!
//! | target     | first byte `s`                 | rest |
//! |------------|--------------------------------|------|
//! | keyfile    | none                           | a key file |
//! | config     | `s & 1`: 0 sealed, 1 plaintext | config file / its plaintext |
//! | index      | `s & 1`: 0 sealed, 1 plaintext | index file / its plaintext |
//! | snapshot   | `s & 1`: 0 sealed, 1 plaintext | snapshot file / its plaintext |
//! | tree       | none                           | tree blob plaintext |
//! | pack       | `s % 3` = 0                    | a whole pack |
//! |            | `s % 3` = 1                    | pack length (u64 LE) then the trailer bytes |
//! |            | `s % 3` = 2                    | header start (u64 LE) then the header plaintext |
//! | blob       | `s & 2`: 0 data, 2 tree blob; `s & 1`: 0 sealed, 1 inner | blob id (32 bytes) then the sealed blob, or the inner (pre-seal) bytes that the target seals itself |
//! | wal        | `s % 3` = 0 sealed, 1 plaintext | WAL record / its plaintext |
//! |            | `s % 3` = 2                    | PostgreSQL's bytes: a WAL file name, segment header and history file all read from the rest |
//!
//! Sealed inputs use [`fixed_key`]; the seeds are sealed with it too.

use cairn::format::blob::{self, BlobType};
use cairn::format::chunker::{Chunker, ChunkerParams};
use cairn::format::config::{self, Config};
use cairn::format::content::ContentList;
use cairn::format::crypto::{KdfParams, MasterKey};
use cairn::format::envelope::to_postcard;
use cairn::format::id::Id;
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::keyfile::KeyFile;
use cairn::format::lock::LockInfo;
use cairn::format::pack::{self, PackBuilder, PackEntry};
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{BaseContent, Node, NodeKind, Tree};

/// The master key every sealed fuzz input and seed is sealed with.
pub fn fixed_key() -> MasterKey {
    MasterKey {
        encryption: [0x11; 32],
        id: [0x22; 32],
        chunker: [0x33; 32],
    }
}

/// Password of the key-file seeds.
pub const KEYFILE_PASSWORD: &[u8] = b"fuzz";

/// Name used in error messages.
const WHAT: &str = "fuzz input";

/// A target body: fuzzer bytes in, whether the aimed-at decoder accepted them out.
pub type Target = fn(&[u8]) -> bool;

/// Every target, by its cargo-fuzz name (also its corpus directory).
pub const TARGETS: &[(&str, Target)] = &[
    ("fuzz_keyfile", keyfile),
    ("fuzz_config", config),
    ("fuzz_pack", pack),
    ("fuzz_index", index),
    ("fuzz_tree", tree),
    ("fuzz_snapshot", snapshot),
    ("fuzz_lock", lock),
    ("fuzz_blob", blob),
    ("fuzz_content_list", content_list),
    ("fuzz_wal", wal),
    ("fuzz_forget", forget),
];

/// Splits off the selector byte.
fn select(data: &[u8]) -> Option<(u8, &[u8])> {
    data.split_first().map(|(s, rest)| (*s, rest))
}

/// Splits `n` leading bytes off `data`.
fn take<const N: usize>(data: &[u8]) -> Option<([u8; N], &[u8])> {
    if data.len() < N {
        return None;
    }
    let (a, rest) = data.split_at(N);
    Some((a.try_into().ok()?, rest))
}

/// Key files: `KeyFile::decode`; when it succeeds with cheap Argon2
/// parameters, also `unwrap_key` (which decodes the wrapped master key).
pub fn keyfile(data: &[u8]) -> bool {
    let Ok(k) = KeyFile::decode(data, WHAT) else {
        return false;
    };
    assert!(k.kdf.validate().is_ok());
    assert!(k.wrapped.len() <= 4096);
    let again = KeyFile::decode(&k.encode().expect("encode"), WHAT).expect("re-decode");
    assert_eq!(again, k);
    // Argon2 with the input's own parameters: only when cheap, so the fuzzer
    // is not slowed to a crawl by (valid) expensive parameters.
    if k.kdf.memory_kib <= 256 && k.kdf.iterations <= 2 && k.kdf.parallelism <= 4 {
        let _ = k.unwrap_key(KEYFILE_PASSWORD, WHAT);
    }
    true
}

/// Config: `Config::decode` (sealed) or `Config::from_plaintext`.
pub fn config(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    let sealed = sel & 1 == 0;
    let decoded = if sealed {
        Config::decode(&key, rest)
    } else {
        Config::from_plaintext(rest, WHAT)
    };
    let Ok(c) = decoded else {
        return false;
    };
    assert!(c.validate().is_ok());
    assert_eq!(c.version, config::FORMAT_VERSION);
    let again = if sealed {
        Config::decode(&key, &c.encode(&key).expect("encode"))
    } else {
        Config::from_plaintext(&c.to_plaintext().expect("encode"), WHAT)
    };
    assert_eq!(again.expect("re-decode"), c);
    // A validated config must drive the chunker without tripping fastcdc's
    // own (debug-build) assertions.
    let chunker = Chunker::new(c.chunker, &key.chunker).expect("validated chunker params");
    let buf: Vec<u8> = (0..20_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    let cuts = chunker.split(&buf);
    assert_eq!(cuts.iter().sum::<usize>(), buf.len());
    assert!(
        cuts.iter()
            .all(|&n| n >= 1 && n <= c.chunker.max_size as usize)
    );
    true
}

/// Checks what a validated pack header promises: contiguous entries from
/// offset 0, lengths in range, covering exactly `header_start` bytes.
fn check_entries(entries: &[PackEntry], header_start: u64) {
    let mut expect = 0u64;
    for e in entries {
        assert_eq!(e.offset, expect);
        assert!(pack::entry_lengths_ok(e));
        expect += u64::from(e.length);
    }
    assert_eq!(expect, header_start);
}

/// Packs: whole-pack `pack::parse` (then every blob it lists is decoded),
/// `header_len_from_trailer` with any pack length, or
/// `header_from_plaintext` with any header start.
pub fn pack(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    match sel % 3 {
        0 => {
            let Ok(entries) = pack::parse(&key, rest, WHAT) else {
                return false;
            };
            // Parsing succeeded, so the trailer is there: recompute where the
            // sealed header starts and check the entries cover exactly the
            // bytes before it.
            let n = rest.len();
            let t = &rest[n - pack::TRAILER_LEN..n - pack::TRAILER_LEN + 4];
            let hlen = u32::from_le_bytes(t.try_into().expect("4 bytes")) as u64;
            let header_start = n as u64 - pack::TRAILER_LEN as u64 - hlen;
            check_entries(&entries, header_start);
            for e in &entries {
                let start = usize::try_from(e.offset).expect("offset fits");
                let blob = rest
                    .get(start..start + e.length as usize)
                    .expect("entry inside the pack");
                if let Ok(plain) = blob::decode(&key, e.kind, &e.id, blob, WHAT, &blob::no_base) {
                    assert_eq!(plain.len(), e.raw_length as usize);
                }
            }
            true
        }
        1 => {
            let Some((len, trailer)) = take::<8>(rest) else {
                return false;
            };
            let pack_len = u64::from_le_bytes(len);
            let Ok(hlen) = pack::header_len_from_trailer(trailer, pack_len, WHAT) else {
                return false;
            };
            assert_eq!(trailer.len(), pack::TRAILER_LEN);
            assert!((cairn::format::crypto::SEAL_OVERHEAD..=pack::MAX_HEADER_LEN).contains(&hlen));
            assert!(hlen as u64 + pack::TRAILER_LEN as u64 <= pack_len);
            true
        }
        _ => {
            let Some((start, plain)) = take::<8>(rest) else {
                return false;
            };
            let header_start = u64::from_le_bytes(start);
            let Ok(entries) = pack::header_from_plaintext(plain, header_start, WHAT) else {
                return false;
            };
            check_entries(&entries, header_start);
            let again = pack::header_from_plaintext(
                &to_postcard(&entries).expect("encode"),
                header_start,
                WHAT,
            );
            assert_eq!(again.expect("re-decode"), entries);
            true
        }
    }
}

/// Index files: `IndexFile::decode` (sealed) or `IndexFile::from_plaintext`.
pub fn index(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    let sealed = sel & 1 == 0;
    let decoded = if sealed {
        IndexFile::decode(&key, rest, WHAT)
    } else {
        IndexFile::from_plaintext(rest, WHAT)
    };
    let Ok(f) = decoded else {
        return false;
    };
    for p in &f.packs {
        let mut expect = 0u64;
        for e in &p.blobs {
            assert_eq!(e.offset, expect);
            assert!(pack::entry_lengths_ok(e));
            expect = e.offset + u64::from(e.length);
        }
    }
    let again = if sealed {
        IndexFile::decode(&key, &f.encode(&key).expect("encode"), WHAT)
    } else {
        IndexFile::from_plaintext(&f.to_plaintext().expect("encode"), WHAT)
    };
    assert_eq!(again.expect("re-decode"), f);
    // Loading into the in-memory index must not panic either.
    let mut idx = cairn::repository::index::Index::new();
    for p in &f.packs {
        idx.add_pack(p.id, &p.blobs);
    }
    for p in &f.packs {
        for e in &p.blobs {
            assert!(idx.get(&e.id).is_some());
        }
    }
    true
}

/// Tree blob plaintext: `Tree::decode`.
pub fn tree(data: &[u8]) -> bool {
    let Ok(t) = Tree::decode(data, WHAT) else {
        return false;
    };
    assert!(t.validate().is_ok());
    for n in &t.nodes {
        assert!(cairn::format::tree::validate_name(&n.name).is_ok());
        assert_eq!(t.get(&n.name), Some(n));
        let _ = n.display_name();
        let _ = n.kind.name();
    }
    let mut copy = t.clone();
    let again = Tree::decode(&copy.encode().expect("encode"), WHAT).expect("re-decode");
    assert_eq!(again, t);
    true
}

/// Content-list blob plaintext: the first byte is the level the reader
/// expects, the rest goes to `ContentList::decode`.
pub fn content_list(data: &[u8]) -> bool {
    let Some((depth, rest)) = select(data) else {
        return false;
    };
    let Ok(l) = ContentList::decode(rest, depth, WHAT) else {
        return false;
    };
    assert_eq!(l.depth, depth);
    assert!(!l.ids.is_empty() && l.ids.len() <= 65_536);
    // (postcard also accepts overlong varints, so compare values, not bytes.)
    let again = ContentList::decode(&l.encode().expect("encode"), depth, WHAT).expect("re-decode");
    assert_eq!(again, l);
    true
}

/// Snapshots: `Snapshot::decode` (sealed) or `Snapshot::from_plaintext`.
pub fn snapshot(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    let sealed = sel & 1 == 0;
    let decoded = if sealed {
        Snapshot::decode(&key, rest, WHAT)
    } else {
        Snapshot::from_plaintext(rest, WHAT)
    };
    let Ok(s) = decoded else {
        return false;
    };
    let dt = s.datetime();
    assert_eq!(dt.timestamp(), s.time);
    let _ = dt.to_rfc3339();
    // Everything cairn prints about a snapshot formats without panicking.
    let _ = cairn::commands::views::snapshot_json(&Id::default(), &s);
    let _ = cairn::commands::views::local_time(&s);
    let again = if sealed {
        Snapshot::decode(&key, &s.encode(&key).expect("encode"), WHAT)
    } else {
        Snapshot::from_plaintext(&s.to_plaintext().expect("encode"), WHAT)
    };
    assert_eq!(again.expect("re-decode"), s);
    true
}

/// WAL records (`s % 3`: 0 sealed, 1 plaintext), and what cairn parses
/// of PostgreSQL's own bytes (`s % 3` = 2: file names, the long header of
/// a segment, timeline history files).
pub fn wal(data: &[u8]) -> bool {
    use cairn::format::wal::{WalFile, WalName, parse_history, segment_header};
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    match sel % 3 {
        2 => {
            let text = String::from_utf8_lossy(rest);
            let name = WalName::parse(&text);
            if let Some(n) = name {
                assert_eq!(n.file_name(), text);
            }
            let switches = parse_history(&text);
            let header = segment_header(rest);
            if let Some(h) = header {
                assert!(h.segment_size.is_power_of_two());
                let _ = cairn::format::wal::segment_name_for_lsn(
                    h.timeline.max(1),
                    h.page_address,
                    h.segment_size,
                );
            }
            name.is_some() || !switches.is_empty() || header.is_some()
        }
        sel => {
            let sealed = sel == 0;
            let decoded = if sealed {
                WalFile::decode(&key, rest, WHAT)
            } else {
                WalFile::from_plaintext(rest, WHAT)
            };
            let Ok(w) = decoded else {
                return false;
            };
            assert!(w.wal_name().is_some());
            let again = if sealed {
                WalFile::decode(&key, &w.encode(&key).expect("encode"), WHAT)
            } else {
                WalFile::from_plaintext(&w.to_plaintext().expect("encode"), WHAT)
            };
            assert_eq!(again.expect("re-decode"), w);
            true
        }
    }
}

/// Lock files (`s & 1`: 0 sealed, 1 plaintext). What decodes also
/// describes itself without panicking.
pub fn lock(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    let decoded = if sel & 1 == 0 {
        LockInfo::decode(&key, rest, WHAT)
    } else {
        let sealed = cairn::format::envelope::seal_plain(&key, cairn::format::lock::MAGIC, rest)
            .expect("seal");
        LockInfo::decode(&key, &sealed, WHAT)
    };
    let Ok(l) = decoded else {
        return false;
    };
    let _ = cairn::repository::lock::describe(&l);
    let _ = cairn::repository::lock::is_stale(&l, "fuzz-host");
    let again = LockInfo::decode(&key, &l.encode(&key).expect("encode"), WHAT);
    assert_eq!(again.expect("re-decode"), l);
    true
}

/// Forget record: the first byte selects a sealed file (even) or a bare
/// plaintext (odd, sealed here).
pub fn forget(data: &[u8]) -> bool {
    use cairn::format::forget::{ForgetRecord, MAGIC, MAX_SNAPSHOTS};
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let key = fixed_key();
    let decoded = if sel & 1 == 0 {
        ForgetRecord::decode(&key, rest, WHAT)
    } else {
        let sealed = cairn::format::envelope::seal_plain(&key, MAGIC, rest).expect("seal");
        ForgetRecord::decode(&key, &sealed, WHAT)
    };
    let Ok(r) = decoded else {
        return false;
    };
    assert!(r.snapshots.len() <= MAX_SNAPSHOTS);
    let again = ForgetRecord::decode(&key, &r.encode(&key).expect("encode"), WHAT);
    assert_eq!(again.expect("re-decode"), r);
    true
}

/// The associated data of a blob, as `format-spec/` defines it:
/// `"CAIRNBL1" || type (1) || id (32)`.
pub fn blob_aad(kind: BlobType, id: &Id) -> [u8; 41] {
    let mut a = [0u8; 41];
    a[..8].copy_from_slice(b"CAIRNBL1");
    a[8] = kind as u8;
    a[9..].copy_from_slice(&id.0);
    a
}

/// The base every delta blob decoded by the blob target gets.
pub fn fuzz_delta_base() -> Vec<u8> {
    (0..4096u32).map(|i| (i % 251) as u8).collect()
}

/// Blobs: `blob::decode` of a sealed blob as given, or of inner bytes
/// (compression byte, length, payload) that the target seals itself so that
/// the decompression path is reached.
pub fn blob(data: &[u8]) -> bool {
    let Some((sel, rest)) = select(data) else {
        return false;
    };
    let Some((id, payload)) = take::<32>(rest) else {
        return false;
    };
    let id = Id(id);
    let kind = if sel & 2 == 0 {
        BlobType::Data
    } else {
        BlobType::Tree
    };
    let key = fixed_key();
    // Delta blobs (inner flag 2) get a fixed base: the decompression with a
    // dictionary is reached, and the id check must hold for that base.
    let base = fuzz_delta_base();
    let lookup = |_: &Id| Ok(base.clone());
    let decoded = if sel & 1 == 0 {
        blob::decode(&key, kind, &id, payload, WHAT, &lookup)
    } else {
        let sealed = key.seal(&blob_aad(kind, &id), payload).expect("seal");
        blob::decode(&key, kind, &id, &sealed, WHAT, &lookup)
    };
    let Ok(plain) = decoded else {
        return false;
    };
    assert!(plain.len() <= blob::MAX_BLOB_SIZE);
    // The id matches the content, or (delta blob) the base named inside and
    // the content.
    let inner = if sel & 1 == 0 {
        key.open(&blob_aad(kind, &id), payload, WHAT)
            .expect("decoded, so it opens")
    } else {
        payload.to_vec()
    };
    let delta_base = inner
        .get(1..33)
        .map(|b| Id(b.try_into().expect("32 bytes")));
    assert!(
        key.blob_id(&plain) == id
            || (inner.first() == Some(&2)
                && delta_base.is_some_and(|b| key.delta_blob_id(&b, &plain) == id))
    );
    true
}

// ---------------------------------------------------------------------------
// Seed corpus
// ---------------------------------------------------------------------------

/// One seed: target name, file name (always starting with `seed-`), bytes.
pub type Seed = (&'static str, String, Vec<u8>);

fn framed(sel: u8, body: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(body.len() + 1);
    v.push(sel);
    v.extend_from_slice(body);
    v
}

fn node(name: &[u8], kind: NodeKind) -> Node {
    let mut n = Node::new(name.to_vec(), kind);
    n.mode = 0o644;
    n.uid = 1000;
    n.gid = 1000;
    n.mtime = 1_700_000_000;
    n.mtime_nsec = 123_456_789;
    n.ctime = 1_700_000_001;
    n.ctime_nsec = 999_999_999;
    n.inode = 42;
    n.device = 2049;
    n.links = 1;
    n
}

fn sample_tree(key: &MasterKey) -> Tree {
    let mut file = node(b"file.txt", NodeKind::File);
    file.size = 70_000;
    file.content = vec![key.blob_id(b"chunk 1"), key.blob_id(b"chunk 2")];
    let mut dir = node(b"dir", NodeKind::Dir);
    dir.mode = 0o755;
    dir.subtree = Some(key.blob_id(b"subtree"));
    let mut link = node(b"link", NodeKind::Symlink);
    link.link_target = b"../some/where".to_vec();
    let mut dev = node(b"tty", NodeKind::CharDevice);
    dev.rdev = 0x0501;
    let mut blk = node(b"sda", NodeKind::BlockDevice);
    blk.rdev = 0x0800;
    let mut t = Tree {
        nodes: vec![
            file,
            dir,
            link,
            dev,
            blk,
            node(b"fifo", NodeKind::Fifo),
            node(b"sock", NodeKind::Socket),
            node(&[0xff, 0xfe, b'x'], NodeKind::File),
            node("caf\u{e9}".as_bytes(), NodeKind::File),
        ],
    };
    t.sort();
    t
}

fn sample_snapshot(key: &MasterKey) -> Snapshot {
    Snapshot {
        time: 1_700_000_000,
        time_nsec: 500_000_000,
        utc_offset: 3600,
        hostname: "host.example".into(),
        username: "alice".into(),
        uid: 1000,
        gid: 1000,
        paths: vec!["/home/alice".into(), "/etc".into()],
        tags: vec!["daily".into(), "t\u{e4}g".into()],
        tree: key.blob_id(b"root tree"),
        parent: Some(Id::of_file(b"parent snapshot")),
        summary: Summary {
            files_new: 3,
            files_changed: 1,
            files_unchanged: 100,
            dirs: 7,
            total_files: 104,
            total_bytes: 1 << 30,
            bytes_read: 12345,
            blobs_added: 4,
            bytes_added: 12000,
            bytes_added_stored: 6000,
            errors: 1,
            started_ns: 1_700_000_000_000_000_000,
            finished_ns: 1_700_000_001_000_000_000,
        },
        error_messages: vec!["/home/alice/x: permission denied".into()],
        program_version: "0.1.0".into(),
        databases: Vec::new(),
        replaces: Some(Id::of_file(b"the snapshot it replaces")),
        postgres: Some(cairn::format::snapshot::PostgresRecord {
            system_id: 7_000_000_000_000_000_001,
            server_version: "15.18".into(),
            timeline: 1,
            stop_timeline: 1,
            start_lsn: 0x2_0000_0028,
            stop_lsn: 0x2_0000_0138,
            segment_size: 16 << 20,
            started: 1_700_000_000,
            stopped: 1_700_000_005,
            xmin: 750,
            data_directory: "/var/lib/postgresql/15/main".into(),
        }),
    }
}

/// Blobs of a few shapes: (kind, plaintext). The second compresses.
fn sample_blobs(key: &MasterKey) -> Vec<(BlobType, Vec<u8>)> {
    let mut t = sample_tree(key);
    vec![
        (BlobType::Data, b"hello, cairn".to_vec()),
        (BlobType::Data, b"abcdefgh".repeat(64)),
        (BlobType::Data, Vec::new()),
        (BlobType::Tree, t.encode().expect("tree")),
    ]
}

/// Every seed, valid for its target (sealed ones under [`fixed_key`]).
/// Sealing uses random nonces, so the bytes differ from run to run.
pub fn seeds() -> Vec<Seed> {
    let key = fixed_key();
    let mut out: Vec<Seed> = Vec::new();
    let mut add = |target: &'static str, name: &str, bytes: Vec<u8>| {
        out.push((target, format!("seed-{name}"), bytes));
    };

    // Key files.
    let cheap = KdfParams {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };
    for (name, kdf, host, user) in [
        ("cheap", cheap, "host", "user"),
        ("unicode", cheap, "h\u{f6}st-\u{1f600}", ""),
        ("default-kdf", KdfParams::DEFAULT, "server", "root"),
    ] {
        let kf = KeyFile::create(&key, KEYFILE_PASSWORD, kdf, host, user).expect("key file");
        add("fuzz_keyfile", name, kf.encode().expect("encode"));
    }

    // Config.
    let small = ChunkerParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    for (name, chunker, level, size) in [
        (
            "default",
            ChunkerParams::DEFAULT,
            3,
            Config::DEFAULT_PACK_SIZE,
        ),
        ("small", small, 0, Config::MIN_PACK_SIZE),
        ("max", ChunkerParams::DEFAULT, 22, Config::MAX_PACK_SIZE),
    ] {
        let c = Config {
            version: config::FORMAT_VERSION,
            id: [0x5a; 32],
            chunker,
            compression_level: level,
            pack_size: size,
            database_chunking: None,
            object_lock: None,
        };
        add(
            "fuzz_config",
            &format!("sealed-{name}"),
            framed(0, &c.encode(&key).expect("encode")),
        );
        add(
            "fuzz_config",
            &format!("plain-{name}"),
            framed(1, &to_postcard(&c).expect("encode")),
        );
    }

    // Packs and blobs.
    let blobs = sample_blobs(&key);
    let mut index_packs = Vec::new();
    for (pname, kind) in [("data", BlobType::Data), ("tree", BlobType::Tree)] {
        let mut b = PackBuilder::new(kind, 0);
        for (k, plain) in blobs.iter().filter(|(k, _)| *k == kind) {
            let id = key.blob_id(plain);
            let enc = blob::encode(&key, *k, &id, plain, 3).expect("blob");
            b.add(id, &enc, plain.len());
        }
        let p = b.finish(&key).expect("pack");
        let n = p.bytes.len();
        add("fuzz_pack", &format!("whole-{pname}"), framed(0, &p.bytes));
        let mut trailer = (n as u64).to_le_bytes().to_vec();
        trailer.extend_from_slice(&p.bytes[n - pack::TRAILER_LEN..]);
        add(
            "fuzz_pack",
            &format!("trailer-{pname}"),
            framed(1, &trailer),
        );
        let header_start: u64 = p.entries.iter().map(|e| u64::from(e.length)).sum();
        let mut header = header_start.to_le_bytes().to_vec();
        header.extend_from_slice(&to_postcard(&p.entries).expect("encode"));
        add("fuzz_pack", &format!("header-{pname}"), framed(2, &header));
        index_packs.push(IndexPack {
            id: p.id,
            blobs: p.entries,
        });
    }
    for (i, (kind, plain)) in blobs.iter().enumerate() {
        let id = key.blob_id(plain);
        let sealed = blob::encode(&key, *kind, &id, plain, 3).expect("blob");
        let inner = key
            .open(&blob_aad(*kind, &id), &sealed, "seed")
            .expect("open own blob");
        let compressed = if inner[0] == 1 { "zstd" } else { "raw" };
        let kbit = if *kind == BlobType::Tree { 2 } else { 0 };
        let name = format!("{i}-{}-{compressed}", kind.name());
        let mut body = id.0.to_vec();
        body.extend_from_slice(&sealed);
        add("fuzz_blob", &format!("sealed-{name}"), framed(kbit, &body));
        let mut body = id.0.to_vec();
        body.extend_from_slice(&inner);
        add(
            "fuzz_blob",
            &format!("inner-{name}"),
            framed(kbit | 1, &body),
        );
    }

    // A delta blob against the base the blob target supplies.
    let base = fuzz_delta_base();
    let base_id = key.blob_id(&base);
    let mut page = base.clone();
    page[200..216].copy_from_slice(b"changed in place");
    let did = key.delta_blob_id(&base_id, &page);
    let sealed = blob::encode_delta(&key, &did, &base_id, &base, &page, 3)
        .expect("delta")
        .expect("delta is smaller");
    let inner = key
        .open(&blob_aad(BlobType::Data, &did), &sealed, "seed")
        .expect("open own blob");
    let mut body = did.0.to_vec();
    body.extend_from_slice(&inner);
    add("fuzz_blob", "inner-delta", framed(1, &body));
    let mut body = did.0.to_vec();
    body.extend_from_slice(&sealed);
    add("fuzz_blob", "sealed-delta", framed(0, &body));

    // Index files.
    let full = IndexFile {
        packs: index_packs,
        supersedes: vec![Id::of_file(b"old index 1"), Id::of_file(b"old index 2")],
        prune: None,
    };
    for (name, f) in [("full", full), ("empty", IndexFile::default())] {
        add(
            "fuzz_index",
            &format!("sealed-{name}"),
            framed(0, &f.encode(&key).expect("encode")),
        );
        add(
            "fuzz_index",
            &format!("plain-{name}"),
            framed(1, &to_postcard(&f).expect("encode")),
        );
    }

    // Trees.
    let mut t = sample_tree(&key);
    add("fuzz_tree", "mixed", t.encode().expect("encode"));
    add(
        "fuzz_tree",
        "empty",
        Tree::default().encode().expect("encode"),
    );
    let mut one = Tree {
        nodes: vec![node(b"only", NodeKind::File)],
    };
    add("fuzz_tree", "one-file", one.encode().expect("encode"));
    let mut nested = node(b"nested", NodeKind::Dir);
    nested.inline = Some(Box::new(one.clone()));
    let mut outer = node(b"outer", NodeKind::Dir);
    outer.inline = Some(Box::new(Tree {
        nodes: vec![nested, node(b"x", NodeKind::File)],
    }));
    let mut inline = Tree {
        nodes: vec![outer, node(b"y", NodeKind::Symlink)],
    };
    add("fuzz_tree", "inline", inline.encode().expect("encode"));
    let mut db = node(b"app.db", NodeKind::File);
    db.content = vec![key.blob_id(b"list 1"), key.blob_id(b"list 2")];
    db.content_depth = 1;
    db.delta_base = Some(BaseContent {
        depth: 1,
        content: vec![key.blob_id(b"base list")],
    });
    let mut delta = Tree { nodes: vec![db] };
    add("fuzz_tree", "delta-base", delta.encode().expect("encode"));

    // Content lists.
    for (name, depth, n) in [("leaf", 1u8, 3u8), ("level-2", 2, 1)] {
        let l = ContentList {
            depth,
            ids: (0..n).map(|i| key.blob_id(&[i])).collect(),
        };
        add(
            "fuzz_content_list",
            name,
            framed(depth, &l.encode().expect("encode")),
        );
    }

    // Snapshots.
    let full = sample_snapshot(&key);
    let minimal = Snapshot {
        time: 0,
        time_nsec: 0,
        utc_offset: 0,
        hostname: String::new(),
        username: String::new(),
        uid: 0,
        gid: 0,
        paths: vec![],
        tags: vec![],
        tree: Id::default(),
        parent: None,
        summary: Summary::default(),
        error_messages: vec![],
        program_version: String::new(),
        databases: Vec::new(),
        replaces: None,
        postgres: None,
    };
    for (name, s) in [("full", full), ("minimal", minimal)] {
        add(
            "fuzz_snapshot",
            &format!("sealed-{name}"),
            framed(0, &s.encode(&key).expect("encode")),
        );
        add(
            "fuzz_snapshot",
            &format!("plain-{name}"),
            framed(1, &to_postcard(&s).expect("encode")),
        );
    }

    // WAL records, names, headers, history files.
    let record = cairn::format::wal::WalFile {
        system_id: 7_000_000_000_000_000_001,
        name: "000000010000000000000003".into(),
        size: 16 << 20,
        hash: [5; 32],
        segment_size: 16 << 20,
        content: vec![key.blob_id(b"wal chunk 1"), key.blob_id(b"wal chunk 2")],
        packs: vec![IndexPack {
            id: Id::of_file(b"wal pack"),
            blobs: vec![PackEntry {
                kind: BlobType::Data,
                id: key.blob_id(b"wal chunk 1"),
                offset: 0,
                length: 100,
                raw_length: 8 << 20,
            }],
        }],
        archived: 1_767_225_600,
        hostname: "db1".into(),
    };
    add(
        "fuzz_wal",
        "sealed",
        framed(0, &record.encode(&key).expect("encode")),
    );
    add(
        "fuzz_wal",
        "plain",
        framed(1, &record.to_plaintext().expect("encode")),
    );
    add(
        "fuzz_wal",
        "history",
        framed(
            2,
            b"1\t0/3000158\tno recovery target specified\n2\t0/5000000\tbefore 2026-12-02\n",
        ),
    );
    let mut header = vec![0u8; 40];
    header[..2].copy_from_slice(&0xD110u16.to_le_bytes());
    header[2..4].copy_from_slice(&2u16.to_le_bytes());
    header[4..8].copy_from_slice(&1u32.to_le_bytes());
    header[8..16].copy_from_slice(&(3u64 << 24).to_le_bytes());
    header[24..32].copy_from_slice(&7_000_000_000_000_000_001u64.to_le_bytes());
    header[32..36].copy_from_slice(&(16u32 << 20).to_le_bytes());
    header[36..40].copy_from_slice(&8192u32.to_le_bytes());
    add("fuzz_wal", "segment-header", framed(2, &header));

    // Lock files.
    let lock = LockInfo {
        time: 1_767_225_600,
        exclusive: true,
        hostname: "host".into(),
        username: "user".into(),
        pid: 4242,
    };
    add(
        "fuzz_lock",
        "sealed",
        framed(0, &lock.encode(&key).expect("encode")),
    );
    add(
        "fuzz_lock",
        "plain",
        framed(1, &to_postcard(&lock).expect("encode")),
    );

    // Forget records.
    let forget = cairn::format::forget::ForgetRecord {
        time: 1_767_225_600,
        hostname: "host".into(),
        username: "user".into(),
        snapshots: vec![Id::of_file(b"snapshot 1"), Id::of_file(b"snapshot 2")],
    };
    add(
        "fuzz_forget",
        "sealed",
        framed(0, &forget.encode(&key).expect("encode")),
    );
    add(
        "fuzz_forget",
        "plain",
        framed(1, &to_postcard(&forget).expect("encode")),
    );
    out
}
