//! The Copy phase: the source read in snapshot order (a reader thread
//! loading and verifying containers ahead), each target's lane packing
//! what it still needs and writing sealed containers on its writer threads,
//! commits at sealed containers, and the pacing of a bandwidth limit.

use std::collections::{HashMap, HashSet};
use std::sync::RwLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::sync_channel;

use bytes::Bytes;
use rayon::prelude::*;

use super::context::Commit;
use super::pace::Pace;
use super::run::{Flow, MAX_FILES_NAMED, State, target_has};
use super::{Event, Mode, Phase, Seeder, ThrottleHandle};
use crate::error::{Error, Result, TierError};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::marks::affected_files;
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::testing::crashpoint;
use crate::tier::TargetTier;
use crate::tier::pack::{Batch, OwnedSegment, Packer, Sealed};
use crate::tier::{ContainerKind, SegmentEntry};

/// Copy commits at least this often (in source containers) even when no
/// target container is sealed, so a resume after a run of fully
/// deduplicated containers does not redo much lookup work.
const COMMIT_EVERY_CONTAINERS: u64 = 64;
/// Source containers read ahead of the one being written.
const READ_AHEAD: usize = 2;
/// Target containers written at once by Copy's writer threads, unless the
/// job says otherwise (`SeederBuilder::writers`). On this project's disk
/// one sequential fsync per 4 MiB container caps writes at about 330
/// MiB/s; with four in flight a warm 2 GiB seed took 3.4-3.8 s against
/// 4.0-4.5 s with two and 5.6-9.3 s with one (BENCHMARKS.md), and eight
/// gained nothing over four. A crash redoes at most what is in flight
/// plus the container filling: 20 MiB at the default container size.
pub(super) const DEFAULT_WRITERS: usize = 4;
/// The most containers in flight per target a job may ask for.
pub(super) const MAX_WRITERS: usize = 16;
/// One source container's worth of work handed from the reader thread to
/// the writer.
struct Loaded {
    index: u64,
    id: ContainerId,
    kind: ContainerKind,
    /// Marked segments: table entry, slot, verified bytes as stored (slices
    /// of the buffers their runs were read into).
    segments: Vec<(SegmentEntry, u64, Bytes)>,
    bytes: u64,
    /// Nothing was marked: the data was not read.
    skipped: bool,
}

impl<'a> Seeder<'a> {
    pub(super) fn copy(&mut self, st: &mut State, pool: &rayon::ThreadPool) -> Result<Flow> {
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
                // Up to `window` containers are read at once, each on a
                // thread of its own (a read waits on its tier, not the
                // pool, which only hashes), and handed on in order.
                let window = source.read_concurrency().clamp(1, 64) as u64;
                let reader = SourceReader { source, pool, phf, phvs, live, snapshot, homed };
                let load = |i| reader.load(i);
                let (mut index, end) = (start, snapshot.len() as u64);
                while index < end && !stop.load(Ordering::SeqCst) {
                    let upto = (index + window).min(end);
                    let loaded: Vec<Result<Loaded>> = if upto - index == 1 {
                        vec![load(index)]
                    } else {
                        std::thread::scope(|w| {
                            let reads: Vec<_> = (index..upto).map(|i| w.spawn(move || load(i))).collect();
                            reads
                                .into_iter()
                                .map(|r| r.join().unwrap_or_else(|_| Err(Error::internal("a Copy read thread panicked"))))
                                .collect()
                        })
                    };
                    for r in loaded {
                        let failed = r.is_err();
                        if tx.send(r).is_err() || failed {
                            return;
                        }
                    }
                    index = upto;
                }
            });
            let mut lanes = Vec::new();
            for no in st.prog.live().collect::<Vec<_>>() {
                let target = self.target_of(no)?;
                let pipe = spawn_writers(s, target, self.writers, self.throttle.clone(), phf, &phvs[no]);
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
        let wanted: Vec<(SegmentEntry, u64, Bytes)> = {
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
        let mut to_prove: Vec<(SegmentEntry, u64, Bytes, ContainerId)> = Vec::new();
        // What this target gets written, packed once the rest is known.
        let mut packing: Vec<(SegmentEntry, Bytes)> = Vec::new();
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
            packing.push((entry, bytes));
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
                    packing.push((entry, bytes));
                }
            }
        }
        // The packed segments are slices of the source runs Copy read, and
        // hold them while they wait. When this target takes the whole of
        // what was read from the container, that is no more than what it
        // writes; when it takes only part (the rest deduplicated), the
        // part is copied out, so a packer filling with one segment from
        // each of many containers never holds all of their runs.
        let detach = packing.len() < loaded.segments.len();
        let mut sealed = false;
        for (entry, bytes) in packing {
            let bytes = if detach { Bytes::copy_from_slice(&bytes) } else { bytes };
            sealed |= self.pack(st, lane, k, entry, bytes, index)?;
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
        bytes: Bytes,
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
    /// for a slot if the job's writers all have a container in flight. True when a
    /// container was sealed while waiting.
    pub(super) fn submit(&mut self, st: &mut State, lane: &mut Lane<'a, '_>, batch: Batch) -> Result<bool> {
        // The batch is neither in a packer nor in flight while this waits;
        // nothing commits until it is in flight (the caller commits).
        let mut sealed = false;
        while lane.pipe.in_flight.len() >= self.writers {
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
    pub(super) fn await_one(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<()> {
        let (seq, sealed) = lane.pipe.rx.recv().map_err(|_| Error::internal("Copy's writer threads stopped"))?;
        self.written(st, lane, seq, sealed?);
        Ok(())
    }

    /// Takes every container in flight that the target's writers have
    /// finished. True when there was one.
    pub(super) fn poll_written(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<bool> {
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
    pub(super) fn written(&mut self, st: &mut State, lane: &mut Lane<'a, '_>, seq: u64, sealed: Sealed) {
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
    pub(super) fn flush(&mut self, st: &mut State, lane: &mut Lane<'a, '_>) -> Result<bool> {
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
    pub(super) fn commit_copy(&mut self, st: &mut State, phvs: &[RwLock<Phv>], cursor: u64) -> Result<()> {
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
    pub(super) fn explain_copy_error(&self, st: &mut State, phf: &Phf, phvs: &[RwLock<Phv>], e: Error) -> Error {
        let Error::Tier(TierError::MissingContainer { id, context }) = e else { return e };
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
        Error::Tier(TierError::MissingContainer {
            id,
            context: format!("{context} from the source; {count} selected file(s) need it: {}", files.join("; ")),
        })
    }
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

/// Starts `writers` writer threads for `target` in scope `s`, with their
/// own pace (a bandwidth limit holds per target), and returns the pipe to
/// them.
fn spawn_writers<'scope, 'p: 'scope>(
    s: &'scope std::thread::Scope<'scope, '_>,
    target: &'p dyn TargetTier,
    writers: usize,
    limit: ThrottleHandle,
    phf: &'p Phf,
    phv: &'p RwLock<Phv>,
) -> Pipe<'p> {
    let (wtx, wrx) = sync_channel::<(u64, Batch)>(0);
    let (dtx, drx) = sync_channel::<(u64, Result<Sealed>)>(writers);
    let wrx = std::sync::Arc::new(std::sync::Mutex::new(wrx));
    let pace = std::sync::Arc::new(std::sync::Mutex::new(Pace::new(limit)));
    for _ in 0..writers {
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
    pub(super) fn holds(&self, fp: &Fingerprint) -> bool {
        self.in_flight.iter().any(|f| f.fps.contains(fp))
    }

    pub(super) fn first_tag(&self) -> Option<u64> {
        self.in_flight.iter().filter_map(|f| f.first_tag).min()
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

/// What Copy's reader needs to load a snapshot container.
#[derive(Clone, Copy)]
struct SourceReader<'a> {
    source: &'a dyn crate::tier::SourceTier,
    /// Hashes the segments read (the reads themselves wait elsewhere).
    pool: &'a rayon::ThreadPool,
    phf: &'a Phf,
    phvs: &'a [RwLock<Phv>],
    live: &'a [AtomicBool],
    snapshot: &'a [ContainerId],
    homed: Option<&'a [u32]>,
}

impl SourceReader<'_> {
    /// Reads one snapshot container for the Copy phase: its metadata; if a
    /// segment is marked, the marked segments' bytes, each verified against its
    /// fingerprint (in parallel). Membership in the PHF's key set is confirmed
    /// before a slot is trusted, because the PHF gives arbitrary slots to
    /// fingerprints it was not built over: by `homed` (how many of the index
    /// entries BuildPhf built over point to each snapshot container) when the
    /// container's table is exactly that long and lists no fingerprint twice,
    /// so that every entry is one of those keys; else by looking each
    /// candidate up in the source index.
    fn load(&self, index: u64) -> Result<Loaded> {
        let SourceReader { source, pool, phf, phvs, live, snapshot, homed } = *self;
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
        let all_homed = crate::mark::keys::every_entry_homed(homed.and_then(|h| h.get(index as usize)).copied(), &meta.segments);
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
        let bytes = source.read_segments_shared(id, &which)?;
        if bytes.len() != which.len() {
            return Err(Error::contract(
                format!("read_segments of container {id}"),
                format!("answered {} segments for {} asked", bytes.len(), which.len()),
            ));
        }
        // Every segment is checked against its fingerprint before it can be
        // written on: compressed ones are decompressed (in parallel) and
        // hashed, and kept in their stored form.
        let segments: Vec<(SegmentEntry, u64, Bytes)> = pool.install(|| {
            members
                .into_par_iter()
                .zip(bytes)
                .map(|((e, slot), b)| crate::format::container::check_stored(&e, &b, id).map(|()| (e, slot, b)))
                .collect::<Result<_>>()
        })?;
        let bytes = segments.iter().map(|s| s.2.len() as u64).sum();
        Ok(Loaded { index, id, kind: meta.kind, segments, bytes, skipped: false })
    }
}
