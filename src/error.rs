//! One error type for the library.
//!
//! Errors name the repository file they concern where there is one, so the
//! command line can print a single line a user can act on ("pack data/ab/ab12…:
//! authentication failed") instead of a bare "invalid data".

use std::path::PathBuf;

/// Library result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// An I/O error on a named path. The message already includes the
    /// I/O error, so it is not also reported as this error's source (a
    /// printed chain would repeat it).
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    /// A repository file is damaged, truncated, or was tampered with.
    #[error("{file}: {problem}")]
    Corrupt { file: String, problem: String },
    /// A repository file does not exist (the backend said so).
    #[error("{file}: no such file in the repository")]
    NotFound { file: String },
    /// The storage could not be reached or refused a request (a network
    /// error, a server error that outlasted the retries, missing
    /// permissions). `file` names what was being accessed.
    #[error("{file}: {message}")]
    Backend { file: String, message: String },
    /// The bucket of an object-storage location does not exist.
    #[error("{location}: bucket {bucket} does not exist (`cairn init` creates it)")]
    NoSuchBucket { location: String, bucket: String },
    /// The operation was cancelled (by the user or a signal).
    #[error("cancelled")]
    Cancelled,
    /// No key file could be opened with the given password.
    #[error("wrong password or no key file matches it")]
    WrongPassword,
    /// The location is not a cairn repository.
    #[error("{0}: not a cairn repository (no config file)")]
    NotARepository(String),
    /// `init` on a location that already holds something.
    #[error("{0}")]
    AlreadyExists(String),
    /// A snapshot selector matched nothing.
    #[error("no snapshot matches {0:?}")]
    SnapshotNotFound(String),
    /// A snapshot id prefix matched several snapshots.
    #[error("snapshot id prefix {0:?} is ambiguous: it matches {1} snapshots")]
    AmbiguousSnapshot(String, usize),
    /// The user asked for something that does not make sense.
    #[error("{0}")]
    InvalidInput(String),
    /// A path inside a snapshot does not exist.
    #[error("{0}: no such file or directory in the snapshot")]
    PathNotFound(String),
    /// The storage refused an operation these credentials may not do
    /// (delete with backup-only credentials).
    #[error("{0}")]
    PermissionDenied(String),
    /// The repository is locked by another process.
    #[error("{0}")]
    Locked(String),
    /// A command whose output was being backed up failed.
    #[error("command {command:?} failed ({status}); no snapshot was saved{}", if stderr_tail.is_empty() { String::new() } else { format!("; its stderr ends with:\n{stderr_tail}") })]
    CommandFailed {
        /// The command line.
        command: String,
        /// How it ended ("exit status 1", "signal 9").
        status: String,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// The last lines of its standard error.
        stderr_tail: String,
    },
}

impl Error {
    /// Builds a [`Error::Corrupt`] for a repository file.
    pub fn corrupt(file: impl Into<String>, problem: impl Into<String>) -> Self {
        Error::Corrupt {
            file: file.into(),
            problem: problem.into(),
        }
    }

    /// Builds a [`Error::NotFound`] for a repository file.
    pub fn not_found(file: impl Into<String>) -> Self {
        Error::NotFound { file: file.into() }
    }

    /// Whether this says a repository file does not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            error: source,
        }
    }
}

/// Adds the path to an `io::Result`.
pub trait IoContext<T> {
    /// Attach `path` to the error.
    fn at(self, path: impl Into<PathBuf>) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn at(self, path: impl Into<PathBuf>) -> Result<T> {
        self.map_err(|e| Error::io(path, e))
    }
}
