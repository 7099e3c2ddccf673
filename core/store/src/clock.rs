//! Wall-clock milliseconds that follow tokio's clock.
//!
//! Entries carry unix timestamps (so instances sharing Redis agree on age), but tests need
//! tokio's paused time to drive expiry. The clock reads its starting instant once and then
//! advances with `tokio::time::Instant`, which gives both. The starting instant is the wall
//! time, or one the server's configuration chooses (`server.clock_start`), so that a test
//! can run the whole server — policies' `today`, plugins' "now", entry ages — at a fixed
//! date.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::time::Instant;

/// Cheap to copy; read it with [`Clock::now_ms`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    base_unix_ms: u64,
    start: Instant,
    frozen: bool,
}

impl Clock {
    /// Anchors the clock at the current wall time.
    pub fn new() -> Self {
        let base_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock::starting_at(base_unix_ms)
    }

    /// A clock that reads `unix_ms` now and runs forward from there at tokio's pace.
    pub fn starting_at(unix_ms: u64) -> Self {
        Clock {
            base_unix_ms: unix_ms,
            start: Instant::now(),
            frozen: false,
        }
    }

    /// A clock that always reads `unix_ms`: two servers compared answer for answer (one
    /// per database engine, say) then agree on every "last hour", whenever each started.
    pub fn frozen_at(unix_ms: u64) -> Self {
        Clock {
            frozen: true,
            ..Clock::starting_at(unix_ms)
        }
    }

    /// Current unix time in milliseconds.
    #[inline]
    pub fn now_ms(&self) -> u64 {
        if self.frozen {
            return self.base_unix_ms;
        }
        self.base_unix_ms + self.start.elapsed().as_millis() as u64
    }

    /// Current time as a [`SystemTime`].
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.now_ms())
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_chosen_start_runs_with_tokio_time() {
        let clock = Clock::starting_at(1_764_547_200_000);
        assert_eq!(clock.now_ms(), 1_764_547_200_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(clock.now_ms(), 1_764_547_290_000);
        assert_eq!(
            clock.now(),
            UNIX_EPOCH + Duration::from_millis(1_764_547_290_000)
        );
        let frozen = Clock::frozen_at(1_764_547_200_000);
        tokio::time::advance(Duration::from_secs(90)).await;
        assert_eq!(frozen.now_ms(), 1_764_547_200_000);
    }
}
