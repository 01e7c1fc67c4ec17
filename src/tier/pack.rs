//! Packing segments into containers of a target size.
//!
//! Shared by ingest and by the seeding engine's Copy phase, so that both
//! pack and deduplicate within the batch the same way. A packer only
//! gathers: it hands back full [`Batch`]es, which the caller writes, at
//! once (ingest) or on a writer thread while the next batch fills (Copy).

use std::collections::HashSet;

use crate::error::Result;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::{Codec, ContainerKind, StoredSegment, TargetTier};

/// A segment as stored, owned: what a packer holds until it seals.
pub(crate) struct OwnedSegment {
    pub(crate) fingerprint: Fingerprint,
    pub(crate) bytes: Vec<u8>,
    pub(crate) raw_len: u32,
    pub(crate) codec: Codec,
}

/// What a sealed container held, reported to the caller.
pub(crate) struct Sealed {
    pub(crate) id: ContainerId,
    pub(crate) fingerprints: Vec<Fingerprint>,
    pub(crate) bytes: u64,
}

/// One segment's place in a batch's buffer.
struct Packed {
    fingerprint: Fingerprint,
    start: usize,
    len: usize,
    raw_len: u32,
    codec: Codec,
}

/// One container's worth of segments of one kind, ready to be written:
/// their stored bytes back to back in one buffer (one allocation per
/// container, not one per segment: at 16-byte segments a `Vec` each cost
/// three times the bytes it held).
pub(crate) struct Batch {
    pub(crate) kind: ContainerKind,
    data: Vec<u8>,
    entries: Vec<Packed>,
    /// Stored bytes.
    pub(crate) bytes: u64,
    /// The smallest tag of its segments (the engine tags segments with
    /// their source container's snapshot index, so this bounds the cursor).
    pub(crate) first_tag: Option<u64>,
}

impl Batch {
    /// Writes the batch as one container; durable and indexed on return.
    pub(crate) fn write(self, target: &dyn TargetTier) -> Result<Sealed> {
        let refs: Vec<StoredSegment<'_>> = self
            .entries
            .iter()
            .map(|e| StoredSegment {
                fingerprint: e.fingerprint,
                bytes: &self.data[e.start..e.start + e.len],
                raw_len: e.raw_len,
                codec: e.codec,
            })
            .collect();
        let id = target.write_container(self.kind, &refs)?;
        Ok(Sealed { id, fingerprints: self.fingerprints().collect(), bytes: self.bytes })
    }

    pub(crate) fn fingerprints(&self) -> impl Iterator<Item = Fingerprint> + '_ {
        self.entries.iter().map(|e| e.fingerprint)
    }
}

/// Gathers segments of one kind until adding the next would pass the
/// target size.
pub(crate) struct Packer {
    kind: ContainerKind,
    target_size: u64,
    data: Vec<u8>,
    entries: Vec<Packed>,
    pending: HashSet<Fingerprint>,
    first_tag: Option<u64>,
}

impl Packer {
    pub(crate) fn new(kind: ContainerKind, target_size: u64) -> Self {
        Packer {
            kind,
            target_size: target_size.max(1),
            data: Vec::new(),
            entries: Vec::new(),
            pending: HashSet::new(),
            first_tag: None,
        }
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
    pub(crate) fn add(&mut self, seg: OwnedSegment, tag: u64) -> Option<Batch> {
        if self.pending.contains(&seg.fingerprint) {
            return None;
        }
        let full = if !self.entries.is_empty() && (self.data.len() + seg.bytes.len()) as u64 > self.target_size {
            self.take()
        } else {
            None
        };
        if self.data.capacity() == 0 {
            // The whole container's buffer at once (bounded: a container
            // never exceeds its target size but by its last segment).
            self.data.reserve(self.target_size.min(64 << 20) as usize);
        }
        self.entries.push(Packed {
            fingerprint: seg.fingerprint,
            start: self.data.len(),
            len: seg.bytes.len(),
            raw_len: seg.raw_len,
            codec: seg.codec,
        });
        self.data.extend_from_slice(&seg.bytes);
        self.pending.insert(seg.fingerprint);
        self.first_tag.get_or_insert(tag);
        full
    }

    /// Whatever is pending, as a batch (nothing if empty).
    pub(crate) fn take(&mut self) -> Option<Batch> {
        if self.entries.is_empty() {
            return None;
        }
        let bytes = self.data.len() as u64;
        let batch = Batch {
            kind: self.kind,
            data: std::mem::take(&mut self.data),
            entries: std::mem::take(&mut self.entries),
            bytes,
            first_tag: self.first_tag.take(),
        };
        self.pending.clear();
        Some(batch)
    }
}
