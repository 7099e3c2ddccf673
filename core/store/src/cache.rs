//! The cache engine: what the HTTP layer and plugins' `get_or_load` call.
//!
//! A call flows: pick the layers (the rule's store, or the configured mode) → probe L1 →
//! probe L2 (promoting into L1) → on a fresh hit, answer; on a stale-while-revalidate hit,
//! answer with the stale copy and start one background refresh; otherwise join the key's
//! in-flight load or lead one. A load runs in its own task (so a cancelled caller does not
//! cancel the origin call its waiters depend on), optionally behind a cross-instance Redis
//! lock, and its outcome is shared with every waiter through a `watch` channel.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{oneshot, watch};

use crate::clock::Clock;
use crate::coherence;
use crate::config::{CacheConfig, StoreKind};
use crate::entry::{Entry, Freshness};
use crate::error::StoreError;
use crate::memory::MemoryStore;
use crate::outbox::Outbox;
use crate::purge_log::PurgeLog;
use crate::redis::{Incoming, RedisHealth, RedisStore};
use crate::stats::{RedisState, RuleStats, Stats, StatsSnapshot};
use crate::store::{KeyInfo, Layer, Purge, Store};

const FLIGHT_SHARDS: usize = 32;
/// How often queued invalidations are retried while Redis is unreachable.
const REPLAY_EVERY: Duration = Duration::from_millis(100);

fn ms_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Per-call choices, usually derived once per policy rule and reused.
#[derive(Debug, Clone, Default)]
pub struct CallOptions {
    /// Which layers to use; `None` uses the configured mode. Without Redis every choice
    /// falls back to memory.
    pub store: Option<StoreKind>,
    /// The rule's counters (from [`Cache::rule_stats`]); `None` counts engine-wide only.
    pub rule: Option<Arc<RuleStats>>,
    /// Coalesce misses across instances with a Redis lock; `None` uses the config default.
    pub cross_instance_lock: Option<bool>,
    /// Upper bound for the origin call; past it the call counts as an origin error (and
    /// stale-if-error applies).
    pub load_timeout: Option<Duration>,
}

impl CallOptions {
    /// Options that use the given store.
    pub fn store(kind: StoreKind) -> Self {
        CallOptions {
            store: Some(kind),
            ..Default::default()
        }
    }

    /// Attaches a rule's counters.
    pub fn with_rule(mut self, rule: Arc<RuleStats>) -> Self {
        self.rule = Some(rule);
        self
    }

    /// Turns the cross-instance lock on or off for these calls.
    pub fn with_lock(mut self, on: bool) -> Self {
        self.cross_instance_lock = Some(on);
        self
    }

    /// Bounds the origin call.
    pub fn with_load_timeout(mut self, timeout: Duration) -> Self {
        self.load_timeout = Some(timeout);
        self
    }
}

/// What the origin produced, as judged by the caller (who knows the response's headers).
#[derive(Debug)]
pub enum Loaded {
    /// Cacheable: stored, returned, and handed to coalesced waiters.
    Store(Entry),
    /// Returned to this caller only (e.g. it carries `Set-Cookie` or is private); never
    /// stored and never given to waiters, who then run their own load.
    PassThrough(Entry),
    /// The origin failed; a stale copy inside its stale-if-error window is served instead.
    Error(OriginError),
}

/// An origin failure, shared with coalesced waiters (hence cheap to clone).
#[derive(Debug, Clone)]
pub struct OriginError {
    /// What went wrong, for logs and error bodies.
    pub message: Arc<str>,
    /// The origin's own error response, if there was one, to pass through when no stale
    /// copy can stand in.
    pub response: Option<Arc<Entry>>,
    /// True when the engine's `load_timeout` fired.
    pub timed_out: bool,
}

impl OriginError {
    /// An error without a response.
    pub fn new(message: impl Into<Arc<str>>) -> Self {
        OriginError {
            message: message.into(),
            response: None,
            timed_out: false,
        }
    }

    /// An error with the origin's response (e.g. a 503) to pass through.
    pub fn with_response(message: impl Into<Arc<str>>, response: Entry) -> Self {
        OriginError {
            message: message.into(),
            response: Some(Arc::new(response)),
            timed_out: false,
        }
    }

    fn timeout() -> Self {
        OriginError {
            message: "origin timed out".into(),
            response: None,
            timed_out: true,
        }
    }
}

impl std::fmt::Display for OriginError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for OriginError {}

/// How a call was answered, for `Cache-Status` and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// A fresh entry from [`CacheStatus::layer`].
    Hit,
    /// Nothing usable was cached; this call ran the origin.
    Miss,
    /// A stale entry inside its stale-while-revalidate window; one refresh runs in the
    /// background.
    Stale,
    /// The origin failed and a stale entry inside its stale-if-error window stood in.
    StaleIfError,
    /// This call waited for another call's origin load (on this instance, or on another
    /// instance through the Redis lock) and got its result.
    Coalesced,
    /// The origin's response is for this caller only and was not stored.
    PassThrough,
}

/// The `Cache-Status` facts of one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct CacheStatus {
    /// What happened.
    pub outcome: Outcome,
    /// The layer the entry came from, for hits, stale serves and remote coalescing.
    pub layer: Option<Layer>,
    /// Whether this call's origin response was stored.
    pub stored: bool,
    /// Freshness left at answer time (negative when stale), in milliseconds.
    pub ttl_left_ms: i64,
}

impl CacheStatus {
    /// An RFC 9211 `Cache-Status` member for this cache, e.g. `larder; hit; ttl=42; detail=l1`.
    pub fn header_value(&self, cache: &str) -> String {
        // Built by hand: it is on every hit, and `format!` costs several times as much.
        let mut v = String::with_capacity(cache.len() + 48);
        v.push_str(cache);
        let ttl = |v: &mut String| {
            v.push_str("; ttl=");
            v.push_str(itoa::Buffer::new().format(self.ttl_left_ms.div_euclid(1000)));
        };
        let layer = self.layer.map_or("", Layer::as_str);
        match self.outcome {
            Outcome::Hit | Outcome::Stale | Outcome::StaleIfError => {
                v.push_str("; hit");
                ttl(&mut v);
                v.push_str(match self.outcome {
                    Outcome::Hit => "; detail=",
                    Outcome::Stale => "; detail=stale-",
                    _ => "; detail=stale-if-error",
                });
                if self.outcome != Outcome::StaleIfError {
                    v.push_str(layer);
                }
            }
            Outcome::Coalesced => {
                v.push_str("; fwd=uri-miss; collapsed");
                ttl(&mut v);
            }
            Outcome::Miss if self.stored => {
                v.push_str("; fwd=uri-miss; stored");
                ttl(&mut v);
            }
            Outcome::Miss | Outcome::PassThrough => v.push_str("; fwd=uri-miss"),
        }
        v
    }
}

/// A call's answer: the entry to send and how it was obtained.
#[derive(Debug, Clone)]
pub struct Served {
    /// The response to send (shared; never mutate, clone the parts you need).
    pub entry: Arc<Entry>,
    /// How it was obtained.
    pub status: CacheStatus,
}

/// Result of [`Cache::health`].
#[derive(Debug, Clone, Serialize)]
pub struct CacheHealth {
    /// `memory`, `standalone`, `sentinel` or `cluster`.
    pub mode: &'static str,
    /// Redis details when configured.
    pub redis: Option<RedisHealth>,
    /// Invalidations made while Redis was unreachable and not yet replayed to it (nor to
    /// the other instances).
    pub pending_purges: u64,
}

#[derive(Clone)]
enum Shared {
    Entry(Arc<Entry>, Option<Layer>),
    Stale(Arc<Entry>, Option<Layer>),
    Failed(OriginError),
    Private,
}

type FlightRx = watch::Receiver<Option<Shared>>;
/// In-flight loads by key, sharded to keep lock hold times short under many keys.
type FlightShard = Mutex<HashMap<Box<str>, FlightRx>>;

#[derive(Clone)]
enum Probe {
    Fresh(Arc<Entry>, Layer),
    Stale(Arc<Entry>, Layer),
    Fallback(Arc<Entry>, Layer),
    Miss,
}

/// What a [`Cache::look`] that found no fresh copy did find (a stale copy, one usable on
/// error, or nothing), to hand to [`Cache::load_after`]: a caller can look first, answer
/// fresh hits itself, and pass the rest on without reading the layers twice.
#[derive(Clone)]
pub struct Looked {
    probe: Probe,
    now: u64,
}

impl std::fmt::Debug for Looked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let found = match &self.probe {
            Probe::Fresh(..) => "fresh",
            Probe::Stale(..) => "stale",
            Probe::Fallback(..) => "fallback",
            Probe::Miss => "miss",
        };
        f.debug_struct("Looked")
            .field("found", &found)
            .field("now", &self.now)
            .finish()
    }
}

/// The cache engine. Cloning is an `Arc` clone; share one per process.
#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    config: CacheConfig,
    clock: Clock,
    l1: MemoryStore,
    l2: Option<RedisStore>,
    stats: Arc<Stats>,
    rules: Mutex<BTreeMap<String, Arc<RuleStats>>>,
    flights: Box<[FlightShard]>,
    instance_id: u64,
    purges: Arc<PurgeLog>,
    /// 0 while this instance hears other instances' purges; otherwise since when it may
    /// have missed some (set by the subscriber). Read on every L1 hit.
    unsubscribed_since: Arc<AtomicU64>,
    l1_window_ms: u64,
    outbox: Outbox,
    /// One replay at a time, so queued purges go out in order.
    replaying: tokio::sync::Mutex<()>,
    replay_warned_ms: AtomicU64,
}

impl std::fmt::Debug for Cache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("instance", &format_args!("{:016x}", self.inner.instance_id))
            .field("l1", &self.inner.l1)
            .field("l2", &self.inner.l2)
            .finish()
    }
}

thread_local! {
    static SAMPLE: Cell<u32> = const { Cell::new(0) };
}

/// One L1 hit in eight records its latency: the timer costs more than the rest of a hit.
#[inline]
fn sample_l1() -> bool {
    SAMPLE.with(|c| {
        let v = c.get().wrapping_add(1);
        c.set(v);
        v & 7 == 0
    })
}

#[inline]
fn bump(counter: &std::sync::atomic::AtomicU64) {
    counter.fetch_add(1, Ordering::Relaxed);
}

impl Cache {
    /// Builds the engine. With `redis.url` set it connects (see [`RedisStore::connect`]: an
    /// unreachable Redis does not fail start-up) and subscribes to the invalidation channel.
    pub async fn new(config: CacheConfig) -> Result<Cache, StoreError> {
        Cache::with_clock(config, Clock::new()).await
    }

    /// Like [`Cache::new`], with entry times read from `clock` (the server's one clock).
    pub async fn with_clock(config: CacheConfig, clock: Clock) -> Result<Cache, StoreError> {
        let stats = Arc::new(Stats::default());
        let l1 = MemoryStore::new(config.l1_capacity_bytes, clock);
        let l2 = match (&config.redis.url, config.mode) {
            (Some(_), _) => Some(RedisStore::connect(&config.redis, clock, stats.clone()).await?),
            (None, StoreKind::Memory) => None,
            (None, mode) => {
                tracing::warn!(?mode, "no redis.url configured; cache runs memory-only");
                None
            }
        };
        let instance_id = fastrand::u64(1..);
        let unsubscribed_since = l2
            .as_ref()
            .map_or_else(Arc::default, RedisStore::unsubscribed_since);
        let l1_window_ms = ms_u64(config.redis.unsubscribed_l1_window_ms);
        let outbox = Outbox::new(config.redis.purge_outbox_max);
        let cache = Cache {
            inner: Arc::new(Inner {
                config,
                clock,
                l1,
                l2,
                stats,
                rules: Mutex::default(),
                flights: (0..FLIGHT_SHARDS).map(|_| Mutex::default()).collect(),
                instance_id,
                purges: Arc::default(),
                unsubscribed_since,
                l1_window_ms,
                outbox,
                replaying: tokio::sync::Mutex::new(()),
                replay_warned_ms: AtomicU64::new(0),
            }),
        };
        if let Some(l2) = &cache.inner.l2 {
            let l1 = cache.inner.l1.clone();
            let stats = cache.inner.stats.clone();
            let purges = cache.inner.purges.clone();
            l2.subscribe(instance_id, move |incoming| match incoming {
                Incoming::Purge(target) => {
                    purges.record(&target);
                    l1.purge_now(&target);
                    bump(&stats.counters.invalidations_received);
                }
                Incoming::Reset(why) => {
                    // Recorded first, so a load that started before cannot store what it read.
                    purges.record(&Purge::All);
                    let dropped = l1.len();
                    l1.purge_now(&Purge::All);
                    if dropped > 0 {
                        tracing::warn!(
                            dropped,
                            why,
                            "dropping the whole L1: purges may have been missed"
                        );
                    } else {
                        tracing::debug!(why, "purge stream position reset (L1 was empty)");
                    }
                }
            })?;
            cache.spawn_replayer();
            // With Redis up, subscribe before serving: the first subscription drops
            // whatever L1 holds (it has no stream position yet), and would make loads
            // already running count as raced.
            if l2.connected() {
                let deadline =
                    tokio::time::Instant::now() + cache.inner.config.redis.connect_timeout_ms;
                while !l2.subscribed() && tokio::time::Instant::now() < deadline {
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
            }
        }
        Ok(cache)
    }

    /// A memory-only engine with an L1 of `capacity_bytes`, for tests and embedding.
    pub async fn memory(capacity_bytes: u64) -> Cache {
        let config = CacheConfig {
            l1_capacity_bytes: capacity_bytes,
            ..CacheConfig::default()
        };
        Cache::new(config)
            .await
            .expect("memory-only config is valid")
    }

    /// The counters handle of a rule. Call once per rule (at policy load), keep the `Arc`
    /// in the rule's [`CallOptions`]: the hot path then does no map lookup.
    pub fn rule_stats(&self, rule: &str) -> Arc<RuleStats> {
        self.inner
            .rules
            .lock()
            .entry(rule.to_string())
            .or_default()
            .clone()
    }

    /// This instance's id in invalidation messages.
    pub fn instance_id(&self) -> u64 {
        self.inner.instance_id
    }

    /// The L1 store (for inspection and tests).
    pub fn l1(&self) -> &MemoryStore {
        &self.inner.l1
    }

    /// The L2 store, when Redis is configured.
    pub fn l2(&self) -> Option<&RedisStore> {
        self.inner.l2.as_ref()
    }

    /// Current unix time in ms as the engine sees it (follows tokio's clock, so paused-time
    /// tests see expiry); use it for `Age`.
    pub fn now_ms(&self) -> u64 {
        self.inner.clock.now_ms()
    }

    /// The clock entries are timed by.
    pub fn clock(&self) -> Clock {
        self.inner.clock
    }

    #[inline]
    fn layers(&self, opts: &CallOptions) -> (bool, bool) {
        if self.inner.l2.is_none() {
            return (true, false);
        }
        match opts.store.unwrap_or(self.inner.config.mode) {
            StoreKind::Memory => (true, false),
            StoreKind::Redis => (false, true),
            StoreKind::Hybrid => (true, true),
        }
    }

    /// How long the lock is held and waited for: the configured timeout, cut to the call's
    /// origin timeout, so waiting on another instance never takes longer than loading here
    /// would be allowed to.
    fn lock_timeout(&self, opts: &CallOptions) -> Duration {
        let configured = self.inner.config.redis.lock.timeout_ms;
        opts.load_timeout.map_or(configured, |t| t.min(configured))
    }

    fn lock_enabled(&self, opts: &CallOptions) -> bool {
        opts.cross_instance_lock
            .unwrap_or(self.inner.config.redis.lock.enabled)
    }

    /// Whether an L1 entry may be served: always while this instance hears the other
    /// instances' purges (one atomic load), otherwise within the bounded window.
    #[inline]
    fn l1_trusted(&self, entry: &Entry, now: u64) -> bool {
        coherence::l1_servable(
            self.inner.unsubscribed_since.load(Ordering::Acquire),
            entry.created_at_ms,
            now,
            self.inner.l1_window_ms,
        )
    }

    /// Whether to read L2: the breaker lets calls through and none of this instance's own
    /// purges is still waiting to reach Redis (the entries they remove are still there).
    #[inline]
    fn l2_readable(&self, l2: &RedisStore) -> bool {
        self.inner.outbox.len() == 0 && l2.available()
    }

    /// The fresh-L1-hit path alone: no L2, no loader, `None` for anything else (and then
    /// nothing is counted: the caller goes on to [`Cache::look`], which counts).
    /// Lets a caller skip building a loader when the answer is already in memory.
    #[inline]
    pub fn l1_hit(&self, key: &str, opts: &CallOptions) -> Option<Served> {
        if !self.layers(opts).0 {
            return None;
        }
        let inner = &*self.inner;
        let timer = sample_l1().then(Instant::now);
        let now = inner.clock.now_ms();
        let entry = inner.l1.get_now(key)?;
        if entry.freshness(now) != Freshness::Fresh || !self.l1_trusted(&entry, now) {
            return None;
        }
        bump(&inner.stats.counters.hits_l1);
        if let Some(rule) = &opts.rule {
            bump(&rule.hits_l1);
        }
        if let Some(t) = timer {
            inner.stats.l1_latency.record(t.elapsed());
        }
        Some(served(entry, Outcome::Hit, Some(Layer::L1), now))
    }

    /// Looks a key up without loading: a fresh entry (`Hit`) or one inside its
    /// stale-while-revalidate window (`Stale`, no refresh is started). Entries only usable
    /// on error are not returned.
    pub async fn lookup(&self, key: &str, opts: &CallOptions) -> Option<Served> {
        let now = self.inner.clock.now_ms();
        let (use_l1, use_l2) = self.layers(opts);
        match self.probe(key, use_l1, use_l2, opts, now).await {
            Probe::Fresh(entry, layer) => Some(served(entry, Outcome::Hit, Some(layer), now)),
            Probe::Stale(entry, layer) => Some(served(entry, Outcome::Stale, Some(layer), now)),
            Probe::Fallback(..) | Probe::Miss => None,
        }
    }

    /// The cached entry for `key`, or the result of `load` (run at most once per instance
    /// for concurrent callers, and once across instances with the lock). See [`Loaded`] for
    /// how the loader reports what it got, and [`Outcome`] for what the answer says.
    ///
    /// `Err` only when the origin failed and no stale copy could stand in.
    pub async fn get_or_load<F, Fut>(
        &self,
        key: &str,
        opts: &CallOptions,
        load: F,
    ) -> Result<Served, OriginError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        match self.look(key, opts).await {
            Ok(hit) => Ok(hit),
            Err(looked) => self.load_after(looked, key, opts, load).await,
        }
    }

    /// The first half of [`Cache::get_or_load`]: L1, then L2 (promoting into L1). A fresh
    /// copy is answered (and counted as a hit); anything else comes back as [`Looked`] for
    /// [`Cache::load_after`], with the misses already counted.
    pub async fn look(&self, key: &str, opts: &CallOptions) -> Result<Served, Looked> {
        let now = self.inner.clock.now_ms();
        let (use_l1, use_l2) = self.layers(opts);
        match self.probe(key, use_l1, use_l2, opts, now).await {
            Probe::Fresh(entry, layer) => Ok(served(entry, Outcome::Hit, Some(layer), now)),
            probe => Err(Looked { probe, now }),
        }
    }

    /// Whether a [`Cache::look`] with `opts` would ask L2 now (the rule uses it and the
    /// breaker lets calls through).
    #[inline]
    pub fn reads_l2(&self, opts: &CallOptions) -> bool {
        self.layers(opts).1
            && self
                .inner
                .l2
                .as_ref()
                .is_some_and(|l2| self.l2_readable(l2))
    }

    /// The second half of [`Cache::get_or_load`], after a [`Cache::look`] of the same key
    /// and options: serve a stale copy and refresh it in the background, or load (coalesced).
    pub async fn load_after<F, Fut>(
        &self,
        looked: Looked,
        key: &str,
        opts: &CallOptions,
        load: F,
    ) -> Result<Served, OriginError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let now = looked.now;
        match looked.probe {
            Probe::Fresh(entry, layer) => Ok(served(entry, Outcome::Hit, Some(layer), now)),
            Probe::Stale(entry, layer) => {
                bump(&self.inner.stats.counters.stale_served);
                if let Some(rule) = &opts.rule {
                    bump(&rule.stale_served);
                }
                self.refresh_in_background(key, opts, load, entry.clone(), layer);
                Ok(served(entry, Outcome::Stale, Some(layer), now))
            }
            Probe::Fallback(entry, layer) => {
                if let Some(rule) = &opts.rule {
                    bump(&rule.misses);
                }
                self.load_coalesced(key, opts, load, Some((entry, layer)))
                    .await
            }
            Probe::Miss => {
                if let Some(rule) = &opts.rule {
                    bump(&rule.misses);
                }
                self.load_coalesced(key, opts, load, None).await
            }
        }
    }

    async fn probe(
        &self,
        key: &str,
        use_l1: bool,
        use_l2: bool,
        opts: &CallOptions,
        now: u64,
    ) -> Probe {
        let inner = &*self.inner;
        let mut best: Option<(Arc<Entry>, Layer, Freshness)> = None;
        if use_l1 {
            let timer = sample_l1().then(Instant::now);
            if let Some(entry) = inner.l1.get_now(key).filter(|e| self.l1_trusted(e, now)) {
                match entry.freshness(now) {
                    Freshness::Fresh => {
                        bump(&inner.stats.counters.hits_l1);
                        if let Some(rule) = &opts.rule {
                            bump(&rule.hits_l1);
                        }
                        if let Some(t) = timer {
                            inner.stats.l1_latency.record(t.elapsed());
                        }
                        return Probe::Fresh(entry, Layer::L1);
                    }
                    Freshness::Expired => {
                        inner.l1.remove(key);
                    }
                    f => best = Some((entry, Layer::L1, f)),
                }
            }
            bump(&inner.stats.counters.misses_l1);
        }
        if use_l2 && let Some(l2) = &inner.l2 {
            if self.l2_readable(l2) {
                let started = Instant::now();
                let since = inner.purges.now();
                let fetched = l2.fetch(key).await;
                inner.stats.l2_latency.record(started.elapsed());
                if let Ok(Some(entry)) = fetched {
                    let f = entry.freshness(now);
                    let newer = best
                        .as_ref()
                        .is_none_or(|(b, _, _)| entry.created_at_ms > b.created_at_ms);
                    // Read before an invalidation that has since purged it: a miss.
                    let raced = inner.purges.purged_since(since, key, &entry.tags);
                    if f == Freshness::Fresh && !raced {
                        bump(&inner.stats.counters.hits_l2);
                        if let Some(rule) = &opts.rule {
                            bump(&rule.hits_l2);
                        }
                        if use_l1 {
                            self.insert_l1_unless_raced(key, &entry, since);
                        }
                        return Probe::Fresh(entry, Layer::L2);
                    }
                    if newer && f != Freshness::Expired && !raced {
                        if use_l1 {
                            self.insert_l1_unless_raced(key, &entry, since);
                        }
                        best = Some((entry, Layer::L2, f));
                    }
                }
            }
            bump(&inner.stats.counters.misses_l2);
        }
        match best {
            Some((e, layer, Freshness::StaleWhileRevalidate)) => Probe::Stale(e, layer),
            Some((e, layer, _)) => Probe::Fallback(e, layer),
            None => Probe::Miss,
        }
    }

    fn flight_shard(&self, key: &str) -> &FlightShard {
        let h = xxhash_rust::xxh3::xxh3_64(key.as_bytes()) as usize;
        &self.inner.flights[h % FLIGHT_SHARDS]
    }

    async fn load_coalesced<F, Fut>(
        &self,
        key: &str,
        opts: &CallOptions,
        load: F,
        fallback: Option<(Arc<Entry>, Layer)>,
    ) -> Result<Served, OriginError>
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        enum Role {
            Leader(watch::Sender<Option<Shared>>),
            Waiter(FlightRx),
        }
        let role = {
            let mut map = self.flight_shard(key).lock();
            match map.get(key) {
                Some(rx) => Role::Waiter(rx.clone()),
                None => {
                    let (tx, rx) = watch::channel(None);
                    map.insert(key.into(), rx);
                    Role::Leader(tx)
                }
            }
        };
        let mut rx = match role {
            Role::Waiter(rx) => rx,
            Role::Leader(tx) => {
                let (leader_tx, leader_rx) = oneshot::channel();
                self.spawn_flight(key, opts, load, fallback, tx, Some(leader_tx));
                return leader_rx
                    .await
                    .unwrap_or_else(|_| Err(OriginError::new("origin load panicked")));
            }
        };
        bump(&self.inner.stats.counters.coalesced_waits);
        if let Some(rule) = &opts.rule {
            bump(&rule.coalesced_waits);
        }
        let shared = rx
            .wait_for(Option::is_some)
            .await
            .ok()
            .and_then(|v| v.clone());
        let now = self.inner.clock.now_ms();
        match shared {
            Some(Shared::Entry(entry, layer)) => Ok(served(entry, Outcome::Coalesced, layer, now)),
            Some(Shared::Stale(entry, layer)) => {
                bump(&self.inner.stats.counters.stale_if_error_served);
                Ok(served(entry, Outcome::StaleIfError, layer, now))
            }
            Some(Shared::Failed(err)) => Err(err),
            // The leader's response was private (or its task died): load for ourselves.
            Some(Shared::Private) | None => self.run_flight(key, opts, load, fallback).await.0,
        }
    }

    fn refresh_in_background<F, Fut>(
        &self,
        key: &str,
        opts: &CallOptions,
        load: F,
        stale: Arc<Entry>,
        layer: Layer,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let tx = {
            let mut map = self.flight_shard(key).lock();
            if map.contains_key(key) {
                return;
            }
            let (tx, rx) = watch::channel(None);
            map.insert(key.into(), rx);
            tx
        };
        bump(&self.inner.stats.counters.refreshes);
        self.spawn_flight(key, opts, load, Some((stale, layer)), tx, None);
    }

    fn spawn_flight<F, Fut>(
        &self,
        key: &str,
        opts: &CallOptions,
        load: F,
        fallback: Option<(Arc<Entry>, Layer)>,
        tx: watch::Sender<Option<Shared>>,
        leader: Option<oneshot::Sender<Result<Served, OriginError>>>,
    ) where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let cache = self.clone();
        let key: Box<str> = key.into();
        let opts = opts.clone();
        tokio::spawn(async move {
            // Removes the flight even if the loader panics, so the key is not wedged.
            let guard = FlightGuard {
                cache: cache.clone(),
                key: key.clone(),
                rx: tx.subscribe(),
            };
            let (result, shared) = cache.run_flight(&key, &opts, load, fallback).await;
            drop(guard);
            let _ = tx.send(Some(shared));
            if let Some(leader) = leader {
                let _ = leader.send(result);
            }
        });
    }

    /// One origin load with everything around it: the last-moment L1 re-check, the optional
    /// cross-instance lock, the timeout, storing, and stale-if-error.
    async fn run_flight<F, Fut>(
        &self,
        key: &str,
        opts: &CallOptions,
        load: F,
        fallback: Option<(Arc<Entry>, Layer)>,
    ) -> (Result<Served, OriginError>, Shared)
    where
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Loaded> + Send + 'static,
    {
        let inner = &*self.inner;
        let (use_l1, use_l2) = self.layers(opts);
        // A flight that finished between our probe and our start already stored the entry.
        if use_l1
            && let Some(entry) = inner.l1.get_now(key)
            && entry.freshness(inner.clock.now_ms()) == Freshness::Fresh
            && self.l1_trusted(&entry, inner.clock.now_ms())
        {
            let now = inner.clock.now_ms();
            return (
                Ok(served(entry.clone(), Outcome::Hit, Some(Layer::L1), now)),
                Shared::Entry(entry, Some(Layer::L1)),
            );
        }
        let l2 = inner
            .l2
            .as_ref()
            .filter(|l2| use_l2 && self.l2_readable(l2));
        let mut lock_token = None;
        if let Some(l2) = l2
            && self.lock_enabled(opts)
        {
            let timeout = self.lock_timeout(opts);
            match l2.try_lock(key, timeout).await {
                Ok(Some(token)) => lock_token = Some(token),
                Ok(None) => {
                    bump(&inner.stats.counters.lock_waits);
                    if let Some(entry) = self.wait_for_remote(key, l2, use_l1, opts).await {
                        let now = inner.clock.now_ms();
                        return (
                            Ok(served(
                                entry.clone(),
                                Outcome::Coalesced,
                                Some(Layer::L2),
                                now,
                            )),
                            Shared::Entry(entry, Some(Layer::L2)),
                        );
                    }
                }
                Err(_) => {}
            }
        }

        bump(&inner.stats.counters.origin_calls);
        if let Some(rule) = &opts.rule {
            bump(&rule.origin_calls);
        }
        let since = inner.purges.now();
        let started = Instant::now();
        let loaded = match opts.load_timeout {
            Some(t) => tokio::time::timeout(t, load())
                .await
                .unwrap_or_else(|_| Loaded::Error(OriginError::timeout())),
            None => load().await,
        };
        inner.stats.origin_latency.record(started.elapsed());
        let now = inner.clock.now_ms();

        let outcome = match loaded {
            Loaded::Store(entry) if inner.purges.purged_since(since, key, &entry.tags) => {
                // Invalidated while loading: this caller may have what it asked for, but
                // nobody else may be served it, from the cache or by coalescing.
                bump(&inner.stats.counters.raced_invalidations);
                let result = served(Arc::new(self.stamp(entry, now)), Outcome::Miss, None, now);
                (Ok(result), Shared::Private)
            }
            Loaded::Store(entry) => {
                let entry = Arc::new(self.stamp(entry, now));
                bump(&inner.stats.counters.sets);
                let mut stored = use_l1 && self.insert_l1_unless_raced(key, &entry, since);
                if let Some(l2) = l2 {
                    stored = true;
                    if lock_token.is_some() {
                        // Other instances are polling L2 for this entry: write before unlocking.
                        let _ = l2.store(key, &entry).await;
                        self.undo_l2_if_raced(l2, key, &entry, since).await;
                    } else {
                        let cache = self.clone();
                        let l2 = l2.clone();
                        let key = key.to_string();
                        let entry = entry.clone();
                        tokio::spawn(async move {
                            if let Err(err) = l2.store(&key, &entry).await {
                                tracing::debug!(key, %err, "L2 write failed");
                            }
                            cache.undo_l2_if_raced(&l2, &key, &entry, since).await;
                        });
                    }
                }
                let mut result = served(entry.clone(), Outcome::Miss, None, now);
                result.status.stored = stored;
                (Ok(result), Shared::Entry(entry, None))
            }
            Loaded::PassThrough(entry) => {
                bump(&inner.stats.counters.pass_through);
                let result = served(Arc::new(entry), Outcome::PassThrough, None, now);
                (Ok(result), Shared::Private)
            }
            Loaded::Error(err) => {
                bump(&inner.stats.counters.origin_errors);
                if let Some(rule) = &opts.rule {
                    bump(&rule.origin_errors);
                }
                match fallback {
                    Some((entry, layer)) if entry.usable_on_error(now) => {
                        bump(&inner.stats.counters.stale_if_error_served);
                        if let Some(rule) = &opts.rule {
                            bump(&rule.stale_served);
                        }
                        (
                            Ok(served(
                                entry.clone(),
                                Outcome::StaleIfError,
                                Some(layer),
                                now,
                            )),
                            Shared::Stale(entry, Some(layer)),
                        )
                    }
                    _ => (Err(err.clone()), Shared::Failed(err)),
                }
            }
        };
        if let (Some(l2), Some(token)) = (l2, lock_token) {
            let _ = l2.unlock(key, &token).await;
        }
        outcome
    }

    /// Inserts into L1 unless an invalidation matching the entry was recorded since `since`;
    /// checks again after inserting, so a purge that ran between the check and the insert
    /// cannot leave the entry behind.
    fn insert_l1_unless_raced(&self, key: &str, entry: &Arc<Entry>, since: u64) -> bool {
        let purges = &self.inner.purges;
        if purges.purged_since(since, key, &entry.tags) {
            return false;
        }
        let inserted = self.inner.l1.insert(key, entry.clone());
        if inserted && purges.purged_since(since, key, &entry.tags) {
            self.inner.l1.remove_if_same(key, entry);
            return false;
        }
        inserted
    }

    /// The L2 write lands after the response; if an invalidation matching the entry was
    /// recorded meanwhile, the write may have undone its purge: delete again.
    async fn undo_l2_if_raced(&self, l2: &RedisStore, key: &str, entry: &Arc<Entry>, since: u64) {
        if self.inner.purges.purged_since(since, key, &entry.tags) {
            bump(&self.inner.stats.counters.raced_invalidations);
            let _ = Store::delete(l2, key).await;
            self.inner.l1.remove_if_same(key, entry);
        }
    }

    /// Another instance holds the load lock: poll L2 until its entry appears, the lock goes
    /// away without one (its response was not cacheable), or the lock timeout passes.
    async fn wait_for_remote(
        &self,
        key: &str,
        l2: &RedisStore,
        use_l1: bool,
        opts: &CallOptions,
    ) -> Option<Arc<Entry>> {
        let lock = &self.inner.config.redis.lock;
        let deadline = tokio::time::Instant::now() + self.lock_timeout(opts);
        loop {
            tokio::time::sleep(lock.poll_ms).await;
            if tokio::time::Instant::now() >= deadline || !l2.available() {
                return None;
            }
            match l2.fetch(key).await {
                Ok(Some(entry))
                    if entry.freshness(self.inner.clock.now_ms()) == Freshness::Fresh =>
                {
                    bump(&self.inner.stats.counters.hits_l2);
                    if let Some(rule) = &opts.rule {
                        bump(&rule.hits_l2);
                    }
                    if use_l1 {
                        self.inner.l1.insert(key, entry.clone());
                    }
                    return Some(entry);
                }
                Ok(_) => {}
                Err(_) => return None,
            }
            match l2.lock_held(key).await {
                Ok(true) => {}
                Ok(false) | Err(_) => return l2.fetch(key).await.ok().flatten(),
            }
        }
    }

    /// Stamps the creation time. The TTL is the caller's (the policy's, jitter included:
    /// `ttl.jitter` spreads expiry deterministically per key), never changed here.
    fn stamp(&self, mut entry: Entry, now: u64) -> Entry {
        entry.created_at_ms = now;
        entry
    }

    /// Stores an entry directly (warming, programmatic writes): stamped, written
    /// to the chosen layers (L2 awaited here, since no response is waiting on it).
    pub async fn set(
        &self,
        key: &str,
        entry: Entry,
        opts: &CallOptions,
    ) -> Result<Arc<Entry>, StoreError> {
        let (use_l1, use_l2) = self.layers(opts);
        let entry = Arc::new(self.stamp(entry, self.inner.clock.now_ms()));
        bump(&self.inner.stats.counters.sets);
        if use_l1 {
            self.inner.l1.insert(key, entry.clone());
        }
        if use_l2 && let Some(l2) = &self.inner.l2 {
            l2.store(key, &entry).await?;
        }
        Ok(entry)
    }

    /// Invalidates keys, tags, a pattern or everything, in both layers, and tells the other
    /// instances to drop their L1 copies. Redis is purged before L1 and before the message
    /// goes out, so nobody re-reads the old entry from L2 after dropping it. Returns the
    /// number of entries removed (the larger of the two layers' counts).
    ///
    /// L1 is purged even when Redis is down, and the Redis part is then queued and replayed
    /// in order once Redis answers (see [`CacheHealth::pending_purges`]); the error is still
    /// returned so an admin knows L2 and the other instances have not been reached yet.
    pub async fn invalidate(&self, target: Purge) -> Result<u64, StoreError> {
        let inner = &*self.inner;
        inner.purges.record(&target);
        let Some(l2) = &inner.l2 else {
            let removed = inner.l1.purge_now(&target);
            inner
                .stats
                .counters
                .deletes
                .fetch_add(removed, Ordering::Relaxed);
            return Ok(removed);
        };
        let (removed, result) = if inner.outbox.len() > 0 {
            // Behind the queued ones, to keep their order.
            let local = inner.l1.purge_now(&target);
            inner.outbox.push(target);
            self.replay().await;
            let result = match inner.outbox.len() {
                0 => Ok(local),
                n => Err(StoreError::Unavailable(format!(
                    "Redis unreachable; this purge is queued with {} others, replayed when Redis is back",
                    n - 1
                ))),
            };
            (local, result)
        } else {
            let remote = self.purge_remote(l2, &target).await;
            let local = inner.l1.purge_now(&target);
            match remote {
                Ok(n) => (local.max(n), Ok(local.max(n))),
                Err(err) => {
                    inner.outbox.push(target);
                    // The error is returned (and logged) now; the replayer's reminder can wait.
                    inner
                        .replay_warned_ms
                        .store(inner.clock.now_ms(), Ordering::Relaxed);
                    let err = StoreError::Unavailable(format!(
                        "{err}; the purge is queued and replayed when Redis is back"
                    ));
                    (local, Err(err))
                }
            }
        };
        inner
            .stats
            .counters
            .deletes
            .fetch_add(removed, Ordering::Relaxed);
        result
    }

    /// The Redis part of an invalidation: delete from L2, then record it in the purge
    /// stream and publish it, so other instances and Redis itself lose the old entries.
    async fn purge_remote(&self, l2: &RedisStore, target: &Purge) -> Result<u64, StoreError> {
        let removed = Store::purge(l2, target).await?;
        l2.record(coherence::encode(self.inner.instance_id, target))
            .await?;
        bump(&self.inner.stats.counters.invalidations_published);
        Ok(removed)
    }

    /// Sends queued invalidations to Redis, oldest first, stopping at the first failure.
    async fn replay(&self) {
        let Some(l2) = &self.inner.l2 else { return };
        let _one_at_a_time = self.inner.replaying.lock().await;
        let outbox = &self.inner.outbox;
        let mut replayed = 0u64;
        while let Some((seq, target)) = outbox.front() {
            match self.purge_remote(l2, &target).await {
                Ok(_) => {
                    outbox.done(seq);
                    replayed += 1;
                }
                Err(err) => {
                    // Retried every tick, so logged quietly; but a queue that does not drain
                    // (a long outage, or an error Redis keeps answering, such as a refused
                    // script) also keeps this instance off L2: say so every 30 s.
                    let now = self.inner.clock.now_ms();
                    let warned = self.inner.replay_warned_ms.load(Ordering::Relaxed);
                    if now.saturating_sub(warned) >= 30_000 {
                        self.inner.replay_warned_ms.store(now, Ordering::Relaxed);
                        tracing::warn!(%err, pending = outbox.len(), "purges queued while Redis was unreachable are still not replayed; retrying");
                    } else {
                        tracing::debug!(%err, pending = outbox.len(), "replaying queued purges failed; will retry");
                    }
                    break;
                }
            }
        }
        if replayed > 0 {
            tracing::info!(
                replayed,
                pending = outbox.len(),
                "replayed purges queued while Redis was unreachable"
            );
        }
    }

    /// Retries queued invalidations every [`REPLAY_EVERY`] while there are any, forcing the
    /// breaker's probe so they go out as soon as Redis answers: until then other instances
    /// may still read the old entries from L2.
    fn spawn_replayer(&self) {
        let weak = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(REPLAY_EVERY).await;
                let Some(inner) = weak.upgrade() else { return };
                if inner.outbox.len() == 0 {
                    continue;
                }
                let cache = Cache { inner };
                let l2 = cache.inner.l2.as_ref().expect("replayer runs with L2");
                if l2.available() {
                    cache.replay().await;
                } else {
                    l2.probe_now();
                }
            }
        });
    }

    /// Lists keys matching a glob with their remaining lifetime: from Redis when configured
    /// (the shared view), otherwise from L1.
    pub async fn keys(&self, pattern: &str, limit: usize) -> Result<Vec<KeyInfo>, StoreError> {
        match &self.inner.l2 {
            Some(l2) => l2.list(pattern, limit).await,
            None => Ok(self.inner.l1.list(pattern, limit)),
        }
    }

    /// Mode and Redis reachability for the admin health endpoint.
    pub async fn health(&self) -> CacheHealth {
        match &self.inner.l2 {
            None => CacheHealth {
                mode: "memory",
                redis: None,
                pending_purges: 0,
            },
            Some(l2) => {
                let health = l2.health().await;
                CacheHealth {
                    mode: match health.mode {
                        crate::redis::RedisMode::Standalone => "standalone",
                        crate::redis::RedisMode::Sentinel => "sentinel",
                        crate::redis::RedisMode::Cluster => "cluster",
                    },
                    redis: Some(health),
                    pending_purges: self.inner.outbox.len() as u64,
                }
            }
        }
    }

    /// Everything for the stats endpoint, serialisable.
    pub fn snapshot(&self) -> StatsSnapshot {
        let inner = &*self.inner;
        let mut counters = inner.stats.counters.snapshot();
        counters.evictions = inner.l1.evictions();
        let hits = counters.hits_l1 + counters.hits_l2;
        let served = hits + counters.stale_served + counters.origin_calls;
        StatsSnapshot {
            hit_rate: if served == 0 {
                0.0
            } else {
                hits as f64 / served as f64
            },
            origin_calls_saved: hits
                + counters.stale_served
                + counters.coalesced_waits
                + counters.lock_waits,
            counters,
            l1_bytes: inner.l1.bytes(),
            l1_capacity_bytes: inner.l1.capacity(),
            l1_entries: inner.l1.len() as u64,
            redis: inner.l2.as_ref().map(|l2| RedisState {
                connected: l2.connected(),
                breaker_open: l2.breaker().is_open(),
                breaker_opened_total: l2.breaker().opened_total(),
                subscribed: l2.subscribed(),
                pending_purges: inner.outbox.len() as u64,
            }),
            l1_latency: inner.stats.l1_latency.snapshot(),
            l2_latency: inner.stats.l2_latency.snapshot(),
            origin_latency: inner.stats.origin_latency.snapshot(),
            rules: inner
                .rules
                .lock()
                .iter()
                .map(|(name, r)| (name.clone(), r.snapshot()))
                .collect(),
        }
    }
}

fn served(entry: Arc<Entry>, outcome: Outcome, layer: Option<Layer>, now: u64) -> Served {
    let ttl_left_ms = entry.ttl_left_ms(now);
    Served {
        entry,
        status: CacheStatus {
            outcome,
            layer,
            stored: false,
            ttl_left_ms,
        },
    }
}

struct FlightGuard {
    cache: Cache,
    key: Box<str>,
    rx: FlightRx,
}

impl Drop for FlightGuard {
    fn drop(&mut self) {
        let mut map = self.cache.flight_shard(&self.key).lock();
        if map
            .get(&self.key)
            .is_some_and(|rx| rx.same_channel(&self.rx))
        {
            map.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RedisConfig;

    /// An instance whose Redis never answers never subscribes: its L1 entries are served
    /// for the window after the later of its start and their creation, then count as misses.
    #[tokio::test(start_paused = true)]
    async fn unsubscribed_l1_entries_are_served_only_within_the_window() {
        let config = CacheConfig {
            mode: StoreKind::Hybrid,
            redis: RedisConfig {
                url: Some("redis://127.0.0.1:1".into()),
                connect_timeout_ms: Duration::from_millis(10),
                unsubscribed_l1_window_ms: Duration::from_secs(5),
                ..RedisConfig::default()
            },
            ..CacheConfig::default()
        };
        let cache = Cache::new(config).await.unwrap();
        assert!(!cache.l2().unwrap().subscribed());
        let opts = CallOptions::store(StoreKind::Memory);
        let entry = || Entry::new(200, "v").with_ttl(Duration::from_secs(60));
        cache.set("old", entry(), &opts).await.unwrap();
        assert!(cache.l1_hit("old", &opts).is_some());
        tokio::time::advance(Duration::from_millis(4_900)).await;
        assert!(cache.l1_hit("old", &opts).is_some(), "inside the window");
        cache.set("new", entry(), &opts).await.unwrap();
        tokio::time::advance(Duration::from_millis(200)).await;
        assert!(cache.l1_hit("old", &opts).is_none(), "past the window");
        assert!(
            cache.lookup("old", &opts).await.is_none(),
            "a miss for lookups too"
        );
        assert!(cache.l1().get_now("old").is_some(), "kept, not served");
        assert!(
            cache.l1_hit("new", &opts).is_some(),
            "an entry created during the outage has its own window"
        );
        tokio::time::advance(Duration::from_secs(5)).await;
        assert!(cache.l1_hit("new", &opts).is_none());
    }

    #[test]
    fn cache_status_values() {
        let status = |outcome, layer, stored| CacheStatus {
            outcome,
            layer,
            stored,
            ttl_left_ms: 41_500,
        };
        let v = |s: CacheStatus| s.header_value("larder");
        assert_eq!(
            v(status(Outcome::Hit, Some(Layer::L1), false)),
            "larder; hit; ttl=41; detail=l1"
        );
        assert_eq!(
            v(status(Outcome::Stale, Some(Layer::L2), false)),
            "larder; hit; ttl=41; detail=stale-l2"
        );
        assert_eq!(
            v(status(Outcome::StaleIfError, Some(Layer::L1), false)),
            "larder; hit; ttl=41; detail=stale-if-error"
        );
        assert_eq!(
            v(status(Outcome::Coalesced, None, false)),
            "larder; fwd=uri-miss; collapsed; ttl=41"
        );
        assert_eq!(
            v(status(Outcome::Miss, None, true)),
            "larder; fwd=uri-miss; stored; ttl=41"
        );
        assert_eq!(
            v(status(Outcome::Miss, None, false)),
            "larder; fwd=uri-miss"
        );
        let mut stale = status(Outcome::Stale, Some(Layer::L1), false);
        stale.ttl_left_ms = -1_500;
        assert_eq!(v(stale), "larder; hit; ttl=-2; detail=stale-l1");
    }
}
