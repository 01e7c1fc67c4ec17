//! `seed recover`: rebuild an object tier's lost metadata directory (--meta DIR, which.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use tierseed::IndexedTier;

use crate::Exit;
use crate::open::object_spec;

/// Rebuild an object tier's lost metadata directory (--meta DIR, which
/// must not exist or be empty) from its bucket alone.
#[derive(Args)]
pub(crate) struct Recover {
    /// The object tier: s3://BUCKET/PREFIX or az://CONTAINER/PREFIX.
    #[arg(long)]
    tier: PathBuf,
}

impl Recover {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Recover { tier } = self;
        let Some(cfg) = object_spec(&tier)? else {
            bail!("{}: recover rebuilds an object tier: give s3://BUCKET/PREFIX or az://CONTAINER/PREFIX", tier.display())
        };
        let [meta] = metas else { bail!("recover needs --meta DIR, the metadata directory to rebuild") };
        let (_, r) = crate::keys::with_credentials(
            &tier.display().to_string(),
            || IndexedTier::recover_object_tier(meta, &cfg),
            |c| IndexedTier::recover_object_tier_with_key(meta, &cfg, c),
        )?;
        say!(
            "recovered {} into {}: {} containers, {} segments indexed; {} files from {} journal entries",
            cfg.url(),
            meta.display(),
            r.containers,
            r.segments,
            r.files,
            r.journal_entries
        );
        if !r.unreadable.is_empty() {
            for u in &r.unreadable {
                eprintln!("unreadable: {u}");
            }
            bail!("{} container(s) could not be read; run `seed verify` to see which files they affect", r.unreadable.len());
        }
        Ok(Exit::Done)
    }
}
