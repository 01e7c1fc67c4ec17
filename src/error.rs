//! The crate's one error type, [`Error`], split by layer.
//!
//! The rules:
//! - One public `Error`, `#[non_exhaustive]`, whose variants are the
//!   layers: [`FormatError`] (stored bytes failed their checks), [`TierError`]
//!   (a tier could not do what was asked, or broke its contract),
//!   [`JobError`] (a job cannot start, go on or finish), plus
//!   `InvalidConfig` and `Internal`. Match the layer first
//!   (`Error::Tier(_)`), then the variant.
//! - Each layer's enum is `#[non_exhaustive]` and its messages name what
//!   they can: path, container id, fingerprint, namespace path, phase.
//! - The causes chain: an OS, database or object-store error is kept as
//!   `source()`, and a job's phase and target wrap the error they carry.
//! - A tier that answers a batch call with the wrong number of items is
//!   one variant, [`TierError::Contract`], whichever call it was.
//! - No message tells the operator which `seed` command to type: advice
//!   belongs to the binary, which knows its own commands.

use std::path::PathBuf;

use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::phase::Phase;

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
    /// Stored bytes failed their checks: see [`FormatError`].
    #[error(transparent)]
    Format(#[from] FormatError),
    /// A tier could not do what was asked: see [`TierError`].
    #[error(transparent)]
    Tier(#[from] TierError),
    /// A job cannot start, go on or finish: see [`JobError`].
    #[error(transparent)]
    Job(#[from] JobError),
    /// A configuration value or argument is out of range.
    #[error("invalid configuration: {0}")]
    InvalidConfig(String),
    /// A tierseed invariant was broken: a bug, not bad input. The message
    /// says which.
    #[error("internal error (a tierseed bug, please report it): {what}")]
    Internal {
        /// The invariant that did not hold.
        what: String,
    },
}

/// Stored bytes that failed their checks: a container, a segment, a
/// persisted record. Only these let a tier retire what it holds.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// A container file failed a format or checksum check.
    #[error("container {id} is corrupt{}: {reason}", at(path.as_ref()))]
    CorruptContainer {
        /// The container's id.
        id: ContainerId,
        /// Its file, where there is one (a tier over other storage may
        /// have none).
        path: Option<PathBuf>,
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
}

/// Which tier a [`TierError`] is about: a job's role for it where the
/// engine knows it, else the tier's own location.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TierName {
    /// The job's source tier.
    Source,
    /// The job's source as its PHF knows it: a fingerprint the source's
    /// index held when the PHF was built, and no longer does (or never
    /// did).
    SourcePhf,
    /// A tier read through the traits alone, whose location the caller
    /// does not know.
    Unnamed,
    /// The tier at this location: a directory, or `s3://bucket/prefix`.
    At(String),
}

impl std::fmt::Display for TierName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TierName::Source => f.write_str("source"),
            TierName::SourcePhf => f.write_str("source PHF"),
            TierName::Unnamed => f.write_str("tier"),
            TierName::At(location) => f.write_str(location),
        }
    }
}

/// A tier (its directory, database, store or an integrator's backend)
/// could not do what was asked, or broke its contract.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TierError {
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
    /// A fingerprint that a segment tree refers to is not in the tier's index.
    #[error("file {path:?}: segment {fingerprint} is missing from the {tier} index")]
    MissingSegment {
        /// The namespace path of the file whose tree refers to it, where known.
        path: String,
        /// The missing fingerprint.
        fingerprint: Fingerprint,
        /// Which tier's index.
        tier: TierName,
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
        tier: TierName,
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
    /// A write was asked of a tier opened read-only.
    #[error("tier {path} is open read-only; open it for writing (no other process may have it open for writing)")]
    ReadOnly {
        /// The tier directory.
        path: PathBuf,
    },
    /// A file is too large for its tier's recipe fanout.
    #[error("file {path:?} needs a tree taller than {max_height} levels; create the tier with a larger fanout")]
    TreeTooTall {
        /// The file (namespace path).
        path: String,
        /// The tallest tree supported.
        max_height: u8,
    },
    /// A tier implementation failed with an error of its own (see
    /// [`Error::tier`] and [`Error::transient`]).
    #[error("{what}: {source}")]
    Backend {
        /// What the tier was doing (a bucket and key, a device, ...).
        what: String,
        /// Whether retrying the same call may succeed (a timeout, a
        /// throttled request); the engine does not retry, callers may.
        transient: bool,
        /// The tier's own error.
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// A request to an object store (the object tier's bucket) failed,
    /// after the client's own retries of transient failures.
    #[error("object store: {op} s3://{bucket}/{key} failed{}: {source}", http_status(status.as_ref()))]
    Object {
        /// The request: `PUT`, `GET`, `LIST`, `DELETE`.
        op: &'static str,
        /// The bucket.
        bucket: String,
        /// The object key (or the listed prefix).
        key: String,
        /// The HTTP status the server answered, where there was one.
        status: Option<u16>,
        /// Whether retrying may succeed (a 5xx, a timeout, a refused
        /// connection), as opposed to a refusal (403, 404, 412).
        transient: bool,
        /// The client's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    /// An object tier's bucket and its local metadata belong to different
    /// tiers, or the bucket holds no tier.
    #[error("{location}: {reason}")]
    ForeignBucket {
        /// `s3://bucket/prefix`.
        location: String,
        /// What does not match.
        reason: String,
    },
    /// The tier is encrypted and was opened without a key: open it with
    /// one of its credentials (`IndexedTier::open_with_key` and siblings).
    #[error("{location} is encrypted: open it with its key (a passphrase or key file)")]
    KeyRequired {
        /// The tier's directory or bucket URL.
        location: String,
    },
    /// No key slot of the tier opens with the credential given. Reported
    /// at open, before any container is read.
    #[error("{location}: the key given opens none of its {tried} {kind} key slot(s)")]
    WrongKey {
        /// The tier's directory or bucket URL.
        location: String,
        /// The slots of that kind tried.
        tried: usize,
        /// `passphrase` or `key file`.
        kind: &'static str,
    },
    /// A key was given for a tier that is not encrypted, or a key
    /// operation asked of one.
    #[error("{location} is not encrypted: it has no key slots and opens without a key")]
    NotEncrypted {
        /// The tier's directory or bucket URL.
        location: String,
    },
    /// The tier's key slots are missing, damaged, foreign, or the change
    /// asked of them is refused (removing the last slot).
    #[error("{location}: key slots: {reason}")]
    Keys {
        /// The tier's directory or bucket URL.
        location: String,
        /// What is wrong.
        reason: String,
    },
    /// A tier broke its contract: a batch call answered the wrong number
    /// of items, or an answer the trait's documentation rules out. Always
    /// a bug in that tier's implementation, never a fault of the data, so
    /// nothing is retired for it.
    #[error("a tier broke its contract: {call} {what}")]
    Contract {
        /// The call (`locate`, `read_segments of container 7`, ...).
        call: String,
        /// What it answered, against what the trait promises.
        what: String,
    },
}

/// A job cannot start, go on or finish as asked.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum JobError {
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
    /// A new job was started where another one's state is (unfinished,
    /// or finished and not yet removed: `phase` is then "done").
    #[error("{}", job_exists(state_dir, phase))]
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
    /// The job's resumption context cannot be opened (a file of it was
    /// deleted, truncated or overwritten). It is never silently restarted:
    /// it can only be abandoned.
    #[error("the job context in {state_dir} is damaged and cannot be resumed ({reason}); abandon the job to start again")]
    DamagedJob {
        /// The state directory.
        state_dir: PathBuf,
        /// What the database said.
        reason: String,
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
    /// A switch gate rejected a step: nothing of it was done, the copied
    /// data stays on the target, and resuming the job asks again.
    #[error(
        "the switch gate rejected {stage}: {reason}; nothing was switched or removed by it, the copied data stays on the target, and resuming the job asks again"
    )]
    SwitchRejected {
        /// "switch" or "source removal".
        stage: &'static str,
        /// The gate's reason.
        reason: String,
    },
    /// A job file could not be used: the message names the field.
    #[error("job file {}{}: {message}", file.display(), if *line > 0 { format!(":{line}") } else { String::new() })]
    JobFile {
        /// The file.
        file: PathBuf,
        /// The line the problem is on (0 when it is not one line's).
        line: usize,
        /// What is wrong, naming the field.
        message: String,
    },
    /// Building the PHF over the source index failed.
    #[error("building the PHF failed: {reason}")]
    PhfBuild {
        /// What went wrong.
        reason: String,
    },
    /// The job's worker threads could not be started.
    #[error("could not start the job's {threads} worker thread(s): {source}")]
    ThreadPool {
        /// Threads asked for.
        threads: usize,
        /// rayon's error.
        source: rayon::ThreadPoolBuildError,
    },
    /// A target of the job was left out of a resume (a site that is
    /// gone); under the drop policy it is dropped with this reason.
    #[error("not given to the resume (left out, or skipped with --skip-target)")]
    TargetNotGiven,
    /// A failure on one target of a job with several, naming the target
    /// (its tier id and position among the job's targets, from 1).
    #[error("target #{lane} ({target}): {error}")]
    OnTarget {
        /// The target tier's id.
        target: String,
        /// Its position among the job's targets, from 1.
        lane: usize,
        /// The underlying error.
        #[source]
        error: Box<Error>,
    },
    /// A phase failed; wraps the cause with the phase name. The cause is
    /// part of the message, is this error's [`source`](std::error::Error::source)
    /// (a `Box<Error>`: downcast to that), and is reachable directly with
    /// [`Error::root`].
    #[error("phase {phase}: {error}")]
    Phase {
        /// The phase.
        phase: Phase,
        /// The underlying error.
        #[source]
        error: Box<Error>,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Tier(TierError::Io { path: path.into(), source })
    }

    pub(crate) fn db(path: impl Into<PathBuf>, e: rocksdb::Error) -> Self {
        Error::Tier(TierError::Db { path: path.into(), message: e.into_string() })
    }

    pub(crate) fn corrupt_record(what: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Format(FormatError::CorruptRecord { what: what.into(), reason: reason.into() })
    }

    /// A tier broke its contract in `call`: see [`TierError::Contract`].
    pub(crate) fn contract(call: impl Into<String>, what: impl Into<String>) -> Self {
        Error::Tier(TierError::Contract { call: call.into(), what: what.into() })
    }

    pub(crate) fn internal(what: impl Into<String>) -> Self {
        Error::Internal { what: what.into() }
    }

    /// An error of a tier implementation's own, for integrators: `what`
    /// says what the tier was doing (for example `"PUT bucket/key (HTTP
    /// 500)"`), `source` is the underlying error, kept as the cause.
    pub fn tier(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Tier(TierError::Backend { what: what.into(), transient: false, source: source.into() })
    }

    /// Like [`Error::tier`], for a failure that may pass if the same call
    /// is retried (a timeout, a throttled or unavailable service).
    pub fn transient(what: impl Into<String>, source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Error::Tier(TierError::Backend { what: what.into(), transient: true, source: source.into() })
    }

    /// Whether retrying may succeed: a tier error marked transient, or an
    /// I/O error of a kind that is (interrupted, timed out, would block).
    pub fn is_transient(&self) -> bool {
        match self.root() {
            Error::Tier(TierError::Backend { transient, .. } | TierError::Object { transient, .. }) => *transient,
            Error::Tier(TierError::Io { source, .. }) => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted | std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock
            ),
            _ => false,
        }
    }

    /// Whether this error says stored bytes are bad (a segment that fails
    /// its fingerprint, a container or record that fails its checks), as
    /// opposed to unreachable for now. Only such an error lets a tier
    /// retire what it holds; a transient one never does.
    pub(crate) fn is_rot(&self) -> bool {
        matches!(self.root(), Error::Format(_))
    }

    /// Wraps `self` with the phase it happened in, unless it already names one.
    pub(crate) fn in_phase(self, phase: Phase) -> Self {
        match self {
            e @ Error::Job(JobError::Phase { .. }) => e,
            e => Error::Job(JobError::Phase { phase, error: Box::new(e) }),
        }
    }

    /// The innermost error, looking through phase wrappers.
    pub fn root(&self) -> &Error {
        match self {
            Error::Job(JobError::Phase { error, .. } | JobError::OnTarget { error, .. }) => error.root(),
            e => e,
        }
    }
}

fn job_exists(state_dir: &std::path::Path, phase: &str) -> String {
    if phase == "done" {
        format!(
            "a finished job's state is in {}: abandon it (Seeder::abandon) or use another state directory to start a new job",
            state_dir.display()
        )
    } else {
        format!(
            "an unfinished job exists in {} (phase {phase} done): resume it (Seeder::resume), or abandon it (Seeder::abandon) to start a new one",
            state_dir.display()
        )
    }
}

/// The first few of `files` for a message; all of them are in the error.
fn list_files(files: &[String], count: usize) -> String {
    const SHOWN: usize = 20;
    let mut out = files.iter().take(SHOWN).cloned().collect::<Vec<_>>().join("; ");
    if count > SHOWN {
        use std::fmt::Write as _;
        let _ = write!(out, "; and {} more", count - SHOWN);
    }
    out
}

/// `" (path)"` for a message, or nothing when there is no path.
fn at(path: Option<&PathBuf>) -> String {
    path.map(|p| format!(" ({})", p.display())).unwrap_or_default()
}

/// " (HTTP 503)" for a status, nothing without one.
fn http_status(status: Option<&u16>) -> String {
    status.map(|s| format!(" (HTTP {s})")).unwrap_or_default()
}
