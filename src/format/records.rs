//! Private, versioned counterparts of the public types that are persisted.
//!
//! A public type (`FileEntry`, `Selection`, `TierConfig`, `Mode`, `Phase`,
//! `Counters`, `Report`) may gain a field in any release; its persisted
//! record may not change without a new version. So every record is one of
//! these structs, converted by hand (rust-analyzer's rule), and the wire
//! format is postcard over exactly these fields in this order. The version
//! 1 structs here encode byte for byte as the first release's records did
//! (`fixtures/v1` holds a tier and a job written by it, and a test opens
//! them).

use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::format::durable::{Versioned, decode_versioned};
use crate::format::entries::{FileAttrs, FileEntry, FileKind};
use crate::format::fingerprint::Fingerprint;

/// Gives a fieldless enum its name (`name`, `Display`, `FromStr`) and its
/// persisted code (`code`, `from_code`) from one table, so that the
/// spellings the CLI and job files accept and the codes contexts store
/// cannot drift apart. `$what` names the setting in a parse error.
macro_rules! named_codes {
    ($ty:ident, $what:literal, { $($variant:ident => ($name:literal, $code:literal)),+ $(,)? }) => {
        impl $ty {
            /// The name, as the CLI and job files spell it.
            pub fn name(self) -> &'static str {
                match self {
                    $($ty::$variant => $name,)+
                }
            }

            pub(crate) fn code(self) -> u8 {
                match self {
                    $($ty::$variant => $code,)+
                }
            }

            pub(crate) fn from_code(code: u8) -> Option<$ty> {
                match code {
                    $($code => Some($ty::$variant),)+
                    _ => None,
                }
            }
        }

        impl std::fmt::Display for $ty {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.name())
            }
        }

        impl std::str::FromStr for $ty {
            type Err = crate::error::Error;
            fn from_str(s: &str) -> crate::error::Result<Self> {
                match s {
                    $($name => Ok($ty::$variant),)+
                    _ => Err(crate::error::Error::InvalidConfig(format!(
                        "{} {s:?}: expected {}",
                        $what,
                        [$($name),+].join(" or ")
                    ))),
                }
            }
        }
    };
}
pub(crate) use named_codes;

/// A namespace entry, version 1: path, size, whole-second mtime, tree.
/// Still read (tiers, suspended jobs and object-tier journals written
/// before version 2); never written.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct FileEntryV1 {
    path: String,
    size: u64,
    mtime: i64,
    root: [u8; 32],
    height: u8,
}

impl From<FileEntryV1> for FileEntry {
    /// Through version 2, with the attributes version 1 did not have at
    /// their defaults: a regular file, no mode or owner, whole seconds.
    fn from(e: FileEntryV1) -> Self {
        FileEntry::from(FileEntryV2 {
            path: e.path,
            size: e.size,
            mtime: e.mtime,
            mtime_nanos: 0,
            kind: FileKindV2::File,
            mode: None,
            owner: None,
            root: e.root,
            height: e.height,
        })
    }
}

/// A namespace entry's kind, version 2. Postcard writes the variant's
/// index, so variants are only ever appended; an unknown index fails to
/// decode and the record is reported corrupt.
#[derive(Clone, Copy, Serialize, Deserialize)]
enum FileKindV2 {
    File,
    Symlink,
}

/// A namespace entry, version 2: version 1 plus the kind (file or
/// symlink), the permission bits, the owner and the mtime's nanoseconds.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct FileEntryV2 {
    path: String,
    size: u64,
    mtime: i64,
    mtime_nanos: u32,
    kind: FileKindV2,
    mode: Option<u32>,
    owner: Option<(u32, u32)>,
    root: [u8; 32],
    height: u8,
}

impl From<&FileEntry> for FileEntryV2 {
    fn from(e: &FileEntry) -> Self {
        FileEntryV2 {
            path: e.path.clone(),
            size: e.size,
            mtime: e.mtime,
            mtime_nanos: e.attrs.mtime_nanos,
            kind: match e.attrs.kind {
                FileKind::File => FileKindV2::File,
                FileKind::Symlink => FileKindV2::Symlink,
            },
            mode: e.attrs.mode,
            owner: e.attrs.owner,
            root: e.root.0,
            height: e.height,
        }
    }
}

impl From<FileEntryV2> for FileEntry {
    fn from(e: FileEntryV2) -> Self {
        FileEntry {
            path: e.path,
            size: e.size,
            mtime: e.mtime,
            root: Fingerprint(e.root),
            height: e.height,
            attrs: FileAttrs {
                kind: match e.kind {
                    FileKindV2::File => FileKind::File,
                    FileKindV2::Symlink => FileKind::Symlink,
                },
                mode: e.mode,
                owner: e.owner,
                mtime_nanos: e.mtime_nanos,
            },
        }
    }
}

/// Decodes namespace entries written at `version` (2, as `FileEntryV2`)
/// or at version 1: the one way the tier's namespace, a job's file chunks
/// and an object tier's checkpoints read entries of either age.
pub(crate) fn decode_entries<T, V2, V1>(magic: &[u8; 4], version: u16, bytes: &[u8], what: &dyn Fn() -> String) -> Result<T>
where
    V2: serde::de::DeserializeOwned + Into<T>,
    V1: serde::de::DeserializeOwned + Into<T>,
{
    Ok(match decode_versioned::<V2, V1>(magic, version, bytes, what)? {
        Versioned::Current(r) => r.into(),
        Versioned::V1(r) => r.into(),
    })
}

/// Entries in a list (a chunk of a job's files, a checkpoint part), at
/// either version.
pub(crate) struct Entries(pub(crate) Vec<FileEntry>);

impl From<Vec<FileEntryV1>> for Entries {
    fn from(v: Vec<FileEntryV1>) -> Self {
        Entries(v.into_iter().map(FileEntry::from).collect())
    }
}

impl From<Vec<FileEntryV2>> for Entries {
    fn from(v: Vec<FileEntryV2>) -> Self {
        Entries(v.into_iter().map(FileEntry::from).collect())
    }
}

/// A selection, version 1.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct SelectionV1 {
    pub(crate) all: bool,
    pub(crate) globs: Vec<String>,
    pub(crate) prefixes: Vec<String>,
    pub(crate) paths: Vec<String>,
    pub(crate) older_than_secs: Option<u64>,
}

/// Tier settings, version 1.
#[derive(Clone, Copy, Serialize, Deserialize)]
pub(crate) struct TierConfigV1 {
    pub(crate) container_size: u64,
    pub(crate) chunk_min: u32,
    pub(crate) chunk_avg: u32,
    pub(crate) chunk_max: u32,
    pub(crate) fanout: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().fold(String::new(), |mut s, b| {
            use std::fmt::Write as _;
            write!(s, "{b:02x}").expect("writing to a String cannot fail");
            s
        })
    }

    /// The postcard bytes of a version-2 namespace entry, written out by
    /// hand from postcard's wire format: a change to `FileEntryV2` that
    /// would silently re-interpret stored entries fails here.
    #[test]
    fn namespace_entry_v2_bytes_are_pinned() {
        let e = FileEntry {
            path: "d/f".into(),
            size: 5,
            mtime: -2,
            root: Fingerprint([7; 32]),
            height: 1,
            attrs: FileAttrs { kind: FileKind::Symlink, mode: Some(0o4755), owner: Some((1000, 100)), mtime_nanos: 300 },
        };
        let bytes = postcard::to_stdvec(&FileEntryV2::from(&e)).expect("a plain struct encodes");
        let want = String::from("03642f66") // path: length 3, "d/f"
            + "05" // size
            + "03" // mtime -2, zigzag
            + "ac02" // mtime_nanos 300
            + "01" // kind: Symlink
            + "01ed13" // mode: Some(0o4755)
            + "01e80764" // owner: Some((1000, 100))
            + &"07".repeat(32) // root
            + "01"; // height
        assert_eq!(hex(&bytes), want);
        let back: FileEntryV2 = postcard::from_bytes(&bytes).expect("its own bytes decode");
        assert_eq!(FileEntry::from(back), e);
        // A kind this build does not know is an undecodable record, not a
        // file restored as something else.
        let mut unknown = bytes.clone();
        unknown[8] = 9;
        assert!(postcard::from_bytes::<FileEntryV2>(&unknown).is_err());
    }

    /// A version-1 entry reads as a regular file with no mode or owner.
    #[test]
    fn namespace_entry_v1_reads_with_default_attributes() {
        let v1 = FileEntryV1 { path: "a".into(), size: 1, mtime: 9, root: [1; 32], height: 0 };
        let e = FileEntry::from(v1);
        assert_eq!(e.attrs, FileAttrs::default());
        assert_eq!(e.attrs.kind, FileKind::File);
    }
}
