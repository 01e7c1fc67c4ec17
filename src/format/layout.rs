//! The names of the files and directories tierseed keeps on disk, in one
//! place (docs/FORMAT.md describes what each holds). Tools that inspect a
//! tier or a job's state directory can use them; tierseed itself uses
//! nothing else.

use crate::format::fingerprint::ContainerId;

/// A local tier's RocksDB directory (index, namespace, meta); its presence
/// is what makes a directory a tier.
pub const TIER_DB: &str = "db";
/// A local tier's directory of sealed container files.
pub const TIER_CONTAINERS: &str = "containers";
/// An encrypted tier's key slots (docs/FORMAT.md), beside `containers`.
pub const TIER_KEYS: &str = "keys";
/// The lock file held while a tier is open for writing.
pub const TIER_LOCK: &str = "tier.lock";
/// The lock file read-only handles hold shared, and space reclamation
/// exclusive.
pub const TIER_READERS: &str = "readers.lock";
/// The directory space reclamation keeps its scratch files in (the key
/// file and spools of its marking) while it runs; removed when it ends,
/// and on the next run after a crash.
pub const TIER_GC_SCRATCH: &str = "gc-scratch";
/// Suffix of the sibling directory a tier is built in before it is renamed
/// into place (`.<name>.creating`).
pub const CREATING_SUFFIX: &str = ".creating";
/// Extension of a container file.
pub const CONTAINER_EXT: &str = ".tsc";

/// A job's resumption context (a RocksDB) inside its state directory; its
/// presence is what makes a job.
pub const JOB_CONTEXT: &str = "ctx";
/// The context while it is being created, before its rename.
pub const JOB_CONTEXT_CREATING: &str = "ctx.creating";
/// The lock file a running job holds.
pub const JOB_LOCK: &str = "job.lock";

/// The file name of container `id`: 16 lowercase hex digits and
/// [`CONTAINER_EXT`].
pub fn container_file(id: ContainerId) -> String {
    format!("{id}{CONTAINER_EXT}")
}

/// The container id a file name stands for, if it is a container's name.
pub fn parse_container_file(name: &str) -> Option<ContainerId> {
    let hex = name.strip_suffix(CONTAINER_EXT)?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok().map(ContainerId)
}

/// The file a job's PHF blob is written to, in its state directory.
pub fn phf_file(job_id: &str) -> String {
    format!("phf-{job_id}.bin")
}

/// The snapshot's key file a job's BuildPhf writes for its Mark, in its
/// state directory (removed once Mark is done).
pub fn keys_file(job_id: &str) -> String {
    format!("keys-{job_id}.bin")
}

/// The directory of a job's scratch spools, in its state directory.
pub fn scratch_dir(job_id: &str) -> String {
    format!("scratch-{job_id}")
}

/// Whether `name` is a job's key file (or its temporary file) or scratch
/// directory: what removing a job removes besides its context and PHF.
pub fn is_scratch(name: &str) -> bool {
    (name.starts_with("keys-") && (name.ends_with(".bin") || name.ends_with(".bin.tmp"))) || name.starts_with("scratch-")
}

/// Whether `name` is a PHF blob (or its temporary file) in a state directory.
pub fn is_phf_file(name: &str) -> bool {
    name.starts_with("phf-") && (name.ends_with(".bin") || name.ends_with(".bin.tmp"))
}
