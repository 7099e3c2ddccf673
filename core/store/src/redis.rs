//! L2: Redis through fred, built for outages and for Redis Cluster.
//!
//! # Key layout
//! Every cache key `K` maps to a bucket `b = xxh3(K) mod 64`, written as a Redis Cluster hash
//! tag so an entry and the tag sets that index it share one hash slot:
//!
//! ```text
//! {prefix}:{bNN}:e:K       the encoded entry (SET … PX retention)
//! {prefix}:{bNN}:t:TAG     set of the bucket's keys carrying TAG (expires with its longest entry)
//! {prefix}:{bNN}:l:K       cross-instance load lock (SET NX PX, random token)
//! {prefix}:purges          stream of every invalidation (one key: one slot in Cluster)
//! ```
//!
//! An entry with tags is written by one Lua script over keys of a single slot, so the
//! entry and its index are atomic even in Cluster. A tag purge reads the 64 bucket sets
//! concurrently and deletes each bucket's members with one script per bucket: cost
//! proportional to the tag, never a scan of all keys. Pattern purges use SCAN in batches of
//! [`SCAN_BATCH`] (on every primary in Cluster), never KEYS.
//!
//! # Outages
//! Every command runs with `fail_fast` and a short timeout, behind a [`Breaker`]. The client
//! has a reconnect policy (without one fred hangs after a restart), and the pub/sub client
//! uses `manage_subscriptions()` so invalidation messages resume after a reconnect.
//!
//! # Missed invalidations
//! Pub/sub drops what a disconnected subscriber would have received, so every invalidation
//! is also appended to the purge stream, in the same script that publishes it. The
//! subscriber PINGs over its own connection as a heartbeat; when one goes unanswered, or the
//! connection is re-made, the instance counts as unsubscribed from its last confirmed
//! contact (the engine then serves L1 entries only within a bounded window), and once
//! subscribed again it reads the stream from the last id it applied before it counts as
//! subscribed.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use fred::prelude::*;
use fred::types::config::{Options, ServerConfig};
use fred::types::scan::Scanner;
use fred::types::{Expiration, SetOptions};
use futures::StreamExt;
use futures::future::join_all;
use serde::Serialize;

use crate::breaker::Breaker;
use crate::clock::Clock;
use crate::coherence::{self, StreamId};
use crate::config::RedisConfig;
use crate::entry::{Entry, Freshness};
use crate::error::StoreError;
use crate::stats::Stats;
use crate::store::{Found, KeyInfo, Layer, Purge, Store, glob_escape, ms};

/// Number of hash-tag buckets. Small enough that a tag purge (one set per bucket) is cheap,
/// large enough to spread keys over a cluster's slots.
pub const BUCKETS: u64 = 64;
/// Keys asked per SCAN call and deleted per batch.
pub const SCAN_BATCH: u32 = 500;
/// Bytes of `:{bNN}:e:` between the prefix and the cache key.
const ENTRY_INFIX_LEN: usize = 9;

const SET_WITH_TAGS: &str = r#"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
local px = tonumber(ARGV[2])
for i = 2, #KEYS do
  redis.call('SADD', KEYS[i], ARGV[3])
  local left = redis.call('PTTL', KEYS[i])
  if left < px then redis.call('PEXPIRE', KEYS[i], px) end
end
return 1
"#;

const PURGE_BUCKET: &str = r#"
local n = 0
for i = 2, #KEYS do n = n + redis.call('UNLINK', KEYS[i]) end
redis.call('SREM', KEYS[1], unpack(ARGV))
return n
"#;

/// Appends an invalidation to the purge stream and publishes it with its stream id, in one
/// step: a subscriber that sees the message knows how far into the stream it has read, and
/// one that misses it finds it in the stream.
const RECORD: &str = r#"
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'p', ARGV[1])
redis.call('PUBLISH', ARGV[3], 'LDRS ' .. id .. ' ' .. ARGV[1])
return id
"#;

/// Stream entries read per XRANGE while catching up.
const CATCH_UP_PAGE: u64 = 500;

const UNLOCK: &str = r#"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"#;

/// How Redis is deployed, from the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisMode {
    /// One server.
    Standalone,
    /// A server found through Sentinel.
    Sentinel,
    /// Redis Cluster.
    Cluster,
}

/// The answer of [`RedisStore::health`].
#[derive(Debug, Clone, Serialize)]
pub struct RedisHealth {
    /// Deployment mode.
    pub mode: RedisMode,
    /// At least one pooled connection is up.
    pub connected: bool,
    /// The breaker is open.
    pub breaker_open: bool,
    /// Round trip of a PING, if it answered.
    pub ping_ms: Option<f64>,
    /// Why the PING failed, if it did.
    pub error: Option<String>,
    /// Subscribed to the invalidation channel and caught up with the purge stream: other
    /// instances' purges reach this L1.
    pub subscribed: bool,
}

/// What the subscriber hands to the engine.
#[derive(Debug)]
pub enum Incoming {
    /// Another instance's invalidation, live or read back from the stream.
    Purge(Purge),
    /// Purges may have been missed and cannot be read back (no baseline yet, the stream
    /// was trimmed past this instance's position, or Redis lost its data): drop all of L1.
    Reset(&'static str),
}

/// How far into the purge stream this instance has applied everything.
#[derive(Default)]
struct StreamPosition {
    last: Option<StreamId>,
    /// Messages advance `last` only while caught up: during a gap, a live message may be
    /// newer than stream entries not read yet.
    caught_up: bool,
}

/// The L2 store. Cloning shares the connections.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: Pool,
    builder: Builder,
    breaker: Breaker,
    clock: Clock,
    stats: Arc<Stats>,
    prefix: String,
    channel: String,
    opts: Options,
    mode: RedisMode,
    stream: String,
    stream_max_len: u64,
    /// 0 while subscribed and caught up; otherwise the unix ms from which this instance may
    /// have missed invalidations. Shared with the engine, which reads it on every L1 hit.
    unsubscribed_since: Arc<AtomicU64>,
    position: parking_lot::Mutex<StreamPosition>,
    heartbeat: Duration,
    heartbeat_timeout: Duration,
    /// When the latest answered heartbeat was sent (unix ms).
    last_contact_ms: AtomicU64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("mode", &self.inner.mode)
            .field("prefix", &self.inner.prefix)
            .finish_non_exhaustive()
    }
}

/// The hash-tag bucket of a cache key (stable across processes and builds).
pub fn bucket_of(key: &str) -> u64 {
    xxhash_rust::xxh3::xxh3_64(key.as_bytes()) % BUCKETS
}

/// `{prefix}:{bNN}:e:{key}`, built by hand: it runs on every L2 read, where `format!` cost
/// more than encoding the GET itself.
fn entry_key(prefix: &str, key: &str) -> String {
    let bucket = bucket_of(key);
    let mut k = String::with_capacity(prefix.len() + key.len() + 10);
    k.push_str(prefix);
    k.push_str(":{b");
    if bucket < 10 {
        k.push('0');
    }
    k.push_str(itoa::Buffer::new().format(bucket));
    k.push_str("}:e:");
    k.push_str(key);
    k
}

impl RedisStore {
    /// Connects (waiting at most `connect_timeout_ms` for the first connection). If Redis is
    /// not reachable yet the store is still returned, with its breaker open and reconnection
    /// running in the background, so Larder starts without its L2.
    pub async fn connect(
        cfg: &RedisConfig,
        clock: Clock,
        stats: Arc<Stats>,
    ) -> Result<RedisStore, StoreError> {
        let url = cfg
            .url
            .as_deref()
            .ok_or_else(|| StoreError::Config("redis.url is required for redis/hybrid".into()))?;
        if cfg.key_prefix.contains(['{', '}']) {
            return Err(StoreError::Config(
                "redis.key_prefix must not contain '{' or '}' (the bucket hash tag must be the first braces)".into(),
            ));
        }
        let config = Config::from_url(url)
            .map_err(|e| StoreError::Config(format!("redis.url {url:?}: {e}")))?;
        let mode = match config.server {
            ServerConfig::Clustered { .. } => RedisMode::Cluster,
            ServerConfig::Sentinel { .. } => RedisMode::Sentinel,
            _ => RedisMode::Standalone,
        };
        let mut builder = Builder::from_config(config);
        let command_timeout = cfg.command_timeout_ms;
        let connect_timeout = cfg.connect_timeout_ms;
        builder
            .with_connection_config(|c| {
                c.connection_timeout = connect_timeout;
                c.internal_command_timeout = command_timeout.max(Duration::from_secs(1));
                c.max_command_attempts = 1;
                c.tcp.nodelay = Some(true);
            })
            .with_performance_config(|p| {
                p.default_command_timeout = command_timeout;
            })
            .set_policy(ReconnectPolicy::new_exponential(
                0,
                cfg.reconnect_min_ms.as_millis().max(1) as u32,
                cfg.reconnect_max_ms.as_millis().max(1) as u32,
                2,
            ));
        // `fail_fast` off for the pool: with it on, a first connection that fails ends
        // fred's connection task for good, and Larder started while Redis was down would
        // never use it. Off, the reconnect policy covers the first connection too, and its
        // success is announced as a reconnect (so `watch_reconnects` closes the breaker).
        let pool = builder
            .clone()
            .with_config(|c| c.fail_fast = false)
            .build_pool(cfg.pool_size.max(1))?;
        let opts = Options {
            fail_fast: true,
            timeout: Some(command_timeout),
            max_attempts: Some(1),
            ..Default::default()
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                pool,
                builder,
                breaker: Breaker::new(
                    clock,
                    cfg.breaker.failure_threshold,
                    cfg.breaker.open_for_ms,
                ),
                clock,
                stats,
                prefix: cfg.key_prefix.clone(),
                channel: cfg.channel.clone(),
                opts,
                mode,
                stream: format!("{}:purges", cfg.key_prefix),
                stream_max_len: cfg.purge_stream_max_len.max(1),
                unsubscribed_since: Arc::new(AtomicU64::new(clock.now_ms().max(1))),
                position: parking_lot::Mutex::default(),
                // Loss of contact must be noticed well inside the L1 window, which counts
                // from the last confirmed contact.
                heartbeat: (cfg.unsubscribed_l1_window_ms / 4)
                    .clamp(Duration::from_millis(50), Duration::from_secs(1)),
                heartbeat_timeout: (cfg.unsubscribed_l1_window_ms / 4)
                    .clamp(Duration::from_millis(250), Duration::from_secs(2)),
                last_contact_ms: AtomicU64::new(clock.now_ms()),
            }),
        };
        // Listening before connecting, so the first connection's notice cannot be missed.
        store.watch_reconnects();
        store.inner.pool.connect_pool();
        // Polled rather than fred's `wait_for_connect`, which waits for the *next* attempt's
        // result and hangs when a connection lands between its state check and its
        // subscription to the notice (seen under load: "not reachable" while connected).
        let deadline = tokio::time::Instant::now() + connect_timeout;
        let connected = loop {
            if store.connected() {
                break true;
            }
            if tokio::time::Instant::now() >= deadline {
                break false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        };
        if !connected {
            tracing::warn!(url = %redact(url), "redis not reachable at start; continuing on L1 and origin");
            store.inner.breaker.open();
        }
        Ok(store)
    }

    /// A reconnect event means Redis may be back: probe at once instead of waiting for the
    /// open period to elapse.
    fn watch_reconnects(&self) {
        for client in self.inner.pool.clients() {
            let weak = Arc::downgrade(&self.inner);
            let mut rx = client.reconnect_rx();
            tokio::spawn(async move {
                while rx.recv().await.is_ok() {
                    let Some(inner) = weak.upgrade() else { break };
                    RedisStore { inner }.probe(true);
                }
            });
        }
    }

    /// Deployment mode from the URL.
    pub fn mode(&self) -> RedisMode {
        self.inner.mode
    }

    /// True while the breaker lets calls through. While it is open, a call here also starts
    /// the background probe once it is due: reads skip Redis without going through
    /// [`Self::guarded`], and a read-only load must bring L2 back too.
    #[inline]
    pub fn available(&self) -> bool {
        let allows = self.inner.breaker.allows();
        if !allows {
            self.probe(false);
        }
        allows
    }

    /// The breaker (for stats).
    pub fn breaker(&self) -> &Breaker {
        &self.inner.breaker
    }

    /// Whether this instance hears other instances' invalidations: its subscriber's latest
    /// heartbeat was answered and it has read what it missed from the purge stream.
    pub fn subscribed(&self) -> bool {
        self.inner.unsubscribed_since.load(Ordering::Relaxed) == 0
    }

    /// The engine's handle on "unsubscribed since" (0 while subscribed).
    pub(crate) fn unsubscribed_since(&self) -> Arc<AtomicU64> {
        self.inner.unsubscribed_since.clone()
    }

    /// Starts a breaker probe now if the breaker is open, so queued purges go out as soon as
    /// Redis answers rather than after the open period.
    pub(crate) fn probe_now(&self) {
        self.probe(true);
    }

    /// At least one pooled connection is up.
    pub fn connected(&self) -> bool {
        self.inner.pool.clients().iter().any(|c| c.is_connected())
    }

    fn client(&self) -> fred::clients::WithOptions<Client> {
        self.inner
            .pool
            .next_connected()
            .with_options(&self.inner.opts)
    }

    /// The Redis key holding `key`'s entry.
    pub fn entry_key(&self, key: &str) -> String {
        entry_key(&self.inner.prefix, key)
    }

    fn tag_key(&self, bucket: u64, tag: &str) -> String {
        format!("{}:{{b{bucket:02}}}:t:{tag}", self.inner.prefix)
    }

    fn lock_key(&self, key: &str) -> String {
        format!("{}:{{b{:02}}}:l:{key}", self.inner.prefix, bucket_of(key))
    }

    /// Runs one Redis operation behind the breaker: refused at once while open, failures
    /// (connection, timeout) counted towards opening it.
    ///
    /// The operation is boxed first. A fred command future is about 5 KB; held inline, it
    /// would sit in this future twice (an async fn keeps its argument and the awaited value
    /// in separate slots) and then in every future above it, so each L2 hit copied over
    /// 10 KB per move. Boxed, it is copied once.
    fn guarded<'a, T: 'a>(
        &'a self,
        op: impl Future<Output = Result<T, fred::error::Error>> + Send + 'a,
    ) -> impl Future<Output = Result<T, StoreError>> + Send + 'a {
        let op = Box::pin(op);
        async move {
            if !self.inner.breaker.allows() {
                self.probe(false);
                return Err(StoreError::Unavailable("circuit breaker open".into()));
            }
            match op.await {
                Ok(v) => {
                    self.inner.breaker.success();
                    Ok(v)
                }
                Err(e) => {
                    self.inner
                        .stats
                        .counters
                        .errors
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if is_outage(&e) {
                        self.inner.breaker.failure();
                    }
                    Err(e.into())
                }
            }
        }
    }

    /// Starts a background PING if the breaker is open and a probe is due (or `force`d).
    /// Requests never wait for it.
    fn probe(&self, force: bool) {
        if !self.inner.breaker.try_start_probe(force) {
            return;
        }
        let store = self.clone();
        tokio::spawn(async move {
            let ok = store.client().ping::<String>(None).await.is_ok();
            store.inner.breaker.probe_done(ok);
        });
    }

    /// Reads and decodes an entry. Corrupt or unknown-version bytes are deleted and reported
    /// as a miss; so are entries past every window (clock skew between instances).
    pub async fn fetch(&self, key: &str) -> Result<Option<Arc<Entry>>, StoreError> {
        let rkey = self.entry_key(key);
        let raw: Option<Bytes> = self.guarded(self.client().get(rkey.as_str())).await?;
        let Some(raw) = raw else { return Ok(None) };
        match Entry::decode(raw) {
            Ok(entry) if entry.freshness(self.inner.clock.now_ms()) != Freshness::Expired => {
                Ok(Some(Arc::new(entry)))
            }
            Ok(_) => Ok(None),
            Err(err) => {
                self.inner
                    .stats
                    .counters
                    .corrupt
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::warn!(key, %err, "deleting undecodable cache entry");
                let _ = self
                    .guarded(self.client().unlink::<i64, _>(rkey.as_str()))
                    .await;
                Ok(None)
            }
        }
    }

    /// Writes an entry and, atomically with it, its tag index.
    pub async fn store(&self, key: &str, entry: &Entry) -> Result<(), StoreError> {
        let retention = entry.retention_from(self.inner.clock.now_ms());
        let px = ms(retention) as i64;
        if px <= 0 {
            return Ok(());
        }
        let value = entry.encode();
        let rkey = self.entry_key(key);
        if entry.tags.is_empty() {
            let _: Option<String> = self
                .guarded(
                    self.client()
                        .set(rkey, value, Some(Expiration::PX(px)), None, false),
                )
                .await?;
            return Ok(());
        }
        let bucket = bucket_of(key);
        let mut keys = Vec::with_capacity(entry.tags.len() + 1);
        keys.push(rkey);
        keys.extend(entry.tags.iter().map(|t| self.tag_key(bucket, t)));
        let args: Vec<Value> = vec![value.into(), px.into(), key.into()];
        let _: i64 = self
            .guarded(self.client().eval(SET_WITH_TAGS, keys, args))
            .await?;
        Ok(())
    }

    /// Deletes the given keys; returns how many existed.
    pub async fn delete_keys(&self, keys: &[String]) -> Result<u64, StoreError> {
        let ops = keys.iter().map(|k| {
            let rkey = self.entry_key(k);
            async move { self.guarded(self.client().unlink::<i64, _>(rkey)).await }
        });
        let mut n = 0;
        for r in join_all(ops).await {
            n += r? as u64;
        }
        Ok(n)
    }

    /// Deletes every entry carrying one of the tags: 64 small set reads, then one script per
    /// non-empty bucket.
    pub async fn purge_tags(&self, tags: &[String]) -> Result<u64, StoreError> {
        let mut total = 0;
        for tag in tags {
            let reads = (0..BUCKETS).map(|b| {
                let tkey = self.tag_key(b, tag);
                async move {
                    let members: Vec<String> =
                        self.guarded(self.client().smembers(tkey.as_str())).await?;
                    Ok::<_, StoreError>((tkey, members))
                }
            });
            let buckets = join_all(reads).await;
            let mut deletes = Vec::new();
            for result in buckets {
                let (tkey, members) = result?;
                for chunk in members.chunks(1_000) {
                    let mut keys = Vec::with_capacity(chunk.len() + 1);
                    keys.push(tkey.clone());
                    keys.extend(chunk.iter().map(|m| self.entry_key(m)));
                    let args: Vec<String> = chunk.to_vec();
                    deletes.push(async move {
                        self.guarded(self.client().eval::<i64, _, _, _>(PURGE_BUCKET, keys, args))
                            .await
                    });
                }
            }
            for r in join_all(deletes).await {
                total += r? as u64;
            }
        }
        Ok(total)
    }

    /// Deletes keys matching a raw Redis glob, SCANning in bounded batches (on every primary
    /// in Cluster).
    async fn scan_delete(&self, raw_pattern: String) -> Result<u64, StoreError> {
        let mut deleted = 0;
        let mut pages = self.scan(raw_pattern);
        while let Some(page) = pages.next().await {
            let mut page = page.map_err(|e| self.note_error(e))?;
            let keys = page.take_results().unwrap_or_default();
            // The purge stream outlives a purge of everything: instances catching up read it.
            let ops = keys
                .into_iter()
                .filter(|k| k.as_str() != Some(self.inner.stream.as_str()))
                .map(|k| async move { self.guarded(self.client().unlink::<i64, _>(k)).await });
            for r in join_all(ops).await {
                deleted += r? as u64;
            }
            page.next();
        }
        Ok(deleted)
    }

    fn note_error(&self, e: fred::error::Error) -> StoreError {
        if is_outage(&e) {
            self.inner.breaker.failure();
        }
        e.into()
    }

    fn scan(
        &self,
        raw_pattern: String,
    ) -> std::pin::Pin<
        Box<
            dyn futures::Stream<Item = Result<fred::types::scan::ScanResult, fred::error::Error>>
                + Send,
        >,
    > {
        let client = self.inner.pool.next_connected();
        if client.is_clustered() {
            Box::pin(client.scan_cluster(raw_pattern, Some(SCAN_BATCH), None))
        } else {
            Box::pin(client.scan(raw_pattern, Some(SCAN_BATCH), None))
        }
    }

    fn entries_pattern(&self, pattern: &str) -> String {
        format!("{}:{{b*}}:e:{pattern}", glob_escape(&self.inner.prefix))
    }

    /// Lists entry keys matching a glob over cache keys, with their remaining lifetime.
    pub async fn list(&self, pattern: &str, limit: usize) -> Result<Vec<KeyInfo>, StoreError> {
        if !self.inner.breaker.allows() {
            return Err(StoreError::Unavailable("circuit breaker open".into()));
        }
        let mut found = Vec::new();
        let mut pages = self.scan(self.entries_pattern(pattern));
        let skip = self.inner.prefix.len() + ENTRY_INFIX_LEN;
        while let Some(page) = pages.next().await {
            let mut page = page.map_err(|e| self.note_error(e))?;
            for key in page.take_results().unwrap_or_default() {
                if found.len() >= limit {
                    break;
                }
                if let Some(k) = key.as_str().filter(|k| k.len() >= skip) {
                    found.push(k.to_string());
                }
            }
            if found.len() >= limit {
                page.cancel();
                break;
            }
            page.next();
        }
        // The stored lifetime (PTTL) covers the stale windows; freshness is in the entry's
        // header, read without the body.
        let now = self.inner.clock.now_ms();
        let times = join_all(found.iter().map(|k| async move {
            let ttl = self.guarded(self.client().pttl::<i64, _>(k.as_str())).await;
            let head = self
                .guarded(
                    self.client()
                        .getrange::<Bytes, _>(k.as_str(), 0, Entry::TIMES_PREFIX - 1),
                )
                .await;
            (ttl, head)
        }))
        .await;
        Ok(found
            .into_iter()
            .zip(times)
            .map(|(k, (ttl, head))| KeyInfo {
                key: k[skip..].to_string(),
                expires_in_ms: ttl.ok().and_then(|t| u64::try_from(t).ok()),
                fresh_for_ms: head
                    .ok()
                    .and_then(|h| Entry::fresh_until_ms(&h))
                    .map(|until| until.saturating_sub(now)),
                layer: Layer::L2,
            })
            .collect())
    }

    /// Takes the cross-instance load lock for `key`; `Ok(Some(token))` when this instance
    /// should load, `Ok(None)` when another instance holds it.
    pub async fn try_lock(&self, key: &str, ttl: Duration) -> Result<Option<String>, StoreError> {
        let token = format!("{:016x}{:016x}", fastrand::u64(..), fastrand::u64(..));
        let set: Option<String> = self
            .guarded(self.client().set(
                self.lock_key(key),
                token.as_str(),
                Some(Expiration::PX(ms(ttl).max(1) as i64)),
                Some(SetOptions::NX),
                false,
            ))
            .await?;
        Ok(set.map(|_| token))
    }

    /// True while some instance holds the load lock for `key`.
    pub async fn lock_held(&self, key: &str) -> Result<bool, StoreError> {
        let n: i64 = self
            .guarded(self.client().exists(self.lock_key(key)))
            .await?;
        Ok(n > 0)
    }

    /// Releases the lock if this instance still holds it (the token check keeps an instance
    /// whose lock expired from releasing someone else's).
    pub async fn unlock(&self, key: &str, token: &str) -> Result<(), StoreError> {
        let _: i64 = self
            .guarded(
                self.client()
                    .eval(UNLOCK, vec![self.lock_key(key)], vec![token]),
            )
            .await?;
        Ok(())
    }

    /// Records an invalidation (already encoded by [`coherence::encode`]) in the purge
    /// stream and publishes it to the other instances, atomically; returns its stream id.
    pub async fn record(&self, payload: Bytes) -> Result<StreamId, StoreError> {
        let args: Vec<Value> = vec![
            payload.into(),
            (self.inner.stream_max_len as i64).into(),
            self.inner.channel.as_str().into(),
        ];
        let id: String = self
            .guarded(
                self.client()
                    .eval(RECORD, vec![self.inner.stream.as_str()], args),
            )
            .await?;
        StreamId::parse(&id)
            .ok_or_else(|| StoreError::Unavailable(format!("XADD answered a bad id {id:?}")))
    }

    /// Subscribes to the invalidation channel and hands the engine every other instance's
    /// invalidation, for as long as the store lives; after any gap (start, outage,
    /// reconnect) it first reads back what was missed from the purge stream.
    pub fn subscribe<F>(&self, instance: u64, on_incoming: F) -> Result<(), StoreError>
    where
        F: Fn(Incoming) + Send + Sync + 'static,
    {
        // `fail_fast` off, as for the pool: with it on, a subscriber whose first connection
        // fails (Redis down at start) stops trying for good, and this instance never hears
        // another's purges although its commands work once Redis is up.
        let subscriber = self
            .inner
            .builder
            .clone()
            .with_config(|c| c.fail_fast = false)
            .build_subscriber_client()?;
        let on_incoming = Arc::new(on_incoming);
        let mut rx = subscriber.message_rx();
        let mut reconnects = subscriber.reconnect_rx();
        subscriber.connect();
        subscriber.manage_subscriptions();
        let weak = Arc::downgrade(&self.inner);
        let sub = subscriber.clone();
        let handler = on_incoming.clone();
        tokio::spawn(async move {
            let mut healthy = false;
            let mut backoff = Duration::ZERO;
            // A SUBSCRIBE sent before the connection was made can go unanswered; short
            // first waits keep the time this instance misses purges short.
            let mut wait = Duration::from_millis(100);
            loop {
                let pause = if healthy {
                    weak.upgrade().map_or(Duration::ZERO, |i| i.heartbeat)
                } else {
                    backoff
                };
                // A reconnect means messages may have been dropped in between, however
                // quickly the client re-subscribed by itself.
                let reconnected = tokio::select! {
                    _ = tokio::time::sleep(pause) => false,
                    r = reconnects.recv() => match r {
                        Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => true,
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
                    },
                };
                let Some(inner) = weak.upgrade() else { return };
                let store = RedisStore { inner };
                if reconnected && healthy {
                    store.lost_contact("the subscriber reconnected");
                }
                // Marked by the message task too (when it lagged).
                healthy &= store.subscribed();
                let sent_ms = store.inner.clock.now_ms();
                let timeout = if healthy {
                    store.inner.heartbeat_timeout
                } else {
                    wait
                };
                // Not `wait_for_connect` first: it waits for the *next* connection result,
                // and misses one that lands between its state check and its subscription to
                // the notice. A SUBSCRIBE queued while disconnected goes out on connect.
                // fred completes a SUBSCRIBE once written (its confirmation arrives out of
                // band), so the PING behind it on the same connection is what proves Redis
                // has processed it, and, later, that the connection still delivers.
                let channel = store.inner.channel.as_str();
                let exchange = async {
                    if !healthy {
                        sub.subscribe(channel).await?;
                    }
                    sub.ping::<Value>(None).await.map(drop)
                };
                let answered = matches!(tokio::time::timeout(timeout, exchange).await, Ok(Ok(())));
                if healthy {
                    if !answered {
                        store.lost_contact("the invalidation channel's heartbeat went unanswered");
                    }
                    healthy = answered && store.contact_confirmed(sent_ms);
                    continue;
                }
                let caught_up = answered
                    && match store.catch_up(instance, &*handler).await {
                        Ok(()) => true,
                        Err(err) => {
                            tracing::debug!(%err, "catching up with the purge stream failed; retrying");
                            false
                        }
                    };
                if caught_up && store.contact_confirmed(sent_ms) {
                    healthy = true;
                    backoff = Duration::ZERO;
                    wait = Duration::from_millis(100);
                    tracing::info!("subscribed to the invalidation channel and caught up");
                } else {
                    backoff =
                        (backoff * 2).clamp(Duration::from_millis(20), Duration::from_secs(1));
                    wait = (wait * 2).min(Duration::from_secs(2));
                }
            }
        });
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                match rx.recv().await {
                    Ok(msg) => {
                        let Some(inner) = weak.upgrade() else { break };
                        let Some(bytes) = msg.value.as_bytes() else {
                            continue;
                        };
                        match coherence::decode_published(bytes) {
                            Some((id, from, target)) => {
                                if let Some(id) = id {
                                    let mut position = inner.position.lock();
                                    if position.caught_up && position.last < Some(id) {
                                        position.last = Some(id);
                                    }
                                }
                                if from != instance {
                                    on_incoming(Incoming::Purge(target));
                                }
                            }
                            None => tracing::warn!("ignoring malformed invalidation message"),
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(
                            missed = n,
                            "invalidation messages dropped (subscriber lagged); catching up from the purge stream"
                        );
                        if let Some(inner) = weak.upgrade() {
                            RedisStore { inner }.lost_contact("the subscriber lagged");
                        }
                    }
                    Err(_) => break,
                }
            }
            let _ = subscriber.quit().await;
        });
        Ok(())
    }

    /// Marks this instance unsubscribed from its last confirmed contact (kept if already
    /// marked), so the engine's L1 window starts there.
    fn lost_contact(&self, why: &str) {
        let inner = &self.inner;
        let mut position = inner.position.lock();
        position.caught_up = false;
        let last_contact = inner.last_contact_ms.load(Ordering::Relaxed).max(1);
        if inner
            .unsubscribed_since
            .compare_exchange(0, last_contact, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            tracing::warn!(
                why,
                "not hearing other instances' purges; L1 entries are served for a bounded window until caught up"
            );
        }
    }

    /// A heartbeat sent at `sent_ms` was answered: every message published before then has
    /// reached this instance. Counts as subscribed only if nothing marked a gap since the
    /// last catch-up; returns whether it does.
    fn contact_confirmed(&self, sent_ms: u64) -> bool {
        let position = self.inner.position.lock();
        if !position.caught_up {
            return false;
        }
        self.inner.last_contact_ms.store(sent_ms, Ordering::Relaxed);
        self.inner.unsubscribed_since.store(0, Ordering::Release);
        true
    }

    /// Reads back the purges missed since the last applied stream id and hands them over
    /// (its own ones skipped); or asks for a reset when they cannot be read back.
    async fn catch_up(
        &self,
        instance: u64,
        on_incoming: &(dyn Fn(Incoming) + Send + Sync),
    ) -> Result<(), StoreError> {
        let stream = self.inner.stream.as_str();
        let last = self.inner.position.lock().last;
        let first: Vec<(String, std::collections::HashMap<String, Bytes>)> = self
            .guarded(self.client().xrange_values(stream, "-", "+", Some(1)))
            .await?;
        let first = first.first().and_then(|(id, _)| StreamId::parse(id));
        let gap = match (last, first) {
            (None, _) => Some("no purge baseline yet (first subscription since start)"),
            (Some(last), None) if last != StreamId::ZERO => {
                Some("the purge stream is gone (Redis lost its data)")
            }
            (Some(_), None) => None,
            (Some(last), Some(_)) if last == StreamId::ZERO => {
                let len: u64 = self.guarded(self.client().xlen(stream)).await?;
                (len >= self.inner.stream_max_len)
                    .then_some("the purge stream was trimmed past this instance's position")
            }
            (Some(last), Some(first)) => (first > last)
                .then_some("the purge stream was trimmed past this instance's position"),
        };
        let mut last = match gap {
            Some(why) => {
                let top: Vec<(String, std::collections::HashMap<String, Bytes>)> = self
                    .guarded(self.client().xrevrange_values(stream, "+", "-", Some(1)))
                    .await?;
                on_incoming(Incoming::Reset(why));
                top.first()
                    .and_then(|(id, _)| StreamId::parse(id))
                    .unwrap_or(StreamId::ZERO)
            }
            None => last.unwrap_or(StreamId::ZERO),
        };
        if gap.is_none() {
            let mut applied = 0usize;
            loop {
                let page: Vec<(String, std::collections::HashMap<String, Bytes>)> = self
                    .guarded(self.client().xrange_values(
                        stream,
                        format!("({last}"),
                        "+",
                        Some(CATCH_UP_PAGE),
                    ))
                    .await?;
                for (id, fields) in &page {
                    let Some(id) = StreamId::parse(id) else {
                        continue;
                    };
                    last = last.max(id);
                    match fields.get("p").and_then(|p| coherence::decode(p)) {
                        Some((from, _)) if from == instance => {}
                        Some((_, target)) => {
                            applied += 1;
                            on_incoming(Incoming::Purge(target));
                        }
                        None => tracing::warn!(%id, "ignoring malformed purge stream entry"),
                    }
                }
                if (page.len() as u64) < CATCH_UP_PAGE {
                    break;
                }
            }
            if applied > 0 {
                tracing::info!(applied, "applied purges missed while not subscribed");
            }
        }
        let mut position = self.inner.position.lock();
        position.last = match gap {
            // Restarted from the stream's end: an older position would mean another reset.
            Some(_) => Some(last),
            None => Some(position.last.map_or(last, |l| l.max(last))),
        };
        position.caught_up = true;
        Ok(())
    }

    /// Mode, connection state and PING latency, for the admin health endpoint.
    pub async fn health(&self) -> RedisHealth {
        let start = Instant::now();
        let ping = self.client().ping::<String>(None).await;
        let (ping_ms, error) = match ping {
            Ok(_) => (Some(start.elapsed().as_secs_f64() * 1_000.0), None),
            Err(e) => (None, Some(e.to_string())),
        };
        RedisHealth {
            mode: self.inner.mode,
            connected: self.connected(),
            breaker_open: self.inner.breaker.is_open(),
            ping_ms,
            error,
            subscribed: self.subscribed(),
        }
    }
}

fn is_outage(e: &fred::error::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::IO
            | ErrorKind::Timeout
            | ErrorKind::Canceled
            | ErrorKind::Backpressure
            | ErrorKind::Cluster
            | ErrorKind::Routing
            | ErrorKind::Unknown
    )
}

/// Hides the password of a Redis URL for logs.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://***@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl Store for RedisStore {
    async fn get(&self, key: &str) -> Result<Option<Found>, StoreError> {
        Ok(self.fetch(key).await?.map(|entry| Found {
            entry,
            layer: Layer::L2,
        }))
    }

    async fn set(&self, key: &str, entry: Arc<Entry>) -> Result<(), StoreError> {
        self.store(key, &entry).await
    }

    async fn delete(&self, key: &str) -> Result<bool, StoreError> {
        Ok(self.delete_keys(&[key.to_string()]).await? > 0)
    }

    async fn purge(&self, target: &Purge) -> Result<u64, StoreError> {
        match target {
            Purge::Keys(keys) => self.delete_keys(keys).await,
            Purge::Tags(tags) => self.purge_tags(tags).await,
            Purge::Pattern(p) => self.scan_delete(self.entries_pattern(p)).await,
            Purge::All => {
                self.scan_delete(format!("{}:*", glob_escape(&self.inner.prefix)))
                    .await
            }
        }
    }

    async fn keys(&self, pattern: &str, limit: usize) -> Result<Vec<KeyInfo>, StoreError> {
        self.list(pattern, limit).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_keys_keep_their_layout() {
        // Two-digit bucket numbers, the bucket as the first braces (the Cluster hash tag).
        let mut buckets = std::collections::BTreeSet::new();
        for key in ["a", "bench:l2:0", "hello:greeting:x", "", "ünï:😀"] {
            assert_eq!(
                entry_key("larder", key),
                format!("larder:{{b{:02}}}:e:{key}", bucket_of(key))
            );
        }
        for i in 0..500 {
            let key = format!("key:{i}");
            buckets.insert(bucket_of(&key));
            assert_eq!(
                entry_key("p", &key),
                format!("p:{{b{:02}}}:e:{key}", bucket_of(&key))
            );
        }
        assert_eq!(
            buckets.len() as u64,
            BUCKETS,
            "one- and two-digit buckets both seen"
        );
    }

    #[test]
    fn buckets_are_stable() {
        // Other instances (and other builds) must agree on a key's bucket.
        assert_eq!(
            bucket_of("booking:slots:1:2024-01-01"),
            bucket_of("booking:slots:1:2024-01-01")
        );
        assert!(
            (0..1000)
                .map(|i| bucket_of(&format!("k{i}")))
                .all(|b| b < BUCKETS)
        );
        assert_eq!(redact("redis://u:secret@h:1/0"), "redis://***@h:1/0");
    }
}
