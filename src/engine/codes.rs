//! The persisted codes of the engine's public enums (`Mode`, `Phase`):
//! kept beside the engine, which owns the types, so that the format layer
//! below it needs none of them.

use super::{Mode, Phase};
use crate::error::{Error, Result};

/// `Mode` on disk: 0 copy, 1 move (one byte, as postcard wrote the first
/// release's enum index).
pub(crate) fn mode_code(m: Mode) -> u8 {
    match m {
        Mode::Copy => 0,
        Mode::Move => 1,
    }
}

pub(crate) fn mode_from_code(c: u8, what: &dyn Fn() -> String) -> Result<Mode> {
    match c {
        0 => Ok(Mode::Copy),
        1 => Ok(Mode::Move),
        _ => Err(Error::corrupt_record(what(), format!("unknown mode {c}"))),
    }
}

/// `Phase` on disk: its position in [`Phase::ALL`].
pub(crate) fn phase_code(p: Phase) -> u8 {
    Phase::ALL.iter().position(|x| *x == p).expect("Phase::ALL lists every phase") as u8
}

pub(crate) fn phase_from_code(c: u8, what: &dyn Fn() -> String) -> Result<Phase> {
    Phase::ALL.get(usize::from(c)).copied().ok_or_else(|| Error::corrupt_record(what(), format!("unknown phase {c}")))
}
