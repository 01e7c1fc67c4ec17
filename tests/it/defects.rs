//! Regression tests named after the defects found by using tierseed as a
//! user would (issue 8). Each failed on the main branch before its fix.

use std::collections::BTreeMap;
use std::fs;
use std::sync::mpsc;
use std::time::Duration;

use tierseed::{
    ContainerKind, Error, Fault, FaultKind, FaultyTier, IndexedTier, JobError, Mode, Outcome, Phase, Seeder, Selection, Tier,
    TierError, VerifyLevel,
};

use crate::{check_target, namespace, prefixed, run_to_end, run_until, small_config, synth_source};

/// Deterministic pseudo-random bytes (incompressible, no repeats).
pub fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut rng = tierseed::synth::Rng::new(seed);
    (0..len).map(|_| rng.below(256) as u8).collect()
}

/// Runs `f` on another thread and fails the test if it has not finished
/// after `limit`: a deadlock detector, not a speed check.
fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(limit).unwrap_or_else(|_| panic!("{what} did not finish within {limit:?}: deadlocked?"))
}

#[test]
fn threads_1_hangs_forever() {
    // Every thread count gives the same result, 1 included, for a copy and
    // a move job, with a suspension in Copy on the way.
    let mut reference: Option<Vec<tierseed::Fingerprint>> = None;
    for threads in [1usize, 2, 5] {
        let outcome = within(Duration::from_secs(300), &format!("a job with {threads} thread(s)"), move || {
            let dir = tempfile::tempdir().unwrap();
            let (src, all) = synth_source(&dir.path().join("src"), 11, 3, 30, 20_000);
            let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
            let state = dir.path().join("state");
            let sel = Selection::new().prefix("gen-001").prefix("gen-002");
            let job = Seeder::builder(&src, &dst, &state).selection(sel).mode(Mode::Move).threads(threads).build().unwrap();
            let job = run_until(job, &state, &src, &dst, Phase::Copy);
            drop(job);
            let mut job = Seeder::resume(&state, &src, &dst).unwrap().with_threads(threads);
            let r = run_to_end(&mut job);
            check_target(&dst, &prefixed(&all, &["gen-001/", "gen-002/"]));
            let mut fps = crate::index_fingerprints(&dst);
            fps.sort();
            (r.counters.files_removed, fps)
        });
        assert!(outcome.0 > 0);
        match &reference {
            None => reference = Some(outcome.1),
            Some(r) => assert!(*r == outcome.1, "{threads} threads stored a different set of segments"),
        }
    }
}

/// The level-1 recipe segments stored in a tier's meta containers.
pub fn level1_recipes(t: &IndexedTier) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    for c in t.container_ids().unwrap() {
        let meta = t.read_metadata(c).unwrap();
        if meta.kind != ContainerKind::Meta {
            continue;
        }
        for b in t.read_segments(c, &meta.segments).unwrap() {
            if b.len() > 5 && &b[..3] == b"TSR" && b[4] == 1 {
                out.push(b);
            }
        }
    }
    out
}

#[test]
fn mark_skips_a_recipe_that_has_the_same_bytes_as_a_data_segment() {
    let dir = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let a = noise(1, 400_000);
    src.ingest_reader("a.bin", 0, &a[..]).unwrap();
    assert!(src.entry("a.bin").unwrap().height >= 2, "a.bin must have recipes below its root");
    // A second file whose whole content is one of a.bin's level-1 recipes,
    // byte for byte: its one data segment *is* that recipe.
    let recipe = level1_recipes(&src).pop().expect("a.bin has level-1 recipes");
    src.ingest_reader("b.bin", 0, &recipe[..]).unwrap();
    assert_eq!(src.entry("b.bin").unwrap().height, 1);

    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let mut job =
        Seeder::builder(&src, &dst, dir.path().join("state")).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    run_to_end(&mut job);
    let want: BTreeMap<String, Vec<u8>> = [("a.bin".to_string(), a), ("b.bin".to_string(), recipe)].into();
    check_target(&dst, &want);
    assert!(namespace(&src).is_empty());
}

/// Removes one container file of a tier (they are read-only files in a
/// writable directory).
fn delete_a_container(t: &IndexedTier, kind: ContainerKind) -> tierseed::ContainerId {
    let c = t.container_ids().unwrap().into_iter().find(|c| t.read_metadata(*c).unwrap().kind == kind).unwrap();
    fs::remove_file(t.container_path(c)).unwrap();
    c
}

#[test]
fn a_target_whose_index_points_at_a_lost_container_is_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 21, 2, 25, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    run_to_end(
        &mut Seeder::builder(&src, &dst, dir.path().join("s1")).selection(Selection::new().prefix("gen-000")).build().unwrap(),
    );
    // The target loses a data container and a meta container.
    delete_a_container(&dst, ContainerKind::Data);
    delete_a_container(&dst, ContainerKind::Meta);

    let sel = Selection::new().prefix("gen-000").prefix("gen-001");
    let mut job = Seeder::builder(&src, &dst, dir.path().join("s2")).selection(sel).mode(Mode::Move).build().unwrap();
    let r = run_to_end(&mut job);
    assert!(r.counters.segments_copied > 0);
    // Every file restores from the target (the lost containers' segments
    // were written again and the index re-pointed) and is gone from the
    // source.
    let want = prefixed(&all, &["gen-000/", "gen-001/"]);
    let ns = namespace(&dst);
    for (p, bytes) in &want {
        assert!(ns.contains_key(p));
        let mut out = Vec::new();
        dst.restore(p, &mut out).unwrap_or_else(|e| panic!("restore {p}: {e}"));
        assert!(out == *bytes, "{p} differs");
    }
    assert!(namespace(&src).keys().all(|p| !want.contains_key(p)));
}

#[test]
fn a_target_replaced_by_an_older_copy_of_itself_between_suspend_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 22, 3, 30, 20_000);
    let dst_dir = dir.path().join("dst");
    let old_dir = dir.path().join("dst-old");
    {
        let dst = IndexedTier::create(&dst_dir, small_config()).unwrap();
        run_to_end(
            &mut Seeder::builder(&src, &dst, dir.path().join("s1"))
                .selection(Selection::new().prefix("gen-000"))
                .build()
                .unwrap(),
        );
    }
    let status = std::process::Command::new("cp").arg("-a").arg(&dst_dir).arg(&old_dir).status().unwrap();
    assert!(status.success());
    let state = dir.path().join("s2");
    let sel = Selection::new().prefix("gen-000").prefix("gen-001").prefix("gen-002");
    let before = namespace(&src);
    {
        let dst = IndexedTier::open(&dst_dir).unwrap();
        let job = Seeder::builder(&src, &dst, &state).selection(sel).mode(Mode::Move).build().unwrap();
        // Suspend well into Copy, with target containers committed.
        let mut job = run_until(job, &state, &src, &dst, Phase::Copy);
        for _ in 0..40 {
            job.suspend_handle().suspend();
            if !matches!(job.run().unwrap(), Outcome::Suspended(p) if p.next_phase == Phase::Copy) {
                break;
            }
        }
        assert!(Seeder::status(&state).unwrap().counters.target_containers > 0);
    }
    // The target is replaced by its older copy (same tier id).
    fs::remove_dir_all(&dst_dir).unwrap();
    fs::rename(&old_dir, &dst_dir).unwrap();
    let dst = IndexedTier::open(&dst_dir).unwrap();

    // The resume must not trust the cleared bits: Verify proves the files
    // on the target, finds them missing, fails, and switches nothing.
    let mut job = Seeder::resume(&state, &src, &dst).unwrap();
    let err = job.run().unwrap_err();
    let Error::Job(JobError::VerifyFailed { segments, files, file_count, .. }) = err.root() else {
        panic!("expected VerifyFailed, got {err}")
    };
    assert!(*segments > 0);
    assert_eq!(files.len(), *file_count);
    assert!(files.iter().all(|f| f.contains("gen-00")), "{files:?}");
    assert_eq!(namespace(&src), before, "a failed Verify removed source entries");
    assert!(namespace(&dst).keys().all(|p| p.starts_with("gen-000/")), "a failed Verify switched files");
    drop(job);

    // The next resume copies what was missing and completes.
    let mut job = Seeder::resume(&state, &src, &dst).unwrap();
    run_to_end(&mut job);
    check_target(&dst, &prefixed(&all, &["gen-000/", "gen-001/", "gen-002/"]));
}

#[test]
fn verify_full_names_every_file_whose_segment_rots_on_the_target() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _all) = synth_source(&dir.path().join("src"), 23, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let before = namespace(&src);
    let job = Seeder::builder(&src, &dst, &state)
        .selection(Selection::new().prefix("gen-001"))
        .mode(Mode::Move)
        .verify(VerifyLevel::Full)
        .build()
        .unwrap();
    drop(run_until(job, &state, &src, &dst, Phase::Verify));
    // Flip one byte in the data area of a target data container: its
    // header and table still check out, only hashing the segment tells.
    let victim = crate::rot::rot_a_segment(&dst, crate::rot::largest_data_container(&dst));

    let mut job = Seeder::resume(&state, &src, &dst).unwrap();
    assert_eq!(job.verify_level(), VerifyLevel::Full, "the level is recorded in the job");
    let err = job.run().unwrap_err();
    let Error::Job(JobError::VerifyFailed { files, reasons, .. }) = err.root() else {
        panic!("expected VerifyFailed, got {err}")
    };
    assert!(!files.is_empty());
    assert!(reasons.iter().any(|r| r.contains(&victim.to_string())), "{reasons:?}");
    assert!(err.to_string().contains("gen-001/"), "{err}");
    assert_eq!(namespace(&src), before);
    assert!(namespace(&dst).is_empty());
}

#[test]
fn restore_writes_through_a_planted_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    t.ingest_reader("dir/f", 0, &b"the real content"[..]).unwrap();
    let out = dir.path().join("out");
    fs::create_dir_all(out.join("dir")).unwrap();
    let victim = dir.path().join("victim");
    fs::write(&victim, b"precious").unwrap();
    // Symlinks planted at every temp name the old code used, and at a
    // guessable one.
    std::os::unix::fs::symlink(&victim, out.join("dir/f.tierseed-restore")).unwrap();
    std::os::unix::fs::symlink(&victim, out.join("dir/.f.tierseed-restore")).unwrap();
    t.restore_to_dir("dir/f", &out).unwrap();
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert_eq!(fs::read(out.join("dir/f")).unwrap(), b"the real content");
    assert!(!fs::symlink_metadata(out.join("dir/f")).unwrap().file_type().is_symlink());

    // A destination that is a symlink is refused, and its target untouched.
    let out2 = dir.path().join("out2");
    fs::create_dir_all(out2.join("dir")).unwrap();
    std::os::unix::fs::symlink(&victim, out2.join("dir/f")).unwrap();
    assert!(t.restore_to_dir("dir/f", &out2).is_err());
    assert!(t.restore_to_file("dir/f", &out2.join("dir/f")).is_err());
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    // So is a parent directory that is a symlink.
    let out3 = dir.path().join("out3");
    fs::create_dir_all(&out3).unwrap();
    std::os::unix::fs::symlink(dir.path(), out3.join("dir")).unwrap();
    assert!(t.restore_to_dir("dir/f", &out3).is_err());
    assert!(!dir.path().join("f").exists());
    // And no temporary file is left behind anywhere.
    for d in [out.join("dir"), out2.join("dir")] {
        for e in fs::read_dir(&d).unwrap() {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !name.contains("tierseed-restore") || name == "f.tierseed-restore" || name == ".f.tierseed-restore",
                "{name}"
            );
        }
    }
}

#[test]
fn abandon_drops_the_job_lock_before_deleting_the_state() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 31, 1, 10, 5_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    let job = run_until(job, &state, &src, &dst, Phase::Copy);
    // While the job holds its lock, abandon refuses and deletes nothing.
    assert!(matches!(Seeder::abandon(&state).unwrap_err().root(), Error::Tier(TierError::Locked { .. })));
    assert!(state.join(tierseed::layout::JOB_CONTEXT).is_dir());
    drop(job);
    // Abandon removes everything while holding the lock: afterwards no
    // job can be resumed from the directory, and a new one can be built.
    Seeder::abandon(&state).unwrap();
    assert!(!state.join(tierseed::layout::JOB_CONTEXT).exists());
    assert!(!state.join(tierseed::layout::JOB_LOCK).exists());
    assert!(fs::read_dir(&state).unwrap().next().is_none(), "abandon left files behind");
    assert!(matches!(
        Seeder::resume(&state, &src, &dst).err().map(|e| matches!(e.root(), Error::Job(JobError::NoJob { .. }))),
        Some(true)
    ));
    let mut job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    run_to_end(&mut job);
}

#[test]
fn files_removed_counts_files_that_were_kept_because_they_were_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 32, 1, 12, 5_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let selected = namespace(&src);
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).mode(Mode::Move).build().unwrap();
    drop(run_until(job, &state, &src, &dst, Phase::Switch));
    // Between Select and Switch the appliance rewrites one selected file
    // and touches another (same bytes, new mtime).
    let mut paths = selected.keys();
    let rewritten = paths.next().unwrap().clone();
    let touched = paths.next().unwrap().clone();
    src.ingest_reader(&rewritten, 1, &b"new content"[..]).unwrap();
    let mut bytes = Vec::new();
    src.restore(&touched, &mut bytes).unwrap();
    src.ingest_reader(&touched, selected[&touched].mtime + 100, &bytes[..]).unwrap();

    let r = run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
    let n = selected.len() as u64;
    assert_eq!(r.counters.files_kept, 2);
    assert_eq!(r.counters.files_removed, n - 2);
    let left = namespace(&src);
    assert_eq!(left.keys().cloned().collect::<Vec<_>>(), {
        let mut v = vec![rewritten.clone(), touched.clone()];
        v.sort();
        v
    });
    let mut out = Vec::new();
    src.restore(&rewritten, &mut out).unwrap();
    assert_eq!(out, b"new content");
}

#[test]
fn after_a_crash_containers_the_job_itself_wrote_are_counted_as_already_there() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 33, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    // The first container write takes effect, then the call "fails" (as
    // if the process died between sealing it and committing the context).
    let faulty = FaultyTier::new(&dst, vec![Fault::fail_after_effect(FaultKind::WriteContainer, 2)]);
    let mut job = Seeder::builder(&src, &faulty, &state).selection(Selection::all()).build().unwrap();
    assert!(job.run().is_err());
    drop(job);
    let sealed_before_resume = dst.container_ids().unwrap().len();
    assert!(sealed_before_resume >= 2);
    let r = run_to_end(&mut Seeder::resume(&state, &src, &dst).unwrap());
    check_target(&dst, &all);
    // A fresh target held nothing: every marked segment was copied by
    // this job, some of them adopted from the containers written before
    // the failure; none was "already there".
    assert_eq!(r.counters.segments_deduplicated, 0, "{:?}", r.counters);
    assert!(r.counters.segments_adopted > 0);
    assert_eq!(r.counters.segments_copied, r.counters.segments_marked);
    assert_eq!(r.counters.target_containers, dst.container_ids().unwrap().len() as u64);
}

#[test]
fn estimate_and_run_resolve_a_selection_differently() {
    let dir = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    src.ingest_reader("old/a", now - 10 * 86_400, &b"old file a"[..]).unwrap();
    src.ingest_reader("old/b", now - 10 * 86_400, &b"old file b"[..]).unwrap();
    src.ingest_reader("new/c", now, &b"new file c"[..]).unwrap();
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    // An explicit path that exists but is filtered out by its age: both
    // resolve it the same way (it is simply not selected).
    let sel = Selection::new().prefix("old").path("new/c").older_than_days(1);
    let est = Seeder::estimate(&src, &dst, &sel).unwrap();
    let r = run_to_end(&mut Seeder::builder(&src, &dst, dir.path().join("state")).selection(sel).build().unwrap());
    assert_eq!(est.files, r.counters.files_selected);
    assert_eq!(est.files, 2);
    assert_eq!(est.segments, r.counters.segments_marked);
    // An explicit path that does not exist is the same error for both.
    let sel = Selection::new().path("nope");
    assert!(matches!(Seeder::estimate(&src, &dst, &sel).unwrap_err().root(), Error::Tier(TierError::FileNotFound { .. })));
    let err = Seeder::builder(&src, &dst, dir.path().join("state2")).selection(sel).build().unwrap().run().unwrap_err();
    assert!(matches!(err.root(), Error::Tier(TierError::FileNotFound { .. })), "{err}");
}

#[test]
#[cfg(feature = "crash-points")] // reads the durability trace
fn the_commit_path_fsyncs_renames_and_indexes_each_container_before_the_commit_that_counts_it() {
    // With one writer, the default two, and more containers in flight
    // than the job has (one commit may count several at once).
    for writers in [1, 2, 4, 16] {
        commit_path_order(writers);
    }
}

/// A job asks for 1 to 16 containers in flight per target; anything else
/// is refused when the job is built, naming the range, not clamped.
#[test]
fn writers_outside_one_to_sixteen_are_refused_when_the_job_is_built() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 43, 1, 4, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    for bad in [0, 17, usize::MAX] {
        let Err(e) =
            Seeder::builder(&src, &dst, dir.path().join(format!("state{bad}"))).selection(Selection::all()).writers(bad).build()
        else {
            panic!("writers({bad}) was accepted");
        };
        assert!(e.to_string().contains("writers must be 1 to 16"), "writers({bad}): {e}");
    }
}

fn commit_path_order(writers: usize) {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 41, 2, 20, 20_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let mut job =
        Seeder::builder(&src, &dst, dir.path().join("state")).selection(Selection::all()).writers(writers).build().unwrap();
    tierseed::trace::start();
    let r = run_to_end(&mut job);
    let trace = tierseed::trace::take();
    let written: Vec<String> = trace.iter().filter_map(|s| s.strip_prefix("index ")).map(str::to_string).collect::<Vec<_>>();
    assert_eq!(written.len() as u64, r.counters.target_containers, "trace: {trace:?}");
    for name in &written {
        let pos = |step: &str| trace.iter().position(|s| s == &format!("{step} {name}"));
        let fsync = pos("fsync").unwrap_or_else(|| panic!("{name} never fsynced: {trace:?}"));
        let rename = pos("rename").unwrap_or_else(|| panic!("{name} never renamed"));
        let index = pos("index").unwrap_or_else(|| panic!("{name} never indexed"));
        assert!(fsync < rename, "{name}: renamed before its fsync");
        let dir_sync = trace[rename..index].iter().any(|s| s == "fsync-dir containers");
        assert!(
            dir_sync,
            "{name}: indexed without fsyncing the containers directory after the rename: {:?}",
            &trace[rename..=index]
        );
        let commit = trace[index..].iter().any(|s| s == "commit context");
        assert!(commit, "{name}: no context commit after it was indexed");
        // No context commit between its rename and its index batch may
        // count it (the commit that counts it comes after the index).
        assert!(fsync < index);
    }
    // Every context commit counts only containers that are already
    // durable and indexed: before a commit that counts N target containers
    // (`counting N`), N index batches have completed. A commit may happen
    // while a container is being written (the pipeline), but never counts
    // it. (The writer threads' steps interleave with the job thread's.)
    let mut indexed = 0u64;
    let mut commits = 0;
    for (i, s) in trace.iter().enumerate() {
        if s.starts_with("index ") {
            indexed += 1;
        } else if let Some(n) = s.strip_prefix("counting ") {
            let n: u64 = n.parse().unwrap();
            assert!(n <= indexed, "a commit counts {n} containers while only {indexed} are indexed: {:?}", &trace[..=i]);
            commits += 1;
        }
    }
    assert!(commits as u64 >= r.counters.target_containers, "fewer commits than containers: {trace:?}");
}

/// Faults in the calls BuildPhf and Select make, and faults that strike
/// after the call took effect: each fails the run cleanly, and a resume
/// without the fault completes with every file on the target.
#[test]
fn faults_in_listing_calls_and_after_the_effect_fail_cleanly_and_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 42, 2, 20, 20_000);
    let cases: Vec<(&str, Fault, bool)> = vec![
        ("fingerprints", Fault::fail(FaultKind::Fingerprints, 1), true),
        // BuildPhf scans the index once (into the key file): the second
        // call is the page after the first was written out.
        ("fingerprints, later page", Fault::fail(FaultKind::Fingerprints, 2), true),
        ("container_ids", Fault::fail(FaultKind::ContainerIds, 1), true),
        ("list_files", Fault::fail(FaultKind::ListFiles, 1), true),
        ("write_container after effect", Fault::fail_after_effect(FaultKind::WriteContainer, 3), false),
        ("upsert_files after effect", Fault::fail_after_effect(FaultKind::UpsertFiles, 1), false),
        ("remove_files after effect", Fault::fail_after_effect(FaultKind::RemoveFiles, 1), true),
        // Mark looks up only recipes (leaves are confirmed by the key
        // file) and Copy trusts whole containers by their homed counts, so
        // the source sees few lookups.
        ("locate after effect", Fault::fail_after_effect(FaultKind::Locate, 2), true),
    ];
    for (i, (name, fault, on_source)) in cases.into_iter().enumerate() {
        let sdir = dir.path().join(format!("src{i}"));
        let status = std::process::Command::new("cp").arg("-a").arg(src.dir()).arg(&sdir).status().unwrap();
        assert!(status.success());
        let s = IndexedTier::open(&sdir).unwrap();
        let d = IndexedTier::create(dir.path().join(format!("dst{i}")), small_config()).unwrap();
        let state = dir.path().join(format!("state{i}"));
        {
            let fs_ = FaultyTier::new(&s, if on_source { vec![fault] } else { vec![] });
            let fd = FaultyTier::new(&d, if on_source { vec![] } else { vec![fault] });
            let job = Seeder::builder(&fs_, &fd, &state).selection(Selection::all()).mode(Mode::Move).build();
            let failed = match job {
                Err(_) => true,
                Ok(mut job) => job.run().is_err(),
            };
            let hit = if on_source { fs_.calls(fault.kind) } else { fd.calls(fault.kind) };
            assert!(hit >= fault.nth, "{name}: the fault was never reached");
            assert!(failed, "{name}: the fault did not fail the run");
        }
        match Seeder::resume(&state, &s, &d) {
            Ok(mut job) => {
                run_to_end(&mut job);
            }
            Err(e) => {
                assert!(matches!(e.root(), Error::Job(JobError::NoJob { .. })), "{name}: {e}");
                run_to_end(&mut Seeder::builder(&s, &d, &state).selection(Selection::all()).mode(Mode::Move).build().unwrap());
            }
        }
        check_target(&d, &all);
        assert!(namespace(&s).is_empty(), "{name}: moved files left in the source");
    }
}

#[test]
fn ingest_stores_a_segment_twice_when_its_container_seals_between_two_copies() {
    // Found by ingesting /usr/share/doc and ~/.cargo/registry/src: the
    // scrub counted 4 more table entries than index entries.
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    // One random block repeated: its chunks recur within one hashing batch,
    // with 64 KiB containers sealing in between.
    let block = noise(7, 100_000);
    let file: Vec<u8> = block.iter().copied().cycle().take(block.len() * 3).collect();
    t.ingest_reader("repeats.bin", 0, &file[..]).unwrap();
    // And recurring in the *next* hashing batch (64 chunks later, about
    // 256 KiB here), after the container holding the first copy was
    // sealed by that batch: the lookup at the start of the batch predates
    // the seal (the case seen on /usr/lib).
    // Chunk boundaries are content-defined, so several lead-ins place the
    // first copy at different distances from the batch's end.
    for (i, lead) in (180_000..300_000).step_by(8_000).enumerate() {
        let x = noise(100 + i as u64, 30_000);
        let spaced: Vec<u8> = [noise(200 + i as u64, lead), x.clone(), noise(300 + i as u64, 100_000), x].concat();
        t.ingest_reader(&format!("spaced-{i}.bin"), 0, &spaced[..]).unwrap();
    }
    // And a file whose content is another file's root recipe, in one batch.
    let mut batch = t.ingest_session();
    batch.add_reader("small.bin", 0, &mut &b"a small file of one chunk"[..]).unwrap();
    batch.finish().unwrap();
    let recipe = {
        let e = t.entry("small.bin").unwrap();
        let c = t.locate(&[e.root]).unwrap()[0].unwrap();
        let m = t.read_metadata(c).unwrap();
        let which: Vec<_> = m.segments.iter().filter(|s| s.fingerprint == e.root).copied().collect();
        t.read_segments(c, &which).unwrap().pop().unwrap()
    };
    let mut batch = t.ingest_session();
    batch.add_reader("other-small.bin", 0, &mut &b"another small file"[..]).unwrap();
    batch.add_reader("recipe-bytes.bin", 0, &mut &recipe[..]).unwrap();
    batch.finish().unwrap();
    assert_eq!(crate::stored_segment_entries(&t), crate::index_fingerprints(&t).len() as u64, "a segment is stored twice");
    let mut out = Vec::new();
    t.restore("repeats.bin", &mut out).unwrap();
    assert!(out == file);
}
