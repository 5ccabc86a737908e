//! Reading file contents with random access: the blob map of a file, a
//! bounded cache of decoded blobs, and read-ahead for sequential readers.
//!
//! A file's content is a list of data blobs. When a file is first read its
//! blobs are listed once ([`FileMap`]: each blob's id, location and offset in
//! the file, about 100 bytes per blob, so 1 MB for a 10 GB file of 1 MiB
//! chunks), and every read finds the blob holding its first byte by a
//! binary search over those offsets and fetches only the blobs its range
//! covers. Decoded blobs are kept in a [`BlobCache`] bounded in bytes and
//! evicted least recently used first; the cache also makes two threads that
//! want the same blob at the same time fetch it once.
//!
//! A reader that goes on where its last read ended is sequential; for it the
//! [`Prefetcher`] fetches the blobs after the current one in the
//! background, in runs stored back to back (one request each), so that
//! decoding overlaps with the reader and uses every core.

use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::repository::blobs::{FileBlob, RunGrouper};
use crate::repository::{FullIndex, Repository};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// A decoded blob.
pub type Blob = Arc<Vec<u8>>;

/// A file's data blobs, in order, with their offsets in the file.
#[derive(Debug)]
pub struct FileMap {
    blobs: Vec<FileBlob>,
    size: u64,
}

impl FileMap {
    /// A map of `blobs` (in file order, `file_offset` ascending from 0,
    /// lengths adding up to `size`, as [`Repository::file_blobs`] checks).
    pub fn new(blobs: Vec<FileBlob>, size: u64) -> FileMap {
        FileMap { blobs, size }
    }

    /// The file's size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The blobs.
    pub fn blobs(&self) -> &[FileBlob] {
        &self.blobs
    }

    /// The position of the blob holding byte `offset` (which must be below
    /// the size), by binary search.
    pub fn blob_at(&self, offset: u64) -> usize {
        self.blobs
            .partition_point(|b| b.file_offset <= offset)
            .saturating_sub(1)
    }

    /// Reads up to `len` bytes at `offset` (fewer at the end of the file,
    /// none past it), getting each blob the range covers from `fetch`.
    /// Returns the bytes and the position of the last blob used.
    pub fn read(
        &self,
        offset: u64,
        len: u32,
        fetch: &dyn Fn(&FileBlob) -> Result<Blob>,
    ) -> Result<(Vec<u8>, usize)> {
        if offset >= self.size || len == 0 {
            return Ok((Vec::new(), self.blobs.len()));
        }
        let end = self.size.min(offset.saturating_add(u64::from(len)));
        let mut out = Vec::with_capacity((end - offset) as usize);
        let mut i = self.blob_at(offset);
        let mut pos = offset;
        while pos < end {
            let b = self
                .blobs
                .get(i)
                .ok_or_else(|| Error::corrupt("file", "content ends before its size"))?;
            let raw = u64::from(b.location.raw_length);
            let data = fetch(b)?;
            if data.len() as u64 != raw {
                return Err(Error::corrupt(
                    format!("blob {}", b.id.short()),
                    format!("holds {} bytes, the index says {raw}", data.len()),
                ));
            }
            let from = (pos - b.file_offset) as usize;
            let to = (end.min(b.file_offset + raw) - b.file_offset) as usize;
            out.extend_from_slice(&data[from..to]);
            pos += (to - from) as u64;
            if pos < end {
                i += 1;
            }
        }
        Ok((out, i))
    }
}

enum Slot {
    Ready { data: Blob, tick: u64 },
    Loading,
}

struct CacheInner {
    slots: HashMap<Id, Slot>,
    /// tick → blob, oldest use first.
    order: BTreeMap<u64, Id>,
    tick: u64,
    bytes: usize,
    /// Blobs fetched (for tests and the report).
    fetched: u64,
}

/// Decoded blobs, bounded in bytes, least recently used evicted first;
/// each blob is fetched once however many threads want it at once.
pub struct BlobCache {
    inner: Mutex<CacheInner>,
    loaded: Condvar,
    capacity: usize,
}

impl BlobCache {
    /// A cache of at most `capacity` bytes of blobs.
    pub fn new(capacity: usize) -> BlobCache {
        BlobCache {
            inner: Mutex::new(CacheInner {
                slots: HashMap::new(),
                order: BTreeMap::new(),
                tick: 0,
                bytes: 0,
                fetched: 0,
            }),
            loaded: Condvar::new(),
            capacity,
        }
    }

    /// How many blobs were fetched so far.
    pub fn fetched(&self) -> u64 {
        crate::sys::lock(&self.inner).fetched
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        crate::sys::lock(&self.inner).bytes
    }

    /// Whether `id` is held or being fetched.
    pub fn has(&self, id: &Id) -> bool {
        crate::sys::lock(&self.inner).slots.contains_key(id)
    }

    /// The blob `id`: from the cache, from a fetch already under way, or
    /// fetched now with `fetch`.
    pub fn get(&self, id: &Id, fetch: impl FnOnce() -> Result<Vec<u8>>) -> Result<Blob> {
        let mut g = crate::sys::lock(&self.inner);
        loop {
            match g.slots.get(id) {
                Some(Slot::Ready { data, tick }) => {
                    let (data, old) = (data.clone(), *tick);
                    g.tick += 1;
                    let t = g.tick;
                    g.order.remove(&old);
                    g.order.insert(t, *id);
                    if let Some(Slot::Ready { tick, .. }) = g.slots.get_mut(id) {
                        *tick = t;
                    }
                    return Ok(data);
                }
                Some(Slot::Loading) => {
                    g = self.loaded.wait(g).unwrap_or_else(|p| p.into_inner());
                }
                None => break,
            }
        }
        g.slots.insert(*id, Slot::Loading);
        drop(g);
        // Whatever happens to the fetch (an error, a panic), waiters must
        // not wait for ever.
        struct Claim<'c>(&'c BlobCache, &'c Id, bool);
        impl Drop for Claim<'_> {
            fn drop(&mut self) {
                if !self.2 {
                    self.0.abandon(self.1);
                }
            }
        }
        let mut claim = Claim(self, id, false);
        let data = Arc::new(fetch()?);
        claim.2 = true;
        self.fill(id, data.clone());
        Ok(data)
    }

    /// Marks the blobs of `ids` that are neither held nor being fetched as
    /// being fetched by the caller, who must [`BlobCache::fill`] or
    /// [`BlobCache::abandon`] each; returns which.
    pub fn claim(&self, ids: &[Id]) -> Vec<bool> {
        let mut g = crate::sys::lock(&self.inner);
        ids.iter()
            .map(|id| {
                if g.slots.contains_key(id) {
                    false
                } else {
                    g.slots.insert(*id, Slot::Loading);
                    true
                }
            })
            .collect()
    }

    /// Stores a claimed blob.
    pub fn fill(&self, id: &Id, data: Blob) {
        let mut g = crate::sys::lock(&self.inner);
        g.fetched += 1;
        g.tick += 1;
        let t = g.tick;
        g.bytes += data.len();
        g.order.insert(t, *id);
        if let Some(Slot::Ready { data: old, tick }) =
            g.slots.insert(*id, Slot::Ready { data, tick: t })
        {
            g.bytes -= old.len();
            g.order.remove(&tick);
        }
        // Evict the least recently used, never the blob just stored.
        while g.bytes > self.capacity {
            let Some((&oldest, &victim)) = g.order.iter().next() else {
                break;
            };
            if oldest == t {
                break;
            }
            g.order.remove(&oldest);
            if let Some(Slot::Ready { data, .. }) = g.slots.remove(&victim) {
                g.bytes -= data.len();
            }
        }
        drop(g);
        self.loaded.notify_all();
    }

    /// Gives up a claim (the fetch failed); waiters fetch it themselves.
    pub fn abandon(&self, id: &Id) {
        let mut g = crate::sys::lock(&self.inner);
        if let Some(Slot::Loading) = g.slots.get(id) {
            g.slots.remove(id);
        }
        drop(g);
        self.loaded.notify_all();
    }
}

/// One piece of read-ahead: blobs of one file stored back to back.
struct Job {
    repo: Arc<Repository<FullIndex>>,
    run: crate::repository::BlobRun,
}

struct Queue {
    jobs: Mutex<VecDeque<Job>>,
    wake: Condvar,
    stop: AtomicBool,
}

/// Background threads that fetch blobs ahead of sequential readers.
pub struct Prefetcher {
    queue: Arc<Queue>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// Most runs waiting; read-ahead beyond this is dropped (readers fetch
/// what they need themselves).
const MAX_QUEUED: usize = 64;
/// Longest run fetched with one request.
const RUN_MAX_BYTES: u64 = 4 << 20;

impl Prefetcher {
    /// Starts `threads` fetching threads filling `cache`.
    pub fn start(threads: usize, cache: Arc<BlobCache>) -> Prefetcher {
        let queue = Arc::new(Queue {
            jobs: Mutex::new(VecDeque::new()),
            wake: Condvar::new(),
            stop: AtomicBool::new(false),
        });
        let handles = (0..threads)
            .map(|i| {
                let (q, c) = (queue.clone(), cache.clone());
                std::thread::Builder::new()
                    .name(format!("cairn-prefetch-{i}"))
                    .spawn(move || worker(&q, &c))
                    .expect("spawning a prefetch thread")
            })
            .collect();
        Prefetcher {
            queue,
            threads: Mutex::new(handles),
        }
    }

    /// Queues blobs `from..to` of `map` (those not cached) for fetching,
    /// grouped into runs.
    pub fn ahead(
        &self,
        repo: &Arc<Repository<FullIndex>>,
        cache: &BlobCache,
        map: &FileMap,
        from: usize,
        to: usize,
    ) {
        let to = to.min(map.blobs.len());
        if from >= to {
            return;
        }
        let mut runs = Vec::new();
        let mut grouper = RunGrouper::new(RUN_MAX_BYTES);
        for b in &map.blobs[from..to] {
            if cache.has(&b.id) {
                // A cached blob ends the run before it.
                let done = std::mem::replace(&mut grouper, RunGrouper::new(RUN_MAX_BYTES));
                if let Some((r, _)) = done.finish() {
                    runs.push(r);
                }
                continue;
            }
            if let Some((r, _)) = grouper.push(*b) {
                runs.push(r);
            }
        }
        if let Some((r, _)) = grouper.finish() {
            runs.push(r);
        }
        if runs.is_empty() {
            return;
        }
        let mut q = crate::sys::lock(&self.queue.jobs);
        for run in runs {
            if q.len() >= MAX_QUEUED {
                break;
            }
            q.push_back(Job {
                repo: repo.clone(),
                run,
            });
        }
        drop(q);
        self.queue.wake.notify_all();
    }

    /// Stops the threads (queued work is dropped) and waits for them.
    pub fn stop(&self) {
        self.queue.stop.store(true, Ordering::SeqCst);
        crate::sys::lock(&self.queue.jobs).clear();
        self.queue.wake.notify_all();
        for h in crate::sys::lock(&self.threads).drain(..) {
            let _ = h.join();
        }
    }
}

fn worker(q: &Queue, cache: &BlobCache) {
    loop {
        let job = {
            let mut jobs = crate::sys::lock(&q.jobs);
            loop {
                if q.stop.load(Ordering::SeqCst) {
                    return;
                }
                if let Some(j) = jobs.pop_front() {
                    break j;
                }
                jobs = q.wake.wait(jobs).unwrap_or_else(|p| p.into_inner());
            }
        };
        let ids: Vec<Id> = job.run.blobs.iter().map(|b| b.id).collect();
        let claimed = cache.claim(&ids);
        if !claimed.iter().any(|c| *c) {
            continue;
        }
        // Claims not filled (an error, a panic) are given up, so readers
        // fetch those blobs themselves (and report what is wrong).
        let mut open = Claims {
            cache,
            ids: ids
                .iter()
                .zip(&claimed)
                .filter(|(_, mine)| **mine)
                .map(|(id, _)| *id)
                .collect(),
        };
        if let Ok(plains) = job.repo.read_run(&job.run) {
            for (id, data) in ids.iter().zip(plains) {
                if let Some(pos) = open.ids.iter().position(|c| c == id) {
                    open.ids.swap_remove(pos);
                    cache.fill(id, Arc::new(data));
                }
            }
        }
    }
}

/// Blobs a prefetch thread claimed and has not filled yet.
struct Claims<'c> {
    cache: &'c BlobCache,
    ids: Vec<Id>,
}

impl Drop for Claims<'_> {
    fn drop(&mut self) {
        for id in &self.ids {
            self.cache.abandon(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::blob::BlobType;
    use crate::repository::index::BlobLocation;
    use std::cell::RefCell;

    /// A map of blobs of the given sizes; blob i's bytes are all `i as u8`.
    fn map(sizes: &[u32]) -> FileMap {
        let mut off = 0;
        let blobs = sizes
            .iter()
            .enumerate()
            .map(|(i, &len)| {
                let b = FileBlob {
                    id: Id([i as u8; 32]),
                    pack: Id([0; 32]),
                    location: BlobLocation {
                        pack: 0,
                        kind: BlobType::Data,
                        offset: 0,
                        length: len,
                        raw_length: len,
                    },
                    file_offset: off,
                };
                off += u64::from(len);
                b
            })
            .collect();
        FileMap::new(blobs, off)
    }

    fn contents(sizes: &[u32]) -> Vec<u8> {
        sizes
            .iter()
            .enumerate()
            .flat_map(|(i, &len)| std::iter::repeat_n(i as u8, len as usize))
            .collect()
    }

    #[test]
    fn reads_fetch_only_the_blobs_they_cover() {
        // A "large" file: 10,000 blobs of 1 MiB-ish sizes, never fetched whole.
        let sizes: Vec<u32> = (0..10_000u32)
            .map(|i| 1_000_000 + (i * 7919) % 50_000)
            .collect();
        let m = map(&sizes);
        let fetched = RefCell::new(Vec::new());
        let fetch = |b: &FileBlob| {
            fetched.borrow_mut().push(b.file_offset);
            Ok(Arc::new(vec![b.id.0[0]; b.location.raw_length as usize]))
        };
        // An offset in the middle: one blob.
        let x = m.blobs[6_000].file_offset + 10;
        let (bytes, last) = m.read(x, 4096, &fetch).unwrap();
        assert_eq!(bytes.len(), 4096);
        assert!(bytes.iter().all(|&b| b == (6_000 % 256) as u8));
        assert_eq!(last, 6_000);
        assert_eq!(fetched.borrow().len(), 1);
        // Across a blob boundary: two blobs.
        fetched.borrow_mut().clear();
        let edge = m.blobs[7_001].file_offset - 100;
        let (bytes, last) = m.read(edge, 200, &fetch).unwrap();
        assert_eq!(&bytes[..100], &[(7_000 % 256) as u8; 100][..]);
        assert_eq!(&bytes[100..], &[(7_001 % 256) as u8; 100][..]);
        assert_eq!(last, 7_001);
        assert_eq!(fetched.borrow().len(), 2);
        // At and past the end.
        fetched.borrow_mut().clear();
        let (bytes, _) = m.read(m.size() - 5, 100, &fetch).unwrap();
        assert_eq!(bytes.len(), 5);
        assert!(m.read(m.size(), 100, &fetch).unwrap().0.is_empty());
        assert!(m.read(m.size() + 1_000, 100, &fetch).unwrap().0.is_empty());
        assert_eq!(fetched.borrow().len(), 1);
    }

    #[test]
    fn every_offset_and_length_reads_the_right_bytes() {
        let sizes = [5, 1, 17, 3, 64, 2];
        let m = map(&sizes);
        let want = contents(&sizes);
        let fetch = |b: &FileBlob| Ok(Arc::new(vec![b.id.0[0]; b.location.raw_length as usize]));
        for off in 0..=want.len() as u64 + 2 {
            for len in 0..=want.len() as u32 + 2 {
                let (got, _) = m.read(off, len, &fetch).unwrap();
                let s = (off as usize).min(want.len());
                let e = (off as usize + len as usize).min(want.len());
                assert_eq!(got, want[s..e], "offset {off} length {len}");
            }
        }
        // An empty file.
        let empty = FileMap::new(Vec::new(), 0);
        assert!(empty.read(0, 10, &fetch).unwrap().0.is_empty());
    }

    #[test]
    fn a_blob_shorter_than_indexed_is_an_error() {
        let m = map(&[10, 10]);
        let short = |b: &FileBlob| Ok(Arc::new(vec![0; b.location.raw_length as usize - 1]));
        assert!(m.read(0, 5, &short).is_err());
    }

    #[test]
    fn cache_is_bounded_and_evicts_least_recently_used() {
        let c = BlobCache::new(3_000);
        let id = |n: u8| Id([n; 32]);
        for n in 0..3 {
            c.get(&id(n), || Ok(vec![n; 1_000])).unwrap();
        }
        assert_eq!(c.bytes(), 3_000);
        // Touch 0, then add 3: 1 is the least recently used.
        c.get(&id(0), || panic!("cached")).unwrap();
        c.get(&id(3), || Ok(vec![3; 1_000])).unwrap();
        assert!(c.bytes() <= 3_000);
        assert!(c.has(&id(0)) && !c.has(&id(1)) && c.has(&id(2)) && c.has(&id(3)));
        assert_eq!(c.fetched(), 4);
        // A blob larger than the cache is still returned (and kept alone).
        let big = c.get(&id(9), || Ok(vec![9; 10_000])).unwrap();
        assert_eq!(big.len(), 10_000);
        assert!(c.has(&id(9)) && !c.has(&id(0)));
        // A failed fetch leaves nothing behind.
        assert!(
            c.get(&id(7), || Err(Error::InvalidInput("x".into())))
                .is_err()
        );
        assert!(!c.has(&id(7)));
    }

    #[test]
    fn concurrent_wants_of_one_blob_fetch_it_once() {
        let c = Arc::new(BlobCache::new(1 << 20));
        let calls = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (c, calls) = (c.clone(), calls.clone());
                std::thread::spawn(move || {
                    c.get(&Id([1; 32]), || {
                        calls.fetch_add(1, Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        Ok(vec![1; 100])
                    })
                    .unwrap()
                })
            })
            .collect();
        for t in threads {
            assert_eq!(t.join().unwrap().len(), 100);
        }
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }
}
