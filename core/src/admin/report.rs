//! `/admin/cache/report`: alerts and recommendations read off the stats.

use larder_store::StatsSnapshot;
use serde_json::{Value, json};

use crate::config::ReportConfig;

/// Builds the report: overall figures, alerts (a threshold crossed) and recommendations
/// (per rule, what to change).
pub fn build(s: &StatsSnapshot, cfg: &ReportConfig) -> Value {
    let c = &s.counters;
    let lookups = c.hits_l1 + c.hits_l2 + c.origin_calls + c.coalesced_waits;
    let mut alerts = Vec::new();
    let mut recommendations = Vec::new();
    if lookups >= cfg.min_requests && s.hit_rate < cfg.min_hit_rate {
        alerts.push(json!({
            "kind": "low_hit_rate",
            "message": format!("hit rate {:.1}% is below {:.1}%", s.hit_rate * 100.0, cfg.min_hit_rate * 100.0),
        }));
    }
    let error_rate = if c.origin_calls > 0 {
        c.origin_errors as f64 / c.origin_calls as f64
    } else {
        0.0
    };
    if c.origin_calls >= cfg.min_requests.min(10) && error_rate > cfg.max_error_rate {
        alerts.push(json!({
            "kind": "origin_errors",
            "message": format!("{:.1}% of origin calls failed (threshold {:.1}%)", error_rate * 100.0, cfg.max_error_rate * 100.0),
        }));
    }
    if s.origin_latency.count > 0 && s.origin_latency.p99_us / 1000.0 > cfg.max_origin_p99_ms {
        alerts.push(json!({
            "kind": "slow_origin",
            "message": format!("origin p99 {:.1} ms exceeds {:.1} ms", s.origin_latency.p99_us / 1000.0, cfg.max_origin_p99_ms),
        }));
    }
    let fill = if s.l1_capacity_bytes > 0 {
        s.l1_bytes as f64 / s.l1_capacity_bytes as f64
    } else {
        0.0
    };
    if fill > cfg.max_l1_fill {
        alerts.push(json!({
            "kind": "l1_full",
            "message": format!("L1 is {:.0}% full ({} evictions so far)", fill * 100.0, c.evictions),
        }));
        recommendations.push(json!({
            "scope": "storage",
            "message": "raise storage.l1_capacity_bytes or shorten TTLs of large, rarely hit rules",
        }));
    }
    if let Some(redis) = &s.redis
        && (!redis.connected || redis.breaker_open)
    {
        alerts.push(json!({
            "kind": "redis_unavailable",
            "message": "Redis is unreachable: serving from L1 and the origin until it returns",
        }));
    }
    for (rule, r) in &s.rules {
        let hits = r.hits_l1 + r.hits_l2;
        let total = hits + r.misses;
        if total >= cfg.min_requests && (hits as f64) < cfg.min_hit_rate * total as f64 {
            recommendations.push(json!({
                "scope": format!("rule {rule}"),
                "message": format!(
                    "{hits} hits in {total} lookups: check the key template's cardinality (does it include a value that changes per request?) or lengthen the TTL"
                ),
            }));
        }
        if r.origin_errors > 0 && r.stale_served == 0 {
            recommendations.push(json!({
                "scope": format!("rule {rule}"),
                "message": "origin errors reached clients: set `stale_if_error` so a stale copy can stand in",
            }));
        }
    }
    json!({
        "summary": {
            "hit_rate": s.hit_rate,
            "origin_calls": c.origin_calls,
            "origin_calls_saved": s.origin_calls_saved,
            "origin_error_rate": error_rate,
            "l1_fill": fill,
            "l1_hit_p99_us": s.l1_latency.p99_us,
            "l2_hit_p99_us": s.l2_latency.p99_us,
            "origin_p99_us": s.origin_latency.p99_us,
        },
        "thresholds": cfg,
        "alerts": alerts,
        "recommendations": recommendations,
    })
}
