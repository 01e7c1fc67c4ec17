//! The appliance-scale machinery (issue 19): the snapshot's key file that
//! BuildPhf writes and Mark merges its leaves with, the spools, and the
//! fallbacks when the key file is gone or damaged.

use std::fs;
use std::path::{Path, PathBuf};

use tierseed::{
    ContainerKind, Error, FileEntry, Fingerprint, IndexedTier, JobError, Phase, Seeder, Selection, StoredSegment, TargetTier,
    Tier, TierError,
};

use crate::{check_target, namespace, run_to_end, run_until, small_config, synth_source};

/// One 16-byte, height-0 file per fingerprint (the root is the data
/// itself), named by `name(i)`.
fn leaf_entries(fps: &[tierseed::Fingerprint], name: impl Fn(usize) -> String) -> Vec<FileEntry> {
    fps.iter()
        .enumerate()
        .map(|(i, f)| FileEntry { path: name(i), size: 16, mtime: 0, root: *f, height: 0, attrs: tierseed::FileAttrs::default() })
        .collect()
}

/// `n` distinct 16-byte leaves tagged `tag`, written to data containers
/// of `per` segments each on `t`; returns their fingerprints.
fn write_tiny_leaves(t: &IndexedTier, n: u64, tag: &[u8; 8], per: usize) -> Vec<Fingerprint> {
    let leaves: Vec<[u8; 16]> = (0..n)
        .map(|k| {
            let mut b = [0u8; 16];
            b[..8].copy_from_slice(&k.to_le_bytes());
            b[8..].copy_from_slice(tag);
            b
        })
        .collect();
    let fps: Vec<Fingerprint> = leaves.iter().map(|b| Fingerprint::of(b)).collect();
    for (chunk, fchunk) in leaves.chunks(per).zip(fps.chunks(per)) {
        let stored: Vec<StoredSegment<'_>> = fchunk.iter().zip(chunk).map(|(f, b)| StoredSegment::raw(*f, b)).collect();
        t.write_container(ContainerKind::Data, &stored).unwrap();
    }
    fps
}

/// A source with `extra` files of ten distinct leaves each, plus file
/// `"b"` whose recipe lists two real leaves around one the source never
/// stored (so its index lacks it). Returns the tier and the missing
/// fingerprint.
fn source_missing_a_leaf(dir: &Path, extra: usize) -> (IndexedTier, Fingerprint) {
    let t = IndexedTier::create(dir, small_config()).unwrap();
    let fps = write_tiny_leaves(&t, extra as u64 * 10, b"missleaf", 4096);
    let missing = Fingerprint::of(b"a leaf this source never stored");
    let mut recipes: Vec<(String, Vec<u8>)> = fps
        .chunks(10)
        .enumerate()
        .map(|(i, g)| {
            let children: Vec<(Fingerprint, u64)> = g.iter().map(|f| (*f, 16)).collect();
            (format!("f{i:06}"), tierseed::bench_api::encode_recipe(1, &children))
        })
        .collect();
    recipes.push(("b".into(), tierseed::bench_api::encode_recipe(1, &[(fps[3], 16), (missing, 16), (fps[4], 16)])));
    let stored: Vec<StoredSegment<'_>> = recipes.iter().map(|(_, r)| StoredSegment::raw(Fingerprint::of(r), r)).collect();
    t.write_container(ContainerKind::Meta, &stored).unwrap();
    let entries: Vec<FileEntry> = recipes
        .iter()
        .map(|(p, r)| FileEntry {
            path: p.clone(),
            size: 160,
            mtime: 0,
            root: Fingerprint::of(r),
            height: 1,
            attrs: tierseed::FileAttrs::default(),
        })
        .collect();
    t.upsert_files(&entries).unwrap();
    (t, missing)
}

/// Every reach of a leaf is confirmed, by the merge with the key file
/// (the whole namespace selected) and by lookups (one file of thousands):
/// a leaf the source index lacks fails Mark naming the file, whatever
/// slot the PHF gives it, and nothing reaches the target.
#[test]
fn mark_names_a_leaf_the_source_index_lacks_by_merge_and_by_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let (src, missing) = source_missing_a_leaf(&dir.path().join("src"), 2_000);
    for (name, sel) in [("merge", Selection::all()), ("lookup", Selection::new().path("b"))] {
        let dst = IndexedTier::create(dir.path().join(format!("dst-{name}")), small_config()).unwrap();
        let state = dir.path().join(format!("state-{name}"));
        let mut job = Seeder::builder(&src, &dst, &state).selection(sel).build().unwrap();
        let err = job.run().unwrap_err();
        assert!(
            matches!(err.root(), Error::Tier(TierError::MissingSegment { path, fingerprint, .. }) if path == "b" && *fingerprint == missing),
            "{name}: {err}"
        );
        let status = Seeder::status(&state).unwrap();
        assert_eq!(status.next_phase, Phase::Mark, "{name}: Mark must not be recorded as done");
        assert!(dst.container_ids().unwrap().is_empty(), "{name}: something was copied");
        assert!(namespace(&dst).is_empty(), "{name}: something was switched");
        assert!(scratch_of(&state).iter().all(|p| !p.is_dir()), "{name}: a spool outlived Mark: {:?}", scratch_of(&state));
    }
}

fn scratch_of(state: &Path) -> Vec<PathBuf> {
    fs::read_dir(state)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| tierseed::layout::is_scratch(&p.file_name().unwrap().to_string_lossy()))
        .collect()
}

/// The key file is an accelerator, never a source of truth: one that is
/// gone, truncated or rotten when a resumed job reaches Mark is refused,
/// and Mark looks its leaves up instead; the job completes and the key
/// file is gone once Mark is done.
#[test]
fn a_key_file_lost_or_rotten_before_mark_is_refused_and_mark_looks_leaves_up() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 61, 2, 20, 20_000);
    type Damage = fn(&Path);
    let damages: [(&str, Damage); 3] = [
        ("removed", |p| fs::remove_file(p).unwrap()),
        ("truncated", |p| {
            let b = fs::read(p).unwrap();
            fs::write(p, &b[..b.len() - 16]).unwrap();
        }),
        ("one bit flipped", |p| {
            let mut b = fs::read(p).unwrap();
            b[5] ^= 0x10;
            fs::write(p, &b).unwrap();
        }),
    ];
    for (name, damage) in damages {
        let state = dir.path().join(format!("state-{name}"));
        let s = &src;
        let d = IndexedTier::create(dir.path().join(format!("dst-{name}")), small_config()).unwrap();
        let job = Seeder::builder(s, &d, &state).selection(Selection::all()).build().unwrap();
        drop(run_until(job, &state, s, &d, Phase::Mark));
        let keys: Vec<PathBuf> = scratch_of(&state).into_iter().filter(|p| p.is_file()).collect();
        assert_eq!(keys.len(), 1, "{name}: BuildPhf leaves one key file: {keys:?}");
        damage(&keys[0]);
        run_to_end(&mut Seeder::resume(&state, s, &d).unwrap());
        check_target(&d, &all);
        assert!(scratch_of(&state).is_empty(), "{name}: scratch left after the job: {:?}", scratch_of(&state));
    }
}

/// Abandoning a job between BuildPhf and Mark removes its key file too.
#[test]
fn abandoning_a_job_removes_its_key_file() {
    let dir = tempfile::tempdir().unwrap();
    let (src, _) = synth_source(&dir.path().join("src"), 62, 1, 10, 8_000);
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let state = dir.path().join("state");
    let job = Seeder::builder(&src, &dst, &state).selection(Selection::all()).build().unwrap();
    drop(run_until(job, &state, &src, &dst, Phase::Mark));
    assert_eq!(scratch_of(&state).len(), 1);
    Seeder::abandon(&state).unwrap();
    assert!(!state.exists() || scratch_of(&state).is_empty(), "the key file outlived its job");
}

/// The fingerprint of the first segment of the first data container of
/// `t`: a leaf.
fn a_leaf(t: &IndexedTier) -> Fingerprint {
    for c in t.container_ids().unwrap() {
        let meta = tierseed::Tier::read_metadata(t, c).unwrap();
        if meta.kind == ContainerKind::Data {
            return meta.segments[0].fingerprint;
        }
    }
    panic!("no data container");
}

/// Verify places the leaves it reaches by one merge with the target's
/// index when the job is a large part of it, and by lookups when it is a
/// small part: either way, a leaf the target's index lost fails Verify
/// naming the file, and a resume against the sound index completes.
#[test]
fn verify_finds_a_leaf_the_target_index_lost_by_merge_and_by_lookup() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 63, 1, 4, 6_000);
    let leaf = a_leaf(&src);
    for (name, prefill) in [("merge", false), ("lookup", true)] {
        let d = IndexedTier::create(dir.path().join(format!("dst-{name}")), small_config()).unwrap();
        if prefill {
            // Thousands of unrelated segments on the target first, so the
            // job's leaves are far fewer than a 128th of its index.
            let (other, _) = synth_source(&dir.path().join("other"), 64, 1, 200, 40_000);
            let st = dir.path().join("state-prefill");
            run_to_end(&mut Seeder::builder(&other, &d, &st).selection(Selection::all()).build().unwrap());
        }
        let before = namespace(&d);
        let state = dir.path().join(format!("state-{name}"));
        let job = Seeder::builder(&src, &d, &state).selection(Selection::all()).build().unwrap();
        drop(run_until(job, &state, &src, &d, Phase::Verify));
        let lying = tierseed::FaultyTier::new(&d, vec![]).unindex_segment(leaf);
        let err = match Seeder::resume(&state, &src, &lying).unwrap().run() {
            Err(e) => e,
            Ok(o) => panic!("{name}: Verify passed a target whose index lost a leaf: {o:?}"),
        };
        // Which way the leaves were placed: index pages read, or none.
        let paged = lying.calls(tierseed::FaultKind::Fingerprints) > 0;
        assert_eq!(paged, !prefill, "{name}: the leaves were placed the other way");
        let msg = err.to_string();
        assert!(matches!(err.root(), Error::Job(JobError::VerifyFailed { .. })), "{name}: {msg}");
        assert!(msg.contains(&leaf.to_string()) && msg.contains("not in the target's index"), "{name}: {msg}");
        assert!(namespace(&d) == before, "{name}: files were switched");
        run_to_end(&mut Seeder::resume(&state, &src, &d).unwrap());
        for (p, bytes) in &all {
            let mut out = Vec::new();
            d.restore(p, &mut out).unwrap();
            assert!(out == *bytes, "{name}: {p} differs");
        }
    }
}

/// Files walk in windows of 64K and are named by their index, read back
/// from the job's context: a missing leaf in a file past the first window
/// is named correctly, and a sound job over that many files completes.
#[test]
fn files_past_the_first_window_are_walked_and_named() {
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    // 70,000 one-segment files (height 0: the root is the data itself).
    let n = 70_000u64;
    let fps = write_tiny_leaves(&t, n, b"windowed", 8192);
    let mut entries: Vec<FileEntry> = leaf_entries(&fps, |i| format!("f{i:06}"));
    t.upsert_files(&entries).unwrap();
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    let report = run_to_end(&mut Seeder::builder(&t, &dst, dir.path().join("ok")).selection(Selection::all()).build().unwrap());
    assert_eq!(report.counters.files_selected, n);
    assert_eq!(namespace(&dst).len() as u64, n);
    // Now one more file, last in path order, whose data the source lacks.
    let missing = Fingerprint::of(b"never stored, past the first window");
    entries = vec![FileEntry {
        path: "z-last".into(),
        size: 16,
        mtime: 0,
        root: missing,
        height: 0,
        attrs: tierseed::FileAttrs::default(),
    }];
    t.upsert_files(&entries).unwrap();
    let dst2 = IndexedTier::create(dir.path().join("dst2"), small_config()).unwrap();
    let err = Seeder::builder(&t, &dst2, dir.path().join("bad")).selection(Selection::all()).build().unwrap().run().unwrap_err();
    assert!(
        matches!(err.root(), Error::Tier(TierError::MissingSegment { path, fingerprint, .. }) if path == "z-last" && *fingerprint == missing),
        "{err}"
    );
}

/// Every spool spills to its bucket files when `TIERSEED_SPOOL_RECORDS`
/// (test builds only) makes memory hold eight records: the walk's nodes
/// and recipes, Mark's leaves, Verify's reached and placed leaves. A move
/// run by `seed` that way completes, the target verifies and every file
/// restores, and no scratch is left in the state directory.
#[test]
fn a_move_whose_every_spool_spills_to_disk_completes() {
    let dir = tempfile::tempdir().unwrap();
    let (src, all) = synth_source(&dir.path().join("src"), 65, 2, 30, 12_000);
    let src_dir = src.dir().to_path_buf();
    drop(src);
    let (dst, state) = (dir.path().join("dst"), dir.path().join("state"));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_seed"))
        .env("RUST_LOG", "error")
        .env_remove("TIERSEED_CRASH_AT")
        .env("TIERSEED_SPOOL_RECORDS", "8")
        .args(["run", "--all", "--move", "--threads", "1"])
        .arg("--from")
        .arg(&src_dir)
        .arg("--to")
        .arg(&dst)
        .arg("--state")
        .arg(&state)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let d = IndexedTier::open(&dst).unwrap();
    check_target(&d, &all);
    assert!(namespace(&IndexedTier::open(&src_dir).unwrap()).is_empty(), "moved files left in the source");
    assert!(scratch_of(&state).is_empty(), "scratch left: {:?}", scratch_of(&state));
}

/// gc streams the namespace a window at a time and confirms the leaves
/// it reaches by one merge with its key file (and the sweep knows which
/// entries the index places in a container from the counts of that scan):
/// over 70,000 one-leaf files in containers of 8,192, half of them
/// removed, it reclaims exactly the removed half, the rest verifies, and
/// no scratch is left in the tier's directory.
#[test]
fn gc_over_more_files_than_a_window_reclaims_exactly_the_removed_half() {
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let n = 70_000u64;
    let fps = write_tiny_leaves(&t, n, b"gcwindow", 8192);
    let entries: Vec<FileEntry> = leaf_entries(&fps, |i| format!("f{i:06}"));
    t.upsert_files(&entries).unwrap();
    // The first 40,960 files: exactly the first five containers.
    let gone: Vec<String> = (0..40_960).map(|i| format!("f{i:06}")).collect();
    let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
    assert_eq!(t.remove(&gone).unwrap().len(), gone.len());
    let before = t.container_ids().unwrap();
    let report = t.gc(tierseed::GcOptions::default(), &tierseed::SuspendHandle::default()).unwrap();
    assert_eq!(report.containers_deleted, 5, "{report:?}");
    assert_eq!(report.containers_compacted, 0, "{report:?}");
    assert_eq!(report.bytes_reclaimed, 40_960 * 16, "{report:?}");
    let after = t.container_ids().unwrap();
    assert_eq!(after, before[5..].to_vec());
    assert_eq!(t.info().unwrap().segments, n - 40_960);
    let v = t.verify().unwrap();
    assert!(v.is_clean(), "{v:?}");
    let leftover: Vec<_> = fs::read_dir(t.dir()).unwrap().filter_map(Result::ok).map(|e| e.file_name()).collect();
    assert!(!leftover.iter().any(|n| n == "gc-scratch"), "gc left its scratch: {leftover:?}");
    // One more run finds nothing.
    let again = t.gc(tierseed::GcOptions::default(), &tierseed::SuspendHandle::default()).unwrap();
    assert_eq!(again.bytes_reclaimed, 0);
}

/// A tree that reaches a leaf the tier's index lacks makes gc fail before
/// it deletes anything, naming the file, when the leaf is confirmed by the
/// merge with the key file (2,000 files) as when it was looked up.
#[test]
fn gc_refuses_a_tier_whose_tree_reaches_a_leaf_its_index_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let (t, missing) = source_missing_a_leaf(&dir.path().join("t"), 2_000);
    t.remove(&["f000000", "f000001"]).unwrap();
    let before = t.container_ids().unwrap();
    let err = t.gc(tierseed::GcOptions::default().threshold(1.0), &tierseed::SuspendHandle::default()).unwrap_err();
    assert!(
        matches!(err.root(), Error::Tier(TierError::MissingSegment { path, fingerprint, .. }) if path == "b" && *fingerprint == missing),
        "{err}"
    );
    assert_eq!(t.container_ids().unwrap(), before, "gc deleted something from a tier it could not mark");
}

/// Dead containers are dropped a group at a time (one synced batch with
/// a deletion note each): killed after that batch and before any file is
/// deleted, the next open finishes every deletion of the group and the
/// live files restore.
#[test]
fn gc_killed_after_a_grouped_drop_finishes_every_deletion_on_open() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    {
        let t = IndexedTier::create(&path, small_config()).unwrap();
        let fps = write_tiny_leaves(&t, 6 * 1024, b"gcgroup!", 1024);
        let entries: Vec<FileEntry> = leaf_entries(&fps, |i| format!("f{i:05}"));
        t.upsert_files(&entries).unwrap();
        let gone: Vec<String> = (0..4 * 1024).map(|i| format!("f{i:05}")).collect();
        let gone: Vec<&str> = gone.iter().map(String::as_str).collect();
        t.remove(&gone).unwrap();
    }
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_seed"))
        .args(["gc", "--tier"])
        .arg(&path)
        .env("TIERSEED_CRASH_AT", "gc.before_unlink:1")
        .env("RUST_LOG", "error")
        .output()
        .unwrap();
    assert!(!o.status.success(), "gc did not reach its crash point");
    let files = |p: &Path| fs::read_dir(p.join("containers")).unwrap().count();
    assert_eq!(files(&path), 6, "the kill came before any file was deleted");
    let t = IndexedTier::open(&path).unwrap();
    assert_eq!(files(&path), 2, "the open finished the four deletions of the group");
    assert_eq!(t.info().unwrap().segments, 2 * 1024);
    let v = t.verify().unwrap();
    assert!(v.is_clean(), "{v:?}");
}

/// Namespace changes go to RocksDB in batches of 64K (one batch of 5M
/// deletions was held whole in a memtable, and replayed whole from the
/// WAL at the next open: 930 MiB): removing 70,000 files at once, then
/// reopening, leaves exactly the others, and their data still verifies.
#[test]
fn removing_more_files_than_a_namespace_batch_removes_them_all() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    {
        let t = IndexedTier::create(&path, small_config()).unwrap();
        let fps = write_tiny_leaves(&t, 70_010, b"rmbatch!", 8192);
        let entries: Vec<FileEntry> = leaf_entries(&fps, |i| format!("d{}/f{i:06}", usize::from(i >= 70_000)));
        t.upsert_files(&entries).unwrap();
        assert_eq!(t.remove(&["d0"]).unwrap().len(), 70_000);
    }
    let t = IndexedTier::open(&path).unwrap();
    let left = namespace(&t);
    assert_eq!(left.len(), 10);
    assert!(left.keys().all(|p| p.starts_with("d1/")));
    assert!(t.verify().unwrap().is_clean());
}

/// `IndexedTier::verify` walks the namespace a window at a time and names a
/// broken file by its path (read back by one more listing): the one file
/// whose data the index lacks, and no other.
#[test]
fn verify_names_the_file_whose_tree_reaches_a_segment_the_index_lacks() {
    let dir = tempfile::tempdir().unwrap();
    let t = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let fps = write_tiny_leaves(&t, 3, b"scrubnam", 8);
    let missing = Fingerprint::of(b"a leaf this tier never stored");
    let roots = [fps[0], missing, fps[2]];
    let entries: Vec<FileEntry> = ["a", "b/broken", "c"]
        .iter()
        .zip(roots)
        .map(|(p, root)| FileEntry {
            path: (*p).into(),
            size: 16,
            mtime: 0,
            root,
            height: 0,
            attrs: tierseed::FileAttrs::default(),
        })
        .collect();
    t.upsert_files(&entries).unwrap();
    let report = t.verify().unwrap();
    assert_eq!(report.files, 3);
    assert_eq!(report.problems.len(), 1, "{:?}", report.problems);
    let p = &report.problems[0];
    assert!(p.starts_with("file \"b/broken\": ") && p.contains(&missing.to_string()), "{p}");
}

/// The bug: the packer counted a segment's bytes but not its table entry,
/// so a target container of 16-byte segments held four times the segments
/// its size allowed (a 4 MiB container was a 16.6 MiB file), and every
/// container in flight held that many records at once (the 11M-segment
/// job peaked at 936 MiB of RSS with four writers).
#[test]
fn containers_of_tiny_segments_are_no_larger_than_the_target_size() {
    let d = tempfile::tempdir().unwrap();
    let src = IndexedTier::create(d.path().join("src"), small_config()).unwrap();
    let fps = write_tiny_leaves(&src, 20_000, b"tinysegs", 4096);
    src.upsert_files(&leaf_entries(&fps, |i| format!("leaf{i:05}"))).unwrap();
    let size = 64u64 << 10;
    let dst = IndexedTier::create(d.path().join("dst"), tierseed::TierConfig { container_size: size, ..small_config() }).unwrap();
    let mut job = Seeder::builder(&src, &dst, d.path().join("state")).selection(Selection::all()).build().unwrap();
    let report = run_to_end(&mut job);
    assert_eq!(report.counters.segments_copied, 20_000);
    let dir = dst.dir().join(tierseed::layout::TIER_CONTAINERS);
    let mut containers = 0;
    for f in fs::read_dir(&dir).unwrap() {
        let len = f.unwrap().metadata().unwrap().len();
        // The file: its header and checksum trailer beside the table and
        // the data the target size bounds.
        assert!(len <= size + 128, "a {len}-byte container for a {size}-byte target size");
        containers += 1;
    }
    // 20,000 segments of 16 bytes and a 48-byte entry each: 20 containers
    // of 1,024, where counting bytes alone packed 5.
    assert!(containers >= 20, "{containers} containers");
}

/// `IndexedTier::memory_usage` sees the memtables a write fills, and the
/// table readers of an index that reached its table files (RocksDB writes
/// the recovered log to a table file when the tier is opened again).
#[test]
fn memory_usage_reports_memtables_and_table_readers() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t");
    let t = IndexedTier::create(&path, small_config()).unwrap();
    write_tiny_leaves(&t, 20_000, b"memusage", 4096);
    let u = t.memory_usage().unwrap();
    assert!(u.memtables > 0, "{u:?}");
    drop(t);
    let t = IndexedTier::open(&path).unwrap();
    let u = t.memory_usage().unwrap();
    assert!(u.table_readers > 0, "an index of 20,000 entries in table files has table readers: {u:?}");
}
