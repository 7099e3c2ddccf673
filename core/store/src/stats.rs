//! Counters and latency histograms, cheap enough for the hit path.
//!
//! Everything is a relaxed atomic: no lock, no allocation, no map lookup per call. Per-rule
//! counters live in an [`RuleStats`] handle the caller obtains once
//! ([`crate::Cache::rule_stats`]) and passes in the call options. [`Stats::snapshot`]
//! turns it all into a serde-serialisable struct for the admin API and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

const SUB_BITS: u32 = 3;
const SUB: usize = 1 << SUB_BITS;
const LINEAR: u64 = 2 * SUB as u64;
const BUCKETS: usize = LINEAR as usize + (64 - (SUB_BITS as usize + 1)) * SUB;

/// A lock-free log-linear histogram of nanoseconds (8 sub-buckets per power of two, so
/// percentiles are within ~12%). Chosen over hdrhistogram because recording must not take a
/// lock on the hit path.
pub struct Histogram {
    buckets: Box<[AtomicU64]>,
    count: AtomicU64,
    sum_ns: AtomicU64,
    max_ns: AtomicU64,
}

impl std::fmt::Debug for Histogram {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Histogram")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Default for Histogram {
    fn default() -> Self {
        Histogram {
            buckets: (0..BUCKETS).map(|_| AtomicU64::new(0)).collect(),
            count: AtomicU64::new(0),
            sum_ns: AtomicU64::new(0),
            max_ns: AtomicU64::new(0),
        }
    }
}

fn bucket_of(v: u64) -> usize {
    if v < LINEAR {
        return v as usize;
    }
    let exp = 63 - v.leading_zeros();
    let sub = ((v >> (exp - SUB_BITS)) as usize) & (SUB - 1);
    LINEAR as usize + (exp - (SUB_BITS + 1)) as usize * SUB + sub
}

fn bucket_upper(i: usize) -> u64 {
    if (i as u64) < LINEAR {
        return i as u64;
    }
    let j = i - LINEAR as usize;
    let exp = (j / SUB) as u32 + SUB_BITS + 1;
    let sub = (j % SUB) as u64;
    let base = 1u64 << exp;
    let step = base >> SUB_BITS;
    (base - 1).saturating_add(step * (sub + 1))
}

impl Histogram {
    /// Records one duration.
    #[inline]
    pub fn record(&self, d: std::time::Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.buckets[bucket_of(ns)].fetch_add(1, Ordering::Relaxed);
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_ns.fetch_add(ns, Ordering::Relaxed);
        self.max_ns.fetch_max(ns, Ordering::Relaxed);
    }

    /// Percentiles in microseconds.
    pub fn snapshot(&self) -> LatencySnapshot {
        let counts: Vec<u64> = self
            .buckets
            .iter()
            .map(|b| b.load(Ordering::Relaxed))
            .collect();
        let total: u64 = counts.iter().sum();
        let pct = |q: f64| -> f64 {
            if total == 0 {
                return 0.0;
            }
            let rank = ((q * total as f64).ceil() as u64).max(1);
            let mut seen = 0;
            for (i, c) in counts.iter().enumerate() {
                seen += c;
                if seen >= rank {
                    return bucket_upper(i) as f64 / 1_000.0;
                }
            }
            0.0
        };
        let count = self.count.load(Ordering::Relaxed);
        LatencySnapshot {
            count,
            mean_us: if count == 0 {
                0.0
            } else {
                self.sum_ns.load(Ordering::Relaxed) as f64 / count as f64 / 1_000.0
            },
            p50_us: pct(0.50),
            p90_us: pct(0.90),
            p99_us: pct(0.99),
            p999_us: pct(0.999),
            max_us: self.max_ns.load(Ordering::Relaxed) as f64 / 1_000.0,
        }
    }
}

/// Latency summary of one layer, in microseconds.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct LatencySnapshot {
    /// Samples recorded (L1 hits are sampled 1 in 8 to keep the hit path lean).
    pub count: u64,
    /// Mean.
    pub mean_us: f64,
    /// Median.
    pub p50_us: f64,
    /// 90th percentile.
    pub p90_us: f64,
    /// 99th percentile.
    pub p99_us: f64,
    /// 99.9th percentile.
    pub p999_us: f64,
    /// Largest sample.
    pub max_us: f64,
}

macro_rules! counters {
    ($(#[$meta:meta])* $name:ident / $snap:ident { $($(#[$fmeta:meta])* $field:ident),* $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Default)]
        pub struct $name {
            $($(#[$fmeta])* pub $field: AtomicU64,)*
        }

        /// Point-in-time copy of the counters.
        #[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
        pub struct $snap {
            $($(#[$fmeta])* pub $field: u64,)*
        }

        impl $name {
            /// Reads every counter (each individually consistent, not as a group).
            pub fn snapshot(&self) -> $snap {
                $snap { $($field: self.$field.load(Ordering::Relaxed),)* }
            }
        }
    };
}

counters!(
    /// Engine-wide counters.
    Counters / CountersSnapshot {
        /// Fresh hits served from L1.
        hits_l1,
        /// Fresh hits served from L2 (Redis), including entries found while waiting on
        /// another instance's lock.
        hits_l2,
        /// Lookups L1 could not answer fresh.
        misses_l1,
        /// Lookups L2 could not answer fresh (including when it was skipped by the breaker).
        misses_l2,
        /// Entries written (once per store call, whatever the layers).
        sets,
        /// Keys removed by invalidation.
        deletes,
        /// L1 entries evicted to stay within the byte budget.
        evictions,
        /// Redis command failures and timeouts.
        errors,
        /// Stored values that failed to decode (then deleted).
        corrupt,
        /// Stale entries served while one background refresh ran.
        stale_served,
        /// Stale entries served because the origin failed.
        stale_if_error_served,
        /// Calls that waited on another call's origin load instead of making their own.
        coalesced_waits,
        /// Calls to the origin (the loader).
        origin_calls,
        /// Origin calls that failed or timed out.
        origin_errors,
        /// Origin responses returned to their caller only, never stored.
        pass_through,
        /// Loads not stored because an invalidation matching them landed while they ran.
        raced_invalidations,
        /// Background refreshes started by stale-while-revalidate.
        refreshes,
        /// Times this instance waited on another instance's Redis lock.
        lock_waits,
        /// Invalidations published to other instances.
        invalidations_published,
        /// Invalidations received from other instances and applied to L1.
        invalidations_received,
    }
);

counters!(
    /// One policy rule's counters; get the handle once with [`crate::Cache::rule_stats`].
    RuleStats / RuleStatsSnapshot {
        /// Fresh hits from L1.
        hits_l1,
        /// Fresh hits from L2.
        hits_l2,
        /// Calls that found nothing fresh.
        misses,
        /// Stale entries served (either window).
        stale_served,
        /// Calls that waited on another call's load.
        coalesced_waits,
        /// Origin calls made for this rule.
        origin_calls,
        /// Origin failures for this rule.
        origin_errors,
    }
);

/// The engine's statistics: counters plus per-layer latency.
#[derive(Debug, Default)]
pub struct Stats {
    /// Engine-wide counters.
    pub counters: Counters,
    /// L1 lookup latency (sampled).
    pub l1_latency: Histogram,
    /// L2 lookup latency.
    pub l2_latency: Histogram,
    /// Origin (loader) latency.
    pub origin_latency: Histogram,
}

/// Everything the admin stats endpoint shows, serialisable as is.
#[derive(Debug, Clone, Serialize)]
pub struct StatsSnapshot {
    /// Engine-wide counters.
    pub counters: CountersSnapshot,
    /// Fresh hits / (hits + origin-bound misses), over both layers; 0 with no traffic.
    pub hit_rate: f64,
    /// Answers given without calling the origin: fresh hits from either layer, stale
    /// answers served, and callers that waited for another's origin call (coalesced, or
    /// behind the cross-instance lock) instead of making their own.
    pub origin_calls_saved: u64,
    /// Bytes held in L1 (by the same weight used for the budget).
    pub l1_bytes: u64,
    /// L1 byte budget.
    pub l1_capacity_bytes: u64,
    /// Entries in L1.
    pub l1_entries: u64,
    /// Redis state, if configured.
    pub redis: Option<RedisState>,
    /// L1 lookup latency.
    pub l1_latency: LatencySnapshot,
    /// L2 lookup latency.
    pub l2_latency: LatencySnapshot,
    /// Origin latency.
    pub origin_latency: LatencySnapshot,
    /// Per-rule counters, by rule name.
    pub rules: std::collections::BTreeMap<String, RuleStatsSnapshot>,
}

/// Redis connection and breaker state.
#[derive(Debug, Clone, Serialize)]
pub struct RedisState {
    /// At least one pooled connection is up.
    pub connected: bool,
    /// The breaker is open: L2 is being skipped.
    pub breaker_open: bool,
    /// How often the breaker has opened since start.
    pub breaker_opened_total: u64,
    /// This instance hears other instances' invalidations: subscribed, and caught up with
    /// the purge stream after any gap.
    pub subscribed: bool,
    /// Invalidations queued while Redis was unreachable, not yet replayed.
    pub pending_purges: u64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn histogram_buckets_are_monotonic_and_percentiles_close() {
        let mut last = 0;
        for v in [
            0u64,
            1,
            15,
            16,
            17,
            100,
            1_000,
            123_456,
            10_000_000,
            u64::MAX,
        ] {
            let b = bucket_of(v);
            assert!(b >= last && b < BUCKETS, "{v} -> {b}");
            assert!(bucket_upper(b) >= v, "{v} upper {}", bucket_upper(b));
            last = b;
        }
        let h = Histogram::default();
        for us in 1..=1000u64 {
            h.record(Duration::from_micros(us));
        }
        let s = h.snapshot();
        assert_eq!(s.count, 1000);
        assert!((s.p50_us - 500.0).abs() / 500.0 < 0.15, "{s:?}");
        assert!((s.p99_us - 990.0).abs() / 990.0 < 0.15, "{s:?}");
        assert_eq!(s.max_us, 1000.0);
    }
}
