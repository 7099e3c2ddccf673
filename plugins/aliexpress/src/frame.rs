//! A wrapper around the routes: sets each request's [`Frame`] (request id, start time,
//! integration) and, when an internal key is configured, refuses `/api/*` requests
//! without it before any parsing or upstream work happens.
//!
//! It wraps at the poem-openapi level (an [`OpenApi`] whose `add_routes` wraps each
//! endpoint), so the core mounts it like any plugin API and the OpenAPI metadata is the
//! inner API's.

use std::collections::HashMap;
use std::sync::Arc;

use poem::endpoint::BoxEndpoint;
use poem::http::{HeaderValue, Method};
use poem::{Endpoint, EndpointExt, IntoResponse, Request, Response};
use poem_openapi::OpenApi;
use poem_openapi::payload::Json;
use poem_openapi::registry::{MetaApi, Registry};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use larder_plugin::{PluginContext, PrincipalKind, principal_of};

use crate::config::Secret;
use crate::reply::{ApiError, FRAME, Frame};

/// The header `/api/*` requests must carry when a key is configured.
pub const INTERNAL_KEY_HEADER: &str = "x-internal-key";

/// Routes of `A`, each wrapped.
pub struct Framed<A> {
    /// The API.
    pub inner: A,
    /// `real` or `mock`.
    pub integration: &'static str,
    /// The required internal key, if any.
    pub internal_key: Option<Secret>,
    /// The server's services; the frame's timestamp reads its clock.
    pub ctx: PluginContext,
}

impl<A: OpenApi> OpenApi for Framed<A> {
    fn meta() -> Vec<MetaApi> {
        A::meta()
    }

    fn register(registry: &mut Registry) {
        A::register(registry);
    }

    fn add_routes(self, table: &mut HashMap<String, HashMap<Method, BoxEndpoint<'static>>>) {
        let mut inner = HashMap::new();
        self.inner.add_routes(&mut inner);
        let key = self
            .internal_key
            .map(|k| Arc::new(Sha256::digest(k.expose().as_bytes()).to_vec()));
        for (path, methods) in inner {
            let guarded = path.starts_with("/api/");
            let products = path.starts_with("/api/products");
            let slot = table.entry(path).or_default();
            for (method, endpoint) in methods {
                let wrapped = FramedEndpoint {
                    inner: endpoint,
                    integration: self.integration,
                    ctx: self.ctx.clone(),
                    key: if guarded { key.clone() } else { None },
                    drop_empty: products,
                };
                slot.insert(method, wrapped.boxed());
            }
        }
    }
}

struct FramedEndpoint {
    inner: BoxEndpoint<'static>,
    integration: &'static str,
    ctx: PluginContext,
    /// SHA-256 of the required key: comparing digests in constant time hides both the
    /// content and the length of the key.
    key: Option<Arc<Vec<u8>>>,
    /// Drop empty query parameters (`category_ids=`) before they are parsed: SPEC 2.1's
    /// product routes treat an empty parameter as absent (the seed's clients send them).
    drop_empty: bool,
}

/// `query` without its empty parameters (`a=&b=1&c` → `b=1`); `None` when nothing is left.
fn without_empty(query: &str) -> Option<String> {
    let kept: Vec<&str> = query
        .split('&')
        .filter(|pair| pair.split_once('=').is_some_and(|(_, v)| !v.is_empty()))
        .collect();
    (!kept.is_empty()).then(|| kept.join("&"))
}

/// Whether `given` is the key whose SHA-256 is `expected`, in constant time.
pub fn key_matches(expected_digest: &[u8], given: Option<&[u8]>) -> bool {
    let given = Sha256::digest(given.unwrap_or_default());
    let same: bool = given.as_slice().ct_eq(expected_digest).into();
    same
}

impl Endpoint for FramedEndpoint {
    type Output = Response;

    async fn call(&self, mut req: Request) -> poem::Result<Response> {
        if self.drop_empty
            && let Some(query) = req.uri().query()
        {
            let kept = without_empty(query);
            if kept.as_deref() != Some(query) {
                let path_and_query = match kept {
                    Some(q) => format!("{}?{q}", req.uri().path()),
                    None => req.uri().path().to_owned(),
                };
                let mut parts = req.uri().clone().into_parts();
                parts.path_and_query = path_and_query.parse().ok();
                if let Ok(uri) = poem::http::Uri::from_parts(parts) {
                    *req.uri_mut() = uri;
                    // Operations read their parameters from the parsed query the mount
                    // attached, not from the URI: parse it again, as the mount does.
                    let query: Vec<(String, String)> = req.params().unwrap_or_default();
                    req.extensions_mut()
                        .insert(poem_openapi::__private::UrlQuery(query));
                }
            }
        }
        let frame = Frame::new(
            req.headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok()),
            self.integration,
            self.ctx.now(),
        );
        let request_id = frame.request_id.clone();
        let mut response = FRAME
            .scope(frame, async {
                // The server's own warm requests pass: the core marks them with a warming
                // principal, which no client can present.
                let warming = principal_of(&req).is_some_and(|p| p.kind == PrincipalKind::Warming);
                if let Some(expected) = self.key.as_ref().filter(|_| !warming) {
                    let given = req
                        .headers()
                        .get(INTERNAL_KEY_HEADER)
                        .map(HeaderValue::as_bytes);
                    if given.is_none() || !key_matches(expected, given) {
                        let (status, body) = ApiError::Unauthorized.envelope();
                        return Ok((status, Json(body)).into_response());
                    }
                }
                self.inner.call(req).await
            })
            .await?;
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            response.headers_mut().insert("x-request-id", value);
        }
        Ok(response)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_parameters_are_dropped() {
        assert_eq!(
            without_empty("keywords=lamp&category_ids=&min_sale_price=&page_size=10").as_deref(),
            Some("keywords=lamp&page_size=10")
        );
        assert_eq!(without_empty("category_ids=&flag"), None);
        assert_eq!(without_empty("a=1").as_deref(), Some("a=1"));
    }

    #[test]
    fn keys_compare_by_digest() {
        let expected = Sha256::digest(b"s3cret").to_vec();
        assert!(key_matches(&expected, Some(b"s3cret")));
        assert!(!key_matches(&expected, Some(b"s3cret ")));
        assert!(!key_matches(&expected, Some(b"")));
    }
}
