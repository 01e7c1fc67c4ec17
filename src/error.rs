//! The crate's one error type.

use std::path::PathBuf;

use crate::{ContainerId, Fingerprint};

/// Shorthand for results whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in tierseed.
///
/// Messages name what they can: the path on disk, the container id, the
/// fingerprint, the file in the namespace and the job phase, so that a single
/// log line tells an operator where to look.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// RocksDB reported an error.
    #[error("database error in {path}: {message}")]
    Db {
        /// The database directory.
        path: PathBuf,
        /// RocksDB's message.
        message: String,
    },
    /// A container file failed a format or checksum check.
    #[error("container {id} is corrupt ({path}): {reason}")]
    CorruptContainer {
        /// The container's id.
        id: ContainerId,
        /// Its file, where there is one.
        path: PathBuf,
        /// What check failed.
        reason: String,
    },
    /// A segment's bytes do not hash to its fingerprint.
    #[error("segment {fingerprint} in container {container} is corrupt: its bytes do not match its fingerprint")]
    CorruptSegment {
        /// The container the segment was read from.
        container: ContainerId,
        /// The fingerprint the bytes should have had.
        fingerprint: Fingerprint,
    },
    /// A persisted record (context record, PHF blob, PHV chunk, namespace
    /// entry, tier metadata) failed its magic, version or checksum check.
    #[error("corrupt {what}: {reason}")]
    CorruptRecord {
        /// What the record is, with its key or path.
        what: String,
        /// What check failed.
        reason: String,
    },
    /// A record was written by a newer or unknown format version.
    #[error("{what} has format version {found}, this build reads version {supported}")]
    UnsupportedVersion {
        /// What the record is.
        what: String,
        /// The version found.
        found: u32,
        /// The version this build reads and writes.
        supported: u32,
    },
    /// A fingerprint that a segment tree refers to is not in the tier's index.
    #[error("file {path:?}: segment {fingerprint} is missing from the {tier} index")]
    MissingSegment {
        /// The namespace path of the file whose tree refers to it, where known.
        path: String,
        /// The missing fingerprint.
        fingerprint: Fingerprint,
        /// Which tier ("source", "target" or a directory).
        tier: String,
    },
    /// A container the index or the job expected does not exist.
    #[error("container {id} is missing{context}")]
    MissingContainer {
        /// The container id.
        id: ContainerId,
        /// Extra context such as the file or phase, starting with a separator.
        context: String,
    },
    /// A file is not in the namespace.
    #[error("no file {path:?} in the namespace of {tier}")]
    FileNotFound {
        /// The namespace path.
        path: String,
        /// The tier it was looked up in.
        tier: String,
    },
    /// A namespace path is not acceptable (absolute, `..`, NUL, empty
    /// component, too long, not UTF-8).
    #[error("invalid path {path:?}: {reason}")]
    InvalidPath {
        /// The offending path, lossily printed.
        path: String,
        /// Why it was rejected.
        reason: String,
    },
    /// A configuration value or argument is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// The tier or state directory is locked by another process or handle.
    #[error("{what} {path} is locked by another process ({hint})")]
    Locked {
        /// "tier" or "job state".
        what: &'static str,
        /// The lock file.
        path: PathBuf,
        /// What to do about it.
        hint: &'static str,
    },
    /// A tier directory does not hold a tier, or already holds one.
    #[error("{path}: {reason}")]
    NotATier {
        /// The directory.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A previous durable write failed; the handle refuses further progress
    /// until it is reopened, because the state on disk is unknown.
    #[error("{what} is poisoned by an earlier failed durable write ({cause}); reopen it to recover")]
    Poisoned {
        /// What is poisoned (a tier directory or a job).
        what: String,
        /// The first failure.
        cause: String,
    },
    /// The job's resumption context belongs to other tiers.
    #[error("the job in {state_dir} belongs to {role} tier {expected}, but the tier given has id {found}")]
    TierMismatch {
        /// The state directory.
        state_dir: PathBuf,
        /// "source" or "target".
        role: &'static str,
        /// The id recorded in the context.
        expected: String,
        /// The id of the tier that was passed in.
        found: String,
    },
    /// A new job was started where an unfinished one exists.
    #[error(
        "an unfinished job exists in {state_dir} (phase {phase}); resume it with `seed resume` / Seeder::resume, or remove it with `seed abandon` / Seeder::abandon"
    )]
    JobExists {
        /// The state directory.
        state_dir: PathBuf,
        /// The last phase it completed.
        phase: String,
    },
    /// There is no job in the state directory.
    #[error("no job in {state_dir}")]
    NoJob {
        /// The state directory.
        state_dir: PathBuf,
    },
    /// The selection resolves to no files.
    #[error("the selection matches no file in the source namespace")]
    EmptySelection,
    /// The Verify phase found segments that never reached the target.
    #[error("verify failed: {missing} segment(s) never reached the target; affected files: {files}")]
    Incomplete {
        /// How many marked segments are still missing.
        missing: u64,
        /// The affected files, with up to a few fingerprints each.
        files: String,
    },
    /// Verify could not prove every selected file on the target. Nothing
    /// was switched or removed; the segments not proven were marked again,
    /// so resuming the job copies them again.
    #[error(
        "verify ({level}) failed: {segments} segment(s) not proven on the target ({problems} problem(s): {}); {file_count} file(s) affected: {}; nothing was switched or removed, and resuming the job copies the missing segments again",
        reasons.join("; "),
        list_files(files, *file_count)
    )]
    VerifyFailed {
        /// The verify level that ran.
        level: &'static str,
        /// Segments that could not be proven.
        segments: u64,
        /// Problems found (a lost container counts once per segment lookup
        /// that failed).
        problems: u64,
        /// The first few problems, each naming the segment or container.
        reasons: Vec<String>,
        /// Every affected file, with what it misses.
        files: Vec<String>,
        /// How many files are affected.
        file_count: usize,
    },
    /// A phase failed; wraps the cause with the phase name. The cause is
    /// part of the message (and reachable with [`Error::root`]).
    #[error("phase {phase}: {error}")]
    Phase {
        /// The phase name.
        phase: &'static str,
        /// The underlying error.
        error: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    pub(crate) fn db(path: impl Into<PathBuf>, e: rocksdb::Error) -> Self {
        Error::Db { path: path.into(), message: e.into_string() }
    }

    pub(crate) fn corrupt_record(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::CorruptRecord { what: what.into(), reason: reason.into() }
    }

    /// Wraps `self` with the phase it happened in, unless it already names one.
    pub(crate) fn in_phase(self, phase: &'static str) -> Self {
        match self {
            e @ Error::Phase { .. } => e,
            e => Error::Phase { phase, error: Box::new(e) },
        }
    }

    /// The innermost error, looking through phase wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Phase { error, .. } => error.root(),
            e => e,
        }
    }
}

/// The first few of `files` for a message; all of them are in the error.
fn list_files(files: &[String], count: usize) -> String {
    const SHOWN: usize = 20;
    let mut out = files.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if count > SHOWN {
        out.push_str(&format!("; and {} more", count - SHOWN));
    }
    out
}
