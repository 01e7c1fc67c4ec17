//! Namespace path rules, and joining a namespace path under a directory
//! without ever leaving it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result, TierError};

/// Longest namespace path accepted, in bytes.
pub const MAX_PATH_LEN: usize = 4096;

/// Whether namespace path `path` is `prefix` or lies under it, by whole
/// components (`a/b` is under `a`, `ab` is not).
pub(crate) fn prefix_matches(prefix: &str, path: &str) -> bool {
    let prefix = prefix.trim_end_matches('/');
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Checks that `path` is a relative, `/`-separated path with no empty, `.`
/// or `..` component and no NUL byte.
pub fn validate_path(path: &str) -> Result<()> {
    let bad =
        |reason: &str| Err(Error::Tier(TierError::InvalidPath { path: path.chars().take(200).collect(), reason: reason.into() }));
    if path.is_empty() {
        return bad("empty path");
    }
    if path.len() > MAX_PATH_LEN {
        return bad("longer than 4096 bytes");
    }
    if path.contains('\0') {
        return bad("contains a NUL byte");
    }
    if path.starts_with('/') {
        return bad("absolute paths are not allowed");
    }
    for comp in path.split('/') {
        match comp {
            "" => return bad("empty path component"),
            "." | ".." => return bad("'.' and '..' components are not allowed"),
            _ => {}
        }
    }
    Ok(())
}

/// Joins a validated namespace path under `root`, refusing to pass through
/// an existing symlink (which could point outside `root`). The last
/// component may be a symlink only where `last_may_be_link` (restoring a
/// symlink replaces one there; it never writes through it).
pub(crate) fn safe_join(root: &Path, path: &str, last_may_be_link: bool) -> Result<PathBuf> {
    validate_path(path)?;
    let mut out = root.to_path_buf();
    let comps: Vec<&str> = path.split('/').collect();
    for (i, comp) in comps.iter().enumerate() {
        out.push(comp);
        let last = i + 1 == comps.len();
        if !(last && last_may_be_link) && std::fs::symlink_metadata(&out).is_ok_and(|md| md.file_type().is_symlink()) {
            return Err(Error::Tier(TierError::InvalidPath {
                path: path.into(),
                reason: format!("{} is a symlink; refusing to restore through it", out.display()),
            }));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_rejected() {
        for p in ["", "/etc/passwd", "a/../b", "..", "./a", "a//b", "a/", "a\0b"] {
            assert!(validate_path(p).is_err(), "{p:?} accepted");
        }
        assert!(validate_path(&"a".repeat(4097)).is_err());
        for p in ["a", "a/b/c.txt", "dir with space/ü", "a/..b/c.."] {
            assert!(validate_path(p).is_ok(), "{p:?} rejected");
        }
    }
}
