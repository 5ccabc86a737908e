//! Rollback detection: a client that has seen a newer state of a
//! repository notices when the repository shows an older one, and is not
//! fooled by what other clients legitimately did meanwhile.

mod support;

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use support::*;

/// One client: its own cache folder (where it remembers what it saw).
struct Client {
    cache: PathBuf,
}

impl Client {
    fn new(ws: &Workspace, name: &str) -> Client {
        Client {
            cache: ws.path(&format!("cache-{name}")),
        }
    }

    fn run<S: AsRef<OsStr>>(&self, repo: &Repo, args: &[S]) -> Run {
        let mut c = repo.cmd(args);
        c.env("XDG_CACHE_HOME", &self.cache);
        run(c)
    }

    fn backup(&self, repo: &Repo, src: &Path) -> String {
        let r = self
            .run(repo, &["--json", "backup", src.to_str().unwrap()])
            .ok();
        last_json(&r.stdout)["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

/// Replaces the repository's folder with `saved` (what someone who
/// controls the storage can do: present an older, authentic state).
fn roll_back(repo: &Repo, saved: &Path) {
    fs::remove_dir_all(&repo.path).unwrap();
    copy_tree(saved, &repo.path);
}

#[test]
fn a_client_notices_a_rolled_back_repository_and_not_legitimate_changes() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", &[]);
    let me = Client::new(&ws, "me");
    let other = Client::new(&ws, "other");
    let src = ws.path("src");
    write(&src.join("a"), &random_bytes(1, 100_000));
    me.backup(&repo, &src);
    write(&src.join("b"), &random_bytes(2, 100_000));
    let second = me.backup(&repo, &src);
    me.run(&repo, &["snapshots"]).ok();
    let before = ws.path("saved");
    copy_tree(&repo.path, &before);
    write(&src.join("c"), &random_bytes(3, 100_000));
    let third = me.backup(&repo, &src);
    let r = me.run(&repo, &["snapshots"]).ok();
    assert!(!r.stderr.contains("ROLLBACK"), "{}", r.stderr);

    // The storage presents the older state: every file authentic, the
    // newest snapshot gone. The client that saw it says so, loudly, on
    // `snapshots`, `backup` and `check` (which fails and names it).
    roll_back(&repo, &before);
    let r = me.run(&repo, &["snapshots"]).ok();
    assert!(r.stderr.contains("ROLLBACK?"), "{}", r.stderr);
    assert!(r.stderr.contains(&third[..8]), "{}", r.stderr);
    let r = me.run(&repo, &["backup", src.to_str().unwrap()]).ok();
    assert!(r.stderr.contains("ROLLBACK?"), "{}", r.stderr);
    let r = me.run(&repo, &["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains(&third[..8]), "{}", r.stderr);
    let v = last_json(&me.run(&repo, &["--json", "check"]).stdout);
    assert_eq!(v["rollback"]["missing_snapshots"][0], third.as_str(), "{v}");
    // A client that never saw the newer state cannot tell.
    other.run(&repo, &["check"]).ok();

    // Accepting the older state: remove the state file the message names.
    let state = me.cache.join("cairn").join("seen");
    fs::remove_dir_all(&state).unwrap();
    me.run(&repo, &["check"]).ok();

    // What other clients do legitimately is not a rollback: a forget (a
    // sealed record explains it), a prune that deletes at once (index
    // files go, a newer index state replaces them), a tag (the new
    // snapshot replaces the old one).
    me.run(&repo, &["snapshots"]).ok();
    other.run(&repo, &["forget", &second]).ok();
    other.run(&repo, &["prune", "--instant-delete"]).ok();
    let latest = last_json(&other.run(&repo, &["--json", "snapshots"]).ok().stdout);
    let id = latest[0]["id"].as_str().unwrap().to_string();
    other.run(&repo, &["tag", "--add", "keep", &id]).ok();
    let r = me.run(&repo, &["snapshots"]).ok();
    assert!(!r.stderr.contains("ROLLBACK"), "{}", r.stderr);
    me.run(&repo, &["check"]).ok();

    // An index rolled back (to before that prune) is noticed too.
    let index_before = ws.path("index-before");
    copy_tree(&repo.path.join("index"), &index_before);
    other.run(&repo, &["backup", src.to_str().unwrap()]).ok();
    write(&src.join("d"), &random_bytes(4, 100_000));
    let gone = last_json(
        &other
            .run(&repo, &["--json", "backup", src.to_str().unwrap()])
            .ok()
            .stdout,
    );
    other
        .run(&repo, &["forget", gone["snapshot_id"].as_str().unwrap()])
        .ok();
    other.run(&repo, &["prune", "--instant-delete"]).ok();
    me.run(&repo, &["check"]).ok();
    fs::remove_dir_all(repo.path.join("index")).unwrap();
    copy_tree(&index_before, &repo.path.join("index"));
    let r = me.run(&repo, &["check"]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(r.stderr.contains("ROLLBACK?"), "{}", r.stderr);
}
