//! Command-line parsing, password handling, output and exit codes.
//!
//! Everything that decides *what* happens lives in the library; this module
//! turns arguments into library calls and results into text or JSON.

/// Writes a line to standard output; a failed write (a closed pipe, a full
/// disk) returns the error from the enclosing function instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)?;
    }};
}

/// Writes a line to standard error; a failure to write is ignored (there
/// is nowhere left to report it).
macro_rules! err {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

mod args;
mod commands;
mod history;
mod jobs;
mod output;
mod password;

use clap::Parser;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error; nothing (more) was done.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the snapshot was saved, but some source entries could not be read.
pub const EXIT_PARTIAL: i32 = 3;
/// Exit code: `run`: a job failed.
pub const EXIT_JOB_FAILED: i32 = 4;
/// Exit code: `status`: a job is stale (no success within its max_age).
pub const EXIT_STALE: i32 = 5;
/// Exit code: `status`: a job is failing (last run failed, damage found,
/// repository unreadable).
pub const EXIT_FAILING: i32 = 6;
/// Exit code: the repository does not exist.
pub const EXIT_NO_REPOSITORY: i32 = 10;
/// Exit code: the repository is locked by another process.
pub const EXIT_LOCKED: i32 = 11;
/// Exit code: wrong password.
pub const EXIT_WRONG_PASSWORD: i32 = 12;
/// The storage does not let these credentials delete (backup-only
/// credentials), and the command needs to; nothing was changed.
pub const EXIT_NOT_PERMITTED: i32 = 13;

/// Stack size of each worker thread.
const STACK_SIZE: usize = 64 << 20;

/// Sizes the worker pool: twice the cores, at least 4. Backup and restore
/// spend much of their time waiting for the disk (files not in the page
/// cache, metadata lookups); more threads than cores keep several reads in
/// flight while others compress. Measured on 2 cores, 1 GiB / 50k files with
/// a cold cache: 2 threads 6.9 s, 4 threads 4.7 s. `RAYON_NUM_THREADS`
/// overrides.
fn configure_threads() {
    if let Some(n) = std::env::var_os("RAYON_NUM_THREADS") {
        let n = n.to_str().and_then(|s| s.parse().ok()).unwrap_or(0);
        let _ = rayon::ThreadPoolBuilder::new()
            .num_threads(n)
            .stack_size(STACK_SIZE)
            .build_global();
        return;
    }
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads((cores * 2).max(4))
        // Backup descends directories recursively; a source tree as deep
        // as paths allow (about 2,000 levels) needs more than the default
        // 2 MiB. Untouched stack pages cost no memory.
        .stack_size(STACK_SIZE)
        .build_global();
}

/// Chunk buffers (up to the 8 MiB maximum chunk) are allocated and freed by
/// many threads; glibc's adaptive mmap threshold then serves them from
/// per-thread heaps that keep the memory after `free`, which raised a 1 GiB
/// backup's peak RSS from 63 MB to 95 MB. A fixed threshold returns large
/// buffers to the system when freed.
fn limit_heap_retention() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only adjusts allocator parameters; called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 1 << 20);
    }
}

/// Parses arguments, runs the command, prints one error line on failure.
pub fn main() -> i32 {
    limit_heap_retention();
    configure_threads();
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    let result = commands::run(cli).and_then(|code| {
        // Output still buffered must reach its reader too.
        std::io::Write::flush(&mut std::io::stdout())?;
        Ok(code)
    });
    match result {
        Ok(code) => code,
        // A reader that went away (`cairn snapshots | head -1`) ends the
        // command quietly, as it does for other Unix tools.
        Err(e) if is_broken_pipe(&e) => EXIT_OK,
        Err(e) => {
            err!("cairn: error: {e:#}");
            match e.downcast_ref::<cairn::Error>() {
                Some(cairn::Error::NotARepository(_) | cairn::Error::NoSuchBucket { .. }) => {
                    EXIT_NO_REPOSITORY
                }
                Some(cairn::Error::WrongPassword) => EXIT_WRONG_PASSWORD,
                Some(cairn::Error::Locked(_)) => EXIT_LOCKED,
                Some(cairn::Error::PermissionDenied(_)) => EXIT_NOT_PERMITTED,
                _ => EXIT_ERROR,
            }
        }
    }
}

/// Whether the error is a write to a pipe whose reader has gone.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
            || matches!(
                c.downcast_ref::<cairn::Error>(),
                Some(cairn::Error::Io { error, .. }) if error.kind() == std::io::ErrorKind::BrokenPipe
            )
    })
}
