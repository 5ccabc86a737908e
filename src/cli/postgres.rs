//! `cairn wal ...` and `cairn pg ...`: PostgreSQL WAL archiving, base
//! backups and point-in-time restores (a child of `commands`).

use super::*;
use cairn::commands::pg::{PgBackupOptions, PgRestoreOptions, RecoveryTarget};
use cairn::commands::wal::{ClusterOptions, FetchOutcome, PushOutcome};
use std::ffi::OsString;

/// `wal fetch` exit code for failures other than "not archived": PostgreSQL
/// treats 126 as fatal and stops recovery, instead of ending it early at
/// the wrong point.
const EXIT_FETCH_FAILED: i32 = 126;

fn cluster(c: &ClusterArgs) -> Result<ClusterOptions> {
    Ok(ClusterOptions {
        system_id: c.system_id,
        pgdata: c.pgdata.clone(),
    })
}

/// A context whose repository opening keeps a session key (see
/// `--key-cache-ttl`) and waits for a prune's lock to go away.
fn session_ctx<'a>(ctx: &Ctx<'a>, c: &ClusterArgs) -> Result<Ctx<'a>> {
    let ttl = match c.key_cache_ttl.trim() {
        "0" => std::time::Duration::ZERO,
        t => cairn::timespec::parse_duration(t).context("--key-cache-ttl")?,
    };
    let mut open_options = ctx.open_options.clone();
    open_options.session_ttl = Some(ttl);
    open_options.retry_lock = open_options
        .retry_lock
        .max(std::time::Duration::from_secs(300));
    Ok(Ctx {
        g: ctx.g,
        open_options,
    })
}

pub(super) fn wal(ctx: &Ctx, w: &WalCommand) -> Result<i32> {
    match w {
        WalCommand::Push { path, cluster: c } => {
            let opts = cluster(c)?;
            let ctx = session_ctx(ctx, c)?;
            let repo = ctx.open()?;
            let r = cmd::wal::push(&repo, path, &opts)?;
            if ctx.g.json {
                print_json(&json!({
                    "message_type": "wal_push",
                    "name": r.name,
                    "system_id": r.system_id.to_string(),
                    "size": r.size,
                    "already_archived": r.outcome == PushOutcome::AlreadyArchived,
                }))?;
            } else if !ctx.g.quiet {
                match r.outcome {
                    PushOutcome::Stored { stored_bytes } => out!(
                        "archived {} ({}, stored as {})",
                        r.name,
                        bytes(r.size),
                        bytes(stored_bytes)
                    ),
                    PushOutcome::AlreadyArchived => {
                        out!("{} was archived already with the same content", r.name)
                    }
                }
            }
            Ok(EXIT_OK)
        }
        WalCommand::Fetch {
            name,
            dest,
            cluster: c,
        } => {
            let run = || -> Result<FetchOutcome> {
                let opts = cluster(c)?;
                let ctx = session_ctx(ctx, c)?;
                let repo = ctx.open()?;
                Ok(cmd::wal::fetch(&repo, name, dest, &opts)?)
            };
            match run() {
                Ok(FetchOutcome::Restored { size }) => {
                    if ctx.g.json {
                        print_json(
                            &json!({"message_type": "wal_fetch", "name": name, "size": size}),
                        )?;
                    }
                    Ok(EXIT_OK)
                }
                // The normal end of recovery: no noise.
                Ok(FetchOutcome::NotArchived) => Ok(EXIT_ERROR),
                Err(e) => {
                    err!("cairn: error: wal fetch {}: {e:#}", output::escape(name));
                    Ok(EXIT_FETCH_FAILED)
                }
            }
        }
        WalCommand::List => {
            let repo = ctx.open()?;
            let (entries, bad) = cmd::wal::list(&repo)?;
            for b in &bad {
                err!("cairn: warning: {}", output::escape(b));
            }
            if ctx.g.json {
                let v: Vec<_> = entries
                    .iter()
                    .map(|e| {
                        json!({
                            "id": e.id,
                            "system_id": e.system_id.to_string(),
                            "name": e.name,
                            "size": e.size,
                            "archived": views::unix_rfc3339(e.archived),
                            "hostname": e.hostname,
                        })
                    })
                    .collect();
                print_json(&serde_json::Value::Array(v))?;
            } else {
                let mut out = std::io::stdout().lock();
                let mut last = None;
                for e in &entries {
                    if last != Some(e.system_id) {
                        writeln!(out, "cluster {}:", e.system_id)?;
                        last = Some(e.system_id);
                    }
                    writeln!(
                        out,
                        "  {:<42} {:>10}  {}  {}",
                        e.name,
                        bytes(e.size),
                        views::unix_rfc3339(e.archived),
                        output::escape(&e.hostname)
                    )?;
                }
                if entries.is_empty() {
                    writeln!(out, "no WAL archived")?;
                } else {
                    writeln!(
                        out,
                        "{} WAL files, {}",
                        entries.len(),
                        bytes(entries.iter().map(|e| e.size).sum())
                    )?;
                }
            }
            Ok(if bad.is_empty() { EXIT_OK } else { EXIT_ERROR })
        }
    }
}

fn connection(t: &PgToolArgs) -> cairn::commands::pg::PgConnection {
    cairn::commands::pg::PgConnection {
        dbname: t.dbname.clone(),
        bin_dir: t.pg_bin.clone(),
    }
}

pub(super) fn pg(ctx: &Ctx, c: &PgCommand) -> Result<i32> {
    match c {
        PgCommand::Backup(a) => pg_backup(ctx, a),
        PgCommand::Restore(a) => pg_restore(ctx, a),
    }
}

fn pg_backup(ctx: &Ctx, a: &PgBackupArgs) -> Result<i32> {
    let opts = PgBackupOptions {
        conn: connection(&a.tools),
        base: cairn::commands::pg::BaseBackupOptions {
            temp_dir: a.temp_dir.clone(),
            spread_checkpoint: a.spread_checkpoint,
            label: format!("cairn {}", chrono::Local::now().format("%Y-%m-%d %H:%M:%S")),
        },
        host: a.host.clone(),
        tags: tag_lists(&a.tags).into_iter().flatten().collect(),
    };
    let repo = ctx.open()?;
    let display = Display::new(Activity::Backup, ctx.g.json, ctx.g.quiet);
    let result = cmd::pg::pg_backup(&repo, &opts, &display);
    display.finish();
    let r = result?;
    for w in &r.warnings {
        err!("cairn: warning: {}", output::escape(&w.to_string()));
    }
    let m = &r.snapshot.summary;
    let p = r
        .snapshot
        .postgres
        .as_ref()
        .expect("a base backup records postgres");
    let secs = r.duration.as_secs_f64();
    if ctx.g.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id.to_hex(),
            "postgres": views::postgres_json(p),
            "total_files": m.total_files,
            "total_bytes": m.total_bytes,
            "data_added": m.bytes_added,
            "data_added_stored": m.bytes_added_stored,
            "duration_seconds": secs,
        }))?;
    } else if !ctx.g.quiet {
        out!(
            "base backup of cluster {} (PostgreSQL {}) at {}, WAL {} to {} on timeline {}",
            p.system_id,
            p.server_version,
            p.data_directory,
            cairn::commands::wal::format_lsn(p.start_lsn),
            cairn::commands::wal::format_lsn(p.stop_lsn),
            p.stop_timeline
        );
        out!(
            "{} files, {}; added {} ({} stored) in {:.1}s",
            m.total_files,
            bytes(m.total_bytes),
            bytes(m.bytes_added),
            bytes(m.bytes_added_stored),
            secs
        );
        out!("snapshot {} saved", r.snapshot_id.short());
    }
    Ok(EXIT_OK)
}

/// The `restore_command` that runs this cairn on this repository.
fn restore_command(ctx: &Ctx) -> Result<Vec<OsString>> {
    let exe = std::env::current_exe().context("finding the cairn program")?;
    let mut argv: Vec<OsString> = vec![exe.into_os_string(), "-r".into()];
    let loc = ctx.location()?;
    let loc = if loc.starts_with("s3:") {
        loc.to_string()
    } else {
        std::path::absolute(loc)?.to_string_lossy().into_owned()
    };
    argv.push(loc.into());
    for o in &ctx.g.options {
        argv.push("-o".into());
        argv.push(o.into());
    }
    if let Some(f) = &ctx.g.password_file {
        argv.push("--password-file".into());
        argv.push(std::path::absolute(f)?.into_os_string());
    } else if let Some(c) = &ctx.g.password_command {
        argv.push("--password-command".into());
        argv.push(c.into());
    }
    if let Some(d) = &ctx.g.cache_dir {
        argv.push("--cache-dir".into());
        argv.push(std::path::absolute(d)?.into_os_string());
    }
    Ok(argv)
}

/// `--owner USER` (or, as root, `postgres` if it exists): name, uid, gid.
fn owner(a: &PgRestoreArgs) -> Result<Option<(String, u32, u32)>> {
    let name = match &a.owner {
        Some(n) => n.clone(),
        None if cairn::sys::uid() == 0 => "postgres".to_string(),
        None => return Ok(None),
    };
    match cairn::sys::user_ids(&name) {
        Some((uid, gid)) => Ok(Some((name, uid, gid))),
        None if a.owner.is_none() => Ok(None),
        None => bail!("--owner {name}: no such user"),
    }
}

fn pg_restore(ctx: &Ctx, a: &PgRestoreArgs) -> Result<i32> {
    let recovery = match (&a.at, &a.lsn, a.xid) {
        (Some(t), _, _) => RecoveryTarget::Time(parse_time(t)?),
        (_, Some(l), _) => RecoveryTarget::Lsn(
            cairn::commands::wal::parse_lsn(l)
                .ok_or_else(|| anyhow!("--lsn {l:?}: use PostgreSQL's form, e.g. 0/5000A28"))?,
        ),
        (_, _, Some(x)) => RecoveryTarget::Xid(x),
        _ => RecoveryTarget::Latest,
    };
    if a.exclusive && recovery == RecoveryTarget::Latest {
        bail!("--exclusive needs a target (--at, --lsn or --xid)");
    }
    let verify_timeout =
        cairn::timespec::parse_duration(&a.verify_timeout).context("--verify-timeout")?;
    let prefix = restore_command(ctx)?;
    let opts = PgRestoreOptions {
        snapshot: a.snapshot.clone(),
        filter: filter(&a.filter),
        system_id: a.system_id,
        target: a.target.clone(),
        recovery,
        exclusive: a.exclusive,
        action: a.target_action.clone(),
        restore_command: a.restore_command.clone().unwrap_or_default(),
        restore_command_prefix: prefix,
        owner: owner(a)?,
        verify: a.verify,
        verify_timeout,
        conn: connection(&a.tools),
    };
    let repo = ctx.open()?;
    let display = Display::new(Activity::Restore, ctx.g.json, ctx.g.quiet);
    let result = cmd::pg::pg_restore(&repo, &opts, &display);
    display.finish();
    let r = result?;
    let p = &r.record;
    if a.restore_command.is_none()
        && ctx.g.password_file.is_none()
        && ctx.g.password_command.is_none()
    {
        err!(
            "cairn: warning: no --password-file or --password-command given: the restore_command written has none, so PostgreSQL's environment must set CAIRN_PASSWORD"
        );
    }
    if ctx.g.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id.to_hex(),
            "postgres": views::postgres_json(p),
            "target": a.target,
            "files_restored": r.stats.files,
            "bytes_restored": r.stats.bytes,
            "settings": r.settings,
            "verification": r.verification,
        }))?;
    } else if !ctx.g.quiet {
        out!(
            "restored base backup {} (cluster {}, ended {}) to {}: {} files, {}",
            r.snapshot_id.short(),
            p.system_id,
            views::unix_rfc3339(p.stopped),
            a.target.display(),
            r.stats.files,
            bytes(r.stats.bytes)
        );
        out!("appended to postgresql.auto.conf (with recovery.signal):");
        for s in &r.settings {
            out!("  {s}");
        }
        match &r.verification {
            Some(v) => {
                out!(
                    "verified: recovery finished{}; rows per table:",
                    v.replayed_until
                        .as_ref()
                        .map(|t| format!(", last transaction replayed committed at {t}"))
                        .unwrap_or_default()
                );
                for t in &v.tables {
                    out!("  {}.{}: {}", t.database, t.table, t.rows);
                }
                out!(
                    "the cluster is recovered and stopped; start it with pg_ctl -D {}",
                    a.target.display()
                );
            }
            None => out!(
                "start PostgreSQL on {} to replay the WAL to the target",
                a.target.display()
            ),
        }
    }
    Ok(EXIT_OK)
}
