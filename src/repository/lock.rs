//! Repository locks: taken only by commands that delete (forget, prune,
//! tag, repair), to keep them apart. Readers and backups take none, so
//! they need no permission to delete and run alongside prune, which is
//! safe by its own protocol (marks and a grace period,
//! format-spec/v1-locks-prune.md).
//!
//! A lock is a small sealed file in `locks/` ([`crate::format::lock`]). To
//! lock, a process writes its lock file first and only then lists the
//! others; if it sees a conflicting lock it removes its own and fails (or
//! retries). Two processes racing therefore both back off rather than both
//! proceed. Holders refresh their lock every [`REFRESH`]; a lock not
//! refreshed for [`STALE_AFTER`], or held by a process on this host that no
//! longer exists, is stale and is ignored and removed, so a killed process
//! cannot leave the repository locked forever. `cairn unlock` removes stale
//! locks by hand.

use super::{Core, Repository};
use crate::backend::{Backend, FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::id::Id;
use crate::format::lock::LockInfo;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// How often a held lock is rewritten with a fresh time.
pub const REFRESH: Duration = Duration::from_secs(5 * 60);
/// A lock older than this (by its recorded time) is stale.
pub const STALE_AFTER: Duration = Duration::from_secs(30 * 60);

/// Whether the holder of `info` is gone: not refreshed for
/// [`STALE_AFTER`] (or dated that far in the future: a clock that wrong
/// would otherwise keep the lock for ever), or a dead process on this host.
pub fn is_stale(info: &LockInfo, this_host: &str) -> bool {
    let age = chrono::Utc::now().timestamp().saturating_sub(info.time);
    if age.unsigned_abs() > STALE_AFTER.as_secs() {
        return true;
    }
    if info.hostname == this_host {
        // SAFETY: kill with signal 0 only checks for existence.
        let r = unsafe { libc::kill(info.pid as libc::pid_t, 0) };
        if r != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH) {
            return true;
        }
    }
    false
}

/// One-line description of a lock for messages.
pub fn describe(info: &LockInfo) -> String {
    let when = chrono::DateTime::from_timestamp(info.time, 0)
        .map(|t| {
            t.with_timezone(&chrono::Local)
                .format("%Y-%m-%d %H:%M:%S")
                .to_string()
        })
        .unwrap_or_default();
    format!(
        "{} lock held by {}@{} (pid {}) since {}",
        if info.exclusive {
            "exclusive"
        } else {
            "shared"
        },
        info.username,
        info.hostname,
        info.pid,
        when
    )
}

/// A held lock; refreshed in the background, removed on drop.
pub struct Lock {
    backend: Arc<dyn Backend>,
    current: Arc<Mutex<Id>>,
    stop: Arc<AtomicBool>,
    refresher: Option<JoinHandle<()>>,
}

/// A lock held for as long as this lives, or none (`--no-lock`).
pub struct LockGuard(Option<Lock>);

impl LockGuard {
    pub(crate) fn held(lock: Lock) -> LockGuard {
        LockGuard(Some(lock))
    }

    /// Whether a lock is held.
    pub fn is_held(&self) -> bool {
        self.0.is_some()
    }
}

fn write_lock(backend: &dyn Backend, key: &MasterKey, info: &LockInfo) -> Result<Id> {
    let bytes = info.encode(key)?;
    let id = Id::of_file(&bytes);
    backend.write(Handle::new(FileKind::Lock, id), &bytes)?;
    Ok(id)
}

/// Reads every lock file but `skip` (one's own, known already; on object
/// storage each read is a request); unreadable ones are returned as errors
/// in place.
fn list_locks(core: &Core, skip: Option<Id>) -> Result<Vec<(Id, Result<LockInfo>)>> {
    let mut out = Vec::new();
    for (id, _) in core.backend.list(FileKind::Lock)? {
        if Some(id) == skip {
            continue;
        }
        let h = Handle::new(FileKind::Lock, id);
        let info = match core.backend.read(h) {
            Ok(b) => LockInfo::decode(&core.key, &b, &h.rel_path()),
            // Removed between listing and reading: released meanwhile.
            Err(e) if e.is_not_found() => continue,
            Err(e) => Err(e),
        };
        out.push((id, info));
    }
    Ok(out)
}

impl Lock {
    /// Takes a lock, retrying for up to `retry` while others hold
    /// conflicting locks.
    pub(crate) fn acquire(core: &Arc<Core>, exclusive: bool, retry: Duration) -> Result<Lock> {
        let deadline = std::time::Instant::now() + retry;
        let host = crate::sys::hostname();
        loop {
            let info = LockInfo {
                time: chrono::Utc::now().timestamp(),
                exclusive,
                hostname: host.clone(),
                username: crate::sys::username(),
                pid: std::process::id(),
            };
            let mine = write_lock(core.backend.as_ref(), &core.key, &info)?;
            // The conflicting lock, and what the user can do about it.
            let mut conflict = None;
            for (id, other) in list_locks(core, Some(mine))? {
                match other {
                    Ok(o) if is_stale(&o, &host) => {
                        let _ = core.backend.remove(Handle::new(FileKind::Lock, id));
                    }
                    // Shared locks are what earlier versions took for
                    // readers and backups; they no longer exclude anything.
                    Ok(o) if exclusive && o.exclusive => {
                        conflict = Some((describe(&o), "`cairn unlock` if that process is gone"));
                        break;
                    }
                    Ok(_) => {}
                    // A lock we cannot read might be anyone's: treat it as
                    // exclusive. Nobody can tell whether its holder is gone,
                    // so plain `unlock` leaves it (format-spec/v1-locks-prune.md).
                    Err(e) => {
                        conflict = Some((
                            format!("unreadable lock file: {e}"),
                            "`cairn unlock --remove-all` if no other cairn process uses the repository",
                        ));
                        break;
                    }
                }
            }
            match conflict {
                None => return Ok(Lock::hold(core, mine, info)),
                Some((c, remedy)) => {
                    core.backend.remove(Handle::new(FileKind::Lock, mine))?;
                    if std::time::Instant::now() >= deadline {
                        return Err(Error::Locked(format!(
                            "repository is locked: {c} (use --retry-lock to wait, or {remedy})"
                        )));
                    }
                    // Random back-off so two waiting processes do not keep colliding.
                    let r: [u8; 2] = crate::format::crypto::random_array().unwrap_or([0, 0]);
                    let jitter = u16::from_le_bytes(r) as u64 % 500;
                    std::thread::sleep(Duration::from_millis(250 + jitter));
                }
            }
        }
    }

    fn hold(core: &Arc<Core>, id: Id, info: LockInfo) -> Lock {
        let current = Arc::new(Mutex::new(id));
        let stop = Arc::new(AtomicBool::new(false));
        let core2 = core.clone();
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
                if let Ok(new_id) = write_lock(core2.backend.as_ref(), &core2.key, &fresh) {
                    let mut c = crate::sys::lock(&cur);
                    let old = std::mem::replace(&mut *c, new_id);
                    let _ = core2.backend.remove(Handle::new(FileKind::Lock, old));
                }
            }
        });
        Lock {
            backend: core.backend.clone(),
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
        let id = *crate::sys::lock(&self.current);
        let _ = self.backend.remove(Handle::new(FileKind::Lock, id));
    }
}

/// One lock file as `cairn unlock` and tests see it.
#[derive(Debug)]
pub struct LockFile {
    /// Its id.
    pub id: Id,
    /// What it says, or why it cannot be read.
    pub info: Result<LockInfo>,
}

impl<S> Repository<S> {
    /// Every lock file.
    pub fn lock_files(&self) -> Result<Vec<LockFile>> {
        Ok(list_locks(&self.core, None)?
            .into_iter()
            .map(|(id, info)| LockFile { id, info })
            .collect())
    }

    /// Removes stale locks (or all locks with `all`); returns how many.
    pub fn unlock(&self, all: bool) -> Result<usize> {
        self.check_may_delete("unlock")?;
        let host = crate::sys::hostname();
        let mut n = 0;
        for (id, info) in list_locks(&self.core, None)? {
            let remove = all || matches!(&info, Ok(i) if is_stale(i, &host));
            if remove {
                self.core.backend.remove(Handle::new(FileKind::Lock, id))?;
                n += 1;
            }
        }
        Ok(n)
    }
}
