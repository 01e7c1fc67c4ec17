//! The seeding engine, end to end over local tiers.

use std::fs;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tierseed::{
    Error, Event, FormatError, IndexedTier, JobError, Mode, Outcome, Phase, Seeder, Selection, SuspendHandle, TierError,
};

use crate::{check_target, index_fingerprints, namespace, prefixed, run_to_end, run_until, small_config, synth_source};

#[test]
fn copy_end_to_end_every_file_restores_and_nothing_is_stored_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 1, 3, 30, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let before = namespace(&src);
    let sel = Selection::new().prefix("gen-002").glob("gen-000/projects/**");
    let mut job = Seeder::builder(&src, &dst, dir.path().join("state")).selection(sel).build().unwrap();
    let r = run_to_end(&mut job);
    let want = prefixed(&all, &["gen-002/", "gen-000/projects/"]);
    check_target(&dst, &want);
    assert_eq!(r.counters.files_selected, want.len() as u64);
    assert_eq!(r.counters.files_switched, want.len() as u64);
    // An empty target receives exactly the marked segments.
    assert_eq!(index_fingerprints(&dst).len() as u64, r.counters.segments_marked);
    assert_eq!(r.counters.segments_copied, r.counters.segments_marked);
    assert_eq!(namespace(&src), before, "copy mode changed the source namespace");
    assert!(src.verify().unwrap().is_clean());
}

#[test]
fn move_end_to_end_removes_exactly_the_selected_files_from_the_source() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 2, 2, 25, 10_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let before = namespace(&src);
    let mut job = Seeder::builder(&src, &dst, dir.path().join("state"))
        .selection(Selection::new().prefix("gen-000"))
        .mode(Mode::Move)
        .build()
        .unwrap();
    let r = run_to_end(&mut job);
    let want = prefixed(&all, &["gen-000/"]);
    check_target(&dst, &want);
    assert_eq!(r.counters.files_removed, want.len() as u64);
    let after = namespace(&src);
    for (p, e) in &before {
        if want.contains_key(p) {
            assert!(!after.contains_key(p), "{p} still in the source");
        } else {
            assert_eq!(after.get(p), Some(e), "unselected {p} changed");
        }
    }
    // Seeding never modifies source data.
    assert!(src.verify().unwrap().is_clean());
}

#[test]
fn suspend_at_every_commit_point_gives_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 3, 3, 40, 40_000);
    let sel = Selection::new().prefix("gen-001").prefix("gen-002/home");
    let want = prefixed(&all, &["gen-001/", "gen-002/home"]);

    // The reference: one uninterrupted run.
    let ref_dst = IndexedTier::create(dir.path().join("ref"), small_config()).unwrap();
    let reference =
        run_to_end(&mut Seeder::builder(&src, &ref_dst, dir.path().join("ref-state")).selection(sel.clone()).build().unwrap());
    assert!(reference.counters.containers_total >= 20, "dataset too small: {} containers", reference.counters.containers_total);

    // A job whose suspension is requested before every run: each run
    // stops at the very next commit point (a phase boundary, one source
    // container in Copy, one batch in Switch), so this visits them all.
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let mut job = Seeder::builder(&src, &dst, &state).selection(sel).build().unwrap();
    let mut runs = 0;
    let mut phases_seen = Vec::new();
    let report = loop {
        runs += 1;
        assert!(runs < 10_000, "not making progress");
        job.suspend_handle().suspend();
        match job.run().unwrap() {
            Outcome::Completed(r) => break r,
            Outcome::Suspended(p) => {
                phases_seen.push(p.next_phase);
                drop(job);
                job = Seeder::resume(&state, &src, &dst).unwrap();
            }
        }
    };
    // Every phase boundary and every Copy container was a stop.
    for p in [Phase::BuildPhf, Phase::Mark, Phase::Copy, Phase::Verify, Phase::Switch, Phase::Done] {
        assert!(phases_seen.contains(&p), "never suspended before {p}");
    }
    let copy_stops = phases_seen.iter().filter(|p| **p == Phase::Copy).count() as u64;
    assert!(copy_stops >= reference.counters.containers_total - 1, "only {copy_stops} stops in Copy");
    check_target(&dst, &want);
    let mut a = index_fingerprints(&dst);
    let mut b = index_fingerprints(&ref_dst);
    a.sort();
    b.sort();
    assert!(a == b, "the interrupted job stored a different set of segments");
    assert_eq!(namespace(&dst), namespace(&ref_dst));
    assert_eq!(report.counters.segments_copied, reference.counters.segments_copied);
    assert_eq!(report.resumes as usize, runs - 1);
}

#[test]
fn suspend_after_the_kth_container_for_every_k() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 4, 2, 30, 40_000);
    let want = prefixed(&all, &["gen-001/"]);
    let total = src.info().unwrap().containers;
    assert!(total >= 16, "dataset too small: {total} containers");
    for k in [1, 2, 3, 5, 8, 13, total / 2, total - 1] {
        let dst = IndexedTier::create(dir.path().join(format!("dst{k}")), small_config()).unwrap();
        let state = dir.path().join(format!("state{k}"));
        let handle: Mutex<Option<SuspendHandle>> = Mutex::new(None);
        let seen = AtomicU64::new(0);
        let observer = |e: &Event| {
            if matches!(e, Event::ContainerCopied { .. } | Event::ContainerSkipped { .. })
                && seen.fetch_add(1, Ordering::SeqCst) + 1 == k
                && let Some(h) = handle.lock().unwrap().as_ref()
            {
                h.suspend();
            }
        };
        let mut job =
            Seeder::builder(&src, &dst, &state).selection(Selection::new().prefix("gen-001")).observer(observer).build().unwrap();
        *handle.lock().unwrap() = Some(job.suspend_handle());
        let Outcome::Suspended(p) = job.run().unwrap() else { panic!("k={k}: did not suspend") };
        assert_eq!(p.next_phase, Phase::Copy);
        assert_eq!(p.copy_cursor, k, "k={k}: suspended at the wrong container");
        drop(job);
        let status = Seeder::status(&state).unwrap();
        assert_eq!(status.copy_cursor, k);
        run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
        check_target(&dst, &want);
    }
}

#[test]
fn a_target_that_already_holds_data_gets_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 5, 3, 20, 16_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let first = run_to_end(
        &mut Seeder::builder(&src, &dst, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    let second = run_to_end(
        &mut Seeder::builder(&src, &dst, dir.path().join("s2"))
            .selection(Selection::new().prefix("gen-000").prefix("gen-001"))
            .build()
            .unwrap(),
    );
    let c = second.counters;
    assert!(c.segments_deduplicated > 0 && c.bytes_deduplicated > 0, "{c:?}");
    assert_eq!(c.segments_copied + c.segments_deduplicated, c.segments_marked);
    // gen-000's segments were all on the target already.
    assert!(c.segments_deduplicated >= first.counters.segments_marked, "{c:?} vs {:?}", first.counters);
    check_target(&dst, &prefixed(&all, &["gen-000/", "gen-001/"]));
}

#[test]
fn resume_against_another_target_is_refused_and_the_context_kept() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 6, 1, 10, 10_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let other = IndexedTier::create(dir.path().join("other"), small_config()).unwrap();
    let state = dir.path().join("state");
    let mut job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    job.suspend_handle().suspend();
    let Outcome::Suspended(_) = job.run().unwrap() else { panic!() };
    drop(job);
    let before = Seeder::status(&state).unwrap();
    let err = Seeder::resume(&state, &src, &other).err().expect("resume against another target succeeded");
    assert!(matches!(err, Error::Job(JobError::TierMismatch { role: "target", .. })), "{err}");
    assert!(err.to_string().contains(&dst.tier_id_string()), "{err}");
    let err = Seeder::resume(&state, &other, &dst).err().unwrap();
    assert!(matches!(err, Error::Job(JobError::TierMismatch { role: "source", .. })), "{err}");
    assert_eq!(Seeder::status(&state).unwrap(), before);
    run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
}

trait IdString {
    fn tier_id_string(&self) -> String;
}
impl IdString for IndexedTier {
    fn tier_id_string(&self) -> String {
        tierseed::Tier::tier_id(self).unwrap().to_string()
    }
}

#[test]
fn a_source_container_deleted_mid_job_fails_naming_the_files() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 7, 2, 16, 16_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    // Stop at the start of Copy, then delete the snapshot's last container.
    let job = run_until(job, &state, &src, &dst, Phase::Copy);
    drop(job);
    let ids = tierseed::Tier::container_ids(&src).unwrap();
    let victim = *ids.last().unwrap();
    fs::remove_file(src.container_path(victim)).unwrap();
    let err = Seeder::resume(&state, &src, &dst).unwrap().run().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.root(), Error::Tier(TierError::MissingContainer { id, .. }) if *id == victim), "{msg}");
    assert!(msg.contains("copy") && msg.contains("gen-"), "error names neither phase nor files: {msg}");
    // It never reports success, however often it is resumed.
    assert!(Seeder::resume(&state, &src, &dst).unwrap().run().is_err());
    assert!(namespace(&dst).is_empty(), "files were switched although data is missing");
}

#[test]
fn estimate_matches_what_the_job_then_does_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 8, 3, 20, 12_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(
        &mut Seeder::builder(&src, &dst, dir.path().join("s0")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    let sel = Selection::new().prefix("gen-001").prefix("gen-000/home");
    let est = Seeder::estimate(&src, &dst, &sel).unwrap();
    let dst_before = index_fingerprints(&dst);
    assert_eq!(index_fingerprints(&dst), dst_before);
    let r = run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("s1")).selection(sel).build().unwrap());
    assert_eq!(est.files, r.counters.files_selected);
    assert_eq!(est.segments, r.counters.segments_marked);
    assert_eq!(est.bytes_to_copy, r.counters.bytes_copied);
    assert_eq!(est.bytes_on_target, r.counters.bytes_deduplicated);
    assert!(est.bytes_reclaimable > 0 && est.bytes_reclaimable <= est.bytes_to_copy + est.bytes_on_target);
}

#[test]
fn bad_requests_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 9, 1, 5, 5_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("state");
    assert!(matches!(Seeder::builder(&src, &dst, &st).build().err().unwrap(), Error::Job(JobError::EmptySelection)));
    let err =
        Seeder::builder(&src, &dst, &st).selection(Selection::new().prefix("nothing-here")).build().unwrap().run().unwrap_err();
    assert!(matches!(err.root(), Error::Job(JobError::EmptySelection)), "{err}");
    Seeder::abandon(&st).unwrap();
    let err =
        Seeder::builder(&src, &dst, &st).selection(Selection::new().path("no/such/file")).build().unwrap().run().unwrap_err();
    assert!(
        matches!(err.root(), Error::Tier(TierError::FileNotFound { tier: tierseed::TierName::Source, path }) if path == "no/such/file"),
        "{err}"
    );
    Seeder::abandon(&st).unwrap();
    assert!(matches!(
        Seeder::builder(&src, &dst, &st).selection(Selection::all()).gamma(1.0).build().err().unwrap(),
        Error::InvalidConfig(_)
    ));
    assert!(matches!(Seeder::resume(dir.path().join("none"), &src, &dst).err().unwrap(), Error::Job(JobError::NoJob { .. })));

    // An unfinished job blocks a new one until resumed or abandoned.
    let job = Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().unwrap();
    let err = Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().err().unwrap();
    assert!(matches!(err, Error::Tier(TierError::Locked { .. })), "{err}");
    drop(job);
    let err = Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().err().unwrap();
    assert!(matches!(err, Error::Job(JobError::JobExists { .. })) && err.to_string().contains("abandon"), "{err}");

    // A finished job's resume returns its report again.
    let r = run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
    let again = run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
    assert_eq!(r.counters, again.counters);
    Seeder::abandon(&st).unwrap();
    assert!(matches!(Seeder::status(&st).err().unwrap(), Error::Job(JobError::NoJob { .. })));
}

#[test]
fn a_suspend_request_stops_one_run_only() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 12, 1, 8, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let mut job = Seeder::builder(&src, &dst, dir.path().join("st")).selection(Selection::all()).build().unwrap();
    job.suspend_handle().suspend();
    let Outcome::Suspended(p) = job.run().unwrap() else { panic!("did not suspend") };
    assert_eq!(p.next_phase, Phase::BuildPhf);
    assert!(!job.suspend_handle().is_requested());
    // The same Seeder runs on to completion.
    run_to_end(&mut job);
}

#[test]
fn events_follow_the_phases_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 10, 1, 8, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let events = Mutex::new(Vec::new());
    let mut job = Seeder::builder(&src, &dst, dir.path().join("st"))
        .selection(Selection::all())
        .observer(|e: &Event| events.lock().unwrap().push(e.clone()))
        .build()
        .unwrap();
    run_to_end(&mut job);
    drop(job);
    let ev = events.into_inner().unwrap();
    let finished: Vec<Phase> = ev.iter().filter_map(|e| if let Event::PhaseFinished(p) = e { Some(*p) } else { None }).collect();
    assert_eq!(finished, Phase::ALL.to_vec());
    assert!(ev.iter().any(|e| matches!(e, Event::TargetSealed { .. })));
    assert!(matches!(ev.last(), Some(Event::Completed(_))));
}

#[test]
fn a_corrupt_phf_blob_or_phv_chunk_is_detected_at_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 11, 1, 8, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("st");
    let job = Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().unwrap();
    let job = run_until(job, &st, &src, &dst, Phase::Copy);
    drop(job);
    let phf = fs::read_dir(&st).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(".bin")).unwrap();
    let good = fs::read(&phf).unwrap();
    let mut bad = good.clone();
    let n = bad.len();
    bad[n / 2] ^= 0x20;
    fs::write(&phf, &bad).unwrap();
    let err = Seeder::resume(&st, &src, &dst).unwrap().run().unwrap_err();
    assert!(matches!(err.root(), Error::Format(FormatError::CorruptRecord { what, .. }) if what.contains("PHF")), "{err}");
    fs::write(&phf, &good).unwrap();

    // A flipped bit inside a stored PHV chunk (a valid RocksDB value whose
    // envelope no longer checks) is refused at load, naming the chunk.
    {
        let db = rocksdb::DB::open_default(st.join(tierseed::layout::JOB_CONTEXT)).unwrap();
        let key = b"phv/0000000000";
        let good_chunk = db.get(key).unwrap().expect("PHV chunk 0 stored");
        let mut bad = good_chunk.clone();
        bad[20] ^= 0x04;
        db.put(key, &bad).unwrap();
        drop(db);
        let err = Seeder::resume(&st, &src, &dst).unwrap().run().unwrap_err();
        assert!(
            matches!(err.root(), Error::Format(FormatError::CorruptRecord { what, .. }) if what.contains("PHV chunk 0")),
            "{err}"
        );
        let db = rocksdb::DB::open_default(st.join(tierseed::layout::JOB_CONTEXT)).unwrap();
        db.put(key, &good_chunk).unwrap();
    }
    run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
}

#[test]
fn a_corrupt_context_record_is_an_error_naming_it_never_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 13, 1, 8, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("st");
    let job = Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().unwrap();
    drop(run_until(job, &st, &src, &dst, Phase::Copy));
    let before = Seeder::status(&st).unwrap();
    let flip = |key: &str| -> Vec<u8> {
        let db = rocksdb::DB::open_default(st.join(tierseed::layout::JOB_CONTEXT)).unwrap();
        let good = db.get(key).unwrap().unwrap_or_else(|| panic!("record {key} missing"));
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x01;
        db.put(key, &bad).unwrap();
        good
    };
    let restore = |key: &str, good: &[u8]| {
        rocksdb::DB::open_default(st.join(tierseed::layout::JOB_CONTEXT)).unwrap().put(key, good).unwrap();
    };
    // The small records are checked when the job is reopened: the resume
    // itself fails, and nothing runs.
    for key in ["job", "progress", "snapshot", "phf"] {
        let good = flip(key);
        let err = Seeder::resume(&st, &src, &dst).err().unwrap_or_else(|| panic!("{key}: corrupt record accepted"));
        assert!(
            matches!(err.root(), Error::Format(FormatError::CorruptRecord { what, .. }) if what.contains(key)),
            "{key}: {err}"
        );
        restore(key, &good);
    }
    assert_eq!(Seeder::status(&st).unwrap(), before, "a refused resume changed the context");
    // A selected-files chunk is checked when read: the job stops at Switch,
    // before any namespace entry is written.
    let good = flip("files/0000000000");
    let err = Seeder::resume(&st, &src, &dst).unwrap().run().unwrap_err();
    assert!(
        matches!(err.root(), Error::Format(FormatError::CorruptRecord { what, .. }) if what.contains("files/0000000000")),
        "{err}"
    );
    assert!(namespace(&dst).is_empty());
    restore("files/0000000000", &good);
    run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
    assert_eq!(namespace(&dst).len(), 8);
}

/// Regression: a kill during job creation used to leave `ctx/` without
/// RocksDB's CURRENT file, and `resume` failed with a raw database error.
/// The context is now built in `ctx.creating` and renamed into place: a
/// leftover means "no job", and a new job can start.
#[test]
fn job_context_interrupted_during_creation_is_no_job() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 14, 1, 4, 4_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("st");
    fs::create_dir_all(st.join(tierseed::layout::JOB_CONTEXT_CREATING)).unwrap();
    fs::write(st.join("ctx.creating/LOG"), b"half-made").unwrap();
    assert!(matches!(Seeder::resume(&st, &src, &dst).err().unwrap(), Error::Job(JobError::NoJob { .. })));
    run_to_end(&mut Seeder::builder(&src, &dst, &st).selection(Selection::all()).build().unwrap());
    assert!(!st.join(tierseed::layout::JOB_CONTEXT_CREATING).exists());
}

#[test]
fn verify_fails_naming_the_file_whose_segment_never_reached_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let mut a = vec![0u8; 40_000];
    tierseed::synth::Rng::new(21).fill(&mut a);
    src.ingest_many([("keep/a.bin", 0, &a[..]), ("keep/b.bin", 0, &b"small and whole"[..])]).unwrap();
    // Hide one data segment of keep/a.bin.
    let data = tierseed::Tier::container_ids(&src).unwrap()[0];
    let hidden = tierseed::Tier::read_metadata(&src, data).unwrap().segments[1].fingerprint;
    // Its container's table no longer lists it, while the index still
    // places it there: Copy never meets it, so its PHV bit stays set.
    let source = tierseed::FaultyTier::new(&src, vec![]).hide_segment(hidden);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let err =
        Seeder::builder(&source, &dst, dir.path().join("st")).selection(Selection::all()).build().unwrap().run().unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err.root(), Error::Job(JobError::Incomplete { missing: 1, .. })), "{msg}");
    assert!(msg.contains("verify") && msg.contains("keep/a.bin") && msg.contains(&hidden.to_string()), "{msg}");
    assert!(!msg.contains("keep/b.bin"), "an intact file was named: {msg}");
    assert!(namespace(&dst).is_empty(), "files were switched although a segment is missing");
}

#[test]
fn errors_chain_their_cause_and_tier_errors_say_whether_they_are_transient() {
    use std::error::Error as _;
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 5, 1, 6, 5_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    // A failing target write, inside the Copy phase.
    let faulty = tierseed::FaultyTier::new(&dst, vec![tierseed::Fault::fail(tierseed::FaultKind::WriteContainer, 1)]);
    let err =
        Seeder::builder(&src, &faulty, dir.path().join("st")).selection(Selection::all()).build().unwrap().run().unwrap_err();
    assert!(matches!(err, Error::Job(JobError::Phase { phase: tierseed::Phase::Copy, .. })), "{err}");
    let cause = err.source().expect("the phase error chains its cause");
    // The phase holds its cause boxed (the enum is recursive).
    let cause: &Error = cause.downcast_ref::<Box<Error>>().expect("the cause is a tierseed error");
    assert!(matches!(cause, Error::Tier(TierError::Backend { transient: false, .. })), "{cause}");
    assert!(cause.source().is_some(), "the tier error keeps the tier's own error as its cause");
    assert!(!err.is_transient());
    // An integrator's transient error.
    let t = Error::transient("GET bucket/key (HTTP 503)", std::io::Error::other("slow down"));
    assert!(t.is_transient());
    assert_eq!(t.to_string(), "GET bucket/key (HTTP 503): slow down");
    // No placeholder paths in messages.
    let c = Error::Format(FormatError::CorruptContainer { id: tierseed::ContainerId(7), path: None, reason: "x".into() });
    assert_eq!(c.to_string(), "container 0000000000000007 is corrupt: x");
}

#[test]
fn compressed_segments_move_as_stored_verified_and_restore() {
    let dir = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let text: Vec<u8> =
        (0..4000).flat_map(|i| format!("line {i}: the quick brown fox jumps over the lazy dog\n").into_bytes()).collect();
    let mut random = vec![0u8; 50_000];
    tierseed::synth::Rng::new(4).fill(&mut random);
    src.ingest_many([("logs/a.txt", 0, &text[..]), ("bin/r.bin", 0, &random[..])]).unwrap();
    let info = src.info().unwrap();
    assert!(info.compression_ratio() > 2.0, "text did not compress: {info:?}");
    // The target would store new segments raw; Copy must move the source's
    // compressed frames as they are, not decompress or recompress them.
    let raw_target = tierseed::TierConfig { compression_level: 0, ..small_config() };
    let dst = IndexedTier::create(dir.path().join("dst"), raw_target).unwrap();
    let r = run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("st")).selection(Selection::all()).build().unwrap());
    let mut zstd_on_target = 0;
    for c in tierseed::Tier::container_ids(&dst).unwrap() {
        zstd_on_target +=
            tierseed::Tier::read_metadata(&dst, c).unwrap().segments.iter().filter(|s| s.codec == tierseed::Codec::Zstd).count();
    }
    assert!(zstd_on_target > 0, "no compressed segment reached the target as stored");
    assert_eq!(dst.info().unwrap().stored_bytes, src.info().unwrap().stored_bytes);
    assert_eq!(r.counters.bytes_copied, src.info().unwrap().stored_bytes, "bytes_copied counts stored bytes");
    let mut out = Vec::new();
    dst.restore("logs/a.txt", &mut out).unwrap();
    assert!(out == text);
    out.clear();
    dst.restore("bin/r.bin", &mut out).unwrap();
    assert!(out == random);
    assert!(dst.verify().unwrap().is_clean());
}

#[test]
fn one_process_ingests_restores_and_seeds_at_once() {
    // While a job runs (suspended and resumed on the way), one thread
    // ingests new backup generations into the source and another restores
    // from both tiers. The job keeps its snapshot; nothing else is hurt.
    let dir = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let mut tree = tierseed::synth::SynthTree::new(71, 30, 20_000, 20.0);
    let mut first = std::collections::BTreeMap::new();
    for _ in 0..2 {
        let g = tree.next_generation();
        src.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice()))).unwrap();
        first.extend(g.into_iter().map(|f| (f.path, f.bytes)));
    }
    let state = dir.path().join("st");
    let later = std::sync::Mutex::new(std::collections::BTreeMap::new());
    let stop = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            for _ in 0..3 {
                let g = tree.next_generation();
                src.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice()))).unwrap();
                later.lock().unwrap().extend(g.into_iter().map(|f| (f.path, f.bytes)));
            }
        });
        s.spawn(|| {
            let (path, bytes) = first.iter().find(|(_, b)| !b.is_empty()).unwrap();
            while !stop.load(Ordering::SeqCst) {
                let mut out = Vec::new();
                src.restore(path, &mut out).unwrap();
                assert!(&out == bytes);
                if let Ok(e) = dst.entry(path) {
                    let mut out = Vec::new();
                    dst.restore(&e.path, &mut out).unwrap();
                    assert!(&out == bytes);
                }
            }
        });
        let sel = Selection::new().prefix("gen-000").prefix("gen-001");
        let job = Seeder::builder(&src, &dst, &state).selection(sel).build().unwrap();
        let job = run_until(job, &state, &src, &dst, Phase::Copy);
        drop(job);
        run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
        stop.store(true, Ordering::SeqCst);
    });
    // The job's selection, and only it, is on the target.
    check_target(&dst, &first);
    // The generations ingested meanwhile are untouched on the source.
    for (p, b) in later.lock().unwrap().iter() {
        let mut out = Vec::new();
        src.restore(p, &mut out).unwrap();
        assert!(&out == b, "{p}");
    }
    assert!(src.verify().unwrap().is_clean());
}

#[test]
fn a_switch_gate_can_approve_defer_or_reject_and_a_resume_asks_again() {
    use tierseed::{GateAnswer, SwitchRequest, SwitchStage};
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 95, 1, 12, 5_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("st");
    let asked = std::sync::Mutex::new(Vec::new());
    let answers = std::sync::Mutex::new(vec![
        GateAnswer::Defer("maintenance window at 02:00".into()),
        GateAnswer::Reject("catalog is read-only".into()),
        GateAnswer::Approve,
        GateAnswer::Defer("ask the operator".into()),
        GateAnswer::Approve,
    ]);
    let gate = |r: &SwitchRequest| {
        asked.lock().unwrap().push(r.stage);
        answers.lock().unwrap().remove(0)
    };
    // 1. Defer: the job suspends with the reason; nothing switched.
    let mut job =
        Seeder::builder(&src, &dst, &state).selection(Selection::all()).mode(Mode::Move).switch_gate(gate).build().unwrap();
    let Outcome::Suspended(p) = job.run().unwrap() else { panic!("not deferred") };
    assert_eq!(p.deferred.as_deref(), Some("maintenance window at 02:00"));
    assert_eq!(p.next_phase, Phase::Switch);
    assert!(namespace(&dst).is_empty());
    drop(job);
    // 2. A resume asks again; reject: an error, nothing switched, the
    // copied data stays on the target.
    let mut job = Seeder::resume(&state, &src, &dst).unwrap().with_switch_gate(gate);
    let err = job.run().unwrap_err();
    assert!(matches!(err.root(), Error::Job(JobError::SwitchRejected { stage: "switch", .. })), "{err}");
    assert!(namespace(&dst).is_empty());
    assert!(dst.info().unwrap().stored_bytes > 0);
    drop(job);
    // 3. Approve the switch, then defer the source removal.
    let mut job = Seeder::resume(&state, &src, &dst).unwrap().with_switch_gate(gate);
    let Outcome::Suspended(p) = job.run().unwrap() else { panic!("removal not deferred") };
    assert_eq!(p.deferred.as_deref(), Some("ask the operator"));
    assert_eq!(namespace(&dst).len(), all.len(), "switched");
    assert_eq!(namespace(&src).len(), all.len(), "not yet removed");
    drop(job);
    // 4. The approval of the switch is remembered; removal is asked again.
    let r = run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap().with_switch_gate(gate));
    assert_eq!(r.counters.files_removed, all.len() as u64);
    assert!(namespace(&src).is_empty());
    check_target(&dst, &all);
    assert_eq!(
        *asked.lock().unwrap(),
        vec![
            SwitchStage::Switch,
            SwitchStage::Switch,
            SwitchStage::Switch,
            SwitchStage::SourceRemoval,
            SwitchStage::SourceRemoval
        ]
    );
}

/// A job keeps its bandwidth schedule: a resume without a limit of its own
/// follows it, one with a limit replaces it for good, and a lifted limit
/// ("0") shows as none.
#[test]
fn a_resumed_job_keeps_its_limit_schedule_until_given_another() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 71, 1, 10, 8 << 10);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("st");
    let schedule: tierseed::LimitSchedule = "mon-fri 08:00-18:00=20, *=200".parse().unwrap();
    let job = Seeder::builder(&src, &dst, &st).selection(Selection::all()).limit_schedule(schedule.clone()).build().unwrap();
    assert_eq!(job.throttle_handle().schedule(), Some(schedule.clone()));
    drop(job);
    assert_eq!(Seeder::status(&st).unwrap().limit.as_deref(), Some("mon-fri 08:00-18:00=20, *=200"));
    let job = Seeder::resume(&st, &src, &dst).unwrap();
    assert_eq!(job.throttle_handle().schedule(), Some(schedule), "a resume without a limit follows the job's");
    let job = job.with_limit_bytes_per_sec(3 << 20).unwrap();
    drop(job);
    let job = Seeder::resume(&st, &src, &dst).unwrap();
    assert_eq!(job.throttle_handle().bytes_per_sec(), 3 << 20, "the replacement was kept");
    let mut job = job.with_limit_bytes_per_sec(0).unwrap();
    assert_eq!(Seeder::status(&st).unwrap().limit, None, "a lifted limit is none");
    run_to_end(&mut job);
}
