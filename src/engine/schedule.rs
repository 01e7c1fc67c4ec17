//! Bandwidth limits by time of day: a [`LimitSchedule`] maps the local
//! weekday and time to a limit, and a [`ThrottleHandle`](super::ThrottleHandle)
//! given one switches limits as the clock crosses a window, while the job
//! runs.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::error::{Error, Result};

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
const MIB: f64 = 1_048_576.0;

/// A moment on the wall clock, as a schedule reads it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WallTime {
    /// Day of the week, 0 for Monday to 6 for Sunday.
    pub weekday: u8,
    /// Minutes since midnight, 0 to 1439.
    pub minute: u16,
}

/// Where a schedule reads the time: the machine's local time by default
/// ([`LocalClock`]); tests give their own.
pub trait Clock: Send + Sync + fmt::Debug {
    /// The wall time now.
    fn now(&self) -> WallTime;
}

/// The machine's local time zone (`TZ`, else the system's).
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalClock;

impl Clock for LocalClock {
    fn now(&self) -> WallTime {
        use chrono::{Datelike, Timelike};
        let now = chrono::Local::now();
        WallTime { weekday: now.weekday().num_days_from_monday() as u8, minute: (now.hour() * 60 + now.minute()) as u16 }
    }
}

/// One rule: on these days, in this window, this limit.
#[derive(Clone, Debug, PartialEq)]
struct Rule {
    /// Bit `d` set: the rule holds on weekday `d` (0 = Monday).
    days: u8,
    /// Minutes `[from, to)`; `to <= from` wraps past midnight (the part
    /// after midnight counts for the next day). `None`: all day.
    window: Option<(u16, u16)>,
    /// MiB/s as written (0: no limit).
    mib: f64,
}

impl Rule {
    fn holds(&self, at: WallTime) -> bool {
        let day = |d: u8| self.days & (1 << (d % 7)) != 0;
        match self.window {
            None => day(at.weekday),
            Some((from, to)) if from < to => day(at.weekday) && (from..to).contains(&at.minute),
            // Wraps midnight: the evening part on a listed day, the
            // morning part on the day after one.
            Some((from, to)) => (day(at.weekday) && at.minute >= from) || (day(at.weekday + 6) && at.minute < to),
        }
    }
}

/// Bandwidth limits by weekday and time of day, in MiB/s, for the bytes a
/// job writes to its targets: rules separated by commas, the first rule
/// that holds wins, and no rule holding means no limit. A plain number is
/// that limit at all times.
///
/// ```
/// use tierseed::{LimitSchedule, WallTime};
/// let s: LimitSchedule = "mon-fri 08:00-18:00=20, sat-sun 22:00-06:00=50, *=200".parse()?;
/// let monday_noon = WallTime { weekday: 0, minute: 12 * 60 };
/// assert_eq!(s.bytes_per_sec_at(monday_noon), 20 << 20);
/// let monday_night = WallTime { weekday: 0, minute: 2 * 60 }; // Sunday's window
/// assert_eq!(s.bytes_per_sec_at(monday_night), 50 << 20);
/// assert_eq!(s.to_string(), "mon-fri 08:00-18:00=20, sat-sun 22:00-06:00=50, *=200");
/// # Ok::<(), tierseed::Error>(())
/// ```
///
/// A rule is `DAYS [HH:MM-HH:MM]=MIB`, `HH:MM-HH:MM=MIB` (every day) or
/// `*=MIB`; `DAYS` is a day (`mon` ... `sun`) or a range of them
/// (`fri-mon` wraps the week); a window whose end is not after its start
/// runs past midnight into the next day; `0` means no limit.
#[derive(Clone, Debug, PartialEq)]
pub struct LimitSchedule {
    rules: Vec<Rule>,
}

impl LimitSchedule {
    /// The same limit at all times (`bytes_per_sec`, 0: none).
    pub fn constant(bytes_per_sec: u64) -> LimitSchedule {
        LimitSchedule { rules: vec![Rule { days: 0x7f, window: None, mib: bytes_per_sec as f64 / MIB }] }
    }

    /// The limit in force at `at`, in bytes per second (0: none).
    pub fn bytes_per_sec_at(&self, at: WallTime) -> u64 {
        self.rules.iter().find(|r| r.holds(at)).map_or(0, |r| (r.mib * MIB).round() as u64)
    }

    /// Whether it is one limit at all times.
    pub fn is_constant(&self) -> bool {
        self.rules.first().is_none_or(|r| r.days == 0x7f && r.window.is_none())
    }
}

impl FromStr for LimitSchedule {
    type Err = Error;

    fn from_str(text: &str) -> Result<LimitSchedule> {
        let bad = |why: String| Error::InvalidConfig(format!("limit {text:?}: {why}"));
        if let Ok(mib) = text.trim().parse::<f64>() {
            return Ok(LimitSchedule { rules: vec![Rule { days: 0x7f, window: None, mib: rate(mib).map_err(bad)? }] });
        }
        let mut rules = Vec::new();
        for part in text.split(',').map(str::trim) {
            let (selector, mib) = part.split_once('=').ok_or_else(|| bad(format!("rule {part:?} has no `=MIB`")))?;
            let mib = rate(mib.trim().parse::<f64>().map_err(|_| bad(format!("rule {part:?}: {mib:?} is not a number")))?)
                .map_err(bad)?;
            rules.push(rule(selector.trim(), mib).map_err(|why| bad(format!("rule {part:?}: {why}")))?);
        }
        Ok(LimitSchedule { rules })
    }
}

fn rate(mib: f64) -> std::result::Result<f64, String> {
    if mib.is_finite() && mib >= 0.0 { Ok(mib) } else { Err(format!("{mib} is not a rate in MiB/s (0 or more)")) }
}

fn rule(selector: &str, mib: f64) -> std::result::Result<Rule, String> {
    if selector == "*" {
        return Ok(Rule { days: 0x7f, window: None, mib });
    }
    let (days, window) = match selector.split_once(' ') {
        Some((d, w)) => (Some(d), Some(w.trim())),
        None if selector.contains(':') => (None, Some(selector)),
        None => (Some(selector), None),
    };
    let days = match days {
        None => 0x7f,
        Some(d) => {
            let day =
                |n: &str| DAYS.iter().position(|x| x.eq_ignore_ascii_case(n)).ok_or(format!("{n:?} is not a day (mon ... sun)"));
            let (a, b) = match d.split_once('-') {
                Some((a, b)) => (day(a)?, day(b)?),
                None => (day(d)?, day(d)?),
            };
            let mut bits = 0u8;
            let mut i = a;
            loop {
                bits |= 1 << i;
                if i == b {
                    break;
                }
                i = (i + 1) % 7;
            }
            bits
        }
    };
    let window = match window {
        None => None,
        Some(w) => {
            let (from, to) = w.split_once('-').ok_or(format!("{w:?} is not a window HH:MM-HH:MM"))?;
            let (from, to) = (minute(from)?, minute(to)?);
            if from == to {
                return Err(format!("{w:?} is an empty window"));
            }
            Some((from, to))
        }
    };
    Ok(Rule { days, window, mib })
}

fn minute(t: &str) -> std::result::Result<u16, String> {
    let err = || format!("{t:?} is not a time HH:MM");
    let (h, m) = t.split_once(':').ok_or_else(err)?;
    if h.is_empty() || h.len() > 2 || m.len() != 2 || !h.bytes().chain(m.bytes()).all(|b| b.is_ascii_digit()) {
        return Err(err());
    }
    let (h, m): (u16, u16) = (h.parse().map_err(|_| err())?, m.parse().map_err(|_| err())?);
    match (h, m) {
        // Midnight at the end of a day: a window ending at 24:00 wraps
        // to nothing past midnight.
        (24, 0) => Ok(0),
        (h, m) if h < 24 && m < 60 => Ok(h * 60 + m),
        _ => Err(err()),
    }
}

impl fmt::Display for LimitSchedule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, r) in self.rules.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            if r.days == 0x7f && r.window.is_none() {
                if self.rules.len() == 1 {
                    return write!(f, "{}", r.mib);
                }
                f.write_str("*")?;
            } else {
                if r.days != 0x7f {
                    write_days(f, r.days)?;
                }
                if let Some((from, to)) = r.window {
                    if r.days != 0x7f {
                        f.write_str(" ")?;
                    }
                    write!(f, "{:02}:{:02}-{:02}:{:02}", from / 60, from % 60, to / 60, to % 60)?;
                }
            }
            write!(f, "={}", r.mib)?;
        }
        Ok(())
    }
}

/// Days as they were given: one day, or a range (found as the run of set
/// bits, which may wrap the week); other sets are spelled day by day.
fn write_days(f: &mut fmt::Formatter<'_>, days: u8) -> fmt::Result {
    let set = |d: usize| days & (1 << (d % 7)) != 0;
    // The first set day whose predecessor is unset starts the run.
    if let Some(start) = (0..7).find(|d| set(*d) && !set(d + 6)) {
        let len = (0..7).take_while(|k| set(start + k)).count();
        if (0..7).filter(|d| set(*d)).count() == len {
            let end = (start + len - 1) % 7;
            return if len == 1 { f.write_str(DAYS[start]) } else { write!(f, "{}-{}", DAYS[start], DAYS[end]) };
        }
    }
    unreachable!("a parsed rule's days are one day or one range")
}

/// A schedule and the clock it reads, held by a throttle.
#[derive(Clone, Debug)]
pub(crate) struct Scheduled {
    pub(crate) schedule: LimitSchedule,
    pub(crate) clock: Arc<dyn Clock>,
}

#[cfg(test)]
mod tests;
