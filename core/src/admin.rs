//! The admin API under `/admin`: API keys with read/write roles, compared in constant time.

use std::sync::Arc;

use poem::Request;
use poem_openapi::auth::{ApiKey, Bearer};
use poem_openapi::payload::Json;
use poem_openapi::{ApiResponse, Object, OpenApi, SecurityScheme};
use subtle::ConstantTimeEq;

use crate::config::{AdminKey, AdminRole};
use crate::plugins::PluginSource;

/// The configured admin keys, put in request data for the auth checkers.
#[derive(Clone, Default)]
pub struct AdminKeys(Arc<Vec<AdminKey>>);

impl AdminKeys {
    /// Wraps the configured keys.
    pub fn new(keys: Vec<AdminKey>) -> Self {
        Self(Arc::new(keys))
    }

    /// The role of a presented secret. Every configured key is compared, in constant time,
    /// so timing says nothing about which key (or how much of one) matched.
    fn role_of(&self, presented: &str) -> Option<AdminRole> {
        let mut found = None;
        for key in self.0.iter() {
            if bool::from(key.key.as_bytes().ct_eq(presented.as_bytes())) {
                found = found.max(Some(key.role));
            }
        }
        found
    }
}

async fn check_header(req: &Request, key: ApiKey) -> Option<AdminRole> {
    req.data::<AdminKeys>()?.role_of(&key.key)
}

async fn check_bearer(req: &Request, bearer: Bearer) -> Option<AdminRole> {
    req.data::<AdminKeys>()?.role_of(&bearer.token)
}

/// Admin key in the `x-admin-key` header.
#[derive(SecurityScheme)]
#[oai(
    ty = "api_key",
    key_name = "x-admin-key",
    key_in = "header",
    checker = "check_header"
)]
pub struct AdminKeyHeader(AdminRole);

/// Admin key as `Authorization: Bearer <key>`.
#[derive(SecurityScheme)]
#[oai(ty = "bearer", checker = "check_bearer")]
pub struct AdminBearer(AdminRole);

/// Either form of admin key.
#[derive(SecurityScheme)]
pub enum AdminAuth {
    /// `x-admin-key` header.
    Header(AdminKeyHeader),
    /// Bearer token.
    Bearer(AdminBearer),
}

impl AdminAuth {
    /// The caller's role.
    pub fn role(&self) -> AdminRole {
        match self {
            Self::Header(k) => k.0,
            Self::Bearer(b) => b.0,
        }
    }
}

/// An error body.
#[derive(Object, Debug)]
pub struct ErrorBody {
    /// Machine-readable code.
    pub error: String,
    /// What went wrong and what to do.
    pub message: String,
}

/// The caller's key may read but not change things.
#[derive(ApiResponse)]
pub enum Forbidden {
    /// A read-only key tried a write operation.
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
}

/// Refuses a read-only key.
pub fn require_write(auth: &AdminAuth) -> Result<(), Forbidden> {
    if auth.role() >= AdminRole::Write {
        Ok(())
    } else {
        Err(Forbidden::Forbidden(Json(ErrorBody {
            error: "forbidden".into(),
            message: "this admin key has the read role; this operation needs a write key".into(),
        })))
    }
}

/// One loaded plugin, as the admin API shows it.
#[derive(Object, Debug, Clone)]
pub struct PluginInfo {
    /// Name.
    pub name: String,
    /// Version.
    pub version: String,
    /// `builtin` or `dynamic`.
    pub kind: String,
    /// Library path for dynamic plugins.
    pub library: Option<String>,
    /// Mount prefix.
    pub prefix: String,
    /// Events it emits.
    pub events: Vec<String>,
    /// Warm sources it offers.
    pub warm_sources: Vec<String>,
}

impl PluginInfo {
    /// Describes a loaded plugin.
    pub fn of(p: &crate::plugins::LoadedPlugin) -> Self {
        let (kind, library) = match &p.source {
            PluginSource::Builtin => ("builtin", None),
            PluginSource::Dynamic { library } => ("dynamic", Some(library.display().to_string())),
        };
        Self {
            name: p.name.to_owned(),
            version: p.version.to_owned(),
            kind: kind.to_owned(),
            library,
            prefix: p.prefix.clone(),
            events: p.events.iter().map(|e| e.name.clone()).collect(),
            warm_sources: p.warm_sources.iter().map(|w| w.name.clone()).collect(),
        }
    }
}

/// What the admin API reads.
pub struct AdminState {
    /// Loaded plugins.
    pub plugins: Vec<PluginInfo>,
}

/// `/admin/...` routes.
pub struct AdminApi {
    state: Arc<AdminState>,
}

impl AdminApi {
    /// Admin routes over the server's state.
    pub fn new(state: Arc<AdminState>) -> Self {
        Self { state }
    }
}

#[OpenApi(prefix_path = "/admin")]
impl AdminApi {
    /// Loaded plugins: name, version, built-in or dynamic, prefix, events and warm sources.
    #[oai(path = "/plugins", method = "get", operation_id = "admin_plugins")]
    async fn plugins(&self, _auth: AdminAuth) -> Json<Vec<PluginInfo>> {
        Json(self.state.plugins.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_come_from_the_matching_key() {
        let keys = AdminKeys::new(vec![
            AdminKey {
                key: "read-key-0123456789".into(),
                role: AdminRole::Read,
            },
            AdminKey {
                key: "write-key-0123456789".into(),
                role: AdminRole::Write,
            },
        ]);
        assert_eq!(keys.role_of("read-key-0123456789"), Some(AdminRole::Read));
        assert_eq!(keys.role_of("write-key-0123456789"), Some(AdminRole::Write));
        assert_eq!(keys.role_of("write-key-012345678"), None);
        assert_eq!(keys.role_of(""), None);
    }
}
