//! The one helper module of the end-to-end tests: running the real `cairn`
//! binary, building source trees with every kind of entry, and comparing
//! trees entry by entry (content and `lstat` metadata). [`Workspace`] and
//! [`Repo`] drive most tests; [`env::Env`] is the harness of the retention
//! and integrity tests (small packs, restore-and-compare of whole snapshots).
//!
//! Every test works in its own temporary directory ([`Workspace`]), which is
//! removed when the test ends, pass or fail.

#![allow(dead_code)]

pub mod crafted;
pub mod env;
pub mod http_proxy;

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fs;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// Password of every test repository.
pub const PASSWORD: &str = "correct horse battery staple";

/// Small chunker parameters so that modest files span many chunks.
pub const SMALL_CHUNKS: &[&str] = &[
    "--chunk-min",
    "4096",
    "--chunk-avg",
    "16384",
    "--chunk-max",
    "65536",
];

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_cairn")
}

/// Copies the binary under test to `to` (mode 0755), for running it as
/// another user from a folder they can reach, and waits until it can be
/// run: a child that another test thread forked while the copy was open
/// for writing holds it open until it executes its own program, and until
/// then running the copy fails with ETXTBSY.
pub fn copy_binary(to: &Path) {
    fs::copy(bin(), to).unwrap();
    chmod(to, 0o755);
    for _ in 0..250 {
        match Command::new(to).arg("--version").output() {
            Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                std::thread::sleep(std::time::Duration::from_millis(20))
            }
            _ => break,
        }
    }
}

/// Whether the tests run as root (CI does).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// A `cairn` command with a clean, deterministic environment: no inherited
/// repository or password settings, UTC as local time, the test password.
pub fn cairn_cmd() -> Command {
    cairn_cmd_with(Path::new(bin()))
}

/// Like [`cairn_cmd`], running the binary at `program`.
pub fn cairn_cmd_with(program: &Path) -> Command {
    let mut c = Command::new(program);
    for v in [
        "CAIRN_REPOSITORY",
        "CAIRN_PASSWORD",
        "CAIRN_PASSWORD_FILE",
        "CAIRN_PASSWORD_COMMAND",
    ] {
        c.env_remove(v);
    }
    c.env("CAIRN_PASSWORD", PASSWORD)
        .env("TZ", "UTC")
        .env("RUST_BACKTRACE", "0")
        .stdin(Stdio::null());
    c
}

/// What a finished command produced.
#[derive(Debug)]
pub struct Run {
    /// Exit code (`None` if killed by a signal).
    pub code: Option<i32>,
    /// Standard output.
    pub stdout: Vec<u8>,
    /// Standard error (lossy UTF-8).
    pub stderr: String,
    /// The command line, for messages.
    pub what: String,
}

impl Run {
    fn from(out: Output, what: String) -> Run {
        Run {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            what,
        }
    }

    /// Standard output as text.
    pub fn out(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    /// Asserts success (exit 0) without a panic; returns self.
    pub fn ok(self) -> Run {
        assert!(
            !self.stderr.contains("panicked"),
            "{} panicked:\n{}",
            self.what,
            self.stderr
        );
        assert_eq!(
            self.code,
            Some(0),
            "{} failed\nstdout: {}\nstderr: {}",
            self.what,
            self.out(),
            self.stderr
        );
        self
    }

    /// Asserts a clean failure: the given non-zero exit code (any non-zero
    /// code if `None`), no panic, and exactly one line on stderr. Returns
    /// that line.
    pub fn fails(&self, code: Option<i32>) -> String {
        assert!(
            !self.stderr.contains("panicked"),
            "{} panicked:\n{}",
            self.what,
            self.stderr
        );
        match code {
            Some(c) => assert_eq!(
                self.code,
                Some(c),
                "{}: expected exit {c}\nstdout: {}\nstderr: {}",
                self.what,
                self.out(),
                self.stderr
            ),
            None => assert!(
                matches!(self.code, Some(c) if c != 0),
                "{}: expected a non-zero exit, got {:?}\nstdout: {}\nstderr: {}",
                self.what,
                self.code,
                self.out(),
                self.stderr
            ),
        }
        let lines: Vec<&str> = self.stderr.lines().filter(|l| !l.is_empty()).collect();
        assert_eq!(
            lines.len(),
            1,
            "{}: expected exactly one line on stderr, got:\n{}",
            self.what,
            self.stderr
        );
        lines[0].to_string()
    }
}

/// Runs a command to completion.
pub fn run(mut cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    let out = cmd.output().expect("running cairn");
    Run::from(out, what)
}

/// Runs a command, killing it and failing the test if it takes longer than
/// `limit` (for operations that could hang, like opening a FIFO). Output is
/// read while the command runs: one printing more than a pipe holds would
/// otherwise wait for ever on a reader that waits for it to exit.
pub fn run_with_timeout(mut cmd: Command, limit: std::time::Duration) -> Run {
    use std::io::Read;
    let what = format!("{cmd:?}");
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running cairn");
    let drain = |mut r: Box<dyn Read + Send>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            r.read_to_end(&mut buf).unwrap();
            buf
        })
    };
    let out = drain(Box::new(child.stdout.take().unwrap()));
    let err = drain(Box::new(child.stderr.take().unwrap()));
    let start = std::time::Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    Run::from(
        std::process::Output {
            status,
            stdout: out.join().unwrap(),
            stderr: err.join().unwrap(),
        },
        what,
    )
}

/// A temporary directory holding a test's repository, sources and restores.
pub struct Workspace {
    pub dir: tempfile::TempDir,
}

impl Default for Workspace {
    fn default() -> Self {
        Self::new()
    }
}

impl Workspace {
    pub fn new() -> Workspace {
        Workspace {
            dir: tempfile::Builder::new()
                .prefix("cairn-e2e-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// `dir/name`.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Initialises a repository at `dir/name` with cheap KDF settings and
    /// the extra `init` arguments.
    pub fn init_repo(&self, name: &str, extra: &[&str]) -> Repo {
        let repo = Repo {
            path: self.path(name),
        };
        let mut args = vec!["init", "--kdf-memory", "1024", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        repo.run(&args).ok();
        repo
    }
}

impl Drop for Workspace {
    /// Makes every directory writable again so that the temporary directory
    /// can be removed even when not running as root (tests create read-only
    /// and mode-000 directories).
    fn drop(&mut self) {
        fn open_up(p: &Path) {
            let Ok(md) = fs::symlink_metadata(p) else {
                return;
            };
            if md.is_dir() {
                let _ = fs::set_permissions(p, fs::Permissions::from_mode(0o700));
                if let Ok(rd) = fs::read_dir(p) {
                    for e in rd.flatten() {
                        open_up(&e.path());
                    }
                }
            }
        }
        if !is_root() {
            open_up(self.dir.path());
        }
    }
}

/// A repository driven through the CLI.
pub struct Repo {
    pub path: PathBuf,
}

impl Repo {
    /// `cairn -r REPO args...`.
    pub fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = cairn_cmd();
        c.arg("-r").arg(&self.path).args(args);
        c
    }

    /// Runs `cairn -r REPO args...` to completion.
    pub fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run(self.cmd(args))
    }

    /// Backs up `paths` with extra arguments; returns the snapshot id.
    pub fn backup(&self, paths: &[&Path], extra: &[&str]) -> String {
        let mut args: Vec<OsString> = vec!["--json".into(), "backup".into()];
        args.extend(paths.iter().map(|p| p.as_os_str().to_owned()));
        args.extend(extra.iter().map(OsString::from));
        let r = self.run(&args).ok();
        let v = last_json(&r.stdout);
        v["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot_id in backup output: {}", r.out()))
            .to_string()
    }

    /// Restores `selector` (id, prefix, `latest`) into `target`.
    pub fn restore(&self, selector: &str, target: &Path, extra: &[&str]) -> Run {
        let mut args: Vec<OsString> = vec!["restore".into(), selector.into(), "--target".into()];
        args.push(target.as_os_str().to_owned());
        args.extend(extra.iter().map(OsString::from));
        self.run(&args)
    }

    /// All snapshots as JSON objects, oldest first.
    pub fn snapshots(&self) -> Vec<serde_json::Value> {
        let r = self.run(&["--json", "snapshots"]).ok();
        match last_json(&r.stdout) {
            serde_json::Value::Array(a) => a,
            other => panic!("snapshots --json gave {other}"),
        }
    }

    /// Ids of all snapshots.
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots()
            .iter()
            .map(|s| s["id"].as_str().expect("id").to_string())
            .collect()
    }

    /// Total size in bytes of all files in the repository.
    pub fn size(&self) -> u64 {
        dir_size(&self.path)
    }

    /// Every entry of the repository with the hash of its bytes.
    pub fn fingerprint(&self) -> BTreeMap<PathBuf, Option<blake3::Hash>> {
        fingerprint(&self.path)
    }

    /// Paths (relative to the repository) of all files under `sub`.
    pub fn files_in(&self, sub: &str) -> Vec<PathBuf> {
        let mut out = Vec::new();
        collect_files(&self.path.join(sub), &mut out);
        out.retain(|p| !p.file_name().unwrap().as_bytes().starts_with(b".tmp-"));
        out.sort();
        out
    }
}

fn collect_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd {
        let e = e.unwrap();
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            collect_files(&e.path(), out);
        } else {
            out.push(e.path());
        }
    }
}

/// The last JSON document in `out` (JSON lines: progress, then a summary).
pub fn last_json(out: &[u8]) -> serde_json::Value {
    let text = String::from_utf8_lossy(out);
    let line = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_else(|| panic!("no JSON output"));
    serde_json::from_str(line).unwrap_or_else(|e| panic!("bad JSON {line:?}: {e}"))
}

/// Total apparent size of the files below `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let mut files = Vec::new();
    collect_files(dir, &mut files);
    files
        .iter()
        .map(|f| fs::symlink_metadata(f).map(|m| m.len()).unwrap_or(0))
        .sum()
}

/// Every file and directory below `root` with the hash of file bytes.
pub fn fingerprint(root: &Path) -> BTreeMap<PathBuf, Option<blake3::Hash>> {
    let mut out = BTreeMap::new();
    fn go(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Option<blake3::Hash>>) {
        for e in fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(root).unwrap().to_path_buf();
            let md = fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                out.insert(rel, None);
                go(root, &p, out);
            } else {
                out.insert(rel, Some(blake3::hash(&fs::read(&p).unwrap())));
            }
        }
    }
    match fs::symlink_metadata(root) {
        Ok(md) if md.is_dir() => go(root, root, &mut out),
        Ok(_) => {
            out.insert(PathBuf::new(), Some(blake3::hash(&fs::read(root).unwrap())));
        }
        Err(_) => {}
    }
    out
}

/// Where a restore into `target` puts the backed-up absolute path `src`.
pub fn restored(target: &Path, src: &Path) -> PathBuf {
    target.join(src.strip_prefix("/").unwrap())
}

// ---------------------------------------------------------------------------
// Generating content and trees.

/// Deterministic pseudo-random bytes (splitmix64), fast enough in debug builds.
pub fn random_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    while out.len() < len {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        out.extend_from_slice(&z.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A tiny deterministic random number generator for test decisions.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed ^ 0x5DEE_CE66_D1CE_4E5B)
    }
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Writes a file, creating parent directories.
pub fn write(path: &Path, bytes: &[u8]) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, bytes).unwrap();
}

/// Sets permission bits (not following symlinks is not needed: never used on links).
pub fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

/// Sets owner and group without following symlinks.
pub fn lchown(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid)).unwrap();
}

/// Sets atime and mtime (seconds, nanoseconds) without following symlinks.
pub fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let t = filetime::FileTime::from_unix_time(sec, nsec);
    filetime::set_symlink_file_times(path, t, t).unwrap();
}

/// Creates a named pipe.
pub fn mkfifo(path: &Path, mode: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mkfifo(c.as_ptr(), mode as libc::mode_t) };
    assert_eq!(rc, 0, "mkfifo {}", path.display());
}

/// Creates a character device node (root only).
pub fn mknod_char(path: &Path, major: u32, minor: u32, mode: u32) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).unwrap();
    let dev = libc::makedev(major, minor);
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), libc::S_IFCHR | mode as libc::mode_t, dev) };
    assert_eq!(rc, 0, "mknod {}", path.display());
}

/// A sparse file of `len` bytes with `(offset, data)` regions written.
pub fn sparse_file(path: &Path, len: u64, regions: &[(u64, &[u8])]) {
    let f = fs::File::create(path).unwrap();
    f.set_len(len).unwrap();
    for (off, data) in regions {
        f.write_all_at(data, *off).unwrap();
    }
}

/// Gives every entry below (and including) `root` a distinct, deterministic
/// mtime with nanoseconds, deepest entries first so that directory times
/// survive the changes made inside them. Symlinks get times too.
pub fn stamp_times(root: &Path, base: i64) {
    let mut all = Vec::new();
    fn go(p: &Path, out: &mut Vec<PathBuf>) {
        out.push(p.to_path_buf());
        if fs::symlink_metadata(p).unwrap().is_dir() {
            let mut names: Vec<_> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            for n in names {
                go(&n, out);
            }
        }
    }
    go(root, &mut all);
    // Deepest first; then a parent's time is set after its children changed.
    let depth = |p: &Path| p.components().count();
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(depth(&all[i])));
    for (k, i) in order.into_iter().enumerate() {
        let sec = base + (k as i64) * 3_607;
        let nsec = ((k as u64 * 123_456_789 + 987) % 1_000_000_000) as u32;
        set_mtime(&all[i], sec, nsec);
    }
}

// ---------------------------------------------------------------------------
// Comparing trees.

/// What kind of object an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    Fifo,
    Socket,
    CharDev,
    BlockDev,
}

/// The `lstat` view of one entry plus its content.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entry {
    pub kind: Kind,
    /// `st_mode & 0o7777` (not compared for symlinks: always 0777 on Linux).
    pub mode: u32,
    /// Size (files only; directory sizes depend on the file system).
    pub size: u64,
    pub mtime: i64,
    pub mtime_nsec: i64,
    pub uid: u32,
    pub gid: u32,
    /// Symlink target bytes.
    pub target: Option<Vec<u8>>,
    /// BLAKE3 of a regular file's content.
    pub hash: Option<blake3::Hash>,
    /// For files with several names inside the tree: the smallest of those
    /// names (relative path), so link groups compare across trees.
    pub link_group: Option<Vec<u8>>,
    /// Device number of character and block devices.
    pub rdev: u64,
}

/// Options for [`manifest`].
#[derive(Clone, Copy, Debug)]
pub struct ManifestOptions {
    /// Compare owners (only meaningful when restoring as root).
    pub owners: bool,
}

impl Default for ManifestOptions {
    fn default() -> Self {
        ManifestOptions { owners: true }
    }
}

/// Relative path (bytes; empty for the root itself) → entry.
pub type Manifest = BTreeMap<Vec<u8>, Entry>;

/// Reads the tree at `root` (included as the entry with an empty name).
pub fn manifest(root: &Path, opts: ManifestOptions) -> Manifest {
    let mut out = Manifest::new();
    let mut inodes: BTreeMap<(u64, u64), Vec<Vec<u8>>> = BTreeMap::new();
    fn go(
        root: &Path,
        p: &Path,
        opts: ManifestOptions,
        out: &mut Manifest,
        inodes: &mut BTreeMap<(u64, u64), Vec<Vec<u8>>>,
    ) {
        let md = fs::symlink_metadata(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        let rel = p
            .strip_prefix(root)
            .unwrap()
            .as_os_str()
            .as_bytes()
            .to_vec();
        let ft = md.file_type();
        use std::os::unix::fs::FileTypeExt;
        let kind = if ft.is_dir() {
            Kind::Dir
        } else if ft.is_symlink() {
            Kind::Symlink
        } else if ft.is_file() {
            Kind::File
        } else if ft.is_fifo() {
            Kind::Fifo
        } else if ft.is_char_device() {
            Kind::CharDev
        } else if ft.is_block_device() {
            Kind::BlockDev
        } else {
            Kind::Socket
        };
        let mut e = Entry {
            kind,
            mode: if kind == Kind::Symlink {
                0
            } else {
                md.mode() & 0o7777
            },
            size: if kind == Kind::File { md.len() } else { 0 },
            mtime: md.mtime(),
            mtime_nsec: md.mtime_nsec(),
            uid: if opts.owners { md.uid() } else { 0 },
            gid: if opts.owners { md.gid() } else { 0 },
            target: None,
            hash: None,
            link_group: None,
            rdev: if matches!(kind, Kind::CharDev | Kind::BlockDev) {
                md.rdev()
            } else {
                0
            },
        };
        match kind {
            Kind::File => {
                e.hash = Some(blake3::hash(&fs::read(p).unwrap()));
                if md.nlink() > 1 {
                    inodes
                        .entry((md.dev(), md.ino()))
                        .or_default()
                        .push(rel.clone());
                }
            }
            Kind::Symlink => {
                e.target = Some(fs::read_link(p).unwrap().into_os_string().into_vec());
            }
            _ => {}
        }
        out.insert(rel, e);
        if kind == Kind::Dir {
            for d in fs::read_dir(p).unwrap() {
                go(root, &d.unwrap().path(), opts, out, inodes);
            }
        }
    }
    go(root, root, opts, &mut out, &mut inodes);
    for names in inodes.values() {
        if names.len() > 1 {
            let first = names.iter().min().unwrap().clone();
            for n in names {
                out.get_mut(n).unwrap().link_group = Some(first.clone());
            }
        }
    }
    out
}

/// Human-readable differences between two manifests (empty if equal).
pub fn diff(expected: &Manifest, actual: &Manifest) -> Vec<String> {
    let mut out = Vec::new();
    let show = |k: &[u8]| {
        if k.is_empty() {
            "<root>".to_string()
        } else {
            format!("{:?}", OsStr::from_bytes(k))
        }
    };
    for (k, e) in expected {
        match actual.get(k) {
            None => out.push(format!("missing: {}", show(k))),
            Some(a) if a != e => out.push(format!(
                "differs: {}\n  expected {e:?}\n  actual   {a:?}",
                show(k)
            )),
            _ => {}
        }
    }
    for k in actual.keys() {
        if !expected.contains_key(k) {
            out.push(format!("unexpected: {}", show(k)));
        }
    }
    out
}

/// Asserts that two manifests are equal, listing every difference.
pub fn assert_same(expected: &Manifest, actual: &Manifest, context: &str) {
    let d = diff(expected, actual);
    assert!(
        d.is_empty(),
        "{context}: {} differences:\n{}",
        d.len(),
        d.iter().take(40).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// Restores `selector` into a fresh directory under `ws` and compares the
/// restored copy of `src` with `expected`.
pub fn restore_and_compare(
    ws: &Workspace,
    repo: &Repo,
    selector: &str,
    src: &Path,
    expected: &Manifest,
    opts: ManifestOptions,
    extra: &[&str],
) {
    let target = tempfile::Builder::new()
        .prefix("restore-")
        .tempdir_in(ws.dir.path())
        .unwrap();
    repo.restore(selector, target.path(), extra).ok();
    let got = manifest(&restored(target.path(), src), opts);
    assert_same(expected, &got, &format!("restore of {selector}"));
}

// ---------------------------------------------------------------------------
// Damaging repository files.

/// Copies a directory tree (files, directories, symlinks).
pub fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let (src, dst) = (e.path(), to.join(e.file_name()));
        let ft = e.file_type().unwrap();
        if ft.is_dir() {
            copy_tree(&src, &dst);
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(&src).unwrap(), &dst).unwrap();
        } else {
            fs::copy(&src, &dst).unwrap();
        }
    }
}

/// Flips the lowest bit of the byte at `offset` (negative: from the end).
pub fn flip_byte(path: &Path, offset: i64) {
    let mut b = fs::read(path).unwrap();
    let i = if offset < 0 {
        (b.len() as i64 + offset) as usize
    } else {
        offset as usize
    };
    b[i] ^= 1;
    fs::write(path, b).unwrap();
}

/// Truncates a file to `len` bytes.
pub fn truncate(path: &Path, len: u64) {
    fs::OpenOptions::new()
        .write(true)
        .open(path)
        .unwrap()
        .set_len(len)
        .unwrap();
}

/// Renames a content-addressed file to the BLAKE3 hash of its (damaged)
/// content, as a forger would; returns the new path.
pub fn rename_to_hash(path: &Path) -> PathBuf {
    let hex = blake3::hash(&fs::read(path).unwrap()).to_hex().to_string();
    let new = if path.parent().unwrap().parent().unwrap().file_name() == Some(OsStr::new("data")) {
        // data/<2 hex>/<id>
        path.parent()
            .unwrap()
            .parent()
            .unwrap()
            .join(&hex[..2])
            .join(&hex)
    } else {
        path.with_file_name(&hex)
    };
    fs::rename(path, &new).unwrap();
    new
}

// ---------------------------------------------------------------------------
// A real S3 server (Ceph RGW started by .ci/rgw.sh).

/// Where the S3 test server is, from `eval "$(bash .ci/rgw.sh start)"`.
pub struct S3Server {
    /// `http://127.0.0.1:PORT`.
    pub endpoint: String,
}

/// The S3 test server, or `None` (with a visible message) when none was
/// started. With `CAIRN_TEST_REQUIRE_S3=1` (as CI sets) a missing server
/// fails the test instead: CI never skips these.
pub fn s3_server(test: &str) -> Option<S3Server> {
    match std::env::var("CAIRN_TEST_S3_ENDPOINT") {
        Ok(endpoint) if !endpoint.is_empty() => Some(S3Server { endpoint }),
        _ => {
            assert!(
                std::env::var_os("CAIRN_TEST_REQUIRE_S3").is_none(),
                "{test}: CAIRN_TEST_REQUIRE_S3 is set but CAIRN_TEST_S3_ENDPOINT is not"
            );
            eprintln!(
                "SKIPPED {test}: no S3 server (run `eval \"$(bash .ci/rgw.sh start)\"` first)"
            );
            None
        }
    }
}

impl S3Server {
    /// A bucket name no other test uses.
    pub fn unique_bucket(&self, tag: &str) -> String {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let tag: String = tag
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            })
            .take(30)
            .collect();
        format!("t-{tag}-{}-{n}", std::process::id())
    }

    /// `s3:ENDPOINT/BUCKET/PREFIX` for a fresh bucket.
    pub fn location(&self, tag: &str) -> String {
        format!("s3:{}/{}/repo", self.endpoint, self.unique_bucket(tag))
    }
}
