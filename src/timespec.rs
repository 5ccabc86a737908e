//! Times accepted on the command line.
//!
//! RFC 3339 (`2026-11-28T14:00:00Z`, `2026-11-28T15:00:00+01:00`), or local
//! time as `YYYY-MM-DD HH:MM[:SS]` (a `T` may stand for the space), or a bare
//! `YYYY-MM-DD` (local midnight). A local time that does not exist (skipped by
//! a daylight-saving change) is an error; an ambiguous one takes the earlier.

use crate::error::{Error, Result};
use chrono::{DateTime, FixedOffset, Local, NaiveDate, NaiveDateTime, TimeZone};

/// Parses a time as described in the module docs.
pub fn parse_time(s: &str) -> Result<DateTime<FixedOffset>> {
    let s = s.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(s) {
        return Ok(t);
    }
    let naive = ["%Y-%m-%d %H:%M:%S%.f", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S%.f", "%Y-%m-%dT%H:%M"]
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(s, f).ok())
        .or_else(|| {
            NaiveDate::parse_from_str(s, "%Y-%m-%d")
                .ok()
                .and_then(|d| d.and_hms_opt(0, 0, 0))
        })
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "cannot parse time {s:?}: use RFC 3339 (2026-11-28T14:00:00Z) or local \"YYYY-MM-DD HH:MM[:SS]\""
            ))
        })?;
    Local
        .from_local_datetime(&naive)
        .earliest()
        .map(|t| t.fixed_offset())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "local time {s:?} does not exist (daylight saving change)"
            ))
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepted_forms() {
        let t = parse_time("2026-11-28T14:00:00Z").unwrap();
        assert_eq!(t.timestamp(), 1795874400);
        let t = parse_time("2026-11-28T15:00:00+01:00").unwrap();
        assert_eq!(t.timestamp(), 1795874400);
        assert!(parse_time("2026-11-28 14:00").is_ok());
        assert!(parse_time("2026-11-28 14:00:05").is_ok());
        assert!(parse_time("2026-11-28").is_ok());
        assert!(parse_time("yesterday").is_err());
        assert!(parse_time("2026-13-01 00:00").is_err());
    }
}
