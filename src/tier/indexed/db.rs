//! The tier's RocksDB: the options of its column families (one block
//! cache and memtable budget per process), and the small helpers every
//! batch goes through.

use std::path::Path;

use rocksdb::{ColumnFamily, DB, Options, WriteBatch, WriteOptions};

use super::{Alloc, CF_INDEX, CF_META, CF_NAMESPACE, IndexedTier};
use crate::error::{Error, Result};
use crate::format::fingerprint::ContainerId;
use crate::tier::ContainerMeta;
use crate::tier::store::NamespaceOp;

/// Block cache shared by every tier a process opens and all their column
/// families (index and filter blocks included, so they are bounded too).
const BLOCK_CACHE: usize = 64 << 20;
/// The memtables of every tier a process opens, together.
const DB_WRITE_BUFFERS: usize = 64 << 20;

/// The block cache and the memtable budget, one per process: a job opens
/// a source and a target (and an embedder may open many tiers), and each
/// tier with caches of its own made RocksDB's share of a job's memory grow
/// with the tiers open (two tiers: 256 MiB of the 776 MiB peak at 11M
/// segments).
pub(super) fn shared_memory() -> &'static (rocksdb::Cache, rocksdb::WriteBufferManager) {
    static SHARED: std::sync::OnceLock<(rocksdb::Cache, rocksdb::WriteBufferManager)> = std::sync::OnceLock::new();
    SHARED.get_or_init(|| {
        (
            rocksdb::Cache::new_lru_cache(BLOCK_CACHE),
            rocksdb::WriteBufferManager::new_write_buffer_manager(DB_WRITE_BUFFERS, false),
        )
    })
}

impl IndexedTier {
    /// What this tier's RocksDB holds in memory now (see [`MemoryUsage`]):
    /// for an embedder watching a long job, and for the bench's account of
    /// what grows with a tier's size.
    ///
    /// [`MemoryUsage`]: super::MemoryUsage
    pub fn memory_usage(&self) -> Result<super::MemoryUsage> {
        let (cache, buffers) = shared_memory();
        let mut table_readers = 0u64;
        for name in [CF_INDEX, CF_NAMESPACE, CF_META] {
            let v = self
                .db
                .property_int_value_cf(cf(&self.db, name), "rocksdb.estimate-table-readers-mem")
                .map_err(|e| self.dberr(e))?;
            // RocksDB answers None only for a property it does not know.
            table_readers += v.ok_or_else(|| Error::internal("RocksDB lacks rocksdb.estimate-table-readers-mem"))?;
        }
        Ok(super::MemoryUsage {
            block_cache: cache.get_usage() as u64,
            block_cache_pinned: cache.get_pinned_usage() as u64,
            memtables: buffers.get_usage() as u64,
            table_readers,
        })
    }
}

/// Options of each column family. RocksDB's defaults (which `open_cf`
/// gives every family whatever the database options say) keep no bloom
/// filters, so every lookup of a fingerprint the tier lacks (most of
/// Copy's lookups on a target) read a data block, and hold index and
/// filter blocks outside any cache, unbounded (the scale probe: RSS grew
/// with the index). Here: a whole-key bloom filter (10 bits per key),
/// partitioned index and filters in one bounded block cache (the top
/// level and level 0 pinned).
pub(super) fn cf_options() -> Vec<(&'static str, Options)> {
    let cache = &shared_memory().0;
    [CF_INDEX, CF_NAMESPACE, CF_META]
        .into_iter()
        .map(|name| {
            let mut table = rocksdb::BlockBasedOptions::default();
            table.set_block_cache(cache);
            table.set_bloom_filter(10.0, false);
            // Partitioned: a lookup reads one small index partition and
            // one filter partition through the cache, not a whole table's
            // index (with one index block per table and a bounded cache,
            // every lookup at 10M keys copied and checksummed megabytes).
            table.set_index_type(rocksdb::BlockBasedIndexType::TwoLevelIndexSearch);
            table.set_partition_filters(true);
            table.set_metadata_block_size(4096);
            table.set_cache_index_and_filter_blocks(true);
            table.set_pin_top_level_index_and_filter(true);
            table.set_pin_l0_filter_and_index_blocks_in_cache(true);
            let mut o = Options::default();
            o.set_block_based_table_factory(&table);
            // A whole-key bloom filter in front of each memtable: most of
            // Copy's lookups are of fingerprints the target lacks, and
            // without it each searched the whole skiplist (a quarter of a
            // job's time at 1M segments, by perf).
            o.set_memtable_prefix_bloom_ratio(0.05);
            o.set_memtable_whole_key_filtering(true);
            (name, o)
        })
        .collect()
}

/// Read options of a sequential scan (the index paged through by a PHF
/// build, the namespace listed): read ahead, and keep the scanned blocks
/// out of the block cache, which serves the point lookups.
pub(super) fn scan() -> rocksdb::ReadOptions {
    let mut o = rocksdb::ReadOptions::default();
    o.set_readahead_size(4 << 20);
    o.fill_cache(false);
    o
}

pub(super) fn cf<'a>(db: &'a DB, name: &str) -> &'a ColumnFamily {
    // The three families are created with the database and opened by name
    // on every open, so a missing handle is a programming error.
    db.cf_handle(name).unwrap_or_else(|| panic!("column family {name} not opened"))
}

/// One batch applying namespace changes.
pub(super) fn namespace_batch(db: &DB, ops: &[NamespaceOp]) -> WriteBatch {
    let ns = cf(db, CF_NAMESPACE);
    let mut batch = WriteBatch::default();
    for op in ops {
        match op {
            NamespaceOp::Put(e) => batch.put_cf(ns, e.path.as_bytes(), IndexedTier::namespace_value(e)),
            NamespaceOp::Delete(p) => batch.delete_cf(ns, p.as_bytes()),
        }
    }
    batch
}

/// The index entries that make container `meta` the home of every
/// fingerprint it lists and the index lacks (the first container listing a
/// fingerprint keeps it), counted into `alloc` with the container itself.
/// Used where a container is indexed from its table alone: adopted at
/// open, or read back by an object tier's recovery.
pub(super) fn index_table(db: &DB, db_path: &Path, meta: &ContainerMeta, alloc: &mut Alloc) -> Result<WriteBatch> {
    let index = cf(db, CF_INDEX);
    let keys: Vec<&[u8]> = meta.segments.iter().map(|e| &e.fingerprint.0[..]).collect();
    let known = db.batched_multi_get_cf(index, keys, false);
    let mut batch = WriteBatch::default();
    let mut fresh = std::collections::HashSet::new();
    for (e, k) in meta.segments.iter().zip(known) {
        if k.map_err(|err| Error::db(db_path, err))?.is_none() && fresh.insert(e.fingerprint) {
            batch.put_cf(index, e.fingerprint.0, meta.id.0.to_le_bytes());
            alloc.segments += 1;
            alloc.stored_bytes += u64::from(e.len);
            alloc.raw_bytes += u64::from(e.raw_len);
        }
    }
    alloc.next_container = alloc.next_container.max(meta.id.0 + 1);
    alloc.containers += 1;
    Ok(batch)
}

pub(super) fn synced() -> WriteOptions {
    let mut w = WriteOptions::default();
    w.set_sync(true);
    w
}

pub(super) fn decode_container_id(bytes: &[u8]) -> Option<ContainerId> {
    <[u8; 8]>::try_from(bytes).ok().map(|b| ContainerId(u64::from_le_bytes(b)))
}
