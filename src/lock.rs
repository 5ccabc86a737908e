//! Repository locks: shared for writers that only add (backup), exclusive
//! for anything that deletes (forget, prune, repair).
//!
//! A lock is a small sealed file in `locks/`. To lock, a process writes its
//! lock file first and only then looks at the others; if it sees a
//! conflicting lock it removes its own and fails (or retries). Two processes
//! racing therefore both back off rather than both proceed. Holders refresh
//! their lock every [`REFRESH`]; a lock not refreshed for [`STALE_AFTER`], or
//! held by a process on this host that no longer exists, is stale and is
//! ignored and removed, so a killed process cannot leave the repository
//! locked forever. `cairn unlock` removes stale locks by hand.

use crate::backend::{FileKind, LocalBackend};
use crate::crypto::MasterKey;
use crate::envelope;
use crate::error::{Error, Result};
use crate::id::Id;
use crate::repo::{Repository, hostname, username};
use serde::{Deserialize, Serialize};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Magic of a lock file.
pub const MAGIC: &[u8; 8] = b"CAIRNLK1";
/// How often a held lock is rewritten with a fresh time.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A lock older than this (by its recorded time) is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Content of a lock file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockInfo {
    /// When the lock was taken or last refreshed, Unix seconds.
    pub time: i64,
    /// Whether this lock excludes every other lock.
    pub exclusive: bool,
    /// Host of the holder.
    pub hostname: String,
    /// User of the holder.
    pub username: String,
    /// Process id of the holder.
    pub pid: u32,
}

impl LockInfo {
    /// Whether the holder is gone (too old, or a dead process on this host).
    pub fn is_stale(&self, this_host: &str) -> bool {
        let age = chrono::Utc::now().timestamp() - self.time;
        if age > STALE_AFTER.as_secs() as i64 {
            return true;
        }
        if self.hostname == this_host {
            // SAFETY: kill with signal 0 only checks for existence.
            let r = unsafe { libc::kill(self.pid as libc::pid_t, 0) };
            if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
                return true;
            }
        }
        false
    }

    /// One-line description for messages.
    pub fn describe(&self) -> String {
        let when = chrono::DateTime::from_timestamp(self.time, 0)
            .map(|t| {
                t.with_timezone(&chrono::Local)
                    .format("%Y-%m-%d %H:%M:%S")
                    .to_string()
            })
            .unwrap_or_default();
        format!(
            "{} lock held by {}@{} (pid {}) since {}",
            if self.exclusive {
                "exclusive"
            } else {
                "shared"
            },
            self.username,
            self.hostname,
            self.pid,
            when
        )
    }
}

/// A held lock; refreshed in the background, removed on drop.
pub struct Lock {
    backend: LocalBackend,
    current: Arc<Mutex<Id>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

fn write_lock(backend: &LocalBackend, key: &MasterKey, info: &LockInfo) -> Result<Id> {
    let bytes = envelope::seal(key, MAGIC, info)?;
    let id = Id::of_file(&bytes);
    backend.write(FileKind::Lock, &id, &bytes)?;
    Ok(id)
}

/// Reads every lock file; unreadable ones are returned as errors in place.
pub fn list_locks(repo: &Repository) -> Result<Vec<(Id, Result<LockInfo>)>> {
    let mut out = Vec::new();
    for id in repo.backend.list(FileKind::Lock)? {
        let what = LocalBackend::rel_path(FileKind::Lock, &id);
        let info = match repo.backend.read(FileKind::Lock, &id) {
            Ok(b) => envelope::open(&repo.key, MAGIC, &b, &what),
            // Removed between listing and reading: released meanwhile.
            Err(Error::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                continue;
            }
            Err(e) => Err(e),
        };
        out.push((id, info));
    }
    Ok(out)
}

impl Lock {
    /// Takes a lock, retrying for up to `retry` while others hold conflicting locks.
    pub fn acquire(repo: &Repository, exclusive: bool, retry: Duration) -> Result<Lock> {
        let deadline = std::time::Instant::now() + retry;
        let host = hostname();
        loop {
            let info = LockInfo {
                time: chrono::Utc::now().timestamp(),
                exclusive,
                hostname: host.clone(),
                username: username(),
                pid: std::process::id(),
            };
            let mine = write_lock(&repo.backend, &repo.key, &info)?;
            let mut conflict = None;
            for (id, other) in list_locks(repo)? {
                if id == mine {
                    continue;
                }
                match other {
                    Ok(o) if o.is_stale(&host) => {
                        let _ = repo.backend.remove(FileKind::Lock, &id);
                    }
                    Ok(o) if exclusive || o.exclusive => {
                        conflict = Some(o.describe());
                        break;
                    }
                    Ok(_) => {}
                    // A lock we cannot read might be anyone's: treat it as exclusive.
                    Err(e) => {
                        conflict = Some(format!("unreadable lock file: {e}"));
                        break;
                    }
                }
            }
            match conflict {
                None => return Ok(Lock::hold(repo, mine, info)),
                Some(c) => {
                    repo.backend.remove(FileKind::Lock, &mine)?;
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Locked(format!(
                            "repository is locked: {c} (use --retry-lock to wait, or `cairn unlock` if that process is gone)"
                        )));
                    }
                    // Random back-off so two waiting processes do not keep colliding.
                    let r: [u8; 2] = crate::crypto::random_array().unwrap_or([0, 0]);
                    let jitter = u16::from_le_bytes(r) as u64 % 500;
                    std::thread::sleep(Duration::from_millis(250 + jitter));
                }
            }
        }
    }

    fn hold(repo: &Repository, id: Id, info: LockInfo) -> Lock {
        let current = Arc::new(Mutex::new(id));
        let stop = Arc::new(AtomicBool::new(false));
        let (backend, key) = (repo.backend.clone(), repo.key.clone());
        let (cur, st) = (current.clone(), stop.clone());
        let refresher = std::thread::spawn(move || {
            while !st.load(Ordering::Relaxed) {
                // Woken early by `Drop` (unpark), so releasing costs no delay.
                let started = std::time::Instant::now();
                while started.elapsed() < REFRESH && !st.load(Ordering::Relaxed) {
                    std::thread::park_timeout(REFRESH.saturating_sub(started.elapsed()));
                }
                if st.load(Ordering::Relaxed) {
                    break;
                }
                let mut fresh = info.clone();
                fresh.time = chrono::Utc::now().timestamp();
                if let Ok(new_id) = write_lock(&backend, &key, &fresh) {
                    let mut c = cur.lock().unwrap_or_else(|p| p.into_inner());
                    let old = std::mem::replace(&mut *c, new_id);
                    let _ = backend.remove(FileKind::Lock, &old);
                }
            }
        });
        Lock {
            backend: repo.backend.clone(),
            current,
            stop,
            refresher: Some(refresher),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.refresher.take() {
            h.thread().unpark();
            let _ = h.join();
        }
        let id = *self.current.lock().unwrap_or_else(|p| p.into_inner());
        let _ = self.backend.remove(FileKind::Lock, &id);
    }
}

/// Removes stale locks (or all locks with `all`); returns how many.
pub fn unlock(repo: &Repository, all: bool) -> Result<usize> {
    let host = hostname();
    let mut n = 0;
    for (id, info) in list_locks(repo)? {
        let remove = all || matches!(&info, Ok(i) if i.is_stale(&host));
        if remove {
            repo.backend.remove(FileKind::Lock, &id)?;
            n += 1;
        }
    }
    Ok(n)
}
