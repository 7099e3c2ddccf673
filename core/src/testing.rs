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
//!
//! # What the plugin did
//! The host the plugin talks to is the server's own, with a recorder attached that notes
//! each service call after the host has carried it out, in the order it happened:
//! - [`Mounted::events`]: the events the plugin emitted (name and fields). Their policy
//!   triggers ran for real; the purges they made are in the engine's audit log
//!   (`m.app.engine.audit(n)`). [`Mounted::on_event`] runs a check at the moment of the
//!   emit, on the emitting task (was the change committed before its event?).
//! - [`Mounted::invalidations`]: each purge the plugin asked for, as it wrote it, and how
//!   many entries it removed.
//! - [`Mounted::warms`]: each warm source the plugin ran through the server, and its run.
//! - [`Mounted::loads`]: each `get_or_load` once finished: rule, the plugin's key, and
//!   whether the cache answered ([`LoadOutcome`]).
//!
//! Only what happens after [`mount`] returns is noted: not the plugin's `new`.
//!
//! # Time
//! The server's clock starts at the wall time unless the config sets one
//! (`config: "server: { clock_start: \"2026-03-04T15:00:00Z\" }"`), and then runs with
//! tokio's clock. To age entries past their TTL, move tokio's clock: in a current-thread
//! test, `tokio::time::pause()`, `tokio::time::advance(d).await`, `tokio::time::resume()`
//! (tokio's `test-util` feature), or `#[tokio::test(start_paused = true)]` for a test
//! whose clock should not move unless told.
//!
//! # Credentials
//! Routes that need a permission (a plugin's cache-admin aliases, the admin API) answer 401
//! unless the config gives a credential, e.g. `security: { admin_keys: [{ key: "...",
//! role: write }] }` (16 characters at least) and an `x-admin-key` header on the request.

use std::sync::Arc;

use larder_plugin::{DynPlugin, Event, Plugin};
use poem::test::{TestClient, TestResponse};

use crate::app::App;
use crate::config::LoadedConfig;
use crate::http::pipeline::Server;
use crate::plugins::PluginRegistry;
use crate::plugins::record::Recorder;

pub use crate::plugins::record::{Invalidated, Load, LoadOutcome, Warmed};

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
    recorder: Arc<Recorder>,
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

    /// The plugin, as the server drives it (its warm sources, events, routes).
    pub fn plugin(&self) -> &Arc<dyn DynPlugin> {
        &self.app.plugins[0].plugin
    }

    /// The events the plugin emitted, oldest first.
    pub fn events(&self) -> Vec<Event> {
        self.recorder.events()
    }

    /// The events named `name` (`appointment.created`), oldest first.
    pub fn events_named(&self, name: &str) -> Vec<Event> {
        self.recorder
            .events()
            .into_iter()
            .filter(|e| e.name == name)
            .collect()
    }

    /// Runs `check` on each event from now on, at the moment the plugin emits it: on the
    /// handler's task, before the event's triggers run and the response leaves.
    pub fn on_event(&self, check: impl Fn(&Event) + Send + Sync + 'static) {
        self.recorder.observe_events(Arc::new(check));
    }

    /// The purges the plugin asked for, oldest first.
    pub fn invalidations(&self) -> Vec<Invalidated> {
        self.recorder.invalidations()
    }

    /// The warm sources the plugin ran, oldest first.
    pub fn warms(&self) -> Vec<Warmed> {
        self.recorder.warms()
    }

    /// The plugin's `get_or_load` calls, in the order they finished.
    pub fn loads(&self) -> Vec<Load> {
        self.recorder.loads()
    }

    /// Keys in the cache matching `pattern` (`*`, `?`), sorted; a plugin's `get_or_load`
    /// keys are stored as `<plugin>:<key>`, its routes' as their rule's key template says.
    pub async fn cached_keys(&self, pattern: &str) -> Vec<String> {
        let found = self
            .app
            .engine
            .cache
            .keys(pattern, 100_000)
            .await
            .expect("the cache lists its keys");
        let mut keys: Vec<String> = found.into_iter().map(|k| k.key).collect();
        keys.sort();
        keys
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
    let recorder = Arc::new(Recorder::default());
    app.host.record_into(recorder.clone());
    Mounted {
        client: TestClient::new(endpoint),
        app,
        recorder,
        _dir: dir,
    }
}
