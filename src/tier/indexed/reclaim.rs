//! The tier's half of space reclamation: removing a dead container and
//! moving the live segments of a mostly dead one, each as one atomic index
//! batch that also carries the reclamation cursor, and pins that keep
//! containers a running job or reader needs. Which segments are live is
//! decided elsewhere (`crate::gc`); this module never sees a PHF.

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::{Alloc, CF_INDEX, CF_META, IndexedTier, KEY_ALLOC, META_MAGIC, META_VERSION, cf, lock, synced};
use crate::error::{Error, Result};
use crate::format::durable::{decode_record, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::tier::pack::OwnedSegment;
use crate::tier::{ContainerKind, StoredSegment};

/// A dead segment whose index entry a drop removes: fingerprint, stored
/// length, raw length.
pub(crate) type Dead = (crate::format::fingerprint::Fingerprint, u64, u64);

/// Key of the reclamation cursor in the `meta` column family.
const KEY_GC: &[u8] = b"gc";
/// Prefix of the keys that name containers whose index entries are gone
/// and whose files are being deleted (`gc-delete/<id:016x>`).
const GC_DELETE: &str = "gc-delete/";

/// A reclamation in progress, durable in the tier: containers below
/// `cursor` are swept; the sweep stops at `end` (the containers that
/// existed when it started).
#[derive(Clone, Copy, Debug, Default, Serialize, Deserialize)]
pub(crate) struct GcRecord {
    pub(crate) cursor: u64,
    pub(crate) end: u64,
    pub(crate) containers_deleted: u64,
    pub(crate) containers_compacted: u64,
    pub(crate) bytes_reclaimed: u64,
    pub(crate) segments_moved: u64,
}

impl IndexedTier {
    /// The reclamation in progress, if any.
    pub(crate) fn gc_record(&self) -> Result<Option<GcRecord>> {
        let key_what = || format!("reclamation record in {}", self.db_path().display());
        match self.db.get_cf(cf(&self.db, CF_META), KEY_GC).map_err(|e| self.dberr(e))? {
            None => Ok(None),
            Some(v) => decode_record(META_MAGIC, 1, &v, &key_what).map(Some),
        }
    }

    /// Records a reclamation's progress (durable), or its end (`None`).
    pub(crate) fn gc_commit(&self, record: Option<&GcRecord>) -> Result<()> {
        self.check_poison()?;
        let mut batch = WriteBatch::default();
        match record {
            Some(r) => batch.put_cf(cf(&self.db, CF_META), KEY_GC, encode_record(META_MAGIC, 1, r)),
            None => batch.delete_cf(cf(&self.db, CF_META), KEY_GC),
        }
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)
    }

    /// Whether a running job or a reader in this process has pinned `id`.
    pub(crate) fn pinned(&self, id: ContainerId) -> bool {
        lock(&self.pins).values().any(|p| p.contains(&id.0))
    }

    /// Drops containers: in one synced batch, the index entries of each
    /// one's dead segments (those whose home is that container), the
    /// allocation counters, the reclamation cursor, and a note per
    /// container that its file is to be deleted; then deletes the files
    /// (made durable together) and the notes. A crash before the batch
    /// changes nothing; after it, the notes make the next open finish the
    /// deletions. Dropping a sweep's dead containers a group at a time
    /// makes two syncs per group, not two per container (at 11M segments,
    /// 170 containers' syncs were a third of a sweep).
    pub(crate) fn gc_drop(&self, drops: &[(ContainerId, Vec<Dead>)], record: &GcRecord) -> Result<()> {
        self.check_poison()?;
        if drops.is_empty() {
            return Ok(());
        }
        let _writers = lock(&self.reserved);
        let mut alloc = lock(&self.alloc);
        let mut batch = WriteBatch::default();
        let dead: Vec<&Dead> = drops.iter().flat_map(|d| &d.1).collect();
        let next = self.unindex(&mut batch, dead, drops.len() as u64, &alloc);
        let ids: Vec<ContainerId> = drops.iter().map(|d| d.0).collect();
        self.commit_drop(batch, &next, &ids, record)?;
        *alloc = next;
        drop(alloc);
        self.finish_deletes(&ids)
    }

    /// Adds the allocation record, the cursor and each of `ids`' deletion
    /// note to `batch` and writes it, synced: the one durable step of a
    /// sweep.
    fn commit_drop(&self, mut batch: WriteBatch, next: &Alloc, ids: &[ContainerId], record: &GcRecord) -> Result<()> {
        batch.put_cf(cf(&self.db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, next));
        batch.put_cf(cf(&self.db, CF_META), KEY_GC, encode_record(META_MAGIC, 1, record));
        for id in ids {
            batch.put_cf(cf(&self.db, CF_META), delete_key(*id), []);
        }
        crate::testing::crashpoint::hit("gc.before_batch");
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)?;
        crate::testing::crashpoint::hit("gc.before_unlink");
        Ok(())
    }

    /// Moves the `live` segments of container `id` into a new container of
    /// `kind`, re-pointing their index entries, and drops `id` as
    /// [`gc_drop`](Self::gc_drop) does, in the same synced batch. Returns
    /// the new container's id.
    pub(crate) fn gc_move(
        &self,
        id: ContainerId,
        kind: ContainerKind,
        live: &[OwnedSegment],
        dead: &[Dead],
        record: &GcRecord,
    ) -> Result<ContainerId> {
        self.check_poison()?;
        // Hold the id allocator for the whole move: no other writer can be
        // between writing and indexing while the counters are adjusted.
        let mut reserved = lock(&self.reserved);
        let mut alloc = lock(&self.alloc);
        if *reserved != alloc.next_container {
            return Err(Error::internal("space reclamation started while a container was being written"));
        }
        let new = ContainerId(alloc.next_container);
        let stored: Vec<StoredSegment<'_>> = live
            .iter()
            .map(|s| StoredSegment { fingerprint: s.fingerprint, bytes: &s.bytes, raw_len: s.raw_len, codec: s.codec })
            .collect();
        let bytes = crate::format::container::encode(new, kind, &stored);
        let r = self.store.put(new, bytes);
        self.poison(r)?;
        let mut batch = WriteBatch::default();
        let mut next = self.unindex(&mut batch, dead.iter().collect(), 1, &alloc);
        let index = cf(&self.db, CF_INDEX);
        let mut moved: Vec<&OwnedSegment> = live.iter().collect();
        moved.sort_unstable_by_key(|s| s.fingerprint);
        for s in moved {
            batch.put_cf(index, s.fingerprint.0, new.0.to_le_bytes());
        }
        // The moved segments keep their counts (same bytes, new home); the
        // old container is gone and the new one counts.
        next.next_container += 1;
        next.containers += 1;
        self.commit_drop(batch, &next, &[id], record)?;
        *alloc = next;
        *reserved = next.next_container;
        drop(alloc);
        drop(reserved);
        self.finish_deletes(&[id])?;
        Ok(new)
    }

    /// Index deletes for `dead`, the entries whose home is `id` (as the
    /// caller looked them up; the alloc lock held here keeps any other
    /// index batch out, and no other writer re-points an entry whose
    /// container is readable), and the counters without them and the
    /// container.
    fn unindex(&self, batch: &mut WriteBatch, mut dead: Vec<&Dead>, containers: u64, alloc: &Alloc) -> Alloc {
        let index = cf(&self.db, CF_INDEX);
        let mut next = *alloc;
        // In key order, as ingest's inserts: the memtable's skiplist then
        // finds each delete's place from the previous one's (unordered,
        // the deletes of a sweep at 11M segments were a quarter of its
        // time). The sweep hands each container's list sorted, so a
        // stable sort only merges the runs; a fingerprint listed twice
        // (only a damaged index can home one in two containers) is then
        // adjacent, and counted once.
        dead.sort_by_key(|d| d.0);
        let mut last = None;
        for (fp, stored, raw) in dead {
            if last != Some(fp) {
                last = Some(fp);
                batch.delete_cf(index, fp.0);
                next.segments = next.segments.saturating_sub(1);
                next.stored_bytes = next.stored_bytes.saturating_sub(*stored);
                next.raw_bytes = next.raw_bytes.saturating_sub(*raw);
            }
        }
        next.containers = next.containers.saturating_sub(containers);
        next
    }

    /// Deletes containers' files, then their deletion notes.
    fn finish_deletes(&self, ids: &[ContainerId]) -> Result<()> {
        self.store.delete_many(ids)?;
        // A retired container's note goes with it (after the file: a crash
        // between the two leaves a note naming nothing, which is harmless).
        let mut batch = WriteBatch::default();
        for id in ids {
            self.tables.forget(*id);
            batch.delete_cf(cf(&self.db, CF_META), super::retire::retired_key(*id));
            batch.delete_cf(cf(&self.db, CF_META), delete_key(*id));
        }
        self.db.write(batch).map_err(|e| self.dberr(e))
    }

    /// Finishes deletions a crash interrupted (called by `open`).
    pub(crate) fn finish_pending_deletes(&self) -> Result<()> {
        let mut ids = Vec::new();
        for item in self.db.prefix_iterator_cf(cf(&self.db, CF_META), GC_DELETE.as_bytes()) {
            let (k, _) = item.map_err(|e| self.dberr(e))?;
            let Some(hex) = k.strip_prefix(GC_DELETE.as_bytes()) else { break };
            let id = std::str::from_utf8(hex).ok().and_then(|h| u64::from_str_radix(h, 16).ok()).ok_or_else(|| {
                Error::corrupt_record(format!("deletion note in {}", self.db_path().display()), "malformed key")
            })?;
            ids.push(ContainerId(id));
        }
        for id in &ids {
            log::warn!("recovery: finishing the deletion of reclaimed container {id}");
        }
        self.finish_deletes(&ids)
    }
}

fn delete_key(id: ContainerId) -> Vec<u8> {
    format!("{GC_DELETE}{id}").into_bytes()
}
