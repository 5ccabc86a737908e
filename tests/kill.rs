//! `kill -9` the real binary in the middle of backups, at several moments,
//! and prove the repository stays sound: `check` accepts it, the next backup
//! succeeds, no half-written snapshot ever appears, and every snapshot
//! restores bit for bit to the source state it was taken from.
//!
//! Kill moments are fractions of the measured duration of a full backup of
//! the same amount of new data, so they land at comparable points whatever
//! the machine's speed; a kill that lands after the backup finished is fine
//! (its snapshot is then simply one more to verify).

mod support;

use std::fs;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};
use support::*;

/// Files in the source tree, and their sizes: about 36 MiB in total, so
/// that with 1 MiB packs a backup writes more than 32 packs and therefore
/// also an intermediate index file before the final one.
const FILES: u64 = 240;

fn file_len(i: u64) -> usize {
    100 * 1024 + ((i * 7_919) % (100 * 1024)) as usize
}

/// Writes generation `gen` of the source: every file gets new content, one
/// file is removed and another added, so each generation is all new data.
fn write_generation(src: &Path, generation: u64) {
    for i in 0..FILES {
        let p = src.join(format!("d{}", i % 12)).join(format!("f{i}"));
        if i == generation % FILES && generation > 0 {
            let _ = fs::remove_file(&p);
            continue;
        }
        write(&p, &random_bytes(generation * 100_000 + i, file_len(i)));
    }
    write(
        &src.join(format!("extra/gen{generation}")),
        format!("generation {generation}\n").as_bytes(),
    );
}

/// A snapshot id and the source state it must restore to.
struct Known {
    id: String,
    state: Manifest,
    generation: u64,
}

fn check_ok(repo: &Repo, ctx: &str) {
    let r = repo.run(&["check"]);
    assert!(!r.stderr.contains("panicked"), "{ctx}: {}", r.stderr);
    assert_eq!(
        r.code,
        Some(0),
        "{ctx}: check rejects the repository\nstdout: {}\nstderr: {}",
        r.out(),
        r.stderr
    );
}

/// Starts a backup of `src`, sends it SIGKILL after `delay`, and returns
/// its snapshot id if it finished first.
fn killed_backup(repo: &Repo, src: &Path, delay: Duration, ctx: &str) -> Option<String> {
    let mut child = repo
        .cmd(&["--json", "backup", src.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(delay);
    let _ = child.kill(); // SIGKILL; an error means it already exited
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "{ctx}: {stderr}");
    let id = if out.status.success() {
        Some(
            last_json(&out.stdout)["snapshot_id"]
                .as_str()
                .unwrap()
                .to_string(),
        )
    } else {
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(9),
            "{ctx}: backup failed by itself: {stderr}"
        );
        None
    };
    let mut tmp_files = 0;
    let mut stack = vec![repo.path.clone()];
    while let Some(p) = stack.pop() {
        for e in fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else if e.file_name().to_string_lossy().starts_with(".tmp-") {
                tmp_files += 1;
            }
        }
    }
    eprintln!(
        "{ctx}: {}; {} packs, {} index files, {} temporary files",
        if id.is_some() {
            "finished first"
        } else {
            "killed"
        },
        repo.files_in("data").len(),
        repo.files_in("index").len(),
        tmp_files
    );
    id
}

#[test]
fn kill_minus_9_during_backup_never_damages_the_repository() {
    let ws = Workspace::new();
    let src = ws.path("src");
    let repo = ws.init_repo("repo", &["--pack-size", "1"]);
    let opts = ManifestOptions::default();

    write_generation(&src, 0);
    let state0 = manifest(&src, opts);
    // A kill during the very first backup of a repository.
    let ctx = "kill during the first backup";
    let mut known = Vec::new();
    if let Some(id) = killed_backup(&repo, &src, Duration::from_millis(400), ctx) {
        known.push(Known {
            id,
            state: state0.clone(),
            generation: 0,
        });
    }
    check_ok(&repo, ctx);
    let start = Instant::now();
    let first = repo.backup(&[&src], &[]);
    let full = start.elapsed();
    known.push(Known {
        id: first,
        state: state0,
        generation: 0,
    });
    let packs_after_first = repo.files_in("data").len();
    assert!(
        packs_after_first > 32,
        "expected more than 32 packs, got {packs_after_first}"
    );

    let mut verified = std::collections::HashSet::new();
    let fractions = [0.02, 0.2, 0.45, 0.75, 1.1];
    for (round, frac) in fractions.iter().enumerate() {
        let generation = round as u64 + 1;
        write_generation(&src, generation);
        let state = manifest(&src, opts);
        let delay = full.mul_f64(*frac);
        let ctx = format!("kill {round} after {delay:?} (full backup takes {full:?})");

        if let Some(id) = killed_backup(&repo, &src, delay, &ctx) {
            // Finished before the kill: one more snapshot to verify.
            known.push(Known {
                id,
                state: state.clone(),
                generation,
            });
        }

        // Every snapshot in the repository is one we know, except possibly
        // one of the current state whose process was killed after writing
        // it: never a partial one.
        for id in repo.snapshot_ids() {
            if !known.iter().any(|k| k.id == id) {
                known.push(Known {
                    id,
                    state: state.clone(),
                    generation,
                });
            }
        }
        check_ok(&repo, &ctx);

        // The snapshot before this round still restores bit for bit.
        let prev = known.iter().rfind(|k| k.generation < generation).unwrap();
        restore_and_compare(&ws, &repo, &prev.id, &src, &prev.state, opts, &[]);
        verified.insert(prev.id.clone());

        // The next backup succeeds (reusing whatever the killed one made
        // durable and indexed).
        let id = repo.backup(&[&src], &[]);
        known.push(Known {
            id,
            state,
            generation,
        });
    }

    // After all kills: exactly the known snapshots, each restoring to its
    // source state, and a clean check.
    let mut ids = repo.snapshot_ids();
    ids.sort();
    let mut want: Vec<String> = known.iter().map(|k| k.id.clone()).collect();
    want.sort();
    want.dedup();
    assert_eq!(ids, want);
    // Those restored after a later kill cannot have changed since (a backup
    // only ever adds files), and a snapshot whose source tree has the same
    // id as a verified one has the same content.
    let tree_of = |id: &str| {
        let sel = format!("{id}:{}", src.display());
        let out = repo.run(&["cat", "tree", &sel]).ok().stdout;
        let v: serde_json::Value = serde_json::from_slice(&out).unwrap();
        // The listing with every blob id (and inline listings in place)
        // identifies the content, whether or not it has an id of its own.
        v["nodes"].to_string()
    };
    let mut verified_trees: std::collections::HashSet<String> =
        verified.iter().map(|id| tree_of(id)).collect();
    for k in &known {
        if verified.contains(&k.id) || verified_trees.contains(&tree_of(&k.id)) {
            continue;
        }
        restore_and_compare(&ws, &repo, &k.id, &src, &k.state, opts, &[]);
        verified_trees.insert(tree_of(&k.id));
    }
    check_ok(&repo, "after all kills");
}
