//! `seed run`: start a seeding job (the target tier is created if missing).

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{Event, Mode, Outcome, Seeder, Tier, TierConfig};

use crate::Exit;
use crate::args::{JobShape, Resolved, RunOpts, SelectionArgs, Tiers, cli_gate, limit_schedule};
use crate::open::{How, metas_for, open_tier};
use crate::ui::{Ui, install_ctrlc, print_progress, print_report};

/// Start a seeding job (the target tier is created if missing).
#[derive(Args)]
pub(crate) struct Run {
    #[command(flatten)]
    tiers: Tiers,
    #[command(flatten)]
    sel: SelectionArgs,
    #[command(flatten)]
    shape: JobShape,
    /// The perfect hash function over the source index: `boomphf`
    /// (about 3.4 bits per fingerprint) or `compact` (about 2.2 bits,
    /// several times slower to build). With --job, the file's `phf`.
    #[arg(long, default_value = "boomphf")]
    phf: tierseed::PhfKind,
    /// With several --to: `fail` (default) ends the job when a target
    /// fails; `drop` drops that target, names it in the report and
    /// completes the others (a move then removes nothing from the
    /// source). With --job, the file's `on_target_failure`.
    #[arg(long, default_value = "fail")]
    on_target_failure: tierseed::TargetFailure,
    #[command(flatten)]
    opts: RunOpts,
}

impl Run {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Run { tiers, sel, shape: JobShape { move_mode, container_kib, verify }, phf, on_target_failure, opts } = self;
        let RunOpts { threads, writers, limit, json, log_events, confirm_switch, switch_after } = opts;
        let gate = cli_gate(confirm_switch, switch_after.as_deref())?;
        let r = tiers.resolve()?;
        let flags = sel.all || !sel.include.is_empty() || !sel.prefix.is_empty() || !sel.path.is_empty();
        if r.spec.is_some() && (flags || sel.older_than.is_some() || move_mode || limit.is_some() || threads.is_some()) {
            bail!("with --job, the job file holds the selection, mode, limit and threads: give them there, not as flags");
        }
        let (selection, mode, verify, limit, threads, phf, policy) = match &r.spec {
            Some(spec) => (
                spec.selection()?,
                spec.mode(),
                spec.verify_level(),
                spec.limit_schedule()?,
                spec.threads,
                tierseed::PhfKind::from(spec.phf),
                spec.on_target_failure,
            ),
            None => (
                sel.selection()?,
                if move_mode { Mode::Move } else { Mode::Copy },
                verify,
                limit_schedule(limit.as_deref())?,
                threads,
                phf,
                on_target_failure,
            ),
        };
        Seeder::ensure_idle(&r.state)?;
        let m = metas_for(&specs(&r), metas)?;
        let src = open_tier(&r.from, m[0], How::Write)?;
        let config = TierConfig { container_size: container_kib * 1024, ..TierConfig::default() };
        let dsts =
            r.to.iter().zip(&m[1..]).map(|(t, meta)| open_tier(t, *meta, How::Create(config))).collect::<Result<Vec<_>>>()?;
        let mut ui = Ui::new(json, log_events);
        ui.prompts = confirm_switch;
        let mut b = Seeder::builder(&src, &dsts[0], &r.state)
            .selection(selection)
            .mode(mode)
            .verify(verify)
            .phf(phf)
            .on_target_failure(policy)
            .observer(|e: &Event| ui.event(e));
        for d in &dsts[1..] {
            b = b.also_to(d);
        }
        if let Some(n) = threads {
            b = b.threads(n);
        }
        if let Some(n) = writers {
            b = b.writers(usize::from(n));
        }
        if let Some(l) = limit {
            b = b.limit_schedule(l);
        }
        if let Some(o) = &r.origin {
            b = b.origin(o.clone());
        }
        if let Some(g) = gate {
            b = b.switch_gate(move |r: &tierseed::SwitchRequest| g.decide(r));
        }
        let mut job = b.build()?;
        let names = target_names(&r, &dsts)?;
        drive(&mut job, &r, &names, metas, &ui, json)
    }
}

/// The tiers of a run in `--meta` order: the source, then each target.
pub(crate) fn specs(r: &Resolved) -> Vec<&Path> {
    std::iter::once(r.from.as_path()).chain(r.to.iter().map(PathBuf::as_path)).collect()
}

/// Runs a job with Ctrl-C wired to suspension; prints the outcome.
/// Each opened target's id with the path it was given as, for reports.
pub(crate) fn target_names(r: &Resolved, dsts: &[tierseed::IndexedTier]) -> Result<Vec<(String, String)>> {
    r.to.iter().zip(dsts).map(|(p, d)| Ok((d.tier_id()?.to_string(), p.display().to_string()))).collect()
}

pub(crate) fn drive(
    job: &mut Seeder<'_>,
    tiers: &Resolved,
    names: &[(String, String)],
    metas: &[PathBuf],
    ui: &Ui,
    json: bool,
) -> Result<Exit> {
    install_ctrlc(job.suspend_handle());
    let outcome = job.run();
    ui.finish();
    match outcome? {
        Outcome::Completed(r) => {
            if json {
                say!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print_report(&r, names)?;
            }
            // Completed, but not on every target: scripts must notice.
            Ok(if r.targets.iter().any(|t| t.dropped.is_some()) { Exit::TargetDropped } else { Exit::Done })
        }
        Outcome::Suspended(p) => {
            if json {
                say!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_progress(&p)?;
                if let Some(why) = &p.deferred {
                    eprintln!("switch deferred: {why}");
                }
                let meta = metas.iter().fold(String::new(), |mut acc, m| {
                    acc.push_str(" --meta ");
                    acc.push_str(&m.display().to_string());
                    acc
                });
                let to = tiers.to.iter().fold(String::new(), |mut acc, t| {
                    acc.push_str(" --to ");
                    acc.push_str(&t.display().to_string());
                    acc
                });
                match &tiers.job {
                    Some(file) => eprintln!("suspended; resume with: seed resume --job {}{meta}", file.display()),
                    None => eprintln!(
                        "suspended; resume with: seed resume --from {}{to} --state {}{meta}",
                        tiers.from.display(),
                        tiers.state.display()
                    ),
                }
            }
            Ok(Exit::Suspended)
        }
    }
}
