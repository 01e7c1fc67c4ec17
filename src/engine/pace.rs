//! Pacing Copy's writes to a bandwidth limit that may change while the
//! job runs (`ThrottleHandle`), without bursting after a stall.

use super::ThrottleHandle;

/// Paces writes to a bandwidth limit (bytes per second, 0 for none) that
/// may change while the job runs: it sleeps before a write until the bytes
/// written since the limit was last set fit the limit.
pub(super) struct Pace {
    limit: ThrottleHandle,
    epoch: std::time::Instant,
    sent: u64,
    at_limit: u64,
}

impl Pace {
    pub(super) fn new(limit: ThrottleHandle) -> Self {
        Pace { limit, epoch: std::time::Instant::now(), sent: 0, at_limit: 0 }
    }

    pub(super) fn before(&mut self, bytes: u64) {
        let wait = self.wait(bytes, std::time::Instant::now());
        if !wait.is_zero() {
            std::thread::sleep(wait);
        }
    }

    /// How long to wait at `now` before writing `bytes`; counts them.
    /// Credit for time spent not writing is capped at [`PACE_CREDIT`]: a
    /// job stopped for a while (SIGSTOP, a stalled read) must not write at
    /// full speed until it has "caught up" (the bug "throttle bursts after
    /// a stall": 40 MiB in one second at `--limit 2` after 20 s stopped).
    pub(super) fn wait(&mut self, bytes: u64, now: std::time::Instant) -> std::time::Duration {
        let limit = self.limit.bytes_per_sec();
        if limit != self.at_limit {
            self.epoch = now;
            self.sent = 0;
            self.at_limit = limit;
        }
        let mut wait = std::time::Duration::ZERO;
        if limit > 0 {
            let due = self.epoch + std::time::Duration::from_secs_f64(self.sent as f64 / limit as f64);
            if now > due + PACE_CREDIT {
                self.epoch = now.checked_sub(PACE_CREDIT).unwrap_or(now);
                self.sent = 0;
            } else if due > now {
                wait = due - now;
            }
        }
        self.sent += bytes;
        wait
    }
}

/// The most idle time a paced job may make up for at full speed.
const PACE_CREDIT: std::time::Duration = std::time::Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::{Pace, ThrottleHandle};

    #[test]
    fn throttle_bursts_after_a_stall_are_bounded_to_one_second_of_the_limit() {
        let mib = 1u64 << 20;
        let limit = ThrottleHandle::default();
        limit.set_bytes_per_sec(2 * mib);
        let mut pace = Pace::new(limit);
        let t0 = Instant::now();
        assert_eq!(pace.wait(mib, t0), Duration::ZERO);
        // Stopped for 20 s, then 40 MiB offered in 1 MiB writes at once:
        // only about 1 s of the limit (2 MiB, plus the write in hand) may
        // go without waiting, and the rest waits its turn.
        let later = t0 + Duration::from_secs(20);
        let free = (0..40).map(|_| pace.wait(mib, later)).filter(Duration::is_zero).count();
        assert!(free <= 3, "{free} MiB written without waiting after the stall");
        let last = pace.wait(mib, later);
        assert!(last >= Duration::from_secs(18), "the 41st MiB after the stall waits only {last:?}");
    }
}
