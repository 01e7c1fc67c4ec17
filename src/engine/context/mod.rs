//! The resumption context: the only record of a job's progress.
//!
//! One RocksDB under the state directory. Every commit is one atomic,
//! synced `WriteBatch`. Every record is postcard inside the envelope of
//! `durable.rs` (magic, version, length, CRC-32).

use std::fs::File;
use std::path::{Path, PathBuf};

use rocksdb::{DB, IteratorMode, Options, WriteBatch, WriteOptions};
use serde::{Deserialize, Serialize};

use super::codes::{mode_code, mode_from_code, phase_code, phase_from_code};
use super::{Counters, Mode, Phase, Report, TargetFailure};
use crate::engine::selection::Selection;
use crate::error::{Error, Result};
use crate::format::durable::{Versioned, decode_record, decode_versioned, encode_record};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{JOB_CONTEXT, JOB_CONTEXT_CREATING, JOB_LOCK, is_phf_file, is_scratch};
use crate::format::records::{FileEntryV1, SelectionV1};
use crate::mark::phv::Phv;
use crate::tier::FileEntry;

const CTX_MAGIC: &[u8; 4] = b"TSCX";
/// Version of the job, snapshot, PHF, file-chunk, mark-sum and target records.
const CTX_VERSION: u16 = 1;
/// Version of the progress and report records: 2 added `files_kept` and
/// `segments_adopted` to the counters. Version 1 records are still read.
const PROGRESS_VERSION: u16 = 2;
const K_JOB: &[u8] = b"job";
const K_PROGRESS: &[u8] = b"progress";
const K_SNAPSHOT: &[u8] = b"snapshot";
const K_PHF: &[u8] = b"phf";
const K_REPORT: &[u8] = b"report";
const K_MARK_SUM: &[u8] = b"marksum";
const K_TARGET: &[u8] = b"target";
const K_OPTIONS: &[u8] = b"options";
const K_ORIGIN: &[u8] = b"origin";
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

/// Written once when the job is created (in memory; on disk: [`JobV1`]).
#[derive(Clone, Debug)]
pub(crate) struct JobRecord {
    pub(crate) job_id: [u8; 16],
    pub(crate) source: [u8; 16],
    pub(crate) target: [u8; 16],
    pub(crate) selection: Selection,
    pub(crate) mode: Mode,
    pub(crate) gamma: f64,
    /// Which PHF the job builds (persisted apart from [`JobV1`], under
    /// `phfkind`, so version 1 job records stay as they were).
    pub(crate) phf: crate::mark::phf::PhfKind,
    /// Reference time for `older_than`, fixed at creation so that a
    /// re-run of Select selects the same files.
    pub(crate) created: i64,
    /// Targets after `target`, in lane order (persisted under `targets`).
    pub(crate) more_targets: Vec<[u8; 16]>,
    /// What a failing target does to the job (persisted under `targets`).
    pub(crate) on_failure: TargetFailure,
}

impl JobRecord {
    /// Every target's id, in lane order.
    pub(crate) fn target_ids(&self) -> Vec<[u8; 16]> {
        std::iter::once(self.target).chain(self.more_targets.iter().copied()).collect()
    }
}

/// The targets record, version 1.
#[derive(Serialize, Deserialize)]
struct TargetsV1 {
    more: Vec<[u8; 16]>,
    /// 0: fail, 1: drop.
    policy: u8,
}

/// One target's progress after the first, version 1.
#[derive(Serialize, Deserialize)]
struct LaneV1 {
    floor: u64,
    switch_cursor: u64,
    counters: CountersV2,
}

/// The job record as persisted, version 1.
#[derive(Serialize, Deserialize)]
struct JobV1 {
    job_id: [u8; 16],
    source: [u8; 16],
    target: [u8; 16],
    selection: SelectionV1,
    mode: u8,
    gamma: f64,
    created: i64,
}

impl From<&JobRecord> for JobV1 {
    fn from(j: &JobRecord) -> Self {
        JobV1 {
            job_id: j.job_id,
            source: j.source,
            target: j.target,
            selection: (&j.selection).into(),
            mode: mode_code(j.mode),
            gamma: j.gamma,
            created: j.created,
        }
    }
}

impl JobV1 {
    fn into_record(self, what: &dyn Fn() -> String) -> Result<JobRecord> {
        Ok(JobRecord {
            job_id: self.job_id,
            source: self.source,
            target: self.target,
            selection: self.selection.into(),
            mode: mode_from_code(self.mode, what)?,
            gamma: self.gamma,
            phf: crate::mark::phf::PhfKind::Boomphf,
            created: self.created,
            more_targets: Vec::new(),
            on_failure: TargetFailure::Fail,
        })
    }
}

/// Rewritten by every commit (in memory; on disk: [`ProgressV2`] with the
/// first target's share folded in, [`LaneV1`] for each further target, and
/// the dropped list).
#[derive(Clone, Debug)]
pub(crate) struct ProgressRecord {
    pub(crate) phase_done: Option<Phase>,
    /// Snapshot index to resume Copy from: the least of every live
    /// target's.
    pub(crate) copy_cursor: u64,
    /// File chunks removed from the source namespace (move mode).
    pub(crate) remove_cursor: u64,
    /// The job-wide counters; the target-side fields live in `lanes`.
    pub(crate) counters: Counters,
    pub(crate) resumes: u64,
    /// One per target, in lane order (never empty).
    pub(crate) lanes: Vec<LaneProgress>,
}

impl ProgressRecord {
    /// A new job's progress with `targets` lanes.
    pub(crate) fn new(targets: usize) -> ProgressRecord {
        ProgressRecord {
            phase_done: None,
            copy_cursor: 0,
            remove_cursor: 0,
            counters: Counters::default(),
            resumes: 0,
            lanes: vec![LaneProgress::default(); targets.max(1)],
        }
    }

    /// The job's counters with every target's share summed in.
    pub(crate) fn total(&self) -> Counters {
        self.lanes.iter().fold(self.counters, |acc, l| add_target_side(acc, &l.counters))
    }

    /// The lanes still in the job.
    pub(crate) fn live(&self) -> impl Iterator<Item = usize> + '_ {
        self.lanes.iter().enumerate().filter(|(_, l)| l.dropped.is_none()).map(|(i, _)| i)
    }
}

/// One target's share of a job's progress.
#[derive(Clone, Debug, Default)]
pub(crate) struct LaneProgress {
    /// Target containers with an id at or past this were written after
    /// Select (by this job, in a run that crashed before committing them).
    /// `None` for a job from before floors were recorded.
    pub(crate) floor: Option<u64>,
    /// File chunks upserted into this target's namespace.
    pub(crate) switch_cursor: u64,
    /// The target-side counters only (see [`target_side`]).
    pub(crate) counters: Counters,
    /// Why the `drop` policy took this target out of the job.
    pub(crate) dropped: Option<String>,
}

/// `c` with only the fields that count one target's work kept.
pub(crate) fn target_side(c: &Counters) -> Counters {
    Counters {
        segments_copied: c.segments_copied,
        bytes_copied: c.bytes_copied,
        segments_deduplicated: c.segments_deduplicated,
        bytes_deduplicated: c.bytes_deduplicated,
        target_containers: c.target_containers,
        files_switched: c.files_switched,
        segments_adopted: c.segments_adopted,
        ..Counters::default()
    }
}

/// `acc` plus the target-side fields of `lane`.
fn add_target_side(mut acc: Counters, lane: &Counters) -> Counters {
    acc.segments_copied += lane.segments_copied;
    acc.bytes_copied += lane.bytes_copied;
    acc.segments_deduplicated += lane.segments_deduplicated;
    acc.bytes_deduplicated += lane.bytes_deduplicated;
    acc.target_containers += lane.target_containers;
    acc.files_switched += lane.files_switched;
    acc.segments_adopted += lane.segments_adopted;
    acc
}

/// `c` with the target-side fields zeroed.
fn job_side(c: &Counters) -> Counters {
    Counters {
        segments_copied: 0,
        bytes_copied: 0,
        segments_deduplicated: 0,
        bytes_deduplicated: 0,
        target_containers: 0,
        files_switched: 0,
        segments_adopted: 0,
        ..*c
    }
}

/// The persisted counterpart of [`ProgressRecord`], version 2.
#[derive(Serialize, Deserialize)]
struct ProgressV2 {
    phase_done: Option<u8>,
    copy_cursor: u64,
    switch_cursor: u64,
    remove_cursor: u64,
    counters: CountersV2,
    resumes: u64,
}

/// Version 1 of the progress record, still read from older jobs.
#[derive(Serialize, Deserialize)]
struct ProgressV1 {
    phase_done: Option<u8>,
    copy_cursor: u64,
    switch_cursor: u64,
    remove_cursor: u64,
    counters: CountersV1,
    resumes: u64,
}

/// The persisted counterpart of [`Counters`], version 2. Field order is the
/// wire format: append only, and bump [`PROGRESS_VERSION`] when it changes.
#[derive(Serialize, Deserialize)]
struct CountersV2 {
    v1: CountersV1,
    files_kept: u64,
    segments_adopted: u64,
}

/// The counters as version 1 wrote them.
#[derive(Serialize, Deserialize)]
struct CountersV1 {
    files_selected: u64,
    bytes_selected: u64,
    containers_total: u64,
    segments_marked: u64,
    containers_read: u64,
    containers_skipped: u64,
    segments_copied: u64,
    bytes_copied: u64,
    segments_deduplicated: u64,
    bytes_deduplicated: u64,
    target_containers: u64,
    files_switched: u64,
    files_removed: u64,
}

impl From<&Counters> for CountersV2 {
    fn from(c: &Counters) -> Self {
        CountersV2 {
            v1: CountersV1 {
                files_selected: c.files_selected,
                bytes_selected: c.bytes_selected,
                containers_total: c.containers_total,
                segments_marked: c.segments_marked,
                containers_read: c.containers_read,
                containers_skipped: c.containers_skipped,
                segments_copied: c.segments_copied,
                bytes_copied: c.bytes_copied,
                segments_deduplicated: c.segments_deduplicated,
                bytes_deduplicated: c.bytes_deduplicated,
                target_containers: c.target_containers,
                files_switched: c.files_switched,
                files_removed: c.files_removed,
            },
            files_kept: c.files_kept,
            segments_adopted: c.segments_adopted,
        }
    }
}

impl From<CountersV2> for Counters {
    fn from(c: CountersV2) -> Self {
        let v = c.v1;
        Counters {
            files_selected: v.files_selected,
            bytes_selected: v.bytes_selected,
            containers_total: v.containers_total,
            segments_marked: v.segments_marked,
            containers_read: v.containers_read,
            containers_skipped: v.containers_skipped,
            segments_copied: v.segments_copied,
            bytes_copied: v.bytes_copied,
            segments_deduplicated: v.segments_deduplicated,
            bytes_deduplicated: v.bytes_deduplicated,
            target_containers: v.target_containers,
            files_switched: v.files_switched,
            files_removed: v.files_removed,
            files_kept: c.files_kept,
            segments_adopted: c.segments_adopted,
        }
    }
}

impl From<&ProgressRecord> for ProgressV2 {
    /// The first target's share is folded into the job-wide record, the
    /// way a single-target job has always stored it.
    fn from(p: &ProgressRecord) -> Self {
        let first = p.lanes.first().cloned().unwrap_or_default();
        ProgressV2 {
            phase_done: p.phase_done.map(phase_code),
            copy_cursor: p.copy_cursor,
            switch_cursor: first.switch_cursor,
            remove_cursor: p.remove_cursor,
            counters: (&add_target_side(p.counters, &first.counters)).into(),
            resumes: p.resumes,
        }
    }
}

impl Upgrade<ProgressRecord> for ProgressV2 {
    /// One lane, from the folded-in first target's share; the reader adds
    /// its floor and the other targets.
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<ProgressRecord> {
        let counters: Counters = self.counters.into();
        Ok(ProgressRecord {
            phase_done: self.phase_done.map(|c| phase_from_code(c, what)).transpose()?,
            copy_cursor: self.copy_cursor,
            remove_cursor: self.remove_cursor,
            counters: job_side(&counters),
            resumes: self.resumes,
            lanes: vec![LaneProgress {
                floor: None,
                switch_cursor: self.switch_cursor,
                counters: target_side(&counters),
                dropped: None,
            }],
        })
    }
}

impl Upgrade<ProgressRecord> for ProgressV1 {
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<ProgressRecord> {
        ProgressV2 {
            phase_done: self.phase_done,
            copy_cursor: self.copy_cursor,
            switch_cursor: self.switch_cursor,
            remove_cursor: self.remove_cursor,
            counters: CountersV2 { v1: self.counters, files_kept: 0, segments_adopted: 0 },
            resumes: self.resumes,
        }
        .upgrade(what)
    }
}

/// Converts a persisted record to its in-memory type; fails on a value no
/// version ever wrote (an unknown enum code).
trait Upgrade<T> {
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<T>;
}

/// The persisted counterpart of [`Report`], version 2.
#[derive(Serialize, Deserialize)]
struct ReportV2 {
    job_id: String,
    mode: u8,
    counters: CountersV2,
    resumes: u64,
}

/// Version 1 of the report record.
#[derive(Serialize, Deserialize)]
struct ReportV1 {
    job_id: String,
    mode: u8,
    counters: CountersV1,
    resumes: u64,
}

/// The order-independent checksum of the marked set, committed by Mark
/// and reproduced by Verify's walk of the target.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct MarkSumRecord {
    pub(crate) count: u64,
    pub(crate) lanes: [u64; 4],
}

/// Job settings added after version 1 of the job record, kept apart so
/// that older jobs stay readable: absent means the defaults.
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct OptionsRecord {
    /// 0: metadata, 1: full.
    pub(crate) verify: u8,
}

/// A switch gate's last answer for one stage: 0 approve, 1 defer,
/// 2 reject, with its reason.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct GateRecord {
    pub(crate) answer: u8,
    pub(crate) reason: String,
}

/// What the job knew of the target at Select: containers with an id at or
/// past `floor` were written after the job started (by the job itself, in
/// a run that crashed before committing them).
#[derive(Clone, Copy, Debug, Serialize, Deserialize)]
pub(crate) struct TargetRecord {
    pub(crate) floor: u64,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub(crate) struct PhfRef {
    pub(crate) file: String,
    pub(crate) keys: u64,
}

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
        self.batch.put(K_PROGRESS, encode_record(CTX_MAGIC, PROGRESS_VERSION, &ProgressV2::from(p)));
        if let Some(floor) = p.lanes.first().and_then(|l| l.floor) {
            self.target(&TargetRecord { floor });
        }
        for (i, lane) in p.lanes.iter().enumerate().skip(1) {
            let v1 =
                LaneV1 { floor: lane.floor.unwrap_or(0), switch_cursor: lane.switch_cursor, counters: (&lane.counters).into() };
            self.batch.put(format!("{K_LANE}{i}"), encode_record(CTX_MAGIC, CTX_VERSION, &v1));
        }
        let dropped: Vec<(u32, String)> =
            p.lanes.iter().enumerate().filter_map(|(i, l)| l.dropped.clone().map(|d| (i as u32, d))).collect();
        if !dropped.is_empty() {
            self.batch.put(K_DROPPED, encode_record(CTX_MAGIC, CTX_VERSION, &dropped));
        }
        self
    }
    pub(crate) fn mark_sum(&mut self, m: &MarkSumRecord) -> &mut Self {
        self.batch.put(K_MARK_SUM, encode_record(CTX_MAGIC, CTX_VERSION, m));
        self
    }
    pub(crate) fn gate(&mut self, stage: &str, g: &GateRecord) -> &mut Self {
        self.batch.put(format!("{K_GATE}{stage}"), encode_record(CTX_MAGIC, CTX_VERSION, g));
        self
    }
    pub(crate) fn target(&mut self, t: &TargetRecord) -> &mut Self {
        self.batch.put(K_TARGET, encode_record(CTX_MAGIC, CTX_VERSION, t));
        self
    }
    pub(crate) fn job(&mut self, j: &JobRecord) -> &mut Self {
        self.batch.put(K_JOB, encode_record(CTX_MAGIC, CTX_VERSION, &JobV1::from(j)));
        if j.phf != crate::mark::phf::PhfKind::Boomphf {
            self.batch.put(K_PHF_KIND, encode_record(CTX_MAGIC, CTX_VERSION, &j.phf.code()));
        }
        if !j.more_targets.is_empty() || j.on_failure != TargetFailure::Fail {
            let t = TargetsV1 { more: j.more_targets.clone(), policy: j.on_failure.code() };
            self.batch.put(K_TARGETS, encode_record(CTX_MAGIC, CTX_VERSION, &t));
        }
        self
    }
    pub(crate) fn snapshot(&mut self, s: &[ContainerId]) -> &mut Self {
        let raw: Vec<u64> = s.iter().map(|c| c.0).collect();
        self.batch.put(K_SNAPSHOT, encode_record(CTX_MAGIC, CTX_VERSION, &raw));
        self
    }
    /// For each snapshot container, how many source index entries point
    /// to it (BuildPhf counts them; Copy trusts a container whose table is
    /// exactly that long and lists no fingerprint twice).
    pub(crate) fn homed(&mut self, counts: &[u32]) -> &mut Self {
        self.batch.put(K_HOMED, encode_record(CTX_MAGIC, CTX_VERSION, &counts.to_vec()));
        self
    }
    pub(crate) fn phf(&mut self, r: &PhfRef) -> &mut Self {
        self.batch.put(K_PHF, encode_record(CTX_MAGIC, CTX_VERSION, r));
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
        self.batch.put(K_REPORT, encode_record(CTX_MAGIC, PROGRESS_VERSION, &v2));
        self
    }
}

/// Decodes `bytes` as each context record type; returns how many accepted
/// them. For the fuzzers: it must never panic, whatever the bytes.
#[cfg(feature = "test-util")]
pub(crate) fn fuzz_decode(bytes: &[u8]) -> usize {
    let what = || "fuzz input".to_string();
    [
        decode_record::<JobV1>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<ProgressV1>(CTX_MAGIC, 1, bytes, &what).is_ok(),
        decode_record::<ProgressV2>(CTX_MAGIC, PROGRESS_VERSION, bytes, &what).is_ok(),
        decode_record::<MarkSumRecord>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<TargetRecord>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<TargetsV1>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<LaneV1>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<(u32, String)>>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<OptionsRecord>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<GateRecord>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<PhfRef>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<u64>>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<u32>>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<Vec<FileEntryV1>>(CTX_MAGIC, CTX_VERSION, bytes, &what).is_ok(),
        decode_record::<ReportV1>(CTX_MAGIC, 1, bytes, &what).is_ok(),
        decode_record::<ReportV2>(CTX_MAGIC, PROGRESS_VERSION, bytes, &what).is_ok(),
    ]
    .into_iter()
    .filter(|ok| *ok)
    .count()
}

/// A context that RocksDB refuses to open is a damaged job (anything but
/// a lock, which says a job is running).
fn damaged(dir: &Path, e: Error) -> Error {
    match e {
        Error::Db { message, .. } if !message.contains("lock") => {
            Error::DamagedJob { state_dir: dir.to_path_buf(), reason: message }
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
            return Err(Error::NoJob { state_dir: dir.to_path_buf() });
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
            return Err(Error::NoJob { state_dir: dir.to_path_buf() });
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
    ) -> Result<Context> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let lock = Self::lock(dir)?;
        let ctx = dir.join(JOB_CONTEXT);
        if ctx.is_dir() {
            let db = Self::open_db(&ctx, false).map_err(|e| damaged(dir, e))?;
            let existing = Context { dir: dir.to_path_buf(), db, _lock: lock, poisoned: None };
            let phase =
                existing.reader().progress().ok().and_then(|p| p.phase_done).map_or("none".to_string(), |p| p.to_string());
            return Err(Error::JobExists { state_dir: dir.to_path_buf(), phase });
        }
        crate::format::durable::create_dir_atomically(&ctx, &dir.join(JOB_CONTEXT_CREATING), |tmp| {
            let db = Self::open_db(tmp, true)?;
            let mut c = Commit::default();
            c.job(job).progress(progress);
            c.batch.put(K_OPTIONS, encode_record(CTX_MAGIC, CTX_VERSION, options));
            if let Some(o) = origin {
                c.batch.put(K_ORIGIN, encode_record(CTX_MAGIC, CTX_VERSION, &o.to_string()));
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
            return Err(Error::NoJob { state_dir: dir.to_path_buf() });
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
            return Err(Error::Poisoned { what: format!("job {}", self.dir.display()), cause: cause.clone() });
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
            return Err(Error::Poisoned { what: format!("job {}", self.dir.display()), cause: cause.clone() });
        }
        let records: Vec<FileEntryV1> = files.iter().map(FileEntryV1::from).collect();
        self.db.put(files_key(i), encode_record(CTX_MAGIC, CTX_VERSION, &records)).map_err(|e| {
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
            Some(v) => decode_record(CTX_MAGIC, CTX_VERSION, &v, &|| {
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
        match decode_versioned::<V2, V1>(CTX_MAGIC, PROGRESS_VERSION, &v, &what)? {
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
        Ok(self.need::<Vec<FileEntryV1>>(&files_key(i))?.into_iter().map(FileEntry::from).collect())
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

impl Upgrade<Report> for ReportV2 {
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<Report> {
        Ok(Report {
            job_id: self.job_id,
            mode: mode_from_code(self.mode, what)?,
            counters: self.counters.into(),
            resumes: self.resumes,
            targets: Vec::new(),
        })
    }
}

impl Upgrade<Report> for ReportV1 {
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<Report> {
        ReportV2 {
            job_id: self.job_id,
            mode: self.mode,
            counters: CountersV2 { v1: self.counters, files_kept: 0, segments_adopted: 0 },
            resumes: self.resumes,
        }
        .upgrade(what)
    }
}
