//! Which files a job moves.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, JobError, Result, TierError, TierName};
use crate::format::records::SelectionV1;
use crate::tier::{FileEntry, Tier};

/// Which files of the source namespace a job selects.
///
/// A file is selected when it matches any glob, prefix or explicit path
/// (or [`Selection::all`] was set) **and**, if [`Selection::older_than`] was
/// given, its mtime is older than that. A selection with no criterion at all
/// is an error, not a no-op job.
///
/// ```
/// use tierseed::Selection;
/// let s = Selection::new().glob("projects/**/*.iso").prefix("home/alice").older_than_days(30);
/// assert!(!s.is_empty());
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Selection {
    all: bool,
    globs: Vec<String>,
    prefixes: Vec<String>,
    paths: Vec<String>,
    older_than_secs: Option<u64>,
}

impl Selection {
    /// The files of `source` this selection matches now, and their
    /// logical bytes, reading only the namespace (no tree is walked: see
    /// [`Seeder::estimate`](crate::Seeder::estimate) for what a job would
    /// copy). Errors as a job's Select would: an explicit path that is not
    /// there, or nothing matched.
    pub fn resolve_count(&self, source: &dyn Tier) -> Result<(u64, u64)> {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
        let (mut files, mut bytes) = (0u64, 0u64);
        for_each_selected(source, self, now, &mut |e| {
            files += 1;
            bytes += e.size;
            Ok(())
        })?;
        Ok((files, bytes))
    }

    /// An empty selection; add criteria with the builder methods.
    pub fn new() -> Self {
        Self::default()
    }

    /// Every file in the namespace.
    pub fn all() -> Self {
        Selection { all: true, ..Self::default() }
    }

    /// Adds a glob. `*` and `?` do not cross `/`; `**` does.
    #[must_use]
    pub fn glob(mut self, pattern: impl Into<String>) -> Self {
        self.globs.push(pattern.into());
        self
    }

    /// Adds a path prefix, matched by whole components: `home/a` selects
    /// `home/a` and `home/a/x`, not `home/ab`.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefixes.push(prefix.into());
        self
    }

    /// Adds an explicit path; it must exist in the source namespace.
    #[must_use]
    pub fn path(mut self, path: impl Into<String>) -> Self {
        self.paths.push(path.into());
        self
    }

    /// Keeps only files whose mtime is at least `secs` seconds before the
    /// job's creation.
    #[must_use]
    pub fn older_than_secs(mut self, secs: u64) -> Self {
        self.older_than_secs = Some(secs);
        self
    }

    /// Same as [`older_than_secs`](Self::older_than_secs) in days.
    #[must_use]
    pub fn older_than_days(self, days: u64) -> Self {
        self.older_than_secs(days.saturating_mul(86_400))
    }

    /// Alias of [`older_than_secs`](Self::older_than_secs) taking a duration.
    #[must_use]
    pub fn older_than(self, d: std::time::Duration) -> Self {
        self.older_than_secs(d.as_secs())
    }

    /// True when the selection has no criterion at all.
    pub fn is_empty(&self) -> bool {
        !self.all && self.globs.is_empty() && self.prefixes.is_empty() && self.paths.is_empty() && self.older_than_secs.is_none()
    }

    /// The explicit paths, which must exist.
    pub(crate) fn explicit_paths(&self) -> &[String] {
        &self.paths
    }

    /// Compiles the selection for matching, with `now` as the reference
    /// time for `older_than`.
    pub(crate) fn matcher(&self, now: i64) -> Result<Matcher> {
        if self.is_empty() {
            return Err(Error::Job(JobError::EmptySelection));
        }
        let mut b = GlobSetBuilder::new();
        for g in &self.globs {
            let glob = GlobBuilder::new(g)
                .literal_separator(true)
                .build()
                .map_err(|e| Error::InvalidConfig(format!("glob {g:?}: {e}")))?;
            b.add(glob);
        }
        let globs = b.build().map_err(|e| Error::InvalidConfig(format!("globs: {e}")))?;
        let cutoff = self.older_than_secs.map(|s| now.saturating_sub(s.min(i64::MAX as u64) as i64));
        Ok(Matcher { sel: self.clone(), globs, cutoff })
    }
}

impl From<&Selection> for SelectionV1 {
    fn from(s: &Selection) -> Self {
        SelectionV1 {
            all: s.all,
            globs: s.globs.clone(),
            prefixes: s.prefixes.clone(),
            paths: s.paths.clone(),
            older_than_secs: s.older_than_secs,
        }
    }
}

impl From<SelectionV1> for Selection {
    fn from(s: SelectionV1) -> Self {
        Selection { all: s.all, globs: s.globs, prefixes: s.prefixes, paths: s.paths, older_than_secs: s.older_than_secs }
    }
}

/// Resolves `selection` against `source`'s namespace with `now` as the
/// reference time for `older_than`: every explicit path must exist in the
/// namespace (else [`TierError::FileNotFound`]); then every entry is matched.
/// Returns the selected entries and the others, each in path order; an
/// empty selection is [`JobError::EmptySelection`]. The one resolution that
/// both a job's Select phase and [`Seeder::estimate`](crate::Seeder::estimate)
/// use, so that an estimate describes the job it estimates.
pub(crate) fn resolve(source: &dyn Tier, selection: &Selection, now: i64) -> Result<(Vec<FileEntry>, Vec<FileEntry>)> {
    let matcher = selection.matcher(now)?;
    let explicit = selection.explicit_paths().to_vec();
    for (p, e) in explicit.iter().zip(source.file_entries(&explicit)?) {
        if e.is_none() {
            return Err(Error::Tier(TierError::FileNotFound { path: p.clone(), tier: TierName::Source }));
        }
    }
    let (selected, others): (Vec<FileEntry>, Vec<FileEntry>) = source.all_files()?.into_iter().partition(|e| matcher.matches(e));
    if selected.is_empty() {
        return Err(Error::Job(JobError::EmptySelection));
    }
    Ok((selected, others))
}

/// Calls `f` with every file of `source`'s namespace that `selection`
/// matches, in path order, reading the namespace a page at a time (memory
/// holds one page, whatever the namespace's size). Errors as
/// [`resolve`] does: an explicit path that is not there, or nothing
/// matched (checked at the end).
pub(crate) fn for_each_selected(
    source: &dyn Tier,
    selection: &Selection,
    now: i64,
    f: &mut dyn FnMut(FileEntry) -> Result<()>,
) -> Result<()> {
    let matcher = selection.matcher(now)?;
    let explicit = selection.explicit_paths().to_vec();
    for (p, e) in explicit.iter().zip(source.file_entries(&explicit)?) {
        if e.is_none() {
            return Err(Error::Tier(TierError::FileNotFound { path: p.clone(), tier: TierName::Source }));
        }
    }
    let mut any = false;
    let mut after: Option<String> = None;
    loop {
        let page = source.list_files(after.as_deref(), 4096)?;
        let Some(last) = page.last() else { break };
        after = Some(last.path.clone());
        for e in page.into_iter().filter(|e| matcher.matches(e)) {
            any = true;
            f(e)?;
        }
    }
    if any { Ok(()) } else { Err(Error::Job(JobError::EmptySelection)) }
}

pub(crate) struct Matcher {
    sel: Selection,
    globs: GlobSet,
    cutoff: Option<i64>,
}

impl Matcher {
    pub(crate) fn matches(&self, e: &FileEntry) -> bool {
        let s = &self.sel;
        let has_names = s.all || !s.globs.is_empty() || !s.prefixes.is_empty() || !s.paths.is_empty();
        let named = !has_names
            || s.all
            || self.globs.is_match(&e.path)
            || s.prefixes.iter().any(|p| crate::tier::indexed::prefix_matches(p, &e.path))
            || s.paths.iter().any(|p| p == &e.path);
        named && self.cutoff.is_none_or(|c| e.mtime <= c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::fingerprint::Fingerprint;
    use crate::tier::FileAttrs;

    fn f(path: &str, mtime: i64) -> FileEntry {
        FileEntry { path: path.into(), size: 0, mtime, root: Fingerprint([0; 32]), height: 1, attrs: FileAttrs::default() }
    }

    #[test]
    fn criteria() {
        assert!(matches!(Selection::new().matcher(0), Err(Error::Job(JobError::EmptySelection))));
        let m = Selection::new().prefix("home/a").matcher(0).unwrap();
        assert!(m.matches(&f("home/a", 0)) && m.matches(&f("home/a/x", 0)) && !m.matches(&f("home/ab", 0)));
        let m = Selection::new().glob("*.txt").matcher(0).unwrap();
        assert!(m.matches(&f("a.txt", 0)) && !m.matches(&f("d/a.txt", 0)));
        let m = Selection::new().glob("**/*.txt").older_than_secs(100).matcher(1000).unwrap();
        assert!(m.matches(&f("d/a.txt", 900)) && !m.matches(&f("d/a.txt", 901)));
        let m = Selection::new().older_than_secs(10).matcher(100).unwrap();
        assert!(m.matches(&f("x", 90)) && !m.matches(&f("x", 95)));
        assert!(Selection::new().glob("[").matcher(0).is_err());
    }
}
