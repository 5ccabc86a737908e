//! Deduplication through the real binary, measured on the repository's size
//! on disk: unchanged data costs (almost) nothing, changed files cost about
//! the chunks that changed, identical content is stored once.

mod support;

use std::fs;
use std::os::unix::fs::FileExt;
use std::path::Path;
use support::*;

/// A tree of about 6 MiB: one large file and many small ones.
fn build(src: &Path) {
    write(&src.join("large.bin"), &random_bytes(100, 4 << 20));
    for i in 0..60u64 {
        let dir = src.join(format!("dir{}", i % 7));
        write(
            &dir.join(format!("file{i}.dat")),
            &random_bytes(200 + i, (i as usize * 7_919) % 60_000),
        );
    }
    fs::create_dir_all(src.join("empty")).unwrap();
    std::os::unix::fs::symlink("large.bin", src.join("link")).unwrap();
}

fn backup_json(repo: &Repo, src: &Path, extra: &[&str]) -> serde_json::Value {
    let mut args = vec!["--json", "backup", src.to_str().unwrap()];
    args.extend_from_slice(extra);
    last_json(&repo.run(&args).ok().stdout)
}

#[test]
fn unchanged_data_adds_almost_nothing() {
    let ws = Workspace::new();
    let src = ws.path("src");
    build(&src);
    let expected = manifest(&src, ManifestOptions::default());
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    backup_json(&repo, &src, &[]);
    let size1 = repo.size();
    let packs1 = repo.files_in("data").len();

    // Unchanged: files are not even read, no data is added.
    let s = backup_json(&repo, &src, &[]);
    let size2 = repo.size();
    assert_eq!(s["files_new"], 0, "{s}");
    assert_eq!(s["files_changed"], 0, "{s}");
    // Only the tree blobs of directories above the source may be new:
    // other tests change /tmp meanwhile.
    assert!(s["data_added"].as_u64().unwrap() < 1024, "{s}");
    assert_eq!(s["bytes_read"], 0, "{s}");
    assert!(
        size2 - size1 < 4096,
        "second backup of unchanged data added {} bytes",
        size2 - size1
    );
    assert!(repo.files_in("data").len() <= packs1 + 1);

    // --force reads everything again, and still stores nothing new.
    let s = backup_json(&repo, &src, &["--force"]);
    let size3 = repo.size();
    assert!(s["bytes_read"].as_u64().unwrap() > 4 << 20, "{s}");
    assert!(s["data_added"].as_u64().unwrap() < 1024, "{s}");
    assert!(
        size3 - size2 < 4096,
        "forced backup of unchanged data added {} bytes",
        size3 - size2
    );
    assert_eq!(repo.snapshots().len(), 3);
    restore_and_compare(
        &ws,
        &repo,
        "latest",
        &src,
        &expected,
        ManifestOptions::default(),
        &[],
    );
}

#[test]
fn changed_files_dedupe_their_unchanged_chunks() {
    const LEN: usize = 16 << 20;
    let ws = Workspace::new();
    let src = ws.path("src");
    let original = random_bytes(300, LEN);
    write(&src.join("big"), &original);
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let first = repo.backup(&[&src], &[]);
    let mut last = repo.size();
    assert!(last > LEN as u64, "random data does not compress");

    let growth = |last: &mut u64, what: &str, limit: u64| {
        let now = repo.size();
        let g = now - *last;
        assert!(g < limit, "{what}: repository grew by {g} bytes");
        *last = now;
    };

    // A few bytes changed in the middle: about one chunk (at most 64 KiB)
    // plus metadata.
    let f = fs::OpenOptions::new()
        .write(true)
        .open(src.join("big"))
        .unwrap();
    f.write_all_at(b"CHANGED!", (LEN / 2) as u64).unwrap();
    drop(f);
    let mut v2 = original.clone();
    v2[LEN / 2..LEN / 2 + 8].copy_from_slice(b"CHANGED!");
    let second = repo.backup(&[&src], &[]);
    growth(&mut last, "8 bytes changed", 256 << 10);

    // Bytes inserted near the start: content-defined chunking resyncs, so
    // only the chunks around the insertion are new.
    let mut v3 = v2.clone();
    v3.splice(1_000_000..1_000_000, random_bytes(301, 100));
    write(&src.join("big"), &v3);
    let third = repo.backup(&[&src], &[]);
    growth(&mut last, "100 bytes inserted", 256 << 10);

    // Appended data costs about what was appended.
    let mut v4 = v3.clone();
    v4.extend(random_bytes(302, 300_000));
    write(&src.join("big"), &v4);
    repo.backup(&[&src], &[]);
    growth(&mut last, "300 KB appended", 300_000 + (256 << 10));

    // The same content under another name, in another directory: free.
    write(&src.join("elsewhere/copy"), &v4);
    repo.backup(&[&src], &[]);
    // Only trees change, but a tree lists every chunk id of the files in
    // it (about 1000 ids, 32 KiB, for this file), and two trees change.
    growth(&mut last, "a copy of an existing file", 128 << 10);

    // A file moved back to an earlier version: nothing new either.
    write(&src.join("big"), &original);
    repo.backup(&[&src], &[]);
    growth(&mut last, "revert to the first version", 128 << 10);

    // Every version restores exactly.
    let big = src.join("big");
    for (id, content) in [(&first, &original), (&second, &v2), (&third, &v3)] {
        let out = repo
            .run(&[std::ffi::OsStr::new("dump"), id.as_ref(), big.as_os_str()])
            .ok();
        assert!(out.stdout == *content, "dump of {id} differs");
    }
    let target = ws.path("target");
    repo.restore("latest", &target, &[]).ok();
    let out = restored(&target, &src);
    assert!(fs::read(out.join("big")).unwrap() == original);
    assert!(fs::read(out.join("elsewhere/copy")).unwrap() == v4);
}

#[test]
fn identical_content_is_stored_once_across_files_and_sources() {
    let ws = Workspace::new();
    let a = ws.path("a");
    let b = ws.path("b");
    let content = random_bytes(400, 5 << 20);
    write(&a.join("one"), &content);
    write(&a.join("sub/two"), &content);
    write(&b.join("three"), &content);
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let empty = repo.size();
    repo.backup(&[&a, &b], &[]);
    let stored = repo.size() - empty;
    assert!(
        stored < (5 << 20) + (256 << 10),
        "three copies of 5 MiB took {stored} bytes"
    );
    let target = ws.path("target");
    repo.restore("latest", &target, &[]).ok();
    for p in [a.join("one"), a.join("sub/two"), b.join("three")] {
        assert!(fs::read(restored(&target, &p)).unwrap() == content);
    }
}
