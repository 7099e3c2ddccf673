//! The pipeline in process: one table of requests through `App::build`'s endpoint, with a
//! test plugin, under every tracing set-up (logs at `info` and at `debug`, OTLP export off
//! and on). Every run must answer alike — the same status, headers and body, whether a
//! request took the hit's short exit or went to the origin — and `larder explain` must name
//! the key, TTL and skip reason the server used.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use larder_plugin::{Plugin, PluginApi, PluginError, PluginInit};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request};
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use serde_json::{Value, json};
use tracing_subscriber::Layer;
use tracing_subscriber::layer::SubscriberExt;

use crate::app::App;
use crate::config::{LoadedConfig, TelemetryConfig};
use crate::http::pipeline::Server;
use crate::plugins::PluginRegistry;
use crate::telemetry::otel;

/// A plugin whose answers depend only on the request, so an origin answer and a cached one
/// can be compared byte for byte.
struct Probe;

struct ProbeApi;

#[OpenApi]
impl ProbeApi {
    #[oai(path = "/items/:id", method = "get", operation_id = "get_item")]
    async fn get_item(&self, id: Path<String>) -> Json<Value> {
        Json(json!({ "item": id.0, "tags": ["a", "b"] }))
    }

    #[oai(path = "/items/:id", method = "put", operation_id = "put_item")]
    async fn put_item(&self, id: Path<String>, body: Json<Value>) -> Json<Value> {
        Json(json!({ "item": id.0, "saved": body.0 }))
    }

    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, req: &Request) -> Json<Value> {
        Json(json!({ "auth": req.header("authorization") }))
    }

    #[oai(path = "/search", method = "post", operation_id = "search")]
    async fn search(&self, body: Json<Value>) -> Json<Value> {
        Json(json!({ "query": body.0, "hits": [1, 2, 3] }))
    }

    #[oai(path = "/limited", method = "get", operation_id = "limited")]
    async fn limited(&self) -> Json<Value> {
        Json(json!({ "limited": true }))
    }

    #[oai(path = "/big", method = "get", operation_id = "big")]
    async fn big(&self) -> Json<Value> {
        let items: Vec<Value> = (0..60)
            .map(|i| json!({ "id": i, "name": format!("item number {i}"), "price": i * 3 }))
            .collect();
        Json(json!({ "items": items }))
    }

    #[oai(path = "/fresh", method = "get", operation_id = "fresh")]
    async fn fresh(&self) -> Json<Value> {
        Json(json!({ "fresh": true }))
    }

    #[oai(path = "/plain", method = "get", operation_id = "plain")]
    async fn plain(&self) -> Json<Value> {
        Json(json!({ "plain": true }))
    }
}

impl Plugin for Probe {
    type Config = serde_json::Map<String, Value>;
    const NAME: &'static str = "probe";
    const VERSION: &'static str = "0.0.0";

    async fn new(_: PluginInit<Self::Config>) -> Result<Self, PluginError> {
        Ok(Probe)
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(ProbeApi)
    }
}

const POLICY: &str = r#"version: 1
rules:
  - name: probe-item
    match: { plugin: probe, operation: get_item }
    key: "probe:item:{path.id}"
    ttl: 5m
    tags: ["item:{path.id}"]
    bypass: { no_cache: true }
  - name: probe-write
    match: { plugin: probe, operation: put_item }
    invalidate: { tags: ["item:{path.id}"] }
  - name: probe-me
    match: { plugin: probe, operation: get_me }
    key: "probe:me"
    scope: user
    ttl: 1m
  - name: probe-search
    match: { plugin: probe, operation: search }
    methods: [POST]
    key: "probe:search:{body.q}:{body.page|1}"
    ttl: 2m
  - name: probe-limited
    match: { plugin: probe, operation: limited }
    key: "probe:limited"
    ttl: 1m
  - name: probe-fresh
    match: { plugin: probe, operation: fresh }
    cache: false
  - name: probe-big
    match: { plugin: probe, operation: big }
    key: "probe:big"
    ttl: 10m
    compression: { algorithms: [br], min_size: 256B }
"#;

/// One request of the table, sent `times` times in a row.
struct Case {
    name: &'static str,
    method: Method,
    target: &'static str,
    headers: &'static [(&'static str, &'static str)],
    body: Option<&'static str>,
    times: usize,
    /// What the last answer's `Cache-Status` must show (`None`: no header at all).
    last: Option<&'static str>,
}

const fn get(name: &'static str, target: &'static str, last: Option<&'static str>) -> Case {
    Case {
        name,
        method: Method::GET,
        target,
        headers: &[],
        body: None,
        times: 2,
        last,
    }
}

fn table() -> Vec<Case> {
    vec![
        get("public hit", "/items/a", Some("hit")),
        Case {
            headers: &[("accept-encoding", "br")],
            ..get("stored coding, client takes it", "/big", Some("hit"))
        },
        Case {
            headers: &[("accept-encoding", "gzip, deflate")],
            ..get("stored coding, client wants another", "/big", Some("hit"))
        },
        get("stored coding, client says nothing", "/big", Some("hit")),
        Case {
            headers: &[("cache-control", "no-cache")],
            ..get("client bypass", "/items/b", Some("detail=request"))
        },
        Case {
            headers: &[("authorization", "Bearer {alice}")],
            ..get(
                "credentials on a public rule",
                "/items/c",
                Some("detail=credentials"),
            )
        },
        Case {
            headers: &[("authorization", "Bearer {alice}")],
            ..get("user scope", "/me", Some("hit"))
        },
        Case {
            headers: &[("authorization", "Bearer {bob}")],
            ..get("user scope, another user", "/me", Some("hit"))
        },
        get(
            "user scope without a principal",
            "/me",
            Some("detail=principal"),
        ),
        Case {
            method: Method::POST,
            headers: &[("content-type", "application/json")],
            body: Some(r#"{"q": "lamp", "page": 2}"#),
            ..get("body key", "/search", Some("hit"))
        },
        Case {
            method: Method::POST,
            headers: &[("content-type", "application/json")],
            body: Some(r#"{ "page":2,"q":"lamp" }"#),
            ..get("body key, same body respelled", "/search", Some("hit"))
        },
        Case {
            headers: &[("if-none-match", "*")],
            ..get("conditional", "/items/a", Some("hit"))
        },
        Case {
            headers: &[("origin", "https://allowed.test")],
            ..get("CORS, allowed origin", "/items/d", Some("hit"))
        },
        Case {
            headers: &[("origin", "https://other.test")],
            ..get("CORS, other origin", "/items/e", Some("hit"))
        },
        Case {
            method: Method::OPTIONS,
            headers: &[
                ("origin", "https://allowed.test"),
                ("access-control-request-method", "GET"),
            ],
            ..get("CORS preflight", "/items/f", None)
        },
        Case {
            times: 3,
            ..get(
                "rate limit: two hits allowed, then refused",
                "/limited",
                None,
            )
        },
        Case {
            method: Method::PUT,
            headers: &[("content-type", "application/json")],
            body: Some(r#"{"name": "new"}"#),
            ..get("write", "/items/a", Some("fwd=method"))
        },
        get("after the write's purge", "/items/a", Some("hit")),
        get(
            "rule with cache: false",
            "/fresh",
            Some("fwd=bypass; detail=disabled"),
        ),
        get("no rule", "/plain", None),
        get("no route", "/nowhere", None),
        Case {
            method: Method::DELETE,
            ..get("no such method", "/items/a", None)
        },
    ]
}

/// An answer with what legitimately differs between two runs or between a miss and a hit
/// taken out: `Age`, `Server-Timing`, the TTL left (`max-age`, `ttl=`).
#[derive(Debug, Clone, PartialEq)]
struct Answer {
    status: StatusCode,
    headers: BTreeMap<String, Vec<String>>,
    body: Vec<u8>,
}

impl Answer {
    fn cache_status(&self) -> Option<&str> {
        self.headers
            .get("cache-status")
            .and_then(|v| v.first())
            .map(String::as_str)
    }

    /// Without the parts that say how it was served (`Cache-Status`) or when.
    fn content(&self) -> Answer {
        let mut a = self.stable();
        a.headers.remove("cache-status");
        a
    }

    fn stable(&self) -> Answer {
        let mut a = self.clone();
        a.headers.remove("age");
        a.headers.remove("server-timing");
        for v in a.headers.values_mut().flatten() {
            let parts: Vec<&str> = v
                .split("; ")
                .flat_map(|p| p.split(", "))
                .filter(|p| !p.starts_with("max-age=") && !p.starts_with("ttl="))
                .collect();
            *v = parts.join("; ");
        }
        a
    }
}

async fn send(endpoint: &Server, case: &Case) -> Answer {
    let mut req = Request::builder()
        .method(case.method.clone())
        .uri(case.target.parse().unwrap())
        // The client's address: admission keys rate limits by it.
        .header("x-forwarded-for", "10.1.2.3");
    for (k, v) in case.headers {
        req = req.header(*k, header_value(v));
    }
    let req = match case.body {
        Some(b) => req.body(b.to_owned()),
        None => req.finish(),
    };
    let resp = endpoint
        .call(req)
        .await
        .expect("the server answers every request");
    let status = resp.status();
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in resp.headers() {
        headers
            .entry(k.as_str().to_owned())
            .or_default()
            .push(v.to_str().unwrap_or("<bytes>").to_owned());
    }
    let body = resp.into_body().into_vec().await.unwrap();
    Answer {
        status,
        headers,
        body,
    }
}

const JWT_SECRET: &str = "a-test-secret-that-is-long-enough-for-hs256";

/// The server's clock starts here (`server.clock_start`): tokens' expiry is relative to it.
const CLOCK_START: &str = "2026-03-04T15:00:00Z";
const CLOCK_START_SECS: u64 = 1_772_636_400;

/// An HS256 token for `user`, valid for a day after [`CLOCK_START`].
fn token(user: &str) -> String {
    let exp = CLOCK_START_SECS + 86_400;
    jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &json!({ "sub": user, "exp": exp }),
        &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
    )
    .unwrap()
}

/// A table header value: `Bearer {alice}` stands for a valid token of user `alice`.
fn header_value(v: &str) -> String {
    match v.strip_prefix("Bearer {").and_then(|u| u.strip_suffix('}')) {
        Some(user) => format!("Bearer {}", token(user)),
        None => v.to_owned(),
    }
}

/// What the server did with one case, as `larder explain` should name it.
#[derive(Debug, Clone, PartialEq)]
enum Done {
    Stored { key: String, ttl_secs: u64 },
    Skipped(String),
    Uncovered,
}

/// The same outcome; a stored TTL read in whole seconds may be a second apart.
fn same_done(a: &Done, b: &Done) -> bool {
    match (a, b) {
        (
            Done::Stored {
                key: ka,
                ttl_secs: ta,
            },
            Done::Stored {
                key: kb,
                ttl_secs: tb,
            },
        ) => ka == kb && ta.abs_diff(*tb) <= 1,
        _ => a == b,
    }
}

async fn app() -> (App, Arc<Server>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("probe.yaml"), POLICY).unwrap();
    let config = format!(
        "policies: {}\nserver: {{ clock_start: \"{CLOCK_START}\" }}\nsecurity:\n  trust_forwarded_for: true\n  auth:\n    jwt: [{{ algorithms: [HS256], secret: \"{JWT_SECRET}\" }}]\nplugins:\n  probe:\n    cors_origins: [\"https://allowed.test\"]\n    route_limits: {{ \"GET /limited\": {{ per_minute: 2 }} }}\n",
        dir.path().display()
    );
    let loaded = LoadedConfig::parse(&dir.path().join("larder.yaml"), &config).unwrap();
    let mut registry = PluginRegistry::empty();
    registry.register::<Probe>();
    let (app, endpoint) = App::build(loaded, &registry).await.expect("app builds");
    (app, endpoint, dir)
}

/// One run of the table on a fresh server: every answer, and what each case did.
async fn run_table() -> Vec<(&'static str, Vec<Answer>, Done)> {
    let (app, endpoint, _dir) = app().await;
    let mut out = Vec::new();
    for case in table() {
        let before: Vec<String> = keys(&app).await;
        let mut answers = Vec::new();
        for _ in 0..case.times {
            answers.push(send(&endpoint, &case).await);
        }
        let after = keys(&app).await;
        let first = &answers[0];
        let last = answers.last().unwrap();

        // The short exit and the full path answer alike.
        for a in &answers[1..] {
            if a.status != StatusCode::TOO_MANY_REQUESTS {
                assert_eq!(
                    a.content(),
                    first.content(),
                    "{}: a repeat differs",
                    case.name
                );
            }
        }
        match case.last {
            Some(want) => {
                let got = last.cache_status().unwrap_or("(none)");
                assert!(
                    got.contains(want),
                    "{}: Cache-Status {got}, want {want}",
                    case.name
                );
            }
            None => assert!(
                last.cache_status().is_none() || last.status == StatusCode::TOO_MANY_REQUESTS,
                "{}: {:?}",
                case.name,
                last.cache_status()
            ),
        }

        // `larder explain` names what the server did.
        let done = match first.cache_status() {
            Some(s) if s.contains("stored") => {
                let new: Vec<&String> = after.iter().filter(|k| !before.contains(k)).collect();
                assert_eq!(new.len(), 1, "{}: new keys {new:?}", case.name);
                // The TTL the entry was stored with, not the client-facing max-age (a
                // purgeable rule tells clients `no-cache`).
                let entry = app
                    .engine
                    .cache
                    .lookup(new[0], &larder_store::CallOptions::default())
                    .await
                    .expect("the stored entry");
                Done::Stored {
                    key: new[0].clone(),
                    ttl_secs: entry.entry.ttl.as_secs(),
                }
            }
            Some(s) if s.contains("fwd=method") => Done::Skipped("method".into()),
            Some(s) => match s.split("detail=").nth(1) {
                Some(reason) if s.contains("fwd=bypass") => Done::Skipped(reason.into()),
                _ => Done::Stored {
                    key: String::new(),
                    ttl_secs: 0,
                },
            },
            None => Done::Uncovered,
        };
        check_explain(&app, &case, &done);
        out.push((case.name, answers, done));
    }
    out
}

async fn keys(app: &App) -> Vec<String> {
    app.engine
        .cache
        .keys("*", 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.key)
        .collect()
}

fn check_explain(app: &App, case: &Case, done: &Done) {
    let mut req = larder_policy::Request::new(case.method.as_str(), case.target);
    for (k, v) in case.headers {
        req = req.with_header(k, &header_value(v));
    }
    if let Some(b) = case.body {
        req = req.with_body(serde_json::from_str(b).unwrap());
    }
    let ex = app.explain(&req).expect("explain knows the request");
    let rule = ex.rule.as_ref();
    match done {
        Done::Stored { key, ttl_secs } if !key.is_empty() => {
            let rule = rule.unwrap_or_else(|| panic!("{}: explain found no rule", case.name));
            assert_eq!(rule.skip, None, "{}", case.name);
            assert_eq!(
                rule.key.as_deref(),
                Some(key.as_str()),
                "{}: key",
                case.name
            );
            let ttl = rule.ttl.as_ref().unwrap().ttl().as_secs();
            assert!(
                *ttl_secs <= ttl && ttl <= ttl_secs + 1,
                "{}: explain says ttl {ttl}s, the server stored {ttl_secs}s",
                case.name
            );
        }
        Done::Stored { .. } => {
            // Answered from the cache on the first request: an earlier case stored it.
            let rule = rule.unwrap_or_else(|| panic!("{}: explain found no rule", case.name));
            assert_eq!(rule.skip, None, "{}", case.name);
        }
        Done::Skipped(reason) => {
            let skip = rule
                .and_then(|r| r.skip)
                .unwrap_or_else(|| panic!("{}: explain says cached", case.name));
            assert_eq!(skip.as_str(), reason, "{}: skip reason", case.name);
        }
        Done::Uncovered => {
            let cached = rule.is_some_and(|r| r.cache && r.skip.is_none());
            assert!(
                !cached,
                "{}: explain says cached, the server did not",
                case.name
            );
        }
    }
}

/// A sink for the OTLP exporter: accepts every export.
async fn otlp_sink() -> String {
    use poem::listener::{Acceptor, Listener, TcpListener};
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = acceptor.local_addr()[0].as_socket_addr().copied().unwrap();
    let route = poem::Route::new().at(
        "/v1/traces",
        poem::post(poem::endpoint::make_sync(|_| {
            poem::Response::builder()
                .content_type("application/x-protobuf")
                .finish()
        })),
    );
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(route).await;
    });
    format!("http://{addr}")
}

#[derive(Clone, Default)]
struct LogBuf(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every request of the table answers the same under every tracing set-up, hit or miss,
/// and `larder explain` agrees with the server on each.
#[tokio::test(flavor = "current_thread")]
async fn every_request_answers_alike_whatever_the_tracing() {
    let endpoint = otlp_sink().await;
    let mut runs = Vec::new();
    // Export off first: turning an exporter on is process-wide.
    for (export, level) in [
        (false, "info"),
        (false, "debug"),
        (true, "info"),
        (true, "debug"),
    ] {
        let logs = LogBuf::default();
        let sink = logs.clone();
        let fmt = tracing_subscriber::fmt::layer()
            .with_ansi(false)
            .with_writer(move || sink.clone())
            .with_filter(tracing_subscriber::EnvFilter::new(level))
            .boxed();
        let mut layers = vec![fmt];
        if export {
            // Every request sampled: the most work tracing can add.
            let cfg = TelemetryConfig {
                otlp_endpoint: Some(endpoint.clone()),
                ..TelemetryConfig::default()
            };
            layers.push(otel::layer(&cfg).expect("the exporter starts"));
        }
        let subscriber = tracing_subscriber::registry().with(layers);
        let guard = tracing::subscriber::set_default(subscriber);
        assert_eq!(otel::enabled(), export);
        let run = run_table().await;
        drop(guard);
        let logs = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert_eq!(
            logs.contains("request done"),
            level == "debug",
            "{export} {level}: {logs}"
        );
        runs.push(((export, level), run));
    }
    // Off the runtime's thread: the exporter's last flush goes to the sink this runtime runs.
    tokio::task::spawn_blocking(otel::shutdown).await.unwrap();
    let (first_setup, first) = &runs[0];
    for (setup, run) in &runs[1..] {
        for ((name, a, done_a), (_, b, done_b)) in first.iter().zip(run) {
            let (a, b): (Vec<Answer>, Vec<Answer>) = (
                a.iter().map(Answer::stable).collect(),
                b.iter().map(Answer::stable).collect(),
            );
            assert_eq!(
                a, b,
                "{name}: {first_setup:?} and {setup:?} answer differently"
            );
            assert!(
                same_done(done_a, done_b),
                "{name}: {first_setup:?} did {done_a:?}, {setup:?} did {done_b:?}"
            );
        }
    }
}

/// The future every request is polled through (and which the router copies into its box)
/// stays small: what only misses, writes and bodies need is boxed away from it. At 8 KB it
/// cost a hit a third of its instructions in copies.
#[tokio::test]
async fn a_hits_future_stays_small() {
    let (app, _endpoint, _dir) = app().await;
    let p = crate::http::pipeline::Pipeline {
        origin: Arc::new(poem::EndpointExt::boxed(
            poem::EndpointExt::map_to_response(poem::endpoint::make_sync(|_| "x")),
        )),
        slot: None,
        engine: app.engine.clone(),
        admission: crate::http::admission::Admission {
            body_limit: 1,
            auth: app.auth.clone(),
            required: Vec::new().into(),
            limiters: Vec::new(),
            trust_forwarded_for: false,
            cors: None,
        },
        meter: None,
        name: "".into(),
        template: "".into(),
        source: "".into(),
        decoded_limit: 1,
        access_log: false,
        coded: Arc::new(crate::http::compression::CodedBodies::new(1 << 20)),
        plugin: None,
    };
    let sizes: BTreeMap<&str, usize> = p.future_sizes().into_iter().collect();
    // The request itself is most of it; 2 KB leaves room for the hit's own state.
    assert!(sizes["run"] <= 2048, "{sizes:?}");
    assert!(sizes["run"] < sizes["buffer_body"], "{sizes:?}");
}
