//! The AliExpress plugin behind the real server, against a local fake gateway that checks
//! signatures: caching with exact `cache_hit`, shared GET/POST entries, gateway errors as
//! clean envelopes, stale-if-error, rate limits, the internal key, CORS, mock mode.

use std::path::Path;
use std::time::{Duration, Instant};

use larder_testkit::aliexpress_gateway::{Failure, FakeGateway, methods};
use larder_testkit::server::{Larder, LarderOptions, workspace_root};
use serde_json::{Value, json};

const APP_KEY: &str = "test-app-key";
const SECRET: &str = "test-app-secret";

fn start(
    gateway: &FakeGateway,
    secret: &str,
    extra_env: &[(&str, &str)],
    config: &str,
    policies: &Path,
) -> Larder {
    let mut env: Vec<(String, String)> = vec![
        ("ALIEXPRESS_APP_KEY".into(), APP_KEY.into()),
        ("ALIEXPRESS_APP_SECRET".into(), secret.into()),
        ("ALIEXPRESS_API_URL".into(), gateway.base_url()),
        ("ALIEXPRESS_MODE".into(), "real".into()),
    ];
    env.extend(
        extra_env
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    Larder::start_with(LarderOptions {
        config: Some(format!(
            "plugins:\n  booking: {{ enabled: false }}\n{config}"
        )),
        env,
        policies: Some(policies.to_owned()),
    })
    .unwrap()
}

fn unlimited() -> &'static str {
    "  aliexpress:\n    rate_limit: { per_second: 0, per_minute: 0 }\n"
}

fn shipped_policies() -> std::path::PathBuf {
    workspace_root().join("policies")
}

async fn search_get(c: &reqwest::Client, l: &Larder) -> (u16, Value, Duration) {
    let t = Instant::now();
    let r = c
        .get(l.url("/api/products/search?keywords=phone%20case&page_size=10&sort=SALE_PRICE_ASC"))
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap(), t.elapsed())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn searches_are_cached_with_an_exact_cache_hit_and_shared_by_get_and_post() {
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(&gw, SECRET, &[], unlimited(), &shipped_policies());
    let c = reqwest::Client::new();
    gw.reset_counts();

    let (s, first, upstream) = search_get(&c, &larder).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(first["metadata"]["cache_hit"], false);
    assert_eq!(first["metadata"]["api_integration"], "real");
    assert_eq!(gw.calls(methods::PRODUCT_QUERY), 1);
    assert_eq!(gw.rejected(), 0, "the gateway refused our signature");

    let mut cached = Duration::MAX;
    for _ in 0..50 {
        let (s, again, t) = search_get(&c, &larder).await;
        assert_eq!(s, 200);
        assert_eq!(again["metadata"]["cache_hit"], true);
        assert_eq!(again["data"], first["data"]);
        cached = cached.min(t);
    }
    // The POST form of the same search (parameters in another order) shares the entry.
    let r = c
        .post(larder.url("/api/products/search"))
        .json(&json!({"sort": "SALE_PRICE_ASC", "page_size": 10, "keywords": "phone case"}))
        .send()
        .await
        .unwrap();
    // Cached from the handler's code, the answer's headers say so too (RFC 9211).
    let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(
        status.starts_with("larder; hit; ttl=") && status.ends_with("; rule=aliexpress-search"),
        "{status}"
    );
    assert!(r.headers().contains_key("server-timing"));
    // Compressed per the rule, as a cached route's answer is; this client sent no
    // Accept-Encoding, so it gets identity, and the answer says it varies.
    assert!(r.headers().get("content-encoding").is_none());
    assert_eq!(r.headers()["vary"], "Accept-Encoding");
    let post: Value = r.json().await.unwrap();
    assert_eq!(post["metadata"]["cache_hit"], true, "{post}");
    for (accept, coding) in [("gzip, deflate", "gzip"), ("br;q=0, zstd", "zstd")] {
        let r =
            c.get(larder.url(
                "/api/products/search?keywords=phone%20case&page_size=10&sort=SALE_PRICE_ASC",
            ))
            .header("accept-encoding", accept)
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["content-encoding"], coding, "{accept}");
        assert_eq!(r.headers()["vary"], "Accept-Encoding");
        let packed = r.bytes().await.unwrap();
        let plain = match coding {
            "gzip" => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(
                    &mut flate2::read::GzDecoder::new(&packed[..]),
                    &mut out,
                )
                .unwrap();
                out
            }
            _ => zstd::decode_all(&packed[..]).unwrap(),
        };
        assert!(
            packed.len() * 3 < plain.len(),
            "{} of {}",
            packed.len(),
            plain.len()
        );
        let v: Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["data"], first["data"], "{accept}");
        assert_eq!(v["metadata"]["cache_hit"], true);
    }
    assert_eq!(
        gw.calls(methods::PRODUCT_QUERY),
        1,
        "51 searches, one upstream call"
    );
    println!(
        "search: upstream {upstream:?}, cached best {cached:?}; 52 requests -> {} upstream call",
        gw.calls(methods::PRODUCT_QUERY)
    );

    // no-cache always goes upstream and says so.
    let r = c
        .post(larder.url("/api/products/search/no-cache"))
        .json(&json!({"keywords": "phone case", "page_size": 10, "sort": "SALE_PRICE_ASC"}))
        .send()
        .await
        .unwrap();
    let fresh: Value = r.json().await.unwrap();
    assert_eq!(fresh["metadata"]["cache_hit"], false);
    // Encoded from the plugin's types here, spliced from the cached JSON above: the same.
    assert_eq!(fresh["data"], first["data"]);
    assert_eq!(
        fresh.as_object().unwrap().keys().collect::<Vec<_>>(),
        first.as_object().unwrap().keys().collect::<Vec<_>>()
    );
    assert_eq!(gw.calls(methods::PRODUCT_QUERY), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_secret_is_a_clean_502_envelope_and_nothing_is_cached() {
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(&gw, "not-the-secret", &[], unlimited(), &shipped_policies());
    let c = reqwest::Client::new();
    // The start-up warming job was refused too; count from here.
    let before = gw.rejected();
    for _ in 0..2 {
        let (s, body, _) = search_get(&c, &larder).await;
        assert_eq!(s, 502, "{body}");
        assert_eq!(body["success"], false);
        assert!(
            body["error"].to_string().contains("IncompleteSignature"),
            "{body}"
        );
    }
    assert_eq!(
        gw.rejected() - before,
        2,
        "an error was cached: {}",
        larder.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_outage_serves_stale_inside_the_window_and_502_after_it() {
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shipped = std::fs::read_to_string(shipped_policies().join("aliexpress.yaml")).unwrap();
    // Same rules, with lifetimes short enough for a test.
    let short = shipped.replace("ttl: 1h\n", "ttl: 1s\n").replace(
        "stale_while_revalidate: 1m\n    stale_if_error: 6h",
        "stale_while_revalidate: 0s\n    stale_if_error: 2s",
    );
    assert_ne!(short, shipped);
    std::fs::write(dir.path().join("aliexpress.yaml"), short).unwrap();
    let larder = start(&gw, SECRET, &[], unlimited(), dir.path());
    let c = reqwest::Client::new();
    let (s, first, _) = search_get(&c, &larder).await;
    assert_eq!(s, 200);
    gw.set_failure(Failure::Http500);
    let started = Instant::now();
    let mut stale_seen = false;
    loop {
        let (s, body, _) = search_get(&c, &larder).await;
        if s == 502 {
            assert!(stale_seen || started.elapsed() > Duration::from_secs(1));
            assert_eq!(body["success"], false);
            break;
        }
        assert_eq!(s, 200, "{body}");
        assert_eq!(body["data"], first["data"]);
        assert_eq!(body["metadata"]["cache_hit"], true);
        if started.elapsed() > Duration::from_millis(1100) {
            stale_seen = true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "stale served forever"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        stale_seen,
        "the outage went straight to 502: no stale window"
    );
    assert!(gw.total_calls() >= 2, "the origin was retried");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limits_internal_key_and_cors() {
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(
        &gw,
        SECRET,
        &[("ALIEXPRESS_INTERNAL_KEY", "internal-secret-123")],
        "",
        &shipped_policies(),
    );
    let c = reqwest::Client::new();
    // CORS for the GPT origins (with the internal key header), not for others.
    let r = c
        .request(reqwest::Method::OPTIONS, larder.url("/api/categories"))
        .header("origin", "https://chatgpt.com")
        .header("access-control-request-method", "GET")
        .header("access-control-request-headers", "x-internal-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://chatgpt.com"
    );
    // Another origin gets no CORS headers, and its request is served: CORS is not access
    // control (a browser will refuse the page the answer; a server-side client may read it).
    let r = c
        .get(larder.url("/api/categories"))
        .header("origin", "https://elsewhere.example")
        .header("x-internal-key", "internal-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(!r.headers().contains_key("access-control-allow-origin"));
    assert!(
        r.headers().get_all("vary").iter().any(|v| v == "Origin"),
        "{:?}",
        r.headers()
    );
    let r = c
        .get(larder.url("/api/categories"))
        .header("origin", "https://chatgpt.com")
        .header("x-internal-key", "internal-secret-123")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["access-control-allow-origin"],
        "https://chatgpt.com"
    );

    let status = |key: Option<&'static str>| {
        let c = c.clone();
        let url = larder.url("/api/status");
        async move {
            let mut r = c.get(url);
            if let Some(k) = key {
                r = r.header("x-internal-key", k);
            }
            r.send().await.unwrap()
        }
    };
    assert_eq!(status(None).await.status(), 401);
    assert_eq!(status(Some("wrong")).await.status(), 401);
    assert_eq!(status(Some("internal-secret-123")).await.status(), 200);
    // The seed's default: 5 per second per client IP (5 used above; preflights are free).
    let mut codes = Vec::new();
    for _ in 0..4 {
        codes.push(status(Some("internal-secret-123")).await);
    }
    let limited = codes
        .into_iter()
        .find(|r| r.status() == 429)
        .expect("no 429 after 9 requests in a second");
    let retry: u64 = limited.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry));
    // The core's refusal in the seed's envelope, as every error on these paths.
    let body: Value = limited.json().await.unwrap();
    assert_eq!(body["success"], false, "{body}");
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["metadata"]["timestamp"].is_string(), "{body}");

    let r = c.get(larder.url("/api/cache/clear")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "POST");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_credentials_every_route_answers_from_mock_mode() {
    let larder = Larder::start_with(LarderOptions {
        config: Some(format!(
            "plugins:\n  booking: {{ enabled: false }}\n{}",
            unlimited()
        )),
        env: vec![],
        policies: Some(shipped_policies()),
    })
    .unwrap();
    let c = reqwest::Client::new();
    for (method, path, body) in [
        ("GET", "/api/products/search?keywords=lamp", None),
        (
            "POST",
            "/api/products/search",
            Some(json!({"keywords": "lamp"})),
        ),
        ("GET", "/api/products?keywords=lamp", None),
        ("GET", "/api/products/hot", None),
        ("GET", "/api/categories", None),
        (
            "GET",
            "/api/affiliate/link?url=https%3A%2F%2Fwww.aliexpress.com%2Fitem%2F1005001.html",
            None,
        ),
        ("GET", "/api/status", None),
    ] {
        let req = match body {
            Some(b) => c
                .request(method.parse().unwrap(), larder.url(path))
                .json(&b),
            None => c.request(method.parse().unwrap(), larder.url(path)),
        };
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200, "{method} {path}");
        let v: Value = r.json().await.unwrap();
        if path != "/api/status" {
            assert_eq!(
                v["metadata"]["api_integration"], "mock",
                "{method} {path}: {v}"
            );
        }
    }
    let r = c
        .get(larder.url("/api/products/search?keywords=lamp&page_size=51"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().await.unwrap().contains("page_size"));

    // The mock is one finite catalog: a product a search shows has the same details, its
    // sale price is not above its original price, and an id outside it is a 404.
    let json = |path: String| {
        let r = c.get(larder.url(&path));
        async move {
            let r = r.send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (_, page) = json("/api/products/search?keywords=power%20bank&page_size=5".into()).await;
    let first = &page["data"]["products"][0];
    let id = first["product_id"].as_str().unwrap();
    let (status, details) = json(format!("/api/products/details/{id}")).await;
    assert_eq!(status, 200, "{details}");
    assert_eq!(&details["data"]["products"][0], first);
    let price = |v: &Value| v.as_str().unwrap().parse::<f64>().unwrap();
    assert!(price(&first["app_sale_price"]) <= price(&first["original_price"]));
    let (status, missing) = json("/api/products/details/1005000000000001".into()).await;
    assert_eq!(status, 404, "{missing}");
    let r = c
        .get(larder.url("/openapi-gpt.json"))
        .header("x-forwarded-host", "api.example")
        .send()
        .await
        .unwrap();
    // The server URL comes from the request (no `public_url`): a shared cache must keep
    // one copy per host, and a forwarding header from an untrusted client is not believed.
    let vary = r.headers()["vary"].to_str().unwrap().to_owned();
    assert!(vary.contains("Host"), "{vary}");
    let gpt: Value = r.json().await.unwrap();
    assert!(gpt["openapi"].as_str().unwrap().starts_with("3."));
    assert_eq!(gpt["servers"][0]["url"], larder.url(""), "{gpt}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warming_passes_the_internal_key_and_clients_still_need_it() {
    const KEY: &str = "internal-secret-123";
    const ADMIN_READ: &str = "read-key-0123456789abcdef";
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(
        &gw,
        SECRET,
        &[
            ("ALIEXPRESS_INTERNAL_KEY", KEY),
            ("LARDER_ADMIN_READ_KEY", ADMIN_READ),
        ],
        unlimited(),
        &shipped_policies(),
    );
    let c = reqwest::Client::new();
    // The start-up categories job: every one of its requests gets past the key.
    let job = larder
        .warm_job_after_first_run(ADMIN_READ, "aliexpress-categories", Duration::from_secs(30))
        .await;
    assert_eq!(job["last_errors"], 0, "{job}\n{}", larder.logs());
    // Clients still need the key; with it, the categories come from what warming loaded.
    let calls = gw.calls(methods::CATEGORIES);
    assert!(calls >= 1, "warming loaded nothing");
    let r = c.get(larder.url("/api/categories")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .get(larder.url("/api/categories"))
        .header("x-internal-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        gw.calls(methods::CATEGORIES),
        calls,
        "not served from the cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_parameters_are_dropped_and_share_the_search_entry() {
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(&gw, SECRET, &[], unlimited(), &shipped_policies());
    let c = reqwest::Client::new();
    let (s, first, _) = search_get(&c, &larder).await;
    assert_eq!(s, 200, "{first}");
    let calls = gw.calls(methods::PRODUCT_QUERY);
    // The seed's clients send parameters they leave empty: the same search, not a 400.
    let r = c
        .get(larder.url(
            "/api/products/search?keywords=phone%20case&category_ids=&min_sale_price=&page_size=10&sort=SALE_PRICE_ASC&max_sale_price=",
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["metadata"]["cache_hit"], true, "{body}");
    let r = c
        .post(larder.url("/api/products/search"))
        .json(&json!({"keywords": "phone case", "category_ids": "", "page_size": 10, "sort": "SALE_PRICE_ASC"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["metadata"]["cache_hit"], true, "{body}");
    assert_eq!(gw.calls(methods::PRODUCT_QUERY), calls);
    // A parameter with a value is still checked, and a body field of the wrong JSON type
    // is refused rather than turned into text.
    let r = c
        .get(larder.url("/api/products/search?keywords=lamp&category_ids=44,abc"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    for body in [json!({"keywords": 123}), json!({"category_ids": true})] {
        let r = c
            .post(larder.url("/api/products/search"))
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{body}");
        let got: Value = r.json().await.unwrap();
        assert_eq!(got["success"], false, "{got}");
    }
    assert_eq!(gw.calls(methods::PRODUCT_QUERY), calls);
}

/// The seed's cache aliases answer in the seed's shapes: `/api/cache/stats` with
/// `cache_stats`, `cache_config` and `performance_impact`; `/api/status` with
/// `capabilities` and `performance`; `POST /api/cache/clear?pattern=products` clears every
/// product entry (search, hot, details) and leaves the categories.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_cache_aliases_answer_in_the_seeds_shapes() {
    const ADMIN: &str = "admin-key-0123456789abcdef";
    let gw = FakeGateway::start(APP_KEY, SECRET).await.unwrap();
    let larder = start(
        &gw,
        SECRET,
        &[("LARDER_ADMIN_KEY", ADMIN)],
        unlimited(),
        &shipped_policies(),
    );
    let c = reqwest::Client::new();
    let get = |path: &str| {
        let r = c.get(larder.url(path)).header("x-admin-key", ADMIN);
        async move { r.send().await.unwrap().json::<Value>().await.unwrap() }
    };
    let paths = [
        "/api/products/search?keywords=lamp",
        "/api/products/hot?keywords=lamp",
        "/api/products/details/1005006543210987",
        "/api/categories",
    ];
    for path in paths {
        for _ in 0..2 {
            let v = get(path).await;
            assert_eq!(v["success"], true, "{path}: {v}");
        }
    }

    let stats = get("/api/cache/stats").await;
    let d = &stats["data"];
    // Four routes, each a miss then a hit (the warmed categories: hits both times).
    let counts = &d["cache_stats"];
    let (hits, misses) = (
        counts["hits"].as_u64().unwrap(),
        counts["misses"].as_u64().unwrap(),
    );
    assert!(hits >= 4 && misses >= 3, "{stats}");
    assert_eq!(counts["total_requests"].as_u64(), Some(hits + misses));
    let rate = (hits as f64 * 10_000.0 / (hits + misses) as f64).round() / 100.0;
    assert_eq!(counts["hit_rate_percent"].as_f64(), Some(rate), "{stats}");
    assert_eq!(d["cache_config"]["redis_connected"], false, "{stats}");
    assert_eq!(d["cache_config"]["default_ttl"], 3600, "{stats}");
    assert!(d["cache_config"]["memory_cache_size"].as_u64().unwrap() >= 4);
    assert_eq!(
        d["performance_impact"]["estimated_api_calls_saved"].as_u64(),
        Some(hits),
        "{stats}"
    );
    assert!(d["performance_impact"]["cache_efficiency"].is_string());
    // Ours too: per-rule counters with their TTLs.
    assert_eq!(d["rules"]["aliexpress-product-details"]["ttl_secs"], 86_400);

    let status = get("/api/status").await;
    let s = &status["data"];
    assert_eq!(s["capabilities"]["intelligent_caching"], true, "{status}");
    assert_eq!(s["capabilities"]["redis_caching"], false, "{status}");
    assert_eq!(s["performance"]["caching_enabled"], true, "{status}");
    assert!(
        s["performance"]["cache_hit_rate"]
            .as_str()
            .is_some_and(|r| r.ends_with('%')),
        "{status}"
    );
    assert!(
        s["cache_performance"]["cache_stats"].is_object(),
        "{status}"
    );

    let r = c
        .post(larder.url("/api/cache/clear?pattern=products"))
        .header("x-admin-key", ADMIN)
        .send()
        .await
        .unwrap();
    let cleared: Value = r.json().await.unwrap();
    assert_eq!(cleared["data"]["pattern"], "products", "{cleared}");
    assert_eq!(cleared["data"]["cleared_entries"], 3, "{cleared}");
    for path in &paths[..3] {
        let v = get(path).await;
        assert_eq!(v["metadata"]["cache_hit"], false, "{path} survived: {v}");
    }
    let v = get("/api/categories").await;
    assert_eq!(v["metadata"]["cache_hit"], true, "{v}");
}
