//! The object-storage tier: containers are write-once objects in an S3 or
//! Azure bucket; the index, namespace and counters live in a local RocksDB (the
//! tier's metadata directory), as in a backup appliance's cloud tier.
//!
//! Bucket layout under the tier's prefix (docs/FORMAT.md):
//! - `tier`: the tier record (identity and settings), written once;
//! - `containers/<hh>/<id:016x>.tsc`: sealed containers, byte for byte the
//!   local format, written create-only (`If-None-Match: *`); `hh` is a hash
//!   of the id that spreads sequential ids over 256 key prefixes;
//! - `namespace/<seq:016x>`: the namespace journal, one object per
//!   namespace commit, written before the commit is made locally.
//!
//! The containers rebuild the index and counters; the journal rebuilds the
//! namespace: [`IndexedTier::recover_object_tier`] needs nothing but the bucket.

use std::path::Path;

use rocksdb::{DB, WriteBatch};
use serde::{Deserialize, Serialize};

use super::keys::{KEY_SEALED, SealMarkerV1};
use super::{
    Alloc, CF_META, CF_NAMESPACE, IndexedTier, KEY_ALLOC, KEY_NS_SEQ, KEY_STORE, META_MAGIC, META_VERSION, TierRecord,
    TierRecordV1, cf, synced,
};
use crate::error::{Error, Result, TierError};
use crate::format::durable::{self, encode_record};
use crate::format::keyslots::{Credential, KeySlots};
use crate::format::magic;
use crate::tier::indexed::TierConfig;
use crate::tier::store::BucketStore;
use crate::tier::store::ContainerStore;
use crate::tier::store::bucket::{ObjectConfig, ObjectService, bucket_url};

/// Version 2 names the service (S3 or Azure); version 1, always S3, is
/// still read.
pub(crate) const STORE_VERSION: u16 = 2;

/// The store record kept in an object tier's local metadata: which bucket
/// and prefix it belongs to (version 1: an S3 bucket).
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct StoreRecordV1 {
    bucket: String,
    prefix: String,
}

/// The store record, version 2: the service too
/// ([`ObjectService::code`]).
#[derive(Serialize, Deserialize, PartialEq, Eq, Debug)]
struct StoreRecordV2 {
    service: u8,
    bucket: String,
    prefix: String,
}

impl StoreRecordV2 {
    fn of(object: &ObjectConfig) -> StoreRecordV2 {
        StoreRecordV2 { service: object.service.code(), bucket: object.bucket.clone(), prefix: object.prefix.clone() }
    }
}

impl From<StoreRecordV1> for StoreRecordV2 {
    fn from(v1: StoreRecordV1) -> StoreRecordV2 {
        StoreRecordV2 { service: ObjectService::S3.code(), bucket: v1.bucket, prefix: v1.prefix }
    }
}

/// What [`IndexedTier::recover_object_tier`] rebuilt.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RecoverReport {
    /// Containers read and indexed.
    pub containers: u64,
    /// Distinct segments indexed.
    pub segments: u64,
    /// Namespace journal entries replayed.
    pub journal_entries: u64,
    /// The checkpoint the namespace started from: the journal entry it
    /// includes (`None`: replayed from the first entry).
    pub checkpoint: Option<u64>,
    /// Files in the rebuilt namespace.
    pub files: u64,
    /// Containers that could not be read or failed their checks (each with
    /// the error); their segments are not indexed, and `verify` names the
    /// files that need them.
    pub unreadable: Vec<String>,
}

/// A tier whose containers are objects in an S3 bucket and whose index,
/// namespace and counters are in a local metadata directory: the same
/// [`IndexedTier`] (ingest, restore, verify, gc, info and remove work the
/// same), over the bucket instead of a directory of container files.
///
/// Durability: `write_container` returns after the container's create-only
/// PUT succeeded and its index entries are synced locally; a namespace
/// change is journaled to the bucket before it is committed locally. At
/// open, containers left by a crash (PUT done, never indexed) are adopted
/// (never deleted: the metadata may be older than the bucket) and
/// journaled namespace changes never committed locally are rolled forward.
/// A lost metadata directory is rebuilt from the bucket with
/// [`recover_object_tier`](Self::recover_object_tier).
///
/// The tier owns a tokio runtime and blocks on it: call it from ordinary
/// threads, never from inside an async runtime (such a call fails with
/// [`Error::InvalidConfig`] rather than panicking).
impl IndexedTier {
    /// Creates a new, empty tier in the bucket and its metadata in `meta`
    /// (which must not exist, or be an empty directory). The bucket's
    /// prefix must hold no tier.
    pub fn create_object_tier(meta: impl AsRef<Path>, object: &ObjectConfig, config: TierConfig) -> Result<IndexedTier> {
        Self::create_object(meta.as_ref(), object, config, None)
    }

    /// Creates a new, empty, encrypted object tier (as
    /// [`create_object_tier`](Self::create_object_tier) and
    /// [`create_encrypted`](Self::create_encrypted)): containers, journal
    /// entries and checkpoints in the bucket are sealed, and the key slots
    /// are the object `keys` beside them, so the bucket and a credential
    /// alone recover the tier.
    pub fn create_object_tier_encrypted(
        meta: impl AsRef<Path>,
        object: &ObjectConfig,
        config: TierConfig,
        cred: &Credential,
    ) -> Result<IndexedTier> {
        Self::create_object(meta.as_ref(), object, config, Some(cred))
    }

    fn create_object(meta: &Path, object: &ObjectConfig, config: TierConfig, cred: Option<&Credential>) -> Result<IndexedTier> {
        config.check()?;
        if IndexedTier::exists(meta) || std::fs::read_dir(meta).is_ok_and(|mut d| d.next().is_some()) {
            return Err(Error::Tier(TierError::NotATier {
                path: meta.to_path_buf(),
                reason: "not empty: the metadata directory of a new tier must be".into(),
            }));
        }
        let store = BucketStore::connect(object)?;
        let record = TierRecord::new(*uuid::Uuid::new_v4().as_bytes(), config);
        // The bucket first: a crash before the local metadata exists
        // leaves a tier record alone, which `create` (or `recover`)
        // completes when it is called again.
        let bytes = encode_record(META_MAGIC, META_VERSION, &record);
        let record = match store.put_tier_record(bytes.clone()) {
            Ok(()) => record,
            Err(Error::Tier(TierError::Object { status: Some(412), .. })) => {
                // A tier record and nothing else: a creation that stopped
                // (a crash or kill) between the bucket and the local
                // metadata. Finishing it is what `recover` would do; the
                // bug "a job killed while creating its object target could
                // never be run again" needed it. Anything more in the
                // bucket is a tier in use, never adopted by `create`.
                if !store.list()?.is_empty() || !store.journal_seqs()?.is_empty() {
                    return Err(Error::Tier(TierError::ForeignBucket {
                        location: object.url(),
                        reason: "already holds a tier: open it with its metadata directory, or rebuild that with recover".into(),
                    }));
                }
                let existing = tier_record(&store)?;
                log::warn!(
                    "{}: finishing the creation of tier {} (its record is in the bucket, it holds nothing yet)",
                    object.url(),
                    uuid::Uuid::from_bytes(existing.id)
                );
                existing
            }
            Err(e) => return Err(e),
        };
        let marker = match cred {
            Some(cred) => Some(bucket_key_slots(&store, &record, cred)?),
            None if store.key_slots()?.is_some() => {
                return Err(Error::Tier(TierError::KeyRequired { location: object.url() }));
            }
            None => None,
        };
        IndexedTier::create_meta(meta, &record, Some(store_record(object)), |db, tmp| match &marker {
            Some(m) => db
                .put_cf_opt(cf(db, CF_META), KEY_SEALED, m, &synced())
                .map_err(|e| Error::db(tmp.join(crate::format::layout::TIER_DB), e)),
            None => Ok(()),
        })?;
        match cred {
            Some(c) => Self::open_object_tier_with_key(meta, object, c),
            None => Self::open_object_tier(meta, object),
        }
    }

    /// Opens the tier whose metadata is in `meta` and containers in the
    /// bucket, recovering from a crash. The bucket must hold this tier:
    /// another tier's bucket is refused with [`TierError::ForeignBucket`].
    pub fn open_object_tier(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<IndexedTier> {
        let meta = meta.as_ref();
        IndexedTier::open_writer(meta, None, |db| Self::store_for(db, meta, object))
    }

    /// Opens an encrypted object tier for writing with one of its
    /// credentials (see [`open_with_key`](Self::open_with_key)).
    pub fn open_object_tier_with_key(meta: impl AsRef<Path>, object: &ObjectConfig, cred: &Credential) -> Result<IndexedTier> {
        let meta = meta.as_ref();
        IndexedTier::open_writer(meta, Some(cred), |db| Self::store_for(db, meta, object))
    }

    /// Opens an encrypted object tier read-only with one of its credentials.
    pub fn open_object_tier_read_only_with_key(
        meta: impl AsRef<Path>,
        object: &ObjectConfig,
        cred: &Credential,
    ) -> Result<IndexedTier> {
        let meta = meta.as_ref();
        IndexedTier::open_reader(meta, Some(cred), |db| Self::store_for(db, meta, object))
    }

    /// Opens the object tier for reading only (see
    /// [`IndexedTier::open_read_only`]).
    pub fn open_object_tier_read_only(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<IndexedTier> {
        let meta = meta.as_ref();
        IndexedTier::open_reader(meta, None, |db| Self::store_for(db, meta, object))
    }

    /// Rebuilds a lost metadata directory from the bucket alone: the tier
    /// record, the index and counters from every container's table (a
    /// fingerprint listed by several containers is indexed in the first,
    /// as ingest and copy index it), and the namespace from its journal.
    /// `meta` must not exist, or be empty; it is built in a sibling temp
    /// directory and renamed into place, so a crash leaves nothing half
    /// recovered. Then opens the tier.
    pub fn recover_object_tier(meta: impl AsRef<Path>, object: &ObjectConfig) -> Result<(IndexedTier, RecoverReport)> {
        Self::recover_object(meta.as_ref(), object, None)
    }

    /// Rebuilds a lost metadata directory of an encrypted object tier from
    /// the bucket and one of its credentials (see
    /// [`recover_object_tier`](Self::recover_object_tier)).
    pub fn recover_object_tier_with_key(
        meta: impl AsRef<Path>,
        object: &ObjectConfig,
        cred: &Credential,
    ) -> Result<(IndexedTier, RecoverReport)> {
        Self::recover_object(meta.as_ref(), object, Some(cred))
    }

    fn recover_object(meta: &Path, object: &ObjectConfig, cred: Option<&Credential>) -> Result<(IndexedTier, RecoverReport)> {
        let mut store = BucketStore::connect(object)?;
        let record = tier_record(&store)?;
        // The bucket is all there is: its key slots are trusted as found
        // (the credential must open them) and become the local marker.
        let marker = match (store.key_slots()?, cred) {
            (None, None) => None,
            (None, Some(_)) => return Err(Error::Tier(TierError::NotEncrypted { location: object.url() })),
            (Some(_), None) => return Err(Error::Tier(TierError::KeyRequired { location: object.url() })),
            (Some(_), Some(cred)) => {
                let slots = super::keys::read_slots(&store, &object.url(), record.id, None)?;
                let (key, _) = slots.unlock(cred, &object.url())?;
                store.set_sealer(std::sync::Arc::new(crate::format::seal::Sealer::new(&key, record.id)));
                Some(SealMarkerV1::of(&slots))
            }
        };
        let mut report = RecoverReport::default();
        IndexedTier::create_meta(meta, &record, Some(store_record(object)), |db, tmp| {
            if let Some(m) = &marker {
                db.put_cf_opt(cf(db, CF_META), KEY_SEALED, m, &synced())
                    .map_err(|e| Error::db(tmp.join(crate::format::layout::TIER_DB), e))?;
            }
            rebuild(&store, db, tmp, &mut report)
        })?;
        let t = match cred {
            Some(c) => Self::open_object_tier_with_key(meta, object, c)?,
            None => Self::open_object_tier(meta, object)?,
        };
        Ok((t, report))
    }

    fn store_for(db: &DB, meta: &Path, object: &ObjectConfig) -> Result<Box<dyn ContainerStore>> {
        let dbp = meta.join(crate::format::layout::TIER_DB);
        let bytes = db.get_cf(cf(db, CF_META), KEY_STORE).map_err(|e| Error::db(&dbp, e))?.ok_or_else(|| {
            Error::Tier(TierError::NotATier {
                path: meta.to_path_buf(),
                reason: "it holds a directory tier, not an object tier's metadata: name the directory itself as the tier".into(),
            })
        })?;
        let have = decode_store_record(&bytes, &|| format!("store record in {}", dbp.display()))?;
        if have != StoreRecordV2::of(object) {
            let service = ObjectService::from_code(have.service).ok_or_else(|| {
                Error::corrupt_record(format!("store record in {}", dbp.display()), format!("unknown service {}", have.service))
            })?;
            return Err(Error::Tier(TierError::ForeignBucket {
                location: object.url(),
                reason: format!(
                    "the metadata in {} belongs to the tier in {}",
                    meta.display(),
                    bucket_url(service, &have.bucket, &have.prefix)
                ),
            }));
        }
        let store = BucketStore::connect(object)?;
        let local: TierRecord = IndexedTier::meta_record::<TierRecord, TierRecordV1>(db, meta, super::KEY_TIER, "tier record")?;
        let remote = tier_record(&store)?;
        if remote.id != local.id {
            return Err(Error::Tier(TierError::ForeignBucket {
                location: object.url(),
                reason: format!(
                    "holds tier {}, but the metadata in {} is tier {}",
                    uuid::Uuid::from_bytes(remote.id),
                    meta.display(),
                    uuid::Uuid::from_bytes(local.id)
                ),
            }));
        }
        Ok(Box::new(store))
    }
}

/// The key slots of a new encrypted object tier: written create-only, or,
/// when another creator's are already there (two processes creating one
/// tier), theirs, which `cred` must open. Returns the seal marker.
fn bucket_key_slots(store: &BucketStore, record: &TierRecord, cred: &Credential) -> Result<Vec<u8>> {
    let location = store.describe();
    let (slots, _key) = KeySlots::create(record.id, cred, "created with the tier")?;
    match store.put_key_slots(&slots.encode(), true) {
        Ok(()) => Ok(SealMarkerV1::of(&slots)),
        Err(Error::Tier(TierError::Object { status: Some(412), .. })) => {
            let theirs = super::keys::read_slots(store, &location, record.id, None)?;
            theirs.unlock(cred, &location)?;
            Ok(SealMarkerV1::of(&theirs))
        }
        Err(e) => Err(e),
    }
}

/// The store record in `bytes`, at either version (v1 is an S3 bucket's).
fn decode_store_record(bytes: &[u8], what: &dyn Fn() -> String) -> Result<StoreRecordV2> {
    Ok(match durable::decode_versioned::<StoreRecordV2, StoreRecordV1>(magic::STORE, STORE_VERSION, bytes, what)? {
        durable::Versioned::Current(r) => r,
        durable::Versioned::V1(r) => r.into(),
    })
}

fn store_record(object: &ObjectConfig) -> Vec<u8> {
    encode_record(magic::STORE, STORE_VERSION, &StoreRecordV2::of(object))
}

/// The tier record in the bucket.
fn tier_record(store: &BucketStore) -> Result<TierRecord> {
    let (bytes, what) = store.tier_record_bytes()?;
    Ok(match durable::decode_versioned::<TierRecord, TierRecordV1>(META_MAGIC, META_VERSION, &bytes, &|| what.clone())? {
        durable::Versioned::Current(r) => r,
        durable::Versioned::V1(r) => r.into(),
    })
}

/// Fills a fresh metadata database from the bucket (recovery).
fn rebuild(store: &BucketStore, db: &DB, tmp: &Path, report: &mut RecoverReport) -> Result<()> {
    let dbp = tmp.join(crate::format::layout::TIER_DB);
    let dberr = |e: rocksdb::Error| Error::db(&dbp, e);
    let ids = store.list()?;
    let mut alloc = Alloc::default();
    // Tables are read in parallel, indexed in id order: the first
    // container listing a fingerprint is its home.
    for chunk in ids.chunks(256) {
        let metas = store.read_metas(chunk);
        for (id, meta) in chunk.iter().zip(metas) {
            alloc.next_container = alloc.next_container.max(id.0 + 1);
            let meta = match meta {
                Ok(m) => m,
                Err(e) => {
                    log::warn!("recovery: container {id} unreadable, not indexed: {e}");
                    report.unreadable.push(e.to_string());
                    continue;
                }
            };
            report.containers += 1;
            let batch = super::index_table(db, &dbp, &meta, &mut alloc)?;
            db.write(batch).map_err(dberr)?;
        }
    }
    report.segments = alloc.segments;
    // The namespace: the latest complete checkpoint, then the journal
    // entries after it, in order.
    let (seqs, checkpoints, _) = store.namespace_objects()?;
    let ns = cf(db, CF_NAMESPACE);
    let mut next_seq = 0;
    if let Some(&c) = checkpoints.last() {
        for chunk in store.read_checkpoint(c)?.chunks(4096) {
            let mut batch = WriteBatch::default();
            for e in chunk {
                batch.put_cf(ns, e.path.as_bytes(), IndexedTier::namespace_value(e));
            }
            db.write(batch).map_err(dberr)?;
        }
        report.checkpoint = Some(c);
        next_seq = c + 1;
    }
    let seqs: Vec<u64> = seqs.into_iter().filter(|s| *s >= next_seq).collect();
    for chunk in seqs.chunks(256) {
        for (s, ops) in chunk.iter().zip(store.read_journals(chunk)) {
            if *s != next_seq {
                return Err(Error::corrupt_record(
                    format!("namespace journal of {}", store.describe()),
                    format!("entry {s:016x} follows {next_seq:016x}: an entry is missing"),
                ));
            }
            db.write(super::namespace_batch(db, &ops?)).map_err(dberr)?;
            next_seq = s + 1;
            report.journal_entries += 1;
        }
    }
    report.files = db.iterator_cf(ns, rocksdb::IteratorMode::Start).count() as u64;
    let mut batch = WriteBatch::default();
    batch.put_cf(cf(db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &alloc));
    batch.put_cf(cf(db, CF_META), KEY_NS_SEQ, next_seq.to_le_bytes());
    db.write_opt(batch, &synced()).map_err(dberr)?;
    db.flush().map_err(dberr)
}

/// Decodes `bytes` as the store record an object tier keeps in its
/// metadata directory, and as each record its bucket holds; for the
/// fuzzers. Returns how many decoded.
#[cfg(feature = "test-util")]
pub(crate) fn fuzz_decode(bytes: &[u8]) -> usize {
    use crate::format::durable::decode_record;
    let what = || "fuzz input".to_string();
    usize::from(decode_record::<StoreRecordV1>(magic::STORE, 1, bytes, &what).is_ok())
        + usize::from(decode_record::<StoreRecordV2>(magic::STORE, STORE_VERSION, bytes, &what).is_ok())
        + crate::tier::store::bucket::records::fuzz_decode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Metadata written before Azure existed (store record v1) opens as an
    /// S3 bucket's; a v2 record reads back as written; an unknown service
    /// code is not taken for either.
    #[test]
    fn a_v1_store_record_reads_as_an_s3_bucket() {
        let what = || "test".to_string();
        let v1 = encode_record(magic::STORE, 1, &StoreRecordV1 { bucket: "b-one".into(), prefix: "p".into() });
        let r = decode_store_record(&v1, &what).expect("v1 decodes");
        assert_eq!(r, StoreRecordV2::of(&ObjectConfig::new("b-one", "p")));
        let az = ObjectConfig::for_service(ObjectService::Azure, "c-two", "q");
        let v2 = store_record(&az);
        assert_eq!(decode_store_record(&v2, &what).expect("v2 decodes"), StoreRecordV2::of(&az));
        assert_ne!(decode_store_record(&v2, &what).expect("v2 decodes"), StoreRecordV2::of(&ObjectConfig::new("c-two", "q")));
        assert_eq!(ObjectService::from_code(9), None);
    }
}
