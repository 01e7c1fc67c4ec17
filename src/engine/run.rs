//! The phases of a job and their commit points.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use super::context::{Commit, FILES_PER_CHUNK, GateRecord, MarkSumRecord, PhfRef, ProgressRecord, SelectedFiles};
use super::verify::{Verdict, verify_target};
use super::{
    Event, GateAnswer, Mode, Outcome, Phase, Report, Seeder, SwitchRequest, SwitchStage, TargetFailure, ThrottleHandle,
    progress_of, targets_report,
};
use crate::error::{Error, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::keys::KeyFile;
use crate::mark::marks::{LeafCheck, SetSum, affected_files, mark};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::testing::crashpoint;
use crate::tier::pack::{Batch, OwnedSegment, Packer, Sealed};
use crate::tier::{ContainerKind, SegmentEntry};
use crate::tier::{FileEntry, TargetTier, Tier};

/// Copy commits at least this often (in source containers) even when no
/// target container is sealed, so a resume after a run of fully
/// deduplicated containers does not redo much lookup work.
const COMMIT_EVERY_CONTAINERS: u64 = 64;
/// Source containers read ahead of the one being written.
const READ_AHEAD: usize = 2;
/// Target containers written at once by Copy's writer threads. On this
/// project's disk one sequential fsync per 4 MiB container caps writes at
/// about 330 MiB/s; two in flight reach its full 1.4 GiB/s. A crash redoes
/// at most what is in flight plus the container filling.
const WRITERS: usize = 2;
/// Files named in an error, at most.
const MAX_FILES_NAMED: usize = 20;

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
    prog: ProgressRecord,
    snapshot: Vec<ContainerId>,
    phf: Option<Phf>,
    /// The key file BuildPhf wrote in this run (a resumed Mark opens and
    /// checks the one on disk instead).
    keys: Option<KeyFile>,
    /// One PHV per target, in lane order (empty: not loaded yet). A
    /// dropped target's is never read.
    phvs: Vec<Phv>,
}

enum Flow {
    Continue,
    Suspended,
}

/// One source container's worth of work handed from the reader thread to
/// the writer.
struct Loaded {
    index: u64,
    id: ContainerId,
    kind: ContainerKind,
    /// Marked segments: table entry, slot, verified bytes as stored.
    segments: Vec<(SegmentEntry, u64, Vec<u8>)>,
    bytes: u64,
    /// Nothing was marked: the data was not read.
    skipped: bool,
}

impl<'a> Seeder<'a> {
    fn emit(&self, e: Event) {
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
            .map_err(|e| Error::ThreadPool { threads: self.threads, source: e })?;
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

    fn run_phases(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Outcome> {
        // A target the resume was not given is dropped (the resume refused
        // it unless the policy is drop), durably, before anything runs.
        let absent: Vec<usize> = st.prog.live().filter(|&lane| self.targets[lane].is_none()).collect();
        if !absent.is_empty() && st.prog.phase_done != Some(Phase::Done) {
            let phase = Phase::after(st.prog.phase_done);
            for lane in absent {
                self.lane_failed(st, lane, phase, Error::TargetNotGiven)?;
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
            .map_err(|e| e.in_phase(phase.name()))?;
            if let Flow::Suspended = flow {
                return Ok(self.suspended(st));
            }
            self.emit(Event::PhaseFinished(phase));
            if phase != Phase::Done && self.suspend.is_requested() {
                return Ok(self.suspended(st));
            }
        }
    }

    fn suspended(&mut self, st: &State) -> Outcome {
        // A request suspends one run: the next `run` proceeds.
        self.suspend.0.store(false, std::sync::atomic::Ordering::SeqCst);
        let mut p = progress_of(&self.job, &st.prog);
        p.deferred = self.deferred.take();
        self.emit(Event::Suspended(p.clone()));
        Outcome::Suspended(p)
    }

    /// Commits `extra` plus the progress record, with `phase` recorded done.
    fn commit_phase(&mut self, st: &mut State, phase: Phase, extra: Commit) -> Result<()> {
        let mut c = extra;
        st.prog.phase_done = Some(phase);
        c.progress(&st.prog);
        crashpoint::step("counting", &st.prog.total().target_containers.to_string());
        self.ctx.commit_phase(c)?;
        crashpoint::hit("phase.after_commit");
        Ok(())
    }

    /// The target of `lane`, which must be live.
    fn target_of(&self, lane: usize) -> Result<&'a dyn TargetTier> {
        self.targets
            .get(lane)
            .copied()
            .flatten()
            .ok_or_else(|| Error::internal(format!("target #{} is used but was not given", lane + 1)))
    }

    /// `e` naming the target it happened on, in a job with several.
    fn on_target(&self, lane: usize, e: Error) -> Error {
        if self.targets.len() == 1 {
            return e;
        }
        let id = self.job.target_ids().get(lane).map_or_else(String::new, |id| uuid::Uuid::from_bytes(*id).to_string());
        Error::OnTarget { target: id, lane: lane + 1, error: Box::new(e) }
    }

    /// Target `lane` failed with `e` in `phase`. Under the fail policy, or
    /// when it is the last target left, the job fails with `e`; under the
    /// drop policy the target is marked dropped in memory (the caller's
    /// next commit records it) and the job goes on without it.
    fn lane_failed(&mut self, st: &mut State, lane: usize, phase: Phase, e: Error) -> Result<()> {
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
    fn commit_progress(&mut self, st: &State) -> Result<()> {
        let mut c = Commit::default();
        c.progress(&st.prog);
        self.ctx.commit(c)
    }

    /// Pins the snapshot on the source and what the job writes on the
    /// target, until Switch is done (space reclamation keeps them).
    fn pin(&self, st: &mut State) -> Result<()> {
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
    fn release_holds(&self) {
        let job_id = uuid::Uuid::from_bytes(self.job.job_id);
        let tiers = std::iter::once(self.source as &dyn Tier).chain(self.targets.iter().flatten().map(|t| *t as &dyn Tier));
        for t in tiers {
            if let Err(e) = t.release_hold(&job_id) {
                log::warn!("job {job_id}: its hold on a tier was not released ({e}); space reclamation drops it");
            }
        }
    }

    // Lazy loaders: a resumed job reads what the phases before it persisted.

    fn need_snapshot(&self, st: &mut State) -> Result<()> {
        if st.snapshot.is_empty() && st.prog.counters.containers_total > 0 {
            st.snapshot = self.ctx.reader().snapshot()?;
        }
        Ok(())
    }

    /// The selected files, streamed from the context window by window.
    fn selected(&self, st: &State) -> SelectedFiles<'_> {
        SelectedFiles::new(self.ctx.reader(), st.prog.counters.files_selected)
    }

    fn need_phf(&self, st: &mut State) -> Result<()> {
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

    fn need_phv(&self, st: &mut State) -> Result<()> {
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

    fn select(&mut self, st: &mut State) -> Result<Flow> {
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

    fn build_phf(&mut self, st: &mut State) -> Result<Flow> {
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

    fn mark(&mut self, st: &mut State) -> Result<Flow> {
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

    fn copy(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
        self.need_snapshot(st)?;
        self.need_phv(st)?;
        let Some(phf) = st.phf.take() else { return Err(Error::internal("Copy started without a PHF")) };
        if st.phvs.len() != st.prog.lanes.len() {
            st.phf = Some(phf);
            return Err(Error::internal("Copy started without a PHV per target"));
        }
        let phvs: Vec<RwLock<Phv>> = std::mem::take(&mut st.phvs).into_iter().map(RwLock::new).collect();
        // Which targets are still in the job, for the reader: a dropped
        // target's bits no longer make it read anything.
        let live: Vec<AtomicBool> = st.prog.lanes.iter().map(|l| AtomicBool::new(l.dropped.is_none())).collect();
        let stop = AtomicBool::new(false);
        let snapshot = std::mem::take(&mut st.snapshot);
        let start = st.prog.copy_cursor;
        // A job whose BuildPhf predates the counts looks every candidate up.
        let homed = self.ctx.reader().homed()?.filter(|h| h.len() == snapshot.len());
        let result = std::thread::scope(|s| {
            // Three stages: the reader loads and verifies source containers
            // (hashing on the pool) once for every target, this thread
            // decides and packs for each target, and each target's writers
            // seal its container k (write, fsync, rename, directory fsync,
            // index) while k+1 fills.
            let (tx, rx) = sync_channel::<Result<Loaded>>(READ_AHEAD);
            let (phf, phvs, live, snapshot, stop, homed) = (&phf, &phvs, &live, &snapshot, &stop, homed.as_deref());
            let source = self.source;
            s.spawn(move || {
                pool.install(|| {
                    for index in start..snapshot.len() as u64 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let r = load_container(source, phf, phvs, live, snapshot, homed, index);
                        let failed = r.is_err();
                        if tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                });
            });
            let mut lanes = Vec::new();
            for no in st.prog.live().collect::<Vec<_>>() {
                let target = self.target_of(no)?;
                let pipe = spawn_writers(s, target, self.throttle.clone(), phf, &phvs[no]);
                let size = target.container_target_size();
                lanes.push(Lane {
                    no,
                    target,
                    // One packer per kind, so recipes stay in meta containers on the target too.
                    packers: [Packer::new(ContainerKind::Data, size), Packer::new(ContainerKind::Meta, size)],
                    pipe,
                    on_target: HashMap::new(),
                    adopted: HashSet::new(),
                    floor: st.prog.lanes[no].floor,
                });
            }
            let r = self.copy_loop(st, rx, &mut lanes, phf, phvs, live, snapshot, start);
            stop.store(true, Ordering::SeqCst);
            // Closing the submission channels ends the writers; a container
            // still in flight is waited for by the scope, and is either
            // indexed (found again by the batched lookup on resume) or not.
            drop(lanes);
            r
        });
        st.snapshot = snapshot;
        st.phf = Some(phf);
        st.phvs = phvs.into_iter().map(|p| p.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner)).collect();
        let flow = result?;
        if let Flow::Continue = flow {
            // All sealed by copy_loop; record the phase with the final PHV words.
            let mut c = Commit::default();
            for (lane, p) in st.phvs.iter_mut().enumerate() {
                c.phv(lane, p);
            }
            st.prog.copy_cursor = st.prog.counters.containers_total;
            self.commit_phase(st, Phase::Copy, c)?;
        }
        Ok(flow)
    }

    #[allow(clippy::too_many_arguments)]
    fn copy_loop(
        &mut self,
        st: &mut State,
        rx: std::sync::mpsc::Receiver<Result<Loaded>>,
        lanes: &mut Vec<Lane<'a, '_>>,
        phf: &Phf,
        phvs: &[RwLock<Phv>],
        live: &[AtomicBool],
        snapshot: &[ContainerId],
        start: u64,
    ) -> Result<Flow> {
        let total = snapshot.len() as u64;
        let mut since_commit = 0u64;
        for index in start..total {
            let mut loaded = match rx.recv() {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => return Err(self.explain_copy_error(st, phf, phvs, e)),
                Err(_) => return Err(Error::internal("Copy's reader thread stopped before the last container")),
            };
            if loaded.index != index {
                return Err(Error::internal(format!(
                    "Copy's reader delivered container #{} where #{index} was due",
                    loaded.index
                )));
            }
            // Whether a target container was sealed (or a target dropped):
            // then commit now.
            let mut commit = false;
            if loaded.skipped {
                st.prog.counters.containers_skipped += 1;
                self.emit(Event::ContainerSkipped { source: loaded.id, done: index + 1, total });
            } else {
                st.prog.counters.containers_read += 1;
                commit |=
                    self.each_lane(st, lanes, live, |me, st, lane, last| me.copy_into(st, lane, &mut loaded, index, last))?;
                self.emit(Event::ContainerCopied {
                    source: loaded.id,
                    segments: loaded.segments.len() as u64,
                    bytes: loaded.bytes,
                    done: index + 1,
                    total,
                });
            }
            // A container that finished writing meanwhile is committed now,
            // not when the next one is ready.
            commit |= self.each_lane(st, lanes, live, |me, st, lane, _| me.poll_written(st, lane))?;
            since_commit += 1;
            let suspend = self.suspend.is_requested();
            if suspend {
                // Seal what is pending so the suspension point is one clean
                // commit with nothing half-packed or in flight.
                self.each_lane(st, lanes, live, |me, st, lane, _| me.flush(st, lane))?;
            }
            if commit || suspend || since_commit >= COMMIT_EVERY_CONTAINERS {
                self.commit_copy(st, phvs, cursor(index + 1, lanes))?;
                since_commit = 0;
                if suspend {
                    return Ok(Flow::Suspended);
                }
            }
        }
        if self.each_lane(st, lanes, live, |me, st, lane, _| me.flush(st, lane))? {
            self.commit_copy(st, phvs, cursor(total, lanes))?;
        }
        Ok(Flow::Continue)
    }

    /// Runs `step` on every target still in the job (told whether it is the
    /// last one this round). A target whose step
    /// fails is dropped (its writers stop) under the drop policy, or fails
    /// the job. True when a step said so or a target was dropped: the
    /// caller commits.
    fn each_lane<'p>(
        &mut self,
        st: &mut State,
        lanes: &mut Vec<Lane<'a, 'p>>,
        live: &[AtomicBool],
        mut step: impl FnMut(&mut Self, &mut State, &mut Lane<'a, 'p>, bool) -> Result<bool>,
    ) -> Result<bool> {
        let mut any = false;
        let mut k = 0;
        while k < lanes.len() {
            let last = k + 1 == lanes.len();
            match step(self, st, &mut lanes[k], last) {
                Ok(said) => {
                    any |= said;
                    k += 1;
                }
                Err(e) => {
                    let no = lanes[k].no;
                    self.lane_failed(st, no, Phase::Copy, e)?;
                    live[no].store(false, Ordering::SeqCst);
                    lanes.remove(k);
                    any = true;
                }
            }
        }
        Ok(any)
    }

    /// Hands one loaded source container's marked segments to one target:
    /// drops what the target has, packs the rest. The `last` target takes
    /// the bytes; the others get copies. True when a target container was
    /// sealed meanwhile.
    fn copy_into(
        &mut self,
        st: &mut State,
        lane: &mut Lane<'a, '_>,
        loaded: &mut Loaded,
        index: u64,
        last: bool,
    ) -> Result<bool> {
        let k = kind_slot(loaded.kind);
        // Still needed by this target: the bit is set and it is not already
        // waiting in a packer of either kind or in a container being
        // written (a segment can sit in two source containers, and the same
        // bytes can be data and a recipe).
        let wanted: Vec<(SegmentEntry, u64, Vec<u8>)> = {
            let bits = read(lane.pipe.phv);
            loaded
                .segments
                .iter_mut()
                .filter(|(e, slot, _)| {
                    bits.get(*slot) && !lane.packers.iter().any(|p| p.holds(&e.fingerprint)) && !lane.pipe.holds(&e.fingerprint)
                })
                .map(|(e, slot, b)| (*e, *slot, if last { std::mem::take(b) } else { b.clone() }))
                .collect()
        };
        if wanted.is_empty() {
            return Ok(false);
        }
        let fps: Vec<Fingerprint> = wanted.iter().map(|l| l.0.fingerprint).collect();
        let on_target = lane.target.locate(&fps)?;
        // A move relies on what the target already had only once this job
        // has read it back and hashed it (see `prove`); a copy trusts the
        // target's index and tables, as Verify's `metadata` level does.
        let prove = self.job.mode == Mode::Move;
        let mut to_prove: Vec<(SegmentEntry, u64, Vec<u8>, ContainerId)> = Vec::new();
        let mut sealed = false;
        for ((entry, slot, bytes), present) in wanted.into_iter().zip(on_target) {
            // An index entry counts only if its container is there: a
            // target that lost a container (or was replaced by an older
            // copy of itself) must get the segment again.
            let present = match present {
                Some(c) if target_has(lane.target, c, &mut lane.on_target)? => Some(c),
                _ => None,
            };
            if let Some(c) = present {
                // Written by this job in a run that stopped before
                // committing it: verified before it was written.
                let ours = lane.floor.is_some_and(|f| c.0 >= f);
                if prove && !ours {
                    to_prove.push((entry, slot, bytes, c));
                    continue;
                }
                write(lane.pipe.phv).clear(slot);
                let counters = &mut st.prog.lanes[lane.no].counters;
                if ours {
                    // Copied by this job, not "already there".
                    counters.segments_adopted += 1;
                    counters.segments_copied += 1;
                    counters.bytes_copied += bytes.len() as u64;
                    if lane.adopted.insert(c) {
                        counters.target_containers += 1;
                    }
                } else {
                    counters.segments_deduplicated += 1;
                    counters.bytes_deduplicated += bytes.len() as u64;
                }
                continue;
            }
            sealed |= self.pack(st, lane, k, entry, bytes, index)?;
        }
        if !to_prove.is_empty() {
            let items: Vec<(Fingerprint, ContainerId)> = to_prove.iter().map(|p| (p.0.fingerprint, p.3)).collect();
            let proven = super::prove::prove_on_target(lane.target, &items)?;
            for ((entry, slot, bytes, _), fine) in to_prove.into_iter().zip(proven) {
                if fine {
                    write(lane.pipe.phv).clear(slot);
                    let counters = &mut st.prog.lanes[lane.no].counters;
                    counters.segments_deduplicated += 1;
                    counters.bytes_deduplicated += bytes.len() as u64;
                } else {
                    // Not proven (rotten, or not where the index says):
                    // the source's verified bytes are written again.
                    sealed |= self.pack(st, lane, k, entry, bytes, index)?;
                }
            }
        }
        Ok(sealed)
    }

    /// Adds one verified source segment to the target's packer of kind
    /// slot `k`, submitting the batch it fills. True when a container was
    /// sealed meanwhile.
    fn pack(
        &mut self,
        st: &mut State,
        lane: &mut Lane<'a, '_>,
        k: usize,
        entry: SegmentEntry,
        bytes: Vec<u8>,
        index: u64,
    ) -> Result<bool> {
        // The stored bytes move as they are: no recompression.
        let seg = OwnedSegment { fingerprint: entry.fingerprint, bytes, raw_len: entry.raw_len, codec: entry.codec };
        match lane.packers[k].add(seg, index) {
            Some(full) => self.submit(st, lane, full),
            None => Ok(false),
        }
    }

    /// Hands a full batch to one of the target's writers, first waiting
    /// for a slot if [`WRITERS`] containers are in flight. True when a
    /// container was sealed while waiting.
    fn submit(&mut self, st: &mut State, lane: &mut Lane<'a, '_>, batch: Batch) -> Result<bool> {
        // The batch is neither in a packer nor in flight while this waits;
        // nothing commits until it is in flight (the caller commits).
        let mut sealed = false;
        while lane.pipe.in_flight.len() >= WRITERS {
            self.await_one(st, lane)?;
            sealed = true;
        }
        let pipe = &mut lane.pipe;
        pipe.seq += 1;
        pipe.in_flight.push(InFlight { seq: pipe.seq, fps: batch.fingerprints().collect(), first_tag: batch.first_tag });
        let sent = pipe.tx.as_ref().map(|tx| tx.send((pipe.seq, batch)));
        if !matches!(sent, Some(Ok(()))) {
            // The writers stopped: one reported why on the result channel.
            return match pipe.rx.recv() {
                Ok((_, Err(e))) => Err(e),
                _ => Err(Error::internal("Copy's writer threads stopped")),
            };
        }
        Ok(sealed)
    }

    /// Waits for one of the target's containers in flight to be written,
    /// then clears its bits.
    fn await_one(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<()> {
        let (seq, sealed) = lane.pipe.rx.recv().map_err(|_| Error::internal("Copy's writer threads stopped"))?;
        self.written(st, lane, seq, sealed?);
        Ok(())
    }

    /// Takes every container in flight that the target's writers have
    /// finished. True when there was one.
    fn poll_written(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<bool> {
        let mut any = false;
        while !lane.pipe.in_flight.is_empty() {
            match lane.pipe.rx.try_recv() {
                Ok((seq, sealed)) => {
                    self.written(st, lane, seq, sealed?);
                    any = true;
                }
                Err(std::sync::mpsc::TryRecvError::Empty) => break,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    return Err(Error::internal("Copy's writer threads stopped"));
                }
            }
        }
        Ok(any)
    }

    /// A container is durable and indexed on the target: clear its bits
    /// and count it (the caller's next commit records it).
    fn written(&mut self, st: &mut State, lane: &mut Lane<'a, '_>, seq: u64, sealed: Sealed) {
        lane.pipe.in_flight.retain(|f| f.seq != seq);
        let mut bits = write(lane.pipe.phv);
        for fp in &sealed.fingerprints {
            if let Some(slot) = lane.pipe.phf.slot(fp) {
                bits.clear(slot);
            }
        }
        drop(bits);
        let c = &mut st.prog.lanes[lane.no].counters;
        c.segments_copied += sealed.fingerprints.len() as u64;
        c.bytes_copied += sealed.bytes;
        c.target_containers += 1;
        self.emit(Event::TargetSealed {
            target_index: lane.no,
            target: sealed.id,
            segments: sealed.fingerprints.len() as u64,
            bytes: sealed.bytes,
        });
        crashpoint::hit("copy.sealed_before_commit");
    }

    /// Writes everything pending for the target and waits until all of it
    /// is durable. True when anything was sealed.
    fn flush(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<bool> {
        let mut any = false;
        for k in 0..lane.packers.len() {
            if let Some(batch) = lane.packers[k].take() {
                any |= self.submit(st, lane, batch)?;
            }
        }
        while !lane.pipe.in_flight.is_empty() {
            self.await_one(st, lane)?;
            any = true;
        }
        Ok(any)
    }

    /// One atomic commit of every target's progress and changed PHV words,
    /// with the Copy cursor every target can restart from.
    fn commit_copy(&mut self, st: &mut State, phvs: &[RwLock<Phv>], cursor: u64) -> Result<()> {
        if !self.commits_enabled {
            return Ok(());
        }
        st.prog.copy_cursor = cursor;
        let mut c = Commit::default();
        for (lane, phv) in phvs.iter().enumerate() {
            c.phv(lane, &mut write(phv));
        }
        c.progress(&st.prog);
        crashpoint::step("counting", &st.prog.total().target_containers.to_string());
        self.ctx.commit(c)?;
        crashpoint::hit("copy.after_commit");
        Ok(())
    }

    /// A source container vanished mid-job: name the files it breaks.
    fn explain_copy_error(&self, st: &mut State, phf: &Phf, phvs: &[RwLock<Phv>], e: Error) -> Error {
        let Error::MissingContainer { id, context } = e else { return e };
        // What any target still needs.
        let mut needed = Phv::zeroed(phf.keys);
        for lane in st.prog.live() {
            for slot in read(&phvs[lane]).ones() {
                needed.set(slot);
            }
        }
        let source = self.source;
        let pick =
            |fps: &[Fingerprint]| -> Result<Vec<bool>> { Ok(source.locate(fps)?.into_iter().map(|c| c == Some(id)).collect()) };
        let (files, count) = affected_files(self.source, phf, &needed, &mut self.selected(st), &pick, MAX_FILES_NAMED);
        Error::MissingContainer {
            id,
            context: format!("{context} from the source; {count} selected file(s) need it: {}", files.join("; ")),
        }
    }

    fn verify(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
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
                return Err(Error::Incomplete { missing, files: format!("{}{more}", names.join("; ")) });
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
                Err(e @ Error::Incomplete { .. }) if rewind => self.rewind_to_copy(st, lane).and(Err(e)),
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
    fn judge(&mut self, st: &mut State, lane: usize, verdict: Verdict, expected: &SetSum, rewind: bool) -> Result<()> {
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
            return Err(Error::VerifyFailed { level: self.verify.name(), segments, problems, reasons, files, file_count: count });
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
    fn rewind_to_copy(&mut self, st: &mut State, lane: usize) -> Result<()> {
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
    fn ask_gate(&mut self, st: &mut State, stage: SwitchStage) -> Result<Option<Flow>> {
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
            GateAnswer::Reject(_) => Err(Error::SwitchRejected { stage: name, reason }),
        }
    }

    fn switch(&mut self, st: &mut State) -> Result<Flow> {
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
                    return Err(Error::corrupt_record(
                        "source remove_files",
                        "answered a different number of entries than asked",
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

    fn done(&mut self, st: &mut State) -> Result<Flow> {
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
            Error::MissingContainer { .. }
            | Error::CorruptContainer { .. }
            | Error::CorruptRecord { .. }
            | Error::UnsupportedVersion { .. } => {
                log::warn!("target container {c} is indexed but unusable ({e}); its segments are copied again");
                false
            }
            _ => return Err(e),
        },
    };
    cache.insert(c, here);
    Ok(here)
}

/// The snapshot index a resume must restart from: before the current
/// container, and, for every target still in the job, before any container
/// whose segments still sit unsealed in one of its packers or in one of its
/// containers in flight. (A target that is ahead re-reads a little after a
/// crash; its committed bits keep it from writing anything twice.)
fn cursor(handled: u64, lanes: &[Lane<'_, '_>]) -> u64 {
    lanes.iter().flat_map(|l| l.packers.iter().filter_map(Packer::first_tag).chain(l.pipe.first_tag())).fold(handled, u64::min)
}

/// One target's side of the Copy phase.
pub(super) struct Lane<'a, 'p> {
    /// Its position among the job's targets.
    no: usize,
    target: &'a dyn TargetTier,
    packers: [Packer; 2],
    pipe: Pipe<'p>,
    /// Target containers checked for existence, once each per run.
    on_target: HashMap<ContainerId, bool>,
    /// Containers at or past the floor found holding marked segments.
    adopted: HashSet<ContainerId>,
    floor: Option<u64>,
}

/// Starts [`WRITERS`] writer threads for `target` in scope `s`, with their
/// own pace (a bandwidth limit holds per target), and returns the pipe to
/// them.
fn spawn_writers<'scope, 'p: 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    target: &'p dyn TargetTier,
    limit: ThrottleHandle,
    phf: &'p Phf,
    phv: &'p RwLock<Phv>,
) -> Pipe<'p> {
    let (wtx, wrx) = sync_channel::<(u64, Batch)>(0);
    let (dtx, drx) = sync_channel::<(u64, Result<Sealed>)>(WRITERS);
    let wrx = std::sync::Arc::new(std::sync::Mutex::new(wrx));
    let pace = std::sync::Arc::new(std::sync::Mutex::new(Pace::new(limit)));
    for _ in 0..WRITERS {
        let (dtx, wrx, pace) = (dtx.clone(), wrx.clone(), pace.clone());
        let trace = crashpoint::inherit();
        s.spawn(move || {
            trace.install();
            loop {
                // One writer takes the next batch; the others wait.
                let next = wrx.lock().unwrap_or_else(std::sync::PoisonError::into_inner).recv();
                let Ok((seq, batch)) = next else { return };
                pace.lock().unwrap_or_else(std::sync::PoisonError::into_inner).before(batch.bytes);
                let r = batch.write(target);
                let failed = r.is_err();
                if dtx.send((seq, r)).is_err() || failed {
                    return;
                }
            }
        });
    }
    Pipe { tx: Some(wtx), rx: drx, in_flight: Vec::new(), seq: 0, phf, phv }
}

/// A container being written on a writer thread.
struct InFlight {
    seq: u64,
    fps: HashSet<Fingerprint>,
    first_tag: Option<u64>,
}

/// The channels to and from Copy's writer threads, what is in flight, and
/// the PHF and PHV whose bits a finished container clears.
pub(super) struct Pipe<'a> {
    tx: Option<std::sync::mpsc::SyncSender<(u64, Batch)>>,
    rx: std::sync::mpsc::Receiver<(u64, Result<Sealed>)>,
    in_flight: Vec<InFlight>,
    seq: u64,
    phf: &'a Phf,
    phv: &'a RwLock<Phv>,
}

impl Pipe<'_> {
    fn holds(&self, fp: &Fingerprint) -> bool {
        self.in_flight.iter().any(|f| f.fps.contains(fp))
    }

    fn first_tag(&self) -> Option<u64> {
        self.in_flight.iter().filter_map(|f| f.first_tag).min()
    }
}

/// Paces writes to a bandwidth limit (bytes per second, 0 for none) that
/// may change while the job runs: it sleeps before a write until the bytes
/// written since the limit was last set fit the limit.
struct Pace {
    limit: ThrottleHandle,
    epoch: std::time::Instant,
    sent: u64,
    at_limit: u64,
}

impl Pace {
    fn new(limit: ThrottleHandle) -> Self {
        Pace { limit, epoch: std::time::Instant::now(), sent: 0, at_limit: 0 }
    }

    fn before(&mut self, bytes: u64) {
        let wait = self.wait(bytes, std::time::Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// How long to wait at `now` before writing `bytes`; counts them.
    /// Credit for time spent not writing is capped at [`PACE_CREDIT`]: a
    /// job stopped for a while (SIGSTOP, a stalled read) must not write at
    /// full speed until it has "caught up" (the bug "throttle bursts after
    /// a stall": 40 MiB in one second at `--limit 2` after 20 s stopped).
    fn wait(&mut self, bytes: u64, now: std::time::Instant) -> std::time::Duration {
        let limit = self.limit.bytes_per_sec();
        if limit != self.at_limit {
            self.epoch = now;
            self.sent = 0;
            self.at_limit = limit;
        }
        let mut wait = std::time::Duration::ZERO;
        if limit > 0 {
            let due = self.epoch + std::time::Duration::from_secs_f64(self.sent as f64 / limit as f64);
            if now > due + PACE_CREDIT {
                self.epoch = now.checked_sub(PACE_CREDIT).unwrap_or(now);
                self.sent = 0;
            } else if due > now {
                wait = due - now;
            }
        }
        self.sent += bytes;
        wait
    }
}

/// The most idle time a paced job may make up for at full speed.
const PACE_CREDIT: std::time::Duration = std::time::Duration::from_secs(1);

fn kind_slot(kind: ContainerKind) -> usize {
    match kind {
        ContainerKind::Data => 0,
        ContainerKind::Meta => 1,
    }
}

fn read(phv: &RwLock<Phv>) -> std::sync::RwLockReadGuard<'_, Phv> {
    phv.read().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn write(phv: &RwLock<Phv>) -> std::sync::RwLockWriteGuard<'_, Phv> {
    phv.write().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Reads one snapshot container for the Copy phase: its metadata; if a
/// segment is marked, the marked segments' bytes, each verified against its
/// fingerprint (in parallel). Membership in the PHF's key set is confirmed
/// before a slot is trusted, because the PHF gives arbitrary slots to
/// fingerprints it was not built over: by `homed` (how many of the index
/// entries BuildPhf built over point to each snapshot container) when the
/// container's table is exactly that long and lists no fingerprint twice,
/// so that every entry is one of those keys; else by looking each
/// candidate up in the source index.
fn load_container(
    source: &dyn crate::tier::SourceTier,
    phf: &Phf,
    phvs: &[RwLock<Phv>],
    live: &[AtomicBool],
    snapshot: &[ContainerId],
    homed: Option<&[u32]>,
    index: u64,
) -> Result<Loaded> {
    let id = snapshot[index as usize];
    let meta = source.read_metadata(id)?;
    // Marked for any target still in the job: read once, for all of them.
    let candidates: Vec<(SegmentEntry, u64)> = {
        let bits: Vec<_> = phvs.iter().zip(live).filter(|(_, l)| l.load(Ordering::SeqCst)).map(|(p, _)| read(p)).collect();
        meta.segments
            .iter()
            .filter_map(|e| phf.slot(&e.fingerprint).filter(|s| bits.iter().any(|b| b.get(*s))).map(|s| (*e, s)))
            .collect()
    };
    if candidates.is_empty() {
        return Ok(Loaded { index, id, kind: meta.kind, segments: Vec::new(), bytes: 0, skipped: true });
    }
    let all_homed = homed.and_then(|h| h.get(index as usize)).is_some_and(|&n| n as usize == meta.segments.len()) && {
        let mut fps: Vec<&Fingerprint> = meta.segments.iter().map(|e| &e.fingerprint).collect();
        fps.sort_unstable();
        fps.windows(2).all(|w| w[0] != w[1])
    };
    let members: Vec<(SegmentEntry, u64)> = if all_homed {
        candidates
    } else {
        let fps: Vec<Fingerprint> = candidates.iter().map(|c| c.0.fingerprint).collect();
        source
            .locate(&fps)?
            .into_iter()
            .zip(candidates)
            .filter(|(loc, _)| loc.is_some_and(|c| snapshot.binary_search(&c).is_ok()))
            .map(|(_, c)| c)
            .collect()
    };
    let which: Vec<SegmentEntry> = members.iter().map(|m| m.0).collect();
    let bytes = source.read_segments(id, &which)?;
    if bytes.len() != which.len() {
        return Err(Error::CorruptContainer { id, path: None, reason: "tier returned the wrong number of segments".into() });
    }
    // Every segment is checked against its fingerprint before it can be
    // written on: compressed ones are decompressed (in parallel) and
    // hashed, and kept in their stored form.
    let segments: Vec<(SegmentEntry, u64, Vec<u8>)> = members
        .into_par_iter()
        .zip(bytes)
        .map(|((e, slot), b)| crate::format::container::check_stored(&e, &b, id).map(|()| (e, slot, b)))
        .collect::<Result<_>>()?;
    let bytes = segments.iter().map(|s| s.2.len() as u64).sum();
    Ok(Loaded { index, id, kind: meta.kind, segments, bytes, skipped: false })
}

#[cfg(test)]
mod pace_tests {
    use std::time::{Duration, Instant};

    use super::{Pace, ThrottleHandle};

    #[test]
    fn throttle_bursts_after_a_stall_are_bounded_to_one_second_of_the_limit() {
        let mib = 1u64 << 20;
        let limit = ThrottleHandle::default();
        limit.set_bytes_per_sec(2 * mib);
        let mut pace = Pace::new(limit);
        let t0 = Instant::now();
        assert_eq!(pace.wait(mib, t0), Duration::ZERO);
        // Stopped for 20 s, then 40 MiB offered in 1 MiB writes at once:
        // only about 1 s of the limit (2 MiB, plus the write in hand) may
        // go without waiting, and the rest waits its turn.
        let later = t0 + Duration::from_secs(20);
        let free = (0..40).map(|_| pace.wait(mib, later)).filter(Duration::is_zero).count();
        assert!(free <= 3, "{free} MiB written without waiting after the stall");
        let last = pace.wait(mib, later);
        assert!(last >= Duration::from_secs(18), "the 41st MiB after the stall waits only {last:?}");
    }
}
