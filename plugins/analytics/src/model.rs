//! Rules shared by the generator and the live writes, and strict input parsing.

use jiff::civil::Date;

use crate::error::AnalyticsError;

/// The customer segment (RFM-style) for a customer's order history, as of `today`.
///
/// One function for the generator and for `POST /orders`, so a live order moves a customer
/// exactly as the generated history would have.
pub fn segment_of(
    orders: u32,
    value_cents: i64,
    first: Option<Date>,
    last: Option<Date>,
    signup: Date,
    today: Date,
) -> &'static str {
    let days_since = |d: Date| (today - d).get_days();
    let Some(last) = last else {
        return if days_since(signup) <= 30 {
            "new"
        } else {
            "prospect"
        };
    };
    let recency = days_since(last);
    if first.is_some_and(|f| days_since(f) <= 30) && orders <= 2 {
        "new"
    } else if recency <= 30 && (orders >= 8 || value_cents >= 200_000) {
        "champions"
    } else if orders >= 5 && recency <= 90 {
        "loyal"
    } else if orders >= 3 && recency > 120 {
        "at_risk"
    } else if recency <= 60 {
        "potential"
    } else {
        "hibernating"
    }
}

/// Every segment [`segment_of`] gives.
pub const SEGMENTS: &[&str] = &[
    "new",
    "prospect",
    "champions",
    "loyal",
    "at_risk",
    "potential",
    "hibernating",
];

/// A customer's risk level from the fraud alerts still open about them.
pub fn risk_level(open_alerts: u32) -> &'static str {
    match open_alerts {
        0 => "low",
        1 => "medium",
        _ => "high",
    }
}

/// Risk levels.
pub const RISK_LEVELS: &[&str] = &["low", "medium", "high"];

/// Parses a `YYYY-MM-DD` date strictly; the error names `field`.
pub fn parse_date(field: &str, text: &str) -> Result<Date, AnalyticsError> {
    let bad = || {
        AnalyticsError::invalid(
            field,
            "invalid_date",
            format!("`{field}` must be a date as YYYY-MM-DD, e.g. 2025-01-23; got `{text}`"),
        )
    };
    if text.len() != 10 {
        return Err(bad());
    }
    text.parse::<Date>().map_err(|_| bad())
}

/// Parses a date range: both ends valid, `end_date` not before `start_date`, at most
/// `max_days` long.
pub fn parse_range(start: &str, end: &str, max_days: i32) -> Result<(Date, Date), AnalyticsError> {
    let s = parse_date("start_date", start)?;
    let e = parse_date("end_date", end)?;
    if e < s {
        return Err(AnalyticsError::invalid(
            "end_date",
            "invalid_range",
            format!("`end_date` ({e}) is before `start_date` ({s})"),
        ));
    }
    let len = (e - s).get_days() + 1;
    if len > max_days {
        return Err(AnalyticsError::invalid(
            "end_date",
            "range_too_long",
            format!("the range is {len} days; at most {max_days} are allowed"),
        ));
    }
    Ok((s, e))
}

/// Cents as a currency amount with two decimals.
pub fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// Rounds to `places` decimals, for ratios in answers.
pub fn round(x: f64, places: i32) -> f64 {
    let f = 10f64.powi(places);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Date {
        s.parse().unwrap()
    }

    #[test]
    fn segments_follow_recency_frequency_and_value() {
        let today = d("2026-12-01");
        let signup = d("2026-01-01");
        assert_eq!(segment_of(0, 0, None, None, d("2026-11-20"), today), "new");
        assert_eq!(segment_of(0, 0, None, None, signup, today), "prospect");
        let f = Some(d("2026-02-01"));
        assert_eq!(
            segment_of(9, 50_000, f, Some(d("2026-11-25")), signup, today),
            "champions"
        );
        assert_eq!(
            segment_of(5, 50_000, f, Some(d("2026-10-01")), signup, today),
            "loyal"
        );
        assert_eq!(
            segment_of(3, 50_000, f, Some(d("2026-06-01")), signup, today),
            "at_risk"
        );
        assert_eq!(
            segment_of(1, 5_000, f, Some(d("2026-11-01")), signup, today),
            "potential"
        );
        assert_eq!(
            segment_of(1, 5_000, f, Some(d("2026-05-01")), signup, today),
            "hibernating"
        );
    }

    #[test]
    fn dates_and_ranges_are_strict_and_name_the_field() {
        assert!(parse_date("start_date", "2025-1-23").is_err());
        assert!(parse_date("start_date", "2025-02-30").is_err());
        let err = parse_range("2025-01-24", "2025-01-23", 400).unwrap_err();
        assert!(matches!(err, AnalyticsError::Invalid { ref field, .. } if field == "end_date"));
        assert!(parse_range("2025-01-23", "2025-01-23", 1).is_ok());
        assert!(parse_range("2024-01-01", "2025-01-23", 366).is_err());
    }
}
