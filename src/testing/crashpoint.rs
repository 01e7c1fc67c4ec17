//! Deterministic crash points for the reliability tests.
//!
//! With the `crash-points` cargo feature, `TIERSEED_CRASH_AT=NAME:N` makes
//! the process abort (no unwinding, no destructors, like a power cut seen
//! from user space) on the N-th arrival at the point named NAME, and
//! `TIERSEED_HOLD_AT=NAME:N` makes it stop there instead, printing
//! `tierseed: held at NAME (N)` to stderr, until the file named by
//! `TIERSEED_HOLD_UNTIL` exists: tests act on a job known to be mid-phase
//! instead of racing a throttled one. Without the feature, `hit` compiles
//! to nothing, so release builds cannot crash or stall on purpose.

/// Every named window in the commit protocol, for tests to iterate over
/// (exported with the `crash-points` feature, the only one that makes
/// them do anything).
#[cfg(feature = "crash-points")]
pub const CRASH_POINTS: &[&str] = &[
    "tier.create_before_rename",
    "tier.sealed_not_indexed",
    "copy.sealed_before_commit",
    "copy.after_commit",
    "phase.before_commit",
    "phase.after_commit",
    "switch.gate",
    "switch.between_batches",
    "switch.before_source_removal",
];

#[cfg(feature = "crash-points")]
pub(crate) fn hit(name: &str) {
    use std::sync::Mutex;
    static COUNTS: Mutex<Vec<(String, u64)>> = Mutex::new(Vec::new());
    let crash = std::env::var("TIERSEED_CRASH_AT").ok().and_then(|s| aimed_at(&s, name));
    let hold = std::env::var("TIERSEED_HOLD_AT").ok().and_then(|s| aimed_at(&s, name));
    if crash.is_none() && hold.is_none() {
        return;
    }
    let count = {
        let mut counts = COUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some((_, c)) = counts.iter_mut().find(|(p, _)| p == name) {
            *c += 1;
            *c
        } else {
            counts.push((name.to_string(), 1));
            1
        }
    };
    if crash == Some(count) {
        eprintln!("tierseed: crash point {name} reached ({count}), aborting");
        std::process::abort();
    }
    if hold == Some(count) {
        hold_here(name, count);
    }
}

/// The N of a `NAME:N` spec aimed at the point `name`.
#[cfg(feature = "crash-points")]
fn aimed_at(spec: &str, name: &str) -> Option<u64> {
    let (point, n) = spec.rsplit_once(':')?;
    if point == name { n.parse().ok() } else { None }
}

/// Blocks the calling thread at a point, with everything the process holds
/// (tier locks, open files) still held, so that a test can act on a job
/// that is known to be mid-phase instead of racing a throttled one. The
/// line on stderr says the hold began; `TIERSEED_HOLD_UNTIL=PATH` releases
/// it once PATH exists (without it the hold lasts until the process is
/// killed).
#[cfg(feature = "crash-points")]
fn hold_here(name: &str, count: u64) {
    use std::io::Write;
    let until = std::env::var_os("TIERSEED_HOLD_UNTIL").map(std::path::PathBuf::from);
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "tierseed: held at {name} ({count})");
    let _ = err.flush();
    drop(err);
    loop {
        if until.as_ref().is_some_and(|p| p.exists()) {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

#[cfg(not(feature = "crash-points"))]
#[inline(always)]
pub(crate) fn hit(_name: &str) {}

/// The durability steps of the commit path, recorded per thread when the
/// `crash-points` feature is on, so a test can assert their order: a
/// container's file fsync, then its rename, then its directory's fsync,
/// then its index batch, then the context commit that counts it. SIGKILL
/// keeps the page cache, so kill tests alone would pass with every fsync
/// removed; this trace would not.
#[cfg(feature = "crash-points")]
pub mod trace {
    use std::cell::RefCell;
    use std::sync::{Arc, Mutex};

    /// One trace, shared by the thread that started it and the threads a
    /// job starts for it (Copy's writer).
    pub(crate) type Shared = Arc<Mutex<Vec<String>>>;

    thread_local! {
        static TRACE: RefCell<Option<Shared>> = const { RefCell::new(None) };
    }

    /// Starts recording this thread's durability steps (clearing any), and
    /// those of the threads its job starts.
    pub fn start() {
        TRACE.with(|t| *t.borrow_mut() = Some(Arc::new(Mutex::new(Vec::new()))));
    }

    /// Stops recording and returns the steps, in order. Each is
    /// `"<step> <what>"`, e.g. `"fsync 0000000000000003.tsc"`.
    pub fn take() -> Vec<String> {
        TRACE
            .with(|t| t.borrow_mut().take())
            .map(|shared| std::mem::take(&mut *shared.lock().unwrap_or_else(std::sync::PoisonError::into_inner)))
            .unwrap_or_default()
    }

    /// This thread's trace, to hand to a thread it starts.
    pub(crate) fn current() -> Option<Shared> {
        TRACE.with(|t| t.borrow().clone())
    }

    /// Records into `shared` from this thread too.
    pub(crate) fn adopt(shared: Option<Shared>) {
        TRACE.with(|t| *t.borrow_mut() = shared);
    }

    pub(crate) fn step(step: &str, what: &str) {
        TRACE.with(|t| {
            if let Some(v) = t.borrow().as_ref() {
                v.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(format!("{step} {what}"));
            }
        });
    }
}

/// Records one durability step (see `trace`); nothing without the feature.
#[inline(always)]
pub(crate) fn step(_step: &str, _what: &str) {
    #[cfg(feature = "crash-points")]
    trace::step(_step, _what);
}

/// Carries the calling thread's durability trace into a thread it starts:
/// call `inherit()` before spawning and `.install()` inside the thread.
pub(crate) struct Inherited(#[cfg(feature = "crash-points")] Option<trace::Shared>);

pub(crate) fn inherit() -> Inherited {
    Inherited(
        #[cfg(feature = "crash-points")]
        trace::current(),
    )
}

impl Inherited {
    #[cfg_attr(not(feature = "crash-points"), allow(clippy::unused_self))]
    pub(crate) fn install(self) {
        #[cfg(feature = "crash-points")]
        trace::adopt(self.0);
    }
}
