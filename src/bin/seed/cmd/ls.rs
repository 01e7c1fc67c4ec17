//! `seed ls`: list the files in a tier's namespace.

use std::io::Write;
use std::path::PathBuf;

use anyhow::Result;
use clap::Args;
use tierseed::{FileKind, Tier};

use crate::Exit;
use crate::open::{How, open_one};
use crate::ui::{escaped, human, mode_string, under, utc};

/// List the files in a tier's namespace.
#[derive(Args)]
pub(crate) struct Ls {
    /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
    #[arg(long)]
    tier: PathBuf,
    /// Only files at or under this path (whole components).
    prefix: Option<String>,
    /// Show kind and mode (as `ls -l`), size, modification time (UTC),
    /// tree height, root fingerprint, and where a symlink points.
    #[arg(long)]
    long: bool,
    /// One JSON object per file, with raw values (bytes, epoch seconds)
    /// and exact names.
    #[arg(long, conflicts_with = "long")]
    json: bool,
    /// Exact names, each ended by a NUL byte instead of a newline (for
    /// `xargs -0`). Human output escapes control characters and
    /// backslashes, so that a name with a newline stays one line.
    #[arg(short = '0', long, conflicts_with_all = ["long", "json"])]
    null: bool,
}

impl Ls {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Ls { tier, prefix, long, json, null } = self;
        let t = open_one(&tier, metas, How::Read)?;
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
                } else if null {
                    out.write_all(e.path.as_bytes())?;
                    out.write_all(b"\0")?;
                } else if long {
                    write!(
                        out,
                        "{}  {:>10}  {}  h{}  {}  {}",
                        mode_string(&e.attrs),
                        human(e.size),
                        utc(e.mtime),
                        e.height,
                        e.root,
                        escaped(&e.path)
                    )?;
                    if e.attrs.kind == FileKind::Symlink {
                        // The target is the entry's content: a read of a
                        // few verified bytes, only in the long listing.
                        let mut target = Vec::new();
                        t.restore(&e.path, &mut target)?;
                        write!(out, " -> {}", escaped(&String::from_utf8_lossy(&target)))?;
                    }
                    writeln!(out)?;
                } else {
                    writeln!(out, "{}", escaped(&e.path))?;
                }
            }
        }
        out.flush()?;
        Ok(Exit::Done)
    }
}
