//! The YAML source tree: every node with its line and column.
//!
//! Each file is first read into this generic tree (not into the policy types), so that
//! validation can visit every node and report every problem with its position, and later
//! compile steps can map a field path (`rules[3].key`) back to a line.

use crate::diag::Location;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;
use std::fmt;

/// A YAML value; children carry their positions.
#[derive(Debug, Clone)]
pub enum Node {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

impl<'de> Deserialize<'de> for Node {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Node;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any YAML value")
            }
            fn visit_unit<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_none<E>(self) -> Result<Node, E> {
                Ok(Node::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node, D::Error> {
                Node::deserialize(d)
            }
            fn visit_bool<E>(self, v: bool) -> Result<Node, E> {
                Ok(Node::Bool(v))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Node, E> {
                Ok(Node::Int(v))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Node, E> {
                Ok(i64::try_from(v)
                    .map(Node::Int)
                    .unwrap_or(Node::Float(v as f64)))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Node, E> {
                Ok(Node::Float(v))
            }
            fn visit_str<E>(self, v: &str) -> Result<Node, E> {
                Ok(Node::Str(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<Node, E> {
                Ok(Node::Str(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(x) = a.next_element::<Spanned<Node>>()? {
                    v.push(x);
                }
                Ok(Node::Seq(v))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Node, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = a.next_key::<Spanned<Node>>()? {
                    let val = a.next_value::<Spanned<Node>>()?;
                    v.push((k, val));
                }
                Ok(Node::Map(v))
            }
        }
        d.deserialize_any(V)
    }
}

/// A node with its position.
pub type SpannedNode = Spanned<Node>;

/// One step of a field path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seg {
    /// A map key.
    Key(String),
    /// A list index.
    Index(usize),
}

impl From<&str> for Seg {
    fn from(s: &str) -> Self {
        Seg::Key(s.to_owned())
    }
}

impl From<usize> for Seg {
    fn from(i: usize) -> Self {
        Seg::Index(i)
    }
}

/// A field path such as `rules[3].ttl.when[0].if`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldPath(pub Vec<Seg>);

impl FieldPath {
    /// The root.
    pub fn root() -> Self {
        FieldPath(Vec::new())
    }

    /// This path plus one step.
    pub fn at(&self, seg: impl Into<Seg>) -> FieldPath {
        let mut v = self.0.clone();
        v.push(seg.into());
        FieldPath(v)
    }
}

impl std::fmt::Display for FieldPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, s) in self.0.iter().enumerate() {
            match s {
                Seg::Key(k) if i == 0 => write!(f, "{k}")?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// The position of a node.
pub fn loc(n: &SpannedNode) -> Location {
    Location {
        line: n.referenced.line() as u32,
        col: n.referenced.column() as u32,
    }
}

/// A short description of a node's kind, for messages.
pub fn kind(n: &Node) -> &'static str {
    match n {
        Node::Null => "nothing (null)",
        Node::Bool(_) => "a boolean",
        Node::Int(_) => "an integer",
        Node::Float(_) => "a number",
        Node::Str(_) => "a string",
        Node::Seq(_) => "a list",
        Node::Map(_) => "a map",
    }
}

impl Node {
    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Node::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The value under `key`, if this is a map that has it.
    pub fn get(&self, key: &str) -> Option<&SpannedNode> {
        match self {
            Node::Map(m) => m
                .iter()
                .find(|(k, _)| k.value.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The key node for `key`, if this is a map that has it.
    pub fn get_key(&self, key: &str) -> Option<&SpannedNode> {
        match self {
            Node::Map(m) => m
                .iter()
                .find(|(k, _)| k.value.as_str() == Some(key))
                .map(|(k, _)| k),
            _ => None,
        }
    }
}

/// The position of the value at `path`, or of the deepest ancestor that exists.
pub fn locate(root: &SpannedNode, path: &FieldPath) -> Location {
    let mut cur = root;
    for seg in &path.0 {
        let next = match (seg, &cur.value) {
            (Seg::Key(k), n) => n.get(k),
            (Seg::Index(i), Node::Seq(v)) => v.get(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => break,
        }
    }
    loc(cur)
}

/// The position of the key naming the value at `path` (for "unknown entry" errors, which
/// point at the name); the value's own position when the last step is not a map key.
pub fn locate_key(root: &SpannedNode, path: &FieldPath) -> Location {
    let Some((Seg::Key(last), parent)) = path.0.split_last() else {
        return locate(root, path);
    };
    let mut cur = root;
    for seg in parent {
        let next = match (seg, &cur.value) {
            (Seg::Key(k), n) => n.get(k),
            (Seg::Index(i), Node::Seq(v)) => v.get(*i),
            _ => None,
        };
        match next {
            Some(n) => cur = n,
            None => return loc(cur),
        }
    }
    cur.value.get_key(last).map_or_else(|| loc(cur), loc)
}

/// Converts a node to JSON (map keys become strings).
pub fn to_json(n: &Node) -> serde_json::Value {
    use serde_json::Value;
    match n {
        Node::Null => Value::Null,
        Node::Bool(b) => Value::Bool(*b),
        Node::Int(i) => Value::from(*i),
        Node::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .unwrap_or(Value::Null),
        Node::Str(s) => Value::String(s.clone()),
        Node::Seq(v) => Value::Array(v.iter().map(|x| to_json(&x.value)).collect()),
        Node::Map(m) => Value::Object(
            m.iter()
                .map(|(k, v)| (key_text(&k.value), to_json(&v.value)))
                .collect(),
        ),
    }
}

/// A map key as text.
pub fn key_text(n: &Node) -> String {
    match n {
        Node::Str(s) => s.clone(),
        other => to_json(other).to_string(),
    }
}

/// A YAML syntax error: message and position.
#[derive(Debug, Clone)]
pub struct SyntaxError {
    /// What the parser said.
    pub message: String,
    /// Where.
    pub location: Location,
}

/// Parses YAML text into a tree. An empty document is `Null`.
pub fn parse(text: &str) -> Result<SpannedNode, SyntaxError> {
    let mut tree = serde_saphyr::from_str::<SpannedNode>(text).map_err(|e| {
        let location = e
            .location()
            .map(|l| Location {
                line: l.line() as u32,
                col: l.column() as u32,
            })
            .unwrap_or_default();
        let full = e.to_string();
        let first = full.lines().next().unwrap_or("invalid YAML");
        let first = first.strip_prefix("error: ").unwrap_or(first);
        // "line 2 column 1: duplicate mapping key: a, set DuplicateKeyPolicy ..." → the message.
        let msg = match first.split_once(": ") {
            Some((pos, rest)) if pos.starts_with("line ") => rest,
            _ => first,
        };
        let msg = msg.split(", set DuplicateKeyPolicy").next().unwrap_or(msg);
        SyntaxError {
            message: msg.to_owned(),
            location,
        }
    })?;
    restore_scalar_keys(&mut tree, text);
    Ok(tree)
}

/// YAML 1.1 reads the key `on:` (as in `triggers: [{ on: ... }]`) as the boolean `true`.
/// Map keys are always names in a policy, so non-string scalar keys get their source text
/// back.
fn restore_scalar_keys(node: &mut SpannedNode, text: &str) {
    match &mut node.value {
        Node::Seq(items) => items.iter_mut().for_each(|n| restore_scalar_keys(n, text)),
        Node::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                if matches!(
                    k.value,
                    Node::Bool(_) | Node::Int(_) | Node::Float(_) | Node::Null
                ) {
                    let span = k.referenced.span();
                    if let (Some(off), Some(len)) = (span.byte_offset(), span.byte_len())
                        && let Some(src) = text.get(off as usize..(off + len) as usize)
                    {
                        k.value = Node::Str(src.trim().to_owned());
                    }
                }
                restore_scalar_keys(v, text);
            }
        }
        _ => {}
    }
}

/// Removes what failed validation so the rest of a file can still be compiled (and its
/// other mistakes reported): unknown fields are dropped; any other violation removes the
/// enclosing item of `rules`/`triggers`/`warming`, or the top-level section. Returns false
/// when the violation is at the root and nothing sensible remains.
pub fn prune(root: &mut SpannedNode, violations: &[(FieldPath, Option<String>)]) -> bool {
    let mut items: Vec<(String, usize)> = Vec::new();
    let mut sections: Vec<String> = Vec::new();
    // A bad TTL class drops that class only: the others still compile, so rules naming
    // them are checked too.
    let mut classes: Vec<String> = Vec::new();
    for (path, unknown) in violations {
        if let Some(field) = unknown {
            if let Some(Node::Map(entries)) = node_at_mut(root, path).map(|n| &mut n.value) {
                entries.retain(|(k, _)| k.value.as_str() != Some(field.as_str()));
            }
            continue;
        }
        match path.0.as_slice() {
            [] => return false,
            [Seg::Key(s), Seg::Index(i), ..]
                if matches!(s.as_str(), "rules" | "triggers" | "warming") =>
            {
                items.push((s.clone(), *i))
            }
            [Seg::Key(s), Seg::Key(name), ..] if s == "ttl_classes" => classes.push(name.clone()),
            [Seg::Key(s), ..] => sections.push(s.clone()),
            _ => return false,
        }
    }
    items.sort_by(|a, b| b.cmp(a));
    items.dedup();
    for (section, i) in items {
        if let Some(Node::Seq(v)) = root.value.get_mut(&section).map(|n| &mut n.value)
            && i < v.len()
        {
            v.remove(i);
        }
    }
    if let Some(Node::Map(entries)) = root.value.get_mut("ttl_classes").map(|n| &mut n.value) {
        entries.retain(|(k, _)| !classes.iter().any(|c| k.value.as_str() == Some(c.as_str())));
    }
    if let Node::Map(entries) = &mut root.value {
        entries.retain(|(k, _)| {
            !sections
                .iter()
                .any(|s| k.value.as_str() == Some(s.as_str()))
        });
    }
    true
}

fn node_at_mut<'a>(root: &'a mut SpannedNode, path: &FieldPath) -> Option<&'a mut SpannedNode> {
    let mut cur = root;
    for seg in &path.0 {
        cur = match (seg, &mut cur.value) {
            (Seg::Key(k), n) => n.get_mut(k)?,
            (Seg::Index(i), Node::Seq(v)) => v.get_mut(*i)?,
            _ => return None,
        };
    }
    Some(cur)
}

impl Node {
    fn get_mut(&mut self, key: &str) -> Option<&mut SpannedNode> {
        match self {
            Node::Map(m) => m
                .iter_mut()
                .find(|(k, _)| k.value.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locates_paths() {
        let y = "version: 1\nrules:\n  - name: a\n    ttl: 5m\n";
        let n = parse(y).unwrap();
        let p = FieldPath::root().at("rules").at(0).at("ttl");
        assert_eq!(p.to_string(), "rules[0].ttl");
        assert_eq!(locate(&n, &p), Location { line: 4, col: 10 });
        assert_eq!(
            locate(&n, &FieldPath::root().at("rules").at(0).at("nope")),
            Location { line: 3, col: 5 }
        );
    }

    #[test]
    fn syntax_errors_have_positions() {
        let e = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(e.message, "duplicate mapping key: a");
        assert_eq!(e.location, Location { line: 2, col: 1 });
        assert!(parse("a: [1\n").is_err());
        assert!(matches!(parse("").unwrap().value, Node::Null));
        let n = parse("- on: x\n  yes: 1\n").unwrap();
        let Node::Seq(items) = &n.value else { panic!() };
        assert_eq!(
            items[0].value.get("on").and_then(|v| v.value.as_str()),
            Some("x")
        );
        assert!(items[0].value.get("yes").is_some());
    }
}
