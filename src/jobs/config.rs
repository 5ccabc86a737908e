//! The job configuration file (TOML): repositories by name, and jobs that
//! each make one snapshot and then keep the repository in shape.
//!
//! Everything is checked when the file is read, before anything runs:
//! unknown keys, wrong types, impossible values (a bad duration, a
//! schedule that cannot be expressed, a job naming a repository that is
//! not declared) are errors naming the file, line and column. The field
//! by field reference is the README's "Jobs" section.

use crate::commands::retention::{self, Policy};
use crate::error::{Error, Result};
use crate::jobs::schedule::Schedule;
use indexmap::IndexMap;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use toml::Spanned;

/// Where the configuration is looked for when `--config` is not given.
pub fn default_paths() -> Vec<PathBuf> {
    let mut out = vec![PathBuf::from("/etc/cairn/cairn.toml")];
    let xdg = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".config")));
    if let Some(x) = xdg {
        out.push(x.join("cairn/cairn.toml"));
    }
    out
}

/// A whole configuration file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Settings for every job.
    #[serde(default)]
    pub settings: Settings,
    /// Repositories by name.
    pub repositories: IndexMap<String, RepositoryConfig>,
    /// Jobs by name, in the order they run.
    pub jobs: IndexMap<String, JobConfig>,
    /// The file it was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// Things worth saying that do not stop anything (a file holding
    /// secrets that others can read).
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// `[settings]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Where job state and job locks live (default `/var/lib/cairn` for
    /// root, else `$XDG_STATE_HOME/cairn`).
    pub state_dir: Option<PathBuf>,
    /// Prometheus text file written after every run (for node_exporter's
    /// textfile collector).
    pub metrics_file: Option<PathBuf>,
    /// Cache directory for remote repositories (default as `--cache-dir`).
    pub cache_dir: Option<PathBuf>,
    /// Host name recorded in snapshots (default: this machine's).
    pub host: Option<String>,
    /// How long to wait for a repository lock held by another process.
    pub retry_lock: Option<Dur>,
}

/// `[repositories.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RepositoryConfig {
    /// Location, as `-r` takes it.
    pub location: String,
    /// Read the password from this file.
    pub password_file: Option<PathBuf>,
    /// Run this shell command and use its output as the password.
    pub password_command: Option<String>,
    /// Take the password from this environment variable.
    pub password_env: Option<String>,
    /// Backend options (`s3.region`, ...), as `-o` takes them.
    #[serde(default)]
    pub options: BTreeMap<String, String>,
    /// Jobs without `repository` back up here (one repository may say so;
    /// with a single repository it is implied).
    #[serde(default)]
    pub primary: bool,
    /// Local repositories: `status` reports the jobs using it as failing
    /// when its file system has less free space than this (`10G`, `5%`).
    pub min_free: Option<FreeSpace>,
}

/// A free-space limit: bytes or a share of the file system.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum FreeSpace {
    /// At least this many bytes.
    Bytes(u64),
    /// At least this percentage of the file system.
    Percent(f64),
}

impl FreeSpace {
    /// Whether `free` of `total` is below the limit.
    pub fn violated(&self, free: u64, total: u64) -> bool {
        match *self {
            FreeSpace::Bytes(b) => free < b,
            FreeSpace::Percent(p) => (free as f64) < total as f64 * p / 100.0,
        }
    }
}

impl<'de> Deserialize<'de> for FreeSpace {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<FreeSpace, D::Error> {
        let s = String::deserialize(d)?;
        if let Some(p) = s.trim().strip_suffix('%') {
            return match p.trim().parse::<f64>() {
                Ok(v) if (0.0..=100.0).contains(&v) => Ok(FreeSpace::Percent(v)),
                _ => Err(D::Error::custom(format!("bad percentage {s:?}"))),
            };
        }
        crate::timespec::parse_size(&s)
            .map(FreeSpace::Bytes)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// Where a repository password comes from.
#[derive(Clone, Debug)]
pub enum PasswordSource {
    /// A file (one trailing newline removed).
    File(PathBuf),
    /// A shell command's output.
    Command(String),
    /// An environment variable.
    Env(String),
}

impl RepositoryConfig {
    /// The password source (validated: exactly one is given).
    pub fn password_source(&self) -> PasswordSource {
        match (
            &self.password_file,
            &self.password_command,
            &self.password_env,
        ) {
            (Some(f), _, _) => PasswordSource::File(f.clone()),
            (_, Some(c), _) => PasswordSource::Command(c.clone()),
            (_, _, Some(v)) => PasswordSource::Env(v.clone()),
            _ => PasswordSource::Env("CAIRN_PASSWORD".into()),
        }
    }
}

/// `[jobs.NAME]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobConfig {
    /// The repository it backs up into (default: the primary).
    pub repository: Option<Spanned<String>>,
    /// Files and directories.
    #[serde(default)]
    pub paths: Vec<PathBuf>,
    /// Exclusion patterns.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Files of exclusion patterns.
    #[serde(default)]
    pub exclude_files: Vec<PathBuf>,
    /// Do not cross file system boundaries.
    #[serde(default)]
    pub one_file_system: bool,
    /// Live SQLite databases, each copied consistently (as `--sqlite`).
    #[serde(default)]
    pub sqlite: Vec<PathBuf>,
    /// Directories searched for SQLite databases (recognised by their
    /// header), each copied consistently.
    #[serde(default)]
    pub sqlite_search: Vec<PathBuf>,
    /// Check databases with `quick_check` instead of `integrity_check`.
    #[serde(default)]
    pub sqlite_quick: bool,
    /// Command streams: each command's output stored as `/NAME`.
    #[serde(default)]
    pub commands: Vec<StreamConfig>,
    /// Host name recorded (default: `[settings] host`, else this machine's).
    pub host: Option<String>,
    /// Tags recorded (the job's own tag `job:NAME` is always added).
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// When `cairn schedule` runs it.
    pub schedule: Option<Schedule>,
    /// `status` calls the job stale when its last success is older.
    pub max_age: Option<Dur>,
    /// Which snapshots to keep.
    pub retention: Option<RetentionConfig>,
    /// Repositories to copy the job's snapshots to after each backup.
    #[serde(default)]
    pub copy_to: Vec<Spanned<String>>,
    /// Apply the retention policy in the `copy_to` repositories too.
    #[serde(default)]
    pub forget_in_copies: bool,
    /// Regular verification.
    pub verify: Option<VerifyConfig>,
    /// Commands around the job.
    #[serde(default)]
    pub hooks: HooksConfig,
    /// HTTP pings.
    #[serde(default)]
    pub ping: PingConfig,
}

/// `{ name = "app.sql", run = "pg_dump app" }` (a string runs through
/// `sh -c`; a list is the program and its arguments).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamConfig {
    /// File name in the snapshot (`/NAME`).
    pub name: String,
    /// The command.
    pub run: CommandLine,
}

/// A command: a shell line or an argument list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum CommandLine {
    /// Run with `sh -c`.
    Shell(String),
    /// Program and arguments.
    Argv(Vec<String>),
}

impl CommandLine {
    /// The program and arguments to execute.
    pub fn argv(&self) -> Vec<String> {
        match self {
            CommandLine::Shell(s) => vec!["sh".into(), "-c".into(), s.clone()],
            CommandLine::Argv(v) => v.clone(),
        }
    }

    /// For messages.
    pub fn display(&self) -> String {
        match self {
            CommandLine::Shell(s) => s.clone(),
            CommandLine::Argv(v) => v.join(" "),
        }
    }
}

/// `[jobs.NAME.retention]`: restic's `forget` options.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetentionConfig {
    /// Keep the newest N.
    pub keep_last: Option<KeepCount>,
    /// Keep the newest of each of the last N hours.
    pub keep_hourly: Option<KeepCount>,
    /// ... days.
    pub keep_daily: Option<KeepCount>,
    /// ... ISO weeks.
    pub keep_weekly: Option<KeepCount>,
    /// ... months.
    pub keep_monthly: Option<KeepCount>,
    /// ... years.
    pub keep_yearly: Option<KeepCount>,
    /// Keep everything within this long of the newest (`1y2m3d4h`).
    pub keep_within: Option<KeepWithin>,
    /// Keep hourly snapshots within this long.
    pub keep_within_hourly: Option<KeepWithin>,
    /// Keep daily snapshots within this long.
    pub keep_within_daily: Option<KeepWithin>,
    /// Keep weekly snapshots within this long.
    pub keep_within_weekly: Option<KeepWithin>,
    /// Keep monthly snapshots within this long.
    pub keep_within_monthly: Option<KeepWithin>,
    /// Keep yearly snapshots within this long.
    pub keep_within_yearly: Option<KeepWithin>,
    /// Keep snapshots with these tags.
    #[serde(default)]
    pub keep_tags: Vec<Tag>,
    /// Prune after forgetting when the last prune is older than this
    /// (`0s`: every run; absent: never, prune by hand).
    pub prune_every: Option<Dur>,
    /// Repack packs whose unused share is above this (as `prune --max-unused`).
    pub max_unused: Option<String>,
}

impl RetentionConfig {
    /// The policy.
    pub fn policy(&self) -> Policy {
        let n = |k: &Option<KeepCount>| k.as_ref().map_or(0, |k| k.0);
        let w = |k: &Option<KeepWithin>| k.as_ref().map(|k| k.0);
        Policy {
            last: n(&self.keep_last),
            hourly: n(&self.keep_hourly),
            daily: n(&self.keep_daily),
            weekly: n(&self.keep_weekly),
            monthly: n(&self.keep_monthly),
            yearly: n(&self.keep_yearly),
            within: w(&self.keep_within),
            within_hourly: w(&self.keep_within_hourly),
            within_daily: w(&self.keep_within_daily),
            within_weekly: w(&self.keep_within_weekly),
            within_monthly: w(&self.keep_within_monthly),
            within_yearly: w(&self.keep_within_yearly),
            tags: self.keep_tags.iter().map(|t| vec![t.0.clone()]).collect(),
        }
    }
}

/// `[jobs.NAME.verify]`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VerifyConfig {
    /// Run `check` when the last verification is older than this.
    pub every: Dur,
    /// Read every pack once per this period: each check reads the next
    /// part `n/m` with `m = read_all_every / every` (absent: structure only).
    pub read_all_every: Option<Dur>,
}

/// `[jobs.NAME.hooks]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HooksConfig {
    /// Before the backup; a failure fails the job (nothing is backed up).
    #[serde(default)]
    pub before: Vec<CommandLine>,
    /// After every step succeeded.
    #[serde(default)]
    pub after: Vec<CommandLine>,
    /// When any step failed.
    #[serde(default)]
    pub failure: Vec<CommandLine>,
    /// How long a hook may run (default 5m).
    pub timeout: Option<Dur>,
}

/// `[jobs.NAME.ping]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PingConfig {
    /// URL posted when the job starts.
    pub start: Option<Url>,
    /// URL posted when it succeeded.
    pub success: Option<Url>,
    /// URL posted when it failed.
    pub failure: Option<Url>,
    /// How long one attempt may take (default 10s).
    pub timeout: Option<Dur>,
    /// Further attempts after a failed one (default 2).
    pub retries: Option<u32>,
}

/// A duration such as `90s`, `15m`, `26h`, `7d`, `1w`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dur(pub std::time::Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Dur, D::Error> {
        let s = String::deserialize(d)?;
        crate::timespec::parse_duration(&s)
            .map(Dur)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// A keep count: a non-negative number or `"unlimited"`.
#[derive(Clone, Copy, Debug)]
pub struct KeepCount(pub i64);

impl<'de> Deserialize<'de> for KeepCount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<KeepCount, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            N(i64),
            S(String),
        }
        let text = match Raw::deserialize(d)? {
            Raw::N(n) => n.to_string(),
            Raw::S(s) => s,
        };
        retention::parse_keep_count(&text)
            .map(KeepCount)
            .map_err(|e| D::Error::custom(e.to_string()))
    }
}

/// A retention window such as `1y2m3d4h`.
#[derive(Clone, Copy, Debug)]
pub struct KeepWithin(pub retention::Duration);

impl<'de> Deserialize<'de> for KeepWithin {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<KeepWithin, D::Error> {
        let s = String::deserialize(d)?;
        s.parse::<retention::Duration>()
            .map(KeepWithin)
            .map_err(|e| D::Error::custom(format!("bad duration {s:?}: {e}")))
    }
}

/// A tag (no commas, not empty).
#[derive(Clone, Debug)]
pub struct Tag(pub String);

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Tag, D::Error> {
        let s = String::deserialize(d)?;
        crate::commands::tag::check_tag(&s).map_err(|e| D::Error::custom(e.to_string()))?;
        Ok(Tag(s))
    }
}

/// An `http://` or `https://` URL.
#[derive(Clone, Debug)]
pub struct Url(pub String);

impl<'de> Deserialize<'de> for Url {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Url, D::Error> {
        let s = String::deserialize(d)?;
        match s.parse::<http::Uri>() {
            Ok(u) if matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some() => {
                Ok(Url(s))
            }
            _ => Err(D::Error::custom(format!(
                "{s:?} is not an http:// or https:// URL"
            ))),
        }
    }
}

/// The tag every snapshot of job `name` carries.
pub fn job_tag(name: &str) -> String {
    format!("job:{name}")
}

impl Config {
    /// Reads and checks `path`.
    pub fn load(path: &Path) -> Result<Config> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let mut c = Config::parse(&text, path)?;
        c.path = path.to_path_buf();
        let secrets = c.repositories.values().any(|r| {
            r.options
                .keys()
                .any(|k| k.contains("secret") || k.contains("token"))
        });
        let mode = std::fs::metadata(path).map_or(0, |m| {
            std::os::unix::fs::PermissionsExt::mode(&m.permissions())
        });
        if secrets && mode & 0o044 != 0 {
            c.warnings.push(format!(
                "{} holds S3 secrets and other users can read it: chmod 600 {}",
                path.display(),
                path.display()
            ));
        }
        Ok(c)
    }

    /// Finds the configuration: `explicit`, else the first default path
    /// that exists.
    pub fn find_and_load(explicit: Option<&Path>) -> Result<Config> {
        if let Some(p) = explicit {
            return Config::load(p);
        }
        let candidates = default_paths();
        for p in &candidates {
            if p.exists() {
                return Config::load(p);
            }
        }
        Err(Error::InvalidInput(format!(
            "no configuration file: give --config FILE or create {}",
            candidates
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" or ")
        )))
    }

    /// Parses and checks configuration text; `path` names it in errors.
    pub fn parse(text: &str, path: &Path) -> Result<Config> {
        let at = |span: Option<std::ops::Range<usize>>| -> String {
            match span {
                Some(r) => {
                    let (line, col) = line_col(text, r.start);
                    format!("{}:{line}:{col}", path.display())
                }
                None => path.display().to_string(),
            }
        };
        let c: Config = toml::from_str(text).map_err(|e| {
            Error::InvalidInput(format!("{}: {}", at(e.span()), e.message().trim()))
        })?;
        let bad = |span: std::ops::Range<usize>, msg: String| {
            Error::InvalidInput(format!("{}: {msg}", at(Some(span))))
        };
        let whole = |msg: String| Error::InvalidInput(format!("{}: {msg}", path.display()));
        if c.repositories.is_empty() {
            return Err(whole(
                "no repositories: declare at least one [repositories.NAME]".into(),
            ));
        }
        if c.jobs.is_empty() {
            return Err(whole("no jobs: declare at least one [jobs.NAME]".into()));
        }
        let primaries: Vec<&String> = c
            .repositories
            .iter()
            .filter(|(_, r)| r.primary)
            .map(|(n, _)| n)
            .collect();
        if primaries.len() > 1 {
            return Err(whole(format!(
                "more than one primary repository ({})",
                primaries
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
        for (name, r) in &c.repositories {
            check_name("repository", name).map_err(whole)?;
            let given = [
                r.password_file.is_some(),
                r.password_command.is_some(),
                r.password_env.is_some(),
            ];
            if given.iter().filter(|g| **g).count() > 1 {
                return Err(whole(format!(
                    "repository {name}: give one of password_file, password_command, password_env"
                )));
            }
            if r.location.trim().is_empty() {
                return Err(whole(format!("repository {name}: empty location")));
            }
        }
        for (name, j) in &c.jobs {
            check_name("job", name).map_err(whole)?;
            let job = |msg: String| whole(format!("job {name}: {msg}"));
            if let Some(r) = &j.repository {
                if !c.repositories.contains_key(r.get_ref()) {
                    return Err(bad(
                        r.span(),
                        format!("job {name}: no repository named {:?}", r.get_ref()),
                    ));
                }
            } else if c.primary().is_none() {
                return Err(job(
                    "which repository? set `repository`, or mark one repository `primary = true`"
                        .into(),
                ));
            }
            let own = c.repository_of(j);
            for r in &j.copy_to {
                if !c.repositories.contains_key(r.get_ref()) {
                    return Err(bad(
                        r.span(),
                        format!("job {name}: no repository named {:?}", r.get_ref()),
                    ));
                }
                if Some(r.get_ref().as_str()) == own {
                    return Err(bad(
                        r.span(),
                        format!("job {name}: copy_to names the job's own repository"),
                    ));
                }
            }
            if j.paths.is_empty()
                && j.sqlite.is_empty()
                && j.sqlite_search.is_empty()
                && j.commands.is_empty()
            {
                return Err(job(
                    "nothing to back up: give paths, sqlite, sqlite_search or commands".into(),
                ));
            }
            let mut names = Vec::new();
            for s in &j.commands {
                crate::format::tree::validate_name(s.name.as_bytes())
                    .map_err(|e| job(format!("command stream name {:?}: {e}", s.name)))?;
                if names.contains(&&s.name) {
                    return Err(job(format!("two command streams named {:?}", s.name)));
                }
                names.push(&s.name);
                if s.run.argv().first().is_none_or(|p| p.is_empty()) {
                    return Err(job(format!("command stream {:?}: empty command", s.name)));
                }
            }
            if let Some(r) = &j.retention {
                if r.policy().is_empty() {
                    return Err(job(
                        "retention keeps nothing: give at least one keep_* rule".into(),
                    ));
                }
                if let Some(m) = &r.max_unused {
                    crate::commands::prune::parse_max_unused(m)
                        .map_err(|e| job(format!("retention.max_unused: {e}")))?;
                }
            }
            if let Some(v) = &j.verify {
                if v.every.0.is_zero() {
                    return Err(job("verify.every must be longer than 0s".into()));
                }
                if v.read_all_every.is_some_and(|all| all.0 < v.every.0) {
                    return Err(job(
                        "verify.read_all_every must be at least verify.every".into()
                    ));
                }
            }
            for hook in j
                .hooks
                .before
                .iter()
                .chain(&j.hooks.after)
                .chain(&j.hooks.failure)
            {
                if hook.argv().first().is_none_or(|p| p.is_empty()) {
                    return Err(job("empty hook command".into()));
                }
            }
        }
        Ok(c)
    }

    /// The primary repository's name.
    pub fn primary(&self) -> Option<&str> {
        if let Some((n, _)) = self.repositories.iter().find(|(_, r)| r.primary) {
            return Some(n);
        }
        if self.repositories.len() == 1 {
            return self.repositories.keys().next().map(String::as_str);
        }
        None
    }

    /// The repository a job backs up into.
    pub fn repository_of<'a>(&'a self, job: &'a JobConfig) -> Option<&'a str> {
        match &job.repository {
            Some(r) => Some(r.get_ref()),
            None => self.primary(),
        }
    }

    /// Where state and job locks live.
    pub fn state_dir(&self) -> PathBuf {
        if let Some(d) = &self.settings.state_dir {
            return d.clone();
        }
        if crate::sys::uid() == 0 {
            return PathBuf::from("/var/lib/cairn");
        }
        std::env::var_os("XDG_STATE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/state")))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join("cairn")
    }
}

/// Job and repository names: letters, digits, `.`, `_`, `-` (they become
/// file names, unit names and tags).
fn check_name(what: &str, name: &str) -> std::result::Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{what} name {name:?}: use letters, digits, '.', '_' and '-' (at most 64)"
        ))
    }
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> Result<Config> {
        Config::parse(s, Path::new("cairn.toml"))
    }

    const GOOD: &str = r#"
[settings]
state_dir = "/tmp/state"

[repositories.local]
location = "/srv/backup/repo"
password_file = "/etc/cairn/password"
primary = true

[repositories.offsite]
location = "s3:https://s3.example.com/b/app"
password_command = "cat /etc/cairn/offsite"
options = { "s3.region" = "eu-west-1" }

[jobs.db]
sqlite = ["/srv/app/state.db"]
commands = [{ name = "app.sql", run = "pg_dump app" }, { name = "b.sql", run = ["pg_dump", "b"] }]
schedule = "hourly"
max_age = "2h"
copy_to = ["offsite"]
retention = { keep_hourly = 24, keep_daily = "unlimited", prune_every = "7d" }
verify = { every = "6h", read_all_every = "7d" }
hooks = { before = ["true"], failure = ["logger failed"] }
ping = { start = "http://127.0.0.1:9/start", success = "https://hc.example.com/x", retries = 1 }

[jobs.config]
repository = "local"
paths = ["/etc"]
exclude = ["*.bak"]
schedule = "daily 03:15"
"#;

    #[test]
    fn a_full_file_parses_in_order() {
        let c = parse(GOOD).unwrap();
        assert_eq!(c.jobs.keys().collect::<Vec<_>>(), ["db", "config"]);
        assert_eq!(c.primary(), Some("local"));
        let db = &c.jobs["db"];
        assert_eq!(db.commands[1].run.argv(), ["pg_dump", "b"]);
        assert_eq!(db.commands[0].run.argv(), ["sh", "-c", "pg_dump app"]);
        let p = db.retention.as_ref().unwrap().policy();
        assert_eq!((p.hourly, p.daily), (24, -1));
        assert_eq!(c.state_dir(), Path::new("/tmp/state"));
    }

    fn err(s: &str) -> String {
        parse(s).unwrap_err().to_string()
    }

    /// `cairn.toml:LINE:COL` of `needle` in `text`.
    fn at(text: &str, needle: &str) -> String {
        let i = text.find(needle).expect("needle");
        let (l, c) = line_col(text, i);
        format!("cairn.toml:{l}:{c}")
    }

    #[test]
    fn mistakes_name_file_line_and_column() {
        let check = |from: &str, to: &str, needle: &str, words: &[&str]| {
            let text = GOOD.replace(from, to);
            assert_ne!(text, GOOD, "{from}");
            let e = err(&text);
            let want = at(&text, needle);
            assert!(e.starts_with(&want), "{e} (want {want})");
            for w in words {
                assert!(e.contains(w), "{e} (want {w})");
            }
        };
        check(
            "max_age = \"2h\"",
            "max_agee = \"2h\"",
            "max_agee",
            &["max_agee"],
        );
        check("max_age = \"2h\"", "max_age = \"2x\"", "\"2x\"", &["2x"]);
        check("keep_hourly = 24", "keep_hourly = -3", "-3", &["negative"]);
        check(
            "copy_to = [\"offsite\"]",
            "copy_to = [\"elsewhere\"]",
            "\"elsewhere\"",
            &["elsewhere"],
        );
        check(
            "schedule = \"hourly\"",
            "schedule = \"sometimes\"",
            "\"sometimes\"",
            &["sometimes"],
        );
        check(
            "paths = [\"/etc\"]",
            "paths = \"/etc\"",
            "\"/etc\"",
            &["sequence"],
        );
        check(
            "start = \"http://127.0.0.1:9/start\"",
            "start = \"ftp://x\"",
            "\"ftp://x\"",
            &["not an http"],
        );
        let e = err(&GOOD.replace("[jobs.config]", "[jobs.\"bad name\"]"));
        assert!(e.contains("bad name"), "{e}");
        let e = err(&GOOD.replace("paths = [\"/etc\"]\n", ""));
        assert!(e.contains("nothing to back up"), "{e}");
        let e = err(&GOOD.replace("primary = true", ""));
        assert!(e.contains("job db") && e.contains("primary"), "{e}");
        let e = err("repositories = 3");
        assert!(e.starts_with("cairn.toml:1:"), "{e}");
        let e = err("[jobs.x\npaths=[]");
        assert!(e.starts_with("cairn.toml:1:"), "{e}");
    }
}
