//! Packing segments into containers of a target size.
//!
//! Shared by ingest and by the seeding engine's Copy phase, so that both
//! write containers the same way and both deduplicate within the batch.

use std::collections::HashSet;

use crate::error::Result;
use crate::tier::TargetTier;
use crate::tier::{Codec, ContainerKind, StoredSegment};
use crate::{ContainerId, Fingerprint};

/// A segment as stored, owned: what a packer holds until it seals.
pub(crate) struct OwnedSegment {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) bytes: Vec<u8>,
    pub(crate) raw_len: u32,
    pub(crate) codec: Codec,
}

impl OwnedSegment {
    fn stored(&self) -> StoredSegment<'_> {
        StoredSegment { fingerprint: self.fingerprint, bytes: &self.bytes, raw_len: self.raw_len, codec: self.codec }
    }
}

/// What a sealed container held, reported to the caller.
pub(crate) struct Sealed {
    pub(crate) id: ContainerId,
    pub(crate) fingerprints: Vec<Fingerprint>,
    pub(crate) bytes: u64,
}

/// Accumulates segments of one kind until the target size, then writes
/// them through [`TargetTier::write_container`].
pub(crate) struct Packer {
    kind: ContainerKind,
    target_size: u64,
    segments: Vec<OwnedSegment>,
    bytes: u64,
    pending: HashSet<Fingerprint>,
    first_tag: Option<u64>,
}

impl Packer {
    pub(crate) fn new(kind: ContainerKind, target_size: u64) -> Self {
        Packer { kind, target_size: target_size.max(1), segments: Vec::new(), bytes: 0, pending: HashSet::new(), first_tag: None }
    }

    /// Whether `fp` is already waiting in this packer.
    pub(crate) fn holds(&self, fp: &Fingerprint) -> bool {
        self.pending.contains(fp)
    }

    /// The tag of the oldest pending segment (the engine tags segments with
    /// their source container's snapshot index, so this bounds the cursor).
    pub(crate) fn first_tag(&self) -> Option<u64> {
        self.first_tag
    }

    /// Adds a segment unless it is already pending. If adding it would pass
    /// the target size, first seals what is pending and returns that.
    pub(crate) fn add(&mut self, target: &dyn TargetTier, seg: OwnedSegment, tag: u64) -> Result<Option<Sealed>> {
        if self.pending.contains(&seg.fingerprint) {
            return Ok(None);
        }
        let sealed = if !self.segments.is_empty() && self.bytes + seg.bytes.len() as u64 > self.target_size {
            self.seal(target)?
        } else {
            None
        };
        self.bytes += seg.bytes.len() as u64;
        self.pending.insert(seg.fingerprint);
        self.first_tag.get_or_insert(tag);
        self.segments.push(seg);
        Ok(sealed)
    }

    /// Writes whatever is pending as one container (nothing if empty).
    pub(crate) fn seal(&mut self, target: &dyn TargetTier) -> Result<Option<Sealed>> {
        if self.segments.is_empty() {
            return Ok(None);
        }
        let refs: Vec<StoredSegment<'_>> = self.segments.iter().map(OwnedSegment::stored).collect();
        let id = target.write_container(self.kind, &refs)?;
        let sealed = Sealed { id, fingerprints: self.segments.iter().map(|s| s.fingerprint).collect(), bytes: self.bytes };
        self.segments.clear();
        self.pending.clear();
        self.first_tag = None;
        self.bytes = 0;
        Ok(Some(sealed))
    }
}
