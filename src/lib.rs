//! # tierseed
//!
//! Moves deduplicated backup data from a source tier to a target tier by
//! *seeding*: mark every needed segment in a perfect hash vector (PHV)
//! indexed by a minimal perfect hash function (PHF) over the source index,
//! then stream the source containers in order and copy only what is
//! marked. A job can be suspended and resumed at any point, a crash
//! included, without losing data and redoing at most one target
//! container's worth of copying.
//!
//! ```
//! # fn main() -> tierseed::Result<()> {
//! use tierseed::{IndexedTier, Outcome, Seeder, Selection, TierConfig};
//! let dir = tempfile::tempdir().unwrap();
//! let src = IndexedTier::create(dir.path().join("src"), TierConfig::default())?;
//! let dst = IndexedTier::create(dir.path().join("dst"), TierConfig::default())?;
//! src.ingest_reader("projects/a.txt", 0, &b"hello, tiers"[..])?;
//! src.ingest_reader("scratch/b.txt", 0, &b"not this one"[..])?;
//!
//! let mut job = Seeder::builder(&src, &dst, dir.path().join("state"))
//!     .selection(Selection::new().prefix("projects"))
//!     .build()?;
//! // Ask it to suspend (from any thread; here before the run, so it stops
//! // at its first commit point).
//! job.suspend_handle().suspend();
//! assert!(matches!(job.run()?, Outcome::Suspended(_)));
//! drop(job); // the process may exit, or crash, here: the context is durable
//!
//! let mut job = Seeder::resume(dir.path().join("state"), &src, &dst)?;
//! let Outcome::Completed(report) = job.run()? else { panic!("nothing asked it to suspend") };
//! assert_eq!(report.counters.files_selected, 1);
//!
//! let mut restored = Vec::new();
//! dst.restore("projects/a.txt", &mut restored)?;
//! assert_eq!(restored, b"hello, tiers");
//! # Ok(()) }
//! ```
//!
//! The pieces:
//! - [`SourceTier`] / [`TargetTier`]: what the engine needs from storage;
//!   implement them over your own, or use [`IndexedTier`] (a directory, or a bucket).
//! - [`Seeder`]: the job (builder, `run`, `suspend_handle`, `resume`,
//!   `abandon`, `status`, `estimate`), reporting [`Event`]s to an
//!   [`Observer`]. One job can seed several targets in one pass
//!   ([`SeederBuilder::also_to`], [`Seeder::resume_targets`]), with a
//!   [`TargetFailure`] policy for a target that fails.
//! - [`FaultyTier`]: a decorator that injects faults, for testing
//!   integrations.
//!
//! ARCHITECTURE.md explains the modules; docs/FORMAT.md the byte layouts.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
// Nothing input can reach may panic: an impossible failure is an `expect`
// that says why it cannot happen. Unit tests unwrap freely.
#![cfg_attr(not(test), deny(clippy::unwrap_used))]

// The layers, bottom up: error -> format -> tier -> mark -> engine -> gc;
// `testing` holds the doors for tests. No module imports a higher layer.
mod engine;
mod error;
mod format;
mod gc;
#[cfg(feature = "jobfile")]
mod jobspec;
mod mark;
mod testing;
mod tier;
mod versions;

pub use crate::engine::selection::Selection;
pub use crate::engine::{
    Clock, Counters, Estimate, Event, GateAnswer, LimitSchedule, LocalClock, Mode, Observer, Outcome, Phase, Progress, Report,
    RequestEstimate, Seeder, SeederBuilder, SuspendHandle, SwitchGate, SwitchRequest, SwitchStage, TargetFailure, TargetReport,
    ThrottleHandle, VerifyLevel, WallTime,
};
pub use crate::error::{Error, FormatError, JobError, Result, TierError, TierName};
pub use crate::format::container::{decode_container, decode_segment};
pub use crate::format::fingerprint::{ContainerId, Fingerprint, ParseFingerprintError};
pub use crate::format::keyslots::{Credential, KeyKind, KeySlot};
pub use crate::format::layout;
pub use crate::gc::{GcOptions, GcReport};
#[cfg(feature = "jobfile")]
pub use crate::jobspec::{JobSpec, ModeSpec, PhfSpec, SelectionSpec, VerifySpec, parse_age};
pub use crate::mark::PhfKind;
#[cfg(feature = "test-util")]
pub use crate::testing::conformance;
#[cfg(feature = "crash-points")]
pub use crate::testing::crashpoint::CRASH_POINTS;
#[cfg(feature = "crash-points")]
pub use crate::testing::crashpoint::trace;
#[cfg(feature = "synth")]
pub use crate::testing::synth;
#[cfg(feature = "test-util")]
#[doc(hidden)]
pub use crate::testing::{bench_api, fuzzing};
pub use crate::tier::faulty::{Fault, FaultKind, FaultyTier};
#[cfg(feature = "s3")]
pub use crate::tier::indexed::RecoverReport;
pub use crate::tier::indexed::{
    IndexedTier, Ingest, IngestStats, MAX_PATH_LEN, MemoryUsage, RestoreStats, TierConfig, TierInfo, VerifyReport, validate_path,
};
#[cfg(feature = "s3")]
pub use crate::tier::store::bucket::{ObjectConfig, ObjectService};
pub use crate::tier::{
    Codec, ContainerKind, ContainerMeta, FileAttrs, FileEntry, FileKind, IndexEntry, JobHold, RequestCounts, SegmentEntry,
    SourceTier, StoredSegment, TargetTier, Tier, TierId,
};
pub use crate::versions::{FormatVersion, format_versions};
