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

use crate::format::entries::FileEntry;
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

/// A namespace entry, version 1.
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct FileEntryV1 {
    path: String,
    size: u64,
    mtime: i64,
    root: [u8; 32],
    height: u8,
}

impl From<&FileEntry> for FileEntryV1 {
    fn from(e: &FileEntry) -> Self {
        FileEntryV1 { path: e.path.clone(), size: e.size, mtime: e.mtime, root: e.root.0, height: e.height }
    }
}

impl From<FileEntryV1> for FileEntry {
    fn from(e: FileEntryV1) -> Self {
        FileEntry { path: e.path, size: e.size, mtime: e.mtime, root: Fingerprint(e.root), height: e.height }
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
