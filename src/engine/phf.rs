//! The perfect hash function over the source index, built by streaming the
//! index through the tier trait, and its persisted blob.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;

use boomphf::Mphf;
use serde::{Deserialize, Serialize};

use crate::durable::{decode_record, encode_record, write_durable};
use crate::error::{Error, Result};
use crate::fingerprint::PhfKey;
use crate::tier::SourceTier;
use crate::{ContainerId, Fingerprint};

const PHF_MAGIC: &[u8; 4] = b"TSPH";
const PHF_VERSION: u16 = 1;
/// The boomphf release the blob was built with (pinned in Cargo.toml). A
/// blob from another release is refused rather than trusted.
pub(crate) const BOOMPHF_VERSION: &str = "0.6.0";
/// Fingerprints fetched from the tier per page while building.
const PAGE: usize = 1 << 16;

/// The PHF plus what it was built over.
pub(crate) struct Phf {
    mphf: Mphf<PhfKey>,
    /// Number of keys, which is also the number of slots.
    pub(crate) keys: u64,
}

#[derive(Serialize, Deserialize)]
struct PhfBlob {
    boomphf_version: String,
    gamma: f64,
    keys: u64,
    mphf: Mphf<PhfKey>,
}

impl Phf {
    /// The slot of a fingerprint that is known to be a key. For a
    /// non-member the answer is arbitrary (or `None`): callers confirm
    /// membership through the source index before trusting a slot.
    pub(crate) fn slot(&self, fp: &Fingerprint) -> Option<u64> {
        self.mphf.try_hash(&fp.phf_key()).filter(|s| *s < self.keys)
    }

    /// Builds the PHF over every fingerprint of `source`'s index that lives
    /// in a snapshot container (`in_snapshot`), streaming the index in
    /// pages: memory holds one page per worker, never the whole index.
    pub(crate) fn build(
        source: &dyn SourceTier,
        in_snapshot: &(dyn Fn(ContainerId) -> bool + Sync),
        gamma: f64,
        threads: usize,
    ) -> Result<Phf> {
        check_gamma(gamma)?;
        // First pass: count the keys (the builder needs the count up front).
        let mut keys = 0u64;
        source.for_each_index_page(PAGE, &mut |page| {
            keys += page.iter().filter(|(_, c)| in_snapshot(*c)).count() as u64;
            Ok(())
        })?;
        if keys == 0 {
            return Ok(Phf { mphf: Mphf::new(gamma, &[]), keys: 0 });
        }
        let stream = KeyStream { source, in_snapshot, keys, failure: Mutex::new(None) };
        // The stream never makes boomphf panic (see `KeyStream`); anything
        // else that does (its own assertions) is caught and reported as a
        // failed build rather than unwinding into the caller.
        let built = catch_unwind(AssertUnwindSafe(|| {
            Mphf::from_chunked_iterator_parallel(gamma, &stream, Some(64), keys, threads.max(1))
        }));
        let failure = stream.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match (built, failure) {
            (_, Some(e)) => Err(e),
            (Ok(mphf), None) => Ok(Phf { mphf, keys }),
            (Err(_), None) => Err(Error::PhfBuild {
                reason: "boomphf failed: the source index holds colliding 16-byte fingerprint prefixes".into(),
            }),
        }
    }

    /// Writes the blob durably to `path`.
    pub(crate) fn persist(&self, path: &Path, gamma: f64) -> Result<()> {
        let blob = PhfBlob { boomphf_version: BOOMPHF_VERSION.into(), gamma, keys: self.keys, mphf: self.mphf.clone() };
        write_durable(path, &encode_record(PHF_MAGIC, PHF_VERSION, &blob), false)
    }

    /// Loads and checks a blob written by [`persist`](Self::persist).
    pub(crate) fn load(path: &Path, expected_keys: u64) -> Result<Phf> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes, &path.display().to_string(), expected_keys)
    }

    /// Serializes the function alone (for measuring its size).
    #[cfg(feature = "test-util")]
    pub(crate) fn serialize_inner<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        serde::Serialize::serialize(&self.mphf, s)
    }

    /// Checks and decodes blob bytes.
    pub(crate) fn decode(bytes: &[u8], name: &str, expected_keys: u64) -> Result<Phf> {
        let what = || format!("PHF blob {name}");
        let blob: PhfBlob = decode_record(PHF_MAGIC, PHF_VERSION, bytes, &what)?;
        if blob.boomphf_version != BOOMPHF_VERSION {
            return Err(Error::corrupt_record(
                what(),
                format!("built by boomphf {}, this build uses {BOOMPHF_VERSION}", blob.boomphf_version),
            ));
        }
        if blob.keys != expected_keys {
            return Err(Error::corrupt_record(what(), format!("{} keys, the job context says {expected_keys}", blob.keys)));
        }
        Ok(Phf { mphf: blob.mphf, keys: blob.keys })
    }
}

pub(crate) fn check_gamma(gamma: f64) -> Result<()> {
    // boomphf asserts gamma > 1.01; above 5 the structure only grows.
    if gamma.is_finite() && (1.05..=5.0).contains(&gamma) {
        Ok(())
    } else {
        Err(Error::InvalidConfig(format!("PHF gamma {gamma} must be between 1.05 and 5.0 (1.7 is a good default)")))
    }
}

/// The source index as a re-iterable stream of pages, as boomphf's chunked
/// construction wants it.
///
/// boomphf cannot be told that a stream failed: a pass that yields fewer or
/// more keys than counted ends in a panic inside it (and an embedding built
/// with `panic = "abort"` would lose the process). So a failure is recorded
/// and the stream goes on yielding *filler* keys, distinct and derived from
/// the position alone, until the counted number is reached; every later
/// pass yields fillers only. The build then completes over a key set that
/// is stable from the failure on, and its result is discarded for the
/// recorded error.
struct KeyStream<'a> {
    source: &'a dyn SourceTier,
    in_snapshot: &'a (dyn Fn(ContainerId) -> bool + Sync),
    keys: u64,
    failure: Mutex<Option<Error>>,
}

impl KeyStream<'_> {
    fn failed(&self) -> bool {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).is_some()
    }

    fn fail(&self, e: Error) {
        self.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).get_or_insert(e);
    }
}

/// A key for position `p` that no real key is expected to equal: two
/// rounds of splitmix64 (a bijection on u64), so distinct positions give
/// distinct keys.
fn filler(p: u64) -> PhfKey {
    fn mix(mut z: u64) -> u64 {
        z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    let mut k = [0u8; 16];
    k[..8].copy_from_slice(&mix(p).to_le_bytes());
    k[8..].copy_from_slice(&mix(p ^ 0x5EED_F111_E55E_ED00).to_le_bytes());
    PhfKey(k)
}

struct Pages<'s, 'a> {
    stream: &'s KeyStream<'a>,
    after: Option<Fingerprint>,
    /// Keys yielded in this pass.
    position: u64,
    /// The source ran out of pages.
    exhausted: bool,
}

impl<'s, 'a> IntoIterator for &'s KeyStream<'a> {
    type Item = Vec<PhfKey>;
    type IntoIter = Pages<'s, 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Pages { stream: self, after: None, position: 0, exhausted: false }
    }
}

impl Pages<'_, '_> {
    fn fillers(&mut self) -> Option<Vec<PhfKey>> {
        let n = (self.stream.keys - self.position).min(PAGE as u64);
        if n == 0 {
            return None;
        }
        let page = (self.position..self.position + n).map(filler).collect();
        self.position += n;
        Some(page)
    }
}

impl Iterator for Pages<'_, '_> {
    type Item = Vec<PhfKey>;
    fn next(&mut self) -> Option<Vec<PhfKey>> {
        if self.position >= self.stream.keys {
            return None;
        }
        if self.exhausted || self.stream.failed() {
            return self.fillers();
        }
        match self.stream.source.fingerprints(self.after.as_ref(), PAGE) {
            Ok(page) if page.is_empty() => {
                self.exhausted = true;
                self.stream.fail(Error::PhfBuild {
                    reason: format!(
                        "the source index shrank during the build: {} of {} keys found",
                        self.position, self.stream.keys
                    ),
                });
                self.fillers()
            }
            Ok(page) => {
                self.after = page.last().map(|p| p.0);
                let mut keys: Vec<PhfKey> =
                    page.iter().filter(|(_, c)| (self.stream.in_snapshot)(*c)).map(|(f, _)| f.phf_key()).collect();
                let room = (self.stream.keys - self.position) as usize;
                if keys.len() > room {
                    keys.truncate(room);
                    self.stream.fail(Error::PhfBuild {
                        reason: format!("the source index grew during the build past the {} keys counted", self.stream.keys),
                    });
                }
                self.position += keys.len() as u64;
                Some(keys)
            }
            Err(e) => {
                self.stream.fail(e);
                self.fillers()
            }
        }
    }
}
