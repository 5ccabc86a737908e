//! `cat`: repository objects decoded and shown as JSON.

use crate::backend::FileKind;
use crate::commands::select::SnapshotSelector;
use crate::commands::views;
use crate::error::{Error, Result};
use crate::format::chunker::DatabaseChunking;
use crate::format::id::Id;
use crate::format::pack::{self, PackEntry};
use crate::repository::Repository;
use serde_json::{Value, json};

/// The kinds of object `cat` shows.
pub const KINDS: &str = "config, snapshot, key, index, pack or tree";

/// Decodes the object of `kind` named by `id` (a prefix; for `tree` also
/// `SNAPSHOT:PATH`) as JSON; a snapshot is chosen by `snapshot` when given
/// (`latest`, a time, filters), else by `id`.
pub fn cat<S>(
    repo: &Repository<S>,
    kind: &str,
    id: Option<&str>,
    snapshot: Option<&SnapshotSelector>,
) -> Result<Value> {
    let need_id = || id.ok_or_else(|| Error::InvalidInput(format!("cat {kind} needs an id")));
    match kind {
        "config" => Ok(config_json(repo)),
        "snapshot" => {
            let (id, s) = match snapshot {
                Some(sel) => sel.resolve(repo)?,
                None => SnapshotSelector::id(need_id()?).resolve(repo)?,
            };
            Ok(views::snapshot_json(&id, &s))
        }
        "key" => {
            let id = match id {
                Some(p) => repo.find_file(FileKind::Key, p)?,
                None => repo.key_id(),
            };
            Ok(serde_json::to_value(repo.key_info(&id)?).unwrap_or(Value::Null))
        }
        "index" => {
            let id = repo.find_file(FileKind::Index, need_id()?)?;
            let f = repo.read_index_file(&id)?;
            Ok(json!({
                "id": id.to_hex(),
                "supersedes": f.supersedes.iter().map(|i| i.to_hex()).collect::<Vec<_>>(),
                "packs": f.packs.iter().map(|p| json!({"id": p.id.to_hex(), "blobs": p.blobs.iter().map(entry_json).collect::<Vec<_>>()})).collect::<Vec<_>>(),
            }))
        }
        "pack" => {
            let id = repo.find_file(FileKind::Pack, need_id()?)?;
            let what = crate::backend::Handle::new(FileKind::Pack, id).rel_path();
            let entries = pack::parse(repo.key(), &repo.read_pack(&id)?, &what)?;
            Ok(
                json!({"id": id.to_hex(), "blobs": entries.iter().map(entry_json).collect::<Vec<_>>()}),
            )
        }
        "tree" => tree_json(repo, need_id()?),
        other => Err(Error::InvalidInput(format!(
            "unknown object type {other:?}: use {KINDS}"
        ))),
    }
}

fn config_json<S>(repo: &Repository<S>) -> Value {
    let c = repo.config();
    json!({
        "version": c.version,
        "id": hex::encode(c.id),
        "chunker": {"min_size": c.chunker.min_size, "avg_size": c.chunker.avg_size, "max_size": c.chunker.max_size},
        "compression_level": c.compression_level,
        "pack_size": c.pack_size,
        "database_chunking": match c.database_chunking {
            None => json!(null),
            Some(DatabaseChunking::FixedPages { pages }) => json!({"mode": "fixed", "pages": pages}),
            Some(DatabaseChunking::PageCdc { min_pages, avg_pages, max_pages }) => json!({"mode": "cdc", "min_pages": min_pages, "avg_pages": avg_pages, "max_pages": max_pages}),
        },
    })
}

/// A tree by id, or the listing of `SNAPSHOT:PATH` (which may be inline,
/// without an id of its own).
fn tree_json<S>(repo: &Repository<S>, arg: &str) -> Result<Value> {
    let repo = repo.with_full_index()?;
    let (tree_id, t) = match arg.split_once(':') {
        Some((snap, path)) => {
            let (_, s) = SnapshotSelector::id(snap).resolve(&repo)?;
            let node = crate::repository::browse::lookup(&repo, &s.tree, path)?;
            if !node.is_dir() {
                return Err(Error::InvalidInput(format!("{path} is not a directory")));
            }
            (node.subtree, repo.listing(&node)?.into_owned())
        }
        None => {
            let id = Id::from_hex(arg).ok_or_else(|| {
                Error::InvalidInput("a tree id is 64 hex digits, or SNAPSHOT:PATH".into())
            })?;
            (Some(id), repo.load_tree(&id)?)
        }
    };
    Ok(
        json!({"id": tree_id.map(|i| i.to_hex()), "inline": tree_id.is_none(), "nodes": views::tree_json(&t)}),
    )
}

fn entry_json(e: &PackEntry) -> Value {
    json!({"type": e.kind.name(), "id": e.id.to_hex(), "offset": e.offset, "length": e.length, "raw_length": e.raw_length})
}
