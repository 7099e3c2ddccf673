//! Invalidations that could not reach Redis, kept in order until they can.
//!
//! An invalidation purges this instance's L1 at once, but its Redis part (deleting the L2
//! copies, recording it in the purge stream, publishing it to the other instances) fails
//! while Redis is unreachable. Dropping it would leave the old entry in L2 for every
//! instance and in the other instances' L1 for the rest of its TTL, so it waits here and is
//! replayed, in order, once Redis answers again.
//!
//! The queue is bounded. On overflow it collapses into one [`Purge::All`]: everything
//! queued is then covered (at the price of a cold cache everywhere), and memory stays
//! bounded however long the outage lasts.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

use crate::store::Purge;

/// Pending invalidations, oldest first. Each carries a number so a replay removes exactly
/// what it sent, even if the queue collapsed meanwhile.
pub(crate) struct Outbox {
    capacity: usize,
    queue: Mutex<VecDeque<(u64, Purge)>>,
    next: std::sync::atomic::AtomicU64,
    len: AtomicUsize,
}

impl Outbox {
    /// An empty outbox holding at most `capacity` invalidations (at least one).
    pub(crate) fn new(capacity: usize) -> Self {
        Outbox {
            capacity: capacity.max(1),
            queue: Mutex::default(),
            next: std::sync::atomic::AtomicU64::new(1),
            len: AtomicUsize::new(0),
        }
    }

    /// Number of queued invalidations; an atomic load, fine on the request path.
    #[inline]
    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// Queues an invalidation after the others.
    pub(crate) fn push(&self, purge: Purge) {
        let mut queue = self.queue.lock();
        let seq = self.next.fetch_add(1, Ordering::Relaxed);
        // An `All` removes, at replay, everything the ones before it would.
        if matches!(purge, Purge::All) {
            queue.clear();
            queue.push_back((seq, Purge::All));
        } else if queue.len() >= self.capacity {
            tracing::warn!(
                capacity = self.capacity,
                "purge outbox full while Redis is unreachable; collapsing it into one purge of everything, to be replayed when Redis is back"
            );
            queue.clear();
            queue.push_back((seq, Purge::All));
        } else {
            queue.push_back((seq, purge));
        }
        self.len.store(queue.len(), Ordering::Release);
    }

    /// The oldest queued invalidation, left in place until [`Outbox::done`].
    pub(crate) fn front(&self) -> Option<(u64, Purge)> {
        self.queue.lock().front().cloned()
    }

    /// Removes the invalidation numbered `seq` once replayed (nothing if the queue has
    /// collapsed since it was read).
    pub(crate) fn done(&self, seq: u64) {
        let mut queue = self.queue.lock();
        if queue.front().is_some_and(|(s, _)| *s == seq) {
            queue.pop_front();
        }
        self.len.store(queue.len(), Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(outbox: &Outbox) -> Vec<Purge> {
        let mut out = Vec::new();
        while let Some((seq, purge)) = outbox.front() {
            out.push(purge);
            outbox.done(seq);
        }
        out
    }

    #[test]
    fn replays_in_order() {
        let outbox = Outbox::new(8);
        outbox.push(Purge::Keys(vec!["a".into()]));
        outbox.push(Purge::Tags(vec!["t".into()]));
        outbox.push(Purge::Pattern("p:*".into()));
        assert_eq!(outbox.len(), 3);
        assert_eq!(
            drain(&outbox),
            vec![
                Purge::Keys(vec!["a".into()]),
                Purge::Tags(vec!["t".into()]),
                Purge::Pattern("p:*".into()),
            ]
        );
        assert_eq!(outbox.len(), 0);
    }

    #[test]
    fn overflow_collapses_into_one_purge_of_everything() {
        let outbox = Outbox::new(3);
        for i in 0..3 {
            outbox.push(Purge::Keys(vec![format!("k{i}")]));
        }
        assert_eq!(outbox.len(), 3);
        outbox.push(Purge::Keys(vec!["k3".into()]));
        assert_eq!(outbox.len(), 1);
        outbox.push(Purge::Tags(vec!["later".into()]));
        assert_eq!(
            drain(&outbox),
            vec![Purge::All, Purge::Tags(vec!["later".into()])],
            "what comes after the collapse keeps its place"
        );
    }

    #[test]
    fn a_queued_all_makes_what_came_before_redundant() {
        let outbox = Outbox::new(8);
        outbox.push(Purge::Keys(vec!["a".into()]));
        outbox.push(Purge::All);
        outbox.push(Purge::Keys(vec!["b".into()]));
        assert_eq!(
            drain(&outbox),
            vec![Purge::All, Purge::Keys(vec!["b".into()])]
        );
    }

    #[test]
    fn a_replay_that_raced_a_collapse_removes_nothing_else() {
        let outbox = Outbox::new(2);
        outbox.push(Purge::Keys(vec!["a".into()]));
        let (seq, _) = outbox.front().unwrap();
        outbox.push(Purge::All);
        outbox.done(seq);
        assert_eq!(drain(&outbox), vec![Purge::All]);
    }
}
