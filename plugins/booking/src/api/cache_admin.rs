//! The seed's cache-admin paths under `/api/v2/cache`, as thin aliases scoped to this plugin.
//!
//! They use the plugin context only: [`larder_plugin::PluginContext::cache_stats`] for
//! health, metrics and the report, [`larder_plugin::PluginContext::invalidate`] for purges,
//! and [`larder_plugin::PluginContext::get_or_load`] for the cached half of a benchmark.
//! `warm-cache` runs the plugin's warm sources through the server now
//! ([`larder_plugin::PluginContext::warm`]), as the policy's warming job does.

use larder_plugin::JsonBody;
use std::sync::Arc;
use std::time::Instant;

use larder_plugin::{Invalidation, NamedRule};
use poem_openapi::param::{Path, Query};
use poem_openapi::{Enum, Object, OpenApi};
use serde_json::{Value, json};

use super::{Day, Id, Reply};
use crate::error::BookingError;
use crate::{BookingPlugin, State, WARM_AVAILABILITY_TWO_WEEKS, WARM_SLOTS_NEXT_7_DAYS};
use crate::{analytics, store, time};

/// What to purge from this plugin's cache entries.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct InvalidateRequest {
    /// Key patterns (`*` any run, `?` one character) inside this plugin's keys, which all
    /// start `booking:`: `slots:3:*` purges `booking:slots:3:*`. A pattern of only
    /// wildcards is refused: set `all` instead.
    #[oai(default, validator(max_items = 100))]
    pub patterns: Vec<String>,
    /// Tags, e.g. `slots:3:2025-01-11` or `analytics`.
    #[oai(default, validator(max_items = 100))]
    pub tags: Vec<String>,
    /// Purge every entry of this plugin.
    #[oai(default)]
    pub all: bool,
}

impl poem_openapi::types::Example for InvalidateRequest {
    fn example() -> Self {
        InvalidateRequest {
            patterns: vec!["slots:3:*".into()],
            tags: vec!["analytics".into()],
            all: false,
        }
    }
}

/// What a purge removed.
#[derive(Object, Debug, Clone)]
pub struct InvalidateReport {
    /// Summary.
    pub message: String,
    /// Entries removed in total.
    pub cleared_entries: u64,
    /// Entries removed per pattern, tag list or `all`.
    pub details: Vec<PurgeDetail>,
}

/// One purge.
#[derive(Object, Debug, Clone)]
pub struct PurgeDetail {
    /// `pattern:…`, `tags:…` or `all`.
    pub target: String,
    /// Entries removed.
    pub cleared: u64,
}

/// What warming did.
#[derive(Object, Debug, Clone)]
pub struct WarmReport {
    /// Summary.
    pub message: String,
    /// Per source, the requests sent (relative to the plugin's prefix) and their outcome.
    pub sources: Vec<WarmSourceRequests>,
    /// Whether this call warmed: `true` once the sources ran (even with some errors).
    pub started: bool,
    /// Entries warmed (requests answered 2xx), over every source.
    pub entries: u64,
    /// Requests that failed, over every source.
    pub errors: u64,
    /// How to run the same on a schedule or from the admin API.
    pub how_to_run: String,
}

/// One warm source's requests and their outcome.
#[derive(Object, Debug, Clone)]
pub struct WarmSourceRequests {
    /// Source name, as `booking.<name>` in a policy's `warming:`.
    pub source: String,
    /// `METHOD /path?query` lines.
    pub requests: Vec<String>,
    /// The warming job that ran them (the policy's, or one named after the source).
    pub job: String,
    /// Requests answered 2xx.
    pub entries: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failures.
    pub error_samples: Vec<String>,
    /// How long the source took, milliseconds.
    pub duration_ms: u64,
}

/// What a benchmark measures.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum BenchTarget {
    /// Slot computation for one barber and day.
    Slots,
    /// Weekly availability for one barber.
    WeeklyAvailability,
    /// The analytics dashboard.
    Dashboard,
}

/// Timing of one side of a benchmark, in milliseconds.
#[derive(Object, Debug, Clone)]
pub struct Timing {
    /// Calls made.
    pub iterations: u32,
    /// Mean.
    pub avg_ms: f64,
    /// Median.
    pub p50_ms: f64,
    /// 95th percentile.
    pub p95_ms: f64,
    /// Slowest.
    pub max_ms: f64,
    /// Calls answered from the cache.
    pub cache_hits: u32,
}

/// A benchmark result.
#[derive(Object, Debug, Clone)]
pub struct BenchReport {
    /// What was measured.
    pub target: BenchTarget,
    /// The barber (slot targets).
    pub barber_id: Option<i64>,
    /// The day (slots) or Monday (weekly availability).
    pub date: Option<String>,
    /// Computing every time (database queries + arithmetic, on the blocking pool).
    pub uncached: Timing,
    /// Through the plugin cache (`get_or_load`): the first call loads, the rest should hit.
    pub cached: Timing,
    /// `(uncached.avg - cached.avg) / uncached.avg`, percent.
    pub improvement_percent: f64,
    /// The same, under seed 004's name.
    pub performance_improvement_percent: f64,
    /// `cached.avg_ms` (seed 004's field).
    pub avg_cached_ms: f64,
    /// `uncached.avg_ms` (seed 004's field).
    pub avg_uncached_ms: f64,
    /// Whether the improvement reaches seed 004's target of 30 %.
    pub meets_target: bool,
    /// Notes on the result (e.g. the cache is not configured).
    pub notes: Vec<String>,
}

/// Health of the plugin and its cache.
#[derive(Object, Debug, Clone)]
pub struct HealthReport {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// Whether the database answered.
    pub database_ok: bool,
    /// How long a trivial query took, milliseconds.
    pub database_latency_ms: f64,
    /// The database error, when there is one.
    pub database_error: Option<String>,
    /// The core's cache statistics for this plugin.
    pub cache: Value,
}

fn example_sources() -> Vec<String> {
    vec![WARM_SLOTS_NEXT_7_DAYS.name.to_owned()]
}

fn example_target() -> BenchTarget {
    BenchTarget::Dashboard
}

// The benchmark's cached half goes through the routes' own rules, used by name, so it
// measures the TTL and store those routes get.
const BENCH_SLOTS: NamedRule = NamedRule::new("booking-slots");
const BENCH_WEEKLY: NamedRule = NamedRule::new("booking-weekly-availability");
const BENCH_DASHBOARD: NamedRule = NamedRule::new("booking-dashboard");

/// Seed 004's goal for a cached route: 30 % faster than computing it.
const TARGET_IMPROVEMENT_PERCENT: f64 = 30.0;

/// Cache-admin alias routes.
pub struct CacheAdminApi(pub Arc<State>);

fn timing(mut samples: Vec<f64>, hits: u32) -> Timing {
    samples.sort_by(|a, b| a.total_cmp(b));
    let n = samples.len().max(1);
    let at = |q: f64| {
        samples
            .get(((n as f64 - 1.0) * q).round() as usize)
            .copied()
    };
    let round = |x: f64| (x * 1000.0).round() / 1000.0;
    Timing {
        iterations: samples.len() as u32,
        avg_ms: round(samples.iter().sum::<f64>() / n as f64),
        p50_ms: round(at(0.5).unwrap_or(0.0)),
        p95_ms: round(at(0.95).unwrap_or(0.0)),
        max_ms: round(samples.last().copied().unwrap_or(0.0)),
        cache_hits: hits,
    }
}

/// Hit rate (0–1) over this plugin's rules, once they have answered anything.
fn hit_rate(stats: &Value) -> Option<f64> {
    let (hits, misses) = larder_plugin::rule_hits_and_misses(stats);
    (hits + misses > 0).then(|| hits as f64 / (hits + misses) as f64)
}

impl CacheAdminApi {
    async fn database_check(&self) -> (bool, f64, Option<String>) {
        let started = Instant::now();
        let r = self
            .0
            .db
            .read(|c| Ok(c.query_row("SELECT COUNT(*) FROM barbers", [], |r| r.get::<_, i64>(0))?))
            .await;
        let ms = started.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(_) => (true, ms, None),
            Err(e) => (false, ms, Some(e.to_string())),
        }
    }

    async fn bench(
        &self,
        target: BenchTarget,
        barber: i64,
        date: jiff::civil::Date,
        iterations: u32,
    ) -> Result<BenchReport, BookingError> {
        let state = self.0.clone();
        let load = move |state: Arc<State>| async move {
            let now = state.now();
            let rules = state.rules;
            match target {
                BenchTarget::Slots => state
                    .db
                    .read(move |c| store::slots_for(c, &rules, now, barber, date, None))
                    .await
                    .map(|v| json!(v.slots.len())),
                BenchTarget::WeeklyAvailability => state
                    .db
                    .read(move |c| {
                        store::weekly(c, &rules, now, barber, time::week_start(date), None)
                    })
                    .await
                    .map(|v| json!(v.total_slots)),
                BenchTarget::Dashboard => state
                    .db
                    .read(move |c| analytics::dashboard(c, now.today, now.minute))
                    .await
                    .map(|v| json!(v.week_ahead.appointments)),
            }
        };
        let mut uncached = Vec::with_capacity(iterations as usize);
        for _ in 0..iterations {
            let t = Instant::now();
            load(state.clone()).await?;
            uncached.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        let (rule, key) = match target {
            BenchTarget::Slots => (&BENCH_SLOTS, format!("booking:bench:slots:{barber}:{date}")),
            BenchTarget::WeeklyAvailability => (
                &BENCH_WEEKLY,
                format!("booking:bench:weekly:{barber}:{}", time::week_start(date)),
            ),
            BenchTarget::Dashboard => (&BENCH_DASHBOARD, "booking:bench:dashboard".to_owned()),
        };
        let mut cached = Vec::with_capacity(iterations as usize);
        let mut hits = 0;
        for _ in 0..iterations {
            let t = Instant::now();
            let s = state.clone();
            let got = state
                .ctx
                .get_or_load(rule, key.clone(), move || async move {
                    load(s)
                        .await
                        .map_err(|e| larder_plugin::PluginError::failed(e.to_string()))
                })
                .await
                .map_err(|e| BookingError::internal(e.to_string()))?;
            cached.push(t.elapsed().as_secs_f64() * 1000.0);
            hits += u32::from(got.cache_hit);
        }
        let (uncached, cached) = (timing(uncached, 0), timing(cached, hits));
        let mut notes = Vec::new();
        if hits == 0 && iterations > 1 {
            notes.push(
                "no call was a cache hit: the server's cache store is not configured for plugin \
                 loads, so both sides computed every time"
                    .to_owned(),
            );
        }
        let improvement = if uncached.avg_ms > 0.0 {
            ((uncached.avg_ms - cached.avg_ms) * 1000.0 / uncached.avg_ms).round() / 10.0
        } else {
            0.0
        };
        let by_barber = !matches!(target, BenchTarget::Dashboard);
        Ok(BenchReport {
            target,
            barber_id: by_barber.then_some(barber),
            date: by_barber.then(|| date.to_string()),
            performance_improvement_percent: improvement,
            avg_cached_ms: cached.avg_ms,
            avg_uncached_ms: uncached.avg_ms,
            meets_target: improvement >= TARGET_IMPROVEMENT_PERCENT,
            uncached,
            cached,
            improvement_percent: improvement,
            notes,
        })
    }
}

#[OpenApi(prefix_path = "/api/v2/cache")]
impl CacheAdminApi {
    /// Cache health
    ///
    /// Whether the database answers and the core's cache statistics for this plugin.
    #[oai(path = "/health", method = "get", operation_id = "cache_health")]
    async fn cache_health(&self) -> Reply<HealthReport> {
        let (ok, ms, error) = self.database_check().await;
        let cache = self.0.ctx.cache_stats().await;
        Reply::from(Ok::<_, BookingError>(HealthReport {
            status: if ok { "healthy" } else { "unhealthy" }.into(),
            database_ok: ok,
            database_latency_ms: (ms * 1000.0).round() / 1000.0,
            database_error: error,
            cache,
        }))
    }

    /// Cache metrics
    ///
    /// The core's cache statistics for this plugin's rules and keys.
    #[oai(path = "/metrics", method = "get", operation_id = "cache_metrics")]
    async fn cache_metrics(&self) -> Reply<Value> {
        let stats = self.0.ctx.cache_stats().await;
        Reply::from(Ok::<_, BookingError>(json!({
            "plugin": self.0.ctx.plugin(),
            "cache": stats,
            "hit_rate": hit_rate(&stats),
        })))
    }

    /// Cache performance report
    ///
    /// Statistics, the last benchmark run, alerts and recommendations (the seed's
    /// thresholds: hit rate above 60% is the target, below 40% is an alert).
    #[oai(
        path = "/performance-report",
        method = "get",
        operation_id = "cache_performance_report"
    )]
    async fn cache_performance_report(&self) -> Reply<Value> {
        let stats = self.0.ctx.cache_stats().await;
        let rate = hit_rate(&stats);
        let mut alerts = Vec::new();
        let mut recommendations = Vec::new();
        match rate {
            None => recommendations.push(
                "no hit/miss counts yet: send traffic or run the `booking-slots-next-7-days` warming job"
                    .to_owned(),
            ),
            Some(r) if r < 0.4 => {
                alerts.push(format!("low hit rate: {:.1}% (target > 60%)", r * 100.0));
                recommendations.push(
                    "check that triggers purge only what changed (`larder explain`), and warm slots ahead"
                        .to_owned(),
                );
            }
            Some(r) if r < 0.6 => recommendations.push(format!(
                "hit rate {:.1}% is under the 60% target: consider longer TTLs for static data",
                r * 100.0
            )),
            Some(_) => {}
        }
        let last = self
            .0
            .last_benchmark
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        Reply::from(Ok::<_, BookingError>(json!({
            "plugin": self.0.ctx.plugin(),
            "cache": stats,
            "hit_rate": rate,
            "last_benchmark": last,
            "alerts": alerts,
            "recommendations": recommendations,
        })))
    }

    /// Warm the cache
    ///
    /// Runs this plugin's warm sources now (default: all of them), through the server as
    /// the policy's warming job does, and answers when they finished: what was requested,
    /// how many entries are warm, and the failures.
    #[oai(path = "/warm-cache", method = "post", operation_id = "cache_warm")]
    async fn cache_warm(
        &self,
        /// Warm source names, repeatable (default: every source).
        #[oai(example = "example_sources")]
        source: Query<Vec<String>>,
    ) -> Reply<WarmReport> {
        let names = if source.0.is_empty() {
            vec![
                WARM_SLOTS_NEXT_7_DAYS.name.to_owned(),
                WARM_AVAILABILITY_TWO_WEEKS.name.to_owned(),
            ]
        } else {
            source.0
        };
        let plugin = BookingPlugin {
            state: self.0.clone(),
        };
        let mut listed = Vec::new();
        for (i, name) in names.iter().enumerate() {
            match plugin.warm_requests(name).await {
                Ok(reqs) => listed.push(
                    reqs.into_iter()
                        .map(|r| format!("{} {}", r.method, r.path))
                        .collect::<Vec<_>>(),
                ),
                Err(BookingError::NotFound { message, .. }) => {
                    return Err(BookingError::not_found(&format!("source[{i}]"), message)).into();
                }
                Err(e) => return Err(e).into(),
            }
        }
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let runs = match self.0.ctx.warm(&refs).await {
            Ok(runs) => runs,
            Err(e) => return Err(BookingError::internal(e.to_string())).into(),
        };
        let sources: Vec<WarmSourceRequests> = runs
            .into_iter()
            .zip(listed)
            .map(|(run, requests)| WarmSourceRequests {
                source: run.source,
                requests,
                job: run.job,
                entries: run.entries,
                errors: run.errors,
                error_samples: run.error_samples,
                duration_ms: run.duration_ms,
            })
            .collect();
        let entries = sources.iter().map(|s| s.entries).sum();
        let errors = sources.iter().map(|s| s.errors).sum();
        Ok(WarmReport {
            message: format!(
                "{entries} entries warmed, {errors} errors, from {} warm source(s)",
                sources.len()
            ),
            sources,
            started: true,
            entries,
            errors,
            how_to_run: "on a schedule: the policy's `warming:` job `booking-slots-next-7-days`; from the admin API: POST /admin/cache/warm".into(),
        })
        .into()
    }

    /// Invalidate cache entries
    ///
    /// Purges this plugin's entries by key patterns and/or tags, or all of them with
    /// `all: true`. A pattern of only wildcards is refused.
    #[oai(
        path = "/invalidate",
        method = "post",
        operation_id = "cache_invalidate"
    )]
    async fn cache_invalidate(&self, body: JsonBody<InvalidateRequest>) -> Reply<InvalidateReport> {
        let req = body.0;
        if req.patterns.is_empty() && req.tags.is_empty() && !req.all {
            return Err(BookingError::invalid(
                "patterns",
                "nothing_to_purge",
                "give `patterns`, `tags`, or `all: true`",
            ))
            .into();
        }
        for (i, p) in req.patterns.iter().enumerate() {
            if larder_plugin::is_wildcard_only(p) {
                return Err(BookingError::invalid(
                    &format!("patterns[{i}]"),
                    "pattern_too_wide",
                    format!(
                        "pattern `{p}` matches everything; send `all: true` to purge everything"
                    ),
                ))
                .into();
            }
        }
        let ctx = &self.0.ctx;
        let mut details = Vec::new();
        let result: Result<(), BookingError> = async {
            if req.all {
                let n = ctx
                    .invalidate(Invalidation::All)
                    .await
                    .map_err(|e| BookingError::internal(e.to_string()))?;
                details.push(PurgeDetail {
                    target: "all".into(),
                    cleared: n,
                });
            }
            for p in &req.patterns {
                let n = ctx
                    .invalidate(Invalidation::Pattern(p.clone()))
                    .await
                    .map_err(|e| BookingError::internal(e.to_string()))?;
                details.push(PurgeDetail {
                    target: format!("pattern:{p}"),
                    cleared: n,
                });
            }
            if !req.tags.is_empty() {
                let n = ctx
                    .invalidate(Invalidation::Tags(req.tags.clone()))
                    .await
                    .map_err(|e| BookingError::internal(e.to_string()))?;
                details.push(PurgeDetail {
                    target: format!("tags:{}", req.tags.join(",")),
                    cleared: n,
                });
            }
            Ok(())
        }
        .await;
        if let Err(e) = result {
            return Err(e).into();
        }
        let cleared = details.iter().map(|d| d.cleared).sum();
        Ok(InvalidateReport {
            message: format!("cleared {cleared} entries"),
            cleared_entries: cleared,
            details,
        })
        .into()
    }

    /// Benchmark uncached vs cached
    ///
    /// Runs a computation `iterations` times directly, then `iterations` times through the
    /// plugin cache, and reports both latencies. `slots` and `weekly_availability` use
    /// `barber_id` (default: the first active barber) and `date` (default: tomorrow).
    #[oai(
        path = "/benchmark/:target",
        method = "post",
        operation_id = "cache_benchmark"
    )]
    async fn cache_benchmark(
        &self,
        /// `slots`, `weekly_availability` or `dashboard`.
        #[oai(example = "example_target")]
        target: Path<BenchTarget>,
        /// The barber (slot targets).
        barber_id: Query<Option<Id>>,
        /// The day, `YYYY-MM-DD` (slot targets), within the window of the slots route.
        date: Query<Option<Day>>,
        /// Calls per side, 1–500.
        #[oai(
            default = "default_iterations",
            validator(minimum(value = "1"), maximum(value = "500"))
        )]
        iterations: Query<u32>,
    ) -> Reply<BenchReport> {
        let barber = match barber_id.0 {
            Some(b) => b.0,
            None => match self.0.db.read(store::active_barber_ids).await {
                Ok(ids) => match ids.first() {
                    Some(id) => *id,
                    None => {
                        return Err(BookingError::not_found("barber_id", "no active barber"))
                            .into();
                    }
                },
                Err(e) => return Err(e).into(),
            },
        };
        if let Err(e) = self
            .0
            .db
            .read(move |c| store::require_barber(c, barber))
            .await
        {
            return Err(e).into();
        }
        let date = date
            .0
            .map(|d| d.0)
            .unwrap_or_else(|| time::add_days(self.0.clock.today(), 1));
        // Each date benchmarked is a cache entry too.
        if !matches!(target.0, BenchTarget::Dashboard)
            && let Err(e) = self.0.check_day("date", date)
        {
            return Err(e).into();
        }
        let result = self.bench(target.0, barber, date, iterations.0).await;
        if let Ok(report) = &result {
            let summary = json!({
                "target": format!("{:?}", report.target),
                "uncached_avg_ms": report.uncached.avg_ms,
                "cached_avg_ms": report.cached.avg_ms,
                "improvement_percent": report.improvement_percent,
            });
            *self
                .0
                .last_benchmark
                .lock()
                .unwrap_or_else(|p| p.into_inner()) = Some(summary);
        }
        result.into()
    }
}

fn default_iterations() -> u32 {
    50
}
