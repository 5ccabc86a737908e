//! Times, durations and sizes accepted on the command line.
//!
//! Durations: a number and a unit, repeated: `30s`, `5m`, `26h`, `2d`,
//! `1w`, `1d12h` (seconds, minutes, hours, days, weeks).
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

/// Parses a duration like `30s`, `5m`, `26h`, `2d`, `1w` or `1d12h`.
pub fn parse_duration(s: &str) -> Result<std::time::Duration> {
    let bad = |why: &str| Error::InvalidInput(format!("bad duration {s:?}: {why}"));
    let mut total = 0u64;
    let mut num = String::new();
    let mut any = false;
    for c in s.trim().chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let n: u64 = num
            .parse()
            .map_err(|_| bad("use e.g. 30s, 5m, 26h, 2d, 1w"))?;
        num.clear();
        let unit = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86400,
            'w' => 7 * 86400,
            _ => return Err(bad(&format!("unknown unit {c:?} (use s, m, h, d, w)"))),
        };
        total = total.saturating_add(n.saturating_mul(unit));
        any = true;
    }
    if !num.is_empty() {
        return Err(bad("a number needs a unit (s, m, h, d, w)"));
    }
    if !any {
        return Err(bad("use e.g. 30s, 5m, 26h, 2d, 1w"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Parses a size like `500M`, `2G`, `1.5T` or `4096` (bytes; K, M, G, T
/// are powers of 1024).
pub fn parse_size(s: &str) -> Result<u64> {
    let bad = || Error::InvalidInput(format!("bad size {s:?}: use e.g. 500M or 2G"));
    let t = s.trim();
    let (num, mult) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => {
            let m: u64 = match c.to_ascii_uppercase() {
                'K' => 1 << 10,
                'M' => 1 << 20,
                'G' => 1 << 30,
                'T' => 1 << 40,
                'B' => 1,
                _ => return Err(bad()),
            };
            (&t[..i], m)
        }
        _ => (t, 1),
    };
    let v: f64 = num.trim().parse().map_err(|_| bad())?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(bad());
    }
    Ok((v * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s").unwrap().as_secs(), 30);
        assert_eq!(parse_duration("1d12h").unwrap().as_secs(), 36 * 3600);
        assert_eq!(parse_duration("0s").unwrap().as_secs(), 0);
        for bad in ["", "5", "forever", "3x", "h"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
    }

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
