//! The phases of a job. Defined here, at the bottom, because errors name
//! the phase they happened in (`JobError::Phase`) and a job's progress
//! record persists its code; the engine, which runs them, re-exports it.

use serde::{Deserialize, Serialize};

/// The phases of a job, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Phase {
    /// Resolve the selection; snapshot the source container ids.
    Select,
    /// Build and persist the PHF over the source index.
    BuildPhf,
    /// Walk the selected trees and set their PHV bits.
    Mark,
    /// Stream the snapshot's containers, copying marked segments.
    Copy,
    /// Check that every marked segment reached the target.
    Verify,
    /// Write the namespace entries into the target (and, in move mode,
    /// remove them from the source).
    Switch,
    /// Record the final report.
    Done,
}

impl Phase {
    /// Every phase in order.
    pub const ALL: [Phase; 7] =
        [Phase::Select, Phase::BuildPhf, Phase::Mark, Phase::Copy, Phase::Verify, Phase::Switch, Phase::Done];

    /// The phase's name as used in messages.
    pub fn name(self) -> &'static str {
        match self {
            Phase::Select => "select",
            Phase::BuildPhf => "build-phf",
            Phase::Mark => "mark",
            Phase::Copy => "copy",
            Phase::Verify => "verify",
            Phase::Switch => "switch",
            Phase::Done => "done",
        }
    }

    /// The phase that follows one recorded as done (`None`: nothing done).
    pub fn after(done: Option<Phase>) -> Phase {
        match done {
            None => Phase::Select,
            Some(p) => Phase::ALL.get(p as usize + 1).copied().unwrap_or(Phase::Done),
        }
    }
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
