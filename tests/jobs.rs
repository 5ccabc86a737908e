//! `cairn run`, `status` and `schedule` from one configuration file,
//! modelled on an operations guide's cron page: an app folder, a live
//! SQLite database under a writer, a real PostgreSQL with two databases
//! dumped by `pg_dump` into one snapshot, retention, a copy to a second
//! repository, verification, hooks, and a webhook receiver on 127.0.0.1.

mod support;

use serde_json::Value;
use std::fs;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use support::*;

/// A tiny HTTP server that records (path, body) of every request.
struct Receiver {
    port: u16,
    seen: Arc<Mutex<Vec<(String, String)>>>,
}

impl Receiver {
    fn start() -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let path = line.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut len = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                        break;
                    }
                    let lower = h.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0u8; len];
                let _ = reader.read_exact(&mut body);
                log.lock()
                    .unwrap()
                    .push((path, String::from_utf8_lossy(&body).into_owned()));
                let _ = conn.write_all(
                    b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Receiver { port, seen }
    }

    fn paths(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|(p, _)| p.clone())
            .collect()
    }

    fn body_of(&self, path: &str) -> Value {
        let seen = self.seen.lock().unwrap();
        let (_, b) = seen
            .iter()
            .rev()
            .find(|(p, _)| p == path)
            .unwrap_or_else(|| panic!("no request to {path}: {seen:?}"));
        serde_json::from_str(b).unwrap()
    }
}

fn pg_reachable() -> bool {
    Command::new("psql")
        .args(["-X", "-q", "-d", "postgres", "-c", "SELECT 1"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

fn psql(db: &str, sql: &str) -> String {
    let out = Command::new("psql")
        .args(["-X", "-q", "-A", "-t", "-d", db, "-c", sql])
        .output()
        .expect("psql");
    assert!(
        out.status.success(),
        "psql {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two PostgreSQL databases (dropped at the end), or `None` without a
/// server outside CI.
struct Pg {
    dbs: [String; 2],
}

impl Pg {
    fn start() -> Option<Pg> {
        if !pg_reachable() {
            if std::env::var_os("CI").is_some() {
                panic!(
                    ".ci/run must start PostgreSQL (PGHOST={:?})",
                    std::env::var("PGHOST")
                );
            }
            eprintln!(
                "SKIPPED the PostgreSQL part: no server (eval \"$(bash .ci/postgres.sh start)\")"
            );
            return None;
        }
        let tag = format!("{}_{}", std::process::id(), rand_suffix());
        let dbs = [format!("jobs_a_{tag}"), format!("jobs_b_{tag}")];
        for db in &dbs {
            psql("postgres", &format!("CREATE DATABASE {db}"));
            psql(db, "CREATE TABLE items(id serial primary key, name text)");
        }
        Some(Pg { dbs })
    }

    fn insert(&self, i: usize, n: usize) {
        psql(
            &self.dbs[i],
            &format!("INSERT INTO items(name) SELECT 'row ' || g FROM generate_series(1, {n}) g"),
        );
    }

    fn dump(&self, i: usize) -> Vec<u8> {
        let out = Command::new("pg_dump")
            .args(["-d", &self.dbs[i]])
            .output()
            .unwrap();
        assert!(out.status.success());
        out.stdout
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        for db in &self.dbs {
            let _ = Command::new("psql")
                .args(["-X", "-q", "-d", "postgres", "-c"])
                .arg(format!("DROP DATABASE IF EXISTS {db}"))
                .output();
        }
    }
}

/// A dump without the random `\restrict` token lines newer pg_dump writes.
fn canonical(dump: &[u8]) -> String {
    String::from_utf8_lossy(dump)
        .lines()
        .filter(|l| !l.starts_with("\\restrict") && !l.starts_with("\\unrestrict"))
        .collect::<Vec<_>>()
        .join("\n")
}

fn rand_suffix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
}

/// Writes rows into a WAL-mode SQLite database until stopped.
struct Writer {
    stop: Arc<AtomicBool>,
    handle: Option<std::thread::JoinHandle<u64>>,
}

impl Writer {
    fn start(db: &Path) -> Writer {
        let conn = rusqlite::Connection::open(db).unwrap();
        conn.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE IF NOT EXISTS events(id integer primary key, body text);",
        )
        .unwrap();
        drop(conn);
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let path = db.to_path_buf();
        let handle = std::thread::spawn(move || {
            let conn = rusqlite::Connection::open(&path).unwrap();
            conn.busy_timeout(std::time::Duration::from_secs(10))
                .unwrap();
            let mut n = 0u64;
            while !flag.load(Ordering::Relaxed) {
                conn.execute(
                    "INSERT INTO events(body) VALUES (?1)",
                    [format!("event {n} {}", "x".repeat(200))],
                )
                .unwrap();
                n += 1;
                std::thread::sleep(std::time::Duration::from_millis(2));
            }
            n
        });
        Writer {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> u64 {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

struct Setup {
    ws: Workspace,
    local: Repo,
    offsite: Repo,
    app: PathBuf,
    config: PathBuf,
}

impl Setup {
    fn new() -> Setup {
        let ws = Workspace::new();
        let local = ws.init_repo("local", &[]);
        let offsite = ws.init_repo("offsite", &[]);
        fs::write(ws.path("password"), format!("{PASSWORD}\n")).unwrap();
        let app = ws.path("app");
        write(&app.join("config/app.yml"), b"listen: 8080\n");
        write(&app.join("config/nginx.conf"), b"server {}\n");
        write(&app.join("config/scratch.tmp"), b"not this\n");
        fs::create_dir_all(app.join("data")).unwrap();
        let config = ws.path("cairn.toml");
        Setup {
            ws,
            local,
            offsite,
            app,
            config,
        }
    }

    fn write_config(&self, receiver: &Receiver, streams: &str, extra: &str) {
        let ws = self.ws.dir.path().display().to_string();
        let app = self.app.display();
        let port = receiver.port;
        let text = format!(
            r#"# modelled on the operations guide's cron page
[settings]
state_dir = "{ws}/state"
metrics_file = "{ws}/metrics/cairn.prom"

[repositories.local]
location = "{ws}/local"
password_file = "{ws}/password"
primary = true

[repositories.offsite]
location = "{ws}/offsite"
password_file = "{ws}/password"

[jobs.databases]
sqlite_search = ["{app}/data"]
commands = [{streams}]
tags = ["hourly"]
schedule = "hourly"
max_age = "2h"
copy_to = ["offsite"]
retention = {{ keep_last = 3, prune_every = "0s" }}
verify = {{ every = "6h", read_all_every = "7d" }}
hooks = {{ before = ["echo before $CAIRN_JOB"], failure = ["echo \"$CAIRN_JOB: $CAIRN_JOB_ERROR\" > {ws}/failure-marker"] }}
ping = {{ start = "http://127.0.0.1:{port}/databases/start", success = "http://127.0.0.1:{port}/databases/ok", failure = "http://127.0.0.1:{port}/databases/fail", timeout = "5s", retries = 1 }}

[jobs.config]
paths = ["{app}/config"]
exclude = ["*.tmp"]
schedule = "daily 03:15"
max_age = "1d"
retention = {{ keep_daily = 7 }}
ping = {{ success = "http://127.0.0.1:{port}/config/ok" }}
{extra}
"#
        );
        fs::write(&self.config, text).unwrap();
    }

    fn cairn(&self, args: &[&str]) -> Run {
        let mut c = cairn_cmd();
        c.arg("--config").arg(&self.config).args(args);
        run(c)
    }

    fn snapshots_of(&self, repo: &Repo, job: &str) -> Vec<Value> {
        repo.snapshots()
            .into_iter()
            .filter(|s| {
                s["tags"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|t| t == &Value::from(format!("job:{job}")))
            })
            .collect()
    }
}

#[test]
fn jobs_back_up_keep_copy_verify_and_report() {
    let s = Setup::new();
    let receiver = Receiver::start();
    let pg = Pg::start();
    let streams = match &pg {
        Some(pg) => format!(
            "{{ name = \"pg-a.sql\", run = [\"pg_dump\", \"-d\", \"{}\"] }}, {{ name = \"pg-b.sql\", run = \"pg_dump -d {}\" }}",
            pg.dbs[0], pg.dbs[1]
        ),
        None => {
            "{ name = \"pg-a.sql\", run = \"echo a\" }, { name = \"pg-b.sql\", run = \"echo b\" }"
                .to_string()
        }
    };
    s.write_config(&receiver, &streams, "");
    let db = s.app.join("data/app.db");
    let writer = Writer::start(&db);

    // Four hourly runs with changes in between.
    for (hour, rows) in [(10, 10), (11, 20), (12, 5), (13, 1)] {
        if let Some(pg) = &pg {
            pg.insert(0, rows);
            pg.insert(1, rows * 2);
        }
        write(
            &s.app.join("config/app.yml"),
            format!("listen: 8080\nworkers: {hour}\n").as_bytes(),
        );
        let time = format!("2026-11-28 {hour}:00");
        let r = s.cairn(&["--json", "run", "--time", &time]);
        let out = r.ok();
        let v = last_json(&out.stdout);
        assert_eq!(v["ok"], true, "{v}");
        let jobs = v["jobs"].as_array().unwrap();
        assert_eq!(jobs.len(), 2);
        assert_eq!(jobs[0]["job"], "databases");
        assert_eq!(jobs[0]["outcome"], "ok", "{v}");
        assert_eq!(jobs[0]["snapshot"]["databases"], 1);
        assert_eq!(jobs[0]["snapshot"]["streams"], 2);
        assert_eq!(jobs[1]["outcome"], "ok", "{v}");
        if hour == 10 {
            // Verified on the first run (never verified before): part 1 of 28.
            assert_eq!(jobs[0]["verify"]["read_data_part"], "1/28", "{v}");
            assert_eq!(jobs[0]["verify"]["ok"], true);
        }
        assert!(out.stderr.contains("before databases"), "{}", out.stderr);
    }
    let events = writer.stop();
    assert!(events > 0);

    // Retention kept 3 in the primary; the copy has all 4.
    let local = s.snapshots_of(&s.local, "databases");
    assert_eq!(local.len(), 3, "{local:?}");
    assert_eq!(s.snapshots_of(&s.offsite, "databases").len(), 4);
    // keep_daily = 7 over one day: the newest, and (like restic, with
    // fewer days than asked for) the oldest.
    assert_eq!(s.snapshots_of(&s.local, "config").len(), 2);
    assert!(s.snapshots_of(&s.offsite, "config").is_empty());
    // One snapshot per job run holds the database and both streams.
    let latest = &local[2];
    assert!(
        latest["time"]
            .as_str()
            .unwrap()
            .starts_with("2026-11-28T13:00:00")
    );
    assert_eq!(latest["databases"][0]["path"], db.to_str().unwrap());
    let mut paths: Vec<&str> = latest["paths"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    paths.sort();
    assert_eq!(paths, vec!["/pg-a.sql", "/pg-b.sql", db.to_str().unwrap()]);
    let id = latest["id"].as_str().unwrap();
    if let Some(pg) = &pg {
        for (i, name) in ["/pg-a.sql", "/pg-b.sql"].iter().enumerate() {
            let dumped = s.local.run(&["dump", id, name]).ok().stdout;
            assert_eq!(canonical(&dumped), canonical(&pg.dump(i)), "{name}");
        }
    }
    // The copy restores too (the database verified), and excludes held.
    let target = s.ws.path("restore");
    s.offsite
        .run(&[
            "restore",
            "latest",
            "--tag",
            "job:databases",
            "--verify",
            "--target",
            target.to_str().unwrap(),
        ])
        .ok();
    let conn = rusqlite::Connection::open(restored(&target, &db)).unwrap();
    let n: i64 = conn
        .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
        .unwrap();
    assert!(n > 0 && n as u64 <= events);
    let target2 = s.ws.path("restore2");
    s.local
        .run(&[
            "restore",
            "latest",
            "--tag",
            "job:config",
            "--target",
            target2.to_str().unwrap(),
        ])
        .ok();
    let restored_config = restored(&target2, &s.app.join("config"));
    assert_eq!(
        fs::read(restored_config.join("app.yml")).unwrap(),
        b"listen: 8080\nworkers: 13\n"
    );
    assert!(!restored_config.join("scratch.tmp").exists());

    // Pings: start and success with a JSON body.
    let paths = receiver.paths();
    assert_eq!(
        paths.iter().filter(|p| *p == "/databases/start").count(),
        4,
        "{paths:?}"
    );
    assert_eq!(
        paths.iter().filter(|p| *p == "/databases/ok").count(),
        4,
        "{paths:?}"
    );
    let ok = receiver.body_of("/databases/ok");
    assert_eq!(ok["status"], "success");
    assert_eq!(ok["job"], "databases");
    assert!(ok["snapshot_id"].is_string());

    // Status: everything fresh.
    let r = s.cairn(&["--json", "status"]).ok();
    let st = last_json(&r.stdout);
    assert_eq!(st["health"], "ok", "{st}");
    assert_eq!(
        st["jobs"][0]["snapshots"][0],
        serde_json::json!(["local", 3])
    );
    assert_eq!(
        st["jobs"][0]["snapshots"][1],
        serde_json::json!(["offsite", 4])
    );
    let metrics = fs::read_to_string(s.ws.path("metrics/cairn.prom")).unwrap();
    assert!(
        metrics.contains("cairn_job_last_run_success{job=\"databases\",repository=\"local\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_job_snapshots{job=\"databases\",repository=\"offsite\"} 4"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_repository_size_bytes{repository=\"local\"}"),
        "{metrics}"
    );

    // A failing pg_dump: the job fails (no snapshot), its failure hook and
    // ping fire, the other job still runs, status and metrics say so.
    let broken = "{ name = \"pg-a.sql\", run = \"echo a\" }, { name = \"pg-b.sql\", run = [\"pg_dump\", \"-d\", \"no_such_database_here\"] }";
    s.write_config(&receiver, broken, "");
    let before = s.snapshots_of(&s.local, "databases").len();
    let r = s.cairn(&["--json", "run", "--time", "2026-11-28 14:00"]);
    assert_eq!(r.code, Some(4), "{}", r.out());
    let v = last_json(&r.stdout);
    assert_eq!(v["ok"], false);
    assert_eq!(v["jobs"][0]["outcome"], "failed");
    assert!(
        v["jobs"][0]["error"].as_str().unwrap().contains("pg_dump"),
        "{v}"
    );
    assert_eq!(v["jobs"][1]["outcome"], "ok");
    assert_eq!(s.snapshots_of(&s.local, "databases").len(), before);
    let marker = fs::read_to_string(s.ws.path("failure-marker")).unwrap();
    assert!(
        marker.starts_with("databases: ") && marker.contains("pg_dump"),
        "{marker}"
    );
    let fail = receiver.body_of("/databases/fail");
    assert_eq!(fail["status"], "failure");
    assert!(fail["error"].as_str().unwrap().contains("pg_dump"));
    let r = s.cairn(&["--json", "status"]);
    assert_eq!(r.code, Some(6), "{}", r.out());
    let st = last_json(&r.stdout);
    assert_eq!(st["jobs"][0]["health"], "failing");
    assert!(
        st["jobs"][0]["last_error"]
            .as_str()
            .unwrap()
            .contains("pg_dump")
    );
    assert_eq!(st["jobs"][1]["health"], "ok");
    let text = s.cairn(&["status", "databases"]);
    assert_eq!(text.code, Some(6));
    assert!(text.out().contains("FAILING"), "{}", text.out());
    let metrics = fs::read_to_string(s.ws.path("metrics/cairn.prom")).unwrap();
    assert!(
        metrics.contains("cairn_job_last_run_success{job=\"databases\",repository=\"local\"} 0"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_job_failing{job=\"databases\",repository=\"local\"} 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("cairn_job_failures_total{job=\"databases\",repository=\"local\"} 1"),
        "{metrics}"
    );
    let prom = s.cairn(&["status", "--prometheus"]);
    assert!(
        prom.out().contains("# TYPE cairn_job_stale gauge"),
        "{}",
        prom.out()
    );

    // Stale: a freshness limit shorter than the time since the success.
    s.write_config(&receiver, &streams, "");
    let short = fs::read_to_string(&s.config)
        .unwrap()
        .replace("max_age = \"1d\"", "max_age = \"1s\"");
    fs::write(&s.config, short).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let r = s.cairn(&["--json", "status", "config"]);
    assert_eq!(r.code, Some(5), "{}", r.out());
    assert_eq!(last_json(&r.stdout)["jobs"][0]["health"], "stale");

    // A repository disk filling up (no file system has 100% free).
    let full = fs::read_to_string(&s.config)
        .unwrap()
        .replace("max_age = \"1s\"", "max_age = \"1d\"")
        .replace("primary = true", "primary = true\nmin_free = \"100%\"");
    fs::write(&s.config, full).unwrap();
    let r = s.cairn(&["--json", "status", "config"]);
    assert_eq!(r.code, Some(6), "{}", r.out());
    let st = last_json(&r.stdout);
    assert!(
        st["jobs"][0]["reason"]
            .as_str()
            .unwrap()
            .contains("filling up"),
        "{st}"
    );
    assert!(
        st["repositories"][0]["free_bytes"].as_u64().is_some(),
        "{st}"
    );
}

#[test]
fn a_bad_config_changes_nothing_and_says_where() {
    let s = Setup::new();
    let receiver = Receiver::start();
    s.write_config(&receiver, "{ name = \"a.sql\", run = \"echo a\" }", "");
    let good = fs::read_to_string(&s.config).unwrap();
    for (from, to, needle) in [
        ("keep_last = 3", "keep_lsat = 3", "keep_lsat"),
        (
            "max_age = \"2h\"",
            "max_age = \"two hours\"",
            "\"two hours\"",
        ),
        (
            "copy_to = [\"offsite\"]",
            "copy_to = [\"nowhere\"]",
            "\"nowhere\"",
        ),
        (
            "schedule = \"hourly\"",
            "schedule = \"hourlyish\"",
            "\"hourlyish\"",
        ),
        ("exclude = [\"*.tmp\"]", "exclude = \"*.tmp\"", "\"*.tmp\""),
    ] {
        let bad = good.replace(from, to);
        assert_ne!(bad, good);
        fs::write(&s.config, &bad).unwrap();
        let r = s.cairn(&["run"]);
        assert_eq!(r.code, Some(1), "{}", r.out());
        let offset = bad.find(needle).unwrap();
        let line = bad[..offset].matches('\n').count() + 1;
        let want = format!("{}:{line}:", s.config.display());
        assert!(r.stderr.contains(&want), "{} (want {want})", r.stderr);
        assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
        assert!(s.local.snapshots().is_empty());
        assert!(!s.ws.path("state").exists());
        assert!(receiver.paths().is_empty());
        // status and schedule refuse it the same way.
        assert_eq!(s.cairn(&["status"]).code, Some(1));
        assert_eq!(s.cairn(&["schedule"]).code, Some(1));
    }
    fs::write(&s.config, &good).unwrap();
    let r = s.cairn(&["run", "nosuchjob"]);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("nosuchjob"), "{}", r.stderr);
    assert!(s.local.snapshots().is_empty());
    let mut c = cairn_cmd();
    c.arg("--config").arg(s.ws.path("missing.toml")).arg("run");
    let r = run(c);
    assert_eq!(r.code, Some(1));
    assert!(r.stderr.contains("missing.toml"), "{}", r.stderr);
}

#[test]
fn an_overlapping_run_is_skipped_and_schedules_render() {
    let s = Setup::new();
    let receiver = Receiver::start();
    s.write_config(&receiver, "{ name = \"a.sql\", run = \"echo a\" }", "");
    // Another run of `config` holds its lock.
    fs::create_dir_all(s.ws.path("state/jobs")).unwrap();
    let lock = fs::File::create(s.ws.path("state/jobs/config.lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file this test owns.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) },
        0
    );
    let r = s.cairn(&["--json", "run", "config"]);
    let v = last_json(&r.ok().stdout);
    assert_eq!(v["jobs"][0]["outcome"], "skipped", "{v}");
    assert!(s.local.snapshots().is_empty());
    drop(lock);
    let r = s.cairn(&["--json", "run", "config"]).ok();
    assert_eq!(last_json(&r.stdout)["jobs"][0]["outcome"], "ok");

    // Units and crontab lines, one per job with its own cadence.
    let units = s.cairn(&["schedule"]).ok().out();
    assert!(units.contains("cairn-databases.timer"), "{units}");
    assert!(units.contains("OnCalendar=*-*-* *:00:00"), "{units}");
    assert!(units.contains("OnCalendar=*-*-* 03:15:00"), "{units}");
    assert!(
        units.contains(&format!("--config {} run config", s.config.display())),
        "{units}"
    );
    let dir = s.ws.path("systemd");
    let dry = s
        .cairn(&[
            "schedule",
            "--install",
            "--dry-run",
            "--dir",
            dir.to_str().unwrap(),
        ])
        .ok()
        .out();
    assert!(dry.contains("would write"), "{dry}");
    assert!(!dir.exists());
    s.cairn(&["schedule", "--install", "--dir", dir.to_str().unwrap()])
        .ok();
    let mut names: Vec<String> = fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "cairn-config.service",
            "cairn-config.timer",
            "cairn-databases.service",
            "cairn-databases.timer"
        ]
    );
    let cron = s.ws.path("cron");
    s.cairn(&[
        "schedule",
        "--cron",
        "--install",
        "--user",
        "backup",
        "--dir",
        cron.to_str().unwrap(),
    ])
    .ok();
    let tab = fs::read_to_string(cron.join("cairn")).unwrap();
    assert!(tab.contains("0 * * * * backup "), "{tab}");
    assert!(tab.contains("15 3 * * * backup "), "{tab}");
    assert!(
        tab.contains("run databases") && tab.contains("run config"),
        "{tab}"
    );
}

#[test]
fn the_readme_example_configuration_is_valid() {
    let readme =
        fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    let start = readme
        .find("```toml\n[settings]\nmetrics_file")
        .expect("example in README");
    let body = &readme[start + 8..];
    let body = &body[..body.find("```").unwrap()];
    let ws = Workspace::new();
    let path = ws.path("cairn.toml");
    fs::write(&path, body).unwrap();
    let mut c = cairn_cmd();
    c.arg("--config").arg(&path).args(["schedule", "--cron"]);
    let out = run(c).ok().out();
    assert!(
        out.contains("run databases") && out.contains("run data"),
        "{out}"
    );
}
