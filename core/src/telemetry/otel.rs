//! OpenTelemetry trace export over OTLP/HTTP (protobuf), and W3C trace-context propagation.
//!
//! `tracing` spans are the only instrumentation: [`crate::telemetry::init`] adds the
//! [`tracing_opentelemetry`] layer built here when an OTLP endpoint is configured, and the
//! layer turns spans into OpenTelemetry spans. With no endpoint nothing here runs: no layer,
//! no exporter thread, and the `debug`-level `cache.*` spans are disabled at their call
//! sites, so each costs one cached-interest check.
//!
//! ## The pipeline
//! spans → [`tracing_opentelemetry`] layer → batch span processor (one background thread of
//! the SDK) → OTLP/HTTP exporter → [`OtlpHttpClient`], a small bridge onto the workspace's
//! `reqwest` 0.12 (the exporter's own reqwest feature would pull a second reqwest, and its
//! gRPC transport pulls tonic). [`shutdown`] flushes what is queued.
//!
//! ## Configuration
//! The endpoint is, first found: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (the full URL),
//! `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL; `/v1/traces` is appended), the config's
//! `telemetry.otlp_endpoint` (a base URL too). `OTEL_SDK_DISABLED=true` or
//! `OTEL_TRACES_EXPORTER=none` turn export off. The SDK and the exporter read the other
//! standard variables themselves: `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`,
//! `OTEL_BSP_*`, `OTEL_EXPORTER_OTLP[_TRACES]_HEADERS`; `OTEL_EXPORTER_OTLP[_TRACES]_TIMEOUT`
//! is read here.
//!
//! ## Sampling
//! Decided once per request, when it arrives ([`sampled`]), from `OTEL_TRACES_SAMPLER` and
//! `OTEL_TRACES_SAMPLER_ARG` (`parentbased_always_on` by default; `always_on`,
//! `always_off`, `traceidratio` and the `parentbased_*` forms; a parent's sampled flag is
//! always followed). A request not sampled creates no span on its way through the cache, so
//! an unsampled hit costs one header check and one random number; should it reach the
//! origin, its request span exists for the logs but is marked not sampled, so nothing of
//! it is exported. The SDK itself then follows the parent's decision.
//!
//! ## Propagation
//! Only W3C Trace Context (`traceparent`, `tracestate`): [`accept_parent`] makes an incoming
//! `traceparent` the parent of the request span, and [`current_headers`] gives the headers
//! for the current span, which plugins put on their upstream requests
//! (`PluginContext::trace_headers`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use opentelemetry::propagation::{Injector, TextMapPropagator};
use opentelemetry::trace::{TraceContextExt, TracerProvider as _};
use opentelemetry_http::{HeaderExtractor, HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{BatchSpanProcessor, SdkTracerProvider};
use parking_lot::Mutex;
use poem::http::HeaderMap;
use tracing::Subscriber;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::registry::LookupSpan;

use crate::config::TelemetryConfig;
use larder_store::{CacheStatus, Loaded, OriginError, Outcome, Served};
use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::Sampler;

/// Set once an exporter runs; every per-request helper here returns at once while unset.
static ENABLED: AtomicBool = AtomicBool::new(false);
/// The provider, kept for [`shutdown`].
static PROVIDER: Mutex<Option<SdkTracerProvider>> = Mutex::new(None);

const DEFAULT_SERVICE_NAME: &str = "larder";
const TRACES_PATH: &str = "/v1/traces";
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether spans are exported. Cheap: one relaxed load.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// The head sampler: what share of requests without a sampled parent are traced.
#[derive(Debug, Clone, Copy, PartialEq)]
struct HeadSampler {
    /// 0.0 ..= 1.0.
    ratio: f64,
}

static SAMPLER: OnceLock<HeadSampler> = OnceLock::new();

impl HeadSampler {
    /// From `OTEL_TRACES_SAMPLER` / `OTEL_TRACES_SAMPLER_ARG` (the OpenTelemetry names;
    /// unknown values fall back to the default, with a note on stderr).
    fn from_env() -> Self {
        let name = env("OTEL_TRACES_SAMPLER").unwrap_or_else(|| "parentbased_always_on".into());
        let arg = env("OTEL_TRACES_SAMPLER_ARG")
            .and_then(|a| a.trim().parse::<f64>().ok())
            .filter(|r| (0.0..=1.0).contains(r));
        let ratio = match name.trim() {
            "always_on" | "parentbased_always_on" => 1.0,
            "always_off" | "parentbased_always_off" => 0.0,
            "traceidratio" | "parentbased_traceidratio" => arg.unwrap_or(1.0),
            other => {
                eprintln!(
                    "larder: OTEL_TRACES_SAMPLER={other} is not supported; using parentbased_always_on"
                );
                1.0
            }
        };
        Self { ratio }
    }
}

/// The per-request sampling decision: whether this request is traced. An incoming
/// `traceparent` decides by its sampled flag; otherwise the configured ratio does. `false`
/// whenever export is off.
pub fn sampled(headers: &HeaderMap) -> bool {
    if !enabled() {
        return false;
    }
    if let Some(parent) = headers.get("traceparent") {
        // version-traceid-spanid-flags; an invalid header is ignored, as the propagator does.
        let flags = parent
            .to_str()
            .ok()
            .and_then(|v| v.rsplit('-').next())
            .filter(|f| f.len() == 2)
            .and_then(|f| u8::from_str_radix(f, 16).ok());
        if let Some(flags) = flags {
            return flags & 1 == 1;
        }
    }
    let ratio = SAMPLER.get_or_init(HeadSampler::from_env).ratio;
    ratio >= 1.0 || (ratio > 0.0 && fastrand::f64() < ratio)
}

/// Whether a request records `cache.*` spans: with export off, whatever the log filter
/// wants (a disabled call site costs one cached check); with export on, only a sampled
/// request, so an unsampled hit builds no span at all.
pub fn cache_spans(sampled: bool) -> bool {
    !enabled() || sampled
}

/// Marks `span` (not yet entered) as not sampled: its logs keep their context, and neither
/// it nor any span under it is exported.
pub fn unsampled(span: &tracing::Span) {
    if !enabled() || span.is_disabled() {
        return;
    }
    let cx = opentelemetry::Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(fastrand::u128(1..)),
        SpanId::from(fastrand::u64(1..)),
        TraceFlags::default(),
        true,
        TraceState::default(),
    ));
    let _ = span.set_parent(cx);
}

fn propagator() -> &'static TraceContextPropagator {
    static P: OnceLock<TraceContextPropagator> = OnceLock::new();
    P.get_or_init(TraceContextPropagator::new)
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The OTLP/HTTP traces URL from the environment and the config; `None` when export is
/// off (no endpoint anywhere, or switched off by `OTEL_SDK_DISABLED` /
/// `OTEL_TRACES_EXPORTER=none`).
pub fn traces_endpoint(cfg: &TelemetryConfig) -> Option<String> {
    if env("OTEL_SDK_DISABLED").is_some_and(|v| v.trim().eq_ignore_ascii_case("true")) {
        return None;
    }
    if let Some(exporters) = env("OTEL_TRACES_EXPORTER") {
        let wanted = exporters.split(',').map(str::trim);
        if !wanted.clone().any(|e| e.eq_ignore_ascii_case("otlp")) {
            if !wanted.clone().all(|e| e.eq_ignore_ascii_case("none")) {
                eprintln!(
                    "larder: OTEL_TRACES_EXPORTER={exporters}: only `otlp` (or `none`) is supported; traces are not exported"
                );
            }
            return None;
        }
    }
    if let Some(full) = env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") {
        return Some(full.trim().to_owned());
    }
    let base = env("OTEL_EXPORTER_OTLP_ENDPOINT")
        .or_else(|| cfg.otlp_endpoint.clone().filter(|e| !e.trim().is_empty()))?;
    let base = base.trim().trim_end_matches('/');
    Some(format!("{base}{TRACES_PATH}"))
}

fn export_timeout() -> Duration {
    [
        "OTEL_EXPORTER_OTLP_TRACES_TIMEOUT",
        "OTEL_EXPORTER_OTLP_TIMEOUT",
    ]
    .iter()
    .find_map(|v| env(v)?.trim().parse::<u64>().ok())
    .map(Duration::from_millis)
    .unwrap_or(DEFAULT_TIMEOUT)
}

fn protocol_check() {
    for var in [
        "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
        "OTEL_EXPORTER_OTLP_PROTOCOL",
    ] {
        if let Some(p) = env(var) {
            if p.trim() != "http/protobuf" {
                eprintln!("larder: {var}={p}: only OTLP over http/protobuf is built in; using it");
            }
            return;
        }
    }
}

fn resource(cfg: &TelemetryConfig) -> Resource {
    let named_by_env = env("OTEL_SERVICE_NAME").is_some()
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|a| a.contains("service.name="));
    let mut builder = Resource::builder().with_attribute(opentelemetry::KeyValue::new(
        "service.version",
        env!("CARGO_PKG_VERSION"),
    ));
    if !named_by_env {
        let name = cfg
            .service_name
            .clone()
            .unwrap_or_else(|| DEFAULT_SERVICE_NAME.to_owned());
        builder = builder.with_service_name(name);
    }
    builder.build()
}

// The subscriber is not installed while this runs: problems go to stderr directly.

/// Builds the exporter pipeline and returns the layer that feeds it, or `None` when no
/// endpoint is configured (or the exporter cannot be built: logged, the server still runs).
///
/// Only spans reach the exporter: `info` and above from every target, plus the
/// `debug`-level `cache.*` spans of Larder's own crates; events inside spans become span
/// events from `info` up.
pub fn layer<S>(cfg: &TelemetryConfig) -> Option<Box<dyn Layer<S> + Send + Sync>>
where
    S: Subscriber + for<'a> LookupSpan<'a> + Send + Sync,
{
    let endpoint = traces_endpoint(cfg)?;
    protocol_check();
    let client = match OtlpHttpClient::new(export_timeout()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("larder: OpenTelemetry export disabled: cannot build the HTTP client: {e}");
            return None;
        }
    };
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_http_client(client)
        .with_protocol(Protocol::HttpBinary)
        .with_endpoint(endpoint.clone())
        .with_timeout(export_timeout())
        .build();
    let exporter = match exporter {
        Ok(e) => e,
        Err(e) => {
            eprintln!("larder: OpenTelemetry export disabled: {e} (endpoint {endpoint})");
            return None;
        }
    };
    let provider = SdkTracerProvider::builder()
        // The head decision is ours ([`sampled`]); the SDK follows it through the parent.
        .with_sampler(Sampler::ParentBased(Box::new(Sampler::AlwaysOn)))
        .with_span_processor(BatchSpanProcessor::builder(exporter).build())
        .with_resource(resource(cfg))
        .build();
    let tracer = provider.tracer("larder");
    *PROVIDER.lock() = Some(provider);
    ENABLED.store(true, Ordering::Relaxed);
    let layer = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        // Parents come from the span tree, not from an attached OpenTelemetry context, so
        // entering a span (once per poll) need not attach one.
        .with_context_activation(false)
        .with_tracked_inactivity(false)
        .with_location(false)
        .with_threads(false)
        .with_target(false)
        .with_filter(tracing_subscriber::filter::filter_fn(|meta| {
            let level = *meta.level();
            if meta.is_span() {
                level <= tracing::Level::INFO
                    || (level <= tracing::Level::DEBUG && meta.target().starts_with("larder"))
            } else {
                level <= tracing::Level::INFO
            }
        }));
    Some(Box::new(layer))
}

/// Exports what is queued and stops the exporter (bounded: 5 s). Call once, after the
/// server has drained, from outside async code or from anywhere on a multi-thread runtime.
pub fn shutdown() {
    let Some(provider) = PROVIDER.lock().take() else {
        return;
    };
    ENABLED.store(false, Ordering::Relaxed);
    if let Err(e) = provider.shutdown_with_timeout(Duration::from_secs(5)) {
        eprintln!("larder: flushing traces at shutdown failed: {e}");
    }
}

/// Makes the W3C `traceparent` (and `tracestate`) of an incoming request the parent of
/// `span`. Call before the span is first entered. Does nothing when export is off or the
/// header is absent or malformed.
pub fn accept_parent(span: &tracing::Span, headers: &HeaderMap) {
    if !enabled() || !headers.contains_key("traceparent") {
        return;
    }
    let cx = propagator().extract(&HeaderExtractor(headers));
    if cx.span().span_context().is_valid() {
        let _ = span.set_parent(cx);
    }
}

/// The W3C trace-context headers of the current span, for an outgoing request; empty when
/// export is off or no span is current.
pub fn current_headers() -> Vec<(String, String)> {
    if !enabled() {
        return Vec::new();
    }
    let cx = tracing::Span::current().context();
    if !cx.span().span_context().is_valid() {
        return Vec::new();
    }
    let mut headers = HeaderVec(Vec::with_capacity(2));
    propagator().inject_context(&cx, &mut headers);
    headers.0
}

struct HeaderVec(Vec<(String, String)>);

impl Injector for HeaderVec {
    fn set(&mut self, key: &str, value: String) {
        if !value.is_empty() {
            self.0.push((key.to_owned(), value));
        }
    }
}

/// What the spans of a cache load (origin call, store) hang from.
///
/// The engine runs a load on a task of its own, where no span is current, and the caller
/// may not wait for it (a stale answer is served while the refresh runs). So with export
/// on, a load keeps only the lookup's OpenTelemetry context: holding the `tracing` span
/// would keep it, and the request span above it, open until the refresh ends. With export
/// off it keeps the request's span, so the handler's logs still land in the request.
#[derive(Clone)]
pub enum LoadParent {
    /// The `cache.lookup` span's context.
    Otel(opentelemetry::Context),
    /// A span for logs.
    Span(tracing::Span),
}

/// The [`LoadParent`] of a load started under `lookup` (see [`lookup_span`]).
pub fn load_parent(lookup: &tracing::Span) -> LoadParent {
    if enabled() && !lookup.is_disabled() {
        LoadParent::Otel(lookup.context())
    } else if lookup.is_disabled() {
        LoadParent::Span(tracing::Span::current())
    } else {
        LoadParent::Span(lookup.clone())
    }
}

impl LoadParent {
    /// Links a span made with `parent: None` to this parent; returns the span to run under.
    fn adopt(&self, span: tracing::Span) -> tracing::Span {
        if let LoadParent::Otel(cx) = self {
            let _ = span.set_parent(cx.clone());
        }
        span
    }

    fn span(&self) -> Option<&tracing::Span> {
        match self {
            LoadParent::Otel(_) => None,
            LoadParent::Span(span) => Some(span),
        }
    }
}

/// A `cache.origin` span: the handler running on a miss or a refresh. When `cache.*` spans
/// are disabled, the parent's span, so the handler's logs keep their context.
pub fn origin_span(parent: &LoadParent, plugin: &str) -> tracing::Span {
    let span = parent.adopt(tracing::debug_span!(
        parent: parent.span().and_then(tracing::Span::id),
        "cache.origin",
        larder.plugin = plugin
    ));
    match parent.span() {
        Some(p) if span.is_disabled() => p.clone(),
        _ => span,
    }
}

/// A `cache.store` span: turning the origin's response into an entry (the store decision,
/// JSON compaction, compression); [`record_store`] fills it in.
pub fn store_span(parent: &LoadParent) -> tracing::Span {
    parent.adopt(tracing::debug_span!(
        parent: parent.span().and_then(tracing::Span::id),
        "cache.store",
        cache.decision = tracing::field::Empty,
        cache.body_bytes = tracing::field::Empty,
        cache.encoding = tracing::field::Empty,
    ))
}

/// Records on a [`store_span`] what the engine was handed: `store`, `pass` (not cacheable,
/// answered as is) or `origin_error`.
pub fn record_store(span: &tracing::Span, loaded: &Loaded) {
    if span.is_disabled() {
        return;
    }
    match loaded {
        Loaded::Store(entry) => {
            span.record("cache.decision", "store");
            span.record("cache.body_bytes", entry.body.len() as u64);
            span.record(
                "cache.encoding",
                entry.encoding.content_encoding().unwrap_or("identity"),
            );
        }
        Loaded::PassThrough(_) => {
            span.record("cache.decision", "pass");
        }
        Loaded::Error(_) => {
            span.record("cache.decision", "origin_error");
        }
    }
}

/// A `cache.lookup` span for one call of the engine under `rule`; [`record_lookup`] fills
/// in the result. The engine looks in L1, then L2, then loads: `cache.layer` says which
/// layer answered.
pub fn lookup_span(rule: &str) -> tracing::Span {
    tracing::debug_span!(
        "cache.lookup",
        cache.rule = rule,
        cache.result = tracing::field::Empty,
        cache.layer = tracing::field::Empty,
        cache.detail = tracing::field::Empty,
        cache.stored = tracing::field::Empty,
        otel.status_code = tracing::field::Empty,
    )
}

/// Records a [`lookup_span`]'s outcome when the cache answered.
pub fn record_served(span: &tracing::Span, served: &Served) {
    if !span.is_disabled() {
        record_lookup_ok(span, served);
    }
}

fn record_lookup_ok(span: &tracing::Span, served: &Served) {
    let (result, detail) = cache_result(&served.status);
    span.record("cache.result", result);
    if let Some(layer) = served.status.layer {
        span.record("cache.layer", layer.as_str());
    }
    if let Some(detail) = detail {
        span.record("cache.detail", detail);
    }
    if result == "miss" {
        span.record("cache.stored", served.status.stored);
    }
}

/// Records a [`lookup_span`]'s outcome: `cache.result` hit | miss | stale, `cache.layer`
/// l1 | l2 when an entry answered, `cache.detail` for coalesced, pass-through and
/// stale-if-error answers, `cache.stored` on misses.
pub fn record_lookup(span: &tracing::Span, served: &Result<Served, OriginError>) {
    if span.is_disabled() {
        return;
    }
    match served {
        Ok(served) => record_lookup_ok(span, served),
        Err(_) => {
            span.record("cache.result", "miss");
            span.record("cache.detail", "origin-error");
            span.record("otel.status_code", "error");
        }
    }
}

/// `cache.result` (hit | miss | stale) and a finer `cache.detail` for one cache call.
pub fn cache_result(status: &CacheStatus) -> (&'static str, Option<&'static str>) {
    match status.outcome {
        Outcome::Hit => ("hit", None),
        Outcome::Stale => ("stale", Some("stale-while-revalidate")),
        Outcome::StaleIfError => ("stale", Some("stale-if-error")),
        Outcome::Miss => ("miss", None),
        Outcome::Coalesced => ("miss", Some("coalesced")),
        Outcome::PassThrough => ("miss", Some("pass-through")),
    }
}

/// The OTLP exporter's HTTP client: the workspace's async `reqwest` 0.12.
///
/// The SDK's batch processor exports from its own thread, outside any tokio runtime, so
/// there requests run on a small current-thread runtime this client owns; called from
/// inside a runtime they simply await.
#[derive(Debug)]
pub struct OtlpHttpClient {
    client: reqwest::Client,
    runtime: OnceLock<tokio::runtime::Runtime>,
}

impl OtlpHttpClient {
    /// A client whose requests time out after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, reqwest::Error> {
        Ok(Self {
            client: reqwest::Client::builder().timeout(timeout).build()?,
            runtime: OnceLock::new(),
        })
    }

    fn runtime(&self) -> Result<&tokio::runtime::Runtime, HttpError> {
        if let Some(rt) = self.runtime.get() {
            return Ok(rt);
        }
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .thread_name("larder-otlp")
            .build()?;
        Ok(self.runtime.get_or_init(|| rt))
    }
}

#[async_trait::async_trait]
impl HttpClient for OtlpHttpClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let request = reqwest::Request::try_from(request)?;
        let send = async {
            let resp = self.client.execute(request).await?;
            let mut out = Response::builder().status(resp.status());
            if let Some(headers) = out.headers_mut() {
                *headers = resp.headers().clone();
            }
            let body = resp.bytes().await?;
            Ok::<_, HttpError>(out.body(body)?)
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            send.await
        } else {
            self.runtime()?.block_on(send)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_results_use_three_words() {
        let status = |outcome| CacheStatus {
            outcome,
            layer: None,
            stored: false,
            ttl_left_ms: 0,
        };
        assert_eq!(cache_result(&status(Outcome::Hit)).0, "hit");
        assert_eq!(cache_result(&status(Outcome::Coalesced)).0, "miss");
        assert_eq!(
            cache_result(&status(Outcome::StaleIfError)),
            ("stale", Some("stale-if-error"))
        );
    }

    #[test]
    fn no_headers_without_an_exporter() {
        assert!(!enabled());
        assert!(current_headers().is_empty());
    }
}
