//! Where a tier's sealed containers live: a directory ([`DirStore`]) or a
//! bucket (the object tier's store). `IndexedTier` keeps its index,
//! namespace and counters in its own RocksDB either way and reaches the
//! container bytes only through this trait, so ingest, restore, scrub,
//! seeding and space reclamation are one code path over both.

use std::fs::{self, File};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result, TierError};
use crate::format::container;
use crate::format::durable::{self, TEMP_SUFFIX};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{container_file, parse_container_file};
use crate::tier::{ContainerMeta, SegmentEntry};

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

/// The container bytes of one tier. Every method's durability is the
/// tier's: when `put` or `delete` returns `Ok`, the change survives a
/// crash (or, for a bucket, is acknowledged by the store).
pub(crate) trait ContainerStore: Send + Sync + std::fmt::Debug {
    /// Where container `id` lives, for messages and the `path` of errors.
    fn location(&self, id: ContainerId) -> PathBuf;

    /// Stores a sealed container under `id`, durably and create-only: an
    /// existing container of that id is never overwritten.
    fn put(&self, id: ContainerId, bytes: Vec<u8>) -> Result<()>;

    /// The container's header and table, checked, reading no segment bytes.
    fn read_meta(&self, id: ContainerId) -> Result<ContainerMeta>;

    /// The chosen segments' stored bytes, in the order asked.
    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>>;

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

    /// The store's name for logs: a directory or `s3://bucket/prefix`.
    fn describe(&self) -> String;
}

/// Containers as files in a directory (`containers/<id:016x>.tsc`).
#[derive(Debug)]
pub(crate) struct DirStore {
    dir: PathBuf,
}

impl DirStore {
    pub(crate) fn new(dir: PathBuf) -> DirStore {
        DirStore { dir }
    }

    fn open(&self, id: ContainerId) -> Result<(File, PathBuf)> {
        let path = self.location(id);
        match File::open(&path) {
            Ok(f) => Ok((f, path)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                Err(Error::Tier(TierError::MissingContainer { id, context: format!(" (expected at {})", path.display()) }))
            }
            Err(e) => Err(Error::io(path, e)),
        }
    }
}

impl ContainerStore for DirStore {
    fn location(&self, id: ContainerId) -> PathBuf {
        self.dir.join(container_file(id))
    }

    fn put(&self, id: ContainerId, bytes: Vec<u8>) -> Result<()> {
        durable::write_durable(&self.location(id), &bytes, true)
    }

    fn read_meta(&self, id: ContainerId) -> Result<ContainerMeta> {
        let (f, path) = self.open(id)?;
        container::read_meta(&f, id, &path)
    }

    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        // Only the header: the caller already holds the table.
        let (f, path) = self.open(id)?;
        let header = container::read_header(&f, id, &path)?;
        container::read_segments(&f, &header, which, &path)
    }

    fn scrub(&self, id: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
        container::scrub_file(&self.location(id), id)
    }

    fn list(&self) -> Result<Vec<ContainerId>> {
        let mut ids = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))? {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            if let Some(id) = parse_container_file(&entry.file_name().to_string_lossy()) {
                ids.push(id);
            }
        }
        ids.sort_unstable();
        Ok(ids)
    }

    fn delete(&self, id: ContainerId) -> Result<()> {
        self.delete_many(&[id])
    }

    fn delete_many(&self, ids: &[ContainerId]) -> Result<()> {
        for id in ids {
            let path = self.location(*id);
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io(&path, e)),
            }
        }
        durable::sync_dir(&self.dir)
    }

    fn recover(&self, next_container: u64) -> Result<Vec<ContainerId>> {
        // A directory and its database are one unit on one disk: a
        // container past the counter is the last run's and goes.
        let entries = fs::read_dir(&self.dir).map_err(|e| Error::io(&self.dir, e))?;
        let mut removed = false;
        for entry in entries {
            let entry = entry.map_err(|e| Error::io(&self.dir, e))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let orphan = if name.ends_with(TEMP_SUFFIX) {
                Some("unfinished temp file")
            } else if let Some(id) = parse_container_file(&name).map(|c| c.0) {
                (id >= next_container).then_some("container written but never indexed")
            } else {
                log::warn!("{}: unexpected file {name:?} left alone", self.dir.display());
                None
            };
            if let Some(why) = orphan {
                let p = entry.path();
                log::warn!("recovery: removing {} ({why})", p.display());
                fs::remove_file(&p).map_err(|e| Error::io(&p, e))?;
                removed = true;
            }
        }
        if removed {
            durable::sync_dir(&self.dir)?;
        }
        Ok(Vec::new())
    }

    fn describe(&self) -> String {
        self.dir.display().to_string()
    }
}
