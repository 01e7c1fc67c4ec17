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

    /// A clock the test moves.
    #[derive(Debug)]
    struct TestClock(std::sync::Mutex<crate::engine::WallTime>);

    impl crate::engine::Clock for TestClock {
        fn now(&self) -> crate::engine::WallTime {
            *self.0.lock().unwrap()
        }
    }

    /// A schedule switches the limit as its clock crosses a window, with
    /// no restart, and the switch is no occasion for a burst: the pace
    /// starts over at the new limit.
    #[test]
    fn a_schedule_switches_limits_as_the_clock_crosses_a_window() {
        let mib = 1u64 << 20;
        let clock =
            std::sync::Arc::new(TestClock(std::sync::Mutex::new(crate::engine::WallTime { weekday: 0, minute: 7 * 60 + 59 })));
        let limit = ThrottleHandle::default();
        let schedule = "mon-fri 08:00-18:00=1, *=100".parse().unwrap();
        limit.set_schedule_with_clock(schedule, clock.clone());
        assert_eq!(limit.bytes_per_sec(), 100 * mib, "07:59 on a Monday: off hours");
        let mut pace = Pace::new(limit.clone());
        let t0 = Instant::now();
        // 50 MiB in half a second fit 100 MiB/s.
        let waited: Duration = (0..50).map(|i| pace.wait(mib, t0 + Duration::from_millis(10 * i))).sum();
        assert!(waited < Duration::from_millis(50), "off hours waited {waited:?}");
        // 08:00: office hours, 1 MiB/s, picked up at the next write.
        clock.0.lock().unwrap().minute = 8 * 60;
        assert_eq!(limit.bytes_per_sec(), mib);
        let t1 = t0 + Duration::from_millis(500);
        assert_eq!(pace.wait(mib, t1), Duration::ZERO, "the first write at the new limit");
        let next = pace.wait(mib, t1);
        assert!(next >= Duration::from_millis(990), "the second MiB at 1 MiB/s waited only {next:?}");
        // An operator's override holds until the clock enters another window.
        limit.set_bytes_per_sec(5 * mib);
        assert_eq!(limit.bytes_per_sec(), 5 * mib);
        clock.0.lock().unwrap().minute = 18 * 60;
        assert_eq!(limit.bytes_per_sec(), 100 * mib, "18:00: off hours again");
    }
}
