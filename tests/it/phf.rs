//! The compact PHF (`PhfKind::Compact`): the same jobs, the same results,
//! its own persisted blob.

use std::collections::HashSet;
use std::fs;

use tierseed::bench_api::build_phf_kind;
use tierseed::{Error, FormatError, IndexedTier, Outcome, Phase, PhfKind, Seeder, Selection};

use crate::{check_target, index_fingerprints, prefixed, run_to_end, run_until, small_config, synth_source};

#[test]
fn the_compact_phf_gives_every_fingerprint_its_own_slot() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 31, 3, 60, 24 << 10);
    let fps = index_fingerprints(&src);
    for threads in [1, 2, 3] {
        let phf = build_phf_kind(&src, PhfKind::Compact, threads).unwrap();
        assert_eq!(phf.keys(), fps.len() as u64);
        let slots: HashSet<u64> = fps.iter().map(|f| phf.slot(f).expect("a member has a slot")).collect();
        assert_eq!(slots.len(), fps.len(), "two fingerprints share a slot ({threads} threads)");
        assert!(slots.iter().all(|s| *s < phf.keys()));
    }
}

/// Over 2.5M keys the compact function is built in four buckets (about
/// 1M keys each, chosen by a mix of the key): every key still gets its own
/// slot, though the synthetic keys are counters, not hashes, and it is
/// smaller than boomphf's, which is the point of it. (Over the few hundred
/// keys above, its fixed overhead of a few hundred bytes is more than
/// boomphf's whole function; the bench measures both at 100M.)
#[test]
fn the_compact_phf_in_several_buckets_is_perfect_and_smaller_than_boomphf() {
    let source = tierseed::synth::SynthSource::new(2_500_000, 256, 4096, 1024);
    let keys = source.keys();
    let compact = build_phf_kind(&source, PhfKind::Compact, 2).unwrap();
    assert_eq!(compact.keys(), keys);
    let mut seen = vec![false; keys as usize];
    for i in 0..2_500_000 {
        let s = compact.slot(&tierseed::synth::SynthSource::data_fp(i)).expect("a member has a slot") as usize;
        assert!(!std::mem::replace(&mut seen[s], true), "data key {i} shares slot {s}");
    }
    let boom = build_phf_kind(&source, PhfKind::Boomphf, 2).unwrap();
    let bits = |b: u64| b as f64 * 8.0 / keys as f64;
    assert!(bits(compact.memory_bytes()) < 2.3, "compact: {} bits per key", bits(compact.memory_bytes()));
    assert!(compact.memory_bytes() < boom.memory_bytes(), "{} >= {}", compact.memory_bytes(), boom.memory_bytes());
}

#[test]
fn a_compact_phf_job_suspended_at_every_commit_point_matches_a_boomphf_job() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 32, 3, 40, 24 << 10);
    let sel = Selection::new().prefix("gen-001").prefix("gen-002/home");
    let want = prefixed(&all, &["gen-001/", "gen-002/home"]);
    let ref_dst = IndexedTier::create(dir.path().join("ref"), small_config()).unwrap();
    let reference =
        run_to_end(&mut Seeder::builder(&src, &ref_dst, dir.path().join("ref-state")).selection(sel.clone()).build().unwrap());

    for threads in [1, 2] {
        let dst = IndexedTier::create(dir.path().join(format!("dst-{threads}")), small_config()).unwrap();
        let state = dir.path().join(format!("state-{threads}"));
        let mut job =
            Seeder::builder(&src, &dst, &state).selection(sel.clone()).phf(PhfKind::Compact).threads(threads).build().unwrap();
        let report = loop {
            job.suspend_handle().suspend();
            match job.run().unwrap() {
                Outcome::Completed(r) => break r,
                Outcome::Suspended(_) => {
                    drop(job);
                    // The kind is the job's: a resume builds (or loads) the same.
                    job = Seeder::resume(&state, &src, &dst).unwrap();
                }
            }
        };
        check_target(&dst, &want);
        assert_eq!(report.counters.segments_marked, reference.counters.segments_marked);
        assert_eq!(report.counters.segments_copied, reference.counters.segments_copied);
        let mut a = index_fingerprints(&dst);
        let mut b = index_fingerprints(&ref_dst);
        a.sort();
        b.sort();
        assert!(a == b, "the compact job stored a different set of segments ({threads} threads)");
    }
}

#[test]
fn a_corrupt_compact_phf_blob_is_detected_at_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 33, 1, 10, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let st = dir.path().join("st");
    let job = Seeder::builder(&src, &dst, &st).selection(Selection::all()).phf(PhfKind::Compact).build().unwrap();
    drop(run_until(job, &st, &src, &dst, Phase::Copy));
    let blob = fs::read_dir(&st).unwrap().map(|e| e.unwrap().path()).find(|p| p.to_string_lossy().ends_with(".bin")).unwrap();
    let good = fs::read(&blob).unwrap();
    assert_eq!(&good[4..6], &2u16.to_le_bytes(), "a compact blob is version 2");
    for at in [6, good.len() / 2, good.len() - 1] {
        let mut bad = good.clone();
        bad[at] ^= 0x10;
        fs::write(&blob, &bad).unwrap();
        let err = Seeder::resume(&st, &src, &dst).unwrap().run().unwrap_err();
        assert!(
            matches!(err.root(), Error::Format(FormatError::CorruptRecord { what, .. }) if what.contains("PHF")),
            "byte {at}: {err}"
        );
    }
    fs::write(&blob, &good).unwrap();
    run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
}

#[test]
fn seed_run_takes_phf_compact() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 34, 2, 20, 16 << 10);
    drop(src);
    let p = |n: &str| dir.path().join(n).to_str().unwrap().to_string();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seed"))
        .args(["run", "--from", &p("src"), "--to", &p("dst"), "--state", &p("st"), "--all", "--phf", "compact"])
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    check_target(&IndexedTier::open(dir.path().join("dst")).unwrap(), &all);
    let bad = std::process::Command::new(env!("CARGO_BIN_EXE_seed"))
        .args(["run", "--from", &p("src"), "--to", &p("dst2"), "--state", &p("st2"), "--all", "--phf", "tiny"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(!bad.status.success() && err.contains("boomphf or compact"), "{err}");
}

#[test]
fn a_failing_index_stream_during_a_compact_build_fails_the_job_cleanly() {
    use tierseed::{Fault, FaultKind, FaultyTier};
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 35, 2, 30, 16 << 10);
    let want = all;
    // A clean compact job counts the index pages BuildPhf reads (each
    // level of the compact build re-reads them until it caches the rest).
    let counting = FaultyTier::new(&src, vec![]);
    let dst = IndexedTier::create(dir.path().join("clean"), small_config()).unwrap();
    run_to_end(
        &mut Seeder::builder(&counting, &dst, dir.path().join("clean-st"))
            .selection(Selection::all())
            .phf(PhfKind::Compact)
            .build()
            .unwrap(),
    );
    let calls = counting.calls(FaultKind::Fingerprints);
    assert!(calls >= 2, "only {calls} index page reads");
    for n in 1..=calls {
        let faulty = FaultyTier::new(&src, vec![Fault::fail(FaultKind::Fingerprints, n)]);
        let dst = IndexedTier::create(dir.path().join(format!("d{n}")), small_config()).unwrap();
        let st = dir.path().join(format!("s{n}"));
        let mut job = Seeder::builder(&faulty, &dst, &st).selection(Selection::all()).phf(PhfKind::Compact).build().unwrap();
        let err = job.run().unwrap_err();
        assert!(err.to_string().contains("injected fault"), "call {n}: {err}");
        drop(job);
        run_to_end(&mut Seeder::resume(&st, &src, &dst).unwrap());
        check_target(&dst, &want);
    }
}
