//! The core's side of [`larder_plugin::Host`]: the services every plugin context reaches.
//!
//! Plugins are built before the policies can be loaded (the policies are checked against
//! the plugins' routes), so the engine is attached once it exists; until then a plugin
//! that asks for a cached value gets it loaded, uncached.
//!
//! A value a plugin caches from code goes through the same lookup → origin → store steps
//! as a cached route ([`crate::cache::lookup`]), with the same `cache.*` spans. Events a
//! handler emits are queued for its request ([`with_events`]) and their triggers run
//! before its response leaves.
//!
//! Under test ([`crate::testing::mount`]) a [`Recorder`] is attached, and each service
//! notes what it did there once it has done it.

use std::cell::RefCell;
use std::future::Future;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures::future::BoxFuture;
use larder_plugin::context::{BytesLoader, CachedBytes};
use larder_plugin::{Event, Host, Invalidation, PluginError, WarmRun};
use larder_policy::RuleMatch;
use larder_store::{Entry, Loaded, OriginError, Purge};
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::record::{Invalidated, Load, LoadOutcome, Recorder, Warmed};
use crate::cache::{Engine, entry_tag, plugin_tag};
use crate::telemetry::otel;

/// What the host knows of the request a handler is serving: the events it emitted, who
/// asked (for the audit log of a purge the handler makes) and what its `get_or_load` calls
/// found in the cache (for the answer's `Cache-Status`).
struct Handling {
    events: RefCell<Vec<Event>>,
    by: Option<String>,
    cache_status: RefCell<Vec<String>>,
    compression: RefCell<Option<Arc<larder_policy::Rule>>>,
}

/// What a handler did besides answering: the events it emitted, one RFC 9211
/// `Cache-Status` member per value it read through `get_or_load` (e.g.
/// `larder; hit; ttl=290; detail=l1; rule=products-product`), and the first of those rules
/// that compresses, whose settings then apply to the answer.
pub(crate) struct Handled {
    pub events: Vec<Event>,
    pub cache_status: Vec<String>,
    pub compression: Option<Arc<larder_policy::Rule>>,
}

tokio::task_local! {
    // Host calls run on the handler's task, dynamic plugins included (the call crosses into
    // host code), so they find their request here.
    static HANDLING: Handling;
}

/// Runs `f` (a request's handler, on behalf of `by`, the verified principal's user)
/// collecting the events it emits and the cache outcomes of its `get_or_load` calls; the
/// caller runs the events' triggers before answering.
pub(crate) async fn handling<F: Future>(by: Option<String>, f: F) -> (F::Output, Handled) {
    let handling = Handling {
        events: RefCell::new(Vec::new()),
        by,
        cache_status: RefCell::new(Vec::new()),
        compression: RefCell::new(None),
    };
    HANDLING
        .scope(handling, async {
            let out = f.await;
            let handled = HANDLING.with(|h| Handled {
                events: h.events.take(),
                cache_status: h.cache_status.take(),
                compression: h.compression.take(),
            });
            (out, handled)
        })
        .await
}

/// Notes a `get_or_load` outcome for the answer of the request being handled on this task
/// (none outside a request, e.g. a plugin's background refresh).
fn note_cache_status(member: String, rule: &Arc<larder_policy::Rule>) {
    let _ = HANDLING.try_with(|h| {
        h.cache_status.borrow_mut().push(member);
        let mut compression = h.compression.borrow_mut();
        if compression.is_none() && rule.compression.enabled {
            *compression = Some(rule.clone());
        }
    });
}

/// Queues an event for the request being handled on this task; gives it back when the
/// caller is not inside a request (a background task), so it can be applied at once.
fn record_event(event: Event) -> Result<(), Event> {
    let mut slot = Some(event);
    let _ = HANDLING.try_with(|h| h.events.borrow_mut().push(slot.take().expect("once")));
    match slot {
        None => Ok(()),
        Some(event) => Err(event),
    }
}

/// Who the handler on this task serves, for the audit log.
fn handling_for() -> Option<String> {
    HANDLING.try_with(|h| h.by.clone()).ok().flatten()
}

/// Services shared by all plugins of one server.
pub struct CoreHost {
    tasks: TaskTracker,
    inspecting: bool,
    clock: larder_store::Clock,
    engine: OnceLock<Arc<Engine>>,
    /// Rules each plugin used by name, for its stats alias.
    used: parking_lot::Mutex<std::collections::BTreeSet<(String, String)>>,
    /// Runs warm sources for [`Host::warm`]; the warming jobs (a later layer) attach it.
    warm_runner: OnceLock<Arc<dyn WarmRunner>>,
    /// Set only by `testing::mount`, for a plugin's tests to read what the host did.
    recorder: OnceLock<Arc<Recorder>>,
}

/// Runs a plugin's warm sources through the server, as the warming jobs do.
pub trait WarmRunner: Send + Sync {
    /// Runs `plugin`'s warm source `source` now and waits for it.
    fn run_source(
        &self,
        plugin: String,
        source: String,
    ) -> BoxFuture<'static, Result<WarmRun, String>>;
}

impl CoreHost {
    /// A host whose background tasks are tracked by `tasks` (closed and awaited at shutdown)
    /// and whose "now" is `clock`, the one the cache engine is built with; `inspecting` when
    /// the server is built only to be looked at.
    pub fn new(tasks: TaskTracker, clock: larder_store::Clock, inspecting: bool) -> Arc<Self> {
        Arc::new(Self {
            tasks,
            inspecting,
            clock,
            engine: OnceLock::new(),
            used: Default::default(),
            warm_runner: OnceLock::new(),
            recorder: OnceLock::new(),
        })
    }

    /// Notes what the host does for plugins in `recorder` from now on.
    pub fn record_into(&self, recorder: Arc<Recorder>) {
        let _ = self.recorder.set(recorder);
    }

    /// Attaches what runs warm sources, once the warming jobs exist.
    pub fn attach_warm_runner(&self, runner: Arc<dyn WarmRunner>) {
        let _ = self.warm_runner.set(runner);
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

    fn inspecting(&self) -> bool {
        self.inspecting
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
        let note = self
            .recorder
            .get()
            .map(|r| (r.clone(), plugin.clone(), rule_name.clone(), key.clone()));
        let served = async move {
            let policy = engine.as_ref().map(|e| e.policy());
            let rule = policy.as_ref().and_then(|p| p.rule(&rule_name));
            let (Some(engine), Some(rule)) = (engine, rule) else {
                tracing::warn!(
                    plugin,
                    rule = rule_name,
                    "no policy rule by this name; loading uncached"
                );
                return Ok((load.await?, LoadOutcome::Uncached, None));
            };
            let bound = engine.bound_rule(rule.clone());
            let key = namespaced(&plugin, &key);
            let traced = otel::cache_spans(!tracing::Span::current().is_none());
            let served = match crate::cache::lookup(&engine, &bound, &key, traced) {
                Ok(hit) => Ok(hit),
                Err(lookup) => match lookup.rest(&engine, &bound, &key).await {
                    Ok(hit) => Ok(hit),
                    Err(miss) => {
                        let mut tags: Vec<String> = rule
                            .tags(&larder_policy::Request::default(), engine.clock())
                            .iter()
                            .map(|t| entry_tag(&plugin, t))
                            .collect();
                        tags.push(plugin_tag(&plugin));
                        tags.push(format!("rule:{}", rule.name));
                        // The rule's TTL, its `when` conditions read against no request.
                        let ttl = rule.ttl(
                            &larder_policy::Request::default(),
                            engine.clock(),
                            None,
                            &key,
                        );
                        let parent = miss.parent();
                        // The loader runs on the engine's own task: keep the caller's span
                        // around it, so plugin logs and upstream trace headers belong to
                        // the request.
                        let caller = tracing::Span::current();
                        let plugin = plugin.clone();
                        miss.load(&engine, &bound, &key, move || async move {
                            let origin = otel::origin_span(&parent, &plugin);
                            let loaded = load.instrument(caller).instrument(origin).await;
                            let store = otel::store_span(&parent);
                            let loaded = match loaded {
                                Ok(bytes) => Loaded::Store(
                                    Entry::new(200, bytes)
                                        .with_ttl(ttl.ttl().into())
                                        .with_swr(ttl.stale_while_revalidate.into())
                                        .with_sie(ttl.stale_if_error.into())
                                        .with_tags(tags),
                                ),
                                Err(e) => Loaded::Error(OriginError::new(e.to_string())),
                            };
                            otel::record_store(&store, &loaded);
                            loaded
                        })
                        .await
                    }
                },
            }
            .map_err(|e| PluginError::Failed(e.message.to_string()))?;
            let mut member = served.status.header_value("larder");
            member.push_str("; rule=");
            member.push_str(&rule.name);
            Ok((
                Bytes::clone(&served.entry.body),
                LoadOutcome::of(served.status.outcome),
                Some((member, rule)),
            ))
        };
        Box::pin(async move {
            let served: Result<_, PluginError> = served.await;
            if let Ok((_, _, Some((member, rule)))) = &served {
                note_cache_status(member.clone(), rule);
            }
            if let Some((recorder, plugin, rule, key)) = note {
                let outcome = match &served {
                    Ok((_, outcome, _)) => outcome.clone(),
                    Err(e) => LoadOutcome::Failed(e.to_string()),
                };
                recorder.loaded(Load {
                    plugin,
                    rule,
                    key,
                    outcome,
                });
            }
            served.map(|(bytes, outcome, _)| CachedBytes {
                bytes,
                cache_hit: outcome.cache_hit(),
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
        // Read here, on the handler's task: the future may be polled elsewhere.
        let source = match handling_for() {
            Some(user) => format!("plugin {plugin} for {user}"),
            None => format!("plugin {plugin}"),
        };
        let note = self
            .recorder
            .get()
            .map(|r| (r.clone(), plugin.clone(), what.clone()));
        let purged = async move {
            let Some(engine) = engine else {
                return Ok(0);
            };
            let target = match what {
                Invalidation::Keys(keys) => {
                    Purge::Keys(keys.iter().map(|k| namespaced(&plugin, k)).collect())
                }
                // Its own space only: a plugin cannot purge another's entries.
                Invalidation::Tags(tags) => {
                    Purge::Tags(tags.iter().map(|t| entry_tag(&plugin, t)).collect())
                }
                Invalidation::Pattern(p) if larder_plugin::is_wildcard_only(&p) => {
                    return Err(PluginError::failed(
                        "a bare `*` pattern is refused; use Invalidation::All to clear everything",
                    ));
                }
                Invalidation::Pattern(p) => Purge::Pattern(namespaced(&plugin, &p)),
                Invalidation::All => Purge::Tags(vec![plugin_tag(&plugin)]),
            };
            Ok(engine.purge(target, &source).await)
        };
        Box::pin(async move {
            let removed = purged.await;
            if let Some((recorder, plugin, what)) = note {
                recorder.invalidated(Invalidated {
                    plugin,
                    what,
                    removed: removed.as_ref().map_err(ToString::to_string).copied(),
                });
            }
            removed
        })
    }

    fn warm(
        &self,
        plugin: &str,
        sources: Vec<String>,
    ) -> BoxFuture<'static, Result<Vec<WarmRun>, PluginError>> {
        let runner = self.warm_runner.get().cloned();
        let recorder = self.recorder.get().cloned();
        let plugin = plugin.to_owned();
        Box::pin(async move {
            let runner =
                runner.ok_or_else(|| PluginError::failed("the server is not ready to warm yet"))?;
            let mut runs = Vec::new();
            for source in sources {
                let run = runner.run_source(plugin.clone(), source.clone()).await;
                if let Some(recorder) = &recorder {
                    recorder.warmed(Warmed {
                        plugin: plugin.clone(),
                        source,
                        run: run.clone(),
                    });
                }
                runs.push(run.map_err(PluginError::failed)?);
            }
            Ok(runs)
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
            let snapshot = engine.cache.snapshot();
            // Every rule of the plugin, traffic or not, with the TTL it stores under: a
            // seed's stats name a default TTL and count from zero.
            let rules: serde_json::Map<String, serde_json::Value> = policy
                .rules()
                .iter()
                .filter(|r| match &r.matcher {
                    RuleMatch::Operation { plugin: p, .. } | RuleMatch::Plugin { plugin: p } => {
                        *p == plugin
                    }
                    RuleMatch::Path { plugin: p, .. } => p.as_deref() == Some(plugin.as_str()),
                    RuleMatch::Code => {
                        used.contains(&r.name)
                            || policy
                                .catalog()
                                .named_rules
                                .iter()
                                .any(|n| n.plugin == plugin && n.rule == r.name)
                    }
                })
                .map(|r| {
                    let counters = snapshot.rules.get(&r.name).cloned().unwrap_or_default();
                    let mut v = serde_json::to_value(counters).unwrap_or_default();
                    v["ttl_secs"] = r.ttl.base.as_secs().into();
                    (r.name.clone(), v)
                })
                .collect();
            serde_json::json!({
                "plugin": plugin,
                "rules": rules,
                "l1": {
                    "entries": snapshot.l1_entries,
                    "bytes": snapshot.l1_bytes,
                    "evictions": snapshot.counters.evictions,
                },
            })
        })
    }

    fn emit(&self, event: Event) {
        tracing::debug!(plugin = %event.plugin, event = %event.name, "plugin event");
        if let Some(recorder) = self.recorder.get() {
            recorder.event(&event);
        }
        if let Err(event) = record_event(event) {
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

    fn cache_keys(
        &self,
        plugin: &str,
        pattern: &str,
        limit: usize,
    ) -> BoxFuture<'static, Result<larder_plugin::KeyListing, PluginError>> {
        let engine = self.engine();
        let pattern = namespaced(plugin, pattern);
        Box::pin(async move {
            let Some(engine) = engine else {
                return Ok(larder_plugin::KeyListing::default());
            };
            // Count past the limit, but boundedly: a listing is a scan.
            let bound = limit.saturating_mul(10).clamp(1_000, 100_000);
            let mut found = engine
                .cache
                .keys(&pattern, bound)
                .await
                .map_err(|e| PluginError::failed(e.to_string()))?;
            found.sort_by(|a, b| a.key.cmp(&b.key));
            let total_found = found.len() as u64;
            found.truncate(limit);
            Ok(larder_plugin::KeyListing {
                keys: found
                    .into_iter()
                    .map(|k| larder_plugin::ListedKey {
                        key: k.key,
                        expires_in_ms: k.expires_in_ms,
                        fresh_for_ms: k.fresh_for_ms,
                    })
                    .collect(),
                total_found,
            })
        })
    }

    fn cache_health(&self) -> BoxFuture<'static, larder_plugin::CacheHealth> {
        let engine = self.engine();
        Box::pin(async move {
            let Some(engine) = engine else {
                return larder_plugin::CacheHealth {
                    mode: "memory".into(),
                    ..Default::default()
                };
            };
            let health = engine.cache.health().await;
            larder_plugin::CacheHealth {
                mode: health.mode.to_owned(),
                redis_configured: health.redis.is_some(),
                redis_connected: health.redis.as_ref().is_some_and(|r| r.connected),
                ping_ms: health.redis.as_ref().and_then(|r| r.ping_ms),
            }
        })
    }

    fn trace_headers(&self) -> Vec<(String, String)> {
        // Runs in host code even for a dynamic plugin, so it reads the host's span tree.
        otel::current_headers()
    }
}
