//! The resumption context: the only record of a job's progress.
//!
//! One RocksDB under the state directory. Every commit is one atomic,
//! synced `WriteBatch`. Every record is postcard inside the envelope of
//! `durable.rs` (magic, version, length, CRC-32).

use std::fs::File;
use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};

use super::codes::mode_code;
use super::{Report, TargetFailure};
use crate::error::{Error, JobError, Result, TierError};
use crate::format::durable::{Versioned, decode_record, decode_versioned, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{JOB_CONTEXT, JOB_CONTEXT_CREATING, JOB_LOCK, is_phf_file, is_scratch};
use crate::format::magic;
use crate::format::records::{Entries, FileEntryV1, FileEntryV2, decode_entries};
use crate::mark::phv::Phv;
use crate::tier::FileEntry;

mod records;

pub(crate) use records::{
    GateRecord, JobRecord, LaneProgress, MarkSumRecord, OptionsRecord, PhfRef, ProgressRecord, TargetRecord, target_side,
};
use records::{JobV1, LaneV1, ProgressV1, ProgressV2, ReportV1, ReportV2, TargetsV1, Upgrade};

/// Version of the job, snapshot, PHF, mark-sum and target records.
pub(crate) const CTX_VERSION: u16 = 1;
/// Version of the file chunks: 2 holds namespace entries at version 2
/// (kind, mode, owner, mtime's nanoseconds). Version 1 chunks, of jobs
/// suspended by an older build, are still read.
pub(crate) const FILES_VERSION: u16 = 2;
/// Version of the progress and report records: 2 added `files_kept` and
/// `segments_adopted` to the counters. Version 1 records are still read.
pub(crate) const PROGRESS_VERSION: u16 = 2;
const K_JOB: &[u8] = b"job";
const K_PROGRESS: &[u8] = b"progress";
const K_SNAPSHOT: &[u8] = b"snapshot";
const K_PHF: &[u8] = b"phf";
const K_REPORT: &[u8] = b"report";
const K_MARK_SUM: &[u8] = b"marksum";
const K_TARGET: &[u8] = b"target";
const K_OPTIONS: &[u8] = b"options";
const K_ORIGIN: &[u8] = b"origin";
/// The job's bandwidth limit as given (a `LimitSchedule`'s text), so a
/// resume without one keeps it and `seed status` shows it.
const K_LIMIT: &[u8] = b"limit";
/// The PHF kind's code, written only for a kind other than boomphf (a
/// context without it, every earlier one included, is a boomphf job).
const K_PHF_KIND: &[u8] = b"phfkind";
/// Per snapshot container, the source index entries that point to it
/// (written by BuildPhf since the key file; absent in older jobs).
const K_HOMED: &[u8] = b"homed";
const K_GATE: &str = "gate/";
/// The targets after the first and the failure policy, written only for a
/// job with more than one target or the `drop` policy (absent: one target,
/// `fail`).
const K_TARGETS: &[u8] = b"targets";
/// The targets dropped by the `drop` policy, with why.
const K_DROPPED: &[u8] = b"dropped";
/// Per-target records of targets after the first live under this prefix:
/// `lane/<i>` (progress) and `lane/<i>/phv/<chunk>` (PHV words). The first
/// target's live where a single-target job keeps them.
const K_LANE: &str = "lane/";
/// Selected files are stored in chunks of this many entries.
pub(crate) const FILES_PER_CHUNK: usize = 1024;

/// One open context with its lock.
pub(crate) struct Context {
    dir: PathBuf,
    db: DB,
    _lock: File,
    poisoned: Option<String>,
}

/// A batch of changes that commits atomically.
#[derive(Default)]
pub(crate) struct Commit {
    batch: WriteBatch,
}

impl Commit {
    /// The progress record and every target's share of it, in one batch.
    pub(crate) fn progress(&mut self, p: &ProgressRecord) -> &mut Self {
        self.batch.put(K_PROGRESS, encode_record(magic::CONTEXT, PROGRESS_VERSION, &ProgressV2::from(p)));
        if let Some(floor) = p.lanes.first().and_then(|l| l.floor) {
            self.target(&TargetRecord { floor });
        }
        for (i, lane) in p.lanes.iter().enumerate().skip(1) {
            let v1 =
                LaneV1 { floor: lane.floor.unwrap_or(0), switch_cursor: lane.switch_cursor, counters: (&lane.counters).into() };
            self.batch.put(format!("{K_LANE}{i}"), encode_record(magic::CONTEXT, CTX_VERSION, &v1));
        }
        let dropped: Vec<(u32, String)> =
            p.lanes.iter().enumerate().filter_map(|(i, l)| l.dropped.clone().map(|d| (i as u32, d))).collect();
        if !dropped.is_empty() {
            self.batch.put(K_DROPPED, encode_record(magic::CONTEXT, CTX_VERSION, &dropped));
        }
        self
    }
    /// The job's bandwidth limit, as the text of its schedule.
    pub(crate) fn limit(&mut self, schedule: &str) -> &mut Self {
        self.batch.put(K_LIMIT, encode_record(magic::CONTEXT, CTX_VERSION, &schedule.to_string()));
        self
    }
    pub(crate) fn mark_sum(&mut self, m: &MarkSumRecord) -> &mut Self {
        self.batch.put(K_MARK_SUM, encode_record(magic::CONTEXT, CTX_VERSION, m));
        self
    }
    pub(crate) fn gate(&mut self, stage: &str, g: &GateRecord) -> &mut Self {
        self.batch.put(format!("{K_GATE}{stage}"), encode_record(magic::CONTEXT, CTX_VERSION, g));
        self
    }
    pub(crate) fn target(&mut self, t: &TargetRecord) -> &mut Self {
        self.batch.put(K_TARGET, encode_record(magic::CONTEXT, CTX_VERSION, t));
        self
    }
    pub(crate) fn job(&mut self, j: &JobRecord) -> &mut Self {
        self.batch.put(K_JOB, encode_record(magic::CONTEXT, CTX_VERSION, &JobV1::from(j)));
        if j.phf != crate::mark::phf::PhfKind::Boomphf {
            self.batch.put(K_PHF_KIND, encode_record(magic::CONTEXT, CTX_VERSION, &j.phf.code()));
        }
        if !j.more_targets.is_empty() || j.on_failure != TargetFailure::Fail {
            let t = TargetsV1 { more: j.more_targets.clone(), policy: j.on_failure.code() };
            self.batch.put(K_TARGETS, encode_record(magic::CONTEXT, CTX_VERSION, &t));
        }
        self
    }
    pub(crate) fn snapshot(&mut self, s: &[ContainerId]) -> &mut Self {
        let raw: Vec<u64> = s.iter().map(|c| c.0).collect();
        self.batch.put(K_SNAPSHOT, encode_record(magic::CONTEXT, CTX_VERSION, &raw));
        self
    }
    /// For each snapshot container, how many source index entries point
    /// to it (BuildPhf counts them; Copy trusts a container whose table is
    /// exactly that long and lists no fingerprint twice).
    pub(crate) fn homed(&mut self, counts: &[u32]) -> &mut Self {
        self.batch.put(K_HOMED, encode_record(magic::CONTEXT, CTX_VERSION, &counts.to_vec()));
        self
    }
    pub(crate) fn phf(&mut self, r: &PhfRef) -> &mut Self {
        self.batch.put(K_PHF, encode_record(magic::CONTEXT, CTX_VERSION, r));
        self
    }
    /// The changed words of target `lane`'s PHV.
    pub(crate) fn phv(&mut self, lane: usize, phv: &mut Phv) -> &mut Self {
        for (i, bytes) in phv.take_dirty() {
            self.batch.put(phv_key(lane, i), bytes);
        }
        self
    }
    pub(crate) fn report(&mut self, r: &Report) -> &mut Self {
        let v2 =
            ReportV2 { job_id: r.job_id.clone(), mode: mode_code(r.mode), counters: (&r.counters).into(), resumes: r.resumes };
        self.batch.put(K_REPORT, encode_record(magic::CONTEXT, PROGRESS_VERSION, &v2));
        self
    }
}

/// Decodes `bytes` as each context record type; returns how many accepted
/// them. For the fuzzers: it must never panic, whatever the bytes.
#[cfg(feature = "test-util")]
pub(crate) fn fuzz_decode(bytes: &[u8]) -> usize {
    let what = || "fuzz input".to_string();
    [
        decode_record::<JobV1>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<ProgressV1>(magic::CONTEXT, 1, bytes, &what).is_ok(),
        decode_record::<ProgressV2>(magic::CONTEXT, PROGRESS_VERSION, bytes, &what).is_ok(),
        decode_record::<MarkSumRecord>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<TargetRecord>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<TargetsV1>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<LaneV1>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<(u32, String)>>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<OptionsRecord>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<GateRecord>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<PhfRef>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<u64>>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<u32>>(magic::CONTEXT, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<FileEntryV1>>(magic::CONTEXT, 1, bytes, &what).is_ok(),
        decode_record::<Vec<FileEntryV2>>(magic::CONTEXT, FILES_VERSION, bytes, &what).is_ok(),
        decode_record::<ReportV1>(magic::CONTEXT, 1, bytes, &what).is_ok(),
        decode_record::<ReportV2>(magic::CONTEXT, PROGRESS_VERSION, bytes, &what).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// A context that RocksDB refuses to open is a damaged job (anything but
/// a lock, which says a job is running).
fn damaged(dir: &Path, e: Error) -> Error {
    match e {
        Error::Tier(TierError::Db { message, .. }) if !message.contains("lock") => {
            Error::Job(JobError::DamagedJob { state_dir: dir.to_path_buf(), reason: message })
        }
        e => e,
    }
}

fn files_key(i: u64) -> Vec<u8> {
    format!("files/{i:010}").into_bytes()
}

/// The PHV chunks' key prefix of target `lane` (the first target's is
/// the single-target job's `phv/`).
fn phv_prefix(lane: usize) -> String {
    if lane == 0 { "phv/".to_string() } else { format!("{K_LANE}{lane}/phv/") }
}

fn phv_key(lane: usize, i: usize) -> Vec<u8> {
    format!("{}{i:010}", phv_prefix(lane)).into_bytes()
}

impl Context {
    /// Opens the existing context in `dir`, taking its lock: a second run
    /// or resume on the same state fails clearly. `ctx/` exists only once a
    /// job record is in it (see [`Context::create`]).
    pub(crate) fn open(dir: &Path) -> Result<Context> {
        if !dir.join(JOB_CONTEXT).is_dir() {
            return Err(Error::Job(JobError::NoJob { state_dir: dir.to_path_buf() }));
        }
        let lock = Self::lock(dir)?;
        let db = Self::open_db(&dir.join(JOB_CONTEXT), false).map_err(|e| damaged(dir, e))?;
        Ok(Context { dir: dir.to_path_buf(), db, _lock: lock, poisoned: None })
    }

    /// Removes the job's state in `dir` under its lock, whether or not its
    /// context still opens (a damaged job must always be removable): the
    /// context, a half-created one, the PHF blobs, then the lock file,
    /// which goes last so that no `resume` starts in between (the bug
    /// "abandon drops the job lock before deleting the state").
    pub(crate) fn remove(dir: &Path) -> Result<()> {
        let ctx = dir.join(JOB_CONTEXT);
        let creating = dir.join(JOB_CONTEXT_CREATING);
        if !ctx.exists() && !creating.exists() {
            return Err(Error::Job(JobError::NoJob { state_dir: dir.to_path_buf() }));
        }
        let lock = Self::lock(dir)?;
        for d in [&ctx, &creating] {
            if d.exists() {
                std::fs::remove_dir_all(d).map_err(|e| Error::io(d, e))?;
            }
        }
        crate::format::durable::sync_dir(dir)?;
        for entry in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let p = entry.path();
            if is_phf_file(&name) || name == JOB_LOCK {
                std::fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
            } else if is_scratch(&name) {
                let r = if p.is_dir() { std::fs::remove_dir_all(&p) } else { std::fs::remove_file(&p) };
                r.map_err(|e| Error::io(&p, e))?;
            }
        }
        crate::format::durable::sync_dir(dir)?;
        drop(lock);
        Ok(())
    }

    /// Creates the context for a new job, atomically: the database is built
    /// in `ctx.creating` with the job and progress records committed, then
    /// renamed to `ctx`. A crash leaves no job or a whole one.
    pub(crate) fn create(
        dir: &Path,
        job: &JobRecord,
        progress: &ProgressRecord,
        options: &OptionsRecord,
        origin: Option<&str>,
        limit: Option<&str>,
    ) -> Result<Context> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = Self::lock(dir)?;
        let ctx = dir.join(JOB_CONTEXT);
        if ctx.is_dir() {
            let db = Self::open_db(&ctx, false).map_err(|e| damaged(dir, e))?;
            let existing = Context { dir: dir.to_path_buf(), db, _lock: lock, poisoned: None };
            let phase =
                existing.reader().progress().ok().and_then(|p| p.phase_done).map_or("none".to_string(), |p| p.to_string());
            return Err(Error::Job(JobError::JobExists { state_dir: dir.to_path_buf(), phase }));
        }
        crate::format::durable::create_dir_atomically(&ctx, &dir.join(JOB_CONTEXT_CREATING), |tmp| {
            let db = Self::open_db(tmp, true)?;
            let mut c = Commit::default();
            c.job(job).progress(progress);
            c.batch.put(K_OPTIONS, encode_record(magic::CONTEXT, CTX_VERSION, options));
            if let Some(o) = origin {
                c.batch.put(K_ORIGIN, encode_record(magic::CONTEXT, CTX_VERSION, &o.to_string()));
            }
            if let Some(l) = limit {
                c.limit(l);
            }
            let mut wo = WriteOptions::default();
            wo.set_sync(true);
            db.write_opt(c.batch, &wo).map_err(|e| Error::db(tmp, e))
        })?;
        let db = Self::open_db(&ctx, false)?;
        Ok(Context { dir: dir.to_path_buf(), db, _lock: lock, poisoned: None })
    }

    fn lock(dir: &Path) -> Result<File> {
        crate::format::durable::take_lock(
            &dir.join(JOB_LOCK),
            "job state",
            "job in progress: another seed run/resume is using this state directory",
        )
    }

    fn open_db(path: &Path, create: bool) -> Result<DB> {
        let mut opts = Options::default();
        opts.create_if_missing(create);
        opts.set_max_background_jobs(2);
        // The context's writes are small (progress, PHV chunks: 12 MiB at
        // 100M keys, written once by Mark); RocksDB's default of 64 MiB
        // per memtable only added to a job's peak memory.
        opts.set_db_write_buffer_size(16 << 20);
        // A log cut short, or a synced one gone, is an error at open, never
        // a context that silently lost its last commits (the bug "a deleted
        // WAL makes resume restart from Select").
        opts.set_wal_recovery_mode(rocksdb::DBRecoveryMode::AbsoluteConsistency);
        opts.set_track_and_verify_wals_in_manifest(true);
        DB::open(&opts, path).map_err(|e| Error::db(path, e))
    }

    /// Opens the context read-only, without the lock, for `status`.
    pub(crate) fn read_only(dir: &Path) -> Result<DbReader> {
        let path = dir.join(JOB_CONTEXT);
        if !path.is_dir() {
            return Err(Error::Job(JobError::NoJob { state_dir: dir.to_path_buf() }));
        }
        let db = DB::open_for_read_only(&Options::default(), &path, false).map_err(|e| damaged(dir, Error::db(&path, e)))?;
        Ok(DbReader { dir: dir.to_path_buf(), db })
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Commits atomically and durably. After a failure the context is
    /// poisoned: the state on disk is unknown, so nothing more is written
    /// through this handle.
    pub(crate) fn commit(&mut self, c: Commit) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Tier(TierError::Poisoned { what: format!("job {}", self.dir.display()), cause: cause.clone() }));
        }
        let mut wo = WriteOptions::default();
        wo.set_sync(true);
        crate::testing::crashpoint::hit("phase.before_commit");
        if let Err(e) = self.db.write_opt(c.batch, &wo) {
            let err = Error::db(self.dir.join(JOB_CONTEXT), e);
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        crate::testing::crashpoint::step("commit", "context");
        Ok(())
    }

    /// Writes chunk `i` of the selected files ahead of Select's commit,
    /// unsynced: the synced commit that records Select as done follows it
    /// in the same log, so it is durable with that commit; a crash before
    /// the commit redoes Select, which writes every chunk again (a stale
    /// chunk past the new count is never read: readers go by the count).
    pub(crate) fn put_file_chunk(&mut self, i: u64, files: &[FileEntry]) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Tier(TierError::Poisoned { what: format!("job {}", self.dir.display()), cause: cause.clone() }));
        }
        let records: Vec<FileEntryV2> = files.iter().map(FileEntryV2::from).collect();
        self.db.put(files_key(i), encode_record(magic::CONTEXT, FILES_VERSION, &records)).map_err(|e| {
            let err = Error::db(self.dir.join(JOB_CONTEXT), e);
            self.poisoned = Some(err.to_string());
            err
        })
    }

    /// Commits `c`, which records a phase as done, then flushes the
    /// context's memtable to its tables: a phase boundary never lives in
    /// the log alone, so a log lost or cut short behind the job's back can
    /// cost at most the commits since the last phase, never a phase (the
    /// bug "a deleted WAL makes resume restart from Select": the whole
    /// job's progress was in the log).
    pub(crate) fn commit_phase(&mut self, c: Commit) -> Result<()> {
        self.commit(c)?;
        if let Err(e) = self.db.flush() {
            let err = Error::db(self.dir.join(JOB_CONTEXT), e);
            self.poisoned = Some(err.to_string());
            return Err(err);
        }
        Ok(())
    }

    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader { dir: &self.dir, db: &self.db }
    }
}

/// A read-only context opened for status.
pub(crate) struct DbReader {
    dir: PathBuf,
    db: DB,
}

impl DbReader {
    pub(crate) fn reader(&self) -> Reader<'_> {
        Reader { dir: &self.dir, db: &self.db }
    }
}

/// The selected files as the context holds them, chunk by chunk: the
/// windows a walk starts from, and names by index (read back on demand),
/// so that no phase holds the whole selection.
pub(crate) struct SelectedFiles<'a> {
    reader: Reader<'a>,
    chunks: u64,
    next: u64,
}

/// Chunks read per window: 64K files.
const WINDOW_CHUNKS: u64 = 64;

impl<'a> SelectedFiles<'a> {
    pub(crate) fn new(reader: Reader<'a>, files_selected: u64) -> Self {
        SelectedFiles { reader, chunks: files_selected.div_ceil(FILES_PER_CHUNK as u64), next: 0 }
    }

    /// The same files from the first window again (each walk reads
    /// them anew).
    pub(crate) fn again(&self) -> Self {
        SelectedFiles { reader: self.reader, chunks: self.chunks, next: 0 }
    }
}

impl crate::mark::walk::FileWindows for SelectedFiles<'_> {
    fn next_window(&mut self) -> Result<Option<(u64, Vec<FileEntry>)>> {
        if self.next >= self.chunks {
            return Ok(None);
        }
        let first = self.next * FILES_PER_CHUNK as u64;
        let mut files = Vec::new();
        while self.next < self.chunks && files.len() < (WINDOW_CHUNKS as usize) * FILES_PER_CHUNK {
            files.extend(self.reader.file_chunk(self.next)?);
            self.next += 1;
        }
        Ok(Some((first, files)))
    }
}

impl crate::mark::walk::FileNames for SelectedFiles<'_> {
    fn name(&self, index: u64) -> String {
        let chunk = index / FILES_PER_CHUNK as u64;
        match self.reader.file_chunk(chunk) {
            Ok(files) => files.get((index % FILES_PER_CHUNK as u64) as usize).map(|f| f.path.clone()),
            Err(_) => None,
        }
        .unwrap_or_else(|| format!("(selected file #{index})"))
    }
}

/// Typed reads of context records.
#[derive(Clone, Copy)]
pub(crate) struct Reader<'a> {
    dir: &'a Path,
    db: &'a DB,
}

impl Reader<'_> {
    fn get<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<Option<T>> {
        let path = self.dir.join(JOB_CONTEXT);
        match self.db.get(key).map_err(|e| Error::db(&path, e))? {
            None => Ok(None),
            Some(v) => decode_record(magic::CONTEXT, CTX_VERSION, &v, &|| {
                format!("context record {:?} in {}", String::from_utf8_lossy(key), path.display())
            })
            .map(Some),
        }
    }

    /// Reads a record written at version 2 (or, from older jobs, 1), and
    /// converts it to its in-memory type.
    fn get_v2<T, V1, V2>(&self, key: &[u8]) -> Result<Option<T>>
    where
        V1: serde::de::DeserializeOwned + Upgrade<T>,
        V2: serde::de::DeserializeOwned + Upgrade<T>,
    {
        let path = self.dir.join(JOB_CONTEXT);
        let Some(v) = self.db.get(key).map_err(|e| Error::db(&path, e))? else { return Ok(None) };
        let what = || format!("context record {:?} in {}", String::from_utf8_lossy(key), path.display());
        match decode_versioned::<V2, V1>(magic::CONTEXT, PROGRESS_VERSION, &v, &what)? {
            Versioned::Current(r) => r.upgrade(&what).map(Some),
            Versioned::V1(r) => r.upgrade(&what).map(Some),
        }
    }

    fn what(&self, key: &[u8]) -> String {
        format!("context record {:?} in {}", String::from_utf8_lossy(key), self.dir.join(JOB_CONTEXT).display())
    }

    fn need<T: serde::de::DeserializeOwned>(&self, key: &[u8]) -> Result<T> {
        self.get(key)?.ok_or_else(|| self.missing(key))
    }

    fn missing(&self, key: &[u8]) -> Error {
        Error::corrupt_record(
            format!("context in {}", self.dir.display()),
            format!("record {:?} is missing", String::from_utf8_lossy(key)),
        )
    }

    pub(crate) fn job(&self) -> Result<Option<JobRecord>> {
        let Some(mut job) = self.get::<JobV1>(K_JOB)?.map(|j| j.into_record(&|| self.what(K_JOB))).transpose()? else {
            return Ok(None);
        };
        if let Some(code) = self.get::<u8>(K_PHF_KIND)? {
            job.phf = crate::mark::phf::PhfKind::from_code(code)
                .ok_or_else(|| Error::corrupt_record(self.what(K_PHF_KIND), format!("unknown PHF kind {code}")))?;
        }
        if let Some(t) = self.get::<TargetsV1>(K_TARGETS)? {
            job.on_failure = TargetFailure::from_code(t.policy)
                .ok_or_else(|| Error::corrupt_record(self.what(K_TARGETS), format!("unknown failure policy {}", t.policy)))?;
            job.more_targets = t.more;
        }
        Ok(Some(job))
    }

    /// The progress with every target's share: the first target's from
    /// the progress and target records, the others' from their lane
    /// records (a missing one is corruption).
    pub(crate) fn progress(&self) -> Result<ProgressRecord> {
        let mut p = self.get_v2::<ProgressRecord, ProgressV1, ProgressV2>(K_PROGRESS)?.ok_or_else(|| self.missing(K_PROGRESS))?;
        if let Some(first) = p.lanes.first_mut() {
            first.floor = self.target()?.map(|t| t.floor);
        }
        let more = self.get::<TargetsV1>(K_TARGETS)?.map_or(0, |t| t.more.len());
        for i in 1..=more {
            let key = format!("{K_LANE}{i}");
            let l: LaneV1 = self.need(key.as_bytes())?;
            p.lanes.push(LaneProgress {
                floor: Some(l.floor),
                switch_cursor: l.switch_cursor,
                counters: target_side(&l.counters.into()),
                dropped: None,
            });
        }
        for (i, why) in self.get::<Vec<(u32, String)>>(K_DROPPED)?.unwrap_or_default() {
            let lanes = p.lanes.len();
            let lane = p.lanes.get_mut(i as usize).ok_or_else(|| {
                Error::corrupt_record(self.what(K_DROPPED), format!("target #{i} dropped, the job has {lanes}"))
            })?;
            lane.dropped = Some(why);
        }
        Ok(p)
    }
    pub(crate) fn mark_sum(&self) -> Result<Option<MarkSumRecord>> {
        self.get(K_MARK_SUM)
    }
    pub(crate) fn gate(&self, stage: &str) -> Result<Option<GateRecord>> {
        self.get(format!("{K_GATE}{stage}").as_bytes())
    }
    pub(crate) fn origin(&self) -> Result<Option<String>> {
        self.get(K_ORIGIN)
    }
    pub(crate) fn limit(&self) -> Result<Option<String>> {
        self.get(K_LIMIT)
    }
    pub(crate) fn options(&self) -> Result<Option<OptionsRecord>> {
        self.get(K_OPTIONS)
    }
    pub(crate) fn target(&self) -> Result<Option<TargetRecord>> {
        self.get(K_TARGET)
    }
    pub(crate) fn snapshot(&self) -> Result<Vec<ContainerId>> {
        Ok(self.need::<Vec<u64>>(K_SNAPSHOT)?.into_iter().map(ContainerId).collect())
    }
    pub(crate) fn phf(&self) -> Result<PhfRef> {
        self.need(K_PHF)
    }
    /// The homed counts BuildPhf recorded; `None` in a job whose BuildPhf
    /// ran before they were recorded.
    pub(crate) fn homed(&self) -> Result<Option<Vec<u32>>> {
        self.get(K_HOMED)
    }
    /// The final report, with each target's share from the progress
    /// (which is final once the report is written).
    pub(crate) fn report(&self) -> Result<Option<Report>> {
        let Some(mut r) = self.get_v2::<Report, ReportV1, ReportV2>(K_REPORT)? else { return Ok(None) };
        let job = self.job()?.ok_or_else(|| self.missing(K_JOB))?;
        r.targets = super::targets_report(&job, &self.progress()?);
        Ok(Some(r))
    }
    pub(crate) fn file_chunk(&self, i: u64) -> Result<Vec<FileEntry>> {
        let key = files_key(i);
        let path = self.dir.join(JOB_CONTEXT);
        let bytes = self.db.get(&key).map_err(|e| Error::db(&path, e))?.ok_or_else(|| self.missing(&key))?;
        let Entries(files) =
            decode_entries::<Entries, Vec<FileEntryV2>, Vec<FileEntryV1>>(magic::CONTEXT, FILES_VERSION, &bytes, &|| {
                self.what(&key)
            })?;
        Ok(files)
    }

    /// Loads every PHV chunk of target `lane` into `phv`; a missing chunk
    /// is corruption.
    pub(crate) fn load_phv(&self, lane: usize, phv: &mut Phv) -> Result<()> {
        let path = self.dir.join(JOB_CONTEXT);
        let mut seen = 0usize;
        let prefix = phv_prefix(lane);
        for item in self.db.iterator(IteratorMode::From(prefix.as_bytes(), rocksdb::Direction::Forward)) {
            let (k, v) = item.map_err(|e| Error::db(&path, e))?;
            let Some(idx) = k.strip_prefix(prefix.as_bytes()) else { break };
            let i: usize = std::str::from_utf8(idx)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| Error::corrupt_record(format!("context in {}", self.dir.display()), "malformed PHV chunk key"))?;
            phv.load_chunk(i, &v)?;
            seen += 1;
        }
        if seen != phv.chunk_count() {
            return Err(Error::corrupt_record(
                format!("PHV in {}", path.display()),
                format!("{seen} chunks present, {} expected", phv.chunk_count()),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
