//! The bytes cairn writes, and nothing else: no I/O happens here.
//!
//! Every object a repository holds has its encoder and its decoder in this
//! layer, one module per kind of object, described byte for byte in
//! `format-spec/`. Decoders take untrusted bytes and a name for the object
//! (`what`), check every length and value before trusting it, and return
//! [`crate::Error::Corrupt`] naming the object; none of them panics or
//! allocates more than the input justifies. Each has a fuzz target in
//! `fuzz/` and known-answer vectors in `tests/format_vectors.rs`.
//!
//! Layering: `format` depends on nothing but [`crate::error`]. The storage
//! (`backend`), the repository logic (`repository`) and the commands build
//! on it; it never calls up.

pub mod blob;
pub mod chunker;
pub mod config;
pub mod content;
pub mod crypto;
pub mod envelope;
pub mod forget;
pub mod id;
pub mod index;
pub mod keyfile;
pub mod lock;
pub mod pack;
pub mod snapshot;
pub mod tree;
pub mod wal;
