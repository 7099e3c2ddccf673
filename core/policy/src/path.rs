//! Path templates (`/api/v2/barbers/{id}/slots`) and the route table compiled from them.
//!
//! Matching walks a segment trie: a request costs one walk over its own segments, never a
//! scan over all rules. Literal segments are tried before parameters, parameters before `*`,
//! and `**` (rest of the path) last, so the most specific template wins.

use std::collections::HashMap;
use std::fmt;

/// One segment of a path template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PathSeg {
    /// Literal text.
    Lit(String),
    /// `{name}`: one segment, captured.
    Param(String),
    /// `*`: one segment.
    Star,
    /// `**`: the rest of the path (last segment only).
    Rest,
}

impl PathSeg {
    /// Higher is more specific.
    fn rank(&self) -> u8 {
        match self {
            PathSeg::Lit(_) => 3,
            PathSeg::Param(_) => 2,
            PathSeg::Star => 1,
            PathSeg::Rest => 0,
        }
    }
}

/// A parsed path template.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PathPattern {
    source: String,
    segs: Vec<PathSeg>,
}

impl PathPattern {
    /// Parses `/a/{id}/b`, `/a/*/b`, `/a/**`.
    pub fn parse(src: &str) -> Result<PathPattern, String> {
        let s = src.trim();
        if !s.starts_with('/') {
            return Err(format!("path `{s}` must start with `/`"));
        }
        let mut segs = Vec::new();
        let parts: Vec<&str> = split(s).collect();
        for (i, part) in parts.iter().enumerate() {
            let seg = if *part == "**" {
                if i + 1 != parts.len() {
                    return Err(format!("`**` must be the last segment of `{s}`"));
                }
                PathSeg::Rest
            } else if *part == "*" {
                PathSeg::Star
            } else if let Some(name) = part.strip_prefix('{').and_then(|p| p.strip_suffix('}')) {
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_alphanumeric() || c == '_' || c == '-')
                {
                    return Err(format!("bad parameter `{part}` in `{s}`; write `{{name}}`"));
                }
                PathSeg::Param(name.to_owned())
            } else if part.contains(['{', '}', '*']) {
                return Err(format!(
                    "segment `{part}` of `{s}` mixes text with a placeholder; a parameter must be a whole segment"
                ));
            } else {
                PathSeg::Lit((*part).to_owned())
            };
            segs.push(seg);
        }
        Ok(PathPattern {
            source: s.to_owned(),
            segs,
        })
    }

    /// The template text.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// The segments.
    pub fn segs(&self) -> &[PathSeg] {
        &self.segs
    }

    /// Parameter names in order.
    pub fn params(&self) -> impl Iterator<Item = &str> {
        self.segs.iter().filter_map(|s| match s {
            PathSeg::Param(p) => Some(p.as_str()),
            _ => None,
        })
    }

    /// Specificity key: compare lexicographically, greater is more specific.
    pub fn specificity(&self) -> Vec<u8> {
        let mut v: Vec<u8> = self.segs.iter().map(PathSeg::rank).collect();
        // A longer literal-free tail beats a `**`; a template without `**` beats one with.
        v.push(if self.segs.last() == Some(&PathSeg::Rest) {
            0
        } else {
            1
        });
        v
    }

    /// Matches a request path; returns the captured parameters.
    pub fn matches(&self, path: &str) -> Option<Vec<(String, String)>> {
        let mut params = Vec::new();
        let mut parts = split(path);
        for seg in &self.segs {
            match seg {
                PathSeg::Rest => return Some(params),
                _ => {
                    let part = parts.next()?;
                    match seg {
                        PathSeg::Lit(l) if l != part => return None,
                        PathSeg::Param(n) => {
                            params.push((n.clone(), crate::request::percent_decode(part)))
                        }
                        _ => {}
                    }
                }
            }
        }
        parts.next().is_none().then_some(params)
    }

    /// Whether every path that `route` (a route's template) matches is matched by `self`.
    pub fn covers(&self, route: &PathPattern) -> bool {
        let mut r = route.segs.iter();
        for seg in &self.segs {
            if *seg == PathSeg::Rest {
                return true;
            }
            let Some(other) = r.next() else {
                return false;
            };
            let ok = match (seg, other) {
                (PathSeg::Lit(a), PathSeg::Lit(b)) => a == b,
                (PathSeg::Lit(_), _) => false,
                (
                    PathSeg::Param(_) | PathSeg::Star,
                    PathSeg::Lit(_) | PathSeg::Param(_) | PathSeg::Star,
                ) => true,
                _ => false,
            };
            if !ok {
                return false;
            }
        }
        r.next().is_none()
    }
}

impl fmt::Display for PathPattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

fn split(path: &str) -> impl Iterator<Item = &str> {
    path.split('/').filter(|s| !s.is_empty())
}

/// A router hit: the template, its value and the captured parameters.
pub type Found<'a, T> = (&'a PathPattern, &'a T, Vec<(String, String)>);

/// A segment trie mapping paths to entries of type `T` (with their patterns).
#[derive(Debug, Clone)]
pub struct Router<T> {
    root: TrieNode,
    entries: Vec<(PathPattern, T)>,
}

#[derive(Debug, Clone, Default)]
struct TrieNode {
    lit: HashMap<String, TrieNode>,
    param: Option<Box<TrieNode>>,
    star: Option<Box<TrieNode>>,
    rest: Vec<usize>,
    here: Vec<usize>,
}

impl<T> Default for Router<T> {
    fn default() -> Self {
        Router {
            root: TrieNode::default(),
            entries: Vec::new(),
        }
    }
}

impl<T> Router<T> {
    /// Adds an entry.
    pub fn insert(&mut self, pattern: PathPattern, value: T) {
        let id = self.entries.len();
        let mut node = &mut self.root;
        for seg in pattern.segs() {
            node = match seg {
                PathSeg::Lit(l) => node.lit.entry(l.clone()).or_default(),
                PathSeg::Param(_) => node.param.get_or_insert_with(Default::default),
                PathSeg::Star => node.star.get_or_insert_with(Default::default),
                PathSeg::Rest => {
                    node.rest.push(id);
                    self.entries.push((pattern, value));
                    return;
                }
            };
        }
        node.here.push(id);
        self.entries.push((pattern, value));
    }

    /// The most specific entry matching `path` for which `accept` holds, with its captured
    /// parameters.
    pub fn find(&self, path: &str, accept: &dyn Fn(&T) -> bool) -> Option<Found<'_, T>> {
        let mut buf: [&str; 24] = [""; 24];
        let mut n = 0;
        let mut overflow = Vec::new();
        for part in split(path) {
            if n < buf.len() {
                buf[n] = part;
                n += 1;
            } else {
                overflow.push(part);
            }
        }
        let id = if overflow.is_empty() {
            self.walk(&self.root, &buf[..n], accept)?
        } else {
            let parts: Vec<&str> = buf.iter().copied().chain(overflow).collect();
            self.walk(&self.root, &parts, accept)?
        };
        let (pat, v) = &self.entries[id];
        let params = pat.matches(path).unwrap_or_default();
        Some((pat, v, params))
    }

    fn walk(&self, node: &TrieNode, parts: &[&str], accept: &dyn Fn(&T) -> bool) -> Option<usize> {
        let pick = |ids: &[usize]| ids.iter().copied().find(|i| accept(&self.entries[*i].1));
        let Some((first, rest)) = parts.split_first() else {
            return pick(&node.here).or_else(|| pick(&node.rest));
        };
        if let Some(n) = node.lit.get(*first)
            && let Some(id) = self.walk(n, rest, accept)
        {
            return Some(id);
        }
        if let Some(n) = &node.param
            && let Some(id) = self.walk(n, rest, accept)
        {
            return Some(id);
        }
        if let Some(n) = &node.star
            && let Some(id) = self.walk(n, rest, accept)
        {
            return Some(id);
        }
        pick(&node.rest)
    }

    /// All entries.
    pub fn entries(&self) -> &[(PathPattern, T)] {
        &self.entries
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn literal_beats_param_beats_rest() {
        let mut r = Router::default();
        r.insert(PathPattern::parse("/a/**").unwrap(), "rest");
        r.insert(PathPattern::parse("/a/{id}").unwrap(), "param");
        r.insert(PathPattern::parse("/a/b").unwrap(), "lit");
        let all = |_: &&str| true;
        assert_eq!(*r.find("/a/b", &all).unwrap().1, "lit");
        let (_, v, p) = r.find("/a/7", &all).unwrap();
        assert_eq!(
            (*v, p),
            ("param", vec![("id".to_string(), "7".to_string())])
        );
        assert_eq!(*r.find("/a/7/8", &all).unwrap().1, "rest");
        assert!(r.find("/b", &all).is_none());
        // Backtracks when the literal branch has no accepted entry.
        assert_eq!(*r.find("/a/b", &|v: &&str| *v != "lit").unwrap().1, "param");
    }

    #[test]
    fn covers_routes() {
        let p = PathPattern::parse("/api/v2/barbers/{id}/slots").unwrap();
        assert!(p.covers(&PathPattern::parse("/api/v2/barbers/{barber_id}/slots").unwrap()));
        assert!(!p.covers(&PathPattern::parse("/api/v2/barbers/{barber_id}").unwrap()));
        assert!(
            PathPattern::parse("/api/v1/**")
                .unwrap()
                .covers(&PathPattern::parse("/api/v1/x/{y}").unwrap())
        );
        assert!(PathPattern::parse("/a/x{y}").is_err());
    }
}
