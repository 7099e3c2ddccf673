//! `hello`: a small plugin that shows every part of the plugin API.
//!
//! - `GET /greetings/{name}` answers a greeting after a configurable delay (a stand-in for
//!   a slow origin, so the cache has something to save); its policy caches it.
//! - `PUT /greetings/{name}` takes a JSON body, stores a custom greeting and emits
//!   `greeting.updated`, which the plugin's policy turns into an exact invalidation.
//! - `GET /me` says who is asking: the principal the core verified (a JWT, an API key), or
//!   nobody. A handler never reads identity from headers itself.
//! - `GET /languages` caches a value from code (`PluginContext::get_or_load`) under a rule
//!   its policy names (`hello-languages`), declared in `named_rules`: the seed-style
//!   `@cached` for work a route does not map one-to-one.
//! - A warm source, `hello.greetings`, lists the greetings worth having ready at start; the
//!   policy's warming job runs it through the server like client requests.
//! - `http_defaults`: the browser origins allowed to call it (CORS), unless the operator
//!   configures others.
//! - `DEFAULT_POLICY`: its caching rules ship with it (`policy.yaml`).
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

use larder_plugin::{
    EventKind, EventSpec, HttpDefaults, NamedRule, NamedRuleSpec, Plugin, PluginApi, PluginContext,
    PluginError, PluginInit, WarmRequest, WarmSource, WarmSourceSpec,
};
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

/// Languages the plugin can greet in.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Languages {
    /// Language codes with the word for "hello".
    languages: Vec<Language>,
    /// Whether this answer came from the cache (`get_or_load` says so).
    cached: bool,
}

/// One language.
#[derive(Object, Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Language {
    /// BCP 47 code.
    code: String,
    /// "Hello" in it.
    hello: String,
}

// Events, rules used from code and warm sources are declared once, as constants, and used
// both where they are declared to the core and where the code uses them: a misspelt or
// undeclared name does not compile.

/// Emitted when a custom greeting is stored.
const GREETING_UPDATED: EventKind = EventKind::new(
    "greeting.updated",
    &["name"],
    "A custom greeting was stored for `name`.",
);
/// The rule `GET /languages` caches under from code; `policy.yaml` gives it its TTL.
const LANGUAGES_RULE: NamedRule = NamedRule::new("hello-languages");
/// The greetings to have ready at start.
const WARM_GREETINGS: WarmSource =
    WarmSource::new("greetings", "The greetings worth having ready at start.");
/// Names the warm source greets.
const WARM_NAMES: &[&str] = &["world", "there"];

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

    /// Languages it can greet in, loaded slowly once and then from the cache (the rule
    /// `hello-languages` of its policy sets for how long).
    #[oai(path = "/languages", method = "get", operation_id = "list_languages")]
    async fn list_languages(&self) -> Json<Languages> {
        let delay = Duration::from_millis(self.state.config.delay_ms);
        let loaded = self
            .state
            .context
            .get_or_load(&LANGUAGES_RULE, "languages", move || async move {
                tokio::time::sleep(delay).await;
                let all = [
                    ("en", "Hello"),
                    ("fr", "Bonjour"),
                    ("de", "Hallo"),
                    ("ja", "Konnichiwa"),
                ];
                Ok(all
                    .iter()
                    .map(|(code, hello)| Language {
                        code: (*code).into(),
                        hello: (*hello).into(),
                    })
                    .collect::<Vec<_>>())
            })
            .await;
        match loaded {
            Ok(v) => Json(Languages {
                languages: v.value,
                cached: v.cache_hit,
            }),
            // The cache itself failing never fails the route: the list is tiny.
            Err(e) => {
                tracing::warn!(error = %e, "hello: languages not cached");
                Json(Languages {
                    languages: Vec::new(),
                    cached: false,
                })
            }
        }
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
            .emit(&GREETING_UPDATED, serde_json::json!({ "name": name.0 }));
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
        vec![GREETING_UPDATED.spec()]
    }

    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        vec![LANGUAGES_RULE.spec(&["list_languages"], "the fixed key `languages`")]
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![WARM_GREETINGS.spec()]
    }

    async fn warm_source(&self, name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        match name {
            n if n == WARM_GREETINGS.name => Ok(WARM_NAMES
                .iter()
                .map(|n| WarmRequest::get(format!("/greetings/{n}")))
                .collect()),
            other => Err(PluginError::failed(format!("no warm source `{other}`"))),
        }
    }

    fn http_defaults(&self) -> HttpDefaults {
        HttpDefaults {
            // A local front end may call it from the browser; the operator's
            // `plugins.hello.cors_origins` replaces this.
            cors_origins: vec!["http://localhost:3000".into()],
            ..HttpDefaults::default()
        }
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
