//! Testing a plugin in process: [`mount`] builds the whole application — the request
//! pipeline, the policy (the plugin's own unless the test gives one), the cache — around
//! one plugin, and hands back a [`poem::test::TestClient`] for it. No port, no process, no
//! fake host: what a test sees is what the server does.
//!
//! ```ignore
//! let m = larder_core::testing::mount::<MyPlugin>(Mount::default()).await;
//! let first = m.client.get("/items/1").send().await;
//! first.assert_status_is_ok();
//! let again = m.client.get("/items/1").send().await;
//! assert!(m.cache_status(&again).contains("hit"));
//! ```

use std::sync::Arc;

use larder_plugin::Plugin;
use poem::test::{TestClient, TestResponse};

use crate::app::App;
use crate::config::LoadedConfig;
use crate::http::pipeline::Server;
use crate::plugins::PluginRegistry;

/// How to mount the plugin.
#[derive(Debug, Clone, Default)]
pub struct Mount {
    /// Mount prefix (`""`: the plugin's own paths).
    pub prefix: String,
    /// The plugin's settings (`plugins.<name>.settings`), as JSON; `null` for its defaults.
    pub settings: serde_json::Value,
    /// A policy file's YAML to use instead of the one the plugin ships.
    pub policy: Option<String>,
    /// More of the config file, YAML (e.g. `server: { clock_start: "2026-03-04T15:00:00Z" }`).
    pub config: String,
}

/// A plugin mounted in a whole application.
pub struct Mounted {
    /// Requests to the application (the plugin's routes, the admin API, `/openapi.json`).
    pub client: TestClient<Arc<Server>>,
    /// The application: its cache engine (`app.engine.cache`), policy, warmer.
    pub app: App,
    _dir: tempfile::TempDir,
}

impl Mounted {
    /// The answer's `Cache-Status` header (`larder; hit; ...`), or `""`.
    pub fn cache_status(&self, resp: &TestResponse) -> String {
        resp.0
            .headers()
            .get("cache-status")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned()
    }
}

/// Builds the application around plugin `P` alone, with a memory cache and rate limits off.
///
/// # Panics
/// When the plugin or its policy does not load: the message is the server's own.
pub async fn mount<P: Plugin>(m: Mount) -> Mounted {
    let dir = tempfile::tempdir().expect("a temporary folder");
    if let Some(policy) = &m.policy {
        std::fs::write(dir.path().join("policy.yaml"), policy).expect("policy written");
    }
    // No settings: the plugin's defaults (an empty map, as an empty `settings:` means).
    let settings = match &m.settings {
        serde_json::Value::Null => "{}".to_owned(),
        other => serde_json::to_string(other).expect("settings are JSON"),
    };
    let config = format!(
        "policies: \"{}\"\nplugins:\n  {}:\n    prefix: \"{}\"\n    settings: {settings}\n    rate_limit: {{ per_second: 0, per_minute: 0 }}\n{}\n",
        dir.path().display(),
        P::NAME,
        m.prefix,
        m.config
    );
    let loaded = LoadedConfig::parse(&dir.path().join("larder.yaml"), &config)
        .unwrap_or_else(|d| panic!("config:\n{config}\n{d}"));
    let mut registry = PluginRegistry::empty();
    registry.register::<P>();
    let (app, endpoint) = App::build(loaded, &registry)
        .await
        .unwrap_or_else(|e| panic!("the application does not build: {e}"));
    Mounted {
        client: TestClient::new(endpoint),
        app,
        _dir: dir,
    }
}
