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

/// Other codings made of stored bodies (`larder_cache_variants_made_total`): one per entry
/// and coding a client asked for, never one per hit.
pub static VARIANTS: AtomicU64 = AtomicU64::new(0);

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
        describe(&recorder);
        let handle = recorder.handle();
        // Another recorder may already be installed (embedding); ours still renders.
        let _ = metrics::set_global_recorder(recorder);
        handle
    })
}

/// `# HELP` text of every series `/metrics` shows.
const HELP: &[(&str, &str)] = &[
    (
        "larder_http_requests_total",
        "Answered requests to a route, by status class.",
    ),
    (
        "larder_http_request_duration_seconds",
        "Time from a request's arrival to its answer, by route.",
    ),
    (
        "larder_cache_hits_total",
        "Fresh answers from the cache, by layer (l1 memory, l2 Redis).",
    ),
    (
        "larder_cache_misses_total",
        "Lookups a layer could not answer fresh, by layer.",
    ),
    ("larder_cache_sets_total", "Entries stored."),
    (
        "larder_cache_deletes_total",
        "Keys removed by invalidation.",
    ),
    (
        "larder_cache_evictions_total",
        "L1 entries evicted to stay within l1_capacity_bytes.",
    ),
    (
        "larder_cache_errors_total",
        "Redis command failures and timeouts.",
    ),
    (
        "larder_cache_corrupt_entries_total",
        "Stored values that failed to decode (then deleted).",
    ),
    (
        "larder_cache_stale_served_total",
        "Stale entries served while one background refresh ran.",
    ),
    (
        "larder_cache_stale_if_error_served_total",
        "Stale entries served because the origin failed.",
    ),
    (
        "larder_cache_coalesced_waits_total",
        "Requests that waited for another request's origin call instead of making their own.",
    ),
    (
        "larder_cache_origin_calls_total",
        "Calls to the origin (a route's handler or a plugin's loader).",
    ),
    (
        "larder_cache_origin_errors_total",
        "Origin calls that failed or timed out.",
    ),
    (
        "larder_cache_pass_through_total",
        "Origin answers returned to their caller only, never stored.",
    ),
    (
        "larder_cache_refreshes_total",
        "Background refreshes started by stale-while-revalidate.",
    ),
    (
        "larder_cache_raced_invalidations_total",
        "Loads not stored because an invalidation matching them landed while they ran.",
    ),
    (
        "larder_cache_invalidations_published_total",
        "Invalidations published to other instances through Redis.",
    ),
    (
        "larder_cache_invalidations_received_total",
        "Invalidations received from other instances and applied to L1.",
    ),
    (
        "larder_cache_origin_calls_saved_total",
        "Answers that did not call the origin: hits, stale answers, coalesced and lock waits.",
    ),
    (
        "larder_cache_compressions_total",
        "Bodies compressed when stored (a hit never adds to it).",
    ),
    (
        "larder_cache_variants_made_total",
        "Stored bodies recoded for a client that cannot take the stored coding: once per entry and coding, kept in L1.",
    ),
    (
        "larder_cache_l1_bytes",
        "Bytes held by the in-process cache, by its budget's measure.",
    ),
    (
        "larder_cache_l1_capacity_bytes",
        "The in-process cache's byte budget (storage.l1_capacity_bytes).",
    ),
    (
        "larder_cache_l1_entries",
        "Entries held by the in-process cache.",
    ),
    (
        "larder_cache_hit_ratio",
        "Fresh hits over hits, stale answers and origin calls, since start.",
    ),
    ("larder_redis_connected", "1 when Redis answers, else 0."),
    (
        "larder_redis_breaker_open",
        "1 while the Redis circuit breaker is open (L2 skipped), else 0.",
    ),
    (
        "larder_redis_breaker_opened_total",
        "Times the Redis circuit breaker opened.",
    ),
    (
        "larder_redis_subscribed",
        "1 while this instance hears other instances' purges (subscribed and caught up), else 0.",
    ),
    (
        "larder_cache_pending_purges",
        "Purges made while Redis was unreachable and not yet replayed to it.",
    ),
    (
        "larder_cache_latency_seconds",
        "Latency quantiles of L1 and L2 lookups and origin calls, since start.",
    ),
    (
        "larder_cache_rule_results_total",
        "Cache results per policy rule (hit_l1, hit_l2, miss, stale, coalesced).",
    ),
    (
        "larder_cache_rule_origin_calls_total",
        "Origin calls per policy rule.",
    ),
    (
        "larder_cache_rule_origin_errors_total",
        "Origin failures per policy rule.",
    ),
    ("larder_warm_runs_total", "Runs of a warming job."),
    (
        "larder_warm_last_entries",
        "Entries the last run of a warming job warmed.",
    ),
    (
        "larder_warm_last_errors",
        "Requests of the last run of a warming job that failed.",
    ),
];

/// Gives every series its `# HELP` line.
fn describe(recorder: &metrics_exporter_prometheus::PrometheusRecorder) {
    use metrics::{KeyName, Recorder, SharedString, Unit};
    for (name, help) in HELP {
        let (key, help) = (KeyName::from_const_str(name), SharedString::const_str(help));
        if name.ends_with("_total") {
            recorder.describe_counter(key, None, help);
        } else if name.ends_with("_duration_seconds") {
            recorder.describe_histogram(key, Some(Unit::Seconds), help);
        } else {
            recorder.describe_gauge(key, None, help);
        }
    }
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
    /// 2xx to 5xx; a handler never answers 1xx, so that series is made only if one does.
    by_class: [Counter; 4],
    labels: [String; 3],
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
            by_class: [labels("2xx"), labels("3xx"), labels("4xx"), labels("5xx")],
            labels: [plugin.to_owned(), method.to_owned(), path.to_owned()],
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
        match (status.as_u16() / 100).clamp(1, 5) {
            1 => {
                let [plugin, method, route] = self.labels.clone();
                counter!(
                    "larder_http_requests_total",
                    "plugin" => plugin,
                    "method" => method,
                    "route" => route,
                    "status" => "1xx",
                )
                .increment(1);
            }
            class => self.by_class[class as usize - 2].increment(1),
        }
        self.duration.record(elapsed.as_secs_f64());
    }
}
