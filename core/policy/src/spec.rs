//! The policy file format: what a YAML file may contain.
//!
//! These types are the single source of truth for the syntax. The JSON Schema in
//! `policies/policy.schema.json` is generated from them (doc comments become descriptions),
//! the loader validates each file against that schema before deserialising, and
//! `policies/README.md` documents the same fields.

use crate::units::{Duration, Jitter, Size};
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};
use std::borrow::Cow;
use std::collections::BTreeMap;

macro_rules! string_format {
    ($(#[$doc:meta])* $ty:ident, $name:literal, $format:literal, $desc:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
        #[serde(transparent)]
        pub struct $ty(pub String);

        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({ "type": "string", "format": $format, "description": $desc })
            }
        }
    };
}

string_format!(
    /// A key, tag or invalidation template such as `booking:slots:{path.barber_id}`.
    TemplateText,
    "Template",
    "template",
    "A template: literal text with `{placeholders}`: plugin, operation, method, path, path.NAME, query, query.NAME, params, header.NAME, body, body.POINTER, tenant, user, event.FIELD (triggers), `{x|default}` and `{hash(a, b)}`."
);
string_format!(
    /// A condition such as `query.date < today`.
    ExprText,
    "Condition",
    "expression",
    "A condition: comparisons (== != < <= > >=), `exists X`, `X in [..]`, and/or/not over query.X, path.X, header.X, body.POINTER, tenant, user, method, literals, `today` and `now` (± a duration)."
);
string_format!(
    /// An IANA time zone such as `America/New_York`.
    TimeZoneText,
    "TimeZone",
    "time-zone",
    "An IANA time zone name such as `America/New_York`, `Europe/Berlin` or `UTC`."
);
string_format!(
    /// A TTL: a duration (`5m`) or the name of a TTL class (`real_time`).
    TtlText,
    "TtlValue",
    "ttl",
    "A TTL: a duration such as `5m`, or the name of a class from `ttl_classes`. `0s` means: do not store."
);

/// One policy file. A policy set is every `*.yaml` file of the policy folder, merged.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Larder policy file")]
pub struct PolicyFile {
    /// Version of the policy language. Always `1`.
    pub version: u32,
    /// Named TTLs that rules refer to by name (`ttl: real_time`). Names are shared across
    /// all files of the set.
    #[serde(default)]
    pub ttl_classes: BTreeMap<String, Duration>,
    /// Settings every rule starts from. At most one file of the set may have them.
    #[serde(default)]
    pub defaults: Option<Defaults>,
    /// Caching rules, matched against routes.
    #[serde(default)]
    pub rules: Vec<RuleSpec>,
    /// Invalidations run when a plugin emits an event.
    #[serde(default)]
    pub triggers: Vec<TriggerSpec>,
    /// Jobs that fill the cache ahead of requests.
    #[serde(default)]
    pub warming: Vec<WarmSpec>,
    /// Response compression for cached entries. At most one file of the set may have it;
    /// rules may override it.
    #[serde(default)]
    pub compression: Option<CompressionSpec>,
}

/// Settings every rule starts from; a rule's own fields win.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// TTL of rules that set none (default `5m`).
    pub ttl: Option<TtlText>,
    /// After expiry, serve the stale entry for this long while one background refresh runs
    /// (default `0s`).
    pub stale_while_revalidate: Option<Duration>,
    /// After expiry, serve the stale entry for this long when the origin fails
    /// (default `0s`).
    pub stale_if_error: Option<Duration>,
    /// Spread added to every TTL so entries written together do not expire together.
    pub jitter: Option<Jitter>,
    /// Where entries live (default `hybrid`: memory over Redis when Redis is configured).
    pub store: Option<Store>,
    /// Who may share an entry (default `public`).
    pub scope: Option<Scope>,
    /// Methods whose responses are cached (default `[GET, HEAD]`).
    pub methods: Option<Vec<Method>>,
    /// Response statuses that are cached (default `[200]`).
    pub statuses: Option<Vec<u16>>,
    /// Responses larger than this are not cached (default `8MiB`).
    pub max_size: Option<Size>,
    /// Whether clients may skip the cache (default: they may not).
    pub bypass: Option<BypassSpec>,
    /// JSON rewriting before storing (default: none).
    pub json: Option<JsonSpec>,
    /// Time zone in which conditions read `today` and warming's `days` count, for rules
    /// whose own `timezone` and plugin name none (default `UTC`).
    pub timezone: Option<TimeZoneText>,
}

/// A caching rule: which routes it covers and how their responses are cached.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    /// Unique name of the rule across the whole policy set; used in metrics, logs and
    /// `larder explain`.
    pub name: String,
    /// Free text for the reader.
    pub description: Option<String>,
    /// Which routes the rule covers. Omit it for a rule that plugin code uses by name
    /// (`PluginContext::get_or_load("<rule name>", key, loader)`): such a rule caches no
    /// route; its TTL, stale windows, tags and store apply to the values the code caches.
    #[serde(rename = "match", default)]
    pub matcher: Option<MatchSpec>,
    /// `false` turns caching off for the matched routes (they can still `invalidate`).
    pub cache: Option<bool>,
    /// Cache key template. Default: `{plugin}:{operation}:{path}:{query}`, plus
    /// `:{hash(body)}` when a method with a body is cacheable.
    pub key: Option<TemplateText>,
    /// How long entries live: a duration, a class name, or an object with conditions.
    pub ttl: Option<TtlSpec>,
    /// Overrides `defaults.stale_while_revalidate`.
    pub stale_while_revalidate: Option<Duration>,
    /// Overrides `defaults.stale_if_error`.
    pub stale_if_error: Option<Duration>,
    /// Tags attached to entries, for purging by tag: a template, or
    /// `{ tag: TEMPLATE, if: CONDITION }` for a tag attached only when the condition holds.
    #[serde(default)]
    pub tags: Vec<TagSpec>,
    /// Methods whose responses are cached. A method with a body (POST, ...) needs a key that
    /// reads the body (`{body}`, `{body.X}`, `{params}` or `hash(...)` of those).
    pub methods: Option<Vec<Method>>,
    /// Cached response statuses.
    pub statuses: Option<Vec<u16>>,
    /// Larger responses are not cached.
    pub max_size: Option<Size>,
    /// Where entries live.
    pub store: Option<Store>,
    /// Who may share an entry: `public` (everyone), `tenant` or `user` (the key includes
    /// the principal; requests without one are not cached).
    pub scope: Option<Scope>,
    /// Request headers whose values become part of the key (like HTTP `Vary`).
    #[serde(default)]
    pub vary: Vec<String>,
    /// When a request may skip the cache.
    pub bypass: Option<BypassSpec>,
    /// JSON rewriting before storing.
    pub json: Option<JsonSpec>,
    /// Cache responses even when the handler says `Cache-Control: no-store` or `private`.
    #[serde(default)]
    pub ignore_origin_no_store: bool,
    /// `false` to store uncompressed, or fields that override the global `compression`.
    pub compression: Option<CompressionOverride>,
    /// What to purge after a successful (2xx) response of the matched routes.
    pub invalidate: Option<InvalidateSpec>,
    /// What downstream caches (browsers, CDNs, proxies) are told in `Cache-Control`,
    /// apart from how long Larder keeps the entry. Defaults are the safe form: `private`
    /// for `tenant`/`user` scope, and `no-cache` with the ETag (each reuse revalidates,
    /// a cheap 304) when the rule's entries can be purged by tags, keys or patterns.
    pub client: Option<ClientSpec>,
    /// Time zone in which this rule's conditions (`ttl.when`, conditional tags,
    /// `bypass.when`) read `today`. Default: the zone its plugin runs in (booking's shop
    /// zone, for example), else `defaults.timezone`, else `UTC`.
    pub timezone: Option<TimeZoneText>,
}

/// The `Cache-Control` clients and shared caches get for a rule's answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientSpec {
    /// How long a client may reuse an answer without asking (`max-age`). Default: what is
    /// left of the entry's TTL. `0s` makes every reuse ask.
    pub max_age: Option<Duration>,
    /// Only the client's own cache may keep answers, no shared cache. Always on for
    /// `tenant` and `user` scope.
    pub private: Option<bool>,
    /// `no-cache`: a client may keep the answer but revalidates each reuse with its ETag
    /// (a 304 without a body when unchanged), so a purge reaches it at once. Default: on
    /// when the rule's entries can be purged (tags, or a key/pattern invalidation that can
    /// reach its keys); not with `max_age`.
    pub revalidate: Option<bool>,
}

/// Which routes a rule covers. Either `plugin` + `operation`, or `path` (with an optional
/// `method` and `plugin`), or `plugin` alone for every route of a plugin.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MatchSpec {
    /// Plugin name, as registered.
    pub plugin: Option<String>,
    /// Operation id of one route of `plugin`.
    pub operation: Option<String>,
    /// HTTP method (with `path` only).
    pub method: Option<Method>,
    /// Full path template: `/api/v2/barbers/{id}/slots`. `*` matches one segment, a final
    /// `**` any rest.
    pub path: Option<String>,
}

/// A TTL: shorthand (`5m`, `real_time`) or the full form.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TtlSpec {
    /// A duration or a class name.
    Short(TtlText),
    /// A TTL with conditions, origin max-age and jitter.
    Full(TtlObject),
}

/// The full TTL form.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TtlObject {
    /// A TTL class name.
    pub class: Option<String>,
    /// A fixed duration (instead of `class`).
    pub duration: Option<Duration>,
    /// Conditions tried in order; the first that holds sets the TTL.
    #[serde(default)]
    pub when: Vec<WhenSpec>,
    /// Take the TTL from the handler's `Cache-Control: max-age`, clamped to these bounds.
    pub from_origin: Option<FromOrigin>,
    /// Overrides `defaults.jitter`.
    pub jitter: Option<Jitter>,
}

/// One conditional TTL.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WhenSpec {
    /// The condition, e.g. `query.date < today`.
    #[serde(rename = "if")]
    pub condition: ExprText,
    /// The TTL when it holds: a duration or a class name.
    pub ttl: TtlText,
}

/// One of a rule's tags: always attached, or only when a condition holds.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TagSpec {
    /// A tag template attached to every entry.
    Always(TemplateText),
    /// A tag attached only when its condition holds.
    When(ConditionalTag),
}

/// A conditional tag, e.g. `{ tag: "revenue-open:{tenant}", if: "query.end_date >= today" }`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ConditionalTag {
    /// The tag template.
    pub tag: TemplateText,
    /// The condition. It is evaluated when the entry is stored, so `today` is the day the
    /// entry was stored.
    #[serde(rename = "if")]
    pub condition: ExprText,
}

/// Bounds for a TTL taken from the handler's `Cache-Control: max-age`.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FromOrigin {
    /// Lower bound (default `0s`).
    pub min: Option<Duration>,
    /// Upper bound (default: none).
    pub max: Option<Duration>,
}

/// Where entries are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Store {
    /// In-process only.
    Memory,
    /// Redis only.
    Redis,
    /// In-process over Redis.
    Hybrid,
}

/// Who may be served an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// One entry for everyone.
    Public,
    /// One entry per tenant.
    Tenant,
    /// One entry per user.
    User,
}

impl Scope {
    /// The name as written in policies.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Public => "public",
            Scope::Tenant => "tenant",
            Scope::User => "user",
        }
    }
}

/// An HTTP method.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize, Serialize, JsonSchema,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
    /// OPTIONS
    Options,
}

impl Method {
    /// The upper-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Patch => "PATCH",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
        }
    }

    /// Parses an upper- or lower-case method name.
    pub fn parse(s: &str) -> Option<Method> {
        // No allocation: this runs on every request (`Rule::caches_method`).
        [
            ("GET", Method::Get),
            ("HEAD", Method::Head),
            ("POST", Method::Post),
            ("PUT", Method::Put),
            ("PATCH", Method::Patch),
            ("DELETE", Method::Delete),
            ("OPTIONS", Method::Options),
        ]
        .into_iter()
        .find_map(|(name, m)| s.eq_ignore_ascii_case(name).then_some(m))
    }

    /// Whether requests of this method usually carry a body.
    pub fn has_body(self) -> bool {
        matches!(
            self,
            Method::Post | Method::Put | Method::Patch | Method::Delete
        )
    }
}

impl std::fmt::Display for Method {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// When a request may skip the cache (it then goes to the origin and refreshes the entry).
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BypassSpec {
    /// Honour the client's `Cache-Control: no-cache` (and `Pragma: no-cache`).
    #[serde(default)]
    pub no_cache: bool,
    /// Skip the cache when this condition holds, e.g. `query.use_cache == false`.
    pub when: Option<ExprText>,
}

/// JSON rewriting applied to the response body before it is stored.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JsonSpec {
    /// Re-encode without whitespace.
    #[serde(default)]
    pub compact: bool,
    /// Drop object fields whose value is `null`.
    #[serde(default)]
    pub strip_nulls: bool,
}

/// A per-rule compression setting.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum CompressionOverride {
    /// `false`: store uncompressed; `true`: the global settings.
    Enabled(bool),
    /// Fields overriding the global settings.
    Override(CompressionSpec),
}

/// Compression of stored entries.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CompressionSpec {
    /// Compress at all (default `true`).
    pub enabled: Option<bool>,
    /// Algorithms in order of preference (default `[br, zstd, gzip]`).
    pub algorithms: Option<Vec<Algorithm>>,
    /// Compression level, 1–11 (default `6`; clamped to each algorithm's range).
    pub level: Option<u32>,
    /// Smaller bodies are stored uncompressed (default `1KiB`).
    pub min_size: Option<Size>,
    /// Content types that are compressed; globs such as `text/*` (default: text, JSON,
    /// JavaScript, XML).
    pub include: Option<Vec<String>>,
    /// Content types never compressed; globs such as `image/*` (default: images, video,
    /// audio and archives). Wins over `include`.
    pub exclude: Option<Vec<String>>,
}

/// A compression algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize, Serialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Algorithm {
    /// Brotli (`br`).
    Br,
    /// Zstandard.
    Zstd,
    /// gzip.
    Gzip,
    /// deflate.
    Deflate,
}

impl Algorithm {
    /// The `Content-Encoding` token.
    pub fn token(self) -> &'static str {
        match self {
            Algorithm::Br => "br",
            Algorithm::Zstd => "zstd",
            Algorithm::Gzip => "gzip",
            Algorithm::Deflate => "deflate",
        }
    }
}

/// What to purge. Every entry is a template; `patterns` are globs (`*`, `?`) over keys.
#[derive(Debug, Clone, Default, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InvalidateSpec {
    /// Tags whose entries are purged.
    #[serde(default)]
    pub tags: Vec<TemplateText>,
    /// Exact keys to purge.
    #[serde(default)]
    pub keys: Vec<TemplateText>,
    /// Key patterns to purge (bounded SCAN). A pattern of only wildcards is refused: use
    /// `all: true`.
    #[serde(default)]
    pub patterns: Vec<TemplateText>,
    /// Purge everything. The only way to say "all".
    #[serde(default)]
    pub all: bool,
}

/// An invalidation fired by a plugin event.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TriggerSpec {
    /// The event, as `plugin.event` (e.g. `booking.payment_recorded`).
    pub on: String,
    /// Free text for the reader.
    pub description: Option<String>,
    /// What to purge; templates read the event's fields as `{event.FIELD}`.
    pub invalidate: InvalidateSpec,
}

/// A warming job.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmSpec {
    /// Unique job name (used by the admin API to run it).
    pub name: String,
    /// Free text for the reader.
    pub description: Option<String>,
    /// Run once when the server starts.
    #[serde(default)]
    pub at_startup: bool,
    /// `/ready` waits for the startup run (only with `at_startup`).
    #[serde(default)]
    pub ready_after: bool,
    /// Run again at this interval.
    pub every: Option<Duration>,
    /// May be run through the admin API (default `true`).
    pub on_demand: Option<bool>,
    /// Request templates. `{NAME}` placeholders take values from `params`; several
    /// parameters expand to every combination.
    #[serde(default)]
    pub requests: Vec<WarmRequestSpec>,
    /// Values of the request templates' placeholders.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValues>,
    /// A plugin's named warm source, as `plugin.source`, instead of `requests`.
    pub source: Option<String>,
    /// The plugin whose routes `requests` go to. Every request must reach one of its
    /// routes, and when the operator disables the plugin the job is left out quietly, like
    /// the rules naming it.
    pub plugin: Option<String>,
    /// Requests in flight at once (default `4`).
    pub concurrency: Option<u32>,
    /// Requests per batch; the job pauses between batches (default `100`).
    pub batch_size: Option<u32>,
    /// Refuse to expand to more requests than this (default `10000`).
    pub max_requests: Option<u32>,
    /// Time zone in which `days` parameters count from today. Default: the zone of the
    /// plugin its requests go to, else `defaults.timezone`, else `UTC`.
    pub timezone: Option<TimeZoneText>,
}

/// A request to warm: `"GET /api/v2/services?x={x}"` or the full form.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum WarmRequestSpec {
    /// `METHOD /path?query`, placeholders allowed anywhere.
    Line(String),
    /// Method, path, query, headers and a JSON body.
    Full(WarmRequestObject),
}

/// The full form of a warm request.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WarmRequestObject {
    /// HTTP method (default `GET`).
    pub method: Option<Method>,
    /// Path, placeholders allowed.
    pub path: String,
    /// Query parameters, placeholders allowed in values.
    #[serde(default)]
    pub query: BTreeMap<String, String>,
    /// Headers, placeholders allowed in values.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// JSON body; placeholders are replaced inside string values.
    pub body: Option<serde_json::Value>,
}

/// Values of one warming parameter.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamValues {
    /// A list of values.
    List(Vec<ParamScalar>),
    /// Integers `from..=to`.
    Range(IntRange),
    /// Dates (`YYYY-MM-DD`) starting today.
    Days(DayRange),
}

/// A scalar parameter value.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum ParamScalar {
    /// Integer.
    Int(i64),
    /// Boolean.
    Bool(bool),
    /// Text.
    Text(String),
}

/// An integer range.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IntRange {
    /// First value.
    pub from: i64,
    /// Last value (inclusive).
    pub to: i64,
    /// Step (default `1`).
    pub step: Option<u32>,
}

/// A run of dates.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DayRange {
    /// How many days, starting at `today + offset`.
    pub days: u32,
    /// First day relative to today (default `0`; `-1` is yesterday).
    pub offset: Option<i32>,
}

/// The JSON Schema of a policy file.
pub fn json_schema() -> serde_json::Value {
    let schema = schemars::schema_for!(PolicyFile);
    serde_json::to_value(schema).unwrap_or_default()
}

#[cfg(test)]
mod dump {
    #[test]
    fn dump() {
        std::fs::write(
            "/tmp/schema.json",
            serde_json::to_string_pretty(&super::json_schema()).unwrap(),
        )
        .unwrap();
    }
}
