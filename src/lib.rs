//! cairn: a content-addressed, deduplicating, encrypted backup repository.
//!
//! The crate is layered so that dependencies point one way:
//!
//! * [`cli`-level commands](crate::backup) (`backup`, `restore`, ...) use
//! * [`repo`] (an opened repository: keys, config, index, snapshots), which uses
//! * [`backend`] (where bytes live), [`crypto`] (keys and sealing), and the
//!   metadata model ([`tree`], [`snapshot`], [`pack`], [`index`], [`config`], [`keyfile`]).
//!
//! Every decoder of bytes read from a repository lives in one module each and
//! returns a typed [`Error`]; none of them panics on malformed input. The byte
//! format is described in `format-spec/` at the top of the source tree.

pub mod backend;
pub mod backup;
pub mod blob;
pub mod browse;
pub mod check;
pub mod chunker;
pub mod config;
pub mod content;
pub mod crypto;
pub mod delta;
pub mod envelope;
pub mod error;
pub mod forget;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod packer;
pub mod prune;
pub mod reachable;
pub mod repair;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod snapshot;
pub mod sqlite;
pub mod stats;
pub mod timespec;
pub mod tree;
pub mod walk;

pub use error::{Error, Result};
pub use id::Id;
