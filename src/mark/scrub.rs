//! [`IndexedTier::verify`]: the tier scrubs its containers and checks its
//! index (`scrub_containers`, in the tier layer); then every namespace
//! entry's tree is walked here, with the one tree walk, the namespace
//! streamed a window at a time.

use std::collections::BTreeMap;

use super::walk::{Item, Listed, RecipeSet, Side, TableCache, ToExpand, walk};
use crate::error::{Error, Result};
use crate::format::fingerprint::{ContainerId, Fingerprint};
use crate::format::tree::Recipe;
use crate::tier::Tier;
use crate::tier::indexed::{IndexedTier, VerifyReport};

impl IndexedTier {
    /// Scrubs the whole tier: every container's checksums and every
    /// segment's fingerprint; every index entry resolves to a container
    /// that holds it; every namespace entry's tree is complete.
    ///
    /// A writable handle retires what it finds rotten (see
    /// [`TargetTier::retire_segments`](crate::TargetTier::retire_segments)):
    /// the rot is reported once, as a problem; afterwards the bad copy is
    /// counted in [`VerifyReport::retired`] and the files that needed it
    /// are reported as missing a segment until a job copies it again.
    pub fn verify(&self) -> Result<VerifyReport> {
        let mut report = VerifyReport::default();
        self.scrub_containers(&mut report)?;
        // The namespace: every tree complete (recipes read and verified,
        // leaves present in the index). Shared subtrees are walked once.
        let mut side = ScrubSide { tier: self, tables: TableCache::new(self), first_problem: BTreeMap::new() };
        let mut files = Listed::new(self);
        walk(&mut files, &mut RecipeSet::default(), &mut side, &mut |_| {})?;
        report.files = files.listed();
        // Problems are kept by file index; their paths come from one more
        // listing, and only when there are problems.
        if !side.first_problem.is_empty() {
            let indices: Vec<u64> = side.first_problem.keys().copied().collect();
            for (name, problem) in files.names(&indices)?.into_iter().zip(side.first_problem.into_values()) {
                report.problem(format!("file {name:?}: {problem}"));
            }
        }
        Ok(report)
    }
}

/// `IndexedTier::verify`'s side of the tree walk: every recipe read back and
/// hashed, every leaf in the index; the first problem of each file (by its
/// index in the namespace) is kept.
struct ScrubSide<'a> {
    tier: &'a IndexedTier,
    tables: TableCache<'a>,
    first_problem: BTreeMap<u64, String>,
}

impl ScrubSide<'_> {
    fn problem(&mut self, file: u64, what: impl FnOnce() -> String) {
        if self.first_problem.len() < VerifyReport::MAX_PROBLEMS {
            self.first_problem.entry(file).or_insert_with(what);
        }
    }
}

impl Side for ScrubSide<'_> {
    fn place(&mut self, items: &[Item]) -> Result<Vec<Option<ContainerId>>> {
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        self.tier.locate(&fps)
    }

    fn first(&mut self, item: &Item, _key: u64, place: Option<ContainerId>) -> Result<()> {
        if place.is_none() {
            // The file's path is put before it when the problems are listed.
            let dir = self.tier.dir();
            self.problem(item.2, || format!("segment {} is missing from the {} index", item.0, dir.display()));
        }
        Ok(())
    }

    fn unknown(&mut self, _item: &Item) -> Result<()> {
        Ok(())
    }

    fn recipes(&mut self, level: u8, cid: Option<ContainerId>, items: &[ToExpand]) -> Result<Vec<Option<Recipe>>> {
        // A recipe the index does not place was reported when reached.
        let Some(cid) = cid else { return Ok(items.iter().map(|_| None).collect()) };
        let fps: Vec<Fingerprint> = items.iter().map(|i| i.0).collect();
        let read = match self.tables.read(cid, &fps) {
            Ok(r) => r,
            Err(e) => {
                let reason = e.to_string();
                fps.iter().map(|_| Err(Error::corrupt_record(format!("container {cid}"), reason.clone()))).collect()
            }
        };
        let mut out = Vec::with_capacity(items.len());
        for (r, &(fp, file, _)) in read.into_iter().zip(items) {
            match r.and_then(|b| Recipe::decode(&b, &fp, level)) {
                Ok(recipe) => out.push(Some(recipe)),
                Err(e) => {
                    self.problem(file, || e.to_string());
                    out.push(None);
                }
            }
        }
        Ok(out)
    }
}
