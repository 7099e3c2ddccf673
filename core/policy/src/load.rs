//! Loading: files → YAML trees → schema validation → typed specs → compiled [`PolicySet`].
//!
//! Every stage collects problems instead of stopping (Vector's `compile` style): a set with
//! one bad file still reports the other files' mistakes, and one file reports all of its
//! own. Checks that need to know the server (routes, events, warm sources) run only when a
//! [`Catalog`] is given.

use crate::catalog::{Catalog, CatalogRoute};
use crate::compression::Compression;
use crate::diag::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::expr::Expr;
use crate::path::PathPattern;
use crate::policy::{PolicySet, RouteInfo, Trigger, route_info};
use crate::rule::{InvalidationTemplates, JsonOptions, Rule, RuleMatch, TtlPolicy};
use crate::source::{self, FieldPath, SpannedNode};
use crate::spec::{
    self, CompressionOverride, Defaults, InvalidateSpec, Method, ParamScalar, ParamValues,
    PolicyFile, Scope, Store, TtlSpec, WarmRequestSpec,
};
use crate::template::{Template, TemplateContext, Var};
use crate::units::{Duration, Size};
use crate::warming::{ParamGen, WarmJob, WarmSource, WarmTemplate};
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// TTL of rules when neither the rule nor `defaults` set one.
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// Largest cacheable body when neither the rule nor `defaults` set one.
pub const DEFAULT_MAX_SIZE: Size = Size::from_bytes(8 << 20);

impl PolicySet {
    /// Loads every `*.yaml` / `*.yml` file of `dir` (sorted by name, not recursive).
    pub fn load_dir(dir: &Path, catalog: Option<&Catalog>) -> Result<PolicySet, Diagnostics> {
        let files = policy_files(dir).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                dir,
                Location::default(),
                format!("cannot read the policy folder: {e}"),
            )])
        })?;
        Self::load_files(&files, catalog)
    }

    /// Loads the given files.
    pub fn load_files(
        files: &[PathBuf],
        catalog: Option<&Catalog>,
    ) -> Result<PolicySet, Diagnostics> {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in files {
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((f.clone(), text)),
                Err(e) => diags.push(Diagnostic::new(
                    f,
                    Location::default(),
                    format!("cannot read file: {e}"),
                )),
            }
        }
        let result = Self::load_sources(&sources, catalog);
        match result {
            Ok(set) if diags.is_empty() => Ok(set),
            Ok(_) => Err(finish(diags)),
            Err(d) => {
                diags.extend(d.0);
                Err(finish(diags))
            }
        }
    }

    /// Loads in-memory sources `(file name, YAML text)`.
    pub fn load_sources(
        sources: &[(PathBuf, String)],
        catalog: Option<&Catalog>,
    ) -> Result<PolicySet, Diagnostics> {
        let mut cx = Compiler::new(catalog);
        for (path, text) in sources {
            cx.parse_file(path, text);
        }
        cx.compile()
    }
}

/// The `*.yaml`/`*.yml` files of `dir`, sorted.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_file() && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Checks one file on its own (syntax, schema, references inside the file) without a
/// catalog. For editors and repo tests.
pub fn check_file(path: &Path) -> Result<(), Diagnostics> {
    PolicySet::load_files(&[path.to_path_buf()], None).map(|_| ())
}

fn finish(mut d: Vec<Diagnostic>) -> Diagnostics {
    let mut d = {
        d.sort_by(|a, b| (&a.file, a.location).cmp(&(&b.file, b.location)));
        d.dedup();
        Diagnostics(d)
    };
    d.sort();
    d
}

struct File {
    path: PathBuf,
    text: String,
    tree: SpannedNode,
    spec: PolicyFile,
}

struct Compiler<'c> {
    catalog: Option<&'c Catalog>,
    files: Vec<File>,
    diags: Vec<Diagnostic>,
}

/// Where something was defined, for "first defined at" hints.
type Origin = (usize, FieldPath);

struct ResolvedDefaults {
    ttl: Duration,
    ttl_source: String,
    swr: Duration,
    sie: Duration,
    jitter: Option<crate::units::Jitter>,
    store: Store,
    scope: Scope,
    methods: Vec<Method>,
    statuses: Vec<u16>,
    max_size: Size,
    bypass_no_cache: bool,
    bypass_when: Option<Expr>,
    json: JsonOptions,
}

impl<'c> Compiler<'c> {
    fn new(catalog: Option<&'c Catalog>) -> Self {
        Compiler {
            catalog,
            files: Vec::new(),
            diags: Vec::new(),
        }
    }

    fn diag_at(
        &mut self,
        path: &Path,
        text: &str,
        location: Location,
        message: String,
        hint: Option<String>,
    ) {
        let source_line = (location.line > 0)
            .then(|| {
                text.lines()
                    .nth(location.line as usize - 1)
                    .map(str::to_owned)
            })
            .flatten();
        self.diags.push(Diagnostic {
            file: path.to_path_buf(),
            location,
            message,
            hint,
            source_line,
        });
    }

    /// An error at `path` in file `f`.
    fn err(&mut self, f: usize, at: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let file = &self.files[f];
        let location = source::locate(&file.tree, at);
        let (p, t) = (file.path.clone(), file.text.clone());
        self.diag_at(&p, &t, location, message.into(), hint);
    }

    fn where_is(&self, o: &Origin) -> String {
        let file = &self.files[o.0];
        let l = source::locate(&file.tree, &o.1);
        format!("{}:{}:{}", file.path.display(), l.line, l.col)
    }

    fn parse_file(&mut self, path: &Path, text: &str) {
        let tree = match source::parse(text) {
            Ok(t) => t,
            Err(e) => {
                return self.diag_at(
                    path,
                    text,
                    e.location,
                    format!("invalid YAML: {}", e.message),
                    None,
                );
            }
        };
        if matches!(tree.value, source::Node::Null) {
            return self.diag_at(
                path,
                text,
                Location { line: 1, col: 1 },
                "empty policy file".into(),
                Some("start the file with `version: 1`".into()),
            );
        }
        let schema = spec::json_schema();
        let violations = crate::schema::validate(&tree, &schema);
        let mut tree = tree;
        if !violations.is_empty() {
            let paths: Vec<(FieldPath, Option<String>)> = violations
                .iter()
                .map(|v| (v.path.clone(), v.unknown_field.clone()))
                .collect();
            for v in violations {
                self.diag_at(path, text, v.location, v.message, v.hint);
            }
            // Compile what is left so its own mistakes are reported too; the load fails
            // anyway because diagnostics exist.
            if !source::prune(&mut tree, &paths)
                || !crate::schema::validate(&tree, &schema).is_empty()
            {
                return;
            }
        }
        let partial = !self.diags.is_empty();
        match serde_json::from_value::<PolicyFile>(source::to_json(&tree.value)) {
            Err(_) if partial => {}
            Ok(spec) => self.files.push(File {
                path: path.to_path_buf(),
                text: text.to_owned(),
                tree,
                spec,
            }),
            Err(e) => self.diag_at(
                path,
                text,
                Location { line: 1, col: 1 },
                e.to_string(),
                None,
            ),
        }
    }

    fn compile(mut self) -> Result<PolicySet, Diagnostics> {
        let mut set = PolicySet {
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            ..PolicySet::default()
        };
        for f in 0..self.files.len() {
            if self.files[f].spec.version != 1 {
                let v = self.files[f].spec.version;
                self.err(
                    f,
                    &FieldPath::root().at("version"),
                    format!("unsupported policy version {v}"),
                    Some("this Larder reads `version: 1`".into()),
                );
            }
        }
        // TTL classes, shared by all files.
        let mut class_origin: HashMap<String, Origin> = HashMap::new();
        for f in 0..self.files.len() {
            let classes: Vec<(String, Duration)> =
                self.files[f].spec.ttl_classes.clone().into_iter().collect();
            for (name, d) in classes {
                let at = FieldPath::root().at("ttl_classes").at(name.as_str());
                if let Some(first) = class_origin.get(&name) {
                    let hint = Some(format!("first defined at {}", self.where_is(first)));
                    self.err(f, &at, format!("TTL class `{name}` is defined twice"), hint);
                    continue;
                }
                class_origin.insert(name.clone(), (f, at));
                set.ttl_classes.insert(name, d);
            }
        }
        // Set-wide singletons.
        let defaults_file = self.singleton(|s| s.defaults.is_some(), "defaults");
        let compression_file = self.singleton(|s| s.compression.is_some(), "compression");
        let defaults = self.resolve_defaults(defaults_file, &set.ttl_classes);
        let global_compression = Arc::new(match compression_file {
            Some(f) => Compression::default().overridden(
                self.files[f]
                    .spec
                    .compression
                    .as_ref()
                    .unwrap_or(&Default::default()),
            ),
            None => Compression::default(),
        });
        set.compression = global_compression.clone();

        // Catalog routes.
        let mut routes: Vec<Arc<RouteInfo>> = Vec::new();
        if let Some(cat) = self.catalog {
            for r in &cat.routes {
                if let Some(info) = route_info(r) {
                    routes.push(Arc::new(info));
                }
            }
        }

        // Rules.
        let mut rule_origin: HashMap<String, Origin> = HashMap::new();
        let mut rule_at: Vec<Origin> = Vec::new();
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
                if let Some(rule) = self.compile_rule(
                    f,
                    &at,
                    r,
                    &defaults,
                    &set.ttl_classes,
                    &global_compression,
                    &routes,
                ) {
                    set.by_name.insert(rule.name.clone(), set.rules.len());
                    set.rules.push(Arc::new(rule));
                    rule_at.push((f, at.at("match")));
                }
            }
        }
        self.index_rules(&mut set, &routes, &rule_at);

        // Triggers.
        for f in 0..self.files.len() {
            let specs = self.files[f].spec.triggers.clone();
            for (i, t) in specs.iter().enumerate() {
                let at = FieldPath::root().at("triggers").at(i);
                if let Some(trigger) = self.compile_trigger(f, &at, t) {
                    let key = (trigger.plugin.clone(), trigger.event.clone());
                    set.triggers_by_event
                        .entry(key)
                        .or_default()
                        .push(set.triggers.len());
                    set.triggers.push(Arc::new(trigger));
                }
            }
        }

        // Warming.
        let mut job_origin: HashMap<String, Origin> = HashMap::new();
        for f in 0..self.files.len() {
            let specs = self.files[f].spec.warming.clone();
            for (i, w) in specs.iter().enumerate() {
                let at = FieldPath::root().at("warming").at(i);
                if let Some(first) = job_origin.get(&w.name) {
                    let hint = Some(format!("first defined at {}", self.where_is(first)));
                    self.err(
                        f,
                        &at.at("name"),
                        format!("duplicate warming job `{}`", w.name),
                        hint,
                    );
                    continue;
                }
                job_origin.insert(w.name.clone(), (f, at.at("name")));
                if let Some(job) = self.compile_warm(f, &at, w, &set) {
                    set.warming.push(Arc::new(job));
                }
            }
        }

        if self.diags.is_empty() {
            Ok(set)
        } else {
            Err(finish(self.diags))
        }
    }

    /// The one file that has a set-wide section, reporting the others.
    fn singleton(&mut self, has: impl Fn(&PolicyFile) -> bool, section: &str) -> Option<usize> {
        let mut first: Option<usize> = None;
        for f in 0..self.files.len() {
            if !has(&self.files[f].spec) {
                continue;
            }
            match first {
                None => first = Some(f),
                Some(g) => {
                    let hint = Some(format!(
                        "`{section}` is set-wide and already set at {}; keep one",
                        self.where_is(&(g, FieldPath::root().at(section)))
                    ));
                    self.err(
                        f,
                        &FieldPath::root().at(section),
                        format!("`{section}` defined in more than one file"),
                        hint,
                    );
                }
            }
        }
        first
    }

    fn ttl_value(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        classes: &BTreeMap<String, Duration>,
    ) -> Option<(Duration, String)> {
        let t = text.trim();
        if t.starts_with(|c: char| c.is_ascii_digit()) {
            return t.parse::<Duration>().ok().map(|d| (d, format!("{d}")));
        }
        match classes.get(t) {
            Some(d) => Some((*d, format!("class {t}"))),
            None => {
                let hint = did_you_mean(t, classes.keys().map(String::as_str)).or_else(|| {
                    if classes.is_empty() {
                        Some(
                            "define it under `ttl_classes:` or write a duration such as `5m`"
                                .into(),
                        )
                    } else {
                        Some(format!(
                            "known classes: {}",
                            classes.keys().cloned().collect::<Vec<_>>().join(", ")
                        ))
                    }
                });
                self.err(f, at, format!("unknown TTL class `{t}`"), hint);
                None
            }
        }
    }

    fn resolve_defaults(
        &mut self,
        file: Option<usize>,
        classes: &BTreeMap<String, Duration>,
    ) -> ResolvedDefaults {
        let d: Defaults = file
            .and_then(|f| self.files[f].spec.defaults.clone())
            .unwrap_or_default();
        let at = FieldPath::root().at("defaults");
        let (ttl, ttl_source) = match (&d.ttl, file) {
            (Some(t), Some(f)) => self
                .ttl_value(f, &at.at("ttl"), &t.0, classes)
                .map(|(d, s)| (d, format!("defaults ({s})")))
                .unwrap_or((DEFAULT_TTL, "built-in default".into())),
            _ => (DEFAULT_TTL, "built-in default".into()),
        };
        let bypass_when = match (&d.bypass, file) {
            (Some(b), Some(f)) => b
                .when
                .as_ref()
                .and_then(|w| self.expr(f, &at.at("bypass").at("when"), &w.0, &[])),
            _ => None,
        };
        ResolvedDefaults {
            ttl,
            ttl_source,
            swr: d.stale_while_revalidate.unwrap_or(Duration::ZERO),
            sie: d.stale_if_error.unwrap_or(Duration::ZERO),
            jitter: d.jitter,
            store: d.store.unwrap_or(Store::Hybrid),
            scope: d.scope.unwrap_or(Scope::Public),
            methods: d.methods.unwrap_or_else(|| vec![Method::Get, Method::Head]),
            statuses: d.statuses.unwrap_or_else(|| vec![200]),
            max_size: d.max_size.unwrap_or(DEFAULT_MAX_SIZE),
            bypass_no_cache: d.bypass.as_ref().is_some_and(|b| b.no_cache),
            bypass_when,
            json: d
                .json
                .map(|j| JsonOptions {
                    compact: j.compact,
                    strip_nulls: j.strip_nulls,
                })
                .unwrap_or_default(),
        }
    }

    /// Parses a template and checks its variables against the context and route params.
    fn template(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        ctx: TemplateContext,
        routes: &[&RouteParams],
    ) -> Option<Template> {
        let t = match Template::parse(text) {
            Ok(t) => t,
            Err(e) => {
                self.err(f, at, format!("bad template `{text}`: {}", e.message), None);
                return None;
            }
        };
        let vars: Vec<Var> = t.vars().map(|v| v.var.clone()).collect();
        let ok = self.check_vars(f, at, text, &vars, ctx, routes);
        ok.then_some(t)
    }

    fn expr(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        routes: &[&RouteParams],
    ) -> Option<Expr> {
        let e = match Expr::parse(text) {
            Ok(e) => e,
            Err(e) => {
                self.err(
                    f,
                    at,
                    format!(
                        "bad condition `{text}`: {} (at character {})",
                        e.message,
                        e.offset + 1
                    ),
                    None,
                );
                return None;
            }
        };
        let vars: Vec<Var> = e.vars().into_iter().cloned().collect();
        let ok = self.check_vars(f, at, text, &vars, TemplateContext::Request, routes);
        ok.then_some(e)
    }

    fn check_vars(
        &mut self,
        f: usize,
        at: &FieldPath,
        text: &str,
        vars: &[Var],
        ctx: TemplateContext,
        routes: &[&RouteParams],
    ) -> bool {
        let mut ok = true;
        for v in vars {
            if !v.allowed_in(ctx) {
                ok = false;
                let (msg, hint) = match ctx {
                    TemplateContext::Event => (
                        format!(
                            "`{{{v}}}` in `{text}`: a trigger has no request; it can read event fields only"
                        ),
                        Some("write `{event.FIELD}`".to_owned()),
                    ),
                    TemplateContext::Request => (
                        format!("`{{{v}}}` in `{text}`: event fields exist only in `triggers:`"),
                        None,
                    ),
                };
                self.err(f, at, msg, hint);
                continue;
            }
            let Some(p) = v.path_param() else { continue };
            for r in routes {
                if !r.params.iter().any(|x| x == p) {
                    ok = false;
                    let hint = did_you_mean(p, r.params.iter().map(String::as_str)).or_else(|| {
                        Some(if r.params.is_empty() {
                            "that route has no path parameters".to_owned()
                        } else {
                            format!("its parameters: {}", r.params.join(", "))
                        })
                    });
                    self.err(
                        f,
                        at,
                        format!(
                            "`{{path.{p}}}` in `{text}`: route {} has no path parameter `{p}`",
                            r.label
                        ),
                        hint,
                    );
                    break;
                }
            }
        }
        ok
    }

    fn invalidation(
        &mut self,
        f: usize,
        at: &FieldPath,
        spec: &InvalidateSpec,
        ctx: TemplateContext,
        routes: &[&RouteParams],
    ) -> InvalidationTemplates {
        let mut out = InvalidationTemplates {
            all: spec.all,
            ..Default::default()
        };
        for (name, list) in [
            ("tags", &spec.tags),
            ("keys", &spec.keys),
            ("patterns", &spec.patterns),
        ] {
            for (i, t) in list.iter().enumerate() {
                let p = at.at(name).at(i);
                let Some(tpl) = self.template(f, &p, &t.0, ctx, routes) else {
                    continue;
                };
                if name == "patterns" {
                    let lit = tpl.literal_text();
                    let only_wild = tpl
                        .segments()
                        .iter()
                        .all(|s| matches!(s, crate::template::Segment::Lit(_)))
                        && lit.chars().all(|c| matches!(c, '*' | '?' | ':' | ' '));
                    if only_wild {
                        self.err(
                            f,
                            &p,
                            format!("pattern `{}` would purge everything", t.0),
                            Some("write `all: true` to purge everything on purpose".into()),
                        );
                        continue;
                    }
                }
                match name {
                    "tags" => out.tags.push(tpl),
                    "keys" => out.keys.push(tpl),
                    _ => out.patterns.push(tpl),
                }
            }
        }
        if spec.all && !(spec.tags.is_empty() && spec.keys.is_empty() && spec.patterns.is_empty()) {
            self.err(
                f,
                &at.at("all"),
                "`all: true` purges everything; the other targets are redundant",
                Some("remove `tags`/`keys`/`patterns`, or `all`".into()),
            );
        }
        out
    }

    #[allow(clippy::too_many_arguments)]
    fn compile_rule(
        &mut self,
        f: usize,
        at: &FieldPath,
        r: &spec::RuleSpec,
        d: &ResolvedDefaults,
        classes: &BTreeMap<String, Duration>,
        global_compression: &Arc<Compression>,
        routes: &[Arc<RouteInfo>],
    ) -> Option<Rule> {
        let m_at = at.at("match");
        let matcher = match &r.matcher {
            Some(m) => self.compile_match(f, &m_at, m)?,
            None => RuleMatch::Code,
        };
        // Routes the rule covers, for path-parameter checks.
        let covered: Vec<RouteParams> = match (self.catalog, &matcher) {
            (Some(_), _) => {
                let covered: Vec<RouteParams> = routes
                    .iter()
                    .filter(|ri| covers(&matcher, ri))
                    .map(|ri| RouteParams::of(ri))
                    .collect();
                if covered.is_empty()
                    && let RuleMatch::Path {
                        pattern, method, ..
                    } = &matcher
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
        };
        let covered_refs: Vec<&RouteParams> = covered.iter().collect();
        let ctx = TemplateContext::Request;

        let methods = r.methods.clone().unwrap_or_else(|| d.methods.clone());
        let cache = r.cache.unwrap_or(true);
        let before = self.diags.len();
        let key = match &r.key {
            Some(k) => self
                .template(f, &at.at("key"), &k.0, ctx, &covered_refs)
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
        let tags: Vec<Template> = r
            .tags
            .iter()
            .enumerate()
            .filter_map(|(i, t)| self.template(f, &at.at("tags").at(i), &t.0, ctx, &covered_refs))
            .collect();

        // TTL.
        let t_at = at.at("ttl");
        let mut ttl = TtlPolicy {
            base: d.ttl,
            base_source: d.ttl_source.clone(),
            when: Vec::new(),
            from_origin: None,
            jitter: d.jitter,
        };
        match &r.ttl {
            None => {}
            Some(TtlSpec::Short(t)) => {
                if let Some((dur, src)) = self.ttl_value(f, &t_at, &t.0, classes) {
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
                    let cond = self.expr(f, &w_at.at("if"), &w.condition.0, &covered_refs);
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

        let bypass_no_cache = r.bypass.as_ref().map_or(d.bypass_no_cache, |b| b.no_cache);
        let bypass_when = match r.bypass.as_ref().and_then(|b| b.when.as_ref()) {
            Some(w) => self.expr(f, &at.at("bypass").at("when"), &w.0, &covered_refs),
            None if r.bypass.is_some() => None,
            None => d.bypass_when.clone(),
        };
        let compression = match &r.compression {
            None | Some(CompressionOverride::Enabled(true)) => global_compression.clone(),
            Some(CompressionOverride::Enabled(false)) => Arc::new(Compression {
                enabled: false,
                ..(**global_compression).clone()
            }),
            Some(CompressionOverride::Override(o)) => Arc::new(global_compression.overridden(o)),
        };
        let invalidate = r
            .invalidate
            .as_ref()
            .map(|i| self.invalidation(f, &at.at("invalidate"), i, ctx, &covered_refs));
        let scope = r.scope.unwrap_or(d.scope);
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
        })
    }

    fn compile_match(
        &mut self,
        f: usize,
        at: &FieldPath,
        m: &spec::MatchSpec,
    ) -> Option<RuleMatch> {
        if let Some(p) = &m.plugin
            && !self.check_plugin(f, &at.at("plugin"), p)
        {
            return None;
        }
        match (&m.plugin, &m.operation, &m.path) {
            (_, Some(_), Some(_)) => {
                self.err(
                    f,
                    &at.at("path"),
                    "match by `operation` or by `path`, not both",
                    None,
                );
                None
            }
            (None, Some(_), None) => {
                self.err(
                    f,
                    &at.at("operation"),
                    "`operation` needs `plugin`",
                    Some("write `{ plugin: NAME, operation: OP }`".into()),
                );
                None
            }
            (Some(plugin), Some(op), None) => {
                if m.method.is_some() {
                    self.err(f, &at.at("method"), "`method` applies to `path` matches only; an operation already has one method", None);
                }
                if let Some(cat) = self.catalog
                    && cat.find_route(plugin, op).is_none()
                {
                    let ops: Vec<&str> = cat
                        .routes
                        .iter()
                        .filter(|r| r.plugin == *plugin)
                        .map(|r| r.operation.as_str())
                        .collect();
                    let hint = did_you_mean(op, ops.iter().copied())
                        .or_else(|| Some(format!("operations of `{plugin}`: {}", ops.join(", "))));
                    self.err(
                        f,
                        &at.at("operation"),
                        format!("unknown operation `{op}` of plugin `{plugin}`"),
                        hint,
                    );
                    return None;
                }
                Some(RuleMatch::Operation {
                    plugin: plugin.clone(),
                    operation: op.clone(),
                })
            }
            (plugin, None, Some(path)) => match PathPattern::parse(path) {
                Ok(pattern) => Some(RuleMatch::Path {
                    method: m.method,
                    pattern,
                    plugin: plugin.clone(),
                }),
                Err(e) => {
                    self.err(f, &at.at("path"), e, None);
                    None
                }
            },
            (Some(plugin), None, None) => {
                if m.method.is_some() {
                    self.err(
                        f,
                        &at.at("method"),
                        "`method` applies to `path` matches only",
                        None,
                    );
                }
                Some(RuleMatch::Plugin {
                    plugin: plugin.clone(),
                })
            }
            (None, None, None) => {
                self.err(
                    f,
                    at,
                    "`match` needs `plugin` + `operation`, `path`, or `plugin`",
                    Some("e.g. `match: { plugin: booking, operation: available_slots }`".into()),
                );
                None
            }
        }
    }

    fn check_plugin(&mut self, f: usize, at: &FieldPath, plugin: &str) -> bool {
        let Some(cat) = self.catalog else { return true };
        if cat.has_plugin(plugin) {
            return true;
        }
        if cat.disabled_plugins.iter().any(|p| p == plugin) {
            return false;
        }
        let plugins = cat.plugins();
        let hint = did_you_mean(plugin, plugins.iter().copied())
            .or_else(|| Some(format!("known plugins: {}", plugins.join(", "))));
        self.err(f, at, format!("unknown plugin `{plugin}`"), hint);
        false
    }

    /// Resolves every catalog route to its rule and builds the lookup tables.
    fn index_rules(&mut self, set: &mut PolicySet, routes: &[Arc<RouteInfo>], rule_at: &[Origin]) {
        // Identical matchers are ambiguous: report and keep the first.
        let mut seen: Vec<(usize, &RuleMatch)> = Vec::new();
        let rules = set.rules.clone();
        for (i, r) in rules.iter().enumerate() {
            if r.matcher == RuleMatch::Code {
                continue;
            }
            if let Some((j, _)) = seen.iter().find(|(_, m)| **m == r.matcher) {
                let hint = Some(format!(
                    "rule `{}` at {} already matches the same routes; merge them or narrow one",
                    rules[*j].name,
                    self.where_is(&rule_at[*j])
                ));
                let (f, p) = rule_at[i].clone();
                self.err(
                    f,
                    &p,
                    format!(
                        "rule `{}` has the same `match` as `{}`",
                        r.name, rules[*j].name
                    ),
                    hint,
                );
                continue;
            }
            seen.push((i, &r.matcher));
            match &r.matcher {
                RuleMatch::Operation { plugin, operation } => {
                    set.operation_rules
                        .insert((plugin.clone(), operation.clone()), i);
                }
                RuleMatch::Plugin { plugin } => {
                    set.plugin_rules.insert(plugin.clone(), i);
                }
                RuleMatch::Path { pattern, .. } => set.path_rules.insert(pattern.clone(), i),
                RuleMatch::Code => {}
            }
        }
        // Path rules sorted most specific first, so the trie picks them in that order when
        // several share a node (method-specific before any-method).
        let mut entries: Vec<(PathPattern, usize)> = set.path_rules.entries().to_vec();
        entries.sort_by(|a, b| {
            rules[b.1]
                .matcher
                .precedence()
                .cmp(&rules[a.1].matcher.precedence())
                .then(a.1.cmp(&b.1))
        });
        set.path_rules = Default::default();
        for (p, i) in entries {
            set.path_rules.insert(p, i);
        }
        for ri in routes {
            let best = rules
                .iter()
                .enumerate()
                .filter(|(i, r)| covers(&r.matcher, ri) && seen.iter().any(|(j, _)| j == i))
                .max_by(|a, b| {
                    a.1.matcher
                        .precedence()
                        .cmp(&b.1.matcher.precedence())
                        .then(b.0.cmp(&a.0))
                })
                .map(|(i, _)| i);
            set.route_rule
                .entry(ri.plugin.clone())
                .or_default()
                .insert(ri.operation.clone(), best);
            set.routes.insert(ri.pattern.clone(), (ri.clone(), best));
        }
    }

    fn compile_trigger(
        &mut self,
        f: usize,
        at: &FieldPath,
        t: &spec::TriggerSpec,
    ) -> Option<Trigger> {
        let Some((plugin, event)) = t.on.split_once('.') else {
            self.err(
                f,
                &at.at("on"),
                format!("event `{}` must be written `plugin.event`", t.on),
                Some("e.g. `on: booking.payment_recorded`".into()),
            );
            return None;
        };
        let mut fields: Option<Vec<String>> = None;
        if let Some(cat) = self.catalog {
            if !self.check_plugin(f, &at.at("on"), plugin) {
                return None;
            }
            match cat
                .events
                .iter()
                .find(|e| e.plugin == plugin && e.name == event)
            {
                Some(e) => fields = Some(e.fields.clone()),
                None => {
                    let names: Vec<String> = cat
                        .events
                        .iter()
                        .filter(|e| e.plugin == plugin)
                        .map(|e| e.name.clone())
                        .collect();
                    let hint = did_you_mean(event, names.iter().map(String::as_str))
                        .map(|h| h.replacen('`', &format!("`{plugin}."), 1))
                        .or_else(|| {
                            Some(if names.is_empty() {
                                format!("plugin `{plugin}` emits no events")
                            } else {
                                format!("events of `{plugin}`: {}", names.join(", "))
                            })
                        });
                    self.err(f, &at.at("on"), format!("unknown event `{}`", t.on), hint);
                    return None;
                }
            }
        }
        let inv_at = at.at("invalidate");
        let invalidate = self.invalidation(f, &inv_at, &t.invalidate, TemplateContext::Event, &[]);
        if let Some(fields) = fields {
            for (name, list) in [
                ("tags", &invalidate.tags),
                ("keys", &invalidate.keys),
                ("patterns", &invalidate.patterns),
            ] {
                for (i, tpl) in list.iter().enumerate() {
                    for v in tpl.vars() {
                        if let Var::Event(p) = &v.var {
                            let top = p.trim_start_matches('/').split('/').next().unwrap_or("");
                            if !fields.iter().any(|x| x == top) {
                                let hint = did_you_mean(top, fields.iter().map(String::as_str))
                                    .or_else(|| {
                                        Some(format!("fields of `{}`: {}", t.on, fields.join(", ")))
                                    });
                                self.err(
                                    f,
                                    &inv_at.at(name).at(i),
                                    format!("event `{}` has no field `{top}`", t.on),
                                    hint,
                                );
                            }
                        }
                    }
                }
            }
        }
        if invalidate.tags.is_empty()
            && invalidate.keys.is_empty()
            && invalidate.patterns.is_empty()
            && !invalidate.all
        {
            self.err(
                f,
                &inv_at,
                "the trigger purges nothing",
                Some("list `tags`, `keys` or `patterns`, or set `all: true`".into()),
            );
        }
        Some(Trigger {
            plugin: plugin.to_owned(),
            event: event.to_owned(),
            description: t.description.clone(),
            file: self.files[f].path.clone(),
            invalidate,
        })
    }

    fn compile_warm(
        &mut self,
        f: usize,
        at: &FieldPath,
        w: &spec::WarmSpec,
        set: &PolicySet,
    ) -> Option<WarmJob> {
        let mut ok = true;
        let source = match (&w.source, w.requests.is_empty()) {
            (Some(_), false) => {
                self.err(
                    f,
                    &at.at("source"),
                    "use `source` or `requests`, not both",
                    None,
                );
                return None;
            }
            (None, true) => {
                self.err(
                    f,
                    at,
                    format!(
                        "warming job `{}` has neither `requests` nor `source`",
                        w.name
                    ),
                    Some("add `requests: [\"GET /path\"]` or `source: plugin.name`".into()),
                );
                return None;
            }
            (Some(s), true) => {
                let Some((plugin, name)) = s.split_once('.') else {
                    self.err(
                        f,
                        &at.at("source"),
                        format!("warm source `{s}` must be written `plugin.source`"),
                        None,
                    );
                    return None;
                };
                if let Some(cat) = self.catalog {
                    if !self.check_plugin(f, &at.at("source"), plugin) {
                        return None;
                    }
                    if !cat
                        .warm_sources
                        .iter()
                        .any(|x| x.plugin == plugin && x.name == name)
                    {
                        let names: Vec<&str> = cat
                            .warm_sources
                            .iter()
                            .filter(|x| x.plugin == plugin)
                            .map(|x| x.name.as_str())
                            .collect();
                        let hint = did_you_mean(name, names.iter().copied())
                            .map(|_| {
                                format!(
                                    "did you mean `{plugin}.{}`?",
                                    crate::diag::suggest(name, names.iter().copied())
                                        .unwrap_or_default()
                                )
                            })
                            .or_else(|| {
                                Some(if names.is_empty() {
                                    format!("plugin `{plugin}` has no warm sources")
                                } else {
                                    format!("warm sources of `{plugin}`: {}", names.join(", "))
                                })
                            });
                        self.err(
                            f,
                            &at.at("source"),
                            format!("unknown warm source `{s}`"),
                            hint,
                        );
                        return None;
                    }
                }
                if !w.params.is_empty() {
                    self.err(
                        f,
                        &at.at("params"),
                        "`params` apply to `requests` only",
                        None,
                    );
                }
                WarmSource::Plugin {
                    plugin: plugin.to_owned(),
                    name: name.to_owned(),
                }
            }
            (None, false) => {
                let mut templates = Vec::new();
                for (i, r) in w.requests.iter().enumerate() {
                    let r_at = at.at("requests").at(i);
                    let t = match r {
                        WarmRequestSpec::Line(line) => match WarmTemplate::parse_line(line) {
                            Ok(t) => t,
                            Err(e) => {
                                self.err(f, &r_at, e, None);
                                ok = false;
                                continue;
                            }
                        },
                        WarmRequestSpec::Full(o) => {
                            if !o.path.starts_with('/') {
                                self.err(
                                    f,
                                    &r_at.at("path"),
                                    format!("the path `{}` must start with `/`", o.path),
                                    None,
                                );
                                ok = false;
                                continue;
                            }
                            WarmTemplate {
                                method: o.method.unwrap_or(Method::Get),
                                path: o.path.clone(),
                                query: o.query.clone().into_iter().collect(),
                                headers: o.headers.clone().into_iter().collect(),
                                body: o.body.clone(),
                            }
                        }
                    };
                    for p in t.placeholders() {
                        if !w.params.contains_key(&p) {
                            let hint = did_you_mean(&p, w.params.keys().map(String::as_str))
                                .or_else(|| Some(format!("declare it: `params: {{ {p}: [..] }}`")));
                            self.err(
                                f,
                                &r_at,
                                format!("placeholder `{{{p}}}` has no values in `params`"),
                                hint,
                            );
                            ok = false;
                        }
                    }
                    if let Some(cat) = self.catalog {
                        // The request must reach a route (placeholders stand for one segment).
                        let probe = t
                            .path
                            .split('/')
                            .map(|s| if s.contains('{') { "x" } else { s })
                            .collect::<Vec<_>>()
                            .join("/");
                        let hits = set
                            .routes
                            .find(&probe, &|r| r.0.method == t.method.as_str())
                            .is_some();
                        if !hits && !cat.routes.is_empty() {
                            let hint =
                                did_you_mean(&t.path, cat.routes.iter().map(|r| r.path.as_str()));
                            self.err(
                                f,
                                &r_at,
                                format!("no route matches `{} {}`", t.method, t.path),
                                hint,
                            );
                            ok = false;
                        }
                    }
                    templates.push(t);
                }
                let used: Vec<String> = templates.iter().flat_map(|t| t.placeholders()).collect();
                let mut params = BTreeMap::new();
                for (name, values) in &w.params {
                    let p_at = at.at("params").at(name.as_str());
                    if !used.contains(name) {
                        self.err(
                            f,
                            &p_at,
                            format!("parameter `{name}` is not used by any request"),
                            Some(format!("use it as `{{{name}}}` in a request, or remove it")),
                        );
                        ok = false;
                    }
                    let generator = match values {
                        ParamValues::List(v) => ParamGen::List(
                            v.iter()
                                .map(|s| match s {
                                    ParamScalar::Int(i) => i.to_string(),
                                    ParamScalar::Bool(b) => b.to_string(),
                                    ParamScalar::Text(t) => t.clone(),
                                })
                                .collect(),
                        ),
                        ParamValues::Range(r) => {
                            if r.step == Some(0) {
                                self.err(f, &p_at.at("step"), "`step` must be at least 1", None);
                                ok = false;
                            }
                            ParamGen::Range {
                                from: r.from,
                                to: r.to,
                                step: r.step.unwrap_or(1).max(1),
                            }
                        }
                        ParamValues::Days(d) => ParamGen::Days {
                            days: d.days,
                            offset: d.offset.unwrap_or(0),
                        },
                    };
                    if generator.is_empty() {
                        self.err(f, &p_at, format!("parameter `{name}` has no values"), None);
                        ok = false;
                    }
                    params.insert(name.clone(), generator);
                }
                WarmSource::Requests { templates, params }
            }
        };
        if w.ready_after && !w.at_startup {
            self.err(
                f,
                &at.at("ready_after"),
                "`ready_after` needs `at_startup: true`",
                None,
            );
            ok = false;
        }
        if let Some(e) = w.every
            && e < Duration::from_secs(1)
        {
            self.err(
                f,
                &at.at("every"),
                format!("interval {e} is too short; use at least 1s"),
                None,
            );
            ok = false;
        }
        for (name, v) in [
            ("concurrency", w.concurrency),
            ("batch_size", w.batch_size),
            ("max_requests", w.max_requests),
        ] {
            if v == Some(0) {
                self.err(
                    f,
                    &at.at(name),
                    format!("`{name}` must be at least 1"),
                    None,
                );
                ok = false;
            }
        }
        let job = WarmJob {
            name: w.name.clone(),
            description: w.description.clone(),
            file: self.files[f].path.clone(),
            at_startup: w.at_startup,
            ready_after: w.ready_after,
            every: w.every,
            on_demand: w.on_demand.unwrap_or(true),
            concurrency: w.concurrency.unwrap_or(4),
            batch_size: w.batch_size.unwrap_or(100),
            max_requests: w.max_requests.unwrap_or(10_000),
            source,
        };
        let n = job.request_count();
        if n > job.max_requests as usize {
            self.err(
                f,
                &at.at("params"),
                format!(
                    "job `{}` expands to {n} requests, over `max_requests` ({})",
                    w.name, job.max_requests
                ),
                Some("narrow the parameter lists or raise `max_requests`".into()),
            );
            ok = false;
        }
        if !job.at_startup && job.every.is_none() && !job.on_demand {
            self.err(
                f,
                at,
                format!("warming job `{}` never runs", w.name),
                Some("set `at_startup`, `every` or `on_demand`".into()),
            );
            ok = false;
        }
        ok.then_some(job)
    }
}

/// A route's parameter names, for template checks.
struct RouteParams {
    label: String,
    params: Vec<String>,
}

impl RouteParams {
    fn of(r: &RouteInfo) -> RouteParams {
        RouteParams {
            label: format!("{}.{} ({} {})", r.plugin, r.operation, r.method, r.pattern),
            params: r.pattern.params().map(str::to_owned).collect(),
        }
    }
}

/// Whether a rule's matcher covers a catalog route.
fn covers(m: &RuleMatch, r: &RouteInfo) -> bool {
    match m {
        RuleMatch::Operation { plugin, operation } => {
            r.plugin == *plugin && r.operation == *operation
        }
        RuleMatch::Plugin { plugin } => r.plugin == *plugin,
        RuleMatch::Path {
            method,
            pattern,
            plugin,
        } => {
            method.is_none_or(|m| m.as_str() == r.method)
                && plugin.as_ref().is_none_or(|p| *p == r.plugin)
                && pattern.covers(&r.pattern)
        }
        RuleMatch::Code => false,
    }
}

#[allow(dead_code)]
fn _assert_route(_: &CatalogRoute) {}
