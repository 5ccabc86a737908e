//! `mount`: a repository's snapshots as a read-only file system (FUSE).
//!
//! Why it is built this way:
//!
//! - **Layout** ([`names`]): restic's, so its users find their way:
//!   `ids/<full id>/`, `snapshots/<time>/` with `latest`,
//!   `hosts/<host>/<time>/`, `tags/<tag>/<time>/`. Time names are local
//!   time to the second with the offset (`2026-12-02T05:47:55Z`), clashes
//!   get `-1`, `-2`; names never change while mounted. The snapshot list is
//!   read again (at most every [`MountOptions::refresh_interval`]) when
//!   someone looks at these directories, so new snapshots appear without a
//!   remount; the index is reloaded when a new snapshot needs it.
//! - **Nothing is read before it is needed** ([`inodes`]): inode numbers are
//!   given on first lookup, directory listings are read when a directory
//!   is opened, and the kernel's `forget` lets entries go again, so a
//!   mount of millions of files costs what is browsed. Hard links of one
//!   snapshot share an inode number.
//! - **Random access** ([`reader`]): a read at offset X of a 10 GB file
//!   finds its blob by binary search over the file's blob offsets and
//!   fetches only the blobs it covers; decoded blobs live in a cache
//!   bounded in bytes ([`MountOptions::cache_bytes`]); sequential readers
//!   get read-ahead on background threads. Every blob is authenticated
//!   as everywhere else in cairn.
//! - **Cheap listings** ([`fs`]): directory listings carry attributes
//!   (READDIRPLUS), and the kernel may cache snapshot trees, which never
//!   change, for long.
//! - **Locking**: none, as for every reader: backups and prune run
//!   alongside. Prune deletes a pack only a grace period after marking it,
//!   and the mount reloads the index when the repository changes.
//! - **Clean ends**: the mount is made through `fusermount`'s auto-unmount
//!   helper where possible, which removes it when this process ends however
//!   it ends (even `kill -9`); [`mount`] returns once the caller asks it to
//!   stop or someone unmounted it, after unmounting. A stale mount left at
//!   the mount point by an older process is cleared first.
//!
//! The shell (the CLI) handles signals and says when to stop through
//! [`MountEvents`]; nothing here prints.

mod fs;
pub mod inodes;
pub mod names;
pub mod reader;

use crate::error::{Error, Result};
use crate::repository::{Repository, SnapshotFilter};
use fuser::{BackgroundSession, Config, MountOption, SessionACL};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How a mount is made.
#[derive(Clone, Debug)]
pub struct MountOptions {
    /// Where: an existing, empty directory.
    pub mountpoint: PathBuf,
    /// Which snapshots to show (`--host`, `--tag`, `--path`).
    pub filter: SnapshotFilter,
    /// Let other users (and root) in (`allow_other`; for users other than
    /// root, `/etc/fuse.conf` must say `user_allow_other`). Permissions are
    /// checked against the recorded modes and owners either way.
    pub allow_other: bool,
    /// Most bytes of decoded blobs kept.
    pub cache_bytes: usize,
    /// How far ahead of a sequential reader blobs are fetched (0: no
    /// read-ahead).
    pub prefetch_bytes: u64,
    /// Threads fetching ahead.
    pub prefetch_threads: usize,
    /// Threads answering the kernel.
    pub threads: usize,
    /// How old the snapshot list may get before a look at the virtual
    /// directories reads it again.
    pub refresh_interval: Duration,
}

impl Default for MountOptions {
    fn default() -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        MountOptions {
            mountpoint: PathBuf::new(),
            filter: SnapshotFilter::default(),
            allow_other: false,
            cache_bytes: 64 << 20,
            prefetch_bytes: 8 << 20,
            prefetch_threads: cores.clamp(2, 8),
            threads: 4,
            refresh_interval: Duration::from_secs(5),
        }
    }
}

impl MountOptions {
    /// Checks what can be checked before the repository is opened: the
    /// mount point is an empty directory (or a stale mount, which
    /// [`mount`] clears), and FUSE can be used here.
    pub fn validate(&self) -> Result<()> {
        check_mountpoint(&self.mountpoint)?;
        fuse_available()
    }
}

/// What the shell hears from a running mount.
pub trait MountEvents: Send + Sync {
    /// The file system is mounted and answering.
    fn mounted(&self, _info: &MountInfo) {}
    /// Something could not be read (the reader got `EIO`); each distinct
    /// message is told once.
    fn problem(&self, _message: &str) {}
    /// Asked about ten times a second: true unmounts and ends [`mount`].
    fn stop_requested(&self) -> bool;
}

/// What was mounted.
#[derive(Clone, Debug)]
pub struct MountInfo {
    /// Where.
    pub mountpoint: PathBuf,
    /// How many snapshots are shown.
    pub snapshots: usize,
    /// Whether the mount is removed even if this process is killed
    /// (`fusermount`'s auto-unmount). Without it, a killed process leaves a
    /// stale mount that `fusermount -u` (or the next `cairn mount` there)
    /// removes.
    pub auto_unmount: bool,
    /// Why auto-unmount is not available, if it is not.
    pub auto_unmount_problem: Option<String>,
    /// Whether a stale mount was found at the mount point and removed.
    pub cleared_stale: bool,
}

/// How a mount ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// The shell asked it to stop ([`MountEvents::stop_requested`]).
    Stopped,
    /// Someone unmounted it (`umount`, `fusermount -u`).
    Unmounted,
}

/// What a finished mount did.
#[derive(Clone, Debug)]
pub struct MountReport {
    /// Whether it was mounted at all (a stop asked for while the index
    /// was loading ends before).
    pub mounted: bool,
    /// How it ended.
    pub ended: Ended,
    /// How long it was mounted.
    pub duration: Duration,
    /// Data blobs fetched from the repository.
    pub blobs_fetched: u64,
    /// False if the file system was still in use at the end and had to be
    /// detached (programs still reading from it got errors).
    pub clean: bool,
}

/// How often [`MountEvents::stop_requested`] is asked.
const POLL: Duration = Duration::from_millis(100);
/// How long an unmount may take before the mount is detached by force.
const UNMOUNT_WAIT: Duration = Duration::from_secs(5);

/// Mounts the repository's snapshots at `opts.mountpoint`, read-only,
/// and serves them until `events` asks to stop or the
/// file system is unmounted by someone else; unmounts and returns.
pub fn mount<S>(
    repo: &Repository<S>,
    opts: &MountOptions,
    events: Arc<dyn MountEvents>,
) -> Result<MountReport> {
    let cleared_stale = clear_stale_mount(&opts.mountpoint);
    opts.validate()?;
    let base = repo.without_index();
    let full = base.with_full_index()?;
    let shared = Arc::new(fs::Shared::new(base, full, opts, events.clone())?);
    if events.stop_requested() {
        shared.shutdown();
        return Ok(MountReport {
            mounted: false,
            ended: Ended::Stopped,
            duration: Duration::ZERO,
            blobs_fetched: 0,
            clean: true,
        });
    }
    let (session, auto_unmount_problem) = match spawn(&shared, opts) {
        Ok(s) => s,
        Err(e) => {
            shared.shutdown();
            return Err(e);
        }
    };
    events.mounted(&MountInfo {
        mountpoint: opts.mountpoint.clone(),
        snapshots: shared.snapshot_count(),
        auto_unmount: auto_unmount_problem.is_none(),
        auto_unmount_problem,
        cleared_stale,
    });
    let started = Instant::now();
    let ended = loop {
        if events.stop_requested() {
            break Ended::Stopped;
        }
        if session.guard.is_finished() {
            break Ended::Unmounted;
        }
        std::thread::sleep(POLL);
    };
    let clean = unmount(session, &opts.mountpoint);
    shared.shutdown();
    Ok(MountReport {
        mounted: true,
        ended,
        duration: started.elapsed(),
        blobs_fetched: shared.blobs_fetched(),
        clean,
    })
}

/// Mounts; returns the session and, if the mount could not be made with
/// auto-unmount, why.
fn spawn(
    shared: &Arc<fs::Shared>,
    opts: &MountOptions,
) -> Result<(BackgroundSession, Option<String>)> {
    let base = vec![
        MountOption::RO,
        MountOption::NoSuid,
        MountOption::NoDev,
        MountOption::FSName("cairn".into()),
        MountOption::Subtype("cairn".into()),
        // The kernel checks permissions against the recorded modes and
        // owners, as on the original file system.
        MountOption::DefaultPermissions,
    ];
    let mut config = Config::default();
    config.n_threads = Some(opts.threads.max(1));
    config.clone_fd = true;
    // First choice: fusermount's auto-unmount, which needs the kernel's
    // allow_other; fuser then lets in only root and this user, unless
    // other users are wanted.
    config.mount_options = base.clone();
    config.mount_options.push(MountOption::AutoUnmount);
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::RootAndOwner
    };
    let first = match fuser::spawn_mount(fs::CairnFs(shared.clone()), &opts.mountpoint, &config) {
        Ok(s) => return Ok((s, None)),
        Err(e) => one_line(&e),
    };
    // A missing fusermount, or a user who may not use allow_other: mount
    // without auto-unmount.
    config.mount_options = base;
    config.acl = if opts.allow_other {
        SessionACL::All
    } else {
        SessionACL::Owner
    };
    match fuser::spawn_mount(fs::CairnFs(shared.clone()), &opts.mountpoint, &config) {
        Ok(s) => Ok((s, Some(first))),
        Err(e) => Err(Error::InvalidInput(format!(
            "cannot mount at {}: {}",
            opts.mountpoint.display(),
            one_line(&e)
        ))),
    }
}

/// An error (a helper's stderr, say) as one line.
fn one_line(e: &std::io::Error) -> String {
    let s = e.to_string();
    let s: Vec<&str> = s.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    if s.is_empty() {
        format!("{:?}", e.kind())
    } else {
        s.join("; ")
    }
}

/// Unmounts and waits for the session to end; if the file system is still
/// in use after [`UNMOUNT_WAIT`], detaches it. Returns whether it ended
/// cleanly.
fn unmount(session: BackgroundSession, mountpoint: &Path) -> bool {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(session.umount_and_join().is_ok());
    });
    match rx.recv_timeout(UNMOUNT_WAIT) {
        Ok(true) => true,
        _ => {
            detach(mountpoint);
            false
        }
    }
}

/// Detaches whatever is mounted at `mountpoint` (lazily: programs using it
/// keep their files until they close them). As root directly, else through
/// the setuid `fusermount`.
fn detach(mountpoint: &Path) -> bool {
    let Ok(c) = CString::new(mountpoint.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: c is a valid NUL-terminated path.
    if unsafe { libc::umount2(c.as_ptr(), libc::MNT_DETACH) } == 0 {
        return true;
    }
    ["fusermount3", "fusermount"].iter().any(|bin| {
        std::process::Command::new(bin)
            .args(["-u", "-z", "--"])
            .arg(mountpoint)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    })
}

/// Whether `mountpoint` is a FUSE mount whose process is gone ("transport
/// endpoint is not connected"); such a mount is detached. Returns whether
/// one was.
fn clear_stale_mount(mountpoint: &Path) -> bool {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => detach(mountpoint),
        _ => false,
    }
}

fn check_mountpoint(mp: &Path) -> Result<()> {
    let shown = mp.display();
    match std::fs::metadata(mp) {
        // A stale mount: cleared when mounting.
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::InvalidInput(format!(
            "{shown}: the mount point does not exist (create an empty directory)"
        ))),
        Err(e) => Err(Error::io(mp, e)),
        Ok(md) if !md.is_dir() => Err(Error::InvalidInput(format!(
            "{shown}: the mount point is not a directory"
        ))),
        Ok(_) => match std::fs::read_dir(mp).map(|mut entries| entries.next().is_some()) {
            Ok(true) => Err(Error::InvalidInput(format!(
                "{shown}: the mount point is not empty"
            ))),
            Ok(false) => Ok(()),
            Err(e) => Err(Error::io(mp, e)),
        },
    }
}

/// Whether this process can use FUSE: `/dev/fuse` opens.
fn fuse_available() -> Result<()> {
    let dev = "/dev/fuse";
    let e = match std::fs::OpenOptions::new().read(true).write(true).open(dev) {
        Ok(_) => return Ok(()),
        Err(e) => e,
    };
    Err(Error::InvalidInput(match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "FUSE is not available: {dev} does not exist (load the kernel module with `modprobe fuse`, install fuse3; in a container, pass the device, e.g. --device /dev/fuse)"
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "FUSE is not available: no permission to open {dev} (is this user allowed to use FUSE?)"
        ),
        _ => format!("FUSE is not available: {dev}: {e}"),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mount_point_must_be_an_empty_directory() {
        let d = tempfile::tempdir().unwrap();
        check_mountpoint(d.path()).unwrap();
        let missing = d.path().join("nope");
        let e = check_mountpoint(&missing).unwrap_err().to_string();
        assert!(e.contains("does not exist"), "{e}");
        std::fs::write(d.path().join("f"), b"x").unwrap();
        let e = check_mountpoint(d.path()).unwrap_err().to_string();
        assert!(e.contains("not empty"), "{e}");
        let e = check_mountpoint(&d.path().join("f"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a directory"), "{e}");
    }

    #[test]
    fn helper_errors_become_one_line() {
        let e = std::io::Error::other("fusermount: failed\n  because\n");
        assert_eq!(one_line(&e), "fusermount: failed; because");
    }
}
