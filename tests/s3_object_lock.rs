//! Ransomware resistance on a real S3 server (Ceph RGW, `.ci/rgw.sh`):
//! backup-only credentials (a bucket policy that denies deletion), an
//! attacker who holds them and deletes and overwrites objects with boto3,
//! Object Lock retention that prune honours and extends, and space that
//! comes back once retention ends.
//!
//! Skipped without a server, except under `CAIRN_TEST_REQUIRE_S3=1` (CI).

mod support;

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;
use support::*;

/// The boto3 side of the tests: bucket policies, and what an attacker
/// does. Reads a JSON request on argv[1], prints a JSON answer.
const BOTO: &str = r#"
import json, os, sys
import boto3
from botocore.exceptions import ClientError
req = json.loads(sys.argv[1])
s3 = boto3.client("s3", endpoint_url=os.environ["CAIRN_TEST_S3_ENDPOINT"],
                  aws_access_key_id=req["key"], aws_secret_access_key=req["secret"],
                  region_name="us-east-1")
bucket, prefix = req["bucket"], req.get("prefix", "")
def keys():
    out = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        out += [o["Key"] for o in page.get("Contents", [])]
    return out
def code(f):
    try:
        f()
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]
op = req["op"]
if op == "policy":
    s3.put_bucket_policy(Bucket=bucket, Policy=json.dumps(req["policy"]))
    print(json.dumps({}))
elif op == "attack":
    # Everything an attacker holding these credentials can try on every
    # object: delete it, delete its version, overwrite it.
    got = {}
    for k in keys():
        v = s3.head_object(Bucket=bucket, Key=k).get("VersionId")
        for what, f in [
            ("delete", lambda: s3.delete_object(Bucket=bucket, Key=k)),
            ("delete_version", lambda: s3.delete_object(Bucket=bucket, Key=k, VersionId=v)),
            ("overwrite", lambda: s3.put_object(Bucket=bucket, Key=k, Body=b"encrypted by ransomware")),
        ]:
            c = code(f)
            got.setdefault(what, {}).setdefault(c, 0)
            got[what][c] += 1
    print(json.dumps(got))
elif op == "versions":
    out = []
    for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket, Prefix=prefix):
        out += [{"key": v["Key"], "latest": v["IsLatest"]} for v in page.get("Versions", [])]
    print(json.dumps(out))
elif op == "retention":
    h = s3.head_object(Bucket=bucket, Key=req["object"])
    until = h.get("ObjectLockRetainUntilDate")
    print(json.dumps({"mode": h.get("ObjectLockMode"), "until": until.timestamp() if until else None}))
"#;

struct Creds {
    key: String,
    secret: String,
}

fn owner() -> Creds {
    Creds {
        key: std::env::var("AWS_ACCESS_KEY_ID").unwrap(),
        secret: std::env::var("AWS_SECRET_ACCESS_KEY").unwrap(),
    }
}

/// The second S3 user, which the tests give backup-only rights.
fn backup_only() -> Creds {
    Creds {
        key: std::env::var("CAIRN_TEST_S3_USER2_KEY").expect("CAIRN_TEST_S3_USER2_KEY"),
        secret: std::env::var("CAIRN_TEST_S3_USER2_SECRET").expect("CAIRN_TEST_S3_USER2_SECRET"),
    }
}

fn boto(creds: &Creds, bucket: &str, op: &str, mut req: serde_json::Value) -> serde_json::Value {
    req["op"] = op.into();
    req["key"] = creds.key.clone().into();
    req["secret"] = creds.secret.clone().into();
    req["bucket"] = bucket.into();
    let out = Command::new("python3")
        .arg("-c")
        .arg(BOTO)
        .arg(req.to_string())
        .output()
        .expect("python3");
    assert!(
        out.status.success(),
        "boto3 {op} failed (pip install boto3?): {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A repository in its own bucket, run as either user.
struct Locked {
    bucket: String,
    location: String,
    cache: tempfile::TempDir,
}

impl Locked {
    fn new(server: &S3Server, tag: &str) -> Locked {
        let bucket = server.unique_bucket(tag);
        Locked {
            location: format!("s3:{}/{bucket}/repo", server.endpoint),
            bucket,
            cache: tempfile::tempdir().unwrap(),
        }
    }

    fn cmd<S: AsRef<OsStr>>(&self, creds: &Creds, args: &[S]) -> Command {
        let mut c = cairn_cmd();
        c.env("AWS_ACCESS_KEY_ID", &creds.key)
            .env("AWS_SECRET_ACCESS_KEY", &creds.secret)
            .env("XDG_CACHE_HOME", self.cache.path())
            .arg("-r")
            .arg(&self.location)
            .args(args);
        c
    }

    fn run<S: AsRef<OsStr>>(&self, creds: &Creds, args: &[S]) -> Run {
        run(self.cmd(creds, args))
    }

    /// `init` with a cheap key stretch and `extra` options.
    fn init(&self, creds: &Creds, extra: &[&str]) {
        let mut args = vec!["init", "--kdf-memory", "1024", "--kdf-iterations", "1"];
        args.extend_from_slice(extra);
        self.run(creds, &args).ok();
    }

    fn backup(&self, creds: &Creds, src: &Path) -> String {
        let r = self
            .run(creds, &["--json", "backup", src.to_str().unwrap()])
            .ok();
        last_json(&r.stdout)["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Restores `id` and compares it with `expected`, from an empty cache.
    fn restores(&self, ws: &Workspace, creds: &Creds, id: &str, src: &Path, expected: &Manifest) {
        let target = tempfile::tempdir_in(ws.path("")).unwrap();
        let cache = tempfile::tempdir().unwrap();
        let r = run({
            let mut c = self.cmd(
                creds,
                &["restore", id, "--target", target.path().to_str().unwrap()],
            );
            c.env("XDG_CACHE_HOME", cache.path());
            c
        });
        r.ok();
        let got = manifest(&restored(target.path(), src), ManifestOptions::default());
        assert_same(expected, &got, &format!("restore of {id}"));
    }

    fn prune(&self, creds: &Creds, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["--json", "prune"];
        a.extend_from_slice(args);
        last_json(&self.run(creds, &a).ok().stdout)
    }
}

/// Read, write and list, but not delete: what a machine that backs up gets.
fn backup_only_policy(bucket: &str) -> serde_json::Value {
    serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [
            {
                "Effect": "Allow",
                "Principal": {"AWS": ["arn:aws:iam:::user/cairn-test2"]},
                "Action": [
                    "s3:GetObject", "s3:GetObjectVersion", "s3:PutObject",
                    "s3:ListBucket", "s3:ListBucketVersions",
                    "s3:GetBucketObjectLockConfiguration", "s3:GetBucketVersioning",
                    "s3:GetObjectRetention"
                ],
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
            },
            {
                "Effect": "Deny",
                "Principal": {"AWS": ["arn:aws:iam:::user/cairn-test2"]},
                "Action": [
                    "s3:DeleteObject", "s3:DeleteObjectVersion", "s3:BypassGovernanceRetention",
                    "s3:PutObjectRetention", "s3:PutBucketPolicy", "s3:DeleteBucketPolicy",
                    "s3:PutBucketObjectLockConfiguration", "s3:PutBucketVersioning"
                ],
                "Resource": [format!("arn:aws:s3:::{bucket}"), format!("arn:aws:s3:::{bucket}/*")]
            }
        ]
    })
}

fn tree(ws: &Workspace, name: &str, seed: u64) -> std::path::PathBuf {
    let src = ws.path(name);
    for i in 0..4u64 {
        write(
            &src.join(format!("f{i}")),
            &random_bytes(seed * 10 + i, 300_000),
        );
    }
    write(
        &src.join("sub/small"),
        format!("small file {seed}\n").as_bytes(),
    );
    src
}

#[test]
fn backup_only_credentials_cannot_destroy_what_was_backed_up() {
    let Some(server) = s3_server("backup_only_credentials_cannot_destroy_what_was_backed_up")
    else {
        return;
    };
    let ws = Workspace::new();
    let (admin, machine) = (owner(), backup_only());
    let repo = Locked::new(&server, "backup-only");
    repo.init(
        &admin,
        &["--object-lock", "1d", "--object-lock-mode", "governance"],
    );
    boto(
        &admin,
        &repo.bucket,
        "policy",
        serde_json::json!({"policy": backup_only_policy(&repo.bucket)}),
    );

    // Everything on the backup path works with backup-only credentials:
    // backup (files and stdin), snapshots, ls, dump, restore, check, copy.
    let a = tree(&ws, "a", 1);
    let a_manifest = manifest(&a, ManifestOptions::default());
    let s1 = repo.backup(&machine, &a);
    write(&a.join("f0"), &random_bytes(99, 200_000));
    let a2_manifest = manifest(&a, ManifestOptions::default());
    let s2 = repo.backup(&machine, &a);
    let mut stdin = repo.cmd(
        &machine,
        &["--json", "backup", "--stdin", "--stdin-filename", "db.sql"],
    );
    let dump = random_bytes(7, 500_000);
    let out = {
        use std::io::Write;
        let mut child = stdin
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&dump).unwrap();
        child.wait_with_output().unwrap()
    };
    assert!(out.status.success());
    let s3 = last_json(&out.stdout)["snapshot_id"]
        .as_str()
        .unwrap()
        .to_string();
    let local = ws.init_repo("local", &[]);
    let l = tree(&ws, "l", 3);
    let l_manifest = manifest(&l, ManifestOptions::default());
    local.backup(&[&l], &[]);
    let mut copy = repo.cmd(
        &machine,
        &["copy", "--from-repo", local.path.to_str().unwrap()],
    );
    copy.env("CAIRN_FROM_PASSWORD", PASSWORD);
    run(copy).ok();
    let snaps = snapshots(&repo, &machine);
    assert_eq!(snaps.as_array().unwrap().len(), 4, "{snaps}");
    repo.run(&machine, &["ls", &s1]).ok();
    let out = repo.run(&machine, &["dump", &s3, "/db.sql"]).ok();
    assert!(out.stdout == dump, "dump differs");
    repo.run(&machine, &["check", "--read-data"]).ok();
    repo.restores(&ws, &machine, &s2, &a, &a2_manifest);

    // What deletes fails at once, with one line naming the permission, and
    // changes nothing (not even a lock file).
    for args in [
        vec!["forget", "--keep-last", "1"],
        vec!["prune"],
        vec!["unlock"],
        vec!["key", "remove", "0000"],
    ] {
        let line = repo.run(&machine, &args).fails(Some(13));
        assert!(
            line.contains("s3:DeleteObject") || line.contains("may not delete"),
            "{args:?}: {line}"
        );
        assert_eq!(line.trim().lines().count(), 1, "{line}");
    }
    let r = repo.run(&machine, &["forget", "--keep-last", "1", "--prune"]);
    assert_eq!(r.code, Some(13), "{r:?}");
    let locks = boto(
        &admin,
        &repo.bucket,
        "versions",
        serde_json::json!({"prefix": "repo/locks/"}),
    );
    assert!(
        locks.as_array().unwrap().is_empty(),
        "a lock file was written: {locks}"
    );
    let snaps = snapshots(&repo, &admin);
    assert_eq!(
        snaps.as_array().unwrap().len(),
        4,
        "forget changed something: {snaps}"
    );

    // The attacker holds the machine's credentials and goes around cairn:
    // deletes are refused, overwrites succeed (S3 cannot refuse them)...
    let got = boto(
        &machine,
        &repo.bucket,
        "attack",
        serde_json::json!({"prefix": "repo/"}),
    );
    assert!(
        got["delete"].get("ok").is_none(),
        "a delete went through: {got}"
    );
    assert!(
        got["delete_version"].get("ok").is_none(),
        "a delete went through: {got}"
    );
    assert!(got["overwrite"]["ok"].as_u64().unwrap() > 10, "{got}");
    // ...but the originals are kept as older versions under retention:
    // every snapshot still restores bit for bit, and check passes. (The
    // machine's credentials read them here: on this server an object
    // belongs to whoever wrote it last, and the attacker wrote them all.)
    repo.restores(&ws, &machine, &s1, &a, &a_manifest);
    repo.restores(&ws, &machine, &s2, &a, &a2_manifest);
    repo.restores(&ws, &machine, "latest", &l, &l_manifest);
    let r = repo.run(&machine, &["check", "--read-data"]);
    let r = r.ok();
    assert!(
        r.stderr.contains("original version"),
        "the overwrite is reported: {r:?}"
    );
}

#[test]
fn prune_honours_object_lock_and_space_returns_when_it_ends() {
    let Some(server) = s3_server("prune_honours_object_lock_and_space_returns_when_it_ends") else {
        return;
    };
    let ws = Workspace::new();
    let admin = owner();
    let repo = Locked::new(&server, "retention");
    let retention = 20u64;
    repo.init(&admin, &["--object-lock", &format!("{retention}s")]);
    let old = tree(&ws, "old", 5);
    let keep = tree(&ws, "keep", 6);
    let keep_manifest = manifest(&keep, ManifestOptions::default());
    let gone = repo.backup(&admin, &old);
    let kept = repo.backup(&admin, &keep);
    let written = std::time::Instant::now();
    repo.run(&admin, &["forget", &gone]).ok();
    let snaps = snapshots(&repo, &admin);
    assert_eq!(snaps.as_array().unwrap().len(), 1, "{snaps}");

    // Retained: prune marks and does not delete, even when told to at once.
    let r = repo.prune(&admin, &["--instant-delete"]);
    assert!(r["packs_retained"].as_u64().unwrap() >= 1, "{r}");
    assert_eq!(r["bytes_freed"], 0, "{r}");
    repo.run(&admin, &["check", "--read-data"]).ok();
    repo.restores(&ws, &admin, &kept, &keep, &keep_manifest);
    let hidden = boto(
        &admin,
        &repo.bucket,
        "versions",
        serde_json::json!({"prefix": format!("repo/snapshots/{gone}")}),
    );
    assert_eq!(
        hidden.as_array().unwrap().len(),
        1,
        "the forgotten snapshot's retained version stays: {hidden}"
    );

    // Once retention has ended, the next prune gives the space back and
    // deletes the retained versions of what was removed; it extends the
    // retention of what the kept snapshot needs.
    let wait = std::time::Duration::from_secs(retention + 3);
    if let Some(rest) = wait.checked_sub(written.elapsed()) {
        std::thread::sleep(rest);
    }
    let r = repo.prune(&admin, &["--instant-delete"]);
    assert!(r["packs_due_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["bytes_freed"].as_u64().unwrap() >= 1_000_000, "{r}");
    assert!(r["hidden_versions_deleted"].as_u64().unwrap() >= 1, "{r}");
    assert!(r["retention_extended"].as_u64().unwrap() >= 1, "{r}");
    let hidden = boto(
        &admin,
        &repo.bucket,
        "versions",
        serde_json::json!({"prefix": format!("repo/snapshots/{gone}")}),
    );
    assert!(hidden.as_array().unwrap().is_empty(), "{hidden}");
    let ret = boto(
        &admin,
        &repo.bucket,
        "retention",
        serde_json::json!({"object": format!("repo/snapshots/{kept}")}),
    );
    let until = ret["until"].as_f64().unwrap() as i64;
    assert!(
        until > chrono::Utc::now().timestamp() + (retention as i64) / 2,
        "the kept snapshot's retention was not extended: {ret}"
    );
    repo.run(&admin, &["check", "--read-data"]).ok();
    repo.restores(&ws, &admin, &kept, &keep, &keep_manifest);
}

/// Prune killed at many moments on S3 while backups run: nothing a
/// snapshot needs is lost. Any kill moment must be safe, so the moments
/// (spread over the run) decide nothing about the outcome.
#[test]
fn prune_killed_on_s3_while_backups_run_loses_nothing() {
    let Some(server) = s3_server("prune_killed_on_s3_while_backups_run_loses_nothing") else {
        return;
    };
    let ws = Workspace::new();
    let admin = owner();
    let repo = Locked::new(&server, "kills");
    repo.init(&admin, &[]);
    let mut kept: Vec<(String, std::path::PathBuf, Manifest)> = Vec::new();
    for round in 0..6u64 {
        let src = tree(&ws, &format!("r{round}"), 100 + round);
        let expected = manifest(&src, ManifestOptions::default());
        let mut backup = repo.cmd(&admin, &["--json", "-q", "backup", src.to_str().unwrap()]);
        let backup = backup.stdout(std::process::Stdio::piped()).spawn().unwrap();
        // Forget the snapshot of two rounds ago, then a prune that is killed.
        if round >= 2 {
            let old = kept[round as usize - 2].0.clone();
            repo.run(&admin, &["forget", &old]).ok();
        }
        let mut prune = repo.cmd(&admin, &["prune", "--delete-grace", "0s"]);
        let mut prune = prune
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(150 * round));
        let _ = prune.kill();
        let _ = prune.wait();
        let out = backup.wait_with_output().unwrap();
        assert!(out.status.success());
        let id = last_json(&out.stdout)["snapshot_id"]
            .as_str()
            .unwrap()
            .to_string();
        kept.push((id, src, expected));
        repo.run(&admin, &["check", "--read-data"]).ok();
    }
    repo.prune(&admin, &["--delete-grace", "0s"]);
    repo.prune(&admin, &["--delete-grace", "0s"]);
    repo.run(&admin, &["check", "--read-data"]).ok();
    let present = snapshots(&repo, &admin);
    let present: Vec<&str> = present
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["short_id"].as_str().or(s["id"].as_str()).unwrap())
        .collect();
    let mut n = 0;
    for (id, src, expected) in &kept {
        if present
            .iter()
            .any(|p| p.starts_with(id.as_str()) || id.starts_with(p))
        {
            repo.restores(&ws, &admin, id, src, expected);
            n += 1;
        }
    }
    assert!(n >= 2, "{present:?}");
}

fn snapshots(repo: &Locked, creds: &Creds) -> serde_json::Value {
    last_json(&repo.run(creds, &["--json", "snapshots"]).ok().stdout)
}
