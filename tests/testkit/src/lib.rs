//! Test support shared by the workspace's integration tests: real processes on loopback.
//!
//! - [`redis`]: spawn a private `redis-server` (or a 3-master cluster) on free ports.
//! - [`server`]: spawn the `larder` binary with a config and talk to it.
//! - [`auth`]: JWTs signed with test keys.
//! - [`aliexpress_gateway`]: a fake AliExpress Open Platform gateway that checks signatures.
//! - [`schemathesis`]: the OpenAPI fuzzer the conformance test runs.

pub mod aliexpress_gateway;
pub mod auth;
pub mod redis;
pub mod schemathesis;
pub mod server;
