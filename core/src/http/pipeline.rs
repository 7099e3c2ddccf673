//! The request pipeline: the phases every request to a route passes, in one place.
//!
//! ```text
//! route ─▶ admission ─▶ decision ─▶ lookup ─▶ origin ─▶ store ─▶ finish
//!  poem     body size,   rule →      L1, L2    handler    entry    CORS headers,
//!  router   CORS,        key, or a   (hit: ──────────────────────▶ Server-Timing,
//!           rate limit   Skip reason  short exit into finish)       metrics, span, logs
//! ```
//!
//! [`Pipeline::run`] drives them. Each phase runs for every request in this order; a phase
//! that ends a request early does so by answering, and the answer still goes through
//! `finish`. The phases a request may skip, and when:
//! - *decision*, *lookup* and *store* are skipped by routes without a rule (the core's own
//!   routes, and plugin routes no policy covers): they go from admission to the origin;
//! - *lookup*'s short exit is a hit: *origin* and *store* do not run (a fresh L1 copy is
//!   answered synchronously; an L2 copy after one Redis read);
//! - a decision not to cache (a write, `cache: false`, credentials on a public rule, a
//!   client's bypass, a missing principal) goes to the origin without lookup or store; a
//!   write's invalidation and its events' triggers run before it answers.
//!
//! Admission is charged once, here, before the cache is consulted: a rate limit refuses a
//! request the cache could have answered, and a refused request is not counted as a hit.
//! Tracing never changes the path: an unsampled request simply creates no span until it
//! reaches the origin (where plugin logs want one), and the `finish` phase logs the same
//! way with or without one.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use futures::FutureExt;
use futures::future::Either;
use larder_plugin::Event;
use larder_policy::Skip;
use larder_store::Served;
use poem::endpoint::BoxEndpoint;
use poem::http::header::{self, HeaderName, HeaderValue};
use poem::http::{Method, StatusCode};
use poem::{Endpoint, Request, Response};
use serde_json::Value;
use tracing::Instrument;

use crate::cache::{BoundRule, Engine, RouteSlot, entry_tag, plugin_tag};
use crate::http::admission::{Admission, Admitted, BodyOverLimit, Cors};
use crate::http::auth::Identity;
use crate::http::compression::CodedBodies;
use crate::http::error::{ApiError, error_response};
use crate::http::respond::{
    CACHE_STATUS, code_answer, origin_failure, respond, set_header, set_owned_header,
};
use crate::http::store::{Pending, to_loaded};
use crate::http::view::{View, Who};
use crate::plugins::host::{Handled, handling};
use crate::telemetry::metrics::Meter;
use crate::telemetry::otel;

static SERVER_TIMING: HeaderName = HeaderName::from_static("server-timing");

/// One route (path template and method) and everything its requests pass through.
pub(crate) struct Pipeline {
    /// The handler the origin phase runs: a plugin's endpoint, or one of the core's.
    pub origin: Arc<BoxEndpoint<'static>>,
    /// The route's policy binding; `None` for the core's own routes.
    pub slot: Option<Arc<RouteSlot>>,
    /// Cache and policies.
    pub engine: Arc<Engine>,
    /// Body size, rate limits, CORS.
    pub admission: Admission,
    /// Request count and latency by status class (plugin routes).
    pub meter: Option<Arc<Meter>>,
    /// `METHOD /template`: the request span's name.
    pub name: Arc<str>,
    /// The OpenAPI path template (`/api/v2/barbers/{barber_id}/slots`).
    pub template: Arc<str>,
    /// Who purges, in the audit log: `route booking.create_appointment`.
    pub source: Arc<str>,
    /// Largest body a stored entry may decode to for a client that can't take its coding.
    pub decoded_limit: usize,
    /// The plugin serving the route, for the shape of the errors the core answers on it
    /// ([`larder_plugin::Plugin::core_error_body`]).
    pub plugin: Option<Arc<dyn larder_plugin::DynPlugin>>,
    /// Log one `larder::access` line per request (`telemetry.access_log`).
    pub access_log: bool,
    /// Compressed forms of answers handlers build from `get_or_load` values (one memo for
    /// the whole application).
    pub coded: Arc<CodedBodies>,
}

/// A request's tracing: the head sampling decision and, once one exists, its span.
struct Trace {
    sampled: bool,
    span: Option<tracing::Span>,
}

impl Trace {
    /// The request span is made at once only when the request is sampled for export or
    /// request logs are at `debug`; otherwise at the origin, if the request gets there.
    fn start(pipeline: &Pipeline, req: &Request) -> Self {
        let sampled = otel::sampled(req.headers());
        let wanted = sampled || tracing::enabled!(target: "larder::http", tracing::Level::DEBUG);
        Trace {
            sampled,
            span: wanted.then(|| pipeline.request_span(req, sampled)),
        }
    }

    /// Whether this request records `cache.*` spans.
    fn cache_spans(&self) -> bool {
        otel::cache_spans(self.sampled)
    }

    /// The request span, made now if it was not: the origin runs plugin code whose logs
    /// belong to the request.
    fn for_origin(&mut self, pipeline: &Pipeline, req: &Request) -> tracing::Span {
        self.span
            .get_or_insert_with(|| pipeline.request_span(req, self.sampled))
            .clone()
    }
}

/// Time spent in the origin, in µs, for `Server-Timing` (shared with the loader's task).
type OriginTime = Arc<AtomicU64>;

/// What the decision phase (and L1) made of a request.
enum Plan {
    /// A fresh copy in L1: the short exit.
    Hit(Served, Arc<BoundRule>, String),
    /// No rule binds the route: the origin alone.
    Uncovered,
    /// The rule may key on the body: decided once it is read.
    ReadBody(Arc<BoundRule>),
    /// Not cached, and why.
    Skip(Arc<BoundRule>, Skip),
    /// Cached under this key, not in L1: L2 next, then the origin.
    Look(Arc<BoundRule>, String, crate::cache::Lookup),
}

impl Pipeline {
    fn request_span(&self, req: &Request, sampled: bool) -> tracing::Span {
        // OpenTelemetry semantic-convention names, for exporters; text logs show them as
        // `method`, `path`, `status`, `route` (see `telemetry`).
        let span = tracing::info_span!(
            target: "larder::http",
            "request",
            otel.name = %self.name,
            otel.kind = "server",
            http.request.method = %req.method(),
            url.path = %req.uri().path(),
            http.route = %self.template,
            http.response.status_code = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        if sampled {
            otel::accept_parent(&span, req.headers());
        } else {
            otel::unsampled(&span);
        }
        span
    }

    /// Every phase, in order, for one request. A hit's whole way — admission, decision, an
    /// L1 lookup, the answer, finish — runs here on the borrowed request; every other way
    /// goes on in [`Pipeline::rest`], boxed, so the future a hit is polled through (and
    /// copied into its box by the router) stays small.
    pub(crate) async fn run(&self, mut req: Request) -> Response {
        let started = Instant::now();
        let mut trace = Trace::start(self, &req);
        // Read before the request is handed on; nothing is copied when the log is off.
        let access = self
            .access_log
            .then(|| (req.method().clone(), req.uri().path().to_owned()));
        let cors_origin = self
            .admission
            .cors
            .as_ref()
            .and_then(|_| req.headers().get(header::ORIGIN).cloned());
        let mut origin_us = 0;
        let resp = match self.admission.admit(&mut req).await {
            Admitted::Answer(answer) => answer,
            Admitted::Go(identity) => {
                // One span type whether or not a span exists yet (a disabled one costs
                // nothing to enter), so the state machine holds one copy of the answer.
                let span = trace.span.clone().unwrap_or_else(tracing::Span::none);
                match span.in_scope(|| self.plan(&req, &identity, &trace)) {
                    Plan::Hit(served, bound, key) => {
                        let h = req.headers();
                        respond(
                            &served,
                            &key,
                            &bound,
                            h.get(header::ACCEPT_ENCODING),
                            h.get(header::IF_NONE_MATCH),
                            self.decoded_limit,
                            &self.engine,
                        )
                        .instrument(span)
                        .await
                    }
                    plan => {
                        // The handler may want to know who asks, and must not take a
                        // client's word for where the request came through.
                        if let Some(principal) = &identity.principal {
                            req.extensions_mut().insert(principal.clone());
                        }
                        if !self.admission.trust_forwarded_for {
                            strip_forwarded(&mut req);
                        }
                        let rest = self.rest(plan, req, identity, &mut trace);
                        let rest = Box::pin(rest.instrument(span));
                        let (resp, us) = rest.await;
                        origin_us = us;
                        resp
                    }
                }
            }
        };
        let resp = self.finish(resp, started, origin_us, &trace, cors_origin.as_ref());
        if let Some((method, path)) = access {
            access_line(&method, &path, &resp, started);
        }
        resp
    }

    /// The decision phase, and the lookup phase's synchronous L1 half, for a request whose
    /// body the rule does not read.
    fn plan(&self, req: &Request, identity: &Identity, trace: &Trace) -> Plan {
        let Some(bound) = self.slot.as_ref().and_then(|s| s.bound.load_full()) else {
            return Plan::Uncovered;
        };
        if reads_body(req.method()) {
            return Plan::ReadBody(bound);
        }
        match self.decide(&bound, req, None, self.who(req, identity), trace) {
            Ok(key) => {
                match crate::cache::lookup(&self.engine, &bound, &key, trace.cache_spans()) {
                    Ok(hit) => Plan::Hit(hit, bound, key),
                    Err(lookup) => Plan::Look(bound, key, lookup),
                }
            }
            Err(skip) => Plan::Skip(bound, skip),
        }
    }

    /// What the policy may know of who asks: the verified principal only.
    fn who<'a>(&self, req: &'a Request, identity: &'a Identity) -> Who<'a> {
        let principal = identity.principal.as_deref();
        Who {
            user: principal.map(|p| p.user.as_str()),
            tenant: self.admission.auth.tenant(principal, req),
            credentialed: identity.credentialed,
        }
    }

    /// The decision: the rule's key for the request, or why not to cache. The one function
    /// `larder explain` runs too.
    fn decide(
        &self,
        bound: &BoundRule,
        req: &Request,
        body: Option<&Value>,
        who: Who<'_>,
        trace: &Trace,
    ) -> Result<String, Skip> {
        let slot = self.slot.as_deref().expect("a bound rule has a route slot");
        let rule = &bound.rule;
        let span = trace.cache_spans().then(|| {
            tracing::debug_span!(
                "cache.policy",
                cache.rule = %rule.name,
                cache.decision = tracing::field::Empty,
            )
        });
        let decision = rule.decide(&View::new(req, body, slot, who), self.engine.clock());
        if let Some(span) = span {
            let verdict = decision
                .as_ref()
                .map_or_else(|skip| skip.as_str(), |_| "cache");
            span.record("cache.decision", verdict);
        }
        decision.map(|d| d.key)
    }

    /// Every way but a hit found in L1: the origin without a rule, reading a body the key
    /// needs, a decision not to cache (a write, a bypass), L2, and the miss's origin and
    /// store. Returns the answer and the origin's time in µs (0 when it did not run).
    async fn rest(
        &self,
        plan: Plan,
        req: Request,
        identity: Identity,
        trace: &mut Trace,
    ) -> (Response, u64) {
        let origin_time = OriginTime::default();
        let resp = match plan {
            Plan::Hit(..) => unreachable!("answered in `run`"),
            Plan::Uncovered => self.origin_only(req, trace, &origin_time).await,
            Plan::ReadBody(bound) => {
                let (req, body) = match buffer_body(req, self.admission.body_limit).await {
                    Ok(v) => v,
                    Err(resp) => return (resp, 0),
                };
                let who = self.who(&req, &identity);
                match self.decide(&bound, &req, body.as_ref(), who, trace) {
                    Ok(key) => {
                        let lookup =
                            crate::cache::lookup(&self.engine, &bound, &key, trace.cache_spans());
                        self.look(
                            bound,
                            key,
                            lookup,
                            (req, body),
                            &identity,
                            trace,
                            &origin_time,
                        )
                        .await
                    }
                    Err(skip) => {
                        self.skip(bound, skip, (req, body), &identity, trace, &origin_time)
                            .await
                    }
                }
            }
            Plan::Skip(bound, skip) => {
                self.skip(bound, skip, (req, None), &identity, trace, &origin_time)
                    .await
            }
            Plan::Look(bound, key, lookup) => {
                let l1 = Err(lookup);
                self.look(bound, key, l1, (req, None), &identity, trace, &origin_time)
                    .await
            }
        };
        (resp, origin_time.load(Ordering::Relaxed))
    }

    /// A decision not to cache: a write (the rule does not cache the method) runs with its
    /// invalidation; any other reason goes to the origin, saying why in `Cache-Status`.
    async fn skip(
        &self,
        bound: Arc<BoundRule>,
        skip: Skip,
        (req, body): (Request, Option<Value>),
        identity: &Identity,
        trace: &mut Trace,
        origin_time: &OriginTime,
    ) -> Response {
        let slot = self.slot.as_deref().expect("a bound rule has a route slot");
        match skip {
            Skip::Method | Skip::Disabled => {
                let invalidation = bound.rule.invalidation(&View::new(
                    &req,
                    body.as_ref(),
                    slot,
                    self.who(&req, identity),
                ));
                // RFC 9211: `method` when the method is not cached, `bypass` when the rule
                // says not to cache at all.
                let status = match skip {
                    Skip::Disabled => "larder; fwd=bypass; detail=disabled",
                    _ => "larder; fwd=method",
                };
                self.write(invalidation, req, trace, origin_time, status)
                    .await
            }
            skip => {
                let mut resp = self.origin_only(req, trace, origin_time).await;
                set_header(
                    &mut resp,
                    CACHE_STATUS.clone(),
                    &format!("larder; fwd=bypass; detail={}", skip.as_str()),
                );
                resp
            }
        }
    }

    /// The lookup past L1 (L2, when the rule uses it), then, on a miss, origin and store.
    #[allow(clippy::too_many_arguments)]
    async fn look(
        &self,
        bound: Arc<BoundRule>,
        key: String,
        l1: Result<Served, crate::cache::Lookup>,
        (req, body): (Request, Option<Value>),
        identity: &Identity,
        trace: &mut Trace,
        origin_time: &OriginTime,
    ) -> Response {
        let slot = self.slot.as_deref().expect("a bound rule has a route slot");
        let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
        let if_none_match = req.headers().get(header::IF_NONE_MATCH).cloned();
        let served = match l1 {
            Ok(hit) => hit,
            Err(lookup) => match lookup.rest(&self.engine, &bound, &key).await {
                Ok(hit) => hit,
                Err(miss) => {
                    let load = self.load(
                        miss,
                        &bound,
                        slot,
                        key.clone(),
                        (req, body),
                        identity,
                        trace,
                        origin_time,
                    );
                    match load.await {
                        Ok(served) => served,
                        Err(resp) => return resp,
                    }
                }
            },
        };
        respond(
            &served,
            &key,
            &bound,
            accept.as_ref(),
            if_none_match.as_ref(),
            self.decoded_limit,
            &self.engine,
        )
        .await
    }

    /// Origin and store for a miss: the handler runs once per key (coalesced), its events'
    /// triggers run, and its answer becomes an entry (or passes through).
    #[allow(clippy::too_many_arguments)]
    async fn load(
        &self,
        miss: crate::cache::Miss,
        bound: &BoundRule,
        slot: &RouteSlot,
        key: String,
        (req, body): (Request, Option<Value>),
        identity: &Identity,
        trace: &mut Trace,
        origin_time: &OriginTime,
    ) -> Result<Served, Response> {
        let span = trace.for_origin(self, &req);
        let rule = bound.rule.clone();
        let pending = {
            let view = View::new(&req, body.as_ref(), slot, self.who(&req, identity));
            let mut tags: Vec<String> = rule
                .tags(&view, self.engine.clock())
                .iter()
                .map(|t| entry_tag(&slot.plugin, t))
                .collect();
            tags.push(plugin_tag(&slot.plugin));
            tags.push(format!("rule:{}", rule.name));
            Pending {
                key: key.clone(),
                tags,
                condition: rule.ttl_condition(&view, self.engine.clock()),
            }
        };
        let parent = span.in_scope(|| miss.parent());
        let (engine, handler, plugin) = (
            self.engine.clone(),
            self.origin.clone(),
            slot.plugin.clone(),
        );
        let origin_time = origin_time.clone();
        let loader = move || async move {
            let t = Instant::now();
            let origin = otel::origin_span(&parent, &plugin);
            // The route's rule owns this answer's `Cache-Status`: the handler's own
            // `get_or_load` outcomes are not reported.
            let (resp, handled) = run_handler(&handler, req).instrument(origin.clone()).await;
            origin_time.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
            apply_events(&engine, &handled.events)
                .instrument(origin.clone())
                .await;
            drop(origin);
            let store = otel::store_span(&parent);
            let loaded = to_loaded(resp, &rule, pending)
                .instrument(store.clone())
                .await;
            otel::record_store(&store, &loaded);
            loaded
        };
        miss.load(&self.engine, bound, &key, loader)
            .instrument(span)
            .await
            .map_err(|err| origin_failure(&err))
    }

    /// The origin alone (no rule, or the decision not to cache): run the handler, then its
    /// events' triggers.
    async fn origin_only(
        &self,
        req: Request,
        trace: &mut Trace,
        origin_time: &OriginTime,
    ) -> Response {
        let span = trace.for_origin(self, &req);
        let accept = req.headers().get(header::ACCEPT_ENCODING).cloned();
        let t = Instant::now();
        let (mut resp, handled) = run_handler(&self.origin, req)
            .instrument(span.clone())
            .await;
        origin_time.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        apply_events(&self.engine, &handled.events)
            .instrument(span)
            .await;
        if let Some(rule) = &handled.compression {
            resp = code_answer(resp, rule, accept.as_ref(), &self.coded).await;
        }
        // A handler that cached from code (`get_or_load`) says what the cache did, as a
        // cached route would: one RFC 9211 member per value it read.
        if !handled.cache_status.is_empty() && !resp.headers().contains_key(&CACHE_STATUS) {
            set_owned_header(
                &mut resp,
                CACHE_STATUS.clone(),
                handled.cache_status.join(", "),
            );
        }
        resp
    }

    /// A request the rule does not cache (a write): run it, purge what the rule says after
    /// a 2xx, run the triggers of the events it emitted, then answer.
    async fn write(
        &self,
        invalidation: Option<larder_policy::Invalidation>,
        req: Request,
        trace: &mut Trace,
        origin_time: &OriginTime,
        cache_status: &'static str,
    ) -> Response {
        let span = trace.for_origin(self, &req);
        let by = larder_plugin::principal_of(&req).map(|p| p.user.clone());
        let t = Instant::now();
        let (mut resp, handled) = run_handler(&self.origin, req)
            .instrument(span.clone())
            .await;
        origin_time.store(t.elapsed().as_micros() as u64, Ordering::Relaxed);
        if resp.status().is_success()
            && let Some(inv) = invalidation
        {
            let plugin = self.slot.as_deref().map_or("", |s| s.plugin.as_str());
            // The audit log says who: the route, and the verified principal if any.
            let source = match &by {
                Some(user) => format!("{} by {user}", self.source),
                None => self.source.to_string(),
            };
            self.engine
                .invalidate(&inv, plugin, &source)
                .instrument(span.clone())
                .await;
        }
        apply_events(&self.engine, &handled.events)
            .instrument(span)
            .await;
        set_header(&mut resp, CACHE_STATUS.clone(), cache_status);
        resp
    }

    /// The finish phase, for every answer: CORS headers, `Server-Timing`, metrics, the
    /// span's status and the request log.
    fn finish(
        &self,
        mut resp: Response,
        started: Instant,
        origin_us: u64,
        trace: &Trace,
        cors_origin: Option<&HeaderValue>,
    ) -> Response {
        if let Some(plugin) = &self.plugin
            && (resp.status().is_client_error() || resp.status().is_server_error())
        {
            shape_error(plugin.as_ref(), &mut resp);
        }
        if let Some(cors) = &self.admission.cors {
            cors.decorate(cors_origin, &mut resp);
        }
        // One clock read for all three uses.
        let elapsed = started.elapsed();
        if self.slot.is_some() {
            server_timing(&mut resp, elapsed, origin_us);
        }
        let status = resp.status();
        if let Some(meter) = &self.meter {
            meter.record(status, elapsed);
        }
        if let Some(span) = &trace.span {
            span.record("http.response.status_code", status.as_u16());
            if status.is_server_error() {
                span.record("otel.status_code", "error");
            }
        }
        let elapsed_ms = elapsed.as_secs_f64() * 1000.0;
        let _entered = trace.span.as_ref().map(tracing::Span::enter);
        if status.is_server_error() {
            tracing::warn!(
                target: "larder::http",
                route = %self.name,
                status = status.as_u16(),
                elapsed_ms,
                "request failed"
            );
        } else {
            tracing::debug!(
                target: "larder::http",
                route = %self.name,
                status = status.as_u16(),
                elapsed_ms,
                "request done"
            );
        }
        resp
    }
}

/// The access log's line for one answered request.
fn access_line(method: &poem::http::Method, path: &str, resp: &Response, started: Instant) {
    let cache = resp
        .headers()
        .get(&CACHE_STATUS)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.strip_prefix("larder; ").unwrap_or(v))
        .unwrap_or("-");
    tracing::info!(
        target: "larder::access",
        method = %method,
        path,
        status = resp.status().as_u16(),
        cache,
        duration_ms = started.elapsed().as_micros() as f64 / 1000.0,
        "request"
    );
}

/// An error the core answered (it carries its [`ApiError`]) in the plugin's own shape, when
/// the plugin has one; status and headers stay.
fn shape_error(plugin: &dyn larder_plugin::DynPlugin, resp: &mut Response) {
    let Some(err) = resp.extensions().get::<ApiError>() else {
        return;
    };
    let status = resp.status().as_u16();
    if let Some(body) = plugin.core_error_body(status, &err.error, &err.message)
        && let Ok(bytes) = serde_json::to_vec(&body)
    {
        resp.set_body(bytes);
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json; charset=utf-8"),
        );
    }
}

/// Proxy headers a client can set at will: without a trusted proxy in front, handlers do
/// not see them (a plugin building URLs from `X-Forwarded-Host` would take the client's).
fn strip_forwarded(req: &mut Request) {
    const FORWARDED: [&str; 5] = [
        "forwarded",
        "x-forwarded-host",
        "x-forwarded-proto",
        "x-forwarded-port",
        "x-forwarded-prefix",
    ];
    let headers = req.headers_mut();
    for name in FORWARDED {
        headers.remove(name);
    }
}

/// Runs the handler collecting the events it emits; an error becomes its JSON answer.
async fn run_handler(handler: &BoxEndpoint<'static>, req: Request) -> (Response, Handled) {
    let by = larder_plugin::principal_of(&req).map(|p| p.user.clone());
    let over = req.extensions().get::<BodyOverLimit>().cloned();
    handling(by, async {
        let resp = match handler.call(req).await {
            Ok(r) => r,
            Err(e) => error_response(e),
        };
        match over.and_then(|o| o.refusal()) {
            Some(refused) => refused,
            None => resp,
        }
    })
    .await
}

/// Runs the policy triggers of the events a handler emitted, before its answer leaves, so
/// no client reads data its own successful write invalidated.
async fn apply_events(engine: &Engine, events: &[Event]) {
    for event in events {
        engine.on_event(event).await;
    }
}

fn reads_body(method: &Method) -> bool {
    !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Reads the body (bounded) so the rule's templates can use it, and puts it back for the
/// handler.
async fn buffer_body(mut req: Request, limit: usize) -> Result<(Request, Option<Value>), Response> {
    let body = req.take_body();
    let bytes = match body.into_bytes_limit(limit).await {
        Ok(b) => b,
        Err(_) => return Err(ApiError::body_too_large(limit)),
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

/// `Server-Timing`: time in Larder and, when the origin ran, in the origin (ms, 3 decimals).
fn server_timing(resp: &mut Response, elapsed: std::time::Duration, origin_us: u64) {
    // By hand rather than `write!`: this is on every hit.
    fn ms(v: &mut String, us: u64) {
        let mut digits = itoa::Buffer::new();
        v.push_str(digits.format(us / 1000));
        v.push('.');
        let frac = us % 1000;
        v.push_str(if frac < 10 {
            "00"
        } else if frac < 100 {
            "0"
        } else {
            ""
        });
        v.push_str(digits.format(frac));
    }
    let total = elapsed.as_micros() as u64;
    let mut v = String::with_capacity(48);
    v.push_str("cache;dur=");
    ms(&mut v, total.saturating_sub(origin_us));
    if origin_us > 0 {
        v.push_str(", origin;dur=");
        ms(&mut v, origin_us);
    }
    set_owned_header(resp, SERVER_TIMING.clone(), v);
}

/// Every method of one path: dispatches to the method's [`Pipeline`]. A CORS preflight goes
/// to the pipeline of the method it asks about (whose admission answers it), `HEAD` to the
/// `GET` pipeline when the route has no `HEAD` of its own.
pub(crate) struct PathEndpoint {
    pub methods: Vec<(Method, Arc<Pipeline>)>,
}

impl PathEndpoint {
    fn pipeline(&self, req: &Request) -> Option<&Arc<Pipeline>> {
        let find = |m: &Method| self.methods.iter().find(|(x, _)| x == m).map(|(_, p)| p);
        find(req.method())
            .or_else(|| {
                (req.method() == Method::HEAD)
                    .then(|| find(&Method::GET))
                    .flatten()
            })
            .or_else(|| {
                Cors::is_preflight(req)
                    .then(|| {
                        req.headers()
                            .get(header::ACCESS_CONTROL_REQUEST_METHOD)
                            .and_then(|m| Method::from_bytes(m.as_bytes()).ok())
                            .and_then(|m| find(&m))
                            .or_else(|| self.methods.first().map(|(_, p)| p))
                    })
                    .flatten()
            })
    }
}

impl Endpoint for PathEndpoint {
    type Output = Response;

    // Not an `async fn`: it returns the pipeline's own future, so the request is not held
    // twice (once here, once in the pipeline) in what the router boxes.
    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        match self.pipeline(&req) {
            Some(pipeline) => Either::Left(pipeline.run(req).map(Ok)),
            None => Either::Right(std::future::ready(Ok(self.not_allowed(&req)))),
        }
    }
}

impl PathEndpoint {
    fn not_allowed(&self, req: &Request) -> Response {
        let allow: Vec<&str> = self.methods.iter().map(|(m, _)| m.as_str()).collect();
        let mut resp = ApiError::new(
            "method_not_allowed",
            format!(
                "{} is not allowed here; this path takes {}",
                req.method(),
                allow.join(", ")
            ),
        )
        .respond(StatusCode::METHOD_NOT_ALLOWED);
        set_header(&mut resp, header::ALLOW, &allow.join(", "));
        if let Some(plugin) = self.methods.first().and_then(|(_, p)| p.plugin.as_ref()) {
            shape_error(plugin.as_ref(), &mut resp);
        }
        resp
    }
}

/// The whole application: poem's router over every route's [`PathEndpoint`]; what no route
/// matches gets the JSON 404.
pub struct Server(pub(crate) poem::Route);

impl Endpoint for Server {
    type Output = Response;

    fn call(&self, req: Request) -> impl Future<Output = poem::Result<Response>> + Send {
        self.0
            .call(req)
            .map(|answer| Ok(answer.unwrap_or_else(error_response)))
    }
}

#[cfg(test)]
impl Pipeline {
    /// Sizes of the futures a request moves through, in bytes (a large future is copied
    /// each time it is boxed or moved).
    pub(crate) fn future_sizes(&self) -> Vec<(&'static str, usize)> {
        fn size<F>(_: &F) -> usize {
            std::mem::size_of::<F>()
        }
        let req = || Request::builder().finish();
        let served = larder_store::Served {
            entry: Arc::new(larder_store::Entry::new(200, "x")),
            status: larder_store::CacheStatus {
                outcome: larder_store::Outcome::Hit,
                layer: None,
                stored: false,
                ttl_left_ms: 0,
            },
        };
        let bound = BoundRule {
            rule: self.engine.policy().rules()[0].clone(),
            opts: Default::default(),
        };
        vec![
            ("request", std::mem::size_of::<Request>()),
            ("buffer_body", size(&buffer_body(req(), 1))),
            (
                "respond",
                size(&respond(&served, "k", &bound, None, None, 1, &self.engine)),
            ),
            ("run", size(&self.run(req()))),
        ]
    }
}
