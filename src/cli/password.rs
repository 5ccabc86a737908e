//! Where the repository password comes from, in restic's order: the
//! `CAIRN_PASSWORD` environment variable, `--password-file` (or
//! `CAIRN_PASSWORD_FILE`), `--password-command`, else a prompt on a terminal.

use anyhow::{Context, Result, bail};
use std::io::IsTerminal;
use std::path::Path;

/// Password sources given on the command line.
pub struct Sources<'a> {
    pub file: Option<&'a Path>,
    pub command: Option<&'a str>,
}

fn strip_newline(mut s: Vec<u8>) -> Vec<u8> {
    if s.last() == Some(&b'\n') {
        s.pop();
        if s.last() == Some(&b'\r') {
            s.pop();
        }
    }
    s
}

/// Whether getting the password means asking at the terminal.
pub fn needs_prompt(var: &str, src: &Sources) -> bool {
    std::env::var_os(var).is_none() && src.file.is_none() && src.command.is_none()
}

/// Gets the password; `confirm` asks twice at a prompt (for new passwords).
pub fn get(src: &Sources, prompt: &str, confirm: bool) -> Result<Vec<u8>> {
    get_from("CAIRN_PASSWORD", src, prompt, confirm)
}

/// Like [`get`], with the password variable `var` (`CAIRN_FROM_PASSWORD`
/// for the source repository of `copy`).
pub fn get_from(var: &str, src: &Sources, prompt: &str, confirm: bool) -> Result<Vec<u8>> {
    if let Some(p) = std::env::var_os(var) {
        use std::os::unix::ffi::OsStringExt;
        return Ok(p.into_vec());
    }
    if let Some(f) = src.file {
        let bytes =
            std::fs::read(f).with_context(|| format!("reading password file {}", f.display()))?;
        return Ok(strip_newline(bytes));
    }
    if let Some(cmd) = src.command {
        let out = std::process::Command::new("sh")
            .arg("-c")
            .arg(cmd)
            .stdin(std::process::Stdio::inherit())
            .stderr(std::process::Stdio::inherit())
            .output()
            .with_context(|| format!("running password command {cmd:?}"))?;
        if !out.status.success() {
            bail!("password command {cmd:?} failed ({})", out.status);
        }
        return Ok(strip_newline(out.stdout));
    }
    prompt_tty(prompt, confirm)
}

/// Prompts on the terminal, without echo.
pub fn prompt_tty(prompt: &str, confirm: bool) -> Result<Vec<u8>> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no password given: set CAIRN_PASSWORD, CAIRN_PASSWORD_FILE, --password-file or --password-command (stdin is not a terminal)"
        );
    }
    let p = rpassword::prompt_password(prompt).context("reading password")?;
    if confirm {
        let again =
            rpassword::prompt_password("enter password again: ").context("reading password")?;
        if again != p {
            bail!("passwords do not match");
        }
    }
    Ok(p.into_bytes())
}
