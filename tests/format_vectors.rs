//! Test vectors that pin repository format version 1 (`format-spec/v1.md`).
//!
//! Every expected value in this file was produced once by the code that
//! writes format v1 and is pasted here as a constant. If one of these tests
//! fails, the bytes cairn writes or accepts have changed: that is a format
//! change, not a test to "update". Either fix the code, or introduce a new
//! format version (new magics, a `format-spec/v2.md`, new vectors) and keep
//! these for the old version.
//!
//! The file has four parts:
//!
//! 1. the postcard encoding rules format v1 relies on, checked against the
//!    postcard crate itself;
//! 2. known-answer tests: the exact encoding of every metadata structure,
//!    blob and file ids, Argon2id outputs, the gear table and chunk
//!    boundaries;
//! 3. sealed objects (envelope, blobs, pack, key file) generated once with
//!    random nonces and salts, which must still open and decode;
//! 4. the committed repository `tests/vectors/repo-v1/`, read both with the
//!    library and with [`spec`], a small independent reader written from
//!    `format-spec/v1.md` alone (it uses only the primitives: BLAKE3,
//!    XChaCha20-Poly1305, Argon2id, zstd, and hand-written varint parsing).

use cairn::Id;
use cairn::Repository;
use cairn::format::blob::{self, BlobType};
use cairn::format::chunker::{Chunker, ChunkerParams, GEAR_CONTEXT};
use cairn::format::config::Config;
use cairn::format::crypto::{KdfParams, MasterKey};
use cairn::format::envelope::{from_postcard, to_postcard};
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::keyfile::KeyFile;
use cairn::format::lock::LockInfo;
use cairn::format::pack::{self, PackEntry};
use cairn::format::snapshot::{Snapshot, Summary};
use cairn::format::tree::{Node, NodeKind, Tree};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Helpers and fixed inputs
// ---------------------------------------------------------------------------

fn unhex(s: &str) -> Vec<u8> {
    hex::decode(s).expect("valid hex constant")
}

fn id(s: &str) -> Id {
    Id::from_hex(s).expect("64 hex digits")
}

/// `[start, start+1, start+2, ...]` (wrapping).
fn seq<const N: usize>(start: u8) -> [u8; N] {
    let mut a = [0u8; N];
    for (i, b) in a.iter_mut().enumerate() {
        *b = start.wrapping_add(i as u8);
    }
    a
}

/// SplitMix64 output, each u64 little-endian, truncated to `n` bytes.
/// `tests/vectors/make-repo-v1.sh` uses the same generator.
fn splitmix64_bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut x = seed;
    let mut out = Vec::with_capacity(n + 8);
    while out.len() < n {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(n);
    out
}

const SPLITMIX_SEED: u64 = 0x0123_4567_89ab_cdef;

/// The fixed master key of the known-answer tests.
fn fixed_key() -> MasterKey {
    MasterKey {
        encryption: seq(0x00),
        id: seq(0x40),
        chunker: seq(0x80),
    }
}

fn fixed_config() -> Config {
    Config {
        version: 1,
        id: seq(0xc0),
        chunker: ChunkerParams::DEFAULT,
        compression_level: 3,
        pack_size: 16 * 1024 * 1024,
        database_chunking: None,
        object_lock: None,
    }
}

fn fixed_entries() -> Vec<PackEntry> {
    vec![
        PackEntry {
            kind: BlobType::Data,
            id: Id(seq(0x01)),
            offset: 0,
            length: 54,
            raw_length: 13,
        },
        PackEntry {
            kind: BlobType::Data,
            id: Id(seq(0x21)),
            offset: 54,
            length: 300,
            raw_length: 70000,
        },
    ]
}

fn fixed_tree() -> Tree {
    let mut file = Node::new(b"file.txt".to_vec(), NodeKind::File);
    file.mode = 0o644;
    file.uid = 1000;
    file.gid = 100;
    file.mtime = 1_767_225_600;
    file.mtime_nsec = 123_456_789;
    file.ctime = -1;
    file.ctime_nsec = 999_999_999;
    file.inode = 0x1234_5678;
    file.device = 2049;
    file.links = 1;
    file.size = 70013;
    file.content = vec![Id(seq(0x01)), Id(seq(0x21))];
    let mut dir = Node::new(b"sub".to_vec(), NodeKind::Dir);
    dir.mode = 0o1777;
    dir.links = 2;
    dir.subtree = Some(Id(seq(0x61)));
    let mut link = Node::new(vec![0xff, b'l'], NodeKind::Symlink);
    link.mode = 0o777;
    link.mtime = -86_400;
    link.link_target = b"../target".to_vec();
    let mut dev = Node::new(b"tty".to_vec(), NodeKind::CharDevice);
    dev.mode = 0o620;
    dev.rdev = 0x0400;
    Tree {
        nodes: vec![file, dir, dev, link],
    }
}

fn fixed_snapshot() -> Snapshot {
    Snapshot {
        time: 1_767_225_600,
        time_nsec: 500_000_000,
        utc_offset: -18_000,
        hostname: "host".into(),
        username: "user".into(),
        uid: 1000,
        gid: 100,
        paths: vec!["/home/user".into(), "/srv".into()],
        tags: vec!["daily".into()],
        tree: Id(seq(0x81)),
        parent: Some(Id(seq(0xa1))),
        summary: Summary {
            files_new: 1,
            files_changed: 2,
            files_unchanged: 3,
            dirs: 4,
            total_files: 6,
            total_bytes: 1 << 20,
            bytes_read: 300,
            blobs_added: 7,
            bytes_added: 1000,
            bytes_added_stored: 500,
            errors: 1,
            started_ns: 1_767_225_600_000_000_000,
            finished_ns: 1_767_225_601_500_000_000,
        },
        error_messages: vec!["/srv/x: Permission denied".into()],
        program_version: "cairn 0.1.0".into(),
        databases: Vec::new(),
        replaces: None,
        postgres: None,
    }
}

fn fixed_index() -> IndexFile {
    IndexFile {
        packs: vec![IndexPack {
            id: Id(seq(0xe1)),
            blobs: fixed_entries(),
        }],
        supersedes: vec![Id(seq(0x11))],
        prune: None,
    }
}

const SMALL_KDF: KdfParams = KdfParams {
    memory_kib: 64,
    iterations: 1,
    parallelism: 1,
};

fn fixed_key_file_struct() -> KeyFile {
    KeyFile {
        created: 1_767_225_600,
        hostname: "host".into(),
        username: "user".into(),
        kdf: SMALL_KDF,
        salt: seq(0x10),
        wrapped: seq::<136>(0x30).to_vec(),
    }
}

fn fixed_lock() -> LockInfo {
    LockInfo {
        time: 1_767_225_600,
        exclusive: true,
        hostname: "host".into(),
        username: "user".into(),
        pid: 4242,
    }
}

fn postcard_hex<T: Serialize>(v: &T) -> String {
    hex::encode(postcard::to_allocvec(v).expect("encodes"))
}

// ---------------------------------------------------------------------------
// 1. postcard encoding rules
// ---------------------------------------------------------------------------

#[test]
fn postcard_integer_encodings() {
    // u8 (and i8): one raw byte.
    assert_eq!(postcard_hex(&0u8), "00");
    assert_eq!(postcard_hex(&0xffu8), "ff");
    // Unsigned integers wider than u8: LEB128, 7 bits per byte, least
    // significant group first, high bit = "more bytes follow".
    let unsigned: &[(u64, &str)] = &[
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16_383, "ff7f"),
        (16_384, "808001"),
        (1 << 20, "808040"),
        (u32::MAX as u64, "ffffffff0f"),
        (u64::MAX, "ffffffffffffffffff01"),
    ];
    for &(v, h) in unsigned {
        assert_eq!(postcard_hex(&v), h, "u64 {v}");
        assert_eq!(postcard_hex(&(v as usize)), h, "usize {v}");
        if let Ok(v32) = u32::try_from(v) {
            assert_eq!(postcard_hex(&v32), h, "u32 {v}");
        }
        if let Ok(v16) = u16::try_from(v) {
            assert_eq!(postcard_hex(&v16), h, "u16 {v}");
        }
    }
    assert_eq!(postcard_hex(&u16::MAX), "ffff03");
    // Signed integers wider than i8: zigzag ((n << 1) ^ (n >> 63)), then LEB128.
    let signed: &[(i64, &str)] = &[
        (0, "00"),
        (-1, "01"),
        (1, "02"),
        (-2, "03"),
        (63, "7e"),
        (-64, "7f"),
        (64, "8001"),
        (-18_000, "9f9902"),
        (1_767_225_600, "80e4ad950d"),
        (i32::MAX as i64, "feffffff0f"),
        (i32::MIN as i64, "ffffffff0f"),
        (i64::MAX, "feffffffffffffffff01"),
        (i64::MIN, "ffffffffffffffffff01"),
    ];
    for &(v, h) in signed {
        assert_eq!(postcard_hex(&v), h, "i64 {v}");
        if let Ok(v32) = i32::try_from(v) {
            assert_eq!(postcard_hex(&v32), h, "i32 {v}");
        }
    }
    // bool: one byte, 0 or 1.
    assert_eq!(postcard_hex(&false), "00");
    assert_eq!(postcard_hex(&true), "01");
}

#[derive(Serialize, Deserialize, Debug, PartialEq)]
struct Sample {
    a: u8,
    b: u32,
    c: String,
    d: Option<u16>,
}

#[test]
fn postcard_compound_encodings() {
    // Fixed-size byte arrays: the bytes, no length.
    assert_eq!(postcard_hex(&seq::<32>(0)), hex::encode(seq::<32>(0)));
    // Id is a newtype around [u8; 32]: also 32 raw bytes.
    assert_eq!(postcard_hex(&Id(seq(0x40))), hex::encode(seq::<32>(0x40)));
    // Vec<u8> and String: varint length, then the bytes.
    assert_eq!(postcard_hex(&Vec::<u8>::new()), "00");
    assert_eq!(postcard_hex(&vec![1u8, 2, 3]), "03010203");
    assert_eq!(postcard_hex(&"é".to_string()), "02c3a9");
    let long = vec![0xabu8; 128];
    assert_eq!(postcard_hex(&long), format!("8001{}", "ab".repeat(128)));
    // Vec<T> in general: varint count, then each element.
    assert_eq!(postcard_hex(&vec![1u32, 300]), "0201ac02");
    assert_eq!(
        postcard_hex(&vec![Id(seq(0)), Id(seq(0x20))]),
        format!("02{}", hex::encode(seq::<64>(0)))
    );
    // Option: 00 for None, 01 then the value for Some.
    assert_eq!(postcard_hex(&None::<u32>), "00");
    assert_eq!(postcard_hex(&Some(300u32)), "01ac02");
    assert_eq!(
        postcard_hex(&Some(Id(seq(0)))),
        format!("01{}", hex::encode(seq::<32>(0)))
    );
    // Enums: the variant index (declaration order, from 0) as a varint.
    assert_eq!(postcard_hex(&BlobType::Data), "00");
    assert_eq!(postcard_hex(&BlobType::Tree), "01");
    let kinds = [
        (NodeKind::File, "00"),
        (NodeKind::Dir, "01"),
        (NodeKind::Symlink, "02"),
        (NodeKind::Fifo, "03"),
        (NodeKind::CharDevice, "04"),
        (NodeKind::BlockDevice, "05"),
        (NodeKind::Socket, "06"),
    ];
    for (k, h) in kinds {
        assert_eq!(postcard_hex(&k), h, "{k:?}");
    }
    // Structs: the fields in declaration order, nothing else.
    let s = Sample {
        a: 7,
        b: 128,
        c: "hi".into(),
        d: Some(1),
    };
    assert_eq!(postcard_hex(&s), "0780010268690101");
}

#[test]
fn postcard_decoding_rules() {
    fn de<T: for<'a> Deserialize<'a>>(h: &str) -> Result<T, postcard::Error> {
        postcard::from_bytes(&unhex(h))
    }
    // Rejected: booleans other than 0/1, option tags other than 0/1,
    // unknown enum variants, over-long varints, varints whose last byte
    // overflows the type, invalid UTF-8, truncated input.
    assert!(de::<bool>("02").is_err());
    assert!(de::<Option<u8>>("02").is_err());
    assert!(de::<BlobType>("02").is_err());
    assert!(de::<NodeKind>("07").is_err());
    assert!(de::<u32>("ffffffff10").is_err());
    assert!(de::<u32>("8080808080").is_err());
    assert!(de::<u64>("ffffffffffffffffff02").is_err());
    assert!(de::<u64>("8080808080808080808000").is_err());
    assert!(de::<u16>("ffff04").is_err());
    assert!(de::<String>("01ff").is_err());
    assert!(de::<Vec<u8>>("0501").is_err());
    assert!(de::<[u8; 32]>("0001").is_err());
    // Accepted: a non-minimal ("padded") varint within the type's maximum
    // length decodes to the same value. Writers never produce one; readers
    // built on postcard 1.x accept it (format-spec/v1.md says so).
    assert_eq!(de::<u32>("8000").unwrap(), 0);
    assert_eq!(de::<u64>("ff80808000").unwrap(), 127);
    // postcard itself ignores trailing bytes; cairn's decoder does not.
    assert_eq!(de::<u8>("0102").unwrap(), 1);
    assert!(from_postcard::<u8>(&unhex("0102"), "t").is_err());
    assert_eq!(from_postcard::<u8>(&unhex("01"), "t").unwrap(), 1);
}

// ---------------------------------------------------------------------------
// 2. Known-answer tests: encodings, ids, KDF, chunker
// ---------------------------------------------------------------------------

const MASTER_KEY_PC: &str = concat!(
    "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    "404142434445464748494a4b4c4d4e4f505152535455565758595a5b5c5d5e5f",
    "808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f",
);

const CONFIG_PC: &str = concat!(
    "01",                                                               // version 1
    "c0c1c2c3c4c5c6c7c8c9cacbcccdcecfd0d1d2d3d4d5d6d7d8d9dadbdcdddedf", // id
    "808020",                                                           // min 524288
    "808040",                                                           // avg 1048576
    "80808004",                                                         // max 8388608
    "06",                                                               // zstd level 3
    "80808008",                                                         // pack size 16 MiB
);

const ENTRIES_PC: &str = concat!(
    "02", // two entries
    "00", // data
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "00", // offset 0
    "36", // length 54
    "0d", // raw length 13
    "00", // data
    "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40",
    "36",     // offset 54
    "ac02",   // length 300
    "f0a204", // raw length 70000
);

const INLINE_TREE_PC: &str = concat!(
    "01016401ed0300000000000000000000000000000100",
    "013401017800a403000000000000000000030000010102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f200000",
);

const TREE_PC: &str = concat!(
    "04",                 // four nodes
    "0866696c652e747874", // name "file.txt"
    "00",                 // kind File
    "a403",               // mode 0o644
    "e807",               // uid 1000
    "64",                 // gid 100
    "80e4ad950d",         // mtime 1767225600
    "959aef3a",           // mtime_nsec 123456789
    "01",                 // ctime -1
    "ff93ebdc03",         // ctime_nsec 999999999
    "f8acd19101",         // inode 0x12345678
    "8110",               // device 2049
    "01",                 // links 1
    "fda204",             // size 70013
    "00",                 // rdev 0
    "00",                 // link_target (empty)
    "02",                 // two content ids
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40",
    "00",               // subtree None
    "03737562",         // name "sub"
    "01",               // kind Dir
    "ff07",             // mode 0o1777
    "0000000000000000", // uid, gid, mtime, mtime_nsec, ctime, ctime_nsec, inode, device
    "02",               // links 2
    "0000",             // size, rdev
    "00",               // link_target
    "00",               // content
    "01",               // subtree Some
    "6162636465666768696a6b6c6d6e6f707172737475767778797a7b7c7d7e7f80",
    "03747479",             // name "tty"
    "04",                   // kind CharDevice
    "9003",                 // mode 0o620
    "00000000000000000000", // uid .. device (8 fields), links, size
    "800800",               // rdev 1024, link_target empty
    "0000",                 // content, subtree
    "02ff6c",               // name ff 6c
    "02",                   // kind Symlink
    "ff03",                 // mode 0o777
    "0000",                 // uid, gid
    "ffc50a",               // mtime -86400
    "0000000000000000",     // mtime_nsec, ctime, ctime_nsec, inode, device, links, size, rdev
    "092e2e2f746172676574", // link_target "../target"
    "0000",                 // content, subtree
);

const SNAPSHOT_PC: &str = concat!(
    "80e4ad950d",                                                         // time 1767225600
    "80cab5ee01",                                                         // time_nsec 500000000
    "9f9902",                                                             // utc_offset -18000
    "04686f7374",                                                         // hostname "host"
    "0475736572",                                                         // username "user"
    "e807",                                                               // uid 1000
    "64",                                                                 // gid 100
    "020a2f686f6d652f75736572042f737276",                                 // paths
    "01056461696c79",                                                     // tags ["daily"]
    "8182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9fa0",   // tree
    "01a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebfc0", // parent
    "01020304",           // files_new, _changed, _unchanged, dirs
    "06",                 // total_files
    "808040",             // total_bytes
    "ac02",               // bytes_read
    "07",                 // blobs_added
    "e807",               // bytes_added
    "f403",               // bytes_added_stored
    "01",                 // errors
    "8080d0dfbd94b98631", // started_ns
    "80bc91f6c894b98631", // finished_ns
    "01192f7372762f783a205065726d697373696f6e2064656e696564", // error_messages
    "0b636169726e20302e312e30", // program_version
);

const INDEX_PC: &str = concat!(
    "01", // one pack
    "e1e2e3e4e5e6e7e8e9eaebecedeeeff0f1f2f3f4f5f6f7f8f9fafbfcfdfeff00",
    "02", // its two blobs, encoded as in ENTRIES_PC
    "00",
    "0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20",
    "00360d",
    "00",
    "2122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f40",
    "36ac02f0a204",
    "01", // supersedes one file
    "1112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f30",
);

const KEY_FILE_PC: &str = concat!(
    "434149524e4b5931",                                                 // "CAIRNKY1"
    "80e4ad950d",                                                       // created 1767225600
    "04686f7374",                                                       // hostname
    "0475736572",                                                       // username
    "400101", // memory 64 KiB, 1 pass, 1 lane
    "101112131415161718191a1b1c1d1e1f202122232425262728292a2b2c2d2e2f", // salt
    "8801",   // wrapped: 136 bytes
    "303132333435363738393a3b3c3d3e3f404142434445464748494a4b4c4d4e4f",
    "505152535455565758595a5b5c5d5e5f606162636465666768696a6b6c6d6e6f",
    "707172737475767778797a7b7c7d7e7f808182838485868788898a8b8c8d8e8f",
    "909192939495969798999a9b9c9d9e9fa0a1a2a3a4a5a6a7a8a9aaabacadaeaf",
    "b0b1b2b3b4b5b6b7",
);

const LOCK_PC: &str = "80e4ad950d0104686f737404757365729221";

#[test]
fn master_key_encoding() {
    let key = fixed_key();
    assert_eq!(hex::encode(to_postcard(&key).unwrap()), MASTER_KEY_PC);
    let back: MasterKey = from_postcard(&unhex(MASTER_KEY_PC), "t").unwrap();
    assert_eq!(back, key);
    assert_eq!(spec::master_key(&unhex(MASTER_KEY_PC)), key);
}

#[test]
fn config_encoding_and_validation() {
    let c = fixed_config();
    assert_eq!(hex::encode(to_postcard(&c).unwrap()), CONFIG_PC);
    assert_eq!(Config::from_plaintext(&unhex(CONFIG_PC), "t").unwrap(), c);
    assert_eq!(spec::config(&unhex(CONFIG_PC)), c);
    // Trailing bytes are rejected.
    assert!(Config::from_plaintext(&unhex(&format!("{CONFIG_PC}00")), "t").is_err());
    // Validation rules.
    let bad = |f: &dyn Fn(&mut Config)| {
        let mut c = fixed_config();
        f(&mut c);
        Config::from_plaintext(&to_postcard(&c).unwrap(), "t").is_err()
    };
    assert!(bad(&|c| c.version = 2));
    assert!(bad(&|c| c.version = 0));
    assert!(bad(&|c| c.compression_level = -1));
    assert!(bad(&|c| c.compression_level = 23));
    assert!(bad(&|c| c.pack_size = 1024 * 1024 - 1));
    assert!(bad(&|c| c.pack_size = 1024 * 1024 * 1024 + 1));
    assert!(bad(&|c| c.chunker.avg_size = 3 << 18));
    assert!(bad(&|c| c.chunker.min_size = 63));
    assert!(bad(&|c| c.chunker.min_size = 65));
    assert!(bad(&|c| c.chunker.max_size = 16 * 1024 * 1024 + 2));
    assert!(bad(&|c| c.chunker.min_size = 2 * 1024 * 1024));
    assert!(!bad(&|c| c.compression_level = 0));
    assert!(!bad(&|c| c.pack_size = 1024 * 1024));
    assert!(!bad(&|c| {
        c.chunker = ChunkerParams {
            min_size: 64,
            avg_size: 256,
            max_size: 1024,
        }
    }));
}

#[test]
fn pack_header_entries_encoding() {
    let e = fixed_entries();
    assert_eq!(hex::encode(to_postcard(&e).unwrap()), ENTRIES_PC);
    // The header decoder checks contiguity against where the header starts.
    assert_eq!(
        pack::header_from_plaintext(&unhex(ENTRIES_PC), 354, "t").unwrap(),
        e
    );
    assert!(pack::header_from_plaintext(&unhex(ENTRIES_PC), 355, "t").is_err());
    assert_eq!(spec::entries(&mut spec::Cur::new(&unhex(ENTRIES_PC))), e);
    let mut gap = e.clone();
    gap[1].offset = 55;
    assert!(pack::header_from_plaintext(&to_postcard(&gap).unwrap(), 355, "t").is_err());
    let mut short = e;
    short[0].length = 39;
    short[1].offset = 39;
    assert!(pack::header_from_plaintext(&to_postcard(&short).unwrap(), 339, "t").is_err());
}

#[test]
fn tree_encoding_and_validation() {
    let mut t = fixed_tree();
    let bytes = t.encode().unwrap();
    assert_eq!(hex::encode(&bytes), TREE_PC);
    assert_eq!(Tree::decode(&bytes, "t").unwrap(), fixed_tree());
    assert_eq!(spec::tree(&bytes), fixed_tree());
    // Encoding sorts by name bytes.
    let mut shuffled = fixed_tree();
    shuffled.nodes.reverse();
    assert_eq!(hex::encode(shuffled.encode().unwrap()), TREE_PC);
    // The empty tree (an empty directory) is the single byte 00.
    assert_eq!(Tree::default().encode().unwrap(), vec![0u8]);
    // Decoding rejects what restore must never see.
    let rejects = |f: &dyn Fn(&mut Tree)| {
        let mut t = fixed_tree();
        f(&mut t);
        Tree::decode(&to_postcard(&t).unwrap(), "t").is_err()
    };
    assert!(rejects(&|t| t.nodes.reverse()));
    assert!(rejects(&|t| t.nodes[1].name = b"file.txt".to_vec()));
    for bad in [&b""[..], b".", b"..", b"a/b", b"a\0b"] {
        assert!(rejects(&|t| t.nodes[0].name = bad.to_vec()), "{bad:?}");
    }
    assert!(rejects(&|t| t.nodes[0].mtime_nsec = 1_000_000_000));
    assert!(rejects(&|t| t.nodes[0].ctime_nsec = 1_000_000_000));
    assert!(rejects(&|t| t.nodes[0].mode = 0o10000));
    assert!(rejects(&|t| t.nodes[1].subtree = None));
    assert!(rejects(&|t| t.nodes[0].subtree = Some(Id(seq(0)))));
    assert!(rejects(&|t| t.nodes[3].content = vec![Id(seq(0))]));
}

/// A tree whose directory `d` is stored inline (v1-databases.md section 3):
/// the version 1 nodes with `subtree` none, then the extension block
/// `[count, content_depth, Some, len, inner tree bytes]`.
#[test]
fn inline_subtree_encoding() {
    let mut f = Node::new(b"x".to_vec(), NodeKind::File);
    f.mode = 0o644;
    f.size = 3;
    f.content = vec![Id(seq(0x01))];
    let inner = Tree { nodes: vec![f] };
    let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
    d.mode = 0o755;
    d.inline = Some(Box::new(inner.clone()));
    let mut t = Tree { nodes: vec![d] };
    let bytes = t.encode().unwrap();

    let inner_pc = to_postcard(&inner).unwrap();
    let mut v1_part = t.clone();
    v1_part.nodes[0].inline = None;
    let mut expected = to_postcard(&v1_part).unwrap();
    expected.extend_from_slice(&[0x01, 0x00, 0x01, inner_pc.len() as u8]);
    expected.extend_from_slice(&inner_pc);
    expected.push(0x00); // delta_base: None
    assert_eq!(bytes, expected);
    // Pinned bytes.
    assert_eq!(
        hex::encode(&bytes),
        INLINE_TREE_PC,
        "inline tree encoding changed"
    );
    assert_eq!(Tree::decode(&bytes, "t").unwrap(), t);
    // The v1 part alone is a directory without a listing: rejected.
    assert!(Tree::decode(&to_postcard(&v1_part).unwrap(), "t").is_err());
}

/// Delta id of the page below against the base below, under `fixed_key()`.
const DELTA_BLOB_ID: &str = "81a75c7fd616674faf953b01bf147e4701ac5c164affce60b478a041a20c3d5f";

/// A base "page" and a changed version of it (bytes 100..110 replaced).
fn delta_pair() -> (Vec<u8>, Vec<u8>) {
    let base: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut page = base.clone();
    page[100..110].copy_from_slice(b"0123456789");
    (base, page)
}

#[test]
fn delta_blob_id_and_encoding() {
    let key = fixed_key();
    let (base, page) = delta_pair();
    let base_id = key.blob_id(&base);
    // The id, computed from the spec's definition.
    let dkey = blake3::derive_key("cairn 2026-11-29 delta blob id", &key.id);
    let mut h = blake3::Hasher::new_keyed(&dkey);
    h.update(&base_id.0);
    h.update(&page);
    let did = Id(*h.finalize().as_bytes());
    assert_eq!(key.delta_blob_id(&base_id, &page), did);
    assert_eq!(did.to_hex(), DELTA_BLOB_ID, "delta id derivation changed");
    assert_ne!(did, key.blob_id(&page));

    let sealed = blob::encode_delta(&key, &did, &base_id, &base, &page, 3)
        .unwrap()
        .expect("delta is smaller");
    // Inner bytes as documented: 02 || base id || raw_length || zstd frame
    // compressed with the dictionary "CDB1" || base.
    let inner = spec::open(&key.encryption, &spec::blob_ad(0, &did.0), &sealed).unwrap();
    assert_eq!(inner[0], 2);
    assert_eq!(&inner[1..33], &base_id.0);
    assert_eq!(&inner[33..37], &4096u32.to_le_bytes());
    assert_eq!(
        &inner[37..41],
        &[0x28, 0xb5, 0x2f, 0xfd],
        "zstd frame magic"
    );
    let mut dict = b"CDB1".to_vec();
    dict.extend_from_slice(&base);
    let mut d = zstd::bulk::Decompressor::with_dictionary(&dict).unwrap();
    assert_eq!(d.decompress(&inner[37..], 4096).unwrap(), page);
    // A frame written independently, with the documented dictionary, decodes.
    let frame = zstd::bulk::Compressor::with_dictionary(19, &dict)
        .unwrap()
        .compress(&page)
        .unwrap();
    let mut own = inner[..37].to_vec();
    own.extend_from_slice(&frame);
    let resealed = key.seal(&spec::blob_ad(0, &did.0), &own).unwrap();
    let lookup = |b: &Id| {
        assert_eq!(*b, base_id);
        Ok(base.clone())
    };
    assert_eq!(
        blob::decode(&key, BlobType::Data, &did, &resealed, "t", &lookup).unwrap(),
        page
    );
    assert_eq!(
        blob::decode(&key, BlobType::Data, &did, &sealed, "t", &lookup).unwrap(),
        page
    );
    // Without its base, as a tree blob, or under the content id: rejected.
    assert!(blob::decode(&key, BlobType::Data, &did, &sealed, "t", &blob::no_base).is_err());
    assert!(blob::decode(&key, BlobType::Tree, &did, &sealed, "t", &lookup).is_err());
    let cid = key.blob_id(&page);
    assert!(blob::decode(&key, BlobType::Data, &cid, &sealed, "t", &lookup).is_err());
    assert_tamper_evident(&sealed, |b| {
        blob::decode(&key, BlobType::Data, &did, b, "t", &lookup).is_ok()
    });
}

#[test]
fn delta_base_node_encoding() {
    let mut f = Node::new(b"db".to_vec(), NodeKind::File);
    f.mode = 0o644;
    f.size = 4096;
    f.content = vec![Id(seq(0x01))];
    f.delta_base = Some(cairn::format::tree::BaseContent {
        depth: 0,
        content: vec![Id(seq(0x21))],
    });
    let mut t = Tree { nodes: vec![f] };
    let bytes = t.encode().unwrap();
    let mut v1_part = t.clone();
    v1_part.nodes[0].delta_base = None;
    let mut expected = to_postcard(&v1_part).unwrap();
    // TreeExt { nodes: [NodeExt { content_depth 0, inline None,
    //   delta_base Some(BaseContent { depth 0, content [id] }) }] }
    expected.extend_from_slice(&[0x01, 0x00, 0x00, 0x01, 0x00, 0x01]);
    expected.extend_from_slice(&seq::<32>(0x21));
    assert_eq!(bytes, expected);
    assert_eq!(Tree::decode(&bytes, "t").unwrap(), t);
    // An empty base, or one nested too deep: rejected.
    let mut empty = t.clone();
    empty.nodes[0].delta_base.as_mut().unwrap().content.clear();
    assert!(Tree::decode(&empty.encode().unwrap(), "t").is_err());
    let mut deep = t.clone();
    deep.nodes[0].delta_base.as_mut().unwrap().depth = 5;
    assert!(Tree::decode(&deep.encode().unwrap(), "t").is_err());
}

#[test]
fn snapshot_encoding_and_validation() {
    let s = fixed_snapshot();
    assert_eq!(hex::encode(to_postcard(&s).unwrap()), SNAPSHOT_PC);
    assert_eq!(
        Snapshot::from_plaintext(&unhex(SNAPSHOT_PC), "t").unwrap(),
        s
    );
    assert_eq!(spec::snapshot(&unhex(SNAPSHOT_PC)), s);
    let rejects = |f: &dyn Fn(&mut Snapshot)| {
        let mut s = fixed_snapshot();
        f(&mut s);
        Snapshot::from_plaintext(&to_postcard(&s).unwrap(), "t").is_err()
    };
    assert!(rejects(&|s| s.time_nsec = 1_000_000_000));
    assert!(rejects(&|s| s.utc_offset = 86_400));
    assert!(rejects(&|s| s.utc_offset = -86_400));
    assert!(rejects(&|s| s.time = i64::MAX));
    assert!(!rejects(&|s| s.utc_offset = 86_399));
}

#[test]
fn index_encoding_and_validation() {
    let f = fixed_index();
    assert_eq!(hex::encode(to_postcard(&f).unwrap()), INDEX_PC);
    assert_eq!(IndexFile::from_plaintext(&unhex(INDEX_PC), "t").unwrap(), f);
    assert_eq!(spec::index(&unhex(INDEX_PC)), f);
    let mut gap = fixed_index();
    gap.packs[0].blobs[1].offset = 60;
    assert!(IndexFile::from_plaintext(&to_postcard(&gap).unwrap(), "t").is_err());
    let mut late = fixed_index();
    late.packs[0].blobs[0].offset = 1;
    late.packs[0].blobs[1].offset = 55;
    assert!(IndexFile::from_plaintext(&to_postcard(&late).unwrap(), "t").is_err());
    let mut huge = fixed_index();
    huge.packs[0].blobs[1].raw_length = 512 * 1024 * 1024 + 1;
    assert!(IndexFile::from_plaintext(&to_postcard(&huge).unwrap(), "t").is_err());
}

#[test]
fn key_file_encoding_and_validation() {
    let k = fixed_key_file_struct();
    assert_eq!(hex::encode(k.encode().unwrap()), KEY_FILE_PC);
    assert_eq!(KeyFile::decode(&unhex(KEY_FILE_PC), "t").unwrap(), k);
    assert_eq!(spec::key_file(&unhex(KEY_FILE_PC)), k);
    let rejects = |f: &dyn Fn(&mut KeyFile)| {
        let mut k = fixed_key_file_struct();
        f(&mut k);
        KeyFile::decode(&k.encode().unwrap(), "t").is_err()
    };
    assert!(rejects(&|k| k.kdf.memory_kib = 4 * 1024 * 1024 + 1));
    assert!(rejects(&|k| k.kdf.memory_kib = 7));
    assert!(rejects(&|k| {
        k.kdf.parallelism = 2;
        k.kdf.memory_kib = 15
    }));
    assert!(rejects(&|k| k.kdf.iterations = 0));
    assert!(rejects(&|k| k.kdf.iterations = 65));
    assert!(rejects(&|k| k.kdf.parallelism = 0));
    assert!(rejects(&|k| {
        k.kdf.parallelism = 65;
        k.kdf.memory_kib = 65 * 8
    }));
    assert!(rejects(&|k| k.wrapped = vec![0; 4097]));
    assert!(!rejects(&|k| k.kdf.memory_kib = 8));
    assert!(!rejects(&|k| k.kdf.memory_kib = 4 * 1024 * 1024));
    let mut bad_magic = unhex(KEY_FILE_PC);
    bad_magic[7] = b'2';
    assert!(KeyFile::decode(&bad_magic, "t").is_err());
}

#[test]
fn lock_info_encoding() {
    assert_eq!(hex::encode(to_postcard(&fixed_lock()).unwrap()), LOCK_PC);
    let back: LockInfo = from_postcard(&unhex(LOCK_PC), "t").unwrap();
    assert_eq!(back, fixed_lock());
    assert_eq!(spec::lock(&unhex(LOCK_PC)), fixed_lock());
}

#[test]
fn blob_ids_and_file_names() {
    let key = fixed_key();
    // Blob id: BLAKE3 keyed with the id key, over the plaintext.
    assert_eq!(
        key.blob_id(b"hello, cairn\n").to_hex(),
        "c67e906223f9347756c52bf3e27c32cc107dafd551ddd92701c7140b99e5c27e"
    );
    assert_eq!(
        blake3::keyed_hash(&seq(0x40), b"hello, cairn\n")
            .to_hex()
            .as_str(),
        "c67e906223f9347756c52bf3e27c32cc107dafd551ddd92701c7140b99e5c27e"
    );
    assert_eq!(
        key.blob_id(b"").to_hex(),
        blake3::keyed_hash(&seq(0x40), b"").to_hex().as_str()
    );
    // File name: plain BLAKE3 of the whole file.
    assert_eq!(
        Id::of_file(b"hello, cairn\n").to_hex(),
        "304d6e1791df3d0eabd1e6451c301dd85caed0e1d6d2759b8ba2dcfd9032ac90"
    );
    assert_eq!(
        cairn::backend::Handle::new(
            cairn::backend::FileKind::Pack,
            id("304d6e1791df3d0eabd1e6451c301dd85caed0e1d6d2759b8ba2dcfd9032ac90")
        )
        .rel_path(),
        "data/30/304d6e1791df3d0eabd1e6451c301dd85caed0e1d6d2759b8ba2dcfd9032ac90"
    );
}

#[test]
fn argon2id_known_answers() {
    let a = SMALL_KDF
        .derive(b"cairn-test-vector", &seq::<32>(0x10))
        .unwrap();
    assert_eq!(
        hex::encode(a),
        "072508268c9ae0ed9a2d1a40dd0551ab35f207e4b6dbd0acf91fe3a2fcb50f77"
    );
    let p = KdfParams {
        memory_kib: 256,
        iterations: 2,
        parallelism: 2,
    };
    let b = p.derive(b"password", &seq::<32>(0x10)).unwrap();
    assert_eq!(
        hex::encode(b),
        "f2a04a9fa6e41a7664aff2c3d8e1853267827056e18bbd55f394ba6cd308d876"
    );
    assert_eq!(spec::argon2id(b"password", &seq(0x10), 256, 2, 2), b);
}

/// fastcdc v2020's mask table, as printed in format-spec/v1.md.
const SPEC_MASKS: [u64; 26] = [
    0,
    0,
    0,
    0,
    0,
    0x0000_0000_0180_4110,
    0x0000_0000_0180_3110,
    0x0000_0000_1803_5100,
    0x0000_0018_0003_5300,
    0x0000_0190_0035_3000,
    0x0000_5900_0353_0000,
    0x0000_d900_0353_0000,
    0x0000_d901_0353_0000,
    0x0000_d903_0353_0000,
    0x0000_d903_1353_0000,
    0x0000_d90f_0353_0000,
    0x0000_d903_0353_7000,
    0x0000_d907_0353_7000,
    0x0000_d907_0753_7000,
    0x0000_d917_0753_7000,
    0x0000_d917_4753_7000,
    0x0000_d917_6753_7000,
    0x0000_d937_6753_7000,
    0x0000_d937_7753_7000,
    0x0000_d937_7757_7000,
    0x0000_db37_7757_7000,
];

/// Chunk lengths of the first 1 MiB of SplitMix64 output with the fixed
/// chunker key (`seq(0x80)`) and min 4096 / avg 16384 / max 65536.
const CHUNKS_16K: [usize; 56] = [
    8268, 6042, 17544, 8083, 24377, 22585, 17118, 28176, 23473, 18573, 26980, 16936, 17964, 17872,
    4346, 26902, 10696, 37251, 27825, 8640, 10493, 17266, 9047, 22014, 9083, 18226, 17012, 30283,
    28544, 19765, 18836, 17979, 13143, 33170, 29908, 27631, 17827, 21026, 27913, 40062, 16946,
    24502, 14553, 9645, 16811, 4667, 25045, 20155, 26289, 22600, 4704, 6225, 19793, 16576, 9464,
    11722,
];

/// The same for the first 16 KiB with min 64 / avg 256 / max 1024.
const CHUNKS_256: [usize; 56] = [
    319, 467, 262, 377, 275, 266, 258, 303, 66, 76, 352, 260, 264, 77, 334, 242, 434, 106, 169,
    346, 91, 654, 191, 267, 403, 331, 288, 154, 204, 340, 354, 261, 332, 308, 515, 190, 284, 133,
    297, 374, 177, 286, 260, 406, 279, 586, 313, 261, 112, 305, 480, 304, 562, 83, 490, 256,
];

#[test]
fn gear_table_and_chunk_boundaries() {
    assert_eq!(SPEC_MASKS, fastcdc::v2020::MASKS);
    assert_eq!(GEAR_CONTEXT, "cairn 2026-11 chunker gear table v1");
    let ck: [u8; 32] = seq(0x80);
    let gear = spec::gear_table(&ck);
    assert_eq!(gear[0], 0x481b_3ebe_ef3c_e39f);
    assert_eq!(gear[1], 0x05f3_2d58_c5f5_143d);
    assert_eq!(gear[2], 0xb599_3445_56fa_750a);
    assert_eq!(gear[3], 0x9737_b231_fa2b_9d4c);
    assert_eq!(gear[255], 0xaa06_eca3_b4cf_9293);

    let data = splitmix64_bytes(SPLITMIX_SEED, 1 << 20);
    assert_eq!(hex::encode(&data[..16]), "9daa8fa407387a1593d0a1349b5273d5");
    assert_eq!(
        blake3::hash(&data).to_hex().as_str(),
        "93bee4bb14db8e09f898e31e141090b6424f97c18485745962c9556b0bcbfb3b"
    );
    let p16k = ChunkerParams {
        min_size: 4096,
        avg_size: 16384,
        max_size: 65536,
    };
    let c = Chunker::new(p16k, &ck).unwrap();
    assert_eq!(c.split(&data), CHUNKS_16K);
    let p256 = ChunkerParams {
        min_size: 64,
        avg_size: 256,
        max_size: 1024,
    };
    let c = Chunker::new(p256, &ck).unwrap();
    assert_eq!(c.split(&data[..16384]), CHUNKS_256);
    // With the default sizes 1 MiB is a single chunk (no cut point between
    // 512 KiB and the end of the input).
    let c = Chunker::new(ChunkerParams::DEFAULT, &ck).unwrap();
    assert_eq!(c.split(&data), vec![1 << 20]);
}

#[test]
fn chunker_matches_the_spec_cut_rule() {
    let ck: [u8; 32] = seq(0x80);
    let gear = spec::gear_table(&ck);
    let data = splitmix64_bytes(SPLITMIX_SEED, 1 << 20);
    let mut zeros_then_data = vec![0u8; 70_000];
    zeros_then_data.extend_from_slice(&data[..200_000]);
    for (min, avg, max) in [
        (4096, 16384, 65536),
        (64, 256, 1024),
        (256, 256, 1024),
        (2048, 8192, 8192),
        (64, 4096, 1_048_576),
    ] {
        let p = ChunkerParams {
            min_size: min,
            avg_size: avg,
            max_size: max,
        };
        let c = Chunker::new(p, &ck).unwrap();
        for input in [
            &data[..],
            &data[..16_385],
            &data[..1001],
            &data[..65],
            &data[..64],
            &data[..1],
            &zeros_then_data[..],
        ] {
            assert_eq!(
                c.split(input),
                spec::split(input, p, &gear),
                "{p:?}, {} bytes",
                input.len()
            );
        }
    }
    // A different key gives different boundaries.
    let other = Chunker::new(
        ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        &[0u8; 32],
    )
    .unwrap();
    assert_ne!(other.split(&data), CHUNKS_16K);
}

// ---------------------------------------------------------------------------
// 3. Sealed objects, generated once (random nonces and salt) and pasted
// ---------------------------------------------------------------------------

/// `Config::encode(fixed_config(), fixed_key())`.
const SEALED_CONFIG: &str = concat!(
    "434149524e43463194bda07ec4040e5161888718ac458bb5dbd19a9eb8166352",
    "c0f6578e605eb6dfd8ab15326d1dfb61af964d949203db198fb03c49880162c2",
    "6511d36db6480fd148addef9403a15d0c8a2bda3501da184b5c20cd767552111",
);

/// The data blob "hello, cairn\n" (13 bytes: too short to compress).
const SEALED_BLOB_RAW: &str = concat!(
    "f4c28075bccf78b74a7090a9d7122c3dd4ed12f65af971e485c0ffc216df8cb5",
    "7fbf44f8630fe060403a890cfbbe4f3ac665d87a1b68",
);

/// The data blob "cairn " x 64 (384 bytes, zstd level 3).
const SEALED_BLOB_ZSTD: &str = concat!(
    "69d2ceedbaff0f282f5a77574c789c87878d3509daedbd209fe72d7a2a56c969",
    "f31b5683b04172457f8a78ff2a7742d8e3ffcd340036973d24bb0d6a221deafa",
    "6d22e9a2",
);

/// The tree blob `fixed_tree()` (its encoding is `TREE_PC`).
const TREE_BLOB_ID: &str = "c24918ef81f9270f85ba486367614a3576514e5c49104a97ec07ce245b00ee4a";
const SEALED_TREE: &str = concat!(
    "59b203fe7f4deb3ae6c5425dccef02dbbdca742c75ea4f4d97a783243163c53f",
    "dbc58aab80665935ab7100269d096b4a54bd5d4914264cece84408754a13fbd8",
    "28520454d3e2b26effdda60eb486f2f492c0d54a8918a247246c4d91cd74b213",
    "2ef1386c96a64464654f7c7460638769c8205e818af28fc8ef5cbe064c0399d4",
    "1b7e3de88e192d83c6e9c9330d032b4e97afeb68abae8cc297f3dde4134e0370",
    "043b5954b911a4ea57132ba278ad54951f956d21a022a19f661cc4869f90d1c4",
    "f1386044cb8fc262adc23d415b8001a4bb28559fa683d535cbc86b059b2c1f00",
    "922d992ff45e31592a08e5bfa81799580821102b1ac6a216f7e56579c2f7ae6a",
    "ef",
);

/// A data pack holding `SEALED_BLOB_RAW` then `SEALED_BLOB_ZSTD`.
const PACK: &str = concat!(
    "f4c28075bccf78b74a7090a9d7122c3dd4ed12f65af971e485c0ffc216df8cb5",
    "7fbf44f8630fe060403a890cfbbe4f3ac665d87a1b6869d2ceedbaff0f282f5a",
    "77574c789c87878d3509daedbd209fe72d7a2a56c969f31b5683b04172457f8a",
    "78ff2a7742d8e3ffcd340036973d24bb0d6a221deafa6d22e9a2cfa6c7711773",
    "df386351bdf000c96fc8bb59ccfd256616e6ca3f69e9cb6403a9ab4c303fa6bc",
    "0b45d3debc1fe6911a9b017cbfa9003fa9f4b1401da1d567a64aeb4c5db15d9a",
    "23d1014a6d45bc19196787606fafa06914bc8e4b42a85bb67f69b9eb2781cf40",
    "209a02a95739b55468354bf972000000434149524e504b31",
);
const PACK_ID: &str = "e4c239963fbb8b11da8e96874b0b213e716e394398c2d9f95f5c752b5e8083c7";

/// `KeyFile::create(fixed_key(), "cairn-test-vector", 64 KiB / 1 pass / 1 lane,
/// "vector-host", "vector-user")`.
const KEY_FILE: &str = concat!(
    "434149524e4b5931aa87d8b00d0b766563746f722d686f73740b766563746f72",
    "2d75736572400101a9a041ec4896d49a78120c22b5c6d3f8e08a559e5fe3d76c",
    "f42aed3346ffd50d88013fc18cf926fc2d2b425af950bc86f5932cf26c578f6f",
    "683087a8b167b2347ccab052ba14dba2bb21af5917bac36be98cf5cd045c9de3",
    "a75b20fe652c45c298b31bd44eacf66e15c60bf96fc25944cdc4e6f3967347aa",
    "7703dcc8170d9ebc05d83a613501c11e2d2efe0b60ba627567616192b3e985b5",
    "bbef200c8ff882df1d4cbbed8dda392d6e48",
);

/// Every single-bit flip of `bytes` must make `decode` fail.
fn assert_tamper_evident(bytes: &[u8], decode: impl Fn(&[u8]) -> bool) {
    assert!(decode(bytes), "the untouched vector must decode");
    for i in 0..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.to_vec();
            b[i] ^= bit;
            assert!(
                !decode(&b),
                "flip of bit {bit:#x} at byte {i} went unnoticed"
            );
        }
    }
    for cut in [0, 1, bytes.len() / 2, bytes.len() - 1] {
        assert!(
            !decode(&bytes[..cut]),
            "truncation to {cut} bytes went unnoticed"
        );
    }
}

#[test]
fn sealed_config_envelope() {
    let key = fixed_key();
    let bytes = unhex(SEALED_CONFIG);
    assert_eq!(bytes.len(), 8 + 24 + unhex(CONFIG_PC).len() + 16);
    assert_eq!(&bytes[..8], b"CAIRNCF1");
    assert_eq!(Config::decode(&key, &bytes).unwrap(), fixed_config());
    let plain = spec::open_envelope(&key.encryption, b"CAIRNCF1", &bytes).unwrap();
    assert_eq!(hex::encode(&plain), CONFIG_PC);
    assert_tamper_evident(&bytes, |b| Config::decode(&key, b).is_ok());
    // The magic is the associated data: relabelling the file fails.
    let mut relabelled = bytes.clone();
    relabelled[..8].copy_from_slice(b"CAIRNSN1");
    assert!(spec::open_envelope(&key.encryption, b"CAIRNSN1", &relabelled).is_none());
    // A wrong key fails.
    let mut other = fixed_key();
    other.encryption[0] ^= 1;
    assert!(Config::decode(&other, &bytes).is_err());
}

#[test]
fn sealed_blobs() {
    let key = fixed_key();
    let hello = b"hello, cairn\n".to_vec();
    let cairns = b"cairn ".repeat(64);
    let mut t = fixed_tree();
    let tree_bytes = t.encode().unwrap();
    assert_eq!(key.blob_id(&tree_bytes).to_hex(), TREE_BLOB_ID);
    let cases = [
        (BlobType::Data, hello, SEALED_BLOB_RAW, 0u8),
        (BlobType::Data, cairns, SEALED_BLOB_ZSTD, 1),
        (BlobType::Tree, tree_bytes, SEALED_TREE, 0),
    ];
    for (kind, plain, sealed_hex, flag) in cases {
        let sealed = unhex(sealed_hex);
        let bid = key.blob_id(&plain);
        assert_eq!(
            blob::decode(&key, kind, &bid, &sealed, "t", &blob::no_base).unwrap(),
            plain
        );
        assert_eq!(spec::blob(&key, kind as u8, &bid.0, &sealed), plain);
        // The inner compression flag is as documented.
        let inner =
            spec::open(&key.encryption, &spec::blob_ad(kind as u8, &bid.0), &sealed).unwrap();
        assert_eq!(inner[0], flag);
        if flag == 0 {
            assert_eq!(sealed.len(), 24 + 1 + plain.len() + 16);
        } else {
            assert_eq!(&inner[1..5], &(plain.len() as u32).to_le_bytes());
            assert_eq!(&inner[5..9], &[0x28, 0xb5, 0x2f, 0xfd], "zstd frame magic");
        }
        // The same plaintext is encoded with the same flag today.
        let again = blob::encode(&key, kind, &bid, &plain, 3).unwrap();
        let again =
            spec::open(&key.encryption, &spec::blob_ad(kind as u8, &bid.0), &again).unwrap();
        assert_eq!(again[0], flag);
        // Type and id are bound in.
        let other_kind = if kind == BlobType::Data {
            BlobType::Tree
        } else {
            BlobType::Data
        };
        assert!(blob::decode(&key, other_kind, &bid, &sealed, "t", &blob::no_base).is_err());
        assert!(blob::decode(&key, kind, &Id(seq(0)), &sealed, "t", &blob::no_base).is_err());
        assert_tamper_evident(&sealed, |b| {
            blob::decode(&key, kind, &bid, b, "t", &blob::no_base).is_ok()
        });
    }
    // The tree blob decodes to the fixed tree.
    let tree_plain = blob::decode(
        &key,
        BlobType::Tree,
        &id(TREE_BLOB_ID),
        &unhex(SEALED_TREE),
        "t",
        &blob::no_base,
    )
    .unwrap();
    assert_eq!(Tree::decode(&tree_plain, "t").unwrap(), fixed_tree());
    // Level 0 never compresses; incompressible data is stored raw.
    let cairns = b"cairn ".repeat(64);
    let bid = key.blob_id(&cairns);
    let raw = blob::encode(&key, BlobType::Data, &bid, &cairns, 0).unwrap();
    assert_eq!(raw.len(), 24 + 1 + 384 + 16);
    let noise = splitmix64_bytes(1, 1000);
    let nid = key.blob_id(&noise);
    let enc = blob::encode(&key, BlobType::Data, &nid, &noise, 19).unwrap();
    assert_eq!(enc.len(), 24 + 1 + 1000 + 16);
}

#[test]
fn sealed_pack() {
    let key = fixed_key();
    let bytes = unhex(PACK);
    assert_eq!(Id::of_file(&bytes).to_hex(), PACK_ID);
    assert_eq!(&bytes[bytes.len() - 8..], b"CAIRNPK1");
    let entries = pack::parse(&key, &bytes, "t").unwrap();
    let hello = b"hello, cairn\n".to_vec();
    let cairns = b"cairn ".repeat(64);
    assert_eq!(
        entries,
        vec![
            PackEntry {
                kind: BlobType::Data,
                id: key.blob_id(&hello),
                offset: 0,
                length: 54,
                raw_length: 13,
            },
            PackEntry {
                kind: BlobType::Data,
                id: key.blob_id(&cairns),
                offset: 54,
                length: 68,
                raw_length: 384,
            },
        ]
    );
    assert_eq!(&bytes[..54], &unhex(SEALED_BLOB_RAW)[..]);
    assert_eq!(&bytes[54..122], &unhex(SEALED_BLOB_ZSTD)[..]);
    let (spec_entries, blobs) = spec::pack(&key, &bytes);
    assert_eq!(spec_entries, entries);
    assert_eq!(blobs, vec![hello, cairns]);
    // Reading a pack = parsing its header, then decoding the blobs it lists.
    assert_tamper_evident(&bytes, |b| {
        pack::parse(&key, b, "t").is_ok_and(|es| {
            es.iter().all(|e| {
                let end = e.offset as usize + e.length as usize;
                blob::decode(
                    &key,
                    e.kind,
                    &e.id,
                    &b[e.offset as usize..end],
                    "t",
                    &blob::no_base,
                )
                .is_ok()
            })
        })
    });
}

#[test]
fn sealed_key_file() {
    let bytes = unhex(KEY_FILE);
    let kf = KeyFile::decode(&bytes, "t").unwrap();
    assert_eq!(kf.created, 1_795_883_477);
    assert_eq!(kf.hostname, "vector-host");
    assert_eq!(kf.username, "vector-user");
    assert_eq!(kf.kdf, SMALL_KDF);
    assert_eq!(kf.wrapped.len(), 24 + 96 + 16);
    assert_eq!(
        kf.unwrap_key(b"cairn-test-vector", "t").unwrap(),
        Some(fixed_key())
    );
    assert_eq!(kf.unwrap_key(b"cairn-test-vectoR", "t").unwrap(), None);
    assert_eq!(
        spec::unwrap_key(&bytes, b"cairn-test-vector"),
        Some(fixed_key())
    );
    // created, hostname and username (bytes 8..37 here) are informational
    // and not authenticated; everything from the KDF parameters on is.
    let unwraps = |b: &[u8]| {
        KeyFile::decode(b, "t")
            .ok()
            .and_then(|k| k.unwrap_key(b"cairn-test-vector", "t").ok().flatten())
            .is_some()
    };
    assert_eq!(bytes[37], 0x40, "memory_kib starts at byte 37");
    for i in 37..bytes.len() {
        for bit in [0x01u8, 0x80] {
            let mut b = bytes.clone();
            b[i] ^= bit;
            assert!(
                !unwraps(&b),
                "flip of bit {bit:#x} at byte {i} went unnoticed"
            );
        }
    }
    for cut in [0, 8, 37, bytes.len() - 1] {
        assert!(!unwraps(&bytes[..cut]));
    }
    let mut renamed = bytes.clone();
    renamed[13 + 1] ^= 0x01; // a hostname byte: still opens
    assert!(unwraps(&renamed));
}

// ---------------------------------------------------------------------------
// 4. The committed repository tests/vectors/repo-v1
// ---------------------------------------------------------------------------

const REPO_PASSWORD: &[u8] = b"cairn-test-vector";
const REPO_ID: &str = "18ce8c0e54fa40d4af4e20f38ac5f67c5f7990ed1c5b9a6782dad8b668ae701a";
const REPO_KEY: &str = "a346ec39a3bd1b59bdb785ae8dde66430fa426c6a36d5c881b9c923dd4023f4f";
const REPO_INDEX: &str = "b780a8c6868e2cc24cac70f213649fc2775fd30acf319657c233519fb57d04b1";
const REPO_PACKS: [&str; 2] = [
    "5780a527bef4a364ef3c2e4c817779ddf5a718b5cd6ab54ef65f73d768602602",
    "93b7b80b65158712ffbca6a50d0efeee80be1bfb0554c7a6f8f0ca414a76cf34",
];
const REPO_SNAPSHOT: &str = "20dd6e37550f0519476982849bf07f1df27cdfe0c98b7447e51cbf7a776a5658";
const REPO_ROOT_TREE: &str = "8cc3c0ed5e2db069947265314d3dcb43ff15f663ea69eefc7bd877e85b3de5ec";
const SOURCE: &str = "/tmp/cairn-vector-v1";

fn vector_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/vectors/repo-v1")
}

/// Every regular file under `root`, relative, sorted.
fn files_under(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            if ft.is_dir() {
                walk(root, &e.path(), out);
            } else {
                out.push(e.path().strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    walk(root, root, &mut out);
    out.sort();
    out
}

/// Copies the vector's files (only files: like a git checkout, which keeps
/// no empty directories) into a fresh temporary directory.
fn checkout_copy() -> (tempfile::TempDir, PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let dst = t.path().join("repo");
    let src = vector_dir();
    for rel in files_under(&src) {
        let to = dst.join(&rel);
        fs::create_dir_all(to.parent().unwrap()).unwrap();
        fs::copy(src.join(&rel), &to).unwrap();
    }
    (t, dst)
}

/// What the source directory held, as written by make-repo-v1.sh.
struct Expected {
    name: &'static [u8],
    kind: NodeKind,
    mode: u32,
    mtime: i64,
    mtime_nsec: u32,
    content: &'static [u8],
    links: u64,
}

fn random_bin() -> Vec<u8> {
    splitmix64_bytes(SPLITMIX_SEED, 5000)
}

fn repeat_txt() -> Vec<u8> {
    b"cairn format v1 test vector\n".repeat(200)
}

/// 2025-06-01T12:00:00Z.
const T0: i64 = 1_748_779_200;

fn expected_top() -> Vec<Expected> {
    // Contents that are not 'static are checked separately (random.bin, repeat.txt).
    vec![
        Expected {
            name: b"empty.txt",
            kind: NodeKind::File,
            mode: 0o600,
            mtime: T0 + 1,
            mtime_nsec: 0,
            content: b"",
            links: 1,
        },
        Expected {
            name: b"emptydir",
            kind: NodeKind::Dir,
            mode: 0o700,
            mtime: T0 + 7,
            mtime_nsec: 0,
            content: b"",
            links: 2,
        },
        Expected {
            name: b"hello.txt",
            kind: NodeKind::File,
            mode: 0o644,
            mtime: T0,
            mtime_nsec: 123_456_789,
            content: b"hello, cairn\n",
            links: 1,
        },
        Expected {
            name: b"link",
            kind: NodeKind::Symlink,
            mode: 0o777,
            mtime: T0 + 6,
            mtime_nsec: 0,
            content: b"",
            links: 1,
        },
        Expected {
            name: b"name-\xff.txt",
            kind: NodeKind::File,
            mode: 0o640,
            mtime: T0 + 4,
            mtime_nsec: 0,
            content: b"non-UTF-8 name\n",
            links: 1,
        },
        Expected {
            name: b"random.bin",
            kind: NodeKind::File,
            mode: 0o644,
            mtime: T0 + 2,
            mtime_nsec: 500_000_000,
            content: b"",
            links: 2,
        },
        Expected {
            name: b"repeat.txt",
            kind: NodeKind::File,
            mode: 0o755,
            mtime: T0 + 3,
            mtime_nsec: 0,
            content: b"",
            links: 1,
        },
        Expected {
            name: b"sub",
            kind: NodeKind::Dir,
            mode: 0o750,
            mtime: T0 + 8,
            mtime_nsec: 0,
            content: b"",
            links: 2,
        },
    ]
}

/// Expected content of a file at `rel` (below the source directory).
fn expected_content(rel: &[u8]) -> Vec<u8> {
    match rel {
        b"random.bin" | b"sub/hardlink.bin" => random_bin(),
        b"repeat.txt" => repeat_txt(),
        b"hello.txt" | b"sub/copy-of-hello.txt" => b"hello, cairn\n".to_vec(),
        b"name-\xff.txt" => b"non-UTF-8 name\n".to_vec(),
        b"empty.txt" => Vec::new(),
        other => panic!("unexpected file {:?}", String::from_utf8_lossy(other)),
    }
}

#[test]
fn repo_v1_holds_exactly_the_committed_files() {
    let dir = vector_dir();
    let mut want = vec![
        PathBuf::from("config"),
        PathBuf::from(format!("index/{REPO_INDEX}")),
        PathBuf::from(format!("keys/{REPO_KEY}")),
        PathBuf::from(format!("snapshots/{REPO_SNAPSHOT}")),
    ];
    for p in REPO_PACKS {
        want.push(PathBuf::from(format!("data/{}/{p}", &p[..2])));
    }
    want.sort();
    assert_eq!(files_under(&dir), want);
    // Every file but the config is named by the BLAKE3 hash of its bytes.
    for rel in &want[1..] {
        let bytes = fs::read(dir.join(rel)).unwrap();
        let name = rel.file_name().unwrap().to_str().unwrap();
        assert_eq!(Id::of_file(&bytes).to_hex(), name, "{}", rel.display());
    }
}

#[test]
fn repo_v1_opens_in_place_without_empty_dirs() {
    // In a git checkout, locks/ and the empty data/XX directories do not
    // exist; the library must not need them to read.
    let (_t, repo_dir) = checkout_copy();
    assert!(!repo_dir.join("locks").exists());
    assert!(!repo_dir.join("data/00").exists());
    let repo = Repository::open(&repo_dir, REPO_PASSWORD)
        .unwrap()
        .with_full_index()
        .unwrap();
    assert_eq!(repo.index().packs().len(), 2);
    let packs = repo
        .backend()
        .list(cairn::backend::FileKind::Pack)
        .unwrap()
        .iter()
        .map(|(id, _)| id.to_hex())
        .collect::<Vec<_>>();
    assert_eq!(packs, REPO_PACKS);
    assert!(
        repo.backend()
            .list(cairn::backend::FileKind::Lock)
            .unwrap()
            .is_empty()
    );
    // The committed directory itself opens too (read-only use).
    let repo = Repository::open(vector_dir(), REPO_PASSWORD).unwrap();
    assert_eq!(repo.config().id, id(REPO_ID).0);
    assert!(matches!(
        Repository::open(vector_dir(), b"wrong password"),
        Err(cairn::Error::WrongPassword)
    ));
}

#[test]
fn repo_v1_config_key_and_snapshot() {
    let (_t, repo_dir) = checkout_copy();
    let repo = Repository::open(&repo_dir, REPO_PASSWORD).unwrap();
    assert_eq!(repo.key_id(), id(REPO_KEY));
    assert_eq!(
        *repo.config(),
        Config {
            version: 1,
            id: id(REPO_ID).0,
            chunker: ChunkerParams {
                min_size: 64,
                avg_size: 256,
                max_size: 1024,
            },
            compression_level: 3,
            pack_size: 16 * 1024 * 1024,
            database_chunking: None,
            object_lock: None,
        }
    );
    let kf = KeyFile::decode(
        &fs::read(repo_dir.join(format!("keys/{REPO_KEY}"))).unwrap(),
        "key",
    )
    .unwrap();
    assert_eq!(kf.kdf, SMALL_KDF);
    assert_eq!(kf.username, "vector-user");

    let snaps = repo.load_snapshots().unwrap();
    assert_eq!(snaps.len(), 1);
    let (sid, s) = &snaps[0];
    assert_eq!(sid.to_hex(), REPO_SNAPSHOT);
    assert_eq!(
        *s,
        Snapshot {
            time: 1_767_225_600,
            time_nsec: 0,
            utc_offset: 0,
            hostname: "vector".into(),
            username: "vector-user".into(),
            uid: 0,
            gid: 0,
            paths: vec![SOURCE.into()],
            tags: vec!["format-v1".into()],
            tree: id(REPO_ROOT_TREE),
            parent: None,
            summary: Summary {
                files_new: 7,
                files_changed: 0,
                files_unchanged: 0,
                dirs: 3,
                total_files: 7,
                total_bytes: 15_641,
                bytes_read: 15_641,
                blobs_added: 27,
                bytes_added: 8131,
                bytes_added_stored: 8118,
                errors: 0,
                started_ns: 1_795_883_505_338_543_358,
                finished_ns: 1_795_883_505_362_283_376,
            },
            error_messages: vec![],
            program_version: "cairn 0.1.0".into(),
            databases: Vec::new(),
            replaces: None,
            postgres: None,
        }
    );
    assert_eq!(s.datetime().to_rfc3339(), "2026-01-01T00:00:00+00:00");
}

#[test]
fn repo_v1_tree_structure_and_file_bytes() {
    let (_t, repo_dir) = checkout_copy();
    let repo = Repository::open(&repo_dir, REPO_PASSWORD)
        .unwrap()
        .with_full_index()
        .unwrap();
    let root = repo.load_tree(&id(REPO_ROOT_TREE)).unwrap();
    // The root tree holds the absolute source path as nested directories.
    assert_eq!(root.nodes.len(), 1);
    assert_eq!(root.nodes[0].name, b"tmp");
    assert_eq!(root.nodes[0].kind, NodeKind::Dir);
    assert_eq!(root.nodes[0].mode, 0o1777);
    let tmp = repo.load_tree(&root.nodes[0].subtree.unwrap()).unwrap();
    assert_eq!(tmp.nodes.len(), 1);
    let src = &tmp.nodes[0];
    assert_eq!(src.name, b"cairn-vector-v1");
    assert_eq!((src.kind, src.mode), (NodeKind::Dir, 0o755));
    assert_eq!((src.mtime, src.mtime_nsec), (T0 + 9, 0));
    let top = repo.load_tree(&src.subtree.unwrap()).unwrap();

    let names: Vec<&[u8]> = top.nodes.iter().map(|n| n.name.as_slice()).collect();
    let want = expected_top();
    assert_eq!(
        names,
        want.iter().map(|e| e.name).collect::<Vec<_>>(),
        "entries in byte order"
    );
    for (n, e) in top.nodes.iter().zip(&want) {
        let what = String::from_utf8_lossy(e.name);
        assert_eq!(n.kind, e.kind, "{what}");
        assert_eq!(n.mode, e.mode, "{what}");
        assert_eq!((n.mtime, n.mtime_nsec), (e.mtime, e.mtime_nsec), "{what}");
        assert_eq!((n.uid, n.gid), (0, 0), "{what}");
        assert_eq!(n.links, e.links, "{what}");
        match n.kind {
            NodeKind::File => {
                let content = expected_content(e.name);
                assert_eq!(n.size, content.len() as u64, "{what}");
                let mut bytes = Vec::new();
                for b in &n.content {
                    bytes.extend_from_slice(&repo.read_blob(BlobType::Data, b).unwrap());
                }
                assert_eq!(bytes, content, "{what}");
                if !e.content.is_empty() {
                    assert_eq!(bytes, e.content, "{what}");
                }
                // The content list is exactly the chunker's cuts of the
                // file, each named by its keyed hash.
                let ids: Vec<Id> = repo
                    .chunker()
                    .split(&content)
                    .iter()
                    .scan(0, |pos, &len| {
                        let id = repo.key().blob_id(&content[*pos..*pos + len]);
                        *pos += len;
                        Some(id)
                    })
                    .collect();
                assert_eq!(n.content, ids, "{what}");
                assert!(n.subtree.is_none() && n.link_target.is_empty());
            }
            NodeKind::Symlink => {
                assert_eq!(n.link_target, b"hello.txt");
                assert!(n.content.is_empty() && n.subtree.is_none());
                assert_eq!(n.size, 0);
            }
            NodeKind::Dir => assert!(n.subtree.is_some() && n.content.is_empty()),
            other => panic!("unexpected kind {other:?}"),
        }
    }
    // Chunk layout of the multi-chunk files.
    let by_name = |name: &[u8]| top.get(name).unwrap().clone();
    let random = by_name(b"random.bin");
    assert_eq!(random.content.len(), 17);
    let repeat = by_name(b"repeat.txt");
    let distinct: std::collections::HashSet<_> = repeat.content.iter().collect();
    assert!(
        repeat.content.len() > distinct.len(),
        "repeated chunks share ids"
    );
    // Directories: the empty one is the one-byte empty tree.
    let empty = repo
        .read_blob(BlobType::Tree, &by_name(b"emptydir").subtree.unwrap())
        .unwrap();
    assert_eq!(empty, vec![0u8]);
    let sub = repo.load_tree(&by_name(b"sub").subtree.unwrap()).unwrap();
    let sub_names: Vec<&[u8]> = sub.nodes.iter().map(|n| n.name.as_slice()).collect();
    assert_eq!(sub_names, [&b"copy-of-hello.txt"[..], b"hardlink.bin"]);
    let copy = &sub.nodes[0];
    assert_eq!((copy.mode, copy.mtime), (0o444, T0 + 5));
    assert_eq!(
        copy.content,
        by_name(b"hello.txt").content,
        "dedup across files"
    );
    let hl = &sub.nodes[1];
    assert_eq!(
        (hl.inode, hl.device, hl.links),
        (random.inode, random.device, 2)
    );
    assert_eq!(hl.content, random.content);
}

#[test]
fn repo_v1_restores_bit_for_bit() {
    let (t, repo_dir) = checkout_copy();
    let repo = Repository::open(&repo_dir, REPO_PASSWORD)
        .unwrap()
        .with_full_index()
        .unwrap();
    let target = t.path().join("restored");
    let stats = cairn::commands::restore::restore_tree(
        &repo,
        &id(REPO_ROOT_TREE),
        &cairn::commands::restore::RestoreOptions {
            target: target.clone(),
            verify: true,
            ..Default::default()
        },
        (0, 0),
        &cairn::commands::progress::NoProgress,
    )
    .unwrap();
    assert!(stats.errors.is_empty(), "{:?}", stats.errors);
    let base = target.join(&SOURCE[1..]);
    let mut seen = BTreeMap::new();
    for rel in [
        &b"empty.txt"[..],
        b"hello.txt",
        b"name-\xff.txt",
        b"random.bin",
        b"repeat.txt",
        b"sub/copy-of-hello.txt",
        b"sub/hardlink.bin",
    ] {
        let p = base.join(std::ffi::OsStr::from_bytes(rel));
        assert_eq!(
            fs::read(&p).unwrap(),
            expected_content(rel),
            "{}",
            p.display()
        );
        let md = fs::symlink_metadata(&p).unwrap();
        seen.insert(rel.to_vec(), md);
    }
    assert_eq!(seen[&b"hello.txt"[..]].permissions().mode() & 0o7777, 0o644);
    assert_eq!(seen[&b"hello.txt"[..]].mtime_nsec(), 123_456_789);
    assert_eq!(
        seen[&b"sub/copy-of-hello.txt"[..]].permissions().mode() & 0o7777,
        0o444
    );
    assert_eq!(
        seen[&b"random.bin"[..]].ino(),
        seen[&b"sub/hardlink.bin"[..]].ino(),
        "hard link restored as a link"
    );
    assert_eq!(
        fs::read_link(base.join("link")).unwrap(),
        PathBuf::from("hello.txt")
    );
    let empty = base.join("emptydir");
    assert!(fs::symlink_metadata(&empty).unwrap().is_dir());
    assert_eq!(fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(
        fs::symlink_metadata(&empty).unwrap().permissions().mode() & 0o7777,
        0o700
    );
}

#[test]
fn repo_v1_passes_check_and_the_binary_reads_it() {
    let (_t, repo_dir) = checkout_copy();
    let repo = Repository::open(&repo_dir, REPO_PASSWORD).unwrap();
    let report = cairn::commands::check::check(
        &repo,
        &cairn::commands::check::CheckOptions {
            read_data: Some(cairn::commands::check::Subset::All),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!((report.snapshots, report.packs, report.trees), (1, 2, 5));
    assert_eq!(report.blobs_read, 27);
    assert_eq!(report.unused_blobs, 0);

    let cairn_cmd = || {
        let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_cairn"));
        c.env_remove("CAIRN_REPOSITORY")
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env("CAIRN_PASSWORD", "cairn-test-vector")
            .arg("-r")
            .arg(&repo_dir);
        c
    };
    let out = cairn_cmd().args(["check", "--read-data"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cairn_cmd()
        .args(["dump", "latest", "/tmp/cairn-vector-v1/repeat.txt"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, repeat_txt());
}

#[test]
fn repo_v1_reads_with_the_independent_spec_reader() {
    let dir = vector_dir();
    // Key file -> master key.
    let key_bytes = fs::read(dir.join(format!("keys/{REPO_KEY}"))).unwrap();
    let key = spec::unwrap_key(&key_bytes, REPO_PASSWORD).expect("password opens the key");
    assert!(spec::unwrap_key(&key_bytes, b"wrong").is_none());
    // Config.
    let config_plain = spec::open_envelope(
        &key.encryption,
        b"CAIRNCF1",
        &fs::read(dir.join("config")).unwrap(),
    )
    .unwrap();
    let config = spec::config(&config_plain);
    assert_eq!(config.id, id(REPO_ID).0);
    // Index.
    let index_plain = spec::open_envelope(
        &key.encryption,
        b"CAIRNIX1",
        &fs::read(dir.join(format!("index/{REPO_INDEX}"))).unwrap(),
    )
    .unwrap();
    let index = spec::index(&index_plain);
    assert!(index.supersedes.is_empty());
    let mut listed: Vec<String> = index.packs.iter().map(|p| p.id.to_hex()).collect();
    listed.sort();
    assert_eq!(listed, REPO_PACKS);
    // Packs: header equals the index entry; every blob opens and hashes to its id.
    let mut blobs: BTreeMap<Id, (BlobType, Vec<u8>)> = BTreeMap::new();
    let mut flags = std::collections::BTreeSet::new();
    for p in &index.packs {
        let hex = p.id.to_hex();
        let bytes = fs::read(dir.join(format!("data/{}/{hex}", &hex[..2]))).unwrap();
        let (entries, plains) = spec::pack(&key, &bytes);
        assert_eq!(entries, p.blobs);
        let kinds: std::collections::HashSet<_> = entries.iter().map(|e| e.kind).collect();
        assert_eq!(kinds.len(), 1, "one blob type per pack");
        for (e, plain) in entries.iter().zip(plains) {
            assert_eq!(plain.len(), e.raw_length as usize);
            let end = (e.offset + e.length as u64) as usize;
            let ad = spec::blob_ad(e.kind as u8, &e.id.0);
            let inner = spec::open(&key.encryption, &ad, &bytes[e.offset as usize..end]).unwrap();
            flags.insert((e.kind, inner[0]));
            blobs.insert(e.id, (e.kind, plain));
        }
    }
    assert_eq!(blobs.len(), 27);
    // Both encodings occur for both blob types.
    assert_eq!(flags.len(), 4, "{flags:?}");
    // Snapshot -> trees -> files.
    let snap_plain = spec::open_envelope(
        &key.encryption,
        b"CAIRNSN1",
        &fs::read(dir.join(format!("snapshots/{REPO_SNAPSHOT}"))).unwrap(),
    )
    .unwrap();
    let snap = spec::snapshot(&snap_plain);
    assert_eq!(snap.tree, id(REPO_ROOT_TREE));
    let tree_of = |tid: &Id| {
        let (kind, plain) = &blobs[tid];
        assert_eq!(*kind, BlobType::Tree);
        spec::tree(plain)
    };
    let mut files = BTreeMap::new();
    let mut stack = vec![(snap.tree, Vec::<u8>::new())];
    while let Some((tid, prefix)) = stack.pop() {
        for n in tree_of(&tid).nodes {
            let mut path = prefix.clone();
            path.push(b'/');
            path.extend_from_slice(&n.name);
            match n.kind {
                NodeKind::Dir => stack.push((n.subtree.unwrap(), path)),
                NodeKind::File => {
                    let mut content = Vec::new();
                    for b in &n.content {
                        let (kind, plain) = &blobs[b];
                        assert_eq!(*kind, BlobType::Data);
                        content.extend_from_slice(plain);
                    }
                    files.insert(path, content);
                }
                _ => {}
            }
        }
    }
    let prefix = format!("{SOURCE}/");
    assert_eq!(files.len(), 7);
    for (path, content) in files {
        let rel = path
            .strip_prefix(prefix.as_bytes())
            .expect("below the source");
        assert_eq!(content, expected_content(rel));
    }
}

// ---------------------------------------------------------------------------
// An independent reader written from format-spec/v1.md
// ---------------------------------------------------------------------------

/// A minimal reader of format v1 built only from the specification and the
/// cryptographic primitives: no serde, no cairn decoders. It constructs
/// cairn's types field by field so results can be compared with `==`.
/// Malformed input panics (this is test code).
mod spec {
    use cairn::Id;
    use cairn::format::blob::BlobType;
    use cairn::format::chunker::ChunkerParams;
    use cairn::format::config::Config;
    use cairn::format::crypto::{KdfParams, MasterKey};
    use cairn::format::index::{IndexFile, IndexPack};
    use cairn::format::keyfile::KeyFile;
    use cairn::format::pack::PackEntry;
    use cairn::format::snapshot::{Snapshot, Summary};
    use cairn::format::tree::{Node, NodeKind, Tree};
    use chacha20poly1305::aead::{Aead, KeyInit, Payload};
    use chacha20poly1305::{XChaCha20Poly1305, XNonce};

    /// A cursor over postcard bytes.
    pub struct Cur<'a> {
        b: &'a [u8],
        pos: usize,
    }

    impl<'a> Cur<'a> {
        pub fn new(b: &'a [u8]) -> Cur<'a> {
            Cur { b, pos: 0 }
        }
        fn take(&mut self, n: usize) -> &'a [u8] {
            let s = &self.b[self.pos..self.pos + n];
            self.pos += n;
            s
        }
        fn byte(&mut self) -> u8 {
            self.take(1)[0]
        }
        /// LEB128 of at most `max` bytes for a `bits`-wide integer.
        fn varint(&mut self, bits: u32) -> u64 {
            let max = bits.div_ceil(7);
            let mut v: u64 = 0;
            for i in 0..max {
                let b = self.byte();
                v |= u64::from(b & 0x7f) << (7 * i);
                if b & 0x80 == 0 {
                    assert!(
                        i + 1 < max || u32::from(b) < (1 << (bits - 7 * (max - 1))),
                        "varint overflows"
                    );
                    return v;
                }
            }
            panic!("varint too long");
        }
        fn u32(&mut self) -> u32 {
            self.varint(32) as u32
        }
        fn u64(&mut self) -> u64 {
            self.varint(64)
        }
        fn i32(&mut self) -> i32 {
            let z = self.varint(32) as u32;
            ((z >> 1) as i32) ^ -((z & 1) as i32)
        }
        fn i64(&mut self) -> i64 {
            let z = self.varint(64);
            ((z >> 1) as i64) ^ -((z & 1) as i64)
        }
        fn len(&mut self) -> usize {
            self.u64() as usize
        }
        fn bytes(&mut self) -> Vec<u8> {
            let n = self.len();
            self.take(n).to_vec()
        }
        fn string(&mut self) -> String {
            String::from_utf8(self.bytes()).expect("UTF-8")
        }
        fn strings(&mut self) -> Vec<String> {
            let n = self.len();
            (0..n).map(|_| self.string()).collect()
        }
        fn array32(&mut self) -> [u8; 32] {
            self.take(32).try_into().unwrap()
        }
        fn id(&mut self) -> Id {
            Id(self.array32())
        }
        fn ids(&mut self) -> Vec<Id> {
            let n = self.len();
            (0..n).map(|_| self.id()).collect()
        }
        fn option_id(&mut self) -> Option<Id> {
            match self.byte() {
                0 => None,
                1 => Some(self.id()),
                t => panic!("bad option tag {t}"),
            }
        }
        fn bool(&mut self) -> bool {
            match self.byte() {
                0 => false,
                1 => true,
                t => panic!("bad bool {t}"),
            }
        }
        fn end(&self) {
            assert_eq!(self.pos, self.b.len(), "trailing bytes");
        }
    }

    /// XChaCha20-Poly1305 open of `nonce(24) || ciphertext || tag(16)`.
    pub fn open(key: &[u8; 32], ad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < 40 {
            return None;
        }
        let nonce: [u8; 24] = sealed[..24].try_into().unwrap();
        let cipher = XChaCha20Poly1305::new(&(*key).into());
        cipher
            .decrypt(
                &XNonce::from(nonce),
                Payload {
                    msg: &sealed[24..],
                    aad: ad,
                },
            )
            .ok()
    }

    /// `magic(8) || nonce || ciphertext || tag` with the magic as associated data.
    pub fn open_envelope(key: &[u8; 32], magic: &[u8; 8], file: &[u8]) -> Option<Vec<u8>> {
        if file.len() < 8 || &file[..8] != magic {
            return None;
        }
        open(key, magic, &file[8..])
    }

    pub fn argon2id(password: &[u8], salt: &[u8; 32], m: u32, t: u32, p: u32) -> [u8; 32] {
        let params = argon2::Params::new(m, t, p, Some(32)).unwrap();
        let a = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
        let mut out = [0u8; 32];
        a.hash_password_into(password, salt, &mut out).unwrap();
        out
    }

    pub fn master_key(plain: &[u8]) -> MasterKey {
        let mut c = Cur::new(plain);
        let k = MasterKey {
            encryption: c.array32(),
            id: c.array32(),
            chunker: c.array32(),
        };
        c.end();
        k
    }

    pub fn key_file(file: &[u8]) -> KeyFile {
        assert_eq!(&file[..8], b"CAIRNKY1");
        let mut c = Cur::new(&file[8..]);
        let k = KeyFile {
            created: c.i64(),
            hostname: c.string(),
            username: c.string(),
            kdf: KdfParams {
                memory_kib: c.u32(),
                iterations: c.u32(),
                parallelism: c.u32(),
            },
            salt: c.array32(),
            wrapped: c.bytes(),
        };
        c.end();
        k
    }

    pub fn unwrap_key(file: &[u8], password: &[u8]) -> Option<MasterKey> {
        let k = key_file(file);
        let wrapping = argon2id(
            password,
            &k.salt,
            k.kdf.memory_kib,
            k.kdf.iterations,
            k.kdf.parallelism,
        );
        open(&wrapping, b"CAIRNKY1", &k.wrapped).map(|p| master_key(&p))
    }

    pub fn config(plain: &[u8]) -> Config {
        let mut c = Cur::new(plain);
        let cfg = Config {
            version: c.u32(),
            id: c.array32(),
            chunker: ChunkerParams {
                min_size: c.u32(),
                avg_size: c.u32(),
                max_size: c.u32(),
            },
            compression_level: c.i32(),
            pack_size: c.u32(),
            database_chunking: None,
            object_lock: None,
        };
        c.end();
        cfg
    }

    fn blob_type(c: &mut Cur) -> BlobType {
        match c.u32() {
            0 => BlobType::Data,
            1 => BlobType::Tree,
            t => panic!("bad blob type {t}"),
        }
    }

    pub fn entries(c: &mut Cur) -> Vec<PackEntry> {
        let n = c.len();
        (0..n)
            .map(|_| PackEntry {
                kind: blob_type(c),
                id: c.id(),
                offset: c.u64(),
                length: c.u32(),
                raw_length: c.u32(),
            })
            .collect()
    }

    pub fn index(plain: &[u8]) -> IndexFile {
        let mut c = Cur::new(plain);
        let n = c.len();
        let packs = (0..n)
            .map(|_| IndexPack {
                id: c.id(),
                blobs: entries(&mut c),
            })
            .collect();
        let f = IndexFile {
            packs,
            supersedes: c.ids(),
            prune: None,
        };
        c.end();
        f
    }

    pub fn blob_ad(kind: u8, id: &[u8; 32]) -> Vec<u8> {
        let mut ad = b"CAIRNBL1".to_vec();
        ad.push(kind);
        ad.extend_from_slice(id);
        ad
    }

    /// Opens a blob, decompresses it, and checks its id.
    pub fn blob(key: &MasterKey, kind: u8, id: &[u8; 32], sealed: &[u8]) -> Vec<u8> {
        let inner = open(&key.encryption, &blob_ad(kind, id), sealed).expect("blob opens");
        let plain = match inner[0] {
            0 => inner[1..].to_vec(),
            1 => {
                let n = u32::from_le_bytes(inner[1..5].try_into().unwrap()) as usize;
                let out = zstd::stream::decode_all(&inner[5..]).unwrap();
                assert_eq!(out.len(), n);
                out
            }
            f => panic!("bad compression flag {f}"),
        };
        assert_eq!(blake3::keyed_hash(&key.id, &plain).as_bytes(), id);
        plain
    }

    /// Parses a pack: its header entries and every blob's plaintext.
    pub fn pack(key: &MasterKey, bytes: &[u8]) -> (Vec<PackEntry>, Vec<Vec<u8>>) {
        let n = bytes.len();
        assert_eq!(&bytes[n - 8..], b"CAIRNPK1");
        let hlen = u32::from_le_bytes(bytes[n - 12..n - 8].try_into().unwrap()) as usize;
        let start = n - 12 - hlen;
        let plain = open(&key.encryption, b"CAIRNPH1", &bytes[start..n - 12]).expect("header");
        let mut c = Cur::new(&plain);
        let es = entries(&mut c);
        c.end();
        let mut expect = 0u64;
        let mut blobs = Vec::new();
        for e in &es {
            assert_eq!(e.offset, expect, "contiguous");
            let end = e.offset as usize + e.length as usize;
            blobs.push(blob(
                key,
                e.kind as u8,
                &e.id.0,
                &bytes[e.offset as usize..end],
            ));
            expect = end as u64;
        }
        assert_eq!(expect, start as u64, "blobs end where the header starts");
        (es, blobs)
    }

    fn node_kind(c: &mut Cur) -> NodeKind {
        match c.u32() {
            0 => NodeKind::File,
            1 => NodeKind::Dir,
            2 => NodeKind::Symlink,
            3 => NodeKind::Fifo,
            4 => NodeKind::CharDevice,
            5 => NodeKind::BlockDevice,
            6 => NodeKind::Socket,
            k => panic!("bad node kind {k}"),
        }
    }

    pub fn tree(plain: &[u8]) -> Tree {
        let mut c = Cur::new(plain);
        let n = c.len();
        let nodes = (0..n)
            .map(|_| Node {
                name: c.bytes(),
                kind: node_kind(&mut c),
                mode: c.u32(),
                uid: c.u32(),
                gid: c.u32(),
                mtime: c.i64(),
                mtime_nsec: c.u32(),
                ctime: c.i64(),
                ctime_nsec: c.u32(),
                inode: c.u64(),
                device: c.u64(),
                links: c.u64(),
                size: c.u64(),
                rdev: c.u64(),
                link_target: c.bytes(),
                content: c.ids(),
                subtree: c.option_id(),
                content_depth: 0,
                inline: None,
                delta_base: None,
            })
            .collect();
        c.end();
        Tree { nodes }
    }

    pub fn snapshot(plain: &[u8]) -> Snapshot {
        let mut c = Cur::new(plain);
        let s = Snapshot {
            time: c.i64(),
            time_nsec: c.u32(),
            utc_offset: c.i32(),
            hostname: c.string(),
            username: c.string(),
            uid: c.u32(),
            gid: c.u32(),
            paths: c.strings(),
            tags: c.strings(),
            tree: c.id(),
            parent: c.option_id(),
            summary: Summary {
                files_new: c.u64(),
                files_changed: c.u64(),
                files_unchanged: c.u64(),
                dirs: c.u64(),
                total_files: c.u64(),
                total_bytes: c.u64(),
                bytes_read: c.u64(),
                blobs_added: c.u64(),
                bytes_added: c.u64(),
                bytes_added_stored: c.u64(),
                errors: c.u64(),
                started_ns: c.i64(),
                finished_ns: c.i64(),
            },
            error_messages: c.strings(),
            program_version: c.string(),
            databases: Vec::new(),
            replaces: None,
            postgres: None,
        };
        c.end();
        s
    }

    pub fn lock(plain: &[u8]) -> cairn::format::lock::LockInfo {
        let mut c = Cur::new(plain);
        let l = cairn::format::lock::LockInfo {
            time: c.i64(),
            exclusive: c.bool(),
            hostname: c.string(),
            username: c.string(),
            pid: c.u32(),
        };
        c.end();
        l
    }

    /// The gear table: BLAKE3 derive-key XOF, 2048 bytes, 256 little-endian u64s.
    pub fn gear_table(chunker_key: &[u8; 32]) -> [u64; 256] {
        let mut h = blake3::Hasher::new_derive_key("cairn 2026-11 chunker gear table v1");
        h.update(chunker_key);
        let mut bytes = [0u8; 2048];
        h.finalize_xof().fill(&mut bytes);
        let mut g = [0u64; 256];
        for (i, v) in g.iter_mut().enumerate() {
            *v = u64::from_le_bytes(bytes[i * 8..i * 8 + 8].try_into().unwrap());
        }
        g
    }

    /// The cut rule of format-spec/v1.md, one byte at a time.
    pub fn cut(data: &[u8], p: ChunkerParams, gear: &[u64; 256]) -> usize {
        let (min, avg, max) = (
            p.min_size as usize,
            p.avg_size as usize,
            p.max_size as usize,
        );
        let n = data.len();
        if n <= min {
            return n;
        }
        let remaining = n.min(max);
        let center = avg.min(remaining);
        let bits = avg.trailing_zeros() as usize;
        let (mask_s, mask_l) = (super::SPEC_MASKS[bits + 1], super::SPEC_MASKS[bits - 1]);
        let strict_end = center & !1;
        let end = remaining & !1;
        let mut h: u64 = 0;
        for (i, &byte) in data.iter().enumerate().take(end).skip(min) {
            h = (h << 1).wrapping_add(gear[byte as usize]);
            let mask = if i < strict_end { mask_s } else { mask_l };
            if h & mask == 0 {
                return i;
            }
        }
        remaining
    }

    pub fn split(data: &[u8], p: ChunkerParams, gear: &[u64; 256]) -> Vec<usize> {
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < data.len() {
            let n = cut(&data[pos..], p, gear);
            out.push(n);
            pos += n;
        }
        out
    }
}

fn fixed_wal_record() -> cairn::format::wal::WalFile {
    let key = fixed_key();
    cairn::format::wal::WalFile {
        system_id: 7_000_000_000_000_000_001,
        name: "000000010000000000000003".into(),
        size: 5,
        hash: *blake3::hash(b"hello").as_bytes(),
        segment_size: 16 << 20,
        content: vec![key.blob_id(b"hello")],
        packs: vec![IndexPack {
            id: Id::of_file(b"wal pack"),
            blobs: vec![PackEntry {
                kind: BlobType::Data,
                id: key.blob_id(b"hello"),
                offset: 0,
                length: 46,
                raw_length: 5,
            }],
        }],
        archived: 1_767_225_600,
        hostname: "db1".into(),
    }
}

/// `v1-postgres.md` section 2: the record's plaintext and its name.
#[test]
fn wal_record_encoding_and_name() {
    use cairn::format::wal::{WalFile, record_id};
    let w = fixed_wal_record();
    let pc = hex::encode(w.to_plaintext().unwrap());
    // Independent derivation of the name from the spec's words.
    let mut h = blake3::Hasher::new_keyed(&fixed_key().id);
    h.update(b"cairn wal record\0");
    h.update(&7_000_000_000_000_000_001u64.to_le_bytes());
    h.update(b"000000010000000000000003");
    assert_eq!(
        record_id(&fixed_key(), w.system_id, &w.name).0,
        *h.finalize().as_bytes()
    );
    assert_eq!(pc, WAL_PC);
    assert_eq!(
        record_id(&fixed_key(), w.system_id, &w.name).to_hex(),
        WAL_ID
    );
    assert_eq!(WalFile::from_plaintext(&unhex(WAL_PC), "t").unwrap(), w);
    // Sealed under the fixed key: decodes, and any flipped byte is refused.
    let sealed = w.encode(&fixed_key()).unwrap();
    assert_eq!(&sealed[..8], b"CAIRNWL1");
    assert_tamper_evident(&sealed, |b| WalFile::decode(&fixed_key(), b, "t").is_ok());
    let rejects = |f: &dyn Fn(&mut WalFile)| {
        let mut w = fixed_wal_record();
        f(&mut w);
        WalFile::from_plaintext(&w.to_plaintext().unwrap(), "t").is_err()
    };
    assert!(rejects(&|w| w.name = "000000010000000000000003x".into()));
    assert!(rejects(&|w| w.name = "000000000000000000000003".into()));
    assert!(rejects(&|w| w.size = (1 << 30) + 1));
    assert!(rejects(&|w| w.segment_size = 12345));
    assert!(rejects(&|w| w.content.clear()));
    assert!(rejects(&|w| w.packs[0].blobs[0].offset = 1));
    assert!(rejects(&|w| w.archived = i64::MAX));
    assert!(!rejects(&|w| w.segment_size = 0));
}

/// `v1-postgres.md` section 3: the snapshot extension block with `postgres`
/// (and `replaces` written as `00` before it).
#[test]
fn snapshot_postgres_extension_encoding() {
    use cairn::format::snapshot::PostgresRecord;
    let mut s = fixed_snapshot();
    let v1 = to_postcard(&s).unwrap();
    s.postgres = Some(PostgresRecord {
        system_id: 1,
        server_version: "15.18".into(),
        timeline: 1,
        stop_timeline: 2,
        start_lsn: 0x0200_0028,
        stop_lsn: 0x0200_0100,
        segment_size: 16 << 20,
        started: 100,
        stopped: 101,
        xmin: 750,
        data_directory: "/d".into(),
    });
    let plain = s.to_plaintext().unwrap();
    let ext = hex::encode(&plain[v1.len()..]);
    assert_eq!(ext, PG_EXT);
    assert_eq!(Snapshot::from_plaintext(&plain, "t").unwrap(), s);
    // `00 00 00`: no databases, replaces None, postgres None: refused.
    assert!(Snapshot::from_plaintext(&[v1.clone(), vec![0, 0, 0]].concat(), "t").is_err());
    // `00 00`: a block ending in an absent-as-None replaces: refused.
    assert!(Snapshot::from_plaintext(&[v1, vec![0, 0]].concat(), "t").is_err());
}

/// `system_id`, `name`, `size`, `hash`, `segment_size`, `content`, `packs`
/// (one pack, one entry), `archived`, `hostname`.
const WAL_PC: &str = "8180f09d99ddbf92611830303030303030313030303030303030303030303030303305ea8f163db38682925e4491c5e58d4bb3506ef8c14eb78a86e908c5624a67200f8080800801d4ae84623d6ab4c21497de1cc96603c63371bf8de2ea371a442ef91224cfc4bf0166c569f3ef4ce9cede627d29b448ede6ec4c76f8951a8b91c96e4a7493fe40a50100d4ae84623d6ab4c21497de1cc96603c63371bf8de2ea371a442ef91224cfc4bf002e0580e4ad950d03646231";
const WAL_ID: &str = "d06ddbca6aa871b78ab922b6a2fd74bb02d3927104a30160bec0b4eb911ea833";
/// `00` no databases, `00` replaces None, `01` postgres: system_id 1,
/// "15.18", timelines 1 and 2, LSNs 0/2000028 and 0/2000100, 16 MiB
/// segments, started 100, stopped 101, xmin 750, "/d".
const PG_EXT: &str = "000001010531352e31380102a88080108082801080808008c801ca01ee05022f64";

/// Known answers for what prune and Object Lock add
/// (format-spec/v1-locks-prune.md): an index file's extension block
/// (`time`, marked packs) and the config's retention after its extension
/// block. The bytes are written out by hand from the spec below.
#[test]
fn prune_and_object_lock_extension_vectors() {
    use cairn::format::config::{Retention, RetentionMode};
    use cairn::format::index::{IndexPrune, MarkedPack};
    let mut f = IndexFile::of_packs(Vec::new());
    f.prune = Some(IndexPrune {
        time: 1_700_000_000,
        marked: vec![MarkedPack {
            pack: IndexPack {
                id: Id([0xab; 32]),
                blobs: Vec::new(),
            },
            marked_at: 1_700_000_001,
        }],
    });
    // packs: 0 entries; supersedes: 0 entries; then the block: time
    // (zigzag varint of 1_700_000_000 = 3_400_000_000), one marked pack
    // (id, 0 blobs), marked_at (zigzag of 1_700_000_001 = 3_400_000_002).
    let expect = format!(
        "0000{}01{}00{}",
        "80c49fd50c",
        "ab".repeat(32),
        "82c49fd50c"
    );
    assert_eq!(hex::encode(f.to_plaintext().unwrap()), expect);
    assert_eq!(IndexFile::from_plaintext(&unhex(&expect), "t").unwrap(), f);
    // Nothing may follow the block; a block that ends early is corrupt.
    assert!(IndexFile::from_plaintext(&unhex(&format!("{expect}00")), "t").is_err());
    assert!(IndexFile::from_plaintext(&unhex(&expect[..expect.len() - 2]), "t").is_err());
    // A file without the block is the version 1 encoding, unchanged.
    assert_eq!(
        hex::encode(IndexFile::default().to_plaintext().unwrap()),
        "0000"
    );

    let mut c = fixed_config();
    c.database_chunking = Some(cairn::format::chunker::DatabaseChunking::FixedPages { pages: 1 });
    let plain_ext = c.to_plaintext().unwrap();
    c.object_lock = Some(Retention {
        mode: RetentionMode::Compliance,
        seconds: 86_400,
    });
    let plain = c.to_plaintext().unwrap();
    // The retention follows the extension block: mode 1 (Compliance),
    // seconds 86_400 as a varint (80 a3 05).
    assert_eq!(
        hex::encode(&plain[plain_ext.len()..]),
        "0180a305",
        "retention bytes"
    );
    assert_eq!(Config::from_plaintext(&plain, "t").unwrap(), c);
    let mut trailing = plain.clone();
    trailing.push(0);
    assert!(Config::from_plaintext(&trailing, "t").is_err());
    // Out-of-range retentions and unknown modes are refused.
    let mut zero = plain_ext.clone();
    zero.extend_from_slice(&unhex("0100"));
    assert!(Config::from_plaintext(&zero, "t").is_err());
    let mut mode = plain_ext;
    mode.extend_from_slice(&unhex("0201"));
    assert!(Config::from_plaintext(&mode, "t").is_err());
}
