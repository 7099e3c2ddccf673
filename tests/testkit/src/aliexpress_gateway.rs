//! A fake AliExpress Open Platform gateway: a real HTTP server on `127.0.0.1:0`.
//!
//! It accepts what the real gateway accepts, `POST /sync` with a form-encoded body, and
//! checks it the same way: known `method`, the configured `app_key`, `sign_method=sha256`,
//! a numeric ms `timestamp`, `format=json`, `v=2.0`, and `sign` = uppercase hex
//! HMAC-SHA256 (keyed by the app secret) over every other parameter sorted by name as
//! `key1value1key2value2…`. A request that fails a check gets the real
//! `{"error_response":{"type","code","msg","request_id"}}` shape (HTTP 200, as the real
//! gateway answers). Valid requests get deterministic data in the real nesting:
//! `{"<method_with_underscores>_response":{"resp_result":{"resp_code":200,"resp_msg",
//! "result":{…}},"request_id"}}`.
//!
//! Data (all deterministic):
//! - `aliexpress.affiliate.product.query` / `.hotproduct.query`: `page_size` products
//!   (default 20) with ids `1005000000000000 + page_no * 1000 + i`; titles contain the
//!   keywords (`"<keywords> item <i>"`, hot: `"Hot <keywords> item <i>"`);
//!   `target_sale_price` starts at `min_sale_price` (cents) or 10.00 and rises by 1.00
//!   per item; `total_record_count` is 100.
//! - `.productdetail.get`: every id in `product_ids` except those starting with `9`
//!   (unknown products are left out, as the gateway does).
//! - `.category.get`: `100 Electronics` (children `101 Phones`, `102 Audio`) and
//!   `200 Home` (child `201 Kitchen`).
//! - `.link.generate`: one `promotion_link` per `source_values` entry,
//!   `https://s.click.aliexpress.com/e/_fake<first 8 hex of sha256(url)>`.
//!
//! [`Failure`] simulates outages: HTTP 500, a gateway that never answers (the client's
//! timeout fires; held requests are released when the mode changes or the gateway is
//! dropped), or a given `error_response`. [`FakeGateway::calls`] counts every request per
//! method, whatever the answer.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use hmac::{Hmac, KeyInit, Mac};
use poem::http::StatusCode;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Form;
use poem::{Endpoint, EndpointExt, FromRequest, IntoResponse, Request, Response, Route};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

/// The methods the gateway knows.
pub mod methods {
    /// Product search.
    pub const PRODUCT_QUERY: &str = "aliexpress.affiliate.product.query";
    /// Product details.
    pub const PRODUCT_DETAIL: &str = "aliexpress.affiliate.productdetail.get";
    /// Hot products.
    pub const HOT_PRODUCTS: &str = "aliexpress.affiliate.hotproduct.query";
    /// Categories.
    pub const CATEGORIES: &str = "aliexpress.affiliate.category.get";
    /// Affiliate links.
    pub const LINK_GENERATE: &str = "aliexpress.affiliate.link.generate";
    /// All of them.
    pub const ALL: &[&str] = &[
        PRODUCT_QUERY,
        PRODUCT_DETAIL,
        HOT_PRODUCTS,
        CATEGORIES,
        LINK_GENERATE,
    ];
}

/// How the gateway misbehaves.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Failure {
    /// Works normally.
    #[default]
    None,
    /// Every request gets HTTP 500 with an HTML body.
    Http500,
    /// Requests are held without an answer, so the client's timeout fires.
    Hang,
    /// Every request gets this `error_response` (HTTP 200), e.g. throttling.
    ErrorResponse {
        /// `error_response.code`.
        code: String,
        /// `error_response.msg`.
        msg: String,
    },
}

/// The reference signature: uppercase hex HMAC-SHA256 over `k1v1k2v2…` of every parameter
/// but `sign`, sorted by name.
pub fn sign(secret: &str, params: &BTreeMap<String, String>) -> String {
    let mut mac =
        Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts any key length");
    let mut text = String::new();
    for (k, v) in params.iter().filter(|(k, _)| k.as_str() != "sign") {
        text.push_str(k);
        text.push_str(v);
    }
    mac.update(text.as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

struct Shared {
    app_key: String,
    app_secret: String,
    calls: Mutex<HashMap<String, usize>>,
    last: Mutex<HashMap<String, BTreeMap<String, String>>>,
    rejected: AtomicUsize,
    failure: Mutex<Failure>,
    release: Notify,
    request_seq: AtomicUsize,
}

/// A running fake gateway. Dropping it stops the server.
pub struct FakeGateway {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for FakeGateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FakeGateway")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl FakeGateway {
    /// Starts a gateway on a free loopback port that accepts `app_key` signed with
    /// `app_secret`. Call inside a tokio runtime.
    pub async fn start(app_key: &str, app_secret: &str) -> anyhow::Result<FakeGateway> {
        let acceptor = TcpListener::bind("127.0.0.1:0")
            .into_acceptor()
            .await
            .context("bind the fake gateway on 127.0.0.1:0")?;
        let addr = acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr().copied())
            .context("fake gateway has no socket address")?;
        let shared = Arc::new(Shared {
            app_key: app_key.to_owned(),
            app_secret: app_secret.to_owned(),
            calls: Mutex::default(),
            last: Mutex::default(),
            rejected: AtomicUsize::new(0),
            failure: Mutex::default(),
            release: Notify::new(),
            request_seq: AtomicUsize::new(0),
        });
        let app = Route::new().at(
            "/sync",
            SyncEndpoint {
                shared: shared.clone(),
            }
            .map_to_response(),
        );
        let task = tokio::spawn(async move {
            let _ = poem::Server::new_with_acceptor(acceptor).run(app).await;
        });
        Ok(FakeGateway { addr, shared, task })
    }

    /// The base URL to configure as `ALIEXPRESS_API_URL`; requests go to `{base}/sync`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The listening address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests received for `method` (whatever was answered).
    pub fn calls(&self, method: &str) -> usize {
        lock(&self.shared.calls).get(method).copied().unwrap_or(0)
    }

    /// Requests received for every method.
    pub fn total_calls(&self) -> usize {
        lock(&self.shared.calls).values().sum()
    }

    /// Requests refused because their signature (or app key) was wrong.
    pub fn rejected(&self) -> usize {
        self.shared.rejected.load(Ordering::SeqCst)
    }

    /// The parameters of the last request for `method`, `sign` included.
    pub fn last_params(&self, method: &str) -> Option<BTreeMap<String, String>> {
        lock(&self.shared.last).get(method).cloned()
    }

    /// Switches failure simulation; held (`Hang`) requests are released with a 500.
    pub fn set_failure(&self, failure: Failure) {
        *lock(&self.shared.failure) = failure;
        self.shared.release.notify_waiters();
    }

    /// Forgets call counts, rejections and last parameters.
    pub fn reset_counts(&self) {
        lock(&self.shared.calls).clear();
        lock(&self.shared.last).clear();
        self.shared.rejected.store(0, Ordering::SeqCst);
    }
}

impl Drop for FakeGateway {
    fn drop(&mut self) {
        self.shared.release.notify_waiters();
        self.task.abort();
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct SyncEndpoint {
    shared: Arc<Shared>,
}

impl Endpoint for SyncEndpoint {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let (req, mut body) = req.split();
        let Form(params) = Form::<BTreeMap<String, String>>::from_request(&req, &mut body).await?;
        Ok(self.answer(params).await)
    }
}

impl SyncEndpoint {
    fn request_id(&self) -> String {
        format!(
            "fake{:012}",
            self.shared.request_seq.fetch_add(1, Ordering::SeqCst)
        )
    }

    fn error(&self, code: &str, msg: &str) -> Response {
        json_response(json!({ "error_response": {
            "type": "ISV",
            "code": code,
            "msg": msg,
            "request_id": self.request_id(),
        }}))
    }

    async fn answer(&self, params: BTreeMap<String, String>) -> Response {
        let method = params.get("method").cloned().unwrap_or_default();
        *lock(&self.shared.calls).entry(method.clone()).or_default() += 1;
        lock(&self.shared.last).insert(method.clone(), params.clone());

        let failure = lock(&self.shared.failure).clone();
        match failure {
            Failure::None => {}
            Failure::Http500 => {
                return (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "<html><body>500 Internal Server Error</body></html>",
                )
                    .into_response();
            }
            Failure::Hang => {
                self.shared.release.notified().await;
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            Failure::ErrorResponse { code, msg } => return self.error(&code, &msg),
        }

        if !methods::ALL.contains(&method.as_str()) {
            return self.error("InvalidMethod", "The specified method is invalid");
        }
        if params.get("app_key") != Some(&self.shared.app_key) {
            self.shared.rejected.fetch_add(1, Ordering::SeqCst);
            return self.error("InvalidAppKey", "Specified app key is invalid");
        }
        for (name, expected) in [("sign_method", "sha256"), ("format", "json"), ("v", "2.0")] {
            if params.get(name).map(String::as_str) != Some(expected) {
                return self.error(
                    "InvalidParameter",
                    &format!("Parameter `{name}` must be `{expected}`"),
                );
            }
        }
        let timestamp_ok = params
            .get("timestamp")
            .is_some_and(|t| t.len() == 13 && t.bytes().all(|b| b.is_ascii_digit()));
        if !timestamp_ok {
            return self.error(
                "InvalidTimestamp",
                "Invalid timestamp: milliseconds expected",
            );
        }
        let expected = sign(&self.shared.app_secret, &params);
        if params.get("sign") != Some(&expected) {
            self.shared.rejected.fetch_add(1, Ordering::SeqCst);
            return self.error(
                "IncompleteSignature",
                "The request signature does not conform to platform standards",
            );
        }
        let result = result_for(&method, &params);
        let wrapper = format!("{}_response", method.replace('.', "_"));
        json_response(json!({ wrapper: {
            "resp_result": { "resp_code": 200, "resp_msg": "Call succeeds", "result": result },
            "request_id": self.request_id(),
        }}))
    }
}

fn json_response(value: Value) -> Response {
    Response::builder()
        .content_type("application/json;charset=UTF-8")
        .body(value.to_string())
}

fn number(params: &BTreeMap<String, String>, name: &str, default: i64) -> i64 {
    params
        .get(name)
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn product(id: i64, title: String, price_cents: i64, currency: &str, tracking: &str) -> Value {
    let original = price_cents * 2;
    json!({
        "product_id": id,
        "product_title": title,
        "product_detail_url": format!("https://www.aliexpress.com/item/{id}.html"),
        "promotion_link": format!("https://s.click.aliexpress.com/e/_fakeitem{id}?tid={tracking}"),
        "target_sale_price": format!("{}.{:02}", price_cents / 100, price_cents % 100),
        "target_sale_price_currency": currency,
        "target_original_price": format!("{}.{:02}", original / 100, original % 100),
        "discount": "50%",
        "evaluate_rate": "97.5%",
        "commission_rate": "7.0%",
        "lastest_volume": id % 1000,
        "product_main_image_url": format!("https://ae01.alicdn.com/kf/fake-{id}.jpg"),
        "product_small_image_urls": { "string": [format!("https://ae01.alicdn.com/kf/fake-{id}-1.jpg")] },
        "shop_id": 2_000_000 + id % 1000,
        "shop_url": format!("https://www.aliexpress.com/store/{}", 2_000_000 + id % 1000),
        "first_level_category_id": 100,
        "first_level_category_name": "Electronics",
    })
}

fn result_for(method: &str, params: &BTreeMap<String, String>) -> Value {
    let currency = params.get("target_currency").map_or("USD", String::as_str);
    let tracking = params.get("tracking_id").map_or("", String::as_str);
    match method {
        methods::PRODUCT_QUERY | methods::HOT_PRODUCTS => {
            let page_no = number(params, "page_no", 1);
            let page_size = number(params, "page_size", 20).clamp(1, 50);
            let start_cents = number(params, "min_sale_price", 1000);
            let keywords = params.get("keywords").map_or("", String::as_str);
            let hot = method == methods::HOT_PRODUCTS;
            let products: Vec<Value> = (0..page_size)
                .map(|i| {
                    let id = 1_005_000_000_000_000 + page_no * 1000 + i;
                    let title = if hot {
                        format!("Hot {keywords} item {i}")
                    } else {
                        format!("{keywords} item {i}")
                    };
                    product(id, title, start_cents + i * 100, currency, tracking)
                })
                .collect();
            json!({
                "current_page_no": page_no,
                "current_record_count": products.len(),
                "total_record_count": 100,
                "products": { "product": products },
            })
        }
        methods::PRODUCT_DETAIL => {
            let products: Vec<Value> = params
                .get("product_ids")
                .map(String::as_str)
                .unwrap_or("")
                .split(',')
                .filter(|id| !id.is_empty() && !id.starts_with('9'))
                .filter_map(|id| id.parse::<i64>().ok())
                .map(|id| product(id, format!("Product {id}"), 1999, currency, tracking))
                .collect();
            json!({
                "current_record_count": products.len(),
                "products": { "product": products },
            })
        }
        methods::CATEGORIES => json!({
            "total_result_count": 5,
            "categories": { "category": [
                { "category_id": 100, "category_name": "Electronics" },
                { "category_id": 101, "category_name": "Phones", "parent_category_id": 100 },
                { "category_id": 102, "category_name": "Audio", "parent_category_id": 100 },
                { "category_id": 200, "category_name": "Home" },
                { "category_id": 201, "category_name": "Kitchen", "parent_category_id": 200 },
            ]},
        }),
        methods::LINK_GENERATE => {
            let links: Vec<Value> = params
                .get("source_values")
                .map(String::as_str)
                .unwrap_or("")
                .split(',')
                .filter(|u| !u.is_empty())
                .map(|url| {
                    let digest = hex::encode(Sha256::digest(url.as_bytes()));
                    json!({
                        "source_value": url,
                        "promotion_link": format!("https://s.click.aliexpress.com/e/_fake{}", &digest[..8]),
                    })
                })
                .collect();
            json!({
                "total_result_count": links.len(),
                "promotion_links": { "promotion_link": links },
            })
        }
        _ => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reference_signature_matches_a_hand_computed_vector() {
        // printf %s 'app_keyk1methodm.xsign_methodsha256timestamp1700000000000' \
        //   | openssl dgst -sha256 -hmac secret
        let params: BTreeMap<String, String> = [
            ("app_key", "k1"),
            ("method", "m.x"),
            ("sign_method", "sha256"),
            ("timestamp", "1700000000000"),
            ("sign", "not part of it"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert_eq!(
            sign("secret", &params),
            "0981D56FB050DFA79A9792BD0B13FE0E89AA169D9DBAA965135B26B86A47F7B7"
        );
    }
}
