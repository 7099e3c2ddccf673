//! Building the application (plugins, admin, docs, one router) and serving it with a
//! graceful shutdown.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use larder_plugin::PluginApi;
use poem::endpoint::{BoxEndpoint, make_sync};
use poem::http::{Method, StatusCode};
use poem::listener::TcpAcceptor;
use poem::{
    Endpoint, EndpointExt, IntoResponse, Middleware, PathPattern, Request, Response, Route,
    RouteMethod,
};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use std::sync::OnceLock;

use tokio_util::sync::CancellationToken;

use crate::admin::{AdminApi, AdminKeys, AdminState, PluginInfo};
use crate::config::LoadedConfig;
use crate::config::RateLimit;
use crate::diagnostics::Diagnostics;
use crate::engine::Engine;
use crate::host::CoreHost;
use crate::lane::{Lane, LaneEndpoint, LaneRoute};
use crate::layer::{CachedEndpoint, Limits};
use crate::limits::{Limited, Limiter, RouteLimits};
use crate::metrics::{Meter, Metered};
use crate::openapi::{self, Merged, Mount, Operation};
use crate::plugins::{self, LoadedPlugin, PluginRegistry};
use crate::warming::Warmer;
use larder_policy::Catalog;
use larder_store::Cache;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Problems in the user's files, each with a position.
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
    /// The policies do not load; every problem is listed.
    #[error("{0}")]
    Policy(larder_policy::Diagnostics),
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

/// Liveness and readiness.
struct SystemApi {
    ready: Arc<AtomicBool>,
}

/// Health or readiness answer.
#[derive(Object)]
#[oai(rename = "SystemStatus")]
struct Status {
    /// `ok`, `ready` or `starting`.
    status: String,
}

#[derive(ApiResponse)]
enum ReadyResponse {
    /// Plugins are started and start-up warm jobs are done.
    #[oai(status = 200)]
    Ready(Json<Status>),
    /// Still starting.
    #[oai(status = 503)]
    Starting(Json<Status>),
}

#[OpenApi]
impl SystemApi {
    /// Liveness: the process serves HTTP.
    #[oai(path = "/health", method = "get", operation_id = "health")]
    async fn health(&self) -> Json<Status> {
        Json(Status {
            status: "ok".into(),
        })
    }

    /// Readiness: plugins initialised and start-up warm jobs done.
    #[oai(path = "/ready", method = "get", operation_id = "ready")]
    async fn ready(&self) -> ReadyResponse {
        if self.ready.load(Ordering::Acquire) {
            ReadyResponse::Ready(Json(Status {
                status: "ready".into(),
            }))
        } else {
            ReadyResponse::Starting(Json(Status {
                status: "starting".into(),
            }))
        }
    }
}

/// A plugin's rate limiter and CORS allowlist (origins, extra headers).
type PluginHttp = (Option<Arc<Limiter>>, Vec<String>, Vec<String>);

/// Names of the core's own APIs, mounted first and never behind the caching layer.
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

impl App {
    /// Resolves and builds the plugins and merges everything into one router and document.
    /// Returns the application and its root endpoint.
    pub async fn build(
        config: LoadedConfig,
        registry: &PluginRegistry,
    ) -> Result<(Self, Arc<BoxEndpoint<'static>>), StartError> {
        let paths = vec![config.config.policies.clone()];
        Self::build_with_policies(config, registry, paths).await
    }

    /// Like [`App::build`], with the policies read from `policy_paths` (folders or files)
    /// instead of the config's folder (`larder check FILES`).
    pub async fn build_with_policies(
        config: LoadedConfig,
        registry: &PluginRegistry,
        policy_paths: Vec<PathBuf>,
    ) -> Result<(Self, Arc<BoxEndpoint<'static>>), StartError> {
        let mut problems = config.check();
        let resolved = match plugins::resolve(&config, registry) {
            Ok(r) => r,
            Err(Diagnostics(mut more)) => {
                problems.append(&mut more);
                Vec::new()
            }
        };
        if !problems.is_empty() {
            return Err(Diagnostics(problems).into());
        }
        let tasks = TaskTracker::new();
        let clock = config
            .config
            .server
            .clock()
            .expect("checked with the config");
        if let Some(at) = &config.config.server.clock_start {
            tracing::warn!(clock_start = %at, "the server's clock starts at a chosen instant, not the wall time");
        }
        let host = CoreHost::new(tasks.clone(), clock);
        let plugins = plugins::build(&config, resolved, host.clone()).await?;

        let ready = Arc::new(AtomicBool::new(false));
        let admin = Arc::new(AdminState {
            plugins: plugins.iter().map(PluginInfo::of).collect(),
            engine: OnceLock::new(),
            warmer: OnceLock::new(),
            report: config.config.report.clone(),
        });
        let mut mounts = vec![
            Mount {
                plugin: "system".into(),
                description: "Liveness and readiness.".into(),
                prefix: String::new(),
                api: PluginApi::new(SystemApi {
                    ready: ready.clone(),
                }),
            },
            Mount {
                plugin: "admin".into(),
                description: "Cache administration (API key required).".into(),
                prefix: String::new(),
                api: PluginApi::new(AdminApi::new(admin.clone())),
            },
        ];
        for p in &plugins {
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
        let Merged {
            json,
            yaml,
            swagger_html,
            operations,
            routes,
        } = openapi::merge("Larder", env!("CARGO_PKG_VERSION"), mounts)
            .map_err(StartError::Conflicts)?;

        // The policy catalog: every plugin route with an operation id, every event and
        // warm source, so rules naming something that does not exist fail at load.
        let mut catalog = Catalog::default();
        for op in operations
            .iter()
            .filter(|o| !CORE_APIS.contains(&o.plugin.as_str()))
        {
            if let Some(id) = &op.operation_id {
                catalog = catalog.route(&op.plugin, id, &op.method, &op.path);
            }
        }
        for p in &plugins {
            for e in &p.events {
                let fields: Vec<&str> = e.fields.iter().map(String::as_str).collect();
                catalog = catalog.event(p.name, &e.name, &fields);
            }
            for w in &p.warm_sources {
                catalog = catalog.warm_source(p.name, &w.name);
            }
        }
        catalog.disabled_plugins = registry
            .builtin_names()
            .filter(|n| !plugins.iter().any(|p| p.name == *n))
            .map(str::to_owned)
            .collect();
        let cache = Cache::with_clock(config.config.storage.clone(), clock)
            .await
            .map_err(|e| StartError::Cache(e.to_string()))?;
        let engine =
            Arc::new(Engine::new(cache, policy_paths, catalog).map_err(StartError::Policy)?);
        host.attach(engine.clone());
        let warmer = Warmer::new(engine.clone(), &plugins);
        let _ = admin.engine.set(engine.clone());
        let _ = admin.warmer.set(warmer.clone());
        let limits = Limits {
            request_body: config.config.limits.request_body_bytes,
            decoded_body: config.config.limits.decoded_body_bytes,
        };

        // Rate limits and CORS per plugin: the plugin's defaults unless the config says.
        let security = &config.config.security;
        let mut plugin_http: BTreeMap<&str, PluginHttp> = BTreeMap::new();
        let mut all_limiters = Vec::new();
        for p in &plugins {
            let defaults = p.plugin.http_defaults();
            let entry = config.config.plugins.get(p.name);
            let limit = entry.and_then(|e| e.rate_limit).unwrap_or(RateLimit {
                per_second: defaults.rate_per_second,
                per_minute: defaults.rate_per_minute,
            });
            let limiter = Limiter::new(format!("plugin {}", p.name), limit);
            all_limiters.extend(limiter.clone());
            let origins = entry
                .and_then(|e| e.cors_origins.clone())
                .unwrap_or(defaults.cors_origins);
            plugin_http.insert(p.name, (limiter, origins, defaults.cors_headers));
        }
        let mut cors_by_path: BTreeMap<String, &str> = BTreeMap::new();
        let lane = Lane::new();
        let admin_keys = AdminKeys::new(config.config.security.admin_keys.clone());
        let mut by_path: BTreeMap<String, Vec<(Method, BoxEndpoint<'static>)>> = BTreeMap::new();
        for (path, method, endpoint, index) in routes {
            // The first mounts are the core's own APIs; every plugin route gets the layer.
            let endpoint = if index < CORE_APIS.len() {
                // Only admin routes read the keys: don't put them in every request.
                endpoint.data(admin_keys.clone()).boxed()
            } else {
                let found = operations.iter().find_map(|o| {
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
                let slot = engine.add_route(
                    &op.plugin,
                    op.operation_id.as_deref(),
                    method.as_str(),
                    &op.path,
                    params,
                );
                let (plugin, m, p) = (slot.plugin.clone(), slot.method.clone(), slot.path.clone());
                let mut limiters: Vec<Arc<Limiter>> = plugin_http
                    .get(plugin.as_str())
                    .and_then(|h| h.0.clone())
                    .into_iter()
                    .collect();
                let route_key = format!("{m} {p}");
                if let Some(limit) = config
                    .config
                    .plugins
                    .get(&plugin)
                    .and_then(|e| e.route_limits.get(&route_key))
                    && let Some(l) = Limiter::new(format!("route {route_key}"), *limit)
                {
                    all_limiters.push(l.clone());
                    limiters.push(l);
                }
                if let Some((name, _)) = plugin_http.get_key_value(plugin.as_str()) {
                    cors_by_path.insert(path.clone(), name);
                }
                let meter = Arc::new(Meter::new(&plugin, &m, &p));
                let route_limits =
                    Arc::new(RouteLimits::new(limiters, security.trust_forwarded_for));
                let lane_route = Arc::new(LaneRoute::new(
                    slot.clone(),
                    engine.clone(),
                    limits,
                    route_limits.clone(),
                    meter.clone(),
                ));
                Metered::new(
                    Limited::new(
                        CachedEndpoint::new(
                            endpoint,
                            slot,
                            engine.clone(),
                            limits,
                            Some((lane.clone(), lane_route)),
                        ),
                        route_limits,
                    ),
                    meter,
                )
                .boxed()
            };
            by_path.entry(path).or_default().push((method, endpoint));
        }
        let mut route = Route::new();
        for (path, methods) in by_path {
            let rm = methods
                .into_iter()
                .fold(RouteMethod::new(), |rm, (m, ep)| rm.method(m, ep));
            // CORS wraps the whole path so preflight OPTIONS requests reach it.
            let cors = cors_by_path
                .get(&path)
                .and_then(|plugin| plugin_http.get(plugin))
                .and_then(|(_, origins, headers)| crate::limits::cors(origins, headers));
            route = match cors {
                Some(cors) => route.at(path, rm.with(cors)),
                None => route.at(path, rm),
            };
        }
        let json_body = json.clone();
        let yaml_body = yaml.clone();
        route = route
            .at(
                "/openapi.json",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("application/json")
                        .body(json_body.clone())
                }),
            )
            .at(
                "/openapi.yaml",
                make_sync(move |_| {
                    Response::builder()
                        .content_type("application/yaml")
                        .body(yaml_body.clone())
                }),
            )
            .at("/metrics", {
                let (engine, warmer) = (engine.clone(), warmer.clone());
                make_sync(move |_| {
                    Response::builder()
                        .content_type("text/plain; version=0.0.4")
                        .body(crate::metrics::render(&engine, &warmer))
                })
            })
            .at(
                "/docs",
                make_sync(move |_| poem::web::Html(swagger_html.clone())),
            );

        let endpoint: Arc<BoxEndpoint<'static>> = Arc::new(
            LaneEndpoint::new(
                route
                    // Refuses a declared oversized body before any handler reads it; routes
                    // with a policy rule also cap what they read when no length is declared.
                    .with(crate::limits::BodyLimit(
                        config.config.limits.request_body_bytes,
                    ))
                    .with(TraceRequests),
                lane,
            )
            .boxed(),
        );
        warmer.set_endpoint(endpoint.clone());
        let app = Self {
            limiters: all_limiters,
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
        crate::limits::maintain(self.limiters.clone(), &self.tasks, self.shutdown.clone());
        crate::metrics::upkeep(&self.tasks, self.shutdown.clone());
        crate::reload::watch(self.engine.clone(), &self.tasks, self.shutdown.clone());
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

/// One span per request, so plugin logs land inside it; status and duration recorded.
struct TraceRequests;

impl<E: Endpoint> Middleware<E> for TraceRequests {
    type Output = TraceEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        TraceEndpoint(ep)
    }
}

struct TraceEndpoint<E>(E);

impl<E: Endpoint> Endpoint for TraceEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> poem::Result<Response> {
        // OpenTelemetry semantic-convention names, for exporters; text logs show them as
        // `method`, `path`, `status`, `route` (see `telemetry`).
        let span = tracing::info_span!(
            "request",
            otel.kind = "server",
            http.request.method = %req.method(),
            url.path = %req.uri().path(),
            http.response.status_code = tracing::field::Empty,
            http.route = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        crate::otel::accept_parent(&span, req.headers());
        let method = req.method().clone();
        let started = Instant::now();
        async move {
            // Recording a field formats it for the log layer: on the hit path, only do the
            // work an exporter or a failure needs.
            let exporting = crate::otel::enabled();
            let (resp, route) = match self.0.call(req).await {
                Ok(r) => {
                    let r = r.into_response();
                    let route = exporting
                        .then(|| r.data::<PathPattern>().map(|p| p.0.clone()))
                        .flatten();
                    (r, route)
                }
                Err(e) => {
                    let route = e.data::<PathPattern>().map(|p| p.0.clone());
                    (error_response(e), route)
                }
            };
            let status = resp.status();
            let span = tracing::Span::current();
            if exporting || status.is_client_error() || status.is_server_error() {
                span.record("http.response.status_code", status.as_u16());
            }
            if exporting {
                if let Some(route) = &route {
                    span.record("http.route", &**route);
                }
                if status.is_server_error() {
                    span.record("otel.status_code", "error");
                }
                crate::otel::name_server_span(&span, method.as_str(), route.as_deref());
            }
            let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;
            if status == StatusCode::INTERNAL_SERVER_ERROR {
                tracing::warn!(elapsed_ms, "request failed");
            } else {
                tracing::debug!(elapsed_ms, "request done");
            }
            Ok(resp)
        }
        .instrument(span)
        .await
    }
}

/// Every error the core or poem-openapi produces (bad parameters, auth, unknown routes)
/// answers with a JSON body that names the problem, like the plugins' own errors.
pub fn error_response(e: poem::Error) -> Response {
    let status = e.status();
    let message = e.to_string();
    // An error that already carries a JSON response (typed API errors) goes out as it is.
    let resp = e.into_response();
    if resp
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        return resp;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let message = match status {
        StatusCode::UNAUTHORIZED => {
            "missing or unknown admin key: send it as `x-admin-key` or `Authorization: Bearer`"
                .to_owned()
        }
        StatusCode::NOT_FOUND => "no route matches this path".to_owned(),
        _ => message,
    };
    let body = serde_json::json!({ "error": code, "message": message });
    let mut resp = poem::web::Json(body).into_response();
    resp.set_status(status);
    resp
}

/// Resolves on SIGTERM or SIGINT.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = term => {},
    }
    tracing::info!("shutdown requested: no new connections, draining in-flight requests");
}

/// Builds, binds, serves until SIGTERM/SIGINT, drains, stops plugins.
pub async fn serve(config: LoadedConfig, registry: &PluginRegistry) -> Result<(), StartError> {
    let grace = Duration::from_secs(config.config.server.shutdown_grace_seconds);
    let addr_text = config.config.listen.clone();
    // Build first: it checks the whole config and reports every problem at once.
    let (app, endpoint) = App::build(config, registry).await?;
    let addr: SocketAddr = addr_text.parse().map_err(|_| StartError::Bind {
        addr: addr_text.clone(),
        source: std::io::Error::new(std::io::ErrorKind::InvalidInput, "not an address:port"),
    })?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Bind {
            addr: addr_text.clone(),
            source,
        })?;
    let local = listener.local_addr().map_err(|source| StartError::Bind {
        addr: addr_text.clone(),
        source,
    })?;
    app.start().await?;
    let names: Vec<&str> = app.plugins.iter().map(|p| p.name).collect();
    tracing::info!(addr = %local, plugins = ?names, "larder ready");
    // The one line on stdout: scripts and tests read the bound address (port 0 included).
    println!("listening on http://{local}");
    let acceptor = TcpAcceptor::from_tokio(listener).map_err(|source| StartError::Bind {
        addr: addr_text,
        source,
    })?;
    let result = poem::Server::new_with_acceptor(acceptor)
        .run_with_graceful_shutdown(endpoint, shutdown_signal(), Some(grace))
        .await;
    if let Err(e) = result {
        tracing::error!(error = %e, "server stopped with an error");
    }
    app.stop(grace).await;
    tracing::info!("stopped");
    Ok(())
}
