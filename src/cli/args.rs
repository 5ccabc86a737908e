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
10 repository does not exist, 12 wrong password."
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
    /// Repository location (a local directory)
    #[arg(
        short = 'r',
        long = "repo",
        env = "CAIRN_REPOSITORY",
        global = true,
        value_name = "PATH"
    )]
    pub repo: Option<PathBuf>,
    /// Read the repository password from this file (first line)
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
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a new repository
    #[command(after_help = "Example:\n  cairn -r /srv/backup/repo init")]
    Init(InitArgs),
    /// Back up files and directories into a new snapshot
    #[command(after_help = "Examples:
  cairn backup /etc /home --tag nightly
  cairn backup ~/data --exclude '*.tmp' --exclude-file ~/.cairn-excludes
  cairn backup /srv/app --host app01 --time '2026-11-28 14:00'")]
    Backup(BackupArgs),
    /// List snapshots
    #[command(
        after_help = "Examples:\n  cairn snapshots\n  cairn snapshots --host app01 --tag nightly --json"
    )]
    Snapshots(SnapshotsArgs),
    /// List files in a snapshot
    #[command(
        after_help = "Examples:\n  cairn ls latest\n  cairn ls 1a2b3c4d /home/me/projects --json"
    )]
    Ls(LsArgs),
    /// Write one file of a snapshot to standard output
    #[command(after_help = "Example:\n  cairn dump latest /etc/hosts > hosts")]
    Dump(DumpArgs),
    /// Restore a snapshot into a directory
    #[command(after_help = "Examples:
  cairn restore latest --target /tmp/restore
  cairn restore 1a2b3c4d --target /tmp/r --include /home/me/projects
  cairn restore --at '2026-11-28 09:00' --host app01 --target /tmp/r --verify")]
    Restore(RestoreArgs),
    /// Show repository objects (config, snapshot, key, index, pack, tree) as JSON
    #[command(
        after_help = "Examples:\n  cairn cat config\n  cairn cat snapshot latest\n  cairn cat key"
    )]
    Cat(CatArgs),
    /// Manage the repository's key files (passwords)
    #[command(
        subcommand,
        after_help = "Examples:\n  cairn key list\n  cairn key add --new-password-file ~/.other-pass\n  cairn key remove 5e6f7a8b"
    )]
    Key(KeyCommand),
}

/// Argon2id tuning; defaults suit interactive use.
#[derive(Args, Debug, Clone)]
pub struct KdfArgs {
    /// Argon2id memory in KiB for the new key file
    #[arg(long, default_value_t = 65536, value_name = "KIB")]
    pub kdf_memory: u32,
    /// Argon2id passes for the new key file
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub kdf_iterations: u32,
}

#[derive(Args, Debug)]
pub struct InitArgs {
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
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
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
    /// Snapshot id (unique prefix) or "latest"
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// Directory or file inside the snapshot (default: everything)
    #[arg(value_name = "PATH")]
    pub path: Option<String>,
    /// Show mode, owner, size and time
    #[arg(short, long)]
    pub long: bool,
    #[command(flatten)]
    pub filter: FilterArgs,
}

#[derive(Args, Debug)]
pub struct DumpArgs {
    /// Snapshot id (unique prefix) or "latest"
    #[arg(value_name = "SNAPSHOT")]
    pub snapshot: String,
    /// File inside the snapshot
    #[arg(value_name = "PATH")]
    pub path: String,
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
pub struct CatArgs {
    /// What to show: config, snapshot, key, index, pack, tree
    #[arg(value_name = "TYPE")]
    pub kind: String,
    /// Id (or id prefix; "latest" for snapshot)
    #[arg(value_name = "ID")]
    pub id: Option<String>,
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
