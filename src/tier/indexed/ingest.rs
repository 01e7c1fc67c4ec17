//! Ingest: files, directory trees or readers -> segments -> containers.

use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use std::collections::HashSet;

use rayon::prelude::*;

use super::{IndexedTier, validate_path};
use crate::error::{Error, Result, TierError};
use crate::format::container::compress;
use crate::format::fingerprint::Fingerprint;
use crate::format::tree::{Child, build_tree};
use crate::tier::ContainerKind;
use crate::tier::pack::{OwnedSegment, Packer};
use crate::tier::{FileAttrs, FileEntry, FileKind, TargetTier, Tier};

/// What an ingest did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IngestStats {
    /// Paths under the ingested trees that could not be read (too long,
    /// unreadable, vanished), each with why; the rest was stored. Not
    /// counted in `skipped`.
    pub unreadable: Vec<String>,
    /// Entries added to the namespace (files and symlinks).
    pub files: u64,
    /// Of `files`, how many are symlinks (stored as links, never followed).
    pub symlinks: u64,
    /// Entries skipped (sockets, FIFOs, devices), each with a warning.
    pub skipped: u64,
    /// Sum of the files' sizes.
    pub logical_bytes: u64,
    /// Raw bytes of the new segments stored (data and recipes).
    pub new_bytes: u64,
    /// The same segments' bytes as stored (after compression).
    pub stored_bytes: u64,
    /// Segments stored for the first time.
    pub segments_new: u64,
    /// Segments found already stored (in the tier or earlier in the batch).
    pub segments_dedup: u64,
}

/// How many chunks are hashed in parallel at a time.
const HASH_BATCH: usize = 64;

/// An ingest session: files added to it share containers, and become
/// visible in the namespace together when [`finish`](Self::finish) has
/// sealed every container they depend on. Dropping a session without
/// finishing it adds no file (sealed containers stay, unreferenced but
/// indexed, and are reused by later ingests).
pub struct Ingest<'a> {
    tier: &'a IndexedTier,
    /// Held for the session: space reclamation waits (or refuses) while
    /// a session may deduplicate against segments it would find dead.
    _gate: std::sync::RwLockReadGuard<'a, ()>,
    data: Packer,
    meta: Packer,
    entries: Vec<FileEntry>,
    stats: IngestStats,
}

impl<'a> Ingest<'a> {
    fn new(tier: &'a IndexedTier) -> Self {
        let size = tier.container_target_size();
        Ingest {
            tier,
            _gate: tier.gate.read().unwrap_or_else(std::sync::PoisonError::into_inner),
            data: Packer::new(ContainerKind::Data, size),
            meta: Packer::new(ContainerKind::Meta, size),
            entries: Vec::new(),
            stats: IngestStats::default(),
        }
    }

    /// Stores the segments that are neither pending in this batch nor in
    /// the tier's index (one batched lookup per call).
    fn store(&mut self, kind: ContainerKind, segs: Vec<(Fingerprint, Vec<u8>)>) -> Result<()> {
        let fps: Vec<Fingerprint> = segs.iter().map(|(f, _)| *f).collect();
        let known = self.tier.locate(&fps)?;
        // Decide what is new against the index as looked up and what the
        // packers hold now, before anything below seals: a packer forgets
        // what it held once it seals, and the lookup predates that seal, so
        // deciding later could store a segment twice (the bug "ingest
        // stores a segment twice when its container seals between two
        // copies of it"). A segment repeated within this call is new once.
        let mut new_here: HashSet<Fingerprint> = HashSet::new();
        let mut fresh: Vec<(Fingerprint, Vec<u8>)> = Vec::new();
        for ((fp, bytes), k) in segs.into_iter().zip(known) {
            // Either packer: the same bytes can be a data segment and a
            // recipe, and one copy serves both.
            let pending = self.data.holds(&fp) || self.meta.holds(&fp);
            if k.is_some() || pending || !new_here.insert(fp) {
                self.stats.segments_dedup += 1;
                continue;
            }
            fresh.push((fp, bytes));
        }
        // Compress only what is stored, in parallel.
        let level = self.tier.config.compression_level;
        let stored: Vec<OwnedSegment> = fresh
            .into_par_iter()
            .map(|(fingerprint, raw)| {
                let (bytes, codec) = compress(&raw, level);
                OwnedSegment { fingerprint, bytes: bytes.into(), raw_len: raw.len() as u32, codec }
            })
            .collect();
        for seg in stored {
            self.stats.segments_new += 1;
            self.stats.new_bytes += u64::from(seg.raw_len);
            self.stats.stored_bytes += seg.bytes.len() as u64;
            let packer = match kind {
                ContainerKind::Data => &mut self.data,
                ContainerKind::Meta => &mut self.meta,
            };
            if let Some(full) = packer.add(seg, 0) {
                full.write(self.tier)?;
            }
        }
        Ok(())
    }

    /// Adds one file from a reader under namespace path `name`, with
    /// default attributes (a regular file, no mode or owner recorded).
    pub fn add_reader(&mut self, name: &str, mtime: i64, reader: &mut dyn Read) -> Result<()> {
        self.add_reader_with(name, mtime, FileAttrs::default(), reader)
    }

    /// Adds one entry from a reader under namespace path `name`, with the
    /// attributes the caller knows (from a tar header, say). For a
    /// [`FileKind::Symlink`], `reader` yields the link's target.
    pub fn add_reader_with(&mut self, name: &str, mtime: i64, attrs: FileAttrs, reader: &mut dyn Read) -> Result<()> {
        validate_path(name)?;
        if attrs.mtime_nanos >= 1_000_000_000 {
            return Err(Error::InvalidConfig(format!("{name}: mtime_nanos {} is not below 10^9", attrs.mtime_nanos)));
        }
        let cfg = self.tier.config;
        let chunker = fastcdc::v2020::StreamCDC::new(reader, cfg.chunk_min, cfg.chunk_avg, cfg.chunk_max);
        let mut leaves = Vec::new();
        let mut size = 0u64;
        let mut pending: Vec<Vec<u8>> = Vec::with_capacity(HASH_BATCH);
        let flush = |session: &mut Self, pending: &mut Vec<Vec<u8>>, leaves: &mut Vec<Child>| -> Result<()> {
            let hashed: Vec<(Fingerprint, Vec<u8>)> =
                std::mem::take(pending).into_par_iter().map(|d| (Fingerprint::of(&d), d)).collect();
            leaves.extend(hashed.iter().map(|(f, d)| Child { fingerprint: *f, len: d.len() as u64 }));
            session.store(ContainerKind::Data, hashed)
        };
        for chunk in chunker {
            let chunk = chunk.map_err(|e| Error::io(name, std::io::Error::other(e.to_string())))?;
            size += chunk.length as u64;
            pending.push(chunk.data);
            if pending.len() == HASH_BATCH {
                flush(self, &mut pending, &mut leaves)?;
            }
        }
        flush(self, &mut pending, &mut leaves)?;
        let mut recipes = Vec::new();
        let (root, height) = build_tree(leaves, cfg.fanout as usize, &mut |fp, bytes| {
            recipes.push((fp, bytes));
            Ok(())
        })
        .map_err(|e| match e {
            Error::Tier(TierError::TreeTooTall { max_height, .. }) => {
                Error::Tier(TierError::TreeTooTall { path: name.to_string(), max_height })
            }
            e => e,
        })?;
        self.store(ContainerKind::Meta, recipes)?;
        self.stats.files += 1;
        if attrs.kind == FileKind::Symlink {
            self.stats.symlinks += 1;
        }
        self.stats.logical_bytes += size;
        self.entries.push(FileEntry { path: name.to_string(), size, mtime, root, height, attrs });
        Ok(())
    }

    /// Adds a file or directory tree at `path` under namespace path `name`.
    pub fn add_path(&mut self, path: &Path, name: &str) -> Result<()> {
        self.add_path_at(path, name, false)
    }

    /// [`add_path`](Self::add_path), following `path` itself if it is a
    /// symlink (as `cp -H` does for its arguments), never those below it.
    pub fn add_path_following(&mut self, path: &Path, name: &str) -> Result<()> {
        self.add_path_at(path, name, true)
    }

    fn add_path_at(&mut self, path: &Path, name: &str, follow: bool) -> Result<()> {
        let md = if follow { fs::metadata(path) } else { fs::symlink_metadata(path) };
        let md = md.map_err(|e| Error::io(path, e))?;
        let ft = md.file_type();
        if ft.is_dir() {
            let mut children: Vec<_> = fs::read_dir(path)
                .map_err(|e| Error::io(path, e))?
                .collect::<std::io::Result<Vec<_>>>()
                .map_err(|e| Error::io(path, e))?;
            children.sort_by_key(std::fs::DirEntry::file_name);
            for c in children {
                let fname = c.file_name();
                let Some(fname) = fname.to_str() else {
                    log::warn!("skipping {}: name is not UTF-8", c.path().display());
                    self.stats.skipped += 1;
                    continue;
                };
                self.add_path_skipping(&c.path(), &format!("{name}/{fname}"))?;
            }
            Ok(())
        } else if ft.is_file() || ft.is_symlink() {
            // The signed seconds and the nanoseconds as stat gives them: an
            // mtime before 1970 stays before 1970 (the bug "an mtime
            // before 1970 is stored as 1970").
            let nanos = u32::try_from(md.mtime_nsec()).ok().filter(|n| *n < 1_000_000_000).unwrap_or(0);
            let owner = Some((md.uid(), md.gid()));
            let read_err = |e: Error| match e {
                // Only a read of the input names the input file: an error
                // writing the tier (a full disk) names the tier's file (the
                // bug "disk-full on the tier reported as an I/O error on the
                // input file").
                Error::Tier(TierError::Io { path: p, source }) if p.as_os_str() == name => Error::io(path, source),
                e => e,
            };
            if ft.is_symlink() {
                // The link itself, never what it points to: its target
                // string is the entry's content (Linux ignores a link's
                // own mode, so none is kept).
                let target = fs::read_link(path).map_err(|e| Error::io(path, e))?;
                let attrs = FileAttrs { kind: FileKind::Symlink, mode: None, owner, mtime_nanos: nanos };
                let mut bytes = target.as_os_str().as_bytes();
                return self.add_reader_with(name, md.mtime(), attrs, &mut bytes).map_err(read_err);
            }
            let attrs = FileAttrs { kind: FileKind::File, mode: Some(md.mode() & 0o7777), owner, mtime_nanos: nanos };
            let mut f = fs::File::open(path).map_err(|e| Error::io(path, e))?;
            self.add_reader_with(name, md.mtime(), attrs, &mut f).map_err(read_err)
        } else {
            log::warn!("skipping {}: not a regular file, symlink or directory", path.display());
            self.stats.skipped += 1;
            Ok(())
        }
    }

    /// Like [`add_path`](Self::add_path), but a path that cannot be read
    /// (too long for the system, unreadable, vanished meanwhile) is
    /// skipped with a warning naming it, so that one bad path does not
    /// lose the rest of a tree (the bug "one path over PATH_MAX fails the
    /// whole ingest and stores nothing"). Errors writing the tier still
    /// stop the session.
    fn add_path_skipping(&mut self, path: &Path, name: &str) -> Result<()> {
        match self.add_path(path, name) {
            Err(Error::Tier(TierError::Io { path: p, source })) if p.starts_with(path) || p.as_os_str() == name => {
                log::warn!("skipping {}: {source}", p.display());
                self.stats.unreadable.push(format!("{}: {source}", p.display()));
                Ok(())
            }
            Err(Error::Tier(TierError::InvalidPath { path: p, reason })) => {
                log::warn!("skipping {p}: {reason}");
                self.stats.unreadable.push(format!("{p}: {reason}"));
                Ok(())
            }
            r => r,
        }
    }

    /// Seals the last containers, then publishes the namespace entries, so
    /// no entry is ever durable before the segments it names.
    pub fn finish(mut self) -> Result<IngestStats> {
        for packer in [&mut self.data, &mut self.meta] {
            if let Some(last) = packer.take() {
                last.write(self.tier)?;
            }
        }
        for chunk in self.entries.chunks(1024) {
            self.tier.upsert_files(chunk)?;
        }
        Ok(std::mem::take(&mut self.stats))
    }
}

impl IndexedTier {
    /// Starts an ingest session, for adding many files one at a time.
    pub fn ingest_session(&self) -> Ingest<'_> {
        Ingest::new(self)
    }

    /// Ingests files and directory trees. Each argument's last component
    /// becomes the first component of its namespace paths (`/a/b/dir` ->
    /// `dir/...`). An argument that is a symlink is followed (the bug "a
    /// symlink given as the argument ingests 0 files"); symlinks below it
    /// are stored as symlinks (their target, never what they point to),
    /// special files below it are skipped with a warning. Each file keeps
    /// its permission bits, owner and mtime to the nanosecond. Hard links
    /// are stored as independent files (their bytes deduplicate, so the
    /// second costs only a namespace entry) and restore as separate
    /// files, as `rsync -a` without `-H` does. A path below an
    /// argument that cannot be read is named in
    /// [`IngestStats::unreadable`] and the rest is stored.
    pub fn ingest_paths(&self, paths: &[impl AsRef<Path>]) -> Result<IngestStats> {
        let mut batch = Ingest::new(self);
        for p in paths {
            let p = p.as_ref();
            let name = p.file_name().and_then(|n| n.to_str()).ok_or_else(|| {
                Error::Tier(TierError::InvalidPath {
                    path: p.display().to_string(),
                    reason: "has no UTF-8 final component".into(),
                })
            })?;
            batch.add_path_following(p, name)?;
        }
        batch.finish()
    }

    /// Ingests one file from a reader, under namespace path `name`.
    pub fn ingest_reader(&self, name: &str, mtime: i64, mut reader: impl Read) -> Result<IngestStats> {
        let mut batch = Ingest::new(self);
        batch.add_reader(name, mtime, &mut reader)?;
        batch.finish()
    }

    /// Ingests many in-memory files `(name, mtime, bytes)` as one batch.
    pub fn ingest_many<'b>(&self, files: impl IntoIterator<Item = (&'b str, i64, &'b [u8])>) -> Result<IngestStats> {
        let mut batch = Ingest::new(self);
        for (name, mtime, mut bytes) in files {
            batch.add_reader(name, mtime, &mut bytes)?;
        }
        batch.finish()
    }
}
