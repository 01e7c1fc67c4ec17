//! `seed verify`: scrub a whole tier: every checksum, every fingerprint, every tree.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;

use crate::Exit;
use crate::open::{How, open_one};
use tierseed::TierError;

/// Scrub a whole tier: every checksum, every fingerprint, every tree.
#[derive(Args)]
pub(crate) struct Verify {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    tier: PathBuf,
}

impl Verify {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Verify { tier } = self;
        // A writable handle retires the rot it finds; while another
        // process has the tier open, the scrub runs read-only.
        let t = match open_one(&tier, metas, How::Write) {
            Ok(t) => t,
            Err(e)
                if e.downcast_ref::<tierseed::Error>()
                    .is_some_and(|e| matches!(e, tierseed::Error::Tier(TierError::Locked { .. }))) =>
            {
                eprintln!("seed: {} is in use; scrubbing read-only (rot found is reported, not retired)", tier.display());
                open_one(&tier, metas, How::Read)?
            }
            Err(e) => return Err(e),
        };
        let r = t.verify()?;
        say!("checked {} containers, {} segments, {} files", r.containers, r.segments, r.files);
        if !r.is_clean() {
            for p in &r.problems {
                eprintln!("problem: {p}");
            }
            bail!("{} problem(s) found in {}", r.problems.len(), tier.display());
        }
        say!("clean");
        Ok(Exit::Done)
    }
}
