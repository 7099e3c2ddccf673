//! `larder explain`: what the server would do with a request, from the server's own parts.

use larder_policy::{Explanation, Request};
use poem::http::{HeaderName, HeaderValue};

use crate::app::App;
use crate::http::auth::Verdict;

impl App {
    /// Explains `req` with the policies in force and the server's clock: the rule the
    /// server binds to the request's route, and the key, TTL and skip reason of the one
    /// decision function the pipeline runs ([`larder_policy::Rule::decide`]). Its headers
    /// are authenticated as the server would (a JWT verified, an API key looked up), so the
    /// tenant and user are the ones the server would key by.
    pub fn explain(&self, req: &Request) -> Result<Explanation, String> {
        let mut req = req.clone();
        let mut http = poem::Request::builder()
            .method(
                req.method
                    .parse()
                    .map_err(|_| format!("`{}` is not a method", req.method))?,
            )
            .uri_str(&req.path)
            .finish();
        for (k, v) in &req.headers {
            let (Ok(k), Ok(v)) = (
                HeaderName::from_bytes(k.as_bytes()),
                HeaderValue::from_str(v),
            ) else {
                return Err(format!("`{k}: {v}` is not a header"));
            };
            http.headers_mut().append(k, v);
        }
        let identity = match self.auth.authenticate(&http) {
            Verdict::Known(identity) => identity,
            Verdict::Refused(why) => {
                return Err(format!("the server would answer 401: {}", why.0));
            }
            Verdict::UnknownKid => {
                return Err("the server would answer 401: no key has this token's `kid`".into());
            }
        };
        let principal = identity.principal.as_deref();
        req.user = principal.map(|p| p.user.clone());
        req.tenant = self.auth.tenant(principal, &http).map(str::to_owned);
        req.credentialed = Some(identity.credentialed);
        Ok(self.engine.policy().explain(&req, self.engine.clock()))
    }
}
