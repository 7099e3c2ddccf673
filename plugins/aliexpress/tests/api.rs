//! The plugin in the whole application (`larder_core::testing::mount`: the request
//! pipeline, its shipped policy, the memory cache, the real host) against the fake gateway
//! from the testkit (a real HTTP server on loopback that verifies signatures).
//!
//! Unset settings fall back to the `ALIEXPRESS_*` environment, as in production: the tests
//! set every setting they depend on, and expect no `ALIEXPRESS_*` credentials or internal
//! key in the environment they run in.

use std::time::Duration;

use larder_aliexpress::AliexpressPlugin;
use larder_core::testing::{LoadOutcome, Mount, Mounted, mount};
use larder_plugin::Invalidation;
use larder_testkit::aliexpress_gateway::{Failure, FakeGateway, methods};
use poem::http::{Method, StatusCode};
use serde_json::{Value, json};

const KEY: &str = "test-app-key";
const SECRET: &str = "test-app-secret";
/// Where the tests mount the plugin.
const PREFIX: &str = "/ax";
/// The core's admin key: the cache aliases (`/api/cache/*`) need `cache:read`/`cache:manage`.
const ADMIN_KEY: &str = "admin-key-for-the-tests";

fn real_settings(gateway: &FakeGateway, secret: &str) -> Value {
    json!({
        "app_key": KEY,
        "app_secret": secret,
        "api_url": gateway.base_url(),
        "tracking_id": "larder_test",
    })
}

/// The plugin with `settings`, mounted at [`PREFIX`]; the server's clock starts at
/// 2026-03-04T15:00:00Z.
async fn mounted(settings: Value) -> Mounted {
    mounted_trusting(settings, false).await
}

/// [`mounted`], the core trusting proxy headers (`X-Forwarded-*`) or not.
async fn mounted_trusting(settings: Value, trust_forwarded_for: bool) -> Mounted {
    mount::<AliexpressPlugin>(Mount {
        prefix: PREFIX.into(),
        settings,
        config: format!(
            "server: {{ clock_start: \"2026-03-04T15:00:00Z\" }}\n\
             security:\n  trust_forwarded_for: {trust_forwarded_for}\n  \
             admin_keys: [{{ key: \"{ADMIN_KEY}\", role: write }}]\n"
        ),
        ..Mount::default()
    })
    .await
}

async fn real() -> (FakeGateway, Mounted) {
    let gateway = FakeGateway::start(KEY, SECRET).await.expect("fake gateway");
    let m = mounted(real_settings(&gateway, SECRET)).await;
    (gateway, m)
}

/// Sends a request under [`PREFIX`] (JSON body when given; the admin key on the cache
/// aliases) and returns status and parsed JSON body.
async fn call(m: &Mounted, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
    call_with(m, method, path, body, &[]).await
}

/// Like [`call`], with extra headers.
async fn call_with(
    m: &Mounted,
    method: Method,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut req = m.client.request(method, format!("{PREFIX}{path}"));
    if path.starts_with("/api/cache/") {
        req = req.header("x-admin-key", ADMIN_KEY);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(body) = body {
        req = req.body_json(&body);
    }
    read(req.send().await).await
}

/// POSTs a raw body as JSON.
async fn post_raw(m: &Mounted, path: &str, body: &'static str) -> (StatusCode, Value) {
    let req = m
        .client
        .post(format!("{PREFIX}{path}"))
        .content_type("application/json")
        .body(body);
    read(req.send().await).await
}

async fn read(resp: poem::test::TestResponse) -> (StatusCode, Value) {
    let status = resp.0.status();
    let text = resp.0.into_body().into_string().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, value)
}

fn meta(body: &Value) -> &Value {
    &body["metadata"]
}

#[tokio::test]
async fn second_search_is_served_from_cache() {
    let (gateway, m) = real().await;
    let path = "/api/products/search?keywords=usb%20cable&page_size=5";

    let (status, first) = call(&m, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK, "{first}");
    assert_eq!(first["success"], true);
    assert_eq!(meta(&first)["cache_hit"], false);
    assert_eq!(meta(&first)["cache_enabled"], true);
    assert_eq!(meta(&first)["api_integration"], "real");
    assert!(meta(&first)["processing_time_ms"].as_f64().unwrap() >= 0.0);
    assert!(
        meta(&first)["request_id"]
            .as_str()
            .is_some_and(|r| !r.is_empty())
    );
    assert!(meta(&first)["timestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(first["data"]["products"].as_array().unwrap().len(), 5);
    assert_eq!(
        first["data"]["products"][0]["product_title"],
        "usb cable item 0"
    );
    assert_eq!(gateway.calls(methods::PRODUCT_QUERY), 1);

    let (status, second) = call(&m, Method::GET, path, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta(&second)["cache_hit"], true);
    assert_eq!(second["data"], first["data"]);
    assert_eq!(
        gateway.calls(methods::PRODUCT_QUERY),
        1,
        "no second upstream call"
    );
}

#[tokio::test]
async fn get_and_post_forms_of_one_search_share_one_upstream_call() {
    let (gateway, m) = real().await;
    let (_, get) = call(
        &m,
        Method::GET,
        "/api/products/search?keywords=usb%20cable",
        None,
    )
    .await;
    assert_eq!(meta(&get)["cache_hit"], false);

    // Same search: explicit defaults, other whitespace, the POST body form.
    let body =
        json!({"keywords": " usb  cable", "page_no": 1, "page_size": 10, "sort": "SALE_PRICE_ASC"});
    let (status, post) = call(&m, Method::POST, "/api/products/search", Some(body.clone())).await;
    assert_eq!(status, StatusCode::OK, "{post}");
    assert_eq!(meta(&post)["cache_hit"], true);
    let (_, alias) = call(&m, Method::POST, "/api/products", Some(body)).await;
    assert_eq!(meta(&alias)["cache_hit"], true);
    let (_, alias_get) = call(&m, Method::GET, "/api/products?keywords=usb+cable", None).await;
    assert_eq!(meta(&alias_get)["cache_hit"], true);
    assert_eq!(gateway.calls(methods::PRODUCT_QUERY), 1);

    // A different search is a different entry.
    let (_, other) = call(
        &m,
        Method::GET,
        "/api/products/search?keywords=usb%20cable&page_no=2",
        None,
    )
    .await;
    assert_eq!(meta(&other)["cache_hit"], false);
    assert_eq!(gateway.calls(methods::PRODUCT_QUERY), 2);
}

#[tokio::test]
async fn requests_are_signed_and_prices_go_upstream_in_cents() {
    let (gateway, m) = real().await;
    let (status, body) = call(&m, Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "lamp", "min_sale_price": 12.5, "max_sale_price": 99.99, "sort": "LAST_VOLUME_DESC"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let sent = gateway.last_params(methods::PRODUCT_QUERY).unwrap();
    assert_eq!(sent["min_sale_price"], "1250");
    assert_eq!(sent["max_sale_price"], "9999");
    assert_eq!(sent["sort"], "LAST_VOLUME_DESC");
    assert_eq!(sent["app_key"], KEY);
    assert_eq!(sent["sign_method"], "sha256");
    assert_eq!(sent["format"], "json");
    assert_eq!(sent["v"], "2.0");
    assert_eq!(sent["tracking_id"], "larder_test");
    assert_eq!(sent["timestamp"].len(), 13, "milliseconds");
    assert_eq!(
        gateway.rejected(),
        0,
        "the fake gateway accepted the signature"
    );
    // The gateway priced from the cents it got.
    assert_eq!(body["data"]["products"][0]["app_sale_price"], "12.50");
}

#[tokio::test]
async fn wrong_secret_surfaces_the_gateway_error_as_a_502_envelope() {
    let gateway = FakeGateway::start(KEY, SECRET).await.unwrap();
    let m = mounted(real_settings(&gateway, "not-the-secret")).await;
    let (status, body) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(body["error"]["code"], "upstream_error");
    assert_eq!(body["error"]["upstream"]["code"], "IncompleteSignature");
    assert_eq!(
        body["error"]["upstream"]["msg"],
        "The request signature does not conform to platform standards"
    );
    assert_eq!(meta(&body)["cache_hit"], false);
    assert_eq!(meta(&body)["api_integration"], "real");
    assert!(body.get("data").is_none(), "no data, and never mock data");
    assert_eq!(gateway.rejected(), 1);
    // Errors are not cached: the next request asks again.
    call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(gateway.calls(methods::CATEGORIES), 2);
}

#[tokio::test]
async fn outage_with_nothing_cached_is_a_502_envelope() {
    let (gateway, m) = real().await;
    gateway.set_failure(Failure::Http500);
    let (status, body) = call(&m, Method::GET, "/api/products/hot?keywords=fan", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["upstream"]["code"], "http_500");
    assert!(body.get("data").is_none());

    gateway.set_failure(Failure::ErrorResponse {
        code: "ApiCallLimit".into(),
        msg: "This ban will last for 1 more seconds".into(),
    });
    let (status, body) = call(
        &m,
        Method::GET,
        "/api/affiliate/link?url=https://www.aliexpress.com/item/1.html",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
    assert_eq!(body["error"]["upstream"]["code"], "ApiCallLimit");
}

#[tokio::test]
async fn a_gateway_that_never_answers_times_out_into_a_502() {
    let gateway = FakeGateway::start(KEY, SECRET).await.unwrap();
    let mut settings = real_settings(&gateway, SECRET);
    settings["timeout_ms"] = json!(300);
    let m = mounted(settings).await;
    gateway.set_failure(Failure::Hang);
    let (status, body) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{body}");
    assert_eq!(body["error"]["upstream"]["code"], "timeout");
}

#[tokio::test]
async fn a_stale_entry_is_served_when_the_loader_fails() {
    let (gateway, m) = real().await;
    let (_, fresh) = call(&m, Method::GET, "/api/categories", None).await;
    // Past the categories rule's TTL (2h) and stale-while-revalidate window (5m), inside
    // its stale-if-error window (1d), on the server's clock.
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(3 * 3600)).await;
    tokio::time::resume();
    gateway.set_failure(Failure::Http500);
    let (status, stale) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(status, StatusCode::OK, "{stale}");
    assert_eq!(meta(&stale)["cache_hit"], true);
    assert_eq!(
        m.loads().last().map(|l| l.outcome.clone()),
        Some(LoadOutcome::StaleIfError)
    );
    assert_eq!(stale["data"], fresh["data"]);
    assert_eq!(
        gateway.calls(methods::CATEGORIES),
        2,
        "the loader did try upstream"
    );

    // Once the entry is gone, the outage shows.
    let (status, _) = call(&m, Method::POST, "/api/cache/clear", None).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY);
}

#[tokio::test]
async fn no_cache_search_always_asks_upstream_and_stores_nothing() {
    let (gateway, m) = real().await;
    let body = json!({"keywords": "tent"});
    for _ in 0..2 {
        let (status, reply) = call(
            &m,
            Method::POST,
            "/api/products/search/no-cache",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(meta(&reply)["cache_hit"], false);
        assert_eq!(meta(&reply)["cache_enabled"], false);
    }
    assert_eq!(gateway.calls(methods::PRODUCT_QUERY), 2);
    assert!(m.loads().is_empty(), "{:?}", m.loads());
    assert!(m.cached_keys("*").await.is_empty());
    let (_, cached) = call(&m, Method::POST, "/api/products/search", Some(body)).await;
    assert_eq!(meta(&cached)["cache_hit"], false);
}

#[tokio::test]
async fn details_children_and_links_come_from_the_gateway() {
    let (gateway, m) = real().await;

    let (status, one) = call(
        &m,
        Method::GET,
        "/api/products/details/1005000000001000",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{one}");
    assert_eq!(
        one["data"]["products"][0]["product_title"],
        "Product 1005000000001000"
    );
    let (status, missing) = call(&m, Method::GET, "/api/products/details/9123", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{missing}");

    let ids = json!({"product_ids": ["1005000000000002", "9000000000000001", "1005000000000001"]});
    let (_, many) = call(&m, Method::POST, "/api/products/details", Some(ids)).await;
    assert_eq!(many["data"]["requested"], 3);
    assert_eq!(many["data"]["found"], 2);
    assert_eq!(
        many["data"]["products"][0]["product_id"],
        "1005000000000002"
    );
    assert_eq!(
        gateway.last_params(methods::PRODUCT_DETAIL).unwrap()["product_ids"],
        "1005000000000001,1005000000000002,9000000000000001"
    );

    let (_, children) = call(&m, Method::GET, "/api/categories/100/children", None).await;
    let names: Vec<&str> = children["data"]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["category_name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Phones", "Audio"]);
    let (status, _) = call(&m, Method::GET, "/api/categories/999/children", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Both children lookups reused the one cached category list.
    assert_eq!(gateway.calls(methods::CATEGORIES), 1);

    let urls = [
        "https://www.aliexpress.com/item/2.html",
        "https://www.aliexpress.com/item/1.html",
    ];
    let (_, links) = call(
        &m,
        Method::POST,
        "/api/affiliate/links",
        Some(json!({"urls": urls})),
    )
    .await;
    assert_eq!(meta(&links)["cache_hit"], false);
    let got: Vec<&str> = links["data"]["affiliate_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["original_url"].as_str().unwrap())
        .collect();
    assert_eq!(got, urls);
    assert!(
        links["data"]["affiliate_links"][0]["affiliate_url"]
            .as_str()
            .unwrap()
            .starts_with("https://s.click.aliexpress.com/e/_fake")
    );
    // The same URLs in another order: the same entry, answered in the order asked.
    let reversed = [urls[1], urls[0]];
    let (_, again) = call(
        &m,
        Method::POST,
        "/api/affiliate/links",
        Some(json!({"urls": reversed})),
    )
    .await;
    assert_eq!(meta(&again)["cache_hit"], true);
    assert_eq!(again["data"]["affiliate_links"][0]["original_url"], urls[1]);
    assert_eq!(gateway.calls(methods::LINK_GENERATE), 1);
}

#[tokio::test]
async fn without_credentials_every_route_answers_from_mock_mode() {
    let m = mounted(Value::Null).await;
    let search = json!({"keywords": "desk lamp", "page_size": 3});
    let routes: Vec<(Method, &str, Option<Value>)> = vec![
        (
            Method::GET,
            "/api/products/search?keywords=desk%20lamp&page_size=3",
            None,
        ),
        (Method::POST, "/api/products/search", Some(search.clone())),
        (
            Method::POST,
            "/api/products/search/no-cache",
            Some(search.clone()),
        ),
        (Method::GET, "/api/products?keywords=desk%20lamp", None),
        (Method::POST, "/api/products", Some(search.clone())),
        (Method::GET, "/api/products/details/1005006543210987", None),
        (
            Method::POST,
            "/api/products/details",
            Some(json!({"product_ids": ["1", "2"]})),
        ),
        (Method::GET, "/api/products/hot", None),
        (
            Method::POST,
            "/api/products/hot",
            Some(json!({"page_size": 4})),
        ),
        (Method::GET, "/api/categories", None),
        (Method::GET, "/api/categories/44/children", None),
        (
            Method::GET,
            "/api/affiliate/link?url=https://www.aliexpress.com/item/7.html",
            None,
        ),
        (
            Method::POST,
            "/api/affiliate/links",
            Some(json!({"urls": ["https://a.aliexpress.com/x"]})),
        ),
        (Method::GET, "/api/status", None),
        (Method::GET, "/api/cache/stats", None),
        (Method::POST, "/api/cache/clear?pattern=search", None),
    ];
    for (method, path, body) in routes {
        let (status, reply) = call(&m, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {reply}");
        assert_eq!(reply["success"], true, "{method} {path}");
        assert_eq!(meta(&reply)["api_integration"], "mock", "{method} {path}");
    }
    let (_, products) = call(
        &m,
        Method::GET,
        "/api/products/search?keywords=desk%20lamp&page_size=3",
        None,
    )
    .await;
    assert_eq!(products["data"]["products"].as_array().unwrap().len(), 3);
    assert_eq!(
        meta(&products)["cache_hit"],
        false,
        "the clear above dropped it"
    );
    let (_, status) = call(&m, Method::GET, "/api/status", None).await;
    assert_eq!(status["data"]["integration_mode"], "mock");
    let (status, doc) = call(&m, Method::GET, "/openapi-gpt.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
}

#[tokio::test]
async fn bad_inputs_are_400s_that_name_the_field() {
    let m = mounted(Value::Null).await;
    let ids: Vec<String> = (0..21).map(|i| format!("10050000000000{i:02}")).collect();
    let urls: Vec<String> = (0..51)
        .map(|i| format!("https://a.aliexpress.com/{i}"))
        .collect();
    let cases: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (
            Method::GET,
            "/api/products/search?keywords=x&page_size=0",
            None,
            "page_size",
        ),
        (
            Method::GET,
            "/api/products/search?keywords=x&page_size=51",
            None,
            "page_size",
        ),
        (
            Method::GET,
            "/api/products/search?keywords=x&page_no=0",
            None,
            "page_no",
        ),
        (
            Method::GET,
            "/api/products/search?keywords=x&page_size=many",
            None,
            "page_size",
        ),
        (Method::GET, "/api/products/search", None, "keywords"),
        (Method::GET, "/api/products/hot?sort=CHEAPEST", None, "sort"),
        (
            Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "x", "page_size": 0})),
            "page_size",
        ),
        (
            Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "x", "page_size": 51})),
            "page_size",
        ),
        (
            Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "x", "page_no": 0})),
            "page_no",
        ),
        // A wrong JSON type names its field, not `body`.
        (
            Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "x", "page_size": "10"})),
            "page_size",
        ),
        (
            Method::POST,
            "/api/products/search",
            Some(json!({"keywords": "x", "min_sale_price": 9, "max_sale_price": 1})),
            "max_sale_price",
        ),
        (
            Method::POST,
            "/api/products/details",
            Some(json!({"product_ids": ids})),
            "product_ids",
        ),
        (
            Method::POST,
            "/api/products/details",
            Some(json!({"product_ids": []})),
            "product_ids",
        ),
        (Method::GET, "/api/products/details/12ab", None, "id"),
        (
            Method::GET,
            "/api/categories/abc/children",
            None,
            "parent_id",
        ),
        (
            Method::POST,
            "/api/affiliate/links",
            Some(json!({"urls": urls})),
            "urls",
        ),
        (
            Method::POST,
            "/api/affiliate/links",
            Some(json!({"urls": ["ftp://x.y/z"]})),
            "urls[0]",
        ),
        (Method::GET, "/api/affiliate/link", None, "url"),
        (Method::POST, "/api/cache/clear?pattern=*", None, "pattern"),
    ];
    for (method, path, body, field) in cases {
        let (status, reply) = call(&m, method.clone(), path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{method} {path}: {reply}");
        assert_eq!(reply["success"], false);
        assert_eq!(
            reply["error"]["code"], "validation_error",
            "{method} {path}"
        );
        assert_eq!(reply["error"]["field"], field, "{method} {path}: {reply}");
        assert_eq!(meta(&reply)["api_integration"], "mock");
    }
    let (status, reply) = post_raw(&m, "/api/products/search", "{\"keywords\": ").await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["error"]["field"], "body");
    let (_, reply) = call(&m, Method::POST, "/api/cache/clear?pattern=*", None).await;
    assert!(
        reply["error"]["message"]
            .as_str()
            .unwrap()
            .contains("omit `pattern`")
    );
}

#[tokio::test]
async fn api_routes_need_the_internal_key_when_one_is_set() {
    let m = mounted(json!({"internal_key": "k3y-for-tests"})).await;
    for headers in [&[][..], &[("x-internal-key", "wrong")][..]] {
        let (status, body) = call_with(&m, Method::GET, "/api/categories", None, headers).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["success"], false);
        assert_eq!(body["error"]["code"], "unauthorized");
    }
    // Refused before validation: a bad input without the key is still a 401.
    let (status, _) = call(&m, Method::GET, "/api/products/search?page_size=0", None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call_with(
        &m,
        Method::GET,
        "/api/categories",
        None,
        &[
            ("x-internal-key", "k3y-for-tests"),
            ("x-request-id", "req-42"),
        ],
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(meta(&body)["request_id"], "req-42");
    // The GPT document is public and declares the key.
    let (status, doc) = call(&m, Method::GET, "/openapi-gpt.json", None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        doc["components"]["securitySchemes"]["internalKey"]["name"],
        "x-internal-key"
    );
}

fn check_gpt_document(doc: &Value) {
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    assert!(
        paths.keys().all(|p| p.starts_with("/api/")),
        "{:?}",
        paths.keys()
    );
    assert!(paths.contains_key("/api/products/search"));
    assert!(paths.contains_key("/api/categories/{parent_id}/children"));
    assert!(!paths.contains_key("/api/cache/clear"));
    let mut ids = std::collections::HashSet::new();
    for (path, item) in paths {
        for (method, op) in item.as_object().unwrap() {
            let id = op["operationId"].as_str();
            assert!(id.is_some(), "{method} {path} has no operationId");
            assert!(ids.insert(id.unwrap().to_owned()), "duplicate {id:?}");
        }
    }
    fn descriptions(v: &Value, out: &mut Vec<String>) {
        match v {
            Value::Object(m) => {
                for (k, v) in m {
                    if let (true, Some(s)) = (k == "description", v.as_str()) {
                        out.push(s.to_owned());
                    } else {
                        descriptions(v, out);
                    }
                }
            }
            Value::Array(a) => a.iter().for_each(|v| descriptions(v, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    descriptions(doc, &mut all);
    assert!(all.iter().all(|d| d.chars().count() <= 300));
}

#[tokio::test]
async fn gpt_document_is_openapi_3_with_the_configured_server() {
    let m = mounted(json!({"public_url": "https://gpt.example.test/aliexpress/"})).await;
    let (status, doc) = call(&m, Method::GET, "/openapi-gpt.json", None).await;
    assert_eq!(status, StatusCode::OK);
    check_gpt_document(&doc);
    assert_eq!(
        doc["servers"][0]["url"],
        "https://gpt.example.test/aliexpress"
    );

    // Without a configured URL, it is the request's host and the mount prefix; the
    // forwarded scheme counts because the core is told to trust proxy headers.
    let m = mounted_trusting(Value::Null, true).await;
    let (_, doc) = call_with(
        &m,
        Method::GET,
        "/openapi-gpt.json",
        None,
        &[("host", "larder.test:8080"), ("x-forwarded-proto", "https")],
    )
    .await;
    check_gpt_document(&doc);
    assert_eq!(doc["servers"][0]["url"], "https://larder.test:8080/ax");
}

#[tokio::test]
async fn the_categories_warm_source_fills_the_cache() {
    let (gateway, m) = real().await;
    assert_eq!(m.plugin().warm_sources()[0].name, "categories");
    let requests = m.plugin().warm_source("categories").await.unwrap();
    let paths: Vec<&str> = requests.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(
        paths,
        [
            "/api/categories",
            "/api/categories/100/children",
            "/api/categories/200/children"
        ]
    );
    let (_, body) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(meta(&body)["cache_hit"], true);
    assert_eq!(body["data"]["total_categories"], 2);
    assert_eq!(gateway.calls(methods::CATEGORIES), 1);
    assert!(m.plugin().warm_source("nope").await.is_err());
}

#[tokio::test]
async fn cache_clear_drops_matching_entries_only() {
    let (gateway, m) = real().await;
    call(&m, Method::GET, "/api/products/search?keywords=a", None).await;
    call(&m, Method::GET, "/api/categories", None).await;
    let (status, cleared) = call(&m, Method::POST, "/api/cache/clear?pattern=search", None).await;
    assert_eq!(status, StatusCode::OK, "{cleared}");
    assert_eq!(cleared["data"]["cleared_entries"], 1);
    let (_, cats) = call(&m, Method::GET, "/api/categories", None).await;
    assert_eq!(meta(&cats)["cache_hit"], true);
    let (_, all) = call(&m, Method::POST, "/api/cache/clear", None).await;
    assert_eq!(all["data"]["pattern"], "all");
    assert_eq!(all["data"]["cleared_entries"], 1);
    assert_eq!(gateway.calls(methods::CATEGORIES), 1);
    // Keys are per rule and mode, readable for pattern clears.
    let first = &m.loads()[0];
    assert_eq!(first.rule, "aliexpress-search");
    assert!(first.key.starts_with("search:real:"), "{}", first.key);
    // What the clears asked the host for, and what each removed from the real cache.
    let asked: Vec<(Invalidation, Result<u64, String>)> = m
        .invalidations()
        .into_iter()
        .map(|i| (i.what, i.removed))
        .collect();
    assert_eq!(
        asked,
        [
            (Invalidation::Pattern("*search*".into()), Ok(1)),
            (Invalidation::All, Ok(1)),
        ]
    );
}
