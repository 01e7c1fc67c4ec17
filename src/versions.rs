//! The on-disk formats this build writes and the oldest version of each
//! it still reads (`seed --version` prints them): gathered here, at the
//! top, from the constants each layer keeps beside its codec, so that the
//! list cannot drift from what the code does.

/// One persisted format: what it is, the version this build writes, and
/// the oldest version it reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct FormatVersion {
    /// What is persisted (a file, or a record kind).
    pub what: &'static str,
    /// The version this build writes (the highest it knows).
    pub writes: u16,
    /// The oldest version this build still reads.
    pub reads_from: u16,
}

const fn v(what: &'static str, writes: u16, reads_from: u16) -> FormatVersion {
    FormatVersion { what, writes, reads_from }
}

/// Every persisted format, in the order of the layers (containers, tier,
/// job, PHF and PHV).
pub fn format_versions() -> Vec<FormatVersion> {
    #[cfg_attr(not(feature = "s3"), allow(unused_mut))]
    let mut out = vec![
        v("container file", crate::format::container::VERSION, 1),
        v("sealed container file (encrypted tier)", crate::format::seal::VERSION, 3),
        v("key slots (encrypted tier)", crate::format::keyslots::VERSION, 1),
        v("tier namespace entry", crate::tier::indexed::FORMAT_VERSION, 1),
        v("tier record and allocation counters", crate::tier::indexed::META_VERSION, 1),
        v("tier job hold", crate::tier::indexed::PIN_VERSION, 1),
        v("job context records", crate::engine::context::CTX_VERSION, 1),
        v("job file chunks", crate::engine::context::FILES_VERSION, 1),
        v("job progress and report", crate::engine::context::PROGRESS_VERSION, 1),
        // Version 1 is the boomphf blob (still written for boomphf jobs),
        // version 2 the compact function.
        v("PHF blob", crate::mark::phf::PHF_VERSION, 1),
        v("PHV chunk", crate::mark::phv::PHV_VERSION, 1),
        v("snapshot key file", crate::mark::keys::VERSION, 1),
    ];
    #[cfg(feature = "s3")]
    out.extend([
        v("object tier store record", crate::tier::indexed::STORE_VERSION, 1),
        v("object tier namespace journal", crate::tier::store::bucket::records::JOURNAL_VERSION, 1),
        v("object tier namespace checkpoint", crate::tier::store::bucket::records::CHECKPOINT_VERSION, 1),
        v("sealed object (encrypted bucket)", crate::format::seal::OBJECT_VERSION, 1),
    ]);
    out
}
