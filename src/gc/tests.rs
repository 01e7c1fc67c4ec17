//! Unit tests of reclamation's pieces: the live/dead split of a
//! container's entries, and the options a run refuses or honours. The
//! crash and resume sweeps are integration tests (`tests/it/gc.rs`).

use super::{GcOptions, mark_live, sort};
use crate::engine::SuspendHandle;
use crate::error::Error;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::Tier;
use crate::tier::indexed::{IndexedTier, TierConfig};

const KEEP: &[u8] = b"the content of the file that stays, long enough to be its own leaf";
const GONE: &[u8] = b"the content of the file that was removed from the namespace";

/// A tier holding `keep` and `gone` in one data container (their trees'
/// recipes in another), then `gone` removed.
fn tier(dir: &std::path::Path) -> IndexedTier {
    let t = IndexedTier::create(dir.join("t"), TierConfig::default()).expect("a fresh tier");
    let mut s = t.ingest_session();
    s.add_reader("keep", 0, &mut &KEEP[..]).expect("ingest keep");
    s.add_reader("gone", 0, &mut &GONE[..]).expect("ingest gone");
    s.finish().expect("one commit");
    t.remove(&["gone"]).expect("remove gone");
    t
}

#[test]
fn sort_keeps_reached_home_entries_and_drops_the_rest() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = tier(dir.path());
    let marked = mark_live(&t, &dir.path().join("scratch")).expect("marking");
    let (keep, gone) = (Fingerprint::of(KEEP), Fingerprint::of(GONE));
    let meta = t
        .container_ids()
        .expect("ids")
        .into_iter()
        .map(|id| t.read_metadata(id).expect("a table"))
        .find(|m| m.segments.iter().any(|e| e.fingerprint == keep))
        .expect("the container of the kept leaf");
    assert!(meta.segments.iter().any(|e| e.fingerprint == gone), "both leaves in one container");
    let ids = [meta.id];

    // Every entry homed here (the count marking took agrees): no lookup.
    let homed = Some(meta.segments.len() as u32);
    let s = sort(&t, &marked.phf, &marked.live, ids[0], homed, &meta.segments).expect("sorted");
    assert!(s.live.iter().any(|e| e.fingerprint == keep), "the kept file's leaf is live");
    assert!(s.dead.iter().any(|d| d.0 == gone), "the removed file's leaf is dead");
    assert!(s.live.iter().all(|e| !s.dead.iter().any(|d| d.0 == e.fingerprint)), "nothing is both");
    assert_eq!(s.live.len() + s.dead.len(), meta.segments.len(), "every entry is one or the other");
    assert_eq!(s.live_bytes, s.live.iter().map(|e| u64::from(e.len)).sum::<u64>());

    // Counts that disagree make it look each entry up, with the same answer;
    // a second copy of a live entry in the table is neither live twice nor
    // dead (its index entry is the first copy's).
    let mut twice = meta.segments.clone();
    let first_live = *s.live.first().expect("a live entry");
    twice.push(first_live);
    let again = sort(&t, &marked.phf, &marked.live, ids[0], homed, &twice).expect("sorted with a duplicate");
    assert_eq!(again.live.len(), s.live.len(), "{again:?}");
    assert_eq!(again.dead.len(), s.dead.len(), "{again:?}");

    // A container the index places none of these in: nothing is its to
    // keep or to drop from the index.
    let elsewhere = sort(&t, &marked.phf, &marked.live, ContainerId(77), None, &meta.segments).expect("sorted elsewhere");
    assert!(elsewhere.live.is_empty() && elsewhere.dead.is_empty(), "{elsewhere:?}");
}

#[test]
fn a_threshold_outside_zero_to_one_is_refused_before_anything_runs() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = tier(dir.path());
    for bad in [-0.1, 1.5, f64::NAN] {
        let err = t.gc(GcOptions::default().threshold(bad), &SuspendHandle::default()).unwrap_err();
        assert!(matches!(err, Error::InvalidConfig(_)), "{bad}: {err}");
    }
    assert!(t.gc_record().expect("the record").is_none(), "a refused run left a record");
}

#[test]
fn a_dry_run_reports_what_it_would_reclaim_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = tier(dir.path());
    let before = t.info().expect("info");
    let dry = t.gc(GcOptions::default().threshold(1.0).dry_run(true), &SuspendHandle::default()).expect("dry run");
    // The data container and the recipes' container each hold a dead entry.
    assert!(dry.dry_run && dry.containers_compacted == 2 && dry.bytes_reclaimed > 0, "{dry:?}");
    assert_eq!(t.info().expect("info"), before, "a dry run changed the tier");
    assert!(t.gc_record().expect("the record").is_none());
    let real = t.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).expect("gc");
    assert_eq!(
        (real.containers_compacted, real.bytes_reclaimed, real.segments_moved),
        (dry.containers_compacted, dry.bytes_reclaimed, dry.segments_moved),
        "the dry run foretold the real one"
    );
    let mut out = Vec::new();
    t.restore("keep", &mut out).expect("keep restores after the move");
    assert_eq!(out, KEEP);
}

#[test]
fn a_suspended_run_keeps_its_cursor_and_the_next_run_finishes_the_same_reclamation() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let t = tier(dir.path());
    let suspend = SuspendHandle::default();
    suspend.suspend();
    let first = t.gc(GcOptions::default().threshold(1.0), &suspend).expect("suspended gc");
    assert!(first.suspended && first.containers_compacted == 0, "{first:?}");
    assert!(t.gc_record().expect("the record").is_some(), "a suspended run keeps its record");
    let rest = t.gc(GcOptions::default().threshold(1.0), &SuspendHandle::default()).expect("resumed gc");
    // The report counts the whole reclamation, the first run's part too.
    assert!(!rest.suspended && rest.containers_compacted == 2, "{rest:?}");
    assert!(t.gc_record().expect("the record").is_none(), "a finished run leaves no record");
}
