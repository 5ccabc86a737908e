//! The fuzz targets' bodies, run as an ordinary test over the seed corpus in
//! `fuzz/corpus/<target>/` and over mutations of every file there:
//! truncation at every length, single bit flips, and length fields set to
//! 2^40, `u64::MAX` and friends. Nothing may panic, every `seed-*` file must
//! decode, and no decoder may ask for an absurd allocation (a per-thread
//! tracking allocator records the largest single request).
//!
//! The target bodies live in `fuzz/src/lib.rs` and are compiled here too, so
//! the cargo-fuzz binaries and this test run the same code.
//!
//! To regenerate the seeds (e.g. after a format change):
//! `CAIRN_WRITE_FUZZ_CORPUS=1 cargo test --test fuzz_corpus write_corpus`.

#[path = "../fuzz/src/lib.rs"]
mod cairn_fuzz;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::fs;
use std::path::{Path, PathBuf};

// ---------------------------------------------------------------------------
// Largest single allocation, per thread
// ---------------------------------------------------------------------------

struct Tracking;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    // `try_with`: never touch a thread-local that is being torn down.
    let _ = LARGEST.try_with(|m| {
        if size > m.get() {
            m.set(size);
        }
    });
}

// SAFETY: every call is forwarded unchanged to the system allocator.
unsafe impl GlobalAlloc for Tracking {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Tracking = Tracking;

// ---------------------------------------------------------------------------
// Corpus and mutations
// ---------------------------------------------------------------------------

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn target(name: &str) -> cairn_fuzz::Target {
    cairn_fuzz::TARGETS
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, f)| *f)
        .unwrap_or_else(|| panic!("no target {name}"))
}

/// Files of one target's corpus directory (hidden files skipped), sorted.
fn corpus_files(name: &str) -> Vec<(String, Vec<u8>)> {
    let dir = corpus_dir().join(name);
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.is_file())
        .map(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            let bytes = fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            (n, bytes)
        })
        .filter(|(n, _)| !n.starts_with('.'))
        .collect();
    out.sort();
    out
}

/// Up to `max` positions spread evenly over `0..n`, always including the
/// last few bytes (trailers and tags live there).
fn positions(n: usize, max: usize) -> Vec<usize> {
    if n <= max {
        return (0..n).collect();
    }
    let step = n.div_ceil(max);
    let mut v: Vec<usize> = (0..n).step_by(step).collect();
    v.extend(n.saturating_sub(16)..n);
    v.sort_unstable();
    v.dedup();
    v
}

/// postcard varint of 2^40: five zero groups with the continuation bit, then 0x20.
const VARINT_2_40: &[u8] = &[0x80, 0x80, 0x80, 0x80, 0x80, 0x20];
/// postcard varint of `u64::MAX` (usize on 64-bit targets).
const VARINT_U64_MAX: &[u8] = &[0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];

/// Feeds `f` with mutations of `seed`.
fn mutate(seed: &[u8], mut f: impl FnMut(&[u8])) {
    let n = seed.len();
    // Every truncation (every one of them for seeds this small).
    for len in positions(n, 8192) {
        f(&seed[..len]);
    }
    // Single bit flips.
    for p in positions(n, 1024) {
        let mut m = seed.to_vec();
        m[p] ^= 1 << (p % 8);
        f(&m);
    }
    // Huge length fields, overwritten or inserted wherever one might be.
    let patterns: [Vec<u8>; 6] = [
        VARINT_2_40.to_vec(),
        VARINT_U64_MAX.to_vec(),
        (1u64 << 40).to_le_bytes().to_vec(),
        u64::MAX.to_le_bytes().to_vec(),
        u32::MAX.to_le_bytes().to_vec(),
        (cairn::format::blob::MAX_BLOB_SIZE as u32)
            .to_le_bytes()
            .to_vec(),
    ];
    for p in positions(n, 256) {
        for pat in &patterns {
            let mut m = seed.to_vec();
            m.splice(p..(p + pat.len()).min(n), pat.iter().copied());
            f(&m);
        }
        let mut m = seed.to_vec();
        m.splice(p..p, VARINT_2_40.iter().copied());
        f(&m);
    }
}

/// Largest single allocation allowed while running a target: blobs may
/// legitimately reserve their declared size (bounded by `MAX_BLOB_SIZE`);
/// nothing else should come near.
fn allocation_limit(name: &str) -> usize {
    if name == "fuzz_blob" {
        cairn::format::blob::MAX_BLOB_SIZE
    } else {
        16 * 1024 * 1024
    }
}

fn run_corpus(name: &str) {
    let f = target(name);
    let files = corpus_files(name);
    assert!(
        files.iter().any(|(n, _)| n.starts_with("seed-")),
        "no seed-* files in fuzz/corpus/{name}"
    );
    LARGEST.with(|m| m.set(0));
    let mut runs = 0usize;
    for (file, bytes) in &files {
        let ok = f(bytes);
        // Only the generated seeds must decode; files a fuzzing run left in
        // the corpus need only not panic.
        if file.starts_with("seed-") {
            assert!(ok, "fuzz/corpus/{name}/{file} does not decode");
        }
        mutate(bytes, |m| {
            f(m);
            runs += 1;
        });
    }
    let largest = LARGEST.with(|m| m.get());
    assert!(
        largest <= allocation_limit(name),
        "{name}: an allocation of {largest} bytes over {runs} mutated inputs"
    );
}

macro_rules! corpus_tests {
    ($($test:ident => $name:literal),* $(,)?) => {
        $(
            #[test]
            fn $test() {
                run_corpus($name);
            }
        )*

        #[test]
        fn every_target_is_tested() {
            let tested = [$($name),*];
            for (name, _) in cairn_fuzz::TARGETS {
                assert!(tested.contains(name), "{name} has no corpus test");
            }
        }
    };
}

corpus_tests! {
    corpus_keyfile => "fuzz_keyfile",
    corpus_config => "fuzz_config",
    corpus_pack => "fuzz_pack",
    corpus_index => "fuzz_index",
    corpus_tree => "fuzz_tree",
    corpus_snapshot => "fuzz_snapshot",
    corpus_blob => "fuzz_blob",
    corpus_content_list => "fuzz_content_list",
    corpus_lock => "fuzz_lock",
    corpus_wal => "fuzz_wal",
    corpus_forget => "fuzz_forget",
}

/// The generator and the decoders agree: freshly generated seeds decode too
/// (so the checked-in corpus can always be regenerated).
#[test]
fn generated_seeds_decode() {
    for (name, file, bytes) in cairn_fuzz::seeds() {
        assert!(
            target(name)(&bytes),
            "generated {name}/{file} does not decode"
        );
    }
}

/// Regenerates `fuzz/corpus/*/seed-*` when `CAIRN_WRITE_FUZZ_CORPUS` is set;
/// otherwise does nothing.
#[test]
fn write_corpus() {
    if std::env::var_os("CAIRN_WRITE_FUZZ_CORPUS").is_none() {
        return;
    }
    let seeds = cairn_fuzz::seeds();
    for (name, _) in cairn_fuzz::TARGETS {
        let dir = corpus_dir().join(name);
        fs::create_dir_all(&dir).expect("create corpus dir");
        for e in fs::read_dir(&dir).expect("read corpus dir") {
            let p = e.expect("dir entry").path();
            if p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("seed-")
            {
                fs::remove_file(&p).expect("remove old seed");
            }
        }
    }
    for (name, file, bytes) in seeds {
        fs::write(corpus_dir().join(name).join(file), bytes).expect("write seed");
    }
}
