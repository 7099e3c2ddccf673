//! The plugin's HTTP API under `/api/v1`: reply types, the caller's tenant, the pagination
//! envelope, and the route groups.
//!
//! Every route answers errors as JSON `{"error", "message", "field"}`; malformed input that
//! poem-openapi rejects before the handler runs goes through [`bad_request`], so it gets the
//! same shape and names the parameter.

pub mod cache_admin;
pub mod data;
pub mod schema;
pub mod writes;

use std::sync::Arc;

use larder_plugin::{PluginApi, principal_of};
use poem_openapi::payload::Json;
use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{ApiResponse, Object};
use serde_json::{Value, json};

use crate::State;
use crate::error::AnalyticsError;

/// The body of every error response.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsError")]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_date`, `not_found`, `no_tenant`, ...
    pub error: String,
    /// What is wrong, for a human.
    pub message: String,
    /// The request parameter or body field at fault, when one is (absent otherwise, as in
    /// the core's errors).
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// A 200 reply with the plugin's error responses.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum Reply<T: ToJSON> {
    /// Done.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// The input is malformed; `field` names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The verified principal has no tenant with data here.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Something the request names does not exist in the caller's tenant.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The server failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

/// A 201 reply with the plugin's error responses.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request_created")]
pub enum Created<T: ToJSON> {
    /// Created.
    #[oai(status = 201)]
    Created(Json<T>),
    /// The input is malformed; `field` names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The verified principal has no tenant with data here.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Something the request names does not exist in the caller's tenant.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state.
    #[oai(status = 409)]
    Conflict(Json<ErrorBody>),
    /// The server failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn parse_error_body(err: poem::Error) -> ErrorBody {
    let failure = larder_plugin::body::parse_failure(&err);
    ErrorBody {
        error: "invalid_request".into(),
        message: failure.message,
        field: failure.field,
    }
}

fn bad_request<T: ToJSON>(err: poem::Error) -> Reply<T> {
    Reply::BadRequest(Json(parse_error_body(err)))
}

fn bad_request_created<T: ToJSON>(err: poem::Error) -> Created<T> {
    Created::BadRequest(Json(parse_error_body(err)))
}

enum Failure {
    BadRequest(ErrorBody),
    Forbidden(ErrorBody),
    NotFound(ErrorBody),
    Conflict(ErrorBody),
    Internal(ErrorBody),
}

impl From<AnalyticsError> for Failure {
    fn from(e: AnalyticsError) -> Self {
        let body = |error: &str, message: String, field: Option<String>| ErrorBody {
            error: error.to_owned(),
            message,
            field,
        };
        match e {
            AnalyticsError::Invalid {
                field,
                code,
                message,
            } => Failure::BadRequest(body(code, message, Some(field))),
            AnalyticsError::NotFound { field, message } => {
                Failure::NotFound(body("not_found", message, Some(field)))
            }
            AnalyticsError::Forbidden { code, message } => {
                Failure::Forbidden(body(code, message, None))
            }
            AnalyticsError::Conflict { code, message } => {
                Failure::Conflict(body(code, message, None))
            }
            AnalyticsError::Internal(message) => {
                tracing::error!(plugin = "analytics", error = %message, "request failed");
                Failure::Internal(body("internal_error", message, None))
            }
        }
    }
}

impl<T: ToJSON> From<Result<T, AnalyticsError>> for Reply<T> {
    fn from(r: Result<T, AnalyticsError>) -> Self {
        match r {
            Ok(v) => Reply::Ok(Json(v)),
            Err(e) => match Failure::from(e) {
                Failure::BadRequest(b) => Reply::BadRequest(Json(b)),
                Failure::Forbidden(b) => Reply::Forbidden(Json(b)),
                Failure::NotFound(b) => Reply::NotFound(Json(b)),
                Failure::Conflict(b) => Reply::Conflict(Json(b)),
                Failure::Internal(b) => Reply::Internal(Json(b)),
            },
        }
    }
}

impl<T: ToJSON> From<Result<T, AnalyticsError>> for Created<T> {
    fn from(r: Result<T, AnalyticsError>) -> Self {
        match r {
            Ok(v) => Created::Created(Json(v)),
            Err(e) => match Failure::from(e) {
                Failure::BadRequest(b) => Created::BadRequest(Json(b)),
                Failure::Forbidden(b) => Created::Forbidden(Json(b)),
                Failure::NotFound(b) => Created::NotFound(Json(b)),
                Failure::Conflict(b) => Created::Conflict(Json(b)),
                Failure::Internal(b) => Created::Internal(Json(b)),
            },
        }
    }
}

/// Reads a built answer into its documented type ([`schema`]): an answer that does not fit
/// is a bug, answered 500 with what did not fit rather than sent undocumented.
fn typed<T: ParseFromJSON>(v: Value) -> Result<T, AnalyticsError> {
    T::parse_from_json(Some(v)).map_err(|e| {
        AnalyticsError::internal(format!(
            "the answer does not match its documented type {}: {}",
            T::name(),
            e.into_message()
        ))
    })
}

/// A 200 answer in its documented type.
pub fn reply<T: ParseFromJSON + ToJSON>(r: Result<Value, AnalyticsError>) -> Reply<T> {
    r.and_then(typed).into()
}

/// A 201 answer in its documented type.
pub fn created<T: ParseFromJSON + ToJSON>(r: Result<Value, AnalyticsError>) -> Created<T> {
    r.and_then(typed).into()
}

/// The caller's tenant, from the verified principal only: `(id, slug)`.
pub fn tenant_of(state: &State, req: &poem::Request) -> Result<(i64, String), AnalyticsError> {
    let forbidden = |code, message: String| AnalyticsError::Forbidden { code, message };
    let Some(principal) = principal_of(req) else {
        return Err(forbidden(
            "no_tenant",
            "this route answers per merchant: send a token or API key that names a tenant".into(),
        ));
    };
    let Some(slug) = principal.tenant.as_deref() else {
        return Err(forbidden(
            "no_tenant",
            format!(
                "`{}` is verified but names no tenant; analytics answers per merchant",
                principal.user
            ),
        ));
    };
    state
        .reference
        .tenants
        .iter()
        .find(|(_, s)| s == slug)
        .map(|(id, s)| (*id, s.clone()))
        .ok_or_else(|| {
            forbidden(
                "unknown_tenant",
                format!("tenant `{slug}` has no data here"),
            )
        })
}

/// Page size when the request gives none (the policy's key defaults say the same).
pub const DEFAULT_PAGE_SIZE: u64 = 100;
/// Largest page size.
pub const MAX_PAGE_SIZE: u64 = 1000;

/// Checks `page` and `size`; the error names the parameter.
pub fn page_params(page: Option<u64>, size: Option<u64>) -> Result<(u64, u64), AnalyticsError> {
    let page = page.unwrap_or(1);
    if page == 0 {
        return Err(AnalyticsError::invalid(
            "page",
            "invalid_page",
            "`page` starts at 1",
        ));
    }
    let size = size.unwrap_or(DEFAULT_PAGE_SIZE);
    if !(1..=MAX_PAGE_SIZE).contains(&size) {
        return Err(AnalyticsError::invalid(
            "size",
            "invalid_size",
            format!("`size` must be between 1 and {MAX_PAGE_SIZE}; got {size}"),
        ));
    }
    Ok((page, size))
}

/// The seed's envelope: `{items, pagination{…}, summary{…}}`. `pagination.next_page` and
/// `previous_page` are `null` at the ends, as the seed documents (the policy strips
/// top-level nulls only).
pub fn envelope(items: Vec<Value>, total: u64, page: u64, size: u64) -> Value {
    let total_pages = total.div_ceil(size);
    let has_next = page < total_pages;
    let has_previous = page > 1;
    let count = items.len();
    json!({
        "items": items,
        "pagination": {
            "page": page,
            "size": size,
            "total_items": total,
            "total_pages": total_pages,
            "has_next": has_next,
            "has_previous": has_previous,
            "next_page": if has_next { json!(page + 1) } else { Value::Null },
            "previous_page": if has_previous { json!(page - 1) } else { Value::Null },
        },
        "summary": {
            "total_items": total,
            "current_page_items": count,
            "page": page,
            "total_pages": total_pages,
        },
    })
}

/// Every route group.
pub fn build(state: Arc<State>) -> PluginApi {
    PluginApi::new((
        data::DataApi(state.clone()),
        writes::WritesApi(state.clone()),
        cache_admin::CacheAdminApi(state),
    ))
}
