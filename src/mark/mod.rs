//! Marking: the PHF over a tier's index, the PHV (one bit per PHF slot),
//! the one level-by-level tree walk, and its marking uses (Mark over the
//! source, the marked-set checksum, naming the files a set of bits
//! affects). Shared by the seeding engine and space reclamation.
//!
//! Above the tier layer (it reads through the tier traits), below the
//! engine and gc: nothing here knows about jobs or their contexts.

pub(crate) mod keys;
pub(crate) mod marks;
pub(crate) mod phf;
pub(crate) mod phv;
mod ptr;
mod scrub;
pub(crate) mod spool;
pub(crate) mod walk;

pub use phf::PhfKind;
