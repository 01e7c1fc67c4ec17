//! The compact PHF: one PtrHash function per bucket of keys.
//!
//! A key's bucket is the top bits of a mix of its 16 bytes, so buckets
//! are balanced whatever the keys' order in the key file (and whatever
//! their distribution: the synthetic benchmark's keys are counters, not
//! hashes). The build reads the key file once, appending each key to its
//! bucket's scratch file beside the key file; then builds each bucket's
//! function in memory from that file, deletes the file, and goes on. A
//! key's slot is its bucket's base plus its index there. So each key is
//! read twice and hashed twice in all, and the build holds one bucket at a
//! time (its keys, their hashes and PtrHash's arrays, about 60 MiB at 1M
//! keys) plus a write buffer per bucket; PtrHash's own sharding instead
//! re-reads and re-hashes every key once per shard.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use epserde::deser::Deserialize as _;
use epserde::ser::Serialize as _;
use ptr_hash::bucket_fn::CubicEps;
use ptr_hash::hash::Xx128;
use ptr_hash::{PtrHash, PtrHashParams, Sharding};
use serde::{Deserialize, Serialize};

use super::keys::KeyFile;
use crate::error::{Error, JobError, Result};

/// The function's name in a blob (pinned in Cargo.toml): PtrHash with its
/// compact parameters per bucket of about [`PER_BUCKET`] keys (the bucket
/// from [`mix`]), 128-bit xxhash of the 16-byte key, the remap in
/// `CachelineEf`, each bucket's function as epserde 0.8 writes it.
pub(crate) const FUNCTION: &str = "ptr_hash 1.1.0 CubicEps lambda3.9 alpha0.99 Xx128 CachelineEf epserde0.8 buckets1M-mix1";
/// Keys per bucket, about (the bucket count is a power of two).
const PER_BUCKET: u64 = 1 << 20;
/// Keys read from the key file at a time while bucketing.
const READ: usize = 1 << 16;

type PtrFn = PtrHash<[u8; 16], CubicEps, cacheline_ef::CachelineEfVec, Xx128, Vec<u8>>;

/// The compact function: one PtrHash per bucket.
pub(crate) struct Bucketed {
    /// log2 of the bucket count.
    bits: u8,
    /// Each bucket's first slot.
    bases: Vec<u64>,
    funcs: Vec<PtrFn>,
}

/// [`Bucketed`] as persisted inside the PHF blob.
#[derive(Serialize, Deserialize)]
struct BucketedV1 {
    bits: u8,
    bases: Vec<u64>,
    funcs: Vec<Vec<u8>>,
}

/// A 64-bit mix of a key (splitmix64's finalizer over both halves): its
/// top bits choose the bucket. Fixed forever for blobs named [`FUNCTION`].
fn mix(key: &[u8; 16]) -> u64 {
    let (lo, hi) = key.split_at(8);
    let mut z =
        u64::from_le_bytes(lo.try_into().expect("8 bytes")) ^ u64::from_le_bytes(hi.try_into().expect("8 bytes")).rotate_left(29);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn bucket_of(key: &[u8; 16], bits: u8) -> usize {
    if bits == 0 { 0 } else { (mix(key) >> (64 - u32::from(bits))) as usize }
}

fn build_failed(reason: impl Into<String>) -> Error {
    Error::Job(JobError::PhfBuild { reason: reason.into() })
}

/// Removes the bucket files when the build ends, however it ends.
struct Scratch(Vec<PathBuf>);

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in &self.0 {
            let _ = std::fs::remove_file(p);
        }
    }
}

impl Bucketed {
    /// The slot of `key` (arbitrary for a non-member, and possibly past the
    /// key count: callers filter).
    pub(crate) fn index(&self, key: &[u8; 16]) -> u64 {
        let b = bucket_of(key, self.bits);
        self.bases[b] + self.funcs[b].index(key) as u64
    }

    /// Builds the function over `file`'s keys on `pool`, its bucket files
    /// in `scratch` (the key file's directory).
    pub(crate) fn build(file: &KeyFile, scratch: &Path, pool: &rayon::ThreadPool) -> Result<Bucketed> {
        let buckets = file.keys.div_ceil(PER_BUCKET).max(1).next_power_of_two();
        let bits = buckets.trailing_zeros() as u8;
        let paths: Vec<PathBuf> = (0..buckets).map(|b| scratch.join(format!("phf-bucket-{b:05}.tmp"))).collect();
        let scratch_files = Scratch(paths.clone());
        let mut writers = Vec::with_capacity(paths.len());
        for p in &paths {
            writers.push(BufWriter::with_capacity(32 << 10, File::create(p).map_err(|e| Error::io(p, e))?));
        }
        let mut counts = vec![0u64; paths.len()];
        let mut reader = file.reader()?;
        let mut read = 0u64;
        loop {
            let page = reader.page(READ)?;
            if page.is_empty() {
                break;
            }
            read += page.len() as u64;
            for k in &page {
                let b = bucket_of(&k.0, bits);
                counts[b] += 1;
                writers[b].write_all(&k.0).map_err(|e| Error::io(&paths[b], e))?;
            }
        }
        if read != file.keys {
            return Err(build_failed(format!("the key file held {read} keys, it says {}", file.keys)));
        }
        for (w, p) in writers.into_iter().zip(&paths) {
            w.into_inner().map_err(|e| Error::io(p, e.into_error()))?;
        }
        let params = PtrHashParams { sharding: Sharding::None, ..PtrHashParams::default_compact() };
        let mut out = Bucketed { bits, bases: Vec::with_capacity(paths.len()), funcs: Vec::with_capacity(paths.len()) };
        let mut base = 0u64;
        for (b, p) in paths.iter().enumerate() {
            let mut keys = vec![[0u8; 16]; counts[b] as usize];
            let mut f = File::open(p).map_err(|e| Error::io(p, e))?;
            let len = f.metadata().map_err(|e| Error::io(p, e))?.len();
            if len != counts[b] * 16 {
                return Err(build_failed(format!(
                    "bucket file {} holds {len} bytes, {} keys were written",
                    p.display(),
                    counts[b]
                )));
            }
            std::io::Read::read_exact(&mut f, keys.as_flattened_mut()).map_err(|e| Error::io(p, e))?;
            drop(f);
            let _ = std::fs::remove_file(p);
            let built = catch_unwind(AssertUnwindSafe(|| pool.install(|| PtrFn::try_new(&keys, params))));
            let f = match built {
                Ok(Some(f)) => f,
                Ok(None) => return Err(build_failed(format!("ptr_hash found no function for bucket {b} ({} keys)", keys.len()))),
                Err(_) => return Err(build_failed("the compact PHF build failed inside the ptr_hash crate")),
            };
            out.bases.push(base);
            out.funcs.push(f);
            base += counts[b];
        }
        drop(scratch_files);
        Ok(out)
    }

    /// The persisted bytes.
    pub(crate) fn to_bytes(&self) -> Result<Vec<u8>> {
        let mut funcs = Vec::with_capacity(self.funcs.len());
        for f in &self.funcs {
            let mut b = Vec::new();
            f.serialize(&mut b).map_err(|e| Error::internal(format!("serializing the compact PHF: {e}")))?;
            funcs.push(b);
        }
        let rec = BucketedV1 { bits: self.bits, bases: self.bases.clone(), funcs };
        Ok(postcard::to_stdvec(&rec)
            .expect("postcard fails only for types serde cannot describe; this is integers and byte vectors"))
    }

    /// Decodes [`to_bytes`](Self::to_bytes)'s output over `keys` keys;
    /// the reason on failure.
    pub(crate) fn from_bytes(bytes: &[u8], keys: u64) -> std::result::Result<Bucketed, String> {
        let rec: BucketedV1 = postcard::from_bytes(bytes).map_err(|e| format!("undecodable buckets: {e}"))?;
        let n = 1usize.checked_shl(u32::from(rec.bits)).filter(|_| rec.bits <= 32).ok_or("implausible bucket count")?;
        if rec.bases.len() != n || rec.funcs.len() != n {
            return Err(format!("{n} buckets with {} bases and {} functions", rec.bases.len(), rec.funcs.len()));
        }
        let mut funcs = Vec::with_capacity(n);
        for (i, b) in rec.funcs.iter().enumerate() {
            // The envelope's checksum held, so the bytes are what was
            // written; a decoder panic is still an error, never an unwind.
            let f = catch_unwind(AssertUnwindSafe(|| PtrFn::deserialize_full(&mut &b[..])))
                .map_err(|_| format!("bucket {i}'s function does not decode (the decoder panicked)"))?
                .map_err(|e| format!("bucket {i}'s function does not decode: {e}"))?;
            let end = rec.bases.get(i + 1).copied().unwrap_or(keys);
            if end < rec.bases[i] || f.n() as u64 != end - rec.bases[i] || (i == 0 && rec.bases[0] != 0) {
                return Err(format!("bucket {i} holds {} keys where its bases say {}", f.n(), end.saturating_sub(rec.bases[i])));
            }
            funcs.push(f);
        }
        Ok(Bucketed { bits: rec.bits, bases: rec.bases, funcs })
    }
}
