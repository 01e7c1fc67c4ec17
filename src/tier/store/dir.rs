//! The directory store: sealed containers as files in one directory.

use std::fs::{self, File};
use std::path::PathBuf;

use super::ContainerStore;
use crate::error::{Error, Result, TierError};
use crate::format::container;
use crate::format::durable::{self, TEMP_SUFFIX};
use crate::format::fingerprint::ContainerId;
use crate::format::layout::{container_file, parse_container_file};
use crate::tier::{ContainerMeta, SegmentEntry};

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
