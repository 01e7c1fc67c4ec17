//! Jobs as files: everything a run takes, in TOML, so operators can keep
//! policies under version control ("every night, move files older than 30
//! days from the active tier to the archive tier, at most 200 MiB/s, full
//! verify").
//!
//! ```toml
//! source = "/tiers/active"
//! targets = ["/tiers/archive"]    # or several, seeded in one pass
//! on_target_failure = "drop"      # optional: fail (default) or drop
//! state = "/var/lib/seed/nightly"
//! mode = "move"
//! verify = "full"
//! limit_mib_per_sec = 200.0   # or by time of day (not both):
//! # limit = "mon-fri 08:00-18:00=20, *=200"
//! phf = "compact"        # optional: boomphf (default) or compact
//!
//! [selection]
//! prefix = ["projects"]
//! older_than = "30d"
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::selection::Selection;
use crate::engine::{LimitSchedule, Mode, VerifyLevel};
use crate::error::{Error, JobError, Result};

/// A job as kept in a file. Unknown fields are an error, so a misspelt
/// key is never silently ignored.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The source tier directory.
    pub source: PathBuf,
    /// The target tiers (one or more, seeded in one pass).
    pub targets: Vec<PathBuf>,
    /// `"fail"` (default) or `"drop"`: what a failing target does to the job.
    #[serde(default)]
    pub on_target_failure: crate::engine::TargetFailure,
    /// The job's state directory.
    pub state: PathBuf,
    /// Which files.
    pub selection: SelectionSpec,
    /// `"copy"` (default) or `"move"`.
    #[serde(default)]
    pub mode: ModeSpec,
    /// `"metadata"` (default) or `"full"`.
    #[serde(default)]
    pub verify: VerifySpec,
    /// Bandwidth limit on target writes, MiB/s (none by default).
    #[serde(default)]
    pub limit_mib_per_sec: Option<f64>,
    /// Bandwidth limit on target writes by local time of day, as a
    /// [`LimitSchedule`] (e.g. `"mon-fri 08:00-18:00=20, *=200"`); not with
    /// `limit_mib_per_sec`.
    #[serde(default)]
    pub limit: Option<String>,
    /// Worker threads (default: all cores).
    #[serde(default)]
    pub threads: Option<usize>,
    /// `"boomphf"` (default) or `"compact"`: the PHF built over the source
    /// index.
    #[serde(default)]
    pub phf: PhfSpec,
}

/// A PHF kind, as spelt in a job file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PhfSpec {
    /// boomphf.
    #[default]
    Boomphf,
    /// The compact function.
    Compact,
}

impl From<PhfSpec> for crate::mark::phf::PhfKind {
    fn from(p: PhfSpec) -> Self {
        match p {
            PhfSpec::Boomphf => crate::mark::phf::PhfKind::Boomphf,
            PhfSpec::Compact => crate::mark::phf::PhfKind::Compact,
        }
    }
}

/// The selection part of a [`JobSpec`], as in the CLI's flags.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SelectionSpec {
    /// Every file.
    #[serde(default)]
    pub all: bool,
    /// Globs (`*` within a directory, `**` across).
    #[serde(default)]
    pub include: Vec<String>,
    /// Path prefixes (whole components).
    #[serde(default)]
    pub prefix: Vec<String>,
    /// Explicit paths.
    #[serde(default)]
    pub path: Vec<String>,
    /// Only files older than this: `30d`, `12h`, `45m`, `10s`.
    #[serde(default)]
    pub older_than: Option<String>,
}

impl SelectionSpec {
    /// The [`Selection`] these criteria make; an empty one is
    /// [`JobError::EmptySelection`], a bad glob or age a clear error.
    pub fn to_selection(&self) -> Result<Selection> {
        let mut sel = if self.all { Selection::all() } else { Selection::new() };
        for g in &self.include {
            sel = sel.glob(g);
        }
        for p in &self.prefix {
            sel = sel.prefix(p);
        }
        for p in &self.path {
            sel = sel.path(p);
        }
        if let Some(age) = &self.older_than {
            sel = sel.older_than_secs(parse_age(age)?);
        }
        if sel.is_empty() {
            return Err(Error::Job(JobError::EmptySelection));
        }
        sel.matcher(0)?;
        Ok(sel)
    }
}

/// Copy or move, as spelt in a job file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModeSpec {
    /// Keep the source namespace.
    #[default]
    Copy,
    /// Remove switched files from the source.
    Move,
}

/// A verify level, as spelt in a job file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum VerifySpec {
    /// Recipes, index and container tables.
    #[default]
    Metadata,
    /// Also every segment's bytes.
    Full,
}

impl JobSpec {
    /// Reads and checks the job file at `path`. Errors name the file, the
    /// line and the field.
    pub fn load(path: impl AsRef<Path>) -> Result<JobSpec> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        Self::parse(&text, path)
    }

    /// Parses job-file text; `file` names it in errors.
    pub fn parse(text: &str, file: &Path) -> Result<JobSpec> {
        let spec: JobSpec = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(0, |s| text[..s.start.min(text.len())].matches('\n').count() + 1);
            Error::Job(JobError::JobFile { file: file.to_path_buf(), line, message: e.message().to_string() })
        })?;
        spec.check(file)?;
        Ok(spec)
    }

    fn check(&self, file: &Path) -> Result<()> {
        let bad = |message: String| Err(Error::Job(JobError::JobFile { file: file.to_path_buf(), line: 0, message }));
        if self.targets.is_empty() {
            return bad("targets: give at least one target tier".into());
        }
        for (i, t) in self.targets.iter().enumerate() {
            if self.targets[..i].contains(t) {
                return bad(format!("targets: {} is given twice", t.display()));
            }
            if *t == self.source {
                return bad(format!("targets: {} is the source", t.display()));
            }
        }
        if let Some(l) = self.limit_mib_per_sec
            && !(l.is_finite() && l > 0.0)
        {
            return bad(format!("limit_mib_per_sec: {l} is not a positive number"));
        }
        if self.limit.is_some() && self.limit_mib_per_sec.is_some() {
            return bad("limit and limit_mib_per_sec: give one of them".into());
        }
        if let Some(l) = &self.limit
            && let Err(e) = l.parse::<LimitSchedule>()
        {
            return bad(format!("limit: {e}"));
        }
        if self.threads == Some(0) {
            return bad("threads: must be at least 1".into());
        }
        self.selection()
            .map(drop)
            .map_err(|e| Error::Job(JobError::JobFile { file: file.to_path_buf(), line: 0, message: format!("selection: {e}") }))
    }

    /// The selection.
    pub fn selection(&self) -> Result<Selection> {
        self.selection.to_selection()
    }

    /// The mode.
    pub fn mode(&self) -> Mode {
        match self.mode {
            ModeSpec::Copy => Mode::Copy,
            ModeSpec::Move => Mode::Move,
        }
    }

    /// The verify level.
    pub fn verify_level(&self) -> VerifyLevel {
        match self.verify {
            VerifySpec::Metadata => VerifyLevel::Metadata,
            VerifySpec::Full => VerifyLevel::Full,
        }
    }

    /// The bandwidth limit in bytes per second (0: none), of
    /// `limit_mib_per_sec`; see [`limit_schedule`](Self::limit_schedule)
    /// for either field.
    pub fn limit_bytes_per_sec(&self) -> u64 {
        self.limit_mib_per_sec.map_or(0, |l| (l * 1_048_576.0).round().max(1.0) as u64)
    }

    /// The bandwidth limit, from `limit` or `limit_mib_per_sec` (`None`:
    /// no limit).
    pub fn limit_schedule(&self) -> Result<Option<LimitSchedule>> {
        match (&self.limit, self.limit_mib_per_sec) {
            (Some(text), _) => text.parse().map(Some),
            (None, Some(_)) => Ok(Some(LimitSchedule::constant(self.limit_bytes_per_sec()))),
            (None, None) => Ok(None),
        }
    }
}

/// `30d`, `12h`, `45m`, `10s` as seconds; a number without a unit is refused.
pub fn parse_age(s: &str) -> Result<u64> {
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 =
        num.parse().map_err(|_| Error::InvalidConfig(format!("age {s:?}: expected a number followed by d, h, m or s")))?;
    let mult = match unit {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        // A bare number used to mean seconds: "30" meant to be 30 days
        // selected nearly everything. The unit is required.
        "" => {
            return Err(Error::InvalidConfig(format!(
                "age {s:?} has no unit: write {n}d (days), {n}h (hours), {n}m (minutes) or {n}s (seconds)"
            )));
        }
        _ => return Err(Error::InvalidConfig(format!("age {s:?}: unit must be d, h, m or s (e.g. 30d)"))),
    };
    Ok(n.saturating_mul(mult))
}
