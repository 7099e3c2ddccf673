//! Per client IP rate limits (429 with `Retry-After`) and the CORS allowlist, for plugin
//! routes. Plugins declare defaults (the AliExpress seed's 5/s and 60/min); the config
//! overrides them.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use poem::http::StatusCode;
use poem::http::header::{HeaderValue, RETRY_AFTER};
use poem::{Endpoint, IntoResponse, Request, Response};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::RateLimit;

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

/// The rate limits of one route, shared by its [`Limited`] wrapper and the hit lane.
pub struct RouteLimits {
    limiters: Vec<Arc<Limiter>>,
    trust_forwarded_for: bool,
}

impl RouteLimits {
    /// The limits that apply to a route.
    pub fn new(limiters: Vec<Arc<Limiter>>, trust_forwarded_for: bool) -> Self {
        Self {
            limiters,
            trust_forwarded_for,
        }
    }

    /// Takes one request from the client's allowance: `None` when it may go on, else the
    /// 429 answer (with `Retry-After`).
    pub fn check(&self, req: &Request) -> Option<Response> {
        if self.limiters.is_empty() {
            return None;
        }
        let ip = client_ip(req, self.trust_forwarded_for)?;
        for limiter in &self.limiters {
            if let Err(wait) = limiter.check(ip) {
                let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
                let mut resp = (
                    StatusCode::TOO_MANY_REQUESTS,
                    poem::web::Json(serde_json::json!({
                        "error": "rate_limited",
                        "message": format!(
                            "too many requests from {ip} ({}); retry in {secs} s",
                            limiter.name
                        ),
                    })),
                )
                    .into_response();
                resp.headers_mut()
                    .insert(RETRY_AFTER, HeaderValue::from(secs.max(1)));
                return Some(resp);
            }
        }
        None
    }
}

/// A route behind rate limits.
pub struct Limited<E> {
    inner: E,
    limits: Arc<RouteLimits>,
}

impl<E> Limited<E> {
    /// Wraps a route with the limits that apply to it.
    pub fn new(inner: E, limits: Arc<RouteLimits>) -> Self {
        Self { inner, limits }
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

impl<E: Endpoint> Endpoint for Limited<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // A request the hit lane handed over was charged there.
        if req.extensions().get::<crate::lane::Handoff>().is_none()
            && let Some(refused) = self.limits.check(&req)
        {
            return Ok(refused);
        }
        Ok(self.inner.call(req).await?.into_response())
    }
}

/// Refuses a request whose declared `Content-Length` exceeds the limit (413), before any
/// handler reads it. Requests without a declared length pass (GET, chunked uploads).
pub struct BodyLimit(pub usize);

impl<E: Endpoint> poem::Middleware<E> for BodyLimit {
    type Output = BodyLimitEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        BodyLimitEndpoint(ep, self.0)
    }
}

/// See [`BodyLimit`].
pub struct BodyLimitEndpoint<E>(E, usize);

impl<E: Endpoint> Endpoint for BodyLimitEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let declared = req
            .header(poem::http::header::CONTENT_LENGTH)
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|n| n > self.1 as u64) {
            return Ok((
                StatusCode::PAYLOAD_TOO_LARGE,
                poem::web::Json(serde_json::json!({
                    "error": "payload_too_large",
                    "message": format!("request body is larger than {} bytes (limits.request_body_bytes)", self.1),
                })),
            )
                .into_response());
        }
        Ok(self.0.call(req).await?.into_response())
    }
}

/// The CORS middleware for an allowlist (`None` when the list is empty).
pub fn cors(origins: &[String], headers: &[String]) -> Option<poem::middleware::Cors> {
    if origins.is_empty() {
        return None;
    }
    let mut cors = poem::middleware::Cors::new()
        .allow_origins(origins.iter().map(String::as_str))
        .allow_headers(headers.iter().map(String::as_str))
        .allow_header("content-type")
        .expose_header("cache-status")
        .max_age(600);
    for m in ["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"] {
        cors = cors.allow_method(m);
    }
    Some(cors)
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
