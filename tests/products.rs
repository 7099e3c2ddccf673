//! The products plugin end to end: the real binary with its shipped policy, a real SQLite
//! file shared by two server processes over one real Redis, the catalog warmed at start-up.
//!
//! Two processes compute the same keys (seed 003's decorator keyed on a per-process hash
//! and never cached across processes): what one stores, the other reads from Redis, and an
//! update on one is fresh on the other.

use std::time::{Duration, Instant};

use larder_testkit::auth;
use larder_testkit::redis::RedisServer;
use larder_testkit::server::{Larder, LarderOptions, run_larder};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "products-e2e-admin-key-0123456789";

fn start(db: &std::path::Path, redis: &RedisServer) -> Larder {
    let config = format!(
        "server: {{ clock_start: \"{}\" }}\n\
         storage:\n  mode: hybrid\n  redis:\n    url: {}\n\
         plugins:\n  aliexpress: {{ enabled: false }}\n  \
         products:\n    rate_limit: {{ per_second: 0, per_minute: 0 }}\n    \
         settings: {{ database: {}, products: 80, users: 5 }}\n\
         security:\n  admin_keys: [ {{ key: \"{ADMIN_KEY}\", role: write }} ]\n  \
         auth: {{ jwt: [ {{ algorithms: [HS256], secret: \"{}\" }} ] }}\n",
        auth::NOW_TEXT,
        redis.url(),
        db.display(),
        auth::HS_SECRET
    );
    Larder::start_with(LarderOptions {
        config: Some(config),
        ..LarderOptions::default()
    })
    .expect("larder starts")
}

struct Client {
    c: reqwest::Client,
}

impl Client {
    async fn get(&self, l: &Larder, path: &str) -> (String, Value) {
        let r = self.c.get(l.url(path)).send().await.unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let status = r
            .headers()
            .get("cache-status")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        (status, r.json().await.unwrap())
    }

    async fn admin(&self, l: &Larder, method: reqwest::Method, path: &str) -> Value {
        let r = self
            .c
            .request(method, l.url(path))
            .header("x-admin-key", ADMIN_KEY)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// `(hits, misses)` of a rule on one server, from its admin stats.
    async fn rule(&self, l: &Larder, rule: &str) -> (u64, u64) {
        let stats = self
            .admin(l, reqwest::Method::GET, "/admin/cache/stats")
            .await;
        let r = &stats["rules"][rule];
        let n = |k: &str| r[k].as_u64().unwrap_or(0);
        (n("hits_l1") + n("hits_l2") + n("stale_served"), n("misses"))
    }

    /// Waits until the server is ready (the catalog warmed) and hears the other's purges.
    async fn ready(&self, l: &Larder) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = self
                .c
                .get(l.url("/ready"))
                .send()
                .await
                .unwrap()
                .status()
                .is_success();
            let stats = self
                .admin(l, reqwest::Method::GET, "/admin/cache/stats")
                .await;
            if ready && stats["redis"]["connected"] == true && stats["redis"]["subscribed"] == true
            {
                return;
            }
            assert!(Instant::now() < deadline, "not ready: {}", stats["redis"]);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_share_keys_and_an_update_on_one_is_fresh_on_the_other() {
    let redis = RedisServer::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("products.db");
    let a = start(&db, &redis);
    let c = Client {
        c: reqwest::Client::new(),
    };
    c.ready(&a).await;
    // The catalog warm job ran in batches before `/ready` said yes.
    let jobs = c.admin(&a, reqwest::Method::GET, "/admin/cache/jobs").await;
    let job = jobs
        .as_array()
        .unwrap_or_else(|| panic!("{jobs}"))
        .iter()
        .find(|j| j["name"] == "products-catalog")
        .cloned()
        .unwrap_or_else(|| panic!("{jobs}"));
    // 80 products, categories, configuration, 13 first pages; batches of 50.
    assert_eq!(job["last_entries"], 80 + 1 + 1 + 13, "{job}");
    assert_eq!(
        (job["last_errors"].as_u64(), job["last_batches"].as_u64()),
        (Some(0), Some(2)),
        "{job}"
    );
    // Every product's entry reaches Redis (written off the response path) under its
    // explicit key.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found = redis.command("KEYS *:e:products:product:*").unwrap();
        if found.matches("products:product:").count() == 80 {
            break;
        }
        assert!(Instant::now() < deadline, "{found}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // A second process over the same database file and Redis: its own warm run finds the
    // entries A stored, hits from L2 rather than loads.
    let b = start(&db, &redis);
    c.ready(&b).await;
    let (hits, misses) = c.rule(&b, "products-product").await;
    assert_eq!((hits, misses), (80, 0), "B's warm run hit A's entries");

    // An update through A: B's next read is fresh, B's other products stay hits.
    let before = c.get(&b, "/products-api/products/5").await.1;
    let token = auth::hs256(
        &auth::claims("editor", json!({ "permissions": ["products:write"] })),
        None,
        None,
    );
    let price = before["price_cents"].as_i64().unwrap() + 1;
    let r =
        c.c.put(a.url("/products-api/products/5"))
            .bearer_auth(&token)
            .json(&json!({ "price_cents": price }))
            .send()
            .await
            .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (_, now) = c.get(&b, "/products-api/products/5").await;
        if now["price_cents"] == price {
            break;
        }
        assert!(Instant::now() < deadline, "B still shows {now}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let (hits, misses) = c.rule(&b, "products-product").await;
    c.get(&b, "/products-api/products/6").await;
    assert_eq!(c.rule(&b, "products-product").await, (hits + 1, misses));
    let page = c.get(&b, "/products-api/products?page_size=10").await.1;
    assert_eq!(
        page["items"][4]["price_cents"], price,
        "B's catalog page is fresh"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clearing_the_products_cache_leaves_other_plugins_entries() {
    let redis = RedisServer::spawn().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let l = start(&dir.path().join("products.db"), &redis);
    let c = Client {
        c: reqwest::Client::new(),
    };
    c.ready(&l).await;
    // Booking's catalog is cached at the HTTP layer (and warmed at start-up).
    c.get(&l, "/api/v2/services").await;
    let (status, _) = c.get(&l, "/api/v2/services").await;
    assert!(status.contains("hit"), "{status}");

    let cleared = c
        .admin(&l, reqwest::Method::DELETE, "/products-api/cache/clear")
        .await;
    assert_eq!(cleared["cleared"], true);
    assert!(cleared["entries"].as_u64().unwrap() >= 80, "{cleared}");
    let (status, _) = c.get(&l, "/api/v2/services").await;
    assert!(status.contains("hit"), "booking's entry stays: {status}");
    let (hits, misses) = c.rule(&l, "products-product").await;
    c.get(&l, "/products-api/products/1").await;
    assert_eq!(c.rule(&l, "products-product").await, (hits, misses + 1));
}

#[test]
fn explain_names_the_rule_a_product_route_is_cached_under_from_code() {
    let out = run_larder(&["explain", "GET", "/products-api/products/7"], &[]).unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("products.products_get_product"), "{text}");
    assert!(text.contains("products-product"), "{text}");
    assert!(text.contains("product:<id>"), "{text}");
}
