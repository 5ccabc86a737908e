//! PostgreSQL continuous archiving and point-in-time recovery with a real
//! server: `archive_command = 'cairn ... wal push %p'`, `pgbench` load,
//! base backups with `cairn pg backup`, marker rows committed at recorded
//! times, and `cairn pg restore --at/--lsn/--xid --verify` proving that the
//! restored cluster holds exactly the rows committed before the target.
//! Also: `wal push` killed with SIGKILL at many points, pushes of a name
//! already archived, a missing segment reported by `check`, retention of
//! WAL with `forget`, and the whole flow on S3 (Ceph RGW).
//!
//! Each test starts a private cluster (initdb, Unix socket in its
//! workspace). As root, the cluster and every cairn command run as the
//! `postgres` user, as they do in production. Without PostgreSQL's server
//! programs the tests say SKIPPED, unless `CAIRN_TEST_REQUIRE_PG=1` (CI),
//! where they fail.

mod support;

use std::ffi::OsStr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};
use support::{Run, Workspace, cairn_cmd_with, chmod, is_root, run};

/// PostgreSQL's server programs, or `None` (SKIPPED) without them.
fn pg_bin(test: &str) -> Option<PathBuf> {
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    found.sort();
    match found.pop() {
        Some((_, b)) => Some(b),
        None => {
            assert!(
                std::env::var_os("CAIRN_TEST_REQUIRE_PG").is_none(),
                "{test}: CAIRN_TEST_REQUIRE_PG is set but PostgreSQL is not installed"
            );
            eprintln!("SKIPPED {test}: PostgreSQL is not installed (apt-get install postgresql)");
            None
        }
    }
}

/// The user everything runs as: `postgres` when the tests run as root.
struct User {
    ids: Option<(u32, u32)>,
}

impl User {
    fn get() -> User {
        if !is_root() {
            return User { ids: None };
        }
        let out = Command::new("id")
            .args(["-u", "postgres"])
            .output()
            .unwrap();
        let uid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        let out = Command::new("id")
            .args(["-g", "postgres"])
            .output()
            .unwrap();
        let gid: u32 = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
        User {
            ids: Some((uid, gid)),
        }
    }

    fn apply(&self, c: &mut Command) {
        if let Some((u, g)) = self.ids {
            c.uid(u).gid(g);
        }
    }

    fn chown(&self, p: &Path) {
        if let Some((u, g)) = self.ids {
            std::os::unix::fs::chown(p, Some(u), Some(g)).unwrap();
        }
    }
}

/// A workspace the cluster's user can use: the cairn binary copied into it
/// (a build directory may be closed to other users), a password file, a
/// cache folder.
struct Setup {
    ws: Workspace,
    user: User,
    bin: PathBuf,
    pg: PathBuf,
    /// `-r LOCATION` and environment of every cairn command.
    location: String,
    env: Vec<(String, String)>,
}

impl Setup {
    fn new(pg: PathBuf, location: Option<(String, Vec<(String, String)>)>) -> Setup {
        let ws = Workspace::new();
        let user = User::get();
        chmod(ws.dir.path(), 0o755);
        user.chown(ws.dir.path());
        let bin = ws.path("cairn");
        support::copy_binary(&bin);
        std::fs::write(ws.path("pass"), "pitr secret\n").unwrap();
        user.chown(&ws.path("pass"));
        chmod(&ws.path("pass"), 0o600);
        let (location, env) =
            location.unwrap_or_else(|| (ws.path("repo").display().to_string(), Vec::new()));
        let s = Setup {
            ws,
            user,
            bin,
            pg,
            location,
            env,
        };
        s.cairn(&["init", "--kdf-memory", "1024", "--kdf-iterations", "1"])
            .ok();
        s
    }

    /// The global options of every cairn command, as a shell fragment
    /// (for archive_command).
    fn cairn_shell(&self) -> String {
        let env: String = self.env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
        format!(
            "env {env}{} -r {} --password-file {} --cache-dir {}",
            self.bin.display(),
            self.location,
            self.ws.path("pass").display(),
            self.ws.path("cache").display()
        )
    }

    fn cairn_cmd<S: AsRef<OsStr>>(&self, args: &[S]) -> Command {
        let mut c = cairn_cmd_with(&self.bin);
        c.arg("-r")
            .arg(&self.location)
            .arg("--password-file")
            .arg(self.ws.path("pass"))
            .arg("--cache-dir")
            .arg(self.ws.path("cache"))
            .args(args)
            .env_remove("CAIRN_PASSWORD")
            .current_dir(self.ws.dir.path());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        self.user.apply(&mut c);
        c
    }

    fn cairn<S: AsRef<OsStr>>(&self, args: &[S]) -> Run {
        run(self.cairn_cmd(args))
    }

    fn json<S: AsRef<OsStr>>(&self, args: &[S]) -> serde_json::Value {
        let mut all = vec![OsStr::new("--json")];
        all.extend(args.iter().map(|a| a.as_ref()));
        let r = self.cairn(&all).ok();
        support::last_json(&r.stdout)
    }
}

/// A repository location in its own bucket of the S3 test server, and the
/// environment cairn needs to reach it.
fn s3_location(server: &support::S3Server, tag: &str) -> (String, Vec<(String, String)>) {
    let bucket = server.unique_bucket(tag);
    let env = [
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_DEFAULT_REGION",
    ]
    .iter()
    .filter_map(|k| Some((k.to_string(), std::env::var(k).ok()?)))
    .collect();
    (format!("s3:{}/{bucket}/pg", server.endpoint), env)
}

impl Setup {
    /// Deletes the WAL record `wal/<id>` behind cairn's back.
    fn remove_wal_record(&self, id: &str) {
        match self.location.strip_prefix("s3:") {
            Some(rest) => {
                use cairn::backend::{Backend, FileKind, Handle};
                let opts = cairn::backend::s3::S3Options::from_env(&[]).unwrap();
                let loc = cairn::backend::s3::S3Location::parse(rest, &opts.region).unwrap();
                let backend = cairn::backend::S3Backend::new(loc, opts).unwrap();
                let id = cairn::Id::from_hex(id).unwrap();
                backend.remove(Handle::new(FileKind::Wal, id)).unwrap();
            }
            None => std::fs::remove_file(Path::new(&self.location).join("wal").join(id)).unwrap(),
        }
    }
}

/// A private cluster archiving into the setup's repository.
struct Cluster<'a> {
    s: &'a Setup,
    data: PathBuf,
    socket: PathBuf,
    port: u16,
}

impl<'a> Cluster<'a> {
    fn start(s: &'a Setup, archive_command: &str) -> Cluster<'a> {
        let data = s.ws.path("pgdata");
        let socket = s.ws.path("sock");
        std::fs::create_dir_all(&socket).unwrap();
        s.user.chown(&socket);
        static N: std::sync::atomic::AtomicU16 = std::sync::atomic::AtomicU16::new(0);
        let port = 55_000
            + (std::process::id() % 500) as u16 * 4
            + N.fetch_add(1, std::sync::atomic::Ordering::Relaxed) % 4;
        let c = Cluster {
            s,
            data,
            socket,
            port,
        };
        c.pg_cmd(
            "initdb",
            &["-A", "trust", "-U", "postgres", "-E", "UTF8", "-D"],
            Some(&c.data),
        )
        .ok();
        let conf = format!(
            "archive_mode = on\narchive_command = '{}'\nlisten_addresses = ''\nunix_socket_directories = '{}'\nport = {}\nwal_level = replica\nmax_wal_senders = 4\nfsync = off\nautovacuum = off\n",
            archive_command.replace('\'', "''"),
            c.socket.display(),
            c.port
        );
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(c.data.join("postgresql.conf"))
            .unwrap();
        std::io::Write::write_all(&mut f, conf.as_bytes()).unwrap();
        let log = s.ws.path("server.log");
        c.pg_cmd(
            "pg_ctl",
            &["-w", "-t", "60", "-l", log.to_str().unwrap(), "start", "-D"],
            Some(&c.data),
        )
        .ok();
        c
    }

    fn pg_cmd(&self, program: &str, args: &[&str], path: Option<&Path>) -> Run {
        let mut c = Command::new(self.s.pg.join(program));
        c.args(args);
        if let Some(p) = path {
            c.arg(p);
        }
        self.env(&mut c);
        run(c)
    }

    fn env(&self, c: &mut Command) {
        c.env("PGHOST", &self.socket)
            .env("PGPORT", self.port.to_string())
            .env("PGUSER", "postgres")
            .env("PGDATABASE", "postgres")
            .current_dir(self.s.ws.dir.path());
        self.s.user.apply(c);
    }

    /// Runs SQL and returns psql's unaligned output.
    fn sql(&self, sql: &str) -> String {
        let mut c = Command::new("psql");
        c.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        self.env(&mut c);
        run(c).ok().out().trim().to_string()
    }

    fn pgbench(&self, args: &[&str]) {
        let mut c = Command::new("pgbench");
        c.args(args);
        self.env(&mut c);
        run(c).ok();
    }

    /// Switches to a new segment and waits until the old one is archived.
    fn switch_and_wait(&self) -> String {
        let seg = self.sql("SELECT pg_walfile_name(pg_switch_wal())");
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = self.sql("SELECT coalesce(last_archived_wal, '') FROM pg_stat_archiver");
            if last.as_str() >= seg.as_str() {
                return seg;
            }
            assert!(
                Instant::now() < deadline,
                "{seg} not archived in 60 s; archiver: {}; log: {}",
                self.sql("SELECT * FROM pg_stat_archiver"),
                std::fs::read_to_string(self.s.ws.path("server.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `cairn pg backup` with this cluster's connection.
    fn base_backup(&self) -> serde_json::Value {
        let mut c = self.s.cairn_cmd(&["--json", "pg", "backup", "--temp-dir"]);
        c.arg(self.s.ws.dir.path());
        self.env(&mut c);
        let r = run(c).ok();
        support::last_json(&r.stdout)
    }
}

impl Drop for Cluster<'_> {
    fn drop(&mut self) {
        let _ = self.pg_cmd(
            "pg_ctl",
            &["-m", "immediate", "stop", "-D"],
            Some(&self.data),
        );
    }
}

/// Restores with `pg restore ARGS --verify` into a new folder and returns
/// the row count of `table` in the recovered cluster.
fn restore_rows(s: &Setup, name: &str, args: &[&str], table: &str) -> (u64, serde_json::Value) {
    let target = s.ws.path(name);
    let mut all = vec![
        "pg",
        "restore",
        "--verify",
        "--verify-timeout",
        "120s",
        "--target",
    ];
    let t = target.display().to_string();
    all.push(&t);
    all.extend_from_slice(args);
    let v = s.json(&all);
    let rows = v["verification"]["tables"]
        .as_array()
        .unwrap_or_else(|| panic!("no verification in {v}"))
        .iter()
        .find(|t| t["table"] == format!("public.{table}"))
        .and_then(|t| t["rows"].as_u64())
        .unwrap_or_else(|| panic!("no table {table} in {v}"));
    (rows, v)
}

/// The whole flow on a repository given by `location` (local if `None`).
fn point_in_time_flow(test: &str, location: Option<(String, Vec<(String, String)>)>) {
    let Some(pg) = pg_bin(test) else { return };
    let s = Setup::new(pg, location);
    let cluster = Cluster::start(&s, &format!("{} wal push %p", s.cairn_shell()));
    cluster.pgbench(&["-i", "-s", "2", "-q"]);
    cluster.sql(
        "CREATE TABLE marks (n int PRIMARY KEY, at timestamptz NOT NULL DEFAULT clock_timestamp())",
    );
    cluster.switch_and_wait();

    let first = cluster.base_backup();
    let p = &first["postgres"];
    assert_eq!(p["timeline"], 1, "{first}");
    assert!(p["system_id"].as_str().unwrap().parse::<u64>().is_ok());

    // Load, then markers with recorded times and positions around them.
    cluster.pgbench(&["-c", "2", "-T", "2", "-n"]);
    cluster.sql("INSERT INTO marks (n) VALUES (1)");
    std::thread::sleep(Duration::from_millis(1100));
    let between_1_2 = cluster.sql(
        "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
    );
    let history_at_t = cluster.sql("SELECT count(*) FROM pgbench_history");
    std::thread::sleep(Duration::from_millis(1100));
    cluster.sql("INSERT INTO marks (n) VALUES (2)");
    let lsn_after_2 = cluster.sql("SELECT pg_current_wal_insert_lsn()");
    cluster.pgbench(&["-c", "2", "-T", "1", "-n"]);
    let xid_3 = cluster.sql("INSERT INTO marks (n) VALUES (3) RETURNING txid_current()");
    cluster.sql("INSERT INTO marks (n) VALUES (4)");
    cluster.switch_and_wait();

    // A time between markers 1 and 2: exactly marker 1, and the pgbench
    // history as it was then.
    let (rows, v) = restore_rows(&s, "at-time", &["--at", &between_1_2], "marks");
    assert_eq!(rows, 1, "{v}");
    let history = v["verification"]["tables"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["table"] == "public.pgbench_history")
        .unwrap()["rows"]
        .as_u64()
        .unwrap();
    assert_eq!(history.to_string(), history_at_t, "{v}");
    assert_eq!(v["snapshot_id"], first["snapshot_id"]);
    let conf = std::fs::read_to_string(s.ws.path("at-time/postgresql.auto.conf")).unwrap();
    assert!(conf.contains("wal fetch --system-id"), "{conf}");
    // An LSN just after marker 2, and the commit of marker 3's transaction.
    let (rows, v) = restore_rows(&s, "at-lsn", &["--lsn", &lsn_after_2], "marks");
    assert_eq!(rows, 2, "{v}");
    let (rows, v) = restore_rows(&s, "at-xid", &["--xid", &xid_3], "marks");
    assert_eq!(rows, 3, "{v}");
    let (rows, v) = restore_rows(
        &s,
        "at-xid-excl",
        &["--xid", &xid_3, "--exclusive"],
        "marks",
    );
    assert_eq!(rows, 2, "{v}");
    // Everything archived.
    let (rows, v) = restore_rows(&s, "latest", &[], "marks");
    assert_eq!(rows, 4, "{v}");

    // A second base backup after light changes; a target after it starts
    // from it.
    cluster.sql("INSERT INTO marks (n) VALUES (5)");
    let second = cluster.base_backup();
    assert_ne!(second["snapshot_id"], first["snapshot_id"]);
    // Its changed relation pages are deltas against the first's.
    let listing = s
        .cairn(&["ls", "--json", second["snapshot_id"].as_str().unwrap()])
        .ok()
        .out();
    assert!(
        listing.contains("\"delta_base\":{"),
        "no page deltas in the second base backup"
    );
    // A third one with nothing changed since costs next to nothing.
    let third = cluster.base_backup();
    let stored = |v: &serde_json::Value| v["data_added_stored"].as_u64().unwrap();
    assert!(
        stored(&third) * 5 < stored(&first),
        "first {} bytes, third {}",
        stored(&first),
        stored(&third)
    );
    let (rows, v) = restore_rows(&s, "latest2", &[], "marks");
    assert_eq!(rows, 5, "{v}");
    assert_eq!(v["snapshot_id"], third["snapshot_id"]);
    // Before the first base backup ended there is nothing to restore from.
    let target = s.ws.path("too-early");
    let r = s.cairn(&[
        "pg",
        "restore",
        "--target",
        target.to_str().unwrap(),
        "--at",
        "2000-01-01T00:00:00Z",
    ]);
    assert!(
        r.fails(Some(1)).contains("no base backup ended before"),
        "{}",
        r.stderr
    );
    assert!(!target.exists());

    let check = s.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert!(check["wal"]["records"].as_u64().unwrap() >= 4, "{check}");

    // Retention: keeping only the second base backup removes the WAL only
    // the first needed; recovery from the second still works.
    let before = s.json(&["wal", "list"]).as_array().unwrap().len();
    let f = s.json(&["forget", "--keep-last", "1", "--prune"]);
    let removed = f["wal_removed"].as_array().unwrap().len();
    assert!(removed > 0 && removed < before, "{f}");
    let start_wal = third["postgres"]["start_wal"].as_str().unwrap().to_string();
    for w in f["wal_removed"].as_array().unwrap() {
        assert!(
            w.as_str().unwrap()[8..24] < start_wal[8..],
            "{w} removed but needed"
        );
    }
    let check = s.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    cluster.sql("INSERT INTO marks (n) VALUES (6)");
    let last_segment = cluster.switch_and_wait();
    let (rows, v) = restore_rows(&s, "after-forget", &[], "marks");
    assert_eq!(rows, 6, "{v}");

    // An offsite copy (a local repository of its own, unrelated blob ids)
    // carries the base backups and their WAL: it restores on its own.
    let offsite = Setup::new(s.pg.clone(), None);
    std::fs::copy(s.ws.path("pass"), offsite.ws.path("from-pass")).unwrap();
    offsite.user.chown(&offsite.ws.path("from-pass"));
    let from_pass = offsite.ws.path("from-pass").display().to_string();
    let copy = |extra: &[&str]| {
        let mut c = offsite.cairn_cmd(&["--json", "copy", "--from-repo"]);
        c.arg(&s.location)
            .args(["--from-password-file", &from_pass])
            .args(extra);
        for (k, v) in &s.env {
            c.env(k, v);
        }
        support::last_json(&run(c).ok().stdout)
    };
    let copied = copy(&[]);
    assert!(
        !copied["wal_copied"].as_array().unwrap().is_empty(),
        "{copied}"
    );
    let again = copy(&["--dry-run"]);
    // Idempotent: nothing the first run copied is copied again (the
    // server may have archived newer segments since: those would be).
    let first_run: Vec<&str> = copied["wal_copied"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap())
        .collect();
    assert!(first_run.contains(&last_segment.as_str()), "{copied}");
    for w in again["wal_copied"].as_array().unwrap() {
        let w = w.as_str().unwrap();
        assert!(
            !first_run.contains(&w) && w > last_segment.as_str(),
            "{w} copied twice: {again}"
        );
    }
    let (rows, v) = restore_rows(&offsite, "from-copy", &[], "marks");
    assert_eq!(rows, 6, "{v}");
}

#[test]
fn point_in_time_recovery_on_a_local_repository() {
    point_in_time_flow("point_in_time_recovery_on_a_local_repository", None);
}

#[test]
fn point_in_time_recovery_on_s3() {
    let Some(server) = support::s3_server("point_in_time_recovery_on_s3") else {
        return;
    };
    point_in_time_flow(
        "point_in_time_recovery_on_s3",
        Some(s3_location(&server, "pitr")),
    );
}

/// `wal push` killed at many points leaves a repository `check` accepts,
/// and the next push of the same file completes; pushing it again is fine,
/// pushing other bytes under its name is refused; fetching what is not
/// archived is quiet; a missing segment is named by `check`.
#[test]
fn wal_push_survives_kills_and_check_finds_gaps() {
    kills_and_gaps("wal_push_survives_kills_and_check_finds_gaps", &|_| None);
}

#[test]
fn wal_push_survives_kills_and_check_finds_gaps_on_s3() {
    let test = "wal_push_survives_kills_and_check_finds_gaps_on_s3";
    let Some(server) = support::s3_server(test) else {
        return;
    };
    kills_and_gaps(test, &|tag| Some(s3_location(&server, tag)));
}

type Location = Option<(String, Vec<(String, String)>)>;

fn kills_and_gaps(test: &str, location: &dyn Fn(&str) -> Location) {
    let Some(pg) = pg_bin(test) else { return };
    let s = Setup::new(pg, location("kills"));
    // PostgreSQL's first attempt at each file is killed with SIGKILL 50 ms
    // in (wherever that falls); it retries, and the archive must end up
    // complete and consistent whatever the kill interrupted.
    let marks = s.ws.path("marks");
    std::fs::create_dir_all(&marks).unwrap();
    s.user.chown(&marks);
    let script = s.ws.path("archive.sh");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nmark={}/$(basename \"$1\")\nif [ ! -e \"$mark\" ]; then\n  : > \"$mark\"\n  {cairn} wal push \"$1\" >/dev/null 2>&1 & pid=$!\n  sleep 0.05\n  kill -9 $pid 2>/dev/null\n  wait $pid\n  exit 1\nfi\nexec {cairn} wal push \"$1\"\n",
            marks.display(),
            cairn = s.cairn_shell()
        ),
    )
    .unwrap();
    chmod(&script, 0o755);
    let cluster = Cluster::start(&s, &format!("{} %p", script.display()));
    cluster.pgbench(&["-i", "-s", "1", "-q"]);
    cluster.switch_and_wait();
    cluster.base_backup();
    let mut segments = Vec::new();
    for i in 0..4 {
        cluster.sql(&format!(
            "CREATE TABLE t{i} AS SELECT generate_series(1, 1000) AS x"
        ));
        segments.push(cluster.switch_and_wait());
    }
    let sysid = cluster.sql("SELECT system_identifier FROM pg_control_system()");
    let check = s.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");
    assert!(
        std::fs::read_dir(&marks).unwrap().count() >= segments.len(),
        "every segment's first attempt was killed"
    );
    cluster.sql("CREATE TABLE after_kills AS SELECT generate_series(1, 77) AS x");
    cluster.switch_and_wait();
    let (rows, v) = restore_rows(&s, "after-kills", &[], "after_kills");
    assert_eq!(rows, 77, "{v}");

    // Fetch a segment, push it into a second repository while killing the
    // push at growing delays.
    let seg = s.ws.path("seg");
    std::fs::create_dir_all(&seg).unwrap();
    s.user.chown(&seg);
    let copy = seg.join(&segments[1]);
    s.cairn(&[
        "wal",
        "fetch",
        "--system-id",
        &sysid,
        &segments[1],
        copy.to_str().unwrap(),
    ])
    .ok();
    let original = std::fs::read(&copy).unwrap();
    assert_eq!(original.len(), 16 << 20);
    let second = Setup::new(s.pg.clone(), location("kills2"));
    for delay_ms in [0u64, 2, 5, 10, 20, 40, 80] {
        let mut c =
            second.cairn_cmd(&["wal", "push", "--system-id", &sysid, copy.to_str().unwrap()]);
        c.stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        let mut child = c.spawn().unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill();
        let _ = child.wait();
        let check = second.json(&["check"]);
        assert_eq!(check["ok"], true, "after a kill at {delay_ms} ms: {check}");
    }
    let push =
        |path: &Path| second.cairn(&["wal", "push", "--system-id", &sysid, path.to_str().unwrap()]);
    push(&copy).ok();
    push(&copy).ok();
    let back = second.ws.path("back");
    second
        .cairn(&[
            "wal",
            "fetch",
            "--system-id",
            &sysid,
            &segments[1],
            back.to_str().unwrap(),
        ])
        .ok();
    assert!(
        std::fs::read(&back).unwrap() == original,
        "fetched bytes differ"
    );
    let mut other = original.clone();
    other[8192 * 100] ^= 1;
    std::fs::write(&copy, &other).unwrap();
    let r = push(&copy);
    assert!(
        r.fails(Some(1)).contains("different content"),
        "{}",
        r.stderr
    );
    let check = second.json(&["check", "--read-data"]);
    assert_eq!(check["ok"], true, "{check}");

    // Not archived: exit 1, nothing on stderr, nothing written.
    let missing = s.ws.path("missing");
    for name in [
        "00000009.history",
        "0000000100000000000000FF",
        "not-a-wal-file",
    ] {
        let r = s.cairn(&[
            "wal",
            "fetch",
            "--system-id",
            &sysid,
            name,
            missing.to_str().unwrap(),
        ]);
        assert_eq!(r.code, Some(1), "{name}: {}", r.stderr);
        assert_eq!(r.stderr, "", "{name}");
        assert!(!missing.exists());
    }

    // Remove the record of a middle segment: check names it.
    let list = s.json(&["wal", "list"]);
    let gone = list
        .as_array()
        .unwrap()
        .iter()
        .find(|w| w["name"] == segments[2].as_str())
        .unwrap_or_else(|| panic!("{} not listed: {list}", segments[2]));
    s.remove_wal_record(gone["id"].as_str().unwrap());
    let r = s.cairn(&["check"]);
    let err = r.fails(Some(1));
    assert!(
        err.contains(&format!("segment {} is missing", segments[2])),
        "{err}"
    );
}
