//! When jobs run: a job's `schedule` and the systemd units or crontab
//! lines that `cairn schedule` writes for it.
//!
//! A schedule is written once and rendered both ways, so it is parsed
//! into the five cron fields (minute, hour, day of month, month, day of
//! week) and turned into a systemd `OnCalendar=` expression from those;
//! forms that one of the two cannot express are refused when the
//! configuration is read.

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// A parsed schedule.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Schedule {
    /// As written in the configuration.
    pub text: String,
    /// Five cron fields.
    pub cron: String,
    /// The systemd `OnCalendar=` value.
    pub calendar: String,
}

impl<'de> Deserialize<'de> for Schedule {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Schedule, D::Error> {
        let s = String::deserialize(d)?;
        Schedule::parse(&s).map_err(D::Error::custom)
    }
}

const DAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];

impl Schedule {
    /// Parses `hourly`, `daily`, `weekly`, `monthly`, `every N minutes`,
    /// `every N hours`, `daily HH:MM`, `weekly DAY HH:MM`, `monthly D HH:MM`,
    /// or five cron fields.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let t = text.trim();
        let words: Vec<&str> = t.split_whitespace().collect();
        let cron = match words.as_slice() {
            ["hourly"] => "0 * * * *".to_string(),
            ["daily"] => "0 0 * * *".to_string(),
            ["weekly"] => "0 0 * * 1".to_string(),
            ["monthly"] => "0 0 1 * *".to_string(),
            ["every", n, unit] => {
                let n: u32 = n
                    .parse()
                    .map_err(|_| format!("schedule {t:?}: {n:?} is not a number"))?;
                match *unit {
                    "minute" | "minutes" | "min" if (1..=59).contains(&n) => {
                        format!("*/{n} * * * *")
                    }
                    "hour" | "hours" if (1..=23).contains(&n) => format!("0 */{n} * * *"),
                    _ => {
                        return Err(format!(
                            "schedule {t:?}: use every 1..59 minutes or every 1..23 hours"
                        ));
                    }
                }
            }
            ["daily", hm] => {
                let (h, m) = hour_minute(hm, t)?;
                format!("{m} {h} * * *")
            }
            ["weekly", day, hm] => {
                let (h, m) = hour_minute(hm, t)?;
                let d = day_number(day).ok_or_else(|| {
                    format!("schedule {t:?}: {day:?} is not a day (Mon, Tue, ... Sun)")
                })?;
                format!("{m} {h} * * {d}")
            }
            ["monthly", dom, hm] => {
                let (h, m) = hour_minute(hm, t)?;
                let d: u32 = dom
                    .parse()
                    .ok()
                    .filter(|d| (1..=28).contains(d))
                    .ok_or_else(|| format!("schedule {t:?}: day of month {dom:?} must be 1..28"))?;
                format!("{m} {h} {d} * *")
            }
            [_, _, _, _, _] => words.join(" "),
            _ => {
                return Err(format!(
                    "schedule {t:?}: use hourly, daily, weekly, monthly, \"every 15 minutes\", \"every 6 hours\", \"daily 03:15\", \"weekly Sun 04:00\", \"monthly 1 05:00\" or five cron fields"
                ));
            }
        };
        let calendar = calendar_of(&cron).map_err(|e| format!("schedule {t:?}: {e}"))?;
        Ok(Schedule {
            text: t.to_string(),
            cron,
            calendar,
        })
    }
}

fn hour_minute(hm: &str, t: &str) -> Result<(u32, u32), String> {
    let bad = || format!("schedule {t:?}: {hm:?} is not a time (HH:MM)");
    let (h, m) = hm.split_once(':').ok_or_else(bad)?;
    let h: u32 = h.parse().ok().filter(|h| *h < 24).ok_or_else(bad)?;
    let m: u32 = m.parse().ok().filter(|m| *m < 60).ok_or_else(bad)?;
    Ok((h, m))
}

fn day_number(day: &str) -> Option<usize> {
    let lower = day.to_ascii_lowercase();
    DAYS.iter()
        .position(|d| lower.starts_with(&d.to_ascii_lowercase()) && lower.len() >= 3)
}

/// The systemd calendar expression for five cron fields.
fn calendar_of(cron: &str) -> Result<String, String> {
    let f: Vec<&str> = cron.split_whitespace().collect();
    let [min, hour, dom, mon, dow] = f.as_slice() else {
        return Err("a cron schedule has five fields".into());
    };
    if *dom != "*" && *dow != "*" {
        return Err(
            "cron runs when either the day of month or the day of week matches; systemd needs both: restrict only one"
                .into(),
        );
    }
    let min = field(min, 0, 59, 0)?;
    let hour = field(hour, 0, 23, 0)?;
    let dom = field(dom, 1, 31, 1)?;
    let mon = field(mon, 1, 12, 1)?;
    let dow = if *dow == "*" {
        String::new()
    } else {
        format!("{} ", weekdays(dow)?)
    };
    Ok(format!("{dow}*-{mon}-{dom} {hour}:{min}:00"))
}

/// One numeric cron field as systemd writes it.
fn field(f: &str, lo: u32, hi: u32, start: u32) -> Result<String, String> {
    let num = |s: &str| -> Result<u32, String> {
        s.parse::<u32>()
            .ok()
            .filter(|n| (lo..=hi).contains(n))
            .ok_or_else(|| format!("{s:?} is not a number in {lo}..{hi}"))
    };
    let mut parts = Vec::new();
    for item in f.split(',') {
        let part = if item == "*" {
            "*".to_string()
        } else if let Some(step) = item.strip_prefix("*/") {
            let n = step
                .parse::<u32>()
                .ok()
                .filter(|n| *n >= 1 && *n <= hi)
                .ok_or_else(|| format!("bad step {item:?}"))?;
            format!("{start:02}/{n}")
        } else if let Some((a, b)) = item.split_once('-') {
            if b.contains('/') {
                return Err(format!("{item:?}: a range with a step has no systemd form"));
            }
            let (a, b) = (num(a)?, num(b)?);
            if a > b {
                return Err(format!("{item:?}: empty range"));
            }
            format!("{a:02}..{b:02}")
        } else if item.contains('/') {
            return Err(format!("{item:?}: use */N for steps"));
        } else {
            format!("{:02}", num(item)?)
        };
        parts.push(part);
    }
    if parts.len() > 1 && parts.iter().any(|p| p == "*") {
        return Err(format!("{f:?}: * in a list"));
    }
    Ok(parts.join(","))
}

/// The day-of-week field (0 or 7 = Sunday, or names) as systemd names.
fn weekdays(f: &str) -> Result<String, String> {
    let day = |s: &str| -> Result<usize, String> {
        match s.parse::<usize>() {
            Ok(n) if n <= 7 => Ok(n % 7),
            _ => day_number(s).ok_or_else(|| format!("{s:?} is not a day of the week")),
        }
    };
    let mut parts = Vec::new();
    for item in f.split(',') {
        if let Some((a, b)) = item.split_once('-') {
            let (a, b) = (day(a)?, day(b)?);
            if a > b {
                return Err(format!(
                    "{item:?}: a range must run forward within Sun..Sat"
                ));
            }
            parts.push(format!("{}..{}", DAYS[a], DAYS[b]));
        } else {
            parts.push(DAYS[day(item)?].to_string());
        }
    }
    Ok(parts.join(","))
}

/// What `cairn schedule` writes: one file per path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnitFile {
    /// Where it goes.
    pub path: std::path::PathBuf,
    /// Its content.
    pub content: String,
}

/// How the schedule is installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// A `.service` and a `.timer` per job.
    Systemd,
    /// One crontab file with a line per job.
    Cron,
}

/// Renders the units or crontab for `jobs` (name, schedule), each running
/// `command` followed by `run NAME`; `user` is the crontab's user column.
pub fn render(
    flavor: Flavor,
    jobs: &[(&str, &Schedule)],
    command: &[String],
    dir: &std::path::Path,
    user: &str,
) -> Vec<UnitFile> {
    let quoted: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
    let base = quoted.join(" ");
    match flavor {
        Flavor::Systemd => jobs
            .iter()
            .flat_map(|(name, s)| {
                let service = UnitFile {
                    path: dir.join(format!("cairn-{name}.service")),
                    content: format!(
                        "# Written by `cairn schedule`: job {name}\n[Unit]\nDescription=cairn backup job {name}\nWants=network-online.target\nAfter=network-online.target\n\n[Service]\nType=oneshot\nExecStart={base} run {name}\nNice=10\nIOSchedulingClass=best-effort\nIOSchedulingPriority=7\n"
                    ),
                };
                let timer = UnitFile {
                    path: dir.join(format!("cairn-{name}.timer")),
                    content: format!(
                        "# Written by `cairn schedule`: job {name} ({})\n[Unit]\nDescription=cairn backup job {name}: {}\n\n[Timer]\nOnCalendar={}\nPersistent=true\nRandomizedDelaySec=60\n\n[Install]\nWantedBy=timers.target\n",
                        s.text, s.text, s.calendar
                    ),
                };
                [service, timer]
            })
            .collect(),
        Flavor::Cron => {
            let mut content = String::from(
                "# Written by `cairn schedule`. One line per job; overlapping runs of a job skip.\nSHELL=/bin/sh\nPATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n",
            );
            for (name, s) in jobs {
                content.push_str(&format!(
                    "# {name}: {}\n{} {user} {base} --quiet run {name}\n",
                    s.text, s.cron
                ));
            }
            vec![UnitFile {
                path: dir.join("cairn"),
                content,
            }]
        }
    }
}

/// Quotes an argument for a shell (and for systemd's ExecStart, which
/// understands the same single quotes).
fn shell_quote(a: &str) -> String {
    if !a.is_empty()
        && a.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"/._-=:,+@".contains(&b))
    {
        a.to_string()
    } else {
        format!("'{}'", a.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn both(s: &str) -> (String, String) {
        let p = Schedule::parse(s).unwrap();
        (p.cron, p.calendar)
    }

    #[test]
    fn forms_render_for_cron_and_systemd() {
        assert_eq!(both("hourly"), ("0 * * * *".into(), "*-*-* *:00:00".into()));
        assert_eq!(both("daily"), ("0 0 * * *".into(), "*-*-* 00:00:00".into()));
        assert_eq!(
            both("weekly"),
            ("0 0 * * 1".into(), "Mon *-*-* 00:00:00".into())
        );
        assert_eq!(
            both("every 15 minutes"),
            ("*/15 * * * *".into(), "*-*-* *:00/15:00".into())
        );
        assert_eq!(
            both("every 6 hours"),
            ("0 */6 * * *".into(), "*-*-* 00/6:00:00".into())
        );
        assert_eq!(
            both("daily 03:15"),
            ("15 3 * * *".into(), "*-*-* 03:15:00".into())
        );
        assert_eq!(
            both("weekly sunday 04:30"),
            ("30 4 * * 0".into(), "Sun *-*-* 04:30:00".into())
        );
        assert_eq!(
            both("monthly 1 05:00"),
            ("0 5 1 * *".into(), "*-*-01 05:00:00".into())
        );
        assert_eq!(
            both("5,35 8-18 * * 1-5"),
            (
                "5,35 8-18 * * 1-5".into(),
                "Mon..Fri *-*-* 08..18:05,35:00".into()
            )
        );
    }

    #[test]
    fn impossible_schedules_are_refused() {
        for bad in [
            "sometimes",
            "every 0 minutes",
            "every 90 minutes",
            "daily 25:00",
            "weekly Funday 01:00",
            "0 0 1 * 1",
            "61 * * * *",
            "0 1-5/2 * * *",
            "* * *",
        ] {
            assert!(Schedule::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn units_name_the_job_and_quote_arguments() {
        let s = Schedule::parse("hourly").unwrap();
        let cmd = vec![
            "/usr/bin/cairn".to_string(),
            "--config".into(),
            "/etc/my cairn.toml".into(),
        ];
        let units = render(
            Flavor::Systemd,
            &[("db", &s)],
            &cmd,
            std::path::Path::new("/etc/systemd/system"),
            "root",
        );
        assert_eq!(units.len(), 2);
        assert!(
            units[0]
                .content
                .contains("ExecStart=/usr/bin/cairn --config '/etc/my cairn.toml' run db")
        );
        assert!(units[1].content.contains("OnCalendar=*-*-* *:00:00"));
        let cron = render(
            Flavor::Cron,
            &[("db", &s)],
            &cmd,
            std::path::Path::new("/etc/cron.d"),
            "root",
        );
        assert!(cron[0].content.contains(
            "0 * * * * root /usr/bin/cairn --config '/etc/my cairn.toml' --quiet run db"
        ));
    }
}
