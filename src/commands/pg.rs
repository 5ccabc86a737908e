//! PostgreSQL base backups and point-in-time restores.
//!
//! `pg backup` takes a base backup with `pg_basebackup` and stores it as an
//! ordinary snapshot of the server's data directory, relation files cut at
//! 8 KiB pages (an unchanged page of a later base backup costs nothing),
//! with a [`PostgresRecord`] saying where in the WAL it starts and ends.
//!
//! `pg restore` picks the newest base backup that ended before the target
//! (a time, an LSN, a transaction id, or the end of the archive), restores
//! it, and writes the recovery settings, so that PostgreSQL started on the
//! folder fetches WAL from the repository (`wal fetch`) and replays exactly
//! to the target. `--verify` does that at once with a private server and
//! reports the row count of every table.

use crate::commands::backup::{BackupOptions, BackupReport, PageDir, backup};
use crate::commands::progress::Progress;
use crate::commands::restore::{RestoreOptions, RestoreStats};
use crate::commands::select::SnapshotSelector;
use crate::error::{Error, IoContext, Result};
use crate::format::id::Id;
use crate::format::wal::format_lsn;
use crate::repository::{Repository, SnapshotFilter};
use crate::sources::postgres::{PAGE_SIZE, VerifyServer, base_backup, conf_quote, shell_command};
use chrono::{DateTime, FixedOffset};
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::format::snapshot::PostgresRecord;
pub use crate::sources::postgres::{BaseBackupOptions, PgConnection, TableCount};

/// Relation files are cut into chunks of this many 8 KiB pages. Measured on
/// a pgbench cluster (zstd level 3): one page per chunk stores 12.5 MB of
/// 103 MB, 8 pages 8.4 MB, 16 pages 8.1 MB; the changed chunks after a
/// pgbench run cost 2.1 MB as per-page deltas and 1.4 MB as deltas of
/// 8-page chunks (a chunk's delta against its previous version is as
/// small as the pages that changed in it).
pub const PAGES_PER_CHUNK: u32 = 8;

/// What `pg backup` does.
#[derive(Clone, Debug, Default)]
pub struct PgBackupOptions {
    /// The server and its tools.
    pub conn: PgConnection,
    /// How the base backup is taken.
    pub base: BaseBackupOptions,
    /// Host name to record.
    pub host: Option<String>,
    /// Tags to record.
    pub tags: Vec<String>,
}

/// Takes a base backup and stores it as a snapshot.
pub fn pg_backup<S>(
    repo: &Repository<S>,
    opts: &PgBackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    // The server is asked first: a wrong connection or a missing tool fails
    // before anything is written.
    let copy = base_backup(&opts.conn, &opts.base)?;
    let stored = PathBuf::from(&copy.record.data_directory);
    let backup_opts = BackupOptions {
        paths: vec![copy.data.clone()],
        stored_as: vec![(copy.data.clone(), stored)],
        page_dirs: ["base", "global", "pg_tblspc"]
            .iter()
            .map(|d| PageDir {
                dir: copy.data.join(d),
                page_size: PAGE_SIZE,
                pages_per_chunk: PAGES_PER_CHUNK,
            })
            .collect(),
        host: opts.host.clone(),
        tags: opts.tags.clone(),
        postgres: Some(copy.record.clone()),
        ..Default::default()
    };
    let mut report = backup(repo, &backup_opts, progress)?;
    report.warnings.extend(
        copy.warnings
            .iter()
            .map(|w| crate::commands::backup::SourceError {
                path: PathBuf::from(&copy.record.data_directory),
                message: w.clone(),
            }),
    );
    Ok(report)
}

/// Where recovery stops.
#[derive(Clone, Debug, PartialEq)]
pub enum RecoveryTarget {
    /// Replay every archived WAL file.
    Latest,
    /// Replay to this time.
    Time(DateTime<FixedOffset>),
    /// Replay to this WAL position.
    Lsn(u64),
    /// Replay to the commit of this transaction.
    Xid(u64),
}

/// What `pg restore` does.
#[derive(Clone, Debug)]
pub struct PgRestoreOptions {
    /// A base backup snapshot to start from (default: chosen by target).
    pub snapshot: Option<String>,
    /// Only base backups passing this filter (host, tags) are considered.
    pub filter: SnapshotFilter,
    /// Only base backups of this cluster.
    pub system_id: Option<u64>,
    /// The new data directory (must not exist, or be empty).
    pub target: PathBuf,
    /// Where recovery stops.
    pub recovery: RecoveryTarget,
    /// Stop just before the target instead of just after it.
    pub exclusive: bool,
    /// `recovery_target_action`: `promote`, `pause` or `shutdown`.
    pub action: String,
    /// The `restore_command` to write, `%f`/`%p` included; empty: the
    /// prefix below followed by `wal fetch --system-id N %f %p`.
    pub restore_command: String,
    /// How to run cairn on this repository: program and global options
    /// (the CLI passes its own, password source included).
    pub restore_command_prefix: Vec<std::ffi::OsString>,
    /// Owner (user, group) to give every restored file (`None`: as stored).
    pub owner: Option<(String, u32, u32)>,
    /// Start a private server, wait for recovery and count rows.
    pub verify: bool,
    /// How long recovery may take under `verify`.
    pub verify_timeout: Duration,
    /// Where PostgreSQL's programs are (for `verify`).
    pub conn: PgConnection,
}

/// What a verification found.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Verification {
    /// Commit time of the last transaction replayed, as the server says.
    pub replayed_until: Option<String>,
    /// Rows per table.
    pub tables: Vec<TableCount>,
}

/// What `pg restore` did.
#[derive(Debug)]
pub struct PgRestoreReport {
    /// The base backup used.
    pub snapshot_id: Id,
    /// Its record.
    pub record: PostgresRecord,
    /// Files restored.
    pub stats: RestoreStats,
    /// The settings appended to `postgresql.auto.conf`.
    pub settings: Vec<String>,
    /// With `verify`: what the recovered cluster holds.
    pub verification: Option<Verification>,
}

/// Restores a base backup into `opts.target` and prepares recovery.
pub fn pg_restore<S>(
    repo: &Repository<S>,
    opts: &PgRestoreOptions,
    progress: &dyn Progress,
) -> Result<PgRestoreReport> {
    if !["promote", "pause", "shutdown"].contains(&opts.action.as_str()) {
        return Err(Error::InvalidInput(format!(
            "--target-action {}: use promote, pause or shutdown",
            opts.action
        )));
    }
    if opts.verify && opts.action == "shutdown" {
        return Err(Error::InvalidInput(
            "--verify needs --target-action promote or pause".into(),
        ));
    }
    let target = std::path::absolute(&opts.target).at(&opts.target)?;
    match std::fs::read_dir(&target) {
        Ok(mut rd) => {
            if rd.next().is_some() {
                return Err(Error::InvalidInput(format!(
                    "{}: not empty; restore into a new or empty folder",
                    target.display()
                )));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io(&target, e)),
    }
    let (snapshot_id, record) = choose_base(repo, opts)?;
    // Decoding checked it already; the folder moved into place below must
    // lie inside the staging folder whatever a snapshot says.
    record
        .validate()
        .map_err(|m| Error::corrupt(format!("snapshot {}", snapshot_id.short()), m))?;
    let parent = target
        .parent()
        .ok_or_else(|| Error::InvalidInput("cannot restore into /".into()))?;
    std::fs::create_dir_all(parent).at(parent)?;
    // Restore into a staging folder beside the target, then move the data
    // directory into place: the target never holds half a cluster that
    // looks whole.
    let staging = tempfile::Builder::new()
        .prefix(".cairn-pg-restore-")
        .tempdir_in(parent)
        .at(parent)?;
    let report = crate::commands::restore::restore(
        repo,
        &SnapshotSelector::id(&snapshot_id.to_hex()),
        &RestoreOptions {
            target: staging.path().to_path_buf(),
            includes: vec![record.data_directory.clone()],
            ..Default::default()
        },
        progress,
    )?;
    if !report.stats.errors.is_empty() {
        return Err(Error::InvalidInput(format!(
            "the base backup did not restore completely: {}",
            report.stats.errors[0]
        )));
    }
    let restored = staging
        .path()
        .join(record.data_directory.trim_start_matches('/'));
    if !restored.join("PG_VERSION").is_file() {
        return Err(Error::InvalidInput(format!(
            "snapshot {} holds no data directory at {}",
            snapshot_id.short(),
            record.data_directory
        )));
    }
    if target.exists() {
        std::fs::remove_dir(&target).at(&target)?;
    }
    std::fs::rename(&restored, &target).at(&target)?;
    drop(staging);
    let settings = recovery_settings(opts, &record);
    write_recovery(&target, &settings, snapshot_id)?;
    if let Some((_, uid, gid)) = &opts.owner {
        chown_tree(&target, *uid, *gid)?;
    }
    let verification = if opts.verify {
        Some(verify(&target, &record, opts)?)
    } else {
        None
    };
    Ok(PgRestoreReport {
        snapshot_id,
        record,
        stats: report.stats,
        settings,
        verification,
    })
}

/// The newest base backup that ended before the target.
fn choose_base<S>(repo: &Repository<S>, opts: &PgRestoreOptions) -> Result<(Id, PostgresRecord)> {
    if let Some(sel) = &opts.snapshot {
        let (id, s) = repo.find_snapshot(sel, &opts.filter)?;
        let record = s.postgres.ok_or_else(|| {
            Error::InvalidInput(format!(
                "snapshot {} is not a PostgreSQL base backup",
                id.short()
            ))
        })?;
        return Ok((id, record));
    }
    let mut bases: Vec<(Id, PostgresRecord)> = repo
        .load_snapshots()?
        .into_iter()
        .filter(|(_, s)| opts.filter.matches(s))
        .filter_map(|(id, s)| s.postgres.map(|p| (id, p)))
        .filter(|(_, p)| opts.system_id.is_none_or(|sys| p.system_id == sys))
        .collect();
    if bases.is_empty() {
        return Err(Error::InvalidInput(
            "no PostgreSQL base backup in the repository (take one with `cairn pg backup`)".into(),
        ));
    }
    let mut clusters: Vec<u64> = bases.iter().map(|(_, p)| p.system_id).collect();
    clusters.sort();
    clusters.dedup();
    if clusters.len() > 1 {
        return Err(Error::InvalidInput(format!(
            "base backups of {} clusters: choose one with --system-id ({})",
            clusters.len(),
            clusters
                .iter()
                .map(u64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    bases.sort_by_key(|(_, p)| (p.stopped, p.stop_lsn));
    let usable = |p: &PostgresRecord| match &opts.recovery {
        RecoveryTarget::Latest => true,
        RecoveryTarget::Time(t) => p.stopped < t.timestamp(),
        RecoveryTarget::Lsn(l) => p.stop_lsn <= *l,
        RecoveryTarget::Xid(x) => p.xmin != 0 && p.xmin <= *x,
    };
    let oldest = bases[0].1.clone();
    bases
        .into_iter()
        .rev()
        .find(|(_, p)| usable(p))
        .ok_or_else(|| {
            let what = match &opts.recovery {
                RecoveryTarget::Latest => unreachable!("latest accepts every base backup"),
                RecoveryTarget::Time(t) => format!(
                    "ended before {t} (the oldest ended at {})",
                    DateTime::from_timestamp(oldest.stopped, 0)
                        .map_or_else(String::new, |d| d.to_rfc3339())
                ),
                RecoveryTarget::Lsn(l) => format!(
                    "ended at or before {} (the oldest ended at {})",
                    format_lsn(*l),
                    format_lsn(oldest.stop_lsn)
                ),
                RecoveryTarget::Xid(x) => format!(
                    "ended before transaction {x} began (the oldest needs {} or later)",
                    oldest.xmin
                ),
            };
            Error::InvalidInput(format!("no base backup {what}"))
        })
}

/// The lines appended to `postgresql.auto.conf`.
fn recovery_settings(opts: &PgRestoreOptions, record: &PostgresRecord) -> Vec<String> {
    let command = if opts.restore_command.is_empty() {
        let mut argv = opts.restore_command_prefix.clone();
        argv.extend(
            [
                "wal",
                "fetch",
                "--system-id",
                &record.system_id.to_string(),
                "%f",
                "%p",
            ]
            .map(std::ffi::OsString::from),
        );
        shell_command(&argv)
    } else {
        opts.restore_command.clone()
    };
    let mut s = vec![format!("restore_command = {}", conf_quote(&command))];
    match &opts.recovery {
        RecoveryTarget::Latest => {}
        RecoveryTarget::Time(t) => s.push(format!(
            "recovery_target_time = {}",
            conf_quote(&t.format("%Y-%m-%d %H:%M:%S%.6f%:z").to_string())
        )),
        RecoveryTarget::Lsn(l) => s.push(format!(
            "recovery_target_lsn = {}",
            conf_quote(&format_lsn(*l))
        )),
        RecoveryTarget::Xid(x) => s.push(format!(
            "recovery_target_xid = {}",
            conf_quote(&x.to_string())
        )),
    }
    if opts.recovery != RecoveryTarget::Latest {
        s.push(format!(
            "recovery_target_inclusive = {}",
            if opts.exclusive { "off" } else { "on" }
        ));
        s.push(format!(
            "recovery_target_action = {}",
            conf_quote(&opts.action)
        ));
    }
    s.push("recovery_target_timeline = 'latest'".into());
    s
}

/// Appends the settings, creates `recovery.signal`, and removes what must
/// not survive into a restored cluster.
fn write_recovery(target: &Path, settings: &[String], snapshot: Id) -> Result<()> {
    use std::io::Write;
    let conf = target.join("postgresql.auto.conf");
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(&conf)
        .at(&conf)?;
    writeln!(
        f,
        "\n# Added by `cairn pg restore` (base backup {}): remove these lines once recovery is done.",
        snapshot.short()
    )
    .at(&conf)?;
    for l in settings {
        writeln!(f, "{l}").at(&conf)?;
    }
    f.sync_all().at(&conf)?;
    for gone in ["standby.signal", "postmaster.pid", "postmaster.opts"] {
        let p = target.join(gone);
        if p.exists() {
            std::fs::remove_file(&p).at(&p)?;
        }
    }
    let signal = target.join("recovery.signal");
    std::fs::write(&signal, b"").at(&signal)?;
    Ok(())
}

fn chown_tree(root: &Path, uid: u32, gid: u32) -> Result<()> {
    std::os::unix::fs::lchown(root, Some(uid), Some(gid)).at(root)?;
    let md = std::fs::symlink_metadata(root).at(root)?;
    if md.is_dir() {
        for e in std::fs::read_dir(root).at(root)? {
            let e = e.at(root)?;
            chown_tree(&e.path(), uid, gid)?;
        }
    }
    Ok(())
}

/// Starts a private server on the restored folder, waits for recovery to
/// reach its target, counts rows, stops it.
fn verify(target: &Path, record: &PostgresRecord, opts: &PgRestoreOptions) -> Result<Verification> {
    let major = record
        .server_version
        .split(['.', ' '])
        .next()
        .map(str::to_string);
    let run_as = opts.owner.as_ref().map(|(name, _, _)| name.as_str());
    let mut server = VerifyServer::start(
        target,
        major.as_deref(),
        &opts.conn,
        run_as,
        opts.verify_timeout,
    )?;
    let replayed_until = server.wait_recovered(opts.verify_timeout)?;
    let tables = server.tables()?;
    server.stop()?;
    Ok(Verification {
        replayed_until,
        tables,
    })
}
