//! Configuration of the cache engine, as it appears in Larder's config file.
//!
//! Every field has a default so an empty section gives the embedded, memory-only cache.
//! The schema (schemars) is generated from these types, so the doc comments are the
//! reference documentation.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Which layers a cache uses: the engine-wide default, and the per-call choice a policy
/// rule makes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema, Default)]
#[serde(rename_all = "snake_case")]
pub enum StoreKind {
    /// In-process L1 only; nothing leaves the process. The embedded default.
    #[default]
    Memory,
    /// Redis only (shared by all instances, no L1 copy to keep coherent).
    Redis,
    /// L1 over Redis: hits served from memory, misses looked up in Redis, writes to both.
    Hybrid,
}

/// The cache engine's settings.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct CacheConfig {
    /// Default store for calls whose rule does not choose one. `redis`/`hybrid` need `redis.url`;
    /// without it every call falls back to memory.
    pub mode: StoreKind,
    /// L1 budget in bytes (entry bodies, headers and bookkeeping are all counted).
    pub l1_capacity_bytes: u64,
    /// Redis (L2) settings; ignored in memory mode.
    pub redis: RedisConfig,
}

impl Default for CacheConfig {
    fn default() -> Self {
        CacheConfig {
            mode: StoreKind::Memory,
            l1_capacity_bytes: 256 * 1024 * 1024,
            redis: RedisConfig::default(),
        }
    }
}

/// How to reach Redis and how to behave when it misbehaves.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct RedisConfig {
    /// Connection URL. Forms: `redis://[user:pass@]host:port[/db]` (standalone),
    /// `rediss://…` (TLS; needs the `tls` build feature),
    /// `redis-sentinel://host:port/db?sentinelServiceName=NAME&node=host2:port2` (Sentinel),
    /// `redis-cluster://host:port?node=host2:port2&node=host3:port3` (Cluster).
    pub url: Option<String>,
    /// Connections in the pool; commands are spread round-robin over them.
    pub pool_size: usize,
    /// Upper bound for one command. Keep it short: a cache lookup that waits longer than an
    /// origin call is worse than a miss.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub command_timeout_ms: Duration,
    /// How long start-up waits for the first connection before carrying on without Redis
    /// (the breaker then opens and reconnection continues in the background).
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub connect_timeout_ms: Duration,
    /// Reconnect backoff: first delay.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub reconnect_min_ms: Duration,
    /// Reconnect backoff: largest delay (exponential in between, retried forever).
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub reconnect_max_ms: Duration,
    /// Prefix of every key Larder writes, so one Redis can host other data. No `{` or `}`:
    /// the hash tag that follows must be the first braces in the key.
    pub key_prefix: String,
    /// Pub/sub channel carrying invalidations between instances.
    pub channel: String,
    /// While this instance is not subscribed to the invalidation channel (Redis down, or
    /// the subscriber reconnecting and catching up), it cannot hear other instances'
    /// purges, so an L1 entry is served for at most this long after the later of the
    /// disconnect and the entry's creation; past that it counts as a miss. This is the
    /// bound on how stale an answer can be during an outage. Shorter means fresher answers
    /// and more origin calls while Redis is away (L2 is skipped then, so every miss reaches
    /// the origin); the default of 5 s keeps staleness to seconds while letting a hot key
    /// cost its origin one call per key every 5 s.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub unsubscribed_l1_window_ms: Duration,
    /// Entries kept in the purge stream (`{key_prefix}:purges`, trimmed approximately). An
    /// instance that was disconnected reads the purges it missed from there; one that
    /// missed more than this many drops its whole L1 instead.
    pub purge_stream_max_len: u64,
    /// Invalidations queued while Redis is unreachable, replayed in order once it answers.
    /// Past this many the queue collapses into one purge of everything (logged), which is
    /// safe but empties every cache.
    pub purge_outbox_max: usize,
    /// Circuit breaker around every Redis call.
    pub breaker: BreakerConfig,
    /// Cross-instance miss coalescing.
    pub lock: LockConfig,
}

impl Default for RedisConfig {
    fn default() -> Self {
        RedisConfig {
            url: None,
            pool_size: 4,
            command_timeout_ms: Duration::from_millis(250),
            connect_timeout_ms: Duration::from_secs(2),
            reconnect_min_ms: Duration::from_millis(50),
            reconnect_max_ms: Duration::from_secs(2),
            key_prefix: "larder".into(),
            channel: "larder:invalidate".into(),
            unsubscribed_l1_window_ms: Duration::from_secs(5),
            purge_stream_max_len: 10_000,
            purge_outbox_max: 10_000,
            breaker: BreakerConfig::default(),
            lock: LockConfig::default(),
        }
    }
}

/// When to stop talking to Redis and how to find out it is back.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct BreakerConfig {
    /// Consecutive failed Redis calls that open the breaker.
    pub failure_threshold: u32,
    /// How long the breaker stays open before a background probe (PING) is tried. Requests
    /// never wait for the probe.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub open_for_ms: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_threshold: 3,
            open_for_ms: Duration::from_millis(500),
        }
    }
}

/// Cross-instance miss coalescing: one instance loads, the others poll Redis for its result.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LockConfig {
    /// Default for calls that do not choose. On: with Redis shared by several instances a
    /// cold key costs one origin call in all, not one per instance (a miss costs one more
    /// Redis round trip, and the loader writes L2 before unlocking). Off saves those on a
    /// single instance. Without Redis, or while it is unreachable, there is no lock.
    pub enabled: bool,
    /// Lock lifetime and the longest a waiting instance polls before loading itself; never
    /// longer than the call's own origin timeout, when it has one.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub timeout_ms: Duration,
    /// Interval between a waiting instance's polls of Redis.
    #[serde(with = "millis")]
    #[schemars(with = "u64")]
    pub poll_ms: Duration,
}

impl Default for LockConfig {
    fn default() -> Self {
        LockConfig {
            enabled: true,
            timeout_ms: Duration::from_secs(5),
            poll_ms: Duration::from_millis(20),
        }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        Ok(Duration::from_millis(u64::deserialize(d)?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_section_is_memory_default_and_unknown_keys_fail() {
        let c: CacheConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(c.mode, StoreKind::Memory);
        let c: CacheConfig = serde_json::from_str(
            r#"{"mode":"hybrid","redis":{"url":"redis://127.0.0.1:1","command_timeout_ms":100}}"#,
        )
        .unwrap();
        assert_eq!(c.redis.command_timeout_ms, Duration::from_millis(100));
        assert!(serde_json::from_str::<CacheConfig>(r#"{"nope":1}"#).is_err());
        assert!(serde_json::from_str::<CacheConfig>(r#"{"redis":{"nope":1}}"#).is_err());
    }

    #[test]
    fn schema_generates() {
        let schema = schemars::schema_for!(CacheConfig);
        let text = serde_json::to_string(&schema).unwrap();
        assert!(text.contains("l1_capacity_bytes"));
    }
}
