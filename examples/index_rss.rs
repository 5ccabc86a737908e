//! Peak memory of the blob index a backup holds, for N synthetic blobs.
//!
//! ```text
//! cargo run --release --example index_rss                  # 10M blobs, real repository
//! cargo run --release --example index_rss -- 1_000_000
//! cargo run --release --example index_rss -- 10000000 --mode blobset
//! ```
//!
//! Modes:
//!
//! * `repo` (default): the figure the issue asks for. Writes a throw-away
//!   repository whose index files list N blobs (data blobs in packs of 16,
//!   as 1 MiB chunks fill 16 MiB packs; 1% tree blobs in their own packs;
//!   index files of [`INDEX_EVERY`] packs each, as backups write them, or of
//!   [`INDEX_FILE_BLOBS`] blobs with `--layout compact`, as prune writes
//!   them). Then a child process opens the repository and calls
//!   [`Repository::with_backup_index`] exactly as `cairn backup` does,
//!   and reports its peak RSS (VmHWM from `/proc/self/status`). The index
//!   files take about 45 bytes per blob on disk (450 MB for 10M), in a
//!   temporary directory under `--dir` (default: the system temp dir).
//! * `blobset`: only the in-memory structure a backup deduplicates against
//!   ([`BlobSet`]), filled with N random ids, in this process.
//! * `index`: the full location index ([`Index`]) for comparison.
//! * `repo-full`: like `repo`, but the child calls [`Repository::with_full_index`]
//!   (the full index that restore, ls, dump, check, stats and prune load).
//!
//! To measure a new structure, add a mode next to `blobset`; `repo` mode
//! follows whatever `with_backup_index` builds.

use cairn::Id;
use cairn::backend::{FileKind, Handle, LocalBackend};
use cairn::format::blob::BlobType;
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::pack::PackEntry;
use cairn::repository::index::{BlobSet, INDEX_FILE_BLOBS, Index};
use cairn::repository::packer::INDEX_EVERY;
use cairn::repository::{InitOptions, Repository};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const PASSWORD: &[u8] = b"index-rss-bench";
/// Data blobs per pack (16 MiB packs of ~1 MiB chunks).
const DATA_PER_PACK: usize = 16;
/// Tree blobs per pack (small blobs).
const TREES_PER_PACK: usize = 4096;

/// splitmix64, deterministic and fast.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn id(&mut self) -> Id {
        let mut b = [0u8; 32];
        for c in b.chunks_exact_mut(8) {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        Id(b)
    }
}

/// A field of `/proc/self/status` in KiB (VmHWM, VmRSS).
fn status_kib(field: &str) -> u64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    s.lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

/// Resets VmHWM to the current RSS (Linux >= 4.0); false if not possible.
fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

fn usage() -> ! {
    eprintln!(
        "usage: index_rss [N] [--mode repo|repo-full|blobset|index] [--layout backup|compact] \
         [--tree-percent P] [--dir DIR] [--keep]\n\
         N defaults to 10_000_000"
    );
    std::process::exit(2)
}

struct Args {
    n: usize,
    mode: String,
    layout: String,
    tree_percent: f64,
    dir: Option<PathBuf>,
    keep: bool,
    load_child: Option<PathBuf>,
    full: bool,
}

fn parse_args() -> Args {
    let mut a = Args {
        n: 10_000_000,
        mode: "repo".into(),
        layout: "backup".into(),
        tree_percent: 1.0,
        dir: None,
        keep: false,
        load_child: None,
        full: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(arg) = it.next() {
        let mut val = || it.next().unwrap_or_else(|| usage());
        match arg.as_str() {
            "--mode" => a.mode = val(),
            "--layout" => a.layout = val(),
            "--tree-percent" => a.tree_percent = val().parse().unwrap_or_else(|_| usage()),
            "--dir" => a.dir = Some(val().into()),
            "--keep" => a.keep = true,
            "--load-child" => a.load_child = Some(val().into()),
            "--full" => a.full = true,
            "-h" | "--help" => usage(),
            s => a.n = s.replace('_', "").parse().unwrap_or_else(|_| usage()),
        }
    }
    if !["repo", "repo-full", "blobset", "index"].contains(&a.mode.as_str())
        || !["backup", "compact"].contains(&a.layout.as_str())
        || !(0.0..=100.0).contains(&a.tree_percent)
    {
        usage();
    }
    a
}

fn main() {
    let args = parse_args();
    if let Some(dir) = &args.load_child {
        load_child(dir, args.n, args.full);
        return;
    }
    match args.mode.as_str() {
        "blobset" => in_process(args.n, "blobset"),
        "index" => in_process(args.n, "index"),
        _ => repo_mode(&args),
    }
}

/// Builds the structure in this process and reports its peak.
fn in_process(n: usize, mode: &str) {
    let base = status_kib("VmRSS");
    let t = Instant::now();
    let mut rng = Rng(1);
    let len = match mode {
        "blobset" => {
            let mut s = BlobSet::with_capacity(n);
            for _ in 0..n {
                s.push(&rng.id());
            }
            s.seal();
            std::hint::black_box(&s);
            s.len()
        }
        _ => {
            let mut ix = Index::new();
            let mut entries = Vec::with_capacity(DATA_PER_PACK);
            let mut done = 0;
            while done < n {
                entries.clear();
                let mut offset = 0;
                for _ in 0..DATA_PER_PACK.min(n - done) {
                    entries.push(PackEntry {
                        kind: BlobType::Data,
                        id: rng.id(),
                        offset,
                        length: 700_000,
                        raw_length: 1 << 20,
                    });
                    offset += 700_000;
                }
                done += entries.len();
                ix.add_pack(rng.id(), &entries);
            }
            std::hint::black_box(&ix);
            ix.len()
        }
    };
    let peak = status_kib("VmHWM");
    let held = match mode {
        "blobset" => format!("{len} ids in a BlobSet"),
        _ => format!("{len} blob locations in an Index"),
    };
    report(mode, n, &held, base, peak, peak, t.elapsed().as_secs_f64());
}

#[allow(clippy::too_many_arguments)]
fn report(
    mode: &str,
    n: usize,
    held: &str,
    base_kib: u64,
    peak_kib: u64,
    process_peak_kib: u64,
    secs: f64,
) {
    println!("mode                 {mode}");
    println!("blobs requested      {n}");
    println!("held                 {held}");
    println!("RSS before           {:.1} MiB", mib(base_kib));
    println!("peak RSS (VmHWM)     {:.1} MiB", mib(peak_kib));
    if process_peak_kib != peak_kib {
        println!(
            "process peak         {:.1} MiB (includes opening the repository: Argon2id)",
            mib(process_peak_kib)
        );
    }
    println!(
        "bytes per blob       {:.1} (peak minus RSS before)",
        (peak_kib.saturating_sub(base_kib) * 1024) as f64 / n.max(1) as f64
    );
    println!("time                 {secs:.2} s");
    // One machine-readable line: mode, N, peak KiB, whole-process peak KiB.
    println!("index_rss\t{mode}\t{n}\t{peak_kib}\t{process_peak_kib}");
}

/// Writes the synthetic repository, then measures the load in a child.
fn repo_mode(args: &Args) {
    let parent = args.dir.clone().unwrap_or_else(std::env::temp_dir);
    let tmp = tempfile::Builder::new()
        .prefix("cairn-index-rss-")
        .tempdir_in(&parent)
        .unwrap_or_else(|e| panic!("temp dir in {}: {e}", parent.display()));
    let dir = tmp.path().join("repo");
    let t = Instant::now();
    let (files, bytes) = write_repo(&dir, args);
    eprintln!(
        "wrote {} index files ({:.1} MiB, {:.1} bytes per blob) in {:.1} s; loading in a child process",
        files,
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / args.n.max(1) as f64,
        t.elapsed().as_secs_f64()
    );
    let exe = std::env::current_exe().expect("current exe");
    let mut cmd = Command::new(exe);
    cmd.arg("--load-child").arg(&dir).arg(args.n.to_string());
    if args.mode == "repo-full" {
        cmd.arg("--full");
    }
    let status = cmd.status().expect("spawn child");
    if args.keep {
        let kept = tmp.keep();
        eprintln!("kept {}", kept.display());
    }
    if !status.success() {
        eprintln!("child failed: {status}");
        std::process::exit(1);
    }
}

/// Writes index files for `args.n` blobs; returns (files, bytes).
fn write_repo(dir: &Path, args: &Args) -> (usize, u64) {
    let opts = InitOptions::default();
    let repo = Repository::init(dir, PASSWORD, &opts).expect("init repository");
    let trees = ((args.n as f64) * args.tree_percent / 100.0).round() as usize;
    let data = args.n - trees;
    let mut rng = Rng(2);
    let mut files = 0usize;
    let mut bytes = 0u64;
    let mut batch: Vec<IndexPack> = Vec::new();
    let mut batch_blobs = 0usize;
    let mut flush = |batch: &mut Vec<IndexPack>| {
        let f = IndexFile {
            packs: std::mem::take(batch),
            supersedes: Vec::new(),
            prune: None,
        };
        let enc = f.encode(repo.key()).expect("encode index");
        let id = Id::of_file(&enc);
        // No fsync: this is scratch data.
        std::fs::write(
            LocalBackend::new(dir).path(Handle::new(FileKind::Index, id)),
            &enc,
        )
        .expect("write index");
        files += 1;
        bytes += enc.len() as u64;
    };
    // Interleave tree packs among data packs, as backups do.
    let data_packs = data.div_ceil(DATA_PER_PACK);
    let tree_packs = trees.div_ceil(TREES_PER_PACK);
    let tree_every = data_packs
        .checked_div(tree_packs)
        .map_or(usize::MAX, |k| k.max(1));
    let (mut data_left, mut trees_left) = (data, trees);
    let mut pack_no = 0usize;
    while data_left > 0 || trees_left > 0 {
        let tree_turn = trees_left > 0 && (data_left == 0 || pack_no.is_multiple_of(tree_every));
        let (kind, count) = if tree_turn {
            (BlobType::Tree, TREES_PER_PACK.min(trees_left))
        } else {
            (BlobType::Data, DATA_PER_PACK.min(data_left))
        };
        let mut offset = 0u64;
        let blobs: Vec<PackEntry> = (0..count)
            .map(|_| {
                let r = rng.next_u64();
                let (length, raw_length) = match kind {
                    // ~1 MiB chunks, compressed to 40..100%.
                    BlobType::Data => {
                        let raw = (512 * 1024 + r % (1024 * 1024)) as u32;
                        (raw / 10 * (4 + (r >> 32) % 7) as u32, raw)
                    }
                    // Directory listings of a few KiB, compressed ~4x.
                    BlobType::Tree => {
                        let raw = (200 + r % 8000) as u32;
                        (raw / 4 + 41, raw)
                    }
                };
                let e = PackEntry {
                    kind,
                    id: rng.id(),
                    offset,
                    length,
                    raw_length,
                };
                offset += length as u64;
                e
            })
            .collect();
        match kind {
            BlobType::Data => data_left -= count,
            BlobType::Tree => trees_left -= count,
        }
        batch_blobs += blobs.len();
        batch.push(IndexPack {
            id: rng.id(),
            blobs,
        });
        pack_no += 1;
        let full = match args.layout.as_str() {
            "compact" => batch_blobs >= INDEX_FILE_BLOBS,
            _ => batch.len() >= INDEX_EVERY,
        };
        if full {
            flush(&mut batch);
            batch_blobs = 0;
        }
    }
    if !batch.is_empty() {
        flush(&mut batch);
    }
    (files, bytes)
}

/// Child: open the repository and load the index as `cairn backup` does
/// (or, with `full`, as restore and the other readers do).
fn load_child(dir: &Path, n: usize, full: bool) {
    let repo = Repository::open(dir, PASSWORD).expect("open repository");
    let after_open_peak = status_kib("VmHWM");
    let base = status_kib("VmRSS");
    let reset = reset_peak();
    let t = Instant::now();
    let (full_index, backup_index) = if full {
        (Some(repo.with_full_index().expect("load index")), None)
    } else {
        (None, Some(repo.with_backup_index().expect("load index")))
    };
    let secs = t.elapsed().as_secs_f64();
    let process_peak = status_kib("VmHWM").max(after_open_peak);
    let load_peak = if reset {
        status_kib("VmHWM")
    } else {
        process_peak
    };
    let (mode, held) = if full {
        (
            "repo-full",
            format!(
                "{} blob locations in the Index",
                full_index.as_ref().map_or(0, |r| r.index().len())
            ),
        )
    } else {
        ("repo", {
            let (ids, located) = backup_index
                .as_ref()
                .map_or((0, 0), |r| r.backup_index_sizes());
            format!(
                "{ids} data blob ids in the BlobSet, {located} tree blob locations in the Index"
            )
        })
    };
    report(mode, n, &held, base, load_peak, process_peak, secs);
    println!(
        "RSS after load       {:.1} MiB (what stays resident during the backup)",
        mib(status_kib("VmRSS"))
    );
}
