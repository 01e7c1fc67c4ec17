//! `estimate`: a dry run that writes nothing.

use serde::{Deserialize, Serialize};

use super::run::target_has;
use super::{Seeder, now_secs};
use crate::engine::selection::Selection;
use crate::error::Result;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::marks::{InMemory, LeafCheck, mark};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::tier::{SourceTier, Tier};

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
}

impl Seeder<'_> {
    /// Computes what a job with `selection` would move, without writing
    /// anything: builds the PHF in memory, marks the selected trees and the
    /// unselected ones, then reads container metadata (never data).
    pub fn estimate(source: &dyn SourceTier, target: &dyn Tier, selection: &Selection) -> Result<Estimate> {
        // The reference time for `older_than` is now, as it is for a job
        // built now (a job fixes it at creation).
        let (selected, others) = crate::engine::selection::resolve(source, selection, now_secs())?;
        let snapshot = source.container_ids()?;
        let in_snapshot = |c: ContainerId| snapshot.binary_search(&c).is_ok();
        let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
        let phf = Phf::build_over(source, &in_snapshot, crate::mark::phf::PhfKind::Boomphf, 1.7, threads, &std::env::temp_dir())?;
        let mut wanted = Phv::zeroed(phf.keys);
        let mut kept = Phv::zeroed(phf.keys);
        let segments = mark(
            source,
            &phf,
            &in_snapshot,
            &mut InMemory::new(&selected),
            &selected,
            &mut wanted,
            LeafCheck::Lookup,
            &mut |_| {},
        )?
        .distinct;
        mark(source, &phf, &in_snapshot, &mut InMemory::new(&others), &others, &mut kept, LeafCheck::Lookup, &mut |_| {})?;
        let mut est = Estimate {
            files: selected.len() as u64,
            logical_bytes: selected.iter().map(|f| f.size).sum(),
            segments,
            containers_total: snapshot.len() as u64,
            ..Estimate::default()
        };
        let mut usable = std::collections::HashMap::new();
        for &cid in &snapshot {
            let meta = source.read_metadata(cid)?;
            let marked: Vec<(Fingerprint, u64, u32)> = meta
                .segments
                .iter()
                .filter_map(|e| phf.slot(&e.fingerprint).filter(|s| wanted.get(*s)).map(|s| (e.fingerprint, s, e.len)))
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
            for ((&(_, slot, len), home), there) in marked.iter().zip(homes).zip(on_target) {
                if home != Some(cid) {
                    continue;
                }
                touched = true;
                let len = u64::from(len);
                if there.is_some() {
                    est.segments_on_target += 1;
                    est.bytes_on_target += len;
                } else {
                    est.segments_to_copy += 1;
                    est.bytes_to_copy += len;
                }
                if !kept.get(slot) {
                    est.bytes_reclaimable += len;
                }
            }
            est.containers_touched += u64::from(touched);
        }
        Ok(est)
    }
}
