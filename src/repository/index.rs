//! The blob index: which pack holds each blob, loaded from the index files.
//!
//! Index files list packs and their blobs ([`crate::format::index`]). This
//! module holds the one loader every command uses: list `index/`, read each
//! file, check that it hashes to its name, decode it, and skip files that
//! another file *supersedes* (prune and repair write a complete replacement
//! first and delete the old files after, so superseded files exist only
//! after an interrupted run). It also holds the two in-memory forms: a full
//! [`Index`] of locations, and the compact [`BlobSet`] a backup
//! deduplicates against.

use super::Core;
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::blob::BlobType;
use crate::format::id::Id;
use crate::format::index::{IndexFile, IndexPack, IndexPrune, MarkedPack};
use crate::format::pack::PackEntry;
use std::collections::{HashMap, HashSet};

/// Most blobs listed in one index file written by prune or repair, so that
/// decoding any single index file needs little memory.
pub const INDEX_FILE_BLOBS: usize = 50_000;

/// What the loader does with an index file it cannot read or decode.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OnDamage {
    /// Stop with the error.
    Fail,
    /// Note the error and go on (`check`).
    Collect,
}

/// The result of visiting every live index file.
pub(crate) struct LiveIndex<T> {
    /// What the visitor built.
    pub value: T,
    /// Every index file listed, live or not.
    pub all_files: Vec<Id>,
    /// Files that could not be read (only with [`OnDamage::Collect`]).
    pub problems: Vec<Error>,
}

/// Reads, checks and decodes one index file.
pub(crate) fn read_index_file(core: &Core, id: &Id) -> Result<IndexFile> {
    let h = Handle::new(FileKind::Index, *id);
    let what = h.rel_path();
    core.read_decoded(h, |bytes| {
        super::check_file_name(id, bytes, &what)?;
        IndexFile::decode(&core.key, bytes, &what)
    })
}

/// Calls `visit` once for every live index file, in name order, building a
/// value that starts as `init()`. Superseded files are skipped: they are
/// rare, so every file is decoded once, and only when one of the visited
/// files turns out to be superseded is the value rebuilt without them.
pub(crate) fn fold_live<T>(
    core: &Core,
    on_damage: OnDamage,
    init: impl Fn() -> T,
    mut visit: impl FnMut(&mut T, Id, IndexFile),
) -> Result<LiveIndex<T>> {
    // A file removed between listing and reading was superseded by a file
    // written after the listing (a prune finished meanwhile): list again.
    let mut attempts = 0;
    loop {
        match fold_listed(core, on_damage, &init, &mut visit) {
            Err(e) if e.is_not_found() && attempts < 3 => attempts += 1,
            r => return r,
        }
    }
}

fn fold_listed<T>(
    core: &Core,
    on_damage: OnDamage,
    init: &impl Fn() -> T,
    visit: &mut impl FnMut(&mut T, Id, IndexFile),
) -> Result<LiveIndex<T>> {
    let all_files: Vec<Id> = core
        .backend
        .list(FileKind::Index)?
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    let mut skip: HashSet<Id> = HashSet::new();
    loop {
        let mut value = init();
        let mut superseded: HashSet<Id> = HashSet::new();
        let mut visited = Vec::new();
        let mut problems = Vec::new();
        let todo: Vec<&Id> = all_files.iter().filter(|id| !skip.contains(*id)).collect();
        // A remote store answers several reads at once; a handful of files
        // are in memory at a time, then decoded one by one in name order.
        let at_once = core.backend.write_concurrency().max(1);
        for group in todo.chunks(at_once) {
            let read: Vec<Result<IndexFile>> = if group.len() > 1 {
                std::thread::scope(|s| {
                    let handles: Vec<_> = group
                        .iter()
                        .map(|id| s.spawn(move || read_index_file(core, id)))
                        .collect();
                    handles
                        .into_iter()
                        .map(|h| {
                            h.join().unwrap_or_else(|_| {
                                Err(Error::InvalidInput("index reader panicked".into()))
                            })
                        })
                        .collect()
                })
            } else {
                group.iter().map(|id| read_index_file(core, id)).collect()
            };
            for (id, r) in group.iter().zip(read) {
                match r {
                    Ok(f) => {
                        superseded.extend(f.supersedes.iter().copied());
                        visited.push(**id);
                        visit(&mut value, **id, f);
                    }
                    Err(e) if e.is_not_found() => return Err(e),
                    Err(e) if on_damage == OnDamage::Collect => problems.push(e),
                    Err(e) => return Err(e),
                }
            }
        }
        if visited.iter().any(|id| superseded.contains(id)) {
            // Terminates: the next round visits no file of `superseded`,
            // and what it finds superseded is a subset of it.
            skip = superseded;
            continue;
        }
        return Ok(LiveIndex {
            value,
            all_files,
            problems,
        });
    }
}

/// Every pack the live index files list, once each (the first listing of a
/// pack wins), in the order met.
pub(crate) fn live_packs(core: &Core, on_damage: OnDamage) -> Result<LiveIndex<Vec<IndexPack>>> {
    // Everything the visitor keeps must live in the folded value: a rebuild
    // after finding superseded files starts from `init()` again.
    let live = fold_live(
        core,
        on_damage,
        || (Vec::new(), HashSet::new()),
        |(packs, seen): &mut (Vec<IndexPack>, HashSet<Id>), _, f| {
            for p in f.packs {
                if seen.insert(p.id) {
                    packs.push(p);
                }
            }
        },
    )?;
    Ok(LiveIndex {
        value: live.value.0,
        all_files: live.all_files,
        problems: live.problems,
    })
}

/// Loads every live index file into a full index.
/// Packs marked for deletion come after every live pack, so that readers
/// look in a live copy of a blob first.
pub(crate) fn load_full(core: &Core) -> Result<Index> {
    let (mut index, marked) = fold_live(
        core,
        OnDamage::Fail,
        || (Index::new(), Vec::new()),
        |(index, marked): &mut (Index, Vec<IndexPack>), _, f| {
            for p in &f.packs {
                index.add_pack(p.id, &p.blobs);
            }
            marked.extend(f.marked().iter().map(|m| m.pack.clone()));
        },
    )?
    .value;
    for p in &marked {
        if !index.has_pack(&p.id) {
            index.add_pack(p.id, &p.blobs);
        }
    }
    Ok(index)
}

/// What prune needs to know of the index files: the live packs, the packs
/// waiting for deletion, and since when each superseded file has been
/// superseded.
pub(crate) struct PruneState {
    /// Packs the live files list, once each, in the order met.
    pub live: Vec<IndexPack>,
    /// Packs only marked for deletion (listed by no live file's `packs`),
    /// each with the earliest time it was marked.
    pub marked: Vec<MarkedPack>,
    /// Every index file listed, live or not.
    pub all_files: Vec<Id>,
    /// For each superseded file, the earliest `time` of a live file that
    /// supersedes it (0 when that file does not say: written before files
    /// carried a time, so long ago).
    pub superseded_since: HashMap<Id, i64>,
}

/// Every pack the live index files mark for deletion (some may also be
/// listed as live).
pub(crate) fn marked_packs(core: &Core) -> Result<Vec<MarkedPack>> {
    Ok(
        fold_live(core, OnDamage::Collect, Vec::new, |marked, _, f| {
            if let Some(p) = f.prune {
                marked.extend(p.marked);
            }
        })?
        .value,
    )
}

/// The live index files and the newest time a prune or repair wrote into
/// them (rollback detection).
pub(crate) fn index_seen(core: &Core) -> Result<super::rollback::IndexSeen> {
    type Acc = (Vec<Id>, i64, Vec<Id>, Vec<Id>);
    let live = fold_live(
        core,
        OnDamage::Collect,
        || (Vec::new(), 0i64, Vec::new(), Vec::new()),
        |(ids, newest, written, superseded): &mut Acc, id, f| {
            ids.push(id);
            superseded.extend(f.supersedes.iter().copied());
            if let Some(p) = &f.prune {
                *newest = (*newest).max(p.time);
                written.push(id);
            }
        },
    )?;
    let (live, newest_time, written_by_prune, superseded) = live.value;
    Ok(super::rollback::IndexSeen {
        live,
        newest_time,
        written_by_prune,
        superseded,
    })
}

/// Loads [`PruneState`].
pub(crate) fn load_prune_state(core: &Core) -> Result<PruneState> {
    type Acc = (
        Vec<IndexPack>,
        HashSet<Id>,
        HashMap<Id, MarkedPack>,
        HashMap<Id, i64>,
    );
    let live = fold_live(
        core,
        OnDamage::Fail,
        || (Vec::new(), HashSet::new(), HashMap::new(), HashMap::new()),
        |(packs, seen, marked, since): &mut Acc, _, f| {
            let time = f.prune.as_ref().map_or(0, |p| p.time);
            for id in &f.supersedes {
                let t = since.entry(*id).or_insert(time);
                *t = (*t).min(time);
            }
            for m in f.marked() {
                let e = marked.entry(m.pack.id).or_insert_with(|| m.clone());
                e.marked_at = e.marked_at.min(m.marked_at);
                if e.pack.blobs.is_empty() {
                    e.pack.blobs = m.pack.blobs.clone();
                }
            }
            for p in f.packs {
                if seen.insert(p.id) {
                    packs.push(p);
                }
            }
        },
    )?;
    let (live_packs, seen, marked, superseded_since) = live.value;
    let mut marked: Vec<MarkedPack> = marked
        .into_values()
        .filter(|m| !seen.contains(&m.pack.id))
        .collect();
    marked.sort_by_key(|m| m.pack.id);
    Ok(PruneState {
        live: live_packs,
        marked,
        all_files: live.all_files,
        superseded_since,
    })
}

/// Loads what a backup needs, in bounded memory: locations of tree blobs
/// and a compact set of data blob ids. Index files are decoded one at a time.
pub(crate) fn load_for_backup(core: &Core) -> Result<(Index, BlobSet)> {
    let bytes_total: u64 = core
        .backend
        .list(FileKind::Index)?
        .iter()
        .map(|(_, size)| size)
        .sum();
    let live = fold_live(
        core,
        OnDamage::Fail,
        // An encoded entry takes at least ~45 bytes; reserve once, no regrowth.
        || {
            (
                Index::new(),
                BlobSet::with_capacity((bytes_total / 45) as usize + 16),
            )
        },
        |(index, set), _, f| {
            for p in &f.packs {
                let trees: Vec<PackEntry> = p
                    .blobs
                    .iter()
                    .filter(|e| e.kind == BlobType::Tree)
                    .copied()
                    .collect();
                if !trees.is_empty() {
                    index.add_pack(p.id, &trees);
                }
                for e in p.blobs.iter().filter(|e| e.kind == BlobType::Data) {
                    set.push(&e.id);
                }
            }
        },
    )?;
    let (index, mut set) = live.value;
    set.seal();
    Ok((index, set))
}

/// Adds the locations of the data blobs in `wanted` to `index`.
pub(crate) fn load_locations(core: &Core, index: &mut Index, wanted: &HashSet<Id>) -> Result<()> {
    let found = fold_live(core, OnDamage::Fail, Vec::new, |found, _, f| {
        for p in f.packs {
            let blobs: Vec<PackEntry> = p
                .blobs
                .into_iter()
                .filter(|e| e.kind == BlobType::Data && wanted.contains(&e.id))
                .collect();
            if !blobs.is_empty() {
                found.push(IndexPack { id: p.id, blobs });
            }
        }
    })?;
    for p in &found.value {
        index.add_pack(p.id, &p.blobs);
    }
    Ok(())
}

impl<S> super::Repository<S> {
    /// Writes an index file; returns its id.
    pub fn save_index(&self, f: &IndexFile) -> Result<Id> {
        self.write_file(FileKind::Index, &f.encode(&self.core.key)?)
    }

    /// Writes index files describing `packs` (and the packs waiting for
    /// deletion, `marked`) that together replace the index files
    /// `supersedes`. They are spread over files of at most
    /// [`INDEX_FILE_BLOBS`] blobs; the last file also carries the
    /// `supersedes` list and is written only once the others are durable.
    /// Until it is, the old files stay authoritative, so a crash never
    /// leaves a pack unlisted (most prunes need one file, written
    /// atomically). Every file records `time` (when prune or repair wrote
    /// it). Returns the ids of all files written.
    pub fn save_index_replacing(
        &self,
        packs: Vec<IndexPack>,
        marked: Vec<MarkedPack>,
        supersedes: Vec<Id>,
        time: i64,
    ) -> Result<Vec<Id>> {
        let fresh = || IndexFile {
            packs: Vec::new(),
            supersedes: Vec::new(),
            prune: Some(IndexPrune {
                time,
                marked: Vec::new(),
            }),
        };
        let mut files: Vec<IndexFile> = Vec::new();
        let mut blobs = 0usize;
        // Starts a new file when the next `n` blobs do not fit the current.
        let mut make_room = |files: &mut Vec<IndexFile>, n: usize| {
            if files.is_empty() || (blobs > 0 && blobs + n > INDEX_FILE_BLOBS) {
                files.push(fresh());
                blobs = 0;
            }
            blobs += n;
        };
        for p in packs {
            make_room(&mut files, p.blobs.len());
            if let Some(f) = files.last_mut() {
                f.packs.push(p);
            }
        }
        for m in marked {
            make_room(&mut files, m.pack.blobs.len().max(1));
            if let Some(ext) = files.last_mut().and_then(|f| f.prune.as_mut()) {
                ext.marked.push(m);
            }
        }
        let last = if supersedes.is_empty() {
            None
        } else {
            let mut last = files.pop().unwrap_or_else(fresh);
            last.supersedes = supersedes;
            Some(last)
        };
        // These are written side by side (on a remote store each waits on
        // the network); the superseding file only once all are durable.
        let at_once = self.core.backend.write_concurrency().max(1);
        let plain = self.without_index();
        let plain = &plain;
        let mut written = Vec::new();
        for group in files.chunks(at_once) {
            let ids: Vec<Result<Id>> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .iter()
                    .map(|f| s.spawn(move || plain.save_index(f)))
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err(Error::InvalidInput("index writer panicked".into()))
                        })
                    })
                    .collect()
            });
            for id in ids {
                written.push(id?);
            }
        }
        if let Some(last) = last {
            written.push(self.save_index(&last)?);
        }
        Ok(written)
    }

    /// Reads, checks and decodes one index file.
    pub fn read_index_file(&self, id: &Id) -> Result<IndexFile> {
        read_index_file(&self.core, id)
    }

    /// Reads, checks and decodes every index file, superseded or not.
    pub fn read_index_files(&self) -> Result<Vec<(Id, IndexFile)>> {
        self.core
            .backend
            .list(FileKind::Index)?
            .into_iter()
            .map(|(id, _)| Ok((id, read_index_file(&self.core, &id)?)))
            .collect()
    }
}

/// Where a blob can be read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BlobLocation {
    /// Position of the pack in [`Index::packs`].
    pub pack: u32,
    /// Blob type.
    pub kind: BlobType,
    /// Offset in the pack.
    pub offset: u64,
    /// Encoded length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
}

/// All blobs known to the repository, by id.
///
/// A blob stored more than once (two backups racing, a pack written again
/// after a crash) keeps every location: the first is where readers look
/// first, the others are where they fall back to when that copy is damaged.
#[derive(Default)]
pub struct Index {
    packs: Vec<Id>,
    pack_pos: HashMap<Id, u32>,
    blobs: HashMap<Id, BlobLocation>,
    /// Further copies of blobs stored more than once (rare).
    copies: HashMap<Id, Vec<BlobLocation>>,
}

impl Index {
    /// An empty index.
    pub fn new() -> Index {
        Index::default()
    }

    /// Adds every blob of a pack (first location of a blob wins).
    pub fn add_pack(&mut self, pack: Id, entries: &[PackEntry]) {
        let pos = *self.pack_pos.entry(pack).or_insert_with(|| {
            self.packs.push(pack);
            (self.packs.len() - 1) as u32
        });
        for e in entries {
            let loc = BlobLocation {
                pack: pos,
                kind: e.kind,
                offset: e.offset,
                length: e.length,
                raw_length: e.raw_length,
            };
            match self.blobs.entry(e.id) {
                std::collections::hash_map::Entry::Vacant(v) => {
                    v.insert(loc);
                }
                std::collections::hash_map::Entry::Occupied(first) => {
                    let copies = self.copies.entry(e.id).or_default();
                    if *first.get() != loc && !copies.contains(&loc) {
                        copies.push(loc);
                    }
                }
            }
        }
    }

    /// Every location of a blob, the one readers use first first.
    pub fn locations(&self, id: &Id) -> Vec<(Id, BlobLocation)> {
        let mut out: Vec<(Id, BlobLocation)> = self.get(id).into_iter().collect();
        if let Some(more) = self.copies.get(id) {
            out.extend(more.iter().map(|l| (self.packs[l.pack as usize], *l)));
        }
        out
    }

    /// Location of a blob.
    pub fn get(&self, id: &Id) -> Option<(Id, BlobLocation)> {
        self.blobs
            .get(id)
            .map(|l| (self.packs[l.pack as usize], *l))
    }

    /// Whether the blob is known.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Number of distinct blobs.
    pub fn len(&self) -> usize {
        self.blobs.len()
    }

    /// Whether the index is empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Packs known to the index.
    pub fn packs(&self) -> &[Id] {
        &self.packs
    }

    /// Whether a pack is listed.
    pub fn has_pack(&self, id: &Id) -> bool {
        self.pack_pos.contains_key(id)
    }

    /// Every blob with its pack.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, Id, &BlobLocation)> {
        self.blobs
            .iter()
            .map(|(id, l)| (id, self.packs[l.pack as usize], l))
    }
}

/// A compact set of blob ids for deduplication during backup.
///
/// A backup only needs to know *whether* a data blob exists, not where, so
/// it keeps the first 128 bits of each id in one sorted array: 16 bytes per
/// blob, 160 MB for ten million chunks, instead of a hash map of full
/// locations. Ids are keyed BLAKE3 outputs that an attacker cannot compute
/// without the key, and the chance of two of 10^7 ids sharing a 128-bit
/// prefix is below 10^-24. Were it to happen, the backup would skip storing a
/// chunk and `check` would report that blob as missing from the index.
#[derive(Default, Debug)]
pub struct BlobSet {
    prefixes: Vec<u128>,
}

impl BlobSet {
    /// The 128-bit prefix of an id.
    fn prefix(id: &Id) -> u128 {
        let mut b = [0u8; 16];
        b.copy_from_slice(&id.0[..16]);
        u128::from_be_bytes(b)
    }

    /// An empty set with room for `n` ids.
    pub fn with_capacity(n: usize) -> BlobSet {
        BlobSet {
            prefixes: Vec::with_capacity(n),
        }
    }

    /// Adds an id (call [`BlobSet::seal`] before looking up).
    pub fn push(&mut self, id: &Id) {
        self.prefixes.push(Self::prefix(id));
    }

    /// Sorts and removes duplicates; frees spare capacity.
    pub fn seal(&mut self) {
        self.prefixes.sort_unstable();
        self.prefixes.dedup();
        self.prefixes.shrink_to_fit();
    }

    /// Whether the id is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.prefixes.binary_search(&Self::prefix(id)).is_ok()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.prefixes.len()
    }

    /// Whether the set is empty.
    pub fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_set_membership() {
        let ids: Vec<Id> = (0..1000u32)
            .map(|i| Id::of_file(&i.to_le_bytes()))
            .collect();
        let mut s = BlobSet::with_capacity(10);
        for id in ids.iter().chain(ids.iter().take(10)) {
            s.push(id);
        }
        s.seal();
        assert_eq!(s.len(), 1000);
        assert!(ids.iter().all(|id| s.contains(id)));
        assert!(!s.contains(&Id::of_file(b"absent")));
    }

    fn entry(n: u8) -> PackEntry {
        PackEntry {
            kind: BlobType::Data,
            id: Id([n; 32]),
            offset: 0,
            length: 100,
            raw_length: 50,
        }
    }

    fn memory_repo() -> crate::repository::Repository {
        crate::repository::Connection::new(
            std::sync::Arc::new(crate::backend::MemoryBackend::new()),
        )
        .init(
            b"pw",
            &crate::repository::InitOptions {
                kdf: crate::format::crypto::KdfParams {
                    memory_kib: 64,
                    iterations: 1,
                    parallelism: 1,
                },
                ..Default::default()
            },
        )
        .unwrap()
    }

    /// Pack `n` with `blobs` blobs (ids unique over packs below 2^16).
    fn pack_of(n: u16, blobs: usize) -> IndexPack {
        let mut id = [0u8; 32];
        id[..2].copy_from_slice(&n.to_le_bytes());
        IndexPack {
            id: Id(id),
            blobs: (0..blobs)
                .map(|i| {
                    let mut b = [1u8; 32];
                    b[..2].copy_from_slice(&n.to_le_bytes());
                    b[2..10].copy_from_slice(&(i as u64).to_le_bytes());
                    PackEntry {
                        id: Id(b),
                        offset: 100 * i as u64,
                        ..entry(0)
                    }
                })
                .collect(),
        }
    }

    /// Prune's index: one file when it fits (packs, marked packs and
    /// `supersedes` together, so it takes effect atomically); else files of
    /// at most INDEX_FILE_BLOBS blobs, the one written last superseding.
    #[test]
    fn replacing_index_is_one_file_when_it_fits_and_supersedes_last() {
        let repo = memory_repo();
        let old = repo.save_index(&IndexFile {
            packs: vec![pack_of(1, 3)],
            supersedes: vec![],
            prune: None,
        });
        let old = old.unwrap();
        let marked = |n: u16, blobs: usize| MarkedPack {
            pack: pack_of(n, blobs),
            marked_at: 7,
        };
        let ids = repo
            .save_index_replacing(vec![pack_of(2, 5)], vec![marked(3, 0)], vec![old], 9)
            .unwrap();
        assert_eq!(ids.len(), 1);
        let f = repo.read_index_file(&ids[0]).unwrap();
        assert_eq!(f.packs.len(), 1);
        assert_eq!(f.supersedes, vec![old]);
        let ext = f.prune.unwrap();
        assert_eq!((ext.time, ext.marked.len()), (9, 1));

        // 2.5 files' worth of blobs, some of them in marked packs.
        let per = INDEX_FILE_BLOBS / 4;
        let packs: Vec<IndexPack> = (10..18).map(|n| pack_of(n, per)).collect();
        let marked: Vec<MarkedPack> = (20..22).map(|n| marked(n, per)).collect();
        let ids = repo
            .save_index_replacing(packs, marked, vec![old, ids[0]], 9)
            .unwrap();
        assert_eq!(ids.len(), 3);
        let files: Vec<IndexFile> = ids
            .iter()
            .map(|id| repo.read_index_file(id).unwrap())
            .collect();
        let blobs = |f: &IndexFile| {
            f.packs.iter().map(|p| p.blobs.len()).sum::<usize>()
                + f.prune
                    .as_ref()
                    .map_or(0, |e| e.marked.iter().map(|m| m.pack.blobs.len()).sum())
        };
        assert!(files.iter().all(|f| blobs(f) <= INDEX_FILE_BLOBS));
        assert_eq!(files.iter().map(blobs).sum::<usize>(), 10 * per);
        assert!(files[..2].iter().all(|f| f.supersedes.is_empty()));
        assert_eq!(files[2].supersedes.len(), 2);
        // Every pack listed once, every marked pack marked once.
        let listed: usize = files.iter().map(|f| f.packs.len()).sum();
        let marked: usize = files
            .iter()
            .map(|f| f.prune.as_ref().map_or(0, |e| e.marked.len()))
            .sum();
        assert_eq!((listed, marked), (8, 2));
    }

    /// An interrupted prune leaves old files beside their replacement and
    /// the file that supersedes them: the superseded files are not live,
    /// whatever order the names sort in, and the packs of live files are
    /// all there (the rebuild after finding superseded files starts afresh).
    #[test]
    fn superseded_files_are_skipped() {
        let repo = memory_repo();
        let pack = |n: u8| IndexPack {
            id: Id([n; 32]),
            blobs: vec![entry(n)],
        };
        let file = |packs: Vec<IndexPack>, supersedes: Vec<Id>| IndexFile {
            packs,
            supersedes,
            prune: None,
        };
        let old1 = repo
            .save_index(&file(vec![pack(1), pack(2)], vec![]))
            .unwrap();
        let old2 = repo.save_index(&file(vec![pack(3)], vec![])).unwrap();
        let new = repo
            .save_index(&file(vec![pack(2), pack(3)], vec![]))
            .unwrap();
        let sup = repo.save_index(&file(vec![], vec![old1, old2])).unwrap();
        let live = live_packs(repo.core_ref(), OnDamage::Fail).unwrap();
        let ids: Vec<Id> = live.value.iter().map(|p| p.id).collect();
        assert_eq!(ids, vec![Id([2; 32]), Id([3; 32])]);
        assert_eq!(live.all_files.len(), 4);
        let full = load_full(repo.core_ref()).unwrap();
        assert!(!full.contains(&Id([1; 32])));
        assert!(full.contains(&Id([2; 32])) && full.contains(&Id([3; 32])));
        let (_, set) = load_for_backup(repo.core_ref()).unwrap();
        assert_eq!(set.len(), 2);
        assert!(!set.contains(&Id([1; 32])));
        let _ = (new, sup);
    }
}
