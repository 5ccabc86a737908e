//! Text rendering, progress bars and JSON printing shared by the commands.
//! (The JSON shapes themselves are the library's: `cairn::commands::views`.)

use cairn::commands::ls::{Node, NodeKind};
use cairn::commands::progress::{Progress, Status};
use cairn::commands::snapshots::DatabaseRecord;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;
use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Human size with binary units: `1.5 MiB`.
pub fn bytes(n: u64) -> String {
    indicatif::HumanBytes(n).to_string()
}

/// A duration in seconds, roughly (`45s`, `12m`, `5h`, `3d`).
pub fn age(secs: i64) -> String {
    let s = secs.max(0);
    match s {
        0..=119 => format!("{s}s"),
        120..=7199 => format!("{}m", s / 60),
        7200..=172_799 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// Prints one JSON document on its own line.
pub fn print_json(v: &serde_json::Value) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    serde_json::to_writer(&mut out, v)?;
    writeln!(out)?;
    Ok(())
}

/// A name for a terminal: control characters (which could move the cursor,
/// recolour the screen or fake a line break) are shown as escapes such as
/// `\n`, `\e` or `\x7f`. JSON output is exact instead.
pub fn escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x1b' => out.push_str("\\e"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
}

/// One-line summary of a database record.
pub fn database_summary(d: &DatabaseRecord) -> String {
    format!(
        "sqlite: {} pages of {} B, {} {}, {} tables / {} rows, schema {}",
        d.page_count,
        d.page_size,
        d.check.pragma(),
        if d.check_ok { "ok" } else { "FAILED" },
        d.tables.len(),
        d.tables.iter().map(|t| t.rows).sum::<u64>(),
        &hex::encode(d.schema_hash)[..8]
    )
}

/// `database PATH: summary` for text output.
pub fn database_line(d: &DatabaseRecord) -> String {
    format!("database {}: {}", d.path, database_summary(d))
}

/// An `ls -l` style line for a node shown as `name` (already escaped).
pub fn long_line(n: &Node, name: &str) -> String {
    let link = if n.kind == NodeKind::Symlink {
        format!(" -> {}", escape(&String::from_utf8_lossy(&n.link_target)))
    } else {
        String::new()
    };
    format!(
        "{} {:>5} {:>5} {:>12} {} {}{}",
        mode_string(n),
        n.uid,
        n.gid,
        n.size,
        cairn::commands::views::node_mtime(n),
        name,
        link
    )
}

/// `ls -l` style permission string.
pub fn mode_string(n: &Node) -> String {
    let t = match n.kind {
        NodeKind::Dir => 'd',
        NodeKind::Symlink => 'l',
        NodeKind::Fifo => 'p',
        NodeKind::CharDevice => 'c',
        NodeKind::BlockDevice => 'b',
        NodeKind::Socket => 's',
        NodeKind::File => '-',
    };
    let mut s = String::from(t);
    for shift in [6u32, 3, 0] {
        let bits = (n.mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(if bits & 1 != 0 { 'x' } else { '-' });
    }
    s
}

/// A bar on stderr when it is a terminal and output is for humans.
fn progress_bar(enabled: bool, total: Option<u64>) -> ProgressBar {
    if !enabled || !std::io::stderr().is_terminal() {
        return ProgressBar::with_draw_target(None, ProgressDrawTarget::hidden());
    }
    let pb = match total {
        Some(t) => {
            let pb = ProgressBar::new(t);
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {bytes_per_sec} ETA {eta} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            pb
        }
        None => {
            let pb = ProgressBar::new_spinner();
            pb.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {bytes} {bytes_per_sec} {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            pb
        }
    };
    pb.enable_steady_tick(Duration::from_millis(200));
    pb
}

/// Which command a [`Display`] reports for (their status lines differ).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Activity {
    /// `backup`: files and bytes read, errors.
    Backup,
    /// `restore`: files and bytes written.
    Restore,
    /// `copy`: snapshots and their bytes copied.
    Copy,
}

/// Progress shown to a person (a bar on a terminal) or to a program (a JSON
/// status line every second with `--json`), or nothing with `--quiet`.
pub struct Display {
    activity: Activity,
    bar: ProgressBar,
    json: bool,
    last_json: Mutex<Option<Instant>>,
}

impl Display {
    /// A display for `activity`, as the global flags ask.
    pub fn new(activity: Activity, json: bool, quiet: bool) -> Display {
        Display {
            activity,
            bar: progress_bar(!json && !quiet, Some(0)),
            json: json && !quiet,
            last_json: Mutex::new(Some(Instant::now())),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }

    fn json_status(&self, s: &Status) -> serde_json::Value {
        match self.activity {
            Activity::Backup => json!({
                "message_type": "status",
                "seconds_elapsed": s.elapsed.as_secs(),
                "percent_done": s.fraction_done(),
                "total_files": s.total_files,
                "files_done": s.files_done,
                "total_bytes": s.total_bytes,
                "bytes_done": s.bytes_done,
                "error_count": s.errors,
            }),
            Activity::Copy => json!({
                "message_type": "status",
                "seconds_elapsed": s.elapsed.as_secs(),
                "percent_done": s.fraction_done(),
                "snapshots_copied": s.files_done,
                "total_snapshots": s.total_files,
            }),
            Activity::Restore => json!({
                "message_type": "status",
                "seconds_elapsed": s.elapsed.as_secs(),
                "percent_done": s.fraction_done(),
                "files_restored": s.files_done,
                "total_bytes": s.total_bytes,
                "bytes_restored": s.bytes_done,
            }),
        }
    }
}

impl Progress for Display {
    fn wants_totals(&self) -> bool {
        !self.bar.is_hidden() || self.json
    }

    fn update(&self, s: &Status) {
        self.bar.set_length(s.total_bytes.max(s.bytes_done));
        self.bar.set_position(s.bytes_done);
        self.bar.set_message(match self.activity {
            Activity::Backup => format!(
                "{}/{} files{}, {} errors",
                s.files_done,
                s.total_files,
                if s.totals_known { "" } else { " (scanning)" },
                s.errors
            ),
            Activity::Restore => format!("{} files", s.files_done),
            Activity::Copy => format!("{}/{} snapshots", s.files_done, s.total_files),
        });
        if self.json {
            let mut last = self.last_json.lock().unwrap_or_else(|e| e.into_inner());
            if last.is_some_and(|t| t.elapsed() >= Duration::from_secs(1)) {
                *last = Some(Instant::now());
                let _ = print_json(&self.json_status(s));
            }
        }
    }
}
