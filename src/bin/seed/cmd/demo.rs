//! `seed demo`: generate backup generations, seed a subset with a suspend and a.

use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::Exit;
use crate::demo::demo;

/// Generate backup generations, seed a subset with a suspend and a
/// resume, restore and compare every seeded file, print a summary.
#[derive(Args)]
pub(crate) struct Demo {
    /// Work directory (default: a new temporary one, removed after).
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Backup generations to generate.
    #[arg(long, default_value_t = 6)]
    generations: usize,
    /// Files per generation.
    #[arg(long, default_value_t = 120)]
    files: usize,
}

impl Demo {
    /// Runs the command.
    pub(crate) fn run(self) -> Result<Exit> {
        let Demo { dir, generations, files } = self;
        demo(dir, generations, files)?;
        Ok(Exit::Done)
    }
}
