//! Who is asking: the principal the core verified, and what each route requires.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// A verified identity: from a JWT whose signature and claims checked out, an API key
/// compared in constant time, or an admin key. Never from a header a client can set.
///
/// The core puts it in the request's extensions before the handler runs; read it with
/// `req.extensions().get::<Arc<Principal>>()` (absent for anonymous requests).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Principal {
    /// The user (a JWT's user claim, or the API key's name).
    pub user: String,
    /// The tenant, when the credential names one.
    pub tenant: Option<String>,
    /// What the principal may do (`analytics:read`, `cache:manage`, ...).
    pub permissions: Vec<String>,
    /// How it was verified.
    pub kind: PrincipalKind,
}

/// How a [`Principal`] was verified.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrincipalKind {
    /// A signed JWT.
    Jwt,
    /// An API key.
    ApiKey,
    /// One of the core's admin keys.
    Admin,
    /// A warming job's request, made as the principal its plugin named.
    Warming,
}

impl Principal {
    /// Whether it holds `permission`.
    pub fn can(&self, permission: &str) -> bool {
        self.permissions.iter().any(|p| p == permission)
    }
}

/// The principal of the request a handler is serving, if any.
pub fn principal_of(req: &poem::Request) -> Option<&Arc<Principal>> {
    req.extensions().get::<Arc<Principal>>()
}

/// The permissions a route needs (all of them), declared by its plugin. The operator can
/// override them per route in the config.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutePermission {
    /// The route's operation id.
    pub operation: String,
    /// The permissions it needs.
    pub permissions: Vec<String>,
}

impl RoutePermission {
    /// `operation` needs every one of `permissions`.
    pub fn new(operation: &str, permissions: &[&str]) -> Self {
        Self {
            operation: operation.to_owned(),
            permissions: permissions.iter().map(|p| (*p).to_owned()).collect(),
        }
    }
}

/// Reads the cache's statistics and health (a plugin's cache-admin read aliases).
pub const CACHE_READ: &str = "cache:read";
/// Purges, warms and benchmarks the cache (a plugin's cache-admin write aliases).
pub const CACHE_MANAGE: &str = "cache:manage";
