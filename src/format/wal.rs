//! PostgreSQL write-ahead log files in a repository: their names, and the
//! sealed record (`wal/<id>`) that makes an archived file exist.
//!
//! A WAL file's content is stored as ordinary data blobs in packs; the
//! record lists them, with the packs they were written to (a hint that lets
//! `wal fetch` read a segment without loading the index), and a BLAKE3 hash
//! of the whole file so that a second push of the same name can be told
//! identical or different. A record is named by a keyed hash of the
//! cluster's system identifier and the file name, so `push` and `fetch` find
//! it without listing and the storage provider does not see WAL names.
//! Described in `format-spec/v1-postgres.md`.

use crate::error::{Error, Result};
use crate::format::crypto::MasterKey;
use crate::format::envelope;
use crate::format::id::Id;
use crate::format::index::IndexPack;
use serde::{Deserialize, Serialize};

/// Magic of a WAL record (format version 1).
pub const MAGIC: &[u8; 8] = b"CAIRNWL1";

/// Largest WAL file cairn archives: PostgreSQL's largest segment size (1 GiB).
pub const MAX_FILE_SIZE: u64 = 1 << 30;

/// Most blobs one record may list.
pub const MAX_BLOBS: usize = 1 << 20;

/// What kind of file PostgreSQL archived, parsed from its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WalName {
    /// `TTTTTTTTXXXXXXXXYYYYYYYY`: a segment of timeline `T`.
    Segment { timeline: u32, log: u32, seg: u32 },
    /// The same followed by `.partial`: the last, incomplete segment of a
    /// timeline that a promotion ended.
    Partial { timeline: u32, log: u32, seg: u32 },
    /// `TTTTTTTT.history`: how timeline `T` branched off its parents.
    History { timeline: u32 },
    /// `TTTTTTTTXXXXXXXXYYYYYYYY.OOOOOOOO.backup`: a backup history file.
    Backup {
        timeline: u32,
        log: u32,
        seg: u32,
        offset: u32,
    },
}

fn hex_u32(s: &str) -> Option<u32> {
    (s.len() == 8
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b)))
    .then(|| u32::from_str_radix(s, 16).ok())
    .flatten()
}

fn segment_parts(s: &str) -> Option<(u32, u32, u32)> {
    if s.len() != 24 || !s.is_ascii() {
        return None;
    }
    Some((hex_u32(&s[..8])?, hex_u32(&s[8..16])?, hex_u32(&s[16..])?))
}

impl WalName {
    /// Parses a file name as PostgreSQL writes it (upper-case hex), or
    /// `None` if it is no WAL file name.
    pub fn parse(name: &str) -> Option<WalName> {
        if let Some((timeline, log, seg)) = segment_parts(name) {
            return (timeline > 0).then_some(WalName::Segment { timeline, log, seg });
        }
        if let Some(stem) = name.strip_suffix(".partial") {
            let (timeline, log, seg) = segment_parts(stem)?;
            return (timeline > 0).then_some(WalName::Partial { timeline, log, seg });
        }
        if let Some(stem) = name.strip_suffix(".history") {
            let timeline = hex_u32(stem)?;
            return (timeline > 0).then_some(WalName::History { timeline });
        }
        if let Some(stem) = name.strip_suffix(".backup") {
            let (seg_name, offset) = stem.split_once('.')?;
            let (timeline, log, seg) = segment_parts(seg_name)?;
            let offset = hex_u32(offset)?;
            return (timeline > 0).then_some(WalName::Backup {
                timeline,
                log,
                seg,
                offset,
            });
        }
        None
    }

    /// The timeline the file belongs to.
    pub fn timeline(&self) -> u32 {
        match *self {
            WalName::Segment { timeline, .. }
            | WalName::Partial { timeline, .. }
            | WalName::History { timeline }
            | WalName::Backup { timeline, .. } => timeline,
        }
    }

    /// `(log, seg)` of a segment, partial segment or backup history file.
    pub fn position(&self) -> Option<(u32, u32)> {
        match *self {
            WalName::Segment { log, seg, .. }
            | WalName::Partial { log, seg, .. }
            | WalName::Backup { log, seg, .. } => Some((log, seg)),
            WalName::History { .. } => None,
        }
    }

    /// The file name.
    pub fn file_name(&self) -> String {
        match *self {
            WalName::Segment { timeline, log, seg } => format!("{timeline:08X}{log:08X}{seg:08X}"),
            WalName::Partial { timeline, log, seg } => {
                format!("{timeline:08X}{log:08X}{seg:08X}.partial")
            }
            WalName::History { timeline } => format!("{timeline:08X}.history"),
            WalName::Backup {
                timeline,
                log,
                seg,
                offset,
            } => format!("{timeline:08X}{log:08X}{seg:08X}.{offset:08X}.backup"),
        }
    }
}

/// Segments per "log" number for a segment size (PostgreSQL's
/// `XLogSegmentsPerXLogId`); `segment_size` must be a power of two from
/// 1 MiB to 1 GiB.
pub fn segments_per_log(segment_size: u32) -> u64 {
    0x1_0000_0000u64 / u64::from(segment_size.max(1))
}

/// Whether `size` is a WAL segment size PostgreSQL allows.
pub fn valid_segment_size(size: u32) -> bool {
    size.is_power_of_two() && (1 << 20..=1 << 30).contains(&size)
}

/// The absolute segment number of `(log, seg)`.
pub fn segment_number(log: u32, seg: u32, segment_size: u32) -> u64 {
    u64::from(log) * segments_per_log(segment_size) + u64::from(seg)
}

/// The segment file name holding `lsn` on `timeline`.
pub fn segment_name_for_lsn(timeline: u32, lsn: u64, segment_size: u32) -> String {
    let segno = lsn / u64::from(segment_size.max(1));
    segment_name(timeline, segno, segment_size)
}

/// The segment file name of absolute segment number `segno`.
pub fn segment_name(timeline: u32, segno: u64, segment_size: u32) -> String {
    let per = segments_per_log(segment_size);
    WalName::Segment {
        timeline,
        log: (segno / per) as u32,
        seg: (segno % per) as u32,
    }
    .file_name()
}

/// Parses an LSN as PostgreSQL prints it (`16/B374D848`).
pub fn parse_lsn(s: &str) -> Option<u64> {
    let (hi, lo) = s.trim().split_once('/')?;
    if hi.is_empty() || lo.is_empty() || hi.len() > 8 || lo.len() > 8 {
        return None;
    }
    let hi = u32::from_str_radix(hi, 16).ok()?;
    let lo = u32::from_str_radix(lo, 16).ok()?;
    Some((u64::from(hi) << 32) | u64::from(lo))
}

/// Formats an LSN as PostgreSQL does.
pub fn format_lsn(lsn: u64) -> String {
    format!("{:X}/{:X}", lsn >> 32, lsn & 0xFFFF_FFFF)
}

/// What the long header at the start of every WAL segment says.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentHeader {
    /// The cluster's system identifier.
    pub system_id: u64,
    /// The segment size the cluster was initialised with.
    pub segment_size: u32,
    /// Timeline of the first page.
    pub timeline: u32,
    /// WAL position of the first page.
    pub page_address: u64,
}

/// Reads the long page header of a WAL segment (PostgreSQL's
/// `XLogLongPageHeaderData`, little-endian on every platform cairn runs
/// on), or `None` if `bytes` does not start with one.
pub fn segment_header(bytes: &[u8]) -> Option<SegmentHeader> {
    if bytes.len() < 40 {
        return None;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
    let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
    const XLP_LONG_HEADER: u16 = 0x0002;
    let magic = u16_at(0);
    let info = u16_at(2);
    // Every release since 9.3 writes a magic between 0xD071 and 0xD1FF.
    if !(0xD071..0xD200).contains(&magic) || info & XLP_LONG_HEADER == 0 {
        return None;
    }
    let header = SegmentHeader {
        timeline: u32_at(4),
        page_address: u64_at(8),
        system_id: u64_at(24),
        segment_size: u32_at(32),
    };
    valid_segment_size(header.segment_size).then_some(header)
}

/// The record of one archived WAL file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WalFile {
    /// System identifier of the cluster that wrote it.
    pub system_id: u64,
    /// Its file name (a [`WalName`]).
    pub name: String,
    /// Length in bytes.
    pub size: u64,
    /// BLAKE3 of the content.
    pub hash: [u8; 32],
    /// Segment size from the segment's header; 0 for history files.
    pub segment_size: u32,
    /// The data blobs that hold the content, in order.
    pub content: Vec<Id>,
    /// The packs the blobs were written to by the push (a hint: prune may
    /// have moved them since; the index is authoritative).
    pub packs: Vec<IndexPack>,
    /// When it was archived, Unix seconds.
    pub archived: i64,
    /// Host that archived it.
    pub hostname: String,
}

impl WalFile {
    /// The parsed name (validated by [`WalFile::decode`]).
    pub fn wal_name(&self) -> Option<WalName> {
        WalName::parse(&self.name)
    }

    /// Seals the record.
    pub fn encode(&self, key: &MasterKey) -> Result<Vec<u8>> {
        envelope::seal(key, MAGIC, self)
    }

    /// Opens and validates a record. `what` names it.
    pub fn decode(key: &MasterKey, bytes: &[u8], what: &str) -> Result<WalFile> {
        let plain = envelope::open_plain(key, MAGIC, bytes, what)?;
        WalFile::from_plaintext(&plain, what)
    }

    /// Decodes and validates a record's plaintext.
    pub fn from_plaintext(plain: &[u8], what: &str) -> Result<WalFile> {
        let w: WalFile = envelope::from_postcard(plain, what)?;
        w.validate(what)?;
        Ok(w)
    }

    /// The plaintext (postcard) of the record.
    pub fn to_plaintext(&self) -> Result<Vec<u8>> {
        envelope::to_postcard(self)
    }

    fn validate(&self, what: &str) -> Result<()> {
        let bad = |m: String| Err(Error::corrupt(what, m));
        if WalName::parse(&self.name).is_none() {
            return bad(format!("{:?} is not a WAL file name", self.name));
        }
        if self.size > MAX_FILE_SIZE {
            return bad(format!("size {} out of range", self.size));
        }
        if self.segment_size != 0 && !valid_segment_size(self.segment_size) {
            return bad(format!("segment size {} out of range", self.segment_size));
        }
        if self.content.len() > MAX_BLOBS
            || self.packs.iter().map(|p| p.blobs.len()).sum::<usize>() > MAX_BLOBS
        {
            return bad("too many blobs".into());
        }
        crate::format::index::validate_packs(&self.packs, what)?;
        if self.size > 0 && self.content.is_empty() {
            return bad("content missing".into());
        }
        if !crate::format::snapshot::time_in_range(self.archived) {
            return bad("time out of range".into());
        }
        Ok(())
    }
}

/// The name of the record of `name` of cluster `system_id`: a keyed hash,
/// so names cannot be guessed without the key.
pub fn record_id(key: &MasterKey, system_id: u64, name: &str) -> Id {
    let mut h = blake3::Hasher::new_keyed(&key.id);
    h.update(b"cairn wal record\0");
    h.update(&system_id.to_le_bytes());
    h.update(name.as_bytes());
    Id(*h.finalize().as_bytes())
}

/// One line of a timeline history file: timeline `parent` ended at
/// `switch_lsn` and the file's timeline began there.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimelineSwitch {
    /// The parent timeline.
    pub parent: u32,
    /// Where the parent ended (first LSN of the child).
    pub switch_lsn: u64,
}

/// Parses a timeline history file (`parentTLI<TAB>switchpoint<TAB>reason`
/// per line, comments with `#`); lines that do not parse are skipped, as
/// PostgreSQL does with blank lines.
pub fn parse_history(text: &str) -> Vec<TimelineSwitch> {
    let mut out = Vec::new();
    for line in text.lines().take(100_000) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut parts = line.split_whitespace();
        let (Some(tli), Some(lsn)) = (parts.next(), parts.next()) else {
            continue;
        };
        if let (Ok(parent), Some(switch_lsn)) = (tli.parse::<u32>(), parse_lsn(lsn)) {
            out.push(TimelineSwitch { parent, switch_lsn });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for n in [
            "000000010000000000000003",
            "00000002000000A1000000FF.partial",
            "0000000A.history",
            "000000010000000000000002.00000028.backup",
        ] {
            let p = WalName::parse(n).unwrap();
            assert_eq!(p.file_name(), n);
        }
        for n in [
            "",
            "00000001000000000000003",
            "000000000000000000000003",
            "00000001000000000000000g",
            "000000010000000000000003.foo",
            "../000000010000000000000003",
            "00000000.history",
            "0000000a.history",
            "000000010000000000000002.0000028.backup",
            "é00000010000000000000003",
        ] {
            assert_eq!(WalName::parse(n), None, "{n}");
        }
    }

    #[test]
    fn lsn_and_segments() {
        assert_eq!(parse_lsn("16/B374D848"), Some(0x16_B374_D848));
        assert_eq!(format_lsn(0x16_B374_D848), "16/B374D848");
        assert_eq!(parse_lsn("0/0"), Some(0));
        for bad in ["", "/", "1/", "x/1", "123456789/0", "1"] {
            assert_eq!(parse_lsn(bad), None, "{bad}");
        }
        let sz = 16 << 20;
        assert_eq!(
            segment_name_for_lsn(1, 0x2_0000_0028, sz),
            "000000010000000200000000"
        );
        assert_eq!(
            segment_name_for_lsn(3, 0x1_FF00_0000, sz),
            "0000000300000001000000FF"
        );
        assert_eq!(segment_number(2, 0, sz), 512);
    }

    #[test]
    fn history_files() {
        let h = "1\t0/3000158\tno recovery target specified\n\n# x\n2\t0/5000000\tat restore point\nbad line\n";
        assert_eq!(
            parse_history(h),
            vec![
                TimelineSwitch {
                    parent: 1,
                    switch_lsn: 0x300_0158
                },
                TimelineSwitch {
                    parent: 2,
                    switch_lsn: 0x500_0000
                }
            ]
        );
    }

    #[test]
    fn records_round_trip_and_reject_nonsense() {
        let key = MasterKey::generate().unwrap();
        let w = WalFile {
            system_id: 7,
            name: "000000010000000000000001".into(),
            size: 3,
            hash: [1; 32],
            segment_size: 16 << 20,
            content: vec![Id([2; 32])],
            packs: vec![],
            archived: 1,
            hostname: "h".into(),
        };
        let bytes = w.encode(&key).unwrap();
        assert_eq!(WalFile::decode(&key, &bytes, "w").unwrap(), w);
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 1;
            assert!(WalFile::decode(&key, &b, "w").is_err());
        }
        let mut bad = w.clone();
        bad.name = "../x".into();
        assert!(WalFile::decode(&key, &bad.encode(&key).unwrap(), "w").is_err());
        let mut bad = w;
        bad.content.clear();
        assert!(WalFile::decode(&key, &bad.encode(&key).unwrap(), "w").is_err());
        assert_ne!(
            record_id(&key, 7, "000000010000000000000001"),
            record_id(&key, 8, "000000010000000000000001")
        );
    }
}
