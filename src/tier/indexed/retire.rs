//! Retirement: the tier durably stops counting as present a segment whose
//! bytes failed their fingerprint, or every segment of a container whose
//! table failed its checksum, so that the next job copies good bytes
//! instead of trusting rotten ones again.
//!
//! Retiring drops index entries (only those that still name the suspect
//! container: an entry that moved on is another copy's) in one synced
//! batch. A container whose table is rotten is also recorded as retired
//! (`retired/<id:016x>` in the `meta` column family), so that the scrub
//! and space reclamation know nothing may be read from it: the scrub
//! skips it and reclamation deletes it. Nothing is deleted here; the
//! bytes stay until reclamation, for an operator who wants to look.
//!
//! The tier re-reads every suspect itself, past any cache, before it
//! retires anything: a bit flipped on the way to a caller (a flaky link,
//! a fault-injecting wrapper) retires nothing.

use std::collections::{BTreeMap, BTreeSet};

use rocksdb::{IteratorMode, WriteBatch};

use super::{CF_INDEX, CF_META, IndexedTier, KEY_ALLOC, META_MAGIC, META_VERSION, cf, decode_container_id, lock, synced};
use crate::error::{Error, FormatError, Result, TierError};
use crate::format::durable::encode_record;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::Tier;

/// Prefix of the keys that name retired containers (`retired/<id:016x>`).
const RETIRED: &str = "retired/";

pub(crate) fn retired_key(id: ContainerId) -> Vec<u8> {
    format!("{RETIRED}{id}").into_bytes()
}

/// What one suspect container's re-read found.
enum Finding {
    /// Its table reads; these suspects' bytes fail their fingerprint (or
    /// the table does not list them): (fingerprint, stored, raw length).
    Segments(Vec<(Fingerprint, u64, u64)>),
    /// Its table fails its checks: nothing in it can be found.
    Table(String),
}

impl IndexedTier {
    /// Re-reads each suspect `(fingerprint, container)` from its container
    /// and durably retires those that are really bad: bytes that do not
    /// hash to the fingerprint, a table that does not list it, or a table
    /// that fails its checksum (then the whole container is retired and
    /// every index entry naming it dropped). An index entry that no longer
    /// names the suspect container is left alone. Returns how many index
    /// entries were dropped. Transient read errors are returned, never
    /// taken for rot.
    pub(crate) fn retire(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64> {
        self.writable()?;
        let mut by_container: BTreeMap<ContainerId, BTreeSet<Fingerprint>> = BTreeMap::new();
        for (fp, c) in suspects {
            by_container.entry(*c).or_default().insert(*fp);
        }
        let mut findings = Vec::new();
        for (c, fps) in by_container {
            if self.is_retired(c)? {
                // Retired whole already; any entry still naming it goes too.
                findings.push((c, Finding::Table("retired earlier".into())));
                continue;
            }
            findings.push((c, self.recheck(c, &fps)?));
        }
        self.apply(findings)
    }

    /// Writes what re-reads found, in one synced batch: the index entries
    /// that still name each bad copy, the counters without them, and the
    /// `retired/<id>` note of a container whose table is rotten.
    fn apply(&self, findings: Vec<(ContainerId, Finding)>) -> Result<u64> {
        // Index batches are written under the allocation lock: no container
        // is indexed between the lookups below and this batch.
        let mut alloc = lock(&self.alloc);
        let mut next = *alloc;
        let mut batch = WriteBatch::default();
        let index = cf(&self.db, CF_INDEX);
        let mut dropped = 0u64;
        for (c, finding) in findings {
            let gone: Vec<(Fingerprint, u64, u64)> = match finding {
                Finding::Segments(bad) => {
                    let fps: Vec<Fingerprint> = bad.iter().map(|b| b.0).collect();
                    let homes = self.locate(&fps)?;
                    bad.into_iter().zip(homes).filter(|(_, h)| *h == Some(c)).map(|(b, _)| b).collect()
                }
                Finding::Table(reason) => {
                    log::warn!("{}: container {c} is retired whole: {reason}", self.dir.display());
                    batch.put_cf(cf(&self.db, CF_META), retired_key(c), reason.as_bytes());
                    // Sizes are unknown without the table: the entries go,
                    // the byte counters keep them until reclamation.
                    self.entries_naming(c)?.into_iter().map(|fp| (fp, 0, 0)).collect()
                }
            };
            for (fp, stored, raw) in gone {
                log::warn!("{}: segment {fp} in container {c} is retired (its bytes cannot be trusted)", self.dir.display());
                batch.delete_cf(index, fp.0);
                next.segments = next.segments.saturating_sub(1);
                next.stored_bytes = next.stored_bytes.saturating_sub(stored);
                next.raw_bytes = next.raw_bytes.saturating_sub(raw);
                dropped += 1;
            }
            self.tables.forget(c);
        }
        if batch.is_empty() {
            return Ok(0);
        }
        batch.put_cf(cf(&self.db, CF_META), KEY_ALLOC, encode_record(META_MAGIC, META_VERSION, &next));
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)?;
        *alloc = next;
        Ok(dropped)
    }

    /// Re-reads suspects `fps` of container `c` straight from the store.
    fn recheck(&self, c: ContainerId, fps: &BTreeSet<Fingerprint>) -> Result<Finding> {
        let meta = match self.store.read_meta(c) {
            Ok(m) => m,
            Err(e) if e.is_rot() => return Ok(Finding::Table(e.to_string())),
            // Gone altogether: a writer re-points its entries when it
            // writes the segment again; nothing to retire here.
            Err(Error::Tier(TierError::MissingContainer { .. })) => return Ok(Finding::Segments(Vec::new())),
            Err(e) => return Err(e),
        };
        let listed: Vec<_> = meta.segments.iter().filter(|e| fps.contains(&e.fingerprint)).copied().collect();
        // A suspect the table does not list cannot be read from here.
        let mut bad: Vec<(Fingerprint, u64, u64)> =
            fps.iter().filter(|fp| !listed.iter().any(|e| e.fingerprint == **fp)).map(|fp| (*fp, 0, 0)).collect();
        // A fingerprint listed twice is bad only if no copy is good.
        let bytes = match self.store.read_segments(c, &listed) {
            Ok(b) if b.len() == listed.len() => b,
            Ok(b) => {
                return Err(Error::internal(format!(
                    "container {c}: the store returned {} segments for {} asked",
                    b.len(),
                    listed.len()
                )));
            }
            Err(e) if e.is_rot() => return Ok(Finding::Table(e.to_string())),
            Err(e) => return Err(e),
        };
        let mut good = BTreeSet::new();
        for (e, b) in listed.iter().zip(&bytes) {
            if crate::format::container::check_stored(e, b, c).is_ok() {
                good.insert(e.fingerprint);
            }
        }
        let mut seen = BTreeSet::new();
        for e in &listed {
            if !good.contains(&e.fingerprint) && seen.insert(e.fingerprint) {
                bad.push((e.fingerprint, u64::from(e.len), u64::from(e.raw_len)));
            }
        }
        Ok(Finding::Segments(bad))
    }

    /// Every fingerprint whose index entry names `c` (one pass over the
    /// index: only a container with a rotten table needs it).
    fn entries_naming(&self, c: ContainerId) -> Result<Vec<Fingerprint>> {
        let mut out = Vec::new();
        for item in self.db.iterator_cf(cf(&self.db, CF_INDEX), IteratorMode::Start) {
            let (k, v) = item.map_err(|e| self.dberr(e))?;
            if decode_container_id(&v) == Some(c)
                && let Some(fp) = Fingerprint::from_slice(&k)
            {
                out.push(fp);
            }
        }
        Ok(out)
    }

    /// Whether container `c` was retired whole.
    pub(crate) fn is_retired(&self, c: ContainerId) -> Result<bool> {
        Ok(self.db.get_cf(cf(&self.db, CF_META), retired_key(c)).map_err(|e| self.dberr(e))?.is_some())
    }

    /// Retires what a failed read of this tier's own found rotten (a
    /// segment that fails its fingerprint; a container whose table fails
    /// its checks), and logs (does not return) a failure to do so: the
    /// read's own error is what the caller reports. A read-only handle
    /// retires nothing.
    pub(crate) fn retire_after(&self, e: &Error) {
        if self.is_read_only() {
            return;
        }
        match e.root() {
            Error::Format(FormatError::CorruptSegment { container, fingerprint }) => {
                if let Err(r) = self.retire(&[(*fingerprint, *container)]) {
                    log::warn!("{}: could not retire what a read found rotten ({e}): {r}", self.dir.display());
                }
            }
            // Also said of a table that reads but lacks an entry: only a
            // table that fails its own checks retires the container.
            Error::Format(FormatError::CorruptContainer { id, .. }) if self.store.read_meta(*id).is_err_and(|e| e.is_rot()) => {
                self.retire_table(*id);
            }
            _ => {}
        }
    }

    /// Retires container `c` whole if its table fails its checks when
    /// read again (a read found it so); logs a failure to do so.
    pub(crate) fn retire_table(&self, c: ContainerId) {
        if self.is_read_only() {
            return;
        }
        let r = self.writable().and_then(|()| match self.store.read_meta(c) {
            Err(e) if e.is_rot() => self.apply(vec![(c, Finding::Table(e.to_string()))]),
            _ => Ok(0),
        });
        if let Err(r) = r {
            log::warn!("{}: could not retire rotten container {c}: {r}", self.dir.display());
        }
    }

    /// Refuses retirement on a read-only or poisoned handle.
    pub(super) fn writable(&self) -> Result<()> {
        if self.is_read_only() {
            return Err(Error::Tier(TierError::ReadOnly { path: self.dir.clone() }));
        }
        self.check_poison()
    }
}
