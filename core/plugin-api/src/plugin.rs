//! The [`Plugin`] trait and its type-erased form.
//!
//! Plugin authors implement [`Plugin`]; the core never sees the concrete type. [`factory`]
//! erases it into a [`PluginFactory`] (settings validation and construction) that builds a
//! [`DynPlugin`] (the running plugin). Every future and call that crosses this boundary is
//! guarded: it runs inside the host's tokio runtime and a panic becomes a
//! [`PluginError::Panicked`] instead of unwinding into the host.

use std::future::Future;
use std::marker::PhantomData;
use std::sync::Arc;

use futures::future::BoxFuture;
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

use crate::abi::{self, guard};
use crate::api::PluginApi;
use crate::context::{
    EventSpec, HttpDefaults, NamedRuleSpec, PluginContext, WarmRequest, WarmSourceSpec,
};
use crate::identity::RoutePermission;

/// Why a plugin could not be configured, built, or could not do what was asked.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PluginError {
    /// The plugin's settings do not fit its typed config. `path` is the dotted path inside
    /// the plugin's `settings` block (empty for the block itself).
    #[error("invalid setting `{path}`: {message}")]
    Config { path: String, message: String },
    /// The plugin failed; the message says what to do about it.
    #[error("{0}")]
    Failed(String),
    /// Plugin code panicked. The panic was caught at the boundary; the server keeps running.
    #[error("plugin code panicked: {0}")]
    Panicked(String),
}

impl PluginError {
    /// A failure with a message for the operator.
    pub fn failed(message: impl Into<String>) -> Self {
        Self::Failed(message.into())
    }
}

/// What a plugin receives when it is built.
pub struct PluginInit<C> {
    /// The plugin's typed settings (`plugins.<name>.settings` in the config file; the
    /// type's `Default` when the block is absent).
    pub config: C,
    /// The core's services: cache, events, spawning.
    pub context: PluginContext,
}

/// A domain plugin: routes plus what the cache policy needs to know about them.
///
/// Hooks run in this order: [`Plugin::new`] → [`Plugin::api`] (routes mounted) →
/// [`Plugin::start`] → serving (with [`Plugin::warm_source`] called by warming jobs) →
/// [`Plugin::stop`] on shutdown. Every hook but `new` and `api` has a default that does
/// nothing, so a plugin only writes what it needs.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Typed settings, validated when the config loads. Doc comments on its fields become
    /// the descriptions in the config's JSON Schema.
    type Config: DeserializeOwned + JsonSchema + Default + Send + Sync + 'static;

    /// The plugin's name: its config key, its OpenAPI tag, the `plugin` of policy rules.
    const NAME: &'static str;
    /// The plugin's own version, shown by `/admin/plugins`.
    const VERSION: &'static str;
    /// One line for the OpenAPI tag description.
    const DESCRIPTION: &'static str = "";
    /// The policy the plugin ships (a policy file's YAML, e.g.
    /// `include_str!("../policy.yaml")`): the core uses it when the operator's policy folder
    /// has no rule, trigger or warming job naming the plugin, so a plugin's routes are cached
    /// as its author meant without a copy step. Writing any rule for the plugin in the folder
    /// replaces it as a whole.
    const DEFAULT_POLICY: Option<&'static str> = None;

    /// Builds the plugin from validated settings.
    ///
    /// Use it for everything the routes need before the first request: open or create the
    /// database, build upstream clients, check credentials. An error stops start-up with
    /// the message shown to the operator, so say what to fix.
    fn new(
        init: PluginInit<Self::Config>,
    ) -> impl Future<Output = Result<Self, PluginError>> + Send;

    /// The plugin's routes, as a poem-openapi API (a tuple of APIs works too).
    ///
    /// Called once after [`Plugin::new`]. The core mounts the routes at the configured
    /// prefix, tags them with [`Plugin::NAME`] in the merged OpenAPI document and puts the
    /// caching layer in front of each one.
    fn api(&self) -> PluginApi;

    /// The events this plugin emits through [`PluginContext::emit`], with the fields each
    /// carries. Policy `triggers:` are validated against this list, so declare every event.
    fn events(&self) -> Vec<EventSpec> {
        Vec::new()
    }

    /// What each route needs (permissions, all required); routes not listed are public.
    /// The core authenticates and authorizes before anything else, a cache hit included.
    fn permissions(&self) -> Vec<RoutePermission> {
        Vec::new()
    }

    /// The policy rules this plugin caches under from code ([`PluginContext::get_or_load`]),
    /// with the routes that use each: `larder explain` shows them for those routes.
    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        Vec::new()
    }

    /// The IANA time zone this plugin's business days are in (a shop's local day), if not
    /// UTC. Policy conditions on its routes and warming jobs for them read `today` in it
    /// unless the policy names another zone, so `query.date == today` means the shop's
    /// today after 19:00 in New York too.
    fn timezone(&self) -> Option<String> {
        None
    }

    /// Rate limits and CORS origins this plugin's routes should have unless the operator
    /// configures others (`plugins.<name>.rate_limit`, `plugins.<name>.cors_origins`).
    fn http_defaults(&self) -> HttpDefaults {
        HttpDefaults::default()
    }

    /// The body of an error the core answers on this plugin's routes in the handler's place
    /// (401, 403, 413, 429, a failed origin...), for a plugin whose clients expect one error
    /// shape on its paths. `error` is the core's code (`rate_limited`, `unauthorized`, ...),
    /// `message` its explanation; the status and headers (`Retry-After`,
    /// `WWW-Authenticate`) stay the core's. `None` keeps the core's
    /// `{"error", "message"}`. A plugin that gives a body names its schema in
    /// [`Plugin::core_error_schema`].
    fn core_error_body(
        &self,
        status: u16,
        error: &str,
        message: &str,
    ) -> Option<serde_json::Value> {
        let _ = (status, error, message);
        None
    }

    /// The name of the schema [`Plugin::core_error_body`]'s bodies follow: one this
    /// plugin's API registers (the type of its own error responses, e.g.
    /// `AliexpressErrorEnvelope`). The merged OpenAPI document declares the core's answers
    /// on this plugin's routes (401, 413, 429...) with it, so they are documented with the
    /// body clients really get; the server refuses to start if no such schema is
    /// registered. `None` (the default) goes with a `core_error_body` that gives none:
    /// those answers are the core's `ApiError`.
    fn core_error_schema(&self) -> Option<String> {
        None
    }

    /// Named warm sources a warming job can use instead of a fixed request list, for when
    /// the requests worth warming depend on data (every barber, every category, ...).
    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        Vec::new()
    }

    /// The requests a warm source stands for right now. Called by warming jobs.
    fn warm_source(
        &self,
        name: &str,
    ) -> impl Future<Output = Result<Vec<WarmRequest>, PluginError>> + Send {
        let message = format!("plugin `{}` has no warm source `{name}`", Self::NAME);
        async move { Err(PluginError::Failed(message)) }
    }

    /// Runs after routes are mounted and before the server reports ready.
    ///
    /// Use it for background work that needs the server's runtime (refresh loops started
    /// with [`PluginContext::spawn`]), not for set-up the routes depend on (that is `new`).
    fn start(&self) -> impl Future<Output = Result<(), PluginError>> + Send {
        async { Ok(()) }
    }

    /// Runs during graceful shutdown, after in-flight requests have drained: flush and close.
    fn stop(&self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// A running plugin, as the core drives it.
pub trait DynPlugin: Send + Sync {
    /// See [`Plugin::NAME`].
    fn name(&self) -> &'static str;
    /// See [`Plugin::api`].
    fn api(&self) -> Result<PluginApi, PluginError>;
    /// See [`Plugin::events`].
    fn events(&self) -> Vec<EventSpec>;
    /// See [`Plugin::named_rules`].
    fn named_rules(&self) -> Vec<NamedRuleSpec>;
    /// See [`Plugin::permissions`].
    fn permissions(&self) -> Vec<RoutePermission>;
    /// See [`Plugin::warm_sources`].
    fn warm_sources(&self) -> Vec<WarmSourceSpec>;
    /// See [`Plugin::timezone`].
    fn timezone(&self) -> Option<String>;
    /// See [`Plugin::http_defaults`].
    fn http_defaults(&self) -> HttpDefaults;
    /// See [`Plugin::core_error_body`].
    fn core_error_body(&self, status: u16, error: &str, message: &str)
    -> Option<serde_json::Value>;
    /// See [`Plugin::core_error_schema`].
    fn core_error_schema(&self) -> Option<String>;
    /// See [`Plugin::warm_source`].
    fn warm_source<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WarmRequest>, PluginError>>;
    /// See [`Plugin::start`].
    fn start(&self) -> BoxFuture<'_, Result<(), PluginError>>;
    /// See [`Plugin::stop`].
    fn stop(&self) -> BoxFuture<'_, Result<(), PluginError>>;
}

/// Validates settings for, and builds, one kind of plugin.
pub trait PluginFactory: Send + Sync {
    /// See [`Plugin::NAME`].
    fn name(&self) -> &'static str;
    /// See [`Plugin::VERSION`].
    fn version(&self) -> &'static str;
    /// See [`Plugin::DESCRIPTION`].
    fn description(&self) -> &'static str;
    /// See [`Plugin::DEFAULT_POLICY`].
    fn default_policy(&self) -> Option<&'static str>;
    /// JSON Schema of the plugin's settings.
    fn config_schema(&self) -> serde_json::Value;
    /// Checks settings without building the plugin (`larder check`).
    fn validate(&self, settings: &serde_json::Value) -> Result<(), PluginError>;
    /// Builds the plugin.
    fn create(
        &self,
        settings: serde_json::Value,
        context: PluginContext,
    ) -> BoxFuture<'static, Result<Arc<dyn DynPlugin>, PluginError>>;
}

/// Erases a plugin type into the factory the core registers.
pub fn factory<P: Plugin>() -> Box<dyn PluginFactory> {
    Box::new(Factory::<P>(PhantomData))
}

struct Factory<P>(PhantomData<fn() -> P>);

fn parse_settings<C: DeserializeOwned + Default>(
    settings: &serde_json::Value,
) -> Result<C, PluginError> {
    if settings.is_null() {
        return Ok(C::default());
    }
    serde_path_to_error::deserialize(settings).map_err(|e| {
        let path = e.path().to_string();
        PluginError::Config {
            path: if path == "." { String::new() } else { path },
            message: e.into_inner().to_string(),
        }
    })
}

impl<P: Plugin> PluginFactory for Factory<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn version(&self) -> &'static str {
        P::VERSION
    }

    fn description(&self) -> &'static str {
        P::DESCRIPTION
    }

    fn default_policy(&self) -> Option<&'static str> {
        P::DEFAULT_POLICY
    }

    fn config_schema(&self) -> serde_json::Value {
        abi::catch(|| serde_json::to_value(schemars::schema_for!(P::Config)).unwrap_or_default())
            .unwrap_or_default()
    }

    fn validate(&self, settings: &serde_json::Value) -> Result<(), PluginError> {
        abi::catch(|| parse_settings::<P::Config>(settings).map(drop))?
    }

    fn create(
        &self,
        settings: serde_json::Value,
        context: PluginContext,
    ) -> BoxFuture<'static, Result<Arc<dyn DynPlugin>, PluginError>> {
        Box::pin(async move {
            guard(async move {
                let config = parse_settings::<P::Config>(&settings)?;
                let plugin = P::new(PluginInit { config, context }).await?;
                Ok(Arc::new(Running(plugin)) as Arc<dyn DynPlugin>)
            })
            .await?
        })
    }
}

struct Running<P>(P);

impl<P: Plugin> DynPlugin for Running<P> {
    fn name(&self) -> &'static str {
        P::NAME
    }

    fn api(&self) -> Result<PluginApi, PluginError> {
        abi::catch(|| self.0.api())
    }

    fn events(&self) -> Vec<EventSpec> {
        abi::catch(|| self.0.events()).unwrap_or_default()
    }

    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        abi::catch(|| self.0.named_rules()).unwrap_or_default()
    }

    fn permissions(&self) -> Vec<RoutePermission> {
        abi::catch(|| self.0.permissions()).unwrap_or_default()
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        abi::catch(|| self.0.warm_sources()).unwrap_or_default()
    }

    fn timezone(&self) -> Option<String> {
        abi::catch(|| self.0.timezone()).unwrap_or_default()
    }

    fn http_defaults(&self) -> HttpDefaults {
        abi::catch(|| self.0.http_defaults()).unwrap_or_default()
    }

    fn core_error_body(
        &self,
        status: u16,
        error: &str,
        message: &str,
    ) -> Option<serde_json::Value> {
        abi::catch(|| self.0.core_error_body(status, error, message))
            .ok()
            .flatten()
    }

    fn core_error_schema(&self) -> Option<String> {
        abi::catch(|| self.0.core_error_schema()).ok().flatten()
    }

    fn warm_source<'a>(
        &'a self,
        name: &'a str,
    ) -> BoxFuture<'a, Result<Vec<WarmRequest>, PluginError>> {
        Box::pin(async move { guard(self.0.warm_source(name)).await? })
    }

    fn start(&self) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(async move { guard(self.0.start()).await? })
    }

    fn stop(&self) -> BoxFuture<'_, Result<(), PluginError>> {
        Box::pin(guard(self.0.stop()))
    }
}
