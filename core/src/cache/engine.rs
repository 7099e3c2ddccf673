//! The cache engine and the policies, joined: what the caching layer, the plugins' context,
//! the admin API and warming jobs share.
//!
//! Policies are loaded against a [`Catalog`] of every plugin's routes, events and warm
//! sources, so a rule naming an unknown operation fails at load. Each route gets a
//! [`RouteSlot`] whose rule is resolved once (at start and on every reload), so a request
//! never searches the rule list. Reloads swap everything atomically; an invalid edit
//! keeps the old policies serving and is reported.

use std::collections::VecDeque;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use larder_policy::{Catalog, Clock, Diagnostics, Invalidation, PolicySet, Rule};
use larder_store::{Cache, CallOptions, Purge, RuleStats, StoreKind};
use parking_lot::Mutex;
use serde::Serialize;

/// The implicit tag every entry of a plugin carries: purging a plugin is a tag purge.
pub(crate) fn plugin_tag(plugin: &str) -> String {
    format!("plugin:{plugin}")
}

/// The tag an entry of `plugin` is stored under for a policy tag `tag`. Tags are kept per
/// plugin, so a plugin's purge (its cache-admin alias, its code) reaches only its own
/// entries; a trigger or a route's invalidation purges in its own plugin's space.
pub(crate) fn entry_tag(plugin: &str, tag: &str) -> String {
    format!("{plugin}/{tag}")
}

/// A route as the caching layer knows it, with its rule (re-resolved on reload).
pub struct RouteSlot {
    /// Plugin serving it.
    pub plugin: String,
    /// Operation id, when the route has one.
    pub operation: Option<String>,
    /// Upper-case method.
    pub method: String,
    /// Full OpenAPI path template.
    pub path: String,
    /// Path parameter names in order; poem-openapi registers them positionally as
    /// `param0`, `param1`, ... (see [`RouteSlot::param_key`]).
    pub params: Vec<String>,
    /// The rule in force, with what a request under it needs prepared.
    pub bound: ArcSwapOption<BoundRule>,
}

impl RouteSlot {
    /// The router's name for path parameter `name` (`param0`, ...).
    pub fn param_key(&self, name: &str) -> Option<&'static str> {
        const KEYS: [&str; 8] = [
            "param0", "param1", "param2", "param3", "param4", "param5", "param6", "param7",
        ];
        let i = self.params.iter().position(|p| p == name)?;
        KEYS.get(i).copied()
    }
}

/// A rule plus the per-rule things the hot path should not rebuild per request.
pub struct BoundRule {
    /// The compiled rule.
    pub rule: Arc<Rule>,
    /// Options for the engine (store, stats handle).
    pub opts: CallOptions,
}

/// Result of the last policy reload.
#[derive(Debug, Clone, Serialize, Default)]
pub struct ReloadStatus {
    /// Unix ms of the last attempt.
    pub at_ms: u64,
    /// Whether it was applied.
    pub ok: bool,
    /// What triggered it (`startup`, `file change`, `SIGHUP`, `admin`).
    pub trigger: String,
    /// The errors, one per line (`file:line:col: error: ...`), when it failed.
    pub errors: Vec<String>,
    /// Number of rules now in force.
    pub rules: usize,
}

/// One invalidation, for `/admin/audit`.
#[derive(Debug, Clone, Serialize)]
pub struct AuditEntry {
    /// Unix ms.
    pub at_ms: u64,
    /// Who asked: `route booking.create_appointment`, `event booking.appointment.created`,
    /// `admin`, `plugin aliexpress`.
    pub source: String,
    /// What was purged.
    pub target: String,
    /// Entries removed.
    pub removed: u64,
    /// Error, if a layer could not be reached.
    pub error: Option<String>,
}

const AUDIT_KEEP: usize = 1000;

/// Shared cache + policy state of one server.
pub struct Engine {
    /// The cache engine.
    pub cache: Cache,
    policy: ArcSwap<PolicySet>,
    policy_paths: Vec<PathBuf>,
    catalog: Catalog,
    slots: Mutex<Vec<Arc<RouteSlot>>>,
    reload: Mutex<ReloadStatus>,
    /// What the policy files held when the last load (start or reload) began.
    loaded_files: Mutex<PolicyFiles>,
    audit: Mutex<VecDeque<AuditEntry>>,
}

fn store_kind(store: larder_policy::Store) -> StoreKind {
    match store {
        larder_policy::Store::Memory => StoreKind::Memory,
        larder_policy::Store::Redis => StoreKind::Redis,
        larder_policy::Store::Hybrid => StoreKind::Hybrid,
    }
}

impl Engine {
    /// Loads the policies (every problem reported at once) and builds the engine.
    pub fn new(
        cache: Cache,
        policy_paths: Vec<PathBuf>,
        catalog: Catalog,
    ) -> Result<Self, Diagnostics> {
        let loaded_files = PolicyFiles::read(&policy_paths);
        let policy = load_policies(&policy_paths, &catalog)?;
        let rules = policy.rules().len();
        let at_ms = cache.now_ms();
        Ok(Self {
            cache,
            policy: ArcSwap::from_pointee(policy),
            policy_paths,
            catalog,
            slots: Mutex::default(),
            reload: Mutex::new(ReloadStatus {
                at_ms,
                ok: true,
                trigger: "startup".into(),
                errors: Vec::new(),
                rules,
            }),
            loaded_files: Mutex::new(loaded_files),
            audit: Mutex::default(),
        })
    }

    /// The policies in force.
    pub fn policy(&self) -> Arc<PolicySet> {
        self.policy.load_full()
    }

    /// The catalog policies are checked against.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// The policy folders and files.
    pub fn policy_paths(&self) -> &[PathBuf] {
        &self.policy_paths
    }

    /// Registers a route and resolves its rule.
    pub fn add_route(
        &self,
        plugin: &str,
        operation: Option<&str>,
        method: &str,
        path: &str,
        params: Vec<String>,
    ) -> Arc<RouteSlot> {
        let slot = Arc::new(RouteSlot {
            plugin: plugin.to_owned(),
            operation: operation.map(str::to_owned),
            method: method.to_ascii_uppercase(),
            path: path.to_owned(),
            params,
            bound: ArcSwapOption::empty(),
        });
        self.bind(&slot, &self.policy());
        self.slots.lock().push(slot.clone());
        slot
    }

    fn bind(&self, slot: &RouteSlot, policy: &PolicySet) {
        let rule = policy.rule_for(
            &slot.plugin,
            slot.operation.as_deref(),
            &slot.method,
            &slot.path,
        );
        slot.bound
            .store(rule.map(|rule| Arc::new(self.bound_rule(rule))));
    }

    /// What a request under `rule` needs: store choice and the rule's stats handle.
    pub fn bound_rule(&self, rule: Arc<Rule>) -> BoundRule {
        let opts =
            CallOptions::store(store_kind(rule.store)).with_rule(self.rule_stats(&rule.name));
        BoundRule { rule, opts }
    }

    /// The stats handle of a rule.
    pub fn rule_stats(&self, rule: &str) -> Arc<RuleStats> {
        self.cache.rule_stats(rule)
    }

    /// Reloads the policy folder. On success every route is re-bound atomically; on failure
    /// the old policies keep serving and the errors are kept for the admin API.
    pub fn reload(&self, trigger: &str) -> Result<usize, Vec<String>> {
        // Read before loading: a write landing in between shows as a difference on the
        // watcher's next look, and is loaded then.
        *self.loaded_files.lock() = PolicyFiles::read(&self.policy_paths);
        match load_policies(&self.policy_paths, &self.catalog) {
            Ok(policy) => {
                let rules = policy.rules().len();
                let policy = Arc::new(policy);
                for slot in self.slots.lock().iter() {
                    self.bind(slot, &policy);
                }
                self.policy.store(policy);
                *self.reload.lock() = ReloadStatus {
                    at_ms: self.cache.now_ms(),
                    ok: true,
                    trigger: trigger.into(),
                    errors: Vec::new(),
                    rules,
                };
                tracing::info!(trigger, rules, "policies reloaded");
                Ok(rules)
            }
            Err(diags) => {
                let errors: Vec<String> = diags.iter().map(|d| d.headline()).collect();
                tracing::error!(
                    trigger,
                    errors = %errors.join("; "),
                    "policy reload refused; the previous policies stay in force"
                );
                *self.reload.lock() = ReloadStatus {
                    at_ms: self.cache.now_ms(),
                    ok: false,
                    trigger: trigger.into(),
                    errors: errors.clone(),
                    rules: self.policy().rules().len(),
                };
                Err(errors)
            }
        }
    }

    /// The last reload's outcome.
    pub fn reload_status(&self) -> ReloadStatus {
        self.reload.lock().clone()
    }

    /// Whether the policy files (their names, and their contents through any symlink) differ
    /// from what the last load read. A file event says only that something in the folder
    /// moved: a ConfigMap update is a symlink swap no `*.yaml` event reports, and unrelated
    /// writes should not reload.
    pub fn policy_files_changed(&self) -> bool {
        PolicyFiles::read(&self.policy_paths) != *self.loaded_files.lock()
    }

    /// Applies a rendered invalidation (tags, keys, patterns, all) of `plugin`'s policy
    /// (a trigger of its events, one of its routes' writes) and records it.
    pub async fn invalidate(&self, inv: &Invalidation, plugin: &str, source: &str) -> u64 {
        let mut removed = 0;
        if inv.all {
            removed += self.purge(Purge::All, source).await;
            return removed;
        }
        if !inv.tags.is_empty() {
            let tags = inv.tags.iter().map(|t| entry_tag(plugin, t)).collect();
            removed += self.purge(Purge::Tags(tags), source).await;
        }
        if !inv.keys.is_empty() {
            removed += self.purge(Purge::Keys(inv.keys.clone()), source).await;
        }
        for pattern in &inv.patterns {
            removed += self.purge(Purge::Pattern(pattern.clone()), source).await;
        }
        for skipped in &inv.skipped {
            tracing::warn!(source, target = %skipped, "invalidation target skipped: a value it needs was missing");
        }
        removed
    }

    /// Purges policy tags in every plugin's space (the admin API's tag purge).
    pub async fn purge_tags(&self, tags: &[String], source: &str) -> u64 {
        let mut all = Vec::new();
        for plugin in self.catalog.plugins() {
            all.extend(tags.iter().map(|t| entry_tag(plugin, t)));
        }
        // Tags the core sets itself (`plugin:`, `rule:`) are not per plugin.
        all.extend(
            tags.iter()
                .filter(|t| t.starts_with("plugin:") || t.starts_with("rule:"))
                .cloned(),
        );
        self.purge(Purge::Tags(all), source).await
    }

    /// One purge, logged to the audit trail.
    pub async fn purge(&self, target: Purge, source: &str) -> u64 {
        let described = describe(&target);
        let span = tracing::debug_span!(
            "cache.invalidate",
            cache.invalidate.target = %described,
            cache.invalidate.source = source,
            cache.invalidate.removed = tracing::field::Empty,
            otel.status_code = tracing::field::Empty,
        );
        let result =
            tracing::Instrument::instrument(self.cache.invalidate(target), span.clone()).await;
        let (removed, error) = match result {
            Ok(n) => (n, None),
            Err(e) => (0, Some(e.to_string())),
        };
        span.record("cache.invalidate.removed", removed);
        if error.is_some() {
            span.record("otel.status_code", "error");
        }
        tracing::info!(source, target = %described, removed, error = ?error, "invalidated");
        let mut audit = self.audit.lock();
        audit.push_back(AuditEntry {
            at_ms: self.cache.now_ms(),
            source: source.to_owned(),
            target: described,
            removed,
            error,
        });
        if audit.len() > AUDIT_KEEP {
            audit.pop_front();
        }
        removed
    }

    /// Most recent invalidations first.
    pub fn audit(&self, limit: usize) -> Vec<AuditEntry> {
        self.audit
            .lock()
            .iter()
            .rev()
            .take(limit)
            .cloned()
            .collect()
    }

    /// Runs the triggers an event fires; returns entries removed.
    pub async fn on_event(&self, event: &larder_plugin::Event) -> u64 {
        let policy = self.policy();
        if !policy.listens_to(&event.plugin, &event.name) {
            return 0;
        }
        let fields = serde_json::Value::Object(event.fields.clone());
        let inv = policy.on_event(&event.plugin, &event.name, &fields);
        self.invalidate(
            &inv,
            &event.plugin,
            &format!("event {}.{}", event.plugin, event.name),
        )
        .await
    }

    /// The policy clock (for `today` in conditions).
    pub fn clock(&self) -> Clock {
        Clock::at((self.cache.now_ms() / 1000) as i64)
    }

    /// Routes and their rules, for the admin API.
    pub fn routes(&self) -> Vec<RouteRule> {
        self.slots
            .lock()
            .iter()
            .map(|s| RouteRule {
                plugin: s.plugin.clone(),
                operation: s.operation.clone(),
                method: s.method.clone(),
                path: s.path.clone(),
                rule: s.bound.load().as_ref().map(|b| b.rule.name.clone()),
            })
            .collect()
    }
}

/// A route and the rule in force for it.
#[derive(Debug, Clone, Serialize)]
pub struct RouteRule {
    /// Plugin.
    pub plugin: String,
    /// Operation id.
    pub operation: Option<String>,
    /// Method.
    pub method: String,
    /// Path template.
    pub path: String,
    /// Rule name, if a rule covers the route.
    pub rule: Option<String>,
}

/// Loads every `*.yaml`/`*.yml` of the given folders plus the given files, as one set, with
/// the policy each plugin ships for the plugins those files name nothing of (all of them
/// when the default `./policies` folder is not there: the binary run outside the
/// repository). A folder that cannot be read is an error, not an empty policy set.
fn load_policies(paths: &[PathBuf], catalog: &Catalog) -> Result<PolicySet, Diagnostics> {
    let files = policy_file_list(paths).map_err(|(path, e)| {
        Diagnostics(vec![larder_policy::Diagnostic::new(
            path,
            Default::default(),
            format!("cannot read the policy folder: {e}"),
        )])
    })?;
    for path in paths {
        if !path.exists() && path != std::path::Path::new("policies") {
            tracing::warn!(path = %path.display(), "policy path not found");
        }
    }
    if files.is_empty() {
        tracing::info!("no policy files: using the policies the plugins ship");
    }
    PolicySet::load_files(&files, Some(catalog))
}

/// The policy files `paths` stand for: each folder's `*.yaml`/`*.yml`, each existing file.
fn policy_file_list(paths: &[PathBuf]) -> Result<Vec<PathBuf>, (PathBuf, std::io::Error)> {
    let mut files = Vec::new();
    for path in paths {
        if path.is_dir() {
            files.extend(larder_policy::load::policy_files(path).map_err(|e| (path.clone(), e))?);
        } else if path.exists() {
            files.push(path.clone());
        }
    }
    Ok(files)
}

/// The policy files as a load would read them: each one's path and bytes (through
/// symlinks), or the error reading it or its folder gave.
#[derive(Debug, Default, PartialEq, Eq)]
struct PolicyFiles(Vec<(PathBuf, Result<Vec<u8>, std::io::ErrorKind>)>);

impl PolicyFiles {
    fn read(paths: &[PathBuf]) -> Self {
        match policy_file_list(paths) {
            Ok(files) => Self(
                files
                    .into_iter()
                    .map(|f| {
                        let bytes = std::fs::read(&f).map_err(|e| e.kind());
                        (f, bytes)
                    })
                    .collect(),
            ),
            Err((path, e)) => Self(vec![(path, Err(e.kind()))]),
        }
    }
}

fn describe(target: &Purge) -> String {
    match target {
        Purge::Keys(k) => format!("keys {}", k.join(", ")),
        Purge::Tags(t) => format!("tags {}", t.join(", ")),
        Purge::Pattern(p) => format!("pattern {p}"),
        Purge::All => "all".into(),
    }
}

/// Debounce window for policy file changes: editors write in several steps.
pub const RELOAD_DEBOUNCE: Duration = Duration::from_millis(250);
