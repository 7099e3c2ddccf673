//! Rules: each `rules:` entry compiled into a [`Rule`], with the settings it leaves out
//! taken from `defaults`.

use super::defaults::ResolvedDefaults;
use super::matcher::covers;
use super::templates::{RouteParams, VarScope};
use super::{Compiler, Origin};
use crate::compression::Compression;
use crate::diag::did_you_mean;
use crate::policy::RouteInfo;
use crate::rule::{ClientCache, JsonOptions, Rule, RuleMatch, RuleTag, TtlPolicy, Zone};
use crate::source::FieldPath;
use crate::spec::{CompressionOverride, RuleSpec, Scope, TagSpec, TtlSpec};
use crate::template::{Template, TemplateContext};
use crate::units::Duration;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// What every rule inherits from the set: the set-wide sections and the catalog's routes.
pub(super) struct RuleContext<'a> {
    pub(super) defaults: &'a ResolvedDefaults,
    pub(super) classes: &'a BTreeMap<String, Duration>,
    pub(super) compression: &'a Arc<Compression>,
    pub(super) routes: &'a [Arc<RouteInfo>],
    /// What the set's key and pattern invalidations can reach ([`Purges`]).
    pub(super) purges: &'a Purges,
}

/// The literal starts of every key and pattern a rule or trigger of the set purges, for the
/// client-facing default: an entry a purge can reach must not be kept by clients unasked.
#[derive(Debug, Default)]
pub(super) struct Purges {
    /// Some invalidation says `all: true`.
    all: bool,
    starts: Vec<String>,
}

impl Purges {
    pub(super) fn of(specs: &[&crate::spec::PolicyFile]) -> Purges {
        let mut purges = Purges::default();
        let invalidations = specs.iter().flat_map(|s| {
            s.rules
                .iter()
                .filter_map(|r| r.invalidate.as_ref())
                .chain(s.triggers.iter().map(|t| &t.invalidate))
        });
        for inv in invalidations {
            purges.all |= inv.all;
            for t in inv.keys.iter().chain(&inv.patterns) {
                purges.starts.push(literal_start(&t.0).to_owned());
            }
        }
        purges
    }

    /// Whether some key or pattern purge may reach keys rendered from `key`: their literal
    /// starts agree as far as both go.
    fn may_reach(&self, key: &str) -> bool {
        let key = literal_start(key);
        self.all
            || self
                .starts
                .iter()
                .any(|s| s.starts_with(key) || key.starts_with(s.as_str()))
    }
}

/// The single distinct name of `names`, if there is exactly one.
fn one<'a>(names: impl Iterator<Item = &'a str>) -> Option<String> {
    let mut found: Option<&str> = None;
    for n in names {
        match found {
            None => found = Some(n),
            Some(f) if f != n => return None,
            Some(_) => {}
        }
    }
    found.map(str::to_owned)
}

/// The text before a template's first variable or a pattern's first wildcard.
fn literal_start(text: &str) -> &str {
    let end = text.find(['{', '*', '?', '[']).unwrap_or(text.len());
    &text[..end]
}

impl Compiler<'_> {
    /// The rules of all files, in file order, each with where its `match` is written.
    /// Rule names are unique across the set: they name rules in metrics, logs and
    /// plugin code.
    pub(super) fn compile_rules(&mut self, cx: &RuleContext) -> Vec<(Rule, Origin)> {
        let mut rules = Vec::new();
        let mut rule_origin: HashMap<String, Origin> = HashMap::new();
        for f in 0..self.files.len() {
            let specs = self.files[f].spec.rules.clone();
            for (i, r) in specs.iter().enumerate() {
                let at = FieldPath::root().at("rules").at(i);
                if let Some(first) = rule_origin.get(&r.name) {
                    let hint = Some(format!(
                        "first defined at {}; rule names must be unique",
                        self.where_is(first)
                    ));
                    self.err(
                        f,
                        &at.at("name"),
                        format!("duplicate rule name `{}`", r.name),
                        hint,
                    );
                    continue;
                }
                rule_origin.insert(r.name.clone(), (f, at.at("name")));
                if let Some(rule) = self.compile_rule(f, &at, r, cx) {
                    rules.push((rule, (f, at.at("match"))));
                }
            }
        }
        rules
    }

    fn compile_rule(
        &mut self,
        f: usize,
        at: &FieldPath,
        r: &RuleSpec,
        cx: &RuleContext,
    ) -> Option<Rule> {
        let d = cx.defaults;
        let m_at = at.at("match");
        let matcher = match &r.matcher {
            Some(m) => self.compile_match(f, &m_at, m)?,
            None => RuleMatch::Code,
        };
        let covered = self.covered_routes(f, &m_at, &matcher, cx.routes)?;
        let covered_refs: Vec<&RouteParams> = covered.iter().collect();
        let reads = VarScope {
            ctx: TemplateContext::Request,
            routes: &covered_refs,
        };

        let methods = r.methods.clone().unwrap_or_else(|| d.methods.clone());
        let cache = r.cache.unwrap_or(true);
        let before = self.diags.len();
        let key = match &r.key {
            Some(k) => self
                .template(f, &at.at("key"), &k.0, reads)
                .unwrap_or_default(),
            None => {
                let body = methods.iter().any(|m| m.has_body());
                let text = if body {
                    "{plugin}:{operation}:{path}:{query}:{hash(body)}"
                } else {
                    "{plugin}:{operation}:{path}:{query}"
                };
                Template::parse(text).ok()?
            }
        };
        if key.literal_text().contains('#') {
            self.err(
                f,
                &at.at("key"),
                "`#` is reserved in keys: Larder appends the scope and vary parts after it (`#t=`, `#u=`, `#v=`)",
                Some("use another separator, e.g. `:`".into()),
            );
        }
        if cache
            && let Some(m) = methods.iter().find(|m| m.has_body())
            && !key.reads_body()
        {
            let hint = Some("add `{hash(body)}`, `{body.FIELD}` or `{params}` to the key, so different bodies get different entries".into());
            let where_ = if r.methods.is_some() {
                at.at("methods")
            } else {
                at.at("key")
            };
            self.err(
                f,
                &where_,
                format!("{m} responses are cached but the key does not read the body"),
                hint,
            );
        }
        let tags = self.rule_tags(f, &at.at("tags"), &r.tags, reads);
        let ttl = self.rule_ttl(f, &at.at("ttl"), r.ttl.as_ref(), cx, &covered_refs);
        let bypass_no_cache = r.bypass.as_ref().map_or(d.bypass_no_cache, |b| b.no_cache);
        let bypass_when = match r.bypass.as_ref().and_then(|b| b.when.as_ref()) {
            Some(w) => self.expr(f, &at.at("bypass").at("when"), &w.0, &covered_refs),
            None if r.bypass.is_some() => None,
            None => d.bypass_when.clone(),
        };
        let compression = rule_compression(cx.compression, r.compression.as_ref());
        let invalidate = r
            .invalidate
            .as_ref()
            .map(|i| self.invalidation(f, &at.at("invalidate"), i, reads));
        let scope = r.scope.unwrap_or(d.scope);
        let purgeable = !tags.is_empty() || cx.purges.may_reach(key.as_str());
        let client = self.client(f, &at.at("client"), r, scope, purgeable);
        let timezone = self.rule_zone(f, at, r, &matcher, cx);
        if self.diags.len() > before {
            return None;
        }
        Some(Rule {
            name: r.name.clone(),
            description: r.description.clone(),
            file: self.files[f].path.clone(),
            matcher,
            cache,
            key,
            tags,
            ttl,
            stale_while_revalidate: r.stale_while_revalidate.unwrap_or(d.swr),
            stale_if_error: r.stale_if_error.unwrap_or(d.sie),
            methods,
            statuses: r.statuses.clone().unwrap_or_else(|| d.statuses.clone()),
            max_size: r.max_size.unwrap_or(d.max_size),
            store: r.store.unwrap_or(d.store),
            scope,
            vary: r.vary.iter().map(|h| h.to_ascii_lowercase()).collect(),
            bypass_no_cache,
            bypass_when,
            json: r
                .json
                .as_ref()
                .map(|j| JsonOptions {
                    compact: j.compact,
                    strip_nulls: j.strip_nulls,
                })
                .unwrap_or(d.json),
            ignore_origin_no_store: r.ignore_origin_no_store,
            compression,
            invalidate,
            client,
            timezone,
        })
    }

    /// The zone a rule's conditions read dates in: its own `timezone`, else the zone of the
    /// one plugin whose routes (or, for a rule used by name, whose code) it serves, else
    /// `defaults.timezone`; `None` for UTC.
    fn rule_zone(
        &mut self,
        f: usize,
        at: &FieldPath,
        r: &RuleSpec,
        matcher: &RuleMatch,
        cx: &RuleContext,
    ) -> Option<Zone> {
        if let Some(z) = &r.timezone {
            return self.zone(f, &at.at("timezone"), &z.0, "rule");
        }
        let plugin = match matcher {
            RuleMatch::Operation { plugin, .. } | RuleMatch::Plugin { plugin } => {
                Some(plugin.clone())
            }
            RuleMatch::Path {
                plugin: Some(plugin),
                ..
            } => Some(plugin.clone()),
            RuleMatch::Path { plugin: None, .. } => one(cx
                .routes
                .iter()
                .filter(|ri| covers(matcher, ri))
                .map(|ri| ri.plugin.as_str())),
            RuleMatch::Code => one(self.catalog.into_iter().flat_map(|c| {
                c.named_rules
                    .iter()
                    .filter(|n| n.rule == r.name)
                    .map(|n| n.plugin.as_str())
            })),
        };
        let zone = plugin.and_then(|p| {
            let name = self.catalog?.time_zones.get(&p)?.clone();
            Some((p, name))
        });
        match zone {
            Some((plugin, name)) => {
                self.zone(f, &at.at("match"), &name, &format!("plugin {plugin}"))
            }
            None => cx.defaults.timezone.clone(),
        }
    }

    /// A rule's tags; a conditional tag's condition is checked like a `ttl.when` one.
    fn rule_tags(
        &mut self,
        f: usize,
        at: &FieldPath,
        specs: &[TagSpec],
        reads: VarScope,
    ) -> Vec<RuleTag> {
        let mut tags = Vec::new();
        for (i, spec) in specs.iter().enumerate() {
            let t_at = at.at(i);
            let tag = match spec {
                TagSpec::Always(t) => {
                    self.template(f, &t_at, &t.0, reads)
                        .map(|template| RuleTag {
                            template,
                            condition: None,
                        })
                }
                TagSpec::When(c) => {
                    let template = self.template(f, &t_at.at("tag"), &c.tag.0, reads);
                    let condition = self.expr(f, &t_at.at("if"), &c.condition.0, reads.routes);
                    template
                        .zip(condition)
                        .map(|(template, condition)| RuleTag {
                            template,
                            condition: Some(condition),
                        })
                }
            };
            tags.extend(tag);
        }
        tags
    }

    /// What downstream caches are told: the rule's `client` over the safe defaults.
    fn client(
        &mut self,
        f: usize,
        at: &FieldPath,
        r: &RuleSpec,
        scope: Scope,
        purgeable: bool,
    ) -> ClientCache {
        let spec = r.client.clone().unwrap_or_default();
        let scoped = scope != Scope::Public;
        if scoped && spec.private == Some(false) {
            self.err(
                f,
                &at.at("private"),
                format!(
                    "a `{}`-scoped rule's answers belong to one principal; shared caches must not keep them",
                    scope.as_str()
                ),
                Some("remove `private: false`, or make the rule `scope: public`".into()),
            );
        }
        if spec.revalidate == Some(true) && spec.max_age.is_some() {
            self.err(
                f,
                &at.at("revalidate"),
                "set `max_age` or `revalidate: true`, not both",
                Some("`revalidate` makes every reuse ask (`no-cache`), which leaves no `max-age` to give".into()),
            );
        }
        ClientCache {
            private: spec.private.unwrap_or(false) || scoped,
            max_age: spec.max_age,
            revalidate: spec
                .revalidate
                .unwrap_or(purgeable && spec.max_age.is_none()),
        }
    }

    /// The routes a rule covers, whose path parameters its templates may read. With a
    /// catalog, a `path` match that reaches no route is an error (`None`); without one,
    /// the template's own parameters are all we know.
    fn covered_routes(
        &mut self,
        f: usize,
        m_at: &FieldPath,
        matcher: &RuleMatch,
        routes: &[Arc<RouteInfo>],
    ) -> Option<Vec<RouteParams>> {
        Some(match (self.catalog, matcher) {
            (Some(_), _) => {
                let covered: Vec<RouteParams> = routes
                    .iter()
                    .filter(|ri| covers(matcher, ri))
                    .map(|ri| RouteParams::of(ri))
                    .collect();
                if covered.is_empty()
                    && let RuleMatch::Path {
                        pattern, method, ..
                    } = matcher
                {
                    let mut all: Vec<&str> = routes.iter().map(|r| r.pattern.as_str()).collect();
                    all.dedup();
                    let hint = did_you_mean(pattern.as_str(), all.iter().copied())
                        .or_else(|| Some("`larder openapi` lists the routes".into()));
                    let m = method.map(|m| format!("{m} ")).unwrap_or_default();
                    self.err(
                        f,
                        &m_at.at("path"),
                        format!("no route matches `{m}{pattern}`"),
                        hint,
                    );
                    return None;
                }
                covered
            }
            (None, RuleMatch::Path { pattern, .. }) => vec![RouteParams {
                label: pattern.to_string(),
                params: pattern.params().map(str::to_owned).collect(),
            }],
            (None, _) => Vec::new(),
        })
    }

    /// A rule's TTL: `defaults` (or the built-in TTL) unless the rule sets its own base,
    /// plus its `when` conditions, origin bounds and jitter.
    fn rule_ttl(
        &mut self,
        f: usize,
        t_at: &FieldPath,
        spec: Option<&TtlSpec>,
        cx: &RuleContext,
        routes: &[&RouteParams],
    ) -> TtlPolicy {
        let (d, classes) = (cx.defaults, cx.classes);
        let mut ttl = TtlPolicy {
            base: d.ttl,
            base_source: d.ttl_source.clone(),
            when: Vec::new(),
            from_origin: None,
            jitter: d.jitter,
        };
        match spec {
            None => {}
            Some(TtlSpec::Short(t)) => {
                if let Some((dur, src)) = self.ttl_value(f, t_at, &t.0, classes) {
                    ttl.base = dur;
                    ttl.base_source = src;
                }
            }
            Some(TtlSpec::Full(o)) => {
                match (&o.class, o.duration) {
                    (Some(_), Some(_)) => self.err(
                        f,
                        &t_at.at("duration"),
                        "set `class` or `duration`, not both",
                        None,
                    ),
                    (Some(c), None) => {
                        if let Some((dur, src)) = self.ttl_value(f, &t_at.at("class"), c, classes) {
                            ttl.base = dur;
                            ttl.base_source = src;
                        }
                    }
                    (None, Some(dur)) => {
                        ttl.base = dur;
                        ttl.base_source = "rule".into();
                    }
                    (None, None) => {}
                }
                for (i, w) in o.when.iter().enumerate() {
                    let w_at = t_at.at("when").at(i);
                    let cond = self.expr(f, &w_at.at("if"), &w.condition.0, routes);
                    let value = self.ttl_value(f, &w_at.at("ttl"), &w.ttl.0, classes);
                    if let (Some(c), Some((v, _))) = (cond, value) {
                        ttl.when.push((c, v));
                    }
                }
                if let Some(fo) = &o.from_origin {
                    let min = fo.min.unwrap_or(Duration::ZERO);
                    if let Some(max) = fo.max
                        && max < min
                    {
                        self.err(
                            f,
                            &t_at.at("from_origin").at("max"),
                            format!("max {max} is below min {min}"),
                            None,
                        );
                    }
                    ttl.from_origin = Some((min, fo.max));
                }
                if o.jitter.is_some() {
                    ttl.jitter = o.jitter;
                }
            }
        }
        ttl
    }
}

/// The set's compression with a rule's override applied. Rules without one share the
/// set's settings instead of copying them.
fn rule_compression(
    global: &Arc<Compression>,
    rule: Option<&CompressionOverride>,
) -> Arc<Compression> {
    match rule {
        None | Some(CompressionOverride::Enabled(true)) => global.clone(),
        Some(CompressionOverride::Enabled(false)) => Arc::new(Compression {
            enabled: false,
            ..(**global).clone()
        }),
        Some(CompressionOverride::Override(o)) => Arc::new(global.overridden(o)),
    }
}
