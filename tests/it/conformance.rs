//! The tier conformance kit (`tierseed::conformance`) run against the
//! tiers tierseed ships: the directory tier, the same wrapped in a
//! `FaultyTier` with no faults (a decorator must forward faithfully), and
//! a deliberately broken tier, which the kit must catch. The S3 tier on
//! Ceph runs it in `object.rs`.

use std::path::PathBuf;

use tierseed::conformance::{self, Harness, Tested};
use tierseed::{
    ContainerId, ContainerMeta, FaultyTier, FileEntry, Fingerprint, IndexEntry, IndexedTier, JobHold, SegmentEntry, SourceTier,
    StoredSegment, TargetTier, Tier, TierId,
};

use crate::small_config;

struct Dir(PathBuf);

impl Harness for Dir {
    fn open(&self) -> tierseed::Result<Box<dyn Tested + '_>> {
        Ok(Box::new(IndexedTier::open(&self.0)?))
    }
    fn open_read_only(&self) -> Option<tierseed::Result<Box<dyn Tested + '_>>> {
        Some(IndexedTier::open_read_only(&self.0).map(|t| Box::new(t) as Box<dyn Tested>))
    }
}

#[test]
fn the_directory_tier_passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let h = Dir(dir.path().join("t"));
    let report = conformance::run(&h);
    report.assert_ok();
    assert_eq!(report.passed.len(), 11, "{report:?}");
    // Twice on the same tier: the kit's content never collides with what
    // an earlier run left.
    conformance::run(&h).assert_ok();
}

struct Faulty(PathBuf);

impl Harness for Faulty {
    fn open(&self) -> tierseed::Result<Box<dyn Tested + '_>> {
        Ok(Box::new(FaultyTier::new(IndexedTier::open(&self.0)?, Vec::new())))
    }
}

#[test]
fn a_faulty_tier_without_faults_passes_the_conformance_kit() {
    let dir = tempfile::tempdir().unwrap();
    IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let report = conformance::run(&Faulty(dir.path().join("t")));
    report.assert_ok();
    assert_eq!(report.passed.len(), 10);
    assert_eq!(report.skipped.len(), 1, "no read-only handle: skipped, and said so");
}

/// A tier that answers `locate` for all but the last fingerprint asked
/// (a short batch answer) and loses namespace upserts: the kit names both.
struct Broken(IndexedTier);

impl Tier for Broken {
    fn tier_id(&self) -> tierseed::Result<TierId> {
        self.0.tier_id()
    }
    fn pin(&self, ids: &[ContainerId], and_after: Option<ContainerId>) -> tierseed::Result<u64> {
        self.0.pin(ids, and_after)
    }
    fn unpin(&self, token: u64) {
        self.0.unpin(token);
    }
    fn hold(&self, hold: &JobHold) -> tierseed::Result<()> {
        self.0.hold(hold)
    }
    fn release_hold(&self, job: &uuid::Uuid) -> tierseed::Result<()> {
        self.0.release_hold(job)
    }
    fn locate(&self, fingerprints: &[Fingerprint]) -> tierseed::Result<Vec<Option<ContainerId>>> {
        let mut got = self.0.locate(fingerprints)?;
        got.pop();
        Ok(got)
    }
    fn list_files(&self, after: Option<&str>, limit: usize) -> tierseed::Result<Vec<FileEntry>> {
        self.0.list_files(after, limit)
    }
    fn file_entries(&self, paths: &[String]) -> tierseed::Result<Vec<Option<FileEntry>>> {
        self.0.file_entries(paths)
    }
    fn container_ids(&self) -> tierseed::Result<Vec<ContainerId>> {
        self.0.container_ids()
    }
    fn read_metadata(&self, id: ContainerId) -> tierseed::Result<ContainerMeta> {
        self.0.read_metadata(id)
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> tierseed::Result<Vec<Vec<u8>>> {
        self.0.read_segments(id, which)
    }
}

impl SourceTier for Broken {
    fn fingerprint_count(&self) -> tierseed::Result<u64> {
        self.0.fingerprint_count()
    }
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> tierseed::Result<Vec<IndexEntry>> {
        self.0.fingerprints(after, limit)
    }
    fn remove_files(&self, entries: &[FileEntry]) -> tierseed::Result<Vec<bool>> {
        self.0.remove_files(entries)
    }
}

impl TargetTier for Broken {
    fn container_target_size(&self) -> u64 {
        self.0.container_target_size()
    }
    fn write_container(&self, kind: tierseed::ContainerKind, segments: &[StoredSegment<'_>]) -> tierseed::Result<ContainerId> {
        self.0.write_container(kind, segments)
    }
    fn upsert_files(&self, _entries: &[FileEntry]) -> tierseed::Result<()> {
        Ok(())
    }
    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> tierseed::Result<u64> {
        self.0.retire_segments(suspects)
    }
}

struct BrokenDir(PathBuf);

impl Harness for BrokenDir {
    fn open(&self) -> tierseed::Result<Box<dyn Tested + '_>> {
        Ok(Box::new(Broken(IndexedTier::open(&self.0)?)))
    }
}

#[test]
fn the_conformance_kit_catches_a_short_batch_answer_and_lost_upserts() {
    let dir = tempfile::tempdir().unwrap();
    IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let report = conformance::run(&BrokenDir(dir.path().join("t")));
    let failed: Vec<&str> = report.failed.iter().map(|f| f.0).collect();
    for name in [
        "write_container_then_locate_in_order",
        "an_indexed_segment_keeps_its_home",
        "upserts_are_idempotent_and_listing_pages_in_path_order",
        "remove_files_removes_only_unchanged_entries",
        "everything_survives_a_reopen",
    ] {
        assert!(failed.contains(&name), "{name} not caught: {report:?}");
    }
    let caught = std::panic::catch_unwind(|| report.assert_ok());
    assert!(caught.is_err(), "assert_ok passed a failing report");
}

/// The bug "a tier's short batch answer was reported three ways, once as a
/// corrupt container (which retires data)": a job whose source answers
/// `locate` short fails with the one contract error, and nothing on the
/// source is retired for it.
#[test]
fn a_short_batch_answer_fails_a_job_as_a_broken_contract_and_retires_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = crate::synth_source(&dir.path().join("src"), 31, 2, 20, 16 << 10);
    let broken = Broken(src);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let err = tierseed::Seeder::builder(&broken, &dst, dir.path().join("job"))
        .selection(tierseed::Selection::all())
        .build()
        .unwrap()
        .run()
        .unwrap_err();
    assert!(matches!(err.root(), tierseed::Error::Tier(tierseed::TierError::Contract { .. })), "{err}");
    assert!(err.to_string().contains("broke its contract"), "{err}");
    let report = broken.0.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.retired, 0, "the short answer retired stored data");
}
