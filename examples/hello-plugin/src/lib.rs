//! `hello`: a small plugin that shows every part of the plugin API.
//!
//! - `GET /greetings/{name}` answers a greeting after a configurable delay (a stand-in for
//!   a slow origin, so the cache has something to save); its policy caches it.
//! - `PUT /greetings/{name}` takes a JSON body, stores a custom greeting and emits
//!   `greeting.updated`, which the plugin's policy turns into an exact invalidation.
//! - `GET /me` says who is asking: the principal the core verified (a JWT, an API key), or
//!   nobody. A handler never reads identity from headers itself.
//!
//! Build it as a shared library and list it in the config:
//! ```yaml
//! plugins:
//!   hello:
//!     library: target/debug/libhello_plugin.so
//!     prefix: /hello
//!     settings: { default_greeting: "Hello", delay_ms: 50 }
//! ```

use larder_plugin::JsonBody;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use larder_plugin::{EventSpec, Plugin, PluginApi, PluginContext, PluginError, PluginInit};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use schemars::JsonSchema;
use serde::Deserialize;

/// Settings under `plugins.hello.settings`.
#[derive(Debug, Clone, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct HelloConfig {
    /// Greeting used for names without a custom one.
    pub default_greeting: String,
    /// Simulated origin latency of `GET /greetings/{name}`, in milliseconds.
    pub delay_ms: u64,
}

impl Default for HelloConfig {
    fn default() -> Self {
        Self {
            default_greeting: "Hello".into(),
            delay_ms: 20,
        }
    }
}

/// The plugin's state, shared by its routes.
pub struct HelloPlugin {
    state: Arc<State>,
}

struct State {
    config: HelloConfig,
    custom: RwLock<HashMap<String, String>>,
    context: PluginContext,
    me_calls: AtomicU64,
}

/// A greeting.
#[derive(Object, Debug)]
struct Greeting {
    /// Who is greeted.
    name: String,
    /// The full message.
    message: String,
    /// Whether a custom greeting was set for this name.
    custom: bool,
}

/// A custom greeting to store.
#[derive(Object, Debug)]
struct NewGreeting {
    /// The word(s) before the name, e.g. "Good morning".
    #[oai(validator(min_length = 1, max_length = 80))]
    greeting: String,
}

#[derive(ApiResponse)]
enum PutResponse {
    /// Stored; returns the greeting as it will now be served.
    #[oai(status = 200)]
    Ok(Json<Greeting>),
}

struct HelloApi {
    state: Arc<State>,
}

/// Who is asking, as the core verified it.
#[derive(Debug, Clone, Object)]
struct Me {
    /// The user (`jwt:<sub>`, `key:<name>`); absent for an anonymous request.
    user: Option<String>,
    /// The principal's tenant, when its credential names one.
    tenant: Option<String>,
    /// Its permissions.
    permissions: Vec<String>,
    /// How many times this handler has run: a cached answer repeats an earlier number.
    computed: u64,
}

impl State {
    fn greeting(&self, name: &str) -> Greeting {
        let custom = self.custom.read().expect("lock").get(name).cloned();
        let is_custom = custom.is_some();
        let word = custom.unwrap_or_else(|| self.config.default_greeting.clone());
        Greeting {
            name: name.to_owned(),
            message: format!("{word}, {name}!"),
            custom: is_custom,
        }
    }
}

#[OpenApi]
impl HelloApi {
    /// Greets `count` guests at once (`guest-1` ... `guest-N`): a larger, query-keyed
    /// answer, the kind stored compression pays off on.
    #[oai(path = "/greetings", method = "get", operation_id = "list_greetings")]
    async fn list_greetings(
        &self,
        /// How many guests (1-1000).
        #[oai(
            default = "default_count",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        count: Query<u32>,
    ) -> Json<Vec<Greeting>> {
        tokio::time::sleep(Duration::from_millis(self.state.config.delay_ms)).await;
        Json(
            (1..=count.0)
                .map(|i| self.state.greeting(&format!("guest-{i}")))
                .collect(),
        )
    }

    /// Greets `name` (slow on purpose: the origin the cache saves you from).
    #[oai(
        path = "/greetings/:name",
        method = "get",
        operation_id = "get_greeting"
    )]
    async fn get_greeting(&self, name: Path<String>) -> Json<Greeting> {
        tracing::info!(name = %name.0, "hello: computing greeting");
        tokio::time::sleep(Duration::from_millis(self.state.config.delay_ms)).await;
        Json(self.state.greeting(&name.0))
    }

    /// Who is asking: the principal the core verified, or nobody.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn get_me(&self, req: &larder_plugin::reexports::poem::Request) -> Json<Me> {
        let principal = larder_plugin::principal_of(req);
        Json(Me {
            user: principal.map(|p| p.user.clone()),
            tenant: principal.and_then(|p| p.tenant.clone()),
            permissions: principal.map(|p| p.permissions.clone()).unwrap_or_default(),
            computed: self.state.me_calls.fetch_add(1, Ordering::Relaxed) + 1,
        })
    }

    /// Sets a custom greeting for `name`; cached greetings for that name are invalidated.
    #[oai(
        path = "/greetings/:name",
        method = "put",
        operation_id = "put_greeting"
    )]
    async fn put_greeting(&self, name: Path<String>, body: JsonBody<NewGreeting>) -> PutResponse {
        self.state
            .custom
            .write()
            .expect("lock")
            .insert(name.0.clone(), body.0.greeting);
        self.state
            .context
            .emit("greeting.updated", serde_json::json!({ "name": name.0 }));
        PutResponse::Ok(Json(self.state.greeting(&name.0)))
    }
}

fn default_count() -> u32 {
    10
}

impl Plugin for HelloPlugin {
    type Config = HelloConfig;
    const NAME: &'static str = "hello";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Example dynamic plugin: greetings with a slow origin.";
    const DEFAULT_POLICY: Option<&'static str> = Some(include_str!("../policy.yaml"));

    async fn new(init: PluginInit<HelloConfig>) -> Result<Self, PluginError> {
        if init.config.default_greeting.trim().is_empty() {
            return Err(PluginError::Config {
                path: "default_greeting".into(),
                message: "must not be empty".into(),
            });
        }
        Ok(Self {
            state: Arc::new(State {
                config: init.config,
                custom: RwLock::new(HashMap::new()),
                context: init.context,
                me_calls: AtomicU64::new(0),
            }),
        })
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(HelloApi {
            state: self.state.clone(),
        })
    }

    fn events(&self) -> Vec<EventSpec> {
        vec![EventSpec::new(
            "greeting.updated",
            &["name"],
            "A custom greeting was stored for `name`.",
        )]
    }

    async fn start(&self) -> Result<(), PluginError> {
        // Background work goes through the context, which runs it on the server's runtime.
        let state = self.state.clone();
        self.state.context.spawn(async move {
            tokio::time::sleep(Duration::from_millis(1)).await;
            tracing::info!(
                default_greeting = %state.config.default_greeting,
                "hello plugin started"
            );
        });
        Ok(())
    }
}

larder_plugin::export_plugin!(HelloPlugin);
