//! `bench`: the routes `cargo xtask bench` drives, loaded as a dynamic plugin by the bench
//! config only (the default server never exposes them).
//!
//! Every route answers the same JSON document of `payload_bytes` bytes (see [`payload`]),
//! so each scenario differs only in what the cache does:
//!
//! | route | origin | policy rule (`policy.yaml`) |
//! |---|---|---|
//! | `GET /raw` | the bytes, no rule | none: the layer's pass-through cost |
//! | `GET /l1/{id}`, `/l2/{id}`, `/item/{id}`, `/tagged/{id}` | fresh bytes | memory, redis, memory, hybrid + tags |
//! | `GET /slow/{id}`, `/swr` | sleeps `slow_ms` | memory; `swr` expires every second |
//! | `GET /stampede/{id}` | sleeps `stampede_ms` | hybrid |
//! | `GET /flaky`, `PUT /flaky?fail=` | 500 while failing | stale-if-error |
//! | `GET /comp/br`, `/comp/zstd`, `/comp/gzip` | fresh bytes | one algorithm each |
//! | `GET /counters` | origin calls per route | none |
//!
//! Origins allocate a fresh body per call (as a real handler serialising would), so stored
//! entries never share one buffer and the memory scenario measures real bytes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use larder_plugin::{Plugin, PluginApi, PluginError, PluginInit};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::{Binary, Json};
use poem_openapi::{ApiResponse, OpenApi};
use schemars::JsonSchema;
use serde::Deserialize;

/// Settings under `plugins.bench.settings`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BenchConfig {
    /// Size of every JSON answer, in bytes.
    pub payload_bytes: usize,
    /// Latency of the slow origin (`/slow`, `/swr`, `/flaky`), in milliseconds.
    pub slow_ms: u64,
    /// Latency of the stampede origin, in milliseconds: long enough for every concurrent
    /// request to arrive while the one load runs.
    pub stampede_ms: u64,
}

impl Default for BenchConfig {
    fn default() -> Self {
        Self {
            payload_bytes: DEFAULT_PAYLOAD_BYTES,
            slow_ms: 20,
            stampede_ms: 200,
        }
    }
}

/// The default answer size: about what a typical JSON API answer weighs.
pub const DEFAULT_PAYLOAD_BYTES: usize = 2048;

/// A JSON document of exactly `size` bytes (at least about 40): a catalogue-like list of
/// items, then a padding string. Realistic enough to compress like API JSON does.
pub fn payload(size: usize, id: u64) -> Vec<u8> {
    let mut out = format!("{{\"id\":{id},\"items\":[").into_bytes();
    let tail = b"],\"note\":\"\"}";
    let mut i = 0u64;
    loop {
        let item = format!(
            "{}{{\"sku\":\"SKU-{:06}\",\"name\":\"Product {}\",\"price_cents\":{},\"in_stock\":{},\"tags\":[\"bench\",\"larder\"]}}",
            if i == 0 { "" } else { "," },
            id.wrapping_mul(31).wrapping_add(i) % 1_000_000,
            i + 1,
            999 + (i * 137) % 9000,
            !i.is_multiple_of(3),
        );
        if out.len() + item.len() + tail.len() > size {
            break;
        }
        out.extend_from_slice(item.as_bytes());
        i += 1;
    }
    out.extend_from_slice(b"],\"note\":\"");
    let pad = size.saturating_sub(out.len() + 2);
    out.extend((0..pad).map(|n| b"lorem ipsum dolor sit amet "[n % 27]));
    out.extend_from_slice(b"\"}");
    out
}

/// Origin calls per route, read by the bench through `GET /counters`.
#[derive(Default)]
struct Counters {
    by_route: [AtomicU64; ROUTES.len()],
}

const ROUTES: [&str; 12] = [
    "raw", "l1", "mine", "l2", "item", "tagged", "slow", "swr", "stampede", "flaky", "comp", "mem",
];

impl Counters {
    fn hit(&self, route: &str) {
        if let Some(i) = ROUTES.iter().position(|r| *r == route) {
            self.by_route[i].fetch_add(1, Ordering::Relaxed);
        }
    }
}

struct State {
    config: BenchConfig,
    fixed: Bytes,
    failing: AtomicBool,
    counters: Counters,
}

impl State {
    fn fresh(&self, route: &str, id: u64) -> BodyResponse {
        self.counters.hit(route);
        BodyResponse::Ok(Binary(Bytes::from(payload(self.config.payload_bytes, id))))
    }

    async fn slow(&self, ms: u64) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
}

#[derive(ApiResponse)]
enum BodyResponse {
    /// The payload.
    #[oai(status = 200, content_type = "application/json")]
    Ok(Binary<Bytes>),
    /// The failing origin is failing.
    #[oai(status = 500, content_type = "application/json")]
    Failed(Binary<Bytes>),
}

/// The bench plugin.
pub struct BenchPlugin {
    state: Arc<State>,
}

struct BenchApi {
    state: Arc<State>,
}

#[OpenApi]
impl BenchApi {
    /// The payload from memory, no rule: what the layer costs when it does nothing.
    #[oai(path = "/raw", method = "get", operation_id = "raw")]
    async fn raw(&self) -> BodyResponse {
        BodyResponse::Ok(Binary(self.state.fixed.clone()))
    }

    /// Cached in L1 only.
    #[oai(path = "/l1/:id", method = "get", operation_id = "l1")]
    async fn l1(&self, id: Path<u64>) -> BodyResponse {
        self.state.fresh("l1", id.0)
    }

    /// The caller's own entry (its policy rule is `scope: user`): what an authenticated
    /// hit costs.
    #[oai(path = "/mine/:id", method = "get", operation_id = "mine")]
    async fn mine(&self, id: Path<u64>) -> BodyResponse {
        self.state.fresh("mine", id.0)
    }

    /// Cached in Redis only.
    #[oai(path = "/l2/:id", method = "get", operation_id = "l2")]
    async fn l2(&self, id: Path<u64>) -> BodyResponse {
        self.state.fresh("l2", id.0)
    }

    /// The Zipf working set.
    #[oai(path = "/item/:id", method = "get", operation_id = "item")]
    async fn item(&self, id: Path<u64>) -> BodyResponse {
        self.state.fresh("item", id.0)
    }

    /// Tagged entries shared through Redis.
    #[oai(path = "/tagged/:id", method = "get", operation_id = "tagged")]
    async fn tagged(&self, id: Path<u64>) -> BodyResponse {
        self.state.fresh("tagged", id.0)
    }

    /// A slow origin (`slow_ms`).
    #[oai(path = "/slow/:id", method = "get", operation_id = "slow")]
    async fn slow(&self, id: Path<u64>) -> BodyResponse {
        self.state.slow(self.state.config.slow_ms).await;
        self.state.fresh("slow", id.0)
    }

    /// A slow origin whose entry expires every second.
    #[oai(path = "/swr", method = "get", operation_id = "swr")]
    async fn swr(&self) -> BodyResponse {
        self.state.slow(self.state.config.slow_ms).await;
        self.state.fresh("swr", 0)
    }

    /// A very slow origin (`stampede_ms`) hit by many concurrent requests.
    #[oai(path = "/stampede/:id", method = "get", operation_id = "stampede")]
    async fn stampede(&self, id: Path<u64>) -> BodyResponse {
        self.state.slow(self.state.config.stampede_ms).await;
        self.state.fresh("stampede", id.0)
    }

    /// A slow origin that answers 500 while `PUT /flaky?fail=true` is in force.
    #[oai(path = "/flaky", method = "get", operation_id = "flaky")]
    async fn flaky(&self) -> BodyResponse {
        self.state.slow(self.state.config.slow_ms).await;
        if self.state.failing.load(Ordering::Relaxed) {
            self.state.counters.hit("flaky");
            return BodyResponse::Failed(Binary(Bytes::from_static(br#"{"error":"origin_down"}"#)));
        }
        self.state.fresh("flaky", 0)
    }

    /// Makes `GET /flaky` fail (`fail=true`) or recover.
    #[oai(path = "/flaky", method = "put", operation_id = "set_flaky")]
    async fn set_flaky(&self, fail: Query<bool>) -> Json<bool> {
        self.state.failing.store(fail.0, Ordering::Relaxed);
        Json(fail.0)
    }

    /// Stored compressed with brotli.
    #[oai(path = "/comp/br", method = "get", operation_id = "comp_br")]
    async fn comp_br(&self) -> BodyResponse {
        self.state.fresh("comp", 0)
    }

    /// Stored compressed with zstd.
    #[oai(path = "/comp/zstd", method = "get", operation_id = "comp_zstd")]
    async fn comp_zstd(&self) -> BodyResponse {
        self.state.fresh("comp", 0)
    }

    /// Stored compressed with gzip.
    #[oai(path = "/comp/gzip", method = "get", operation_id = "comp_gzip")]
    async fn comp_gzip(&self) -> BodyResponse {
        self.state.fresh("comp", 0)
    }

    /// Origin calls per route since start.
    #[oai(path = "/counters", method = "get", operation_id = "counters")]
    async fn counters(&self) -> Json<BTreeMap<String, u64>> {
        Json(
            ROUTES
                .iter()
                .zip(&self.state.counters.by_route)
                .map(|(r, c)| ((*r).to_owned(), c.load(Ordering::Relaxed)))
                .collect(),
        )
    }
}

impl Plugin for BenchPlugin {
    type Config = BenchConfig;
    const NAME: &'static str = "bench";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Benchmark routes: fixed payloads, slow, failing and counting origins.";

    async fn new(init: PluginInit<BenchConfig>) -> Result<Self, PluginError> {
        if init.config.payload_bytes < 64 {
            return Err(PluginError::Config {
                path: "payload_bytes".into(),
                message: "must be at least 64".into(),
            });
        }
        let fixed = Bytes::from(payload(init.config.payload_bytes, 0));
        Ok(Self {
            state: Arc::new(State {
                config: init.config,
                fixed,
                failing: AtomicBool::new(false),
                counters: Counters::default(),
            }),
        })
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(BenchApi {
            state: self.state.clone(),
        })
    }
}

larder_plugin::export_plugin!(BenchPlugin);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_is_exact_size_json() {
        for size in [64, 100, 2048, 4096, 65_536] {
            for id in [0, 7, 123_456_789] {
                let p = payload(size, id);
                assert_eq!(p.len(), size, "size {size} id {id}");
                let v: serde_json::Value = serde_json::from_slice(&p).unwrap();
                assert_eq!(v["id"], id);
            }
        }
    }
}
