//! The admin API under `/admin`: API keys with read/write roles, compared in constant time.

pub(crate) mod metrics;
pub(crate) mod report;

use std::sync::Arc;

use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use subtle::ConstantTimeEq;

use std::sync::OnceLock;

use larder_store::Purge;
use poem_openapi::param::Query;

use crate::cache::engine::Engine;
use crate::config::{AdminKey, AdminRole, ReportConfig};
use crate::http::error::ApiError;
use crate::jobs::warming::{WarmError, Warmer};
use crate::plugins::PluginSource;

/// The configured admin keys, put in request data for the auth checkers.
#[derive(Clone, Default)]
pub struct AdminKeys(Arc<Vec<AdminKey>>);

impl AdminKeys {
    /// Wraps the configured keys.
    pub fn new(keys: Vec<AdminKey>) -> Self {
        Self(Arc::new(keys))
    }

    /// The role of a presented secret. Every configured key is compared, in constant time,
    /// so timing says nothing about which key (or how much of one) matched.
    fn role_of(&self, presented: &str) -> Option<AdminRole> {
        let mut found = None;
        for key in self.0.iter() {
            if bool::from(key.key.as_bytes().ct_eq(presented.as_bytes())) {
                found = found.max(Some(key.role));
            }
        }
        found
    }
}

async fn check_header(req: &Request, key: ApiKey) -> Option<AdminRole> {
    req.data::<AdminKeys>()?.role_of(&key.key)
}

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<AdminRole> {
    req.data::<AdminKeys>()?.role_of(&bearer.token)
}

/// Admin key in the `x-admin-key` header.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "x-admin-key",
    key_in = "header",
    checker = "check_header"
)]
pub struct AdminKeyHeader(AdminRole);

/// Admin key as `Authorization: Bearer <key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct AdminBearer(AdminRole);

/// Either form of admin key.
#[derive(SecurityScheme)]
pub enum AdminAuth {
    /// `x-admin-key` header.
    Header(AdminKeyHeader),
    /// Bearer token.
    Bearer(AdminBearer),
}

impl AdminAuth {
    /// The caller's role.
    pub fn role(&self) -> AdminRole {
        match self {
            Self::Header(k) => k.0,
            Self::Bearer(b) => b.0,
        }
    }
}

/// The caller's key may read but not change things.
#[derive(ApiResponse)]
pub enum Forbidden {
    /// A read-only key tried a write operation.
    #[oai(status = 403)]
    Forbidden(Json<ApiError>),
}

/// Refuses a read-only key.
pub fn require_write(auth: &AdminAuth) -> Result<(), Forbidden> {
    if auth.role() >= AdminRole::Write {
        Ok(())
    } else {
        Err(Forbidden::Forbidden(Json(ApiError::new(
            "forbidden",
            "this admin key has the read role; this operation needs a write key",
        ))))
    }
}

/// One loaded plugin, as the admin API shows it.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AdminPluginInfo")]
pub struct PluginInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `builtin` or `dynamic`.
    pub kind: String,
    /// Library path for dynamic plugins.
    pub library: Option<String>,
    /// Mount prefix.
    pub prefix: String,
    /// Events it emits.
    pub events: Vec<String>,
    /// Warm sources it offers.
    pub warm_sources: Vec<String>,
}

impl PluginInfo {
    /// Describes a loaded plugin.
    pub fn of(p: &crate::plugins::LoadedPlugin) -> Self {
        let (kind, library) = match &p.source {
            PluginSource::Builtin => ("builtin", None),
            PluginSource::Dynamic { library } => ("dynamic", Some(library.display().to_string())),
        };
        Self {
            name: p.name.to_owned(),
            version: p.version.to_owned(),
            kind: kind.to_owned(),
            library,
            prefix: p.prefix.clone(),
            events: p.events.iter().map(|e| e.name.clone()).collect(),
            warm_sources: p.warm_sources.iter().map(|w| w.name.clone()).collect(),
        }
    }
}

/// What the admin API reads.
pub struct AdminState {
    /// Loaded plugins.
    pub plugins: Vec<PluginInfo>,
    /// Cache and policies (set once they exist).
    pub engine: OnceLock<Arc<Engine>>,
    /// Warming jobs (set once they exist).
    pub warmer: OnceLock<Arc<Warmer>>,
    /// Report thresholds.
    pub report: ReportConfig,
}

/// `/admin/...` routes.
pub struct AdminApi {
    state: Arc<AdminState>,
}

impl AdminApi {
    /// Admin routes over the server's state.
    pub fn new(state: Arc<AdminState>) -> Self {
        Self { state }
    }

    fn engine(&self) -> &Arc<Engine> {
        self.state
            .engine
            .get()
            .expect("engine attached before serving")
    }

    fn warmer(&self) -> &Arc<Warmer> {
        self.state
            .warmer
            .get()
            .expect("warmer attached before serving")
    }
}

/// What to invalidate. Give exactly one kind of target.
#[derive(Object, Debug)]
#[oai(
    rename = "AdminInvalidateRequest",
    example,
    skip_serializing_if_is_none
)]
pub struct InvalidateRequest {
    /// Exact cache keys.
    #[oai(default)]
    pub keys: Vec<String>,
    /// Tags: every entry carrying any of them.
    #[oai(default)]
    pub tags: Vec<String>,
    /// A key glob (`*`, `?`). A bare `*` is refused: use `all`.
    pub pattern: Option<String>,
    /// Every entry stored under this policy rule.
    pub rule: Option<String>,
    /// Every entry of this plugin.
    pub plugin: Option<String>,
    /// Everything.
    #[oai(default)]
    pub all: bool,
}

/// The result of an invalidation.
#[derive(Object, Debug)]
#[oai(rename = "AdminInvalidateResponse")]
pub struct InvalidateResponse {
    /// Entries removed (the larger of the L1 and L2 counts).
    pub removed: u64,
    /// What was purged.
    pub target: String,
}

/// A bad admin request.
#[derive(ApiResponse)]
pub enum AdminError {
    /// The request names no valid target; the message says which field.
    #[oai(status = 400)]
    BadRequest(Json<ApiError>),
    /// A read-only key tried a write operation.
    #[oai(status = 403)]
    Forbidden(Json<ApiError>),
    /// No such job or rule.
    #[oai(status = 404)]
    NotFound(Json<ApiError>),
}

impl From<Forbidden> for AdminError {
    fn from(f: Forbidden) -> Self {
        match f {
            Forbidden::Forbidden(b) => AdminError::Forbidden(b),
        }
    }
}

fn bad(field: &str, message: impl Into<String>) -> AdminError {
    AdminError::BadRequest(Json(ApiError::new(format!("invalid_{field}"), message)))
}

/// A key in the cache.
#[derive(Object, Debug)]
#[oai(rename = "AdminKeyEntry")]
pub struct KeyEntry {
    /// The key.
    pub key: String,
    /// Milliseconds until the store drops it (freshness plus stale windows).
    pub expires_in_ms: Option<u64>,
    /// Milliseconds it stays fresh (what is left of its TTL; 0 once only a stale window
    /// keeps it).
    pub fresh_for_ms: Option<u64>,
    /// `l1` or `l2`.
    pub layer: String,
}

/// Result of a reload.
#[derive(ApiResponse)]
pub enum ReloadResponse {
    /// Applied.
    #[oai(status = 200)]
    Ok(Json<serde_json::Value>),
    /// Refused: the previous policies stay in force; the body lists every error.
    #[oai(status = 422)]
    Invalid(Json<serde_json::Value>),
    /// A read-only key tried a write operation.
    #[oai(status = 403)]
    Forbidden(Json<ApiError>),
}

/// A warming job to run now.
#[derive(Object, Debug)]
#[oai(rename = "AdminWarmRequestBody", example)]
pub struct WarmRequestBody {
    /// Job name, as in the policy's `warming:` list.
    pub job: String,
}

/// Purge one tag: what booking's triggers do after an appointment.
impl poem_openapi::types::Example for InvalidateRequest {
    fn example() -> Self {
        InvalidateRequest {
            keys: Vec::new(),
            tags: vec!["service-catalog".into()],
            pattern: None,
            rule: None,
            plugin: None,
            all: false,
        }
    }
}

/// A job of the shipped policies.
impl poem_openapi::types::Example for WarmRequestBody {
    fn example() -> Self {
        WarmRequestBody {
            job: "booking-catalog".into(),
        }
    }
}

#[OpenApi(prefix_path = "/admin")]
impl AdminApi {
    /// Loaded plugins: name, version, built-in or dynamic, prefix, events and warm sources.
    #[oai(path = "/plugins", method = "get", operation_id = "admin_plugins")]
    async fn plugins(&self, _auth: AdminAuth) -> Json<Vec<PluginInfo>> {
        Json(self.state.plugins.clone())
    }

    /// Cache statistics: hits and misses per layer and per rule, sets, deletes, evictions,
    /// errors, stale served, coalesced waits, origin calls and calls saved, L1 bytes and
    /// entries, Redis state, latency percentiles per layer.
    #[oai(
        path = "/cache/stats",
        method = "get",
        operation_id = "admin_cache_stats"
    )]
    async fn stats(&self, _auth: AdminAuth) -> Json<serde_json::Value> {
        Json(serde_json::to_value(self.engine().cache.snapshot()).unwrap_or_default())
    }

    /// Keys matching a glob, with their remaining lifetime (from Redis when configured).
    #[oai(
        path = "/cache/keys",
        method = "get",
        operation_id = "admin_cache_keys"
    )]
    async fn keys(
        &self,
        _auth: AdminAuth,
        /// Key glob (`*`, `?`).
        #[oai(default = "default_pattern")]
        pattern: Query<String>,
        /// At most this many keys (1-10000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "10000"))
        )]
        limit: Query<u32>,
    ) -> Result<Json<Vec<KeyEntry>>, AdminError> {
        let keys = self
            .engine()
            .cache
            .keys(&pattern.0, limit.0 as usize)
            .await
            .map_err(|e| bad("pattern", e.to_string()))?;
        Ok(Json(
            keys.into_iter()
                .map(|k| KeyEntry {
                    key: k.key,
                    expires_in_ms: k.expires_in_ms,
                    fresh_for_ms: k.fresh_for_ms,
                    layer: k.layer.as_str().to_owned(),
                })
                .collect(),
        ))
    }

    /// Invalidates keys, tags, a pattern, a rule's entries, a plugin's entries, or all.
    #[oai(
        path = "/cache/invalidate",
        method = "post",
        operation_id = "admin_cache_invalidate"
    )]
    async fn invalidate(
        &self,
        auth: AdminAuth,
        body: Json<InvalidateRequest>,
    ) -> Result<Json<InvalidateResponse>, AdminError> {
        require_write(&auth)?;
        let b = body.0;
        let given = [
            !b.keys.is_empty(),
            !b.tags.is_empty(),
            b.pattern.is_some(),
            b.rule.is_some(),
            b.plugin.is_some(),
            b.all,
        ]
        .iter()
        .filter(|g| **g)
        .count();
        if given != 1 {
            return Err(bad(
                "target",
                "give exactly one of `keys`, `tags`, `pattern`, `rule`, `plugin`, `all`",
            ));
        }
        let engine = self.engine();
        let target = if !b.keys.is_empty() {
            Purge::Keys(b.keys)
        } else if !b.tags.is_empty() {
            Purge::Tags(b.tags)
        } else if let Some(p) = b.pattern {
            if larder_plugin::is_wildcard_only(&p) {
                return Err(bad(
                    "pattern",
                    "`pattern` matching everything is refused; send `{\"all\": true}` to clear the whole cache",
                ));
            }
            Purge::Pattern(p)
        } else if let Some(rule) = b.rule {
            if engine.policy().rule(&rule).is_none() {
                return Err(AdminError::NotFound(Json(ApiError::new(
                    "unknown_rule",
                    format!("no policy rule named `{rule}`"),
                ))));
            }
            Purge::Tags(vec![format!("rule:{rule}")])
        } else if let Some(plugin) = b.plugin {
            if !self.state.plugins.iter().any(|p| p.name == plugin) {
                return Err(AdminError::NotFound(Json(ApiError::new(
                    "unknown_plugin",
                    format!("no plugin named `{plugin}` is loaded"),
                ))));
            }
            Purge::Tags(vec![crate::cache::plugin_tag(&plugin)])
        } else {
            Purge::All
        };
        let described = format!("{target:?}");
        let source = format!(
            "admin ({} key)",
            if auth.role() == AdminRole::Write {
                "write"
            } else {
                "read"
            }
        );
        let removed = match target {
            // Policy tags live in each plugin's space: a tag purge reaches all of them.
            Purge::Tags(tags) => engine.purge_tags(&tags, &source).await,
            target => engine.purge(target, &source).await,
        };
        Ok(Json(InvalidateResponse {
            removed,
            target: described,
        }))
    }

    /// Cache health: mode (memory, standalone, sentinel, cluster), Redis connection and
    /// breaker state, ping latency, whether other instances' purges are heard, purges still
    /// waiting to reach Redis (`cache.pending_purges`), and the last policy reload;
    /// `degraded` with the `problems` in words when something is off.
    #[oai(
        path = "/cache/health",
        method = "get",
        operation_id = "admin_cache_health"
    )]
    async fn health(&self, _auth: AdminAuth) -> Json<serde_json::Value> {
        let engine = self.engine();
        let health = engine.cache.health().await;
        let mut problems = Vec::new();
        if let Some(redis) = &health.redis {
            if !redis.connected {
                problems.push(
                    "Redis is unreachable: L2 is skipped and answers come from L1 and the origin"
                        .to_string(),
                );
            }
            if !redis.subscribed {
                problems.push("not subscribed to the invalidation channel: other instances' purges do not reach this instance's L1".to_string());
            }
        }
        if health.pending_purges > 0 {
            problems.push(format!(
                "{} purge(s) made while Redis was unreachable are not replayed yet: Redis and the other instances may still hold the purged entries",
                health.pending_purges
            ));
        }
        Json(serde_json::json!({
            "status": if problems.is_empty() { "ok" } else { "degraded" },
            "problems": problems,
            "cache": serde_json::to_value(&health).unwrap_or_default(),
            "policies": engine.reload_status(),
        }))
    }

    /// Alerts and recommendations from the stats, with thresholds from the config.
    #[oai(
        path = "/cache/report",
        method = "get",
        operation_id = "admin_cache_report"
    )]
    async fn report(&self, _auth: AdminAuth) -> Json<serde_json::Value> {
        Json(crate::admin::report::build(
            &self.engine().cache.snapshot(),
            &self.state.report,
        ))
    }

    /// Runs a warming job now.
    #[oai(
        path = "/cache/warm",
        method = "post",
        operation_id = "admin_cache_warm"
    )]
    async fn warm(
        &self,
        auth: AdminAuth,
        body: Json<WarmRequestBody>,
    ) -> Result<Json<serde_json::Value>, AdminError> {
        require_write(&auth)?;
        match self.warmer().run_named(&body.0.job).await {
            Ok(status) => Ok(Json(serde_json::to_value(status).unwrap_or_default())),
            Err(e @ WarmError::Unknown(_)) => Err(AdminError::NotFound(Json(ApiError::new(
                "unknown_job",
                e.to_string(),
            )))),
            Err(e) => Err(bad("job", e.to_string())),
        }
    }

    /// Warming jobs: schedule, last run, duration, entries warmed, errors.
    #[oai(
        path = "/cache/jobs",
        method = "get",
        operation_id = "admin_cache_jobs"
    )]
    async fn jobs(&self, _auth: AdminAuth) -> Json<serde_json::Value> {
        Json(serde_json::to_value(self.warmer().jobs()).unwrap_or_default())
    }

    /// The policies in force: files, rules, routes and the rule covering each, and the
    /// last reload's outcome (with its errors when it was refused).
    #[oai(path = "/policies", method = "get", operation_id = "admin_policies")]
    async fn policies(&self, _auth: AdminAuth) -> Json<serde_json::Value> {
        let engine = self.engine();
        let policy = engine.policy();
        let rules: Vec<serde_json::Value> = policy
            .rules()
            .iter()
            .map(|r| {
                serde_json::json!({
                    "name": r.name,
                    "file": r.file.display().to_string(),
                    "cache": r.cache,
                    "ttl": r.ttl.base.to_string(),
                    "ttl_source": r.ttl.base_source,
                    "stale_while_revalidate": r.stale_while_revalidate.to_string(),
                    "stale_if_error": r.stale_if_error.to_string(),
                    "store": format!("{:?}", r.store).to_lowercase(),
                    "scope": format!("{:?}", r.scope).to_lowercase(),
                })
            })
            .collect();
        Json(serde_json::json!({
            "paths": engine.policy_paths().iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
            "files": policy.files().iter().map(|f| f.display().to_string()).collect::<Vec<_>>(),
            "rules": rules,
            "routes": engine.routes(),
            "warm_jobs": policy.warm_jobs().iter().map(|j| j.name.clone()).collect::<Vec<_>>(),
            "last_reload": engine.reload_status(),
        }))
    }

    /// Reloads the policy files now. An invalid edit is refused with every error and the
    /// previous policies keep serving.
    #[oai(
        path = "/policies/reload",
        method = "post",
        operation_id = "admin_policies_reload"
    )]
    async fn reload(&self, auth: AdminAuth) -> ReloadResponse {
        if let Err(Forbidden::Forbidden(b)) = require_write(&auth) {
            return ReloadResponse::Forbidden(b);
        }
        match self.engine().reload("admin") {
            Ok(rules) => ReloadResponse::Ok(Json(
                serde_json::json!({ "reloaded": true, "rules": rules }),
            )),
            Err(errors) => ReloadResponse::Invalid(Json(serde_json::json!({
                "reloaded": false,
                "errors": errors,
                "message": "the previous policies stay in force",
            }))),
        }
    }

    /// Recent invalidations, newest first: when, who asked, what, how many entries.
    #[oai(path = "/audit", method = "get", operation_id = "admin_audit")]
    async fn audit(
        &self,
        _auth: AdminAuth,
        /// At most this many entries (1-1000).
        #[oai(
            default = "default_limit",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        limit: Query<u32>,
    ) -> Json<serde_json::Value> {
        Json(serde_json::to_value(self.engine().audit(limit.0 as usize)).unwrap_or_default())
    }
}

fn default_pattern() -> String {
    "*".into()
}

fn default_limit() -> u32 {
    100
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_matching_key() {
        let keys = AdminKeys::new(vec![
            AdminKey {
                key: "read-key-0123456789".into(),
                role: AdminRole::Read,
            },
            AdminKey {
                key: "write-key-0123456789".into(),
                role: AdminRole::Write,
            },
        ]);
        assert_eq!(keys.role_of("read-key-0123456789"), Some(AdminRole::Read));
        assert_eq!(keys.role_of("write-key-0123456789"), Some(AdminRole::Write));
        assert_eq!(keys.role_of("write-key-012345678"), None);
        assert_eq!(keys.role_of(""), None);
    }
}
