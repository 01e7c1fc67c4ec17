//! One job, several targets: the source is read once, every target ends
//! up with every selected file, and a failing or missing target is handled
//! by the job's policy (fail or drop).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Mutex;

use tierseed::{
    Error, Event, Fault, FaultKind, FaultyTier, IndexedTier, JobError, Mode, Outcome, Phase, Seeder, Selection, TargetFailure,
    TargetTier, Tier,
};

use crate::{check_target, namespace, prefixed, run_to_end, small_config, synth_source};

const PREFIXES: [&str; 2] = ["gen-001", "gen-000/home"];

fn selection() -> Selection {
    Selection::new().prefix("gen-001").prefix("gen-000/home")
}

/// A source, and `n` fresh targets under `dir`.
fn setup(dir: &Path, n: usize) -> (IndexedTier, BTreeMap<String, Vec<u8>>, Vec<IndexedTier>) {
    let (src, all) = synth_source(&dir.join("src"), 21, 2, 14, 14_000);
    let targets = (0..n).map(|i| IndexedTier::create(dir.join(format!("dst{i}")), small_config()).unwrap()).collect();
    (src, prefixed(&all, &PREFIXES), targets)
}

/// A builder over `src` and every tier in `targets`.
fn builder<'a>(src: &'a IndexedTier, targets: &[&'a dyn TargetTier], state: &Path) -> tierseed::SeederBuilder<'a> {
    let mut b = Seeder::builder(src, targets[0], state).selection(selection());
    for t in &targets[1..] {
        b = b.also_to(*t);
    }
    b
}

#[test]
fn two_and_three_targets_in_one_pass_each_get_everything_and_the_source_is_read_once() {
    for n in [2usize, 3] {
        for threads in [1usize, 2, 3] {
            let base = tempfile::tempdir().unwrap();
            let (src, want, targets) = setup(base.path(), n);
            // The same job with one target, for comparison.
            let alone = IndexedTier::create(base.path().join("alone"), small_config()).unwrap();
            let single = run_to_end(
                &mut Seeder::builder(&src, &alone, base.path().join("single")).selection(selection()).build().unwrap(),
            );
            let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
            // Full verify walks every target at once, each using the job's
            // pool: at one thread too.
            let level = if threads == 1 { tierseed::VerifyLevel::Full } else { tierseed::VerifyLevel::Metadata };
            let r =
                run_to_end(&mut builder(&src, &refs, &base.path().join("state")).threads(threads).verify(level).build().unwrap());
            for t in &targets {
                check_target(t, &want);
            }
            assert_eq!(r.targets.len(), n);
            // Each source container was read once for all the targets.
            assert_eq!(r.counters.containers_read, single.counters.containers_read, "{n} targets, {threads} threads");
            for t in &r.targets {
                assert_eq!(t.dropped, None);
                assert_eq!(t.counters.segments_copied, single.counters.segments_copied);
                assert_eq!(t.counters.bytes_copied, single.counters.bytes_copied);
                assert_eq!(t.counters.files_switched, single.counters.files_switched);
            }
            assert_eq!(r.counters.segments_copied, n as u64 * single.counters.segments_copied);
            let ids: Vec<String> = targets.iter().map(|t| t.tier_id().unwrap().to_string()).collect();
            assert_eq!(r.targets.iter().map(|t| t.tier_id.clone()).collect::<Vec<_>>(), ids);
        }
    }
}

#[test]
fn one_target_already_holding_part_of_the_data_gets_only_the_rest() {
    let base = tempfile::tempdir().unwrap();
    let (src, want, targets) = setup(base.path(), 2);
    // The second target holds gen-000 already.
    run_to_end(
        &mut Seeder::builder(&src, &targets[1], base.path().join("prep"))
            .selection(Selection::new().prefix("gen-000"))
            .build()
            .unwrap(),
    );
    let before = targets[1].container_ids().unwrap().len();
    let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
    let r = run_to_end(&mut builder(&src, &refs, &base.path().join("state")).build().unwrap());
    check_target(&targets[0], &want);
    // The second target keeps its gen-000 files and gains the selection.
    let mut want1 = want.clone();
    for (p, e) in namespace(&targets[1]) {
        want1.entry(p).or_insert_with_key(|p| {
            let mut out = Vec::new();
            targets[1].restore(p, &mut out).unwrap();
            assert_eq!(out.len() as u64, e.size);
            out
        });
    }
    check_target(&targets[1], &want1);
    let (a, b) = (&r.targets[0].counters, &r.targets[1].counters);
    assert_eq!(a.segments_deduplicated, 0, "the fresh target had nothing");
    assert!(b.segments_deduplicated > 0, "the prepared target's gen-000 data counts as already there");
    assert_eq!(a.segments_copied, b.segments_copied + b.segments_deduplicated, "together they cover the same set");
    assert!(b.target_containers < a.target_containers);
    assert_eq!(targets[1].container_ids().unwrap().len() as u64, before as u64 + b.target_containers);
}

#[test]
fn suspend_at_every_commit_point_with_two_targets_gives_the_uninterrupted_result() {
    let base = tempfile::tempdir().unwrap();
    let (src, want, targets) = setup(base.path(), 2);
    let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
    let state = base.path().join("state");
    let mut job = builder(&src, &refs, &state).threads(1).build().unwrap();
    let mut suspensions = 0;
    let report = loop {
        job.suspend_handle().suspend();
        match job.run().unwrap() {
            Outcome::Completed(r) => break r,
            Outcome::Suspended(p) => {
                suspensions += 1;
                assert_eq!(p.targets.len(), 2);
            }
        }
        drop(job);
        // Targets given in the other order: matched by id.
        job = Seeder::resume_targets(&state, &src, &[refs[1], refs[0]]).unwrap();
    };
    assert!(suspensions > 8, "only {suspensions} commit points");
    for t in &targets {
        check_target(t, &want);
    }
    assert_eq!(report.targets[0].counters.segments_copied, report.targets[1].counters.segments_copied);
    assert_eq!(report.resumes, suspensions);
}

/// What [`failing_second_target`] leaves: the source, the files every
/// target must hold, the targets, how the run ended and its events.
type Failed = (IndexedTier, BTreeMap<String, Vec<u8>>, Vec<IndexedTier>, Result<Outcome, Error>, Vec<Event>);

/// Runs a two-target job whose second target fails at `fault`, under
/// `policy`, in `mode`.
fn failing_second_target(dir: &Path, fault: Fault, policy: TargetFailure, mode: Mode) -> Failed {
    let (src, want, targets) = setup(dir, 2);
    let events = Mutex::new(Vec::new());
    let r = {
        let faulty = FaultyTier::new(&targets[1], vec![fault]);
        let refs: Vec<&dyn TargetTier> = vec![&targets[0], &faulty];
        let mut job = builder(&src, &refs, &dir.join("state"))
            .mode(mode)
            .on_target_failure(policy)
            .observer(|e: &Event| events.lock().unwrap().push(e.clone()))
            .build()
            .unwrap();
        job.run()
    };
    (src, want, targets, r, events.into_inner().unwrap())
}

/// Which call of `kind` fails: the second (mid-Copy), or the first Switch
/// batch (the selection fits in one).
fn nth(kind: FaultKind) -> u64 {
    if kind == FaultKind::UpsertFiles { 1 } else { 2 }
}

#[test]
fn a_failing_target_fails_the_whole_job_under_fail_and_a_resume_completes_both() {
    for kind in [FaultKind::WriteContainer, FaultKind::Locate, FaultKind::UpsertFiles] {
        let base = tempfile::tempdir().unwrap();
        let (src, want, targets, r, _) =
            failing_second_target(base.path(), Fault::fail(kind, nth(kind)), TargetFailure::Fail, Mode::Move);
        let e = r.expect_err("the job must fail");
        assert!(e.to_string().contains("target #2"), "{kind:?}: the error names the target: {e}");
        assert!(e.to_string().contains(&targets[1].tier_id().unwrap().to_string()), "{e}");
        assert!(e.to_string().contains("injected fault"), "{kind:?}: {e}");
        // Nothing was removed from the source.
        assert!(want.keys().all(|p| namespace(&src).contains_key(p)));
        let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
        let done = run_to_end(&mut Seeder::resume_targets(base.path().join("state"), &src, &refs).unwrap());
        assert!(done.targets.iter().all(|t| t.dropped.is_none()));
        for t in &targets {
            check_target(t, &want);
        }
        let ns = namespace(&src);
        assert!(want.keys().all(|p| !ns.contains_key(p)), "{kind:?}: moved files left in the source");
    }
}

#[test]
fn a_failing_target_is_dropped_under_drop_the_other_completes_and_a_move_removes_nothing() {
    for (kind, phase) in
        [(FaultKind::WriteContainer, Phase::Copy), (FaultKind::Locate, Phase::Copy), (FaultKind::UpsertFiles, Phase::Switch)]
    {
        let base = tempfile::tempdir().unwrap();
        let (src, want, targets, r, events) =
            failing_second_target(base.path(), Fault::fail(kind, nth(kind)), TargetFailure::Drop, Mode::Move);
        let Ok(Outcome::Completed(report)) = r else { panic!("{kind:?}: {r:?}") };
        check_target(&targets[0], &want);
        assert_eq!(report.targets[0].dropped, None);
        let why = report.targets[1].dropped.clone().expect("the failing target is named as dropped");
        assert!(why.starts_with(phase.name()) && why.contains("injected"), "{kind:?}: {why}");
        assert!(
            events.iter().any(|e| matches!(e, Event::TargetDropped { phase: p, .. } if *p == phase)),
            "{kind:?}: no TargetDropped event"
        );
        // A target is missing the files: the source keeps every one.
        let ns = namespace(&src);
        assert!(want.keys().all(|p| ns.contains_key(p)), "{kind:?}: a move removed files a dropped target lacks");
        assert_eq!(report.counters.files_removed, 0);
        // The drop is durable: a resume of the done job reports the same.
        let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
        let again = run_to_end(&mut Seeder::resume_targets(base.path().join("state"), &src, &refs).unwrap());
        assert_eq!(again.targets, report.targets);
        assert!(Seeder::status(base.path().join("state")).unwrap().targets[1].dropped.is_some());
    }
}

#[test]
fn when_the_last_target_left_fails_the_job_fails_even_under_drop() {
    let base = tempfile::tempdir().unwrap();
    let (src, want, targets) = setup(base.path(), 2);
    let r = {
        let a = FaultyTier::new(&targets[0], vec![Fault::fail(FaultKind::WriteContainer, 1)]);
        let b = FaultyTier::new(&targets[1], vec![Fault::fail(FaultKind::WriteContainer, 3)]);
        let refs: Vec<&dyn TargetTier> = vec![&a, &b];
        builder(&src, &refs, &base.path().join("state")).on_target_failure(TargetFailure::Drop).build().unwrap().run()
    };
    let e = r.expect_err("no target left: the job fails");
    assert!(e.to_string().contains("target #2"), "{e}");
    // The last target was not dropped: a resume completes it.
    let done = run_to_end(&mut Seeder::resume_targets(base.path().join("state"), &src, &[&targets[1]]).unwrap());
    assert!(done.targets[0].dropped.is_some() && done.targets[1].dropped.is_none());
    check_target(&targets[1], &want);
}

/// Runs `job` to its next commit point `n` times; the last progress.
fn suspend_times(job: &mut Seeder<'_>, n: usize) -> tierseed::Progress {
    let mut last = None;
    for _ in 0..n {
        job.suspend_handle().suspend();
        let Outcome::Suspended(p) = job.run().unwrap() else { panic!("completed too early") };
        last = Some(p);
    }
    last.expect("n is at least 1")
}

#[test]
fn resuming_with_a_target_missing_is_refused_under_fail_and_drops_it_under_drop() {
    for policy in [TargetFailure::Fail, TargetFailure::Drop] {
        let base = tempfile::tempdir().unwrap();
        let (src, want, targets) = setup(base.path(), 3);
        let state = base.path().join("state");
        let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
        let mut job = builder(&src, &refs, &state).on_target_failure(policy).build().unwrap();
        // Suspend a few commits into Copy.
        assert_eq!(suspend_times(&mut job, 6).next_phase, Phase::Copy);
        drop(job);
        // The third target's site is gone.
        let given = [refs[0], refs[1]];
        if policy == TargetFailure::Fail {
            let Err(e) = Seeder::resume_targets(&state, &src, &given) else { panic!("a missing target was accepted") };
            assert!(matches!(e, Error::Job(JobError::TierMismatch { .. })), "{e}");
            assert!(e.to_string().contains(&targets[2].tier_id().unwrap().to_string()), "{e}");
            // Nothing changed: with every target, it completes.
            run_to_end(&mut Seeder::resume_targets(&state, &src, &refs).unwrap());
            for t in &targets {
                check_target(t, &want);
            }
        } else {
            let r = run_to_end(&mut Seeder::resume_targets(&state, &src, &given).unwrap());
            assert!(r.targets[2].dropped.as_deref().is_some_and(|d| d.contains("not given")), "{:?}", r.targets[2]);
            check_target(&targets[0], &want);
            check_target(&targets[1], &want);
        }
    }
}

#[test]
fn a_target_that_loses_a_container_before_verify_is_caught_per_target() {
    for policy in [TargetFailure::Fail, TargetFailure::Drop] {
        let base = tempfile::tempdir().unwrap();
        let (src, want, targets) = setup(base.path(), 2);
        let state = base.path().join("state");
        let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
        let mut job = builder(&src, &refs, &state).on_target_failure(policy).build().unwrap();
        // Run to Verify.
        while suspend_times(&mut job, 1).next_phase != Phase::Verify {}
        drop(job);
        // The second target loses a data container behind the job's back.
        let lost = targets[1].container_ids().unwrap()[0];
        std::fs::remove_file(targets[1].container_path(lost)).unwrap();
        let r = Seeder::resume_targets(&state, &src, &refs).unwrap().run();
        if policy == TargetFailure::Fail {
            let e = r.expect_err("Verify must fail on the second target");
            assert!(matches!(e.root(), Error::Job(JobError::VerifyFailed { .. })) && e.to_string().contains("target #2"), "{e}");
            assert!(want.keys().all(|p| !namespace(&targets[0]).contains_key(p)), "nothing is switched");
            // The resume copies what the second target lost, to it alone.
            let done = run_to_end(&mut Seeder::resume_targets(&state, &src, &refs).unwrap());
            assert!(done.targets.iter().all(|t| t.dropped.is_none()));
            check_target(&targets[1], &want);
        } else {
            let Ok(Outcome::Completed(done)) = r else { panic!("{r:?}") };
            assert!(done.targets[1].dropped.as_deref().is_some_and(|d| d.starts_with("verify")), "{:?}", done.targets);
            assert!(namespace(&targets[1]).is_empty(), "a dropped target gets no namespace entries");
        }
        check_target(&targets[0], &want);
    }
}

#[test]
fn a_job_refuses_the_same_target_twice_and_the_source_as_a_target() {
    let base = tempfile::tempdir().unwrap();
    let (src, _, targets) = setup(base.path(), 1);
    let again = IndexedTier::open_read_only(base.path().join("dst0")).unwrap();
    let refs: Vec<&dyn TargetTier> = vec![&targets[0], &again];
    let Err(e) = builder(&src, &refs, &base.path().join("s1")).build() else { panic!("accepted one target twice") };
    assert!(e.to_string().contains("given twice"), "{e}");
    let refs: Vec<&dyn TargetTier> = vec![&targets[0], &src];
    let Err(e) = builder(&src, &refs, &base.path().join("s2")).build() else { panic!("accepted the source as a target") };
    assert!(e.to_string().contains("source tier itself"), "{e}");
    assert!(!Seeder::exists(base.path().join("s1")) && !Seeder::exists(base.path().join("s2")));
}

#[test]
fn bytes_that_are_a_recipe_on_the_source_and_data_on_one_target_reach_both_targets() {
    for threads in [1usize, 2] {
        let dir = tempfile::tempdir().unwrap();
        let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
        let a = crate::defects::noise(7, 400_000);
        src.ingest_reader("a.bin", 0, &a[..]).unwrap();
        let recipe = crate::defects::level1_recipes(&src).pop().expect("a.bin has level-1 recipes");
        src.ingest_reader("b.bin", 0, &recipe[..]).unwrap();
        // The second target already holds the recipe's bytes as a file's data.
        let fresh = IndexedTier::create(dir.path().join("fresh"), small_config()).unwrap();
        let holder = IndexedTier::create(dir.path().join("holder"), small_config()).unwrap();
        holder.ingest_reader("old/copy.bin", 0, &recipe[..]).unwrap();
        let refs: Vec<&dyn TargetTier> = vec![&fresh, &holder];
        let mut job = Seeder::builder(&src, refs[0], dir.path().join("state"))
            .also_to(refs[1])
            .selection(Selection::all())
            .mode(Mode::Move)
            .threads(threads)
            .build()
            .unwrap();
        let r = run_to_end(&mut job);
        let want: BTreeMap<String, Vec<u8>> = [("a.bin".to_string(), a.clone()), ("b.bin".to_string(), recipe.clone())].into();
        check_target(&fresh, &want);
        let mut with_old = want.clone();
        with_old.insert("old/copy.bin".into(), recipe.clone());
        check_target(&holder, &with_old);
        assert!(r.targets[1].counters.segments_deduplicated >= 1, "{threads} threads: {:?}", r.targets[1]);
        assert!(namespace(&src).is_empty(), "every target has everything: the move removes it all");
    }
}

/// Every kind of call the second target gets, failing at calls spread over
/// a clean run's, under `policy`, in move mode: under fail the job ends with
/// an error naming the target and a resume completes both; under drop the
/// first target completes, the second is named, the source keeps every
/// file, and the dropped target is still a sound tier.
fn sweep_second_target(policy: TargetFailure) -> u64 {
    let kinds = [
        (FaultKind::ContainerIds, false),
        (FaultKind::Locate, false),
        (FaultKind::WriteContainer, false),
        (FaultKind::WriteContainer, true),
        (FaultKind::ReadMetadata, false),
        (FaultKind::UpsertFiles, false),
        (FaultKind::UpsertFiles, true),
    ];
    let mut injected = 0;
    for (k, (kind, after_effect)) in kinds.into_iter().enumerate() {
        // A clean run counts the calls of this kind.
        let calls = {
            let base = tempfile::tempdir().unwrap();
            let (src, _, targets) = setup(base.path(), 2);
            let counting = FaultyTier::new(&targets[1], vec![]);
            let refs: Vec<&dyn TargetTier> = vec![&targets[0], &counting];
            run_to_end(&mut builder(&src, &refs, &base.path().join("state")).mode(Mode::Move).build().unwrap());
            counting.calls(kind)
        };
        assert!(calls > 0, "{kind:?} is never called on the second target");
        for nth in (1..=calls).step_by(calls.div_ceil(6) as usize) {
            let base = tempfile::tempdir().unwrap();
            let (src, want, targets) = setup(base.path(), 2);
            let state = base.path().join("state");
            let fault = Fault { kind, nth, corrupt: false, after_effect };
            let r = {
                let faulty = FaultyTier::new(&targets[1], vec![fault]);
                let refs: Vec<&dyn TargetTier> = vec![&targets[0], &faulty];
                let threads = 1 + (k + nth as usize) % 2;
                builder(&src, &refs, &state).mode(Mode::Move).on_target_failure(policy).threads(threads).build().unwrap().run()
            };
            let what = format!("{kind:?} (after effect: {after_effect}) call {nth} of {calls}, {policy}");
            let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
            if policy == TargetFailure::Fail {
                let e = r.expect_err(&what);
                assert!(e.to_string().contains("target #2") && e.to_string().contains("injected fault"), "{what}: {e}");
                assert!(want.keys().all(|p| namespace(&src).contains_key(p)), "{what}: removed before both had it");
                let done = run_to_end(&mut Seeder::resume_targets(&state, &src, &refs).unwrap());
                assert!(done.targets.iter().all(|t| t.dropped.is_none()), "{what}");
                check_target(&targets[1], &want);
                assert!(want.keys().all(|p| !namespace(&src).contains_key(p)), "{what}: the move left files");
            } else {
                let Ok(Outcome::Completed(done)) = r else { panic!("{what}: {r:?}") };
                let why = done.targets[1].dropped.as_deref().unwrap_or_else(|| panic!("{what}: not dropped"));
                assert!(why.contains("injected fault"), "{what}: {why}");
                assert!(want.keys().all(|p| namespace(&src).contains_key(p)), "{what}: a move removed files");
                let report = targets[1].verify().unwrap();
                assert!(report.is_clean(), "{what}: the dropped target is unsound: {:?}", report.problems);
            }
            check_target(&targets[0], &want);
            injected += 1;
        }
    }
    injected
}

#[test]
fn every_call_of_the_second_target_failing_under_fail_then_resumed() {
    assert!(sweep_second_target(TargetFailure::Fail) > 20);
}

#[test]
fn every_call_of_the_second_target_failing_under_drop() {
    assert!(sweep_second_target(TargetFailure::Drop) > 20);
}

#[test]
fn events_say_which_target_a_container_was_sealed_on_and_verified() {
    let base = tempfile::tempdir().unwrap();
    let (src, _, targets) = setup(base.path(), 2);
    let refs: Vec<&dyn TargetTier> = targets.iter().map(|t| t as &dyn TargetTier).collect();
    let events = Mutex::new(Vec::new());
    let r = run_to_end(
        &mut builder(&src, &refs, &base.path().join("state"))
            .observer(|e: &Event| events.lock().unwrap().push(e.clone()))
            .build()
            .unwrap(),
    );
    let events = events.into_inner().unwrap();
    for (i, t) in r.targets.iter().enumerate() {
        let sealed =
            events.iter().filter(|e| matches!(e, Event::TargetSealed { target_index, .. } if *target_index == i)).count();
        assert_eq!(sealed as u64, t.counters.target_containers, "target {i}");
        let verified = events.iter().filter(|e| matches!(e, Event::Verified { target_index, .. } if *target_index == i)).count();
        assert_eq!(verified, 1, "target {i}");
    }
}
