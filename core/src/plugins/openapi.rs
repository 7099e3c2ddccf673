//! One OpenAPI document and one route tree for every plugin, built-in and dynamic.
//!
//! Each plugin's [`PluginApi`] is registered into its own registry first, so two plugins
//! defining a schema of the same name with different shapes are caught (poem-openapi's own
//! registry would keep one silently). Paths get the plugin's mount prefix, every operation
//! gets the plugin's tag, and the document is rendered once at start-up, then completed
//! with what the core itself answers and what poem-openapi leaves unsaid
//! ([`Merged::declare`]), so that it declares what clients really get.

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

/// What the core does in front of every operation, as configured.
#[derive(Debug, Clone, Default)]
pub struct Admission {
    /// Who callers can be.
    pub credentials: Credentials,
    /// `limits.request_body_bytes`.
    pub body_limit: usize,
    /// The core's error envelope: its schema's name and the schema, added to the
    /// components when no API registered it.
    pub core_error: (String, serde_json::Value),
}

/// What the core does in front of one operation, besides running its handler.
#[derive(Debug, Clone, Default)]
pub struct OperationAdmission {
    /// The permissions it needs; empty for a public route.
    pub permissions: Vec<String>,
    /// The rate limits it is charged under, in words (`5 per second per client IP`); empty
    /// when none counts anything.
    pub rate_limits: Vec<String>,
    /// The schema of the core's error answers on it: its plugin's
    /// [`larder_plugin::Plugin::core_error_schema`]; `None` for the core's own envelope
    /// ([`Admission::core_error`]).
    pub error_schema: Option<String>,
    /// A route of the core's own APIs (`system`, `admin`): they have no
    /// `bad_request_handler`, so poem-openapi's refusals come out of the core's error handler.
    pub core_api: bool,
}

/// The permissions an admin key grants (a read key `cache:read`, a write key both).
const ADMIN_GRANTS: [&str; 2] = [larder_plugin::CACHE_READ, larder_plugin::CACHE_MANAGE];

/// The media type poem-openapi's `Json` payloads declare.
const JSON: &str = "application/json; charset=utf-8";

impl Merged {
    /// Makes the document say what the server really sends and takes, beyond what the
    /// plugins' own declarations can know:
    ///
    /// - every optional property is `nullable` ([`nullable_optionals`]);
    /// - the configured security schemes and, on every operation that needs permissions,
    ///   which credentials can pass, so Swagger UI shows "Authorize" and a lock on it;
    /// - on every operation, the answers admission gives in the handler's place (401, 403,
    ///   413, 429) and, where poem-openapi's own refusals reach the core's error handler,
    ///   400 and 415 — each with the body clients get there: the plugin's
    ///   [`larder_plugin::Plugin::core_error_schema`] or the core's own envelope.
    ///
    /// Left out: the 304 a cached route gives a matching `If-None-Match` (only a client
    /// holding the entry's `ETag` gets it), and the 502 of an origin whose body cannot be
    /// read. The three renderings (JSON, YAML, the document inlined in Swagger UI) stay
    /// one document.
    pub fn declare(
        &mut self,
        admission: &Admission,
        of: impl Fn(&Operation) -> OperationAdmission,
    ) -> Result<(), String> {
        let mut doc: serde_json::Value =
            serde_json::from_str(&self.json).map_err(|e| format!("the merged document: {e}"))?;
        nullable_optionals(&mut doc);
        let (core_error, core_error_schema) = &admission.core_error;
        if doc["components"]["schemas"].get(core_error).is_none() {
            let mut schema = core_error_schema.clone();
            nullable_in(&mut schema);
            doc["components"]["schemas"][core_error] = schema;
        }
        let credentials = &admission.credentials;
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
            let facts = of(op);
            let error_schema = facts.error_schema.as_deref().unwrap_or(core_error);
            if doc["components"]["schemas"].get(error_schema).is_none() {
                return Err(format!(
                    "plugin `{}` answers the core's errors with schema `{error_schema}` \
                     (`core_error_schema`), but its API registers no schema of that name",
                    op.plugin
                ));
            }
            let method = op.method.to_ascii_lowercase();
            let Some(entry) = doc["paths"]
                .get_mut(&op.path)
                .and_then(|p| p.get_mut(&method))
            else {
                continue;
            };
            let needs = &facts.permissions;
            if !needs.is_empty() {
                unconfigured_jwt |= require(entry, needs, credentials);
            }
            let answers = CoreAnswers {
                error_schema,
                admission,
                facts: &facts,
            };
            answers.declare(entry);
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

/// Declares which credentials can pass an operation that needs `needs`. Returns whether
/// only an unconfigured JWT could (the scheme is then declared as such).
fn require(entry: &mut serde_json::Value, needs: &[String], credentials: &Credentials) -> bool {
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
    let unconfigured = alternatives.is_empty();
    if unconfigured {
        // Nothing configured can grant it (an empty list would read as "public").
        alternatives.push(serde_json::json!({ "BearerJwt": needs }));
    }
    entry["security"] = serde_json::Value::Array(alternatives);
    let note = format!("Needs {}.", listed(needs));
    entry["description"] = match entry.get("description").and_then(|d| d.as_str()) {
        Some(d) if !d.is_empty() => format!("{d}\n\n{note}").into(),
        _ => note.into(),
    };
    unconfigured
}

fn listed(names: &[String]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The core's answers on one operation.
struct CoreAnswers<'a> {
    error_schema: &'a str,
    admission: &'a Admission,
    facts: &'a OperationAdmission,
}

impl CoreAnswers<'_> {
    fn declare(&self, entry: &mut serde_json::Value) {
        let takes_body = entry.get("requestBody").is_some();
        let takes_parameters = entry
            .get("parameters")
            .and_then(|p| p.as_array())
            .is_some_and(|p| !p.is_empty());
        // A plugin with a `bad_request_handler` declares the 400 it turns poem-openapi's
        // refusals into; without one (the core's APIs, or a plugin that declares no 400)
        // they reach the core's error handler as 400 (and 415 for the content type).
        let core_parses = self.facts.core_api || entry["responses"].get("400").is_none();
        if core_parses && (takes_body || takes_parameters) {
            self.add(
                entry,
                "400",
                "A parameter or the body does not parse or breaks its constraints; the \
                 message says which."
                    .into(),
                None,
            );
        }
        let secured = entry
            .get("security")
            .and_then(|s| s.as_array())
            .is_some_and(|s| !s.is_empty());
        self.add(
            entry,
            "401",
            self.unauthorized(secured),
            Some(www_authenticate()),
        );
        if !self.facts.permissions.is_empty() {
            self.add(
                entry,
                "403",
                format!(
                    "The credentials lack a permission this route needs ({}).",
                    listed(&self.facts.permissions)
                ),
                None,
            );
        }
        self.add(
            entry,
            "413",
            format!(
                "The request body is larger than {} bytes (`limits.request_body_bytes`).",
                self.admission.body_limit
            ),
            None,
        );
        if core_parses && takes_body {
            let types: Vec<String> = entry["requestBody"]["content"]
                .as_object()
                .map(|c| c.keys().map(|k| format!("`{k}`")).collect())
                .unwrap_or_default();
            self.add(
                entry,
                "415",
                format!(
                    "The request has no `Content-Type`, or one this operation does not read \
                     ({}).",
                    types.join(", ")
                ),
                None,
            );
        }
        if !self.facts.rate_limits.is_empty() {
            self.add(
                entry,
                "429",
                format!(
                    "Over a rate limit ({}); `Retry-After` says when to try again.",
                    self.facts.rate_limits.join("; ")
                ),
                Some(retry_after()),
            );
        }
    }

    /// Every way a request to this operation gets a 401, as configured. An `x-admin-key`
    /// header is checked on every route, so every operation has one.
    fn unauthorized(&self, secured: bool) -> String {
        let credentials = &self.admission.credentials;
        let mut ways = Vec::new();
        if secured {
            ways.push("none were sent (this route needs them)".to_owned());
        }
        ways.push("an `x-admin-key` header holds no admin key".to_owned());
        if credentials.jwt {
            ways.push(
                "a bearer token fails verification (expired, wrong audience, unknown key id...)"
                    .to_owned(),
            );
        }
        if let Some(header) = &credentials.api_key_header {
            ways.push(format!("the `{header}` header holds no known API key"));
        }
        format!(
            "Credentials missing or refused: {}; the message says which.",
            ways.join(", or ")
        )
    }

    /// Adds the core's answer `status`, or joins it to the operation's own: the plugin's
    /// description first, and either body.
    fn add(
        &self,
        entry: &mut serde_json::Value,
        status: &str,
        description: String,
        headers: Option<(&str, serde_json::Value)>,
    ) {
        let schema = serde_json::json!({
            "$ref": format!("#/components/schemas/{}", self.error_schema)
        });
        let response = &mut entry["responses"][status];
        let own = response
            .get("description")
            .and_then(|d| d.as_str())
            .filter(|d| !d.is_empty());
        response["description"] = match own {
            Some(own) => format!("{own}\n\n{description}").into(),
            None => description.into(),
        };
        match response.get_mut("content").and_then(|c| c.as_object_mut()) {
            Some(content) if !content.is_empty() => {
                for media in content.values_mut() {
                    let theirs = &mut media["schema"];
                    if *theirs != schema {
                        *theirs = serde_json::json!({ "anyOf": [theirs.take(), schema.clone()] });
                    }
                }
            }
            _ => response["content"] = serde_json::json!({ JSON: { "schema": schema } }),
        }
        if let Some((name, header)) = headers {
            response["headers"][name] = header;
        }
    }
}

fn www_authenticate() -> (&'static str, serde_json::Value) {
    (
        "WWW-Authenticate",
        serde_json::json!({
            "description": "The challenge (`Bearer realm=\"larder\"`, with the error when credentials were refused); absent on the admin API's and a plugin's own refusals.",
            "required": false,
            "schema": { "type": "string" },
        }),
    )
}

fn retry_after() -> (&'static str, serde_json::Value) {
    (
        "Retry-After",
        serde_json::json!({
            "description": "Seconds until the limit admits a request from this client again.",
            "required": true,
            "schema": { "type": "integer", "minimum": 1 },
        }),
    )
}

/// Declares `nullable` every property an object schema does not require, in the
/// components and in the operations' bodies.
///
/// poem-openapi writes an absent `Option` as `null` (unless the field says
/// `skip_serializing_if_is_none`) and reads `null` as absent for every optional property
/// (a defaulted field gets its default), but never says so: without this, a plugin's
/// `Option` field makes its answers break its own schema. OpenAPI 3.0 ignores the siblings
/// of a `$ref`, so a reference is wrapped (`allOf: [{$ref}]` beside `nullable`).
fn nullable_optionals(doc: &mut serde_json::Value) {
    if let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(|s| s.as_object_mut())
    {
        schemas.values_mut().for_each(nullable_in);
    }
    let Some(paths) = doc.get_mut("paths").and_then(|p| p.as_object_mut()) else {
        return;
    };
    for op in paths
        .values_mut()
        .filter_map(|p| p.as_object_mut())
        .flat_map(|p| p.values_mut())
    {
        let Some(op) = op.as_object_mut() else {
            continue;
        };
        for (key, part) in op.iter_mut() {
            let bodies: Vec<&mut serde_json::Value> = match key.as_str() {
                "requestBody" => vec![part],
                "responses" => part
                    .as_object_mut()
                    .map(|r| r.values_mut().collect())
                    .unwrap_or_default(),
                _ => continue,
            };
            bodies
                .into_iter()
                .filter_map(|b| b.get_mut("content").and_then(|c| c.as_object_mut()))
                .flat_map(|c| c.values_mut())
                .filter_map(|m| m.get_mut("schema"))
                .for_each(nullable_in);
        }
    }
}

/// [`nullable_optionals`] in one schema and the schemas inside it.
fn nullable_in(schema: &mut serde_json::Value) {
    let Some(object) = schema.as_object_mut() else {
        return;
    };
    let required: Vec<String> = object
        .get("required")
        .and_then(|r| r.as_array())
        .map(|r| {
            r.iter()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    if let Some(properties) = object.get_mut("properties").and_then(|p| p.as_object_mut()) {
        for (name, property) in properties.iter_mut() {
            if !required.contains(name) {
                make_nullable(property);
            }
            nullable_in(property);
        }
    }
    for key in ["items", "additionalProperties", "not"] {
        if let Some(inner) = object.get_mut(key) {
            nullable_in(inner);
        }
    }
    for key in ["allOf", "anyOf", "oneOf"] {
        if let Some(list) = object.get_mut(key).and_then(|l| l.as_array_mut()) {
            list.iter_mut().for_each(nullable_in);
        }
    }
}

fn make_nullable(property: &mut serde_json::Value) {
    let Some(object) = property.as_object_mut() else {
        return;
    };
    if let Some(reference) = object.get("$ref").cloned() {
        let mut wrapped = serde_json::Map::new();
        wrapped.insert("allOf".into(), serde_json::json!([{ "$ref": reference }]));
        wrapped.insert("nullable".into(), true.into());
        *object = wrapped;
        return;
    }
    object.insert("nullable".into(), true.into());
    // An `enum` lists every value allowed, `null` too.
    if let Some(values) = object.get_mut("enum").and_then(|e| e.as_array_mut())
        && !values.contains(&serde_json::Value::Null)
    {
        values.push(serde_json::Value::Null);
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

    mod orders {
        use poem_openapi::ApiResponse;

        use super::*;
        /// Where an order goes.
        #[derive(Object)]
        pub struct Address {
            pub city: String,
        }
        /// An order.
        #[derive(Object)]
        pub struct Order {
            pub id: i64,
            pub note: Option<String>,
            pub ship_to: Option<Address>,
            #[oai(default)]
            pub rush: bool,
        }
        #[derive(ApiResponse)]
        pub enum Placed {
            /// Placed.
            #[oai(status = 200)]
            Ok(Json<Order>),
            /// The shop's own refusal, in a shape of its own.
            #[oai(status = 401)]
            Unauthorized(Json<Address>),
        }
        pub struct Api;
        #[OpenApi]
        impl Api {
            #[oai(path = "/orders", method = "post", operation_id = "place_order")]
            async fn place(&self, order: Json<Order>) -> Placed {
                Placed::Ok(order)
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

    fn admission() -> Admission {
        Admission {
            credentials: Credentials::default(),
            body_limit: 1024,
            core_error: (
                "CoreError".into(),
                serde_json::json!({
                    "type": "object",
                    "required": ["error", "message"],
                    "properties": {
                        "error": { "type": "string" },
                        "message": { "type": "string" },
                        "field": { "type": "string" },
                    },
                }),
            ),
        }
    }

    fn declared(facts: OperationAdmission) -> Result<serde_json::Value, String> {
        let mut merged = merge(
            "t",
            "1",
            vec![mount("orders", "", PluginApi::new(orders::Api))],
        )
        .unwrap_or_else(|e| panic!("{e:?}"));
        merged.declare(&admission(), |_| facts.clone())?;
        let yaml: serde_json::Value = serde_saphyr::from_str(&merged.yaml).unwrap();
        let json: serde_json::Value = serde_json::from_str(&merged.json).unwrap();
        assert_eq!(yaml, json, "the YAML rendering is the same document");
        assert!(merged.swagger_html.contains(&merged.json));
        Ok(json)
    }

    #[test]
    fn optional_properties_are_nullable_and_references_stay_valid_openapi_3_0() {
        let doc = declared(OperationAdmission::default()).unwrap();
        let order = &doc["components"]["schemas"]["Order"];
        let props = &order["properties"];
        assert_eq!(props["note"]["nullable"], true, "{order}");
        assert_eq!(
            props["rush"]["nullable"], true,
            "a defaulted field reads null too"
        );
        assert!(props["id"].get("nullable").is_none(), "required: {order}");
        // Siblings of a `$ref` mean nothing in OpenAPI 3.0: the reference is wrapped.
        assert_eq!(
            props["ship_to"],
            serde_json::json!({
                "allOf": [{ "$ref": "#/components/schemas/Address" }],
                "nullable": true,
            })
        );
        assert!(
            doc["components"]["schemas"]["CoreError"]["properties"]["field"]["nullable"] == true
        );
    }

    #[test]
    fn the_cores_own_answers_are_declared_with_their_bodies() {
        let doc = declared(OperationAdmission {
            permissions: vec!["orders:write".into()],
            rate_limits: vec!["5 per second per client IP".into()],
            ..Default::default()
        })
        .unwrap();
        let op = &doc["paths"]["/orders"]["post"];
        let responses = &op["responses"];
        let core = serde_json::json!({ "$ref": "#/components/schemas/CoreError" });
        let body = |status: &str| responses[status]["content"][JSON]["schema"].clone();
        // The plugin declares no 400: poem-openapi's refusals reach the core's handler.
        for status in ["400", "403", "413", "415", "429"] {
            assert_eq!(body(status), core, "{status}: {op}");
        }
        assert!(
            responses["413"]["description"]
                .as_str()
                .unwrap()
                .contains("1024 bytes")
        );
        assert_eq!(responses["429"]["headers"]["Retry-After"]["required"], true);
        assert!(
            responses["429"]["description"]
                .as_str()
                .unwrap()
                .contains("5 per second per client IP")
        );
        // The plugin's own 401 keeps its description and body, beside the core's.
        assert_eq!(
            body("401"),
            serde_json::json!({ "anyOf": [
                { "$ref": "#/components/schemas/Address" },
                core,
            ]})
        );
        let unauthorized = responses["401"]["description"].as_str().unwrap();
        assert!(
            unauthorized.starts_with("The shop's own refusal")
                && unauthorized.contains("x-admin-key"),
            "{unauthorized}"
        );
        assert!(op["security"][0]["BearerJwt"][0] == "orders:write", "{op}");
        assert!(
            responses.get("404").is_none(),
            "nothing the core cannot answer"
        );
    }

    #[test]
    fn a_public_unlimited_route_still_declares_401_and_413() {
        let doc = declared(OperationAdmission::default()).unwrap();
        let responses = &doc["paths"]["/orders"]["post"]["responses"];
        assert!(responses["401"].is_object() && responses["413"].is_object());
        assert!(responses.get("403").is_none() && responses.get("429").is_none());
    }

    #[test]
    fn a_plugins_error_schema_is_used_and_must_exist() {
        let doc = declared(OperationAdmission {
            error_schema: Some("Address".into()),
            ..Default::default()
        })
        .unwrap();
        assert_eq!(
            doc["paths"]["/orders"]["post"]["responses"]["413"]["content"][JSON]["schema"],
            serde_json::json!({ "$ref": "#/components/schemas/Address" })
        );
        let err = declared(OperationAdmission {
            error_schema: Some("Nope".into()),
            ..Default::default()
        })
        .unwrap_err();
        assert!(err.contains("`Nope`") && err.contains("`orders`"), "{err}");
    }
}
