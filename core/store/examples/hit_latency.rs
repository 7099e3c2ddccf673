//! Quick local measurement of L1 and L2 hit latency (p50/p99) and single-task throughput.
//!
//! Spawns a private redis-server (via larder-testkit) on a free port, stores one 2 KiB
//! entry, then times `get_or_load` hits served from L1 and `lookup`s served from L2.
//!
//! ```text
//! cargo run --release -p larder-store --example hit_latency
//! ```

use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use larder_store::{Cache, CacheConfig, CallOptions, Entry, Layer, Loaded, RedisConfig, StoreKind};

fn report(name: &str, h: &Histogram<u64>, total: Duration) {
    println!(
        "{name:<28} n={:<8} p50={:>7.2}µs p99={:>7.2}µs p99.9={:>7.2}µs max={:>8.2}µs  {:>10.0} ops/s",
        h.len(),
        h.value_at_quantile(0.50) as f64 / 1000.0,
        h.value_at_quantile(0.99) as f64 / 1000.0,
        h.value_at_quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.len() as f64 / total.as_secs_f64(),
    );
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let redis = larder_testkit::redis::RedisServer::spawn().expect("spawn redis-server");
    let cache = Cache::new(CacheConfig {
        mode: StoreKind::Hybrid,
        redis: RedisConfig {
            url: Some(redis.url()),
            ..RedisConfig::default()
        },
        ..CacheConfig::default()
    })
    .await
    .expect("cache");
    let body = vec![b'x'; 2048];
    let entry = Entry::new(200, body)
        .with_ttl(Duration::from_secs(3600))
        .with_header("content-type", "application/json")
        .with_tags(["bench"]);
    let opts = CallOptions::default().with_rule(cache.rule_stats("bench"));
    cache.set("bench:key", entry, &opts).await.expect("set");

    let n = 500_000;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let served = cache
            .get_or_load("bench:key", &opts, || async {
                unreachable!("hit expected")
            })
            .await
            .unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        debug_assert_eq!(served.status.layer, Some(Layer::L1));
        std::hint::black_box(served);
    }
    report("L1 hit (get_or_load)", &h, start.elapsed());

    let redis_only = CallOptions::store(StoreKind::Redis);
    let n = 20_000;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    let start = Instant::now();
    for _ in 0..n {
        let t = Instant::now();
        let served = cache
            .get_or_load("bench:key", &redis_only, || async {
                Loaded::Error(larder_store::OriginError::new("hit expected"))
            })
            .await
            .unwrap();
        h.record(t.elapsed().as_nanos() as u64).unwrap();
        assert_eq!(served.status.layer, Some(Layer::L2));
    }
    report("L2 hit (sequential)", &h, start.elapsed());

    // L2 throughput with concurrency (what an HTTP server under load sees).
    let tasks = 32;
    let per_task = 2_000;
    let start = Instant::now();
    let mut handles = Vec::new();
    for _ in 0..tasks {
        let (cache, redis_only) = (cache.clone(), redis_only.clone());
        handles.push(tokio::spawn(async move {
            let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
            for _ in 0..per_task {
                let t = Instant::now();
                cache.lookup("bench:key", &redis_only).await.unwrap();
                h.record(t.elapsed().as_nanos() as u64).unwrap();
            }
            h
        }));
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000_000, 3).unwrap();
    for handle in handles {
        h.add(handle.await.unwrap()).unwrap();
    }
    report("L2 hit (32 concurrent)", &h, start.elapsed());

    let snap = cache.snapshot();
    println!(
        "engine histograms: L1 p50={:.2}µs p99={:.2}µs | L2 p50={:.2}µs p99={:.2}µs",
        snap.l1_latency.p50_us,
        snap.l1_latency.p99_us,
        snap.l2_latency.p50_us,
        snap.l2_latency.p99_us
    );
}
