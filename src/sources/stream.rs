//! Streams a backup stores as a file: standard input, or a command's
//! standard output (`pg_dump`, `mysqldump`, ...).
//!
//! The command's standard error passes through to ours and its last lines
//! are kept for the error message; a command that exits non-zero fails the
//! backup whatever was read, so a truncated dump is never saved as if it
//! were complete.

use crate::error::{Error, Result};
use std::ffi::OsString;
use std::io::Read;

/// Runs `cmd` with its standard output piped to `consume`. Its standard
/// error passes through to ours, and its last lines are kept for the error
/// if it fails. A command that exits non-zero is an error, whatever
/// `consume` returned.
pub fn run_command<T>(
    cmd: &[OsString],
    consume: impl FnOnce(&mut dyn Read) -> Result<T>,
) -> Result<T> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let shown = cmd
        .iter()
        .map(|a| a.to_string_lossy())
        .collect::<Vec<_>>()
        .join(" ");
    let mut command = Command::new(&cmd[0]);
    // The repository password is cairn's, not the command's.
    for (name, _) in std::env::vars_os() {
        if secret_variable(&name) {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(&cmd[1..])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| Error::InvalidInput(format!("cannot run {shown:?}: {e}")))?;
    let mut stderr = child.stderr.take().expect("piped stderr");
    let tail = std::thread::spawn(move || {
        const KEEP: usize = 4096;
        let mut tail: Vec<u8> = Vec::new();
        let mut buf = [0u8; 8192];
        loop {
            match stderr.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let _ = std::io::stderr().write_all(&buf[..n]);
                    tail.extend_from_slice(&buf[..n]);
                    if tail.len() > 2 * KEEP {
                        tail.drain(..tail.len() - KEEP);
                    }
                }
            }
        }
        let start = tail.len().saturating_sub(KEEP);
        String::from_utf8_lossy(&tail[start..]).into_owned()
    });
    let mut stdout = child.stdout.take().expect("piped stdout");
    let result = consume(&mut stdout);
    if result.is_err() {
        let _ = child.kill();
    }
    drop(stdout);
    let status = child.wait().map_err(|e| Error::io(&cmd[0], e))?;
    let tail = tail.join().unwrap_or_default();
    if !status.success() {
        use std::os::unix::process::ExitStatusExt;
        let desc = match (status.code(), status.signal()) {
            (Some(c), _) => format!("exit status {c}"),
            (None, Some(sig)) => format!("killed by signal {sig}"),
            _ => status.to_string(),
        };
        let lines: Vec<&str> = tail.lines().collect();
        let stderr_tail = lines[lines.len().saturating_sub(10)..].join("\n");
        return Err(Error::CommandFailed {
            command: shown,
            status: desc,
            code: status.code(),
            stderr_tail,
        });
    }
    result
}

/// Whether an environment variable carries one of cairn's passwords
/// (`CAIRN_PASSWORD`, `CAIRN_FROM_PASSWORD`, ...), which a child must not see.
pub fn secret_variable(name: &std::ffi::OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("CAIRN_") && name.contains("PASSWORD")
}

/// Reads into `buf`, retrying reads interrupted by signals.
pub fn read_retry(f: &mut dyn Read, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        match f.read(buf) {
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}
