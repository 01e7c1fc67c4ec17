//! The directory store: sealed containers as files in one directory.

use std::fs::{self, File};
use std::path::PathBuf;
use std::sync::Arc;

use super::{ContainerStore, Kept};
use crate::error::{Error, Result, TierError};
use crate::format::durable::{self, TEMP_SUFFIX};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{container_file, parse_container_file};
use crate::format::open::{self, SealedLayout};
use crate::format::seal::Sealer;
use crate::tier::{ContainerMeta, SegmentEntry};

/// Containers as files in a directory (`containers/<id:016x>.tsc`); an
/// encrypted tier's key slots in the file `keys` beside that directory.
pub(crate) struct DirStore {
    dir: PathBuf,
    sealer: Option<Arc<Sealer>>,
    /// An encrypted tier's opened tables (the segments' tags), per
    /// container, for segment reads: a restore of many small files reads
    /// one container many times. Cleared when full.
    layouts: Kept<Arc<SealedLayout>>,
}

impl std::fmt::Debug for DirStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirStore").field("dir", &self.dir).field("sealed", &self.sealer.is_some()).finish()
    }
}

/// Sealed layouts a directory store keeps (a 4 MiB container's is about
/// 16 KiB: at most some 16 MiB).
const LAYOUT_CACHE: usize = 1024;

/// The key slots file of the tier whose containers are in `containers`.
pub(crate) fn keys_path(containers: &std::path::Path) -> PathBuf {
    containers.with_file_name(crate::format::layout::TIER_KEYS)
}

impl DirStore {
    pub(crate) fn new(dir: PathBuf) -> DirStore {
        DirStore { dir, sealer: None, layouts: Kept::new(LAYOUT_CACHE) }
    }

    fn sealer(&self) -> Option<&Sealer> {
        self.sealer.as_deref()
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
        let bytes = match self.sealer() {
            Some(s) => crate::format::seal::seal_container(s, &bytes, id)?,
            None => bytes,
        };
        durable::write_durable(&self.location(id), &bytes, true)
    }

    fn put_parts(&self, id: ContainerId, head: Vec<u8>, data: &[&[u8]]) -> Result<()> {
        if self.sealer.is_some() {
            // Sealing reads the whole plaintext container and writes anew.
            return self.put(id, super::joined(head, data));
        }
        // The segments go to the file from where Copy's reader left them:
        // no second copy in user space.
        let mut w = durable::DurableFile::create(&self.location(id))?;
        w.write(&head)?;
        w.write_parts(data)?;
        w.finish(true)
    }

    fn read_meta(&self, id: ContainerId) -> Result<ContainerMeta> {
        let (f, path) = self.open(id)?;
        Ok(open::read_table(&f, id, &path, self.sealer())?.1.into_meta())
    }

    fn read_segments(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<Vec<u8>>> {
        // Only the header (and for a sealed container its table, which
        // holds the segments' tags): the caller already holds the table.
        let (f, path) = self.open(id)?;
        let cached = self.sealer.as_ref().and_then(|_| self.layouts.get(id));
        let hit = cached.is_some();
        let (got, layout) = open::read_segments(&f, id, which, &path, self.sealer(), cached)?;
        if let (Some(l), false) = (layout, hit) {
            self.layouts.keep(id, l);
        }
        Ok(got)
    }

    fn read_segments_shared(&self, id: ContainerId, which: &[SegmentEntry]) -> Result<Vec<bytes::Bytes>> {
        if self.sealer.is_some() {
            // Opened segment by segment, each into its own vector.
            return Ok(super::shared(self.read_segments(id, which)?));
        }
        let (f, path) = self.open(id)?;
        let header = crate::format::container::read_header(&f, id, &path)?;
        crate::format::container::read_ranges_shared(&f, header.data_start(), header.data_len, id, which, &path)
    }

    fn scrub(&self, id: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
        let path = self.location(id);
        if !path.exists() {
            self.open(id)?;
        }
        open::scrub_file(&path, id, self.sealer())
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

    fn set_sealer(&mut self, sealer: Arc<Sealer>) {
        self.sealer = Some(sealer);
    }

    fn key_slots(&self) -> Result<Option<Vec<u8>>> {
        let path = keys_path(&self.dir);
        match fs::read(&path) {
            Ok(b) => Ok(Some(b)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(path, e)),
        }
    }

    fn put_key_slots(&self, bytes: &[u8], _create: bool) -> Result<()> {
        // A directory tier's first record is written inside the tier's
        // creation (its temp directory is renamed into place whole), so
        // no second creator can race it here.
        durable::write_durable(&keys_path(&self.dir), bytes, true)
    }
}
