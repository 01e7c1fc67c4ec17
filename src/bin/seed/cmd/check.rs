//! `seed check`: check a job file without running it: fields, selection, and that the.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{IndexedTier, Mode};

use crate::Exit;
use crate::open::{How, metas_for, object_spec, open_tier};
use crate::ui::human;

/// Check a job file without running it: fields, selection, and that the
/// tiers are there.
#[derive(Args)]
pub(crate) struct Check {
    /// The job file (TOML).
    #[arg(long)]
    job: PathBuf,
}

impl Check {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Check { job } = self;
        let spec = tierseed::JobSpec::load(&job)?;
        let all: Vec<&Path> = std::iter::once(spec.source.as_path()).chain(spec.targets.iter().map(PathBuf::as_path)).collect();
        let m = metas_for(&all, metas)?;
        let src = open_tier(&spec.source, m[0], How::Read)?;
        for (target, meta) in spec.targets.iter().zip(&m[1..]) {
            let target_exists = match (object_spec(target)?, meta) {
                (Some(_), Some(meta)) => IndexedTier::exists(meta),
                (Some(_), None) => bail!("{}: an object tier needs --meta DIR", target.display()),
                (None, _) => IndexedTier::exists(target),
            };
            if target_exists {
                open_tier(target, *meta, How::Read)?;
            }
        }
        // The selection against the namespace only: a check must be
        // quick (it used to run a whole estimate of the source against
        // itself, walking every selected tree).
        let (files, bytes) = spec.selection()?.resolve_count(&src)?;
        say!(
            "{}: ok; {} files ({}) selected from {}, {} mode, verify {}, into {}",
            job.display(),
            files,
            human(bytes),
            spec.source.display(),
            if spec.mode() == Mode::Move { "move" } else { "copy" },
            spec.verify_level(),
            spec.targets.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(" and ")
        );
        Ok(Exit::Done)
    }
}
