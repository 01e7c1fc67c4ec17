//! tierseed's integration tests: one binary, everything through the public
//! API (and, for crash tests, through the real `seed` process).

// Tests by need: the library's tests build with `test-util` alone; the
// modules that run the `seed` binary need `cli`, and those that crash or
// hold it at a named point (or read the durability trace) need
// `crash-points` too. The README's command (`--all-features`) runs all.
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod azure;
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod bucket;
#[cfg(feature = "cli")]
mod cli;
mod conformance;
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod crash;
mod defects;
mod encrypt;
mod engine;
mod faults;
mod fixtures;
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod found;
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod gc;
mod multi;
#[cfg(all(feature = "cli", feature = "crash-points"))]
mod object;
#[cfg(feature = "cli")]
mod phf;
mod reference;
mod rot;
#[cfg(feature = "cli")]
mod scale;
#[cfg(feature = "cli")]
mod tier;

use std::collections::BTreeMap;
use std::path::Path;

use tierseed::synth::SynthTree;
use tierseed::{FileEntry, IndexedTier, SourceTier, Tier, TierConfig};

/// Small containers (64 KiB) and chunks, so small datasets span dozens of
/// containers and several tree levels.
pub fn small_config() -> TierConfig {
    TierConfig {
        container_size: 64 << 10,
        chunk_min: 1 << 10,
        chunk_avg: 4 << 10,
        chunk_max: 16 << 10,
        fanout: 8,
        compression_level: 3,
    }
}

/// A source tier holding `generations` backup generations of a synthetic
/// tree; returns the tier and every file's bytes by path.
pub fn synth_source(
    dir: &Path,
    seed: u64,
    generations: usize,
    files: usize,
    avg: usize,
) -> (IndexedTier, BTreeMap<String, Vec<u8>>) {
    synth_source_changing(dir, seed, generations, files, avg, 5.0)
}

/// Like [`synth_source`], with `change_percent` of the files changing per
/// generation. A high rate puts much new data after each generation's meta
/// container, which is what exercises a Copy commit made while recipe
/// segments still wait in the meta packer.
pub fn synth_source_changing(
    dir: &Path,
    seed: u64,
    generations: usize,
    files: usize,
    avg: usize,
    change_percent: f64,
) -> (IndexedTier, BTreeMap<String, Vec<u8>>) {
    let tier = IndexedTier::create(dir, small_config()).unwrap();
    let mut tree = SynthTree::new(seed, files, avg, change_percent);
    let mut all = BTreeMap::new();
    for _ in 0..generations {
        let g = tree.next_generation();
        tier.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice()))).unwrap();
        all.extend(g.into_iter().map(|f| (f.path, f.bytes)));
    }
    (tier, all)
}

/// Every namespace entry of a tier, by path.
pub fn namespace(t: &dyn Tier) -> BTreeMap<String, FileEntry> {
    t.all_files().unwrap().into_iter().map(|e| (e.path.clone(), e)).collect()
}

/// Total segment-table entries over all containers of a tier: equal to the
/// index's entry count exactly when no segment is stored twice.
pub fn stored_segment_entries(t: &dyn SourceTier) -> u64 {
    t.container_ids().unwrap().into_iter().map(|c| t.read_metadata(c).unwrap().segments.len() as u64).sum()
}

/// Every index entry of a tier.
pub fn index_fingerprints(t: &dyn SourceTier) -> Vec<tierseed::Fingerprint> {
    let mut out = Vec::new();
    t.for_each_index_page(10_000, &mut |page| {
        out.extend(page.iter().map(|p| p.0));
        Ok(())
    })
    .unwrap();
    out
}

/// Runs a new job one commit point at a time until the next phase is
/// `phase`; returns the job, suspended there.
pub fn run_until<'a>(
    mut job: tierseed::Seeder<'a>,
    state: &Path,
    src: &'a IndexedTier,
    dst: &'a IndexedTier,
    phase: tierseed::Phase,
) -> tierseed::Seeder<'a> {
    loop {
        job.suspend_handle().suspend();
        match job.run().unwrap() {
            tierseed::Outcome::Suspended(p) if p.next_phase == phase => return job,
            tierseed::Outcome::Suspended(_) => {}
            tierseed::Outcome::Completed(_) => panic!("completed before {phase}"),
        }
        drop(job);
        job = tierseed::Seeder::resume(state, src, dst).unwrap();
    }
}

/// The invariants every seeding test checks on the target:
/// each expected file restores byte for byte; no segment is stored twice.
pub fn check_target(dst: &IndexedTier, expected: &BTreeMap<String, Vec<u8>>) {
    let ns = namespace(dst);
    assert_eq!(ns.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>(), "target namespace differs");
    for (path, bytes) in expected {
        let mut out = Vec::new();
        dst.restore(path, &mut out).unwrap_or_else(|e| panic!("restore {path}: {e}"));
        assert!(out == *bytes, "{path}: restored bytes differ");
    }
    assert_eq!(stored_segment_entries(dst), index_fingerprints(dst).len() as u64, "a segment is stored twice on the target");
    let report = dst.verify().unwrap();
    assert!(report.is_clean(), "target verify: {:?}", report.problems);
}

/// Runs a job to completion; a suspension is a test failure.
pub fn run_to_end(job: &mut tierseed::Seeder<'_>) -> tierseed::Report {
    match job.run().unwrap() {
        tierseed::Outcome::Completed(r) => r,
        tierseed::Outcome::Suspended(p) => panic!("suspended unexpectedly at {p:?}"),
    }
}

/// The files of `all` under any of `prefixes`.
pub fn prefixed(all: &BTreeMap<String, Vec<u8>>, prefixes: &[&str]) -> BTreeMap<String, Vec<u8>> {
    all.iter().filter(|(p, _)| prefixes.iter().any(|x| p.starts_with(x))).map(|(p, b)| (p.clone(), b.clone())).collect()
}

/// A `seed` process stopped at a named point of its commit protocol
/// (`TIERSEED_HOLD_AT`), still holding its locks: tests act on a job that
/// is known to be mid-phase instead of racing a throttled one.
pub struct HeldJob {
    /// The process; `release` lets it go on, or the test kills it.
    pub child: std::process::Child,
    /// Its stderr lines after the hold began.
    pub lines: std::io::Lines<std::io::BufReader<std::process::ChildStderr>>,
    release: tempfile::TempDir,
}

impl HeldJob {
    /// Spawns `cmd` (stderr piped here) and returns once it is held at the
    /// `n`-th arrival at `point`; panics with its stderr if it ends first.
    pub fn spawn(mut cmd: std::process::Command, point: &str, n: u64) -> HeldJob {
        use std::io::BufRead;
        let release = tempfile::tempdir().unwrap();
        cmd.env("TIERSEED_HOLD_AT", format!("{point}:{n}"))
            .env("TIERSEED_HOLD_UNTIL", release.path().join("go"))
            .env_remove("TIERSEED_CRASH_AT")
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut lines = std::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let mut seen = Vec::new();
        for line in lines.by_ref() {
            let line = line.unwrap();
            if line.starts_with(&format!("tierseed: held at {point} ")) {
                return HeldJob { child, lines, release };
            }
            seen.push(line);
        }
        let status = child.wait().unwrap();
        panic!("the job ended ({status}) before reaching {point}:{n}; its stderr:\n{}", seen.join("\n"));
    }

    /// Lets the job go on from the point it is held at.
    pub fn release(&self) {
        std::fs::write(self.release.path().join("go"), b"").unwrap();
    }

    /// Releases the job and waits for it to end; returns its exit status
    /// and the rest of its stderr.
    pub fn finish(mut self) -> (std::process::ExitStatus, Vec<String>) {
        self.release();
        let lines = self.lines;
        let drain = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
        let status = self.child.wait().unwrap();
        (status, drain.join().unwrap())
    }

    /// SIGKILLs the held job (it is still at its point).
    pub fn kill(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
