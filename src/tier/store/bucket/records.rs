//! The records a bucket holds besides containers: the namespace journal
//! (one object per namespace commit) and its checkpoints (parts, then a
//! manifest). Private, versioned counterparts of `FileEntry` changes.

use serde::{Deserialize, Serialize};

use crate::format::magic;
use crate::format::records::{FileEntryV1, FileEntryV2};

pub(crate) const JOURNAL_MAGIC: &[u8; 4] = magic::JOURNAL;
/// Version 2 journals entries at namespace version 2; version 1 is still read.
pub(crate) const JOURNAL_VERSION: u16 = 2;
pub(crate) const CHECKPOINT_MAGIC: &[u8; 4] = magic::CHECKPOINT;
/// Version 2 parts hold entries at namespace version 2 (the manifest is
/// unchanged); version 1 checkpoints are still read.
pub(crate) const CHECKPOINT_VERSION: u16 = 2;

/// A checkpoint's manifest (version 1), written after all its parts: a
/// checkpoint without one is incomplete and ignored.
#[derive(Serialize, Deserialize)]
pub(crate) struct CheckpointV1 {
    /// The journal entry the checkpoint includes, and every one before it.
    pub(crate) seq: u64,
    pub(crate) parts: u64,
    pub(crate) files: u64,
}

/// One namespace journal object (version 1, still read).
#[derive(Serialize, Deserialize)]
pub(crate) enum JournalOpV1 {
    Put(FileEntryV1),
    Delete(String),
}

/// One namespace journal object (version 2: entries at namespace version 2).
#[derive(Serialize, Deserialize)]
pub(crate) enum JournalOpV2 {
    Put(FileEntryV2),
    Delete(String),
}

/// Decodes `bytes` as each record a bucket keeps besides containers (a
/// journal object at both versions, a checkpoint's manifest and part); for
/// the fuzzers. Returns how many decoded.
#[cfg(feature = "test-util")]
pub(crate) fn fuzz_decode(bytes: &[u8]) -> usize {
    use crate::format::durable::decode_record;
    let what = || "fuzz input".to_string();
    [
        decode_record::<Vec<JournalOpV1>>(JOURNAL_MAGIC, 1, bytes, &what).is_ok(),
        decode_record::<Vec<JournalOpV2>>(JOURNAL_MAGIC, JOURNAL_VERSION, bytes, &what).is_ok(),
        decode_record::<CheckpointV1>(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<FileEntryV1>>(CHECKPOINT_MAGIC, 1, bytes, &what).is_ok(),
        decode_record::<Vec<FileEntryV2>>(CHECKPOINT_MAGIC, CHECKPOINT_VERSION, bytes, &what).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}
