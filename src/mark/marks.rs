//! The engine's uses of the tree walk (`crate::mark::walk`): Mark over the
//! source with marks kept as bits per PHF slot, and naming the files a
//! problem affects (a failed Verify, a container lost mid-job).

use std::path::Path;

use super::keys::KeyFile;
use super::phf::Phf;
use super::phv::Phv;
use super::spool::{LOOKUP_BATCH, Spool, fingerprint_at, merge_pays, u64_at};
use crate::error::{Error, Result, TierError, TierName};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
pub(crate) use crate::mark::walk::{
    FileNames, FileWindows, InMemory, Item, Marks, RecipeSet, SetSum, Side, TableCache, ToExpand, Walked, walk, walk_in,
};
use crate::tier::SourceTier;
use crate::tier::read::decode_recipes;

/// Marks kept as bits per PHF slot: `seen` (the PHV itself in Mark) and
/// `expanded`, so memory stays a few bits per key, with no per-fingerprint
/// set. The two are apart because the same bytes can be a data segment of
/// one file and a recipe of another, and a bit set for the data segment
/// must not stop the recipe from being expanded (the bug "Mark skips a
/// recipe that has the same bytes as a data segment").
pub(crate) struct PhfMarks<'a> {
    phf: &'a Phf,
    seen: &'a mut Phv,
    expanded: Phv,
}

impl<'a> PhfMarks<'a> {
    pub(crate) fn new(phf: &'a Phf, seen: &'a mut Phv) -> Self {
        PhfMarks { phf, seen, expanded: Phv::zeroed(phf.keys) }
    }
}

impl Marks for PhfMarks<'_> {
    fn reach(&mut self, fp: &Fingerprint, _level: u8) -> Option<(u64, bool)> {
        let slot = self.phf.slot(fp)?;
        let first = !self.seen.get(slot);
        if first {
            self.seen.set(slot);
        }
        Some((slot, first))
    }

    fn expand(&mut self, key: u64, _fp: &Fingerprint) -> bool {
        let fresh = !self.expanded.get(key);
        if fresh {
            self.expanded.set(key);
        }
        fresh
    }
}

/// How Mark confirms that the leaves it reaches are in the source index
/// (in a snapshot container): the check that makes their PHF slots
/// trustworthy, since the PHF gives arbitrary slots to non-members.
pub(crate) enum LeafCheck<'a> {
    /// One index lookup per reached leaf, in the walk's batches.
    Lookup,
    /// Every reach of a leaf is spooled under `scratch` (fingerprint and
    /// file; the walk spools there too) and confirmed after the walk: by one merge with the
    /// snapshot's sorted key file when that reads less than looking each
    /// one up would cost, else by lookups in fingerprint order.
    Spool { scratch: &'a Path, keys: Option<&'a KeyFile> },
}

/// A spooled leaf reach: fingerprint (32 bytes), file index (u64 LE).
type LeafRecord = [u8; 40];

/// Mark's side of the walk: the source, where anything missing is fatal.
struct MarkSide<'a> {
    source: &'a dyn SourceTier,
    in_snapshot: &'a dyn Fn(ContainerId) -> bool,
    names: &'a dyn FileNames,
    tables: TableCache<'a>,
    /// Leaf reaches left for the check after the walk.
    spool: Option<Spool<40>>,
}

impl MarkSide<'_> {
    fn missing(&self, fingerprint: Fingerprint, file: u64) -> Error {
        Error::Tier(TierError::MissingSegment { path: self.names.name(file), fingerprint, tier: TierName::Source })
    }

    /// Confirms the spooled leaves (see [`LeafCheck::Spool`]).
    fn check_spooled(&mut self, keys: Option<&KeyFile>) -> Result<()> {
        let Some(spool) = self.spool.take() else { return Ok(()) };
        let record = |r: &LeafRecord| -> (Fingerprint, u64) { (fingerprint_at(r, 0), u64_at(r, 32)) };
        match keys.filter(|k| k.sorted && merge_pays(spool.len(), k.keys)) {
            Some(file) => {
                let mut contains = super::keys::merge(file)?;
                spool.drain_sorted(&mut |records| {
                    for r in records {
                        let (fp, file) = record(r);
                        if !contains(&fp.phf_key().0)? {
                            return Err(self.missing(fp, file));
                        }
                    }
                    Ok(())
                })
            }
            None => spool.drain_sorted(&mut |records| {
                for group in records.chunks(LOOKUP_BATCH) {
                    let mut fps: Vec<Fingerprint> = group.iter().map(|r| record(r).0).collect();
                    fps.dedup();
                    let located = self.source.locate(&fps)?;
                    if located.len() != fps.len() {
                        return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
                    }
                    let bad: std::collections::HashSet<Fingerprint> = fps
                        .iter()
                        .zip(located)
                        .filter(|(_, loc)| !loc.is_some_and(|c| (self.in_snapshot)(c)))
                        .map(|(f, _)| *f)
                        .collect();
                    if let Some((fp, file)) = group.iter().map(record).find(|(f, _)| bad.contains(f)) {
                        return Err(self.missing(fp, file));
                    }
                }
                Ok(())
            }),
        }
    }
}

impl Side for MarkSide<'_> {
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>> {
        let mut out = vec![None; items.len()];
        let mut asked = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            match &mut self.spool {
                // A leaf is never expanded, so its place is not needed now.
                Some(spool) if item.1 == 0 => {
                    let mut r: LeafRecord = [0u8; 40];
                    r[..32].copy_from_slice(&item.0.0);
                    r[32..].copy_from_slice(&item.2.to_le_bytes());
                    spool.push(r)?;
                }
                _ => asked.push(i),
            }
        }
        let fps: Vec<Fingerprint> = asked.iter().map(|&i| items[i].0).collect();
        let located = self.source.locate(&fps)?;
        if located.len() != fps.len() {
            return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
        }
        for (&i, loc) in asked.iter().zip(located) {
            let item = &items[i];
            if !loc.is_some_and(|c| (self.in_snapshot)(c)) {
                return Err(self.missing(item.0, item.2));
            }
            out[i] = loc;
        }
        Ok(out)
    }

    fn first(&mut self, _item: &Item, _slot: u64, _place: Option<ContainerId>) -> Result<()> {
        Ok(())
    }

    fn unknown(&mut self, item: &Item) -> Result<()> {
        Err(Error::Tier(TierError::MissingSegment {
            path: self.names.name(item.2),
            fingerprint: item.0,
            tier: TierName::SourcePhf,
        }))
    }

    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        // The file is named only on failure: naming reads it back.
        let file = items[0].1;
        // `place` errors on anything the source index does not place.
        let cid = cid.ok_or_else(|| {
            Error::Tier(TierError::MissingSegment { path: self.names.name(file), fingerprint: fps[0], tier: TierName::Source })
        })?;
        let bytes = self
            .tables
            .read(cid, &fps)
            .map_err(|e| with_file(e, &self.names.name(file)))?
            .into_iter()
            .collect::<Result<Vec<_>>>()?;
        Ok(decode_recipes(&bytes, &fps, level)?.into_iter().map(Some).collect())
    }
}

fn with_file(e: Error, file: &str) -> Error {
    match e {
        Error::Tier(TierError::MissingContainer { id, context }) => {
            Error::Tier(TierError::MissingContainer { id, context: format!("{context} (needed by file {file:?})") })
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
#[allow(clippy::too_many_arguments)] // the walk's inputs, each distinct; a struct would only rename them
pub(crate) fn mark(
    source: &dyn SourceTier,
    phf: &Phf,
    in_snapshot: &dyn Fn(ContainerId) -> bool,
    files: &mut dyn FileWindows,
    names: &dyn FileNames,
    phv: &mut Phv,
    leaves: LeafCheck<'_>,
    progress: &mut dyn FnMut(u64),
) -> Result<Walked> {
    let (spool, keys, scratch) = match leaves {
        LeafCheck::Lookup => (None, None, None),
        LeafCheck::Spool { scratch, keys } => (Some(Spool::new(&scratch.join("leaves"))), keys, Some(scratch)),
    };
    let mut side = MarkSide { source, in_snapshot, names, tables: TableCache::new(source), spool };
    let mut marks = PhfMarks::new(phf, phv);
    let walked = match scratch {
        Some(dir) => walk_in(files, &mut marks, &mut side, progress, &dir.join("walk"))?,
        None => walk(files, &mut marks, &mut side, progress)?,
    };
    side.check_spooled(keys)?;
    Ok(walked)
}

/// Collects, for one file, the fingerprints of its tree whose PHV bit is
/// set, reading recipes from the source.
struct AffectedSide<'a> {
    source: &'a dyn SourceTier,
    phf: &'a Phf,
    phv: &'a Phv,
    tables: TableCache<'a>,
    hits: Vec<Fingerprint>,
    path: &'a str,
}

impl Side for AffectedSide<'_> {
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        self.source.locate(&fps)
    }

    fn first(&mut self, item: &Item, _key: u64, _place: Option<ContainerId>) -> Result<()> {
        if self.phf.slot(&item.0).is_some_and(|s| self.phv.get(s)) {
            self.hits.push(item.0);
        }
        Ok(())
    }

    fn unknown(&mut self, _item: &Item) -> Result<()> {
        Ok(())
    }

    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        let cid = cid.ok_or_else(|| {
            Error::Tier(TierError::MissingSegment { path: self.path.into(), fingerprint: fps[0], tier: TierName::Source })
        })?;
        let bytes = self.tables.read(cid, &fps)?.into_iter().collect::<Result<Vec<_>>>()?;
        Ok(decode_recipes(&bytes, &fps, level)?.into_iter().map(Some).collect())
    }
}

/// The files whose trees reach a fingerprint with its PHV bit set that
/// `pick` accepts, each with up to three such fingerprints. Files whose
/// trees cannot be read are reported with the reason. At most `max_files`
/// are returned; the second value counts all affected files.
pub(crate) fn affected_files(
    source: &dyn SourceTier,
    phf: &Phf,
    phv: &Phv,
    files: &mut dyn FileWindows,
    pick: &dyn Fn(&[Fingerprint]) -> Result<Vec<bool>>,
    max_files: usize,
) -> (Vec<String>, usize) {
    let mut listed = Vec::new();
    let mut count = 0;
    loop {
        let window = match files.next_window() {
            Ok(Some((_, w))) => w,
            Ok(None) => break,
            Err(e) => {
                listed.push(format!("(the selected files cannot be read back: {e})"));
                break;
            }
        };
        for f in &window {
            let found = (|| -> Result<Vec<Fingerprint>> {
                let mut side =
                    AffectedSide { source, phf, phv, tables: TableCache::new(source), hits: Vec::new(), path: &f.path };
                walk(&mut InMemory::new(std::slice::from_ref(f)), &mut RecipeSet::default(), &mut side, &mut |_| {})?;
                let picked = pick(&side.hits)?;
                Ok(side.hits.into_iter().zip(picked).filter(|(_, yes)| *yes).map(|(h, _)| h).collect())
            })();
            let line = match found {
                Ok(hits) if hits.is_empty() => continue,
                Ok(hits) => {
                    let shown: Vec<String> = hits.iter().take(3).map(std::string::ToString::to_string).collect();
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
        for f in &fps {
            a.add(f);
        }
        for f in fps.iter().rev() {
            b.add(f);
        }
        assert_eq!(a, b);
        let mut c = SetSum::default();
        for f in &fps[1..] {
            c.add(f);
        }
        assert_ne!(a, c);
        assert_eq!(c.count, 99);
    }
}
