//! Encrypted tiers: creating one, unlocking one at open (before any
//! container is read), and its key slots (list, add, remove).
//!
//! Where things are: the key slots live in the store beside the
//! containers (a directory tier's `keys` file, an object tier's `keys`
//! object), so a bucket alone recovers the tier; the local metadata keeps
//! a seal marker (the data key's check value). The marker is what makes a
//! tier encrypted: a tier with one refuses to open without a key, and key
//! slots that open another data key than the marker's are refused (a
//! `keys` object swapped for an attacker's would otherwise have new data
//! sealed under a key the attacker holds).

use std::path::Path;
use std::sync::Arc;

use rocksdb::DB;
use serde::{Deserialize, Serialize};

use super::{CF_META, IndexedTier, KEY_TIER, META_MAGIC, TierConfig, TierRecord, TierRecordV1, cf, synced};
use crate::error::{Error, Result, TierError};
use crate::format::durable::{self, decode_record, encode_record};
use crate::format::keyslots::{Credential, DataKey, KeySlot, KeySlots, keys_err};
use crate::format::layout::{TIER_DB, TIER_KEYS};
use crate::format::seal::Sealer;
use crate::tier::store::ContainerStore;

/// The seal marker's key in the `meta` column family.
pub(super) const KEY_SEALED: &[u8] = b"sealed";
const MARKER_VERSION: u16 = 1;

/// The seal marker as persisted, version 1.
#[derive(Serialize, Deserialize)]
pub(super) struct SealMarkerV1 {
    /// 1: XChaCha20-Poly1305, container format 3.
    cipher: u8,
    /// The data key's check value (as in the key slots).
    check: [u8; 32],
}

impl SealMarkerV1 {
    pub(super) fn of(slots: &KeySlots) -> Vec<u8> {
        encode_record(META_MAGIC, MARKER_VERSION, &SealMarkerV1 { cipher: 1, check: slots.check() })
    }
}

/// An open encrypted tier's data key, and the slot it was opened with.
pub(super) struct Unlocked {
    key: DataKey,
    slot: u32,
}

/// The tier's name in key messages: its directory, or its bucket.
fn location(dir: &Path, store: &dyn ContainerStore) -> String {
    if store.remote() { store.describe() } else { dir.display().to_string() }
}

/// Decodes key slots read from `store` and checks they are tier `tier`'s
/// (and, with a marker, that they hold the data key it names).
pub(super) fn read_slots(
    store: &dyn ContainerStore,
    location: &str,
    tier: [u8; 16],
    check: Option<[u8; 32]>,
) -> Result<KeySlots> {
    let bytes = store
        .key_slots()?
        .ok_or_else(|| keys_err(location, "missing from the store (the `keys` file or object): restore it from a copy".into()))?;
    let slots = KeySlots::decode(&bytes, &|| format!("key slots of {location}"))?;
    if slots.tier() != tier {
        return Err(keys_err(location, format!("they belong to tier {}", uuid::Uuid::from_bytes(slots.tier()))));
    }
    if check.is_some_and(|c| c != slots.check()) {
        return Err(keys_err(
            location,
            "they hold another data key than the one this tier was created with: the key slots were replaced".into(),
        ));
    }
    Ok(slots)
}

/// Unlocks the tier whose metadata `db` is open, before anything of its
/// store is read: gives `store` the tier's sealer and returns the key. A
/// tier without a seal marker is plain (and refuses a key); one with a
/// marker refuses to open without one.
pub(super) fn unlock(
    db: &DB,
    dir: &Path,
    store: &mut dyn ContainerStore,
    cred: Option<&Credential>,
) -> Result<Option<Arc<Unlocked>>> {
    let location = location(dir, store);
    let dbp = dir.join(TIER_DB);
    let marker = db.get_cf(cf(db, CF_META), KEY_SEALED).map_err(|e| Error::db(&dbp, e))?;
    let (marker, cred) = match (marker, cred) {
        (None, None) => return Ok(None),
        (None, Some(_)) => return Err(Error::Tier(TierError::NotEncrypted { location })),
        (Some(_), None) => return Err(Error::Tier(TierError::KeyRequired { location })),
        (Some(m), Some(c)) => (m, c),
    };
    let marker: SealMarkerV1 =
        decode_record(META_MAGIC, MARKER_VERSION, &marker, &|| format!("seal marker in {}", dbp.display()))?;
    if marker.cipher != 1 {
        return Err(keys_err(&location, format!("cipher {} is not one this build knows", marker.cipher)));
    }
    let record: TierRecord = IndexedTier::meta_record::<TierRecord, TierRecordV1>(db, dir, KEY_TIER, "tier record")?;
    let slots = read_slots(store, &location, record.id, Some(marker.check))?;
    let (key, slot) = slots.unlock(cred, &location)?;
    store.set_sealer(Arc::new(Sealer::new(&key, record.id)));
    Ok(Some(Arc::new(Unlocked { key, slot })))
}

impl IndexedTier {
    /// Creates a new, empty, encrypted tier in `dir` (as
    /// [`create`](Self::create)): a random data key seals every container
    /// (format 3: segments, fingerprints and kinds are ciphertext), and
    /// `cred` is its first key slot. Open it again with
    /// [`open_with_key`](Self::open_with_key).
    pub fn create_encrypted(dir: impl AsRef<Path>, config: TierConfig, cred: &Credential) -> Result<IndexedTier> {
        config.check()?;
        let dir = dir.as_ref();
        let record = TierRecord::new(*uuid::Uuid::new_v4().as_bytes(), config);
        let (slots, _key) = KeySlots::create(record.id, cred, "created with the tier")?;
        Self::create_meta(dir, &record, None, |db, tmp| {
            durable::write_durable(&tmp.join(TIER_KEYS), &slots.encode(), true)?;
            db.put_cf_opt(cf(db, CF_META), KEY_SEALED, SealMarkerV1::of(&slots), &synced())
                .map_err(|e| Error::db(tmp.join(TIER_DB), e))
        })?;
        Self::open_with_key(dir, cred)
    }

    /// Opens an encrypted tier for writing (as [`open`](Self::open)) with
    /// one of its credentials. A credential that opens no slot fails with
    /// [`TierError::WrongKey`] before any container is read; a plain tier
    /// refuses a key ([`TierError::NotEncrypted`]).
    pub fn open_with_key(dir: impl AsRef<Path>, cred: &Credential) -> Result<IndexedTier> {
        let dir = dir.as_ref();
        Self::open_writer(dir, Some(cred), |db| Self::dir_store(db, dir))
    }

    /// Opens an encrypted tier read-only (as
    /// [`open_read_only`](Self::open_read_only)) with one of its credentials.
    pub fn open_read_only_with_key(dir: impl AsRef<Path>, cred: &Credential) -> Result<IndexedTier> {
        let dir = dir.as_ref();
        Self::open_reader(dir, Some(cred), |db| Self::dir_store(db, dir))
    }

    /// Whether the tier is encrypted (its containers sealed).
    pub fn is_encrypted(&self) -> bool {
        self.crypt.is_some()
    }

    /// The slot this handle was opened with (`None`: a plain tier).
    pub fn key_slot_in_use(&self) -> Option<u32> {
        self.crypt.as_ref().map(|c| c.slot)
    }

    fn slots(&self) -> Result<(KeySlots, &Unlocked, String)> {
        let location = location(&self.dir, self.store.as_ref());
        let Some(crypt) = self.crypt.as_deref() else { return Err(Error::Tier(TierError::NotEncrypted { location })) };
        let check = crate::format::keyslots::key_check(&crypt.key, *self.id.as_bytes());
        let slots = read_slots(self.store.as_ref(), &location, *self.id.as_bytes(), Some(check))?;
        Ok((slots, crypt, location))
    }

    /// The tier's key slots (what each opens with, never a key).
    pub fn key_slots(&self) -> Result<Vec<KeySlot>> {
        Ok(self.slots()?.0.list())
    }

    /// Adds a key slot for `cred` (a new passphrase or key file) and
    /// returns its number; nothing else is rewritten. Needs a writable
    /// handle of an encrypted tier.
    pub fn add_key(&self, cred: &Credential, label: &str) -> Result<u32> {
        self.writable()?;
        let (mut slots, crypt, _) = self.slots()?;
        let n = slots.add(&crypt.key, cred, label)?;
        let r = self.store.put_key_slots(&slots.encode(), false);
        self.poison(r)?;
        Ok(n)
    }

    /// Removes key slot `number`. The last slot is refused (the data would
    /// be lost with it); the slot this handle was opened with may go (the
    /// handle keeps its key until closed).
    pub fn remove_key(&self, number: u32) -> Result<()> {
        self.writable()?;
        let (mut slots, _, location) = self.slots()?;
        slots.remove(number, &location)?;
        let r = self.store.put_key_slots(&slots.encode(), false);
        self.poison(r)
    }
}
