//! `backup --sqlite`: consistent copies of live databases under write load
//! (WAL and rollback-journal modes, a writer in another process), verified
//! restores, and clear failures for corrupt, tampered and missing databases.

mod support;

use rusqlite::Connection;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::*;

/// A writer process: each transaction appends the next sequence number,
/// rewrites a random filler row and bumps a totals row, until `stop` exists.
const WRITER: &str = r#"
import os, random, sqlite3, sys, time
db, stop = sys.argv[1], sys.argv[2]
c = sqlite3.connect(db, timeout=60, isolation_level=None)
n = c.execute("SELECT coalesce(max(n), 0) FROM seq").fetchone()[0]
fillers = c.execute("SELECT count(*) FROM filler").fetchone()[0]
rnd = random.Random(7)
deadline = time.time() + 90
print("started", flush=True)
while not os.path.exists(stop) and time.time() < deadline:
    c.execute("BEGIN IMMEDIATE")
    n += 1
    c.execute("INSERT INTO seq(n, pad) VALUES (?, ?)", (n, "x" * rnd.randint(50, 600)))
    c.execute("UPDATE filler SET v = ?, pad = ? WHERE id = ?",
              (n, "y" * rnd.randint(100, 300), rnd.randint(1, fillers)))
    c.execute("UPDATE totals SET count = count + 1, last = ? WHERE id = 1", (n,))
    c.execute("COMMIT")
print(n, flush=True)
"#;

fn create_db(path: &Path, journal_mode: &str, filler_rows: usize) {
    let c = Connection::open(path).unwrap();
    let mode: String = c
        .query_row(&format!("PRAGMA journal_mode = {journal_mode}"), [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(mode, journal_mode);
    c.execute_batch(
        "CREATE TABLE seq(n INTEGER PRIMARY KEY, pad TEXT);
         CREATE TABLE filler(id INTEGER PRIMARY KEY, v INTEGER, pad TEXT);
         CREATE INDEX filler_v ON filler(v);
         CREATE TABLE totals(id INTEGER PRIMARY KEY, count INTEGER, last INTEGER);
         INSERT INTO totals VALUES (1, 0, 0);
         BEGIN;",
    )
    .unwrap();
    let mut rng = Rng::new(3);
    for i in 1..=filler_rows {
        let pad: String = (0..200 + rng.below(200))
            .map(|_| (b'a' + rng.below(26) as u8) as char)
            .collect();
        c.execute(
            "INSERT INTO filler VALUES (?1, ?2, ?3)",
            rusqlite::params![i as i64, rng.below(1000) as i64, pad],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

struct Writer {
    child: Child,
    stop: PathBuf,
}

impl Writer {
    fn start(db: &Path, stop: PathBuf) -> Writer {
        let mut child = Command::new("python3")
            .arg("-c")
            .arg(WRITER)
            .arg(db)
            .arg(&stop)
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 is needed for the writer process");
        // Wait until it runs.
        use std::io::{BufRead, BufReader};
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        let mut reader = BufReader::new(out);
        reader.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "started");
        child.stdout = Some(reader.into_inner());
        Writer { child, stop }
    }

    /// Stops the writer; returns the last sequence number it committed.
    fn finish(mut self) -> u64 {
        std::fs::write(&self.stop, b"").unwrap();
        let mut out = String::new();
        use std::io::Read;
        self.child
            .stdout
            .take()
            .unwrap()
            .read_to_string(&mut out)
            .unwrap();
        assert!(self.child.wait().unwrap().success());
        out.trim().parse().expect("writer's last number")
    }
}

/// Integrity check passes and the writer's rows are exactly 1..=k with the
/// totals row saying k (a state that existed): returns k.
fn assert_consistent(db: &Path) -> u64 {
    let c = Connection::open(db).unwrap();
    let check: String = c
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok", "{}", db.display());
    let mut stmt = c.prepare("SELECT n FROM seq ORDER BY n").unwrap();
    let ns: Vec<u64> = stmt
        .query_map([], |r| r.get::<_, i64>(0))
        .unwrap()
        .map(|r| r.unwrap() as u64)
        .collect();
    for (i, n) in ns.iter().enumerate() {
        assert_eq!(*n, i as u64 + 1, "gap in the sequence of {}", db.display());
    }
    let (count, last): (i64, i64) = c
        .query_row("SELECT count, last FROM totals WHERE id = 1", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert_eq!(
        (count as u64, last as u64),
        (ns.len() as u64, ns.len() as u64),
        "totals row disagrees with the rows: a torn copy"
    );
    ns.len() as u64
}

fn backup_json(repo: &Repo, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["--json", "backup"];
    a.extend_from_slice(args);
    let r = repo.run(&a).ok();
    last_json(&r.stdout)
}

fn live_backups(journal_mode: &str) {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("live.db");
    create_db(&db, journal_mode, 12_000);
    let writer = Writer::start(&db, ws.path("stop"));
    let mut snaps = Vec::new();
    let start = Instant::now();
    for _ in 0..3 {
        std::thread::sleep(Duration::from_millis(300));
        let v = backup_json(&repo, &["--sqlite", db.to_str().unwrap()]);
        assert_eq!(v["databases"][0]["check_ok"], true, "{v}");
        assert_eq!(v["databases"][0]["journal_mode"], journal_mode, "{v}");
        snaps.push(v["snapshot_id"].as_str().unwrap().to_string());
    }
    let backups_took = start.elapsed();
    eprintln!("{journal_mode}: 3 backups under write load took {backups_took:?}");
    let last = writer.finish();
    let mut seen = Vec::new();
    for (i, id) in snaps.iter().enumerate() {
        let target = ws.path(&format!("r{i}"));
        let r = repo.restore(id, &target, &["--verify"]).ok();
        assert!(r.out().contains("verified"), "{}", r.out());
        let restored = restored(&target, &db);
        // Restored as one self-contained file: no journal or WAL beside it.
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut p = restored.clone().into_os_string();
            p.push(suffix);
            assert!(!Path::new(&p).exists(), "{p:?} restored");
        }
        let k = assert_consistent(&restored);
        // The record matches what was restored.
        let snap = &repo.snapshots()[i];
        let rec = &snap["databases"][0];
        let seq_rows = rec["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "seq")
            .unwrap()["rows"]
            .as_u64()
            .unwrap();
        assert_eq!(seq_rows, k);
        seen.push(k);
    }
    assert!(
        seen.windows(2).all(|w| w[0] <= w[1]) && seen[2] <= last,
        "{seen:?} last {last}"
    );
    assert!(
        seen[2] > seen[0],
        "the writer made no progress during the backups ({seen:?}, {backups_took:?}): writers were held off"
    );
}

#[test]
fn live_writer_wal_mode() {
    live_backups("wal");
}

#[test]
fn live_writer_rollback_journal_mode() {
    live_backups("delete");
}

/// A database inside a backed-up directory is stored once, as the
/// consistent copy (WAL content folded in), and its WAL is not stored.
#[test]
fn database_inside_a_directory_folds_in_the_wal() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let dir = ws.path("app");
    std::fs::create_dir(&dir).unwrap();
    write(&dir.join("config.toml"), b"x = 1\n");
    let db = dir.join("state.db");
    create_db(&db, "wal", 500);
    // Commits that stay in the WAL while this connection is open.
    let c = Connection::open(&db).unwrap();
    c.execute_batch("PRAGMA wal_autocheckpoint = 0;").unwrap();
    for n in 1..=50 {
        c.execute_batch(&format!(
            "BEGIN; INSERT INTO seq VALUES ({n}, 'p'); UPDATE totals SET count = count + 1, last = {n}; COMMIT;"
        ))
        .unwrap();
    }
    let mut wal = db.clone().into_os_string();
    wal.push("-wal");
    assert!(std::fs::metadata(&wal).unwrap().len() > 0);
    let id = repo.backup(&[&dir], &["--sqlite", db.to_str().unwrap()]);
    drop(c);
    let ls = repo.run(&["ls", &id]).ok().out();
    assert!(ls.contains("state.db  [sqlite:"), "{ls}");
    assert!(!ls.contains("state.db-wal"), "{ls}");
    assert!(ls.contains("config.toml"), "{ls}");
    let target = ws.path("r");
    repo.restore(&id, &target, &[]).ok();
    assert_eq!(assert_consistent(&restored(&target, &db)), 50);
    assert_eq!(
        std::fs::read(restored(&target, &dir.join("config.toml"))).unwrap(),
        b"x = 1\n"
    );
}

/// Overwrites page `page` (1-based) of a database with garbage.
fn corrupt_page(db: &Path, page: u64) {
    use std::os::unix::fs::FileExt;
    let c = Connection::open(db).unwrap();
    let size: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
    let size = size as u64;
    drop(c);
    let f = std::fs::OpenOptions::new().write(true).open(db).unwrap();
    f.write_all_at(&vec![0xA5; size as usize], (page - 1) * size)
        .unwrap();
}

#[test]
fn corrupt_database_is_not_saved_silently() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("bad.db");
    create_db(&db, "delete", 2000);
    corrupt_page(&db, 20);
    for quick in [false, true] {
        let mut args = vec!["backup", "--sqlite", db.to_str().unwrap()];
        if quick {
            args.push("--sqlite-quick");
        }
        let r = repo.run(&args);
        let line = r.fails(Some(1));
        let check = if quick {
            "quick_check"
        } else {
            "integrity_check"
        };
        assert!(
            line.contains(check) && line.contains("bad.db") && line.contains("no snapshot"),
            "{line}"
        );
    }
    assert!(repo.snapshots().is_empty());
    // Saved anyway when asked, marked failed, exit 3.
    let r = repo.run(&[
        "--json",
        "backup",
        "--sqlite",
        db.to_str().unwrap(),
        "--sqlite-allow-corrupt",
    ]);
    assert_eq!(r.code, Some(3), "{}", r.stderr);
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(snaps[0]["databases"][0]["check_ok"], false);
    assert!(
        !snaps[0]["databases"][0]["check_messages"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Its restore reports it as not verified.
    let r = repo.restore("latest", &ws.path("r"), &[]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("NOT verified"), "{}", r.stderr);
}

#[test]
fn missing_and_non_database_files_fail_clearly() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let missing = ws.path("nope.db");
    let line = repo
        .run(&["backup", "--sqlite", missing.to_str().unwrap()])
        .fails(Some(1));
    assert!(
        line.contains("nope.db") && line.contains("No such file"),
        "{line}"
    );
    let not_db = ws.path("text.db");
    write(&not_db, &[b'x'; 10_000]);
    let line = repo
        .run(&["backup", "--sqlite", not_db.to_str().unwrap()])
        .fails(Some(1));
    assert!(
        line.contains("text.db") && line.contains("not a database"),
        "{line}"
    );
    assert!(repo.snapshots().is_empty());
}

/// A record that does not match the restored database (here: a snapshot
/// written with a wrong row count), and a restored file damaged after the
/// restore, are both reported as not verified.
#[test]
fn restore_reports_record_mismatch_and_tampering() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    create_db(&db, "wal", 3000);
    let id = repo.backup(&[], &["--sqlite", db.to_str().unwrap()]);

    // A snapshot whose record disagrees with the data.
    let r = cairn::Repository::open(&repo.path, PASSWORD.as_bytes()).unwrap();
    let (_, mut snap) = r
        .find_snapshot(&id, &cairn::repository::SnapshotFilter::default())
        .unwrap();
    let t = snap.databases[0]
        .tables
        .iter_mut()
        .find(|t| t.name == "filler")
        .unwrap();
    t.rows += 1;
    snap.time += 1;
    let bad = r.save_snapshot(&snap).unwrap();
    let target = ws.path("r1");
    let out = repo.restore(&bad.to_hex(), &target, &[]);
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    assert!(
        out.stderr.contains("NOT verified")
            && out
                .stderr
                .contains("table filler: 3000 rows, recorded 3001"),
        "{}",
        out.stderr
    );
    // The good snapshot verifies.
    let target = ws.path("r2");
    let ok = repo.restore(&id, &target, &["--verify"]).ok();
    assert!(ok.out().contains("app.db: verified"), "{}", ok.out());
    // Damage the restored file: verification against the record fails.
    let restored_db = restored(&target, &db);
    let (_, good) = r
        .find_snapshot(&id, &cairn::repository::SnapshotFilter::default())
        .unwrap();
    assert!(cairn::sources::sqlite::verify_restored(&restored_db, &good.databases[0]).is_empty());
    corrupt_page(&restored_db, 10);
    let problems = cairn::sources::sqlite::verify_restored(&restored_db, &good.databases[0]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("integrity_check failed")),
        "{problems:?}"
    );
}

/// Few changed pages cost little: page-aligned chunks, and the chunk list
/// kept in content-list blobs that dedup; prune keeps those blobs.
#[test]
fn small_changes_cost_little_and_prune_keeps_content_lists() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("big.db");
    create_db(&db, "delete", 15_000);
    let first = backup_json(&repo, &["--sqlite", db.to_str().unwrap()]);
    let c = Connection::open(&db).unwrap();
    for id in [17, 4_000, 9_999, 14_321] {
        c.execute(
            "UPDATE filler SET pad = 'changed' WHERE id = ?1",
            rusqlite::params![id],
        )
        .unwrap();
    }
    drop(c);
    let second = backup_json(&repo, &["--sqlite", db.to_str().unwrap()]);
    let a = first["data_added_stored"].as_u64().unwrap();
    let b = second["data_added_stored"].as_u64().unwrap();
    assert!(b * 20 < a, "second backup added {b} bytes, first {a}");
    let id2 = second["snapshot_id"].as_str().unwrap();
    // The file lists its chunks through content-list blobs.
    let ls = repo.run(&["--json", "ls", id2]).ok();
    let v = last_json(&ls.stdout);
    let node = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "big.db")
        .unwrap()
        .clone();
    assert!(node["content_depth"].as_u64().unwrap() >= 1, "{node}");
    assert_eq!(node["database"]["check_ok"], true);

    repo.run(&["forget", first["snapshot_id"].as_str().unwrap(), "--prune"])
        .ok();
    repo.run(&["check", "--read-data"]).ok();
    let target = ws.path("r");
    repo.restore(id2, &target, &["--verify"]).ok();
    let mut dumped = repo.cmd(&["dump", id2, db.to_str().unwrap()]);
    let out = dumped.output().unwrap();
    assert!(out.status.success());
    assert_eq!(out.stdout, std::fs::read(restored(&target, &db)).unwrap());
    let c = Connection::open(restored(&target, &db)).unwrap();
    let pad: String = c
        .query_row("SELECT pad FROM filler WHERE id = 9999", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pad, "changed");
}

/// The node of `name` in `ls --json` of a snapshot.
fn ls_node(repo: &Repo, snapshot: &str, name: &str) -> serde_json::Value {
    let ls = repo.run(&["--json", "ls", snapshot]).ok();
    let v = last_json(&ls.stdout);
    v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {v}"))
        .clone()
}

/// Every filler row, by id.
fn filler_rows(db: &Path) -> Vec<(i64, String)> {
    let c = Connection::open(db).unwrap();
    let mut q = c.prepare("SELECT id, pad FROM filler ORDER BY id").unwrap();
    q.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

/// Updates `n` filler rows spread over the table.
fn update_spread(db: &Path, n: usize, tag: &str) {
    let c = Connection::open(db).unwrap();
    let total: i64 = c
        .query_row("SELECT count(*) FROM filler", [], |r| r.get(0))
        .unwrap();
    let step = (total as usize / n).max(1);
    c.execute_batch("BEGIN").unwrap();
    for i in 0..n {
        c.execute(
            "UPDATE filler SET pad = ?1 || substr(pad, 12) WHERE id = ?2",
            rusqlite::params![format!("{tag}{i:06}"), (1 + i * step) as i64],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
}

/// Changed pages are stored as deltas against the first version (the base);
/// a version that no longer resembles its base starts a new one; prune
/// keeps every base that a kept snapshot needs, even when the snapshot that
/// stored it is forgotten; and each version restores exactly.
#[test]
fn changed_pages_are_deltas_against_a_base_that_prune_keeps() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    create_db(&db, "wal", 6_000);
    let dbs = db.to_str().unwrap();
    let mut snaps = Vec::new();
    let mut copies = Vec::new();
    let mut added = Vec::new();
    let mut backup = |label: &str| {
        let v = backup_json(&repo, &["--sqlite", dbs]);
        let id = v["snapshot_id"].as_str().unwrap().to_string();
        added.push(v["data_added_stored"].as_u64().unwrap());
        // What the database held at this moment, by SQL dump.
        copies.push((label.to_string(), filler_rows(&db)));
        snaps.push(id);
    };
    backup("first");
    update_spread(&db, 60, "hour-one-");
    backup("delta 1");
    update_spread(&db, 60, "hour-two-");
    backup("delta 2");
    // Rewrite every row: nearly every page differs from the base.
    let c = Connection::open(&db).unwrap();
    c.execute_batch("UPDATE filler SET v = v + 1, pad = upper(pad)")
        .unwrap();
    drop(c);
    backup("rewritten");
    backup("rewritten, unchanged");
    update_spread(&db, 30, "after-");
    backup("new base's delta");

    let node = |i: usize| ls_node(&repo, &snaps[i], "app.db");
    assert!(node(0)["delta_base"].is_null(), "{}", node(0));
    assert!(!node(1)["delta_base"].is_null(), "{}", node(1));
    // Both deltas use the first version as base (no chains).
    let base = |i: usize| {
        let tree = repo
            .run(&[
                "cat",
                "tree",
                &format!("{}:{}", snaps[i], ws.path("").display()),
            ])
            .ok();
        let v: serde_json::Value = serde_json::from_slice(&tree.stdout).unwrap();
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "app.db")
            .unwrap()["delta_base"]
            .clone()
    };
    assert_eq!(base(1), base(2));
    // A small change costs a small fraction of the first backup.
    assert!(added[1] * 30 < added[0], "{added:?}");
    assert!(added[2] * 30 < added[0], "{added:?}");
    // Nearly all pages of the rewritten version differ from the first: the
    // backup after it stores ordinary blobs (a new base), and the next one
    // is a delta against that.
    assert!(node(4)["delta_base"].is_null(), "{}", node(4));
    assert!(!node(5)["delta_base"].is_null(), "{}", node(5));
    assert_ne!(base(5), base(1));

    // Forget the snapshots that stored the bases; prune must keep them.
    repo.run(&["forget", &snaps[0], &snaps[3], &snaps[4], "--prune"])
        .ok();
    repo.run(&["check", "--read-data"]).ok();
    for i in [1, 2, 5] {
        let target = ws.path(&format!("r{i}"));
        repo.restore(&snaps[i], &target, &["--verify"]).ok();
        let rows = filler_rows(&restored(&target, &db));
        assert!(rows == copies[i].1, "{} restored other rows", copies[i].0);
    }
}

/// A delta version whose base blobs are lost is reported damaged by check
/// and fails to restore with a clear error (never silently wrong bytes).
#[test]
fn lost_base_is_reported_as_damage_to_the_delta_version() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    create_db(&db, "delete", 3_000);
    let dbs = db.to_str().unwrap();
    backup_json(&repo, &["--sqlite", dbs]);
    let first_packs = repo.files_in("data");
    update_spread(&db, 20, "changed-");
    let second = backup_json(&repo, &["--sqlite", dbs]);
    let id2 = second["snapshot_id"].as_str().unwrap();
    assert!(!ls_node(&repo, id2, "app.db")["delta_base"].is_null());
    // Lose the first backup's packs (they hold the base pages).
    for p in &first_packs {
        std::fs::remove_file(p).unwrap();
    }
    let check = repo.run(&["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    let all = format!("{}{}", check.out(), check.stderr);
    assert!(all.contains("app.db"), "{all}");
    assert!(!all.contains("panicked"), "{all}");
    let target = ws.path("r");
    let r = repo.restore(id2, &target, &[]);
    assert!(matches!(r.code, Some(c) if c != 0), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert!(r.stderr.contains("app.db"), "{}", r.stderr);
}

/// A database file met in an ordinary directory backup (no `--sqlite`) is
/// cut at page boundaries too: a few changed rows cost a few pages, not
/// the megabyte-sized content-defined chunks around them.
#[test]
fn database_files_in_ordinary_backups_are_cut_at_pages() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let dir = ws.path("app");
    std::fs::create_dir(&dir).unwrap();
    let db = dir.join("state.db");
    create_db(&db, "delete", 8_000);
    assert!(std::fs::metadata(&db).unwrap().len() > 2 << 20);
    let dirs = dir.to_str().unwrap();
    let first = backup_json(&repo, &[dirs]);
    update_spread(&db, 12, "plain-");
    let second = backup_json(&repo, &[dirs]);
    let a = first["data_added_stored"].as_u64().unwrap();
    let b = second["data_added_stored"].as_u64().unwrap();
    assert!(b * 20 < a, "second backup added {b} bytes, first {a}");
    let node = ls_node(&repo, second["snapshot_id"].as_str().unwrap(), "state.db");
    assert!(node["content_blobs"].as_u64().unwrap() >= 1, "{node}");
    let target = ws.path("r");
    repo.restore(
        second["snapshot_id"].as_str().unwrap(),
        &target,
        &["--verify"],
    )
    .ok();
    assert_eq!(
        std::fs::read(restored(&target, &db)).unwrap(),
        std::fs::read(&db).unwrap()
    );
}

/// `kill -9` at several moments of delta backups: the repository stays one
/// that `check` accepts, the next backup succeeds, and after forgetting
/// everything but the last snapshot, prune keeps what it needs.
#[test]
fn kill_during_delta_backups_never_damages_the_repository() {
    use std::time::Duration;
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &["--pack-size", "1"]);
    let db = ws.path("app.db");
    create_db(&db, "wal", 12_000);
    let dbs = db.to_str().unwrap();
    let start = Instant::now();
    backup_json(&repo, &["--sqlite", dbs]);
    let full = start.elapsed();
    let check = |ctx: &str| {
        let r = repo.run(&["check"]);
        assert!(!r.stderr.contains("panicked"), "{ctx}: {}", r.stderr);
        assert_eq!(r.code, Some(0), "{ctx}: {}{}", r.out(), r.stderr);
    };
    for (round, frac) in [0.05, 0.2, 0.4, 0.7].iter().enumerate() {
        update_spread(&db, 400, &format!("round-{round}-"));
        let mut child = repo
            .cmd(&["--json", "backup", "--sqlite", dbs])
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(*frac).max(Duration::from_millis(5)));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{stderr}");
        let ctx = format!("round {round}, killed after {frac} of a full backup");
        check(&ctx);
        // The next backup reuses whatever the killed one made durable.
        let v = backup_json(&repo, &["--sqlite", dbs]);
        let id = v["snapshot_id"].as_str().unwrap();
        let target = ws.path(&format!("r{round}"));
        repo.restore(id, &target, &["--verify"]).ok();
        assert_eq!(
            filler_rows(&restored(&target, &db)),
            filler_rows(&db),
            "{ctx}"
        );
    }
    repo.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    let target = ws.path("final");
    repo.restore("latest", &target, &["--verify"]).ok();
    assert_eq!(filler_rows(&restored(&target, &db)), filler_rows(&db));
}

/// Prune may keep a pack that still holds an unused delta blob while it
/// deletes that delta's base (the pack is mostly used by later snapshots):
/// `check --read-data` must not call that damage.
#[test]
fn unused_delta_whose_base_was_pruned_is_not_damage() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    create_db(&db, "delete", 6_000);
    let dbs = db.to_str().unwrap();
    let s1 = backup_json(&repo, &["--sqlite", dbs]);
    // Appended pages (kept by later versions) and a few deltas, in one pack.
    let c = Connection::open(&db).unwrap();
    c.execute_batch("BEGIN").unwrap();
    for n in 1..=40_000 {
        c.execute(
            "INSERT INTO seq(n, pad) VALUES (?1, ?2)",
            rusqlite::params![n, "s".repeat(40)],
        )
        .unwrap();
    }
    c.execute_batch("COMMIT").unwrap();
    drop(c);
    update_spread(&db, 10, "delta-");
    let s2 = backup_json(&repo, &["--sqlite", dbs]);
    assert!(!ls_node(&repo, s2["snapshot_id"].as_str().unwrap(), "app.db")["delta_base"].is_null());
    // Rewrite the filler table: its pages (most of the base) change.
    let c = Connection::open(&db).unwrap();
    c.execute_batch("UPDATE filler SET pad = upper(pad)")
        .unwrap();
    drop(c);
    let s3 = backup_json(&repo, &["--sqlite", dbs]);
    let s4 = backup_json(&repo, &["--sqlite", dbs]);
    let id4 = s4["snapshot_id"].as_str().unwrap();
    assert!(ls_node(&repo, id4, "app.db")["delta_base"].is_null());
    let old: Vec<&str> = [&s1, &s2, &s3]
        .iter()
        .map(|s| s["snapshot_id"].as_str().unwrap())
        .collect();
    let mut args = vec!["forget"];
    args.extend(old);
    args.push("--prune");
    repo.run(&args).ok();
    let check = repo.run(&["check", "--read-data"]);
    assert_eq!(check.code, Some(0), "{}{}", check.out(), check.stderr);
    // The scenario happened: unused blobs (the deltas) stayed in a kept pack.
    assert!(check.out().contains("not referenced"), "{}", check.out());
    let target = ws.path("r");
    repo.restore(id4, &target, &["--verify"]).ok();
    assert_eq!(filler_rows(&restored(&target, &db)), filler_rows(&db));
}

/// Rewrites snapshot `id`'s tree so that the node at `path` loses its delta
/// base (as a buggy writer might); returns the new snapshot's id.
fn strip_delta_base(repo: &Repo, id: &str, path: &Path) -> String {
    use cairn::Repository;
    use cairn::format::blob::BlobType;
    use cairn::format::id::Id;
    use cairn::repository::FullIndex;
    fn strip(
        repo: &Repository<FullIndex>,
        packer: &cairn::repository::packer::Packer,
        tree: &Id,
        comps: &[Vec<u8>],
    ) -> Id {
        let mut t = repo.load_tree(tree).unwrap();
        let i = t.nodes.iter().position(|n| n.name == comps[0]).unwrap();
        if comps.len() == 1 {
            assert!(t.nodes[i].delta_base.take().is_some());
        } else {
            let sub = t.nodes[i]
                .subtree
                .expect("directories leading to sources are blobs");
            t.nodes[i].subtree = Some(strip(repo, packer, &sub, &comps[1..]));
        }
        packer.save(BlobType::Tree, &t.encode().unwrap()).unwrap().0
    }
    let r = Repository::open(&repo.path, PASSWORD.as_bytes())
        .unwrap()
        .with_full_index()
        .unwrap();
    let (_, mut snap) = r
        .find_snapshot(id, &cairn::repository::SnapshotFilter::default())
        .unwrap();
    let comps = cairn::repository::browse::components(path).unwrap();
    let packer = cairn::repository::packer::Packer::new(&r);
    snap.tree = strip(&r, &packer, &snap.tree, &comps);
    packer.finish().unwrap();
    r.save_snapshot(&snap).unwrap().to_hex()
}

/// A file that lists delta blobs without naming their base (a writer bug)
/// is reported by `check --read-data`: prune would not keep the base.
#[test]
fn delta_without_a_recorded_base_is_reported() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    create_db(&db, "delete", 3_000);
    let dbs = db.to_str().unwrap();
    backup_json(&repo, &["--sqlite", dbs]);
    update_spread(&db, 20, "changed-");
    let second = backup_json(&repo, &["--sqlite", dbs]);
    repo.run(&["check", "--read-data"]).ok();
    strip_delta_base(&repo, second["snapshot_id"].as_str().unwrap(), &db);
    let check = repo.run(&["check", "--read-data"]);
    assert_eq!(check.code, Some(1), "{}{}", check.out(), check.stderr);
    let all = format!("{}{}", check.out(), check.stderr);
    assert!(all.contains("without a delta base"), "{all}");
}
