//! The seeding engine: the seven phases, the resumption context, suspend
//! and resume.

mod codes;
pub(crate) mod context;
mod copy;
mod estimate;
mod prove;
mod run;
pub(crate) mod selection;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use serde::{Deserialize, Serialize};

use crate::engine::selection::Selection;
use crate::error::{Error, Result};
use crate::format::fingerprint::ContainerId;
use crate::tier::{SourceTier, TargetTier};

use crate::mark::phf::PhfKind;
use context::{Context, JobRecord, OptionsRecord, ProgressRecord};

pub use estimate::Estimate;
pub use verify::VerifyLevel;

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

/// The phases of a job, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Resolve the selection; snapshot the source container ids.
    Select,
    /// Build and persist the PHF over the source index.
    BuildPhf,
    /// Walk the selected trees and set their PHV bits.
    Mark,
    /// Stream the snapshot's containers, copying marked segments.
    Copy,
    /// Check that every marked segment reached the target.
    Verify,
    /// Write the namespace entries into the target (and, in move mode,
    /// remove them from the source).
    Switch,
    /// Record the final report.
    Done,
}

impl Phase {
    /// Every phase in order.
    pub const ALL: [Phase; 7] =
        [Phase::Select, Phase::BuildPhf, Phase::Mark, Phase::Copy, Phase::Verify, Phase::Switch, Phase::Done];

    /// The phase's name as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Select => "select",
            Phase::BuildPhf => "build-phf",
            Phase::Mark => "mark",
            Phase::Copy => "copy",
            Phase::Verify => "verify",
            Phase::Switch => "switch",
            Phase::Done => "done",
        }
    }

    /// The phase that follows one recorded as done (`None`: nothing done).
    pub fn after(done: Option<Phase>) -> Phase {
        match done {
            None => Phase::Select,
            Some(p) => Phase::ALL.get(p as usize + 1).copied().unwrap_or(Phase::Done),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
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

/// What [`Seeder::run`] ended with.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    /// Every phase done.
    Completed(Report),
    /// Suspended at a commit point; resume with [`Seeder::resume`].
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
/// Clone it freely.
#[derive(Clone, Debug, Default)]
pub struct ThrottleHandle(Arc<std::sync::atomic::AtomicU64>);

impl ThrottleHandle {
    /// Limits writes to `bytes_per_sec` (0: no limit).
    pub fn set_bytes_per_sec(&self, bytes_per_sec: u64) {
        self.0.store(bytes_per_sec, Ordering::SeqCst);
    }

    /// The limit now (0: none).
    pub fn bytes_per_sec(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// Builds a new job; see [`Seeder::builder`].
pub struct SeederBuilder<'a> {
    source: &'a dyn SourceTier,
    targets: Vec<&'a dyn TargetTier>,
    on_failure: TargetFailure,
    state_dir: PathBuf,
    selection: Selection,
    mode: Mode,
    threads: usize,
    gamma: f64,
    phf: PhfKind,
    verify: VerifyLevel,
    limit: u64,
    origin: Option<String>,
    gate: Option<Arc<dyn SwitchGate + 'a>>,
    observer: Option<Arc<dyn Observer + 'a>>,
}

impl<'a> SeederBuilder<'a> {
    /// Seeds `target` too, in the same pass: the source is read and
    /// verified once, and each segment goes to every target that lacks it.
    /// Call it once per extra target; each keeps its own PHV, progress,
    /// Verify and Switch.
    #[must_use]
    pub fn also_to(mut self, target: &'a dyn TargetTier) -> Self {
        self.targets.push(target);
        self
    }
    /// What a failing target does to the job (default
    /// [`TargetFailure::Fail`]). Recorded in the job.
    #[must_use]
    pub fn on_target_failure(mut self, policy: TargetFailure) -> Self {
        self.on_failure = policy;
        self
    }
    /// Which files to move (required: an empty selection is an error).
    #[must_use]
    pub fn selection(mut self, s: Selection) -> Self {
        self.selection = s;
        self
    }
    /// Copy (default) or move.
    #[must_use]
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = m;
        self
    }
    /// Worker threads (default: all cores).
    #[must_use]
    pub fn threads(mut self, n: usize) -> Self {
        self.threads = n;
        self
    }
    /// How much the Verify phase reads from the target (default
    /// [`VerifyLevel::Metadata`]). Recorded in the job, so a resume keeps it.
    #[must_use]
    pub fn verify(mut self, level: VerifyLevel) -> Self {
        self.verify = level;
        self
    }
    /// Limits the bytes written to the target to `bytes_per_sec` (default
    /// 0: no limit). Change it while the job runs with
    /// [`Seeder::throttle_handle`].
    #[must_use]
    pub fn limit_bytes_per_sec(mut self, bytes_per_sec: u64) -> Self {
        self.limit = bytes_per_sec;
        self
    }
    /// Asks `gate` before Switch and before source removal (default:
    /// always approve).
    #[must_use]
    pub fn switch_gate(mut self, gate: impl SwitchGate + 'a) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }
    /// Records where the job came from (for example a job file's path and
    /// digest), read back with [`Seeder::origin`] so a resume can refuse a
    /// file that changed since.
    #[must_use]
    pub fn origin(mut self, origin: impl Into<String>) -> Self {
        self.origin = Some(origin.into());
        self
    }
    /// Which PHF to build over the source index (default
    /// [`PhfKind::Boomphf`]; [`PhfKind::Compact`] takes about two thirds
    /// of the memory and builds several times slower). Recorded in the job.
    #[must_use]
    pub fn phf(mut self, kind: PhfKind) -> Self {
        self.phf = kind;
        self
    }
    /// PHF gamma for boomphf (default 1.7; 1.05 to 5.0).
    #[must_use]
    pub fn gamma(mut self, g: f64) -> Self {
        self.gamma = g;
        self
    }
    /// Receives the job's events.
    #[must_use]
    pub fn observer(mut self, o: impl Observer + 'a) -> Self {
        self.observer = Some(Arc::new(o));
        self
    }

    /// Creates the job's context in the state directory. Fails if an
    /// unfinished (or finished, not yet abandoned) job is there.
    pub fn build(self) -> Result<Seeder<'a>> {
        self.selection.matcher(0)?;
        crate::mark::phf::check_gamma(self.gamma)?;
        if self.threads == 0 {
            return Err(Error::InvalidConfig("threads must be at least 1".into()));
        }
        let source = *self.source.tier_id()?.as_bytes();
        let mut ids = Vec::with_capacity(self.targets.len());
        for t in &self.targets {
            let id = *t.tier_id()?.as_bytes();
            if id == source {
                return Err(Error::InvalidConfig("a target is the source tier itself".into()));
            }
            if ids.contains(&id) {
                return Err(Error::InvalidConfig(format!(
                    "target {} is given twice (one tier, two paths?)",
                    uuid::Uuid::from_bytes(id)
                )));
            }
            ids.push(id);
        }
        let job = JobRecord {
            job_id: *uuid::Uuid::new_v4().as_bytes(),
            source,
            target: ids[0],
            more_targets: ids[1..].to_vec(),
            on_failure: self.on_failure,
            selection: self.selection,
            mode: self.mode,
            gamma: self.gamma,
            phf: self.phf,
            created: now_secs(),
        };
        let options = OptionsRecord { verify: self.verify.code() };
        let progress = ProgressRecord::new(ids.len());
        let ctx = Context::create(&self.state_dir, &job, &progress, &options, self.origin.as_deref())?;
        let targets = self.targets.into_iter().map(Some).collect();
        let mut s = Seeder::assemble(self.source, targets, ctx, job, self.threads, self.observer, false);
        s.verify = self.verify;
        s.throttle.set_bytes_per_sec(self.limit);
        s.gate = self.gate;
        Ok(s)
    }
}

fn now_secs() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64)
}

fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(2, std::num::NonZero::get)
}

/// A seeding job between one source and one target.
///
/// ```no_run
/// # fn main() -> tierseed::Result<()> {
/// use tierseed::{LocalTier, Outcome, Seeder, Selection};
/// let src = LocalTier::open("/tiers/active")?;
/// let dst = LocalTier::open("/tiers/archive")?;
/// let mut job = Seeder::builder(&src, &dst, "/var/lib/seed/job1").selection(Selection::all()).build()?;
/// let stop = job.suspend_handle(); // call stop.suspend() from anywhere
/// match job.run()? {
///     Outcome::Completed(report) => println!("copied {} bytes", report.counters.bytes_copied),
///     Outcome::Suspended(_) => {
///         let mut job = Seeder::resume("/var/lib/seed/job1", &src, &dst)?;
///         job.run()?;
///     }
/// }
/// # Ok(()) }
/// ```
pub struct Seeder<'a> {
    source: &'a dyn SourceTier,
    /// One per target, in lane order; `None` for a target a resume was not
    /// given (dropped under [`TargetFailure::Drop`]).
    targets: Vec<Option<&'a dyn TargetTier>>,
    ctx: Context,
    job: JobRecord,
    threads: usize,
    observer: Option<Arc<dyn Observer + 'a>>,
    suspend: SuspendHandle,
    resumed: bool,
    commits_enabled: bool,
    verify: VerifyLevel,
    throttle: ThrottleHandle,
    gate: Option<Arc<dyn SwitchGate + 'a>>,
    /// The reason of a deferral in this run, for the suspended progress.
    deferred: Option<String>,
}

impl<'a> Seeder<'a> {
    /// Starts building a new job.
    pub fn builder(source: &'a dyn SourceTier, target: &'a dyn TargetTier, state_dir: impl AsRef<Path>) -> SeederBuilder<'a> {
        SeederBuilder {
            source,
            targets: vec![target],
            on_failure: TargetFailure::Fail,
            state_dir: state_dir.as_ref().to_path_buf(),
            selection: Selection::new(),
            mode: Mode::Copy,
            threads: default_threads(),
            gamma: 1.7,
            phf: PhfKind::Boomphf,
            verify: VerifyLevel::default(),
            limit: 0,
            origin: None,
            gate: None,
            observer: None,
        }
    }

    fn assemble(
        source: &'a dyn SourceTier,
        targets: Vec<Option<&'a dyn TargetTier>>,
        ctx: Context,
        job: JobRecord,
        threads: usize,
        observer: Option<Arc<dyn Observer + 'a>>,
        resumed: bool,
    ) -> Seeder<'a> {
        Seeder {
            source,
            targets,
            ctx,
            job,
            threads,
            observer,
            suspend: SuspendHandle::default(),
            resumed,
            commits_enabled: true,
            verify: VerifyLevel::default(),
            throttle: ThrottleHandle::default(),
            gate: None,
            deferred: None,
        }
    }

    /// Reopens the job in `state_dir`. The tiers must be the ones the job
    /// was created with (checked by their UUIDs); the context is untouched
    /// otherwise. `run` then starts at the first phase not recorded done.
    /// A job with several targets resumes with [`Seeder::resume_targets`]:
    /// given to `resume`, its other targets count as missing (refused under
    /// [`TargetFailure::Fail`], dropped under [`TargetFailure::Drop`]).
    pub fn resume(state_dir: impl AsRef<Path>, source: &'a dyn SourceTier, target: &'a dyn TargetTier) -> Result<Seeder<'a>> {
        Self::resume_targets(state_dir, source, &[target])
    }

    /// Reopens a job with one or more targets. Each tier in `targets` must
    /// be one of the job's (matched by UUID, in any order). A target of the
    /// job missing from `targets` fails the resume under
    /// [`TargetFailure::Fail`]; under [`TargetFailure::Drop`] it is dropped
    /// at the run's first commit, and named in the report.
    pub fn resume_targets(
        state_dir: impl AsRef<Path>,
        source: &'a dyn SourceTier,
        targets: &[&'a dyn TargetTier],
    ) -> Result<Seeder<'a>> {
        let dir = state_dir.as_ref();
        let ctx = Context::open(dir)?;
        let job = ctx.reader().job()?.ok_or_else(|| Error::NoJob { state_dir: dir.to_path_buf() })?;
        // Check the small records now, so a corrupt context fails the
        // resume before anything runs. (Selected-file chunks, which can be
        // large, are checked when a phase reads them; Switch cannot pass
        // a corrupt one.)
        let progress = ctx.reader().progress()?;
        if progress.phase_done >= Some(Phase::Select) {
            ctx.reader().snapshot()?;
        }
        if progress.phase_done >= Some(Phase::BuildPhf) {
            ctx.reader().phf()?;
        }
        let mismatch = |role, expected: [u8; 16], found: String| Error::TierMismatch {
            state_dir: dir.to_path_buf(),
            role,
            expected: uuid::Uuid::from_bytes(expected).to_string(),
            found,
        };
        let found = source.tier_id()?;
        if *found.as_bytes() != job.source {
            return Err(mismatch("source", job.source, found.to_string()));
        }
        let ids = job.target_ids();
        let mut lanes: Vec<Option<&'a dyn TargetTier>> = vec![None; ids.len()];
        for t in targets {
            let found = t.tier_id()?;
            match ids.iter().position(|id| id == found.as_bytes()) {
                Some(i) if lanes[i].is_none() => lanes[i] = Some(*t),
                Some(_) => return Err(Error::InvalidConfig(format!("target {found} is given twice"))),
                // With one target, name what was expected as before.
                None if ids.len() == 1 => return Err(mismatch("target", ids[0], found.to_string())),
                None => {
                    let all: Vec<String> = ids.iter().map(|i| uuid::Uuid::from_bytes(*i).to_string()).collect();
                    return Err(mismatch("target", ids[0], format!("{found}, which is none of the job's ({})", all.join(", "))));
                }
            }
        }
        for (i, lane) in lanes.iter().enumerate() {
            if lane.is_none()
                && progress.lanes.get(i).is_some_and(|l| l.dropped.is_none())
                && job.on_failure == TargetFailure::Fail
            {
                return Err(mismatch(
                    "target",
                    ids[i],
                    "nothing (the job's policy is fail: give every target, or abandon the job)".into(),
                ));
            }
        }
        // Jobs created before the verify level was recorded verify metadata.
        let verify = match ctx.reader().options()? {
            None => VerifyLevel::Metadata,
            Some(o) => VerifyLevel::from_code(o.verify).ok_or_else(|| {
                Error::corrupt_record(format!("context in {}", dir.display()), format!("unknown verify level {}", o.verify))
            })?,
        };
        let mut s = Seeder::assemble(source, lanes, ctx, job, default_threads(), None, true);
        s.verify = verify;
        Ok(s)
    }

    /// Sets the observer (for a resumed job).
    #[must_use]
    pub fn with_observer(mut self, o: impl Observer + 'a) -> Self {
        self.observer = Some(Arc::new(o));
        self
    }

    /// Sets the verify level for this run of a resumed job (the job's
    /// recorded level otherwise).
    #[must_use]
    pub fn with_verify(mut self, level: VerifyLevel) -> Self {
        self.verify = level;
        self
    }

    /// The verify level this run uses.
    pub fn verify_level(&self) -> VerifyLevel {
        self.verify
    }

    /// Sets the number of worker threads (for a resumed job).
    #[must_use]
    pub fn with_threads(mut self, n: usize) -> Self {
        self.threads = n.max(1);
        self
    }

    /// Benchmark-only: skip the per-container context commits of the Copy
    /// phase (phase commits still happen). A crash in this mode loses the
    /// Copy phase's progress, so never use it outside a measurement.
    #[doc(hidden)]
    #[must_use]
    pub fn disable_copy_commits_for_bench(mut self) -> Self {
        self.commits_enabled = false;
        self
    }

    /// Sets the switch gate (for a resumed job).
    #[must_use]
    pub fn with_switch_gate(mut self, gate: impl SwitchGate + 'a) -> Self {
        self.gate = Some(Arc::new(gate));
        self
    }

    /// What the job was built from, if [`SeederBuilder::origin`] said.
    pub fn origin(&self) -> Result<Option<String>> {
        self.ctx.reader().origin()
    }

    /// A handle that changes this job's bandwidth limit while it runs.
    pub fn throttle_handle(&self) -> ThrottleHandle {
        self.throttle.clone()
    }

    /// Sets the bandwidth limit (for a resumed job; 0: none).
    #[must_use]
    pub fn with_limit_bytes_per_sec(self, bytes_per_sec: u64) -> Self {
        self.throttle.set_bytes_per_sec(bytes_per_sec);
        self
    }

    /// A handle that suspends this job from any thread.
    pub fn suspend_handle(&self) -> SuspendHandle {
        self.suspend.clone()
    }

    /// The job's id.
    pub fn job_id(&self) -> String {
        uuid::Uuid::from_bytes(self.job.job_id).to_string()
    }

    /// Removes the job's context (state files this crate created) from
    /// `state_dir`. Refuses while a job runs there.
    ///
    /// Works on a damaged job too (one whose context no longer opens): its
    /// state is removed all the same. The job's holds on its tiers are
    /// dropped by the tiers' next space reclamation, which finds the job
    /// gone.
    pub fn abandon(state_dir: impl AsRef<Path>) -> Result<()> {
        Context::remove(state_dir.as_ref())
    }

    /// Whether `state_dir` holds a job (running, suspended, failed or done).
    pub fn exists(state_dir: impl AsRef<Path>) -> bool {
        state_dir.as_ref().join(crate::format::layout::JOB_CONTEXT).is_dir()
    }

    /// Fails with [`Error::Locked`] ("job in progress") if a job is running
    /// in `state_dir` now. Front ends call this before opening the tiers,
    /// whose own locks would otherwise report the conflict less clearly.
    /// (The lock taken by `build` and `resume` remains the real guard.)
    pub fn ensure_idle(state_dir: impl AsRef<Path>) -> Result<()> {
        let dir = state_dir.as_ref();
        if !Self::exists(dir) {
            return Ok(());
        }
        Context::open(dir).map(drop)
    }

    /// The state of the job in `state_dir`, read without taking its lock
    /// (works while the job runs).
    pub fn status(state_dir: impl AsRef<Path>) -> Result<Progress> {
        let dir = state_dir.as_ref();
        let db = Context::read_only(dir)?;
        let r = db.reader();
        let job = r.job()?.ok_or_else(|| Error::NoJob { state_dir: dir.to_path_buf() })?;
        Ok(progress_of(&job, &r.progress()?))
    }
}

/// Share of the work each phase stands for, for `percent`.
const WEIGHTS: [f64; 7] = [2.0, 8.0, 10.0, 70.0, 2.0, 8.0, 0.0];

pub(crate) fn progress_of(job: &JobRecord, p: &ProgressRecord) -> Progress {
    let next = Phase::after(p.phase_done);
    let done: f64 = WEIGHTS[..next as usize].iter().sum();
    let within = match next {
        Phase::Copy if p.counters.containers_total > 0 => p.copy_cursor as f64 / p.counters.containers_total as f64,
        // Only live targets switch: a dropped one never moves its cursor,
        // and counting it kept the bar short of its end.
        Phase::Switch if p.counters.files_selected > 0 && p.live().count() > 0 => {
            let chunks: u64 = p.live().map(|l| p.lanes[l].switch_cursor).sum();
            (chunks as f64 * context::FILES_PER_CHUNK as f64 / (p.counters.files_selected * p.live().count() as u64) as f64)
                .min(1.0)
        }
        _ => 0.0,
    };
    Progress {
        job_id: uuid::Uuid::from_bytes(job.job_id).to_string(),
        phase_done: p.phase_done,
        next_phase: next,
        copy_cursor: p.copy_cursor,
        counters: p.total(),
        targets: targets_report(job, p),
        percent: if next == Phase::Done { 100.0 } else { done + within * WEIGHTS[next as usize] },
        deferred: None,
    }
}

/// Each target's share of `p`, for reports.
pub(crate) fn targets_report(job: &JobRecord, p: &ProgressRecord) -> Vec<TargetReport> {
    job.target_ids()
        .into_iter()
        .zip(&p.lanes)
        .map(|(id, l)| TargetReport {
            tier_id: uuid::Uuid::from_bytes(id).to_string(),
            counters: l.counters,
            dropped: l.dropped.clone(),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::context::{JobRecord, ProgressRecord};
    use super::*;

    /// The bug "Progress::percent in Switch counts dropped targets": with
    /// one of two targets dropped, a Switch that finished on the other
    /// stayed short of its end.
    #[test]
    fn percent_in_switch_counts_only_live_targets() {
        let job = JobRecord {
            job_id: [1; 16],
            source: [2; 16],
            target: [3; 16],
            selection: Selection::all(),
            mode: Mode::Copy,
            gamma: 1.7,
            phf: PhfKind::Boomphf,
            created: 0,
            more_targets: vec![[4; 16]],
            on_failure: TargetFailure::Drop,
        };
        let mut p = ProgressRecord::new(2);
        p.phase_done = Some(Phase::Verify);
        p.counters.files_selected = 2 * context::FILES_PER_CHUNK as u64;
        p.lanes[1].dropped = Some("gone".into());
        p.lanes[0].switch_cursor = 2;
        let all = progress_of(&job, &p).percent;
        let before_switch: f64 = WEIGHTS[..Phase::Switch as usize].iter().sum();
        assert!((all - (before_switch + WEIGHTS[Phase::Switch as usize])).abs() < 1e-9, "{all}");
        p.lanes[0].switch_cursor = 1;
        let half = progress_of(&job, &p).percent;
        assert!((half - (before_switch + WEIGHTS[Phase::Switch as usize] / 2.0)).abs() < 1e-9, "{half}");
    }
}
