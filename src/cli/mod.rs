//! Command-line parsing, password handling, output and exit codes.
//!
//! Everything that decides *what* happens lives in the library; this module
//! turns arguments into library calls and results into text or JSON.

mod args;
mod commands;
mod output;
mod password;

use clap::Parser;

/// Exit code: success.
pub const EXIT_OK: i32 = 0;
/// Exit code: an error; nothing (more) was done.
pub const EXIT_ERROR: i32 = 1;
/// Exit code: the snapshot was saved, but some source entries could not be read.
pub const EXIT_PARTIAL: i32 = 3;
/// Exit code: the repository does not exist.
pub const EXIT_NO_REPOSITORY: i32 = 10;
/// Exit code: the repository is locked by another process.
pub const EXIT_LOCKED: i32 = 11;
/// Exit code: wrong password.
pub const EXIT_WRONG_PASSWORD: i32 = 12;

/// Parses arguments, runs the command, prints one error line on failure.
pub fn main() -> i32 {
    let cli = match args::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let code = if e.use_stderr() { EXIT_ERROR } else { EXIT_OK };
            let _ = e.print();
            return code;
        }
    };
    match commands::run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("cairn: error: {e:#}");
            match e.downcast_ref::<cairn::Error>() {
                Some(cairn::Error::NotARepository(_)) => EXIT_NO_REPOSITORY,
                Some(cairn::Error::WrongPassword) => EXIT_WRONG_PASSWORD,
                Some(cairn::Error::Locked(_)) => EXIT_LOCKED,
                _ => EXIT_ERROR,
            }
        }
    }
}
