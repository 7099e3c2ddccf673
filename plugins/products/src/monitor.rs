//! Seed 003's `CacheMonitor`: per-operation timings of the service functions (count,
//! failures, cache hits, mean and percentiles), which `GET /cache/performance` reports with
//! alerts at the configured thresholds. Durations are milliseconds (the seed mixed seconds
//! and milliseconds).

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use poem_openapi::Object;

/// The service operations timed.
pub const OPERATIONS: &[&str] = &[
    "product_lookup",
    "catalog_page",
    "categories",
    "preferences",
    "static_data",
    "product_update",
    "preferences_update",
];

struct Op {
    count: u64,
    failures: u64,
    cache_hits: u64,
    /// Microseconds, 1 µs to 60 s at 3 significant digits.
    micros: Histogram<u64>,
}

impl Op {
    fn new() -> Self {
        Self {
            count: 0,
            failures: 0,
            cache_hits: 0,
            micros: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        }
    }
}

/// Timings of the service functions since start.
pub struct Monitor {
    ops: Mutex<BTreeMap<&'static str, Op>>,
}

/// One operation's figures.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsOperationMetrics")]
pub struct OperationMetrics {
    /// The service function: `product_lookup`, `catalog_page`, ...
    pub operation: String,
    /// Calls.
    pub count: u64,
    /// Calls that failed.
    pub failures: u64,
    /// Share of calls that succeeded (0–1); 1 with no calls.
    pub success_rate: f64,
    /// Calls answered from the cache.
    pub cache_hits: u64,
    /// Mean duration, ms.
    pub avg_ms: f64,
    /// Median, ms.
    pub p50_ms: f64,
    /// 95th percentile, ms.
    pub p95_ms: f64,
    /// Slowest, ms.
    pub max_ms: f64,
}

/// Microseconds as milliseconds with three decimals.
fn ms(micros: f64) -> f64 {
    micros.round() / 1000.0
}

impl Monitor {
    /// No calls yet.
    pub fn new() -> Self {
        Self {
            ops: Mutex::new(OPERATIONS.iter().map(|o| (*o, Op::new())).collect()),
        }
    }

    /// Records one call of `operation` (seed 003's `record_metric`).
    pub fn record(&self, operation: &'static str, took: Duration, ok: bool, cache_hit: bool) {
        let mut ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        let op = ops.entry(operation).or_insert_with(Op::new);
        op.count += 1;
        op.failures += u64::from(!ok);
        op.cache_hits += u64::from(cache_hit);
        let micros = (took.as_micros() as u64).clamp(1, 60_000_000);
        // Within the bounds set above, so recording cannot fail.
        let _ = op.micros.record(micros);
    }

    /// Every operation's figures, in name order.
    pub fn snapshot(&self) -> Vec<OperationMetrics> {
        let ops = self.ops.lock().unwrap_or_else(|p| p.into_inner());
        ops.iter()
            .map(|(name, op)| OperationMetrics {
                operation: (*name).to_owned(),
                count: op.count,
                failures: op.failures,
                success_rate: if op.count == 0 {
                    1.0
                } else {
                    (op.count - op.failures) as f64 / op.count as f64
                },
                cache_hits: op.cache_hits,
                avg_ms: if op.count == 0 {
                    0.0
                } else {
                    ms(op.micros.mean())
                },
                p50_ms: ms(op.micros.value_at_quantile(0.5) as f64),
                p95_ms: ms(op.micros.value_at_quantile(0.95) as f64),
                max_ms: ms(op.micros.max() as f64),
            })
            .collect()
    }
}

impl Default for Monitor {
    fn default() -> Self {
        Self::new()
    }
}
