//! The credentials of encrypted tiers: from key files, passphrase files,
//! file descriptors and `TIERSEED_PASSPHRASE`, never from the command line
//! itself (where other users see it in the process list). Every encrypted
//! tier a command opens is tried with each credential given, in order.

use std::path::PathBuf;
use std::sync::OnceLock;

use anyhow::{Result, bail};
use clap::Args;
use tierseed::Credential;

/// The environment variable a passphrase may come from.
pub(crate) const PASSPHRASE_ENV: &str = "TIERSEED_PASSPHRASE";

/// How the tiers of a command are unlocked (and new ones encrypted).
#[derive(Args, Default)]
pub(crate) struct KeyArgs {
    /// A key file of an encrypted tier (`seed key generate FILE` makes
    /// one). Repeat for several tiers: each encrypted tier is tried with
    /// every credential given.
    #[arg(long, global = true, value_name = "FILE")]
    key_file: Vec<PathBuf>,
    /// A file whose first line is a passphrase of an encrypted tier
    /// (repeatable). Also: the environment variable TIERSEED_PASSPHRASE.
    #[arg(long, global = true, value_name = "FILE")]
    passphrase_file: Vec<PathBuf>,
    /// An open file descriptor to read a passphrase from (its first line;
    /// repeatable), e.g. `--passphrase-fd 3 3<secret`.
    #[arg(long, global = true, value_name = "FD")]
    passphrase_fd: Vec<u32>,
    /// Create new tiers (a missing target of `run`, a new tier of
    /// `ingest`) encrypted, under the first credential given.
    #[arg(long, global = true)]
    encrypt: bool,
}

struct Keys {
    creds: Vec<Credential>,
    encrypt: bool,
}

static KEYS: OnceLock<Keys> = OnceLock::new();

/// The first line of `text`, refused when empty.
pub(crate) fn first_line(text: &str, from: &str) -> Result<Credential> {
    let line = text.split('\n').next().unwrap_or_default().trim_end_matches('\r');
    if line.is_empty() {
        bail!("{from}: no passphrase (its first line is empty)");
    }
    Ok(Credential::passphrase(line))
}

/// Reads one passphrase from a file or descriptor; the text is wiped.
pub(crate) fn read_passphrase(path: &std::path::Path, from: &str) -> Result<Credential> {
    use std::io::BufRead;
    // The first line only, and at most 4 KiB of it: a descriptor whose
    // writer keeps it open, or a device, is not read forever.
    let f = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{from}: cannot read it: {e}"))?;
    let mut line = zeroize::Zeroizing::new(String::new());
    std::io::BufReader::new(std::io::Read::take(f, 4096))
        .read_line(&mut line)
        .map_err(|e| anyhow::anyhow!("{from}: cannot read it: {e}"))?;
    first_line(&line, from)
}

impl KeyArgs {
    /// Reads every credential the flags and the environment give, and
    /// keeps them for [`credentials`].
    pub(crate) fn install(&self) -> Result<()> {
        let mut creds: Vec<Credential> = self.key_file.iter().map(Credential::key_file).collect();
        for p in &self.passphrase_file {
            creds.push(read_passphrase(p, &format!("--passphrase-file {}", p.display()))?);
        }
        for fd in &self.passphrase_fd {
            // /proc/self/fd reaches an inherited descriptor without unsafe
            // code (this crate forbids it).
            creds.push(read_passphrase(&PathBuf::from(format!("/proc/self/fd/{fd}")), &format!("--passphrase-fd {fd}"))?);
        }
        if let Some(v) = std::env::var_os(PASSPHRASE_ENV) {
            let text = zeroize::Zeroizing::new(v.into_string().map_err(|_| anyhow::anyhow!("{PASSPHRASE_ENV} is not UTF-8"))?);
            creds.push(first_line(&text, PASSPHRASE_ENV)?);
        }
        if self.encrypt && creds.is_empty() {
            bail!("--encrypt needs a credential: --key-file, --passphrase-file, --passphrase-fd or {PASSPHRASE_ENV}");
        }
        let _ = KEYS.set(Keys { creds, encrypt: self.encrypt });
        Ok(())
    }
}

/// The credentials given to this command, in order.
pub(crate) fn credentials() -> &'static [Credential] {
    KEYS.get().map_or(&[], |k| &k.creds)
}

/// The credential new tiers are encrypted under (`--encrypt`), if asked.
pub(crate) fn encrypt_with() -> Option<&'static Credential> {
    KEYS.get().filter(|k| k.encrypt).and_then(|k| k.creds.first())
}

/// Opens a tier with the credentials given: plain when none is given (an
/// encrypted tier then fails with `KeyRequired`), otherwise with each in
/// turn until one opens it; a plain tier opens without them.
pub(crate) fn with_credentials<T>(
    what: &str,
    plain: impl Fn() -> tierseed::Result<T>,
    keyed: impl Fn(&Credential) -> tierseed::Result<T>,
) -> Result<T> {
    use tierseed::{Error, TierError};
    let creds = credentials();
    if creds.is_empty() {
        return match plain() {
            Err(Error::Tier(TierError::KeyRequired { location })) => bail!(
                "{location} is encrypted: give its key with --key-file FILE, --passphrase-file FILE, --passphrase-fd FD or {PASSPHRASE_ENV}"
            ),
            r => Ok(r?),
        };
    }
    let mut refused = Vec::new();
    for c in creds {
        match keyed(c) {
            Err(Error::Tier(TierError::NotEncrypted { .. })) => return Ok(plain()?),
            Err(Error::Tier(TierError::WrongKey { .. })) => refused.push(c.describe()),
            r => return Ok(r?),
        }
    }
    bail!("{what}: none of the credentials given opens it (tried: {})", refused.join(", "))
}
