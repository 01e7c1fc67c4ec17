//! Space reclamation (garbage collection) of a `IndexedTier`: mark the
//! segments the namespace's trees reach, with the same PHF + PHV machinery
//! as a seeding job but over the tier's own index; then sweep the
//! containers in id order, deleting those with nothing live and moving the
//! live segments of mostly dead ones into a new container before deleting
//! them. Every step is one synced index batch that carries the cursor, so
//! a crash at any instant loses no live segment and a resumed run goes on
//! from the cursor; a container is deleted only after nothing in the index
//! points to it, and never while a pin (a running job's snapshot) holds it.

use crate::engine::SuspendHandle;
use crate::error::{Error, JobError, Result, TierError};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::mark::phf::Phf;
use crate::mark::phv::Phv;
use crate::tier::indexed::{Dead, GcRecord, IndexedTier};
use crate::tier::pack::OwnedSegment;
use crate::tier::{JobHold, Tier};

/// How a reclamation runs.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct GcOptions {
    /// A container whose live bytes are below this share of its bytes is
    /// compacted (its live segments moved, the container deleted); 0.0
    /// deletes only containers with nothing live, 1.0 compacts any
    /// container with a dead byte. Default 0.5.
    pub threshold: f64,
    /// Report what would be reclaimed; change nothing.
    pub dry_run: bool,
}

impl Default for GcOptions {
    fn default() -> Self {
        GcOptions { threshold: 0.5, dry_run: false }
    }
}

impl GcOptions {
    /// The default options with `threshold`.
    #[must_use]
    pub fn threshold(mut self, threshold: f64) -> Self {
        self.threshold = threshold;
        self
    }

    /// The default options, as a dry run.
    #[must_use]
    pub fn dry_run(mut self, dry_run: bool) -> Self {
        self.dry_run = dry_run;
        self
    }
}

/// What a reclamation did (or, in a dry run, would do).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct GcReport {
    /// Containers deleted: nothing in them was live.
    pub containers_deleted: u64,
    /// Containers compacted: their live segments moved, then deleted.
    pub containers_compacted: u64,
    /// Containers kept because a running job or reader pins them.
    pub containers_pinned: u64,
    /// Stored bytes freed.
    pub bytes_reclaimed: u64,
    /// Live segments moved out of compacted containers.
    pub segments_moved: u64,
    /// True when a suspension request stopped the run; run again to go on.
    pub suspended: bool,
    /// True for a dry run.
    pub dry_run: bool,
}

/// One container's entries, split into live and dead.
#[derive(Debug, Default)]
struct Sorted {
    live: Vec<crate::tier::SegmentEntry>,
    /// Dead segments whose index home is this container, whose entries go:
    /// (fingerprint, stored length, raw length).
    dead: Vec<Dead>,
    live_bytes: u64,
}

impl IndexedTier {
    /// Reclaims space (garbage collection): deletes containers nothing in
    /// the namespace reaches and compacts mostly dead ones (see
    /// [`GcOptions`]). Resumable: a run stopped by a crash, an error or
    /// `suspend` goes on from its durable cursor the next time. Refuses
    /// while an ingest session is open on this handle; containers pinned by
    /// a running job are kept.
    ///
    /// Defined here, not beside the tier: gc is a caller of the tier (it
    /// borrows the engine's PHF, PHV and walk), never called by it.
    pub fn gc(&self, opts: GcOptions, suspend: &SuspendHandle) -> Result<GcReport> {
        run(self, opts, suspend)
    }
}

fn run(tier: &IndexedTier, opts: GcOptions, suspend: &SuspendHandle) -> Result<GcReport> {
    if !(0.0..=1.0).contains(&opts.threshold) {
        return Err(Error::InvalidConfig(format!("reclamation threshold {} must be in 0.0..=1.0", opts.threshold)));
    }
    let _exclusive = tier.gc_gate()?;
    let holds = live_holds(tier, opts.dry_run)?;
    // Scratch files of a run that crashed are stale: gc is exclusive, so
    // nothing else uses the directory.
    let scratch = tier.dir().join(crate::format::layout::TIER_GC_SCRATCH);
    let _ = std::fs::remove_dir_all(&scratch);
    let marked = mark_live(tier, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    let Marked { phf, live, ids, homed } = marked.inspect_err(|e| tier.retire_after(e))?;
    let sweep_started = std::time::Instant::now();
    let next = tier.container_ids()?.last().map_or(0, |c| c.0 + 1);
    let mut record = match tier.gc_record()? {
        Some(r) if !opts.dry_run => r,
        _ => GcRecord { end: next, ..GcRecord::default() },
    };
    let first = record.cursor;
    // Reading and sorting a container's table (a read, a checksum and a
    // PHF lookup per entry) overlaps with dropping the containers before
    // it (index deletions and syncs). Only reads happen ahead: every
    // change is made in order, by this thread.
    let report = std::thread::scope(|s| {
        let (tx, rx) = std::sync::mpsc::sync_channel(EXAMINED_AHEAD);
        let (phf, live, ids, homed, holds) = (&phf, &live, &ids, &homed, &holds);
        let range = record.cursor..record.end;
        s.spawn(move || {
            for raw in range {
                let step = examine(tier, phf, live, ids, homed, holds, ContainerId(raw));
                let failed = step.is_err();
                // The sweep stopped (done, suspended or failed): so do we.
                if tx.send(step).is_err() || failed {
                    return;
                }
            }
        });
        sweep(tier, opts, suspend, holds, &rx, &mut record)
    })?;
    log::info!("gc: swept containers {first}..{} in {:.1} s", record.end, sweep_started.elapsed().as_secs_f64());
    Ok(report)
}

/// Containers examined ahead of the sweep, at most (each holds its sorted
/// table: about 100 bytes per entry).
const EXAMINED_AHEAD: usize = 1;

/// What examining a container found, before the sweep decides.
enum Examined {
    /// Pinned by a running job or reader: kept, not read.
    Pinned(ContainerId),
    /// Deleted already (a resumed run), or never there.
    Missing(ContainerId),
    /// Its table failed its checks: to be retired, and removed.
    Rotten(ContainerId, Error),
    /// Retired whole earlier: nothing in it can be read, it goes.
    Retired(ContainerId),
    /// Read and sorted.
    Read { id: ContainerId, kind: crate::tier::ContainerKind, data_len: u64, sorted: Sorted },
}

impl Examined {
    fn id(&self) -> ContainerId {
        match self {
            Examined::Pinned(id)
            | Examined::Missing(id)
            | Examined::Rotten(id, _)
            | Examined::Retired(id)
            | Examined::Read { id, .. } => *id,
        }
    }
}

/// Whether a running job or reader pins `id`, or a job's durable hold
/// covers it.
fn held(tier: &IndexedTier, holds: &[JobHold], id: ContainerId) -> bool {
    tier.pinned(id) || holds.iter().any(|h| h.holds(id))
}

/// Reads container `id`'s table and sorts its entries (read-only: the
/// sweep makes every change).
fn examine(
    tier: &IndexedTier,
    phf: &Phf,
    live: &Phv,
    ids: &[ContainerId],
    homed: &[u32],
    holds: &[JobHold],
    id: ContainerId,
) -> Result<Examined> {
    if held(tier, holds, id) {
        return Ok(Examined::Pinned(id));
    }
    if tier.is_retired(id)? {
        return Ok(Examined::Retired(id));
    }
    match tier.read_metadata(id) {
        Err(Error::Tier(TierError::MissingContainer { .. })) => Ok(Examined::Missing(id)),
        Err(e) if e.is_rot() => Ok(Examined::Rotten(id, e)),
        Err(e) => Err(e),
        Ok(meta) => {
            let homed_here = ids.binary_search(&id).ok().and_then(|i| homed.get(i)).copied();
            let sorted = sort(tier, phf, live, id, homed_here, &meta.segments)?;
            Ok(Examined::Read { id, kind: meta.kind, data_len: meta.data_len, sorted })
        }
    }
}

/// The sweep: takes each examined container in id order and deletes it,
/// compacts it or keeps it, committing the cursor with each change.
fn sweep(
    tier: &IndexedTier,
    opts: GcOptions,
    suspend: &SuspendHandle,
    holds: &[JobHold],
    examined: &std::sync::mpsc::Receiver<Result<Examined>>,
    record: &mut GcRecord,
) -> Result<GcReport> {
    let mut report = GcReport { dry_run: opts.dry_run, ..GcReport::default() };
    let mut since_commit = 0u32;
    // Dead containers waiting to be dropped together (see `flush`).
    let mut pending: Vec<(ContainerId, Vec<Dead>)> = Vec::new();
    while record.cursor < record.end {
        let raw = record.cursor;
        if suspend.is_requested() {
            suspend.0.store(false, std::sync::atomic::Ordering::SeqCst);
            if !opts.dry_run {
                flush(tier, &mut pending, record)?;
                tier.gc_commit(Some(record))?;
            }
            report.suspended = true;
            return Ok(add(report, record));
        }
        let step = examined.recv().map_err(|_| Error::internal("gc: the examining thread stopped early"))??;
        let id = step.id();
        if id.0 != raw {
            return Err(Error::internal(format!("gc: container {id} examined in the place of {raw}")));
        }
        record.cursor = raw + 1;
        // A pin taken since the container was examined keeps it too.
        if matches!(step, Examined::Pinned(_)) || held(tier, holds, id) {
            report.containers_pinned += 1;
            continue;
        }
        let (kind, total, sorted) = match step {
            Examined::Pinned(_) | Examined::Missing(_) => continue,
            Examined::Rotten(_, e) => {
                if !opts.dry_run {
                    log::warn!("gc: container {id} is unreadable ({e}); retired, and removed");
                    tier.retire_table(id);
                    if !tier.is_retired(id)? {
                        return Err(e);
                    }
                }
                // Its size is unknown without a table: it adds no
                // reclaimed bytes.
                (crate::tier::ContainerKind::Data, 0, Sorted::default())
            }
            Examined::Retired(_) => (crate::tier::ContainerKind::Data, 0, Sorted::default()),
            Examined::Read { kind, data_len, sorted, .. } => (kind, data_len, sorted),
        };
        if sorted.live.is_empty() {
            record.containers_deleted += 1;
            record.bytes_reclaimed += total;
            if !opts.dry_run {
                pending.push((id, sorted.dead));
                if pending.len() >= DROP_GROUP || pending.iter().map(|p| p.1.len()).sum::<usize>() >= DROP_GROUP_ENTRIES {
                    flush(tier, &mut pending, record)?;
                }
                since_commit = 0;
            }
        } else if (sorted.live_bytes as f64) < opts.threshold * total as f64 && sorted.live_bytes < total {
            if !opts.dry_run {
                // The drops before this container go first, under a cursor
                // that does not yet pass it.
                flush(tier, &mut pending, &GcRecord { cursor: raw, ..*record })?;
                if !compact(tier, id, kind, total, &sorted, record)? {
                    continue;
                }
                since_commit = 0;
            }
            record.containers_compacted += 1;
            record.bytes_reclaimed += total - sorted.live_bytes;
            record.segments_moved += sorted.live.len() as u64;
        } else if !opts.dry_run {
            since_commit += 1;
            if since_commit >= 64 {
                // A cursor past a pending drop is never committed without it.
                if pending.is_empty() {
                    tier.gc_commit(Some(record))?;
                } else {
                    flush(tier, &mut pending, record)?;
                }
                since_commit = 0;
            }
        }
    }
    if !opts.dry_run {
        flush(tier, &mut pending, record)?;
        tier.gc_commit(None)?;
    }
    Ok(add(report, record))
}

/// Moves container `id`'s live segments into a new container and drops
/// it, committing `record` as it will be after. False when some live
/// segment was rotten: those are retired and the container is kept this
/// round (the next run finds the rotten copies dead and compacts the rest).
fn compact(
    tier: &IndexedTier,
    id: ContainerId,
    kind: crate::tier::ContainerKind,
    total: u64,
    sorted: &Sorted,
    record: &GcRecord,
) -> Result<bool> {
    let stored = tier.read_segments(id, &sorted.live)?;
    if stored.len() != sorted.live.len() {
        return Err(Error::contract(
            format!("read_segments of container {id}"),
            format!("answered {} segments for {} asked", stored.len(), sorted.live.len()),
        ));
    }
    let mut segs = Vec::with_capacity(stored.len());
    let mut rotten = Vec::new();
    for (e, b) in sorted.live.iter().zip(stored) {
        // Moved bytes are verified like copied ones.
        if crate::format::container::check_stored(e, &b, id).is_err() {
            rotten.push((e.fingerprint, id));
        }
        segs.push(OwnedSegment { fingerprint: e.fingerprint, bytes: b.into(), raw_len: e.raw_len, codec: e.codec });
    }
    if !rotten.is_empty() {
        // Never moved on, never trusted again.
        log::warn!("gc: {} live segment(s) of container {id} are rotten; retired, container kept", rotten.len());
        tier.retire(&rotten)?;
        return Ok(false);
    }
    tier.gc_move(id, kind, &segs, &sorted.dead, &{
        let mut r = *record;
        r.containers_compacted += 1;
        r.bytes_reclaimed += total - sorted.live_bytes;
        r.segments_moved += sorted.live.len() as u64;
        r
    })?;
    Ok(true)
}

/// Dead containers dropped in one synced batch, at most: each drop's two
/// syncs are shared by the group. A crash redoes at most a group's
/// examination (the cursor moves with the batch).
const DROP_GROUP: usize = 64;
/// Dead index entries dropped in one batch, at most (their list and the
/// batch are held in memory: about 100 bytes each).
const DROP_GROUP_ENTRIES: usize = 1 << 18;

/// Drops the pending dead containers in one batch that also commits
/// `record` (whose cursor is past each of them).
fn flush(tier: &IndexedTier, pending: &mut Vec<(ContainerId, Vec<Dead>)>, record: &GcRecord) -> Result<()> {
    tier.gc_drop(pending, record)?;
    pending.clear();
    Ok(())
}

/// The durable holds of jobs that still exist; the holds of jobs that are
/// gone (abandoned, their state directory removed) or done are dropped,
/// except in a dry run. A hold whose job cannot be checked is kept.
fn live_holds(tier: &IndexedTier, dry_run: bool) -> Result<Vec<JobHold>> {
    let mut live = Vec::new();
    for h in tier.job_holds()? {
        let alive = match crate::engine::Seeder::status(&h.state_dir) {
            Ok(p) => p.job_id == h.job_id.to_string() && p.next_phase != crate::engine::Phase::Done,
            Err(e) if matches!(e.root(), Error::Job(JobError::NoJob { .. })) => false,
            Err(e) => {
                log::warn!(
                    "gc: cannot tell whether job {} in {} still exists ({e}); its hold is kept",
                    h.job_id,
                    h.state_dir.display()
                );
                true
            }
        };
        if alive {
            live.push(h);
        } else if !dry_run {
            log::info!("gc: job {} in {} is gone or done; its hold is dropped", h.job_id, h.state_dir.display());
            tier.drop_hold(&h.job_id)?;
        }
    }
    Ok(live)
}

/// The report with the record's totals (a resumed run reports the whole
/// reclamation, earlier runs included).
fn add(mut report: GcReport, record: &GcRecord) -> GcReport {
    report.containers_deleted = record.containers_deleted;
    report.containers_compacted = record.containers_compacted;
    report.bytes_reclaimed = record.bytes_reclaimed;
    report.segments_moved = record.segments_moved;
    report
}

/// What marking found live.
struct Marked {
    phf: Phf,
    live: Phv,
    /// The containers the PHF was built over, ascending.
    ids: Vec<ContainerId>,
    /// For each of `ids`, how many index entries point to it.
    homed: Vec<u32>,
}

/// Builds the PHF over the whole index (one scan, into a key file in
/// `scratch`) and sets the bit of every segment the namespace reaches,
/// streaming the namespace a window at a time and confirming the leaves
/// by one merge with the key file rather than a lookup each. A tree that
/// reaches a segment the index lacks is a corrupt tier: marking fails and
/// nothing is reclaimed.
fn mark_live(tier: &IndexedTier, scratch: &std::path::Path) -> Result<Marked> {
    std::fs::create_dir_all(scratch).map_err(|e| Error::io(scratch, e))?;
    let threads = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let ids = tier.container_ids()?;
    let t = std::time::Instant::now();
    let written = crate::mark::keys::write(tier, &ids, &scratch.join("keys.bin"))?;
    log::info!("gc: scanned the index of {} containers in {:.1} s", ids.len(), t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let phf = Phf::build(&written.file, crate::mark::phf::PhfKind::Compact, 1.7, threads)?;
    log::info!("gc: built the PHF over {} fingerprints in {:.1} s", phf.keys, t.elapsed().as_secs_f64());
    let t = std::time::Instant::now();
    let mut live = Phv::zeroed(phf.keys);
    let names = crate::mark::walk::Listed::new(tier);
    crate::mark::marks::mark(
        tier,
        &phf,
        &|_| true,
        &mut crate::mark::walk::Listed::new(tier),
        &names,
        &mut live,
        crate::mark::marks::LeafCheck::Spool { scratch: &scratch.join("mark"), keys: Some(&written.file) },
        &mut |_| {},
    )?;
    log::info!("gc: marked what the namespace reaches in {:.1} s", t.elapsed().as_secs_f64());
    Ok(Marked { phf, live, ids, homed: written.homed })
}

/// Splits a container's entries: live ones are the index's home for their
/// fingerprint and reached by the namespace (a slot is trusted only for a
/// fingerprint the index places here); everything else is dead, including
/// a second copy of a segment the index places elsewhere.
///
/// Which entries the index places here is known without a lookup when
/// `homed` (how many index entries point here, counted by marking's scan
/// of the index) equals the table's length and the table lists no
/// fingerprint twice: then every entry is one of those. Otherwise each is
/// looked up. Should a damaged index make the counts agree by accident
/// (an entry here pointing elsewhere, balanced by one elsewhere pointing
/// here), no live copy is lost: liveness is per fingerprint, a live entry
/// is moved only as a verified copy, and a dead one's index entry goes
/// only because nothing reaches that fingerprint.
fn sort(
    tier: &IndexedTier,
    phf: &Phf,
    live: &Phv,
    id: ContainerId,
    homed: Option<u32>,
    entries: &[crate::tier::SegmentEntry],
) -> Result<Sorted> {
    let all_home = crate::mark::keys::every_entry_homed(homed, entries);
    let homes = if all_home {
        vec![Some(id); entries.len()]
    } else {
        let fps: Vec<Fingerprint> = entries.iter().map(|e| e.fingerprint).collect();
        let homes = tier.locate(&fps)?;
        if homes.len() != fps.len() {
            return Err(Error::contract("locate", "answered a different number of fingerprints than asked"));
        }
        homes
    };
    let mut out = Sorted { live: Vec::new(), dead: Vec::new(), live_bytes: 0 };
    let mut seen = std::collections::HashSet::new();
    for (e, home) in entries.iter().zip(homes) {
        let is_home = home == Some(id) && (all_home || seen.insert(e.fingerprint));
        if is_home && phf.slot(&e.fingerprint).is_some_and(|s| live.get(s)) {
            out.live_bytes += u64::from(e.len);
            out.live.push(*e);
        } else if is_home {
            out.dead.push((e.fingerprint, u64::from(e.len), u64::from(e.raw_len)));
        }
        // A second copy of a segment the index places elsewhere is dead
        // too, and goes with the container; its entry is not this one's.
    }
    // Sorted here, on the examining thread: the drop then only merges
    // the lists of its group (see `IndexedTier::unindex`).
    out.dead.sort_unstable_by_key(|d| d.0);
    Ok(out)
}

#[cfg(test)]
mod tests;
