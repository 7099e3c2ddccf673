//! The store phase: what the origin's answer becomes — an entry (compressed once, with its
//! TTL, tags and ETag), a pass-through (not cacheable), or an origin error (5xx, where a
//! stale copy may stand in).

use std::sync::atomic::Ordering;

use bytes::Bytes;
use larder_policy::{Rule, TtlCondition};
use larder_store::{BodyEncoding, Entry, Loaded, OriginError};
use poem::Response;
use poem::http::header::{self, HeaderName};
use serde_json::Value;
use tracing::Instrument;

use crate::http::compression;
use crate::telemetry::metrics::COMPRESSIONS;

/// What a stored entry needs from the request, worked out before the handler takes it.
pub(crate) struct Pending {
    /// The key the entry is stored under (it also seeds the TTL's jitter).
    pub key: String,
    /// The entry's tags.
    pub tags: Vec<String>,
    /// Which of the rule's `when` conditions held.
    pub condition: TtlCondition,
}

/// Headers never replayed from a stored entry: hop-by-hop, per-response, or ours to set.
fn replayable(name: &HeaderName) -> bool {
    !matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "transfer-encoding"
            | "te"
            | "trailer"
            | "upgrade"
            | "proxy-authenticate"
            | "content-length"
            | "content-encoding"
            | "date"
            | "age"
            | "etag"
            | "cache-control"
            | "expires"
            | "set-cookie"
            | "server-timing"
            | "cache-status"
            | "vary"
            | "access-control-allow-origin"
            | "access-control-expose-headers"
    )
}

fn max_age(cache_control: &str) -> Option<u64> {
    cache_control.split(',').find_map(|d| {
        let (k, v) = d.trim().split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| v.trim().trim_matches('"').parse().ok())?
    })
}

fn directive(cache_control: &str, name: &str) -> bool {
    cache_control.split(',').any(|d| {
        d.trim()
            .split('=')
            .next()
            .unwrap_or("")
            .trim()
            .eq_ignore_ascii_case(name)
    })
}

fn strip_nulls(v: &mut Value) {
    match v {
        Value::Object(map) => {
            map.retain(|_, v| !v.is_null());
            map.values_mut().for_each(strip_nulls);
        }
        Value::Array(items) => items.iter_mut().for_each(strip_nulls),
        _ => {}
    }
}

/// Turns the handler's response into what the engine stores, passes through, or treats as
/// an origin error (5xx: stale-if-error may stand in).
pub(crate) async fn to_loaded(resp: Response, rule: &Rule, pending: Pending) -> Loaded {
    let (parts, body) = resp.into_parts();
    let status = parts.status.as_u16();
    let bytes = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            return Loaded::Error(OriginError::new(format!("reading the origin's body: {e}")));
        }
    };
    let all_headers = |body: Bytes| {
        let mut e = Entry::new(status, body);
        for (name, value) in &parts.headers {
            if name != header::CONTENT_LENGTH {
                e = e.with_header(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
            }
        }
        e
    };
    if status >= 500 {
        return Loaded::Error(OriginError::with_response(
            format!("origin answered {status}"),
            all_headers(bytes),
        ));
    }
    let cache_control = parts
        .headers
        .get(header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let private = directive(cache_control, "no-store") || directive(cache_control, "private");
    if !rule.caches_status(status)
        || parts.headers.contains_key(header::SET_COOKIE)
        || (private && !rule.ignore_origin_no_store)
        || !rule.fits(bytes.len() as u64)
    {
        return Loaded::PassThrough(all_headers(bytes));
    }
    let origin_max_age = max_age(cache_control).map(larder_policy::Duration::from_secs);
    let ttl = rule.ttl_after(pending.condition, origin_max_age, &pending.key);
    if ttl.ttl().is_zero() {
        return Loaded::PassThrough(all_headers(bytes));
    }
    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut body = bytes;
    if (rule.json.compact || rule.json.strip_nulls)
        && content_type.contains("json")
        && let Ok(mut v) = serde_json::from_slice::<Value>(&body)
    {
        if rule.json.strip_nulls {
            strip_nulls(&mut v);
        }
        body = serde_json::to_vec(&v).map(Bytes::from).unwrap_or(body);
    }
    let etag = parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| format!("\"{:032x}\"", xxhash_rust::xxh3::xxh3_128(&body)));
    let mut encoding = BodyEncoding::Identity;
    let comp = &rule.compression;
    if comp.enabled
        && comp.should_compress(&content_type, body.len() as u64)
        && let Some(alg) = comp.algorithms.first().copied()
    {
        let coding = compression::encoding_of(alg);
        let span = tracing::debug_span!(
            "cache.compress",
            cache.encoding = coding.token(),
            cache.bytes_in = body.len() as u64,
            cache.bytes_out = tracing::field::Empty,
        );
        COMPRESSIONS.fetch_add(1, Ordering::Relaxed);
        let packed = compression::compress(&body, coding, comp.level_for(alg) as i32)
            .instrument(span.clone())
            .await;
        if let Ok(p) = &packed {
            span.record("cache.bytes_out", p.len() as u64);
        }
        match packed {
            Ok(packed) if packed.len() < body.len() => {
                body = packed;
                encoding = coding;
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "compression failed; storing uncompressed"),
        }
    }
    // The origin's buffer may have spare capacity the L1 weight would not see (a 2 KB JSON
    // body often sits in a 4 KB allocation): store an exact-size copy.
    let body = if body.len() >= 256 {
        Bytes::copy_from_slice(&body)
    } else {
        body
    };
    let mut entry = Entry::new(status, body)
        .with_ttl(ttl.ttl().into())
        .with_swr(ttl.stale_while_revalidate.into())
        .with_sie(ttl.stale_if_error.into())
        .with_tags(pending.tags)
        .with_encoding(encoding)
        .with_etag(etag);
    for (name, value) in &parts.headers {
        if replayable(name) {
            entry = entry.with_header(name.as_str(), Bytes::copy_from_slice(value.as_bytes()));
        }
    }
    Loaded::Store(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_control_parsing() {
        assert_eq!(max_age("public, max-age=120"), Some(120));
        assert_eq!(max_age("no-cache"), None);
        assert!(directive("private, max-age=5", "private"));
        assert!(!directive("public", "private"));
    }

    #[test]
    fn nulls_are_stripped_deeply() {
        let mut v = serde_json::json!({"a": null, "b": {"c": null, "d": 1}, "e": [{"f": null}]});
        strip_nulls(&mut v);
        assert_eq!(v, serde_json::json!({"b": {"d": 1}, "e": [{}]}));
    }
}
