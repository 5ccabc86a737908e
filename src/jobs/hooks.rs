//! Commands around a job and HTTP pings to a monitor (healthchecks.io,
//! Uptime Kuma and the like). Both are bounded in time: a hook that hangs
//! is killed at its timeout, a monitor that does not answer costs at most
//! `timeout × (retries + 1)` plus short pauses, and a failed ping is
//! reported but never fails the backup.

use crate::error::{Error, Result};
use crate::jobs::config::{CommandLine, PingConfig};
use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Default limit for one hook.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(300);
/// Default limit for one ping attempt.
pub const PING_TIMEOUT: Duration = Duration::from_secs(10);
/// Default further attempts after a failed ping.
pub const PING_RETRIES: u32 = 2;

/// Runs a hook (`sh -c` line or argument list) with `env` added and
/// cairn's passwords removed from its environment; kills it (and its
/// process group) at `timeout`. Its output (standard output and error) is
/// appended to `output`.
pub fn run_hook(
    cmd: &CommandLine,
    env: &[(&str, String)],
    timeout: Duration,
    output: &mut String,
) -> Result<()> {
    let argv = cmd.argv();
    let shown = cmd.display();
    let mut c = Command::new(&argv[0]);
    c.args(&argv[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (name, _) in std::env::vars_os() {
        if crate::sources::stream::secret_variable(&name) {
            c.env_remove(name);
        }
    }
    for (k, v) in env {
        c.env(k, v);
    }
    std::os::unix::process::CommandExt::process_group(&mut c, 0);
    let mut child = c
        .spawn()
        .map_err(|e| Error::InvalidInput(format!("hook {shown:?}: cannot start: {e}")))?;
    // Drain both pipes so a chatty hook cannot block on a full pipe.
    let mut readers = Vec::new();
    for pipe in [
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        readers.push(std::thread::spawn(move || {
            let mut out = Vec::new();
            let _ = { pipe }.read_to_end(&mut out);
            out
        }));
    }
    let start = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if start.elapsed() >= timeout => {
                // SAFETY: signals the process group the child leads.
                unsafe {
                    libc::kill(-(child.id() as i32), libc::SIGKILL);
                }
                let _ = child.wait();
                break None;
            }
            Ok(None) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => return Err(Error::InvalidInput(format!("hook {shown:?}: {e}"))),
        }
    };
    let mut bytes = Vec::new();
    for r in readers {
        bytes.extend(r.join().unwrap_or_default());
    }
    let text = String::from_utf8_lossy(&bytes);
    output.push_str(&text);
    let last = text.lines().last().unwrap_or("").trim().to_string();
    match status {
        None => Err(Error::InvalidInput(format!(
            "hook {shown:?} did not finish within {}s and was killed",
            timeout.as_secs()
        ))),
        Some(s) if s.success() => Ok(()),
        Some(s) => Err(Error::InvalidInput(format!(
            "hook {shown:?} failed ({s}){}",
            if last.is_empty() {
                String::new()
            } else {
                format!(": {last}")
            }
        ))),
    }
}

/// Posts `body` (JSON) to `url`, retrying; returns a warning when every
/// attempt failed (the job goes on either way).
pub fn ping(url: &str, body: &serde_json::Value, cfg: &PingConfig) -> Option<String> {
    let timeout = cfg.timeout.map_or(PING_TIMEOUT, |d| d.0);
    let attempts = cfg.retries.unwrap_or(PING_RETRIES).min(10) + 1;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return Some(format!("ping {url}: {e}")),
    };
    let client = match reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout)
        .build()
    {
        Ok(c) => c,
        Err(e) => return Some(format!("ping {url}: {e}")),
    };
    let payload = body.to_string();
    let mut last = String::new();
    for attempt in 0..attempts {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 << attempt.min(4)));
        }
        let sent = rt.block_on(async {
            client
                .post(url)
                .header("content-type", "application/json")
                .header("user-agent", concat!("cairn/", env!("CARGO_PKG_VERSION")))
                .body(payload.clone())
                .send()
                .await
        });
        match sent {
            Ok(r) if r.status().is_success() => return None,
            Ok(r) => last = format!("HTTP {}", r.status()),
            Err(e) => last = e.to_string(),
        }
    }
    Some(format!(
        "ping {url} failed after {attempts} attempts: {last}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hooks_report_failures_and_time_out() {
        let mut out = String::new();
        run_hook(
            &CommandLine::Shell("true".into()),
            &[],
            HOOK_TIMEOUT,
            &mut out,
        )
        .unwrap();
        let e = run_hook(
            &CommandLine::Shell("echo nope; exit 3".into()),
            &[],
            HOOK_TIMEOUT,
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("nope") && e.contains('3'), "{e}");
        let env = [("CAIRN_JOB", "db".to_string())];
        run_hook(
            &CommandLine::Argv(vec![
                "sh".into(),
                "-c".into(),
                "test \"$CAIRN_JOB\" = db".into(),
            ]),
            &env,
            HOOK_TIMEOUT,
            &mut out,
        )
        .unwrap();
        let started = Instant::now();
        let e = run_hook(
            &CommandLine::Shell("sleep 30".into()),
            &[],
            Duration::from_millis(200),
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("killed"), "{e}");
        assert!(started.elapsed() < Duration::from_secs(20));
        let e = run_hook(
            &CommandLine::Argv(vec!["/nonexistent/hook".into()]),
            &[],
            HOOK_TIMEOUT,
            &mut out,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("cannot start"), "{e}");
    }

    #[test]
    fn a_ping_to_nobody_is_a_warning() {
        let cfg = PingConfig {
            timeout: Some(crate::jobs::config::Dur(Duration::from_secs(2))),
            retries: Some(0),
            ..Default::default()
        };
        // A port nobody listens on: refused at once.
        let w = ping("http://127.0.0.1:9/", &serde_json::json!({}), &cfg);
        assert!(w.is_some());
    }
}
