//! The container file format: encode, decode metadata, read chosen segments.
//!
//! Layout (all integers little-endian; docs/FORMAT.md has the table):
//! a 48-byte header, then the segment table (40 bytes per segment), then
//! the segment bytes back to back. Header and table come first so that
//! reading a container's metadata is one small read at offset 0.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::tier::{ContainerKind, ContainerMeta, SegmentEntry};

use crate::error::{Error, Result};
use crate::{ContainerId, Fingerprint};

pub(crate) const MAGIC: &[u8; 4] = b"TSCN";
pub(crate) const VERSION: u16 = 1;
pub(crate) const HEADER_LEN: usize = 48;
pub(crate) const ENTRY_LEN: usize = 40;
/// Caps on values read from disk, so a corrupt length never drives a huge
/// allocation: at most this many segments, and this many data bytes.
pub(crate) const MAX_SEGMENTS: u32 = 1 << 20;
pub(crate) const MAX_DATA_LEN: u64 = 1 << 30;

/// The on-disk code of a container kind (header byte 6).
fn kind_code(kind: ContainerKind) -> u8 {
    match kind {
        ContainerKind::Data => 0,
        ContainerKind::Meta => 1,
    }
}

/// Encodes a container. Segment bytes are laid out in the given order.
pub(crate) fn encode(id: ContainerId, kind: ContainerKind, segments: &[(Fingerprint, &[u8])]) -> Vec<u8> {
    let data_len: usize = segments.iter().map(|(_, b)| b.len()).sum();
    let table_len = ENTRY_LEN * segments.len();
    let mut out = Vec::with_capacity(HEADER_LEN + table_len + data_len);
    out.resize(HEADER_LEN, 0);
    let mut offset = 0u32;
    for (fp, bytes) in segments {
        out.extend_from_slice(&fp.0);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        offset += bytes.len() as u32;
    }
    let table_crc = crc32fast::hash(&out[HEADER_LEN..]);
    let mut data_hasher = crc32fast::Hasher::new();
    for (_, bytes) in segments {
        out.extend_from_slice(bytes);
        data_hasher.update(bytes);
    }
    let h = &mut out[..HEADER_LEN];
    h[0..4].copy_from_slice(MAGIC);
    h[4..6].copy_from_slice(&VERSION.to_le_bytes());
    h[6] = kind_code(kind);
    h[7] = 0;
    h[8..16].copy_from_slice(&id.0.to_le_bytes());
    h[16..20].copy_from_slice(&(segments.len() as u32).to_le_bytes());
    h[20..24].copy_from_slice(&table_crc.to_le_bytes());
    h[24..32].copy_from_slice(&(data_len as u64).to_le_bytes());
    h[32..36].copy_from_slice(&data_hasher.finalize().to_le_bytes());
    // 36..44 reserved, zero.
    let header_crc = crc32fast::hash(&h[..44]);
    h[44..48].copy_from_slice(&header_crc.to_le_bytes());
    out
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn le_u64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_le_bytes(a)
}

/// The parsed header, before the table is read.
pub(crate) struct Header {
    pub(crate) id: ContainerId,
    pub(crate) kind: ContainerKind,
    pub(crate) count: u32,
    pub(crate) table_crc: u32,
    pub(crate) data_len: u64,
    pub(crate) data_crc: u32,
}

impl Header {
    /// Byte offset in the file where the data region starts.
    pub(crate) fn data_start(&self) -> u64 {
        (HEADER_LEN + ENTRY_LEN * self.count as usize) as u64
    }

    pub(crate) fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + ENTRY_LEN as u64 * u64::from(self.count) + self.data_len
    }
}

/// Parses and checks a header. `expected` is the id the caller looked up.
pub(crate) fn parse_header(bytes: &[u8], expected: ContainerId, path: &Path) -> Result<Header> {
    let bad = |reason: String| Error::CorruptContainer { id: expected, path: Some(path.to_path_buf()), reason };
    if bytes.len() < HEADER_LEN {
        return Err(bad(format!("file is {} bytes, shorter than the header", bytes.len())));
    }
    let h = &bytes[..HEADER_LEN];
    if &h[0..4] != MAGIC {
        return Err(bad("bad magic".into()));
    }
    if crc32fast::hash(&h[..44]) != le_u32(&h[44..48]) {
        return Err(bad("header checksum mismatch".into()));
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(bad(format!("format version {version}, this build reads {VERSION}")));
    }
    let kind = match h[6] {
        0 => ContainerKind::Data,
        1 => ContainerKind::Meta,
        k => return Err(bad(format!("unknown kind {k}"))),
    };
    let id = ContainerId(le_u64(&h[8..16]));
    if id != expected {
        return Err(bad(format!("header names container {id}")));
    }
    let count = le_u32(&h[16..20]);
    let data_len = le_u64(&h[24..32]);
    if count > MAX_SEGMENTS || data_len > MAX_DATA_LEN {
        return Err(bad(format!("implausible sizes: {count} segments, {data_len} data bytes")));
    }
    Ok(Header { id, kind, count, table_crc: le_u32(&h[20..24]), data_len, data_crc: le_u32(&h[32..36]) })
}

/// Parses and checks the table that follows a header.
pub(crate) fn parse_table(header: &Header, table: &[u8], path: &Path) -> Result<ContainerMeta> {
    let bad = |reason: String| Error::CorruptContainer { id: header.id, path: Some(path.to_path_buf()), reason };
    if table.len() != ENTRY_LEN * header.count as usize {
        return Err(bad("table truncated".into()));
    }
    if crc32fast::hash(table) != header.table_crc {
        return Err(bad("segment table checksum mismatch".into()));
    }
    let mut segments = Vec::with_capacity(header.count as usize);
    let mut next = 0u64;
    for (i, e) in table.chunks_exact(ENTRY_LEN).enumerate() {
        let fingerprint = Fingerprint::from_slice(&e[..32]).ok_or_else(|| bad("table entry".into()))?;
        let offset = le_u32(&e[32..36]);
        let len = le_u32(&e[36..40]);
        // Segments are stored back to back in table order; anything else
        // is a corrupt table even if its checksum happens to match.
        if u64::from(offset) != next {
            return Err(bad(format!("segment {i} ({fingerprint}) starts at {offset}, expected {next}")));
        }
        next += u64::from(len);
        segments.push(SegmentEntry { fingerprint, offset, len });
    }
    if next != header.data_len {
        return Err(bad(format!("segments cover {next} bytes, header says {}", header.data_len)));
    }
    Ok(ContainerMeta { id: header.id, kind: header.kind, segments, data_len: header.data_len })
}

/// Reads and checks only the 48-byte header, and the file's length against
/// it: enough to locate and bounds-check segment reads.
pub(crate) fn read_header(file: &File, expected: ContainerId, path: &Path) -> Result<Header> {
    let io = |e| Error::io(path, e);
    let file_len = file.metadata().map_err(io)?.len();
    let mut hbuf = [0u8; HEADER_LEN];
    let n = read_at_most(file, &mut hbuf, 0).map_err(io)?;
    let header = parse_header(&hbuf[..n], expected, path)?;
    if file_len != header.file_len() {
        return Err(Error::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("file is {file_len} bytes, header implies {}", header.file_len()),
        });
    }
    Ok(header)
}

/// Reads only the header and table of the container file at `path`, after
/// checking that the file has exactly the length the header promises
/// (which detects truncation without reading the data).
pub(crate) fn read_meta(file: &File, expected: ContainerId, path: &Path) -> Result<ContainerMeta> {
    let header = read_header(file, expected, path)?;
    let io = |e| Error::io(path, e);
    let mut table = vec![0u8; ENTRY_LEN * header.count as usize];
    file.read_exact_at(&mut table, HEADER_LEN as u64).map_err(io)?;
    parse_table(&header, &table, path)
}

fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
    let mut done = 0;
    while done < buf.len() {
        match file.read_at(&mut buf[done..], offset + done as u64)? {
            0 => break,
            n => done += n,
        }
    }
    Ok(done)
}

/// Reads the bytes of the chosen segments, coalescing adjacent ranges into
/// one read each. Bytes are not verified here: callers hash them.
pub(crate) fn read_segments(file: &File, header: &Header, which: &[SegmentEntry], path: &Path) -> Result<Vec<Vec<u8>>> {
    let data_start = header.data_start();
    let mut out = Vec::with_capacity(which.len());
    let mut i = 0;
    while i < which.len() {
        // Extend a run while the next wanted segment starts where this ends.
        let start = which[i].offset;
        let mut end = u64::from(start) + u64::from(which[i].len);
        let mut j = i + 1;
        while j < which.len() && u64::from(which[j].offset) == end && end - u64::from(start) < 8 << 20 {
            end += u64::from(which[j].len);
            j += 1;
        }
        if end > header.data_len {
            return Err(Error::CorruptContainer {
                id: header.id,
                path: Some(path.to_path_buf()),
                reason: format!("segment range {start}..{end} is past the data region"),
            });
        }
        let mut buf = vec![0u8; (end - u64::from(start)) as usize];
        file.read_exact_at(&mut buf, data_start + u64::from(start)).map_err(|e| Error::io(path, e))?;
        let mut at = 0usize;
        for e in &which[i..j] {
            out.push(buf[at..at + e.len as usize].to_vec());
            at += e.len as usize;
        }
        i = j;
    }
    Ok(out)
}

/// Decodes a whole container held in memory, checking every checksum
/// including the data CRC. Used by scrubbing and by the fixtures tests.
pub fn decode_container(bytes: &[u8], expected: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let path = Path::new("<memory>");
    let header = parse_header(bytes, expected, path)?;
    if bytes.len() as u64 != header.file_len() {
        return Err(Error::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("{} bytes, header implies {}", bytes.len(), header.file_len()),
        });
    }
    let table_end = HEADER_LEN + ENTRY_LEN * header.count as usize;
    let meta = parse_table(&header, &bytes[HEADER_LEN..table_end], path)?;
    let data = &bytes[table_end..];
    if crc32fast::hash(data) != header.data_crc {
        return Err(Error::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: "data checksum mismatch".into(),
        });
    }
    let segs = meta.segments.iter().map(|e| data[e.offset as usize..(e.offset + e.len) as usize].to_vec()).collect();
    Ok((meta, segs))
}

/// Reads a whole container file and checks every checksum (scrub).
pub(crate) fn scrub_file(path: &Path, expected: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    if len > MAX_DATA_LEN + (HEADER_LEN + ENTRY_LEN * MAX_SEGMENTS as usize) as u64 {
        return Err(Error::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("file of {len} bytes exceeds the cap"),
        });
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    decode_container(&bytes, expected).map_err(|e| match e {
        Error::CorruptContainer { id, reason, .. } => Error::CorruptContainer { id, path: Some(path.to_path_buf()), reason },
        e => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn encode_decode_roundtrip(segs in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..300), 0..20), id in any::<u64>(), meta_kind in any::<bool>()) {
            let kind = if meta_kind { ContainerKind::Meta } else { ContainerKind::Data };
            let owned: Vec<(Fingerprint, Vec<u8>)> = segs.iter().map(|s| (Fingerprint::of(s), s.clone())).collect();
            let refs: Vec<(Fingerprint, &[u8])> = owned.iter().map(|(f, b)| (*f, b.as_slice())).collect();
            let bytes = encode(ContainerId(id), kind, &refs);
            let (meta, data) = decode_container(&bytes, ContainerId(id)).unwrap();
            prop_assert_eq!(meta.kind, kind);
            prop_assert_eq!(meta.segments.len(), owned.len());
            for ((fp, b), (e, d)) in owned.iter().zip(meta.segments.iter().zip(data.iter())) {
                prop_assert_eq!(*fp, e.fingerprint);
                prop_assert_eq!(b, d);
            }
        }

        #[test]
        fn decoder_never_panics_on_garbage(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = decode_container(&bytes, ContainerId(1));
        }

        #[test]
        fn any_flip_or_truncation_is_detected(flip in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
            let a = vec![7u8; 100];
            let b = vec![9u8; 50];
            let bytes = encode(ContainerId(3), ContainerKind::Data, &[(Fingerprint::of(&a), &a), (Fingerprint::of(&b), &b)]);
            let bit = flip.index(bytes.len() * 8);
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_container(&bad, ContainerId(3)).is_err());
            let len = cut.index(bytes.len());
            prop_assert!(decode_container(&bytes[..len], ContainerId(3)).is_err());
        }
    }
}
