//! The engine's public vocabulary: the mode and phases of a job, its
//! counters, report and progress, the switch gate, the outcome of a run,
//! the events an observer sees, and the handles that suspend and throttle
//! a running job.

use super::schedule::{Clock, LimitSchedule, LocalClock, Scheduled};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use super::verify::VerifyLevel;
use crate::format::fingerprint::ContainerId;
use crate::format::phase::Phase;

/// Copy leaves the files in the source namespace; move removes them once
/// they are in the target's.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Mode {
    /// Keep the source namespace as it is.
    #[default]
    Copy,
    /// Remove the selected files from the source namespace after Switch.
    Move,
}

/// What a job does when one of its targets fails (a write, a lookup,
/// Verify or Switch on that target), or is not given to a resume.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TargetFailure {
    /// The whole job fails cleanly; a resume goes on from the last commit.
    #[default]
    Fail,
    /// The failing target is dropped (recorded in the context, named in the
    /// report) and the others complete. A move job removes nothing from the
    /// source once a target is dropped. With every target dropped, the job
    /// fails.
    Drop,
}

crate::format::records::named_codes!(TargetFailure, "on-target-failure", { Fail => ("fail", 0), Drop => ("drop", 1) });

/// What a job did on one of its targets.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TargetReport {
    /// The target tier's id.
    pub tier_id: String,
    /// This target's share of the work: only the target-side counters are
    /// set (segments and bytes copied and deduplicated, target containers,
    /// files switched, segments adopted).
    pub counters: Counters,
    /// Why the [`TargetFailure::Drop`] policy took this target out of the
    /// job; `None` for a target that has everything.
    pub dropped: Option<String>,
}

/// A job's counters, committed with its progress.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Files selected.
    pub files_selected: u64,
    /// Their logical bytes.
    pub bytes_selected: u64,
    /// Source containers in the snapshot.
    pub containers_total: u64,
    /// Distinct segments (data and recipe) marked.
    pub segments_marked: u64,
    /// Source containers whose segments were read (re-reads after a resume
    /// count again).
    pub containers_read: u64,
    /// Source containers skipped without reading data: nothing marked.
    pub containers_skipped: u64,
    /// Segments written to the target.
    pub segments_copied: u64,
    /// Bytes written to the target.
    pub bytes_copied: u64,
    /// Marked segments the target already had.
    pub segments_deduplicated: u64,
    /// Their bytes.
    pub bytes_deduplicated: u64,
    /// Target containers sealed.
    pub target_containers: u64,
    /// Namespace entries written to the target.
    pub files_switched: u64,
    /// Namespace entries removed from the source (move mode).
    pub files_removed: u64,
    /// Selected files kept in the source namespace in move mode because
    /// they changed after Select (they are still switched to the target as
    /// selected; the source keeps its newer version).
    pub files_kept: u64,
    /// Marked segments found on the target in containers this job wrote in
    /// a run that stopped before committing them (crash or kill): copied by
    /// the job, adopted by the resume. Also counted in `segments_copied`.
    pub segments_adopted: u64,
}

/// The final report of a completed job.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// The job's id.
    pub job_id: String,
    /// Copy or move.
    pub mode: Mode,
    /// What was done; with several targets, their shares summed.
    pub counters: Counters,
    /// How many times the job was resumed.
    pub resumes: u64,
    /// Each target's share, in the order the job was given them.
    pub targets: Vec<TargetReport>,
}

/// Where a suspended (or running) job stands.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Progress {
    /// The job's id.
    pub job_id: String,
    /// The last phase recorded as done.
    pub phase_done: Option<Phase>,
    /// The phase a resume starts at.
    pub next_phase: Phase,
    /// Copy cursor: snapshot containers fully handled (by every target).
    pub copy_cursor: u64,
    /// Counters as of the last commit; with several targets, their shares
    /// summed.
    pub counters: Counters,
    /// Each target's share, in the order the job was given them.
    pub targets: Vec<TargetReport>,
    /// Rough completion estimate, 0 to 100.
    pub percent: f64,
    /// Why the job is waiting, when a switch gate deferred it.
    pub deferred: Option<String>,
    /// The bandwidth limit the job keeps, as its schedule's text (parse
    /// it into a [`LimitSchedule`] for the limit in force at a time);
    /// `None`: no limit. Filled by [`Seeder::status`](super::Seeder::status).
    #[serde(default)]
    pub limit: Option<String>,
}

/// The step a [`SwitchGate`] is asked about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SwitchStage {
    /// Writing the selected files' entries into the target namespace.
    Switch,
    /// Removing them from the source namespace (move mode).
    SourceRemoval,
}

/// What a job asks its [`SwitchGate`].
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SwitchRequest {
    /// The job.
    pub job_id: String,
    /// Which step.
    pub stage: SwitchStage,
    /// Files the step changes.
    pub files: u64,
    /// Their logical bytes.
    pub bytes: u64,
    /// The ids of the targets the files are switched to (those still in
    /// the job), in the order the job was given them.
    pub targets: Vec<String>,
}

/// A gate's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GateAnswer {
    /// Go ahead.
    Approve,
    /// Not now: the job suspends with this reason; a resume asks again.
    Defer(String),
    /// No: the job stops without this step, keeping the copied data; a
    /// resume asks again.
    Reject(String),
}

/// Decides when a file's home may change: called before Switch and, in
/// move mode, again before source removal. The appliance can update its
/// catalog, wait for a maintenance window or ask a person. Answers are
/// recorded in the job's context; only an approval is remembered across a
/// resume (a deferred or rejected job asks again).
pub trait SwitchGate: Send + Sync {
    /// The answer for `request`.
    fn decide(&self, request: &SwitchRequest) -> GateAnswer;
}

impl<F: Fn(&SwitchRequest) -> GateAnswer + Send + Sync> SwitchGate for F {
    fn decide(&self, request: &SwitchRequest) -> GateAnswer {
        self(request)
    }
}

/// What [`Seeder::run`](crate::Seeder::run) ended with.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every phase done.
    Completed(Report),
    /// Suspended at a commit point; resume with [`Seeder::resume`](crate::Seeder::resume).
    Suspended(Progress),
}

/// Something that happened in a job, delivered to the [`Observer`].
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Event {
    /// A job started (`resumed`: from an existing context).
    Started {
        /// The job's id.
        job_id: String,
        /// True when resuming.
        resumed: bool,
    },
    /// A phase began.
    PhaseStarted(Phase),
    /// A phase's completion was committed.
    PhaseFinished(Phase),
    /// Mark progress: segments marked so far.
    Marked {
        /// Distinct segments marked so far.
        segments: u64,
    },
    /// A source container had nothing marked and was skipped unread.
    ContainerSkipped {
        /// The source container.
        source: ContainerId,
        /// Snapshot containers handled so far.
        done: u64,
        /// Snapshot size.
        total: u64,
    },
    /// A source container's marked segments were read and handled.
    ContainerCopied {
        /// The source container.
        source: ContainerId,
        /// Segments read from it.
        segments: u64,
        /// Bytes read from it.
        bytes: u64,
        /// Snapshot containers handled so far.
        done: u64,
        /// Snapshot size.
        total: u64,
    },
    /// A target container was sealed (and will be committed next).
    TargetSealed {
        /// Which of the job's targets, from 0 in the order given.
        target_index: usize,
        /// The new target container.
        target: ContainerId,
        /// Segments in it.
        segments: u64,
        /// Bytes in it.
        bytes: u64,
    },
    /// Verify's check of target containers advanced.
    Verifying {
        /// Which of the job's targets, from 0 in the order given.
        target_index: usize,
        /// Target containers checked so far.
        containers: u64,
        /// Target containers to check.
        total: u64,
    },
    /// Verify proved every selected file on a target.
    Verified {
        /// Which of the job's targets, from 0 in the order given.
        target_index: usize,
        /// The level it ran at.
        level: VerifyLevel,
        /// Distinct segments proven.
        segments: u64,
        /// Target containers whose metadata was read.
        containers: u64,
        /// Data segments read back and hashed (`full` level; 0 otherwise).
        hashed: u64,
    },
    /// A switch gate answered.
    Gate {
        /// The step asked about.
        stage: SwitchStage,
        /// The answer.
        answer: GateAnswer,
    },
    /// Namespace entries were switched (upserted to the target).
    Switched {
        /// Entries switched so far.
        files: u64,
        /// Entries to switch.
        total: u64,
    },
    /// The job suspended at a commit point.
    Suspended(Progress),
    /// The job completed.
    Completed(Report),
    /// The [`TargetFailure::Drop`] policy took a target out of the job.
    TargetDropped {
        /// The target tier's id.
        target: String,
        /// The phase it failed in.
        phase: Phase,
        /// Why.
        reason: String,
    },
    /// The job failed; the context holds the last committed state.
    Failed {
        /// The phase that failed.
        phase: Phase,
        /// The error message.
        message: String,
    },
}

/// Receives [`Event`]s. Called on the job's thread: keep it quick.
pub trait Observer: Send + Sync {
    /// Called for every event.
    fn event(&self, event: &Event);
}

impl<F: Fn(&Event) + Send + Sync> Observer for F {
    fn event(&self, event: &Event) {
        self(event);
    }
}

/// Asks a running job to suspend at its next commit point. Clone it freely
/// and call [`suspend`](Self::suspend) from any thread or signal handler.
#[derive(Clone, Debug, Default)]
pub struct SuspendHandle(pub(crate) Arc<AtomicBool>);

impl SuspendHandle {
    /// Requests suspension; `run` returns [`Outcome::Suspended`] after the
    /// next commit point (in Copy: within one target container). A request
    /// made before `run` stops that run at its first commit point. Each
    /// request is consumed by the run it suspends.
    pub fn suspend(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    /// True once suspension was requested.
    pub fn is_requested(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

/// Sets a running job's bandwidth limit on bytes written to the target,
/// from any thread; the writer picks up a change before its next container.
/// A limit may follow a [`LimitSchedule`]: the limit then switches as the
/// clock crosses a window, with no restart. Clone it freely.
#[derive(Clone, Debug, Default)]
pub struct ThrottleHandle(Arc<Throttle>);

#[derive(Debug, Default)]
struct Throttle {
    bytes_per_sec: std::sync::atomic::AtomicU64,
    /// The schedule, its clock, and the limit it last applied.
    scheduled: std::sync::Mutex<Option<(Scheduled, u64)>>,
}

impl ThrottleHandle {
    /// Limits writes to `bytes_per_sec` (0: no limit). Under a schedule,
    /// this holds until the clock enters a window with another limit.
    pub fn set_bytes_per_sec(&self, bytes_per_sec: u64) {
        self.0.bytes_per_sec.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// Follows `schedule` on the machine's local time from now on.
    pub fn set_schedule(&self, schedule: LimitSchedule) {
        self.set_schedule_with_clock(schedule, Arc::new(LocalClock));
    }

    /// Follows `schedule` on `clock` (tests inject one).
    pub fn set_schedule_with_clock(&self, schedule: LimitSchedule, clock: Arc<dyn Clock>) {
        let now = schedule.bytes_per_sec_at(clock.now());
        self.set_bytes_per_sec(now);
        *self.0.scheduled.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some((Scheduled { schedule, clock }, now));
    }

    /// The schedule the limit follows, if any.
    pub fn schedule(&self) -> Option<LimitSchedule> {
        let s = self.0.scheduled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        s.as_ref().map(|(s, _)| s.schedule.clone())
    }

    /// The limit now (0: none), after applying the schedule's limit if the
    /// clock entered another window since it last did.
    pub fn bytes_per_sec(&self) -> u64 {
        let mut s = self.0.scheduled.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        // One limit at all times (a plain `--limit N`) needs no clock.
        if let Some((scheduled, applied)) = s.as_mut().filter(|(sc, _)| !sc.schedule.is_constant()) {
            let now = scheduled.schedule.bytes_per_sec_at(scheduled.clock.now());
            if now != *applied {
                *applied = now;
                self.0.bytes_per_sec.store(now, Ordering::SeqCst);
            }
        }
        self.0.bytes_per_sec.load(Ordering::SeqCst)
    }
}
