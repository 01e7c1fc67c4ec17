//! `seed completions SHELL`: a completion script for bash, zsh, fish,
//! elvish or PowerShell, generated from the command's own definitions.

use std::io::Write;

use anyhow::Result;
use clap::{Args, CommandFactory};

use crate::{Cli, Exit};

/// Prints a shell completion script (e.g. `seed completions bash >
/// /etc/bash_completion.d/seed`).
#[derive(Args)]
pub(crate) struct Completions {
    /// The shell.
    shell: clap_complete::Shell,
}

impl Completions {
    /// Runs the command.
    pub(crate) fn run(self) -> Result<Exit> {
        // Into memory first: the generator panics on a failed write, and a
        // closed pipe must end the command quietly like any other.
        let mut script = Vec::new();
        clap_complete::generate(self.shell, &mut Cli::command(), "seed", &mut script);
        std::io::stdout().lock().write_all(&script)?;
        Ok(Exit::Done)
    }
}
