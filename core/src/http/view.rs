//! The request as the policy sees it: [`larder_policy::RequestView`] over poem's request.
//!
//! Query pairs and the principal are worked out only if the rule asks for them: most keys
//! use the path alone, and a hit should not pay for the rest.

use std::cell::OnceCell;

use larder_policy::{CREDENTIAL_HEADERS, RequestView};
use poem::Request;
use poem::http::HeaderName;
use serde_json::Value;

use crate::cache::RouteSlot;

/// A borrowed request, its JSON body (when the rule reads bodies) and its route.
pub(crate) struct View<'a> {
    req: &'a Request,
    body: Option<&'a Value>,
    slot: &'a RouteSlot,
    query: OnceCell<Vec<(String, String)>>,
    user: OnceCell<Option<String>>,
}

impl<'a> View<'a> {
    pub(crate) fn new(req: &'a Request, body: Option<&'a Value>, slot: &'a RouteSlot) -> Self {
        Self {
            req,
            body,
            slot,
            query: OnceCell::new(),
            user: OnceCell::new(),
        }
    }

    fn query(&self) -> &[(String, String)] {
        self.query.get_or_init(|| {
            self.req
                .uri()
                .query()
                .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
                .unwrap_or_default()
        })
    }
}

/// [`CREDENTIAL_HEADERS`], parsed once: a header looked up by name string is parsed on
/// every lookup, and every request to a public rule checks all three.
static CREDENTIALS: [HeaderName; 3] = [
    HeaderName::from_static(CREDENTIAL_HEADERS[0]),
    HeaderName::from_static(CREDENTIAL_HEADERS[1]),
    HeaderName::from_static(CREDENTIAL_HEADERS[2]),
];

/// A stable, non-reversible id of the credentials a request carries: entries of `user`
/// scope are keyed by it, never by the secret itself. `header` reads a request header's
/// raw bytes; the server and `larder explain` both derive the principal here.
pub(crate) fn principal<'h>(header: impl Fn(&str) -> Option<&'h [u8]>) -> Option<String> {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    let mut any = false;
    for name in CREDENTIAL_HEADERS {
        if let Some(v) = header(name) {
            h.update(name.as_bytes());
            h.update(v);
            any = true;
        }
    }
    any.then(|| format!("{:032x}", h.digest128()))
}

impl RequestView for View<'_> {
    fn method(&self) -> &str {
        self.req.method().as_str()
    }
    fn path(&self) -> &str {
        self.req.uri().path()
    }
    fn path_param(&self, name: &str) -> Option<&str> {
        self.req.raw_path_param(self.slot.param_key(name)?)
    }
    fn query_param(&self, name: &str) -> Option<&str> {
        self.query()
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
    fn visit_query<'b>(&'b self, visit: &mut dyn FnMut(&'b str, &'b str)) {
        for (k, v) in self.query() {
            visit(k, v);
        }
    }
    fn header(&self, name: &str) -> Option<&str> {
        self.req.headers().get(name).and_then(|v| v.to_str().ok())
    }
    fn body(&self) -> Option<&Value> {
        self.body
    }
    fn tenant(&self) -> Option<&str> {
        self.header("x-tenant-id")
    }
    fn user(&self) -> Option<&str> {
        self.user
            .get_or_init(|| principal(|name| Some(self.req.headers().get(name)?.as_bytes())))
            .as_deref()
    }
    fn plugin(&self) -> Option<&str> {
        Some(&self.slot.plugin)
    }
    fn operation(&self) -> Option<&str> {
        self.slot.operation.as_deref()
    }
    fn has_header(&self, name: &str) -> bool {
        self.req.headers().contains_key(name)
    }
    fn has_credentials(&self) -> bool {
        let headers = self.req.headers();
        CREDENTIALS.iter().any(|h| headers.contains_key(h))
    }
}
