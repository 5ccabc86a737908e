//! What cairn remembers about each job between runs: the last run, the
//! last success and failure, when it last pruned and verified. One JSON
//! file per job in the state directory, replaced atomically after each run,
//! and one lock file per job so that overlapping runs (a slow backup and
//! the next cron tick) do not pile up.

use crate::error::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// One job's remembered state.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct JobState {
    /// The last run, successful or not.
    pub last_run: Option<RunRecord>,
    /// When the last successful run started (Unix seconds).
    pub last_success: Option<i64>,
    /// When the last failed run started.
    pub last_failure: Option<i64>,
    /// The last failure's message.
    pub last_error: Option<String>,
    /// When prune last ran for this job.
    pub last_prune: Option<i64>,
    /// When verification last ran.
    pub last_verify: Option<i64>,
    /// The next `read-data-subset` part to read (1-based).
    pub verify_next_part: u32,
    /// Whether the last verification found damage.
    pub verify_damaged: bool,
    /// Runs so far.
    pub runs: u64,
    /// Failed runs so far.
    pub failures: u64,
}

/// What one run did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct RunRecord {
    /// Start (Unix seconds).
    pub started: i64,
    /// Wall time.
    pub duration_seconds: f64,
    /// Whether every step succeeded.
    pub ok: bool,
    /// The first error, if any.
    pub error: Option<String>,
    /// The snapshot made.
    pub snapshot_id: Option<String>,
    /// Files in the snapshot.
    pub files: u64,
    /// Bytes in the snapshot's files.
    pub bytes: u64,
    /// Bytes of new data stored (after deduplication, before compression).
    pub bytes_added: u64,
    /// Source entries that could not be read.
    pub source_errors: u64,
}

/// The state directory.
#[derive(Clone, Debug)]
pub struct StateDir {
    dir: PathBuf,
}

impl StateDir {
    /// Opens (creating, mode 0700) the state directory.
    pub fn open(dir: &Path) -> Result<StateDir> {
        use std::os::unix::fs::DirBuilderExt;
        for d in [dir.to_path_buf(), dir.join("jobs")] {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&d)
                .map_err(|e| Error::io(&d, e))?;
        }
        Ok(StateDir {
            dir: dir.to_path_buf(),
        })
    }

    fn file(&self, job: &str) -> PathBuf {
        self.dir.join("jobs").join(format!("{job}.json"))
    }

    /// A job's state (default if it never ran). A damaged state file is
    /// an error naming it: it is only ever replaced whole.
    pub fn load(&self, job: &str) -> Result<JobState> {
        let p = self.file(job);
        match std::fs::read(&p) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
                Error::corrupt(
                    p.display().to_string(),
                    format!("unreadable job state ({e}); delete it to start afresh"),
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(JobState::default()),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// Replaces a job's state atomically.
    pub fn save(&self, job: &str, state: &JobState) -> Result<()> {
        let p = self.file(job);
        let bytes = serde_json::to_vec_pretty(state)
            .map_err(|e| Error::InvalidInput(format!("job state: {e}")))?;
        crate::sys::write_file_atomic(&p, &bytes, 0o600).map_err(|e| Error::io(&p, e))
    }

    /// Takes the job's run lock; `None` if another run of it holds it.
    pub fn lock(&self, job: &str) -> Result<Option<crate::sys::FileLock>> {
        let p = self.dir.join("jobs").join(format!("{job}.lock"));
        crate::sys::FileLock::try_lock(&p).map_err(|e| Error::io(&p, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_locks_exclude() {
        let t = tempfile::tempdir().unwrap();
        let d = StateDir::open(&t.path().join("s")).unwrap();
        assert_eq!(d.load("a").unwrap(), JobState::default());
        let s = JobState {
            last_success: Some(5),
            runs: 2,
            ..Default::default()
        };
        d.save("a", &s).unwrap();
        assert_eq!(d.load("a").unwrap(), s);
        let held = d.lock("a").unwrap().expect("free");
        assert!(d.lock("a").unwrap().is_none());
        drop(held);
        assert!(d.lock("a").unwrap().is_some());
        std::fs::write(t.path().join("s/jobs/b.json"), b"{not json").unwrap();
        assert!(d.load("b").is_err());
    }
}
