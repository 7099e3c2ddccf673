//! `larder explain`: what the server would do with a request, from the server's own parts.

use larder_policy::{Explanation, Request, RequestView};

use crate::app::App;
use crate::http::view::principal;

impl App {
    /// Explains `req` with the policies in force and the server's clock: the rule the
    /// server binds to the request's route, and the key, TTL and skip reason of the one
    /// decision function the pipeline runs ([`larder_policy::Rule::decide`]). The tenant
    /// and user come from the request's headers as the server derives them.
    pub fn explain(&self, req: &Request) -> Explanation {
        let mut req = req.clone();
        if req.tenant.is_none() {
            req.tenant = req.header("x-tenant-id").map(str::to_owned);
        }
        if req.user.is_none() {
            let headers = req.headers.clone();
            req.user = principal(|name| {
                headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(name))
                    .map(|(_, v)| v.as_bytes())
            });
        }
        self.engine.policy().explain(&req, self.engine.clock())
    }
}
