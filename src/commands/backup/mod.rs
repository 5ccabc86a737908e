//! Backup: walk the sources, store what is new, write the snapshot last.
//!
//! The steps, in order (each a function below): check the options without
//! touching the repository ([`BackupOptions::validate`]); resolve the
//! sources into absolute paths; take the backup lock and load what a backup
//! needs of the index; find the parent snapshot; plan page deltas for
//! databases; store the databases and the stream first (a database failing
//! its check or a failing command ends the backup before the walk); walk
//! the file system into trees ([`archiver`]); wait until every pack and
//! index file is durable; and only then save the snapshot.
//!
//! Besides paths, a backup can take live SQLite databases (`--sqlite`):
//! each is copied consistently with SQLite's online backup API, checked, and
//! stored under its own path in place of the live file, cut at page
//! boundaries ([`crate::format::chunker::DatabaseChunking`]), changed pages
//! as deltas ([`delta`]); and streams (standard input, commands' output)
//! each stored as `/NAME`. Files with many chunks list them through
//! content-list blobs ([`crate::format::content`]).

mod archiver;
pub mod delta;
mod scan;

use crate::commands::progress::{Counters, Progress, run_reporting};
use crate::error::{Error, IoContext, Result};
use crate::format::id::Id;
use crate::format::snapshot::{DatabaseRecord, Snapshot, Summary};
use crate::repository::{BackupIndex, Repository, SnapshotFilter};

use crate::sources::walk::{PatternSet, node_from_metadata};
use archiver::{Archiver, Entry, VirtualDir};
use chrono::{DateTime, FixedOffset, Local};
use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;

pub use crate::format::snapshot::CheckKind;

/// A folder of page-structured files (PostgreSQL relation files).
#[derive(Clone, Debug)]
pub struct PageDir {
    /// The folder.
    pub dir: PathBuf,
    /// Page size in bytes.
    pub page_size: u32,
    /// Pages per chunk.
    pub pages_per_chunk: u32,
}
pub use crate::sources::sqlite::SqliteOptions;

/// What to back up and how.
#[derive(Clone, Debug, Default)]
pub struct BackupOptions {
    /// Source paths (made absolute).
    pub paths: Vec<PathBuf>,
    /// Host name to record (default: this machine's).
    pub host: Option<String>,
    /// Tags to record.
    pub tags: Vec<String>,
    /// Snapshot time (default: now).
    pub time: Option<DateTime<FixedOffset>>,
    /// Exclusion patterns.
    pub excludes: Vec<String>,
    /// Files of exclusion patterns, one per line.
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross file system boundaries.
    pub one_file_system: bool,
    /// Parent snapshot (id prefix or `latest`; default: the newest with the
    /// same host and paths).
    pub parent: Option<String>,
    /// Read every file even if unchanged.
    pub force: bool,
    /// Live SQLite databases to copy consistently, check and store.
    pub sqlite: Vec<PathBuf>,
    /// How databases are copied and checked.
    pub sqlite_options: SqliteOptions,
    /// Save a database that fails its check (marked failed) instead of
    /// aborting the backup.
    pub sqlite_allow_corrupt: bool,
    /// Streams stored as files: standard input (at most one) and commands'
    /// output, each under its own name.
    pub streams: Vec<StdinSource>,
    /// Source paths stored under another absolute path: `(real, stored)`
    /// (a PostgreSQL base backup copied into a temporary folder is stored
    /// under the server's data directory). `real` must be one of `paths`.
    pub stored_as: Vec<(PathBuf, PathBuf)>,
    /// Regular files below these folders whose length is a multiple of the
    /// page size given are cut at page boundaries (PostgreSQL relation
    /// files: an unchanged page is stored once), and stored as deltas
    /// against their version in the parent snapshot.
    pub page_dirs: Vec<PageDir>,
    /// What a PostgreSQL base backup records in the snapshot.
    pub postgres: Option<crate::format::snapshot::PostgresRecord>,
}

/// A stream stored as the file `/filename` of the snapshot.
#[derive(Clone, Debug, Default)]
pub struct StdinSource {
    /// File name (a single plain name).
    pub filename: String,
    /// Run this command (program and arguments) and store its standard
    /// output; `None` stores this process's standard input.
    pub command: Option<Vec<OsString>>,
}

/// A source entry that could not be read (the snapshot is saved without it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SourceError {
    /// The entry.
    pub path: PathBuf,
    /// What went wrong.
    pub message: String,
}

impl std::fmt::Display for SourceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// Outcome of a backup.
#[derive(Debug)]
pub struct BackupReport {
    /// Id of the saved snapshot.
    pub snapshot_id: Id,
    /// The saved snapshot.
    pub snapshot: Snapshot,
    /// Unreadable entries.
    pub errors: Vec<SourceError>,
    /// Entries stored with a caveat (a live SQLite database stored as it is
    /// on disk).
    pub warnings: Vec<SourceError>,
    /// Wall time of the backup.
    pub duration: std::time::Duration,
}

impl BackupReport {
    /// Databases saved although they failed their check.
    pub fn failed_databases(&self) -> impl Iterator<Item = &DatabaseRecord> {
        self.snapshot.databases.iter().filter(|d| !d.check_ok)
    }

    /// Whether the snapshot is complete: every entry read and every
    /// database passed its check (else the CLI exits 3).
    pub fn is_complete(&self) -> bool {
        self.errors.is_empty() && self.failed_databases().next().is_none()
    }
}

impl BackupOptions {
    /// Checks everything that can be checked without the repository: that
    /// there is something to back up, that source paths exist, that
    /// databases are regular files, that patterns compile and exclude files
    /// read, and that a stream's name is a plain name that overlaps no
    /// source. Called before a password is asked for.
    pub fn validate(&self) -> Result<()> {
        if self.paths.is_empty() && self.sqlite.is_empty() && self.streams.is_empty() {
            return Err(Error::InvalidInput(
                "nothing to back up: give paths, --sqlite DBFILE, --stdin or --stdin-from-command"
                    .into(),
            ));
        }
        self.patterns()?;
        self.resolve().map(|_| ())
    }

    /// Every exclusion pattern: those given and those in exclude files.
    fn all_excludes(&self) -> Result<Vec<String>> {
        let mut all = self.excludes.clone();
        for f in &self.exclude_files {
            all.extend(PatternSet::read_file(f)?);
        }
        Ok(all)
    }

    fn patterns(&self) -> Result<PatternSet> {
        PatternSet::new(&self.all_excludes()?)
    }

    /// The sources as absolute paths, checked.
    fn resolve(&self) -> Result<Sources> {
        let mut sources = Vec::new();
        let mut real = HashMap::new();
        for p in &self.paths {
            let abs = normalize(&std::path::absolute(p).at(p)?);
            std::fs::symlink_metadata(&abs)
                .map_err(|e| Error::InvalidInput(format!("source path {}: {e}", p.display())))?;
            match self.stored_as.iter().find(|(r, _)| r == p || *r == abs) {
                Some((_, stored)) => {
                    let stored = normalize(stored);
                    if stored == Path::new("/") {
                        return Err(Error::InvalidInput("a source cannot be stored as /".into()));
                    }
                    real.insert(stored.clone(), abs);
                    sources.push(stored);
                }
                None => sources.push(abs),
            }
        }
        let plain = sources.clone();
        let mut databases: Vec<PathBuf> = Vec::new();
        for p in &self.sqlite {
            let abs = normalize(&std::path::absolute(p).at(p)?);
            match std::fs::metadata(&abs) {
                Ok(md) if md.is_file() => {}
                Ok(_) => {
                    return Err(Error::InvalidInput(format!(
                        "database {}: not a regular file",
                        p.display()
                    )));
                }
                Err(e) => {
                    return Err(Error::InvalidInput(format!(
                        "database {}: {e}",
                        p.display()
                    )));
                }
            }
            if !databases.contains(&abs) {
                databases.push(abs.clone());
            }
            sources.push(abs);
        }
        databases.sort();
        let mut stream_paths = Vec::new();
        if self.streams.iter().filter(|s| s.command.is_none()).count() > 1 {
            return Err(Error::InvalidInput(
                "standard input can be stored only once per snapshot".into(),
            ));
        }
        for s in &self.streams {
            crate::format::tree::validate_name(s.filename.as_bytes()).map_err(|e| {
                Error::InvalidInput(format!("stream file name {:?}: {e}", s.filename))
            })?;
            let p = PathBuf::from("/").join(&s.filename);
            if let Some(c) = plain
                .iter()
                .chain(databases.iter())
                .chain(stream_paths.iter())
                .find(|c| c.starts_with(&p) || p.starts_with(c))
            {
                return Err(Error::InvalidInput(format!(
                    "stream file name {}: {} would overlap {}",
                    s.filename,
                    p.display(),
                    c.display()
                )));
            }
            if s.command.as_ref().is_some_and(|c| c.is_empty()) {
                return Err(Error::InvalidInput(
                    "--stdin-from-command needs the command after --, e.g. -- pg_dump mydb".into(),
                ));
            }
            sources.push(p.clone());
            stream_paths.push(p);
        }
        sources.sort();
        sources.dedup();
        // Drop paths inside other paths: the outer one covers them.
        let mut top: Vec<PathBuf> = Vec::new();
        for s in sources {
            if !top.iter().any(|k| s.starts_with(k)) {
                top.push(s);
            }
        }
        if let Some(k) = real.keys().find(|k| {
            top.iter()
                .any(|t| t != *k && (t.starts_with(k) || k.starts_with(t)))
        }) {
            return Err(Error::InvalidInput(format!(
                "{} would overlap another source",
                k.display()
            )));
        }
        Ok(Sources {
            top,
            databases,
            stream_paths,
            real,
        })
    }
}

/// Resolved sources.
struct Sources {
    /// Every source path, none inside another, sorted.
    top: Vec<PathBuf>,
    /// The databases, sorted.
    databases: Vec<PathBuf>,
    /// Where each stream goes (`/NAME`), in the order of the options.
    stream_paths: Vec<PathBuf>,
    /// Sources stored under another path: stored path -> real path.
    real: HashMap<PathBuf, PathBuf>,
}

impl Sources {
    /// The paths recorded in the snapshot.
    fn recorded(&self) -> Vec<String> {
        self.top
            .iter()
            .map(|p| p.to_string_lossy().into_owned())
            .collect()
    }

    /// The directories of the root tree that lead to the source paths.
    fn root(&self) -> VirtualDir {
        let mut root = VirtualDir {
            real_path: PathBuf::from("/"),
            ..Default::default()
        };
        for src in &self.top {
            let comps: Vec<_> = src.components().skip(1).collect();
            let mut dir = &mut root;
            let mut cur = PathBuf::from("/");
            for (i, c) in comps.iter().enumerate() {
                let name = c.as_os_str().as_bytes().to_vec();
                cur.push(c);
                if i + 1 == comps.len() {
                    let real = self.real.get(src).unwrap_or(src);
                    dir.children.insert(name, Entry::Source(real.clone()));
                } else {
                    let synthetic = self.real.contains_key(src);
                    let e = dir.children.entry(name).or_insert_with(|| {
                        Entry::Dir(VirtualDir {
                            real_path: cur.clone(),
                            synthetic,
                            ..Default::default()
                        })
                    });
                    dir = match e {
                        Entry::Dir(d) => d,
                        Entry::Source(_) => {
                            unreachable!("sources inside other sources were removed")
                        }
                    };
                }
            }
        }
        root
    }
}

/// Runs a backup into `repo`: takes the backup lock, loads the index and
/// saves a snapshot. `progress` sees files and bytes (with totals from a
/// metadata scan when it wants them) and can cancel before the snapshot is
/// written.
pub fn backup<S>(
    repo: &Repository<S>,
    opts: &BackupOptions,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    opts.validate()?;
    let counters = Counters::default();
    let excludes = opts.all_excludes()?;
    run_reporting(progress, &counters, || {
        std::thread::scope(|s| {
            if progress.wants_totals() {
                s.spawn(|| scan::scan_totals(&opts.paths, &excludes, &counters));
            } else {
                counters.totals_known.store(true, Ordering::Relaxed);
            }
            run(repo, opts, &counters, progress)
        })
    })
}

fn run<S>(
    repo: &Repository<S>,
    opts: &BackupOptions,
    counters: &Counters,
    progress: &dyn Progress,
) -> Result<BackupReport> {
    let started = chrono::Utc::now();
    let clock = std::time::Instant::now();
    let sources = opts.resolve()?;
    let paths = sources.recorded();
    let host = opts.host.clone().unwrap_or_else(crate::sys::hostname);

    // The index and the snapshots are loaded side by side: on a remote
    // store each is a few requests' worth of waiting.
    let plain = repo.without_index();
    let (repo, snapshots) = std::thread::scope(|s| {
        let snapshots = s.spawn(|| plain.load_snapshots());
        let repo = repo.with_backup_index();
        let snapshots = snapshots
            .join()
            .unwrap_or_else(|_| Err(Error::InvalidInput("snapshot reader panicked".into())));
        (repo, snapshots)
    });
    let mut repo = repo?;
    let snapshots = snapshots?;
    repo.warn_rollback(&snapshots)?;
    let parent = find_parent(&repo, snapshots, opts, &host, &paths)?;
    let delta_plans = plan_deltas(&mut repo, &sources, parent.as_ref())?;
    let page_plans = plan_page_deltas(&mut repo, opts, &sources, parent.as_ref())?;
    let repo = &repo;
    let mut archiver = Archiver::new(
        repo,
        opts.patterns()?,
        opts.one_file_system,
        opts.force,
        counters,
        progress,
    );
    archiver.file_deltas = page_plans;
    archiver.page_dirs = opts
        .page_dirs
        .iter()
        .map(|p| {
            Ok(PageDir {
                dir: normalize(&std::path::absolute(&p.dir).at(&p.dir)?),
                ..p.clone()
            })
        })
        .collect::<Result<_>>()?;
    let records = store_databases_and_stream(&mut archiver, opts, &sources, &delta_plans)?;
    let parent_root = parent
        .as_ref()
        .and_then(|(_, s)| repo.load_tree(&s.tree).ok());
    let root_id = if sources.top.iter().any(|k| k == Path::new("/")) {
        archive_real_root(&archiver, parent_root.as_ref())?
    } else {
        archiver.archive_virtual(&sources.root(), parent_root.as_ref())?
    };
    archiver.packer.finish()?;
    crate::commands::progress::check_cancelled(progress)?;

    let errors = archiver.take_errors();
    let warnings = archiver.take_warnings();
    let snapshot = Snapshot {
        summary: summary(&archiver, &errors, started),
        error_messages: errors.iter().take(100).map(|e| e.to_string()).collect(),
        postgres: opts.postgres.clone(),
        ..new_snapshot(
            opts,
            host,
            paths,
            root_id,
            parent.map(|(id, _)| id),
            records,
        )
    };
    // Last: everything the snapshot references is durable now.
    let snapshot_id = repo.save_snapshot(&snapshot)?;
    repo.remember_snapshot(&snapshot_id);
    Ok(BackupReport {
        snapshot_id,
        snapshot,
        errors,
        warnings,
        duration: clock.elapsed(),
    })
}

/// The parent snapshot: the one named, else the newest of this host with
/// the same paths.
fn find_parent(
    repo: &Repository<BackupIndex>,
    snapshots: Vec<(Id, Snapshot)>,
    opts: &BackupOptions,
    host: &str,
    paths: &[String],
) -> Result<Option<(Id, Snapshot)>> {
    if let Some(sel) = &opts.parent {
        return repo
            .find_snapshot(sel, &SnapshotFilter::default())
            .map(Some);
    }
    let filter = SnapshotFilter {
        hosts: vec![host.to_string()],
        ..Default::default()
    };
    Ok(snapshots
        .into_iter()
        .rfind(|(_, s)| filter.matches(s) && s.paths == paths))
}

/// Databases are stored as deltas against an earlier version of theirs:
/// finds each database's base in the parent snapshot.
fn plan_deltas(
    repo: &mut Repository<BackupIndex>,
    sources: &Sources,
    parent: Option<&(Id, Snapshot)>,
) -> Result<HashMap<PathBuf, delta::DeltaPlan>> {
    let mut plans = HashMap::new();
    if repo.config().database_chunking.is_none() {
        return Ok(plans);
    }
    let parent_tree = parent.map(|(_, s)| s.tree);
    for db in &sources.databases {
        if let Some(plan) = delta::plan(repo, parent_tree.as_ref(), db)? {
            plans.insert(db.clone(), plan);
        }
    }
    Ok(plans)
}

/// Files below the page-cut folders (PostgreSQL relation files) are stored
/// as page deltas against their version in the parent snapshot, as
/// databases are: finds each one's base (by its real path).
fn plan_page_deltas(
    repo: &mut Repository<BackupIndex>,
    opts: &BackupOptions,
    sources: &Sources,
    parent: Option<&(Id, Snapshot)>,
) -> Result<HashMap<PathBuf, delta::DeltaPlan>> {
    let Some((_, parent)) = parent else {
        return Ok(HashMap::new());
    };
    if opts.page_dirs.is_empty() {
        return Ok(HashMap::new());
    }
    let mut previous = Vec::new();
    for p in &opts.page_dirs {
        let real_dir = normalize(&std::path::absolute(&p.dir).at(&p.dir)?);
        let stored_dir = sources
            .real
            .iter()
            .find_map(|(stored, real)| {
                real_dir
                    .strip_prefix(real)
                    .ok()
                    .map(|rest| stored.join(rest))
            })
            .unwrap_or_else(|| real_dir.clone());
        let Ok(node) = crate::repository::browse::lookup(repo, &parent.tree, &stored_dir) else {
            continue;
        };
        if !node.is_dir() {
            continue;
        }
        let page = u64::from(p.page_size);
        // A parent tree that cannot be read costs space, never correctness.
        let _ = crate::repository::browse::walk(repo, &node, &real_dir, &mut |path, n| {
            if n.kind == crate::format::tree::NodeKind::File && n.size > 0 && n.size % page == 0 {
                previous.push((path.to_path_buf(), n.clone()));
            }
            Ok(true)
        });
    }
    delta::plan_all(repo, previous, delta::OnRebase::KeepBase)
}

/// Copies, checks and stores each database, and stores the stream; the
/// walk will use these nodes in place of the live files.
fn store_databases_and_stream(
    archiver: &mut Archiver<'_>,
    opts: &BackupOptions,
    sources: &Sources,
    delta_plans: &HashMap<PathBuf, delta::DeltaPlan>,
) -> Result<Vec<DatabaseRecord>> {
    let mut records = Vec::new();
    let mut overrides = HashMap::new();
    for db in &sources.databases {
        let copy = crate::sources::sqlite::copy_database(db, &opts.sqlite_options)?;
        if !copy.record.check_ok && !opts.sqlite_allow_corrupt {
            return Err(Error::InvalidInput(format!(
                "database {} failed its {}: {}; no snapshot was saved (--sqlite-allow-corrupt saves it anyway, marked as failed)",
                db.display(),
                copy.record.check.pragma(),
                copy.record.check_messages.join("; ")
            )));
        }
        let node = archiver.store_database(db, &copy, delta_plans.get(db))?;
        overrides.insert(db.clone(), node);
        records.push(copy.record.clone());
        for suffix in ["-wal", "-shm", "-journal"] {
            let mut s = db.clone().into_os_string();
            s.push(suffix);
            archiver.skip.insert(PathBuf::from(s));
        }
    }
    for (src, p) in opts.streams.iter().zip(&sources.stream_paths) {
        let node = archiver.store_stream_source(src)?;
        overrides.insert(p.clone(), node);
    }
    archiver.overrides = overrides;
    Ok(records)
}

/// Backing up "/" itself: the root tree is the real root directory, always
/// a tree blob of its own.
fn archive_real_root(
    archiver: &Archiver<'_>,
    parent_root: Option<&crate::format::tree::Tree>,
) -> Result<Id> {
    let md = std::fs::symlink_metadata("/").at("/")?;
    let node = archiver.archive_dir(
        Path::new("/"),
        node_from_metadata(b"/", &md),
        parent_root,
        md.dev(),
    )?;
    match (node.subtree, node.inline) {
        (Some(id), _) => Ok(id),
        (None, Some(tree)) => archiver.save_tree(*tree),
        (None, None) => Err(Error::InvalidInput("could not read /".into())),
    }
}

/// The counts recorded in the snapshot.
fn summary(
    archiver: &Archiver<'_>,
    errors: &[SourceError],
    started: DateTime<chrono::Utc>,
) -> Summary {
    let c = &archiver.counts;
    let stats = &archiver.packer.stats;
    let finished = chrono::Utc::now();
    Summary {
        files_new: c.files_new.load(Ordering::Relaxed),
        files_changed: c.files_changed.load(Ordering::Relaxed),
        files_unchanged: c.files_unchanged.load(Ordering::Relaxed),
        dirs: c.dirs.load(Ordering::Relaxed),
        total_files: c.total_files.load(Ordering::Relaxed),
        total_bytes: c.total_bytes.load(Ordering::Relaxed),
        bytes_read: c.bytes_read.load(Ordering::Relaxed),
        blobs_added: stats.blobs.load(Ordering::Relaxed),
        bytes_added: stats.raw_bytes.load(Ordering::Relaxed),
        bytes_added_stored: stats.stored_bytes.load(Ordering::Relaxed),
        errors: errors.len() as u64,
        started_ns: started.timestamp_nanos_opt().unwrap_or(0),
        finished_ns: finished.timestamp_nanos_opt().unwrap_or(0),
    }
}

/// The snapshot's identity fields (summary and errors filled in by the caller).
fn new_snapshot(
    opts: &BackupOptions,
    hostname: String,
    paths: Vec<String>,
    tree: Id,
    parent: Option<Id>,
    databases: Vec<DatabaseRecord>,
) -> Snapshot {
    let time = opts.time.unwrap_or_else(|| Local::now().fixed_offset());
    let mut tags = opts.tags.clone();
    tags.sort();
    tags.dedup();
    Snapshot {
        time: time.timestamp(),
        time_nsec: time.timestamp_subsec_nanos().min(999_999_999),
        utc_offset: time.offset().local_minus_utc(),
        hostname,
        username: crate::sys::username(),
        uid: crate::sys::uid(),
        gid: crate::sys::gid(),
        paths,
        tags,
        tree,
        parent,
        summary: Summary::default(),
        error_messages: Vec::new(),
        program_version: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        databases,
        replaces: None,
        postgres: None,
    }
}

/// Removes `.` components and resolves `..` lexically (the path is absolute).
pub(crate) fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}
