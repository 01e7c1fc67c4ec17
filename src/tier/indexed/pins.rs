//! Durable job holds: a job's claim on containers it still needs (its
//! snapshot on the source, what it writes on a target), kept in the tier
//! for as long as the job exists, suspended and crashed included, so that
//! space reclamation in another process never deletes them (the bug "gc
//! while a job is suspended": the resume failed forever with "container
//! ... is missing"). In-process pins (`Tier::pin`) still cover readers.
//!
//! A hold is one record in the `meta` column family, `pin/<job uuid>`,
//! written synced. The job releases it when it completes; `seed abandon`
//! removes the job, and reclamation then drops a hold whose state
//! directory no longer holds that job unfinished.

use std::path::PathBuf;

use rocksdb::WriteBatch;
use serde::{Deserialize, Serialize};

use super::{CF_META, IndexedTier, META_MAGIC, cf, synced};
use crate::error::{Error, Result};
use crate::format::durable::{decode_record, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::tier::JobHold;

/// Prefix of the hold records' keys.
const PIN: &str = "pin/";
/// Version of the hold record.
pub(crate) const PIN_VERSION: u16 = 1;

/// The persisted hold, version 1.
#[derive(Serialize, Deserialize)]
struct JobHoldV1 {
    /// The state directory's bytes (a path need not be UTF-8).
    state_dir: Vec<u8>,
    below: Option<u64>,
    from: Option<u64>,
}

fn key(job: &uuid::Uuid) -> Vec<u8> {
    format!("{PIN}{}", job.simple()).into_bytes()
}

impl IndexedTier {
    /// Records (or replaces) `hold`, synced. A read-only handle records
    /// nothing: reclamation cannot run while one is open.
    pub(crate) fn put_hold(&self, hold: &JobHold) -> Result<()> {
        if self.is_read_only() {
            return Ok(());
        }
        self.check_poison()?;
        use std::os::unix::ffi::OsStrExt;
        let rec = JobHoldV1 {
            state_dir: hold.state_dir.as_os_str().as_bytes().to_vec(),
            below: hold.below.map(|c| c.0),
            from: hold.from.map(|c| c.0),
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(cf(&self.db, CF_META), key(&hold.job_id), encode_record(META_MAGIC, PIN_VERSION, &rec));
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)
    }

    /// Drops job `job`'s hold, synced (nothing if it has none).
    pub(crate) fn drop_hold(&self, job: &uuid::Uuid) -> Result<()> {
        if self.is_read_only() {
            return Ok(());
        }
        self.check_poison()?;
        let mut batch = WriteBatch::default();
        batch.delete_cf(cf(&self.db, CF_META), key(job));
        let r = self.db.write_opt(batch, &synced()).map_err(|e| self.dberr(e));
        self.poison(r)
    }

    /// Every job's hold on this tier.
    pub fn job_holds(&self) -> Result<Vec<JobHold>> {
        use std::os::unix::ffi::OsStrExt;
        let mut out = Vec::new();
        for item in self.db.prefix_iterator_cf(cf(&self.db, CF_META), PIN.as_bytes()) {
            let (k, v) = item.map_err(|e| self.dberr(e))?;
            let Some(hex) = k.strip_prefix(PIN.as_bytes()) else { break };
            let what = || format!("job hold {} in {}", String::from_utf8_lossy(&k), self.db_path().display());
            let job_id = std::str::from_utf8(hex)
                .ok()
                .and_then(|h| uuid::Uuid::parse_str(h).ok())
                .ok_or_else(|| Error::corrupt_record(what(), "malformed key"))?;
            let rec: JobHoldV1 = decode_record(META_MAGIC, PIN_VERSION, &v, &what)?;
            out.push(JobHold {
                job_id,
                state_dir: PathBuf::from(std::ffi::OsStr::from_bytes(&rec.state_dir)),
                below: rec.below.map(ContainerId),
                from: rec.from.map(ContainerId),
            });
        }
        Ok(out)
    }
}

/// Whether `bytes` decode as a hold record (for the fuzzers: never panics).
#[cfg(feature = "test-util")]
pub(super) fn fuzz_decode(bytes: &[u8]) -> bool {
    decode_record::<JobHoldV1>(META_MAGIC, PIN_VERSION, bytes, &|| "fuzz input".to_string()).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The version 1 bytes of a hold, as this release writes them: a later
    /// release must still read them (the format is postcard inside the
    /// project's envelope, see docs/FORMAT.md).
    #[test]
    fn hold_record_v1_bytes_are_pinned() {
        let rec = JobHoldV1 { state_dir: b"/srv/jobs/nightly".to_vec(), below: Some(42), from: None };
        let bytes = encode_record(META_MAGIC, PIN_VERSION, &rec);
        let hex = bytes.iter().fold(String::new(), |mut acc, b| {
            use std::fmt::Write;
            let _ = write!(acc, "{b:02x}");
            acc
        });
        assert_eq!(hex, GOLDEN, "the version 1 hold record changed");
        let back: JobHoldV1 = decode_record(META_MAGIC, PIN_VERSION, &bytes, &|| "golden".into()).unwrap();
        assert_eq!((back.state_dir, back.below, back.from), (rec.state_dir, Some(42), None));
    }

    const GOLDEN: &str = "54534d540100000015000000112f7372762f6a6f62732f6e696768746c79012a00d48e7a78";
}
