//! Proof by bytes of segments a target already holds.
//!
//! A move removes files from the source, so it may rely on a segment the
//! target already had only after reading it back from the target and
//! hashing it: an index entry, a container's existence or an earlier
//! job's Verify proves nothing about the bytes (the bug "a byte of rot on
//! the target let a move delete the only good copy"). What fails the
//! proof is offered to the target for retirement, and the caller writes
//! the source's verified copy instead.

use std::collections::BTreeMap;

use crate::error::{Error, Result, TierError};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::{SegmentEntry, TargetTier};

/// Reads each `(fingerprint, container)` back from the target container
/// its index names, and hashes it. Returns, per item, whether its bytes
/// are proven; those that are not were offered to the target for
/// retirement (so the copy written next becomes their home). Reads one
/// table and one batch of segments per container.
pub(super) fn prove_on_target(target: &dyn TargetTier, items: &[(Fingerprint, ContainerId)]) -> Result<Vec<bool>> {
    let mut by_container: BTreeMap<ContainerId, Vec<usize>> = BTreeMap::new();
    for (i, (_, c)) in items.iter().enumerate() {
        by_container.entry(*c).or_default().push(i);
    }
    let mut proven = vec![false; items.len()];
    for (c, which) in by_container {
        let meta = match target.read_metadata(c) {
            Ok(m) => m,
            Err(e) if e.is_rot() || matches!(e.root(), Error::Tier(TierError::MissingContainer { .. })) => {
                log::warn!("target container {c} cannot be proven ({e}); its segments are copied again");
                continue;
            }
            Err(e) => return Err(e),
        };
        // The first entry listed for each fingerprint asked.
        let mut asked: Vec<(usize, SegmentEntry)> = Vec::with_capacity(which.len());
        for &i in &which {
            if let Some(e) = meta.segments.iter().find(|e| e.fingerprint == items[i].0) {
                asked.push((i, *e));
            }
        }
        if asked.is_empty() {
            continue;
        }
        let entries: Vec<SegmentEntry> = asked.iter().map(|a| a.1).collect();
        let bytes = match target.read_segments(c, &entries) {
            Ok(b) if b.len() == entries.len() => b,
            Ok(b) => {
                return Err(Error::tier(
                    format!("target container {c}"),
                    std::io::Error::other(format!("asked for {} segments, got {}", entries.len(), b.len())),
                ));
            }
            Err(e) if e.is_rot() => {
                log::warn!("target container {c} cannot be proven ({e}); its segments are copied again");
                continue;
            }
            Err(e) => return Err(e),
        };
        for ((i, e), b) in asked.iter().zip(&bytes) {
            proven[*i] = crate::format::container::check_stored(e, b, c).is_ok();
        }
    }
    let suspects: Vec<(Fingerprint, ContainerId)> =
        items.iter().zip(&proven).filter(|(_, ok)| !**ok).map(|(item, _)| *item).collect();
    if !suspects.is_empty() {
        let retired = target.retire_segments(&suspects)?;
        log::warn!(
            "{} segment(s) the target's index holds failed their proof by bytes; {retired} retired by the target, all copied again",
            suspects.len()
        );
    }
    Ok(proven)
}
