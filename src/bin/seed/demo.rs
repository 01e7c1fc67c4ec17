//! `seed demo`: the whole cycle on generated data.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Instant;

use anyhow::{Result, bail};
use tierseed::synth::SynthTree;
use tierseed::{Event, IndexedTier, Outcome, Seeder, Selection, SuspendHandle, Tier, TierConfig};

use crate::ui::human;

pub(crate) fn demo(dir: Option<PathBuf>, generations: usize, files: usize) -> Result<()> {
    let tmp;
    let root = if let Some(d) = dir {
        std::fs::create_dir_all(&d)?;
        if std::fs::read_dir(&d)?.next().is_some() {
            bail!("{} is not empty; give an empty or new directory", d.display());
        }
        d
    } else {
        tmp = tempfile::tempdir()?;
        tmp.path().to_path_buf()
    };
    let t0 = Instant::now();
    let small = TierConfig { container_size: 1 << 20, ..TierConfig::default() };
    let src = IndexedTier::create(root.join("source"), small)?;
    let dst = IndexedTier::create(root.join("target"), small)?;
    let mut tree = SynthTree::new(42, files, 96 << 10, 3.0);
    for _ in 0..generations {
        let g = tree.next_generation();
        src.ingest_many(g.iter().map(|f| (f.path.as_str(), f.mtime, f.bytes.as_slice())))?;
    }
    let si = src.info()?;
    say!(
        "source: {generations} generations of {files} files: {} logical, {} stored ({:.1}x dedup, {:.1}x compression), {} containers",
        human(si.logical_bytes),
        human(si.stored_bytes),
        si.dedup_ratio(),
        si.compression_ratio(),
        si.containers
    );
    // Seed the latest generation's project and alice's home directories,
    // plus the project files of the first generation.
    let last = generations.saturating_sub(1);
    let selection = Selection::new()
        .prefix(format!("gen-{last:03}/projects"))
        .prefix(format!("gen-{last:03}/home/alice"))
        .prefix("gen-000/projects");
    let state = root.join("state");
    let est = Seeder::estimate(&src, &dst, &selection)?;
    say!("estimate: {} files, would copy {} of {} logical", est.files, human(est.bytes_to_copy), human(est.logical_bytes));

    // Suspend after a third of the snapshot's containers, as an operator's
    // Ctrl-C would.
    let handle_slot: Mutex<Option<SuspendHandle>> = Mutex::new(None);
    let observer = |e: &Event| {
        if let Event::ContainerCopied { done, total, .. } | Event::ContainerSkipped { done, total, .. } = e
            && *done * 3 >= *total
            && let Some(h) = handle_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner).as_ref()
        {
            h.suspend();
        }
    };
    let mut job = Seeder::builder(&src, &dst, &state).selection(selection).observer(observer).build()?;
    *handle_slot.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = Some(job.suspend_handle());
    let first = job.run()?;
    drop(job);
    let suspended_at = match &first {
        Outcome::Suspended(p) => {
            format!("suspended at container {} of {} ({:.0}% done)", p.copy_cursor, p.counters.containers_total, p.percent)
        }
        Outcome::Completed(_) => "completed before the suspension point".into(),
    };
    say!("run 1: {suspended_at}");
    let report = match first {
        Outcome::Completed(r) => r,
        Outcome::Suspended(_) => match Seeder::resume(&state, &src, &dst)?.run()? {
            Outcome::Completed(r) => r,
            Outcome::Suspended(_) => bail!("the resumed job suspended without being asked"),
        },
    };
    say!("run 2: resumed and completed");

    // Restore every seeded file from the target and compare with the source.
    let mut compared = 0u64;
    let mut bytes = 0u64;
    for e in dst.all_files()? {
        let mut a = Vec::new();
        let mut b = Vec::new();
        dst.restore(&e.path, &mut a)?;
        src.restore(&e.path, &mut b)?;
        if a != b {
            bail!("{}: restored bytes differ from the source", e.path);
        }
        compared += 1;
        bytes += a.len() as u64;
    }
    let verify = dst.verify()?;
    if !verify.is_clean() {
        bail!("target verify found problems: {:?}", verify.problems);
    }
    let c = &report.counters;
    let di = dst.info()?;
    say!();
    say!("| what                        | value |");
    say!("|-----------------------------|-------|");
    say!("| files seeded                | {} |", c.files_selected);
    say!("| logical bytes seeded        | {} |", human(c.bytes_selected));
    say!("| segments marked             | {} |", c.segments_marked);
    say!("| source containers read      | {} (incl. re-reads after resume) |", c.containers_read);
    say!("| source containers skipped   | {} (no data read) |", c.containers_skipped);
    say!("| bytes copied                | {} |", human(c.bytes_copied));
    say!("| target stored / logical     | {} / {} |", human(di.stored_bytes), human(di.logical_bytes));
    say!("| resumes                     | {} |", report.resumes);
    say!("| files restored and compared | {compared} ({}), all identical |", human(bytes));
    say!("| target verify               | clean ({} containers) |", verify.containers);
    say!("| elapsed                     | {:.1} s |", t0.elapsed().as_secs_f64());
    Ok(())
}
