//! Verified reads through the [`SourceTier`] trait: fetch segments by
//! fingerprint and walk segment trees. Used by restore, verify and the
//! engine's Mark and Verify phases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, FormatError, Result, TierError, TierName};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::tier::SourceTier;
use crate::tier::{ContainerMeta, SegmentEntry};

/// Containers' tables, looked up by fingerprint, kept across the reads of
/// a tier's restores. A restore of many small files reads the same few
/// tables again and again; parsing one and hashing its entries was a third
/// of such a restore's CPU. Safe to keep because a table is only used to
/// pick entries that are then read from the container itself (a container
/// gone since fails that read), containers never change, and their ids are
/// never reused by a running tier. Never used to answer whether a container
/// exists: Copy and Verify ask the tier.
#[derive(Default)]
pub(crate) struct Tables(Mutex<HashMap<ContainerId, Arc<HashMap<Fingerprint, SegmentEntry>>>>);

/// Tables kept at most (about 80 KiB each for a 4 MiB container of small
/// compressed segments); the whole set is dropped when full.
const TABLES_KEPT: usize = 128;

impl Tables {
    fn get(&self, tier: &dyn SourceTier, cid: ContainerId, file: &str) -> Result<Arc<HashMap<Fingerprint, SegmentEntry>>> {
        let lock = || self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = lock().get(&cid) {
            return Ok(Arc::clone(t));
        }
        let meta: ContainerMeta = tier.read_metadata(cid).map_err(|e| with_file(e, file))?;
        let table: Arc<HashMap<Fingerprint, SegmentEntry>> =
            Arc::new(meta.segments.iter().map(|e| (e.fingerprint, *e)).collect());
        let mut all = lock();
        if all.len() >= TABLES_KEPT {
            all.clear();
        }
        all.insert(cid, Arc::clone(&table));
        Ok(table)
    }

    /// Forgets container `cid` (deleted by space reclamation).
    pub(crate) fn forget(&self, cid: ContainerId) {
        self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&cid);
    }
}

/// Fetches segments by fingerprint, in the order asked, each verified
/// against its fingerprint. One batched index lookup for all of them, then
/// one metadata read (or a kept table) and one segment read per run of the
/// same container. `file` names the file being read, for errors.
pub(crate) fn fetch_segments(tier: &dyn SourceTier, tables: &Tables, fps: &[Fingerprint], file: &str) -> Result<Vec<Vec<u8>>> {
    let located = tier.locate(fps)?;
    fetch_located(tier, tables, fps, &located, file)
}

/// [`fetch_segments`] for callers that already looked the fingerprints up.
pub(crate) fn fetch_located(
    tier: &dyn SourceTier,
    tables: &Tables,
    fps: &[Fingerprint],
    located: &[Option<ContainerId>],
    file: &str,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(fps.len());
    let mut i = 0;
    while i < fps.len() {
        let Some(cid) = located[i] else {
            return Err(Error::Tier(TierError::MissingSegment {
                path: file.into(),
                fingerprint: fps[i],
                tier: TierName::Unnamed,
            }));
        };
        let mut j = i + 1;
        while j < fps.len() && located[j] == Some(cid) {
            j += 1;
        }
        let table = tables.get(tier, cid, file)?;
        let mut which = Vec::with_capacity(j - i);
        for fp in &fps[i..j] {
            let e = table.get(fp).ok_or_else(|| {
                Error::Format(FormatError::CorruptContainer {
                    id: cid,
                    path: None,
                    reason: format!("index says it holds segment {fp} (of file {file:?}), its table does not"),
                })
            })?;
            which.push(*e);
        }
        let bytes = tier.read_segments(cid, &which).map_err(|e| with_file(e, file))?;
        // A tier that answers short would otherwise restore a short file
        // (the bug "read.rs never checks how many segments came back").
        if bytes.len() != which.len() {
            return Err(Error::tier(
                format!("container {cid} (file {file:?})"),
                std::io::Error::other(format!("asked for {} segments, got {}", which.len(), bytes.len())),
            ));
        }
        for (e, b) in which.iter().zip(bytes) {
            out.push(crate::format::container::open_segment(e, b, cid)?);
        }
        i = j;
    }
    Ok(out)
}

fn with_file(e: Error, file: &str) -> Error {
    match e {
        Error::Tier(TierError::MissingContainer { id, context }) => {
            Error::Tier(TierError::MissingContainer { id, context: format!("{context} (needed by file {file:?})") })
        }
        e => e,
    }
}

/// Fetches and decodes recipes at `level`.
pub(crate) fn fetch_recipes(
    tier: &dyn SourceTier,
    tables: &Tables,
    fps: &[Fingerprint],
    level: u8,
    file: &str,
) -> Result<Vec<Recipe>> {
    decode_recipes(&fetch_segments(tier, tables, fps, file)?, fps, level)
}

/// Decodes fetched recipe segments at `level`.
pub(crate) fn decode_recipes(bytes: &[Vec<u8>], fps: &[Fingerprint], level: u8) -> Result<Vec<Recipe>> {
    bytes.iter().zip(fps).map(|(b, fp)| Recipe::decode(b, fp, level)).collect()
}

/// Streams a file's bytes, in order, to `sink`: every byte verified.
pub(crate) fn read_file(
    tier: &dyn SourceTier,
    tables: &Tables,
    root: Fingerprint,
    height: u8,
    file: &str,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let top = fetch_recipes(tier, tables, &[root], height, file)?;
    let mut written = 0u64;
    read_recipe(tier, tables, &top[0], file, sink, &mut written)?;
    Ok(written)
}

/// How many children are fetched per batch while reading a file.
const READ_BATCH: usize = 64;

fn read_recipe(
    tier: &dyn SourceTier,
    tables: &Tables,
    r: &Recipe,
    file: &str,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    written: &mut u64,
) -> Result<()> {
    for group in r.children.chunks(READ_BATCH) {
        let fps: Vec<Fingerprint> = group.iter().map(|c| c.fingerprint).collect();
        if r.level == 1 {
            for (bytes, c) in fetch_segments(tier, tables, &fps, file)?.iter().zip(group) {
                if bytes.len() as u64 != c.len {
                    return Err(Error::corrupt_record(
                        format!("recipe of file {file:?}"),
                        format!("segment {} has {} bytes, recipe says {}", c.fingerprint, bytes.len(), c.len),
                    ));
                }
                sink(bytes)?;
                *written += c.len;
            }
        } else {
            for child in fetch_recipes(tier, tables, &fps, r.level - 1, file)? {
                read_recipe(tier, tables, &child, file, sink, written)?;
            }
        }
    }
    Ok(())
}
