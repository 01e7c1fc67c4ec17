//! The perfect hash function over the source index, built by streaming the
//! index through the tier trait, and its persisted blob.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;
use std::sync::Mutex;

use boomphf::Mphf;
use ph::fmph::{GOFunction, TwoToPowerBitsStatic};
use ph::seedable_hash::BuildWyHash;
use serde::{Deserialize, Serialize};

use super::keys::{KeyFile, KeyReader};
use super::ptr::Bucketed;
use crate::error::{Error, JobError, Result};
use crate::format::durable::{encode_record, write_durable};
use crate::format::fingerprint::PhfKey;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::magic;
use crate::tier::SourceTier;

/// Version 1 blobs hold a boomphf function (and are still what a boomphf
/// job writes); version 2 blobs say which kind they hold.
pub(crate) const PHF_VERSION: u16 = 2;
/// The `ph` release and function the compact blobs of jobs begun before
/// 2026-12 were built with (still read, no longer built): group-optimized
/// FMPH, 4-bit seeds, 16-bit groups, wyhash of the 16-byte key.
pub(crate) const COMPACT_FUNCTION: &str = "ph 0.11.0 GOFunction bps4 bpg16 wyhash";
/// The boomphf release the blob was built with (pinned in Cargo.toml). A
/// blob from another release is refused rather than trusted.
pub(crate) const BOOMPHF_VERSION: &str = "0.6.0";
/// Fingerprints fetched from the tier per page while building.
const PAGE: usize = 1 << 16;

/// Which minimal perfect hash function a job builds over the source index.
/// Both give one slot per fingerprint; they differ in memory and build time
/// (BENCHMARKS.md has the measured figures).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PhfKind {
    /// boomphf (the default): about 3.4 bits per fingerprint, fast to build.
    #[default]
    Boomphf,
    /// PtrHash (the `ptr_hash` crate): about 2.2 bits per fingerprint,
    /// built shard by shard in bounded memory. A job begun with the earlier
    /// compact function (`ph`'s) resumes with it.
    Compact,
}

crate::format::records::named_codes!(PhfKind, "PHF kind", { Boomphf => ("boomphf", 0), Compact => ("compact", 1) });

type CompactFn = GOFunction<TwoToPowerBitsStatic<4>, TwoToPowerBitsStatic<2>, BuildWyHash>;

enum Func {
    Boom(Mphf<PhfKey>),
    /// `ph`'s function, read from the blob of a job begun before.
    Compact(CompactFn),
    /// PtrHash per bucket of keys (`mark/ptr.rs`).
    Ptr(Box<Bucketed>),
}

/// The PHF plus what it was built over.
pub(crate) struct Phf {
    func: Func,
    /// Number of keys, which is also the number of slots.
    pub(crate) keys: u64,
}

/// A compact PHF's blob (version 2 of the PHF blob).
#[derive(Serialize, Deserialize)]
struct PhfBlobV2 {
    /// [`PhfKind::code`].
    kind: u8,
    /// [`COMPACT_FUNCTION`] for a compact blob.
    function: String,
    keys: u64,
    /// The function as its library writes it.
    bytes: Vec<u8>,
}

/// A boomphf PHF's blob (version 1, still written for boomphf jobs).
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
        self.slot_of_key(&fp.phf_key())
    }

    fn slot_of_key(&self, key: &PhfKey) -> Option<u64> {
        let key = *key;
        match &self.func {
            Func::Boom(m) => m.try_hash(&key),
            Func::Compact(f) => f.get(&key),
            Func::Ptr(f) => Some(f.index(&key.0)),
        }
        .filter(|s| *s < self.keys)
    }

    /// Which kind of function this is.
    pub(crate) fn kind(&self) -> PhfKind {
        match self.func {
            Func::Boom(_) => PhfKind::Boomphf,
            Func::Compact(_) | Func::Ptr(_) => PhfKind::Compact,
        }
    }

    /// Builds the PHF over every fingerprint of `source`'s index in a
    /// container that `in_snapshot` accepts, through a key file written to
    /// the directory `scratch` and removed afterwards (for the callers
    /// that keep no key file: gc, the estimate, the bench).
    pub(crate) fn build_over(
        source: &dyn SourceTier,
        in_snapshot: &dyn Fn(ContainerId) -> bool,
        kind: PhfKind,
        gamma: f64,
        threads: usize,
        scratch: &Path,
    ) -> Result<Phf> {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let path = scratch.join(format!("tierseed-keys-{}-{n}.bin", std::process::id()));
        let result = super::keys::write_where(source, &|c| in_snapshot(c).then_some(0), 0, &path)
            .and_then(|w| Phf::build(&w.file, kind, gamma, threads));
        let _ = std::fs::remove_file(&path);
        result
    }

    /// Builds the PHF over the keys of the snapshot's key file (written by
    /// [`super::keys::write`] from one scan of the source index): each of
    /// the builder's passes reads the file, not the index.
    pub(crate) fn build(file: &KeyFile, kind: PhfKind, gamma: f64, threads: usize) -> Result<Phf> {
        check_gamma(gamma)?;
        let keys = file.keys;
        if keys == 0 {
            return Ok(Phf { func: Func::Boom(Mphf::new(gamma, &[])), keys: 0 });
        }
        if kind == PhfKind::Compact {
            return Self::build_ptr(file, threads);
        }
        let stream = KeyStream { file, keys, failure: Mutex::new(None) };
        // The stream never makes boomphf panic (see `KeyStream`); anything
        // else that does (its own assertions) is caught and reported as a
        // failed build rather than unwinding into the caller.
        let built = catch_unwind(AssertUnwindSafe(|| {
            Mphf::from_chunked_iterator_parallel(gamma, &stream, Some(64), keys, threads.max(1))
        }));
        let failure = stream.failure.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take();
        match (built, failure) {
            (_, Some(e)) => Err(e),
            (Ok(mphf), None) => Ok(Phf { func: Func::Boom(mphf), keys }),
            (Err(_), None) => Err(Error::Job(JobError::PhfBuild {
                reason: "boomphf failed: the source index holds colliding 16-byte fingerprint prefixes".into(),
            })),
        }
    }

    /// The compact build: PtrHash per bucket of keys (see `mark/ptr.rs`),
    /// its scratch files beside the key file, on a pool of `threads`.
    fn build_ptr(file: &KeyFile, threads: usize) -> Result<Phf> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .thread_name(|i| format!("tierseed-phf-{i}"))
            .build()
            .map_err(|e| Error::Job(JobError::ThreadPool { threads: threads.max(1), source: e }))?;
        let f = Bucketed::build(file, file.dir(), &pool)?;
        Ok(Phf { func: Func::Ptr(Box::new(f)), keys: file.keys })
    }

    /// Writes the blob durably to `path`: version 1 for boomphf (the
    /// format every earlier job wrote), version 2 for a compact function.
    pub(crate) fn persist(&self, path: &Path, gamma: f64) -> Result<()> {
        let bytes = match &self.func {
            Func::Boom(m) => {
                let blob = PhfBlob { boomphf_version: BOOMPHF_VERSION.into(), gamma, keys: self.keys, mphf: m.clone() };
                encode_record(magic::PHF, 1, &blob)
            }
            Func::Compact(f) => {
                let mut out = Vec::with_capacity(f.write_bytes());
                f.write(&mut out).map_err(|e| Error::io(path, e))?;
                let blob =
                    PhfBlobV2 { kind: PhfKind::Compact.code(), function: COMPACT_FUNCTION.into(), keys: self.keys, bytes: out };
                encode_record(magic::PHF, PHF_VERSION, &blob)
            }
            Func::Ptr(f) => {
                let blob = PhfBlobV2 {
                    kind: PhfKind::Compact.code(),
                    function: super::ptr::FUNCTION.into(),
                    keys: self.keys,
                    bytes: f.to_bytes()?,
                };
                encode_record(magic::PHF, PHF_VERSION, &blob)
            }
        };
        write_durable(path, &bytes, false)
    }

    /// Loads and checks a blob written by [`persist`](Self::persist).
    pub(crate) fn load(path: &Path, expected_keys: u64) -> Result<Phf> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::decode(&bytes, &path.display().to_string(), expected_keys)
    }

    /// Serializes the function alone (for measuring its size).
    #[cfg(feature = "test-util")]
    pub(crate) fn serialize_inner<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        match &self.func {
            Func::Boom(m) => serde::Serialize::serialize(m, s),
            Func::Compact(_) | Func::Ptr(_) => s.serialize_unit(),
        }
    }

    /// A compact function's size in bytes (its own writer's count, which
    /// is its in-memory arrays); `None` for boomphf.
    #[cfg(feature = "test-util")]
    pub(crate) fn compact_bytes(&self) -> Option<u64> {
        match &self.func {
            Func::Boom(_) => None,
            Func::Compact(f) => Some(f.write_bytes() as u64),
            Func::Ptr(f) => f.to_bytes().ok().map(|b| b.len() as u64),
        }
    }

    /// Checks and decodes blob bytes.
    pub(crate) fn decode(bytes: &[u8], name: &str, expected_keys: u64) -> Result<Phf> {
        let what = || format!("PHF blob {name}");
        let blob = match crate::format::durable::decode_versioned::<PhfBlobV2, PhfBlob>(magic::PHF, PHF_VERSION, bytes, &what)? {
            crate::format::durable::Versioned::V1(b) => b,
            crate::format::durable::Versioned::Current(b) => return Self::decode_v2(b, &what, expected_keys),
        };
        if blob.boomphf_version != BOOMPHF_VERSION {
            return Err(Error::corrupt_record(
                what(),
                format!("built by boomphf {}, this build uses {BOOMPHF_VERSION}", blob.boomphf_version),
            ));
        }
        check_keys(blob.keys, expected_keys, &what)?;
        Ok(Phf { func: Func::Boom(blob.mphf), keys: blob.keys })
    }

    fn decode_v2(blob: PhfBlobV2, what: &dyn Fn() -> String, expected_keys: u64) -> Result<Phf> {
        if PhfKind::from_code(blob.kind) != Some(PhfKind::Compact) {
            return Err(Error::corrupt_record(what(), format!("unknown PHF kind {}", blob.kind)));
        }
        check_keys(blob.keys, expected_keys, what)?;
        if blob.function == super::ptr::FUNCTION {
            let f = Bucketed::from_bytes(&blob.bytes, blob.keys)
                .map_err(|reason| Error::corrupt_record(what(), format!("compact function: {reason}")))?;
            return Ok(Phf { func: Func::Ptr(Box::new(f)), keys: blob.keys });
        }
        if blob.function != COMPACT_FUNCTION {
            return Err(Error::corrupt_record(
                what(),
                format!("built as {:?}, this build reads {:?} and {COMPACT_FUNCTION:?}", blob.function, super::ptr::FUNCTION),
            ));
        }
        // The envelope's checksum held, so the bytes are what was written;
        // the library's reader still checks its own lengths.
        let f = CompactFn::read_with_hasher(&mut &blob.bytes[..], BuildWyHash)
            .map_err(|e| Error::corrupt_record(what(), format!("compact function does not decode: {e}")))?;
        Ok(Phf { func: Func::Compact(f), keys: blob.keys })
    }
}

/// A blob must be over exactly the keys the job context counted.
fn check_keys(keys: u64, expected: u64, what: &dyn Fn() -> String) -> Result<()> {
    if keys == expected {
        Ok(())
    } else {
        Err(Error::corrupt_record(what(), format!("{keys} keys, the job context says {expected}")))
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

/// The key file as a re-iterable stream of pages, as boomphf's chunked
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
    file: &'a KeyFile,
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
    reader: Option<KeyReader>,
    /// Keys yielded in this pass.
    position: u64,
    /// The source ran out of pages.
    exhausted: bool,
}

impl<'s, 'a> IntoIterator for &'s KeyStream<'a> {
    type Item = Vec<PhfKey>;
    type IntoIter = Pages<'s, 'a>;
    fn into_iter(self) -> Self::IntoIter {
        Pages { stream: self, reader: None, position: 0, exhausted: false }
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
        if self.reader.is_none() {
            match self.stream.file.reader() {
                Ok(r) => self.reader = Some(r),
                Err(e) => {
                    self.stream.fail(e);
                    return self.fillers();
                }
            }
        }
        let reader = self.reader.as_mut().expect("opened just above");
        match reader.page(PAGE) {
            Ok(keys) if keys.is_empty() => {
                self.exhausted = true;
                self.stream.fail(Error::Job(JobError::PhfBuild {
                    reason: format!("the key file ended after {} of {} keys", self.position, self.stream.keys),
                }));
                self.fillers()
            }
            Ok(keys) => {
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

#[cfg(test)]
mod tests {
    use super::*;

    /// A compact blob written by a build before 2026-12 (`ph`'s function)
    /// still loads and answers for its keys: a job suspended after its
    /// BuildPhf resumes with the function it built.
    #[test]
    fn a_compact_blob_of_the_earlier_function_still_loads() {
        let keys: Vec<PhfKey> = (0..5_000u64).map(filler).collect();
        let conf = ph::fmph::GOConf::hash_bps_bpg(BuildWyHash, TwoToPowerBitsStatic::<2>, TwoToPowerBitsStatic::<4>);
        let f = CompactFn::from_slice_with_conf(&keys, ph::fmph::GOBuildConf::new(conf));
        let old = Phf { func: Func::Compact(f), keys: keys.len() as u64 };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("phf");
        old.persist(&path, 1.7).unwrap();
        let loaded = Phf::load(&path, keys.len() as u64).unwrap();
        assert!(matches!(loaded.func, Func::Compact(_)));
        let mut seen = std::collections::HashSet::new();
        for k in &keys {
            assert!(seen.insert(loaded.slot_of_key(k).unwrap()));
        }
        assert_eq!(loaded.kind(), PhfKind::Compact);
    }
}
