//! One function per command: arguments into a library call, its report
//! into text or JSON. Every argument is checked before the repository is
//! opened or a password asked for.

use super::args::*;
use super::history;
use super::jobs;
use super::output::{self, Activity, Display, bytes, print_json};
use super::password;
use super::{EXIT_ERROR, EXIT_OK, EXIT_PARTIAL};
use anyhow::{Context, Result, anyhow, bail};
use cairn::commands::check::{CheckOptions, MaxAge, Subset};
use cairn::commands::init::{ChunkerParams, InitOptions, KdfParams};
use cairn::commands::select::SnapshotSelector;
use cairn::commands::{self as cmd, views};
use cairn::repository::{self, OpenOptions, Repository, SnapshotFilter};
use serde_json::json;
use std::io::Write;

// `cairn mount` lives in its own file; as a child of this module it shares
// `Ctx` and the argument helpers without widening their visibility.
#[path = "mount.rs"]
mod mount;
#[path = "postgres.rs"]
mod postgres;

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    // Global options are checked for every command, used or not.
    let open_options = OpenOptions {
        retry_lock: cairn::timespec::parse_duration(&g.retry_lock).context("--retry-lock")?,
        no_lock: g.no_lock,
        cache_dir: g.cache_dir.clone(),
        no_cache: g.no_cache,
        session_ttl: None,
        will_delete: false,
        on_warning: Some(repository::WarningHandler(std::sync::Arc::new(
            |m: &str| err!("cairn: warning: {}", output::escape(m)),
        ))),
    };
    let ctx = Ctx { g, open_options };
    match &cli.command {
        Command::Init(a) => init(&ctx, a),
        Command::Backup(a) => backup(&ctx, a),
        Command::Snapshots(a) => history::snapshots(&ctx, a),
        Command::Ls(a) => ls(&ctx, a),
        Command::Dump(a) => dump(&ctx, a),
        Command::Restore(a) => restore(&ctx, a),
        Command::Mount(a) => mount::mount(&ctx, a),
        Command::Cat(a) => cat(&ctx, a),
        Command::Key(k) => key(&ctx, k),
        Command::Copy(a) => copy(&ctx, a),
        Command::Forget(a) => forget(&ctx, a),
        Command::Prune(a) => prune(&ctx, a),
        Command::Check(a) => check(&ctx, a),
        Command::Stats => stats(&ctx),
        Command::Unlock { remove_all } => unlock(&ctx, *remove_all),
        Command::Repair(c) => repair(&ctx, c),
        Command::Find(a) => history::find(&ctx, a),
        Command::Diff(a) => history::diff(&ctx, a),
        Command::Tag(a) => history::tag(&ctx, a),
        Command::Run(a) => jobs::run(&ctx, a),
        Command::Status(a) => jobs::status(&ctx, a),
        Command::Schedule(a) => jobs::schedule(&ctx, a),
        Command::Wal(w) => postgres::wal(&ctx, w),
        Command::Pg(c) => postgres::pg(&ctx, c),
    }
}

/// Global options, checked.
pub(super) struct Ctx<'a> {
    pub(super) g: &'a Global,
    pub(super) open_options: OpenOptions,
}

impl Ctx<'_> {
    fn location(&self) -> Result<&str> {
        let p =
            self.g.repo.as_deref().ok_or_else(|| {
                anyhow!("no repository given: use -r/--repo or set CAIRN_REPOSITORY")
            })?;
        p.to_str()
            .ok_or_else(|| anyhow!("repository location {p:?} is not valid UTF-8"))
    }

    /// The `-o KEY=VALUE` pairs.
    fn backend_options(&self) -> Result<Vec<(String, String)>> {
        self.g
            .options
            .iter()
            .map(|o| match o.split_once('=') {
                Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
                _ => Err(anyhow!(
                    "-o {o:?}: use KEY=VALUE, e.g. -o s3.region=eu-west-1"
                )),
            })
            .collect()
    }

    fn sources(&self) -> password::Sources<'_> {
        password::Sources {
            file: self.g.password_file.as_deref(),
            command: self.g.password_command.as_deref(),
        }
    }

    /// Opens the repository: first whether it exists (so a missing one is
    /// reported before any password prompt), then the password.
    pub(super) fn open(&self) -> Result<Repository> {
        self.open_with(self.open_options.clone())
    }

    /// Opens the repository for a command that deletes (asking the storage
    /// whether the credentials may while the key is stretched).
    pub(super) fn open_to_delete(&self) -> Result<Repository> {
        self.open_with(OpenOptions {
            will_delete: true,
            ..self.open_options.clone()
        })
    }

    fn open_with(&self, options: OpenOptions) -> Result<Repository> {
        let conn = repository::connect(self.location()?, &self.backend_options()?)?;
        // Before asking at the terminal, make sure there is something to
        // open (otherwise opening says so, without a request of its own).
        if password::needs_prompt("CAIRN_PASSWORD", &self.sources()) && !conn.exists()? {
            return Err(cairn::Error::NotARepository(conn.location()).into());
        }
        let pw = password::get(&self.sources(), "enter password for repository: ", false)?;
        Ok(conn.open(&pw, options)?)
    }

    /// Opens the `--from-repo` repository with its own password sources.
    fn open_from(&self, from: &FromRepoArgs) -> Result<Repository> {
        let loc = from.from_repo.as_deref().ok_or_else(|| {
            anyhow!("no source repository: use --from-repo or set CAIRN_FROM_REPOSITORY")
        })?;
        let loc = loc
            .to_str()
            .ok_or_else(|| anyhow!("repository location {loc:?} is not valid UTF-8"))?;
        let conn = repository::connect(loc, &self.backend_options()?)?;
        if !conn.exists()? {
            return Err(cairn::Error::NotARepository(conn.location()).into());
        }
        let sources = password::Sources {
            file: from.from_password_file.as_deref(),
            command: from.from_password_command.as_deref(),
        };
        let pw = password::get_from(
            "CAIRN_FROM_PASSWORD",
            &sources,
            "enter password for the source repository: ",
            false,
        )?;
        Ok(conn.open(&pw, self.open_options.clone())?)
    }

    pub(super) fn text(&self) -> bool {
        !self.g.json && !self.g.quiet
    }
}

fn kdf(a: &KdfArgs) -> Result<KdfParams> {
    let k = KdfParams {
        memory_kib: a.kdf_memory,
        iterations: a.kdf_iterations,
        parallelism: a.kdf_parallelism,
    };
    k.validate().map_err(|e| anyhow!(e))?;
    Ok(k)
}

pub(super) fn tag_lists(tags: &[String]) -> Vec<Vec<String>> {
    tags.iter()
        .map(|t| {
            t.split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .collect()
}

pub(super) fn filter(f: &FilterArgs) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.hosts.clone(),
        tags: tag_lists(&f.tags),
        paths: f.paths.clone(),
    }
}

pub(super) fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    Ok(cairn::timespec::parse_time(s)?)
}

fn init(ctx: &Ctx, a: &InitArgs) -> Result<i32> {
    let opts = InitOptions {
        chunker: ChunkerParams {
            min_size: a.chunk_min,
            avg_size: a.chunk_avg,
            max_size: a.chunk_max,
        },
        compression_level: a.compression,
        pack_size: a
            .pack_size
            .checked_mul(1024 * 1024)
            .ok_or_else(|| anyhow!("pack size too large"))?,
        kdf: kdf(&a.kdf)?,
        database_chunking: cmd::init::parse_db_chunking(&a.db_chunking)?,
        object_lock: match &a.object_lock {
            None => None,
            Some(d) => Some(cairn::format::config::Retention {
                mode: cairn::format::config::RetentionMode::parse(&a.object_lock_mode)?,
                seconds: cairn::timespec::parse_duration(d)
                    .context("--object-lock")?
                    .as_secs(),
            }),
        },
    };
    let conn = repository::connect(ctx.location()?, &ctx.backend_options()?)?;
    if conn.exists_or_no_bucket()? {
        return Err(cairn::Error::AlreadyExists(format!(
            "{}: a repository already exists here; refusing to overwrite it",
            conn.location()
        ))
        .into());
    }
    let from = match &a.from.from_repo {
        Some(_) if a.copy_chunker_params => Some(ctx.open_from(&a.from)?),
        Some(_) => bail!("--from-repo with init needs --copy-chunker-params"),
        None => None,
    };
    let pw = password::get(&ctx.sources(), "enter password for new repository: ", true)?;
    let r = cmd::init::init(conn, &pw, &opts, from.as_ref())?;
    if ctx.g.json {
        print_json(&json!({"message_type": "initialized", "id": r.id, "repository": r.location}))?;
    } else if !ctx.g.quiet {
        out!("created cairn repository {} at {}", &r.id[..10], r.location);
        out!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(EXIT_OK)
}

fn backup(ctx: &Ctx, a: &BackupArgs) -> Result<i32> {
    if a.stdin && a.stdin_from_command {
        bail!("give either --stdin or --stdin-from-command, not both");
    }
    if a.stdin_from_command && a.command.is_empty() {
        bail!("--stdin-from-command needs the command after --, e.g. -- pg_dump mydb");
    }
    if !a.command.is_empty() && !a.stdin_from_command {
        bail!("a command after -- needs --stdin-from-command");
    }
    let opts = cmd::backup::BackupOptions {
        paths: a.paths.clone(),
        host: a.host.clone(),
        tags: tag_lists(&a.tags).into_iter().flatten().collect(),
        time: a.time.as_deref().map(parse_time).transpose()?,
        excludes: a.excludes.clone(),
        exclude_files: a.exclude_files.clone(),
        one_file_system: a.one_file_system,
        parent: a.parent.clone(),
        force: a.force,
        sqlite: a.sqlite.clone(),
        sqlite_options: cmd::backup::SqliteOptions {
            check: if a.sqlite_quick {
                cmd::backup::CheckKind::Quick
            } else {
                cmd::backup::CheckKind::Integrity
            },
            ..Default::default()
        },
        sqlite_allow_corrupt: a.sqlite_allow_corrupt,
        streams: (a.stdin || a.stdin_from_command)
            .then(|| cmd::backup::StdinSource {
                filename: a.stdin_filename.clone(),
                command: a.stdin_from_command.then(|| a.command.clone()),
            })
            .into_iter()
            .collect(),
        ..Default::default()
    };
    // Check the sources before asking for a password.
    opts.validate()?;
    let repo = ctx.open()?;
    let display = Display::new(Activity::Backup, ctx.g.json, ctx.g.quiet);
    let result = cmd::backup::backup(&repo, &opts, &display);
    display.finish();
    let r = result?;
    let secs = r.duration.as_secs_f64();
    let m = &r.snapshot.summary;
    for w in &r.warnings {
        err!("cairn: warning: {}", output::escape(&w.to_string()));
    }
    for e in &r.errors {
        err!(
            "cairn: warning: could not read {}",
            output::escape(&e.to_string())
        );
    }
    if ctx.g.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id.to_hex(),
            "files_new": m.files_new,
            "files_changed": m.files_changed,
            "files_unchanged": m.files_unchanged,
            "dirs": m.dirs,
            "total_files": m.total_files,
            "total_bytes": m.total_bytes,
            "bytes_read": m.bytes_read,
            "blobs_added": m.blobs_added,
            "data_added": m.bytes_added,
            "data_added_stored": m.bytes_added_stored,
            "errors": m.errors,
            "databases": r.snapshot.databases.iter().map(views::database_json).collect::<Vec<_>>(),
            "duration_seconds": secs,
        }))?;
    } else if !ctx.g.quiet {
        for d in &r.snapshot.databases {
            out!("{}", output::database_line(d));
        }
        out!(
            "Files: {} new, {} changed, {} unchanged; {} directories",
            m.files_new,
            m.files_changed,
            m.files_unchanged,
            m.dirs
        );
        out!(
            "Processed {} in {:.1}s ({}/s); read {}",
            bytes(m.total_bytes),
            secs,
            bytes((m.bytes_read as f64 / secs.max(1e-3)) as u64),
            bytes(m.bytes_read)
        );
        out!(
            "Added to the repository: {} ({} stored)",
            bytes(m.bytes_added),
            bytes(m.bytes_added_stored)
        );
        out!("snapshot {} saved", r.snapshot_id.short());
    }
    for d in r.failed_databases() {
        err!(
            "cairn: warning: database {} failed its {} and was saved marked as failed: {}",
            d.path,
            d.check.pragma(),
            d.check_messages.join("; ")
        );
    }
    if !r.errors.is_empty() {
        err!(
            "cairn: {} source entries could not be read; the snapshot is incomplete",
            r.errors.len()
        );
    }
    Ok(if r.is_complete() {
        EXIT_OK
    } else {
        EXIT_PARTIAL
    })
}

fn copy(ctx: &Ctx, a: &CopyArgs) -> Result<i32> {
    let opts = cmd::copy::CopyOptions {
        ids: a.snapshots.clone(),
        filter: filter(&a.filter),
        dry_run: a.dry_run,
    };
    let source = ctx.open_from(&a.from)?;
    let dest = ctx.open()?;
    let display = Display::new(Activity::Copy, ctx.g.json, ctx.g.quiet);
    let result = cmd::copy::copy(&source, &dest, &opts, &display);
    display.finish();
    let r = result?;
    if ctx.g.json {
        print_json(&json!({
            "message_type": "copy",
            "dry_run": r.dry_run,
            "shared_blob_ids": r.shared_blob_ids,
            "copied": r.copied.iter().map(|c| json!({
                "source_id": c.source_id.to_hex(),
                "target_id": c.target_id.map(|i| i.to_hex()),
                "snapshot": views::snapshot_json(&c.source_id, &c.snapshot),
            })).collect::<Vec<_>>(),
            "already_present": r.present.iter().map(|(s, d)| json!({
                "source_id": s.to_hex(),
                "target_id": d.to_hex(),
            })).collect::<Vec<_>>(),
            "blobs_copied": r.blobs_copied,
            "wal_copied": r.wal_copied,
            "data_copied": r.bytes_copied,
            "data_copied_stored": r.bytes_stored,
        }))?;
    } else if !ctx.g.quiet {
        for c in &r.copied {
            out!(
                "{} snapshot {} of {} ({}){}",
                if r.dry_run { "would copy" } else { "copied" },
                c.source_id.short(),
                views::local_time(&c.snapshot),
                c.snapshot.paths.join(", "),
                c.target_id
                    .map_or(String::new(), |t| format!(" as {}", t.short()))
            );
        }
        out!(
            "{} snapshots {}, {} already present; {} blobs added ({}, {} stored){}",
            r.copied.len(),
            if r.dry_run { "to copy" } else { "copied" },
            r.present.len(),
            r.blobs_copied,
            bytes(r.bytes_copied),
            bytes(r.bytes_stored),
            if r.shared_blob_ids {
                ""
            } else {
                "; the repositories do not share blob ids, so every blob was read and re-encoded"
            }
        );
        if !r.wal_copied.is_empty() {
            out!(
                "{} archived WAL files {} ({} to {})",
                r.wal_copied.len(),
                if r.dry_run { "to copy" } else { "copied" },
                r.wal_copied[0],
                r.wal_copied[r.wal_copied.len() - 1]
            );
        }
    }
    Ok(EXIT_OK)
}

fn selector(s: &SnapshotSelect) -> Result<SnapshotSelector> {
    let at = s.at.as_deref().map(parse_time).transpose()?;
    Ok(SnapshotSelector::new(
        s.snapshot.as_deref(),
        at,
        filter(&s.filter),
    )?)
}

/// The snapshot and path of `ls` and `dump`: `SNAPSHOT [PATH]`, or with
/// `--at TIME` just `[PATH]`.
fn snapshot_and_path(
    first: Option<&std::ffi::OsString>,
    second: Option<&std::path::PathBuf>,
    at: Option<&str>,
    f: &FilterArgs,
) -> Result<(SnapshotSelector, Option<std::path::PathBuf>)> {
    match at {
        Some(t) => {
            if second.is_some() {
                bail!("with --at, give only the path (the time chooses the snapshot)");
            }
            let sel = SnapshotSelector::new(None, Some(parse_time(t)?), filter(f))?;
            Ok((sel, first.map(std::path::PathBuf::from)))
        }
        None => {
            let Some(first) = first else {
                bail!("which snapshot? give an id prefix, \"latest\", or --at TIME");
            };
            let Some(id) = first.to_str() else {
                bail!("{:?} is not a snapshot id", first);
            };
            let sel = SnapshotSelector::new(Some(id), None, filter(f))?;
            Ok((sel, second.cloned()))
        }
    }
}

fn ls(ctx: &Ctx, a: &LsArgs) -> Result<i32> {
    let (sel, path) = snapshot_and_path(
        a.snapshot.as_ref(),
        a.path.as_ref(),
        a.at.as_deref(),
        &a.filter,
    )?;
    let repo = ctx.open()?;
    let stdout = std::io::stdout();
    let out = std::cell::RefCell::new(std::io::BufWriter::new(stdout.lock()));
    let snapshot = std::cell::RefCell::new(None);
    let mut first = true;
    let json = ctx.g.json;
    // JSON is streamed as one document: {"snapshot": {...}, "nodes": [...]}.
    cmd::ls::ls(
        &repo,
        &sel,
        path.as_deref(),
        &mut |id, s| {
            *snapshot.borrow_mut() = Some(s.clone());
            if json {
                let head = views::snapshot_json(id, s);
                write!(out.borrow_mut(), "{{\"snapshot\":{head},\"nodes\":[")
                    .map_err(|e| cairn::Error::io("standard output", e))?;
            }
            Ok(())
        },
        &mut |p, n| {
            let snapshot = snapshot.borrow();
            let s = snapshot.as_ref().expect("snapshot comes first");
            let db = cmd::ls::database(s, p);
            let mut out = out.borrow_mut();
            let r = if json {
                let mut v = views::node_json(&p.to_string_lossy(), n);
                if let Some(d) = db {
                    v["database"] = views::database_json(d);
                }
                let sep = if first { "" } else { "," };
                first = false;
                write!(out, "{sep}{v}")
            } else {
                let name = output::escape(&p.to_string_lossy());
                let name = match db {
                    Some(d) => format!("{name}  [{}]", output::database_summary(d)),
                    None => name,
                };
                if a.long {
                    writeln!(out, "{}", output::long_line(n, &name))
                } else {
                    writeln!(out, "{name}")
                }
            };
            r.map_err(|e| cairn::Error::io("standard output", e))
        },
    )?;
    let mut out = out.into_inner();
    if json {
        writeln!(out, "]}}")?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn dump(ctx: &Ctx, a: &DumpArgs) -> Result<i32> {
    let (sel, path) = snapshot_and_path(
        a.snapshot.as_ref(),
        a.path.as_ref(),
        a.at.as_deref(),
        &a.filter,
    )?;
    let Some(path) = path else {
        bail!("which file? give its path in the snapshot");
    };
    let repo = ctx.open()?;
    let mut out = std::io::stdout().lock();
    match cmd::dump::dump(&repo, &sel, &path, &mut out) {
        Ok(_) => Ok(EXIT_OK),
        Err(cairn::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe => {
            Ok(EXIT_OK)
        }
        Err(e) => Err(e.into()),
    }
}

fn restore(ctx: &Ctx, a: &RestoreArgs) -> Result<i32> {
    let sel = selector(&a.select)?;
    let opts = cmd::restore::RestoreOptions {
        target: a.target.clone(),
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        verify: a.verify,
        databases: Vec::new(),
        max_entries: None,
    };
    let repo = ctx.open()?;
    let display = Display::new(Activity::Restore, ctx.g.json, ctx.g.quiet);
    let result = cmd::restore::restore(&repo, &sel, &opts, &display);
    display.finish();
    let r = result?;
    let stats = &r.stats;
    let secs = r.duration.as_secs_f64();
    for w in &stats.warnings {
        err!("cairn: warning: {}", output::escape(w));
    }
    for e in &stats.errors {
        err!("cairn: error: {}", output::escape(e));
    }
    if ctx.g.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": r.snapshot_id.to_hex(),
            "files_restored": stats.files,
            "dirs_restored": stats.dirs,
            "others_restored": stats.others,
            "bytes_restored": stats.bytes,
            "files_verified": if a.verify { Some(stats.verified) } else { None },
            "databases": stats.databases,
            "warnings": stats.warnings,
            "errors": stats.errors.len(),
            "duration_seconds": secs,
        }))?;
    } else if !ctx.g.quiet {
        out!(
            "restored snapshot {} to {}: {} files, {} directories, {} other, {} in {:.1}s",
            r.snapshot_id.short(),
            a.target.display(),
            stats.files,
            stats.dirs,
            stats.others,
            bytes(stats.bytes),
            secs
        );
        if a.verify {
            out!("verified {} of {} files", stats.verified, stats.files);
        }
        for d in &stats.databases {
            if d.verified {
                out!(
                    "database {}: verified (integrity_check ok, schema and row counts match)",
                    d.path
                );
            }
        }
    }
    for d in stats.databases.iter().filter(|d| !d.verified) {
        err!(
            "cairn: database {} NOT verified: {}",
            d.path,
            d.problems.join("; ")
        );
    }
    if !stats.errors.is_empty() {
        err!("cairn: {} errors during restore", stats.errors.len());
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

fn cat(ctx: &Ctx, a: &CatArgs) -> Result<i32> {
    let f = &a.filter;
    let filtered = !f.hosts.is_empty() || !f.tags.is_empty() || !f.paths.is_empty();
    let sel = if a.kind == "snapshot" && (a.at.is_some() || filtered) {
        let at = a.at.as_deref().map(parse_time).transpose()?;
        Some(SnapshotSelector::new(a.id.as_deref(), at, filter(f))?)
    } else if a.at.is_some() || filtered {
        bail!("--at, --host, --tag and --path choose a snapshot: only for `cat snapshot`");
    } else {
        None
    };
    let repo = ctx.open()?;
    let v = cmd::cat::cat(&repo, &a.kind, a.id.as_deref(), sel.as_ref())?;
    let mut out = std::io::stdout().lock();
    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
    Ok(EXIT_OK)
}

fn new_password(a: &NewPasswordArgs) -> Result<Vec<u8>> {
    let pw = match &a.new_password_file {
        Some(f) => {
            let mut b = std::fs::read(f).with_context(|| format!("reading {}", f.display()))?;
            if b.last() == Some(&b'\n') {
                b.pop();
            }
            b
        }
        None => password::prompt_tty("enter new password: ", true)?,
    };
    if pw.is_empty() {
        bail!("empty password refused");
    }
    Ok(pw)
}

fn key(ctx: &Ctx, k: &KeyCommand) -> Result<i32> {
    if let KeyCommand::Add(a) | KeyCommand::Passwd(a) = k {
        kdf(&a.kdf)?;
    }
    let repo = match k {
        KeyCommand::Passwd(_) | KeyCommand::Remove { .. } => ctx.open_to_delete()?,
        _ => ctx.open()?,
    };
    match k {
        KeyCommand::List => {
            let keys = cmd::key::list(&repo)?;
            if ctx.g.json {
                print_json(&serde_json::to_value(&keys)?)?;
            } else {
                let mut out = std::io::stdout().lock();
                for k in keys {
                    writeln!(
                        out,
                        "{} {:<8} {:<20} {}@{}",
                        if k.current { "*" } else { " " },
                        &k.id[..8],
                        k.created.as_deref().unwrap_or_default(),
                        k.username,
                        k.hostname
                    )?;
                }
            }
        }
        KeyCommand::Add(a) => {
            let id = cmd::key::add(&repo, &new_password(a)?, kdf(&a.kdf)?)?;
            if !ctx.g.quiet {
                out!("added key {}", id.short());
            }
        }
        KeyCommand::Passwd(a) => {
            let c = cmd::key::passwd(&repo, &new_password(a)?, kdf(&a.kdf)?)?;
            if !ctx.g.quiet {
                out!(
                    "password changed: key {} replaces {}",
                    c.added.short(),
                    c.removed.short()
                );
            }
        }
        KeyCommand::Remove { id } => {
            let kid = cmd::key::remove(&repo, id)?;
            if !ctx.g.quiet {
                out!("removed key {}", kid.short());
            }
        }
    }
    Ok(EXIT_OK)
}

fn prune_options(a: &PruneArgs, dry_run: bool) -> Result<cmd::prune::PruneOptions> {
    Ok(cmd::prune::PruneOptions {
        max_unused: cmd::prune::parse_max_unused(&a.max_unused)?,
        repack_small: a.repack_small,
        dry_run,
        assume_removed: Vec::new(),
        max_repack_bytes: a
            .max_repack_size
            .as_deref()
            .map(cairn::timespec::parse_size)
            .transpose()
            .context("--max-repack-size")?,
        grace: cairn::timespec::parse_duration(&a.delete_grace).context("--delete-grace")?,
        instant_delete: a.instant_delete,
    })
}

fn prune_json(r: &cmd::prune::PruneReport) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    v["bytes_freed"] = json!(r.bytes_freed());
    v["message_type"] = json!("prune");
    Ok(v)
}

fn print_prune_report(ctx: &Ctx, r: &cmd::prune::PruneReport) -> Result<()> {
    if ctx.g.json {
        print_json(&prune_json(r)?)?;
    } else if !ctx.g.quiet {
        let verb = if r.dry_run { "would" } else { "did" };
        let mut out = std::io::stdout().lock();
        writeln!(
            out,
            "{} snapshots reference data in {} packs; {} unused blobs ({})",
            r.snapshots,
            r.packs_before,
            r.blobs_unused,
            bytes(r.bytes_unused)
        )?;
        if r.instant_delete {
            writeln!(
                out,
                "prune {verb} delete {} packs, repack {} packs, remove {} unindexed packs; {} unused left in kept packs",
                r.packs_deleted.saturating_sub(r.packs_retained),
                r.packs_repacked,
                r.packs_unindexed,
                bytes(r.bytes_unused_kept)
            )?;
        } else {
            writeln!(
                out,
                "prune {verb} repack {} packs and mark {} packs ({}, {} of them unindexed) for deletion after the grace period; {} unused left in kept packs",
                r.packs_repacked,
                r.packs_marked,
                bytes(r.bytes_marked),
                r.packs_unindexed,
                bytes(r.bytes_unused_kept)
            )?;
        }
        if r.packs_due_deleted > 0 {
            writeln!(
                out,
                "prune {verb} delete {} packs marked by earlier runs",
                r.packs_due_deleted
            )?;
        }
        if r.index_files_deleted > 0 {
            writeln!(
                out,
                "prune {verb} delete {} index files the new index replaces",
                r.index_files_deleted
            )?;
        }
        if r.packs_revived > 0 {
            writeln!(
                out,
                "{} marked packs are needed again (a backup ran meanwhile) and stay",
                r.packs_revived
            )?;
        }
        if r.packs_retained > 0 || r.index_files_retained > 0 {
            writeln!(
                out,
                "{} packs and {} index files are still under Object Lock retention (until {}); a prune after that deletes them",
                r.packs_retained,
                r.index_files_retained,
                r.retained_until.as_deref().unwrap_or("?")
            )?;
        }
        if r.retention_extended > 0 || r.hidden_versions_deleted > 0 {
            writeln!(
                out,
                "Object Lock: retention extended for {} objects kept snapshots need; {} retained versions of removed files deleted ({} still retained)",
                r.retention_extended, r.hidden_versions_deleted, r.hidden_versions_waiting
            )?;
        }
        if let Some(when) = &r.next_deletion {
            writeln!(
                out,
                "{} packs ({}) wait for deletion; the first may go at {when}",
                r.packs_waiting + r.packs_marked,
                bytes(r.bytes_waiting + r.bytes_marked)
            )?;
        }
        writeln!(
            out,
            "repository data: {} -> {} ({} freed)",
            bytes(r.size_before),
            bytes(r.size_after),
            bytes(r.bytes_freed())
        )?;
    }
    Ok(())
}

fn prune(ctx: &Ctx, a: &PruneCmd) -> Result<i32> {
    let opts = prune_options(&a.opts, a.dry_run)?;
    let repo = ctx.open_to_delete()?;
    let r = cmd::prune::prune(&repo, &opts)?;
    print_prune_report(ctx, &r)?;
    Ok(EXIT_OK)
}

fn keep_count(s: &Option<String>, flag: &str) -> Result<i64> {
    match s {
        None => Ok(0),
        Some(v) => cmd::retention::parse_keep_count(v).map_err(|e| anyhow!("--{flag}: {e}")),
    }
}

fn keep_within(s: &Option<String>, flag: &str) -> Result<Option<cmd::retention::Duration>> {
    s.as_deref()
        .map(|v| {
            v.parse::<cmd::retention::Duration>()
                .map_err(|e| anyhow!("--{flag}: {e}"))
        })
        .transpose()
}

fn forget(ctx: &Ctx, a: &ForgetArgs) -> Result<i32> {
    let policy = cmd::retention::Policy {
        last: keep_count(&a.keep_last, "keep-last")?,
        hourly: keep_count(&a.keep_hourly, "keep-hourly")?,
        daily: keep_count(&a.keep_daily, "keep-daily")?,
        weekly: keep_count(&a.keep_weekly, "keep-weekly")?,
        monthly: keep_count(&a.keep_monthly, "keep-monthly")?,
        yearly: keep_count(&a.keep_yearly, "keep-yearly")?,
        within: keep_within(&a.keep_within, "keep-within")?,
        within_hourly: keep_within(&a.keep_within_hourly, "keep-within-hourly")?,
        within_daily: keep_within(&a.keep_within_daily, "keep-within-daily")?,
        within_weekly: keep_within(&a.keep_within_weekly, "keep-within-weekly")?,
        within_monthly: keep_within(&a.keep_within_monthly, "keep-within-monthly")?,
        within_yearly: keep_within(&a.keep_within_yearly, "keep-within-yearly")?,
        tags: tag_lists(&a.keep_tags),
    };
    let opts = cmd::forget::ForgetOptions {
        ids: a.snapshots.clone(),
        policy,
        group_by: a.group_by.parse().map_err(|e: String| anyhow!(e))?,
        filter: filter(&a.filter),
        dry_run: a.dry_run,
        allow_remove_all: a.unsafe_allow_remove_all,
        prune: if a.prune {
            Some(prune_options(&a.prune_opts, a.dry_run)?)
        } else {
            None
        },
    };
    opts.validate()?;
    let repo = ctx.open_to_delete()?;
    let r = cmd::forget::forget(&repo, &opts)?;
    let forget_json = match &r.decision {
        cmd::forget::ForgetDecision::Ids(ids) => {
            json!({"removed": ids.iter().map(|i| i.to_hex()).collect::<Vec<_>>(), "dry_run": r.dry_run, "wal_removed": r.wal_removed})
        }
        cmd::forget::ForgetDecision::Policy(groups) => serde_json::Value::Array(
            groups
                .iter()
                .map(|gr| {
                    json!({
                        "group_key": gr.key,
                        "keep": gr.keep.iter().map(|k| views::snapshot_json(&k.id, &k.snapshot)).collect::<Vec<_>>(),
                        "remove": gr.remove.iter().map(|(id, s)| views::snapshot_json(id, s)).collect::<Vec<_>>(),
                        "reasons": gr.keep.iter().map(|k| json!({
                            "snapshot": views::snapshot_json(&k.id, &k.snapshot),
                            "matches": k.reason.matches,
                            "counters": k.reason.counters,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect(),
        ),
    };
    if ctx.text() {
        print_forget_text(&opts, &r)?;
        if !r.wal_removed.is_empty() {
            out!(
                "{} {} archived WAL files no kept base backup needs ({} to {})",
                if r.dry_run { "would remove" } else { "removed" },
                r.wal_removed.len(),
                r.wal_removed[0],
                r.wal_removed[r.wal_removed.len() - 1]
            );
        }
    }
    match &r.prune {
        Some(p) if ctx.g.json => {
            // One document: the forget decision and the prune report together.
            print_json(
                &json!({"forget": forget_json, "prune": prune_json(p)?, "wal_removed": r.wal_removed}),
            )?;
        }
        Some(p) => print_prune_report(ctx, p)?,
        None if ctx.g.json => print_json(&forget_json)?,
        None => {}
    }
    Ok(EXIT_OK)
}

fn print_forget_text(
    opts: &cmd::forget::ForgetOptions,
    r: &cmd::forget::ForgetReport,
) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match &r.decision {
        cmd::forget::ForgetDecision::Ids(ids) => {
            for id in ids {
                writeln!(
                    out,
                    "{} snapshot {}",
                    if r.dry_run { "would remove" } else { "removed" },
                    id.short()
                )?;
            }
        }
        cmd::forget::ForgetDecision::Policy(groups) => {
            writeln!(out, "Applying policy: {}", opts.policy)?;
            for gr in groups {
                let mut key = Vec::new();
                // Host names, paths and tags are what snapshots say:
                // escaped, as every listing prints them.
                if let Some(h) = &gr.key.hostname {
                    key.push(format!("host [{}]", output::escape(h)));
                }
                if let Some(p) = &gr.key.paths {
                    key.push(format!("paths [{}]", output::escape(&p.join(", "))));
                }
                if let Some(t) = &gr.key.tags {
                    key.push(format!("tags [{}]", output::escape(&t.join(", "))));
                }
                writeln!(out, "\nsnapshots for {}:", key.join(", "))?;
                writeln!(out, "keep {} snapshots:", gr.keep.len())?;
                for k in &gr.keep {
                    writeln!(
                        out,
                        "  {}  {}  {}  {}",
                        k.id.short(),
                        views::local_time(&k.snapshot),
                        output::escape(&k.snapshot.tags.join(",")),
                        k.reason.matches.join(", ")
                    )?;
                }
                writeln!(
                    out,
                    "{} {} snapshots:",
                    if r.dry_run { "would remove" } else { "remove" },
                    gr.remove.len()
                )?;
                for (id, s) in &gr.remove {
                    writeln!(
                        out,
                        "  {}  {}  {}",
                        id.short(),
                        views::local_time(s),
                        output::escape(&s.tags.join(","))
                    )?;
                }
            }
        }
    }
    Ok(())
}

fn check(ctx: &Ctx, a: &CheckArgs) -> Result<i32> {
    let read_data = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(s.parse::<Subset>().map_err(|e| anyhow!(e))?),
        (None, true) => Some(Subset::All),
        (None, false) => None,
    };
    let opts = CheckOptions {
        read_data,
        max_age: a.max_age.as_deref().map(str::parse::<MaxAge>).transpose()?,
        filter: filter(&a.filter),
    };
    let repo = ctx.open()?;
    let report = cmd::check::check(&repo, &opts)?;
    if ctx.g.json {
        let mut v = serde_json::to_value(&report)?;
        v["ok"] = json!(report.ok());
        print_json(&v)?;
    } else {
        if !ctx.g.quiet {
            let mut out = std::io::stdout().lock();
            for i in &report.info {
                writeln!(out, "info: {i}")?;
            }
            if let Some(w) = &report.wal {
                writeln!(out, "WAL: {} archived files", w.records)?;
                for n in &w.newest {
                    writeln!(
                        out,
                        "WAL: cluster {}: newest segment {} archived {} ({} ago)",
                        n.system_id,
                        n.name,
                        n.archived,
                        output::age(n.age_seconds)
                    )?;
                }
            }
        }
        for e in &report.errors {
            err!("error: {e}");
        }
        for d in &report.damaged_snapshots {
            err!("damaged: {d}");
        }
        if !ctx.g.quiet {
            let mut out = std::io::stdout().lock();
            writeln!(
                out,
                "checked {} snapshots, {} trees, {} packs ({} read, {} blobs verified): {}",
                report.snapshots,
                report.trees,
                report.packs,
                report.packs_read,
                report.blobs_read,
                if report.ok() {
                    "no errors".to_string()
                } else {
                    format!("{} errors", report.errors.len())
                }
            )?;
        }
    }
    Ok(if report.ok() { EXIT_OK } else { EXIT_ERROR })
}

fn stats(ctx: &Ctx) -> Result<i32> {
    let repo = ctx.open()?;
    let st = cmd::stats::stats(&repo)?;
    if ctx.g.json {
        print_json(&serde_json::to_value(&st)?)?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out, "snapshots:                 {}", st.snapshots)?;
    writeln!(
        out,
        "latest snapshot size:      {}",
        bytes(st.latest_logical_bytes)
    )?;
    writeln!(
        out,
        "all snapshots, logical:    {}",
        bytes(st.total_logical_bytes)
    )?;
    writeln!(
        out,
        "unique data (plaintext):   {}",
        bytes(st.unique_raw_bytes)
    )?;
    writeln!(
        out,
        "unique data (stored):      {}",
        bytes(st.unique_stored_bytes)
    )?;
    writeln!(
        out,
        "repository on disk:        {}",
        bytes(st.repository_bytes)
    )?;
    writeln!(out, "dedup ratio:               {:.2}x", st.dedup_ratio)?;
    writeln!(
        out,
        "compression ratio:         {:.2}x",
        st.compression_ratio
    )?;
    writeln!(
        out,
        "blobs / packs:             {} / {}",
        st.blobs, st.packs
    )?;
    if st.wal_files > 0 {
        writeln!(
            out,
            "archived WAL:              {} files, {} ({} stored)",
            st.wal_files,
            bytes(st.wal_bytes),
            bytes(st.wal_stored_bytes)
        )?;
    }
    writeln!(out, "unused (prune reclaims):   {}", bytes(st.unused_bytes))?;
    Ok(EXIT_OK)
}

fn unlock(ctx: &Ctx, remove_all: bool) -> Result<i32> {
    let repo = ctx.open_to_delete()?;
    let n = repo.unlock(remove_all)?;
    if ctx.g.json {
        print_json(&json!({"removed_locks": n}))?;
    } else if !ctx.g.quiet {
        out!("removed {n} lock(s)");
        // Unreadable lock files are nobody's known lock: only `--remove-all`
        // removes them, which the user has to be told.
        let unreadable = if remove_all {
            0
        } else {
            repo.lock_files()?
                .iter()
                .filter(|l| l.info.is_err())
                .count()
        };
        if unreadable > 0 {
            out!(
                "left {unreadable} lock file(s) that cannot be read (damaged?): `cairn unlock --remove-all` removes them once no other cairn process uses the repository"
            );
        }
    }
    Ok(EXIT_OK)
}

fn repair(ctx: &Ctx, c: &RepairCommand) -> Result<i32> {
    let repo = ctx.open_to_delete()?;
    match c {
        RepairCommand::Index => {
            let r = cmd::repair::repair_index(&repo)?;
            for u in &r.unreadable {
                err!("cairn: warning: {u}");
            }
            if ctx.g.json {
                print_json(&serde_json::to_value(&r)?)?;
            } else if !ctx.g.quiet {
                out!(
                    "rebuilt the index: {} packs, {} blobs (replaced {} index files)",
                    r.packs,
                    r.blobs,
                    r.old_index_files
                );
            }
        }
    }
    Ok(EXIT_OK)
}
