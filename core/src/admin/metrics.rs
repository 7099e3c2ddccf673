//! `/metrics` in Prometheus text format: the request metrics the pipeline records, plus the
//! cache engine's own counters per layer and per rule, and warming, read at scrape time.

use metrics::{counter, gauge};

use crate::cache::Engine;
use crate::jobs::warming::Warmer;

/// Renders everything: the recorded request metrics plus the cache engine's counters,
/// per layer and per rule, and warming.
pub fn render(engine: &Engine, warmer: &Warmer) -> String {
    let s = engine.cache.snapshot();
    let c = &s.counters;
    // Without Redis the L2 and cross-instance series could never move: they are left out.
    let redis = s.redis.is_some();
    counter!("larder_cache_hits_total", "layer" => "l1").absolute(c.hits_l1);
    counter!("larder_cache_misses_total", "layer" => "l1").absolute(c.misses_l1);
    if redis {
        counter!("larder_cache_hits_total", "layer" => "l2").absolute(c.hits_l2);
        counter!("larder_cache_misses_total", "layer" => "l2").absolute(c.misses_l2);
        for (name, v) in [
            ("larder_cache_errors_total", c.errors),
            ("larder_cache_corrupt_entries_total", c.corrupt),
            (
                "larder_cache_invalidations_published_total",
                c.invalidations_published,
            ),
            (
                "larder_cache_invalidations_received_total",
                c.invalidations_received,
            ),
        ] {
            counter!(name).absolute(v);
        }
    }
    for (name, v) in [
        ("larder_cache_sets_total", c.sets),
        ("larder_cache_deletes_total", c.deletes),
        ("larder_cache_evictions_total", c.evictions),
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
            "larder_cache_origin_calls_saved_total",
            s.origin_calls_saved,
        ),
    ] {
        counter!(name).absolute(v);
    }
    counter!("larder_cache_compressions_total").absolute(
        crate::telemetry::metrics::COMPRESSIONS.load(std::sync::atomic::Ordering::Relaxed),
    );
    counter!("larder_cache_variants_made_total")
        .absolute(crate::telemetry::metrics::VARIANTS.load(std::sync::atomic::Ordering::Relaxed));
    gauge!("larder_cache_l1_bytes").set(s.l1_bytes as f64);
    gauge!("larder_cache_l1_capacity_bytes").set(s.l1_capacity_bytes as f64);
    gauge!("larder_cache_l1_entries").set(s.l1_entries as f64);
    gauge!("larder_cache_hit_ratio").set(s.hit_rate);
    if let Some(r) = &s.redis {
        gauge!("larder_redis_connected").set(f64::from(u8::from(r.connected)));
        gauge!("larder_redis_breaker_open").set(f64::from(u8::from(r.breaker_open)));
        counter!("larder_redis_breaker_opened_total").absolute(r.breaker_opened_total);
        gauge!("larder_redis_subscribed").set(f64::from(u8::from(r.subscribed)));
        gauge!("larder_cache_pending_purges").set(r.pending_purges as f64);
    }
    let latencies = [
        ("l1", &s.l1_latency),
        ("l2", &s.l2_latency),
        ("origin", &s.origin_latency),
    ];
    for (layer, lat) in latencies.into_iter().filter(|(l, _)| redis || *l != "l2") {
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
    crate::telemetry::metrics::handle().render()
}
