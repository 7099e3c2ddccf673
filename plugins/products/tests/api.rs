//! The products plugin mounted in the whole application (`larder_core::testing::mount`):
//! its shipped policy, the real cache engine, the real authentication, a real SQLite file.
//! Hits and misses are read from the engine's own per-rule counters.

use larder_core::testing::{Mount, Mounted, mount};
use larder_products::ProductsPlugin;
use larder_testkit::auth;
use poem::http::StatusCode;
use serde_json::{Value, json};

const NOW: &str = auth::NOW_TEXT;
/// A write admin key (`cache:read` + `cache:manage`) and a read one.
const ADMIN: &str = "products-admin-key-0123456789";
const READER: &str = "products-reader-key-0123456789";

/// `Authorization` of a bearer token for `user` holding `permissions`.
fn bearer(user: &str, permissions: &[&str]) -> String {
    let claims = auth::claims(user, json!({ "permissions": permissions }));
    format!("Bearer {}", auth::hs256(&claims, None, None))
}

fn user_1() -> String {
    bearer("user-1", &[])
}

fn user_2() -> String {
    bearer("user-2", &[])
}

fn editor() -> String {
    bearer("editor", &["products:write"])
}

struct Shop {
    m: Mounted,
    _dir: tempfile::TempDir,
}

async fn shop() -> Shop {
    let dir = tempfile::tempdir().unwrap();
    let m = mount::<ProductsPlugin>(Mount {
        settings: json!({
            "database": dir.path().join("products.db"),
            "products": 60,
            "users": 5,
        }),
        config: format!(
            "server: {{ clock_start: \"{NOW}\" }}\n\
             security:\n  admin_keys: [ {{ key: \"{ADMIN}\", role: write }}, {{ key: \"{READER}\", role: read }} ]\n  \
             auth: {{ jwt: [ {{ algorithms: [HS256], secret: \"{}\" }} ] }}\n",
            auth::HS_SECRET
        ),
        ..Mount::default()
    })
    .await;
    Shop { m, _dir: dir }
}

impl Shop {
    async fn call(
        &self,
        method: &str,
        path: &str,
        key: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let c = &self.m.client;
        let mut req = match method {
            "GET" => c.get(path),
            "PUT" => c.put(path),
            "POST" => c.post(path),
            "DELETE" => c.delete(path),
            other => panic!("{other}"),
        };
        if let Some((header, value)) = key {
            req = req.header(header, value);
        }
        if let Some(b) = body {
            req = req.body_json(&b);
        }
        let resp = req.send().await;
        let status = resp.0.status();
        let text = resp.0.into_body().into_string().await.unwrap();
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    async fn get(&self, path: &str) -> Value {
        let (status, body) = self.call("GET", path, None, None).await;
        assert_eq!(status, StatusCode::OK, "{path}: {body}");
        body
    }

    async fn admin(&self, method: &str, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(("x-admin-key", ADMIN)), body)
            .await
    }

    /// `(hits, misses)` of a rule, from the engine's counters.
    fn counts(&self, rule: &str) -> (u64, u64) {
        let snap = self.m.app.engine.cache.snapshot();
        let r = snap.rules.get(rule).cloned().unwrap_or_default();
        (r.hits_l1 + r.hits_l2 + r.stale_served, r.misses)
    }
}

#[tokio::test]
async fn a_product_is_stored_then_hit_under_its_explicit_key() {
    let s = shop().await;
    let status = |resp: &poem::test::TestResponse| s.m.cache_status(resp);
    let resp = s.m.client.get("/products-api/products/3").send().await;
    // Cached from code, the answer still says what the cache did (RFC 9211).
    let first_status = status(&resp);
    assert!(
        first_status.starts_with("larder; fwd=uri-miss; stored; ttl=300")
            && first_status.ends_with("; rule=products-product"),
        "{first_status}"
    );
    let first: Value = resp.json().await.value().deserialize();
    assert_eq!(first["id"], 3);
    assert_eq!(s.counts("products-product"), (0, 1));
    let resp = s.m.client.get("/products-api/products/3").send().await;
    let again_status = status(&resp);
    assert!(
        again_status.starts_with("larder; hit; ttl=")
            && again_status.contains("detail=l1; rule=products-product"),
        "{again_status}"
    );
    let again: Value = resp.json().await.value().deserialize();
    assert_eq!(again, first);
    assert_eq!(s.counts("products-product"), (1, 1));
    let loads = s.m.loads();
    assert_eq!(loads.len(), 2, "{loads:?}");
    assert_eq!(
        (loads[0].key.as_str(), loads[1].outcome.cache_hit()),
        ("product:3", true)
    );
    // The key is the product's id, nothing process-specific: any instance computes it.
    let (status, keys) = s
        .admin("GET", "/admin/cache/keys?pattern=products:product:*", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{keys}");
    let listed: Vec<&str> = keys
        .as_array()
        .unwrap_or_else(|| panic!("{keys}"))
        .iter()
        .filter_map(|k| k["key"].as_str())
        .collect();
    assert_eq!(listed, ["products:product:3"], "{keys}");
}

/// `larder_cache_compressions_total`, from `/metrics`.
async fn compressions(s: &Shop) -> u64 {
    let resp = s.m.client.get("/metrics").send().await;
    let text = resp.0.into_body().into_string().await.unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("larder_cache_compressions_total "))
        .map_or(0, |v| v.trim().parse().unwrap())
}

#[tokio::test]
async fn answers_are_compressed_per_the_rule_once_per_distinct_answer() {
    let s = shop().await;
    let page = "/products-api/products?page_size=20";
    let plain_resp = s.m.client.get(page).send().await;
    assert!(plain_resp.0.headers().get("content-encoding").is_none());
    assert_eq!(plain_resp.0.headers()["vary"], "Accept-Encoding");
    let plain = plain_resp.0.into_body().into_bytes().await.unwrap();
    assert!(plain.len() > 4096, "{} bytes", plain.len());
    let before = compressions(&s).await;
    let mut sent = Vec::new();
    for _ in 0..4 {
        let resp =
            s.m.client
                .get(page)
                .header("accept-encoding", "gzip, deflate")
                .send()
                .await;
        assert!(s.m.cache_status(&resp).contains("hit"));
        assert_eq!(resp.0.headers()["content-encoding"], "gzip");
        assert_eq!(resp.0.headers()["vary"], "Accept-Encoding");
        let packed = resp.0.into_body().into_bytes().await.unwrap();
        let mut unpacked = Vec::new();
        std::io::Read::read_to_end(
            &mut flate2::read::GzDecoder::new(&packed[..]),
            &mut unpacked,
        )
        .unwrap();
        assert_eq!(unpacked, plain);
        sent.push(packed);
    }
    // Seen once: compressed fast; seen again: at the rule's level, and kept for the rest.
    assert_eq!(compressions(&s).await - before, 2);
    assert!(sent[1].len() <= sent[0].len());
    assert_eq!(sent[2], sent[1]);
    assert_eq!(sent[3], sent[1]);
}

#[tokio::test]
async fn an_update_purges_that_product_and_the_catalog_and_no_other_product() {
    let s = shop().await;
    s.get("/products-api/products/7").await;
    s.get("/products-api/products/8").await;
    let page = s.get("/products-api/products?page_size=10").await;
    let listed = |page: &Value| {
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["id"] == 7)
            .cloned()
            .unwrap()
    };
    assert_ne!(listed(&page)["price_cents"], 1234);

    // Anonymous and permission-less callers may not write.
    let change = json!({ "price_cents": 1234, "attributes": { "colour": "teal" } });
    let (status, _) = s
        .call(
            "PUT",
            "/products-api/products/7",
            None,
            Some(change.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .call(
            "PUT",
            "/products-api/products/7",
            Some(("authorization", &user_1())),
            Some(change.clone()),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    let (status, updated) = s
        .call(
            "PUT",
            "/products-api/products/7",
            Some(("authorization", &editor())),
            Some(change),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    assert_eq!(updated["price_cents"], 1234);
    assert_eq!(updated["version"], 2);
    assert_eq!(updated["attributes"]["colour"], "teal");
    // The server's clock, started at NOW.
    assert!(
        updated["updated_at"]
            .as_str()
            .unwrap()
            .starts_with("2026-03-04T15:00"),
        "{updated}"
    );

    let (hits, misses) = s.counts("products-product");
    let fresh = s.get("/products-api/products/7").await;
    assert_eq!(fresh["price_cents"], 1234, "the next read is fresh");
    assert_eq!(s.counts("products-product"), (hits, misses + 1));
    s.get("/products-api/products/8").await;
    assert_eq!(
        s.counts("products-product"),
        (hits + 1, misses + 1),
        "another product stays a hit"
    );
    let page = s.get("/products-api/products?page_size=10").await;
    assert_eq!(
        listed(&page)["price_cents"],
        1234,
        "the catalog page is fresh"
    );
}

#[tokio::test]
async fn moving_a_product_refreshes_the_category_counts() {
    let s = shop().await;
    let product = s.get("/products-api/products/5").await;
    let from = product["category"].as_str().unwrap().to_owned();
    let to = if from == "audio" { "books" } else { "audio" };
    let count = |list: &Value, slug: &str| {
        list["categories"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["slug"] == slug)
            .map_or(0, |c| c["product_count"].as_i64().unwrap())
    };
    let before = s.get("/products-api/categories").await;
    let (status, body) = s
        .call(
            "PUT",
            "/products-api/products/5",
            Some(("authorization", &editor())),
            Some(json!({ "category": to })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let after = s.get("/products-api/categories").await;
    assert_eq!(count(&after, &from), count(&before, &from) - 1);
    assert_eq!(count(&after, to), count(&before, to) + 1);
    let page = s
        .get(&format!(
            "/products-api/products?category={to}&page_size=100"
        ))
        .await;
    assert!(
        page["items"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["id"] == 5)
    );

    let (status, body) = s
        .call(
            "PUT",
            "/products-api/products/5",
            Some(("authorization", &editor())),
            Some(json!({ "category": "spaceships" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "category", "{body}");
    let (status, body) = s
        .call(
            "PUT",
            "/products-api/products/5",
            Some(("authorization", &editor())),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = s
        .call(
            "PUT",
            "/products-api/products/5",
            Some(("authorization", &editor())),
            Some(json!({ "price_cents": "cheap" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "price_cents", "{body}");
}

#[tokio::test]
async fn catalog_pages_have_one_key_each_and_bad_parameters_are_named() {
    let s = shop().await;
    let first = s.get("/products-api/products").await;
    assert_eq!(
        (first["page"].as_u64(), first["page_size"].as_u64()),
        (Some(1), Some(20))
    );
    assert_eq!(first["total"], 60);
    assert_eq!(first["pages"], 3);
    // Written out, the defaults name the same page: one entry.
    let same = s
        .get("/products-api/products?page=1&page_size=20&sort=id")
        .await;
    assert_eq!(same, first);
    assert_eq!(s.counts("products-catalog"), (1, 1));
    let second = s.get("/products-api/products?page=2").await;
    assert_ne!(second["items"], first["items"], "page 2 is not page 1");
    assert_eq!(second["items"][0]["id"], 21);

    for (query, field) in [
        ("page=4", "page"),
        ("page=0", "page"),
        ("page_size=101", "page_size"),
        ("sort=cheapest", "sort"),
        ("category=spaceships", "category"),
    ] {
        let (status, body) = s
            .call(
                "GET",
                &format!("/products-api/products?{query}"),
                None,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {body}");
        assert_eq!(body["field"], field, "{query}: {body}");
    }
    let (status, body) = s.call("GET", "/products-api/products/61", None, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    let (status, body) = s.call("GET", "/products-api/products/07", None, None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "id");
    assert_eq!(
        s.m.app.engine.cache.snapshot().l1_entries,
        2,
        "refused requests made no entries"
    );
}

#[tokio::test]
async fn preferences_are_cached_per_verified_user_and_never_served_to_another() {
    let s = shop().await;
    let path = "/products-api/user/jwt:user-1/preferences";
    let (status, body) = s.call("GET", path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
    // A header a client can set is not identity.
    let (status, _) = s
        .call("GET", path, Some(("x-user-id", "user-1")), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let (status, mine) = s
        .call("GET", path, Some(("authorization", &user_1())), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{mine}");
    assert_eq!(mine["user_id"], "jwt:user-1");
    assert_eq!(mine["stored"], true);
    let (status, again) = s
        .call("GET", path, Some(("authorization", &user_1())), None)
        .await;
    assert_eq!((status, &again), (StatusCode::OK, &mine));
    assert_eq!(
        s.counts("products-user-preferences"),
        (1, 1),
        "the route caches"
    );

    // Another user is refused before the cache is asked, though the entry is there.
    let (status, body) = s
        .call("GET", path, Some(("authorization", &user_2())), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    assert_eq!(s.counts("products-user-preferences"), (1, 1));
    let (status, theirs) = s
        .call(
            "GET",
            "/products-api/user/me/preferences",
            Some(("authorization", &user_2())),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(theirs["user_id"], "jwt:user-2", "`me` is the caller");

    // Saving purges the user's entry: the next read shows the change.
    let theme = if mine["theme"] == "dark" {
        "light"
    } else {
        "dark"
    };
    let (status, saved) = s
        .call(
            "PUT",
            path,
            Some(("authorization", &user_1())),
            Some(json!({ "theme": theme, "page_size": 50 })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{saved}");
    let (_, fresh) = s
        .call("GET", path, Some(("authorization", &user_1())), None)
        .await;
    assert_eq!(fresh["theme"], theme);
    assert_eq!(fresh["page_size"], 50);
    let (status, body) = s
        .call(
            "PUT",
            path,
            Some(("authorization", &user_1())),
            Some(json!({ "theme": "neon" })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "theme");
    let (status, _) = s
        .call(
            "PUT",
            path,
            Some(("authorization", &user_2())),
            Some(json!({ "theme": "dark" })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

#[tokio::test]
async fn static_data_is_stored_served_refreshed_and_deleted() {
    let s = shop().await;
    let config = s.get("/products-api/configuration").await;
    assert_eq!(config["api_version"], "1.0.0");

    let banner = "/products-api/cache/static/banner";
    let (status, _) = s.call("GET", banner, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, _) = s
        .call(
            "POST",
            banner,
            Some(("x-admin-key", READER)),
            Some(json!({ "value": { "text": "x" } })),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "a read key cannot write");
    let (status, body) = s.admin("GET", banner, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    let (status, stored) = s
        .admin("POST", banner, Some(json!({ "value": { "text": "Sale" } })))
        .await;
    assert_eq!(status, StatusCode::OK, "{stored}");
    assert_eq!(stored["value"]["text"], "Sale");
    let (_, read) = s
        .call("GET", banner, Some(("x-admin-key", READER)), None)
        .await;
    assert_eq!(read["value"]["text"], "Sale");
    s.admin(
        "POST",
        banner,
        Some(json!({ "value": { "text": "Clearance" } })),
    )
    .await;
    let (_, read) = s.admin("GET", banner, None).await;
    assert_eq!(
        read["value"]["text"], "Clearance",
        "a store replaces the cached copy"
    );

    let (status, gone) = s.admin("DELETE", banner, None).await;
    assert_eq!((status, &gone["deleted"]), (StatusCode::OK, &json!(true)));
    let (status, _) = s.admin("GET", banner, None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, again) = s.admin("DELETE", banner, None).await;
    assert_eq!(again["deleted"], false);

    // `/configuration` is the `app_config` entry.
    let mut changed = config.clone();
    changed["api_version"] = json!("1.1.0");
    s.admin(
        "POST",
        "/products-api/cache/static/app_config",
        Some(json!({ "value": changed })),
    )
    .await;
    assert_eq!(
        s.get("/products-api/configuration").await["api_version"],
        "1.1.0"
    );
    let (status, refreshed) = s
        .admin(
            "POST",
            "/products-api/cache/static/app_config/refresh",
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{refreshed}");
    assert_eq!(refreshed["value"]["api_version"], "1.1.0");

    let (status, body) = s
        .admin(
            "POST",
            "/products-api/cache/static/bad%20key",
            Some(json!({ "value": 1 })),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(body["field"], "key", "{body}");
    for (bad, field) in [(json!({ "value": null }), "value"), (json!({}), "value")] {
        let (status, body) = s.admin("POST", banner, Some(bad)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["field"], field, "{body}");
    }
}

#[tokio::test]
async fn warming_pages_the_catalog_in_batches_and_later_reads_hit() {
    let s = shop().await;
    let (status, _) = s
        .call(
            "POST",
            "/products-api/cache/warm",
            Some(("x-admin-key", READER)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, run) = s.admin("POST", "/products-api/cache/warm", None).await;
    assert_eq!(status, StatusCode::OK, "{run}");
    // 60 products, the categories, the configuration, the first page of all and of each of
    // the 12 categories.
    assert_eq!(run["entries"], 60 + 1 + 1 + 1 + 12, "{run}");
    assert_eq!(run["errors"], 0, "{run}");
    assert_eq!(run["job"], "products-catalog");
    let (_, jobs) = s.admin("GET", "/admin/cache/jobs", None).await;
    let job = jobs
        .as_array()
        .or_else(|| jobs["jobs"].as_array())
        .unwrap()
        .iter()
        .find(|j| j["name"] == "products-catalog")
        .cloned()
        .unwrap_or_else(|| panic!("{jobs}"));
    assert_eq!(
        job["last_batches"], 2,
        "75 requests in batches of 50: {job}"
    );

    let before = s.counts("products-product");
    s.get("/products-api/products/42").await;
    assert_eq!(s.counts("products-product"), (before.0 + 1, before.1));
}

#[tokio::test]
async fn stats_performance_and_clear_report_this_plugin() {
    let s = shop().await;
    for id in 1..=4 {
        s.get(&format!("/products-api/products/{id}")).await;
    }
    s.get("/products-api/products/1").await;
    let (status, stats) = s
        .call(
            "GET",
            "/products-api/cache/stats",
            Some(("x-admin-key", READER)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{stats}");
    assert_eq!(stats["hits"], 1, "{stats}");
    assert_eq!(stats["misses"], 4);
    assert_eq!(stats["sets"], 4);
    assert_eq!(stats["total_requests"], 5);
    assert_eq!(stats["hit_rate"], 0.2);
    assert!(stats["evictions"].is_u64());

    let (status, report) = s
        .admin("GET", "/products-api/cache/performance", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{report}");
    let alerts: Vec<&str> = report["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(
        alerts
            .iter()
            .any(|a| a.contains("hit rate 20.0% is below 80%")),
        "{report}"
    );
    assert!(
        report["recommendations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r.as_str().unwrap().contains("products-product")),
        "{report}"
    );
    let lookup = report["performance_metrics"]["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["operation"] == "product_lookup")
        .cloned()
        .unwrap();
    assert_eq!(
        (lookup["count"].as_u64(), lookup["cache_hits"].as_u64()),
        (Some(5), Some(1))
    );
    assert_eq!(report["thresholds"]["min_hit_rate"], 0.8);

    let (status, cleared) = s.admin("DELETE", "/products-api/cache/clear", None).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["entries"], 4);
    let (_, stats) = s.admin("GET", "/products-api/cache/stats", None).await;
    assert_eq!(stats["deletes"], 4);
    let before = s.counts("products-product");
    s.get("/products-api/products/1").await;
    assert_eq!(
        s.counts("products-product"),
        (before.0, before.1 + 1),
        "cleared: a miss"
    );
}
