//! `/metrics` in Prometheus text format.
//!
//! Per-route request counts and latency are recorded by a thin wrapper around each plugin
//! route, with handles resolved once when the route is mounted (no label lookup per
//! request). Cache figures are read off the engine's own counters at scrape time.

use std::sync::OnceLock;
use std::time::Instant;

use metrics::{Counter, Histogram, counter, gauge, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use poem::{Endpoint, IntoResponse, Request, Response};

use crate::engine::Engine;
use crate::warming::Warmer;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide recorder (once) and returns its handle.
pub fn handle() -> &'static PrometheusHandle {
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(
                Matcher::Suffix("seconds".into()),
                &[
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
                    0.5, 1.0, 2.5, 5.0,
                ],
            )
            .expect("non-empty buckets")
            .build_recorder();
        let handle = recorder.handle();
        // Another recorder may already be installed (embedding); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// Folds recorded histogram samples into their buckets four times a second, so memory stays
/// flat between scrapes (or with no scraper at all).
pub fn upkeep(
    tasks: &tokio_util::task::TaskTracker,
    shutdown: tokio_util::sync::CancellationToken,
) {
    tasks.spawn(async move {
        // Samples queue up between upkeeps and are folded in one go on a runtime thread:
        // at 50k req/s a 5 s backlog stalled the worker for ~3 ms (the paced bench's p99).
        // A quarter second keeps each fold well under the latency anyone would notice.
        let mut tick = tokio::time::interval(std::time::Duration::from_millis(250));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => handle().run_upkeep(),
            }
        }
    });
}

/// The request metrics of one route (`larder_http_requests_total` by status class and
/// `larder_http_request_duration_seconds`), resolved once: recording is two atomic updates.
/// Shared by the route's [`Metered`] wrapper and the hit lane, so both count alike.
pub struct Meter {
    by_class: [Counter; 5],
    duration: Histogram,
}

impl Meter {
    /// The metrics of `plugin`'s route at `path` (OpenAPI template) for `method`.
    pub fn new(plugin: &str, method: &str, path: &str) -> Self {
        handle();
        let labels = |class: &'static str| {
            counter!(
                "larder_http_requests_total",
                "plugin" => plugin.to_owned(),
                "method" => method.to_owned(),
                "route" => path.to_owned(),
                "status" => class,
            )
        };
        Self {
            by_class: [
                labels("1xx"),
                labels("2xx"),
                labels("3xx"),
                labels("4xx"),
                labels("5xx"),
            ],
            duration: histogram!(
                "larder_http_request_duration_seconds",
                "plugin" => plugin.to_owned(),
                "method" => method.to_owned(),
                "route" => path.to_owned(),
            ),
        }
    }

    /// Counts one answered request.
    pub fn record(&self, status: poem::http::StatusCode, started: Instant) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].increment(1);
        self.duration.record(started.elapsed().as_secs_f64());
    }
}

/// A plugin route with its [`Meter`].
pub struct Metered<E> {
    inner: E,
    meter: std::sync::Arc<Meter>,
}

impl<E> Metered<E> {
    /// Wraps a route.
    pub fn new(inner: E, meter: std::sync::Arc<Meter>) -> Self {
        Self { inner, meter }
    }
}

impl<E: Endpoint> Endpoint for Metered<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        let started = Instant::now();
        let resp = match self.inner.call(req).await {
            Ok(r) => r.into_response(),
            Err(e) => crate::server::error_response(e),
        };
        self.meter.record(resp.status(), started);
        Ok(resp)
    }
}

/// Renders everything: the recorded request metrics plus the cache engine's counters,
/// per layer and per rule, and warming.
pub fn render(engine: &Engine, warmer: &Warmer) -> String {
    let s = engine.cache.snapshot();
    let c = &s.counters;
    for (layer, hits, misses) in [
        ("l1", c.hits_l1, c.misses_l1),
        ("l2", c.hits_l2, c.misses_l2),
    ] {
        counter!("larder_cache_hits_total", "layer" => layer).absolute(hits);
        counter!("larder_cache_misses_total", "layer" => layer).absolute(misses);
    }
    for (name, v) in [
        ("larder_cache_sets_total", c.sets),
        ("larder_cache_deletes_total", c.deletes),
        ("larder_cache_evictions_total", c.evictions),
        ("larder_cache_errors_total", c.errors),
        ("larder_cache_corrupt_entries_total", c.corrupt),
        ("larder_cache_stale_served_total", c.stale_served),
        (
            "larder_cache_stale_if_error_served_total",
            c.stale_if_error_served,
        ),
        ("larder_cache_coalesced_waits_total", c.coalesced_waits),
        ("larder_cache_origin_calls_total", c.origin_calls),
        ("larder_cache_origin_errors_total", c.origin_errors),
        ("larder_cache_pass_through_total", c.pass_through),
        ("larder_cache_refreshes_total", c.refreshes),
        (
            "larder_cache_raced_invalidations_total",
            c.raced_invalidations,
        ),
        (
            "larder_cache_invalidations_published_total",
            c.invalidations_published,
        ),
        (
            "larder_cache_invalidations_received_total",
            c.invalidations_received,
        ),
        (
            "larder_cache_origin_calls_saved_total",
            s.origin_calls_saved,
        ),
    ] {
        counter!(name).absolute(v);
    }
    counter!("larder_cache_compressions_total")
        .absolute(crate::layer::COMPRESSIONS.load(std::sync::atomic::Ordering::Relaxed));
    counter!("larder_lane_answers_total")
        .absolute(crate::lane::ANSWERS.load(std::sync::atomic::Ordering::Relaxed));
    gauge!("larder_cache_l1_bytes").set(s.l1_bytes as f64);
    gauge!("larder_cache_l1_capacity_bytes").set(s.l1_capacity_bytes as f64);
    gauge!("larder_cache_l1_entries").set(s.l1_entries as f64);
    gauge!("larder_cache_hit_ratio").set(s.hit_rate);
    if let Some(r) = &s.redis {
        gauge!("larder_redis_connected").set(f64::from(u8::from(r.connected)));
        gauge!("larder_redis_breaker_open").set(f64::from(u8::from(r.breaker_open)));
        counter!("larder_redis_breaker_opened_total").absolute(r.breaker_opened_total);
    }
    for (layer, lat) in [
        ("l1", &s.l1_latency),
        ("l2", &s.l2_latency),
        ("origin", &s.origin_latency),
    ] {
        for (q, v) in [
            ("0.5", lat.p50_us),
            ("0.99", lat.p99_us),
            ("0.999", lat.p999_us),
        ] {
            gauge!("larder_cache_latency_seconds", "layer" => layer, "quantile" => q).set(v / 1e6);
        }
    }
    for (rule, r) in &s.rules {
        let rule = rule.clone();
        for (result, v) in [
            ("hit_l1", r.hits_l1),
            ("hit_l2", r.hits_l2),
            ("miss", r.misses),
            ("stale", r.stale_served),
            ("coalesced", r.coalesced_waits),
        ] {
            counter!("larder_cache_rule_results_total", "rule" => rule.clone(), "result" => result)
                .absolute(v);
        }
        counter!("larder_cache_rule_origin_calls_total", "rule" => rule.clone())
            .absolute(r.origin_calls);
        counter!("larder_cache_rule_origin_errors_total", "rule" => rule).absolute(r.origin_errors);
    }
    for job in warmer.jobs() {
        counter!("larder_warm_runs_total", "job" => job.name.clone()).absolute(job.runs);
        gauge!("larder_warm_last_entries", "job" => job.name.clone()).set(job.last_entries as f64);
        gauge!("larder_warm_last_errors", "job" => job.name).set(job.last_errors as f64);
    }
    handle().render()
}
