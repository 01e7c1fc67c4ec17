//! `seed key`: an encrypted tier's key slots: list, add, remove, and
//! generate a key file.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Result, bail};
use clap::{Args, Subcommand};
use tierseed::{Credential, KeyKind};

use crate::Exit;
use crate::keys::{first_line, read_passphrase};
use crate::open::{How, open_one};
use crate::ui::utc;

/// The environment variable `seed key add` reads a new passphrase from.
const NEW_PASSPHRASE_ENV: &str = "TIERSEED_NEW_PASSPHRASE";

/// An encrypted tier's key slots (the tier is opened with --key-file,
/// --passphrase-file, --passphrase-fd or TIERSEED_PASSPHRASE).
#[derive(Args)]
pub(crate) struct Key {
    #[command(subcommand)]
    cmd: KeyCmd,
}

#[derive(Subcommand)]
enum KeyCmd {
    /// Write a new key file (32 random bytes as hex, mode 0600); the file
    /// must not exist.
    Generate {
        /// Where to write it.
        file: PathBuf,
    },
    /// List the key slots: number, kind, when added, label.
    List {
        /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
    },
    /// Add a way in: a new passphrase or key file (nothing is rewritten).
    /// To change a passphrase: add the new one, then remove the old slot.
    Add {
        /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// The new key file.
        #[arg(long, value_name = "FILE", conflicts_with_all = ["new_passphrase_file", "new_passphrase_fd"])]
        new_key_file: Option<PathBuf>,
        /// A file whose first line is the new passphrase (or the
        /// environment variable TIERSEED_NEW_PASSPHRASE).
        #[arg(long, value_name = "FILE", conflicts_with = "new_passphrase_fd")]
        new_passphrase_file: Option<PathBuf>,
        /// A descriptor to read the new passphrase from.
        #[arg(long, value_name = "FD")]
        new_passphrase_fd: Option<u32>,
        /// A label for the slot (who or what it is for).
        #[arg(long, default_value = "")]
        label: String,
    },
    /// Remove key slot SLOT (never the last one).
    Remove {
        /// The tier: a directory, or s3://BUCKET/PREFIX or az://CONTAINER/PREFIX (with --meta DIR).
        #[arg(long)]
        tier: PathBuf,
        /// The slot's number, as `seed key list` shows it.
        slot: u32,
    },
}

impl Key {
    /// Runs the command; `metas` are the global `--meta` directories.
    pub(crate) fn run(self, metas: &[PathBuf]) -> Result<Exit> {
        match self.cmd {
            KeyCmd::Generate { file } => {
                Credential::generate_key_file(&file)?;
                say!("wrote key file {} (keep a copy apart from the tier: without a key the data is lost)", file.display());
            }
            KeyCmd::List { tier } => {
                let t = open_one(&tier, metas, How::Read)?;
                let in_use = t.key_slot_in_use();
                for s in t.key_slots()? {
                    let kind = match s.kind {
                        KeyKind::Passphrase => {
                            format!("passphrase (argon2id {} MiB, {} passes)", s.memory_kib / 1024, s.iterations)
                        }
                        _ => "key file".to_string(),
                    };
                    let mark = if in_use == Some(s.number) { "  (opened this time)" } else { "" };
                    say!("slot {:<3} {:<40} added {} UTC  {}{mark}", s.number, kind, utc(s.created), s.label);
                }
            }
            KeyCmd::Add { tier, new_key_file, new_passphrase_file, new_passphrase_fd, label } => {
                let cred = new_credential(new_key_file, new_passphrase_file, new_passphrase_fd)?;
                let t = open_one(&tier, metas, How::Write)?;
                let n = t.add_key(&cred, &label)?;
                say!("added key slot {n} ({}) to {}", cred.describe(), tier.display());
            }
            KeyCmd::Remove { tier, slot } => {
                let t = open_one(&tier, metas, How::Write)?;
                t.remove_key(slot)?;
                let note = if t.key_slot_in_use() == Some(slot) { " (the one it was opened with)" } else { "" };
                say!("removed key slot {slot}{note} from {}", tier.display());
            }
        }
        Ok(Exit::Done)
    }
}

fn new_credential(file: Option<PathBuf>, pass_file: Option<PathBuf>, pass_fd: Option<u32>) -> Result<Credential> {
    Ok(match (file, pass_file, pass_fd) {
        (Some(f), _, _) => Credential::key_file(f),
        (_, Some(p), _) => read_passphrase(&p, &format!("--new-passphrase-file {}", p.display()))?,
        (_, _, Some(fd)) => read_passphrase(&PathBuf::from(format!("/proc/self/fd/{fd}")), &format!("--new-passphrase-fd {fd}"))?,
        _ => match std::env::var(NEW_PASSPHRASE_ENV) {
            Ok(v) => first_line(&zeroize::Zeroizing::new(v), NEW_PASSPHRASE_ENV)?,
            Err(_) => bail!(
                "give the new credential: --new-key-file FILE, --new-passphrase-file FILE, --new-passphrase-fd FD or {NEW_PASSPHRASE_ENV}"
            ),
        },
    })
}
