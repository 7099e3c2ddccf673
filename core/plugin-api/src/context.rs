//! What the core gives a plugin: the [`PluginContext`] and the [`Host`] services behind it.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::abi::guard;
use crate::plugin::PluginError;

/// An event a plugin declares it emits, and the fields policy triggers may template from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct EventSpec {
    /// Dotted event name, e.g. `appointment.created`.
    pub name: String,
    /// Field names every emitted event of this kind carries.
    pub fields: Vec<String>,
    /// What happened, for the docs and `larder explain`.
    pub description: String,
    /// Operation ids of the routes that emit it (after a successful write), so
    /// `larder explain` can say what a write purges.
    #[serde(default)]
    pub emitted_by: Vec<String>,
}

impl EventSpec {
    /// Declares an event and its fields.
    pub fn new(name: &str, fields: &[&str], description: &str) -> Self {
        Self {
            name: name.to_owned(),
            fields: fields.iter().map(|f| (*f).to_owned()).collect(),
            description: description.to_owned(),
            emitted_by: Vec::new(),
        }
    }

    /// Names the operations (routes) that emit this event.
    pub fn emitted_by(mut self, operations: &[&str]) -> Self {
        self.emitted_by = operations.iter().map(|o| (*o).to_owned()).collect();
        self
    }
}

/// An event kind, declared once as a constant and used both to declare it
/// ([`Plugin::events`](crate::Plugin::events), via [`EventKind::spec`]) and to emit it
/// ([`PluginContext::emit`]): emitting an event the plugin never declared, or under a
/// misspelt name, does not compile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventKind {
    /// Dotted event name, e.g. `appointment.created`.
    pub name: &'static str,
    /// Field names every emitted event of this kind carries.
    pub fields: &'static [&'static str],
    /// What happened, for the docs and `larder explain`.
    pub description: &'static str,
}

impl EventKind {
    /// Declares an event kind.
    pub const fn new(
        name: &'static str,
        fields: &'static [&'static str],
        description: &'static str,
    ) -> Self {
        Self {
            name,
            fields,
            description,
        }
    }

    /// Its declaration for [`Plugin::events`](crate::Plugin::events).
    pub fn spec(&self) -> EventSpec {
        EventSpec::new(self.name, self.fields, self.description)
    }
}

/// A policy rule a plugin caches under from code, named once as a constant and used both
/// in [`Plugin::named_rules`](crate::Plugin::named_rules) (via [`NamedRule::spec`]) and in
/// [`PluginContext::get_or_load`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NamedRule {
    /// The rule's name in the policy.
    pub name: &'static str,
}

impl NamedRule {
    /// Names a rule.
    pub const fn new(name: &'static str) -> Self {
        Self { name }
    }

    /// Its declaration: the operations whose handlers use it, and how they build keys.
    pub fn spec(&self, operations: &[&str], key: &str) -> NamedRuleSpec {
        NamedRuleSpec::new(self.name, operations, key)
    }
}

/// A warm source, named once as a constant and used both in
/// [`Plugin::warm_sources`](crate::Plugin::warm_sources) (via [`WarmSource::spec`]) and in
/// the plugin's `warm_source` dispatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WarmSource {
    /// Name used in a policy's `warming: - source: <plugin>.<name>`.
    pub name: &'static str,
    /// What it warms.
    pub description: &'static str,
}

impl WarmSource {
    /// Declares a warm source.
    pub const fn new(name: &'static str, description: &'static str) -> Self {
        Self { name, description }
    }

    /// Its declaration for [`Plugin::warm_sources`](crate::Plugin::warm_sources).
    pub fn spec(&self) -> WarmSourceSpec {
        WarmSourceSpec {
            name: self.name.to_owned(),
            description: self.description.to_owned(),
        }
    }
}

/// A policy rule a plugin caches under from its own code ([`PluginContext::get_or_load`]),
/// declared so `larder explain` can show it for the routes that use it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct NamedRuleSpec {
    /// The rule's name in the policy.
    pub rule: String,
    /// Operation ids of the routes whose handlers call `get_or_load` under it.
    pub operations: Vec<String>,
    /// How the plugin builds the key, in words (the key is the plugin's, not a template).
    pub key: String,
}

impl NamedRuleSpec {
    /// Declares a named rule, the operations using it, and how their keys are built.
    pub fn new(rule: &str, operations: &[&str], key: &str) -> Self {
        Self {
            rule: rule.to_owned(),
            operations: operations.iter().map(|o| (*o).to_owned()).collect(),
            key: key.to_owned(),
        }
    }
}

/// An event emitted by a plugin. Policy `triggers:` turn events into invalidations.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Event {
    /// The emitting plugin.
    pub plugin: String,
    /// Event name, one of the plugin's [`EventSpec`]s.
    pub name: String,
    /// Field values (a JSON object).
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// A warm source a plugin offers to warming jobs.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct WarmSourceSpec {
    /// Name used in a policy's `warming: - source: <plugin>.<name>`.
    pub name: String,
    /// What it warms.
    pub description: String,
}

/// HTTP defaults a plugin asks for; the operator's config overrides them.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct HttpDefaults {
    /// Requests per second per client IP on this plugin's routes (`None`: no limit).
    pub rate_per_second: Option<u32>,
    /// Requests per minute per client IP on this plugin's routes (`None`: no limit).
    pub rate_per_minute: Option<u32>,
    /// Browser origins allowed to call this plugin's routes (CORS); empty: no CORS headers.
    pub cors_origins: Vec<String>,
    /// Extra request headers browsers may send cross-origin (e.g. an API key header).
    pub cors_headers: Vec<String>,
    /// Tighter limits for single routes (by operation id), e.g. an expensive one; the
    /// operator's `route_limits` override them.
    pub operation_limits: Vec<OperationLimit>,
}

/// One rule's counters in a [`PluginContext::cache_stats`] answer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuleCounts {
    /// Answers from the cache: fresh from L1 or L2, or stale.
    pub hits: u64,
    /// Lookups that found nothing fresh.
    pub misses: u64,
    /// Loader (origin) calls.
    pub loads: u64,
    /// Loader calls that failed.
    pub load_errors: u64,
}

/// Each rule's counters in a [`PluginContext::cache_stats`] answer, by rule name.
pub fn rule_counts(stats: &serde_json::Value) -> Vec<(String, RuleCounts)> {
    let Some(rules) = stats.get("rules").and_then(serde_json::Value::as_object) else {
        return Vec::new();
    };
    rules
        .iter()
        .map(|(name, r)| {
            let n = |k: &str| r.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
            let counts = RuleCounts {
                hits: n("hits_l1") + n("hits_l2") + n("stale_served"),
                misses: n("misses"),
                loads: n("origin_calls"),
                load_errors: n("origin_errors"),
            };
            (name.clone(), counts)
        })
        .collect()
}

/// Hits (from L1, from L2, stale answers served) and misses, summed over the rules of a
/// [`PluginContext::cache_stats`] answer: what a seed's "hit rate" of its cache means.
/// The top level of that answer has no such totals (its counters are per rule).
pub fn rule_hits_and_misses(stats: &serde_json::Value) -> (u64, u64) {
    rule_counts(stats)
        .iter()
        .fold((0, 0), |(h, m), (_, c)| (h + c.hits, m + c.misses))
}

/// A rate limit for one route, per client.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationLimit {
    /// The route's operation id.
    pub operation: String,
    /// Requests per second (`None`: no limit).
    pub per_second: Option<u32>,
    /// Requests per minute (`None`: no limit).
    pub per_minute: Option<u32>,
}

/// One request a warming job sends through the server (and so through the cache).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct WarmRequest {
    /// HTTP method, e.g. `GET`.
    pub method: String,
    /// Path and query relative to the plugin's mount prefix, e.g. `/api/v2/services`.
    pub path: String,
    /// JSON body for POST routes whose rule keys the body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// Who the request is made as, for routes that need a principal (a tenant's entries
    /// are warmed as that tenant). The core passes it to the authentication phase beside
    /// the headers, never as a header, so no client can claim it; its `kind` is set to
    /// [`crate::PrincipalKind::Warming`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<crate::Principal>,
}

impl WarmRequest {
    /// A GET of `path` (relative to the plugin's prefix).
    pub fn get(path: impl Into<String>) -> Self {
        Self {
            method: "GET".into(),
            path: path.into(),
            body: None,
            principal: None,
        }
    }

    /// The same request, made as `user` of `tenant` holding `permissions`.
    pub fn as_principal(mut self, user: &str, tenant: Option<&str>, permissions: &[&str]) -> Self {
        self.principal = Some(crate::Principal {
            user: user.to_owned(),
            tenant: tenant.map(str::to_owned),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
            kind: crate::PrincipalKind::Warming,
        });
        self
    }
}

/// Whether a purge pattern is made of wildcards only (`*`, `**`, `?*`, or nothing): such a
/// pattern would purge every key, and every purge API refuses it in favour of its explicit
/// "all" form, so a typo or an empty parameter never clears a cache.
pub fn is_wildcard_only(pattern: &str) -> bool {
    pattern.trim().chars().all(|c| matches!(c, '*' | '?'))
}

/// What to drop from the cache.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(tag = "kind", content = "values", rename_all = "snake_case")]
pub enum Invalidation {
    /// Exact cache keys.
    Keys(Vec<String>),
    /// Every entry carrying any of these tags.
    Tags(Vec<String>),
    /// Keys matching a glob pattern (`*`, `?`); a bare `*` is refused, use `All`.
    Pattern(String),
    /// Everything this plugin cached.
    All,
}

/// A value from [`PluginContext::get_or_load`], and whether it came from the cache.
#[derive(Debug, Clone)]
pub struct LoadedValue<T> {
    /// The value.
    pub value: T,
    /// True exactly when the value was served from the cache (fresh or stale), not loaded.
    pub cache_hit: bool,
}

/// Bytes from the cache or the loader, as the host returns them.
#[derive(Debug, Clone)]
pub struct CachedBytes {
    /// The stored bytes.
    pub bytes: Bytes,
    /// True when served from the cache rather than from the loader.
    pub cache_hit: bool,
}

/// Keys found by [`PluginContext::cache_keys`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct KeyListing {
    /// Matching keys, at most the limit asked for, as stored (with the plugin namespace).
    pub keys: Vec<ListedKey>,
    /// How many keys matched before the limit was applied (counting stops at a bound the
    /// host chooses, so a huge keyspace is not walked whole).
    pub total_found: u64,
}

/// One key of a [`KeyListing`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ListedKey {
    /// The cache key.
    pub key: String,
    /// How long the store keeps it, in milliseconds; `None` when it has no expiry.
    pub expires_in_ms: Option<u64>,
    /// How long it stays fresh (its TTL left; 0 once only a stale window keeps it), in
    /// milliseconds; `None` when unknown.
    #[serde(default)]
    pub fresh_for_ms: Option<u64>,
}

/// What [`PluginContext::cache_health`] reports.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct CacheHealth {
    /// `memory`, `standalone`, `sentinel` or `cluster`.
    pub mode: String,
    /// Whether Redis is configured.
    pub redis_configured: bool,
    /// Whether Redis answered (false when not configured).
    pub redis_connected: bool,
    /// Round trip of a PING, when it answered.
    pub ping_ms: Option<f64>,
}

/// One warm source's run, from [`PluginContext::warm`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct WarmRun {
    /// The source, as `plugin.source`.
    pub source: String,
    /// The warming job that ran it (the policy's, or an ad-hoc one named after the source).
    pub job: String,
    /// Requests answered 2xx: entries now warm.
    pub entries: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failures.
    pub error_samples: Vec<String>,
    /// How long the run took, milliseconds.
    pub duration_ms: u64,
}

/// Loader handed to the host by [`PluginContext::get_or_load`]: produces the bytes to cache.
pub type BytesLoader = BoxFuture<'static, Result<Bytes, PluginError>>;

/// The core's services behind a [`PluginContext`]. Implemented by the core; plugins use the
/// typed methods of [`PluginContext`] instead of calling this directly.
pub trait Host: Send + Sync {
    /// Serves `key` from the cache under the named policy rule, or runs `load` (once per key
    /// at a time, however many callers wait) and caches what it returns.
    fn get_or_load(
        &self,
        plugin: &str,
        rule: &str,
        key: String,
        load: BytesLoader,
    ) -> BoxFuture<'static, Result<CachedBytes, PluginError>>;

    /// Drops entries this plugin cached; returns how many were removed.
    fn invalidate(
        &self,
        plugin: &str,
        what: Invalidation,
    ) -> BoxFuture<'static, Result<u64, PluginError>>;

    /// Cache statistics for this plugin's rules and keys (hits, misses, entries, ...), as the
    /// admin API reports them; for a plugin's own stats route.
    fn cache_stats(&self, plugin: &str) -> BoxFuture<'static, serde_json::Value>;

    /// Publishes an event. When emitted while handling a request, the policy triggers it
    /// fires complete before that request's response is sent.
    fn emit(&self, event: Event);

    /// Runs a background task on the server's runtime; it is stopped at shutdown.
    fn spawn(&self, task: BoxFuture<'static, ()>);

    /// Keys of this plugin matching `pattern` (a glob within the plugin's namespace), with
    /// their remaining lifetimes; for a plugin's own key-listing alias route.
    fn cache_keys(
        &self,
        plugin: &str,
        pattern: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<KeyListing, PluginError>> {
        let _ = (plugin, pattern, limit);
        Box::pin(async { Ok(KeyListing::default()) })
    }

    /// Runs this plugin's warm sources `sources` now, through the server's request pipeline
    /// as the core's own warming principal (the policy's job for a source when there is
    /// one, so `/admin/cache/jobs` shows the run); for a plugin's own warm alias route.
    fn warm(
        &self,
        plugin: &str,
        sources: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<WarmRun>, PluginError>> {
        let _ = (plugin, sources);
        Box::pin(async { Err(PluginError::failed("this host does not warm")) })
    }

    /// Reachability of the cache's shared store; for a plugin's own health alias route.
    fn cache_health(&self) -> BoxFuture<'static, CacheHealth> {
        Box::pin(async { CacheHealth::default() })
    }

    /// The W3C trace-context headers (`traceparent`, and `tracestate` when there is one) of
    /// the span current on the calling task; empty when traces are not exported.
    fn trace_headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// The server's current time: the wall clock, or the instant the configuration starts
    /// the clock at (`server.clock_start`, for tests and demos). Policies' `today` and
    /// entry ages read the same clock.
    fn now(&self) -> SystemTime;

    /// Whether the plugins are built only to be looked at (`larder check`, `explain`,
    /// `openapi`), never to serve.
    fn inspecting(&self) -> bool {
        false
    }
}

/// The core's services, as a plugin sees them. Cheap to clone; keep one in your state.
#[derive(Clone)]
pub struct PluginContext {
    plugin: Arc<str>,
    host: Arc<dyn Host>,
}

impl fmt::Debug for PluginContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PluginContext")
            .field("plugin", &self.plugin)
            .finish_non_exhaustive()
    }
}

impl PluginContext {
    /// Built by the core for each plugin.
    pub fn new(plugin: &str, host: Arc<dyn Host>) -> Self {
        Self {
            plugin: plugin.into(),
            host,
        }
    }

    /// The plugin this context belongs to.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// The seeds' `@cached`: returns the cached value for `key` under the policy rule named
    /// `rule`, or runs `load` and caches its result with that rule's TTL, tags and store.
    ///
    /// Keys are namespaced by plugin. Concurrent calls for one key run `load` once.
    pub async fn get_or_load<T, F, Fut>(
        &self,
        rule: &NamedRule,
        key: impl Into<String>,
        load: F,
    ) -> Result<LoadedValue<T>, PluginError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
    {
        let cached = self.get_or_load_json(rule, key, load).await?;
        let value = serde_json::from_slice(&cached.bytes)
            .map_err(|e| PluginError::failed(format!("cached value does not decode: {e}")))?;
        Ok(LoadedValue {
            value,
            cache_hit: cached.cache_hit,
        })
    }

    /// [`Self::get_or_load`] without decoding: the value's JSON as cached, for a handler
    /// that answers with it as it is (spliced into its envelope) instead of decoding it into
    /// `T` and encoding it again on every hit.
    pub async fn get_or_load_json<T, F, Fut>(
        &self,
        rule: &NamedRule,
        key: impl Into<String>,
        load: F,
    ) -> Result<CachedBytes, PluginError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce() -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, PluginError>> + Send + 'static,
    {
        let loader: BytesLoader = Box::pin(async move {
            let value = guard(async move { load().await }).await??;
            serde_json::to_vec(&value)
                .map(Bytes::from)
                .map_err(|e| PluginError::failed(format!("cannot serialise cached value: {e}")))
        });
        self.host
            .get_or_load(&self.plugin, rule.name, key.into(), loader)
            .await
    }

    /// The seeds' `@cache_invalidate`: drops entries this plugin cached.
    pub async fn invalidate(&self, what: Invalidation) -> Result<u64, PluginError> {
        self.host.invalidate(&self.plugin, what).await
    }

    /// This plugin's cache statistics (for a plugin's own stats alias route).
    pub async fn cache_stats(&self) -> serde_json::Value {
        self.host.cache_stats(&self.plugin).await
    }

    /// Keys this plugin's entries are stored under that match `pattern` (`*`, `?`), relative
    /// to the plugin's namespace: `revenue:*` lists `<plugin>:revenue:*`. At most `limit`.
    pub async fn cache_keys(&self, pattern: &str, limit: usize) -> Result<KeyListing, PluginError> {
        self.host.cache_keys(&self.plugin, pattern, limit).await
    }

    /// Runs this plugin's warm sources (names as in [`Plugin::warm_sources`]) now and
    /// waits for them: the requests go through the server like a warming job's.
    ///
    /// [`Plugin::warm_sources`]: crate::Plugin::warm_sources
    pub async fn warm(&self, sources: &[&str]) -> Result<Vec<WarmRun>, PluginError> {
        let sources = sources.iter().map(|s| s.to_string()).collect();
        self.host.warm(&self.plugin, sources).await
    }

    /// Whether the cache's shared store (Redis) is reachable, and its PING round trip.
    pub async fn cache_health(&self) -> CacheHealth {
        self.host.cache_health().await
    }

    /// Emits an event with its fields (a JSON object); policy triggers map it to
    /// invalidations. Emit after the change is committed, so a purge never races ahead of it.
    /// A declared field left out is logged: a trigger templating from it purges nothing.
    pub fn emit(&self, kind: &EventKind, fields: serde_json::Value) {
        let fields = match fields {
            serde_json::Value::Object(map) => map,
            other => {
                let mut map = serde_json::Map::new();
                map.insert("value".into(), other);
                map
            }
        };
        let missing: Vec<&str> = kind
            .fields
            .iter()
            .copied()
            .filter(|f| !fields.contains_key(*f))
            .collect();
        if !missing.is_empty() {
            tracing::warn!(
                plugin = %self.plugin,
                event = kind.name,
                ?missing,
                "event emitted without fields its declaration lists"
            );
        }
        self.host.emit(Event {
            plugin: self.plugin.to_string(),
            name: kind.name.to_owned(),
            fields,
        });
    }

    /// The W3C trace-context headers for an upstream HTTP request made now: add every pair
    /// to the request, so the upstream's spans join the trace of the request being served
    /// (and of the cache miss that called the upstream).
    ///
    /// ```ignore
    /// let mut req = client.get(url);
    /// for (name, value) in ctx.trace_headers() {
    ///     req = req.header(name, value);
    /// }
    /// ```
    ///
    /// Call it on the task making the request, inside the handler (or a future it awaits):
    /// the headers name the span current there. Empty when the server exports no traces, so
    /// always calling it is cheap.
    pub fn trace_headers(&self) -> Vec<(String, String)> {
        self.host.trace_headers()
    }

    /// The server's current time. Read "now" here rather than from the system clock, so the
    /// plugin agrees with the policies (`today`) and runs at a chosen instant under test.
    pub fn now(&self) -> SystemTime {
        self.host.now()
    }

    /// True when the plugin is built only so its routes, rules and documents can be read
    /// (`larder check`, `larder explain`, `larder openapi`): no request will be served, so
    /// [`crate::Plugin::new`] should leave no trace — create no files, generate no data,
    /// connect to nothing — and still mount the same routes.
    pub fn inspecting(&self) -> bool {
        self.host.inspecting()
    }

    /// Spawns a background task on the server's runtime. Use this rather than
    /// `tokio::spawn`: a dynamic plugin has its own copy of tokio with no runtime of its own.
    pub fn spawn<F>(&self, task: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let plugin = self.plugin.clone();
        self.host.spawn(Box::pin(async move {
            if let Err(e) = guard(task).await {
                tracing::error!(plugin = %plugin, error = %e, "background task failed");
            }
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::is_wildcard_only;

    #[test]
    fn only_wildcards_match_everything() {
        for p in ["", " ", "*", "**", "?*", " * "] {
            assert!(is_wildcard_only(p), "{p:?}");
        }
        for p in ["slots:*", "a", "*x*", "user:?"] {
            assert!(!is_wildcard_only(p), "{p:?}");
        }
    }
}
