//! `init`: create a repository.

use crate::error::{Error, Result};
use crate::repository::{Connection, Repository};

pub use crate::format::chunker::{ChunkerParams, DatabaseChunking};
pub use crate::format::crypto::KdfParams;
pub use crate::repository::InitOptions;

/// What `init` created.
#[derive(Debug)]
pub struct InitReport {
    /// The repository's id (hex).
    pub id: String,
    /// Where it is.
    pub location: String,
}

/// Creates a repository at the connection's location with `password` as
/// its first key. Refuses a location that holds anything. With `share_with`,
/// the new repository shares that one's chunker parameters and chunking and
/// blob-id secrets (`--copy-chunker-params`), so `copy` between them moves
/// only new blobs.
pub fn init(
    conn: Connection,
    password: &[u8],
    opts: &InitOptions,
    share_with: Option<&Repository>,
) -> Result<InitReport> {
    let location = conn.location();
    if conn.exists_or_no_bucket()? {
        return Err(Error::AlreadyExists(format!(
            "{location}: a repository already exists here; refusing to overwrite it"
        )));
    }
    let repo = match share_with {
        Some(source) => conn.init_sharing(password, opts, source)?,
        None => conn.init(password, opts)?,
    };
    Ok(InitReport {
        id: repo.id_hex(),
        location,
    })
}

/// Parses how database files are cut: `fixed:PAGES` (groups of pages) or
/// `cdc:MIN:AVG:MAX` (content-defined cuts at page boundaries, in pages).
pub fn parse_db_chunking(s: &str) -> Result<DatabaseChunking> {
    let bad = |why: String| Error::InvalidInput(format!("--db-chunking {s:?}: {why}"));
    let parts: Vec<&str> = s.split(':').collect();
    let num = |p: &str| -> Result<u32> {
        p.trim()
            .parse()
            .map_err(|_| bad(format!("{p:?} is not a number")))
    };
    let d = match parts.as_slice() {
        ["fixed", n] => DatabaseChunking::FixedPages { pages: num(n)? },
        ["cdc", a, b, c] => DatabaseChunking::PageCdc {
            min_pages: num(a)?,
            avg_pages: num(b)?,
            max_pages: num(c)?,
        },
        _ => return Err(bad("use fixed:PAGES or cdc:MIN:AVG:MAX".into())),
    };
    d.validate().map_err(bad)?;
    Ok(d)
}
