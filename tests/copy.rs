//! `copy` between repositories: only what the destination lacks, idempotent,
//! bit for bit (database records and page deltas included), between
//! repositories that share chunker parameters and between unrelated ones.

mod support;

use rusqlite::Connection;
use serde_json::Value;
use std::fs;
use std::path::Path;
use support::*;

fn copy_json(dest: &Repo, from: &Repo, extra: &[&str]) -> Value {
    let mut args = vec!["--json", "copy", "--from-repo", from.path.to_str().unwrap()];
    args.extend_from_slice(extra);
    let mut c = dest.cmd(&args);
    c.env("CAIRN_FROM_PASSWORD", PASSWORD);
    last_json(&run(c).ok().stdout)
}

fn make_db(path: &Path, rows: u32) {
    let conn = Connection::open(path).unwrap();
    conn.execute_batch("create table if not exists t(id integer primary key, v blob);")
        .unwrap();
    let tx = conn.unchecked_transaction().unwrap();
    for i in 0..rows {
        tx.execute(
            "insert into t(v) values (?1)",
            [random_bytes(u64::from(i), 300)],
        )
        .unwrap();
    }
    tx.commit().unwrap();
}

/// The table's rows (a restored database is a consistent copy, equal in
/// content, not byte for byte, to the live file it was taken from).
fn rows(path: &Path) -> Vec<(i64, Vec<u8>)> {
    let conn = Connection::open(path).unwrap();
    let mut st = conn.prepare("select id, v from t order by id").unwrap();
    st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(|r| r.unwrap())
        .collect()
}

fn update_some(path: &Path) {
    let conn = Connection::open(path).unwrap();
    conn.execute("update t set v = randomblob(300) where id % 97 = 0", [])
        .unwrap();
}

#[test]
fn copy_with_shared_chunker_params_moves_only_new_blobs() {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("a.bin"), &random_bytes(1, 400_000));
    write(&src.join("d/b.txt"), b"hello\n");
    let db = ws.path("app.db");
    make_db(&db, 3000);
    let source = ws.init_repo("source", SMALL_CHUNKS);
    source.backup(&[&src], &["--sqlite", db.to_str().unwrap(), "--tag", "x"]);
    update_some(&db);
    write(&src.join("c.bin"), &random_bytes(3, 100_000));
    let second = source.backup(&[&src], &["--sqlite", db.to_str().unwrap()]);

    let dest = Repo {
        path: ws.path("dest"),
    };
    let mut init = dest.cmd(&[
        "init",
        "--from-repo",
        source.path.to_str().unwrap(),
        "--copy-chunker-params",
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
    ]);
    init.env("CAIRN_FROM_PASSWORD", PASSWORD);
    run(init).ok();

    // A dry run copies nothing and says what it would.
    let dry = copy_json(&dest, &source, &["--dry-run"]);
    assert_eq!(dry["copied"].as_array().unwrap().len(), 2, "{dry}");
    assert!(dest.snapshot_ids().is_empty());

    // Only the first one, by id, then the rest.
    let first = source.snapshot_ids()[0].clone();
    let one = copy_json(&dest, &source, &[&first[..10]]);
    assert_eq!(one["copied"].as_array().unwrap().len(), 1);
    assert_eq!(one["shared_blob_ids"], true);
    let before = dest.size();
    let rest = copy_json(&dest, &source, &[]);
    assert_eq!(rest["copied"].as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest["already_present"].as_array().unwrap().len(), 1);
    // The second snapshot added only what changed: far less than the first.
    let grown = dest.size() - before;
    assert!(grown < before / 2, "{grown} vs {before}");
    // Idempotent.
    let again = copy_json(&dest, &source, &[]);
    assert!(again["copied"].as_array().unwrap().is_empty());
    assert_eq!(again["blobs_copied"], 0);

    // Same snapshots, same trees, and they restore bit for bit.
    let s: Vec<Value> = source.snapshots();
    let d: Vec<Value> = dest.snapshots();
    for (a, b) in s.iter().zip(&d) {
        for f in ["time", "hostname", "paths", "tags", "tree"] {
            assert_eq!(a[f], b[f], "{f}");
        }
        assert_eq!(a["databases"], b["databases"]);
    }
    dest.run(&["check", "--read-data"]).ok();
    let t = ws.path("t");
    let copied_second = d
        .iter()
        .find(|x| x["tree"] == s.iter().find(|y| y["id"] == second).unwrap()["tree"])
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = dest
        .run(&[
            "restore",
            &copied_second,
            "--target",
            t.to_str().unwrap(),
            "--verify",
        ])
        .ok();
    assert!(r.out().contains("database"), "{}", r.out());
    assert_eq!(
        fs::read(restored(&t, &src).join("a.bin")).unwrap(),
        random_bytes(1, 400_000)
    );
    assert!(
        rows(&restored(&t, &db)) == rows(&db),
        "database content differs"
    );
}

#[test]
fn copy_between_unrelated_repositories_reencodes() {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("a.bin"), &random_bytes(1, 300_000));
    for i in 0..20 {
        write(
            &src.join(format!("many/f{i}")),
            &random_bytes(100 + i, 3000),
        );
    }
    let db = ws.path("app.db");
    make_db(&db, 2000);
    let source = ws.init_repo("source", SMALL_CHUNKS);
    source.backup(&[&src], &["--sqlite", db.to_str().unwrap()]);
    update_some(&db);
    source.backup(
        &[&src],
        &["--sqlite", db.to_str().unwrap(), "--host", "other"],
    );
    let dest = ws.init_repo("dest", &[]);
    let r = copy_json(&dest, &source, &["--host", "other"]);
    assert_eq!(r["shared_blob_ids"], false);
    assert_eq!(r["copied"].as_array().unwrap().len(), 1);
    let r = copy_json(&dest, &source, &[]);
    assert_eq!(r["copied"].as_array().unwrap().len(), 1);
    assert_eq!(r["already_present"].as_array().unwrap().len(), 1);
    assert!(
        copy_json(&dest, &source, &[])["copied"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    dest.run(&["check", "--read-data"]).ok();
    for (i, id) in dest.snapshot_ids().iter().enumerate() {
        let t = ws.path(&format!("t{i}"));
        dest.run(&["restore", id, "--target", t.to_str().unwrap(), "--verify"])
            .ok();
        assert_eq!(
            fs::read(restored(&t, &src).join("a.bin")).unwrap(),
            random_bytes(1, 300_000)
        );
    }
    assert!(
        rows(&restored(&ws.path("t1"), &db)) == rows(&db),
        "database content differs"
    );
}

#[test]
fn copy_needs_a_source_and_its_password() {
    let ws = Workspace::new();
    let dest = ws.init_repo("dest", &[]);
    let line = dest.run(&["copy"]).fails(Some(1));
    assert!(line.contains("--from-repo"), "{line}");
    let other = ws.init_repo("other", &[]);
    let mut c = dest.cmd(&["copy", "--from-repo", other.path.to_str().unwrap()]);
    c.env("CAIRN_FROM_PASSWORD", "wrong");
    assert_eq!(run(c).code, Some(12));
    let mut c = dest.cmd(&["copy", "--from-repo", ws.path("nothing").to_str().unwrap()]);
    c.env("CAIRN_FROM_PASSWORD", PASSWORD);
    assert_eq!(run(c).code, Some(10));
}
