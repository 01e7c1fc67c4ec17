//! `seed ingest`: ingest files and directory trees into a tier (created if missing).

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::Args;
use tierseed::TierConfig;

use crate::Exit;
use crate::open::{How, open_one};
use crate::ui::human;

/// Ingest files and directory trees into a tier (created if missing).
#[derive(Args)]
pub(crate) struct Ingest {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
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
}

impl Ingest {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Ingest { tier, container_kib, compression, paths } = self;
        let config = TierConfig { container_size: container_kib * 1024, compression_level: compression, ..TierConfig::default() };
        let t = open_one(&tier, metas, How::Create(config))?;
        let s = t.ingest_paths(&paths)?;
        say!(
            "ingested {} files ({} of them symlinks, {} skipped), {} logical, {} new ({} stored); segments: {} new, {} deduplicated",
            s.files,
            s.symlinks,
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
        Ok(Exit::Done)
    }
}
