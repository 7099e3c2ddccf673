//! The core's side of [`larder_plugin::Host`]: the services every plugin context reaches.
//!
//! Plugins are built before the policies can be loaded (the policies are checked against
//! the plugins' routes), so the engine is attached once it exists; until then a plugin
//! that asks for a cached value gets it loaded, uncached.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use larder_plugin::context::{BytesLoader, CachedBytes};
use larder_plugin::{Event, Host, Invalidation, PluginError};
use larder_policy::RuleMatch;
use larder_store::{Entry, Loaded, OriginError, Outcome, Purge};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use crate::engine::Engine;

/// Services shared by all plugins of one server.
pub struct CoreHost {
    tasks: TaskTracker,
    clock: larder_store::Clock,
    engine: OnceLock<Arc<Engine>>,
    /// Rules each plugin used by name, for its stats alias.
    used: parking_lot::Mutex<std::collections::BTreeSet<(String, String)>>,
}

/// The implicit tag every entry of a plugin carries: purging a plugin is a tag purge.
pub fn plugin_tag(plugin: &str) -> String {
    format!("plugin:{plugin}")
}

impl CoreHost {
    /// A host whose background tasks are tracked by `tasks` (closed and awaited at shutdown)
    /// and whose "now" is `clock`, the one the cache engine is built with.
    pub fn new(tasks: TaskTracker, clock: larder_store::Clock) -> Arc<Self> {
        Arc::new(Self {
            tasks,
            clock,
            engine: OnceLock::new(),
            used: Default::default(),
        })
    }

    /// Attaches the engine once policies are loaded.
    pub fn attach(&self, engine: Arc<Engine>) {
        let _ = self.engine.set(engine);
    }

    fn engine(&self) -> Option<Arc<Engine>> {
        self.engine.get().cloned()
    }
}

/// Keys a plugin caches from code live under `<plugin>:`.
fn namespaced(plugin: &str, key: &str) -> String {
    format!("{plugin}:{key}")
}

impl Host for CoreHost {
    fn now(&self) -> std::time::SystemTime {
        self.clock.now()
    }

    fn get_or_load(
        &self,
        plugin: &str,
        rule: &str,
        key: String,
        load: BytesLoader,
    ) -> BoxFuture<'static, Result<CachedBytes, PluginError>> {
        let engine = self.engine();
        let plugin = plugin.to_owned();
        let rule_name = rule.to_owned();
        {
            let mut used = self.used.lock();
            if !used.contains(&(plugin.clone(), rule_name.clone())) {
                used.insert((plugin.clone(), rule_name.clone()));
            }
        }
        Box::pin(async move {
            let policy = engine.as_ref().map(|e| e.policy());
            let rule = policy.as_ref().and_then(|p| p.rule(&rule_name));
            let (Some(engine), Some(rule)) = (engine, rule) else {
                tracing::warn!(
                    plugin,
                    rule = rule_name,
                    "no policy rule by this name; loading uncached"
                );
                let bytes = load.await?;
                return Ok(CachedBytes {
                    bytes,
                    cache_hit: false,
                });
            };
            let bound = engine.bound_rule(rule.clone());
            let key = namespaced(&plugin, &key);
            let ttl = rule.ttl.base;
            let mut tags: Vec<String> = rule
                .tags
                .iter()
                .map(|t| {
                    t.render(&larder_policy::Request::default(), Default::default())
                        .0
                })
                .collect();
            tags.push(plugin_tag(&plugin));
            tags.push(format!("rule:{}", rule.name));
            let (swr, sie) = (rule.stale_while_revalidate, rule.stale_if_error);
            // The loader runs on the engine's own task: keep the caller's span around it,
            // so plugin logs and upstream trace headers belong to the request.
            let span = tracing::Span::current();
            let served = engine
                .cache
                .get_or_load(&key, &bound.opts, move || async move {
                    match load.instrument(span).await {
                        Ok(bytes) => Loaded::Store(
                            Entry::new(200, bytes)
                                .with_ttl(Duration::from_millis(ttl.as_millis()))
                                .with_swr(Duration::from_millis(swr.as_millis()))
                                .with_sie(Duration::from_millis(sie.as_millis()))
                                .with_tags(tags),
                        ),
                        Err(e) => Loaded::Error(OriginError::new(e.to_string())),
                    }
                })
                .await
                .map_err(|e| PluginError::Failed(e.message.to_string()))?;
            let cache_hit = matches!(
                served.status.outcome,
                Outcome::Hit | Outcome::Stale | Outcome::StaleIfError
            );
            Ok(CachedBytes {
                bytes: Bytes::clone(&served.entry.body),
                cache_hit,
            })
        })
    }

    fn invalidate(
        &self,
        plugin: &str,
        what: Invalidation,
    ) -> BoxFuture<'static, Result<u64, PluginError>> {
        let engine = self.engine();
        let plugin = plugin.to_owned();
        Box::pin(async move {
            let Some(engine) = engine else {
                return Ok(0);
            };
            let target = match what {
                Invalidation::Keys(keys) => {
                    Purge::Keys(keys.iter().map(|k| namespaced(&plugin, k)).collect())
                }
                Invalidation::Tags(tags) => Purge::Tags(tags),
                Invalidation::Pattern(p) if p.trim().is_empty() || p.trim() == "*" => {
                    return Err(PluginError::failed(
                        "a bare `*` pattern is refused; use Invalidation::All to clear everything",
                    ));
                }
                Invalidation::Pattern(p) => Purge::Pattern(namespaced(&plugin, &p)),
                Invalidation::All => Purge::Tags(vec![plugin_tag(&plugin)]),
            };
            Ok(engine.purge(target, &format!("plugin {plugin}")).await)
        })
    }

    fn cache_stats(&self, plugin: &str) -> BoxFuture<'static, serde_json::Value> {
        let engine = self.engine();
        let plugin = plugin.to_owned();
        let used: Vec<String> = self
            .used
            .lock()
            .iter()
            .filter(|(p, _)| *p == plugin)
            .map(|(_, r)| r.clone())
            .collect();
        Box::pin(async move {
            let Some(engine) = engine else {
                return serde_json::json!({ "plugin": plugin, "rules": {} });
            };
            let policy = engine.policy();
            let names: Vec<String> = policy
                .rules()
                .iter()
                .filter(|r| match &r.matcher {
                    RuleMatch::Operation { plugin: p, .. } | RuleMatch::Plugin { plugin: p } => {
                        *p == plugin
                    }
                    RuleMatch::Path { plugin: p, .. } => p.as_deref() == Some(plugin.as_str()),
                    RuleMatch::Code => used.contains(&r.name),
                })
                .map(|r| r.name.clone())
                .collect();
            let snapshot = engine.cache.snapshot();
            let rules: serde_json::Map<String, serde_json::Value> = names
                .iter()
                .filter_map(|n| {
                    snapshot
                        .rules
                        .get(n)
                        .map(|s| (n.clone(), serde_json::to_value(s).unwrap_or_default()))
                })
                .collect();
            serde_json::json!({
                "plugin": plugin,
                "rules": rules,
                "l1": { "entries": snapshot.l1_entries, "bytes": snapshot.l1_bytes },
            })
        })
    }

    fn emit(&self, event: Event) {
        tracing::debug!(plugin = %event.plugin, event = %event.name, "plugin event");
        if let Err(event) = crate::layer::record_event(event) {
            // Not inside a request (a background task): apply the triggers right away.
            if let Some(engine) = self.engine() {
                self.tasks.spawn(async move {
                    engine.on_event(&event).await;
                });
            }
        }
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.tasks.spawn(task);
    }

    fn trace_headers(&self) -> Vec<(String, String)> {
        // Runs in host code even for a dynamic plugin, so it reads the host's span tree.
        crate::otel::current_headers()
    }
}
