//! Reading blobs back: locate, fetch the byte range, authenticate, decode.
//!
//! Every blob read here is decrypted, its id re-hashed from the plaintext
//! (by [`crate::format::blob::decode`]) and its type checked against the
//! index, so what a caller gets is exactly what was stored under that id.
//! Directory listings ([`Tree`]) and a file's content lists are blobs too;
//! their readers live here, on top of [`Repository::read_blob`].

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

    /// Reads a delta blob's base: a data blob that is not itself a delta.
    pub fn read_base(&self, base: &Id) -> Result<Vec<u8>> {
        self.read_blob_with(BlobType::Data, base, &blob::no_base)
    }

    fn read_blob_with(&self, kind: BlobType, id: &Id, base: blob::BaseLookup) -> Result<Vec<u8>> {
        let (pack, loc) = self.locate(id).ok_or_else(|| not_indexed(kind, id))?;
        if loc.kind != kind {
            return Err(wrong_type(id, loc.kind, kind));
        }
        let h = Handle::new(FileKind::Pack, pack);
        let sealed = self
            .core
            .backend
            .read_range(h, loc.offset, loc.length as usize)?;
        blob::decode(&self.core.key, kind, id, &sealed, &h.rel_path(), base)
    }

    /// Groups the data blobs `ids` (a file's content, in order) into runs
    /// stored back to back in one pack, each at most `max_bytes` long, so
    /// that a restore reads a run with one request instead of one per blob
    /// (a database cut at its pages has one blob per 4 KiB).
    pub fn blob_runs(&self, ids: &[Id], max_bytes: u64) -> Result<Vec<BlobRun>> {
        let mut runs: Vec<BlobRun> = Vec::new();
        for id in ids {
            let (pack, loc) = self.locate(id).ok_or_else(|| {
                Error::corrupt(
                    "index",
                    format!("data blob {} is not in the index", id.short()),
                )
            })?;
            let blob = RunBlob {
                id: *id,
                offset: loc.offset,
                length: loc.length,
                raw_length: loc.raw_length,
                kind: loc.kind,
            };
            match runs.last_mut() {
                Some(r)
                    if r.pack == pack
                        && r.offset + r.length == loc.offset
                        && r.length + u64::from(loc.length) <= max_bytes =>
                {
                    r.length += u64::from(loc.length);
                    r.blobs.push(blob);
                }
                _ => runs.push(BlobRun {
                    pack,
                    offset: loc.offset,
                    length: u64::from(loc.length),
                    blobs: vec![blob],
                }),
            }
        }
        Ok(runs)
    }

    /// Reads a run of data blobs with one request; returns their plaintexts
    /// in order (each authenticated and checked like [`Repository::read_blob`]).
    pub fn read_run(&self, run: &BlobRun) -> Result<Vec<Vec<u8>>> {
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

    /// Expands content ids of level `depth` into data blob ids, calling
    /// `on_list` with every content-list blob id met (each once per
    /// occurrence).
    pub fn expand_content(
        &self,
        content: &[Id],
        depth: u8,
        on_list: &mut dyn FnMut(&Id),
    ) -> Result<Vec<Id>> {
        if depth > MAX_DEPTH {
            return Err(Error::corrupt(
                "tree",
                format!("content depth {depth} out of range"),
            ));
        }
        let mut cur = content.to_vec();
        for level in (1..=depth).rev() {
            let mut next = Vec::new();
            for id in &cur {
                on_list(id);
                next.extend(self.load_content_list(id, level)?.ids);
            }
            cur = next;
        }
        Ok(cur)
    }

    /// Like [`Repository::expand_content`] for `check`: never stops early.
    /// Returns the data ids of every readable list (so they count as used)
    /// and the first problem.
    pub fn expand_content_lenient(
        &self,
        content: &[Id],
        depth: u8,
        on_list: &mut dyn FnMut(&Id),
    ) -> (Vec<Id>, Option<String>) {
        let mut problem = None;
        let mut cur = content.to_vec();
        for level in (1..=depth.min(MAX_DEPTH)).rev() {
            let mut next = Vec::new();
            for id in &cur {
                on_list(id);
                match self.load_content_list(id, level) {
                    Ok(l) => next.extend(l.ids),
                    Err(e) => {
                        problem.get_or_insert_with(|| {
                            format!("content list {} unreadable: {e}", id.short())
                        });
                    }
                }
            }
            cur = next;
        }
        (cur, problem)
    }

    /// A file node's data blob ids, in order (reading its content lists).
    pub fn data_ids(&self, node: &Node) -> Result<Vec<Id>> {
        self.expand_content(&node.content, node.content_depth, &mut |_| {})
    }
}
