//! Walking the selected files' segment trees: marking (Mark phase, and the
//! estimate) and naming the files a problem affects (Verify phase, a
//! container lost mid-job).

use std::collections::BTreeMap;

use super::phf::Phf;
use super::phv::Phv;
use crate::error::{Error, Result};
use crate::read::{decode_recipes, fetch_located, fetch_recipes};
use crate::tier::{FileEntry, SourceTier};
use crate::{ContainerId, Fingerprint};

/// Items looked up in the index per batch while marking.
const MARK_BATCH: usize = 4096;

/// Sets the PHV bit of every segment reachable from `files`, data and
/// recipe alike. Every reached fingerprint must be in the source index, in
/// a snapshot container (else: an error naming the file and fingerprint);
/// that check is also what makes the PHF slot trustworthy, since the PHF
/// gives arbitrary slots to non-members. A subtree whose root bit is
/// already set was expanded before and is skipped. Returns the number of
/// bits newly set.
pub(crate) fn mark(
    source: &dyn SourceTier,
    phf: &Phf,
    in_snapshot: &dyn Fn(ContainerId) -> bool,
    files: &[FileEntry],
    phv: &mut Phv,
    progress: &mut dyn FnMut(u64),
) -> Result<u64> {
    let mut marked = 0u64;
    // (fingerprint, level, index of the file that reached it)
    let mut stack: Vec<(Fingerprint, u8, u32)> = files.iter().enumerate().map(|(i, f)| (f.root, f.height, i as u32)).collect();
    while !stack.is_empty() {
        let batch = stack.split_off(stack.len().saturating_sub(MARK_BATCH));
        let fps: Vec<Fingerprint> = batch.iter().map(|b| b.0).collect();
        let located = source.locate(&fps)?;
        // Recipes to expand, grouped by (level, container) so each group is
        // one metadata read and one segment read.
        let mut expand: BTreeMap<(u8, ContainerId), Vec<(Fingerprint, u32)>> = BTreeMap::new();
        for (&(fp, level, file), loc) in batch.iter().zip(located) {
            let path = || files[file as usize].path.clone();
            let cid = match loc {
                Some(c) if in_snapshot(c) => c,
                _ => return Err(Error::MissingSegment { path: path(), fingerprint: fp, tier: "source".into() }),
            };
            let slot = phf.slot(&fp).ok_or_else(|| Error::MissingSegment {
                path: path(),
                fingerprint: fp,
                tier: "source PHF".into(),
            })?;
            if phv.get(slot) {
                continue;
            }
            phv.set(slot);
            marked += 1;
            if level >= 1 {
                expand.entry((level, cid)).or_default().push((fp, file));
            }
        }
        for ((level, cid), items) in expand {
            // The batch lookup above already placed these: no second lookup.
            let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
            let bytes = fetch_located(source, &fps, &vec![Some(cid); fps.len()], &files[items[0].1 as usize].path)?;
            let recipes = decode_recipes(&bytes, &fps, level)?;
            for (r, (_, file)) in recipes.into_iter().zip(items) {
                stack.extend(r.children.iter().map(|c| (c.fingerprint, level - 1, file)));
            }
        }
        progress(marked);
    }
    Ok(marked)
}

/// The files whose trees reach a fingerprint with its PHV bit set that
/// `pick` accepts, each with up to `per_file` such fingerprints. Files whose
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
