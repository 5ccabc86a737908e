//! `cairn forget` through the binary: every policy kind, grouping, filters,
//! explicit ids, `--dry-run`, the `--json` shape, refusals, and a
//! cross-check of kept snapshots against `restic` itself when installed.
//!
//! Snapshot histories with many different times, hosts, paths and tags are
//! made by backing up one tiny directory and writing copies of that
//! snapshot with other metadata through the library (a real backup per
//! history entry would cost seconds for nothing: retention only looks at
//! snapshot metadata). Everything `forget` does runs through the binary, in
//! UTC (`TZ=UTC`).

mod support;

use cairn::Repository;
use cairn::backend::{FileKind, Handle};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::process::{Command, Stdio};
use support::env::*;

/// One history entry: time (RFC 3339), host, paths, tags.
struct Entry {
    time: &'static str,
    host: &'static str,
    paths: &'static [&'static str],
    tags: &'static [&'static str],
}

const fn e(
    time: &'static str,
    host: &'static str,
    paths: &'static [&'static str],
    tags: &'static [&'static str],
) -> Entry {
    Entry {
        time,
        host,
        paths,
        tags,
    }
}

/// Writes one snapshot per entry; returns their ids in entry order.
fn make_history(env: &Env, entries: &[Entry]) -> Vec<String> {
    let src = env.dir("tiny");
    std::fs::write(src.join("f"), b"retention test\n").unwrap();
    let template = env.backup(&src, &["--host", "template"]);
    let repo = Repository::open(&env.repo, PASSWORD.as_bytes()).unwrap();
    let (tid, t) = repo
        .find_snapshot(&template.id, &Default::default())
        .unwrap();
    let mut ids = Vec::new();
    for en in entries {
        let mut s = t.clone();
        let dt = chrono::DateTime::parse_from_rfc3339(en.time).unwrap();
        s.time = dt.timestamp();
        s.time_nsec = 0;
        s.utc_offset = dt.offset().local_minus_utc();
        s.hostname = en.host.to_string();
        let mut paths: Vec<String> = en.paths.iter().map(|p| p.to_string()).collect();
        paths.sort();
        s.paths = paths;
        let tags: BTreeSet<String> = en.tags.iter().map(|t| t.to_string()).collect();
        s.tags = tags.into_iter().collect();
        s.parent = None;
        ids.push(repo.save_snapshot(&s).unwrap().to_hex());
    }
    repo.backend()
        .remove(Handle::new(FileKind::Snapshot, tid))
        .unwrap();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "history entries must differ");
    ids
}

/// `forget --dry-run --json ARGS`: the groups.
fn plan(env: &Env, args: &[&str]) -> Vec<Value> {
    let mut a = vec!["--json", "forget", "--dry-run"];
    a.extend_from_slice(args);
    env.ok(&a).json().as_array().unwrap().clone()
}

fn ids_of(list: &Value) -> Vec<String> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_string())
        .collect()
}

/// Kept ids over all groups.
fn kept(groups: &[Value]) -> BTreeSet<String> {
    groups.iter().flat_map(|g| ids_of(&g["keep"])).collect()
}

/// Removed ids over all groups.
fn removed(groups: &[Value]) -> BTreeSet<String> {
    groups.iter().flat_map(|g| ids_of(&g["remove"])).collect()
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| s.to_string()).collect()
}

/// Files in `snapshots/` with their sizes (a dry run must leave them alone).
fn snapshot_files(env: &Env) -> BTreeMap<std::path::PathBuf, u64> {
    file_listing(&env.repo.join("snapshots"))
}

// Newest first. 2026-03-09 is a Monday: ISO week 11 is 03-09..03-15.
const ONE_GROUP: &[Entry] = &[
    e("2026-03-10T18:00:00Z", "h", &["/srv/a"], &[]), // 0  Tue W11
    e("2026-03-10T09:00:00Z", "h", &["/srv/a"], &[]), // 1  Tue W11
    e("2026-03-09T12:00:00Z", "h", &["/srv/a"], &[]), // 2  Mon W11
    e("2026-03-08T23:30:00Z", "h", &["/srv/a"], &["keep"]), // 3  Sun W10
    e("2026-03-08T08:00:00Z", "h", &["/srv/a"], &[]), // 4  Sun W10
    e("2026-03-05T12:00:00Z", "h", &["/srv/a"], &[]), // 5  Thu W10
    e("2026-03-01T12:00:00Z", "h", &["/srv/a"], &[]), // 6  Sun W09
    e("2026-02-20T12:00:00Z", "h", &["/srv/a"], &["keep", "x"]), // 7  Fri W08
    e("2026-02-02T12:00:00Z", "h", &["/srv/a"], &[]), // 8  Mon W06
    e("2026-01-15T12:00:00Z", "h", &["/srv/a"], &[]), // 9  Thu W03
];

#[test]
fn policies_keep_the_expected_snapshots() {
    let env = Env::new();
    let id = make_history(&env, ONE_GROUP);
    let all: BTreeSet<String> = id.iter().cloned().collect();
    let cases: &[(&[&str], &[usize])] = &[
        (&["--keep-last", "3"], &[0, 1, 2]),
        (&["--keep-daily", "3"], &[0, 2, 3]),
        (&["--keep-weekly", "2"], &[0, 3]),
        (&["--keep-monthly", "2"], &[0, 7]),
        (&["--keep-within", "2d"], &[0, 1, 2, 3]),
        (&["--keep-tag", "keep"], &[3, 7]),
        (&["--keep-tag", "keep,x"], &[7]),
        (&["--keep-last", "1", "--keep-tag", "keep"], &[0, 3, 7]),
        (&["--keep-daily", "2", "--keep-weekly", "3"], &[0, 2, 3, 6]),
        (
            &["--keep-last", "unlimited"],
            &[0, 1, 2, 3, 4, 5, 6, 7, 8, 9],
        ),
    ];
    for (args, want) in cases {
        let groups = plan(&env, args);
        assert_eq!(groups.len(), 1, "{args:?}: one group");
        let want: BTreeSet<String> = want.iter().map(|&i| id[i].clone()).collect();
        assert_eq!(kept(&groups), want, "{args:?}: kept set");
        let rm = removed(&groups);
        assert!(rm.is_disjoint(&want), "{args:?}");
        assert_eq!(
            rm.union(&want).cloned().collect::<BTreeSet<_>>(),
            all,
            "{args:?}: keep and remove partition the group"
        );
    }

    // Reasons name the rule, restic style.
    let groups = plan(&env, &["--keep-last", "1", "--keep-tag", "keep"]);
    let reasons = groups[0]["reasons"].as_array().unwrap();
    let by_id: BTreeMap<String, Vec<String>> = reasons
        .iter()
        .map(|r| {
            (
                r["snapshot"]["id"].as_str().unwrap().to_string(),
                r["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    assert_eq!(by_id[&id[0]], vec!["last snapshot"]);
    assert_eq!(by_id[&id[3]], vec!["has tags [keep]"]);
    let groups = plan(&env, &["--keep-within", "2d"]);
    for r in groups[0]["reasons"].as_array().unwrap() {
        assert_eq!(r["matches"], serde_json::json!(["within 2d"]), "{r}");
    }

    // Applying for real removes exactly the planned snapshots.
    let r = env.ok(&["forget", "--keep-daily", "3"]);
    assert!(r.stdout.contains("keep 3 snapshots"), "{r}");
    let left: BTreeSet<String> = env.snapshot_ids().into_iter().collect();
    assert_eq!(left, set(&[&id[0], &id[2], &id[3]]));
}

#[test]
fn json_output_shape() {
    let env = Env::new();
    let id = make_history(&env, ONE_GROUP);
    let groups = plan(&env, &["--keep-last", "2", "--keep-weekly", "2"]);
    assert_eq!(groups.len(), 1);
    let g = &groups[0];
    assert_eq!(g["group_key"]["hostname"], "h");
    assert_eq!(g["group_key"]["paths"], serde_json::json!(["/srv/a"]));
    assert!(g["group_key"]["tags"].is_null(), "not grouped by tags: {g}");
    let keep = ids_of(&g["keep"]);
    let remove = ids_of(&g["remove"]);
    assert_eq!(keep, vec![id[0].clone(), id[1].clone(), id[3].clone()]);
    assert_eq!(keep.len() + remove.len(), ONE_GROUP.len());
    // Newest first in both lists, with full snapshot records.
    for list in [&g["keep"], &g["remove"]] {
        let times: Vec<String> = list
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["time"].as_str().unwrap().to_string())
            .collect();
        let mut sorted = times.clone();
        sorted.sort_by(|a, b| b.cmp(a));
        assert_eq!(times, sorted);
        for s in list.as_array().unwrap() {
            for field in [
                "id", "short_id", "time", "hostname", "paths", "tags", "tree",
            ] {
                assert!(!s[field].is_null(), "snapshot lacks {field}: {s}");
            }
        }
    }
    // One reason per kept snapshot, in the same order, with matches and counters.
    let reasons = g["reasons"].as_array().unwrap();
    assert_eq!(reasons.len(), keep.len());
    for (r, k) in reasons.iter().zip(&keep) {
        assert_eq!(r["snapshot"]["id"].as_str().unwrap(), k);
        assert!(!r["matches"].as_array().unwrap().is_empty(), "{r}");
        assert!(r["counters"].is_object(), "{r}");
    }
    assert_eq!(
        reasons[0]["matches"],
        serde_json::json!(["last snapshot", "weekly snapshot"])
    );
    assert_eq!(reasons[1]["matches"], serde_json::json!(["last snapshot"]));
    assert_eq!(
        reasons[2]["matches"],
        serde_json::json!(["weekly snapshot"])
    );
    // Counters count down what is left of each count rule.
    assert_eq!(reasons[0]["counters"]["last"], 1, "{}", reasons[0]);
    assert_eq!(reasons[0]["counters"]["weekly"], 1, "{}", reasons[0]);
    // A used-up counter is left out, like restic does.
    assert!(
        reasons[2]["counters"].get("weekly").is_none(),
        "{}",
        reasons[2]
    );
}

#[test]
fn dry_run_changes_nothing_and_explicit_ids() {
    let env = Env::new();
    let id = make_history(&env, ONE_GROUP);
    let before = snapshot_files(&env);

    let r = env.ok(&["forget", "--dry-run", "--keep-last", "1"]);
    assert!(r.stdout.contains("would remove 9 snapshots"), "{r}");
    assert_eq!(snapshot_files(&env), before, "dry run changed snapshots/");
    env.ok(&["forget", "-n", &id[4], &id[5]]);
    assert_eq!(
        snapshot_files(&env),
        before,
        "dry run with ids changed snapshots/"
    );
    let j = env.ok(&["--json", "forget", "--dry-run", &id[4]]).json();
    assert_eq!(j["dry_run"], true);
    assert_eq!(j["removed"], serde_json::json!([id[4]]));
    assert_eq!(snapshot_files(&env), before);

    // No policy and no ids: refused, nothing removed.
    let r = env.run(&["forget"]);
    assert!(!r.ok(), "{r}");
    assert!(r.stderr.contains("no policy"), "{r}");
    assert_eq!(snapshot_files(&env), before);
    // Only filters, still no policy: refused.
    let r = env.run(&["forget", "--host", "h"]);
    assert!(!r.ok(), "{r}");
    assert_eq!(snapshot_files(&env), before);

    // Negative counts are rejected; "unlimited" is a count.
    // Distinct hours 10, days 8, ISO weeks 6, months 3, years 1.
    for (flag, buckets) in [
        ("--keep-last", 10),
        ("--keep-hourly", 10),
        ("--keep-daily", 8),
        ("--keep-weekly", 6),
        ("--keep-monthly", 3),
        ("--keep-yearly", 2), // 2026, plus the oldest (a count is left)
    ] {
        let r = env.run(&["forget", &format!("{flag}=-1")]);
        assert!(!r.ok(), "{flag}=-1 accepted: {r}");
        assert!(r.stderr.contains("negative"), "{r}");
        let r = env.run(&["forget", flag, "-3"]);
        assert!(!r.ok(), "{flag} -3 accepted: {r}");
        let r = env.run(&["forget", flag, "many"]);
        assert!(!r.ok(), "{flag} many accepted: {r}");
        // Unlimited: one per bucket, every bucket.
        let groups = plan(&env, &[flag, "unlimited"]);
        assert_eq!(kept(&groups).len(), buckets, "{flag} unlimited");
        assert_eq!(
            groups[0]["reasons"][0]["counters"][&flag[7..]],
            -1,
            "{flag}"
        );
    }
    let r = env.run(&["forget", "--keep-within", "3x"]);
    assert!(!r.ok(), "{r}");
    assert_eq!(snapshot_files(&env), before);

    // A policy that would remove a whole group is refused.
    let r = env.run(&["forget", "--keep-tag", "no-such-tag"]);
    assert!(!r.ok(), "{r}");
    assert_eq!(snapshot_files(&env), before);

    // Ids and a policy at once are refused.
    let r = env.run(&["forget", "--keep-last", "1", &id[3]]);
    assert!(!r.ok(), "{r}");
    assert_eq!(snapshot_files(&env), before);

    // An unknown id among known ones: nothing is removed.
    let r = env.run(&["forget", &id[4], "deadbeefdeadbeef"]);
    assert!(!r.ok(), "{r}");
    assert_eq!(snapshot_files(&env), before);

    // Explicit ids (prefixes) remove exactly those.
    env.ok(&["forget", &id[4][..12], &id[5]]);
    let left: BTreeSet<String> = env.snapshot_ids().into_iter().collect();
    let mut want: BTreeSet<String> = id.iter().cloned().collect();
    want.remove(&id[4]);
    want.remove(&id[5]);
    assert_eq!(left, want);
}

// Two hosts, two path sets, tags x / y.
const GROUPS: &[Entry] = &[
    e("2026-05-05T10:00:00Z", "h1", &["/a"], &["x"]), // 0
    e("2026-05-04T10:00:00Z", "h1", &["/a"], &["y"]), // 1
    e("2026-05-03T10:00:00Z", "h1", &["/a"], &["x"]), // 2
    e("2026-05-05T11:00:00Z", "h1", &["/b"], &["y"]), // 3
    e("2026-05-02T10:00:00Z", "h1", &["/b"], &["x"]), // 4
    e("2026-05-05T09:00:00Z", "h2", &["/a"], &["x"]), // 5
    e("2026-05-01T10:00:00Z", "h2", &["/a"], &["y"]), // 6
];

#[test]
fn grouping_and_filters() {
    let env = Env::new();
    let id = make_history(&env, GROUPS);
    let ids = |v: &[usize]| -> BTreeSet<String> { v.iter().map(|&i| id[i].clone()).collect() };

    // Default host,paths: three groups, newest of each kept.
    let g = plan(&env, &["--keep-last", "1"]);
    assert_eq!(g.len(), 3, "{g:?}");
    assert_eq!(kept(&g), ids(&[0, 3, 5]));
    let keys: BTreeSet<String> = g.iter().map(|g| g["group_key"].to_string()).collect();
    assert!(
        keys.contains(r#"{"hostname":"h1","paths":["/a"],"tags":null}"#),
        "{keys:?}"
    );
    assert_eq!(
        plan(&env, &["--keep-last", "1", "--group-by", "host,paths"]),
        g,
        "host,paths is the default"
    );

    // By host: two groups.
    let g = plan(&env, &["--keep-last", "1", "--group-by", "host"]);
    assert_eq!(g.len(), 2);
    assert_eq!(kept(&g), ids(&[3, 5]));
    for gr in &g {
        assert!(gr["group_key"]["paths"].is_null() && gr["group_key"]["tags"].is_null());
    }

    // By tags: groups x and y across hosts.
    let g = plan(&env, &["--keep-last", "1", "--group-by", "tags"]);
    assert_eq!(g.len(), 2);
    assert_eq!(kept(&g), ids(&[0, 3]));
    for gr in &g {
        assert!(gr["group_key"]["hostname"].is_null());
        assert_eq!(gr["group_key"]["tags"].as_array().unwrap().len(), 1);
    }

    // By host,tags.
    let g = plan(&env, &["--keep-last", "1", "--group-by", "host,tags"]);
    assert_eq!(g.len(), 4);
    assert_eq!(kept(&g), ids(&[0, 3, 5, 6]));

    let r = env.run(&["forget", "--keep-last", "1", "--group-by", "hostname"]);
    assert!(!r.ok() && r.stderr.contains("group-by"), "{r}");

    // --host filter: only h2 considered.
    let g = plan(&env, &["--keep-last", "1", "--host", "h2"]);
    assert_eq!(g.len(), 1);
    assert_eq!(kept(&g), ids(&[5]));
    assert_eq!(removed(&g), ids(&[6]));

    // --tag filter: only snapshots tagged x.
    let g = plan(&env, &["--keep-last", "1", "--tag", "x"]);
    assert_eq!(kept(&g), ids(&[0, 4, 5]));
    assert_eq!(removed(&g), ids(&[2]));

    // --path filter.
    let g = plan(&env, &["--keep-last", "1", "--path", "/b"]);
    assert_eq!(kept(&g), ids(&[3]));
    assert_eq!(removed(&g), ids(&[4]));

    // For real, with a host filter: other hosts untouched.
    env.ok(&[
        "forget",
        "--keep-last",
        "1",
        "--host",
        "h1",
        "--group-by",
        "host",
    ]);
    let left: BTreeSet<String> = env.snapshot_ids().into_iter().collect();
    assert_eq!(left, ids(&[3, 5, 6]));
}

// ---------------------------------------------------------------------------
// Cross-check against restic.

/// A history for the cross-check: year, month, ISO week, day and hour
/// boundaries, same-hour and same-day snapshots, tags a / b.
const CROSS: &[(&str, &[&str])] = &[
    ("2024-12-31 23:00:00", &["a"]),
    ("2025-01-01 01:00:00", &[]),
    ("2025-06-15 12:00:00", &["b"]),
    ("2025-12-28 10:00:00", &[]),
    ("2026-01-01 10:00:00", &["a"]),
    ("2026-01-04 20:00:00", &[]),
    ("2026-01-05 08:00:00", &["a", "b"]),
    ("2026-02-01 12:00:00", &[]),
    ("2026-02-28 23:59:00", &["b"]),
    ("2026-03-01 00:01:00", &[]),
    ("2026-03-08 08:00:00", &[]),
    ("2026-03-08 23:30:00", &["a"]),
    ("2026-03-09 00:30:00", &[]),
    ("2026-03-09 12:00:00", &["a", "b"]),
    ("2026-03-09 12:45:00", &[]),
    ("2026-03-09 13:10:00", &["b"]),
    ("2026-03-10 09:00:00", &[]),
    ("2026-03-10 09:59:00", &["a"]),
    ("2026-03-10 10:00:00", &[]),
    ("2026-03-10 18:00:00", &[]),
];

const CROSS_POLICIES: &[&[&str]] = &[
    &["--keep-last", "5"],
    &["--keep-hourly", "6"],
    &["--keep-daily", "5"],
    &["--keep-weekly", "4"],
    // 2024-12-31 and 2025-01-01 share ISO week 2025-W01; the count is not
    // used up, so current restic also keeps the oldest snapshot.
    &["--keep-weekly", "50"],
    &["--keep-monthly", "4"],
    &["--keep-yearly", "3"],
    &["--keep-yearly", "10"],
    &["--keep-within", "2d"],
    &["--keep-within", "1m"],
    &["--keep-within", "1y2m3d4h"],
    &["--keep-within-hourly", "1d"],
    &["--keep-within-daily", "10d"],
    &["--keep-within-weekly", "2m"],
    &["--keep-within-monthly", "1y"],
    &["--keep-within-yearly", "2y"],
    &["--keep-tag", "a"],
    &["--keep-tag", "a,b"],
    &["--keep-tag", "a", "--keep-tag", "b"],
    &[
        "--keep-daily",
        "3",
        "--keep-weekly",
        "2",
        "--keep-monthly",
        "3",
        "--keep-yearly",
        "2",
    ],
    &["--keep-last", "2", "--keep-hourly", "3", "--keep-tag", "b"],
    &["--keep-hourly", "2", "--keep-within-daily", "5d"],
    &["--keep-daily", "30"],
];

fn restic(repo: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new("restic")
        .env("RESTIC_PASSWORD", "pw")
        .env("TZ", "UTC")
        .env("RESTIC_CACHE_DIR", repo.with_extension("cache"))
        .env_remove("RESTIC_REPOSITORY")
        .env_remove("RESTIC_PASSWORD_FILE")
        .env_remove("RESTIC_PASSWORD_COMMAND")
        .arg("-r")
        .arg(repo)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

/// restic's (major, minor) version.
fn restic_version() -> (u32, u32) {
    let out = Command::new("restic").arg("version").output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let v = text.split_whitespace().nth(1).unwrap_or("0.0.0");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// Kept snapshots of the single group: time (Unix seconds) -> reasons.
fn kept_times(groups: &Value) -> BTreeMap<i64, Vec<String>> {
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 1, "one group expected: {groups:?}");
    let mut out = BTreeMap::new();
    for r in groups[0]["reasons"].as_array().unwrap() {
        let t = chrono::DateTime::parse_from_rfc3339(r["snapshot"]["time"].as_str().unwrap())
            .unwrap()
            .timestamp();
        let m = r["matches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m.as_str().unwrap().to_string())
            .collect();
        out.insert(t, m);
    }
    let keep_n = groups[0]["keep"].as_array().map_or(0, |k| k.len());
    assert_eq!(keep_n, out.len(), "one reason per kept snapshot");
    out
}

#[test]
fn same_kept_snapshots_as_restic() {
    if !have_restic() {
        println!("SKIPPED: restic is not installed (apt-get install restic); cross-check not run");
        return;
    }
    let (major, minor) = restic_version();
    // restic < 0.16 lacks "keep the oldest snapshot while a count is left"
    // (restic PR #4366); cairn follows current restic.
    let has_oldest_rule = (major, minor) >= (0, 16);

    let env = Env::new();
    let src = env.dir("src");
    std::fs::write(src.join("f"), b"cross-check\n").unwrap();
    let src_s = src.to_str().unwrap();

    // cairn: the same times, host and path; tags as given.
    let template = env.backup(&src, &["--host", "h", "--time", "2000-01-01 00:00:00"]);
    {
        let repo = Repository::open(&env.repo, PASSWORD.as_bytes()).unwrap();
        let (tid, t) = repo
            .find_snapshot(&template.id, &Default::default())
            .unwrap();
        for (time, tags) in CROSS {
            let mut s = t.clone();
            let dt = chrono::NaiveDateTime::parse_from_str(time, "%Y-%m-%d %H:%M:%S")
                .unwrap()
                .and_utc();
            s.time = dt.timestamp();
            s.utc_offset = 0;
            s.tags = tags.iter().map(|t| t.to_string()).collect();
            s.parent = None;
            repo.save_snapshot(&s).unwrap();
        }
        repo.backend()
            .remove(Handle::new(FileKind::Snapshot, tid))
            .unwrap();
    }

    // restic: real backups with --time, a few at a time.
    let rrepo = env.tmp.path().join("restic-repo");
    let o = restic(&rrepo, &["init", "-q"]);
    assert!(o.status.success(), "restic init: {o:?}");
    for chunk in CROSS.chunks(4) {
        std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|(time, tags)| {
                    let rrepo = &rrepo;
                    s.spawn(move || {
                        let mut args = vec!["backup", "-q", "--host", "h", "--time", time];
                        for t in tags.iter() {
                            args.push("--tag");
                            args.push(t);
                        }
                        args.push(src_s);
                        let o = restic(rrepo, &args);
                        assert!(o.status.success(), "restic backup: {o:?}");
                    })
                })
                .collect();
            for h in hs {
                h.join().unwrap();
            }
        });
    }

    let mut failures = Vec::new();
    for chunk in CROSS_POLICIES.chunks(4) {
        let restic_out: Vec<Value> = std::thread::scope(|s| {
            let hs: Vec<_> = chunk
                .iter()
                .map(|policy| {
                    let rrepo = &rrepo;
                    s.spawn(move || {
                        let mut args = vec!["--no-lock", "--json", "forget", "--dry-run"];
                        args.extend_from_slice(policy);
                        let o = restic(rrepo, &args);
                        assert!(o.status.success(), "restic forget {policy:?}: {o:?}");
                        let text = String::from_utf8_lossy(&o.stdout);
                        let line = text.lines().find(|l| l.starts_with('[')).unwrap_or("[]");
                        serde_json::from_str(line).unwrap()
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (policy, r) in chunk.iter().zip(restic_out) {
            let ours = kept_times(&Value::Array(plan(&env, policy)));
            let theirs = kept_times(&r);
            let oldest = CROSS
                .iter()
                .map(|(t, _)| {
                    chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
                        .unwrap()
                        .and_utc()
                        .timestamp()
                })
                .min()
                .unwrap();
            let mut ours_cmp = ours.clone();
            if !has_oldest_rule {
                // Only the oldest snapshot may be kept in addition, and only
                // by an "oldest ..." reason.
                if let Some(m) = ours.get(&oldest)
                    && !theirs.contains_key(&oldest)
                    && m.iter().all(|r| r.starts_with("oldest "))
                {
                    ours_cmp.remove(&oldest);
                    println!("{policy:?}: oldest snapshot kept by cairn only (restic < 0.16)");
                }
            }
            let a: BTreeSet<_> = ours_cmp.keys().collect();
            let b: BTreeSet<_> = theirs.keys().collect();
            if a != b {
                failures.push(format!(
                    "{policy:?}: cairn keeps {ours:?}\n    restic keeps {theirs:?}"
                ));
                continue;
            }
            // Reasons agree too (restic's strings), except "oldest" ones.
            for (t, m) in &theirs {
                let mine: Vec<&String> = ours[t]
                    .iter()
                    .filter(|r| !r.starts_with("oldest "))
                    .collect();
                let theirs_m: Vec<&String> = m.iter().collect();
                if mine != theirs_m {
                    failures.push(format!(
                        "{policy:?}: reasons for {t}: cairn {:?}, restic {m:?}",
                        ours[t]
                    ));
                }
            }
        }
    }
    assert!(
        failures.is_empty(),
        "cairn and restic {major}.{minor} disagree:\n{}",
        failures.join("\n")
    );
}
