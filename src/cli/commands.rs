//! One function per command: parse the arguments into library calls.

use super::args::*;
use super::output::{self, bytes};
use super::password;
use super::{EXIT_ERROR, EXIT_OK, EXIT_PARTIAL};
use anyhow::{Context, Result, anyhow, bail};
use cairn::Id;
use cairn::backend::{FileKind, LocalBackend};
use cairn::chunker::ChunkerParams;
use cairn::crypto::KdfParams;
use cairn::keyfile::KeyFile;
use cairn::repo::{InitOptions, Repository};
use cairn::snapshot::{Snapshot, SnapshotFilter};
use cairn::tree::NodeKind;
use serde_json::json;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Runs the parsed command; returns the exit code.
pub fn run(cli: Cli) -> Result<i32> {
    let g = &cli.global;
    match &cli.command {
        Command::Init(a) => init(g, a),
        Command::Backup(a) => backup(g, a),
        Command::Snapshots(a) => snapshots(g, a),
        Command::Ls(a) => ls(g, a),
        Command::Dump(a) => dump(g, a),
        Command::Restore(a) => restore(g, a),
        Command::Cat(a) => cat(g, a),
        Command::Key(k) => key(g, k),
        Command::Forget(a) => forget(g, a),
        Command::Prune(a) => prune(g, a),
        Command::Check(a) => check(g, a),
        Command::Stats => stats(g),
        Command::Unlock { remove_all } => unlock(g, *remove_all),
        Command::Repair(c) => repair(g, c),
    }
}

fn repo_path(g: &Global) -> Result<&Path> {
    g.repo
        .as_deref()
        .ok_or_else(|| anyhow!("no repository given: use -r/--repo or set CAIRN_REPOSITORY"))
}

fn sources(g: &Global) -> password::Sources<'_> {
    password::Sources {
        file: g.password_file.as_deref(),
        command: g.password_command.as_deref(),
    }
}

fn open(g: &Global) -> Result<Repository> {
    let path = repo_path(g)?;
    if !path.join(cairn::backend::CONFIG).exists() {
        return Err(cairn::Error::NotARepository(path.to_path_buf()).into());
    }
    let pw = password::get(&sources(g), "enter password for repository: ", false)?;
    Ok(Repository::open(path, &pw)?)
}

fn kdf(a: &KdfArgs) -> Result<KdfParams> {
    let k = KdfParams {
        memory_kib: a.kdf_memory,
        iterations: a.kdf_iterations,
        parallelism: 1,
    };
    k.validate().map_err(|e| anyhow!(e))?;
    Ok(k)
}

fn filter(f: &FilterArgs) -> SnapshotFilter {
    SnapshotFilter {
        hosts: f.hosts.clone(),
        tags: f
            .tags
            .iter()
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .collect(),
        paths: f.paths.clone(),
    }
}

fn print_json(v: &serde_json::Value) -> Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// Parses `fixed:PAGES` or `cdc:MIN:AVG:MAX`.
fn parse_db_chunking(s: &str) -> Result<cairn::chunker::DatabaseChunking> {
    use cairn::chunker::DatabaseChunking;
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| -> Result<u32> {
        p.trim()
            .parse()
            .map_err(|_| anyhow!("--db-chunking {s:?}: {p:?} is not a number"))
    };
    let d = match parts.as_slice() {
        ["fixed", n] => DatabaseChunking::FixedPages { pages: num(n)? },
        ["cdc", a, b, c] => DatabaseChunking::PageCdc {
            min_pages: num(a)?,
            avg_pages: num(b)?,
            max_pages: num(c)?,
        },
        _ => bail!("--db-chunking {s:?}: use fixed:PAGES or cdc:MIN:AVG:MAX"),
    };
    d.validate()
        .map_err(|e| anyhow!("--db-chunking {s:?}: {e}"))?;
    Ok(d)
}

fn init(g: &Global, a: &InitArgs) -> Result<i32> {
    let path = repo_path(g)?;
    if path.join(cairn::backend::CONFIG).exists() {
        return Err(cairn::Error::AlreadyExists(format!(
            "{}: a repository already exists here; refusing to overwrite it",
            path.display()
        ))
        .into());
    }
    let pw = password::get(&sources(g), "enter password for new repository: ", true)?;
    if pw.is_empty() {
        bail!("empty password: refusing to create a repository without a password");
    }
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
        database_chunking: parse_db_chunking(&a.db_chunking)?,
    };
    let repo = Repository::init(path, &pw, &opts)?;
    if g.json {
        print_json(
            &json!({"message_type": "initialized", "id": hex::encode(repo.config.id), "repository": path}),
        )?;
    } else if !g.quiet {
        println!(
            "created cairn repository {} at {}",
            &hex::encode(repo.config.id)[..10],
            path.display()
        );
        println!("Keep the password safe: without it the data cannot be recovered.");
    }
    Ok(EXIT_OK)
}

fn parse_time(s: &str) -> Result<chrono::DateTime<chrono::FixedOffset>> {
    Ok(cairn::timespec::parse_time(s)?)
}

fn backup(g: &Global, a: &BackupArgs) -> Result<i32> {
    let mut excludes = a.excludes.clone();
    for f in &a.exclude_files {
        excludes.extend(cairn::walk::PatternSet::read_file(f)?);
    }
    // Validate the arguments before asking for a password.
    cairn::walk::PatternSet::new(&excludes)?;
    let time = a.time.as_deref().map(parse_time).transpose()?;
    for p in &a.paths {
        std::fs::symlink_metadata(p).with_context(|| format!("source path {}", p.display()))?;
    }
    for p in &a.sqlite {
        match std::fs::metadata(p) {
            Ok(md) if md.is_file() => {}
            Ok(_) => bail!("database {}: not a regular file", p.display()),
            Err(e) => bail!("database {}: {e}", p.display()),
        }
    }
    if a.stdin && a.stdin_from_command {
        bail!("give either --stdin or --stdin-from-command, not both");
    }
    if a.stdin_from_command && a.command.is_empty() {
        bail!("--stdin-from-command needs the command after --, e.g. -- pg_dump mydb");
    }
    if !a.command.is_empty() && !a.stdin_from_command {
        bail!("a command after -- needs --stdin-from-command");
    }
    if a.paths.is_empty() && a.sqlite.is_empty() && !a.stdin && !a.stdin_from_command {
        bail!("nothing to back up: give paths, --sqlite DBFILE, --stdin or --stdin-from-command");
    }
    if a.stdin || a.stdin_from_command {
        cairn::tree::validate_name(a.stdin_filename.as_bytes())
            .map_err(|e| anyhow!("--stdin-filename {:?}: {e}", a.stdin_filename))?;
    }
    let mut repo = open(g)?;
    // Backups always lock: prune must never delete what a running backup relies on.
    let _lock = cairn::lock::Lock::acquire(&repo, false, parse_duration(&g.retry_lock)?)?;
    let parent = match &a.parent {
        Some(sel) => Some(repo.find_snapshot(sel, &SnapshotFilter::default())?.0),
        None => None,
    };
    let tags = a
        .tags
        .iter()
        .flat_map(|t| t.split(','))
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    let opts = cairn::backup::BackupOptions {
        paths: a.paths.clone(),
        host: a.host.clone(),
        tags,
        time,
        excludes,
        one_file_system: a.one_file_system,
        parent,
        force: a.force,
        sqlite: a.sqlite.clone(),
        sqlite_options: cairn::sqlite::SqliteOptions {
            check: if a.sqlite_quick {
                cairn::snapshot::CheckKind::Quick
            } else {
                cairn::snapshot::CheckKind::Integrity
            },
            ..Default::default()
        },
        sqlite_allow_corrupt: a.sqlite_allow_corrupt,
        stdin: (a.stdin || a.stdin_from_command).then(|| cairn::backup::StdinSource {
            filename: a.stdin_filename.clone(),
            command: a.stdin_from_command.then(|| a.command.clone()),
        }),
    };
    let progress = cairn::backup::Progress::default();
    let start = Instant::now();
    let pb = output::progress_bar(!g.json && !g.quiet, Some(0));
    let json_status = g.json && !g.quiet;
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        if pb.is_hidden() && !json_status {
            progress.scan_done.store(true, Ordering::Relaxed);
        } else {
            s.spawn(|| cairn::backup::scan_totals(&opts.paths, &opts.excludes, &progress));
        }
        s.spawn(|| {
            let mut last_json = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let bytes_done = progress.bytes.load(Ordering::Relaxed);
                let total = progress.total_bytes.load(Ordering::Relaxed);
                pb.set_length(total.max(bytes_done));
                pb.set_position(bytes_done);
                pb.set_message(format!(
                    "{}/{} files{}, {} errors",
                    progress.files.load(Ordering::Relaxed),
                    progress.total_files.load(Ordering::Relaxed),
                    if progress.scan_done.load(Ordering::Relaxed) { "" } else { " (scanning)" },
                    progress.errors.load(Ordering::Relaxed)
                ));
                if json_status && last_json.elapsed().as_secs_f64() >= 1.0 {
                    last_json = Instant::now();
                    let _ = print_json(&json!({
                        "message_type": "status",
                        "seconds_elapsed": start.elapsed().as_secs(),
                        "percent_done": if total > 0 { (bytes_done as f64 / total as f64).min(1.0) } else { 0.0 },
                        "total_files": progress.total_files.load(Ordering::Relaxed),
                        "files_done": progress.files.load(Ordering::Relaxed),
                        "total_bytes": total,
                        "bytes_done": bytes_done,
                        "error_count": progress.errors.load(Ordering::Relaxed),
                    }));
                }
                sleep_unless(&done, std::time::Duration::from_millis(100));
            }
        });
        let r = cairn::backup::backup(&mut repo, &opts, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    pb.finish_and_clear();
    let r = result?;
    let secs = start.elapsed().as_secs_f64();
    let m = &r.snapshot.summary;
    for e in &r.errors {
        eprintln!("cairn: warning: could not read {e}");
    }
    if g.json {
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
            "databases": r.snapshot.databases.iter().map(output::database_json).collect::<Vec<_>>(),
            "duration_seconds": secs,
        }))?;
    } else if !g.quiet {
        for d in &r.snapshot.databases {
            println!("{}", output::database_line(d));
        }
        println!(
            "Files: {} new, {} changed, {} unchanged; {} directories",
            m.files_new, m.files_changed, m.files_unchanged, m.dirs
        );
        println!(
            "Processed {} in {:.1}s ({}/s); read {}",
            bytes(m.total_bytes),
            secs,
            bytes((m.bytes_read as f64 / secs.max(1e-3)) as u64),
            bytes(m.bytes_read)
        );
        println!(
            "Added to the repository: {} ({} stored)",
            bytes(m.bytes_added),
            bytes(m.bytes_added_stored)
        );
        println!("snapshot {} saved", r.snapshot_id.short());
    }
    let failed: Vec<_> = r
        .snapshot
        .databases
        .iter()
        .filter(|d| !d.check_ok)
        .collect();
    for d in &failed {
        eprintln!(
            "cairn: warning: database {} failed its {} and was saved marked as failed: {}",
            d.path,
            d.check.pragma(),
            d.check_messages.join("; ")
        );
    }
    if !r.errors.is_empty() {
        eprintln!(
            "cairn: {} source entries could not be read; the snapshot is incomplete",
            r.errors.len()
        );
        return Ok(EXIT_PARTIAL);
    }
    if !failed.is_empty() {
        return Ok(EXIT_PARTIAL);
    }
    Ok(EXIT_OK)
}

fn snapshots(g: &Global, a: &SnapshotsArgs) -> Result<i32> {
    let repo = open(g)?;
    let f = filter(&a.filter);
    let list: Vec<(Id, Snapshot)> = repo
        .load_snapshots()?
        .into_iter()
        .filter(|(_, s)| f.matches(s))
        .collect();
    if g.json {
        print_json(&serde_json::Value::Array(
            list.iter()
                .map(|(id, s)| output::snapshot_json(id, s))
                .collect(),
        ))?;
        return Ok(EXIT_OK);
    }
    println!(
        "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  Paths",
        "ID", "Time", "Host", "Tags", "Size"
    );
    println!("{}", "-".repeat(90));
    for (id, s) in &list {
        println!(
            "{:<8}  {:<19}  {:<16}  {:<16}  {:>10}  {}",
            id.short(),
            output::local_time(s),
            s.hostname,
            s.tags.join(","),
            bytes(s.summary.total_bytes),
            s.paths.join(", ")
        );
        for d in &s.databases {
            println!("          {}", output::database_line(d));
        }
    }
    println!("{}", "-".repeat(90));
    println!("{} snapshots", list.len());
    Ok(EXIT_OK)
}

fn select(repo: &Repository, s: &SnapshotSelect) -> Result<(Id, Snapshot)> {
    let f = filter(&s.filter);
    match (&s.snapshot, &s.at) {
        (Some(_), Some(_)) => bail!("give either a snapshot id or --at, not both"),
        (Some(sel), None) => Ok(repo.find_snapshot(sel, &f)?),
        (None, Some(t)) => {
            let t = parse_time(t)?;
            Ok(repo.find_snapshot_at((t.timestamp(), t.timestamp_subsec_nanos()), &f)?)
        }
        (None, None) => bail!("which snapshot? give an id prefix, \"latest\", or --at TIME"),
    }
}

fn ls(g: &Global, a: &LsArgs) -> Result<i32> {
    let mut repo = open(g)?;
    repo.load_index()?;
    let (id, snap) = repo.find_snapshot(&a.snapshot, &filter(&a.filter))?;
    let start = a.path.clone().unwrap_or_else(|| "/".into());
    let node = cairn::browse::lookup(&repo, &snap.tree, &start)?;
    let prefix = PathBuf::from("/").join(
        cairn::browse::components(&start)?
            .iter()
            .map(|c| std::ffi::OsStr::from_bytes(c))
            .collect::<PathBuf>(),
    );
    let mut rows = Vec::new();
    if node.kind != NodeKind::Dir || prefix != Path::new("/") {
        rows.push((prefix.clone(), node.clone()));
    }
    if node.is_dir() {
        cairn::browse::walk(&repo, &node, &prefix, &mut |p, n| {
            rows.push((p.to_path_buf(), n.clone()));
            true
        })?;
    }
    let db_of = |p: &Path| snap.databases.iter().find(|d| Path::new(&d.path) == p);
    if g.json {
        let nodes: Vec<_> = rows
            .iter()
            .map(|(p, n)| {
                let mut v = output::node_json(&p.to_string_lossy(), n);
                if let Some(d) = db_of(p) {
                    v["database"] = output::database_json(d);
                }
                v
            })
            .collect();
        print_json(&json!({
            "snapshot": output::snapshot_json(&id, &snap),
            "nodes": nodes,
        }))?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::stdout().lock();
    for (p, n) in rows {
        let name = match db_of(&p) {
            Some(d) => format!("{}  [{}]", p.to_string_lossy(), output::database_summary(d)),
            None => p.to_string_lossy().into_owned(),
        };
        if a.long {
            let link = if n.kind == NodeKind::Symlink {
                format!(" -> {}", String::from_utf8_lossy(&n.link_target))
            } else {
                String::new()
            };
            writeln!(
                out,
                "{} {:>5} {:>5} {:>12} {} {}{}",
                output::mode_string(&n),
                n.uid,
                n.gid,
                n.size,
                output::node_mtime(&n),
                name,
                link
            )?;
        } else {
            writeln!(out, "{name}")?;
        }
    }
    Ok(EXIT_OK)
}

use std::os::unix::ffi::OsStrExt;

fn dump(g: &Global, a: &DumpArgs) -> Result<i32> {
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, false)?;
    repo.load_index()?;
    let (_, snap) = repo.find_snapshot(&a.snapshot, &filter(&a.filter))?;
    let node = cairn::browse::lookup(&repo, &snap.tree, &a.path)?;
    if node.kind != NodeKind::File {
        bail!(
            "{}: is a {}, not a file",
            a.path.display(),
            node.kind.name()
        );
    }
    let mut out = std::io::stdout().lock();
    let content = cairn::content::data_ids(&repo, &node)?;
    for run in repo.blob_runs(&content, 1 << 20)? {
        for data in repo.read_run(&run)? {
            if let Err(e) = out.write_all(&data) {
                if e.kind() == std::io::ErrorKind::BrokenPipe {
                    return Ok(EXIT_OK);
                }
                return Err(e.into());
            }
        }
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn restore(g: &Global, a: &RestoreArgs) -> Result<i32> {
    if let Some(t) = &a.select.at {
        parse_time(t)?;
    }
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, false)?;
    repo.load_index()?;
    let (id, snap) = select(&repo, &a.select)?;
    let opts = cairn::restore::RestoreOptions {
        target: a.target.clone(),
        includes: a.includes.clone(),
        excludes: a.excludes.clone(),
        verify: a.verify,
        databases: snap.databases.clone(),
    };
    let progress = cairn::restore::RestoreProgress::default();
    let start = Instant::now();
    let pb = output::progress_bar(!g.json && !g.quiet, Some(snap.summary.total_bytes));
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            let mut last_json = Instant::now();
            while !done.load(Ordering::Relaxed) {
                let bytes_done = progress.bytes.load(Ordering::Relaxed);
                pb.set_position(bytes_done);
                pb.set_message(format!("{} files", progress.files.load(Ordering::Relaxed)));
                if g.json && !g.quiet && last_json.elapsed().as_secs_f64() >= 1.0 {
                    last_json = Instant::now();
                    let total = snap.summary.total_bytes;
                    let _ = print_json(&json!({
                        "message_type": "status",
                        "seconds_elapsed": start.elapsed().as_secs(),
                        "percent_done": if total > 0 { (bytes_done as f64 / total as f64).min(1.0) } else { 0.0 },
                        "files_restored": progress.files.load(Ordering::Relaxed),
                        "total_bytes": total,
                        "bytes_restored": bytes_done,
                    }));
                }
                sleep_unless(&done, std::time::Duration::from_millis(100));
            }
        });
        let r = cairn::restore::restore(&repo, &snap.tree, &opts, &progress);
        done.store(true, Ordering::Relaxed);
        r
    });
    pb.finish_and_clear();
    let stats = result?;
    let secs = start.elapsed().as_secs_f64();
    for e in &stats.errors {
        eprintln!("cairn: error: {e}");
    }
    if g.json {
        print_json(&json!({
            "message_type": "summary",
            "snapshot_id": id.to_hex(),
            "files_restored": stats.files,
            "dirs_restored": stats.dirs,
            "others_restored": stats.others,
            "bytes_restored": stats.bytes,
            "files_verified": if a.verify { Some(stats.verified) } else { None },
            "databases": stats.databases,
            "errors": stats.errors.len(),
            "duration_seconds": secs,
        }))?;
    } else if !g.quiet {
        println!(
            "restored snapshot {} to {}: {} files, {} directories, {} other, {} in {:.1}s",
            id.short(),
            a.target.display(),
            stats.files,
            stats.dirs,
            stats.others,
            bytes(stats.bytes),
            secs
        );
        if a.verify {
            println!("verified {} of {} files", stats.verified, stats.files);
        }
        for d in &stats.databases {
            if d.verified {
                println!(
                    "database {}: verified (integrity_check ok, schema and row counts match)",
                    d.path
                );
            }
        }
    }
    for d in stats.databases.iter().filter(|d| !d.verified) {
        eprintln!(
            "cairn: database {} NOT verified: {}",
            d.path,
            d.problems.join("; ")
        );
    }
    if !stats.errors.is_empty() {
        eprintln!("cairn: {} errors during restore", stats.errors.len());
        return Ok(EXIT_ERROR);
    }
    Ok(EXIT_OK)
}

fn find_file(repo: &Repository, kind: FileKind, prefix: &str) -> Result<Id> {
    let p = prefix.to_ascii_lowercase();
    let matches: Vec<Id> = repo
        .backend
        .list(kind)?
        .into_iter()
        .filter(|id| id.to_hex().starts_with(&p))
        .collect();
    match matches.len() {
        0 => bail!("no {} file matches {prefix:?}", kind.name()),
        1 => Ok(matches[0]),
        n => bail!(
            "{} id prefix {prefix:?} is ambiguous: it matches {n} files",
            kind.name()
        ),
    }
}

fn cat(g: &Global, a: &CatArgs) -> Result<i32> {
    let mut repo = open(g)?;
    let need_id = || {
        a.id.as_deref()
            .ok_or_else(|| anyhow!("cat {} needs an id", a.kind))
    };
    let v = match a.kind.as_str() {
        "config" => json!({
            "version": repo.config.version,
            "id": hex::encode(repo.config.id),
            "chunker": {"min_size": repo.config.chunker.min_size, "avg_size": repo.config.chunker.avg_size, "max_size": repo.config.chunker.max_size},
            "compression_level": repo.config.compression_level,
            "pack_size": repo.config.pack_size,
            "database_chunking": match repo.config.database_chunking {
                None => json!(null),
                Some(cairn::chunker::DatabaseChunking::FixedPages { pages }) => json!({"mode": "fixed", "pages": pages}),
                Some(cairn::chunker::DatabaseChunking::PageCdc { min_pages, avg_pages, max_pages }) => json!({"mode": "cdc", "min_pages": min_pages, "avg_pages": avg_pages, "max_pages": max_pages}),
            },
        }),
        "snapshot" => {
            let (id, s) = repo.find_snapshot(need_id()?, &SnapshotFilter::default())?;
            output::snapshot_json(&id, &s)
        }
        "key" => {
            let id = match &a.id {
                Some(p) => find_file(&repo, FileKind::Key, p)?,
                None => repo.key_id,
            };
            key_json(&repo, &id)?
        }
        "index" => {
            let id = find_file(&repo, FileKind::Index, need_id()?)?;
            let what = LocalBackend::rel_path(FileKind::Index, &id);
            let f = cairn::index::IndexFile::decode(
                &repo.key,
                &repo.backend.read(FileKind::Index, &id)?,
                &what,
            )?;
            json!({
                "id": id.to_hex(),
                "supersedes": f.supersedes.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                "packs": f.packs.iter().map(|p| json!({"id": p.id.to_hex(), "blobs": p.blobs.iter().map(entry_json).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            })
        }
        "pack" => {
            let id = find_file(&repo, FileKind::Pack, need_id()?)?;
            let what = LocalBackend::rel_path(FileKind::Pack, &id);
            let entries =
                cairn::pack::parse(&repo.key, &repo.backend.read(FileKind::Pack, &id)?, &what)?;
            json!({"id": id.to_hex(), "blobs": entries.iter().map(entry_json).collect::<Vec<_>>()})
        }
        "tree" => {
            repo.load_index()?;
            let arg = need_id()?;
            let (tree_id, t) = match arg.split_once(':') {
                Some((snap, path)) => {
                    let (_, s) = repo.find_snapshot(snap, &SnapshotFilter::default())?;
                    let node = cairn::browse::lookup(&repo, &s.tree, path)?;
                    if !node.is_dir() {
                        bail!("{path} is not a directory");
                    }
                    // An inline listing has no id of its own.
                    (node.subtree, repo.listing(&node)?.into_owned())
                }
                None => {
                    let id = Id::from_hex(arg)
                        .ok_or_else(|| anyhow!("a tree id is 64 hex digits, or SNAPSHOT:PATH"))?;
                    (Some(id), repo.load_tree(&id)?)
                }
            };
            json!({"id": tree_id.map(|i| i.to_hex()), "inline": tree_id.is_none(), "nodes": output::tree_json(&t)})
        }
        other => {
            bail!("unknown object type {other:?}: use config, snapshot, key, index, pack or tree")
        }
    };
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(EXIT_OK)
}

fn entry_json(e: &cairn::pack::PackEntry) -> serde_json::Value {
    json!({"type": e.kind.name(), "id": e.id.to_hex(), "offset": e.offset, "length": e.length, "raw_length": e.raw_length})
}

fn key_json(repo: &Repository, id: &Id) -> Result<serde_json::Value> {
    let what = LocalBackend::rel_path(FileKind::Key, id);
    let k = KeyFile::decode(&repo.backend.read(FileKind::Key, id)?, &what)?;
    Ok(json!({
        "id": id.to_hex(),
        "current": *id == repo.key_id,
        "created": chrono::DateTime::from_timestamp(k.created, 0).map(|t| t.to_rfc3339()),
        "hostname": k.hostname,
        "username": k.username,
        "kdf": {"algorithm": "argon2id", "memory_kib": k.kdf.memory_kib, "iterations": k.kdf.iterations, "parallelism": k.kdf.parallelism},
    }))
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

fn key(g: &Global, k: &KeyCommand) -> Result<i32> {
    let repo = open(g)?;
    match k {
        KeyCommand::List => {
            let keys: Vec<_> = repo
                .backend
                .list(FileKind::Key)?
                .iter()
                .map(|id| key_json(&repo, id))
                .collect::<Result<_>>()?;
            if g.json {
                print_json(&serde_json::Value::Array(keys))?;
            } else {
                for k in keys {
                    println!(
                        "{} {:<8} {:<20} {}@{}",
                        if k["current"].as_bool() == Some(true) {
                            "*"
                        } else {
                            " "
                        },
                        &k["id"].as_str().unwrap_or_default()[..8],
                        k["created"].as_str().unwrap_or_default(),
                        k["username"].as_str().unwrap_or_default(),
                        k["hostname"].as_str().unwrap_or_default()
                    );
                }
            }
        }
        KeyCommand::Add(a) => {
            let id = repo.add_key(&new_password(a)?, kdf(&a.kdf)?)?;
            if !g.quiet {
                println!("added key {}", id.short());
            }
        }
        KeyCommand::Passwd(a) => {
            let id = repo.add_key(&new_password(a)?, kdf(&a.kdf)?)?;
            repo.backend.remove(FileKind::Key, &repo.key_id)?;
            if !g.quiet {
                println!(
                    "password changed: key {} replaces {}",
                    id.short(),
                    repo.key_id.short()
                );
            }
        }
        KeyCommand::Remove { id } => {
            let kid = find_file(&repo, FileKind::Key, id)?;
            if kid == repo.key_id {
                bail!(
                    "refusing to remove the key in use ({}); open the repository with another password",
                    kid.short()
                );
            }
            repo.backend.remove(FileKind::Key, &kid)?;
            if !g.quiet {
                println!("removed key {}", kid.short());
            }
        }
    }
    Ok(EXIT_OK)
}

/// Parses durations like `30s`, `5m`, `26h`, `2d`, `1w`, `1d12h`.
fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| anyhow!("bad duration {s:?}: use e.g. 30s, 5m, 26h, 2d, 1w"))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => bail!("bad duration {s:?}: unknown unit {c:?} (use s, m, h, d, w)"),
        };
        total = total.saturating_add(n.saturating_mul(unit));
        any = true;
    }
    if !num.is_empty() {
        bail!("bad duration {s:?}: a number needs a unit (s, m, h, d, w)");
    }
    if !any {
        bail!("bad duration {s:?}");
    }
    Ok(std::time::Duration::from_secs(total))
}

fn lock(g: &Global, repo: &Repository, exclusive: bool) -> Result<Option<cairn::lock::Lock>> {
    if g.no_lock && !exclusive {
        return Ok(None);
    }
    let retry = parse_duration(&g.retry_lock)?;
    Ok(Some(cairn::lock::Lock::acquire(repo, exclusive, retry)?))
}

fn parse_percent(s: &str) -> Result<f64> {
    let v: f64 = s
        .trim()
        .trim_end_matches('%')
        .parse()
        .map_err(|_| anyhow!("bad percentage {s:?}"))?;
    if !(0.0..=100.0).contains(&v) {
        bail!("percentage {s:?} out of range 0..100");
    }
    Ok(v / 100.0)
}

fn prune_options(a: &PruneArgs, dry_run: bool) -> Result<cairn::prune::PruneOptions> {
    Ok(cairn::prune::PruneOptions {
        max_unused: parse_percent(&a.max_unused)?,
        repack_small: a.repack_small,
        dry_run,
        assume_removed: Vec::new(),
    })
}

fn prune_json(r: &cairn::prune::PruneReport) -> Result<serde_json::Value> {
    let mut v = serde_json::to_value(r)?;
    v["bytes_freed"] = json!(r.bytes_freed());
    v["message_type"] = json!("prune");
    Ok(v)
}

fn print_prune_report(g: &Global, r: &cairn::prune::PruneReport) -> Result<()> {
    if g.json {
        print_json(&prune_json(r)?)?;
    } else if !g.quiet {
        let verb = if r.dry_run { "would" } else { "did" };
        println!(
            "{} snapshots reference data in {} packs; {} unused blobs ({})",
            r.snapshots,
            r.packs_before,
            r.blobs_unused,
            bytes(r.bytes_unused)
        );
        println!(
            "prune {verb} delete {} packs, repack {} packs, remove {} unindexed packs; {} unused left in kept packs",
            r.packs_deleted,
            r.packs_repacked,
            r.packs_unindexed,
            bytes(r.bytes_unused_kept)
        );
        println!(
            "repository data: {} -> {} ({} freed)",
            bytes(r.size_before),
            bytes(r.size_after),
            bytes(r.bytes_freed())
        );
    }
    Ok(())
}

fn prune(g: &Global, a: &PruneCmd) -> Result<i32> {
    let opts = prune_options(&a.opts, a.dry_run)?;
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, true)?;
    let r = cairn::prune::prune(&mut repo, &opts)?;
    print_prune_report(g, &r)?;
    Ok(EXIT_OK)
}

fn keep_count(s: &Option<String>, flag: &str) -> Result<i64> {
    match s {
        None => Ok(0),
        Some(v) => cairn::retention::parse_keep_count(v).map_err(|e| anyhow!("--{flag}: {e}")),
    }
}

fn keep_within(s: &Option<String>, flag: &str) -> Result<Option<cairn::retention::Duration>> {
    s.as_deref()
        .map(|v| {
            v.parse::<cairn::retention::Duration>()
                .map_err(|e| anyhow!("--{flag}: {e}"))
        })
        .transpose()
}

fn forget(g: &Global, a: &ForgetArgs) -> Result<i32> {
    let policy = cairn::retention::Policy {
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
        tags: a
            .keep_tags
            .iter()
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_string())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .collect(),
    };
    let group_by: cairn::forget::GroupBy = a.group_by.parse().map_err(|e: String| anyhow!(e))?;
    let prune_opts = prune_options(&a.prune_opts, a.dry_run)?;
    if policy.is_empty() && a.snapshots.is_empty() {
        bail!(
            "no policy and no snapshot ids given: refusing to remove anything (see `cairn forget --help`)"
        );
    }
    if !policy.is_empty() && !a.snapshots.is_empty() {
        bail!("give either snapshot ids or a policy, not both");
    }
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, true)?;
    let mut to_remove: Vec<Id> = Vec::new();
    let mut forget_json = serde_json::Value::Null;
    if !a.snapshots.is_empty() {
        for sel in &a.snapshots {
            let (id, _) = repo.find_snapshot(sel, &SnapshotFilter::default())?;
            to_remove.push(id);
        }
        if g.json {
            forget_json = json!({"removed": to_remove.iter().map(|i| i.to_hex()).collect::<Vec<_>>(), "dry_run": a.dry_run});
        } else if !g.quiet {
            for id in &to_remove {
                println!(
                    "{} snapshot {}",
                    if a.dry_run { "would remove" } else { "removed" },
                    id.short()
                );
            }
        }
    } else {
        let groups = cairn::forget::plan(
            repo.load_snapshots()?,
            &filter(&a.filter),
            &policy,
            group_by,
        );
        if !a.unsafe_allow_remove_all {
            cairn::forget::check_not_removing_all(&groups)?;
        }
        if g.json {
            let v: Vec<_> = groups
                .iter()
                .map(|gr| {
                    json!({
                        "group_key": gr.key,
                        "keep": gr.keep.iter().map(|k| output::snapshot_json(&k.id, &k.snapshot)).collect::<Vec<_>>(),
                        "remove": gr.remove.iter().map(|(id, s)| output::snapshot_json(id, s)).collect::<Vec<_>>(),
                        "reasons": gr.keep.iter().map(|k| json!({
                            "snapshot": output::snapshot_json(&k.id, &k.snapshot),
                            "matches": k.reason.matches,
                            "counters": k.reason.counters,
                        })).collect::<Vec<_>>(),
                    })
                })
                .collect();
            forget_json = serde_json::Value::Array(v);
        } else if !g.quiet {
            println!("Applying policy: {policy}");
            for gr in &groups {
                let mut key = Vec::new();
                if let Some(h) = &gr.key.hostname {
                    key.push(format!("host [{h}]"));
                }
                if let Some(p) = &gr.key.paths {
                    key.push(format!("paths [{}]", p.join(", ")));
                }
                if let Some(t) = &gr.key.tags {
                    key.push(format!("tags [{}]", t.join(", ")));
                }
                println!("\nsnapshots for {}:", key.join(", "));
                println!("keep {} snapshots:", gr.keep.len());
                for k in &gr.keep {
                    println!(
                        "  {}  {}  {}  {}",
                        k.id.short(),
                        output::local_time(&k.snapshot),
                        k.snapshot.tags.join(","),
                        k.reason.matches.join(", ")
                    );
                }
                println!(
                    "{} {} snapshots:",
                    if a.dry_run { "would remove" } else { "remove" },
                    gr.remove.len()
                );
                for (id, s) in &gr.remove {
                    println!(
                        "  {}  {}  {}",
                        id.short(),
                        output::local_time(s),
                        s.tags.join(",")
                    );
                }
            }
        }
        to_remove = groups
            .iter()
            .flat_map(|gr| gr.remove.iter().map(|(id, _)| *id))
            .collect();
    }
    if !a.dry_run {
        cairn::forget::remove_snapshots(&repo, &to_remove)?;
    }
    if a.prune {
        let mut prune_opts = prune_opts;
        if a.dry_run {
            prune_opts.assume_removed = to_remove.clone();
        }
        let r = cairn::prune::prune(&mut repo, &prune_opts)?;
        if g.json {
            // One document: the forget decision and the prune report together.
            print_json(&json!({"forget": forget_json, "prune": prune_json(&r)?}))?;
        } else {
            print_prune_report(g, &r)?;
        }
    } else if g.json {
        print_json(&forget_json)?;
    }
    Ok(EXIT_OK)
}

fn check(g: &Global, a: &CheckArgs) -> Result<i32> {
    let subset = match (&a.read_data_subset, a.read_data) {
        (Some(s), _) => Some(s.parse::<cairn::check::Subset>().map_err(|e| anyhow!(e))?),
        (None, true) => Some(cairn::check::Subset::All),
        (None, false) => None,
    };
    let max_age = a.max_age.as_deref().map(parse_duration).transpose()?;
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, false)?;
    let mut report =
        cairn::check::check(&mut repo, &cairn::check::CheckOptions { read_data: subset })?;
    let mut stale = Vec::new();
    if let Some(age) = max_age {
        let snaps = repo.load_snapshots()?;
        let f = filter(&a.filter);
        let groups = cairn::forget::plan(
            snaps,
            &f,
            &cairn::retention::Policy {
                last: -1,
                ..Default::default()
            },
            cairn::forget::GroupBy::default(),
        );
        let now = chrono::Utc::now().timestamp();
        if groups.is_empty() {
            stale.push("no snapshots match".to_string());
        }
        for gr in &groups {
            if let Some(newest) = gr.keep.first() {
                let age_s = now - newest.snapshot.time;
                if age_s > age.as_secs() as i64 {
                    stale.push(format!(
                        "host {} paths [{}]: newest snapshot {} is from {} ({}h old, limit {})",
                        gr.key.hostname.clone().unwrap_or_default(),
                        gr.key.paths.clone().unwrap_or_default().join(", "),
                        newest.id.short(),
                        output::local_time(&newest.snapshot),
                        age_s / 3600,
                        a.max_age.clone().unwrap_or_default()
                    ));
                }
            }
        }
        report
            .errors
            .extend(stale.iter().map(|s| format!("stale backup: {s}")));
    }
    if g.json {
        let mut v = serde_json::to_value(&report)?;
        v["stale_groups"] = json!(stale);
        v["ok"] = json!(report.errors.is_empty());
        print_json(&v)?;
    } else {
        if !g.quiet {
            for i in &report.info {
                println!("info: {i}");
            }
        }
        for e in &report.errors {
            eprintln!("error: {e}");
        }
        for d in &report.damaged_snapshots {
            eprintln!("damaged: {d}");
        }
        if !g.quiet {
            println!(
                "checked {} snapshots, {} trees, {} packs ({} read, {} blobs verified): {}",
                report.snapshots,
                report.trees,
                report.packs,
                report.packs_read,
                report.blobs_read,
                if report.errors.is_empty() {
                    "no errors".to_string()
                } else {
                    format!("{} errors", report.errors.len())
                }
            );
        }
    }
    Ok(if report.errors.is_empty() {
        EXIT_OK
    } else {
        EXIT_ERROR
    })
}

fn stats(g: &Global) -> Result<i32> {
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, false)?;
    let st = cairn::stats::stats(&mut repo)?;
    if g.json {
        print_json(&serde_json::to_value(&st)?)?;
    } else {
        println!("snapshots:                 {}", st.snapshots);
        println!(
            "latest snapshot size:      {}",
            bytes(st.latest_logical_bytes)
        );
        println!(
            "all snapshots, logical:    {}",
            bytes(st.total_logical_bytes)
        );
        println!("unique data (plaintext):   {}", bytes(st.unique_raw_bytes));
        println!(
            "unique data (stored):      {}",
            bytes(st.unique_stored_bytes)
        );
        println!("repository on disk:        {}", bytes(st.repository_bytes));
        println!("dedup ratio:               {:.2}x", st.dedup_ratio);
        println!("compression ratio:         {:.2}x", st.compression_ratio);
        println!("blobs / packs:             {} / {}", st.blobs, st.packs);
        println!("unused (prune reclaims):   {}", bytes(st.unused_bytes));
    }
    Ok(EXIT_OK)
}

fn unlock(g: &Global, remove_all: bool) -> Result<i32> {
    let repo = open(g)?;
    let n = cairn::lock::unlock(&repo, remove_all)?;
    if g.json {
        print_json(&json!({"removed_locks": n}))?;
    } else if !g.quiet {
        println!("removed {n} lock(s)");
    }
    Ok(EXIT_OK)
}

fn repair(g: &Global, c: &RepairCommand) -> Result<i32> {
    let mut repo = open(g)?;
    let _lock = lock(g, &repo, true)?;
    match c {
        RepairCommand::Index => {
            let r = cairn::repair::repair_index(&mut repo)?;
            for u in &r.unreadable {
                eprintln!("cairn: warning: {u}");
            }
            if g.json {
                print_json(&serde_json::to_value(&r)?)?;
            } else if !g.quiet {
                println!(
                    "rebuilt the index: {} packs, {} blobs (replaced {} index files)",
                    r.packs, r.blobs, r.old_index_files
                );
            }
        }
    }
    Ok(EXIT_OK)
}

/// Sleeps up to `d`, returning early once `done` is set (so finishing a
/// command never waits for a progress tick).
fn sleep_unless(done: &AtomicBool, d: std::time::Duration) {
    let step = std::time::Duration::from_millis(10);
    let start = Instant::now();
    while start.elapsed() < d && !done.load(Ordering::Relaxed) {
        std::thread::sleep(step);
    }
}
