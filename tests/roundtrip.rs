//! Round trips through the real binary: back up a generated tree with every
//! kind of entry, restore it, and compare content and `lstat` metadata entry
//! by entry (type, mode, size, mtime with nanoseconds, owner, symlink target,
//! hard-link identity). Also a property test over random small trees.

mod support;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestRunner};
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, symlink};
use std::path::{Path, PathBuf};
use support::*;

const BIG_LEN: usize = 9 * 1024 * 1024 + 12_345;

/// Builds a tree with one of everything under `src`. Returns the paths
/// (relative to `src`) that restore is not expected to recreate (sockets).
fn build_every_kind(src: &Path) -> Vec<PathBuf> {
    let root = is_root();
    fs::create_dir_all(src).unwrap();
    write(&src.join("empty_file"), b"");
    write(&src.join("small.txt"), b"hello, cairn\n");
    write(&src.join("big.bin"), &random_bytes(1, BIG_LEN));
    // The same content twice: stored once, restored twice.
    write(&src.join("dir/big-copy.bin"), &random_bytes(1, BIG_LEN));
    fs::create_dir_all(src.join("empty_dir")).unwrap();
    write(&src.join("dir/sub/deep/file"), b"deep\n");
    fs::create_dir_all(src.join("dir/sub/empty")).unwrap();

    symlink("small.txt", src.join("link_rel")).unwrap();
    symlink("does/not/exist", src.join("link_dangling")).unwrap();
    symlink("/etc/passwd", src.join("link_abs")).unwrap();
    symlink("dir", src.join("link_dir")).unwrap();
    symlink("../../../../../../../etc", src.join("dir/link_up")).unwrap();

    // Hard links: a pair and a triple across directories.
    write(&src.join("hard_a"), b"linked content\n");
    fs::hard_link(src.join("hard_a"), src.join("dir/hard_b")).unwrap();
    write(&src.join("dir/sub/tri_1"), &random_bytes(2, 100_000));
    fs::hard_link(src.join("dir/sub/tri_1"), src.join("tri_2")).unwrap();
    fs::hard_link(src.join("dir/sub/tri_1"), src.join("dir/sub/deep/tri_3")).unwrap();

    // Names that are not UTF-8, or are merely awkward.
    let odd = |b: &[u8]| src.join(OsStr::from_bytes(b));
    write(&odd(b"caf\xe9"), b"latin-1 name\n");
    fs::create_dir_all(odd(b"\xff\xfe dir")).unwrap();
    write(&odd(b"\xff\xfe dir/\x80x"), b"inside a non-utf8 dir\n");
    write(&odd(b"new\nline"), b"newline in name\n");
    write(&odd(b"-rf *"), b"leading dash and a star\n");
    write(&odd("snowman \u{2603}".as_bytes()), b"utf-8 name\n");
    symlink(OsStr::from_bytes(b"caf\xe9"), odd(b"link\xe9")).unwrap();

    // Special files.
    mkfifo(&src.join("fifo"), 0o640);
    fs::create_dir_all(src.join("sockdir")).unwrap();
    let sock = src.join("sockdir/sock");
    let listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    drop(listener); // the socket file stays
    if root {
        mknod_char(&src.join("null_dev"), 1, 3, 0o620);
    }

    // Sparse files: holes in the middle, and a trailing hole.
    sparse_file(
        &src.join("sparse"),
        6 * 1024 * 1024,
        &[
            (0, b"start"),
            (3 * 1024 * 1024, &random_bytes(3, 70_000)),
            (6 * 1024 * 1024 - 3, b"end"),
        ],
    );
    sparse_file(&src.join("sparse_tail"), 2 * 1024 * 1024, &[(0, b"head")]);

    // Owners (before modes: chown clears setuid bits).
    if root {
        lchown(&src.join("small.txt"), 1234, 5678);
        lchown(&src.join("dir"), 1234, 5678);
        lchown(&src.join("link_rel"), 1234, 5678);
        lchown(&src.join("hard_a"), 4321, 8765);
    }
    write(&src.join("setuid"), b"#!/bin/sh\n");
    write(&src.join("setgid"), b"x");
    write(&src.join("private"), b"secret\n");
    write(&src.join("readonly"), b"ro\n");
    if root {
        lchown(&src.join("setuid"), 1234, 5678);
        lchown(&src.join("setgid"), 1234, 5678);
    }
    chmod(&src.join("setuid"), 0o4755);
    chmod(&src.join("setgid"), 0o2711);
    chmod(&src.join("private"), 0o600);
    chmod(&src.join("readonly"), 0o444);
    fs::create_dir_all(src.join("sticky")).unwrap();
    write(&src.join("sticky/f"), b"f");
    chmod(&src.join("sticky"), 0o1777);
    fs::create_dir_all(src.join("ro_dir")).unwrap();
    write(&src.join("ro_dir/inside"), b"inside a read-only dir\n");
    if root {
        write(&src.join("no_perms"), b"mode 000\n");
        chmod(&src.join("no_perms"), 0o000);
    }
    chmod(&src.join("dir/sub"), 0o700);
    chmod(src, 0o750);

    stamp_times(src, 1_600_000_000);
    // A few extreme times (files only: does not touch directory times).
    set_mtime(&src.join("small.txt"), -123_456_789, 42);
    set_mtime(&src.join("private"), 4_102_444_800, 999_999_999);
    set_mtime(&src.join("link_dangling"), 0, 1);
    // Read-only dir last: its content is complete now.
    chmod(&src.join("ro_dir"), 0o555);
    vec![PathBuf::from("sockdir/sock")]
}

fn expected_manifest(src: &Path, not_restored: &[PathBuf]) -> Manifest {
    let mut m = manifest(src, ManifestOptions::default());
    for p in not_restored {
        assert!(m.remove(p.as_os_str().as_bytes()).is_some(), "{p:?}");
    }
    m
}

#[test]
fn every_kind_of_entry_round_trips() {
    let ws = Workspace::new();
    let src = ws.path("src");
    let not_restored = build_every_kind(&src);
    let expected = expected_manifest(&src, &not_restored);
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let id = repo.backup(&[&src], &[]);

    // The source is untouched by the backup.
    assert_same(
        &expected,
        &expected_manifest(&src, &not_restored),
        "source after backup",
    );

    let target = ws.path("target");
    let r = repo.restore(&id, &target, &["--verify"]).ok();
    assert!(
        r.out().contains("verified"),
        "restore --verify output: {}",
        r.out()
    );
    let out = restored(&target, &src);
    assert_same(
        &expected,
        &manifest(&out, ManifestOptions::default()),
        "restore",
    );

    // Hard links are links again, not copies.
    let ino = |p: &str| fs::symlink_metadata(out.join(p)).unwrap().ino();
    assert_eq!(ino("hard_a"), ino("dir/hard_b"));
    assert_eq!(ino("dir/sub/tri_1"), ino("tri_2"));
    assert_eq!(ino("dir/sub/tri_1"), ino("dir/sub/deep/tri_3"));
    assert_ne!(ino("big.bin"), ino("dir/big-copy.bin"));
    assert_eq!(fs::symlink_metadata(out.join("tri_2")).unwrap().nlink(), 3);

    // Sparse files come back with holes (welcome, and implemented).
    for (name, len) in [("sparse", 6 << 20), ("sparse_tail", 2 << 20)] {
        let md = fs::metadata(out.join(name)).unwrap();
        assert_eq!(md.len(), len);
        assert!(
            md.blocks() * 512 < len / 2,
            "{name}: {} bytes allocated for {len} bytes: holes were filled",
            md.blocks() * 512
        );
    }

    // Nothing is restored outside the source's restored copy, and the
    // absolute symlink was not followed.
    assert!(
        fs::symlink_metadata(out.join("link_abs"))
            .unwrap()
            .is_symlink()
    );
    let top: Vec<_> = fs::read_dir(&target)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        top,
        vec![std::ffi::OsString::from(
            src.components().nth(1).unwrap().as_os_str()
        )]
    );

    // dump gives a file's exact bytes; ls lists every entry.
    let dumped = repo
        .run(&[
            OsStr::new("dump"),
            OsStr::new(&id),
            src.join("big.bin").as_os_str(),
        ])
        .ok();
    assert!(
        dumped.stdout == random_bytes(1, BIG_LEN),
        "dump of big.bin differs"
    );
    let dumped = repo
        .run(&[
            OsStr::new("dump"),
            OsStr::new("latest"),
            src.join("sparse").as_os_str(),
        ])
        .ok();
    assert_eq!(dumped.stdout, fs::read(src.join("sparse")).unwrap());
    let ls = repo.run(&["ls", "latest", "-l"]).ok().out();
    for name in [
        "big.bin",
        "link_abs -> /etc/passwd",
        "sockdir/sock",
        "fifo",
        "hard_b",
    ] {
        assert!(ls.contains(name), "ls -l lacks {name}:\n{ls}");
    }
}

#[test]
fn restore_over_existing_target_repairs_and_never_follows_links() {
    let ws = Workspace::new();
    let src = ws.path("src");
    let not_restored = build_every_kind(&src);
    let expected = expected_manifest(&src, &not_restored);
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.backup(&[&src], &[]);
    let target = ws.path("target");
    repo.restore("latest", &target, &[]).ok();
    let out = restored(&target, &src);

    // Damage the restored copy in every way that could trick a restore into
    // writing outside the target.
    let outside = ws.path("outside.txt");
    write(&outside, b"must not change\n");
    let outside_dir = ws.path("outside_dir");
    fs::create_dir_all(&outside_dir).unwrap();
    fs::remove_file(out.join("small.txt")).unwrap();
    symlink(&outside, out.join("small.txt")).unwrap();
    fs::remove_file(out.join("private")).unwrap();
    symlink(&outside, out.join("private")).unwrap();
    fs::remove_dir_all(out.join("dir/sub/deep")).unwrap();
    symlink(&outside_dir, out.join("dir/sub/deep")).unwrap();
    fs::remove_dir(out.join("empty_dir")).unwrap();
    write(&out.join("empty_dir"), b"now a file");
    fs::remove_file(out.join("link_rel")).unwrap();
    write(&out.join("link_rel/x"), b"now a dir");
    fs::OpenOptions::new()
        .write(true)
        .open(out.join("big.bin"))
        .unwrap()
        .set_len(10)
        .unwrap();
    fs::remove_file(out.join("fifo")).unwrap();
    write(&out.join("fifo"), b"not a fifo");

    repo.restore("latest", &target, &[]).ok();
    assert_same(
        &expected,
        &manifest(&out, ManifestOptions::default()),
        "second restore",
    );
    assert_eq!(fs::read(&outside).unwrap(), b"must not change\n");
    assert_eq!(fs::read_dir(&outside_dir).unwrap().count(), 0);
}

#[test]
fn include_exclude_single_file_and_several_sources() {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("a/keep.txt"), b"keep");
    write(&src.join("a/skip.log"), b"skip");
    write(&src.join("a/deeper/x.txt"), b"x");
    write(&src.join("b/other.txt"), b"other");
    write(&src.join("top.txt"), b"top");
    let other = ws.path("other-source");
    write(&other.join("o.txt"), b"second source");
    stamp_times(&src, 1_500_000_000);
    stamp_times(&other, 1_400_000_000);
    let repo = ws.init_repo("repo", &[]);
    let id = repo.backup(&[&src, &other, &src.join("a")], &[]);

    // Everything, both sources.
    let t = ws.path("all");
    repo.restore(&id, &t, &[]).ok();
    let opts = ManifestOptions::default();
    assert_same(
        &manifest(&src, opts),
        &manifest(&restored(&t, &src), opts),
        "src",
    );
    assert_same(
        &manifest(&other, opts),
        &manifest(&restored(&t, &other), opts),
        "other",
    );

    // --include a subdirectory, --exclude a pattern.
    let t = ws.path("some");
    let inc = src.join("a");
    repo.restore(
        &id,
        &t,
        &["--include", inc.to_str().unwrap(), "--exclude", "*.log"],
    )
    .ok();
    let mut want = manifest(&inc, opts);
    want.remove(b"skip.log".as_slice()).unwrap();
    assert_same(
        &want,
        &manifest(&restored(&t, &inc), opts),
        "include a, exclude *.log",
    );
    assert!(!restored(&t, &src).join("b").exists());
    assert!(!restored(&t, &src).join("top.txt").exists());
    assert!(!restored(&t, &other).exists());

    // A single file as the source.
    let single = repo.backup(&[&src.join("top.txt")], &[]);
    let t = ws.path("single");
    repo.restore(&single, &t, &[]).ok();
    let got = restored(&t, &src.join("top.txt"));
    assert_eq!(fs::read(&got).unwrap(), b"top");
    assert_eq!(
        fs::symlink_metadata(&got).unwrap().mtime(),
        fs::symlink_metadata(src.join("top.txt")).unwrap().mtime()
    );
    assert!(!restored(&t, &src).join("a").exists());
}

#[test]
fn default_chunk_parameters_with_large_and_zero_files() {
    // Default chunker (min 512 KiB, avg 1 MiB, max 8 MiB): a 20 MiB file of
    // zeros is cut at the maximum, a random file near the average.
    let ws = Workspace::new();
    let src = ws.path("src");
    fs::create_dir_all(&src).unwrap();
    sparse_file(&src.join("zeros"), 20 << 20, &[]);
    sparse_file(&src.join("zeros-again"), 20 << 20, &[]);
    write(&src.join("random"), &random_bytes(7, 10 << 20));
    let mut mixed = random_bytes(8, 3 << 20);
    mixed.extend(std::iter::repeat_n(0u8, 9 << 20));
    mixed.extend(random_bytes(9, 1 << 20));
    write(&src.join("mixed"), &mixed);
    stamp_times(&src, 1_700_000_000);
    let expected = manifest(&src, ManifestOptions::default());
    let repo = ws.init_repo("repo", &["--compression", "0"]);
    repo.backup(&[&src], &[]);
    // Without compression, each 20 MiB file of zeros is an 8 MiB chunk
    // (twice) and a 4 MiB tail, stored once for both files: the repository
    // holds at most random (10) + mixed (13) + zeros (12) MiB, plus metadata.
    let size = repo.size();
    assert!(
        size < (35 << 20) + (256 << 10),
        "repository is {size} bytes"
    );
    restore_and_compare(
        &ws,
        &repo,
        "latest",
        &src,
        &expected,
        ManifestOptions::default(),
        &["--verify"],
    );
}

// ---------------------------------------------------------------------------
// Property test over random small trees.

#[derive(Clone, Debug)]
enum Gen {
    File {
        seed: u64,
        len: usize,
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, u32),
    },
    Link {
        target: Vec<u8>,
        mtime: (i64, u32),
    },
    /// A hard link to the n-th file created (modulo the number of files).
    HardLink(usize),
    Fifo,
    Dir {
        children: BTreeMap<Vec<u8>, Gen>,
        mode: u32,
        owner: (u32, u32),
        mtime: (i64, u32),
    },
}

fn name() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop::sample::select(vec![
        b'a', b'b', b'c', b'.', b'-', b' ', b'\n', b'*', b'\\', 0xff, 0x80, 0xe9, b'~',
    ]);
    prop::collection::vec(byte, 1..6).prop_filter("plain name", |n| n != b"." && n != b"..")
}

fn mtime() -> impl Strategy<Value = (i64, u32)> {
    (-1_000_000_000i64..4_000_000_000, 0u32..1_000_000_000)
}

fn owner() -> impl Strategy<Value = (u32, u32)> {
    prop::sample::select(vec![(0, 0), (1234, 5678), (65534, 65534), (1, 2)])
}

fn leaf() -> impl Strategy<Value = Gen> {
    let file_modes = if is_root() {
        vec![0o644, 0o600, 0o755, 0o4755, 0o2755, 0o444, 0o000, 0o7777]
    } else {
        vec![0o644, 0o600, 0o755, 0o444, 0o4755]
    };
    prop_oneof![
        6 => (
            any::<u64>(),
            prop_oneof![0usize..2_000, 0usize..200_000],
            prop::sample::select(file_modes),
            owner(),
            mtime()
        )
            .prop_map(|(seed, len, mode, owner, mtime)| Gen::File { seed, len, mode, owner, mtime }),
        2 => (prop::collection::vec(1u8..=255, 1..20), mtime())
            .prop_map(|(target, mtime)| Gen::Link { target, mtime }),
        1 => any::<usize>().prop_map(Gen::HardLink),
        1 => Just(Gen::Fifo),
    ]
}

fn tree() -> impl Strategy<Value = Gen> {
    let dir_modes = if is_root() {
        vec![0o755, 0o700, 0o1777, 0o555, 0o2750]
    } else {
        vec![0o755, 0o700, 0o1777]
    };
    let inner = leaf().prop_recursive(3, 40, 6, move |inner| {
        (
            prop::collection::btree_map(name(), inner, 0..6),
            prop::sample::select(dir_modes.clone()),
            owner(),
            mtime(),
        )
            .prop_map(|(children, mode, owner, mtime)| Gen::Dir {
                children,
                mode,
                owner,
                mtime,
            })
    });
    (prop::collection::btree_map(name(), inner, 0..8), mtime()).prop_map(|(children, mtime)| {
        Gen::Dir {
            children,
            mode: 0o755,
            owner: (0, 0),
            mtime,
        }
    })
}

/// Creates the generated tree at `path`.
fn materialize(g: &Gen, path: &Path) {
    let mut files = Vec::new();
    let mut links = Vec::new();
    let mut post = Vec::new();
    fn create(
        g: &Gen,
        p: &Path,
        files: &mut Vec<PathBuf>,
        links: &mut Vec<(PathBuf, usize)>,
        post: &mut Vec<(PathBuf, Gen)>,
    ) {
        match g {
            Gen::File { seed, len, .. } => {
                write(p, &random_bytes(*seed, *len));
                files.push(p.to_path_buf());
            }
            Gen::Link { target, .. } => symlink(OsStr::from_bytes(target), p).unwrap(),
            Gen::HardLink(n) => links.push((p.to_path_buf(), *n)),
            Gen::Fifo => mkfifo(p, 0o644),
            Gen::Dir { children, .. } => {
                fs::create_dir_all(p).unwrap();
                for (name, c) in children {
                    create(c, &p.join(OsStr::from_bytes(name)), files, links, post);
                }
            }
        }
        post.push((p.to_path_buf(), g.clone()));
    }
    create(g, path, &mut files, &mut links, &mut post);
    for (p, n) in &links {
        if files.is_empty() {
            write(p, b"no file to link to");
        } else {
            fs::hard_link(&files[n % files.len()], p).unwrap();
        }
    }
    // Children before parents (post-order): owner, mode, then time.
    for (p, g) in &post {
        let (mode, owner, mtime) = match g {
            Gen::File {
                mode, owner, mtime, ..
            }
            | Gen::Dir {
                mode, owner, mtime, ..
            } => (Some(*mode), Some(*owner), Some(*mtime)),
            Gen::Link { mtime, .. } => (None, None, Some(*mtime)),
            _ => (None, None, None),
        };
        if let (Some((u, g)), true) = (owner, is_root()) {
            lchown(p, u, g);
        }
        if let Some(m) = mode {
            chmod(p, m);
        }
        if let Some((s, n)) = mtime {
            set_mtime(p, s, n);
        }
    }
}

fn round_trip_case(g: &Gen) -> Result<(), TestCaseError> {
    let ws = Workspace::new();
    let src = ws.path("src");
    materialize(g, &src);
    let expected = manifest(&src, ManifestOptions::default());
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let first = repo.backup(&[&src], &[]);
    let second = repo.backup(&[&src], &[]);
    // The source's own tree (not the root's: /tmp changes meanwhile) is
    // encoded identically, so the second snapshot reuses it.
    let tree_of = |id: &str| {
        let sel = format!("{id}:{}", src.display());
        let out = repo.run(&["cat", "tree", &sel]).ok().stdout;
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        // A small source directory is inline in its parent (no id of its
        // own): then its listing, with every blob id, must be identical.
        v.to_string()
    };
    prop_assert_eq!(
        tree_of(&first),
        tree_of(&second),
        "unchanged tree re-encoded differently"
    );
    let target = ws.path("target");
    repo.restore(&first, &target, &[]).ok();
    let got = manifest(&restored(&target, &src), ManifestOptions::default());
    let d = diff(&expected, &got);
    prop_assert!(d.is_empty(), "differences:\n{}", d.join("\n"));
    Ok(())
}

#[test]
fn random_trees_round_trip() {
    let config = Config {
        cases: 16,
        rng_seed: RngSeed::Fixed(0x0CA1_C0DE),
        failure_persistence: None,
        max_shrink_iters: 64,
        ..Config::default()
    };
    let mut runner = TestRunner::new(config);
    runner
        .run(&tree(), |g| round_trip_case(&g))
        .unwrap_or_else(|e| panic!("{e}"));
}

// ---------------------------------------------------------------------------
// Choosing the snapshot: id, prefix, `latest`, `--at`.

#[test]
fn restore_by_id_prefix_latest_and_at() {
    let ws = Workspace::new();
    let src = ws.path("src");
    let repo = ws.init_repo("repo", &[]);
    // (content, --time) in creation order; the last one is the oldest.
    let versions = [
        ("version 1", "2024-01-01T10:00:00Z"),
        ("version 2, longer", "2024-02-01 12:30:00"), // local time (TZ=UTC)
        ("version 3, longer still", "2024-03-01T12:00:00+02:00"),
        ("version 0 (oldest, made last)", "2023-12-31 23:59:59"),
    ];
    let mut ids = Vec::new();
    for (i, (content, time)) in versions.iter().enumerate() {
        write(&src.join("v"), content.as_bytes());
        set_mtime(&src.join("v"), 1_000_000 + i as i64, 0);
        ids.push(repo.backup(&[&src], &["--time", time]));
    }
    let content_of = |i: usize| versions[i].0.as_bytes().to_vec();
    let (s1, s2, s3, s0) = (0, 1, 2, 3);

    // Listed by snapshot time, not by creation.
    let listed = repo.snapshot_ids();
    assert_eq!(
        listed,
        vec![
            ids[s0].clone(),
            ids[s1].clone(),
            ids[s2].clone(),
            ids[s3].clone()
        ]
    );

    let mut n = 0;
    let mut restore = |args: &[&str], env: Option<(&str, &str)>| -> Run {
        n += 1;
        let target = ws.path(&format!("t{n}"));
        let mut a: Vec<&str> = vec!["restore"];
        a.extend_from_slice(args);
        a.extend(["--target", target.to_str().unwrap()]);
        let mut c = repo.cmd(&a);
        if let Some((k, v)) = env {
            c.env(k, v);
        }
        let r = run(c);
        if r.code == Some(0) {
            let got = fs::read(restored(&target, &src).join("v")).unwrap();
            Run { stdout: got, ..r }
        } else {
            assert!(!target.exists(), "failed restore created its target");
            r
        }
    };
    let expect = |r: Run, i: usize| {
        let what = r.what.clone();
        let r = r.ok();
        assert_eq!(
            String::from_utf8_lossy(&r.stdout),
            String::from_utf8_lossy(&content_of(i)),
            "{what}"
        );
    };

    // `latest` is the newest snapshot time, not the last one made.
    expect(restore(&["latest"], None), s3);
    // Full ids, 8-digit prefixes, upper case, and the shortest unique prefix.
    for (i, id) in ids.iter().enumerate() {
        expect(restore(&[id], None), i);
        expect(restore(&[&id[..8]], None), i);
        expect(restore(&[&id[..8].to_ascii_uppercase()], None), i);
        let shortest = (1..=64)
            .map(|k| &id[..k])
            .find(|p| ids.iter().filter(|o| o.starts_with(p)).count() == 1)
            .unwrap();
        expect(restore(&[shortest], None), i);
    }

    // --at: the newest snapshot at or before the time.
    for (at, want) in [
        ("2023-12-31T23:59:59Z", s0),
        ("2024-01-01T09:59:59Z", s0),
        ("2024-01-01T10:00:00Z", s1), // exactly at
        ("2024-01-15 00:00", s1),
        ("2024-02-01 12:29:59", s1),
        ("2024-02-01 12:30:00", s2),
        ("2024-03-01T09:59:59Z", s2),
        ("2024-03-01T11:59:59+02:00", s2),
        ("2024-03-01 10:00:00", s3),
        ("2030-01-01", s3),
    ] {
        expect(restore(&["--at", at], None), want);
    }
    // Local time follows TZ: 11:00 at UTC+1 is 10:00Z (a POSIX TZ string,
    // so no time zone database is needed).
    expect(
        restore(&["--at", "2024-03-01 11:00:00"], Some(("TZ", "XYZ-1"))),
        s3,
    );
    expect(
        restore(&["--at", "2024-03-01 10:59:59"], Some(("TZ", "XYZ-1"))),
        s2,
    );
    // Nothing at or before the time: a clean error.
    let before = repo.fingerprint();
    for at in [
        "2023-12-31T23:59:58Z",
        "1970-01-01 00:00",
        "1900-01-01T00:00:00Z",
    ] {
        let r = restore(&["--at", at], None);
        let line = r.fails(Some(1));
        assert!(line.contains("no snapshot"), "{line}");
    }
    assert_eq!(before, repo.fingerprint());

    // Filters narrow --at and latest.
    write(&src.join("v"), b"other host");
    let other = repo.backup(
        &[&src],
        &["--host", "elsewhere", "--time", "2025-01-01T00:00:00Z"],
    );
    let host = repo.snapshots()[0]["hostname"]
        .as_str()
        .unwrap()
        .to_string();
    expect(restore(&["--at", "2030-01-01", "--host", &host], None), s3);
    expect(restore(&["latest", "--host", &host], None), s3);
    let r = restore(&["--at", "2030-01-01", "--host", "elsewhere"], None);
    assert_eq!(r.ok().stdout, b"other host");
    let r = restore(&["latest"], None);
    assert_eq!(r.ok().stdout, b"other host");
    let line = restore(&["--at", "2024-06-01", "--host", "elsewhere"], None).fails(Some(1));
    assert!(line.contains("no snapshot"), "{line}");
    assert!(repo.snapshot_ids().contains(&other));
}

#[test]
fn restore_over_links_and_fifos_left_by_another_snapshot() {
    // Snapshot 1: a and b are one file (hard links), x is a FIFO, c a file.
    // Snapshot 2: a and b are different files, x is a file, c a FIFO.
    // Restoring 1 and then 2 into the same target must give exactly 2:
    // writing in place through the old link would give b the content of a,
    // and opening the old FIFO for writing would block forever.
    let ws = Workspace::new();
    let src = ws.path("src");
    fs::create_dir_all(&src).unwrap();
    write(&src.join("a"), &random_bytes(21, 100_000));
    fs::hard_link(src.join("a"), src.join("b")).unwrap();
    mkfifo(&src.join("x"), 0o644);
    write(&src.join("c"), b"c is a file\n");
    let repo = ws.init_repo("repo", &[]);
    let first = repo.backup(&[&src], &[]);

    fs::remove_file(src.join("b")).unwrap();
    write(&src.join("b"), &random_bytes(22, 50_000));
    fs::remove_file(src.join("x")).unwrap();
    write(&src.join("x"), b"x is a file now\n");
    fs::remove_file(src.join("c")).unwrap();
    mkfifo(&src.join("c"), 0o600);
    stamp_times(&src, 1_650_000_000);
    let second = repo.backup(&[&src], &[]);
    let expected = manifest(&src, ManifestOptions::default());

    let target = ws.path("target");
    repo.restore(&first, &target, &[]).ok();
    let out = restored(&target, &src);
    // A file outside the target, hard-linked into it by the user.
    let outside = ws.path("outside");
    write(&outside, b"outside, must not change\n");
    fs::remove_file(out.join("a")).unwrap();
    fs::hard_link(&outside, out.join("a")).unwrap();

    let args = [
        "restore",
        second.as_str(),
        "--target",
        target.to_str().unwrap(),
    ];
    run_with_timeout(repo.cmd(&args), std::time::Duration::from_secs(60)).ok();
    assert_same(
        &expected,
        &manifest(&out, ManifestOptions::default()),
        "restore over the other snapshot",
    );
    assert_eq!(fs::read(&outside).unwrap(), b"outside, must not change\n");
}

/// `ls` and `dump` take paths that are not UTF-8 (as stored and restored).
#[test]
fn ls_and_dump_take_non_utf8_paths() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    let dir = src.join(OsStr::from_bytes(b"d\xe9j\xe0"));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join(OsStr::from_bytes(b"caf\xe9.txt"));
    write(&file, b"latin-1 names\n");
    repo.backup(&[&src], &[]);
    let out = repo
        .run(&[OsStr::new("dump"), OsStr::new("latest"), file.as_os_str()])
        .ok();
    assert_eq!(out.stdout, b"latin-1 names\n");
    let ls = repo
        .run(&[OsStr::new("ls"), OsStr::new("latest"), dir.as_os_str()])
        .ok();
    assert!(ls.out().contains("caf\u{fffd}.txt"), "{}", ls.out());
}
