//! `estimate`: a dry run that writes nothing.

use serde::{Deserialize, Serialize};

use super::run::target_has;
use super::{Seeder, now_secs};
use crate::engine::selection::Selection;
use crate::engine::{Mode, VerifyLevel};
use crate::error::Result;
use crate::format::container::{ENTRY_LEN, HEADER_LEN};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::marks::{InMemory, LeafCheck, mark};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::tier::{ContainerKind, RequestCounts, SourceTier, TargetTier};

/// What a job with a given selection would do, computed without writing.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Estimate {
    /// Files selected.
    pub files: u64,
    /// Their logical bytes.
    pub logical_bytes: u64,
    /// Distinct segments (data and recipe) the selection needs.
    pub segments: u64,
    /// Segments that would be copied (not yet on the target).
    pub segments_to_copy: u64,
    /// Their bytes.
    pub bytes_to_copy: u64,
    /// Segments the target already holds.
    pub segments_on_target: u64,
    /// Their bytes.
    pub bytes_on_target: u64,
    /// Bytes referenced only by the selected files: reclaimable on the
    /// source after a move (once its garbage collection runs).
    pub bytes_reclaimable: u64,
    /// Source containers holding at least one needed segment.
    pub containers_touched: u64,
    /// Source containers in all.
    pub containers_total: u64,
    /// Containers the job would write on the target (data and recipe),
    /// packed as Copy packs them at the target's container size.
    pub target_containers: u64,
    /// Of those, recipe (meta) containers.
    pub target_meta_containers: u64,
    /// Their bytes as stored: headers and tables included.
    pub target_container_bytes: u64,
    /// Target containers that already hold needed segments: Copy reads
    /// each one's table once before it trusts it.
    pub target_containers_checked: u64,
    /// Ranged reads of the source's data regions: the needed segments of
    /// each container, ranges less than 1 MiB apart merged into one (as an
    /// object store client merges them).
    pub source_range_reads: u64,
    /// Bytes those reads fetch, the merged gaps included.
    pub source_bytes_read: u64,
    /// Bytes of the source's containers read to get their tables: one read
    /// per touched container, of its first 64 KiB (or all of a smaller
    /// one).
    pub source_table_bytes: u64,
    /// Of the touched source containers, recipe (meta) containers: Mark
    /// reads their recipes.
    pub source_meta_containers_touched: u64,
    /// Stored bytes of the recipes in those containers that the selection
    /// needs.
    pub source_recipe_bytes: u64,
    /// Recipe reads Mark makes of the source: groups of one tree level's
    /// recipes in one container.
    pub recipe_reads: u64,
    /// Bytes of the selected files' namespace entries (paths and about 64
    /// bytes of tree root and attributes each), as Switch journals them.
    pub namespace_bytes: u64,
}

impl Seeder<'_> {
    /// Computes what a job with `selection` would move, without writing
    /// anything: builds the PHF in memory, marks the selected trees and the
    /// unselected ones, then reads container metadata (never data).
    pub fn estimate(source: &dyn SourceTier, target: &dyn TargetTier, selection: &Selection) -> Result<Estimate> {
        // The reference time for `older_than` is now, as it is for a job
        // built now (a job fixes it at creation).
        let (selected, others) = crate::engine::selection::resolve(source, selection, now_secs())?;
        let snapshot = source.container_ids()?;
        let in_snapshot = |c: ContainerId| snapshot.binary_search(&c).is_ok();
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let phf = Phf::build_over(source, &in_snapshot, crate::mark::phf::PhfKind::Boomphf, 1.7, threads, &std::env::temp_dir())?;
        let mut wanted = Phv::zeroed(phf.keys);
        let mut kept = Phv::zeroed(phf.keys);
        let walked = mark(
            source,
            &phf,
            &in_snapshot,
            &mut InMemory::new(&selected),
            &selected,
            &mut wanted,
            LeafCheck::Lookup,
            &mut |_| {},
        )?;
        mark(source, &phf, &in_snapshot, &mut InMemory::new(&others), &others, &mut kept, LeafCheck::Lookup, &mut |_| {})?;
        let mut est = Estimate {
            files: selected.len() as u64,
            logical_bytes: selected.iter().map(|f| f.size).sum(),
            namespace_bytes: selected.iter().map(|f| f.path.len() as u64 + 64).sum(),
            segments: walked.distinct,
            recipe_reads: walked.recipe_reads,
            containers_total: snapshot.len() as u64,
            ..Estimate::default()
        };
        let mut usable = std::collections::HashMap::new();
        // Copy's two packers (data, recipes), simulated: stored bytes
        // pending and segments in the container filling.
        let size = target.container_target_size().max(1);
        let mut packers = [(0u64, 0u64); 2];
        for &cid in &snapshot {
            let meta = source.read_metadata(cid)?;
            let kind = usize::from(meta.kind == ContainerKind::Meta);
            let marked: Vec<(Fingerprint, u64, u32, u32)> = meta
                .segments
                .iter()
                .filter_map(|e| phf.slot(&e.fingerprint).filter(|s| wanted.get(*s)).map(|s| (e.fingerprint, s, e.len, e.offset)))
                .collect();
            if marked.is_empty() {
                continue;
            }
            let fps: Vec<Fingerprint> = marked.iter().map(|m| m.0).collect();
            // Count a segment where the index places it, so a segment stored
            // twice (or a fingerprint the PHF does not know) is never counted.
            let homes = source.locate(&fps)?;
            // As in Copy: an index entry counts only if its container is usable.
            let mut on_target = target.locate(&fps)?;
            for t in &mut on_target {
                if let Some(c) = *t
                    && !target_has(target, c, &mut usable)?
                {
                    *t = None;
                }
            }
            let mut touched = false;
            let mut ranges = Vec::new();
            for ((&(_, slot, len, offset), home), there) in marked.iter().zip(homes).zip(on_target) {
                if home != Some(cid) {
                    continue;
                }
                touched = true;
                let len = u64::from(len);
                if kind == 1 {
                    est.source_recipe_bytes += len;
                }
                if there.is_some() {
                    est.segments_on_target += 1;
                    est.bytes_on_target += len;
                } else {
                    est.segments_to_copy += 1;
                    est.bytes_to_copy += len;
                    ranges.push(u64::from(offset)..u64::from(offset) + len);
                    let (bytes, n) = &mut packers[kind];
                    if *n > 0 && *bytes + len > size {
                        seal(&mut est, kind, *bytes, *n);
                        (*bytes, *n) = (0, 0);
                    }
                    *bytes += len;
                    *n += 1;
                }
                if !kept.get(slot) {
                    est.bytes_reclaimable += len;
                }
            }
            est.containers_touched += u64::from(touched);
            if touched {
                est.source_meta_containers_touched += kind as u64;
                // The store's first read of a container asks for 64 KiB:
                // the table, and the data after it in a small container.
                let file_len = (HEADER_LEN + meta.segments.len() * ENTRY_LEN) as u64 + meta.data_len;
                est.source_table_bytes += file_len.min(TABLE_PROBE);
                for r in merged(ranges) {
                    est.source_range_reads += 1;
                    est.source_bytes_read += r.end - r.start;
                }
            }
        }
        for (kind, (bytes, n)) in packers.into_iter().enumerate() {
            if n > 0 {
                seal(&mut est, kind, bytes, n);
            }
        }
        est.target_containers_checked = usable.values().filter(|ok| **ok).count() as u64;
        Ok(est)
    }
}

impl Estimate {
    /// The requests the job would make of its object tiers: the target's
    /// if it is one (seeding into a bucket), the source's if it is one (a
    /// recall), with `verify` as the job's verify level and `mode` its
    /// mode (a move removes the files from the source: one journal entry
    /// per 1,024 files, and reads back what the target already held to
    /// prove it). Counted as the
    /// bucket store sends them (ranged reads less than 1 MiB apart merged,
    /// listings by page), from this estimate's packing of the target's
    /// containers; namespace journal entries are one per 1,024 files
    /// switched. Client retries are not foreseen.
    pub fn requests(&self, verify: VerifyLevel, mode: Mode) -> RequestEstimate {
        let data_containers = self.target_containers - self.target_meta_containers;
        let avg = self.target_container_bytes.checked_div(self.target_containers).unwrap_or(0);
        let journal = self.files.div_ceil(crate::engine::context::FILES_PER_CHUNK as u64);
        // Verify reads every target container's table (the written ones
        // and the ones Copy found), walks the recipes on the target, and
        // at the full level reads the data back.
        // Verify walks the trees on the target as Mark walked them on the
        // source: as many reads per recipe container, per level.
        let target_recipe_reads =
            (self.recipe_reads * self.target_meta_containers).div_ceil(self.source_meta_containers_touched.max(1));
        let mut target = RequestCounts {
            puts: self.target_containers + journal,
            gets: 2 * self.target_containers_checked + self.target_containers + target_recipe_reads,
            lists: 1,
            deletes: 0,
            bytes_up: self.target_container_bytes + self.namespace_bytes,
            bytes_down: self.target_containers * avg.min(TABLE_PROBE) + self.bytes_to_copy.min(self.target_meta_containers * avg),
        };
        if verify == VerifyLevel::Full {
            target.gets += data_containers;
            target.bytes_down += self.bytes_to_copy;
        }
        if mode == Mode::Move {
            target.gets += self.target_containers_checked;
            target.bytes_down += self.bytes_on_target;
        }
        let mut source = RequestCounts {
            puts: 0,
            // Mark reads each recipe container's table, then its recipes;
            // Copy reads each touched container's table, then its data.
            gets: self.containers_touched + self.source_range_reads + self.source_meta_containers_touched + self.recipe_reads,
            lists: 1,
            deletes: 0,
            bytes_up: 0,
            bytes_down: self.source_table_bytes + self.source_bytes_read + self.source_recipe_bytes,
        };
        if mode == Mode::Move {
            // A removal journals each path with two bytes of framing (the
            // operation's tag and the path's length).
            source.puts += journal;
            source.bytes_up += self.namespace_bytes.saturating_sub(62 * self.files);
        }
        RequestEstimate { target, source }
    }
}

/// The requests a job would make of its object tiers
/// ([`Estimate::requests`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RequestEstimate {
    /// Of the target, when it is an object tier.
    pub target: RequestCounts,
    /// Of the source, when it is an object tier.
    pub source: RequestCounts,
}

/// What the bucket store reads of a container first: its header and
/// table, up to this much.
const TABLE_PROBE: u64 = 64 << 10;
/// Ranges closer than this are read as one (object_store's default).
const COALESCE: u64 = 1 << 20;

/// Counts a sealed target container of `kind` (1: recipes) with `n`
/// segments of `bytes`.
fn seal(est: &mut Estimate, kind: usize, bytes: u64, n: u64) {
    est.target_containers += 1;
    est.target_meta_containers += kind as u64;
    est.target_container_bytes += HEADER_LEN as u64 + n * ENTRY_LEN as u64 + bytes;
}

/// `ranges` sorted and merged where less than [`COALESCE`] apart.
fn merged(mut ranges: Vec<std::ops::Range<u64>>) -> Vec<std::ops::Range<u64>> {
    ranges.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<std::ops::Range<u64>> = Vec::with_capacity(ranges.len());
    for r in ranges {
        match out.last_mut() {
            Some(last) if r.start <= last.end + COALESCE => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}
