//! The one tree walk: every selected file's segment tree, level by level
//! and in batches (one batched index lookup per batch, one metadata and
//! one segment read per group of recipes in the same container). Mark runs
//! it on the source, Verify on the target, `IndexedTier::verify` on a tier's
//! whole namespace, and the engine to name the files a problem affects;
//! each supplies a [`Side`] (where nodes live, what to do with them) and
//! [`Marks`] (what was reached and expanded). Restoring a file is the one
//! walk that is not this: it must stream leaves in file order
//! ([`crate::tier::read::read_file`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::spool::{Spool, fingerprint_at, u64_at};
use crate::error::{Error, FormatError, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::tier::{FileEntry, SegmentEntry, Tier};

/// Items looked up in the index per batch while walking.
const WALK_BATCH: usize = 4096;
/// Table entries a walk keeps cached for reading recipes (48 bytes
/// each in memory, so about 25 MiB). Recipes of files ingested together
/// sit in the same few meta containers, so a small cache reads each one's
/// table once in practice, while memory stays bounded however large the
/// tables are (a count of tables was not: 256 tables of tiny segments
/// held hundreds of megabytes).
const TABLE_CACHE_ENTRIES: usize = 1 << 19;

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
/// data), and the index of the file that reached it in the whole list.
pub(crate) type Item = (Fingerprint, u8, u64);

/// A recipe to expand: its fingerprint, the index of the file that reached
/// it, and its PHF slot.
pub(crate) type ToExpand = (Fingerprint, u64, u64);

/// The files a walk starts from, window by window, so that memory holds
/// one window, never the whole list (a job's selected files stream from
/// its context).
pub(crate) trait FileWindows {
    /// The next window: the index of its first file in the whole list,
    /// and its files. `None` after the last.
    fn next_window(&mut self) -> Result<Option<(u64, Vec<FileEntry>)>>;
}

/// Names a file by its index in the whole list, for errors and reports.
pub(crate) trait FileNames {
    /// The path of file `index`, or a placeholder naming the index when it
    /// cannot be read back.
    fn name(&self, index: u64) -> String;
}

impl FileNames for Vec<FileEntry> {
    fn name(&self, index: u64) -> String {
        self.get(index as usize).map_or_else(|| format!("(file #{index})"), |f| f.path.clone())
    }
}

/// Files in memory, walked in windows of [`WINDOW`].
pub(crate) struct InMemory<'a> {
    files: &'a [FileEntry],
    at: usize,
}

impl<'a> InMemory<'a> {
    pub(crate) fn new(files: &'a [FileEntry]) -> Self {
        InMemory { files, at: 0 }
    }
}

impl FileWindows for InMemory<'_> {
    fn next_window(&mut self) -> Result<Option<(u64, Vec<FileEntry>)>> {
        if self.at >= self.files.len() {
            return Ok(None);
        }
        let end = (self.at + WINDOW).min(self.files.len());
        let w = (self.at as u64, self.files[self.at..end].to_vec());
        self.at = end;
        Ok(Some(w))
    }
}

/// A tier's whole namespace, listed a window at a time in path order (gc
/// walks it: holding a namespace of millions of files in memory would
/// make gc's memory grow with the files).
pub(crate) struct Listed<'a> {
    tier: &'a dyn Tier,
    after: Option<String>,
    next: u64,
    done: bool,
}

impl<'a> Listed<'a> {
    pub(crate) fn new(tier: &'a dyn Tier) -> Self {
        Listed { tier, after: None, next: 0, done: false }
    }

    /// How many files the windows so far held.
    pub(crate) fn listed(&self) -> u64 {
        self.next
    }
}

impl FileWindows for Listed<'_> {
    fn next_window(&mut self) -> Result<Option<(u64, Vec<FileEntry>)>> {
        if self.done {
            return Ok(None);
        }
        let page = self.tier.list_files(self.after.as_deref(), WINDOW)?;
        let Some(last) = page.last() else {
            self.done = true;
            return Ok(None);
        };
        self.after = Some(last.path.clone());
        let first = self.next;
        self.next += page.len() as u64;
        Ok(Some((first, page)))
    }
}

impl Listed<'_> {
    /// The paths of the files at `indices` (ascending), by one more listing
    /// of the namespace up to the last of them; an index past the end is
    /// named by its number. Slow, but names are wanted only for reports.
    pub(crate) fn names(&self, indices: &[u64]) -> Result<Vec<String>> {
        let mut out = Vec::with_capacity(indices.len());
        let mut again = Listed::new(self.tier);
        let mut window: Option<(u64, Vec<FileEntry>)> = None;
        for &index in indices {
            while window.as_ref().is_none_or(|(first, w)| index >= first + w.len() as u64) {
                match again.next_window()? {
                    Some(w) => window = Some(w),
                    None => break,
                }
            }
            let name = window.as_ref().and_then(|(first, w)| w.get(usize::try_from(index.checked_sub(*first)?).ok()?));
            out.push(name.map_or_else(|| format!("(file #{index})"), |f| f.path.clone()));
        }
        Ok(out)
    }
}

impl FileNames for Listed<'_> {
    fn name(&self, index: u64) -> String {
        self.names(&[index]).ok().and_then(|mut n| n.pop()).unwrap_or_else(|| format!("(file #{index})"))
    }
}

/// Files read into memory at once (their roots then go to the walk's
/// spool).
pub(crate) const WINDOW: usize = 1 << 16;

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
    /// Recipe reads: groups of recipes of one level in one container,
    /// each one `read_segments` call of the tier (what an estimate of an
    /// object source's requests counts).
    pub(crate) recipe_reads: u64,
}

/// How a walk remembers what it reached and which recipes it expanded.
pub(crate) trait Marks {
    /// Notes `fp` as reached. Returns its key (a PHF slot, passed on to
    /// the side) and whether this is its first reach; `None` when `fp` has
    /// no key (not a member of the PHF's key set).
    fn reach(&mut self, fp: &Fingerprint, level: u8) -> Option<(u64, bool)>;
    /// Notes recipe `fp` as expanded; true if it was not yet.
    fn expand(&mut self, key: u64, fp: &Fingerprint) -> bool;
}

/// Marks for a walk without a PHF: every reach counts as a first (so
/// every leaf is checked each time a recipe lists it), and recipes are
/// expanded once each (a set of recipe fingerprints: recipes are about one
/// in a thousand segments).
#[derive(Default)]
pub(crate) struct RecipeSet {
    expanded: HashSet<Fingerprint>,
}

impl Marks for RecipeSet {
    fn reach(&mut self, _fp: &Fingerprint, _level: u8) -> Option<(u64, bool)> {
        Some((0, true))
    }

    fn expand(&mut self, _key: u64, fp: &Fingerprint) -> bool {
        self.expanded.insert(*fp)
    }
}

/// Walks the trees of the files in `files` from their roots (see
/// [`walk_in`]), spooling under a directory of the system's temp dir when
/// a pass outgrows memory.
pub(crate) fn walk(
    files: &mut dyn FileWindows,
    marks: &mut dyn Marks,
    side: &mut dyn Side,
    progress: &mut dyn FnMut(u64),
) -> Result<Walked> {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let scratch = std::env::temp_dir().join(format!("tierseed-walk-{}-{n}", std::process::id()));
    let r = walk_in(files, marks, side, progress, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    r
}

/// A node waiting for its pass: fingerprint, level, file index (u64 LE).
type NodeRecord = [u8; 41];
/// A recipe to expand: a byte spreading containers over the spool's
/// buckets, whether it is placed (1) or not (0), the container id
/// (big-endian, so a bucket sorts by container), level, fingerprint, file
/// index and key (u64 LE).
type ExpandRecord = [u8; 67];

fn node_record(fp: &Fingerprint, level: u8, file: u64) -> NodeRecord {
    let mut r = [0u8; 41];
    r[..32].copy_from_slice(&fp.0);
    r[32] = level;
    r[33..].copy_from_slice(&file.to_le_bytes());
    r
}

fn read_node(r: &NodeRecord) -> Item {
    (fingerprint_at(r, 0), r[32], u64_at(r, 33))
}

fn expand_record(place: Option<ContainerId>, level: u8, e: &ToExpand) -> ExpandRecord {
    let mut r = [0u8; 67];
    let cid = place.map_or(0, |c| c.0);
    r[0] = (cid.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8;
    r[1] = u8::from(place.is_some());
    r[2..10].copy_from_slice(&cid.to_be_bytes());
    r[10] = level;
    r[11..43].copy_from_slice(&e.0.0);
    r[43..51].copy_from_slice(&e.1.to_le_bytes());
    r[51..59].copy_from_slice(&e.2.to_le_bytes());
    r
}

fn read_expand(r: &ExpandRecord) -> ((u8, Option<ContainerId>), ToExpand) {
    // The id is big-endian (so buckets sort by container).
    let place = (r[1] == 1).then_some(ContainerId(u64_at(r, 2).swap_bytes()));
    ((r[10], place), (fingerprint_at(r, 11), u64_at(r, 43), u64_at(r, 51)))
}

/// Walks the trees of the files in `files` from their roots, one level at
/// a time across all files (spooled under `scratch` beyond memory):
/// every node is placed by the side (batched lookups, in fingerprint
/// order), noted in `marks` (a node reached before is not counted or
/// checksummed again), and every recipe is expanded once, container by
/// container, so each container's table is read once per level whatever
/// order the files come in (paths that interleave hosts put neighbouring
/// files in far-apart containers: a walk in file order read every table
/// once per batch, 70 GB of tables at 100M segments). The leaves a
/// recipe lists are visited as they come, never spooled. Memory holds the
/// spools' buffers and one container's recipes, whatever the number of
/// files and nodes.
pub(crate) fn walk_in(
    files: &mut dyn FileWindows,
    marks: &mut dyn Marks,
    side: &mut dyn Side,
    progress: &mut dyn FnMut(u64),
    scratch: &std::path::Path,
) -> Result<Walked> {
    let mut out = Walked { distinct: 0, sum: SetSum::default(), recipe_reads: 0 };
    let mut pass = 0u32;
    let mut frontier: Spool<41> = Spool::new(&scratch.join(format!("nodes-{pass}")));
    while let Some((first, window)) = files.next_window()? {
        for (i, f) in window.iter().enumerate() {
            frontier.push(node_record(&f.root, f.height, first + i as u64))?;
        }
    }
    while frontier.len() > 0 {
        pass += 1;
        let mut expand: Spool<67> = Spool::new(&scratch.join(format!("expand-{pass}")));
        let mut next: Spool<41> = Spool::new(&scratch.join(format!("nodes-{pass}")));
        frontier.drain_sorted(&mut |records| {
            let items: Vec<Item> = records.iter().map(read_node).collect();
            for (level_place, items) in visit(&items, marks, side, &mut out)? {
                for e in &items {
                    expand.push(expand_record(level_place.1, level_place.0, e))?;
                }
            }
            Ok(())
        })?;
        let mut leaves: Vec<Item> = Vec::new();
        expand.drain_sorted(&mut |records| {
            let mut at = 0;
            while at < records.len() {
                let (group, _) = read_expand(&records[at]);
                // A group is the records whose placement and level bytes match.
                let end = at + records[at..].iter().take_while(|r| r[1..11] == records[at][1..11]).count();
                let items: Vec<ToExpand> = records[at..end].iter().map(|r| read_expand(r).1).collect();
                at = end;
                let (level, cid) = group;
                let recipes = side.recipes(level, cid, &items)?;
                out.recipe_reads += 1;
                for (r, &(_, file, _)) in recipes.into_iter().zip(&items) {
                    let Some(r) = r else { continue };
                    for c in &r.children {
                        if level == 1 {
                            leaves.push((c.fingerprint, 0, file));
                        } else {
                            next.push(node_record(&c.fingerprint, level - 1, file))?;
                        }
                    }
                    if leaves.len() >= WALK_BATCH {
                        visit(&leaves, marks, side, &mut out)?;
                        leaves.clear();
                    }
                }
            }
            progress(out.distinct);
            Ok(())
        })?;
        if !leaves.is_empty() {
            visit(&leaves, marks, side, &mut out)?;
        }
        progress(out.distinct);
        frontier = next;
    }
    Ok(out)
}

/// Recipes to expand, by (level, container placed in).
type Expansions = BTreeMap<(u8, Option<ContainerId>), Vec<ToExpand>>;

/// Places and notes one batch of nodes; returns its recipes to expand,
/// grouped by (level, container) so each group is one metadata read and
/// one segment read.
fn visit(batch: &[Item], marks: &mut dyn Marks, side: &mut dyn Side, out: &mut Walked) -> Result<Expansions> {
    let mut expand = Expansions::new();
    for part in batch.chunks(WALK_BATCH) {
        let placed = side.place(part)?;
        if placed.len() != part.len() {
            return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
        }
        for (item, place) in part.iter().zip(placed) {
            let Some((key, first)) = marks.reach(&item.0, item.1) else {
                side.unknown(item)?;
                continue;
            };
            if first {
                out.distinct += 1;
                out.sum.add(&item.0);
                side.first(item, key, place)?;
            }
            if item.1 >= 1 && marks.expand(key, &item.0) {
                expand.entry((item.1, place)).or_default().push((item.0, item.2, key));
            }
        }
    }
    Ok(expand)
}

/// Container tables read through a tier, for fetching recipes by
/// fingerprint from a container already located.
pub(crate) struct TableCache<'a> {
    tier: &'a dyn Tier,
    /// Each table sorted by fingerprint (48 bytes an entry; a hash map
    /// took twice that).
    tables: HashMap<ContainerId, Arc<Vec<SegmentEntry>>>,
    entries: usize,
}

impl<'a> TableCache<'a> {
    pub(crate) fn new(tier: &'a dyn Tier) -> Self {
        TableCache { tier, tables: HashMap::new(), entries: 0 }
    }

    /// The segments `fps` of container `cid`, each checked against the
    /// container's table and its fingerprint. The outer error is the
    /// container's (unreadable); an inner one names one segment.
    pub(crate) fn read(&mut self, cid: ContainerId, fps: &[Fingerprint]) -> Result<Vec<Result<Vec<u8>>>> {
        let table = if let Some(t) = self.tables.get(&cid) {
            Arc::clone(t)
        } else {
            let meta = self.tier.read_metadata(cid)?;
            if self.entries + meta.segments.len() > TABLE_CACHE_ENTRIES {
                self.tables.clear();
                self.entries = 0;
            }
            self.entries += meta.segments.len();
            let mut sorted = meta.segments;
            sorted.sort_unstable_by_key(|a| a.fingerprint);
            let t = Arc::new(sorted);
            self.tables.insert(cid, Arc::clone(&t));
            t
        };
        let mut out: Vec<Result<Vec<u8>>> = Vec::with_capacity(fps.len());
        let mut which = Vec::with_capacity(fps.len());
        let mut at = Vec::with_capacity(fps.len());
        for fp in fps {
            match table.binary_search_by(|e| e.fingerprint.cmp(fp)).ok().map(|i| &table[i]) {
                Some(e) => {
                    at.push(out.len());
                    which.push(*e);
                    out.push(Ok(Vec::new()));
                }
                None => out.push(Err(Error::Format(FormatError::CorruptContainer {
                    id: cid,
                    path: None,
                    reason: format!("the index places segment {fp} here, the container's table does not list it"),
                }))),
            }
        }
        if which.is_empty() {
            return Ok(out);
        }
        let bytes = self.tier.read_segments(cid, &which)?;
        if bytes.len() != which.len() {
            return Err(Error::contract(
                format!("read_segments of container {cid}"),
                format!("answered {} segments for {} asked", bytes.len(), which.len()),
            ));
        }
        for ((i, e), b) in at.into_iter().zip(&which).zip(bytes) {
            out[i] = crate::format::container::open_segment(e, b, cid);
        }
        Ok(out)
    }
}
