//! Warming jobs: definitions and their expansion into concrete requests.
//!
//! The policy says *what* to warm and *when*; the core runs the requests through its
//! normal request path (so keys, TTLs and tags are exactly those of real traffic), with
//! the job's concurrency and batch limits.

use crate::expr::{Clock, format_date};
use crate::request::{Request, parse_query};
use crate::rule::Zone;
use crate::spec::Method;
use crate::units::Duration;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Where a job's requests come from.
#[derive(Debug, Clone, PartialEq)]
pub enum WarmSource {
    /// Request templates expanded over parameter values.
    Requests {
        /// The templates.
        templates: Vec<WarmTemplate>,
        /// Parameter values by name.
        params: BTreeMap<String, ParamGen>,
    },
    /// A plugin's named warm source; the core asks the plugin.
    Plugin {
        /// Plugin name.
        plugin: String,
        /// Source name.
        name: String,
    },
}

/// Values of one parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamGen {
    /// Fixed values.
    List(Vec<String>),
    /// `from..=to` by `step`.
    Range {
        /// First.
        from: i64,
        /// Last (inclusive).
        to: i64,
        /// Step (≥ 1).
        step: u32,
    },
    /// `days` dates from `today + offset`.
    Days {
        /// How many.
        days: u32,
        /// First day relative to today.
        offset: i32,
    },
}

impl ParamGen {
    /// How many values.
    pub fn len(&self) -> usize {
        match self {
            ParamGen::List(v) => v.len(),
            ParamGen::Range { from, to, step } => {
                if to < from {
                    0
                } else {
                    ((to - from) / i64::from(*step) + 1) as usize
                }
            }
            ParamGen::Days { days, .. } => *days as usize,
        }
    }

    /// True when there are no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values at `clock`.
    pub fn values(&self, clock: Clock) -> Vec<String> {
        match self {
            ParamGen::List(v) => v.clone(),
            ParamGen::Range { from, to, step } => {
                let mut out = Vec::new();
                let mut x = *from;
                while x <= *to {
                    out.push(x.to_string());
                    x += i64::from(*step);
                }
                out
            }
            ParamGen::Days { days, offset } => (0..*days)
                .map(|d| format_date(clock.today() + i64::from(*offset) + i64::from(d)))
                .collect(),
        }
    }
}

/// A request template: every string may hold `{param}` placeholders.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmTemplate {
    /// Method.
    pub method: Method,
    /// Path with placeholders.
    pub path: String,
    /// Query pairs with placeholders in values.
    pub query: Vec<(String, String)>,
    /// Headers with placeholders in values.
    pub headers: Vec<(String, String)>,
    /// JSON body; placeholders inside string values.
    pub body: Option<serde_json::Value>,
}

impl WarmTemplate {
    /// Parses the line form `GET /path?x={x}`.
    pub fn parse_line(line: &str) -> Result<WarmTemplate, String> {
        let line = line.trim();
        let (method, target) = match line.split_once(char::is_whitespace) {
            Some((m, t)) => {
                let method = Method::parse(m).ok_or_else(|| {
                    format!("`{m}` is not an HTTP method; write e.g. `GET /api/v2/services`")
                })?;
                (method, t.trim())
            }
            None if line.starts_with('/') => (Method::Get, line),
            None => return Err(format!("`{line}` is not `METHOD /path`")),
        };
        if !target.starts_with('/') {
            return Err(format!("the path `{target}` must start with `/`"));
        }
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p, parse_query(q)),
            None => (target, Vec::new()),
        };
        Ok(WarmTemplate {
            method,
            path: path.to_owned(),
            query,
            headers: Vec::new(),
            body: None,
        })
    }

    /// Placeholder names used anywhere in the template, in first-use order.
    pub fn placeholders(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut add = |s: &str| {
            for name in placeholders_in(s) {
                if !out.contains(&name) {
                    out.push(name);
                }
            }
        };
        add(&self.path);
        for (_, v) in self.query.iter().chain(&self.headers) {
            add(v);
        }
        fn walk(v: &serde_json::Value, add: &mut dyn FnMut(&str)) {
            match v {
                serde_json::Value::String(s) => add(s),
                serde_json::Value::Array(a) => a.iter().for_each(|x| walk(x, add)),
                serde_json::Value::Object(m) => m.values().for_each(|x| walk(x, add)),
                _ => {}
            }
        }
        if let Some(b) = &self.body {
            walk(b, &mut add);
        }
        out
    }

    fn instantiate(&self, values: &[(&str, &str)]) -> Request {
        let sub = |s: &str| substitute(s, values);
        fn walk(
            v: &serde_json::Value,
            sub: &dyn Fn(&str) -> serde_json::Value,
        ) -> serde_json::Value {
            match v {
                serde_json::Value::String(s) => sub(s),
                serde_json::Value::Array(a) => a.iter().map(|x| walk(x, sub)).collect(),
                serde_json::Value::Object(m) => m
                    .iter()
                    .map(|(k, x)| (k.clone(), walk(x, sub)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
                other => other.clone(),
            }
        }
        // A body string that is exactly one placeholder takes the value's JSON type
        // (`"{page}"` → 2), so typed bodies stay typed.
        let body_sub = |s: &str| -> serde_json::Value {
            let whole = placeholders_in(s);
            if whole.len() == 1 && s == format!("{{{}}}", whole[0]) {
                let v = sub(s);
                return serde_json::from_str::<serde_json::Value>(&v)
                    .ok()
                    .filter(|j| j.is_number() || j.is_boolean())
                    .unwrap_or(serde_json::Value::String(v));
            }
            serde_json::Value::String(sub(s))
        };
        Request {
            method: self.method.as_str().to_owned(),
            path: sub(&self.path),
            query: self
                .query
                .iter()
                .map(|(k, v)| (k.clone(), sub(v)))
                .collect(),
            headers: self
                .headers
                .iter()
                .map(|(k, v)| (k.clone(), sub(v)))
                .collect(),
            body: self.body.as_ref().map(|b| walk(b, &body_sub)),
            ..Request::default()
        }
    }
}

/// `{name}` placeholders in `s`.
pub fn placeholders_in(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                out.push(after[..j].trim().to_owned());
                rest = &after[j + 1..];
            }
            None => break,
        }
    }
    out
}

fn substitute(s: &str, values: &[(&str, &str)]) -> String {
    let mut out = String::with_capacity(s.len() + 16);
    let mut rest = s;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        match after.find('}') {
            Some(j) => {
                let name = after[..j].trim();
                match values.iter().find(|(n, _)| *n == name) {
                    Some((_, v)) => out.push_str(v),
                    None => {
                        out.push('{');
                        out.push_str(&after[..=j]);
                    }
                }
                rest = &after[j + 1..];
            }
            None => {
                out.push_str(&rest[i..]);
                rest = "";
            }
        }
    }
    out.push_str(rest);
    out
}

/// A compiled warming job.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmJob {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// The file it came from.
    pub file: PathBuf,
    /// Run at start-up.
    pub at_startup: bool,
    /// `/ready` waits for the start-up run.
    pub ready_after: bool,
    /// Run periodically.
    pub every: Option<Duration>,
    /// May be run through the admin API.
    pub on_demand: bool,
    /// Requests in flight at once.
    pub concurrency: u32,
    /// Requests per batch.
    pub batch_size: u32,
    /// Upper bound on the expansion.
    pub max_requests: u32,
    /// What to warm.
    pub source: WarmSource,
    /// The zone its `days` parameters count today in; `None` for UTC.
    pub timezone: Option<Zone>,
}

impl WarmJob {
    /// How many requests the job expands to (0 for a plugin source: the plugin decides).
    pub fn request_count(&self) -> usize {
        match &self.source {
            WarmSource::Plugin { .. } => 0,
            WarmSource::Requests { templates, params } => templates
                .iter()
                .map(|t| {
                    t.placeholders()
                        .iter()
                        .map(|p| params.get(p).map_or(1, ParamGen::len))
                        .product::<usize>()
                })
                .sum(),
        }
    }

    /// The concrete requests, in a stable order: templates in order, each expanded over the
    /// cartesian product of the parameters it uses (first parameter varies slowest).
    pub fn expand(&self, clock: Clock) -> Vec<Request> {
        let WarmSource::Requests { templates, params } = &self.source else {
            return Vec::new();
        };
        let clock = Zone::apply(self.timezone.as_ref(), clock);
        let mut out = Vec::new();
        for t in templates {
            let names = t.placeholders();
            let lists: Vec<Vec<String>> = names
                .iter()
                .map(|n| params.get(n).map(|g| g.values(clock)).unwrap_or_default())
                .collect();
            if lists.iter().any(Vec::is_empty) {
                continue;
            }
            let mut idx = vec![0usize; lists.len()];
            loop {
                let values: Vec<(&str, &str)> = names
                    .iter()
                    .zip(&idx)
                    .enumerate()
                    .map(|(k, (n, &i))| (n.as_str(), lists[k][i].as_str()))
                    .collect();
                out.push(t.instantiate(&values));
                if out.len() >= self.max_requests as usize {
                    return out;
                }
                // Odometer increment, last parameter fastest.
                let mut k = idx.len();
                loop {
                    if k == 0 {
                        break;
                    }
                    k -= 1;
                    idx[k] += 1;
                    if idx[k] < lists[k].len() {
                        break;
                    }
                    idx[k] = 0;
                    if k == 0 {
                        k = usize::MAX;
                        break;
                    }
                }
                if idx.is_empty() || k == usize::MAX {
                    break;
                }
            }
        }
        out
    }

    /// The expansion split into batches of `batch_size`.
    pub fn batches(&self, clock: Clock) -> Vec<Vec<Request>> {
        let all = self.expand(clock);
        all.chunks(self.batch_size.max(1) as usize)
            .map(<[Request]>::to_vec)
            .collect()
    }
}
