//! `seed rm`: remove files or whole directories from a tier's namespace (their.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::Exit;
use crate::open::{How, open_one};
use crate::ui::human;

/// Remove files or whole directories from a tier's namespace (their
/// data stays until space is reclaimed).
#[derive(Args)]
pub(crate) struct Rm {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    tier: PathBuf,
    /// Files or directories (every file under them) to remove.
    #[arg(required = true)]
    paths: Vec<String>,
}

impl Rm {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Rm { tier, paths } = self;
        let t = open_one(&tier, metas, How::Write)?;
        let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
        let gone = t.remove(&refs)?;
        let bytes: u64 = gone.iter().map(|e| e.size).sum();
        say!("removed {} files ({}) from the namespace of {}", gone.len(), human(bytes), tier.display());
        Ok(Exit::Done)
    }
}
