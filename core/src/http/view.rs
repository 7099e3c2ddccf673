//! The request as the policy sees it: [`larder_policy::RequestView`] over poem's request.
//!
//! Query pairs are parsed only if the rule asks for them: most keys use the path alone,
//! and a hit should not pay for the rest. Tenant and user come from the verified principal
//! (admission), never from a header a client chose.

use std::cell::OnceCell;

use larder_policy::RequestView;
use poem::Request;
use serde_json::Value;

use crate::cache::RouteSlot;

/// A borrowed request, its JSON body (when the rule reads bodies), its route and who it is.
pub(crate) struct View<'a> {
    req: &'a Request,
    body: Option<&'a Value>,
    slot: &'a RouteSlot,
    who: Who<'a>,
    query: OnceCell<Vec<(String, String)>>,
}

/// The verified identity the policy may key by: never a header a client chose.
#[derive(Clone, Copy, Default)]
pub(crate) struct Who<'a> {
    /// The verified user (`jwt:<sub>`, `key:<name>`, `admin:<role>`).
    pub user: Option<&'a str>,
    /// The verified tenant (or, behind a trusted gateway, `X-Tenant-Id`).
    pub tenant: Option<&'a str>,
    /// Whether the request carried credentials, verified or not.
    pub credentialed: bool,
}

impl<'a> View<'a> {
    pub(crate) fn new(
        req: &'a Request,
        body: Option<&'a Value>,
        slot: &'a RouteSlot,
        who: Who<'a>,
    ) -> Self {
        Self {
            req,
            body,
            slot,
            who,
            query: OnceCell::new(),
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
        self.who.tenant
    }
    fn user(&self) -> Option<&str> {
        self.who.user
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
        self.who.credentialed
    }
}
