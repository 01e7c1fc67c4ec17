//! An encrypted tier's key slots: its random 256-bit data key, wrapped
//! once per way in (a passphrase through argon2id, or a key file), so a
//! passphrase can be added, changed or removed without rewriting data.
//! docs/FORMAT.md has the record.
//!
//! [`Credential`] is what a caller unlocks with; [`KeySlot`] is what
//! `list` shows of a slot (never the wrapped key).

use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::error::{Error, Result, TierError};
use crate::format::durable::{decode_record, encode_record};
use crate::format::magic;
use crate::format::seal::random;

/// A tier's data key, wiped from memory when dropped.
pub(crate) type DataKey = Zeroizing<[u8; 32]>;

pub(crate) const VERSION: u16 = 1;
/// argon2id's cost for a new passphrase slot: 64 MiB, 3 passes, 1 lane
/// (RFC 9106's second recommended setting, with one lane for a 2-core
/// appliance); recorded in the slot, so a later build may raise it.
const MEMORY_KIB: u32 = 64 * 1024;
const ITERATIONS: u32 = 3;
const LANES: u32 = 1;
/// A key file holds at least this many bytes (a generated one: 64 hex
/// digits) and at most 4 KiB.
const KEY_FILE_MIN: usize = 32;
const KEY_FILE_MAX: u64 = 4096;

const HEX: &[u8; 16] = b"0123456789abcdef";

const KIND_PASSPHRASE: u8 = 1;
const KIND_KEY_FILE: u8 = 2;

/// A way into an encrypted tier: a passphrase or a key file. Its Debug
/// never shows a passphrase.
#[derive(Clone)]
pub struct Credential {
    inner: Inner,
}

#[derive(Clone)]
enum Inner {
    Passphrase(Zeroizing<String>),
    KeyFile(PathBuf),
}

impl std::fmt::Debug for Credential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Credential({})", self.describe())
    }
}

impl Credential {
    /// A passphrase (read it from a file, a descriptor or the environment;
    /// never from a command line, where other users can see it).
    pub fn passphrase(passphrase: impl Into<String>) -> Credential {
        Credential { inner: Inner::Passphrase(Zeroizing::new(passphrase.into())) }
    }

    /// A key file: at least 32 bytes (trailing whitespace ignored), read
    /// when the key is used. [`Credential::generate_key_file`] makes one.
    pub fn key_file(path: impl Into<PathBuf>) -> Credential {
        Credential { inner: Inner::KeyFile(path.into()) }
    }

    /// Writes a new key file at `path` (which must not exist): 32 random
    /// bytes as 64 hex digits, readable by its owner only.
    pub fn generate_key_file(path: impl AsRef<Path>) -> Result<Credential> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let path = path.as_ref();
        let bytes: [u8; 32] = random()?;
        let mut text = Zeroizing::new(String::with_capacity(65));
        for b in bytes {
            text.push(char::from(HEX[usize::from(b >> 4)]));
            text.push(char::from(HEX[usize::from(b & 15)]));
        }
        text.push('\n');
        let mut f =
            std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| Error::io(path, e))?;
        f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| Error::io(path, e))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            crate::format::durable::sync_dir(dir)?;
        }
        Ok(Credential::key_file(path))
    }

    /// `passphrase` or `key file PATH`, for messages.
    pub fn describe(&self) -> String {
        match &self.inner {
            Inner::Passphrase(_) => "passphrase".into(),
            Inner::KeyFile(p) => format!("key file {}", p.display()),
        }
    }

    fn kind(&self) -> u8 {
        match self.inner {
            Inner::Passphrase(_) => KIND_PASSPHRASE,
            Inner::KeyFile(_) => KIND_KEY_FILE,
        }
    }

    /// The key that wraps the data key in `slot`.
    fn wrapping_key(&self, slot: &SlotV1) -> Result<Zeroizing<[u8; 32]>> {
        let mut out = Zeroizing::new([0u8; 32]);
        match &self.inner {
            Inner::Passphrase(p) => {
                if p.is_empty() {
                    return Err(Error::InvalidConfig("an empty passphrase is refused".into()));
                }
                let params = argon2::Params::new(slot.memory_kib, slot.iterations, slot.lanes, Some(32))
                    .map_err(|e| Error::InvalidConfig(format!("key slot {}: argon2 parameters: {e}", slot.number)))?;
                argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params)
                    .hash_password_into(p.as_bytes(), &slot.salt, &mut out[..])
                    .map_err(|e| Error::InvalidConfig(format!("key slot {}: argon2: {e}", slot.number)))?;
            }
            Inner::KeyFile(path) => {
                // At most one byte past the cap is read, so a device or a
                // pipe named as a key file (/dev/zero) is refused, not read
                // forever.
                use std::io::Read;
                let f = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
                let mut bytes = Zeroizing::new(Vec::with_capacity(KEY_FILE_MAX as usize + 1));
                f.take(KEY_FILE_MAX + 1).read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
                if bytes.len() as u64 > KEY_FILE_MAX {
                    return Err(Error::InvalidConfig(format!(
                        "key file {}: more than the {KEY_FILE_MAX} bytes a key file holds",
                        path.display()
                    )));
                }
                let key = bytes.trim_ascii_end();
                if key.len() < KEY_FILE_MIN {
                    return Err(Error::InvalidConfig(format!(
                        "key file {}: {} bytes, fewer than the {KEY_FILE_MIN} a key file needs",
                        path.display(),
                        key.len()
                    )));
                }
                let mut h = blake3::Hasher::new_derive_key("tierseed 2026-12 key file wrapping key v1");
                h.update(&slot.salt);
                h.update(key);
                out.copy_from_slice(h.finalize().as_bytes());
            }
        }
        Ok(out)
    }
}

/// What a slot opens with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyKind {
    /// A passphrase, through argon2id.
    Passphrase,
    /// A key file.
    KeyFile,
}

/// One key slot as [`IndexedTier::key_slots`](crate::IndexedTier::key_slots)
/// lists it: never the wrapped key.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct KeySlot {
    /// The slot's number, which `remove_key` takes.
    pub number: u32,
    /// What it opens with.
    pub kind: KeyKind,
    /// When it was added, in seconds since the Unix epoch.
    pub created: i64,
    /// The label it was added with (may be empty).
    pub label: String,
    /// argon2id's memory cost in KiB (0 for a key file).
    pub memory_kib: u32,
    /// argon2id's passes (0 for a key file).
    pub iterations: u32,
}

/// The key slots record as persisted, version 1.
#[derive(Clone, Serialize, Deserialize)]
struct KeySlotsV1 {
    tier: [u8; 16],
    /// [`key_check`] of the data key: tells the key of this tier from
    /// another one without revealing it.
    check: [u8; 32],
    next: u32,
    slots: Vec<SlotV1>,
}

#[derive(Clone, Serialize, Deserialize)]
struct SlotV1 {
    number: u32,
    kind: u8,
    created: i64,
    label: String,
    memory_kib: u32,
    iterations: u32,
    lanes: u32,
    salt: [u8; 16],
    nonce: [u8; 24],
    /// The data key sealed under the slot's wrapping key (32 + 16 bytes).
    wrapped: Vec<u8>,
}

/// A keyed hash of the data key, bound to the tier: the same for every
/// slot, different for another key or tier.
pub(crate) fn key_check(key: &[u8; 32], tier: [u8; 16]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    h.update(b"tierseed key check v1");
    h.update(&tier);
    *h.finalize().as_bytes()
}

fn slot_aad(tier: [u8; 16], number: u32, kind: u8) -> Vec<u8> {
    let mut aad = b"tierseed key slot v1 ".to_vec();
    aad.extend_from_slice(&tier);
    aad.extend_from_slice(&number.to_le_bytes());
    aad.push(kind);
    aad
}

/// An encrypted tier's key slots.
#[derive(Clone)]
pub(crate) struct KeySlots {
    rec: KeySlotsV1,
}

impl KeySlots {
    /// New slots for tier `tier` under a fresh random data key, with one
    /// slot for `cred`.
    pub(crate) fn create(tier: [u8; 16], cred: &Credential, label: &str) -> Result<(KeySlots, DataKey)> {
        let key: DataKey = Zeroizing::new(random()?);
        let mut slots = KeySlots { rec: KeySlotsV1 { tier, check: key_check(&key, tier), next: 1, slots: Vec::new() } };
        slots.add(&key, cred, label)?;
        Ok((slots, key))
    }

    pub(crate) fn decode(bytes: &[u8], what: &dyn Fn() -> String) -> Result<KeySlots> {
        Ok(KeySlots { rec: decode_record(magic::KEY_SLOTS, VERSION, bytes, what)? })
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        encode_record(magic::KEY_SLOTS, VERSION, &self.rec)
    }

    pub(crate) fn tier(&self) -> [u8; 16] {
        self.rec.tier
    }

    pub(crate) fn check(&self) -> [u8; 32] {
        self.rec.check
    }

    /// The data key and the number of the slot `cred` opens; every slot of
    /// the credential's kind is tried. `location` names the tier.
    pub(crate) fn unlock(&self, cred: &Credential, location: &str) -> Result<(DataKey, u32)> {
        let kind = cred.kind();
        let mut tried = 0;
        for slot in self.rec.slots.iter().filter(|s| s.kind == kind) {
            tried += 1;
            let wrap = cred.wrapping_key(slot)?;
            let cipher = XChaCha20Poly1305::new((&*wrap).into());
            let aad = slot_aad(self.rec.tier, slot.number, slot.kind);
            let Ok(plain) = cipher.decrypt(XNonce::from_slice(&slot.nonce), Payload { msg: &slot.wrapped, aad: &aad }) else {
                continue;
            };
            let plain = Zeroizing::new(plain);
            let mut key: DataKey = Zeroizing::new([0u8; 32]);
            if plain.len() != 32 {
                return Err(keys_err(location, format!("slot {} holds a key of {} bytes", slot.number, plain.len())));
            }
            key.copy_from_slice(&plain);
            if key_check(&key, self.rec.tier) != self.rec.check {
                return Err(keys_err(location, format!("slot {} opens a key that is not this tier's", slot.number)));
            }
            return Ok((key, slot.number));
        }
        let kind = if kind == KIND_PASSPHRASE { "passphrase" } else { "key file" };
        Err(Error::Tier(TierError::WrongKey { location: location.to_string(), tried, kind }))
    }

    /// Adds a slot for `cred` wrapping `key`; returns its number.
    pub(crate) fn add(&mut self, key: &DataKey, cred: &Credential, label: &str) -> Result<u32> {
        let number = self.rec.next;
        let kind = cred.kind();
        let (memory_kib, iterations, lanes) = if kind == KIND_PASSPHRASE { (MEMORY_KIB, ITERATIONS, LANES) } else { (0, 0, 0) };
        let mut slot = SlotV1 {
            number,
            kind,
            created: std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64),
            label: label.to_string(),
            memory_kib,
            iterations,
            lanes,
            salt: random()?,
            nonce: random()?,
            wrapped: Vec::new(),
        };
        let wrap = cred.wrapping_key(&slot)?;
        let cipher = XChaCha20Poly1305::new((&*wrap).into());
        let aad = slot_aad(self.rec.tier, number, kind);
        slot.wrapped = cipher
            .encrypt(XNonce::from_slice(&slot.nonce), Payload { msg: &key[..], aad: &aad })
            .expect("XChaCha20-Poly1305 refuses only messages over 256 GiB; a key is 32 bytes");
        self.rec.slots.push(slot);
        self.rec.next += 1;
        Ok(number)
    }

    /// Removes slot `number`; the last slot is never removed (the data
    /// would be lost with it).
    pub(crate) fn remove(&mut self, number: u32, location: &str) -> Result<()> {
        let Some(at) = self.rec.slots.iter().position(|s| s.number == number) else {
            return Err(keys_err(location, format!("no slot {number}")));
        };
        if self.rec.slots.len() == 1 {
            return Err(keys_err(location, format!("slot {number} is the last one: add another before removing it")));
        }
        self.rec.slots.remove(at);
        Ok(())
    }

    pub(crate) fn list(&self) -> Vec<KeySlot> {
        self.rec
            .slots
            .iter()
            .map(|s| KeySlot {
                number: s.number,
                kind: if s.kind == KIND_PASSPHRASE { KeyKind::Passphrase } else { KeyKind::KeyFile },
                created: s.created,
                label: s.label.clone(),
                memory_kib: s.memory_kib,
                iterations: s.iterations,
            })
            .collect()
    }
}

pub(crate) fn keys_err(location: &str, reason: String) -> Error {
    Error::Tier(TierError::Keys { location: location.to_string(), reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_file_and_a_passphrase_open_the_same_key_and_others_do_not() {
        let dir = tempfile::tempdir().unwrap();
        let file = Credential::generate_key_file(dir.path().join("k")).unwrap();
        assert!(Credential::generate_key_file(dir.path().join("k")).is_err(), "an existing key file is never overwritten");
        let (mut slots, key) = KeySlots::create([3; 16], &file, "appliance").unwrap();
        let pass = Credential::passphrase("correct horse battery staple");
        let n = slots.add(&key, &pass, "operator").unwrap();
        let slots = KeySlots::decode(&slots.encode(), &|| "slots".into()).unwrap();
        assert_eq!(*slots.unlock(&file, "t").unwrap().0, *key);
        assert_eq!(slots.unlock(&pass, "t").unwrap(), (key.clone(), n));
        let e = slots.unlock(&Credential::passphrase("wrong"), "t").unwrap_err();
        assert!(matches!(e, Error::Tier(TierError::WrongKey { tried: 1, .. })), "{e}");
        assert!(!e.to_string().contains("wrong"), "the passphrase never appears in an error: {e}");
        let other = Credential::generate_key_file(dir.path().join("other")).unwrap();
        assert!(matches!(slots.unlock(&other, "t"), Err(Error::Tier(TierError::WrongKey { .. }))));
        assert!(!format!("{pass:?}").contains("horse"));
    }

    #[test]
    fn the_last_slot_is_never_removed_and_a_short_key_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let file = Credential::generate_key_file(dir.path().join("k")).unwrap();
        let (mut slots, key) = KeySlots::create([3; 16], &file, "").unwrap();
        assert!(slots.remove(1, "t").is_err());
        let second = Credential::generate_key_file(dir.path().join("k2")).unwrap();
        let n = slots.add(&key, &second, "").unwrap();
        slots.remove(1, "t").unwrap();
        assert!(slots.unlock(&file, "t").is_err());
        assert_eq!(slots.unlock(&second, "t").unwrap().1, n);
        std::fs::write(dir.path().join("short"), "0123456789\n").unwrap();
        let e = slots.add(&key, &Credential::key_file(dir.path().join("short")), "").unwrap_err();
        assert!(e.to_string().contains("fewer than"), "{e}");
        // A device is refused after one read past the cap, never read on.
        let e = slots.add(&key, &Credential::key_file("/dev/zero"), "").unwrap_err();
        assert!(e.to_string().contains("more than the 4096 bytes"), "{e}");
    }
}
