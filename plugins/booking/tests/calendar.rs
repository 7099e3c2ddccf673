//! The shop's calendar at chosen instants: every weekday, a barber's day off, the evening
//! when the shop's date (New York) is behind UTC's, and both DST changes. The server's clock
//! is started at each instant and tokio's clock is paused, so it stays there; nothing here
//! reads the wall clock.

mod common;

use common::{add_test_barber, app_with_at, instant, small_config, sql};
use jiff::civil::Date;
use larder_booking::time::add_days;
use poem::http::StatusCode;
use serde_json::{Value, json};

const SHOP_ZONE: &str = "America/New_York";
/// Test barber 100's weekly day off (0 = Monday).
const THURSDAY: u32 = 3;

async fn get(app: &common::App, uri: &str) -> (StatusCode, Value) {
    let resp = app.m.client.get(uri).send().await;
    let status = resp.0.status();
    (
        status,
        resp.0.into_body().into_json().await.unwrap_or(Value::Null),
    )
}

async fn book(app: &common::App, date: Date, start: &str) -> (StatusCode, Value) {
    let body = json!({"barber_id": 100, "service_id": 1, "client_id": 1, "date": date.to_string(), "start": start});
    let resp = app
        .m
        .client
        .post("/api/v2/appointments")
        .body_json(&body)
        .send()
        .await;
    let status = resp.0.status();
    (
        status,
        resp.0.into_body().into_json().await.unwrap_or(Value::Null),
    )
}

async fn starts(app: &common::App, date: Date) -> Vec<String> {
    let (status, v) = get(app, &format!("/api/v2/barbers/100/slots?date={date}")).await;
    assert_eq!(status, StatusCode::OK, "{date}: {v}");
    v["slots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["start"].as_str().unwrap().to_owned())
        .collect()
}

/// A New York shop whose clock reads `at`, with test barber 100 (09–12 and 13–17 every day
/// but Thursday) and, when `night` is set, also 00:00–09:00 on Sundays.
async fn shop_at(at: &str, night: bool) -> common::App {
    let dir = tempfile::tempdir().unwrap();
    let config = larder_booking::BookingConfig {
        timezone: SHOP_ZONE.into(),
        ..small_config(dir.path())
    };
    let app = app_with_at(dir, config, instant(at)).await;
    add_test_barber(&app.db_path, THURSDAY);
    if night {
        sql(
            &app.db_path,
            "INSERT INTO working_hours (barber_id, weekday, start_min, end_min) VALUES (100, 6, 0, 540)",
        );
    }
    app
}

fn date(s: &str) -> Date {
    s.parse().unwrap()
}

/// The dates a warm source's requests are for, in order.
async fn warm_dates(app: &common::App, source: &str) -> Vec<String> {
    let warm = app.m.plugin().warm_source(source).await.unwrap();
    warm.iter()
        .map(|r| r.path.rsplit('=').next().unwrap().to_owned())
        .collect()
}

/// The shop's today as the plugin reads it: the first day its slots warm source covers.
async fn shop_today(app: &common::App) -> Date {
    date(&warm_dates(app, "slots_next_7_days").await[0])
}

/// At 10:00 in the shop on each day of one week (which holds the spring DST change on
/// Sunday 03-08): today is the shop's date, today's first start is 11:00 (an hour's notice),
/// yesterday is closed, a day off has no slots and refuses a booking by its weekday.
#[tokio::test(start_paused = true)]
async fn each_weekday_at_ten_in_the_morning() {
    let week = [
        ("2026-03-02T15:00:00Z", "2026-03-02", "monday"),
        ("2026-03-03T15:00:00Z", "2026-03-03", "tuesday"),
        ("2026-03-04T15:00:00Z", "2026-03-04", "wednesday"),
        ("2026-03-05T15:00:00Z", "2026-03-05", "thursday"),
        ("2026-03-06T15:00:00Z", "2026-03-06", "friday"),
        ("2026-03-07T15:00:00Z", "2026-03-07", "saturday"),
        // 10:00 EDT: the clocks went forward at 02:00 this morning.
        ("2026-03-08T14:00:00Z", "2026-03-08", "sunday"),
    ];
    for (at, today, weekday) in week {
        let app = shop_at(at, false).await;
        let today = date(today);
        assert_eq!(shop_today(&app).await, today, "{at}");

        let (status, settings) = get(&app, "/api/v2/settings").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(settings["min_notice_minutes"], 60, "{settings}");

        let free_today = starts(&app, today).await;
        if weekday == "thursday" {
            assert!(free_today.is_empty(), "{at}: day off, yet {free_today:?}");
            let (status, v) = book(&app, today, "15:00").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{at}: {v}");
            assert_eq!(v["error"], "outside_working_hours", "{at}: {v}");
            assert_eq!(
                v["message"], "barber 100 does not work on thursdays",
                "{at}: {v}"
            );
        } else {
            assert_eq!(
                free_today.first().map(String::as_str),
                Some("11:00"),
                "{at}"
            );
            assert_eq!(free_today.last().map(String::as_str), Some("16:30"), "{at}");
            let (status, v) = book(&app, today, "10:45").await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{at}: {v}");
            assert_eq!(v["error"], "too_soon", "{at}: {v}");
            assert!(
                v["message"]
                    .as_str()
                    .unwrap()
                    .contains("earliest start today is 11:00"),
                "{at}: {v}"
            );
            let (status, v) = book(&app, today, "11:00").await;
            assert_eq!(status, StatusCode::CREATED, "{at}: {v}");
        }

        let yesterday = add_days(today, -1);
        assert!(starts(&app, yesterday).await.is_empty(), "{at}");
        let (status, v) = book(&app, yesterday, "11:00").await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{at}: {v}");
        assert_eq!(v["error"], "date_in_past", "{at}: {v}");

        let tomorrow = add_days(today, 1);
        let free_tomorrow = starts(&app, tomorrow).await;
        if weekday == "wednesday" {
            assert!(free_tomorrow.is_empty(), "{at}: Thursday is the day off");
        } else {
            assert_eq!(
                free_tomorrow.first().map(String::as_str),
                Some("09:00"),
                "{at}"
            );
        }

        // The warm source covers the shop's today and the six days after it.
        let warm = app
            .m
            .plugin()
            .warm_source("slots_next_7_days")
            .await
            .unwrap();
        let dates: Vec<&str> = warm
            .iter()
            .filter(|r| r.path.starts_with("/api/v2/barbers/100/"))
            .map(|r| r.path.rsplit('=').next().unwrap())
            .collect();
        let expected: Vec<String> = (0..7).map(|i| add_days(today, i).to_string()).collect();
        assert_eq!(dates, expected, "{at}");
    }
}

/// 21:30 on Tuesday in New York is 02:30 on Wednesday in UTC: the shop's today is Tuesday.
#[tokio::test(start_paused = true)]
async fn the_evening_when_the_shop_is_a_day_behind_utc() {
    let app = shop_at("2026-03-04T02:30:00Z", false).await;
    let tuesday = date("2026-03-03");
    assert_eq!(shop_today(&app).await, tuesday);

    assert!(
        starts(&app, tuesday).await.is_empty(),
        "the shop has closed"
    );
    let (status, v) = book(&app, tuesday, "16:00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["error"], "too_soon", "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("earliest start today is 22:30"),
        "{v}"
    );

    // UTC's "today" is the shop's tomorrow: bookable from opening time.
    let wednesday = add_days(tuesday, 1);
    assert_eq!(
        starts(&app, wednesday).await.first().map(String::as_str),
        Some("09:00")
    );
    let (status, v) = book(&app, wednesday, "09:00").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // The read window ends 90 days after the shop's today, not UTC's.
    let horizon = add_days(tuesday, 90);
    let (status, v) = get(&app, &format!("/api/v2/barbers/100/slots?date={horizon}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    let (status, v) = get(
        &app,
        &format!("/api/v2/barbers/100/slots?date={}", add_days(horizon, 1)),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "date", "{v}");

    let warm = app
        .m
        .plugin()
        .warm_source("slots_next_7_days")
        .await
        .unwrap();
    assert_eq!(warm[0].path, "/api/v2/barbers/1/slots?date=2026-03-03");
    let week = app
        .m
        .plugin()
        .warm_source("availability_two_weeks")
        .await
        .unwrap();
    assert_eq!(
        week[0].path,
        "/api/v2/barbers/1/availability/weekly?week_start=2026-03-02"
    );
}

/// An hour's notice is an hour of real time, also across a DST change (barber 100 works
/// through Sunday night here).
#[tokio::test(start_paused = true)]
async fn notice_counts_real_time_across_dst_changes() {
    // Spring forward: 01:45 EST + 60 minutes = 03:45 EDT (02:00–03:00 does not exist).
    let app = shop_at("2026-03-08T06:45:00Z", true).await;
    let sunday = date("2026-03-08");
    assert_eq!(shop_today(&app).await, sunday);
    assert_eq!(
        starts(&app, sunday).await.first().map(String::as_str),
        Some("03:45")
    );
    let (status, v) = book(&app, sunday, "03:00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("earliest start today is 03:45"),
        "{v}"
    );

    // Fall back: 01:30 EDT + 60 minutes = 01:30 EST (01:00–02:00 happens twice).
    let app = shop_at("2026-11-01T05:30:00Z", true).await;
    let sunday = date("2026-11-01");
    assert_eq!(shop_today(&app).await, sunday);
    assert_eq!(
        starts(&app, sunday).await.first().map(String::as_str),
        Some("01:30")
    );
    let (status, v) = book(&app, sunday, "01:30").await;
    assert_eq!(status, StatusCode::CREATED, "{v}");

    // Late in the evening the notice runs past midnight: nothing is left today.
    let app = shop_at("2026-11-02T04:45:00Z", true).await; // Sunday 23:45 EST
    assert!(starts(&app, sunday).await.is_empty());
    let (status, v) = book(&app, sunday, "08:00").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("no start is left today"),
        "{v}"
    );
}
