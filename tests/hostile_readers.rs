//! Hostile input, second pass: every reader of repository bytes against
//! objects a key holder can craft and against plain bit rot, beyond what
//! `tests/hostile.rs` covers. Trees that name themselves or an ancestor,
//! delta blobs whose base is a delta or missing, file content naming a tree
//! blob, snapshots with enormous tag, path and host fields, index files that
//! are damaged, name packs that do not exist, supersede each other or point
//! past the end of a pack, impossible configs, and lock files nobody can
//! read.
//!
//! Each case runs through the real binary under a time limit: no panic
//! (exit 101), no abort (134), no hang, one clear line naming what is
//! damaged, and the damage costs only what it touches (other snapshots
//! still list and restore). Packs and blobs are found through the index,
//! never assumed.

mod support;

use cairn::Repository;
use cairn::backend::{FileKind, Handle};
use cairn::format::blob::BlobType;
use cairn::format::chunker::{ChunkerParams, DatabaseChunking};
use cairn::format::config::Config;
use cairn::format::id::Id;
use cairn::format::index::{IndexFile, IndexPack};
use cairn::format::tree::{BaseContent, Tree};
use cairn::repository::packer::Packer;
use cairn::repository::{FullIndex, SnapshotFilter};
use std::fs;
use std::path::Path;
use std::time::Duration;
use support::crafted::*;
use support::*;

/// The longest any one command may take here (a debug build on two busy
/// cores); the tests take a second or two each.
const LIMIT: Duration = Duration::from_secs(60);

/// An id no honest writer produced (the hash of a label).
fn made_up_id(label: &str) -> Id {
    Id(*blake3::hash(label.as_bytes()).as_bytes())
}

/// `data/xx/<id>`, as messages name a pack.
fn pack_name(id: &Id) -> String {
    Handle::new(FileKind::Pack, *id).rel_path()
}

/// Runs `args` within [`LIMIT`]: it must end by itself, without a panic,
/// an abort or a signal.
fn bounded(repo: &Repo, args: &[&str]) -> Run {
    let r = run_with_timeout(repo.cmd(args), LIMIT);
    assert!(
        !r.stderr.contains("panicked"),
        "{args:?} panicked:\n{}",
        r.stderr
    );
    assert!(
        matches!(r.code, Some(c) if c != 101 && c != 134),
        "{args:?} ended with {:?}:\n{}",
        r.code,
        r.stderr
    );
    r
}

/// A clean failure within [`LIMIT`]: exit 1 and one line that names
/// `needle`. Returns the line.
fn fails_naming(repo: &Repo, args: &[&str], needle: &str) -> String {
    let line = bounded(repo, args).fails(Some(1));
    assert!(
        line.contains(needle),
        "{args:?}: the error does not name {needle}: {line}"
    );
    line
}

/// `copy` of `selectors` from `from` into `dest`, within [`LIMIT`].
fn copy_into(dest: &Repo, from: &Repo, selectors: &[&str]) -> Run {
    let mut args = vec!["copy", "--from-repo", from.path.to_str().unwrap()];
    args.extend_from_slice(selectors);
    let mut c = dest.cmd(&args);
    c.env("CAIRN_FROM_PASSWORD", PASSWORD);
    let r = run_with_timeout(c, LIMIT);
    assert!(
        !r.stderr.contains("panicked"),
        "copy panicked:\n{}",
        r.stderr
    );
    r
}

/// Restores `selector` of `repo` and returns the restored `src/f.txt`.
fn restored_f(ws: &Workspace, repo: &Repo, selector: &str, src: &Path, dir: &str) -> Vec<u8> {
    let t = ws.path(dir);
    repo.restore(selector, &t, &["--verify"]).ok();
    fs::read(restored(&t, src).join("f.txt")).unwrap()
}

/// A second repository sharing `repo`'s chunker secrets (so `copy` keeps
/// blob ids and trees as they are).
fn init_sharing(ws: &Workspace, repo: &Repo, name: &str) -> Repo {
    let dest = Repo {
        path: ws.path(name),
    };
    let mut c = dest.cmd(&[
        "init",
        "--from-repo",
        repo.path.to_str().unwrap(),
        "--copy-chunker-params",
        "--kdf-memory",
        "1024",
        "--kdf-iterations",
        "1",
    ]);
    c.env("CAIRN_FROM_PASSWORD", PASSWORD);
    run(c).ok();
    dest
}

// ---------------------------------------------------------------------------
// 1. Cycles.

/// Tree ids are keyed hashes of the tree's bytes, so no tree can name
/// itself or an ancestor, except by being stored under an id that is not
/// its own. A key holder can do that (the id is only bound in as associated
/// data); every reader must then refuse that blob by its id, in one line,
/// and never follow the cycle.
#[test]
fn a_tree_naming_itself_or_its_parent_is_refused_by_its_forged_id() {
    let ws = Workspace::new();
    let (repo, src, good) = base(&ws);
    let good = good.as_str();
    let r = open(&repo);
    let packer = Packer::new(&r);
    let forged = made_up_id("a tree that contains itself");
    let (leaf, _) = packer.save(BlobType::Data, b"leaf\n").unwrap();
    let root = save_tree(
        &packer,
        vec![dir_node("a", forged), file_node("leaf", vec![leaf], 0, 5)],
    );
    // Stored under `forged`: it names its parent and itself.
    let mut looped = Tree {
        nodes: vec![dir_node("parent", root), dir_node("self", forged)],
    };
    packer
        .save_with_id(BlobType::Tree, forged, &looped.encode().unwrap())
        .unwrap();
    packer.finish().unwrap();
    let cyc = r
        .save_snapshot(&with_tree(&r, good, root, 1, 3))
        .unwrap()
        .to_hex();
    let cyc = cyc.as_str();
    let f = forged.short();
    let t = ws.path("t");
    let t = t.to_str().unwrap();
    for args in [
        vec!["ls", "-l", cyc],
        vec!["--json", "ls", cyc],
        vec!["restore", cyc, "--target", t],
        vec!["find", "--snapshot", cyc, "leaf"],
        vec!["diff", good, cyc],
        vec!["diff", cyc, good],
    ] {
        fails_naming(&repo, &args, &f);
    }
    assert!(!Path::new(t).exists(), "restore wrote before refusing");

    let check = bounded(&repo, &["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    assert!(
        check.stderr.contains(&f) && check.stderr.contains(&cyc[..8]),
        "{}",
        check.stderr
    );
    assert!(!check.stderr.contains(&good[..8]), "{}", check.stderr);

    // What needs every snapshot's trees refuses rather than guess; prune
    // deletes nothing.
    let before = repo.fingerprint();
    fails_naming(&repo, &["stats"], &f);
    fails_naming(&repo, &["prune", "--dry-run"], &f);
    fails_naming(&repo, &["prune"], &f);
    assert_eq!(before, repo.fingerprint(), "prune changed the repository");

    // Copies: the cycle is refused whichever way `copy` walks, nothing is
    // recorded for it, and the good snapshot copies and restores.
    for dest in [
        ws.init_repo("unrelated", SMALL_CHUNKS),
        init_sharing(&ws, &repo, "sharing"),
    ] {
        let line = copy_into(&dest, &repo, &[cyc]).fails(Some(1));
        assert!(line.contains(&f), "{line}");
        assert!(dest.snapshot_ids().is_empty());
        copy_into(&dest, &repo, &[good]).ok();
        assert_eq!(dest.snapshot_ids().len(), 1);
        let name = format!("t-{}", dest.path.file_name().unwrap().to_str().unwrap());
        assert_eq!(restored_f(&ws, &dest, "latest", &src, &name), CONTENT);
        bounded(&dest, &["check"]).ok();
    }

    // The other snapshot is untouched.
    let out = bounded(&repo, &["ls", good]).ok().out();
    assert!(out.contains("f.txt"), "{out}");
    bounded(&repo, &["find", "--snapshot", good, "f.txt"]).ok();
    assert_eq!(restored_f(&ws, &repo, good, &src, "t-good"), CONTENT);
    // Forgetting the hostile snapshot repairs the repository.
    bounded(&repo, &["forget", &cyc[..12], "--prune"]).ok();
    bounded(&repo, &["check", "--read-data"]).ok();
}

// ---------------------------------------------------------------------------
// 2. Deltas and blob types.

/// A delta whose base is itself a delta, a delta whose base was never
/// stored, and a file whose content names a tree blob: each costs its own
/// file, named; a proper delta and a plain file beside them restore.
#[test]
fn delta_chains_missing_bases_and_tree_blobs_as_content_cost_their_file_only() {
    let ws = Workspace::new();
    let (repo, src, good) = base(&ws);
    let r = open(&repo);
    let key = r.key();
    let (_, snap) = r.find_snapshot(&good, &SnapshotFilter::default()).unwrap();
    let packer = Packer::new(&r);
    let edit = |page: &[u8], at: usize| {
        let mut p = page.to_vec();
        p[at..at + 8].copy_from_slice(b"EDITED!!");
        p
    };
    let b0 = random_bytes(1, 4096);
    let (b0_id, _) = packer.save(BlobType::Data, &b0).unwrap();
    // A proper delta against b0.
    let p1 = edit(&b0, 100);
    let d1 = key.delta_blob_id(&b0_id, &p1);
    assert!(packer.save_delta(d1, &b0_id, &b0, &p1).unwrap());
    // A delta against d1, itself a delta.
    let p2 = edit(&p1, 200);
    let d2 = key.delta_blob_id(&d1, &p2);
    assert!(packer.save_delta(d2, &d1, &p1, &p2).unwrap());
    // A delta against a base that was never stored.
    let ghost = random_bytes(2, 4096);
    let ghost_id = key.blob_id(&ghost);
    let p3 = edit(&ghost, 300);
    let d3 = key.delta_blob_id(&ghost_id, &p3);
    assert!(packer.save_delta(d3, &ghost_id, &ghost, &p3).unwrap());
    let delta_file = |name: &str, content: Id, base: Id| {
        let mut n = file_node(name, vec![content], 0, 4096);
        n.delta_base = Some(BaseContent {
            depth: 0,
            content: vec![base],
        });
        n
    };
    // A tree blob where a data blob belongs, with the size it would have.
    let (_, tree_loc) = r.locate(&snap.tree).unwrap();
    let tree = save_tree(
        &packer,
        vec![
            file_node(
                "as-tree",
                vec![snap.tree],
                0,
                u64::from(tree_loc.raw_length),
            ),
            delta_file("chain", d2, d1),
            delta_file("delta-ok", d1, b0_id),
            delta_file("orphan", d3, ghost_id),
            file_node("plain-ok", vec![b0_id], 0, 4096),
        ],
    );
    packer.finish().unwrap();
    let bad = r
        .save_snapshot(&with_tree(&r, &good, tree, 5, 0))
        .unwrap()
        .to_hex();

    // One file at a time: one line naming the blob at fault.
    fails_naming(&repo, &["dump", &bad, "/chain"], &d1.short());
    fails_naming(&repo, &["dump", &bad, "/orphan"], &ghost_id.short());
    let line = fails_naming(&repo, &["dump", &bad, "/as-tree"], &snap.tree.short());
    assert!(line.contains("tree blob"), "{line}");
    let dump = |path: &str| bounded(&repo, &["dump", &bad, path]).ok().stdout;
    assert_eq!(dump("/delta-ok"), p1);
    assert_eq!(dump("/plain-ok"), b0);

    // Restore writes what it can and names the rest.
    let t = ws.path("t");
    let r2 = bounded(
        &repo,
        &["restore", &bad, "--target", t.to_str().unwrap(), "--verify"],
    );
    assert_eq!(r2.code, Some(1), "{}", r2.stderr);
    for name in ["chain", "orphan", "as-tree"] {
        assert!(r2.stderr.contains(name), "{name}: {}", r2.stderr);
        assert!(!t.join(name).exists(), "{name} left behind");
    }
    assert_eq!(fs::read(t.join("delta-ok")).unwrap(), p1);
    assert_eq!(fs::read(t.join("plain-ok")).unwrap(), b0);

    // check names each damaged file (a delta's base is read only with
    // --read-data) and neither good file nor the good snapshot.
    let named = |args: &[&str], files: &[&str]| {
        let c = bounded(&repo, args);
        assert_eq!(c.code, Some(1), "{args:?}: {}", c.stderr);
        for f in files {
            assert!(
                c.stderr.contains(&format!("/{f}")),
                "{args:?} {f}: {}",
                c.stderr
            );
        }
        for f in ["delta-ok", "plain-ok"] {
            assert!(!c.stderr.contains(f), "{args:?} {f}: {}", c.stderr);
        }
        assert!(c.stderr.contains(&bad[..8]), "{}", c.stderr);
        assert!(!c.stderr.contains(&good[..8]), "{}", c.stderr);
    };
    named(&["check"], &["orphan", "as-tree"]);
    named(&["check", "--read-data"], &["chain", "orphan", "as-tree"]);

    // Prune will not run while a kept snapshot needs a blob it cannot find.
    let before = repo.fingerprint();
    fails_naming(&repo, &["prune", "--dry-run"], &ghost_id.short());
    assert_eq!(before, repo.fingerprint());

    assert_eq!(restored_f(&ws, &repo, &good, &src, "t-good"), CONTENT);
    bounded(&repo, &["forget", &bad[..12], "--prune"]).ok();
    bounded(&repo, &["check", "--read-data"]).ok();
}

// ---------------------------------------------------------------------------
// 3. Enormous snapshot fields.

/// Snapshots are small files that nothing bounds but their size: 200,000
/// tags, 100,000 paths, a 4 MiB host name, or terminal escapes in all of
/// them. Listing and retention stay linear in what is stored, print every
/// byte escaped, and one hostile snapshot does not widen the rows of the
/// others.
#[test]
fn enormous_tag_path_and_host_fields_cost_their_own_row_only() {
    let ws = Workspace::new();
    let (repo, src, good) = base(&ws);
    let second = repo.backup(&[&src], &["--tag", "normal", "--force"]);
    let r = open(&repo);
    let (_, s) = r.find_snapshot(&good, &SnapshotFilter::default()).unwrap();
    let n_tags = 200_000;
    let n_paths = 100_000;
    let host_len = 4 << 20;
    let mut tags = s.clone();
    tags.tags = (0..n_tags).map(|i| format!("t{i:07}")).collect();
    tags.time += 10;
    let mut paths = s.clone();
    paths.paths = (0..n_paths).map(|i| format!("/p/{i:07}")).collect();
    paths.time += 20;
    let mut host = s.clone();
    host.hostname = "h".repeat(host_len);
    host.time += 30;
    let mut evil = s.clone();
    evil.hostname = "evil\x1b[31mhost\nfake-host".into();
    evil.tags = vec!["tag\x1b]0;title\x07".into()];
    evil.paths = vec!["/p\x1b[2J\nfake-path".into()];
    evil.time += 40;
    for s in [&tags, &paths, &host, &evil] {
        r.save_snapshot(s).unwrap();
    }
    let stored: usize = repo
        .files_in("snapshots")
        .iter()
        .map(|p| fs::metadata(p).unwrap().len() as usize)
        .sum();

    let clean = |what: &str, out: &str| {
        assert!(
            !out.contains('\x1b') && !out.contains('\x07'),
            "{what}: raw control characters in the output"
        );
        assert!(
            !out.lines().any(|l| l.starts_with("fake-")),
            "{what}: a forged line"
        );
    };
    let table = bounded(&repo, &["snapshots"]).ok().out();
    clean("snapshots", &table);
    assert!(
        table.len() < 2 * stored + (64 << 10),
        "snapshots printed {} bytes for {stored} bytes of snapshots",
        table.len()
    );
    for id in [&good, &second] {
        let row = table
            .lines()
            .find(|l| l.starts_with(&id[..8]))
            .unwrap_or_else(|| panic!("no row for {id}"));
        assert!(
            row.len() < 400,
            "the row of {} is {} bytes long",
            &id[..8],
            row.len()
        );
    }
    let compact = bounded(&repo, &["snapshots", "--compact"]).ok().out();
    assert!(compact.len() < 2 * stored + (64 << 10));

    // JSON is exact and complete.
    let v = last_json(&bounded(&repo, &["--json", "snapshots"]).ok().stdout);
    let list = v.as_array().unwrap();
    assert_eq!(list.len(), 6);
    let count = |key: &str, n: usize| {
        list.iter()
            .filter(|s| s[key].as_array().is_some_and(|a| a.len() == n))
            .count()
    };
    assert_eq!(count("tags", n_tags), 1);
    assert_eq!(count("paths", n_paths), 1);
    assert!(
        list.iter()
            .any(|s| s["hostname"].as_str().map(str::len) == Some(host_len))
    );
    assert!(list.iter().any(|s| s["hostname"] == evil.hostname.as_str()));

    // Retention: each hostile snapshot is a group of its own (or joins the
    // good ones' group), kept; the text is escaped.
    let plan = bounded(&repo, &["forget", "--keep-last", "1", "--dry-run"])
        .ok()
        .out();
    clean("forget", &plan);
    assert!(
        plan.len() < 2 * stored + (64 << 10),
        "forget printed {} bytes",
        plan.len()
    );
    let v = last_json(
        &bounded(
            &repo,
            &["--json", "forget", "--keep-last", "1", "--dry-run"],
        )
        .ok()
        .stdout,
    );
    let groups = v.as_array().unwrap();
    let removed: usize = groups
        .iter()
        .map(|g| g["remove"].as_array().unwrap().len())
        .sum();
    let kept: usize = groups
        .iter()
        .map(|g| g["keep"].as_array().unwrap().len())
        .sum();
    assert_eq!(kept + removed, 6, "{}", groups.len());
    assert_eq!(repo.snapshot_ids().len(), 6, "a dry run removed something");
}

// ---------------------------------------------------------------------------
// 4. Index files.

/// The only index file truncated or with a bit flipped in the middle:
/// `check` names it and goes on, prune refuses without changing anything,
/// and `repair index` rebuilds the index from the packs.
#[test]
fn a_damaged_index_file_is_named_prune_refuses_and_repair_rebuilds() {
    let ws = Workspace::new();
    let (pristine, src, _) = base(&ws);
    for (n, damage) in ["truncate", "flip"].into_iter().enumerate() {
        let repo = Repo {
            path: ws.path(&format!("copy{n}")),
        };
        copy_tree(&pristine.path, &repo.path);
        let file = repo.files_in("index").into_iter().next().unwrap();
        let len = fs::metadata(&file).unwrap().len();
        match damage {
            "truncate" => truncate(&file, len / 2),
            _ => flip_byte(&file, len as i64 / 2),
        }
        let name = file.strip_prefix(&repo.path).unwrap().display().to_string();

        let check = bounded(&repo, &["check"]);
        assert_eq!(check.code, Some(1), "{damage}: {}", check.stderr);
        assert!(check.stderr.contains(&name), "{damage}: {}", check.stderr);
        let before = repo.fingerprint();
        let t = ws.path(&format!("t{n}"));
        fails_naming(
            &repo,
            &["restore", "latest", "--target", t.to_str().unwrap()],
            &name,
        );
        fails_naming(&repo, &["prune", "--dry-run"], &name);
        fails_naming(&repo, &["prune"], &name);
        assert_eq!(before, repo.fingerprint(), "{damage}: repository changed");

        bounded(&repo, &["repair", "index"]).ok();
        assert!(!file.exists(), "{damage}: the damaged file is still there");
        bounded(&repo, &["check", "--read-data"]).ok();
        let dir = format!("t{n}-after");
        assert_eq!(restored_f(&ws, &repo, "latest", &src, &dir), CONTENT);
    }
}

/// An index file that lists a pack that does not exist, holding copies of
/// blobs that are also stored in a real pack: readers fall back to the
/// real copy, `check` names the missing pack but no snapshot, prune
/// refuses, `repair index` drops it.
#[test]
fn an_index_naming_a_missing_pack_costs_no_snapshot_that_has_another_copy() {
    let ws = Workspace::new();
    let (repo, src, good) = base(&ws);
    let r = open(&repo);
    let (_, snap) = r.find_snapshot(&good, &SnapshotFilter::default()).unwrap();
    let node = cairn::repository::browse::lookup(&r, &snap.tree, src.join("f.txt")).unwrap();
    let (pack, _) = r.locate(&node.content[0]).unwrap();
    let ghost = made_up_id("a pack nobody wrote");
    r.save_index(&IndexFile {
        packs: vec![IndexPack {
            id: ghost,
            blobs: r.read_pack_header(&pack).unwrap(),
        }],
        supersedes: Vec::new(),
        prune: None,
    })
    .unwrap();
    let ghost_file = pack_name(&ghost);

    // Whichever location the index offers first, the real copy is read.
    assert_eq!(restored_f(&ws, &repo, &good, &src, "t1"), CONTENT);
    let out = bounded(&repo, &["dump", &good, src.join("f.txt").to_str().unwrap()])
        .ok()
        .stdout;
    assert_eq!(out, CONTENT);
    bounded(&repo, &["ls", "-l", &good]).ok();

    let check = bounded(&repo, &["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    assert!(
        check.stderr.contains(&ghost_file) && check.stderr.contains("missing"),
        "{}",
        check.stderr
    );
    assert!(
        !check.stderr.contains(&good[..8]) && !check.stderr.contains("damaged:"),
        "a snapshot with an intact copy of every blob is not damaged: {}",
        check.stderr
    );

    let before = repo.fingerprint();
    fails_naming(&repo, &["prune", "--dry-run"], &ghost_file);
    fails_naming(&repo, &["prune"], &ghost_file);
    assert_eq!(before, repo.fingerprint());

    bounded(&repo, &["repair", "index"]).ok();
    bounded(&repo, &["check", "--read-data"]).ok();
    assert_eq!(restored_f(&ws, &repo, &good, &src, "t2"), CONTENT);
}

/// Index files that supersede each other. A real loop cannot be written:
/// an index file's name is the hash of its bytes, so two files naming each
/// other (or one naming itself) would need a hash cycle. Written under
/// names that are not their hashes they are damaged files, named as such.
/// What a key holder can write is a chain that supersedes every pack-listing
/// file: then the index is empty, readers say so in one line, and
/// `repair index` brings everything back.
#[test]
fn index_files_superseding_each_other_are_named_and_repaired() {
    let ws = Workspace::new();
    let (repo, src, good) = base(&ws);
    let r = open(&repo);
    let (real_id, real) = r.read_index_files().unwrap().into_iter().next().unwrap();
    let (x, y) = (made_up_id("index x"), made_up_id("index y"));
    for (me, other) in [(x, y), (y, x)] {
        let f = IndexFile {
            packs: real.packs.clone(),
            supersedes: vec![other, real_id],
            prune: None,
        };
        let p = repo.path.join("index").join(me.to_hex());
        fs::write(p, f.encode(r.key()).unwrap()).unwrap();
    }
    let names = [x, y].map(|id| format!("index/{}", id.to_hex()));
    let names_one = |line: &str| names.iter().any(|n| line.contains(n.as_str()));

    let check = bounded(&repo, &["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    for n in &names {
        assert!(check.stderr.contains(n.as_str()), "{n}: {}", check.stderr);
    }
    assert!(!check.stderr.contains(&good[..8]), "{}", check.stderr);
    let before = repo.fingerprint();
    let t = ws.path("t");
    for args in [
        vec!["restore", "latest", "--target", t.to_str().unwrap()],
        vec!["prune", "--dry-run"],
        vec!["prune"],
    ] {
        let line = bounded(&repo, &args).fails(Some(1));
        assert!(names_one(&line), "{args:?}: {line}");
    }
    assert_eq!(before, repo.fingerprint());
    bounded(&repo, &["repair", "index"]).ok();
    for n in &names {
        assert!(!repo.path.join(n.as_str()).exists(), "{n} left behind");
    }
    bounded(&repo, &["check", "--read-data"]).ok();

    // A chain a key holder can write: `b` supersedes every file there is,
    // `a` supersedes `b`. Nothing live lists a pack any more.
    let r = open(&repo);
    let all: Vec<Id> = r
        .read_index_files()
        .unwrap()
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let b = r
        .save_index(&IndexFile {
            packs: Vec::new(),
            supersedes: all,
            prune: None,
        })
        .unwrap();
    r.save_index(&IndexFile {
        packs: Vec::new(),
        supersedes: vec![b],
        prune: None,
    })
    .unwrap();
    let line = fails_naming(&repo, &["ls", &good], "not in the index");
    assert!(line.contains(&snap_tree(&r, &good).short()), "{line}");
    let check = bounded(&repo, &["check"]);
    assert_eq!(check.code, Some(1), "{}", check.stderr);
    assert!(check.out().contains("repair index"), "{}", check.out());
    fails_naming(&repo, &["prune", "--dry-run"], "not in the index");
    bounded(&repo, &["repair", "index"]).ok();
    bounded(&repo, &["check", "--read-data"]).ok();
    assert_eq!(restored_f(&ws, &repo, &good, &src, "t-after"), CONTENT);
}

fn snap_tree(r: &Repository<FullIndex>, id: &str) -> Id {
    r.find_snapshot(id, &SnapshotFilter::default())
        .unwrap()
        .1
        .tree
}

/// An index entry whose offset + length ends past the end of its pack:
/// the file using that blob is named, the rest of its snapshot and the
/// other snapshot restore, `repair index` rebuilds the entry from the
/// pack's header.
#[test]
fn an_index_entry_past_the_end_of_its_pack_costs_its_blob_only() {
    let ws = Workspace::new();
    let (repo, src, first) = base(&ws);
    write(&src.join("g.txt"), b"the second file\n");
    let second = repo.backup(&[&src], &[]);
    let r = open(&repo);
    let g = cairn::repository::browse::lookup(&r, &snap_tree(&r, &second), src.join("g.txt"))
        .unwrap()
        .content[0];
    let (pack, _) = r.locate(&g).unwrap();
    let (old_id, mut file) = r
        .read_index_files()
        .unwrap()
        .into_iter()
        .find(|(_, f)| f.packs.iter().any(|p| p.id == pack))
        .unwrap();
    let p = file.packs.iter_mut().find(|p| p.id == pack).unwrap();
    // Only the last entry can grow with the entries still contiguous.
    let last = p.blobs.last_mut().unwrap();
    assert_eq!(
        last.id, g,
        "the second backup's data pack holds g.txt's blob only"
    );
    last.length += 1 << 20;
    r.save_index(&file).unwrap();
    r.backend()
        .remove(Handle::new(FileKind::Index, old_id))
        .unwrap();
    let pack_file = pack_name(&pack);

    let g_path = src.join("g.txt");
    fails_naming(
        &repo,
        &["dump", &second, g_path.to_str().unwrap()],
        &pack_file,
    );
    let t = ws.path("t");
    let res = bounded(
        &repo,
        &["restore", &second, "--target", t.to_str().unwrap()],
    );
    assert_eq!(res.code, Some(1), "{}", res.stderr);
    assert!(res.stderr.contains("g.txt"), "{}", res.stderr);
    assert!(!restored(&t, &src).join("g.txt").exists());
    assert_eq!(fs::read(restored(&t, &src).join("f.txt")).unwrap(), CONTENT);
    assert_eq!(restored_f(&ws, &repo, &first, &src, "t-first"), CONTENT);

    for args in [&["check"][..], &["check", "--read-data"]] {
        let c = bounded(&repo, args);
        assert_eq!(c.code, Some(1), "{args:?}: {}", c.stderr);
        assert!(
            c.stderr.contains(&pack_file) && c.stderr.contains(&second[..8]),
            "{args:?}: {}",
            c.stderr
        );
        assert!(c.stderr.contains("g.txt"), "{args:?}: {}", c.stderr);
        assert!(!c.stderr.contains(&first[..8]), "{args:?}: {}", c.stderr);
    }
    // Prune reads no pack it keeps: nothing to do, nothing changed.
    let before = repo.fingerprint();
    bounded(&repo, &["prune", "--dry-run"]).ok();
    assert_eq!(before, repo.fingerprint());

    bounded(&repo, &["repair", "index"]).ok();
    bounded(&repo, &["check", "--read-data"]).ok();
    let t = ws.path("t-after");
    repo.restore(&second, &t, &["--verify"]).ok();
    assert_eq!(
        fs::read(restored(&t, &src).join("g.txt")).unwrap(),
        b"the second file\n"
    );
}

// ---------------------------------------------------------------------------
// 5. Config.

/// A flipped byte in `config`, or a config sealed with the key that claims
/// what no reader may accept (pack size, chunker, compression, version,
/// database chunking): every command stops in one line naming the config
/// and changes nothing.
#[test]
fn a_damaged_or_impossible_config_stops_every_command_in_one_line() {
    let ws = Workspace::new();
    let (pristine, src, _) = base(&ws);
    let r = Repository::open(&pristine.path, PASSWORD.as_bytes()).unwrap();
    let config = r.config().clone();
    let with = |f: &dyn Fn(&mut Config)| {
        let mut c = config.clone();
        f(&mut c);
        Some(c.encode(r.key()).unwrap())
    };
    let cases: Vec<(&str, Option<Vec<u8>>, &str)> = vec![
        ("flipped byte", None, "config"),
        ("pack size 0", with(&|c| c.pack_size = 0), "pack size"),
        (
            "pack size 4 GiB",
            with(&|c| c.pack_size = u32::MAX),
            "pack size",
        ),
        (
            "chunker min above max",
            with(&|c| {
                c.chunker = ChunkerParams {
                    min_size: 1 << 20,
                    avg_size: 1 << 12,
                    max_size: 1 << 14,
                }
            }),
            "chunker",
        ),
        (
            "chunker avg not a power of two",
            with(&|c| c.chunker.avg_size = 3 << 13),
            "chunker",
        ),
        (
            "compression 99",
            with(&|c| c.compression_level = 99),
            "compression",
        ),
        ("version 2", with(&|c| c.version = 2), "version"),
        (
            "database chunks of 0 pages",
            with(&|c| c.database_chunking = Some(DatabaseChunking::FixedPages { pages: 0 })),
            "database chunking",
        ),
    ];
    for (n, (what, bytes, reason)) in cases.into_iter().enumerate() {
        let repo = Repo {
            path: ws.path(&format!("copy{n}")),
        };
        copy_tree(&pristine.path, &repo.path);
        let config_path = repo.path.join("config");
        match bytes {
            Some(b) => fs::write(&config_path, b).unwrap(),
            None => flip_byte(
                &config_path,
                fs::metadata(&config_path).unwrap().len() as i64 / 2,
            ),
        }
        let before = repo.fingerprint();
        let t = ws.path(&format!("t{n}"));
        let src_s = src.to_str().unwrap();
        for args in [
            vec!["snapshots"],
            vec!["backup", src_s],
            vec!["ls", "latest"],
            vec!["restore", "latest", "--target", t.to_str().unwrap()],
            vec!["check"],
            vec!["stats"],
            vec!["prune", "--dry-run"],
            vec!["repair", "index"],
            vec!["unlock"],
            vec!["key", "list"],
        ] {
            let line = fails_naming(&repo, &args, "config");
            assert!(line.contains(reason), "{what}: {args:?}: {line}");
        }
        assert_eq!(before, repo.fingerprint(), "{what}: repository changed");
        assert!(!t.exists(), "{what}: restore created its target");
    }
}

// ---------------------------------------------------------------------------
// 6. Locks.

/// Lock files that cannot be read: empty, garbage with the right magic,
/// and (sealed with the key) a malformed body and a time out of range.
/// Each might be anyone's lock, so it blocks every command in one line
/// that names it and says how to clear it; `unlock` leaves it and says so;
/// `unlock --remove-all` removes it.
#[test]
fn unreadable_lock_files_are_one_line_naming_the_remedy() {
    let ws = Workspace::new();
    let (repo, src, _) = base(&ws);
    let r = Repository::open(&repo.path, PASSWORD.as_bytes()).unwrap();
    let mut magic_garbage = b"CAIRNLK1".to_vec();
    magic_garbage.extend(random_bytes(3, 80));
    let malformed = cairn::format::envelope::seal_plain(r.key(), b"CAIRNLK1", &[0xff; 3]).unwrap();
    let far = cairn::format::lock::LockInfo {
        time: i64::MAX,
        exclusive: false,
        hostname: "elsewhere".into(),
        username: "someone".into(),
        pid: 1,
    }
    .encode(r.key())
    .unwrap();
    let src_s = src.to_str().unwrap();
    for (what, bytes) in [
        ("empty", Vec::new()),
        ("garbage after the magic", magic_garbage),
        ("malformed body", malformed),
        ("time out of range", far),
    ] {
        let id = Id::of_file(&bytes);
        let name = format!("locks/{}", id.to_hex());
        let path = repo.path.join(&name);
        fs::write(&path, &bytes).unwrap();
        // Readers and backups take no lock; what deletes does, and stops.
        for args in [vec!["backup", src_s], vec!["ls", "latest"], vec!["check"]] {
            bounded(&repo, &args).ok();
        }
        for args in [
            vec!["prune", "--dry-run"],
            vec!["forget", "--keep-last", "9"],
        ] {
            let line = bounded(&repo, &args).fails(Some(11));
            assert!(
                line.contains(&name) && line.contains("unlock --remove-all"),
                "{what}: {args:?}: {line}"
            );
        }
        let out = bounded(&repo, &["unlock"]).ok().out();
        assert!(path.exists(), "{what}: unlock removed an unreadable lock");
        assert!(out.contains("--remove-all"), "{what}: {out}");
        bounded(&repo, &["unlock", "--remove-all"]).ok();
        assert!(!path.exists(), "{what}: still there");
        repo.backup(&[&src], &[]);
    }
    bounded(&repo, &["check"]).ok();
}
