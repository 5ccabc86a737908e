//! The metadata-only walk that gives progress displays a total and an ETA.

use super::normalize;
use crate::commands::progress::Counters;
use crate::sources::walk::PatternSet;
use std::path::PathBuf;
use std::sync::atomic::Ordering;

/// Walks the sources once, counting regular files and their bytes into the
/// totals of `counters`. Only metadata is read; exclusions are honoured;
/// errors are ignored here (the backup itself reports them).
pub(super) fn scan_totals(paths: &[PathBuf], excludes: &[String], counters: &Counters) {
    let Ok(patterns) = PatternSet::new(excludes) else {
        return;
    };
    let mut stack: Vec<PathBuf> = paths
        .iter()
        .filter_map(|p| std::path::absolute(p).ok())
        .map(|p| normalize(&p))
        .collect();
    while let Some(p) = stack.pop() {
        if patterns.matches(&p) {
            continue;
        }
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        } else if md.is_file() {
            counters.total_files.fetch_add(1, Ordering::Relaxed);
            counters.total_bytes.fetch_add(md.len(), Ordering::Relaxed);
        }
    }
    counters.totals_known.store(true, Ordering::Relaxed);
}
