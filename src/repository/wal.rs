//! Records of archived PostgreSQL WAL files (`wal/<id>`): writing one
//! (create-new, so two pushes of one name cannot both win), reading one by
//! cluster and name, listing all, removing.

use super::{NoIndex, Repository};
use crate::backend::{FileKind, Handle};
use crate::error::{Error, Result};
use crate::format::id::Id;
use crate::format::wal::{WalFile, record_id};

impl<S> Repository<S> {
    /// The record id of WAL file `name` of cluster `system_id`.
    pub fn wal_record_id(&self, system_id: u64, name: &str) -> Id {
        record_id(&self.core.key, system_id, name)
    }

    /// Writes a WAL record; fails with [`Error::AlreadyExists`] if one of
    /// that cluster and name exists. Everything it references must be
    /// durable first.
    pub fn save_wal_record(&self, w: &WalFile) -> Result<Id> {
        let id = self.wal_record_id(w.system_id, &w.name);
        let bytes = w.encode(&self.core.key)?;
        self.core
            .backend
            .write(Handle::new(FileKind::Wal, id), &bytes)?;
        Ok(id)
    }

    /// Reads the record of `name` of cluster `system_id`; `None` if there
    /// is none.
    pub fn find_wal_record(&self, system_id: u64, name: &str) -> Result<Option<WalFile>> {
        let id = self.wal_record_id(system_id, name);
        match self.read_wal_record(&id) {
            Ok(w) => Ok(Some(w)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Reads and authenticates the record stored as `wal/<id>`.
    pub fn read_wal_record(&self, id: &Id) -> Result<WalFile> {
        let h = Handle::new(FileKind::Wal, *id);
        let what = h.rel_path();
        let w = self
            .core
            .read_decoded(h, |bytes| WalFile::decode(&self.core.key, bytes, &what))?;
        if self.wal_record_id(w.system_id, &w.name) != *id {
            return Err(Error::corrupt(
                what,
                format!(
                    "holds the record of {} of another name (moved or forged)",
                    w.name
                ),
            ));
        }
        Ok(w)
    }

    /// Every WAL record: those that read, and the errors of those that do
    /// not (by id).
    pub fn load_wal_records(&self) -> Result<WalRecords> {
        let ids: Vec<Id> = self
            .core
            .backend
            .list(FileKind::Wal)?
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        let at_once = self.core.backend.write_concurrency().clamp(1, 16);
        let plain: Repository<NoIndex> = Repository {
            core: self.core.clone(),
            index: NoIndex,
        };
        let plain = &plain;
        let mut out = WalRecords::default();
        for group in ids.chunks(at_once * 4) {
            let results: Vec<(Id, Result<WalFile>)> = std::thread::scope(|s| {
                let handles: Vec<_> = group
                    .chunks(group.len().div_ceil(at_once))
                    .map(|part| {
                        s.spawn(move || {
                            part.iter()
                                .map(|id| (*id, plain.read_wal_record(id)))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .flat_map(|h| h.join().unwrap_or_default())
                    .collect()
            });
            for (id, r) in results {
                match r {
                    Ok(w) => out.records.push((id, w)),
                    Err(e) if e.is_not_found() => {}
                    Err(e) => out.unreadable.push((id, e.to_string())),
                }
            }
        }
        out.records
            .sort_by(|a, b| (a.1.system_id, &a.1.name).cmp(&(b.1.system_id, &b.1.name)));
        Ok(out)
    }

    /// Removes a WAL record (its blobs become garbage for prune).
    pub fn remove_wal_record(&self, id: &Id) -> Result<()> {
        self.core.remove_or_hide(Handle::new(FileKind::Wal, *id))
    }
}

/// What [`Repository::load_wal_records`] found.
#[derive(Default)]
pub struct WalRecords {
    /// Readable records, by cluster and name.
    pub records: Vec<(Id, WalFile)>,
    /// Records that could not be read, with the reason.
    pub unreadable: Vec<(Id, String)>,
}
