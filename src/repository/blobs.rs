//! Reading blobs back: locate, fetch the byte range, authenticate, decode.
//!
//! Every blob read here is decrypted, its id re-hashed from the plaintext
//! (by [`crate::format::blob::decode`]) and its type checked against the
//! index, so what a caller gets is exactly what was stored under that id.
//! Directory listings ([`Tree`]) and a file's content lists are blobs too;
//! their readers live here, on top of [`Repository::read_blob`].

use super::index::BlobLocation;
use super::{Locate, Repository};
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::blob::{self, BlobType};
use crate::format::content::{ContentList, MAX_DEPTH};
use crate::format::id::Id;
use crate::format::tree::{Node, Tree};
use std::borrow::Cow;

/// Blobs stored back to back in one pack ([`Repository::blob_runs`]).
#[derive(Clone, Debug)]
pub struct BlobRun {
    /// The pack.
    pub pack: Id,
    /// Offset of the first blob in the pack.
    pub offset: u64,
    /// Encoded bytes of all blobs together.
    pub length: u64,
    /// The blobs, in order.
    pub blobs: Vec<RunBlob>,
}

/// One blob of a [`BlobRun`].
#[derive(Clone, Copy, Debug)]
pub struct RunBlob {
    /// Blob id.
    pub id: Id,
    /// Offset in the pack.
    pub offset: u64,
    /// Encoded length.
    pub length: u32,
    /// Plaintext length.
    pub raw_length: u32,
    /// Blob type (per the index).
    pub kind: BlobType,
}

fn not_indexed(kind: BlobType, id: &Id) -> Error {
    Error::corrupt(
        "index",
        format!(
            "{} blob {} is not in the index (missing pack?)",
            kind.name(),
            id.short()
        ),
    )
}

fn wrong_type(id: &Id, actual: BlobType, expected: BlobType) -> Error {
    Error::corrupt(
        "index",
        format!(
            "blob {} is a {} blob, expected {}",
            id.short(),
            actual.name(),
            expected.name()
        ),
    )
}

impl<S: Locate> Repository<S> {
    /// Reads, authenticates and returns a blob's plaintext (reading a delta
    /// blob's base too).
    pub fn read_blob(&self, kind: BlobType, id: &Id) -> Result<Vec<u8>> {
        self.read_blob_with(kind, id, &|base| self.read_base(base))
    }

    /// Reads a blob and tells whether it is a delta, and against which base
    /// (a copy to another repository keeps it a delta).
    pub fn read_blob_and_base(&self, kind: BlobType, id: &Id) -> Result<(Vec<u8>, Option<Id>)> {
        let named = std::cell::Cell::new(None);
        let plain = self.read_blob_with(kind, id, &|base| {
            named.set(Some(*base));
            self.read_base(base)
        })?;
        Ok((plain, named.get()))
    }

    /// Reads a delta blob's base: a data blob that is not itself a delta.
    pub fn read_base(&self, base: &Id) -> Result<Vec<u8>> {
        self.read_blob_with(BlobType::Data, base, &blob::no_base)
    }

    fn read_blob_with(&self, kind: BlobType, id: &Id, base: blob::BaseLookup) -> Result<Vec<u8>> {
        let locations = self.index.locations(id);
        if locations.is_empty() {
            return Err(not_indexed(kind, id));
        }
        // A damaged copy is not the end: a blob stored twice is read from
        // its other copy. The first copy's error is the one reported.
        let mut first_err = None;
        for (pack, loc) in locations {
            match self.read_copy(kind, id, pack, loc, base) {
                Ok(plain) => return Ok(plain),
                Err(e) => {
                    first_err.get_or_insert(e);
                }
            }
        }
        Err(first_err.unwrap_or_else(|| not_indexed(kind, id)))
    }

    /// Reads one stored copy of a blob (from the original version of its
    /// pack if the pack was overwritten or deleted and the storage kept it).
    fn read_copy(
        &self,
        kind: BlobType,
        id: &Id,
        pack: Id,
        loc: BlobLocation,
        base: blob::BaseLookup,
    ) -> Result<Vec<u8>> {
        self.core
            .with_original_pack(Handle::new(FileKind::Pack, pack), || {
                self.read_copy_once(kind, id, pack, loc, base)
            })
    }

    fn read_copy_once(
        &self,
        kind: BlobType,
        id: &Id,
        pack: Id,
        loc: BlobLocation,
        base: blob::BaseLookup,
    ) -> Result<Vec<u8>> {
        if loc.kind != kind {
            return Err(wrong_type(id, loc.kind, kind));
        }
        let h = Handle::new(FileKind::Pack, pack);
        let backend = &self.core.backend;
        let sealed = match kind {
            BlobType::Tree => backend.read_metadata_range(h, loc.offset, loc.length as usize)?,
            BlobType::Data => backend.read_range(h, loc.offset, loc.length as usize)?,
        };
        let plain = blob::decode(&self.core.key, kind, id, &sealed, &h.rel_path(), base)?;
        if plain.len() != loc.raw_length as usize {
            return Err(Error::corrupt(
                h.rel_path(),
                format!(
                    "blob {} holds {} bytes, the index says {}",
                    id.short(),
                    plain.len(),
                    loc.raw_length
                ),
            ));
        }
        Ok(plain)
    }

    /// Whether the copy of blob `id` at `pack`/`loc` reads back intact.
    pub fn copy_is_intact(&self, id: &Id, pack: Id, loc: BlobLocation) -> bool {
        self.read_copy(loc.kind, id, pack, loc, &|b| self.read_base(b))
            .is_ok()
    }

    /// Reads a run of data blobs with one request; returns their plaintexts
    /// in order (each authenticated and checked like [`Repository::read_blob`]).
    /// If the run cannot be read whole, each blob is read on its own, so a
    /// blob stored twice is read from its other copy.
    pub fn read_run(&self, run: &BlobRun) -> Result<Vec<Vec<u8>>> {
        match self.read_run_at_once(run) {
            Ok(out) => Ok(out),
            Err(e) => {
                let mut out = Vec::with_capacity(run.blobs.len());
                for b in &run.blobs {
                    match self.read_blob(BlobType::Data, &b.id) {
                        Ok(plain) if plain.len() == b.raw_length as usize => out.push(plain),
                        _ => return Err(e),
                    }
                }
                Ok(out)
            }
        }
    }

    fn read_run_at_once(&self, run: &BlobRun) -> Result<Vec<Vec<u8>>> {
        let h = Handle::new(FileKind::Pack, run.pack);
        let what = h.rel_path();
        let len =
            usize::try_from(run.length).map_err(|_| Error::corrupt(&what, "blob run too long"))?;
        let bytes = self.core.backend.read_range(h, run.offset, len)?;
        let mut out = Vec::with_capacity(run.blobs.len());
        for b in &run.blobs {
            if b.kind != BlobType::Data {
                return Err(wrong_type(&b.id, b.kind, BlobType::Data));
            }
            let start = (b.offset - run.offset) as usize;
            let sealed = &bytes[start..start + b.length as usize];
            let plain = blob::decode(
                &self.core.key,
                BlobType::Data,
                &b.id,
                sealed,
                &what,
                &|base| self.read_base(base),
            )?;
            // Restore places blobs by the index's lengths.
            if plain.len() != b.raw_length as usize {
                return Err(Error::corrupt(
                    &what,
                    format!(
                        "blob {} holds {} bytes, the index says {}",
                        b.id.short(),
                        plain.len(),
                        b.raw_length
                    ),
                ));
            }
            out.push(plain);
        }
        Ok(out)
    }

    /// Reads and decodes a tree blob.
    pub fn load_tree(&self, id: &Id) -> Result<Tree> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        Tree::decode(&bytes, &format!("tree {}", id.short()))
    }

    /// A directory node's listing: its inline tree, or its tree blob.
    pub fn listing<'n>(&self, node: &'n Node) -> Result<Cow<'n, Tree>> {
        match (&node.inline, &node.subtree) {
            (Some(t), _) => Ok(Cow::Borrowed(t)),
            (None, Some(id)) => Ok(Cow::Owned(self.load_tree(id)?)),
            (None, None) => Err(Error::corrupt(
                "tree",
                format!("{} has no directory listing", node.display_name()),
            )),
        }
    }

    /// Reads one content-list blob of level `level`.
    pub fn load_content_list(&self, id: &Id, level: u8) -> Result<ContentList> {
        let bytes = self.read_blob(BlobType::Tree, id)?;
        ContentList::decode(&bytes, level, &format!("content list {}", id.short()))
    }

    /// Visits the content lists under `content` (ids of level `depth`)
    /// without expanding shared lists twice: `enter(list)` is asked before
    /// each list is read and returns false for one already handled; `data`
    /// gets every data id of each list read (and `content` itself at depth
    /// 0); `broken(list, error)` gets each list that cannot be read, and
    /// stops the walk by returning an error. Work and memory follow the
    /// number of distinct lists, however often a hostile list repeats.
    pub fn visit_content(
        &self,
        content: &[Id],
        depth: u8,
        enter: &mut dyn FnMut(&Id) -> bool,
        data: &mut dyn FnMut(&Id),
        broken: &mut dyn FnMut(&Id, Error) -> Result<()>,
    ) -> Result<()> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                "tree",
                format!("content depth {depth} out of range"),
            ));
        }
        if depth == 0 {
            content.iter().for_each(&mut *data);
            return Ok(());
        }
        let mut stack: Vec<(Id, u8)> = content.iter().rev().map(|id| (*id, depth)).collect();
        while let Some((id, level)) = stack.pop() {
            if !enter(&id) {
                continue;
            }
            match self.load_content_list(&id, level) {
                Ok(l) if level == 1 => l.ids.iter().for_each(&mut *data),
                Ok(l) => stack.extend(l.ids.iter().rev().map(|c| (*c, level - 1))),
                Err(e) => broken(&id, e)?,
            }
        }
        Ok(())
    }

    /// A file node's data blob ids, in order (reading its content lists).
    /// Fails if there are more than `max` (a hostile list can name one
    /// blob billions of times; callers that need the whole list in memory
    /// bound it by what the file can hold).
    pub fn data_ids_at_most(&self, node: &Node, max: usize) -> Result<Vec<Id>> {
        let mut out = Vec::new();
        for id in self.content_ids(&node.content, node.content_depth)? {
            if out.len() >= max {
                return Err(too_long(node));
            }
            out.push(id?);
        }
        Ok(out)
    }

    /// The data blob ids of content `content` of level `depth`, in order,
    /// read one content list at a time: memory stays at a few lists
    /// whatever the content's length.
    pub fn content_ids<'r>(&'r self, content: &[Id], depth: u8) -> Result<ContentIds<'r, S>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                "tree",
                format!("content depth {depth} out of range"),
            ));
        }
        Ok(ContentIds {
            repo: self,
            stack: vec![(content.to_vec(), 0, depth)],
            failed: false,
        })
    }

    /// A file's data blobs, in order, located, each checked against the
    /// file's recorded size as it comes: content that claims more bytes
    /// than the node (or, at its end, fewer) is damage, reported before
    /// more work is done.
    pub fn file_blobs<'r>(&'r self, node: &'r Node) -> Result<FileBlobs<'r, S>> {
        Ok(FileBlobs {
            ids: self.content_ids(&node.content, node.content_depth)?,
            node,
            total: 0,
            done: false,
        })
    }
}

fn too_long(node: &Node) -> Error {
    Error::corrupt(
        format!("file {}", node.display_name()),
        format!(
            "its content lists describe more than the {} bytes its node records (damaged)",
            node.size
        ),
    )
}

/// See [`Repository::content_ids`].
pub struct ContentIds<'r, S> {
    repo: &'r Repository<S>,
    /// Lists being walked: ids, next position, level of those ids (0: data).
    stack: Vec<(Vec<Id>, usize, u8)>,
    failed: bool,
}

impl<S: Locate> Iterator for ContentIds<'_, S> {
    type Item = Result<Id>;

    fn next(&mut self) -> Option<Result<Id>> {
        loop {
            if self.failed {
                return None;
            }
            let top = self.stack.last_mut()?;
            let Some(&id) = top.0.get(top.1) else {
                self.stack.pop();
                continue;
            };
            top.1 += 1;
            let level = top.2;
            if level == 0 {
                return Some(Ok(id));
            }
            match self.repo.load_content_list(&id, level) {
                Ok(l) => self.stack.push((l.ids, 0, level - 1)),
                Err(e) => {
                    self.failed = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// One data blob of a file, located.
#[derive(Clone, Copy, Debug)]
pub struct FileBlob {
    /// The blob.
    pub id: Id,
    /// The pack it is read from first.
    pub pack: Id,
    /// Where in the pack.
    pub location: BlobLocation,
    /// Offset of its bytes in the file.
    pub file_offset: u64,
}

/// See [`Repository::file_blobs`].
pub struct FileBlobs<'r, S> {
    ids: ContentIds<'r, S>,
    node: &'r Node,
    total: u64,
    done: bool,
}

impl<S: Locate> Iterator for FileBlobs<'_, S> {
    type Item = Result<FileBlob>;

    fn next(&mut self) -> Option<Result<FileBlob>> {
        if self.done {
            return None;
        }
        let step = match self.ids.next() {
            None => {
                self.done = true;
                if self.total != self.node.size {
                    return Some(Err(Error::corrupt(
                        format!("file {}", self.node.display_name()),
                        format!(
                            "its content holds {} bytes, its node records {} (damaged)",
                            self.total, self.node.size
                        ),
                    )));
                }
                return None;
            }
            Some(Err(e)) => Err(e),
            Some(Ok(id)) => match self.ids.repo.locate(&id) {
                None => Err(Error::corrupt(
                    "index",
                    format!("data blob {} is not in the index", id.short()),
                )),
                Some((pack, location)) => {
                    let file_offset = self.total;
                    match self.total.checked_add(u64::from(location.raw_length)) {
                        Some(t) if t <= self.node.size => {
                            self.total = t;
                            Ok(FileBlob {
                                id,
                                pack,
                                location,
                                file_offset,
                            })
                        }
                        _ => Err(too_long(self.node)),
                    }
                }
            },
        };
        if step.is_err() {
            self.done = true;
        }
        Some(step)
    }
}

/// Groups consecutive blobs of a file into runs stored back to back in one
/// pack, each at most `max_bytes` long (see [`Repository::blob_runs`]).
pub struct RunGrouper {
    max_bytes: u64,
    current: Option<(BlobRun, u64)>,
}

impl RunGrouper {
    /// A grouper for runs of at most `max_bytes`.
    pub fn new(max_bytes: u64) -> RunGrouper {
        RunGrouper {
            max_bytes,
            current: None,
        }
    }

    /// Adds the next blob; returns a finished run (with the file offset of
    /// its first byte) when this blob does not continue it.
    pub fn push(&mut self, b: FileBlob) -> Option<(BlobRun, u64)> {
        let blob = RunBlob {
            id: b.id,
            offset: b.location.offset,
            length: b.location.length,
            raw_length: b.location.raw_length,
            kind: b.location.kind,
        };
        if let Some((r, _)) = &mut self.current
            && r.pack == b.pack
            && r.offset + r.length == b.location.offset
            && r.length + u64::from(b.location.length) <= self.max_bytes
        {
            r.length += u64::from(b.location.length);
            r.blobs.push(blob);
            return None;
        }
        let fresh = BlobRun {
            pack: b.pack,
            offset: b.location.offset,
            length: u64::from(b.location.length),
            blobs: vec![blob],
        };
        self.current.replace((fresh, b.file_offset))
    }

    /// The last run, if any.
    pub fn finish(self) -> Option<(BlobRun, u64)> {
        self.current
    }
}
