//! The phases of a job and their commit points.

use std::collections::HashMap;

use super::context::{Commit, FILES_PER_CHUNK, GateRecord, MarkSumRecord, PhfRef, ProgressRecord, SelectedFiles};
use super::verify::{Verdict, verify_target};
use super::{
    Event, GateAnswer, Mode, Outcome, Phase, Report, Seeder, SwitchRequest, SwitchStage, TargetFailure, progress_of,
    targets_report,
};
use crate::error::{Error, FormatError, JobError, Result, TierError};
use crate::format::fingerprint::ContainerId;
use crate::mark::keys::KeyFile;
use crate::mark::marks::{LeafCheck, SetSum, affected_files, mark};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::testing::crashpoint;
use crate::tier::{FileEntry, TargetTier, Tier};

/// Files named in an error, at most.
pub(super) const MAX_FILES_NAMED: usize = 20;

/// Which tier a pin is on.
enum PinOn {
    Source,
    /// The target of this lane.
    Target(usize),
}

/// What the engine holds in memory while it runs; everything here can be
/// rebuilt from the context.
pub(super) struct State {
    /// Pins taken on the tiers by this run.
    pins: Vec<(PinOn, u64)>,
    pub(super) prog: ProgressRecord,
    pub(super) snapshot: Vec<ContainerId>,
    pub(super) phf: Option<Phf>,
    /// The key file BuildPhf wrote in this run (a resumed Mark opens and
    /// checks the one on disk instead).
    pub(super) keys: Option<KeyFile>,
    /// One PHV per target, in lane order (empty: not loaded yet). A
    /// dropped target's is never read.
    pub(super) phvs: Vec<Phv>,
}

pub(super) enum Flow {
    Continue,
    Suspended,
}

impl<'a> Seeder<'a> {
    pub(super) fn emit(&self, e: Event) {
        if let Some(o) = &self.observer {
            o.event(&e);
        }
    }

    /// Runs the job from the first phase not recorded as done, until it
    /// completes, fails, or is suspended at a commit point.
    pub fn run(&mut self) -> Result<Outcome> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(self.threads)
            .build()
            .map_err(|e| Error::Job(JobError::ThreadPool { threads: self.threads, source: e }))?;
        let prog = self.ctx.reader().progress()?;
        if prog.lanes.len() != self.targets.len() {
            return Err(Error::corrupt_record(
                format!("context in {}", self.ctx.dir().display()),
                format!("progress of {} targets, the job has {}", prog.lanes.len(), self.targets.len()),
            ));
        }
        let mut st = State { pins: Vec::new(), prog, snapshot: Vec::new(), phf: None, keys: None, phvs: Vec::new() };
        self.emit(Event::Started { job_id: self.job_id(), resumed: self.resumed });
        if self.resumed {
            st.prog.resumes += 1;
            self.resumed = false;
        }
        // The phases run on this thread, not inside the pool: Copy's reader
        // thread borrows a pool worker to verify segments while this thread
        // waits for it, so holding a worker here deadlocks a 1-thread pool
        // (the bug "--threads 1 hangs forever").
        let result = self.run_phases(&mut st, &pool);
        // Pins last while the job runs; a resumed run takes them again.
        for (tier, token) in std::mem::take(&mut st.pins) {
            match tier {
                PinOn::Source => self.source.unpin(token),
                PinOn::Target(lane) => {
                    if let Some(t) = self.targets[lane] {
                        t.unpin(token);
                    }
                }
            }
        }
        if let Err(e) = &result {
            self.emit(Event::Failed { phase: Phase::after(st.prog.phase_done), message: e.to_string() });
        }
        result
    }

    pub(super) fn run_phases(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Outcome> {
        // A target the resume was not given is dropped (the resume refused
        // it unless the policy is drop), durably, before anything runs.
        let absent: Vec<usize> = st.prog.live().filter(|&lane| self.targets[lane].is_none()).collect();
        if !absent.is_empty() && st.prog.phase_done != Some(Phase::Done) {
            let phase = Phase::after(st.prog.phase_done);
            for lane in absent {
                self.lane_failed(st, lane, phase, Error::Job(JobError::TargetNotGiven))?;
            }
            let mut c = Commit::default();
            c.progress(&st.prog);
            self.ctx.commit(c)?;
        }
        if st.prog.phase_done >= Some(Phase::Select) {
            self.pin(st)?;
        }
        loop {
            let phase = Phase::after(st.prog.phase_done);
            if phase == Phase::Done && st.prog.phase_done == Some(Phase::Done) {
                let report = self.ctx.reader().report()?.ok_or_else(|| {
                    Error::corrupt_record(format!("context in {}", self.ctx.dir().display()), "job is done but has no report")
                })?;
                self.emit(Event::Completed(report.clone()));
                return Ok(Outcome::Completed(report));
            }
            self.emit(Event::PhaseStarted(phase));
            let flow = match phase {
                Phase::Select => self.select(st),
                Phase::BuildPhf => self.build_phf(st),
                Phase::Mark => self.mark(st),
                Phase::Copy => self.copy(st, pool),
                Phase::Verify => self.verify(st, pool),
                Phase::Switch => self.switch(st),
                Phase::Done => self.done(st),
            }
            .map_err(|e| e.in_phase(phase))?;
            if let Flow::Suspended = flow {
                return Ok(self.suspended(st));
            }
            self.emit(Event::PhaseFinished(phase));
            if phase != Phase::Done && self.suspend.is_requested() {
                return Ok(self.suspended(st));
            }
        }
    }

    pub(super) fn suspended(&mut self, st: &State) -> Outcome {
        // A request suspends one run: the next `run` proceeds.
        self.suspend.0.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut p = progress_of(&self.job, &st.prog);
        p.deferred = self.deferred.take();
        self.emit(Event::Suspended(p.clone()));
        Outcome::Suspended(p)
    }

    /// Commits `extra` plus the progress record, with `phase` recorded done.
    pub(super) fn commit_phase(&mut self, st: &mut State, phase: Phase, extra: Commit) -> Result<()> {
        let mut c = extra;
        st.prog.phase_done = Some(phase);
        c.progress(&st.prog);
        crashpoint::step("counting", &st.prog.total().target_containers.to_string());
        self.ctx.commit_phase(c)?;
        crashpoint::hit("phase.after_commit");
        Ok(())
    }

    /// The target of `lane`, which must be live.
    pub(super) fn target_of(&self, lane: usize) -> Result<&'a dyn TargetTier> {
        self.targets
            .get(lane)
            .copied()
            .flatten()
            .ok_or_else(|| Error::internal(format!("target #{} is used but was not given", lane + 1)))
    }

    /// `e` naming the target it happened on, in a job with several.
    pub(super) fn on_target(&self, lane: usize, e: Error) -> Error {
        if self.targets.len() == 1 {
            return e;
        }
        let id = self.job.target_ids().get(lane).map_or_else(String::new, |id| uuid::Uuid::from_bytes(*id).to_string());
        Error::Job(JobError::OnTarget { target: id, lane: lane + 1, error: Box::new(e) })
    }

    /// Target `lane` failed with `e` in `phase`. Under the fail policy, or
    /// when it is the last target left, the job fails with `e`; under the
    /// drop policy the target is marked dropped in memory (the caller's
    /// next commit records it) and the job goes on without it.
    pub(super) fn lane_failed(&mut self, st: &mut State, lane: usize, phase: Phase, e: Error) -> Result<()> {
        let others = st.prog.live().filter(|&l| l != lane).count();
        if self.job.on_failure == TargetFailure::Fail || others == 0 {
            return Err(self.on_target(lane, e));
        }
        // The report names the target beside the reason: the reason is
        // the phase and the error alone.
        let reason = format!("{phase}: {e}");
        log::warn!("dropping target #{}: {reason}", lane + 1);
        st.prog.lanes[lane].dropped = Some(reason.clone());
        let target = self.job.target_ids().get(lane).map_or_else(String::new, |id| uuid::Uuid::from_bytes(*id).to_string());
        self.emit(Event::TargetDropped { target, phase, reason });
        Ok(())
    }

    /// Records the progress (a dropped target, most often) in its own commit.
    pub(super) fn commit_progress(&mut self, st: &State) -> Result<()> {
        let mut c = Commit::default();
        c.progress(&st.prog);
        self.ctx.commit(c)
    }

    /// Pins the snapshot on the source and what the job writes on the
    /// target, until Switch is done (space reclamation keeps them).
    pub(super) fn pin(&self, st: &mut State) -> Result<()> {
        if !st.pins.is_empty() || st.prog.phase_done >= Some(Phase::Switch) {
            return Ok(());
        }
        self.need_snapshot(st)?;
        // Durable holds first: they outlive this run (a suspension, a
        // crash), so that reclamation in another process never deletes
        // what a resume will read (the bug "gc while a job is suspended").
        let job_id = uuid::Uuid::from_bytes(self.job.job_id);
        let state_dir = std::fs::canonicalize(self.ctx.dir()).unwrap_or_else(|_| self.ctx.dir().to_path_buf());
        let hold = |below: Option<ContainerId>, from: Option<ContainerId>| crate::tier::JobHold {
            job_id,
            state_dir: state_dir.clone(),
            below,
            from,
        };
        self.source.hold(&hold(st.snapshot.last().map(|c| ContainerId(c.0 + 1)), None))?;
        for lane in st.prog.live().collect::<Vec<_>>() {
            let floor = st.prog.lanes[lane].floor.unwrap_or(0);
            self.target_of(lane)?.hold(&hold(None, Some(ContainerId(floor))))?;
        }
        st.pins.push((PinOn::Source, self.source.pin(&st.snapshot, None)?));
        for lane in st.prog.live().collect::<Vec<_>>() {
            let floor = st.prog.lanes[lane].floor.unwrap_or(0);
            st.pins.push((PinOn::Target(lane), self.target_of(lane)?.pin(&[], Some(ContainerId(floor)))?));
        }
        Ok(())
    }

    /// Releases the job's durable holds once it is done. A failure is
    /// logged, not returned: the job is complete, and reclamation drops
    /// the hold of a finished job anyway.
    pub(super) fn release_holds(&self) {
        let job_id = uuid::Uuid::from_bytes(self.job.job_id);
        let tiers = std::iter::once(self.source as &dyn Tier).chain(self.targets.iter().flatten().map(|t| *t as &dyn Tier));
        for t in tiers {
            if let Err(e) = t.release_hold(&job_id) {
                log::warn!("job {job_id}: its hold on a tier was not released ({e}); space reclamation drops it");
            }
        }
    }

    // Lazy loaders: a resumed job reads what the phases before it persisted.

    pub(super) fn need_snapshot(&self, st: &mut State) -> Result<()> {
        if st.snapshot.is_empty() && st.prog.counters.containers_total > 0 {
            st.snapshot = self.ctx.reader().snapshot()?;
        }
        Ok(())
    }

    /// The selected files, streamed from the context window by window.
    pub(super) fn selected(&self, st: &State) -> SelectedFiles<'_> {
        SelectedFiles::new(self.ctx.reader(), st.prog.counters.files_selected)
    }

    pub(super) fn need_phf(&self, st: &mut State) -> Result<()> {
        if st.phf.is_none() {
            let r = self.ctx.reader().phf()?;
            let phf = Phf::load(&self.ctx.dir().join(&r.file), r.keys)?;
            if phf.kind() != self.job.phf {
                return Err(Error::corrupt_record(
                    format!("PHF blob {}", self.ctx.dir().join(&r.file).display()),
                    format!("holds a {} function, the job builds {}", phf.kind(), self.job.phf),
                ));
            }
            st.phf = Some(phf);
        }
        Ok(())
    }

    pub(super) fn need_phv(&self, st: &mut State) -> Result<()> {
        self.need_phf(st)?;
        if st.phvs.is_empty() {
            let keys = st.phf.as_ref().map_or(0, |p| p.keys);
            for lane in 0..st.prog.lanes.len() {
                let mut phv = Phv::zeroed(keys);
                if st.prog.lanes[lane].dropped.is_none() {
                    self.ctx.reader().load_phv(lane, &mut phv)?;
                }
                st.phvs.push(phv);
            }
        }
        Ok(())
    }

    pub(super) fn select(&mut self, st: &mut State) -> Result<Flow> {
        // The selected files go to the context chunk by chunk as the
        // namespace is read, so memory holds one page and one chunk.
        let (mut files, mut bytes, mut chunks) = (0u64, 0u64, 0u64);
        let mut chunk: Vec<FileEntry> = Vec::with_capacity(FILES_PER_CHUNK);
        let ctx = &mut self.ctx;
        crate::engine::selection::for_each_selected(self.source, &self.job.selection, self.job.created, &mut |e| {
            files += 1;
            bytes += e.size;
            chunk.push(e);
            if chunk.len() == FILES_PER_CHUNK {
                ctx.put_file_chunk(chunks, &chunk)?;
                chunks += 1;
                chunk.clear();
            }
            Ok(())
        })?;
        if !chunk.is_empty() {
            self.ctx.put_file_chunk(chunks, &chunk)?;
        }
        drop(chunk);
        // The snapshot: containers written from now on are not this job's.
        let snapshot = self.source.container_ids()?;
        let c = &mut st.prog.counters;
        c.files_selected = files;
        c.bytes_selected = bytes;
        c.containers_total = snapshot.len() as u64;
        // Containers a target gets from now on are this job's (or a
        // concurrent writer's): a resume counts what it finds in them as
        // copied, not as already there.
        for lane in st.prog.live().collect::<Vec<_>>() {
            match self.target_of(lane)?.container_ids() {
                Ok(ids) => st.prog.lanes[lane].floor = Some(ids.last().map_or(0, |c| c.0 + 1)),
                Err(e) => self.lane_failed(st, lane, Phase::Select, e)?,
            }
        }
        let mut commit = Commit::default();
        commit.snapshot(&snapshot);
        self.commit_phase(st, Phase::Select, commit)?;
        st.snapshot = snapshot;
        self.pin(st)?;
        Ok(Flow::Continue)
    }

    pub(super) fn build_phf(&mut self, st: &mut State) -> Result<Flow> {
        self.need_snapshot(st)?;
        // One scan of the source index writes the snapshot's key file; the
        // PHF's levels read the file, and so does Mark's leaf check.
        let keys_path = self.ctx.dir().join(crate::format::layout::keys_file(&self.job_id()));
        let written = crate::mark::keys::write(self.source, &st.snapshot, &keys_path)?;
        let phf = Phf::build(&written.file, self.job.phf, self.job.gamma, self.threads)?;
        st.keys = Some(written.file);
        let file = crate::format::layout::phf_file(&self.job_id());
        phf.persist(&self.ctx.dir().join(&file), self.job.gamma)?;
        let mut c = Commit::default();
        c.phf(&PhfRef { file, keys: phf.keys }).homed(&written.homed);
        self.commit_phase(st, Phase::BuildPhf, c)?;
        st.phf = Some(phf);
        Ok(Flow::Continue)
    }

    pub(super) fn mark(&mut self, st: &mut State) -> Result<Flow> {
        self.need_snapshot(st)?;
        self.need_phf(st)?;
        let Some(phf) = st.phf.as_ref() else { return Err(Error::internal("Mark started without a PHF")) };
        // The key file BuildPhf wrote; one that is gone or damaged (a
        // crash before it reached the disk, a cleaned state directory) is
        // not needed: the leaves are then looked up in the index.
        let keys_path = self.ctx.dir().join(crate::format::layout::keys_file(&self.job_id()));
        let keys = match st.keys.take().map_or_else(|| KeyFile::open(&keys_path, phf.keys), Ok) {
            Ok(k) => Some(k),
            Err(e) => {
                log::info!("Mark: {e}; the reached leaves are looked up in the source index instead");
                None
            }
        };
        let scratch = self.ctx.dir().join(crate::format::layout::scratch_dir(&self.job_id()));
        // Mark always starts from zero: it is short and redone whole.
        let mut phv = Phv::zeroed(phf.keys);
        let snapshot = &st.snapshot;
        let observer = self.observer.clone();
        let scratch = scratch.join("mark");
        let leaves = LeafCheck::Spool { scratch: &scratch, keys: keys.as_ref() };
        let names = self.selected(st);
        let marked = mark(
            self.source,
            phf,
            &|c| snapshot.binary_search(&c).is_ok(),
            &mut self.selected(st),
            &names,
            &mut phv,
            leaves,
            &mut |n| {
                if let Some(o) = &observer {
                    o.event(&Event::Marked { segments: n });
                }
            },
        )?;
        st.prog.counters.segments_marked = marked.distinct;
        // Every target starts from the same marks; each drops what it has.
        phv.mark_all_dirty();
        let mut phvs: Vec<Phv> = vec![phv; st.prog.lanes.len()];
        let mut c = Commit::default();
        for lane in st.prog.live().collect::<Vec<_>>() {
            c.phv(lane, &mut phvs[lane]);
        }
        c.mark_sum(&MarkSumRecord { count: marked.sum.count, lanes: marked.sum.lanes });
        self.commit_phase(st, Phase::Mark, c)?;
        st.phvs = phvs;
        // Needed by no later phase (a resume past Mark never reads it).
        let _ = std::fs::remove_file(&keys_path);
        let _ = std::fs::remove_dir_all(scratch.parent().unwrap_or(&scratch));
        Ok(Flow::Continue)
    }

    pub(super) fn verify(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
        self.need_phv(st)?;
        self.need_snapshot(st)?;
        let Some(phf) = st.phf.as_ref() else { return Err(Error::internal("Verify started without a PHF")) };
        let snapshot = &st.snapshot;
        let in_snapshot = |c: ContainerId| snapshot.binary_search(&c).is_ok();
        // The checksum of the marked set, as Mark committed it. A job
        // marked by an older build has none: recompute it from the source
        // (the same walk Mark did, into scratch bits).
        let expected = if let Some(m) = self.ctx.reader().mark_sum()? {
            SetSum { count: m.count, lanes: m.lanes }
        } else {
            let names = self.selected(st);
            let mut files = self.selected(st);
            let scratch = &mut Phv::zeroed(phf.keys);
            mark(self.source, phf, &in_snapshot, &mut files, &names, scratch, LeafCheck::Lookup, &mut |_| {})?.sum
        };
        // Each target is proven on its own, all at once (the walks wait on
        // different devices); then each verdict is judged in turn: a target
        // that fails is rewound to Copy (fail policy, or the last target
        // left) or dropped.
        // A live target was given (run dropped the others first), so this
        // fails only on an engine bug.
        let targets = st.prog.live().map(|lane| self.target_of(lane).map(|t| (lane, t))).collect::<Result<Vec<_>>>()?;
        let (source, level, observer) = (self.source, self.verify, self.observer.clone());
        let files = &self.selected(st);
        let scratch = self.ctx.dir().join(crate::format::layout::scratch_dir(&self.job_id()));
        let scratch = &scratch;
        let prove = |lane: usize, target: &dyn TargetTier| -> Result<Verdict> {
            let phv = st.phvs.get(lane).ok_or_else(|| Error::internal("Verify started without a PHV per target"))?;
            let missing = phv.count_ones();
            if missing > 0 {
                let (names, count) =
                    affected_files(source, phf, phv, &mut files.again(), &|f| Ok(vec![true; f.len()]), MAX_FILES_NAMED);
                let more = if count > names.len() { format!("; and {} more", count - names.len()) } else { String::new() };
                return Err(Error::Job(JobError::Incomplete { missing, files: format!("{}{more}", names.join("; ")) }));
            }
            let observer = observer.clone();
            let scratch = scratch.join(format!("verify-{lane}"));
            verify_target(source, target, phf, &mut files.again(), files, level, &scratch, pool, &mut |done, total| {
                if let Some(o) = &observer {
                    o.event(&Event::Verifying { target_index: lane, containers: done, total });
                }
            })
        };
        let results: Vec<(usize, Result<Verdict>)> = if let [(lane, target)] = targets.as_slice() {
            vec![(*lane, prove(*lane, *target))]
        } else {
            std::thread::scope(|s| {
                let running: Vec<_> =
                    targets.iter().map(|&(lane, target)| (lane, s.spawn(move || prove(lane, target)))).collect();
                running
                    .into_iter()
                    .map(|(lane, h)| (lane, h.join().unwrap_or_else(|_| Err(Error::internal("a Verify thread panicked")))))
                    .collect()
            })
        };
        for (lane, verdict) in results {
            let rewind = self.job.on_failure == TargetFailure::Fail || st.prog.live().count() == 1;
            // Bits still set after Copy: a resume must go back to Copy for
            // them, as after any other failed proof (the bug "Incomplete
            // does not rewind": every resume failed the same way).
            let verdict = match verdict {
                Err(e @ Error::Job(JobError::Incomplete { .. })) if rewind => self.rewind_to_copy(st, lane).and(Err(e)),
                v => v,
            };
            if let Err(e) = verdict.and_then(|v| self.judge(st, lane, v, &expected, rewind)) {
                self.lane_failed(st, lane, Phase::Verify, e)?;
                self.commit_progress(st)?;
            }
        }
        self.commit_phase(st, Phase::Verify, Commit::default())?;
        // The spools remove themselves; their directory goes with the phase.
        let _ = std::fs::remove_dir_all(scratch);
        Ok(Flow::Continue)
    }

    /// Judges target `lane`'s Verify walk. On failure with `rewind`, what
    /// could not be proven goes back into the target's PHV and the job back
    /// to Copy, durably, before the error returns.
    pub(super) fn judge(&mut self, st: &mut State, lane: usize, verdict: Verdict, expected: &SetSum, rewind: bool) -> Result<()> {
        let Some(phf) = st.phf.as_ref() else { return Err(Error::internal("Verify started without a PHF")) };
        let failed = verdict.failed;
        let mut problems = verdict.problems;
        let mut reasons = verdict.reasons;
        if verdict.sum != *expected && problems == 0 {
            problems += 1;
            reasons.push(format!(
                "the target walk reached {} distinct segments, Mark marked {} (checksums differ)",
                verdict.sum.count, expected.count
            ));
        }
        if problems > 0 {
            let segments = failed.count_ones();
            let (files, count) =
                affected_files(self.source, phf, &failed, &mut self.selected(st), &|f| Ok(vec![true; f.len()]), usize::MAX);
            // Put what could not be proven back in the PHV and rewind to
            // Copy, so that a resume copies it again (a target that lost a
            // container, or was replaced by an older copy of itself, heals
            // on resume). Nothing is switched or removed.
            if rewind && let Some(phv) = st.phvs.get_mut(lane) {
                for slot in failed.ones() {
                    phv.set(slot);
                }
                self.rewind_to_copy(st, lane)?;
            }
            return Err(Error::Job(JobError::VerifyFailed {
                level: self.verify.name(),
                segments,
                problems,
                reasons,
                files,
                file_count: count,
            }));
        }
        self.emit(Event::Verified {
            target_index: lane,
            level: self.verify,
            segments: verdict.sum.count,
            containers: verdict.containers,
            hashed: verdict.hashed,
        });
        Ok(())
    }

    /// Durably sends the job back to Copy with target `lane`'s PHV as it
    /// is in memory, so that a resume copies whatever is set in it.
    pub(super) fn rewind_to_copy(&mut self, st: &mut State, lane: usize) -> Result<()> {
        let Some(phv) = st.phvs.get_mut(lane) else { return Err(Error::internal("rewind without a PHV for the target")) };
        let mut c = Commit::default();
        c.phv(lane, phv);
        st.prog.phase_done = Some(Phase::Mark);
        st.prog.copy_cursor = 0;
        c.progress(&st.prog);
        self.ctx.commit(c)
    }

    /// Asks the switch gate about `stage`, unless an approval for it is
    /// recorded; records the answer. `Some(flow)` when the job must stop.
    pub(super) fn ask_gate(&mut self, st: &mut State, stage: SwitchStage) -> Result<Option<Flow>> {
        let name = match stage {
            SwitchStage::Switch => "switch",
            _ => "source removal",
        };
        crashpoint::hit("switch.gate");
        if self.ctx.reader().gate(name)?.is_some_and(|g| g.answer == 0) {
            return Ok(None);
        }
        let Some(gate) = self.gate.clone() else { return Ok(None) };
        let request = SwitchRequest {
            job_id: self.job_id(),
            stage,
            files: st.prog.counters.files_selected,
            bytes: st.prog.counters.bytes_selected,
            targets: {
                let ids = self.job.target_ids();
                st.prog.live().filter_map(|l| ids.get(l)).map(|id| uuid::Uuid::from_bytes(*id).to_string()).collect()
            },
        };
        let answer = gate.decide(&request);
        self.emit(Event::Gate { stage, answer: answer.clone() });
        let (code, reason) = match &answer {
            GateAnswer::Approve => (0, String::new()),
            GateAnswer::Defer(r) => (1, r.clone()),
            GateAnswer::Reject(r) => (2, r.clone()),
        };
        let mut c = Commit::default();
        c.gate(name, &GateRecord { answer: code, reason: reason.clone() }).progress(&st.prog);
        self.ctx.commit(c)?;
        match answer {
            GateAnswer::Approve => Ok(None),
            GateAnswer::Defer(_) => {
                self.deferred = Some(reason);
                Ok(Some(Flow::Suspended))
            }
            GateAnswer::Reject(_) => Err(Error::Job(JobError::SwitchRejected { stage: name, reason })),
        }
    }

    pub(super) fn switch(&mut self, st: &mut State) -> Result<Flow> {
        let chunks = st.prog.counters.files_selected.div_ceil(FILES_PER_CHUNK as u64);
        if st.prog.lanes.iter().all(|l| l.switch_cursor == 0)
            && let Some(flow) = self.ask_gate(st, SwitchStage::Switch)?
        {
            return Ok(flow);
        }
        // Each target's namespace gets the entries in turn, with its own
        // cursor.
        for lane in st.prog.live().collect::<Vec<_>>() {
            let target = self.target_of(lane)?;
            while st.prog.lanes[lane].switch_cursor < chunks {
                let entries = self.ctx.reader().file_chunk(st.prog.lanes[lane].switch_cursor)?;
                if let Err(e) = target.upsert_files(&entries) {
                    self.lane_failed(st, lane, Phase::Switch, e)?;
                    self.commit_progress(st)?;
                    break;
                }
                let l = &mut st.prog.lanes[lane];
                l.switch_cursor += 1;
                l.counters.files_switched += entries.len() as u64;
                self.commit_progress(st)?;
                let live: Vec<usize> = st.prog.live().collect();
                let files = live.iter().map(|&l| st.prog.lanes[l].counters.files_switched).sum();
                self.emit(Event::Switched { files, total: st.prog.counters.files_selected * live.len() as u64 });
                crashpoint::hit("switch.between_batches");
                let more = live.iter().any(|&l| st.prog.lanes[l].switch_cursor < chunks);
                if self.suspend.is_requested() && more {
                    return Ok(Flow::Suspended);
                }
            }
        }
        // A move removes a file from the source only once every target of
        // the job has it: with a target dropped, the source keeps them all.
        let dropped = st.prog.lanes.iter().any(|l| l.dropped.is_some());
        if self.job.mode == Mode::Move && dropped {
            log::warn!("a target was dropped: the source keeps every selected file");
        }
        if self.job.mode == Mode::Move && !dropped {
            if st.prog.remove_cursor == 0 {
                crashpoint::hit("switch.before_source_removal");
                if let Some(flow) = self.ask_gate(st, SwitchStage::SourceRemoval)? {
                    return Ok(flow);
                }
            }
            while st.prog.remove_cursor < chunks {
                let entries = self.ctx.reader().file_chunk(st.prog.remove_cursor)?;
                let gone = self.source.remove_files(&entries)?;
                if gone.len() != entries.len() {
                    return Err(Error::contract(
                        "remove_files on the source",
                        format!("answered {} entries for {} asked", gone.len(), entries.len()),
                    ));
                }
                st.prog.remove_cursor += 1;
                let removed = gone.iter().filter(|g| **g).count() as u64;
                st.prog.counters.files_removed += removed;
                st.prog.counters.files_kept += entries.len() as u64 - removed;
                self.commit_progress(st)?;
            }
        }
        self.commit_phase(st, Phase::Switch, Commit::default())?;
        Ok(Flow::Continue)
    }

    pub(super) fn done(&mut self, st: &mut State) -> Result<Flow> {
        let report = Report {
            job_id: self.job_id(),
            mode: self.job.mode,
            counters: st.prog.total(),
            resumes: st.prog.resumes,
            targets: targets_report(&self.job, &st.prog),
        };
        let mut c = Commit::default();
        c.report(&report);
        self.commit_phase(st, Phase::Done, c)?;
        self.release_holds();
        // Scratch a crash left behind a phase that then completed (a key
        // file past Mark, spools past Verify) is read by nothing now.
        let dir = self.ctx.dir();
        let _ = std::fs::remove_file(dir.join(crate::format::layout::keys_file(&self.job_id())));
        let _ = std::fs::remove_dir_all(dir.join(crate::format::layout::scratch_dir(&self.job_id())));
        Ok(Flow::Continue)
    }
}

/// Whether target container `c` exists and its metadata reads back,
/// asking the tier once per container per run.
pub(super) fn target_has(target: &dyn Tier, c: ContainerId, cache: &mut HashMap<ContainerId, bool>) -> Result<bool> {
    if let Some(&known) = cache.get(&c) {
        return Ok(known);
    }
    let here = match target.read_metadata(c) {
        Ok(_) => true,
        Err(e) => match e.root() {
            Error::Tier(TierError::MissingContainer { .. })
            | Error::Format(
                FormatError::CorruptContainer { .. } | FormatError::CorruptRecord { .. } | FormatError::UnsupportedVersion { .. },
            ) => {
                log::warn!("target container {c} is indexed but unusable ({e}); its segments are copied again");
                false
            }
            _ => return Err(e),
        },
    };
    cache.insert(c, here);
    Ok(here)
}
