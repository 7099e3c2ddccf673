//! OpenTelemetry end to end: the real binary exports its spans over OTLP/HTTP to a receiver
//! in this test, makes an incoming `traceparent` the parent of its server span, and passes
//! the trace on to a plugin's upstream (`tests/plugins/traced`, a real `.so`).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use larder_testkit::server::{Larder, LarderOptions, artifacts, workspace_root};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use poem::listener::{Acceptor, Listener, TcpListener};
use poem::web::Data;
use poem::{EndpointExt, Route, handler, post};
use prost::Message;

/// Spans as exported, with the `service.name` of their resource.
#[derive(Default)]
struct Received {
    spans: Vec<(String, Span)>,
    requests: usize,
}

type Shared<T> = Arc<Mutex<T>>;

#[handler]
fn export(body: Vec<u8>, received: Data<&Shared<Received>>) -> Vec<u8> {
    let request = ExportTraceServiceRequest::decode(body.as_slice()).expect("OTLP protobuf");
    let mut received = received.lock().unwrap();
    received.requests += 1;
    for rs in request.resource_spans {
        let service = rs
            .resource
            .iter()
            .flat_map(|r| &r.attributes)
            .find(|kv| kv.key == "service.name")
            .and_then(|kv| string(kv.value.as_ref()?.value.as_ref()?))
            .unwrap_or_default();
        for ss in rs.scope_spans {
            for span in ss.spans {
                received.spans.push((service.clone(), span));
            }
        }
    }
    // An empty ExportTraceServiceResponse.
    Vec::new()
}

/// The upstream the `traced` plugin calls: records each request's `traceparent`.
#[handler]
fn upstream(req: &poem::Request, seen: Data<&Shared<Vec<Option<String>>>>) -> &'static str {
    let traceparent = req.header("traceparent").map(str::to_owned);
    seen.lock().unwrap().push(traceparent);
    "item from upstream"
}

async fn serve(route: impl poem::Endpoint + 'static) -> SocketAddr {
    let acceptor = TcpListener::bind("127.0.0.1:0")
        .into_acceptor()
        .await
        .unwrap();
    let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
    tokio::spawn(async move {
        let _ = poem::Server::new_with_acceptor(acceptor).run(route).await;
    });
    addr
}

fn string(v: &Any) -> Option<String> {
    match v {
        Any::StringValue(s) => Some(s.clone()),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A span's attributes as text (`200` for ints, `true` for bools).
fn attrs(span: &Span) -> BTreeMap<String, String> {
    span.attributes
        .iter()
        .filter_map(|kv| {
            let v = match kv.value.as_ref()?.value.as_ref()? {
                Any::StringValue(s) => s.clone(),
                Any::IntValue(i) => i.to_string(),
                Any::BoolValue(b) => b.to_string(),
                Any::DoubleValue(d) => d.to_string(),
                other => format!("{other:?}"),
            };
            Some((kv.key.clone(), v))
        })
        .collect()
}

/// One trace's spans, by name (a name may repeat).
struct Trace<'a>(Vec<&'a Span>);

impl<'a> Trace<'a> {
    fn of(spans: &'a [(String, Span)], trace_id: &str) -> Self {
        Self(
            spans
                .iter()
                .map(|(_, s)| s)
                .filter(|s| hex(&s.trace_id) == trace_id)
                .collect(),
        )
    }

    fn all(&self, name: &str) -> Vec<&'a Span> {
        self.0.iter().copied().filter(|s| s.name == name).collect()
    }

    fn one(&self, name: &str) -> &'a Span {
        let found = self.all(name);
        assert_eq!(
            found.len(),
            1,
            "one `{name}` span expected in {}",
            self.names()
        );
        found[0]
    }

    fn server(&self) -> &'a Span {
        let found: Vec<_> = self
            .0
            .iter()
            .copied()
            .filter(|s| s.kind == SpanKind::Server as i32)
            .collect();
        assert_eq!(
            found.len(),
            1,
            "one server span expected in {}",
            self.names()
        );
        found[0]
    }

    fn names(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|s| s.name.as_str()).collect();
        format!("{names:?}")
    }
}

/// Whether `child` descends from `ancestor` within the trace.
fn descends(trace: &Trace<'_>, child: &Span, ancestor: &Span) -> bool {
    let mut parent = child.parent_span_id.clone();
    while !parent.is_empty() {
        if parent == ancestor.span_id {
            return true;
        }
        match trace.0.iter().find(|s| s.span_id == parent) {
            Some(p) => parent = p.parent_span_id.clone(),
            None => return false,
        }
    }
    false
}

fn traceparent(n: u8) -> (String, String, String) {
    let trace_id = format!(
        "{:032x}",
        0x4bf9_2f35_77b3_4da6_a3ce_0000_0000_0000u128 + n as u128
    );
    let parent_id = format!("{:016x}", 0x00f0_67aa_0ba9_0200u64 + n as u64);
    let header = format!("00-{trace_id}-{parent_id}-01");
    (header, trace_id, parent_id)
}

// Multi-threaded: the receiver must keep answering while the test thread waits for the
// server to exit (the flush happens then).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_reach_an_otlp_receiver_and_the_trace_reaches_the_upstream() {
    let received: Shared<Received> = Arc::default();
    let collector = serve(
        Route::new()
            .at("/v1/traces", post(export))
            .data(received.clone()),
    )
    .await;
    let seen: Shared<Vec<Option<String>>> = Arc::default();
    let upstream_addr = serve(Route::new().at("/items/:id", upstream).data(seen.clone())).await;

    let policies = tempfile::tempdir().unwrap();
    std::fs::copy(
        workspace_root().join("examples/hello-plugin/policy.yaml"),
        policies.path().join("hello.yaml"),
    )
    .unwrap();
    std::fs::write(
        policies.path().join("traced.yaml"),
        "version: 1\nrules:\n  - name: traced-item\n    match: { plugin: traced, operation: get_item }\n    key: \"traced:item:{path.id}\"\n    ttl: 5m\n",
    )
    .unwrap();
    let config = format!(
        "policies: {policies}\n\
         telemetry:\n  otlp_endpoint: http://{collector}\n  service_name: larder-under-test\n\
         plugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n\
         \x20 hello:\n    library: {hello}\n    prefix: /hello\n    settings: {{ delay_ms: 5 }}\n\
         \x20 traced:\n    library: {traced}\n    prefix: /traced\n    settings: {{ upstream: \"{upstream_addr}\" }}\n",
        policies = policies.path().display(),
        hello = artifacts().cdylib("hello-plugin").display(),
        traced = artifacts().cdylib("traced-plugin").display(),
    );
    let mut larder = Larder::start_with(LarderOptions {
        config: Some(config),
        env: vec![
            // Nothing is exported on a timer within this test: every span must come out
            // of the flush at shutdown.
            ("OTEL_BSP_SCHEDULE_DELAY".into(), "600000".into()),
            ("OTEL_TRACES_SAMPLER".into(), "parentbased_always_on".into()),
        ],
        policies: Some(PathBuf::from(policies.path())),
    })
    .unwrap();
    let client = reqwest::Client::new();
    let get = |path: &str, traceparent: &str| {
        client
            .get(larder.url(path))
            .header("traceparent", traceparent)
            .header("tracestate", "vendor=opaque")
            .send()
    };

    let (miss, miss_trace, miss_parent) = traceparent(1);
    let (hit, hit_trace, hit_parent) = traceparent(2);
    let (call, call_trace, _) = traceparent(3);
    let (list, list_trace, _) = traceparent(4);
    let (put, put_trace, _) = traceparent(5);

    let r = get("/hello/greetings/ada", &miss).await.unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("stored")
    );
    let r = get("/hello/greetings/ada", &hit).await.unwrap();
    assert!(
        r.headers()["cache-status"]
            .to_str()
            .unwrap()
            .contains("hit")
    );
    let r = get("/traced/items/42", &call).await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.text().await.unwrap(), "item from upstream");
    // Large enough to be stored compressed; this client takes no coding, so it is decoded.
    let r = get("/hello/greetings?count=200", &list).await.unwrap();
    assert_eq!(r.status(), 200);
    let r = client
        .put(larder.url("/hello/greetings/ada"))
        .header("traceparent", &put)
        .json(&serde_json::json!({"greeting": "Hey"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        received.lock().unwrap().requests,
        0,
        "exported before shutdown"
    );

    larder.signal(libc::SIGTERM);
    let status = larder.wait_exit(Duration::from_secs(30)).unwrap();
    assert!(status.success(), "{status}\n{}", larder.logs());
    let received = received.lock().unwrap();
    assert!(
        received.requests > 0,
        "nothing exported:\n{}",
        larder.logs()
    );
    let spans = &received.spans;
    assert!(
        spans
            .iter()
            .all(|(service, _)| service == "larder-under-test"),
        "service.name from the config"
    );

    // The miss: server span under the caller's span, then policy, lookup (miss), origin
    // under the lookup, store.
    let t = Trace::of(spans, &miss_trace);
    let server = t.server();
    assert_eq!(
        hex(&server.parent_span_id),
        miss_parent,
        "the incoming traceparent"
    );
    assert_eq!(server.name, "GET /hello/greetings/{name}");
    let a = attrs(server);
    assert_eq!(a["http.request.method"], "GET");
    assert_eq!(a["url.path"], "/hello/greetings/ada");
    assert_eq!(a["http.route"], "/hello/greetings/{name}");
    assert_eq!(a["http.response.status_code"], "200");
    assert!(!a.contains_key("otel.kind"), "{a:?}");
    assert_eq!(
        server.trace_state, "vendor=opaque",
        "tracestate carried over"
    );
    let policy = t.one("cache.policy");
    assert_eq!(policy.parent_span_id, server.span_id);
    assert_eq!(attrs(policy)["cache.decision"], "cache");
    let lookup = t.one("cache.lookup");
    assert_eq!(lookup.parent_span_id, server.span_id);
    let a = attrs(lookup);
    assert_eq!(a["cache.rule"], "hello-greeting");
    assert_eq!(a["cache.result"], "miss");
    assert_eq!(a["cache.stored"], "true");
    let origin = t.one("cache.origin");
    assert_eq!(origin.parent_span_id, lookup.span_id, "{}", t.names());
    assert_eq!(attrs(origin)["larder.plugin"], "hello");
    let store = t.one("cache.store");
    assert_eq!(store.parent_span_id, lookup.span_id);
    assert_eq!(attrs(store)["cache.decision"], "store");
    assert!(origin.end_time_unix_nano <= store.start_time_unix_nano + 1_000_000);
    assert!(lookup.start_time_unix_nano >= server.start_time_unix_nano);
    assert!(lookup.end_time_unix_nano <= server.end_time_unix_nano);

    // The hit: served by L1, no origin call.
    let t = Trace::of(spans, &hit_trace);
    let server = t.server();
    assert_eq!(hex(&server.parent_span_id), hit_parent);
    let a = attrs(t.one("cache.lookup"));
    assert_eq!(a["cache.result"], "hit");
    assert_eq!(a["cache.layer"], "l1");
    assert!(t.all("cache.origin").is_empty(), "{}", t.names());
    assert!(t.all("cache.store").is_empty(), "{}", t.names());

    // The upstream call carried the trace: same trace id, and the span calling it (the
    // origin call of the miss) as its parent.
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 1);
    let upstream_parent = seen[0]
        .as_deref()
        .expect("traceparent on the upstream request");
    let parts: Vec<&str> = upstream_parent.split('-').collect();
    assert_eq!(parts.len(), 4, "{upstream_parent}");
    assert_eq!(parts[1], call_trace, "{upstream_parent}");
    let t = Trace::of(spans, &call_trace);
    let origin = t.one("cache.origin");
    assert_eq!(parts[2], hex(&origin.span_id), "{upstream_parent}");
    assert_eq!(parts[3], "01", "sampled");
    assert!(descends(&t, origin, t.server()));

    // Stored compressed once, recoded (here: decoded) for this client.
    let t = Trace::of(spans, &list_trace);
    let compress = t.one("cache.compress");
    assert!(descends(&t, compress, t.one("cache.store")));
    let a = attrs(compress);
    assert_eq!(a["cache.encoding"], "br");
    let (bytes_in, bytes_out): (u64, u64) = (
        a["cache.bytes_in"].parse().unwrap(),
        a["cache.bytes_out"].parse().unwrap(),
    );
    assert!(bytes_out < bytes_in, "{a:?}");
    let recode = attrs(t.one("cache.recode"));
    assert_eq!(
        (
            recode["cache.encoding"].as_str(),
            recode["cache.variant"].as_str()
        ),
        ("br", "identity"),
        "{recode:?}"
    );

    // The write's invalidation.
    let t = Trace::of(spans, &put_trace);
    let server = t.server();
    assert_eq!(server.name, "PUT /hello/greetings/{name}");
    let purges = t.all("cache.invalidate");
    assert!(!purges.is_empty(), "{}", t.names());
    assert!(purges.iter().all(|p| descends(&t, p, server)));
    let removed: u64 = purges
        .iter()
        .map(|p| attrs(p)["cache.invalidate.removed"].parse::<u64>().unwrap())
        .sum();
    assert!(removed >= 1, "the stored greeting was purged");
    assert!(
        purges
            .iter()
            .any(|p| attrs(p)["cache.invalidate.target"].contains("greeting:ada")),
        "{:?}",
        purges.iter().map(|p| attrs(p)).collect::<Vec<_>>()
    );
}

/// Without an endpoint nothing is exported, and plugins get no headers to send.
#[tokio::test]
async fn without_an_endpoint_no_trace_headers_reach_the_upstream() {
    let seen: Shared<Vec<Option<String>>> = Arc::default();
    let upstream_addr = serve(Route::new().at("/items/:id", upstream).data(seen.clone())).await;
    let config = format!(
        "plugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n\
         \x20 traced:\n    library: {traced}\n    settings: {{ upstream: \"{upstream_addr}\" }}\n",
        traced = artifacts().cdylib("traced-plugin").display(),
    );
    let policies = tempfile::tempdir().unwrap();
    let larder = Larder::start_with(LarderOptions {
        config: Some(config),
        env: vec![],
        policies: Some(PathBuf::from(policies.path())),
    })
    .unwrap();
    let (header, _, _) = traceparent(9);
    let r = reqwest::Client::new()
        .get(larder.url("/items/1"))
        .header("traceparent", header)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(*seen.lock().unwrap(), vec![None]);
}
