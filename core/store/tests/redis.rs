//! Engine behaviour against real redis-server processes spawned by the testkit.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use larder_store::{
    Cache, CacheConfig, CallOptions, Entry, Layer, Loaded, Outcome, Purge, RedisConfig, StoreKind,
};
use larder_testkit::redis::{RedisCluster, RedisServer, raw_command};

fn config(url: &str) -> CacheConfig {
    CacheConfig {
        mode: StoreKind::Hybrid,
        redis: RedisConfig {
            url: Some(url.to_string()),
            command_timeout_ms: Duration::from_millis(100),
            ..RedisConfig::default()
        },
        ..CacheConfig::default()
    }
}

fn entry(body: &str, tags: &[&str]) -> Entry {
    Entry::new(200, body.to_string())
        .with_ttl(Duration::from_secs(60))
        .with_tags(tags.iter().copied())
        .with_header("content-type", "text/plain")
}

/// Polls `check` until it holds or `within` passes; returns how long it took.
async fn eventually<F, Fut>(within: Duration, what: &str, mut check: F) -> Duration
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    loop {
        if check().await {
            return start.elapsed();
        }
        assert!(start.elapsed() < within, "timed out waiting for: {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn in_l2(cache: &Cache, key: &str) -> bool {
    matches!(cache.l2().unwrap().fetch(key).await, Ok(Some(_)))
}

/// Waits until the instance hears the others' purges (subscribed and caught up).
async fn subscribed(cache: &Cache) {
    eventually(Duration::from_secs(10), "subscribed", || async {
        cache.snapshot().redis.is_some_and(|r| r.subscribed)
    })
    .await;
}

fn pending_purges(cache: &Cache) -> u64 {
    cache.snapshot().redis.map_or(0, |r| r.pending_purges)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_instance_is_served_from_l2() {
    let redis = RedisServer::spawn().unwrap();
    let opts = CallOptions::default();
    let a = Cache::new(config(&redis.url())).await.unwrap();
    let first = a
        .get_or_load("product:1", &opts, || async {
            Loaded::Store(entry("p1", &[]))
        })
        .await
        .unwrap();
    assert_eq!(first.status.outcome, Outcome::Miss);
    eventually(Duration::from_secs(5), "L2 write", || {
        in_l2(&a, "product:1")
    })
    .await;

    // A restarted Larder: new engine, empty L1, same Redis.
    let b = Cache::new(config(&redis.url())).await.unwrap();
    let served = b
        .get_or_load("product:1", &opts, || async {
            panic!("must be served from L2")
        })
        .await
        .unwrap();
    assert_eq!(served.status.outcome, Outcome::Hit);
    assert_eq!(served.status.layer, Some(Layer::L2));
    assert_eq!(&served.entry.body[..], b"p1");
    assert!(served.status.ttl_left_ms > 50_000);
    assert!(
        served
            .status
            .header_value("larder")
            .starts_with("larder; hit; ttl=")
    );
    // Promoted: the next hit is local.
    let again = b.lookup("product:1", &opts).await.unwrap();
    assert_eq!(again.status.layer, Some(Layer::L1));
    let snap = b.snapshot();
    assert_eq!((snap.counters.hits_l1, snap.counters.hits_l2), (1, 1));
    assert_eq!(b.health().await.mode, "standalone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_and_unknown_version_entries_are_misses_and_deleted() {
    let redis = RedisServer::spawn().unwrap();
    let cache = Cache::new(config(&redis.url())).await.unwrap();
    let l2 = cache.l2().unwrap();

    let garbage_key = l2.entry_key("garbage");
    redis
        .set_bytes(&garbage_key, b"\x00\x01 not an entry")
        .unwrap();
    let mut future_version = entry("v", &[]).encode().to_vec();
    future_version[4] = 200;
    let future_key = l2.entry_key("future");
    redis.set_bytes(&future_key, &future_version).unwrap();

    for (key, raw_key) in [("garbage", &garbage_key), ("future", &future_key)] {
        let loads = Arc::new(AtomicUsize::new(0));
        let l = loads.clone();
        let served = cache
            .get_or_load(
                key,
                &CallOptions::store(StoreKind::Redis),
                move || async move {
                    l.fetch_add(1, Ordering::SeqCst);
                    Loaded::PassThrough(entry("fresh", &[]))
                },
            )
            .await
            .unwrap();
        assert_eq!(served.status.outcome, Outcome::PassThrough);
        assert_eq!(loads.load(Ordering::SeqCst), 1);
        let exists = redis.command(&format!("EXISTS {raw_key}")).unwrap();
        assert_eq!(exists.trim(), ":0", "{key} should have been deleted");
    }
    assert_eq!(cache.snapshot().counters.corrupt, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cross_instance_lock_makes_one_origin_call_in_total() {
    let redis = RedisServer::spawn().unwrap();
    let cfg = config(&redis.url());
    assert!(
        cfg.redis.lock.enabled,
        "single-flight across instances is the default"
    );
    let a = Cache::new(cfg.clone()).await.unwrap();
    let b = Cache::new(cfg).await.unwrap();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..1_000 {
        let cache = if i % 2 == 0 { a.clone() } else { b.clone() };
        let calls = calls.clone();
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("expensive", &CallOptions::default(), move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Loaded::Store(entry("computed", &[]))
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        assert_eq!(&t.await.unwrap().entry.body[..], b"computed");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let waits = a.snapshot().counters.lock_waits + b.snapshot().counters.lock_waits;
    assert_eq!(waits, 1, "exactly one instance waited on the other's lock");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn waiting_on_another_instances_lock_never_outlasts_the_origin_timeout() {
    let redis = RedisServer::spawn().unwrap();
    let cfg = config(&redis.url());
    assert_eq!(cfg.redis.lock.timeout_ms, Duration::from_secs(5));
    let a = Cache::new(cfg.clone()).await.unwrap();
    let b = Cache::new(cfg).await.unwrap();
    // A takes the lock and its origin never answers (no timeout on its call): as if A had
    // stalled or died holding the lock for its configured 5 s.
    let (hung_tx, hung_rx) = tokio::sync::oneshot::channel::<()>();
    let hung = {
        let a = a.clone();
        tokio::spawn(async move {
            a.get_or_load("hangs", &CallOptions::default(), move || async move {
                let _ = hung_tx.send(());
                std::future::pending::<Loaded>().await
            })
            .await
        })
    };
    hung_rx.await.unwrap();
    // B's call has a 300 ms origin timeout: it waits on A's lock no longer than that, then
    // loads itself, rather than for the lock's 5 s.
    let opts = CallOptions::default().with_load_timeout(Duration::from_millis(300));
    let started = std::time::Instant::now();
    let served = b
        .get_or_load("hangs", &opts, || async { Loaded::Store(entry("b", &[])) })
        .await
        .unwrap();
    assert_eq!(&served.entry.body[..], b"b");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "B waited {:?}",
        started.elapsed()
    );
    assert_eq!(b.snapshot().counters.lock_waits, 1);
    hung.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tag_invalidation_reaches_other_instances_l1() {
    let redis = RedisServer::spawn().unwrap();
    let opts = CallOptions::default();
    let a = Cache::new(config(&redis.url())).await.unwrap();
    let b = Cache::new(config(&redis.url())).await.unwrap();
    // B's first subscription drops whatever its L1 holds (it had no baseline): let it
    // come up first.
    subscribed(&b).await;
    a.set("slots:7:mon", entry("free", &["slots:7"]), &opts)
        .await
        .unwrap();
    a.set("slots:8:mon", entry("free", &["slots:8"]), &opts)
        .await
        .unwrap();
    for key in ["slots:7:mon", "slots:8:mon"] {
        let served = b.lookup(key, &opts).await.unwrap();
        assert_eq!(served.status.layer, Some(Layer::L2));
        assert!(b.l1().get_now(key).is_some());
    }
    assert!(
        redis
            .command("PUBSUB NUMSUB larder:invalidate")
            .unwrap()
            .contains(":2")
    );

    let removed = a
        .invalidate(Purge::Tags(vec!["slots:7".into()]))
        .await
        .unwrap();
    assert_eq!(removed, 1);
    let delay = eventually(Duration::from_secs(5), "B dropped its L1 copy", || async {
        b.l1().get_now("slots:7:mon").is_none()
    })
    .await;
    println!("cross-instance L1 invalidation delay: {delay:?}");
    assert!(
        b.lookup("slots:7:mon", &opts).await.is_none(),
        "gone from L2 too"
    );
    assert!(
        b.l1().get_now("slots:8:mon").is_some(),
        "other tags untouched"
    );
    assert_eq!(b.snapshot().counters.invalidations_received, 1);

    // Keys and patterns travel the same way.
    a.invalidate(Purge::Pattern("slots:8:*".into()))
        .await
        .unwrap();
    eventually(Duration::from_secs(5), "pattern purge on B", || async {
        b.l1().get_now("slots:8:mon").is_none()
    })
    .await;
    // A's own messages are ignored by A.
    assert_eq!(a.snapshot().counters.invalidations_received, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_purge_keys_listing_and_purge_all() {
    let redis = RedisServer::spawn().unwrap();
    let cache = Cache::new(config(&redis.url())).await.unwrap();
    let opts = CallOptions::default();
    for i in 0..1_200 {
        let prefix = if i % 2 == 0 { "even" } else { "odd" };
        cache
            .set(&format!("{prefix}:{i}"), entry("x", &["all"]), &opts)
            .await
            .unwrap();
    }
    let listed = cache.keys("even:*", 10).await.unwrap();
    assert_eq!(listed.len(), 10);
    assert!(listed.iter().all(|k| k.key.starts_with("even:")));
    assert!(listed.iter().all(|k| k.expires_in_ms.unwrap() > 50_000));
    // Read from L2: the fresh TTL comes from the entry's header, apart from the stale window.
    assert!(listed.iter().all(|k| k.layer == Layer::L2));
    assert!(
        listed
            .iter()
            .all(|k| (55_000..=60_000).contains(&k.fresh_for_ms.unwrap())),
        "{listed:?}"
    );
    cache
        .set(
            "stale-kept",
            entry("x", &[]).with_sie(Duration::from_secs(3_600)),
            &opts,
        )
        .await
        .unwrap();
    let kept = &cache.keys("stale-kept", 1).await.unwrap()[0];
    assert!(kept.fresh_for_ms.unwrap() <= 60_000, "{kept:?}");
    assert!(kept.expires_in_ms.unwrap() > 3_600_000, "{kept:?}");
    let removed = cache
        .invalidate(Purge::Pattern("even:*".into()))
        .await
        .unwrap();
    assert_eq!(removed, 600);
    assert!(cache.keys("even:*", 10).await.unwrap().is_empty());
    assert_eq!(cache.keys("odd:*", 1_000).await.unwrap().len(), 600);
    cache.invalidate(Purge::All).await.unwrap();
    let left = redis.command("DBSIZE").unwrap();
    assert_eq!(
        left.trim(),
        ":1",
        "purge all removes entries and tag sets, not the purge stream"
    );
    assert_eq!(redis.command("EXISTS larder:purges").unwrap().trim(), ":1");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_outage_costs_no_failures_and_l2_comes_back() {
    let mut redis = RedisServer::spawn().unwrap();
    let cache = Cache::new(config(&redis.url())).await.unwrap();
    let opts = CallOptions::default();
    for i in 0..20 {
        cache
            .set(&format!("warm:{i}"), entry("w", &[]), &opts)
            .await
            .unwrap();
    }

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let driver = {
        let (cache, stop, calls) = (cache.clone(), stop.clone(), calls.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            let mut latencies = Vec::new();
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                // Half L1 hits, half fresh misses that go to L2 and then the origin.
                let key = if i.is_multiple_of(2) {
                    format!("warm:{}", i % 20)
                } else {
                    format!("cold:{i}")
                };
                let started = Instant::now();
                let served = cache
                    .get_or_load(&key, &CallOptions::default(), || async {
                        Loaded::Store(entry("origin", &[]))
                    })
                    .await;
                let took = started.elapsed();
                assert!(served.is_ok(), "call {i} failed");
                worst = worst.max(took);
                latencies.push(took);
                calls.fetch_add(1, Ordering::Relaxed);
                i += 1;
                tokio::task::yield_now().await;
            }
            latencies.sort();
            (worst, latencies)
        })
    };
    let wait_calls = |n: u64| {
        let calls = calls.clone();
        async move {
            let target = calls.load(Ordering::Relaxed) + n;
            eventually(Duration::from_secs(10), "calls flowing", || {
                let calls = calls.clone();
                async move { calls.load(Ordering::Relaxed) >= target }
            })
            .await;
        }
    };
    wait_calls(200).await;
    redis.kill();
    let killed_at = Instant::now();
    wait_calls(2_000).await;
    eventually(Duration::from_secs(5), "breaker opens", || async {
        cache.snapshot().redis.unwrap().breaker_open
    })
    .await;
    wait_calls(2_000).await;
    println!("outage: {:?} with calls flowing", killed_at.elapsed());

    tokio::task::spawn_blocking(move || {
        redis.restart().unwrap();
        redis
    })
    .await
    .map(|r| {
        let restarted_at = Instant::now();
        (r, restarted_at)
    })
    .map(|(redis, restarted_at)| async move {
        let resumed = eventually(Duration::from_secs(10), "L2 hits resume", || async {
            let key = "after-restart";
            let _ = cache
                .set(
                    key,
                    entry("back", &[]),
                    &CallOptions::store(StoreKind::Redis),
                )
                .await;
            matches!(
                cache.lookup(key, &CallOptions::store(StoreKind::Redis)).await,
                Some(s) if s.status.layer == Some(Layer::L2)
            )
        })
        .await;
        println!(
            "L2 hits resumed {resumed:?} after polling began ({:?} after restart)",
            restarted_at.elapsed()
        );
        drop(redis);
    })
    .unwrap()
    .await;

    stop.store(true, Ordering::Relaxed);
    let (worst, latencies) = driver.await.unwrap();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    println!(
        "calls during the test: {}, p50 {:?}, p99 {:?}, max {:?}",
        latencies.len(),
        p(0.5),
        p(0.99),
        worst
    );
    // Fail-fast plus the breaker: no call waits anywhere near a reconnect; the worst case
    // is bounded by the command timeout (100 ms) on the call that met the dying socket.
    assert!(
        worst < Duration::from_millis(250),
        "worst call took {worst:?}"
    );
    assert!(p(0.99) < Duration::from_millis(20), "p99 {:?}", p(0.99));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_tags_patterns_and_lookups() {
    let cluster = RedisCluster::spawn().unwrap();
    let cache = Cache::new(config(&cluster.url())).await.unwrap();
    let opts = CallOptions::default();
    for i in 0..200 {
        let tags: &[&str] = if i % 4 == 0 { &["quarter"] } else { &["rest"] };
        cache
            .set(&format!("item:{i}"), entry(&format!("v{i}"), tags), &opts)
            .await
            .unwrap();
    }
    // A fresh instance sees everything through L2, spread over the three masters.
    let other = Cache::new(config(&cluster.url())).await.unwrap();
    let served = other.lookup("item:13", &opts).await.unwrap();
    assert_eq!(served.status.layer, Some(Layer::L2));
    assert_eq!(&served.entry.body[..], b"v13");
    subscribed(&other).await;
    other.lookup("item:4", &opts).await.unwrap();
    assert!(other.l1().get_now("item:4").is_some());

    let removed = cache
        .invalidate(Purge::Tags(vec!["quarter".into()]))
        .await
        .unwrap();
    assert_eq!(removed, 50);
    // Published from the recording script on the stream's node, heard through another.
    eventually(
        Duration::from_secs(5),
        "the purge reaches the other L1",
        || async { other.l1().get_now("item:4").is_none() },
    )
    .await;
    let redis_only = CallOptions::store(StoreKind::Redis);
    assert!(other.lookup("item:0", &redis_only).await.is_none());
    assert!(other.lookup("item:1", &redis_only).await.is_some());

    let listed = cache.keys("item:1*", 1_000).await.unwrap();
    assert!(!listed.is_empty() && listed.iter().all(|k| k.key.starts_with("item:1")));
    let removed = cache
        .invalidate(Purge::Pattern("item:1*".into()))
        .await
        .unwrap();
    assert_eq!(removed as usize, listed.len());
    assert!(other.lookup("item:13", &redis_only).await.is_none());

    // Coalescing with the lock also works per slot.
    let calls = Arc::new(AtomicUsize::new(0));
    let locked = CallOptions::default().with_lock(true);
    let mut tasks = Vec::new();
    for i in 0..20 {
        let cache = if i % 2 == 0 {
            cache.clone()
        } else {
            other.clone()
        };
        let (calls, locked) = (calls.clone(), locked.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("cluster-cold", &locked, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Loaded::Store(entry("once", &[]))
                })
                .await
                .unwrap()
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let health = cache.health().await;
    assert_eq!(health.mode, "cluster");
    assert!(health.redis.unwrap().ping_ms.is_some());

    // Catching up reads the stream from whichever master holds it.
    other
        .set(
            "solo",
            entry("s", &[]),
            &CallOptions::store(StoreKind::Memory),
        )
        .await
        .unwrap();
    let recorded = cluster.ports().into_iter().any(|port| {
        raw_command(
            port,
            r#"XADD larder:purges * p "LDRI1 000000000000002a K4:solo""#,
        )
        .unwrap()
        .starts_with('$')
    });
    assert!(recorded, "no master took the stream entry");
    for port in cluster.ports() {
        raw_command(port, "CLIENT KILL TYPE pubsub").unwrap();
    }
    eventually(
        Duration::from_secs(10),
        "the missed purge is read back",
        || async { other.l1().get_now("solo").is_none() },
    )
    .await;
    subscribed(&other).await;
}

/// Redis down when the cache starts, up later: fred keeps trying the first connection, and
/// the breaker (opened at start) closes as soon as it is made, with no cache traffic at all
/// to find a probe due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_at_start_is_used_once_it_comes_up() {
    let mut redis = RedisServer::spawn().unwrap();
    redis.kill();
    let mut cfg = config(&redis.url());
    cfg.redis.connect_timeout_ms = Duration::from_millis(200);
    // Far longer than the test: only the first-connection probe can close it in time.
    cfg.redis.breaker.open_for_ms = Duration::from_secs(600);
    let cache = Cache::new(cfg).await.unwrap();
    let breaker_open = |c: &Cache| c.l2().unwrap().breaker().is_open();
    assert!(breaker_open(&cache), "Redis was down at start");

    // Stored while nobody's purges could be heard: dropped at the first subscription.
    let _ = cache
        .set("before", entry("b", &[]), &CallOptions::default())
        .await;
    assert!(cache.l1().get_now("before").is_some());

    redis.restart().unwrap();
    eventually(Duration::from_secs(10), "the breaker closes", || async {
        !breaker_open(&cache)
    })
    .await;

    // It joins cross-instance invalidation too, and says so: a purge made by an instance
    // started now reaches its L1.
    subscribed(&cache).await;
    assert!(
        cache.l1().get_now("before").is_none(),
        "no baseline: the first subscription drops L1"
    );
    cache
        .set("after", entry("a", &[]), &CallOptions::default())
        .await
        .unwrap();
    assert!(in_l2(&cache, "after").await, "L2 in use");
    let other = Cache::new(config(&redis.url())).await.unwrap();
    assert!(cache.l1().get_now("after").is_some());
    other
        .invalidate(Purge::Keys(vec!["after".into()]))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "the other instance's purge reaches this L1",
        || async { cache.l1().get_now("after").is_none() },
    )
    .await;
}

/// The issue's lost purge: Redis stalls, a purge on A cannot reach it. A's L1 is purged at
/// once and the Redis part queued; B, which cannot hear anything, stops serving its L1
/// copy within the window; when Redis answers again the queue is replayed, so Redis, B and
/// a new instance all lose the old entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_made_while_redis_is_paused_is_replayed_and_bounded_meanwhile() {
    let redis = RedisServer::spawn().unwrap();
    let window = Duration::from_secs(1);
    let mut cfg = config(&redis.url());
    cfg.redis.unsubscribed_l1_window_ms = window;
    let opts = CallOptions::default();
    let a = Cache::new(cfg.clone()).await.unwrap();
    let b = Cache::new(cfg.clone()).await.unwrap();
    subscribed(&a).await;
    subscribed(&b).await;
    a.set("slots:7:mon", entry("free", &["slots:7"]), &opts)
        .await
        .unwrap();
    let served = b.lookup("slots:7:mon", &opts).await.unwrap();
    assert_eq!(served.status.layer, Some(Layer::L2));
    assert!(b.l1_hit("slots:7:mon", &opts).is_some());

    redis.pause();
    let paused = Instant::now();
    let err = a
        .invalidate(Purge::Tags(vec!["slots:7".into()]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("queued"), "{err}");
    assert_eq!(pending_purges(&a), 1);
    assert!(
        a.l1_hit("slots:7:mon", &opts).is_none(),
        "A's own L1 at once"
    );
    let stopped = eventually(
        window + Duration::from_secs(2),
        "B stops serving its L1 copy",
        || async { b.l1_hit("slots:7:mon", &opts).is_none() },
    )
    .await;
    println!(
        "B stopped serving the purged entry {:?} after Redis paused (window {window:?})",
        paused.elapsed()
    );
    let _ = stopped;
    assert!(
        b.l1().get_now("slots:7:mon").is_some(),
        "B never heard the purge: the window alone stopped it"
    );

    redis.resume();
    let replayed = eventually(Duration::from_secs(10), "A replays its queue", || async {
        pending_purges(&a) == 0
    })
    .await;
    println!("A's queued purge replayed {replayed:?} after Redis resumed");
    assert!(!in_l2(&a, "slots:7:mon").await, "gone from Redis");
    eventually(
        Duration::from_secs(10),
        "B hears the replayed purge",
        || async { b.l1().get_now("slots:7:mon").is_none() },
    )
    .await;
    subscribed(&b).await;
    let c = Cache::new(cfg).await.unwrap();
    assert!(
        c.lookup("slots:7:mon", &opts).await.is_none(),
        "a new instance does not read the old entry back"
    );
}

/// Pub/sub drops what a disconnected subscriber would have received; the purge stream does
/// not. A purge B never got as a message is applied when B's subscriber reconnects; when
/// the stream was trimmed past B's position, B cannot know what it missed and drops L1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missed_message_is_read_back_from_the_purge_stream() {
    let redis = RedisServer::spawn().unwrap();
    let opts = CallOptions::store(StoreKind::Memory);
    let b = Cache::new(config(&redis.url())).await.unwrap();
    subscribed(&b).await;
    b.set("slots:7:mon", entry("free", &["slots:7"]), &opts)
        .await
        .unwrap();
    b.set("other", entry("x", &[]), &opts).await.unwrap();
    // Recorded as another instance's script would, but never published.
    let reply = redis
        .command(r#"XADD larder:purges * p "LDRI1 000000000000002a T7:slots:7""#)
        .unwrap();
    assert!(reply.starts_with('$'), "{reply}");
    assert!(b.l1().get_now("slots:7:mon").is_some());

    redis.command("CLIENT KILL TYPE pubsub").unwrap();
    eventually(
        Duration::from_secs(10),
        "B applies the purge it missed",
        || async { b.l1().get_now("slots:7:mon").is_none() },
    )
    .await;
    subscribed(&b).await;
    assert!(
        b.l1().get_now("other").is_some(),
        "a gap read back costs nothing else"
    );
    assert_eq!(b.snapshot().counters.invalidations_received, 1);

    // Two more unpublished purges, then the stream trimmed to the last one: B's position
    // is gone, so whatever lay between is unknown.
    for key in ["x1", "x2"] {
        redis
            .command(&format!(
                r#"XADD larder:purges * p "LDRI1 000000000000002a K{}:{key}""#,
                key.len()
            ))
            .unwrap();
    }
    redis.command("XTRIM larder:purges MAXLEN 1").unwrap();
    redis.command("CLIENT KILL TYPE pubsub").unwrap();
    eventually(
        Duration::from_secs(10),
        "B drops its L1 after a gap it cannot read back",
        || async { b.l1().get_now("other").is_none() },
    )
    .await;
    subscribed(&b).await;
}

/// Redis killed and restarted empty: the purge made meanwhile is replayed to the new Redis,
/// and B, whose stream position no longer exists, drops its whole L1 rather than trusting
/// copies that purges it never saw may concern.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_replays_the_queue_and_resets_instances_that_lost_their_position() {
    let mut redis = RedisServer::spawn().unwrap();
    let cfg = config(&redis.url());
    let opts = CallOptions::default();
    let a = Cache::new(cfg.clone()).await.unwrap();
    let b = Cache::new(cfg.clone()).await.unwrap();
    subscribed(&a).await;
    subscribed(&b).await;
    // B gets a stream position from a message it heard.
    a.invalidate(Purge::Keys(vec!["warm-up".into()]))
        .await
        .unwrap();
    eventually(
        Duration::from_secs(5),
        "B hears the first purge",
        || async { b.snapshot().counters.invalidations_received == 1 },
    )
    .await;
    a.set("slots:7:mon", entry("free", &["slots:7"]), &opts)
        .await
        .unwrap();
    b.lookup("slots:7:mon", &opts).await.unwrap();
    b.set(
        "other",
        entry("x", &[]),
        &CallOptions::store(StoreKind::Memory),
    )
    .await
    .unwrap();

    redis.kill();
    let err = a
        .invalidate(Purge::Tags(vec!["slots:7".into()]))
        .await
        .unwrap_err();
    assert!(err.to_string().contains("queued"), "{err}");
    redis.restart().unwrap();
    eventually(Duration::from_secs(10), "A replays its queue", || async {
        pending_purges(&a) == 0
    })
    .await;
    assert_eq!(
        redis.command("XLEN larder:purges").unwrap().trim(),
        ":1",
        "the replayed purge is in the new Redis's stream"
    );
    eventually(Duration::from_secs(10), "B resets its L1", || async {
        b.l1().get_now("other").is_none() && b.l1().get_now("slots:7:mon").is_none()
    })
    .await;
    subscribed(&b).await;
}
