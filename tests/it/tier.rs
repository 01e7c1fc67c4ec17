//! The local-directory tier: ingest, restore, verify, recovery, paths.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use proptest::prelude::*;
use tierseed::{Error, IndexedTier, SourceTier, TargetTier, Tier, TierConfig, TierError};

use crate::{namespace, small_config, stored_segment_entries};

/// Tiny chunks (64..1024 bytes) and fanout 2, so a few KiB already make
/// trees of four or more levels.
fn tiny_config() -> TierConfig {
    TierConfig { container_size: 64 << 10, chunk_min: 64, chunk_avg: 256, chunk_max: 1024, fanout: 2, ..TierConfig::default() }
}

fn file_strategy() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(Vec::new()),
        Just(vec![7u8]),
        Just(vec![1u8; 1024]), // exactly the maximum chunk
        Just(vec![2u8; 2048]), // exactly two maximum chunks
        proptest::collection::vec(any::<u8>(), 0..3000),
        proptest::collection::vec(any::<u8>(), 6000..12000), // >= 3 levels at fanout 2
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn random_files_roundtrip_and_reingest_stores_nothing_new(
        files in proptest::collection::vec(file_strategy(), 1..8),
        dup in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let tier = IndexedTier::create(dir.path().join("t"), tiny_config()).unwrap();
        let mut named: Vec<(String, Vec<u8>)> = files.iter().enumerate().map(|(i, b)| (format!("d/f{i}"), b.clone())).collect();
        if dup {
            // Duplicates: the same bytes under another name, and a file
            // that shares a prefix with another.
            named.push(("dup/copy".into(), files[0].clone()));
            let mut longer = files[0].clone();
            longer.extend_from_slice(b"tail bytes");
            named.push(("dup/longer".into(), longer));
        }
        tier.ingest_many(named.iter().map(|(p, b)| (p.as_str(), 5, b.as_slice()))).unwrap();
        for (p, b) in &named {
            let mut out = Vec::new();
            prop_assert_eq!(tier.restore(p, &mut out).unwrap(), b.len() as u64);
            prop_assert!(out == *b);
        }
        let again = tier.ingest_many(named.iter().map(|(p, b)| (p.as_str(), 5, b.as_slice()))).unwrap();
        prop_assert_eq!(again.segments_new, 0);
        prop_assert_eq!(again.new_bytes, 0);
        prop_assert!(tier.verify().unwrap().is_clean());
    }
}

#[test]
fn three_level_trees_are_built_and_restored() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), tiny_config()).unwrap();
    let mut rng = tierseed::synth::Rng::new(1);
    let mut big = vec![0u8; 64 << 10];
    rng.fill(&mut big);
    tier.ingest_reader("big", 0, &big[..]).unwrap();
    let e = tier.entry("big").unwrap();
    assert!(e.height >= 3, "height {}", e.height);
    let mut out = Vec::new();
    tier.restore("big", &mut out).unwrap();
    assert!(out == big);
    let empty = tier.ingest_reader("empty", 0, &b""[..]).unwrap();
    assert_eq!(empty.files, 1);
    let mut out = Vec::new();
    assert_eq!(tier.restore("empty", &mut out).unwrap(), 0);
}

fn collect_files(root: &Path, base: &Path, out: &mut BTreeMap<String, std::path::PathBuf>) {
    let Ok(rd) = fs::read_dir(root) else { return };
    for e in rd.flatten() {
        let p = e.path();
        let Ok(md) = fs::symlink_metadata(&p) else { continue };
        if md.is_dir() {
            collect_files(&p, base, out);
        } else if (md.is_file() || md.is_symlink())
            && let Some(s) = p.strip_prefix(base).ok().and_then(|r| r.to_str())
        {
            out.insert(s.to_string(), p.clone());
        }
    }
}

#[test]
fn real_files_from_this_machine_roundtrip() {
    // /usr/share/doc exists on every Debian system; fall back to the
    // project's own sources elsewhere.
    let src =
        ["/usr/share/doc", concat!(env!("CARGO_MANIFEST_DIR"), "/src")].into_iter().map(Path::new).find(|p| p.is_dir()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), TierConfig::default()).unwrap();
    let stats = tier.ingest_paths(&[src]).unwrap();
    let mut expected = BTreeMap::new();
    collect_files(src, src.parent().unwrap(), &mut expected);
    assert!(expected.len() > 10, "too few files in {}", src.display());
    assert_eq!(stats.files as usize, expected.len());
    let links = expected.values().filter(|p| p.is_symlink()).count();
    assert_eq!(stats.symlinks as usize, links);
    let ns = namespace(&tier);
    assert_eq!(ns.len(), expected.len());
    let out_dir = dir.path().join("restored");
    for (name, path) in &expected {
        tier.restore_to_dir(name, &out_dir).unwrap();
        if path.is_symlink() {
            // A link restores as the same link, not as what it points to.
            assert_eq!(fs::read_link(out_dir.join(name)).unwrap(), fs::read_link(path).unwrap(), "{name}");
        } else {
            assert!(fs::read(out_dir.join(name)).unwrap() == fs::read(path).unwrap(), "{name} differs");
        }
    }
    let report = tier.verify().unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.files as usize, expected.len());
}

#[test]
fn open_removes_crash_leftovers_and_then_verifies_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    {
        let tier = IndexedTier::create(&path, small_config()).unwrap();
        let mut bytes = vec![0u8; 300_000];
        tierseed::synth::Rng::new(3).fill(&mut bytes);
        tier.ingest_reader("f", 0, &bytes[..]).unwrap();
    }
    let cdir = path.join(tierseed::layout::TIER_CONTAINERS);
    let mut names: Vec<String> = fs::read_dir(&cdir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
    names.sort();
    let last = names.last().unwrap().clone();
    let next_id = u64::from_str_radix(last.trim_end_matches(".tsc"), 16).unwrap() + 1;
    // A temp file (crash during write) and a sealed container that was
    // never indexed (crash between rename and index commit).
    fs::write(cdir.join(format!("{next_id:016x}.tsc.tmp")), b"partial").unwrap();
    let orphan = cdir.join(format!("{next_id:016x}.tsc"));
    fs::copy(cdir.join(&last), &orphan).unwrap();
    let tier = IndexedTier::open(&path).unwrap();
    assert!(!orphan.exists(), "orphan container kept");
    assert!(!cdir.join(format!("{next_id:016x}.tsc.tmp")).exists(), "temp file kept");
    assert!(tier.verify().unwrap().is_clean());
    // The id is reused cleanly by the next write.
    let id = tier
        .write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(tierseed::Fingerprint::of(b"x"), b"x")])
        .unwrap();
    assert_eq!(id.0, next_id);
    assert!(tier.verify().unwrap().is_clean());
}

#[test]
fn verify_reports_a_flipped_bit_naming_the_container() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let tier = IndexedTier::create(&path, small_config()).unwrap();
    let mut bytes = vec![0u8; 100_000];
    tierseed::synth::Rng::new(4).fill(&mut bytes);
    tier.ingest_reader("f", 0, &bytes[..]).unwrap();
    let id = tier.container_ids().unwrap()[0];
    let file = path.join(tierseed::layout::TIER_CONTAINERS).join(tierseed::layout::container_file(id));
    let mut perms = fs::metadata(&file).unwrap().permissions();
    #[allow(clippy::permissions_set_readonly_false)]
    perms.set_readonly(false);
    fs::set_permissions(&file, perms).unwrap();
    let mut b = fs::read(&file).unwrap();
    let n = b.len();
    b[n - 10] ^= 4;
    fs::write(&file, &b).unwrap();
    let report = tier.verify().unwrap();
    assert!(!report.is_clean());
    assert!(report.problems.iter().any(|p| p.contains(&id.to_string())), "{:?}", report.problems);
    // The scrub retired the rotten copy: restoring the file now fails
    // naming the file and the segment it lacks; it never returns wrong
    // bytes.
    let mut out = Vec::new();
    let err = tier.restore("f", &mut out).unwrap_err();
    assert!(matches!(&err, Error::Tier(TierError::MissingSegment { path, .. }) if path == "f"), "{err}");
}

#[test]
fn sealed_containers_are_read_only() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    tier.ingest_reader("f", 0, &b"some bytes"[..]).unwrap();
    for id in tier.container_ids().unwrap() {
        let md =
            fs::metadata(dir.path().join("t").join(tierseed::layout::TIER_CONTAINERS).join(tierseed::layout::container_file(id)))
                .unwrap();
        assert!(md.permissions().readonly());
    }
}

#[test]
fn hostile_paths_are_rejected_at_ingest() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let long = "a/".repeat(2048) + "b";
    for p in ["/etc/passwd", "../escape", "a/../../b", "a\0b", "", "a//b", "./a", long.as_str()] {
        let err = tier.ingest_reader(p, 0, &b"x"[..]).unwrap_err();
        assert!(matches!(err, Error::Tier(TierError::InvalidPath { .. })), "{p:?}: {err}");
    }
    assert!(namespace(&tier).is_empty(), "a rejected file reached the namespace");
    let bad = tierseed::FileEntry {
        path: "../x".into(),
        size: 0,
        mtime: 0,
        root: tierseed::Fingerprint([0; 32]),
        height: 1,
        attrs: tierseed::FileAttrs::default(),
    };
    assert!(tier.upsert_files(&[bad]).is_err());
}

#[test]
fn restore_cannot_escape_its_root_through_a_symlink() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    tier.ingest_reader("sub/file", 0, &b"payload"[..]).unwrap();
    let out = dir.path().join("out");
    let elsewhere = dir.path().join("elsewhere");
    fs::create_dir_all(&out).unwrap();
    fs::create_dir_all(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, out.join("sub")).unwrap();
    let err = tier.restore_to_dir("sub/file", &out).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::InvalidPath { .. })), "{err}");
    assert!(!elsewhere.join("file").exists());
}

#[test]
fn a_second_open_of_the_same_tier_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let _t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let err = IndexedTier::open(dir.path().join("t")).unwrap_err();
    assert!(matches!(err, Error::Tier(TierError::Locked { .. })), "{err}");
    assert!(err.to_string().contains(tierseed::layout::TIER_LOCK));
}

#[test]
fn open_of_a_non_tier_and_create_over_a_tier_fail() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(IndexedTier::open(dir.path()).unwrap_err(), Error::Tier(TierError::NotATier { .. })));
    drop(IndexedTier::create(dir.path().join("t"), small_config()).unwrap());
    assert!(matches!(
        IndexedTier::create(dir.path().join("t"), small_config()).unwrap_err(),
        Error::Tier(TierError::NotATier { .. })
    ));
    let bad = TierConfig { chunk_min: 10, ..TierConfig::default() };
    assert!(matches!(IndexedTier::create(dir.path().join("u"), bad).unwrap_err(), Error::InvalidConfig(_)));
}

#[test]
fn write_container_keeps_existing_mappings() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let fp = tierseed::Fingerprint::of(b"same");
    let a = tier.write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(fp, b"same")]).unwrap();
    let _b = tier.write_container(tierseed::ContainerKind::Data, &[tierseed::StoredSegment::raw(fp, b"same")]).unwrap();
    assert_eq!(tier.locate(&[fp]).unwrap(), vec![Some(a)]);
    assert_eq!(tier.fingerprint_count().unwrap(), 1);
    assert_eq!(stored_segment_entries(&tier), 2);
}

/// Regression: a lock held for an instant (as by a child process between
/// `fork` and `exec`, which inherits every descriptor) made a reopen right
/// after a close fail with `Locked`; the parallel test suite hit it while
/// the crash tests spawned `seed`.
#[test]
fn lock_held_briefly_by_a_forked_child_is_waited_for() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    drop(IndexedTier::create(&path, small_config()).unwrap());
    // Another description of the lock file, held for 100 ms.
    let holder = fs::File::options().write(true).open(path.join(tierseed::layout::TIER_LOCK)).unwrap();
    holder.try_lock().unwrap();
    let t = std::thread::spawn(move || {
        std::thread::sleep(std::time::Duration::from_millis(100));
        drop(holder);
    });
    IndexedTier::open(&path).expect("a briefly held lock must be waited for");
    t.join().unwrap();
}

/// Regression: a crash inside `IndexedTier::create` used to leave `db/`
/// without a tier record, a directory neither `open` nor `create` would
/// take. Creation now happens in `.<name>.creating` and is renamed into
/// place; a leftover of a crashed create is cleared by the next create.
#[test]
fn tier_create_interrupted_before_rename_leaves_no_half_tier() {
    let dir = tempfile::tempdir().unwrap();
    let leftover = dir.path().join(".t.creating");
    fs::create_dir_all(leftover.join(tierseed::layout::TIER_DB)).unwrap();
    fs::write(leftover.join("db/garbage"), b"half-made").unwrap();
    // Nothing at the final path: no tier, and the error says so.
    assert!(matches!(IndexedTier::open(dir.path().join("t")).unwrap_err(), Error::Tier(TierError::NotATier { .. })));
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    assert!(!leftover.exists(), "the leftover of a crashed create was kept");
    assert!(t.verify().unwrap().is_clean());
}

/// The bug "two processes creating one tier left it unusable": both built
/// it in the same fixed temp directory, each deleting the other's half,
/// and `db/MANIFEST-000001` went missing. Creation is now serialized: one
/// wins, the others are refused and can open what it made.
#[test]
fn two_creators_of_one_tier_leave_one_whole_tier() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let results: Vec<_> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..6).map(|_| s.spawn(|| IndexedTier::create(&path, small_config()).map(drop))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 1, "{results:?}");
    for r in results.iter().filter_map(|r| r.as_ref().err()) {
        assert!(matches!(r, Error::Tier(TierError::NotATier { reason, .. }) if reason.contains("already holds a tier")), "{r}");
    }
    let t = IndexedTier::open(&path).unwrap();
    t.ingest_reader("f", 0, &b"after the race"[..]).unwrap();
    assert!(t.verify().unwrap().is_clean());

    // The same with real processes: two `seed ingest --tier NEW` at once.
    let input = dir.path().join("input");
    fs::create_dir_all(&input).unwrap();
    for i in 0..50 {
        fs::write(input.join(format!("f{i}")), format!("file {i}").repeat(100)).unwrap();
    }
    for round in 0..4 {
        let tier = dir.path().join(format!("new{round}"));
        let spawn = || {
            std::process::Command::new(env!("CARGO_BIN_EXE_seed"))
                .env("RUST_LOG", "error")
                .args(["ingest", "--tier"])
                .arg(&tier)
                .arg(&input)
                .output()
        };
        let (a, b) = std::thread::scope(|s| {
            let a = s.spawn(spawn);
            let b = s.spawn(spawn);
            (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
        });
        let ok = [&a, &b].iter().filter(|o| o.status.success()).count();
        assert!(ok >= 1, "round {round}: {} / {}", String::from_utf8_lossy(&a.stderr), String::from_utf8_lossy(&b.stderr));
        for o in [&a, &b] {
            if !o.status.success() {
                assert!(String::from_utf8_lossy(&o.stderr).contains("locked"), "{}", String::from_utf8_lossy(&o.stderr));
            }
        }
        let t = IndexedTier::open(&tier).unwrap();
        assert!(t.verify().unwrap().is_clean());
        assert_eq!(crate::namespace(&t).len(), 50, "round {round}");
    }
}

/// A missing file is named with the tier it was looked up in (its
/// location, typed), and so is a file a job's source lacks.
#[test]
fn a_missing_file_names_the_tier_it_was_looked_up_in() {
    let dir = tempfile::tempdir().unwrap();
    let at = dir.path().join("t");
    let t = IndexedTier::create(&at, small_config()).unwrap();
    let err = t.restore("absent", &mut Vec::new()).unwrap_err();
    let want = tierseed::TierName::At(at.display().to_string());
    assert!(matches!(&err, Error::Tier(TierError::FileNotFound { path, tier }) if path == "absent" && *tier == want), "{err}");
    assert!(err.to_string().contains(&at.display().to_string()), "{err}");
}
