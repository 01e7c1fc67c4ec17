//! A tier's settings and counters: [`TierConfig`] (fixed at creation),
//! the tier and allocation records as persisted (with their version-1
//! layouts, still read), and [`TierInfo`], the figures `info` reports.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::format::container;
use crate::format::records::TierConfigV1;
use crate::format::tree::MAX_FANOUT;
use crate::tier::TierId;

/// Settings fixed when a tier is created.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierConfig {
    /// Target container size in bytes (default 4 MiB): segments' stored
    /// bytes plus their 48-byte table entries.
    pub container_size: u64,
    /// FastCDC minimum chunk size (default 4 KiB).
    pub chunk_min: u32,
    /// FastCDC average chunk size (default 16 KiB).
    pub chunk_avg: u32,
    /// FastCDC maximum chunk size (default 64 KiB).
    pub chunk_max: u32,
    /// Children per recipe segment (default 1024).
    pub fanout: u32,
    /// zstd level segments are stored at (default 3; 0 stores them raw).
    /// A segment that compresses by less than 1/32 is stored raw anyway.
    pub compression_level: i32,
}

impl Default for TierConfig {
    fn default() -> Self {
        TierConfig {
            container_size: 4 << 20,
            chunk_min: 4 << 10,
            chunk_avg: 16 << 10,
            chunk_max: 64 << 10,
            fanout: 1024,
            compression_level: 3,
        }
    }
}

impl TierConfig {
    pub(super) fn check(&self) -> Result<()> {
        use fastcdc::v2020::{AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN};
        let bad = |m: String| Err(Error::InvalidConfig(m));
        let sizes_ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&self.chunk_min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&self.chunk_avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&self.chunk_max)
            && self.chunk_min <= self.chunk_avg
            && self.chunk_avg <= self.chunk_max;
        if !sizes_ok {
            return bad(format!(
                "chunk sizes min {} avg {} max {} must satisfy {MINIMUM_MIN}..={MINIMUM_MAX}, {AVERAGE_MIN}..={AVERAGE_MAX}, {MAXIMUM_MIN}..={MAXIMUM_MAX} and min <= avg <= max",
                self.chunk_min, self.chunk_avg, self.chunk_max
            ));
        }
        if !(2..=MAX_FANOUT as u32).contains(&self.fanout) {
            return bad(format!("fanout {} must be in 2..={MAX_FANOUT}", self.fanout));
        }
        if !(0..=19).contains(&self.compression_level) {
            return bad(format!("compression level {} must be in 0..=19 (0: no compression)", self.compression_level));
        }
        if !(64 << 10..=container::MAX_DATA_LEN / 2).contains(&self.container_size) {
            return bad(format!("container size {} must be between 64 KiB and 512 MiB", self.container_size));
        }
        Ok(())
    }
}

/// The tier record as persisted, version 2.
#[derive(Serialize, Deserialize)]
pub(crate) struct TierRecord {
    pub(super) id: [u8; 16],
    pub(super) config: TierConfigV1,
    pub(super) compression_level: i32,
}

/// Version 1 of the tier record: no compression (tiers created by the
/// first release keep storing segments raw).
#[derive(Serialize, Deserialize)]
pub(super) struct TierRecordV1 {
    pub(super) id: [u8; 16],
    pub(super) config: TierConfigV1,
}

impl From<TierRecordV1> for TierRecord {
    fn from(r: TierRecordV1) -> Self {
        TierRecord { id: r.id, config: r.config, compression_level: 0 }
    }
}

impl From<TierConfig> for TierConfigV1 {
    fn from(c: TierConfig) -> Self {
        TierConfigV1 {
            container_size: c.container_size,
            chunk_min: c.chunk_min,
            chunk_avg: c.chunk_avg,
            chunk_max: c.chunk_max,
            fanout: c.fanout,
        }
    }
}

impl TierRecord {
    pub(crate) fn new(id: [u8; 16], config: TierConfig) -> TierRecord {
        TierRecord { id, config: config.into(), compression_level: config.compression_level }
    }

    pub(super) fn config(&self) -> TierConfig {
        let c = self.config;
        TierConfig {
            container_size: c.container_size,
            chunk_min: c.chunk_min,
            chunk_avg: c.chunk_avg,
            chunk_max: c.chunk_max,
            fanout: c.fanout,
            compression_level: self.compression_level,
        }
    }
}

/// Allocation counters, updated in the same atomic batch as the index
/// entries of each new container (version 2).
#[derive(Clone, Copy, Default, Serialize, Deserialize)]
pub(super) struct Alloc {
    pub(super) next_container: u64,
    pub(super) containers: u64,
    pub(super) segments: u64,
    pub(super) stored_bytes: u64,
    /// The indexed segments' raw (uncompressed) bytes.
    pub(super) raw_bytes: u64,
}

/// Version 1 of the allocation record: everything was stored raw.
#[derive(Serialize, Deserialize)]
pub(super) struct AllocV1 {
    next_container: u64,
    containers: u64,
    segments: u64,
    stored_bytes: u64,
}

impl From<AllocV1> for Alloc {
    fn from(a: AllocV1) -> Self {
        Alloc {
            next_container: a.next_container,
            containers: a.containers,
            segments: a.segments,
            stored_bytes: a.stored_bytes,
            raw_bytes: a.stored_bytes,
        }
    }
}

/// Summary figures for `seed info`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TierInfo {
    /// The tier's UUID.
    pub id: TierId,
    /// Containers sealed.
    pub containers: u64,
    /// Distinct segments indexed.
    pub segments: u64,
    /// Files in the namespace.
    pub files: u64,
    /// Sum of the files' sizes.
    pub logical_bytes: u64,
    /// Segment bytes stored in containers (compressed ones compressed).
    pub stored_bytes: u64,
    /// The same segments' raw bytes.
    pub raw_bytes: u64,
}

impl TierInfo {
    /// Raw bytes per stored byte: what compression saves (1.0 for an empty
    /// or uncompressed tier).
    pub fn compression_ratio(&self) -> f64 {
        if self.stored_bytes == 0 { 1.0 } else { self.raw_bytes as f64 / self.stored_bytes as f64 }
    }

    /// Logical bytes per distinct raw byte: what deduplication saves (1.0
    /// for an empty tier).
    pub fn dedup_ratio(&self) -> f64 {
        if self.raw_bytes == 0 { 1.0 } else { self.logical_bytes as f64 / self.raw_bytes as f64 }
    }

    /// Logical bytes per stored byte: deduplication and compression together.
    pub fn total_ratio(&self) -> f64 {
        if self.stored_bytes == 0 { 1.0 } else { self.logical_bytes as f64 / self.stored_bytes as f64 }
    }
}

/// What a tier's RocksDB holds in memory now, in bytes (see
/// [`IndexedTier::memory_usage`](super::IndexedTier::memory_usage)). The
/// block cache and the memtable budget are shared by every tier the
/// process opens (64 MiB each), so those two figures are the process's;
/// the table readers are this tier's and grow with its index.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct MemoryUsage {
    /// The process's block cache in use (at most its 64 MiB, plus pinned
    /// blocks beyond it).
    pub block_cache: u64,
    /// Of which pinned (in use by an iterator or a table reader).
    pub block_cache_pinned: u64,
    /// The process's memtables, all tiers together.
    pub memtables: u64,
    /// This tier's table readers outside the block cache (RocksDB's
    /// estimate: one per table file, with what it keeps of that file's
    /// index and filter).
    pub table_readers: u64,
}
