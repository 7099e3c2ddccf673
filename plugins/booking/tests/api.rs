//! The booking routes in the whole application: slots (through the policy's cache),
//! bookings (including concurrent ones), events and what their triggers purge, validation,
//! the cache-admin aliases and warm sources.

mod common;

use std::sync::Arc;

use common::{App, add_test_barber, app, day, sql};
use larder_booking::time::weekday_index;
use larder_core::testing::LoadOutcome;
use larder_plugin::Invalidation;
use poem::http::{Method, StatusCode};
use poem::test::TestResponse;
use serde_json::{Value, json};

async fn read(resp: TestResponse) -> (StatusCode, Value) {
    let status = resp.0.status();
    let body = resp
        .0
        .into_body()
        .into_json::<Value>()
        .await
        .unwrap_or(Value::Null);
    (status, body)
}

async fn get(app: &App, uri: &str) -> (StatusCode, Value) {
    read(app.m.client.get(uri).send().await).await
}

async fn post(app: &App, uri: &str, body: Value) -> (StatusCode, Value) {
    read(app.m.client.post(uri).body_json(&body).send().await).await
}

/// A GET, with its `Cache-Status`.
async fn get_cached(app: &App, uri: &str) -> (StatusCode, Value, String) {
    let resp = app.m.client.get(uri).send().await;
    let status = app.cache_status(&resp);
    let (code, body) = read(resp).await;
    (code, body, status)
}

fn starts(v: &Value) -> Vec<String> {
    v["slots"]
        .as_array()
        .unwrap_or_else(|| panic!("no slots in {v}"))
        .iter()
        .map(|s| s["start"].as_str().unwrap().to_owned())
        .collect()
}

/// Day D (in two days) is a working day of barber 100; D+2 is its day off.
struct Fixture {
    app: App,
    d: String,
}

async fn fixture() -> Fixture {
    let app = app().await;
    let off = weekday_index(day(4));
    add_test_barber(&app.db_path, off);
    Fixture {
        app,
        d: day(2).to_string(),
    }
}

fn booking(barber: i64, service: i64, client: i64, date: &str, start: &str) -> Value {
    json!({"barber_id": barber, "service_id": service, "client_id": client, "date": date, "start": start})
}

#[tokio::test]
async fn slots_follow_hours_time_off_and_appointments() {
    let f = fixture().await;
    let (c, d) = (&f.app, &f.d);
    let all = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();

    // A free day: 30-minute slots (default duration) every 15 minutes inside 09–12, 13–17.
    let (status, v) = get(c, &format!("/api/v2/barbers/100/slots?date={d}")).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["barber_id"], 100);
    assert_eq!(v["date"], d.as_str());
    let free = starts(&v);
    assert_eq!(free.first().unwrap(), "09:00");
    assert_eq!(free.last().unwrap(), "16:30");
    assert!(free.contains(&"11:30".into()) && !free.contains(&"11:45".into()));
    assert!(
        !free
            .iter()
            .any(|s| s.as_str() >= "12:00" && s.as_str() < "13:00")
    );
    assert_eq!(free.len(), 11 + 15);
    assert_eq!(v["slots"][0], json!({"start": "09:00", "end": "09:30"}));

    // 10:00–10:30 booked and 14:00–15:00 off, written behind the plugin's back.
    sql(
        &f.app.db_path,
        &format!(
            "INSERT INTO appointments (barber_id, client_id, service_id, date, start_min, end_min, status, price_cents, created_at)
             VALUES (100, 1, 1, '{d}', 600, 630, 'booked', 3500, '2025-01-01T00:00:00');
             INSERT INTO time_off (barber_id, start_date, end_date, start_min, end_min, reason)
             VALUES (100, '{d}', '{d}', 840, 900, 'errand');"
        ),
    );
    // No event, so no purge: the day's cached answer stands until something drops it.
    let slots = format!("/api/v2/barbers/100/slots?date={d}");
    let (_, v, cache) = get_cached(c, &slots).await;
    assert!(cache.contains("hit"), "{cache}");
    assert_eq!(starts(&v), free);
    let (status, v) = read(
        c.admin(Method::POST, "/api/v2/cache/invalidate")
            .body_json(&json!({"tags": [format!("slots:100:{d}")]}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["cleared_entries"], 1, "{v}");
    let (_, v) = get(c, &slots).await;
    assert_eq!(
        starts(&v),
        all(&[
            "09:00", "09:15", "09:30", "10:30", "10:45", "11:00", "11:15", "11:30", "13:00",
            "13:15", "13:30", "15:00", "15:15", "15:30", "15:45", "16:00", "16:15", "16:30"
        ])
    );

    // A 45-minute service shrinks the choice.
    let (_, v) = get(
        c,
        &format!("/api/v2/barbers/100/slots?date={d}&service_id=2"),
    )
    .await;
    assert_eq!(v["duration_minutes"], 45);
    assert_eq!(
        starts(&v),
        all(&[
            "09:00", "09:15", "10:30", "10:45", "11:00", "11:15", "13:00", "13:15", "15:00",
            "15:15", "15:30", "15:45", "16:00", "16:15"
        ])
    );

    // Whole-day time off, a weekly day off, and the past have no slots.
    let d1 = day(3).to_string();
    sql(
        &f.app.db_path,
        &format!(
            "INSERT INTO time_off (barber_id, start_date, end_date, reason) VALUES (100, '{d1}', '{d1}', 'vacation')"
        ),
    );
    for date in [d1, day(4).to_string(), day(-1).to_string()] {
        let (status, v) = get(c, &format!("/api/v2/barbers/100/slots?date={date}")).await;
        assert_eq!(status, StatusCode::OK);
        assert!(starts(&v).is_empty(), "{date}: {v}");
    }
}

#[tokio::test]
async fn booking_takes_the_slot_and_emits_after_commit() {
    let f = fixture().await;
    let (c, d) = (&f.app, &f.d);
    // The day's slots are cached before the booking...
    let slots = format!("/api/v2/barbers/100/slots?date={d}");
    let (_, before) = get(c, &slots).await;
    assert!(starts(&before).contains(&"11:00".into()));
    let (_, _, cache) = get_cached(c, &slots).await;
    assert!(cache.contains("hit"), "{cache}");
    let (status, v) = post(c, "/api/v2/appointments", booking(100, 1, 5, d, "11:00")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["start"], "11:00");
    assert_eq!(v["end"], "11:30");
    assert_eq!(v["status"], "booked");

    // ...and the booking's trigger purged them before its answer: the very next request
    // computes them again, without it nor a start that would overlap it.
    let (_, slots, cache) = get_cached(c, &slots).await;
    assert!(!cache.contains("hit"), "{cache}");
    let free = starts(&slots);
    assert!(!free.contains(&"11:00".into()) && !free.contains(&"10:45".into()));
    assert!(!free.contains(&"11:15".into()));
    assert!(free.contains(&"10:30".into()) && free.contains(&"11:30".into()));

    // Taken: same start, or overlapping.
    for start in ["11:00", "10:45", "11:15"] {
        let (status, v) = post(c, "/api/v2/appointments", booking(100, 1, 6, d, start)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{start}: {v}");
        assert_eq!(v["error"], "slot_taken");
        assert!(v["message"].as_str().unwrap().contains("11:00–11:30"));
    }

    let created = f.app.events_named("appointment.created");
    assert_eq!(created.len(), 1);
    let e = &created[0];
    assert_eq!(e.event.plugin, "booking");
    let fields = &e.event.fields;
    assert_eq!(fields["appointment_id"], id);
    assert_eq!(fields["barber_id"], 100);
    assert_eq!(fields["client_id"], 5);
    assert_eq!(fields["service_id"], 1);
    assert_eq!(fields["date"], d.as_str());
    assert_eq!(fields["start"], "11:00");
    let monday = larder_booking::time::week_start(day(2)).to_string();
    assert_eq!(fields["week_start"], monday.as_str());
    assert_eq!(e.committed, Some(true), "emitted before the commit");

    // Cancelling frees the slot again and emits with the same fields.
    let (status, v) = read(
        c.m.client
            .delete(format!("/api/v2/appointments/{id}"))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    let (_, slots) = get(c, &format!("/api/v2/barbers/100/slots?date={d}")).await;
    assert!(starts(&slots).contains(&"11:00".into()));
    // Every event the plugin emitted, in order (refused bookings emit nothing).
    let names: Vec<String> = f.app.m.events().into_iter().map(|e| e.name).collect();
    assert_eq!(names, ["appointment.created", "appointment.cancelled"]);
    let cancelled = f.app.events_named("appointment.cancelled");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].event.fields["appointment_id"], id);
    assert_eq!(cancelled[0].event.fields["date"], d.as_str());
    assert_eq!(cancelled[0].committed, Some(true));
    let (status, v) = read(
        c.m.client
            .delete(format!("/api/v2/appointments/{id}"))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "already_cancelled");

    // The freed slot can be booked again.
    let (status, _) = post(c, "/api/v2/appointments", booking(100, 2, 7, d, "11:00")).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_for_one_slot_book_it_once() {
    let f = fixture().await;
    let m = f.app.m.clone();
    let d = f.d.clone();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (m, d, barrier) = (m.clone(), d.clone(), barrier.clone());
        // Half ask for 15:00 exactly, half for 15:15 (overlapping 15:00–15:45 of service 2).
        let start = if i % 2 == 0 { "15:00" } else { "15:15" };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = m
                .client
                .post("/api/v2/appointments")
                .body_json(&booking(100, 2, 10 + i, &d, start))
                .send()
                .await;
            read(resp).await
        }));
    }
    let mut created = 0;
    let mut conflicts = 0;
    for t in tasks {
        let (status, v) = t.await.unwrap();
        match status {
            StatusCode::CREATED => created += 1,
            StatusCode::CONFLICT => {
                assert_eq!(v["error"], "slot_taken", "{v}");
                conflicts += 1
            }
            other => panic!("unexpected {other}: {v}"),
        }
    }
    assert_eq!((created, conflicts), (1, 19));
    let rows: i64 = rusqlite::Connection::open(&f.app.db_path)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM appointments WHERE barber_id = 100 AND date = ?1 AND status = 'booked'",
            [&d],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
    assert_eq!(f.app.events_named("appointment.created").len(), 1);
}

#[tokio::test]
async fn payments_are_recorded_and_emitted() {
    let f = fixture().await;
    let (c, d) = (&f.app, &f.d);
    let (_, appt) = post(c, "/api/v2/appointments", booking(100, 1, 5, d, "09:00")).await;
    let id = appt["id"].as_i64().unwrap();
    let (status, v) = post(
        c,
        "/api/v2/payments",
        json!({"appointment_id": id, "amount": 35.5, "tip": 5, "method": "cash"}),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    assert_eq!(v["amount"], 35.5);
    assert_eq!(v["method"], "cash");
    let events = f.app.events_named("payment.recorded");
    assert_eq!(events.len(), 1);
    let fields = &events[0].event.fields;
    assert_eq!(fields["appointment_id"], id);
    assert_eq!(fields["amount"], 35.5);
    assert_eq!(fields["barber_id"], 100);
    assert_eq!(fields["date"], d.as_str());
    assert_eq!(events[0].committed, Some(true));

    let (status, v) = post(
        c,
        "/api/v2/payments",
        json!({"appointment_id": 999999, "amount": 10}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(v["field"], "appointment_id");
    let (status, v) = post(
        c,
        "/api/v2/payments",
        json!({"appointment_id": id, "amount": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "amount", "{v}");
}

#[tokio::test]
async fn bad_input_is_named() {
    let f = fixture().await;
    let (c, d) = (&f.app, &f.d);
    let cases: Vec<(String, StatusCode, &str)> = vec![
        (
            format!("/api/v2/barbers/9999/slots?date={d}"),
            StatusCode::NOT_FOUND,
            "barber_id",
        ),
        (
            "/api/v2/barbers/100/slots?date=07-01-2030".to_owned(),
            StatusCode::BAD_REQUEST,
            "date",
        ),
        (
            "/api/v2/barbers/100/slots?date=2030-02-30".to_owned(),
            StatusCode::BAD_REQUEST,
            "date",
        ),
        (
            "/api/v2/barbers/100/slots".to_owned(),
            StatusCode::BAD_REQUEST,
            "date",
        ),
        (
            format!("/api/v2/barbers/007/slots?date={d}"),
            StatusCode::BAD_REQUEST,
            "barber_id",
        ),
        (
            format!("/api/v2/barbers/abc/slots?date={d}"),
            StatusCode::BAD_REQUEST,
            "barber_id",
        ),
        (
            format!("/api/v2/barbers/100/slots?date={d}&service_id=999"),
            StatusCode::NOT_FOUND,
            "service_id",
        ),
        (
            "/api/v2/barbers/100/availability/weekly?week_start=2030-01-09".to_owned(),
            StatusCode::BAD_REQUEST,
            "week_start",
        ),
        (
            "/api/v2/users/999999".to_owned(),
            StatusCode::NOT_FOUND,
            "user_id",
        ),
        (
            "/api/v2/appointments?size=1000".to_owned(),
            StatusCode::BAD_REQUEST,
            "size",
        ),
    ];
    for (uri, want, field) in cases {
        let (status, v) = get(c, &uri).await;
        assert_eq!(status, want, "{uri}: {v}");
        assert_eq!(v["field"], field, "{uri}: {v}");
        assert!(
            v["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{uri}: {v}"
        );
    }

    let posts: Vec<(Value, StatusCode, &str, &str)> = vec![
        (
            booking(9999, 1, 1, d, "10:00"),
            StatusCode::NOT_FOUND,
            "barber_id",
            "not_found",
        ),
        (
            booking(100, 999, 1, d, "10:00"),
            StatusCode::NOT_FOUND,
            "service_id",
            "not_found",
        ),
        (
            booking(100, 1, 999999, d, "10:00"),
            StatusCode::NOT_FOUND,
            "client_id",
            "not_found",
        ),
        (
            booking(100, 1, 1, "2030/01/07", "10:00"),
            StatusCode::BAD_REQUEST,
            "date",
            "invalid_date",
        ),
        (
            booking(100, 1, 1, d, "10h00"),
            StatusCode::BAD_REQUEST,
            "start",
            "invalid_time",
        ),
        (
            booking(100, 1, 1, d, "07:00"),
            StatusCode::BAD_REQUEST,
            "start",
            "outside_working_hours",
        ),
        (
            booking(100, 1, 1, d, "11:45"),
            StatusCode::BAD_REQUEST,
            "start",
            "outside_working_hours",
        ),
        (
            booking(100, 1, 1, d, "10:10"),
            StatusCode::BAD_REQUEST,
            "start",
            "off_grid",
        ),
        (
            booking(100, 1, 1, &day(4).to_string(), "10:00"),
            StatusCode::BAD_REQUEST,
            "start",
            "outside_working_hours",
        ),
        (
            booking(100, 1, 1, &day(-2).to_string(), "10:00"),
            StatusCode::BAD_REQUEST,
            "date",
            "date_in_past",
        ),
        (
            booking(100, 1, 1, &day(400).to_string(), "10:00"),
            StatusCode::BAD_REQUEST,
            "date",
            "beyond_horizon",
        ),
        (
            json!({"barber_id": 100, "service_id": 1, "client_id": 1, "date": d}),
            StatusCode::BAD_REQUEST,
            "start",
            "invalid_request",
        ),
        (
            json!({"barber_id": "x", "service_id": 1, "client_id": 1, "date": d, "start": "10:00"}),
            StatusCode::BAD_REQUEST,
            "barber_id",
            "invalid_request",
        ),
    ];
    for (body, want, field, code) in posts {
        let (status, v) = post(c, "/api/v2/appointments", body.clone()).await;
        assert_eq!(status, want, "{body}: {v}");
        assert_eq!(v["field"], field, "{body}: {v}");
        assert_eq!(v["error"], code, "{body}: {v}");
    }
    // Out-of-hours messages say what the hours are.
    let (_, v) = post(c, "/api/v2/appointments", booking(100, 1, 1, d, "07:00")).await;
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("09:00–12:00, 13:00–17:00"),
        "{v}"
    );

    // Time off is a conflict, with its own code.
    sql(
        &f.app.db_path,
        &format!(
            "INSERT INTO time_off (barber_id, start_date, end_date, start_min, end_min, reason) VALUES (100, '{d}', '{d}', 600, 660, 'errand')"
        ),
    );
    let (status, v) = post(c, "/api/v2/appointments", booking(100, 1, 1, d, "10:30")).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "barber_unavailable");
    assert!(f.app.events_named("appointment.created").is_empty());
}

/// Slots and weekly availability answer from `lookback_days` (365) back to `max_advance_days`
/// (90) ahead of the shop's today (Wednesday 2026-03-04): every date answered is a cache
/// entry, so a client walking the calendar from 0001 to 9999 must not fill the cache.
#[tokio::test(start_paused = true)]
async fn slots_and_availability_answer_only_within_the_date_window() {
    let app = app().await;
    add_test_barber(&app.db_path, 3);
    let (first, last) = (day(-365), day(90));
    assert_eq!(
        (first.to_string().as_str(), last.to_string().as_str()),
        ("2025-03-04", "2026-06-02")
    );
    let slots = |d: &str| format!("/api/v2/barbers/100/slots?date={d}");
    let weekly = |m: &str| format!("/api/v2/barbers/100/availability/weekly?week_start={m}");

    for d in [first, last] {
        let (status, v) = get(&app, &slots(&d.to_string())).await;
        assert_eq!(status, StatusCode::OK, "{d}: {v}");
        assert_eq!(v["date"], d.to_string(), "{v}");
    }
    // The horizon's day (a Tuesday, a working day) is bookable: it has slots.
    let (_, v) = get(&app, &slots(&last.to_string())).await;
    assert!(!starts(&v).is_empty(), "{v}");
    // The weeks holding the window's ends: Mondays 2025-03-03 and 2026-06-01.
    for m in ["2025-03-03", "2026-06-01"] {
        let (status, v) = get(&app, &weekly(m)).await;
        assert_eq!(status, StatusCode::OK, "{m}: {v}");
    }

    let refused_days = [
        day(-366).to_string(),
        day(91).to_string(),
        "0001-01-01".to_owned(),
        "9999-12-31".to_owned(),
    ];
    for d in &refused_days {
        let (status, v) = get(&app, &slots(d)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{d}: {v}");
        assert_eq!(v["field"], "date", "{v}");
        assert_eq!(v["error"], "date_out_of_range", "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("between 2025-03-04 and 2026-06-02"),
            "{message}"
        );
    }
    let refused_weeks = ["2025-02-24", "2026-06-08", "0001-01-01", "9999-12-27"];
    for m in refused_weeks {
        let (status, v) = get(&app, &weekly(m)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{m}: {v}");
        assert_eq!(v["field"], "week_start", "{v}");
        assert_eq!(v["error"], "date_out_of_range", "{v}");
        let message = v["message"].as_str().unwrap();
        assert!(
            message.contains("a Monday between 2025-03-03 and 2026-06-01"),
            "{message}"
        );
    }
    // The benchmark keys its entries by date as well.
    let (status, v) = read(
        app.admin(
            Method::POST,
            &format!(
                "/api/v2/cache/benchmark/slots?date={}&iterations=1",
                day(91)
            ),
        )
        .send()
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    assert_eq!(v["field"], "date", "{v}");

    // Accepted dates were cached; refused ones left nothing behind.
    let keys = app.m.cached_keys("booking:*").await;
    for d in [first, last] {
        assert!(
            keys.contains(&format!("booking:slots:100:{d}:any")),
            "{d} not cached: {keys:?}"
        );
    }
    let refused_keys = refused_days
        .iter()
        .map(|d| format!("booking:slots:100:{d}:"))
        .chain(refused_weeks.map(|m| format!("booking:availability:100:{m}:")));
    for prefix in refused_keys {
        assert!(
            !keys.iter().any(|k| k.starts_with(&prefix)),
            "{prefix}* was refused yet cached: {keys:?}"
        );
    }
    assert_eq!(keys.len(), 4, "{keys:?}");
}

#[tokio::test]
async fn catalog_profiles_and_analytics_answer() {
    let f = fixture().await;
    let c = &f.app;
    let (status, v) = get(c, "/api/v2/barbers").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(v.as_array().unwrap().len(), 4);

    let (_, v) = get(c, "/api/v2/services").await;
    assert_eq!(v.as_array().unwrap().len(), 12);
    let (_, v) = get(c, "/api/v2/settings").await;
    assert_eq!(v["slot_minutes"], 15);
    assert_eq!(v["timezone"], "UTC");

    let monday = larder_booking::time::week_start(day(7)).to_string();
    let (status, v) = get(
        c,
        &format!("/api/v2/barbers/100/availability/weekly?week_start={monday}"),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["days"].as_array().unwrap().len(), 7);
    assert_eq!(v["days"][0]["weekday"], "monday");
    assert_eq!(v["total_slots"], 6 * 26);

    let (status, v) = read(
        c.m.client
            .put("/api/v2/services/4")
            .body_json(&json!({"duration_minutes": 20, "price": 22.5}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["duration_minutes"], 20);
    assert_eq!(
        f.app.events_named("service.changed")[0].event.fields["service_id"],
        4
    );
    // Its trigger purged the catalog cached above: the change shows at once.
    let (_, v, cache) = get_cached(c, "/api/v2/services").await;
    assert!(!cache.contains("hit"), "{cache}");
    let four = v
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == 4)
        .unwrap_or_else(|| panic!("no service 4 in {v}"));
    assert_eq!(four["duration_minutes"], 20, "{four}");

    let (status, v) = read(
        c.m.client
            .put("/api/v2/users/3")
            .body_json(&json!({"notes": "skin fade, no. 2 on top"}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["notes"], "skin fade, no. 2 on top");
    let (status, v) = read(
        c.m.client
            .put("/api/v2/barbers/100")
            .body_json(&json!({"bio": "New bio."}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["working_hours"].as_array().unwrap().len(), 6);
    let profile_events: Vec<Value> = f
        .app
        .events_named("profile.updated")
        .into_iter()
        .map(|s| Value::Object(s.event.fields))
        .collect();
    assert_eq!(
        profile_events,
        vec![
            json!({"kind": "user", "id": 3}),
            json!({"kind": "barber", "id": 100})
        ]
    );

    let (status, v) = get(c, "/api/v2/analytics/dashboard").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["revenue_last_month"].as_f64().is_some());
    assert!(v["week_ahead"]["working_minutes"].as_u64().unwrap() > 0);
    let (status, v) = get(c, "/api/v2/analytics/revenue?granularity=week").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["payments"].as_u64().unwrap() > 0, "{v}");
    let (status, v) = get(c, "/api/v2/analytics/clients?window_days=30").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert!(v["active_clients"].as_u64().unwrap() > 0, "{v}");
    let (status, v) = get(c, "/api/v2/appointments?barber_id=1&size=5").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["items"].as_array().unwrap().len(), 5);
}

#[tokio::test]
async fn warm_source_lists_every_barber_for_seven_days() {
    let f = fixture().await;
    let plugin = f.app.m.plugin();
    let reqs = plugin.warm_source("slots_next_7_days").await.unwrap();
    assert_eq!(reqs.len(), 4 * 7);
    assert!(reqs.iter().all(|r| r.method == "GET"));
    assert_eq!(
        reqs[0].path,
        format!("/api/v2/barbers/1/slots?date={}", day(0))
    );
    assert_eq!(
        reqs[6].path,
        format!("/api/v2/barbers/1/slots?date={}", day(6))
    );
    assert_eq!(
        reqs[27].path,
        format!("/api/v2/barbers/100/slots?date={}", day(6))
    );
    assert!(plugin.warm_source("nope").await.is_err());
    // Every warm request is a route that answers 200.
    for r in &reqs {
        let (status, _) = get(&f.app, &r.path).await;
        assert_eq!(status, StatusCode::OK, "{}", r.path);
    }
}

/// With a horizon under a week the warm sources stop at it, as the routes do: a warming run
/// asks for nothing the routes refuse.
#[tokio::test(start_paused = true)]
async fn warm_sources_stay_within_a_short_horizon() {
    let dir = tempfile::tempdir().unwrap();
    let config = larder_booking::BookingConfig {
        max_advance_days: 3,
        ..common::small_config(dir.path())
    };
    let app = common::app_with(dir, config).await;
    let plugin = app.m.plugin();
    let slots = plugin.warm_source("slots_next_7_days").await.unwrap();
    let days: Vec<String> = slots
        .iter()
        .filter(|r| r.path.starts_with("/api/v2/barbers/1/"))
        .map(|r| r.path.rsplit('=').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        days,
        (0..=3).map(|i| day(i).to_string()).collect::<Vec<_>>()
    );
    // Today is Wednesday 2026-03-04; + 3 days is Saturday: next week is out of reach.
    let weeks = plugin.warm_source("availability_two_weeks").await.unwrap();
    assert_eq!(
        weeks[0].path,
        "/api/v2/barbers/1/availability/weekly?week_start=2026-03-02"
    );
    assert!(
        weeks.iter().all(|r| r.path.ends_with("2026-03-02")),
        "{weeks:?}"
    );
    for r in slots.iter().chain(&weeks) {
        let (status, v) = get(&app, &r.path).await;
        assert_eq!(status, StatusCode::OK, "{}: {v}", r.path);
    }
}

async fn admin_get(app: &App, uri: &str) -> (StatusCode, Value) {
    read(app.admin(Method::GET, uri).send().await).await
}

async fn admin_post(app: &App, uri: &str, body: Option<Value>) -> (StatusCode, Value) {
    let req = app.admin(Method::POST, uri);
    let req = match body {
        Some(body) => req.body_json(&body),
        None => req,
    };
    read(req.send().await).await
}

#[tokio::test]
async fn cache_admin_aliases_use_the_plugin_context() {
    let f = fixture().await;
    let c = &f.app;
    let (status, v) = admin_get(c, "/api/v2/cache/health").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "healthy");
    // One miss and three hits on the plugin's rules.
    for _ in 0..4 {
        get(c, "/api/v2/services").await;
    }
    let (_, v) = admin_get(c, "/api/v2/cache/metrics").await;
    assert_eq!(v["hit_rate"], 0.75, "{v}");
    let (status, _) = admin_get(c, "/api/v2/cache/performance-report").await;
    assert_eq!(status, StatusCode::OK);

    let (status, v) = admin_post(
        c,
        "/api/v2/cache/invalidate",
        Some(json!({"patterns": ["slots:1:*", "**"]})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "patterns[1]");
    assert!(f.app.m.invalidations().is_empty());
    let (status, v) = admin_post(c, "/api/v2/cache/invalidate", Some(json!({}))).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    // One entry under each: barber 1's slots for a day, and the dashboard (`analytics`).
    get(c, &format!("/api/v2/barbers/1/slots?date={}", f.d)).await;
    get(c, "/api/v2/analytics/dashboard").await;
    let (status, v) = admin_post(
        c,
        "/api/v2/cache/invalidate",
        Some(json!({"patterns": ["slots:1:*"], "tags": ["analytics"]})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["cleared_entries"], 2, "{v}");
    let asked: Vec<(Invalidation, Result<u64, String>)> = f
        .app
        .m
        .invalidations()
        .into_iter()
        .map(|i| (i.what, i.removed))
        .collect();
    assert_eq!(
        asked,
        [
            (Invalidation::Pattern("slots:1:*".into()), Ok(1)),
            (Invalidation::Tags(vec!["analytics".into()]), Ok(1)),
        ]
    );
    let (_, _, cache) = get_cached(c, "/api/v2/analytics/dashboard").await;
    assert!(!cache.contains("hit"), "{cache}");

    let (status, v) = admin_post(
        c,
        "/api/v2/cache/warm-cache?source=slots_next_7_days",
        Some(json!({})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sources"][0]["requests"].as_array().unwrap().len(), 28);
    assert_eq!(v["started"], true);
    let warms = f.app.m.warms();
    let sources: Vec<&str> = warms.iter().map(|w| w.source.as_str()).collect();
    assert_eq!(
        sources,
        ["slots_next_7_days"],
        "the alias asks the core to run the source"
    );
    // The core sent every request through the server: 28 answers, all 2xx.
    assert_eq!(warms[0].run.as_ref().map(|r| r.entries), Ok(28));
    assert_eq!(v["entries"], 28, "{v}");
    let (_, _, cache) = get_cached(c, &format!("/api/v2/barbers/100/slots?date={}", day(6))).await;
    assert!(cache.contains("hit"), "{cache}");
    // Without a source, every source runs.
    let (status, v) = admin_post(c, "/api/v2/cache/warm-cache", None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sources"].as_array().unwrap().len(), 2);
    assert_eq!(f.app.m.warms().len(), 3);

    let uri = format!(
        "/api/v2/cache/benchmark/slots?barber_id=100&date={}&iterations=10",
        f.d
    );
    let (status, v) = admin_post(c, &uri, None).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["uncached"]["iterations"], 10);
    assert_eq!(v["cached"]["cache_hits"], 9);
    // Through the booking-slots rule: one load, then nine hits.
    let bench: Vec<LoadOutcome> = f
        .app
        .m
        .loads()
        .into_iter()
        .filter(|l| l.key.starts_with("booking:bench:slots:100:"))
        .map(|l| l.outcome)
        .collect();
    let mut want = vec![LoadOutcome::Loaded];
    want.extend(std::iter::repeat_n(LoadOutcome::Hit, 9));
    assert_eq!(bench, want);
}
