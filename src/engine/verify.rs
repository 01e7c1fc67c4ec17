//! The Verify phase: an independent proof, read from the target, that
//! every selected file is there. It does not trust the job's own
//! bookkeeping (the PHV, the counters) beyond the first check.
//!
//! 1. The PHV must be all zero.
//! 2. Walk every selected file's tree *on the target*: every recipe is read
//!    from the target and checked against its fingerprint; every leaf must
//!    be in the target's index. The distinct fingerprints reached fold into
//!    the [`SetSum`] that Mark committed for the source; the two must match.
//!    Each leaf sets a bit in a leaf vector and notes its target container.
//! 3. Read each noted target container's metadata once. A listed segment
//!    whose leaf bit is set, that the target's index places in this very
//!    container, and that is a member of the source snapshot (so its PHF
//!    slot is its own, not an alias), clears its bit; at the `full` level
//!    only after its bytes were read and hashed.
//! 4. Every leaf bit must be clear.
//!
//! Memory: three bits per PHF slot and one entry per target container
//! noted; no per-fingerprint set.

use std::collections::BTreeSet;

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::mark::marks::{Item, PhfMarks, Side, TableCache, ToExpand, walk};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::tier::{FileEntry, SourceTier, TargetTier};

/// How much Verify reads from the target.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VerifyLevel {
    /// ToExpand are read and hashed; every leaf is checked in the target's
    /// index and in the metadata of the container the index names.
    #[default]
    Metadata,
    /// As `Metadata`, and every leaf's bytes are also read from the target
    /// and hashed.
    Full,
}

crate::format::records::named_codes!(VerifyLevel, "verify level", { Metadata => ("metadata", 0), Full => ("full", 1) });

/// What a verification of the target found.
pub(crate) struct Verdict {
    /// Distinct fingerprints reached on the target, and their checksum.
    pub(crate) sum: crate::mark::marks::SetSum,
    /// Target containers whose metadata was read in step 3.
    pub(crate) containers: u64,
    /// Leaves whose bytes were read and hashed (`full` only).
    pub(crate) hashed: u64,
    /// Slots of the segments that could not be proven on the target.
    pub(crate) failed: Phv,
    /// How many problems, and the first few reasons.
    pub(crate) problems: u64,
    pub(crate) reasons: Vec<String>,
}

const REASONS_KEPT: usize = 5;

struct TargetSide<'a> {
    target: &'a dyn TargetTier,
    tables: TableCache<'a>,
    source: &'a dyn SourceTier,
    source_tables: TableCache<'a>,
    /// Leaves not yet proven, by slot.
    leaves: Phv,
    /// Target containers the index places leaves in.
    touched: BTreeSet<ContainerId>,
    /// ToExpand that could not be read from the target.
    failed_recipes: Vec<u64>,
    /// Segments the target returned rotten: offered to it for retirement,
    /// so that the resume this failure asks for copies them again.
    rotten: Vec<(Fingerprint, ContainerId)>,
    problems: u64,
    reasons: Vec<String>,
    files: &'a [FileEntry],
}

impl TargetSide<'_> {
    fn problem(&mut self, reason: String) {
        self.problems += 1;
        if self.reasons.len() < REASONS_KEPT {
            self.reasons.push(reason);
        }
    }
}

impl TargetSide<'_> {
    /// Reads the recipes `items[i]` for `i` in `which` from the source
    /// into `out[i]`, for walking below recipes the target lacks.
    fn walk_below_from_source(
        &mut self,
        level: u8,
        items: &[ToExpand],
        which: &[usize],
        out: &mut [Option<Recipe>],
    ) -> Result<()> {
        if which.is_empty() {
            return Ok(());
        }
        let fps: Vec<Fingerprint> = which.iter().map(|&i| items[i].0).collect();
        let located = self.source.locate(&fps)?;
        for (&i, loc) in which.iter().zip(located) {
            let fp = items[i].0;
            let Some(c) = loc else { continue };
            if let Some(Ok(b)) = self.source_tables.read(c, &[fp])?.pop() {
                out[i] = Recipe::decode(&b, &fp, level).ok();
            }
        }
        Ok(())
    }
}

impl Side for TargetSide<'_> {
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        self.target.locate(&fps)
    }

    fn first(&mut self, item: &Item, slot: u64, place: Option<ContainerId>) -> Result<()> {
        match place {
            Some(c) if item.1 == 0 => {
                self.leaves.set(slot);
                self.touched.insert(c);
            }
            Some(_) => {} // a recipe: proven when it is read
            None => {
                if item.1 == 0 {
                    self.leaves.set(slot);
                } else {
                    self.failed_recipes.push(slot);
                }
                let path = &self.files[item.2 as usize].path;
                self.problem(format!("segment {} (of {path:?}) is not in the target's index", item.0));
            }
        }
        Ok(())
    }

    fn unknown(&mut self, item: &Item) -> Result<()> {
        // Cannot happen for a recipe read back intact: its children are the
        // source's, which Mark found in the source index.
        let path = &self.files[item.2 as usize].path;
        self.problem(format!("segment {} (of {path:?}) is not one the job marked", item.0));
        Ok(())
    }

    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        let read = match cid {
            // Not in the target's index: `first` counted it as failed
            // already; its subtree is walked from the source's copy below.
            None => {
                let mut out = Vec::with_capacity(items.len());
                let mut from_source = Vec::with_capacity(items.len());
                for i in 0..items.len() {
                    out.push(None);
                    from_source.push(i);
                }
                self.walk_below_from_source(level, items, &from_source, &mut out)?;
                return Ok(out);
            }
            Some(cid) => match self.tables.read(cid, &fps) {
                Ok(r) => r,
                Err(e) => {
                    if e.is_rot() {
                        self.rotten.extend(fps.iter().map(|fp| (*fp, cid)));
                    }
                    fps.iter().map(|_| Err(Error::corrupt_record(format!("target container {cid}"), e.to_string()))).collect()
                }
            },
        };
        let mut out = Vec::with_capacity(items.len());
        let mut from_source = Vec::new();
        for (i, (r, &(fp, file, slot))) in read.into_iter().zip(items).enumerate() {
            if let (Err(e), Some(cid)) = (&r, cid)
                && matches!(e, Error::CorruptSegment { .. } | Error::CorruptContainer { .. })
            {
                self.rotten.push((fp, cid));
            }
            match r.and_then(|b| Recipe::decode(&b, &fp, level)) {
                Ok(recipe) => out.push(Some(recipe)),
                Err(e) => {
                    self.failed_recipes.push(slot);
                    let path = &self.files[file as usize].path;
                    self.problem(format!("recipe {fp} (of {path:?}) cannot be read from the target: {e}"));
                    out.push(None);
                    from_source.push(i);
                }
            }
        }
        // The subtree below a recipe the target lacks is still walked, from
        // the source's copy of the recipe, so that one Verify finds every
        // segment missing below it (and a resume recopies all of them at
        // once, not one level per round).
        self.walk_below_from_source(level, items, &from_source, &mut out)?;
        Ok(out)
    }
}

/// Proves `files` on `target` (see the module docs). `in_snapshot` says
/// whether a source container is in the job's snapshot. `progress` is
/// called with (containers checked, containers to check).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_target(
    source: &dyn SourceTier,
    target: &dyn TargetTier,
    phf: &Phf,
    in_snapshot: &dyn Fn(ContainerId) -> bool,
    files: &[FileEntry],
    level: VerifyLevel,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verdict> {
    let mut side = TargetSide {
        target,
        tables: TableCache::new(target),
        source,
        source_tables: TableCache::new(source),
        leaves: Phv::zeroed(phf.keys),
        touched: BTreeSet::new(),
        failed_recipes: Vec::new(),
        rotten: Vec::new(),
        problems: 0,
        reasons: Vec::new(),
        files,
    };
    let mut seen = Phv::zeroed(phf.keys);
    let walked = walk(files, &mut PhfMarks::new(phf, &mut seen), &mut side, &mut |_| {})?;
    drop(seen);

    let touched = std::mem::take(&mut side.touched);
    let total = touched.len() as u64;
    let mut hashed = 0u64;
    for (done, cid) in touched.into_iter().enumerate() {
        let meta = match target.read_metadata(cid) {
            Ok(m) => m,
            Err(e) => {
                side.problem(format!("target container {cid} cannot be read: {e}"));
                continue;
            }
        };
        let cands: Vec<(crate::tier::SegmentEntry, u64)> = meta
            .segments
            .iter()
            .filter_map(|e| phf.slot(&e.fingerprint).filter(|s| side.leaves.get(*s)).map(|s| (*e, s)))
            .collect();
        if cands.is_empty() {
            progress(done as u64 + 1, total);
            continue;
        }
        let fps: Vec<Fingerprint> = cands.iter().map(|c| c.0.fingerprint).collect();
        let here = target.locate(&fps)?;
        let members = source.locate(&fps)?;
        let proven: Vec<(crate::tier::SegmentEntry, u64)> = cands
            .into_iter()
            .zip(here.into_iter().zip(members))
            .filter(|(_, (t, s))| *t == Some(cid) && s.is_some_and(in_snapshot))
            .map(|(c, _)| c)
            .collect();
        let good: Vec<u64> = match level {
            VerifyLevel::Metadata => proven.iter().map(|p| p.1).collect(),
            VerifyLevel::Full => {
                let which: Vec<_> = proven.iter().map(|p| p.0).collect();
                match target.read_segments(cid, &which) {
                    Ok(bytes) if bytes.len() == which.len() => {
                        hashed += bytes.len() as u64;
                        let ok: Vec<bool> = pool.install(|| {
                            which
                                .par_iter()
                                .zip(bytes.par_iter())
                                .map(|(e, b)| crate::format::container::check_stored(e, b, cid).is_ok())
                                .collect()
                        });
                        for (p, fine) in proven.iter().zip(&ok) {
                            if !fine {
                                side.problem(format!(
                                    "segment {} in target container {cid} does not match its fingerprint",
                                    p.0.fingerprint
                                ));
                                side.rotten.push((p.0.fingerprint, cid));
                            }
                        }
                        proven.iter().zip(ok).filter(|(_, fine)| *fine).map(|(p, _)| p.1).collect()
                    }
                    Ok(_) => {
                        side.problem(format!("target container {cid} returned the wrong number of segments"));
                        Vec::new()
                    }
                    Err(e) => {
                        side.problem(format!("segments of target container {cid} cannot be read: {e}"));
                        Vec::new()
                    }
                }
            }
        };
        for slot in good {
            side.leaves.clear(slot);
        }
        progress(done as u64 + 1, total);
    }

    // What the target returned rotten is never trusted again: the target
    // retires it now, so the resume that this failure rewinds to copies
    // good bytes instead of finding the rotten ones "already there".
    let rotten = std::mem::take(&mut side.rotten);
    if !rotten.is_empty() {
        let retired = target.retire_segments(&rotten)?;
        log::warn!("Verify: {retired} rotten segment(s) retired on the target; a resume copies them again");
    }
    // Leaves still set were never proven; count those no reason covers yet.
    let unproven = side.leaves.count_ones();
    let mut failed = std::mem::replace(&mut side.leaves, Phv::zeroed(0));
    for slot in std::mem::take(&mut side.failed_recipes) {
        failed.set(slot);
    }
    if unproven > 0 && side.problems == 0 {
        side.problem(format!("{unproven} segment(s) are not listed by the target container the target's index names"));
    }
    Ok(Verdict { sum: walked.sum, containers: total, hashed, failed, problems: side.problems, reasons: side.reasons })
}
