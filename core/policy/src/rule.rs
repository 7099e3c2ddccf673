//! A compiled rule and everything evaluated per request: key, tags, TTL, bypass,
//! invalidation.

use crate::compression::Compression;
use crate::expr::{Clock, Expr};
use crate::path::PathPattern;
use crate::request::RequestView;
use crate::spec::{Method, Scope, Store};
use crate::template::{RouteNames, Template};
use crate::units::{Duration, Jitter, Size};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// How a rule selects routes; also its precedence class (see [`RuleMatch::precedence`]).
#[derive(Debug, Clone, PartialEq)]
pub enum RuleMatch {
    /// `match: { plugin, operation }`.
    Operation {
        /// Plugin name.
        plugin: String,
        /// Operation id.
        operation: String,
    },
    /// `match: { path, method?, plugin? }`.
    Path {
        /// Only this method, if set.
        method: Option<Method>,
        /// The template.
        pattern: PathPattern,
        /// Only routes of this plugin, if set.
        plugin: Option<String>,
    },
    /// `match: { plugin }`: every route of the plugin.
    Plugin {
        /// Plugin name.
        plugin: String,
    },
    /// No `match`: no route; plugin code uses the rule by name.
    Code,
}

impl RuleMatch {
    /// Higher wins: operation (3) > path (2) > plugin (1). Within paths, the more specific
    /// template wins, then a rule with a method beats one without.
    pub fn precedence(&self) -> (u8, Vec<u8>, u8) {
        match self {
            RuleMatch::Operation { .. } => (3, Vec::new(), 0),
            RuleMatch::Path {
                method,
                pattern,
                plugin,
            } => (
                2,
                pattern.specificity(),
                u8::from(method.is_some()) * 2 + u8::from(plugin.is_some()),
            ),
            RuleMatch::Plugin { .. } => (1, Vec::new(), 0),
            RuleMatch::Code => (0, Vec::new(), 0),
        }
    }
}

impl fmt::Display for RuleMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RuleMatch::Operation { plugin, operation } => {
                write!(f, "operation {plugin}.{operation}")
            }
            RuleMatch::Path {
                method,
                pattern,
                plugin,
            } => {
                f.write_str("path ")?;
                if let Some(m) = method {
                    write!(f, "{m} ")?;
                }
                write!(f, "{pattern}")?;
                if let Some(p) = plugin {
                    write!(f, " (plugin {p})")?;
                }
                Ok(())
            }
            RuleMatch::Plugin { plugin } => write!(f, "every route of plugin {plugin}"),
            RuleMatch::Code => f.write_str("no route (used by name from plugin code)"),
        }
    }
}

/// The TTL part of a rule.
#[derive(Debug, Clone)]
pub struct TtlPolicy {
    /// TTL when no condition holds and the origin gives no max-age.
    pub base: Duration,
    /// Where `base` came from (`class real_time`, `rule`, `defaults`).
    pub base_source: String,
    /// Conditional TTLs, first match wins.
    pub when: Vec<(Expr, Duration)>,
    /// Bounds for the origin's `max-age`, when the rule takes it.
    pub from_origin: Option<(Duration, Option<Duration>)>,
    /// Spread added per key.
    pub jitter: Option<Jitter>,
}

/// The TTL chosen for one response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TtlDecision {
    /// TTL before jitter.
    pub base: Duration,
    /// Extra time from jitter (derived from the key, so stable per key).
    pub jitter: Duration,
    /// Serve stale while one refresh runs, for this long after expiry.
    pub stale_while_revalidate: Duration,
    /// Serve stale on origin errors, for this long after expiry.
    pub stale_if_error: Duration,
    /// Why this TTL: `class real_time`, `when "query.date < today"`, `origin max-age`...
    pub reason: String,
}

impl TtlDecision {
    /// The TTL to store with: base plus jitter. Zero means: do not store.
    pub fn ttl(&self) -> Duration {
        Duration::from_millis(self.base.as_millis() + self.jitter.as_millis())
    }
}

/// What a successful mutating request (or an event) purges, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Invalidation {
    /// Tags to purge.
    pub tags: Vec<String>,
    /// Keys to purge.
    pub keys: Vec<String>,
    /// Key patterns to purge (glob: `*`, `?`).
    pub patterns: Vec<String>,
    /// Purge everything.
    pub all: bool,
    /// Targets not purged because a value they need was absent (a missing value must not
    /// turn `slots:{body.id}:*` into `slots::*`).
    pub skipped: Vec<String>,
}

impl Invalidation {
    /// True when there is nothing to purge.
    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.keys.is_empty() && self.patterns.is_empty() && !self.all
    }

    /// Appends another invalidation.
    pub fn merge(&mut self, other: Invalidation) {
        self.tags.extend(other.tags);
        self.keys.extend(other.keys);
        self.patterns.extend(other.patterns);
        self.all |= other.all;
        self.skipped.extend(other.skipped);
    }
}

/// Compiled invalidation templates.
#[derive(Debug, Clone, Default)]
pub struct InvalidationTemplates {
    /// Tag templates.
    pub tags: Vec<Template>,
    /// Key templates.
    pub keys: Vec<Template>,
    /// Pattern templates.
    pub patterns: Vec<Template>,
    /// Purge everything.
    pub all: bool,
}

impl InvalidationTemplates {
    fn render(&self, mut r: impl FnMut(&Template) -> (String, bool)) -> Invalidation {
        let mut out = Invalidation {
            all: self.all,
            ..Invalidation::default()
        };
        for (list, dst) in [
            (&self.tags, &mut out.tags),
            (&self.keys, &mut out.keys),
            (&self.patterns, &mut out.patterns),
        ] {
            for t in list {
                let (s, complete) = r(t);
                if complete {
                    dst.push(s);
                } else {
                    out.skipped.push(t.as_str().to_owned());
                }
            }
        }
        out
    }

    /// Renders against a request.
    pub fn render_request(&self, req: &dyn RequestView, route: RouteNames<'_>) -> Invalidation {
        self.render(|t| t.render(req, route))
    }

    /// Renders against an event's fields.
    pub fn render_event(&self, fields: &serde_json::Value) -> Invalidation {
        self.render(|t| t.render_event(fields))
    }
}

/// Why a request does not use the cache: the typed reason the server (`Cache-Status`
/// `detail=`), its logs and `larder explain` all report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skip {
    /// The rule says `cache: false`.
    Disabled,
    /// The method is not in the rule's `methods`.
    Method,
    /// The request carries credentials and the rule's scope is `public`: it must neither
    /// see nor fill an entry other principals share.
    Credentials,
    /// The client asked to bypass and the rule allows it.
    Bypass,
    /// The rule's scope needs a tenant or user the request lacks.
    NoPrincipal,
}

impl Skip {
    /// A short token for headers and logs (`Cache-Status: ...; detail=credentials`).
    pub fn as_str(self) -> &'static str {
        match self {
            Skip::Disabled => "disabled",
            Skip::Method => "method",
            Skip::Credentials => "credentials",
            Skip::Bypass => "request",
            Skip::NoPrincipal => "principal",
        }
    }
}

impl fmt::Display for Skip {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Skip::Disabled => "the rule has `cache: false`",
            Skip::Method => "the method is not cacheable under this rule",
            Skip::Credentials => "the request carries credentials and the rule's scope is `public`",
            Skip::NoPrincipal => "the rule's scope needs a tenant/user and the request has none",
            Skip::Bypass => "the request asked to bypass the cache and the rule allows it",
        })
    }
}

/// JSON rewriting before storing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct JsonOptions {
    /// Re-encode without whitespace.
    pub compact: bool,
    /// Drop `null` object fields.
    pub strip_nulls: bool,
}

/// A compiled rule. Immutable; shared as `Arc<Rule>`.
#[derive(Debug, Clone)]
pub struct Rule {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The file it came from.
    pub file: PathBuf,
    /// How it selects routes.
    pub matcher: RuleMatch,
    /// `false` for `cache: false`.
    pub cache: bool,
    /// The key template.
    pub key: Template,
    /// Tags, each with the condition that attaches it, if any.
    pub tags: Vec<RuleTag>,
    /// TTL policy.
    pub ttl: TtlPolicy,
    /// Stale-while-revalidate window.
    pub stale_while_revalidate: Duration,
    /// Stale-if-error window.
    pub stale_if_error: Duration,
    /// Cacheable methods.
    pub methods: Vec<Method>,
    /// Cacheable statuses.
    pub statuses: Vec<u16>,
    /// Largest cacheable body.
    pub max_size: Size,
    /// Where entries live.
    pub store: Store,
    /// Who shares entries.
    pub scope: Scope,
    /// Headers that vary the key (lower case).
    pub vary: Vec<String>,
    /// Honour `Cache-Control: no-cache` from clients.
    pub bypass_no_cache: bool,
    /// Skip the cache when this holds.
    pub bypass_when: Option<Expr>,
    /// JSON rewriting.
    pub json: JsonOptions,
    /// Store even when the handler says `no-store`/`private`.
    pub ignore_origin_no_store: bool,
    /// Compression settings for this rule's entries.
    pub compression: Arc<Compression>,
    /// Purges after a 2xx response.
    pub invalidate: Option<InvalidationTemplates>,
    /// What downstream caches are told.
    pub client: ClientCache,
    /// The zone its conditions read `today` in; `None` for UTC.
    pub timezone: Option<Zone>,
}

/// A named IANA time zone and which setting chose it, for rules whose conditions compare
/// dates in a shop's or a tenant's local day rather than UTC's.
#[derive(Debug, Clone)]
pub struct Zone {
    /// The zone.
    pub zone: jiff::tz::TimeZone,
    /// Its IANA name (`America/New_York`).
    pub name: String,
    /// Where it was set: `rule`, `plugin booking`, `defaults`.
    pub source: String,
}

/// Two zones are the same setting when they have the same name and source.
impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name && self.source == other.source
    }
}

impl Zone {
    /// `clock` with its dates in this zone, or in UTC when there is none.
    pub fn apply(zone: Option<&Zone>, clock: Clock) -> Clock {
        match zone {
            Some(z) => clock.in_zone(&z.zone),
            None => clock,
        }
    }
}

impl fmt::Display for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (from {})", self.name, self.source)
    }
}

/// One of a rule's tags: a template, attached to an entry only when its condition (if
/// any) holds for the request being stored.
#[derive(Debug, Clone)]
pub struct RuleTag {
    /// The tag template.
    pub template: Template,
    /// `None` for a tag attached to every entry.
    pub condition: Option<Expr>,
}

impl RuleTag {
    /// Whether the tag goes on an entry stored for `req` at `clock`.
    pub fn applies(&self, req: &dyn RequestView, clock: Clock) -> bool {
        self.condition.as_ref().is_none_or(|c| c.eval(req, clock))
    }
}

/// One tag of [`Rule::tag_verdicts`]: rendered, and whether an entry stored for the request
/// would carry it.
#[derive(Debug, Clone, PartialEq)]
pub struct TagVerdict {
    /// The rendered tag.
    pub tag: String,
    /// The condition of a conditional tag.
    pub condition: Option<Expr>,
    /// Whether the condition holds (always `true` without one).
    pub attached: bool,
}

/// The `Cache-Control` a rule's answers carry, resolved at load (see
/// [`ClientSpec`](crate::spec::ClientSpec)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClientCache {
    /// `private` rather than `public`.
    pub private: bool,
    /// A fixed `max-age`; `None` for what is left of the entry's TTL.
    pub max_age: Option<Duration>,
    /// `no-cache`: revalidate each reuse with the ETag.
    pub revalidate: bool,
}

/// What [`Rule::decide`] makes of a request the cache may answer: its key. Tags and the TTL
/// are rendered only when an entry is stored ([`Rule::tags`], [`Rule::ttl`]), so a hit pays
/// for the key alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// The cache key.
    pub key: String,
}

/// Which `when` condition of a rule's TTL held for a request (evaluated before the handler
/// runs, while the request is still at hand), for [`Rule::ttl_after`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtlCondition(Option<usize>);

impl Rule {
    /// Whether any condition (a TTL's `when`, a conditional tag, `bypass.when`) is evaluated
    /// for the rule's requests.
    pub fn has_conditions(&self) -> bool {
        !self.ttl.when.is_empty()
            || self.bypass_when.is_some()
            || self.tags.iter().any(|t| t.condition.is_some())
    }

    /// `clock` with its dates in the rule's zone.
    pub fn local(&self, clock: Clock) -> Clock {
        Zone::apply(self.timezone.as_ref(), clock)
    }

    fn route_names(&self) -> RouteNames<'_> {
        match &self.matcher {
            RuleMatch::Operation { plugin, operation } => RouteNames {
                plugin: Some(plugin),
                operation: Some(operation),
            },
            RuleMatch::Plugin { plugin } => RouteNames {
                plugin: Some(plugin),
                operation: None,
            },
            RuleMatch::Path { plugin, .. } => RouteNames {
                plugin: plugin.as_deref(),
                operation: None,
            },
            RuleMatch::Code => RouteNames {
                plugin: None,
                operation: None,
            },
        }
    }

    /// Whether responses to `method` may be cached.
    pub fn caches_method(&self, method: &str) -> bool {
        self.cache && Method::parse(method).is_some_and(|m| self.methods.contains(&m))
    }

    /// Whether a response with `status` may be cached.
    pub fn caches_status(&self, status: u16) -> bool {
        self.cache && self.statuses.contains(&status)
    }

    /// Whether a body of `len` bytes may be cached.
    pub fn fits(&self, len: u64) -> bool {
        len <= self.max_size.bytes()
    }

    /// Whether the request asked to bypass the cache and the rule allows it.
    pub fn bypass(&self, req: &dyn RequestView, clock: Clock) -> bool {
        if self.bypass_no_cache {
            let no_cache = |h: Option<&str>| {
                h.is_some_and(|v| {
                    v.split(',').any(|d| {
                        d.trim().eq_ignore_ascii_case("no-cache")
                            || d.trim().eq_ignore_ascii_case("no-store")
                    })
                })
            };
            if no_cache(req.header("cache-control")) || no_cache(req.header("pragma")) {
                return true;
            }
        }
        self.bypass_when
            .as_ref()
            .is_some_and(|e| e.eval(req, self.local(clock)))
    }

    /// The cache key, or why the request must not use the cache. Scope and `vary` are part
    /// of the key: `#t=TENANT`, `#u=USER`, `#v=HASH` are appended.
    pub fn key(&self, req: &dyn RequestView) -> Result<String, Skip> {
        if !self.cache {
            return Err(Skip::Disabled);
        }
        let (mut key, _) = self.key.render(req, self.route_names());
        match self.scope {
            Scope::Public => {}
            Scope::Tenant => {
                let t = req
                    .tenant()
                    .filter(|t| !t.is_empty())
                    .ok_or(Skip::NoPrincipal)?;
                key.push_str("#t=");
                crate::template::escape_into(t, &mut key);
            }
            Scope::User => {
                let u = req
                    .user()
                    .filter(|u| !u.is_empty())
                    .ok_or(Skip::NoPrincipal)?;
                if let Some(t) = req.tenant() {
                    key.push_str("#t=");
                    crate::template::escape_into(t, &mut key);
                }
                key.push_str("#u=");
                crate::template::escape_into(u, &mut key);
            }
        }
        if !self.vary.is_empty() {
            let mut h = xxhash_rust::xxh3::Xxh3::new();
            for name in &self.vary {
                h.update(name.as_bytes());
                h.update(b"\x1f");
                h.update(req.header(name).unwrap_or("").as_bytes());
                h.update(b"\x1e");
            }
            use std::fmt::Write as _;
            let _ = write!(key, "#v={:016x}", h.digest());
        }
        Ok(key)
    }

    /// The rendered tags an entry stored for `req` carries: the unconditional ones and the
    /// conditional ones whose condition holds at `clock` (conditions may read `today`).
    pub fn tags(&self, req: &dyn RequestView, clock: Clock) -> Vec<String> {
        let (route, clock) = (self.route_names(), self.local(clock));
        self.tags
            .iter()
            .filter(|t| t.applies(req, clock))
            .map(|t| t.template.render(req, route).0)
            .collect()
    }

    /// Every tag of the rule rendered for `req`, with whether it would be attached: what
    /// [`Rule::tags`] keeps, and what it leaves out and why (for `larder explain`).
    pub fn tag_verdicts(&self, req: &dyn RequestView, clock: Clock) -> Vec<TagVerdict> {
        let (route, clock) = (self.route_names(), self.local(clock));
        self.tags
            .iter()
            .map(|t| TagVerdict {
                tag: t.template.render(req, route).0,
                condition: t.condition.clone(),
                attached: t.applies(req, clock),
            })
            .collect()
    }

    /// The TTL for a response: the first `when` condition that holds, else the origin's
    /// `max-age` clamped to the rule's bounds (when the rule takes it), else the rule's TTL;
    /// plus jitter seeded by `key`, so one key always gets the same spread.
    /// `origin_max_age` is the handler's `Cache-Control: max-age`.
    pub fn ttl(
        &self,
        req: &dyn RequestView,
        clock: Clock,
        origin_max_age: Option<Duration>,
        key: &str,
    ) -> TtlDecision {
        self.ttl_after(self.ttl_condition(req, clock), origin_max_age, key)
    }

    /// The request half of [`Rule::ttl`]: which `when` condition holds.
    pub fn ttl_condition(&self, req: &dyn RequestView, clock: Clock) -> TtlCondition {
        if self.ttl.when.is_empty() {
            return TtlCondition(None);
        }
        let clock = self.local(clock);
        TtlCondition(
            self.ttl
                .when
                .iter()
                .position(|(cond, _)| cond.eval(req, clock)),
        )
    }

    /// The response half of [`Rule::ttl`], once the origin answered.
    pub fn ttl_after(
        &self,
        condition: TtlCondition,
        origin_max_age: Option<Duration>,
        key: &str,
    ) -> TtlDecision {
        let (base, reason) = 'pick: {
            if let Some((cond, ttl)) = condition.0.and_then(|i| self.ttl.when.get(i)) {
                break 'pick (*ttl, format!("when `{cond}`"));
            }
            if let (Some((min, max)), Some(age)) = (self.ttl.from_origin, origin_max_age) {
                let mut t = age.max(min);
                if let Some(max) = max {
                    t = t.min(max);
                }
                break 'pick (
                    t,
                    format!(
                        "origin max-age {age} clamped to [{min}, {}]",
                        max.map(|m| m.to_string()).unwrap_or_else(|| "∞".into())
                    ),
                );
            }
            (self.ttl.base, self.ttl.base_source.clone())
        };
        let jitter = match self.ttl.jitter {
            Some(j) if !base.is_zero() => {
                let max = j.max_extra(base).as_millis();
                let seed = xxhash_rust::xxh3::xxh3_64(key.as_bytes());
                // Whole seconds keep TTLs readable; sub-second jitter is not worth it.
                let secs = max / 1000;
                Duration::from_secs(if secs == 0 { 0 } else { seed % (secs + 1) })
            }
            _ => Duration::ZERO,
        };
        TtlDecision {
            base,
            jitter,
            stale_while_revalidate: self.stale_while_revalidate,
            stale_if_error: self.stale_if_error,
            reason,
        }
    }

    /// The one decision, for the server, its fast path and `larder explain` alike: the
    /// cache key for a request, or the typed reason it goes to the origin uncached. Checked
    /// in this order: `cache: false`, the method, credentials on a `public` rule, a
    /// client bypass the rule allows, a principal the scope needs.
    pub fn decide(&self, req: &dyn RequestView, clock: Clock) -> Result<Decision, Skip> {
        if !self.cache {
            return Err(Skip::Disabled);
        }
        if !self.caches_method(req.method()) {
            return Err(Skip::Method);
        }
        if self.scope == Scope::Public && req.has_credentials() {
            return Err(Skip::Credentials);
        }
        if self.bypass(req, clock) {
            return Err(Skip::Bypass);
        }
        Ok(Decision {
            key: self.key(req)?,
        })
    }

    /// What to purge after a 2xx response to `req`, if the rule invalidates anything.
    pub fn invalidation(&self, req: &dyn RequestView) -> Option<Invalidation> {
        self.invalidate
            .as_ref()
            .map(|i| i.render_request(req, self.route_names()))
    }
}
