//! Compression settings of cached entries and content negotiation.

use crate::spec::{Algorithm, CompressionSpec};
use crate::units::Size;

/// Resolved compression settings (global, or a rule's override).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compression {
    /// Compress at all.
    pub enabled: bool,
    /// Algorithms in order of preference.
    pub algorithms: Vec<Algorithm>,
    /// Level 1–11, clamped per algorithm by [`Compression::level_for`].
    pub level: u32,
    /// Smaller bodies stay uncompressed.
    pub min_size: Size,
    /// Content-type globs that are compressed.
    pub include: Vec<String>,
    /// Content-type globs never compressed (wins over `include`).
    pub exclude: Vec<String>,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            enabled: true,
            algorithms: vec![Algorithm::Br, Algorithm::Zstd, Algorithm::Gzip],
            level: 6,
            min_size: Size::from_bytes(1024),
            include: [
                "text/*",
                "application/json",
                "application/*+json",
                "application/javascript",
                "application/xml",
                "application/*+xml",
                "application/yaml",
            ]
            .map(String::from)
            .to_vec(),
            exclude: [
                "image/*",
                "video/*",
                "audio/*",
                "font/woff2",
                "application/zip",
                "application/gzip",
                "application/zstd",
                "application/octet-stream",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

impl Compression {
    /// `self` with the fields set in `spec` replaced.
    pub fn overridden(&self, spec: &CompressionSpec) -> Compression {
        Compression {
            enabled: spec.enabled.unwrap_or(self.enabled),
            algorithms: spec
                .algorithms
                .clone()
                .unwrap_or_else(|| self.algorithms.clone()),
            level: spec.level.unwrap_or(self.level),
            min_size: spec.min_size.unwrap_or(self.min_size),
            include: spec.include.clone().unwrap_or_else(|| self.include.clone()),
            exclude: spec.exclude.clone().unwrap_or_else(|| self.exclude.clone()),
        }
    }

    /// Whether a body of `content_type` and `len` bytes should be stored compressed.
    pub fn should_compress(&self, content_type: &str, len: u64) -> bool {
        if !self.enabled || self.algorithms.is_empty() || len < self.min_size.bytes() {
            return false;
        }
        let ct = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if self.exclude.iter().any(|g| glob_match(g, &ct)) {
            return false;
        }
        self.include.iter().any(|g| glob_match(g, &ct))
    }

    /// The level for `alg`: brotli 0–11, zstd 1–22, gzip/deflate 1–9.
    pub fn level_for(&self, alg: Algorithm) -> u32 {
        match alg {
            Algorithm::Br => self.level.min(11),
            Algorithm::Zstd => self.level.clamp(1, 22),
            Algorithm::Gzip | Algorithm::Deflate => self.level.clamp(1, 9),
        }
    }

    /// The preferred algorithm the client accepts, from `Accept-Encoding` with q-values.
    /// Our preference order decides among accepted ones; `q=0` refuses; `*` accepts the rest.
    pub fn negotiate(&self, accept_encoding: &str) -> Option<Algorithm> {
        self.algorithms
            .iter()
            .copied()
            .find(|a| accept_weight(accept_encoding, a.token()) > 0.0)
    }
}

/// The client's weight (`q`) for the content coding `token` under an `Accept-Encoding`
/// header, per RFC 9110 §12.5.3: an explicit entry wins, then `*`; `identity` is acceptable
/// unless refused, any other coding only if listed. Tokens compare case-insensitively, and
/// `x-gzip` is `gzip`. The one parser of the header: negotiation of what is stored and of
/// which variant to make both read it here.
pub fn accept_weight(header: &str, token: &str) -> f32 {
    let same = |listed: &str| {
        listed.eq_ignore_ascii_case(token)
            || (listed.eq_ignore_ascii_case("x-gzip") && token.eq_ignore_ascii_case("gzip"))
    };
    let mut star = None;
    for item in header.split(',') {
        let mut parts = item.split(';');
        let listed = parts.next().unwrap_or("").trim();
        if listed.is_empty() {
            continue;
        }
        let q = parts
            .filter_map(|p| {
                let (k, v) = p.split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .next()
            .unwrap_or(1.0)
            .clamp(0.0, 1.0);
        if listed == "*" {
            star = Some(q);
        } else if same(listed) {
            return q;
        }
    }
    match star {
        Some(q) => q,
        None if token.eq_ignore_ascii_case("identity") => 1.0,
        None => 0.0,
    }
}

/// `*` matches any run of characters; everything else literally (case-insensitive input is
/// expected to be lower-cased already).
pub fn glob_match(pattern: &str, text: &str) -> bool {
    let p = pattern.to_ascii_lowercase();
    let (p, t) = (p.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let (mut star, mut mark) = (None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == t[ti] || p[pi] == b'?') {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == b'*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accept_weights_follow_rfc_9110() {
        assert_eq!(accept_weight("gzip", "identity"), 1.0);
        assert_eq!(accept_weight("gzip, identity;q=0", "identity"), 0.0);
        assert_eq!(accept_weight("*;q=0", "identity"), 0.0);
        assert_eq!(accept_weight("ZSTD;Q=0.3", "zstd"), 0.3);
        assert_eq!(accept_weight("x-gzip", "gzip"), 1.0);
        assert_eq!(accept_weight("*;q=0.5, zstd;q=0", "zstd"), 0.0);
        assert_eq!(accept_weight("*;q=0.5, zstd;q=0", "br"), 0.5);
        assert_eq!(accept_weight("br", "gzip"), 0.0);
    }

    #[test]
    fn decides_by_type_and_size() {
        let c = Compression::default();
        assert!(c.should_compress("application/json; charset=utf-8", 4096));
        assert!(!c.should_compress("application/json", 100));
        assert!(!c.should_compress("image/png", 1 << 20));
        assert!(c.should_compress("application/problem+json", 4096));
        assert!(!c.should_compress("application/x-unknown", 4096));
    }

    #[test]
    fn negotiates_with_q_values() {
        let c = Compression::default();
        assert_eq!(c.negotiate("gzip, br"), Some(Algorithm::Br));
        assert_eq!(c.negotiate("gzip;q=1.0, br;q=0"), Some(Algorithm::Gzip));
        assert_eq!(c.negotiate("identity"), None);
        assert_eq!(c.negotiate("*"), Some(Algorithm::Br));
        assert_eq!(c.negotiate("*, br;q=0"), Some(Algorithm::Zstd));
    }

    #[test]
    fn globs() {
        assert!(glob_match("image/*", "image/png"));
        assert!(glob_match("application/*+json", "application/ld+json"));
        assert!(!glob_match("text/*", "application/json"));
    }
}
