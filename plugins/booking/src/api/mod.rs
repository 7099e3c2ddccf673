//! The plugin's HTTP API under `/api/v2`: shared reply types, strict parameter types, and the
//! route groups.
//!
//! Every route answers errors as JSON `{"error", "message", "field"}`; malformed input that
//! poem-openapi rejects before the handler runs goes through [`bad_request`], so it gets the
//! same shape (and names the parameter or field when poem-openapi does).

pub mod appointments;
pub mod cache_admin;
pub mod catalog;
pub mod insights;
pub mod profiles;

use std::borrow::Cow;
use std::sync::{Arc, RwLock};

use larder_plugin::PluginApi;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaSchema, MetaSchemaRef};
use poem_openapi::types::{ParseError, ParseFromParameter, ParseResult, ToJSON, Type};
use poem_openapi::{ApiResponse, Object};
use serde_json::Value;

use crate::State;
use crate::error::BookingError;

/// The body of every error response.
#[derive(Object, Debug, Clone)]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_date`, `not_found`, `slot_taken`, ...
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
    /// The input is malformed or breaks a booking rule; `field` names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Something the request names does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (e.g. the slot is taken).
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
    /// The input is malformed or breaks a booking rule; `field` names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// Something the request names does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The request conflicts with the current state (e.g. the slot is taken).
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

/// Splits an error into the status variant it belongs to and its body.
enum Failure {
    BadRequest(ErrorBody),
    NotFound(ErrorBody),
    Conflict(ErrorBody),
    Internal(ErrorBody),
}

impl From<BookingError> for Failure {
    fn from(e: BookingError) -> Self {
        match e {
            BookingError::Invalid {
                field,
                code,
                message,
            } => Failure::BadRequest(ErrorBody {
                error: code.into(),
                message,
                field: Some(field),
            }),
            BookingError::NotFound { field, message } => Failure::NotFound(ErrorBody {
                error: "not_found".into(),
                message,
                field: Some(field),
            }),
            BookingError::Conflict { code, message } => Failure::Conflict(ErrorBody {
                error: code.into(),
                message,
                field: None,
            }),
            BookingError::Internal(message) => {
                tracing::error!(plugin = "booking", error = %message, "request failed");
                Failure::Internal(ErrorBody {
                    error: "internal_error".into(),
                    message,
                    field: None,
                })
            }
        }
    }
}

impl<T: ToJSON> From<Result<T, BookingError>> for Reply<T> {
    fn from(r: Result<T, BookingError>) -> Self {
        match r {
            Ok(v) => Reply::Ok(Json(v)),
            Err(e) => match Failure::from(e) {
                Failure::BadRequest(b) => Reply::BadRequest(Json(b)),
                Failure::NotFound(b) => Reply::NotFound(Json(b)),
                Failure::Conflict(b) => Reply::Conflict(Json(b)),
                Failure::Internal(b) => Reply::Internal(Json(b)),
            },
        }
    }
}

impl<T: ToJSON> From<Result<T, BookingError>> for Created<T> {
    fn from(r: Result<T, BookingError>) -> Self {
        match r {
            Ok(v) => Created::Created(Json(v)),
            Err(e) => match Failure::from(e) {
                Failure::BadRequest(b) => Created::BadRequest(Json(b)),
                Failure::NotFound(b) => Created::NotFound(Json(b)),
                Failure::Conflict(b) => Created::Conflict(Json(b)),
                Failure::Internal(b) => Created::Internal(Json(b)),
            },
        }
    }
}

/// A positive id written canonically (`7`, never `07` or `+7`), so that one id has one cache
/// key and an invalidation by id always reaches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Id(pub i64);

impl Type for Id {
    const IS_REQUIRED: bool = true;
    type RawValueType = i64;
    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        "integer(int64)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("integer", "int64");
        schema.minimum = Some(1.0);
        schema.example = Some(Value::from(1));
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&i64> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

fn parse_id(value: &str) -> Result<i64, String> {
    let canonical = !value.is_empty()
        && value.len() <= 18
        && value.bytes().all(|b| b.is_ascii_digit())
        && !value.starts_with('0');
    if !canonical {
        return Err(format!(
            "expected a positive integer id without leading zeros, got `{value}`"
        ));
    }
    value.parse().map_err(|e| format!("{e}"))
}

impl ParseFromParameter for Id {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        parse_id(value).map(Id).map_err(ParseError::custom)
    }
}

/// The name of a path parameter, for error messages: poem-openapi reports path parse errors
/// under an internal name (`param0`), so a path id says its own name.
pub trait ParamName: Send + Sync + 'static {
    /// The parameter's name in the route.
    const NAME: &'static str;
}

macro_rules! param_name {
    ($ty:ident, $name:literal) => {
        /// Path parameter name marker.
        pub struct $ty;
        impl ParamName for $ty {
            const NAME: &'static str = $name;
        }
    };
}
param_name!(BarberId, "barber_id");
param_name!(UserId, "user_id");
param_name!(ServiceId, "service_id");
param_name!(AppointmentId, "appointment_id");

/// An [`Id`] in the path, named `N` in errors.
pub struct PathId<N: ParamName>(pub i64, std::marker::PhantomData<N>);

impl<N: ParamName> Type for PathId<N> {
    const IS_REQUIRED: bool = true;
    type RawValueType = i64;
    type RawElementValueType = i64;

    fn name() -> Cow<'static, str> {
        Id::name()
    }

    fn schema_ref() -> MetaSchemaRef {
        Id::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&i64> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a i64> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl<N: ParamName> ParseFromParameter for PathId<N> {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        parse_id(value)
            .map(|id| PathId(id, std::marker::PhantomData))
            .map_err(|e| ParseError::custom(format!("parameter `{}`: {e}", N::NAME)))
    }
}

/// A calendar date written `YYYY-MM-DD`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Day(pub jiff::civil::Date);

impl Type for Day {
    const IS_REQUIRED: bool = true;
    type RawValueType = Self;
    type RawElementValueType = Self;

    fn name() -> Cow<'static, str> {
        "string(date)".into()
    }

    fn schema_ref() -> MetaSchemaRef {
        let mut schema = MetaSchema::new_with_format("string", "date");
        schema.example = Some(Value::from(example_day().to_string()));
        MetaSchemaRef::Inline(Box::new(schema))
    }

    fn as_raw_value(&self) -> Option<&Self> {
        Some(self)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
        Box::new(std::iter::once(self))
    }
}

impl ParseFromParameter for Day {
    fn parse_from_parameter(value: &str) -> ParseResult<Self> {
        crate::time::parse_date(value)
            .map(Day)
            .map_err(ParseError::custom)
    }
}

/// The date the document's examples give, set when the API is built: poem-openapi asks
/// types for their examples through functions without state, and a fixed date would fall
/// into the past or out of the booking window.
static EXAMPLE_DAY: RwLock<Option<jiff::civil::Date>> = RwLock::new(None);

/// The last Monday within the booking window as of `today`: a valid `week_start`, a day
/// with slots to show, and bookable for about `max_advance_days` after the server starts.
/// When the window holds no Monday after today (a horizon under a week), this week's
/// Monday: the routes refuse weeks past the horizon, and an example should be answered.
pub fn example_day_for(today: jiff::civil::Date, max_advance_days: u32) -> jiff::civil::Date {
    crate::time::week_start(crate::time::add_days(today, i64::from(max_advance_days)))
}

/// The date the document's examples give (see [`build`]).
pub fn example_day() -> jiff::civil::Date {
    EXAMPLE_DAY
        .read()
        .ok()
        .and_then(|d| *d)
        // Only before any API was built; a Monday all the same.
        .unwrap_or(jiff::civil::date(2030, 1, 7))
}

/// Generates a body-field parser that names its field in every error (poem-openapi's own
/// messages say only which type failed).
macro_rules! field_parser {
    ($fn_name:ident, $field:literal, $ty:ty) => {
        pub(crate) fn $fn_name(
            value: Option<serde_json::Value>,
        ) -> poem_openapi::types::ParseResult<$ty> {
            let shown = value
                .as_ref()
                .map(|v| v.to_string())
                .unwrap_or_else(|| "nothing".into());
            <$ty as poem_openapi::types::ParseFromJSON>::parse_from_json(value).map_err(|_| {
                poem_openapi::types::ParseError::custom(format!(
                    "field `{}`: expected {}, got {}",
                    $field,
                    <$ty as poem_openapi::types::Type>::name(),
                    shown
                ))
            })
        }
    };
}
pub(crate) use field_parser;

/// Builds the plugin's erased API over the shared state; the document's example date
/// ([`example_day`]) is taken from the server's clock here.
pub fn build(state: Arc<State>) -> PluginApi {
    let day = example_day_for(state.clock.today(), state.config.max_advance_days);
    if let Ok(mut example) = EXAMPLE_DAY.write() {
        *example = Some(day);
    }
    PluginApi::new((
        catalog::CatalogApi(state.clone()),
        appointments::AppointmentsApi(state.clone()),
        insights::InsightsApi(state.clone()),
        profiles::ProfilesApi(state.clone()),
        cache_admin::CacheAdminApi(state),
    ))
}

#[cfg(test)]
mod tests {
    use jiff::civil::{Weekday, date};

    use super::example_day_for;
    use crate::time::add_days;

    #[test]
    fn the_example_day_is_the_last_monday_of_the_booking_window() {
        // Tuesday 2026-12-01 + 90 days is Monday 2027-03-01, the last day bookable.
        assert_eq!(example_day_for(date(2026, 12, 1), 90), date(2027, 3, 1));
        // + 30 days is a Thursday: the Monday of its week.
        assert_eq!(example_day_for(date(2026, 12, 1), 30), date(2026, 12, 28));
        // A window shorter than a week may hold no Monday after today: this week's, which
        // the availability route still answers for.
        assert_eq!(example_day_for(date(2026, 12, 1), 3), date(2026, 11, 30));
        for offset in 0..14 {
            let today = add_days(date(2026, 12, 1), offset);
            for window in [7, 30, 90, 365] {
                let day = example_day_for(today, window);
                assert_eq!(day.weekday(), Weekday::Monday, "{today} + {window}");
                assert!(
                    day > today && day <= add_days(today, i64::from(window)),
                    "{day} is not bookable on {today} with a {window}-day window"
                );
            }
        }
    }
}
