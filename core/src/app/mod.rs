//! The application: its parts built from the config, in named steps ([`App::build`]), and
//! started, served ([`serve`]) and stopped.
//!
//! Build order: check the config and resolve the plugins → build the plugins → merge their
//! APIs with the core's into one OpenAPI document → the policy catalog (every route, event,
//! warm source) → the cache engine and policies → one [`Pipeline`] per route, behind poem's
//! router.

pub mod cli;
mod explain;
mod listen;
mod serve;
mod system;

pub use serve::serve;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use larder_plugin::PluginApi;
use larder_policy::Catalog;
use larder_store::Cache;
use poem::endpoint::{BoxEndpoint, make_sync};
use poem::http::Method;
use poem::{EndpointExt, Response, Route};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{AdminApi, AdminKeys, AdminState, PluginInfo};
use crate::cache::Engine;
use crate::config::LoadedConfig;
use crate::config::RateLimit;
use crate::http::admission::{Admission, Cors, Limiter};
use crate::http::auth::Authenticator;
use crate::http::compression::CodedBodies;
use crate::http::error::ApiError;
use crate::http::pipeline::{PathEndpoint, Pipeline, Server};
use crate::jobs::warming::Warmer;
use crate::plugins::host::CoreHost;
use crate::plugins::openapi::{self, Merged, Mount, Operation};
use crate::plugins::{self, LoadedPlugin, PluginRegistry};
use crate::telemetry::metrics::Meter;
use larder_policy::Diagnostics;
use system::SystemApi;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Problems in the user's files (config, plugin settings, policies), each with a
    /// position.
    #[error("{0}")]
    Invalid(#[from] Diagnostics),
    /// The plugins' APIs do not fit together in one document.
    #[error("the plugins' APIs conflict:\n{}", .0.join("\n"))]
    Conflicts(Vec<String>),
    /// A plugin failed to start.
    #[error("plugin `{plugin}` failed to start: {message}")]
    PluginStart {
        /// Which plugin.
        plugin: String,
        /// Its message.
        message: String,
    },
    /// The cache could not be set up.
    #[error("cache: {0}")]
    Cache(String),
    /// The listen address could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: String,
        /// Why.
        source: std::io::Error,
    },
}

/// Names of the core's own APIs, mounted first and never behind a policy rule.
const CORE_APIS: [&str; 2] = ["system", "admin"];

/// Whether a poem route path (`/greetings/:param0`, as poem-openapi registers it) is the
/// OpenAPI path `/greetings/{name}`; returns the parameter names in order if so.
fn same_route(poem: &str, oai: &str) -> Option<Vec<String>> {
    let (a, b): (Vec<&str>, Vec<&str>) = (poem.split('/').collect(), oai.split('/').collect());
    if a.len() != b.len() {
        return None;
    }
    let mut names = Vec::new();
    for (p, o) in a.iter().zip(&b) {
        match (
            p.strip_prefix(':'),
            o.strip_prefix('{').and_then(|o| o.strip_suffix('}')),
        ) {
            (Some(_), Some(name)) => names.push(name.to_owned()),
            (None, None) if p == o => {}
            _ => return None,
        }
    }
    Some(names)
}

/// A built application, not yet listening.
pub struct App {
    /// Verifies credentials (JWKS refreshes run once started).
    pub(crate) auth: Arc<Authenticator>,
    /// Rate limiters, trimmed periodically.
    limiters: Vec<Arc<Limiter>>,
    /// Cache and policies.
    pub engine: Arc<Engine>,
    /// Warming jobs.
    pub warmer: Arc<Warmer>,
    /// Cancelled when the server stops: ends background loops.
    pub shutdown: CancellationToken,
    /// The merged OpenAPI document (JSON).
    pub openapi_json: String,
    /// The merged OpenAPI document (YAML).
    pub openapi_yaml: String,
    /// Every operation of every plugin.
    pub operations: Vec<Operation>,
    /// The loaded plugins.
    pub plugins: Vec<LoadedPlugin>,
    /// Set once plugins started.
    pub ready: Arc<AtomicBool>,
    /// Background tasks of plugins and the core.
    pub tasks: TaskTracker,
    /// Services shared with plugins.
    pub host: Arc<CoreHost>,
    /// The effective config.
    pub config: LoadedConfig,
}

/// What the route step needs from the steps before it.
struct Parts<'a> {
    config: &'a LoadedConfig,
    plugins: &'a [LoadedPlugin],
    operations: &'a [Operation],
    engine: &'a Arc<Engine>,
    auth: &'a Arc<Authenticator>,
    coded: Arc<CodedBodies>,
}

/// A plugin's admission defaults after the config's overrides: its limiter and CORS.
struct PluginHttp {
    limiter: Option<Arc<Limiter>>,
    cors: Option<Arc<Cors>>,
}

impl App {
    /// Resolves and builds the plugins and merges everything into one router and document.
    /// Returns the application and its root endpoint.
    pub async fn build(
        config: LoadedConfig,
        registry: &PluginRegistry,
    ) -> Result<(Self, Arc<Server>), StartError> {
        let paths = vec![config.config.policies.clone()];
        Self::assemble(config, registry, paths, false).await
    }

    /// Builds the application only to look at it (`larder check`, `explain`, `openapi`):
    /// the same routes, rules and documents, with the plugins told they are inspected
    /// ([`larder_plugin::PluginContext::inspecting`]) so that checking creates no database
    /// and generates no data. The policies come from `policy_paths` (folders or files) when
    /// given, else from the config's folder.
    pub async fn inspect(
        config: LoadedConfig,
        registry: &PluginRegistry,
        policy_paths: Option<Vec<PathBuf>>,
    ) -> Result<(Self, Arc<Server>), StartError> {
        let paths = policy_paths.unwrap_or_else(|| vec![config.config.policies.clone()]);
        Self::assemble(config, registry, paths, true).await
    }

    async fn assemble(
        config: LoadedConfig,
        registry: &PluginRegistry,
        policy_paths: Vec<PathBuf>,
        inspecting: bool,
    ) -> Result<(Self, Arc<Server>), StartError> {
        // An unparseable `clock_start` is reported by `check`; the wall clock stands in.
        let clock = config.config.server.clock().unwrap_or_default();
        let (resolved, auth) = check(&config, registry, clock)?;
        auth.refresh_jwks(false).await;
        if let Some(at) = &config.config.server.clock_start {
            tracing::warn!(clock_start = %at, "the server's clock starts at a chosen instant, not the wall time");
        }
        let tasks = TaskTracker::new();
        let host = CoreHost::new(tasks.clone(), clock, inspecting);
        let plugins = plugins::build(&config, resolved, host.clone()).await?;

        let ready = Arc::new(AtomicBool::new(false));
        let admin = Arc::new(AdminState {
            plugins: plugins.iter().map(PluginInfo::of).collect(),
            engine: Default::default(),
            warmer: Default::default(),
            report: config.config.report.clone(),
        });
        let mut merged = merge_apis(&plugins, ready.clone(), admin.clone())?;
        check_permissions(&config, &merged.operations)?;
        merged
            .declare(&admission(&config), |op| {
                operation_admission(&config, &plugins, op)
            })
            .map_err(|e| StartError::Conflicts(vec![e]))?;
        let catalog = catalog(&merged.operations, &plugins, registry);
        let cache = Cache::with_clock(config.config.storage.clone(), clock)
            .await
            .map_err(|e| StartError::Cache(e.to_string()))?;
        let engine =
            Arc::new(Engine::new(cache, policy_paths, catalog).map_err(StartError::Invalid)?);
        host.attach(engine.clone());
        let warmer = Warmer::new(engine.clone(), &plugins);
        host.attach_warm_runner(warmer.clone());
        let _ = admin.engine.set(engine.clone());
        let _ = admin.warmer.set(warmer.clone());

        let Merged {
            json,
            yaml,
            swagger_html,
            operations,
            routes,
        } = merged;
        let parts = Parts {
            config: &config,
            plugins: &plugins,
            operations: &operations,
            engine: &engine,
            auth: &auth,
            // A sixteenth of L1's budget, within 1–64 MiB: compressed answers are the
            // smaller copies of what L1 holds as data.
            coded: Arc::new(CodedBodies::new(
                (engine.cache.l1().capacity() / 16).clamp(1 << 20, 64 << 20),
            )),
        };
        let (route, limiters) = parts.routes(routes)?;
        let route = parts.core_pages(route, (&json, &yaml, swagger_html), &warmer);
        // Concrete, not boxed: poem's server boxes it once more per request anyway.
        let endpoint = Arc::new(Server(route));
        warmer.set_endpoint(endpoint.clone());
        let app = Self {
            auth,
            limiters,
            engine,
            warmer,
            shutdown: CancellationToken::new(),
            openapi_json: json,
            openapi_yaml: yaml,
            operations,
            plugins,
            ready,
            tasks,
            host,
            config,
        };
        Ok((app, endpoint))
    }

    /// Runs every plugin's `start` hook and the start-up warming jobs, starts the warming
    /// schedule and the policy watcher, then reports ready.
    pub async fn start(&self) -> Result<(), StartError> {
        for p in &self.plugins {
            p.plugin
                .start()
                .await
                .map_err(|e| StartError::PluginStart {
                    plugin: p.name.to_owned(),
                    message: e.to_string(),
                })?;
        }
        self.warmer.run_startup().await;
        self.warmer.schedule(&self.tasks, self.shutdown.clone());
        crate::http::admission::maintain(self.limiters.clone(), &self.tasks, self.shutdown.clone());
        crate::telemetry::metrics::upkeep(&self.tasks, self.shutdown.clone());
        crate::jobs::reload::watch(self.engine.clone(), &self.tasks, self.shutdown.clone());
        self.auth.schedule(&self.tasks, self.shutdown.clone());
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Stops plugins and waits (bounded) for background tasks.
    pub async fn stop(&self, grace: Duration) {
        self.shutdown.cancel();
        for p in &self.plugins {
            if let Err(e) = p.plugin.stop().await {
                tracing::warn!(plugin = p.name, error = %e, "plugin stop hook failed");
            }
        }
        self.tasks.close();
        if tokio::time::timeout(grace, self.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("background tasks still running after the grace period");
        }
    }
}

/// Step 1: every problem of the config file, the plugins' settings and the auth set-up,
/// at once; the resolved plugins and the authenticator.
fn check(
    config: &LoadedConfig,
    registry: &PluginRegistry,
    clock: larder_store::Clock,
) -> Result<(Vec<plugins::Resolved>, Arc<Authenticator>), StartError> {
    let mut problems = config.check();
    let resolved = match plugins::resolve(config, registry) {
        Ok(r) => r,
        Err(Diagnostics(mut more)) => {
            problems.append(&mut more);
            Vec::new()
        }
    };
    let auth = match Authenticator::new(config, clock) {
        Ok(auth) => Some(Arc::new(auth)),
        Err(found) => {
            problems.extend(
                found
                    .into_iter()
                    .map(|(path, message)| config.diagnostic(&path, message)),
            );
            None
        }
    };
    match auth {
        Some(auth) if problems.is_empty() => Ok((resolved, auth)),
        _ => {
            let mut d = Diagnostics(problems);
            d.sort();
            Err(d.into())
        }
    }
}

/// Step 3: the core's APIs and every plugin's, merged into one document and route table.
fn merge_apis(
    plugins: &[LoadedPlugin],
    ready: Arc<AtomicBool>,
    admin: Arc<AdminState>,
) -> Result<Merged, StartError> {
    let mut mounts = vec![
        Mount {
            plugin: "system".into(),
            description: "Liveness and readiness.".into(),
            prefix: String::new(),
            api: PluginApi::new(SystemApi { ready }),
        },
        Mount {
            plugin: "admin".into(),
            description: "Cache administration (API key required).".into(),
            prefix: String::new(),
            api: PluginApi::new(AdminApi::new(admin)),
        },
    ];
    for p in plugins {
        let api = p.plugin.api().map_err(|e| StartError::PluginStart {
            plugin: p.name.to_owned(),
            message: e.to_string(),
        })?;
        mounts.push(Mount {
            plugin: p.name.to_owned(),
            description: p.description.to_owned(),
            prefix: p.prefix.clone(),
            api,
        });
    }
    openapi::merge("Larder", env!("CARGO_PKG_VERSION"), mounts).map_err(StartError::Conflicts)
}

/// Step 4: the policy catalog — every plugin route with an operation id, every event and
/// warm source — so rules naming something that does not exist fail at load.
fn catalog(
    operations: &[Operation],
    plugins: &[LoadedPlugin],
    registry: &PluginRegistry,
) -> Catalog {
    let mut catalog = Catalog::default();
    for op in operations
        .iter()
        .filter(|o| !CORE_APIS.contains(&o.plugin.as_str()))
    {
        if let Some(id) = &op.operation_id {
            catalog = catalog.route(&op.plugin, id, &op.method, &op.path);
        }
    }
    for p in plugins {
        for e in &p.events {
            let fields: Vec<&str> = e.fields.iter().map(String::as_str).collect();
            let ops: Vec<&str> = e.emitted_by.iter().map(String::as_str).collect();
            catalog = catalog
                .event(p.name, &e.name, &fields)
                .emitted_by(p.name, &e.name, &ops);
        }
        for n in &p.named_rules {
            let ops: Vec<&str> = n.operations.iter().map(String::as_str).collect();
            catalog = catalog.named_rule(p.name, &n.rule, &ops, &n.key);
        }
        for w in &p.warm_sources {
            catalog = catalog.warm_source(p.name, &w.name);
        }
        if let Some(zone) = &p.timezone {
            catalog = catalog.time_zone(p.name, zone);
        }
        if let Some(policy) = p.default_policy {
            catalog = catalog.default_policy(p.name, policy);
        }
    }
    catalog.disabled_plugins = registry
        .builtin_names()
        .filter(|n| !plugins.iter().any(|p| p.name == *n))
        .map(str::to_owned)
        .collect();
    catalog
}

/// Every route `security.permissions` names must exist: a misspelt one would leave the
/// route it meant open.
fn check_permissions(config: &LoadedConfig, operations: &[Operation]) -> Result<(), StartError> {
    let routes: Vec<String> = operations
        .iter()
        .map(|op| format!("{} {}", op.method, op.path))
        .collect();
    let problems: Vec<_> = config
        .config
        .security
        .permissions
        .keys()
        .filter(|key| !routes.contains(key))
        .map(|key| {
            let hint = larder_policy::diag::did_you_mean(key, routes.iter().map(String::as_str))
                .unwrap_or_else(|| {
                    "`larder openapi` lists the routes; write `METHOD /path/{param}`".into()
                });
            config
                .diagnostic_at_entry(
                    "security.permissions",
                    key,
                    format!("no route `{key}`: its permissions would protect nothing"),
                )
                .with_hint(Some(hint))
        })
        .collect();
    if problems.is_empty() {
        Ok(())
    } else {
        Err(StartError::Invalid(Diagnostics(problems)))
    }
}

/// The permissions a route needs: the config's override for it, else its plugin's
/// declaration; `/metrics` needs a read admin key when the config says so. Admission
/// enforces it and the OpenAPI document declares it.
fn required(config: &LoadedConfig, plugins: &[LoadedPlugin], op: &Operation) -> Vec<String> {
    let route = format!("{} {}", op.method, op.path);
    let security = &config.config.security;
    if let Some(p) = security.permissions.get(&route) {
        return p.clone();
    }
    if op.path == "/metrics" && security.metrics_requires_key {
        return vec![larder_plugin::CACHE_READ.to_owned()];
    }
    plugins
        .iter()
        .filter(|p| p.name == op.plugin)
        .flat_map(|p| &p.permissions)
        .find(|r| Some(r.operation.as_str()) == op.operation_id.as_deref())
        .map(|r| r.permissions.clone())
        .unwrap_or_default()
}

/// What admission does on every route, for the OpenAPI document.
fn admission(config: &LoadedConfig) -> openapi::Admission {
    let auth = &config.config.security.auth;
    let mut registry = poem_openapi::registry::Registry::new();
    <ApiError as poem_openapi::types::Type>::register(&mut registry);
    let name = <ApiError as poem_openapi::types::Type>::name().into_owned();
    let schema = registry
        .schemas
        .remove(&name)
        .and_then(|s| serde_json::to_value(s).ok())
        .unwrap_or_default();
    openapi::Admission {
        credentials: openapi::Credentials {
            jwt: !auth.jwt.is_empty(),
            api_key_header: (!auth.api_keys.keys.is_empty()).then(|| auth.api_keys.header.clone()),
        },
        body_limit: config.config.limits.request_body_bytes,
        core_error: (name, schema),
    }
}

/// What admission does on one route, for the OpenAPI document: the same permissions and
/// rate limits [`Parts::routes`] enforces.
fn operation_admission(
    config: &LoadedConfig,
    plugins: &[LoadedPlugin],
    op: &Operation,
) -> openapi::OperationAdmission {
    let plugin = plugins.iter().find(|p| p.name == op.plugin);
    let rate_limits = plugin
        .map(|p| {
            [Some(plugin_limit(config, p)), route_limit(config, p, op)]
                .into_iter()
                .flatten()
                .filter_map(describe_limit)
                .collect()
        })
        .unwrap_or_default();
    openapi::OperationAdmission {
        permissions: required(config, plugins, op),
        rate_limits,
        error_schema: plugin.and_then(|p| p.plugin.core_error_schema()),
        core_api: CORE_APIS.contains(&op.plugin.as_str()),
    }
}

/// A plugin's rate limit for all its routes: the config's, else the plugin's default.
fn plugin_limit(config: &LoadedConfig, plugin: &LoadedPlugin) -> RateLimit {
    let defaults = plugin.plugin.http_defaults();
    config
        .config
        .plugins
        .get(plugin.name)
        .and_then(|e| e.rate_limit)
        .unwrap_or(RateLimit {
            per_second: defaults.rate_per_second,
            per_minute: defaults.rate_per_minute,
            ..RateLimit::default()
        })
}

/// A route's own rate limit: the config's `route_limits` entry, else the plugin's
/// declaration for the operation. A configured one replaces the declared one.
fn route_limit(config: &LoadedConfig, plugin: &LoadedPlugin, op: &Operation) -> Option<RateLimit> {
    let configured = config
        .config
        .plugins
        .get(plugin.name)
        .and_then(|e| e.route_limits.get(&format!("{} {}", op.method, op.path)))
        .copied();
    let declared = || {
        plugin
            .plugin
            .http_defaults()
            .operation_limits
            .into_iter()
            .find(|l| Some(l.operation.as_str()) == op.operation_id.as_deref())
            .map(|l| RateLimit {
                per_second: l.per_second,
                per_minute: l.per_minute,
                ..RateLimit::default()
            })
    };
    configured.or_else(declared)
}

/// A limit in words (`5 per second and 60 per minute per client IP`); `None` when it
/// counts nothing.
fn describe_limit(limit: RateLimit) -> Option<String> {
    let windows = limit.windows();
    if windows.is_empty() {
        return None;
    }
    let counts: Vec<String> = windows
        .into_iter()
        .map(|(window, n)| match window.as_secs() {
            1 => format!("{n} per second"),
            60 => format!("{n} per minute"),
            secs => format!("{n} per {secs} s"),
        })
        .collect();
    let who = match limit.per {
        crate::config::LimitKey::Ip => "client IP",
        crate::config::LimitKey::Principal => "caller (client IP when anonymous)",
        crate::config::LimitKey::Tenant => "tenant (client IP without one)",
    };
    Some(format!("{} per {who}", counts.join(" and ")))
}

impl Parts<'_> {
    fn required(&self, op: &Operation) -> Vec<String> {
        required(self.config, self.plugins, op)
    }

    /// Each plugin's rate limiter and CORS allowlist: the plugin's defaults unless the
    /// config says otherwise.
    fn plugin_http(&self) -> BTreeMap<&'static str, PluginHttp> {
        self.plugins
            .iter()
            .map(|p| {
                let defaults = p.plugin.http_defaults();
                let entry = self.config.config.plugins.get(p.name);
                let limit = plugin_limit(self.config, p);
                let origins = entry
                    .and_then(|e| e.cors_origins.clone())
                    .unwrap_or(defaults.cors_origins);
                let http = PluginHttp {
                    limiter: Limiter::new(format!("plugin {}", p.name), limit),
                    cors: Cors::new(&origins, &defaults.cors_headers),
                };
                (p.name, http)
            })
            .collect()
    }

    /// Step 6: one [`Pipeline`] per route (the core's routes without a rule), grouped by
    /// path behind poem's router; returns it with every rate limiter, for upkeep.
    fn routes(
        &self,
        routes: Vec<(String, Method, BoxEndpoint<'static>, usize)>,
    ) -> Result<(Route, Vec<Arc<Limiter>>), StartError> {
        let http = self.plugin_http();
        let mut limiters: Vec<Arc<Limiter>> =
            http.values().filter_map(|h| h.limiter.clone()).collect();
        let admin_keys = AdminKeys::new(self.config.config.security.admin_keys.clone());
        let mut by_path: BTreeMap<String, Vec<(Method, Arc<Pipeline>)>> = BTreeMap::new();
        for (path, method, endpoint, index) in routes {
            let found = self.operations.iter().find_map(|o| {
                (o.method == method.as_str())
                    .then(|| same_route(&path, &o.path))
                    .flatten()
                    .map(|params| (o, params))
            });
            let Some((op, params)) = found else {
                return Err(StartError::Conflicts(vec![format!(
                    "route `{method} {path}` has no operation in the OpenAPI document"
                )]));
            };
            let pipeline = if index < CORE_APIS.len() {
                // Only admin routes read the keys: don't put them in every request.
                self.pipeline(op, endpoint.data(admin_keys.clone()).boxed(), None, None)
            } else {
                let slot = self.engine.add_route(
                    &op.plugin,
                    op.operation_id.as_deref(),
                    method.as_str(),
                    &op.path,
                    params,
                );
                let plugin = http.get(op.plugin.as_str());
                let mut route_limiters: Vec<Arc<Limiter>> =
                    plugin.and_then(|h| h.limiter.clone()).into_iter().collect();
                let route_key = format!("{} {}", slot.method, slot.path);
                let limit = self
                    .plugins
                    .iter()
                    .find(|p| p.name == op.plugin)
                    .and_then(|p| route_limit(self.config, p, op));
                if let Some(limit) = limit
                    && let Some(l) = Limiter::new(format!("route {route_key}"), limit)
                {
                    limiters.push(l.clone());
                    route_limiters.push(l);
                }
                let cors = plugin.and_then(|h| h.cors.clone());
                if path != "/" && !path.ends_with('/') {
                    // `/items/` for `/items`, as FastAPI, Django and Rails answer: clients of
                    // the services a plugin re-creates keep working, and share the entries
                    // of the one spelling that is cached. The redirect is a route like the
                    // others (same admission, same permissions), so it says nothing to a
                    // caller the route would refuse.
                    let mut twin = self.pipeline(op, slash_redirect(), None, None);
                    twin.admission.limiters = route_limiters.clone();
                    twin.admission.cors = cors.clone();
                    by_path
                        .entry(format!("{path}/"))
                        .or_default()
                        .push((method.clone(), Arc::new(twin)));
                }
                let mut pipeline = self.pipeline(
                    op,
                    endpoint,
                    Some(slot),
                    Some(Arc::new(Meter::new(&op.plugin, &op.method, &op.path))),
                );
                pipeline.admission.limiters = route_limiters;
                pipeline.admission.cors = cors;
                pipeline
            };
            by_path
                .entry(path)
                .or_default()
                .push((method, Arc::new(pipeline)));
        }
        let route = by_path
            .into_iter()
            .fold(Route::new(), |route, (path, mut methods)| {
                // The APIs hand routes over in hash order; `Allow` lists them in one.
                methods.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
                route.at(path, PathEndpoint { methods })
            });
        Ok((route, limiters))
    }

    fn pipeline(
        &self,
        op: &Operation,
        origin: BoxEndpoint<'static>,
        slot: Option<Arc<crate::cache::RouteSlot>>,
        meter: Option<Arc<Meter>>,
    ) -> Pipeline {
        let limits = &self.config.config.limits;
        let source = format!(
            "route {}.{}",
            op.plugin,
            op.operation_id.as_deref().unwrap_or(&op.path)
        );
        Pipeline {
            origin: Arc::new(origin),
            slot,
            engine: self.engine.clone(),
            admission: Admission {
                body_limit: limits.request_body_bytes,
                auth: self.auth.clone(),
                required: self.required(op).into(),
                limiters: Vec::new(),
                trust_forwarded_for: self.config.config.security.trust_forwarded_for,
                cors: None,
            },
            meter,
            name: format!("{} {}", op.method, op.path).into(),
            template: op.path.as_str().into(),
            source: source.into(),
            decoded_limit: limits.decoded_body_bytes,
            plugin: self
                .plugins
                .iter()
                .find(|p| p.name == op.plugin)
                .map(|p| p.plugin.clone()),
            access_log: self.config.config.telemetry.access_log,
            coded: self.coded.clone(),
        }
    }
}

/// A permanent redirect from a plugin route's spelling with a trailing slash to the route:
/// 308 keeps the method and the body.
fn slash_redirect() -> BoxEndpoint<'static> {
    make_sync(|req: poem::Request| {
        let path = req.uri().path().trim_end_matches('/');
        let location = match req.uri().query() {
            Some(q) => format!("{path}?{q}"),
            None => path.to_owned(),
        };
        Response::builder()
            .status(poem::http::StatusCode::PERMANENT_REDIRECT)
            .header(poem::http::header::LOCATION, location)
            .finish()
    })
    .boxed()
}

impl Parts<'_> {
    /// The documents, the metrics page and Swagger UI: core routes like the others.
    fn core_pages(
        &self,
        route: Route,
        merged: (&str, &str, String),
        warmer: &Arc<Warmer>,
    ) -> Route {
        let (json, yaml, swagger_html) = (merged.0.to_owned(), merged.1.to_owned(), merged.2);
        let (engine, warmer) = (self.engine.clone(), warmer.clone());
        let pages: [(&str, BoxEndpoint<'static>); 4] = [
            (
                "/openapi.json",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("application/json")
                        .body(json.clone())
                })
                .boxed(),
            ),
            (
                "/openapi.yaml",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("application/yaml")
                        .body(yaml.clone())
                })
                .boxed(),
            ),
            (
                "/metrics",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("text/plain; version=0.0.4")
                        .body(crate::admin::metrics::render(&engine, &warmer))
                })
                .boxed(),
            ),
            (
                "/docs",
                make_sync(move |_| poem::web::Html(swagger_html.clone()))
                    .map_to_response()
                    .boxed(),
            ),
        ];
        pages.into_iter().fold(route, |route, (path, endpoint)| {
            let op = Operation {
                plugin: "system".into(),
                operation_id: None,
                method: "GET".into(),
                path: path.into(),
            };
            let pipeline = Arc::new(self.pipeline(&op, endpoint, None, None));
            route.at(
                path,
                PathEndpoint {
                    methods: vec![(Method::GET, pipeline)],
                },
            )
        })
    }
}

#[cfg(test)]
mod tests;
