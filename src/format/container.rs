//! The container file format: encode, decode metadata, read chosen segments.
//!
//! Layout (all integers little-endian; docs/FORMAT.md has the table):
//! a 48-byte header, then the segment table (48 bytes per segment in
//! version 2, 40 in version 1), then the segment bytes back to back, each
//! as stored (raw, or a zstd frame). Header and table come first so that
//! reading a container's metadata is one small read at offset 0. This
//! build writes version 2 and reads both.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::format::entries::{Codec, ContainerKind, ContainerMeta, SegmentEntry, StoredSegment};

use crate::error::{Error, FormatError, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};

pub(crate) const MAGIC: &[u8; 4] = crate::format::magic::CONTAINER;
/// The version this build writes.
pub(crate) const VERSION: u16 = 2;
/// The first version, still read.
pub(crate) const VERSION_1: u16 = 1;
pub(crate) const HEADER_LEN: usize = 48;
/// Table entry length in version 2: fingerprint (32), offset, stored
/// length, raw length (u32 each), codec (u8), 3 reserved zero bytes.
pub(crate) const ENTRY_LEN: usize = 48;
/// Table entry length in version 1: fingerprint, offset, length.
pub(crate) const ENTRY_LEN_V1: usize = 40;
/// Largest raw segment accepted when decompressing (a corrupt raw length
/// never drives a larger allocation).
pub(crate) const MAX_RAW_LEN: u32 = 16 << 20;
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

fn codec_code(c: Codec) -> u8 {
    match c {
        Codec::Raw => 0,
        Codec::Zstd => 1,
    }
}

/// Encodes a container (format version 2). Segment bytes are laid out in
/// the given order, as stored.
pub(crate) fn encode(id: ContainerId, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Vec<u8> {
    let mut out = encode_head(id, kind, segments);
    out.reserve_exact(segments.iter().map(|s| s.bytes.len()).sum());
    for s in segments {
        out.extend_from_slice(s.bytes);
    }
    out
}

/// A container's header and table (format version 2): what precedes the
/// segments' bytes, which follow back to back in the given order. With
/// them appended it is [`encode`]'s container; a writer that has the
/// segments in place writes the two without joining them first.
pub(crate) fn encode_head(id: ContainerId, kind: ContainerKind, segments: &[StoredSegment<'_>]) -> Vec<u8> {
    let data_len: usize = segments.iter().map(|s| s.bytes.len()).sum();
    let table_len = ENTRY_LEN * segments.len();
    let mut out = Vec::with_capacity(HEADER_LEN + table_len);
    out.resize(HEADER_LEN, 0);
    let mut offset = 0u32;
    for s in segments {
        out.extend_from_slice(&s.fingerprint.0);
        out.extend_from_slice(&offset.to_le_bytes());
        out.extend_from_slice(&(s.bytes.len() as u32).to_le_bytes());
        out.extend_from_slice(&s.raw_len.to_le_bytes());
        out.push(codec_code(s.codec));
        out.extend_from_slice(&[0u8; 3]);
        offset += s.bytes.len() as u32;
    }
    let table_crc = crc32fast::hash(&out[HEADER_LEN..]);
    let mut data_hasher = crc32fast::Hasher::new();
    for s in segments {
        data_hasher.update(s.bytes);
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

/// Compresses `raw` with zstd at `level`; keeps it raw when compression
/// saves less than 1/32 of it (incompressible data) or `level` is 0.
pub(crate) fn compress(raw: &[u8], level: i32) -> (Vec<u8>, Codec) {
    if level != 0
        && raw.len() >= 64
        && let Ok(z) = zstd::bulk::compress(raw, level)
        && z.len() + raw.len() / 32 < raw.len()
    {
        return (z, Codec::Zstd);
    }
    (raw.to_vec(), Codec::Raw)
}

/// The raw bytes of a stored segment, checked against its entry's lengths
/// and its fingerprint (BLAKE3 of the raw bytes). `container` names it in
/// the error.
pub(crate) fn open_segment(e: &SegmentEntry, stored: Vec<u8>, container: ContainerId) -> Result<Vec<u8>> {
    let raw = match e.codec {
        Codec::Raw => stored,
        Codec::Zstd => decompress(e, &stored, container)?,
    };
    check_raw(e, &raw, container)?;
    Ok(raw)
}

/// Checks a stored segment against its entry and fingerprint without
/// keeping the raw bytes (Copy keeps the stored form to write it on).
pub(crate) fn check_stored(e: &SegmentEntry, stored: &[u8], container: ContainerId) -> Result<()> {
    if stored.len() != e.len as usize {
        return Err(Error::Format(FormatError::CorruptSegment { container, fingerprint: e.fingerprint }));
    }
    match e.codec {
        Codec::Raw => check_raw(e, stored, container),
        Codec::Zstd => check_raw(e, &decompress(e, stored, container)?, container),
    }
}

fn decompress(e: &SegmentEntry, stored: &[u8], container: ContainerId) -> Result<Vec<u8>> {
    let corrupt = || Error::Format(FormatError::CorruptSegment { container, fingerprint: e.fingerprint });
    if stored.len() != e.len as usize || e.raw_len > MAX_RAW_LEN {
        return Err(corrupt());
    }
    // One decompression context per thread, reused: creating one per
    // segment showed as 1.5 % of a full seed's profile.
    thread_local! {
        static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> = const { std::cell::RefCell::new(None) };
    }
    DCTX.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(zstd::bulk::Decompressor::new().map_err(|_| corrupt())?);
        }
        let d = slot.as_mut().expect("set just above when it was empty");
        d.decompress(stored, e.raw_len as usize).map_err(|_| corrupt())
    })
}

fn check_raw(e: &SegmentEntry, raw: &[u8], container: ContainerId) -> Result<()> {
    if raw.len() != e.raw_len as usize || Fingerprint::of(raw) != e.fingerprint {
        return Err(Error::Format(FormatError::CorruptSegment { container, fingerprint: e.fingerprint }));
    }
    Ok(())
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
    pub(crate) version: u16,
    pub(crate) id: ContainerId,
    pub(crate) kind: ContainerKind,
    pub(crate) count: u32,
    pub(crate) table_crc: u32,
    pub(crate) data_len: u64,
    pub(crate) data_crc: u32,
}

impl Header {
    /// Bytes per table entry in this container's version.
    pub(crate) fn entry_len(&self) -> usize {
        if self.version == VERSION_1 { ENTRY_LEN_V1 } else { ENTRY_LEN }
    }

    /// Byte offset in the file where the data region starts.
    pub(crate) fn data_start(&self) -> u64 {
        (HEADER_LEN + self.entry_len() * self.count as usize) as u64
    }

    pub(crate) fn file_len(&self) -> u64 {
        HEADER_LEN as u64 + self.entry_len() as u64 * u64::from(self.count) + self.data_len
    }
}

/// Parses and checks a header. `expected` is the id the caller looked up.
pub(crate) fn parse_header(bytes: &[u8], expected: ContainerId, path: &Path) -> Result<Header> {
    let bad =
        |reason: String| Error::Format(FormatError::CorruptContainer { id: expected, path: Some(path.to_path_buf()), reason });
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
    if version != VERSION && version != VERSION_1 {
        return Err(bad(format!("format version {version}, this build reads {VERSION_1} and {VERSION}")));
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
    Ok(Header { version, id, kind, count, table_crc: le_u32(&h[20..24]), data_len, data_crc: le_u32(&h[32..36]) })
}

/// Parses and checks the table that follows a header.
pub(crate) fn parse_table(header: &Header, table: &[u8], path: &Path) -> Result<ContainerMeta> {
    let bad =
        |reason: String| Error::Format(FormatError::CorruptContainer { id: header.id, path: Some(path.to_path_buf()), reason });
    let entry_len = header.entry_len();
    if table.len() != entry_len * header.count as usize {
        return Err(bad("table truncated".into()));
    }
    if crc32fast::hash(table) != header.table_crc {
        return Err(bad("segment table checksum mismatch".into()));
    }
    let mut segments = Vec::with_capacity(header.count as usize);
    let mut next = 0u64;
    for (i, e) in table.chunks_exact(entry_len).enumerate() {
        let fingerprint = Fingerprint::from_slice(&e[..32]).ok_or_else(|| bad("table entry".into()))?;
        let offset = le_u32(&e[32..36]);
        let len = le_u32(&e[36..40]);
        let (raw_len, codec) = if header.version == VERSION_1 {
            (len, Codec::Raw)
        } else {
            let codec = match e[44] {
                0 => Codec::Raw,
                1 => Codec::Zstd,
                c => return Err(bad(format!("segment {i} ({fingerprint}) has unknown codec {c}"))),
            };
            if e[45..48] != [0, 0, 0] || codec == Codec::Raw && le_u32(&e[40..44]) != len {
                return Err(bad(format!("segment {i} ({fingerprint}) has a malformed entry")));
            }
            (le_u32(&e[40..44]), codec)
        };
        // Segments are stored back to back in table order; anything else
        // is a corrupt table even if its checksum happens to match.
        if u64::from(offset) != next {
            return Err(bad(format!("segment {i} ({fingerprint}) starts at {offset}, expected {next}")));
        }
        next += u64::from(len);
        segments.push(SegmentEntry { fingerprint, offset, len, raw_len, codec });
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
        return Err(Error::Format(FormatError::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("file is {file_len} bytes, header implies {}", header.file_len()),
        }));
    }
    Ok(header)
}

/// Reads into `buf` from `offset` until it is full or the file ends;
/// returns how much was read.
pub(crate) fn read_at_most(file: &File, buf: &mut [u8], offset: u64) -> std::io::Result<usize> {
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
    read_ranges(file, header.data_start(), header.data_len, header.id, which, path)
}

/// Reads the chosen segments of the data region at `data_start` (of
/// `data_len` bytes), coalescing adjacent ranges into one read each, each
/// segment in a vector of its own.
pub(crate) fn read_ranges(
    file: &File,
    data_start: u64,
    data_len: u64,
    id: ContainerId,
    which: &[SegmentEntry],
    path: &Path,
) -> Result<Vec<Vec<u8>>> {
    Ok(read_ranges_shared(file, data_start, data_len, id, which, path)?.iter().map(|b| b.to_vec()).collect())
}

/// As [`read_ranges`], without copying: each segment is a slice of the
/// buffer its run was read into (at most [`MAX_RUN`] bytes), so the
/// caller holds a run's buffer for as long as it holds any of its
/// segments.
pub(crate) fn read_ranges_shared(
    file: &File,
    data_start: u64,
    data_len: u64,
    id: ContainerId,
    which: &[SegmentEntry],
    path: &Path,
) -> Result<Vec<bytes::Bytes>> {
    let mut out = Vec::with_capacity(which.len());
    let mut i = 0;
    while i < which.len() {
        // Extend a run while the next wanted segment starts where this ends.
        let start = which[i].offset;
        let mut end = u64::from(start) + u64::from(which[i].len);
        let mut j = i + 1;
        while j < which.len() && u64::from(which[j].offset) == end && end - u64::from(start) < MAX_RUN {
            end += u64::from(which[j].len);
            j += 1;
        }
        if end > data_len {
            return Err(Error::Format(FormatError::CorruptContainer {
                id,
                path: Some(path.to_path_buf()),
                reason: format!("segment range {start}..{end} is past the data region"),
            }));
        }
        let mut buf = vec![0u8; (end - u64::from(start)) as usize];
        file.read_exact_at(&mut buf, data_start + u64::from(start)).map_err(|e| Error::io(path, e))?;
        let run = bytes::Bytes::from(buf);
        let mut at = 0usize;
        for e in &which[i..j] {
            out.push(run.slice(at..at + e.len as usize));
            at += e.len as usize;
        }
        i = j;
    }
    Ok(out)
}

/// Largest run of adjacent segments read at once.
const MAX_RUN: u64 = 8 << 20;

/// The raw bytes of one stored segment of container `container` (as
/// [`decode_container`] or [`Tier::read_segments`](crate::Tier::read_segments)
/// return it): decompressed if its entry says so, and checked against its
/// lengths and its fingerprint.
pub fn decode_segment(container: ContainerId, entry: &SegmentEntry, stored: Vec<u8>) -> Result<Vec<u8>> {
    open_segment(entry, stored, container)
}

/// Decodes a whole container held in memory, checking every checksum
/// including the data CRC. Used by scrubbing and by the fixtures tests.
pub fn decode_container(bytes: &[u8], expected: ContainerId) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let path = Path::new("<memory>");
    let header = parse_header(bytes, expected, path)?;
    if bytes.len() as u64 != header.file_len() {
        return Err(Error::Format(FormatError::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("{} bytes, header implies {}", bytes.len(), header.file_len()),
        }));
    }
    let table_end = HEADER_LEN + header.entry_len() * header.count as usize;
    let meta = parse_table(&header, &bytes[HEADER_LEN..table_end], path)?;
    let data = &bytes[table_end..];
    if crc32fast::hash(data) != header.data_crc {
        return Err(Error::Format(FormatError::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: "data checksum mismatch".into(),
        }));
    }
    let segs = meta.segments.iter().map(|e| data[e.offset as usize..(e.offset + e.len) as usize].to_vec()).collect();
    Ok((meta, segs))
}

/// A whole container file's bytes, refused past the largest container a
/// tier writes (so a corrupt or foreign file never drives a huge read).
pub(crate) fn read_capped(path: &Path, expected: ContainerId) -> Result<Vec<u8>> {
    let mut f = File::open(path).map_err(|e| Error::io(path, e))?;
    let len = f.metadata().map_err(|e| Error::io(path, e))?.len();
    // The sealed format's entries are the largest (64 bytes).
    if len > MAX_DATA_LEN + (64 + 64 * MAX_SEGMENTS as usize + 32) as u64 {
        return Err(Error::Format(FormatError::CorruptContainer {
            id: expected,
            path: Some(path.to_path_buf()),
            reason: format!("file of {len} bytes exceeds the cap"),
        }));
    }
    let mut bytes = Vec::with_capacity(len as usize);
    f.read_to_end(&mut bytes).map_err(|e| Error::io(path, e))?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_corrupt_compressed_segment_is_detected_not_decoded_wrong() {
        let raw = b"compressible text, compressible text, compressible text, compressible text".repeat(20);
        let (z, codec) = compress(&raw, 3);
        assert_eq!(codec, Codec::Zstd);
        let e =
            SegmentEntry { fingerprint: Fingerprint::of(&raw), offset: 0, len: z.len() as u32, raw_len: raw.len() as u32, codec };
        assert_eq!(open_segment(&e, z.clone(), ContainerId(1)).unwrap(), raw);
        // A flipped bit either fails (decompression or the fingerprint) or
        // decodes to exactly the right bytes (a bit zstd's decoder does not
        // use): never to wrong bytes. The container's data CRC sees it
        // either way.
        let mut caught = 0;
        for i in 0..z.len() {
            let mut bad = z.clone();
            bad[i] ^= 0x40;
            match open_segment(&e, bad.clone(), ContainerId(1)) {
                Err(_) => {
                    caught += 1;
                    assert!(check_stored(&e, &bad, ContainerId(1)).is_err());
                }
                Ok(decoded) => assert_eq!(decoded, raw, "flip at {i} decoded to wrong bytes"),
            }
        }
        assert!(caught * 2 > z.len(), "only {caught} of {} flips caught", z.len());
        // A raw length that lies is caught, never allocated past the cap.
        let lying = SegmentEntry { raw_len: u32::MAX, ..e };
        assert!(open_segment(&lying, z, ContainerId(1)).is_err());
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(segs in proptest::collection::vec((proptest::collection::vec(any::<u8>(), 0..300), 0u8..4), 0..20), id in any::<u64>(), meta_kind in any::<bool>()) {
            let kind = if meta_kind { ContainerKind::Meta } else { ContainerKind::Data };
            // Segments of random bytes, some of them made compressible
            // (repeated) and stored compressed: both codecs in one container.
            let raw: Vec<Vec<u8>> = segs.iter().map(|(b, rep)| b.repeat(usize::from(*rep) + 1)).collect();
            let stored: Vec<(Fingerprint, Vec<u8>, u32, Codec)> = raw
                .iter()
                .map(|r| {
                    let (bytes, codec) = compress(r, 3);
                    (Fingerprint::of(r), bytes, r.len() as u32, codec)
                })
                .collect();
            let refs: Vec<StoredSegment<'_>> = stored
                .iter()
                .map(|(f, b, n, c)| StoredSegment { fingerprint: *f, bytes: b, raw_len: *n, codec: *c })
                .collect();
            let bytes = encode(ContainerId(id), kind, &refs);
            let (meta, data) = decode_container(&bytes, ContainerId(id)).unwrap();
            prop_assert_eq!(meta.kind, kind);
            prop_assert_eq!(meta.segments.len(), raw.len());
            for ((r, s), (e, d)) in raw.iter().zip(&stored).zip(meta.segments.iter().zip(data.iter())) {
                prop_assert_eq!(s.0, e.fingerprint);
                prop_assert_eq!(s.3, e.codec);
                prop_assert_eq!(&s.1, d);
                prop_assert_eq!(&open_segment(e, d.clone(), ContainerId(id)).unwrap(), r);
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
            let bytes = encode(
                ContainerId(3),
                ContainerKind::Data,
                &[StoredSegment::raw(Fingerprint::of(&a), &a), StoredSegment::raw(Fingerprint::of(&b), &b)],
            );
            let bit = flip.index(bytes.len() * 8);
            let mut bad = bytes.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            prop_assert!(decode_container(&bad, ContainerId(3)).is_err());
            let len = cut.index(bytes.len());
            prop_assert!(decode_container(&bytes[..len], ContainerId(3)).is_err());
        }
    }
}
