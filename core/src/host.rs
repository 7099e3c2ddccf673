//! The core's side of [`larder_plugin::Host`]: the services every plugin context reaches.

use std::sync::Arc;

use futures::future::BoxFuture;
use larder_plugin::context::{BytesLoader, CachedBytes};
use larder_plugin::{Event, Host, Invalidation, PluginError};
use tokio::sync::broadcast;
use tokio_util::task::TaskTracker;

/// Services shared by all plugins of one server.
pub struct CoreHost {
    events: broadcast::Sender<Arc<Event>>,
    tasks: TaskTracker,
}

impl CoreHost {
    /// A host whose background tasks are tracked by `tasks` (closed and awaited at shutdown).
    pub fn new(tasks: TaskTracker) -> Arc<Self> {
        let (events, _) = broadcast::channel(1024);
        Arc::new(Self { events, tasks })
    }

    /// Subscribes to plugin events (policy triggers, tests).
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<Event>> {
        self.events.subscribe()
    }
}

impl Host for CoreHost {
    fn get_or_load(
        &self,
        _plugin: &str,
        _rule: &str,
        _key: String,
        load: BytesLoader,
    ) -> BoxFuture<'static, Result<CachedBytes, PluginError>> {
        // The cache engine is wired in by the storage layer; until a store is configured
        // every call loads, and says so (`cache_hit: false`).
        Box::pin(async move {
            let bytes = load.await?;
            Ok(CachedBytes {
                bytes,
                cache_hit: false,
            })
        })
    }

    fn invalidate(
        &self,
        _plugin: &str,
        _what: Invalidation,
    ) -> BoxFuture<'static, Result<u64, PluginError>> {
        Box::pin(async { Ok(0) })
    }

    fn cache_stats(&self, plugin: &str) -> BoxFuture<'static, serde_json::Value> {
        let plugin = plugin.to_owned();
        Box::pin(async move { serde_json::json!({ "plugin": plugin, "cache": "not configured" }) })
    }

    fn emit(&self, event: Event) {
        tracing::debug!(plugin = %event.plugin, event = %event.name, "plugin event");
        // No receiver is fine: nothing subscribed to events yet.
        let _ = self.events.send(Arc::new(event));
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        self.tasks.spawn(task);
    }
}
