//! Dedup benchmark for hourly snapshots of a live-style SQLite database.
//!
//! Builds a 300+ MB "operations app" database deterministically (workflows,
//! validation results, recommendations, an audit log), then applies twelve
//! hourly change rounds (0.5% of rows updated, 0.3% added, 0.05% deleted,
//! 2000 audit rows appended) and after each round:
//!
//! * counts the pages that changed since the previous hour (page by page)
//!   and their compressed size (zstd level 3, all changed pages as one
//!   stream, and page by page);
//! * backs the database up with cairn (`backup --sqlite`, one repository per
//!   chunking variant given) and with restic and borg when installed, and
//!   measures how many bytes each repository grew by.
//!
//! It prints a table per hour and the medians over the twelve hourly
//! snapshots. Run it through `benches/sqlite_dedup.sh`, which builds cairn
//! in release mode first:
//!
//! ```text
//! cargo run --release --example sqlite_dedup -- --cairn target/release/cairn \
//!     [--dir /tmp/cairn-sqlite-dedup] [--scale 1.0] [--hours 12] \
//!     [--variants fixed:1,fixed:2,fixed:4,cdc:1:2:8] [--no-restic] [--no-borg] \
//!     [--keep-copies]
//! ```
//!
//! `--variants ''` runs no cairn variant; `--keep-copies` keeps the database
//! of every hour as `hour-NN.db` in the work directory (for offline
//! measurements of page compression).
//!
//! ```text
//! ```

use rusqlite::{Connection, params};
use std::path::{Path, PathBuf};
use std::process::Command;

/// SplitMix64: a small deterministic generator (no dependency, fixed output).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn pick<'a>(&mut self, xs: &[&'a str]) -> &'a str {
        xs[self.below(xs.len() as u64) as usize]
    }
}

const WORDS: &[&str] = &[
    "order",
    "invoice",
    "customer",
    "shipment",
    "validation",
    "threshold",
    "warehouse",
    "pending",
    "approved",
    "rejected",
    "retry",
    "timeout",
    "schema",
    "field",
    "missing",
    "format",
    "region",
    "north",
    "south",
    "east",
    "west",
    "priority",
    "high",
    "low",
    "medium",
    "batch",
    "import",
    "export",
    "sync",
    "ledger",
    "account",
    "balance",
    "discount",
    "tax",
    "rate",
    "currency",
    "EUR",
    "USD",
    "supplier",
    "contract",
    "renewal",
    "expired",
    "active",
    "manual",
    "review",
    "escalate",
    "queue",
    "worker",
    "node",
    "latency",
    "p99",
    "error",
    "warning",
    "info",
    "rule",
    "check",
    "passed",
    "failed",
    "score",
    "model",
    "recommend",
    "increase",
    "decrease",
    "stock",
    "reorder",
];
const STATUS: &[&str] = &["new", "running", "waiting", "done", "failed", "cancelled"];
const ACTORS: &[&str] = &[
    "alice",
    "bob",
    "carol",
    "dave",
    "erin",
    "svc-sync",
    "svc-import",
];

fn sentence(r: &mut Rng, base: usize, spread: u64) -> String {
    let words = base + r.below(spread) as usize;
    let mut s = String::new();
    for i in 0..words {
        if i > 0 {
            s.push(' ');
        }
        s.push_str(r.pick(WORDS));
        if r.below(7) == 0 {
            s.push_str(&format!(" {}", r.below(100_000)));
        }
    }
    s
}

fn payload(r: &mut Rng) -> String {
    format!(
        "{{\"source\":\"{}\",\"region\":\"{}\",\"amount\":{}.{:02},\"lines\":{},\"note\":\"{}\"}}",
        r.pick(WORDS),
        r.pick(&["north", "south", "east", "west"]),
        r.below(100_000),
        r.below(100),
        r.below(40),
        sentence(r, 30, 30)
    )
}

struct Sizes {
    workflows: u64,
    validations: u64,
    recommendations: u64,
    audit: u64,
}

const T0: i64 = 1_790_000_000;

fn build(path: &Path, scale: f64, r: &mut Rng) -> rusqlite::Result<Sizes> {
    let _ = std::fs::remove_file(path);
    let c = Connection::open(path)?;
    c.execute_batch(
        "PRAGMA page_size = 4096; PRAGMA journal_mode = DELETE;
         CREATE TABLE workflows(id INTEGER PRIMARY KEY, name TEXT, status TEXT, owner TEXT,
             created_at INTEGER, updated_at INTEGER, payload TEXT);
         CREATE TABLE validation_results(id INTEGER PRIMARY KEY, workflow_id INTEGER, rule TEXT,
             passed INTEGER, details TEXT, checked_at INTEGER);
         CREATE TABLE recommendations(id INTEGER PRIMARY KEY, workflow_id INTEGER, score REAL,
             body TEXT, state TEXT, updated_at INTEGER);
         CREATE TABLE audit_log(id INTEGER PRIMARY KEY, ts INTEGER, actor TEXT, action TEXT,
             target TEXT, detail TEXT);
         CREATE INDEX workflows_status ON workflows(status, updated_at);
         CREATE INDEX validation_wf ON validation_results(workflow_id);
         CREATE INDEX recommendations_wf ON recommendations(workflow_id);
         CREATE INDEX audit_ts ON audit_log(ts);",
    )?;
    let n = |x: f64| (x * scale) as u64;
    let s = Sizes {
        workflows: n(200_000.0),
        validations: n(800_000.0),
        recommendations: n(300_000.0),
        audit: n(400_000.0),
    };
    c.execute_batch("BEGIN")?;
    {
        let mut st = c.prepare("INSERT INTO workflows VALUES (?1,?2,?3,?4,?5,?6,?7)")?;
        for i in 1..=s.workflows {
            let t = T0 + i as i64;
            st.execute(params![
                i as i64,
                format!("wf-{i}-{}", r.pick(WORDS)),
                r.pick(STATUS),
                r.pick(ACTORS),
                t,
                t,
                payload(r)
            ])?;
        }
        let mut st = c.prepare("INSERT INTO validation_results VALUES (?1,?2,?3,?4,?5,?6)")?;
        for i in 1..=s.validations {
            st.execute(params![
                i as i64,
                (1 + r.below(s.workflows)) as i64,
                format!("rule.{}.{}", r.pick(WORDS), r.pick(WORDS)),
                (r.below(5) != 0) as i64,
                sentence(r, 8, 12),
                T0 + i as i64
            ])?;
        }
        let mut st = c.prepare("INSERT INTO recommendations VALUES (?1,?2,?3,?4,?5,?6)")?;
        for i in 1..=s.recommendations {
            st.execute(params![
                i as i64,
                (1 + r.below(s.workflows)) as i64,
                r.below(1000) as f64 / 1000.0,
                sentence(r, 15, 20),
                r.pick(&["open", "accepted", "dismissed"]),
                T0 + i as i64
            ])?;
        }
        let mut st = c.prepare("INSERT INTO audit_log VALUES (?1,?2,?3,?4,?5,?6)")?;
        for i in 1..=s.audit {
            st.execute(params![
                i as i64,
                T0 + i as i64,
                r.pick(ACTORS),
                r.pick(&["create", "update", "delete", "approve", "login"]),
                format!("workflow/{}", 1 + r.below(s.workflows)),
                sentence(r, 6, 10)
            ])?;
        }
    }
    c.execute_batch("COMMIT")?;
    Ok(s)
}

/// One hour of application activity.
fn hour(path: &Path, h: u64, r: &mut Rng) -> rusqlite::Result<()> {
    let c = Connection::open(path)?;
    let t = T0 + 10_000_000 + h as i64 * 3600;
    let max = |table: &str| -> rusqlite::Result<u64> {
        c.query_row(&format!("SELECT max(id) FROM {table}"), [], |x| {
            x.get::<_, i64>(0)
        })
        .map(|v| v as u64)
    };
    let count = |table: &str| -> rusqlite::Result<u64> {
        c.query_row(&format!("SELECT count(*) FROM {table}"), [], |x| {
            x.get::<_, i64>(0)
        })
        .map(|v| v as u64)
    };
    let (wf, va, re, au) = (
        max("workflows")?,
        max("validation_results")?,
        max("recommendations")?,
        max("audit_log")?,
    );
    let total = count("workflows")?
        + count("validation_results")?
        + count("recommendations")?
        + count("audit_log")?;
    c.execute_batch("BEGIN")?;
    // 0.5% of rows updated, spread over the tables by size (not the append-only log).
    let updates = total * 5 / 1000;
    for _ in 0..updates {
        match r.below(13) {
            0..=1 => {
                c.execute(
                    "UPDATE workflows SET status = ?1, updated_at = ?2, payload = ?3 WHERE id = ?4",
                    params![r.pick(STATUS), t, payload(r), (1 + r.below(wf)) as i64],
                )?;
            }
            2..=9 => {
                c.execute(
                    "UPDATE validation_results SET passed = ?1, details = ?2, checked_at = ?3 WHERE id = ?4",
                    params![
                        (r.below(5) != 0) as i64,
                        sentence(r, 8, 12),
                        t,
                        (1 + r.below(va)) as i64
                    ],
                )?;
            }
            _ => {
                c.execute(
                    "UPDATE recommendations SET score = ?1, state = ?2, updated_at = ?3 WHERE id = ?4",
                    params![
                        r.below(1000) as f64 / 1000.0,
                        r.pick(&["open", "accepted", "dismissed"]),
                        t,
                        (1 + r.below(re)) as i64
                    ],
                )?;
            }
        }
    }
    // 0.3% added.
    let adds = total * 3 / 1000;
    let (mut nwf, mut nva, mut nre) = (wf, va, re);
    for _ in 0..adds {
        match r.below(13) {
            0..=1 => {
                nwf += 1;
                c.execute(
                    "INSERT INTO workflows VALUES (?1,?2,?3,?4,?5,?6,?7)",
                    params![
                        nwf as i64,
                        format!("wf-{nwf}-{}", r.pick(WORDS)),
                        "new",
                        r.pick(ACTORS),
                        t,
                        t,
                        payload(r)
                    ],
                )?;
            }
            2..=9 => {
                nva += 1;
                c.execute(
                    "INSERT INTO validation_results VALUES (?1,?2,?3,?4,?5,?6)",
                    params![
                        nva as i64,
                        (1 + r.below(nwf)) as i64,
                        format!("rule.{}.{}", r.pick(WORDS), r.pick(WORDS)),
                        (r.below(5) != 0) as i64,
                        sentence(r, 8, 12),
                        t
                    ],
                )?;
            }
            _ => {
                nre += 1;
                c.execute(
                    "INSERT INTO recommendations VALUES (?1,?2,?3,?4,?5,?6)",
                    params![
                        nre as i64,
                        (1 + r.below(nwf)) as i64,
                        r.below(1000) as f64 / 1000.0,
                        sentence(r, 15, 20),
                        "open",
                        t
                    ],
                )?;
            }
        }
    }
    // Some deleted (0.05%).
    for _ in 0..total * 5 / 10_000 {
        if r.below(2) == 0 {
            c.execute(
                "DELETE FROM validation_results WHERE id = ?1",
                params![(1 + r.below(va)) as i64],
            )?;
        } else {
            c.execute(
                "DELETE FROM recommendations WHERE id = ?1",
                params![(1 + r.below(re)) as i64],
            )?;
        }
    }
    // About 2000 audit rows.
    for i in 0..2000u64 {
        c.execute(
            "INSERT INTO audit_log VALUES (?1,?2,?3,?4,?5,?6)",
            params![
                (au + 1 + i) as i64,
                t + i as i64,
                r.pick(ACTORS),
                r.pick(&["create", "update", "delete", "approve", "login"]),
                format!("workflow/{}", 1 + r.below(nwf)),
                sentence(r, 6, 10)
            ],
        )?;
    }
    c.execute_batch("COMMIT")?;
    Ok(())
}

/// Changed pages between two copies: (count, pages total, zstd-3 size of
/// the changed pages as one stream, sum of zstd-3 sizes page by page).
fn changed_pages(old: &Path, new: &Path, page: usize) -> (u64, u64, u64, u64) {
    let a = std::fs::read(old).unwrap_or_default();
    let b = std::fs::read(new).expect("read db");
    let mut changed = Vec::new();
    let mut count = 0;
    let mut per_page = 0u64;
    for (i, p) in b.chunks(page).enumerate() {
        let off = i * page;
        if a.get(off..off + p.len()) != Some(p) {
            count += 1;
            changed.extend_from_slice(p);
            per_page += zstd::bulk::compress(p, 3).expect("zstd").len() as u64;
        }
    }
    let stream = zstd::bulk::compress(&changed, 3).expect("zstd").len() as u64;
    (count, b.len().div_ceil(page) as u64, stream, per_page)
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            match e.file_type() {
                Ok(t) if t.is_dir() => total += dir_size(&e.path()),
                Ok(t) if t.is_file() => total += e.metadata().map(|m| m.len()).unwrap_or(0),
                _ => {}
            }
        }
    }
    total
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    if !out.status.success() {
        panic!(
            "{cmd:?} failed: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

fn have(tool: &str, version_arg: &str) -> bool {
    Command::new(tool)
        .arg(version_arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

trait Tool {
    fn name(&self) -> String;
    fn backup(&self, db: &Path);
    fn repo(&self) -> PathBuf;
}

struct Cairn {
    bin: PathBuf,
    repo: PathBuf,
    variant: String,
}

impl Cairn {
    fn cmd(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.env("CAIRN_PASSWORD", "bench").arg("-r").arg(&self.repo);
        c
    }
    fn init(&self) {
        let _ = std::fs::remove_dir_all(&self.repo);
        run(self.cmd().args([
            "init",
            "--kdf-memory",
            "1024",
            "--kdf-iterations",
            "1",
            "--db-chunking",
            &self.variant,
        ]));
    }
}

impl Tool for Cairn {
    fn name(&self) -> String {
        format!("cairn {}", self.variant)
    }
    fn backup(&self, db: &Path) {
        run(self
            .cmd()
            .args(["backup", "-q", "--sqlite-quick", "--sqlite"])
            .arg(db));
    }
    fn repo(&self) -> PathBuf {
        self.repo.clone()
    }
}

struct Restic {
    repo: PathBuf,
}

impl Tool for Restic {
    fn name(&self) -> String {
        "restic".into()
    }
    fn backup(&self, db: &Path) {
        run(Command::new("restic")
            .env("RESTIC_PASSWORD", "bench")
            .arg("-r")
            .arg(&self.repo)
            .args(["backup", "-q"])
            .arg(db));
    }
    fn repo(&self) -> PathBuf {
        self.repo.clone()
    }
}

struct Borg {
    repo: PathBuf,
    n: std::cell::Cell<u32>,
}

impl Tool for Borg {
    fn name(&self) -> String {
        "borg".into()
    }
    fn backup(&self, db: &Path) {
        let n = self.n.get();
        self.n.set(n + 1);
        run(Command::new("borg")
            .env("BORG_PASSPHRASE", "bench")
            .env("BORG_UNKNOWN_UNENCRYPTED_REPO_ACCESS_IS_OK", "yes")
            .env("BORG_RELOCATED_REPO_ACCESS_IS_OK", "yes")
            .arg("create")
            .arg(format!("{}::h{n}", self.repo.display()))
            .arg(db));
    }
    fn repo(&self) -> PathBuf {
        self.repo.clone()
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    if v.is_empty() {
        return 0;
    }
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2
    }
}

fn mib(b: u64) -> String {
    format!("{:.2} MiB", b as f64 / (1024.0 * 1024.0))
}

fn main() {
    let mut dir = std::env::temp_dir().join("cairn-sqlite-dedup");
    let mut cairn = PathBuf::from("target/release/cairn");
    let mut scale = 1.0f64;
    let mut hours = 12u64;
    let mut variants = vec!["fixed:1".to_string()];
    let (mut use_restic, mut use_borg) = (true, true);
    let mut keep_copies = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut val = || args.next().unwrap_or_else(|| panic!("{a} needs a value"));
        match a.as_str() {
            "--dir" => dir = PathBuf::from(val()),
            "--cairn" => cairn = PathBuf::from(val()),
            "--scale" => scale = val().parse().expect("--scale"),
            "--hours" => hours = val().parse().expect("--hours"),
            "--variants" => {
                variants = val()
                    .split(',')
                    .filter(|v| !v.is_empty())
                    .map(str::to_string)
                    .collect()
            }
            "--no-restic" => use_restic = false,
            "--no-borg" => use_borg = false,
            "--keep-copies" => keep_copies = true,
            other => panic!("unknown argument {other}"),
        }
    }
    std::fs::create_dir_all(&dir).expect("work dir");
    let db = dir.join("app.db");
    let prev = dir.join("prev.db");
    let mut rng = Rng(0x5eed_cafe);
    let t = std::time::Instant::now();
    let sizes = build(&db, scale, &mut rng).expect("build database");
    println!(
        "built {} ({} workflows, {} validation results, {} recommendations, {} audit rows): {} in {:.0}s",
        db.display(),
        sizes.workflows,
        sizes.validations,
        sizes.recommendations,
        sizes.audit,
        mib(std::fs::metadata(&db).map(|m| m.len()).unwrap_or(0)),
        t.elapsed().as_secs_f64()
    );

    let mut tools: Vec<Box<dyn Tool>> = Vec::new();
    for v in &variants {
        let c = Cairn {
            bin: cairn.clone(),
            repo: dir.join(format!("cairn-{}", v.replace(':', "-"))),
            variant: v.clone(),
        };
        c.init();
        tools.push(Box::new(c));
    }
    if use_restic && have("restic", "version") {
        let repo = dir.join("restic");
        let _ = std::fs::remove_dir_all(&repo);
        run(Command::new("restic")
            .env("RESTIC_PASSWORD", "bench")
            .arg("-r")
            .arg(&repo)
            .args(["init", "-q"]));
        tools.push(Box::new(Restic { repo }));
    } else if use_restic {
        println!("restic not installed: skipped");
    }
    if use_borg && have("borg", "--version") {
        let repo = dir.join("borg");
        let _ = std::fs::remove_dir_all(&repo);
        run(Command::new("borg")
            .env("BORG_PASSPHRASE", "bench")
            .args(["init", "-e", "repokey"])
            .arg(&repo));
        tools.push(Box::new(Borg {
            repo,
            n: std::cell::Cell::new(0),
        }));
    } else if use_borg {
        println!("borg not installed: skipped");
    }

    let mut added: Vec<Vec<u64>> = vec![Vec::new(); tools.len()];
    let mut changed_stream = Vec::new();
    let mut changed_per_page = Vec::new();
    print!(
        "{:>4} {:>8} {:>8} {:>12}",
        "hour", "changed", "pages", "chg zstd"
    );
    for tool in &tools {
        print!(" {:>16}", tool.name());
    }
    println!();
    for h in 0..=hours {
        if h > 0 {
            hour(&db, h, &mut rng).expect("apply changes");
        }
        let (n, total, stream, per_page) = changed_pages(&prev, &db, 4096);
        std::fs::copy(&db, &prev).expect("copy");
        if keep_copies {
            std::fs::copy(&db, dir.join(format!("hour-{h:02}.db"))).expect("copy");
        }
        print!("{h:>4} {n:>8} {total:>8} {:>12}", mib(stream));
        for (i, tool) in tools.iter().enumerate() {
            let before = dir_size(&tool.repo());
            tool.backup(&db);
            let delta = dir_size(&tool.repo()).saturating_sub(before);
            print!(" {:>16}", mib(delta));
            if h > 0 {
                added[i].push(delta);
            }
        }
        println!();
        if h > 0 {
            changed_stream.push(stream);
            changed_per_page.push(per_page);
        }
    }
    let ms = median(changed_stream);
    println!();
    println!(
        "median changed pages, compressed: {} as one zstd-3 stream, {} page by page",
        mib(ms),
        mib(median(changed_per_page))
    );
    let restic = tools
        .iter()
        .position(|t| t.name() == "restic")
        .map(|i| median(added[i].clone()));
    for (i, tool) in tools.iter().enumerate() {
        let m = median(added[i].clone());
        let vs_restic = match restic {
            Some(r) if r > 0 => format!(", {:.3}x restic", m as f64 / r as f64),
            _ => String::new(),
        };
        println!(
            "{:<18} median added per hourly snapshot {:>12} = {:.2}x changed pages compressed{}",
            tool.name(),
            mib(m),
            m as f64 / ms.max(1) as f64,
            vs_restic
        );
    }
}
