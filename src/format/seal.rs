//! Sealed (encrypted, authenticated) containers and objects: container
//! format 3, and the envelope that seals a bucket's journal entries and
//! checkpoints. docs/FORMAT.md has the layouts.
//!
//! The cipher is XChaCha20-Poly1305 under the tier's 256-bit data key.
//! Each container gets a random 192-bit nonce `N`; its table is sealed
//! under `N`, its segment `k` under `N` with `k + 1` xored into the last
//! eight bytes, so every message of every container has its own nonce
//! without a counter that a crash could lose. Each segment is sealed on
//! its own, its tag kept in the sealed table, so a ranged read of a few
//! segments stays a ranged read: the data region keeps the plaintext
//! layout's offsets and lengths (the cipher is a stream cipher).
//!
//! What the associated data binds: the tier's id and the whole plaintext
//! header (so the container id, lengths and nonce) for the table; the tier
//! id, the container id, the segment's position and its table entry for
//! each segment. A container moved to another id or tier, a segment moved
//! within one, a flipped bit anywhere: each fails authentication.

use std::path::Path;

use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{Tag, XChaCha20Poly1305, XNonce};

use crate::error::{Error, FormatError, Result};
use crate::format::container::{self, ENTRY_LEN, HEADER_LEN, MAX_DATA_LEN, MAX_SEGMENTS};
use crate::format::entries::{Codec, ContainerKind, ContainerMeta, SegmentEntry};
use crate::format::fingerprint::{ContainerId, Fingerprint};

/// The container format version of a sealed container.
pub(crate) const VERSION: u16 = 3;
/// The plaintext header of a sealed container.
pub(crate) const HEADER_LEN_SEALED: usize = 64;
/// One entry of the sealed table: the version-2 entry and the segment's tag.
pub(crate) const SEALED_ENTRY_LEN: usize = ENTRY_LEN + TAG_LEN;
/// A Poly1305 tag.
pub(crate) const TAG_LEN: usize = 16;
/// The sealed table's plaintext prefix: kind, three zero bytes, count.
const TABLE_PREFIX: usize = 8;
/// A sealed object's envelope version.
// Sealed objects are an encrypted bucket's (feature `s3`).
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
pub(crate) const OBJECT_VERSION: u16 = 1;
/// A sealed object's envelope: magic, version, nonce.
// Sealed objects are an encrypted bucket's (feature `s3`).
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
const OBJECT_HEADER: usize = 4 + 2 + 24;

/// A tier's data key and id, which every seal and open takes. Its Debug
/// shows neither.
pub(crate) struct Sealer {
    cipher: XChaCha20Poly1305,
    tier: [u8; 16],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sealer(..)")
    }
}

impl Sealer {
    pub(crate) fn new(key: &[u8; 32], tier: [u8; 16]) -> Sealer {
        Sealer { cipher: XChaCha20Poly1305::new(key.into()), tier }
    }

    fn seal(&self, nonce: &XNonce, aad: &[u8], buf: &mut [u8]) -> Tag {
        self.cipher
            .encrypt_in_place_detached(nonce, aad, buf)
            .expect("XChaCha20-Poly1305 refuses only messages over 256 GiB; a container is at most 1 GiB")
    }

    fn open(&self, nonce: &XNonce, aad: &[u8], buf: &mut [u8], tag: &[u8]) -> bool {
        tag.len() == TAG_LEN && self.cipher.decrypt_in_place_detached(nonce, aad, buf, Tag::from_slice(tag)).is_ok()
    }

    fn table_aad(&self, header: &[u8]) -> Vec<u8> {
        let mut aad = Vec::with_capacity(64 + 16 + 24);
        aad.extend_from_slice(b"tierseed container table v3");
        aad.extend_from_slice(&self.tier);
        aad.extend_from_slice(&header[..HEADER_LEN_SEALED - 4]);
        aad
    }

    fn segment_aad(&self, id: ContainerId, k: usize, e: &SegmentEntry) -> [u8; 97] {
        let mut aad = [0u8; 97];
        aad[..20].copy_from_slice(b"tierseed segment v3 ");
        aad[20..36].copy_from_slice(&self.tier);
        aad[36..44].copy_from_slice(&id.0.to_le_bytes());
        aad[44..48].copy_from_slice(&(k as u32).to_le_bytes());
        aad[48..80].copy_from_slice(&e.fingerprint.0);
        aad[80..84].copy_from_slice(&e.offset.to_le_bytes());
        aad[84..88].copy_from_slice(&e.len.to_le_bytes());
        aad[88..92].copy_from_slice(&e.raw_len.to_le_bytes());
        aad[92] = codec_code(e.codec);
        aad
    }
}

/// A fresh random nonce.
pub(crate) fn random<const N: usize>() -> Result<[u8; N]> {
    let mut n = [0u8; N];
    getrandom::getrandom(&mut n).map_err(|e| Error::internal(format!("the operating system gave no random bytes: {e}")))?;
    Ok(n)
}

/// Message `k` of a container (0: the table, `k + 1`: segment `k`).
fn nonce(base: &[u8; 24], k: u64) -> XNonce {
    let mut n = *base;
    for (b, x) in n[16..].iter_mut().zip(k.to_le_bytes()) {
        *b ^= x;
    }
    XNonce::from(n)
}

fn codec_code(c: Codec) -> u8 {
    match c {
        Codec::Raw => 0,
        Codec::Zstd => 1,
    }
}

fn le_u32(b: &[u8]) -> u32 {
    u32::from_le_bytes([b[0], b[1], b[2], b[3]])
}

fn bad(id: ContainerId, path: &Path, reason: impl Into<String>) -> Error {
    Error::Format(FormatError::CorruptContainer { id, path: Some(path.to_path_buf()), reason: reason.into() })
}

/// Seals a plaintext container (format 2, as [`container::encode`] makes
/// it) into format 3, under a fresh nonce.
pub(crate) fn seal_container(s: &Sealer, plain: &[u8], id: ContainerId) -> Result<Vec<u8>> {
    let path = Path::new("<container being sealed>");
    let header = container::parse_header(plain, id, path)?;
    let start = header.data_start() as usize;
    if header.version != container::VERSION || plain.len() as u64 != header.file_len() {
        return Err(Error::internal(format!(
            "container {id} to seal: {} bytes at format version {}, where its header implies {} bytes and only version {} is sealed",
            plain.len(),
            header.version,
            header.file_len(),
            container::VERSION
        )));
    }
    let meta = container::parse_table(&header, &plain[HEADER_LEN..start], path)?;
    let base: [u8; 24] = random()?;
    let count = meta.segments.len();
    let table_len = TABLE_PREFIX + SEALED_ENTRY_LEN * count + TAG_LEN;
    let mut out = Vec::with_capacity(HEADER_LEN_SEALED + table_len + (plain.len() - start));
    out.resize(HEADER_LEN_SEALED, 0);
    {
        let h = &mut out[..HEADER_LEN_SEALED];
        h[0..4].copy_from_slice(container::MAGIC);
        h[4..6].copy_from_slice(&VERSION.to_le_bytes());
        h[8..16].copy_from_slice(&id.0.to_le_bytes());
        h[16..20].copy_from_slice(&(table_len as u32).to_le_bytes());
        h[24..32].copy_from_slice(&header.data_len.to_le_bytes());
        h[32..56].copy_from_slice(&base);
        let crc = crc32fast::hash(&h[..60]);
        h[60..64].copy_from_slice(&crc.to_le_bytes());
    }
    let table_aad = s.table_aad(&out[..HEADER_LEN_SEALED]);
    // The data region is copied once, into its place after the table, and
    // sealed there segment by segment; the tags go to the table.
    let data_start = HEADER_LEN_SEALED + table_len;
    out.resize(data_start, 0);
    out.extend_from_slice(&plain[start..]);
    let mut table = Vec::with_capacity(table_len);
    table.push(match meta.kind {
        ContainerKind::Data => 0,
        ContainerKind::Meta => 1,
    });
    table.extend_from_slice(&[0, 0, 0]);
    table.extend_from_slice(&(count as u32).to_le_bytes());
    for (k, e) in meta.segments.iter().enumerate() {
        let range = data_start + e.offset as usize..data_start + e.offset as usize + e.len as usize;
        let tag = s.seal(&nonce(&base, k as u64 + 1), &s.segment_aad(id, k, e), &mut out[range]);
        let at = HEADER_LEN + ENTRY_LEN * k;
        table.extend_from_slice(&plain[at..at + ENTRY_LEN]);
        table.extend_from_slice(&tag);
    }
    let tag = s.seal(&nonce(&base, 0), &table_aad, &mut table);
    table.extend_from_slice(&tag);
    out[HEADER_LEN_SEALED..data_start].copy_from_slice(&table);
    Ok(out)
}

/// The plaintext header of a sealed container.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SealedHeader {
    pub(crate) id: ContainerId,
    pub(crate) table_len: u32,
    pub(crate) data_len: u64,
    nonce: [u8; 24],
    bytes: [u8; HEADER_LEN_SEALED],
}

impl SealedHeader {
    pub(crate) fn data_start(&self) -> u64 {
        HEADER_LEN_SEALED as u64 + u64::from(self.table_len)
    }

    pub(crate) fn file_len(&self) -> u64 {
        self.data_start() + self.data_len
    }
}

/// Parses and checks a sealed container's header (which authenticates
/// nothing by itself: its bytes are the table's associated data).
pub(crate) fn parse_header(bytes: &[u8], expected: ContainerId, path: &Path) -> Result<SealedHeader> {
    if bytes.len() < HEADER_LEN_SEALED {
        return Err(bad(expected, path, format!("{} bytes, shorter than a sealed container's header", bytes.len())));
    }
    let h = &bytes[..HEADER_LEN_SEALED];
    if &h[0..4] != container::MAGIC {
        return Err(bad(expected, path, "bad magic"));
    }
    if crc32fast::hash(&h[..60]) != le_u32(&h[60..64]) {
        return Err(bad(expected, path, "header checksum mismatch"));
    }
    let version = u16::from_le_bytes([h[4], h[5]]);
    if version != VERSION {
        return Err(bad(expected, path, format!("format version {version}, not a sealed container")));
    }
    let mut id = [0u8; 8];
    id.copy_from_slice(&h[8..16]);
    let id = ContainerId(u64::from_le_bytes(id));
    if id != expected {
        return Err(bad(expected, path, format!("header names container {id}")));
    }
    let table_len = le_u32(&h[16..20]);
    let mut data_len = [0u8; 8];
    data_len.copy_from_slice(&h[24..32]);
    let data_len = u64::from_le_bytes(data_len);
    let entries = (table_len as usize).checked_sub(TABLE_PREFIX + TAG_LEN);
    let plausible = entries.is_some_and(|n| n % SEALED_ENTRY_LEN == 0 && n / SEALED_ENTRY_LEN <= MAX_SEGMENTS as usize);
    if !plausible || data_len > MAX_DATA_LEN || h[6..8] != [0, 0] || h[20..24] != [0; 4] || h[56..60] != [0; 4] {
        return Err(bad(expected, path, format!("implausible header: table of {table_len} bytes, {data_len} data bytes")));
    }
    let mut nonce = [0u8; 24];
    nonce.copy_from_slice(&h[32..56]);
    let mut all = [0u8; HEADER_LEN_SEALED];
    all.copy_from_slice(h);
    Ok(SealedHeader { id, table_len, data_len, nonce, bytes: all })
}

/// A sealed container's table, opened: its metadata and what opening its
/// segments needs (their tags and the container's nonce).
#[derive(Clone, Debug)]
pub(crate) struct OpenTable {
    pub(crate) meta: ContainerMeta,
    tags: Vec<[u8; TAG_LEN]>,
    nonce: [u8; 24],
}

/// Opens and checks a sealed container's table (`sealed`: the
/// `table_len` bytes after the header).
pub(crate) fn open_table(s: &Sealer, h: &SealedHeader, sealed: &[u8], path: &Path) -> Result<OpenTable> {
    let id = h.id;
    if sealed.len() != h.table_len as usize {
        return Err(bad(id, path, "table truncated"));
    }
    let (body, tag) = sealed.split_at(sealed.len() - TAG_LEN);
    let mut table = body.to_vec();
    if !s.open(&nonce(&h.nonce, 0), &s.table_aad(&h.bytes), &mut table, tag) {
        return Err(bad(
            id,
            path,
            "its table fails authentication (a changed or rotten byte, a container swapped for another, or one sealed under another key or tier)",
        ));
    }
    let kind = match table[0] {
        0 => ContainerKind::Data,
        1 => ContainerKind::Meta,
        k => return Err(bad(id, path, format!("unknown kind {k}"))),
    };
    let count = le_u32(&table[4..8]) as usize;
    if table[1..4] != [0, 0, 0] || table.len() != TABLE_PREFIX + SEALED_ENTRY_LEN * count {
        return Err(bad(id, path, "malformed sealed table"));
    }
    let mut segments = Vec::with_capacity(count);
    let mut tags = Vec::with_capacity(count);
    let mut next = 0u64;
    for (i, e) in table[TABLE_PREFIX..].chunks_exact(SEALED_ENTRY_LEN).enumerate() {
        let fingerprint = Fingerprint::from_slice(&e[..32]).ok_or_else(|| bad(id, path, "table entry"))?;
        let (offset, len, raw_len) = (le_u32(&e[32..36]), le_u32(&e[36..40]), le_u32(&e[40..44]));
        let codec = match e[44] {
            0 => Codec::Raw,
            1 => Codec::Zstd,
            c => return Err(bad(id, path, format!("segment {i} ({fingerprint}) has unknown codec {c}"))),
        };
        if e[45..48] != [0, 0, 0] || codec == Codec::Raw && raw_len != len || u64::from(offset) != next {
            return Err(bad(id, path, format!("segment {i} ({fingerprint}) has a malformed entry")));
        }
        next += u64::from(len);
        segments.push(SegmentEntry { fingerprint, offset, len, raw_len, codec });
        let mut t = [0u8; TAG_LEN];
        t.copy_from_slice(&e[ENTRY_LEN..]);
        tags.push(t);
    }
    if next != h.data_len {
        return Err(bad(id, path, format!("segments cover {next} bytes, header says {}", h.data_len)));
    }
    Ok(OpenTable { meta: ContainerMeta { id, kind, segments, data_len: h.data_len }, tags, nonce: h.nonce })
}

impl OpenTable {
    /// Opens segments read from this container's data region, in place:
    /// `which[i]`'s sealed bytes are `got[i]`. A segment the table does not
    /// list at that offset, or whose bytes fail authentication, is named.
    pub(crate) fn open_segments(&self, s: &Sealer, which: &[SegmentEntry], got: &mut [Vec<u8>], path: &Path) -> Result<()> {
        let id = self.meta.id;
        let segs = &self.meta.segments;
        for (e, buf) in which.iter().zip(got.iter_mut()) {
            let mut k = segs.partition_point(|t| t.offset < e.offset);
            while k < segs.len() && segs[k].offset == e.offset && (segs[k].fingerprint != e.fingerprint || segs[k].len != e.len) {
                k += 1;
            }
            if k >= segs.len() || segs[k].offset != e.offset {
                return Err(bad(id, path, format!("its table lists no segment {} at offset {}", e.fingerprint, e.offset)));
            }
            let t = &segs[k];
            if buf.len() != t.len as usize
                || !s.open(&nonce(&self.nonce, k as u64 + 1), &s.segment_aad(id, k, t), buf, &self.tags[k])
            {
                return Err(Error::Format(FormatError::CorruptSegment { container: id, fingerprint: e.fingerprint }));
            }
        }
        Ok(())
    }
}

/// Opens a whole sealed container held in memory, every segment
/// authenticated (scrub, recovery).
pub(crate) fn open_container(
    s: &Sealer,
    bytes: &[u8],
    expected: ContainerId,
    path: &Path,
) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let h = parse_header(bytes, expected, path)?;
    if bytes.len() as u64 != h.file_len() {
        return Err(bad(expected, path, format!("{} bytes, header implies {}", bytes.len(), h.file_len())));
    }
    let start = h.data_start() as usize;
    let table = open_table(s, &h, &bytes[HEADER_LEN_SEALED..start], path)?;
    let data = &bytes[start..];
    let mut segs: Vec<Vec<u8>> =
        table.meta.segments.iter().map(|e| data[e.offset as usize..(e.offset + e.len) as usize].to_vec()).collect();
    table.open_segments(s, &table.meta.segments, &mut segs, path)?;
    Ok((table.meta, segs))
}

/// Whether the first bytes of a container are a sealed one's (version 3),
/// as far as the version field says; the header's own checks come after.
pub(crate) fn is_sealed(bytes: &[u8]) -> bool {
    bytes.len() >= 6 && &bytes[0..4] == container::MAGIC && u16::from_le_bytes([bytes[4], bytes[5]]) == VERSION
}

/// Seals a whole object (a journal entry, a checkpoint part) under a fresh
/// nonce, bound to its name: an object replayed under another name fails.
// Sealed objects are an encrypted bucket's (feature `s3`).
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
pub(crate) fn seal_object(s: &Sealer, name: &str, plain: &[u8]) -> Result<Vec<u8>> {
    let n: [u8; 24] = random()?;
    let mut out = Vec::with_capacity(OBJECT_HEADER + plain.len() + TAG_LEN);
    out.extend_from_slice(crate::format::magic::SEALED_OBJECT);
    out.extend_from_slice(&OBJECT_VERSION.to_le_bytes());
    out.extend_from_slice(&n);
    let mut body = plain.to_vec();
    let tag = s.seal(&XNonce::from(n), &object_aad(s, name), &mut body);
    out.extend_from_slice(&body);
    out.extend_from_slice(&tag);
    Ok(out)
}

// Sealed objects are an encrypted bucket's (feature `s3`).
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
fn object_aad(s: &Sealer, name: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(32 + name.len());
    aad.extend_from_slice(b"tierseed object v1 ");
    aad.extend_from_slice(&s.tier);
    aad.extend_from_slice(name.as_bytes());
    aad
}

/// Opens an object [`seal_object`] sealed under `name`; `what` names it in
/// errors.
// Sealed objects are an encrypted bucket's (feature `s3`).
#[cfg_attr(not(any(feature = "s3", test)), allow(dead_code))]
pub(crate) fn open_object(s: &Sealer, name: &str, bytes: &[u8], what: &dyn Fn() -> String) -> Result<Vec<u8>> {
    if bytes.len() < OBJECT_HEADER + TAG_LEN || &bytes[..4] != crate::format::magic::SEALED_OBJECT {
        return Err(Error::corrupt_record(what(), "not a sealed object (written without the tier's key?)"));
    }
    let version = u16::from_le_bytes([bytes[4], bytes[5]]);
    if version != OBJECT_VERSION {
        return Err(Error::Format(FormatError::UnsupportedVersion {
            what: what(),
            found: u32::from(version),
            supported: u32::from(OBJECT_VERSION),
        }));
    }
    let n = XNonce::clone_from_slice(&bytes[6..OBJECT_HEADER]);
    let (body, tag) = bytes[OBJECT_HEADER..].split_at(bytes.len() - OBJECT_HEADER - TAG_LEN);
    let mut body = body.to_vec();
    if !s.open(&n, &object_aad(s, name), &mut body, tag) {
        return Err(Error::corrupt_record(
            what(),
            "fails authentication (a changed byte, an object replayed under another name, or sealed under another key)",
        ));
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::entries::StoredSegment;

    fn sealer() -> Sealer {
        Sealer::new(&[7u8; 32], [1u8; 16])
    }

    fn sample(id: u64) -> (Vec<u8>, Vec<Vec<u8>>) {
        let raws = vec![b"alpha".repeat(40), Vec::new(), b"gamma gamma".to_vec(), vec![9u8; 3000]];
        let stored: Vec<(Fingerprint, Vec<u8>, u32, Codec)> = raws
            .iter()
            .map(|r| {
                let (b, c) = container::compress(r, 3);
                (Fingerprint::of(r), b, r.len() as u32, c)
            })
            .collect();
        let refs: Vec<StoredSegment<'_>> =
            stored.iter().map(|(f, b, n, c)| StoredSegment { fingerprint: *f, bytes: b, raw_len: *n, codec: *c }).collect();
        (container::encode(ContainerId(id), ContainerKind::Meta, &refs), raws)
    }

    #[test]
    fn a_sealed_container_opens_to_what_was_sealed_and_hides_it() {
        let s = sealer();
        let (plain, raws) = sample(5);
        let sealed = seal_container(&s, &plain, ContainerId(5)).unwrap();
        assert!(is_sealed(&sealed));
        let (meta, segs) = open_container(&s, &sealed, ContainerId(5), Path::new("x")).unwrap();
        let (pmeta, psegs) = container::decode_container(&plain, ContainerId(5)).unwrap();
        assert_eq!(meta, pmeta);
        assert_eq!(segs, psegs);
        for (e, (seg, raw)) in meta.segments.iter().zip(segs.into_iter().zip(&raws)) {
            assert_eq!(&container::open_segment(e, seg, ContainerId(5)).unwrap(), raw);
            // No fingerprint and no plaintext run of 16 bytes survives.
            assert!(!sealed.windows(32).any(|w| w == e.fingerprint.0));
        }
        assert!(!sealed.windows(16).any(|w| w == &raws[3][..16]));
        // Two seals of one container differ (fresh nonces).
        assert_ne!(seal_container(&s, &plain, ContainerId(5)).unwrap(), sealed);
    }

    #[test]
    fn every_flipped_bit_of_a_sealed_container_is_caught() {
        let s = sealer();
        let (plain, _) = sample(9);
        let sealed = seal_container(&s, &plain, ContainerId(9)).unwrap();
        for bit in 0..sealed.len() * 8 {
            let mut b = sealed.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            assert!(open_container(&s, &b, ContainerId(9), Path::new("x")).is_err(), "flip of bit {bit} not caught");
        }
    }

    #[test]
    fn a_container_under_another_id_tier_or_key_fails() {
        let (plain, _) = sample(3);
        let sealed = seal_container(&sealer(), &plain, ContainerId(3)).unwrap();
        // Swapped for container 4: the header names 3 (and with the header
        // rewritten, the table's associated data no longer matches).
        assert!(open_container(&sealer(), &sealed, ContainerId(4), Path::new("x")).is_err());
        let mut renamed = sealed.clone();
        renamed[8..16].copy_from_slice(&4u64.to_le_bytes());
        let crc = crc32fast::hash(&renamed[..60]);
        renamed[60..64].copy_from_slice(&crc.to_le_bytes());
        let e = open_container(&sealer(), &renamed, ContainerId(4), Path::new("x")).unwrap_err();
        assert!(e.to_string().contains("fails authentication"), "{e}");
        assert!(open_container(&Sealer::new(&[7u8; 32], [2u8; 16]), &sealed, ContainerId(3), Path::new("x")).is_err());
        assert!(open_container(&Sealer::new(&[8u8; 32], [1u8; 16]), &sealed, ContainerId(3), Path::new("x")).is_err());
    }

    #[test]
    fn a_ranged_read_of_one_segment_opens_alone_and_a_moved_one_fails() {
        let s = sealer();
        let (plain, _) = sample(2);
        let sealed = seal_container(&s, &plain, ContainerId(2)).unwrap();
        let h = parse_header(&sealed, ContainerId(2), Path::new("x")).unwrap();
        let start = h.data_start() as usize;
        let t = open_table(&s, &h, &sealed[HEADER_LEN_SEALED..start], Path::new("x")).unwrap();
        let e = t.meta.segments[2];
        let mut got = vec![sealed[start + e.offset as usize..start + (e.offset + e.len) as usize].to_vec()];
        t.open_segments(&s, &[e], &mut got, Path::new("x")).unwrap();
        assert_eq!(got[0], b"gamma gamma");
        // Segment 3's bytes offered as segment 2's: refused.
        let other = t.meta.segments[3];
        let mut swapped = vec![sealed[start + other.offset as usize..start + (other.offset + e.len) as usize].to_vec()];
        assert!(t.open_segments(&s, &[e], &mut swapped, Path::new("x")).is_err());
    }

    #[test]
    fn a_sealed_object_opens_only_under_its_own_name() {
        let s = sealer();
        let sealed = seal_object(&s, "namespace/0000000000000001", b"secret file names").unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        let what = || "object".to_string();
        assert_eq!(open_object(&s, "namespace/0000000000000001", &sealed, &what).unwrap(), b"secret file names");
        assert!(open_object(&s, "namespace/0000000000000002", &sealed, &what).is_err());
        let mut flipped = sealed.clone();
        let last = flipped.len() - 1;
        flipped[last] ^= 1;
        assert!(open_object(&s, "namespace/0000000000000001", &flipped, &what).is_err());
        assert!(open_object(&s, "namespace/0000000000000001", &sealed[..10], &what).is_err());
    }

    proptest::proptest! {
        #[test]
        fn opening_garbage_never_panics(bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = open_container(&sealer(), &bytes, ContainerId(1), Path::new("x"));
            let _ = open_object(&sealer(), "n", &bytes, &|| "o".into());
        }
    }
}
