//! Engine behaviour that needs no Redis: coalescing, stale serving, pass-through, budget.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use larder_store::{Cache, CacheConfig, CallOptions, Entry, Loaded, OriginError, Outcome};
use tokio::sync::Notify;

async fn memory_cache() -> Cache {
    Cache::new(CacheConfig {
        ..CacheConfig::default()
    })
    .await
    .unwrap()
}

fn body(n: usize) -> Entry {
    Entry::new(200, format!("response {n}")).with_ttl(Duration::from_secs(60))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousand_concurrent_misses_call_the_origin_once() {
    let cache = memory_cache().await;
    let rule = cache.rule_stats("slow-route");
    let opts = CallOptions::default().with_rule(rule.clone());
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..1_000 {
        let (cache, opts, calls) = (cache.clone(), opts.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("cold", &opts, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    Loaded::Store(body(1))
                })
                .await
        }));
    }
    let mut outcomes = std::collections::HashMap::new();
    for t in tasks {
        let served = t.await.unwrap().unwrap();
        assert_eq!(&served.entry.body[..], b"response 1");
        *outcomes.entry(served.status.outcome).or_insert(0) += 1;
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "outcomes: {outcomes:?}");
    assert_eq!(outcomes.get(&Outcome::Miss), Some(&1));
    let snap = cache.snapshot();
    assert_eq!(snap.counters.origin_calls, 1);
    assert_eq!(snap.rules["slow-route"].origin_calls, 1);
    // Late arrivals may have hit L1 instead of waiting; together they are everyone else.
    assert_eq!(
        snap.counters.coalesced_waits + snap.counters.hits_l1,
        999,
        "{snap:?}"
    );
    // Every caller but the one that called the origin was an origin call saved.
    assert_eq!(snap.origin_calls_saved, 999);
}

#[tokio::test]
async fn every_hit_is_an_origin_call_saved() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    for _ in 0..4 {
        cache
            .get_or_load("k", &opts, || async { Loaded::Store(body(1)) })
            .await
            .unwrap();
    }
    let snap = cache.snapshot();
    assert_eq!((snap.counters.origin_calls, snap.counters.hits_l1), (1, 3));
    assert_eq!(snap.origin_calls_saved, 3, "{snap:?}");
}

#[tokio::test(start_paused = true)]
async fn stale_while_revalidate_serves_at_once_and_refreshes_once() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    let entry = |v: &str| {
        Entry::new(200, v.to_string())
            .with_ttl(Duration::from_secs(1))
            .with_swr(Duration::from_secs(30))
    };
    let first = cache
        .get_or_load(
            "k",
            &opts,
            move || async move { Loaded::Store(entry("v1")) },
        )
        .await
        .unwrap();
    assert_eq!(first.status.outcome, Outcome::Miss);
    assert!(first.status.stored);

    tokio::time::advance(Duration::from_millis(1_500)).await;

    // The refresh blocks until released, so every answer below provably came from stale.
    let release = Arc::new(Notify::new());
    let refreshes = Arc::new(AtomicUsize::new(0));
    for _ in 0..100 {
        let (release, refreshes) = (release.clone(), refreshes.clone());
        let served = cache
            .get_or_load("k", &opts, move || async move {
                refreshes.fetch_add(1, Ordering::SeqCst);
                release.notified().await;
                Loaded::Store(entry("v2"))
            })
            .await
            .unwrap();
        assert_eq!(served.status.outcome, Outcome::Stale);
        assert_eq!(&served.entry.body[..], b"v1");
        assert!(served.status.ttl_left_ms < 0);
    }
    // The refresh task starts on the runtime; let it run up to its wait.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while refreshes.load(Ordering::SeqCst) == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh never started"
        );
        tokio::task::yield_now().await;
    }
    release.notify_waiters();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        let served = cache.lookup("k", &opts).await.unwrap();
        if served.status.outcome == Outcome::Hit {
            assert_eq!(&served.entry.body[..], b"v2");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "refresh never landed"
        );
        tokio::task::yield_now().await;
    }
    assert_eq!(refreshes.load(Ordering::SeqCst), 1);
    let snap = cache.snapshot();
    assert_eq!(snap.counters.refreshes, 1);
    assert_eq!(snap.counters.stale_served, 100);
}

#[tokio::test(start_paused = true)]
async fn stale_if_error_inside_the_window_and_the_error_after_it() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    cache
        .get_or_load("k", &opts, || async {
            Loaded::Store(
                Entry::new(200, "good")
                    .with_ttl(Duration::from_secs(1))
                    .with_sie(Duration::from_secs(10)),
            )
        })
        .await
        .unwrap();
    let failing = || async { Loaded::Error(OriginError::new("upstream 503")) };

    tokio::time::advance(Duration::from_secs(2)).await;
    let served = cache.get_or_load("k", &opts, failing).await.unwrap();
    assert_eq!(served.status.outcome, Outcome::StaleIfError);
    assert_eq!(&served.entry.body[..], b"good");

    // A timeout counts as an error too.
    let slow = || async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Loaded::Store(Entry::new(200, "late"))
    };
    let served = cache
        .get_or_load(
            "k",
            &opts.clone().with_load_timeout(Duration::from_millis(100)),
            slow,
        )
        .await
        .unwrap();
    assert_eq!(served.status.outcome, Outcome::StaleIfError);

    tokio::time::advance(Duration::from_secs(10)).await;
    let err = cache.get_or_load("k", &opts, failing).await.unwrap_err();
    assert_eq!(&*err.message, "upstream 503");
    assert_eq!(cache.snapshot().counters.stale_if_error_served, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pass_through_is_never_stored_nor_shared() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for i in 0..10 {
        let (cache, opts, calls) = (cache.clone(), opts.clone(), calls.clone());
        tasks.push(tokio::spawn(async move {
            cache
                .get_or_load("private", &opts, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    Loaded::PassThrough(
                        Entry::new(200, format!("for caller {i}")).with_header("set-cookie", "s=1"),
                    )
                })
                .await
                .unwrap()
        }));
    }
    for (i, t) in tasks.into_iter().enumerate() {
        let served = t.await.unwrap();
        assert_eq!(served.status.outcome, Outcome::PassThrough);
        assert_eq!(
            served.entry.body,
            format!("for caller {i}"),
            "each caller got its own"
        );
    }
    assert_eq!(calls.load(Ordering::SeqCst), 10);
    assert!(cache.lookup("private", &opts).await.is_none());
}

#[tokio::test]
async fn l1_stays_within_its_byte_budget() {
    let budget = 1024 * 1024;
    let cache = Cache::memory(budget).await;
    let opts = CallOptions::default();
    for i in 0..5_000 {
        cache
            .get_or_load(&format!("k{i}"), &opts, move || async move {
                Loaded::Store(
                    Entry::new(200, vec![b'x'; 1024])
                        .with_ttl(Duration::from_secs(60))
                        .with_tags([format!("t{}", i % 7)]),
                )
            })
            .await
            .unwrap();
    }
    let snap = cache.snapshot();
    assert!(snap.l1_bytes <= budget, "{} > {budget}", snap.l1_bytes);
    assert!(snap.l1_bytes > budget / 2, "budget should be mostly used");
    assert!(snap.counters.evictions > 3_000, "{:?}", snap.counters);
    println!(
        "L1: {} entries, {} bytes of {budget}, {} evictions",
        snap.l1_entries, snap.l1_bytes, snap.counters.evictions
    );
}

#[tokio::test]
async fn memory_invalidation_by_tag_key_and_pattern() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    for (key, tag) in [
        ("slots:1:a", "b1"),
        ("slots:1:b", "b1"),
        ("slots:2:a", "b2"),
    ] {
        let tag = tag.to_string();
        cache
            .get_or_load(key, &opts, move || async move {
                Loaded::Store(body(0).with_tags([tag]))
            })
            .await
            .unwrap();
    }
    use larder_store::Purge;
    assert_eq!(
        cache
            .invalidate(Purge::Tags(vec!["b1".into()]))
            .await
            .unwrap(),
        2
    );
    assert!(cache.lookup("slots:1:a", &opts).await.is_none());
    assert!(cache.lookup("slots:2:a", &opts).await.is_some());
    assert_eq!(cache.keys("slots:*", 10).await.unwrap().len(), 1);
    assert_eq!(
        cache
            .invalidate(Purge::Pattern("slots:2:*".into()))
            .await
            .unwrap(),
        1
    );
    assert!(cache.lookup("slots:2:a", &opts).await.is_none());
    let health = cache.health().await;
    assert_eq!(health.mode, "memory");
    let json = serde_json::to_string(&cache.snapshot()).unwrap();
    assert!(json.contains("l1_bytes"));
}

/// A slots computation that started before a booking's invalidation must not put the old
/// answer back in the cache, nor hand it to callers who arrive after the invalidation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_load_that_raced_an_invalidation_is_not_stored() {
    use larder_store::Purge;
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    let release = Arc::new(Notify::new());
    let started = Arc::new(Notify::new());
    let leader = {
        let (cache, opts, release, started) = (
            cache.clone(),
            opts.clone(),
            release.clone(),
            started.clone(),
        );
        tokio::spawn(async move {
            cache
                .get_or_load("slots:7:2026-11-21", &opts, move || async move {
                    started.notify_one();
                    release.notified().await;
                    Loaded::Store(body(1).with_tags(["slots:7:2026-11-21"]))
                })
                .await
        })
    };
    started.notified().await;
    // The booking commits and purges the tag while the old answer is being computed.
    cache
        .invalidate(Purge::Tags(vec!["slots:7:2026-11-21".into()]))
        .await
        .unwrap();
    // Someone asks after the purge: they must get a fresh load, not the raced one.
    let calls = Arc::new(AtomicUsize::new(0));
    let late = {
        let (cache, opts, calls) = (cache.clone(), opts.clone(), calls.clone());
        tokio::spawn(async move {
            cache
                .get_or_load("slots:7:2026-11-21", &opts, move || async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    Loaded::Store(body(2).with_tags(["slots:7:2026-11-21"]))
                })
                .await
        })
    };
    release.notify_one();
    let first = leader.await.unwrap().unwrap();
    assert_eq!(
        &first.entry.body[..],
        b"response 1",
        "the leader still gets its answer"
    );
    assert!(!first.status.stored);
    let second = late.await.unwrap().unwrap();
    assert_eq!(&second.entry.body[..], b"response 2", "{:?}", second.status);
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    let cached = cache.lookup("slots:7:2026-11-21", &opts).await.unwrap();
    assert_eq!(&cached.entry.body[..], b"response 2");
    assert_eq!(cache.snapshot().counters.raced_invalidations, 1);
}

/// A key listing tells how long an entry stays fresh apart from how long the store keeps
/// it (the stale window on top), before and after its TTL runs out.
#[tokio::test(start_paused = true)]
async fn listed_keys_show_freshness_and_retention_apart() {
    let cache = memory_cache().await;
    let opts = CallOptions::default();
    let entry = body(0).with_sie(Duration::from_secs(600));
    cache.set("k", entry, &opts).await.unwrap();
    let listed = cache.keys("k", 10).await.unwrap();
    assert_eq!(listed[0].fresh_for_ms, Some(60_000));
    assert_eq!(listed[0].expires_in_ms, Some(660_000));

    tokio::time::advance(Duration::from_secs(90)).await;
    let listed = cache.keys("k", 10).await.unwrap();
    assert_eq!(listed[0].fresh_for_ms, Some(0), "stale, kept for errors");
    assert_eq!(listed[0].expires_in_ms, Some(570_000));
}
