//! Reading a container of either kind: plaintext (formats 1 and 2) in a
//! plain tier, sealed (format 3) in an encrypted one. The stores call
//! these with their tier's [`Sealer`] (or none); a container of the other
//! kind than its tier's is corrupt (it was not written by this tier), so a
//! plaintext container planted in an encrypted bucket is never read as
//! data.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::error::{Error, FormatError, Result};
use crate::format::container::{self, HEADER_LEN};
use crate::format::entries::{ContainerMeta, SegmentEntry};
use crate::format::fingerprint::ContainerId;
use crate::format::seal::{self, HEADER_LEN_SEALED, OpenTable, SealedHeader, Sealer};

/// Bytes to read to hold either kind's header.
pub(crate) const PROBE_HEADER: usize = if HEADER_LEN_SEALED > HEADER_LEN { HEADER_LEN_SEALED } else { HEADER_LEN };

/// A container's header, of either kind.
pub(crate) enum AnyHeader {
    Plain(container::Header),
    Sealed(SealedHeader),
}

impl AnyHeader {
    /// Where the data region starts.
    pub(crate) fn data_start(&self) -> u64 {
        match self {
            AnyHeader::Plain(h) => h.data_start(),
            AnyHeader::Sealed(h) => h.data_start(),
        }
    }

    /// Where the table starts.
    pub(crate) fn table_start(&self) -> u64 {
        match self {
            AnyHeader::Plain(_) => HEADER_LEN as u64,
            AnyHeader::Sealed(_) => HEADER_LEN_SEALED as u64,
        }
    }

    pub(crate) fn data_len(&self) -> u64 {
        match self {
            AnyHeader::Plain(h) => h.data_len,
            AnyHeader::Sealed(h) => h.data_len,
        }
    }

    /// The whole container's length, as its header says.
    pub(crate) fn file_len(&self) -> u64 {
        match self {
            AnyHeader::Plain(h) => h.file_len(),
            AnyHeader::Sealed(h) => h.file_len(),
        }
    }
}

fn wrong_kind(id: ContainerId, path: &Path, sealed: bool) -> Error {
    let reason = if sealed {
        "it is sealed (encrypted), but its tier is not encrypted: not written by this tier"
    } else {
        "it is not sealed, but its tier is encrypted: not written by this tier"
    };
    Error::Format(FormatError::CorruptContainer { id, path: Some(path.to_path_buf()), reason: reason.into() })
}

/// Parses a header of the kind the tier expects from a container's first
/// bytes (at least [`PROBE_HEADER`] of them, unless the container is
/// shorter).
pub(crate) fn parse_header(bytes: &[u8], id: ContainerId, path: &Path, sealer: Option<&Sealer>) -> Result<AnyHeader> {
    match (seal::is_sealed(bytes), sealer) {
        (true, Some(_)) => Ok(AnyHeader::Sealed(seal::parse_header(bytes, id, path)?)),
        (false, None) => Ok(AnyHeader::Plain(container::parse_header(bytes, id, path)?)),
        (sealed, _) => Err(wrong_kind(id, path, sealed)),
    }
}

/// A container's table, opened: the metadata, and for a sealed container
/// what opening its segments needs (its metadata included).
pub(crate) enum Table {
    Plain(ContainerMeta),
    Sealed(OpenTable),
}

impl Table {
    pub(crate) fn into_meta(self) -> ContainerMeta {
        match self {
            Table::Plain(m) => m,
            Table::Sealed(t) => t.meta,
        }
    }
}

/// Parses (or opens) the table that follows `header`.
pub(crate) fn parse_table(header: &AnyHeader, table: &[u8], path: &Path, sealer: Option<&Sealer>) -> Result<Table> {
    match (header, sealer) {
        (AnyHeader::Plain(h), _) => Ok(Table::Plain(container::parse_table(h, table, path)?)),
        (AnyHeader::Sealed(h), Some(s)) => Ok(Table::Sealed(seal::open_table(s, h, table, path)?)),
        (AnyHeader::Sealed(h), None) => Err(wrong_kind(h.id, path, true)),
    }
}

/// Reads a container file's header, checking the file's length against it.
pub(crate) fn read_header(file: &File, id: ContainerId, path: &Path, sealer: Option<&Sealer>) -> Result<AnyHeader> {
    let io = |e| Error::io(path, e);
    let file_len = file.metadata().map_err(io)?.len();
    let mut buf = [0u8; PROBE_HEADER];
    let n = container::read_at_most(file, &mut buf, 0).map_err(io)?;
    let header = parse_header(&buf[..n], id, path, sealer)?;
    if file_len != header.file_len() {
        return Err(Error::Format(FormatError::CorruptContainer {
            id,
            path: Some(path.to_path_buf()),
            reason: format!("file is {file_len} bytes, header implies {}", header.file_len()),
        }));
    }
    Ok(header)
}

/// Reads a container file's header and table (no segment bytes).
pub(crate) fn read_table(file: &File, id: ContainerId, path: &Path, sealer: Option<&Sealer>) -> Result<(AnyHeader, Table)> {
    let header = read_header(file, id, path, sealer)?;
    let start = header.table_start();
    let mut table = vec![0u8; (header.data_start() - start) as usize];
    file.read_exact_at(&mut table, start).map_err(|e| Error::io(path, e))?;
    let t = parse_table(&header, &table, path, sealer)?;
    Ok((header, t))
}

/// Segments as stored, and the sealed layout a store may keep.
pub(crate) type SegmentsRead = (Vec<Vec<u8>>, Option<std::sync::Arc<SealedLayout>>);

/// What reading a sealed container's segments needs from its header and
/// table, kept by a store between reads (containers are immutable).
pub(crate) struct SealedLayout {
    data_start: u64,
    data_len: u64,
    file_len: u64,
    table: Table,
}

/// Reads the chosen segments of a container file as stored (opened, for
/// a sealed one: the bytes its codec wrote). A sealed container's layout
/// comes from `cached` when the store kept it (the file's length is still
/// checked against it), else from its header and table, and is returned
/// for the store to keep.
pub(crate) fn read_segments(
    file: &File,
    id: ContainerId,
    which: &[SegmentEntry],
    path: &Path,
    sealer: Option<&Sealer>,
    cached: Option<std::sync::Arc<SealedLayout>>,
) -> Result<SegmentsRead> {
    let Some(s) = sealer else {
        let header = container::read_header(file, id, path)?;
        return Ok((container::read_segments(file, &header, which, path)?, None));
    };
    let layout = if let Some(l) = cached {
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        if len != l.file_len {
            return Err(Error::Format(FormatError::CorruptContainer {
                id,
                path: Some(path.to_path_buf()),
                reason: format!("file is {len} bytes, its header implied {}", l.file_len),
            }));
        }
        l
    } else {
        // The tags are in the table: read it too (a few KiB beside the
        // segments, from the same file).
        let (header, table) = read_table(file, id, path, sealer)?;
        std::sync::Arc::new(SealedLayout {
            data_start: header.data_start(),
            data_len: header.data_len(),
            file_len: header.file_len(),
            table,
        })
    };
    let mut got = container::read_ranges(file, layout.data_start, layout.data_len, id, which, path)?;
    open_read(s, &layout.table, which, &mut got, path)?;
    Ok((got, Some(layout)))
}

/// Opens segments read from a sealed container (nothing to do for a
/// plaintext one).
pub(crate) fn open_read(s: &Sealer, table: &Table, which: &[SegmentEntry], got: &mut [Vec<u8>], path: &Path) -> Result<()> {
    match table {
        Table::Sealed(t) => t.open_segments(s, which, got, path),
        Table::Plain(_) => Ok(()),
    }
}

/// Decodes a whole container held in memory, every check made.
pub(crate) fn decode(
    bytes: &[u8],
    id: ContainerId,
    path: &Path,
    sealer: Option<&Sealer>,
) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let located = |e: Error| match e {
        Error::Format(FormatError::CorruptContainer { id, reason, .. }) => {
            Error::Format(FormatError::CorruptContainer { id, path: Some(path.to_path_buf()), reason })
        }
        e => e,
    };
    match (seal::is_sealed(bytes), sealer) {
        (true, Some(s)) => seal::open_container(s, bytes, id, path),
        (false, None) => container::decode_container(bytes, id).map_err(located),
        (sealed, _) => Err(wrong_kind(id, path, sealed)),
    }
}

/// Reads a whole container file and checks everything (scrub).
pub(crate) fn scrub_file(path: &Path, id: ContainerId, sealer: Option<&Sealer>) -> Result<(ContainerMeta, Vec<Vec<u8>>)> {
    let bytes = container::read_capped(path, id)?;
    decode(&bytes, id, path, sealer)
}
