//! Consistent online copies of live SQLite databases, and their checks.
//!
//! [`copy_database`] copies a database that other processes may be writing
//! with SQLite's online backup API into a private temporary file:
//!
//! * **WAL mode**: the copy runs inside one read transaction on the source
//!   connection, so it is exactly the database as of that transaction's
//!   start, WAL content folded in. Readers never block writers in WAL mode,
//!   so writers go on committing throughout; pages are copied a step at a
//!   time all the same, to keep each call short.
//! * **Rollback-journal modes**: a read transaction would hold writers off
//!   for the whole copy, so the copy proceeds [`SqliteOptions::step_pages`]
//!   pages per step, releasing the lock and sleeping briefly between steps.
//!   SQLite restarts a copy whose source another process changed; after each
//!   restart the step doubles, so the copy always finishes: in the worst case
//!   the last attempt copies everything in one step, holding writers off for
//!   one copy of the file (a fraction of a second per 100 MB).
//!
//! The copy, never the live file, is then checked (`PRAGMA integrity_check`
//! or `quick_check`), hashed and counted ([`inspect`]) and stored. Restore
//! runs the same inspection on the restored file and compares
//! ([`verify_restored`]).

use crate::error::{Error, Result};
use crate::format::snapshot::{CheckKind, DatabaseRecord, TableRows};
use rusqlite::backup::{Backup, StepResult};
use rusqlite::{Connection, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How databases are copied and checked.
#[derive(Clone, Debug)]
pub struct SqliteOptions {
    /// The check to run on the copy.
    pub check: CheckKind,
    /// Pages copied per step at first (doubled after each restart).
    pub step_pages: i32,
    /// Pause between steps in rollback-journal mode (writers get the lock).
    pub step_sleep: Duration,
    /// Give up when the database stays locked this long.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions {
            check: CheckKind::Integrity,
            step_pages: 1024,
            step_sleep: Duration::from_millis(2),
            busy_timeout: Duration::from_secs(600),
        }
    }
}

/// A consistent copy of a database in a private temporary directory
/// (removed when this is dropped).
#[derive(Debug)]
pub struct DatabaseCopy {
    _dir: tempfile::TempDir,
    /// The copy.
    pub path: PathBuf,
    /// What was recorded about it (path is the source's).
    pub record: DatabaseRecord,
    /// How often SQLite restarted the copy because a writer changed the source.
    pub restarts: u32,
}

/// The first 16 bytes of every SQLite database file.
pub const HEADER_MAGIC: &[u8; 16] = b"SQLite format 3\0";

/// The page size a SQLite database file declares in its 100-byte header, or
/// `None` if `header` does not start like a database file.
pub fn header_page_size(header: &[u8]) -> Option<u32> {
    if header.len() < 100 || !header.starts_with(HEADER_MAGIC) {
        return None;
    }
    let size = match u16::from_be_bytes([header[16], header[17]]) {
        1 => 65_536,
        n => u32::from(n),
    };
    (size >= 512 && size.is_power_of_two()).then_some(size)
}

fn db_err(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::InvalidInput(format!("database {}: {e}", path.display()))
}

/// A `file:` URI for `path` with `params`, percent-encoding what needs it.
fn uri(path: &Path, params: &str) -> String {
    use std::os::unix::ffi::OsStrExt;
    let mut s = String::from("file:");
    for &b in path.as_os_str().as_bytes() {
        if b.is_ascii_alphanumeric() || b"/-_.~".contains(&b) {
            s.push(b as char);
        } else {
            s.push_str(&format!("%{b:02X}"));
        }
    }
    s.push('?');
    s.push_str(params);
    s
}

/// Opens a database file read-only as an immutable file: no locks, no
/// journal or WAL files looked at or created, nothing written.
pub fn open_immutable(path: &Path) -> Result<Connection> {
    Connection::open_with_flags(
        uri(path, "immutable=1"),
        OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_URI
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(path, e))
}

/// Copies the live database `src` consistently into a temporary file and
/// inspects the copy. A database that fails its check is returned with
/// `record.check_ok == false`; the caller decides.
pub fn copy_database(src: &Path, opts: &SqliteOptions) -> Result<DatabaseCopy> {
    let md = std::fs::metadata(src).map_err(|e| Error::io(src, e))?;
    if !md.is_file() {
        return Err(db_err(src, "not a regular file"));
    }
    let source = Connection::open_with_flags(
        src,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|e| db_err(src, e))?;
    source
        .busy_timeout(opts.busy_timeout)
        .map_err(|e| db_err(src, e))?;
    // Reading the journal mode also proves it is a database at all. A
    // writer in rollback-journal mode may hold its lock for a while: wait
    // as long as the copy itself may (not a fixed few seconds).
    let journal_mode: String = source
        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
        .map_err(|e| db_err(src, e))?;
    let wal = journal_mode.eq_ignore_ascii_case("wal");

    let dir = tempfile::Builder::new()
        .prefix("cairn-sqlite-")
        .tempdir()
        .map_err(|e| Error::io(std::env::temp_dir(), e))?;
    let path = dir.path().join("copy.db");
    let mut dest = Connection::open(&path).map_err(|e| db_err(&path, e))?;
    let deadline = Instant::now() + opts.busy_timeout;
    let mut restarts = 0u32;
    if wal {
        // One read transaction for the whole copy: a consistent snapshot
        // that writers do not wait for.
        source
            .execute_batch("BEGIN DEFERRED")
            .map_err(|e| db_err(src, e))?;
        let r = source.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        });
        if let Err(e) = r {
            let _ = source.execute_batch("ROLLBACK");
            return Err(db_err(src, e));
        }
    }
    let result = (|| -> Result<()> {
        let backup = Backup::new(&source, &mut dest).map_err(|e| db_err(src, e))?;
        let mut step = opts.step_pages.max(1);
        let mut last_done = 0i64;
        loop {
            let r = backup.step(step).map_err(|e| db_err(src, e))?;
            match r {
                StepResult::Done => return Ok(()),
                StepResult::More => {
                    let p = backup.progress();
                    let done = p.pagecount as i64 - p.remaining as i64;
                    if done <= last_done {
                        // A writer changed the source: SQLite started over
                        // (each step copies something, so no progress means
                        // the copy went back to the first page).
                        restarts += 1;
                        step = step.saturating_mul(2);
                        if step as i64 >= p.pagecount as i64 {
                            step = -1; // everything in one step
                        }
                    }
                    last_done = done;
                    if !wal {
                        std::thread::sleep(opts.step_sleep);
                    }
                }
                StepResult::Busy | StepResult::Locked => {
                    std::thread::sleep(Duration::from_millis(10));
                }
                _ => {}
            }
            if Instant::now() > deadline {
                return Err(db_err(
                    src,
                    format!(
                        "could not finish a consistent copy within {}s (the database stayed locked)",
                        opts.busy_timeout.as_secs()
                    ),
                ));
            }
        }
    })();
    if wal {
        let _ = source.execute_batch("COMMIT");
    }
    result?;
    drop(dest);
    drop(source);
    let mut record = inspect(&path, opts.check)?;
    record.path = src.to_string_lossy().into_owned();
    record.journal_mode = journal_mode.to_ascii_lowercase();
    Ok(DatabaseCopy {
        _dir: dir,
        path,
        record,
        restarts,
    })
}

/// Inspects a (quiescent) database file: size, page size and count, the
/// check, the schema hash and the row counts. A check failure, or a schema
/// or table that cannot be read, gives `check_ok == false` with messages;
/// only a file that cannot be opened at all is an error.
pub fn inspect(path: &Path, check: CheckKind) -> Result<DatabaseRecord> {
    let size = std::fs::metadata(path)
        .map_err(|e| Error::io(path, e))?
        .len();
    let conn = open_immutable(path)?;
    let page_size: u32 = conn
        .query_row("PRAGMA page_size", [], |r| r.get(0))
        .map_err(|e| db_err(path, e))?;
    let page_count: u64 = conn
        .query_row("PRAGMA page_count", [], |r| r.get::<_, i64>(0))
        .map_err(|e| db_err(path, e))?
        .max(0) as u64;
    let mut messages = Vec::new();
    match check_messages(&conn, check) {
        Ok(m) => messages.extend(m),
        Err(e) => messages.push(format!("{}: {e}", check.pragma())),
    }
    let schema_hash = match schema_hash(&conn) {
        Ok(h) => h,
        Err(e) => {
            messages.push(format!("schema unreadable: {e}"));
            [0; 32]
        }
    };
    let tables = match row_counts(&conn) {
        Ok(t) => t,
        Err(e) => {
            messages.push(format!("row counts: {e}"));
            Vec::new()
        }
    };
    messages.truncate(20);
    Ok(DatabaseRecord {
        path: path.to_string_lossy().into_owned(),
        size,
        page_size,
        page_count,
        schema_hash,
        tables,
        check,
        check_ok: messages.is_empty(),
        check_messages: messages,
        journal_mode: String::new(),
    })
}

/// Runs the check; returns its complaints (empty when it says "ok").
fn check_messages(conn: &Connection, check: CheckKind) -> rusqlite::Result<Vec<String>> {
    let mut stmt = conn.prepare(&format!("PRAGMA {}", check.pragma()))?;
    let rows: Vec<String> = stmt
        .query_map([], |r| r.get::<_, String>(0))?
        .take(20)
        .collect::<rusqlite::Result<_>>()?;
    if rows.len() == 1 && rows[0] == "ok" {
        Ok(Vec::new())
    } else {
        Ok(rows)
    }
}

/// BLAKE3 over `SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY
/// type, name`: per row, per column, `00` for NULL or `01 || u64 LE length
/// || UTF-8 bytes` for text. Root page numbers are left out (VACUUM moves them).
pub fn schema_hash(conn: &Connection) -> rusqlite::Result<[u8; 32]> {
    let mut h = blake3::Hasher::new();
    let mut stmt =
        conn.prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")?;
    let mut rows = stmt.query([])?;
    while let Some(r) = rows.next()? {
        for i in 0..4 {
            match r.get::<_, Option<String>>(i)? {
                None => {
                    h.update(&[0]);
                }
                Some(s) => {
                    h.update(&[1]);
                    h.update(&(s.len() as u64).to_le_bytes());
                    h.update(s.as_bytes());
                }
            }
        }
    }
    Ok(*h.finalize().as_bytes())
}

/// One row of `sqlite_master`: a table, index, view or trigger.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct SchemaObject {
    /// `table`, `index`, `view` or `trigger`.
    pub kind: String,
    /// Its name.
    pub name: String,
    /// The `CREATE` statement (none for automatic indexes).
    pub sql: Option<String>,
}

/// The schema of the database file at `path` (opened immutable), sorted
/// by kind and name.
pub fn schema_objects(path: &Path) -> Result<Vec<SchemaObject>> {
    let conn = open_immutable(path)?;
    let read = || -> rusqlite::Result<Vec<SchemaObject>> {
        let mut stmt =
            conn.prepare("SELECT type, name, sql FROM sqlite_master ORDER BY type, name")?;
        let rows = stmt.query_map([], |r| {
            Ok(SchemaObject {
                kind: r.get(0)?,
                name: r.get(1)?,
                sql: r.get(2)?,
            })
        })?;
        rows.collect()
    };
    read().map_err(|e| db_err(path, e))
}

/// `SELECT count(*)` of every ordinary table (not virtual tables), by name.
pub fn row_counts(conn: &Connection) -> rusqlite::Result<Vec<TableRows>> {
    let names: Vec<String> = {
        let mut stmt = conn.prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND coalesce(sql, '') NOT LIKE 'CREATE VIRTUAL TABLE%' ORDER BY name",
        )?;
        stmt.query_map([], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?
    };
    let mut out = Vec::with_capacity(names.len());
    for name in names {
        let q = format!("SELECT count(*) FROM \"{}\"", name.replace('"', "\"\""));
        let rows: i64 = conn.query_row(&q, [], |r| r.get(0))?;
        out.push(TableRows {
            name,
            rows: rows.max(0) as u64,
        });
    }
    Ok(out)
}

/// Re-opens a restored database and compares it with its record: the
/// integrity check must pass and page size, page count, schema hash and row
/// counts must match. Returns the problems (empty: verified).
pub fn verify_restored(path: &Path, record: &DatabaseRecord) -> Vec<String> {
    let now = match inspect(path, CheckKind::Integrity) {
        Ok(r) => r,
        Err(e) => return vec![format!("cannot open: {e}")],
    };
    let mut problems = Vec::new();
    if !record.check_ok {
        problems.push(format!(
            "the database failed its {} at backup time",
            record.check.pragma()
        ));
    }
    if !now.check_ok {
        problems.push(format!(
            "integrity_check failed: {}",
            now.check_messages
                .iter()
                .take(3)
                .cloned()
                .collect::<Vec<_>>()
                .join("; ")
        ));
    }
    if now.page_size != record.page_size || now.page_count != record.page_count {
        problems.push(format!(
            "{} pages of {} bytes, the snapshot recorded {} of {}",
            now.page_count, now.page_size, record.page_count, record.page_size
        ));
    }
    if now.schema_hash != record.schema_hash {
        problems.push("schema differs from the snapshot's record".into());
    }
    if now.tables != record.tables {
        let mut diffs = Vec::new();
        for t in &record.tables {
            match now.tables.iter().find(|n| n.name == t.name) {
                Some(n) if n.rows != t.rows => diffs.push(format!(
                    "table {}: {} rows, recorded {}",
                    t.name, n.rows, t.rows
                )),
                None => diffs.push(format!("table {} missing", t.name)),
                _ => {}
            }
        }
        for n in &now.tables {
            if !record.tables.iter().any(|t| t.name == n.name) {
                diffs.push(format!("table {} not in the record", n.name));
            }
        }
        if diffs.is_empty() {
            diffs.push("row counts differ from the snapshot's record".into());
        }
        problems.extend(diffs);
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_page_sizes() {
        let mut h = b"SQLite format 3\0".to_vec();
        h.resize(100, 0);
        for (raw, size) in [(4096u16, Some(4096)), (1, Some(65_536)), (512, Some(512))] {
            h[16..18].copy_from_slice(&raw.to_be_bytes());
            assert_eq!(header_page_size(&h), size);
        }
        for raw in [0u16, 256, 3000, 2] {
            h[16..18].copy_from_slice(&raw.to_be_bytes());
            assert_eq!(header_page_size(&h), None);
        }
        assert_eq!(header_page_size(&h[..99]), None);
        assert_eq!(header_page_size(&[0u8; 100]), None);
    }

    #[test]
    fn uri_escapes() {
        assert_eq!(
            uri(Path::new("/a b/c?d#%.db"), "immutable=1"),
            "file:/a%20b/c%3Fd%23%25.db?immutable=1"
        );
    }

    #[test]
    fn copy_and_inspect() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("t.db");
        let c = Connection::open(&p).unwrap();
        c.execute_batch(
            "PRAGMA journal_mode=WAL; CREATE TABLE a(x); CREATE TABLE \"we\"\"ird\"(y);
             INSERT INTO a VALUES (1),(2),(3); INSERT INTO \"we\"\"ird\" VALUES (1);",
        )
        .unwrap();
        let copy = copy_database(&p, &SqliteOptions::default()).unwrap();
        let r = &copy.record;
        assert!(r.check_ok, "{:?}", r.check_messages);
        assert_eq!(r.journal_mode, "wal");
        assert_eq!(
            r.tables,
            vec![
                TableRows {
                    name: "a".into(),
                    rows: 3
                },
                TableRows {
                    name: "we\"ird".into(),
                    rows: 1
                }
            ]
        );
        assert_eq!(r.size, r.page_count * r.page_size as u64);
        assert!(verify_restored(&copy.path, r).is_empty());
        let mut other = r.clone();
        other.tables[0].rows = 4;
        assert!(!verify_restored(&copy.path, &other).is_empty());
    }
}
