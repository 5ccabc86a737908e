//! cairn: a content-addressed, deduplicating, encrypted backup repository.
//!
//! The crate is layered; each layer is a folder and depends only on the
//! layers before it:
//!
//! 1. [`format`]: the bytes cairn writes, encoders and decoders, no I/O;
//! 2. [`backend`]: where bytes live (a local folder, memory), behind one
//!    trait with a written contract;
//! 3. [`repository`]: an opened repository (keys, config, index, blobs,
//!    packer, snapshots, locks) on any backend;
//! 4. [`commands`]: one module per command, typed options in, typed report
//!    out; [`sources`] (file walk, SQLite copies, streams) feed `backup`.
//!
//! Beside the layers: [`patterns`] (path globs), [`timespec`] (times and
//! durations on the command line), [`sys`] (the few system calls).
//!
//! The `cairn` binary (`src/main.rs`, `src/cli/`) is a thin shell over
//! [`commands`]. See ARCHITECTURE.md for the rules and where new things go.

pub mod backend;
pub mod commands;
pub mod error;
pub mod format;
pub mod jobs;
pub mod patterns;
pub mod repository;
pub mod sources;
pub mod sys;
pub mod timespec;

pub use error::{Error, Result};
pub use format::id::Id;
pub use repository::Repository;
