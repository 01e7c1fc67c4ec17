//! The context's records: the in-memory job, progress and lane records,
//! and their private, versioned counterparts on disk (converted by hand,
//! each old version upgraded on read).

use serde::{Deserialize, Serialize};

use crate::engine::codes::{mode_code, mode_from_code, phase_code, phase_from_code};
use crate::engine::selection::Selection;
use crate::engine::{Counters, Mode, Phase, Report, TargetFailure};
use crate::error::Result;
use crate::format::records::SelectionV1;

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
pub(super) struct TargetsV1 {
    pub(super) more: Vec<[u8; 16]>,
    /// 0: fail, 1: drop.
    pub(super) policy: u8,
}

/// One target's progress after the first, version 1.
#[derive(Serialize, Deserialize)]
pub(super) struct LaneV1 {
    pub(super) floor: u64,
    pub(super) switch_cursor: u64,
    pub(super) counters: CountersV2,
}

/// The job record as persisted, version 1.
#[derive(Serialize, Deserialize)]
pub(super) struct JobV1 {
    pub(super) job_id: [u8; 16],
    pub(super) source: [u8; 16],
    pub(super) target: [u8; 16],
    pub(super) selection: SelectionV1,
    pub(super) mode: u8,
    pub(super) gamma: f64,
    pub(super) created: i64,
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
    pub(super) fn into_record(self, what: &dyn Fn() -> String) -> Result<JobRecord> {
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
pub(super) struct ProgressV2 {
    pub(super) phase_done: Option<u8>,
    pub(super) copy_cursor: u64,
    pub(super) switch_cursor: u64,
    pub(super) remove_cursor: u64,
    pub(super) counters: CountersV2,
    pub(super) resumes: u64,
}

/// Version 1 of the progress record, still read from older jobs.
#[derive(Serialize, Deserialize)]
pub(super) struct ProgressV1 {
    pub(super) phase_done: Option<u8>,
    pub(super) copy_cursor: u64,
    pub(super) switch_cursor: u64,
    pub(super) remove_cursor: u64,
    pub(super) counters: CountersV1,
    pub(super) resumes: u64,
}

/// The persisted counterpart of [`Counters`], version 2. Field order is the
/// wire format: append only, and bump [`PROGRESS_VERSION`] when it changes.
#[derive(Serialize, Deserialize)]
pub(super) struct CountersV2 {
    pub(super) v1: CountersV1,
    pub(super) files_kept: u64,
    pub(super) segments_adopted: u64,
}

/// The counters as version 1 wrote them.
#[derive(Serialize, Deserialize)]
pub(super) struct CountersV1 {
    pub(super) files_selected: u64,
    pub(super) bytes_selected: u64,
    pub(super) containers_total: u64,
    pub(super) segments_marked: u64,
    pub(super) containers_read: u64,
    pub(super) containers_skipped: u64,
    pub(super) segments_copied: u64,
    pub(super) bytes_copied: u64,
    pub(super) segments_deduplicated: u64,
    pub(super) bytes_deduplicated: u64,
    pub(super) target_containers: u64,
    pub(super) files_switched: u64,
    pub(super) files_removed: u64,
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
pub(super) trait Upgrade<T> {
    fn upgrade(self, what: &dyn Fn() -> String) -> Result<T>;
}

/// The persisted counterpart of [`Report`], version 2.
#[derive(Serialize, Deserialize)]
pub(super) struct ReportV2 {
    pub(super) job_id: String,
    pub(super) mode: u8,
    pub(super) counters: CountersV2,
    pub(super) resumes: u64,
}

/// Version 1 of the report record.
#[derive(Serialize, Deserialize)]
pub(super) struct ReportV1 {
    pub(super) job_id: String,
    pub(super) mode: u8,
    pub(super) counters: CountersV1,
    pub(super) resumes: u64,
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
