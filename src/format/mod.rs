//! Every byte tierseed keeps on disk, and every magic number: the container
//! file, recipe segments, the versioned and checksummed envelope and the
//! one durable-write helper, the private persisted counterparts of public
//! types, file names, and the fingerprint and container-id types.
//!
//! The bottom layer above `error`: nothing here imports a tier, the mark
//! machinery, the engine or gc.

pub(crate) mod container;
pub(crate) mod durable;
pub(crate) mod entries;
pub(crate) mod fingerprint;
pub(crate) mod keyslots;
pub mod layout;
pub(crate) mod magic;
pub(crate) mod open;
pub(crate) mod phase;
pub(crate) mod records;
pub(crate) mod seal;
pub(crate) mod tree;
