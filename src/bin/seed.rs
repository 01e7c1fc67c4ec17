//! `seed`: the operator's command line for tierseed. A tier is a directory,
//! or `s3://BUCKET/PREFIX` (an object tier, with `--meta DIR` for its local
//! metadata and the endpoint and credentials from `AWS_*` variables).
//! `seed --help` lists the commands; `seed demo` shows the whole cycle on
//! generated data.

#![deny(clippy::unwrap_used)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tierseed::synth::SynthTree;
use tierseed::{
    Event, LocalTier, Mode, ObjectConfig, ObjectTier, Outcome, Phase, Progress, Report, Seeder, Selection, SuspendHandle, Tier,
    TierConfig,
};

#[derive(Parser)]
#[command(name = "seed", version, about = "Crash-safe, resumable seeding of deduplicated data between tiers")]
struct Cli {
    /// The local metadata directory (index, namespace) of an object tier
    /// named as s3://BUCKET/PREFIX. Give it once per s3:// tier, in the
    /// order --from, --to. The endpoint and credentials come from
    /// AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and
    /// AWS_REGION.
    #[arg(long, global = true, value_name = "DIR")]
    meta: Vec<PathBuf>,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest files and directory trees into a tier (created if missing).
    Ingest {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// Target container size in KiB, for a new tier.
        #[arg(long, default_value_t = 4096)]
        container_kib: u64,
        /// zstd level for a new tier's segments (0: store raw).
        #[arg(long, default_value_t = 3)]
        compression: i32,
        /// Files or directories to ingest.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// List the files in a tier's namespace.
    Ls {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// Only files at or under this path (whole components).
        prefix: Option<String>,
        /// Show size, modification time (UTC), tree height and root fingerprint.
        #[arg(long)]
        long: bool,
        /// One JSON object per file, with raw values (bytes, epoch seconds).
        #[arg(long, conflicts_with = "long")]
        json: bool,
    },
    /// Restore a file, or a whole directory (every file under a path prefix).
    Restore {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// Namespace path of a file, or a directory / path prefix (all files under it).
        path: String,
        /// An existing directory to restore into (as OUT/PATH), or, for a
        /// single file, the file to write.
        #[arg(long)]
        out: PathBuf,
        /// Files restored in parallel, for a directory (default: all cores;
        /// at least 8 from an object tier).
        #[arg(long)]
        threads: Option<usize>,
    },
    /// Remove files or whole directories from a tier's namespace (their
    /// data stays until space is reclaimed).
    Rm {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// Files or directories (every file under them) to remove.
        #[arg(required = true)]
        paths: Vec<String>,
    },
    /// Reclaim space: delete containers nothing in the namespace reaches,
    /// compact mostly dead ones. Resumable; Ctrl-C suspends it.
    Gc {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
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
    },
    /// Check a job file without running it: fields, selection, and that the
    /// tiers are there.
    Check {
        /// The job file (TOML).
        #[arg(long)]
        job: PathBuf,
    },
    /// Scrub a whole tier: every checksum, every fingerprint, every tree.
    Verify {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
    },
    /// Containers, segments, logical, raw and stored bytes; dedup and compression ratios.
    Info {
        /// The tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
    },
    /// Start a seeding job (the target tier is created if missing).
    Run {
        #[command(flatten)]
        tiers: Tiers,
        #[command(flatten)]
        sel: SelectionArgs,
        /// Remove the files from the source namespace once switched.
        #[arg(long = "move")]
        move_mode: bool,
        /// Target container size in KiB, if the target tier is created.
        #[arg(long, default_value_t = 4096)]
        container_kib: u64,
        /// What Verify reads from the target before anything is switched:
        /// `metadata` (recipes, index and container tables) or `full`
        /// (also every segment's bytes, hashed).
        #[arg(long, default_value = "metadata")]
        verify: tierseed::VerifyLevel,
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
    },
    /// Resume the job in a state directory.
    Resume {
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
    },
    /// Show a job's phase, cursor, counters and percent done (works while it runs).
    Status {
        /// The job's state directory.
        #[arg(long)]
        state: PathBuf,
        /// Print the status as JSON.
        #[arg(long)]
        json: bool,
        /// Refresh every second (phase, percent, copy rate) until the job
        /// completes; Ctrl-C stops watching.
        #[arg(long, conflicts_with = "json")]
        watch: bool,
    },
    /// Dry run: what a job would copy, find on the target, make reclaimable.
    Estimate {
        /// Source tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
        #[arg(long)]
        from: PathBuf,
        /// Target tier: a directory, or s3://BUCKET/PREFIX (with --meta
        /// DIR). Repeat for several targets. A target that does not exist
        /// yet counts as empty.
        #[arg(long, required = true)]
        to: Vec<PathBuf>,
        #[command(flatten)]
        sel: SelectionArgs,
        /// Print the estimate as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Rebuild an object tier's lost metadata directory (--meta DIR, which
    /// must not exist or be empty) from its bucket alone.
    Recover {
        /// The object tier: s3://BUCKET/PREFIX.
        #[arg(long)]
        tier: PathBuf,
    },
    /// Remove a job's state (refuses while it runs).
    Abandon {
        /// The job's state directory.
        #[arg(long)]
        state: PathBuf,
    },
    /// Generate backup generations, seed a subset with a suspend and a
    /// resume, restore and compare every seeded file, print a summary.
    Demo {
        /// Work directory (default: a new temporary one, removed after).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Backup generations to generate.
        #[arg(long, default_value_t = 6)]
        generations: usize,
        /// Files per generation.
        #[arg(long, default_value_t = 120)]
        files: usize,
    },
}

/// Options of a run, new or resumed.
#[derive(Args)]
struct RunOpts {
    /// Worker threads (default: all cores; 1 is fine).
    #[arg(long)]
    threads: Option<usize>,
    /// Limit the bytes written to the target, in MiB/s.
    #[arg(long, value_name = "MIB_PER_SEC")]
    limit: Option<f64>,
    /// Print the outcome as JSON.
    #[arg(long)]
    json: bool,
    /// Also print every job event to stderr as it happens, one `event ...`
    /// line each (for scripts and tests).
    #[arg(long)]
    log_events: bool,
    /// Ask on the terminal before switching files to the target (and
    /// before removing them from the source): yes, later (suspend) or no.
    #[arg(long)]
    confirm_switch: bool,
    /// Defer the switch until this time: `YYYY-MM-DDTHH:MM` (UTC) or epoch
    /// seconds. Before it, the job suspends at the switch; resume then.
    #[arg(long, value_name = "TIME")]
    switch_after: Option<String>,
}

/// The switch gate the CLI's flags ask for.
fn cli_gate(confirm: bool, after: Option<&str>) -> Result<Option<Box<dyn tierseed::SwitchGate>>> {
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
fn parse_time(text: &str) -> Result<i64> {
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
struct Tiers {
    /// A job file (TOML) holding the tiers, selection and options; see
    /// `examples/*.toml`. Flags given as well override nothing: use one or
    /// the other.
    #[arg(long, conflicts_with_all = ["from", "to", "state"])]
    job: Option<PathBuf>,
    /// Source tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
    #[arg(long, required_unless_present = "job")]
    from: Option<PathBuf>,
    /// Target tier: a directory, or s3://BUCKET/PREFIX (with --meta DIR).
    /// Give it more than once to seed several targets in one pass (the
    /// source is read once). A resume takes the targets still reachable:
    /// one left out is dropped if the job's policy is `drop`.
    #[arg(long, required_unless_present = "job")]
    to: Vec<PathBuf>,
    /// Job state directory (the resumption context).
    #[arg(long, required_unless_present = "job")]
    state: Option<PathBuf>,
}

/// The tiers of a run, from flags or a job file.
struct Resolved {
    /// The job file, when the tiers came from one.
    job: Option<PathBuf>,
    from: PathBuf,
    to: Vec<PathBuf>,
    state: PathBuf,
    spec: Option<tierseed::JobSpec>,
    /// "job file PATH blake3 HEX", recorded in the job.
    origin: Option<String>,
}

impl Tiers {
    fn resolve(&self) -> Result<Resolved> {
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

    fn resolve_given(&self) -> Result<Resolved> {
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
struct SelectionArgs {
    /// Select every file.
    #[arg(long)]
    all: bool,
    /// Glob to select (`*` stays within a directory, `**` crosses).
    #[arg(long = "include")]
    include: Vec<String>,
    /// Path prefix to select (whole components).
    #[arg(long)]
    prefix: Vec<String>,
    /// Explicit path to select.
    #[arg(long)]
    path: Vec<String>,
    /// Only files older than this: 30d, 12h, 45m, 10s.
    #[arg(long)]
    older_than: Option<String>,
}

impl SelectionArgs {
    fn selection(&self) -> Result<Selection> {
        let spec = tierseed::SelectionSpec {
            all: self.all,
            include: self.include.clone(),
            prefix: self.prefix.clone(),
            path: self.path.clone(),
            older_than: self.older_than.clone(),
        };
        match spec.to_selection() {
            Err(tierseed::Error::EmptySelection) => {
                bail!("select something: --all, --include GLOB, --prefix P, --path P or --older-than AGE")
            }
            r => Ok(r?),
        }
    }
}

/// `println!` that returns the write error instead of panicking, so that a
/// closed pipe (`seed ls | head`) ends the command quietly.
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

/// `--limit` in MiB/s as bytes per second (0: none).
fn mib_per_sec(limit: Option<f64>) -> Result<u64> {
    match limit {
        None => Ok(0),
        Some(l) if l.is_finite() && l > 0.0 => Ok((l * 1_048_576.0).round().max(1.0) as u64),
        Some(l) => bail!("--limit {l}: expected a positive number of MiB/s"),
    }
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        // A reader that went away (`seed ls | head`) is not an error.
        Err(e)
            if e.chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) =>
        {
            std::process::exit(0)
        }
        Err(e) => {
            // tierseed's messages already carry their cause; print once.
            eprintln!("seed: error: {e}");
            // A failed Verify names every affected file; the message shows
            // the first few, the operator gets them all.
            if let Some(tierseed::Error::VerifyFailed { files, .. }) =
                e.downcast_ref::<tierseed::Error>().map(tierseed::Error::root)
                && files.len() > 20
            {
                eprintln!("seed: every affected file:");
                for f in files {
                    eprintln!("  {f}");
                }
            }
            std::process::exit(1);
        }
    }
}

/// An opened tier: a directory, or an object tier. Both are `LocalTier`s
/// underneath (an object tier keeps its index locally too).
enum Opened {
    Local(LocalTier),
    Object(ObjectTier),
}

impl std::ops::Deref for Opened {
    type Target = LocalTier;
    fn deref(&self) -> &LocalTier {
        match self {
            Opened::Local(t) => t,
            Opened::Object(t) => t,
        }
    }
}

#[derive(Clone, Copy)]
enum How {
    Read,
    Write,
    /// Open for writing, creating it with this config if it is missing.
    Create(TierConfig),
}

/// Bucket and prefix if `spec` names an object tier.
fn object_spec(spec: &Path) -> Result<Option<ObjectConfig>> {
    let Some(text) = spec.to_str().filter(|t| t.starts_with("s3://")) else { return Ok(None) };
    let Some((bucket, prefix)) = ObjectConfig::parse_url(text) else {
        bail!("{text}: expected s3://BUCKET/PREFIX, with a bucket name of at least 3 characters")
    };
    Ok(Some(ObjectConfig::from_env(bucket, prefix)))
}

/// Opens the tier `spec` names; `meta` is the metadata directory an
/// object tier needs.
fn open_tier(spec: &Path, meta: Option<&Path>, how: How) -> Result<Opened> {
    let Some(cfg) = object_spec(spec)? else {
        return Ok(Opened::Local(match how {
            How::Read => LocalTier::open_read_only(spec)?,
            // Another process may create it first: then it is opened (and
            // refused as locked while that process has it open).
            How::Create(c) if !LocalTier::exists(spec) => match LocalTier::create(spec, c) {
                Err(tierseed::Error::NotATier { .. }) if LocalTier::exists(spec) => LocalTier::open(spec)?,
                r => r?,
            },
            How::Write | How::Create(_) => LocalTier::open(spec)?,
        }));
    };
    let Some(meta) = meta else {
        bail!("{}: an object tier needs --meta DIR, the directory of its local index and namespace", spec.display())
    };
    Ok(Opened::Object(match how {
        How::Read => ObjectTier::open_read_only(meta, &cfg)?,
        How::Create(c) if !ObjectTier::exists(meta) => match ObjectTier::create(meta, &cfg, c) {
            Err(tierseed::Error::NotATier { .. }) if ObjectTier::exists(meta) => ObjectTier::open(meta, &cfg)?,
            r => r?,
        },
        How::Write | How::Create(_) => ObjectTier::open(meta, &cfg)?,
    }))
}

/// Hands the `--meta` directories to the object tiers among `specs`, in
/// order; refuses a count that does not match.
fn metas_for<'a>(specs: &[&Path], metas: &'a [PathBuf]) -> Result<Vec<Option<&'a Path>>> {
    let mut given = metas.iter();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        out.push(if object_spec(spec)?.is_some() { given.next().map(PathBuf::as_path) } else { None });
    }
    if given.next().is_some() {
        bail!("more --meta directories than s3:// tiers: give one per object tier, in the order --from, then each --to");
    }
    Ok(out)
}

/// Opens one tier with the command's `--meta`.
/// After restores failed: reads `paths` again through a writable handle,
/// whose reads retire what they find rotten (so the next job into this
/// tier copies good bytes). Restores run on a read-only handle so that
/// they work beside a running job; when the tier is busy, says so.
fn retire_rot<'p>(tier: &Path, metas: &[PathBuf], paths: impl Iterator<Item = &'p str>) {
    match open_one(tier, metas, How::Write) {
        Ok(t) => {
            for p in paths {
                let _ = t.restore(p, &mut std::io::sink());
            }
        }
        Err(e) => {
            eprintln!("seed: rot found could not be retired now ({e:#}); `seed verify --tier {}` does it later", tier.display());
        }
    }
}

fn open_one(spec: &Path, metas: &[PathBuf], how: How) -> Result<Opened> {
    let m = metas_for(&[spec], metas)?;
    open_tier(spec, m[0], how)
}

fn real_main(cli: Cli) -> Result<i32> {
    let metas = cli.meta;
    match cli.cmd {
        Cmd::Ingest { tier, container_kib, compression, paths } => {
            let config =
                TierConfig { container_size: container_kib * 1024, compression_level: compression, ..TierConfig::default() };
            let t = open_one(&tier, &metas, How::Create(config))?;
            let s = t.ingest_paths(&paths)?;
            say!(
                "ingested {} files ({} skipped), {} logical, {} new ({} stored); segments: {} new, {} deduplicated",
                s.files,
                s.skipped,
                human(s.logical_bytes),
                human(s.new_bytes),
                human(s.stored_bytes),
                s.segments_new,
                s.segments_dedup
            );
            if !s.unreadable.is_empty() {
                for u in &s.unreadable {
                    eprintln!("seed: not ingested: {u}");
                }
                bail!("{} path(s) could not be read; everything else was stored", s.unreadable.len());
            }
        }
        Cmd::Ls { tier, prefix, long, json } => {
            let t = open_one(&tier, &metas, How::Read)?;
            let prefix = prefix.unwrap_or_default();
            let prefix = prefix.trim_end_matches('/');
            let mut after: Option<String> = None;
            let out = std::io::stdout();
            let mut out = std::io::BufWriter::new(out.lock());
            loop {
                let page = t.list_files(after.as_deref(), 1024)?;
                let Some(last) = page.last() else { break };
                after = Some(last.path.clone());
                for e in page.iter().filter(|e| under(prefix, &e.path)) {
                    if json {
                        writeln!(out, "{}", serde_json::to_string(e)?)?;
                    } else if long {
                        writeln!(out, "{:>10}  {}  h{}  {}  {}", human(e.size), utc(e.mtime), e.height, e.root, e.path)?;
                    } else {
                        writeln!(out, "{}", e.path)?;
                    }
                }
            }
            out.flush()?;
        }
        Cmd::Restore { tier, path, out, threads } => {
            let t = open_one(&tier, &metas, How::Read)?;
            let path = path.trim_end_matches('/').to_string();
            let single = t.file_entries(std::slice::from_ref(&path))?.pop().flatten();
            if single.is_some() {
                let r = if out.is_dir() { t.restore_to_dir(&path, &out) } else { t.restore_to_file(&path, &out) };
                if r.is_err() {
                    drop(t);
                    retire_rot(&tier, &metas, std::iter::once(path.as_str()));
                }
                say!("restored {path} ({})", human(r?));
            } else {
                // A directory restore creates --out, as `cp -r` and
                // `restic restore --target` do; an existing file there
                // is refused.
                if out.exists() && !out.is_dir() {
                    bail!("{path:?} is a directory in the tier, and --out {} is a file", out.display());
                }
                let total = t.all_files()?.iter().filter(|e| under(&path, &e.path)).count();
                let bar = ProgressBar::new(total as u64).with_style(
                    ProgressStyle::with_template("restore [{bar:30}] {percent:>3}% {pos}/{len} files, {msg} ETA {eta}")
                        .unwrap_or_else(|_| ProgressStyle::default_bar())
                        .progress_chars("=> "),
                );
                let bytes = std::sync::atomic::AtomicU64::new(0);
                let started = Instant::now();
                // An object tier's reads wait on the network, not the
                // CPU: more files in flight than cores.
                let cores = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
                let threads = threads.unwrap_or(if matches!(t, Opened::Object(_)) { cores.max(8) } else { cores });
                let stats = t.restore_tree(&path, &out, threads, &|_, n| {
                    let b = bytes.fetch_add(n, Ordering::Relaxed) + n;
                    bar.inc(1);
                    let rate = b as f64 / started.elapsed().as_secs_f64().max(0.001);
                    bar.set_message(format!("{} at {}/s", human(b), human(rate as u64)));
                });
                bar.finish_and_clear();
                let stats = stats?;
                say!("restored {} files ({}) under {path:?} into {}", stats.files, human(stats.bytes), out.display());
                if stats.failed > 0 {
                    for (p, why) in &stats.failures {
                        eprintln!("seed: not restored: {p:?}: {why}");
                    }
                    if stats.failed > stats.failures.len() as u64 {
                        eprintln!("seed: and {} more not restored", stats.failed - stats.failures.len() as u64);
                    }
                    retire_rot(&tier, &metas, stats.failures.iter().map(|f| f.0.as_str()));
                    bail!("{} of {} files under {path:?} could not be restored", stats.failed, stats.failed + stats.files);
                }
            }
        }
        Cmd::Rm { tier, paths } => {
            let t = open_one(&tier, &metas, How::Write)?;
            let refs: Vec<&str> = paths.iter().map(String::as_str).collect();
            let gone = t.remove(&refs)?;
            let bytes: u64 = gone.iter().map(|e| e.size).sum();
            say!("removed {} files ({}) from the namespace of {}", gone.len(), human(bytes), tier.display());
        }
        Cmd::Gc { tier, dry_run, threshold, json } => {
            let t = open_one(&tier, &metas, How::Write)?;
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
                return Ok(3);
            }
        }
        Cmd::Check { job } => {
            let spec = tierseed::JobSpec::load(&job)?;
            let all: Vec<&Path> =
                std::iter::once(spec.source.as_path()).chain(spec.targets.iter().map(PathBuf::as_path)).collect();
            let m = metas_for(&all, &metas)?;
            let src = open_tier(&spec.source, m[0], How::Read)?;
            for (target, meta) in spec.targets.iter().zip(&m[1..]) {
                let target_exists = match (object_spec(target)?, meta) {
                    (Some(_), Some(meta)) => ObjectTier::exists(meta),
                    (Some(_), None) => bail!("{}: an object tier needs --meta DIR", target.display()),
                    (None, _) => LocalTier::exists(target),
                };
                if target_exists {
                    open_tier(target, *meta, How::Read)?;
                }
            }
            // The selection against the namespace only: a check must be
            // quick (it used to run a whole estimate of the source against
            // itself, walking every selected tree).
            let (files, bytes) = spec.selection()?.resolve_count(&*src)?;
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
        }
        Cmd::Verify { tier } => {
            // A writable handle retires the rot it finds; while another
            // process has the tier open, the scrub runs read-only.
            let t = match open_one(&tier, &metas, How::Write) {
                Ok(t) => t,
                Err(e) if e.downcast_ref::<tierseed::Error>().is_some_and(|e| matches!(e, tierseed::Error::Locked { .. })) => {
                    eprintln!("seed: {} is in use; scrubbing read-only (rot found is reported, not retired)", tier.display());
                    open_one(&tier, &metas, How::Read)?
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
        }
        Cmd::Info { tier } => {
            let t = open_one(&tier, &metas, How::Read)?;
            let i = t.info()?;
            say!("tier        {}", i.id);
            say!("store       {}", t.store_location());
            say!("containers  {}", i.containers);
            say!("segments    {}", i.segments);
            say!("files       {}", i.files);
            say!("logical     {}", human(i.logical_bytes));
            say!("raw         {} (distinct segments)", human(i.raw_bytes));
            say!("stored      {}", human(i.stored_bytes));
            say!("dedup       {:.2}x (logical / raw)", i.dedup_ratio());
            say!("compression {:.2}x (raw / stored)", i.compression_ratio());
            say!("total       {:.2}x (logical / stored)", i.total_ratio());
        }
        Cmd::Run { tiers, sel, move_mode, container_kib, verify, phf, on_target_failure, opts } => {
            let RunOpts { threads, limit, json, log_events, confirm_switch, switch_after } = opts;
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
                    spec.limit_bytes_per_sec(),
                    spec.threads,
                    tierseed::PhfKind::from(spec.phf),
                    spec.on_target_failure,
                ),
                None => (
                    sel.selection()?,
                    if move_mode { Mode::Move } else { Mode::Copy },
                    verify,
                    mib_per_sec(limit)?,
                    threads,
                    phf,
                    on_target_failure,
                ),
            };
            Seeder::ensure_idle(&r.state)?;
            let m = metas_for(&specs(&r), &metas)?;
            let src = open_tier(&r.from, m[0], How::Write)?;
            let config = TierConfig { container_size: container_kib * 1024, ..TierConfig::default() };
            let dsts =
                r.to.iter().zip(&m[1..]).map(|(t, meta)| open_tier(t, *meta, How::Create(config))).collect::<Result<Vec<_>>>()?;
            let mut ui = Ui::new(json, log_events);
            ui.prompts = confirm_switch;
            let mut b = Seeder::builder(&*src, &*dsts[0], &r.state)
                .selection(selection)
                .mode(mode)
                .verify(verify)
                .phf(phf)
                .on_target_failure(policy)
                .limit_bytes_per_sec(limit)
                .observer(|e: &Event| ui.event(e));
            for d in &dsts[1..] {
                b = b.also_to(&**d);
            }
            if let Some(n) = threads {
                b = b.threads(n);
            }
            if let Some(o) = &r.origin {
                b = b.origin(o.clone());
            }
            if let Some(g) = gate {
                b = b.switch_gate(move |r: &tierseed::SwitchRequest| g.decide(r));
            }
            let mut job = b.build()?;
            let names = target_names(&r, &dsts)?;
            return drive(&mut job, &r, &names, &metas, &ui, json);
        }
        Cmd::Resume { tiers, verify, skip_target, opts } => {
            let RunOpts { threads, limit, json, log_events, confirm_switch, switch_after } = opts;
            let gate = cli_gate(confirm_switch, switch_after.as_deref())?;
            let mut r = tiers.resolve()?;
            // `--meta` goes with the tiers as given; a skipped target takes
            // its own with it.
            let m = metas_for(&specs(&r), &metas)?;
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
            let refs: Vec<&dyn tierseed::TargetTier> = dsts.iter().map(|d| &**d as &dyn tierseed::TargetTier).collect();
            let mut ui = Ui::new(json, log_events);
            ui.prompts = confirm_switch;
            let mut job = Seeder::resume_targets(&r.state, &*src, &refs)?.with_observer(|e: &Event| ui.event(e));
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
            if let Some(v) = verify {
                job = job.with_verify(v);
            }
            job = job.with_limit_bytes_per_sec(mib_per_sec(limit)?);
            if let Some(g) = gate {
                job = job.with_switch_gate(move |r: &tierseed::SwitchRequest| g.decide(r));
            }
            let names = target_names(&r, &dsts)?;
            return drive(&mut job, &r, &names, &metas, &ui, json);
        }
        Cmd::Status { state, json, watch } => {
            if watch {
                return watch_status(&state);
            }
            let p = Seeder::status(&state)?;
            if json {
                say!("{}", serde_json::to_string_pretty(&p)?);
            } else {
                print_progress(&p)?;
            }
        }
        Cmd::Estimate { from, to, sel, json } => {
            let selection = sel.selection()?;
            let all: Vec<&Path> = std::iter::once(from.as_path()).chain(to.iter().map(PathBuf::as_path)).collect();
            let m = metas_for(&all, &metas)?;
            let src = open_tier(&from, m[0], How::Read)?;
            // An operator estimates before the first run: a target that
            // does not exist yet is an empty one.
            let scratch = tempfile::tempdir()?;
            let mut estimates = Vec::new();
            for (k, (target, meta)) in to.iter().zip(&m[1..]).enumerate() {
                let exists = match (object_spec(target)?, meta) {
                    (Some(_), Some(meta)) => ObjectTier::exists(meta),
                    (Some(_), None) => bail!("{}: an object tier needs --meta DIR", target.display()),
                    (None, _) => LocalTier::exists(target),
                };
                let e = if exists {
                    Seeder::estimate(&*src, &*open_tier(target, *meta, How::Read)?, &selection)?
                } else {
                    Seeder::estimate(
                        &*src,
                        &LocalTier::create(scratch.path().join(format!("t{k}")), TierConfig::default())?,
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
        }
        Cmd::Recover { tier } => {
            let Some(cfg) = object_spec(&tier)? else {
                bail!("{}: recover rebuilds an object tier: give s3://BUCKET/PREFIX", tier.display())
            };
            let [meta] = metas.as_slice() else { bail!("recover needs --meta DIR, the metadata directory to rebuild") };
            let (_, r) = ObjectTier::recover(meta, &cfg)?;
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
        }
        Cmd::Abandon { state } => {
            Seeder::abandon(&state)?;
            say!("abandoned the job in {}", state.display());
        }
        Cmd::Demo { dir, generations, files } => demo(dir, generations, files)?,
    }
    Ok(0)
}

/// The tiers of a run in `--meta` order: the source, then each target.
fn specs(r: &Resolved) -> Vec<&Path> {
    std::iter::once(r.from.as_path()).chain(r.to.iter().map(PathBuf::as_path)).collect()
}

/// Runs a job with Ctrl-C wired to suspension; prints the outcome.
/// Each opened target's id with the path it was given as, for reports.
fn target_names(r: &Resolved, dsts: &[Opened]) -> Result<Vec<(String, String)>> {
    r.to.iter().zip(dsts).map(|(p, d)| Ok((d.tier_id()?.to_string(), p.display().to_string()))).collect()
}

fn drive(
    job: &mut Seeder<'_>,
    tiers: &Resolved,
    names: &[(String, String)],
    metas: &[PathBuf],
    ui: &Ui,
    json: bool,
) -> Result<i32> {
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
            Ok(if r.targets.iter().any(|t| t.dropped.is_some()) { 4 } else { 0 })
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
            Ok(3)
        }
    }
}

static INTERRUPTS: AtomicU32 = AtomicU32::new(0);

fn install_ctrlc(handle: SuspendHandle) {
    let _ = ctrlc::set_handler(move || {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nseed: suspending at the next commit point (Ctrl-C again to exit now; that is safe too)");
            handle.suspend();
        } else {
            // Safe: the context only ever moves by atomic, synced commits.
            eprintln!("\nseed: exiting now; resume picks up from the last commit");
            std::process::exit(130);
        }
    });
}

/// Progress display driven by the job's events.
struct Ui {
    bar: Mutex<Option<(Phase, ProgressBar)>>,
    quiet: bool,
    log_events: bool,
    prompts: bool,
    copied: Mutex<(u64, Instant)>,
    /// Verify's progress per target: containers checked, to check.
    verifying: Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
}

impl Ui {
    fn new(quiet: bool, log_events: bool) -> Ui {
        Ui {
            bar: Mutex::new(None),
            quiet,
            log_events,
            prompts: false,
            copied: Mutex::new((0, Instant::now())),
            verifying: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    fn bar_for(&self, phase: Phase, len: Option<u64>) -> ProgressBar {
        let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((p, b)) = slot.as_ref() {
            // The phase's spinner becomes a bar once the phase reports its
            // total.
            if *p == phase && (len.is_none() || b.length().is_some()) {
                return b.clone();
            }
            if *p == phase {
                b.finish_and_clear();
            } else {
                b.finish();
            }
        }
        let b = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {percent:>3}% {pos}/{len} {msg}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>9} {spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        if self.quiet {
            b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        b.set_prefix(phase.name());
        b.enable_steady_tick(Duration::from_millis(200));
        *slot = Some((phase, b.clone()));
        b
    }

    fn event(&self, e: &Event) {
        if self.log_events {
            // One line per event, written at once (stderr is unbuffered).
            // A reader that went away must not stop the job: ignore errors.
            let _ = writeln!(std::io::stderr(), "event {e:?}");
        }
        match e {
            // A terminal prompt may come at the start of Switch: no spinner
            // drawn over it (the bar appears with the first batch).
            Event::PhaseStarted(Phase::Switch) if self.prompts => self.finish(),
            Event::PhaseStarted(p) => {
                self.bar_for(*p, None).set_message("…");
            }
            Event::PhaseFinished(p) => self.bar_for(*p, None).finish_with_message("done"),
            Event::Marked { segments } => self.bar_for(Phase::Mark, None).set_message(format!("{segments} segments marked")),
            Event::ContainerCopied { done, total, bytes, .. } => {
                let mut c = self.copied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                c.0 += bytes;
                let rate = c.0 as f64 / c.1.elapsed().as_secs_f64().max(0.001);
                let b = self.bar_for(Phase::Copy, Some(*total));
                b.set_position(*done);
                b.set_message(format!("containers, {} read at {}/s", human(c.0), human(rate as u64)));
            }
            Event::ContainerSkipped { done, total, .. } => self.bar_for(Phase::Copy, Some(*total)).set_position(*done),
            Event::Verifying { target_index, containers, total } => {
                // Several targets are walked at once: one bar over all.
                let mut v = self.verifying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                v.insert(*target_index, (*containers, *total));
                let (done, all) = v.values().fold((0, 0), |(d, a), (x, y)| (d + x, a + y));
                let b = self.bar_for(Phase::Verify, Some(all));
                b.set_length(all);
                b.set_position(done);
                b.set_message(if v.len() > 1 {
                    format!("target containers checked on {} targets", v.len())
                } else {
                    "target containers checked".into()
                });
            }
            Event::TargetDropped { target, reason, .. } => {
                self.finish();
                eprintln!("seed: target {target} dropped, the others go on: {reason}");
            }
            Event::Switched { files, total } => {
                let b = self.bar_for(Phase::Switch, Some(*total));
                b.set_position(*files);
                b.set_message("files");
            }
            _ => {}
        }
    }

    fn finish(&self) {
        if let Some((_, b)) = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            b.finish_and_clear();
        }
    }
}

fn print_report(r: &Report, names: &[(String, String)]) -> Result<()> {
    let c = &r.counters;
    let mode = if r.mode == Mode::Move { "move" } else { "copy" };
    say!("job {} completed: {mode} mode, resumed {} time(s)", r.job_id, r.resumes);
    say!("  files           {} ({})", c.files_selected, human(c.bytes_selected));
    say!("  segments marked {}", c.segments_marked);
    say!("  containers      {} read, {} skipped unread, of {}", c.containers_read, c.containers_skipped, c.containers_total);
    let over = if r.targets.len() > 1 { format!(" over {} targets", r.targets.len()) } else { String::new() };
    say!(
        "  copied          {} segments, {} in {} target containers{over}",
        c.segments_copied,
        human(c.bytes_copied),
        c.target_containers
    );
    say!("  already there   {} segments, {}", c.segments_deduplicated, human(c.bytes_deduplicated));
    if c.segments_adopted > 0 {
        say!("  adopted         {} segments written before a crash, counted as copied", c.segments_adopted);
    }
    say!("  switched        {} files", c.files_switched);
    if r.targets.len() > 1 {
        for (i, t) in r.targets.iter().enumerate() {
            let name = names.iter().find(|(id, _)| *id == t.tier_id).map_or_else(|| t.tier_id.clone(), |(_, p)| p.clone());
            let tc = &t.counters;
            match &t.dropped {
                Some(why) => say!("  target {}      {name}: DROPPED ({why})", i + 1),
                None => say!(
                    "  target {}      {name}: copied {} segments, {} in {} containers; already there {} segments; switched {} files",
                    i + 1,
                    tc.segments_copied,
                    human(tc.bytes_copied),
                    tc.target_containers,
                    tc.segments_deduplicated,
                    tc.files_switched
                ),
            }
        }
    }
    if r.mode == Mode::Move {
        if r.targets.iter().any(|t| t.dropped.is_some()) {
            say!("  removed         nothing from the source: a target was dropped, so not every target has the files");
        }
        say!("  removed         {} files from the source", c.files_removed);
        if c.files_kept > 0 {
            say!("  kept            {} files in the source: they changed after they were selected", c.files_kept);
        }
    }
    Ok(())
}

fn print_progress(p: &Progress) -> Result<()> {
    let c = &p.counters;
    say!("job        {}", p.job_id);
    say!("phase done {}", p.phase_done.map_or("none".into(), |x| x.to_string()));
    say!("next phase {}", p.next_phase);
    say!("cursor     {} of {} containers", p.copy_cursor, c.containers_total);
    say!("copied     {} segments, {}", c.segments_copied, human(c.bytes_copied));
    say!("on target  {} segments, {}", c.segments_deduplicated, human(c.bytes_deduplicated));
    if p.targets.len() > 1 {
        for (i, t) in p.targets.iter().enumerate() {
            let state = t.dropped.as_deref().map_or_else(
                || format!("copied {}, switched {} files", human(t.counters.bytes_copied), t.counters.files_switched),
                |why| format!("DROPPED ({why})"),
            );
            say!("target {}   {}: {state}", i + 1, t.tier_id);
        }
    }
    say!("done       {:.1}%", p.percent);
    Ok(())
}

/// Whether namespace `path` is at or under `prefix` (whole components; an
/// empty prefix holds everything).
fn under(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Epoch seconds as `YYYY-MM-DD HH:MM` in UTC.
fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// `status --watch`: one refreshing line until the job is done.
fn watch_status(state: &Path) -> Result<i32> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: Option<(Instant, u64)> = None;
    loop {
        let p = Seeder::status(state)?;
        let c = &p.counters;
        let now = Instant::now();
        let rate = match last {
            Some((t, b)) if now > t => c.bytes_copied.saturating_sub(b) as f64 / (now - t).as_secs_f64(),
            _ => 0.0,
        };
        last = Some((now, c.bytes_copied));
        let line = format!(
            "{:>5.1}%  phase {:<9} containers {}/{}  copied {} ({}/s)",
            p.percent,
            p.next_phase.name(),
            p.copy_cursor.min(c.containers_total),
            c.containers_total,
            human(c.bytes_copied),
            human(rate as u64)
        );
        let mut out = std::io::stdout().lock();
        if tty {
            write!(out, "\r\x1b[2K{line}")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        drop(out);
        if p.next_phase == Phase::Done {
            if tty {
                say!();
            }
            say!("job {} is done", p.job_id);
            return Ok(0);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

fn demo(dir: Option<PathBuf>, generations: usize, files: usize) -> Result<()> {
    let tmp;
    let root = if let Some(d) = dir {
        std::fs::create_dir_all(&d)?;
        if std::fs::read_dir(&d)?.next().is_some() {
            bail!("{} is not empty; give an empty or new directory", d.display());
        }
        d
    } else {
        tmp = tempfile::tempdir()?;
        tmp.path().to_path_buf()
    };
    let t0 = Instant::now();
    let small = TierConfig { container_size: 1 << 20, ..TierConfig::default() };
    let src = LocalTier::create(root.join("source"), small)?;
    let dst = LocalTier::create(root.join("target"), small)?;
    let mut tree = SynthTree::new(42, files, 96 << 10, 3.0);
    for _ in 0..generations {
        let g = tree.next_generation();
        src.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice())))?;
    }
    let si = src.info()?;
    say!(
        "source: {generations} generations of {files} files: {} logical, {} stored ({:.1}x dedup, {:.1}x compression), {} containers",
        human(si.logical_bytes),
        human(si.stored_bytes),
        si.dedup_ratio(),
        si.compression_ratio(),
        si.containers
    );
    // Seed the latest generation's project and alice's home directories,
    // plus the project files of the first generation.
    let last = generations.saturating_sub(1);
    let selection = Selection::new()
        .prefix(format!("gen-{last:03}/projects"))
        .prefix(format!("gen-{last:03}/home/alice"))
        .prefix("gen-000/projects");
    let state = root.join("state");
    let est = Seeder::estimate(&src, &dst, &selection)?;
    say!("estimate: {} files, would copy {} of {} logical", est.files, human(est.bytes_to_copy), human(est.logical_bytes));

    // Suspend after a third of the snapshot's containers, as an operator's
    // Ctrl-C would.
    let handle_slot: Mutex<Option<SuspendHandle>> = Mutex::new(None);
    let observer = |e: &Event| {
        if let Event::ContainerCopied { done, total, .. } | Event::ContainerSkipped { done, total, .. } = e
            && *done * 3 >= *total
            && let Some(h) = handle_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
        {
            h.suspend();
        }
    };
    let mut job = Seeder::builder(&src, &dst, &state).selection(selection).observer(observer).build()?;
    *handle_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(job.suspend_handle());
    let first = job.run()?;
    drop(job);
    let suspended_at = match &first {
        Outcome::Suspended(p) => {
            format!("suspended at container {} of {} ({:.0}% done)", p.copy_cursor, p.counters.containers_total, p.percent)
        }
        Outcome::Completed(_) => "completed before the suspension point".into(),
    };
    say!("run 1: {suspended_at}");
    let report = match first {
        Outcome::Completed(r) => r,
        Outcome::Suspended(_) => match Seeder::resume(&state, &src, &dst)?.run()? {
            Outcome::Completed(r) => r,
            Outcome::Suspended(_) => bail!("the resumed job suspended without being asked"),
        },
    };
    say!("run 2: resumed and completed");

    // Restore every seeded file from the target and compare with the source.
    let mut compared = 0u64;
    let mut bytes = 0u64;
    for e in dst.all_files()? {
        let mut a = Vec::new();
        let mut b = Vec::new();
        dst.restore(&e.path, &mut a)?;
        src.restore(&e.path, &mut b)?;
        if a != b {
            bail!("{}: restored bytes differ from the source", e.path);
        }
        compared += 1;
        bytes += a.len() as u64;
    }
    let verify = dst.verify()?;
    if !verify.is_clean() {
        bail!("target verify found problems: {:?}", verify.problems);
    }
    let c = &report.counters;
    let di = dst.info()?;
    say!();
    say!("| what                        | value |");
    say!("|-----------------------------|-------|");
    say!("| files seeded                | {} |", c.files_selected);
    say!("| logical bytes seeded        | {} |", human(c.bytes_selected));
    say!("| segments marked             | {} |", c.segments_marked);
    say!("| source containers read      | {} (incl. re-reads after resume) |", c.containers_read);
    say!("| source containers skipped   | {} (no data read) |", c.containers_skipped);
    say!("| bytes copied                | {} |", human(c.bytes_copied));
    say!("| target stored / logical     | {} / {} |", human(di.stored_bytes), human(di.logical_bytes));
    say!("| resumes                     | {} |", report.resumes);
    say!("| files restored and compared | {compared} ({}), all identical |", human(bytes));
    say!("| target verify               | clean ({} containers) |", verify.containers);
    say!("| elapsed                     | {:.1} s |", t0.elapsed().as_secs_f64());
    Ok(())
}
