//! `cairn check` against injected faults, `repair index`, `--max-age`
//! monitoring, `--read-data-subset`, and `stats --json`.
//!
//! Every fault must be reported with a non-zero exit and a message naming
//! the damaged pack (or index file) and the affected snapshot and file; an
//! undamaged snapshot next to it must not be named.

mod support;

use cairn::Repository;
use cairn::backend::{FileKind, Handle};
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use support::env::*;

const KIB: usize = 1024;

/// Two snapshots with separate data: `a` (files a1, a2) and `b` (file b1).
struct Fixture {
    env: Env,
    a: Snap,
    b: Snap,
}

fn fixture() -> Fixture {
    let env = Env::new();
    let da = env.dir("srca");
    write_random(&da.join("a1"), 11, 300 * KIB);
    write_random(&da.join("a2"), 12, 100 * KIB);
    let db = env.dir("srcb");
    write_random(&db.join("b1"), 21, 300 * KIB);
    let a = env.backup(&da, &["--host", "h"]);
    let b = env.backup(&db, &["--host", "h"]);
    let f = Fixture { env, a, b };
    f.env.check_read_data_ok();
    f
}

/// A blob of a file in a snapshot: (blob id, pack id, offset, length).
fn file_blobs(env: &Env, snap: &Snap, name: &str) -> Vec<(String, String, u64, u32)> {
    let repo = Repository::open(&env.repo, PASSWORD.as_bytes())
        .unwrap()
        .with_full_index()
        .unwrap();
    let (_, s) = repo.find_snapshot(&snap.id, &Default::default()).unwrap();
    let path = snap.source.join(name);
    let node = cairn::repository::browse::lookup(&repo, &s.tree, path.to_str().unwrap()).unwrap();
    node.content
        .iter()
        .map(|b| {
            let (pack, loc) = repo.locate(b).unwrap();
            (b.to_hex(), pack.to_hex(), loc.offset, loc.length)
        })
        .collect()
}

fn short(id: &str) -> &str {
    &id[..8]
}

/// Runs `check ARGS`, requires failure, returns the output.
fn check_fails(env: &Env, args: &[&str]) -> Run {
    let mut a = vec!["check"];
    a.extend_from_slice(args);
    let r = env.run(&a);
    assert_eq!(r.code, Some(1), "check {args:?} should fail: {r}");
    assert!(r.stderr.contains("error: "), "{r}");
    r
}

/// Damaged data is still referenced data: check must not report the other
/// blobs of a damaged file as unreferenced (which would suggest that prune
/// may delete them).
fn assert_nothing_unreferenced(env: &Env, args: &[&str]) {
    let mut a = vec!["--json", "check"];
    a.extend_from_slice(args);
    let v = env.run(&a).json();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(
        v["unused_blobs"], 0,
        "referenced blobs reported as unused: {v}"
    );
}

/// The message names the pack, snapshot `bad` and file `file`, and not
/// snapshot `good`.
fn assert_names(r: &Run, pack: &str, bad: &Snap, file: &str, good: &Snap) {
    let out = r.all();
    assert!(
        out.contains(&format!("data/{}/{pack}", &pack[..2])),
        "pack not named: {r}"
    );
    assert!(out.contains(short(&bad.id)), "snapshot not named: {r}");
    assert!(out.contains(file), "file {file} not named: {r}");
    assert!(
        !out.contains(short(&good.id)),
        "undamaged snapshot named: {r}"
    );
}

#[test]
fn deleted_pack() {
    let f = fixture();
    let blobs = file_blobs(&f.env, &f.a, "a1");
    let pack = &blobs[0].1;
    std::fs::remove_file(f.env.pack_path(pack)).unwrap();
    let r = check_fails(&f.env, &[]);
    assert!(r.stderr.contains("missing"), "{r}");
    assert_names(&r, pack, &f.a, "a1", &f.b);
    assert_nothing_unreferenced(&f.env, &[]);
    let j = f.env.run(&["--json", "check"]).json();
    assert_eq!(j["ok"], false);
    let damaged = j["damaged_snapshots"].as_array().unwrap();
    assert_eq!(damaged.len(), 1, "{j}");
    assert!(damaged[0].as_str().unwrap().contains(short(&f.a.id)));
    // The other snapshot still restores.
    f.env.verify_restore(&f.b);
}

#[test]
fn truncated_pack() {
    let f = fixture();
    let blobs = file_blobs(&f.env, &f.a, "a1");
    let pack = &blobs[0].1;
    let path = f.env.pack_path(pack);
    let len = std::fs::metadata(&path).unwrap().len();
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    let r = check_fails(&f.env, &[]);
    assert_names(&r, pack, &f.a, "a1", &f.b);
    let r = check_fails(&f.env, &["--read-data"]);
    assert_names(&r, pack, &f.a, "a1", &f.b);
    assert_nothing_unreferenced(&f.env, &[]);
    assert_nothing_unreferenced(&f.env, &["--read-data"]);
    // Truncated to almost nothing.
    OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(5)
        .unwrap();
    let r = check_fails(&f.env, &[]);
    assert_names(&r, pack, &f.a, "a1", &f.b);
}

#[test]
fn flipped_byte_in_data_blob_needs_read_data() {
    let f = fixture();
    let blobs = file_blobs(&f.env, &f.a, "a2");
    let (blob, pack, offset, length) = &blobs[blobs.len() / 2];
    let path = f.env.pack_path(pack);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    let at = offset + *length as u64 / 2;
    let mut byte = [0u8];
    file.read_exact_at(&mut byte, at).unwrap();
    file.write_all_at(&[byte[0] ^ 0x10], at).unwrap();
    drop(file);

    // Headers are intact: the structural check cannot see it.
    let r = f.env.run(&["check"]);
    assert!(r.ok(), "plain check should not read data: {r}");
    // Reading the data finds it, naming pack, blob, snapshot and file.
    for args in [&["--read-data"][..], &["--read-data-subset", "1/1"][..]] {
        let r = check_fails(&f.env, args);
        assert_names(&r, pack, &f.a, "a2", &f.b);
        assert!(
            r.stderr.contains(&format!("data blob {}", short(blob))),
            "{r}"
        );
        assert!(r.stderr.contains("damaged"), "{r}");
        assert_nothing_unreferenced(&f.env, args);
    }
    let j = f.env.run(&["--json", "check", "--read-data"]).json();
    assert_eq!(j["ok"], false);
    assert_eq!(j["packs_read"], j["packs"]);
    // Restore never writes the damaged data silently.
    let t = f.env.dir("restore");
    let r = f
        .env
        .run(&["restore", &f.a.id, "--target", t.to_str().unwrap()]);
    assert!(!r.ok(), "restore of a damaged snapshot succeeded: {r}");
    assert!(r.stderr.contains("a2"), "{r}");
    f.env.verify_restore(&f.b);
}

#[test]
fn missing_tree() {
    let f = fixture();
    // Trees and data live in separate packs; delete every tree pack of `a`'s
    // backup (the packs holding `a`'s root tree's blobs).
    let index = f.env.index_packs();
    let a_packs: std::collections::BTreeSet<String> = file_blobs(&f.env, &f.a, "a1")
        .into_iter()
        .chain(file_blobs(&f.env, &f.a, "a2"))
        .map(|b| b.1)
        .collect();
    let tree_packs: Vec<&String> = index
        .iter()
        .filter(|(_, blobs)| blobs.iter().all(|b| b["type"] == "tree"))
        .map(|(id, _)| id)
        .collect();
    assert!(tree_packs.len() >= 2, "one tree pack per backup: {index:?}");
    for (id, blobs) in &index {
        assert!(
            blobs.iter().all(|b| b["type"] == "tree") || blobs.iter().all(|b| b["type"] == "data"),
            "pack {id} mixes trees and data"
        );
    }
    // The tree pack written by a's backup is the one holding a's root tree.
    let root_tree = f.env.ok(&["cat", "snapshot", &f.a.id]).json()["tree"]
        .as_str()
        .unwrap()
        .to_string();
    let tree_pack = tree_packs
        .iter()
        .find(|id| index[**id].iter().any(|b| b["id"] == root_tree.as_str()))
        .unwrap()
        .to_string();
    assert!(!a_packs.contains(&tree_pack));
    std::fs::remove_file(f.env.pack_path(&tree_pack)).unwrap();
    let r = check_fails(&f.env, &[]);
    let out = r.all();
    assert!(
        out.contains(&tree_pack[..8]) || out.contains(&tree_pack),
        "{r}"
    );
    assert!(out.contains(short(&f.a.id)), "snapshot not named: {r}");
    assert!(out.contains("directory") || out.contains("tree"), "{r}");
    assert!(!out.contains(short(&f.b.id)), "{r}");
    // a's data is now out of reach, but check must not advise pruning it.
    assert!(!r.stdout.contains("prune"), "{r}");
    assert!(r.stdout.contains("unreadable trees"), "{r}");
    // Prune refuses to run on it rather than deleting more.
    let r = f.env.run(&["prune"]);
    assert!(!r.ok(), "prune ran with a missing tree: {r}");
    f.env.verify_restore(&f.b);
}

#[test]
fn index_entry_with_wrong_offset() {
    let f = fixture();
    let blobs = file_blobs(&f.env, &f.a, "a1");
    let pack_hex = blobs[0].1.clone();
    let repo = Repository::open(&f.env.repo, PASSWORD.as_bytes()).unwrap();
    let files = repo.read_index_files().unwrap();
    let (old_id, mut file) = files
        .into_iter()
        .find(|(_, fl)| fl.packs.iter().any(|p| p.id.to_hex() == pack_hex))
        .unwrap();
    let p = file
        .packs
        .iter_mut()
        .find(|p| p.id.to_hex() == pack_hex)
        .unwrap();
    assert!(p.blobs.len() >= 2);
    // Swap a blob of a1 with its neighbour: the entries stay contiguous (so
    // the index file itself is well formed), but both offsets are wrong.
    // Blobs of several files share the pack in whatever order the parallel
    // backup wrote them, so find a1's blob rather than assume its place.
    let a1_ids: Vec<&String> = blobs
        .iter()
        .filter(|b| b.1 == pack_hex)
        .map(|b| &b.0)
        .collect();
    let i = p
        .blobs
        .iter()
        .position(|e| a1_ids.contains(&&e.id.to_hex()))
        .expect("a1 has a blob in this pack");
    let i = if i + 1 < p.blobs.len() { i } else { i - 1 };
    let (e0, e1) = (p.blobs[i], p.blobs[i + 1]);
    let mut n0 = e1;
    n0.offset = e0.offset;
    let mut n1 = e0;
    n1.offset = e0.offset + e1.length as u64;
    p.blobs[i] = n0;
    p.blobs[i + 1] = n1;
    let moved = e0.id.to_hex();
    repo.save_index(&file).unwrap();
    repo.backend()
        .remove(Handle::new(FileKind::Index, old_id))
        .unwrap();

    let r = check_fails(&f.env, &[]);
    assert!(r.stderr.contains("does not match the pack header"), "{r}");
    assert!(
        r.stderr.contains(short(&moved)) || r.stderr.contains(short(&e1.id.to_hex())),
        "{r}"
    );
    assert_names(&r, &pack_hex, &f.a, "a1", &f.b);
    let r = check_fails(&f.env, &["--read-data"]);
    assert_names(&r, &pack_hex, &f.a, "a1", &f.b);
    assert_nothing_unreferenced(&f.env, &[]);

    // `repair index` rebuilds the index from the pack headers.
    f.env.ok(&["repair", "index"]);
    f.env.check_read_data_ok();
    f.env.verify_all(&[f.a.clone(), f.b.clone()]);
}

#[test]
fn index_entry_with_shifted_offset() {
    // An offset shifted by one byte: the index file no longer describes a
    // contiguous pack and is rejected by name.
    let f = fixture();
    let blobs = file_blobs(&f.env, &f.a, "a1");
    let pack_hex = blobs[0].1.clone();
    let repo = Repository::open(&f.env.repo, PASSWORD.as_bytes()).unwrap();
    let (old_id, mut file) = repo
        .read_index_files()
        .unwrap()
        .into_iter()
        .find(|(_, fl)| fl.packs.iter().any(|p| p.id.to_hex() == pack_hex))
        .unwrap();
    let p = file
        .packs
        .iter_mut()
        .find(|p| p.id.to_hex() == pack_hex)
        .unwrap();
    let last = p.blobs.len() - 1;
    p.blobs[last].offset += 1;
    let new_id = repo.save_index(&file).unwrap();
    repo.backend()
        .remove(Handle::new(FileKind::Index, old_id))
        .unwrap();
    let r = check_fails(&f.env, &[]);
    assert!(
        r.stderr.contains(&new_id.to_hex()),
        "index file not named: {r}"
    );
    assert!(r.stderr.contains(short(&f.a.id)), "{r}");
    f.env.ok(&["repair", "index"]);
    f.env.check_read_data_ok();
    f.env.verify_all(&[f.a.clone(), f.b.clone()]);
}

#[test]
fn repair_index_after_losing_every_index_file() {
    let f = fixture();
    for p in f.env.index_files() {
        std::fs::remove_file(p).unwrap();
    }
    let r = check_fails(&f.env, &[]);
    assert!(r.stderr.contains("not in the index"), "{r}");
    assert!(
        r.stdout.contains("repair index"),
        "remedy not suggested: {r}"
    );
    let j = f.env.ok(&["--json", "repair", "index"]).json();
    assert_eq!(
        j["packs"].as_u64().unwrap() as usize,
        f.env.packs().len(),
        "{j}"
    );
    assert!(j["unreadable"].as_array().unwrap().is_empty(), "{j}");
    let c = f.env.check_read_data_ok();
    assert_eq!(c["unused_blobs"], 0, "{c}");
    f.env.verify_all(&[f.a.clone(), f.b.clone()]);
    // And the repository keeps working: another backup deduplicates.
    let s = f.env.backup(&f.a.source, &["--host", "h", "--force"]);
    f.env.verify_restore(&s);
    f.env.check_read_data_ok();
}

#[test]
fn max_age_names_the_stale_group() {
    let env = Env::new();
    let old = env.dir("old");
    write_random(&old.join("f"), 1, 10 * KIB);
    let fresh = env.dir("fresh");
    write_random(&fresh.join("f"), 2, 10 * KIB);
    let two_days_ago = (chrono::Utc::now() - chrono::Duration::days(2)).to_rfc3339();
    env.backup(&old, &["--host", "oldhost", "--time", &two_days_ago]);
    env.backup(&fresh, &["--host", "freshhost"]);

    let r = env.run(&["check", "--max-age", "1h"]);
    assert_eq!(r.code, Some(1), "{r}");
    assert!(r.stderr.contains("oldhost"), "{r}");
    assert!(r.stderr.contains(old.to_str().unwrap()), "{r}");
    assert!(!r.stderr.contains("freshhost"), "{r}");
    let j = env.run(&["--json", "check", "--max-age", "1h"]).json();
    assert_eq!(j["ok"], false);
    let stale = j["stale_groups"].as_array().unwrap();
    assert_eq!(stale.len(), 1, "{j}");
    assert!(stale[0].as_str().unwrap().contains("oldhost"));

    env.ok(&["check", "--max-age", "30d"]);
    env.ok(&["check", "--max-age", "3d"]);
    env.ok(&["check", "--max-age", "1h", "--host", "freshhost"]);
    let r = env.run(&["check", "--max-age", "26h", "--host", "oldhost"]);
    assert_eq!(r.code, Some(1), "{r}");
    let r = env.run(&["check", "--max-age", "1h", "--host", "nosuchhost"]);
    assert_eq!(r.code, Some(1), "no snapshot at all is stale too: {r}");
    let r = env.run(&["check", "--max-age", "soon"]);
    assert!(!r.ok(), "{r}");
}

#[test]
fn read_data_subsets_cover_every_pack() {
    let env = Env::new();
    let mut snaps = Vec::new();
    for k in 0..6u64 {
        let d = env.dir("src");
        write_random(&d.join("f"), 40 + k, 200 * KIB);
        snaps.push(env.backup(&d, &["--host", "h"]));
    }
    let all = env.check_read_data_ok();
    let packs = all["packs"].as_u64().unwrap();
    assert_eq!(packs as usize, env.packs().len());
    assert_eq!(all["packs_read"], packs);
    let mut sum = 0;
    for n in 1..=3 {
        let part = format!("{n}/3");
        let r = env.run(&["--json", "check", "--read-data-subset", &part]);
        assert!(r.ok(), "{r}");
        let v = r.json();
        assert_eq!(v["packs"], packs);
        sum += v["packs_read"].as_u64().unwrap();
    }
    assert_eq!(sum, packs, "parts 1/3..3/3 read every pack exactly once");
    let v = env
        .ok(&["--json", "check", "--read-data-subset", "100%"])
        .json();
    assert_eq!(v["packs_read"], packs);
    let v = env
        .ok(&["--json", "check", "--read-data-subset", "0%"])
        .json();
    assert_eq!(v["packs_read"], 0);
    let v = env.ok(&["--json", "check"]).json();
    assert_eq!(v["packs_read"], 0);
    for bad in ["0/3", "4/3", "1/0", "x", "150%", "-1/3"] {
        let r = env.run(&["check", &format!("--read-data-subset={bad}")]);
        assert!(!r.ok(), "{bad} accepted: {r}");
    }
}

#[test]
fn stats_json() {
    let env = Env::new();
    let d = env.dir("src");
    write_random(&d.join("random"), 5, 300 * KIB);
    // Compressible text.
    let text: String = (0..20_000)
        .map(|i| format!("line {} of {}\n", i % 50, i))
        .collect();
    std::fs::write(d.join("text"), &text).unwrap();
    let logical = (300 * KIB + text.len()) as u64;
    env.backup(&d, &["--host", "h"]);
    env.backup(&d, &["--host", "h", "--force"]);

    let v = env.ok(&["--json", "stats"]).json();
    for field in [
        "snapshots",
        "latest_logical_bytes",
        "total_logical_bytes",
        "unique_raw_bytes",
        "unique_stored_bytes",
        "pack_bytes",
        "repository_bytes",
        "dedup_ratio",
        "compression_ratio",
        "blobs",
        "data_blobs_used",
        "tree_blobs_used",
        "packs",
        "unused_bytes",
    ] {
        assert!(v[field].is_number(), "stats lacks {field}: {v}");
    }
    let n = |f: &str| v[f].as_u64().unwrap();
    let x = |f: &str| v[f].as_f64().unwrap();
    assert_eq!(n("snapshots"), 2);
    assert_eq!(n("latest_logical_bytes"), logical);
    assert_eq!(n("total_logical_bytes"), 2 * logical);
    assert!(
        x("dedup_ratio") > 1.9 && x("dedup_ratio") <= 2.0,
        "two identical backups: {v}"
    );
    assert!(x("compression_ratio") > 1.0, "{v}");
    assert!(n("unique_raw_bytes") >= logical, "{v}");
    assert!(n("unique_stored_bytes") < n("unique_raw_bytes"), "{v}");
    assert!(n("pack_bytes") >= n("unique_stored_bytes"), "{v}");
    assert!(n("repository_bytes") > n("pack_bytes"), "{v}");
    assert_eq!(n("packs") as usize, env.packs().len());
    assert_eq!(n("pack_bytes"), env.data_size());
    assert!(n("data_blobs_used") >= 2, "{v}");
    assert!(n("tree_blobs_used") >= 1, "{v}");
    assert_eq!(n("blobs"), n("data_blobs_used") + n("tree_blobs_used"));
    assert_eq!(n("unused_bytes"), 0);

    // Unreferenced data shows as unused until prune removes it.
    let d2 = env.dir("other");
    write_random(&d2.join("x"), 6, 200 * KIB);
    let s = env.backup(&d2, &["--host", "h"]);
    env.ok(&["forget", &s.id]);
    let v = env.ok(&["--json", "stats"]).json();
    assert!(
        v["unused_bytes"].as_u64().unwrap() >= 200 * KIB as u64,
        "{v}"
    );
    env.ok(&["prune", "--instant-delete"]);
    let v = env.ok(&["--json", "stats"]).json();
    assert_eq!(v["unused_bytes"], 0, "{v}");
    assert_eq!(v["snapshots"], 2);
    let r = env.ok(&["stats"]);
    assert!(r.stdout.contains("dedup ratio"), "{r}");
}
