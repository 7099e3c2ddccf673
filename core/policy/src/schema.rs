//! Validation of a YAML tree against the JSON Schema generated from [`crate::spec`].
//!
//! This is Apollo Router's approach: the schema is derived from the Rust types, every node
//! of the file is checked against it, and every violation is reported with the node's line
//! and column. Only a file without violations is handed to serde, so serde's "first error
//! only" behaviour never hides a second mistake.
//!
//! The validator understands the subset of JSON Schema that schemars emits for our types
//! (`$ref`, `anyOf`/`oneOf`, `type`, `const`/`enum`, `properties`, `required`,
//! `additionalProperties`, `items`, `minimum`/`maximum`) plus our own `format`s: `duration`,
//! `size`, `jitter`, `template`, `expression` and `ttl`, checked with the real parsers.

use crate::diag::{Location, did_you_mean};
use crate::source::{FieldPath, Node, SpannedNode, kind, loc};
use serde_json::Value;

/// One schema violation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// Where.
    pub location: Location,
    /// Field path, e.g. `rules[2].ttl` (for an unknown field: the map holding it).
    pub path: FieldPath,
    /// For an unknown field: its name (the loader drops it and goes on).
    pub unknown_field: Option<String>,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: Option<String>,
}

/// Validates `node` against `schema` (a root schema with `$defs`).
pub fn validate(node: &SpannedNode, schema: &Value) -> Vec<Violation> {
    let mut v = Validator {
        root: schema,
        out: Vec::new(),
    };
    v.check(node, schema, &FieldPath::root());
    v.out
}

struct Validator<'s> {
    root: &'s Value,
    out: Vec<Violation>,
}

fn node_type_ok(n: &Node, ty: &str) -> bool {
    matches!(
        (n, ty),
        (Node::Null, "null")
            | (Node::Bool(_), "boolean")
            | (Node::Int(_), "integer" | "number")
            | (Node::Float(_), "number")
            | (Node::Str(_), "string")
            | (Node::Seq(_), "array")
            | (Node::Map(_), "object")
    )
}

impl<'s> Validator<'s> {
    fn resolve(&self, mut s: &'s Value) -> &'s Value {
        for _ in 0..16 {
            match s.get("$ref").and_then(Value::as_str) {
                Some(r) => {
                    let name = r.trim_start_matches("#/$defs/");
                    match self.root.get("$defs").and_then(|d| d.get(name)) {
                        Some(t) => s = t,
                        None => return s,
                    }
                }
                None => return s,
            }
        }
        s
    }

    fn push(
        &mut self,
        node: &SpannedNode,
        path: &FieldPath,
        message: String,
        hint: Option<String>,
    ) {
        self.out.push(Violation {
            location: loc(node),
            path: path.clone(),
            unknown_field: None,
            message,
            hint,
        });
    }

    /// Branches of an `anyOf`/`oneOf`, if the schema is one.
    fn branches(&self, s: &'s Value) -> Option<&'s Vec<Value>> {
        s.get("anyOf")
            .or_else(|| s.get("oneOf"))
            .and_then(Value::as_array)
    }

    /// The node kinds a schema accepts, for choosing a branch and for messages.
    fn accepts_kind(&self, s: &'s Value, n: &Node) -> bool {
        let s = self.resolve(s);
        if s.as_bool() == Some(true) {
            return true;
        }
        if let Some(bs) = self.branches(s) {
            return bs.iter().any(|b| self.accepts_kind(b, n));
        }
        match s.get("type") {
            Some(Value::String(t)) => node_type_ok(n, t),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| node_type_ok(n, t)),
            _ => s
                .get("const")
                .is_some_and(|c| c.is_string() == matches!(n, Node::Str(_))),
        }
    }

    /// A phrase for what a schema expects: "a duration such as `30s`".
    fn describe(&self, s: &'s Value) -> String {
        let s = self.resolve(s);
        if let Some(bs) = self.branches(s) {
            if let Some(consts) = self.consts(bs) {
                return format!("one of {}", consts.join(", "));
            }
            let parts: Vec<String> = bs
                .iter()
                .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"))
                .map(|b| self.describe(b))
                .collect();
            return parts.join(" or ");
        }
        if let Some(f) = s.get("format").and_then(Value::as_str) {
            match f {
                "duration" => return "a duration such as `30s` or `5m`".into(),
                "size" => return "a size such as `1KiB`".into(),
                "jitter" => return "a jitter such as `10%` or `30s`".into(),
                "template" => return "a template string".into(),
                "expression" => return "a condition string".into(),
                "ttl" => return "a TTL (a duration such as `5m`, or a class name)".into(),
                _ => {}
            }
        }
        let ty = match s.get("type") {
            Some(Value::String(t)) => t.as_str(),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .find(|t| *t != "null")
                .unwrap_or("null"),
            _ => "",
        };
        match ty {
            "object" => "a map".into(),
            "array" => "a list".into(),
            "string" => "a string".into(),
            "integer" => "an integer".into(),
            "number" => "a number".into(),
            "boolean" => "`true` or `false`".into(),
            _ => "a value".into(),
        }
    }

    fn consts(&self, bs: &'s [Value]) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for b in bs {
            let b = self.resolve(b);
            if b.get("type").and_then(Value::as_str) == Some("null") {
                continue;
            }
            out.push(b.get("const")?.as_str()?.to_owned());
        }
        (!out.is_empty()).then_some(out)
    }

    fn check(&mut self, node: &SpannedNode, schema: &'s Value, path: &FieldPath) {
        let s = self.resolve(schema);
        if s.as_bool() == Some(true) {
            return;
        }
        if let Some(bs) = self.branches(s) {
            return self.check_branches(node, s, bs, path);
        }
        let type_ok = match s.get("type") {
            Some(Value::String(t)) => node_type_ok(&node.value, t),
            Some(Value::Array(ts)) => ts
                .iter()
                .filter_map(Value::as_str)
                .any(|t| node_type_ok(&node.value, t)),
            _ => true,
        };
        if !type_ok {
            let hint = self.type_hint(node, s);
            let found = kind(&node.value);
            let expected = self.describe(s);
            return self.push(
                node,
                path,
                format!("expected {expected}, found {found}"),
                hint,
            );
        }
        if let Some(c) = s.get("const")
            && crate::source::to_json(&node.value) != *c
        {
            return self.push(node, path, format!("expected `{c}`"), None);
        }
        match &node.value {
            Node::Str(text) => self.check_format(node, s, text, path),
            Node::Int(i) => {
                if let Some(min) = s.get("minimum").and_then(Value::as_i64)
                    && *i < min
                {
                    return self.push(node, path, format!("{i} is below the minimum {min}"), None);
                }
                if let Some(max) = s.get("maximum").and_then(Value::as_i64)
                    && *i > max
                {
                    self.push(node, path, format!("{i} is above the maximum {max}"), None)
                }
            }
            Node::Seq(items) => {
                if let Some(item_schema) = s.get("items") {
                    for (i, it) in items.iter().enumerate() {
                        self.check(it, item_schema, &path.at(i));
                    }
                }
            }
            Node::Map(entries) => self.check_map(node, entries, s, path),
            _ => {}
        }
    }

    fn type_hint(&self, node: &SpannedNode, s: &'s Value) -> Option<String> {
        let s = self.resolve(s);
        if let Some(bs) = self.branches(s) {
            return bs.iter().find_map(|b| self.type_hint(node, b));
        }
        let format = s.get("format").and_then(Value::as_str);
        match (&node.value, format) {
            (Node::Int(i), Some("duration" | "ttl" | "jitter")) => {
                Some(format!("durations carry a unit: write `{i}s`"))
            }
            (Node::Int(i), Some("size")) => {
                Some(format!("sizes carry a unit: write `{i}B` or `{i}KiB`"))
            }
            (Node::Map(_), Some("template" | "expression")) => {
                Some("quote text that starts with `{`: YAML reads `{...}` as a map".into())
            }
            (Node::Str(_), _) if self.describe(s) == "a list" => {
                Some("write a list: `[item]` or one `- item` per line".into())
            }
            _ => None,
        }
    }

    fn check_format(&mut self, node: &SpannedNode, s: &'s Value, text: &str, path: &FieldPath) {
        let Some(format) = s.get("format").and_then(Value::as_str) else {
            return;
        };
        let err = match format {
            "duration" => text
                .parse::<crate::units::Duration>()
                .err()
                .map(|e| e.to_string()),
            "size" => text
                .parse::<crate::units::Size>()
                .err()
                .map(|e| e.to_string()),
            "jitter" => text
                .parse::<crate::units::Jitter>()
                .err()
                .map(|e| e.to_string()),
            "template" => crate::template::Template::parse(text)
                .err()
                .map(|e| format!("bad template `{text}`: {}", e.message)),
            "expression" => crate::expr::Expr::parse(text).err().map(|e| {
                format!(
                    "bad condition `{text}`: {} (at character {})",
                    e.message,
                    e.offset + 1
                )
            }),
            "ttl" => {
                let t = text.trim();
                if t.is_empty() {
                    Some("empty TTL; write a duration such as `5m` or a class name".into())
                } else if t.starts_with(|c: char| c.is_ascii_digit()) {
                    t.parse::<crate::units::Duration>()
                        .err()
                        .map(|e| e.to_string())
                } else {
                    None
                }
            }
            _ => None,
        };
        if let Some(message) = err {
            let hint = match format {
                "duration" | "ttl" | "jitter" => crate::units::suggest_duration(text)
                    .map(|d| format!("did you mean `{d}`?"))
                    .or_else(|| {
                        Some(
                            "write a number and a unit (ms, s, m, h, d), e.g. `30s`, `5m`, `1h30m`"
                                .into(),
                        )
                    }),
                "size" => crate::units::suggest_size(text)
                    .map(|d| format!("did you mean `{d}`?"))
                    .or_else(|| {
                        Some(
                            "write a number and a unit (B, KB, KiB, MB, MiB, GB, GiB), e.g. `1KiB`"
                                .into(),
                        )
                    }),
                _ => None,
            };
            self.push(node, path, message, hint);
        }
    }

    fn check_map(
        &mut self,
        node: &SpannedNode,
        entries: &[(SpannedNode, SpannedNode)],
        s: &'s Value,
        path: &FieldPath,
    ) {
        let props = s.get("properties").and_then(Value::as_object);
        let additional = s.get("additionalProperties");
        for (k, v) in entries {
            let Some(key) = k.value.as_str() else {
                self.push(
                    k,
                    path,
                    format!("map keys must be strings, found {}", kind(&k.value)),
                    None,
                );
                continue;
            };
            if let Some(p) = props.and_then(|p| p.get(key)) {
                self.check(v, p, &path.at(key));
                continue;
            }
            match additional {
                Some(Value::Bool(false)) => {
                    let names: Vec<&str> = props
                        .map(|p| p.keys().map(String::as_str).collect())
                        .unwrap_or_default();
                    let hint = did_you_mean(key, names.iter().copied()).or_else(|| {
                        (!names.is_empty())
                            .then(|| format!("expected one of: {}", names.join(", ")))
                    });
                    let at = if path.0.is_empty() {
                        String::new()
                    } else {
                        format!(" in `{path}`")
                    };
                    self.push(k, path, format!("unknown field `{key}`{at}"), hint);
                    if let Some(v) = self.out.last_mut() {
                        v.unknown_field = Some(key.to_owned());
                    }
                }
                Some(schema @ Value::Object(_)) => self.check(v, schema, &path.at(key)),
                _ => {}
            }
        }
        if let Some(req) = s.get("required").and_then(Value::as_array) {
            for r in req.iter().filter_map(Value::as_str) {
                if node.value.get(r).is_none() {
                    let at = if path.0.is_empty() {
                        "the file".to_owned()
                    } else {
                        format!("`{path}`")
                    };
                    self.push(node, path, format!("missing field `{r}` in {at}"), None);
                }
            }
        }
    }

    fn check_branches(
        &mut self,
        node: &SpannedNode,
        s: &'s Value,
        bs: &'s [Value],
        path: &FieldPath,
    ) {
        if let Some(consts) = self.consts(bs) {
            if matches!(node.value, Node::Null)
                && bs
                    .iter()
                    .any(|b| self.resolve(b).get("type").and_then(Value::as_str) == Some("null"))
            {
                return;
            }
            let text = match &node.value {
                Node::Str(t) => t.clone(),
                other => {
                    return self.push(
                        node,
                        path,
                        format!(
                            "expected one of {}, found {}",
                            consts.join(", "),
                            kind(other)
                        ),
                        None,
                    );
                }
            };
            if !consts.contains(&text) {
                let hint = did_you_mean(&text, consts.iter().map(String::as_str))
                    .or_else(|| Some(format!("expected one of: {}", consts.join(", "))));
                self.push(node, path, format!("unknown value `{text}`"), hint);
            }
            return;
        }
        let candidates: Vec<&'s Value> = bs
            .iter()
            .filter(|b| self.accepts_kind(b, &node.value))
            .collect();
        match candidates.len() {
            0 => {
                let expected = self.describe(s);
                let hint = self.type_hint(node, s);
                self.push(
                    node,
                    path,
                    format!("expected {expected}, found {}", kind(&node.value)),
                    hint,
                );
            }
            _ => {
                let mut best: Option<Vec<Violation>> = None;
                for c in &candidates {
                    let mut sub = Validator {
                        root: self.root,
                        out: Vec::new(),
                    };
                    sub.check(node, c, path);
                    if best.as_ref().is_none_or(|b| sub.out.len() < b.len()) {
                        best = Some(sub.out);
                    }
                }
                let best = best.unwrap_or_default();
                if !best.is_empty()
                    && let Some(quoted) = self.unquoted_template_branch(node, bs)
                {
                    return self.check(node, quoted, path);
                }
                self.out.extend(best);
            }
        }
    }

    /// `- {tenant}` is YAML for the map `{tenant: null}`. Where a template (or condition)
    /// string is one of the choices, a map that fits none of the map choices and has only
    /// keys without values is that string left unquoted: the string branch's "quote it"
    /// hint helps more than the map branch's missing fields.
    fn unquoted_template_branch(&self, node: &SpannedNode, bs: &'s [Value]) -> Option<&'s Value> {
        let Node::Map(entries) = &node.value else {
            return None;
        };
        if entries.is_empty() || !entries.iter().all(|(_, v)| matches!(v.value, Node::Null)) {
            return None;
        }
        bs.iter()
            .find(|b| !self.accepts_kind(b, &node.value) && self.type_hint(node, b).is_some())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::source::parse;

    fn errors(y: &str) -> Vec<String> {
        let n = parse(y).unwrap();
        let mut v = validate(&n, &crate::spec::json_schema());
        v.sort_by_key(|v| v.location);
        v.into_iter()
            .map(|v| {
                format!(
                    "{}:{} {}{}",
                    v.location.line,
                    v.location.col,
                    v.message,
                    v.hint.map(|h| format!(" ({h})")).unwrap_or_default()
                )
            })
            .collect()
    }

    #[test]
    fn reports_every_violation() {
        let e = errors(
            "version: 1\nrules:\n  - name: a\n    match: { plugin: p }\n    tll: 5m\n  - name: b\n    match: { plugin: p }\n    ttl: 30\n    store: hybird\n",
        );
        assert_eq!(
            e,
            vec![
                "5:5 unknown field `tll` in `rules[0]` (did you mean `ttl`?)".to_string(),
                "8:10 expected a TTL (a duration such as `5m`, or a class name) or a map, found an integer (durations carry a unit: write `30s`)".to_string(),
                "9:12 unknown value `hybird` (did you mean `hybrid`?)".to_string(),
            ]
        );
    }

    #[test]
    fn checks_formats_and_required_fields() {
        let e = errors(
            "version: 1\nrules:\n  - match: { plugin: p }\n    key: \"a:{qury.x}\"\n    ttl: 5 minutes\n",
        );
        assert_eq!(e.len(), 3, "{e:?}");
        assert!(e[0].contains("missing field `name`"), "{e:?}");
        assert!(e[1].contains("did you mean `query`"), "{e:?}");
        assert!(e[2].contains("unknown duration unit `minutes`"), "{e:?}");
    }

    #[test]
    fn valid_file_passes() {
        let e = errors(
            "version: 1\nttl_classes: { a: 1m }\ndefaults: { ttl: a, store: memory }\nrules:\n  - name: x\n    match: { plugin: p, operation: o }\n    ttl: { class: a, when: [ { if: \"query.d < today\", ttl: 1d } ] }\n    compression: false\nwarming:\n  - name: w\n    requests: [ \"GET /x?id={id}\" ]\n    params: { id: [1, 2], d: { days: 3 }, r: { from: 1, to: 3 } }\n",
        );
        assert!(e.is_empty(), "{e:?}");
    }
}
