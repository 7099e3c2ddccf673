//! Answers built from what the cache served: the stored status, headers and body, plus
//! `Cache-Status`, `Age`, `Cache-Control`, `ETag` (304 on a match) and `Vary`; the body as
//! stored for clients that accept its coding, decoded for the others.

use larder_policy::Scope;
use larder_store::{BodyEncoding, Entry, OriginError, Outcome, Served};
use poem::Response;
use poem::http::StatusCode;
use poem::http::header::{self, HeaderName, HeaderValue};
use tracing::Instrument;

use crate::cache::{BoundRule, Engine};
use crate::http::compression::{self, CodedBodies, Delivery};
use crate::http::error::ApiError;
use crate::telemetry::metrics::VARIANTS;

pub(crate) static CACHE_STATUS: HeaderName = HeaderName::from_static("cache-status");

pub(crate) fn set_header(resp: &mut Response, name: HeaderName, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().insert(name, v);
    }
}

/// [`set_header`] for a value built for it: the string's buffer becomes the header's, no
/// copy (these are on every hit).
pub(crate) fn set_owned_header(resp: &mut Response, name: HeaderName, value: String) {
    if let Ok(v) = HeaderValue::from_maybe_shared(bytes::Bytes::from(value)) {
        resp.headers_mut().insert(name, v);
    }
}

fn etag_matches(if_none_match: &HeaderValue, etag: &str) -> bool {
    let Ok(list) = if_none_match.to_str() else {
        return false;
    };
    let bare = |t: &str| t.trim().trim_start_matches("W/").to_owned();
    let etag = bare(etag);
    list.split(',').any(|t| t.trim() == "*" || bare(t) == etag)
}

/// Builds the answer from what the engine served under `key`. `decoded_limit` caps what a
/// stored body may decode to for a client that cannot take its coding; the decoded body is
/// then kept with the entry in L1, so such clients cost one decode per entry, not per hit.
pub(crate) async fn respond(
    served: &Served,
    key: &str,
    bound: &BoundRule,
    accept: Option<&HeaderValue>,
    if_none_match: Option<&HeaderValue>,
    decoded_limit: usize,
    engine: &Engine,
) -> Response {
    let entry = &served.entry;
    let pass = served.status.outcome == Outcome::PassThrough;
    let mut resp = entry_response(entry, StatusCode::OK);
    set_owned_header(
        &mut resp,
        CACHE_STATUS.clone(),
        served.status.header_value("larder"),
    );
    if pass {
        resp.set_body(entry.body.clone());
        return resp;
    }
    let rule = &bound.rule;
    let now = engine.cache.now_ms();
    let ttl_left = (entry.ttl_left_ms(now).max(0) / 1000) as u64;
    // What downstream caches may do, as the rule says (safe defaults resolved at load):
    // purgeable entries are revalidated on each reuse, so a purge reaches clients at once.
    let client = rule.client;
    // By hand rather than `write!`: this is on every hit.
    let mut cc = String::with_capacity(96);
    let mut digits = itoa::Buffer::new();
    cc.push_str(if client.private { "private" } else { "public" });
    if client.revalidate {
        cc.push_str(", no-cache");
    } else {
        let max_age = client.max_age.map_or(ttl_left, |d| d.as_secs());
        cc.push_str(", max-age=");
        cc.push_str(digits.format(max_age));
        if !entry.stale_while_revalidate.is_zero() {
            cc.push_str(", stale-while-revalidate=");
            cc.push_str(digits.format(entry.stale_while_revalidate.as_secs()));
        }
        if !entry.stale_if_error.is_zero() {
            cc.push_str(", stale-if-error=");
            cc.push_str(digits.format(entry.stale_if_error.as_secs()));
        }
    }
    set_owned_header(&mut resp, header::CACHE_CONTROL, cc);
    resp.headers_mut()
        .insert(header::AGE, HeaderValue::from(entry.age(now).as_secs()));
    let mut vary: Vec<&str> = Vec::new();
    if entry.encoding != BodyEncoding::Identity {
        vary.push("Accept-Encoding");
    }
    vary.extend(rule.vary.iter().map(String::as_str));
    if rule.scope == Scope::User {
        vary.push("Authorization");
        vary.push("Cookie");
    }
    if !vary.is_empty() {
        set_header(&mut resp, header::VARY, &vary.join(", "));
    }
    let stored = entry.encoding;
    let accept = accept.and_then(|v| v.to_str().ok());
    let delivery = compression::negotiate(accept, stored, &rule.compression);
    if let Some(etag) = &entry.etag {
        // The stored validator is strong for the stored bytes; another coding of them is
        // the same data but not the same bytes, so it gets the weak form (RFC 9110 §8.8.1).
        match delivery {
            Delivery::Variant(_) if !etag.starts_with("W/") => {
                set_owned_header(&mut resp, header::ETAG, format!("W/{etag}"));
            }
            _ => set_header(&mut resp, header::ETAG, etag),
        }
        if let Some(inm) = if_none_match
            && etag_matches(inm, etag)
        {
            resp.set_status(StatusCode::NOT_MODIFIED);
            resp.headers_mut().remove(header::CONTENT_TYPE);
            return resp;
        }
    }
    let (coding, body) = match delivery {
        Delivery::AsStored => (stored, entry.body.clone()),
        Delivery::Variant(coding) => match entry.variants.get(coding) {
            Some(kept) => (coding, kept.clone()),
            None => match variant(entry, key, coding, rule, decoded_limit, engine).await {
                Ok(made) => (coding, made),
                Err(e) => {
                    tracing::error!(error = %e, "stored body could not be recoded for this client");
                    return ApiError::new(
                        "internal_error",
                        "the cached response could not be decoded",
                    )
                    .respond(StatusCode::INTERNAL_SERVER_ERROR);
                }
            },
        },
    };
    if let Some(token) = coding.content_encoding() {
        set_header(&mut resp, header::CONTENT_ENCODING, token);
    }
    resp.set_body(body);
    resp
}

/// Makes `entry`'s body in `coding` for the first client that asked for it, and keeps it
/// with the entry in L1 (weighed in its budget), so every later such client is served as
/// stored: one decode (and one compression) per entry and coding, never per hit.
async fn variant(
    entry: &std::sync::Arc<Entry>,
    key: &str,
    coding: BodyEncoding,
    rule: &larder_policy::Rule,
    decoded_limit: usize,
    engine: &Engine,
) -> Result<bytes::Bytes, compression::CodingError> {
    let span = tracing::debug_span!(
        "cache.recode",
        cache.encoding = entry.encoding.token(),
        cache.variant = coding.token()
    );
    let level = compression::level_of(&rule.compression, coding);
    let made = Box::pin(
        compression::transcode(
            &entry.body,
            entry.encoding,
            entry.variants.get(BodyEncoding::Identity),
            coding,
            level,
            decoded_limit,
        )
        .instrument(span),
    )
    .await?;
    VARIANTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // Another client may have kept one meanwhile: the first one stays.
    engine
        .cache
        .l1()
        .keep_variant(key, entry, coding, made.clone());
    Ok(made)
}

/// The answer of a handler that read its data through `get_or_load`, compressed per the
/// first such rule that compresses (`rule`), as a cached route's would be: the rule's
/// preferred coding the client accepts, `Vary: Accept-Encoding`, and a weak `ETag` if the
/// handler set a strong one. Each distinct answer is compressed once ([`CodedBodies`]).
pub(crate) async fn code_answer(
    resp: Response,
    rule: &larder_policy::Rule,
    accept: Option<&HeaderValue>,
    coded: &CodedBodies,
) -> Response {
    let comp = &rule.compression;
    let status = resp.status();
    let content_type = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !status.is_success()
        || status == StatusCode::NO_CONTENT
        || status == StatusCode::PARTIAL_CONTENT
        || resp.headers().contains_key(header::CONTENT_ENCODING)
        || !comp.should_compress(content_type, u64::MAX)
    {
        return resp;
    }
    let content_type = content_type.to_owned();
    let (mut parts, body) = resp.into_parts();
    let body = match body.into_bytes().await {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "reading the handler's answer failed");
            return ApiError::new("internal_error", "the answer could not be read")
                .respond(StatusCode::INTERNAL_SERVER_ERROR);
        }
    };
    if !comp.should_compress(&content_type, body.len() as u64) {
        return Response::from_parts(parts, body.into());
    }
    // Whatever this client gets, the answer depends on what it accepts.
    let vary = match parts
        .headers
        .get(header::VARY)
        .and_then(|v| v.to_str().ok())
    {
        Some(v)
            if v.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("accept-encoding")) =>
        {
            None
        }
        Some(v) => Some(format!("{v}, Accept-Encoding")),
        None => Some("Accept-Encoding".to_owned()),
    };
    if let Some(vary) = vary.and_then(|v| HeaderValue::from_str(&v).ok()) {
        parts.headers.insert(header::VARY, vary);
    }
    let chosen = accept
        .and_then(|v| v.to_str().ok())
        .and_then(|h| comp.negotiate(h))
        .map(compression::encoding_of);
    let Some(coding) = chosen else {
        return Response::from_parts(parts, body.into());
    };
    let Some(packed) = coded
        .get(&body, coding, compression::level_of(comp, coding))
        .await
    else {
        return Response::from_parts(parts, body.into());
    };
    if let Some(token) = coding.content_encoding() {
        parts
            .headers
            .insert(header::CONTENT_ENCODING, HeaderValue::from_static(token));
    }
    let strong = parts
        .headers
        .get(header::ETAG)
        .and_then(|v| v.to_str().ok())
        .filter(|e| !e.starts_with("W/"))
        .map(|e| format!("W/{e}"));
    if let Some(weak) = strong.and_then(|e| HeaderValue::from_str(&e).ok()) {
        parts.headers.insert(header::ETAG, weak);
    }
    Response::from_parts(parts, packed.into())
}

/// A response with a stored entry's status (or `fallback` if it is not valid) and headers;
/// the caller sets the body.
fn entry_response(entry: &Entry, fallback: StatusCode) -> Response {
    let mut resp = Response::builder()
        .status(StatusCode::from_u16(entry.status).unwrap_or(fallback))
        .finish();
    // Room for the stored headers and the ones a hit adds, so the map never regrows.
    resp.headers_mut().reserve(entry.headers.len() + 8);
    for (name, value) in &entry.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_maybe_shared(value.clone()),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    resp
}

/// The origin failed and no stale copy could stand in: its own error response if it sent
/// one, else a 502/504 with the error envelope.
pub(crate) fn origin_failure(err: &OriginError) -> Response {
    let mut resp = match &err.response {
        Some(entry) => {
            let mut resp = entry_response(entry, StatusCode::BAD_GATEWAY);
            resp.set_body(entry.body.clone());
            resp
        }
        None => {
            let status = if err.timed_out {
                StatusCode::GATEWAY_TIMEOUT
            } else {
                StatusCode::BAD_GATEWAY
            };
            ApiError::new("origin_error", err.message.to_string()).respond(status)
        }
    };
    set_header(
        &mut resp,
        CACHE_STATUS.clone(),
        "larder; fwd=uri-miss; detail=origin-error",
    );
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_compare_weakly() {
        let v = HeaderValue::from_static("W/\"abc\", \"def\"");
        assert!(etag_matches(&v, "\"abc\""));
        assert!(etag_matches(&v, "\"def\""));
        assert!(!etag_matches(&v, "\"xyz\""));
        assert!(etag_matches(&HeaderValue::from_static("*"), "\"q\""));
    }
}
