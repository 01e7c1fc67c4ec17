//! placeholder
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod container;
mod crashpoint;
mod durable;
mod error;
mod fingerprint;
mod local;
mod pack;
mod read;
mod tier;
mod tree;

pub use crate::container::{ContainerKind, ContainerMeta, SegmentEntry, decode_container};
pub use crate::crashpoint::CRASH_POINTS;
pub use crate::error::{Error, Result};
pub use crate::fingerprint::{ContainerId, Fingerprint, ParseFingerprintError};
pub use crate::local::{IngestStats, LocalTier, MAX_PATH_LEN, TierConfig, TierInfo, VerifyReport, validate_path};
pub use crate::tier::{FileEntry, SourceTier, TargetTier, Tier, TierId};
