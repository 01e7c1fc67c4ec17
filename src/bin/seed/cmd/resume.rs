//! `seed resume`: resume the job in a state directory.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{Event, Seeder};

use crate::Exit;
use crate::args::{RunOpts, Tiers, cli_gate, limit_schedule};
use crate::cmd::run::{drive, specs, target_names};
use crate::open::{How, metas_for, open_tier};
use crate::ui::Ui;

/// Resume the job in a state directory.
#[derive(Args)]
pub(crate) struct Resume {
    #[command(flatten)]
    tiers: Tiers,
    /// Verify level for this run (default: the one the job was started with).
    #[arg(long)]
    verify: Option<tierseed::VerifyLevel>,
    /// Leave this target out (one of the job's --to, or of its job
    /// file's targets; repeatable): a site that is gone. Under the
    /// `drop` policy it is dropped and the others complete; under
    /// `fail` the resume is refused.
    #[arg(long, value_name = "TARGET")]
    skip_target: Vec<PathBuf>,
    #[command(flatten)]
    opts: RunOpts,
}

impl Resume {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Resume { tiers, verify, skip_target, opts } = self;
        let RunOpts { threads, writers, limit, json, log_events, confirm_switch, switch_after } = opts;
        let gate = cli_gate(confirm_switch, switch_after.as_deref())?;
        let mut r = tiers.resolve()?;
        // `--meta` goes with the tiers as given; a skipped target takes
        // its own with it.
        let m = metas_for(&specs(&r), metas)?;
        let mut targets: Vec<(PathBuf, Option<&Path>)> = r.to.iter().cloned().zip(m[1..].iter().copied()).collect();
        for skip in &skip_target {
            let before = targets.len();
            targets.retain(|(t, _)| t != skip);
            if targets.len() == before {
                bail!("--skip-target {}: not one of the targets given ({})", skip.display(), {
                    r.to.iter().map(|t| t.display().to_string()).collect::<Vec<_>>().join(", ")
                });
            }
        }
        if targets.is_empty() {
            bail!("--skip-target leaves no target to resume with");
        }
        r.to = targets.iter().map(|(t, _)| t.clone()).collect();
        let metas: Vec<PathBuf> =
            m[..1].iter().copied().chain(targets.iter().map(|(_, meta)| *meta)).flatten().map(Path::to_path_buf).collect();
        Seeder::ensure_idle(&r.state)?;
        let src = open_tier(&r.from, m[0], How::Write)?;
        let dsts = targets.iter().map(|(t, meta)| open_tier(t, *meta, How::Write)).collect::<Result<Vec<_>>>()?;
        let refs: Vec<&dyn tierseed::TargetTier> = dsts.iter().map(|d| d as &dyn tierseed::TargetTier).collect();
        let mut ui = Ui::new(json, log_events);
        ui.prompts = confirm_switch;
        let mut job = Seeder::resume_targets(&r.state, &src, &refs)?.with_observer(|e: &Event| ui.event(e));
        // A job started from a file resumes only from the same file.
        if let Some(now) = &r.origin {
            let then = job.origin()?;
            if then.as_deref() != Some(now.as_str()) {
                bail!(
                    "{} has changed since the job started (the job records: {}); resume with the original file or abandon the job",
                    tiers.job.as_deref().unwrap_or(Path::new("the job file")).display(),
                    then.unwrap_or_else(|| "no job file".into())
                );
            }
        }
        if let Some(n) = threads {
            job = job.with_threads(n);
        }
        if let Some(n) = writers {
            job = job.with_writers(usize::from(n));
        }
        if let Some(v) = verify {
            job = job.with_verify(v);
        }
        if let Some(l) = limit_schedule(limit.as_deref())? {
            job = job.with_limit_schedule(l)?;
        }
        if let Some(g) = gate {
            job = job.with_switch_gate(move |r: &tierseed::SwitchRequest| g.decide(r));
        }
        let names = target_names(&r, &dsts)?;
        drive(&mut job, &r, &names, &metas, &ui, json)
    }
}
