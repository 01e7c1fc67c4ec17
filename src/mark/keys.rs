//! The snapshot's key file: every fingerprint of the source index that
//! lives in a snapshot container, as its 16-byte PHF key, in the tier's
//! index order. BuildPhf writes it with one scan of the index; the PHF's
//! levels then read the file instead of scanning the index once per level,
//! and Mark confirms that the leaves it reached are in the source index by
//! one sequential merge with it instead of one index lookup per leaf.
//!
//! Layout (little-endian): the keys, 16 bytes each; a 16-byte footer
//! (magic `TSKY`, version u16 (1), flags u16 (bit 0: keys strictly
//! ascending), key count u64), written last because the count and the
//! flags are known only then; the BLAKE3 hash of everything before it (32
//! bytes). It is written durably
//! before the BuildPhf commit that names it and is checked whole when
//! opened; one that is missing, short or rotten is never trusted (Mark then
//! looks its leaves up in the index instead).

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::spool::Merge;
use crate::error::{Error, FormatError, Result};
use crate::format::durable::DurableFile;
use crate::format::entries::SegmentEntry;
use crate::format::fingerprint::{ContainerId, Fingerprint, PhfKey};
use crate::format::magic;
use crate::tier::SourceTier;

pub(crate) const VERSION: u16 = 1;
/// The footer before the hash.
const FOOTER: u64 = 16;
const TRAILER: u64 = 32;
/// Index entries fetched from the tier per page.
const PAGE: usize = 1 << 16;

/// What writing the key file learned about the snapshot.
pub(crate) struct Written {
    /// The file, just written and synced (not read back: [`KeyFile::open`]
    /// is for a file a later process finds).
    pub(crate) file: KeyFile,
    /// For each snapshot container (in snapshot order), how many index
    /// entries point to it.
    pub(crate) homed: Vec<u32>,
}

/// Writes the key file of `snapshot` (sorted container ids) to `path` from
/// one scan of `source`'s index.
pub(crate) fn write(source: &dyn SourceTier, snapshot: &[ContainerId], path: &Path) -> Result<Written> {
    write_where(source, &|c| snapshot.binary_search(&c).ok(), snapshot.len(), path)
}

/// As [`write`], for the containers `position` places (at an index below
/// `containers`, where their homed count goes).
pub(crate) fn write_where(
    source: &dyn SourceTier,
    position: &dyn Fn(ContainerId) -> Option<usize>,
    containers: usize,
    path: &Path,
) -> Result<Written> {
    let mut out = DurableFile::create(path)?;
    let mut hash = blake3::Hasher::new();
    let mut homed = vec![0u32; containers];
    let mut keys = 0u64;
    let mut sorted = true;
    let mut last: Option<[u8; 16]> = None;
    let mut page_bytes = Vec::with_capacity(PAGE * 16);
    source.for_each_index_page(PAGE, &mut |page| {
        page_bytes.clear();
        for (fp, c) in page {
            let Some(i) = position(*c) else { continue };
            if let Some(h) = homed.get_mut(i) {
                *h = h.saturating_add(1);
            }
            let k = fp.phf_key().0;
            if last.is_some_and(|l| l >= k) {
                sorted = false;
            }
            last = Some(k);
            page_bytes.extend_from_slice(&k);
            keys += 1;
        }
        hash.update(&page_bytes);
        out.write(&page_bytes)
    })?;
    let mut tail = Vec::with_capacity((FOOTER + TRAILER) as usize);
    tail.extend_from_slice(magic::KEYS);
    tail.extend_from_slice(&VERSION.to_le_bytes());
    tail.extend_from_slice(&u16::from(sorted).to_le_bytes());
    tail.extend_from_slice(&keys.to_le_bytes());
    hash.update(&tail);
    tail.extend_from_slice(hash.finalize().as_bytes());
    out.write(&tail)?;
    out.finish(false)?;
    Ok(Written { file: KeyFile { path: path.to_path_buf(), keys, sorted }, homed })
}

/// Whether every entry of a container's table is one of the index
/// entries the key file's scan counted for it (`homed`): true when the
/// table is exactly that long and lists no fingerprint twice. Copy and gc
/// then trust the table's entries as the index's without a lookup each.
pub(crate) fn every_entry_homed(homed: Option<u32>, entries: &[SegmentEntry]) -> bool {
    homed.is_some_and(|n| n as usize == entries.len()) && {
        let mut fps: Vec<&Fingerprint> = entries.iter().map(|e| &e.fingerprint).collect();
        fps.sort_unstable();
        fps.windows(2).all(|w| w[0] != w[1])
    }
}

/// An opened, checked key file.
pub(crate) struct KeyFile {
    path: PathBuf,
    /// Keys in the file.
    pub(crate) keys: u64,
    /// The keys are strictly ascending (the tier pages its index in key
    /// order), so a merge can walk them once.
    pub(crate) sorted: bool,
}

impl KeyFile {
    /// Opens the key file at `path`, reading it whole once to check its
    /// hash, and that it holds `expected` keys.
    pub(crate) fn open(path: &Path, expected: u64) -> Result<KeyFile> {
        let what = || format!("key file {}", path.display());
        let len = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
        if len < FOOTER + TRAILER || !(len - FOOTER - TRAILER).is_multiple_of(16) {
            return Err(Error::corrupt_record(what(), format!("{len} bytes is not a whole key file")));
        }
        let body = len - FOOTER - TRAILER;
        let mut r = BufReader::with_capacity(1 << 20, File::open(path).map_err(|e| Error::io(path, e))?);
        let mut hash = blake3::Hasher::new();
        let mut left = body;
        let mut buf = vec![0u8; 1 << 20];
        while left > 0 {
            let n = left.min(buf.len() as u64) as usize;
            r.read_exact(&mut buf[..n]).map_err(|e| Error::io(path, e))?;
            hash.update(&buf[..n]);
            left -= n as u64;
        }
        let mut tail = [0u8; (FOOTER + TRAILER) as usize];
        r.read_exact(&mut tail).map_err(|e| Error::io(path, e))?;
        hash.update(&tail[..FOOTER as usize]);
        if hash.finalize().as_bytes() != &tail[FOOTER as usize..] {
            return Err(Error::corrupt_record(what(), "checksum mismatch"));
        }
        if &tail[..4] != magic::KEYS {
            return Err(Error::corrupt_record(what(), "bad magic"));
        }
        let version = u16::from_le_bytes([tail[4], tail[5]]);
        if version != VERSION {
            return Err(Error::Format(FormatError::UnsupportedVersion {
                what: what(),
                found: version.into(),
                supported: VERSION.into(),
            }));
        }
        let sorted = u16::from_le_bytes([tail[6], tail[7]]) & 1 == 1;
        let mut count = [0u8; 8];
        count.copy_from_slice(&tail[8..16]);
        let keys = u64::from_le_bytes(count);
        if keys != body / 16 || keys != expected {
            return Err(Error::corrupt_record(
                what(),
                format!("{keys} keys in the header, {} in the body, {expected} expected", body / 16),
            ));
        }
        Ok(KeyFile { path: path.to_path_buf(), keys, sorted })
    }

    /// The directory the key file is in (where the compact PHF's build
    /// keeps its scratch files).
    pub(crate) fn dir(&self) -> &Path {
        self.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."))
    }

    /// A reader of the keys from the first, in order.
    pub(crate) fn reader(&self) -> Result<KeyReader> {
        let f = File::open(&self.path).map_err(|e| Error::io(&self.path, e))?;
        Ok(KeyReader { path: self.path.clone(), r: BufReader::with_capacity(1 << 20, f), left: self.keys })
    }
}

/// The keys of a [`KeyFile`], page by page.
pub(crate) struct KeyReader {
    path: PathBuf,
    r: BufReader<File>,
    left: u64,
}

impl KeyReader {
    /// Up to `n` next keys; empty at the end.
    pub(crate) fn page(&mut self, n: usize) -> Result<Vec<PhfKey>> {
        let n = (n as u64).min(self.left) as usize;
        let mut bytes = vec![0u8; n * 16];
        self.r.read_exact(&mut bytes).map_err(|e| Error::io(&self.path, e))?;
        self.left -= n as u64;
        Ok(bytes.chunks_exact(16).map(|c| PhfKey(<[u8; 16]>::try_from(c).expect("chunks_exact yields 16 bytes"))).collect())
    }
}

/// Walks an ascending key file once, answering membership for ascending
/// probes (equal probes may repeat).
pub(crate) fn merge(file: &KeyFile) -> Result<impl FnMut(&[u8; 16]) -> Result<bool>> {
    let mut reader = file.reader()?;
    let mut m = Merge::new(move || reader.page(PAGE));
    Ok(move |key: &[u8; 16]| Ok(m.seek(|k: &PhfKey| k.0 < *key)?.is_some_and(|k| k.0 == *key)))
}
