//! Opening the tiers a command names: directories, or object tiers
//! (`s3://` or `az://`) with their `--meta` directories.

use std::path::{Path, PathBuf};

use anyhow::{Result, bail};
use tierseed::{IndexedTier, ObjectConfig, TierConfig, TierError};

use crate::keys::{encrypt_with, with_credentials};

#[derive(Clone, Copy)]
pub(crate) enum How {
    Read,
    Write,
    /// Open for writing, creating it with this config if it is missing.
    Create(TierConfig),
}

/// The object tier's config (from the URL and the environment) if `spec`
/// names one.
pub(crate) fn object_spec(spec: &Path) -> Result<Option<ObjectConfig>> {
    let Some(text) = spec.to_str().filter(|t| t.starts_with("s3://") || t.starts_with("az://")) else { return Ok(None) };
    let Some((service, bucket, prefix)) = ObjectConfig::parse_url(text) else {
        bail!("{text}: expected s3://BUCKET/PREFIX or az://CONTAINER/PREFIX, with a name of at least 3 characters")
    };
    Ok(Some(ObjectConfig::from_env(service, bucket, prefix)))
}

/// Opens the tier `spec` names; `meta` is the metadata directory an
/// object tier needs. An encrypted tier is opened with the credentials the
/// command was given; a new one is encrypted when `--encrypt` asks.
pub(crate) fn open_tier(spec: &Path, meta: Option<&Path>, how: How) -> Result<IndexedTier> {
    let t = open_tier_as_is(spec, meta, how)?;
    // `--encrypt` asks for an encrypted tier: one that exists and is not
    // is refused rather than silently written in plaintext.
    if matches!(how, How::Create(_)) && encrypt_with().is_some() && !t.is_encrypted() {
        bail!("{}: --encrypt, but this tier exists and is not encrypted (a tier is encrypted from its creation)", spec.display());
    }
    Ok(t)
}

fn open_tier_as_is(spec: &Path, meta: Option<&Path>, how: How) -> Result<IndexedTier> {
    let what = spec.display().to_string();
    let Some(cfg) = object_spec(spec)? else {
        let open_write = || with_credentials(&what, || IndexedTier::open(spec), |c| IndexedTier::open_with_key(spec, c));
        return match how {
            How::Read => {
                with_credentials(&what, || IndexedTier::open_read_only(spec), |c| IndexedTier::open_read_only_with_key(spec, c))
            }
            // Another process may create it first: then it is opened (and
            // refused as locked while that process has it open).
            How::Create(c) if !IndexedTier::exists(spec) => {
                let made = match encrypt_with() {
                    Some(key) => IndexedTier::create_encrypted(spec, c, key),
                    None => IndexedTier::create(spec, c),
                };
                match made {
                    Err(tierseed::Error::Tier(TierError::NotATier { .. })) if IndexedTier::exists(spec) => open_write(),
                    r => Ok(r?),
                }
            }
            How::Write | How::Create(_) => open_write(),
        };
    };
    let Some(meta) = meta else {
        bail!("{}: an object tier needs --meta DIR, the directory of its local index and namespace", spec.display())
    };
    let open_write = || {
        with_credentials(
            &what,
            || IndexedTier::open_object_tier(meta, &cfg),
            |c| IndexedTier::open_object_tier_with_key(meta, &cfg, c),
        )
    };
    match how {
        How::Read => with_credentials(
            &what,
            || IndexedTier::open_object_tier_read_only(meta, &cfg),
            |c| IndexedTier::open_object_tier_read_only_with_key(meta, &cfg, c),
        ),
        How::Create(c) if !IndexedTier::exists(meta) => {
            let made = match encrypt_with() {
                Some(key) => IndexedTier::create_object_tier_encrypted(meta, &cfg, c, key),
                None => IndexedTier::create_object_tier(meta, &cfg, c),
            };
            match made {
                Err(tierseed::Error::Tier(TierError::NotATier { .. })) if IndexedTier::exists(meta) => open_write(),
                r => Ok(r?),
            }
        }
        How::Write | How::Create(_) => open_write(),
    }
}

/// Hands the `--meta` directories to the object tiers among `specs`, in
/// order; refuses a count that does not match.
pub(crate) fn metas_for<'a>(specs: &[&Path], metas: &'a [PathBuf]) -> Result<Vec<Option<&'a Path>>> {
    let mut given = metas.iter();
    let mut out = Vec::with_capacity(specs.len());
    for spec in specs {
        out.push(if object_spec(spec)?.is_some() { given.next().map(PathBuf::as_path) } else { None });
    }
    if given.next().is_some() {
        bail!("more --meta directories than object tiers: give one per object tier, in the order --from, then each --to");
    }
    Ok(out)
}

/// Opens one tier with the command's `--meta`.
/// After restores failed: reads `paths` again through a writable handle,
/// whose reads retire what they find rotten (so the next job into this
/// tier copies good bytes). Restores run on a read-only handle so that
/// they work beside a running job; when the tier is busy, says so.
pub(crate) fn retire_rot<'p>(tier: &Path, metas: &[PathBuf], paths: impl Iterator<Item = &'p str>) {
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

pub(crate) fn open_one(spec: &Path, metas: &[PathBuf], how: How) -> Result<IndexedTier> {
    let m = metas_for(&[spec], metas)?;
    open_tier(spec, m[0], how)
}
