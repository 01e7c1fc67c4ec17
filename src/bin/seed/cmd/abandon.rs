//! `seed abandon`: remove a job's state (refuses while it runs).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tierseed::Seeder;

use crate::Exit;

/// Remove a job's state (refuses while it runs).
#[derive(Args)]
pub(crate) struct Abandon {
    /// The job's state directory.
    #[arg(long)]
    state: PathBuf,
}

impl Abandon {
    /// Runs the command.
    pub(crate) fn run(self) -> Result<Exit> {
        let Abandon { state } = self;
        Seeder::abandon(&state)?;
        say!("abandoned the job in {}", state.display());
        Ok(Exit::Done)
    }
}
