//! `seed estimate`: dry run: what a job would copy, find on the target, make reclaimable.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use clap::Args;
use tierseed::{IndexedTier, RequestCounts, Seeder, TierConfig};

use crate::Exit;
use crate::args::{JobShape, SelectionArgs};
use crate::open::{How, metas_for, object_spec, open_tier};
use crate::price::Prices;
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
    #[command(flatten)]
    shape: JobShape,
    /// Turn the request counts of object tiers into a cost with this price
    /// file (TOML: put_per_1000, get_per_1000, list_per_1000,
    /// delete_per_1000, upload_per_gib, download_per_gib,
    /// storage_per_gib_month, currency; examples/prices/).
    #[arg(long, value_name = "FILE")]
    price: Option<PathBuf>,
    /// Print the estimate as JSON.
    #[arg(long)]
    json: bool,
}

impl Estimate {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        let Estimate { from, to, sel, shape: JobShape { move_mode, container_kib, verify }, price, json } = self;
        let selection = sel.selection()?;
        let prices = price.as_deref().map(Prices::load).transpose()?;
        let source_is_object = object_spec(&from)?.is_some();
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
                    &IndexedTier::create(
                        scratch.path().join(format!("t{k}")),
                        TierConfig { container_size: container_kib * 1024, ..TierConfig::default() },
                    )?,
                    &selection,
                )?
            };
            let target_is_object = object_spec(target)?.is_some();
            let r = e.requests(verify, if move_mode { tierseed::Mode::Move } else { tierseed::Mode::Copy });
            // Only the object tiers' requests are billed.
            let mut side = RequestCounts::default();
            for (object, counts) in [(target_is_object, r.target), (source_is_object, r.source)] {
                if object {
                    side = add(side, counts);
                }
            }
            let objects = target_is_object || source_is_object;
            estimates.push((target, exists, e, objects.then_some(side), target_is_object));
        }
        if json {
            let json_of = |e: &tierseed::Estimate, r: &Option<RequestCounts>, to_object: bool| -> Result<serde_json::Value> {
                let mut v = serde_json::to_value(e)?;
                if let Some(r) = r {
                    v["requests"] = serde_json::to_value(r)?;
                    if let Some(p) = &prices {
                        let c = p.cost(r, if to_object { e.target_container_bytes } else { 0 });
                        v["cost"] = serde_json::json!({
                            "currency": p.currency,
                            "requests": c.requests,
                            "transfer": c.transfer,
                            "total": c.requests + c.transfer,
                            "storage_per_month": c.storage_per_month,
                        });
                    }
                }
                Ok(v)
            };
            let mut v = Vec::new();
            for (t, _, e, r, to_object) in &estimates {
                v.push(serde_json::json!({ "target": t, "estimate": json_of(e, r, *to_object)? }));
            }
            say!(
                "{}",
                serde_json::to_string_pretty(&if v.len() == 1 {
                    json_of(&estimates[0].2, &estimates[0].3, estimates[0].4)?
                } else {
                    serde_json::Value::Array(v)
                })?
            );
        } else {
            for (target, exists, e, requests, to_object) in &estimates {
                if estimates.len() > 1 || !exists {
                    say!("into {}{}", target.display(), if *exists { "" } else { " (does not exist yet: empty)" });
                }
                say!("files selected      {} ({})", e.files, human(e.logical_bytes));
                say!("segments needed     {}", e.segments);
                say!("would copy          {} segments, {}", e.segments_to_copy, human(e.bytes_to_copy));
                say!("already on target   {} segments, {}", e.segments_on_target, human(e.bytes_on_target));
                say!("reclaimable (move)  {}", human(e.bytes_reclaimable));
                say!("containers touched  {} of {}", e.containers_touched, e.containers_total);
                if let Some(r) = requests {
                    say!(
                        "requests            {} PUT, {} GET, {} LIST, {} DELETE ({} in all)",
                        r.puts,
                        r.gets,
                        r.lists,
                        r.deletes,
                        r.total()
                    );
                    say!("transfer            {} up, {} down", human(r.bytes_up), human(r.bytes_down));
                    if let Some(p) = &prices {
                        let c = p.cost(r, if *to_object { e.target_container_bytes } else { 0 });
                        let cur = &p.currency;
                        say!(
                            "cost                {:.4} {cur} ({:.4} requests + {:.4} transfer), then {:.4} {cur} a month to store",
                            c.requests + c.transfer,
                            c.requests,
                            c.transfer,
                            c.storage_per_month
                        );
                    }
                } else if prices.is_some() {
                    say!("cost                none: neither tier is an object tier");
                }
            }
        }
        Ok(Exit::Done)
    }
}

fn add(a: RequestCounts, b: RequestCounts) -> RequestCounts {
    RequestCounts {
        puts: a.puts + b.puts,
        gets: a.gets + b.gets,
        lists: a.lists + b.lists,
        deletes: a.deletes + b.deletes,
        bytes_up: a.bytes_up + b.bytes_up,
        bytes_down: a.bytes_down + b.bytes_down,
    }
}
