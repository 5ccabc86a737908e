//! Snapshot manifests: the small sealed file that makes a backup exist.
//!
//! A snapshot is written last, after every pack and index it needs is
//! durable, so a snapshot file that exists is a snapshot that restores.

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use crate::format::id::Id;
use chrono::{DateTime, FixedOffset, TimeZone};
use serde::{Deserialize, Serialize};

/// Magic of a snapshot file (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNSN1";

/// Earliest time a snapshot or lock may record: 0001-01-01T00:00:00Z.
pub const MIN_TIME: i64 = -62_135_596_800;
/// Latest time a snapshot or lock may record: 9999-12-31T23:59:59Z.
pub const MAX_TIME: i64 = 253_402_300_799;

/// Whether `secs` lies in years 1 to 9999 (UTC), the range every reader
/// can format and compute with, in any time zone, without overflow.
pub fn time_in_range(secs: i64) -> bool {
    (MIN_TIME..=MAX_TIME).contains(&secs)
}

/// Counts recorded at the end of a backup.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Files not in the parent snapshot.
    pub files_new: u64,
    /// Files in the parent whose content or metadata changed.
    pub files_changed: u64,
    /// Files unchanged since the parent.
    pub files_unchanged: u64,
    /// Directories in the snapshot.
    pub dirs: u64,
    /// Regular files in the snapshot.
    pub total_files: u64,
    /// Logical size of all regular files in the snapshot.
    pub total_bytes: u64,
    /// Bytes read from the source.
    pub bytes_read: u64,
    /// New data and tree blobs stored.
    pub blobs_added: u64,
    /// Plaintext bytes of the new blobs.
    pub bytes_added: u64,
    /// Bytes the new blobs occupy in packs (compressed and encrypted).
    pub bytes_added_stored: u64,
    /// Source entries that could not be read.
    pub errors: u64,
    /// Backup start, Unix nanoseconds.
    pub started_ns: i64,
    /// Backup end, Unix nanoseconds.
    pub finished_ns: i64,
}

/// A snapshot manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// Snapshot time, Unix seconds.
    pub time: i64,
    /// Nanoseconds part of the time.
    pub time_nsec: u32,
    /// UTC offset of the time zone the snapshot was taken in, seconds east.
    pub utc_offset: i32,
    /// Host name.
    pub hostname: String,
    /// User name.
    pub username: String,
    /// Numeric user id of the process that made it.
    pub uid: u32,
    /// Numeric group id.
    pub gid: u32,
    /// Absolute source paths as given (lossy UTF-8), sorted.
    pub paths: Vec<String>,
    /// Tags, sorted and unique.
    pub tags: Vec<String>,
    /// Root tree: a directory whose entries lead to each source path.
    pub tree: Id,
    /// The snapshot this one was compared against, if any.
    pub parent: Option<Id>,
    /// Counts.
    pub summary: Summary,
    /// First unreadable source entries with their errors (at most 100).
    pub error_messages: Vec<String>,
    /// cairn version that wrote it.
    pub program_version: String,
    /// Databases backed up with `--sqlite`, sorted by path. Not part of the
    /// version 1 snapshot encoding: it travels in the snapshot's extension
    /// block (format-spec/v1-databases.md).
    #[serde(skip)]
    pub databases: Vec<DatabaseRecord>,
    /// The snapshot this one replaces (`cairn tag` rewrites a snapshot as a
    /// new one and then deletes the old one; while both exist, readers show
    /// only this one). Extension block, like `databases`.
    #[serde(skip)]
    pub replaces: Option<Id>,
    /// What a PostgreSQL base backup (`cairn pg backup`) records about the
    /// cluster and its WAL. Extension block, after `replaces`.
    #[serde(skip)]
    pub postgres: Option<PostgresRecord>,
}

/// What a snapshot holding a PostgreSQL base backup records
/// (format-spec/v1-postgres.md).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PostgresRecord {
    /// The cluster's system identifier (`pg_control`).
    pub system_id: u64,
    /// Server version (`server_version`, e.g. `15.18`).
    pub server_version: String,
    /// Timeline the backup started on.
    pub timeline: u32,
    /// Timeline the backup ended on.
    pub stop_timeline: u32,
    /// WAL position the backup started at (replay begins here).
    pub start_lsn: u64,
    /// WAL position the backup ended at (the cluster is consistent here).
    pub stop_lsn: u64,
    /// WAL segment size in bytes.
    pub segment_size: u32,
    /// Backup start, Unix seconds.
    pub started: i64,
    /// Backup end, Unix seconds: recovery to any later time can start here.
    pub stopped: i64,
    /// Oldest transaction still running when the backup ended (64-bit,
    /// epoch included; 0 if unknown): recovery to a transaction id at or
    /// above it can start from this backup.
    pub xmin: u64,
    /// The server's data directory, where the snapshot stores the files.
    pub data_directory: String,
}

impl PostgresRecord {
    /// Checks what readers rely on: a segment size PostgreSQL allows, and
    /// a data directory that is an absolute, normal path (restores move
    /// that folder into place: `..` must not lead elsewhere).
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !crate::format::wal::valid_segment_size(self.segment_size) {
            return Err(format!(
                "postgres: segment size {} out of range",
                self.segment_size
            ));
        }
        let d = &self.data_directory;
        let normal = d.starts_with('/')
            && d.len() > 1
            && d.len() <= 4096
            && !d.ends_with('/')
            && d[1..]
                .split('/')
                .all(|c| !c.is_empty() && c != "." && c != ".." && !c.contains('\0'));
        if !normal {
            return Err(format!(
                "postgres: data directory {d:?} is not an absolute, normal path"
            ));
        }
        if !time_in_range(self.started) || !time_in_range(self.stopped) {
            return Err("postgres: time out of range".into());
        }
        Ok(())
    }
}

/// Which SQLite check was run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CheckKind {
    /// `PRAGMA integrity_check`.
    Integrity,
    /// `PRAGMA quick_check`.
    Quick,
}

impl CheckKind {
    /// The pragma's name.
    pub fn pragma(self) -> &'static str {
        match self {
            CheckKind::Integrity => "integrity_check",
            CheckKind::Quick => "quick_check",
        }
    }
}

/// Row count of one table.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TableRows {
    /// Table name.
    pub name: String,
    /// `SELECT count(*)` at backup time.
    pub rows: u64,
}

/// What a snapshot records about one SQLite database it holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DatabaseRecord {
    /// Absolute path of the database (and of its file in the snapshot), lossy UTF-8.
    pub path: String,
    /// Size of the stored database file in bytes.
    pub size: u64,
    /// Page size in bytes.
    pub page_size: u32,
    /// Pages in the stored file.
    pub page_count: u64,
    /// BLAKE3 of the schema (format-spec/v1-databases.md).
    pub schema_hash: [u8; 32],
    /// Rows per table (ordinary tables, sorted by name).
    pub tables: Vec<TableRows>,
    /// The check that was run on the stored copy.
    pub check: CheckKind,
    /// Whether it passed.
    pub check_ok: bool,
    /// First lines of the check's output when it failed (at most 20).
    pub check_messages: Vec<String>,
    /// Journal mode of the live database at backup time (`wal`, `delete`, ...).
    pub journal_mode: String,
}

/// The snapshot extension block: `databases`, then `replaces`, then
/// `postgres`. Trailing optional fields are absent when `None` (blocks
/// written before they existed stay valid, and each snapshot keeps exactly
/// one encoding): `postgres` is written only when set, and `replaces` only
/// when set or followed by `postgres`.
#[derive(Serialize)]
struct SnapshotExt<'a> {
    databases: &'a [DatabaseRecord],
    replaces: Option<Id>,
    postgres: Option<&'a PostgresRecord>,
}

/// The optional fields of the extension block.
type ExtFields = (Vec<DatabaseRecord>, Option<Id>, Option<PostgresRecord>);

impl SnapshotExt<'_> {
    fn encode(&self) -> Result<Vec<u8>> {
        let mut out = envelope::to_postcard(&self.databases)?;
        if self.replaces.is_some() || self.postgres.is_some() {
            out.extend_from_slice(&envelope::to_postcard(&self.replaces)?);
        }
        if self.postgres.is_some() {
            out.extend_from_slice(&envelope::to_postcard(&self.postgres)?);
        }
        Ok(out)
    }

    /// Decodes a block strictly: `(databases, replaces, postgres)`.
    fn decode(bytes: &[u8], what: &str) -> Result<ExtFields> {
        let malformed =
            |e: postcard::Error| Error::corrupt(what, format!("malformed content: {e}"));
        let (databases, rest) =
            postcard::take_from_bytes::<Vec<DatabaseRecord>>(bytes).map_err(malformed)?;
        let (replaces, postgres) = if rest.is_empty() {
            (None, None)
        } else {
            let (replaces, rest) =
                postcard::take_from_bytes::<Option<Id>>(rest).map_err(malformed)?;
            if rest.is_empty() {
                if replaces.is_none() {
                    return Err(Error::corrupt(
                        what,
                        "extension block: an absent `replaces` is written as nothing, not as None",
                    ));
                }
                (replaces, None)
            } else {
                let (postgres, rest) =
                    postcard::take_from_bytes::<Option<PostgresRecord>>(rest).map_err(malformed)?;
                if !rest.is_empty() {
                    return Err(Error::corrupt(
                        what,
                        "trailing bytes after the extension block",
                    ));
                }
                if postgres.is_none() {
                    return Err(Error::corrupt(
                        what,
                        "extension block: an absent `postgres` is written as nothing, not as None",
                    ));
                }
                (replaces, postgres)
            }
        };
        if databases.is_empty() && replaces.is_none() && postgres.is_none() {
            return Err(Error::corrupt(what, "empty extension block"));
        }
        Ok((databases, replaces, postgres))
    }
}

impl Snapshot {
    /// The time as a zoned value in the snapshot's own offset.
    pub fn datetime(&self) -> DateTime<FixedOffset> {
        let off = FixedOffset::east_opt(self.utc_offset)
            .unwrap_or(FixedOffset::east_opt(0).expect("zero offset"));
        off.timestamp_opt(self.time, self.time_nsec)
            .single()
            .unwrap_or_else(|| off.timestamp_opt(0, 0).single().expect("epoch"))
    }

    /// Seals the snapshot for writing.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal_plain(key, MAGIC, &self.to_plaintext()?)
    }

    /// The plaintext: the version 1 fields, then the extension block if
    /// the snapshot holds databases or replaces another.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        let mut plain = envelope::to_postcard(self)?;
        if !self.databases.is_empty() || self.replaces.is_some() || self.postgres.is_some() {
            let ext = SnapshotExt {
                databases: &self.databases,
                replaces: self.replaces,
                postgres: self.postgres.as_ref(),
            };
            plain.extend_from_slice(&ext.encode()?);
        }
        Ok(plain)
    }

    /// Opens and validates a snapshot file. `what` names it.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<Snapshot> {
        let plain = envelope::open_plain(key, MAGIC, bytes, what)?;
        Snapshot::from_plaintext(&plain, what)
    }

    /// Decodes and validates the plaintext of a snapshot file.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<Snapshot> {
        let (mut s, rest) = postcard::take_from_bytes::<Snapshot>(plain)
            .map_err(|e| Error::corrupt(what, format!("malformed content: {e}")))?;
        if !rest.is_empty() {
            (s.databases, s.replaces, s.postgres) = SnapshotExt::decode(rest, what)?;
        }
        if s.time_nsec >= 1_000_000_000
            || FixedOffset::east_opt(s.utc_offset).is_none()
            || !time_in_range(s.time)
        {
            return Err(Error::corrupt(
                what,
                "time out of range (years 1 to 9999 are allowed)",
            ));
        }
        if let Some(p) = &s.postgres {
            p.validate().map_err(|m| Error::corrupt(what, m))?;
        }
        Ok(s)
    }

    /// Whether the snapshot has every tag in `tags`.
    pub fn has_tags(&self, tags: &[String]) -> bool {
        tags.iter().all(|t| self.tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap() -> Snapshot {
        Snapshot {
            time: 1,
            time_nsec: 0,
            utc_offset: 0,
            hostname: "h".into(),
            username: "u".into(),
            uid: 0,
            gid: 0,
            paths: vec!["/db".into()],
            tags: vec![],
            tree: Id::default(),
            parent: None,
            summary: Summary::default(),
            error_messages: vec![],
            program_version: "cairn".into(),
            databases: vec![],
            replaces: None,
            postgres: None,
        }
    }

    #[test]
    fn postgres_records_name_a_normal_data_directory() {
        let mut s = snap();
        let record = |dir: &str, size: u32| PostgresRecord {
            system_id: 1,
            server_version: "15".into(),
            timeline: 1,
            stop_timeline: 1,
            start_lsn: 1,
            stop_lsn: 2,
            segment_size: size,
            started: 1,
            stopped: 2,
            xmin: 0,
            data_directory: dir.into(),
        };
        s.postgres = Some(record("/var/lib/postgresql/15/main", 16 << 20));
        let plain = s.to_plaintext().unwrap();
        assert_eq!(Snapshot::from_plaintext(&plain, "s").unwrap(), s);
        for (dir, size) in [
            ("../etc", 16 << 20),
            ("/a/../b", 16 << 20),
            ("/a/./b", 16 << 20),
            ("/", 16 << 20),
            ("relative", 16 << 20),
            ("/a//b", 16 << 20),
            ("/a/", 16 << 20),
            ("/ok", 12345),
        ] {
            s.postgres = Some(record(dir, size));
            let plain = s.to_plaintext().unwrap();
            assert!(
                Snapshot::from_plaintext(&plain, "s").is_err(),
                "{dir} {size}"
            );
        }
    }

    #[test]
    fn extension_block_only_with_databases() {
        let mut s = snap();
        let v1 = s.to_plaintext().unwrap();
        assert_eq!(v1, envelope::to_postcard(&s).unwrap());
        s.databases.push(DatabaseRecord {
            path: "/db".into(),
            size: 8192,
            page_size: 4096,
            page_count: 2,
            schema_hash: [7; 32],
            tables: vec![TableRows {
                name: "t".into(),
                rows: 3,
            }],
            check: CheckKind::Quick,
            check_ok: true,
            check_messages: vec![],
            journal_mode: "wal".into(),
        });
        let plain = s.to_plaintext().unwrap();
        assert_eq!(Snapshot::from_plaintext(&plain, "s").unwrap(), s);
        // An empty block is not an encoding cairn writes.
        let empty = [v1.clone(), vec![0]].concat();
        assert!(Snapshot::from_plaintext(&empty, "s").is_err());
        for i in 0..plain.len() {
            let _ = Snapshot::from_plaintext(&plain[..i], "s");
        }
        // `replaces` follows the databases; absent means None.
        s.replaces = Some(Id([9; 32]));
        let with = s.to_plaintext().unwrap();
        assert_eq!(with.len(), plain.len() + 33);
        assert_eq!(&with[..plain.len()], &plain[..]);
        assert_eq!(Snapshot::from_plaintext(&with, "s").unwrap(), s);
        s.databases.clear();
        let only = s.to_plaintext().unwrap();
        assert_eq!(only, [v1.clone(), vec![0, 1], vec![9; 32]].concat());
        assert_eq!(Snapshot::from_plaintext(&only, "s").unwrap(), s);
        // An explicit None is not the encoding.
        let none = [v1, vec![0, 0]].concat();
        assert!(Snapshot::from_plaintext(&none, "s").is_err());
    }
}
