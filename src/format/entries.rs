//! The values every layer passes about: a container's table entries and
//! metadata, a segment to write, a namespace entry. They are defined here,
//! at the bottom, because the container codec encodes them; the tier layer
//! re-exports them with its traits.

use serde::{Deserialize, Serialize};

use crate::format::fingerprint::{ContainerId, Fingerprint};

/// Whether a container holds file data (L0 segments) or recipes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ContainerKind {
    /// L0 segments: file bytes.
    Data,
    /// Recipe segments (L1 and up), kept apart so that walking trees never
    /// reads bulk data.
    Meta,
}

/// How a segment's bytes are stored. Its fingerprint is always BLAKE3 of
/// the raw (uncompressed) bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// The raw bytes.
    Raw,
    /// One zstd frame of the raw bytes.
    Zstd,
}

/// One segment's entry in a container's table.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmentEntry {
    /// The segment's fingerprint (BLAKE3 of its raw bytes).
    pub fingerprint: Fingerprint,
    /// Offset of its stored bytes from the start of the container's data region.
    pub offset: u32,
    /// Its stored length in bytes (what [`Tier::read_segments`](crate::Tier::read_segments) returns).
    pub len: u32,
    /// Its raw length, once decoded.
    pub raw_len: u32,
    /// How it is stored.
    pub codec: Codec,
}

/// A segment to write, as stored: raw, or already compressed (Copy moves a
/// source's stored bytes without recompressing them).
#[derive(Clone, Copy, Debug)]
pub struct StoredSegment<'a> {
    /// BLAKE3 of the raw bytes, verified by the caller.
    pub fingerprint: Fingerprint,
    /// The bytes as stored.
    pub bytes: &'a [u8],
    /// The raw length.
    pub raw_len: u32,
    /// How `bytes` encode the raw bytes.
    pub codec: Codec,
}

impl<'a> StoredSegment<'a> {
    /// A segment stored raw.
    pub fn raw(fingerprint: Fingerprint, bytes: &'a [u8]) -> Self {
        StoredSegment { fingerprint, bytes, raw_len: bytes.len() as u32, codec: Codec::Raw }
    }
}

/// A container's metadata: everything but the segment bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContainerMeta {
    /// The container's id.
    pub id: ContainerId,
    /// Data or meta.
    pub kind: ContainerKind,
    /// The segments in storage order.
    pub segments: Vec<SegmentEntry>,
    /// Total length of the data region.
    pub data_len: u64,
}

/// What a namespace entry restores as.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[non_exhaustive]
pub enum FileKind {
    /// A regular file: its tree holds the file's bytes.
    #[default]
    File,
    /// A symbolic link: its tree holds the link's target, byte for byte
    /// (so the target is deduplicated, copied and verified like any file's
    /// bytes), and a restore creates the link without ever following it.
    Symlink,
}

/// What a backup keeps of a file besides its bytes and its whole seconds
/// of mtime. Entries written before namespace version 2 have the default:
/// a regular file, no mode, no owner, whole seconds.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileAttrs {
    /// File or symlink.
    pub kind: FileKind,
    /// Permission bits (`st_mode & 0o7777`: rwx for owner, group and
    /// others, setuid, setgid, sticky), or `None` when the source did not
    /// say (a reader, an old entry): a restore then leaves the new file's
    /// mode to the umask.
    pub mode: Option<u32>,
    /// Owner and group ids, or `None` when unknown. A restore sets them
    /// where it may (as root); where it may not, it clears the setuid and
    /// setgid bits rather than hand them to a different owner (as `cp -p`
    /// and GNU tar do).
    pub owner: Option<(u32, u32)>,
    /// The sub-second part of the mtime, in nanoseconds (< 10^9).
    pub mtime_nanos: u32,
}

/// One file in a tier's namespace.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative, `/`-separated, UTF-8 path.
    pub path: String,
    /// Logical size in bytes (for a symlink, its target's length).
    pub size: u64,
    /// Modification time, whole seconds since the Unix epoch; negative
    /// before 1970 ([`FileAttrs::mtime_nanos`] adds the fraction, always
    /// forward in time, as `struct timespec` does).
    pub mtime: i64,
    /// Fingerprint of the root recipe segment.
    pub root: Fingerprint,
    /// Level of the root recipe (1 for files of up to one recipe's fanout
    /// of chunks).
    pub height: u8,
    /// Kind, mode, owner, mtime's nanoseconds.
    pub attrs: FileAttrs,
}
