//! Admission: what a request must pass before anything else runs, a cache hit included —
//! the declared body size, authentication and the route's permissions (401/403), the
//! route's rate limits (429 with `Retry-After`), and CORS.
//!
//! [`Admission::admit`] runs once per request, at the head of the pipeline, so nothing is
//! served from the cache before the caller is known and allowed, and a limit is charged
//! exactly once whichever way the request is then answered. Plugins declare permissions,
//! rate limits and CORS origins (the AliExpress seed's 5/s and 60/min, ChatGPT's origins);
//! the config overrides them.

use std::collections::{HashMap, VecDeque};
use std::hash::{BuildHasher, Hash};
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::StreamExt;
use larder_plugin::Principal;
use poem::http::header::{self, HeaderValue, RETRY_AFTER};
use poem::http::{Method, StatusCode};
use poem::{Body, Request, Response};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::{LimitKey, RateLimit};
use crate::http::auth::{Authenticator, Identity, Verdict, unauthorized};
use crate::http::error::ApiError;

/// Shards of a limiter's client table: clients on different shards never wait on each other.
const SHARDS: usize = 16;

/// Who a limit counts requests for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Client {
    Ip(IpAddr),
    Id(Box<str>),
}

/// One limit: at most `max` requests in any `window` per client (a sliding log of the
/// admitted requests' times, so "60 per minute" never admits a 61st within 60 s, however
/// the requests are spread).
pub struct Limiter {
    name: String,
    windows: Vec<(Duration, usize)>,
    per: LimitKey,
    shards: Vec<parking_lot::Mutex<HashMap<Client, Vec<VecDeque<Instant>>>>>,
    hasher: std::collections::hash_map::RandomState,
}

impl Limiter {
    /// A limiter for `limit`, or `None` when it limits nothing.
    pub fn new(name: impl Into<String>, limit: RateLimit) -> Option<Arc<Self>> {
        let windows: Vec<(Duration, usize)> = limit
            .windows()
            .into_iter()
            .map(|(w, n)| (w, n as usize))
            .collect();
        (!windows.is_empty()).then(|| {
            Arc::new(Self {
                name: name.into(),
                windows,
                per: limit.per,
                shards: (0..SHARDS).map(|_| Default::default()).collect(),
                hasher: Default::default(),
            })
        })
    }

    /// Admits one request of `client` at `now`, or says how long until it would be.
    fn check(&self, client: Client, now: Instant) -> Result<(), Duration> {
        let shard = self.hasher.hash_one(&client) as usize % SHARDS;
        let mut shard = self.shards[shard].lock();
        let logs = shard
            .entry(client)
            .or_insert_with(|| vec![VecDeque::new(); self.windows.len()]);
        let mut wait = Duration::ZERO;
        for ((window, max), log) in self.windows.iter().zip(logs.iter_mut()) {
            while log
                .front()
                .is_some_and(|t| now.duration_since(*t) >= *window)
            {
                log.pop_front();
            }
            if log.len() >= *max {
                let oldest = *log.front().expect("a full log has a front");
                wait = wait.max(*window - now.duration_since(oldest));
            }
        }
        if !wait.is_zero() {
            return Err(wait);
        }
        for log in logs.iter_mut() {
            log.push_back(now);
        }
        Ok(())
    }

    /// Forgets clients with nothing left in their windows, so the table stays small.
    fn shrink(&self) {
        let now = Instant::now();
        let longest = self
            .windows
            .iter()
            .map(|(w, _)| *w)
            .max()
            .unwrap_or_default();
        for shard in &self.shards {
            shard.lock().retain(|_, logs| {
                logs.iter()
                    .any(|l| l.back().is_some_and(|t| now.duration_since(*t) < longest))
            });
        }
    }
}

/// Periodically drops idle clients from every limiter.
pub fn maintain(limiters: Vec<Arc<Limiter>>, tasks: &TaskTracker, shutdown: CancellationToken) {
    if limiters.is_empty() {
        return;
    }
    tasks.spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => limiters.iter().for_each(|l| l.shrink()),
            }
        }
    });
}

/// A route's CORS allowlist. An origin on the list gets the CORS headers and its preflight
/// answered; any other origin gets none and the request goes on: CORS tells a browser
/// what a page may read, it is not access control, and refusing would only break
/// non-browser clients that happen to send `Origin`.
pub struct Cors {
    origins: Vec<HeaderValue>,
    allow_headers: HeaderValue,
    allow_methods: HeaderValue,
}

static EXPOSED: HeaderValue = HeaderValue::from_static("cache-status, server-timing");
static MAX_AGE: HeaderValue = HeaderValue::from_static("600");
static VARY_ORIGIN: HeaderValue = HeaderValue::from_static("Origin");

impl Cors {
    /// The allowlist of a plugin's routes (`None` when empty). `headers` are the request
    /// headers pages may send besides `content-type`.
    pub fn new(origins: &[String], headers: &[String]) -> Option<Arc<Self>> {
        let origins: Vec<HeaderValue> = origins
            .iter()
            .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok())
            .collect();
        if origins.is_empty() {
            return None;
        }
        let mut allowed: Vec<String> = headers.iter().map(|h| h.to_ascii_lowercase()).collect();
        allowed.push("content-type".into());
        allowed.sort();
        allowed.dedup();
        Some(Arc::new(Self {
            origins,
            allow_headers: HeaderValue::from_str(&allowed.join(", "))
                .unwrap_or(HeaderValue::from_static("content-type")),
            allow_methods: HeaderValue::from_static("GET, POST, PUT, DELETE, PATCH, OPTIONS"),
        }))
    }

    fn allows(&self, origin: &HeaderValue) -> bool {
        self.origins.iter().any(|o| o == origin)
    }

    /// Whether `req` is a CORS preflight (`OPTIONS` with `Access-Control-Request-Method`).
    pub fn is_preflight(req: &Request) -> bool {
        req.method() == Method::OPTIONS
            && req.headers().contains_key(header::ORIGIN)
            && req
                .headers()
                .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
    }

    /// The answer to a preflight: `200` with the CORS headers for an allowed origin, a bare
    /// `200` (which the browser reads as "no") for any other.
    fn preflight(&self, req: &Request) -> Response {
        let mut resp = Response::builder().status(StatusCode::OK).finish();
        if let Some(origin) = req.headers().get(header::ORIGIN)
            && self.allows(origin)
        {
            let h = resp.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                self.allow_methods.clone(),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                self.allow_headers.clone(),
            );
            h.insert(header::ACCESS_CONTROL_MAX_AGE, MAX_AGE.clone());
        }
        resp.headers_mut().insert(header::VARY, VARY_ORIGIN.clone());
        resp
    }

    /// Adds the CORS headers to an answer for an allowed `origin`; every answer of a route
    /// with an allowlist says `Vary: Origin`, since its headers depend on it.
    pub fn decorate(&self, origin: Option<&HeaderValue>, resp: &mut Response) {
        let h = resp.headers_mut();
        if let Some(origin) = origin
            && self.allows(origin)
        {
            h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
            h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, EXPOSED.clone());
        }
        h.append(header::VARY, VARY_ORIGIN.clone());
    }
}

/// Everything a route admits requests with.
pub struct Admission {
    /// Largest request body, declared or streamed.
    pub body_limit: usize,
    /// Who the request is.
    pub auth: Arc<Authenticator>,
    /// Permissions the route needs (all of them); empty: public.
    pub required: Arc<[String]>,
    /// The route's rate limits (plugin-wide and per route), charged in order.
    pub limiters: Vec<Arc<Limiter>>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The route's CORS allowlist.
    pub cors: Option<Arc<Cors>>,
}

/// Set on a request whose chunked body is capped as it streams: whoever read it past the
/// limit got a read error, which a handler may answer as malformed input; the origin phase
/// answers 413 instead, as for a declared length over the limit.
#[derive(Clone)]
pub(crate) struct BodyOverLimit {
    limit: usize,
    tripped: Arc<AtomicBool>,
}

impl BodyOverLimit {
    /// The 413, once the body went past the limit.
    pub(crate) fn refusal(&self) -> Option<Response> {
        self.tripped
            .load(Ordering::Relaxed)
            .then(|| ApiError::body_too_large(self.limit))
    }
}

/// What admission made of a request.
pub(crate) enum Admitted {
    /// It may go on, as this identity.
    Go(Identity),
    /// It ends here with this answer (a preflight's, or a refusal).
    Answer(Response),
}

impl Admission {
    /// The admission phase: CORS preflight, body size, authentication, permissions, rate
    /// limits — in that order, each refusal a clear JSON error.
    pub(crate) async fn admit(&self, req: &mut Request) -> Admitted {
        if let Some(cors) = &self.cors
            && Cors::is_preflight(req)
        {
            return Admitted::Answer(cors.preflight(req));
        }
        if let Some(refused) = self.check_body(req) {
            return Admitted::Answer(refused);
        }
        let identity = match self.auth.authenticate(req) {
            Verdict::Known(identity) => identity,
            Verdict::Refused(why) => return Admitted::Answer(unauthorized(why.0, true)),
            Verdict::UnknownKid => {
                // A key may have been rotated in: fetch the JWKS again (bounded), once.
                Box::pin(self.auth.refresh_jwks(true)).await;
                match self.auth.authenticate(req) {
                    Verdict::Known(identity) => identity,
                    Verdict::Refused(why) => {
                        return Admitted::Answer(unauthorized(why.0, true));
                    }
                    Verdict::UnknownKid => {
                        return Admitted::Answer(unauthorized(
                            "no key has this token's `kid`, even after fetching the JWKS again"
                                .into(),
                            true,
                        ));
                    }
                }
            }
        };
        if let Some(refused) = self.authorize(identity.principal.as_deref()) {
            return Admitted::Answer(refused);
        }
        if let Some(refused) = self.charge(req, &identity) {
            return Admitted::Answer(refused);
        }
        Admitted::Go(identity)
    }

    /// 401 without a principal, 403 without a permission the route needs.
    fn authorize(&self, principal: Option<&Principal>) -> Option<Response> {
        if self.required.is_empty() {
            return None;
        }
        let Some(principal) = principal else {
            return Some(unauthorized(
                format!(
                    "this route needs credentials ({}): send a bearer token or an API key",
                    self.required.join(", ")
                ),
                false,
            ));
        };
        let missing: Vec<&str> = self
            .required
            .iter()
            .filter(|p| !principal.can(p))
            .map(String::as_str)
            .collect();
        (!missing.is_empty()).then(|| {
            ApiError::new(
                "forbidden",
                format!(
                    "`{}` lacks the permission this route needs: {}",
                    principal.user,
                    missing.join(", ")
                ),
            )
            .respond(StatusCode::FORBIDDEN)
        })
    }

    /// Refuses a declared oversized body before anything reads it; a body of unknown
    /// length (chunked) is capped as it streams, so no handler can read past the limit.
    fn check_body(&self, req: &mut Request) -> Option<Response> {
        let limit = self.body_limit;
        match req
            .header(header::CONTENT_LENGTH)
            .map(|v| v.trim().parse::<u64>())
        {
            Some(Ok(n)) if n > limit as u64 => Some(ApiError::body_too_large(limit)),
            Some(_) => None,
            None if req.headers().contains_key(header::TRANSFER_ENCODING) => {
                let mut seen = 0usize;
                let over = BodyOverLimit {
                    limit,
                    tripped: Arc::new(AtomicBool::new(false)),
                };
                let tripped = over.tripped.clone();
                let capped = req.take_body().into_bytes_stream().map(move |chunk| {
                    let chunk = chunk?;
                    seen += chunk.len();
                    if seen > limit {
                        tripped.store(true, Ordering::Relaxed);
                        return Err(std::io::Error::other(format!(
                            "request body is larger than {limit} bytes"
                        )));
                    }
                    Ok(chunk)
                });
                req.set_body(Body::from_bytes_stream(capped));
                req.extensions_mut().insert(over);
                None
            }
            None => None,
        }
    }

    /// Takes one request from the client's allowance under each limit.
    fn charge(&self, req: &Request, identity: &Identity) -> Option<Response> {
        if self.limiters.is_empty() {
            return None;
        }
        let now = Instant::now();
        let ip = client_ip(req, self.trust_forwarded_for);
        for limiter in &self.limiters {
            let principal = identity.principal.as_deref();
            let client = match limiter.per {
                LimitKey::Principal => principal.map(|p| Client::Id(p.user.as_str().into())),
                LimitKey::Tenant => self
                    .auth
                    .tenant(principal, req)
                    .map(|t| Client::Id(format!("tenant:{t}").into())),
                LimitKey::Ip => None,
            };
            let Some(client) = client.or(ip.map(Client::Ip)) else {
                continue;
            };
            if let Err(wait) = limiter.check(client.clone(), now) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let who = match &client {
                    Client::Ip(ip) => ip.to_string(),
                    Client::Id(id) => id.to_string(),
                };
                let mut resp = ApiError::new(
                    "rate_limited",
                    format!(
                        "too many requests from {who} ({}); retry in {secs} s",
                        limiter.name
                    ),
                )
                .respond(StatusCode::TOO_MANY_REQUESTS);
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                return Some(resp);
            }
        }
        None
    }
}

fn client_ip(req: &Request, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for
        && let Some(ip) = req
            .header("x-forwarded-for")
            .and_then(|v| v.split(',').next())
            .and_then(|v| v.trim().parse().ok())
    {
        return Some(ip);
    }
    req.remote_addr().as_socket_addr().map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limit(per_second: Option<u32>, per_minute: Option<u32>) -> Arc<Limiter> {
        Limiter::new(
            "test",
            RateLimit {
                per_second,
                per_minute,
                per: LimitKey::Ip,
            },
        )
        .unwrap()
    }

    fn ip(s: &str) -> Client {
        Client::Ip(s.parse().unwrap())
    }

    #[tokio::test(start_paused = true)]
    async fn per_second_limit_refuses_then_says_when() {
        let l = limit(Some(2), None);
        let now = Instant::now();
        assert!(l.check(ip("10.1.2.3"), now).is_ok());
        assert!(l.check(ip("10.1.2.3"), now).is_ok());
        let wait = l.check(ip("10.1.2.3"), now).unwrap_err();
        assert_eq!(wait, Duration::from_secs(1));
        assert!(
            l.check(ip("10.9.9.9"), now).is_ok(),
            "other clients are not limited"
        );
    }

    /// "60 per minute" admits exactly 60 in any 60 s window, however the requests come:
    /// a burst, a steady trickle, or a burst and then a trickle (a refilling bucket would
    /// let through 60 + 1 per second).
    #[tokio::test(start_paused = true)]
    async fn per_minute_admits_exactly_n_in_any_window() {
        let l = limit(None, Some(60));
        let start = Instant::now();
        let mut admitted = Vec::new();
        // One request every 100 ms for three minutes.
        for i in 0..1800u64 {
            let at = start + Duration::from_millis(100 * i);
            if l.check(ip("10.0.0.1"), at).is_ok() {
                admitted.push(at);
            }
        }
        for (i, t) in admitted.iter().enumerate() {
            let in_window = admitted[i..]
                .iter()
                .take_while(|u| u.duration_since(*t) < Duration::from_secs(60))
                .count();
            assert!(in_window <= 60, "{in_window} admitted within 60 s of {i}");
        }
        assert_eq!(admitted.len(), 180, "60 in each of the three minutes");

        // A burst: 60 at once, then nothing until the first one is a minute old.
        let l = limit(None, Some(60));
        let t0 = Instant::now();
        assert!((0..60).all(|_| l.check(ip("10.0.0.2"), t0).is_ok()));
        let wait = l
            .check(ip("10.0.0.2"), t0 + Duration::from_secs(16))
            .unwrap_err();
        assert_eq!(wait, Duration::from_secs(44));
        assert!(
            l.check(ip("10.0.0.2"), t0 + Duration::from_secs(60))
                .is_ok()
        );
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(
            Limiter::new(
                "x",
                RateLimit {
                    per_second: Some(0),
                    per_minute: None,
                    per: LimitKey::Ip,
                }
            )
            .is_none()
        );
    }
}
