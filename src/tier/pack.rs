//! Packing segments into containers of a target size.
//!
//! Shared by ingest and by the seeding engine's Copy phase, so that both
//! pack and deduplicate within the batch the same way. A packer only
//! gathers: it hands back full [`Batch`]es, which the caller writes, at
//! once (ingest) or on a writer thread while the next batch fills (Copy).

use std::collections::HashSet;

use crate::error::Result;
use crate::format::container::ENTRY_LEN;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::{Codec, ContainerKind, StoredSegment, TargetTier};

/// A segment as stored, owned: what a packer holds until it seals.
pub(crate) struct OwnedSegment {
    pub(crate) fingerprint: Fingerprint,
    /// Possibly a slice of a larger buffer (a source run Copy read whole):
    /// held, it holds that buffer.
    pub(crate) bytes: bytes::Bytes,
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

/// One container's worth of segments of one kind, ready to be written.
pub(crate) struct Batch {
    pub(crate) kind: ContainerKind,
    pub(crate) segments: Vec<OwnedSegment>,
    /// Stored bytes.
    pub(crate) bytes: u64,
    /// The smallest tag of its segments (the engine tags segments with
    /// their source container's snapshot index, so this bounds the cursor).
    pub(crate) first_tag: Option<u64>,
}

impl Batch {
    /// Writes the batch as one container; durable and indexed on return.
    pub(crate) fn write(self, target: &dyn TargetTier) -> Result<Sealed> {
        let refs: Vec<StoredSegment<'_>> = self.segments.iter().map(OwnedSegment::stored).collect();
        let id = target.write_container(self.kind, &refs)?;
        Ok(Sealed { id, fingerprints: self.segments.iter().map(|s| s.fingerprint).collect(), bytes: self.bytes })
    }

    pub(crate) fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.segments.iter().map(|s| s.fingerprint)
    }
}

/// Accumulates segments of one kind up to the target size.
pub(crate) struct Packer {
    kind: ContainerKind,
    target_size: u64,
    segments: Vec<OwnedSegment>,
    /// Stored bytes pending.
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

    /// The tag of the oldest pending segment.
    pub(crate) fn first_tag(&self) -> Option<u64> {
        self.first_tag
    }

    /// Adds a segment unless it is already pending. If adding it would pass
    /// the target size, first hands back what is pending as a full batch.
    ///
    /// A segment costs its bytes plus its table entry: counting the bytes
    /// alone made a 4 MiB container of 16-byte segments hold 262,144 of
    /// them (a 16.6 MiB file), and each of the containers in flight held
    /// that many per-segment records, set entries and index lookups at
    /// once (the 11M-segment job peaked at 936 MiB with four writers).
    pub(crate) fn add(&mut self, seg: OwnedSegment, tag: u64) -> Option<Batch> {
        if self.pending.contains(&seg.fingerprint) {
            return None;
        }
        // What the pending segments take in a container, with this one.
        let footprint = self.bytes + seg.bytes.len() as u64 + (self.segments.len() as u64 + 1) * ENTRY_LEN as u64;
        let full = if !self.segments.is_empty() && footprint > self.target_size { self.take() } else { None };
        self.bytes += seg.bytes.len() as u64;
        self.pending.insert(seg.fingerprint);
        self.first_tag.get_or_insert(tag);
        self.segments.push(seg);
        full
    }

    /// Whatever is pending, as a batch (nothing if empty).
    pub(crate) fn take(&mut self) -> Option<Batch> {
        if self.segments.is_empty() {
            return None;
        }
        let batch = Batch {
            kind: self.kind,
            segments: std::mem::take(&mut self.segments),
            bytes: self.bytes,
            first_tag: self.first_tag.take(),
        };
        self.pending.clear();
        self.bytes = 0;
        Some(batch)
    }
}
