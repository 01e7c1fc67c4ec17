//! `seed estimate --price FILE`: request and transfer prices, as an
//! operator keeps them in TOML, turning the estimate's request counts into
//! a cost.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;
use tierseed::RequestCounts;

/// Prices per 1,000 requests and per GiB moved. Every field defaults to 0,
/// so a file names only what the provider charges for.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Prices {
    /// What the prices are in, e.g. "USD" (shown, never converted).
    #[serde(default)]
    pub(crate) currency: String,
    #[serde(default)]
    put_per_1000: f64,
    #[serde(default)]
    get_per_1000: f64,
    #[serde(default)]
    list_per_1000: f64,
    #[serde(default)]
    delete_per_1000: f64,
    #[serde(default)]
    upload_per_gib: f64,
    #[serde(default)]
    download_per_gib: f64,
    /// Storage of the bytes the job adds, per GiB and month.
    #[serde(default)]
    storage_per_gib_month: f64,
}

/// What the requests and the bytes cost.
pub(crate) struct Cost {
    pub(crate) requests: f64,
    pub(crate) transfer: f64,
    pub(crate) storage_per_month: f64,
}

impl Prices {
    pub(crate) fn load(path: &Path) -> Result<Prices> {
        let text = std::fs::read_to_string(path).with_context(|| format!("reading the price file {}", path.display()))?;
        let p: Prices = toml::from_str(&text).with_context(|| format!("the price file {}", path.display()))?;
        for (name, v) in [
            ("put_per_1000", p.put_per_1000),
            ("get_per_1000", p.get_per_1000),
            ("list_per_1000", p.list_per_1000),
            ("delete_per_1000", p.delete_per_1000),
            ("upload_per_gib", p.upload_per_gib),
            ("download_per_gib", p.download_per_gib),
            ("storage_per_gib_month", p.storage_per_gib_month),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                bail!("the price file {}: {name} = {v} is not a price (0 or more)", path.display());
            }
        }
        Ok(p)
    }

    /// The cost of `r`, with `stored` bytes added to the bucket.
    pub(crate) fn cost(&self, r: &RequestCounts, stored: u64) -> Cost {
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let per = |n: u64, price: f64| n as f64 / 1000.0 * price;
        Cost {
            requests: per(r.puts, self.put_per_1000)
                + per(r.gets, self.get_per_1000)
                + per(r.lists, self.list_per_1000)
                + per(r.deletes, self.delete_per_1000),
            transfer: gib(r.bytes_up) * self.upload_per_gib + gib(r.bytes_down) * self.download_per_gib,
            storage_per_month: gib(stored) * self.storage_per_gib_month,
        }
    }
}
