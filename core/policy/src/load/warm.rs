//! Warming jobs: requests the server sends itself (from templates with parameter lists,
//! or from a plugin's warm source), checked at load so a job never fails halfway through
//! a run.

use super::{Compiler, Origin};
use crate::catalog::Catalog;
use crate::diag::did_you_mean;
use crate::policy::PolicySet;
use crate::rule::Zone;
use crate::source::FieldPath;
use crate::spec::{Method, ParamScalar, ParamValues, WarmRequestSpec, WarmSpec};
use crate::units::Duration;
use crate::warming::{ParamGen, WarmJob, WarmSource, WarmTemplate};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

impl Compiler<'_> {
    /// Adds the warming jobs of all files to `set`. Job names are unique across the set:
    /// the admin API runs a job by name.
    pub(super) fn compile_warming(&mut self, set: &mut PolicySet, defaults: Option<&Zone>) {
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
                if let Some(job) = self.compile_warm(f, &at, w, set, defaults) {
                    set.warming.push(Arc::new(job));
                }
            }
        }
    }

    /// One job. `set` has its routes resolved already: with a catalog, each request must
    /// reach one.
    fn compile_warm(
        &mut self,
        f: usize,
        at: &FieldPath,
        w: &WarmSpec,
        set: &PolicySet,
        defaults: Option<&Zone>,
    ) -> Option<WarmJob> {
        if let Some(plugin) = &w.plugin {
            if w.source.is_some() {
                self.err(
                    f,
                    &at.at("plugin"),
                    "`plugin` goes with `requests`; a `source` names its plugin already",
                    None,
                );
                return None;
            }
            // A disabled plugin's job is left out; an unknown one is reported.
            if !self.check_plugin(f, &at.at("plugin"), plugin) {
                return None;
            }
        }
        let (source, mut ok) = match (&w.source, w.requests.is_empty()) {
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
            (Some(s), true) => (self.plugin_source(f, at, w, s)?, true),
            (None, false) => self.request_source(f, at, w, set),
        };
        let timezone = match &w.timezone {
            Some(z) => {
                let zone = self.zone(f, &at.at("timezone"), &z.0, "job");
                ok &= zone.is_some();
                zone
            }
            None => self
                .warm_zone(w.plugin.as_deref(), &source, set)
                .or_else(|| defaults.cloned()),
        };
        let job = WarmJob {
            timezone,
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
        ok &= self.check_job(f, at, w, &job);
        ok.then_some(job)
    }

    /// The zone of the one plugin a job warms, if that plugin names one.
    fn warm_zone(&self, named: Option<&str>, source: &WarmSource, set: &PolicySet) -> Option<Zone> {
        let cat = self.catalog?;
        let plugin = match source {
            _ if named.is_some() => named?.to_owned(),
            WarmSource::Plugin { plugin, .. } => plugin.clone(),
            WarmSource::Requests { templates, .. } => {
                let mut plugins = templates.iter().filter_map(|t| {
                    let probe = probe_path(&t.path);
                    let found = set
                        .routes
                        .find(&probe, &|r| r.0.method == t.method.as_str())?;
                    Some(found.1.0.plugin.clone())
                });
                let first = plugins.next()?;
                if plugins.any(|p| p != first) {
                    return None;
                }
                first
            }
        };
        let name = cat.time_zones.get(&plugin)?;
        Some(Zone {
            zone: jiff::tz::TimeZone::get(name).ok()?,
            name: name.clone(),
            source: format!("plugin {plugin}"),
        })
    }

    /// `source: plugin.name`: requests a plugin lists when the job runs.
    fn plugin_source(
        &mut self,
        f: usize,
        at: &FieldPath,
        w: &WarmSpec,
        s: &str,
    ) -> Option<WarmSource> {
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
                let hint = warm_source_hint(cat, plugin, name);
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
        Some(WarmSource::Plugin {
            plugin: plugin.to_owned(),
            name: name.to_owned(),
        })
    }

    /// `requests:` with their `params`, and whether all of it is valid.
    fn request_source(
        &mut self,
        f: usize,
        at: &FieldPath,
        w: &WarmSpec,
        set: &PolicySet,
    ) -> (WarmSource, bool) {
        let mut ok = true;
        let mut templates = Vec::new();
        for (i, r) in w.requests.iter().enumerate() {
            let r_at = at.at("requests").at(i);
            let Some(t) = self.warm_template(f, &r_at, r) else {
                ok = false;
                continue;
            };
            ok &= self.placeholders_declared(f, &r_at, &t, &w.params);
            ok &= self.reaches_route(f, &r_at, &t, set, w.plugin.as_deref());
            templates.push(t);
        }
        let (params, params_ok) = self.warm_params(f, at, &w.params, &templates);
        ok &= params_ok;
        (WarmSource::Requests { templates, params }, ok)
    }

    /// One request, written as a line (`GET /path?q=1`) or as an object.
    fn warm_template(
        &mut self,
        f: usize,
        r_at: &FieldPath,
        r: &WarmRequestSpec,
    ) -> Option<WarmTemplate> {
        match r {
            WarmRequestSpec::Line(line) => match WarmTemplate::parse_line(line) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.err(f, r_at, e, None);
                    None
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
                    return None;
                }
                Some(WarmTemplate {
                    method: o.method.unwrap_or(Method::Get),
                    path: o.path.clone(),
                    query: o.query.clone().into_iter().collect(),
                    headers: o.headers.clone().into_iter().collect(),
                    body: o.body.clone(),
                })
            }
        }
    }

    /// Every `{placeholder}` of a request has values in `params`.
    fn placeholders_declared(
        &mut self,
        f: usize,
        r_at: &FieldPath,
        t: &WarmTemplate,
        params: &BTreeMap<String, ParamValues>,
    ) -> bool {
        let mut ok = true;
        for p in t.placeholders() {
            if !params.contains_key(&p) {
                let hint = did_you_mean(&p, params.keys().map(String::as_str))
                    .or_else(|| Some(format!("declare it: `params: {{ {p}: [..] }}`")));
                self.err(
                    f,
                    r_at,
                    format!("placeholder `{{{p}}}` has no values in `params`"),
                    hint,
                );
                ok = false;
            }
        }
        ok
    }

    /// With a catalog, the request must reach a route (placeholders stand for one
    /// segment).
    fn reaches_route(
        &mut self,
        f: usize,
        r_at: &FieldPath,
        t: &WarmTemplate,
        set: &PolicySet,
        plugin: Option<&str>,
    ) -> bool {
        let Some(cat) = self.catalog else {
            return true;
        };
        let probe = probe_path(&t.path);
        let hits = set
            .routes
            .find(&probe, &|r| {
                r.0.method == t.method.as_str() && plugin.is_none_or(|p| r.0.plugin == p)
            })
            .is_some();
        if !hits && !cat.routes.is_empty() {
            let paths = cat
                .routes
                .iter()
                .filter(|r| plugin.is_none_or(|p| r.plugin == p))
                .map(|r| r.path.as_str());
            let hint = did_you_mean(&t.path, paths);
            let of = plugin
                .map(|p| format!(" of plugin `{p}`"))
                .unwrap_or_default();
            self.err(
                f,
                r_at,
                format!("no route{of} matches `{} {}`", t.method, t.path),
                hint,
            );
            return false;
        }
        true
    }

    /// The value generators of `params`, each used by some request and never empty.
    fn warm_params(
        &mut self,
        f: usize,
        at: &FieldPath,
        specs: &BTreeMap<String, ParamValues>,
        templates: &[WarmTemplate],
    ) -> (BTreeMap<String, ParamGen>, bool) {
        let mut ok = true;
        let used: Vec<String> = templates.iter().flat_map(|t| t.placeholders()).collect();
        let mut params = BTreeMap::new();
        for (name, values) in specs {
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
        (params, ok)
    }

    /// The job's schedule and limits: it must run at some point, and stay within
    /// `max_requests`.
    fn check_job(&mut self, f: usize, at: &FieldPath, w: &WarmSpec, job: &WarmJob) -> bool {
        let mut ok = true;
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
        ok
    }
}

/// A template's path with each placeholder segment standing for one concrete segment.
fn probe_path(path: &str) -> String {
    path.split('/')
        .map(|s| if s.contains('{') { "x" } else { s })
        .collect::<Vec<_>>()
        .join("/")
}

/// What to suggest for an unknown warm source of `plugin`.
fn warm_source_hint(cat: &Catalog, plugin: &str, name: &str) -> Option<String> {
    let names: Vec<&str> = cat
        .warm_sources
        .iter()
        .filter(|x| x.plugin == plugin)
        .map(|x| x.name.as_str())
        .collect();
    did_you_mean(name, names.iter().copied())
        .map(|_| {
            format!(
                "did you mean `{plugin}.{}`?",
                crate::diag::suggest(name, names.iter().copied()).unwrap_or_default()
            )
        })
        .or_else(|| {
            Some(if names.is_empty() {
                format!("plugin `{plugin}` has no warm sources")
            } else {
                format!("warm sources of `{plugin}`: {}", names.join(", "))
            })
        })
}
