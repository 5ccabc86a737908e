//! Damage and hostile input must cost no more than what they touch, and
//! never crash: crafted objects that a key holder can write (deep trees,
//! content-list bombs, trees sharing subtrees, snapshot times at the edges),
//! bit rot in one copy of a blob stored twice or in one snapshot file, and
//! the small things a first-time user met (terminal escapes in names, a
//! closed pipe, hard links that disagree, holes, passwords in children's
//! environments, locks from the future).

mod support;

use cairn::Repository;
use cairn::backend::{FileKind, Handle};
use cairn::format::blob::BlobType;
use cairn::format::content::ContentList;
use cairn::format::id::Id;
use cairn::repository::SnapshotFilter;
use cairn::repository::packer::Packer;
use std::fs;
use std::io::Read;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::crafted::*;
use support::*;

/// Asserts a clean one-line failure within `limit`.
fn fails_quickly(repo: &Repo, args: &[&str], limit: Duration) -> String {
    let start = Instant::now();
    let r = run_with_timeout(repo.cmd(args), limit);
    assert!(
        start.elapsed() < limit,
        "{args:?} ran for {:?}",
        start.elapsed()
    );
    r.fails(Some(1))
}

#[test]
fn prune_keeps_the_intact_copy_and_readers_fall_back_to_it() {
    let ws = Workspace::new();
    let (repo, src, _) = base(&ws);
    let r = open(&repo);
    let (_, snap) = r
        .find_snapshot("latest", &SnapshotFilter::default())
        .unwrap();
    let node = cairn::repository::browse::lookup(&r, &snap.tree, src.join("f.txt")).unwrap();
    let blob = node.content[0];
    // A second copy of the blob in a pack of its own, as two racing
    // backups of the same new data leave.
    let (pack, loc) = r.locate(&blob).unwrap();
    let encoded = r
        .backend()
        .read_range(
            Handle::new(FileKind::Pack, pack),
            loc.offset,
            loc.length as usize,
        )
        .unwrap();
    let packer = Packer::new(&r);
    packer
        .add_encoded(BlobType::Data, blob, &encoded, loc.raw_length as usize)
        .unwrap();
    packer.finish().unwrap();
    let r = open(&repo);
    let copies = r.index().locations(&blob);
    assert_eq!(copies.len(), 2);
    // Damage the copy readers use first.
    let (first_pack, first) = copies[0];
    let hex = first_pack.to_hex();
    flip_byte(
        &repo.path.join("data").join(&hex[..2]).join(&hex),
        first.offset as i64 + 30,
    );
    // Restore reads the other copy.
    let target = ws.path("t1");
    repo.restore("latest", &target, &["--verify"]).ok();
    assert_eq!(
        fs::read(restored(&target, &src).join("f.txt")).unwrap(),
        CONTENT
    );
    // Prune keeps the intact copy, whichever pack it is in.
    repo.run(&["prune"]).ok();
    let target = ws.path("t2");
    repo.restore("latest", &target, &["--verify"]).ok();
    assert_eq!(
        fs::read(restored(&target, &src).join("f.txt")).unwrap(),
        CONTENT
    );
    repo.run(&["check", "--read-data"]).ok();
}

#[test]
fn a_damaged_snapshot_file_costs_that_snapshot_only() {
    let ws = Workspace::new();
    let (repo, src, old) = base(&ws);
    write(&src.join("g.txt"), b"second\n");
    let new = repo.backup(&[&src], &[]);
    let bad = repo.path.join("snapshots").join(&new);
    flip_byte(&bad, 40);
    let warned = |r: &Run| {
        assert!(
            r.stderr.contains("warning") && r.stderr.contains(&new),
            "{}",
            r.stderr
        );
    };
    let r = repo.run(&["--json", "snapshots"]).ok();
    warned(&r);
    assert_eq!(last_json(&r.stdout).as_array().unwrap().len(), 1);
    warned(&repo.run(&["ls", &old]).ok());
    warned(
        &repo
            .run(&["dump", &old, src.join("f.txt").to_str().unwrap()])
            .ok(),
    );
    warned(&repo.restore(&old, &ws.path("t"), &[]).ok());
    warned(&repo.run(&["stats"]).ok());
    // Asking for the damaged one by id names the damage.
    let r = repo.run(&["ls", &new]);
    assert_eq!(r.code, Some(1));
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("cairn: error") && last.contains(&new),
        "{}",
        r.stderr
    );
    // check reports it; forget of its id repairs the repository.
    let check = repo.run(&["check"]);
    assert_eq!(check.code, Some(1));
    assert!(check.stderr.contains(&new), "{}", check.stderr);
    repo.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    repo.run(&["forget", &new[..10]]).ok();
    repo.run(&["check", "--read-data"]).ok();
    assert_eq!(repo.snapshot_ids(), vec![old]);
}

#[test]
fn deep_trees_are_refused_in_one_line_without_crashing() {
    let ws = Workspace::new();
    let (repo, _, id) = base(&ws);
    let r = open(&repo);
    let packer = Packer::new(&r);
    let mut tree = save_tree(&packer, vec![]);
    for _ in 0..50_000 {
        tree = save_tree(&packer, vec![dir_node("d", tree)]);
    }
    packer.finish().unwrap();
    let deep = r
        .save_snapshot(&with_tree(&r, &id, tree, 0, 50_000))
        .unwrap()
        .to_hex();
    let limit = Duration::from_secs(120);
    for args in [
        vec!["ls", deep.as_str()],
        vec![
            "restore",
            deep.as_str(),
            "--target",
            ws.path("t").to_str().unwrap(),
        ],
    ] {
        let line = fails_quickly(&repo, &args, limit);
        assert!(line.contains("deeper than 4096"), "{args:?}: {line}");
    }
    let check = run_with_timeout(repo.cmd(&["check"]), limit);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    assert!(check.stderr.contains("deeper than"), "{}", check.stderr);
    repo.run(&["stats"]).ok();
    repo.run(&["prune", "--dry-run"]).ok();
    // Forgetting it brings everything back.
    repo.run(&["forget", &deep[..10], "--prune"]).ok();
    repo.run(&["check"]).ok();
}

#[test]
fn content_list_bombs_are_damage_not_a_crash() {
    let ws = Workspace::new();
    let (repo, _, id) = base(&ws);
    let r = open(&repo);
    let packer = Packer::new(&r);
    let page = vec![7u8; 4096];
    let (blob, _) = packer.save(BlobType::Data, &page).unwrap();
    let list = |depth: u8, ids: Vec<Id>| {
        let l = ContentList { depth, ids }.encode().unwrap();
        packer.save(BlobType::Tree, &l).unwrap().0
    };
    // 65,536 x 65,536 x 4 KiB from two list blobs, in a file that says 4 KiB.
    let l1 = list(1, vec![blob; 65_536]);
    let l2 = list(2, vec![l1; 65_536]);
    let tree = save_tree(
        &packer,
        vec![
            file_node("bomb", vec![l2], 2, 4096),
            file_node("ok", vec![blob], 0, 4096),
        ],
    );
    packer.finish().unwrap();
    let bomb = r
        .save_snapshot(&with_tree(&r, &id, tree, 2, 0))
        .unwrap()
        .to_hex();
    let limit = Duration::from_secs(120);
    let check = run_with_timeout(repo.cmd(&["check"]), limit);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    assert!(check.stderr.contains("bomb"), "{}", check.stderr);
    assert!(!check.stderr.contains("panicked"));
    run_with_timeout(repo.cmd(&["stats"]), limit).ok();
    run_with_timeout(repo.cmd(&["prune", "--dry-run"]), limit).ok();
    let line = fails_quickly(&repo, &["dump", &bomb, "/bomb"], limit);
    assert!(line.contains("more than"), "{line}");
    let target = ws.path("t");
    let r = run_with_timeout(
        repo.cmd(&["restore", &bomb, "--target", target.to_str().unwrap()]),
        limit,
    );
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
    assert_eq!(fs::read(target.join("ok")).unwrap(), page);
    assert!(
        !target.join("bomb").exists(),
        "a damaged file is not left behind"
    );
}

#[test]
fn trees_sharing_subtrees_exponentially_are_refused() {
    let ws = Workspace::new();
    let (repo, _, id) = base(&ws);
    let r = open(&repo);
    let packer = Packer::new(&r);
    let (blob, _) = packer.save(BlobType::Data, b"leaf").unwrap();
    let mut tree = save_tree(&packer, vec![file_node("f", vec![blob], 0, 4)]);
    for _ in 0..40 {
        tree = save_tree(&packer, vec![dir_node("a", tree), dir_node("b", tree)]);
    }
    packer.finish().unwrap();
    let dag = r
        .save_snapshot(&with_tree(&r, &id, tree, 1, 1))
        .unwrap()
        .to_hex();
    let limit = Duration::from_secs(60);
    for args in [
        vec!["ls", dag.as_str()],
        vec![
            "restore",
            dag.as_str(),
            "--target",
            ws.path("t").to_str().unwrap(),
        ],
    ] {
        let line = fails_quickly(&repo, &args, limit);
        assert!(line.contains("more than"), "{args:?}: {line}");
    }
    run_with_timeout(repo.cmd(&["check"]), limit).ok();
}

#[test]
fn snapshot_times_at_the_edges_never_panic() {
    let ws = Workspace::new();
    let (repo, _, id) = base(&ws);
    let r = open(&repo);
    let (_, s) = r.find_snapshot(&id, &SnapshotFilter::default()).unwrap();
    let edge = |time: i64, offset: i32| {
        let mut e = s.clone();
        e.time = time;
        e.utc_offset = offset;
        r.save_snapshot(&e).unwrap().to_hex()
    };
    let first = edge(cairn::format::snapshot::MIN_TIME, -86_399);
    let last = edge(cairn::format::snapshot::MAX_TIME, 86_399);
    // Beyond what the spec allows (the edge of what this reader used to
    // accept): skipped with a warning.
    let beyond = edge(-8_334_601_228_800, -86_399);
    for args in [
        vec!["--json", "snapshots"],
        vec!["snapshots"],
        vec!["--json", "ls", &first],
        vec!["--json", "ls", &last],
        vec!["cat", "snapshot", &last],
        vec!["--json", "forget", "--keep-last", "10", "--dry-run"],
        vec!["forget", "--keep-daily", "10", "--dry-run"],
        vec!["check"],
    ] {
        let r = repo.run(&args);
        assert!(!r.stderr.contains("panicked"), "{args:?}: {}", r.stderr);
        assert!(
            matches!(r.code, Some(0 | 1)),
            "{args:?}: {:?} {}",
            r.code,
            r.stderr
        );
    }
    let r = repo.run(&["snapshots"]).ok();
    assert!(
        r.stderr.contains(&beyond) && r.stderr.contains("out of range"),
        "{}",
        r.stderr
    );
}

#[test]
fn a_closed_pipe_ends_quietly_and_a_full_disk_is_one_line() {
    let ws = Workspace::new();
    let src = ws.path("src");
    for i in 0..3000 {
        write(&src.join(format!("{i:05}-{}", "x".repeat(120))), b"");
    }
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.backup(&[&src], &[]);
    let mut child = repo
        .cmd(&["ls", "latest"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    // The reader is gone now (stdout dropped above).
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");

    let t = ws.path("t");
    let restore = ["restore", "latest", "--target", t.to_str().unwrap()];
    for args in [
        &["snapshots"][..],
        &["check"],
        &["stats"],
        &["cat", "config"],
        &["key", "list"],
        &["forget", "--keep-last", "1", "--dry-run"],
        &["prune", "--dry-run"],
        &["ls", "latest"],
        &restore,
    ] {
        let full = fs::OpenOptions::new()
            .write(true)
            .open("/dev/full")
            .unwrap();
        let mut c = repo.cmd(args);
        c.stdout(full);
        let r = run(c);
        let line = r.fails(Some(1));
        assert!(line.contains("No space left"), "{args:?}: {line}");
    }
}

#[test]
fn ls_shows_control_characters_escaped() {
    let ws = Workspace::new();
    let src = ws.path("src");
    let evil = "evil\x1b[31mred\nfake-line\x07";
    write(&src.join(evil), b"x");
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.backup(&[&src], &[]);
    for args in [&["ls", "latest"][..], &["ls", "-l", "latest"]] {
        let out = repo.run(args).ok().out();
        assert!(!out.contains('\x1b') && !out.contains('\x07'), "{out:?}");
        assert!(!out.lines().any(|l| l.starts_with("fake-line")), "{out:?}");
        assert!(out.contains("evil\\e[31mred\\nfake-line\\x07"), "{out:?}");
    }
    // JSON is exact.
    let v = last_json(&repo.run(&["--json", "ls", "latest"]).ok().stdout);
    assert!(
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["name"] == evil)
    );
}

#[test]
fn hard_links_that_disagree_are_restored_apart_with_a_warning() {
    let ws = Workspace::new();
    let (repo, _, id) = base(&ws);
    let r = open(&repo);
    let packer = Packer::new(&r);
    let (a, _) = packer.save(BlobType::Data, b"first content").unwrap();
    let (b, _) = packer.save(BlobType::Data, b"other").unwrap();
    let mut one = file_node("one", vec![a], 0, 13);
    let mut two = file_node("two", vec![b], 0, 5);
    for n in [&mut one, &mut two] {
        n.links = 2;
        n.inode = 77;
        n.device = 1;
    }
    let tree = save_tree(&packer, vec![one, two]);
    packer.finish().unwrap();
    let snap = r
        .save_snapshot(&with_tree(&r, &id, tree, 2, 0))
        .unwrap()
        .to_hex();
    let t = ws.path("t");
    let out = repo.restore(&snap, &t, &["--verify"]).ok();
    assert!(out.stderr.contains("different content"), "{}", out.stderr);
    assert_eq!(fs::read(t.join("one")).unwrap(), b"first content");
    assert_eq!(fs::read(t.join("two")).unwrap(), b"other");
    let (m1, m2) = (
        fs::metadata(t.join("one")).unwrap(),
        fs::metadata(t.join("two")).unwrap(),
    );
    assert_ne!(m1.ino(), m2.ino());
}

#[test]
fn the_restore_summary_counts_only_what_was_restored() {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("a"), &random_bytes(1, 5000));
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.backup(&[&src], &[]);
    write(&src.join("b"), &random_bytes(2, 5000));
    repo.backup(&[&src], &[]);
    // Damage b's blob: the only one in the second backup's data pack.
    let r = open(&repo);
    let (_, snap) = r
        .find_snapshot("latest", &SnapshotFilter::default())
        .unwrap();
    let node = cairn::repository::browse::lookup(&r, &snap.tree, src.join("b")).unwrap();
    let (pack, loc) = r.locate(&node.content[0]).unwrap();
    let hex = pack.to_hex();
    flip_byte(
        &repo.path.join("data").join(&hex[..2]).join(&hex),
        loc.offset as i64 + 50,
    );
    let t = ws.path("t");
    let r = repo.run(&[
        "--json",
        "restore",
        "latest",
        "--target",
        t.to_str().unwrap(),
    ]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    let v = last_json(&r.stdout);
    assert_eq!(v["files_restored"], 1, "{v}");
    assert_eq!(v["bytes_restored"], 5000, "{v}");
    assert!(!restored(&t, &src).join("b").exists());
}

#[test]
fn passwords_do_not_reach_a_backed_up_command() {
    let ws = Workspace::new();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.run(&[
        "backup",
        "--stdin-from-command",
        "--stdin-filename",
        "env.txt",
        "--",
        "env",
    ])
    .ok();
    let out = repo.run(&["dump", "latest", "/env.txt"]).ok().out();
    assert!(out.contains("TZ=UTC"), "{out}");
    assert!(!out.contains("CAIRN_PASSWORD"), "{out}");
    assert!(!out.contains(PASSWORD), "{out}");
}

#[test]
fn locks_from_the_far_future_are_stale_and_readers_take_none() {
    let ws = Workspace::new();
    let (repo, src, _) = base(&ws);
    let r = Repository::open(&repo.path, PASSWORD.as_bytes()).unwrap();
    let write_lock = |time: i64| {
        let info = cairn::format::lock::LockInfo {
            time,
            exclusive: true,
            hostname: "elsewhere.example".into(),
            username: "someone".into(),
            pid: 1,
        };
        let bytes = info.encode(r.key()).unwrap();
        let id = Id::of_file(&bytes);
        r.backend()
            .write(Handle::new(FileKind::Lock, id), &bytes)
            .unwrap();
        id
    };
    let now = chrono::Utc::now().timestamp();
    // A day ahead: a wrong clock, not a live holder.
    write_lock(now + 86_400);
    repo.backup(&[&src], &[]);
    // A minute ahead: clock skew between live hosts.
    let near = write_lock(now + 60);
    assert_eq!(repo.run(&["prune"]).code, Some(11));
    // Backups and readers take no lock.
    repo.run(&["backup", src.to_str().unwrap()]).ok();
    repo.run(&["ls", "latest"]).ok();
    r.backend()
        .remove(Handle::new(FileKind::Lock, near))
        .unwrap();
    let line = repo
        .run(&["--retry-lock", "forever", "snapshots"])
        .fails(Some(1));
    assert!(line.contains("retry-lock"), "{line}");
}

#[test]
fn a_damaged_key_file_does_not_hide_a_wrong_password() {
    let ws = Workspace::new();
    let (repo, _, _) = base(&ws);
    let pw2 = ws.path("pw2");
    fs::write(&pw2, "second password").unwrap();
    repo.run(&[
        "key",
        "add",
        "--new-password-file",
        pw2.to_str().unwrap(),
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
    ])
    .ok();
    let keys = repo.files_in("keys");
    assert_eq!(keys.len(), 2);
    // Damage one of them; the other still opens with its password.
    flip_byte(&keys[0], -3);
    let mut c = repo.cmd(&["snapshots"]);
    c.env("CAIRN_PASSWORD", "not the password");
    let r = run(c);
    assert_eq!(r.code, Some(12), "{}", r.stderr);
    for pw in [PASSWORD, "second password"] {
        let mut c = repo.cmd(&["snapshots"]);
        c.env("CAIRN_PASSWORD", pw);
        let r = run(c);
        // Whichever key was damaged, the other password opens.
        if r.code == Some(0) {
            return;
        }
    }
    panic!("no password opens the repository any more");
}

#[test]
fn a_live_sqlite_database_in_an_ordinary_backup_gets_a_warning() {
    let ws = Workspace::new();
    let src = ws.path("src");
    fs::create_dir_all(&src).unwrap();
    let db = src.join("app.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.pragma_update(None, "journal_mode", "wal").unwrap();
    conn.execute_batch("create table t(x); insert into t values (1), (2);")
        .unwrap();
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let r = repo.run(&["backup", src.to_str().unwrap()]).ok();
    assert!(
        r.stderr.contains("app.db") && r.stderr.contains("--sqlite"),
        "{}",
        r.stderr
    );
    drop(conn);
}

#[test]
fn zero_runs_inside_chunks_are_restored_as_holes() {
    let ws = Workspace::new();
    let src = ws.path("src");
    fs::create_dir_all(&src).unwrap();
    let f = src.join("mostly-zero");
    sparse_file(&f, 30 << 20, &[(15 << 20, b"sixbyt")]);
    let repo = ws.init_repo("repo", &[]);
    repo.backup(&[&src], &[]);
    let t = ws.path("t");
    repo.restore("latest", &t, &["--verify"]).ok();
    let out = restored(&t, &src).join("mostly-zero");
    let md = fs::metadata(&out).unwrap();
    assert_eq!(md.len(), 30 << 20);
    assert!(
        md.blocks() * 512 < 1 << 20,
        "{} bytes allocated",
        md.blocks() * 512
    );
    let mut bytes = fs::read(&out).unwrap();
    assert_eq!(&bytes[15 << 20..(15 << 20) + 6], b"sixbyt");
    bytes[15 << 20..(15 << 20) + 6].fill(0);
    assert!(bytes.iter().all(|&b| b == 0));
}

#[test]
fn check_and_prune_agree_on_what_prune_frees() {
    let ws = Workspace::new();
    let src = ws.path("src");
    // One pack of 40 files; the file removed is 2.5% of it, below the
    // 5% at which prune repacks.
    for i in 0..40 {
        write(&src.join(format!("f{i}")), &random_bytes(i, 20_000));
    }
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    repo.backup(&[&src], &[]);
    fs::remove_file(src.join("f3")).unwrap();
    repo.backup(&[&src], &[]);
    repo.run(&["forget", "--keep-last", "1", "--prune"]).ok();
    let check = last_json(&repo.run(&["--json", "check"]).ok().stdout);
    let info = check["info"].to_string();
    assert!(info.contains("not referenced"), "{info}");
    assert!(info.contains("frees 0 bytes"), "{info}");
    assert!(info.contains("leaves 20"), "{info}");
    let p = last_json(&repo.run(&["--json", "prune"]).ok().stdout);
    assert_eq!(p["bytes_freed"], 0, "{p}");
}

#[test]
fn the_user_name_is_recorded_by_name() {
    if !is_root() {
        return;
    }
    let ws = Workspace::new();
    let (repo, _, _) = base(&ws);
    let mut c = repo.cmd(&["--json", "snapshots"]);
    c.env_remove("USER").env_remove("LOGNAME");
    let v = last_json(&run(c).ok().stdout);
    assert_eq!(v[0]["username"], "root", "{v}");
}
