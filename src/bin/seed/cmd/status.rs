//! `seed status`: show a job's phase, cursor, counters and percent done (works while it runs).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tierseed::Seeder;

use crate::Exit;
use crate::ui::{print_progress, watch_status};

/// Show a job's phase, cursor, counters and percent done (works while it runs).
#[derive(Args)]
pub(crate) struct Status {
    /// The job's state directory.
    #[arg(long)]
    state: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
    /// Refresh every second (phase, percent, copy rate) until the job
    /// completes; Ctrl-C stops watching.
    #[arg(long, conflicts_with = "json")]
    watch: bool,
}

impl Status {
    /// Runs the command.
    pub(crate) fn run(self) -> Result<Exit> {
        let Status { state, json, watch } = self;
        if watch {
            return watch_status(&state);
        }
        let p = Seeder::status(&state)?;
        if json {
            say!("{}", serde_json::to_string_pretty(&p)?);
        } else {
            print_progress(&p)?;
        }
        Ok(Exit::Done)
    }
}
