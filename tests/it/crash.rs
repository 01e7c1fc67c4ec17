//! Crash tests against the real `seed` process: abort at named crash
//! points, and SIGKILL at random instants; after every crash, resume and
//! check that nothing was lost or duplicated.
//!
//! The `it` test target requires the `cli`, `test-util` and `crash-points`
//! features (the README's test command enables them). Knobs: `TIERSEED_KILL_TRIALS` (default 30),
//! `TIERSEED_KILL_SEED` (default: from the clock; printed on failure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tierseed::synth::Rng;
use tierseed::{CRASH_POINTS, IndexedTier, Tier};

use crate::{check_target, namespace, synth_source_changing};

fn seed_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_seed"))
}

/// A source tier on disk plus what the job should deliver.
struct Dataset {
    src: PathBuf,
    all: BTreeMap<String, Vec<u8>>,
    untouched_namespace: BTreeMap<String, tierseed::FileEntry>,
}

const SELECT: [&str; 4] = ["--prefix", "gen-002", "--include", "gen-000/projects/**"];

fn selected(all: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    all.iter()
        .filter(|(p, _)| p.starts_with("gen-002/") || p.starts_with("gen-000/projects/"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

fn dataset(dir: &Path, files: usize, avg: usize) -> Dataset {
    let src = dir.join("src");
    let (tier, all) = synth_source_changing(&src, 77, 3, files, avg, 60.0);
    let untouched_namespace = namespace(&tier);
    Dataset { src, all, untouched_namespace }
}

/// Copies a tier directory (for move-mode trials, which change the source).
fn copy_dir(from: &Path, to: &Path) {
    let st = Command::new("cp").arg("-a").arg(from).arg(to).status().unwrap();
    assert!(st.success());
}

fn seed(args: &[&str], crash_at: Option<&str>) -> Command {
    let mut c = Command::new(seed_bin());
    c.args(args).env_remove("TIERSEED_CRASH_AT").env("RUST_LOG", "error");
    if let Some(spec) = crash_at {
        c.env("TIERSEED_CRASH_AT", spec);
    }
    c
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The invariants after a crash and resume.
fn check(ds: &Dataset, src_dir: &Path, dst_dir: &Path, mv: bool) {
    let want = selected(&ds.all);
    let dst = IndexedTier::open(dst_dir).unwrap();
    check_target(&dst, &want);
    // Nothing on the target outside what its index points to after open.
    assert_eq!(crate::stored_segment_entries(&dst), crate::index_fingerprints(&dst).len() as u64);
    let src = IndexedTier::open(src_dir).unwrap();
    assert!(src.verify().unwrap().is_clean(), "seeding modified source data");
    let ns = namespace(&src);
    for (p, e) in &ds.untouched_namespace {
        if mv && want.contains_key(p) {
            assert!(!ns.contains_key(p), "moved file {p} still in the source");
        } else {
            assert_eq!(ns.get(p), Some(e), "source entry {p} changed");
        }
    }
    let _ = src.container_ids().unwrap();
}

/// Upper bound on the arrivals swept per Copy crash point.
const MAX_SWEEP: u64 = 400;

/// One dataset for the random-kill test, with the arguments of its job.
struct KillCase {
    name: &'static str,
    ds: Dataset,
    /// A target prepared before each trial (copied), or none.
    target: Option<PathBuf>,
    select: Vec<&'static str>,
    container_kib: &'static str,
    /// Files the job selects.
    expect: BTreeMap<String, Vec<u8>>,
}

fn kill_run_args<'a>(case: &'a KillCase, src: &'a str, dst: &'a str, state: &'a str, mv: bool) -> Vec<&'a str> {
    let mut a = vec!["run", "--from", src, "--to", dst, "--state", state, "--container-kib", case.container_kib];
    a.extend(case.select.iter().copied());
    if mv {
        a.push("--move");
    }
    a
}

/// The phase a job was in when it was killed: the first one its context
/// does not record as done (`Select` when no context was created yet).
fn landed(state: &Path) -> tierseed::Phase {
    if !state.join(tierseed::layout::JOB_CONTEXT).is_dir() {
        return tierseed::Phase::Select;
    }
    tierseed::Seeder::status(state).map_or(tierseed::Phase::Select, |p| p.next_phase)
}

/// A `seed` child whose `--log-events` lines arrive, with the instant
/// each was read, on a channel.
struct Watched {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<(Instant, String)>,
}

fn spawn_watched(args: &[&str]) -> Watched {
    use std::io::BufRead;
    let mut args = args.to_vec();
    args.push("--log-events");
    let mut child = seed(&args, None).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::piped()).spawn().unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send((Instant::now(), line)).is_err() {
                return;
            }
        }
    });
    Watched { child, lines }
}

/// The event line that starts `phase`, as `--log-events` prints it.
fn started(phase: tierseed::Phase) -> String {
    format!("event PhaseStarted({phase:?})")
}

/// Runs the job uninterrupted and returns how long each phase took (from
/// its start event to the next phase's), and the whole run.
fn phase_windows(case: &KillCase, dir: &Path) -> (Duration, BTreeMap<tierseed::Phase, Duration>) {
    std::fs::create_dir_all(dir).unwrap();
    let dst = dir.join("dst");
    if let Some(t) = &case.target {
        copy_dir(t, &dst);
    }
    let state = dir.join("state");
    let (s, d, st) = (case.ds.src.to_str().unwrap(), dst.to_str().unwrap(), state.to_str().unwrap());
    let t = Instant::now();
    let mut w = spawn_watched(&kill_run_args(case, s, d, st, false));
    assert!(w.child.wait().unwrap().success(), "{}: the clean run failed", case.name);
    let span = t.elapsed().max(Duration::from_millis(20));
    let mut starts: Vec<(tierseed::Phase, Instant)> = Vec::new();
    let mut end = Instant::now();
    while let Ok((at, line)) = w.lines.recv_timeout(Duration::from_secs(5)) {
        for p in tierseed::Phase::ALL {
            if line == started(p) {
                starts.push((p, at));
            }
        }
        end = at;
    }
    let mut windows = BTreeMap::new();
    for (k, (p, at)) in starts.iter().enumerate() {
        let next = starts.get(k + 1).map_or(end, |n| n.1);
        windows.insert(*p, next.saturating_duration_since(*at).max(Duration::from_micros(100)));
    }
    check_case(case, &case.ds.src, &dst, false);
    (span, windows)
}

fn check_case(case: &KillCase, src_dir: &Path, dst_dir: &Path, mv: bool) {
    let dst = IndexedTier::open(dst_dir).unwrap();
    let ns = namespace(&dst);
    for (p, bytes) in &case.expect {
        assert!(ns.contains_key(p), "{}: {p} not switched to the target", case.name);
        let mut out = Vec::new();
        dst.restore(p, &mut out).unwrap_or_else(|e| panic!("{}: restore {p}: {e}", case.name));
        assert!(out == *bytes, "{}: {p} restored differently", case.name);
    }
    assert_eq!(crate::stored_segment_entries(&dst), crate::index_fingerprints(&dst).len() as u64, "a segment stored twice");
    assert!(dst.verify().unwrap().is_clean(), "{}: target verify", case.name);
    let src = IndexedTier::open(src_dir).unwrap();
    assert!(src.verify().unwrap().is_clean(), "seeding modified source data");
    let left = namespace(&src);
    for (p, e) in &case.ds.untouched_namespace {
        if mv && case.expect.contains_key(p) {
            assert!(!left.contains_key(p), "{}: moved file {p} still in the source", case.name);
        } else {
            assert_eq!(left.get(p), Some(e), "{}: source entry {p} changed", case.name);
        }
    }
}

/// The datasets the kill test runs on: the small one of the crash-point
/// test; 2,600 small files (more than two Switch batches) in the default
/// 4 MiB containers; and a target that already holds a first generation
/// spanning over 64 source containers, so Copy meets a long run of fully
/// deduplicated containers and commits periodically without sealing.
fn kill_cases(base: &Path) -> Vec<KillCase> {
    let small_dir = base.join("small");
    std::fs::create_dir_all(&small_dir).unwrap();
    let small = dataset(&small_dir, 40, 48_000);
    let small_expect = selected(&small.all);

    let many_dir = base.join("many");
    std::fs::create_dir_all(&many_dir).unwrap();
    let many_src = many_dir.join("src");
    let tier = IndexedTier::create(&many_src, tierseed::TierConfig::default()).unwrap();
    let mut tree = tierseed::synth::SynthTree::new(5, 2_600, 1_500, 5.0);
    let g = tree.next_generation();
    tier.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice()))).unwrap();
    let many_all: BTreeMap<String, Vec<u8>> = g.into_iter().map(|f| (f.path, f.bytes)).collect();
    let many = Dataset { src: many_src, untouched_namespace: namespace(&tier), all: many_all.clone() };
    drop(tier);

    let dedup_dir = base.join("dedup");
    std::fs::create_dir_all(&dedup_dir).unwrap();
    let tier = IndexedTier::create(dedup_dir.join("src"), crate::small_config()).unwrap();
    let mut tree = tierseed::synth::SynthTree::new(9, 120, 80_000, 30.0);
    let mut dedup_all = BTreeMap::new();
    for generation in 0..2 {
        let g = tree.next_generation();
        tier.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice()))).unwrap();
        dedup_all.extend(g.into_iter().map(|f| (f.path, f.bytes)));
        if generation == 0 {
            // Copy commits every 64 source containers when nothing seals.
            let n = tier.container_ids().unwrap().len();
            assert!(n > 2 * 64, "dedup dataset too small: {n} containers in its first generation");
        }
    }
    let dedup = Dataset { src: dedup_dir.join("src"), untouched_namespace: namespace(&tier), all: dedup_all.clone() };
    // The target holds gen-000 already (seeded by a job of its own).
    let prepared = dedup_dir.join("prepared");
    {
        let dst = IndexedTier::create(&prepared, crate::small_config()).unwrap();
        let mut job = tierseed::Seeder::builder(&tier, &dst, dedup_dir.join("prep-state"))
            .selection(tierseed::Selection::new().prefix("gen-000"))
            .build()
            .unwrap();
        assert!(matches!(job.run().unwrap(), tierseed::Outcome::Completed(_)));
    }
    drop(tier);

    vec![
        KillCase { name: "small", ds: small, target: None, select: SELECT.to_vec(), container_kib: "64", expect: small_expect },
        KillCase { name: "many files", ds: many, target: None, select: vec!["--all"], container_kib: "4096", expect: many_all },
        KillCase {
            name: "long deduplicated run",
            ds: dedup,
            target: Some(prepared),
            select: vec!["--all"],
            container_kib: "64",
            expect: dedup_all,
        },
    ]
}

#[test]
fn sigkill_at_random_instants_then_resume() {
    use tierseed::Phase;
    let trials: u64 = std::env::var("TIERSEED_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let seed_value: u64 = std::env::var("TIERSEED_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    // Printed first, so a failure anywhere below can be replayed.
    eprintln!("random kills: replay with TIERSEED_KILL_SEED={seed_value} TIERSEED_KILL_TRIALS={trials}");
    let mut rng = Rng::new(seed_value);
    let base = tempfile::tempdir().unwrap();
    let cases = kill_cases(base.path());
    let windows: Vec<_> =
        cases.iter().enumerate().map(|(i, c)| phase_windows(c, &base.path().join(format!("clean{i}")))).collect();
    for (c, (span, w)) in cases.iter().zip(&windows) {
        eprintln!("random kills: {} takes {span:?}; phases {w:?}", c.name);
    }

    // Each trial aims its first kill at one phase (round robin over the
    // four that matter): it waits for the phase's start event, then kills
    // at a random instant within the time the phase took in the clean run.
    // The resumes after it are killed at random instants of the run.
    // Trials go on past `trials` (up to twice as many) until a kill has
    // landed in each of the four phases.
    let aims = [Phase::BuildPhf, Phase::Mark, Phase::Copy, Phase::Switch];
    let mut landed_in: BTreeMap<Phase, u64> = BTreeMap::new();
    let mut kills = 0;
    let mut trial = 0u64;
    while trial < trials || (trial < 2 * trials && aims.iter().any(|p| !landed_in.contains_key(p))) {
        let case_no = (trial as usize) % cases.len();
        let (case, (span, w)) = (&cases[case_no], &windows[case_no]);
        let aim = aims[(trial as usize / cases.len()) % aims.len()];
        let mv = trial % 2 == 1;
        let dir = base.path().join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        copy_dir(&case.ds.src, &src);
        let dstp = dir.join("dst");
        if let Some(t) = &case.target {
            copy_dir(t, &dstp);
        }
        let (s, d, st) = (src.to_str().unwrap(), dstp.to_str().unwrap(), dir.join("state"));
        let st = st.to_str().unwrap();
        let mut first = true;
        for round in 0..3 {
            let args: Vec<&str> =
                if first { kill_run_args(case, s, d, st, mv) } else { vec!["resume", "--from", s, "--to", d, "--state", st] };
            let mut watched = spawn_watched(&args);
            if round == 0 {
                // Wait for the aimed phase to start, then kill at a random
                // instant within the time it took in the clean run.
                let window = w.get(&aim).copied().unwrap_or(Duration::from_millis(1));
                let deadline = Instant::now() + *span * 4 + Duration::from_secs(5);
                while Instant::now() < deadline {
                    match watched.lines.recv_timeout(Duration::from_millis(50)) {
                        Ok((_, line)) if line == started(aim) => break,
                        Ok(_) => {}
                        Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                            if watched.child.try_wait().unwrap().is_some() {
                                break;
                            }
                        }
                        Err(_) => break,
                    }
                }
                std::thread::sleep(Duration::from_micros(rng.below(window.as_micros() as u64 + 1)));
            } else {
                std::thread::sleep(Duration::from_micros(rng.below(span.as_micros() as u64 + 1)));
            }
            let mut child = watched.child;
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let _ = child.wait();
            if !finished {
                kills += 1;
                *landed_in.entry(landed(Path::new(st))).or_insert(0) += 1;
            }
            if first && Path::new(st).join(tierseed::layout::JOB_CONTEXT).exists() {
                first = false;
            }
        }
        // Finish as an operator would: resume, or run again if no job was created.
        let resume = seed(&["resume", "--from", s, "--to", d, "--state", st], None).output().unwrap();
        if !resume.status.success() {
            let err = String::from_utf8_lossy(&resume.stderr);
            assert!(err.contains("no job in") || err.contains("no tier here"), "resume failed: {}", text(&resume));
            let o = seed(&kill_run_args(case, s, d, st, mv), None).output().unwrap();
            assert!(o.status.success(), "re-run failed: {}", text(&o));
        }
        std::panic::catch_unwind(|| check_case(case, &src, &dstp, mv)).unwrap_or_else(|_| {
            panic!(
                "trial {trial} ({}) failed; replay with TIERSEED_KILL_SEED={seed_value} TIERSEED_KILL_TRIALS={trials}",
                case.name
            )
        });
        std::fs::remove_dir_all(&dir).unwrap();
        trial += 1;
    }
    eprintln!("random kills: {trial} trials, {kills} SIGKILLs, landed in {landed_in:?}; every trial resumed with nothing lost");
    assert!(kills >= trials, "only {kills} kills landed in {trial} trials");
    for p in aims {
        assert!(
            landed_in.contains_key(&p),
            "no kill landed in {p} over {trial} trials (landed: {landed_in:?}); replay with TIERSEED_KILL_SEED={seed_value}"
        );
    }
}

#[test]
fn a_second_run_on_a_busy_state_directory_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 8, 8_000);
    let state = base.path().join("state");
    let dst = base.path().join("dst");
    // Hold the state directory's lock as a running job would.
    let src_tier = IndexedTier::open(&ds.src).unwrap();
    let dst_tier = IndexedTier::create(&dst, crate::small_config()).unwrap();
    let job = tierseed::Seeder::builder(&src_tier, &dst_tier, &state).selection(tierseed::Selection::all()).build().unwrap();
    let (s, d, st) = (ds.src.to_str().unwrap(), dst.to_str().unwrap(), state.to_str().unwrap());
    let o = seed(&["resume", "--from", s, "--to", d, "--state", st], None).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("job in progress"), "{}", text(&o));
    let o = seed(&run_args(s, &[d.to_string()], st, false), None).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("job in progress"), "{}", text(&o));
    drop(job);
}

/// `run` arguments with `targets` as `--to` flags.
fn run_args<'a>(src: &'a str, targets: &'a [String], state: &'a str, mv: bool) -> Vec<&'a str> {
    let mut a = vec!["run", "--from", src];
    for t in targets {
        a.extend(["--to", t.as_str()]);
    }
    a.extend(["--state", state, "--container-kib", "64"]);
    a.extend_from_slice(&SELECT);
    if mv {
        a.push("--move");
    }
    a
}

/// Brings an interrupted job to completion the way an operator would:
/// resume with every target, or run again if the job context was never
/// created.
fn finish(src: &str, targets: &[String], state: &str, mv: bool) {
    let mut args = vec!["resume", "--from", src, "--state", state];
    for t in targets {
        args.extend(["--to", t.as_str()]);
    }
    let resume = seed(&args, None).output().unwrap();
    if resume.status.success() {
        return;
    }
    let err = String::from_utf8_lossy(&resume.stderr);
    assert!(err.contains("no job in") || err.contains("no tier here"), "resume failed: {}", text(&resume));
    let o = seed(&run_args(src, targets, state, mv), None).output().unwrap();
    assert!(o.status.success(), "re-run failed: {}", text(&o));
}

/// One crash-then-resume trial of a job with `n` targets (`dst0`, ...);
/// returns whether the process really crashed. Every target must then hold every selected
/// file exactly once.
fn crash_trial(ds: &Dataset, dir: &Path, n: usize, writers: &str, point: &str, at: u64) -> bool {
    let mv = point.starts_with("switch");
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("src");
    copy_dir(&ds.src, &src);
    let targets: Vec<String> = (0..n).map(|i| dir.join(format!("dst{i}")).to_str().unwrap().to_string()).collect();
    let (s, st) = (src.to_str().unwrap(), dir.join("state"));
    let st = st.to_str().unwrap();
    let spec = format!("{point}:{at}");
    let mut args = run_args(s, &targets, st, mv);
    args.extend(["--writers", writers]);
    let o = seed(&args, Some(&spec)).output().unwrap();
    let crashed = !o.status.success();
    if crashed {
        assert!(String::from_utf8_lossy(&o.stderr).contains("crash point"), "{spec}: failed without crashing: {}", text(&o));
    }
    finish(s, &targets, st, mv);
    for t in &targets {
        check(ds, &src, Path::new(t), mv);
    }
    let status = tierseed::Seeder::status(st).unwrap();
    assert!(status.targets.iter().all(|t| t.dropped.is_none()), "{spec}: a target was dropped: {:?}", status.targets);
    std::fs::remove_dir_all(dir).unwrap();
    crashed
}

/// Aborts a job with `n` targets at every crash point, then resumes it:
/// at every arrival at the points where the targets' cursors and writers
/// interleave (every other with three targets, for time), until a run
/// completes without reaching the point; at a few arrivals elsewhere.
fn sweep_crash_points(ds: &Dataset, base: &Path, n: usize, writers: &str) {
    let mut aborted: BTreeMap<&str, u64> = BTreeMap::new();
    let mut trials = 0;
    for point in CRASH_POINTS {
        let dir = |at: u64| base.join(format!("{n}-{writers}-{}-{at}", point.replace('.', "_")));
        if point.starts_with("copy.") || *point == "tier.sealed_not_indexed" {
            let step = if n < 3 { 1 } else { 2 };
            let mut at = 1;
            while at <= MAX_SWEEP {
                trials += 1;
                if !crash_trial(ds, &dir(at), n, writers, point, at) {
                    break;
                }
                *aborted.entry(point).or_insert(0) += 1;
                at += step;
            }
        } else {
            for at in [1u64, 2, 7] {
                trials += 1;
                if crash_trial(ds, &dir(at), n, writers, point, at) {
                    *aborted.entry(point).or_insert(0) += 1;
                }
            }
        }
    }
    // Every point must really have been hit: a crash test that never
    // crashes proves nothing (e.g. a build without the feature).
    for point in CRASH_POINTS {
        assert!(
            aborted.get(point).copied().unwrap_or(0) > 0,
            "{n} target(s), {writers} writer(s): crash point {point} was never reached (aborted: {aborted:?}); if nothing aborted, the seed \
             example was built without `--features crash-points`: run the whole suite with `cargo test --release --features \
             crash-points`"
        );
    }
    eprintln!(
        "crash points, {n} target(s), {writers} writer(s): {trials} trials, {} crashes ({aborted:?}), all resumed with nothing lost on any target",
        aborted.values().sum::<u64>()
    );
}

#[test]
fn abort_at_every_crash_point_then_resume() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 16, 32_000);
    sweep_crash_points(&ds, base.path(), 1, "2");
}

/// The same sweep with one container in flight, and with eight (more than
/// a commit's worth: one commit then counts several containers, and a
/// crash leaves up to eight written but never counted).
#[test]
fn abort_at_every_crash_point_with_one_and_eight_writers_then_resume() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 16, 32_000);
    for writers in ["1", "8"] {
        sweep_crash_points(&ds, base.path(), 1, writers);
    }
}

#[test]
fn abort_at_every_crash_point_with_two_and_three_targets_then_resume() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 16, 32_000);
    for n in [2usize, 3] {
        sweep_crash_points(&ds, base.path(), n, "2");
    }
}

#[test]
fn sigkill_at_random_instants_with_two_targets_then_resume() {
    let trials: u64 = std::env::var("TIERSEED_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).map_or(10, |t: u64| t.div_ceil(2));
    let seed_value: u64 = std::env::var("TIERSEED_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("random kills, two targets: replay with TIERSEED_KILL_SEED={seed_value} TIERSEED_KILL_TRIALS={}", trials * 2);
    let mut rng = Rng::new(seed_value);
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 40, 48_000);
    // The clean run's length bounds the kill instants.
    let clean = base.path().join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    let targets: Vec<String> = (0..2).map(|i| clean.join(format!("dst{i}")).to_str().unwrap().to_string()).collect();
    let t = Instant::now();
    let o =
        seed(&run_args(ds.src.to_str().unwrap(), &targets, clean.join("state").to_str().unwrap(), false), None).output().unwrap();
    assert!(o.status.success(), "clean run: {}", text(&o));
    let span = t.elapsed().max(Duration::from_millis(20));
    let mut kills = 0;
    for trial in 0..trials {
        let mv = trial % 2 == 1;
        let dir = base.path().join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        copy_dir(&ds.src, &src);
        let targets: Vec<String> = (0..2).map(|i| dir.join(format!("dst{i}")).to_str().unwrap().to_string()).collect();
        let (s, st) = (src.to_str().unwrap(), dir.join("state"));
        let st = st.to_str().unwrap();
        let mut resume = vec!["resume", "--from", s, "--state", st];
        for t in &targets {
            resume.extend(["--to", t.as_str()]);
        }
        for round in 0..3 {
            let args = if round == 0 || !Path::new(st).join(tierseed::layout::JOB_CONTEXT).exists() {
                run_args(s, &targets, st, mv)
            } else {
                resume.clone()
            };
            let mut child =
                seed(&args, None).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
            std::thread::sleep(Duration::from_micros(rng.below(span.as_micros() as u64 + 1)));
            if child.try_wait().unwrap().is_none() {
                kills += 1;
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        finish(s, &targets, st, mv);
        std::panic::catch_unwind(|| {
            for t in &targets {
                check(&ds, &src, Path::new(t), mv);
            }
        })
        .unwrap_or_else(|_| panic!("trial {trial} failed; replay with TIERSEED_KILL_SEED={seed_value}"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
    eprintln!("random kills, two targets: {trials} trials, {kills} SIGKILLs, every trial resumed with nothing lost");
    assert!(kills >= trials, "only {kills} kills landed in {trials} trials");
}
