//! Retention policies for `cairn forget`, with restic's exact semantics.
//!
//! # Why a bit-for-bit copy of restic
//!
//! People move to cairn with retention schedules (`--keep-daily 7 --keep-weekly 5 ...`) that they
//! tuned against restic and run from cron. A retention policy is the one place where "almost the
//! same" is dangerous: an off-by-one in a bucket boundary silently deletes a snapshot someone
//! expected to keep. So this module does not try to improve on restic; it reproduces
//! `ApplyPolicy` from restic's `snapshot_policy.go`, including its quirks, and is checked
//! against restic's own golden files (`tests/retention_restic_data.rs`). Where we deviate, it is
//! only to avoid panics or integer wrap-around on absurd inputs, and it is called out below.
//!
//! # The non-obvious rules, and the reasons behind them
//!
//! * **Newest first, stable.** Snapshots are walked from newest to oldest; snapshots with the
//!   same instant keep their input order. Which of two equal-time snapshots is kept depends on
//!   that order, so callers should pass snapshots in a deterministic order.
//! * **`within*` is relative to the newest snapshot, not to the clock.** The reference time is
//!   the newest snapshot that is not in the future. A machine that stopped backing up months ago
//!   must not lose its last backups just because time passed; snapshots with a future timestamp
//!   (a skewed clock) are ignored as reference so they cannot push everything else out.
//! * **Calendar arithmetic is Go's `time.AddDate`.** The cutoff is
//!   `latest.AddDate(-y, -m, -d) - h hours`, and Go *normalises* rather than clamps: March 31
//!   minus one month is "February 31", i.e. March 3 (March 2 in leap years). chrono's month
//!   arithmetic clamps to February 28/29 instead, which would move the cutoff by days, so we do
//!   our own civil-date normalisation. A snapshot is inside the window only if it is *strictly*
//!   after the cutoff.
//! * **Buckets are computed in each snapshot's own UTC offset.** "Daily" means the calendar day
//!   where the snapshot was taken, which is what a user reading `cairn snapshots` sees. Weekly
//!   buckets are ISO weeks (`iso_year * 100 + iso_week`), so a week spanning New Year is one
//!   bucket.
//! * **One snapshot may satisfy several rules at once.** Every rule sees every snapshot; a
//!   snapshot that is both the newest daily and the newest weekly consumes one count of each.
//!   (borg and Proxmox do it differently; we follow restic.)
//! * **The oldest snapshot is kept while any count is left.** If a count bucket (or a `within-X`
//!   bucket whose window reaches the oldest snapshot) still has room when the walk reaches the
//!   oldest snapshot, that snapshot is kept even if its bucket was already used, with the reason
//!   prefixed `oldest `. This keeps the longest possible history when there are fewer snapshots
//!   than the policy allows.
//! * **Tags and `within` are not counted**, and `-1` means "unlimited" for the counts.
//! * **An empty policy removes everything here.** [`apply_policy`] is a pure function and, like
//!   restic's, keeps nothing when [`Policy::is_empty`] is true. The command layer must treat an
//!   empty policy as a no-op (restic: "no policy was specified, no snapshots will be removed")
//!   and must refuse to remove every snapshot of a group unless explicitly allowed.
//!
//! Known, deliberate differences from restic, all outside sane inputs: restic's Go integers wrap
//! around for durations of hundreds of years expressed in hours, and its parser panics on
//! numbers that do not fit an `int`; we compute in 128-bit integers and reject such numbers.
//! restic also evaluates `AddDate` in the time zone Go attached to the snapshot time, which is
//! the machine's local zone (with its DST rules) when the offset happens to match it; we always
//! use the snapshot's fixed offset, so results do not depend on the machine's time zone.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Datelike, FixedOffset, Timelike, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// What the policy needs to know about a snapshot; the caller maps its own snapshot type to
/// this and maps the returned indices back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// When the snapshot was taken, in the offset it was recorded with. Bucket boundaries
    /// (hour, day, week, month, year) are computed in this offset.
    pub time: DateTime<FixedOffset>,
    /// The snapshot's tags, matched against [`Policy::tags`].
    pub tags: Vec<String>,
}

/// A calendar duration such as `1y2m3d4h`, as accepted by `--keep-within*`.
///
/// This is not a fixed number of seconds: months and years are applied to the calendar date
/// (with Go's normalisation, see the module docs). An all-zero duration means "not set".
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct Duration {
    pub years: i32,
    pub months: i32,
    pub days: i32,
    pub hours: i32,
}

impl Duration {
    /// True if every part is zero; a zero duration disables the rule it is used for.
    pub fn is_zero(&self) -> bool {
        self.years == 0 && self.months == 0 && self.days == 0 && self.hours == 0
    }
}

impl fmt::Display for Duration {
    /// Prints the canonical form restic uses in reasons: parts in `y m d h` order, zero parts
    /// omitted (`1y1d1m` prints as `1y1m1d`). restic prints an all-zero duration as an empty
    /// string but never shows one; we print `0d` instead so that the output parses back.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_zero() {
            return f.write_str("0d");
        }
        for (value, unit) in [
            (self.years, 'y'),
            (self.months, 'm'),
            (self.days, 'd'),
            (self.hours, 'h'),
        ] {
            if value != 0 {
                write!(f, "{value}{unit}")?;
            }
        }
        Ok(())
    }
}

/// Why a duration string was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseDurationError {
    /// The input was empty or only whitespace.
    Empty,
    /// A `-` sign was found; restic's parser accepts negative parts, but a negative retention
    /// window would reach into the future and is almost certainly a mistake.
    Negative,
    /// Something other than a digit was found where a number was expected.
    ExpectedNumber { found: char },
    /// A number was not followed by a unit.
    MissingUnit { number: i32 },
    /// A number was followed by something other than `y`, `m`, `d` or `h`.
    InvalidUnit { number: i32, unit: char },
    /// A number does not fit in 32 bits.
    TooLarge { number: String },
}

impl fmt::Display for ParseDurationError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const FORMAT: &str = "expected a duration like \"1y2m3d4h\" (years, months, days, hours)";
        match self {
            Self::Empty => write!(f, "empty duration, {FORMAT}"),
            Self::Negative => write!(f, "negative durations are not allowed, {FORMAT}"),
            Self::ExpectedNumber { found } => {
                write!(f, "expected a number but found {found:?}, {FORMAT}")
            }
            Self::MissingUnit { number } => {
                write!(f, "no unit found after number {number}, {FORMAT}")
            }
            Self::InvalidUnit { number, unit } => {
                write!(f, "invalid unit {unit:?} after number {number}, {FORMAT}")
            }
            Self::TooLarge { number } => write!(f, "number {number} in duration is too large"),
        }
    }
}

impl std::error::Error for ParseDurationError {}

impl FromStr for Duration {
    type Err = ParseDurationError;

    /// Parses `NyNmNdNh`: any subset of the parts, in any order (`m` is months). Surrounding
    /// whitespace is ignored. As in restic, a unit given twice takes the last value
    /// (`1d2d` = `2d`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut rest = s.trim();
        if rest.is_empty() {
            return Err(ParseDurationError::Empty);
        }
        let mut d = Duration::default();
        while let Some(first) = rest.chars().next() {
            if first == '-' {
                return Err(ParseDurationError::Negative);
            }
            let digits_end = rest
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(rest.len());
            if digits_end == 0 {
                return Err(ParseDurationError::ExpectedNumber { found: first });
            }
            let digits = &rest[..digits_end];
            let number: i32 = digits.parse().map_err(|_| ParseDurationError::TooLarge {
                number: digits.to_string(),
            })?;
            rest = &rest[digits_end..];
            let mut chars = rest.chars();
            match chars.next() {
                None => return Err(ParseDurationError::MissingUnit { number }),
                Some('y') => d.years = number,
                Some('m') => d.months = number,
                Some('d') => d.days = number,
                Some('h') => d.hours = number,
                Some(unit) => return Err(ParseDurationError::InvalidUnit { number, unit }),
            }
            rest = chars.as_str();
        }
        Ok(d)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let s = String::deserialize(deserializer)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a `--keep-*` count was rejected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ParseKeepCountError {
    /// Not an integer and not `unlimited`.
    Invalid { input: String },
    /// A negative integer; `-1` is the internal encoding of "unlimited", but users must say so.
    Negative { value: i64 },
}

impl fmt::Display for ParseKeepCountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Invalid { input } => write!(
                f,
                "invalid count {input:?}: expected a non-negative integer or \"unlimited\""
            ),
            Self::Negative { value } => write!(
                f,
                "negative count {value} not allowed, use \"unlimited\" instead"
            ),
        }
    }
}

impl std::error::Error for ParseKeepCountError {}

/// Parses a `--keep-last/hourly/daily/weekly/monthly/yearly` value: a non-negative integer,
/// or `unlimited` (returned as `-1`). Like restic, negative numbers are rejected so that a
/// typo cannot silently mean "keep everything".
pub fn parse_keep_count(s: &str) -> Result<i64, ParseKeepCountError> {
    if s == "unlimited" {
        return Ok(-1);
    }
    let value: i64 = s.parse().map_err(|_| ParseKeepCountError::Invalid {
        input: s.to_string(),
    })?;
    if value < 0 {
        return Err(ParseKeepCountError::Negative { value });
    }
    Ok(value)
}

/// A retention policy. Counts: `0` = rule off, `-1` = unlimited, other negatives behave like
/// `0` (the CLI rejects them). `within*`: `None` or an all-zero duration = rule off.
#[derive(Default, Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Policy {
    pub last: i64,
    pub hourly: i64,
    pub daily: i64,
    pub weekly: i64,
    pub monthly: i64,
    pub yearly: i64,
    pub within: Option<Duration>,
    pub within_hourly: Option<Duration>,
    pub within_daily: Option<Duration>,
    pub within_weekly: Option<Duration>,
    pub within_monthly: Option<Duration>,
    pub within_yearly: Option<Duration>,
    /// Keep every snapshot that has all tags of at least one of these lists. An empty list
    /// matches every snapshot; a list containing `""` matches untagged snapshots (restic's
    /// `HasTags` rules).
    pub tags: Vec<Vec<String>>,
}

/// A `within*` value that actually takes effect.
fn active(d: Option<Duration>) -> Option<Duration> {
    d.filter(|d| !d.is_zero())
}

impl Policy {
    /// True if no rule is configured. [`apply_policy`] keeps nothing for such a policy; the
    /// caller decides what an empty policy means (restic's `forget` does nothing).
    pub fn is_empty(&self) -> bool {
        self.last == 0
            && self.hourly == 0
            && self.daily == 0
            && self.weekly == 0
            && self.monthly == 0
            && self.yearly == 0
            && self.within_rules().iter().all(|(d, _)| d.is_none())
            && active(self.within).is_none()
            && self.tags.is_empty()
    }

    fn count_rules(&self) -> [(i64, Period); 6] {
        [
            (self.last, Period::Last),
            (self.hourly, Period::Hourly),
            (self.daily, Period::Daily),
            (self.weekly, Period::Weekly),
            (self.monthly, Period::Monthly),
            (self.yearly, Period::Yearly),
        ]
    }

    fn within_rules(&self) -> [(Option<Duration>, Period); 5] {
        [
            (active(self.within_hourly), Period::Hourly),
            (active(self.within_daily), Period::Daily),
            (active(self.within_weekly), Period::Weekly),
            (active(self.within_monthly), Period::Monthly),
            (active(self.within_yearly), Period::Yearly),
        ]
    }
}

/// Formats a tag list the way Go prints restic's `TagList`: `[foo, bar]`.
fn tag_list(tags: &[String]) -> String {
    format!("[{}]", tags.join(", "))
}

impl fmt::Display for Policy {
    /// The one-line summary restic prints before applying a policy, e.g.
    /// `keep 7 daily, 4 weekly snapshots and all snapshots within 1m of the newest`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut counts = Vec::new();
        for (count, period) in self.count_rules() {
            let name = match period {
                Period::Last => "latest",
                other => other.name(),
            };
            if count > 0 {
                counts.push(format!("{count} {name}"));
            } else if count == -1 {
                counts.push(format!("all {name}"));
            }
        }
        let withins: Vec<String> = self
            .within_rules()
            .iter()
            .filter_map(|(d, period)| d.map(|d| format!("{} snapshots within {d}", period.name())))
            .collect();

        let mut s = String::new();
        if !counts.is_empty() {
            s = format!("{} snapshots", counts.join(", "));
        }
        if !withins.is_empty() {
            if !s.is_empty() {
                s.push_str(", ");
            }
            s.push_str(&withins.join(", "));
        }
        if !self.tags.is_empty() {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            let lists: Vec<String> = self.tags.iter().map(|l| tag_list(l)).collect();
            s.push_str(&format!("all snapshots with tags [{}]", lists.join(" ")));
        }
        if let Some(within) = active(self.within) {
            if !s.is_empty() {
                s.push_str(" and ");
            }
            s.push_str(&format!("all snapshots within {within} of the newest"));
        }
        if s.is_empty() {
            f.write_str("remove")
        } else {
            write!(f, "keep {s}")
        }
    }
}

/// Counts left in each count rule after a snapshot was considered, as restic reports them in
/// `forget --json`: `-1` stays `-1` (unlimited), `0` means the rule is off or used up.
/// Serialises with zero fields omitted, like restic.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counters {
    #[serde(skip_serializing_if = "is_zero")]
    pub last: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub hourly: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub daily: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub weekly: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub monthly: i64,
    #[serde(skip_serializing_if = "is_zero")]
    pub yearly: i64,
}

fn is_zero(v: &i64) -> bool {
    *v == 0
}

/// Why one snapshot is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeepReason {
    /// Index into the slice given to [`apply_policy`].
    pub index: usize,
    /// restic's reason strings, in restic's order: tags, `within`, count rules (last, hourly,
    /// daily, weekly, monthly, yearly), then `within-*` rules.
    pub matches: Vec<String>,
    /// Counts left after this snapshot.
    pub counters: Counters,
}

/// The outcome of [`apply_policy`]. Every input index is in exactly one of `keep` and
/// `remove`; both are ordered newest first; `reasons[i]` explains `keep[i]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub keep: Vec<usize>,
    pub remove: Vec<usize>,
    pub reasons: Vec<KeepReason>,
}

/// Applies `policy` to `snapshots` (one group, e.g. one host and path set), with "not in the
/// future" judged against the current wall-clock time.
pub fn apply_policy(snapshots: &[SnapshotInfo], policy: &Policy) -> Decision {
    apply_policy_at(snapshots, policy, Utc::now())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Period {
    Last,
    Hourly,
    Daily,
    Weekly,
    Monthly,
    Yearly,
}

impl Period {
    fn name(self) -> &'static str {
        match self {
            Period::Last => "last",
            Period::Hourly => "hourly",
            Period::Daily => "daily",
            Period::Weekly => "weekly",
            Period::Monthly => "monthly",
            Period::Yearly => "yearly",
        }
    }

    /// The bucket a snapshot falls into, with restic's encodings (`YYYYMMDDHH`, `YYYYMMDD`,
    /// ISO `YYYYWW`, `YYYYMM`, `YYYY`) in the snapshot's own offset. `Last` gives every
    /// snapshot its own bucket.
    fn bucket(self, t: &DateTime<FixedOffset>, nr: usize) -> i64 {
        let year = i64::from(t.year());
        let month = i64::from(t.month());
        let day = i64::from(t.day());
        let hour = i64::from(t.hour());
        match self {
            Period::Last => i64::try_from(nr).unwrap_or(i64::MAX),
            Period::Hourly => year * 1_000_000 + month * 10_000 + day * 100 + hour,
            Period::Daily => year * 10_000 + month * 100 + day,
            Period::Weekly => {
                let week = t.iso_week();
                i64::from(week.year()) * 100 + i64::from(week.week())
            }
            Period::Monthly => year * 100 + month,
            Period::Yearly => year,
        }
    }
}

/// restic's "no bucket seen yet" marker. It is a real bucket value for the (absurd) year -1,
/// which restic then never keeps via a yearly rule; we keep the marker to stay identical.
const NO_BUCKET: i64 = -1;

const NANOS_PER_SEC: i128 = 1_000_000_000;
const NANOS_PER_HOUR: i128 = 3_600 * NANOS_PER_SEC;
const NANOS_PER_DAY: i128 = 24 * NANOS_PER_HOUR;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: restic's starting value when
/// looking for the newest snapshot, which stays the reference if every snapshot is in the
/// future (or before year 1).
const GO_ZERO_TIME_UNIX: i128 = -62_135_596_800;

fn instant_nanos(t: &DateTime<FixedOffset>) -> i128 {
    i128::from(t.timestamp()) * NANOS_PER_SEC + i128::from(t.timestamp_subsec_nanos())
}

/// Days since 1970-01-01 of a proleptic Gregorian date (month 1..=12, day linear so it may
/// be out of range). Howard Hinnant's `days_from_civil`.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12; // March = 0
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Inverse of [`days_from_civil`] for in-range output: (year, month 1..=12, day 1..=31).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Go's `time.Date(year+years, month+months, day+days, ...)` date part: the month overflows
/// into the year, then the day overflows into following (or preceding) months. So
/// 2016-03-31 + (0, -1, 0) is "2016-02-31" = 2016-03-02.
fn go_add_date(
    (year, month, day): (i64, i64, i64),
    years: i64,
    months: i64,
    days: i64,
) -> (i64, i64, i64) {
    let month0 = month - 1 + months;
    let year = year + years + month0.div_euclid(12);
    let month = month0.rem_euclid(12) + 1;
    civil_from_days(days_from_civil(year, month, 1) + day - 1 + days)
}

/// The newest snapshot that is not in the future, as restic's `findLatestTimestamp`.
struct Reference {
    /// Unix nanoseconds.
    instant: i128,
    /// Calendar date in the reference's own offset.
    date: (i64, i64, i64),
}

/// `latest.AddDate(-y, -m, -d).Add(-h hours)` in Unix nanoseconds. Time of day and offset are
/// unchanged by `AddDate` with a fixed offset, so only the day difference matters.
fn cutoff(reference: &Reference, d: Duration) -> i128 {
    let shifted = go_add_date(
        reference.date,
        -i64::from(d.years),
        -i64::from(d.months),
        -i64::from(d.days),
    );
    let (y, m, day) = reference.date;
    let day_delta = days_from_civil(shifted.0, shifted.1, shifted.2) - days_from_civil(y, m, day);
    reference.instant + i128::from(day_delta) * NANOS_PER_DAY - i128::from(d.hours) * NANOS_PER_HOUR
}

/// restic's `Snapshot.HasTags`: all tags of `list` are present, except that an empty tag met
/// before any missing tag matches an untagged snapshot.
fn has_tags(snapshot_tags: &[String], list: &[String]) -> bool {
    for tag in list {
        if tag.is_empty() && snapshot_tags.is_empty() {
            return true;
        }
        if !snapshot_tags.contains(tag) {
            return false;
        }
    }
    true
}

/// [`apply_policy`] with an explicit "now", which only decides which snapshots count as "in
/// the future" when choosing the reference time for `within*` rules.
pub fn apply_policy_at(
    snapshots: &[SnapshotInfo],
    policy: &Policy,
    now: DateTime<Utc>,
) -> Decision {
    let mut order: Vec<usize> = (0..snapshots.len()).collect();
    // `sort_by` is stable; newest first, equal instants keep input order.
    order.sort_by(|&a, &b| snapshots[b].time.cmp(&snapshots[a].time));

    let mut decision = Decision::default();
    if order.is_empty() {
        return decision;
    }

    let now =
        i128::from(now.timestamp()) * NANOS_PER_SEC + i128::from(now.timestamp_subsec_nanos());
    let mut reference = Reference {
        instant: GO_ZERO_TIME_UNIX * NANOS_PER_SEC,
        date: (1, 1, 1),
    };
    for &i in &order {
        let t = &snapshots[i].time;
        let instant = instant_nanos(t);
        if instant > reference.instant && instant < now {
            reference = Reference {
                instant,
                date: (
                    i64::from(t.year()),
                    i64::from(t.month()),
                    i64::from(t.day()),
                ),
            };
        }
    }

    let within = active(policy.within).map(|d| (d, cutoff(&reference, d)));

    struct CountBucket {
        count: i64,
        period: Period,
        last: i64,
    }
    let mut count_buckets = policy.count_rules().map(|(count, period)| CountBucket {
        count,
        period,
        last: NO_BUCKET,
    });

    struct WithinBucket {
        duration: Duration,
        cutoff: i128,
        period: Period,
        last: i64,
    }
    let mut within_buckets: Vec<WithinBucket> = policy
        .within_rules()
        .iter()
        .filter_map(|&(d, period)| {
            d.map(|duration| WithinBucket {
                duration,
                cutoff: cutoff(&reference, duration),
                period,
                last: NO_BUCKET,
            })
        })
        .collect();

    let oldest = order.len() - 1;
    for (nr, &index) in order.iter().enumerate() {
        let snapshot = &snapshots[index];
        let instant = instant_nanos(&snapshot.time);
        let is_oldest = nr == oldest;
        let mut matches = Vec::new();

        for list in &policy.tags {
            if has_tags(&snapshot.tags, list) {
                matches.push(format!("has tags {}", tag_list(list)));
            }
        }

        if let Some((duration, cutoff)) = within
            && instant > cutoff
        {
            matches.push(format!("within {duration}"));
        }

        for bucket in &mut count_buckets {
            if bucket.count > 0 || bucket.count == -1 {
                let value = bucket.period.bucket(&snapshot.time, nr);
                if value != bucket.last || is_oldest {
                    let prefix = if value == bucket.last { "oldest " } else { "" };
                    matches.push(format!("{prefix}{} snapshot", bucket.period.name()));
                    bucket.last = value;
                    if bucket.count > 0 {
                        bucket.count -= 1;
                    }
                }
            }
        }

        for bucket in &mut within_buckets {
            if instant > bucket.cutoff {
                let value = bucket.period.bucket(&snapshot.time, nr);
                if value != bucket.last || is_oldest {
                    let prefix = if value == bucket.last { "oldest " } else { "" };
                    matches.push(format!(
                        "{prefix}{} within {}",
                        bucket.period.name(),
                        bucket.duration
                    ));
                    bucket.last = value;
                }
            }
        }

        if matches.is_empty() {
            decision.remove.push(index);
        } else {
            decision.keep.push(index);
            let [last, hourly, daily, weekly, monthly, yearly] =
                count_buckets.each_ref().map(|b| b.count);
            decision.reasons.push(KeepReason {
                index,
                matches,
                counters: Counters {
                    last,
                    hourly,
                    daily,
                    weekly,
                    monthly,
                    yearly,
                },
            });
        }
    }
    decision
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(time: &str) -> SnapshotInfo {
        SnapshotInfo {
            time: DateTime::parse_from_rfc3339(time).expect("test time"),
            tags: Vec::new(),
        }
    }

    fn tagged(time: &str, tags: &[&str]) -> SnapshotInfo {
        SnapshotInfo {
            tags: tags.iter().map(|t| t.to_string()).collect(),
            ..snap(time)
        }
    }

    fn dur(s: &str) -> Duration {
        s.parse().expect("test duration")
    }

    fn far_future() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2100-01-01T00:00:00Z")
            .expect("test time")
            .with_timezone(&Utc)
    }

    fn run(snapshots: &[SnapshotInfo], policy: &Policy) -> Decision {
        apply_policy_at(snapshots, policy, far_future())
    }

    fn matches_of(d: &Decision) -> Vec<Vec<&str>> {
        d.reasons
            .iter()
            .map(|r| r.matches.iter().map(String::as_str).collect())
            .collect()
    }

    // ---- Duration parsing and printing ----

    #[test]
    fn duration_parses_all_parts_in_any_order() {
        let d = dur("1y2m3d4h");
        assert_eq!(
            d,
            Duration {
                years: 1,
                months: 2,
                days: 3,
                hours: 4
            }
        );
        assert_eq!(dur("4h3d2m1y"), d);
        assert_eq!(dur("  13d23h\n"), dur("13d23h"));
        assert_eq!(dur("007d").days, 7);
        // restic: a repeated unit takes the last value.
        assert_eq!(dur("1d2d"), dur("2d"));
    }

    #[test]
    fn duration_prints_like_restic() {
        assert_eq!(dur("1y1d1m").to_string(), "1y1m1d");
        assert_eq!(dur("2m2h").to_string(), "2m2h");
        assert_eq!(dur("0y5d0h").to_string(), "5d");
        assert_eq!(dur("9999y").to_string(), "9999y");
        assert_eq!(
            dur("24h").to_string(),
            "24h",
            "hours are not folded into days"
        );
        // A zero duration prints as something that parses back.
        assert_eq!(Duration::default().to_string(), "0d");
        assert_eq!(dur("0d"), Duration::default());
        assert!(dur("0y0h").is_zero());
    }

    #[test]
    fn duration_rejects_garbage() {
        use ParseDurationError::*;
        let err = |s: &str| s.parse::<Duration>().expect_err(s);
        assert_eq!(err(""), Empty);
        assert_eq!(err(" \t"), Empty);
        assert_eq!(err("-1d"), Negative);
        assert_eq!(err("1d-2h"), Negative);
        assert_eq!(err("d"), ExpectedNumber { found: 'd' });
        assert_eq!(err("+1d"), ExpectedNumber { found: '+' });
        assert_eq!(err("1dx"), ExpectedNumber { found: 'x' });
        assert_eq!(err("1d 2h"), ExpectedNumber { found: ' ' });
        assert_eq!(err("١d"), ExpectedNumber { found: '١' });
        assert_eq!(err("5"), MissingUnit { number: 5 });
        assert_eq!(
            err("1.5d"),
            InvalidUnit {
                number: 1,
                unit: '.'
            }
        );
        assert_eq!(
            err("3w"),
            InvalidUnit {
                number: 3,
                unit: 'w'
            }
        );
        assert_eq!(
            err("3D"),
            InvalidUnit {
                number: 3,
                unit: 'D'
            }
        );
        assert_eq!(
            err("3é"),
            InvalidUnit {
                number: 3,
                unit: 'é'
            }
        );
        assert_eq!(
            err("99999999999d"),
            TooLarge {
                number: "99999999999".into()
            }
        );
        // Every error explains itself.
        assert!(err("3w").to_string().contains("invalid unit 'w'"));
    }

    #[test]
    fn duration_serde_round_trip() {
        let d = dur("1y1d1m");
        let json = serde_json::to_string(&d).expect("serialise");
        assert_eq!(json, "\"1y1m1d\"");
        assert_eq!(serde_json::from_str::<Duration>(&json).expect("parse"), d);
        assert!(serde_json::from_str::<Duration>("\"-1d\"").is_err());

        let policy: Policy =
            serde_json::from_str(r#"{"daily": 7, "within_weekly": "1m", "tags": [["foo"]]}"#)
                .expect("policy");
        assert_eq!(policy.daily, 7);
        assert_eq!(policy.within_weekly, Some(dur("1m")));
        assert_eq!(policy.tags, vec![vec!["foo".to_string()]]);
    }

    // ---- keep counts ----

    #[test]
    fn keep_count_parsing() {
        assert_eq!(parse_keep_count("0"), Ok(0));
        assert_eq!(parse_keep_count("7"), Ok(7));
        assert_eq!(parse_keep_count("unlimited"), Ok(-1));
        assert_eq!(parse_keep_count("-0"), Ok(0));
        assert_eq!(
            parse_keep_count("-1"),
            Err(ParseKeepCountError::Negative { value: -1 })
        );
        assert_eq!(
            parse_keep_count("-5"),
            Err(ParseKeepCountError::Negative { value: -5 })
        );
        for bad in [
            "",
            " 3",
            "3 ",
            "Unlimited",
            "all",
            "1.0",
            "99999999999999999999",
        ] {
            assert_eq!(
                parse_keep_count(bad),
                Err(ParseKeepCountError::Invalid { input: bad.into() }),
                "{bad:?}"
            );
        }
        assert!(
            parse_keep_count("-2")
                .expect_err("negative")
                .to_string()
                .contains("unlimited")
        );
    }

    // ---- Go AddDate normalisation ----

    #[test]
    fn civil_day_numbers() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(
            i128::from(days_from_civil(1, 1, 1)) * 86_400,
            GO_ZERO_TIME_UNIX
        );
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(
            days_from_civil(1900, 3, 1) - days_from_civil(1900, 2, 28),
            1
        );
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert!((1..=12).contains(&m) && (1..=31).contains(&d));
            assert_eq!(days_from_civil(y, m, d), days);
        }
    }

    #[test]
    fn go_add_date_normalises_instead_of_clamping() {
        // "February 31" overflows into March, as in Go.
        assert_eq!(go_add_date((2015, 3, 31), 0, -1, 0), (2015, 3, 3));
        assert_eq!(go_add_date((2016, 3, 31), 0, -1, 0), (2016, 3, 2));
        assert_eq!(go_add_date((2016, 2, 29), -1, 0, 0), (2015, 3, 1));
        assert_eq!(go_add_date((2016, 5, 31), 0, -1, 0), (2016, 5, 1));
        // Months underflow into years, days into months, with years crossing zero.
        assert_eq!(go_add_date((2016, 1, 15), 0, -13, 0), (2014, 12, 15));
        assert_eq!(go_add_date((2016, 3, 1), 0, 0, -1), (2016, 2, 29));
        assert_eq!(go_add_date((2016, 1, 18), -1, -2, -3), (2014, 11, 15));
        assert_eq!(go_add_date((2016, 1, 1), 0, 0, -366), (2014, 12, 31));
        assert_eq!(go_add_date((1, 1, 1), -1, 0, 0), (0, 1, 1));
        assert_eq!(go_add_date((1, 3, 1), 0, 0, -1), (1, 2, 28));
        assert_eq!(go_add_date((4, 3, 1), -4, 0, -1), (0, 2, 29));
        // Years and months are applied before days (Go adds all, then normalises once).
        assert_eq!(go_add_date((2015, 3, 31), 0, -1, -3), (2015, 2, 28));
    }

    #[test]
    fn within_uses_go_cutoff_and_is_strict() {
        // Cutoff = 2015-03-31T12:00Z "minus one month" = 2015-03-03T12:00Z.
        let snapshots = [
            snap("2015-03-31T12:00:00Z"),
            snap("2015-03-03T12:00:00.000000001Z"),
            snap("2015-03-03T12:00:00Z"),
            // chrono's clamping would put the cutoff at Feb 28 12:00 and keep this one.
            snap("2015-02-28T13:00:00Z"),
        ];
        let policy = Policy {
            within: Some(dur("1m")),
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        assert_eq!(d.keep, vec![0, 1]);
        assert_eq!(d.remove, vec![2, 3]);
        assert_eq!(matches_of(&d), vec![vec!["within 1m"]; 2]);

        // Hours are subtracted after the calendar step.
        let policy = Policy {
            within: Some(dur("28d2h")),
            ..Policy::default()
        };
        assert_eq!(run(&snapshots, &policy).keep, vec![0, 1, 2]);
    }

    #[test]
    fn within_cutoff_uses_the_reference_offset() {
        // Latest is March 31 local (+02:00) but March 30 in UTC; Go subtracts the month from
        // the local date: "Feb 31 00:30 +02:00" = March 3 00:30 +02:00 = March 2 22:30Z.
        let snapshots = [
            snap("2015-03-31T00:30:00+02:00"),
            snap("2015-03-02T22:30:01Z"),
            snap("2015-03-02T22:30:00Z"),
        ];
        let policy = Policy {
            within: Some(dur("1m")),
            ..Policy::default()
        };
        assert_eq!(run(&snapshots, &policy).keep, vec![0, 1]);
    }

    #[test]
    fn reference_is_newest_snapshot_not_in_the_future() {
        let now = DateTime::parse_from_rfc3339("2020-06-15T00:00:00Z")
            .expect("now")
            .with_timezone(&Utc);
        let snapshots = [
            snap("2020-01-10T00:00:00Z"),
            snap("2030-01-01T00:00:00Z"), // clock skew
            snap("2020-01-09T12:00:00Z"),
            snap("2020-01-08T00:00:00Z"),
        ];
        let policy = Policy {
            within: Some(dur("1d")),
            ..Policy::default()
        };
        let d = apply_policy_at(&snapshots, &policy, now);
        // Long after the last backup, "within 1d" still keeps the last day of backups.
        assert_eq!(d.keep, vec![1, 0, 2]);
        assert_eq!(d.remove, vec![3]);

        // If every snapshot is in the future, the reference is Go's zero time (year 1), so
        // every snapshot is inside any window.
        let d = apply_policy_at(&snapshots[1..2], &policy, now);
        assert_eq!(d.keep, vec![0]);
    }

    // ---- buckets ----

    #[test]
    fn buckets_use_each_snapshots_own_offset() {
        // Same UTC day, different local days.
        let snapshots = [
            snap("2016-01-10T23:30:00-05:00"), // 2016-01-11 04:30Z
            snap("2016-01-11T02:00:00+00:00"),
        ];
        let policy = Policy {
            daily: 5,
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        assert_eq!(d.keep, vec![0, 1]);
        assert_eq!(
            matches_of(&d),
            vec![vec!["daily snapshot"], vec!["daily snapshot"]]
        );
    }

    #[test]
    fn weekly_buckets_are_iso_weeks() {
        // 2014-12-29 (Monday) belongs to ISO week 2015-W01, like 2015-01-04 (Sunday).
        let snapshots = [
            snap("2015-01-05T10:00:00Z"), // 2015-W02
            snap("2015-01-04T10:00:00Z"), // 2015-W01
            snap("2014-12-29T10:00:00Z"), // 2015-W01
            snap("2014-12-28T10:00:00Z"), // 2014-W52
            snap("2014-12-27T10:00:00Z"), // 2014-W52
        ];
        let policy = Policy {
            weekly: 3,
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        assert_eq!(d.keep, vec![0, 1, 3]);
        let weekly: Vec<i64> = d.reasons.iter().map(|r| r.counters.weekly).collect();
        assert_eq!(weekly, vec![2, 1, 0]);
    }

    #[test]
    fn sort_is_newest_first_and_stable() {
        let snapshots = [
            tagged("2015-01-01T00:00:00Z", &["a"]),
            tagged("2015-06-01T00:00:00Z", &["b"]),
            tagged("2015-01-01T01:00:00+01:00", &["c"]), // same instant as "a"
            tagged("2015-01-01T00:00:00Z", &["d"]),
        ];
        let policy = Policy {
            last: -1,
            ..Policy::default()
        };
        assert_eq!(run(&snapshots, &policy).keep, vec![1, 0, 2, 3]);
        let policy = Policy {
            last: 2,
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        // Ties: the earlier input wins, and the oldest (last in order) is kept as "oldest".
        assert_eq!(d.keep, vec![1, 0]);
        assert_eq!(d.remove, vec![2, 3]);
    }

    // ---- counters ----

    #[test]
    fn counters_report_remaining_counts() {
        let snapshots = [
            snap("2016-01-03T10:00:00Z"),
            snap("2016-01-03T09:00:00Z"),
            snap("2016-01-02T10:00:00Z"),
            snap("2016-01-01T10:00:00Z"),
        ];
        let policy = Policy {
            last: 1,
            daily: 2,
            monthly: -1,
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        assert_eq!(d.keep, vec![0, 2, 3]);
        assert_eq!(
            matches_of(&d),
            vec![
                vec!["last snapshot", "daily snapshot", "monthly snapshot"],
                vec!["daily snapshot"],
                // Same month as before, but the oldest with an unlimited count left.
                vec!["oldest monthly snapshot"],
            ]
        );
        let counters: Vec<Counters> = d.reasons.iter().map(|r| r.counters).collect();
        assert_eq!(
            counters,
            vec![
                Counters {
                    daily: 1,
                    monthly: -1,
                    ..Counters::default()
                },
                Counters {
                    monthly: -1,
                    ..Counters::default()
                },
                Counters {
                    monthly: -1,
                    ..Counters::default()
                },
            ]
        );
        assert_eq!(
            serde_json::to_value(counters[0]).expect("json"),
            serde_json::json!({"daily": 1, "monthly": -1})
        );
        assert_eq!(
            serde_json::to_value(Counters::default()).expect("json"),
            serde_json::json!({})
        );
    }

    #[test]
    fn oldest_rule_consumes_a_count_and_needs_one_left() {
        let snapshots = [
            snap("2016-01-03T10:00:00Z"),
            snap("2015-06-03T10:00:00Z"),
            snap("2015-05-03T10:00:00Z"),
        ];
        let yearly = |n| Policy {
            yearly: n,
            ..Policy::default()
        };
        // Two years, count 5: the oldest 2015 one is kept as "oldest", and counted.
        let d = run(&snapshots, &yearly(5));
        assert_eq!(d.keep, vec![0, 1, 2]);
        assert_eq!(d.reasons[2].matches, vec!["oldest yearly snapshot"]);
        assert_eq!(d.reasons[2].counters.yearly, 2);
        // Count used up before the oldest: it goes.
        let d = run(&snapshots, &yearly(2));
        assert_eq!(d.keep, vec![0, 1]);
        assert_eq!(d.reasons[1].counters.yearly, 0);
        // An oldest snapshot in a new bucket gets the plain reason.
        let d = run(&snapshots[..2], &yearly(5));
        assert_eq!(d.reasons[1].matches, vec!["yearly snapshot"]);
    }

    #[test]
    fn single_snapshot_and_empty_input() {
        let one = [snap("2016-01-03T10:00:00Z")];
        let policy = Policy {
            last: 5,
            hourly: 1,
            ..Policy::default()
        };
        let d = run(&one, &policy);
        assert_eq!(d.keep, vec![0]);
        assert_eq!(
            d.reasons[0].matches,
            vec!["last snapshot", "hourly snapshot"]
        );
        assert_eq!(
            d.reasons[0].counters,
            Counters {
                last: 4,
                ..Counters::default()
            }
        );
        assert_eq!(run(&[], &policy), Decision::default());
    }

    #[test]
    fn invalid_negative_counts_are_off() {
        let snapshots = [snap("2016-01-03T10:00:00Z"), snap("2016-01-02T10:00:00Z")];
        let policy = Policy {
            daily: -2,
            ..Policy::default()
        };
        assert!(!policy.is_empty());
        let d = run(&snapshots, &policy);
        assert!(d.keep.is_empty());
        assert_eq!(d.remove, vec![0, 1]);
    }

    #[test]
    fn within_buckets_and_oldest() {
        let snapshots = [
            snap("2016-01-03T10:00:00Z"),
            snap("2016-01-03T09:00:00Z"),
            snap("2016-01-02T10:00:00Z"),
            snap("2016-01-02T09:00:00Z"),
            snap("2015-01-02T09:00:00Z"),
        ];
        let policy = Policy {
            within_daily: Some(dur("2d")),
            within_yearly: Some(dur("10y")),
            ..Policy::default()
        };
        let d = run(&snapshots, &policy);
        assert_eq!(d.keep, vec![0, 2, 4]);
        assert_eq!(
            matches_of(&d),
            vec![
                vec!["daily within 2d", "yearly within 10y"],
                vec!["daily within 2d"],
                vec!["yearly within 10y"],
            ]
        );
        assert!(d.reasons.iter().all(|r| r.counters == Counters::default()));

        // The oldest is only special if it is inside the window.
        let policy = Policy {
            within_daily: Some(dur("1d")),
            ..Policy::default()
        };
        assert_eq!(run(&snapshots[..2], &policy).keep, vec![0, 1]);
        assert_eq!(
            run(&snapshots[..2], &policy).reasons[1].matches,
            vec!["oldest daily within 1d"]
        );
        // Jan 2 10:00 is exactly at the cutoff, so outside; the oldest is far outside.
        assert_eq!(run(&snapshots, &policy).keep, vec![0]);
    }

    // ---- tags and emptiness ----

    #[test]
    fn tag_rules_follow_restic_has_tags() {
        let snapshots = [
            tagged("2016-01-04T00:00:00Z", &["foo", "bar"]),
            tagged("2016-01-03T00:00:00Z", &["foo"]),
            tagged("2016-01-02T00:00:00Z", &[]),
        ];
        let tags = |lists: &[&[&str]]| Policy {
            tags: lists
                .iter()
                .map(|l| l.iter().map(|t| t.to_string()).collect())
                .collect(),
            ..Policy::default()
        };
        let d = run(&snapshots, &tags(&[&["foo", "bar"], &["foo"]]));
        assert_eq!(d.keep, vec![0, 1]);
        assert_eq!(
            matches_of(&d),
            vec![
                vec!["has tags [foo, bar]", "has tags [foo]"],
                vec!["has tags [foo]"]
            ]
        );
        // "" matches untagged snapshots; an empty list matches everything.
        assert_eq!(run(&snapshots, &tags(&[&[""]])).keep, vec![2]);
        let d = run(&snapshots, &tags(&[&[]]));
        assert_eq!(d.keep, vec![0, 1, 2]);
        assert_eq!(d.reasons[0].matches, vec!["has tags []"]);
    }

    #[test]
    fn empty_policy() {
        assert!(Policy::default().is_empty());
        let zero_within = Policy {
            within: Some(Duration::default()),
            within_monthly: Some(Duration::default()),
            ..Policy::default()
        };
        assert!(zero_within.is_empty());
        assert!(
            !Policy {
                tags: vec![vec![]],
                ..Policy::default()
            }
            .is_empty()
        );
        assert!(
            !Policy {
                within_yearly: Some(dur("1h")),
                ..Policy::default()
            }
            .is_empty()
        );
        // Like restic's ApplyPolicy, the library keeps nothing; the CLI must guard.
        let snapshots = [snap("2016-01-03T10:00:00Z")];
        let d = run(&snapshots, &zero_within);
        assert!(d.keep.is_empty() && d.reasons.is_empty());
        assert_eq!(d.remove, vec![0]);
    }

    #[test]
    fn policy_display_matches_restic() {
        assert_eq!(Policy::default().to_string(), "remove");
        let p = Policy {
            last: 3,
            daily: 7,
            yearly: -1,
            within_weekly: Some(dur("1m")),
            within_yearly: Some(dur("9999y")),
            tags: vec![vec!["foo".into()], vec!["foo".into(), "bar".into()]],
            within: Some(dur("1y1d1m")),
            ..Policy::default()
        };
        assert_eq!(
            p.to_string(),
            "keep 3 latest, 7 daily, all yearly snapshots, weekly snapshots within 1m, \
             yearly snapshots within 9999y and all snapshots with tags [[foo] [foo, bar]] \
             and all snapshots within 1y1m1d of the newest"
        );
    }

    // ---- robustness ----

    #[test]
    fn extreme_inputs_do_not_panic() {
        let max = Duration {
            years: i32::MAX,
            months: i32::MAX,
            days: i32::MAX,
            hours: i32::MAX,
        };
        let min = Duration {
            years: i32::MIN,
            months: i32::MIN,
            days: i32::MIN,
            hours: i32::MIN,
        };
        let extremes = [
            SnapshotInfo {
                time: DateTime::<Utc>::MAX_UTC.fixed_offset(),
                tags: vec![String::new()],
            },
            SnapshotInfo {
                time: DateTime::<Utc>::MIN_UTC.fixed_offset(),
                tags: vec![],
            },
            snap("2016-01-03T10:00:00+14:00"),
            snap("2016-01-03T10:00:00-23:59"),
        ];
        for d in [max, min] {
            let policy = Policy {
                last: i64::MAX,
                hourly: i64::MIN,
                daily: -1,
                weekly: 1,
                monthly: i64::MAX,
                yearly: -1,
                within: Some(d),
                within_hourly: Some(d),
                within_daily: Some(d),
                within_weekly: Some(d),
                within_monthly: Some(d),
                within_yearly: Some(d),
                tags: vec![vec![], vec![String::new()]],
            };
            let _ = policy.to_string();
            for now in [
                DateTime::<Utc>::MIN_UTC,
                Utc::now(),
                DateTime::<Utc>::MAX_UTC,
            ] {
                let decision = apply_policy_at(&extremes, &policy, now);
                assert_eq!(decision.keep.len() + decision.remove.len(), extremes.len());
            }
        }
        assert_eq!(max.to_string().parse::<Duration>(), Ok(max));
    }
}
