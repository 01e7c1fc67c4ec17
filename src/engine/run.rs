//! The phases of a job and their commit points.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use rayon::prelude::*;

use super::context::{Commit, FILES_PER_CHUNK, GateRecord, MarkSumRecord, PhfRef, ProgressRecord, TargetRecord};
use super::phf::Phf;
use super::phv::Phv;
use super::verify::verify_target;
use super::walk::{SetSum, affected_files, mark};
use super::{Event, GateAnswer, Mode, Outcome, Phase, Report, Seeder, SwitchRequest, SwitchStage, ThrottleHandle, progress_of};
use crate::crashpoint;
use crate::error::{Error, Result};
use crate::pack::{Batch, OwnedSegment, Packer, Sealed};
use crate::tier::{ContainerKind, SegmentEntry};
use crate::tier::{FileEntry, Tier};
use crate::{ContainerId, Fingerprint};

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
    Target,
}

/// What the engine holds in memory while it runs; everything here can be
/// rebuilt from the context.
#[derive(Default)]
pub(super) struct State {
    /// Pins taken on the tiers by this run.
    pins: Vec<(PinOn, u64)>,
    prog: ProgressRecord,
    snapshot: Vec<ContainerId>,
    files: Vec<FileEntry>,
    phf: Option<Phf>,
    phv: Option<Phv>,
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

impl Seeder<'_> {
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
        let mut st = State { prog: self.ctx.reader().progress()?, ..State::default() };
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
                PinOn::Target => self.target.unpin(token),
            }
        }
        if let Err(e) = &result {
            self.emit(Event::Failed { phase: Phase::after(st.prog.phase_done), message: e.to_string() });
        }
        result
    }

    fn run_phases(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Outcome> {
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
        crashpoint::step("counting", &st.prog.counters.target_containers.to_string());
        self.ctx.commit(c)?;
        crashpoint::hit("phase.after_commit");
        Ok(())
    }

    /// Pins the snapshot on the source and what the job writes on the
    /// target, until Switch is done (space reclamation keeps them).
    fn pin(&self, st: &mut State) -> Result<()> {
        if !st.pins.is_empty() || st.prog.phase_done >= Some(Phase::Switch) {
            return Ok(());
        }
        self.need_snapshot(st)?;
        st.pins.push((PinOn::Source, self.source.pin(&st.snapshot, None)?));
        let floor = self.ctx.reader().target()?.map_or(0, |t| t.floor);
        st.pins.push((PinOn::Target, self.target.pin(&[], Some(ContainerId(floor)))?));
        Ok(())
    }

    // Lazy loaders: a resumed job reads what the phases before it persisted.

    fn need_snapshot(&self, st: &mut State) -> Result<()> {
        if st.snapshot.is_empty() && st.prog.counters.containers_total > 0 {
            st.snapshot = self.ctx.reader().snapshot()?;
        }
        Ok(())
    }

    fn need_files(&self, st: &mut State) -> Result<()> {
        if st.files.is_empty() {
            let chunks = st.prog.counters.files_selected.div_ceil(FILES_PER_CHUNK as u64);
            for i in 0..chunks {
                st.files.extend(self.ctx.reader().file_chunk(i)?);
            }
        }
        Ok(())
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
        if st.phv.is_none() {
            let keys = st.phf.as_ref().map_or(0, |p| p.keys);
            let mut phv = Phv::zeroed(keys);
            self.ctx.reader().load_phv(&mut phv)?;
            st.phv = Some(phv);
        }
        Ok(())
    }

    fn select(&mut self, st: &mut State) -> Result<Flow> {
        let (files, _) = crate::selection::resolve(self.source, &self.job.selection, self.job.created)?;
        // The snapshot: containers written from now on are not this job's.
        let snapshot = self.source.container_ids()?;
        let c = &mut st.prog.counters;
        c.files_selected = files.len() as u64;
        c.bytes_selected = files.iter().map(|f| f.size).sum();
        c.containers_total = snapshot.len() as u64;
        // Containers the target gets from now on are this job's (or a
        // concurrent writer's): a resume counts what it finds in them as
        // copied, not as already there.
        let floor = self.target.container_ids()?.last().map_or(0, |c| c.0 + 1);
        let mut commit = Commit::default();
        commit.files(&files).snapshot(&snapshot).target(&TargetRecord { floor });
        self.commit_phase(st, Phase::Select, commit)?;
        st.files = files;
        st.snapshot = snapshot;
        self.pin(st)?;
        Ok(Flow::Continue)
    }

    fn build_phf(&mut self, st: &mut State) -> Result<Flow> {
        self.need_snapshot(st)?;
        let snapshot = &st.snapshot;
        let in_snapshot = |c: ContainerId| snapshot.binary_search(&c).is_ok();
        let phf = Phf::build(self.source, &in_snapshot, self.job.phf, self.job.gamma, self.threads)?;
        let file = crate::layout::phf_file(&self.job_id());
        phf.persist(&self.ctx.dir().join(&file), self.job.gamma)?;
        let mut c = Commit::default();
        c.phf(&PhfRef { file, keys: phf.keys });
        self.commit_phase(st, Phase::BuildPhf, c)?;
        st.phf = Some(phf);
        Ok(Flow::Continue)
    }

    fn mark(&mut self, st: &mut State) -> Result<Flow> {
        self.need_snapshot(st)?;
        self.need_files(st)?;
        self.need_phf(st)?;
        let Some(phf) = st.phf.as_ref() else { return Err(Error::internal("Mark started without a PHF")) };
        // Mark always starts from zero: it is short and redone whole.
        let mut phv = Phv::zeroed(phf.keys);
        let snapshot = &st.snapshot;
        let observer = self.observer.clone();
        let marked = mark(self.source, phf, &|c| snapshot.binary_search(&c).is_ok(), &st.files, &mut phv, &mut |n| {
            if let Some(o) = &observer {
                o.event(&Event::Marked { segments: n });
            }
        })?;
        st.prog.counters.segments_marked = marked.distinct;
        phv.mark_all_dirty();
        let mut c = Commit::default();
        c.phv(&mut phv).mark_sum(&MarkSumRecord { count: marked.sum.count, lanes: marked.sum.lanes });
        self.commit_phase(st, Phase::Mark, c)?;
        st.phv = Some(phv);
        Ok(Flow::Continue)
    }

    fn copy(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
        self.need_snapshot(st)?;
        self.need_phv(st)?;
        let (Some(phf), Some(phv)) = (st.phf.take(), st.phv.take()) else {
            return Err(Error::internal("Copy started without a PHF or PHV"));
        };
        let phv = RwLock::new(phv);
        let stop = AtomicBool::new(false);
        let snapshot = std::mem::take(&mut st.snapshot);
        let start = st.prog.copy_cursor;
        // Channels to and from the writer threads (shared by them).
        let (wtx, wrx) = sync_channel::<(u64, Batch)>(0);
        let (dtx, drx) = sync_channel::<(u64, Result<Sealed>)>(WRITERS);
        let wrx = std::sync::Mutex::new(wrx);
        let pace = std::sync::Mutex::new(Pace::new(self.throttle.clone()));
        let result = std::thread::scope(|s| {
            // Three stages: the reader loads and verifies source containers
            // (hashing on the pool), this thread decides and packs, and the
            // writer seals container k (write, fsync, rename, directory
            // fsync, index) while k+1 fills.
            let (tx, rx) = sync_channel::<Result<Loaded>>(READ_AHEAD);
            let (phf, phv, snapshot, stop) = (&phf, &phv, &snapshot, &stop);
            let source = self.source;
            s.spawn(move || {
                pool.install(|| {
                    for index in start..snapshot.len() as u64 {
                        if stop.load(Ordering::SeqCst) {
                            return;
                        }
                        let r = load_container(source, phf, phv, snapshot, index);
                        let failed = r.is_err();
                        if tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                });
            });
            let (wrx, pace) = (&wrx, &pace);
            let target = self.target;
            for _ in 0..WRITERS {
                let dtx = dtx.clone();
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
            drop(dtx);
            let mut pipe = Pipe { tx: Some(wtx), rx: drx, in_flight: Vec::new(), seq: 0, phf, phv };
            let r = self.copy_loop(st, rx, &mut pipe, phf, phv, snapshot, start);
            stop.store(true, Ordering::SeqCst);
            // Closing the submission channel ends the writer; a container
            // still in flight is waited for by the scope, and is either
            // indexed (found again by the batched lookup on resume) or not.
            drop(pipe);
            r
        });
        st.snapshot = snapshot;
        st.phf = Some(phf);
        st.phv = Some(phv.into_inner().unwrap_or_else(std::sync::PoisonError::into_inner));
        let flow = result?;
        if let Flow::Continue = flow {
            // All sealed by copy_loop; record the phase with the final PHV words.
            let mut c = Commit::default();
            if let Some(p) = st.phv.as_mut() {
                c.phv(p);
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
        pipe: &mut Pipe<'_>,
        phf: &Phf,
        phv: &RwLock<Phv>,
        snapshot: &[ContainerId],
        start: u64,
    ) -> Result<Flow> {
        let size = self.target.container_target_size();
        // One packer per kind, so recipes stay in meta containers on the target too.
        let mut packers = [Packer::new(ContainerKind::Data, size), Packer::new(ContainerKind::Meta, size)];
        let total = snapshot.len() as u64;
        let mut since_commit = 0u64;
        // Target containers checked for existence, once each per run.
        let mut on_target_cache: HashMap<ContainerId, bool> = HashMap::new();
        let floor = self.ctx.reader().target()?.map(|t| t.floor);
        let mut adopted: HashSet<ContainerId> = HashSet::new();
        for index in start..total {
            let loaded = match rx.recv() {
                Ok(Ok(l)) => l,
                Ok(Err(e)) => return Err(self.explain_copy_error(st, phf, phv, e)),
                Err(_) => return Err(Error::internal("Copy's reader thread stopped before the last container")),
            };
            if loaded.index != index {
                return Err(Error::internal(format!(
                    "Copy's reader delivered container #{} where #{index} was due",
                    loaded.index
                )));
            }
            if loaded.skipped {
                st.prog.counters.containers_skipped += 1;
                self.emit(Event::ContainerSkipped { source: loaded.id, done: index + 1, total });
            } else {
                st.prog.counters.containers_read += 1;
                let k = kind_slot(loaded.kind);
                let read_count = loaded.segments.len() as u64;
                // Still needed: the bit is set and it is not already waiting
                // in a packer of either kind or in the container being
                // written (a segment can sit in two source containers, and
                // the same bytes can be data and a recipe).
                let live: Vec<(SegmentEntry, u64, Vec<u8>)> = {
                    let bits = read(phv);
                    loaded
                        .segments
                        .into_iter()
                        .filter(|(e, slot, _)| {
                            bits.get(*slot) && !packers.iter().any(|p| p.holds(&e.fingerprint)) && !pipe.holds(&e.fingerprint)
                        })
                        .collect()
                };
                let fps: Vec<Fingerprint> = live.iter().map(|l| l.0.fingerprint).collect();
                let on_target = self.target.locate(&fps)?;
                for ((entry, slot, bytes), present) in live.into_iter().zip(on_target) {
                    // An index entry counts only if its container is there:
                    // a target that lost a container (or was replaced by an
                    // older copy of itself) must get the segment again.
                    let present = match present {
                        Some(c) if target_has(self.target, c, &mut on_target_cache)? => Some(c),
                        _ => None,
                    };
                    if let Some(c) = present {
                        write(phv).clear(slot);
                        let counters = &mut st.prog.counters;
                        if floor.is_some_and(|f| c.0 >= f) {
                            // Written by this job in a run that stopped
                            // before committing it: copied, not "already
                            // there".
                            counters.segments_adopted += 1;
                            counters.segments_copied += 1;
                            counters.bytes_copied += bytes.len() as u64;
                            if adopted.insert(c) {
                                counters.target_containers += 1;
                            }
                        } else {
                            counters.segments_deduplicated += 1;
                            counters.bytes_deduplicated += bytes.len() as u64;
                        }
                        continue;
                    }
                    // The stored bytes move as they are: no recompression.
                    let seg = OwnedSegment { fingerprint: entry.fingerprint, bytes, raw_len: entry.raw_len, codec: entry.codec };
                    if let Some(full) = packers[k].add(seg, index) {
                        self.submit(st, pipe, &packers, full, index)?;
                        since_commit = 0;
                    }
                }
                self.emit(Event::ContainerCopied {
                    source: loaded.id,
                    segments: read_count,
                    bytes: loaded.bytes,
                    done: index + 1,
                    total,
                });
            }
            // A container that finished writing meanwhile is committed now,
            // not when the next one is ready.
            if self.poll_written(st, pipe, &packers, index + 1)? {
                since_commit = 0;
            }
            since_commit += 1;
            let suspend = self.suspend.is_requested();
            if suspend {
                // Seal what is pending so the suspension point is one clean
                // commit with nothing half-packed or in flight.
                self.flush(st, pipe, &mut packers, index + 1)?;
            }
            if suspend || since_commit >= COMMIT_EVERY_CONTAINERS {
                self.commit_copy(st, phv, cursor(index + 1, &packers, pipe))?;
                since_commit = 0;
                if suspend {
                    return Ok(Flow::Suspended);
                }
            }
        }
        self.flush(st, pipe, &mut packers, total)?;
        Ok(Flow::Continue)
    }

    /// Hands a full batch to a writer, first waiting for a slot if
    /// [`WRITERS`] containers are in flight.
    fn submit(&mut self, st: &mut State, pipe: &mut Pipe<'_>, packers: &[Packer; 2], batch: Batch, handled: u64) -> Result<()> {
        // The batch has left its packer but is not in flight yet: a commit
        // made while waiting must still keep the cursor before it.
        let hold = handled.min(batch.first_tag.unwrap_or(u64::MAX));
        while pipe.in_flight.len() >= WRITERS {
            self.await_one(st, pipe, packers, hold)?;
        }
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
        Ok(())
    }

    /// Waits for one container in flight to be written, then clears its
    /// bits and commits.
    fn await_one(&mut self, st: &mut State, pipe: &mut Pipe<'_>, packers: &[Packer; 2], handled: u64) -> Result<()> {
        let (seq, sealed) = pipe.rx.recv().map_err(|_| Error::internal("Copy's writer threads stopped"))?;
        self.written(st, pipe, packers, seq, sealed?, handled)
    }

    /// Commits every container in flight that its writer has finished.
    fn poll_written(&mut self, st: &mut State, pipe: &mut Pipe<'_>, packers: &[Packer; 2], handled: u64) -> Result<bool> {
        let mut any = false;
        while !pipe.in_flight.is_empty() {
            match pipe.rx.try_recv() {
                Ok((seq, sealed)) => {
                    self.written(st, pipe, packers, seq, sealed?, handled)?;
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

    fn written(
        &mut self,
        st: &mut State,
        pipe: &mut Pipe<'_>,
        packers: &[Packer; 2],
        seq: u64,
        sealed: Sealed,
        handled: u64,
    ) -> Result<()> {
        pipe.in_flight.retain(|f| f.seq != seq);
        self.sealed(st, pipe.phf, pipe.phv, sealed);
        // The container is durable and indexed: now the commit may count it.
        self.commit_copy(st, pipe.phv, cursor(handled, packers, pipe))
    }

    /// Writes everything pending and waits until all of it is durable.
    fn flush(&mut self, st: &mut State, pipe: &mut Pipe<'_>, packers: &mut [Packer; 2], handled: u64) -> Result<()> {
        for k in 0..packers.len() {
            if let Some(batch) = packers[k].take() {
                self.submit(st, pipe, packers, batch, handled)?;
            }
        }
        while !pipe.in_flight.is_empty() {
            self.await_one(st, pipe, packers, handled)?;
        }
        Ok(())
    }

    /// Clears the bits of a sealed target container's segments and counts it.
    fn sealed(&self, st: &mut State, phf: &Phf, phv: &RwLock<Phv>, sealed: Sealed) {
        let mut bits = write(phv);
        for fp in &sealed.fingerprints {
            if let Some(slot) = phf.slot(fp) {
                bits.clear(slot);
            }
        }
        drop(bits);
        let c = &mut st.prog.counters;
        c.segments_copied += sealed.fingerprints.len() as u64;
        c.bytes_copied += sealed.bytes;
        c.target_containers += 1;
        self.emit(Event::TargetSealed { target: sealed.id, segments: sealed.fingerprints.len() as u64, bytes: sealed.bytes });
        crashpoint::hit("copy.sealed_before_commit");
    }

    fn commit_copy(&mut self, st: &mut State, phv: &RwLock<Phv>, cursor: u64) -> Result<()> {
        if !self.commits_enabled {
            return Ok(());
        }
        st.prog.copy_cursor = cursor;
        let mut c = Commit::default();
        c.phv(&mut write(phv)).progress(&st.prog);
        crashpoint::step("counting", &st.prog.counters.target_containers.to_string());
        self.ctx.commit(c)?;
        crashpoint::hit("copy.after_commit");
        Ok(())
    }

    /// A source container vanished mid-job: name the files it breaks.
    fn explain_copy_error(&self, st: &mut State, phf: &Phf, phv: &RwLock<Phv>, e: Error) -> Error {
        let Error::MissingContainer { id, context } = e else { return e };
        if self.need_files(st).is_err() {
            return Error::MissingContainer { id, context };
        }
        let source = self.source;
        let pick =
            |fps: &[Fingerprint]| -> Result<Vec<bool>> { Ok(source.locate(fps)?.into_iter().map(|c| c == Some(id)).collect()) };
        let (files, count) = affected_files(self.source, phf, &read(phv), &st.files, &pick, MAX_FILES_NAMED);
        Error::MissingContainer {
            id,
            context: format!("{context} from the source; {count} selected file(s) need it: {}", files.join("; ")),
        }
    }

    fn verify(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
        self.need_phv(st)?;
        let Some(missing) = st.phv.as_ref().map(Phv::count_ones) else {
            return Err(Error::internal("Verify started without a PHV"));
        };
        self.need_files(st)?;
        if missing > 0 {
            let (Some(phf), Some(phv)) = (st.phf.as_ref(), st.phv.as_ref()) else {
                return Err(Error::internal("Verify started without a PHF or PHV"));
            };
            let (files, count) = affected_files(self.source, phf, phv, &st.files, &|f| Ok(vec![true; f.len()]), MAX_FILES_NAMED);
            let more = if count > files.len() { format!("; and {} more", count - files.len()) } else { String::new() };
            return Err(Error::Incomplete { missing, files: format!("{}{more}", files.join("; ")) });
        }
        self.need_snapshot(st)?;
        let Some(phf) = st.phf.as_ref() else { return Err(Error::internal("Verify started without a PHF")) };
        let snapshot = &st.snapshot;
        let in_snapshot = |c: ContainerId| snapshot.binary_search(&c).is_ok();
        // The checksum of the marked set, as Mark committed it. A job
        // marked by an older build has none: recompute it from the source
        // (the same walk Mark did, into scratch bits).
        let expected = match self.ctx.reader().mark_sum()? {
            Some(m) => SetSum { count: m.count, lanes: m.lanes },
            None => mark(self.source, phf, &in_snapshot, &st.files, &mut Phv::zeroed(phf.keys), &mut |_| {})?.sum,
        };
        let observer = self.observer.clone();
        let verdict =
            verify_target(self.source, self.target, phf, &in_snapshot, &st.files, self.verify, pool, &mut |done, total| {
                if let Some(o) = &observer {
                    o.event(&Event::Verifying { containers: done, total });
                }
            })?;
        let failed = verdict.failed;
        let mut problems = verdict.problems;
        let mut reasons = verdict.reasons;
        if verdict.sum != expected && problems == 0 {
            problems += 1;
            reasons.push(format!(
                "the target walk reached {} distinct segments, Mark marked {} (checksums differ)",
                verdict.sum.count, expected.count
            ));
        }
        if problems > 0 {
            let segments = failed.count_ones();
            let (files, count) = affected_files(self.source, phf, &failed, &st.files, &|f| Ok(vec![true; f.len()]), usize::MAX);
            // Put what could not be proven back in the PHV and rewind to
            // Copy, so that a resume copies it again (a target that lost a
            // container, or was replaced by an older copy of itself, heals
            // on resume). Nothing is switched or removed.
            if let Some(phv) = st.phv.as_mut() {
                for slot in failed.ones() {
                    phv.set(slot);
                }
                let mut c = Commit::default();
                c.phv(phv);
                st.prog.phase_done = Some(Phase::Mark);
                st.prog.copy_cursor = 0;
                c.progress(&st.prog);
                self.ctx.commit(c)?;
            }
            return Err(Error::VerifyFailed { level: self.verify.name(), segments, problems, reasons, files, file_count: count });
        }
        self.emit(Event::Verified {
            level: self.verify,
            segments: verdict.sum.count,
            containers: verdict.containers,
            hashed: verdict.hashed,
        });
        self.commit_phase(st, Phase::Verify, Commit::default())?;
        Ok(Flow::Continue)
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
        let total = st.prog.counters.files_selected;
        if st.prog.switch_cursor == 0
            && let Some(flow) = self.ask_gate(st, SwitchStage::Switch)?
        {
            return Ok(flow);
        }
        while st.prog.switch_cursor < chunks {
            let entries = self.ctx.reader().file_chunk(st.prog.switch_cursor)?;
            self.target.upsert_files(&entries)?;
            st.prog.switch_cursor += 1;
            st.prog.counters.files_switched += entries.len() as u64;
            let mut c = Commit::default();
            c.progress(&st.prog);
            self.ctx.commit(c)?;
            self.emit(Event::Switched { files: st.prog.counters.files_switched, total });
            crashpoint::hit("switch.between_batches");
            if self.suspend.is_requested() && st.prog.switch_cursor < chunks {
                return Ok(Flow::Suspended);
            }
        }
        if self.job.mode == Mode::Move {
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
                let mut c = Commit::default();
                c.progress(&st.prog);
                self.ctx.commit(c)?;
            }
        }
        self.commit_phase(st, Phase::Switch, Commit::default())?;
        Ok(Flow::Continue)
    }

    fn done(&mut self, st: &mut State) -> Result<Flow> {
        let report = Report { job_id: self.job_id(), mode: self.job.mode, counters: st.prog.counters, resumes: st.prog.resumes };
        let mut c = Commit::default();
        c.report(&report);
        self.commit_phase(st, Phase::Done, c)?;
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
/// container, before any container whose segments still sit unsealed in a
/// packer, and before the container in flight.
fn cursor(handled: u64, packers: &[Packer; 2], pipe: &Pipe<'_>) -> u64 {
    packers.iter().filter_map(Packer::first_tag).chain(pipe.first_tag()).fold(handled, u64::min)
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
        let limit = self.limit.bytes_per_sec();
        if limit != self.at_limit {
            self.epoch = std::time::Instant::now();
            self.sent = 0;
            self.at_limit = limit;
        }
        if limit > 0 {
            let due = self.epoch + std::time::Duration::from_secs_f64(self.sent as f64 / limit as f64);
            let now = std::time::Instant::now();
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        self.sent += bytes;
    }
}

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
/// fingerprint (in parallel). Membership in the source index is confirmed
/// before a slot is trusted, because the PHF gives arbitrary slots to
/// fingerprints it was not built over.
fn load_container(
    source: &dyn crate::tier::SourceTier,
    phf: &Phf,
    phv: &RwLock<Phv>,
    snapshot: &[ContainerId],
    index: u64,
) -> Result<Loaded> {
    let id = snapshot[index as usize];
    let meta = source.read_metadata(id)?;
    let candidates: Vec<(SegmentEntry, u64)> = {
        let bits = read(phv);
        meta.segments.iter().filter_map(|e| phf.slot(&e.fingerprint).filter(|s| bits.get(*s)).map(|s| (*e, s))).collect()
    };
    if candidates.is_empty() {
        return Ok(Loaded { index, id, kind: meta.kind, segments: Vec::new(), bytes: 0, skipped: true });
    }
    let fps: Vec<Fingerprint> = candidates.iter().map(|c| c.0.fingerprint).collect();
    let members: Vec<(SegmentEntry, u64)> = source
        .locate(&fps)?
        .into_iter()
        .zip(candidates)
        .filter(|(loc, _)| loc.is_some_and(|c| snapshot.binary_search(&c).is_ok()))
        .map(|(_, c)| c)
        .collect();
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
        .map(|((e, slot), b)| crate::container::check_stored(&e, &b, id).map(|()| (e, slot, b)))
        .collect::<Result<_>>()?;
    let bytes = segments.iter().map(|s| s.2.len() as u64).sum();
    Ok(Loaded { index, id, kind: meta.kind, segments, bytes, skipped: false })
}
