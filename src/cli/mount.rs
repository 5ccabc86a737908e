//! `cairn mount`: the arguments into one call of
//! [`cairn::commands::mount::mount`], which serves until told to stop;
//! Ctrl-C, SIGTERM and SIGHUP tell it (a second signal ends the process at
//! once, and the auto-unmount helper still removes the mount).
//!
//! This file is a child module of `commands.rs` (included with `#[path]`),
//! so it uses `Ctx` and the filter helpers there as they are.

use super::{Ctx, filter};
use crate::cli::EXIT_OK;
use crate::cli::args::MountArgs;
use crate::cli::output::{self, print_json};
use anyhow::{Result, bail};
use cairn::commands::mount::{self as cmd, Ended, MountEvents, MountInfo, MountOptions};
use serde_json::json;
use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by the signal handler.
static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Makes SIGINT, SIGTERM and SIGHUP ask the mount to stop. Each handler
/// runs once (`SA_RESETHAND`): a second signal has its default effect.
fn catch_signals() -> Result<()> {
    for sig in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        // SAFETY: an all-zero sigaction is valid to fill in; the handler
        // only stores to an atomic, which is async-signal-safe.
        let rc = unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as *const () as usize;
            sa.sa_flags = libc::SA_RESTART | libc::SA_RESETHAND;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut())
        };
        if rc != 0 {
            bail!(
                "cannot handle signal {sig}: {}",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}

/// What the mount tells the terminal.
struct Shell {
    json: bool,
    quiet: bool,
}

impl MountEvents for Shell {
    fn mounted(&self, i: &MountInfo) {
        let at = i.mountpoint.display();
        if i.cleared_stale {
            err!("cairn: warning: removed a stale mount at {at}");
        }
        if let Some(why) = &i.auto_unmount_problem {
            err!(
                "cairn: warning: mounted without auto-unmount ({}); if cairn is killed, `fusermount -u {at}` removes the mount",
                output::escape(why)
            );
        }
        if self.json {
            let _ = print_json(&json!({
                "message_type": "mounted",
                "mountpoint": i.mountpoint.to_string_lossy(),
                "snapshots": i.snapshots,
                "auto_unmount": i.auto_unmount,
            }));
        } else if !self.quiet {
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "serving {} snapshots at {at}; press Ctrl-C or run `umount {at}` to unmount",
                i.snapshots
            );
            let _ = out.flush();
        }
    }

    fn problem(&self, message: &str) {
        err!("cairn: error: {}", output::escape(message));
    }

    fn stop_requested(&self) -> bool {
        STOP.load(Ordering::SeqCst)
    }
}

pub(super) fn mount(ctx: &Ctx, a: &MountArgs) -> Result<i32> {
    let opts = MountOptions {
        mountpoint: a.mountpoint.clone(),
        filter: filter(&a.filter),
        allow_other: a.allow_other,
        ..MountOptions::default()
    };
    // Before the password: a missing directory or FUSE fails at once.
    opts.validate()?;
    let repo = ctx.open()?;
    catch_signals()?;
    let shell = Arc::new(Shell {
        json: ctx.g.json,
        quiet: ctx.g.quiet,
    });
    let r = cmd::mount(&repo, &opts, shell)?;
    if !r.clean {
        err!(
            "cairn: warning: {} was still in use; it was detached (programs reading from it got errors)",
            opts.mountpoint.display()
        );
    }
    if ctx.g.json {
        print_json(&json!({
            "message_type": "summary",
            "mounted": r.mounted,
            "ended": match r.ended {
                Ended::Stopped => "signal",
                Ended::Unmounted => "unmounted",
            },
            "clean": r.clean,
            "blobs_fetched": r.blobs_fetched,
            "duration_seconds": r.duration.as_secs_f64(),
        }))?;
    } else if ctx.text() && r.mounted {
        out!("unmounted {}", opts.mountpoint.display());
    }
    Ok(EXIT_OK)
}
