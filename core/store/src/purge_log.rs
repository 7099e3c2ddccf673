//! Keeps a load that raced an invalidation from storing what the invalidation removed.
//!
//! A load reads the origin, then stores. If an invalidation for its key or tags lands in
//! between (a booking commits while a slots request is computing), storing the result would
//! bring the purged data back, and a client could see a booked slot as free after the
//! booking's 2xx. Every invalidation is recorded here with a sequence number *before* it
//! purges; a load notes the sequence when it starts and, before and after storing, asks
//! whether anything that matches it was purged since.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;

use crate::store::{Purge, glob_match};

/// How many recent invalidations are remembered. A load older than the oldest one kept is
/// treated as raced (not stored): safe, and only possible under a storm of invalidations.
const KEEP: usize = 4096;

/// Recent invalidations, by sequence number.
#[derive(Default)]
pub(crate) struct PurgeLog {
    seq: AtomicU64,
    recent: Mutex<VecDeque<(u64, Purge)>>,
}

impl PurgeLog {
    /// The current sequence number: what a load records when it starts.
    #[inline]
    pub(crate) fn now(&self) -> u64 {
        self.seq.load(Ordering::Acquire)
    }

    /// Records an invalidation; call before purging anything.
    pub(crate) fn record(&self, purge: &Purge) {
        let mut recent = self.recent.lock();
        let seq = self.seq.fetch_add(1, Ordering::AcqRel) + 1;
        recent.push_back((seq, purge.clone()));
        if recent.len() > KEEP {
            recent.pop_front();
        }
    }

    /// Whether an invalidation matching `key` or any of `tags` was recorded after `since`.
    #[inline]
    pub(crate) fn purged_since(&self, since: u64, key: &str, tags: &[String]) -> bool {
        if self.seq.load(Ordering::Acquire) == since {
            return false;
        }
        let recent = self.recent.lock();
        if recent
            .front()
            .is_some_and(|(oldest, _)| *oldest > since + 1)
        {
            return true;
        }
        recent
            .iter()
            .rev()
            .take_while(|(seq, _)| *seq > since)
            .any(|(_, purge)| matches(purge, key, tags))
    }
}

fn matches(purge: &Purge, key: &str, tags: &[String]) -> bool {
    match purge {
        Purge::Keys(keys) => keys.iter().any(|k| k == key),
        Purge::Tags(purged) => purged.iter().any(|t| tags.contains(t)),
        Purge::Pattern(pattern) => glob_match(pattern, key),
        Purge::All => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_matching_later_purges_count() {
        let log = PurgeLog::default();
        log.record(&Purge::Tags(vec!["a".into()]));
        let since = log.now();
        let tags = vec!["slots:7:2026-11-21".to_string()];
        assert!(!log.purged_since(since, "k", &tags));
        log.record(&Purge::Tags(vec!["slots:8:2026-11-21".into()]));
        assert!(!log.purged_since(since, "k", &tags), "another barber's tag");
        log.record(&Purge::Keys(vec!["other".into()]));
        assert!(!log.purged_since(since, "k", &tags));
        log.record(&Purge::Tags(vec!["slots:7:2026-11-21".into()]));
        assert!(log.purged_since(since, "k", &tags));
        assert!(
            !log.purged_since(log.now(), "k", &tags),
            "nothing after now"
        );
    }

    #[test]
    fn patterns_keys_and_all_match() {
        let log = PurgeLog::default();
        let since = log.now();
        log.record(&Purge::Pattern("booking:slots:*".into()));
        assert!(log.purged_since(since, "booking:slots:1", &[]));
        assert!(!log.purged_since(since, "booking:other", &[]));
        let since = log.now();
        log.record(&Purge::All);
        assert!(log.purged_since(since, "anything", &[]));
    }

    #[test]
    fn a_load_older_than_the_log_counts_as_raced() {
        let log = PurgeLog::default();
        let since = log.now();
        for i in 0..(KEEP + 10) {
            log.record(&Purge::Keys(vec![format!("k{i}")]));
        }
        assert!(log.purged_since(since, "unrelated", &[]));
    }
}
