//! One OpenAPI document and one route tree for every plugin, built-in and dynamic.
//!
//! Each plugin's [`PluginApi`] is registered into its own registry first, so two plugins
//! defining a schema of the same name with different shapes are caught (poem-openapi's own
//! registry would keep one silently). Paths get the plugin's mount prefix, every operation
//! gets the plugin's tag, and the document is rendered once at start-up.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};

use larder_plugin::PluginApi;
use larder_plugin::api::{MetaFn, RegisterFn, RouteTable};
use poem::endpoint::BoxEndpoint;
use poem::http::Method;
use poem_openapi::registry::{MetaApi, MetaSchema, MetaTag, Registry};
use poem_openapi::{OpenApi, OpenApiService};
use serde::Serialize;

/// A plugin's API and where it is mounted.
pub struct Mount {
    /// Plugin name, also its OpenAPI tag.
    pub plugin: String,
    /// Tag description.
    pub description: String,
    /// Path prefix ("" for none).
    pub prefix: String,
    /// The API.
    pub api: PluginApi,
}

/// One operation of the merged API, for policy matching and `larder explain`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Operation {
    /// Owning plugin.
    pub plugin: String,
    /// poem-openapi operation id (the method name unless `operation_id` is set).
    pub operation_id: Option<String>,
    /// HTTP method.
    pub method: String,
    /// Full OpenAPI path template, prefix included (`/api/v2/barbers/{barber_id}/slots`).
    pub path: String,
}

/// The merged result.
pub struct Merged {
    /// `/openapi.json`.
    pub json: String,
    /// `/openapi.yaml`.
    pub yaml: String,
    /// `/docs` (Swagger UI with the document inlined).
    pub swagger_html: String,
    /// Every operation.
    pub operations: Vec<Operation>,
    /// Endpoints by full poem path and method, for the server's router.
    pub routes: Vec<(String, Method, BoxEndpoint<'static>, usize)>,
}

struct Source {
    plugin: &'static str,
    description: &'static str,
    prefix: String,
    meta: MetaFn,
    register: RegisterFn,
}

thread_local! {
    // poem-openapi asks an API type for its metadata through functions without `self`; the
    // set of plugins is only known at run time, so the combined type reads it from here
    // while the document is rendered on this thread.
    static SOURCES: RefCell<Vec<Source>> = const { RefCell::new(Vec::new()) };
}

struct Combined;

impl OpenApi for Combined {
    fn meta() -> Vec<MetaApi> {
        SOURCES.with(|s| {
            s.borrow()
                .iter()
                .flat_map(|src| prefixed_meta(src).unwrap_or_default())
                .collect()
        })
    }

    fn register(registry: &mut Registry) {
        SOURCES.with(|s| {
            for src in s.borrow().iter() {
                let _ = (src.register)(registry);
            }
            // One tag per plugin: drop the plugins' own tags, add the plugin names.
            registry.tags.clear();
            for src in s.borrow().iter() {
                registry.create_tag(MetaTag {
                    name: src.plugin,
                    description: (!src.description.is_empty()).then_some(src.description),
                    external_docs: None,
                });
            }
        });
    }

    fn add_routes(self, _: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {}
}

fn prefixed_meta(src: &Source) -> Result<Vec<MetaApi>, String> {
    let mut metas = (src.meta)().map_err(|e| format!("plugin `{}`: {e}", src.plugin))?;
    for path in metas.iter_mut().flat_map(|m| m.paths.iter_mut()) {
        path.path = join(&src.prefix, &path.path);
        for op in &mut path.operations {
            op.tags = vec![src.plugin];
        }
    }
    Ok(metas)
}

fn join(prefix: &str, path: &str) -> String {
    if prefix.is_empty() {
        path.to_owned()
    } else if path == "/" || path.is_empty() {
        prefix.to_owned()
    } else {
        format!("{prefix}{path}")
    }
}

fn leak(s: String) -> &'static str {
    // Tag names must be `&'static str` in poem-openapi's registry; a handful per start-up.
    Box::leak(s.into_boxed_str())
}

/// Merges the mounted APIs, or names every conflict.
pub fn merge(title: &str, version: &str, mounts: Vec<Mount>) -> Result<Merged, Vec<String>> {
    let mut errors = Vec::new();
    let mut sources = Vec::new();
    let mut apis = Vec::new();
    for m in mounts {
        sources.push(Source {
            plugin: leak(m.plugin.clone()),
            description: leak(m.description.clone()),
            prefix: m.prefix.clone(),
            meta: m.api.meta_fn(),
            register: m.api.register_fn(),
        });
        apis.push(m);
    }

    // Schemas: the same name from two plugins must be the same schema.
    let mut owners: BTreeMap<String, (&'static str, MetaSchema)> = BTreeMap::new();
    for src in &sources {
        let mut own = Registry::new();
        if let Err(e) = (src.register)(&mut own) {
            errors.push(format!(
                "plugin `{}` failed to describe its API: {e}",
                src.plugin
            ));
            continue;
        }
        for (name, schema) in own.schemas {
            match owners.get(&name) {
                Some((other, existing)) if *other != src.plugin && *existing != schema => {
                    errors.push(format!(
                        "schema name clash: plugins `{other}` and `{}` both define a schema \
                         named `{name}` with different shapes; rename one of the types (or give \
                         it `#[oai(rename = \"...\")]`)",
                        src.plugin
                    ));
                }
                Some(_) => {}
                None => {
                    owners.insert(name, (src.plugin, schema));
                }
            }
        }
    }

    // Operations: unique operation ids and unique method + path across the document.
    let mut operations = Vec::new();
    let mut seen_ids: HashMap<String, &'static str> = HashMap::new();
    let mut seen_routes: HashMap<(String, String), &'static str> = HashMap::new();
    for src in &sources {
        let metas = match prefixed_meta(src) {
            Ok(m) => m,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        for path in metas.iter().flat_map(|m| &m.paths) {
            for op in &path.operations {
                let method = op.method.to_string();
                if let Some(other) =
                    seen_routes.insert((method.clone(), path.path.clone()), src.plugin)
                {
                    errors.push(format!(
                        "route clash: `{method} {}` is served by both `{other}` and `{}`; mount one \
                         of them under a `prefix`",
                        path.path, src.plugin
                    ));
                }
                if let Some(id) = op.operation_id
                    && let Some(other) = seen_ids.insert(id.to_owned(), src.plugin)
                {
                    errors.push(format!(
                        "operation id clash: `{id}` is used by both `{other}` and `{}`; \
                             operation ids must be unique in one OpenAPI document",
                        src.plugin
                    ));
                }
                operations.push(Operation {
                    plugin: src.plugin.to_owned(),
                    operation_id: op.operation_id.map(str::to_owned),
                    method,
                    path: path.path.clone(),
                });
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }

    let (json, yaml, swagger_html) = SOURCES.with(|s| {
        *s.borrow_mut() = sources;
        let service = OpenApiService::new(Combined, title, version);
        let out = (
            service.spec(),
            service.spec_yaml(),
            service.swagger_ui_html(),
        );
        s.borrow_mut().clear();
        out
    });

    let mut routes = Vec::new();
    for (index, m) in apis.into_iter().enumerate() {
        let table: RouteTable = m.api.into_routes(&m.plugin).map_err(|e| {
            vec![format!(
                "plugin `{}` failed to build its routes: {e}",
                m.plugin
            )]
        })?;
        for (path, methods) in table {
            let full = join(&m.prefix, &path);
            for (method, endpoint) in methods {
                routes.push((full.clone(), method, endpoint, index));
            }
        }
    }
    Ok(Merged {
        json,
        yaml,
        swagger_html,
        operations,
        routes,
    })
}

/// How callers can authenticate on this server, as configured: the document's security
/// schemes besides the admin API's own (`AdminKeyHeader`, `AdminBearer`).
#[derive(Debug, Clone, Default)]
pub struct Credentials {
    /// `security.auth.jwt` has keys: `Authorization: Bearer <JWT>`.
    pub jwt: bool,
    /// `security.auth.api_keys` has keys: the header they are sent in.
    pub api_key_header: Option<String>,
}

/// The permissions an admin key grants (a read key `cache:read`, a write key both).
const ADMIN_GRANTS: [&str; 2] = [larder_plugin::CACHE_READ, larder_plugin::CACHE_MANAGE];

impl Merged {
    /// Declares the configured security schemes and, on every operation that needs
    /// permissions (`required`), which credentials can pass and the 401/403 it may answer,
    /// so Swagger UI shows "Authorize" and a lock on each such operation. The three
    /// renderings (JSON, YAML, the document inlined in Swagger UI) stay one document.
    pub fn secure(
        &mut self,
        credentials: &Credentials,
        required: impl Fn(&Operation) -> Vec<String>,
    ) -> Result<(), String> {
        let mut doc: serde_json::Value =
            serde_json::from_str(&self.json).map_err(|e| format!("the merged document: {e}"))?;
        let schemes = &mut doc["components"]["securitySchemes"];
        if credentials.jwt {
            schemes["BearerJwt"] = serde_json::json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT signed by a configured key (`security.auth.jwt`); its claims give the user, tenant and permissions.",
            });
        }
        if let Some(header) = &credentials.api_key_header {
            schemes["ApiKey"] = serde_json::json!({
                "type": "apiKey",
                "in": "header",
                "name": header,
                "description": "An API key listed in `security.auth.api_keys`.",
            });
        }
        let mut unconfigured_jwt = false;
        for op in &self.operations {
            let needs = required(op);
            if needs.is_empty() {
                continue;
            }
            let method = op.method.to_ascii_lowercase();
            let Some(entry) = doc["paths"]
                .get_mut(&op.path)
                .and_then(|p| p.get_mut(&method))
            else {
                continue;
            };
            let mut alternatives = Vec::new();
            if credentials.jwt {
                alternatives.push(serde_json::json!({ "BearerJwt": needs }));
            }
            if credentials.api_key_header.is_some() {
                alternatives.push(serde_json::json!({ "ApiKey": [] }));
            }
            if needs.iter().all(|n| ADMIN_GRANTS.contains(&n.as_str())) {
                alternatives.push(serde_json::json!({ "AdminKeyHeader": [] }));
                alternatives.push(serde_json::json!({ "AdminBearer": [] }));
            }
            if alternatives.is_empty() {
                // Nothing configured can grant it (an empty list would read as "public").
                unconfigured_jwt = true;
                alternatives.push(serde_json::json!({ "BearerJwt": needs }));
            }
            entry["security"] = serde_json::Value::Array(alternatives);
            let listed = needs
                .iter()
                .map(|n| format!("`{n}`"))
                .collect::<Vec<_>>()
                .join(", ");
            let note = format!("Needs {listed}.");
            entry["description"] = match entry.get("description").and_then(|d| d.as_str()) {
                Some(d) if !d.is_empty() => format!("{d}\n\n{note}").into(),
                _ => note.into(),
            };
            let responses = &mut entry["responses"];
            responses["401"] = serde_json::json!({
                "description": "No credentials, or they failed a check (the body names which: expired, wrong audience, unknown key id...)."
            });
            responses["403"] = serde_json::json!({
                "description": format!("The credentials lack a permission this route needs ({listed}).")
            });
        }
        if unconfigured_jwt && !credentials.jwt {
            doc["components"]["securitySchemes"]["BearerJwt"] = serde_json::json!({
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "No JWT key is configured (`security.auth.jwt`): the routes that need it refuse every caller until one is.",
            });
        }
        let doc = TopLevelOrder(&doc);
        let json = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        let yaml = serde_saphyr::to_string(&doc).map_err(|e| e.to_string())?;
        if !self.swagger_html.contains(&self.json) {
            return Err("Swagger UI does not inline the document as expected".into());
        }
        self.swagger_html = self.swagger_html.replacen(&self.json, &json, 1);
        self.json = json;
        self.yaml = yaml;
        Ok(())
    }
}

/// A document with its top-level sections in the usual order (`openapi`, `info`, ...,
/// `components` last) for the reader; serde_json's map sorts keys otherwise.
struct TopLevelOrder<'a>(&'a serde_json::Value);

impl Serialize for TopLevelOrder<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        const FIRST: [&str; 6] = ["openapi", "info", "servers", "tags", "paths", "components"];
        let Some(map) = self.0.as_object() else {
            return self.0.serialize(serializer);
        };
        let mut out = serializer.serialize_map(Some(map.len()))?;
        for key in FIRST {
            if let Some(v) = map.get(key) {
                out.serialize_entry(key, v)?;
            }
        }
        for (k, v) in map.iter().filter(|(k, _)| !FIRST.contains(&k.as_str())) {
            out.serialize_entry(k, v)?;
        }
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use poem_openapi::payload::Json;
    use poem_openapi::{Object, OpenApi};

    use super::*;

    mod shop {
        use super::*;
        /// An item in the shop plugin.
        #[derive(Object)]
        pub struct Item {
            pub sku: String,
        }
        pub struct Api;
        #[OpenApi]
        impl Api {
            #[oai(path = "/items", method = "get", operation_id = "shop_items")]
            async fn items(&self) -> Json<Vec<Item>> {
                Json(vec![])
            }
        }
    }

    mod blog {
        use super::*;
        /// An item in the blog plugin: same name, other shape.
        #[derive(Object)]
        pub struct Item {
            pub title: String,
            pub words: u32,
        }
        pub struct Api;
        #[OpenApi]
        impl Api {
            #[oai(path = "/items", method = "get", operation_id = "blog_items")]
            async fn items(&self) -> Json<Vec<Item>> {
                Json(vec![])
            }
        }
    }

    fn mount(plugin: &str, prefix: &str, api: PluginApi) -> Mount {
        Mount {
            plugin: plugin.into(),
            description: String::new(),
            prefix: prefix.into(),
            api,
        }
    }

    fn err(mounts: Vec<Mount>) -> Vec<String> {
        match merge("t", "1", mounts) {
            Ok(_) => panic!("merge must fail"),
            Err(e) => e,
        }
    }

    #[test]
    fn same_schema_name_with_another_shape_is_refused() {
        let errors = err(vec![
            mount("shop", "/shop", PluginApi::new(shop::Api)),
            mount("blog", "/blog", PluginApi::new(blog::Api)),
        ]);
        assert_eq!(errors.len(), 1, "{errors:?}");
        assert!(
            errors[0].contains("schema name clash")
                && errors[0].contains("`shop`")
                && errors[0].contains("`blog`")
                && errors[0].contains("`Item`"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn same_route_twice_is_refused_and_prefixes_separate_them() {
        let errors = err(vec![
            mount("a", "", PluginApi::new(shop::Api)),
            mount("b", "", PluginApi::new(shop::Api)),
        ]);
        assert!(
            errors
                .iter()
                .any(|e| e.contains("route clash: `GET /items`")),
            "{errors:?}"
        );
        assert!(
            errors
                .iter()
                .any(|e| e.contains("operation id clash: `shop_items`"))
        );
    }

    #[test]
    fn prefixes_and_tags_are_applied() {
        let merged = merge(
            "t",
            "1",
            vec![mount("shop", "/shop", PluginApi::new(shop::Api))],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        let doc: serde_json::Value = serde_json::from_str(&merged.json).unwrap();
        assert_eq!(doc["paths"]["/shop/items"]["get"]["tags"][0], "shop");
        assert_eq!(doc["tags"][0]["name"], "shop");
        assert_eq!(merged.operations[0].path, "/shop/items");
        assert_eq!(merged.routes[0].0, "/shop/items");
    }
}
