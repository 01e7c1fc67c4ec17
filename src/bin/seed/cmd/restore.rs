//! `seed restore`: restore a file, or a whole directory (every file under a path prefix).

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::time::Instant;

use anyhow::{Result, bail};
use clap::Args;
use indicatif::{ProgressBar, ProgressStyle};
use tierseed::Tier;

use crate::Exit;
use crate::open::{How, open_one, retire_rot};
use crate::ui::{human, under};

/// Restore a file, or a whole directory (every file under a path prefix).
#[derive(Args)]
pub(crate) struct Restore {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
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
}

impl Restore {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Restore { tier, path, out, threads } = self;
        let t = open_one(&tier, metas, How::Read)?;
        let path = path.trim_end_matches('/').to_string();
        let single = t.file_entries(std::slice::from_ref(&path))?.pop().flatten();
        if single.is_some() {
            let r = if out.is_dir() { t.restore_to_dir(&path, &out) } else { t.restore_to_file(&path, &out) };
            if r.is_err() {
                drop(t);
                retire_rot(&tier, metas, std::iter::once(path.as_str()));
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
            let threads = threads.unwrap_or(if t.is_remote() { cores.max(8) } else { cores });
            let stats = t.restore_tree(&path, &out, threads, &|_, n| {
                let b = bytes.fetch_add(n, Ordering::Relaxed) + n;
                bar.inc(1);
                let rate = b as f64 / started.elapsed().as_secs_f64().max(0.001);
                bar.set_message(format!("{} at {}/s", human(b), human(rate as u64)));
            });
            bar.finish_and_clear();
            let stats = stats?;
            say!(
                "restored {} files ({} of them symlinks, {}) under {path:?} into {}",
                stats.files,
                stats.symlinks,
                human(stats.bytes),
                out.display()
            );
            if stats.failed > 0 {
                for (p, why) in &stats.failures {
                    eprintln!("seed: not restored: {p:?}: {why}");
                }
                if stats.failed > stats.failures.len() as u64 {
                    eprintln!("seed: and {} more not restored", stats.failed - stats.failures.len() as u64);
                }
                retire_rot(&tier, metas, stats.failures.iter().map(|f| f.0.as_str()));
                bail!("{} of {} files under {path:?} could not be restored", stats.failed, stats.failed + stats.files);
            }
        }
        Ok(Exit::Done)
    }
}
