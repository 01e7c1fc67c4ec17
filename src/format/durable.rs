//! The one way tierseed writes a file durably outside RocksDB, and the
//! versioned, checksummed envelope every persisted record travels in.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::error::{Error, FormatError, Result, TierError};

/// Suffix of files being written; `open` of a tier removes leftovers.
pub(crate) const TEMP_SUFFIX: &str = ".tmp";

/// Writes `bytes` to `path` so that after return the file exists with
/// exactly these bytes even across power loss: write a temp file beside it,
/// fsync it, rename it over `path`, fsync the directory.
///
/// With `read_only`, the file's permissions are set read-only before the
/// rename, because a sealed container is never modified again.
pub(crate) fn write_durable(path: &Path, bytes: &[u8], read_only: bool) -> Result<()> {
    let mut w = DurableFile::create(path)?;
    w.write(bytes)?;
    w.finish(read_only)
}

/// A file written durably in pieces, the streaming form of
/// [`write_durable`] (which is one `write` and `finish`): the bytes go to a
/// temp file beside `path`; [`finish`](Self::finish) fsyncs it, renames it
/// over `path` and fsyncs the directory. Dropped unfinished, the temp file
/// is removed and `path` is untouched.
pub(crate) struct DurableFile {
    path: std::path::PathBuf,
    tmp: std::path::PathBuf,
    file: Option<std::io::BufWriter<File>>,
}

impl DurableFile {
    pub(crate) fn create(path: &Path) -> Result<DurableFile> {
        let dir = path.parent().unwrap_or_else(|| Path::new("."));
        let mut tmp_name = path.file_name().unwrap_or_default().to_os_string();
        tmp_name.push(TEMP_SUFFIX);
        let tmp = dir.join(tmp_name);
        let f = OpenOptions::new().write(true).create(true).truncate(true).open(&tmp).map_err(|e| Error::io(path, e))?;
        Ok(DurableFile { path: path.to_path_buf(), tmp, file: Some(std::io::BufWriter::with_capacity(1 << 20, f)) })
    }

    pub(crate) fn write(&mut self, bytes: &[u8]) -> Result<()> {
        let f = self.file.as_mut().expect("a DurableFile is written only until finish, which consumes it");
        f.write_all(bytes).map_err(|e| Error::io(&self.path, e))
    }

    /// Writes `parts` one after another. Parts of at least
    /// [`VECTORED_PART`] bytes on average go to the file in vectored writes
    /// straight from where they are (no copy into a buffer first); smaller
    /// ones through the buffer, where joining them costs less than a
    /// system call's entry per part.
    pub(crate) fn write_parts(&mut self, parts: &[&[u8]]) -> Result<()> {
        let total: usize = parts.iter().map(|p| p.len()).sum();
        if parts.is_empty() || total / parts.len() < VECTORED_PART {
            for p in parts {
                self.write(p)?;
            }
            return Ok(());
        }
        let f = self.file.as_mut().expect("a DurableFile is written only until finish, which consumes it");
        f.flush().map_err(|e| Error::io(&self.path, e))?;
        write_all_vectored(f.get_mut(), parts).map_err(|e| Error::io(&self.path, e))
    }

    pub(crate) fn finish(mut self, read_only: bool) -> Result<()> {
        let Some(buf) = self.file.take() else { return Ok(()) };
        let path = self.path.clone();
        let result = (|| -> std::io::Result<()> {
            let f = buf.into_inner().map_err(std::io::IntoInnerError::into_error)?;
            f.sync_all()?;
            crate::testing::crashpoint::step("fsync", &path.file_name().unwrap_or_default().to_string_lossy());
            if read_only {
                let mut perm = f.metadata()?.permissions();
                perm.set_readonly(true);
                f.set_permissions(perm)?;
            }
            drop(f);
            fs::rename(&self.tmp, &path)?;
            crate::testing::crashpoint::step("rename", &path.file_name().unwrap_or_default().to_string_lossy());
            Ok(())
        })();
        if let Err(e) = result {
            let _ = fs::remove_file(&self.tmp);
            return Err(Error::io(&path, e));
        }
        sync_dir(path.parent().unwrap_or_else(|| Path::new(".")))
    }
}

/// The average part size from which [`DurableFile::write_parts`] writes
/// parts in place rather than through its buffer.
const VECTORED_PART: usize = 4096;

/// Writes every byte of `parts` in order with vectored writes of at most
/// 1,024 parts each (the kernel's limit per call), resuming after short
/// writes.
fn write_all_vectored(f: &mut File, parts: &[&[u8]]) -> std::io::Result<()> {
    for group in parts.chunks(1024) {
        let mut slices: Vec<std::io::IoSlice<'_>> = group.iter().map(|p| std::io::IoSlice::new(p)).collect();
        let mut rest = &mut slices[..];
        std::io::IoSlice::advance_slices(&mut rest, 0);
        while !rest.is_empty() {
            match f.write_vectored(rest) {
                Ok(0) => return Err(std::io::Error::new(std::io::ErrorKind::WriteZero, "a vectored write wrote nothing")),
                Ok(n) => std::io::IoSlice::advance_slices(&mut rest, n),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(())
}

impl Drop for DurableFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Fsyncs a directory so that renames and unlinks in it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(|e| Error::io(dir, e))?;
    crate::testing::crashpoint::step("fsync-dir", &dir.file_name().unwrap_or_default().to_string_lossy());
    Ok(())
}

/// Opens (creating if needed) the lock file `path` and takes an exclusive
/// `flock` on it, or fails with [`TierError::Locked`] naming `what` and `hint`.
/// The lock lasts as long as the returned file is open.
pub(crate) fn take_lock(path: &Path, what: &'static str, hint: &'static str) -> Result<File> {
    let f = OpenOptions::new().create(true).truncate(false).write(true).open(path).map_err(|e| Error::io(path, e))?;
    if lock_exclusive(&f, path)? { Ok(f) } else { Err(Error::Tier(TierError::Locked { what, path: path.to_path_buf(), hint })) }
}

/// Takes an exclusive `flock` on directory `dir` itself, waiting for any
/// other holder, and returns the handle that keeps it. Creations of a tier
/// in one parent directory take it, so that two processes creating the
/// same tier at once are serialized: the second sees the first one's tier
/// (the bug "two processes creating one tier left it unusable": both
/// built in the same fixed temp directory, each deleting the other's).
/// The kernel releases it if the holder dies.
pub(crate) fn lock_dir(dir: &Path) -> Result<File> {
    let f = File::open(dir).map_err(|e| Error::io(dir, e))?;
    f.lock().map_err(|e| Error::io(dir, e))?;
    Ok(f)
}

/// Creates directory `dir` atomically: `build` fills `tmp` (a sibling,
/// removed first if a crashed attempt left it), which is fsynced and then
/// renamed to `dir` (an empty `dir` is replaced), and the parent fsynced.
/// A crash leaves either no `dir` or a whole one.
pub(crate) fn create_dir_atomically(dir: &Path, tmp: &Path, build: impl FnOnce(&Path) -> Result<()>) -> Result<()> {
    let parent = match dir.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    fs::create_dir_all(&parent).map_err(|e| Error::io(&parent, e))?;
    // A leftover from a crashed attempt holds nothing anyone refers to.
    if tmp.exists() {
        fs::remove_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    }
    fs::create_dir_all(tmp).map_err(|e| Error::io(tmp, e))?;
    build(tmp)?;
    sync_dir(tmp)?;
    fs::rename(tmp, dir).map_err(|e| Error::io(dir, e))?;
    sync_dir(&parent)
}

/// How long a lock that looks taken is retried before giving up. A forked
/// child holds a copy of every descriptor (and so every `flock`) between
/// `fork` and `exec`; an embedding process that spawns children can make a
/// free lock look taken for that instant. A lock held by a running job or
/// tier is held far longer than this.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Takes an exclusive `flock` on `file`, retrying briefly (see
/// [`LOCK_GRACE`]). `Ok(false)` means another holder keeps it.
pub(crate) fn lock_exclusive(file: &File, path: &Path) -> Result<bool> {
    let start = std::time::Instant::now();
    loop {
        match file.try_lock() {
            Ok(()) => return Ok(true),
            Err(fs::TryLockError::WouldBlock) if start.elapsed() < LOCK_GRACE => {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(fs::TryLockError::WouldBlock) => return Ok(false),
            Err(fs::TryLockError::Error(e)) => return Err(Error::io(path, e)),
        }
    }
}

/// The envelope's fixed overhead: magic (4), version (2), flags (2),
/// payload length (4) before the payload; CRC-32 (4) after it.
pub(crate) const ENVELOPE_OVERHEAD: usize = 16;

/// Wraps `payload` as `magic | version u16 | 0u16 | len u32 | payload | crc32`,
/// all little-endian; the CRC covers everything before it.
pub(crate) fn seal_envelope(magic: &[u8; 4], version: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + ENVELOPE_OVERHEAD);
    out.extend_from_slice(magic);
    out.extend_from_slice(&version.to_le_bytes());
    out.extend_from_slice(&0u16.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks and unwraps an envelope made by [`seal_envelope`]; `what` names the
/// record in the error.
pub(crate) fn open_envelope<'a>(magic: &[u8; 4], version: u16, bytes: &'a [u8], what: &dyn Fn() -> String) -> Result<&'a [u8]> {
    if bytes.len() < ENVELOPE_OVERHEAD {
        return Err(Error::corrupt_record(what(), format!("{} bytes is shorter than the envelope", bytes.len())));
    }
    if &bytes[..4] != magic {
        return Err(Error::corrupt_record(what(), format!("bad magic {:02x?}", &bytes[..4])));
    }
    let (body, crc_bytes) = bytes.split_at(bytes.len() - 4);
    let stored = u32::from_le_bytes([crc_bytes[0], crc_bytes[1], crc_bytes[2], crc_bytes[3]]);
    if crc32fast::hash(body) != stored {
        return Err(Error::corrupt_record(what(), "checksum mismatch"));
    }
    let found = u16::from_le_bytes([bytes[4], bytes[5]]);
    if found != version {
        return Err(Error::Format(FormatError::UnsupportedVersion {
            what: what(),
            found: found.into(),
            supported: version.into(),
        }));
    }
    let len = u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize;
    if len != bytes.len() - ENVELOPE_OVERHEAD {
        return Err(Error::corrupt_record(what(), format!("length field {len} does not match the record")));
    }
    Ok(&bytes[12..12 + len])
}

/// Encodes a serde value with postcard and seals it in an envelope.
pub(crate) fn encode_record<T: serde::Serialize>(magic: &[u8; 4], version: u16, value: &T) -> Vec<u8> {
    let payload = postcard::to_stdvec(value).expect(
        "postcard fails only for types serde cannot describe (maps with unserializable keys, sequences of unknown length); \
         every record is a plain struct of integers, byte arrays, strings and vectors",
    );
    seal_envelope(magic, version, &payload)
}

/// Opens an envelope and decodes its postcard payload.
pub(crate) fn decode_record<T: serde::de::DeserializeOwned>(
    magic: &[u8; 4],
    version: u16,
    bytes: &[u8],
    what: &dyn Fn() -> String,
) -> Result<T> {
    let payload = open_envelope(magic, version, bytes, what)?;
    postcard::from_bytes(payload).map_err(|e| Error::corrupt_record(what(), format!("undecodable payload: {e}")))
}

/// A record read at the current version or, from older data, version 1.
pub(crate) enum Versioned<Current, V1> {
    Current(Current),
    V1(V1),
}

/// Decodes a record written at `version` or, where it says version 1, as
/// the version-1 layout: the one way every record type reads old data.
pub(crate) fn decode_versioned<Current, V1>(
    magic: &[u8; 4],
    version: u16,
    bytes: &[u8],
    what: &dyn Fn() -> String,
) -> Result<Versioned<Current, V1>>
where
    Current: serde::de::DeserializeOwned,
    V1: serde::de::DeserializeOwned,
{
    match decode_record::<Current>(magic, version, bytes, what) {
        Ok(r) => Ok(Versioned::Current(r)),
        Err(Error::Format(FormatError::UnsupportedVersion { found: 1, .. })) => {
            decode_record::<V1>(magic, 1, bytes, what).map(Versioned::V1)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parts written in place and through the buffer, mixed with plain
    /// writes, more than one vectored call's worth: the file holds exactly
    /// their concatenation, in order.
    #[test]
    fn written_parts_land_in_order_whatever_their_sizes() {
        let dir = tempfile::tempdir().expect("a temp dir");
        let big: Vec<Vec<u8>> = (0..2500u32).map(|i| vec![(i % 251) as u8; 4096 + (i as usize % 7) * 1000]).collect();
        let small: Vec<Vec<u8>> = (0..3000u32).map(|i| vec![(i % 13) as u8; i as usize % 40]).collect();
        let mut expected = b"head".to_vec();
        let path = dir.path().join("parts");
        let mut w = DurableFile::create(&path).expect("create");
        w.write(b"head").expect("write");
        for parts in [&big, &small, &big] {
            let refs: Vec<&[u8]> = parts.iter().map(Vec::as_slice).collect();
            w.write_parts(&refs).expect("write_parts");
            w.write(b"-").expect("write");
            for p in parts {
                expected.extend_from_slice(p);
            }
            expected.push(b'-');
        }
        w.write_parts(&[]).expect("no parts");
        w.finish(true).expect("finish");
        assert_eq!(std::fs::read(&path).expect("read back"), expected);
    }

    #[test]
    fn envelope_detects_every_single_bit_flip() {
        let sealed = seal_envelope(b"TEST", 1, b"some payload bytes");
        let what = || "test record".to_string();
        assert_eq!(open_envelope(b"TEST", 1, &sealed, &what).ok(), Some(&b"some payload bytes"[..]));
        for bit in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(open_envelope(b"TEST", 1, &bad, &what).is_err(), "flip of bit {bit} undetected");
        }
        for len in 0..sealed.len() {
            assert!(open_envelope(b"TEST", 1, &sealed[..len], &what).is_err());
        }
    }
}
