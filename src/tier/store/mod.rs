//! Where a tier's sealed containers live: a directory ([`DirStore`]) or a
//! bucket ([`BucketStore`], feature `s3`). `IndexedTier` keeps its index,
//! namespace and counters in its own RocksDB either way and reaches the
//! container bytes only through this trait, so ingest, restore, scrub,
//! seeding and space reclamation are one code path over every store.
//!
//! The stores are siblings below the tier: they know the container format
//! and their own records (the bucket's journal and checkpoints), never the
//! tier's index or namespace database.

#[cfg(feature = "s3")]
pub(crate) mod bucket;
mod dir;

use std::path::{Path, PathBuf};
use std::sync::Arc;

#[cfg(feature = "s3")]
pub(crate) use bucket::BucketStore;
pub(crate) use dir::DirStore;

use crate::error::Result;
use crate::format::fingerprint::ContainerId;
use crate::format::seal::Sealer;
use crate::tier::{ContainerMeta, SegmentEntry};

/// What a store learned of its containers between calls (headers, opened
/// tables), by container id, at most `cap` entries: cleared when full.
/// Containers are immutable and ids are never reused, so an entry never
/// goes stale; a store forgets one it deletes.
pub(crate) struct Kept<T> {
    map: std::sync::Mutex<std::collections::HashMap<u64, T>>,
    cap: usize,
}

impl<T: Clone> Kept<T> {
    pub(crate) fn new(cap: usize) -> Kept<T> {
        Kept { map: std::sync::Mutex::new(std::collections::HashMap::new()), cap }
    }

    pub(crate) fn get(&self, id: ContainerId) -> Option<T> {
        crate::tier::lock(&self.map).get(&id.0).cloned()
    }

    pub(crate) fn keep(&self, id: ContainerId, value: T) {
        let mut m = crate::tier::lock(&self.map);
        if m.len() >= self.cap {
            m.clear();
        }
        m.insert(id.0, value);
    }

    // A directory store never forgets: it keeps sealed tables only, and a
    // deleted container's id is never asked for again.
    #[cfg_attr(not(feature = "s3"), allow(dead_code))]
    pub(crate) fn forget(&self, id: ContainerId) {
        crate::tier::lock(&self.map).remove(&id.0);
    }
}

/// One namespace change, as journaled to a store that keeps a copy of the
/// namespace (the object tier's bucket).
#[derive(Clone, Debug)]
pub(crate) enum NamespaceOp {
    /// Insert or replace the entry.
    Put(crate::tier::FileEntry),
    /// Remove the entry for this path.
    Delete(String),
}

/// Reads the namespace a page at a time: up to `limit` entries in path
/// order after `after` (empty at the end).
pub(crate) type NamespacePages<'a> = dyn FnMut(Option<&str>, usize) -> Result<Vec<crate::tier::FileEntry>> + 'a;

/// A container's head followed by its data pieces, in one buffer.
pub(crate) fn joined(mut head: Vec<u8>, data: &[&[u8]]) -> Vec<u8> {
    head.reserve_exact(data.iter().map(|d| d.len()).sum());
    for d in data {
        head.extend_from_slice(d);
    }
    head
}

/// Segments read into vectors of their own, as shared slices (no copy).
pub(crate) fn shared(segments: Vec<Vec<u8>>) -> Vec<bytes::Bytes> {
    segments.into_iter().map(bytes::Bytes::from).collect()
}

/// The container bytes of one tier. Every method's durability is the
/// tier's: when `put` or `delete` returns `Ok`, the change survives a
/// crash (or, for a bucket, is acknowledged by the store).
pub(crate) trait ContainerStore: Send + Sync + std::fmt::Debug {
    /// Where container `id` lives, for messages and the `path` of errors.
    fn location(&self, id: ContainerId) -> PathBuf;

    /// Stores a sealed container under `id`, durably and create-only: an
    /// existing container of that id is never overwritten.
    fn put(&self, id: ContainerId, bytes: Vec<u8>) -> Result<()>;

    /// As [`put`](Self::put), for the container whose bytes are `head`
    /// (its header and table) followed by `data` in order: a store that can
    /// write the pieces where they lie does not join them first. The
    /// default joins them.
    fn put_parts(&self, id: ContainerId, head: Vec<u8>, data: &[&[u8]]) -> Result<()> {
        self.put(id, joined(head, data))
    }

    /// The container's header and table, checked, reading no segment bytes.
    fn read_meta(&self, id: ContainerId) -> Result<ContainerMeta>;

    /// The chosen segments' stored bytes, in the order asked.
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>>;

    /// As [`read_segments`](Self::read_segments), as shared slices: a store
    /// that reads runs of segments into one buffer hands out slices of it.
    /// The default wraps `read_segments`' vectors (no copy either way).
    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<bytes::Bytes>> {
        Ok(shared(self.read_segments(id, which)?))
    }

    /// The whole container, every checksum checked (scrub).
    fn scrub(&self, id: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)>;

    /// Every stored container id, ascending, indexed or not.
    fn list(&self) -> Result<Vec<ContainerId>>;

    /// Removes container `id`, durably; a missing one is not an error.
    fn delete(&self, id: ContainerId) -> Result<()>;

    /// Removes containers `ids`, durably when this returns (a store may
    /// make them durable together: one directory sync for all of them).
    fn delete_many(&self, ids: &[ContainerId]) -> Result<()> {
        ids.iter().try_for_each(|id| self.delete(*id))
    }

    /// Deals with what a crash left: removes unfinished writes, and either
    /// removes the containers at or past `next_container` (written, never
    /// indexed) or returns them, ascending, for the tier to adopt.
    fn recover(&self, next_container: u64) -> Result<Vec<ContainerId>>;

    /// Records namespace changes in the store's own copy of the namespace,
    /// before the tier commits them locally, under sequence number `seq`.
    /// A store without one (a directory: the tier's RocksDB is the only
    /// copy) does nothing.
    fn journal(&self, _seq: u64, _ops: &[NamespaceOp]) -> Result<()> {
        Ok(())
    }

    /// Whether this store keeps a namespace journal (and so whether the
    /// tier must allocate journal sequence numbers).
    fn journals(&self) -> bool {
        false
    }

    /// Whether the journal entry `seq` just committed should be followed
    /// by a checkpoint of the whole namespace.
    fn checkpoint_due(&self, _seq: u64) -> bool {
        false
    }

    /// Writes a checkpoint of the namespace as of journal entry `seq`,
    /// reading it in pages through `page(after, limit)`, then prunes what
    /// it makes redundant. Called under the namespace lock, after `seq`
    /// is committed locally; a failure loses nothing (the journal is
    /// whole), so the tier only logs it.
    fn checkpoint(&self, _seq: u64, _page: &mut NamespacePages<'_>) -> Result<()> {
        Ok(())
    }

    /// The journal entries the store holds from sequence number `seq` on,
    /// in order, each with its changes: what a crash between the store's
    /// journal and the local commit left to roll forward (`dir` names the
    /// metadata in errors). An error if the store's own namespace is ahead
    /// of `seq` by more than its journal holds: the metadata is older than
    /// the store, and only a rebuild from the store can catch it up. A
    /// store that keeps no journal has nothing to roll forward.
    fn journal_since(&self, _seq: u64, _dir: &Path) -> Result<Vec<(u64, Vec<NamespaceOp>)>> {
        Ok(Vec::new())
    }

    /// Whether reads wait on a network (an object store): callers keep
    /// more of them in flight than they have cores.
    fn remote(&self) -> bool {
        false
    }

    /// The requests this store has made since it was opened, if it makes
    /// any (an object store; a directory makes none).
    fn requests(&self) -> Option<crate::tier::RequestCounts> {
        None
    }

    /// Seals every container (and journal entry and checkpoint) written
    /// from now on under `sealer`, and opens only sealed ones: the tier is
    /// encrypted. Called once, right after the store is made.
    fn set_sealer(&mut self, sealer: Arc<Sealer>);

    /// The tier's key slots record, if the store holds one (an encrypted
    /// tier's).
    fn key_slots(&self) -> Result<Option<Vec<u8>>>;

    /// Writes the key slots record, durably and atomically (a crash leaves
    /// the old record or the new one): create-only when `create` (a second
    /// creator of one tier finds the first's record and is refused),
    /// replacing the old one otherwise.
    fn put_key_slots(&self, bytes: &[u8], create: bool) -> Result<()>;

    /// The store's name for logs: a directory or `s3://bucket/prefix`.
    fn describe(&self) -> String;
}
