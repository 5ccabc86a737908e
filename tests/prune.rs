//! `cairn prune` end to end: space comes back, `--dry-run` changes nothing,
//! partly used packs are repacked (`--max-unused`, `--repack-small`), a
//! prune killed at any moment loses nothing and a rerun finishes the job,
//! backups and prunes running at the same time never lose data, and the
//! lock protocol reports conflicts (exit 11) and ignores dead holders.
//!
//! After every prune the repository must pass `check --read-data` and every
//! remaining snapshot must restore bit for bit.

mod support;

use cairn::Repository;
use cairn::backend::{FileKind, Handle};
use serde_json::Value;
use std::collections::BTreeSet;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};
use support::env::*;

const KIB: usize = 1024;

/// `prune --json --instant-delete ARGS` (deletes at once, as for a
/// repository nobody else writes to), required to succeed; the report.
fn prune(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json", "prune", "--instant-delete"];
    a.extend_from_slice(args);
    let v = env.ok(&a).json();
    assert_eq!(v["message_type"], "prune", "{v}");
    v
}

fn u(v: &Value, field: &str) -> u64 {
    v[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} missing in {v}"))
}

/// Every file of the repository except locks, with its size and mtime.
fn repo_state(env: &Env) -> Vec<(PathBuf, u64, std::time::SystemTime)> {
    let mut out = Vec::new();
    for kind in ["data", "index", "snapshots", "keys"] {
        for p in repo_files(&env.repo.join(kind)) {
            let m = std::fs::metadata(&p).unwrap();
            out.push((p, m.len(), m.modified().unwrap()));
        }
    }
    out
}

/// After a prune: data verified, nothing unreferenced, every snapshot restores.
fn assert_clean_and_restorable(env: &Env, snaps: &[Snap]) {
    let c = env.check_read_data_ok();
    assert_eq!(c["unused_blobs"], 0, "unreferenced data left: {c}");
    assert!(c["info"].as_array().unwrap().is_empty(), "{c}");
    env.verify_all(snaps);
}

fn forget_ids(env: &Env, snaps: &[&Snap]) {
    let mut a = vec!["-q", "forget"];
    a.extend(snaps.iter().map(|s| s.id.as_str()));
    env.ok(&a);
}

#[test]
fn prune_returns_the_space_of_forgotten_data() {
    let env = Env::new();
    const UNIQUE: usize = 400 * KIB;
    let mut snaps = Vec::new();
    for k in 0..5u64 {
        let d = env.dir("src");
        write_random(&d.join("shared"), 1, 200 * KIB);
        write_random(&d.join(format!("unique{k}")), 100 + k, UNIQUE);
        snaps.push(env.backup(&d, &["--host", "h"]));
    }
    // Nothing unreferenced yet: prune has nothing to do.
    let r = prune(&env, &[]);
    assert_eq!(u(&r, "packs_deleted") + u(&r, "packs_repacked"), 0, "{r}");
    assert_eq!(u(&r, "bytes_freed"), 0, "{r}");
    assert_clean_and_restorable(&env, &snaps);

    forget_ids(&env, &[&snaps[1], &snaps[3]]);
    let expect = 2 * UNIQUE as u64;
    let before = env.data_size();
    let state = repo_state(&env);

    // Dry run: reports what it would free, touches nothing.
    let dry = prune(&env, &["--dry-run"]);
    assert_eq!(dry["dry_run"], true);
    let would = u(&dry, "bytes_freed");
    assert!(
        (expect..expect + 40 * KIB as u64).contains(&would),
        "dry run would free {would}, expected about {expect}: {dry}"
    );
    assert!(u(&dry, "packs_deleted") >= 2, "{dry}");
    assert_eq!(repo_state(&env), state, "--dry-run changed the repository");
    assert!(env.lock_files().is_empty());
    let r = env.ok(&["prune", "--dry-run", "--instant-delete"]);
    assert!(r.stdout.contains("would delete"), "{r}");
    assert_eq!(repo_state(&env), state, "--dry-run changed the repository");

    // For real: the data directory shrinks by the forgotten unique data.
    let r = prune(&env, &[]);
    let after = env.data_size();
    assert_eq!(
        before - after,
        u(&r, "bytes_freed"),
        "report matches disk: {r}"
    );
    assert_eq!(u(&r, "bytes_freed"), would, "dry run predicted it exactly");
    assert!(
        (expect..expect + 40 * KIB as u64).contains(&(before - after)),
        "freed {} bytes, expected about {expect}",
        before - after
    );
    assert_eq!(u(&r, "size_before"), before);
    assert_eq!(u(&r, "size_after"), after);
    assert_clean_and_restorable(&env, &snaps);

    // A second prune finds nothing.
    let r = prune(&env, &[]);
    assert_eq!(u(&r, "bytes_freed"), 0, "{r}");
    assert_eq!(env.data_size(), after);
    assert_clean_and_restorable(&env, &snaps);

    // Forgetting a snapshot whose data later snapshots share frees only its trees.
    let d = env.dir("src");
    write_random(&d.join("shared"), 1, 200 * KIB);
    write_random(&d.join("unique4"), 104, UNIQUE);
    let twin = env.backup(&d, &["--host", "h"]);
    snaps.push(twin.clone());
    forget_ids(&env, &[&snaps[4]]);
    let before = env.data_size();
    let r = prune(&env, &[]);
    assert!(u(&r, "bytes_freed") < 8 * KIB as u64, "{r}");
    assert!(before - env.data_size() < 8 * KIB as u64);
    assert_clean_and_restorable(&env, &snaps);
}

/// One snapshot of `n` distinct files, and a second one holding every other
/// file of the first (so all its data deduplicates against the first).
fn half_used_packs(env: &Env, n: u64, size: usize) -> (Snap, Snap) {
    let all = env.dir("all");
    let half = env.dir("half");
    for i in 0..n {
        write_random(&all.join(format!("f{i:03}")), 1000 + i, size);
        if i % 2 == 0 {
            write_random(&half.join(format!("f{i:03}")), 1000 + i, size);
        }
    }
    let s_all = env.backup(&all, &["--host", "h"]);
    let s_half = env.backup(&half, &["--host", "h"]);
    (s_all, s_half)
}

#[test]
fn max_unused_repacks_partly_used_packs() {
    let env = Env::new();
    let (s_all, s_half) = half_used_packs(&env, 64, 32 * KIB);
    let snaps = vec![s_all.clone(), s_half.clone()];
    let data_packs_before = env.packs().len();
    forget_ids(&env, &[&s_all]);
    let half_bytes = 32 * 32 * KIB as u64;

    // Tolerating 100% unused: the half-used data packs stay as they are.
    let before = env.data_size();
    let r = prune(&env, &["--max-unused", "100%"]);
    assert_eq!(u(&r, "packs_repacked"), 0, "{r}");
    // Every unused byte is kept, except that a last, small pack (a few KiB
    // past two full ones) may hold only chunks of an odd file that finished
    // last: then it is entirely unused and deleted.
    let kept = u(&r, "bytes_unused_kept");
    assert!(kept + u(&r, "bytes_freed") >= half_bytes, "{r}");
    assert!(kept + 16 * KIB as u64 >= half_bytes, "{r}");
    assert!(before - env.data_size() < 16 * KIB as u64, "only trees go");
    let c = env.check_read_data_ok();
    assert!(u(&c, "unused_blobs") >= 32, "{c}");
    assert!(
        c["info"][0].as_str().unwrap().contains("not referenced"),
        "{c}"
    );
    env.verify_all(&snaps);

    // 60% tolerated: half unused is below it, still nothing to repack.
    let r = prune(&env, &["--max-unused", "60", "--dry-run"]);
    assert_eq!(u(&r, "packs_repacked"), 0, "{r}");

    // Default 5%: a dry run says what would be repacked and freed.
    let state = repo_state(&env);
    let before = env.data_size();
    let dry = prune(&env, &["--dry-run"]);
    assert!(u(&dry, "packs_repacked") >= 2, "{dry}");
    let would = u(&dry, "bytes_freed");
    assert!(
        would > half_bytes * 9 / 10 && would < half_bytes * 11 / 10,
        "would free {would}, expected about {half_bytes}: {dry}"
    );
    assert_eq!(repo_state(&env), state, "--dry-run changed the repository");

    // And does it.
    let old_packs: BTreeSet<PathBuf> = env.packs().into_iter().collect();
    let r = prune(&env, &[]);
    assert!(u(&r, "packs_repacked") >= 2, "{r}");
    assert!(u(&r, "packs_written") >= 1, "{r}");
    let new_packs: BTreeSet<PathBuf> = env.packs().into_iter().collect();
    assert!(
        new_packs.difference(&old_packs).count() >= 1,
        "repacking writes new packs"
    );
    let freed = before - env.data_size();
    assert!(
        freed > half_bytes * 9 / 10 && freed < half_bytes * 11 / 10,
        "freed {freed}, expected about {half_bytes}"
    );
    assert!(env.packs().len() < data_packs_before);
    assert_clean_and_restorable(&env, &snaps);
}

#[test]
fn repack_small_merges_small_packs() {
    let env = Env::new();
    let mut snaps = Vec::new();
    for k in 0..6u64 {
        let d = env.dir("small");
        write_random(&d.join("f"), 500 + k, 30 * KIB);
        snaps.push(env.backup(&d, &["--host", "h"]));
    }
    let packs_before = env.packs().len();
    assert!(packs_before >= 12, "one data and one tree pack per backup");

    let r = prune(&env, &[]);
    assert_eq!(
        u(&r, "packs_repacked"),
        0,
        "small packs stay without --repack-small"
    );
    assert_clean_and_restorable(&env, &snaps);
    let dry = prune(&env, &["--repack-small", "--dry-run"]);
    assert!(u(&dry, "packs_repacked") >= 12, "{dry}");
    assert_eq!(env.packs().len(), packs_before);

    let r = prune(&env, &["--repack-small"]);
    assert!(u(&r, "packs_repacked") >= 12, "{r}");
    let after = env.packs().len();
    assert!(after <= 3, "{packs_before} small packs became {after}: {r}");
    assert_clean_and_restorable(&env, &snaps);

    // Once merged, nothing more to do.
    let r = prune(&env, &["--repack-small"]);
    assert_eq!(u(&r, "packs_repacked"), 0, "{r}");
    assert_eq!(env.packs().len(), after);
    assert_clean_and_restorable(&env, &snaps);
}

// ---------------------------------------------------------------------------
// Crashes.

/// Polls `cond` while `child` runs; SIGKILLs it as soon as `cond` holds.
/// Returns whether it was killed (false: it exited before).
fn kill_when(child: &mut Child, mut cond: impl FnMut() -> bool) -> bool {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "prune failed: {st:?}");
            return false;
        }
        if cond() {
            let _ = child.kill();
            // Reap it: a zombie still "exists" for kill(pid, 0).
            let st = child.wait().unwrap();
            return st.signal() == Some(9);
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "prune ran for two minutes"
        );
        std::thread::sleep(Duration::from_micros(300));
    }
}

/// What happened to a repository file, as inotify reports it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ev {
    /// A file got its final name (written to a temporary name, renamed).
    Added,
    /// A file was deleted.
    Deleted,
}

/// inotify on the repository's `data/??`, `index` and `locks` directories,
/// so that a process can be killed within microseconds of a given file
/// operation instead of a polling interval later.
struct Watcher {
    fd: i32,
    dirs: std::collections::HashMap<i32, &'static str>,
}

impl Watcher {
    fn new(repo: &Path) -> Watcher {
        use std::os::unix::ffi::OsStrExt;
        // SAFETY: plain syscall.
        let fd = unsafe { libc::inotify_init1(libc::IN_CLOEXEC | libc::IN_NONBLOCK) };
        assert!(fd >= 0, "inotify_init1");
        let mut w = Watcher {
            fd,
            dirs: Default::default(),
        };
        let mut add = |p: PathBuf, kind: &'static str| {
            let c = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
            // SAFETY: valid fd and NUL-terminated path.
            let wd = unsafe {
                libc::inotify_add_watch(fd, c.as_ptr(), libc::IN_MOVED_TO | libc::IN_DELETE)
            };
            assert!(wd >= 0, "inotify_add_watch {}", p.display());
            w.dirs.insert(wd, kind);
        };
        for i in 0..=255u8 {
            add(repo.join("data").join(format!("{i:02x}")), "data");
        }
        add(repo.join("index"), "index");
        add(repo.join("locks"), "locks");
        w
    }

    /// Events within `timeout_ms`: (directory kind, event), for files with
    /// repository names only (not temporary files).
    fn events(&self, timeout_ms: i32) -> Vec<(&'static str, Ev)> {
        let mut pfd = libc::pollfd {
            fd: self.fd,
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        unsafe { libc::poll(&mut pfd, 1, timeout_ms) };
        let mut buf = vec![0u8; 64 * 1024];
        // SAFETY: buf is writable for its length.
        let n = unsafe { libc::read(self.fd, buf.as_mut_ptr().cast(), buf.len()) };
        let mut out = Vec::new();
        if n <= 0 {
            return out;
        }
        let mut at = 0usize;
        while at + 16 <= n as usize {
            let word = |i: usize| u32::from_ne_bytes(buf[at + i..at + i + 4].try_into().unwrap());
            let (wd, mask, len) = (word(0) as i32, word(4), word(12) as usize);
            let name = &buf[at + 16..at + 16 + len];
            let name: Vec<u8> = name.iter().copied().take_while(|b| *b != 0).collect();
            at += 16 + len;
            let real = name.len() == 64 && name.iter().all(u8::is_ascii_hexdigit);
            let Some(kind) = self.dirs.get(&wd) else {
                continue;
            };
            if !real {
                continue;
            }
            if mask & libc::IN_MOVED_TO != 0 {
                out.push((*kind, Ev::Added));
            } else if mask & libc::IN_DELETE != 0 {
                out.push((*kind, Ev::Deleted));
            }
        }
        out
    }
}

impl Drop for Watcher {
    fn drop(&mut self) {
        // SAFETY: our fd.
        unsafe { libc::close(self.fd) };
    }
}

/// Runs `cairn prune` and SIGKILLs it right after the `nth` (1-based)
/// event `ev` in directory `kind`. Returns whether it was killed while
/// running (false: it finished first).
fn prune_killed_at(env: &Env, args: &[&str], kind: &str, ev: Ev, nth: usize) -> bool {
    let w = Watcher::new(&env.repo);
    let mut a = vec!["prune"];
    a.extend_from_slice(args);
    let mut child = env.spawn(&a);
    let start = Instant::now();
    let mut seen = 0;
    loop {
        for (k, e) in w.events(5) {
            if k == kind && e == ev {
                seen += 1;
                if seen == nth {
                    let _ = child.kill();
                    // Reap it: a zombie still "exists" for kill(pid, 0).
                    let st = child.wait().unwrap();
                    return st.signal() == Some(9);
                }
            }
        }
        if let Some(st) = child.try_wait().unwrap() {
            assert!(st.success(), "prune failed: {st:?}");
            return false;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "prune ran for two minutes"
        );
    }
}

#[test]
fn prune_killed_at_any_moment_loses_nothing() {
    let env = Env::new();
    // One snapshot of 144 files, and twelve snapshots each holding two of
    // the twelve residue classes of those files (i % 12 == k or k + 1).
    // Forgetting snapshot k (after 0..k-1) frees class k, spread over every
    // data pack, so each prune repacks every data pack.
    const N: u64 = 144;
    const K: u64 = 12;
    let all = env.dir("all");
    for i in 0..N {
        write_random(&all.join(format!("f{i:03}")), 7000 + i, 24 * KIB);
    }
    let s_all = env.backup(&all, &["--host", "h"]);
    let mut subs = Vec::new();
    for k in 0..K {
        let d = env.dir("sub");
        for i in (0..N).filter(|i| i % K == k || i % K == (k + 1) % K) {
            std::fs::copy(all.join(format!("f{i:03}")), d.join(format!("f{i:03}"))).unwrap();
        }
        subs.push(env.backup(&d, &["--host", "h"]));
    }
    let mut snaps = vec![s_all.clone()];
    snaps.extend(subs.iter().cloned());

    // Kill points, in the order prune reaches them: its lock written; the
    // first and the third repacked pack durable; the index of the new packs;
    // the index of everything kept; the superseding index; the first old
    // index deleted; the first and a later old pack deleted.
    let rounds: Vec<(Vec<&Snap>, &str, Ev, usize)> = vec![
        (vec![&s_all, &subs[0], &subs[1]], "locks", Ev::Added, 1),
        (vec![&subs[2]], "data", Ev::Added, 1),
        (vec![&subs[3]], "data", Ev::Added, 3),
        (vec![&subs[4]], "index", Ev::Added, 1),
        (vec![&subs[5]], "index", Ev::Added, 2),
        (vec![&subs[6]], "index", Ev::Added, 3),
        (vec![&subs[7]], "index", Ev::Deleted, 1),
        (vec![&subs[8]], "data", Ev::Deleted, 1),
        (vec![&subs[9]], "data", Ev::Deleted, 4),
    ];
    let mut killed_mid_prune = 0;
    for (forget, kind, ev, nth) in &rounds {
        // Works despite the dead prune's lock: it is stale (pid gone).
        forget_ids(&env, forget);
        let killed = prune_killed_at(&env, &["--instant-delete"], kind, *ev, *nth);
        println!("killed at {kind} {ev:?} #{nth}: {killed}");
        if killed {
            killed_mid_prune += 1;
            assert!(
                !env.lock_files().is_empty(),
                "a killed prune leaves its lock behind"
            );
        }
        // No `unlock`: check and restore see the dead holder's lock as stale.
        env.check_read_data_ok();
        env.verify_all(&snaps);
        // And the next backup uses the repository: old and new data.
        let d = env.dir("after");
        std::fs::copy(all.join("f000"), d.join("f000")).unwrap();
        write_random(&d.join("new"), 9000 + snaps.len() as u64, 40 * KIB);
        snaps.push(env.backup(&d, &["--host", "h"]));
    }
    // The kill follows the event within microseconds, but a busy machine
    // may let a prune finish first now and then; most must be hits.
    assert!(
        killed_mid_prune * 3 >= rounds.len() * 2,
        "only {killed_mid_prune} of {} prunes were killed while running",
        rounds.len()
    );

    // A rerun completes the job and (tolerating no unused space) leaves a
    // clean repository.
    prune(&env, &["--max-unused", "0%"]);
    assert_clean_and_restorable(&env, &snaps);
    assert!(env.lock_files().is_empty(), "stale locks are cleaned up");
    let index = env.index_packs();
    let live: BTreeSet<String> = index.keys().cloned().collect();
    let on_disk: BTreeSet<String> = env
        .packs()
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert_eq!(live, on_disk, "index and data/ agree");
    let repo = Repository::open(&env.repo, PASSWORD.as_bytes()).unwrap();
    let files = repo.read_index_files().unwrap();
    for (_, f) in &files {
        for s in &f.supersedes {
            assert!(
                !files.iter().any(|(id, _)| id == s),
                "superseded index file {} left behind",
                s.short()
            );
        }
    }
    // subs 10 and 11 remain, and the backups made after each kill.
    assert_eq!(env.verify_all(&snaps), 2 + rounds.len());
}

// ---------------------------------------------------------------------------
// Concurrency and locks.

/// Starts `cairn ARGS` with stdout to `out` (a file), stderr to `out.err`.
fn spawn_logged(env: &Env, args: &[&str], out: &Path) -> Child {
    env.cmd()
        .args(args)
        .stdout(Stdio::from(std::fs::File::create(out).unwrap()))
        .stderr(Stdio::from(
            std::fs::File::create(out.with_extension("err")).unwrap(),
        ))
        .spawn()
        .unwrap()
}

fn log_of(out: &Path) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        std::fs::read_to_string(out).unwrap_or_default(),
        std::fs::read_to_string(out.with_extension("err")).unwrap_or_default()
    )
}

#[test]
fn concurrent_backups_and_prunes_lose_nothing() {
    let env = Env::new();
    let logs = env.dir("logs");
    let mut snaps: Vec<Snap> = Vec::new();
    let mut prev: Vec<Vec<PathBuf>> = Vec::new();
    for round in 0..16u64 {
        let t0 = Instant::now();
        // Each round's sources are new directories that never change again;
        // they share data with the previous round, so a prune that deleted
        // blobs a concurrent backup deduplicated against would show.
        let mut dirs = Vec::new();
        for b in 0..2u64 {
            let d = env.dir(&format!("r{round}b{b}"));
            write_random(&d.join("common"), 1, 100 * KIB);
            write_random(&d.join("new"), 10_000 + round * 10 + b, 150 * KIB);
            // Data of the two previous rounds: `forget --keep-last 2` drops
            // the older round's snapshots in this very round, so only the
            // lock keeps prune from deleting blobs this backup deduplicates.
            for (i, p) in prev.iter().enumerate() {
                std::fs::copy(p[b as usize].join("new"), d.join(format!("previous{i}"))).unwrap();
            }
            dirs.push(d);
        }
        prev.insert(0, dirs.clone());
        prev.truncate(2);
        let manifests: Vec<Manifest> = dirs.iter().map(|d| manifest(d)).collect();

        let mut children = Vec::new();
        for (b, d) in dirs.iter().enumerate() {
            let out = logs.join(format!("backup-{round}-{b}.json"));
            let c = spawn_logged(
                &env,
                &[
                    "--retry-lock",
                    "60s",
                    "--json",
                    "-q",
                    "backup",
                    d.to_str().unwrap(),
                    "--host",
                    "h",
                ],
                &out,
            );
            children.push((c, out));
        }
        let out = logs.join(format!("prune-{round}.txt"));
        let c = spawn_logged(
            &env,
            &[
                "--retry-lock",
                "60s",
                "forget",
                "--keep-last",
                "2",
                "--group-by",
                "host",
                "--prune",
            ],
            &out,
        );
        children.push((c, out));
        for (c, out) in children.iter_mut() {
            let st = wait_with_limit(c, Duration::from_secs(120), "backup/prune");
            assert!(st.success(), "round {round}: {st:?}\n{}", log_of(out));
        }
        for (b, d) in dirs.iter().enumerate() {
            let out = logs.join(format!("backup-{round}-{b}.json"));
            let text = std::fs::read_to_string(&out).unwrap();
            let v: Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
            snaps.push(Snap {
                id: v["snapshot_id"].as_str().unwrap().to_string(),
                source: d.clone(),
                manifest: manifests[b].clone(),
            });
        }
        println!("round {round}: backups and prune took {:?}", t0.elapsed());
        env.check_read_data_ok();
        assert!(env.verify_all(&snaps) >= 2, "round {round}");
        assert!(env.lock_files().is_empty(), "round {round}: locks left");
    }
    let c = env.check_read_data_ok();
    assert!(c["errors"].as_array().unwrap().is_empty());
    // The last prune may have run before the last backups; after one more
    // (nobody else writes now) the repository holds exactly what the
    // snapshots need.
    env.ok(&[
        "forget",
        "--keep-last",
        "2",
        "--group-by",
        "host",
        "--prune",
        "--instant-delete",
    ]);
    assert_clean_and_restorable(&env, &snaps);
}

fn write_lock(env: &Env, info: &cairn::format::lock::LockInfo) -> cairn::Id {
    let repo = Repository::open(&env.repo, PASSWORD.as_bytes()).unwrap();
    let bytes =
        cairn::format::envelope::seal(repo.key(), cairn::format::lock::MAGIC, info).unwrap();
    let id = cairn::Id::of_file(&bytes);
    repo.backend()
        .write(Handle::new(FileKind::Lock, id), &bytes)
        .unwrap();
    id
}

#[test]
fn locks_conflicts_and_stale_holders() {
    let env = Env::new();
    let src = env.dir("src");
    write_random(&src.join("f"), 3, 64 * KIB);
    let src_s = src.to_str().unwrap();
    env.backup(&src, &["--host", "h"]);

    // An exclusive lock held by a live process (this test) blocks the other
    // commands that delete: exit code 11 and a message naming the holder.
    // Backups and readers take no lock and go on.
    {
        let repo = Repository::open(&env.repo, PASSWORD.as_bytes()).unwrap();
        let lock = repo.lock_exclusive().unwrap();
        let r = env.run(&["prune"]);
        assert_eq!(r.code, Some(11), "{r}");
        assert!(r.stderr.contains("locked"), "{r}");
        assert!(r.stderr.contains("exclusive lock held by"), "{r}");
        assert!(
            r.stderr.contains(&format!("pid {}", std::process::id())),
            "{r}"
        );
        assert_eq!(r.stderr.trim().lines().count(), 1, "one line: {r}");
        assert_eq!(env.run(&["forget", "--keep-last", "1"]).code, Some(11));
        env.ok(&["backup", src_s]);
        env.ok(&["check"]);
        // `unlock` leaves a live holder's lock alone.
        env.ok(&["unlock"]);
        assert_eq!(env.lock_files().len(), 1);

        // With --retry-lock prune waits for the lock to go away.
        let mut waiting = env.spawn(&["--retry-lock", "60s", "prune"]);
        std::thread::sleep(Duration::from_millis(1500));
        assert!(
            waiting.try_wait().unwrap().is_none(),
            "prune did not wait for the lock"
        );
        drop(lock);
        let st = wait_with_limit(&mut waiting, Duration::from_secs(60), "waiting prune");
        assert!(st.success(), "{st:?}");
    }
    assert!(env.lock_files().is_empty());

    // A lock left by a killed prune is stale (its pid is gone): the next
    // prune ignores it and removes it.
    let stale = leave_stale_lock(&env);
    assert!(stale.exists());
    let r = env.run(&["prune"]);
    assert!(r.ok(), "prune blocked by a dead process's lock: {r}");
    assert!(env.lock_files().is_empty(), "stale lock not removed");

    // `cairn unlock` removes a stale lock explicitly.
    leave_stale_lock(&env);
    let r = env.ok(&["--json", "unlock"]);
    assert_eq!(r.json()["removed_locks"], 1, "{r}");
    assert!(env.lock_files().is_empty());

    // Another host's fresh lock cannot be judged by pid: it blocks...
    let now = chrono::Utc::now().timestamp();
    let foreign = cairn::format::lock::LockInfo {
        time: now,
        exclusive: true,
        hostname: "elsewhere.example".into(),
        username: "someone".into(),
        pid: 4242,
    };
    write_lock(&env, &foreign);
    let r = env.run(&["forget", "--keep-last", "5"]);
    assert_eq!(r.code, Some(11), "{r}");
    assert!(r.stderr.contains("someone@elsewhere.example"), "{r}");
    env.ok(&["unlock"]);
    assert_eq!(
        env.lock_files().len(),
        1,
        "unlock keeps a live foreign lock"
    );
    let r = env.ok(&["--json", "unlock", "--remove-all"]);
    assert_eq!(r.json()["removed_locks"], 1);
    // ...but once it is older than the stale limit it is ignored.
    write_lock(
        &env,
        &cairn::format::lock::LockInfo {
            time: now - 3600,
            ..foreign.clone()
        },
    );
    let r = env.run(&["prune"]);
    assert!(r.ok(), "an hour-old lock blocked prune: {r}");
    assert!(env.lock_files().is_empty());

    // A shared lock (what earlier versions took for backups and readers)
    // blocks nothing any more.
    write_lock(
        &env,
        &cairn::format::lock::LockInfo {
            exclusive: false,
            ..foreign.clone()
        },
    );
    env.ok(&["backup", src_s]);
    env.ok(&["prune"]);
    env.ok(&["unlock", "--remove-all"]);

    // A lock file nobody can read might be anyone's: it counts as exclusive
    // until `unlock --remove-all`.
    let garbage = random_bytes(77, 200);
    let id = cairn::Id::of_file(&garbage);
    std::fs::write(env.repo.join("locks").join(id.to_hex()), &garbage).unwrap();
    let r = env.run(&["prune"]);
    assert_eq!(r.code, Some(11), "{r}");
    assert!(r.stderr.contains("unreadable lock"), "{r}");
    env.ok(&["backup", src_s]);
    env.ok(&["unlock"]);
    assert_eq!(env.lock_files().len(), 1);
    env.ok(&["unlock", "--remove-all"]);
    assert!(env.lock_files().is_empty());
    env.ok(&["backup", src_s]);
    env.check_read_data_ok();
}

/// Starts `cairn prune`, SIGKILLs it as soon as its lock file exists, and
/// returns that lock file.
fn leave_stale_lock(env: &Env) -> PathBuf {
    for _ in 0..20 {
        let mut child = env.spawn(&["prune"]);
        let killed = kill_when(&mut child, || !env.lock_files().is_empty());
        let locks = env.lock_files();
        if killed && locks.len() == 1 {
            return locks[0].clone();
        }
        env.ok(&["unlock"]);
    }
    panic!("could not kill prune while it held its lock");
}

/// Small directories are stored inline in their parent's tree blob; the data
/// they list must count as referenced (prune keeps it, check finds it).
#[test]
fn data_listed_only_in_inline_directories_survives_prune() {
    let env = Env::new();
    let d = env.dir("nested");
    for i in 0..4u64 {
        write_random(&d.join(format!("a{i}/b/c/f")), 500 + i, 40 * KIB);
    }
    let kept = env.backup(&d, &["--host", "h"]);
    let path = format!("{}:{}/a0/b", kept.id, d.display());
    let t = env.ok(&["cat", "tree", &path]).json();
    assert_eq!(
        t["inline"], true,
        "a two-level directory of one file is inline: {t}"
    );
    let o = env.dir("other");
    write_random(&o.join("x"), 9, 100 * KIB);
    let gone = env.backup(&o, &["--host", "h2"]);
    forget_ids(&env, &[&gone]);
    let r = prune(&env, &[]);
    assert!(u(&r, "bytes_freed") >= 100 * KIB as u64, "{r}");
    assert_clean_and_restorable(&env, &[kept]);
}

/// `--max-repack-size` bounds what one prune repacks; the rest waits for
/// the next run, and nothing is lost either way.
#[test]
fn max_repack_size_bounds_one_run() {
    let env = Env::new();
    let src = env.dir("src");
    for i in 0..12 {
        write_random(&src.join(format!("f{i}")), 900 + i, 150 * KIB);
    }
    env.backup(&src, &[]);
    for i in 0..12 {
        if i % 3 == 0 {
            std::fs::remove_file(src.join(format!("f{i}"))).unwrap();
        }
    }
    let last = env.backup(&src, &[]);
    env.ok(&["forget", "--keep-last", "1"]);
    let bounded = env
        .ok(&["--json", "prune", "--max-repack-size", "1"])
        .json();
    assert_eq!(bounded["packs_repacked"], 0, "{bounded}");
    let full = env.ok(&["--json", "prune"]).json();
    assert!(full["packs_repacked"].as_u64().unwrap() > 0, "{full}");
    env.check_read_data_ok();
    env.verify_restore(&last);
    let bad = env.run(&["prune", "--max-repack-size", "lots"]);
    assert_eq!(bad.code, Some(1), "{bad}");
}

/// The default prune only marks: nothing is deleted until the grace period
/// has passed, readers still read marked packs, and a backup that starts
/// after the mark does not deduplicate against them (it stores the data
/// again), so deleting them later cannot hurt it.
#[test]
fn default_prune_marks_and_a_later_prune_deletes_after_the_grace_period() {
    let env = Env::new();
    let keep = env.dir("keep");
    write_random(&keep.join("k"), 1, 300 * KIB);
    let kept = env.backup(&keep, &["--host", "h"]);
    let gone_dir = env.dir("gone");
    write_random(&gone_dir.join("g"), 2, 400 * KIB);
    let gone = env.backup(&gone_dir, &["--host", "h2"]);
    forget_ids(&env, &[&gone]);
    let before = env.packs();

    let r = env.ok(&["--json", "prune"]).json();
    assert!(u(&r, "packs_marked") >= 1, "{r}");
    assert_eq!(u(&r, "packs_due_deleted"), 0, "{r}");
    assert!(r["next_deletion"].is_string(), "{r}");
    assert_eq!(env.packs(), before, "a default prune deletes no pack");
    let text = env.ok(&["prune", "--dry-run"]).stdout;
    assert!(text.contains("wait for deletion"), "{text}");
    let c = env.check_read_data_ok();
    assert!(
        c["info"].to_string().contains("marked for deletion"),
        "check says what waits: {c}"
    );
    env.verify_all(std::slice::from_ref(&kept));

    // A backup of the forgotten data now stores it again: the marked
    // packs are not there for it.
    let again = env.ok(&[
        "--json",
        "-q",
        "backup",
        gone_dir.to_str().unwrap(),
        "--host",
        "h3",
    ]);
    let added = again.json()["data_added"].as_u64().unwrap();
    assert!(
        added >= 400 * KIB as u64,
        "deduplicated against a marked pack: {again}"
    );
    let again = Snap {
        id: again.json()["snapshot_id"].as_str().unwrap().to_string(),
        source: gone_dir.clone(),
        manifest: manifest(&gone_dir),
    };

    // Within the grace period a second prune still deletes nothing.
    let r = prune_default(&env, &[]);
    assert_eq!(u(&r, "packs_due_deleted"), 0, "{r}");
    assert!(u(&r, "packs_waiting") >= 1, "{r}");
    // Once it has passed, the marked packs go.
    let r = prune_default(&env, &["--delete-grace", "0s"]);
    assert!(u(&r, "packs_due_deleted") >= 1, "{r}");
    let now = env.packs();
    assert!(
        before.iter().any(|p| !now.contains(p)),
        "no marked pack was deleted: {r}"
    );
    env.check_read_data_ok();
    env.verify_all(&[kept, again]);
}

/// `prune --json ARGS` without `--instant-delete`.
fn prune_default(env: &Env, args: &[&str]) -> Value {
    let mut a = vec!["--json", "prune"];
    a.extend_from_slice(args);
    let v = env.ok(&a).json();
    assert_eq!(v["message_type"], "prune", "{v}");
    v
}

/// A backup that loaded the index before prune marked a pack may reuse its
/// blobs; its snapshot, written after the mark, brings the pack back to
/// life instead of letting the next prune delete it. The backup here reads
/// standard input, so the test decides when it finishes: no timing.
#[test]
fn a_backup_running_across_a_prune_keeps_the_marked_packs_it_uses() {
    use std::io::Write;
    let env = Env::new();
    let src = env.dir("src");
    let data = random_bytes(5, 3 << 20);
    std::fs::write(src.join("big"), &data).unwrap();
    let first = env.backup(&src, &["--host", "h"]);

    // The backup starts, loads the index (which lists the packs of `big`)
    // and reads the first half of the same bytes from its standard input.
    let out = env.dir("out");
    let mut child = env
        .cmd()
        .args([
            "--json",
            "-q",
            "backup",
            "--stdin",
            "--stdin-filename",
            "big",
            "--host",
            "h2",
        ])
        .stdin(Stdio::piped())
        .stdout(std::fs::File::create(out.join("backup.json")).unwrap())
        .stderr(std::fs::File::create(out.join("backup.err")).unwrap())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    // More than a pipe holds: when this returns, the backup is reading.
    stdin.write_all(&data[..data.len() / 2]).unwrap();

    // Meanwhile the only snapshot that used those packs is forgotten and
    // prune marks them.
    forget_ids(&env, &[&first]);
    let r = prune_default(&env, &[]);
    assert!(u(&r, "packs_marked") >= 1, "{r}");

    // The backup finishes after the mark: its snapshot uses the marked
    // packs' blobs (it deduplicated against the index it loaded).
    stdin.write_all(&data[data.len() / 2..]).unwrap();
    drop(stdin);
    let st = wait_with_limit(&mut child, Duration::from_secs(120), "stdin backup");
    assert!(
        st.success(),
        "{}",
        std::fs::read_to_string(out.join("backup.err")).unwrap()
    );
    let v: Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("backup.json")).unwrap()).unwrap();
    assert!(
        v["data_added"].as_u64().unwrap() < (data.len() / 4) as u64,
        "the backup deduplicated against the packs it loaded: {v}"
    );
    let id = v["snapshot_id"].as_str().unwrap().to_string();
    env.check_read_data_ok();

    // A prune after the grace period revives them instead of deleting.
    let r = prune_default(&env, &["--delete-grace", "0s"]);
    assert!(u(&r, "packs_revived") >= 1, "{r}");
    let r = prune_default(&env, &["--delete-grace", "0s"]);
    assert_eq!(u(&r, "packs_revived"), 0, "{r}");
    env.check_read_data_ok();
    let restored = env.dir("restored");
    env.ok(&["restore", &id, "--target", restored.to_str().unwrap()]);
    assert!(
        std::fs::read(restored.join("big")).unwrap() == data,
        "restored bytes differ"
    );
}

/// Kill -9 at every step of a prune (marking and deleting what earlier
/// runs marked) while a backup runs alongside: afterwards `check
/// --read-data` passes and every snapshot restores bit for bit.
#[test]
fn lock_free_prune_killed_at_every_step_while_backups_run() {
    let env = Env::new();
    let mut snaps: Vec<Snap> = Vec::new();
    let mut dirs: Vec<PathBuf> = Vec::new();
    for i in 0..10u64 {
        let d = env.dir(&format!("s{i}"));
        for j in 0..6u64 {
            write_random(&d.join(format!("f{j}")), 100 * i + j, 60 * KIB);
        }
        // Shared with the next directory, so forgetting one leaves blobs
        // that others still use.
        if i > 0 {
            std::fs::copy(dirs[i as usize - 1_usize].join("f0"), d.join("prev")).unwrap();
        }
        snaps.push(env.backup(&d, &["--host", "h"]));
        dirs.push(d);
    }
    let points: Vec<(&str, Ev, usize)> = vec![
        ("locks", Ev::Added, 1),
        ("data", Ev::Added, 1),
        ("index", Ev::Added, 1),
        ("index", Ev::Added, 2),
        ("index", Ev::Added, 3),
        ("index", Ev::Deleted, 1),
        ("data", Ev::Deleted, 1),
        ("data", Ev::Deleted, 2),
    ];
    let mut forgotten = 0;
    for (round, (kind, ev, nth)) in points.iter().enumerate() {
        // Forget one more old snapshot.
        forget_ids(&env, &[&snaps[forgotten]]);
        forgotten += 1;
        // A backup runs alongside: it reuses data of kept and of just
        // forgotten snapshots.
        let d = env.dir(&format!("alongside{round}"));
        std::fs::copy(dirs[forgotten - 1].join("f1"), d.join("old")).unwrap();
        std::fs::copy(dirs[9].join("f2"), d.join("kept")).unwrap();
        write_random(&d.join("new"), 5000 + round as u64, 200 * KIB);
        let manifest_d = manifest(&d);
        let out = env.dir(&format!("log{round}"));
        let mut backup = env
            .cmd()
            .args(["--json", "-q", "backup", d.to_str().unwrap(), "--host", "b"])
            .stdout(std::fs::File::create(out.join("o.json")).unwrap())
            .stderr(std::fs::File::create(out.join("e.txt")).unwrap())
            .spawn()
            .unwrap();
        let killed = prune_killed_at(&env, &["--delete-grace", "0s"], kind, *ev, *nth);
        println!("round {round}: killed at {kind} {ev:?} #{nth}: {killed}");
        let st = wait_with_limit(&mut backup, Duration::from_secs(120), "backup");
        assert!(
            st.success(),
            "{}",
            std::fs::read_to_string(out.join("e.txt")).unwrap()
        );
        let v: Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("o.json")).unwrap()).unwrap();
        snaps.push(Snap {
            id: v["snapshot_id"].as_str().unwrap().to_string(),
            source: d,
            manifest: manifest_d,
        });
        env.check_read_data_ok();
        env.verify_all(&snaps[forgotten..]);
    }
    // Two more runs finish every job; then nothing unused is left.
    let args = ["--delete-grace", "0s", "--max-unused", "0%"];
    prune_default(&env, &args);
    prune_default(&env, &args);
    assert_clean_and_restorable(&env, &snaps[forgotten..]);
}
