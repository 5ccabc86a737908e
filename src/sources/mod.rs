//! What a backup reads: the file system (walk, exclusion patterns, entry
//! metadata), consistent copies of live SQLite databases, and streams
//! (standard input or a command's output).
//!
//! These modules know nothing of repositories; `commands::backup` turns
//! what they produce into blobs and trees.

pub mod postgres;
pub mod sqlite;
pub mod stream;
pub mod walk;
