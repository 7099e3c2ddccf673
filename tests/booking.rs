//! The booking plugin behind the caching layer, end to end: the real binary with its
//! shipped policy, a real SQLite file, warming, exact event-driven invalidation.
//!
//! Each server's clock starts at a chosen instant (`server.clock_start`): the shop's
//! calendar, the generated data and the warm window follow it, never the day the tests run.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use larder_testkit::server::{Larder, LarderOptions, workspace_root};
use serde_json::{Value, json};

const READ_KEY: &str = "read-key-0123456789abcdef";
const WRITE_KEY: &str = "write-key-0123456789abcdef";

/// The default shop's zone.
const SHOP_ZONE: &str = "America/New_York";

/// 10:00 in New York on each day of one week (the clocks go forward on its Sunday), and
/// 21:30 on a Tuesday, when New York's date is a day behind UTC's.
const MONDAY: &str = "2026-03-02T15:00:00Z";
const TUESDAY: &str = "2026-03-03T15:00:00Z";
const WEDNESDAY: &str = "2026-03-04T15:00:00Z";
const THURSDAY: &str = "2026-03-05T15:00:00Z";
const FRIDAY: &str = "2026-03-06T15:00:00Z";
const SATURDAY: &str = "2026-03-07T15:00:00Z";
const DST_SUNDAY: &str = "2026-03-08T14:00:00Z";
const TUESDAY_EVENING: &str = "2026-03-04T02:30:00Z";

/// The shop's date at `instant`, plus `offset` days.
fn shop_day(instant: &str, offset: i64) -> Date {
    let at: jiff::Timestamp = instant.parse().unwrap();
    let today = at.to_zoned(TimeZone::get(SHOP_ZONE).unwrap()).date();
    today.checked_add(jiff::Span::new().days(offset)).unwrap()
}

struct Shop {
    larder: Larder,
    _dir: tempfile::TempDir,
    c: reqwest::Client,
    /// The instant the server's clock started at.
    at: &'static str,
}

impl Shop {
    fn start(at: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let config = format!(
            "server:\n  clock_start: \"{at}\"\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking:\n    settings: {{ database: {} }}\n",
            dir.path().join("booking.db").display()
        );
        let larder = Larder::start_with(LarderOptions {
            config: Some(config),
            env: vec![
                ("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into()),
                ("LARDER_ADMIN_KEY".into(), WRITE_KEY.into()),
            ],
            policies: Some(workspace_root().join("policies")),
        })
        .unwrap();
        Self {
            larder,
            _dir: dir,
            c: reqwest::Client::new(),
            at,
        }
    }

    /// The shop's today plus `offset` days.
    fn day(&self, offset: i64) -> Date {
        shop_day(self.at, offset)
    }

    async fn get(&self, path: &str) -> (String, Value) {
        let r = self.c.get(self.larder.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
        (status, r.json().await.unwrap())
    }

    async fn slots(&self, barber: u32, date: Date) -> (String, Vec<String>) {
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

    /// The first day from the shop's today + `from` on (within two weeks) on which `barber`
    /// has a free slot, and those slots.
    async fn free_day(&self, barber: u32, from: i64) -> (Date, Vec<String>) {
        for offset in from..from + 14 {
            let (_, free) = self.slots(barber, self.day(offset)).await;
            if !free.is_empty() {
                return (self.day(offset), free);
            }
        }
        panic!("{}: barber {barber} has no free slot in two weeks", self.at)
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

/// Warming, misses, hits and exact invalidation, at `at`.
async fn warming_misses_hits_and_exact_invalidation(at: &'static str) {
    let shop = Shop::start(at);

    // The start-up warm job computed the shop's today and the next 6 days: the first user
    // request for any of them is a hit, the day after is not.
    for offset in 0..7 {
        let (status, _) = shop.slots(1, shop.day(offset)).await;
        assert!(hit(&status), "{at}: day {offset} not warmed: {status}");
    }
    let (status, _) = shop.slots(1, shop.day(7)).await;
    assert!(status.contains("fwd=uri-miss"), "{at}: day 7: {status}");
    let within = std::time::Duration::from_secs(20);
    let job = shop
        .larder
        .warm_job_after_first_run(READ_KEY, "booking-slots-next-7-days", within)
        .await;
    assert!(job["last_entries"].as_u64().unwrap() >= 7, "{job}");

    // The catalog job (plain requests, `plugin: booking`) runs at start-up too.
    let catalog = shop
        .larder
        .warm_job_after_first_run(READ_KEY, "booking-catalog", within)
        .await;
    assert_eq!(catalog["last_entries"], 3, "{catalog}");
    assert_eq!(catalog["last_errors"], 0, "{catalog}");
    for path in ["/api/v2/services", "/api/v2/settings", "/api/v2/barbers"] {
        let (status, _) = shop.get(path).await;
        assert!(hit(&status), "{at}: {path} not warmed: {status}");
    }

    // A warmed day (after today, so no notice applies) with a free slot for barber 1, and
    // another warmed day.
    let (soon, free) = shop.free_day(1, 1).await;
    let offset = (soon - shop.day(0)).get_days();
    assert!(
        offset < 7,
        "{at}: barber 1 has no free slot in the warmed week"
    );
    let other = shop.day(if offset == 1 { 2 } else { 1 });

    // Beyond the warmed window: a miss, then a hit.
    let later = shop.day(10);
    let (status, _) = shop.slots(1, later).await;
    assert!(status.contains("fwd=uri-miss"), "{status}");
    let (status, _) = shop.slots(1, later).await;
    assert!(hit(&status), "{status}");

    // Other entries that must survive the booking.
    assert!(hit(&shop.slots(2, soon).await.0));
    assert!(hit(&shop.slots(1, other).await.0));
    shop.get("/api/v2/services").await;
    assert!(hit(&shop.get("/api/v2/services").await.0));
    shop.get("/api/v2/analytics/dashboard").await;
    assert!(hit(&shop.get("/api/v2/analytics/dashboard").await.0));

    // Book the first free slot: the very next slots answer no longer offers it.
    let start = free[0].clone();
    let (code, appt) = shop
        .post(
            "/api/v2/appointments",
            json!({"barber_id": 1, "service_id": 1, "client_id": 1, "date": soon.to_string(), "start": start}),
        )
        .await;
    assert_eq!(code, 201, "{at}: {appt}");
    let (status, now_free) = shop.slots(1, soon).await;
    assert!(!hit(&status), "served the pre-booking entry: {status}");
    assert!(
        !now_free.contains(&start),
        "{start} still shown free after the 201"
    );
    assert!(now_free.len() < free.len(), "{free:?} -> {now_free:?}");

    // Only that barber and date were purged; analytics untouched by a booking.
    assert!(
        hit(&shop.slots(2, soon).await.0),
        "another barber's entry was purged"
    );
    assert!(
        hit(&shop.slots(1, other).await.0),
        "another date's entry was purged"
    );
    assert!(hit(&shop.slots(1, later).await.0));
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
    assert!(hit(&shop.slots(2, soon).await.0), "a payment purged slots");
    assert!(
        hit(&shop.get("/api/v2/services").await.0),
        "a payment purged the catalog"
    );
}

/// One test per instant, so a calendar-dependent failure names its day.
mod at {
    macro_rules! instants {
        ($($name:ident = $at:expr),* $(,)?) => {$(
            #[tokio::test]
            async fn $name() {
                super::warming_misses_hits_and_exact_invalidation($at).await
            }
        )*};
    }
    instants! {
        monday = super::MONDAY,
        tuesday = super::TUESDAY,
        wednesday = super::WEDNESDAY,
        thursday = super::THURSDAY,
        friday = super::FRIDAY,
        saturday = super::SATURDAY,
        dst_sunday = super::DST_SUNDAY,
        tuesday_evening = super::TUESDAY_EVENING,
    }
}

/// The `ttl=` of a `Cache-Status`.
fn ttl_of(status: &str) -> u64 {
    status
        .split("; ")
        .find_map(|p| p.strip_prefix("ttl="))
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no ttl in {status}"))
}

/// At 21:30 in New York UTC's date is already tomorrow. The policy's `today` is the shop's
/// (the plugin's zone), so the shop's today keeps its one-minute TTL and its tomorrow the
/// slots class's five minutes; with UTC dates they got a day and a minute.
#[tokio::test]
async fn the_policys_today_is_the_shops_date_in_the_evening() {
    let shop = Shop::start(TUESDAY_EVENING);
    assert_eq!(shop.day(0).to_string(), "2026-03-03");
    for barber in 1..=3 {
        let (today, _) = shop.slots(barber, shop.day(0)).await;
        assert!(ttl_of(&today) <= 60, "today: {today}");
        let (tomorrow, _) = shop.slots(barber, shop.day(1)).await;
        assert!(
            (61..=300).contains(&ttl_of(&tomorrow)),
            "tomorrow: {tomorrow}"
        );
        let (yesterday, _) = shop.slots(barber, shop.day(-1)).await;
        assert!(ttl_of(&yesterday) > 300, "yesterday: {yesterday}");
    }
}

/// The seed's `POST /api/v2/cache/warm-cache` warms: after a purge of everything, it runs
/// the warm sources through the server and the next request for a warmed day is a hit.
/// The seed's benchmark fields are there next to ours.
#[tokio::test]
async fn the_seeds_warm_cache_warms_and_its_benchmark_has_the_seeds_fields() {
    let shop = Shop::start(WEDNESDAY);
    let post = |path: &'static str, body: Option<Value>| {
        let mut r = shop
            .c
            .post(shop.larder.url(path))
            .header("x-admin-key", WRITE_KEY);
        if let Some(b) = body {
            r = r.json(&b);
        }
        async move {
            let r = r.send().await.unwrap();
            let status = r.status().as_u16();
            (status, r.json::<Value>().await.unwrap_or(Value::Null))
        }
    };
    let (code, cleared) = post("/api/v2/cache/invalidate", Some(json!({"all": true}))).await;
    assert_eq!(code, 200, "{cleared}");
    let (status, _) = shop.slots(1, shop.day(2)).await;
    assert!(!hit(&status), "purged, yet {status}");
    let (status, _) = shop.slots(2, shop.day(3)).await;
    assert!(!hit(&status), "purged, yet {status}");

    let (code, warm) = post("/api/v2/cache/warm-cache", None).await;
    assert_eq!(code, 200, "{warm}");
    assert_eq!(warm["started"], true, "{warm}");
    assert_eq!(warm["errors"], 0, "{warm}");
    let sources = warm["sources"].as_array().unwrap();
    assert_eq!(sources.len(), 2, "{warm}");
    for s in sources {
        assert_eq!(
            s["entries"].as_u64(),
            Some(s["requests"].as_array().unwrap().len() as u64),
            "{s}"
        );
    }
    // The policy's job ran it, so the admin API shows the run.
    assert_eq!(sources[0]["job"], "booking-slots-next-7-days", "{warm}");
    let (status, _) = shop.slots(3, shop.day(4)).await;
    assert!(hit(&status), "warmed, yet {status}");

    let (code, bench) = post("/api/v2/cache/benchmark/slots?iterations=5", None).await;
    assert_eq!(code, 200, "{bench}");
    assert_eq!(bench["avg_cached_ms"], bench["cached"]["avg_ms"], "{bench}");
    assert_eq!(
        bench["avg_uncached_ms"], bench["uncached"]["avg_ms"],
        "{bench}"
    );
    assert_eq!(
        bench["performance_improvement_percent"], bench["improvement_percent"],
        "{bench}"
    );
    let improvement = bench["improvement_percent"].as_f64().unwrap();
    assert_eq!(bench["meets_target"], improvement >= 30.0, "{bench}");
}

#[tokio::test]
async fn concurrent_creates_for_one_slot_book_it_once() {
    let shop = Shop::start(WEDNESDAY);
    let (date, free) = shop.free_day(3, 12).await;
    let start = free[0].clone();
    let tasks: Vec<_> = (0..20)
        .map(|client| {
            let c = shop.c.clone();
            let url = shop.larder.url("/api/v2/appointments");
            let body = json!({"barber_id": 3, "service_id": 1, "client_id": client + 1, "date": date.to_string(), "start": start});
            tokio::spawn(async move { c.post(url).json(&body).send().await.unwrap().status().as_u16() })
        })
        .collect();
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|c| **c == 201).count(), 1, "{codes:?}");
    assert_eq!(codes.iter().filter(|c| **c == 409).count(), 19, "{codes:?}");
    let (_, after) = shop.slots(3, date).await;
    assert!(!after.contains(&start));
}

#[tokio::test]
async fn bad_input_gets_a_clear_error() {
    // Tuesday evening: the shop's today (Tuesday) is not UTC's (Wednesday).
    let shop = Shop::start(TUESDAY_EVENING);
    let r = shop
        .c
        .get(
            shop.larder
                .url(&format!("/api/v2/barbers/999/slots?date={}", shop.day(2))),
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

    let book = |date: Date, start: &str| json!({"barber_id": 1, "service_id": 1, "client_id": 1, "date": date.to_string(), "start": start});

    // A working day of barber 1, at 03:00.
    let (working, _) = shop.free_day(1, 1).await;
    let (code, body) = shop
        .post("/api/v2/appointments", book(working, "03:00"))
        .await;
    assert_eq!(code, 400, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("working hours"),
        "{body}"
    );

    // Ratings print with one decimal, not as `4.3999999999999995`.
    let (_, barbers) = shop.get("/api/v2/barbers").await;
    for b in barbers.as_array().unwrap() {
        let text = b["rating"].to_string();
        assert!(text.split('.').nth(1).is_none_or(|d| d.len() <= 1), "{b}");
    }

    // A day barber 1 does not work, named by its weekday.
    let (_, profile) = shop.get("/api/v2/barbers/1").await;
    let works: Vec<&str> = profile["working_hours"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["weekday"].as_str().unwrap())
        .collect();
    let weekday = |d: Date| format!("{:?}", d.weekday()).to_lowercase();
    let off = (1..8)
        .map(|i| shop.day(i))
        .find(|d| !works.contains(&weekday(*d).as_str()))
        .expect("barber 1 has a day off");
    let (code, body) = shop.post("/api/v2/appointments", book(off, "11:00")).await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "outside_working_hours", "{body}");
    assert_eq!(
        body["message"],
        format!("barber 1 does not work on {}s", weekday(off)),
        "{body}"
    );

    // Wrong JSON values name their field, and a bad path id its parameter (poem-openapi
    // calls it `param0`).
    let (code, body) = shop
        .post(
            "/api/v2/payments",
            json!({"appointment_id": 1, "amount": 5, "method": "bitcoin"}),
        )
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["field"], "method", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("\"cash\""),
        "{body}"
    );
    let r = shop
        .c
        .put(shop.larder.url("/api/v2/services/1"))
        .json(&json!({"duration_minutes": -5}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "duration_minutes", "{body}");
    let r = shop
        .c
        .get(shop.larder.url("/api/v2/barbers/abc/slots?date=2026-03-05"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["field"], "barber_id", "{body}");
    assert!(!body.to_string().contains("param0"), "{body}");

    // Unknown body fields are ignored (the seed's clients may send extra ones), but an
    // update that sets nothing is refused and purges nothing.
    shop.get("/api/v2/users/5").await;
    assert!(hit(&shop.get("/api/v2/users/5").await.0));
    let r = shop
        .c
        .put(shop.larder.url("/api/v2/users/5"))
        .json(&json!({"unknown_field": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "nothing_to_update", "{body}");
    assert!(
        hit(&shop.get("/api/v2/users/5").await.0),
        "an empty update purged the profile"
    );

    // The shop's yesterday is in the past even though UTC's date says it is today.
    let (code, body) = shop
        .post("/api/v2/appointments", book(shop.day(-1), "11:00"))
        .await;
    assert_eq!(code, 400, "{body}");
    assert_eq!(body["error"], "date_in_past", "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains(&format!("today is {}", shop.day(0))),
        "{body}"
    );
}

/// A cache that follows HTTP's caching rules (RFC 9111, `http-cache-semantics`): a browser's
/// own cache, or a shared one (a CDN, a proxy). Its clock is the test's, starting at the
/// server's start instant.
struct HonouringCache {
    shared: bool,
    started: std::time::SystemTime,
    entries: std::collections::HashMap<String, (http_cache_semantics::CachePolicy, Value)>,
    /// How the last answer was obtained: `fresh` (no request), `revalidated` (a 304),
    /// `fetched` (a 200 from the server).
    last: &'static str,
}

impl HonouringCache {
    fn new(shared: bool, at: &str) -> Self {
        let at: jiff::Timestamp = at.parse().unwrap();
        Self {
            shared,
            started: std::time::SystemTime::from(at),
            entries: Default::default(),
            last: "",
        }
    }

    /// GET `path` through the cache, `secs` seconds after its clock started.
    async fn get(&mut self, shop: &Shop, path: &str, secs: u64) -> Value {
        use http_cache_semantics::{AfterResponse, BeforeRequest, CacheOptions, CachePolicy};
        let now = self.started + std::time::Duration::from_secs(secs);
        let url = shop.larder.url(path);
        let req = http::Request::get(&url).body(()).unwrap();
        let mut send = req.headers().clone();
        if let Some((policy, body)) = self.entries.get(path) {
            match policy.before_request(&req, now) {
                BeforeRequest::Fresh(_) => {
                    self.last = "fresh";
                    return body.clone();
                }
                BeforeRequest::Stale { request, .. } => send = request.headers,
            }
        }
        let r = shop.c.get(&url).headers(send).send().await.unwrap();
        let mut res = http::Response::builder().status(r.status().as_u16());
        for (k, v) in r.headers() {
            res = res.header(k.as_str(), v.as_bytes());
        }
        let res = res.body(()).unwrap();
        let body: Value = if r.status() == 304 {
            Value::Null
        } else {
            r.json().await.unwrap()
        };
        let opts = CacheOptions {
            shared: self.shared,
            ..CacheOptions::default()
        };
        let (policy, body) = match self.entries.get(path) {
            Some((old, cached)) => match old.after_response(&req, &res, now) {
                AfterResponse::NotModified(policy, _) => {
                    self.last = "revalidated";
                    (policy, cached.clone())
                }
                AfterResponse::Modified(policy, _) => {
                    self.last = "fetched";
                    (policy, body)
                }
            },
            None => {
                self.last = "fetched";
                (CachePolicy::new_options(&req, &res, now, opts), body)
            }
        };
        assert!(
            !body.is_null(),
            "{path}: a 304 for a request that had no copy"
        );
        if policy.is_storable() {
            self.entries.insert(path.to_owned(), (policy, body.clone()));
        } else {
            self.entries.remove(path);
        }
        body
    }

    fn holds(&self, path: &str) -> bool {
        self.entries.contains_key(path)
    }
}

/// After a booking's 201, neither a browser nor a CDN honouring `Cache-Control` shows the
/// slot as free (slots are purged by tag, so they go out `no-cache` with an ETag and each
/// reuse revalidates); an unchanged day costs a 304. A user's profile (email, phone) is
/// never kept by a shared cache.
#[tokio::test]
async fn a_booked_slot_is_never_shown_free_by_a_cache_that_honours_cache_control() {
    let shop = Shop::start(THURSDAY);
    let (date, free) = shop.free_day(2, 1).await;
    let other = shop
        .free_day(2, i64::from((date - shop.day(0)).get_days()) + 1)
        .await
        .0;
    let slots = |d: Date| format!("/api/v2/barbers/2/slots?date={d}");
    let starts = |body: &Value| -> Vec<String> {
        body["slots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["start"].as_str().unwrap().to_owned())
            .collect()
    };
    let mut browser = HonouringCache::new(false, THURSDAY);
    let mut cdn = HonouringCache::new(true, THURSDAY);
    for cache in [&mut browser, &mut cdn] {
        let body = cache.get(&shop, &slots(date), 0).await;
        assert_eq!(starts(&body), free);
        assert!(cache.holds(&slots(date)), "a public answer may be kept");
        cache.get(&shop, &slots(other), 0).await;
    }

    let (code, appt) = shop
        .post(
            "/api/v2/appointments",
            json!({"barber_id": 2, "service_id": 1, "client_id": 7, "date": date.to_string(), "start": free[0]}),
        )
        .await;
    assert_eq!(code, 201, "{appt}");

    for (name, cache) in [("browser", &mut browser), ("cdn", &mut cdn)] {
        let body = cache.get(&shop, &slots(date), 1).await;
        assert!(
            !starts(&body).contains(&free[0]),
            "{name} showed the booked slot {} free ({})",
            free[0],
            cache.last
        );
        assert_eq!(cache.last, "fetched", "{name}");
        // Nothing changed on the other day: the copy is reused after a bodiless 304.
        cache.get(&shop, &slots(other), 1).await;
        assert_eq!(cache.last, "revalidated", "{name}");
    }

    let profile = "/api/v2/users/1";
    cdn.get(&shop, profile, 2).await;
    assert!(!cdn.holds(profile), "a shared cache kept a user's profile");
    browser.get(&shop, profile, 2).await;
    assert!(browser.holds(profile), "the user's own browser may keep it");
}

#[tokio::test]
async fn the_hit_rate_counts_every_rule_and_the_seeds_low_rate_alert_fires() {
    let shop = Shop::start(WEDNESDAY);
    let report = || async {
        let r = shop
            .c
            .get(shop.larder.url("/api/v2/cache/performance-report"))
            .header("x-admin-key", READ_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        r.json::<Value>().await.unwrap()
    };
    // Misses: days past the warm window, each asked once.
    for barber in 1..=3 {
        for offset in 8..40 {
            let (status, _) = shop.slots(barber, shop.day(offset)).await;
            assert!(!hit(&status), "{status}");
        }
    }
    let low = report().await;
    let rate = low["hit_rate"]
        .as_f64()
        .expect("a hit rate once rules answered");
    assert!(rate < 0.4, "{low}");
    assert!(
        low["alerts"][0]
            .as_str()
            .is_some_and(|a| a.starts_with("low hit rate")),
        "{low}"
    );
    // Hits: the same day again and again.
    for _ in 0..400 {
        let (status, _) = shop.slots(1, shop.day(8)).await;
        assert!(hit(&status), "{status}");
    }
    let good = report().await;
    assert!(good["hit_rate"].as_f64().unwrap() > 0.6, "{good}");
    assert_eq!(good["alerts"], json!([]), "{good}");
    let metrics: Value = shop
        .c
        .get(shop.larder.url("/api/v2/cache/metrics"))
        .header("x-admin-key", READ_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(metrics["hit_rate"], good["hit_rate"], "{metrics}");
}
