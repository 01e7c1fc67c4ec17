//! Fault injection: every failing call ends the job with an error (never a
//! panic, never `Completed`), and a resume without faults completes with
//! the invariants intact. Corrupt bytes never reach the target.

use std::collections::BTreeMap;
use std::path::Path;

use tierseed::{
    Error, Fault, FaultKind, FaultyTier, FormatError, IndexedTier, Mode, Outcome, Seeder, Selection, TargetTier, TierError,
};

use crate::{check_target, namespace, small_config, synth_source};

/// Which tier a fault is injected into.
#[derive(Clone, Copy, Debug)]
enum Side {
    Source,
    Target,
}

/// At most this many N values per fault kind (evenly spread over the calls
/// a clean run makes), to keep the suite within CI's time.
const MAX_TRIALS_PER_KIND: u64 = 12;

fn selection() -> Selection {
    Selection::new().prefix("gen-001").prefix("gen-000/home")
}

fn expected(all: &BTreeMap<String, Vec<u8>>) -> BTreeMap<String, Vec<u8>> {
    all.iter()
        .filter(|(p, _)| p.starts_with("gen-001/") || p.starts_with("gen-000/home"))
        .map(|(p, b)| (p.clone(), b.clone()))
        .collect()
}

/// Runs one job with `fault` injected and returns how it ended; then
/// resumes without faults and checks the target.
fn trial(dir: &Path, side: Side, kind: FaultKind, fault: Option<Fault>, mode: Mode) -> (Result<Outcome, Error>, u64) {
    let (src, all) = synth_source(&dir.join("src"), 1, 2, 12, 12_000);
    let dst = IndexedTier::create(dir.join("dst"), small_config()).unwrap();
    let state = dir.join("state");
    let faults: Vec<Fault> = fault.into_iter().collect();
    let (outcome, calls) = {
        let fsrc = FaultyTier::new(&src, if matches!(side, Side::Source) { faults.clone() } else { vec![] });
        let fdst = FaultyTier::new(&dst, if matches!(side, Side::Target) { faults.clone() } else { vec![] });
        let r = Seeder::builder(&fsrc, &fdst, &state).selection(selection()).mode(mode).build().unwrap().run();
        let calls = match side {
            Side::Source => fsrc.calls(kind),
            Side::Target => fdst.calls(kind),
        };
        (r, calls)
    };
    // Whatever happened, a clean resume completes and the invariants hold.
    let done = Seeder::resume(&state, &src, &dst).unwrap().run().unwrap();
    assert!(matches!(done, Outcome::Completed(_)));
    check_target(&dst, &expected(&all));
    assert!(src.verify().unwrap().is_clean(), "seeding modified source data");
    if mode == Mode::Move {
        let ns = namespace(&src);
        assert!(expected(&all).keys().all(|p| !ns.contains_key(p)), "moved files left in the source");
    }
    (outcome, calls)
}

fn sweep(side: Side, kind: FaultKind, corrupt: bool, mode: Mode) -> u64 {
    sweep_faults(side, kind, corrupt, false, mode)
}

/// Like [`sweep`], with faults that strike after the call took effect
/// (the write happened, the caller saw an error).
fn sweep_after_effect(side: Side, kind: FaultKind, mode: Mode) -> u64 {
    sweep_faults(side, kind, false, true, mode)
}

fn sweep_faults(side: Side, kind: FaultKind, corrupt: bool, after_effect: bool, mode: Mode) -> u64 {
    let base = tempfile::tempdir().unwrap();
    // A clean run counts the calls of this kind.
    let (outcome, calls) = trial(&base.path().join("clean"), side, kind, None, mode);
    assert!(matches!(outcome, Ok(Outcome::Completed(_))));
    assert!(calls > 0, "{kind:?} on {side:?} is never called");
    let step = calls.div_ceil(MAX_TRIALS_PER_KIND).max(1);
    let mut injected = 0;
    for n in (1..=calls).step_by(step as usize) {
        let fault = Fault { kind, nth: n, corrupt, after_effect };
        let (outcome, _) = trial(&base.path().join(format!("n{n}")), side, kind, Some(fault), mode);
        match outcome {
            Err(e) => {
                if corrupt {
                    assert!(matches!(e.root(), Error::Format(FormatError::CorruptSegment { .. })), "call {n}: {e}");
                } else {
                    assert!(e.to_string().contains("injected fault"), "call {n}: error lost its cause: {e}");
                }
            }
            Ok(o) => panic!("{kind:?} call {n} of {calls} failed but the job returned {o:?}"),
        }
        injected += 1;
    }
    eprintln!(
        "faults: {kind:?} on {side:?} (corrupt: {corrupt}, after effect: {after_effect}): {injected} injected over {calls} calls, every job failed cleanly and resumed"
    );
    injected
}

#[test]
fn source_metadata_read_faults() {
    assert!(sweep(Side::Source, FaultKind::ReadMetadata, false, Mode::Copy) > 0);
}

#[test]
fn source_segment_read_faults() {
    assert!(sweep(Side::Source, FaultKind::ReadSegments, false, Mode::Copy) > 0);
}

#[test]
fn corrupt_source_bytes_are_never_copied() {
    assert!(sweep(Side::Source, FaultKind::ReadSegments, true, Mode::Copy) > 0);
}

#[test]
fn source_index_lookup_faults() {
    assert!(sweep(Side::Source, FaultKind::Locate, false, Mode::Copy) > 0);
}

#[test]
fn target_lookup_faults() {
    assert!(sweep(Side::Target, FaultKind::Locate, false, Mode::Copy) > 0);
}

#[test]
fn target_write_faults() {
    assert!(sweep(Side::Target, FaultKind::WriteContainer, false, Mode::Copy) > 0);
}

#[test]
fn target_namespace_upsert_faults() {
    assert!(sweep(Side::Target, FaultKind::UpsertFiles, false, Mode::Copy) > 0);
}

#[test]
fn source_namespace_removal_faults_in_move_mode() {
    assert!(sweep(Side::Source, FaultKind::RemoveFiles, false, Mode::Move) > 0);
}

#[test]
fn target_metadata_read_faults_in_copy_and_verify() {
    // Copy checks each indexed target container once; Verify reads every
    // target container's metadata.
    assert!(sweep(Side::Target, FaultKind::ReadMetadata, false, Mode::Copy) > 0);
}

#[test]
fn target_segment_read_faults_in_recipe_checks() {
    assert!(sweep(Side::Target, FaultKind::ReadSegments, false, Mode::Copy) > 0);
}

#[test]
fn source_index_paging_faults_in_build_phf() {
    assert!(sweep(Side::Source, FaultKind::Fingerprints, false, Mode::Copy) > 0);
}

#[test]
fn container_listing_faults_in_select() {
    assert!(sweep(Side::Source, FaultKind::ContainerIds, false, Mode::Copy) > 0);
    assert!(sweep(Side::Target, FaultKind::ContainerIds, false, Mode::Copy) > 0);
}

#[test]
fn namespace_listing_faults_in_select() {
    assert!(sweep(Side::Source, FaultKind::ListFiles, false, Mode::Copy) > 0);
}

#[test]
fn target_writes_that_fail_after_taking_effect() {
    assert!(sweep_after_effect(Side::Target, FaultKind::WriteContainer, Mode::Copy) > 0);
    assert!(sweep_after_effect(Side::Target, FaultKind::UpsertFiles, Mode::Copy) > 0);
}

#[test]
fn source_removals_that_fail_after_taking_effect() {
    assert!(sweep_after_effect(Side::Source, FaultKind::RemoveFiles, Mode::Move) > 0);
}

#[test]
fn a_failed_durable_write_poisons_the_tier_until_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let tier = IndexedTier::create(&path, small_config()).unwrap();
    // Make the next container write fail: its directory is gone.
    let cdir = path.join(tierseed::layout::TIER_CONTAINERS);
    let aside = dir.path().join("aside");
    std::fs::rename(&cdir, &aside).unwrap();
    let fp = tierseed::Fingerprint::of(b"x");
    let err = tier.write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(fp, b"x")]).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::Io { .. })), "{err}");
    std::fs::rename(&aside, &cdir).unwrap();
    // The directory is back, but the handle refuses: the state is unknown.
    let err = tier.write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(fp, b"x")]).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::Poisoned { .. })), "{err}");
    assert!(matches!(tier.upsert_files(&[]).unwrap_err(), Error::Tier(TierError::Poisoned { .. })));
    drop(tier);
    let tier = IndexedTier::open(&path).unwrap();
    tier.write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(fp, b"x")]).unwrap();
    assert!(tier.verify().unwrap().is_clean());
}
