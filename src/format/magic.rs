//! Every magic number tierseed writes, in one table: the first bytes of
//! each persisted record's envelope (or of a container file, or of a
//! recipe), so a record read as the wrong kind fails its first check, and
//! a reader of the format finds them all here (docs/FORMAT.md has the
//! layouts they open).

/// A container file or object (`containers/<id>.tsc`).
pub(crate) const CONTAINER: &[u8; 4] = b"TSCN";
/// A recipe (a tree node's stored bytes): three bytes, then the level.
pub(crate) const RECIPE: &[u8; 3] = b"TSR";
/// A tier's records in its RocksDB `meta` column family: the tier record,
/// the allocation record, gc and pin records.
pub(crate) const TIER_META: &[u8; 4] = b"TSMT";
/// A namespace entry (the tier's `ns` column family).
pub(crate) const NAMESPACE: &[u8; 4] = b"TSNS";
/// An object tier's store record, tying its metadata to a bucket.
// Used by the object tier (feature `s3`) and the fuzzers.
#[cfg_attr(not(any(feature = "s3", test, feature = "test-util")), allow(dead_code))]
pub(crate) const STORE: &[u8; 4] = b"TSST";
/// One namespace journal object in a bucket.
// Used by the object tier (feature `s3`) and the fuzzers.
#[cfg_attr(not(any(feature = "s3", test, feature = "test-util")), allow(dead_code))]
pub(crate) const JOURNAL: &[u8; 4] = b"TSNJ";
/// A namespace checkpoint's part or manifest in a bucket.
// Used by the object tier (feature `s3`) and the fuzzers.
#[cfg_attr(not(any(feature = "s3", test, feature = "test-util")), allow(dead_code))]
pub(crate) const CHECKPOINT: &[u8; 4] = b"TSNC";
/// A job context's records (progress, report, selection, file chunks).
pub(crate) const CONTEXT: &[u8; 4] = b"TSCX";
/// A persisted PHF.
pub(crate) const PHF: &[u8; 4] = b"TSPH";
/// A persisted PHV.
pub(crate) const PHV: &[u8; 4] = b"TSPV";
/// A job's snapshot key file (the source's PHF keys, read by every PHF
/// level and by Mark's merge).
pub(crate) const KEYS: &[u8; 4] = b"TSKY";
/// An encrypted tier's key slots (the data key, wrapped once per
/// passphrase or key file), in the store beside the containers.
pub(crate) const KEY_SLOTS: &[u8; 4] = b"TSKS";
/// A whole object sealed under the tier's key (an encrypted bucket's
/// journal entries and checkpoint parts).
// Used by the object tier (feature `s3`) and the seal's own tests.
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
pub(crate) const SEALED_OBJECT: &[u8; 4] = b"TSSO";

#[cfg(test)]
mod tests {
    /// No two records share a magic, and the recipe's three bytes open no
    /// four-byte magic: a record read as the wrong kind fails at once.
    #[test]
    fn every_magic_is_distinct() {
        let four = [
            super::CONTAINER,
            super::TIER_META,
            super::NAMESPACE,
            super::STORE,
            super::JOURNAL,
            super::CHECKPOINT,
            super::CONTEXT,
            super::PHF,
            super::PHV,
            super::KEYS,
            super::KEY_SLOTS,
            super::SEALED_OBJECT,
        ];
        for (i, a) in four.iter().enumerate() {
            assert!(!a.starts_with(super::RECIPE), "{a:?} starts like a recipe");
            for b in &four[i + 1..] {
                assert_ne!(a, b);
            }
        }
    }
}
