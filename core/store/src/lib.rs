//! # larder-store: Larder's cache engine
//!
//! An in-process L1 (quick_cache, bounded in bytes) over an optional shared L2 (Redis via
//! fred), with request coalescing, stale serving, tag indexes that work on Redis Cluster,
//! cross-instance L1 invalidation and a circuit breaker so a Redis outage costs nothing.
//!
//! # Layout
//! - [`entry`]: the cached response, its versioned binary encoding, freshness math.
//! - [`store`]: the small [`Store`] trait, [`Purge`] targets, key listings, globbing.
//! - [`memory`]: L1 ([`MemoryStore`]), weighted by entry bytes, with a tag index.
//! - [`redis`]: L2 ([`RedisStore`]): key/tag layout, Lua for atomic tag indexing, SCAN
//!   purges, the cross-instance lock, pub/sub.
//! - [`hybrid`]: L1 over L2 behind the same trait.
//! - [`cache`]: the engine ([`Cache`]): `lookup`, `get_or_load`, `invalidate`, stats.
//! - [`breaker`], [`coherence`], [`stats`], [`config`], [`clock`]: the supporting parts.
//!
//! # How a request flows
//! The HTTP layer matches a rule, renders the key, and calls
//! [`Cache::get_or_load`] with the rule's [`CallOptions`] and a loader that runs the
//! handler. A fresh L1 hit returns after a hash lookup, an `Arc` clone and a freshness
//! check. Otherwise L2 is asked (skipped while the breaker is open), then the loader runs
//! once for all concurrent callers of that key. The [`Served`] answer carries the entry and
//! a [`CacheStatus`] for the `Cache-Status` header.

pub mod breaker;
pub mod cache;
pub mod clock;
pub mod coherence;
pub mod config;
pub mod entry;
pub mod error;
pub mod hybrid;
pub mod memory;
mod purge_log;
pub mod redis;
pub mod stats;
pub mod store;

pub use cache::{
    Cache, CacheHealth, CacheStatus, CallOptions, Loaded, Looked, OriginError, Outcome, Served,
};
pub use clock::Clock;
pub use config::{BreakerConfig, CacheConfig, LockConfig, RedisConfig, StoreKind};
pub use entry::{BodyEncoding, DecodeError, Entry, Freshness};
pub use error::StoreError;
pub use hybrid::HybridStore;
pub use memory::MemoryStore;
pub use redis::{RedisHealth, RedisMode, RedisStore};
pub use stats::{RuleStats, StatsSnapshot};
pub use store::{Found, KeyInfo, Layer, Purge, Store};
