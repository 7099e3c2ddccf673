//! `/openapi-gpt.json`: an OpenAPI 3 document a custom GPT can import as Actions.
//!
//! GPT Actions need `servers[0].url`, an `operationId` on every operation and descriptions
//! of at most 300 characters. The document covers the `/api/*` routes except
//! `/api/cache/clear` (a GPT has no business emptying the cache). When an internal key is
//! configured it declares the `x-internal-key` API-key scheme, so the GPT's "API Key"
//! authentication sends it.

use std::sync::Arc;

use poem::Request;
use poem_openapi::OpenApiService;
use serde_json::{Value, json};

use crate::api::{AliexpressApi, State};

/// Longest description GPT Actions accept.
pub const MAX_DESCRIPTION: usize = 300;
const EXCLUDED: &[&str] = &["/api/cache/clear"];
const SELF_PATH: &str = "/openapi-gpt.json";

/// The document, with `servers[0].url` from the settings or else from the request.
pub fn document_for(state: &Arc<State>, req: &Request) -> Value {
    let mut doc = state.gpt_document.get_or_init(|| build(state)).clone();
    let url = state
        .settings
        .public_url
        .clone()
        .unwrap_or_else(|| server_from_request(req));
    doc["servers"] = json!([{ "url": url, "description": "This Larder server" }]);
    doc
}

/// `scheme://host/prefix` of the request, the prefix being whatever the core mounted the
/// plugin under (the path before `/openapi-gpt.json`).
fn server_from_request(req: &Request) -> String {
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(',').next().unwrap_or("").trim().to_owned())
            .filter(|v| !v.is_empty())
    };
    let scheme = header("x-forwarded-proto")
        .or_else(|| req.uri().scheme_str().map(str::to_owned))
        .unwrap_or_else(|| "http".into());
    let host = header("x-forwarded-host")
        .or_else(|| header("host"))
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
        .unwrap_or_else(|| "localhost".into());
    let path = req.uri().path();
    let prefix = path.strip_suffix(SELF_PATH).unwrap_or("");
    format!("{scheme}://{host}{prefix}")
}

fn build(state: &Arc<State>) -> Value {
    let api = AliexpressApi {
        state: state.clone(),
    };
    let service = OpenApiService::new(api, "AliExpress Affiliate API", env!("CARGO_PKG_VERSION"))
        .description(
            "Search AliExpress products, browse categories, look up product details and \
             hot products, and generate affiliate links. Responses are cached.",
        );
    let mut doc: Value = serde_json::from_str(&service.spec()).unwrap_or_else(|_| json!({}));
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        paths.retain(|path, _| path.starts_with("/api/") && !EXCLUDED.contains(&path.as_str()));
    }
    if state.settings.internal_key.is_some() {
        doc["components"]["securitySchemes"]["internalKey"] = json!({
            "type": "apiKey",
            "in": "header",
            "name": "x-internal-key",
        });
        doc["security"] = json!([{ "internalKey": [] }]);
    }
    shorten_descriptions(&mut doc);
    doc
}

/// Cuts every `description` (and `summary`) to [`MAX_DESCRIPTION`] characters.
fn shorten_descriptions(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (name, v) in map.iter_mut() {
                if let (true, Value::String(text)) =
                    (name == "description" || name == "summary", &mut *v)
                    && text.chars().count() > MAX_DESCRIPTION
                {
                    let cut: String = text.chars().take(MAX_DESCRIPTION - 1).collect();
                    *text = format!("{}…", cut.trim_end());
                } else {
                    shorten_descriptions(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(shorten_descriptions),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_descriptions_are_cut() {
        let mut v = json!({"a": {"description": "x".repeat(400), "summary": "short"}});
        shorten_descriptions(&mut v);
        assert_eq!(
            v["a"]["description"].as_str().unwrap().chars().count(),
            MAX_DESCRIPTION
        );
        assert_eq!(v["a"]["summary"], "short");
    }
}
