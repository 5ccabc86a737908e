//! `backup --stdin` / `--stdin-from-command` and `dump`, and PostgreSQL
//! dumps round-tripped through a real server (`.ci/run` starts one and
//! exports PGHOST, PGPORT and PGUSER).

mod support;

use std::io::Write;
use std::process::{Command, Stdio};
use support::*;

fn dump(repo: &Repo, snap: &str, name: &str) -> Vec<u8> {
    let out = repo.cmd(&["dump", snap, name]).output().unwrap();
    assert!(
        out.status.success(),
        "dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn stdin_round_trip() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let data = random_bytes(5, 3 << 20);
    let mut child = repo
        .cmd(&[
            "--json",
            "backup",
            "--stdin",
            "--stdin-filename",
            "data.bin",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&data).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let id = last_json(&out.stdout)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(repo.snapshots()[0]["paths"][0], "/data.bin");
    let ls = repo.run(&["ls", &id]).ok().out();
    assert_eq!(ls.trim(), "/data.bin");
    assert!(dump(&repo, &id, "data.bin") == data);
    assert!(dump(&repo, &id, "/data.bin") == data);
}

#[test]
fn command_output_is_stored_and_a_failing_command_saves_nothing() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "seq.txt",
        "--",
        "seq",
        "1",
        "100000",
    ])
    .ok();
    let expected: String = (1..=100_000).map(|i| format!("{i}\n")).collect();
    assert_eq!(dump(&repo, "latest", "seq.txt"), expected.as_bytes());

    let r = repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "x.txt",
        "--",
        "sh",
        "-c",
        "seq 1 1000; echo 'something broke' >&2; exit 7",
    ]);
    assert_eq!(r.code, Some(1));
    assert!(
        r.stderr.contains("exit status 7")
            && r.stderr.contains("something broke")
            && r.stderr.contains("no snapshot was saved"),
        "{}",
        r.stderr
    );
    assert_eq!(repo.snapshots().len(), 1);
    // Usage errors.
    repo.run(&["backup", "--stdin-from-command"]).fails(Some(1));
    repo.run(&["backup", "--stdin", "--stdin-filename", "a/b"])
        .fails(Some(1));
    repo.run(&["backup"]).fails(Some(1));
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args([
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-tA",
            "-d",
            db,
            "-c",
            sql,
        ])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn server_reachable() -> bool {
    Command::new("psql")
        .args(["-X", "-tA", "-d", "postgres", "-c", "SELECT 1"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

const TABLES: &[&str] = &["customers", "orders", "events"];

/// Every table's rows in a canonical order, as text.
fn contents(db: &str) -> Vec<String> {
    TABLES
        .iter()
        .map(|t| psql(db, &format!("SELECT * FROM {t} ORDER BY id")))
        .collect()
}

#[test]
fn postgres_dump_round_trip() {
    if !server_reachable() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "no PostgreSQL server reachable (PGHOST={:?}, PGPORT={:?}); .ci/run must start one",
                std::env::var("PGHOST").ok(),
                std::env::var("PGPORT").ok()
            );
        }
        eprintln!(
            "SKIPPED postgres_dump_round_trip: no PostgreSQL server reachable \
             (start one with `eval \"$(bash .ci/postgres.sh start)\"`)"
        );
        return;
    }
    let tag = format!("{}_{}", std::process::id(), chrono_free_nanos());
    let src = format!("cairn_src_{tag}");
    let dst = format!("cairn_dst_{tag}");
    psql("postgres", &format!("CREATE DATABASE {src}"));
    psql("postgres", &format!("CREATE DATABASE {dst}"));
    struct Drop2(String, String);
    impl Drop for Drop2 {
        fn drop(&mut self) {
            for db in [&self.0, &self.1] {
                let _ = Command::new("psql")
                    .args(["-X", "-q", "-d", "postgres", "-c"])
                    .arg(format!("DROP DATABASE IF EXISTS {db}"))
                    .output();
            }
        }
    }
    let _cleanup = Drop2(src.clone(), dst.clone());
    psql(
        &src,
        "CREATE TABLE customers(id int PRIMARY KEY, name text, email text, since date);
         CREATE TABLE orders(id int PRIMARY KEY, customer int REFERENCES customers, total numeric(10,2), status text, note text);
         CREATE TABLE events(id bigint PRIMARY KEY, at timestamptz, kind text, payload jsonb);
         INSERT INTO customers SELECT i, 'customer ' || i, 'c' || i || '@example.com', date '2020-01-01' + (i % 1500)
             FROM generate_series(1, 20000) i;
         INSERT INTO orders SELECT i, 1 + (i * 7919) % 20000, (i % 100000) / 100.0,
             (ARRAY['new','paid','shipped','returned'])[1 + i % 4], md5(i::text) || ' ' || repeat('n', i % 40)
             FROM generate_series(1, 60000) i;
         INSERT INTO events SELECT i, timestamptz '2026-01-01 00:00+00' + i * interval '1 minute',
             (ARRAY['login','view','buy'])[1 + i % 3], jsonb_build_object('i', i, 'h', md5(i::text))
             FROM generate_series(1, 40000) i;",
    );
    let before = contents(&src);

    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let backup = |name: &str, db: &str| {
        repo.run(&[
            "--json",
            "backup",
            "--stdin-from-command",
            "--stdin-filename",
            name,
            "--",
            "pg_dump",
            "--no-owner",
            db,
        ])
    };
    let r1 = backup("shop.sql", &src).ok();
    let first = last_json(&r1.stdout);
    let snap1 = first["snapshot_id"].as_str().unwrap().to_string();

    // Change some rows, then back up again: it must cost much less.
    psql(
        &src,
        "UPDATE orders SET status = 'refunded' WHERE id IN (10, 20000, 45000);
         UPDATE customers SET email = 'new@example.com' WHERE id = 777;
         INSERT INTO events VALUES (40001, now(), 'buy', '{\"i\": 40001}');
         DELETE FROM events WHERE id = 5;",
    );
    let r2 = backup("shop.sql", &src).ok();
    let second = last_json(&r2.stdout);
    let (a, b) = (
        first["data_added_stored"].as_u64().unwrap(),
        second["data_added_stored"].as_u64().unwrap(),
    );
    assert!(
        b * 5 < a,
        "second dump added {b} bytes, the first {a}: not much less"
    );

    // Restore the first snapshot into a fresh database.
    let dumped = repo.cmd(&["dump", &snap1, "shop.sql"]).output().unwrap();
    assert!(dumped.status.success());
    let mut p = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", &dst])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    p.stdin.take().unwrap().write_all(&dumped.stdout).unwrap();
    let out = p.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "psql restore: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        contents(&dst) == before,
        "restored tables differ from the first state"
    );
    assert!(contents(&src) != before);

    // A failing pg_dump leaves no snapshot.
    let n = repo.snapshots().len();
    let r = backup("missing.sql", "no_such_database_for_cairn");
    assert_ne!(r.code, Some(0));
    assert!(
        r.stderr.contains("no_such_database_for_cairn")
            && r.stderr.contains("no snapshot was saved"),
        "{}",
        r.stderr
    );
    assert_eq!(repo.snapshots().len(), n);
}

fn chrono_free_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos()
}
