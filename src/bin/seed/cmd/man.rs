//! `seed man`: the manual page (roff), generated from the command's own
//! definitions, for `man -l` or a package's `man1/seed.1`.

use std::io::Write;

use anyhow::Result;
use clap::{Args, CommandFactory};

use crate::{Cli, Exit};

/// Prints the manual page in roff (`seed man > seed.1; man -l seed.1`).
#[derive(Args)]
pub(crate) struct Man {}

impl Man {
    /// Runs the command.
    pub(crate) fn run(self) -> Result<Exit> {
        let Man {} = self;
        let mut out = std::io::stdout().lock();
        clap_mangen::Man::new(Cli::command()).render(&mut out)?;
        out.flush()?;
        Ok(Exit::Done)
    }
}
