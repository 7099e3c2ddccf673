//! The plugin author's kit: a plugin mounted with `testing::mount`, and what the recorder
//! notes of the real host's work — each load and whether the cache answered, each purge and
//! what it removed, each event (seen before its triggers ran) and each warm run.

use std::sync::{Arc, Mutex};
use std::time::{Duration, UNIX_EPOCH};

use larder_core::testing::{Invalidated, Load, LoadOutcome, Mount, Mounted, mount};
use larder_plugin::{
    EventKind, Host, Invalidation, NamedRule, NamedRuleSpec, Plugin, PluginApi, PluginContext,
    PluginError, PluginInit, WarmRequest, WarmSource, WarmSourceSpec,
};
use poem_openapi::OpenApi;
use poem_openapi::param::Path;
use poem_openapi::payload::Json;
use serde_json::{Value, json};

const VALUE: NamedRule = NamedRule::new("kit-value");
const CHANGED: EventKind = EventKind::new("value.changed", &["id"], "A value changed.");
const VALUES: WarmSource = WarmSource::new("values", "Value 1.");

/// Values computed from their id, cached from code; a page per value, cached by its route.
struct Kit {
    ctx: PluginContext,
}

struct KitApi {
    ctx: PluginContext,
}

#[OpenApi]
impl KitApi {
    #[oai(path = "/values/:id", method = "get", operation_id = "get_value")]
    async fn get_value(&self, id: Path<u32>) -> Json<Value> {
        let n = id.0;
        let got = self
            .ctx
            .get_or_load(
                &VALUE,
                format!("value:{n}"),
                move || async move { Ok(n * 10) },
            )
            .await
            .expect("loads");
        Json(json!({ "value": got.value, "cache_hit": got.cache_hit }))
    }

    #[oai(path = "/values/:id", method = "put", operation_id = "put_value")]
    async fn put_value(&self, id: Path<u32>) -> Json<Value> {
        let removed = self
            .ctx
            .invalidate(Invalidation::Keys(vec![format!("value:{}", id.0)]))
            .await
            .expect("purges");
        self.ctx.emit(&CHANGED, json!({ "id": id.0 }));
        Json(json!({ "removed": removed }))
    }

    #[oai(path = "/pages/:id", method = "get", operation_id = "get_page")]
    async fn get_page(&self, id: Path<u32>) -> Json<Value> {
        Json(json!({ "page": id.0 }))
    }

    #[oai(path = "/warm", method = "post", operation_id = "warm_values")]
    async fn warm(&self) -> Json<Value> {
        let runs = self.ctx.warm(&[VALUES.name]).await.expect("warms");
        Json(json!({ "entries": runs[0].entries }))
    }
}

impl Plugin for Kit {
    type Config = serde_json::Map<String, Value>;
    const NAME: &'static str = "kit";
    const VERSION: &'static str = "0.0.0";
    const DEFAULT_POLICY: Option<&'static str> = Some(POLICY);

    async fn new(init: PluginInit<Self::Config>) -> Result<Self, PluginError> {
        Ok(Kit { ctx: init.context })
    }

    fn api(&self) -> PluginApi {
        PluginApi::new(KitApi {
            ctx: self.ctx.clone(),
        })
    }

    fn events(&self) -> Vec<larder_plugin::EventSpec> {
        vec![CHANGED.spec()]
    }

    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        vec![VALUE.spec(&["get_value"], "`value:{id}`")]
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![VALUES.spec()]
    }

    async fn warm_source(&self, _name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        Ok(vec![WarmRequest::get("/values/1")])
    }
}

const POLICY: &str = r#"version: 1
rules:
  - name: kit-value
    ttl: 1m
  - name: kit-page
    match: { plugin: kit, operation: get_page }
    key: "kit:page:{path.id}"
    ttl: 1m
    tags: ["page:{path.id}"]
  - name: kit-rest
    match: { plugin: kit }
    cache: false
triggers:
  - on: kit.value.changed
    invalidate: { tags: ["page:{event.id}"] }
"#;

async fn json(m: &Mounted, method: &str, path: &str) -> Value {
    let req = match method {
        "GET" => m.client.get(path),
        "PUT" => m.client.put(path),
        _ => m.client.post(path),
    };
    let resp = req.send().await;
    resp.assert_status_is_ok();
    resp.0.into_body().into_json().await.expect("JSON")
}

fn load(key: &str, outcome: LoadOutcome) -> Load {
    Load {
        plugin: "kit".into(),
        rule: "kit-value".into(),
        key: key.into(),
        outcome,
    }
}

#[tokio::test]
async fn loads_purges_events_and_warm_runs_are_recorded_as_the_host_did_them() {
    let m = mount::<Kit>(Mount::default()).await;

    assert_eq!(json(&m, "GET", "/values/1").await["cache_hit"], false);
    assert_eq!(json(&m, "GET", "/values/1").await["cache_hit"], true);
    assert_eq!(
        m.loads(),
        [
            load("value:1", LoadOutcome::Loaded),
            load("value:1", LoadOutcome::Hit)
        ]
    );
    assert_eq!(m.cached_keys("kit:value:*").await, ["kit:value:1"]);

    m.client.get("/pages/1").send().await.assert_status_is_ok();
    let page = m.client.get("/pages/1").send().await;
    assert!(
        m.cache_status(&page).contains("hit"),
        "{}",
        m.cache_status(&page)
    );

    // At the emit, the trigger has not purged the page yet; by the answer, it has.
    let seen = Arc::new(Mutex::new(Vec::new()));
    let (engine, noted) = (m.app.engine.clone(), seen.clone());
    m.on_event(move |event| {
        let purged = engine
            .audit(100)
            .iter()
            .any(|a| a.source.contains("value.changed"));
        noted.lock().unwrap().push((event.name.clone(), purged));
    });
    assert_eq!(json(&m, "PUT", "/values/1").await["removed"], 1);
    assert_eq!(
        m.invalidations(),
        [Invalidated {
            plugin: "kit".into(),
            what: Invalidation::Keys(vec!["value:1".into()]),
            removed: Ok(1),
        }]
    );
    let events = m.events_named("value.changed");
    assert_eq!(events.len(), 1);
    assert_eq!(Value::Object(events[0].fields.clone()), json!({ "id": 1 }));
    assert_eq!(*seen.lock().unwrap(), [("value.changed".to_owned(), false)]);
    let page = m.client.get("/pages/1").send().await;
    assert!(
        !m.cache_status(&page).contains("hit"),
        "{}",
        m.cache_status(&page)
    );

    // The warm source's request went through the server, and so through `get_or_load`.
    assert_eq!(json(&m, "POST", "/warm").await["entries"], 1);
    let warms = m.warms();
    assert_eq!(warms.len(), 1);
    assert_eq!(warms[0].source, "values");
    assert_eq!(warms[0].run.as_ref().map(|r| r.entries), Ok(1));
    assert_eq!(
        m.loads().last(),
        Some(&load("value:1", LoadOutcome::Loaded))
    );
}

#[tokio::test]
async fn moving_tokio_time_ages_entries_on_the_servers_clock() {
    let m = mount::<Kit>(Mount {
        config: "server: { clock_start: \"2026-03-04T15:00:00Z\" }".into(),
        ..Mount::default()
    })
    .await;
    json(&m, "GET", "/values/2").await;
    tokio::time::pause();
    tokio::time::advance(Duration::from_secs(61)).await;
    tokio::time::resume();
    assert_eq!(json(&m, "GET", "/values/2").await["cache_hit"], false);
    assert_eq!(
        m.loads(),
        [
            load("value:2", LoadOutcome::Loaded),
            load("value:2", LoadOutcome::Loaded)
        ]
    );
    // 2026-03-04T15:00:00Z and the minute moved.
    let now = m.app.host.now().duration_since(UNIX_EPOCH).unwrap();
    assert!(now.as_secs() >= 1_772_636_461, "{now:?}");
}
