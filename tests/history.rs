//! Browsing history through the real binary: `find` (paths and ids),
//! `diff` (every kind of change, totals, SQLite schema and rows), `tag`
//! (including an interrupted rewrite), `snapshots --latest/--compact/
//! --group-by`, and `--at` / filters wherever a snapshot is chosen.

mod support;

use rusqlite::Connection;
use serde_json::Value;
use std::collections::BTreeSet;
use std::fs;
use std::path::Path;
use support::*;

fn json_lines(out: &[u8]) -> Vec<Value> {
    String::from_utf8_lossy(out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// `find --json` as (short snapshot id → matched paths).
fn find_json(repo: &Repo, args: &[&str]) -> Vec<(String, BTreeSet<String>)> {
    let mut all = vec!["--json", "find"];
    all.extend_from_slice(args);
    let r = repo.run(&all).ok();
    let v = last_json(&r.stdout);
    v.as_array()
        .expect("array")
        .iter()
        .map(|s| {
            assert_eq!(
                s["hits"].as_u64().unwrap() as usize,
                s["matches"].as_array().unwrap().len()
            );
            (
                s["short_id"].as_str().unwrap().to_string(),
                s["matches"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|m| m["path"].as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect()
}

fn short(id: &str) -> String {
    id[..8].to_string()
}

fn set(paths: &[&Path]) -> BTreeSet<String> {
    paths
        .iter()
        .map(|p| p.to_str().unwrap().to_string())
        .collect()
}

#[test]
fn find_searches_every_snapshot_with_restic_patterns_and_filters() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("app/main.py"), b"print(1)\n");
    write(&src.join("app/README.md"), b"readme\n");
    write(&src.join("lib/util.py"), b"x = 1\n");
    // A big directory, so that it has a tree blob of its own.
    for i in 0..150 {
        write(&src.join(format!("many/f{i:03}.txt")), b"same\n");
    }
    set_mtime(&src.join("app/main.py"), 1_700_000_000, 0);
    set_mtime(&src.join("lib/util.py"), 1_750_000_000, 0);
    let s1 = repo.backup(&[&src], &["--time", "2026-11-01 10:00", "--host", "alpha"]);
    write(&src.join("lib/new.py"), b"y = 2\n");
    fs::remove_file(src.join("app/main.py")).unwrap();
    let s2 = repo.backup(&[&src], &["--time", "2026-11-02 10:00", "--host", "alpha"]);
    let s3 = repo.backup(&[&src], &["--time", "2026-11-03 10:00", "--host", "beta"]);

    let py1 = set(&[&src.join("app/main.py"), &src.join("lib/util.py")]);
    let py2 = set(&[&src.join("lib/new.py"), &src.join("lib/util.py")]);
    // Newest first, like restic; --reverse turns it round.
    let found = find_json(&repo, &["*.py"]);
    assert_eq!(
        found,
        vec![
            (short(&s3), py2.clone()),
            (short(&s2), py2.clone()),
            (short(&s1), py1.clone())
        ]
    );
    let reversed = find_json(&repo, &["*.py", "--reverse"]);
    assert_eq!(reversed[0].0, short(&s1));

    // Filters, explicit snapshots, --at.
    assert_eq!(find_json(&repo, &["*.py", "--host", "beta"]).len(), 1);
    let picked = find_json(
        &repo,
        &["*.py", "--snapshot", &s1[..10], "--snapshot", "latest"],
    );
    assert_eq!(
        picked,
        vec![(short(&s3), py2.clone()), (short(&s1), py1.clone())]
    );
    let at = find_json(&repo, &["*.py", "--at", "2026-11-01 23:00"]);
    assert_eq!(at, vec![(short(&s1), py1.clone())]);
    let at_host = find_json(
        &repo,
        &["*.py", "--at", "2026-11-03 23:00", "--host", "alpha"],
    );
    assert_eq!(at_host[0].0, short(&s2));

    // Case, anchors, directories, several patterns.
    assert!(find_json(&repo, &["readme.md"]).is_empty());
    assert_eq!(find_json(&repo, &["-i", "readme.md"]).len(), 3);
    let anchored = format!("{}/lib/*", src.display());
    let lib = find_json(&repo, &[&anchored, "--snapshot", &s2]);
    assert_eq!(
        lib[0].1,
        set(&[&src.join("lib/new.py"), &src.join("lib/util.py")])
    );
    let dirs = find_json(&repo, &["app", "lib", "--snapshot", &s1]);
    assert_eq!(dirs[0].1, set(&[&src.join("app"), &src.join("lib")]));
    assert_eq!(
        find_json(&repo, &["many/f14*.txt", "--snapshot", &s1])[0]
            .1
            .len(),
        10
    );

    // Modification time bounds (local times, like restic).
    let old = find_json(
        &repo,
        &["*.py", "--newest", "2024-01-01", "--snapshot", &s1],
    );
    assert_eq!(old[0].1, set(&[&src.join("app/main.py")]));
    let mid = find_json(
        &repo,
        &[
            "*.py",
            "--oldest",
            "2024-01-01",
            "--newest",
            "2026-01-01",
            "--snapshot",
            &s1,
        ],
    );
    assert_eq!(mid[0].1, set(&[&src.join("lib/util.py")]));

    // Text output names the snapshot and each path; --long adds ls -l columns.
    let text = repo.run(&["find", "main.py", "--long"]).ok().out();
    assert!(text.contains(&format!("snapshot {}", short(&s1))), "{text}");
    assert!(text.contains("-rw-"), "{text}");
    assert!(!text.contains(&short(&s2)), "{text}");

    // Nothing found is not an error; a bad pattern is.
    assert!(find_json(&repo, &["*.nothing"]).is_empty());
    let err = repo.run(&["find", "[unclosed"]).fails(Some(1));
    assert!(err.contains("pattern"), "{err}");
    let err = repo
        .run(&["find", "x", "--snapshot", "zzzz"])
        .fails(Some(1));
    assert!(err.contains("zzzz"), "{err}");
}

#[test]
fn find_maps_blob_tree_and_pack_ids_to_files_and_snapshots() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("a/shared.bin"), &random_bytes(7, 5000));
    write(&src.join("b/copy.bin"), &random_bytes(7, 5000));
    write(&src.join("b/other.bin"), &random_bytes(8, 5000));
    for i in 0..150 {
        write(&src.join(format!("big/f{i:03}")), format!("{i}").as_bytes());
    }
    let s1 = repo.backup(&[&src], &[]);
    fs::remove_file(src.join("b/copy.bin")).unwrap();
    let s2 = repo.backup(&[&src], &[]);

    let tree = |path: &Path| -> Value {
        let spec = format!("{}:{}", s1, path.display());
        serde_json::from_slice(&repo.run(&["cat", "tree", &spec]).ok().stdout).unwrap()
    };
    let a = tree(&src.join("a"));
    let blob = a["nodes"][0]["content"][0].as_str().unwrap().to_string();

    // The blob is used by two files in s1 and one in s2.
    let hits = find_json(&repo, &["--blob", &blob[..12]]);
    assert_eq!(
        hits,
        vec![
            (short(&s2), set(&[&src.join("a/shared.bin")])),
            (
                short(&s1),
                set(&[&src.join("a/shared.bin"), &src.join("b/copy.bin")])
            ),
        ]
    );
    let r = repo.run(&["--json", "find", "--blob", &blob]).ok();
    let v = last_json(&r.stdout);
    let obj = &v[0]["matches"][0]["objects"][0];
    assert_eq!(obj["id"].as_str().unwrap(), blob);
    assert_eq!(obj["type"].as_str().unwrap(), "data blob");
    let text = repo.run(&["find", "--blob", &blob]).ok().out();
    assert!(text.contains("b/copy.bin"), "{text}");

    // A directory's tree blob.
    let big = tree(&src.join("big"));
    let tid = big["id"]
        .as_str()
        .expect("big directory has a tree blob")
        .to_string();
    let hits = find_json(&repo, &["--tree", &tid[..16]]);
    assert_eq!(hits.len(), 2);
    assert_eq!(hits[0].1, set(&[&src.join("big")]));
    // --tree does not look into file contents.
    assert!(find_json(&repo, &["--tree", &blob]).is_empty());

    // Every pack: every file is found through the packs that hold its blobs.
    let packs: Vec<String> = walk_files(&repo.path.join("data"))
        .iter()
        .map(|p| p.file_name().unwrap().to_str().unwrap().to_string())
        .collect();
    assert!(!packs.is_empty());
    let mut args = vec!["--pack"];
    args.extend(packs.iter().map(String::as_str));
    args.extend(["--snapshot", &s1]);
    let via_packs = find_json(&repo, &args);
    assert!(
        via_packs[0]
            .1
            .contains(&src.join("b/other.bin").display().to_string())
    );

    // Ids are checked.
    let err = repo.run(&["find", "--blob", "xyz"]).fails(Some(1));
    assert!(err.contains("xyz"), "{err}");
}

fn walk_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(walk_files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// `diff --json` as (sorted change lines, statistics).
fn diff_json(repo: &Repo, args: &[&str]) -> (Vec<String>, Value) {
    let mut all = vec!["--json", "diff"];
    all.extend_from_slice(args);
    let r = repo.run(&all).ok();
    let mut lines = json_lines(&r.stdout);
    let stats = lines.pop().expect("statistics");
    assert_eq!(stats["message_type"], "statistics");
    let changes = lines
        .iter()
        .map(|l| {
            assert_eq!(l["message_type"], "change");
            format!(
                "{} {}",
                l["modifier"].as_str().unwrap(),
                l["path"].as_str().unwrap()
            )
        })
        .collect();
    (changes, stats)
}

#[test]
fn diff_shows_each_kind_of_change_and_totals() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("same.txt"), b"unchanged\n");
    write(&src.join("edit.txt"), b"before\n");
    write(&src.join("gone/x.txt"), b"x\n");
    write(&src.join("typed"), b"a file first\n");
    write(&src.join("perm.txt"), b"perm\n");
    std::os::unix::fs::symlink("same.txt", src.join("link")).unwrap();
    stamp_times(&src, 1_700_000_000);
    let s1 = repo.backup(&[&src], &["--time", "2026-11-01 10:00"]);

    write(&src.join("edit.txt"), &random_bytes(3, 300_000));
    fs::remove_dir_all(src.join("gone")).unwrap();
    write(&src.join("new/dir/y.txt"), b"y\n");
    fs::remove_file(src.join("typed")).unwrap();
    write(&src.join("typed/inside.txt"), b"now a directory\n");
    chmod(&src.join("perm.txt"), 0o600);
    fs::remove_file(src.join("link")).unwrap();
    std::os::unix::fs::symlink("edit.txt", src.join("link")).unwrap();
    let s2 = repo.backup(&[&src], &["--time", "2026-11-02 10:00"]);

    let p = |rel: &str| src.join(rel).display().to_string();
    let (changes, stats) = diff_json(&repo, &[&s1, &s2]);
    let expected: Vec<String> = vec![
        format!("M {}", p("edit.txt")),
        format!("- {}/", p("gone")),
        format!("- {}", p("gone/x.txt")),
        format!("M {}", p("link")),
        format!("+ {}/", p("new")),
        format!("+ {}/", p("new/dir")),
        format!("+ {}", p("new/dir/y.txt")),
        format!("T {}/", p("typed")),
        format!("+ {}", p("typed/inside.txt")),
    ];
    assert_eq!(changes, expected);
    assert_eq!(stats["changed_files"], 1);
    assert_eq!(stats["type_changed"], 1);
    assert_eq!(stats["added"]["files"], 2);
    assert_eq!(stats["added"]["dirs"], 2);
    assert_eq!(stats["removed"]["files"], 1);
    assert_eq!(stats["removed"]["dirs"], 1);
    assert_eq!(stats["source_snapshot"].as_str().unwrap(), s1);
    assert_eq!(stats["target_snapshot"].as_str().unwrap(), s2);
    // The new content of edit.txt is new data; what it replaced is gone.
    let added = stats["added"]["bytes"].as_u64().unwrap();
    assert!((300_000..400_000).contains(&added), "{stats}");
    let removed = stats["removed"]["bytes"].as_u64().unwrap();
    assert!(removed > 0 && removed < 10_000, "{stats}");

    // --metadata adds the U lines (the chmod; and directories whose
    // modification time changed).
    let (with_meta, _) = diff_json(&repo, &["--metadata", &s1, &s2]);
    assert!(
        with_meta.contains(&format!("U {}", p("perm.txt"))),
        "{with_meta:?}"
    );
    assert!(!changes.iter().any(|c| c.starts_with('U')));

    // Text output: restic's marks and totals.
    let text = repo.run(&["diff", &s1, &s2]).ok().out();
    assert!(text.contains(&format!("M    {}", p("edit.txt"))), "{text}");
    assert!(text.contains("Files:"), "{text}");
    assert!(text.contains("Added:"), "{text}");

    // A directory of each, --at, and a snapshot against itself.
    let sub1 = format!("{s1}:{}", p("new"));
    let (none, _) = diff_json(
        &repo,
        &[
            &format!("{s2}:{}", p("new")),
            &format!("latest:{}", p("new")),
        ],
    );
    assert!(none.is_empty(), "{none:?}");
    let err = repo.run(&["diff", &sub1, &s2]).fails(Some(1));
    assert!(err.contains("new"), "{err}");
    let (at, _) = diff_json(
        &repo,
        &["--at", "2026-11-01 12:00", "--at", "2026-11-02 12:00"],
    );
    assert_eq!(at, expected);
    let (at_latest, _) = diff_json(&repo, &["--at", "2026-11-01 12:00", "latest"]);
    assert_eq!(at_latest, expected);
    let (same, st) = diff_json(&repo, &[&s2, &s2]);
    assert!(same.is_empty());
    assert_eq!(st["added"]["bytes"], 0);
    repo.run(&["diff", &s1]).fails(Some(1));
}

#[test]
fn diff_reports_sqlite_schema_changes_and_row_counts() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let db = ws.path("app.db");
    let conn = Connection::open(&db).unwrap();
    conn.execute_batch(
        "create table users(id integer primary key, name text);
         create table orders(id integer primary key, user integer);
         create index orders_user on orders(user);",
    )
    .unwrap();
    for i in 0..100 {
        conn.execute("insert into users(name) values (?1)", [format!("u{i}")])
            .unwrap();
    }
    for i in 0..40 {
        conn.execute("insert into orders(user) values (?1)", [i % 10])
            .unwrap();
    }
    let db_arg = db.to_str().unwrap();
    let s1 = repo.backup(&[], &["--sqlite", db_arg]);
    conn.execute_batch(
        "alter table users add column email text;
         create table invoices(id integer primary key, total real);
         insert into invoices(total) values (1.5), (2.5), (3.5);
         drop index orders_user;
         delete from orders where id > 30;",
    )
    .unwrap();
    for i in 0..50 {
        conn.execute("insert into users(name) values (?1)", [format!("v{i}")])
            .unwrap();
    }
    drop(conn);
    let s2 = repo.backup(&[], &["--sqlite", db_arg]);

    let (changes, stats) = diff_json(&repo, &[&s1, &s2]);
    assert!(changes.contains(&format!("M {db_arg}")), "{changes:?}");
    let dbs = stats["databases"].as_array().unwrap();
    assert_eq!(dbs.len(), 1, "{stats}");
    let d = &dbs[0];
    assert_eq!(d["path"].as_str().unwrap(), db_arg);
    assert_eq!(d["schema_changed"], true);
    let objects: BTreeSet<(String, String, bool, bool)> = d["schema_changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["kind"].as_str().unwrap().to_string(),
                c["name"].as_str().unwrap().to_string(),
                c["old_sql"].is_string(),
                c["new_sql"].is_string(),
            )
        })
        .collect();
    let expected: BTreeSet<(String, String, bool, bool)> = [
        ("index", "orders_user", true, false),
        ("table", "invoices", false, true),
        ("table", "users", true, true),
    ]
    .iter()
    .map(|(k, n, o, w)| (k.to_string(), n.to_string(), *o, *w))
    .collect();
    assert_eq!(objects, expected);
    let rows: Vec<(String, Value, Value)> = d["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_string(),
                t["old_rows"].clone(),
                t["new_rows"].clone(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        vec![
            ("invoices".to_string(), Value::Null, Value::from(3)),
            ("orders".to_string(), Value::from(40), Value::from(30)),
            ("users".to_string(), Value::from(100), Value::from(150)),
        ]
    );
    let text = repo.run(&["diff", &s1, &s2]).ok().out();
    assert!(
        text.contains(&format!("Database {db_arg}: schema changed")),
        "{text}"
    );
    assert!(
        text.contains("table users: 100 -> 150 rows (+50)"),
        "{text}"
    );
    assert!(text.contains("table invoices: new, 3 rows"), "{text}");
    assert!(text.contains("- index orders_user"), "{text}");
    assert!(text.contains("email"), "{text}");
}

fn snapshot_files(repo: &Repo) -> BTreeSet<String> {
    fs::read_dir(repo.path.join("snapshots"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn tag_rewrites_snapshots_and_survives_an_interrupted_rewrite() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    write(&src.join("f"), &random_bytes(1, 100_000));
    let s1 = repo.backup(&[&src], &["--tag", "nightly", "--host", "h1"]);
    write(&src.join("g"), &random_bytes(2, 100_000));
    let s2 = repo.backup(&[&src], &["--tag", "nightly", "--host", "h2"]);

    // --add/--remove/--set on ids and on filters.
    let r = repo
        .run(&["--json", "tag", &s1[..8], "--add", "keep,weekly"])
        .ok();
    let v = last_json(&r.stdout);
    let new1 = v["changed"][0]["new"].as_str().unwrap().to_string();
    assert_eq!(v["changed"][0]["old"].as_str().unwrap(), s1);
    let tags_of = |id: &str| -> Vec<String> {
        repo.snapshots()
            .into_iter()
            .find(|s| s["id"] == id)
            .map(|s| serde_json::from_value(s["tags"].clone()).unwrap())
            .unwrap_or_else(|| panic!("no snapshot {id}"))
    };
    assert_eq!(tags_of(&new1), ["keep", "nightly", "weekly"]);
    assert_eq!(repo.snapshots().len(), 2);
    repo.run(&["tag", "--host", "h2", "--remove", "nightly"])
        .ok();
    let latest_h2 = repo
        .run(&["cat", "snapshot", "latest", "--host", "h2"])
        .ok();
    let latest_h2: Value = serde_json::from_slice(&latest_h2.stdout).unwrap();
    assert_eq!(latest_h2["tags"], serde_json::json!([]));
    assert_eq!(latest_h2["replaces"].as_str().unwrap(), s2);
    repo.run(&["tag", "--tag", "keep", "--set", "archive"]).ok();
    let snaps = repo.snapshots();
    let archived: Vec<&Value> = snaps
        .iter()
        .filter(|s| s["tags"] == serde_json::json!(["archive"]))
        .collect();
    assert_eq!(archived.len(), 1);
    let current1 = archived[0]["id"].as_str().unwrap().to_string();
    // Tree, time, host and paths are kept.
    let before: Value =
        serde_json::from_slice(&repo.run(&["cat", "snapshot", &current1]).ok().stdout).unwrap();
    assert_eq!(before["hostname"], "h1");
    // Unchanged: no rewrite; contradictions refused.
    let r = repo
        .run(&["--json", "tag", &current1, "--add", "archive"])
        .ok();
    assert_eq!(last_json(&r.stdout)["changed"], serde_json::json!([]));
    repo.run(&["tag", &current1, "--set", "a", "--add", "b"])
        .fails(Some(1));
    repo.run(&["tag", &current1]).fails(Some(1));
    repo.run(&["tag", &current1, "--add", "bad\ttag"])
        .fails(Some(1));

    // An interrupted rewrite: the old file is still there beside the new.
    let files_before = snapshot_files(&repo);
    let saved: Vec<(String, Vec<u8>)> = files_before
        .iter()
        .map(|f| {
            (
                f.clone(),
                fs::read(repo.path.join("snapshots").join(f)).unwrap(),
            )
        })
        .collect();
    repo.run(&["tag", &current1, "--add", "interrupted"]).ok();
    for (name, bytes) in &saved {
        let p = repo.path.join("snapshots").join(name);
        if !p.exists() {
            fs::write(&p, bytes).unwrap();
        }
    }
    assert_eq!(snapshot_files(&repo).len(), 3);
    // Only the new one is shown; check accepts the repository.
    let shown = repo.snapshots();
    assert_eq!(shown.len(), 2, "{shown:?}");
    assert!(!shown.iter().any(|s| s["id"] == current1.as_str()));
    let checked = repo.run(&["check", "--read-data"]).ok().out();
    assert!(
        checked.contains("left over from an interrupted `tag`"),
        "{checked}"
    );
    // prune keeps the data of both, and restore works.
    repo.run(&["prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    // Forgetting the new one removes the hidden old one too: it does not
    // come back.
    let newest1 = shown.iter().find(|s| s["hostname"] == "h1").unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    repo.run(&["forget", &newest1]).ok();
    let left = repo.snapshots();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0]["hostname"], "h2");
    assert_eq!(snapshot_files(&repo).len(), 1);
    repo.run(&["prune"]).ok();
    repo.run(&["check", "--read-data"]).ok();
    let target = ws.path("restore");
    repo.restore("latest", &target, &[]).ok();
    assert_eq!(
        fs::read(restored(&target, &src).join("g")).unwrap(),
        random_bytes(2, 100_000)
    );
}

#[test]
fn snapshots_latest_compact_and_group_by() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let a = ws.path("a");
    let b = ws.path("b");
    write(&a.join("f"), b"a");
    write(&b.join("f"), b"b");
    for (i, host) in ["h1", "h1", "h1", "h2", "h2"].iter().enumerate() {
        let t = format!("2026-11-0{} 10:00", i + 1);
        repo.backup(&[&a], &["--host", host, "--time", &t]);
    }
    repo.backup(
        &[&b],
        &["--host", "h1", "--time", "2026-11-09 10:00", "--tag", "x"],
    );

    let r = repo.run(&["--json", "snapshots", "--latest", "1"]).ok();
    let v = last_json(&r.stdout);
    let list = v.as_array().unwrap();
    // One per host and path set: (h1, a), (h2, a), (h1, b).
    assert_eq!(list.len(), 3);
    let times: Vec<&str> = list.iter().map(|s| s["time"].as_str().unwrap()).collect();
    assert!(times[0].starts_with("2026-11-03"), "{times:?}");
    let r = repo
        .run(&["--json", "snapshots", "--latest", "2", "--host", "h1"])
        .ok();
    assert_eq!(last_json(&r.stdout).as_array().unwrap().len(), 3);

    let r = repo
        .run(&["--json", "snapshots", "--group-by", "host"])
        .ok();
    let groups = last_json(&r.stdout);
    let groups = groups.as_array().unwrap();
    assert_eq!(groups.len(), 2);
    assert_eq!(groups[0]["group_key"]["hostname"], "h1");
    assert_eq!(groups[0]["snapshots"].as_array().unwrap().len(), 4);
    assert_eq!(groups[1]["snapshots"].as_array().unwrap().len(), 2);
    let r = repo
        .run(&["--json", "snapshots", "-g", "host,paths", "--latest", "1"])
        .ok();
    assert_eq!(last_json(&r.stdout).as_array().unwrap().len(), 3);
    repo.run(&["snapshots", "--group-by", "colour"])
        .fails(Some(1));

    let text = repo.run(&["snapshots", "--compact"]).ok().out();
    assert!(text.lines().next().unwrap().contains("Tags"), "{text}");
    assert!(!text.contains("Paths"), "{text}");
    let text = repo.run(&["snapshots", "--group-by", "host"]).ok().out();
    assert!(text.contains("snapshots for (host h1)"), "{text}");
    assert!(text.contains("snapshots for (host h2)"), "{text}");
}

#[test]
fn at_and_filters_choose_snapshots_for_ls_dump_cat_restore() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let src = ws.path("src");
    let file = src.join("config.yml");
    let fs_ = file.to_str().unwrap();
    write(&file, b"v1\n");
    repo.backup(&[&src], &["--host", "web", "--time", "2026-11-24 18:00"]);
    write(&file, b"v2\n");
    repo.backup(&[&src], &["--host", "db", "--time", "2026-11-25 18:00"]);
    write(&file, b"v3\n");
    repo.backup(&[&src], &["--host", "web", "--time", "2026-11-26 18:00"]);

    let dump = |args: &[&str]| repo.run(args).ok().out();
    assert_eq!(dump(&["dump", "--at", "2026-11-25 09:00", fs_]), "v1\n");
    assert_eq!(dump(&["dump", "--at", "2026-11-26 09:00", fs_]), "v2\n");
    assert_eq!(
        dump(&["dump", "--at", "2026-11-26 09:00", "--host", "web", fs_]),
        "v1\n"
    );
    assert_eq!(dump(&["dump", "latest", fs_]), "v3\n");
    assert_eq!(dump(&["dump", "latest", "--host", "db", fs_]), "v2\n");
    // ls with --at takes the path as its only argument.
    let ls = dump(&["ls", "--at", "2026-11-25 20:00", fs_]);
    assert_eq!(ls.trim(), fs_);
    let r = repo.run(&["--json", "ls", "--at", "2026-11-25 20:00"]).ok();
    let head: Value = serde_json::from_slice(&r.stdout).unwrap();
    assert_eq!(head["snapshot"]["hostname"], "db");
    repo.run(&["ls", "--at", "2026-11-25 20:00", "latest", fs_])
        .fails(Some(1));
    repo.run(&["ls", "--at", "2026-11-20 00:00"]).fails(Some(1));
    repo.run(&["ls", "--at", "not a time"]).fails(Some(1));
    // cat snapshot and restore.
    let cat =
        |args: &[&str]| -> Value { serde_json::from_slice(&repo.run(args).ok().stdout).unwrap() };
    assert_eq!(
        cat(&["cat", "snapshot", "--at", "2026-11-25 20:00"])["hostname"],
        "db"
    );
    assert_eq!(
        cat(&["cat", "snapshot", "latest", "--host", "db"])["hostname"],
        "db"
    );
    repo.run(&["cat", "config", "--at", "2026-11-25 20:00"])
        .fails(Some(1));
    let target = ws.path("r");
    repo.run(&[
        "restore",
        "--at",
        "2026-11-26 23:00",
        "--host",
        "db",
        "--target",
        target.to_str().unwrap(),
    ])
    .ok();
    assert_eq!(fs::read(restored(&target, &file)).unwrap(), b"v2\n");
}
