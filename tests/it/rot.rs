//! Rot on a tier: a byte of a stored segment, or of a container's table,
//! changes behind the tier's back. Nothing may then delete the only good
//! copy, and once a read has found the rot the tier never counts the bad
//! copy as present again, so the next job heals it.

use std::fs;

use tierseed::{
    ContainerId, ContainerKind, Error, Fault, FaultyTier, Fingerprint, FormatError, GcOptions, IndexedTier, JobError, Mode,
    Outcome, Phase, Seeder, Selection, SuspendHandle, Tier, VerifyLevel,
};

use crate::{check_target, namespace, prefixed, run_to_end, run_until, small_config, synth_source};

/// Rewrites container file `c` of `t` with `f` applied to its bytes.
pub fn tamper(t: &IndexedTier, c: ContainerId, f: impl FnOnce(&mut Vec<u8>)) {
    let path = t.container_path(c);
    let mut bytes = fs::read(&path).unwrap();
    f(&mut bytes);
    let mut perm = fs::metadata(&path).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perm.set_readonly(false);
    fs::set_permissions(&path, perm).unwrap();
    fs::write(&path, &bytes).unwrap();
}

/// The largest data container of `t`.
pub fn largest_data_container(t: &IndexedTier) -> ContainerId {
    t.container_ids()
        .unwrap()
        .into_iter()
        .filter(|c| t.read_metadata(*c).unwrap().kind == ContainerKind::Data)
        .max_by_key(|c| t.read_metadata(*c).unwrap().data_len)
        .expect("a data container")
}

/// Flips one byte in the data region of container `c` of `t`, inside a
/// raw segment (every flipped bit of one changes its hash); returns that
/// segment's fingerprint. The header and table still check out.
pub fn rot_a_segment(t: &IndexedTier, c: ContainerId) -> Fingerprint {
    let meta = t.read_metadata(c).unwrap();
    let victim = *meta.segments.iter().find(|s| s.codec == tierseed::Codec::Raw).expect("random data is stored raw");
    // The data region follows the 48-byte header and the table, 48 bytes
    // per entry in format version 2 (docs/FORMAT.md).
    let at = 48 + 48 * meta.segments.len() + victim.offset as usize + victim.len as usize / 2;
    tamper(t, c, |b| b[at] ^= 0x01);
    victim.fingerprint
}

/// Reclaims every dead byte (the rotten copies a heal left behind).
fn gc_all(t: &IndexedTier) -> tierseed::GcReport {
    t.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap()
}

#[test]
fn rot_on_the_target_never_lets_a_move_delete_the_only_good_copy() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 41, 3, 30, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    // A copy of the first generation: its segments are on the target.
    let mut job =
        Seeder::builder(&src, &dst, dir.path().join("j0")).selection(Selection::new().prefix("gen-000")).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    let c = largest_data_container(&dst);
    let rotten = rot_a_segment(&dst, c);
    // A move of everything, at the default (metadata) Verify level.
    let mut job =
        Seeder::builder(&src, &dst, dir.path().join("j1")).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    let report = run_to_end(&mut job);
    drop(job);
    assert!(report.counters.segments_deduplicated > 0, "the target held part of the data: {:?}", report.counters);
    assert!(namespace(&src).is_empty(), "the move removed every file from the source");
    // The rotten copy was not trusted: the segment has a new home.
    let home = dst.locate(&[rotten]).unwrap()[0];
    assert!(home.is_some_and(|h| h != c), "segment {rotten} still indexed in rotten container {c}: {home:?}");
    // Every file restores from the target, byte for byte; after
    // reclamation nothing is stored twice and the scrub is clean.
    gc_all(&dst);
    check_target(&dst, &all);
}

#[test]
fn rot_found_by_verify_full_is_retired_so_the_resume_heals_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 23, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state)
        .selection(Selection::new().prefix("gen-001"))
        .mode(Mode::Move)
        .verify(VerifyLevel::Full)
        .build()
        .unwrap();
    drop(run_until(job, &state, &src, &dst, Phase::Verify));
    let c = largest_data_container(&dst);
    let rotten = rot_a_segment(&dst, c);
    let err = Seeder::resume(&state, &src, &dst).unwrap().run().unwrap_err();
    assert!(matches!(err.root(), Error::Job(JobError::VerifyFailed { .. })), "{err}");
    assert_eq!(dst.locate(&[rotten]).unwrap()[0], None, "the rotten segment is still counted as present");
    // Before the fix, every resume and every new job failed the same way.
    let mut job = Seeder::resume(&state, &src, &dst).unwrap();
    run_to_end(&mut job);
    drop(job);
    let home = dst.locate(&[rotten]).unwrap()[0];
    assert!(home.is_some_and(|h| h != c), "{home:?}");
    gc_all(&dst);
    check_target(&dst, &prefixed(&all, &["gen-001/"]));
}

#[test]
fn seed_verify_retires_rot_names_the_files_and_is_clean_after_the_heal() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 29, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("j0")).selection(Selection::all()).build().unwrap());
    let c = largest_data_container(&dst);
    let rotten = rot_a_segment(&dst, c);
    // The scrub that finds the rot reports it and retires the copy.
    let first = dst.verify().unwrap();
    assert!(first.problems.iter().any(|p| p.contains(&rotten.to_string())), "{:?}", first.problems);
    assert_eq!(dst.locate(&[rotten]).unwrap()[0], None);
    // The next scrub names the files that lack the segment, not the
    // container (the rotten copy is garbage now).
    let second = dst.verify().unwrap();
    assert!(!second.is_clean());
    assert!(second.retired >= 1, "{second:?}");
    assert!(second.problems.iter().all(|p| p.starts_with("file ")), "{:?}", second.problems);
    // gc refuses to mark a tier whose trees reach a missing segment.
    assert!(dst.gc(GcOptions::default(), &SuspendHandle::default()).is_err());
    // A job from the source copies good bytes again.
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("j1")).selection(Selection::all()).build().unwrap());
    assert!(dst.verify().unwrap().is_clean(), "{:?}", dst.verify().unwrap().problems);
    let r = gc_all(&dst);
    assert!(r.containers_compacted + r.containers_deleted >= 1, "{r:?}");
    check_target(&dst, &all);
}

#[test]
fn a_target_container_whose_table_rots_is_retired_and_reclaimed() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 31, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("j0")).selection(Selection::all()).build().unwrap());
    let c = largest_data_container(&dst);
    let fps: Vec<Fingerprint> = dst.read_metadata(c).unwrap().segments.iter().map(|e| e.fingerprint).collect();
    // A byte of the table (just past the 48-byte header).
    tamper(&dst, c, |b| b[48 + 5] ^= 0x40);
    let first = dst.verify().unwrap();
    assert!(first.problems.iter().any(|p| p.contains(&format!("container {c}"))), "{:?}", first.problems);
    assert!(dst.locate(&fps).unwrap().iter().all(Option::is_none), "entries of the rotten container kept");
    let second = dst.verify().unwrap();
    assert!(second.problems.iter().all(|p| p.starts_with("file ")), "{:?}", second.problems);
    // A move heals it: everything it relies on is proven or written.
    let mut job =
        Seeder::builder(&src, &dst, dir.path().join("j1")).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    run_to_end(&mut job);
    drop(job);
    assert!(dst.verify().unwrap().is_clean(), "{:?}", dst.verify().unwrap().problems);
    let r = gc_all(&dst);
    assert!(r.containers_deleted >= 1, "{r:?}");
    assert!(!dst.container_ids().unwrap().contains(&c), "the retired container was kept");
    check_target(&dst, &all);
}

#[test]
fn a_restore_that_meets_rot_retires_it() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 37, 1, 10, 20_000);
    let c = largest_data_container(&src);
    let rotten = rot_a_segment(&src, c);
    let mut failed = 0;
    for path in all.keys() {
        if let Err(e) = src.restore(path, &mut Vec::new()) {
            assert!(
                matches!(e.root(), Error::Format(FormatError::CorruptSegment { fingerprint, .. }) if *fingerprint == rotten),
                "{e}"
            );
            failed += 1;
        }
    }
    assert!(failed >= 1);
    assert_eq!(src.locate(&[rotten]).unwrap()[0], None, "a restore found rot and the tier still counts it");
}

#[test]
fn a_read_damaged_on_the_way_retires_nothing() {
    // The target's bytes are sound; only what reaches the engine is
    // flipped. The move's proof fails, the source's bytes are written
    // again, and the tier (re-reading for itself) retires nothing.
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 43, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("j0")).selection(Selection::all()).build().unwrap());
    let before = crate::index_fingerprints(&dst).len();
    let faulty = FaultyTier::new(&dst, (1..=4).map(Fault::corrupt_read).collect());
    let mut job =
        Seeder::builder(&src, &faulty, dir.path().join("j1")).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    match job.run().unwrap() {
        Outcome::Completed(r) => assert!(r.counters.segments_deduplicated > 0, "{:?}", r.counters),
        Outcome::Suspended(p) => panic!("{p:?}"),
    }
    drop(job);
    assert_eq!(crate::index_fingerprints(&dst).len(), before, "a sound segment was retired");
    assert!(namespace(&src).is_empty());
    gc_all(&dst);
    check_target(&dst, &all);
}

#[test]
fn a_copy_trusts_the_index_a_move_reads_back() {
    // Copy mode keeps the metadata level: it does not read back what the
    // target had. The same data moved reads it back.
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 47, 1, 10, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("j0")).selection(Selection::all()).build().unwrap());
    let reads = |mode: Mode, state: &str| {
        let faulty = FaultyTier::new(&dst, Vec::new());
        let mut job =
            Seeder::builder(&src, &faulty, dir.path().join(state)).selection(Selection::all()).mode(mode).build().unwrap();
        run_to_end(&mut job);
        drop(job);
        faulty.calls(tierseed::FaultKind::ReadSegments)
    };
    let copy_reads = reads(Mode::Copy, "j1");
    let move_reads = reads(Mode::Move, "j2");
    assert!(move_reads > copy_reads, "move read {move_reads} times, copy {copy_reads}");
}
