//! `larder explain`: what the server would do with a request, from the server's own parts.

use larder_policy::{Explanation, Request};

use crate::app::App;

impl App {
    /// Explains `req` with the policies in force and the server's clock: the rule the
    /// server binds to the request's route, and the key, TTL and skip reason of the one
    /// decision function the pipeline runs ([`larder_policy::Rule::decide`]).
    pub fn explain(&self, req: &Request) -> Explanation {
        self.engine.policy().explain(req, self.engine.clock())
    }
}
