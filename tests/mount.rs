//! `cairn mount` through a real FUSE mount: every entry of a tree with
//! every kind of entry read back byte for byte with its metadata, random
//! reads of a large file, concurrent readers, the layout and its names, new
//! snapshots appearing while mounted, a backup running alongside, filters,
//! unmounting on SIGTERM and SIGINT, no stale mount after `kill -9`, and
//! one-line errors.
//!
//! Without `/dev/fuse` these tests say SKIPPED and pass, except under
//! `CAIRN_TEST_REQUIRE_FUSE=1` (CI), where they fail.

mod support;

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use support::env::wait_with_limit;
use support::*;

/// The most any wait for the mount may take (generous: CI machines are slow).
const LIMIT: Duration = Duration::from_secs(30);

/// Whether FUSE can be used here; says SKIPPED if not.
fn fuse_or_skip(test: &str) -> bool {
    if Path::new("/dev/fuse").exists() {
        return true;
    }
    assert!(
        std::env::var_os("CAIRN_TEST_REQUIRE_FUSE").is_none(),
        "{test}: CAIRN_TEST_REQUIRE_FUSE is set but /dev/fuse is missing"
    );
    eprintln!("SKIPPED {test}: /dev/fuse missing");
    false
}

/// Whether something is mounted at `mp` (per /proc/self/mounts).
fn is_mounted(mp: &Path) -> bool {
    let want = mp.as_os_str().as_bytes();
    let mounts = fs::read("/proc/self/mounts").unwrap();
    mounts.split(|&b| b == b'\n').any(|line| {
        line.split(|&b| b == b' ')
            .nth(1)
            .is_some_and(|p| unescape_mount_path(p) == want)
    })
}

/// /proc/mounts writes space, tab, newline and backslash as octal escapes.
fn unescape_mount_path(p: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(p.len());
    let mut i = 0;
    while i < p.len() {
        if p[i] == b'\\' && i + 3 < p.len() + 1 && p[i + 1..].len() >= 3 {
            let oct = std::str::from_utf8(&p[i + 1..i + 4]).ok();
            if let Some(v) = oct.and_then(|o| u8::from_str_radix(o, 8).ok()) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(p[i]);
        i += 1;
    }
    out
}

/// The mount options of the mount at `mp`.
fn mount_options(mp: &Path) -> String {
    let want = mp.as_os_str().as_bytes();
    let mounts = String::from_utf8_lossy(&fs::read("/proc/self/mounts").unwrap()).into_owned();
    mounts
        .lines()
        .find(|l| l.split(' ').nth(1).map(str::as_bytes) == Some(want))
        .and_then(|l| l.split(' ').nth(3))
        .unwrap_or_default()
        .to_string()
}

/// Polls `f` until it holds or [`LIMIT`] passes.
fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < LIMIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Detaches whatever is mounted at `mp` (cleanup after a failed test).
fn detach(mp: &Path) {
    let c = std::ffi::CString::new(mp.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) };
}

/// A running `cairn mount`; killed and unmounted on drop if a test fails
/// half way.
struct Mount {
    child: Option<Child>,
    mp: PathBuf,
    log: PathBuf,
}

impl Mount {
    /// Starts `cairn -r REPO mount MP extra...` and waits until it serves.
    fn start(repo: &Repo, mp: &Path, extra: &[&str]) -> Mount {
        let mut c = repo.cmd(&[OsStr::new("mount"), mp.as_os_str()]);
        c.args(extra);
        Mount::spawn(c, mp)
    }

    fn spawn(mut c: Command, mp: &Path) -> Mount {
        // (A stale mount point exists but cannot be looked at.)
        let _ = fs::create_dir_all(mp);
        let log = mp.with_extension("log");
        let f = fs::File::create(&log).unwrap();
        c.stdout(f.try_clone().unwrap()).stderr(f);
        let mut m = Mount {
            child: Some(c.spawn().expect("spawning cairn mount")),
            mp: mp.to_path_buf(),
            log,
        };
        let start = Instant::now();
        loop {
            if is_mounted(mp) && mp.join("ids").is_dir() {
                break;
            }
            if let Some(st) = m.child.as_mut().unwrap().try_wait().unwrap() {
                m.child = None;
                panic!("cairn mount exited early ({st}):\n{}", m.log());
            }
            assert!(
                start.elapsed() < LIMIT,
                "cairn mount did not serve within {LIMIT:?}:\n{}",
                m.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        m
    }

    /// What the mount printed so far (stdout and stderr).
    fn log(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Sends `sig` and waits for the process to end.
    fn signal(&mut self, sig: libc::c_int) -> ExitStatus {
        let mut child = self.child.take().expect("running");
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(child.id() as libc::pid_t, sig) };
        wait_with_limit(&mut child, LIMIT, "cairn mount after a signal")
    }

    /// Stops with SIGTERM and checks that it unmounted and exited 0.
    fn stop(mut self) -> String {
        let st = self.signal(libc::SIGTERM);
        let log = self.log();
        assert_eq!(st.code(), Some(0), "cairn mount: {st}\n{log}");
        assert!(!is_mounted(&self.mp), "still mounted after exit:\n{log}");
        assert!(!log.contains("panicked"), "cairn mount panicked:\n{log}");
        log
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let start = Instant::now();
        while is_mounted(&self.mp) && start.elapsed() < LIMIT {
            detach(&self.mp);
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

/// Lists a directory's names, sorted.
fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

/// Where the backed-up absolute path `src` is inside a snapshot directory.
fn inside(snapshot_dir: &Path, src: &Path) -> PathBuf {
    snapshot_dir.join(src.strip_prefix("/").unwrap())
}

const BIG_LEN: usize = 20 * 1024 * 1024 + 4321;

/// A tree with one of everything under `src`.
fn build_tree(src: &Path) {
    let root = is_root();
    fs::create_dir_all(src).unwrap();
    write(&src.join("empty_file"), b"");
    write(&src.join("small.txt"), b"hello, cairn\n");
    write(&src.join("big.bin"), &random_bytes(11, BIG_LEN));
    write(&src.join("dir/small-copy.txt"), b"hello, cairn\n");
    fs::create_dir_all(src.join("empty_dir")).unwrap();
    write(&src.join("dir/sub/deep/file"), b"deep\n");
    symlink("small.txt", src.join("link_rel")).unwrap();
    symlink("does/not/exist", src.join("link_dangling")).unwrap();
    symlink("/etc/passwd", src.join("link_abs")).unwrap();
    symlink("dir", src.join("link_dir")).unwrap();
    // Hard links: a pair and a triple across directories.
    write(&src.join("hard_a"), b"linked content\n");
    fs::hard_link(src.join("hard_a"), src.join("dir/hard_b")).unwrap();
    write(&src.join("dir/sub/tri_1"), &random_bytes(12, 300_000));
    fs::hard_link(src.join("dir/sub/tri_1"), src.join("tri_2")).unwrap();
    fs::hard_link(src.join("dir/sub/tri_1"), src.join("dir/sub/deep/tri_3")).unwrap();
    // Names that are not UTF-8, or awkward.
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
    let sock = src.join("sock");
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    if root {
        mknod_char(&src.join("null_dev"), 1, 3, 0o620);
        mknod_char(&src.join("big_minor_dev"), 240, 0x1234, 0o600);
    }
    // Sparse files.
    sparse_file(
        &src.join("sparse"),
        6 * 1024 * 1024,
        &[
            (0, b"start"),
            (3 * 1024 * 1024, &random_bytes(13, 70_000)),
            (6 * 1024 * 1024 - 3, b"end"),
        ],
    );
    // Owners (before modes: chown clears setuid bits), modes.
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
    chmod(&src.join("setuid"), 0o4755);
    chmod(&src.join("setgid"), 0o2711);
    chmod(&src.join("private"), 0o600);
    chmod(&src.join("readonly"), 0o444);
    fs::create_dir_all(src.join("sticky")).unwrap();
    write(&src.join("sticky/f"), b"f");
    chmod(&src.join("sticky"), 0o1777);
    if root {
        write(&src.join("no_perms"), b"mode 000\n");
        chmod(&src.join("no_perms"), 0o000);
    }
    fs::create_dir_all(src.join("ro_dir")).unwrap();
    write(&src.join("ro_dir/inside"), b"inside a read-only dir\n");
    chmod(&src.join("dir/sub"), 0o700);
    stamp_times(src, 1_600_000_000);
    set_mtime(&src.join("small.txt"), -123_456_789, 42);
    set_mtime(&src.join("private"), 4_102_444_800, 999_999_999);
    set_mtime(&src.join("link_dangling"), 0, 1);
    chmod(&src.join("ro_dir"), 0o555);
}

#[test]
fn every_entry_reads_back_through_the_mount() {
    if !fuse_or_skip("every_entry_reads_back_through_the_mount") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let src = ws.path("src");
    build_tree(&src);
    let opts = ManifestOptions { owners: is_root() };
    let expected = manifest(&src, opts);
    // Two snapshots of the same second, on two hosts, one tagged.
    let time = ["--time", "2026-11-28 14:00"];
    let a = repo.backup(
        &[&src],
        &[&time[..], &["--host", "h1", "--tag", "edge,x"]].concat(),
    );
    let b = repo.backup(&[&src], &[&time[..], &["--host", "h2"]].concat());
    let mp = ws.path("mnt");
    let m = Mount::start(&repo, &mp, &[]);

    // The layout; names in local time (the tests run with TZ=UTC).
    let t = "2026-11-28T14:00:00Z";
    assert_eq!(names(&mp), ["hosts", "ids", "snapshots", "tags"]);
    let ids: BTreeSet<String> = [a.clone(), b.clone()].into();
    assert_eq!(
        names(&mp.join("ids")).into_iter().collect::<BTreeSet<_>>(),
        ids
    );
    assert_eq!(
        names(&mp.join("snapshots")),
        [t.to_string(), format!("{t}-1"), "latest".into()]
    );
    assert_eq!(
        fs::read_link(mp.join("snapshots/latest")).unwrap(),
        Path::new(&format!("{t}-1"))
    );
    assert_eq!(names(&mp.join("hosts")), ["h1", "h2"]);
    assert_eq!(names(&mp.join("hosts/h1")), [t, "latest"]);
    assert_eq!(
        fs::read_link(mp.join("hosts/h2/latest")).unwrap(),
        Path::new(t)
    );
    assert_eq!(names(&mp.join("tags")), ["edge", "x"]);
    assert_eq!(names(&mp.join("tags/edge")), [t, "latest"]);
    let md = fs::symlink_metadata(mp.join("snapshots/latest")).unwrap();
    assert!(md.file_type().is_symlink());
    assert_eq!(md.len(), format!("{t}-1").len() as u64);

    // Every entry, byte for byte, with its metadata, through two paths.
    for dir in [
        mp.join("ids").join(&a),
        mp.join("snapshots/latest"),
        mp.join("hosts/h1").join(t),
    ] {
        let got = manifest(&inside(&dir, &src), opts);
        assert_same(&expected, &got, &format!("mount at {}", dir.display()));
    }

    // Hard links share an inode number; other files do not.
    let at = inside(&mp.join("ids").join(&a), &src);
    let ino = |p: &str| fs::symlink_metadata(at.join(p)).unwrap().ino();
    assert_eq!(ino("hard_a"), ino("dir/hard_b"));
    assert_eq!(ino("tri_2"), ino("dir/sub/tri_1"));
    assert_eq!(ino("tri_2"), ino("dir/sub/deep/tri_3"));
    assert_ne!(ino("hard_a"), ino("tri_2"));
    assert_ne!(ino("small.txt"), ino("dir/small-copy.txt"));
    assert_eq!(fs::symlink_metadata(at.join("tri_2")).unwrap().nlink(), 3);
    // Symlinks have their target's length as size; special files show as such.
    use std::os::unix::fs::FileTypeExt;
    assert_eq!(fs::symlink_metadata(at.join("link_abs")).unwrap().len(), 11);
    assert!(
        fs::symlink_metadata(at.join("fifo"))
            .unwrap()
            .file_type()
            .is_fifo()
    );
    assert!(
        fs::symlink_metadata(at.join("sock"))
            .unwrap()
            .file_type()
            .is_socket()
    );
    if is_root() {
        let dev = fs::symlink_metadata(at.join("big_minor_dev")).unwrap();
        assert!(dev.file_type().is_char_device());
        assert_eq!(dev.rdev(), libc::makedev(240, 0x1234));
    }
    // Read-only.
    let e = fs::OpenOptions::new()
        .write(true)
        .open(at.join("small.txt"))
        .unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    let e = fs::write(at.join("new"), b"x").unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EROFS), "{e}");
    m.stop();
}

#[test]
fn random_offset_reads_fetch_only_what_they_need() {
    if !fuse_or_skip("random_offset_reads_fetch_only_what_they_need") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let src = ws.path("src");
    let data = random_bytes(21, BIG_LEN);
    write(&src.join("big.bin"), &data);
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let m = Mount::start(&repo, &mp, &["--json"]);
    let path = inside(&mp.join("ids").join(&id), &src).join("big.bin");
    let f = fs::File::open(&path).unwrap();
    assert_eq!(f.metadata().unwrap().len(), BIG_LEN as u64);
    // A few reads far apart: only the blobs around them are fetched (the
    // file has ~1,300 blobs of ~16 KiB).
    for (k, off) in [1u64 << 20, 7 << 20, 13 << 20, 19 << 20].iter().enumerate() {
        let mut buf = vec![0u8; 1000 + k * 3000];
        let n = f.read_at(&mut buf, *off).unwrap();
        assert_eq!(&buf[..n], &data[*off as usize..*off as usize + n]);
        assert!(n > 0);
    }
    drop(f);
    let log = m.stop();
    let summary: serde_json::Value = serde_json::from_str(
        log.lines()
            .rfind(|l| l.contains("\"summary\""))
            .expect("summary line"),
    )
    .unwrap();
    let fetched = summary["blobs_fetched"].as_u64().unwrap();
    eprintln!("four small reads fetched {fetched} blobs");
    assert!(
        (1..100).contains(&fetched),
        "four small reads fetched {fetched} of ~1,300 blobs"
    );

    // Many random reads (offsets, lengths, across blob boundaries, at and
    // past the end), then the whole file.
    let m = Mount::start(&repo, &mp, &[]);
    let f = fs::File::open(&path).unwrap();
    let mut rng = Rng::new(5);
    for _ in 0..600 {
        let off = rng.below(BIG_LEN as u64 + 100);
        let most = if rng.below(4) == 0 { 300_000 } else { 5_000 };
        let len = 1 + rng.below(most) as usize;
        let mut buf = vec![0u8; len];
        let mut got = 0;
        while got < len {
            let n = f.read_at(&mut buf[got..], off + got as u64).unwrap();
            if n == 0 {
                break;
            }
            got += n;
        }
        let s = (off as usize).min(BIG_LEN);
        let e = (off as usize + len).min(BIG_LEN);
        assert_eq!(got, e - s, "read of {len} at {off}");
        assert!(buf[..got] == data[s..e], "bytes differ at {off} (+{len})");
    }
    assert_eq!(blake3::hash(&fs::read(&path).unwrap()), blake3::hash(&data));
    drop(f);
    m.stop();
}

#[test]
fn concurrent_readers_get_their_own_bytes() {
    if !fuse_or_skip("concurrent_readers_get_their_own_bytes") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let src = ws.path("src");
    let files: Vec<(String, Vec<u8>)> = (0..6)
        .map(|i| {
            (
                format!("f{i}"),
                random_bytes(100 + i, 1_000_000 + i as usize * 777_777),
            )
        })
        .collect();
    for (n, d) in &files {
        write(&src.join(n), d);
    }
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let m = Mount::start(&repo, &mp, &[]);
    let at = inside(&mp.join("ids").join(&id), &src);
    std::thread::scope(|s| {
        for t in 0..8usize {
            let (at, files) = (&at, &files);
            s.spawn(move || {
                let mut rng = Rng::new(t as u64);
                for k in 0..files.len() {
                    let (name, data) = &files[(k + t) % files.len()];
                    if t % 2 == 0 {
                        // Whole files, in a different order per thread.
                        assert!(fs::read(at.join(name)).unwrap() == *data, "{name}");
                    } else {
                        let f = fs::File::open(at.join(name)).unwrap();
                        for _ in 0..50 {
                            let off = rng.below(data.len() as u64) as usize;
                            let len = (1 + rng.below(70_000) as usize).min(data.len() - off);
                            let mut buf = vec![0; len];
                            f.read_exact_at(&mut buf, off as u64).unwrap();
                            assert!(buf == data[off..off + len], "{name} at {off}");
                        }
                    }
                }
            });
        }
    });
    m.stop();
}

#[test]
fn sigterm_and_sigint_unmount_and_exit_zero() {
    if !fuse_or_skip("sigterm_and_sigint_unmount_and_exit_zero") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("f"), b"content\n");
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut m = Mount::start(&repo, &mp, &[]);
        let f = inside(&mp.join("ids").join(&id), &src).join("f");
        assert_eq!(fs::read(&f).unwrap(), b"content\n");
        assert!(repo.files_in("locks").is_empty(), "a mount takes no lock");
        let st = m.signal(sig);
        let log = m.log();
        assert_eq!(st.code(), Some(0), "signal {sig}: {st}\n{log}");
        assert!(log.contains("unmounted"), "{log}");
        assert!(!is_mounted(&mp), "still mounted after signal {sig}");
        assert!(names(&mp).is_empty(), "mount point not empty after unmount");
        assert!(repo.files_in("locks").is_empty(), "lock left behind");
    }
    // Unmounted by someone else: the process notices and ends.
    let mut m = Mount::start(&repo, &mp, &[]);
    assert!(Command::new("umount").arg(&mp).status().unwrap().success());
    let mut child = m.child.take().unwrap();
    let st = wait_with_limit(&mut child, LIMIT, "cairn mount after umount");
    assert_eq!(st.code(), Some(0), "{}", m.log());
    assert!(repo.files_in("locks").is_empty());
}

#[test]
fn a_killed_mount_is_not_left_stale() {
    if !fuse_or_skip("a_killed_mount_is_not_left_stale") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("f"), b"content\n");
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let mut m = Mount::start(&repo, &mp, &[]);
    assert!(
        !m.log().contains("without auto-unmount"),
        "auto-unmount unavailable:\n{}",
        m.log()
    );
    let st = m.signal(libc::SIGKILL);
    assert_eq!(st.code(), None);
    // fusermount's auto-unmount helper removes the mount.
    wait_for("the killed mount to go away", || !is_mounted(&mp));
    fs::metadata(&mp).expect("the mount point is usable again");
    // The dead process's lock does not stop the next mount.
    let m = Mount::start(&repo, &mp, &[]);
    let f = inside(&mp.join("ids").join(&id), &src).join("f");
    assert_eq!(fs::read(f).unwrap(), b"content\n");
    m.stop();
}

/// Leaves a stale FUSE mount at `mp`: mounted, its server gone (root only).
fn make_stale_mount(mp: &Path) -> bool {
    use std::os::fd::AsRawFd;
    let Ok(dev) = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
    else {
        return false;
    };
    let opts = format!("fd={},rootmode=40000,user_id=0,group_id=0", dev.as_raw_fd());
    let (src, target, ty, data) = (
        std::ffi::CString::new("stale").unwrap(),
        std::ffi::CString::new(mp.as_os_str().as_bytes()).unwrap(),
        std::ffi::CString::new("fuse").unwrap(),
        std::ffi::CString::new(opts).unwrap(),
    );
    // SAFETY: every pointer is a valid NUL-terminated string.
    let rc = unsafe {
        libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            ty.as_ptr(),
            libc::MS_NOSUID | libc::MS_NODEV,
            data.as_ptr().cast(),
        )
    };
    // Closing the device ends the connection: the mount stays, dead.
    drop(dev);
    rc == 0
}

#[test]
fn a_stale_mount_at_the_mount_point_is_cleared() {
    if !fuse_or_skip("a_stale_mount_at_the_mount_point_is_cleared") {
        return;
    }
    if !is_root() {
        eprintln!("SKIPPED a_stale_mount_at_the_mount_point_is_cleared: needs root to make one");
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("f"), b"content\n");
    repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    assert!(make_stale_mount(&mp), "could not make a stale mount");
    // Whatever happens below, nothing stays mounted.
    struct Detach(PathBuf);
    impl Drop for Detach {
        fn drop(&mut self) {
            for _ in 0..100 {
                if !is_mounted(&self.0) {
                    break;
                }
                detach(&self.0);
            }
        }
    }
    let _cleanup = Detach(mp.clone());
    let e = fs::metadata(&mp).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::ENOTCONN), "{e}");
    let m = Mount::start(&repo, &mp, &[]);
    assert!(m.log().contains("stale mount"), "{}", m.log());
    assert!(fs::read_dir(mp.join("snapshots/latest")).is_ok());
    m.stop();
    fs::metadata(&mp).expect("the mount point is usable");
}

#[test]
fn backups_run_while_mounted_and_new_snapshots_appear() {
    if !fuse_or_skip("backups_run_while_mounted_and_new_snapshots_appear") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let src = ws.path("src");
    let first = random_bytes(31, 3_000_000);
    write(&src.join("a"), &first);
    let id1 = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let m = Mount::start(&repo, &mp, &[]);
    let a1 = inside(&mp.join("ids").join(&id1), &src).join("a");
    assert_eq!(names(&mp.join("snapshots")).len(), 2);

    // A backup runs while a reader reads through the mount.
    let second = random_bytes(32, 8_000_000);
    write(&src.join("b"), &second);
    let mut backup = repo
        .cmd(&[
            OsString::from("--json"),
            "backup".into(),
            src.clone().into(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while backup.try_wait().unwrap().is_none() {
        assert!(fs::read(&a1).unwrap() == first);
        assert!(start.elapsed() < LIMIT * 4, "backup did not finish");
        std::thread::sleep(Duration::from_millis(10));
    }
    let out = backup.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "backup while mounted failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id2 = last_json(&out.stdout)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    // Prune runs alongside the mount (it only marks; nothing the mount
    // reads goes before the grace period).
    repo.run(&["prune"]).ok();

    // The new snapshot appears without a remount, and its new data (in
    // packs the mount's index did not know) reads back.
    wait_for("the new snapshot under ids/", || {
        names(&mp.join("ids")).contains(&id2)
    });
    wait_for("two snapshots under snapshots/", || {
        names(&mp.join("snapshots")).len() == 3
    });
    let b2 = inside(&mp.join("ids").join(&id2), &src).join("b");
    assert!(fs::read(&b2).unwrap() == second);
    let latest = inside(&mp.join("snapshots/latest"), &src);
    assert!(fs::read(latest.join("b")).unwrap() == second);
    assert!(fs::read(latest.join("a")).unwrap() == first);
    // The older snapshot is still there, unchanged.
    assert!(!inside(&mp.join("ids").join(&id1), &src).join("b").exists());
    m.stop();
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn filters_choose_the_snapshots_shown() {
    if !fuse_or_skip("filters_choose_the_snapshots_shown") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let (s1, s2) = (ws.path("one"), ws.path("two"));
    write(&s1.join("f"), b"1");
    write(&s2.join("f"), b"2");
    let a = repo.backup(&[&s1], &["--host", "alpha", "--tag", "x"]);
    let b = repo.backup(&[&s2], &["--host", "beta", "--tag", "x,y"]);
    let c = repo.backup(&[&s1], &["--host", "beta"]);
    let mp = ws.path("mnt");
    let shown = |extra: &[&str]| {
        let m = Mount::start(&repo, &mp, extra);
        let ids = names(&mp.join("ids"));
        let hosts = names(&mp.join("hosts"));
        let tags = names(&mp.join("tags"));
        m.stop();
        (ids, hosts, tags)
    };
    let sorted = |v: &[&String]| {
        let mut v: Vec<String> = v.iter().map(|s| s.to_string()).collect();
        v.sort();
        v
    };
    let (ids, hosts, tags) = shown(&["--host", "alpha"]);
    assert_eq!(ids, sorted(&[&a]));
    assert_eq!(hosts, ["alpha"]);
    assert_eq!(tags, ["x"]);
    let (ids, hosts, _) = shown(&["--tag", "x"]);
    assert_eq!(ids, sorted(&[&a, &b]));
    assert_eq!(hosts, ["alpha", "beta"]);
    let (ids, _, tags) = shown(&["--path", s1.to_str().unwrap()]);
    assert_eq!(ids, sorted(&[&a, &c]));
    assert_eq!(tags, ["x"]);
    let (ids, _, _) = shown(&["--tag", "x,y"]);
    assert_eq!(ids, sorted(&[&b]));
}

#[test]
fn allow_other_lets_other_users_in_as_permissions_allow() {
    if !fuse_or_skip("allow_other_lets_other_users_in_as_permissions_allow") {
        return;
    }
    let setpriv_ok = Command::new("setpriv").arg("--version").output().is_ok();
    if !is_root() || !setpriv_ok {
        eprintln!(
            "SKIPPED allow_other_lets_other_users_in_as_permissions_allow: needs root and setpriv"
        );
        return;
    }
    let ws = Workspace::new();
    // Other users must be able to reach the mount point, and the recorded
    // directories of the snapshot must let them through.
    chmod(ws.dir.path(), 0o755);
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("public"), b"for everyone\n");
    write(&src.join("secret"), b"root only\n");
    chmod(&src.join("secret"), 0o600);
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let at = inside(&mp.join("ids").join(&id), &src);
    let as_nobody = |file: &str| {
        Command::new("setpriv")
            .args(["--reuid=65534", "--regid=65534", "--clear-groups", "cat"])
            .arg(at.join(file))
            .output()
            .unwrap()
    };
    // Without --allow-other: only root and the mounting user.
    let m = Mount::start(&repo, &mp, &[]);
    assert!(!as_nobody("public").status.success());
    assert_eq!(fs::read(at.join("public")).unwrap(), b"for everyone\n");
    m.stop();
    // With it: everyone, as the recorded modes allow.
    let m = Mount::start(&repo, &mp, &["--allow-other"]);
    assert!(mount_options(&mp).contains("allow_other"));
    let out = as_nobody("public");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(out.stdout, b"for everyone\n");
    let out = as_nobody("secret");
    assert!(!out.status.success(), "mode 0600 read by another user");
    assert!(String::from_utf8_lossy(&out.stderr).contains("Permission denied"));
    m.stop();
}

#[test]
fn bad_mount_points_and_missing_fuse_are_one_line() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let missing = ws.path("nope");
    let line = repo
        .run(&[OsStr::new("mount"), missing.as_os_str()])
        .fails(Some(1));
    assert!(line.contains("does not exist"), "{line}");
    let full = ws.path("full");
    write(&full.join("x"), b"x");
    let line = repo
        .run(&[OsStr::new("mount"), full.as_os_str()])
        .fails(Some(1));
    assert!(line.contains("not empty"), "{line}");
    let line = repo
        .run(&[OsStr::new("mount"), full.join("x").as_os_str()])
        .fails(Some(1));
    assert!(line.contains("not a directory"), "{line}");

    // No /dev/fuse: run cairn in a private mount namespace whose /dev is
    // an empty tmpfs.
    let unshare_ok = Command::new("unshare").arg("--version").output().is_ok();
    if !is_root() || !unshare_ok {
        eprintln!(
            "SKIPPED the missing-/dev/fuse part of bad_mount_points_and_missing_fuse_are_one_line: needs root and unshare"
        );
        return;
    }
    let mp = ws.path("mnt");
    fs::create_dir_all(&mp).unwrap();
    let c = {
        let mut u = Command::new("unshare");
        u.args(["--mount", "--propagation", "private", "sh", "-c"])
            .arg("mount -t tmpfs none /dev && exec \"$0\" \"$@\"")
            .arg(bin())
            .arg("-r")
            .arg(&repo.path)
            .arg("mount")
            .arg(&mp)
            .env_remove("CAIRN_PASSWORD_FILE")
            .env_remove("CAIRN_PASSWORD_COMMAND")
            .env("CAIRN_PASSWORD", PASSWORD)
            .stdin(Stdio::null());
        u
    };
    let r = run(c);
    if r.stderr.contains("unshare:") || r.stderr.contains("mount:") {
        eprintln!(
            "SKIPPED the missing-/dev/fuse part: no private mount namespace here ({})",
            r.stderr.trim()
        );
        return;
    }
    let line = r.fails(Some(1));
    assert!(
        line.contains("FUSE is not available") && line.contains("/dev/fuse"),
        "{line}"
    );
    assert!(!is_mounted(&mp));
}

#[test]
fn mount_of_an_s3_repository() {
    let Some(server) = s3_server("mount_of_an_s3_repository") else {
        return;
    };
    if !fuse_or_skip("mount_of_an_s3_repository") {
        return;
    }
    let ws = Workspace::new();
    let location = server.location("mount");
    let s3 = |args: &[&OsStr]| {
        let mut c = cairn_cmd();
        c.arg("-r")
            .arg(&location)
            .arg("--cache-dir")
            .arg(ws.path("cache"))
            .args(args);
        c
    };
    run(s3(&[
        OsStr::new("init"),
        OsStr::new("--kdf-memory"),
        OsStr::new("1024"),
        OsStr::new("--kdf-iterations"),
        OsStr::new("1"),
    ]))
    .ok();
    let src = ws.path("src");
    let data = random_bytes(41, 3_000_000);
    write(&src.join("f"), &data);
    write(&src.join("d/g"), b"g\n");
    let r = run(s3(&[
        OsStr::new("--json"),
        OsStr::new("backup"),
        src.as_os_str(),
    ]))
    .ok();
    let id = last_json(&r.stdout)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let mp = ws.path("mnt");
    let m = Mount::spawn(s3(&[OsStr::new("mount"), mp.as_os_str()]), &mp);
    let at = inside(&mp.join("ids").join(&id), &src);
    assert!(fs::read(at.join("f")).unwrap() == data);
    assert_eq!(fs::read(at.join("d/g")).unwrap(), b"g\n");
    let f = fs::File::open(at.join("f")).unwrap();
    let mut buf = vec![0; 10_000];
    f.read_exact_at(&mut buf, 1_234_567).unwrap();
    assert!(buf == data[1_234_567..1_244_567]);
    drop(f);
    m.stop();
}

#[test]
fn damaged_data_is_an_error_never_wrong_bytes() {
    if !fuse_or_skip("damaged_data_is_an_error_never_wrong_bytes") {
        return;
    }
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let src = ws.path("src");
    let data = random_bytes(51, 200_000);
    write(&src.join("f"), &data);
    write(&src.join("g"), b"small\n");
    let id = repo.backup(&[&src], &[]);
    let mp = ws.path("mnt");
    let m = Mount::start(&repo, &mp, &[]);
    let at = inside(&mp.join("ids").join(&id), &src);
    // Directories are read (and kept) before the damage.
    assert_eq!(names(&at), ["f", "g"]);
    let f = fs::File::open(at.join("f")).unwrap();
    // Every blob of 4 KiB or more is damaged now (the listings the mount
    // already holds are not read again).
    for pack in repo.files_in("data") {
        let len = fs::metadata(&pack).unwrap().len() as i64;
        for off in (0..len).step_by(4096) {
            flip_byte(&pack, off);
        }
    }
    let mut buf = vec![0u8; data.len()];
    let e = f.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    // Again: the failure is not cached as data.
    let e = f.read_exact_at(&mut buf, 0).unwrap_err();
    assert_eq!(e.raw_os_error(), Some(libc::EIO), "{e}");
    drop(f);
    wait_for("the error on cairn's stderr", || {
        m.log().lines().any(|l| {
            l.starts_with("cairn: error:")
                && l.contains(&format!("{}/ids/{id}/", mp.display()))
                && l.contains("/src/f: ")
                && l.contains("authentication failed")
        })
    });
    let log = m.stop();
    assert!(log.contains("unmounted"), "{log}");
}
