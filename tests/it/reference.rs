//! What a backup must keep: a real tree (modes with setuid, setgid and
//! sticky bits, mtimes before 1970 and to the nanosecond, symlinks of every
//! shape, a sparse file, hard links, a name with a newline) ingested, moved
//! to a second tier by a job, restored, and compared with the original the
//! way `rsync -a --dry-run --itemize-changes` would: kind, permission
//! bits, owner, mtime, symlink target, bytes.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tierseed::{FileAttrs, FileKind, IndexedTier, Mode, Outcome, Seeder, Selection, Tier};

use crate::small_config;

fn at(secs: i64, nanos: u32) -> SystemTime {
    let whole = Duration::from_secs(secs.unsigned_abs());
    let base = if secs >= 0 { UNIX_EPOCH + whole } else { UNIX_EPOCH - whole };
    base + Duration::from_nanos(nanos.into())
}

fn file(root: &Path, rel: &str, bytes: &[u8], mode: u32, mtime: (i64, u32)) {
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(&p, bytes).unwrap();
    fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
    fs::File::options().write(true).open(&p).map_or_else(
        // A mode without the owner's write bit: set the time by path.
        |_| set_time_by_path(&p, mtime, false),
        |f| f.set_modified(at(mtime.0, mtime.1)).unwrap(),
    );
}

/// Sets a path's mtime with `touch` (`-h`: the link itself).
fn set_time_by_path(p: &Path, (secs, nanos): (i64, u32), link: bool) {
    let mut cmd = std::process::Command::new("touch");
    if link {
        cmd.arg("-h");
    }
    let status = cmd.arg("-m").arg("-d").arg(format!("@{secs}.{nanos:09}")).arg(p).status().unwrap();
    assert!(status.success(), "touch {}", p.display());
}

fn link(root: &Path, rel: &str, target: &[u8], mtime: (i64, u32)) {
    use std::os::unix::ffi::OsStrExt;
    let p = root.join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(std::ffi::OsStr::from_bytes(target), &p).unwrap();
    set_time_by_path(&p, mtime, true);
}

/// The tree: every case the reference tier must keep.
fn build_tree(root: &Path) {
    file(root, "plain.txt", b"plain bytes\n", 0o644, (1_600_000_000, 123_456_789));
    file(root, "bin/tool", b"#!/bin/sh\necho tool\n", 0o755, (1_700_000_000, 1));
    file(root, "secret", b"only mine", 0o600, (1_700_000_001, 999_999_999));
    file(root, "setuid-tool", b"setuid", 0o4755, (1_700_000_002, 0));
    file(root, "setgid-tool", b"setgid", 0o2750, (1_700_000_003, 500));
    file(root, "sticky", b"sticky", 0o1644, (1_700_000_004, 0));
    file(root, "readonly", b"read only", 0o444, (1_700_000_005, 42));
    file(root, "nothing", b"no permissions at all", 0o000, (1_700_000_006, 0));
    // Before 1970, with a fraction (the bug "an mtime before 1970 is
    // stored as 1970"), and far ahead.
    file(root, "old/1960", b"from 1960", 0o644, (-315_619_200, 5));
    file(root, "old/1969-last-second", b"just before the epoch", 0o644, (-1, 999_999_999));
    file(root, "future", b"from 2100", 0o644, (4_102_444_800, 7));
    file(root, "empty", b"", 0o640, (1_000_000_000, 0));
    file(root, "name\nwith newline", b"newline in the name", 0o644, (1_700_000_007, 0));
    // Sparse: 64 MiB of which only a few bytes in the middle are data.
    let sparse = root.join("sparse.img");
    let f = fs::File::create(&sparse).unwrap();
    f.set_len(64 << 20).unwrap();
    std::os::unix::fs::FileExt::write_all_at(&f, b"data in a hole", 32 << 20).unwrap();
    f.set_modified(at(1_700_000_008, 8)).unwrap();
    drop(f);
    // Hard links: kept as two independent files.
    file(root, "hard/one", b"hard-linked bytes", 0o644, (1_700_000_009, 0));
    fs::hard_link(root.join("hard/one"), root.join("hard/two")).unwrap();
    // Symlinks: relative, absolute, dangling, to a directory, non-UTF-8,
    // long, and one whose target names a restore's own temporary files.
    link(root, "links/rel", b"../plain.txt", (1_650_000_000, 11));
    link(root, "links/abs", b"/etc/passwd", (-86_400, 0));
    link(root, "links/dangling", b"nowhere/at/all", (1_650_000_001, 0));
    link(root, "links/dir", b"..", (1_650_000_002, 0));
    link(root, "links/nonutf8", b"caf\xe9-\xff\xfe", (1_650_000_003, 0));
    link(root, "links/long", "d/".repeat(1500).as_bytes(), (1_650_000_004, 0));
}

/// What rsync compares, per entry: kind, permission bits, owner, mtime to
/// the nanosecond, and the symlink target or the bytes (by hash).
#[derive(Debug, PartialEq, Eq)]
struct Item {
    kind: &'static str,
    mode: u32,
    owner: (u32, u32),
    mtime: (i64, i64),
    content: String,
}

fn walk(root: &Path) -> BTreeMap<PathBuf, Item> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let md = fs::symlink_metadata(&p).unwrap();
            let ft = md.file_type();
            if ft.is_dir() {
                stack.push(p);
                continue;
            }
            let (kind, content) = if ft.is_symlink() {
                use std::os::unix::ffi::OsStrExt;
                ("symlink", format!("{:?}", fs::read_link(&p).unwrap().as_os_str().as_bytes()))
            } else {
                ("file", tierseed::Fingerprint::of(&fs::read(&p).unwrap()).to_string())
            };
            // A symlink's own mode is always 0777 on Linux: compared too.
            let item = Item {
                kind,
                mode: md.mode() & 0o7777,
                owner: (md.uid(), md.gid()),
                mtime: (md.mtime(), md.mtime_nsec()),
                content,
            };
            out.insert(p.strip_prefix(root).unwrap().to_path_buf(), item);
        }
    }
    out
}

fn move_all(src: &IndexedTier, dst: &IndexedTier, state: &Path, threads: usize) {
    let mut job = Seeder::builder(src, dst, state).selection(Selection::all()).mode(Mode::Move).threads(threads).build().unwrap();
    let Outcome::Completed(report) = job.run().unwrap() else { panic!("suspended") };
    assert!(report.counters.files_switched > 0);
}

#[test]
fn a_restored_tree_matches_the_original_as_rsync_would_compare_it() {
    let dir = tempfile::tempdir().unwrap();
    let orig = dir.path().join("orig/tree");
    build_tree(&orig);
    let src = IndexedTier::create(dir.path().join("src"), small_config()).unwrap();
    let stats = src.ingest_paths(&[&orig]).unwrap();
    assert_eq!(stats.symlinks, 6);
    assert_eq!(stats.files, 22, "{stats:?}");
    assert_eq!(stats.skipped, 0);

    // The entries as stored, before any restore.
    let e = src.entry("tree/old/1960").unwrap();
    assert_eq!((e.mtime, e.attrs.mtime_nanos), (-315_619_200, 5));
    assert_eq!(e.attrs.mode, Some(0o644));
    let l = src.entry("tree/links/abs").unwrap();
    assert_eq!(l.attrs.kind, FileKind::Symlink);
    assert_eq!(l.size, "/etc/passwd".len() as u64);

    // Through a whole move job (file chunks, switch, removal), so the
    // attributes survive every record they pass through; one thread, then
    // the rest on two.
    let dst = IndexedTier::create(dir.path().join("dst"), small_config()).unwrap();
    move_all(&src, &dst, &dir.path().join("job"), 1);
    assert!(src.all_files().unwrap().is_empty(), "the move left files on the source");
    assert!(dst.verify().unwrap().is_clean());

    let want = walk(&orig);
    assert_eq!(want.len(), 22);
    for threads in [1, 4] {
        let out = dir.path().join(format!("restored-{threads}"));
        let r = dst.restore_tree("tree", &out, threads, &|_, _| {}).unwrap();
        assert_eq!(r.failed, 0, "{:?}", r.failures);
        assert_eq!((r.files, r.symlinks), (22, 6));
        let got = walk(&out.join("tree"));
        let differ: Vec<_> = want.keys().filter(|p| got.get(*p) != want.get(*p)).collect();
        assert!(differ.is_empty(), "differ: {:#?}", differ.iter().map(|p| (p, &want[*p], got.get(*p))).collect::<Vec<_>>());
        assert_eq!(got.len(), want.len());
        // The sparse file restores with its holes: 64 MiB long, a few
        // blocks allocated.
        let sparse = fs::metadata(out.join("tree/sparse.img")).unwrap();
        assert_eq!(sparse.len(), 64 << 20);
        assert!(sparse.blocks() * 512 <= 1 << 20, "sparse file restored with {} blocks", sparse.blocks());
        // Hard links restore as two files with the same bytes.
        assert_eq!(fs::metadata(out.join("tree/hard/two")).unwrap().nlink(), 1);
        // The absolute link was created, not followed.
        assert_eq!(fs::read_link(out.join("tree/links/abs")).unwrap(), Path::new("/etc/passwd"));
    }

    // Restoring again over the first restore replaces the links (the
    // rename replaces a link, never writes through it).
    let out = dir.path().join("restored-1");
    let r = dst.restore_tree("tree", &out, 2, &|_, _| {}).unwrap();
    assert_eq!(r.failed, 0, "{:?}", r.failures);
    assert_eq!(walk(&out.join("tree")), want);
    // A single link restored to a named file.
    let one = dir.path().join("one-link");
    dst.restore_to_file("tree/links/rel", &one).unwrap();
    assert_eq!(fs::read_link(&one).unwrap(), Path::new("../plain.txt"));
}

/// A tier whose namespace holds a symlink `evil` to a directory outside
/// the restore and a file `evil/file` under the same name (which a real
/// tree cannot produce, a hostile or rotten namespace can): restoring it
/// never writes into the directory the link names.
#[test]
fn a_symlink_entry_cannot_redirect_another_entry_of_the_same_restore() {
    let dir = tempfile::tempdir().unwrap();
    let victim = dir.path().join("victim");
    fs::create_dir(&victim).unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let mut s = tier.ingest_session();
    let link = FileAttrs { kind: FileKind::Symlink, ..FileAttrs::default() };
    let target = victim.to_str().unwrap().to_string();
    s.add_reader_with("evil", 0, link, &mut target.as_bytes()).unwrap();
    s.add_reader("evil/file", 0, &mut &b"must not land in the victim"[..]).unwrap();
    s.finish().unwrap();

    for threads in [1, 2, 8] {
        let out = dir.path().join(format!("out-{threads}"));
        let r = tier.restore_tree("", &out, threads, &|_, _| {}).unwrap();
        // The file went into a real directory `evil`; the link could not
        // replace that directory and is reported, not forced.
        assert_eq!((r.files, r.failed), (1, 1), "{r:?}");
        assert_eq!(r.failures[0].0, "evil");
        assert!(fs::symlink_metadata(out.join("evil")).unwrap().is_dir());
        assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "the restore wrote through the link");
    }

    // Once the link exists (restored alone first), the file is refused
    // rather than written through it.
    let out = dir.path().join("link-first");
    fs::create_dir(&out).unwrap();
    tier.restore_to_dir("evil", &out).unwrap();
    assert!(tier.restore_to_dir("evil/file", &out).is_err());
    assert_eq!(fs::read_dir(&victim).unwrap().count(), 0, "the restore wrote through the link");
}

/// As root a restore gives each file its recorded owner; as anyone else
/// the owner stays the restoring user and a setuid or setgid bit meant
/// for another owner is dropped, never handed to the restoring user.
#[test]
fn a_restore_sets_the_owner_or_drops_setuid_and_setgid() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let mut s = tier.ingest_session();
    let attrs = FileAttrs { mode: Some(0o6755), owner: Some((4321, 8765)), mtime_nanos: 3, ..FileAttrs::default() };
    s.add_reader_with("someone-elses", -5, attrs, &mut &b"owned by 4321"[..]).unwrap();
    s.finish().unwrap();
    let out = dir.path().join("out");
    fs::create_dir(&out).unwrap();
    tier.restore_to_dir("someone-elses", &out).unwrap();
    let md = fs::metadata(out.join("someone-elses")).unwrap();
    assert_eq!((md.mtime(), md.mtime_nsec()), (-5, 3));
    let me = fs::metadata(&out).unwrap();
    if me.uid() == 0 {
        assert_eq!((md.uid(), md.gid()), (4321, 8765));
        assert_eq!(md.mode() & 0o7777, 0o6755);
    } else {
        assert_eq!(md.uid(), me.uid());
        assert_eq!(md.mode() & 0o7777, 0o0755, "setuid/setgid kept for a different owner");
    }
}

/// An out-of-range nanosecond count is refused at ingest, not stored.
#[test]
fn ingest_refuses_nanoseconds_of_a_second_or_more() {
    let dir = tempfile::tempdir().unwrap();
    let tier = IndexedTier::create(dir.path().join("t"), small_config()).unwrap();
    let mut s = tier.ingest_session();
    let attrs = FileAttrs { mtime_nanos: 1_000_000_000, ..FileAttrs::default() };
    assert!(s.add_reader_with("f", 0, attrs, &mut &b"x"[..]).is_err());
}
