//! The Prometheus recorder and the counters the request path updates.
//!
//! Per-route request counts and latency are recorded by the pipeline's finish phase through
//! a [`Meter`] resolved once when the route is mounted (no label lookup per request). Cache
//! figures are read off the engine's own counters when `/metrics` is scraped
//! (`crate::admin::metrics`).

use std::sync::OnceLock;

use std::sync::atomic::AtomicU64;

use metrics::{Counter, Histogram, counter, histogram};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Bodies compressed so far (`larder_cache_compressions_total`): a hit must never add to it.
pub static COMPRESSIONS: AtomicU64 = AtomicU64::new(0);

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
    pub fn record(&self, status: poem::http::StatusCode, elapsed: std::time::Duration) {
        let class = (status.as_u16() / 100).clamp(1, 5) as usize - 1;
        self.by_class[class].increment(1);
        self.duration.record(elapsed.as_secs_f64());
    }
}
