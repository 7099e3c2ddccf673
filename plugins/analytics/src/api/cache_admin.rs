//! The seed's cache-management routes under `/api/v1/cache`, as thin aliases over the
//! core's cache, scoped to this plugin's entries (and, for a principal bound to a tenant,
//! to that tenant's). Every purge goes through [`larder_plugin::PluginContext::invalidate`],
//! so the core's audit log records who made it. Nothing here can clear another plugin's
//! entries or the whole store.

use std::sync::Arc;
use std::time::Instant;

use larder_plugin::{Invalidation, is_wildcard_only, principal_of};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{Enum, OpenApi};
use serde_json::{Value, json};

use super::Reply;
use crate::State;
use crate::error::AnalyticsError;
use crate::model::round;

/// The seed's key groups.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum Group {
    /// Revenue, segments, products, cohorts, funnels.
    Analytics,
    /// Customer lists, details, recommendations.
    Customers,
    /// Fraud alerts and dashboard.
    Fraud,
    /// System health, stream and business metrics.
    Realtime,
    /// Every entry of this plugin.
    All,
}

const GROUPS: &[(&str, &[&str])] = &[
    (
        "analytics",
        &[
            "revenue analytics",
            "customer segmentation",
            "product performance",
            "cohort analysis",
            "funnel analysis",
        ],
    ),
    (
        "customers",
        &[
            "customer list",
            "customer details",
            "customer recommendations",
        ],
    ),
    ("fraud", &["fraud alerts", "fraud dashboard"]),
    (
        "realtime",
        &["system health", "stream metrics", "business metrics"],
    ),
];

fn affected(group: &str) -> Vec<String> {
    GROUPS
        .iter()
        .filter(|(g, _)| group == "all" || *g == group)
        .flat_map(|(_, e)| e.iter().map(|s| (*s).to_owned()))
        .collect()
}

/// Hit-rate category from the seed's KPI table: above 70 % excellent, 50–70 % good, below
/// 50 % needs improvement.
pub fn hit_rate_category(percent: f64) -> &'static str {
    if percent > 70.0 {
        "excellent"
    } else if percent >= 50.0 {
        "good"
    } else {
        "needs_improvement"
    }
}

/// Response-time category from the seed's KPI table: below 10 ms excellent, 10–50 ms good,
/// above 50 ms needs attention.
pub fn response_time_category(ms: f64) -> &'static str {
    if ms < 10.0 {
        "excellent"
    } else if ms <= 50.0 {
        "good"
    } else {
        "needs_attention"
    }
}

/// Cache-admin alias routes.
pub struct CacheAdminApi(pub Arc<State>);

/// The caller's tenant when the principal is bound to one: its purges stay in it.
fn tenant_scope(req: &poem::Request) -> Option<String> {
    principal_of(req).and_then(|p| p.tenant.clone())
}

/// A user's pattern as a glob relative to the plugin's namespace (keys are stored as
/// `analytics:…`; the seed's own patterns are written with or without that prefix), kept to
/// the caller's tenant when it has one.
fn relative_pattern(pattern: &str, tenant: Option<&str>) -> String {
    let p = pattern.strip_prefix("analytics:").unwrap_or(pattern);
    let p = if p.is_empty() { "*" } else { p };
    match tenant {
        // Tenant-scoped keys end `#t=<tenant>`; other tenants' entries never match.
        Some(t) => format!("{p}#t={t}"),
        None => p.to_owned(),
    }
}

fn failed(e: larder_plugin::PluginError) -> AnalyticsError {
    AnalyticsError::internal(e.to_string())
}

#[OpenApi]
impl CacheAdminApi {
    /// The plugin's cache figures under the seed's two sets of names, the hit rate as a
    /// percentage and the seed's KPI category with suggestions. Needs `cache:manage`.
    #[oai(
        path = "/api/v1/cache/stats",
        method = "get",
        operation_id = "analytics_cache_stats"
    )]
    async fn stats(&self) -> Reply<Value> {
        let run = async {
            let stats = self.0.ctx.cache_stats().await;
            let started = Instant::now();
            let health = self.0.ctx.cache_health().await;
            let probe_ms = started.elapsed().as_secs_f64() * 1000.0;
            let (hits, misses) = larder_plugin::rule_hits_and_misses(&stats);
            let total = hits + misses;
            let hit_rate = if total > 0 {
                round(100.0 * hits as f64 / total as f64, 1)
            } else {
                0.0
            };
            let keys = self.0.ctx.cache_keys("*", 0).await.map_err(failed)?;
            let l1_bytes = stats["l1"]["bytes"].as_u64().unwrap_or(0);
            let memory_mb = round(l1_bytes as f64 / (1024.0 * 1024.0), 2);
            let category = hit_rate_category(hit_rate);
            let suggestions: Vec<&str> = match category {
                "excellent" => vec!["Cache performance is optimal"],
                "good" => vec![
                    "Warm the revenue ranges clients ask for most (policy `warming:`)",
                    "Check that clients send the same parameters for the same query",
                ],
                _ => vec![
                    "Most requests miss: check the TTLs against how often data changes",
                    "Warm popular queries after deploys",
                    "Look for parameters that make every key unique",
                ],
            };
            Ok(json!({
                "connected": health.redis_connected || !health.redis_configured,
                "cache_mode": health.mode,
                "redis_connected": health.redis_connected,
                "used_memory": format!("{memory_mb}MB"),
                "total_commands_processed": total,
                "keyspace_hits": hits,
                "keyspace_misses": misses,
                "hit_rate": hit_rate,
                "response_time_ms": round(health.ping_ms.unwrap_or(probe_ms), 3),
                "memory_usage_mb": memory_mb,
                "active_keys": keys.total_found,
                "performance_insights": {
                    "hit_rate_category": category,
                    "optimization_suggestions": suggestions,
                },
                "rules": stats["rules"],
            }))
        };
        run.await.into()
    }

    /// Keys of this plugin matching a glob, with their remaining lifetime. A principal bound
    /// to a tenant sees only that tenant's keys. Needs `cache:manage`.
    #[oai(
        path = "/api/v1/cache/keys",
        method = "get",
        operation_id = "analytics_cache_keys"
    )]
    async fn keys(
        &self,
        req: &poem::Request,
        /// Key glob (default `*`), e.g. `analytics:revenue:*`.
        pattern: Query<Option<String>>,
        /// At most this many keys, 1–1000 (default 100).
        limit: Query<Option<u32>>,
    ) -> Reply<Value> {
        let run = async {
            let pattern = pattern.0.unwrap_or_else(|| "*".into());
            let limit = limit.0.unwrap_or(100);
            if !(1..=1000).contains(&limit) {
                return Err(AnalyticsError::invalid(
                    "limit",
                    "invalid_limit",
                    format!("`limit` must be between 1 and 1000; got {limit}"),
                ));
            }
            let tenant = tenant_scope(req);
            let glob = relative_pattern(&pattern, tenant.as_deref());
            let found = self
                .0
                .ctx
                .cache_keys(&glob, limit as usize)
                .await
                .map_err(failed)?;
            let keys: Vec<Value> = found
                .keys
                .iter()
                // The seed's `ttl` is the entry's freshness (Redis kept nothing stale);
                // `kept_for` is how long the store holds it, stale windows included.
                .map(|k| match (k.fresh_for_ms.or(k.expires_in_ms), k.expires_in_ms) {
                    (Some(fresh), kept) => {
                        let s = fresh.div_ceil(1000);
                        let kept = kept.map(|ms| ms.div_ceil(1000));
                        json!({ "key": k.key, "ttl": s, "expires": format!("{s}s"), "kept_for": kept })
                    }
                    (None, _) => json!({ "key": k.key, "ttl": -1, "expires": "never", "kept_for": null }),
                })
                .collect();
            Ok(json!({
                "pattern": pattern,
                "total_found": found.total_found,
                "limit": limit,
                "keys": keys,
            }))
        };
        run.await.into()
    }

    /// Whether the cache store answers and how fast, rated by the seed's KPI table.
    /// Memory-only mode is healthy (degraded is not down). Needs `cache:manage`.
    #[oai(
        path = "/api/v1/cache/health",
        method = "get",
        operation_id = "analytics_cache_health"
    )]
    async fn health(&self) -> Reply<Value> {
        let started = Instant::now();
        let health = self.0.ctx.cache_health().await;
        let probe_ms = started.elapsed().as_secs_f64() * 1000.0;
        let ms = health.ping_ms.unwrap_or(probe_ms);
        let healthy = health.redis_connected || !health.redis_configured;
        Reply::Ok(Json(json!({
            "timestamp": self.0.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            "redis_connected": health.redis_connected,
            "cache_mode": health.mode,
            "response_time_ms": round(ms, 3),
            "status": if healthy { "healthy" } else { "degraded" },
            "performance": response_time_category(ms),
        })))
    }

    /// Purges one of the seed's key groups (by tag, never by scanning), or every entry of
    /// this plugin with `all`. A principal bound to a tenant purges only that tenant's
    /// entries. Needs `cache:manage`; written to the audit log.
    #[oai(
        path = "/api/v1/cache/invalidate/:group",
        method = "post",
        operation_id = "analytics_cache_invalidate_group"
    )]
    async fn invalidate_group(
        &self,
        req: &poem::Request,
        /// The key group.
        #[oai(example = "example_group")]
        group: Path<Group>,
    ) -> Reply<Value> {
        let run = async {
            let name = match group.0 {
                Group::Analytics => "analytics",
                Group::Customers => "customers",
                Group::Fraud => "fraud",
                Group::Realtime => "realtime",
                Group::All => "all",
            };
            let tenant = tenant_scope(req);
            let what = match (name, tenant.as_deref()) {
                ("all", None) => Invalidation::All,
                ("all", Some(t)) => {
                    Invalidation::Tags(GROUPS.iter().map(|(g, _)| format!("{g}:{t}")).collect())
                }
                (g, None) => Invalidation::Tags(vec![g.to_owned()]),
                (g, Some(t)) => Invalidation::Tags(vec![format!("{g}:{t}")]),
            };
            let cleared = self.0.ctx.invalidate(what).await.map_err(failed)?;
            let title = match name {
                "all" => "All analytics plugin caches".to_owned(),
                g => {
                    let mut c = g.chars();
                    c.next()
                        .map(|f| f.to_uppercase().collect::<String>() + c.as_str())
                        .unwrap_or_default()
                        + " cache"
                }
            };
            Ok(json!({
                "message": format!("{title} invalidated successfully"),
                "cleared_entries": cleared,
                "affected_endpoints": affected(name),
                "tenant": tenant,
            }))
        };
        run.await.into()
    }

    /// Purges this plugin's keys matching a glob, given as `?pattern=` or `{"pattern": …}`.
    /// A pattern of wildcards only is refused (use `invalidate/all`). Needs `cache:manage`;
    /// written to the audit log.
    #[oai(
        path = "/api/v1/cache/invalidate/pattern",
        method = "post",
        operation_id = "analytics_cache_invalidate_pattern"
    )]
    async fn invalidate_pattern(
        &self,
        req: &poem::Request,
        /// Key glob, e.g. `analytics:revenue:*`.
        #[oai(name = "pattern", example = "example_pattern")]
        query: Query<Option<String>>,
        body: poem::Body,
    ) -> Reply<Value> {
        let run = async {
            let from_body = match body.into_bytes().await {
                Ok(bytes) if !bytes.is_empty() => {
                    let parsed: serde_json::Value =
                        serde_json::from_slice(&bytes).map_err(|e| {
                            AnalyticsError::invalid(
                                "body",
                                "invalid_json",
                                format!("the body is not JSON: {e}"),
                            )
                        })?;
                    parsed
                        .get("pattern")
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                }
                _ => None,
            };
            let pattern = query.0.or(from_body).ok_or_else(|| {
                AnalyticsError::invalid(
                    "pattern",
                    "missing",
                    "give `pattern` as a query parameter or in a JSON body",
                )
            })?;
            let bare = pattern.strip_prefix("analytics:").unwrap_or(&pattern);
            if is_wildcard_only(&pattern)
                || is_wildcard_only(bare)
                || bare.chars().all(|c| matches!(c, '*' | '?' | ':'))
            {
                return Err(AnalyticsError::invalid(
                    "pattern",
                    "pattern_too_wide",
                    format!(
                        "`{pattern}` matches every key; use POST /api/v1/cache/invalidate/all to clear this plugin's cache"
                    ),
                ));
            }
            let tenant = tenant_scope(req);
            let glob = relative_pattern(&pattern, tenant.as_deref());
            let cleared = self
                .0
                .ctx
                .invalidate(Invalidation::Pattern(glob))
                .await
                .map_err(failed)?;
            let group = bare.split(':').next().unwrap_or("");
            let group = match group {
                "revenue" | "segments" | "products" | "cohort" | "funnels" => "analytics",
                g => g,
            };
            Ok(json!({
                "pattern": pattern,
                "message": format!("Keys matching `{pattern}` invalidated successfully"),
                "cleared_entries": cleared,
                "affected_endpoints": affected(group),
                "tenant": tenant,
            }))
        };
        run.await.into()
    }
}

fn example_group() -> Group {
    Group::Analytics
}

fn example_pattern() -> Option<String> {
    Some("analytics:revenue:*".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kpi_boundaries_follow_the_seed_table() {
        assert_eq!(hit_rate_category(73.0), "excellent");
        assert_eq!(hit_rate_category(70.0), "good");
        assert_eq!(hit_rate_category(50.0), "good");
        assert_eq!(hit_rate_category(49.9), "needs_improvement");
        assert_eq!(response_time_category(9.9), "excellent");
        assert_eq!(response_time_category(12.5), "good");
        assert_eq!(response_time_category(50.0), "good");
        assert_eq!(response_time_category(50.1), "needs_attention");
    }

    #[test]
    fn patterns_are_relative_to_the_plugin_and_kept_to_the_tenant() {
        assert_eq!(relative_pattern("analytics:revenue:*", None), "revenue:*");
        assert_eq!(relative_pattern("customers:*", None), "customers:*");
        assert_eq!(
            relative_pattern("customers:*", Some("acme")),
            "customers:*#t=acme"
        );
    }
}
