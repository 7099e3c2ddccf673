//! The compiled policy set: immutable, shared as `Arc<PolicySet>`, swapped whole on reload.

use crate::catalog::{Catalog, CatalogRoute};
use crate::compression::Compression;
use crate::expr::Clock;
use crate::path::{PathPattern, Router};
use crate::request::Request;
use crate::rule::{
    Invalidation, InvalidationTemplates, Rule, RuleMatch, Skip, TagVerdict, TtlDecision,
};
use crate::spec::{Method, Scope, Store};
use crate::units::Duration;
use crate::warming::WarmJob;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

/// An invalidation fired by a plugin event.
#[derive(Debug, Clone)]
pub struct Trigger {
    /// Plugin emitting the event.
    pub plugin: String,
    /// Event name.
    pub event: String,
    /// Free text.
    pub description: Option<String>,
    /// The file it came from.
    pub file: PathBuf,
    /// What to purge.
    pub invalidate: InvalidationTemplates,
}

/// A catalog route as the policy set knows it.
#[derive(Debug, Clone)]
pub struct RouteInfo {
    /// Plugin.
    pub plugin: String,
    /// Operation id.
    pub operation: String,
    /// Method.
    pub method: String,
    /// Path template.
    pub pattern: PathPattern,
}

/// The result of [`PolicySet::match_request`].
#[derive(Debug, Clone)]
pub struct RequestMatch {
    /// The rule.
    pub rule: Arc<Rule>,
    /// The catalog route the request hit, if the catalog has one.
    pub route: Option<Arc<RouteInfo>>,
    /// Path parameters captured from the template.
    pub params: Vec<(String, String)>,
}

/// All policies, compiled.
#[derive(Debug, Clone, Default)]
pub struct PolicySet {
    pub(crate) rules: Vec<Arc<Rule>>,
    pub(crate) by_name: HashMap<String, usize>,
    /// Every catalog route resolved to its rule (or none) at load.
    pub(crate) route_rule: HashMap<String, HashMap<String, Option<usize>>>,
    pub(crate) operation_rules: HashMap<(String, String), usize>,
    pub(crate) plugin_rules: HashMap<String, usize>,
    pub(crate) path_rules: Router<usize>,
    /// Catalog routes with their resolved rule.
    pub(crate) routes: Router<(Arc<RouteInfo>, Option<usize>)>,
    pub(crate) triggers: Vec<Arc<Trigger>>,
    pub(crate) triggers_by_event: HashMap<(String, String), Vec<usize>>,
    pub(crate) warming: Vec<Arc<WarmJob>>,
    pub(crate) compression: Arc<Compression>,
    pub(crate) ttl_classes: BTreeMap<String, Duration>,
    pub(crate) files: Vec<PathBuf>,
    /// What the server offers, as the set was checked against (empty without one).
    pub(crate) catalog: crate::catalog::Catalog,
}

impl PolicySet {
    /// The rule for a route, resolved by precedence at load. This is what the HTTP layer
    /// calls once per route at start-up.
    pub fn rule_for_route(&self, plugin: &str, operation: &str) -> Option<Arc<Rule>> {
        let idx = match self
            .route_rule
            .get(plugin)
            .and_then(|ops| ops.get(operation))
        {
            Some(found) => *found,
            None => self
                .operation_rules
                .get(&(plugin.to_owned(), operation.to_owned()))
                .or_else(|| self.plugin_rules.get(plugin))
                .copied(),
        };
        idx.map(|i| self.rules[i].clone())
    }

    /// The rule a route is served under: the rule resolved for its operation at load (by
    /// precedence), else the most specific `path` rule for its method and template. The
    /// server binds every route with this, and `larder explain` picks its rule with it, so
    /// the two never disagree on which rule applies.
    pub fn rule_for(
        &self,
        plugin: &str,
        operation: Option<&str>,
        method: &str,
        template: &str,
    ) -> Option<Arc<Rule>> {
        operation
            .and_then(|op| self.rule_for_route(plugin, op))
            .or_else(|| self.match_request(method, template).map(|m| m.rule))
    }

    /// The rule for a request by method and path: the catalog route it hits (if any) and
    /// that route's rule, else the most specific `path` rule.
    pub fn match_request(&self, method: &str, path: &str) -> Option<RequestMatch> {
        let m = method.to_ascii_uppercase();
        if let Some((_, (route, idx), params)) = self.routes.find(path, &|r| r.0.method == m) {
            let idx = (*idx)?;
            return Some(RequestMatch {
                rule: self.rules[idx].clone(),
                route: Some(route.clone()),
                params,
            });
        }
        let method = Method::parse(&m);
        let (_, idx, params) = self
            .path_rules
            .find(path, &|i| match &self.rules[*i].matcher {
                RuleMatch::Path {
                    method: Some(want), ..
                } => Some(*want) == method,
                _ => true,
            })?;
        Some(RequestMatch {
            rule: self.rules[*idx].clone(),
            route: None,
            params,
        })
    }

    /// What the set was checked against: the plugins' routes, events, named rules.
    pub fn catalog(&self) -> &Catalog {
        &self.catalog
    }

    /// Every rule, in file order.
    pub fn rules(&self) -> &[Arc<Rule>] {
        &self.rules
    }

    /// A rule by name.
    pub fn rule(&self, name: &str) -> Option<Arc<Rule>> {
        self.by_name.get(name).map(|i| self.rules[*i].clone())
    }

    /// Every trigger.
    pub fn triggers(&self) -> &[Arc<Trigger>] {
        &self.triggers
    }

    /// What to purge when `plugin` emits `event` with `fields` (a JSON object). Empty when
    /// no trigger listens.
    pub fn on_event(&self, plugin: &str, event: &str, fields: &serde_json::Value) -> Invalidation {
        let mut out = Invalidation::default();
        if let Some(ids) = self
            .triggers_by_event
            .get(&(plugin.to_owned(), event.to_owned()))
        {
            for i in ids {
                out.merge(self.triggers[*i].invalidate.render_event(fields));
            }
        }
        out
    }

    /// Whether any trigger listens to `plugin.event`.
    pub fn listens_to(&self, plugin: &str, event: &str) -> bool {
        self.triggers_by_event
            .contains_key(&(plugin.to_owned(), event.to_owned()))
    }

    /// Every warming job.
    pub fn warm_jobs(&self) -> &[Arc<WarmJob>] {
        &self.warming
    }

    /// A warming job by name.
    pub fn warm_job(&self, name: &str) -> Option<Arc<WarmJob>> {
        self.warming.iter().find(|j| j.name == name).cloned()
    }

    /// The global compression settings (rules carry their own resolved copy).
    pub fn compression(&self) -> &Arc<Compression> {
        &self.compression
    }

    /// The TTL classes.
    pub fn ttl_classes(&self) -> &BTreeMap<String, Duration> {
        &self.ttl_classes
    }

    /// The files the set was loaded from.
    pub fn files(&self) -> &[PathBuf] {
        &self.files
    }

    /// Explains what the policies do with a request: the matching rule, key, TTL, tags,
    /// store, and why every other rule did not match. `req.path_params` is filled from the
    /// matched template.
    pub fn explain(&self, req: &Request, clock: Clock) -> Explanation {
        let mut req = req.clone();
        req.method = req.method.to_ascii_uppercase();
        let method = Method::parse(&req.method);
        let found = self
            .routes
            .find(&req.path, &|r| r.0.method == req.method)
            .map(|(_, r, params)| (r.clone(), params));
        let route = found
            .as_ref()
            .map(|((r, _), params)| (r.clone(), params.clone()));
        let winner: Option<(usize, Vec<(String, String)>)> = match &found {
            Some(((r, _), params)) => self
                .rule_for(&r.plugin, Some(&r.operation), &r.method, r.pattern.as_str())
                .and_then(|rule| self.by_name.get(&rule.name).copied())
                .map(|i| (i, params.clone())),
            None => self
                .path_rules
                .find(&req.path, &|i| match &self.rules[*i].matcher {
                    RuleMatch::Path {
                        method: Some(want), ..
                    } => Some(*want) == method,
                    _ => true,
                })
                .map(|(_, i, p)| (*i, p)),
        };
        if let Some((r, params)) = &route {
            req.plugin.get_or_insert_with(|| r.plugin.clone());
            req.operation.get_or_insert_with(|| r.operation.clone());
            req.path_params = params.clone();
        } else if let Some((_, params)) = &winner {
            req.path_params = params.clone();
        }
        let mut others = Vec::new();
        for (i, rule) in self.rules.iter().enumerate() {
            if Some(i) == winner.as_ref().map(|w| w.0) {
                continue;
            }
            let reason = self.why_not(
                rule,
                route.as_ref().map(|r| &r.0),
                &req,
                method,
                winner.as_ref().map(|w| &self.rules[w.0]),
            );
            others.push((rule.name.clone(), reason));
        }
        let mut ex = Explanation {
            method: req.method.clone(),
            path: req.path.clone(),
            route: route
                .as_ref()
                .map(|(r, _)| format!("{}.{} ({} {})", r.plugin, r.operation, r.method, r.pattern)),
            rule: None,
            by_code: Vec::new(),
            emits: Vec::new(),
            others,
        };
        if let Some((r, _)) = &route {
            self.explain_code(r, &req, clock, &mut ex);
        }
        if let Some((i, _)) = winner {
            let rule = &self.rules[i];
            // The server's own decision function: same key, same skip reason, same TTL.
            let decision = rule.decide(&req, clock);
            let key = decision.as_ref().ok().map(|d| d.key.clone());
            ex.rule = Some(RuleExplanation {
                name: rule.name.clone(),
                file: rule.file.clone(),
                matched_by: rule.matcher.to_string(),
                cache: rule.cache,
                skip: decision.as_ref().err().copied(),
                ttl: key.as_deref().map(|k| rule.ttl(&req, clock, None, k)),
                key,
                tags: rule.tag_verdicts(&req, clock),
                store: rule.store,
                scope: rule.scope,
                methods: rule.methods.clone(),
                statuses: rule.statuses.clone(),
                invalidation: rule.invalidation(&req),
                client: rule.client,
                today: rule.has_conditions().then(|| {
                    let date = crate::expr::format_date(rule.local(clock).today());
                    match &rule.timezone {
                        Some(z) => format!("{date} in {z}"),
                        None => format!("{date} in UTC"),
                    }
                }),
            });
        }
        ex
    }

    /// What the route's handler does besides the route's own rule: named rules it caches
    /// under from code, and the events it emits (with what their triggers purge).
    fn explain_code(&self, r: &RouteInfo, req: &Request, clock: Clock, ex: &mut Explanation) {
        for named in self
            .catalog
            .named_rules
            .iter()
            .filter(|n| n.plugin == r.plugin && n.operations.contains(&r.operation))
        {
            let rule = self.rule(&named.rule);
            ex.by_code.push(CodeRuleExplanation {
                name: named.rule.clone(),
                key: named.key.clone(),
                ttl: rule.as_ref().map(|rule| rule.ttl(req, clock, None, "")),
                store: rule.as_ref().map(|rule| rule.store),
            });
        }
        for event in self
            .catalog
            .events
            .iter()
            .filter(|e| e.plugin == r.plugin && e.emitted_by.contains(&r.operation))
        {
            let purges: Vec<String> = self
                .triggers_by_event
                .get(&(event.plugin.clone(), event.name.clone()))
                .into_iter()
                .flatten()
                .map(|i| describe_templates(&self.triggers[*i].invalidate))
                .collect();
            let purges = if purges.is_empty() {
                "no trigger listens".to_owned()
            } else {
                format!("its triggers purge {}", purges.join("; "))
            };
            ex.emits
                .push((format!("{}.{}", event.plugin, event.name), purges));
        }
    }

    fn why_not(
        &self,
        rule: &Rule,
        route: Option<&Arc<RouteInfo>>,
        req: &Request,
        method: Option<Method>,
        winner: Option<&Arc<Rule>>,
    ) -> String {
        let outranked = |w: Option<&Arc<Rule>>| match w {
            Some(w) => format!(
                "also applies, but `{}` takes precedence ({})",
                w.name,
                precedence_reason(&w.matcher, &rule.matcher)
            ),
            None => "also applies, but loses on precedence".to_owned(),
        };
        match &rule.matcher {
            RuleMatch::Operation { plugin, operation } => match route {
                Some(r) if r.plugin == *plugin && r.operation == *operation => outranked(winner),
                Some(r) => format!(
                    "matches {plugin}.{operation}; this request is {}.{}",
                    r.plugin, r.operation
                ),
                None => {
                    format!("matches {plugin}.{operation}; no known route matches this request")
                }
            },
            RuleMatch::Plugin { plugin } => match route {
                Some(r) if r.plugin == *plugin => outranked(winner),
                Some(r) => format!("covers plugin {plugin}; this route belongs to {}", r.plugin),
                None => format!("covers plugin {plugin}; no known route matches this request"),
            },
            RuleMatch::Path {
                method: want,
                pattern,
                plugin,
            } => {
                if pattern.matches(&req.path).is_none() {
                    return format!("path `{pattern}` does not match `{}`", req.path);
                }
                if let Some(w) = want
                    && Some(*w) != method
                {
                    return format!("matches only {w}, this is {}", req.method);
                }
                if let (Some(p), Some(r)) = (plugin, route)
                    && r.plugin != *p
                {
                    return format!("covers plugin {p}; this route belongs to {}", r.plugin);
                }
                outranked(winner)
            }
            RuleMatch::Code => "matches no route: plugin code uses it by name".to_owned(),
        }
    }
}

fn precedence_reason(winner: &RuleMatch, loser: &RuleMatch) -> &'static str {
    match (winner, loser) {
        (RuleMatch::Operation { .. }, _) => "an operation match beats path and plugin matches",
        (RuleMatch::Path { .. }, RuleMatch::Plugin { .. }) => "a path match beats a plugin match",
        (RuleMatch::Path { .. }, RuleMatch::Path { .. }) => "its path is more specific",
        _ => "higher precedence",
    }
}

/// What `larder explain` prints.
#[derive(Debug, Clone)]
pub struct Explanation {
    /// Method of the request.
    pub method: String,
    /// Path of the request.
    pub path: String,
    /// The catalog route hit, as `plugin.operation (METHOD /template)`.
    pub route: Option<String>,
    /// The rule that applies.
    pub rule: Option<RuleExplanation>,
    /// Rules the route's handler caches under from code.
    pub by_code: Vec<CodeRuleExplanation>,
    /// Events the route emits on success, and what their triggers purge.
    pub emits: Vec<(String, String)>,
    /// Every other rule with the reason it does not apply.
    pub others: Vec<(String, String)>,
}

/// A rule the handler caches under from code (`get_or_load`), as the plugin declared it.
#[derive(Debug, Clone)]
pub struct CodeRuleExplanation {
    /// Rule name.
    pub name: String,
    /// How the plugin builds the key.
    pub key: String,
    /// The rule's TTL (`None` when no policy defines the rule: the plugin loads uncached).
    pub ttl: Option<TtlDecision>,
    /// Where entries live.
    pub store: Option<Store>,
}

/// The applying rule's verdict.
#[derive(Debug, Clone)]
pub struct RuleExplanation {
    /// Rule name.
    pub name: String,
    /// Its file.
    pub file: PathBuf,
    /// How it matched.
    pub matched_by: String,
    /// `false` for `cache: false`.
    pub cache: bool,
    /// Why the cache is skipped for this request, if it is.
    pub skip: Option<Skip>,
    /// The key.
    pub key: Option<String>,
    /// The TTL (without an origin max-age).
    pub ttl: Option<TtlDecision>,
    /// Every tag of the rule, with whether an entry stored now would carry it.
    pub tags: Vec<TagVerdict>,
    /// The store.
    pub store: Store,
    /// The scope.
    pub scope: Scope,
    /// Cacheable methods.
    pub methods: Vec<Method>,
    /// Cacheable statuses.
    pub statuses: Vec<u16>,
    /// What a 2xx response would purge.
    pub invalidation: Option<Invalidation>,
    /// What downstream caches are told.
    pub client: crate::rule::ClientCache,
    /// The date `today` is for the rule's conditions, and in which zone (`None` when the
    /// rule has no condition).
    pub today: Option<String>,
}

impl fmt::Display for Explanation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.method, self.path)?;
        writeln!(
            f,
            "  route:   {}",
            self.route.as_deref().unwrap_or("(no known route)")
        )?;
        match &self.rule {
            None if !self.by_code.is_empty() => writeln!(
                f,
                "  rule:    (none for the route: its handler caches from code)"
            )?,
            None => writeln!(f, "  rule:    (none: not cached)")?,
            Some(r) => {
                writeln!(
                    f,
                    "  rule:    {} ({}; {})",
                    r.name,
                    r.matched_by,
                    r.file.display()
                )?;
                match (&r.skip, r.cache) {
                    (_, false) => writeln!(f, "  cache:   off (`cache: false`)")?,
                    (Some(s), _) => writeln!(f, "  cache:   skipped: {s}")?,
                    (None, true) => writeln!(f, "  cache:   yes")?,
                }
                if r.cache {
                    if let Some(k) = &r.key {
                        writeln!(f, "  key:     {k}")?;
                    }
                    if let Some(t) = &r.ttl {
                        write!(f, "  ttl:     {} ({})", t.base, t.reason)?;
                        if !t.jitter.is_zero() {
                            write!(f, " + jitter {}", t.jitter)?;
                        }
                        writeln!(f)?;
                        writeln!(
                            f,
                            "  stale:   while-revalidate {}, if-error {}",
                            t.stale_while_revalidate, t.stale_if_error
                        )?;
                    }
                    if let Some(today) = &r.today {
                        writeln!(f, "  today:   {today}")?;
                    }
                    let tags = if r.tags.is_empty() {
                        "(none)".to_owned()
                    } else {
                        let tags: Vec<String> = r.tags.iter().map(describe_tag).collect();
                        tags.join(", ")
                    };
                    writeln!(f, "  tags:    {tags}")?;
                    writeln!(f, "  store:   {:?}, scope {:?}", r.store, r.scope).map(|_| ())?;
                    let c = r.client;
                    let reuse = match (c.revalidate, c.max_age) {
                        (true, _) => "no-cache (revalidate with the ETag)".to_owned(),
                        (false, Some(age)) => format!("max-age={}", age.as_secs()),
                        (false, None) => "max-age=<what is left of the TTL>".to_owned(),
                    };
                    writeln!(
                        f,
                        "  clients: Cache-Control: {}, {reuse}",
                        if c.private { "private" } else { "public" }
                    )?;
                    let methods: Vec<&str> = r.methods.iter().map(|m| m.as_str()).collect();
                    let statuses: Vec<String> = r.statuses.iter().map(u16::to_string).collect();
                    writeln!(
                        f,
                        "  caches:  {} → {}",
                        methods.join("/"),
                        statuses.join(", ")
                    )?;
                }
                if let Some(inv) = &r.invalidation {
                    writeln!(f, "  on 2xx:  purge {}", describe_invalidation(inv))?;
                }
            }
        }
        for code in &self.by_code {
            match &code.ttl {
                Some(t) => writeln!(
                    f,
                    "  by code: {} (ttl {}, store {:?}); key built by the plugin: {}",
                    code.name,
                    t.ttl(),
                    code.store.unwrap_or(Store::Hybrid),
                    code.key
                )?,
                None => writeln!(
                    f,
                    "  by code: {} (no policy defines it: the plugin loads uncached); key built by the plugin: {}",
                    code.name, code.key
                )?,
            }
        }
        for (event, purges) in &self.emits {
            writeln!(f, "  emits:   {event} on success; {purges}")?;
        }
        if !self.others.is_empty() {
            writeln!(f, "  other rules:")?;
            for (name, why) in &self.others {
                writeln!(f, "    {name}: {why}")?;
            }
        }
        Ok(())
    }
}

/// `revenue:acme`, or for a conditional tag `revenue-open:acme (if COND: holds)` /
/// `(if COND: does not hold, left out)`.
fn describe_tag(t: &TagVerdict) -> String {
    match &t.condition {
        None => t.tag.clone(),
        Some(c) if t.attached => format!("{} (if {c}: holds)", t.tag),
        Some(c) => format!("{} (if {c}: does not hold, left out)", t.tag),
    }
}

/// An invalidation's templates in one line: `tags [slots:{event.barber_id}, ...]`.
fn describe_templates(t: &InvalidationTemplates) -> String {
    let mut parts = Vec::new();
    if t.all {
        parts.push("everything".to_owned());
    }
    for (name, list) in [
        ("tags", &t.tags),
        ("keys", &t.keys),
        ("patterns", &t.patterns),
    ] {
        if !list.is_empty() {
            let items: Vec<&str> = list.iter().map(|t| t.as_str()).collect();
            parts.push(format!("{name} [{}]", items.join(", ")));
        }
    }
    parts.join(", ")
}

/// `tags [a, b], keys [..], patterns [..]` in one line.
pub fn describe_invalidation(inv: &Invalidation) -> String {
    let mut parts = Vec::new();
    if inv.all {
        parts.push("everything".to_owned());
    }
    for (name, list) in [
        ("tags", &inv.tags),
        ("keys", &inv.keys),
        ("patterns", &inv.patterns),
    ] {
        if !list.is_empty() {
            parts.push(format!("{name} [{}]", list.join(", ")));
        }
    }
    if !inv.skipped.is_empty() {
        parts.push(format!(
            "skipped (missing values) [{}]",
            inv.skipped.join(", ")
        ));
    }
    if parts.is_empty() {
        "nothing".into()
    } else {
        parts.join("; ")
    }
}

pub(crate) fn route_info(r: &CatalogRoute) -> Option<RouteInfo> {
    Some(RouteInfo {
        plugin: r.plugin.clone(),
        operation: r.operation.clone(),
        method: r.method.to_ascii_uppercase(),
        pattern: PathPattern::parse(&r.path).ok()?,
    })
}
