//! Command-line definitions (clap derive).

use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// cairn: encrypted, deduplicating backups.
#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Encrypted, deduplicating backups of files and databases",
    after_help = "Examples:
  export CAIRN_REPOSITORY=/srv/backup/repo CAIRN_PASSWORD_FILE=~/.cairn-pass
  cairn init
  cairn backup ~/projects --tag daily
  cairn snapshots
  cairn restore latest --target /tmp/restore

Exit codes: 0 ok, 1 error, 3 snapshot saved but some files unreadable,
10 repository does not exist, 11 repository locked, 12 wrong password."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Options every command takes.
#[derive(Args, Debug)]
pub struct Global {
    /// Repository location: a local directory, or s3:http[s]://HOST[:PORT]/BUCKET[/PREFIX],
    /// or s3:BUCKET[/PREFIX] for AWS
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        value_name = "LOCATION"
    )]
    pub repo: Option<std::ffi::OsString>,
    /// Backend option KEY=VALUE (repeatable): s3.region, s3.storage-class,
    /// s3.connections, s3.if-none-match, s3.timeout, s3.retries
    #[arg(short = 'o', long = "option", global = true, value_name = "KEY=VALUE")]
    pub options: Vec<String>,
    /// Read the repository password from this file (its contents, less one trailing newline)
    #[arg(long, env = "CAIRN_PASSWORD_FILE", global = true, value_name = "FILE")]
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password
    #[arg(
        long,
        env = "CAIRN_PASSWORD_COMMAND",
        global = true,
        value_name = "CMD"
    )]
    pub password_command: Option<String>,
    /// Print machine-readable JSON instead of text
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only errors (no progress, no summary)
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// Wait up to this long for a conflicting lock to go away (e.g. 30s, 5m)
    #[arg(long, global = true, value_name = "DURATION", default_value = "0s")]
    pub retry_lock: String,
    /// Cache a remote repository's metadata here (default: $XDG_CACHE_HOME/cairn or ~/.cache/cairn)
    #[arg(long, env = "CAIRN_CACHE_DIR", global = true, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
    /// Use no local cache for a remote repository
    #[arg(long, global = true)]
    pub no_cache: bool,
    /// Job configuration file for run, status and schedule (default:
    /// /etc/cairn/cairn.toml, then $XDG_CONFIG_HOME/cairn/cairn.toml)
    #[arg(long, env = "CAIRN_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Do not take a shared lock (for read-only repositories; never for backup)
    #[arg(long, global = true)]
    pub no_lock: bool,
}

#[derive(Subcommand, Debug)]
#[allow(clippy::large_enum_variant)]
pub enum Command {
    /// Create a new repository
    #[command(after_help = "Examples:
  cairn -r /srv/backup/repo init
  cairn -r s3:https://s3.example.com/backups/app init
  cairn -r s3:my-bucket/app init --from-repo /srv/backup/repo --copy-chunker-params
  cairn -r s3:my-locked-bucket/app init --object-lock 30d      # ransomware-resistant")]
    Init(InitArgs),
    /// Back up files and directories into a new snapshot
    #[command(after_help = "Examples:
  cairn backup /etc /home --tag nightly
  cairn backup ~/data --exclude '*.tmp' --exclude-file ~/.cairn-excludes
  cairn backup /srv/app --host app01 --time '2026-11-28 14:00'
  cairn backup /srv/app --sqlite /srv/app/state.db
  pg_dump mydb | cairn backup --stdin --stdin-filename mydb.sql
  cairn backup --stdin-from-command --stdin-filename mydb.sql -- pg_dump mydb")]
    Backup(BackupArgs),
    /// List snapshots
    #[command(after_help = "Examples:
  cairn snapshots
  cairn snapshots --host app01 --tag nightly --json
  cairn snapshots --latest 1 --group-by host     # the newest of each host
  cairn snapshots --compact")]
    Snapshots(SnapshotsArgs),
    /// List files in a snapshot
    #[command(after_help = "Examples:
  cairn ls latest
  cairn ls 1a2b3c4d /home/me/projects --json
  cairn ls --at '2026-11-28 09:00' --host app01 /etc     # the snapshot of that moment
  cairn ls latest --path /srv/app -l")]
    Ls(LsArgs),
    /// Write one file of a snapshot to standard output
    #[command(after_help = "Examples:
  cairn dump latest /etc/hosts > hosts
  cairn dump --at '2026-11-24 18:00' /srv/app/config.yml")]
    Dump(DumpArgs),
    /// Search snapshots for files and directories (or for what uses a blob, tree or pack)
    #[command(
        after_help = "Patterns are matched like --exclude: a pattern starting with / against the
whole path, any other against its last components (*.py, src/*.rs); * does not
cross /, ** does.

Examples:
  cairn find '*.sqlite' --host app01
  cairn find -i readme.md --long
  cairn find settings.py --oldest 2026-11-01 --newest '2026-11-20 12:00'
  cairn find --snapshot latest --snapshot 1a2b3c4d '/etc/**'
  cairn find --at '2026-11-28 09:00' nginx.conf
  cairn find --blob 3f2a9c41          # which files and snapshots use this blob (named by check)
  cairn find --tree 8be0f1d2 --json
  cairn find --pack 5e6f7a8b"
    )]
    Find(FindArgs),
    /// Show what changed between two snapshots
    #[command(after_help = "Each changed entry is printed with restic's mark:
  +  added      -  removed      M  content modified
  T  type changed (a file became a directory, ...)
  U  metadata only (mode, owner, modification time; with --metadata)
then totals, and for databases backed up with --sqlite the schema changes and
row counts per table.

A snapshot is an id prefix or \"latest\", optionally followed by :PATH to compare
one directory. --at TIME stands for the snapshot of that moment and fills the
snapshots in order: `diff --at T latest` compares T with the newest.

Examples:
  cairn diff 1a2b3c4d 5e6f7a8b
  cairn diff 1a2b3c4d:/srv/app latest:/srv/app --metadata
  cairn diff --at '2026-11-27 09:00' --at '2026-11-28 09:00' --host app01
  cairn diff --at '2026-11-27 09:00' latest --json")]
    Diff(DiffArgs),
    /// Add, remove or replace the tags of existing snapshots
    #[command(
        after_help = "Each changed snapshot is written anew with the new tags (its id changes) and
the old one is then deleted; an interruption leaves no duplicate visible.

Examples:
  cairn tag latest --add keep
  cairn tag 1a2b3c4d 5e6f7a8b --remove nightly --add weekly
  cairn tag --host app01 --tag nightly --set archive      # every matching snapshot"
    )]
    Tag(TagArgs),
    /// Restore a snapshot into a directory
    #[command(after_help = "Examples:
  cairn restore latest --target /tmp/restore
  cairn restore 1a2b3c4d --target /tmp/r --include /home/me/projects
  cairn restore --at '2026-11-28 09:00' --host app01 --target /tmp/r --verify")]
    Restore(RestoreArgs),
    /// Serve the snapshots as a read-only file system (FUSE) until Ctrl-C
    #[command(after_help = "Examples:
  mkdir -p /mnt/backup && cairn mount /mnt/backup
  cairn mount /mnt/backup --host app01 --tag nightly
  cairn mount /mnt/backup --allow-other

Layout: ids/<full id>/, snapshots/<time>/ and snapshots/latest, hosts/<host>/<time>/,
tags/<tag>/<time>/. <time> is the snapshot's local time to the second, e.g.
2026-12-02T05:47:55Z or 2026-12-02T06:47:55+01:00; a second snapshot of the same
second gets -1. New snapshots appear without remounting. Stop with Ctrl-C (or
SIGTERM), or `umount /mnt/backup`.")]
    Mount(MountArgs),
    /// Show repository objects (config, snapshot, key, index, pack, tree) as JSON
    #[command(
        after_help = "Examples:\n  cairn cat config\n  cairn cat snapshot latest\n  cairn cat snapshot --at '2026-11-28 09:00' --host app01\n  cairn cat key"
    )]
    Cat(CatArgs),
    /// Copy snapshots from another repository (those this one lacks)
    #[command(after_help = "Examples:
  cairn -r s3:my-bucket/app copy --from-repo /srv/backup/repo --from-password-file ~/.pw
  cairn -r /srv/backup/repo copy --from-repo s3:my-bucket/app --host app01 --dry-run
  cairn -r s3:my-bucket/app copy --from-repo /srv/backup/repo 1a2b3c4d latest --json")]
    Copy(CopyArgs),
    /// Remove snapshots according to a retention policy (or by id)
    #[command(after_help = "Examples:
  cairn forget --keep-hourly 24 --keep-daily 7 --keep-weekly 5 --keep-monthly 12 --dry-run
  cairn forget --keep-within 30d --keep-tag important --prune
  cairn forget 1a2b3c4d 5e6f7a8b")]
    Forget(ForgetArgs),
    /// Delete data no snapshot references and repack mostly-unused packs
    #[command(
        after_help = "Backups may run while prune works. Prune marks what nothing needs; a later
prune deletes it once it has been marked for --delete-grace (24h), unless a
snapshot needs it again. On a bucket with Object Lock, nothing is deleted
before its retention ends, and prune extends the retention of what kept
snapshots need.

Examples:
  cairn prune --dry-run
  cairn prune --max-unused 10%
  cairn prune --instant-delete      # nobody else writes to this repository"
    )]
    Prune(PruneCmd),
    /// Verify the repository's structure and, optionally, its data
    #[command(after_help = "Examples:
  cairn check
  cairn check --read-data
  cairn check --read-data-subset 1/7     # one seventh of the packs (run 1/7 .. 7/7 on seven days)
  cairn check --read-data-subset 10%
  cairn check --max-age 26h              # for cron: fail if a host/path group has no recent snapshot")]
    Check(CheckArgs),
    /// Show repository statistics (sizes, dedup and compression ratios)
    #[command(after_help = "Example:\n  cairn stats --json")]
    Stats,
    /// Remove stale locks left by processes that died
    #[command(after_help = "Example:\n  cairn unlock")]
    Unlock {
        /// Remove all locks, even those of live processes
        #[arg(long)]
        remove_all: bool,
    },
    /// Repair repository metadata
    #[command(subcommand, after_help = "Example:\n  cairn repair index")]
    Repair(RepairCommand),
    /// Run the jobs of the configuration file: backup, retention, copies, verification
    #[command(
        after_help = "Each job runs in file order: start ping, before hooks, backup, forget (and
prune when due), copy to each copy_to repository, check when due, after or
failure hooks, end ping. A failing job does not stop the others; a job whose
previous run is still going is skipped.

Exit codes: 0 every job succeeded (or was skipped), 4 a job failed,
1 cairn could not start (configuration, unknown job).

Examples:
  cairn run                            # every job in /etc/cairn/cairn.toml
  cairn --config ./cairn.toml run databases config
  cairn run --json > /var/log/cairn/last-run.json"
    )]
    Run(RunArgs),
    /// Show each job's last success, freshness, errors and snapshot counts
    #[command(
        after_help = "Exit codes: 0 every job ok, 5 a job is stale (no success within its
max_age), 6 a job is failing (last run failed, damage found, repository
unreadable), 1 error.

Examples:
  cairn status
  cairn status --json
  cairn status --prometheus > /var/lib/node_exporter/textfile/cairn.prom"
    )]
    Status(StatusArgs),
    /// Print or install systemd timers (or crontab lines) for the jobs
    #[command(after_help = "Examples:
  cairn schedule                        # show the systemd units for every job with a schedule
  cairn schedule --install              # write them to /etc/systemd/system
  cairn schedule --cron --install       # or one file /etc/cron.d/cairn
  cairn schedule --cron --install --dry-run")]
    Schedule(ScheduleArgs),
    /// Manage the repository's key files (passwords)
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn key list\n  cairn key add --new-password-file ~/.other-pass\n  cairn key remove 5e6f7a8b"
    )]
    Key(KeyCommand),
    /// Archive and fetch PostgreSQL WAL (archive_command / restore_command)
    #[command(
        subcommand,
        after_help = "In postgresql.conf (PostgreSQL runs both in its data directory):
  archive_mode = on
  archive_command = 'cairn -r /srv/backup/pg --password-file /etc/cairn/pass wal push %p'

Restores written by `cairn pg restore` set the matching restore_command:
  restore_command = 'cairn -r /srv/backup/pg --password-file /etc/cairn/pass wal fetch %f %p'

Examples:
  cairn wal list
  cairn wal list --json"
    )]
    Wal(WalCommand),
    /// PostgreSQL base backups and point-in-time restores
    #[command(
        subcommand,
        after_help = "Examples:
  cairn pg backup                                   # libpq's PGHOST, PGPORT, PGUSER apply
  cairn pg backup -d 'host=db1 user=backup' --tag weekly
  cairn pg restore --target /var/lib/postgresql/15/restored --at '2026-12-02 14:05:00'
  cairn pg restore --target /tmp/pitr --lsn 0/5000A28 --verify
  cairn pg restore --target /tmp/latest --verify --owner postgres"
    )]
    Pg(PgCommand),
}

/// Which cluster a WAL file belongs to.
#[derive(Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The cluster's system identifier (default: from global/pg_control of the data directory)
    #[arg(long, value_name = "N")]
    pub system_id: Option<u64>,
    /// The data directory (default: the working directory, where PostgreSQL runs the command)
    #[arg(long, value_name = "DIR")]
    pub pgdata: Option<PathBuf>,
    /// Keep the unlocked key this long in the cache directory (mode 0600) so
    /// that the next call skips the password's key stretching; 0 disables
    #[arg(long, value_name = "DURATION", default_value = "10m")]
    pub key_cache_ttl: String,
}

#[derive(Subcommand, Debug)]
pub enum WalCommand {
    /// Archive one WAL file (archive_command): exit 0 once it is durable
    #[command(
        after_help = "Exit codes: 0 archived (or archived before with identical content),
1 not archived (PostgreSQL retries).

Example:
  archive_command = 'cairn -r /srv/backup/pg --password-file /etc/cairn/pass wal push %p'"
    )]
    Push {
        /// The file (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        path: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// Restore one WAL file (restore_command)
    #[command(
        after_help = "Exit codes: 0 restored, 1 not archived (PostgreSQL ends recovery there),
126 any other failure (PostgreSQL stops recovery instead of ending it early).

Example:
  restore_command = 'cairn -r /srv/backup/pg --password-file /etc/cairn/pass wal fetch %f %p'"
    )]
    Fetch {
        /// The WAL file name (PostgreSQL's %f)
        #[arg(value_name = "NAME")]
        name: String,
        /// Where to write it (PostgreSQL's %p)
        #[arg(value_name = "PATH")]
        dest: PathBuf,
        #[command(flatten)]
        cluster: ClusterArgs,
    },
    /// List archived WAL files per cluster
    List,
}

#[derive(Args, Debug, Clone)]
pub struct PgToolArgs {
    /// Connection string or database name for pg_basebackup and psql (default: libpq's environment)
    #[arg(short = 'd', long, value_name = "CONNINFO")]
    pub dbname: Option<String>,
    /// Folder of PostgreSQL's programs (default: PATH, then /usr/lib/postgresql/VERSION/bin)
    #[arg(long, value_name = "DIR")]
    pub pg_bin: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum PgCommand {
    /// Take a base backup of a running cluster (pg_basebackup) into a snapshot
    #[command(after_help = "The server must archive its WAL into the same repository
(archive_command = 'cairn ... wal push %p'). The base backup is copied into a
temporary folder first (--temp-dir; it needs the cluster's size), then stored:
relation files are cut at 8 KiB pages, so unchanged pages cost nothing.

Examples:
  cairn pg backup
  cairn pg backup -d 'host=/var/run/postgresql user=postgres' --tag nightly")]
    Backup(PgBackupArgs),
    /// Restore a base backup and prepare recovery to a point in time
    #[command(
        after_help = "Picks the newest base backup that ended before the target, restores it
into --target, and appends restore_command and the recovery target to
postgresql.auto.conf (with recovery.signal): starting PostgreSQL on the folder
replays the archived WAL to exactly the target. With --verify, cairn does that
with a private server at once, and reports the row count of every table.

Examples:
  cairn pg restore --target /srv/pg/restored --at '2026-12-02 14:05:00'
  cairn pg restore --target /srv/pg/restored --xid 1234567 --exclusive
  cairn pg restore 1a2b3c4d --target /tmp/pg --verify --owner postgres"
    )]
    Restore(Box<PgRestoreArgs>),
}

#[derive(Args, Debug)]
pub struct PgBackupArgs {
    #[command(flatten)]
    pub tools: PgToolArgs,
    /// Folder for the temporary copy (default: the system's temp folder)
    #[arg(long, value_name = "DIR")]
    pub temp_dir: Option<PathBuf>,
    /// Let the server spread its starting checkpoint (slower start, less I/O)
    #[arg(long)]
    pub spread_checkpoint: bool,
    /// Host name to record
    #[arg(long, value_name = "HOST")]
    pub host: Option<String>,
    /// Tag the snapshot (comma-separated or repeated)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
}

#[derive(Args, Debug)]
pub struct PgRestoreArgs {
    /// The base backup to start from (id prefix or latest; default: the newest that ended before the target)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
    /// The new data directory (must not exist, or be empty)
    #[arg(long, value_name = "DIR")]
    pub target: PathBuf,
    /// Recover to this time: local 'YYYY-MM-DD HH:MM[:SS]' or RFC 3339 (2026-12-02T14:05:00.5Z)
    #[arg(long, value_name = "TIME", conflicts_with_all = ["lsn", "xid"])]
    pub at: Option<String>,
    /// Recover to this WAL position (e.g. 0/5000A28)
    #[arg(long, value_name = "LSN", conflicts_with = "xid")]
    pub lsn: Option<String>,
    /// Recover to the commit of this transaction id
    #[arg(long, value_name = "XID")]
    pub xid: Option<u64>,
    /// Stop just before the target instead of just after it
    #[arg(long)]
    pub exclusive: bool,
    /// What the server does at the target: promote, pause or shutdown
    #[arg(long, value_name = "ACTION", default_value = "promote")]
    pub target_action: String,
    /// Only base backups of this cluster
    #[arg(long, value_name = "N")]
    pub system_id: Option<u64>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Give every restored file to this user (default when run as root: postgres, if it exists)
    #[arg(long, value_name = "USER")]
    pub owner: Option<String>,
    /// Start a private server on the restored folder, wait for recovery, report rows per table
    #[arg(long)]
    pub verify: bool,
    /// How long recovery may take under --verify
    #[arg(long, value_name = "DURATION", default_value = "1h")]
    pub verify_timeout: String,
    /// The restore_command to write instead of the cairn one (%f and %p as PostgreSQL's)
    #[arg(long, value_name = "CMD")]
    pub restore_command: Option<String>,
    #[command(flatten)]
    pub tools: PgToolArgs,
}

/// Argon2id tuning; defaults suit interactive use.
#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for the new key file
    #[arg(long, default_value_t = 32768, value_name = "KIB")]
    pub kdf_memory: u32,
    /// Argon2id passes for the new key file
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub kdf_iterations: u32,
    /// Argon2id lanes for the new key file (computed side by side)
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub kdf_parallelism: u32,
}

/// The source repository of `copy` (and of `init --copy-chunker-params`).
#[derive(Args, Debug, Clone, Default)]
pub struct FromRepoArgs {
    /// The other repository (source of the snapshots or the chunker parameters)
    #[arg(long, env = "CAIRN_FROM_REPOSITORY", value_name = "LOCATION")]
    pub from_repo: Option<std::ffi::OsString>,
    /// Read the other repository's password from this file (else CAIRN_FROM_PASSWORD)
    #[arg(long, env = "CAIRN_FROM_PASSWORD_FILE", value_name = "FILE")]
    pub from_password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the other repository's password
    #[arg(long, env = "CAIRN_FROM_PASSWORD_COMMAND", value_name = "CMD")]
    pub from_password_command: Option<String>,
}

#[derive(Args, Debug)]
pub struct CopyArgs {
    /// Snapshots to copy (id prefixes or "latest"; default: every snapshot passing the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    #[command(flatten)]
    pub from: FromRepoArgs,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only report what would be copied
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct InitArgs {
    #[command(flatten)]
    pub from: FromRepoArgs,
    /// Share the --from-repo repository's chunker parameters and secrets, so that `copy` between the two moves only new blobs and never re-chunks
    #[arg(long, requires = "from_repo")]
    pub copy_chunker_params: bool,
    /// zstd compression level (0 disables compression)
    #[arg(long, default_value_t = 3)]
    pub compression: i32,
    /// Target pack size in MiB
    #[arg(long, default_value_t = 16, value_name = "MIB")]
    pub pack_size: u32,
    /// Minimum chunk size in bytes
    #[arg(long, default_value_t = 512 * 1024, value_name = "BYTES")]
    pub chunk_min: u32,
    /// Average chunk size in bytes (a power of two)
    #[arg(long, default_value_t = 1024 * 1024, value_name = "BYTES")]
    pub chunk_avg: u32,
    /// Maximum chunk size in bytes
    #[arg(long, default_value_t = 8 * 1024 * 1024, value_name = "BYTES")]
    pub chunk_max: u32,
    /// How `backup --sqlite` cuts database files: fixed:PAGES (groups of pages)
    /// or cdc:MIN:AVG:MAX (content-defined cuts at page boundaries, in pages)
    #[arg(long, default_value = "fixed:1", value_name = "SPEC")]
    pub db_chunking: String,
    /// S3 only: keep every object under Object Lock retention for this long (e.g. 30d);
    /// creates the bucket with Object Lock (an existing bucket must have it)
    #[arg(long, value_name = "DURATION")]
    pub object_lock: Option<String>,
    /// Object Lock mode: compliance (nobody can delete early, not even the account's root)
    /// or governance (users allowed to bypass it can)
    #[arg(
        long,
        default_value = "compliance",
        value_name = "MODE",
        requires = "object_lock"
    )]
    pub object_lock_mode: String,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

/// Snapshot filters shared by several commands.
#[derive(Args, Debug, Clone, Default)]
pub struct FilterArgs {
    /// Only snapshots of this host (repeatable)
    #[arg(long = "host", value_name = "HOST")]
    pub hosts: Vec<String>,
    /// Only snapshots with these tags (comma-separated list = all of them; repeatable = any list)
    #[arg(long = "tag", value_name = "TAG[,TAG]")]
    pub tags: Vec<String>,
    /// Only snapshots that include this path (repeatable)
    #[arg(long = "path", value_name = "PATH")]
    pub paths: Vec<String>,
}

#[derive(Args, Debug)]
pub struct BackupArgs {
    /// Files and directories to back up
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Copy this live SQLite database consistently (online backup API), check it and store it under its path (repeatable)
    #[arg(long = "sqlite", value_name = "DBFILE")]
    pub sqlite: Vec<PathBuf>,
    /// Check databases with PRAGMA quick_check instead of integrity_check
    #[arg(long)]
    pub sqlite_quick: bool,
    /// Save a database that fails its check anyway, marked as failed (exit status 3)
    #[arg(long)]
    pub sqlite_allow_corrupt: bool,
    /// Store standard input as the file /NAME (see --stdin-filename)
    #[arg(long)]
    pub stdin: bool,
    /// Run the command given after -- and store its standard output as /NAME; no snapshot if it fails
    #[arg(long)]
    pub stdin_from_command: bool,
    /// File name for --stdin / --stdin-from-command
    #[arg(long, default_value = "stdin", value_name = "NAME")]
    pub stdin_filename: String,
    /// The command for --stdin-from-command (after --)
    #[arg(last = true, value_name = "CMD")]
    pub command: Vec<std::ffi::OsString>,
    /// Host name to record (default: this machine's)
    #[arg(long)]
    pub host: Option<String>,
    /// Tag the snapshot (repeatable, or comma-separated)
    #[arg(long = "tag", value_name = "TAG")]
    pub tags: Vec<String>,
    /// Snapshot time instead of now (RFC 3339 or "YYYY-MM-DD HH:MM[:SS]" local)
    #[arg(long)]
    pub time: Option<String>,
    /// Exclude entries matching this pattern (repeatable)
    #[arg(short = 'e', long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Read exclusion patterns from a file (one per line)
    #[arg(long = "exclude-file", value_name = "FILE")]
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross file system boundaries
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Compare against this snapshot instead of the newest with the same host and paths
    #[arg(long, value_name = "SNAPSHOT")]
    pub parent: Option<String>,
    /// Read every file, even those unchanged since the parent snapshot
    #[arg(long)]
    pub force: bool,
}

#[derive(Args, Debug)]
pub struct SnapshotsArgs {
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only the newest N snapshots of each host and path set
    #[arg(long, value_name = "N")]
    pub latest: Option<usize>,
    /// Fewer columns: id, time, host, tags
    #[arg(short, long)]
    pub compact: bool,
    /// Group snapshots by these fields (host, paths, tags; comma-separated)
    #[arg(short = 'g', long, value_name = "FIELDS")]
    pub group_by: Option<String>,
}

#[derive(Args, Debug)]
pub struct FindArgs {
    /// Patterns (or, with --blob/--tree/--pack, id prefixes)
    #[arg(value_name = "PATTERN", required = true)]
    pub patterns: Vec<String>,
    /// Only entries modified at or after this time
    #[arg(short = 'O', long, value_name = "TIME")]
    pub oldest: Option<String>,
    /// Only entries modified at or before this time
    #[arg(short = 'N', long, value_name = "TIME")]
    pub newest: Option<String>,
    /// Search only this snapshot (id prefix or "latest"; repeatable)
    #[arg(short = 's', long = "snapshot", value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Search only the newest snapshot at or before this time
    #[arg(long, value_name = "TIME", conflicts_with = "snapshots")]
    pub at: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Ignore case in patterns
    #[arg(short = 'i', long)]
    pub ignore_case: bool,
    /// Show mode, owner, size and time
    #[arg(short = 'l', long)]
    pub long: bool,
    /// The patterns are blob ids: list the files (and directories) that use them
    #[arg(long, conflicts_with_all = ["tree", "pack"])]
    pub blob: bool,
    /// The patterns are tree ids: list the directories with that listing
    #[arg(long, conflicts_with_all = ["blob", "pack"])]
    pub tree: bool,
    /// The patterns are pack ids: list the files that use blobs stored in them
    #[arg(long, conflicts_with_all = ["blob", "tree"])]
    pub pack: bool,
    /// Oldest snapshot first (default: newest first)
    #[arg(long)]
    pub reverse: bool,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The old and the new snapshot: id prefix or "latest", optionally :PATH
    #[arg(value_name = "SNAPSHOT[:PATH]", num_args = 0..=2)]
    pub snapshots: Vec<String>,
    /// The snapshot at this time (repeatable; fills the snapshots first)
    #[arg(long = "at", value_name = "TIME")]
    pub at: Vec<String>,
    /// Also show entries of which only metadata changed (U)
    #[arg(long)]
    pub metadata: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct TagArgs {
    /// Snapshots to change (id prefixes or "latest"; default: all passing the filters)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Add these tags (comma-separated or repeated)
    #[arg(long, value_name = "TAG[,TAG]")]
    pub add: Vec<String>,
    /// Remove these tags
    #[arg(long, value_name = "TAG[,TAG]")]
    pub remove: Vec<String>,
    /// Replace all tags with these (`--set ''` removes all)
    #[arg(long, value_name = "TAG[,TAG]")]
    pub set: Vec<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

/// Picks one snapshot: an id prefix, `latest`, or `--at TIME`.
#[derive(Args, Debug)]
pub struct SnapshotSelect {
    /// Snapshot id (unique prefix) or "latest"
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<String>,
    /// Use the newest snapshot at or before this time
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Snapshot id (unique prefix) or "latest"; left out with --at
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<std::ffi::OsString>,
    /// Directory or file inside the snapshot (default: everything)
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Use the newest snapshot at or before this time
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id (unique prefix) or "latest"; left out with --at
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: Option<std::ffi::OsString>,
    /// File inside the snapshot
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Use the newest snapshot at or before this time
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct RestoreArgs {
    #[command(flatten)]
    pub select: SnapshotSelect,
    /// Directory to restore into
    #[arg(short, long, value_name = "DIR")]
    pub target: PathBuf,
    /// Restore only this path (or pattern) and what is below it (repeatable)
    #[arg(short, long = "include", value_name = "PATH")]
    pub includes: Vec<String>,
    /// Skip entries matching this pattern (repeatable)
    #[arg(short, long = "exclude", value_name = "GLOB")]
    pub excludes: Vec<String>,
    /// Re-read restored files and check them against the snapshot
    #[arg(long)]
    pub verify: bool,
}

#[derive(Args, Debug)]
pub struct MountArgs {
    /// Empty directory to mount at
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Let other users read the mount, as the recorded permissions allow (users other than root need user_allow_other in /etc/fuse.conf)
    #[arg(long)]
    pub allow_other: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct CatArgs {
    /// What to show: config, snapshot, key, index, pack, tree
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Id (or id prefix; "latest" for snapshot)
    #[arg(value_name = "ID")]
    pub id: Option<String>,
    /// For `cat snapshot`: the newest snapshot at or before this time
    #[arg(long, value_name = "TIME")]
    pub at: Option<String>,
    /// For `cat snapshot` with "latest" or --at: snapshot filters
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// List key files
    List,
    /// Add a key file with a new password
    Add(NewPasswordArgs),
    /// Replace the key file in use with one for a new password
    Passwd(NewPasswordArgs),
    /// Remove a key file (not the one in use)
    Remove {
        /// Key id (unique prefix)
        id: String,
    },
}

#[derive(Args, Debug)]
pub struct NewPasswordArgs {
    /// Read the new password from this file
    #[arg(long, value_name = "FILE")]
    pub new_password_file: Option<PathBuf>,
    #[command(flatten)]
    pub kdf: KdfArgs,
}

#[derive(Subcommand, Debug)]
pub enum RepairCommand {
    /// Rebuild the index from the pack headers
    Index,
}

#[derive(Args, Debug)]
pub struct ForgetArgs {
    /// Snapshots to remove explicitly (id prefixes)
    #[arg(value_name = "SNAPSHOT")]
    pub snapshots: Vec<String>,
    /// Keep the newest N snapshots ("unlimited" for all)
    #[arg(short = 'l', long, value_name = "N")]
    pub keep_last: Option<String>,
    /// Keep the newest snapshot of each of the last N hours
    #[arg(short = 'H', long, value_name = "N")]
    pub keep_hourly: Option<String>,
    /// Keep the newest snapshot of each of the last N days
    #[arg(short = 'd', long, value_name = "N")]
    pub keep_daily: Option<String>,
    /// Keep the newest snapshot of each of the last N ISO weeks
    #[arg(short = 'w', long, value_name = "N")]
    pub keep_weekly: Option<String>,
    /// Keep the newest snapshot of each of the last N months
    #[arg(short = 'm', long, value_name = "N")]
    pub keep_monthly: Option<String>,
    /// Keep the newest snapshot of each of the last N years
    #[arg(short = 'y', long, value_name = "N")]
    pub keep_yearly: Option<String>,
    /// Keep snapshots newer than DURATION before the newest (e.g. 1y2m3d4h)
    #[arg(long, value_name = "DURATION")]
    pub keep_within: Option<String>,
    /// Keep hourly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_hourly: Option<String>,
    /// Keep daily snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_daily: Option<String>,
    /// Keep weekly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_weekly: Option<String>,
    /// Keep monthly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_monthly: Option<String>,
    /// Keep yearly snapshots within DURATION of the newest
    #[arg(long, value_name = "DURATION")]
    pub keep_within_yearly: Option<String>,
    /// Keep snapshots with these tags (comma-separated = all of them; repeatable = any list)
    #[arg(long = "keep-tag", value_name = "TAG[,TAG]")]
    pub keep_tags: Vec<String>,
    /// Group snapshots by these fields before applying the policy
    #[arg(short = 'g', long, default_value = "host,paths", value_name = "FIELDS")]
    pub group_by: String,
    #[command(flatten)]
    pub filter: FilterArgs,
    /// Only show what would be removed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Run prune afterwards
    #[arg(long)]
    pub prune: bool,
    /// Allow a policy to remove every snapshot of a group
    #[arg(long)]
    pub unsafe_allow_remove_all: bool,
    #[command(flatten)]
    pub prune_opts: PruneArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PruneArgs {
    /// Unused space to tolerate in the repository after prune (percent of it); the packs
    /// with the most unused space are repacked until what is left is within it
    #[arg(long, default_value = "5%", value_name = "PERCENT")]
    pub max_unused: String,
    /// Also repack small packs into full ones
    #[arg(long)]
    pub repack_small: bool,
    /// Repack at most this much per run (e.g. 2G, 500M; the rest waits for the next prune)
    #[arg(long, value_name = "SIZE")]
    pub max_repack_size: Option<String>,
    /// Delete unused packs and old index files only once they have been marked this long
    /// (longer than any backup runs; e.g. 24h, 2d)
    #[arg(long, default_value = "24h", value_name = "DURATION")]
    pub delete_grace: String,
    /// Delete at once instead of marking: only for a repository nobody else writes to
    /// while prune runs
    #[arg(long)]
    pub instant_delete: bool,
}

#[derive(Args, Debug)]
pub struct PruneCmd {
    #[command(flatten)]
    pub opts: PruneArgs,
    /// Only report what would be deleted and freed
    #[arg(short = 'n', long)]
    pub dry_run: bool,
}

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Read and verify all pack data
    #[arg(long)]
    pub read_data: bool,
    /// Read and verify a subset: n/m (part n of m) or a percentage
    #[arg(long, value_name = "SUBSET")]
    pub read_data_subset: Option<String>,
    /// Fail if any host/path group's newest snapshot is older than this (e.g. 26h, 2d)
    #[arg(long, value_name = "DURATION")]
    pub max_age: Option<String>,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Jobs to run (default: all, in file order)
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Snapshot time instead of now (RFC 3339 or "YYYY-MM-DD HH:MM[:SS]" local)
    #[arg(long)]
    pub time: Option<String>,
}

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Jobs to show (default: all)
    #[arg(value_name = "JOB")]
    pub jobs: Vec<String>,
    /// Print Prometheus text format (for node_exporter's textfile collector)
    #[arg(long, conflicts_with = "json")]
    pub prometheus: bool,
}

#[derive(Args, Debug)]
pub struct ScheduleArgs {
    /// Crontab lines instead of systemd units
    #[arg(long)]
    pub cron: bool,
    /// Write the files (default: print them)
    #[arg(long)]
    pub install: bool,
    /// With --install: say what would be written, write nothing
    #[arg(short = 'n', long, requires = "install")]
    pub dry_run: bool,
    /// Where to write (default: /etc/systemd/system, ~/.config/systemd/user
    /// for non-root, or /etc/cron.d)
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// The user column of the crontab file (default: the current user)
    #[arg(long, value_name = "USER")]
    pub user: Option<String>,
}
