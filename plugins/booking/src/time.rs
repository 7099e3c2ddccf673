//! Dates and times of day as the booking rules use them.
//!
//! A day is a [`jiff::civil::Date`]; a time of day is minutes from midnight (`u32`), which is
//! what the database stores and what slot arithmetic works on. Parsing is strict: only
//! `YYYY-MM-DD` and `HH:MM`, so that one date has one spelling and so one cache key.

use std::sync::Arc;
use std::time::SystemTime;

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;

/// Parses `YYYY-MM-DD` (and nothing else: no `2025-1-5`, no time part).
pub fn parse_date(s: &str) -> Result<Date, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit());
    if !shape_ok {
        return Err(format!("expected a date as YYYY-MM-DD, got `{s}`"));
    }
    let num = |r: std::ops::Range<usize>| s[r].parse::<i16>().unwrap_or(0);
    let (y, m, d) = (num(0..4), num(5..7) as i8, num(8..10) as i8);
    Date::new(y, m, d).map_err(|_| format!("`{s}` is not a calendar date"))
}

/// Parses `HH:MM` (24-hour) into minutes from midnight.
pub fn parse_hhmm(s: &str) -> Result<u32, String> {
    let b = s.as_bytes();
    let shape_ok = b.len() == 5
        && b[2] == b':'
        && b.iter()
            .enumerate()
            .all(|(i, c)| i == 2 || c.is_ascii_digit());
    if !shape_ok {
        return Err(format!("expected a time as HH:MM, got `{s}`"));
    }
    let h: u32 = s[0..2].parse().unwrap_or(99);
    let m: u32 = s[3..5].parse().unwrap_or(99);
    if h > 23 || m > 59 {
        return Err(format!("`{s}` is not a time of day"));
    }
    Ok(h * 60 + m)
}

/// Parses `HH:MM-HH:MM` into a `[start, end)` interval of minutes.
pub fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s
        .split_once('-')
        .ok_or_else(|| format!("expected HH:MM-HH:MM, got `{s}`"))?;
    let (a, b) = (parse_hhmm(a.trim())?, parse_hhmm(b.trim())?);
    if a >= b {
        return Err(format!("`{s}` ends before it starts"));
    }
    Ok((a, b))
}

/// Formats minutes from midnight as `HH:MM`.
pub fn hhmm(minutes: u32) -> String {
    format!("{:02}:{:02}", minutes / 60, minutes % 60)
}

/// Monday = 0 ... Sunday = 6, as stored in `working_hours.weekday`.
pub fn weekday_index(date: Date) -> u32 {
    date.weekday().to_monday_zero_offset() as u32
}

/// Lower-case English weekday name.
pub fn weekday_name(date: Date) -> &'static str {
    match date.weekday() {
        Weekday::Monday => "monday",
        Weekday::Tuesday => "tuesday",
        Weekday::Wednesday => "wednesday",
        Weekday::Thursday => "thursday",
        Weekday::Friday => "friday",
        Weekday::Saturday => "saturday",
        Weekday::Sunday => "sunday",
    }
}

/// The Monday of the week holding `date`.
pub fn week_start(date: Date) -> Date {
    date.checked_sub(jiff::Span::new().days(i64::from(weekday_index(date))))
        .unwrap_or(date)
}

/// Adds days to a date (saturating at the calendar's ends, which no booking reaches).
pub fn add_days(date: Date, days: i64) -> Date {
    date.checked_add(jiff::Span::new().days(days))
        .unwrap_or(date)
}

/// The days a route answers for, both ends included.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateWindow {
    /// The first day.
    pub first: Date,
    /// The last day.
    pub last: Date,
}

impl DateWindow {
    /// From `back` days before `today` to `ahead` days after it.
    pub fn around(today: Date, back: u32, ahead: u32) -> Self {
        Self {
            first: add_days(today, -i64::from(back)),
            last: add_days(today, i64::from(ahead)),
        }
    }

    /// Whether `date` is in the window.
    pub fn contains(&self, date: Date) -> bool {
        self.first <= date && date <= self.last
    }

    /// The Mondays of the weeks that overlap the window.
    pub fn mondays(&self) -> Self {
        Self {
            first: week_start(self.first),
            last: week_start(self.last),
        }
    }
}

/// Where "now" comes from: the server's clock ([`larder_plugin::PluginContext::now`]), so
/// that the shop, the policies' `today` and the tests agree on the instant.
pub type NowSource = Arc<dyn Fn() -> SystemTime + Send + Sync>;

/// The shop's clock: today's date and the minute of the day in the shop's time zone.
#[derive(Clone)]
pub struct ShopClock {
    tz: TimeZone,
    source: NowSource,
}

impl std::fmt::Debug for ShopClock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopClock")
            .field("tz", &self.tz.iana_name())
            .finish_non_exhaustive()
    }
}

impl ShopClock {
    /// A clock in the named IANA zone reading the time from `source`.
    pub fn new(timezone: &str, source: NowSource) -> Result<Self, String> {
        TimeZone::get(timezone)
            .map(|tz| Self { tz, source })
            .map_err(|e| format!("unknown time zone `{timezone}`: {e}"))
    }

    /// The current instant in the shop's zone.
    pub fn zoned(&self) -> jiff::Zoned {
        // The source never reads before 1970 or past jiff's range; the epoch is a safe floor.
        let ts = jiff::Timestamp::try_from((self.source)()).unwrap_or(jiff::Timestamp::UNIX_EPOCH);
        ts.to_zoned(self.tz.clone())
    }

    /// Today's date in the shop's zone.
    pub fn today(&self) -> Date {
        self.zoned().date()
    }

    /// The shop's local date and time, `YYYY-MM-DDTHH:MM:SS` (for `created_at` columns, so
    /// that a payment's day is the shop's day).
    pub fn local_stamp(&self) -> String {
        self.zoned()
            .datetime()
            .strftime("%Y-%m-%dT%H:%M:%S")
            .to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_strict() {
        assert_eq!(parse_date("2025-01-31").unwrap().to_string(), "2025-01-31");
        assert!(parse_date("2025-02-30").is_err());
        assert!(parse_date("2025-1-31").is_err());
        assert!(parse_date("31-01-2025").is_err());
        assert!(parse_date("2025-01-31T10:00").is_err());
    }

    #[test]
    fn times_are_strict() {
        assert_eq!(parse_hhmm("09:30"), Ok(570));
        assert!(parse_hhmm("9:30").is_err());
        assert!(parse_hhmm("24:00").is_err());
        assert_eq!(parse_range("09:00-18:00"), Ok((540, 1080)));
        assert!(parse_range("18:00-09:00").is_err());
        assert_eq!(hhmm(545), "09:05");
    }

    #[test]
    fn a_window_holds_its_ends_and_the_weeks_touching_them() {
        let today = parse_date("2026-03-04").unwrap(); // a Wednesday
        let w = DateWindow::around(today, 365, 90);
        assert_eq!(w.first.to_string(), "2025-03-04");
        assert_eq!(w.last.to_string(), "2026-06-02");
        assert!(w.contains(w.first) && w.contains(w.last) && w.contains(today));
        assert!(!w.contains(add_days(w.first, -1)) && !w.contains(add_days(w.last, 1)));
        // 2025-03-04 is a Tuesday, 2026-06-02 a Tuesday: their weeks' Mondays.
        let m = w.mondays();
        assert_eq!(m.first.to_string(), "2025-03-03");
        assert_eq!(m.last.to_string(), "2026-06-01");
    }

    #[test]
    fn weeks_start_on_monday() {
        let d = parse_date("2025-01-16").unwrap(); // a Thursday
        assert_eq!(weekday_index(d), 3);
        assert_eq!(week_start(d).to_string(), "2025-01-13");
        assert_eq!(week_start(week_start(d)), week_start(d));
    }
}
