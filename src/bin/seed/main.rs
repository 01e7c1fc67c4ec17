//! `seed`: the operator's command line for tierseed. A tier is a directory,
//! or `s3://BUCKET/PREFIX` / `az://CONTAINER/PREFIX` (an object tier, with `--meta DIR` for its local
//! metadata and the endpoint and credentials from `AWS_*` variables).
//! `seed --help` lists the commands; `seed demo` shows the whole cycle on
//! generated data.
//!
//! One command per file under `cmd/`; `args.rs` the arguments several
//! share, `open.rs` opening tiers, `ui.rs` what is shown, `demo.rs` the
//! demo. CLI advice and `anyhow` live here only, never in the library.

#![deny(clippy::unwrap_used)]

use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use tierseed::JobError;

/// jemalloc for the whole process (see the `jemalloc` feature): glibc's
/// per-thread arenas kept a quarter of a large job's peak RSS as freed memory (591 against 441 MiB at 11M segments).
#[cfg(feature = "jemalloc")]
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// Prints a line to stdout, returning the error (a closed pipe ends the
/// command quietly instead of panicking as `println!` would).
macro_rules! say {
    ($($arg:tt)*) => {
        writeln!(std::io::stdout().lock(), $($arg)*)?
    };
}

mod args;
mod cmd {
    //! One module per command.
    pub(crate) mod abandon;
    pub(crate) mod check;
    pub(crate) mod completions;
    pub(crate) mod demo;
    pub(crate) mod estimate;
    pub(crate) mod gc;
    pub(crate) mod info;
    pub(crate) mod ingest;
    pub(crate) mod key;
    pub(crate) mod ls;
    pub(crate) mod man;
    pub(crate) mod recover;
    pub(crate) mod restore;
    pub(crate) mod resume;
    pub(crate) mod rm;
    pub(crate) mod run;
    pub(crate) mod status;
    pub(crate) mod verify;
}
mod demo;
mod keys;
mod open;
mod price;
mod ui;

#[derive(Parser)]
#[command(name = "seed", version, about = "Crash-safe, resumable seeding of deduplicated data between tiers")]
struct Cli {
    /// The local metadata directory (index, namespace) of an object tier
    /// named as s3://BUCKET/PREFIX or az://CONTAINER/PREFIX. Give it once
    /// per object tier, in the order --from, --to. The endpoint and
    /// credentials come from AWS_ENDPOINT_URL, AWS_ACCESS_KEY_ID,
    /// AWS_SECRET_ACCESS_KEY and AWS_REGION (s3://), or from
    /// AZURE_STORAGE_ENDPOINT, AZURE_STORAGE_ACCOUNT_NAME and
    /// AZURE_STORAGE_ACCOUNT_KEY (az://).
    #[arg(long, global = true, value_name = "DIR")]
    meta: Vec<PathBuf>,
    #[command(flatten)]
    keys: keys::KeyArgs,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Ingest files and directory trees into a tier (created if missing).
    Ingest(cmd::ingest::Ingest),
    /// List the files in a tier's namespace.
    Ls(cmd::ls::Ls),
    /// Restore a file, or a whole directory (every file under a path prefix).
    Restore(cmd::restore::Restore),
    /// Remove files or whole directories from a tier's namespace (their
    /// data stays until space is reclaimed).
    Rm(cmd::rm::Rm),
    /// Reclaim space: delete containers nothing in the namespace reaches,
    /// compact mostly dead ones. Resumable; Ctrl-C suspends it.
    Gc(cmd::gc::Gc),
    /// Check a job file without running it: fields, selection, and that the
    /// tiers are there.
    Check(cmd::check::Check),
    /// Scrub a whole tier: every checksum, every fingerprint, every tree.
    Verify(cmd::verify::Verify),
    /// Containers, segments, logical, raw and stored bytes; dedup and compression ratios.
    Info(cmd::info::Info),
    /// Start a seeding job (the target tier is created if missing).
    Run(cmd::run::Run),
    /// Resume the job in a state directory.
    Resume(cmd::resume::Resume),
    /// Show a job's phase, cursor, counters and percent done (works while it runs).
    Status(cmd::status::Status),
    /// Dry run: what a job would copy, find on the target, make reclaimable.
    Estimate(cmd::estimate::Estimate),
    /// Rebuild an object tier's lost metadata directory (--meta DIR, which
    /// must not exist or be empty) from its bucket alone.
    Recover(cmd::recover::Recover),
    /// Remove a job's state (refuses while it runs).
    Abandon(cmd::abandon::Abandon),
    /// Generate backup generations, seed a subset with a suspend and a
    /// resume, restore and compare every seeded file, print a summary.
    Demo(cmd::demo::Demo),
    /// An encrypted tier's key slots: list, add, remove; generate a key file.
    Key(cmd::key::Key),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completions(cmd::completions::Completions),
    /// Print the manual page (roff).
    Man(cmd::man::Man),
}

/// The exit codes `seed` documents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(i32)]
enum Exit {
    /// Done (a job completed on every target).
    Done = 0,
    /// An error (a failed Verify included), printed on stderr.
    Failed = 1,
    /// A job (or gc) suspended: Ctrl-C, or a deferred switch; resume it.
    Suspended = 3,
    /// A job completed, but a target was dropped under `--on-target-failure drop`.
    TargetDropped = 4,
}

fn main() {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    // `seed --version` also names the on-disk formats this build writes
    // and reads (set at run time: the list comes from the library).
    let long_version: &'static str = Box::leak(long_version().into_boxed_str());
    let matches = Cli::command().long_version(long_version).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    match real_main(cli) {
        Ok(code) => std::process::exit(code as i32),
        // A reader that went away (`seed ls | head`) is not an error.
        Err(e)
            if e.chain()
                .any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)) =>
        {
            std::process::exit(Exit::Done as i32)
        }
        Err(e) => {
            // tierseed's messages already carry their cause; print once.
            eprintln!("seed: error: {e}");
            if let Some(a) = e.downcast_ref::<tierseed::Error>().and_then(advice) {
                eprintln!("seed: {a}");
            }
            // A failed Verify names every affected file; the message shows
            // the first few, the operator gets them all.
            if let Some(tierseed::Error::Job(JobError::VerifyFailed { files, .. })) =
                e.downcast_ref::<tierseed::Error>().map(tierseed::Error::root)
                && files.len() > 20
            {
                eprintln!("seed: every affected file:");
                for f in files {
                    eprintln!("  {f}");
                }
            }
            std::process::exit(Exit::Failed as i32);
        }
    }
}

/// What the operator can type next, for the errors where the library
/// (which knows no commands) names only what to do.
fn advice(e: &tierseed::Error) -> Option<String> {
    use tierseed::{Error, JobError, TierError};
    Some(match e.root() {
        Error::Job(JobError::JobExists { state_dir, phase }) if phase == "done" => {
            format!("`seed abandon --state {}` removes the finished job; or give another --state", state_dir.display())
        }
        Error::Job(JobError::JobExists { state_dir, .. }) => format!(
            "`seed resume --state {0} --from SRC --to DST` goes on; `seed abandon --state {0}` starts over",
            state_dir.display()
        ),
        Error::Tier(TierError::NotATier { reason, .. }) if reason.contains("object-storage tier") => {
            "name it as s3://BUCKET/PREFIX (or az://CONTAINER/PREFIX) and give this directory as --meta DIR".into()
        }
        _ => return None,
    })
}

/// The version, then one line per persisted format: what it is, the
/// version written, the oldest read.
fn long_version() -> String {
    use std::fmt::Write as _;
    let mut s = format!("{}\non-disk formats (writes / reads from):", env!("CARGO_PKG_VERSION"));
    for f in tierseed::format_versions() {
        write!(s, "\n  {:<36} v{} / v{}", f.what, f.writes, f.reads_from).expect("writing to a String cannot fail");
    }
    s
}

fn real_main(cli: Cli) -> anyhow::Result<Exit> {
    cli.keys.install()?;
    match cli.cmd {
        Cmd::Ingest(c) => c.run(&cli.meta),
        Cmd::Ls(c) => c.run(&cli.meta),
        Cmd::Restore(c) => c.run(&cli.meta),
        Cmd::Rm(c) => c.run(&cli.meta),
        Cmd::Gc(c) => c.run(&cli.meta),
        Cmd::Check(c) => c.run(&cli.meta),
        Cmd::Verify(c) => c.run(&cli.meta),
        Cmd::Info(c) => c.run(&cli.meta),
        Cmd::Run(c) => c.run(&cli.meta),
        Cmd::Resume(c) => c.run(&cli.meta),
        Cmd::Status(c) => c.run(),
        Cmd::Estimate(c) => c.run(&cli.meta),
        Cmd::Recover(c) => c.run(&cli.meta),
        Cmd::Abandon(c) => c.run(),
        Cmd::Demo(c) => c.run(),
        Cmd::Key(c) => c.run(&cli.meta),
        Cmd::Completions(c) => c.run(),
        Cmd::Man(c) => c.run(),
    }
}
