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
//! - [`cache`]: the engine ([`Cache`]): `l1_hit`, `look` + `load_after` (=`get_or_load`),
//!   `invalidate`, stats. It drives L1 and L2 itself (hybrid reads and writes).
//! - [`breaker`], [`coherence`], [`stats`], [`config`], [`clock`]: the supporting parts.
//!
//! # How a request flows
//! The HTTP pipeline matches a rule and renders the key, then looks up with the rule's
//! [`CallOptions`]: [`Cache::l1_hit`] answers a fresh L1 copy after a hash lookup, an `Arc`
//! clone and a freshness check; otherwise [`Cache::look`] asks L2 (skipped while the
//! breaker is open), and [`Cache::load_after`] runs the loader (the handler) once for all
//! concurrent callers of that key, going on from what `look` read. The [`Served`] answer carries the entry and
//! a [`CacheStatus`] for the `Cache-Status` header.

pub mod breaker;
pub mod cache;
pub mod clock;
pub mod coherence;
pub mod config;
pub mod entry;
pub mod error;
pub mod memory;
mod outbox;
mod purge_log;
pub mod redis;
pub mod stats;
pub mod store;

pub use cache::{
    Cache, CacheHealth, CacheStatus, CallOptions, Loaded, Looked, OriginError, Outcome, Served,
};
pub use clock::Clock;
pub use config::{BreakerConfig, CacheConfig, LockConfig, RedisConfig, StoreKind};
pub use entry::{BodyEncoding, DecodeError, Entry, Freshness, Variants};
pub use error::StoreError;
pub use memory::MemoryStore;
pub use redis::{Incoming, RedisHealth, RedisMode, RedisStore};
pub use stats::{RuleStats, StatsSnapshot};
pub use store::{Found, KeyInfo, Layer, Purge, Store};
