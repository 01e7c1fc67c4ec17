//! Restore files and scrub the whole tier.

use std::collections::HashSet;
use std::fs;
use std::io::Write;
use std::path::Path;

use super::{IndexedTier, apply, lock, paths::safe_join, validate_path};
use crate::error::{Error, FormatError, JobError, Result, TierError};
use crate::format::container;
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::tier::read::read_file;
use crate::tier::{FileEntry, FileKind, Tier};

/// What [`IndexedTier::restore_tree`] restored, and what it could not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RestoreStats {
    /// Entries restored (files and symlinks).
    pub files: u64,
    /// Of `files`, how many are symlinks.
    pub symlinks: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files that could not be restored, with why (at most
    /// [`RestoreStats::MAX_FAILURES`] listed; `failed` counts them all).
    pub failures: Vec<(String, String)>,
    /// How many files could not be restored.
    pub failed: u64,
}

impl RestoreStats {
    /// Failures beyond this many are counted, not listed.
    pub const MAX_FAILURES: usize = 1000;
}

/// What [`IndexedTier::verify`] checked and what it found wrong.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Container files scrubbed.
    pub containers: u64,
    /// Segments whose bytes were hashed and matched.
    pub segments: u64,
    /// Namespace entries whose trees were walked.
    pub files: u64,
    /// Stored copies known to be bad that nothing refers to any more
    /// (retired segments, and containers retired whole because their
    /// table failed its checks): not problems, garbage that space
    /// reclamation removes.
    pub retired: u64,
    /// Every problem found (at most [`VerifyReport::MAX_PROBLEMS`]), each
    /// naming the container, segment or file.
    pub problems: Vec<String>,
}

impl VerifyReport {
    /// Problems beyond this many are counted, not listed.
    pub const MAX_PROBLEMS: usize = 1000;

    /// True when nothing is wrong.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }

    pub(crate) fn problem(&mut self, p: String) {
        if self.problems.len() < Self::MAX_PROBLEMS {
            self.problems.push(p);
        }
    }
}

impl IndexedTier {
    /// The namespace entry for `path`.
    pub fn entry(&self, path: &str) -> Result<FileEntry> {
        self.file_entries(&[path.to_string()])?
            .pop()
            .flatten()
            .ok_or_else(|| Error::Tier(TierError::FileNotFound { path: path.into(), tier: self.name() }))
    }

    /// Writes the file at namespace `path` to `out` (for a symlink, its
    /// target), every byte verified against its fingerprint before it is
    /// written. Returns the length.
    pub fn restore(&self, path: &str, out: &mut dyn Write) -> Result<u64> {
        let entry = self.entry(path)?;
        self.restore_entry(&entry, &mut |b| out.write_all(b).map_err(|e| Error::io(path, e)))
    }

    /// Streams `entry`'s verified bytes to `out` and checks their length
    /// against the entry's.
    fn restore_entry(&self, entry: &FileEntry, out: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<u64> {
        let path = entry.path.as_str();
        let n = read_file(self, &self.tables, entry.root, entry.height, path, out).inspect_err(|e| self.retire_after(e))?;
        if n != entry.size {
            return Err(Error::corrupt_record(
                format!("file {path:?}"),
                format!("tree holds {n} bytes, namespace says {}", entry.size),
            ));
        }
        Ok(n)
    }

    /// Restores the file at namespace `path` into directory `dir`, at
    /// `dir/path`; never writes outside `dir`, and never through a symlink
    /// (an existing symlink on the way, or at the destination, is refused).
    /// The file appears only once complete (see
    /// [`restore_to_file`](Self::restore_to_file)).
    pub fn restore_to_dir(&self, path: &str, dir: &Path) -> Result<u64> {
        self.entry_to_dir(&self.entry(path)?, dir)
    }

    /// [`restore_to_dir`](Self::restore_to_dir) of an entry already read
    /// (a tree restore has them all: no second lookup per file).
    fn entry_to_dir(&self, entry: &FileEntry, dir: &Path) -> Result<u64> {
        let path = entry.path.as_str();
        let link = entry.attrs.kind == FileKind::Symlink;
        let dest = safe_join(dir, path, link)?;
        if let Some(parent) = dest.parent() {
            fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        // Check again after creating the directories: one of them may have
        // been replaced by a symlink meanwhile.
        let dest = safe_join(dir, path, link)?;
        self.entry_to_file(entry, &dest)
    }

    /// Restores every file at or under namespace path `prefix` (matched
    /// by whole components, as [`Selection::prefix`](crate::Selection::prefix);
    /// `""` restores everything) into directory `dir` (created if it does
    /// not exist), each at `dir/path` as
    /// [`restore_to_dir`](Self::restore_to_dir) does, on `threads`
    /// workers. `progress` is called after each file restored, with its
    /// entry and length. A file that cannot be restored (rot, a missing
    /// segment) does not stop the others: it is named in
    /// [`RestoreStats::failures`] (the bug "one rotten file aborted a
    /// directory restore and left 76 good files unrestored"). Only an
    /// error that concerns every file (creating the destination, reading
    /// the namespace) is returned as an error.
    pub fn restore_tree(
        &self,
        prefix: &str,
        dir: &Path,
        threads: usize,
        progress: &(dyn Fn(&FileEntry, u64) + Sync),
    ) -> Result<RestoreStats> {
        let prefix = prefix.trim_end_matches('/');
        if !prefix.is_empty() {
            validate_path(prefix)?;
        }
        // Regular files first, symlinks after every file: a link restored
        // while another worker walks to a file could otherwise turn a
        // directory on that walk into a link between its checks and its
        // writes.
        let (mut entries, mut links) = (Vec::new(), Vec::new());
        self.for_each_file(&mut |e| {
            if super::prefix_matches(prefix, &e.path) {
                match e.attrs.kind {
                    FileKind::Symlink => links.push(e),
                    _ => entries.push(e),
                }
            }
            Ok(())
        })?;
        if entries.is_empty() && links.is_empty() {
            return Err(Error::Tier(TierError::FileNotFound { path: prefix.into(), tier: self.name() }));
        }
        fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads.max(1))
            .build()
            .map_err(|e| Error::Job(JobError::ThreadPool { threads, source: e }))?;
        let restore_all = |entries: &[FileEntry]| -> Vec<std::result::Result<u64, (String, Error)>> {
            pool.install(|| {
                use rayon::prelude::*;
                entries
                    .par_iter()
                    .map(|e| match self.entry_to_dir(e, dir) {
                        Ok(n) => {
                            progress(e, n);
                            Ok(n)
                        }
                        Err(err) => Err((e.path.clone(), err)),
                    })
                    .collect()
            })
        };
        let mut outcomes = restore_all(&entries);
        let files = outcomes.len();
        outcomes.extend(restore_all(&links));
        let mut stats = RestoreStats::default();
        for (i, o) in outcomes.into_iter().enumerate() {
            match o {
                Ok(n) => {
                    stats.files += 1;
                    stats.symlinks += u64::from(i >= files);
                    stats.bytes += n;
                }
                Err((path, e)) => {
                    stats.failed += 1;
                    if stats.failures.len() < RestoreStats::MAX_FAILURES {
                        stats.failures.push((path, e.to_string()));
                    }
                }
            }
        }
        Ok(stats)
    }

    /// Restores the file at namespace `path` to the file `dest`, with
    /// its permission bits, owner (where permitted) and mtime; a symlink
    /// entry becomes a symlink at `dest`.
    ///
    /// The bytes go to a new temporary file in `dest`'s directory, created
    /// exclusively (`O_CREAT | O_EXCL`, which never follows a symlink and
    /// never reuses an existing file), written with runs of zeros left as
    /// holes, fsynced, then renamed over `dest`, and the directory is
    /// fsynced. A `dest` that is a symlink, or whose directory is one, is
    /// refused: the restore would otherwise land wherever the link points
    /// (a symlink entry may replace a symlink at `dest`: the rename
    /// replaces the link itself).
    pub fn restore_to_file(&self, path: &str, dest: &Path) -> Result<u64> {
        self.entry_to_file(&self.entry(path)?, dest)
    }

    fn entry_to_file(&self, entry: &FileEntry, dest: &Path) -> Result<u64> {
        let path = entry.path.as_str();
        let parent = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => std::path::PathBuf::from("."),
        };
        let link = entry.attrs.kind == FileKind::Symlink;
        let checked: &[&Path] = if link { &[parent.as_path()] } else { &[dest, parent.as_path()] };
        for &p in checked {
            if fs::symlink_metadata(p).is_ok_and(|m| m.file_type().is_symlink()) {
                return Err(Error::Tier(TierError::InvalidPath {
                    path: path.into(),
                    reason: format!("{} is a symlink; refusing to restore through it", p.display()),
                }));
            }
        }
        if link {
            let mut target = Vec::new();
            let n = self.restore_entry(entry, &mut |b| {
                target.extend_from_slice(b);
                Ok(())
            })?;
            apply::symlink(entry, &target, &parent, dest)?;
            return Ok(n);
        }
        let base = dest.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let (f, tmp) = apply::with_temp_name(&parent, &base, |p| fs::OpenOptions::new().write(true).create_new(true).open(p))?;
        let result = (|| {
            let mut w = apply::SparseWriter::new(&f, &tmp, entry.size);
            let n = self.restore_entry(entry, &mut |b| w.write(b))?;
            w.finish()?;
            apply::file_attrs(&f, &tmp, entry)?;
            f.sync_all().map_err(|e| Error::io(&tmp, e))?;
            fs::rename(&tmp, dest).map_err(|e| Error::io(dest, e))?;
            crate::format::durable::sync_dir(&parent)?;
            Ok(n)
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        result
    }

    /// The tier's half of [`IndexedTier::verify`]: every container's
    /// checksums and every segment's fingerprint; every index entry
    /// resolves to a container that holds it. (The namespace's trees are
    /// walked by the caller, in `crate::mark::scrub`: the walk is a layer
    /// above the tier.)
    pub(crate) fn scrub_containers(&self, report: &mut VerifyReport) -> Result<()> {
        let next = lock(&self.alloc).next_container;
        // 1. Scrub containers, counting for each how many of its distinct
        // fingerprints the index maps to it.
        let ids: Vec<u64> = self.store.list()?.into_iter().map(|c| c.0).collect();
        let present: HashSet<u64> = ids.iter().copied().collect();
        let mut accounted = 0u64;
        for &raw in &ids {
            let id = ContainerId(raw);
            if raw >= next {
                // A read-only view predates containers written since it
                // was opened; for a writer it is a leftover recovery missed.
                if !self.is_read_only() {
                    report.problem(format!("container {id} is not indexed (past the allocation counter)"));
                }
                continue;
            }
            report.containers += 1;
            if self.is_retired(id)? {
                report.retired += 1;
                continue;
            }
            let (meta, segs) = match self.store.scrub(id) {
                Ok(x) => x,
                // The data region fails its checksum: the table may still
                // be sound, and then each segment is judged on its own (a
                // rotten one retired, its neighbours kept).
                Err(e) if e.is_rot() => match self.store.read_meta(id).and_then(|m| {
                    let segs = self.store.read_segments(id, &m.segments)?;
                    Ok((m, segs))
                }) {
                    Ok((m, segs)) if segs.len() == m.segments.len() => (m, segs),
                    _ => {
                        // A table that fails its checks is never read again.
                        report.problem(e.to_string());
                        self.retire_table(id);
                        continue;
                    }
                },
                Err(e) => {
                    report.problem(e.to_string());
                    continue;
                }
            };
            let mut distinct = HashSet::new();
            let mut bad = Vec::new();
            for (e, b) in meta.segments.iter().zip(&segs) {
                if container::check_stored(e, b, id).is_ok() {
                    report.segments += 1;
                    distinct.insert(e.fingerprint);
                } else {
                    bad.push(e.fingerprint);
                }
            }
            // A bad copy the index still counts is a problem, retired now;
            // one it no longer counts (retired earlier, or a second copy)
            // is garbage for reclamation.
            let homes = self.locate(&bad)?;
            let mut suspects = Vec::new();
            for (fp, home) in bad.into_iter().zip(homes) {
                if home == Some(id) && !distinct.contains(&fp) {
                    report.problem(Error::Format(FormatError::CorruptSegment { container: id, fingerprint: fp }).to_string());
                    suspects.push((fp, id));
                } else {
                    report.retired += 1;
                }
            }
            if !suspects.is_empty() && !self.is_read_only() {
                self.retire(&suspects)?;
            }
            let fps: Vec<Fingerprint> = distinct.into_iter().collect();
            accounted += self.locate(&fps)?.iter().filter(|c| **c == Some(id)).count() as u64;
        }

        // 2. The index: every entry points to a scrubbed container holding
        // it. The sum above counts entries that do; compare with all.
        let mut entries = 0u64;
        // Ids need not be contiguous (space reclamation deletes
        // containers); a container the index names must exist.
        let mut missing = std::collections::BTreeSet::new();
        crate::tier::SourceTier::for_each_index_page(self, 1 << 16, &mut |page| {
            entries += page.len() as u64;
            missing.extend(page.iter().map(|(_, c)| c.0).filter(|c| !present.contains(c)));
            Ok(())
        })?;
        for raw in missing {
            report.problem(format!("container {} is indexed but its file is missing", ContainerId(raw)));
        }
        if entries != accounted {
            report.problem(format!(
                "{} index entries do not resolve to a sound container holding them",
                entries.saturating_sub(accounted)
            ));
        }
        if entries != lock(&self.alloc).segments {
            report.problem(format!("index holds {entries} entries, the allocation record counts {}", lock(&self.alloc).segments));
        }
        Ok(())
    }
}
