//! Commands that browse history: `snapshots`, `find`, `diff`, `tag`.

use super::EXIT_OK;
use super::args::{DiffArgs, FindArgs, SnapshotsArgs, TagArgs};
use super::commands::{Ctx, filter, parse_time, tag_lists};
use super::output::{self, bytes, print_json};
use anyhow::{Result, bail};
use cairn::Id;
use cairn::commands::diff::{DiffOptions, DiffReport, Side};
use cairn::commands::find::{FindOptions, FindWhat, Hit, Which};
use cairn::commands::select::SnapshotSelector;
use cairn::commands::snapshots::Snapshot;
use cairn::commands::snapshots::{GroupBy, GroupKey, ListOptions};
use cairn::commands::tag::TagChange;
use cairn::commands::{self as cmd, views};
use serde_json::{Value, json};
use std::io::Write;
use std::path::PathBuf;

pub(super) fn snapshots(ctx: &Ctx, a: &SnapshotsArgs) -> Result<i32> {
    let group_by = a
        .group_by
        .as_deref()
        .map(|g| g.parse::<GroupBy>().map_err(anyhow::Error::msg))
        .transpose()?;
    if a.latest == Some(0) {
        bail!("--latest needs at least 1");
    }
    let opts = ListOptions {
        filter: filter(&a.filter),
        latest: a.latest,
        group_by,
    };
    let repo = ctx.open()?;
    let groups = cmd::snapshots::list_grouped(&repo, &opts)?;
    let list_json = |list: &[(Id, Snapshot)]| {
        Value::Array(
            list.iter()
                .map(|(id, s)| views::snapshot_json(id, s))
                .collect(),
        )
    };
    if ctx.g.json {
        let doc = match group_by {
            None => list_json(&groups[0].snapshots),
            Some(_) => Value::Array(
                groups
                    .iter()
                    .map(|g| json!({"group_key": g.key, "snapshots": list_json(&g.snapshots)}))
                    .collect(),
            ),
        };
        print_json(&doc)?;
        return Ok(EXIT_OK);
    }
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let mut total = 0;
    for (i, g) in groups.iter().enumerate() {
        if group_by.is_some() {
            if i > 0 {
                writeln!(out)?;
            }
            writeln!(out, "snapshots for {}:", group_title(&g.key))?;
        }
        print_table(&mut out, &g.snapshots, a.compact)?;
        total += g.snapshots.len();
    }
    if group_by.is_some() {
        writeln!(out, "\n{total} snapshots in {} groups", groups.len())?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

/// `(host app01, paths [/srv, /etc], tags [nightly])`.
fn group_title(k: &GroupKey) -> String {
    let mut parts = Vec::new();
    if let Some(h) = &k.hostname {
        parts.push(format!("host {}", output::escape(h)));
    }
    if let Some(p) = &k.paths {
        parts.push(format!("paths [{}]", output::escape(&p.join(", "))));
    }
    if let Some(t) = &k.tags {
        parts.push(format!("tags [{}]", output::escape(&t.join(", "))));
    }
    format!("({})", parts.join(", "))
}

/// Widest a column of the snapshot table is padded to.
const MAX_COLUMN: usize = 60;

/// The snapshot table, columns as wide as their widest value (up to
/// [`MAX_COLUMN`]).
fn print_table(out: &mut dyn Write, list: &[(Id, Snapshot)], compact: bool) -> Result<()> {
    let rows: Vec<[String; 6]> = list
        .iter()
        .map(|(id, s)| {
            [
                id.short(),
                views::local_time(s),
                output::escape(&s.hostname),
                output::escape(&s.tags.join(",")),
                bytes(s.summary.total_bytes),
                output::escape(&s.paths.join(", ")),
            ]
        })
        .collect();
    let head = ["ID", "Time", "Host", "Tags", "Size", "Paths"];
    let columns = if compact { 4 } else { 6 };
    // A column is as wide as its widest value up to a limit: a longer
    // value (a snapshot with a megabyte of tags) overflows its own row
    // instead of padding every other row to its width.
    let width = |c: usize| {
        rows.iter()
            .map(|r| r[c].chars().count().min(MAX_COLUMN))
            .chain([head[c].len()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..columns).map(width).collect();
    let line = |cells: &[&str]| {
        let mut l = String::new();
        for (c, cell) in cells.iter().enumerate().take(columns) {
            if c > 0 {
                l.push_str("  ");
            }
            let pad = widths[c].saturating_sub(cell.chars().count());
            if c == 4 {
                l.push_str(&" ".repeat(pad));
                l.push_str(cell);
            } else if c + 1 == columns {
                l.push_str(cell);
            } else {
                l.push_str(cell);
                l.push_str(&" ".repeat(pad));
            }
        }
        l
    };
    let header = line(&head);
    let rule = "-".repeat(header.chars().count().max(40));
    writeln!(out, "{header}")?;
    writeln!(out, "{rule}")?;
    for ((_, s), r) in list.iter().zip(&rows) {
        let cells: Vec<&str> = r.iter().map(String::as_str).collect();
        writeln!(out, "{}", line(&cells))?;
        if !compact {
            for d in &s.databases {
                writeln!(
                    out,
                    "          {}",
                    output::escape(&output::database_line(d))
                )?;
            }
        }
    }
    writeln!(out, "{rule}")?;
    writeln!(out, "{} snapshots", list.len())?;
    Ok(())
}

pub(super) fn find(ctx: &Ctx, a: &FindArgs) -> Result<i32> {
    let what = match (a.blob, a.tree, a.pack) {
        (true, _, _) => FindWhat::Blobs,
        (_, true, _) => FindWhat::Trees,
        (_, _, true) => FindWhat::Packs,
        _ => FindWhat::Paths,
    };
    let which = match (&a.at, a.snapshots.is_empty()) {
        (Some(t), _) => {
            let t = parse_time(t)?;
            Which::At(t.timestamp(), t.timestamp_subsec_nanos())
        }
        (None, false) => Which::Ids(a.snapshots.clone()),
        (None, true) => Which::All,
    };
    let opts = FindOptions {
        patterns: a.patterns.clone(),
        what,
        ignore_case: a.ignore_case,
        oldest: a
            .oldest
            .as_deref()
            .map(parse_time)
            .transpose()?
            .map(|t| t.timestamp()),
        newest: a
            .newest
            .as_deref()
            .map(parse_time)
            .transpose()?
            .map(|t| t.timestamp()),
        which,
        filter: filter(&a.filter),
        oldest_first: a.reverse,
    };
    let repo = ctx.open()?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let json = ctx.g.json;
    let mut first = true;
    if json {
        write!(out, "[")?;
    }
    let io = |e: std::io::Error| cairn::Error::io("standard output", e);
    let report = cmd::find::find(&repo, &opts, &mut |id, s, hits| {
        if hits.is_empty() {
            return Ok(());
        }
        if json {
            let doc = json!({
                "snapshot": id.to_hex(),
                "short_id": id.short(),
                "time": views::snapshot_json(id, s)["time"],
                "hits": hits.len(),
                "matches": hits.iter().map(hit_json).collect::<Vec<_>>(),
            });
            let sep = if first { "" } else { "," };
            first = false;
            write!(out, "{sep}{doc}").map_err(io)?;
            return Ok(());
        }
        writeln!(
            out,
            "Found {} in snapshot {} from {}",
            if what == FindWhat::Paths {
                "matching entries"
            } else {
                "users"
            },
            id.short(),
            views::local_time(s)
        )
        .map_err(io)?;
        for h in hits {
            let name = output::escape(&h.path.to_string_lossy());
            let line = if a.long {
                output::long_line(&h.node, &name)
            } else {
                name
            };
            let objects: Vec<String> = h
                .objects
                .iter()
                .enumerate()
                .map(|(i, o)| match h.packs.get(i) {
                    Some(p) => format!("{} {} in pack {}", o.kind(), o.id().short(), p.short()),
                    None => format!("{} {}", o.kind(), o.id().short()),
                })
                .collect();
            if objects.is_empty() {
                writeln!(out, "{line}").map_err(io)?;
            } else {
                writeln!(out, "{line}  ({})", objects.join(", ")).map_err(io)?;
            }
        }
        writeln!(out).map_err(io)?;
        Ok(())
    })?;
    if json {
        writeln!(out, "]")?;
    }
    out.flush()?;
    drop(out);
    if !json && !ctx.g.quiet {
        err!(
            "cairn: {} matches in {} snapshots searched",
            report.hits,
            report.snapshots
        );
    }
    Ok(EXIT_OK)
}

fn hit_json(h: &Hit) -> Value {
    let mut v = views::node_json(&h.path.to_string_lossy(), &h.node);
    if !h.objects.is_empty() {
        v["objects"] = Value::Array(
            h.objects
                .iter()
                .enumerate()
                .map(|(i, o)| {
                    json!({
                        "type": o.kind(),
                        "id": o.id().to_hex(),
                        "pack": h.packs.get(i).map(|p| p.to_hex()),
                    })
                })
                .collect(),
        );
    }
    v
}

/// Splits `SNAPSHOT[:PATH]`.
fn side_of(spec: &str, ctx_filter: &cairn::repository::SnapshotFilter) -> Result<Side> {
    let (id, path) = match spec.split_once(':') {
        Some((id, path)) => (id, PathBuf::from(if path.is_empty() { "/" } else { path })),
        None => (spec, PathBuf::from("/")),
    };
    Ok(Side {
        selector: SnapshotSelector::new(Some(id), None, ctx_filter.clone())?,
        path,
    })
}

pub(super) fn diff(ctx: &Ctx, a: &DiffArgs) -> Result<i32> {
    let f = filter(&a.filter);
    let mut sides = Vec::new();
    for t in &a.at {
        sides.push(Side {
            selector: SnapshotSelector::new(None, Some(parse_time(t)?), f.clone())?,
            path: PathBuf::from("/"),
        });
    }
    for s in &a.snapshots {
        sides.push(side_of(s, &f)?);
    }
    if sides.len() != 2 {
        bail!(
            "diff compares two snapshots: give two (ids, \"latest\", or --at TIME), got {}",
            sides.len()
        );
    }
    let opts = DiffOptions {
        metadata: a.metadata,
    };
    let repo = ctx.open()?;
    let json = ctx.g.json;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let io = |e: std::io::Error| cairn::Error::io("standard output", e);
    let report = cmd::diff::diff(&repo, &sides[0], &sides[1], &opts, &mut |e| {
        let dir =
            e.new.or(e.old).is_some_and(|n| n.is_dir()) && e.path != std::path::Path::new("/");
        let path = e.path.to_string_lossy();
        if json {
            let doc = json!({
                "message_type": "change",
                "path": if dir { format!("{path}/") } else { path.to_string() },
                "modifier": e.change.mark().to_string(),
            });
            writeln!(out, "{doc}").map_err(io)?;
        } else {
            let shown = output::escape(&path);
            let slash = if dir { "/" } else { "" };
            writeln!(out, "{}    {shown}{slash}", e.change.mark()).map_err(io)?;
        }
        Ok(())
    })?;
    if json {
        writeln!(out, "{}", diff_json(&report))?;
    } else {
        print_diff_totals(&mut out, &report)?;
    }
    out.flush()?;
    Ok(EXIT_OK)
}

fn diff_json(r: &DiffReport) -> Value {
    let s = &r.stats;
    json!({
        "message_type": "statistics",
        "source_snapshot": r.old.0.to_hex(),
        "target_snapshot": r.new.0.to_hex(),
        "changed_files": s.files_changed,
        "type_changed": s.type_changed,
        "metadata_changed": s.metadata_changed,
        "added": {
            "files": s.files_new,
            "dirs": s.dirs_new,
            "others": s.others_new,
            "data_blobs": s.data_blobs_new,
            "tree_blobs": s.tree_blobs_new,
            "bytes": s.bytes_added,
        },
        "removed": {
            "files": s.files_removed,
            "dirs": s.dirs_removed,
            "others": s.others_removed,
            "data_blobs": s.data_blobs_removed,
            "tree_blobs": s.tree_blobs_removed,
            "bytes": s.bytes_removed,
        },
        "databases": r.databases,
    })
}

fn print_diff_totals(out: &mut dyn Write, r: &DiffReport) -> Result<()> {
    let s = &r.stats;
    writeln!(
        out,
        "\ncomparing snapshot {} ({}) with {} ({})",
        r.old.0.short(),
        views::local_time(&r.old.1),
        r.new.0.short(),
        views::local_time(&r.new.1)
    )?;
    writeln!(
        out,
        "Files:       {:>5} new, {:>5} removed, {:>5} changed",
        s.files_new, s.files_removed, s.files_changed
    )?;
    writeln!(
        out,
        "Dirs:        {:>5} new, {:>5} removed",
        s.dirs_new, s.dirs_removed
    )?;
    writeln!(
        out,
        "Others:      {:>5} new, {:>5} removed",
        s.others_new, s.others_removed
    )?;
    if s.type_changed > 0 || s.metadata_changed > 0 {
        writeln!(
            out,
            "Changed:     {:>5} type, {:>5} metadata only",
            s.type_changed, s.metadata_changed
        )?;
    }
    writeln!(
        out,
        "Data Blobs:  {:>5} new, {:>5} removed",
        s.data_blobs_new, s.data_blobs_removed
    )?;
    writeln!(
        out,
        "Tree Blobs:  {:>5} new, {:>5} removed",
        s.tree_blobs_new, s.tree_blobs_removed
    )?;
    writeln!(out, "  Added:   {}", bytes(s.bytes_added))?;
    writeln!(out, "  Removed: {}", bytes(s.bytes_removed))?;
    for d in &r.databases {
        let what = match d.status {
            "added" => "added".to_string(),
            "removed" => "removed".to_string(),
            _ if d.schema_changed => "schema changed".to_string(),
            _ => "row counts changed".to_string(),
        };
        writeln!(out, "\nDatabase {}: {what}", output::escape(&d.path))?;
        for c in &d.schema_changes {
            let sql = |s: &Option<String>| output::escape(s.as_deref().unwrap_or(""));
            match (&c.old_sql, &c.new_sql) {
                (None, Some(_)) => writeln!(out, "  + {} {}: {}", c.kind, c.name, sql(&c.new_sql))?,
                (Some(_), None) => writeln!(out, "  - {} {}: {}", c.kind, c.name, sql(&c.old_sql))?,
                _ => {
                    writeln!(out, "  M {} {}:", c.kind, c.name)?;
                    writeln!(out, "      was: {}", sql(&c.old_sql))?;
                    writeln!(out, "      now: {}", sql(&c.new_sql))?;
                }
            }
        }
        if let Some(note) = &d.schema_note {
            writeln!(out, "  (schema objects {})", output::escape(note))?;
        }
        for t in &d.tables {
            let name = output::escape(&t.name);
            let line = match (t.old_rows, t.new_rows) {
                (Some(o), Some(n)) => {
                    let delta = i128::from(n) - i128::from(o);
                    format!("  table {name}: {o} -> {n} rows ({delta:+})")
                }
                (None, Some(n)) => format!("  table {name}: new, {n} rows"),
                (Some(o), None) => format!("  table {name}: dropped ({o} rows)"),
                (None, None) => continue,
            };
            writeln!(out, "{line}")?;
        }
    }
    Ok(())
}

pub(super) fn tag(ctx: &Ctx, a: &TagArgs) -> Result<i32> {
    let split = |v: &[String]| -> Vec<String> { tag_lists(v).into_iter().flatten().collect() };
    let change = TagChange {
        add: split(&a.add),
        remove: split(&a.remove),
        set: (!a.set.is_empty()).then(|| split(&a.set)),
    };
    change.validate()?;
    let repo = ctx.open_to_delete()?;
    let r = cmd::tag::tag(&repo, &a.snapshots, &filter(&a.filter), &change)?;
    if ctx.g.json {
        print_json(&json!({
            "changed": r.changed.iter().map(|c| json!({
                "old": c.old.to_hex(),
                "new": c.new.to_hex(),
                "old_tags": c.old_tags,
                "new_tags": c.new_tags,
            })).collect::<Vec<_>>(),
            "unchanged": r.unchanged.iter().map(Id::to_hex).collect::<Vec<_>>(),
        }))?;
        return Ok(EXIT_OK);
    }
    if !ctx.g.quiet {
        for c in &r.changed {
            out!(
                "snapshot {} is now {}: tags [{}] -> [{}]",
                c.old.short(),
                c.new.short(),
                output::escape(&c.old_tags.join(",")),
                output::escape(&c.new_tags.join(","))
            );
        }
        out!(
            "changed the tags of {} snapshots ({} already as asked)",
            r.changed.len(),
            r.unchanged.len()
        );
    }
    Ok(EXIT_OK)
}
