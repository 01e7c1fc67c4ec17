//! Deterministic crash points for the reliability tests.
//!
//! With the `crash-points` cargo feature, `TIERSEED_CRASH_AT=NAME:N` makes
//! the process abort (no unwinding, no destructors, like a power cut seen
//! from user space) on the N-th arrival at the point named NAME. Without
//! the feature, `hit` compiles to nothing, so release builds cannot crash
//! on purpose.

/// Every named window in the commit protocol, for tests to iterate over.
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
    let Ok(spec) = std::env::var("TIERSEED_CRASH_AT") else { return };
    let Some((point, n)) = spec.rsplit_once(':') else { return };
    if point != name {
        return;
    }
    let Ok(n) = n.parse::<u64>() else { return };
    let mut counts = COUNTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let count = if let Some((_, c)) = counts.iter_mut().find(|(p, _)| p == name) {
        *c += 1;
        *c
    } else {
        counts.push((name.to_string(), 1));
        1
    };
    if count == n {
        eprintln!("tierseed: crash point {name} reached ({n}), aborting");
        std::process::abort();
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
