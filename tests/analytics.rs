//! The analytics plugin behind the caching layer, end to end: the real binary with its
//! shipped policy, a generated SQLite dataset (small, through the generator's own code),
//! real HS256 tokens naming tenants, exact event-driven invalidation and the seed's
//! cache-admin aliases.

use larder_testkit::auth::{self, NOW_TEXT};
use larder_testkit::server::{ANALYTICS_SMALL, Larder, LarderOptions, run_larder, workspace_root};
use serde_json::{Value, json};

const ADMIN: &str = "admin-key-0123456789abcdef0123";
/// The server's today (`auth::NOW_TEXT` is 2026-03-04T15:00:00Z).
const TODAY: &str = "2026-03-04";

fn config(extra: &str) -> String {
    format!(
        "server:\n  clock_start: \"{NOW_TEXT}\"\nsecurity:\n  admin_keys:\n    - {{ key: \"{ADMIN}\", role: write }}\n  auth:\n    jwt:\n      - algorithms: [HS256]\n        secret: \"{}\"\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n  analytics:\n    rate_limit: {{ per_second: 0, per_minute: 0 }}\n    settings:\n      database: analytics.db\n      deep_page_offset: 100\n{extra}",
        auth::HS_SECRET
    )
}

fn token(sub: &str, tenant: Option<&str>, permissions: &[&str]) -> String {
    let mut extra = json!({ "permissions": permissions });
    if let Some(t) = tenant {
        extra["tid"] = json!(t);
    }
    auth::hs256(&auth::claims(sub, extra), None, None)
}

struct Api {
    larder: Larder,
    c: reqwest::Client,
    acme: String,
    globex: String,
}

struct Got {
    status: u16,
    cache: String,
    body: Value,
}

impl Api {
    fn start() -> Self {
        Self::start_config(config(""))
    }

    fn start_config(config: String) -> Self {
        let larder = Larder::start_with(LarderOptions {
            config: Some(config),
            env: ANALYTICS_SMALL
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            policies: Some(workspace_root().join("policies")),
        })
        .unwrap();
        Self {
            larder,
            c: reqwest::Client::new(),
            acme: token("ann", Some("acme"), &["analytics:read", "analytics:write"]),
            globex: token(
                "gus",
                Some("globex"),
                &["analytics:read", "analytics:write"],
            ),
        }
    }

    async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Got {
        let mut req = self
            .c
            .request(method.parse().unwrap(), self.larder.url(path));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let cache = r
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let text = r.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Got {
            status,
            cache,
            body,
        }
    }

    async fn get(&self, path: &str, token: &str) -> Got {
        self.call("GET", path, Some(token), None).await
    }

    async fn admin_audit(&self) -> Value {
        let r = self
            .c
            .get(self.larder.url("/admin/audit"))
            .header("x-admin-key", ADMIN)
            .send()
            .await
            .unwrap();
        r.json().await.unwrap()
    }
}

fn hit(g: &Got) -> bool {
    g.cache.contains("; hit")
}

const ROUTES: &[&str] = &[
    "/api/v1/analytics/revenue?start_date=2026-02-01&end_date=2026-03-04&granularity=weekly",
    "/api/v1/analytics/customers/segments?include_predictions=true",
    "/api/v1/analytics/products/performance?sort_by=growth&include_recommendations=true",
    "/api/v1/analytics/cohort-analysis?start_date=2025-12-01&end_date=2026-02-28",
    "/api/v1/analytics/funnels?start_date=2026-02-01&end_date=2026-03-04",
    "/api/v1/customers?sort_by=lifetime_value&size=5",
    "/api/v1/customers/3",
    "/api/v1/customers/3/recommendations?type=retention",
    "/api/v1/fraud/alerts?size=5",
    "/api/v1/fraud/dashboard?time_range=30d",
    "/api/v1/realtime/system-health",
    "/api/v1/realtime/stream-metrics?time_window=1h",
    "/api/v1/realtime/business-metrics?time_window=7d",
];

#[tokio::test]
async fn every_route_answers_per_tenant_cached_and_never_across_tenants() {
    let api = Api::start();
    for path in ROUTES {
        assert_eq!(
            api.call("GET", path, None, None).await.status,
            401,
            "{path}"
        );
        // System health carries no parameters, so the start-up warming made it already.
        let warmed = path.contains("system-health");
        let first = api.get(path, &api.acme).await;
        assert_eq!(first.status, 200, "{path}: {}", first.body);
        assert_eq!(hit(&first), warmed, "{path}: {}", first.cache);
        let again = api.get(path, &api.acme).await;
        assert!(hit(&again), "{path}: {}", again.cache);
        assert_eq!(again.body, first.body, "{path}");
        // Another tenant never gets acme's entry.
        let other = api.get(path, &api.globex).await;
        assert_eq!(hit(&other), warmed, "{path}: {}", other.cache);
    }
    // Customer 3 is acme's; globex has none by that id (ids are global), so a 404 that
    // names the field.
    let theirs = api.get("/api/v1/customers/3", &api.globex).await;
    assert_eq!(theirs.status, 404, "{}", theirs.body);
    assert_eq!(theirs.body["field"], "customer_id");
    // Real aggregates: the two tenants' revenue differs.
    let path = "/api/v1/analytics/revenue?start_date=2026-02-01&end_date=2026-03-04";
    let a = api.get(path, &api.acme).await.body;
    let g = api.get(path, &api.globex).await.body;
    assert!(a["totals"]["revenue"].as_f64().unwrap() > 0.0, "{a}");
    assert_ne!(a["totals"], g["totals"]);
    // A verified principal without a tenant, or with one that has no data: 403.
    let none = token("nat", None, &["analytics:read"]);
    let got = api.get(path, &none).await;
    assert_eq!(
        (got.status, got.body["error"].as_str()),
        (403, Some("no_tenant"))
    );
    let stranger = token("sue", Some("umbrella-corp"), &["analytics:read"]);
    let got = api.get(path, &stranger).await;
    assert_eq!(
        (got.status, got.body["error"].as_str()),
        (403, Some("unknown_tenant"))
    );
    // Without the permission: 403 before the cache.
    let nope = token("ned", Some("acme"), &["other"]);
    assert_eq!(api.get(path, &nope).await.status, 403);
}

#[tokio::test]
async fn bad_input_is_a_400_naming_the_field_and_a_failed_order_changes_nothing() {
    let api = Api::start();
    let cases: &[(&str, &str)] = &[
        (
            "/api/v1/analytics/revenue?start_date=2026-3-01&end_date=2026-03-04",
            "start_date",
        ),
        (
            "/api/v1/analytics/revenue?start_date=2026-03-01&end_date=2026-02-30",
            "end_date",
        ),
        (
            "/api/v1/analytics/revenue?start_date=2026-03-04&end_date=2026-03-01",
            "end_date",
        ),
        (
            "/api/v1/analytics/revenue?end_date=2026-03-01",
            "start_date",
        ),
        (
            "/api/v1/analytics/revenue?start_date=2026-03-01&end_date=2026-03-04&granularity=hourly",
            "granularity",
        ),
        (
            "/api/v1/analytics/revenue?start_date=2026-03-01&end_date=2026-03-04&region=mars",
            "region",
        ),
        (
            "/api/v1/analytics/revenue?start_date=2026-03-01&end_date=2026-03-04&category=cars",
            "category",
        ),
        ("/api/v1/customers?page=0", "page"),
        ("/api/v1/customers?size=1001", "size"),
        ("/api/v1/customers?cursor=not-a-cursor", "cursor"),
        ("/api/v1/customers?risk_level=extreme", "risk_level"),
        ("/api/v1/fraud/alerts?status=lost", "status"),
    ];
    for (path, field) in cases {
        let got = api.get(path, &api.acme).await;
        assert_eq!(got.status, 400, "{path}: {}", got.body);
        assert_eq!(got.body["field"], *field, "{path}: {}", got.body);
    }
    assert_eq!(
        api.get("/api/v1/customers/999999", &api.acme).await.status,
        404
    );

    let open = format!("/api/v1/analytics/revenue?start_date=2026-03-01&end_date={TODAY}");
    api.get(&open, &api.acme).await;
    assert!(hit(&api.get(&open, &api.acme).await));
    let orders: &[(Value, &str)] = &[
        (json!({ "customer_id": 3, "items": [] }), "items"),
        (
            json!({ "customer_id": 3, "items": [{ "product_id": 1, "quantity": -2 }] }),
            "items[0].quantity",
        ),
        (
            json!({ "customer_id": 3, "items": [{ "product_id": 999999, "quantity": 1 }] }),
            "items[0].product_id",
        ),
        (
            json!({ "customer_id": 999999, "items": [{ "product_id": 1, "quantity": 1 }] }),
            "customer_id",
        ),
        (
            json!({ "customer_id": 3, "items": [{ "product_id": 1, "quantity": 1 }], "region": "mars" }),
            "region",
        ),
        (
            json!({ "items": [{ "product_id": 1, "quantity": 1 }] }),
            "customer_id",
        ),
    ];
    for (body, field) in orders {
        let got = api
            .call(
                "POST",
                "/api/v1/orders",
                Some(&api.acme),
                Some(body.clone()),
            )
            .await;
        assert_eq!(got.status, 400, "{body}: {}", got.body);
        assert_eq!(got.body["field"], *field, "{body}: {}", got.body);
    }
    // Nothing was written and nothing purged.
    assert!(hit(&api.get(&open, &api.acme).await));
}

#[tokio::test]
async fn an_order_purges_exactly_what_it_changes_and_a_resolved_alert_its_fraud_views() {
    let api = Api::start();
    let open = format!("/api/v1/analytics/revenue?start_date=2026-02-20&end_date={TODAY}");
    let closed = "/api/v1/analytics/revenue?start_date=2026-02-01&end_date=2026-02-28";
    let details = |id: i64| format!("/api/v1/customers/{id}");
    let alerts = "/api/v1/fraud/alerts?size=5";
    let dashboard = "/api/v1/fraud/dashboard";
    let watched: Vec<(String, &String)> = vec![
        (open.clone(), &api.acme),
        (closed.to_owned(), &api.acme),
        (open.clone(), &api.globex),
        (details(3), &api.acme),
        (details(4), &api.acme),
        (alerts.to_owned(), &api.acme),
        (dashboard.to_owned(), &api.acme),
        ("/api/v1/customers?size=5".to_owned(), &api.acme),
    ];
    for (path, t) in &watched {
        api.get(path, t).await;
        assert!(hit(&api.get(path, t).await), "{path}");
    }
    let before = api.get(&open, &api.acme).await.body["totals"]["orders"]
        .as_i64()
        .unwrap();
    let order = json!({ "customer_id": 3, "items": [{ "product_id": 1, "quantity": 2 }, { "product_id": 2, "quantity": 1 }] });
    let made = api
        .call("POST", "/api/v1/orders", Some(&api.acme), Some(order))
        .await;
    assert_eq!(made.status, 201, "{}", made.body);
    assert_eq!(made.body["order_date"], TODAY);

    let after: Vec<bool> = {
        let mut v = Vec::new();
        for (path, t) in &watched {
            v.push(hit(&api.get(path, t).await));
        }
        v
    };
    // Purged: acme's range reaching today, customer 3, the fraud dashboard (its alert rate
    // counts orders), the customer lists.
    // Kept: acme's closed February, globex's range, customer 4, the fraud alert list.
    assert_eq!(
        after,
        vec![false, true, true, false, true, true, false, false],
        "hits after the order, in the order of `watched`"
    );
    let now = api.get(&open, &api.acme).await.body["totals"]["orders"]
        .as_i64()
        .unwrap();
    assert_eq!(now, before + 1);

    // Resolve an open alert of acme's: the fraud views go, the rest stays.
    let list = api
        .get("/api/v1/fraud/alerts?status=open&size=1", &api.acme)
        .await;
    let id = list.body["items"][0]["id"].as_i64().expect("an open alert");
    let done = api
        .call(
            "POST",
            &format!("/api/v1/fraud/alerts/{id}/resolve"),
            Some(&api.acme),
            Some(json!({ "resolution": "false_positive", "note": "known customer" })),
        )
        .await;
    assert_eq!(done.status, 200, "{}", done.body);
    assert!(!hit(&api.get(alerts, &api.acme).await));
    assert!(!hit(&api.get(dashboard, &api.acme).await));
    assert!(hit(&api.get(closed, &api.acme).await));
    // Again: already closed, 409, nothing purged.
    let again = api
        .call(
            "POST",
            &format!("/api/v1/fraud/alerts/{id}/resolve"),
            Some(&api.acme),
            Some(json!({ "resolution": "resolved" })),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);
    assert!(hit(&api.get(alerts, &api.acme).await));
    // Another tenant's alert is not found for acme.
    let theirs = api.get("/api/v1/fraud/alerts?size=1", &api.globex).await;
    let their_id = theirs.body["items"][0]["id"].as_i64().unwrap();
    let got = api
        .call(
            "POST",
            &format!("/api/v1/fraud/alerts/{their_id}/resolve"),
            Some(&api.acme),
            Some(json!({ "resolution": "resolved" })),
        )
        .await;
    assert_eq!(
        (got.status, got.body["field"].as_str()),
        (404, Some("alert_id"))
    );
}

#[tokio::test]
async fn pages_share_entries_end_empty_warn_when_deep_and_cursors_walk_everything() {
    let api = Api::start();
    api.get("/api/v1/customers?page=1&size=100", &api.acme)
        .await;
    let default = api.get("/api/v1/customers", &api.acme).await;
    assert!(
        hit(&default),
        "no page = page 1, size 100: {}",
        default.cache
    );
    // The seed's trailing slash (FastAPI redirects it): a 308 to the same list, whose entry
    // it then shares.
    let raw = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
        .get(api.larder.url("/api/v1/customers/?page=1&size=100"))
        .bearer_auth(&api.acme)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 308);
    assert_eq!(
        raw.headers()["location"],
        "/api/v1/customers?page=1&size=100"
    );
    let slashed = api
        .get("/api/v1/customers/?page=1&size=100", &api.acme)
        .await;
    assert!(hit(&slashed), "{}", slashed.cache);
    assert_eq!(slashed.body, default.body);
    let p = &default.body["pagination"];
    assert_eq!(p["page"], 1);
    assert_eq!(
        p["previous_page"],
        Value::Null,
        "documented nulls stay: {p}"
    );
    assert_eq!(p["has_previous"], false);
    let total = p["total_items"].as_u64().unwrap();
    assert_eq!(total, 200);

    let past = api.get("/api/v1/customers?page=9&size=50", &api.acme).await;
    assert_eq!(past.status, 200);
    assert_eq!(past.body["items"], json!([]));
    assert_eq!(past.body["pagination"]["has_previous"], true);
    assert_eq!(past.body["pagination"]["next_page"], Value::Null);

    let deep = api.get("/api/v1/customers?page=3&size=50", &api.acme).await;
    assert!(
        deep.body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("cursor"),
        "{}",
        deep.body
    );
    assert!(
        api.get("/api/v1/customers?page=2&size=50", &api.acme)
            .await
            .body
            .get("warnings")
            .is_none()
    );

    // Walk by cursor, sorted by lifetime value: every customer once, in order.
    let mut seen = Vec::new();
    let mut values = Vec::new();
    let mut next = String::from("/api/v1/customers?sort_by=lifetime_value&size=30");
    loop {
        let got = api.get(&next, &api.acme).await;
        assert_eq!(got.status, 200, "{}", got.body);
        for item in got.body["items"].as_array().unwrap() {
            seen.push(item["id"].as_i64().unwrap());
            values.push(item["lifetime_value"].as_f64().unwrap());
        }
        match got.body["pagination"]["next_cursor"].as_str() {
            Some(c) => {
                next = format!("/api/v1/customers?sort_by=lifetime_value&size=30&cursor={c}")
            }
            None => break,
        }
    }
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!((seen.len(), unique.len()), (200, 200));
    assert!(
        values.windows(2).all(|w| w[0] >= w[1]),
        "descending by value"
    );
    // A cursor is for its own sort.
    let first = api
        .get(
            "/api/v1/customers?sort_by=lifetime_value&size=30",
            &api.acme,
        )
        .await;
    let c = first.body["pagination"]["next_cursor"]
        .as_str()
        .unwrap()
        .to_owned();
    let wrong = api
        .get(
            &format!("/api/v1/customers?sort_by=orders&cursor={c}"),
            &api.acme,
        )
        .await;
    assert_eq!(
        (wrong.status, wrong.body["field"].as_str()),
        (400, Some("cursor"))
    );
}

#[tokio::test]
async fn cache_admin_aliases_answer_in_the_seed_shapes_and_stay_in_their_tenant() {
    let api = Api::start();
    let manager = token("max", Some("acme"), &["cache:manage"]);
    let global = token("ops", None, &["cache:manage"]);
    assert_eq!(api.get("/api/v1/cache/stats", &api.acme).await.status, 403);

    let revenue = "/api/v1/analytics/revenue?start_date=2026-02-01&end_date=2026-02-02";
    for t in [&api.acme, &api.globex] {
        api.get(revenue, t).await;
        api.get(revenue, t).await;
        api.get("/api/v1/customers/3", t).await;
    }
    let stats = api.get("/api/v1/cache/stats", &manager).await;
    assert_eq!(stats.status, 200, "{}", stats.body);
    let rate = stats.body["hit_rate"].as_f64().unwrap();
    assert!(rate > 1.0 && rate < 100.0, "a percentage: {}", stats.body);
    assert!(stats.body["performance_insights"]["hit_rate_category"].is_string());
    for field in [
        "keyspace_hits",
        "keyspace_misses",
        "active_keys",
        "memory_usage_mb",
        "used_memory",
    ] {
        assert!(stats.body.get(field).is_some(), "{field}: {}", stats.body);
    }

    // Warming stored other revenue ranges; these two days are only ours.
    let keys = api
        .get(
            "/api/v1/cache/keys?pattern=analytics:revenue:daily:2026-02-01:*",
            &manager,
        )
        .await;
    assert_eq!(keys.body["total_found"], 1, "{}", keys.body);
    assert_eq!(
        keys.body["keys"][0]["key"],
        "analytics:revenue:daily:2026-02-01:2026-02-02:all:all#t=acme"
    );
    let all_keys = api
        .get(
            "/api/v1/cache/keys?pattern=analytics:revenue:daily:2026-02-01:*",
            &global,
        )
        .await;
    assert_eq!(all_keys.body["total_found"], 2, "{}", all_keys.body);

    let health = api.get("/api/v1/cache/health", &manager).await;
    assert_eq!(health.body["status"], "healthy");
    assert_eq!(health.body["performance"], "excellent", "{}", health.body);

    for bad in ["*", "*:*", "analytics:*"] {
        let got = api
            .call(
                "POST",
                "/api/v1/cache/invalidate/pattern",
                Some(&manager),
                Some(json!({ "pattern": bad })),
            )
            .await;
        assert_eq!(
            (got.status, got.body["field"].as_str()),
            (400, Some("pattern")),
            "{bad}"
        );
    }
    let got = api
        .call(
            "POST",
            "/api/v1/cache/invalidate/pattern?pattern=analytics:revenue:daily:2026-02-01:*",
            Some(&manager),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.body["cleared_entries"], 1, "acme's only: {}", got.body);
    assert!(
        !got.body["affected_endpoints"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert!(!hit(&api.get(revenue, &api.acme).await));
    assert!(hit(&api.get(revenue, &api.globex).await));
    assert!(hit(&api.get("/api/v1/customers/3", &api.acme).await));

    let got = api
        .call(
            "POST",
            "/api/v1/cache/invalidate/customers",
            Some(&global),
            None,
        )
        .await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(
        got.body["message"],
        "Customers cache invalidated successfully"
    );
    // Acme's customer 3 (globex has none: its 404 was not stored), and the first customer
    // page warming made for each tenant.
    assert_eq!(got.body["cleared_entries"], 3, "{}", got.body);
    assert!(!hit(&api.get("/api/v1/customers/3", &api.acme).await));
    assert!(hit(&api.get(revenue, &api.globex).await));

    let audit = api.admin_audit().await.to_string();
    assert!(
        audit.contains("jwt:max") && audit.contains("jwt:ops"),
        "{audit}"
    );
}

#[test]
fn explain_shows_the_seeds_revenue_key_with_the_tenant() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("larder.yaml");
    std::fs::write(&file, config("")).unwrap();
    let t = token("ann", Some("acme"), &["analytics:read"]);
    let auth = format!("Authorization: Bearer {t}");
    let out = run_larder(
        &[
            "explain",
            "GET",
            "/api/v1/analytics/revenue?start_date=2025-01-23&end_date=2025-01-24",
            "--header",
            &auth,
            "--config",
            file.to_str().unwrap(),
        ],
        ANALYTICS_SMALL,
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        text.contains("analytics:revenue:daily:2025-01-23:2025-01-24:all:all#t=acme"),
        "{text}"
    );
}

/// The machine's PostgreSQL (trust auth on loopback), overridable for other set-ups.
fn postgres_url() -> String {
    std::env::var("LARDER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A schema of its own in the shared `test` database, dropped when the test ends (pass or
/// fail), so parallel runs never see each other's rows.
struct PgSchema(String);

impl PgSchema {
    fn new() -> Self {
        use std::hash::{BuildHasher as _, Hasher as _};
        // The process id keeps concurrent tests apart; the random part, a schema left by a
        // killed run whose id came round again.
        let random = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        Self(format!(
            "larder_test_{}_{:08x}",
            std::process::id(),
            random as u32
        ))
    }

    /// Runs SQL on a thread of its own: the blocking client starts a runtime, which cannot
    /// happen inside the test's.
    fn sql<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut postgres::Client) -> T + Send + 'static,
    ) -> T {
        std::thread::spawn(move || {
            let mut c = postgres::Client::connect(&postgres_url(), postgres::NoTls)
                .expect("PostgreSQL at LARDER_TEST_POSTGRES_URL or 127.0.0.1:5432/test");
            f(&mut c)
        })
        .join()
        .unwrap()
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        let drop = format!("DROP SCHEMA IF EXISTS \"{}\" CASCADE", self.0);
        self.sql(move |c| c.batch_execute(&drop).unwrap());
    }
}

/// An answer without the fields that read the clock to the second (`since`, the write
/// times): the two servers' clocks started a moment apart.
fn without_clock(v: &Value) -> Value {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in ["since", "created_at", "resolved_at"] {
            o.remove(k);
        }
    }
    v
}

/// GETs `path` on both servers; both answer alike.
async fn same(sqlite: &Api, pg: &Api, path: &str) -> Value {
    let a = sqlite.get(path, &sqlite.acme).await;
    let b = pg.get(path, &pg.acme).await;
    assert_eq!(a.status, 200, "{path}: {}", a.body);
    assert_eq!(
        (b.status, without_clock(&b.body)),
        (a.status, without_clock(&a.body)),
        "{path}"
    );
    b.body
}

#[tokio::test]
async fn postgres_serves_the_same_answers_as_sqlite_and_keeps_its_data_across_restarts() {
    let schema = PgSchema::new();
    // Both clocks stay at NOW: the two servers start seconds apart, and "the last hour"
    // must be the same hour on both for their answers to compare.
    let frozen = |c: String| c.replace("server:\n", "server:\n  clock_frozen: true\n");
    let pg_config = || {
        frozen(config(&format!(
            "      database_url: \"{}\"\n      database_schema: {}\n",
            postgres_url(),
            schema.0
        )))
    };
    let sqlite = Api::start_config(frozen(config("")));
    let pg = Api::start_config(pg_config());
    assert!(
        pg.larder.logs().contains("generated a fresh dataset"),
        "{}",
        pg.larder.logs()
    );
    // One generator, one seed: the same rows, so every read answers the same in both
    // engines (the system health's latency aside).
    let reads: Vec<&str> = ROUTES
        .iter()
        .copied()
        .filter(|p| !p.contains("system-health"))
        .chain([
            "/api/v1/analytics/revenue?start_date=2025-03-05&end_date=2026-03-04&granularity=monthly&region=eu",
            "/api/v1/analytics/revenue?start_date=2026-01-01&end_date=2026-03-04&granularity=daily&category=electronics",
            "/api/v1/analytics/customers/segments?segment_type=lifecycle&include_predictions=true",
            "/api/v1/analytics/customers/segments?segment_type=value",
            "/api/v1/analytics/products/performance?time_range=90d&sort_by=units",
            "/api/v1/analytics/cohort-analysis?cohort_type=weekly&start_date=2026-01-05&end_date=2026-02-22&metric=revenue",
            "/api/v1/analytics/funnels?funnel_type=checkout&start_date=2026-01-01&end_date=2026-03-04&segment=loyal",
            "/api/v1/customers?sort_by=recent&size=7&segment=loyal",
            "/api/v1/customers/3/recommendations?type=products",
            "/api/v1/customers/3/recommendations?type=offers",
            "/api/v1/fraud/alerts?status=open&priority=high&size=3",
            "/api/v1/fraud/dashboard?time_range=7d",
            "/api/v1/realtime/stream-metrics?stream_type=fraud&time_window=15m",
        ])
        .collect();
    for path in &reads {
        same(&sqlite, &pg, path).await;
    }
    // PostgreSQL answers are cached like SQLite's.
    let revenue = "/api/v1/analytics/revenue?start_date=2026-02-20&end_date=2026-03-04";
    assert!(!hit(&pg.get(revenue, &pg.acme).await));
    assert!(hit(&pg.get(revenue, &pg.acme).await));

    // Cursor pages walk the same customers.
    let mut cursor_path = "/api/v1/customers?sort_by=recent&size=40&cursor=".to_owned();
    let first = same(&sqlite, &pg, "/api/v1/customers?sort_by=recent&size=40").await;
    let next = first["pagination"]["next_cursor"]
        .as_str()
        .expect("a cursor");
    cursor_path.push_str(next);
    same(&sqlite, &pg, &cursor_path).await;

    // The writes: an order and a resolved alert, then the purged views, alike.
    let order = json!({ "customer_id": 3, "items": [{ "product_id": 1, "quantity": 2 }, { "product_id": 2, "quantity": 1 }] });
    let a = sqlite
        .call(
            "POST",
            "/api/v1/orders",
            Some(&sqlite.acme),
            Some(order.clone()),
        )
        .await;
    let b = pg
        .call("POST", "/api/v1/orders", Some(&pg.acme), Some(order))
        .await;
    assert_eq!(b.status, 201, "{}", b.body);
    assert_eq!(without_clock(&a.body), without_clock(&b.body));
    assert!(
        !hit(&pg.get(revenue, &pg.acme).await),
        "the order purged it"
    );
    for path in [revenue, "/api/v1/customers/3", "/api/v1/customers?size=5"] {
        same(&sqlite, &pg, path).await;
    }
    let open = same(&sqlite, &pg, "/api/v1/fraud/alerts?status=open&size=1").await;
    let id = open["items"][0]["id"].as_i64().expect("an open alert");
    let resolve = format!("/api/v1/fraud/alerts/{id}/resolve");
    let body = json!({ "resolution": "false_positive", "note": "known customer" });
    let a = sqlite
        .call("POST", &resolve, Some(&sqlite.acme), Some(body.clone()))
        .await;
    let b = pg.call("POST", &resolve, Some(&pg.acme), Some(body)).await;
    assert_eq!(
        (b.status, without_clock(&b.body)),
        (200, without_clock(&a.body))
    );
    let again = pg
        .call(
            "POST",
            &resolve,
            Some(&pg.acme),
            Some(json!({ "resolution": "resolved" })),
        )
        .await;
    assert_eq!(again.status, 409, "{}", again.body);

    // A failed order (unknown product after a known one) rolls back: nothing half-written.
    let bad = json!({ "customer_id": 3, "items": [{ "product_id": 1, "quantity": 1 }, { "product_id": 999999, "quantity": 1 }] });
    let got = pg
        .call("POST", "/api/v1/orders", Some(&pg.acme), Some(bad))
        .await;
    assert_eq!(
        (got.status, got.body["field"].as_str()),
        (400, Some("items[1].product_id"))
    );
    let orders_of_3 = |s: &str| {
        let q = format!("SELECT COUNT(*) FROM \"{s}\".orders WHERE customer_id = 3");
        move |c: &mut postgres::Client| c.query_one(&q, &[]).unwrap().get::<_, i64>(0)
    };
    let count = schema.sql(orders_of_3(&schema.0));
    let detail = pg.get("/api/v1/customers/3", &pg.acme).await.body;
    assert_eq!(detail["orders_count"].as_i64(), Some(count), "{detail}");

    // A restart finds the complete schema and keeps what was written.
    drop(pg);
    let pg = Api::start_config(pg_config());
    assert!(
        !pg.larder.logs().contains("generated a fresh dataset"),
        "{}",
        pg.larder.logs()
    );
    same(&sqlite, &pg, "/api/v1/customers/3").await;
    let health = pg.get("/api/v1/realtime/system-health", &pg.acme).await;
    assert_eq!(health.body["database"]["ok"], true, "{}", health.body);

    // The database server closes the plugin's sessions (a restart, an administrator): a
    // request that meets a closed session fails, the next ones open it again.
    let app = format!("larder analytics {}", schema.0);
    let closed = schema.sql(move |c| {
        c.query_one(
            "SELECT COUNT(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = $1",
            &[&app],
        )
        .unwrap()
        .get::<_, i64>(0)
    });
    assert!(closed >= 2, "{closed} sessions closed");
    let mut failed = 0;
    for day in 1..=20 {
        // A range of its own each time, so every request reaches the database.
        let path =
            format!("/api/v1/analytics/revenue?start_date=2026-01-01&end_date=2026-02-{day:02}");
        let got = pg.get(&path, &pg.acme).await;
        if got.status == 200 {
            break;
        }
        assert_eq!(got.status, 500, "{}", got.body);
        failed += 1;
        assert!(failed < 10, "the plugin never opened its sessions again");
    }
}

#[tokio::test]
async fn all_built_in_plugins_start_together_in_one_documented_api() {
    let api = Api::start_config(
        config("")
            .replace("aliexpress: { enabled: false }", "aliexpress: {}")
            .replace("booking: { enabled: false }", "booking: {}"),
    );
    let doc: Value = reqwest::get(api.larder.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/api/v1/analytics/revenue",
        "/api/v1/customers",
        "/api/v2/services",
        "/api/products/search",
    ] {
        assert!(
            doc["paths"].get(path).is_some(),
            "{path} not in the document"
        );
    }
    // Answers are documented by type, not as free-form JSON.
    let revenue = &doc["paths"]["/api/v1/analytics/revenue"]["get"]["responses"]["200"];
    assert_eq!(
        revenue["content"]["application/json; charset=utf-8"]["schema"]["$ref"],
        "#/components/schemas/AnalyticsRevenueReport",
        "{revenue}"
    );
    let page = &doc["components"]["schemas"]["AnalyticsPagination"]["properties"];
    assert!(page.get("next_cursor").is_some(), "{page}");
}

#[tokio::test]
async fn the_seeds_rate_limit_is_the_default_per_client() {
    let api = Api::start_config(
        config("").replace("    rate_limit: { per_second: 0, per_minute: 0 }\n", ""),
    );
    let path = "/api/v1/realtime/system-health";
    for i in 0..100 {
        let got = api.get(path, &api.acme).await;
        assert_eq!(got.status, 200, "request {i}: {}", got.body);
    }
    let r = reqwest::Client::new()
        .get(api.larder.url(path))
        .bearer_auth(&api.acme)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 429);
    let wait: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "Retry-After {wait}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "rate_limited", "{body}");
}
