//! The seeding engine: the seven phases, the resumption context, suspend
//! and resume.

mod codes;
pub(crate) mod context;
mod copy;
mod estimate;
mod pace;
mod prove;
mod run;
mod schedule;
pub(crate) mod selection;
mod types;
mod verify;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::selection::Selection;
use crate::error::{Error, JobError, Result};
use crate::tier::{SourceTier, TargetTier};

use crate::mark::phf::PhfKind;
use context::{Context, JobRecord, OptionsRecord, ProgressRecord};

pub use crate::format::phase::Phase;
pub use estimate::{Estimate, RequestEstimate};
pub use schedule::{Clock, LimitSchedule, LocalClock, WallTime};
pub use types::{
    Counters, Event, GateAnswer, Mode, Observer, Outcome, Progress, Report, SuspendHandle, SwitchGate, SwitchRequest,
    SwitchStage, TargetFailure, TargetReport, ThrottleHandle,
};
pub use verify::VerifyLevel;

/// Builds a new job; see [`Seeder::builder`].
pub struct SeederBuilder<'a> {
    source: &'a dyn SourceTier,
    targets: Vec<&'a dyn TargetTier>,
    on_failure: TargetFailure,
    state_dir: PathBuf,
    selection: Selection,
    mode: Mode,
    threads: usize,
    writers: usize,
    gamma: f64,
    phf: PhfKind,
    verify: VerifyLevel,
    limit: Option<LimitSchedule>,
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
    /// Target containers each target writes at once in the Copy phase
    /// (default 4, at most 16): each writer writes, fsyncs and renames
    /// its container while the next fills, and one context commit counts
    /// every container written since the last. This is the redo bound: a
    /// crash redoes at most this many containers plus the one filling
    /// (and a few source containers re-read). More helps a disk or store
    /// whose single fsync or PUT leaves it idle; not recorded in the job
    /// (a resume takes its own, [`Seeder::with_writers`]).
    #[must_use]
    pub fn writers(mut self, n: usize) -> Self {
        self.writers = n;
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
        self.limit = (bytes_per_sec > 0).then(|| LimitSchedule::constant(bytes_per_sec));
        self
    }
    /// Limits the bytes written to the target by a schedule of the local
    /// time of day (see [`LimitSchedule`]): the limit switches as the
    /// clock crosses a window while the job runs. The job keeps it: a
    /// resume without a limit of its own follows it too, and
    /// [`Seeder::status`] shows it.
    #[must_use]
    pub fn limit_schedule(mut self, schedule: LimitSchedule) -> Self {
        self.limit = Some(schedule);
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
        if !(1..=copy::MAX_WRITERS).contains(&self.writers) {
            return Err(Error::InvalidConfig(format!(
                "writers must be 1 to {} (got {}): containers in flight per target",
                copy::MAX_WRITERS,
                self.writers
            )));
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
        let limit = self.limit.as_ref().map(ToString::to_string);
        let ctx = Context::create(&self.state_dir, &job, &progress, &options, self.origin.as_deref(), limit.as_deref())?;
        let targets = self.targets.into_iter().map(Some).collect();
        let mut s = Seeder::assemble(self.source, targets, ctx, job, self.threads, self.observer, false);
        s.verify = self.verify;
        s.writers = self.writers;
        if let Some(l) = self.limit {
            s.throttle.set_schedule(l);
        }
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
/// use tierseed::{IndexedTier, Outcome, Seeder, Selection};
/// let src = IndexedTier::open("/tiers/active")?;
/// let dst = IndexedTier::open("/tiers/archive")?;
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
    /// Target containers in flight per target in Copy.
    writers: usize,
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
            writers: copy::DEFAULT_WRITERS,
            gamma: 1.7,
            phf: PhfKind::Boomphf,
            verify: VerifyLevel::default(),
            limit: None,
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
            writers: copy::DEFAULT_WRITERS,
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
        let job = ctx.reader().job()?.ok_or_else(|| Error::Job(JobError::NoJob { state_dir: dir.to_path_buf() }))?;
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
        let mismatch = |role, expected: [u8; 16], found: String| {
            Error::Job(JobError::TierMismatch {
                state_dir: dir.to_path_buf(),
                role,
                expected: uuid::Uuid::from_bytes(expected).to_string(),
                found,
            })
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
        let limit = ctx.reader().limit()?;
        let mut s = Seeder::assemble(source, lanes, ctx, job, default_threads(), None, true);
        s.verify = verify;
        if let Some(text) = limit {
            // Written by this crate from a parsed schedule; one that no
            // longer parses is a damaged record, not a reason to run
            // unlimited.
            let schedule = text.parse::<LimitSchedule>().map_err(|e| {
                Error::corrupt_record(format!("context in {}", dir.display()), format!("bandwidth limit {text:?}: {e}"))
            })?;
            s.throttle.set_schedule(schedule);
        }
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

    /// Sets how many target containers each target writes at once in Copy
    /// (for a resumed job; see [`SeederBuilder::writers`]), clamped to 1
    /// to 16.
    #[must_use]
    pub fn with_writers(mut self, n: usize) -> Self {
        self.writers = n.clamp(1, copy::MAX_WRITERS);
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

    /// Sets the bandwidth limit (for a resumed job; 0: none), in place of
    /// the one the job was built or last resumed with, and keeps it.
    pub fn with_limit_bytes_per_sec(self, bytes_per_sec: u64) -> Result<Self> {
        self.with_limit_schedule(LimitSchedule::constant(bytes_per_sec))
    }

    /// Sets the bandwidth limit to follow `schedule` (for a resumed job),
    /// in place of the one the job was built or last resumed with, and
    /// keeps it in the job's state.
    pub fn with_limit_schedule(mut self, schedule: LimitSchedule) -> Result<Self> {
        let mut c = context::Commit::default();
        c.limit(&schedule.to_string());
        self.ctx.commit(c)?;
        self.throttle.set_schedule(schedule);
        Ok(self)
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

    /// Fails with [`TierError::Locked`](crate::TierError::Locked) ("job in progress") if a job is running
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
        let job = r.job()?.ok_or_else(|| Error::Job(JobError::NoJob { state_dir: dir.to_path_buf() }))?;
        let mut p = progress_of(&job, &r.progress()?);
        // "0" is a limit lifted on a resume: none.
        p.limit = r.limit()?.filter(|l| l != "0");
        Ok(p)
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
        limit: None,
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
