//! Test support: an in-memory [`Host`] that caches `get_or_load` results (so `cache_hit`
//! can be asserted), and the plugin's routes mounted under a prefix in a poem test client.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use futures::future::BoxFuture;
use larder_aliexpress::AliexpressPlugin;
use larder_aliexpress::config::AliexpressConfig;
use larder_plugin::context::{BytesLoader, CachedBytes};
use larder_plugin::{Event, Host, Invalidation, Plugin, PluginContext, PluginError};
use poem::http::{Method, StatusCode};
use poem::test::TestClient;
use poem::{Route, RouteMethod};
use serde_json::Value;

/// Where the tests mount the plugin, as the core would with `prefix: /ax`.
pub const PREFIX: &str = "/ax";

struct Entry {
    bytes: Bytes,
    expired: bool,
}

/// A cache host: fresh entries are hits; an expired entry is reloaded, and served (as a
/// hit) only when the loader fails, like a rule with a `stale_if_error` window.
#[derive(Default)]
pub struct TestHost {
    entries: Mutex<HashMap<String, Entry>>,
    /// `(rule, key)` of every get_or_load call, in order.
    pub calls: Mutex<Vec<(String, String)>>,
}

impl TestHost {
    /// Marks every entry expired (still usable as stale-if-error).
    pub fn expire_all(&self) {
        for e in self.entries.lock().unwrap().values_mut() {
            e.expired = true;
        }
    }

    /// Keys currently stored.
    pub fn keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self.entries.lock().unwrap().keys().cloned().collect();
        keys.sort();
        keys
    }
}

fn glob(pattern: &str, text: &str) -> bool {
    fn go(p: &[u8], t: &[u8]) -> bool {
        match (p.first(), t.first()) {
            (None, None) => true,
            (Some(b'*'), _) => go(&p[1..], t) || (!t.is_empty() && go(p, &t[1..])),
            (Some(b'?'), Some(_)) => go(&p[1..], &t[1..]),
            (Some(a), Some(b)) if a == b => go(&p[1..], &t[1..]),
            _ => false,
        }
    }
    go(pattern.as_bytes(), text.as_bytes())
}

/// The [`Host`] handed to the plugin: a `'static` host, so loaders can store into it
/// after the call that started them returned.
struct HostRef(&'static TestHost);

impl Host for HostRef {
    fn now(&self) -> std::time::SystemTime {
        // A fixed instant (2026-03-04T15:00:00Z): nothing here may depend on the day it runs.
        std::time::UNIX_EPOCH + std::time::Duration::from_secs(1_772_636_400)
    }

    fn get_or_load(
        &self,
        plugin: &str,
        rule: &str,
        key: String,
        load: BytesLoader,
    ) -> BoxFuture<'static, Result<CachedBytes, PluginError>> {
        let this = self.0;
        this.calls
            .lock()
            .unwrap()
            .push((rule.to_owned(), key.clone()));
        let full = format!("{plugin}:{key}");
        let (fresh, stale) = match this.entries.lock().unwrap().get(&full) {
            Some(e) if !e.expired => (Some(e.bytes.clone()), None),
            Some(e) => (None, Some(e.bytes.clone())),
            None => (None, None),
        };
        if let Some(bytes) = fresh {
            return Box::pin(async move {
                Ok(CachedBytes {
                    bytes,
                    cache_hit: true,
                })
            });
        }
        Box::pin(async move {
            match load.await {
                Ok(bytes) => {
                    this.entries.lock().unwrap().insert(
                        full,
                        Entry {
                            bytes: bytes.clone(),
                            expired: false,
                        },
                    );
                    Ok(CachedBytes {
                        bytes,
                        cache_hit: false,
                    })
                }
                Err(err) => match stale {
                    Some(bytes) => Ok(CachedBytes {
                        bytes,
                        cache_hit: true,
                    }),
                    None => Err(err),
                },
            }
        })
    }

    fn invalidate(
        &self,
        plugin: &str,
        what: Invalidation,
    ) -> BoxFuture<'static, Result<u64, PluginError>> {
        let prefix = format!("{plugin}:");
        let mut entries = self.0.entries.lock().unwrap();
        let before = entries.len();
        match what {
            Invalidation::All => entries.retain(|k, _| !k.starts_with(&prefix)),
            Invalidation::Keys(keys) => {
                for k in keys {
                    entries.remove(&format!("{prefix}{k}"));
                }
            }
            Invalidation::Pattern(p) => {
                entries.retain(|k, _| !(k.starts_with(&prefix) && glob(&p, &k[prefix.len()..])))
            }
            Invalidation::Tags(_) => {}
        }
        let removed = (before - entries.len()) as u64;
        Box::pin(async move { Ok(removed) })
    }

    fn cache_stats(&self, plugin: &str) -> BoxFuture<'static, Value> {
        let entries = self.0.entries.lock().unwrap().len();
        let plugin = plugin.to_owned();
        Box::pin(async move { serde_json::json!({ "plugin": plugin, "entries": entries }) })
    }

    fn emit(&self, _event: Event) {}

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
    }
}

/// A plugin under test with its host and client.
pub struct Harness {
    /// The cache host.
    pub host: &'static TestHost,
    /// The plugin.
    pub plugin: AliexpressPlugin,
    /// Client over the plugin's routes mounted at [`PREFIX`].
    pub client: TestClient<Route>,
}

impl Harness {
    /// Builds the plugin from `config`, with an empty environment.
    pub fn new(config: AliexpressConfig) -> Harness {
        let host: &'static TestHost = Box::leak(Box::default());
        let context = PluginContext::new(AliexpressPlugin::NAME, Arc::new(HostRef(host)));
        let plugin = AliexpressPlugin::build(config, context, &|_| None).expect("plugin builds");
        let table = plugin
            .api()
            .into_routes(AliexpressPlugin::NAME)
            .expect("routes");
        let mut route = Route::new();
        for (path, methods) in table {
            let rm = methods
                .into_iter()
                .fold(RouteMethod::new(), |rm, (m, ep)| rm.method(m, ep));
            route = route.at(format!("{PREFIX}{path}"), rm);
        }
        Harness {
            host,
            plugin,
            client: TestClient::new(route),
        }
    }

    /// Sends a request (JSON body when given) and returns status and parsed JSON body.
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call_with(method, path, body, &[]).await
    }

    /// Like [`Harness::call`], with extra headers.
    pub async fn call_with(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> (StatusCode, Value) {
        let uri = format!("{PREFIX}{path}");
        let mut req = self.client.request(method, uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        if let Some(body) = body {
            req = req.body_json(&body);
        }
        read(req.send().await).await
    }

    /// POSTs a raw body as JSON.
    pub async fn post_raw(&self, path: &str, body: &'static str) -> (StatusCode, Value) {
        let req = self
            .client
            .post(format!("{PREFIX}{path}"))
            .content_type("application/json")
            .body(body);
        read(req.send().await).await
    }
}

async fn read(resp: poem::test::TestResponse) -> (StatusCode, Value) {
    let status = resp.0.status();
    let text = resp.0.into_body().into_string().await.expect("body");
    let value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("not JSON ({e}), status {status}: {text}"));
    (status, value)
}
