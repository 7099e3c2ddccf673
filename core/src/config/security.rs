//! `security.auth`: how a request's identity is verified. Everything is optional; with
//! nothing configured no request has a principal, public routes behave as before, and
//! `tenant`/`user`-scoped rules do not cache (they have no verified principal to key by).

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Verified identities: JWTs, API keys, and which request headers count as credentials.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Keys that verify `Authorization: Bearer <JWT>`; a token is checked against the keys
    /// whose `kid` (or, without one, whose algorithm) matches its header.
    pub jwt: Vec<JwtKeyConfig>,
    /// API keys, sent in [`ApiKeysConfig::header`].
    pub api_keys: ApiKeysConfig,
    /// Honour `X-Tenant-Id` as the tenant of a request whose verified principal has none.
    /// Only behind a gateway that sets (and strips) it: otherwise clients choose their own
    /// tenant. A principal's own tenant always wins.
    pub trust_tenant_header: bool,
    /// Request headers that make a request credentialed (lower case), besides
    /// `authorization` and the API-key header. A cookie counts only when named here as
    /// `cookie:<name>`; other cookies (analytics, preferences) do not keep a browser from
    /// being served a public entry.
    pub credential_headers: Vec<String>,
}

/// One JWT verification key.
#[derive(Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct JwtKeyConfig {
    /// The key id (`kid`) tokens carry for this key; tokens without a `kid` are tried
    /// against every key allowing their algorithm.
    #[serde(default)]
    pub kid: Option<String>,
    /// Algorithms this key verifies (pinned: a token naming another is refused). `HS256`,
    /// `HS384`, `HS512`, `RS256`, `RS384`, `RS512`, `PS256`, `PS384`, `PS512`, `ES256`,
    /// `ES384`, `EdDSA`.
    pub algorithms: Vec<String>,
    /// The shared secret of an `HS*` key, or `env:VAR` to read it from the environment.
    #[serde(default)]
    pub secret: Option<String>,
    /// A PEM file with the public key of an `RS*`/`PS*`/`ES*`/`EdDSA` key (relative to the
    /// config file).
    #[serde(default)]
    pub public_key_file: Option<PathBuf>,
    /// A JWKS document (a file relative to the config file, or an `http(s)://` URL) with the
    /// public keys, chosen by `kid`. A URL is fetched at start, every
    /// `jwks_refresh_seconds`, and when a token names an unknown `kid`; the last good set is
    /// kept when a fetch fails.
    #[serde(default)]
    pub jwks: Option<String>,
    /// Seconds between JWKS fetches.
    #[serde(default = "default_jwks_refresh")]
    pub jwks_refresh_seconds: u64,
    /// A token naming an unknown `kid` fetches the JWKS again at most this often (seconds),
    /// so made-up key ids cannot make the server hammer the key server.
    #[serde(default = "default_jwks_cooldown")]
    pub jwks_cooldown_seconds: u64,
    /// Required `iss`.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud` (one of the token's).
    #[serde(default)]
    pub audience: Option<String>,
    /// Clock skew allowed on `exp` and `nbf`, in seconds.
    #[serde(default = "default_leeway")]
    pub leeway_seconds: u64,
    /// Which claims hold the principal.
    #[serde(default)]
    pub claims: ClaimMap,
}

impl std::fmt::Debug for JwtKeyConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtKeyConfig")
            .field("kid", &self.kid)
            .field("algorithms", &self.algorithms)
            .field("secret", &self.secret.as_ref().map(|_| "<redacted>"))
            .field("public_key_file", &self.public_key_file)
            .field("jwks", &self.jwks)
            .field("issuer", &self.issuer)
            .field("audience", &self.audience)
            .finish_non_exhaustive()
    }
}

fn default_jwks_refresh() -> u64 {
    300
}

fn default_jwks_cooldown() -> u64 {
    10
}

fn default_leeway() -> u64 {
    30
}

/// The claims a principal is read from.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ClaimMap {
    /// The user id.
    pub user: String,
    /// The tenant id (absent: the principal has no tenant).
    pub tenant: String,
    /// Permissions: a JSON array of strings, or one space-separated string (OAuth `scope`).
    pub permissions: String,
}

impl Default for ClaimMap {
    fn default() -> Self {
        Self {
            user: "sub".into(),
            tenant: "tid".into(),
            permissions: "permissions".into(),
        }
    }
}

/// API keys.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// The header clients send the key in.
    pub header: String,
    /// The keys.
    pub keys: Vec<ApiKeyConfig>,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        Self {
            header: "x-api-key".into(),
            keys: Vec::new(),
        }
    }
}

/// One API key: never the key itself in the file, its SHA-256 (or an environment
/// variable holding the key).
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ApiKeyConfig {
    /// The key's name: the principal's user id, and what the audit log shows.
    pub name: String,
    /// Hex SHA-256 of the key (`printf %s "$KEY" | sha256sum`).
    #[serde(default)]
    pub sha256: Option<String>,
    /// An environment variable holding the key itself.
    #[serde(default)]
    pub env: Option<String>,
    /// The tenant requests with this key belong to.
    #[serde(default)]
    pub tenant: Option<String>,
    /// What the key may do.
    #[serde(default)]
    pub permissions: Vec<String>,
}

/// What each route needs, overriding the plugins' declarations: `"METHOD /template"` →
/// permissions (all required; an empty list makes the route public).
pub type RoutePermissions = BTreeMap<String, Vec<String>>;
