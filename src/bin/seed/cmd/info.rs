//! `seed info`: containers, segments, logical, raw and stored bytes; dedup and compression ratios.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;

use crate::Exit;
use crate::open::{How, open_one};
use crate::ui::human;

/// Containers, segments, logical, raw and stored bytes; dedup and compression ratios.
#[derive(Args)]
pub(crate) struct Info {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    tier: PathBuf,
}

impl Info {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Info { tier } = self;
        let t = open_one(&tier, metas, How::Read)?;
        let i = t.info()?;
        say!("tier        {}", i.id);
        say!("store       {}", t.store_location());
        if t.is_encrypted() {
            let slots = t.key_slots()?.len();
            say!("encrypted   XChaCha20-Poly1305, {slots} key slot(s) (seed key list)");
        } else {
            say!("encrypted   no");
        }
        say!("containers  {}", i.containers);
        say!("segments    {}", i.segments);
        say!("files       {}", i.files);
        say!("logical     {}", human(i.logical_bytes));
        say!("raw         {} (distinct segments)", human(i.raw_bytes));
        say!("stored      {}", human(i.stored_bytes));
        say!("dedup       {:.2}x (logical / raw)", i.dedup_ratio());
        say!("compression {:.2}x (raw / stored)", i.compression_ratio());
        say!("total       {:.2}x (logical / stored)", i.total_ratio());
        Ok(Exit::Done)
    }
}
