//! The booking routes in process: slots, bookings (including concurrent ones), events,
//! validation, the cache-admin aliases and warm sources.

mod common;

use std::sync::Arc;

use common::{add_test_barber, app, day, sql};
use larder_booking::time::weekday_index;
use poem::Route;
use poem::http::StatusCode;
use poem::test::{TestClient, TestResponse};
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

async fn get(client: &TestClient<Route>, uri: &str) -> (StatusCode, Value) {
    read(client.get(uri).send().await).await
}

async fn post(client: &TestClient<Route>, uri: &str, body: Value) -> (StatusCode, Value) {
    read(client.post(uri).body_json(&body).send().await).await
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
    app: common::App,
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
    let (c, d) = (&f.app.client, &f.d);
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

    // 10:00–10:30 booked and 14:00–15:00 off.
    sql(
        &f.app.db_path,
        &format!(
            "INSERT INTO appointments (barber_id, client_id, service_id, date, start_min, end_min, status, price_cents, created_at)
             VALUES (100, 1, 1, '{d}', 600, 630, 'booked', 3500, '2025-01-01T00:00:00');
             INSERT INTO time_off (barber_id, start_date, end_date, start_min, end_min, reason)
             VALUES (100, '{d}', '{d}', 840, 900, 'errand');"
        ),
    );
    let (_, v) = get(c, &format!("/api/v2/barbers/100/slots?date={d}")).await;
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
    let (c, d) = (&f.app.client, &f.d);
    let (status, v) = post(c, "/api/v2/appointments", booking(100, 1, 5, d, "11:00")).await;
    assert_eq!(status, StatusCode::CREATED, "{v}");
    let id = v["id"].as_i64().unwrap();
    assert_eq!(v["start"], "11:00");
    assert_eq!(v["end"], "11:30");
    assert_eq!(v["status"], "booked");

    // The very next computation no longer offers it, nor a start that would overlap it.
    let (_, slots) = get(c, &format!("/api/v2/barbers/100/slots?date={d}")).await;
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

    let created = f.app.host.events_named("appointment.created");
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
    let (status, v) = read(c.delete(format!("/api/v2/appointments/{id}")).send().await).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "cancelled");
    let (_, slots) = get(c, &format!("/api/v2/barbers/100/slots?date={d}")).await;
    assert!(starts(&slots).contains(&"11:00".into()));
    let cancelled = f.app.host.events_named("appointment.cancelled");
    assert_eq!(cancelled.len(), 1);
    assert_eq!(cancelled[0].event.fields["appointment_id"], id);
    assert_eq!(cancelled[0].event.fields["date"], d.as_str());
    assert_eq!(cancelled[0].committed, Some(true));
    let (status, v) = read(c.delete(format!("/api/v2/appointments/{id}")).send().await).await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(v["error"], "already_cancelled");

    // The freed slot can be booked again.
    let (status, _) = post(c, "/api/v2/appointments", booking(100, 2, 7, d, "11:00")).await;
    assert_eq!(status, StatusCode::CREATED);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_for_one_slot_book_it_once() {
    let f = fixture().await;
    let client: Arc<TestClient<Route>> = f.app.client.clone();
    let d = f.d.clone();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let mut tasks = Vec::new();
    for i in 0..20 {
        let (client, d, barrier) = (client.clone(), d.clone(), barrier.clone());
        // Half ask for 15:00 exactly, half for 15:15 (overlapping 15:00–15:45 of service 2).
        let start = if i % 2 == 0 { "15:00" } else { "15:15" };
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            let resp = client
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
    assert_eq!(f.app.host.events_named("appointment.created").len(), 1);
}

#[tokio::test]
async fn payments_are_recorded_and_emitted() {
    let f = fixture().await;
    let (c, d) = (&f.app.client, &f.d);
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
    let events = f.app.host.events_named("payment.recorded");
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
    let (c, d) = (&f.app.client, &f.d);
    let cases: Vec<(&str, StatusCode, &str)> = vec![
        (
            "/api/v2/barbers/9999/slots?date=2030-01-07",
            StatusCode::NOT_FOUND,
            "barber_id",
        ),
        (
            "/api/v2/barbers/100/slots?date=07-01-2030",
            StatusCode::BAD_REQUEST,
            "date",
        ),
        (
            "/api/v2/barbers/100/slots?date=2030-02-30",
            StatusCode::BAD_REQUEST,
            "date",
        ),
        ("/api/v2/barbers/100/slots", StatusCode::BAD_REQUEST, "date"),
        (
            "/api/v2/barbers/007/slots?date=2030-01-07",
            StatusCode::BAD_REQUEST,
            "barber_id",
        ),
        (
            "/api/v2/barbers/abc/slots?date=2030-01-07",
            StatusCode::BAD_REQUEST,
            "barber_id",
        ),
        (
            "/api/v2/barbers/100/slots?date=2030-01-07&service_id=999",
            StatusCode::NOT_FOUND,
            "service_id",
        ),
        (
            "/api/v2/barbers/100/availability/weekly?week_start=2030-01-09",
            StatusCode::BAD_REQUEST,
            "week_start",
        ),
        ("/api/v2/users/999999", StatusCode::NOT_FOUND, "user_id"),
        (
            "/api/v2/appointments?size=1000",
            StatusCode::BAD_REQUEST,
            "size",
        ),
    ];
    for (uri, want, field) in cases {
        let (status, v) = get(c, uri).await;
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
    assert!(f.app.host.events_named("appointment.created").is_empty());
}

#[tokio::test]
async fn catalog_profiles_and_analytics_answer() {
    let f = fixture().await;
    let c = &f.app.client;
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
        c.put("/api/v2/services/4")
            .body_json(&json!({"duration_minutes": 20, "price": 22.5}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["duration_minutes"], 20);
    assert_eq!(
        f.app.host.events_named("service.changed")[0].event.fields["service_id"],
        4
    );

    let (status, v) = read(
        c.put("/api/v2/users/3")
            .body_json(&json!({"notes": "skin fade, no. 2 on top"}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["notes"], "skin fade, no. 2 on top");
    let (status, v) = read(
        c.put("/api/v2/barbers/100")
            .body_json(&json!({"bio": "New bio."}))
            .send()
            .await,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["working_hours"].as_array().unwrap().len(), 6);
    let profile_events: Vec<Value> = f
        .app
        .host
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
    let reqs = f
        .app
        .plugin
        .warm_requests("slots_next_7_days")
        .await
        .unwrap();
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
    assert!(f.app.plugin.warm_requests("nope").await.is_err());
    // Every warm request is a route that answers 200.
    for r in &reqs {
        let (status, _) = get(&f.app.client, &r.path).await;
        assert_eq!(status, StatusCode::OK, "{}", r.path);
    }
}

#[tokio::test]
async fn cache_admin_aliases_use_the_plugin_context() {
    let f = fixture().await;
    let c = &f.app.client;
    let (status, v) = get(c, "/api/v2/cache/health").await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["status"], "healthy");
    let (_, v) = get(c, "/api/v2/cache/metrics").await;
    assert_eq!(v["hit_rate"], 0.75);
    let (status, _) = get(c, "/api/v2/cache/performance-report").await;
    assert_eq!(status, StatusCode::OK);

    let (status, v) = post(
        c,
        "/api/v2/cache/invalidate",
        json!({"patterns": ["booking:slots:1:*", "**"]}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(v["field"], "patterns[1]");
    assert!(f.app.host.invalidations.lock().unwrap().is_empty());
    let (status, v) = post(c, "/api/v2/cache/invalidate", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{v}");
    let (status, v) = post(
        c,
        "/api/v2/cache/invalidate",
        json!({"patterns": ["booking:slots:1:*"], "tags": ["analytics"]}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["cleared_entries"], 2);
    assert_eq!(
        *f.app.host.invalidations.lock().unwrap(),
        vec![
            larder_plugin::Invalidation::Pattern("booking:slots:1:*".into()),
            larder_plugin::Invalidation::Tags(vec!["analytics".into()]),
        ]
    );

    let (status, v) = post(
        c,
        "/api/v2/cache/warm-cache?source=slots_next_7_days",
        json!({}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sources"][0]["requests"].as_array().unwrap().len(), 28);
    assert_eq!(v["started"], true);
    assert_eq!(
        *f.app.host.warmed.lock().unwrap(),
        ["slots_next_7_days"],
        "the alias asks the core to run the source"
    );
    // Without a source, every source runs.
    let (status, v) = read(c.post("/api/v2/cache/warm-cache").send().await).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["sources"].as_array().unwrap().len(), 2);
    assert_eq!(f.app.host.warmed.lock().unwrap().len(), 3);

    let uri = format!(
        "/api/v2/cache/benchmark/slots?barber_id=100&date={}&iterations=10",
        f.d
    );
    let (status, v) = read(c.post(uri).send().await).await;
    assert_eq!(status, StatusCode::OK, "{v}");
    assert_eq!(v["uncached"]["iterations"], 10);
    assert_eq!(v["cached"]["cache_hits"], 9);
}
