//! `IndexedTier`'s implementations of the tier traits: lookups, listings
//! and reads, and the durable container write with its index batch.

use rocksdb::{Direction, IteratorMode, WriteBatch};

use std::sync::MutexGuard;

use super::{
    Alloc, CF_INDEX, CF_META, CF_NAMESPACE, IndexedTier, KEY_ALLOC, KEY_NS_SEQ, META_MAGIC, META_VERSION, NAMESPACE_BATCH, Pin,
    cf, decode_container_id, lock, namespace_batch, scan, synced, validate_path,
};
use crate::error::{Error, Result, TierError};
use crate::format::container;
use crate::format::durable::encode_record;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::layout::container_file;
use crate::tier::store::NamespaceOp;
use crate::tier::{ContainerKind, ContainerMeta, SegmentEntry, StoredSegment};
use crate::tier::{FileEntry, IndexEntry, SourceTier, TargetTier, Tier, TierId};

impl Tier for IndexedTier {
    fn tier_id(&self) -> Result<TierId> {
        Ok(self.id)
    }

    fn pin(&self, ids: &[ContainerId], and_after: Option<ContainerId>) -> Result<u64> {
        let token = self.next_pin.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let pin = Pin { ids: ids.iter().map(|c| c.0).collect(), from: and_after.map(|c| c.0) };
        lock(&self.pins).insert(token, pin);
        Ok(token)
    }

    fn unpin(&self, token: u64) {
        lock(&self.pins).remove(&token);
    }

    fn hold(&self, hold: &crate::tier::JobHold) -> Result<()> {
        self.put_hold(hold)
    }

    fn release_hold(&self, job: &uuid::Uuid) -> Result<()> {
        self.drop_hold(job)
    }

    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>> {
        let index = cf(&self.db, CF_INDEX);
        // Looked up in key order (RocksDB walks each block once for a
        // sorted batch), answered in the caller's order.
        let mut order: Vec<usize> = (0..fingerprints.len()).collect();
        order.sort_unstable_by_key(|&i| fingerprints[i]);
        let keys: Vec<&[u8]> = order.iter().map(|&i| &fingerprints[i].0[..]).collect();
        let mut out = vec![None; fingerprints.len()];
        for (r, &i) in self.db.batched_multi_get_cf(index, keys, true).into_iter().zip(&order) {
            if let Some(v) = r.map_err(|e| self.dberr(e))? {
                out[i] = Some(decode_container_id(&v).ok_or_else(|| {
                    Error::corrupt_record(
                        format!("index entry for {} in {}", fingerprints[i], self.db_path().display()),
                        "value is not a container id",
                    )
                })?);
            }
        }
        Ok(out)
    }

    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>> {
        let ns = cf(&self.db, CF_NAMESPACE);
        let mode = match after {
            Some(a) => IteratorMode::From(a.as_bytes(), Direction::Forward),
            None => IteratorMode::Start,
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf_opt(ns, scan(), mode) {
            let (k, v) = item.map_err(|e| self.dberr(e))?;
            if after.is_some_and(|a| a.as_bytes() == &*k) {
                continue;
            }
            out.push(self.decode_namespace(&k, &v)?);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>> {
        let ns = cf(&self.db, CF_NAMESPACE);
        let keys: Vec<&[u8]> = paths.iter().map(std::string::String::as_bytes).collect();
        self.db
            .batched_multi_get_cf(ns, keys, false)
            .into_iter()
            .zip(paths)
            .map(|(r, p)| match r.map_err(|e| self.dberr(e))? {
                None => Ok(None),
                Some(v) => self.decode_namespace(p.as_bytes(), &v).map(Some),
            })
            .collect()
    }
    fn container_ids(&self) -> Result<Vec<ContainerId>> {
        let next = lock(&self.alloc).next_container;
        let mut ids = self.store.list()?;
        // A container being written right now is not yet indexed.
        ids.retain(|id| id.0 < next);
        Ok(ids)
    }
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta> {
        self.store.read_meta(id)
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        self.store.read_segments(id, which)
    }

    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<bytes::Bytes>> {
        self.store.read_segments_shared(id, which)
    }
}

/// Container reads in flight from an object store (see
/// `SourceTier::read_concurrency`): 8 x 4 MiB in flight covers a
/// round trip of tens of milliseconds at the gateway's bandwidth.
const REMOTE_READS: usize = 8;

impl IndexedTier {
    /// One index entry, decoded (a malformed one is a corrupt record).
    fn index_entry(&self, k: &[u8], v: &[u8]) -> Result<IndexEntry> {
        let bad = || {
            Error::corrupt_record(
                format!("index entry {:02x?} in {}", &k[..k.len().min(32)], self.db_path().display()),
                "malformed key or value",
            )
        };
        Ok((Fingerprint::from_slice(k).ok_or_else(bad)?, decode_container_id(v).ok_or_else(bad)?))
    }
}

impl SourceTier for IndexedTier {
    fn fingerprint_count(&self) -> Result<u64> {
        Ok(lock(&self.alloc).segments)
    }

    fn read_concurrency(&self) -> usize {
        // Each read from a bucket is a round trip: enough in flight to
        // hide it. A local disk reads ahead by itself.
        if self.is_remote() { REMOTE_READS } else { 1 }
    }

    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        let mut out = Vec::with_capacity(limit.min(1 << 16));
        let mut it = self.db.raw_iterator_cf_opt(cf(&self.db, CF_INDEX), scan());
        match after {
            Some(a) => it.seek(a.0),
            None => it.seek_to_first(),
        }
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            let entry = self.index_entry(k, v)?;
            if after != Some(&entry.0) {
                out.push(entry);
                if out.len() >= limit {
                    break;
                }
            }
            it.next();
        }
        it.status().map_err(|e| self.dberr(e))?;
        Ok(out)
    }

    fn for_each_index_page(&self, page: usize, f: &mut dyn FnMut(&[IndexEntry]) -> Result<()>) -> Result<()> {
        // One iterator for the whole scan, over slices of RocksDB's blocks:
        // paging through `fingerprints` seeks again per page, and the
        // owning iterator allocates a key and a value per entry (at 11M
        // entries, 22M allocations).
        let page = page.max(1);
        let mut buf = Vec::with_capacity(page.min(1 << 16));
        let mut it = self.db.raw_iterator_cf_opt(cf(&self.db, CF_INDEX), scan());
        it.seek_to_first();
        while let (Some(k), Some(v)) = (it.key(), it.value()) {
            buf.push(self.index_entry(k, v)?);
            if buf.len() >= page {
                f(&buf)?;
                buf.clear();
            }
            it.next();
        }
        it.status().map_err(|e| self.dberr(e))?;
        if !buf.is_empty() {
            f(&buf)?;
        }
        Ok(())
    }

    fn remove_files(&self, entries: &[FileEntry]) -> Result<Vec<bool>> {
        let paths: Vec<String> = entries.iter().map(|e| e.path.clone()).collect();
        let mut gone = Vec::with_capacity(entries.len());
        // Compared and removed under the namespace lock, so an upsert
        // cannot slip between the comparison and the removal.
        self.commit_namespace(|| {
            let current = self.file_entries(&paths)?;
            let mut ops = Vec::new();
            for (want, have) in entries.iter().zip(current) {
                match have {
                    Some(h) if h == *want => {
                        ops.push(NamespaceOp::Delete(want.path.clone()));
                        gone.push(true);
                    }
                    Some(_) => {
                        log::warn!("{}: {:?} changed since it was selected; kept", self.dir.display(), want.path);
                        gone.push(false);
                    }
                    None => gone.push(true),
                }
            }
            Ok(ops)
        })?;
        Ok(gone)
    }
}

impl TargetTier for IndexedTier {
    fn container_target_size(&self) -> u64 {
        self.config.container_size
    }

    fn upsert_files(&self, entries: &[FileEntry]) -> Result<()> {
        for e in entries {
            validate_path(&e.path)?;
        }
        self.commit_namespace(|| Ok(entries.iter().cloned().map(NamespaceOp::Put).collect()))
    }

    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64> {
        self.retire(suspects)
    }

    fn sorted_index_len(&self) -> Result<Option<u64>> {
        // The index is keyed by fingerprint, so its scan is in order.
        Ok(Some(lock(&self.alloc).segments))
    }

    fn sorted_index_page(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        SourceTier::fingerprints(self, after, limit)
    }

    fn write_container(&self, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Result<ContainerId> {
        self.check_poison()?;
        // Containers are written and fsynced outside any lock, so several
        // can be in flight at once (one sequential fsync per container caps
        // a disk here at about a third of its throughput). Each is indexed
        // strictly in id order, its batch carrying next_container = id + 1,
        // so after a crash every file at or past next_container is one
        // that was never indexed, and recovery removes it.
        let id = {
            let mut r = lock(&self.reserved);
            let id = ContainerId(*r);
            *r += 1;
            id
        };
        let head = container::encode_head(id, kind, segments);
        let data: Vec<&[u8]> = segments.iter().map(|s| s.bytes).collect();
        let r = self.store.put_parts(id, head, &data);
        if r.is_err() {
            // Later writers wait for this id's turn: wake them to see the poison.
            let r = self.poison(r);
            self.indexed.notify_all();
            r?;
        }
        crate::testing::crashpoint::hit("tier.sealed_not_indexed");
        let mut alloc = lock(&self.alloc);
        while alloc.next_container != id.0 {
            self.check_poison()?;
            alloc = self.indexed.wait(alloc).unwrap_or_else(std::sync::PoisonError::into_inner);
        }
        let result = self.index_container(&mut alloc, id, segments);
        drop(alloc);
        self.indexed.notify_all();
        result
    }
}

impl IndexedTier {
    /// Commits namespace changes, which `make` computes under the
    /// namespace lock: first to the store's journal where it keeps one
    /// (an object tier's bucket, so a tier recovered from the bucket has
    /// every change this call acknowledges), then as one synced local
    /// batch. A failure of either poisons the handle: the journal entry
    /// may exist without its local commit, and `open` rolls it forward.
    pub(super) fn commit_namespace(&self, make: impl FnOnce() -> Result<Vec<NamespaceOp>>) -> Result<()> {
        self.check_poison()?;
        let mut seq = lock(&self.ns_seq);
        let ops = make()?;
        // In bounded batches: RocksDB holds a batch whole in its memtable,
        // and replays it whole from the WAL at the next open (one batch of
        // 5M deletions, `rm` of a large directory, took 930 MiB there).
        // Each batch is durable and idempotent, so a crash between two
        // leaves a prefix done that the same call made again completes.
        for ops in ops.chunks(NAMESPACE_BATCH) {
            let mut batch = namespace_batch(&self.db, ops);
            if self.store.journals() {
                let r = self.store.journal(*seq, ops);
                self.poison(r)?;
                batch.put_cf(cf(&self.db, CF_META), KEY_NS_SEQ, (*seq + 1).to_le_bytes());
            }
            let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
            self.poison(r)?;
            let committed = *seq;
            *seq += 1;
            if self.store.checkpoint_due(committed) {
                let r = self.store.checkpoint(committed, &mut |after, limit| self.list_files(after, limit));
                if let Err(e) = r {
                    log::warn!(
                        "{}: namespace checkpoint at {committed} not written ({e}); the journal stays whole",
                        self.store.describe()
                    );
                }
            }
        }
        Ok(())
    }

    /// Indexes container `id` (its turn has come): one synced batch with
    /// its fresh index entries, any stale ones it takes over, and the
    /// allocation record.
    pub(super) fn index_container(
        &self,
        alloc: &mut MutexGuard<'_, Alloc>,
        id: ContainerId,
        segments: &[StoredSegment<'_>],
    ) -> Result<ContainerId> {
        // Index every fingerprint the tier does not already have; a known
        // one keeps its mapping so nothing is ever referenced twice.
        let fps: Vec<Fingerprint> = segments.iter().map(|s| s.fingerprint).collect();
        let known = self.locate(&fps)?;
        let index = cf(&self.db, CF_INDEX);
        let mut next = **alloc;
        next.next_container += 1;
        next.containers += 1;
        let mut batch = WriteBatch::default();
        let mut fresh = std::collections::HashSet::new();
        let mut fresh_keys: Vec<Fingerprint> = Vec::with_capacity(segments.len());
        // Tables of the containers known fingerprints point to, read once.
        let mut tables: std::collections::HashMap<ContainerId, Option<std::collections::HashSet<Fingerprint>>> =
            std::collections::HashMap::new();
        for (seg, k) in segments.iter().zip(known) {
            let fp = &seg.fingerprint;
            if !fresh.insert(*fp) {
                continue;
            }
            match k {
                None => {
                    fresh_keys.push(*fp);
                    next.segments += 1;
                    next.stored_bytes += seg.bytes.len() as u64;
                    next.raw_bytes += u64::from(seg.raw_len);
                }
                Some(old) => {
                    // A mapping to a container that is gone, unreadable or
                    // does not list the segment is stale: this container
                    // takes it over, so the copy just written is the one
                    // readers find.
                    if let std::collections::hash_map::Entry::Vacant(slot) = tables.entry(old) {
                        // Only an answer about the bytes makes it unusable:
                        // a transient error (an object store timing out)
                        // must not re-point a sound segment (the bug
                        // "read_metadata(old).ok()?"). It fails the write,
                        // and poisons the handle so later writers waiting
                        // for this id's turn stop too.
                        let listed = match self.read_metadata(old) {
                            Ok(meta) => Some(meta.segments.iter().map(|e| e.fingerprint).collect()),
                            Err(e) if e.is_rot() || matches!(e, Error::Tier(TierError::MissingContainer { .. })) => None,
                            Err(e) => return self.poison(Err(e)),
                        };
                        slot.insert(listed);
                    }
                    let table = &tables[&old];
                    if !table.as_ref().is_some_and(|t| t.contains(fp)) {
                        log::warn!(
                            "{}: segment {fp} was indexed in unusable container {old}; re-pointed to {id}",
                            self.dir.display()
                        );
                        batch.put_cf(index, fp.0, id.0.to_le_bytes());
                        next.stored_bytes += seg.bytes.len() as u64;
                        next.raw_bytes += u64::from(seg.raw_len);
                    }
                }
            }
        }
        // In key order: the memtable's skiplist then finds each insert's
        // place from the previous one's instead of from its head.
        fresh_keys.sort_unstable();
        for fp in &fresh_keys {
            batch.put_cf(index, fp.0, id.0.to_le_bytes());
        }
        batch.put_cf(cf(&self.db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &next));
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)?;
        crate::testing::crashpoint::step("index", &container_file(id));
        **alloc = next;
        Ok(id)
    }
}
