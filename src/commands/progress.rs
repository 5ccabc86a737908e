//! How long-running commands report progress and learn they should stop.
//!
//! A command counts what it has done in [`Counters`] (atomics, cheap to bump
//! from many threads). While it runs, [`run_reporting`] hands a
//! [`Status`] snapshot of the counters to the caller's [`Progress`] every
//! [`TICK`]; the caller draws a bar, prints JSON lines, updates a job's
//! state, or does nothing ([`NoProgress`]). The same object answers
//! [`Progress::cancelled`], which commands check between files: a
//! cancelled command stops with [`crate::Error::Cancelled`] before writing
//! its snapshot, leaving the repository as an interrupted run would.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often [`Progress::update`] is called while a command runs.
pub const TICK: Duration = Duration::from_millis(100);

/// Live counts of a running command.
#[derive(Default, Debug)]
pub struct Counters {
    /// Files finished.
    pub files_done: AtomicU64,
    /// Bytes of file content processed.
    pub bytes_done: AtomicU64,
    /// Files expected (grows while a scan runs).
    pub total_files: AtomicU64,
    /// Bytes expected (grows while a scan runs).
    pub total_bytes: AtomicU64,
    /// Whether the totals are final.
    pub totals_known: AtomicBool,
    /// Problems so far.
    pub errors: AtomicU64,
}

impl Counters {
    /// Counters whose totals are known from the start.
    pub fn with_totals(files: u64, bytes: u64) -> Counters {
        let c = Counters::default();
        c.total_files.store(files, Ordering::Relaxed);
        c.total_bytes.store(bytes, Ordering::Relaxed);
        c.totals_known.store(true, Ordering::Relaxed);
        c
    }

    /// Adds finished files and bytes.
    pub fn add_done(&self, files: u64, bytes: u64) {
        if files > 0 {
            self.files_done.fetch_add(files, Ordering::Relaxed);
        }
        if bytes > 0 {
            self.bytes_done.fetch_add(bytes, Ordering::Relaxed);
        }
    }

    /// Counts one problem.
    pub fn add_error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
    }

    /// A consistent-enough snapshot for display.
    pub fn status(&self, elapsed: Duration) -> Status {
        Status {
            elapsed,
            files_done: self.files_done.load(Ordering::Relaxed),
            bytes_done: self.bytes_done.load(Ordering::Relaxed),
            total_files: self.total_files.load(Ordering::Relaxed),
            total_bytes: self.total_bytes.load(Ordering::Relaxed),
            totals_known: self.totals_known.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
        }
    }
}

/// Where a running command stands.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Status {
    /// Time since the command started.
    pub elapsed: Duration,
    /// Files finished.
    pub files_done: u64,
    /// Bytes processed.
    pub bytes_done: u64,
    /// Files expected so far.
    pub total_files: u64,
    /// Bytes expected so far.
    pub total_bytes: u64,
    /// Whether the totals are final.
    pub totals_known: bool,
    /// Problems so far.
    pub errors: u64,
}

impl Status {
    /// Fraction of the bytes done, 0.0 when no total is known.
    pub fn fraction_done(&self) -> f64 {
        if self.total_bytes > 0 {
            (self.bytes_done as f64 / self.total_bytes as f64).min(1.0)
        } else {
            0.0
        }
    }
}

/// A receiver of progress and the source of cancellation.
pub trait Progress: Sync {
    /// Whether the caller wants totals, which may cost a separate scan
    /// (a metadata-only walk of a backup's sources).
    fn wants_totals(&self) -> bool {
        false
    }

    /// Called every [`TICK`] while the command runs, and once at the end.
    fn update(&self, _status: &Status) {}

    /// Whether the command should stop as soon as it safely can.
    fn cancelled(&self) -> bool {
        false
    }
}

/// No display, never cancelled.
pub struct NoProgress;

impl Progress for NoProgress {}

/// Runs `work` while a background thread reports `counters` to `progress`
/// every [`TICK`] (and once more at the end).
pub fn run_reporting<T>(
    progress: &dyn Progress,
    counters: &Counters,
    work: impl FnOnce() -> T,
) -> T {
    let start = Instant::now();
    let done = AtomicBool::new(false);
    let result = std::thread::scope(|s| {
        s.spawn(|| {
            while !done.load(Ordering::Relaxed) {
                progress.update(&counters.status(start.elapsed()));
                sleep_unless(&done, TICK);
            }
        });
        let r = work();
        done.store(true, Ordering::Relaxed);
        r
    });
    progress.update(&counters.status(start.elapsed()));
    result
}

/// Sleeps up to `d`, returning early once `done` is set (so finishing a
/// command never waits for a tick).
fn sleep_unless(done: &AtomicBool, d: Duration) {
    let step = Duration::from_millis(10);
    let start = Instant::now();
    while start.elapsed() < d && !done.load(Ordering::Relaxed) {
        std::thread::sleep(step);
    }
}

/// Fails with [`crate::Error::Cancelled`] if `progress` says to stop.
pub fn check_cancelled(progress: &dyn Progress) -> crate::Result<()> {
    if progress.cancelled() {
        Err(crate::Error::Cancelled)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    struct Recorder(Mutex<Vec<Status>>);

    impl Progress for Recorder {
        fn update(&self, s: &Status) {
            self.0.lock().unwrap().push(*s);
        }
    }

    #[test]
    fn reports_while_running_and_at_the_end() {
        let rec = Recorder(Mutex::new(Vec::new()));
        let c = Counters::with_totals(2, 100);
        let out = run_reporting(&rec, &c, || {
            c.add_done(1, 60);
            c.add_done(1, 40);
            7
        });
        assert_eq!(out, 7);
        let seen = rec.0.into_inner().unwrap();
        let last = seen.last().expect("a final update");
        assert_eq!((last.files_done, last.bytes_done), (2, 100));
        assert!((last.fraction_done() - 1.0).abs() < 1e-9);
    }
}
