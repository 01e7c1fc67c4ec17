//! Space reclamation: what a move job frees comes back, nothing live is
//! ever lost, crashes included.

use std::collections::BTreeMap;
use std::process::Command;

use tierseed::{GcOptions, IndexedTier, Mode, Seeder, Selection, SuspendHandle, Tier};

use crate::{check_target, namespace, prefixed, run_to_end, small_config, synth_source_changing};

/// Every file of `expected` restores from `t`, and `t` scrubs clean.
fn all_restore(t: &IndexedTier, expected: &BTreeMap<String, Vec<u8>>) {
    for (p, b) in expected {
        let mut out = Vec::new();
        t.restore(p, &mut out).unwrap_or_else(|e| panic!("restore {p}: {e}"));
        assert!(&out == b, "{p} differs");
    }
    let v = t.verify().unwrap();
    assert!(v.is_clean(), "{:?}", v.problems);
    assert_eq!(crate::stored_segment_entries(t), crate::index_fingerprints(t).len() as u64, "a segment stored twice");
}

#[test]
fn gc_after_a_move_reclaims_what_estimate_said() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 81, 3, 30, 20_000, 40.0);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let sel = Selection::new().prefix("gen-000").prefix("gen-001");
    let est = Seeder::estimate(&src, &dst, &sel).unwrap();
    assert!(est.bytes_reclaimable > 0);
    let before = src.info().unwrap().stored_bytes;
    run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("st")).selection(sel).mode(Mode::Move).build().unwrap());
    // A dry run changes nothing and says what a real one does.
    let dry = src.gc(GcOptions::default().threshold(1.0).dry_run(true), &SuspendHandle::default()).unwrap();
    assert_eq!(src.info().unwrap().stored_bytes, before);
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert_eq!(dry.bytes_reclaimed, r.bytes_reclaimed);
    let after = src.info().unwrap().stored_bytes;
    assert_eq!(before - after, r.bytes_reclaimed, "the report matches the tier's own counters");
    let diff = (r.bytes_reclaimed as f64 - est.bytes_reclaimable as f64).abs() / est.bytes_reclaimable as f64;
    assert!(
        diff <= 0.01,
        "reclaimed {} bytes, estimate said {} ({:.2} %)",
        r.bytes_reclaimed,
        est.bytes_reclaimable,
        diff * 100.0
    );
    // Nothing live was lost: what stayed restores from the source, what
    // moved from the target; a second run finds nothing.
    all_restore(&src, &prefixed(&all, &["gen-002/"]));
    check_target(&dst, &prefixed(&all, &["gen-000/", "gen-001/"]));
    let again = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert_eq!(again.bytes_reclaimed, 0);
    // And it survives a reopen.
    drop(src);
    all_restore(&IndexedTier::open(dir.path().join("src")).unwrap(), &prefixed(&all, &["gen-002/"]));
}

#[test]
fn gc_keeps_pinned_containers_and_refuses_during_an_ingest_session() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 82, 2, 20, 20_000, 40.0);
    let ids = src.container_ids().unwrap();
    // Everything of gen-000 is dead once its files are removed, but a job
    // running on a snapshot of the tier pins it.
    src.remove(&["gen-000"]).unwrap();
    let token = src.pin(&ids, None).unwrap();
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert_eq!(r.bytes_reclaimed, 0);
    assert_eq!(r.containers_pinned, ids.len() as u64);
    src.unpin(token);
    {
        let _session = src.ingest_session();
        assert!(src.gc(GcOptions::default(), &SuspendHandle::default()).is_err());
    }
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert!(r.bytes_reclaimed > 0);
    all_restore(&src, &prefixed(&all, &["gen-001/"]));
    assert!(namespace(&src).keys().all(|p| p.starts_with("gen-001/")));
}

#[test]
fn gc_suspends_and_resumes_from_its_cursor() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 83, 3, 20, 20_000, 40.0);
    src.remove(&["gen-000", "gen-001"]).unwrap();
    let stop = SuspendHandle::default();
    stop.suspend();
    let first = src.gc(GcOptions::default().threshold(1.0), &stop).unwrap();
    assert!(first.suspended);
    let mut runs = 1;
    let last = loop {
        runs += 1;
        let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
        if !r.suspended {
            break r;
        }
    };
    assert!(last.bytes_reclaimed > 0, "after {runs} runs");
    all_restore(&src, &prefixed(&all, &["gen-002/"]));
}

/// `seed gc` aborted at each of its two crash windows (before a sweep
/// step's index batch, and after it before the file is deleted), at every
/// arrival; then run again: nothing live is lost, nothing is left behind.
#[test]
fn gc_crash_at_every_step_loses_nothing_live() {
    let base = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&base.path().join("src"), 84, 3, 16, 16_000, 40.0);
    src.remove(&["gen-000", "gen-001"]).unwrap();
    let kept = prefixed(&all, &["gen-002/"]);
    drop(src);
    let mut crashes = 0;
    for point in ["gc.before_batch", "gc.before_unlink"] {
        for n in 1..=40u32 {
            let dir = base.path().join(format!("{point}-{n}"));
            let st = Command::new("cp").arg("-a").arg(base.path().join("src")).arg(&dir).status().unwrap();
            assert!(st.success());
            let o = Command::new(env!("CARGO_BIN_EXE_seed"))
                .args(["gc", "--threshold", "1.0", "--tier"])
                .arg(&dir)
                .env("TIERSEED_CRASH_AT", format!("{point}:{n}"))
                .env("RUST_LOG", "error")
                .output()
                .unwrap();
            let crashed = !o.status.success();
            let o2 =
                Command::new(env!("CARGO_BIN_EXE_seed")).args(["gc", "--threshold", "1.0", "--tier"]).arg(&dir).output().unwrap();
            assert!(o2.status.success(), "{}", String::from_utf8_lossy(&o2.stderr));
            let t = IndexedTier::open(&dir).unwrap();
            all_restore(&t, &kept);
            // Nothing dead is left behind either: one more run reclaims nothing.
            let again = t.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
            assert_eq!(again.bytes_reclaimed, 0, "{point}:{n}");
            drop(t);
            std::fs::remove_dir_all(&dir).unwrap();
            if !crashed {
                break;
            }
            crashes += 1;
        }
    }
    assert!(crashes >= 2, "the crash windows were never reached");
    eprintln!("gc crashes: {crashes}, each followed by a run that lost nothing live");
}

#[test]
fn gc_waits_for_readers_and_runs_beside_ingest_and_a_running_job() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 85, 3, 24, 20_000, 40.0);
    // An open reader (in this or another process) keeps GC away.
    let reader = IndexedTier::open_read_only(dir.path().join("src")).unwrap();
    let err = src.gc(GcOptions::default(), &SuspendHandle::default()).unwrap_err();
    assert!(err.to_string().contains("read-only handle"), "{err}");
    drop(reader);

    // A job copies gen-002 (slowly) while gen-000 is removed and GC runs:
    // the job's snapshot is pinned, so GC keeps every container the job
    // reads, and the job completes.
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let started = std::sync::Barrier::new(2);
    let mut gen3 = tierseed::synth::SynthTree::new(86, 10, 10_000, 0.0);
    std::thread::scope(|s| {
        let job = s.spawn(|| {
            let mut job = Seeder::builder(&src, &dst, dir.path().join("st"))
                .selection(Selection::new().prefix("gen-002"))
                .limit_bytes_per_sec(200 << 10)
                .observer(|e: &tierseed::Event| {
                    if matches!(e, tierseed::Event::PhaseStarted(tierseed::Phase::Copy)) {
                        started.wait();
                    }
                })
                .build()
                .unwrap();
            run_to_end(&mut job)
        });
        started.wait();
        src.remove(&["gen-000"]).unwrap();
        let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
        assert!(r.containers_pinned > 0, "{r:?}");
        // Ingest and GC take turns: GC refuses while a session is open and
        // runs between them; new files are never hurt.
        for _ in 0..3 {
            let g: Vec<(String, Vec<u8>)> =
                gen3.next_generation().into_iter().map(|f| (format!("new/{}", f.path), f.bytes)).collect();
            src.ingest_many(g.iter().map(|(p, b)| (p.as_str(), 0, b.as_slice()))).unwrap();
            let _ = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
            for (p, b) in &g {
                let mut out = Vec::new();
                src.restore(p, &mut out).unwrap();
                assert!(&out == b);
            }
        }
        job.join().unwrap();
    });
    check_target(&dst, &prefixed(&all, &["gen-002/"]));
    // With the job done, its pins are gone and the rest is reclaimed.
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert!(r.bytes_reclaimed > 0);
    all_restore(&src, &prefixed(&all, &["gen-001/", "gen-002/"]));
}

#[test]
fn gc_killed_at_random_instants_loses_nothing_and_reclaims_exactly() {
    let base = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&base.path().join("src"), 87, 3, 30, 30_000, 50.0);
    src.remove(&["gen-000", "gen-001"]).unwrap();
    let before = src.info().unwrap().stored_bytes;
    let predicted = src.gc(GcOptions::default().threshold(1.0).dry_run(true), &SuspendHandle::default()).unwrap().bytes_reclaimed;
    assert!(predicted > 0);
    drop(src);
    let kept = prefixed(&all, &["gen-002/"]);
    let seed_value: u64 = std::env::var("TIERSEED_KILL_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(87);
    let mut rng = tierseed::synth::Rng::new(seed_value);
    let mut kills = 0;
    for trial in 0..8 {
        let dir = base.path().join(format!("t{trial}"));
        assert!(Command::new("cp").arg("-a").arg(base.path().join("src")).arg(&dir).status().unwrap().success());
        let mut child = Command::new(env!("CARGO_BIN_EXE_seed"))
            .args(["gc", "--threshold", "1.0", "--tier"])
            .arg(&dir)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_micros(rng.below(60_000)));
        if child.try_wait().unwrap().is_none() {
            kills += 1;
        }
        let _ = child.kill();
        let _ = child.wait();
        let o = Command::new(env!("CARGO_BIN_EXE_seed")).args(["gc", "--threshold", "1.0", "--tier"]).arg(&dir).output().unwrap();
        assert!(o.status.success(), "trial {trial}: {}", String::from_utf8_lossy(&o.stderr));
        let t = IndexedTier::open(&dir).unwrap();
        all_restore(&t, &kept);
        assert_eq!(before - t.info().unwrap().stored_bytes, predicted, "trial {trial}: reclaimed space is not exact");
        drop(t);
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("gc random kills: {kills} of 8 trials killed mid-run (TIERSEED_KILL_SEED={seed_value}); nothing lost, space exact");
}

#[test]
fn restores_by_the_same_handle_before_and_after_a_compaction_read_the_new_containers() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 71, 3, 30, 16 << 10, 40.0);
    // Restores fill the handle's kept tables.
    all_restore(&src, &all);
    let gone = src.remove(&["gen-000", "gen-001"]).unwrap();
    assert!(!gone.is_empty());
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert!(r.containers_compacted > 0, "{r:?}");
    // The same handle restores every remaining file from the containers
    // the compaction wrote, not from tables it kept of deleted ones.
    let left = prefixed(&all, &["gen-002/"]);
    all_restore(&src, &left);
}

/// The bug "gc while a job is suspended": a suspended move job's files
/// were removed from the source and the source reclaimed; the resume then
/// failed forever with "container ... is missing". The job's hold is
/// durable in the tier until the job completes.
#[test]
fn gc_while_a_job_is_suspended_keeps_what_the_resume_needs() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 83, 3, 30, 20_000, 40.0);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    drop(crate::run_until(job, &state, &src, &dst, tierseed::Phase::Copy));
    assert_eq!(src.job_holds().unwrap().len(), 1, "the suspended job holds its snapshot");
    // Everything it selected goes from the source, which is then
    // reclaimed in full, by another handle as another process would.
    src.remove(&["gen-000", "gen-001", "gen-002"]).unwrap();
    drop(src);
    let src = IndexedTier::open(dir.path().join("src")).unwrap();
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert!(r.containers_pinned > 0, "{r:?}");
    assert_eq!(r.containers_deleted + r.containers_compacted, 0, "{r:?}");
    run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
    check_target(&dst, &all);
    // Done: the hold is released and the space comes back.
    assert!(src.job_holds().unwrap().is_empty());
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert!(r.containers_deleted > 0 && r.containers_pinned == 0, "{r:?}");
}

/// An abandoned job's hold is dropped by the next reclamation.
#[test]
fn gc_after_a_job_is_abandoned_drops_its_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source_changing(&dir.path().join("src"), 85, 2, 20, 20_000, 40.0);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    drop(crate::run_until(job, &state, &src, &dst, tierseed::Phase::Copy));
    src.remove(&["gen-000"]).unwrap();
    let held = src.gc(GcOptions::default().threshold(1.0).dry_run(true), &SuspendHandle::default()).unwrap();
    assert!(held.containers_pinned > 0, "{held:?}");
    Seeder::abandon(&state).unwrap();
    let r = src.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).unwrap();
    assert_eq!(r.containers_pinned, 0, "{r:?}");
    assert!(r.containers_deleted + r.containers_compacted > 0, "{r:?}");
    assert!(src.job_holds().unwrap().is_empty());
    // The target's hold (from its floor) goes the same way.
    assert_eq!(dst.job_holds().unwrap().len(), 1);
    dst.gc(GcOptions::default(), &SuspendHandle::default()).unwrap();
    assert!(dst.job_holds().unwrap().is_empty());
}

/// The same through the real binary: a move killed mid-Copy, its files
/// removed with `seed rm`, the source reclaimed with `seed gc` (which
/// names the job holding containers), then `seed resume` completes.
#[test]
fn seed_gc_while_a_killed_move_waits_keeps_its_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source_changing(&dir.path().join("src"), 89, 2, 30, 20_000, 40.0);
    drop(src);
    let (s, d, st) = (dir.path().join("src"), dir.path().join("dst"), dir.path().join("state"));
    let seed = || {
        let mut c = Command::new(env!("CARGO_BIN_EXE_seed"));
        c.env("RUST_LOG", "error").env_remove("TIERSEED_CRASH_AT");
        c
    };
    let mut cmd = seed();
    cmd.args(["run", "--all", "--move", "--container-kib", "64", "--from"]).arg(&s).arg("--to").arg(&d).arg("--state").arg(&st);
    cmd.stdout(std::process::Stdio::null());
    crate::HeldJob::spawn(cmd, "copy.after_commit", 1).kill();
    let o = seed().args(["rm", "--tier"]).arg(&s).args(["gen-000", "gen-001"]).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = seed().args(["gc", "--threshold", "1.0", "--tier"]).arg(&s).output().unwrap();
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("holds containers below"), "{out}");
    let o = seed().args(["resume", "--from"]).arg(&s).arg("--to").arg(&d).arg("--state").arg(&st).output().unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    check_target(&IndexedTier::open(&d).unwrap(), &all);
    assert!(namespace(&IndexedTier::open(&s).unwrap()).is_empty());
}
