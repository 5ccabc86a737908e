//! `cairn run`: each job in turn — start ping, `before` hooks, backup,
//! retention (and prune when due), copy to each offsite repository,
//! verification when due, `after` or `failure` hooks, end ping — with its
//! state saved at the end. A job that fails does not stop the next; a job
//! already running (an overlapping cron tick) is skipped.

use crate::commands::backup::{self, BackupOptions, CheckKind, SqliteOptions, StdinSource};
use crate::commands::check::{self, CheckOptions, Subset};
use crate::commands::copy::{self, CopyOptions};
use crate::commands::forget::{self, ForgetOptions, GroupBy};
use crate::commands::progress::NoProgress;
use crate::commands::prune::{PruneOptions, parse_max_unused};
use crate::error::{Error, Result};
use crate::jobs::config::{CommandLine, Config, JobConfig, PasswordSource, job_tag};
use crate::jobs::hooks::{self, HOOK_TIMEOUT};
use crate::jobs::state::{JobState, RunRecord, StateDir};
use crate::repository::{self, OpenOptions, Repository, SnapshotFilter};
use chrono::{DateTime, FixedOffset};
use serde::Serialize;
use serde_json::json;
use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// How `run` opens repositories and stamps snapshots.
#[derive(Clone, Debug, Default)]
pub struct RunOptions {
    /// Snapshot time instead of now (for tests and replays).
    pub time: Option<DateTime<FixedOffset>>,
    /// How repositories are opened (lock waits, cache, warnings).
    pub open: OpenOptions,
}

/// How a job ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Every step succeeded.
    Ok,
    /// A step failed.
    Failed,
    /// Another run of the job was still going.
    Skipped,
}

/// The snapshot a job made.
#[derive(Clone, Debug, Default, Serialize)]
pub struct SnapshotStep {
    /// Its id.
    pub id: String,
    /// Files in it.
    pub files: u64,
    /// Files new since the parent.
    pub files_new: u64,
    /// Files changed since the parent.
    pub files_changed: u64,
    /// Bytes of its files.
    pub bytes: u64,
    /// New data stored (plaintext bytes).
    pub bytes_added: u64,
    /// Databases stored.
    pub databases: usize,
    /// Command streams stored.
    pub streams: usize,
    /// Source entries that could not be read.
    pub source_errors: Vec<String>,
}

/// Retention in one repository.
#[derive(Clone, Debug, Default, Serialize)]
pub struct RetentionStep {
    /// The repository.
    pub repository: String,
    /// Snapshots removed.
    pub forgotten: usize,
    /// Whether prune ran.
    pub pruned: bool,
    /// Bytes prune freed.
    pub bytes_freed: u64,
}

/// One copy.
#[derive(Clone, Debug, Default, Serialize)]
pub struct CopyStep {
    /// The destination.
    pub repository: String,
    /// Snapshots copied.
    pub copied: usize,
    /// Snapshots it already had.
    pub present: usize,
    /// Bytes stored there.
    pub bytes_stored: u64,
    /// Why it failed.
    pub error: Option<String>,
}

/// The verification.
#[derive(Clone, Debug, Default, Serialize)]
pub struct VerifyStep {
    /// The part of the data read (`n/m`), if any.
    pub read_data_part: Option<String>,
    /// Packs read.
    pub packs_read: usize,
    /// Whether no damage was found.
    pub ok: bool,
    /// The problems found.
    pub problems: Vec<String>,
}

/// What happened to one job.
#[derive(Clone, Debug, Serialize)]
pub struct JobReport {
    /// Job name.
    pub job: String,
    /// The repository it backs up into.
    pub repository: String,
    /// How it ended.
    pub outcome: Outcome,
    /// The first error.
    pub error: Option<String>,
    /// Start (RFC 3339).
    pub started: String,
    /// Wall time.
    pub duration_seconds: f64,
    /// The snapshot.
    pub snapshot: Option<SnapshotStep>,
    /// Retention, per repository.
    pub retention: Vec<RetentionStep>,
    /// Copies.
    pub copies: Vec<CopyStep>,
    /// Verification, when it was due.
    pub verify: Option<VerifyStep>,
    /// Things that did not fail the job (a ping that got no answer, a
    /// prune postponed because the repository was busy).
    pub warnings: Vec<String>,
    /// What the hooks printed.
    pub hook_output: String,
}

/// Repositories opened during one `run`, each opened once.
pub struct Repositories<'c> {
    config: &'c Config,
    open: OpenOptions,
    opened: HashMap<String, Repository>,
}

impl<'c> Repositories<'c> {
    /// Nothing opened yet.
    pub fn new(config: &'c Config, open: OpenOptions) -> Repositories<'c> {
        Repositories {
            config,
            open,
            opened: HashMap::new(),
        }
    }

    /// The repository called `name`, opened on first use.
    pub fn get(&mut self, name: &str) -> Result<&Repository> {
        if !self.opened.contains_key(name) {
            let repo = open_repository(self.config, name, &self.open)?;
            self.opened.insert(name.to_string(), repo);
        }
        Ok(&self.opened[name])
    }
}

/// Opens the configured repository `name`.
pub fn open_repository(config: &Config, name: &str, open: &OpenOptions) -> Result<Repository> {
    let r = config
        .repositories
        .get(name)
        .ok_or_else(|| Error::InvalidInput(format!("no repository named {name:?}")))?;
    let options: Vec<(String, String)> = r
        .options
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let password = password(&r.password_source())
        .map_err(|e| Error::InvalidInput(format!("repository {name}: {e}")))?;
    let mut open = open.clone();
    if open.cache_dir.is_none() {
        open.cache_dir = config.settings.cache_dir.clone();
    }
    if let Some(d) = config.settings.retry_lock {
        open.retry_lock = d.0;
    }
    repository::connect(&r.location, &options)?.open(&password, open)
}

/// Reads a password from its source (no prompting: jobs run unattended).
pub fn password(src: &PasswordSource) -> Result<Vec<u8>> {
    let strip = |mut v: Vec<u8>| {
        if v.last() == Some(&b'\n') {
            v.pop();
            if v.last() == Some(&b'\r') {
                v.pop();
            }
        }
        v
    };
    match src {
        PasswordSource::File(p) => std::fs::read(p).map(strip).map_err(|e| Error::io(p, e)),
        PasswordSource::Env(v) => std::env::var_os(v)
            .map(std::os::unix::ffi::OsStringExt::into_vec)
            .ok_or_else(|| Error::InvalidInput(format!("the environment variable {v} is not set"))),
        PasswordSource::Command(c) => {
            let out = std::process::Command::new("sh")
                .arg("-c")
                .arg(c)
                .stdin(std::process::Stdio::null())
                .output()
                .map_err(|e| Error::InvalidInput(format!("password command {c:?}: {e}")))?;
            if !out.status.success() {
                return Err(Error::InvalidInput(format!(
                    "password command {c:?} failed ({})",
                    out.status
                )));
            }
            Ok(strip(out.stdout))
        }
    }
}

/// Runs the named jobs (all, in file order, when `names` is empty),
/// opening repositories through `repos`. Unknown names are an error
/// before anything runs.
pub fn run_jobs(
    config: &Config,
    names: &[String],
    opts: &RunOptions,
    repos: &mut Repositories,
) -> Result<Vec<JobReport>> {
    for n in names {
        if !config.jobs.contains_key(n) {
            return Err(Error::InvalidInput(format!(
                "no job named {n:?} in {} (jobs: {})",
                config.path.display(),
                config.jobs.keys().cloned().collect::<Vec<_>>().join(", ")
            )));
        }
    }
    let state = StateDir::open(&config.state_dir())?;
    let mut reports = Vec::new();
    for (name, job) in &config.jobs {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        reports.push(run_job(config, name, job, &state, repos, opts)?);
    }
    Ok(reports)
}

/// Runs one job; only a failure to keep its state is an error (the job's
/// own failures are in the report).
fn run_job(
    config: &Config,
    name: &str,
    job: &JobConfig,
    state_dir: &StateDir,
    repos: &mut Repositories,
    opts: &RunOptions,
) -> Result<JobReport> {
    let repo_name = config.repository_of(job).unwrap_or_default().to_string();
    let start = chrono::Utc::now();
    let clock = Instant::now();
    let mut report = JobReport {
        job: name.to_string(),
        repository: repo_name.clone(),
        outcome: Outcome::Ok,
        error: None,
        started: start.to_rfc3339(),
        duration_seconds: 0.0,
        snapshot: None,
        retention: Vec::new(),
        copies: Vec::new(),
        verify: None,
        warnings: Vec::new(),
        hook_output: String::new(),
    };
    let Some(_lock) = state_dir.lock(name)? else {
        report.outcome = Outcome::Skipped;
        report.warnings.push(format!(
            "job {name} is still running from an earlier start; skipped"
        ));
        return Ok(report);
    };
    let mut state = state_dir.load(name)?;
    let host = job
        .host
        .clone()
        .or_else(|| config.settings.host.clone())
        .unwrap_or_else(crate::sys::hostname);
    if let Some(url) = &job.ping.start {
        let body = ping_body(name, "start", &host, &report);
        report
            .warnings
            .extend(hooks::ping(&url.0, &body, &job.ping));
    }
    let result = steps(name, job, &host, &mut state, repos, opts, &mut report);
    if let Err(e) = result {
        report.outcome = Outcome::Failed;
        report.error = Some(e.to_string());
    }
    let hook_timeout = job.hooks.timeout.map_or(HOOK_TIMEOUT, |d| d.0);
    let env = |status: &str, report: &JobReport| -> Vec<(&'static str, String)> {
        vec![
            ("CAIRN_JOB", name.to_string()),
            ("CAIRN_JOB_STATUS", status.to_string()),
            ("CAIRN_JOB_ERROR", report.error.clone().unwrap_or_default()),
            (
                "CAIRN_SNAPSHOT_ID",
                report
                    .snapshot
                    .as_ref()
                    .map(|s| s.id.clone())
                    .unwrap_or_default(),
            ),
            ("CAIRN_REPOSITORY", repo_name.clone()),
        ]
    };
    if report.outcome == Outcome::Ok {
        for h in &job.hooks.after {
            let env = env("success", &report);
            if let Err(e) = hooks::run_hook(h, &env, hook_timeout, &mut report.hook_output) {
                report.outcome = Outcome::Failed;
                report.error = Some(format!("after hook: {e}"));
                break;
            }
        }
    }
    if report.outcome == Outcome::Failed {
        for h in &job.hooks.failure {
            let env = env("failure", &report);
            if let Err(e) = hooks::run_hook(h, &env, hook_timeout, &mut report.hook_output) {
                report.warnings.push(format!("failure hook: {e}"));
            }
        }
    }
    report.duration_seconds = clock.elapsed().as_secs_f64();
    let (url, status) = match report.outcome {
        Outcome::Ok => (&job.ping.success, "success"),
        _ => (&job.ping.failure, "failure"),
    };
    if let Some(url) = url {
        let body = ping_body(name, status, &host, &report);
        report
            .warnings
            .extend(hooks::ping(&url.0, &body, &job.ping));
    }
    state.runs += 1;
    let ok = report.outcome == Outcome::Ok;
    let snap = report.snapshot.clone().unwrap_or_default();
    state.last_run = Some(RunRecord {
        started: start.timestamp(),
        duration_seconds: report.duration_seconds,
        ok,
        error: report.error.clone(),
        snapshot_id: report.snapshot.as_ref().map(|s| s.id.clone()),
        files: snap.files,
        bytes: snap.bytes,
        bytes_added: snap.bytes_added,
        source_errors: snap.source_errors.len() as u64,
    });
    if ok {
        state.last_success = Some(start.timestamp());
    } else {
        state.last_failure = Some(start.timestamp());
        state.last_error = report.error.clone();
        state.failures += 1;
    }
    state_dir.save(name, &state)?;
    Ok(report)
}

fn ping_body(job: &str, status: &str, host: &str, r: &JobReport) -> serde_json::Value {
    json!({
        "job": job,
        "status": status,
        "host": host,
        "repository": r.repository,
        "started": r.started,
        "duration_seconds": r.duration_seconds,
        "snapshot_id": r.snapshot.as_ref().map(|s| &s.id),
        "files": r.snapshot.as_ref().map(|s| s.files),
        "bytes_added": r.snapshot.as_ref().map(|s| s.bytes_added),
        "error": r.error,
    })
}

/// The steps between the start and the end hooks; the first error ends
/// the job.
#[allow(clippy::too_many_arguments)]
fn steps(
    name: &str,
    job: &JobConfig,
    host: &str,
    state: &mut JobState,
    repos: &mut Repositories,
    opts: &RunOptions,
    report: &mut JobReport,
) -> Result<()> {
    let hook_timeout = job.hooks.timeout.map_or(HOOK_TIMEOUT, |d| d.0);
    for h in &job.hooks.before {
        let env = [
            ("CAIRN_JOB", name.to_string()),
            ("CAIRN_JOB_STATUS", "start".to_string()),
            ("CAIRN_REPOSITORY", report.repository.clone()),
        ];
        hooks::run_hook(h, &env, hook_timeout, &mut report.hook_output)
            .map_err(|e| Error::InvalidInput(format!("before hook: {e}")))?;
    }
    let backup_opts = backup_options(job, name, host, opts)?;
    backup_opts.validate()?;
    let repo_name = report.repository.clone();
    let repo = repos.get(&repo_name)?;
    let b = backup::backup(repo, &backup_opts, &NoProgress)?;
    let sum = &b.snapshot.summary;
    report.snapshot = Some(SnapshotStep {
        id: b.snapshot_id.to_hex(),
        files: sum.total_files,
        files_new: sum.files_new,
        files_changed: sum.files_changed,
        bytes: sum.total_bytes,
        bytes_added: sum.bytes_added,
        databases: b.snapshot.databases.len(),
        streams: job.commands.len(),
        source_errors: b.errors.iter().map(|e| e.to_string()).collect(),
    });
    if let Some(d) = b.failed_databases().next() {
        return Err(Error::InvalidInput(format!(
            "database {} failed its {}",
            d.path,
            d.check.pragma()
        )));
    }
    let now = chrono::Utc::now().timestamp();
    let filter = SnapshotFilter {
        tags: vec![vec![job_tag(name)]],
        ..Default::default()
    };
    // Retention in the job's repository (and the copies, if asked).
    if let Some(r) = &job.retention {
        let prune_due = r.prune_every.is_some_and(|every| {
            state
                .last_prune
                .is_none_or(|t| now.saturating_sub(t) >= every.0.as_secs() as i64)
        });
        let prune = prune_due.then(|| PruneOptions {
            max_unused: r
                .max_unused
                .as_deref()
                .map_or(Ok(0.05), parse_max_unused)
                .unwrap_or(0.05),
            ..Default::default()
        });
        let forget_opts = ForgetOptions {
            ids: Vec::new(),
            policy: r.policy(),
            group_by: GroupBy {
                host: true,
                paths: false,
                tags: false,
            },
            filter: filter.clone(),
            dry_run: false,
            allow_remove_all: false,
            prune,
        };
        let mut targets = vec![repo_name.clone()];
        if job.forget_in_copies {
            targets.extend(job.copy_to.iter().map(|c| c.get_ref().clone()));
        }
        // The copies get the policy after they received the new snapshot.
        let repo = repos.get(&repo_name)?;
        match forget::forget(repo, &forget_opts) {
            Ok(f) => {
                report.retention.push(retention_step(&repo_name, &f));
                if f.prune.is_some() {
                    state.last_prune = Some(now);
                }
            }
            Err(Error::Locked(who)) => report.warnings.push(format!(
                "retention postponed: {repo_name} is locked by {who}"
            )),
            Err(e) => return Err(e),
        }
        copies(job, &repo_name, &filter, repos, report)?;
        for t in targets.iter().skip(1) {
            let dest = repos.get(t)?;
            match forget::forget(dest, &forget_opts) {
                Ok(f) => report.retention.push(retention_step(t, &f)),
                Err(Error::Locked(who)) => report
                    .warnings
                    .push(format!("retention in {t} postponed: locked by {who}")),
                Err(e) => return Err(e),
            }
        }
    } else {
        copies(job, &repo_name, &filter, repos, report)?;
    }
    if let Some(err) = report.copies.iter().find_map(|c| c.error.clone()) {
        return Err(Error::InvalidInput(err));
    }
    // Verification when due.
    if let Some(v) = &job.verify {
        let due = state
            .last_verify
            .is_none_or(|t| now.saturating_sub(t) >= v.every.0.as_secs() as i64);
        if due {
            let parts = v.read_all_every.map(|all| {
                let every = v.every.0.as_secs().max(1);
                (all.0.as_secs().div_ceil(every)).clamp(1, 10_000) as u32
            });
            let part = parts.map(|m| {
                let n = state.verify_next_part.clamp(1, m);
                (n, m)
            });
            let repo = repos.get(&repo_name)?;
            let c = check::check(
                repo,
                &CheckOptions {
                    read_data: part.map(|(n, m)| Subset::Part(n, m)),
                    max_age: None,
                    filter: SnapshotFilter::default(),
                },
            )?;
            let problems: Vec<String> = c.errors.iter().map(|p| p.to_string()).collect();
            report.verify = Some(VerifyStep {
                read_data_part: part.map(|(n, m)| format!("{n}/{m}")),
                packs_read: c.packs_read,
                ok: c.ok(),
                problems: problems.clone(),
            });
            state.last_verify = Some(now);
            state.verify_damaged = !c.ok();
            if let Some((n, m)) = part {
                state.verify_next_part = n % m + 1;
            }
            if !c.ok() {
                return Err(Error::InvalidInput(format!(
                    "verification found {} problems in {repo_name}: {}",
                    problems.len(),
                    problems.first().cloned().unwrap_or_default()
                )));
            }
        }
    }
    if !report
        .snapshot
        .as_ref()
        .is_none_or(|s| s.source_errors.is_empty())
    {
        let s = report.snapshot.as_ref().expect("snapshot");
        return Err(Error::InvalidInput(format!(
            "snapshot {} saved, but {} source entries could not be read (first: {})",
            &s.id[..8],
            s.source_errors.len(),
            s.source_errors[0]
        )));
    }
    Ok(())
}

fn retention_step(repo: &str, f: &forget::ForgetReport) -> RetentionStep {
    RetentionStep {
        repository: repo.to_string(),
        forgotten: f.removed.len(),
        pruned: f.prune.is_some(),
        bytes_freed: f
            .prune
            .as_ref()
            .map_or(0, |p| p.size_before.saturating_sub(p.size_after)),
    }
}

/// Copies the job's snapshots to each `copy_to` repository; a failure is
/// recorded per destination (the others are still tried).
fn copies(
    job: &JobConfig,
    source: &str,
    filter: &SnapshotFilter,
    repos: &mut Repositories,
    report: &mut JobReport,
) -> Result<()> {
    for dest_name in job.copy_to.iter().map(|c| c.get_ref()) {
        let mut step = CopyStep {
            repository: dest_name.clone(),
            ..Default::default()
        };
        let result = (|| -> Result<copy::CopyReport> {
            repos.get(dest_name)?;
            repos.get(source)?;
            let src = &repos.opened[source];
            let dest = &repos.opened[dest_name];
            copy::copy(
                src,
                dest,
                &CopyOptions {
                    ids: Vec::new(),
                    filter: filter.clone(),
                    dry_run: false,
                },
                &NoProgress,
            )
        })();
        match result {
            Ok(c) => {
                step.copied = c.copied.len();
                step.present = c.present.len();
                step.bytes_stored = c.bytes_stored;
            }
            Err(e) => step.error = Some(format!("copy to {dest_name}: {e}")),
        }
        report.copies.push(step);
    }
    Ok(())
}

/// The backup a job makes.
fn backup_options(
    job: &JobConfig,
    name: &str,
    host: &str,
    opts: &RunOptions,
) -> Result<BackupOptions> {
    let mut sqlite = job.sqlite.clone();
    for dir in &job.sqlite_search {
        for db in find_databases(dir)? {
            if !sqlite.contains(&db) {
                sqlite.push(db);
            }
        }
    }
    let mut tags: Vec<String> = job.tags.iter().map(|t| t.0.clone()).collect();
    tags.push(job_tag(name));
    Ok(BackupOptions {
        paths: job.paths.clone(),
        host: Some(host.to_string()),
        tags,
        time: opts.time,
        excludes: job.exclude.clone(),
        exclude_files: job.exclude_files.clone(),
        one_file_system: job.one_file_system,
        parent: None,
        force: false,
        sqlite,
        sqlite_options: SqliteOptions {
            check: if job.sqlite_quick {
                CheckKind::Quick
            } else {
                CheckKind::Integrity
            },
            ..Default::default()
        },
        sqlite_allow_corrupt: false,
        streams: job
            .commands
            .iter()
            .map(|s| StdinSource {
                filename: s.name.clone(),
                command: Some(argv(&s.run)),
            })
            .collect(),
        ..Default::default()
    })
}

fn argv(c: &CommandLine) -> Vec<OsString> {
    c.argv().into_iter().map(OsString::from).collect()
}

/// SQLite databases below `dir`, recognised by their 16-byte header
/// (journal, WAL and shared-memory files are not databases), sorted.
pub fn find_databases(dir: &Path) -> Result<Vec<PathBuf>> {
    const MAGIC: &[u8; 16] = b"SQLite format 3\0";
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = std::fs::read_dir(&d).map_err(|e| Error::io(&d, e))?;
        for e in entries {
            let e = e.map_err(|err| Error::io(&d, err))?;
            let p = e.path();
            let Ok(ft) = e.file_type() else { continue };
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            if !ft.is_file() {
                continue;
            }
            let name = e.file_name();
            let name = name.to_string_lossy();
            if ["-wal", "-shm", "-journal"]
                .iter()
                .any(|s| name.ends_with(s))
            {
                continue;
            }
            let mut head = [0u8; 16];
            let is_db = std::fs::File::open(&p)
                .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
                .is_ok()
                && &head == MAGIC;
            if is_db {
                out.push(p);
            }
        }
    }
    out.sort();
    Ok(out)
}
