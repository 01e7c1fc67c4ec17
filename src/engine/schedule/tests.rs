use super::{LimitSchedule, WallTime};

const MIB: u64 = 1 << 20;

fn at(weekday: u8, hh: u16, mm: u16) -> WallTime {
    WallTime { weekday, minute: hh * 60 + mm }
}

#[test]
fn a_plain_number_is_one_limit_at_all_times() {
    let s: LimitSchedule = "2.5".parse().unwrap();
    assert!(s.is_constant());
    for d in 0..7 {
        assert_eq!(s.bytes_per_sec_at(at(d, 3, 0)), (2.5 * MIB as f64) as u64);
    }
    assert_eq!(s.to_string(), "2.5");
    assert_eq!(LimitSchedule::constant(0).bytes_per_sec_at(at(0, 0, 0)), 0);
}

#[test]
fn the_first_rule_that_holds_wins_and_none_means_no_limit() {
    let s: LimitSchedule = "mon-fri 08:00-18:00=20, sat=5".parse().unwrap();
    assert!(!s.is_constant());
    assert_eq!(s.bytes_per_sec_at(at(0, 8, 0)), 20 * MIB, "the window's first minute");
    assert_eq!(s.bytes_per_sec_at(at(4, 17, 59)), 20 * MIB, "its last minute, on Friday");
    assert_eq!(s.bytes_per_sec_at(at(4, 18, 0)), 0, "its end is not in it; no rule: no limit");
    assert_eq!(s.bytes_per_sec_at(at(5, 12, 0)), 5 * MIB, "Saturday, all day");
    assert_eq!(s.bytes_per_sec_at(at(6, 12, 0)), 0, "Sunday: no rule");
    let s: LimitSchedule = "08:00-18:00=20, *=200".parse().unwrap();
    assert_eq!(s.bytes_per_sec_at(at(6, 9, 0)), 20 * MIB, "a window alone holds every day");
    assert_eq!(s.bytes_per_sec_at(at(6, 19, 0)), 200 * MIB);
}

#[test]
fn windows_past_midnight_and_day_ranges_past_sunday_wrap() {
    let s: LimitSchedule = "fri-mon 22:00-06:00=1, *=0".parse().unwrap();
    assert_eq!(s.bytes_per_sec_at(at(4, 23, 0)), MIB, "Friday evening");
    assert_eq!(s.bytes_per_sec_at(at(5, 3, 0)), MIB, "Saturday morning: Friday's window");
    assert_eq!(s.bytes_per_sec_at(at(0, 5, 59)), MIB, "Monday morning: Sunday's window");
    assert_eq!(s.bytes_per_sec_at(at(1, 5, 0)), MIB, "Tuesday morning: Monday's window");
    assert_eq!(s.bytes_per_sec_at(at(1, 23, 0)), 0, "Tuesday evening: not listed");
    assert_eq!(s.bytes_per_sec_at(at(2, 5, 0)), 0, "Wednesday morning: Tuesday is not listed");
    let s: LimitSchedule = "18:00-24:00=3".parse().unwrap();
    assert_eq!(s.bytes_per_sec_at(at(2, 23, 59)), 3 * MIB);
    assert_eq!(s.bytes_per_sec_at(at(3, 0, 0)), 0, "24:00 ends the day");
}

#[test]
fn a_schedule_prints_as_it_parses() {
    for text in ["mon-fri 08:00-18:00=20, *=200", "sun 22:00-06:00=1.5, sat=0, 07:30-08:00=9", "fri-tue=4"] {
        let s: LimitSchedule = text.parse().unwrap();
        assert_eq!(s.to_string(), text);
        assert_eq!(s.to_string().parse::<LimitSchedule>().unwrap(), s);
    }
}

#[test]
fn malformed_schedules_are_refused_with_the_rule_named() {
    for (text, says) in [
        ("mon-fri 08:00-18:00", "no `=MIB`"),
        ("mon-fri 8-18=20", "not a time HH:MM"),
        ("mon-fri 08:00=20", "not a window"),
        ("funday=20", "not a day"),
        ("mon 25:00-26:00=1", "not a time"),
        ("mon 08:00-08:00=1", "empty window"),
        ("mon 08:7-09:00=1", "not a time"),
        ("*=-1", "not a rate"),
        ("*=fast", "not a number"),
        ("-3", "not a rate"),
        ("NaN", "not a rate"),
    ] {
        let err = text.parse::<LimitSchedule>().unwrap_err();
        assert!(matches!(err, crate::Error::InvalidConfig(_)), "{text}: {err}");
        assert!(err.to_string().contains(says), "{text}: {err}");
    }
}
