//! Admission: what a request must pass before anything else runs, a cache hit included —
//! the declared body size, the route's rate limits (429 with `Retry-After`), and CORS.
//!
//! [`Admission::admit`] runs once per request, at the head of the pipeline, so a limit is
//! charged exactly once whichever way the request is then answered. Plugins declare rate
//! limits and CORS origins (the AliExpress seed's 5/s and 60/min, ChatGPT's origins); the
//! config overrides them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use poem::http::header::{self, HeaderValue, RETRY_AFTER};
use poem::http::{Method, StatusCode};
use poem::{Body, Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RateLimit;
use crate::http::error::ApiError;

/// One limit (per second and/or per minute), keyed by client IP.
pub struct Limiter {
    name: String,
    per_second: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_minute: Option<DefaultKeyedRateLimiter<IpAddr>>,
}

impl Limiter {
    /// A limiter for `limit`, or `None` when it limits nothing.
    pub fn new(name: impl Into<String>, limit: RateLimit) -> Option<Arc<Self>> {
        let per_second = limit
            .per_second
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::keyed(Quota::per_second(n)));
        let per_minute = limit
            .per_minute
            .and_then(NonZeroU32::new)
            .map(|n| RateLimiter::keyed(Quota::per_minute(n)));
        (per_second.is_some() || per_minute.is_some()).then(|| {
            Arc::new(Self {
                name: name.into(),
                per_second,
                per_minute,
            })
        })
    }

    /// `Err(wait)` when `ip` is over the limit.
    fn check(&self, ip: IpAddr) -> Result<(), Duration> {
        let clock = DefaultClock::default();
        for limiter in [&self.per_second, &self.per_minute].into_iter().flatten() {
            if let Err(not_until) = limiter.check_key(&ip) {
                return Err(not_until.wait_time_from(clock.now()));
            }
        }
        Ok(())
    }

    /// Forgets clients that are back under their limit, so the key table stays small.
    fn shrink(&self) {
        for limiter in [&self.per_second, &self.per_minute].into_iter().flatten() {
            limiter.retain_recent();
            limiter.shrink_to_fit();
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
    /// The route's rate limits (plugin-wide and per route), charged in order.
    pub limiters: Vec<Arc<Limiter>>,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The route's CORS allowlist.
    pub cors: Option<Arc<Cors>>,
}

impl Admission {
    /// The admission phase: `None` when the request may go on (its body, if undeclared,
    /// now capped), else the answer that ends it here — a preflight's, or a refusal.
    pub fn admit(&self, req: &mut Request) -> Option<Response> {
        if let Some(cors) = &self.cors
            && Cors::is_preflight(req)
        {
            return Some(cors.preflight(req));
        }
        self.check_body(req).or_else(|| self.charge(req))
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
                let capped = req.take_body().into_bytes_stream().map(move |chunk| {
                    let chunk = chunk?;
                    seen += chunk.len();
                    if seen > limit {
                        return Err(std::io::Error::other(format!(
                            "request body is larger than {limit} bytes"
                        )));
                    }
                    Ok(chunk)
                });
                req.set_body(Body::from_bytes_stream(capped));
                None
            }
            None => None,
        }
    }

    /// Takes one request from the client's allowance under each limit.
    fn charge(&self, req: &Request) -> Option<Response> {
        if self.limiters.is_empty() {
            return None;
        }
        let ip = client_ip(req, self.trust_forwarded_for)?;
        for limiter in &self.limiters {
            if let Err(wait) = limiter.check(ip) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut resp = ApiError::new(
                    "rate_limited",
                    format!(
                        "too many requests from {ip} ({}); retry in {secs} s",
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

    #[test]
    fn per_second_limit_refuses_then_says_when() {
        let l = Limiter::new(
            "test",
            RateLimit {
                per_second: Some(2),
                per_minute: None,
            },
        )
        .unwrap();
        let ip: IpAddr = "10.1.2.3".parse().unwrap();
        assert!(l.check(ip).is_ok());
        assert!(l.check(ip).is_ok());
        let wait = l.check(ip).unwrap_err();
        assert!(wait <= Duration::from_secs(1), "{wait:?}");
        assert!(
            l.check("10.9.9.9".parse().unwrap()).is_ok(),
            "other clients are not limited"
        );
    }

    #[test]
    fn zero_means_no_limit() {
        assert!(
            Limiter::new(
                "x",
                RateLimit {
                    per_second: Some(0),
                    per_minute: None
                }
            )
            .is_none()
        );
    }
}
