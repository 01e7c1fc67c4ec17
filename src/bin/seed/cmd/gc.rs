//! `seed gc`: reclaim space: delete containers nothing in the namespace reaches,.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tierseed::SuspendHandle;

use crate::Exit;
use crate::open::{How, open_one};
use crate::ui::{human, install_ctrlc};

/// Reclaim space: delete containers nothing in the namespace reaches,
/// compact mostly dead ones. Resumable; Ctrl-C suspends it.
#[derive(Args)]
pub(crate) struct Gc {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    tier: PathBuf,
    /// Report what would be reclaimed; change nothing.
    #[arg(long)]
    dry_run: bool,
    /// Compact containers whose live bytes are below this share (0.0
    /// deletes only wholly dead containers, 1.0 compacts any with a
    /// dead byte).
    #[arg(long, default_value_t = 0.5)]
    threshold: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl Gc {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Gc { tier, dry_run, threshold, json } = self;
        let t = open_one(&tier, metas, How::Write)?;
        let stop = SuspendHandle::default();
        install_ctrlc(stop.clone());
        let r = t.gc(tierseed::GcOptions::default().threshold(threshold).dry_run(dry_run), &stop)?;
        if json {
            say!("{}", serde_json::to_string_pretty(&r)?);
        } else {
            let verb = if dry_run { "would reclaim" } else { "reclaimed" };
            say!(
                "{verb} {}: {} containers deleted, {} compacted ({} segments moved), {} kept as pinned",
                human(r.bytes_reclaimed),
                r.containers_deleted,
                r.containers_compacted,
                r.segments_moved,
                r.containers_pinned
            );
            if r.containers_pinned > 0 {
                for h in t.job_holds()? {
                    let what = match (h.below, h.from) {
                        (Some(b), Some(f)) => format!("containers below {b} and from {f} on"),
                        (Some(b), None) => format!("containers below {b} (its source snapshot)"),
                        (None, Some(f)) => format!("containers from {f} on (what it writes)"),
                        (None, None) => "nothing".into(),
                    };
                    say!("  job {} (state {}) holds {what}", h.job_id, h.state_dir.display());
                }
            }
            if r.suspended {
                say!("suspended; run `seed gc --tier {}` again to go on", tier.display());
            }
        }
        if r.suspended {
            return Ok(Exit::Suspended);
        }
        Ok(Exit::Done)
    }
}
