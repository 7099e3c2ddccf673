//! A circuit breaker around Redis, so an outage costs no latency.
//!
//! Closed: calls go through; `failure_threshold` consecutive failures open it. Open: every
//! call is refused at once (an atomic load) and the caller falls back to L1 or the origin.
//! After `open_for`, one background probe (not a user request) pings Redis; success closes
//! the breaker, failure keeps it open for another period. A reconnect event from the client
//! triggers an early probe, so L2 comes back as soon as Redis does.

use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use crate::clock::Clock;

/// Shared breaker state; all methods are lock-free.
#[derive(Debug)]
pub struct Breaker {
    clock: Clock,
    threshold: u32,
    open_for_ms: u64,
    consecutive_failures: AtomicU32,
    /// 0 when closed, otherwise the unix ms until which it stays open.
    open_until_ms: AtomicU64,
    /// Set while a probe runs so only one is in flight.
    probing: AtomicBool,
    opened_total: AtomicU64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(clock: Clock, threshold: u32, open_for: Duration) -> Self {
        Breaker {
            clock,
            threshold: threshold.max(1),
            open_for_ms: open_for.as_millis() as u64,
            consecutive_failures: AtomicU32::new(0),
            open_until_ms: AtomicU64::new(0),
            probing: AtomicBool::new(false),
            opened_total: AtomicU64::new(0),
        }
    }

    /// True when calls may go to Redis.
    #[inline]
    pub fn allows(&self) -> bool {
        self.open_until_ms.load(Ordering::Acquire) == 0
    }

    /// True while open (for stats).
    pub fn is_open(&self) -> bool {
        !self.allows()
    }

    /// How many times the breaker has opened.
    pub fn opened_total(&self) -> u64 {
        self.opened_total.load(Ordering::Relaxed)
    }

    /// Records a successful call.
    #[inline]
    pub fn success(&self) {
        if self.consecutive_failures.load(Ordering::Relaxed) != 0 {
            self.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Records a failed call; may open the breaker.
    pub fn failure(&self) {
        let n = self.consecutive_failures.fetch_add(1, Ordering::AcqRel) + 1;
        if n >= self.threshold {
            self.open();
        }
    }

    /// Opens the breaker now (also used when start-up cannot connect).
    pub fn open(&self) {
        let until = self.clock.now_ms() + self.open_for_ms;
        if self.open_until_ms.swap(until, Ordering::AcqRel) == 0 {
            self.opened_total.fetch_add(1, Ordering::Relaxed);
            tracing::warn!("redis circuit breaker opened; serving from L1 and origin");
        }
    }

    /// Closes the breaker after a successful probe.
    pub fn close(&self) {
        self.consecutive_failures.store(0, Ordering::Relaxed);
        if self.open_until_ms.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("redis circuit breaker closed; L2 back in use");
        }
    }

    /// If open and due (or `force`), claims the single probe slot. The caller runs the probe
    /// and then calls [`Breaker::probe_done`].
    pub fn try_start_probe(&self, force: bool) -> bool {
        let until = self.open_until_ms.load(Ordering::Acquire);
        if until == 0 || (!force && self.clock.now_ms() < until) {
            return false;
        }
        self.probing
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Ends a probe: closes on success, re-arms the open period on failure.
    pub fn probe_done(&self, ok: bool) {
        if ok {
            self.close();
        } else {
            let until = self.clock.now_ms() + self.open_for_ms;
            self.open_until_ms.store(until, Ordering::Release);
        }
        self.probing.store(false, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn opens_after_threshold_and_probes_after_period() {
        let b = Breaker::new(Clock::new(), 2, Duration::from_millis(100));
        assert!(b.allows());
        b.failure();
        assert!(b.allows());
        b.success();
        b.failure();
        assert!(b.allows(), "success resets the count");
        b.failure();
        assert!(!b.allows());
        assert!(!b.try_start_probe(false), "not due yet");
        tokio::time::advance(Duration::from_millis(150)).await;
        assert!(b.try_start_probe(false));
        assert!(!b.try_start_probe(true), "one probe at a time");
        b.probe_done(false);
        assert!(!b.allows());
        assert!(b.try_start_probe(true), "forced probe (reconnect event)");
        b.probe_done(true);
        assert!(b.allows());
        assert_eq!(b.opened_total(), 1);
    }
}
