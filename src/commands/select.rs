//! Choosing one snapshot: a unique id prefix, `latest`, or the newest at or
//! before a time, among those passing a filter.

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::snapshot::Snapshot;
use crate::repository::{Repository, SnapshotFilter};
use chrono::{DateTime, FixedOffset};

/// Which snapshot a command works on.
#[derive(Clone, Debug)]
pub struct SnapshotSelector {
    how: How,
    /// Only snapshots passing this filter are considered.
    pub filter: SnapshotFilter,
}

#[derive(Clone, Debug)]
enum How {
    /// An id prefix or `latest`.
    Id(String),
    /// The newest at or before a time.
    At(DateTime<FixedOffset>),
}

impl SnapshotSelector {
    /// A selector from an id prefix (or `latest`) and/or a time: exactly one
    /// of them must be given.
    pub fn new(
        id: Option<&str>,
        at: Option<DateTime<FixedOffset>>,
        filter: SnapshotFilter,
    ) -> Result<SnapshotSelector> {
        let how = match (id, at) {
            (Some(_), Some(_)) => {
                return Err(Error::InvalidInput(
                    "give either a snapshot id or --at, not both".into(),
                ));
            }
            (Some(id), None) => How::Id(id.to_string()),
            (None, Some(t)) => How::At(t),
            (None, None) => {
                return Err(Error::InvalidInput(
                    "which snapshot? give an id prefix, \"latest\", or --at TIME".into(),
                ));
            }
        };
        Ok(SnapshotSelector { how, filter })
    }

    /// A selector for an id prefix or `latest`, unfiltered.
    pub fn id(id: &str) -> SnapshotSelector {
        SnapshotSelector {
            how: How::Id(id.to_string()),
            filter: SnapshotFilter::default(),
        }
    }

    /// Finds the snapshot in `repo`.
    pub fn resolve<S>(&self, repo: &Repository<S>) -> Result<(Id, Snapshot)> {
        match &self.how {
            How::Id(sel) => repo.find_snapshot(sel, &self.filter),
            How::At(t) => {
                repo.find_snapshot_at((t.timestamp(), t.timestamp_subsec_nanos()), &self.filter)
            }
        }
    }
}
