//! The Verify phase: an independent proof, read from the target, that
//! every selected file is there. It does not trust the job's own
//! bookkeeping (the PHV, the counters) beyond the first check.
//!
//! 1. The PHV must be all zero.
//! 2. Walk every selected file's tree *on the target*: every recipe is read
//!    from the target and checked against its fingerprint; every leaf must
//!    be in the target's index. The distinct fingerprints reached fold into
//!    the [`SetSum`] that Mark committed for the source; the two must match.
//!    Each leaf, with the target container the index places it in, goes to
//!    a spool (on disk beyond 256K leaves, in the job's state
//!    directory).
//! 3. The spool comes back grouped by container: each container's metadata
//!    is read once, and each of its leaves must be listed in it (compared
//!    by fingerprint, not by PHF slot, so no alias can stand in for a
//!    leaf); at the `full` level its bytes are also read and hashed.
//! 4. A leaf not proven sets its bit in the failed vector (a resume copies
//!    it again).
//!
//! Memory: two bits per PHF slot, the spool's buffer and one container's
//! leaves at a time; no per-fingerprint set. Each leaf costs one index
//! lookup (step 2), none more.

use rayon::prelude::*;

use crate::error::{Error, FormatError, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::mark::marks::{FileNames, FileWindows, Item, PhfMarks, Side, TableCache, ToExpand, walk_in};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::mark::spool::{LOOKUP_BATCH, Merge, Spool, fingerprint_at, merge_pays, u64_at};
use crate::tier::{SourceTier, TargetTier};

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

/// A spooled leaf: a byte spreading containers over the spool's buckets,
/// the container id (big-endian, so a bucket sorts by container), the
/// fingerprint, the PHF slot.
type LeafRecord = [u8; 49];

fn leaf_record(cid: ContainerId, fp: &Fingerprint, slot: u64) -> LeafRecord {
    let mut r = [0u8; 49];
    r[0] = (cid.0.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    r[1..9].copy_from_slice(&cid.0.to_be_bytes());
    r[9..41].copy_from_slice(&fp.0);
    r[41..].copy_from_slice(&slot.to_le_bytes());
    r
}

fn read_leaf(r: &LeafRecord) -> (ContainerId, Fingerprint, u64) {
    // The id is big-endian (so buckets sort by container).
    (ContainerId(u64_at(r, 1).swap_bytes()), fingerprint_at(r, 9), u64_at(r, 41))
}

/// A reached leaf not yet placed: fingerprint, PHF slot (u64 LE), file
/// index (u64 LE).
type ReachRecord = [u8; 48];

fn reach_record(fp: &Fingerprint, slot: u64, file: u64) -> ReachRecord {
    let mut r = [0u8; 48];
    r[..32].copy_from_slice(&fp.0);
    r[32..40].copy_from_slice(&slot.to_le_bytes());
    r[40..].copy_from_slice(&file.to_le_bytes());
    r
}

fn read_reach(r: &ReachRecord) -> (Fingerprint, u64, u64) {
    (fingerprint_at(r, 0), u64_at(r, 32), u64_at(r, 40))
}

/// Index entries read per page when leaves are placed by a merge.
const INDEX_PAGE: usize = 1 << 16;

struct TargetSide<'a> {
    target: &'a dyn TargetTier,
    tables: TableCache<'a>,
    source: &'a dyn SourceTier,
    source_tables: TableCache<'a>,
    /// Leaves reached, placed after the walk (all at once, by a merge with
    /// the target's index or by sorted lookups).
    reached: Spool<48>,
    /// Leaves placed by the target's index, left for step 3.
    leaves: Spool<49>,
    /// The containers they are in (for the progress total).
    touched: std::collections::BTreeSet<ContainerId>,
    /// Slots of what could not be proven.
    failed: Phv,
    /// Segments the target returned rotten: offered to it for retirement,
    /// so that the resume this failure asks for copies them again.
    rotten: Vec<(Fingerprint, ContainerId)>,
    problems: u64,
    reasons: Vec<String>,
    names: &'a dyn FileNames,
}

impl TargetSide<'_> {
    /// Counts a problem; `reason` (which may read back a file's name)
    /// runs only for the first few, which are kept.
    fn problem(&mut self, reason: impl FnOnce(&Self) -> String) {
        self.problems += 1;
        if self.reasons.len() < REASONS_KEPT {
            let r = reason(self);
            self.reasons.push(r);
        }
    }

    fn path(&self, file: u64) -> String {
        self.names.name(file)
    }
}

impl TargetSide<'_> {
    /// Places every reached leaf in the target's index: one that is there
    /// goes to step 3's spool by container; one that is not is a problem.
    fn place_leaves(&mut self, scratch: &std::path::Path) -> Result<()> {
        let reached = std::mem::replace(&mut self.reached, Spool::new(scratch));
        let leaves = reached.len();
        let merge = self.target.sorted_index_len()?.is_some_and(|len| merge_pays(leaves, len));
        let target = self.target;
        let mut after: Option<Fingerprint> = None;
        let mut index = Merge::new(move || {
            let page = target.sorted_index_page(after.as_ref(), INDEX_PAGE)?;
            let ascending =
                page.windows(2).all(|w| w[0].0 < w[1].0) && page.first().is_none_or(|f| after.is_none_or(|a| a < f.0));
            if !ascending {
                return Err(Error::contract("sorted_index_page", "answered entries out of ascending fingerprint order"));
            }
            after = page.last().map(|e| e.0).or(after);
            Ok(page)
        });
        reached.drain_sorted(&mut |records| {
            if merge {
                for r in records {
                    let (fp, slot, file) = read_reach(r);
                    let place = index.seek(|e| e.0 < fp)?.filter(|e| e.0 == fp).map(|e| e.1);
                    self.placed(fp, slot, file, place)?;
                }
                return Ok(());
            }
            for group in records.chunks(LOOKUP_BATCH) {
                let fps: Vec<Fingerprint> = group.iter().map(|r| read_reach(r).0).collect();
                let located = self.target.locate(&fps)?;
                if located.len() != fps.len() {
                    return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
                }
                for (r, place) in group.iter().zip(located) {
                    let (fp, slot, file) = read_reach(r);
                    self.placed(fp, slot, file, place)?;
                }
            }
            Ok(())
        })
    }

    fn placed(&mut self, fp: Fingerprint, slot: u64, file: u64, place: Option<ContainerId>) -> Result<()> {
        if let Some(c) = place {
            self.touched.insert(c);
            self.leaves.push(leaf_record(c, &fp, slot))
        } else {
            self.failed.set(slot);
            self.problem(|s| format!("segment {fp} (of {:?}) is not in the target's index", s.path(file)));
            Ok(())
        }
    }

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
        // Leaves are placed after the walk, all together.
        let asked: Vec<usize> = (0..items.len()).filter(|&i| items[i].1 > 0).collect();
        let fps: Vec<Fingerprint> = asked.iter().map(|&i| items[i].0).collect();
        let located = self.target.locate(&fps)?;
        if located.len() != fps.len() {
            return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
        }
        let mut out = vec![None; items.len()];
        for (i, loc) in asked.into_iter().zip(located) {
            out[i] = loc;
        }
        Ok(out)
    }

    fn first(&mut self, item: &Item, slot: u64, place: Option<ContainerId>) -> Result<()> {
        match place {
            _ if item.1 == 0 => self.reached.push(reach_record(&item.0, slot, item.2))?,
            Some(_) => {} // a recipe: proven when it is read
            None => {
                self.failed.set(slot);
                let file = item.2;
                self.problem(|s| format!("segment {} (of {:?}) is not in the target's index", item.0, s.path(file)));
            }
        }
        Ok(())
    }

    fn unknown(&mut self, item: &Item) -> Result<()> {
        // Cannot happen for a recipe read back intact: its children are the
        // source's, which Mark found in the source index.
        let file = item.2;
        self.problem(|s| format!("segment {} (of {:?}) is not one the job marked", item.0, s.path(file)));
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
                && matches!(e, Error::Format(FormatError::CorruptSegment { .. } | FormatError::CorruptContainer { .. }))
            {
                self.rotten.push((fp, cid));
            }
            match r.and_then(|b| Recipe::decode(&b, &fp, level)) {
                Ok(recipe) => out.push(Some(recipe)),
                Err(e) => {
                    self.failed.set(slot);
                    self.problem(|s| format!("recipe {fp} (of {:?}) cannot be read from the target: {e}", s.path(file)));
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

/// Proves `files` on `target` (see the module docs). `scratch` is
/// where the leaves may spool. `progress` is called with (containers
/// checked, containers to check).
#[allow(clippy::too_many_arguments)]
pub(crate) fn verify_target(
    source: &dyn SourceTier,
    target: &dyn TargetTier,
    phf: &Phf,
    files: &mut dyn FileWindows,
    names: &dyn FileNames,
    level: VerifyLevel,
    scratch: &std::path::Path,
    pool: &rayon::ThreadPool,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<Verdict> {
    let mut side = TargetSide {
        target,
        tables: TableCache::new(target),
        source,
        source_tables: TableCache::new(source),
        reached: Spool::new(&scratch.join("reached")),
        leaves: Spool::new(&scratch.join("placed")),
        touched: std::collections::BTreeSet::new(),
        failed: Phv::zeroed(phf.keys),
        rotten: Vec::new(),
        problems: 0,
        reasons: Vec::new(),
        names,
    };
    let mut seen = Phv::zeroed(phf.keys);
    let walked = walk_in(files, &mut PhfMarks::new(phf, &mut seen), &mut side, &mut |_| {}, &scratch.join("walk"))?;
    drop(seen);
    side.place_leaves(&scratch.join("reached"))?;

    let leaves = std::mem::replace(&mut side.leaves, Spool::new(&scratch.join("placed")));
    let total = std::mem::take(&mut side.touched).len() as u64;
    let mut containers = 0u64;
    let mut hashed = 0u64;
    leaves.drain_sorted(&mut |records| {
        let mut at = 0;
        while at < records.len() {
            let cid = read_leaf(&records[at]).0;
            let end = at + records[at..].iter().take_while(|r| r[1..9] == records[at][1..9]).count();
            let group: Vec<(Fingerprint, u64)> = records[at..end]
                .iter()
                .map(|r| {
                    let (_, f, s) = read_leaf(r);
                    (f, s)
                })
                .collect();
            at = end;
            containers += 1;
            hashed += prove_in(&mut side, cid, &group, level, pool);
            progress(containers, total);
        }
        Ok(())
    })?;

    // What the target returned rotten is never trusted again: the target
    // retires it now, so the resume that this failure rewinds to copies
    // good bytes instead of finding the rotten ones "already there".
    let rotten = std::mem::take(&mut side.rotten);
    if !rotten.is_empty() {
        let retired = target.retire_segments(&rotten)?;
        log::warn!("Verify: {retired} rotten segment(s) retired on the target; a resume copies them again");
    }
    let failed = std::mem::replace(&mut side.failed, Phv::zeroed(0));
    Ok(Verdict { sum: walked.sum, containers, hashed, failed, problems: side.problems, reasons: side.reasons })
}

/// Proves the leaves `group` (fingerprint, slot) that the target's index
/// places in container `cid`: each must be listed in its metadata and, at
/// the `full` level, read back and match its fingerprint. What is not
/// proven is a problem and a failed slot. Returns how many were hashed.
fn prove_in(
    side: &mut TargetSide<'_>,
    cid: ContainerId,
    group: &[(Fingerprint, u64)],
    level: VerifyLevel,
    pool: &rayon::ThreadPool,
) -> u64 {
    let fail_all = |side: &mut TargetSide<'_>, reason: String| {
        for (_, slot) in group {
            side.failed.set(*slot);
        }
        side.problem(|_| reason);
    };
    let meta = match side.target.read_metadata(cid) {
        Ok(m) => m,
        Err(e) => {
            fail_all(side, format!("target container {cid} cannot be read: {e}"));
            return 0;
        }
    };
    let listed: std::collections::HashMap<Fingerprint, crate::tier::SegmentEntry> =
        meta.segments.iter().map(|e| (e.fingerprint, *e)).collect();
    let mut proven: Vec<(crate::tier::SegmentEntry, u64)> = Vec::with_capacity(group.len());
    let mut unlisted = 0u64;
    for (fp, slot) in group {
        if let Some(e) = listed.get(fp) {
            proven.push((*e, *slot));
        } else {
            unlisted += 1;
            side.failed.set(*slot);
        }
    }
    if unlisted > 0 {
        side.problem(|_| {
            format!("{unlisted} segment(s) are not listed by target container {cid}, where the target's index places them")
        });
    }
    if level == VerifyLevel::Metadata || proven.is_empty() {
        return 0;
    }
    let which: Vec<_> = proven.iter().map(|p| p.0).collect();
    match side.target.read_segments(cid, &which) {
        Ok(bytes) if bytes.len() == which.len() => {
            let ok: Vec<bool> = pool.install(|| {
                which
                    .par_iter()
                    .zip(bytes.par_iter())
                    .map(|(e, b)| crate::format::container::check_stored(e, b, cid).is_ok())
                    .collect()
            });
            for (p, fine) in proven.iter().zip(&ok) {
                if !fine {
                    side.failed.set(p.1);
                    side.problem(|_| {
                        format!("segment {} in target container {cid} does not match its fingerprint", p.0.fingerprint)
                    });
                    side.rotten.push((p.0.fingerprint, cid));
                }
            }
            bytes.len() as u64
        }
        Ok(_) => {
            fail_all(side, format!("target container {cid} returned the wrong number of segments"));
            0
        }
        Err(e) => {
            fail_all(side, format!("segments of target container {cid} cannot be read: {e}"));
            0
        }
    }
}
