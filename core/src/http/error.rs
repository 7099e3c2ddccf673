//! The one JSON error envelope: `{"error": code, "message": text, "field": name?}`.
//!
//! Every error the core answers with — admission refusals, bad parameters poem-openapi
//! rejects, unknown routes, origin failures, the admin API's own errors — is an
//! [`ApiError`], so clients parse one shape (plugins keep their seeds' envelopes).

use poem::http::StatusCode;
use poem::{IntoResponse, Response};
use poem_openapi::Object;

/// An error answer's body.
#[derive(Object, Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ApiError {
    /// Machine-readable code (`rate_limited`, `payload_too_large`, `not_found`, ...).
    pub error: String,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request field at fault, when one is.
    #[oai(skip_serializing_if_is_none)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl ApiError {
    /// An error with a code and a message.
    pub fn new(error: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: error.into(),
            message: message.into(),
            field: None,
        }
    }

    /// Names the field at fault.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// The answer: this body as JSON with `status`.
    pub fn respond(self, status: StatusCode) -> Response {
        // Kept on the answer, so a plugin route can give it the plugin's shape.
        let kept = self.clone();
        let mut resp = poem::web::Json(self).into_response();
        resp.set_status(status);
        resp.extensions_mut().insert(kept);
        resp
    }

    /// `413`: a request body over `limit` bytes (`limits.request_body_bytes`).
    pub fn body_too_large(limit: usize) -> Response {
        let mut resp = Self::new(
            "payload_too_large",
            format!("request body is larger than {limit} bytes (limits.request_body_bytes)"),
        )
        .respond(StatusCode::PAYLOAD_TOO_LARGE);
        // The rest of the body is not read, so the connection cannot carry another request:
        // say so, or a client reuses it and its next request fails (RFC 9112 §9.6).
        resp.headers_mut().insert(
            poem::http::header::CONNECTION,
            poem::http::HeaderValue::from_static("close"),
        );
        resp
    }
}

/// Every error poem or poem-openapi produces (bad parameters, auth, unknown routes) as an
/// [`ApiError`]; an error that already carries a JSON response (a plugin's typed error)
/// goes out as it is.
pub fn error_response(e: poem::Error) -> Response {
    let status = e.status();
    let message = e.to_string();
    let resp = e.into_response();
    if resp
        .content_type()
        .is_some_and(|ct| ct.starts_with("application/json"))
    {
        return resp;
    }
    let code = match status {
        StatusCode::BAD_REQUEST => "bad_request",
        StatusCode::UNAUTHORIZED => "unauthorized",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        s if s.is_server_error() => "internal_error",
        _ => "error",
    };
    let message = match status {
        StatusCode::UNAUTHORIZED => {
            "missing or unknown admin key: send it as `x-admin-key` or `Authorization: Bearer`"
                .to_owned()
        }
        StatusCode::NOT_FOUND => "no route matches this path".to_owned(),
        _ => message,
    };
    ApiError::new(code, message).respond(status)
}
