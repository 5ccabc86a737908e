//! The library's commands end to end on every backend that needs no server:
//! backup, restore (bit for bit), forget, prune and check, through the same
//! functions the CLI calls, on the in-memory backend and on a local folder.
//! A backend that keeps the contract in `cairn::backend` must pass these
//! unchanged.

use cairn::backend::{Backend, FileKind, Handle, LocalBackend, MemoryBackend};
use cairn::commands::backup::{BackupOptions, StdinSource};
use cairn::commands::check::{CheckOptions, Subset};
use cairn::commands::forget::ForgetOptions;
use cairn::commands::progress::NoProgress;
use cairn::commands::prune::PruneOptions;
use cairn::commands::restore::RestoreOptions;
use cairn::commands::retention::Policy;
use cairn::commands::select::SnapshotSelector;
use cairn::commands::{backup, check, forget, prune, restore};
use cairn::repository::{Connection, InitOptions, Repository};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

const PASSWORD: &[u8] = b"library backends";

fn small_init() -> InitOptions {
    InitOptions {
        chunker: cairn::commands::init::ChunkerParams {
            min_size: 4096,
            avg_size: 16384,
            max_size: 65536,
        },
        pack_size: 1 << 20,
        kdf: cairn::commands::init::KdfParams {
            memory_kib: 64,
            iterations: 1,
            parallelism: 1,
        },
        ..Default::default()
    }
}

fn bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// Every regular file under `root` by relative path, with its bytes.
fn contents(root: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, Vec<u8>>) {
        for e in fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                walk(root, &p, out);
            } else if t.is_file() {
                out.insert(p.strip_prefix(root).unwrap().into(), fs::read(&p).unwrap());
            }
        }
    }
    let mut m = BTreeMap::new();
    walk(root, root, &mut m);
    m
}

fn opts(paths: &[&Path]) -> BackupOptions {
    BackupOptions {
        paths: paths.iter().map(|p| p.to_path_buf()).collect(),
        ..Default::default()
    }
}

fn restore_to(repo: &Repository, id: &str, target: &Path) {
    let r = restore::restore(
        repo,
        &SnapshotSelector::id(id),
        &RestoreOptions {
            target: target.to_path_buf(),
            verify: true,
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    assert!(r.stats.errors.is_empty(), "{:?}", r.stats.errors);
}

fn read_all_data(repo: &Repository) {
    let report = check::check(
        repo,
        &CheckOptions {
            read_data: Some(Subset::All),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(report.ok(), "{:?}", report.errors);
}

/// Backup, change, backup, restore both bit for bit, forget the first,
/// prune, check everything, restore the second again.
fn lifecycle(backend: Arc<dyn Backend>) {
    let work = tempfile::tempdir().unwrap();
    let src = work.path().join("src");
    fs::create_dir_all(src.join("sub/deeper")).unwrap();
    fs::write(src.join("big.bin"), bytes(1, 700_000)).unwrap();
    fs::write(src.join("sub/small.txt"), b"hello").unwrap();
    fs::write(src.join("sub/deeper/empty"), b"").unwrap();
    let first_content = contents(&src);

    Connection::new(backend.clone())
        .init(PASSWORD, &small_init())
        .unwrap();
    assert!(matches!(
        Connection::new(backend.clone()).open(b"wrong", Default::default()),
        Err(cairn::Error::WrongPassword)
    ));
    let repo = Connection::new(backend.clone())
        .open(PASSWORD, Default::default())
        .unwrap();
    let first = backup::backup(&repo, &opts(&[&src]), &NoProgress).unwrap();
    assert!(first.is_complete());

    fs::write(src.join("big.bin"), bytes(2, 900_000)).unwrap();
    fs::write(src.join("sub/new.txt"), b"new file").unwrap();
    let second_content = contents(&src);
    let second = backup::backup(&repo, &opts(&[&src]), &NoProgress).unwrap();
    assert_eq!(second.snapshot.parent, Some(first.snapshot_id));

    for (snap, expect) in [(&first, &first_content), (&second, &second_content)] {
        let target = work.path().join(format!("r-{}", snap.snapshot_id.short()));
        restore_to(&repo, &snap.snapshot_id.to_hex(), &target);
        let restored = target.join(src.strip_prefix("/").unwrap());
        assert_eq!(&contents(&restored), expect);
    }
    read_all_data(&repo);

    let packs_before = backend.list(FileKind::Pack).unwrap().len();
    let f = forget::forget(
        &repo,
        &ForgetOptions {
            policy: Policy {
                last: 1,
                ..Default::default()
            },
            prune: Some(PruneOptions {
                max_unused: 0.0,
                instant_delete: true,
                ..Default::default()
            }),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(f.removed, vec![first.snapshot_id]);
    let pruned = f.prune.expect("prune ran");
    assert!(pruned.bytes_freed() > 0, "{pruned:?}");
    assert!(backend.list(FileKind::Pack).unwrap().len() <= packs_before);
    assert_eq!(repo.snapshot_ids().unwrap(), vec![second.snapshot_id]);
    read_all_data(&repo);
    let target = work.path().join("after-prune");
    restore_to(&repo, "latest", &target);
    assert_eq!(
        contents(&target.join(src.strip_prefix("/").unwrap())),
        second_content
    );
    // Nothing left to do on a second prune.
    let again = prune::prune(&repo, &PruneOptions::default()).unwrap();
    assert_eq!((again.packs_deleted, again.packs_repacked), (0, 0));
    assert!(
        backend.list(FileKind::Lock).unwrap().is_empty(),
        "locks left"
    );
}

#[test]
fn lifecycle_in_memory() {
    lifecycle(Arc::new(MemoryBackend::new()));
}

#[test]
fn lifecycle_in_a_local_folder() {
    let t = tempfile::tempdir().unwrap();
    lifecycle(Arc::new(LocalBackend::new(t.path().join("repo"))));
}

/// A stream (standard input's stand-in: a command) becomes a file of the
/// snapshot, in memory too.
#[test]
fn command_stream_in_memory() {
    let backend = Arc::new(MemoryBackend::new());
    let repo = Connection::new(backend)
        .init(PASSWORD, &small_init())
        .unwrap();
    let r = backup::backup(
        &repo,
        &BackupOptions {
            streams: vec![StdinSource {
                filename: "dump.sql".into(),
                command: Some(vec!["printf".into(), "a\\nb\\n".into()]),
            }],
            ..Default::default()
        },
        &NoProgress,
    )
    .unwrap();
    let mut out = Vec::new();
    cairn::commands::dump::dump(
        &repo,
        &SnapshotSelector::id(&r.snapshot_id.to_hex()),
        Path::new("/dump.sql"),
        &mut out,
    )
    .unwrap();
    assert_eq!(out, b"a\nb\n");
}

/// Damage to a pack in memory is found by `check --read-data`.
#[test]
fn damage_in_memory_is_found() {
    let work = tempfile::tempdir().unwrap();
    fs::write(work.path().join("f"), bytes(3, 50_000)).unwrap();
    let backend = MemoryBackend::new();
    let repo = Connection::new(Arc::new(backend.clone()))
        .init(PASSWORD, &small_init())
        .unwrap();
    backup::backup(&repo, &opts(&[work.path()]), &NoProgress).unwrap();
    let (pack, _) = backend
        .list(FileKind::Pack)
        .unwrap()
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let h = Handle::new(FileKind::Pack, pack);
    let mut b = backend.read(h).unwrap();
    b[10] ^= 1;
    backend.corrupt(h, b);
    let report = check::check(
        &repo,
        &CheckOptions {
            read_data: Some(Subset::All),
            ..Default::default()
        },
    )
    .unwrap();
    assert!(!report.ok());
    assert!(
        report
            .errors
            .iter()
            .any(|e| e.to_string().contains(&h.rel_path())),
        "{:?}",
        report.errors
    );
}

mod support;

/// The same lifecycle on a real S3 server, when one is running.
#[test]
fn lifecycle_on_s3() {
    let Some(server) = support::s3_server("lifecycle_on_s3") else {
        return;
    };
    let opts = cairn::backend::s3::S3Options::from_env(&[]).unwrap();
    let loc = cairn::backend::s3::S3Location::parse(
        &format!(
            "{}/{}/repo",
            server.endpoint,
            server.unique_bucket("lifecycle")
        ),
        &opts.region,
    )
    .unwrap();
    lifecycle(Arc::new(cairn::backend::S3Backend::new(loc, opts).unwrap()));
}
