//! Putting a restored entry on the filesystem as the backup saw it: runs
//! of zeros left as holes, then owner, permission bits and mtime; a
//! symlink created as a link, never followed. Restore's safety rules (no
//! write outside the destination, nothing through a symlink, a file
//! appears only complete) stay in `restore.rs`; this module only turns a
//! verified entry into an inode.

use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::tier::FileEntry;

/// Holes are made of whole blocks of this many zero bytes, aligned in the
/// file: the page size, and the block size of every common filesystem.
const HOLE_BLOCK: usize = 4096;
/// Bytes gathered before they are written (or skipped) at their offset.
const SPARSE_BUFFER: usize = 1 << 20;
static ZEROS: [u8; HOLE_BLOCK] = [0; HOLE_BLOCK];

/// Writes a file's bytes at increasing offsets, skipping every aligned
/// block of zeros so that it stays a hole (the bug "a sparse 6 GiB file
/// restores fully allocated"); [`finish`](Self::finish) sets the length,
/// so trailing zeros are a hole too. The file must start empty.
pub(super) struct SparseWriter<'a> {
    file: &'a fs::File,
    path: &'a Path,
    /// Offset of `buf[0]` in the file; a multiple of [`SPARSE_BUFFER`],
    /// so blocks of `buf` are blocks of the file.
    pos: u64,
    buf: Vec<u8>,
}

impl<'a> SparseWriter<'a> {
    /// `size` is the file's expected length: a small file's buffer is
    /// only as large as the file (a 1 MiB buffer for each of thousands of
    /// small files cost a tree restore a tenth of its time).
    pub(super) fn new(file: &'a fs::File, path: &'a Path, size: u64) -> Self {
        let capacity = usize::try_from(size).unwrap_or(SPARSE_BUFFER).min(SPARSE_BUFFER);
        SparseWriter { file, path, pos: 0, buf: Vec::with_capacity(capacity) }
    }

    pub(super) fn write(&mut self, mut bytes: &[u8]) -> Result<()> {
        while !bytes.is_empty() {
            let take = (SPARSE_BUFFER - self.buf.len()).min(bytes.len());
            self.buf.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.buf.len() == SPARSE_BUFFER {
                self.drain()?;
            }
        }
        Ok(())
    }

    /// Writes the buffer's runs of non-zero blocks at their offsets.
    fn drain(&mut self) -> Result<()> {
        let buf = &self.buf;
        let block = |i: usize| &buf[i..(i + HOLE_BLOCK).min(buf.len())];
        let zero = |b: &[u8]| b == &ZEROS[..b.len()];
        let mut i = 0;
        while i < buf.len() {
            if zero(block(i)) {
                i += block(i).len();
                continue;
            }
            let start = i;
            while i < buf.len() && !zero(block(i)) {
                i += block(i).len();
            }
            self.file.write_all_at(&buf[start..i], self.pos + start as u64).map_err(|e| Error::io(self.path, e))?;
        }
        self.pos += buf.len() as u64;
        self.buf.clear();
        Ok(())
    }

    /// Writes what is buffered and sets the file's length; returns it.
    pub(super) fn finish(mut self) -> Result<u64> {
        self.drain()?;
        self.file.set_len(self.pos).map_err(|e| Error::io(self.path, e))?;
        Ok(self.pos)
    }
}

/// The entry's mtime as a `SystemTime`, before 1970 included; `None`
/// where the platform cannot represent it.
fn mtime_of(e: &FileEntry) -> Option<SystemTime> {
    let whole = Duration::from_secs(e.mtime.unsigned_abs());
    let base = if e.mtime >= 0 { UNIX_EPOCH.checked_add(whole) } else { UNIX_EPOCH.checked_sub(whole) }?;
    base.checked_add(Duration::from_nanos(e.attrs.mtime_nanos.into()))
}

/// Gives the restored file `f` the entry's owner, permission bits and
/// mtime, in that order (a chown clears setuid, and the mtime goes last
/// so that nothing after it moves it). An owner that cannot be set (not
/// root) stays the restoring user's, and then the setuid and setgid bits
/// are dropped rather than handed to a different owner. A mode that
/// cannot be set fails the restore; an mtime is a courtesy some
/// filesystems refuse.
pub(super) fn file_attrs(f: &fs::File, tmp: &Path, e: &FileEntry) -> Result<()> {
    let mut mode = e.attrs.mode;
    if let Some((uid, gid)) = e.attrs.owner {
        let md = f.metadata().map_err(|err| Error::io(tmp, err))?;
        if (md.uid(), md.gid()) != (uid, gid)
            && let Err(err) = std::os::unix::fs::fchown(f, Some(uid), Some(gid))
        {
            log::debug!("{}: keeping the restoring user as owner of {}: {err}", tmp.display(), e.path);
            mode = mode.map(|m| m & !0o6000);
        }
    }
    if let Some(m) = mode {
        f.set_permissions(fs::Permissions::from_mode(m & 0o7777)).map_err(|err| Error::io(tmp, err))?;
    }
    match mtime_of(e) {
        Some(t) => {
            if let Err(err) = f.set_modified(t) {
                log::debug!("{}: could not set mtime: {err}", tmp.display());
            }
        }
        None => log::debug!("{}: mtime {} is out of this platform's range", tmp.display(), e.mtime),
    }
    Ok(())
}

/// Runs `make` on fresh names beside `base` in `dir` until one does not
/// exist yet: the one way restore picks a temporary name, for a file
/// (opened exclusively) or a symlink (which `symlink(2)` never replaces).
pub(super) fn with_temp_name<T>(dir: &Path, base: &str, make: impl Fn(&Path) -> std::io::Result<T>) -> Result<(T, PathBuf)> {
    let mut last = None;
    for _ in 0..16 {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        // The name must fit NAME_MAX (255 bytes) even when `base` nearly
        // fills it (the bug "a 225-255 byte name ingests but does not
        // restore"): only a prefix of `base` is kept, cut at a character.
        let mut keep = base.len().min(200);
        while !base.is_char_boundary(keep) {
            keep -= 1;
        }
        let tmp = dir.join(format!(".{}.{}.tierseed-restore", &base[..keep], &tag[..12]));
        match make(&tmp) {
            Ok(t) => return Ok((t, tmp)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => last = Some((tmp, e)),
            Err(e) => return Err(Error::io(&tmp, e)),
        }
    }
    let (tmp, e) = last.expect("the loop ran at least once and every pass either returned or set `last`");
    Err(Error::io(tmp, e))
}

/// Creates the symlink entry `e`, pointing to `target`, at `dest` in
/// directory `parent`: made under a temporary name, given its owner (where
/// permitted) and mtime without following it, renamed over `dest` (which
/// replaces a link already there rather than writing through it), and
/// the directory fsynced.
pub(super) fn symlink(e: &FileEntry, target: &[u8], parent: &Path, dest: &Path) -> Result<()> {
    let base = dest.file_name().unwrap_or_default().to_string_lossy().into_owned();
    let ((), tmp) = with_temp_name(parent, &base, |p| std::os::unix::fs::symlink(OsStr::from_bytes(target), p))?;
    let result = (|| {
        if let Some((uid, gid)) = e.attrs.owner
            && let Err(err) = std::os::unix::fs::lchown(&tmp, Some(uid), Some(gid))
        {
            log::debug!("{}: keeping the restoring user as owner of {}: {err}", tmp.display(), e.path);
        }
        let when = rustix::fs::Timestamps {
            last_access: rustix::fs::Timespec { tv_sec: 0, tv_nsec: rustix::fs::UTIME_OMIT },
            last_modification: rustix::fs::Timespec { tv_sec: e.mtime, tv_nsec: e.attrs.mtime_nanos.into() },
        };
        if let Err(err) = rustix::fs::utimensat(rustix::fs::CWD, &tmp, &when, rustix::fs::AtFlags::SYMLINK_NOFOLLOW) {
            log::debug!("{}: could not set the link's mtime: {err}", tmp.display());
        }
        fs::rename(&tmp, dest).map_err(|err| Error::io(dest, err))?;
        crate::format::durable::sync_dir(parent)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}
