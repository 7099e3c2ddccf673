//! The server's one config file (YAML), its embedded defaults and `LARDER_*` overrides.
//!
//! Loading goes: YAML → typed [`Config`] (structural errors with `file:line:col`) →
//! environment overrides → semantic checks that collect *every* problem, each pointing at
//! the line it comes from.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use larder_policy::source::{self, FieldPath, SpannedNode};
use larder_policy::{Diagnostic, Diagnostics, Location};

pub(crate) mod security;
pub use security::{
    ApiKeyConfig, ApiKeysConfig, AuthConfig, ClaimMap, JwtKeyConfig, RoutePermissions,
};

/// The whole server configuration. Every field has a default, so an empty file (or no
/// file at all) runs the server on its embedded defaults.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address and port to listen on. `LARDER_LISTEN` or `--listen` override it.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Folder holding the policy files (`*.yaml`), or one policy file. `LARDER_POLICIES`
    /// overrides it. Edits are picked up while running (and on SIGHUP).
    #[serde(default = "default_policies")]
    pub policies: PathBuf,
    /// Plugins by name. Built-in plugins are enabled unless listed with `enabled: false`;
    /// a dynamic plugin is an entry with a `library` path.
    #[serde(default)]
    pub plugins: BTreeMap<String, PluginConfig>,
    /// Logs and traces.
    #[serde(default)]
    pub telemetry: TelemetryConfig,
    /// Admin API keys and request limits.
    #[serde(default)]
    pub security: SecurityConfig,
    /// Connection handling.
    #[serde(default)]
    pub server: ServerConfig,
    /// The cache: memory-only (default), Redis, or L1 over Redis. `REDIS_URL` sets
    /// `redis.url` and, unless `mode` is given here, switches to `hybrid`.
    #[serde(default)]
    pub storage: larder_store::CacheConfig,
    /// Request and response size limits.
    #[serde(default)]
    pub limits: LimitsConfig,
    /// Thresholds for `/admin/cache/report`.
    #[serde(default)]
    pub report: ReportConfig,
}

/// Size limits.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted on a route with a policy rule, in bytes.
    #[serde(default = "default_request_body")]
    pub request_body_bytes: usize,
    /// Largest size a stored compressed body may decode to for a client that does not
    /// accept its coding, in bytes.
    #[serde(default = "default_decoded_body")]
    pub decoded_body_bytes: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            request_body_bytes: default_request_body(),
            decoded_body_bytes: default_decoded_body(),
        }
    }
}

fn default_request_body() -> usize {
    1 << 20
}

fn default_decoded_body() -> usize {
    64 << 20
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            policies: default_policies(),
            plugins: BTreeMap::new(),
            telemetry: TelemetryConfig::default(),
            security: SecurityConfig::default(),
            server: ServerConfig::default(),
            storage: larder_store::CacheConfig::default(),
            limits: LimitsConfig::default(),
            report: ReportConfig::default(),
        }
    }
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

fn default_policies() -> PathBuf {
    "policies".into()
}

fn yes() -> bool {
    true
}

/// One plugin's entry.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PluginConfig {
    /// Whether the plugin runs. Built-in plugins default to enabled.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Path prefix the plugin's routes are mounted under, e.g. `/shop`. Empty: its own paths.
    #[serde(default)]
    pub prefix: String,
    /// Path to a dynamic plugin library (`.so`). Relative paths are relative to the config
    /// file. Absent for built-in plugins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub library: Option<PathBuf>,
    /// Per client IP rate limit on this plugin's routes; overrides the plugin's default.
    /// `{ per_second: 0, per_minute: 0 }` turns the default off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimit>,
    /// Per client IP limits for single routes, by `METHOD /path/template` as in the OpenAPI
    /// document (prefix included), on top of the plugin-wide one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub route_limits: BTreeMap<String, RateLimit>,
    /// Browser origins allowed to call this plugin (CORS allowlist); overrides the plugin's
    /// default. Requests without an `Origin` header are unaffected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_origins: Option<Vec<String>>,
    /// The plugin's own typed settings; each plugin documents and validates its fields.
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub settings: serde_json::Value,
}

/// A rate limit: "N per minute" admits at most N requests in any 60-second window (a
/// sliding window, not a refilling bucket), per client. A zero or absent field means no
/// limit of that kind.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per second.
    #[serde(default)]
    pub per_second: Option<u32>,
    /// Requests per minute.
    #[serde(default)]
    pub per_minute: Option<u32>,
    /// Who a client is: the client IP (default), the verified principal (falls back to
    /// the IP for anonymous requests), or the principal's tenant.
    #[serde(default)]
    pub per: LimitKey,
}

impl RateLimit {
    /// The windows it counts in (one second, one minute), each with the requests it
    /// admits; a zero or absent field counts nothing and is left out.
    pub fn windows(&self) -> Vec<(std::time::Duration, u32)> {
        [
            (std::time::Duration::from_secs(1), self.per_second),
            (std::time::Duration::from_secs(60), self.per_minute),
        ]
        .into_iter()
        .filter_map(|(w, n)| n.filter(|n| *n > 0).map(|n| (w, n)))
        .collect()
    }
}

/// What a rate limit counts requests per.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum LimitKey {
    /// The client IP.
    #[default]
    Ip,
    /// The verified user (or API key); the IP when anonymous.
    Principal,
    /// The verified tenant; the IP when there is none.
    Tenant,
}

impl Default for PluginConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            prefix: String::new(),
            library: None,
            rate_limit: None,
            route_limits: BTreeMap::new(),
            cors_origins: None,
            settings: serde_json::Value::Null,
        }
    }
}

/// Log output.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line, for log collectors.
    Json,
}

/// Logs and traces.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TelemetryConfig {
    /// Log filter in `tracing` syntax (`info`, `larder=debug,info`). `RUST_LOG` overrides it.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Log line format.
    #[serde(default)]
    pub log_format: LogFormat,
    /// One log line per request to a plugin route (target `larder::access`, in
    /// `log_format`): method, path, status, cache outcome, duration. Off by default.
    #[serde(default)]
    pub access_log: bool,
    /// OpenTelemetry collector base URL for OTLP over HTTP/protobuf, e.g.
    /// `http://localhost:4318` (`/v1/traces` is appended). The standard
    /// `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` and `OTEL_EXPORTER_OTLP_ENDPOINT` variables take
    /// precedence. With no endpoint anywhere, no trace exporter runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub otlp_endpoint: Option<String>,
    /// `service.name` of exported spans (default `larder`); `OTEL_SERVICE_NAME` takes
    /// precedence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service_name: Option<String>,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            log_level: default_log_level(),
            log_format: LogFormat::default(),
            access_log: false,
            otlp_endpoint: None,
            service_name: None,
        }
    }
}

fn default_log_level() -> String {
    "info".into()
}

/// What an admin key may do.
#[derive(
    Debug, Clone, Copy, Serialize, Deserialize, JsonSchema, PartialEq, Eq, PartialOrd, Ord,
)]
#[serde(rename_all = "snake_case")]
pub enum AdminRole {
    /// Stats, keys, health, reports, policies.
    Read,
    /// Everything `read` can, plus invalidation, warming and policy reload.
    Write,
}

/// An admin API key. The key itself is never logged or shown.
#[derive(Clone, Serialize, Deserialize, JsonSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct AdminKey {
    /// The secret, sent as `x-admin-key` or `Authorization: Bearer`.
    pub key: String,
    /// Its role.
    pub role: AdminRole,
}

impl std::fmt::Debug for AdminKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminKey")
            .field("key", &"<redacted>")
            .field("role", &self.role)
            .finish()
    }
}

/// Admin access and client identification.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct SecurityConfig {
    /// Trust the proxy headers: the client IP for rate limits is the first
    /// `X-Forwarded-For` hop, and handlers see `Forwarded`/`X-Forwarded-Host`/`-Proto`/
    /// `-Port`/`-Prefix`. Only behind a proxy that sets them: otherwise clients choose
    /// their own IP and host, so they are removed before a handler runs.
    #[serde(default)]
    pub trust_forwarded_for: bool,
    /// Admin API keys. `LARDER_ADMIN_KEY` adds a write key, `LARDER_ADMIN_READ_KEY` a read
    /// key. With no key at all, the admin API refuses every call. An admin key is also a
    /// credential for plugins' cache-admin routes: a read key grants `cache:read`, a write
    /// key `cache:read` and `cache:manage`.
    #[serde(default)]
    pub admin_keys: Vec<AdminKey>,
    /// How requests prove who they are (JWTs, API keys).
    #[serde(default)]
    pub auth: AuthConfig,
    /// Permissions per route, overriding the plugins' declarations:
    /// `{ "GET /api/v1/analytics/revenue": [analytics:read] }`; `[]` makes a route public.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub permissions: RoutePermissions,
    /// Require an admin key (read role) for `/metrics`. Off by default, as Prometheus
    /// scrapers expect; turn it on when the port is reachable by clients.
    #[serde(default)]
    pub metrics_requires_key: bool,
}

/// Thresholds for `/admin/cache/report`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, schemars::JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Alert when the overall hit rate (after at least `min_requests`) is below this.
    pub min_hit_rate: f64,
    /// Alert when origin errors per origin call exceed this.
    pub max_error_rate: f64,
    /// Alert when the origin's p99 latency exceeds this many milliseconds.
    pub max_origin_p99_ms: f64,
    /// Alert when L1 is fuller than this fraction (evictions are likely).
    pub max_l1_fill: f64,
    /// Requests needed before rates are judged.
    pub min_requests: u64,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            min_hit_rate: 0.5,
            max_error_rate: 0.05,
            max_origin_p99_ms: 500.0,
            max_l1_fill: 0.9,
            min_requests: 100,
        }
    }
}

/// Connection handling.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// Seconds in-flight requests get to finish after SIGTERM/SIGINT before the server exits.
    #[serde(default = "default_grace")]
    pub shutdown_grace_seconds: u64,
    /// Start the server's clock at this instant (`2026-12-07T15:00:00Z`, or with an offset)
    /// instead of the wall time; it then runs at real speed. Everything that reads "now" —
    /// policies' `today`/`now`, entry ages, plugins (booking's "today", generated data) —
    /// reads this one clock, so tests and demos run at a chosen date. Unset in production.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_start: Option<String>,
    /// Keep the clock at `clock_start` (or at the start-up time) instead of letting it run:
    /// for tests that compare two servers' time-windowed answers ("the last hour"), which
    /// would otherwise differ by the seconds between the servers' starts. Entries never
    /// age with it. Never in production.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub clock_frozen: bool,
    /// Seconds a client has to send a request's headers, counted from when the server
    /// starts waiting for them (a new connection, or the end of the previous response on a
    /// kept-alive one). HTTP/1 connections that trickle their headers (slowloris) or sit
    /// idle longer are closed.
    #[serde(default = "default_header_read_timeout")]
    #[schemars(range(min = 1, max = 3600))]
    pub header_read_timeout_seconds: u64,
    /// Open client connections at most. At the cap the server stops accepting until one
    /// closes (new clients wait in the kernel's backlog). Default: the process's file
    /// descriptor limit (`ulimit -n`) less a tenth and 64 more, kept for Redis, the
    /// plugins' files and logs, so the server never runs out of descriptors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 1))]
    pub max_connections: Option<u32>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            shutdown_grace_seconds: default_grace(),
            clock_start: None,
            clock_frozen: false,
            header_read_timeout_seconds: default_header_read_timeout(),
            max_connections: None,
        }
    }
}

fn default_header_read_timeout() -> u64 {
    10
}

impl ServerConfig {
    /// [`Self::max_connections`], or its default from the descriptor limit.
    pub fn connection_cap(&self) -> usize {
        if let Some(n) = self.max_connections {
            return n as usize;
        }
        let mut limit = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes one `rlimit` through a valid pointer and reads nothing.
        let soft = match unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } {
            0 if limit.rlim_cur != libc::RLIM_INFINITY => limit.rlim_cur as usize,
            _ => 65_536,
        };
        (soft - soft / 10).saturating_sub(64).max(64)
    }
}

impl ServerConfig {
    /// The server's one clock: the wall time, or `clock_start` when set. `None` when
    /// `clock_start` is not an instant ([`LoadedConfig::check`] reports it).
    pub fn clock(&self) -> Option<larder_store::Clock> {
        let ms = match &self.clock_start {
            None => larder_store::Clock::new().now_ms(),
            Some(s) => {
                let at = larder_policy::Clock::parse(s)?;
                u64::try_from(at.unix_secs).ok()?.checked_mul(1000)?
            }
        };
        Some(if self.clock_frozen {
            larder_store::Clock::frozen_at(ms)
        } else {
            larder_store::Clock::starting_at(ms)
        })
    }
}

fn default_grace() -> u64 {
    30
}

/// A loaded config and where it came from.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config, overrides applied.
    pub config: Config,
    /// The file it was read from; `None` for embedded defaults.
    pub file: Option<PathBuf>,
    /// The file's text and YAML tree, for positions in diagnostics.
    source: Option<Arc<Source>>,
    /// What the schema check found (the offending fields were left out of `config`):
    /// reported by [`LoadedConfig::check`] with every other problem, so one run names
    /// them all, the ones only the server's start-up can find included.
    schema_problems: Vec<Diagnostic>,
}

/// A config file as read: its text (for the excerpt under a diagnostic) and its tree (for
/// the line and column of any field, a plugin's settings included).
#[derive(Debug)]
struct Source {
    text: String,
    tree: SpannedNode,
}

/// `plugins.booking.settings.dataset.barbers` as a field path.
fn field_path(dotted: &str) -> FieldPath {
    dotted
        .split('.')
        .filter(|s| !s.is_empty())
        .fold(FieldPath::root(), |p, seg| match seg.parse::<usize>() {
            Ok(i) => p.at(i),
            Err(_) => p.at(seg),
        })
}

/// The config file's JSON Schema (from the Rust types), which the file is checked against
/// before serde sees it, so every mistake is reported with its position at once.
fn schema() -> &'static serde_json::Value {
    static SCHEMA: std::sync::OnceLock<serde_json::Value> = std::sync::OnceLock::new();
    SCHEMA.get_or_init(|| {
        serde_json::to_value(schemars::schema_for!(Config)).expect("the schema serialises")
    })
}

impl LoadedConfig {
    /// Embedded defaults with environment overrides.
    pub fn defaults() -> Result<Self, Diagnostics> {
        let mut loaded = Self {
            config: Config::default(),
            file: None,
            source: None,
            schema_problems: Vec::new(),
        };
        loaded.apply_env(std::env::vars())?;
        Ok(loaded)
    }

    /// Reads a config file, then applies environment overrides.
    pub fn load(path: &Path) -> Result<Self, Diagnostics> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                path,
                Location::default(),
                format!("cannot read config file: {e}"),
            )])
        })?;
        let mut loaded = Self::parse(path, &text)?;
        loaded.apply_env(std::env::vars())?;
        Ok(loaded)
    }

    /// Parses config text without looking at the environment: YAML → tree → schema check
    /// (every unknown field and wrong type, each at its line) → typed [`Config`]. Fields
    /// that fail the schema are left out and reported by [`LoadedConfig::check`], which
    /// start-up runs; only text that cannot be read as a config at all is an `Err` here.
    pub fn parse(path: &Path, text: &str) -> Result<Self, Diagnostics> {
        if text.trim().is_empty() {
            return Ok(Self {
                config: Config::default(),
                file: Some(path.to_owned()),
                source: None,
                schema_problems: Vec::new(),
            });
        }
        let tree = source::parse(text).map_err(|e| {
            Diagnostics(vec![
                Diagnostic::new(path, e.location, e.message).with_source(text),
            ])
        })?;
        let violations = larder_policy::schema::validate(&tree, schema());
        let problems: Vec<Diagnostic> = violations
            .iter()
            .map(|v| {
                Diagnostic::new(path, v.location, v.message.clone())
                    .with_hint(v.hint.clone())
                    .with_source(text)
            })
            .collect();
        let mut tree = tree;
        if !problems.is_empty() {
            // Drop what is wrong and check the rest too, so one run reports everything.
            let bad: Vec<(FieldPath, Option<String>)> = violations
                .into_iter()
                .map(|v| (v.path, v.unknown_field))
                .collect();
            if !source::prune(&mut tree, &bad) {
                return Err(Diagnostics(problems));
            }
        }
        let mut config: Config =
            serde_json::from_value(source::to_json(&tree.value)).map_err(|e| {
                Diagnostics(vec![Diagnostic::new(
                    path,
                    source::loc(&tree),
                    format!("the config does not fit: {e}"),
                )])
            })?;
        // Relative library paths are relative to the config file, not the working directory.
        if let Some(dir) = path.parent() {
            for plugin in config.plugins.values_mut() {
                if let Some(lib) = &mut plugin.library
                    && lib.is_relative()
                    && !dir.as_os_str().is_empty()
                {
                    *lib = dir.join(&*lib);
                }
            }
        }
        Ok(Self {
            config,
            file: Some(path.to_owned()),
            source: Some(Arc::new(Source {
                text: text.to_owned(),
                tree,
            })),
            schema_problems: problems,
        })
    }

    /// The file name used in diagnostics.
    pub fn file_name(&self) -> String {
        self.file
            .as_ref()
            .map(|f| f.display().to_string())
            .unwrap_or_else(|| "<embedded defaults>".into())
    }

    fn at(&self, location: Location, message: impl Into<String>) -> Diagnostic {
        let d = Diagnostic::new(self.file_name(), location, message);
        match &self.source {
            Some(s) => d.with_source(&s.text),
            None => d,
        }
    }

    /// A diagnostic pointing at the value of a dotted config path (or the closest part of
    /// it the file has).
    pub fn diagnostic(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let location = self
            .source
            .as_ref()
            .map(|s| source::locate(&s.tree, &field_path(path)))
            .unwrap_or_default();
        self.at(location, message)
    }

    /// A diagnostic pointing at the name of the entry at a dotted path (`plugins.helo`).
    pub fn diagnostic_at_key(&self, path: &str, message: impl Into<String>) -> Diagnostic {
        let location = self
            .source
            .as_ref()
            .map(|s| source::locate_key(&s.tree, &field_path(path)))
            .unwrap_or_default();
        self.at(location, message)
    }

    /// A diagnostic pointing at entry `key` of the map at dotted path `map`, for keys that
    /// hold dots themselves (`security.permissions` → `"GET /openapi-gpt.json"`).
    pub fn diagnostic_at_entry(
        &self,
        map: &str,
        key: &str,
        message: impl Into<String>,
    ) -> Diagnostic {
        let location = self
            .source
            .as_ref()
            .map(|s| source::locate_key(&s.tree, &field_path(map).at(key)))
            .unwrap_or_default();
        self.at(location, message)
    }

    /// Checks a plugin's `settings` block against the plugin's settings schema: every
    /// unknown field and wrong type, each at its own line.
    pub fn check_settings(&self, plugin: &str, schema: &serde_json::Value) -> Vec<Diagnostic> {
        let Some(source) = &self.source else {
            return Vec::new();
        };
        let Some(node) = source
            .tree
            .value
            .get("plugins")
            .and_then(|p| p.value.get(plugin))
            .and_then(|p| p.value.get("settings"))
        else {
            return Vec::new();
        };
        larder_policy::schema::validate(node, schema)
            .into_iter()
            .map(|v| {
                let path = v.path.to_string();
                let message = if path.is_empty() {
                    format!("plugin `{plugin}` settings: {}", v.message)
                } else {
                    format!("plugin `{plugin}` settings `{path}`: {}", v.message)
                };
                self.at(v.location, message).with_hint(v.hint)
            })
            .collect()
    }

    /// Applies `LARDER_*` overrides: the named ones (`LARDER_LISTEN`, `LARDER_POLICIES`,
    /// `LARDER_ADMIN_KEY`, `LARDER_ADMIN_READ_KEY`) and the generic form
    /// `LARDER_SECTION__FIELD=value` (double underscore between levels, e.g.
    /// `LARDER_PLUGINS__BOOKING__ENABLED=false`).
    pub fn apply_env(
        &mut self,
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<(), Diagnostics> {
        let mut tree = serde_json::to_value(&self.config).expect("config serialises");
        let mut errors = Vec::new();
        let mut extra_keys = Vec::new();
        let mut touched = false;
        let mut redis_url = None;
        let mut vars: Vec<(String, String)> = vars
            .into_iter()
            .filter(|(k, v)| {
                if k == "REDIS_URL" {
                    redis_url = Some(v.clone());
                }
                k.starts_with("LARDER_")
            })
            .collect();
        let mode_from_env = vars.iter().any(|(k, _)| k == "LARDER_STORAGE__MODE");
        vars.sort();
        for (name, value) in vars {
            let path: Vec<String> = match name.as_str() {
                "LARDER_CONFIG" => continue,
                "LARDER_LISTEN" => vec!["listen".into()],
                "LARDER_POLICIES" => vec!["policies".into()],
                "LARDER_ADMIN_KEY" | "LARDER_ADMIN_READ_KEY" => {
                    let role = if name == "LARDER_ADMIN_KEY" {
                        AdminRole::Write
                    } else {
                        AdminRole::Read
                    };
                    if !value.is_empty() {
                        extra_keys.push(AdminKey { key: value, role });
                    }
                    continue;
                }
                other => match other.strip_prefix("LARDER_") {
                    Some(rest) if rest.contains("__") => {
                        rest.split("__").map(str::to_ascii_lowercase).collect()
                    }
                    _ => continue,
                },
            };
            let parsed = serde_saphyr::from_str::<serde_json::Value>(&value)
                .unwrap_or(serde_json::Value::String(value.clone()));
            let parsed = match (&path[..], parsed) {
                // Paths and addresses stay strings even when they look like numbers.
                ([only], v) if only == "listen" || only == "policies" => {
                    serde_json::Value::String(match v {
                        serde_json::Value::String(s) => s,
                        _ => value.clone(),
                    })
                }
                (_, v) => v,
            };
            set_path(&mut tree, &path, parsed);
            touched = true;
        }
        if touched {
            match serde_json::from_value::<Config>(tree) {
                Ok(config) => self.config = config,
                Err(e) => errors.push(Diagnostic::new(
                    "<environment>",
                    Location::default(),
                    format!("a LARDER_* override does not fit the config: {e}"),
                )),
            }
        }
        self.config.security.admin_keys.extend(extra_keys);
        if let Some(url) = redis_url.filter(|u| !u.is_empty()) {
            self.config.storage.redis.url = Some(url);
            let mode_in_file = self.source.as_ref().is_some_and(|s| {
                s.tree
                    .value
                    .get("storage")
                    .is_some_and(|st| st.value.get("mode").is_some())
            });
            if !mode_in_file && !mode_from_env {
                self.config.storage.mode = larder_store::StoreKind::Hybrid;
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(Diagnostics(errors))
        }
    }

    /// Semantic checks on the core's own fields; plugin checks happen where plugins are known.
    pub fn check(&self) -> Vec<Diagnostic> {
        let mut errors = self.schema_problems.clone();
        if self.config.listen.parse::<SocketAddr>().is_err() {
            errors.push(
                self.diagnostic(
                    "listen",
                    format!("`{}` is not an address:port", self.config.listen),
                )
                .hint("write it as `127.0.0.1:8080` or `0.0.0.0:8080`"),
            );
        }
        for (name, plugin) in &self.config.plugins {
            let prefix = &plugin.prefix;
            if !prefix.is_empty() && (!prefix.starts_with('/') || prefix.ends_with('/')) {
                errors.push(
                    self.diagnostic(
                        &format!("plugins.{name}.prefix"),
                        format!("prefix `{prefix}` must start with `/` and not end with one"),
                    )
                    .hint(format!("e.g. `/{}`", prefix.trim_matches('/'))),
                );
            }
            if let Some(lib) = &plugin.library
                && !lib.is_file()
            {
                errors.push(
                        self.diagnostic(
                            &format!("plugins.{name}.library"),
                            format!("plugin library `{}` does not exist", lib.display()),
                        )
                        .hint("build it first (`cargo build -p <plugin crate>`) and check the path; relative paths are relative to the config file"),
                    );
            }
        }
        if self.config.server.clock().is_none() {
            errors.push(
                self.diagnostic(
                    "server.clock_start",
                    format!(
                        "`{}` is not an instant after 1970",
                        self.config
                            .server
                            .clock_start
                            .as_deref()
                            .unwrap_or_default()
                    ),
                )
                .hint("write it as `2026-12-07T15:00:00Z` or `2026-12-07T10:00:00-05:00`"),
            );
        }
        for key in &self.config.security.admin_keys {
            if key.key.len() < 16 {
                errors.push(
                    self.diagnostic(
                        "security.admin_keys",
                        "an admin key is shorter than 16 characters",
                    )
                    .hint("use a long random secret, e.g. `openssl rand -hex 32`"),
                );
            }
        }
        errors
    }
}

fn set_path(tree: &mut serde_json::Value, path: &[String], value: serde_json::Value) {
    let mut node = tree;
    for (i, key) in path.iter().enumerate() {
        if !node.is_object() {
            *node = serde_json::Value::Object(Default::default());
        }
        let map = node.as_object_mut().expect("object");
        if i == path.len() - 1 {
            map.insert(key.clone(), value);
            return;
        }
        node = map.entry(key.clone()).or_insert(serde_json::Value::Null);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<LoadedConfig, Diagnostics> {
        LoadedConfig::parse(Path::new("larder.yaml"), text)
    }

    #[test]
    fn empty_file_is_the_defaults() {
        let json = |c: &Config| serde_json::to_value(c).unwrap();
        assert_eq!(json(&parse("").unwrap().config), json(&Config::default()));
    }

    #[test]
    fn redis_url_makes_the_store_hybrid_unless_the_file_says_otherwise() {
        let url = || ("REDIS_URL".to_owned(), "redis://127.0.0.1:7000".to_owned());
        let mut loaded = parse("").unwrap();
        loaded.apply_env([url()]).unwrap();
        assert_eq!(loaded.config.storage.mode, larder_store::StoreKind::Hybrid);
        assert_eq!(
            loaded.config.storage.redis.url.as_deref(),
            Some("redis://127.0.0.1:7000")
        );
        let mut loaded = parse("storage:\n  mode: redis\n").unwrap();
        loaded.apply_env([url()]).unwrap();
        assert_eq!(loaded.config.storage.mode, larder_store::StoreKind::Redis);
    }

    #[test]
    fn unknown_field_has_position_and_hint() {
        let loaded =
            parse("listen: 127.0.0.1:9000\nplugins:\n  booking:\n    enabeld: false\n").unwrap();
        let text = Diagnostics(loaded.check()).to_string();
        assert!(
            text.starts_with("larder.yaml:4:5: error: unknown field `enabeld`"),
            "{text}"
        );
        assert!(text.contains("did you mean `enabled`?"), "{text}");
    }

    #[test]
    fn semantic_errors_are_all_reported_with_positions() {
        let loaded = parse(
            "listen: nowhere\nplugins:\n  a:\n    prefix: shop/\n  b:\n    library: /nonexistent/libb.so\n",
        )
        .unwrap();
        let errors = loaded.check();
        let text: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(errors.len(), 3, "{text:#?}");
        assert!(
            text[0].starts_with("larder.yaml:1:9: error: `nowhere`"),
            "{}",
            text[0]
        );
        assert!(
            text[1].starts_with("larder.yaml:4:13: error: prefix `shop/`"),
            "{}",
            text[1]
        );
        assert!(
            text[2].starts_with("larder.yaml:6:14: error: plugin library"),
            "{}",
            text[2]
        );
    }

    #[test]
    fn clock_start_is_an_instant() {
        let loaded = parse("server:\n  clock_start: 2026-03-04T10:00:00-05:00\n").unwrap();
        assert!(loaded.check().is_empty());
        let clock = loaded.config.server.clock().unwrap();
        assert!(clock.now_ms() >= 1_772_636_400_000 && clock.now_ms() < 1_772_636_460_000);
        let loaded = parse("server:\n  clock_start: next tuesday\n").unwrap();
        let text: Vec<String> = loaded.check().iter().map(ToString::to_string).collect();
        assert_eq!(text.len(), 1, "{text:#?}");
        assert!(
            text[0].starts_with("larder.yaml:2:16: error: `next tuesday` is not an instant"),
            "{}",
            text[0]
        );
    }

    #[test]
    fn env_overrides_named_and_generic() {
        let mut loaded = parse("plugins:\n  booking:\n    prefix: /b\n").unwrap();
        loaded
            .apply_env([
                ("LARDER_LISTEN".to_owned(), "0.0.0.0:9999".to_owned()),
                (
                    "LARDER_PLUGINS__BOOKING__ENABLED".to_owned(),
                    "false".to_owned(),
                ),
                (
                    "LARDER_ADMIN_KEY".to_owned(),
                    "0123456789abcdef0123".to_owned(),
                ),
                ("UNRELATED".to_owned(), "x".to_owned()),
            ])
            .unwrap();
        let c = &loaded.config;
        assert_eq!(c.listen, "0.0.0.0:9999");
        assert!(!c.plugins["booking"].enabled);
        assert_eq!(c.plugins["booking"].prefix, "/b");
        assert_eq!(c.security.admin_keys[0].role, AdminRole::Write);
    }

    #[test]
    fn bad_env_override_names_the_problem() {
        let mut loaded = parse("").unwrap();
        let err = loaded
            .apply_env([(
                "LARDER_SERVER__SHUTDOWN_GRACE_SECONDS".into(),
                "soon".into(),
            )])
            .unwrap_err();
        assert!(err.to_string().contains("LARDER_* override"), "{err}");
    }

    #[test]
    fn admin_key_is_not_printed() {
        let key = AdminKey {
            key: "supersecretvalue123".into(),
            role: AdminRole::Read,
        };
        assert!(!format!("{key:?}").contains("supersecret"));
    }
}
