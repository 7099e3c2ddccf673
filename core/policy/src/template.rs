//! Key and tag templates: `"booking:slots:{path.barber_id}:{query.date|today}"`.
//!
//! A template is parsed once at load into literal and variable segments; rendering walks the
//! segments into one pre-sized `String`. No regex, no re-parsing on the request path.
//!
//! Substituted values are escaped (`%`, `:`, `*`, `?`, `[`, `]`, `{`, `}`, `\`, whitespace and
//! control characters become `%XX`), so a request value can neither forge another key's
//! structure nor widen an invalidation pattern.

use crate::request::RequestView;
use serde_json::Value;
use std::fmt::{self, Write as _};

/// Where a template or expression reads a value from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Var {
    /// `{plugin}`: the plugin serving the route.
    Plugin,
    /// `{operation}`: the route's operation id.
    Operation,
    /// `{method}`: the HTTP method.
    Method,
    /// `{path}`: the request path.
    Path,
    /// `{path.NAME}`: a path parameter.
    PathParam(String),
    /// `{query}`: every query pair, sorted, as `a=1&b=2`.
    Query,
    /// `{query.NAME}`: one query parameter.
    QueryParam(String),
    /// `{params}`: non-empty query pairs and top-level body fields, merged and sorted, so the
    /// GET and POST forms of one search give the same text.
    Params,
    /// `{header.NAME}`: a request header (name lower-cased at load).
    Header(String),
    /// `{body}`: the body as canonical JSON (sorted keys, no whitespace).
    Body,
    /// `{body.POINTER}`: a JSON pointer (`body./items/0/id`) or dotted path (`body.barber_id`)
    /// into the body.
    BodyPointer(String),
    /// `{tenant}`: the authenticated tenant.
    Tenant,
    /// `{user}`: the authenticated user.
    User,
    /// `{event.FIELD}`: a field of the plugin event that fired a trigger (pointer or dotted).
    Event(String),
}

/// In which situation a template is rendered; decides which variables are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TemplateContext {
    /// Keys, tags and `invalidate:` of a rule: request variables.
    Request,
    /// `triggers:`: event fields only.
    Event,
}

impl Var {
    /// Parses `query.date`, `body./a/0`, `tenant`, ... The error says which forms exist.
    pub fn parse(s: &str) -> Result<Var, String> {
        let s = s.trim();
        let (head, tail) = match s.split_once('.') {
            Some((h, t)) => (h, Some(t)),
            None => (s, None),
        };
        let need = |what: &str| -> Result<String, String> {
            match tail {
                Some(t) if !t.trim().is_empty() => Ok(t.trim().to_owned()),
                _ => Err(format!("`{head}.` needs a {what} name, e.g. `{head}.id`")),
            }
        };
        let no_tail = |v: Var| -> Result<Var, String> {
            match tail {
                None => Ok(v),
                Some(_) => Err(format!("`{head}` takes no `.NAME` part")),
            }
        };
        match head {
            "plugin" => no_tail(Var::Plugin),
            "operation" => no_tail(Var::Operation),
            "method" => no_tail(Var::Method),
            "params" => no_tail(Var::Params),
            "tenant" => no_tail(Var::Tenant),
            "user" => no_tail(Var::User),
            "path" => match tail {
                None => Ok(Var::Path),
                Some(_) => need("path parameter").map(Var::PathParam),
            },
            "query" => match tail {
                None => Ok(Var::Query),
                Some(_) => need("query parameter").map(Var::QueryParam),
            },
            "header" => need("header").map(|h| Var::Header(h.to_ascii_lowercase())),
            "body" => match tail {
                None => Ok(Var::Body),
                Some(_) => need("field").map(|p| Var::BodyPointer(to_pointer(&p))),
            },
            "event" => need("field").map(|p| Var::Event(to_pointer(&p))),
            other => {
                let known = [
                    "plugin",
                    "operation",
                    "method",
                    "path",
                    "query",
                    "params",
                    "header",
                    "body",
                    "tenant",
                    "user",
                    "event",
                ];
                let mut msg = format!("unknown variable `{other}`");
                if let Some(s) = crate::diag::suggest(other, known.iter().copied()) {
                    let _ = write!(msg, "; did you mean `{s}`?");
                } else {
                    msg.push_str(
                        "; use plugin, operation, method, path[.NAME], query[.NAME], params, \
                         header.NAME, body[.POINTER], tenant, user or event.FIELD",
                    );
                }
                Err(msg)
            }
        }
    }

    /// Whether the variable may be used in `ctx`.
    pub fn allowed_in(&self, ctx: TemplateContext) -> bool {
        matches!(self, Var::Event(_)) == (ctx == TemplateContext::Event)
    }

    /// Reads the variable from a request into `out` (unescaped); false when absent.
    fn write_request(
        &self,
        req: &dyn RequestView,
        route: RouteNames<'_>,
        out: &mut String,
    ) -> bool {
        let s = match self {
            Var::Plugin => req.plugin().or(route.plugin),
            Var::Operation => req.operation().or(route.operation),
            Var::Method => Some(req.method()),
            Var::Path => Some(req.path()),
            Var::PathParam(n) => req.path_param(n),
            Var::QueryParam(n) => req.query_param(n),
            Var::Header(n) => req.header(n),
            Var::Tenant => req.tenant(),
            Var::User => req.user(),
            Var::Query => {
                let mut pairs: Vec<(&str, &str)> = Vec::new();
                req.visit_query(&mut |k, v| pairs.push((k, v)));
                // The closure borrows from `req`, whose lifetime outlives `pairs`.
                return write_pairs(pairs, out);
            }
            Var::Params => return write_params(req, out),
            Var::Body => {
                return match req.body() {
                    Some(v) => {
                        write_canonical_json(v, out);
                        true
                    }
                    None => false,
                };
            }
            Var::BodyPointer(p) => {
                return match req.body().and_then(|b| b.pointer(p)) {
                    Some(v) => write_json_scalar(v, out),
                    None => false,
                };
            }
            Var::Event(_) => None,
        };
        match s {
            Some(s) => {
                out.push_str(s);
                true
            }
            None => false,
        }
    }

    /// The path parameter this variable names, if any.
    pub fn path_param(&self) -> Option<&str> {
        match self {
            Var::PathParam(p) => Some(p),
            _ => None,
        }
    }

    /// Whether the variable reads the request body.
    pub fn reads_body(&self) -> bool {
        matches!(self, Var::Body | Var::BodyPointer(_) | Var::Params)
    }
}

impl fmt::Display for Var {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Var::Plugin => f.write_str("plugin"),
            Var::Operation => f.write_str("operation"),
            Var::Method => f.write_str("method"),
            Var::Path => f.write_str("path"),
            Var::PathParam(n) => write!(f, "path.{n}"),
            Var::Query => f.write_str("query"),
            Var::QueryParam(n) => write!(f, "query.{n}"),
            Var::Params => f.write_str("params"),
            Var::Header(n) => write!(f, "header.{n}"),
            Var::Body => f.write_str("body"),
            Var::BodyPointer(p) => write!(f, "body.{}", dotted(p)),
            Var::Tenant => f.write_str("tenant"),
            Var::User => f.write_str("user"),
            Var::Event(p) => write!(f, "event.{}", dotted(p)),
        }
    }
}

/// `/a/b/0` → `a.b.0` when that reads back the same; else the pointer itself.
fn dotted(pointer: &str) -> String {
    let parts: Vec<&str> = pointer.trim_start_matches('/').split('/').collect();
    if parts.iter().any(|p| p.contains(['.', '~']) || p.is_empty()) {
        pointer.to_owned()
    } else {
        parts.join(".")
    }
}

/// `a.b.0` → `/a/b/0`; a leading `/` means the text already is a JSON pointer.
fn to_pointer(p: &str) -> String {
    if p.starts_with('/') {
        p.to_owned()
    } else {
        let mut s = String::with_capacity(p.len() + 1);
        for part in p.split('.') {
            s.push('/');
            s.push_str(&part.replace('~', "~0").replace('/', "~1"));
        }
        s
    }
}

fn write_pairs(mut pairs: Vec<(&str, &str)>, out: &mut String) -> bool {
    pairs.sort_unstable();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        escape_pair_part(k, out);
        out.push('=');
        escape_pair_part(v, out);
    }
    !pairs.is_empty()
}

fn write_params(req: &dyn RequestView, out: &mut String) -> bool {
    let mut pairs: Vec<(String, String)> = Vec::new();
    req.visit_query(&mut |k, v| {
        if !v.is_empty() {
            pairs.push((k.to_owned(), v.to_owned()));
        }
    });
    if let Some(Value::Object(map)) = req.body() {
        for (k, v) in map {
            let mut s = String::new();
            if write_json_scalar(v, &mut s) && !s.is_empty() {
                pairs.push((k.clone(), s));
            }
        }
    }
    let pairs: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    write_pairs(pairs, out)
}

fn escape_pair_part(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' | '=' | '%' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c => out.push(c),
        }
    }
}

/// Writes a JSON value as key text: strings raw, numbers and booleans as written, arrays and
/// objects as canonical JSON. `null` counts as absent.
fn write_json_scalar(v: &Value, out: &mut String) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => {
            out.push_str(s);
            true
        }
        Value::Bool(b) => {
            out.push_str(if *b { "true" } else { "false" });
            true
        }
        Value::Number(_) => {
            write_canonical_json(v, out);
            true
        }
        Value::Array(_) | Value::Object(_) => {
            write_canonical_json(v, out);
            true
        }
    }
}

/// Canonical JSON: object keys sorted, no whitespace, integral floats written as integers.
/// Independent of serde_json's `preserve_order` feature.
pub fn write_canonical_json(v: &Value, out: &mut String) {
    match v {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(f) = n.as_f64().filter(|_| n.is_f64())
                && f.fract() == 0.0
                && f.abs() < 9.007_199_254_740_992e15
            {
                let _ = write!(out, "{}", f as i64);
                return;
            }
            let _ = write!(out, "{n}");
        }
        Value::String(s) => {
            let _ = write!(out, "{}", Value::String(s.clone()));
        }
        Value::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical_json(x, out);
            }
            out.push(']');
        }
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort_unstable();
            out.push('{');
            for (i, k) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(out, "{}", Value::String(k.clone()));
                out.push(':');
                write_canonical_json(&m[k], out);
            }
            out.push('}');
        }
    }
}

/// Canonical JSON of `v` as a new string.
pub fn canonical_json(v: &Value) -> String {
    let mut s = String::new();
    write_canonical_json(v, &mut s);
    s
}

/// Escapes characters that carry meaning in keys and Redis patterns: `:` separates key
/// parts, `#` starts the scope and vary suffixes (`#t=`, `#u=`, `#v=`), so no value a client
/// sends can spell another rule's key or another principal's suffix.
pub(crate) fn escape_into(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '%' | ':' | '#' | '*' | '?' | '[' | ']' | '{' | '}' | '\\' => {
                let _ = write!(out, "%{:02X}", c as u32);
            }
            c if c.is_whitespace() || c.is_control() => {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    let _ = write!(out, "%{b:02X}");
                }
            }
            c => out.push(c),
        }
    }
}

/// The 128-bit xxh3 digest of `s`, as 32 lower-case hex digits.
pub fn hash_hex(s: &str) -> String {
    format!("{:032x}", xxhash_rust::xxh3::xxh3_128(s.as_bytes()))
}

/// A variable with an optional default (`query.region|all`).
#[derive(Debug, Clone, PartialEq)]
pub struct VarRef {
    /// What to read.
    pub var: Var,
    /// Used when the value is absent (or empty).
    pub default: Option<String>,
}

/// One piece of a parsed template.
#[derive(Debug, Clone, PartialEq)]
pub enum Segment {
    /// Literal text, copied as is.
    Lit(String),
    /// `{var}` or `{var|default}`.
    Var(VarRef),
    /// `{hash(a, b|x, ...)}`: xxh3-128 hex of the arguments joined by U+001F.
    Hash(Vec<VarRef>),
}

/// A parsed template.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    source: String,
    segments: Vec<Segment>,
    capacity: usize,
}

/// Route identity used when a request does not say which plugin/operation it belongs to.
#[derive(Debug, Clone, Copy, Default)]
pub struct RouteNames<'a> {
    /// Plugin name.
    pub plugin: Option<&'a str>,
    /// Operation id.
    pub operation: Option<&'a str>,
}

/// A template syntax error, with the byte offset in the template where it was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TemplateError {
    /// What is wrong and what to write instead.
    pub message: String,
    /// Byte offset in the template text.
    pub offset: usize,
}

impl Template {
    /// Parses a template. `{{` and `}}` stand for literal braces.
    pub fn parse(src: &str) -> Result<Template, TemplateError> {
        let mut segments = Vec::new();
        let mut lit = String::new();
        let bytes = src.as_bytes();
        let mut i = 0;
        let err = |offset: usize, message: String| TemplateError { message, offset };
        while i < bytes.len() {
            let c = bytes[i];
            if c == b'{' && bytes.get(i + 1) == Some(&b'{') {
                lit.push('{');
                i += 2;
                continue;
            }
            if c == b'}' && bytes.get(i + 1) == Some(&b'}') {
                lit.push('}');
                i += 2;
                continue;
            }
            if c == b'}' {
                return Err(err(
                    i,
                    "unmatched `}`; write `}}` for a literal brace".into(),
                ));
            }
            if c == b'{' {
                let close = src[i + 1..]
                    .find('}')
                    .map(|j| i + 1 + j)
                    .ok_or_else(|| err(i, "unclosed `{`; write `{{` for a literal brace".into()))?;
                let inner = &src[i + 1..close];
                if inner.contains('{') {
                    return Err(err(i, "unclosed `{` before the next `{`".into()));
                }
                if !lit.is_empty() {
                    segments.push(Segment::Lit(std::mem::take(&mut lit)));
                }
                segments.push(parse_placeholder(inner).map_err(|m| err(i + 1, m))?);
                i = close + 1;
                continue;
            }
            let ch = src[i..].chars().next().unwrap_or('?');
            lit.push(ch);
            i += ch.len_utf8();
        }
        if !lit.is_empty() {
            segments.push(Segment::Lit(lit));
        }
        let capacity = segments
            .iter()
            .map(|s| match s {
                Segment::Lit(l) => l.len(),
                Segment::Var(_) => 16,
                Segment::Hash(_) => 32,
            })
            .sum();
        Ok(Template {
            source: src.to_owned(),
            segments,
            capacity,
        })
    }

    /// The text the template was parsed from.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The parsed segments.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Every variable the template reads.
    pub fn vars(&self) -> impl Iterator<Item = &VarRef> {
        self.segments.iter().flat_map(|s| match s {
            Segment::Lit(_) => &[][..],
            Segment::Var(v) => std::slice::from_ref(v),
            Segment::Hash(vs) => &vs[..],
        })
    }

    /// Whether any variable reads the request body.
    pub fn reads_body(&self) -> bool {
        self.vars().any(|v| v.var.reads_body())
    }

    /// The literal text only (used to spot patterns that are nothing but wildcards).
    pub fn literal_text(&self) -> String {
        self.segments
            .iter()
            .filter_map(|s| match s {
                Segment::Lit(l) => Some(l.as_str()),
                _ => None,
            })
            .collect()
    }

    /// Renders against a request. The boolean is false when a variable without a default
    /// was absent (it rendered as empty text).
    pub fn render(&self, req: &dyn RequestView, route: RouteNames<'_>) -> (String, bool) {
        let mut out = String::with_capacity(self.capacity + 8);
        let complete = self.render_into(&mut out, &mut |v, s| v.write_request(req, route, s));
        (out, complete)
    }

    /// Renders against an event's fields (a JSON object).
    pub fn render_event(&self, fields: &Value) -> (String, bool) {
        let mut out = String::with_capacity(self.capacity + 8);
        let complete = self.render_into(&mut out, &mut |v, s| match v {
            Var::Event(p) => fields.pointer(p).is_some_and(|x| write_json_scalar(x, s)),
            _ => false,
        });
        (out, complete)
    }

    /// Renders into `out`. Appends to what is already there.
    pub fn render_into(
        &self,
        out: &mut String,
        read: &mut dyn FnMut(&Var, &mut String) -> bool,
    ) -> bool {
        let mut complete = true;
        let mut scratch = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Lit(l) => out.push_str(l),
                Segment::Var(v) => {
                    scratch.clear();
                    if read(&v.var, &mut scratch) && !scratch.is_empty() {
                        escape_into(&scratch, out);
                    } else if let Some(d) = &v.default {
                        escape_into(d, out);
                    } else {
                        complete = false;
                    }
                }
                Segment::Hash(args) => {
                    scratch.clear();
                    for (i, v) in args.iter().enumerate() {
                        if i > 0 {
                            scratch.push('\u{1f}');
                        }
                        let start = scratch.len();
                        if !read(&v.var, &mut scratch) || scratch.len() == start {
                            scratch.truncate(start);
                            match &v.default {
                                Some(d) => scratch.push_str(d),
                                None => complete = false,
                            }
                        }
                    }
                    let h = xxhash_rust::xxh3::xxh3_128(scratch.as_bytes());
                    let _ = write!(out, "{h:032x}");
                }
            }
        }
        complete
    }
}

impl fmt::Display for Template {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn parse_var_ref(s: &str) -> Result<VarRef, String> {
    let (var, default) = match s.split_once('|') {
        Some((v, d)) => (v, Some(d.trim().to_owned())),
        None => (s, None),
    };
    if var.trim().is_empty() {
        return Err("empty placeholder `{}`; name a variable such as `{query.id}`".into());
    }
    Ok(VarRef {
        var: Var::parse(var)?,
        default,
    })
}

fn parse_placeholder(inner: &str) -> Result<Segment, String> {
    let t = inner.trim();
    if let Some(rest) = t.strip_prefix("hash(") {
        let args = rest
            .strip_suffix(')')
            .ok_or_else(|| format!("`{{{t}}}`: `hash(` needs a closing `)`"))?;
        let args: Vec<VarRef> = args
            .split(',')
            .map(parse_var_ref)
            .collect::<Result<_, _>>()?;
        return Ok(Segment::Hash(args));
    }
    if t.starts_with("hash ") || t == "hash" {
        return Err("write `{hash(query)}`: `hash` takes its arguments in parentheses".into());
    }
    parse_var_ref(t).map(Segment::Var)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::request::Request;
    use serde_json::json;

    fn render(t: &str, r: &Request) -> String {
        Template::parse(t)
            .unwrap()
            .render(r, RouteNames::default())
            .0
    }

    #[test]
    fn renders_every_form() {
        let mut r = Request::new("POST", "/api/v2/barbers/7/slots?date=2025-01-02&b=2&a=1")
            .with_header("X-Region", "eu")
            .with_body(json!({"barber_id": 7, "items": [{"id": "x"}], "z": null}));
        r.path_params.push(("barber_id".into(), "7".into()));
        r.tenant = Some("acme".into());
        r.user = Some("u1".into());
        r.plugin = Some("booking".into());
        r.operation = Some("available_slots".into());
        assert_eq!(
            render("{plugin}:{operation}:{method}", &r),
            "booking:available_slots:POST"
        );
        assert_eq!(render("{path.barber_id}:{query.date}", &r), "7:2025-01-02");
        assert_eq!(render("{query}", &r), "a=1&b=2&date=2025-01-02");
        assert_eq!(render("{header.x-region}", &r), "eu");
        assert_eq!(render("{body./items/0/id}:{body.barber_id}", &r), "x:7");
        assert_eq!(
            canonical_json(r.body.as_ref().unwrap()),
            r#"{"barber_id":7,"items":[{"id":"x"}],"z":null}"#
        );
        assert_eq!(
            render("{body}", &r),
            "%7B\"barber_id\"%3A7,\"items\"%3A%5B%7B\"id\"%3A\"x\"%7D%5D,\"z\"%3Anull%7D"
        );
        assert_eq!(render("{tenant}/{user}", &r), "acme/u1");
        assert_eq!(render("{query.region|all}", &r), "all");
        assert_eq!(render("{{lit}}", &r), "{lit}");
        assert_eq!(render("{hash(query)}", &r).len(), 32);
    }

    #[test]
    fn values_are_escaped() {
        let r = Request::new("GET", "/x?q=a:b*c");
        assert_eq!(render("k:{query.q}", &r), "k:a%3Ab%2Ac");
    }

    #[test]
    fn parse_errors_point_at_the_problem() {
        let e = Template::parse("a:{qury.x}").unwrap_err();
        assert_eq!(e.message, "unknown variable `qury`; did you mean `query`?");
        assert_eq!(e.offset, 3);
        assert!(Template::parse("a:{query.x").is_err());
        assert!(Template::parse("a:}").is_err());
        assert!(Template::parse("{hash(query}").is_err());
        assert!(Template::parse("{header}").is_err());
    }
}
