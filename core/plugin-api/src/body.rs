//! [`JsonBody`]: a JSON request body whose parse errors name the field at fault.
//!
//! poem-openapi's `Json<T>` reports a wrong value deep in a body as
//! `Expected input type "integer(uint32)", found "10". (occurred while parsing "SearchRequest")`:
//! the client learns the type, not the field. `JsonBody<T>` parses exactly like `Json<T>`
//! and, when that fails, walks the body against `T`'s own schema (the one the OpenAPI
//! document shows) to find the first field that breaks it, so the error reads
//! ``field `page_size`: expected an integer, got the string "10"``. Plugins' error
//! envelopes already take the field from that wording.

use std::ops::{Deref, DerefMut};

use poem::{FromRequest, Request, RequestBody, Result};
use poem_openapi::error::ParseRequestPayloadError;
use poem_openapi::payload::{ParsePayload, Payload};
use poem_openapi::registry::{MetaSchema, MetaSchemaRef, Registry};
use poem_openapi::types::{ParseFromJSON, Type};
use serde_json::Value;

/// A JSON request body, parsed like poem-openapi's `Json<T>`, whose errors name the field.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JsonBody<T>(pub T);

impl<T> Deref for JsonBody<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

impl<T> DerefMut for JsonBody<T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.0
    }
}

impl<T: Type> Payload for JsonBody<T> {
    const CONTENT_TYPE: &'static str = "application/json; charset=utf-8";

    fn check_content_type(content_type: &str) -> bool {
        poem_openapi::payload::Json::<T>::check_content_type(content_type)
    }

    fn schema_ref() -> MetaSchemaRef {
        T::schema_ref()
    }

    fn register(registry: &mut Registry) {
        T::register(registry);
    }
}

impl<T: ParseFromJSON> ParsePayload for JsonBody<T> {
    const IS_REQUIRED: bool = T::IS_REQUIRED;

    async fn from_request(request: &Request, body: &mut RequestBody) -> Result<Self> {
        let data = Vec::<u8>::from_request(request, body).await?;
        let value = if data.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&data).map_err(|err| ParseRequestPayloadError {
                reason: err.to_string(),
            })?
        };
        match T::parse_from_json(Some(value)) {
            Ok(v) => Ok(Self(v)),
            Err(err) => {
                // Only a refused body is read a second time, to find the field at fault; a
                // good one is parsed once, without a copy.
                let value: Value = serde_json::from_slice(&data).unwrap_or(Value::Null);
                let reason = match first_fault::<T>(&value) {
                    Some(fault) => format!("field `{}`: {}", fault.path, fault.problem),
                    None => err.into_message(),
                };
                Err(ParseRequestPayloadError { reason }.into())
            }
        }
    }
}

poem_openapi::impl_apirequest_for_payload!(JsonBody<T>, T: ParseFromJSON);

/// Where a body breaks its schema, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    /// The field: `page_size`, `items[2].quantity`.
    pub path: String,
    /// What is wrong with it.
    pub problem: String,
}

/// The first field of `value` that `T`'s schema refuses, if the schema can tell.
pub fn first_fault<T: Type>(value: &Value) -> Option<Fault> {
    let mut registry = Registry::new();
    T::register(&mut registry);
    walk(&registry, &T::schema_ref(), value, "", 0)
}

fn resolve<'a>(registry: &'a Registry, r: &'a MetaSchemaRef) -> Option<&'a MetaSchema> {
    match r {
        MetaSchemaRef::Inline(s) => Some(s),
        MetaSchemaRef::Reference(name) => registry.schemas.get(name),
    }
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_owned()
    } else {
        format!("{path}.{field}")
    }
}

fn kind(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::Bool(b) => format!("{b}"),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) if s.len() <= 40 => format!("the string \"{s}\""),
        Value::String(_) => "a string".into(),
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

/// Schemas nest (a body, its items, their fields); a self-referencing schema stops here.
const MAX_DEPTH: usize = 32;

fn walk(
    registry: &Registry,
    schema: &MetaSchemaRef,
    v: &Value,
    path: &str,
    depth: usize,
) -> Option<Fault> {
    let s = resolve(registry, schema)?;
    if depth > MAX_DEPTH {
        return None;
    }
    for part in &s.all_of {
        if let Some(f) = walk(registry, part, v, path, depth + 1) {
            return Some(f);
        }
    }
    let fault = |problem: String| {
        Some(Fault {
            path: if path.is_empty() {
                "body".into()
            } else {
                path.to_owned()
            },
            problem,
        })
    };
    if v.is_null() {
        // Whether null is allowed is the field's optionality, checked by its parent.
        return None;
    }
    if !s.enum_items.is_empty() && !s.enum_items.contains(v) {
        let allowed: Vec<String> = s.enum_items.iter().map(Value::to_string).collect();
        return fault(format!(
            "got {}; expected one of {}",
            kind(v),
            allowed.join(", ")
        ));
    }
    match s.ty {
        "object" => {
            let Some(obj) = v.as_object() else {
                return fault(format!("expected an object, got {}", kind(v)));
            };
            for name in &s.required {
                if obj.get(*name).is_none_or(Value::is_null) {
                    return Some(Fault {
                        path: join(path, name),
                        problem: "is required".into(),
                    });
                }
            }
            for (name, prop) in &s.properties {
                if let Some(x) = obj.get(*name)
                    && let Some(f) = walk(registry, prop, x, &join(path, name), depth + 1)
                {
                    return Some(f);
                }
            }
            None
        }
        "array" => {
            let Some(items) = v.as_array() else {
                return fault(format!("expected an array, got {}", kind(v)));
            };
            if let Some(min) = s.min_items
                && items.len() < min
            {
                return fault(format!("needs at least {min} items, got {}", items.len()));
            }
            if let Some(max) = s.max_items
                && items.len() > max
            {
                return fault(format!("takes at most {max} items, got {}", items.len()));
            }
            let each = s.items.as_deref()?;
            items
                .iter()
                .enumerate()
                .find_map(|(i, x)| walk(registry, each, x, &format!("{path}[{i}]"), depth + 1))
        }
        "integer" => {
            let unsigned = s.format.is_some_and(|f| f.starts_with("uint"));
            match (v.as_i64(), v.as_u64()) {
                (None, None) => fault(format!("expected an integer, got {}", kind(v))),
                (Some(n), _) if unsigned && n < 0 => {
                    fault(format!("expected a non-negative integer, got {n}"))
                }
                _ => bounds(s, v.as_f64().unwrap_or_default(), fault),
            }
        }
        "number" => match v.as_f64() {
            None => fault(format!("expected a number, got {}", kind(v))),
            Some(n) => bounds(s, n, fault),
        },
        "string" => {
            let Some(text) = v.as_str() else {
                return fault(format!("expected a string, got {}", kind(v)));
            };
            let len = text.chars().count();
            if let Some(min) = s.min_length
                && len < min
            {
                return fault(format!("needs at least {min} characters, got {len}"));
            }
            if let Some(max) = s.max_length
                && len > max
            {
                return fault(format!("takes at most {max} characters, got {len}"));
            }
            None
        }
        "boolean" if !v.is_boolean() => fault(format!("expected true or false, got {}", kind(v))),
        _ => None,
    }
}

fn bounds(s: &MetaSchema, n: f64, fault: impl Fn(String) -> Option<Fault>) -> Option<Fault> {
    if let Some(min) = s.minimum {
        let exclusive = s.exclusive_minimum == Some(true);
        if n < min || (exclusive && n == min) {
            let op = if exclusive { "above" } else { "at least" };
            return fault(format!("must be {op} {min}, got {n}"));
        }
    }
    if let Some(max) = s.maximum {
        let exclusive = s.exclusive_maximum == Some(true);
        if n > max || (exclusive && n == max) {
            let op = if exclusive { "below" } else { "at most" };
            return fault(format!("must be {op} {max}, got {n}"));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use poem_openapi::{Enum, Object};
    use serde_json::json;

    #[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
    #[oai(rename_all = "snake_case")]
    enum Method {
        Cash,
        Card,
    }

    #[derive(Object, Debug)]
    struct Line {
        sku: String,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))]
        quantity: u32,
    }

    #[derive(Object, Debug)]
    struct Order {
        customer_id: i64,
        page_size: Option<u32>,
        method: Option<Method>,
        duration_minutes: Option<u32>,
        #[oai(validator(max_items = 3))]
        items: Vec<Line>,
        note: Option<String>,
    }

    fn fault(v: Value) -> Option<(String, String)> {
        assert!(
            Order::parse_from_json(Some(v.clone())).is_err(),
            "{v} parses"
        );
        first_fault::<Order>(&v).map(|f| (f.path, f.problem))
    }

    fn ok() -> Value {
        json!({"customer_id": 1, "items": [{"sku": "a", "quantity": 2}]})
    }

    fn with(field: &str, value: Value) -> Value {
        let mut v = ok();
        v[field] = value;
        v
    }

    #[test]
    fn the_field_at_fault_is_named() {
        assert!(Order::parse_from_json(Some(ok())).is_ok());
        assert_eq!(first_fault::<Order>(&ok()), None);
        assert_eq!(
            fault(with("page_size", json!("10"))),
            Some((
                "page_size".into(),
                "expected an integer, got the string \"10\"".into()
            ))
        );
        assert_eq!(
            fault(with("method", json!("bitcoin"))),
            Some((
                "method".into(),
                "got the string \"bitcoin\"; expected one of \"cash\", \"card\"".into()
            ))
        );
        assert_eq!(
            fault(with("duration_minutes", json!(-5))),
            Some((
                "duration_minutes".into(),
                "expected a non-negative integer, got -5".into()
            ))
        );
        assert_eq!(
            fault(with("note", json!({"x": 1}))),
            Some(("note".into(), "expected a string, got an object".into()))
        );
    }

    #[test]
    fn nested_items_missing_fields_and_limits_are_named() {
        assert_eq!(
            fault(with(
                "items",
                json!([{"sku": "a", "quantity": 2}, {"sku": "b", "quantity": 0}])
            )),
            Some((
                "items[1].quantity".into(),
                "must be at least 1, got 0".into()
            ))
        );
        assert_eq!(
            fault(with("items", json!([{"quantity": 2}]))),
            Some(("items[0].sku".into(), "is required".into()))
        );
        let mut v = ok();
        v.as_object_mut().unwrap().remove("customer_id");
        assert_eq!(fault(v), Some(("customer_id".into(), "is required".into())));
        let line = json!({"sku": "a", "quantity": 1});
        assert_eq!(
            fault(with("items", json!([line, line, line, line]))),
            Some(("items".into(), "takes at most 3 items, got 4".into()))
        );
        assert_eq!(
            fault(json!([1])),
            Some(("body".into(), "expected an object, got an array".into()))
        );
    }
}

/// What a client sent wrong, read from a poem-openapi parse error (a parameter, the path, or
/// a body): the field or parameter at fault, and a message without poem-openapi's internal
/// names (it calls path parameters `param0`, `param1`…).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseFailure {
    /// The parameter or body field at fault (`body` when a body is wrong as a whole);
    /// `None` when the error does not say.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

/// Reads a poem-openapi parse error the way plugins' error envelopes report it.
pub fn parse_failure(err: &poem::Error) -> ParseFailure {
    use poem_openapi::error::{ParseParamError, ParsePathError};
    if let Some(e) = err.downcast_ref::<ParseParamError>() {
        return ParseFailure {
            field: Some(e.name.to_owned()),
            message: err.to_string(),
        };
    }
    if let Some(e) = err.downcast_ref::<ParsePathError>() {
        // `e.name` is the router's `param0`; a well-made path type names itself in `reason`.
        return ParseFailure {
            field: named_in(&e.reason),
            message: e.reason.clone(),
        };
    }
    if let Some(e) = err.downcast_ref::<ParseRequestPayloadError>() {
        return ParseFailure {
            field: named_in(&e.reason).or_else(|| Some("body".into())),
            message: e.reason.clone(),
        };
    }
    let message = err.to_string();
    ParseFailure {
        field: named_in(&message),
        message,
    }
}

/// The first name quoted after `field`, `parameter` or `properties` in a message.
fn named_in(text: &str) -> Option<String> {
    let start = ["field `", "parameter `", "properties `"]
        .iter()
        .filter_map(|p| text.find(p).map(|i| i + p.len()))
        .min()?;
    let len = text[start..].find('`')?;
    Some(text[start..start + len].to_owned())
}
