//! L1 over L2: read L1, then Redis (promoting into L1 with the remaining TTL), writes to
//! both with the Redis write spawned off the caller's path.
//!
//! The engine ([`crate::Cache`]) composes the two layers itself so it can tell stale from
//! fresh per layer; this type is the same composition behind the plain [`Store`] trait,
//! for callers that just want a two-level store.

use std::sync::Arc;

use crate::clock::Clock;
use crate::entry::{Entry, Freshness};
use crate::error::StoreError;
use crate::memory::MemoryStore;
use crate::redis::RedisStore;
use crate::store::{Found, KeyInfo, Layer, Purge, Store};

/// A two-level store. Cloning shares both layers.
#[derive(Debug, Clone)]
pub struct HybridStore {
    l1: MemoryStore,
    l2: RedisStore,
    clock: Clock,
}

impl HybridStore {
    /// Composes an L1 and an L2.
    pub fn new(l1: MemoryStore, l2: RedisStore, clock: Clock) -> Self {
        HybridStore { l1, l2, clock }
    }
}

impl Store for HybridStore {
    async fn get(&self, key: &str) -> Result<Option<Found>, StoreError> {
        let now = self.clock.now_ms();
        if let Some(entry) = self.l1.get_now(key)
            && entry.freshness(now) != Freshness::Expired
        {
            return Ok(Some(Found {
                entry,
                layer: Layer::L1,
            }));
        }
        if !self.l2.available() {
            return Ok(None);
        }
        match self.l2.fetch(key).await {
            Ok(Some(entry)) => {
                // The entry keeps its created_at and ttl, so L1 serves it for exactly the
                // TTL it has left.
                self.l1.insert(key, entry.clone());
                Ok(Some(Found {
                    entry,
                    layer: Layer::L2,
                }))
            }
            Ok(None) | Err(_) => Ok(None),
        }
    }

    async fn set(&self, key: &str, entry: Arc<Entry>) -> Result<(), StoreError> {
        self.l1.insert(key, entry.clone());
        let l2 = self.l2.clone();
        let key = key.to_string();
        tokio::spawn(async move {
            if let Err(err) = l2.store(&key, &entry).await {
                tracing::debug!(key, %err, "L2 write failed");
            }
        });
        Ok(())
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        let local = self.l1.remove(key);
        Ok(self.l2.delete(key).await? || local)
    }

    async fn purge(&self, target: &Purge) -> Result<u64, StoreError> {
        let local = self.l1.purge_now(target);
        Ok(self.l2.purge(target).await?.max(local))
    }

    async fn keys(&self, pattern: &str, limit: usize) -> Result<Vec<KeyInfo>, StoreError> {
        match self.l2.list(pattern, limit).await {
            Ok(keys) => Ok(keys),
            Err(_) => Ok(self.l1.list(pattern, limit)),
        }
    }
}
