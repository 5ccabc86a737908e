//! PostgreSQL's own tools, driven for base backups and restores:
//! `pg_basebackup` makes a consistent copy of a running cluster,
//! `psql` asks the server what the copy does not say, and `pg_ctl` starts a
//! private server on a restored data directory to prove that it recovers.
//!
//! The copy is a plain-format base backup with the WAL it needs streamed
//! alongside (`-X stream`), so it is consistent on its own; what lies
//! after its end comes from the WAL archive (`cairn wal push`). Its
//! `backup_label` and `backup_manifest` give the start and end WAL
//! positions and timelines; `global/pg_control` starts with the system
//! identifier.

use crate::error::{Error, IoContext, Result};
use crate::format::snapshot::PostgresRecord;
use crate::format::wal::{parse_lsn, valid_segment_size};
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How to reach the server and its tools.
#[derive(Clone, Debug, Default)]
pub struct PgConnection {
    /// A connection string or database name for `-d` (default: libpq's
    /// environment, `PGHOST`, `PGPORT`, `PGUSER`, ...).
    pub dbname: Option<String>,
    /// Where `pg_basebackup`, `psql`, `pg_ctl` live (default: `PATH`, then
    /// the newest `/usr/lib/postgresql/*/bin`).
    pub bin_dir: Option<PathBuf>,
}

impl PgConnection {
    /// The path of PostgreSQL program `name`, preferring `major`'s.
    pub fn program(&self, name: &str, major: Option<&str>) -> PathBuf {
        if let Some(d) = &self.bin_dir {
            return d.join(name);
        }
        if let Some(m) = major {
            let p = PathBuf::from(format!("/usr/lib/postgresql/{m}/bin")).join(name);
            if p.exists() {
                return p;
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            for d in std::env::split_paths(&path) {
                if d.join(name).is_file() {
                    return d.join(name);
                }
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_str()?.parse::<u32>().ok()?;
                Some((v, e.path().join("bin").join(name)))
            })
            .filter(|(_, p)| p.exists())
            .collect();
        versions.sort();
        versions
            .pop()
            .map_or_else(|| PathBuf::from(name), |(_, p)| p)
    }

    /// Runs one SQL statement with `psql` and returns its unaligned,
    /// tuples-only output (fields separated by `|`).
    pub fn query(&self, sql: &str) -> Result<String> {
        let mut cmd = Command::new(self.program("psql", None));
        cmd.args(["-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-c", sql]);
        if let Some(d) = &self.dbname {
            cmd.arg("-d").arg(d);
        }
        run_capture(&mut cmd, "psql")
    }
}

/// Runs a command and returns its standard output; fails with its
/// standard error's last lines.
fn run_capture(cmd: &mut Command, what: &str) -> Result<String> {
    let out = cmd.stdin(Stdio::null()).output().map_err(|e| {
        Error::InvalidInput(format!(
            "cannot run {what}: {e} (is PostgreSQL's client installed? --pg-bin DIR)"
        ))
    })?;
    if !out.status.success() {
        return Err(Error::InvalidInput(format!(
            "{what} failed ({}): {}",
            out.status,
            last_lines(&String::from_utf8_lossy(&out.stderr), 3)
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

fn last_lines(s: &str, n: usize) -> String {
    let lines: Vec<&str> = s.lines().filter(|l| !l.trim().is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join(" / ")
}

/// A base backup in a private temporary directory (removed on drop).
pub struct BaseBackupCopy {
    _dir: tempfile::TempDir,
    /// The copied data directory.
    pub data: PathBuf,
    /// What the snapshot will record.
    pub record: PostgresRecord,
    /// What the server's settings say about archiving, when it looks wrong.
    pub warnings: Vec<String>,
}

/// Options of a base backup.
#[derive(Clone, Debug, Default)]
pub struct BaseBackupOptions {
    /// Where the temporary copy goes (default: the system's temp folder).
    pub temp_dir: Option<PathBuf>,
    /// Let the server spread the starting checkpoint (default: fast).
    pub spread_checkpoint: bool,
    /// Label shown in `pg_stat_progress_basebackup` and `backup_label`.
    pub label: String,
}

/// Takes a base backup of the running server with `pg_basebackup`.
pub fn base_backup(conn: &PgConnection, opts: &BaseBackupOptions) -> Result<BaseBackupCopy> {
    let tablespaces = conn.query(
        "SELECT count(*) FROM pg_tablespace WHERE spcname NOT IN ('pg_default', 'pg_global')",
    )?;
    if tablespaces.trim() != "0" {
        return Err(Error::InvalidInput(
            "the cluster has tablespaces outside its data directory; `cairn pg backup` does not support them yet".into(),
        ));
    }
    let version = conn.query("SELECT current_setting('server_version')")?;
    let mut warnings = Vec::new();
    let archiving = conn
        .query(
            "SELECT current_setting('archive_mode') || '|' || current_setting('archive_command')",
        )
        .unwrap_or_default();
    match archiving.split_once('|') {
        Some(("off", _)) => warnings.push(
            "archive_mode is off: this base backup restores only to its own end; set archive_mode = on and archive_command = 'cairn ... wal push %p' for point-in-time recovery".to_string(),
        ),
        Some((_, command)) if !command.contains("wal push") => warnings.push(format!(
            "archive_command ({command:?}) does not run `cairn ... wal push`: point-in-time recovery from this repository needs the WAL archived into it"
        )),
        _ => {}
    }
    let data_directory = conn
        .query("SELECT current_setting('data_directory')")
        .ok()
        .filter(|d| d.starts_with('/'));
    let dir = match &opts.temp_dir {
        Some(t) => tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir_in(t)
            .at(t)?,
        None => tempfile::Builder::new()
            .prefix("cairn-pg-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?,
    };
    let data = dir.path().join("data");
    let major = version.split(['.', ' ']).next().map(str::to_string);
    let mut cmd = Command::new(conn.program("pg_basebackup", major.as_deref()));
    cmd.arg("-D")
        .arg(&data)
        .args(["-X", "stream", "--no-sync", "-c"])
        .arg(if opts.spread_checkpoint {
            "spread"
        } else {
            "fast"
        })
        .arg("-l")
        .arg(&opts.label);
    if let Some(d) = &conn.dbname {
        cmd.arg("-d").arg(d);
    }
    let started = chrono::Utc::now().timestamp();
    run_capture(&mut cmd, "pg_basebackup")?;
    let stopped = chrono::Utc::now().timestamp();
    // Transactions at or after the oldest one still running now commit
    // after the backup's end.
    let xmin = conn
        .query("SELECT txid_snapshot_xmin(txid_current_snapshot())")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        .unwrap_or(0);
    let label = std::fs::read_to_string(data.join("backup_label")).at(data.join("backup_label"))?;
    let manifest_path = data.join("backup_manifest");
    let manifest = std::fs::read(&manifest_path).map_err(|e| {
        Error::InvalidInput(format!(
            "{}: {e} (pg_basebackup of PostgreSQL 13 or later writes it)",
            manifest_path.display()
        ))
    })?;
    let (timeline, start_lsn, stop_timeline, stop_lsn) = wal_range(&manifest)?;
    let label_start = label
        .lines()
        .find_map(|l| l.strip_prefix("START WAL LOCATION: "))
        .and_then(|v| parse_lsn(v.split(' ').next().unwrap_or("")));
    if label_start.is_some_and(|l| l != start_lsn) {
        return Err(Error::InvalidInput(
            "backup_label and backup_manifest disagree about the start of the backup".into(),
        ));
    }
    let system_id = control_system_id(&data)?;
    let segment_size = segment_size(&data, conn)?;
    let record = PostgresRecord {
        system_id,
        server_version: version,
        timeline,
        stop_timeline,
        start_lsn,
        stop_lsn,
        segment_size,
        started,
        stopped,
        xmin,
        data_directory: data_directory.unwrap_or_else(|| format!("/postgresql/{system_id}")),
    };
    Ok(BaseBackupCopy {
        _dir: dir,
        data,
        record,
        warnings,
    })
}

/// `(start timeline, start LSN, end timeline, end LSN)` from a backup
/// manifest's `WAL-Ranges`.
fn wal_range(manifest: &[u8]) -> Result<(u32, u64, u32, u64)> {
    let bad = |m: &str| Error::InvalidInput(format!("backup_manifest: {m}"));
    let v: serde_json::Value =
        serde_json::from_slice(manifest).map_err(|e| bad(&format!("not JSON: {e}")))?;
    let ranges = v["WAL-Ranges"]
        .as_array()
        .filter(|r| !r.is_empty())
        .ok_or_else(|| bad("no WAL-Ranges"))?;
    let mut parsed = Vec::new();
    for r in ranges {
        let tli = r["Timeline"].as_u64().and_then(|t| u32::try_from(t).ok());
        let start = r["Start-LSN"].as_str().and_then(parse_lsn);
        let end = r["End-LSN"].as_str().and_then(parse_lsn);
        match (tli, start, end) {
            (Some(t), Some(s), Some(e)) => parsed.push((t, s, e)),
            _ => return Err(bad("malformed WAL range")),
        }
    }
    let first = parsed.iter().min_by_key(|r| r.1).expect("non-empty");
    let last = parsed.iter().max_by_key(|r| r.2).expect("non-empty");
    Ok((first.0, first.1, last.0, last.2))
}

/// The system identifier: the first 8 bytes of `global/pg_control`.
pub fn control_system_id(data: &Path) -> Result<u64> {
    let p = data.join("global/pg_control");
    let bytes = std::fs::read(&p).at(&p)?;
    let b: [u8; 8] = bytes
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| Error::InvalidInput(format!("{}: too short", p.display())))?;
    Ok(u64::from_le_bytes(b))
}

/// The WAL segment size: that of the segments the copy holds, else the
/// server's setting.
fn segment_size(data: &Path, conn: &PgConnection) -> Result<u32> {
    let from_files = std::fs::read_dir(data.join("pg_wal"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| {
            e.file_name()
                .to_str()
                .is_some_and(|n| n.len() == 24 && n.bytes().all(|b| b.is_ascii_hexdigit()))
        })
        .filter_map(|e| e.metadata().ok())
        .filter_map(|m| u32::try_from(m.len()).ok())
        .find(|s| valid_segment_size(*s));
    if let Some(s) = from_files {
        return Ok(s);
    }
    let setting = conn.query("SELECT setting FROM pg_settings WHERE name = 'wal_segment_size'")?;
    setting
        .trim()
        .parse::<u32>()
        .ok()
        .filter(|s| valid_segment_size(*s))
        .ok_or_else(|| Error::InvalidInput(format!("unexpected wal_segment_size {setting:?}")))
}

/// Whether `path` (relative to a data directory) is a relation file, cut at
/// 8 KiB page boundaries so unchanged pages deduplicate.
pub fn is_relation_file(rel: &Path) -> bool {
    let mut c = rel.components();
    matches!(
        c.next().and_then(|c| c.as_os_str().to_str()),
        Some("base" | "global" | "pg_tblspc")
    )
}

/// PostgreSQL's page size.
pub const PAGE_SIZE: u32 = 8192;

/// A private server started on a restored data directory to watch it
/// recover; stopped on drop.
pub struct VerifyServer {
    pg_ctl: PathBuf,
    data: PathBuf,
    socket_dir: tempfile::TempDir,
    /// Where the server logs.
    pub log: PathBuf,
    port: u16,
    run_as: Option<String>,
    conn: PgConnection,
    stopped: bool,
}

/// The result of [`VerifyServer::tables`]: rows per table.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TableCount {
    /// Database.
    pub database: String,
    /// `schema.table`.
    pub table: String,
    /// `count(*)`.
    pub rows: u64,
}

fn command_as(program: &Path, run_as: Option<&str>) -> Command {
    match run_as {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

impl VerifyServer {
    /// Starts PostgreSQL `major` on `data` (as `run_as` if given), on a
    /// Unix socket only, with archiving off (a check must not archive a
    /// new timeline into the repository).
    pub fn start(
        data: &Path,
        major: Option<&str>,
        bin: &PgConnection,
        run_as: Option<&str>,
        timeout: Duration,
    ) -> Result<VerifyServer> {
        let socket_dir = tempfile::Builder::new()
            .prefix("cairn-pg-verify-")
            .tempdir()
            .map_err(|e| Error::io(Path::new("temporary directory"), e))?;
        if let Some(user) = run_as {
            let _ = Command::new("chown")
                .arg(user)
                .arg(socket_dir.path())
                .status();
        }
        let log = socket_dir.path().join("server.log");
        let port = 54_000 + (std::process::id() % 1000) as u16;
        let pg_ctl = bin.program("pg_ctl", major);
        let opts = format!(
            "-c listen_addresses='' -k {} -p {port} -c archive_mode=off -c hot_standby=on",
            socket_dir.path().display()
        );
        let status = command_as(&pg_ctl, run_as)
            .arg("-D")
            .arg(data)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t"])
            .arg(timeout.as_secs().max(1).to_string())
            .arg("-o")
            .arg(&opts)
            .arg("start")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::InvalidInput(format!("cannot run {}: {e}", pg_ctl.display())))?;
        let mut server = VerifyServer {
            pg_ctl,
            data: data.to_path_buf(),
            conn: PgConnection {
                dbname: Some(format!(
                    "host={} port={port} dbname=postgres user={}",
                    socket_dir.path().display(),
                    run_as.map_or_else(crate::sys::username, str::to_string)
                )),
                bin_dir: bin.bin_dir.clone(),
            },
            socket_dir,
            log,
            port,
            run_as: run_as.map(str::to_string),
            stopped: false,
        };
        if !status.success() {
            server.stopped = true;
            return Err(Error::InvalidInput(format!(
                "the restored cluster did not start: {}",
                server.log_tail()
            )));
        }
        Ok(server)
    }

    /// The last lines of the server log.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let important: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("FATAL") || l.contains("ERROR") || l.contains("PANIC"))
            .collect();
        if important.is_empty() {
            last_lines(&text, 3)
        } else {
            important[important.len().saturating_sub(3)..].join(" / ")
        }
    }

    fn query(&self, db: &str, sql: &str) -> Result<String> {
        let conn = PgConnection {
            dbname: self.conn.dbname.as_ref().map(|d| {
                d.replace(
                    "dbname=postgres",
                    &format!("dbname='{}'", db.replace('\'', "\\'")),
                )
            }),
            bin_dir: self.conn.bin_dir.clone(),
        };
        conn.query(sql)
    }

    /// Waits until recovery has ended (promoted) or paused at its target.
    /// Returns the last replayed transaction's commit time, if known.
    pub fn wait_recovered(&self, timeout: Duration) -> Result<Option<String>> {
        let deadline = Instant::now() + timeout;
        loop {
            let state = self.query(
                "postgres",
                "SELECT pg_is_in_recovery(), CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() ELSE '' END, coalesce(pg_last_xact_replay_timestamp()::text, '')",
            );
            match state {
                Ok(s) => {
                    let f: Vec<&str> = s.split('|').collect();
                    let in_recovery = f.first() == Some(&"t");
                    let paused = f.get(1) == Some(&"paused");
                    if !in_recovery || paused {
                        let t = f.get(2).map(|t| t.to_string()).filter(|t| !t.is_empty());
                        return Ok(t);
                    }
                }
                Err(e) => {
                    if !self.running() {
                        return Err(Error::InvalidInput(format!(
                            "recovery failed: {}",
                            self.log_tail()
                        )));
                    }
                    if Instant::now() >= deadline {
                        return Err(e);
                    }
                }
            }
            if Instant::now() >= deadline {
                return Err(Error::InvalidInput(format!(
                    "recovery did not finish within {}s: {}",
                    timeout.as_secs(),
                    self.log_tail()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn running(&self) -> bool {
        command_as(&self.pg_ctl, self.run_as.as_deref())
            .arg("-D")
            .arg(&self.data)
            .arg("status")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Exact row counts of every ordinary table of every database.
    pub fn tables(&self) -> Result<Vec<TableCount>> {
        let dbs = self.query(
            "postgres",
            "SELECT datname FROM pg_database WHERE datallowconn AND NOT datistemplate ORDER BY 1",
        )?;
        let mut out = Vec::new();
        for db in dbs.lines().map(str::trim).filter(|d| !d.is_empty()) {
            let sql = "SELECT string_agg(format('SELECT %L, count(*) FROM %I.%I', n.nspname || '.' || c.relname, n.nspname, c.relname), ' UNION ALL ' ORDER BY n.nspname, c.relname) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' AND NOT c.relispartition";
            let union = self.query(db, sql)?;
            if union.trim().is_empty() {
                continue;
            }
            for line in self.query(db, &union)?.lines() {
                if let Some((t, n)) = line.rsplit_once('|') {
                    out.push(TableCount {
                        database: db.to_string(),
                        table: t.to_string(),
                        rows: n.trim().parse().unwrap_or(0),
                    });
                }
            }
        }
        Ok(out)
    }

    /// Stops the server (fast shutdown).
    pub fn stop(&mut self) -> Result<()> {
        if self.stopped {
            return Ok(());
        }
        self.stopped = true;
        let status = command_as(&self.pg_ctl, self.run_as.as_deref())
            .arg("-D")
            .arg(&self.data)
            .args(["-m", "fast", "-w", "stop"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map_err(|e| Error::InvalidInput(format!("cannot run pg_ctl: {e}")))?;
        if !status.success() && self.running() {
            return Err(Error::InvalidInput(
                "the verification server did not stop".into(),
            ));
        }
        let _ = (&self.socket_dir, self.port);
        Ok(())
    }
}

impl Drop for VerifyServer {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// Quotes `arg` for `/bin/sh` (PostgreSQL runs `restore_command` through it).
pub fn shell_quote(arg: &std::ffi::OsStr) -> String {
    use std::os::unix::ffi::OsStrExt;
    let s = String::from_utf8_lossy(arg.as_bytes());
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/-_.=:,+@%".contains(&b))
    {
        return s.into_owned();
    }
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// A command line from program and arguments, quoted for `/bin/sh`.
pub fn shell_command(args: &[OsString]) -> String {
    args.iter()
        .map(|a| shell_quote(a))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Quotes a value for `postgresql.conf`.
pub fn conf_quote(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_ranges() {
        let m = br#"{"PostgreSQL-Backup-Manifest-Version": 1, "WAL-Ranges": [{ "Timeline": 1, "Start-LSN": "0/2000028", "End-LSN": "0/2000100" }]}"#;
        assert_eq!(wal_range(m).unwrap(), (1, 0x200_0028, 1, 0x200_0100));
        assert!(wal_range(b"{}").is_err());
        assert!(wal_range(b"nonsense").is_err());
        assert!(wal_range(br#"{"WAL-Ranges": [{"Timeline": "x"}]}"#).is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("a/b".as_ref()), "a/b");
        assert_eq!(shell_quote("it's".as_ref()), "'it'\\''s'");
        assert_eq!(shell_quote("%p".as_ref()), "%p");
        assert_eq!(conf_quote("a'b"), "'a''b'");
        assert!(is_relation_file(Path::new("base/1/1259")));
        assert!(!is_relation_file(Path::new(
            "pg_wal/000000010000000000000001"
        )));
    }
}
