//! PostgreSQL WAL archiving: `wal push` (PostgreSQL's `archive_command`),
//! `wal fetch` (its `restore_command`), `wal list`, and what `forget` and
//! `check` do with archived WAL.
//!
//! PostgreSQL's contract decides the shape. `push` exits 0 only when the
//! file and its record are durable; a second push of a name already
//! archived succeeds if the content is identical and fails loudly if not
//! (two clusters, or a misconfigured archive, writing into one place).
//! `fetch` of a name not archived is the normal end of recovery and says
//! nothing; any other failure must not look like "not archived", or
//! PostgreSQL would end recovery early at the wrong point (the CLI gives
//! it exit code 126 so recovery stops instead).
//!
//! A push does not load the index: WAL is stored without deduplicating
//! against the repository (segments rarely repeat), its packs are named in
//! the record, and `fetch` reads them without loading the index either;
//! only if a pack has moved since (prune) does it load the index.

pub use crate::format::wal::{format_lsn, parse_lsn};

use crate::error::{Error, IoContext, Result};
use crate::format::blob::BlobType;
use crate::format::id::Id;
use crate::format::snapshot::PostgresRecord;
use crate::format::wal::{
    MAX_FILE_SIZE, WalFile, WalName, parse_history, segment_header, segment_name, segment_number,
    valid_segment_size,
};
use crate::repository::index::Index;
use crate::repository::packer::Packer;
use crate::repository::{Locate, Repository};
use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::{Path, PathBuf};

/// How to find the cluster a WAL file belongs to.
#[derive(Clone, Debug, Default)]
pub struct ClusterOptions {
    /// The system identifier, if given.
    pub system_id: Option<u64>,
    /// The data directory (default: the working directory, which is where
    /// PostgreSQL runs `archive_command` and `restore_command`).
    pub pgdata: Option<PathBuf>,
}

impl ClusterOptions {
    /// The system identifier from `global/pg_control` of the data directory.
    fn control_file_system_id(&self) -> Result<Option<u64>> {
        let dir = self.pgdata.clone().unwrap_or_else(|| PathBuf::from("."));
        let p = dir.join("global/pg_control");
        match std::fs::File::open(&p) {
            Ok(mut f) => {
                let mut b = [0u8; 8];
                std::io::Read::read_exact(&mut f, &mut b).at(&p)?;
                Ok(Some(u64::from_le_bytes(b)))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && self.pgdata.is_none() => Ok(None),
            Err(e) => Err(Error::io(&p, e)),
        }
    }

    /// The cluster's system identifier: as given, else from the data
    /// directory's control file, else from `header` (a segment's own).
    pub fn system_id(&self, header: Option<u64>) -> Result<u64> {
        let id = match self.system_id {
            Some(id) => id,
            None => match self.control_file_system_id()?.or(header) {
                Some(id) => id,
                None => {
                    return Err(Error::InvalidInput(
                        "cannot tell which cluster this is: run in the data directory (as PostgreSQL does), or give --pgdata DIR or --system-id N".into(),
                    ));
                }
            },
        };
        if let Some(h) = header
            && h != id
        {
            return Err(Error::InvalidInput(format!(
                "the segment belongs to the cluster with system identifier {h}, not {id}: refusing to archive it under the wrong cluster"
            )));
        }
        Ok(id)
    }
}

/// What a push did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushOutcome {
    /// Stored now.
    Stored {
        /// Bytes the packs occupy (compressed and encrypted).
        stored_bytes: u64,
    },
    /// An identical file of that name was archived already.
    AlreadyArchived,
}

/// Outcome of [`push`].
#[derive(Clone, Debug)]
pub struct PushReport {
    /// File name.
    pub name: String,
    /// Cluster.
    pub system_id: u64,
    /// Length.
    pub size: u64,
    /// What happened.
    pub outcome: PushOutcome,
}

/// Archives the WAL file at `path` (`archive_command = 'cairn ... wal push %p'`).
pub fn push<S>(repo: &Repository<S>, path: &Path, cluster: &ClusterOptions) -> Result<PushReport> {
    let name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| WalName::parse(n).is_some())
        .ok_or_else(|| {
            Error::InvalidInput(format!(
                "{}: not a PostgreSQL WAL file name (segment, .partial, .history or .backup)",
                path.display()
            ))
        })?
        .to_string();
    let wal_name = WalName::parse(&name).expect("checked above");
    let md = std::fs::metadata(path).at(path)?;
    if !md.is_file() || md.len() > MAX_FILE_SIZE {
        return Err(Error::InvalidInput(format!(
            "{}: not a regular file of at most 1 GiB",
            path.display()
        )));
    }
    let bytes = std::fs::read(path).at(path)?;
    let header = match wal_name {
        WalName::Segment { .. } => {
            let h = segment_header(&bytes).ok_or_else(|| {
                Error::InvalidInput(format!(
                    "{}: does not start with a WAL segment header",
                    path.display()
                ))
            })?;
            if bytes.len() as u64 != u64::from(h.segment_size) {
                return Err(Error::InvalidInput(format!(
                    "{}: {} bytes, but its header says segments are {} bytes",
                    path.display(),
                    bytes.len(),
                    h.segment_size
                )));
            }
            Some(h)
        }
        WalName::Partial { .. } => segment_header(&bytes),
        _ => None,
    };
    let system_id = cluster.system_id(header.map(|h| h.system_id))?;
    let hash = *blake3::hash(&bytes).as_bytes();
    let report = |outcome| PushReport {
        name: name.clone(),
        system_id,
        size: bytes.len() as u64,
        outcome,
    };
    let same = |w: &WalFile| w.size == bytes.len() as u64 && w.hash == hash;
    let differs = |w: &WalFile| {
        Error::InvalidInput(format!(
            "{name} is archived already with different content ({} bytes archived {}, {} bytes now): refusing to overwrite it; is another cluster archiving into this repository?",
            w.size,
            chrono::DateTime::from_timestamp(w.archived, 0)
                .map_or_else(String::new, |t| t.to_rfc3339()),
            bytes.len()
        ))
    };
    if let Some(w) = repo.find_wal_record(system_id, &name)? {
        return if same(&w) {
            Ok(report(PushOutcome::AlreadyArchived))
        } else {
            Err(differs(&w))
        };
    }
    let (content, packs, stored_bytes) = store_content(repo, &bytes)?;
    let record = WalFile {
        system_id,
        name: name.clone(),
        size: bytes.len() as u64,
        hash,
        segment_size: header.map_or(0, |h| h.segment_size),
        content,
        packs,
        archived: chrono::Utc::now().timestamp(),
        hostname: crate::sys::hostname(),
    };
    match repo.save_wal_record(&record) {
        Ok(_) => Ok(report(PushOutcome::Stored { stored_bytes })),
        // Another push of the same name won the race.
        Err(Error::AlreadyExists(_)) => match repo.find_wal_record(system_id, &name)? {
            Some(w) if same(&w) => Ok(report(PushOutcome::AlreadyArchived)),
            Some(w) => Err(differs(&w)),
            None => Err(Error::InvalidInput(format!(
                "{name}: the record exists and vanished again; retry"
            ))),
        },
        Err(e) => Err(e),
    }
}

/// The WAL records of `clusters` in `source` that `dest` lacks (by
/// cluster and name), oldest name first.
pub fn missing_in<S, T>(
    source: &Repository<S>,
    dest: &Repository<T>,
    clusters: &std::collections::HashSet<u64>,
) -> Result<Vec<WalFile>> {
    if clusters.is_empty() {
        return Ok(Vec::new());
    }
    let src = source.load_wal_records()?;
    if let Some((id, e)) = src.unreadable.first() {
        return Err(Error::corrupt(format!("wal/{}", id.to_hex()), e.clone()));
    }
    let have: std::collections::HashSet<(u64, String)> = dest
        .load_wal_records()?
        .records
        .into_iter()
        .map(|(_, w)| (w.system_id, w.name))
        .collect();
    Ok(src
        .records
        .into_iter()
        .map(|(_, w)| w)
        .filter(|w| {
            clusters.contains(&w.system_id) && !have.contains(&(w.system_id, w.name.clone()))
        })
        .collect())
}

/// Copies WAL records (content read and verified from `source`, stored in
/// `dest` as a push would, keeping the archive time and host).
pub fn copy_records<S, T>(
    source: &Repository<S>,
    dest: &Repository<T>,
    records: &[WalFile],
) -> Result<()> {
    for w in records {
        let bytes = read_content(source, w)?;
        let (content, packs, _) = store_content(dest, &bytes)?;
        let copy = WalFile {
            content,
            packs,
            ..w.clone()
        };
        match dest.save_wal_record(&copy) {
            Ok(_) => {}
            Err(Error::AlreadyExists(_)) => match dest.find_wal_record(w.system_id, &w.name)? {
                Some(d) if d.hash == w.hash && d.size == w.size => {}
                _ => {
                    return Err(Error::InvalidInput(format!(
                        "{} is archived in the destination with different content",
                        w.name
                    )));
                }
            },
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Chunks and stores `bytes` as data blobs in packs of their own, without
/// deduplicating against the repository; returns the blob ids, the packs
/// (durable, with their index files) and the bytes they occupy.
fn store_content<S>(
    repo: &Repository<S>,
    bytes: &[u8],
) -> Result<(Vec<Id>, Vec<crate::format::index::IndexPack>, u64)> {
    let empty = repo.without_index().with_index(Index::new());
    let packer = Packer::new(&empty);
    let chunker = repo.chunker();
    let mut content = Vec::new();
    let mut pos = 0;
    while pos < bytes.len() {
        let n = chunker.next_cut(&bytes[pos..]);
        let chunk = &bytes[pos..pos + n];
        let id = repo.key().blob_id(chunk);
        packer.save_with_id(BlobType::Data, id, chunk)?;
        content.push(id);
        pos += n;
    }
    let packs = packer.finish()?;
    let stored = packer
        .stats
        .stored_bytes
        .load(std::sync::atomic::Ordering::Relaxed);
    Ok((content, packs, stored))
}

/// Outcome of [`fetch`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FetchOutcome {
    /// Written to the destination.
    Restored {
        /// Length.
        size: u64,
    },
    /// Not archived (normal at the end of recovery).
    NotArchived,
}

/// Restores WAL file `name` to `dest` (`restore_command = 'cairn ... wal
/// fetch %f %p'`), verifying it against its record's hash.
pub fn fetch<S>(
    repo: &Repository<S>,
    name: &str,
    dest: &Path,
    cluster: &ClusterOptions,
) -> Result<FetchOutcome> {
    if WalName::parse(name).is_none() {
        return Ok(FetchOutcome::NotArchived);
    }
    let system_id = cluster.system_id(None)?;
    let Some(record) = repo.find_wal_record(system_id, name)? else {
        return Ok(FetchOutcome::NotArchived);
    };
    let bytes = read_content(repo, &record)?;
    write_atomically(dest, &bytes)?;
    Ok(FetchOutcome::Restored {
        size: bytes.len() as u64,
    })
}

/// A WAL file's content, verified: read through the packs its record names,
/// or through the index if they have moved.
pub fn read_content<S>(repo: &Repository<S>, record: &WalFile) -> Result<Vec<u8>> {
    let mut hinted = Index::new();
    for p in &record.packs {
        hinted.add_pack(p.id, &p.blobs);
    }
    let quick = repo.without_index().with_index(hinted);
    match assemble(&quick, record) {
        Ok(b) => Ok(b),
        Err(_) => assemble(&repo.with_full_index()?, record),
    }
}

/// Reads the blobs of `record` and checks length and hash.
pub fn assemble<S: Locate>(repo: &Repository<S>, record: &WalFile) -> Result<Vec<u8>> {
    // Capacity from the record, but not more than a segment's worth up
    // front: the record may lie about its size until the hash says so.
    let mut out = Vec::with_capacity(record.size.min(64 << 20) as usize);
    for id in &record.content {
        out.extend_from_slice(&repo.read_blob(BlobType::Data, id)?);
        if out.len() as u64 > record.size {
            break;
        }
    }
    if out.len() as u64 != record.size || *blake3::hash(&out).as_bytes() != record.hash {
        return Err(Error::corrupt(
            format!("WAL file {}", record.name),
            "content does not match its record (damaged)",
        ));
    }
    Ok(out)
}

/// Writes `bytes` to `dest` through a temporary file in the same folder,
/// so `dest` never holds a partial file.
fn write_atomically(dest: &Path, bytes: &[u8]) -> Result<()> {
    let dir = match dest.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let mut tmp = tempfile::Builder::new()
        .prefix(".cairn-wal-")
        .tempfile_in(&dir)
        .at(&dir)?;
    tmp.write_all(bytes).at(tmp.path())?;
    tmp.persist(dest).map_err(|e| Error::io(dest, e.error))?;
    Ok(())
}

/// One archived WAL file, for listings.
#[derive(Clone, Debug)]
pub struct WalEntry {
    /// The record's id (its file name under `wal/`).
    pub id: String,
    /// Cluster.
    pub system_id: u64,
    /// File name.
    pub name: String,
    /// Length.
    pub size: u64,
    /// When it was archived, Unix seconds.
    pub archived: i64,
    /// Host that archived it.
    pub hostname: String,
}

/// Every archived WAL file, by cluster and name, and the records that
/// could not be read.
pub fn list<S>(repo: &Repository<S>) -> Result<(Vec<WalEntry>, Vec<String>)> {
    let all = repo.load_wal_records()?;
    let entries = all
        .records
        .into_iter()
        .map(|(id, w)| WalEntry {
            id: id.to_hex(),
            system_id: w.system_id,
            name: w.name,
            size: w.size,
            archived: w.archived,
            hostname: w.hostname,
        })
        .collect();
    let bad = all
        .unreadable
        .into_iter()
        .map(|(id, e)| format!("wal/{}: {e}", id.to_hex()))
        .collect();
    Ok((entries, bad))
}

/// The WAL records no kept base backup needs: per cluster, segments (and
/// partial segments and backup history files) before the start of the
/// oldest kept base backup. A cluster without any kept base backup keeps
/// all its WAL (a base backup may be under way); history files are always
/// kept (they are tiny and every later timeline needs them).
pub fn expired(records: &[(Id, WalFile)], kept: &[&PostgresRecord]) -> Vec<(Id, String)> {
    let mut oldest: HashMap<u64, (u64, u32)> = HashMap::new();
    for b in kept {
        if !valid_segment_size(b.segment_size) {
            continue;
        }
        let segno = b.start_lsn / u64::from(b.segment_size);
        let e = oldest.entry(b.system_id).or_insert((segno, b.segment_size));
        e.0 = e.0.min(segno);
    }
    records
        .iter()
        .filter(|(_, w)| {
            let Some(&(first, size)) = oldest.get(&w.system_id) else {
                return false;
            };
            match w.wal_name().and_then(|n| n.position()) {
                Some((log, seg)) => segment_number(log, seg, size) < first,
                None => false,
            }
        })
        .map(|(id, w)| (*id, w.name.clone()))
        .collect()
}

/// Gaps reported per base backup at most.
pub const MAX_GAPS: usize = 100;

/// A gap in the WAL one base backup needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WalGap {
    /// Cluster.
    pub system_id: u64,
    /// First missing segment.
    pub first: String,
    /// Last missing segment (the same as `first` for one).
    pub last: String,
    /// Nothing at all is archived for the cluster (`first` is the first
    /// segment the backup needs).
    pub none_archived: bool,
}

/// The newest archived segment of a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewestSegment {
    /// Cluster.
    pub system_id: u64,
    /// Its name.
    pub name: String,
    /// When it was archived, Unix seconds.
    pub archived: i64,
}

/// What `check` found about archived WAL.
#[derive(Clone, Debug, Default)]
pub struct WalContinuity {
    /// Segments a kept base backup needs for recovery to the newest
    /// archived segment, and that are missing (per base backup: snapshot
    /// id and its gaps).
    pub gaps: Vec<(Id, Vec<WalGap>)>,
    /// The newest segment of each cluster.
    pub newest: Vec<NewestSegment>,
    /// Records checked.
    pub records: usize,
}

/// Checks that every kept base backup can replay from its start to the
/// newest archived segment of its cluster, following timeline switches
/// (the newest timeline that descends from the backup's, as
/// `recovery_target_timeline = 'latest'` does). `history` returns the
/// content of a history file record.
pub fn continuity(
    records: &[(Id, WalFile)],
    backups: &[(Id, &PostgresRecord)],
    history: &dyn Fn(&WalFile) -> Option<Vec<u8>>,
) -> WalContinuity {
    let mut out = WalContinuity {
        records: records.len(),
        ..Default::default()
    };
    // Per cluster: segments by (timeline, segno), history by timeline.
    struct Cluster<'a> {
        segments: BTreeMap<(u32, u64), &'a WalFile>,
        histories: BTreeMap<u32, &'a WalFile>,
        size: u32,
    }
    let mut clusters: BTreeMap<u64, Cluster> = BTreeMap::new();
    for (_, w) in records {
        let c = clusters.entry(w.system_id).or_insert(Cluster {
            segments: BTreeMap::new(),
            histories: BTreeMap::new(),
            size: 0,
        });
        match w.wal_name() {
            Some(WalName::Segment { timeline, log, seg }) if valid_segment_size(w.segment_size) => {
                c.size = w.segment_size;
                c.segments
                    .insert((timeline, segment_number(log, seg, w.segment_size)), w);
            }
            Some(WalName::History { timeline }) => {
                c.histories.insert(timeline, w);
            }
            _ => {}
        }
    }
    for (sys, c) in &clusters {
        if let Some(w) = c
            .segments
            .values()
            .max_by_key(|w| (w.archived, w.name.clone()))
        {
            out.newest.push(NewestSegment {
                system_id: *sys,
                name: w.name.clone(),
                archived: w.archived,
            });
        }
    }
    for (snap, b) in backups {
        let Some(c) = clusters.get(&b.system_id) else {
            // Nothing archived at all for this cluster: everything after the
            // backup's own WAL is missing, but there is no "newest" to name.
            out.gaps.push((
                *snap,
                vec![WalGap {
                    system_id: b.system_id,
                    first: segment_name(
                        b.timeline,
                        b.start_lsn / u64::from(b.segment_size.max(1)),
                        b.segment_size,
                    ),
                    last: String::new(),
                    none_archived: true,
                }],
            ));
            continue;
        };
        let size = if valid_segment_size(b.segment_size) {
            b.segment_size
        } else {
            c.size
        };
        if !valid_segment_size(size) {
            continue;
        }
        // The timeline path: (timeline, first segno on it).
        let mut path: Vec<(u32, u64)> = vec![(b.timeline, 0)];
        let descendants = c.histories.iter().rev().find_map(|(tli, w)| {
            let switches = parse_history(&String::from_utf8_lossy(&history(w)?));
            switches
                .iter()
                .any(|s| s.parent == b.timeline)
                .then_some((*tli, switches))
        });
        if let Some((target, switches)) = descendants {
            path.clear();
            let mut on = false;
            let mut prev_start = 0;
            for s in &switches {
                if s.parent == b.timeline {
                    on = true;
                }
                if on {
                    path.push((s.parent, prev_start));
                }
                prev_start = s.switch_lsn / u64::from(size);
            }
            path.push((target, prev_start));
        }
        let start = b.start_lsn / u64::from(size);
        let owner = |n: u64| {
            path.iter()
                .rev()
                .find(|(_, from)| *from <= n)
                .map_or(b.timeline, |(t, _)| *t)
        };
        // The segments present on the path, in order; gaps lie between
        // them (work follows the records, not the numbers they name).
        let mut present: Vec<u64> = c
            .segments
            .keys()
            .filter(|(t, n)| *n >= start && owner(*n) == *t)
            .map(|(_, n)| *n)
            .collect();
        present.sort_unstable();
        present.dedup();
        let gap = |first: u64, last: u64| WalGap {
            system_id: b.system_id,
            first: segment_name(owner(first), first, size),
            last: segment_name(owner(last), last, size),
            none_archived: false,
        };
        let mut gaps = Vec::new();
        if present.is_empty() {
            gaps.push(gap(start, start));
        }
        let mut expected = start;
        for n in present {
            if n > expected && gaps.len() < MAX_GAPS {
                gaps.push(gap(expected, n - 1));
            }
            expected = n.saturating_add(1);
        }
        if !gaps.is_empty() {
            out.gaps.push((*snap, gaps));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const SZ: u32 = 16 << 20;

    fn rec(sys: u64, name: &str, archived: i64) -> (Id, WalFile) {
        (
            Id(*blake3::hash(name.as_bytes()).as_bytes()),
            WalFile {
                system_id: sys,
                name: name.into(),
                size: 1,
                hash: [0; 32],
                segment_size: if name.len() == 24 { SZ } else { 0 },
                content: vec![Id::default()],
                packs: vec![],
                archived,
                hostname: "h".into(),
            },
        )
    }

    fn backup(sys: u64, tli: u32, start_seg: u64) -> PostgresRecord {
        PostgresRecord {
            system_id: sys,
            server_version: "15".into(),
            timeline: tli,
            stop_timeline: tli,
            start_lsn: start_seg * u64::from(SZ) + 40,
            stop_lsn: start_seg * u64::from(SZ) + 400,
            segment_size: SZ,
            started: 0,
            stopped: 0,
            xmin: 0,
            data_directory: "/d".into(),
        }
    }

    #[test]
    fn expiry_keeps_what_the_oldest_kept_backup_needs() {
        let records: Vec<_> = (1..=6)
            .map(|i| rec(1, &segment_name(1, i, SZ), i as i64))
            .chain([
                rec(1, "00000002.history", 0),
                rec(2, &segment_name(1, 1, SZ), 0),
            ])
            .collect();
        let b = backup(1, 1, 4);
        let gone: Vec<String> = expired(&records, &[&b]).into_iter().map(|x| x.1).collect();
        assert_eq!(
            gone,
            [1, 2, 3].map(|i| segment_name(1, i, SZ)).to_vec(),
            "cluster 2 has no kept backup: all of its WAL stays"
        );
        assert!(expired(&records, &[]).is_empty());
    }

    #[test]
    fn a_segment_number_far_away_costs_no_time() {
        // A record naming segment 2^38 (damaged or hostile): the gap is
        // reported without walking the numbers in between.
        let far = segment_name(1, 1 << 38, SZ);
        let records = vec![rec(1, &segment_name(1, 3, SZ), 1), rec(1, &far, 2)];
        let b = backup(1, 1, 3);
        let c = continuity(&records, &[(Id([1; 32]), &b)], &|_| None);
        assert_eq!(c.gaps[0].1.len(), 1);
        assert_eq!(c.gaps[0].1[0].last, segment_name(1, (1 << 38) - 1, SZ));
    }

    #[test]
    fn gaps_are_found_along_the_timeline_path() {
        let mut records: Vec<_> = [3, 4, 6, 7]
            .iter()
            .map(|&i| rec(1, &segment_name(1, i, SZ), i as i64))
            .collect();
        let b = backup(1, 1, 3);
        let c = continuity(&records, &[(Id([1; 32]), &b)], &|_| None);
        assert_eq!(c.gaps.len(), 1);
        assert_eq!(
            c.gaps[0].1,
            vec![WalGap {
                system_id: 1,
                first: segment_name(1, 5, SZ),
                last: segment_name(1, 5, SZ),
                none_archived: false,
            }]
        );
        assert_eq!(c.newest[0].name, segment_name(1, 7, SZ));
        // Timeline 2 branched at segment 5: 5.. on timeline 2 fill the gap.
        records.extend([5, 6].map(|i| rec(1, &segment_name(2, i, SZ), 10 + i as i64)));
        records.push(rec(1, "00000002.history", 0));
        let c = continuity(&records, &[(Id([1; 32]), &b)], &|_| {
            Some(format!("1\t0/{:X}\tpromoted\n", 5 * u64::from(SZ) + 100).into_bytes())
        });
        assert!(c.gaps.is_empty(), "{:?}", c.gaps);
    }
}
