//! The [`Env`] harness of the retention and integrity tests (`forget_cli`,
//! `prune`, `check_faults`): a repository with 1 MiB packs and small chunks
//! in a temporary directory driven through the real `cairn` binary, and a
//! bit-for-bit comparison of a restored snapshot with the content recorded
//! when it was taken. Shared basics (the binary, random data, sizes) come
//! from the parent module.

#![allow(dead_code)]

#[allow(unused_imports)]
pub use super::{bin, dir_size, random_bytes};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// Password of every test repository.
pub const PASSWORD: &str = "pw";

/// Writes `len` random bytes from `seed` to `path` (creating parents).
pub fn write_random(path: &Path, seed: u64, len: usize) {
    if let Some(p) = path.parent() {
        fs::create_dir_all(p).unwrap();
    }
    fs::write(path, random_bytes(seed, len)).unwrap();
}

/// Content of every regular file under `dir`, by path relative to `dir`,
/// as BLAKE3 hashes.
pub type Manifest = BTreeMap<PathBuf, [u8; 32]>;

/// Records the content of `dir`.
pub fn manifest(dir: &Path) -> Manifest {
    fn walk(root: &Path, dir: &Path, out: &mut Manifest) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display()))
            .map(|e| e.unwrap())
            .collect();
        entries.sort_by_key(|e| e.file_name());
        for e in entries {
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &p, out);
            } else if t.is_file() {
                let bytes = fs::read(&p).unwrap();
                out.insert(
                    p.strip_prefix(root).unwrap().to_path_buf(),
                    *blake3::hash(&bytes).as_bytes(),
                );
            }
        }
    }
    let mut m = Manifest::new();
    walk(dir, dir, &mut m);
    m
}

/// Every regular file below `dir` with its size, by relative path.
pub fn file_listing(dir: &Path) -> BTreeMap<PathBuf, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, u64>) {
        if let Ok(rd) = fs::read_dir(dir) {
            for e in rd.flatten() {
                let t = e.file_type().unwrap();
                let p = e.path();
                if t.is_dir() {
                    walk(root, &p, out);
                } else if t.is_file() {
                    // Tolerate files removed meanwhile by a running process.
                    if let Ok(m) = e.metadata() {
                        out.insert(p.strip_prefix(root).unwrap().to_path_buf(), m.len());
                    }
                }
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(dir, dir, &mut m);
    m
}

/// Repository files (named by their 64-hex-digit id; temporary files of
/// interrupted writers are not counted) in a flat or two-level directory
/// such as `data/` (`data/ab/<id>`) or `index/`.
pub fn repo_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = file_listing(dir)
        .into_keys()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
        })
        .map(|p| dir.join(p))
        .collect();
    v.sort();
    v
}

/// Output of one command, decoded.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
    /// stdout parsed as one JSON document (the last non-empty line when
    /// progress lines come first).
    pub fn json(&self) -> Value {
        let text = self.stdout.trim();
        serde_json::from_str(text)
            .or_else(|_| serde_json::from_str(text.lines().last().unwrap_or("")))
            .unwrap_or_else(|e| panic!("not JSON ({e}): {text}\nstderr: {}", self.stderr))
    }
    /// stdout and stderr together, for assertions on messages.
    pub fn all(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A snapshot taken by a test, with what it must restore to.
#[derive(Clone, Debug)]
pub struct Snap {
    pub id: String,
    pub source: PathBuf,
    pub manifest: Manifest,
}

/// A repository in a temporary directory, plus room for sources and restores.
pub struct Env {
    pub tmp: tempfile::TempDir,
    pub repo: PathBuf,
    counter: std::cell::Cell<u32>,
}

impl Env {
    /// A workspace with an initialised repository (1 MiB packs, small
    /// chunks, a cheap KDF).
    pub fn new() -> Env {
        let env = Env::bare();
        let r = env.run(&[
            "init",
            "--kdf-memory",
            "1024",
            "--kdf-iterations",
            "1",
            "--pack-size",
            "1",
            "--chunk-min",
            "4096",
            "--chunk-avg",
            "16384",
            "--chunk-max",
            "65536",
        ]);
        assert!(r.ok(), "init failed: {r}");
        env
    }

    /// A workspace without a repository.
    pub fn bare() -> Env {
        let tmp = tempfile::Builder::new()
            .prefix("cairn-t5-")
            .tempdir()
            .unwrap();
        let repo = tmp.path().join("repo");
        Env {
            tmp,
            repo,
            counter: std::cell::Cell::new(0),
        }
    }

    /// A fresh, empty directory in the workspace.
    pub fn dir(&self, name: &str) -> PathBuf {
        let n = self.counter.get() + 1;
        self.counter.set(n);
        let p = self.tmp.path().join(format!("{name}-{n}"));
        fs::create_dir_all(&p).unwrap();
        p
    }

    /// A `cairn -r REPO` command with a clean environment (UTC local time).
    pub fn cmd(&self) -> Command {
        let mut c = Command::new(bin());
        for v in [
            "CAIRN_REPOSITORY",
            "CAIRN_PASSWORD_FILE",
            "CAIRN_PASSWORD_COMMAND",
        ] {
            c.env_remove(v);
        }
        c.env("CAIRN_PASSWORD", PASSWORD)
            .env("TZ", "UTC")
            .env("RUST_BACKTRACE", "0")
            .arg("-r")
            .arg(&self.repo)
            .stdin(Stdio::null());
        c
    }

    /// Runs cairn with `args` and waits.
    pub fn run(&self, args: &[&str]) -> Run {
        Run::from(self.cmd().args(args).output().unwrap())
    }

    /// Runs cairn and requires success.
    pub fn ok(&self, args: &[&str]) -> Run {
        let r = self.run(args);
        assert!(r.ok(), "cairn {args:?} failed: {r}");
        r
    }

    /// Starts cairn in the background (output discarded).
    pub fn spawn(&self, args: &[&str]) -> Child {
        self.cmd()
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    /// Backs up `dir` and returns the snapshot with its expected content.
    pub fn backup(&self, dir: &Path, extra: &[&str]) -> Snap {
        let manifest = manifest(dir);
        let mut args = vec!["--json", "-q", "backup", dir.to_str().unwrap()];
        args.extend_from_slice(extra);
        let r = self.ok(&args);
        let id = r.json()["snapshot_id"]
            .as_str()
            .unwrap_or_else(|| panic!("no snapshot_id in {r}"))
            .to_string();
        Snap {
            id,
            source: dir.to_path_buf(),
            manifest,
        }
    }

    /// `snapshots --json`.
    pub fn snapshots(&self) -> Vec<Value> {
        self.ok(&["--json", "snapshots"])
            .json()
            .as_array()
            .unwrap()
            .clone()
    }

    /// Ids of the snapshots in the repository.
    pub fn snapshot_ids(&self) -> Vec<String> {
        self.snapshots()
            .iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    }

    /// Restores `s` and requires the restored files to equal its manifest,
    /// bit for bit, with nothing missing and nothing extra.
    pub fn verify_restore(&self, s: &Snap) {
        let target = self.dir("restore");
        let r = self.run(&["restore", &s.id, "--target", target.to_str().unwrap()]);
        assert!(r.ok(), "restore of {} failed: {r}", s.id);
        let rel = s.source.strip_prefix("/").unwrap();
        let got = manifest(&target.join(rel));
        if got != s.manifest {
            let missing: Vec<_> = s
                .manifest
                .keys()
                .filter(|k| !got.contains_key(*k))
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !s.manifest.contains_key(*k))
                .collect();
            let differ: Vec<_> = s
                .manifest
                .iter()
                .filter(|(k, v)| got.get(*k).is_some_and(|g| g != *v))
                .map(|(k, _)| k)
                .collect();
            panic!(
                "snapshot {} restored wrongly: missing {missing:?}, extra {extra:?}, different {differ:?}",
                s.id
            );
        }
        fs::remove_dir_all(&target).unwrap();
    }

    /// Restores every snapshot of `snaps` that still exists in the
    /// repository; requires that every snapshot in the repository is known.
    pub fn verify_all(&self, snaps: &[Snap]) -> usize {
        let present = self.snapshot_ids();
        for id in &present {
            assert!(
                snaps.iter().any(|s| &s.id == id),
                "unknown snapshot {id} in the repository"
            );
        }
        let mut n = 0;
        for s in snaps.iter().filter(|s| present.contains(&s.id)) {
            self.verify_restore(s);
            n += 1;
        }
        n
    }

    /// `check --read-data --json`, required to pass; returns the report.
    pub fn check_read_data_ok(&self) -> Value {
        let r = self.run(&["--json", "check", "--read-data"]);
        assert!(r.ok(), "check --read-data failed: {r}");
        let v = r.json();
        assert_eq!(v["ok"], true, "{r}");
        assert!(v["errors"].as_array().unwrap().is_empty(), "{r}");
        v
    }

    /// Bytes of pack files.
    pub fn data_size(&self) -> u64 {
        self.packs()
            .iter()
            .map(|p| fs::metadata(p).unwrap().len())
            .sum()
    }

    /// Pack files.
    pub fn packs(&self) -> Vec<PathBuf> {
        repo_files(&self.repo.join("data"))
    }

    /// Index files.
    pub fn index_files(&self) -> Vec<PathBuf> {
        repo_files(&self.repo.join("index"))
    }

    /// Lock files.
    pub fn lock_files(&self) -> Vec<PathBuf> {
        repo_files(&self.repo.join("locks"))
    }

    /// Every pack in the live index with its blobs (`cat index` JSON), by pack id.
    pub fn index_packs(&self) -> BTreeMap<String, Vec<Value>> {
        let mut out = BTreeMap::new();
        let mut superseded = Vec::new();
        let mut files = Vec::new();
        for f in self.index_files() {
            let id = f.file_name().unwrap().to_str().unwrap().to_string();
            let v = self.ok(&["cat", "index", &id]).json();
            for s in v["supersedes"].as_array().unwrap() {
                superseded.push(s.as_str().unwrap().to_string());
            }
            files.push((id, v));
        }
        for (id, v) in files {
            if superseded.contains(&id) {
                continue;
            }
            for p in v["packs"].as_array().unwrap() {
                out.entry(p["id"].as_str().unwrap().to_string())
                    .or_insert_with(|| p["blobs"].as_array().unwrap().clone());
            }
        }
        out
    }

    /// Path of a pack file by id.
    pub fn pack_path(&self, id: &str) -> PathBuf {
        self.repo.join("data").join(&id[..2]).join(id)
    }
}

impl Default for Env {
    fn default() -> Self {
        Env::new()
    }
}

/// Waits for `child` up to `limit`; kills it and panics when it takes longer.
pub fn wait_with_limit(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether `restic` can be run.
pub fn have_restic() -> bool {
    Command::new("restic")
        .arg("version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}
