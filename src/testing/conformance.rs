//! A conformance kit for tier implementations: behaviour checks that any
//! [`SourceTier`] + [`TargetTier`] can run against itself, the way OpenDAL
//! runs its behaviour tests against every service. tierseed runs it in CI
//! against the directory tier, the S3 tier on Ceph and a tier wrapped in
//! [`FaultyTier`](crate::FaultyTier) with no faults; an integrator runs it
//! against their own tier from a test:
//!
//! ```no_run
//! # fn main() -> tierseed::Result<()> {
//! use tierseed::conformance::{self, Harness, Tested};
//! use tierseed::{IndexedTier, TierConfig};
//!
//! struct Dir(std::path::PathBuf);
//! impl Harness for Dir {
//!     fn open(&self) -> tierseed::Result<Box<dyn Tested + '_>> {
//!         Ok(Box::new(IndexedTier::open(&self.0)?))
//!     }
//!     fn open_read_only(&self) -> Option<tierseed::Result<Box<dyn Tested + '_>>> {
//!         Some(IndexedTier::open_read_only(&self.0).map(|t| Box::new(t) as Box<dyn Tested>))
//!     }
//! }
//!
//! let dir = std::env::temp_dir().join("my-tier");
//! IndexedTier::create(&dir, TierConfig::default())?;
//! conformance::run(&Dir(dir)).assert_ok();
//! # Ok(())
//! # }
//! ```
//!
//! Every check uses content of its own (tagged with a random nonce), so the
//! kit may run on a tier that already holds data; it adds a few small
//! containers and files to it. What is checked is what the engine relies
//! on: batch answers of the right length and order, create-only container
//! writes that keep an existing home, idempotent upserts that keep every
//! attribute (kind, mode, owner, nanoseconds, an mtime before 1970), listing and
//! paging, guarded removal, durability across a reopen, errors (never
//! panics) on missing ids, and read-only handles refusing writes.

use std::collections::BTreeSet;
use std::panic::{AssertUnwindSafe, catch_unwind};

use crate::error::Result;
use crate::format::entries::{ContainerKind, FileAttrs, FileEntry, FileKind, StoredSegment};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::{SourceTier, TargetTier};

/// A tier the kit can test: a source and a target at once.
pub trait Tested: SourceTier + TargetTier {}

impl<T: SourceTier + TargetTier + ?Sized> Tested for T {}

/// Opens handles on the one tier under test. The kit drops every handle it
/// opened before it opens the next, so a tier that locks its directory can
/// be reopened.
pub trait Harness {
    /// A writable handle on the tier.
    fn open(&self) -> Result<Box<dyn Tested + '_>>;

    /// A read-only handle on the tier, if the implementation has one
    /// (`None`: the read-only checks are skipped and reported so).
    fn open_read_only(&self) -> Option<Result<Box<dyn Tested + '_>>> {
        None
    }
}

/// What the kit found: each check's name, and why it failed.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Report {
    /// Checks that passed.
    pub passed: Vec<&'static str>,
    /// Checks that failed, with what went wrong.
    pub failed: Vec<(&'static str, String)>,
    /// Checks skipped, with why.
    pub skipped: Vec<(&'static str, String)>,
}

impl Report {
    /// Panics, listing every failed check, unless all passed.
    pub fn assert_ok(&self) {
        if !self.failed.is_empty() {
            let lines: Vec<String> = self.failed.iter().map(|(n, why)| format!("  {n}: {why}")).collect();
            panic!(
                "{} of {} conformance checks failed:\n{}",
                self.failed.len(),
                self.failed.len() + self.passed.len(),
                lines.join("\n")
            );
        }
    }
}

/// The outcome of one check: `Err` says what the tier did wrong.
type Check = std::result::Result<(), String>;

/// A check's body, given the harness and the kit's nonce.
type CheckFn = fn(&dyn Harness, &Nonce) -> Check;

/// Runs every check against the tier `harness` opens.
pub fn run(harness: &dyn Harness) -> Report {
    let nonce = Nonce(uuid::Uuid::new_v4().into_bytes());
    let checks: [(&'static str, CheckFn); 10] = [
        ("write_container_then_locate_in_order", write_then_locate),
        ("read_metadata_and_segments_in_the_order_asked", read_back),
        ("container_ids_ascend_and_grow", ids_grow),
        ("an_indexed_segment_keeps_its_home", keeps_home),
        ("missing_containers_are_errors_not_panics", missing_is_error),
        ("upserts_are_idempotent_and_listing_pages_in_path_order", upsert_and_list),
        ("remove_files_removes_only_unchanged_entries", guarded_remove),
        ("the_index_pages_every_entry_once_in_a_stable_order", index_paging),
        ("a_sound_copy_reported_as_suspect_is_kept", retire_sound),
        ("everything_survives_a_reopen", survives_reopen),
    ];
    let mut report = Report::default();
    for (name, check) in checks {
        match catch_unwind(AssertUnwindSafe(|| check(harness, &nonce))) {
            Ok(Ok(())) => report.passed.push(name),
            Ok(Err(why)) => report.failed.push((name, why)),
            Err(_) => report.failed.push((name, "panicked".into())),
        }
    }
    match harness.open_read_only() {
        None => report.skipped.push(("read_only_handles_refuse_writes", "the harness has no read-only handle".into())),
        Some(opened) => match catch_unwind(AssertUnwindSafe(|| read_only_refuses(opened, &nonce))) {
            Ok(Ok(())) => report.passed.push("read_only_handles_refuse_writes"),
            Ok(Err(why)) => report.failed.push(("read_only_handles_refuse_writes", why)),
            Err(_) => report.failed.push(("read_only_handles_refuse_writes", "panicked".into())),
        },
    }
    report
}

/// Content no other run of the kit (and no real data) shares.
struct Nonce([u8; 16]);

impl Nonce {
    /// `n` distinct segments for check `tag`.
    fn segments(&self, tag: &str, n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| {
                let mut b = format!("tierseed conformance {tag} #{i} ").into_bytes();
                b.extend_from_slice(&self.0);
                b
            })
            .collect()
    }

    fn path(&self, tag: &str, i: usize) -> String {
        format!("conformance-{}/{tag}/f{i:03}", uuid::Uuid::from_bytes(self.0).simple())
    }
}

fn fail(what: impl std::fmt::Display) -> String {
    what.to_string()
}

fn open(h: &dyn Harness) -> std::result::Result<Box<dyn Tested + '_>, String> {
    h.open().map_err(|e| format!("open: {e}"))
}

/// Writes `segs` as one data container; returns its id and fingerprints.
fn write(t: &dyn Tested, segs: &[Vec<u8>]) -> std::result::Result<(ContainerId, Vec<Fingerprint>), String> {
    let fps: Vec<Fingerprint> = segs.iter().map(|s| Fingerprint::of(s)).collect();
    let stored: Vec<StoredSegment<'_>> = fps.iter().zip(segs).map(|(f, s)| StoredSegment::raw(*f, s)).collect();
    let id = t.write_container(ContainerKind::Data, &stored).map_err(|e| format!("write_container: {e}"))?;
    Ok((id, fps))
}

fn write_then_locate(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (id, fps) = write(&*t, &n.segments("locate", 5))?;
    // Known and unknown fingerprints interleaved, one twice.
    let unknown = Fingerprint::of(&[n.0.as_slice(), b"never written"].concat());
    let asked = vec![fps[3], unknown, fps[0], fps[3], fps[4]];
    let got = t.locate(&asked).map_err(|e| format!("locate: {e}"))?;
    let want = vec![Some(id), None, Some(id), Some(id), Some(id)];
    if got != want {
        return Err(format!("locate({asked:?}) answered {got:?}, expected {want:?}"));
    }
    let none = t.locate(&[]).map_err(|e| format!("locate of nothing: {e}"))?;
    if !none.is_empty() {
        return Err(format!("locate of no fingerprints answered {none:?}"));
    }
    Ok(())
}

fn read_back(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let segs = n.segments("read", 6);
    let (id, fps) = write(&*t, &segs)?;
    let meta = t.read_metadata(id).map_err(|e| format!("read_metadata({id}): {e}"))?;
    if meta.id != id || meta.kind != ContainerKind::Data {
        return Err(format!("read_metadata({id}) answered id {} kind {:?}", meta.id, meta.kind));
    }
    let listed: BTreeSet<Fingerprint> = meta.segments.iter().map(|e| e.fingerprint).collect();
    if listed != fps.iter().copied().collect() {
        return Err(format!("container {id}'s table lists {} fingerprints, not the {} written", listed.len(), fps.len()));
    }
    // A subset, in an order unlike the table's.
    let mut which: Vec<_> = meta.segments.iter().filter(|e| e.fingerprint != fps[2]).copied().collect();
    which.reverse();
    let bytes = t.read_segments(id, &which).map_err(|e| format!("read_segments({id}): {e}"))?;
    if bytes.len() != which.len() {
        return Err(format!("read_segments({id}) answered {} segments for {} asked", bytes.len(), which.len()));
    }
    for (e, b) in which.iter().zip(&bytes) {
        if Fingerprint::of(b) != e.fingerprint {
            return Err(format!("read_segments({id}) answered other bytes for {} (answers out of order?)", e.fingerprint));
        }
    }
    // The shared form answers the same, in table order too (where a tier
    // reads adjacent segments as one run and answers slices of it).
    let mut in_order = which.clone();
    in_order.reverse();
    for asked in [&which, &in_order] {
        let shared = t.read_segments_shared(id, asked).map_err(|e| format!("read_segments_shared({id}): {e}"))?;
        let plain = t.read_segments(id, asked).map_err(|e| format!("read_segments({id}): {e}"))?;
        if shared.len() != plain.len() || shared.iter().zip(&plain).any(|(a, b)| a[..] != b[..]) {
            return Err(format!("read_segments_shared({id}) answered other bytes than read_segments"));
        }
    }
    Ok(())
}

fn ids_grow(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (earlier, _) = write(&*t, &n.segments("grow-a", 1))?;
    let (later, _) = write(&*t, &n.segments("grow-b", 1))?;
    if later <= earlier {
        return Err(format!("container {later} written after {earlier} has a smaller or equal id"));
    }
    let ids = t.container_ids().map_err(|e| format!("container_ids: {e}"))?;
    if ids.windows(2).any(|w| w[0] >= w[1]) {
        return Err("container_ids is not strictly ascending".into());
    }
    if !ids.contains(&earlier) || !ids.contains(&later) {
        return Err(format!("container_ids lacks {earlier} or {later}, just written"));
    }
    Ok(())
}

fn keeps_home(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let segs = n.segments("home", 3);
    let (first, fps) = write(&*t, &segs)?;
    // The same segments again, beside a new one: the index keeps the
    // first, readable container as their home.
    let mut again = segs.clone();
    again.extend(n.segments("home-new", 1));
    let (second, fps2) = write(&*t, &again)?;
    let got = t.locate(&fps2).map_err(fail)?;
    let want: Vec<Option<ContainerId>> = fps.iter().map(|_| Some(first)).chain([Some(second)]).collect();
    if got != want {
        return Err(format!("after writing indexed segments again, locate answered {got:?}, expected {want:?}"));
    }
    Ok(())
}

fn missing_is_error(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (id, _) = write(&*t, &n.segments("missing", 1))?;
    let real = t.read_metadata(id).map_err(fail)?.segments;
    let ids = t.container_ids().map_err(fail)?;
    let absent = ContainerId(ids.last().map_or(0, |c| c.0) + 1_000_000);
    if t.read_metadata(absent).is_ok() {
        return Err(format!("read_metadata of absent container {absent} succeeded"));
    }
    if t.read_segments(absent, &real).is_ok() {
        return Err(format!("read_segments of absent container {absent} succeeded"));
    }
    Ok(())
}

/// An entry of the kit, with every attribute set (a symlink among them,
/// mode bits with setuid, an owner, nanoseconds): a tier that drops or
/// mangles attributes fails the comparisons, since a restore from it would
/// lose them.
fn entry(n: &Nonce, tag: &str, i: usize, root: Fingerprint, mtime: i64) -> FileEntry {
    let attrs = FileAttrs {
        kind: if i % 3 == 2 { FileKind::Symlink } else { FileKind::File },
        mode: (i % 3 != 2).then_some(0o4750 + i as u32),
        owner: Some((1000 + i as u32, 100)),
        mtime_nanos: 999_999_000 + i as u32,
    };
    FileEntry { path: n.path(tag, i), size: 0, mtime, root, height: 0, attrs }
}

fn upsert_and_list(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (_, fps) = write(&*t, &n.segments("list", 5))?;
    let entries: Vec<FileEntry> = fps.iter().enumerate().map(|(i, f)| entry(n, "list", i, *f, -7)).collect();
    t.upsert_files(&entries).map_err(|e| format!("upsert_files: {e}"))?;
    t.upsert_files(&entries).map_err(|e| format!("upsert_files, again: {e}"))?;
    // Page through from just before the kit's paths, two at a time.
    let prefix = n.path("list", 0);
    let prefix = &prefix[..prefix.len() - 4];
    let mut after: Option<String> = Some(prefix.to_string());
    let mut seen = Vec::new();
    loop {
        let page = t.list_files(after.as_deref(), 2).map_err(|e| format!("list_files: {e}"))?;
        if page.len() > 2 {
            return Err(format!("list_files with limit 2 answered {} entries", page.len()));
        }
        let Some(last) = page.last() else { break };
        after = Some(last.path.clone());
        let ours: Vec<FileEntry> = page.into_iter().filter(|e| e.path.starts_with(prefix)).collect();
        if ours.is_empty() {
            break;
        }
        seen.extend(ours);
    }
    if seen != entries {
        return Err(format!(
            "paging listed {} of the kit's entries, not the {} upserted in path order",
            seen.len(),
            entries.len()
        ));
    }
    let mut asked: Vec<String> = vec![entries[2].path.clone(), n.path("list", 99), entries[0].path.clone()];
    let got = t.file_entries(&asked).map_err(|e| format!("file_entries: {e}"))?;
    if got != vec![Some(entries[2].clone()), None, Some(entries[0].clone())] {
        return Err(format!("file_entries({asked:?}) answered {got:?}"));
    }
    // A changed entry replaces the old one.
    let changed = FileEntry { mtime: 8, ..entries[1].clone() };
    t.upsert_files(std::slice::from_ref(&changed)).map_err(fail)?;
    asked = vec![changed.path.clone()];
    if t.file_entries(&asked).map_err(fail)? != vec![Some(changed)] {
        return Err("an upsert of a changed entry did not replace it".into());
    }
    Ok(())
}

fn guarded_remove(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (_, fps) = write(&*t, &n.segments("remove", 2))?;
    let kept = entry(n, "remove", 0, fps[0], 1);
    let changes = entry(n, "remove", 1, fps[1], 1);
    t.upsert_files(&[kept.clone(), changes.clone()]).map_err(fail)?;
    // `changes` as the caller last saw it, before it changed.
    let stale = FileEntry { mtime: 0, ..changes.clone() };
    let got = t.remove_files(&[kept.clone(), stale.clone()]).map_err(|e| format!("remove_files: {e}"))?;
    if got != vec![true, false] {
        return Err(format!("remove_files(unchanged, changed) answered {got:?}, expected [true, false]"));
    }
    let again = t.remove_files(&[kept.clone(), stale]).map_err(|e| format!("remove_files, again: {e}"))?;
    if again != vec![true, false] {
        return Err(format!("remove_files repeated answered {again:?}, expected [true, false]"));
    }
    let left = t.file_entries(&[kept.path.clone(), changes.path.clone()]).map_err(fail)?;
    if left != vec![None, Some(changes)] {
        return Err(format!("after remove_files the entries are {left:?}"));
    }
    Ok(())
}

fn index_pass(t: &dyn Tested, page: usize) -> std::result::Result<Vec<(Fingerprint, ContainerId)>, String> {
    let mut all = Vec::new();
    t.for_each_index_page(page, &mut |p| {
        all.extend_from_slice(p);
        Ok(())
    })
    .map_err(|e| format!("fingerprints (page {page}): {e}"))?;
    Ok(all)
}

fn index_paging(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (id, fps) = write(&*t, &n.segments("index", 7))?;
    let first = index_pass(&*t, 3)?;
    let second = index_pass(&*t, 3)?;
    if first != second {
        return Err("two passes over the index in pages of 3 differ".into());
    }
    let distinct: BTreeSet<Fingerprint> = first.iter().map(|e| e.0).collect();
    if distinct.len() != first.len() {
        return Err("the index paged some fingerprint twice".into());
    }
    for fp in &fps {
        if !first.contains(&(*fp, id)) {
            return Err(format!("the index never paged {fp} in container {id}"));
        }
    }
    let count = t.fingerprint_count().map_err(fail)?;
    if count != first.len() as u64 {
        return Err(format!("fingerprint_count says {count}, the index paged {}", first.len()));
    }
    if let Some(len) = t.sorted_index_len().map_err(fail)? {
        let mut sorted = Vec::new();
        let mut after: Option<Fingerprint> = None;
        loop {
            let page = t.sorted_index_page(after.as_ref(), 4).map_err(|e| format!("sorted_index_page: {e}"))?;
            let Some(last) = page.last() else { break };
            after = Some(last.0);
            sorted.extend(page);
        }
        if sorted.windows(2).any(|w| w[0].0 >= w[1].0) {
            return Err("sorted_index_page is not strictly ascending".into());
        }
        if sorted.len() as u64 != len || sorted.iter().copied().collect::<BTreeSet<_>>() != first.into_iter().collect() {
            return Err(format!("sorted_index_page listed {} entries, sorted_index_len says {len}", sorted.len()));
        }
    }
    Ok(())
}

fn retire_sound(h: &dyn Harness, n: &Nonce) -> Check {
    let t = open(h)?;
    let (id, fps) = write(&*t, &n.segments("retire", 2))?;
    let dropped = t.retire_segments(&[(fps[0], id)]).map_err(|e| format!("retire_segments: {e}"))?;
    if dropped != 0 {
        return Err(format!("retire_segments of a sound copy dropped {dropped} index entries"));
    }
    if t.locate(&fps[..1]).map_err(fail)? != vec![Some(id)] {
        return Err("a sound copy reported as suspect is no longer located".into());
    }
    Ok(())
}

fn survives_reopen(h: &dyn Harness, n: &Nonce) -> Check {
    let (id, fps, e, tier_id) = {
        let t = open(h)?;
        let (id, fps) = write(&*t, &n.segments("reopen", 3))?;
        let e = entry(n, "reopen", 0, fps[0], 3);
        t.upsert_files(std::slice::from_ref(&e)).map_err(fail)?;
        (id, fps, e, t.tier_id().map_err(fail)?)
    };
    let t = open(h)?;
    if t.tier_id().map_err(fail)? != tier_id {
        return Err("the tier's id changed across a reopen".into());
    }
    if t.locate(&fps).map_err(fail)? != vec![Some(id); fps.len()] {
        return Err(format!("after a reopen, the segments of container {id} are not located there"));
    }
    let meta = t.read_metadata(id).map_err(|e| format!("after a reopen, read_metadata({id}): {e}"))?;
    let bytes = t.read_segments(id, &meta.segments).map_err(fail)?;
    if bytes.iter().zip(&meta.segments).any(|(b, s)| Fingerprint::of(b) != s.fingerprint) {
        return Err(format!("after a reopen, container {id}'s bytes do not match its table"));
    }
    if t.file_entries(std::slice::from_ref(&e.path)).map_err(fail)? != vec![Some(e)] {
        return Err("after a reopen, an upserted entry is gone or changed".into());
    }
    Ok(())
}

fn read_only_refuses(opened: Result<Box<dyn Tested + '_>>, n: &Nonce) -> Check {
    let t = opened.map_err(|e| format!("open_read_only: {e}"))?;
    let seg = n.segments("read-only", 1);
    let fp = Fingerprint::of(&seg[0]);
    if t.write_container(ContainerKind::Data, &[StoredSegment::raw(fp, &seg[0])]).is_ok() {
        return Err("a read-only handle wrote a container".into());
    }
    if t.upsert_files(&[entry(n, "read-only", 0, fp, 0)]).is_ok() {
        return Err("a read-only handle upserted a file".into());
    }
    // It still reads.
    t.container_ids().map_err(|e| format!("a read-only handle cannot list containers: {e}"))?;
    Ok(())
}
