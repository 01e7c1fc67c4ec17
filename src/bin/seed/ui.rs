//! What `seed` shows: the progress display driven by job events, reports,
//! status, and the human forms of sizes and times.

use std::io::Write;
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use anyhow::Result;
use indicatif::{ProgressBar, ProgressStyle};
use tierseed::{Event, Mode, Phase, Progress, Report, Seeder, SuspendHandle};

use crate::Exit;

pub(crate) static INTERRUPTS: AtomicU32 = AtomicU32::new(0);

pub(crate) fn install_ctrlc(handle: SuspendHandle) {
    let _ = ctrlc::set_handler(move || {
        if INTERRUPTS.fetch_add(1, Ordering::SeqCst) == 0 {
            eprintln!("\nseed: suspending at the next commit point (Ctrl-C again to exit now; that is safe too)");
            handle.suspend();
        } else {
            // Safe: the context only ever moves by atomic, synced commits.
            eprintln!("\nseed: exiting now; resume picks up from the last commit");
            std::process::exit(130);
        }
    });
}

/// Progress display driven by the job's events.
pub(crate) struct Ui {
    pub(crate) bar: Mutex<Option<(Phase, ProgressBar)>>,
    pub(crate) quiet: bool,
    pub(crate) log_events: bool,
    pub(crate) prompts: bool,
    pub(crate) copied: Mutex<(u64, Instant)>,
    /// Verify's progress per target: containers checked, to check.
    pub(crate) verifying: Mutex<std::collections::BTreeMap<usize, (u64, u64)>>,
}

impl Ui {
    pub(crate) fn new(quiet: bool, log_events: bool) -> Ui {
        Ui {
            bar: Mutex::new(None),
            quiet,
            log_events,
            prompts: false,
            copied: Mutex::new((0, Instant::now())),
            verifying: Mutex::new(std::collections::BTreeMap::new()),
        }
    }

    pub(crate) fn bar_for(&self, phase: Phase, len: Option<u64>) -> ProgressBar {
        let mut slot = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((p, b)) = slot.as_ref() {
            // The phase's spinner becomes a bar once the phase reports its
            // total.
            if *p == phase && (len.is_none() || b.length().is_some()) {
                return b.clone();
            }
            if *p == phase {
                b.finish_and_clear();
            } else {
                b.finish();
            }
        }
        let b = match len {
            Some(n) => ProgressBar::new(n).with_style(
                ProgressStyle::with_template("{prefix:>9} [{bar:30}] {percent:>3}% {pos}/{len} {msg}, ETA {eta}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            ),
            None => ProgressBar::new_spinner().with_style(
                ProgressStyle::with_template("{prefix:>9} {spinner} {msg}").unwrap_or_else(|_| ProgressStyle::default_spinner()),
            ),
        };
        if self.quiet {
            b.set_draw_target(indicatif::ProgressDrawTarget::hidden());
        }
        b.set_prefix(phase.name());
        b.enable_steady_tick(Duration::from_millis(200));
        *slot = Some((phase, b.clone()));
        b
    }

    pub(crate) fn event(&self, e: &Event) {
        if self.log_events {
            // One line per event, written at once (stderr is unbuffered).
            // A reader that went away must not stop the job: ignore errors.
            let _ = writeln!(std::io::stderr(), "event {e:?}");
        }
        match e {
            // A terminal prompt may come at the start of Switch: no spinner
            // drawn over it (the bar appears with the first batch).
            Event::PhaseStarted(Phase::Switch) if self.prompts => self.finish(),
            Event::PhaseStarted(p) => {
                self.bar_for(*p, None).set_message("…");
            }
            Event::PhaseFinished(p) => self.bar_for(*p, None).finish_with_message("done"),
            Event::Marked { segments } => self.bar_for(Phase::Mark, None).set_message(format!("{segments} segments marked")),
            Event::ContainerCopied { done, total, bytes, .. } => {
                let mut c = self.copied.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                c.0 += bytes;
                let rate = c.0 as f64 / c.1.elapsed().as_secs_f64().max(0.001);
                let b = self.bar_for(Phase::Copy, Some(*total));
                b.set_position(*done);
                b.set_message(format!("containers, {} read at {}/s", human(c.0), human(rate as u64)));
            }
            Event::ContainerSkipped { done, total, .. } => self.bar_for(Phase::Copy, Some(*total)).set_position(*done),
            Event::Verifying { target_index, containers, total } => {
                // Several targets are walked at once: one bar over all.
                let mut v = self.verifying.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                v.insert(*target_index, (*containers, *total));
                let (done, all) = v.values().fold((0, 0), |(d, a), (x, y)| (d + x, a + y));
                let b = self.bar_for(Phase::Verify, Some(all));
                b.set_length(all);
                b.set_position(done);
                b.set_message(if v.len() > 1 {
                    format!("target containers checked on {} targets", v.len())
                } else {
                    "target containers checked".into()
                });
            }
            Event::TargetDropped { target, reason, .. } => {
                self.finish();
                eprintln!("seed: target {target} dropped, the others go on: {reason}");
            }
            Event::Switched { files, total } => {
                let b = self.bar_for(Phase::Switch, Some(*total));
                b.set_position(*files);
                b.set_message("files");
            }
            _ => {}
        }
    }

    pub(crate) fn finish(&self) {
        if let Some((_, b)) = self.bar.lock().unwrap_or_else(std::sync::PoisonError::into_inner).take() {
            b.finish_and_clear();
        }
    }
}

pub(crate) fn print_report(r: &Report, names: &[(String, String)]) -> Result<()> {
    let c = &r.counters;
    let mode = if r.mode == Mode::Move { "move" } else { "copy" };
    say!("job {} completed: {mode} mode, resumed {} time(s)", r.job_id, r.resumes);
    say!("  files           {} ({})", c.files_selected, human(c.bytes_selected));
    say!("  segments marked {}", c.segments_marked);
    say!("  containers      {} read, {} skipped unread, of {}", c.containers_read, c.containers_skipped, c.containers_total);
    let over = if r.targets.len() > 1 { format!(" over {} targets", r.targets.len()) } else { String::new() };
    say!(
        "  copied          {} segments, {} in {} target containers{over}",
        c.segments_copied,
        human(c.bytes_copied),
        c.target_containers
    );
    say!("  already there   {} segments, {}", c.segments_deduplicated, human(c.bytes_deduplicated));
    if c.segments_adopted > 0 {
        say!("  adopted         {} segments written before a crash, counted as copied", c.segments_adopted);
    }
    say!("  switched        {} files", c.files_switched);
    if r.targets.len() > 1 {
        for (i, t) in r.targets.iter().enumerate() {
            let name = names.iter().find(|(id, _)| *id == t.tier_id).map_or_else(|| t.tier_id.clone(), |(_, p)| p.clone());
            let tc = &t.counters;
            match &t.dropped {
                Some(why) => say!("  target {}      {name}: DROPPED ({why})", i + 1),
                None => say!(
                    "  target {}      {name}: copied {} segments, {} in {} containers; already there {} segments; switched {} files",
                    i + 1,
                    tc.segments_copied,
                    human(tc.bytes_copied),
                    tc.target_containers,
                    tc.segments_deduplicated,
                    tc.files_switched
                ),
            }
        }
    }
    if r.mode == Mode::Move {
        if r.targets.iter().any(|t| t.dropped.is_some()) {
            say!("  removed         nothing from the source: a target was dropped, so not every target has the files");
        }
        say!("  removed         {} files from the source", c.files_removed);
        if c.files_kept > 0 {
            say!("  kept            {} files in the source: they changed after they were selected", c.files_kept);
        }
    }
    Ok(())
}

pub(crate) fn print_progress(p: &Progress) -> Result<()> {
    let c = &p.counters;
    say!("job        {}", p.job_id);
    say!("phase done {}", p.phase_done.map_or("none".into(), |x| x.to_string()));
    say!("next phase {}", p.next_phase);
    say!("cursor     {} of {} containers", p.copy_cursor, c.containers_total);
    say!("copied     {} segments, {}", c.segments_copied, human(c.bytes_copied));
    say!("on target  {} segments, {}", c.segments_deduplicated, human(c.bytes_deduplicated));
    if p.targets.len() > 1 {
        for (i, t) in p.targets.iter().enumerate() {
            let state = t.dropped.as_deref().map_or_else(
                || format!("copied {}, switched {} files", human(t.counters.bytes_copied), t.counters.files_switched),
                |why| format!("DROPPED ({why})"),
            );
            say!("target {}   {}: {state}", i + 1, t.tier_id);
        }
    }
    if let Some(text) = &p.limit {
        // The limit in force by this machine's clock, as the job reads it.
        let now = text.parse::<tierseed::LimitSchedule>().map(|s| {
            use tierseed::Clock;
            s.bytes_per_sec_at(tierseed::LocalClock.now())
        });
        match now {
            Ok(0) => say!("limit      none now (schedule {text})"),
            Ok(b) => say!("limit      {}/s now (schedule {text})", human(b)),
            Err(_) => say!("limit      {text} (unreadable)"),
        }
    }
    say!("done       {:.1}%", p.percent);
    Ok(())
}

/// Whether namespace `path` is at or under `prefix` (whole components; an
/// empty prefix holds everything).
pub(crate) fn under(prefix: &str, path: &str) -> bool {
    prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'))
}

/// Epoch seconds as `YYYY-MM-DD HH:MM` in UTC.
pub(crate) fn utc(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}", rem / 3600, rem % 3600 / 60)
}

/// An entry's kind and permission bits as `ls -l` shows them
/// (`-rwsr-xr-x`, `lrwxrwxrwx`); `?` where the tier recorded no mode (an
/// entry from before namespace version 2, or from a reader).
pub(crate) fn mode_string(attrs: &tierseed::FileAttrs) -> String {
    let link = attrs.kind == tierseed::FileKind::Symlink;
    let mut out = String::from(if link { "l" } else { "-" });
    let Some(mode) = attrs.mode.or(link.then_some(0o777)) else {
        out.push_str("?????????");
        return out;
    };
    // Owner, group, others: read, write, and execute shown with the
    // setuid, setgid or sticky bit that shares its column.
    for (shift, special, set, unset) in [(6, 0o4000, 's', 'S'), (3, 0o2000, 's', 'S'), (0, 0o1000, 't', 'T')] {
        let bits = (mode >> shift) & 7;
        out.push(if bits & 4 != 0 { 'r' } else { '-' });
        out.push(if bits & 2 != 0 { 'w' } else { '-' });
        out.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => set,
            (false, true) => unset,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    out
}

/// `status --watch`: one refreshing line until the job is done.
pub(crate) fn watch_status(state: &Path) -> Result<Exit> {
    let tty = std::io::IsTerminal::is_terminal(&std::io::stdout());
    let mut last: Option<(Instant, u64)> = None;
    loop {
        let p = Seeder::status(state)?;
        let c = &p.counters;
        let now = Instant::now();
        let rate = match last {
            Some((t, b)) if now > t => c.bytes_copied.saturating_sub(b) as f64 / (now - t).as_secs_f64(),
            _ => 0.0,
        };
        last = Some((now, c.bytes_copied));
        let line = format!(
            "{:>5.1}%  phase {:<9} containers {}/{}  copied {} ({}/s)",
            p.percent,
            p.next_phase.name(),
            p.copy_cursor.min(c.containers_total),
            c.containers_total,
            human(c.bytes_copied),
            human(rate as u64)
        );
        let mut out = std::io::stdout().lock();
        if tty {
            write!(out, "\r\x1b[2K{line}")?;
        } else {
            writeln!(out, "{line}")?;
        }
        out.flush()?;
        drop(out);
        if p.next_phase == Phase::Done {
            if tty {
                say!();
            }
            say!("job {} is done", p.job_id);
            return Ok(Exit::Done);
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

pub(crate) fn human(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 { format!("{n} B") } else { format!("{v:.1} {}", UNITS[u]) }
}

/// A name as human output shows it: control characters and backslashes
/// escaped C-style (`\n`, `\t`, `\r`, `\\`, `\xNN`, `\u{NNNN}`), so that
/// one name is always one line and nothing in it moves the terminal.
/// `--json` and `-0` give names exactly.
pub(crate) fn escaped(name: &str) -> std::borrow::Cow<'_, str> {
    use std::fmt::Write as _;
    if !name.chars().any(|c| c.is_control() || c == '\\') {
        return std::borrow::Cow::Borrowed(name);
    }
    let mut out = String::with_capacity(name.len() + 8);
    for c in name.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() && (c as u32) < 0x80 => {
                write!(out, "\\x{:02x}", c as u32).expect("writing to a String cannot fail");
            }
            c if c.is_control() => write!(out, "\\u{{{:04x}}}", c as u32).expect("writing to a String cannot fail"),
            c => out.push(c),
        }
    }
    std::borrow::Cow::Owned(out)
}
