//! Crash tests against the real `seed` process: abort at named crash
//! points, and SIGKILL at random instants; after every crash, resume and
//! check that nothing was lost or duplicated.
//!
//! Needs the example built with `--features crash-points` (the README's
//! test command does this). Knobs: `TIERSEED_KILL_TRIALS` (default 30),
//! `TIERSEED_KILL_SEED` (default: from the clock; printed on failure).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use tierseed::synth::Rng;
use tierseed::{CRASH_POINTS, LocalTier, SourceTier};

use crate::{check_target, namespace, synth_source_changing};

fn seed_bin() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let bin = exe.parent().unwrap().parent().unwrap().join("examples/seed");
    assert!(bin.exists(), "{} missing: run the tests with `cargo test --release --features crash-points`", bin.display());
    bin
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

fn run_args<'a>(src: &'a str, dst: &'a str, state: &'a str, mv: bool) -> Vec<&'a str> {
    let mut a = vec!["run", "--from", src, "--to", dst, "--state", state, "--container-kib", "64"];
    a.extend_from_slice(&SELECT);
    if mv {
        a.push("--move");
    }
    a
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout: {}\nstderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Brings an interrupted job to completion the way an operator would: if
/// the job context was never created, run again; else resume.
fn finish(src: &str, dst: &str, state: &str, mv: bool) {
    let resume = seed(&["resume", "--from", src, "--to", dst, "--state", state], None).output().unwrap();
    if resume.status.success() {
        return;
    }
    let err = String::from_utf8_lossy(&resume.stderr);
    assert!(err.contains("no job in") || err.contains("no tier here"), "resume failed: {}", text(&resume));
    let o = seed(&run_args(src, dst, state, mv), None).output().unwrap();
    assert!(o.status.success(), "re-run failed: {}", text(&o));
}

/// The invariants after a crash and resume.
fn check(ds: &Dataset, src_dir: &Path, dst_dir: &Path, mv: bool) {
    let want = selected(&ds.all);
    let dst = LocalTier::open(dst_dir).unwrap();
    check_target(&dst, &want);
    // Nothing on the target outside what its index points to after open.
    assert_eq!(crate::stored_segment_entries(&dst), crate::index_fingerprints(&dst).len() as u64);
    let src = LocalTier::open(src_dir).unwrap();
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

/// One crash-then-resume trial; returns whether the process really crashed.
fn crash_trial(ds: &Dataset, dir: &Path, point: &str, n: u64) -> bool {
    let mv = point.starts_with("switch");
    std::fs::create_dir_all(dir).unwrap();
    let src = dir.join("src");
    copy_dir(&ds.src, &src);
    let (s, d, st) = (src.to_str().unwrap(), dir.join("dst"), dir.join("state"));
    let (d, st) = (d.to_str().unwrap(), st.to_str().unwrap());
    let spec = format!("{point}:{n}");
    let o = seed(&run_args(s, d, st, mv), Some(&spec)).output().unwrap();
    let crashed = !o.status.success();
    if crashed {
        assert!(String::from_utf8_lossy(&o.stderr).contains("crash point"), "{spec}: failed without crashing: {}", text(&o));
    }
    finish(s, d, st, mv);
    check(ds, &src, Path::new(d), mv);
    std::fs::remove_dir_all(dir).unwrap();
    crashed
}

#[test]
fn abort_at_every_crash_point_then_resume() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 16, 32_000);
    let mut aborted: BTreeMap<&str, u64> = BTreeMap::new();
    let mut trials = 0;
    for point in CRASH_POINTS {
        let dir = |n: u64| base.path().join(format!("{}-{n}", point.replace('.', "_")));
        if point.starts_with("copy.") {
            // Copy commits are where the cursor logic lives: crash at every
            // arrival, until a run completes without reaching the point.
            for n in 1..=MAX_SWEEP {
                trials += 1;
                if !crash_trial(&ds, &dir(n), point, n) {
                    break;
                }
                *aborted.entry(point).or_insert(0) += 1;
            }
        } else {
            for n in [1u64, 2, 7] {
                trials += 1;
                if crash_trial(&ds, &dir(n), point, n) {
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
            "crash point {point} was never reached (aborted: {aborted:?}); if nothing aborted, the seed example was built \
             without `--features crash-points`: run the whole suite with `cargo test --release --features crash-points`"
        );
    }
    eprintln!(
        "crash points: {trials} trials, {} crashes ({aborted:?}), all resumed with nothing lost",
        aborted.values().sum::<u64>()
    );
}

#[test]
fn sigkill_at_random_instants_then_resume() {
    let trials: u64 = std::env::var("TIERSEED_KILL_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(30);
    let seed_value: u64 = std::env::var("TIERSEED_KILL_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    eprintln!("random kills: TIERSEED_KILL_SEED={seed_value} TIERSEED_KILL_TRIALS={trials}");
    let mut rng = Rng::new(seed_value);
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 40, 48_000);

    // How long an uninterrupted job takes, to aim the kills within it.
    let clean = base.path().join("clean");
    std::fs::create_dir_all(&clean).unwrap();
    let t = Instant::now();
    let (s, d, st) = (ds.src.to_str().unwrap(), clean.join("dst"), clean.join("state"));
    let o = seed(&run_args(s, d.to_str().unwrap(), st.to_str().unwrap(), false), None).output().unwrap();
    assert!(o.status.success(), "{}", text(&o));
    let span = t.elapsed().max(Duration::from_millis(50));
    check(&ds, &ds.src, &d, false);

    let mut kills = 0;
    for trial in 0..trials {
        let mv = trial % 3 == 2;
        let dir = base.path().join(format!("t{trial}"));
        std::fs::create_dir_all(&dir).unwrap();
        let src = dir.join("src");
        copy_dir(&ds.src, &src);
        let (s, d, st) = (src.to_str().unwrap(), dir.join("dst"), dir.join("state"));
        let (d, st) = (d.to_str().unwrap(), st.to_str().unwrap());
        // Kill the run, then kill resumes too, up to three times.
        let mut first = true;
        for _ in 0..3 {
            let args: Vec<&str> =
                if first { run_args(s, d, st, mv) } else { vec!["resume", "--from", s, "--to", d, "--state", st] };
            let mut child =
                seed(&args, None).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).spawn().unwrap();
            let delay = Duration::from_micros(rng.below(span.as_micros() as u64 + 1));
            std::thread::sleep(delay);
            let finished = child.try_wait().unwrap().is_some();
            let _ = child.kill();
            let _ = child.wait();
            if !finished {
                kills += 1;
            }
            if first && Path::new(st).join("ctx").exists() {
                first = false;
            }
        }
        finish(s, d, st, mv);
        std::panic::catch_unwind(|| check(&ds, &src, Path::new(d), mv))
            .unwrap_or_else(|_| panic!("trial {trial} failed; reproduce with TIERSEED_KILL_SEED={seed_value}"));
    }
    assert!(kills >= trials, "only {kills} kills landed in {trials} trials");
    eprintln!("random kills: {trials} trials, {kills} SIGKILLs, every trial resumed with nothing lost");
}

#[test]
fn a_second_run_on_a_busy_state_directory_is_refused() {
    let base = tempfile::tempdir().unwrap();
    let ds = dataset(base.path(), 8, 8_000);
    let state = base.path().join("state");
    let dst = base.path().join("dst");
    // Hold the state directory's lock as a running job would.
    let src_tier = LocalTier::open(&ds.src).unwrap();
    let dst_tier = LocalTier::create(&dst, crate::small_config()).unwrap();
    let job = tierseed::Seeder::builder(&src_tier, &dst_tier, &state).selection(tierseed::Selection::all()).build().unwrap();
    let (s, d, st) = (ds.src.to_str().unwrap(), dst.to_str().unwrap(), state.to_str().unwrap());
    let o = seed(&["resume", "--from", s, "--to", d, "--state", st], None).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("job in progress"), "{}", text(&o));
    let o = seed(&run_args(s, d, st, false), None).output().unwrap();
    assert!(String::from_utf8_lossy(&o.stderr).contains("job in progress"), "{}", text(&o));
    drop(job);
}
