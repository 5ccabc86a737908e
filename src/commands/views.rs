//! The JSON shapes cairn prints (documented in the README), and the time
//! formats shared by text and JSON output.
//!
//! They live in the library so that every shell (the CLI, a job runner, a
//! mount) describes snapshots, nodes and databases the same way.

use crate::format::id::Id;
use crate::format::snapshot::{DatabaseRecord, PostgresRecord, Snapshot};
use crate::format::tree::{Node, Tree};
use serde_json::{Value, json};

/// A snapshot's time in its own offset, RFC 3339 with nanoseconds.
pub fn rfc3339(s: &Snapshot) -> String {
    s.datetime()
        .to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// A snapshot's time in local time, for tables.
pub fn local_time(s: &Snapshot) -> String {
    s.datetime()
        .with_timezone(&chrono::Local)
        .format("%Y-%m-%d %H:%M:%S")
        .to_string()
}

/// JSON form of a snapshot.
pub fn snapshot_json(id: &Id, s: &Snapshot) -> Value {
    let m = &s.summary;
    json!({
        "id": id.to_hex(),
        "short_id": id.short(),
        "time": rfc3339(s),
        "hostname": s.hostname,
        "username": s.username,
        "uid": s.uid,
        "gid": s.gid,
        "paths": s.paths,
        "tags": s.tags,
        "tree": s.tree.to_hex(),
        "parent": s.parent.map(|p| p.to_hex()),
        "replaces": s.replaces.map(|p| p.to_hex()),
        "program_version": s.program_version,
        "summary": {
            "files_new": m.files_new,
            "files_changed": m.files_changed,
            "files_unchanged": m.files_unchanged,
            "dirs": m.dirs,
            "total_files": m.total_files,
            "total_bytes": m.total_bytes,
            "bytes_read": m.bytes_read,
            "blobs_added": m.blobs_added,
            "data_added": m.bytes_added,
            "data_added_stored": m.bytes_added_stored,
            "errors": m.errors,
            "backup_start": chrono::DateTime::from_timestamp_nanos(m.started_ns).to_rfc3339(),
            "backup_end": chrono::DateTime::from_timestamp_nanos(m.finished_ns).to_rfc3339(),
        },
        "error_messages": s.error_messages,
        "databases": s.databases.iter().map(database_json).collect::<Vec<_>>(),
        "postgres": s.postgres.as_ref().map(postgres_json),
    })
}

/// Unix seconds as RFC 3339 UTC (empty if out of range).
pub fn unix_rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0).map_or_else(String::new, |t| t.to_rfc3339())
}

/// JSON form of a PostgreSQL base backup record (the system identifier as
/// a string: JSON numbers lose digits past 2^53).
pub fn postgres_json(p: &PostgresRecord) -> Value {
    use crate::format::wal::{format_lsn, segment_name_for_lsn};
    json!({
        "system_id": p.system_id.to_string(),
        "server_version": p.server_version,
        "data_directory": p.data_directory,
        "timeline": p.timeline,
        "stop_timeline": p.stop_timeline,
        "start_lsn": format_lsn(p.start_lsn),
        "stop_lsn": format_lsn(p.stop_lsn),
        "start_wal": segment_name_for_lsn(p.timeline, p.start_lsn, p.segment_size),
        "segment_size": p.segment_size,
        "started": unix_rfc3339(p.started),
        "stopped": unix_rfc3339(p.stopped),
        "xmin": p.xmin,
    })
}

/// JSON form of a database record.
pub fn database_json(d: &DatabaseRecord) -> Value {
    json!({
        "path": d.path,
        "type": "sqlite",
        "size": d.size,
        "page_size": d.page_size,
        "page_count": d.page_count,
        "schema_hash": hex::encode(d.schema_hash),
        "tables": d.tables.iter().map(|t| json!({"name": t.name, "rows": t.rows})).collect::<Vec<_>>(),
        "total_rows": d.tables.iter().map(|t| t.rows).fold(0u64, u64::saturating_add),
        "check": d.check.pragma(),
        "check_ok": d.check_ok,
        "check_messages": d.check_messages,
        "journal_mode": d.journal_mode,
    })
}

/// Node modification time as RFC 3339 (UTC).
pub fn node_mtime(n: &Node) -> String {
    chrono::DateTime::from_timestamp(n.mtime, n.mtime_nsec)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

/// JSON form of a tree node at `path`.
pub fn node_json(path: &str, n: &Node) -> Value {
    json!({
        "path": path,
        "name": n.display_name(),
        "type": n.kind.name(),
        "size": n.size,
        "mode": format!("{:o}", n.mode),
        "uid": n.uid,
        "gid": n.gid,
        "mtime": node_mtime(n),
        "inode": n.inode,
        "links": n.links,
        "link_target": if n.link_target.is_empty() { Value::Null } else { Value::String(String::from_utf8_lossy(&n.link_target).into_owned()) },
        "content_blobs": n.content.len(),
        "content_depth": n.content_depth,
        "delta_base": n.delta_base.as_ref().map_or(Value::Null, |b| json!({
            "depth": b.depth,
            "content_blobs": b.content.len(),
        })),
    })
}

/// Blob ids as a JSON array of hex strings.
fn ids_json(ids: &[Id]) -> Value {
    ids.iter().map(|id| Value::String(id.to_hex())).collect()
}

/// A tree for `cat tree`: every node with its blob ids, and inline
/// listings nested in place, so the output identifies the content.
pub fn tree_json(tree: &Tree) -> Vec<Value> {
    tree.nodes
        .iter()
        .map(|n| {
            let mut v = node_json(&n.display_name(), n);
            v["content"] = ids_json(&n.content);
            v["subtree"] = n
                .subtree
                .map_or(Value::Null, |id| Value::String(id.to_hex()));
            if let Some(b) = &n.delta_base {
                v["delta_base"]["content"] = ids_json(&b.content);
            }
            v["inline"] = n
                .inline
                .as_ref()
                .map_or(Value::Null, |t| Value::Array(tree_json(t)));
            v
        })
        .collect()
}
