//! cairn on a real S3 server (Ceph RGW, started by `.ci/rgw.sh`): the
//! backend conformance suite, every command through the binary, and the
//! failures a user meets (bad location, missing or wrong credentials, a
//! missing bucket, a server that is down, concurrent backups).
//!
//! Without a server these tests say SKIPPED and pass, except under
//! `CAIRN_TEST_REQUIRE_S3=1` (CI), where they fail.

mod support;

use cairn::backend::conformance;
use cairn::backend::{Backend, FileKind};
use std::ffi::OsStr;
use std::fs;
use std::process::Command;
use std::sync::atomic::Ordering;
use support::http_proxy;
use support::*;

/// A repository at an S3 location, driven through the binary.
struct S3Repo {
    location: String,
}

impl S3Repo {
    fn init(server: &S3Server, tag: &str) -> S3Repo {
        let r = S3Repo {
            location: server.location(tag),
        };
        r.run(&["init", "--kdf-memory", "1024", "--kdf-iterations", "1"])
            .ok();
        r
    }

    fn cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = cairn_cmd();
        c.arg("-r").arg(&self.location).args(args);
        c
    }

    fn run<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run(self.cmd(args))
    }

    fn backup(&self, args: &[&str]) -> String {
        let mut all = vec!["--json", "backup"];
        all.extend_from_slice(args);
        let r = self.run(&all).ok();
        last_json(&r.stdout)["snapshot_id"]
            .as_str()
            .expect("snapshot id")
            .to_string()
    }

    fn backend(&self) -> cairn::backend::S3Backend {
        let rest = self.location.strip_prefix("s3:").unwrap();
        let opts = cairn::backend::s3::S3Options::from_env(&[]).unwrap();
        let loc = cairn::backend::s3::S3Location::parse(rest, &opts.region).unwrap();
        cairn::backend::S3Backend::new(loc, opts).unwrap()
    }
}

#[test]
fn s3_backend_keeps_the_backend_contract() {
    let Some(server) = s3_server("s3_backend_keeps_the_backend_contract") else {
        return;
    };
    let bucket = server.unique_bucket("conformance");
    let n = std::sync::atomic::AtomicU32::new(0);
    conformance::run_all(&|| {
        let i = n.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let opts = cairn::backend::s3::S3Options::from_env(&[]).unwrap();
        let loc = cairn::backend::s3::S3Location::parse(
            &format!("{}/{bucket}/case{i}", server.endpoint),
            &opts.region,
        )
        .unwrap();
        let b = cairn::backend::S3Backend::new(loc, opts).unwrap();
        b.create().unwrap();
        Box::new(b)
    });
}

#[test]
fn every_command_works_on_s3() {
    let Some(server) = s3_server("every_command_works_on_s3") else {
        return;
    };
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("big.bin"), &random_bytes(5, 3 << 20));
    write(&src.join("dir/small.txt"), b"small\n");
    let db = ws.path("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch(
        "create table t(x); insert into t select randomblob(200) from (with recursive c(n) as (select 1 union all select n+1 from c where n < 2000) select n from c);",
    )
    .unwrap();
    drop(conn);
    let repo = S3Repo::init(&server, "commands");
    let s = src.to_str().unwrap();
    let first = repo.backup(&[s, "--sqlite", db.to_str().unwrap(), "--tag", "one"]);
    let mut c = repo.cmd(&["backup", "--stdin", "--stdin-filename", "in.txt"]);
    c.stdin(fs::File::open(src.join("dir/small.txt")).unwrap());
    run(c).ok();
    let from_cmd = repo.backup(&[
        "--stdin-from-command",
        "--stdin-filename",
        "cmd.txt",
        "--",
        "printf",
        "from a command",
    ]);
    write(&src.join("dir/small.txt"), b"changed\n");
    let second = repo.backup(&[s]);
    let snaps = last_json(&repo.run(&["--json", "snapshots"]).ok().stdout);
    assert_eq!(snaps.as_array().unwrap().len(), 4);
    let ls = repo.run(&["ls", &first]).ok().out();
    assert!(ls.contains("big.bin") && ls.contains("app.db"), "{ls}");
    let out = repo.run(&["dump", &from_cmd, "/cmd.txt"]).ok().stdout;
    assert_eq!(out, b"from a command");
    let dumped = repo
        .run(&["dump", &second, src.join("dir/small.txt").to_str().unwrap()])
        .ok()
        .stdout;
    assert_eq!(dumped, b"changed\n");
    repo.run(&["cat", "config"]).ok();
    repo.run(&["cat", "snapshot", &first]).ok();
    let t = ws.path("restored");
    repo.run(&[
        "restore",
        &first,
        "--target",
        t.to_str().unwrap(),
        "--verify",
    ])
    .ok();
    assert_eq!(
        fs::read(restored(&t, &src).join("big.bin")).unwrap(),
        random_bytes(5, 3 << 20)
    );
    repo.run(&["check", "--read-data"]).ok();
    repo.run(&["check", "--read-data-subset", "1/3"]).ok();
    repo.run(&["stats"]).ok();
    let pw2 = ws.path("pw2");
    fs::write(&pw2, "another").unwrap();
    repo.run(&[
        "key",
        "add",
        "--new-password-file",
        pw2.to_str().unwrap(),
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
    ])
    .ok();
    let keys = last_json(&repo.run(&["--json", "key", "list"]).ok().stdout);
    let other = keys
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["current"] == false)
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    repo.run(&["key", "remove", &other[..10]]).ok();
    repo.run(&["unlock"]).ok();
    repo.run(&["repair", "index"]).ok();
    repo.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    let t2 = ws.path("restored2");
    repo.run(&["restore", "latest", "--target", t2.to_str().unwrap()])
        .ok();
    assert!(repo.backend().list(FileKind::Lock).unwrap().is_empty());
}

#[test]
fn s3_failures_are_one_clear_line_and_change_nothing() {
    let Some(server) = s3_server("s3_failures_are_one_clear_line_and_change_nothing") else {
        return;
    };
    let repo = S3Repo::init(&server, "failures");
    let before = repo.backend().list(FileKind::Key).unwrap();
    let check = |mut c: Command, code: i32, needle: &str| {
        let r = run({
            c.arg("snapshots");
            c
        });
        let line = r.fails(Some(code));
        assert!(line.contains(needle), "{needle:?} not in {line:?}");
    };
    // A bad location.
    let mut c = cairn_cmd();
    c.args(["-r", "s3:http://"]);
    check(c, 1, "no host");
    // Missing credentials.
    let mut c = repo.cmd::<&str>(&[]);
    c.env_remove("AWS_ACCESS_KEY_ID");
    check(c, 1, "credentials");
    // Wrong credentials.
    let mut c = repo.cmd::<&str>(&[]);
    c.env(
        "AWS_SECRET_ACCESS_KEY",
        "wrong-secret-key-0000000000000000000000",
    );
    check(c, 1, "access denied");
    // A missing bucket.
    let mut c = cairn_cmd();
    c.arg("-r")
        .arg(format!("s3:{}/no-such-bucket-here/x", server.endpoint));
    check(c, 10, "does not exist");
    // A server that is down answers at once, not after minutes of retries.
    let mut c = cairn_cmd();
    c.args(["-r", "s3:http://127.0.0.1:9/bucket/x"]);
    let start = std::time::Instant::now();
    check(c, 1, "127.0.0.1:9");
    assert!(start.elapsed().as_secs() < 20, "{:?}", start.elapsed());
    // An unknown option.
    check(repo.cmd(&["-o", "s3.nonsense=1"]), 1, "unknown S3 option");
    assert_eq!(repo.backend().list(FileKind::Key).unwrap(), before);
    repo.run(&["check"]).ok();
}

#[test]
fn two_backups_at_once_into_one_s3_repository() {
    let Some(server) = s3_server("two_backups_at_once_into_one_s3_repository") else {
        return;
    };
    let ws = Workspace::new();
    let repo = S3Repo::init(&server, "concurrent");
    let (a, b) = (ws.path("a"), ws.path("b"));
    for i in 0..30 {
        write(&a.join(format!("f{i}")), &random_bytes(i, 100_000));
        write(&b.join(format!("f{i}")), &random_bytes(i + 1000, 100_000));
    }
    // The same new data in both: blobs may be stored twice, harmlessly.
    write(&a.join("shared"), &random_bytes(7, 2 << 20));
    write(&b.join("shared"), &random_bytes(7, 2 << 20));
    let mut ca = repo.cmd(&["backup", a.to_str().unwrap()]);
    let mut cb = repo.cmd(&["backup", b.to_str().unwrap()]);
    let pa = ca.spawn().unwrap();
    let pb = cb.spawn().unwrap();
    assert!(pa.wait_with_output().unwrap().status.success());
    assert!(pb.wait_with_output().unwrap().status.success());
    repo.run(&["check", "--read-data"]).ok();
    for (dir, name) in [(&a, "ra"), (&b, "rb")] {
        let t = ws.path(name);
        let snaps = last_json(
            &repo
                .run(&["--json", "snapshots", "--path", dir.to_str().unwrap()])
                .ok()
                .stdout,
        );
        let id = snaps[0]["id"].as_str().unwrap().to_string();
        repo.run(&["restore", &id, "--target", t.to_str().unwrap(), "--verify"])
            .ok();
        assert_eq!(
            fs::read(restored(&t, dir).join("shared")).unwrap(),
            random_bytes(7, 2 << 20)
        );
    }
    repo.run(&["prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn copy_local_to_s3_to_s3_to_local() {
    let Some(server) = s3_server("copy_local_to_s3_to_s3_to_local") else {
        return;
    };
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("a.bin"), &random_bytes(11, 1 << 20));
    write(&src.join("b/c.txt"), b"text\n");
    let local = ws.init_repo("local", SMALL_CHUNKS);
    local.backup(&[&src], &[]);
    write(&src.join("b/d.txt"), b"more\n");
    local.backup(&[&src], &["--tag", "second"]);
    let with_from = |mut c: Command, from: &str| {
        c.env("CAIRN_FROM_PASSWORD", PASSWORD)
            .args(["--from-repo", from]);
        c
    };
    // Local -> S3, sharing chunker parameters.
    let offsite = S3Repo {
        location: server.location("copy-offsite"),
    };
    run(with_from(
        offsite.cmd(&[
            "init",
            "--copy-chunker-params",
            "--kdf-memory",
            "1024",
            "--kdf-iterations",
            "1",
        ]),
        local.path.to_str().unwrap(),
    ))
    .ok();
    let r = run(with_from(
        offsite.cmd(&["--json", "copy"]),
        local.path.to_str().unwrap(),
    ))
    .ok();
    assert_eq!(last_json(&r.stdout)["copied"].as_array().unwrap().len(), 2);
    let r = run(with_from(
        offsite.cmd(&["--json", "copy"]),
        local.path.to_str().unwrap(),
    ))
    .ok();
    assert!(
        last_json(&r.stdout)["copied"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // S3 -> S3 (unrelated) and S3 -> local (unrelated).
    let second = S3Repo::init(&server, "copy-second");
    run(with_from(
        second.cmd(&["copy", "--tag", "second"]),
        &offsite.location,
    ))
    .ok();
    let back = ws.init_repo("back", &[]);
    run(with_from(back.cmd(&["copy"]), &second.location)).ok();
    assert_eq!(back.snapshot_ids().len(), 1);
    back.run(&["check", "--read-data"]).ok();
    second.run(&["check", "--read-data"]).ok();
    offsite.run(&["check", "--read-data"]).ok();
    let t = ws.path("t");
    back.restore("latest", &t, &["--verify"]).ok();
    assert_eq!(
        fs::read(restored(&t, &src).join("a.bin")).unwrap(),
        random_bytes(11, 1 << 20)
    );
    assert_eq!(
        fs::read(restored(&t, &src).join("b/d.txt")).unwrap(),
        b"more\n"
    );
}

/// A proxy in front of the test server, and the location of a fresh
/// repository through it.
fn proxied(server: &S3Server, tag: &str) -> (http_proxy::Proxy, String) {
    let upstream = server.endpoint.trim_start_matches("http://");
    let p = http_proxy::Proxy::start(upstream, "127.0.0.1:0").unwrap();
    let loc = format!("s3:{}/{}/repo", p.endpoint(), server.unique_bucket(tag));
    (p, loc)
}

fn some_data(ws: &Workspace, files: u64, size: usize) -> std::path::PathBuf {
    let src = ws.path("src");
    for i in 0..files {
        write(
            &src.join(format!("d{}/f{i}", i % 7)),
            &random_bytes(i, size),
        );
    }
    src
}

#[test]
fn transient_server_errors_and_dropped_connections_are_retried() {
    let Some(server) = s3_server("transient_server_errors_and_dropped_connections_are_retried")
    else {
        return;
    };
    let ws = Workspace::new();
    let (proxy, location) = proxied(&server, "faults");
    let repo = S3Repo { location };
    repo.run(&["init", "--kdf-memory", "1024", "--kdf-iterations", "1"])
        .ok();
    let src = some_data(&ws, 60, 200_000);
    proxy.state.fail_every.store(7, Ordering::Relaxed);
    proxy.state.drop_every.store(11, Ordering::Relaxed);
    repo.backup(&[src.to_str().unwrap()]);
    let t = ws.path("t");
    repo.run(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--verify",
    ])
    .ok();
    repo.run(&["check", "--read-data"]).ok();
    assert!(
        proxy.state.faults.load(Ordering::Relaxed) > 5,
        "{}",
        proxy.state.summary()
    );
}

#[test]
fn an_outage_mid_backup_fails_cleanly_and_the_next_backup_completes() {
    let Some(server) =
        s3_server("an_outage_mid_backup_fails_cleanly_and_the_next_backup_completes")
    else {
        return;
    };
    let ws = Workspace::new();
    let (proxy, location) = proxied(&server, "outage");
    let repo = S3Repo { location };
    repo.run(&[
        "init",
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
    ])
    .ok();
    let src = some_data(&ws, 40, 500_000);
    proxy.state.latency_ms.store(20, Ordering::Relaxed);
    let mut child = repo.cmd(&["backup", src.to_str().unwrap()]);
    child
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let child = child.spawn().unwrap();
    let start = std::time::Instant::now();
    while proxy.state.puts.load(Ordering::Relaxed) < 4 && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    proxy.state.down.store(true, Ordering::Relaxed);
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    proxy.state.down.store(false, Ordering::Relaxed);
    proxy.state.latency_ms.store(0, Ordering::Relaxed);
    repo.run(&["unlock"]).ok();
    repo.run(&["check"]).ok();
    repo.backup(&[src.to_str().unwrap()]);
    repo.run(&["prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    let t = ws.path("t");
    repo.run(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--verify",
    ])
    .ok();
}

#[test]
fn kill_9_mid_upload_leaves_a_repository_check_accepts() {
    let Some(server) = s3_server("kill_9_mid_upload_leaves_a_repository_check_accepts") else {
        return;
    };
    let ws = Workspace::new();
    let (proxy, location) = proxied(&server, "kill");
    let repo = S3Repo { location };
    repo.run(&[
        "init",
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
        "--pack-size",
        "1",
    ])
    .ok();
    let src = some_data(&ws, 40, 500_000);
    proxy.state.latency_ms.store(20, Ordering::Relaxed);
    let mut child = repo
        .cmd(&["backup", src.to_str().unwrap()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while proxy.state.puts.load(Ordering::Relaxed) < 6 && start.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    proxy.state.latency_ms.store(0, Ordering::Relaxed);
    // The lock of the killed process is stale (its process is gone).
    repo.run(&["check"]).ok();
    repo.backup(&[src.to_str().unwrap()]);
    repo.run(&["prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    let t = ws.path("t");
    repo.run(&[
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
        "--verify",
    ])
    .ok();
}
