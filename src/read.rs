//! Verified reads through the [`SourceTier`] trait: fetch segments by
//! fingerprint and walk segment trees. Used by restore, verify and the
//! engine's Mark and Verify phases.

use std::collections::HashMap;

use crate::error::{Error, Result};
use crate::tier::SourceTier;
use crate::tier::{ContainerMeta, SegmentEntry};
use crate::tree::Recipe;
use crate::{ContainerId, Fingerprint};

/// Fetches segments by fingerprint, in the order asked, each verified
/// against its fingerprint. One batched index lookup for all of them, then
/// one metadata read and one segment read per run of the same container.
/// `file` names the file being read, for errors.
pub(crate) fn fetch_segments(tier: &dyn SourceTier, fps: &[Fingerprint], file: &str) -> Result<Vec<Vec<u8>>> {
    let located = tier.locate(fps)?;
    fetch_located(tier, fps, &located, file)
}

/// [`fetch_segments`] for callers that already looked the fingerprints up.
pub(crate) fn fetch_located(
    tier: &dyn SourceTier,
    fps: &[Fingerprint],
    located: &[Option<ContainerId>],
    file: &str,
) -> Result<Vec<Vec<u8>>> {
    let mut out = Vec::with_capacity(fps.len());
    let mut metas: HashMap<ContainerId, HashMap<Fingerprint, SegmentEntry>> = HashMap::new();
    let mut i = 0;
    while i < fps.len() {
        let Some(cid) = located[i] else {
            return Err(Error::MissingSegment { path: file.into(), fingerprint: fps[i], tier: "tier".into() });
        };
        let mut j = i + 1;
        while j < fps.len() && located[j] == Some(cid) {
            j += 1;
        }
        let table = match metas.entry(cid) {
            std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
            std::collections::hash_map::Entry::Vacant(v) => {
                let meta: ContainerMeta = tier.read_metadata(cid).map_err(|e| with_file(e, file))?;
                v.insert(meta.segments.iter().map(|e| (e.fingerprint, *e)).collect())
            }
        };
        let mut which = Vec::with_capacity(j - i);
        for fp in &fps[i..j] {
            let e = table.get(fp).ok_or_else(|| Error::CorruptContainer {
                id: cid,
                path: None,
                reason: format!("index says it holds segment {fp} (of file {file:?}), its table does not"),
            })?;
            which.push(*e);
        }
        let bytes = tier.read_segments(cid, &which)?;
        for (e, b) in which.iter().zip(bytes) {
            out.push(crate::container::open_segment(e, b, cid)?);
        }
        i = j;
    }
    Ok(out)
}

fn with_file(e: Error, file: &str) -> Error {
    match e {
        Error::MissingContainer { id, context } => {
            Error::MissingContainer { id, context: format!("{context} (needed by file {file:?})") }
        }
        e => e,
    }
}

/// Fetches and decodes recipes at `level`.
pub(crate) fn fetch_recipes(tier: &dyn SourceTier, fps: &[Fingerprint], level: u8, file: &str) -> Result<Vec<Recipe>> {
    decode_recipes(&fetch_segments(tier, fps, file)?, fps, level)
}

/// Decodes fetched recipe segments at `level`.
pub(crate) fn decode_recipes(bytes: &[Vec<u8>], fps: &[Fingerprint], level: u8) -> Result<Vec<Recipe>> {
    bytes.iter().zip(fps).map(|(b, fp)| Recipe::decode(b, fp, level)).collect()
}

/// Streams a file's bytes, in order, to `sink`: every byte verified.
pub(crate) fn read_file(
    tier: &dyn SourceTier,
    root: Fingerprint,
    height: u8,
    file: &str,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
) -> Result<u64> {
    let top = fetch_recipes(tier, &[root], height, file)?;
    let mut written = 0u64;
    read_recipe(tier, &top[0], file, sink, &mut written)?;
    Ok(written)
}

/// How many children are fetched per batch while reading a file.
const READ_BATCH: usize = 64;

fn read_recipe(
    tier: &dyn SourceTier,
    r: &Recipe,
    file: &str,
    sink: &mut dyn FnMut(&[u8]) -> Result<()>,
    written: &mut u64,
) -> Result<()> {
    for group in r.children.chunks(READ_BATCH) {
        let fps: Vec<Fingerprint> = group.iter().map(|c| c.fingerprint).collect();
        if r.level == 1 {
            for (bytes, c) in fetch_segments(tier, &fps, file)?.iter().zip(group) {
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
            for child in fetch_recipes(tier, &fps, r.level - 1, file)? {
                read_recipe(tier, &child, file, sink, written)?;
            }
        }
    }
    Ok(())
}
