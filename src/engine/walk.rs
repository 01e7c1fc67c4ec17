//! Walking the selected files' segment trees, level by level and in
//! batches: Mark walks them on the source, Verify on the target, and both
//! fold every distinct fingerprint reached into the same [`SetSum`]. Also
//! naming the files a problem affects (a failed Verify, a container lost
//! mid-job).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use super::phf::Phf;
use super::phv::Phv;
use crate::error::{Error, Result};
use crate::read::{decode_recipes, fetch_recipes};
use crate::tier::SegmentEntry;
use crate::tier::{FileEntry, SourceTier, Tier};
use crate::tree::Recipe;
use crate::{ContainerId, Fingerprint};

/// Items looked up in the index per batch while walking.
const WALK_BATCH: usize = 4096;
/// Container tables a walk keeps for reading recipes. ToExpand of files
/// ingested together sit in the same few meta containers, so a small cache
/// reads each one's table once in practice while memory stays bounded.
const TABLE_CACHE: usize = 256;

/// An order-independent checksum of a set of fingerprints: the count, and
/// four 64-bit lanes of the wrapping sum of each member's keyed BLAKE3
/// hash. Adding the same members in any order gives the same value; a
/// missing or extra member changes it (short of a 2^-64 accident).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SetSum {
    pub(crate) count: u64,
    pub(crate) lanes: [u64; 4],
}

impl SetSum {
    /// The hashing key: fixed, so Mark's sum (committed) and Verify's (in a
    /// later process, possibly a later build) mean the same.
    const KEY: [u8; 32] = *b"tierseed marked-set checksum v1.";

    pub(crate) fn add(&mut self, fp: &Fingerprint) {
        let h = blake3::keyed_hash(&Self::KEY, &fp.0);
        for (lane, word) in self.lanes.iter_mut().zip(h.as_bytes().chunks_exact(8)) {
            let mut w = [0u8; 8];
            w.copy_from_slice(word);
            *lane = lane.wrapping_add(u64::from_le_bytes(w));
        }
        self.count += 1;
    }
}

/// One node reached by a walk: fingerprint, its level in the tree (0 for
/// data), and the index of the selected file that reached it.
pub(crate) type Item = (Fingerprint, u8, u32);

/// A recipe to expand: its fingerprint, the index of the file that reached
/// it, and its PHF slot.
pub(crate) type ToExpand = (Fingerprint, u32, u64);

/// The tier-specific half of a walk: where nodes live, what to do with a
/// node reached for the first time, and how recipes are read.
pub(crate) trait Side {
    /// For each item, the container the tier's index places it in. `None`
    /// means it is not there; a side that treats that as fatal errors.
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>>;
    /// Called once per distinct fingerprint, the first time it is reached.
    fn first(&mut self, item: &Item, slot: u64, place: Option<ContainerId>) -> Result<()>;
    /// A reached fingerprint the PHF has no slot for.
    fn unknown(&mut self, item: &Item) -> Result<()>;
    /// The recipes of `items` (fingerprint, file, slot), all at `level` and
    /// placed in container `cid` (`None`: the tier's index does not place
    /// them; the side may still know them from elsewhere). `None` for one
    /// that cannot be read; a side that treats that as fatal errors.
    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>>;
}

/// What a walk reached.
pub(crate) struct Walked {
    /// Distinct fingerprints reached (first reaches).
    pub(crate) distinct: u64,
    /// Their [`SetSum`].
    pub(crate) sum: SetSum,
}

/// Walks `files`' trees from their roots. `seen` holds one bit per PHF slot
/// and is set for every fingerprint reached: a fingerprint whose bit was
/// already set is not counted again. ToExpand are expanded once each,
/// tracked apart from `seen`: the same bytes can be a data segment of one
/// file and a recipe of another, and a bit set for the data segment must
/// not stop the recipe from being expanded (the bug "Mark skips a recipe
/// that has the same bytes as a data segment").
pub(crate) fn walk(
    files: &[FileEntry],
    phf: &Phf,
    seen: &mut Phv,
    side: &mut dyn Side,
    progress: &mut dyn FnMut(u64),
) -> Result<Walked> {
    let mut expanded = Phv::zeroed(phf.keys);
    let mut out = Walked { distinct: 0, sum: SetSum::default() };
    let mut stack: Vec<Item> = files.iter().enumerate().map(|(i, f)| (f.root, f.height, i as u32)).collect();
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(WALK_BATCH));
        let placed = side.place(&batch)?;
        if placed.len() != batch.len() {
            return Err(Error::tier("tier lookup", "answered a different number of fingerprints than asked"));
        }
        // ToExpand to expand, grouped by (level, container) so each group is
        // one metadata read and one segment read.
        let mut expand: BTreeMap<(u8, Option<ContainerId>), Vec<ToExpand>> = BTreeMap::new();
        for (item, place) in batch.iter().zip(placed) {
            let Some(slot) = phf.slot(&item.0) else {
                side.unknown(item)?;
                continue;
            };
            if !seen.get(slot) {
                seen.set(slot);
                out.distinct += 1;
                out.sum.add(&item.0);
                side.first(item, slot, place)?;
            }
            if item.1 >= 1 && !expanded.get(slot) {
                expanded.set(slot);
                expand.entry((item.1, place)).or_default().push((item.0, item.2, slot));
            }
        }
        for ((level, cid), items) in expand {
            let recipes = side.recipes(level, cid, &items)?;
            for (r, &(_, file, _)) in recipes.into_iter().zip(&items) {
                if let Some(r) = r {
                    stack.extend(r.children.iter().map(|c| (c.fingerprint, level - 1, file)));
                }
            }
        }
        progress(out.distinct);
    }
    Ok(out)
}

/// Container tables read through a tier, for fetching recipes by
/// fingerprint from a container already located.
pub(crate) struct TableCache<'a> {
    tier: &'a dyn Tier,
    tables: HashMap<ContainerId, Arc<HashMap<Fingerprint, SegmentEntry>>>,
}

impl<'a> TableCache<'a> {
    pub(crate) fn new(tier: &'a dyn Tier) -> Self {
        TableCache { tier, tables: HashMap::new() }
    }

    /// The segments `fps` of container `cid`, each checked against the
    /// container's table and its fingerprint. The outer error is the
    /// container's (unreadable); an inner one names one segment.
    pub(crate) fn read(&mut self, cid: ContainerId, fps: &[Fingerprint]) -> Result<Vec<Result<Vec<u8>>>> {
        let table = match self.tables.get(&cid) {
            Some(t) => Arc::clone(t),
            None => {
                let meta = self.tier.read_metadata(cid)?;
                if self.tables.len() >= TABLE_CACHE {
                    self.tables.clear();
                }
                let t: Arc<HashMap<Fingerprint, SegmentEntry>> =
                    Arc::new(meta.segments.iter().map(|e| (e.fingerprint, *e)).collect());
                self.tables.insert(cid, Arc::clone(&t));
                t
            }
        };
        let mut out: Vec<Result<Vec<u8>>> = Vec::with_capacity(fps.len());
        let mut which = Vec::with_capacity(fps.len());
        let mut at = Vec::with_capacity(fps.len());
        for fp in fps {
            match table.get(fp) {
                Some(e) => {
                    at.push(out.len());
                    which.push(*e);
                    out.push(Ok(Vec::new()));
                }
                None => out.push(Err(Error::CorruptContainer {
                    id: cid,
                    path: None,
                    reason: format!("the index places segment {fp} here, the container's table does not list it"),
                })),
            }
        }
        if which.is_empty() {
            return Ok(out);
        }
        let bytes = self.tier.read_segments(cid, &which)?;
        if bytes.len() != which.len() {
            return Err(Error::CorruptContainer {
                id: cid,
                path: None,
                reason: "tier returned the wrong number of segments".into(),
            });
        }
        for ((i, e), b) in at.into_iter().zip(&which).zip(bytes) {
            out[i] = if b.len() != e.len as usize || Fingerprint::of(&b) != e.fingerprint {
                Err(Error::CorruptSegment { container: cid, fingerprint: e.fingerprint })
            } else {
                Ok(b)
            };
        }
        Ok(out)
    }
}

/// Mark's side of the walk: the source, where anything missing is fatal.
struct MarkSide<'a> {
    source: &'a dyn SourceTier,
    in_snapshot: &'a dyn Fn(ContainerId) -> bool,
    files: &'a [FileEntry],
    tables: TableCache<'a>,
}

impl Side for MarkSide<'_> {
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        let located = self.source.locate(&fps)?;
        for (item, loc) in items.iter().zip(&located) {
            if !loc.is_some_and(|c| (self.in_snapshot)(c)) {
                return Err(Error::MissingSegment {
                    path: self.files[item.2 as usize].path.clone(),
                    fingerprint: item.0,
                    tier: "source".into(),
                });
            }
        }
        Ok(located)
    }

    fn first(&mut self, _item: &Item, _slot: u64, _place: Option<ContainerId>) -> Result<()> {
        Ok(())
    }

    fn unknown(&mut self, item: &Item) -> Result<()> {
        Err(Error::MissingSegment {
            path: self.files[item.2 as usize].path.clone(),
            fingerprint: item.0,
            tier: "source PHF".into(),
        })
    }

    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        let path = &self.files[items[0].1 as usize].path;
        // `place` errors on anything the source index does not place.
        let cid = cid.ok_or_else(|| Error::MissingSegment { path: path.clone(), fingerprint: fps[0], tier: "source".into() })?;
        let bytes = self.tables.read(cid, &fps).map_err(|e| with_file(e, path))?.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(decode_recipes(&bytes, &fps, level)?.into_iter().map(Some).collect())
    }
}

fn with_file(e: Error, file: &str) -> Error {
    match e {
        Error::MissingContainer { id, context } => {
            Error::MissingContainer { id, context: format!("{context} (needed by file {file:?})") }
        }
        e => e,
    }
}

/// Sets the PHV bit of every segment reachable from `files`, data and
/// recipe alike. Every reached fingerprint must be in the source index, in
/// a snapshot container (else: an error naming the file and fingerprint);
/// that check is also what makes the PHF slot trustworthy, since the PHF
/// gives arbitrary slots to non-members. Returns the number of bits newly
/// set and the [`SetSum`] of their fingerprints.
pub(crate) fn mark(
    source: &dyn SourceTier,
    phf: &Phf,
    in_snapshot: &dyn Fn(ContainerId) -> bool,
    files: &[FileEntry],
    phv: &mut Phv,
    progress: &mut dyn FnMut(u64),
) -> Result<Walked> {
    let mut side = MarkSide { source, in_snapshot, files, tables: TableCache::new(source) };
    walk(files, phf, phv, &mut side, progress)
}

/// The files whose trees reach a fingerprint with its PHV bit set that
/// `pick` accepts, each with up to three such fingerprints. Files whose
/// trees cannot be read are reported with the reason. At most `max_files`
/// are returned; the second value counts all affected files.
pub(crate) fn affected_files(
    source: &dyn SourceTier,
    phf: &Phf,
    phv: &Phv,
    files: &[FileEntry],
    pick: &dyn Fn(&[Fingerprint]) -> Result<Vec<bool>>,
    max_files: usize,
) -> (Vec<String>, usize) {
    let mut listed = Vec::new();
    let mut count = 0;
    for f in files {
        let found = (|| -> Result<Vec<Fingerprint>> {
            let mut hits = Vec::new();
            let mut level_fps = vec![f.root];
            let mut level = f.height;
            loop {
                let set: Vec<Fingerprint> =
                    level_fps.iter().copied().filter(|fp| phf.slot(fp).is_some_and(|s| phv.get(s))).collect();
                for (fp, yes) in set.iter().zip(pick(&set)?) {
                    if yes {
                        hits.push(*fp);
                    }
                }
                if level == 0 {
                    return Ok(hits);
                }
                let mut next = Vec::new();
                for chunk in level_fps.chunks(256) {
                    for r in fetch_recipes(source, chunk, level, &f.path)? {
                        next.extend(r.children.iter().map(|c| c.fingerprint));
                    }
                }
                level_fps = next;
                level -= 1;
            }
        })();
        let line = match found {
            Ok(hits) if hits.is_empty() => continue,
            Ok(hits) => {
                let shown: Vec<String> = hits.iter().take(3).map(|h| h.to_string()).collect();
                let more = if hits.len() > 3 { format!(" and {} more", hits.len() - 3) } else { String::new() };
                format!("{:?} (missing {}{more})", f.path, shown.join(", "))
            }
            Err(e) => format!("{:?} (tree unreadable: {e})", f.path),
        };
        count += 1;
        if listed.len() < max_files {
            listed.push(line);
        }
    }
    (listed, count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_sum_is_order_independent_and_sensitive_to_members() {
        let fps: Vec<Fingerprint> = (0u32..100).map(|i| Fingerprint::of(&i.to_le_bytes())).collect();
        let mut a = SetSum::default();
        let mut b = SetSum::default();
        fps.iter().for_each(|f| a.add(f));
        fps.iter().rev().for_each(|f| b.add(f));
        assert_eq!(a, b);
        let mut c = SetSum::default();
        fps[1..].iter().for_each(|f| c.add(f));
        assert_ne!(a, c);
        assert_eq!(c.count, 99);
    }
}
