//! Responses: the success and error envelopes, the per-request frame their metadata comes
//! from, and the mapping of every failure (bad input, upstream, auth) to one JSON shape.

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime};

use poem::Error as PoemError;
use poem::http::StatusCode;
use poem_openapi::ApiResponse;

use std::marker::PhantomData;

use bytes::Bytes;
use poem::IntoResponse;
use poem_openapi::payload::{Json, Payload};
use poem_openapi::registry::{MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, ToJSON};
use xxhash_rust::xxh3::xxh3_64;

use crate::client::UpstreamError;
use crate::model::{Envelope, ErrorBody, ErrorEnvelope, Metadata};
use crate::query::Invalid;

/// What one request's metadata is made of; set by the route wrapper for the duration of the
/// handler (a task-local, so the bad-request handler, which gets no state, can read it).
#[derive(Debug, Clone)]
pub struct Frame {
    /// `x-request-id` of the request, or a generated one.
    pub request_id: String,
    /// When the request reached the plugin.
    pub started: Instant,
    /// `real` or `mock`.
    pub integration: &'static str,
    /// The server's time when the request reached the plugin (`metadata.timestamp`).
    pub received: SystemTime,
}

/// Random per process (std's hasher keys are), so request ids of two instances differ.
static PROCESS_SEED: LazyLock<u64> = LazyLock::new(|| {
    use std::hash::BuildHasher;
    std::collections::hash_map::RandomState::new().hash_one(0u8)
});

tokio::task_local! {
    /// The frame of the request being handled.
    pub static FRAME: Frame;
}

impl Frame {
    /// A frame for a request that carried `request_id` (if a usable one).
    pub fn new(request_id: Option<&str>, integration: &'static str, received: SystemTime) -> Self {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let request_id = request_id
            .map(str::trim)
            .filter(|id| {
                !id.is_empty()
                    && id.len() <= 128
                    && id
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
            })
            .map(str::to_owned)
            .unwrap_or_else(|| {
                let n = COUNTER.fetch_add(1, Ordering::Relaxed);
                // Unique, not secret: the process's random seed and a counter.
                let mut seed = [0u8; 24];
                seed[..16].copy_from_slice(&u128::from(*PROCESS_SEED).to_le_bytes());
                seed[16..].copy_from_slice(&n.to_le_bytes());
                format!("ae-{:016x}{:06x}", xxh3_64(&seed), n & 0xff_ffff)
            });
        Self {
            request_id,
            started: Instant::now(),
            integration,
            received,
        }
    }
}

/// Metadata for the current request.
pub fn metadata(cache_hit: bool, cache_enabled: bool) -> Metadata {
    FRAME
        .try_with(Clone::clone)
        .unwrap_or_else(|_| Frame::new(None, "mock", SystemTime::now()))
        .metadata(cache_hit, cache_enabled)
}

impl Frame {
    /// The metadata of the request this frame is for.
    pub fn metadata(self, cache_hit: bool, cache_enabled: bool) -> Metadata {
        let elapsed = self.started.elapsed().as_secs_f64() * 1000.0;
        Metadata {
            cache_hit,
            cache_enabled,
            processing_time_ms: (elapsed * 1000.0).round() / 1000.0,
            api_integration: self.integration.to_owned(),
            request_id: self.request_id,
            timestamp: jiff::Timestamp::try_from(self.received)
                .and_then(|t| t.round(jiff::Unit::Millisecond))
                .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
                .to_string(),
        }
    }
}

/// Every route's response: the envelope on 200, the error envelope otherwise.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum Reply<T: ParseFromJSON + ToJSON + Send + Sync> {
    /// Success; `metadata.cache_hit` says whether `data` came from the cache.
    #[oai(status = 200)]
    Ok(EnvelopeJson<T>),
    /// Invalid input; `error.field` names the offending field.
    #[oai(status = 400)]
    BadRequest(Json<ErrorEnvelope>),
    /// `x-internal-key` is required and was missing or wrong.
    #[oai(status = 401)]
    Unauthorized(Json<ErrorEnvelope>),
    /// No such product or category.
    #[oai(status = 404)]
    NotFound(Json<ErrorEnvelope>),
    /// Unexpected failure inside the plugin.
    #[oai(status = 500)]
    Internal(Json<ErrorEnvelope>),
    /// The AliExpress gateway failed and nothing usable was cached; `error.upstream` has
    /// the gateway's own code and message.
    #[oai(status = 502)]
    BadGateway(Json<ErrorEnvelope>),
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Reply<T> {
    /// A success.
    pub fn ok(data: T, cache_hit: bool, cache_enabled: bool) -> Self {
        let envelope = Envelope {
            success: true,
            data,
            metadata: metadata(cache_hit, cache_enabled),
        };
        Reply::Ok(EnvelopeJson::new(json_bytes(envelope.to_json())))
    }

    /// A success whose `data` is `T`'s JSON as the cache holds it: spliced into the
    /// envelope as it is, so a hit neither decodes the cached value into `T` nor encodes it
    /// again (that round trip was most of a search hit's time).
    pub fn cached(data: Bytes, cache_hit: bool, cache_enabled: bool) -> Self {
        let meta = json_bytes(metadata(cache_hit, cache_enabled).to_json());
        let mut body = Vec::with_capacity(data.len() + meta.len() + 40);
        body.extend_from_slice(b"{\"success\":true,\"data\":");
        body.extend_from_slice(&data);
        body.extend_from_slice(b",\"metadata\":");
        body.extend_from_slice(&meta);
        body.push(b'}');
        Reply::Ok(EnvelopeJson::new(body))
    }
}

fn json_bytes(value: Option<serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(&value.unwrap_or(serde_json::Value::Null)).unwrap_or_default()
}

/// An [`Envelope<T>`] already encoded: the OpenAPI document describes it as the envelope,
/// the answer sends the bytes as they are.
pub struct EnvelopeJson<T> {
    body: Bytes,
    of: PhantomData<fn() -> T>,
}

impl<T> EnvelopeJson<T> {
    fn new(body: impl Into<Bytes>) -> Self {
        Self {
            body: body.into(),
            of: PhantomData,
        }
    }
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> Payload for EnvelopeJson<T> {
    const CONTENT_TYPE: &'static str = <Json<Envelope<T>> as Payload>::CONTENT_TYPE;

    fn check_content_type(content_type: &str) -> bool {
        <Json<Envelope<T>> as Payload>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        <Json<Envelope<T>> as Payload>::schema_ref()
    }

    fn register(registry: &mut Registry) {
        <Json<Envelope<T>> as Payload>::register(registry);
    }
}

impl<T: Send> IntoResponse for EnvelopeJson<T> {
    fn into_response(self) -> poem::Response {
        poem::Response::builder()
            .content_type("application/json; charset=utf-8")
            .body(self.body)
    }
}

/// Why a request failed.
#[derive(Debug, Clone)]
pub enum ApiError {
    /// Bad input.
    Invalid(Invalid),
    /// The gateway failed.
    Upstream(UpstreamError),
    /// Nothing with that id.
    NotFound(String),
    /// Missing or wrong internal key.
    Unauthorized,
    /// A failure of ours (or the cache's).
    Internal(String),
}

impl From<Invalid> for ApiError {
    fn from(value: Invalid) -> Self {
        ApiError::Invalid(value)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(value: UpstreamError) -> Self {
        ApiError::Upstream(value)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ApiError::Invalid(i) => write!(f, "invalid `{}`: {}", i.field, i.message),
            ApiError::Upstream(e) => e.fmt(f),
            ApiError::NotFound(m) | ApiError::Internal(m) => f.write_str(m),
            ApiError::Unauthorized => f.write_str("missing or wrong x-internal-key"),
        }
    }
}

impl ApiError {
    /// The status and error envelope for this failure.
    pub fn envelope(&self) -> (StatusCode, ErrorEnvelope) {
        let body = |code: &str, message: String| ErrorBody {
            code: code.to_owned(),
            message,
            field: None,
            upstream: None,
        };
        let (status, error) = match self {
            ApiError::Invalid(i) => (
                StatusCode::BAD_REQUEST,
                ErrorBody {
                    field: Some(i.field.clone()),
                    ..body("validation_error", format!("`{}`: {}", i.field, i.message))
                },
            ),
            ApiError::Upstream(e) => (
                StatusCode::BAD_GATEWAY,
                ErrorBody {
                    upstream: Some(e.detail()),
                    ..body("upstream_error", e.to_string())
                },
            ),
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, body("not_found", m.clone())),
            ApiError::Unauthorized => (
                StatusCode::UNAUTHORIZED,
                body(
                    "unauthorized",
                    "send the configured key in the `x-internal-key` header".into(),
                ),
            ),
            ApiError::Internal(m) => (
                StatusCode::INTERNAL_SERVER_ERROR,
                body("internal_error", m.clone()),
            ),
        };
        (
            status,
            ErrorEnvelope {
                success: false,
                error,
                metadata: metadata(false, false),
            },
        )
    }
}

impl<T: ParseFromJSON + ToJSON + Send + Sync> From<ApiError> for Reply<T> {
    fn from(err: ApiError) -> Self {
        let (status, envelope) = err.envelope();
        let json = Json(envelope);
        match status {
            StatusCode::BAD_REQUEST => Reply::BadRequest(json),
            StatusCode::UNAUTHORIZED => Reply::Unauthorized(json),
            StatusCode::NOT_FOUND => Reply::NotFound(json),
            StatusCode::BAD_GATEWAY => Reply::BadGateway(json),
            _ => Reply::Internal(json),
        }
    }
}

/// Turns a handler's result into its reply.
pub fn finish<T: ParseFromJSON + ToJSON + Send + Sync>(
    result: Result<Reply<T>, ApiError>,
) -> Reply<T> {
    result.unwrap_or_else(Reply::from)
}

/// Finds the field a poem-openapi parse error is about: the parameter's name, the body
/// field at fault, else `body`.
pub fn invalid_from_parse_error(err: &PoemError) -> Invalid {
    let failure = larder_plugin::body::parse_failure(err);
    let field = failure.field.unwrap_or_else(|| "body".to_owned());
    // The envelope puts the field in front of the message itself.
    let message = match failure.message.strip_prefix(&format!("field `{field}`: ")) {
        Some(rest) => rest.to_owned(),
        None => failure.message,
    };
    Invalid { field, message }
}

/// poem-openapi calls this when a parameter or body does not parse or validate.
pub fn bad_request<T: ParseFromJSON + ToJSON + Send + Sync>(err: PoemError) -> Reply<T> {
    Reply::from(ApiError::Invalid(invalid_from_parse_error(&err)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::error::ParseRequestPayloadError;

    fn payload(reason: &str) -> Invalid {
        invalid_from_parse_error(&PoemError::from(ParseRequestPayloadError {
            reason: reason.into(),
        }))
    }

    #[test]
    fn field_names_are_found_in_validator_messages() {
        let v = payload(
            "failed to parse \"AliexpressSearchRequest\": field `page_size` verification \
             failed. maximum(50, exclusive: false)",
        );
        assert_eq!(v.field, "page_size");
        assert_eq!(payload("EOF while parsing a value").field, "body");
    }
}
