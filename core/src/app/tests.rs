//! A policy's `today` in the shop's time zone, through the whole server in process, with
//! tokio's clock paused and moved across midnight in UTC and then in New York. Two plugins
//! share one policy text: `shop` says its days are New York's, `lab` says nothing (UTC).

use larder_plugin::{Plugin, PluginApi, PluginError, PluginInit};
use poem::http::StatusCode;
use poem::{Endpoint, Request};
use poem_openapi::OpenApi;
use poem_openapi::param::Query;
use poem_openapi::payload::Json;
use serde_json::{Value, json};
use std::time::Duration;

use crate::app::App;
use crate::config::LoadedConfig;
use crate::http::pipeline::Server;
use crate::plugins::PluginRegistry;

struct ShopDays;
struct LabDays;

#[OpenApi]
impl ShopDays {
    #[oai(path = "/slots", method = "get", operation_id = "shop_slots")]
    async fn slots(&self, date: Query<String>, n: Query<u32>) -> Json<Value> {
        Json(json!({ "date": date.0, "n": n.0 }))
    }
}

#[OpenApi]
impl LabDays {
    #[oai(path = "/slots", method = "get", operation_id = "lab_slots")]
    async fn slots(&self, date: Query<String>, n: Query<u32>) -> Json<Value> {
        Json(json!({ "date": date.0, "n": n.0 }))
    }
}

struct Shop;
struct Lab;

impl Plugin for Shop {
    type Config = serde_json::Map<String, Value>;
    const NAME: &'static str = "shop";
    const VERSION: &'static str = "0.0.0";

    async fn new(_: PluginInit<Self::Config>) -> Result<Self, PluginError> {
        Ok(Shop)
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(ShopDays)
    }

    fn timezone(&self) -> Option<String> {
        Some("America/New_York".into())
    }
}

impl Plugin for Lab {
    type Config = serde_json::Map<String, Value>;
    const NAME: &'static str = "lab";
    const VERSION: &'static str = "0.0.0";

    async fn new(_: PluginInit<Self::Config>) -> Result<Self, PluginError> {
        Ok(Lab)
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(LabDays)
    }
}

/// The same rule for both plugins: only the plugins' zones differ.
const POLICY: &str = r#"version: 1
ttl_classes: { real_time: 1m, past: 1d }
rules:
  - name: shop-days
    match: { plugin: shop }
    key: "shop:{query.date}:{query.n}"
    ttl: { duration: 5m, when: [ { if: "query.date < today", ttl: past }, { if: "query.date == today", ttl: real_time } ] }
  - name: lab-days
    match: { plugin: lab }
    key: "lab:{query.date}:{query.n}"
    ttl: { duration: 5m, when: [ { if: "query.date < today", ttl: past }, { if: "query.date == today", ttl: real_time } ] }
"#;

/// 2026-12-01T23:30:00Z: 18:30 in New York.
const START: &str = "2026-12-01T23:30:00Z";

async fn app() -> (App, std::sync::Arc<Server>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("days.yaml"), POLICY).unwrap();
    let config = format!(
        "policies: {}\nserver: {{ clock_start: \"{START}\" }}\nplugins:\n  shop: {{ prefix: /shop }}\n  lab: {{ prefix: /lab }}\n",
        dir.path().display()
    );
    let loaded = LoadedConfig::parse(&dir.path().join("larder.yaml"), &config).unwrap();
    let mut registry = PluginRegistry::empty();
    registry.register::<Shop>();
    registry.register::<Lab>();
    let (app, endpoint) = App::build(loaded, &registry).await.expect("app builds");
    (app, endpoint, dir)
}

/// Stores `plugin`'s answer for `date` (a fresh key each call) and returns the TTL the
/// entry was stored with.
async fn stored_ttl(app: &App, endpoint: &Server, plugin: &str, date: &str, n: u32) -> u64 {
    let req = Request::builder()
        .uri(
            format!("/{plugin}/slots?date={date}&n={n}")
                .parse()
                .unwrap(),
        )
        .finish();
    let resp = endpoint.call(req).await.expect("an answer");
    assert_eq!(resp.status(), StatusCode::OK);
    let key = format!("{plugin}:{date}:{n}");
    let entry = app
        .engine
        .cache
        .lookup(&key, &larder_store::CallOptions::default())
        .await
        .unwrap_or_else(|| panic!("{key} stored"));
    entry.entry.ttl.as_secs()
}

#[tokio::test(start_paused = true)]
async fn today_is_the_shops_date_on_both_sides_of_midnight() {
    let (app, endpoint, _dir) = app().await;
    let mut n = 0;
    let mut ttl = async |plugin: &str, date: &str| {
        n += 1;
        stored_ttl(&app, &endpoint, plugin, date, n).await
    };

    // 18:30 in New York, 23:30 UTC: both are still on 12-01.
    assert_eq!(ttl("shop", "2026-12-01").await, 60);
    assert_eq!(ttl("lab", "2026-12-01").await, 60);
    assert_eq!(ttl("shop", "2026-12-02").await, 300);

    // 19:30 in New York, 00:30 UTC: UTC's date moved, the shop's did not. (Before the shop
    // zone, the shop's today got a day and its tomorrow a minute from 19:00 on.)
    tokio::time::advance(Duration::from_secs(3_600)).await;
    assert_eq!(ttl("shop", "2026-12-01").await, 60);
    assert_eq!(ttl("shop", "2026-12-02").await, 300);
    assert_eq!(ttl("lab", "2026-12-01").await, 86_400);
    assert_eq!(ttl("lab", "2026-12-02").await, 60);

    // 00:30 in New York: now the shop's day has turned too.
    tokio::time::advance(Duration::from_secs(5 * 3_600)).await;
    assert_eq!(ttl("shop", "2026-12-01").await, 86_400);
    assert_eq!(ttl("shop", "2026-12-02").await, 60);
    assert_eq!(ttl("lab", "2026-12-02").await, 60);

    // `larder explain` says the same, from the same clock.
    let req = larder_policy::Request::new("GET", "/shop/slots?date=2026-12-02&n=99");
    let text = app.explain(&req).unwrap().to_string();
    assert!(
        text.contains("ttl:     1m (when `query.date == today`)"),
        "{text}"
    );
    assert!(
        text.contains("today:   2026-12-02 in America/New_York (from plugin shop)"),
        "{text}"
    );
}
