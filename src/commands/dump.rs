//! `dump`: one file of a snapshot, streamed to a writer.

use crate::commands::select::SnapshotSelector;
use crate::error::{Error, Result};
use crate::format::tree::{Node, NodeKind};
use crate::repository::blobs::RunGrouper;
use crate::repository::{Locate, Repository};
use std::io::Write;
use std::path::Path;

/// Largest run of blobs read with one request.
const RUN_MAX_BYTES: u64 = 1 << 20;

/// Writes the content of the file at `path` in the selected snapshot to
/// `out`, under a shared lock; returns the bytes written. A write error
/// (a closed pipe among them) is returned as [`Error::Io`] naming the output.
pub fn dump<S>(
    repo: &Repository<S>,
    selector: &SnapshotSelector,
    path: &Path,
    out: &mut dyn Write,
) -> Result<u64> {
    let repo = repo.with_full_index()?;
    let (_, snap) = selector.resolve(&repo)?;
    let node = crate::repository::browse::lookup(&repo, &snap.tree, path)?;
    if node.kind != NodeKind::File {
        return Err(Error::InvalidInput(format!(
            "{}: is a {}, not a file",
            path.display(),
            node.kind.name()
        )));
    }
    write_file(&repo, &node, out, "standard output")
}

/// Writes the content of the file `node` to `out` (named `out_name` in
/// errors), reading neighbouring blobs with one request; returns the bytes
/// written.
pub fn write_file<S: Locate>(
    repo: &Repository<S>,
    node: &Node,
    out: &mut dyn Write,
    out_name: &str,
) -> Result<u64> {
    let mut written = 0u64;
    let mut write_run = |run: &crate::repository::BlobRun| -> Result<()> {
        for data in repo.read_run(run)? {
            out.write_all(&data).map_err(|e| Error::io(out_name, e))?;
            written += data.len() as u64;
        }
        Ok(())
    };
    let mut runs = RunGrouper::new(RUN_MAX_BYTES);
    for b in repo.file_blobs(node)? {
        if let Some((run, _)) = runs.push(b?) {
            write_run(&run)?;
        }
    }
    if let Some((run, _)) = runs.finish() {
        write_run(&run)?;
    }
    out.flush().map_err(|e| Error::io(out_name, e))?;
    Ok(written)
}
