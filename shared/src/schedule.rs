//! Wall-clock arithmetic in the configured timezone: "the next 20:00 in Europe/Berlin" as an instant,
//! correct across daylight-saving changes.

use chrono::{DateTime, Days, LocalResult, NaiveDate, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

/// The instant a local date and time denote. In the autumn overlap the earlier of the two instants is
/// taken; in the spring gap (a local time that does not exist) the first instant after the gap.
pub fn local_instant(tz: Tz, date: NaiveDate, time: NaiveTime) -> DateTime<Utc> {
    let naive = date.and_time(time);
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(t) => t.with_timezone(&Utc),
        LocalResult::Ambiguous(earlier, _) => earlier.with_timezone(&Utc),
        LocalResult::None => {
            // Gaps are at most a few hours; step forward a minute at a time until the clock exists.
            let mut probe = naive;
            for _ in 0..(4 * 60) {
                probe += chrono::Duration::minutes(1);
                if let Some(t) = tz.from_local_datetime(&probe).earliest() {
                    return t.with_timezone(&Utc);
                }
            }
            Utc.from_utc_datetime(&naive)
        }
    }
}

/// The first instant strictly after `now` at which the local clock in `tz` shows `time`.
pub fn next_local_time(now: DateTime<Utc>, tz: Tz, time: NaiveTime) -> DateTime<Utc> {
    let today = now.with_timezone(&tz).date_naive();
    let mut date = today;
    for _ in 0..3 {
        let t = local_instant(tz, date, time);
        if t > now {
            return t;
        }
        date = date.checked_add_days(Days::new(1)).unwrap_or(date);
    }
    local_instant(tz, date, time)
}

/// The instant a local date ends (its following midnight, or the first instant after it).
pub fn end_of_local_day(tz: Tz, date: NaiveDate) -> DateTime<Utc> {
    let next = date.checked_add_days(Days::new(1)).unwrap_or(date);
    local_instant(tz, next, NaiveTime::MIN)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn hm(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    #[test]
    fn later_today_or_tomorrow() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // 10:00 UTC is 11:00 in Berlin in November.
        assert_eq!(
            next_local_time(utc("2026-11-22T10:00:00Z"), tz, hm("20:00")),
            utc("2026-11-22T19:00:00Z")
        );
        assert_eq!(
            next_local_time(utc("2026-11-22T20:00:00Z"), tz, hm("20:00")),
            utc("2026-11-23T19:00:00Z")
        );
        // Exactly at the time: the next one.
        assert_eq!(
            next_local_time(utc("2026-11-22T19:00:00Z"), tz, hm("20:00")),
            utc("2026-11-23T19:00:00Z")
        );
    }

    #[test]
    fn follows_daylight_saving_changes() {
        let tz: Tz = "Europe/Berlin".parse().unwrap();
        // Spring forward on 2026-03-29: 20:00 is UTC+2 after, UTC+1 before.
        assert_eq!(
            next_local_time(utc("2026-03-28T20:00:00Z"), tz, hm("20:00")),
            utc("2026-03-29T18:00:00Z")
        );
        // Fall back on 2026-10-25.
        assert_eq!(
            next_local_time(utc("2026-10-24T19:00:00Z"), tz, hm("20:00")),
            utc("2026-10-25T19:00:00Z")
        );
        // 02:30 does not exist on 2026-03-29: the first instant after the gap (03:00 CEST).
        assert_eq!(
            next_local_time(utc("2026-03-28T12:00:00Z"), tz, hm("02:30")),
            utc("2026-03-29T01:00:00Z")
        );
        // 02:30 happens twice on 2026-10-25: the earlier one (CEST).
        assert_eq!(
            next_local_time(utc("2026-10-24T12:00:00Z"), tz, hm("02:30")),
            utc("2026-10-25T00:30:00Z")
        );
    }
}
