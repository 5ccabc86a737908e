//! Jobs: one configuration file that replaces a page of cron lines and
//! wrapper scripts. A job makes one snapshot (paths, SQLite databases,
//! command streams) and then keeps the repository in shape: retention,
//! prune when due, copies offsite, verification on a rotation. Hooks and
//! HTTP pings tell the outside world; a state directory remembers what
//! happened, for `status` and for Prometheus.
//!
//! This layer sits above [`crate::commands`] and calls them as a user
//! would; it adds no repository format of its own. Each snapshot a job
//! makes carries the tag `job:NAME`, which is how retention, copies and
//! status find the job's snapshots.

pub mod config;
pub mod hooks;
pub mod run;
pub mod schedule;
pub mod state;
pub mod status;
