//! Bad input through the real binary: each case must give one clear line on
//! stderr naming the problem (and the file where there is one), a non-zero
//! exit, no panic, and leave the repository exactly as it was (every file's
//! bytes are hashed before and after).

mod support;

use std::ffi::OsStr;
use std::fs;
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use support::*;

/// A small repository with one snapshot of a small tree, kept pristine and
/// copied for each damaging case.
struct Fixture {
    ws: Workspace,
    src: PathBuf,
    repo: Repo,
    snap: String,
}

fn fixture() -> Fixture {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("big.bin"), &random_bytes(11, 300_000));
    write(&src.join("d/small.txt"), b"small\n");
    write(&src.join("d/e/other.txt"), b"other\n");
    let repo = ws.init_repo("repo", SMALL_CHUNKS);
    let snap = repo.backup(&[&src], &[]);
    Fixture {
        ws,
        src,
        repo,
        snap,
    }
}

impl Fixture {
    /// A fresh copy of the pristine repository.
    fn copy(&self, name: &str) -> Repo {
        let path = self.ws.path(name);
        copy_tree(&self.repo.path, &path);
        Repo { path }
    }
}

/// Runs `args` against `repo`, expects a clean failure with `code`, checks
/// the repository did not change, and returns the error line.
fn fails_unchanged(repo: &Repo, args: &[&OsStr], code: Option<i32>) -> String {
    let before = repo.fingerprint();
    let line = repo.run(args).fails(code);
    assert_eq!(
        before,
        repo.fingerprint(),
        "{args:?} changed the repository"
    );
    line
}

fn os<'a>(args: &'a [&'a str]) -> Vec<&'a OsStr> {
    args.iter().map(OsStr::new).collect()
}

#[test]
fn wrong_password_and_not_a_repository() {
    let f = fixture();
    let before = f.repo.fingerprint();
    for args in [
        &["snapshots"][..],
        &["ls", "latest"],
        &["backup", "/etc/hostname"],
    ] {
        let mut c = f.repo.cmd(args);
        c.env("CAIRN_PASSWORD", "not the password");
        let r = run(c);
        let line = r.fails(Some(12));
        assert!(line.contains("wrong password"), "{line}");
    }
    // Password from a file, with the same result.
    let pwf = f.ws.path("pw");
    write(&pwf, b"wrong\n");
    let mut c = f.repo.cmd(&[
        OsStr::new("--password-file"),
        pwf.as_os_str(),
        OsStr::new("snapshots"),
    ]);
    c.env_remove("CAIRN_PASSWORD");
    assert!(run(c).fails(Some(12)).contains("wrong password"));
    assert_eq!(before, f.repo.fingerprint());

    // Not a repository: an empty dir, a missing dir, a regular file, a
    // directory with files but no config.
    let empty = f.ws.path("empty");
    fs::create_dir(&empty).unwrap();
    let file = f.ws.path("file");
    write(&file, b"x");
    for p in [
        empty.clone(),
        f.ws.path("missing"),
        file.clone(),
        f.src.clone(),
    ] {
        let r = Repo { path: p.clone() };
        let before = fingerprint(&p);
        let line = r.run(&["snapshots"]).fails(Some(10));
        assert!(line.contains("not a cairn repository"), "{line}");
        assert!(line.contains(&p.display().to_string()), "{line}");
        assert_eq!(before, fingerprint(&p));
    }
    assert!(!f.ws.path("missing").exists());
    // No repository given at all.
    let mut c = cairn_cmd();
    c.arg("snapshots");
    assert!(run(c).fails(Some(1)).contains("repository"));
}

#[test]
fn init_refuses_existing_repository_non_empty_dir_and_bad_parameters() {
    let f = fixture();
    let args = os(&["init", "--kdf-memory", "1024", "--kdf-iterations", "1"]);
    let line = fails_unchanged(&f.repo, &args, Some(1));
    assert!(line.contains("already exists"), "{line}");

    // Non-empty directory: nothing added to it.
    let dir = f.ws.path("nonempty");
    write(&dir.join("precious.txt"), b"keep me");
    let before = fingerprint(&dir);
    let r = Repo { path: dir.clone() };
    let line = r.run(&args).fails(Some(1));
    assert!(line.contains("not empty"), "{line}");
    assert_eq!(before, fingerprint(&dir));

    // Bad chunker / KDF parameters: refused before anything is created.
    for bad in [
        &["--chunk-min", "65536", "--chunk-max", "4096"][..],
        &["--chunk-avg", "10000"],
        &["--chunk-min", "0"],
        &["--pack-size", "0"],
        &["--kdf-iterations", "0"],
    ] {
        let path = f.ws.path("never");
        let r = Repo { path: path.clone() };
        let mut a = os(&["init", "--kdf-memory", "1024"]);
        if !bad.contains(&"--kdf-iterations") {
            a.extend(os(&["--kdf-iterations", "1"]));
        }
        a.extend(bad.iter().map(OsStr::new));
        r.run(&a).fails(Some(1));
        assert!(!path.exists(), "init {bad:?} created {}", path.display());
    }
}

#[test]
fn backup_with_bad_arguments_changes_nothing() {
    let f = fixture();
    let missing = f.ws.path("no-such-dir");
    let line = fails_unchanged(
        &f.repo,
        &[OsStr::new("backup"), missing.as_os_str()],
        Some(1),
    );
    assert!(line.contains(&missing.display().to_string()), "{line}");
    // One good and one missing path: still nothing saved.
    let line = fails_unchanged(
        &f.repo,
        &[OsStr::new("backup"), f.src.as_os_str(), missing.as_os_str()],
        Some(1),
    );
    assert!(line.contains(&missing.display().to_string()), "{line}");
    for extra in [
        &["--exclude", "a["][..],
        &["--time", "yesterday-ish"],
        &["--time", "2026-13-45 99:00"],
        &["--parent", "ffffffff"],
    ] {
        let mut a = vec![OsStr::new("backup"), f.src.as_os_str()];
        a.extend(extra.iter().map(OsStr::new));
        fails_unchanged(&f.repo, &a, Some(1));
    }
    let ex = f.ws.path("no-such-exclude-file");
    let line = fails_unchanged(
        &f.repo,
        &[
            OsStr::new("backup"),
            f.src.as_os_str(),
            OsStr::new("--exclude-file"),
            ex.as_os_str(),
        ],
        Some(1),
    );
    assert!(line.contains("no-such-exclude-file"), "{line}");
    assert_eq!(f.repo.snapshot_ids(), vec![f.snap.clone()]);
}

#[test]
fn unknown_ambiguous_and_malformed_snapshot_selectors() {
    let f = fixture();
    // Make snapshots until two ids share their first hex digit.
    let mut ids = vec![f.snap.clone()];
    let shared = loop {
        let id = f.repo.backup(&[&f.src], &[]);
        if let Some(prev) = ids.iter().find(|p| p.as_bytes()[0] == id.as_bytes()[0]) {
            let common = prev
                .bytes()
                .zip(id.bytes())
                .take_while(|(a, b)| a == b)
                .count();
            break id[..common].to_string();
        }
        ids.push(id);
        assert!(ids.len() <= 17, "pigeonhole");
    };
    let target = f.ws.path("target");
    let t = target.to_str().unwrap();
    for sel in [&shared[..1], &shared] {
        for args in [
            vec!["restore", sel, "--target", t],
            vec!["ls", sel],
            vec!["dump", sel, "/x"],
            vec!["cat", "snapshot", sel],
        ] {
            let line = fails_unchanged(&f.repo, &os(&args), Some(1));
            assert!(line.contains("ambiguous"), "{args:?}: {line}");
            assert!(line.contains(sel), "{args:?}: {line}");
        }
    }
    // Unknown: a prefix no id has.
    let unknown = (0..16u8)
        .map(|d| format!("{d:x}").repeat(8))
        .find(|u| !ids.iter().any(|id| id.starts_with(u.as_str())))
        .unwrap();
    for args in [
        vec!["restore", &unknown, "--target", t],
        vec!["ls", &unknown],
        vec!["dump", &unknown, "/x"],
    ] {
        let line = fails_unchanged(&f.repo, &os(&args), Some(1));
        assert!(line.contains("no snapshot"), "{args:?}: {line}");
        assert!(line.contains(&unknown), "{args:?}: {line}");
    }
    // Malformed selectors.
    for args in [
        vec!["restore", "zz-top", "--target", t],
        vec!["restore", "", "--target", t],
        vec!["restore", "--target", t],
        vec![
            "restore",
            "latest",
            "--at",
            "2020-01-01 00:00",
            "--target",
            t,
        ],
        vec!["restore", "--at", "not a time", "--target", t],
        vec!["restore", "--at", "2000-01-01T00:00:00Z", "--target", t],
    ] {
        fails_unchanged(&f.repo, &os(&args), Some(1));
    }
    assert!(!target.exists(), "a failed selection created the target");
}

#[test]
fn dump_of_non_files_and_missing_paths() {
    let f = fixture();
    let dir = f.src.join("d");
    std::os::unix::fs::symlink("d/small.txt", f.src.join("link")).unwrap();
    let snap = f.repo.backup(&[&f.src], &[]);
    let cases = [
        (dir.clone(), "dir"),
        (f.src.join("link"), "symlink"),
        (f.src.join("nope"), "no such file"),
        (PathBuf::from("/"), "dir"),
        (f.src.join("d/small.txt/below"), "no such file"),
    ];
    for (p, want) in cases {
        let line = fails_unchanged(
            &f.repo,
            &[OsStr::new("dump"), OsStr::new(&snap), p.as_os_str()],
            Some(1),
        );
        assert!(line.contains(want), "dump {}: {line}", p.display());
        assert!(line.contains(&p.display().to_string()), "{line}");
    }
    let line = fails_unchanged(&f.repo, &os(&["ls", &snap, "/no/such/path"]), Some(1));
    assert!(line.contains("/no/such/path"), "{line}");
}

#[test]
fn hostile_restore_arguments_write_nothing_outside_the_target() {
    let f = fixture();
    let target = f.ws.path("sandbox/target");
    let t = target.to_str().unwrap();
    let before_ws = fingerprint(f.ws.dir.path());
    for args in [
        vec!["restore", "latest", "--target", t, "--include", "../.."],
        vec![
            "restore",
            "latest",
            "--target",
            t,
            "--include",
            "/../../etc",
        ],
        vec![
            "restore",
            "latest",
            "--target",
            t,
            "--include",
            "../../../../etc/passwd",
        ],
        vec![
            "restore",
            "latest",
            "--target",
            t,
            "--include",
            "/tmp/../..",
        ],
        vec!["restore", "latest", "--target", t, "--exclude", "a["],
        vec!["restore", "latest", "--target", t, "--include", "[z-a]"],
        vec!["ls", "latest", "/../.."],
        vec!["dump", "latest", "../../etc/passwd"],
    ] {
        let line = fails_unchanged(&f.repo, &os(&args), Some(1));
        assert!(!line.is_empty());
    }
    assert_eq!(
        before_ws,
        fingerprint(f.ws.dir.path()),
        "hostile arguments changed files"
    );
    // An include that matches nothing restores nothing, but is no error.
    f.repo
        .restore("latest", &target, &["--include", "/no/such/thing"])
        .ok();
    assert_eq!(fs::read_dir(&target).map(|d| d.count()).unwrap_or(0), 0);
}

/// Ways of damaging a repository file.
#[derive(Clone, Copy, Debug)]
enum Damage {
    FlipFirst,
    FlipMiddle,
    FlipLast,
    TruncateHalf,
    TruncateZero,
    /// Flip a byte, then rename the file to the hash of its new content,
    /// as a forger would, so the name check alone cannot catch it.
    FlipAndRename,
}

impl Damage {
    const ALL: [Damage; 6] = [
        Damage::FlipFirst,
        Damage::FlipMiddle,
        Damage::FlipLast,
        Damage::TruncateHalf,
        Damage::TruncateZero,
        Damage::FlipAndRename,
    ];

    fn name(self) -> &'static str {
        match self {
            Damage::FlipFirst => "flip first byte",
            Damage::FlipMiddle => "flip middle byte",
            Damage::FlipLast => "flip last byte",
            Damage::TruncateHalf => "truncate to half",
            Damage::TruncateZero => "truncate to zero",
            Damage::FlipAndRename => "flip and rename to the new hash",
        }
    }
}

/// Which command reads each kind of file, and how its name appears.
fn damaged_file_cases(f: &Fixture) -> Vec<(&'static str, PathBuf)> {
    let one = |sub: &str| f.repo.files_in(sub).into_iter().next().unwrap();
    vec![
        ("config", f.repo.path.join("config")),
        ("keys", one("keys")),
        ("snapshots", one("snapshots")),
        ("index", one("index")),
    ]
}

#[test]
fn damaged_config_key_snapshot_and_index_files_are_reported() {
    let f = fixture();
    let target = f.ws.path("target");
    let t = target.to_str().unwrap();
    let mut n = 0;
    for (kind, pristine_path) in damaged_file_cases(&f) {
        let rel = pristine_path
            .strip_prefix(&f.repo.path)
            .unwrap()
            .to_path_buf();
        let len = fs::metadata(&pristine_path).unwrap().len() as i64;
        for damage in Damage::ALL {
            let what = damage.name();
            n += 1;
            let repo = f.copy(&format!("copy{n}"));
            let p = repo.path.join(&rel);
            let damaged = match damage {
                Damage::FlipFirst => {
                    flip_byte(&p, 0);
                    p
                }
                Damage::FlipMiddle => {
                    flip_byte(&p, len / 2);
                    p
                }
                Damage::FlipLast => {
                    flip_byte(&p, -1);
                    p
                }
                Damage::TruncateHalf => {
                    truncate(&p, (len / 2) as u64);
                    p
                }
                Damage::TruncateZero => {
                    truncate(&p, 0);
                    p
                }
                Damage::FlipAndRename => {
                    flip_byte(&p, len / 2);
                    if kind == "config" {
                        p
                    } else {
                        rename_to_hash(&p)
                    }
                }
            };
            let name = damaged
                .strip_prefix(&repo.path)
                .unwrap()
                .display()
                .to_string();
            if kind == "snapshots" {
                damaged_snapshot_costs_only_itself(&repo, &name, &format!("{name}: {what}"));
                continue;
            }
            // The command that reads this kind of file.
            let args: Vec<&str> = match kind {
                "index" => vec!["restore", "latest", "--target", t],
                _ => vec!["snapshots"],
            };
            let before = repo.fingerprint();
            let r = repo.run(&args);
            let ctx = format!("{kind} {name}: {what}");
            let code = r.code;
            let line = r.fails(None);
            assert_eq!(before, repo.fingerprint(), "{ctx}: repository changed");
            if kind == "keys" && what.contains("rename") && code == Some(12) {
                // A consistently renamed key file whose sealed key was
                // altered cannot be told from a wrong password, by design.
                assert!(line.contains("password"), "{ctx}: {line}");
            } else {
                assert_eq!(code, Some(1), "{ctx}: {line}");
                assert!(
                    line.contains(&name),
                    "{ctx}: error does not name the file: {line}"
                );
            }
            assert!(!target.exists(), "{ctx}: restore created the target");
        }
    }
}

/// A damaged snapshot file is skipped with one warning naming it (the
/// listing still works), `check` reports it, and `forget` of its id brings
/// the repository back to a state `check` accepts, changing nothing else.
fn damaged_snapshot_costs_only_itself(repo: &Repo, name: &str, ctx: &str) {
    let before = repo.fingerprint();
    let r = repo.run(&["snapshots"]);
    assert_eq!(r.code, Some(0), "{ctx}: {}", r.stderr);
    assert!(!r.stderr.contains("panicked"), "{ctx}: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "{ctx}: one warning: {}", r.stderr);
    assert!(
        lines[0].contains("warning") && lines[0].contains(name),
        "{ctx}: {}",
        lines[0]
    );
    assert_eq!(before, repo.fingerprint(), "{ctx}: repository changed");
    let check = repo.run(&["check"]);
    assert_eq!(check.code, Some(1), "{ctx}: check: {}", check.stderr);
    assert!(check.stderr.contains(name), "{ctx}: {}", check.stderr);
    let id = name.trim_start_matches("snapshots/");
    repo.run(&["forget", &id[..12]]).ok();
    assert!(!repo.path.join(name).exists(), "{ctx}: not forgotten");
    repo.run(&["check"]).ok();
}

/// A pack file as the index describes it.
#[derive(Clone)]
struct PackInfo {
    path: PathBuf,
    /// "data" or "tree".
    kind: String,
    /// (offset, length) of each blob.
    blobs: Vec<(u64, u64)>,
}

/// Packs of a repository, from its index files.
fn packs(repo: &Repo) -> Vec<PackInfo> {
    let mut out = Vec::new();
    for idx in repo.files_in("index") {
        let id = idx.file_name().unwrap().to_str().unwrap().to_string();
        let r = repo.run(&["cat", "index", &id]).ok();
        let v: serde_json::Value = serde_json::from_slice(&r.stdout).unwrap();
        for p in v["packs"].as_array().unwrap() {
            let pid = p["id"].as_str().unwrap();
            let blobs = p["blobs"].as_array().unwrap();
            out.push(PackInfo {
                path: repo.path.join("data").join(&pid[..2]).join(pid),
                kind: blobs[0]["type"].as_str().unwrap().to_string(),
                blobs: blobs
                    .iter()
                    .map(|b| (b["offset"].as_u64().unwrap(), b["length"].as_u64().unwrap()))
                    .collect(),
            });
        }
    }
    out
}

/// Restore after damaging a pack must fail naming the pack, leave no file
/// with wrong content, and restore what is undamaged.
fn check_damaged_pack_restore(f: &Fixture, repo: &Repo, pack_name: &str, ctx: &str) {
    let target = f.ws.path(&format!(
        "target-{}",
        repo.path.file_name().unwrap().to_str().unwrap()
    ));
    let before = repo.fingerprint();
    let r = repo.restore("latest", &target, &[]);
    assert_eq!(before, repo.fingerprint(), "{ctx}: repository changed");
    assert!(!r.stderr.contains("panicked"), "{ctx}: {}", r.stderr);
    assert_eq!(r.code, Some(1), "{ctx}: {}", r.stderr);
    let lines: Vec<&str> = r.stderr.lines().collect();
    // One line per damaged file, naming the pack, then a count.
    // (Restore reports every file it could not restore, then a summary.)
    assert!(
        lines[0].contains(pack_name),
        "{ctx}: first line does not name the pack: {}",
        r.stderr
    );
    assert!(lines.len() >= 2, "{ctx}: {}", r.stderr);
    for l in &lines[..lines.len() - 1] {
        assert!(l.contains(pack_name), "{ctx}: {l}");
    }
    assert!(
        lines[lines.len() - 1].contains("errors during restore"),
        "{ctx}: {}",
        r.stderr
    );
    // Every file that exists has the right content.
    let out = restored(&target, &f.src);
    for rel in ["big.bin", "d/small.txt", "d/e/other.txt"] {
        let p = out.join(rel);
        if p.exists() {
            assert_eq!(
                fs::read(&p).unwrap(),
                fs::read(f.src.join(rel)).unwrap(),
                "{ctx}: {rel} restored with wrong content"
            );
        }
    }
}

#[test]
fn damaged_packs_are_reported_by_restore() {
    let f = fixture();
    let all = packs(&f.repo);
    // The pack holding the largest data blob: a chunk of big.bin (the small
    // files' blobs are a few dozen bytes), wherever the packer put it.
    let (data_pack, (b_off, b_len)) = all
        .iter()
        .filter(|p| p.kind == "data")
        .flat_map(|p| p.blobs.iter().map(move |b| (p.path.clone(), *b)))
        .max_by_key(|(_, (_, len))| *len)
        .unwrap();
    let tree_pack = all.iter().find(|p| p.kind == "tree").unwrap().path.clone();
    let rel_data = data_pack.strip_prefix(&f.repo.path).unwrap().to_path_buf();
    let rel_tree = tree_pack.strip_prefix(&f.repo.path).unwrap().to_path_buf();
    let data_len = fs::metadata(&data_pack).unwrap().len();

    let mut n = 0;
    let mut copy = || {
        n += 1;
        f.copy(&format!("pack{n}"))
    };
    // A flipped byte inside a blob.
    let repo = copy();
    flip_byte(&repo.path.join(&rel_data), (b_off + b_len / 2) as i64);
    check_damaged_pack_restore(&f, &repo, &rel_data.display().to_string(), "data blob flip");
    // The same, renamed to its new hash: the blob still fails to authenticate.
    let repo = copy();
    let p = repo.path.join(&rel_data);
    flip_byte(&p, (b_off + b_len / 2) as i64);
    let renamed = rename_to_hash(&p);
    let r = repo.restore("latest", &f.ws.path("renamed-target"), &[]);
    assert_eq!(r.code, Some(1), "{}", r.stderr);
    assert!(!r.stderr.contains("panicked"));
    let _ = renamed;
    // Truncated packs.
    for keep in [b_off + 1, data_len / 2, 0] {
        let repo = copy();
        truncate(&repo.path.join(&rel_data), keep);
        check_damaged_pack_restore(
            &f,
            &repo,
            &rel_data.display().to_string(),
            &format!("data pack truncated to {keep}"),
        );
    }
    // Tree pack damage: restore and ls fail with one line naming the pack.
    for damage in ["flip", "truncate"] {
        let repo = copy();
        let p = repo.path.join(&rel_tree);
        if damage == "flip" {
            flip_byte(&p, 0);
        } else {
            truncate(&p, 10);
        }
        let name = rel_tree.display().to_string();
        let t = f.ws.path(&format!("tree-target-{damage}"));
        let args = [
            OsStr::new("restore"),
            OsStr::new("latest"),
            OsStr::new("--target"),
            t.as_os_str(),
        ];
        let line = fails_unchanged(&repo, &args, Some(1));
        assert!(line.contains(&name), "{damage}: {line}");
        let line = fails_unchanged(&repo, &os(&["ls", "latest"]), Some(1));
        assert!(line.contains(&name), "{damage}: {line}");
        assert!(!restored(&t, &f.src).join("big.bin").exists());
    }
    // dump of a file in a damaged pack fails and names the pack.
    let repo = copy();
    flip_byte(&repo.path.join(&rel_data), (b_off + b_len / 2) as i64);
    let big = f.src.join("big.bin");
    let r = repo.run(&[OsStr::new("dump"), OsStr::new("latest"), big.as_os_str()]);
    let line = r.fails(Some(1));
    assert!(line.contains(&rel_data.display().to_string()), "{line}");
    // A flipped byte in the pack header is not read by restore, but check
    // --read-data finds it.
    let repo = copy();
    flip_byte(&repo.path.join(&rel_data), -20);
    let before = repo.fingerprint();
    let r = repo.run(&["check", "--read-data"]);
    assert_eq!(before, repo.fingerprint());
    assert!(!r.stderr.contains("panicked"));
    assert_ne!(
        r.code,
        Some(0),
        "check --read-data missed a damaged pack header"
    );
    assert!(
        format!("{}{}", r.out(), r.stderr).contains(&rel_data.display().to_string()),
        "check output does not name the pack:\n{}\n{}",
        r.out(),
        r.stderr
    );
}

#[test]
fn unreadable_source_entries_give_exit_3_and_a_saved_snapshot() {
    let ws = Workspace::new();
    let src = ws.path("src");
    write(&src.join("ok.txt"), b"readable\n");
    write(&src.join("secret.txt"), b"unreadable\n");
    write(
        &src.join("locked/inside.txt"),
        b"in a dir nobody may list\n",
    );
    chmod(&src.join("secret.txt"), 0o000);
    chmod(&src.join("locked"), 0o000);
    let repo = ws.init_repo("repo", &[]);
    // As root everything is readable; run the backup as "nobody" instead,
    // owning the repository and able to traverse to the source.
    let as_nobody = is_root();
    if as_nobody {
        std::os::unix::fs::chown(ws.dir.path(), Some(65534), Some(65534)).unwrap();
        chmod(ws.dir.path(), 0o755);
        chmod(&src, 0o755);
        let mut stack = vec![repo.path.clone()];
        while let Some(p) = stack.pop() {
            std::os::unix::fs::lchown(&p, Some(65534), Some(65534)).unwrap();
            if p.is_dir() {
                stack.extend(fs::read_dir(&p).unwrap().map(|e| e.unwrap().path()));
            }
        }
    }
    let mut c = repo.cmd(&[OsStr::new("backup"), src.as_os_str()]);
    if as_nobody {
        // The build directory may be closed to other users (a checkout in
        // a 0700 directory): run a copy of the binary from the workspace.
        let bin = ws.dir.path().join("cairn");
        support::copy_binary(&bin);
        c = cairn_cmd_with(&bin);
        c.arg("-r")
            .arg(&repo.path)
            .args([OsStr::new("backup"), src.as_os_str()])
            .uid(65534)
            .gid(65534);
    }
    let r = run(c);
    assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    assert_eq!(r.code, Some(3), "stdout: {}\nstderr: {}", r.out(), r.stderr);
    assert!(r.stderr.contains("secret.txt"), "{}", r.stderr);
    assert!(r.stderr.contains("locked"), "{}", r.stderr);
    // The snapshot was saved with what could be read.
    let snaps = repo.snapshots();
    assert_eq!(snaps.len(), 1);
    assert_eq!(
        snaps[0]["summary"]["errors"].as_u64(),
        Some(2),
        "{}",
        snaps[0]
    );
    let target = ws.path("target");
    repo.restore("latest", &target, &[]).ok();
    let out = restored(&target, &src);
    assert_eq!(fs::read(out.join("ok.txt")).unwrap(), b"readable\n");
    assert!(!out.join("secret.txt").exists());
    assert!(!out.join("locked/inside.txt").exists());
    // Let the temporary directory be removed.
    chmod(&src.join("locked"), 0o755);
}
