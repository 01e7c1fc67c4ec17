//! A spool of fixed-size records that a walk emits one by one and reads
//! back grouped: in memory while small (256K records), beyond that in 256 bucket files
//! keyed by the record's first byte (a fingerprint's, so the buckets come
//! back in fingerprint order and each holds about 1/256 of the records).
//! Memory stays bounded however many records there are: the buffer, then
//! one bucket at a time.
//!
//! The files are scratch: they live in a directory of the job's state,
//! are removed when the spool is dropped, and a crash leaves nothing a
//! later run reads (it starts a new spool over the directory).

use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// Records kept in memory before the spool goes to disk (12 MiB of 48-byte
/// records).
const IN_MEMORY: usize = 1 << 18;
const BUCKETS: usize = 256;

/// The spool. `N` is the record size; a record's first byte is its bucket.
pub(crate) struct Spool<const N: usize> {
    dir: PathBuf,
    memory: Vec<[u8; N]>,
    files: Vec<BufWriter<File>>,
    len: u64,
    in_memory: usize,
}

impl<const N: usize> Spool<N> {
    /// A spool that may write its buckets under `dir` (created when
    /// needed; anything already there is replaced).
    pub(crate) fn new(dir: &Path) -> Self {
        Self::with_memory(dir, in_memory_records())
    }

    /// As [`new`](Self::new), keeping at most `records` in memory.
    pub(crate) fn with_memory(dir: &Path, records: usize) -> Self {
        Spool { dir: dir.to_path_buf(), memory: Vec::new(), files: Vec::new(), len: 0, in_memory: records.max(1) }
    }

    /// Records pushed so far.
    pub(crate) fn len(&self) -> u64 {
        self.len
    }

    pub(crate) fn push(&mut self, record: [u8; N]) -> Result<()> {
        self.len += 1;
        if self.files.is_empty() {
            self.memory.push(record);
            if self.memory.len() >= self.in_memory {
                self.spill()?;
            }
            return Ok(());
        }
        self.write(&record)
    }

    fn write(&mut self, record: &[u8; N]) -> Result<()> {
        let b = record[0] as usize;
        let dir = &self.dir;
        self.files[b].write_all(record).map_err(|e| Error::io(bucket(dir, b), e))
    }

    fn spill(&mut self) -> Result<()> {
        if self.dir.exists() {
            fs::remove_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        }
        fs::create_dir_all(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        for b in 0..BUCKETS {
            let path = bucket(&self.dir, b);
            let f = File::create(&path).map_err(|e| Error::io(&path, e))?;
            self.files.push(BufWriter::with_capacity(64 << 10, f));
        }
        for r in std::mem::take(&mut self.memory) {
            self.write(&r)?;
        }
        Ok(())
    }

    /// Calls `f` with every record, bucket by bucket in bucket order, each
    /// bucket sorted (so, for records that start with a fingerprint, in
    /// fingerprint order). Consumes the spool.
    pub(crate) fn drain_sorted(mut self, f: &mut dyn FnMut(&[[u8; N]]) -> Result<()>) -> Result<()> {
        if self.files.is_empty() {
            let mut all = std::mem::take(&mut self.memory);
            all.sort_unstable();
            return f(&all);
        }
        let mut buf = Vec::new();
        for (b, w) in std::mem::take(&mut self.files).into_iter().enumerate() {
            let path = bucket(&self.dir, b);
            w.into_inner().map_err(|e| Error::io(&path, e.into_error()))?;
            let mut r = BufReader::new(File::open(&path).map_err(|e| Error::io(&path, e))?);
            let mut bytes = Vec::new();
            r.read_to_end(&mut bytes).map_err(|e| Error::io(&path, e))?;
            // A short bucket is a disk that lost what it acknowledged.
            if bytes.len() % N != 0 {
                return Err(Error::corrupt_record(path.display().to_string(), "scratch spool has a partial record"));
            }
            buf.clear();
            buf.extend(bytes.chunks_exact(N).map(|c| <[u8; N]>::try_from(c).expect("chunks_exact yields N bytes")));
            drop(bytes);
            let _ = fs::remove_file(&path);
            buf.sort_unstable();
            f(&buf)?;
        }
        Ok(())
    }
}

impl<const N: usize> Drop for Spool<N> {
    fn drop(&mut self) {
        if !self.files.is_empty() || self.dir.exists() {
            self.files.clear();
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// [`IN_MEMORY`], or, in test builds, `TIERSEED_SPOOL_RECORDS` when set:
/// so that a whole job over a small tier can be made to spill every spool
/// to disk (the spilled path is otherwise reached only past 256K records).
fn in_memory_records() -> usize {
    #[cfg(feature = "test-util")]
    if let Some(n) = std::env::var("TIERSEED_SPOOL_RECORDS").ok().and_then(|v| v.parse().ok()) {
        return n;
    }
    IN_MEMORY
}

/// A spooled pass merges with a sorted index (one sequential read) only
/// when it has at least one record per this many index entries; below
/// that, sorted batches of lookups read less (a lookup reads a random
/// block, a merge tens of bytes per entry).
pub(crate) const MERGE_MIN_RATIO: u64 = 128;

/// Fingerprints looked up per batch when a spooled pass uses lookups.
pub(crate) const LOOKUP_BATCH: usize = 1 << 16;

/// Whether a pass over `records` should merge with an index of `entries`.
pub(crate) fn merge_pays(records: u64, entries: u64) -> bool {
    records.saturating_mul(MERGE_MIN_RATIO) >= entries
}

/// A sorted stream read page by page, answering ascending probes: the one
/// merge that Mark (with the key file) and Verify (with the target's
/// index) run. `next_page` gives the next page, empty at the end.
pub(crate) struct Merge<T, F> {
    next_page: F,
    page: Vec<T>,
    at: usize,
    done: bool,
}

impl<T, F: FnMut() -> Result<Vec<T>>> Merge<T, F> {
    pub(crate) fn new(next_page: F) -> Self {
        Merge { next_page, page: Vec::new(), at: 0, done: false }
    }

    /// The first entry that `below` does not reject, skipping those it
    /// does; `None` at the end. Probes must ascend (equal ones may repeat).
    pub(crate) fn seek(&mut self, below: impl Fn(&T) -> bool) -> Result<Option<&T>> {
        loop {
            if self.at == self.page.len() {
                if self.done {
                    return Ok(None);
                }
                self.page = (self.next_page)()?;
                self.at = 0;
                if self.page.is_empty() {
                    self.done = true;
                    return Ok(None);
                }
            }
            if below(&self.page[self.at]) {
                self.at += 1;
            } else {
                return Ok(Some(&self.page[self.at]));
            }
        }
    }
}

/// The u64 at `r[at..at + 8]`, little-endian (records' integer fields).
pub(crate) fn u64_at(r: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(r[at..at + 8].try_into().expect("an 8-byte range of a fixed-size record"))
}

/// The fingerprint at `r[at..at + 32]`.
pub(crate) fn fingerprint_at(r: &[u8], at: usize) -> crate::format::fingerprint::Fingerprint {
    crate::format::fingerprint::Fingerprint(r[at..at + 32].try_into().expect("a 32-byte range of a fixed-size record"))
}

fn bucket(dir: &Path, b: usize) -> PathBuf {
    dir.join(format!("{b:02x}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drained(s: Spool<4>) -> Vec<[u8; 4]> {
        let mut out = Vec::new();
        s.drain_sorted(&mut |g| {
            out.extend_from_slice(g);
            Ok(())
        })
        .unwrap();
        out
    }

    #[test]
    fn spilled_and_in_memory_spools_give_back_every_record_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let records: Vec<[u8; 4]> =
            (0u32..5000).map(|i| (i.wrapping_mul(2_654_435_761)).to_be_bytes()).chain([[7, 7, 7, 7]; 3]).collect();
        let mut want = records.clone();
        want.sort_unstable();
        for memory in [1usize, 10, 1 << 20] {
            let mut s = Spool::<4>::with_memory(&dir.path().join("spool"), memory);
            for r in &records {
                s.push(*r).unwrap();
            }
            assert_eq!(s.len(), records.len() as u64);
            assert_eq!(drained(s), want, "memory {memory}");
            assert!(!dir.path().join("spool").exists(), "the scratch files are removed");
        }
    }
}
