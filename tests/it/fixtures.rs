//! Committed format fixtures: golden containers decode; corrupt variants
//! are detected with an error naming the container.
//!
//! Regenerate (only when the format version changes) with
//! `cargo test --release --test it -- --ignored regenerate_fixtures`.

use std::fs;
use std::path::{Path, PathBuf};

use tierseed::{
    Codec, ContainerId, ContainerKind, Error, Fingerprint, FormatError, IndexedTier, TierConfig, decode_container, decode_segment,
};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures/containers")
}

/// The file the golden containers were made from.
fn golden_content() -> Vec<u8> {
    (0..5000u32).map(|i| (i * 31 % 251) as u8).collect()
}

const DATA_ID: u64 = 0;
const META_ID: u64 = 1;

#[test]
#[ignore = "writes fixtures/; run by hand when the format changes"]
fn regenerate_fixtures() {
    let tmp = tempfile::tempdir().unwrap();
    // Version 2 (this build's format), compressed: the golden content is
    // a repeating pattern, so its data segments are stored as zstd frames.
    // The version 1 files were written by the first release and are kept.
    let cfg = TierConfig {
        container_size: 64 << 10,
        chunk_min: 256,
        chunk_avg: 1024,
        chunk_max: 4096,
        fanout: 4,
        compression_level: 3,
    };
    let t = IndexedTier::create(tmp.path().join("t"), cfg).unwrap();
    t.ingest_reader("golden", 0, &golden_content()[..]).unwrap();
    fs::create_dir_all(dir()).unwrap();
    for (name, id) in [("data", DATA_ID), ("meta", META_ID)] {
        let bytes = fs::read(
            tmp.path().join("t").join(tierseed::layout::TIER_CONTAINERS).join(tierseed::layout::container_file(ContainerId(id))),
        )
        .unwrap();
        fs::write(dir().join(format!("{name}-v2.tsc")), &bytes).unwrap();
        let table_end = 48 + 48 * u32::from_le_bytes(bytes[16..20].try_into().unwrap()) as usize;
        for (what, pos) in [("header", 9usize), ("table", 48 + 5), ("data", table_end + 3)] {
            let mut bad = bytes.clone();
            bad[pos] ^= 0x01;
            fs::write(dir().join(format!("{name}-v2.corrupt-{what}.tsc")), &bad).unwrap();
        }
        fs::write(dir().join(format!("{name}-v2.corrupt-truncated.tsc")), &bytes[..bytes.len() - 1]).unwrap();
    }
}

#[test]
fn golden_containers_of_both_versions_decode() {
    for version in ["v1", "v2"] {
        let data = fs::read(dir().join(format!("data-{version}.tsc"))).expect("fixture missing: run regenerate_fixtures");
        let (meta, segs) = decode_container(&data, ContainerId(DATA_ID)).unwrap();
        assert_eq!(meta.kind, ContainerKind::Data);
        assert!(meta.segments.len() >= 2);
        let mut raw = Vec::new();
        for (e, b) in meta.segments.iter().zip(segs) {
            // Version 1 is all raw; version 2's pattern compresses.
            assert_eq!(e.codec == Codec::Zstd, version == "v2", "{version}: {e:?}");
            let r = decode_segment(ContainerId(DATA_ID), e, b).unwrap();
            assert_eq!(Fingerprint::of(&r), e.fingerprint);
            raw.extend(r);
        }
        assert!(raw == golden_content(), "{version}: data container no longer holds the golden file");

        let bytes = fs::read(dir().join(format!("meta-{version}.tsc"))).unwrap();
        let (meta, segs) = decode_container(&bytes, ContainerId(META_ID)).unwrap();
        assert_eq!(meta.kind, ContainerKind::Meta);
        for (e, b) in meta.segments.iter().zip(segs) {
            let r = decode_segment(ContainerId(META_ID), e, b).unwrap();
            assert_eq!(Fingerprint::of(&r), e.fingerprint);
            assert!(r.starts_with(b"TSR"), "meta segment is not a recipe");
        }
    }
}

#[test]
fn every_corrupt_fixture_is_detected_naming_the_container() {
    let mut seen = 0;
    for entry in fs::read_dir(dir()).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.contains(".corrupt-") {
            continue;
        }
        let id = if name.starts_with("data") { DATA_ID } else { META_ID };
        let bytes = fs::read(&path).unwrap();
        let err = decode_container(&bytes, ContainerId(id)).unwrap_err();
        assert!(matches!(err, Error::Format(FormatError::CorruptContainer { .. })), "{name}: {err}");
        assert!(err.to_string().contains(&ContainerId(id).to_string()), "{name}: message does not name the container: {err}");
        seen += 1;
    }
    assert_eq!(seen, 16, "expected 4 corrupt variants of each kind and version");
}

/// A scratch copy of `fixtures/<name>` (tests write to the tiers they open).
pub fn copy_of_fixture(name: &str) -> (tempfile::TempDir, PathBuf) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures").join(name);
    let dir = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp").arg("-a").arg(&fixture).arg(dir.path().join(name)).status().unwrap();
    assert!(status.success());
    let root = dir.path().join(name);
    (dir, root)
}

/// A tier directory and the state directory of a suspended move job, as
/// the first release wrote them (`fixtures/v1/`, made by the code at commit
/// 1ad5358 before any record got a private, versioned counterpart). This
/// build must open them, resume the job to completion and restore every
/// file byte for byte (redb's backward-compatibility pattern).
#[test]
fn a_version_1_tier_and_suspended_job_resume_to_completion() {
    let (_dir, root) = copy_of_fixture("v1");
    let manifest: Vec<(String, u64, String)> = std::fs::read_to_string(root.join("manifest.txt"))
        .unwrap()
        .lines()
        .map(|l| {
            let mut it = l.splitn(3, ' ');
            let (h, n, p) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
            (h.to_string(), n.parse().unwrap(), p.to_string())
        })
        .collect();
    assert_eq!(manifest.len(), 36);

    // The job's status reads the version-1 progress record.
    let before = tierseed::Seeder::status(root.join("state")).unwrap();
    assert_eq!(before.next_phase, tierseed::Phase::Copy);
    assert_eq!(before.counters.files_selected, 24);
    assert_eq!(before.counters.files_kept, 0);

    let src = IndexedTier::open(root.join("src")).unwrap();
    let dst = IndexedTier::open(root.join("dst")).unwrap();
    assert!(src.verify().unwrap().is_clean());
    let mut job = tierseed::Seeder::resume(root.join("state"), &src, &dst).unwrap();
    let tierseed::Outcome::Completed(report) = job.run().unwrap() else { panic!("suspended") };
    assert_eq!(report.counters.files_switched, 24);
    assert_eq!(report.counters.files_removed, 24);
    assert_eq!(report.resumes, 1);
    drop(job);

    let restore = |t: &IndexedTier, path: &str| {
        let mut out = Vec::new();
        t.restore(path, &mut out).unwrap_or_else(|e| panic!("restore {path}: {e}"));
        out
    };
    for (hash, len, path) in &manifest {
        let moved = path.starts_with("gen-001/") || path.starts_with("gen-002/");
        let from = if moved { &dst } else { &src };
        let bytes = restore(from, path);
        assert_eq!(bytes.len() as u64, *len, "{path}");
        assert_eq!(tierseed::Fingerprint::of(&bytes).to_string(), *hash, "{path}");
        assert_eq!(src.entry(path).is_ok(), !moved, "{path} in the source namespace");
    }
    assert!(dst.verify().unwrap().is_clean());
    assert!(src.verify().unwrap().is_clean());
    // The completed job's report record (written by this build) reads back.
    let after = tierseed::Seeder::status(root.join("state")).unwrap();
    assert_eq!(after.next_phase, tierseed::Phase::Done);
}

/// The entries of `fixtures/v2`: every attribute namespace version 2 added
/// (kind, mode with setuid, owner, mtime before 1970 and its nanoseconds),
/// and one entry with the defaults, as a reader ingests.
fn v2_entries() -> Vec<(&'static str, i64, tierseed::FileAttrs, &'static [u8])> {
    use tierseed::{FileAttrs, FileKind};
    let file = |mode, owner, nanos| FileAttrs { kind: FileKind::File, mode: Some(mode), owner: Some(owner), mtime_nanos: nanos };
    vec![
        ("kept/notes.txt", 1_600_000_000, file(0o640, (1000, 1000), 1), b"kept on the source"),
        ("moved/bin/tool", 1_700_000_000, file(0o755, (1000, 1000), 123_456_789), b"#!/bin/sh\necho tool\n"),
        ("moved/bin/su-like", 1_700_000_001, file(0o4711, (0, 0), 0), b"setuid root"),
        ("moved/old", -315_619_200, file(0o644, (1000, 100), 5), b"from 1960"),
        (
            "moved/link",
            1_650_000_000,
            FileAttrs { kind: FileKind::Symlink, mode: None, owner: Some((1000, 1000)), mtime_nanos: 7 },
            b"bin/tool",
        ),
        ("moved/legacy", 42, FileAttrs::default(), b"no attributes recorded"),
    ]
}

#[test]
#[ignore = "writes fixtures/v2; run by hand only to make that fixture again"]
fn regenerate_v2_fixture() {
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/v2");
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("v2");
    let src = IndexedTier::create(root.join("src"), crate::small_config()).unwrap();
    let dst = IndexedTier::create(root.join("dst"), crate::small_config()).unwrap();
    let mut s = src.ingest_session();
    for (path, mtime, attrs, bytes) in v2_entries() {
        s.add_reader_with(path, mtime, attrs, &mut &bytes[..]).unwrap();
    }
    s.finish().unwrap();
    let job = tierseed::Seeder::builder(&src, &dst, root.join("state"))
        .selection(tierseed::Selection::new().prefix("moved"))
        .mode(tierseed::Mode::Move)
        .build()
        .unwrap();
    let job = crate::run_until(job, &root.join("state"), &src, &dst, tierseed::Phase::Verify);
    drop(job);
    drop((src, dst));
    install_fixture(&root, &out);
}

/// Replaces the committed fixture `out` with the one built in `root`,
/// without RocksDB's own logs (neither needed nor stable).
pub fn install_fixture(root: &Path, out: &Path) {
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!(
            "find {} -name 'LOG*' -delete && rm -rf {} && cp -a {} {}",
            root.display(),
            out.display(),
            root.display(),
            out.display()
        ))
        .status()
        .unwrap();
    assert!(status.success());
}

/// A tier and a suspended move job written at namespace version 2 and file
/// chunk version 2 (`fixtures/v2`, made by `regenerate_v2_fixture` when
/// those versions were introduced): this build reads every attribute back
/// from the source's namespace and from the job's file chunks, and the
/// target holds them after the switch.
#[test]
fn a_version_2_tier_and_suspended_job_keep_every_attribute() {
    let (dir, root) = copy_of_fixture("v2");
    let src = IndexedTier::open(root.join("src")).unwrap();
    let dst = IndexedTier::open(root.join("dst")).unwrap();
    let before = tierseed::Seeder::status(root.join("state")).unwrap();
    assert_eq!(before.next_phase, tierseed::Phase::Verify);
    for (path, mtime, attrs, _) in v2_entries() {
        let e = src.entry(path).unwrap();
        assert_eq!((e.mtime, e.attrs), (mtime, attrs), "{path} in the source namespace");
    }
    let mut job = tierseed::Seeder::resume(root.join("state"), &src, &dst).unwrap();
    let report = crate::run_to_end(&mut job);
    assert_eq!(report.counters.files_switched, 5);
    assert_eq!(report.counters.files_removed, 5);
    drop(job);
    for (path, mtime, attrs, bytes) in v2_entries() {
        let moved = path.starts_with("moved/");
        let t = if moved { &dst } else { &src };
        let e = t.entry(path).unwrap();
        assert_eq!((e.mtime, e.attrs), (mtime, attrs), "{path} after the move");
        let mut out = Vec::new();
        t.restore(path, &mut out).unwrap();
        assert_eq!(out, bytes, "{path}");
        assert_eq!(src.entry(path).is_ok(), !moved, "{path} in the source namespace");
    }
    let out = dir.path().join("restored");
    let r = dst.restore_tree("moved", &out, 2, &|_, _| {}).unwrap();
    assert_eq!((r.files, r.symlinks, r.failed), (5, 1, 0));
    assert_eq!(fs::read_link(out.join("moved/link")).unwrap(), Path::new("bin/tool"));
    assert!(dst.verify().unwrap().is_clean());
}
