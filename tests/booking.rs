//! The booking plugin behind the caching layer, end to end: the real binary with its
//! shipped policy, a real SQLite file, warming, exact event-driven invalidation.

use jiff::{ToSpan, Zoned};
use larder_testkit::server::{Larder, LarderOptions, workspace_root};
use serde_json::{Value, json};

const READ_KEY: &str = "read-key-0123456789abcdef";

fn day(offset: i64) -> String {
    let d = Zoned::now().date().checked_add(offset.days()).unwrap();
    d.to_string()
}

struct Shop {
    larder: Larder,
    _dir: tempfile::TempDir,
    c: reqwest::Client,
}

impl Shop {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "plugins:\n  aliexpress: {{ enabled: false }}\n  booking:\n    settings: {{ database: {} }}\n",
            dir.path().join("booking.db").display()
        );
        let larder = Larder::start_with(LarderOptions {
            config: Some(config),
            env: vec![("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into())],
            policies: Some(workspace_root().join("policies")),
        })
        .unwrap();
        Self {
            larder,
            _dir: dir,
            c: reqwest::Client::new(),
        }
    }

    async fn get(&self, path: &str) -> (String, Value) {
        let r = self.c.get(self.larder.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
        (status, r.json().await.unwrap())
    }

    async fn slots(&self, barber: u32, date: &str) -> (String, Vec<String>) {
        let (status, body) = self
            .get(&format!("/api/v2/barbers/{barber}/slots?date={date}"))
            .await;
        let starts = body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["start"].as_str().unwrap().to_owned())
            .collect();
        (status, starts)
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .c
            .post(self.larder.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }
}

fn hit(status: &str) -> bool {
    status.contains("; hit;")
}

#[tokio::test]
async fn warming_misses_hits_and_exact_invalidation() {
    let shop = Shop::start();
    let soon = day(2);

    // The start-up warm job computed the next 7 days: the first user request is a hit.
    let (status, free) = shop.slots(1, &soon).await;
    assert!(hit(&status), "not warmed: {status}");
    assert!(!free.is_empty(), "barber 1 has no free slot on {soon}");
    let jobs: Value = shop
        .c
        .get(shop.larder.url("/admin/cache/jobs"))
        .header("x-admin-key", READ_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let job = jobs
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["name"] == "booking-slots-next-7-days")
        .unwrap();
    assert!(job["last_entries"].as_u64().unwrap() >= 7, "{job}");

    // Beyond the warmed window: a miss, then a hit.
    let later = day(10);
    let (status, _) = shop.slots(1, &later).await;
    assert!(status.contains("fwd=uri-miss"), "{status}");
    let (status, _) = shop.slots(1, &later).await;
    assert!(hit(&status), "{status}");

    // Other entries that must survive the booking.
    assert!(hit(&shop.slots(2, &soon).await.0));
    assert!(hit(&shop.slots(1, &day(3)).await.0));
    assert!(
        hit(&shop.get("/api/v2/services").await.0)
            || shop.get("/api/v2/services").await.0.contains("hit")
    );
    shop.get("/api/v2/analytics/dashboard").await;
    assert!(hit(&shop.get("/api/v2/analytics/dashboard").await.0));

    // Book the first free slot: the very next slots answer no longer offers it.
    let start = free[0].clone();
    let (code, appt) = shop
        .post(
            "/api/v2/appointments",
            json!({"barber_id": 1, "service_id": 1, "client_id": 1, "date": soon, "start": start}),
        )
        .await;
    assert_eq!(code, 201, "{appt}");
    let (status, now_free) = shop.slots(1, &soon).await;
    assert!(!hit(&status), "served the pre-booking entry: {status}");
    assert!(
        !now_free.contains(&start),
        "{start} still shown free after the 201"
    );
    assert_eq!(now_free.len() + 1, free.len().max(now_free.len() + 1));

    // Only that barber and date were purged; analytics untouched by a booking.
    assert!(
        hit(&shop.slots(2, &soon).await.0),
        "another barber's entry was purged"
    );
    assert!(
        hit(&shop.slots(1, &day(3)).await.0),
        "another date's entry was purged"
    );
    assert!(hit(&shop.slots(1, &later).await.0));
    assert!(hit(&shop.get("/api/v2/analytics/dashboard").await.0));

    // A payment purges analytics only.
    let (code, pay) = shop
        .post(
            "/api/v2/payments",
            json!({"appointment_id": appt["id"], "amount": 35.0}),
        )
        .await;
    assert_eq!(code, 201, "{pay}");
    let (status, _) = shop.get("/api/v2/analytics/dashboard").await;
    assert!(!hit(&status), "analytics survived a payment: {status}");
    assert!(hit(&shop.slots(2, &soon).await.0), "a payment purged slots");
    assert!(
        hit(&shop.get("/api/v2/services").await.0),
        "a payment purged the catalog"
    );
}

#[tokio::test]
async fn concurrent_creates_for_one_slot_book_it_once() {
    let shop = Shop::start();
    let date = day(12);
    let (_, free) = shop.slots(3, &date).await;
    let start = free.first().expect("a free slot").clone();
    let tasks: Vec<_> = (0..20)
        .map(|client| {
            let c = shop.c.clone();
            let url = shop.larder.url("/api/v2/appointments");
            let body = json!({"barber_id": 3, "service_id": 1, "client_id": client + 1, "date": date, "start": start});
            tokio::spawn(async move { c.post(url).json(&body).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 19, "{codes:?}");
    let (_, after) = shop.slots(3, &date).await;
    assert!(!after.contains(&start));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    let shop = Shop::start();
    let r = shop
        .c
        .get(
            shop.larder
                .url(&format!("/api/v2/barbers/999/slots?date={}", day(2))),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("barber"),
        "{body}"
    );

    let r = shop
        .c
        .get(shop.larder.url("/api/v2/barbers/1/slots?date=21-11-2026"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body.to_string().contains("date"), "{body}");

    let (code, body) = shop
        .post(
            "/api/v2/appointments",
            json!({"barber_id": 1, "service_id": 1, "client_id": 1, "date": day(12), "start": "03:00"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("working hours"),
        "{body}"
    );
}
