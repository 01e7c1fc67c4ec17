//! The arguments several commands share: the tiers of a job, the
//! selection, the options of a run, and the switch gate they ask for.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{JobError, Selection};

use crate::ui::{human, utc};

/// Options of a run, new or resumed.
/// What a job does with what it copies, shared by `run` and `estimate`
/// (which foresees the same job).
#[derive(Args)]
pub(crate) struct JobShape {
    /// Remove the files from the source namespace once switched (for
    /// `estimate`: count what that removal asks of an object source).
    #[arg(long = "move")]
    pub(crate) move_mode: bool,
    /// Target container size in KiB, if the target tier is created.
    #[arg(long, default_value_t = 4096)]
    pub(crate) container_kib: u64,
    /// What Verify reads from the target before anything is switched:
    /// `metadata` (recipes, index and container tables) or `full`
    /// (also every segment's bytes, hashed).
    #[arg(long, default_value = "metadata")]
    pub(crate) verify: tierseed::VerifyLevel,
}

#[derive(Args)]
pub(crate) struct RunOpts {
    /// Worker threads (default: all cores; 1 is fine).
    #[arg(long)]
    pub(crate) threads: Option<usize>,
    /// Target containers written at once per target in the Copy phase (1
    /// to 16, default 4): a crash redoes at most these plus the one
    /// filling. More can help a store whose single write leaves it idle.
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=16))]
    pub(crate) writers: Option<u16>,
    /// Limit the bytes written to the target, in MiB/s, or by local time
    /// of day: e.g. "mon-fri 08:00-18:00=20, *=200" (the first rule that
    /// holds wins; none holding: no limit). The job keeps it: a resume
    /// without --limit follows it too.
    #[arg(long, value_name = "MIB_PER_SEC|SCHEDULE")]
    pub(crate) limit: Option<String>,
    /// Print the outcome as JSON.
    #[arg(long)]
    pub(crate) json: bool,
    /// Also print every job event to stderr as it happens, one `event ...`
    /// line each (for scripts and tests).
    #[arg(long)]
    pub(crate) log_events: bool,
    /// Ask on the terminal before switching files to the target (and
    /// before removing them from the source): yes, later (suspend) or no.
    #[arg(long)]
    pub(crate) confirm_switch: bool,
    /// Defer the switch until this time: `YYYY-MM-DDTHH:MM` (UTC) or epoch
    /// seconds. Before it, the job suspends at the switch; resume then.
    #[arg(long, value_name = "TIME")]
    pub(crate) switch_after: Option<String>,
}

/// The switch gate the CLI's flags ask for.
pub(crate) fn cli_gate(confirm: bool, after: Option<&str>) -> Result<Option<Box<dyn tierseed::SwitchGate>>> {
    let after = after.map(parse_time).transpose()?;
    if !confirm && after.is_none() {
        return Ok(None);
    }
    Ok(Some(Box::new(move |r: &tierseed::SwitchRequest| {
        if let Some(t) = after {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
            if now < t {
                return tierseed::GateAnswer::Defer(format!("the switch window opens at {} UTC", utc(t)));
            }
        }
        if !confirm {
            return tierseed::GateAnswer::Approve;
        }
        if !std::io::IsTerminal::is_terminal(&std::io::stdin()) {
            return tierseed::GateAnswer::Defer("--confirm-switch needs a terminal to ask on".into());
        }
        let what = match r.stage {
            tierseed::SwitchStage::Switch => "switch them to the target",
            _ => "remove them from the source",
        };
        let _ = write!(
            std::io::stderr(),
            "\nseed: {} files ({}) are verified on the target; {what}? [yes/later/no] ",
            r.files,
            human(r.bytes)
        );
        let mut line = String::new();
        if std::io::stdin().read_line(&mut line).is_err() {
            return tierseed::GateAnswer::Defer("no answer".into());
        }
        match line.trim() {
            "y" | "yes" => tierseed::GateAnswer::Approve,
            "n" | "no" => tierseed::GateAnswer::Reject("refused at the prompt".into()),
            _ => tierseed::GateAnswer::Defer("deferred at the prompt".into()),
        }
    })))
}

/// `YYYY-MM-DDTHH:MM[:SS]` in UTC, or epoch seconds.
pub(crate) fn parse_time(text: &str) -> Result<i64> {
    if let Ok(secs) = text.parse::<i64>() {
        return Ok(secs);
    }
    let bad = || anyhow::anyhow!("time {text:?}: expected YYYY-MM-DDTHH:MM (UTC) or epoch seconds");
    let (date, time) = text.split_once(['T', ' ']).ok_or_else(bad)?;
    let ymd: Vec<i64> = date.split('-').map(str::parse).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
    let hms: Vec<i64> = time.split(':').map(str::parse).collect::<std::result::Result<_, _>>().map_err(|_| bad())?;
    let ([year, month, day], [hour, minute, ..]) = (ymd.as_slice(), hms.as_slice()) else { return Err(bad()) };
    let second = hms.get(2).copied().unwrap_or(0);
    // Out-of-range fields used to roll over silently (month 13 was next
    // January, hour 99 four days later).
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let days_in_month = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => 0,
    };
    if hms.len() > 3
        || !(1..=days_in_month).contains(day)
        || !(0..24).contains(hour)
        || !(0..60).contains(minute)
        || !(0..60).contains(&second)
    {
        return Err(anyhow::anyhow!(
            "time {text:?}: no such date or time (month 1-12, a day of that month, hour 0-23, minute and second 0-59)"
        ));
    }
    // Days from civil (Howard Hinnant's algorithm), the inverse of `utc`.
    let year = if *month <= 2 { year - 1 } else { *year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let shifted_month = (month + 9) % 12;
    let day_of_year = (153 * shifted_month + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    let days = era * 146_097 + day_of_era - 719_468;
    Ok(days * 86_400 + hour * 3600 + minute * 60 + second)
}

#[derive(Args)]
pub(crate) struct Tiers {
    /// A job file (TOML) holding the tiers, selection and options; see
    /// `examples/*.toml`. Flags given as well override nothing: use one or
    /// the other.
    #[arg(long, conflicts_with_all = ["from", "to", "state"])]
    pub(crate) job: Option<PathBuf>,
    /// Source tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long, required_unless_present = "job")]
    pub(crate) from: Option<PathBuf>,
    /// Target tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    /// Give it more than once to seed several targets in one pass (the
    /// source is read once). A resume takes the targets still reachable:
    /// one left out is dropped if the job's policy is `drop`.
    #[arg(long, required_unless_present = "job")]
    pub(crate) to: Vec<PathBuf>,
    /// Job state directory (the resumption context).
    #[arg(long, required_unless_present = "job")]
    pub(crate) state: Option<PathBuf>,
}

/// The tiers of a run, from flags or a job file.
pub(crate) struct Resolved {
    /// The job file, when the tiers came from one.
    pub(crate) job: Option<PathBuf>,
    pub(crate) from: PathBuf,
    pub(crate) to: Vec<PathBuf>,
    pub(crate) state: PathBuf,
    pub(crate) spec: Option<tierseed::JobSpec>,
    /// "job file PATH blake3 HEX", recorded in the job.
    pub(crate) origin: Option<String>,
}

impl Tiers {
    pub(crate) fn resolve(&self) -> Result<Resolved> {
        let r = self.resolve_given()?;
        // One tier as both source and target used to fail as "locked by
        // another process" (the first open held the lock the second hit).
        let same = |a: &Path, b: &Path| match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => a == b,
        };
        for t in &r.to {
            if same(&r.from, t) {
                bail!("the source and the target are the same tier ({}); seeding needs two tiers", t.display());
            }
        }
        Ok(r)
    }

    pub(crate) fn resolve_given(&self) -> Result<Resolved> {
        if let Some(path) = &self.job {
            let text = std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("job file {}: {e}", path.display()))?;
            let spec = tierseed::JobSpec::parse(&text, path)?;
            let abs = std::fs::canonicalize(path)?;
            let origin = format!("job file {} blake3 {}", abs.display(), tierseed::Fingerprint::of(text.as_bytes()));
            return Ok(Resolved {
                job: Some(path.clone()),
                from: spec.source.clone(),
                to: spec.targets.clone(),
                state: spec.state.clone(),
                origin: Some(origin),
                spec: Some(spec),
            });
        }
        match (&self.from, self.to.is_empty(), &self.state) {
            (Some(f), false, Some(s)) => {
                for (i, t) in self.to.iter().enumerate() {
                    if self.to[..i].contains(t) {
                        bail!("--to {} is given twice", t.display());
                    }
                }
                Ok(Resolved { job: None, from: f.clone(), to: self.to.clone(), state: s.clone(), spec: None, origin: None })
            }
            _ => bail!("give --from, --to and --state, or --job FILE"),
        }
    }
}

#[derive(Args)]
pub(crate) struct SelectionArgs {
    /// Select every file.
    #[arg(long)]
    pub(crate) all: bool,
    /// Glob to select (`*` stays within a directory, `**` crosses).
    #[arg(long = "include")]
    pub(crate) include: Vec<String>,
    /// Path prefix to select (whole components).
    #[arg(long)]
    pub(crate) prefix: Vec<String>,
    /// Explicit path to select.
    #[arg(long)]
    pub(crate) path: Vec<String>,
    /// Only files older than this: 30d, 12h, 45m, 10s.
    #[arg(long)]
    pub(crate) older_than: Option<String>,
}

impl SelectionArgs {
    pub(crate) fn selection(&self) -> Result<Selection> {
        let spec = tierseed::SelectionSpec {
            all: self.all,
            include: self.include.clone(),
            prefix: self.prefix.clone(),
            path: self.path.clone(),
            older_than: self.older_than.clone(),
        };
        match spec.to_selection() {
            Err(tierseed::Error::Job(JobError::EmptySelection)) => {
                bail!("select something: --all, --include GLOB, --prefix P, --path P or --older-than AGE")
            }
            r => Ok(r?),
        }
    }
}

/// `println!` that returns the write error instead of panicking, so that a
/// closed pipe (`seed ls | head`) ends the command quietly.
/// `--limit`: a number of MiB/s or a schedule of them.
pub(crate) fn limit_schedule(limit: Option<&str>) -> Result<Option<tierseed::LimitSchedule>> {
    let Some(text) = limit else { return Ok(None) };
    if text.trim().parse::<f64>().is_ok_and(|l| l <= 0.0) {
        bail!("--limit {text}: expected a positive number of MiB/s, or a schedule such as \"mon-fri 08:00-18:00=20, *=200\"");
    }
    Ok(Some(text.parse().map_err(|e| anyhow::anyhow!("--limit: {e}"))?))
}
