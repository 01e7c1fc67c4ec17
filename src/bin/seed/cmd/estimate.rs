//! `seed estimate`: dry run: what a job would copy, find on the target, make reclaimable.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{IndexedTier, Seeder, TierConfig};

use crate::Exit;
use crate::args::SelectionArgs;
use crate::open::{How, metas_for, object_spec, open_tier};
use crate::ui::human;

/// Dry run: what a job would copy, find on the target, make reclaimable.
#[derive(Args)]
pub(crate) struct Estimate {
    /// Source tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    from: PathBuf,
    /// Target tier: a directory, or s3://BUCKET/PREFIX or
    /// az://CONTAINER/PREFIX (with --meta DIR). Repeat for several targets. A target that does not exist
    /// yet counts as empty.
    #[arg(long, required = true)]
    to: Vec<PathBuf>,
    #[command(flatten)]
    sel: SelectionArgs,
    /// Print the estimate as JSON.
    #[arg(long)]
    json: bool,
}

impl Estimate {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Estimate { from, to, sel, json } = self;
        let selection = sel.selection()?;
        let all: Vec<&Path> = std::iter::once(from.as_path()).chain(to.iter().map(PathBuf::as_path)).collect();
        let m = metas_for(&all, metas)?;
        let src = open_tier(&from, m[0], How::Read)?;
        // An operator estimates before the first run: a target that
        // does not exist yet is an empty one.
        let scratch = tempfile::tempdir()?;
        let mut estimates = Vec::new();
        for (k, (target, meta)) in to.iter().zip(&m[1..]).enumerate() {
            let exists = match (object_spec(target)?, meta) {
                (Some(_), Some(meta)) => IndexedTier::exists(meta),
                (Some(_), None) => bail!("{}: an object tier needs --meta DIR", target.display()),
                (None, _) => IndexedTier::exists(target),
            };
            let e = if exists {
                Seeder::estimate(&src, &open_tier(target, *meta, How::Read)?, &selection)?
            } else {
                Seeder::estimate(
                    &src,
                    &IndexedTier::create(scratch.path().join(format!("t{k}")), TierConfig::default())?,
                    &selection,
                )?
            };
            estimates.push((target, exists, e));
        }
        if json {
            let v: Vec<_> = estimates.iter().map(|(t, _, e)| serde_json::json!({ "target": t, "estimate": e })).collect();
            say!(
                "{}",
                serde_json::to_string_pretty(&if v.len() == 1 {
                    serde_json::to_value(estimates[0].2)?
                } else {
                    serde_json::Value::Array(v)
                })?
            );
        } else {
            for (target, exists, e) in &estimates {
                if estimates.len() > 1 || !exists {
                    say!("into {}{}", target.display(), if *exists { "" } else { " (does not exist yet: empty)" });
                }
                say!("files selected      {} ({})", e.files, human(e.logical_bytes));
                say!("segments needed     {}", e.segments);
                say!("would copy          {} segments, {}", e.segments_to_copy, human(e.bytes_to_copy));
                say!("already on target   {} segments, {}", e.segments_on_target, human(e.bytes_on_target));
                say!("reclaimable (move)  {}", human(e.bytes_reclaimable));
                say!("containers touched  {} of {}", e.containers_touched, e.containers_total);
            }
        }
        Ok(Exit::Done)
    }
}
