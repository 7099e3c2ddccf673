//! L1: the in-process store, bounded in bytes.
//!
//! quick_cache holds `Arc<Entry>` values weighted by [`Entry::weight`], so the budget is in
//! bytes, not items, and a hit is one sharded lookup plus an `Arc` clone. A tag index
//! (tag → keys) makes tag purges proportional to the tag's size; evictions and removals
//! keep it in step through quick_cache's lifecycle hook.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::Mutex;
use quick_cache::sync::Cache as QuickCache;
use quick_cache::{DefaultHashBuilder, Lifecycle, Weighter};

use crate::clock::Clock;
use crate::entry::{BodyEncoding, Entry, Freshness};
use crate::error::StoreError;
use crate::store::{Found, KeyInfo, Layer, Purge, Store, glob_match, ms};

#[derive(Clone)]
struct EntryWeighter;

impl Weighter<Arc<str>, Arc<Entry>> for EntryWeighter {
    fn weight(&self, key: &Arc<str>, val: &Arc<Entry>) -> u64 {
        val.weight() + key.len() as u64
    }
}

/// Counts evictions and hands the evicted entries back so their tags can be unindexed
/// after the shard lock is released.
#[derive(Clone)]
struct EvictionHook {
    evictions: Arc<AtomicU64>,
}

impl Lifecycle<Arc<str>, Arc<Entry>> for EvictionHook {
    type RequestState = Vec<(Arc<str>, Arc<Entry>)>;

    fn on_evict(&self, state: &mut Self::RequestState, key: Arc<str>, val: Arc<Entry>) {
        self.evictions.fetch_add(1, Ordering::Relaxed);
        if !val.tags.is_empty() {
            state.push((key, val));
        }
    }
}

type Inner = QuickCache<Arc<str>, Arc<Entry>, EntryWeighter, DefaultHashBuilder, EvictionHook>;

/// The L1 store. Cloning shares the same cache.
#[derive(Clone)]
pub struct MemoryStore {
    cache: Arc<Inner>,
    tags: Arc<Mutex<HashMap<String, HashSet<Arc<str>>>>>,
    evictions: Arc<AtomicU64>,
    clock: Clock,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStore")
            .field("entries", &self.cache.len())
            .field("bytes", &self.cache.weight())
            .finish()
    }
}

impl MemoryStore {
    /// An empty store holding at most `capacity_bytes` (by [`Entry::weight`]).
    pub fn new(capacity_bytes: u64, clock: Clock) -> Self {
        let evictions = Arc::new(AtomicU64::new(0));
        // The item estimate only sizes the initial tables; 4 KiB is a typical API response.
        let estimated_items = (capacity_bytes / 4096).clamp(64, 1 << 20) as usize;
        let cache = QuickCache::with(
            estimated_items,
            capacity_bytes.max(1),
            EntryWeighter,
            DefaultHashBuilder::default(),
            EvictionHook {
                evictions: evictions.clone(),
            },
        );
        MemoryStore {
            cache: Arc::new(cache),
            tags: Arc::default(),
            evictions,
            clock,
        }
    }

    /// The hit path: one lookup and an `Arc` clone, no allocation, no await.
    #[inline]
    pub fn get_now(&self, key: &str) -> Option<Arc<Entry>> {
        self.cache.get(key)
    }

    /// Stores an entry; false if it is larger than what one shard can hold (it would
    /// evict everything else for one use).
    pub fn insert(&self, key: &str, entry: Arc<Entry>) -> bool {
        let key: Arc<str> = Arc::from(key);
        if EntryWeighter.weight(&key, &entry) > self.cache.shard_capacity() {
            return false;
        }
        if let Some(old) = self.cache.peek(&*key)
            && !old.tags.is_empty()
        {
            self.unindex(&key, &old.tags);
        }
        let tags = entry.tags.clone();
        let mut evicted = Vec::new();
        self.cache
            .insert_with_lifecycle(key.clone(), entry, &mut evicted);
        for (k, e) in evicted {
            self.unindex(&k, &e.tags);
        }
        if !tags.is_empty() && self.cache.contains_key(&*key) {
            let mut index = self.tags.lock();
            for tag in tags {
                index.entry(tag).or_default().insert(key.clone());
            }
        }
        true
    }

    /// Keeps `body`, `entry`'s body in `coding`, in the entry (see [`Entry::variants`]) if
    /// `key` still holds this very entry, and weighs it again with it; the budget then
    /// evicts as for any insert.
    pub fn keep_variant(&self, key: &str, entry: &Arc<Entry>, coding: BodyEncoding, body: Bytes) {
        let key: Arc<str> = Arc::from(key);
        // Set inside the callback: quick_cache weighs the entry before and after it. A zero
        // timeout: a key being loaded elsewhere keeps no form now.
        let _ = self
            .cache
            .entry(&key, Some(std::time::Duration::ZERO), |_, current| {
                if Arc::ptr_eq(current, entry) {
                    current.variants.keep(coding, body);
                }
                quick_cache::sync::EntryAction::Retain(())
            });
    }

    /// Removes one key; true if it was present.
    pub fn remove(&self, key: &str) -> bool {
        match self.cache.remove(key) {
            Some((k, e)) => {
                self.unindex(&k, &e.tags);
                true
            }
            None => false,
        }
    }

    /// Removes `key` only if it still holds this very entry (not a newer one).
    pub fn remove_if_same(&self, key: &str, entry: &Arc<Entry>) -> bool {
        match self
            .cache
            .remove_if(key, |current| Arc::ptr_eq(current, entry))
        {
            Some((k, e)) => {
                self.unindex(&k, &e.tags);
                true
            }
            None => false,
        }
    }

    fn unindex(&self, key: &Arc<str>, tags: &[String]) {
        if tags.is_empty() {
            return;
        }
        let mut index = self.tags.lock();
        for tag in tags {
            if let Some(keys) = index.get_mut(tag.as_str()) {
                keys.remove(key);
                if keys.is_empty() {
                    index.remove(tag.as_str());
                }
            }
        }
    }

    /// Applies an invalidation locally; returns the number of entries removed.
    pub fn purge_now(&self, target: &Purge) -> u64 {
        match target {
            Purge::Keys(keys) => keys.iter().filter(|k| self.remove(k)).count() as u64,
            Purge::Tags(tags) => {
                let keys: Vec<Arc<str>> = {
                    let mut index = self.tags.lock();
                    tags.iter()
                        .filter_map(|t| index.remove(t.as_str()))
                        .flatten()
                        .collect()
                };
                keys.iter().filter(|k| self.remove(k)).count() as u64
            }
            Purge::Pattern(pattern) => {
                let keys: Vec<Arc<str>> = self
                    .cache
                    .iter()
                    .filter(|(k, _)| glob_match(pattern, k))
                    .map(|(k, _)| k)
                    .collect();
                keys.iter().filter(|k| self.remove(k)).count() as u64
            }
            Purge::All => {
                let n = self.cache.len() as u64;
                self.cache.clear();
                self.tags.lock().clear();
                n
            }
        }
    }

    /// Lists keys matching a glob.
    pub fn list(&self, pattern: &str, limit: usize) -> Vec<KeyInfo> {
        let now = self.clock.now_ms();
        self.cache
            .iter()
            .filter(|(k, _)| glob_match(pattern, k))
            .take(limit)
            .map(|(k, e)| KeyInfo {
                key: k.to_string(),
                expires_in_ms: Some(ms(e.retention_from(now))),
                fresh_for_ms: Some(e.expires_at_ms().saturating_sub(now)),
                layer: Layer::L1,
            })
            .collect()
    }

    /// Bytes held, by the budget's measure.
    pub fn bytes(&self) -> u64 {
        self.cache.weight()
    }

    /// The byte budget.
    pub fn capacity(&self) -> u64 {
        self.cache.capacity()
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.cache.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.cache.is_empty()
    }

    /// Entries evicted to stay within budget since start.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Ordering::Relaxed)
    }

    /// Number of tags in the index (for tests and stats).
    pub fn indexed_tags(&self) -> usize {
        self.tags.lock().len()
    }
}

impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<Found>, StoreError> {
        let now = self.clock.now_ms();
        Ok(self.get_now(key).and_then(|entry| {
            if entry.freshness(now) == Freshness::Expired {
                self.remove(key);
                None
            } else {
                Some(Found {
                    entry,
                    layer: Layer::L1,
                })
            }
        }))
    }

    async fn set(&self, key: &str, entry: Arc<Entry>) -> Result<(), StoreError> {
        self.insert(key, entry);
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.remove(key))
    }

    async fn purge(&self, target: &Purge) -> Result<u64, StoreError> {
        Ok(self.purge_now(target))
    }

    async fn keys(&self, pattern: &str, limit: usize) -> Result<Vec<KeyInfo>, StoreError> {
        Ok(self.list(pattern, limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn entry(size: usize, tags: &[&str]) -> Arc<Entry> {
        Arc::new(
            Entry::new(200, vec![7u8; size])
                .with_ttl(Duration::from_secs(60))
                .with_tags(tags.iter().copied()),
        )
    }

    #[tokio::test]
    async fn kept_variants_are_weighed_and_only_for_the_entry_in_place() {
        use BodyEncoding::{Gzip, Identity};
        let m = MemoryStore::new(1 << 20, Clock::new());
        let first = entry(100, &[]);
        m.insert("k", first.clone());
        let before = m.bytes();
        m.keep_variant("k", &first, Identity, Bytes::from(vec![1u8; 4000]));
        let slots = m.bytes() - before - 4000;
        assert!(slots > 0 && slots < 256, "the slots are weighed: {slots}");
        m.keep_variant("k", &first, Gzip, Bytes::from(vec![4u8; 300]));
        assert_eq!(m.bytes(), before + slots + 4300);
        let kept = m.get_now("k").unwrap();
        assert_eq!(kept.variants.get(Identity).map(Bytes::len), Some(4000));
        assert_eq!(kept.variants.get(Gzip).map(Bytes::len), Some(300));
        assert_eq!(kept.variants.codings(), vec![Identity, Gzip]);
        // The first form kept stays; a form for an entry no longer in place is not kept.
        m.keep_variant("k", &first, Identity, Bytes::from(vec![2u8; 10]));
        assert_eq!(m.bytes(), before + slots + 4300);
        let newer = entry(100, &[]);
        m.insert("k", newer.clone());
        m.keep_variant("k", &first, Identity, Bytes::from(vec![3u8; 4000]));
        assert!(newer.variants.get(Identity).is_none());
        assert_eq!(m.bytes(), before);
    }

    #[tokio::test]
    async fn tags_index_follows_removals_and_replacements() {
        let m = MemoryStore::new(1 << 20, Clock::new());
        m.insert("a", entry(10, &["t1", "t2"]));
        m.insert("b", entry(10, &["t1"]));
        m.insert("a", entry(10, &["t3"]));
        assert_eq!(m.purge_now(&Purge::Tags(vec!["t2".into()])), 0);
        assert_eq!(m.purge_now(&Purge::Tags(vec!["t1".into()])), 1);
        assert!(m.get_now("a").is_some() && m.get_now("b").is_none());
        assert_eq!(m.purge_now(&Purge::Pattern("a*".into())), 1);
        assert_eq!(m.indexed_tags(), 0);
    }

    #[tokio::test]
    async fn stays_within_budget_and_unindexes_evicted() {
        let budget = 256 * 1024;
        let m = MemoryStore::new(budget, Clock::new());
        for i in 0..2_000 {
            m.insert(&format!("k{i}"), entry(1_000, &["all"]));
            assert!(m.bytes() <= budget, "{} > {budget}", m.bytes());
        }
        assert!(m.evictions() > 0);
        let indexed = m.tags.lock().get("all").map_or(0, |s| s.len());
        assert_eq!(indexed, m.len());
        assert!(!m.insert("huge", entry(budget as usize, &[])));
    }
}
