//! The storage abstraction: a small trait, Pingora-sized, with two implementations.
//!
//! - [`crate::memory::MemoryStore`]: L1, in-process, bounded in bytes.
//! - [`crate::redis::RedisStore`]: L2, shared by every instance.
//!
//! Stores only keep and find entries; freshness policy, coalescing and stale serving live
//! in [`crate::Cache`], which uses the concrete stores directly so the hit path stays a
//! plain function call.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use crate::entry::Entry;
use crate::error::StoreError;

/// Which layer answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Layer {
    /// The in-process cache.
    L1,
    /// Redis.
    L2,
}

impl Layer {
    /// Lower-case name for headers and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Layer::L1 => "l1",
            Layer::L2 => "l2",
        }
    }
}

/// An entry a store found, and where.
#[derive(Debug, Clone)]
pub struct Found {
    /// The entry (shared; cloning is an `Arc` clone).
    pub entry: Arc<Entry>,
    /// The layer it came from.
    pub layer: Layer,
}

/// What to invalidate. Purging everything needs the explicit [`Purge::All`]: a pattern of
/// `*` is a pattern like any other, and callers are expected to refuse it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purge {
    /// These exact keys.
    Keys(Vec<String>),
    /// Every entry carrying any of these tags (indexed: no scan of all keys).
    Tags(Vec<String>),
    /// Keys matching a Redis-style glob (`*`, `?`, `[a-z]`, `\` escapes); SCAN-based.
    Pattern(String),
    /// Everything under this cache's prefix.
    All,
}

/// One key in a listing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct KeyInfo {
    /// The cache key.
    pub key: String,
    /// How long the store keeps it (freshness plus stale windows); `None` if unknown.
    pub expires_in_ms: Option<u64>,
    /// How long it stays fresh (the rule's TTL left; 0 once only a stale window keeps it);
    /// `None` if unknown.
    pub fresh_for_ms: Option<u64>,
    /// Which layer listed it.
    pub layer: Layer,
}

/// A cache storage backend.
///
/// Futures are `Send` so the engine can spawn store work (L2 writes happen off the
/// response path).
pub trait Store: Send + Sync + 'static {
    /// Finds an entry that is still worth having (fresh or within a stale window).
    fn get(&self, key: &str) -> impl Future<Output = Result<Option<Found>, StoreError>> + Send;

    /// Stores an entry; the store keeps it until [`Entry::retain_until_ms`]. Entries with tags
    /// are indexed atomically with the write.
    fn set(
        &self,
        key: &str,
        entry: Arc<Entry>,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;

    /// Removes one key; true if it was there (best effort for remote stores).
    fn delete(&self, key: &str) -> impl Future<Output = Result<bool, StoreError>> + Send;

    /// Invalidates by keys, tags, pattern or everything; returns how many entries went.
    fn purge(&self, target: &Purge) -> impl Future<Output = Result<u64, StoreError>> + Send;

    /// Lists up to `limit` keys matching a glob, with their remaining lifetime.
    fn keys(
        &self,
        pattern: &str,
        limit: usize,
    ) -> impl Future<Output = Result<Vec<KeyInfo>, StoreError>> + Send;
}

/// Matches `s` against a Redis-style glob (`*`, `?`, `[...]` with ranges and `^`/`!`
/// negation, `\` escape), so L1 pattern purges select the same keys as Redis's SCAN MATCH.
pub fn glob_match(pattern: &str, s: &str) -> bool {
    let (p, s) = (pattern.as_bytes(), s.as_bytes());
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() {
            match p[pi] {
                b'*' => {
                    star = Some((pi, si));
                    pi += 1;
                    continue;
                }
                b'?' => {
                    pi += 1;
                    si += 1;
                    continue;
                }
                b'[' => {
                    if let Some((matched, next)) = class_match(p, pi, s[si])
                        && matched
                    {
                        pi = next;
                        si += 1;
                        continue;
                    }
                }
                b'\\' if pi + 1 < p.len() => {
                    if p[pi + 1] == s[si] {
                        pi += 2;
                        si += 1;
                        continue;
                    }
                }
                c => {
                    if c == s[si] {
                        pi += 1;
                        si += 1;
                        continue;
                    }
                }
            }
        }
        match star {
            Some((sp, ss)) => {
                pi = sp + 1;
                si = ss + 1;
                star = Some((sp, ss + 1));
            }
            None => return false,
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Matches one byte against the class starting at `p[start] == '['`; returns whether it
/// matched and the index after the class, or `None` for an unterminated class.
fn class_match(p: &[u8], start: usize, c: u8) -> Option<(bool, usize)> {
    let mut i = start + 1;
    let negate = i < p.len() && (p[i] == b'^' || p[i] == b'!');
    if negate {
        i += 1;
    }
    let mut matched = false;
    let mut first = true;
    while i < p.len() && (p[i] != b']' || first) {
        first = false;
        let mut lo = p[i];
        if lo == b'\\' && i + 1 < p.len() {
            i += 1;
            lo = p[i];
        }
        if i + 2 < p.len() && p[i + 1] == b'-' && p[i + 2] != b']' {
            let hi = p[i + 2];
            let (a, b) = if lo <= hi { (lo, hi) } else { (hi, lo) };
            matched |= (a..=b).contains(&c);
            i += 3;
        } else {
            matched |= lo == c;
            i += 1;
        }
    }
    if i >= p.len() {
        return None;
    }
    Some((matched != negate, i + 1))
}

/// Escapes glob metacharacters so a literal (our key prefix) can start a SCAN pattern.
pub fn glob_escape(literal: &str) -> String {
    let mut out = String::with_capacity(literal.len());
    for ch in literal.chars() {
        if matches!(ch, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(ch);
    }
    out
}

/// Converts a retention into the `expires_in_ms` of a [`KeyInfo`].
pub(crate) fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn glob() {
        assert!(glob_match("*", ""));
        assert!(glob_match(
            "booking:slots:42:*",
            "booking:slots:42:2024-01-01"
        ));
        assert!(!glob_match("booking:slots:42:*", "booking:slots:421:x"));
        assert!(glob_match("a?c", "abc"));
        assert!(!glob_match("a?c", "ac"));
        assert!(glob_match("a[bc]d", "acd"));
        assert!(!glob_match("a[^bc]d", "acd"));
        assert!(glob_match("a[0-9]*", "a7zz"));
        assert!(glob_match("a\\*b", "a*b"));
        assert!(!glob_match("a\\*b", "axb"));
        assert!(glob_match("*x*y*", "__x__y"));
        assert!(!glob_match("*x*y*", "__y__x"));
        assert_eq!(glob_escape("la*r[d]"), "la\\*r\\[d\\]");
        assert!(glob_match(&glob_escape("a*b?"), "a*b?"));
    }
}
