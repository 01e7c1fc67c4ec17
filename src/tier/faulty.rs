//! `FaultyTier`: a decorator that makes a tier fail on purpose.

use std::sync::Mutex;

use crate::error::{Error, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::{ContainerKind, ContainerMeta, SegmentEntry, StoredSegment};
use crate::tier::{FileEntry, SourceTier, TargetTier, Tier, TierId};

/// The kind of call a [`Fault`] targets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FaultKind {
    /// [`Tier::read_metadata`](crate::Tier::read_metadata).
    ReadMetadata,
    /// [`Tier::read_segments`](crate::Tier::read_segments).
    ReadSegments,
    /// [`Tier::locate`] (the target's "contains" lookup, or the source's).
    Locate,
    /// [`TargetTier::write_container`].
    WriteContainer,
    /// [`TargetTier::upsert_files`].
    UpsertFiles,
    /// [`SourceTier::remove_files`].
    RemoveFiles,
    /// [`SourceTier::fingerprints`] (the index pages BuildPhf streams).
    Fingerprints,
    /// [`Tier::container_ids`] (the snapshot Select takes).
    ContainerIds,
    /// [`Tier::list_files`] (the namespace pages Select reads).
    ListFiles,
}

const KINDS: usize = 9;

/// One planned fault: the `nth` call (1-based) of `kind` fails, or, with
/// `corrupt`, returns bytes with one flipped bit (for `ReadSegments`), or,
/// with `after_effect`, takes effect and then reports failure (the write
/// happened, the caller saw an error: a lost reply).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Fault {
    /// Which calls count.
    pub kind: FaultKind,
    /// Which call (1-based) misbehaves.
    pub nth: u64,
    /// Flip a bit in the returned bytes instead of failing (only for
    /// `ReadSegments`; other kinds fail).
    pub corrupt: bool,
    /// Run the call on the inner tier first, then fail it.
    pub after_effect: bool,
}

impl Fault {
    /// The `nth` call of `kind` fails with an I/O error.
    pub fn fail(kind: FaultKind, nth: u64) -> Fault {
        Fault { kind, nth, corrupt: false, after_effect: false }
    }

    /// The `nth` call of `kind` runs on the inner tier (its effect is
    /// durable), then fails with an I/O error as if the reply was lost.
    pub fn fail_after_effect(kind: FaultKind, nth: u64) -> Fault {
        Fault { kind, nth, corrupt: false, after_effect: true }
    }

    /// The `nth` segment read returns one flipped bit.
    pub fn corrupt_read(nth: u64) -> Fault {
        Fault { kind: FaultKind::ReadSegments, nth, corrupt: true, after_effect: false }
    }
}

/// Wraps a tier and injects [`Fault`]s; otherwise forwards every call.
/// Implements [`SourceTier`] and [`TargetTier`] when the inner tier does,
/// so it can stand on either side of a job.
pub struct FaultyTier<T> {
    inner: T,
    faults: Vec<Fault>,
    calls: Mutex<[u64; KINDS]>,
    hidden: Vec<Fingerprint>,
    unindexed: Vec<Fingerprint>,
}

impl<T> FaultyTier<T> {
    /// Wraps `inner` with the given faults.
    pub fn new(inner: T, faults: Vec<Fault>) -> Self {
        FaultyTier { inner, faults, calls: Mutex::new([0; KINDS]), hidden: Vec::new(), unindexed: Vec::new() }
    }

    /// Makes every container table this tier returns omit `fp`, while its
    /// index still places it: a container that lost a table entry (Copy
    /// never meets the segment; Verify must notice).
    #[must_use]
    pub fn hide_segment(mut self, fp: Fingerprint) -> Self {
        self.hidden.push(fp);
        self
    }

    /// Makes this tier's index lose `fp`: lookups answer `None` and
    /// index pages skip it, while the containers still hold it (an index
    /// that lost an entry: Verify must notice, by lookup or by merge).
    #[must_use]
    pub fn unindex_segment(mut self, fp: Fingerprint) -> Self {
        self.unindexed.push(fp);
        self
    }

    /// The wrapped tier.
    pub fn inner(&self) -> &T {
        &self.inner
    }

    /// How many calls of `kind` were made so far.
    pub fn calls(&self, kind: FaultKind) -> u64 {
        self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner)[kind as usize]
    }

    /// Counts a call; returns the fault planned for it, if any.
    fn arrive(&self, kind: FaultKind) -> Option<Fault> {
        let mut calls = self.calls.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        calls[kind as usize] += 1;
        let n = calls[kind as usize];
        self.faults.iter().copied().find(|f| f.kind == kind && f.nth == n)
    }

    /// Runs `call` unless a fault says otherwise: a plain fault fails
    /// before it, an after-effect fault fails after it.
    fn around<R>(&self, kind: FaultKind, call: impl FnOnce() -> Result<R>) -> Result<R> {
        match self.arrive(kind) {
            None => call(),
            Some(f) if f.after_effect => {
                call()?;
                Err(injected(f))
            }
            Some(f) => Err(injected(f)),
        }
    }
}

fn injected(f: Fault) -> Error {
    Error::tier(
        format!("FaultyTier: call {} of {:?}", f.nth, f.kind),
        std::io::Error::other(format!("injected fault: call {} of {:?}", f.nth, f.kind)),
    )
}

impl<T: Tier> Tier for FaultyTier<T> {
    fn tier_id(&self) -> Result<TierId> {
        self.inner.tier_id()
    }
    fn pin(&self, ids: &[ContainerId], and_after: Option<ContainerId>) -> Result<u64> {
        self.inner.pin(ids, and_after)
    }
    fn unpin(&self, token: u64) {
        self.inner.unpin(token);
    }
    fn hold(&self, hold: &crate::tier::JobHold) -> Result<()> {
        self.inner.hold(hold)
    }
    fn release_hold(&self, job: &uuid::Uuid) -> Result<()> {
        self.inner.release_hold(job)
    }
    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>> {
        let mut found = self.around(FaultKind::Locate, || self.inner.locate(fingerprints))?;
        for (fp, f) in fingerprints.iter().zip(found.iter_mut()) {
            if self.unindexed.contains(fp) {
                *f = None;
            }
        }
        Ok(found)
    }
    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>> {
        self.around(FaultKind::ListFiles, || self.inner.list_files(after, limit))
    }
    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>> {
        self.inner.file_entries(paths)
    }
    fn container_ids(&self) -> Result<Vec<ContainerId>> {
        self.around(FaultKind::ContainerIds, || self.inner.container_ids())
    }
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta> {
        let mut meta = self.around(FaultKind::ReadMetadata, || self.inner.read_metadata(id))?;
        meta.segments.retain(|e| !self.hidden.contains(&e.fingerprint));
        Ok(meta)
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        match self.arrive(FaultKind::ReadSegments) {
            Some(f) if f.corrupt => {
                let mut out = self.inner.read_segments(id, which)?;
                if let Some(b) = out.iter_mut().find(|b| !b.is_empty()) {
                    let mid = b.len() / 2;
                    b[mid] ^= 0x10;
                }
                Ok(out)
            }
            Some(f) => Err(injected(f)),
            None => self.inner.read_segments(id, which),
        }
    }
}

impl<T: SourceTier> SourceTier for FaultyTier<T> {
    fn fingerprint_count(&self) -> Result<u64> {
        self.inner.fingerprint_count()
    }
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        self.around(FaultKind::Fingerprints, || self.inner.fingerprints(after, limit))
    }
    fn remove_files(&self, entries: &[FileEntry]) -> Result<Vec<bool>> {
        self.around(FaultKind::RemoveFiles, || self.inner.remove_files(entries))
    }
    fn read_concurrency(&self) -> usize {
        self.inner.read_concurrency()
    }
}

impl<T: TargetTier> TargetTier for FaultyTier<T> {
    fn container_target_size(&self) -> u64 {
        self.inner.container_target_size()
    }
    fn write_container(&self, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Result<ContainerId> {
        self.around(FaultKind::WriteContainer, || self.inner.write_container(kind, segments))
    }
    fn upsert_files(&self, entries: &[FileEntry]) -> Result<()> {
        self.around(FaultKind::UpsertFiles, || self.inner.upsert_files(entries))
    }
    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64> {
        self.inner.retire_segments(suspects)
    }
    fn sorted_index_len(&self) -> Result<Option<u64>> {
        self.inner.sorted_index_len()
    }
    fn sorted_index_page(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        let mut page = self.around(FaultKind::Fingerprints, || self.inner.sorted_index_page(after, limit))?;
        page.retain(|(fp, _)| !self.unindexed.contains(fp));
        Ok(page)
    }
}
