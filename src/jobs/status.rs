//! `cairn status`: for each job its last success and its age against the
//! freshness limit, its last error, how many snapshots it has in each
//! repository; for each repository its size. Rendered as text, JSON, or
//! Prometheus text format (also written to `metrics_file` after each run).

use crate::error::Result;
use crate::jobs::config::{Config, job_tag};
use crate::jobs::run::Repositories;
use crate::jobs::state::{RunRecord, StateDir};
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write as _;

/// One job's health.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    /// The last run succeeded and is recent enough.
    Ok,
    /// No success within the freshness limit (or never).
    Stale,
    /// The last run failed, the last verification found damage, or the
    /// repository cannot be read.
    Failing,
}

/// A job's status.
#[derive(Clone, Debug, Serialize)]
pub struct JobStatus {
    /// Job name.
    pub job: String,
    /// Its repository.
    pub repository: String,
    /// Overall health.
    pub health: Health,
    /// Why it is not ok.
    pub reason: Option<String>,
    /// Its schedule, as written.
    pub schedule: Option<String>,
    /// Freshness limit in seconds.
    pub max_age_seconds: Option<u64>,
    /// Last success (Unix seconds): the state's, else the newest snapshot's.
    pub last_success: Option<i64>,
    /// Seconds since then.
    pub age_seconds: Option<i64>,
    /// The last run.
    pub last_run: Option<RunRecord>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// Runs and failed runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failures: u64,
    /// Whether the last verification found damage.
    pub verify_damaged: bool,
    /// When it was last verified.
    pub last_verify: Option<i64>,
    /// Snapshots of the job, per repository (its own first, then copies).
    pub snapshots: Vec<(String, Option<usize>)>,
}

/// A repository's status.
#[derive(Clone, Debug, Serialize)]
pub struct RepositoryStatus {
    /// Name.
    pub repository: String,
    /// Location.
    pub location: String,
    /// Snapshots (all jobs).
    pub snapshots: Option<usize>,
    /// Bytes stored.
    pub size_bytes: Option<u64>,
    /// Local repositories: free bytes on its file system.
    pub free_bytes: Option<u64>,
    /// Local repositories: size of its file system.
    pub filesystem_bytes: Option<u64>,
    /// Why free space is too low (`min_free`).
    pub low_space: Option<String>,
    /// Why it could not be read.
    pub error: Option<String>,
}

/// Everything `status` reports.
#[derive(Clone, Debug, Serialize)]
pub struct StatusReport {
    /// When it was made (Unix seconds).
    pub time: i64,
    /// Per job, in file order.
    pub jobs: Vec<JobStatus>,
    /// Per repository.
    pub repositories: Vec<RepositoryStatus>,
}

impl StatusReport {
    /// The worst health of any job.
    pub fn health(&self) -> Health {
        if self.jobs.iter().any(|j| j.health == Health::Failing) {
            Health::Failing
        } else if self.jobs.iter().any(|j| j.health == Health::Stale) {
            Health::Stale
        } else {
            Health::Ok
        }
    }
}

/// Computes the status of the named jobs (all when empty) and of the
/// repositories they use.
pub fn status(config: &Config, repos: &mut Repositories, names: &[String]) -> Result<StatusReport> {
    let state_dir = StateDir::open(&config.state_dir())?;
    let now = chrono::Utc::now().timestamp();
    // Each repository read once: (snapshot tags and times, size) or error.
    type Listing = (Vec<(Vec<String>, i64)>, u64);
    type Seen = std::result::Result<Listing, String>;
    let mut seen: HashMap<String, Seen> = HashMap::new();
    let mut read = |name: &str, repos: &mut Repositories| -> Seen {
        if let Some(s) = seen.get(name) {
            return s.clone();
        }
        let r = (|| -> Result<Listing> {
            let repo = repos.get(name)?;
            let list = crate::commands::snapshots::list(repo, &Default::default())?;
            let size = repo.storage_bytes()?;
            Ok((
                list.into_iter().map(|(_, s)| (s.tags, s.time)).collect(),
                size,
            ))
        })()
        .map_err(|e| e.to_string());
        seen.insert(name.to_string(), r.clone());
        r
    };
    let mut jobs = Vec::new();
    for (name, job) in &config.jobs {
        if !names.is_empty() && !names.contains(name) {
            continue;
        }
        let repo = config.repository_of(job).unwrap_or_default().to_string();
        let state = state_dir.load(name)?;
        let tag = job_tag(name);
        let mut snapshots = Vec::new();
        let mut newest = None;
        let mut unreadable = None;
        let targets =
            std::iter::once(repo.clone()).chain(job.copy_to.iter().map(|c| c.get_ref().clone()));
        for (i, target) in targets.enumerate() {
            match read(&target, repos) {
                Ok((list, _)) => {
                    let mine: Vec<i64> = list
                        .iter()
                        .filter(|(tags, _)| tags.contains(&tag))
                        .map(|(_, t)| *t)
                        .collect();
                    if i == 0 {
                        newest = mine.iter().copied().max();
                    }
                    snapshots.push((target, Some(mine.len())));
                }
                Err(e) => {
                    unreadable.get_or_insert(format!("repository {target}: {e}"));
                    snapshots.push((target, None));
                }
            }
        }
        let last_success = state.last_success.or(newest);
        let age = last_success.map(|t| now.saturating_sub(t));
        let max_age = job.max_age.map(|d| d.0.as_secs());
        let last_failed = state.last_run.as_ref().is_some_and(|r| !r.ok);
        let (health, reason) = if let Some(u) = unreadable {
            (Health::Failing, Some(u))
        } else if last_failed {
            (
                Health::Failing,
                Some(format!(
                    "last run failed: {}",
                    state.last_error.clone().unwrap_or_default()
                )),
            )
        } else if state.verify_damaged {
            (
                Health::Failing,
                Some("the last verification found damage".to_string()),
            )
        } else {
            match (max_age, age) {
                (Some(m), Some(a)) if a > m as i64 => (
                    Health::Stale,
                    Some(format!(
                        "last success {} ago, limit {}",
                        human(a),
                        human(m as i64)
                    )),
                ),
                (Some(_), None) => (Health::Stale, Some("never succeeded".to_string())),
                _ => (Health::Ok, None),
            }
        };
        jobs.push(JobStatus {
            job: name.clone(),
            repository: repo,
            health,
            reason,
            schedule: job.schedule.as_ref().map(|s| s.text.clone()),
            max_age_seconds: max_age,
            last_success,
            age_seconds: age,
            last_run: state.last_run.clone(),
            last_error: state.last_error.clone(),
            runs: state.runs,
            failures: state.failures,
            verify_damaged: state.verify_damaged,
            last_verify: state.last_verify,
            snapshots,
        });
    }
    let mut repositories = Vec::new();
    for (name, r) in &config.repositories {
        let used = jobs
            .iter()
            .any(|j| j.snapshots.iter().any(|(n, _)| n == name));
        if !used {
            continue;
        }
        let s = read(name, repos);
        let space = (!r.location.starts_with("s3:"))
            .then(|| crate::sys::filesystem_space(std::path::Path::new(&r.location)).ok())
            .flatten();
        let low_space = match (r.min_free, space) {
            (Some(limit), Some((free, total))) if limit.violated(free, total) => Some(format!(
                "repository {name}: the disk is filling up: {} MiB free of {} MiB",
                free >> 20,
                total >> 20
            )),
            _ => None,
        };
        repositories.push(RepositoryStatus {
            repository: name.clone(),
            location: r.location.clone(),
            snapshots: s.as_ref().ok().map(|(l, _)| l.len()),
            size_bytes: s.as_ref().ok().map(|(_, size)| *size),
            free_bytes: space.map(|(f, _)| f),
            filesystem_bytes: space.map(|(_, t)| t),
            low_space,
            error: s.err(),
        });
    }
    // A job whose repository's disk is filling up needs attention too.
    for j in &mut jobs {
        let low = repositories
            .iter()
            .find(|r| r.repository == j.repository)
            .and_then(|r| r.low_space.clone());
        if let (Some(why), Health::Ok | Health::Stale) = (low, j.health) {
            j.health = Health::Failing;
            j.reason = Some(why);
        }
    }
    Ok(StatusReport {
        time: now,
        jobs,
        repositories,
    })
}

/// `3h 5m` style.
pub fn human(secs: i64) -> String {
    let s = secs.max(0);
    let (d, h, m) = (s / 86400, (s % 86400) / 3600, (s % 3600) / 60);
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Prometheus text exposition format (metric names in the README).
pub fn prometheus(r: &StatusReport) -> String {
    let mut out = String::new();
    let esc = |s: &str| {
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    };
    let mut metric = |name: &str, help: &str, rows: Vec<(String, f64)>| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, v) in rows {
            let _ = writeln!(out, "{name}{{{labels}}} {v}");
        }
    };
    let job = |j: &JobStatus| {
        format!(
            "job=\"{}\",repository=\"{}\"",
            esc(&j.job),
            esc(&j.repository)
        )
    };
    let per_job = |f: &dyn Fn(&JobStatus) -> Option<f64>| -> Vec<(String, f64)> {
        r.jobs
            .iter()
            .filter_map(|j| f(j).map(|v| (job(j), v)))
            .collect()
    };
    metric(
        "cairn_job_last_success_timestamp_seconds",
        "Start of the job's last successful run (Unix time).",
        per_job(&|j| j.last_success.map(|t| t as f64)),
    );
    metric(
        "cairn_job_last_run_timestamp_seconds",
        "Start of the job's last run (Unix time).",
        per_job(&|j| j.last_run.as_ref().map(|l| l.started as f64)),
    );
    metric(
        "cairn_job_last_run_success",
        "1 if the job's last run succeeded, else 0.",
        per_job(&|j| j.last_run.as_ref().map(|l| f64::from(u8::from(l.ok)))),
    );
    metric(
        "cairn_job_last_run_duration_seconds",
        "Wall time of the job's last run.",
        per_job(&|j| j.last_run.as_ref().map(|l| l.duration_seconds)),
    );
    metric(
        "cairn_job_last_run_bytes_added",
        "New data stored by the job's last run (bytes before compression).",
        per_job(&|j| j.last_run.as_ref().map(|l| l.bytes_added as f64)),
    );
    metric(
        "cairn_job_last_run_files",
        "Files in the snapshot of the job's last run.",
        per_job(&|j| j.last_run.as_ref().map(|l| l.files as f64)),
    );
    metric(
        "cairn_job_last_run_source_errors",
        "Source entries the job's last run could not read.",
        per_job(&|j| j.last_run.as_ref().map(|l| l.source_errors as f64)),
    );
    metric(
        "cairn_job_runs_total",
        "Runs of the job so far.",
        per_job(&|j| Some(j.runs as f64)),
    );
    metric(
        "cairn_job_failures_total",
        "Failed runs of the job so far.",
        per_job(&|j| Some(j.failures as f64)),
    );
    metric(
        "cairn_job_age_seconds",
        "Seconds since the job's last success.",
        per_job(&|j| j.age_seconds.map(|a| a as f64)),
    );
    metric(
        "cairn_job_max_age_seconds",
        "The job's freshness limit.",
        per_job(&|j| j.max_age_seconds.map(|a| a as f64)),
    );
    metric(
        "cairn_job_stale",
        "1 if the job has no success within its freshness limit.",
        per_job(&|j| Some(f64::from(u8::from(j.health == Health::Stale)))),
    );
    metric(
        "cairn_job_failing",
        "1 if the job's last run failed, its last verification found damage or its repository cannot be read.",
        per_job(&|j| Some(f64::from(u8::from(j.health == Health::Failing)))),
    );
    let snaps: Vec<(String, f64)> = r
        .jobs
        .iter()
        .flat_map(|j| {
            j.snapshots.iter().filter_map(move |(repo, n)| {
                n.map(|n| {
                    (
                        format!("job=\"{}\",repository=\"{}\"", esc(&j.job), esc(repo)),
                        n as f64,
                    )
                })
            })
        })
        .collect();
    metric(
        "cairn_job_snapshots",
        "Snapshots of the job in each repository (its own and its copies).",
        snaps,
    );
    let repo = |f: &dyn Fn(&RepositoryStatus) -> Option<f64>| -> Vec<(String, f64)> {
        r.repositories
            .iter()
            .filter_map(|x| f(x).map(|v| (format!("repository=\"{}\"", esc(&x.repository)), v)))
            .collect()
    };
    metric(
        "cairn_repository_up",
        "1 if the repository could be opened and read.",
        repo(&|x| Some(f64::from(u8::from(x.error.is_none())))),
    );
    metric(
        "cairn_repository_size_bytes",
        "Bytes stored in the repository.",
        repo(&|x| x.size_bytes.map(|s| s as f64)),
    );
    metric(
        "cairn_repository_filesystem_free_bytes",
        "Free bytes on a local repository's file system.",
        repo(&|x| x.free_bytes.map(|s| s as f64)),
    );
    metric(
        "cairn_repository_filesystem_size_bytes",
        "Size of a local repository's file system.",
        repo(&|x| x.filesystem_bytes.map(|s| s as f64)),
    );
    metric(
        "cairn_repository_snapshots",
        "Snapshots in the repository (all jobs).",
        repo(&|x| x.snapshots.map(|s| s as f64)),
    );
    out
}

/// Writes the metrics file atomically (node_exporter must never read half).
pub fn write_metrics(path: &std::path::Path, r: &StatusReport) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| crate::error::Error::io(dir, e))?;
    }
    crate::sys::write_file_atomic(path, prometheus(r).as_bytes(), 0o644)
        .map_err(|e| crate::error::Error::io(path, e))
}
