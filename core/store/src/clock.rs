//! Wall-clock milliseconds that follow tokio's clock.
//!
//! Entries carry unix timestamps (so instances sharing Redis agree on age), but tests need
//! tokio's paused time to drive expiry. The clock reads the wall time once and then
//! advances with `tokio::time::Instant`, which gives both.

use std::time::{SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Cheap to copy; read it with [`Clock::now_ms`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_unix_ms: u64,
    start: Instant,
}

impl Clock {
    /// Anchors the clock at the current wall time.
    pub fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            base_unix_ms,
            start: Instant::now(),
        }
    }

    /// Current unix time in milliseconds.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        self.base_unix_ms + self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
