//! `run`, `status` and `schedule`: the job configuration file's commands.

use super::args::{RunArgs, ScheduleArgs, StatusArgs};
use super::commands::{Ctx, parse_time};
use super::output::{self, bytes, print_json};
use super::{EXIT_FAILING, EXIT_JOB_FAILED, EXIT_OK, EXIT_STALE};
use anyhow::{Context, Result, bail};
use cairn::jobs::config::Config;
use cairn::jobs::run::{JobReport, Outcome, Repositories, RunOptions, run_jobs};
use cairn::jobs::schedule::{Flavor, render};
use cairn::jobs::status::{
    Health, StatusReport, human, prometheus, status as job_status, write_metrics,
};
use serde_json::json;
use std::io::Write;

fn load(ctx: &Ctx) -> Result<Config> {
    let c = Config::find_and_load(ctx.g.config.as_deref())?;
    for w in &c.warnings {
        err!("cairn: warning: {w}");
    }
    Ok(c)
}

pub(super) fn run(ctx: &Ctx, a: &RunArgs) -> Result<i32> {
    let config = load(ctx)?;
    let time = a.time.as_deref().map(parse_time).transpose()?;
    let opts = RunOptions {
        time,
        open: ctx.open_options.clone(),
    };
    let mut repos = Repositories::new(&config, ctx.open_options.clone());
    let reports = run_jobs(&config, &a.jobs, &opts, &mut repos)?;
    for r in &reports {
        for line in r.hook_output.lines() {
            err!("cairn: {} hook: {}", r.job, output::escape(line));
        }
        for w in &r.warnings {
            err!("cairn: {}: warning: {}", r.job, output::escape(w));
        }
    }
    // The metrics file describes every job after every run.
    let mut metrics_error = None;
    if let Some(path) = &config.settings.metrics_file {
        let written = job_status(&config, &mut repos, &[]).and_then(|s| write_metrics(path, &s));
        if let Err(e) = written {
            err!("cairn: warning: metrics file {}: {e}", path.display());
            metrics_error = Some(e.to_string());
        }
    }
    let failed = reports
        .iter()
        .filter(|r| r.outcome == Outcome::Failed)
        .count();
    if ctx.g.json {
        print_json(&json!({
            "ok": failed == 0,
            "jobs": reports,
            "metrics_error": metrics_error,
        }))?;
    } else {
        for r in &reports {
            if r.outcome == Outcome::Failed {
                err!(
                    "cairn: job {} FAILED: {}",
                    r.job,
                    output::escape(r.error.as_deref().unwrap_or(""))
                );
            }
        }
        if !ctx.g.quiet {
            let mut out = std::io::stdout().lock();
            for r in &reports {
                print_job(&mut out, r)?;
            }
            let skipped = reports
                .iter()
                .filter(|r| r.outcome == Outcome::Skipped)
                .count();
            writeln!(
                out,
                "{} jobs: {} ok, {} failed, {} skipped",
                reports.len(),
                reports.len() - failed - skipped,
                failed,
                skipped
            )?;
        }
    }
    Ok(if failed > 0 { EXIT_JOB_FAILED } else { EXIT_OK })
}

fn print_job(out: &mut dyn Write, r: &JobReport) -> Result<()> {
    let head = match r.outcome {
        Outcome::Ok => "ok".to_string(),
        Outcome::Failed => format!(
            "FAILED: {}",
            output::escape(r.error.as_deref().unwrap_or(""))
        ),
        Outcome::Skipped => "skipped (still running)".to_string(),
    };
    writeln!(out, "job {}: {head} in {:.1}s", r.job, r.duration_seconds)?;
    if let Some(s) = &r.snapshot {
        let mut extra = String::new();
        if s.databases > 0 {
            extra.push_str(&format!(", {} databases", s.databases));
        }
        if s.streams > 0 {
            extra.push_str(&format!(", {} command streams", s.streams));
        }
        writeln!(
            out,
            "  snapshot {} in {}: {} files ({} new, {} changed), {}, {} added{extra}",
            &s.id[..8],
            r.repository,
            s.files,
            s.files_new,
            s.files_changed,
            bytes(s.bytes),
            bytes(s.bytes_added)
        )?;
    }
    for t in &r.retention {
        let pruned = if t.pruned {
            format!(", pruned ({} freed)", bytes(t.bytes_freed))
        } else {
            String::new()
        };
        writeln!(
            out,
            "  retention in {}: {} snapshots forgotten{pruned}",
            t.repository, t.forgotten
        )?;
    }
    for c in &r.copies {
        match &c.error {
            Some(e) => writeln!(out, "  {}", output::escape(e))?,
            None => writeln!(
                out,
                "  copy to {}: {} snapshots copied, {} already there ({} stored)",
                c.repository,
                c.copied,
                c.present,
                bytes(c.bytes_stored)
            )?,
        }
    }
    if let Some(v) = &r.verify {
        let part = v
            .read_data_part
            .as_ref()
            .map(|p| format!("data part {p}, {} packs read", v.packs_read))
            .unwrap_or_else(|| "structure".to_string());
        let verdict = if v.ok {
            "no damage".to_string()
        } else {
            format!("{} problems", v.problems.len())
        };
        writeln!(out, "  verify: {part}: {verdict}")?;
    }
    Ok(())
}

pub(super) fn status(ctx: &Ctx, a: &StatusArgs) -> Result<i32> {
    let config = load(ctx)?;
    for j in &a.jobs {
        if !config.jobs.contains_key(j) {
            bail!("no job named {j:?} in {}", config.path.display());
        }
    }
    let mut repos = Repositories::new(&config, ctx.open_options.clone());
    let report = job_status(&config, &mut repos, &a.jobs)?;
    if a.prometheus {
        std::io::stdout()
            .lock()
            .write_all(prometheus(&report).as_bytes())?;
    } else if ctx.g.json {
        print_json(
            &json!({"health": report.health(), "jobs": report.jobs, "repositories": report.repositories, "time": report.time}),
        )?;
    } else if !ctx.g.quiet {
        print_status(&report)?;
    }
    Ok(match report.health() {
        Health::Ok => EXIT_OK,
        Health::Stale => EXIT_STALE,
        Health::Failing => EXIT_FAILING,
    })
}

fn print_status(r: &StatusReport) -> Result<()> {
    let mut out = std::io::stdout().lock();
    for j in &r.jobs {
        let health = match j.health {
            Health::Ok => "ok",
            Health::Stale => "STALE",
            Health::Failing => "FAILING",
        };
        writeln!(out, "job {} ({}): {health}", j.job, j.repository)?;
        if let Some(reason) = &j.reason {
            writeln!(out, "  {}", output::escape(reason))?;
        }
        let last = match (j.last_success, j.age_seconds) {
            (Some(t), Some(age)) => format!(
                "{} ({} ago)",
                chrono::DateTime::from_timestamp(t, 0)
                    .map(|d| d
                        .with_timezone(&chrono::Local)
                        .format("%Y-%m-%d %H:%M:%S")
                        .to_string())
                    .unwrap_or_default(),
                human(age)
            ),
            _ => "never".to_string(),
        };
        let limit = j
            .max_age_seconds
            .map(|m| format!(", limit {}", human(m as i64)))
            .unwrap_or_default();
        writeln!(out, "  last success: {last}{limit}")?;
        if let Some(l) = &j.last_run {
            writeln!(
                out,
                "  last run: {} in {:.1}s, {} files, {} added",
                if l.ok { "ok" } else { "failed" },
                l.duration_seconds,
                l.files,
                bytes(l.bytes_added)
            )?;
        }
        if let (Some(e), Some(false)) = (&j.last_error, j.last_run.as_ref().map(|l| l.ok)) {
            writeln!(out, "  last error: {}", output::escape(e))?;
        }
        let snaps: Vec<String> = j
            .snapshots
            .iter()
            .map(|(repo, n)| match n {
                Some(n) => format!("{n} in {repo}"),
                None => format!("? in {repo}"),
            })
            .collect();
        writeln!(out, "  snapshots: {}", snaps.join(", "))?;
    }
    for repo in &r.repositories {
        match &repo.error {
            Some(e) => writeln!(
                out,
                "repository {} ({}): UNREADABLE: {}",
                repo.repository,
                repo.location,
                output::escape(e)
            )?,
            None => {
                let free = match (repo.free_bytes, repo.filesystem_bytes) {
                    (Some(f), Some(t)) => format!("; {} free of {}", bytes(f), bytes(t)),
                    _ => String::new(),
                };
                writeln!(
                    out,
                    "repository {} ({}): {} snapshots, {}{free}",
                    repo.repository,
                    repo.location,
                    repo.snapshots.unwrap_or(0),
                    bytes(repo.size_bytes.unwrap_or(0))
                )?;
                if let Some(low) = &repo.low_space {
                    writeln!(out, "  {}", output::escape(low))?;
                }
            }
        }
    }
    Ok(())
}

pub(super) fn schedule(ctx: &Ctx, a: &ScheduleArgs) -> Result<i32> {
    let config = load(ctx)?;
    let jobs: Vec<(&str, &cairn::jobs::schedule::Schedule)> = config
        .jobs
        .iter()
        .filter_map(|(n, j)| j.schedule.as_ref().map(|s| (n.as_str(), s)))
        .collect();
    if jobs.is_empty() {
        bail!(
            "no job in {} has a schedule (add e.g. schedule = \"hourly\")",
            config.path.display()
        );
    }
    let flavor = if a.cron {
        Flavor::Cron
    } else {
        Flavor::Systemd
    };
    let root = cairn::sys::uid() == 0;
    let dir = match (&a.dir, flavor) {
        (Some(d), _) => d.clone(),
        (None, Flavor::Cron) => "/etc/cron.d".into(),
        (None, Flavor::Systemd) if root => "/etc/systemd/system".into(),
        (None, Flavor::Systemd) => std::env::var_os("XDG_CONFIG_HOME")
            .map(std::path::PathBuf::from)
            .or_else(|| {
                std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".config"))
            })
            .context("no HOME")?
            .join("systemd/user"),
    };
    let exe = std::env::current_exe().context("locating the cairn binary")?;
    let config_path = std::path::absolute(&config.path)?;
    let command = vec![
        exe.to_string_lossy().into_owned(),
        "--config".to_string(),
        config_path.to_string_lossy().into_owned(),
    ];
    let user = a.user.clone().unwrap_or_else(cairn::sys::username);
    let files = render(flavor, &jobs, &command, &dir, &user);
    let mut out = std::io::stdout().lock();
    if !a.install {
        for f in &files {
            writeln!(out, "# {}\n{}", f.path.display(), f.content)?;
        }
        return Ok(EXIT_OK);
    }
    for f in &files {
        if a.dry_run {
            writeln!(out, "would write {}:\n{}", f.path.display(), f.content)?;
            continue;
        }
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        cairn::sys::write_file_atomic(&f.path, f.content.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", f.path.display()))?;
        if !ctx.g.quiet {
            writeln!(out, "wrote {}", f.path.display())?;
        }
    }
    if !a.dry_run && !ctx.g.quiet && flavor == Flavor::Systemd {
        let user_flag = if root { "" } else { " --user" };
        let timers: Vec<String> = jobs
            .iter()
            .map(|(n, _)| format!("cairn-{n}.timer"))
            .collect();
        writeln!(
            out,
            "now run: systemctl{user_flag} daemon-reload && systemctl{user_flag} enable --now {}",
            timers.join(" ")
        )?;
    }
    Ok(EXIT_OK)
}
