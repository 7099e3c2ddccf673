//! The caching layer in front of every plugin route.
//!
//! Per request, on a route whose rule caches the method: render the key (the only policy
//! work on a hit), look up L1 → L2, and on a miss run the handler once per key (coalesced),
//! decide from its response whether to store (status, `Set-Cookie`, `no-store`/`private`,
//! size), compress once, and answer. On other methods: run the handler, then apply the
//! rule's invalidation after a 2xx. In both cases the plugin events the handler emitted
//! run their triggers before the response leaves, so a client never reads data its own
//! successful write invalidated.

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use larder_plugin::Event;
use larder_policy::{RequestView, Rule, Scope, Skip};
use larder_store::{BodyEncoding, Entry, Loaded, OriginError, Outcome, Served};
use poem::endpoint::BoxEndpoint;
use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, IntoResponse, Request, Response};
use serde_json::Value;
use tracing::Instrument;

use crate::compression::{self, Coding, Delivery};
use crate::engine::{BoundRule, Engine, RouteSlot};
use crate::lane::{Handoff, Lane, LaneAnswer, LaneRoute};

tokio::task_local! {
    // Events a handler emits while the layer awaits it. Host::emit pushes here (it runs on
    // the handler's task, dynamic plugins included: the call crosses into host code).
    static EVENTS: RefCell<Vec<Event>>;
}

/// Queues an event for the request being handled on this task; gives it back when the
/// caller is not inside a request (a background task), so it can be applied at once.
pub fn record_event(event: Event) -> Result<(), Event> {
    let mut slot = Some(event);
    let _ = EVENTS.try_with(|events| events.borrow_mut().push(slot.take().expect("once")));
    match slot {
        None => Ok(()),
        Some(event) => Err(event),
    }
}

/// Limits the layer enforces.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request body read for keying or invalidation templates.
    pub request_body: usize,
    /// Largest body a stored entry may decode to for a client that can't take its coding.
    pub decoded_body: usize,
}

/// A plugin route with the caching layer in front.
pub struct CachedEndpoint {
    inner: Arc<BoxEndpoint<'static>>,
    slot: Arc<RouteSlot>,
    engine: Arc<Engine>,
    limits: Limits,
    source: Arc<str>,
    /// Where this route's GET paths are learned for the hit lane, if it runs.
    lane: Option<(Arc<Lane>, Arc<LaneRoute>)>,
}

impl CachedEndpoint {
    /// Wraps a route; with a lane, the GET paths it serves are learned for it.
    pub fn new(
        inner: BoxEndpoint<'static>,
        slot: Arc<RouteSlot>,
        engine: Arc<Engine>,
        limits: Limits,
        lane: Option<(Arc<Lane>, Arc<LaneRoute>)>,
    ) -> Self {
        let source = format!(
            "route {}.{}",
            slot.plugin,
            slot.operation.as_deref().unwrap_or(&slot.path)
        );
        Self {
            inner: Arc::new(inner),
            slot,
            engine,
            limits,
            source: source.into(),
            lane,
        }
    }
}

/// Runs a handler with an event scope; returns its response and the events it emitted.
async fn run_scoped(inner: &BoxEndpoint<'static>, req: Request) -> (Response, Vec<Event>) {
    EVENTS
        .scope(RefCell::new(Vec::new()), async {
            let resp = match inner.call(req).await {
                Ok(r) => r,
                Err(e) => crate::server::error_response(e),
            };
            (resp, EVENTS.with(|e| e.take()))
        })
        .await
}

/// The request as the policy sees it.
/// Query pairs and the principal are worked out only if the rule's templates ask for them:
/// most keys use the path alone, and the hit path should not pay for the rest.
struct View<'a> {
    req: &'a Request,
    query: std::cell::OnceCell<Vec<(String, String)>>,
    body: Option<&'a Value>,
    user: std::cell::OnceCell<Option<String>>,
    slot: &'a RouteSlot,
    /// Path parameter values in the slot's order, when the router did not set them on the
    /// request (the hit lane answers before poem's router runs).
    params: Option<&'a [String]>,
}

impl<'a> View<'a> {
    fn new(req: &'a Request, body: Option<&'a Value>, slot: &'a RouteSlot) -> Self {
        Self {
            req,
            query: std::cell::OnceCell::new(),
            body,
            user: std::cell::OnceCell::new(),
            slot,
            params: None,
        }
    }

    fn query(&self) -> &[(String, String)] {
        self.query.get_or_init(|| {
            self.req
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default()
        })
    }
}

/// A stable, non-reversible id of the credentials a request carries: entries of `user`
/// scope are keyed by it, never by the secret itself.
fn principal(req: &Request) -> Option<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut any = false;
    for name in [
        header::AUTHORIZATION.as_str(),
        "x-api-key",
        header::COOKIE.as_str(),
    ] {
        if let Some(v) = req.headers().get(name) {
            h.update(name.as_bytes());
            h.update(v.as_bytes());
            any = true;
        }
    }
    any.then(|| format!("{:032x}", h.digest128()))
}

fn has_credentials(req: &Request) -> bool {
    let h = req.headers();
    h.contains_key(header::AUTHORIZATION)
        || h.contains_key("x-api-key")
        || h.contains_key(header::COOKIE)
}

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.req.method().as_str()
    }
    fn path(&self) -> &str {
        self.req.uri().path()
    }
    fn path_param(&self, name: &str) -> Option<&str> {
        match self.params {
            Some(values) => {
                let i = self.slot.params.iter().position(|p| p == name)?;
                values.get(i).map(String::as_str)
            }
            None => self.req.raw_path_param(self.slot.param_key(name)?),
        }
    }
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn visit_query<'a>(&'a self, visit: &mut dyn FnMut(&'a str, &'a str)) {
        for (k, v) in self.query() {
            visit(k, v);
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }
    fn body(&self) -> Option<&Value> {
        self.body
    }
    fn tenant(&self) -> Option<&str> {
        self.header("x-tenant-id")
    }
    fn user(&self) -> Option<&str> {
        self.user.get_or_init(|| principal(self.req)).as_deref()
    }
    fn plugin(&self) -> Option<&str> {
        Some(&self.slot.plugin)
    }
    fn operation(&self) -> Option<&str> {
        self.slot.operation.as_deref()
    }
}

fn reads_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads the body (bounded) so templates can use it, and puts it back for the handler.
async fn buffer_body(mut req: Request, limit: usize) -> Result<(Request, Option<Value>), Response> {
    let body = req.take_body();
    let bytes = match body.into_bytes_limit(limit).await {
        Ok(b) => b,
        Err(_) => {
            let e = poem::Error::from_string(
                format!("request body is larger than {limit} bytes"),
                StatusCode::PAYLOAD_TOO_LARGE,
            );
            return Err(crate::server::error_response(e));
        }
    };
    let is_json = req
        .header(header::CONTENT_TYPE)
        .is_some_and(|ct| ct.starts_with("application/json") || ct.contains("+json"));
    let json = if is_json {
        serde_json::from_slice(&bytes).ok()
    } else {
        None
    };
    req.set_body(bytes);
    Ok((req, json))
}

fn set_header(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// Bodies compressed so far: a hit must never add to it (`/metrics`).
pub static COMPRESSIONS: AtomicU64 = AtomicU64::new(0);

static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");
static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

impl Endpoint for CachedEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        // What the hit lane already read for this request, if it took it first. Taken out
        // here so it never reaches a handler, whatever path the request takes below.
        let handoff = req.extensions_mut().remove::<Handoff>();
        let Some(bound) = self.slot.bound.load_full() else {
            let (resp, events) = run_scoped(&self.inner, req).await;
            self.apply_events(events).await;
            return Ok(resp);
        };
        let rule = &bound.rule;
        let (req, body) = if reads_body(req.method()) {
            match buffer_body(req, self.limits.request_body).await {
                Ok(v) => v,
                Err(resp) => return Ok(resp),
            }
        } else {
            (req, None)
        };

        // The slow paths are boxed so the future a hit polls stays small (it is moved and
        // copied on every request; the miss path's state machine is large).
        if !rule.caches_method(req.method().as_str()) {
            return Ok(Box::pin(self.mutate(rule, req, body.as_ref())).await);
        }
        let clock = self.engine.clock();
        let key = match decide(rule, &self.slot, &req, body.as_ref(), None, clock) {
            Ok(k) => k,
            Err(reason) => {
                let (mut resp, events) = run_scoped(&self.inner, req).await;
                self.apply_events(events).await;
                set_header(
                    &mut resp,
                    CACHE_STATUS.clone(),
                    &format!("larder; fwd=bypass; detail={reason}"),
                );
                return Ok(resp);
            }
        };
        // Go on from what the lane found, if it looked up this key (a policy reload in
        // between may have changed it).
        let handoff = handoff.filter(|h| h.key == key);
        // A path answered from the cache twice is worth a lane entry; one-off paths (a fill,
        // a scan) never take memo space.
        let lesson = match &self.lane {
            Some((lane, route)) if req.method() == Method::GET => lane
                .lesson(route, &req)
                .map(|lesson| (lane.clone(), lesson)),
            _ => None,
        };

        let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let origin_us = Arc::new(AtomicU64::new(0));
        let lookup = crate::otel::lookup_span(&rule.name);
        let cache = &self.engine.cache;
        // A fresh L1 hit needs no loader: answer before cloning anything into one.
        let l1_hit = match handoff {
            None => cache.l1_hit(&key, &bound.opts),
            Some(_) => None,
        };
        let served = match l1_hit {
            Some(hit) => Ok(hit),
            None => {
                let load = {
                    let parent = crate::otel::load_parent(&lookup);
                    let inner = self.inner.clone();
                    let engine = self.engine.clone();
                    let slot = self.slot.clone();
                    let rule = rule.clone();
                    let key = key.clone();
                    let origin_us = origin_us.clone();
                    move || async move {
                        let (tags, ttl) = {
                            let view = View::new(&req, body.as_ref(), &slot);
                            let mut tags = rule.tags(&view);
                            tags.push(crate::host::plugin_tag(&slot.plugin));
                            tags.push(format!("rule:{}", rule.name));
                            (tags, rule.ttl(&view, clock, None, &key))
                        };
                        let t = Instant::now();
                        let origin = crate::otel::origin_span(&parent, &slot.plugin);
                        let (resp, events) =
                            run_scoped(&inner, req).instrument(origin.clone()).await;
                        origin_us.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
                        for event in &events {
                            engine.on_event(event).instrument(origin.clone()).await;
                        }
                        drop(origin);
                        let store = crate::otel::store_span(&parent);
                        let loaded = to_loaded(resp, &rule, tags, ttl)
                            .instrument(store.clone())
                            .await;
                        crate::otel::record_store(&store, &loaded);
                        loaded
                    }
                };
                match handoff {
                    Some(h) => {
                        Box::pin(
                            cache
                                .load_after(h.looked, &key, &bound.opts, load)
                                .instrument(lookup.clone()),
                        )
                        .await
                    }
                    None => {
                        Box::pin(
                            cache
                                .get_or_load(&key, &bound.opts, load)
                                .instrument(lookup.clone()),
                        )
                        .await
                    }
                }
            }
        };
        if let Some((lane, lesson)) = lesson
            && served
                .as_ref()
                .is_ok_and(|s| s.status.outcome == larder_store::Outcome::Hit)
        {
            lane.learn(lesson);
        }
        crate::otel::record_lookup(&lookup, &served);
        drop(lookup);
        let mut resp = match served {
            Ok(served) => {
                respond(
                    &served,
                    &bound,
                    accept.as_ref(),
                    if_none_match.as_ref(),
                    self.limits,
                    &self.engine,
                )
                .await
            }
            Err(err) => origin_failure(&err),
        };
        server_timing(&mut resp, started, origin_us.load(Ordering::Relaxed));
        Ok(resp)
    }
}

/// What the rule makes of a request: its cache key, or why it goes to the origin uncached.
fn decide(
    rule: &Rule,
    slot: &RouteSlot,
    req: &Request,
    body: Option<&Value>,
    params: Option<&[String]>,
    clock: larder_policy::Clock,
) -> Result<String, &'static str> {
    // Spans from creation to drop: this stretch is synchronous, nothing runs inside it.
    let policy_span = tracing::debug_span!(
        "cache.policy",
        cache.rule = %rule.name,
        cache.decision = tracing::field::Empty,
    );
    let mut view = View::new(req, body, slot);
    view.params = params;
    let skip = if has_credentials(req) && rule.scope == Scope::Public {
        Some("credentials")
    } else if rule.bypass(&view, clock) {
        Some("request")
    } else {
        None
    };
    let key = match skip {
        Some(reason) => Err(reason),
        None => rule.key(&view).map_err(|s| match s {
            Skip::NoPrincipal => "principal",
            _ => "rule",
        }),
    };
    policy_span.record(
        "cache.decision",
        key.as_ref().map_or_else(|reason| *reason, |_| "cache"),
    );
    key
}

/// `Server-Timing`: time in the cache layer and, on a miss, in the origin (ms, 3 decimals).
fn server_timing(resp: &mut Response, started: Instant, origin_us: u64) {
    use std::fmt::Write;
    let total = started.elapsed().as_micros() as u64;
    let mut v = String::with_capacity(48);
    let ms = |v: &mut String, us: u64| {
        let _ = write!(v, "{}.{:03}", us / 1000, us % 1000);
    };
    v.push_str("cache;dur=");
    ms(&mut v, total.saturating_sub(origin_us));
    if origin_us > 0 {
        v.push_str(", origin;dur=");
        ms(&mut v, origin_us);
    }
    set_header(resp, SERVER_TIMING.clone(), &v);
}

/// The hit lane's question: can `req` be answered from a fresh copy? `params` are the path
/// parameters poem's router gave this path before. A fresh L1 copy answers at once (the
/// rate limits are charged only then, so a fall-through is never charged twice). Without
/// one, if the rule reads Redis, the limits are charged and L2 is read; a fresh copy there
/// answers, and anything else is handed to the full path with what was read.
pub(crate) async fn lane_hit(
    route: &LaneRoute,
    req: &Request,
    params: &[String],
    started: Instant,
) -> LaneAnswer {
    let Some(bound) = route.slot.bound.load_full() else {
        return LaneAnswer::Pass;
    };
    let rule = &bound.rule;
    if !rule.caches_method(req.method().as_str()) {
        return LaneAnswer::Pass;
    }
    let clock = route.engine.clock();
    let Ok(key) = decide(rule, &route.slot, req, None, Some(params), clock) else {
        return LaneAnswer::Pass;
    };
    let cache = &route.engine.cache;
    let served = match cache.l1_hit_if(&key, &bound.opts, || {
        route.limits.check(req).map_or(Ok(()), |r| Err(Box::new(r)))
    }) {
        Some(Ok(served)) => served,
        Some(Err(refused)) => return LaneAnswer::Answer(*refused),
        None if cache.reads_l2(&bound.opts) => {
            if let Some(refused) = route.limits.check(req) {
                return LaneAnswer::Answer(refused);
            }
            // Boxed: the L1 hit, far the commoner, should not move an L2 read's state around.
            match Box::pin(cache.look(&key, &bound.opts)).await {
                Ok(served) => served,
                Err(looked) => return LaneAnswer::Handoff(Handoff { key, looked }),
            }
        }
        None => return LaneAnswer::Pass,
    };
    let mut resp = respond(
        &served,
        &bound,
        req.headers().get(header::ACCEPT_ENCODING),
        req.headers().get(header::IF_NONE_MATCH),
        route.layer_limits,
        &route.engine,
    )
    .await;
    server_timing(&mut resp, started, 0);
    LaneAnswer::Answer(resp)
}

impl CachedEndpoint {
    /// A method the rule does not cache: run it, purge what the rule says after a 2xx, run
    /// the triggers of the events it emitted, then answer.
    async fn mutate(&self, rule: &Rule, req: Request, body: Option<&Value>) -> Response {
        let invalidation = {
            let view = View::new(&req, body, &self.slot);
            rule.invalidation(&view)
        };
        let (mut resp, events) = run_scoped(&self.inner, req).await;
        if resp.status().is_success()
            && let Some(inv) = invalidation
        {
            self.engine.invalidate(&inv, &self.source).await;
        }
        self.apply_events(events).await;
        set_header(&mut resp, CACHE_STATUS.clone(), "larder; fwd=method");
        resp
    }

    async fn apply_events(&self, events: Vec<Event>) {
        for event in &events {
            self.engine.on_event(event).await;
        }
    }
}

fn coding_of(e: BodyEncoding) -> Coding {
    match e {
        BodyEncoding::Identity => Coding::Identity,
        BodyEncoding::Br => Coding::Br,
        BodyEncoding::Zstd => Coding::Zstd,
        BodyEncoding::Gzip => Coding::Gzip,
        BodyEncoding::Deflate => Coding::Deflate,
    }
}

fn encoding_of(a: larder_policy::Algorithm) -> (Coding, BodyEncoding) {
    use larder_policy::Algorithm::*;
    match a {
        Br => (Coding::Br, BodyEncoding::Br),
        Zstd => (Coding::Zstd, BodyEncoding::Zstd),
        Gzip => (Coding::Gzip, BodyEncoding::Gzip),
        Deflate => (Coding::Deflate, BodyEncoding::Deflate),
    }
}

/// Headers never replayed from a stored entry: hop-by-hop, per-response, or ours to set.
fn replayable(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "content-length"
            | "content-encoding"
            | "date"
            | "age"
            | "etag"
            | "cache-control"
            | "expires"
            | "set-cookie"
            | "server-timing"
            | "cache-status"
            | "vary"
    )
}

fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())?
    })
}

fn directive(cache_control: &str, name: &str) -> bool {
    cache_control.split(',').any(|d| {
        d.trim()
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Turns the handler's response into what the engine stores, passes through, or treats
/// as an origin error (5xx: stale-if-error may stand in).
async fn to_loaded(
    resp: Response,
    rule: &Rule,
    tags: Vec<String>,
    mut ttl: larder_policy::TtlDecision,
) -> Loaded {
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Loaded::Error(OriginError::new(format!("reading the origin's body: {e}")));
        }
    };
    let all_headers = |body: Bytes| {
        let mut e = Entry::new(status, body);
        for (name, value) in &parts.headers {
            if name != header::CONTENT_LENGTH {
                e = e.with_header(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
            }
        }
        e
    };
    if status >= 500 {
        return Loaded::Error(OriginError::with_response(
            format!("origin answered {status}"),
            all_headers(bytes),
        ));
    }
    let cache_control = parts
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let private = directive(cache_control, "no-store") || directive(cache_control, "private");
    if !rule.caches_status(status)
        || parts.headers.contains_key(header::SET_COOKIE)
        || (private && !rule.ignore_origin_no_store)
        || !rule.fits(bytes.len() as u64)
    {
        return Loaded::PassThrough(all_headers(bytes));
    }
    if let (Some((min, max)), Some(age)) = (rule.ttl.from_origin, max_age(cache_control))
        && !ttl.reason.starts_with("when")
    {
        let mut t = larder_policy::Duration::from_secs(age).max(min);
        if let Some(max) = max {
            t = t.min(max);
        }
        ttl.base = t;
    }
    if ttl.ttl().is_zero() {
        return Loaded::PassThrough(all_headers(bytes));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = bytes;
    if (rule.json.compact || rule.json.strip_nulls)
        && content_type.contains("json")
        && let Ok(mut v) = serde_json::from_slice::<Value>(&body)
    {
        if rule.json.strip_nulls {
            strip_nulls(&mut v);
        }
        body = serde_json::to_vec(&v).map(Bytes::from).unwrap_or(body);
    }
    let etag = parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body)));
    let mut encoding = BodyEncoding::Identity;
    let comp = &rule.compression;
    if comp.enabled
        && comp.should_compress(&content_type, body.len() as u64)
        && let Some(alg) = comp.algorithms.first().copied()
    {
        let (coding, enc) = encoding_of(alg);
        let span = tracing::debug_span!(
            "cache.compress",
            cache.encoding = coding.token(),
            cache.bytes_in = body.len() as u64,
            cache.bytes_out = tracing::field::Empty,
        );
        COMPRESSIONS.fetch_add(1, Ordering::Relaxed);
        let packed = compression::compress(&body, coding, comp.level_for(alg) as i32)
            .instrument(span.clone())
            .await;
        if let Ok(p) = &packed {
            span.record("cache.bytes_out", p.len() as u64);
        }
        match packed {
            Ok(packed) if packed.len() < body.len() => {
                body = packed;
                encoding = enc;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compression failed; storing uncompressed"),
        }
    }
    // The origin's buffer may have spare capacity the L1 weight would not see (a 2 KB JSON
    // body often sits in a 4 KB allocation): store an exact-size copy.
    let body = if body.len() >= 256 {
        Bytes::copy_from_slice(&body)
    } else {
        body
    };
    let mut entry = Entry::new(status, body)
        .with_ttl(Duration::from_millis(ttl.ttl().as_millis()))
        .with_swr(Duration::from_millis(
            ttl.stale_while_revalidate.as_millis(),
        ))
        .with_sie(Duration::from_millis(ttl.stale_if_error.as_millis()))
        .with_tags(tags)
        .with_encoding(encoding)
        .with_etag(etag);
    for (name, value) in &parts.headers {
        if replayable(name) {
            entry = entry.with_header(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    Loaded::Store(entry)
}

fn etag_matches(if_none_match: &HeaderValue, etag: &str) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let etag = bare(etag);
    list.split(',').any(|t| t.trim() == "*" || bare(t) == etag)
}

/// Builds the answer from what the engine served.
async fn respond(
    served: &Served,
    bound: &BoundRule,
    accept: Option<&HeaderValue>,
    if_none_match: Option<&HeaderValue>,
    limits: Limits,
    engine: &Engine,
) -> Response {
    let entry = &served.entry;
    let pass = served.status.outcome == Outcome::PassThrough;
    let mut resp = entry_response(entry, StatusCode::OK);
    set_header(
        &mut resp,
        CACHE_STATUS.clone(),
        &served.status.header_value("larder"),
    );
    if pass {
        resp.set_body(entry.body.clone());
        return resp;
    }
    let rule = &bound.rule;
    let now = engine.cache.now_ms();
    let ttl_left = (entry.ttl_left_ms(now).max(0) / 1000) as u64;
    let visibility = if rule.scope == Scope::Public {
        "public"
    } else {
        "private"
    };
    let mut cc = String::with_capacity(96);
    {
        use std::fmt::Write;
        let _ = write!(cc, "{visibility}, max-age={ttl_left}");
        if !entry.stale_while_revalidate.is_zero() {
            let _ = write!(
                cc,
                ", stale-while-revalidate={}",
                entry.stale_while_revalidate.as_secs()
            );
        }
        if !entry.stale_if_error.is_zero() {
            let _ = write!(cc, ", stale-if-error={}", entry.stale_if_error.as_secs());
        }
    }
    set_header(&mut resp, header::CACHE_CONTROL, &cc);
    resp.headers_mut()
        .insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    let mut vary: Vec<&str> = Vec::new();
    if entry.encoding != BodyEncoding::Identity {
        vary.push("Accept-Encoding");
    }
    vary.extend(rule.vary.iter().map(String::as_str));
    if rule.scope == Scope::User {
        vary.push("Authorization");
        vary.push("Cookie");
    }
    if !vary.is_empty() {
        set_header(&mut resp, header::VARY, &vary.join(", "));
    }
    if let Some(etag) = &entry.etag {
        set_header(&mut resp, header::ETAG, etag);
        if let Some(inm) = if_none_match
            && etag_matches(inm, etag)
        {
            resp.set_status(StatusCode::NOT_MODIFIED);
            resp.headers_mut().remove(header::CONTENT_TYPE);
            return resp;
        }
    }
    let stored = coding_of(entry.encoding);
    let accept = accept.and_then(|v| v.to_str().ok());
    match compression::negotiate(accept, stored) {
        Delivery::AsStored => {
            if let Some(token) = entry.encoding.content_encoding() {
                set_header(&mut resp, header::CONTENT_ENCODING, token);
            }
            resp.set_body(entry.body.clone());
        }
        Delivery::Decode => {
            let span = tracing::debug_span!("cache.decompress", cache.encoding = stored.token());
            match Box::pin(
                compression::decompress(&entry.body, stored, limits.decoded_body).instrument(span),
            )
            .await
            {
                Ok(plain) => resp.set_body(plain),
                Err(e) => {
                    tracing::error!(error = %e, "stored body could not be decoded for this client");
                    return crate::server::error_response(poem::Error::from_string(
                        "the cached response could not be decoded",
                        StatusCode::INTERNAL_SERVER_ERROR,
                    ));
                }
            }
        }
    }
    resp
}

/// A response with a stored entry's status (or `fallback` if it is not valid) and headers;
/// the caller sets the body.
fn entry_response(entry: &Entry, fallback: StatusCode) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(entry.status).unwrap_or(fallback))
        .finish();
    for (name, value) in &entry.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// The origin failed and no stale copy could stand in: its own error response if it sent
/// one, else a 502/504 with a JSON body.
fn origin_failure(err: &OriginError) -> Response {
    if let Some(entry) = &err.response {
        let mut resp = entry_response(entry, StatusCode::BAD_GATEWAY);
        resp.set_body(entry.body.clone());
        set_header(
            &mut resp,
            CACHE_STATUS.clone(),
            "larder; fwd=uri-miss; detail=origin-error",
        );
        return resp;
    }
    let status = if err.timed_out {
        StatusCode::GATEWAY_TIMEOUT
    } else {
        StatusCode::BAD_GATEWAY
    };
    let mut resp = (
        status,
        poem::web::Json(
            serde_json::json!({"error": "origin_error", "message": err.message.to_string()}),
        ),
    )
        .into_response();
    set_header(
        &mut resp,
        CACHE_STATUS.clone(),
        "larder; fwd=uri-miss; detail=origin-error",
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        let v = HeaderValue::from_static("W/\"abc\", \"def\"");
        assert!(etag_matches(&v, "\"abc\""));
        assert!(etag_matches(&v, "\"def\""));
        assert!(!etag_matches(&v, "\"xyz\""));
        assert!(etag_matches(&HeaderValue::from_static("*"), "\"q\""));
    }

    #[test]
    fn cache_control_parsing() {
        assert_eq!(max_age("public, max-age=120"), Some(120));
        assert_eq!(max_age("no-cache"), None);
        assert!(directive("private, max-age=5", "private"));
        assert!(!directive("public", "private"));
    }

    #[test]
    fn nulls_are_stripped_deeply() {
        let mut v = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        strip_nulls(&mut v);
        assert_eq!(v, serde_json::json!({"b": {"d": 1}, "e": [{}]}));
    }
}
