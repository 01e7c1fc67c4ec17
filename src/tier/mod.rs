//! The tier traits: what the seeding engine needs from a source and a target.
//!
//! They are synchronous, object-safe and batch-oriented: each call carries
//! many fingerprints or segments so that an implementation over a network
//! or a database pays its round trip once per batch. The engine only ever
//! sees these traits; it never sees a path on disk, and a tier never sees
//! the PHF or PHV.

pub(crate) mod faulty;
pub(crate) mod indexed;
pub(crate) mod pack;
pub(crate) mod read;
pub(crate) mod store;

use crate::error::Result;
use crate::format::fingerprint::{ContainerId, Fingerprint};

pub use crate::format::entries::{
    Codec, ContainerKind, ContainerMeta, FileAttrs, FileEntry, FileKind, SegmentEntry, StoredSegment,
};

/// Locks `m`, taking the data of a poisoned lock as it is: every mutex in
/// the tiers guards a cache or a counter that a panicking holder leaves
/// consistent (each update is one assignment).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Requests made to an object store, by kind, and the bytes they carried.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RequestCounts {
    /// PUT requests (create-only writes of containers, journal entries,
    /// checkpoints and the tier record).
    pub puts: u64,
    /// GET requests, whole or ranged (each ranged read the client sends
    /// counts once).
    pub gets: u64,
    /// LIST requests (pages of a listing).
    pub lists: u64,
    /// DELETE requests.
    pub deletes: u64,
    /// Bytes sent in PUT bodies.
    pub bytes_up: u64,
    /// Bytes received in GET bodies.
    pub bytes_down: u64,
}

impl RequestCounts {
    /// All requests.
    pub fn total(&self) -> u64 {
        self.puts + self.gets + self.lists + self.deletes
    }
}

/// One index entry: a fingerprint and the container that holds it.
pub type IndexEntry = (Fingerprint, ContainerId);

/// A tier's stable identity, stored in the tier when it is created.
pub type TierId = uuid::Uuid;

/// A job's durable hold on a tier's containers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JobHold {
    /// The job's id.
    pub job_id: uuid::Uuid,
    /// The job's state directory, as the job gave it.
    pub state_dir: std::path::PathBuf,
    /// Every container with a smaller id is held (a source snapshot: ids
    /// only grow, so these are the containers that existed at Select).
    pub below: Option<ContainerId>,
    /// Every container from this id on is held (what the job writes on a
    /// target).
    pub from: Option<ContainerId>,
}

impl JobHold {
    /// Whether the hold keeps container `id`.
    pub fn holds(&self, id: ContainerId) -> bool {
        self.below.is_some_and(|b| id < b) || self.from.is_some_and(|f| id >= f)
    }
}

/// What every tier offers, source or target.
pub trait Tier: Send + Sync {
    /// The tier's stable UUID. It never changes for the life of the tier.
    fn tier_id(&self) -> Result<TierId>;

    /// For each fingerprint, the container that holds it in this tier's
    /// index, or `None`. The answer reflects every container whose
    /// [`TargetTier::write_container`] has returned.
    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>>;

    /// Up to `limit` namespace entries in path order, starting after `after`.
    /// An empty result means the end.
    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>>;

    /// The namespace entries for these paths (`None` where there is none).
    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>>;

    /// Every container id, ascending. Ids are allocated in increasing
    /// order: a container written later has a larger id.
    fn container_ids(&self) -> Result<Vec<ContainerId>>;

    /// A container's metadata (kind and segment table), reading no segment
    /// bytes. Errors with [`TierError::MissingContainer`](crate::TierError::MissingContainer)
    /// if the container does not exist, and with a corruption error if it
    /// fails its checks. Both roles need it: the engine reads source
    /// containers to copy them and target containers to verify them.
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta>;

    /// The bytes of the chosen segments of one container, in the order
    /// asked. `which` holds entries of that container's metadata. The bytes
    /// are returned as stored (compressed ones compressed); the caller
    /// decodes and verifies them.
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>>;

    /// The same answer as [`read_segments`](Self::read_segments), as shared
    /// byte slices: a tier that reads a run of adjacent segments into one
    /// buffer answers slices of it, with no copy per segment. Copy reads
    /// source containers this way and hands the slices to the target's
    /// writer as they are. The default wraps `read_segments`' vectors
    /// (no copy either); a tier overrides it only to save that copy.
    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<bytes::Bytes>> {
        Ok(self.read_segments(id, which)?.into_iter().map(bytes::Bytes::from).collect())
    }

    /// Keeps containers `ids` (and, with `and_after`, every container from
    /// that id on) from being reclaimed until [`unpin`](Self::unpin) is
    /// called with the returned token. A running job pins its snapshot on
    /// the source and the containers it writes on the target. The default,
    /// for a tier that never reclaims space, pins nothing.
    fn pin(&self, _ids: &[ContainerId], _and_after: Option<ContainerId>) -> Result<u64> {
        Ok(0)
    }

    /// Releases a pin taken with [`pin`](Self::pin).
    fn unpin(&self, _token: u64) {}

    /// Durably records `hold` (replacing the same job's earlier one): the
    /// containers it names are kept from reclamation, by any process,
    /// until [`release_hold`](Self::release_hold) or until the job no
    /// longer exists (reclamation may drop the hold of a job whose state
    /// directory holds no such unfinished job). A job holds its snapshot
    /// on the source and what it writes on each target, from Select until
    /// it completes, suspended and crashed included.
    ///
    /// Durability: on `Ok`, the hold survives a crash. The default, for a
    /// tier that never reclaims space, records nothing.
    fn hold(&self, _hold: &JobHold) -> Result<()> {
        Ok(())
    }

    /// Drops job `job`'s hold (nothing if it has none). Durable on `Ok`.
    fn release_hold(&self, _job: &uuid::Uuid) -> Result<()> {
        Ok(())
    }

    /// Every namespace entry, in path order, paging through
    /// [`list_files`](Self::list_files).
    fn all_files(&self) -> Result<Vec<FileEntry>> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_files(after.as_deref(), 4096)?;
            let Some(last) = page.last() else { return Ok(out) };
            after = Some(last.path.clone());
            out.extend(page);
        }
    }
}

/// A tier data is read from.
///
/// Reads must be repeatable: a sealed container's metadata and segments do
/// not change between calls. The engine snapshots the container ids at the
/// start of a job and ignores containers written later.
pub trait SourceTier: Tier {
    /// How many fingerprints the index holds now.
    fn fingerprint_count(&self) -> Result<u64>;

    /// Up to `limit` index entries (fingerprint, container), starting after
    /// the entry whose fingerprint is `after` (the last one of the previous
    /// page). The order is the tier's choice but must be the same on every
    /// pass (`IndexedTier` uses fingerprint order). Paging lets the engine
    /// stream an index of any size without holding it in memory, and lets
    /// the PHF builder pass over it several times. Empty means the end.
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>>;

    /// Calls `f` with every page of the index in turn, paging through
    /// [`fingerprints`](Self::fingerprints) with pages of `page` entries.
    fn for_each_index_page(&self, page: usize, f: &mut dyn FnMut(&[IndexEntry]) -> Result<()>) -> Result<()> {
        let mut after: Option<Fingerprint> = None;
        loop {
            let entries = self.fingerprints(after.as_ref(), page)?;
            let Some(last) = entries.last() else { return Ok(()) };
            after = Some(last.0);
            f(&entries)?;
        }
    }

    /// Removes namespace entries, in move mode. An entry is removed only if
    /// it still equals the given one (so a file rewritten or touched since
    /// the job selected it is kept). Returns, per entry, `true` if the path
    /// is now absent (removed by this call, or already gone) and `false` if
    /// it was kept because it changed. Durable on return; idempotent.
    fn remove_files(&self, entries: &[FileEntry]) -> Result<Vec<bool>>;

    /// How many containers a caller may read from this tier at once: Copy
    /// keeps this many container reads in flight, in order. A tier whose
    /// reads wait on a network (an object store) answers more than one; a
    /// local disk, one (the default).
    fn read_concurrency(&self) -> usize {
        1
    }
}

/// A tier data is written to.
pub trait TargetTier: Tier {
    /// The size, in bytes, that the engine should pack target containers
    /// to: their segments' stored bytes plus a table entry each, so a
    /// container of tiny segments holds as few as its file size says.
    fn container_target_size(&self) -> u64;

    /// Writes one container of the given kind holding these segments, as
    /// stored (raw or compressed), whose fingerprints the caller has
    /// verified.
    ///
    /// Durability: when this returns `Ok`, the container is sealed (written,
    /// fsynced, renamed, its directory fsynced) and every segment in it is
    /// durably indexed, so [`Tier::locate`] finds it even after a crash. A
    /// fingerprint the tier already indexes keeps its existing mapping,
    /// unless the container it maps to is missing, unreadable or does not
    /// list it: then the new container takes it over (the engine writes a
    /// segment again only when its indexed container is unusable). After
    /// an error, the tier may refuse further writes until it is reopened.
    fn write_container(&self, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Result<ContainerId>;

    /// Inserts or replaces namespace entries. Durable on return; idempotent.
    fn upsert_files(&self, entries: &[FileEntry]) -> Result<()>;

    /// Tells the tier that a read of these `(fingerprint, container)`
    /// pairs returned bytes that do not hash to the fingerprint, a table
    /// that does not list it, or a table that fails its checks.
    ///
    /// The tier re-reads each suspect itself (past any cache) and, for
    /// those that are really bad, durably stops counting the segment as
    /// present: afterwards [`Tier::locate`] no longer names that container
    /// for it, so the next [`write_container`](Self::write_container) of
    /// the segment becomes its home, and a scrub and space reclamation
    /// treat the bad copy as garbage. An entry that already names another
    /// container is left alone. Returns how many index entries it dropped.
    /// A suspect that re-reads fine is kept (the caller's copy was damaged
    /// on the way). Transient errors are returned, never taken for rot.
    ///
    /// Durability: on `Ok`, the retirement survives a crash.
    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64>;

    /// How many entries the index holds, if this tier can page its index
    /// in ascending fingerprint order ([`sorted_index_page`](Self::sorted_index_page)).
    /// Verify then proves a job's leaves by one sequential merge with the
    /// index when that reads less than a lookup per leaf would. `None`
    /// (the default): Verify looks every leaf up.
    fn sorted_index_len(&self) -> Result<Option<u64>> {
        Ok(None)
    }

    /// Up to `limit` index entries in strictly ascending fingerprint order,
    /// starting after `after`; empty at the end. Called only when
    /// [`sorted_index_len`](Self::sorted_index_len) answered `Some`.
    fn sorted_index_page(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        let _ = (after, limit);
        Err(crate::error::Error::tier("sorted_index_page", "this tier does not page its index in order"))
    }
}

// A reference to a tier is a tier, so decorators such as `FaultyTier` can
// wrap a tier the caller keeps using.
impl<T: Tier + ?Sized> Tier for &T {
    fn tier_id(&self) -> Result<TierId> {
        (**self).tier_id()
    }
    fn pin(&self, ids: &[ContainerId], and_after: Option<ContainerId>) -> Result<u64> {
        (**self).pin(ids, and_after)
    }
    fn unpin(&self, token: u64) {
        (**self).unpin(token);
    }
    fn hold(&self, hold: &JobHold) -> Result<()> {
        (**self).hold(hold)
    }
    fn release_hold(&self, job: &uuid::Uuid) -> Result<()> {
        (**self).release_hold(job)
    }
    fn locate(&self, fingerprints: &[Fingerprint]) -> Result<Vec<Option<ContainerId>>> {
        (**self).locate(fingerprints)
    }
    fn list_files(&self, after: Option<&str>, limit: usize) -> Result<Vec<FileEntry>> {
        (**self).list_files(after, limit)
    }
    fn file_entries(&self, paths: &[String]) -> Result<Vec<Option<FileEntry>>> {
        (**self).file_entries(paths)
    }
    fn container_ids(&self) -> Result<Vec<ContainerId>> {
        (**self).container_ids()
    }
    fn read_metadata(&self, id: ContainerId) -> Result<ContainerMeta> {
        (**self).read_metadata(id)
    }
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        (**self).read_segments(id, which)
    }
    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<bytes::Bytes>> {
        (**self).read_segments_shared(id, which)
    }
}

impl<T: SourceTier + ?Sized> SourceTier for &T {
    fn fingerprint_count(&self) -> Result<u64> {
        (**self).fingerprint_count()
    }
    fn fingerprints(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        (**self).fingerprints(after, limit)
    }
    fn remove_files(&self, entries: &[FileEntry]) -> Result<Vec<bool>> {
        (**self).remove_files(entries)
    }
    fn read_concurrency(&self) -> usize {
        (**self).read_concurrency()
    }
}

impl<T: TargetTier + ?Sized> TargetTier for &T {
    fn container_target_size(&self) -> u64 {
        (**self).container_target_size()
    }
    fn write_container(&self, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Result<ContainerId> {
        (**self).write_container(kind, segments)
    }
    fn upsert_files(&self, entries: &[FileEntry]) -> Result<()> {
        (**self).upsert_files(entries)
    }
    fn retire_segments(&self, suspects: &[(Fingerprint, ContainerId)]) -> Result<u64> {
        (**self).retire_segments(suspects)
    }
    fn sorted_index_len(&self) -> Result<Option<u64>> {
        (**self).sorted_index_len()
    }
    fn sorted_index_page(&self, after: Option<&Fingerprint>, limit: usize) -> Result<Vec<(Fingerprint, ContainerId)>> {
        (**self).sorted_index_page(after, limit)
    }
}
