//! HTTP: the request pipeline and its phases.
//!
//! - [`pipeline`]: the phases every request to a route passes, driven in one place, and the
//!   endpoints poem's router dispatches to;
//! - [`admission`]: body size, authentication and permissions, rate limits, CORS;
//! - [`auth`]: the verified principal of a request (JWTs, API keys, admin keys);
//! - [`view`]: the request as the policy's decision function reads it;
//! - [`respond`]: answers built from cache entries (headers, 304, coding negotiation);
//! - [`store`]: an origin answer turned into an entry;
//! - [`compression`]: stored codings, negotiation, compress and decode;
//! - [`error`]: the one JSON error envelope.

pub(crate) mod admission;
pub(crate) mod auth;
pub(crate) mod compression;
pub(crate) mod error;
pub mod pipeline;
pub(crate) mod respond;
pub(crate) mod store;
pub(crate) mod view;

/// The principal a warming job's request is made as. Only the warmer puts it in a request's
/// extensions (a client cannot reach them), and the authentication phase takes it instead of
/// credentials, so warmed entries pass the same access rules as a client's request.
#[derive(Clone)]
pub(crate) struct WarmAs(pub(crate) std::sync::Arc<larder_plugin::Principal>);

#[cfg(test)]
mod tests;
