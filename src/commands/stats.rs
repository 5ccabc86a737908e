//! Repository statistics: what the snapshots hold and what it costs to store.

use crate::error::Result;
use crate::repository::Repository;
use crate::repository::reachable::reachable;
use serde::Serialize;

/// Figures reported by `cairn stats`.
#[derive(Debug, Default, Serialize)]
pub struct Stats {
    /// Number of snapshots.
    pub snapshots: usize,
    /// Logical size of the newest snapshot's files.
    pub latest_logical_bytes: u64,
    /// Sum of the logical sizes of all snapshots.
    pub total_logical_bytes: u64,
    /// Plaintext bytes of the distinct blobs the snapshots reference.
    pub unique_raw_bytes: u64,
    /// Stored (compressed, encrypted) bytes of those blobs.
    pub unique_stored_bytes: u64,
    /// Bytes of all pack files.
    pub pack_bytes: u64,
    /// Bytes of all repository files (packs, index, snapshots, keys, config).
    pub repository_bytes: u64,
    /// total_logical_bytes / unique_raw_bytes.
    pub dedup_ratio: f64,
    /// unique_raw_bytes / unique_stored_bytes.
    pub compression_ratio: f64,
    /// Blobs in the index.
    pub blobs: usize,
    /// Data blobs referenced.
    pub data_blobs_used: usize,
    /// Tree blobs referenced.
    pub tree_blobs_used: usize,
    /// Pack files.
    pub packs: usize,
    /// Stored bytes of blobs neither a snapshot nor archived WAL references.
    pub unused_bytes: u64,
    /// Archived PostgreSQL WAL files.
    pub wal_files: usize,
    /// Their logical size.
    pub wal_bytes: u64,
    /// Stored bytes of the blobs only archived WAL references.
    pub wal_stored_bytes: u64,
}

/// Computes the statistics under a shared lock.
pub fn stats<S>(repo: &Repository<S>) -> Result<Stats> {
    let repo = repo.with_full_index()?;
    let snaps = repo.load_snapshots()?;
    let used = reachable(&repo, snaps.iter().map(|(_, s)| s.tree))?;
    let mut st = Stats {
        snapshots: snaps.len(),
        latest_logical_bytes: snaps
            .last()
            .map(|(_, s)| s.summary.total_bytes)
            .unwrap_or(0),
        total_logical_bytes: snaps
            .iter()
            .map(|(_, s)| s.summary.total_bytes)
            .fold(0u64, u64::saturating_add),
        blobs: repo.index().len(),
        data_blobs_used: used.data.len(),
        tree_blobs_used: used.trees.len(),
        ..Default::default()
    };
    let wal = repo.load_wal_records()?;
    st.wal_files = wal.records.len();
    st.wal_bytes = wal
        .records
        .iter()
        .map(|(_, w)| w.size)
        .fold(0u64, u64::saturating_add);
    let wal_blobs: std::collections::HashSet<crate::format::id::Id> = wal
        .records
        .iter()
        .flat_map(|(_, w)| w.content.iter().copied())
        .collect();
    for (id, _, loc) in repo.index().iter() {
        if used.contains(id) {
            st.unique_raw_bytes += loc.raw_length as u64;
            st.unique_stored_bytes += loc.length as u64;
        } else if wal_blobs.contains(id) {
            st.wal_stored_bytes += loc.length as u64;
        } else {
            st.unused_bytes += loc.length as u64;
        }
    }
    let packs = repo.list_packs()?;
    st.packs = packs.len();
    st.pack_bytes = packs.iter().map(|(_, size)| size).sum();
    st.repository_bytes = repo.storage_bytes()?;
    let data_raw: u64 = used
        .data
        .iter()
        .filter_map(|id| repo.locate(id).map(|(_, l)| l.raw_length as u64))
        .sum();
    st.dedup_ratio = if data_raw > 0 {
        st.total_logical_bytes as f64 / data_raw as f64
    } else {
        0.0
    };
    st.compression_ratio = if st.unique_stored_bytes > 0 {
        st.unique_raw_bytes as f64 / st.unique_stored_bytes as f64
    } else {
        0.0
    };
    Ok(st)
}
