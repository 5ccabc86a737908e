//! One module per command: typed options in, a typed report out, progress
//! through [`progress::Progress`].
//!
//! A command takes an open [`crate::repository::Repository`], takes the lock
//! it needs, loads the index it needs, does its work, and returns what
//! happened; it prints nothing. The CLI (`src/cli`) parses arguments into
//! these options and renders these reports; a job runner or a mount can
//! call the same functions. [`views`] holds the JSON shapes all of them
//! print, [`select`] how one snapshot is chosen.

pub mod backup;
pub mod cat;
pub mod check;
pub mod copy;
pub mod diff;
pub mod dump;
pub mod find;
pub mod forget;
pub mod init;
pub mod key;
pub mod ls;
pub mod mount;
pub mod pg;
pub mod progress;
pub mod prune;
pub mod repair;
pub mod restore;
pub mod retention;
pub mod select;
pub mod snapshots;
pub mod stats;
pub mod tag;
pub mod views;
pub mod wal;
