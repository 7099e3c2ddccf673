//! Authentication: the verified principal of a request, from credentials only.
//!
//! A JWT (`Authorization: Bearer`) is verified against a configured key — a shared
//! secret, a PEM public key, or a JWKS set chosen by `kid` — with its algorithm pinned per
//! key, its signature, `iss`, `aud`, `exp` and `nbf` (against the server's clock, with
//! leeway). An API key is compared by SHA-256 digest in constant time, an admin key likewise.
//! A verified JWT is remembered until it expires, so a cached request pays one map lookup
//! for its identity, not a signature check.
//!
//! Headers a client can set freely (`X-Tenant-Id`, a cookie nobody named) are data, not
//! identity: `X-Tenant-Id` counts only when the operator says a trusted gateway sets it.

use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use larder_plugin::{CACHE_MANAGE, CACHE_READ, Principal, PrincipalKind};
use poem::Request;
use poem::http::HeaderName;
use poem::http::header::{self, HeaderValue};
use serde_json::Value;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{AdminRole, AuthConfig, ClaimMap, JwtKeyConfig, LoadedConfig};

static X_ADMIN_KEY: HeaderName = HeaderName::from_static("x-admin-key");

/// How many verified tokens are remembered (each until it expires).
const VERIFIED_TOKENS: usize = 16_384;

/// Why a request's credentials were refused (401), in words a client can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refused(pub String);

/// What authentication made of a request.
pub(crate) enum Verdict {
    /// Who it is (or nobody), and whether it carried credentials at all.
    Known(Identity),
    /// The credentials are not good.
    Refused(Refused),
    /// A JWT names a key id no key has; a JWKS fetch may know it.
    UnknownKid,
}

/// The request's verified principal, if any, and whether it carried credentials (verified
/// or not: a public rule neither serves nor stores a credentialed request).
#[derive(Debug, Clone, Default)]
pub(crate) struct Identity {
    pub principal: Option<Arc<Principal>>,
    pub credentialed: bool,
}

/// A key that verifies JWTs.
struct JwtKey {
    kid: Option<String>,
    algorithms: Vec<Algorithm>,
    key: DecodingKey,
    rules: Arc<JwtRules>,
}

/// The claim checks of one configured key (shared by a JWKS set's keys).
struct JwtRules {
    issuer: Option<String>,
    audience: Option<String>,
    leeway: u64,
    claims: ClaimMap,
    /// Several issuers are configured: a `sub` is unique only within its issuer (OIDC), so
    /// the user id carries the issuer (`jwt:<iss>/<sub>`).
    by_issuer: bool,
}

/// A JWKS source and the keys it gave last.
struct Jwks {
    source: String,
    algorithms: Vec<Algorithm>,
    rules: Arc<JwtRules>,
    keys: ArcSwap<Vec<Arc<JwtKey>>>,
    refresh: Duration,
    /// Least time between fetches an unknown `kid` forces.
    cooldown: Duration,
    last_fetch: parking_lot::Mutex<Option<tokio::time::Instant>>,
}

struct ApiKey {
    name: String,
    digest: [u8; 32],
    tenant: Option<String>,
    permissions: Vec<String>,
}

/// Verifies requests' credentials; one per server.
pub(crate) struct Authenticator {
    keys: Vec<Arc<JwtKey>>,
    jwks: Vec<Jwks>,
    api_header: HeaderName,
    api_keys: Vec<ApiKey>,
    admin_keys: Vec<([u8; 32], AdminRole)>,
    verified: quick_cache::sync::Cache<Box<str>, (Arc<Principal>, i64)>,
    credential_headers: Vec<HeaderName>,
    credential_cookies: Vec<String>,
    trust_tenant_header: bool,
    clock: larder_store::Clock,
    client: reqwest::Client,
}

fn digest(secret: &[u8]) -> [u8; 32] {
    Sha256::digest(secret).into()
}

/// Whether `secret` is the one whose digest is `expected`. Comparing digests in constant
/// time says nothing about the key's content or length.
fn same_secret(expected: &[u8; 32], secret: &[u8]) -> bool {
    digest(secret).ct_eq(expected).into()
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    if name.trim().eq_ignore_ascii_case("none") {
        return Err("`none` (unsigned tokens) is never accepted".into());
    }
    Algorithm::from_str(name.trim()).map_err(|_| {
        format!(
            "`{name}` is not a JWT algorithm this server verifies (HS256/384/512, RS256/384/512, PS256/384/512, ES256/384, EdDSA)"
        )
    })
}

/// A secret written as `env:VAR` reads the environment.
fn secret_value(s: &str) -> Result<String, String> {
    match s.strip_prefix("env:") {
        Some(var) => std::env::var(var)
            .map_err(|_| format!("environment variable `{var}` is not set"))
            .and_then(|v| {
                if v.is_empty() {
                    Err(format!("environment variable `{var}` is empty"))
                } else {
                    Ok(v)
                }
            }),
        None => Ok(s.to_owned()),
    }
}

/// A configured path, relative to the config file.
fn resolve(config: &LoadedConfig, path: &Path) -> std::path::PathBuf {
    match config.file.as_ref().and_then(|f| f.parent()) {
        Some(dir) if path.is_relative() && !dir.as_os_str().is_empty() => dir.join(path),
        _ => path.to_owned(),
    }
}

fn pem_key(alg: Algorithm, pem: &[u8]) -> Result<DecodingKey, String> {
    use Algorithm::*;
    let key = match alg {
        RS256 | RS384 | RS512 | PS256 | PS384 | PS512 => DecodingKey::from_rsa_pem(pem),
        ES256 | ES384 => DecodingKey::from_ec_pem(pem),
        EdDSA => DecodingKey::from_ed_pem(pem),
        HS256 | HS384 | HS512 => {
            return Err("an HS* key takes a `secret`, not a public key".into());
        }
    };
    key.map_err(|e| format!("not a usable public key: {e}"))
}

fn jwk_keys(set: &jsonwebtoken::jwk::JwkSet, jwks: &Jwks) -> Vec<Arc<JwtKey>> {
    set.keys
        .iter()
        .filter_map(|jwk| {
            let key = DecodingKey::from_jwk(jwk).ok()?;
            Some(Arc::new(JwtKey {
                kid: jwk.common.key_id.clone(),
                algorithms: jwks.algorithms.clone(),
                key,
                rules: jwks.rules.clone(),
            }))
        })
        .collect()
}

impl Authenticator {
    /// Builds the verifiers from `security.auth` and the admin keys; every problem is
    /// reported (`path` → message) so `larder check` can point at each.
    pub(crate) fn new(
        config: &LoadedConfig,
        clock: larder_store::Clock,
    ) -> Result<Self, Vec<(String, String)>> {
        let security = &config.config.security;
        let auth: &AuthConfig = &security.auth;
        let mut problems = Vec::new();
        let mut keys = Vec::new();
        let mut jwks = Vec::new();
        let issuers: std::collections::BTreeSet<Option<&str>> =
            auth.jwt.iter().map(|k| k.issuer.as_deref()).collect();
        let by_issuer = issuers.len() > 1;
        for (i, k) in auth.jwt.iter().enumerate() {
            let at = |field: &str| format!("security.auth.jwt.{i}.{field}");
            let algorithms: Vec<Algorithm> = k
                .algorithms
                .iter()
                .enumerate()
                .filter_map(|(j, a)| match algorithm(a) {
                    Ok(a) => Some(a),
                    Err(e) => {
                        problems.push((at(&format!("algorithms.{j}")), e));
                        None
                    }
                })
                .collect();
            if k.algorithms.is_empty() {
                problems.push((
                    at("algorithms"),
                    "name the algorithms this key verifies (pinned: tokens naming another are refused)".into(),
                ));
            }
            let rules = Arc::new(JwtRules {
                issuer: k.issuer.clone(),
                audience: k.audience.clone(),
                leeway: k.leeway_seconds,
                claims: k.claims.clone(),
                by_issuer,
            });
            match Self::key_source(config, k, &algorithms) {
                Ok(Source::Key(key)) => keys.push(Arc::new(JwtKey {
                    kid: k.kid.clone(),
                    algorithms,
                    key,
                    rules,
                })),
                Ok(Source::Jwks(source)) => jwks.push(Jwks {
                    source,
                    algorithms,
                    rules,
                    keys: ArcSwap::from_pointee(Vec::new()),
                    refresh: Duration::from_secs(k.jwks_refresh_seconds.max(1)),
                    cooldown: Duration::from_secs(k.jwks_cooldown_seconds),
                    last_fetch: parking_lot::Mutex::new(None),
                }),
                Err((field, e)) => problems.push((at(field), e)),
            }
        }
        let mut api_keys = Vec::new();
        for (i, k) in auth.api_keys.keys.iter().enumerate() {
            let at = |field: &str| format!("security.auth.api_keys.keys.{i}.{field}");
            let digest = match (&k.sha256, &k.env) {
                (Some(hex_digest), None) => match hex::decode(hex_digest.trim()) {
                    Ok(bytes) if bytes.len() == 32 => {
                        let mut d = [0u8; 32];
                        d.copy_from_slice(&bytes);
                        Some(d)
                    }
                    _ => {
                        problems.push((
                            at("sha256"),
                            "not a hex SHA-256 (64 hex digits: `printf %s \"$KEY\" | sha256sum`)"
                                .into(),
                        ));
                        None
                    }
                },
                (None, Some(var)) => match secret_value(&format!("env:{var}")) {
                    Ok(key) => Some(digest(key.as_bytes())),
                    Err(e) => {
                        problems.push((at("env"), e));
                        None
                    }
                },
                _ => {
                    problems.push((
                        at("name"),
                        format!(
                            "API key `{}` needs exactly one of `sha256` and `env`",
                            k.name
                        ),
                    ));
                    None
                }
            };
            if let Some(digest) = digest {
                api_keys.push(ApiKey {
                    name: k.name.clone(),
                    digest,
                    tenant: k.tenant.clone(),
                    permissions: k.permissions.clone(),
                });
            }
        }
        let api_header = HeaderName::from_bytes(auth.api_keys.header.trim().as_bytes())
            .unwrap_or_else(|_| {
                problems.push((
                    "security.auth.api_keys.header".into(),
                    format!("`{}` is not a header name", auth.api_keys.header),
                ));
                HeaderName::from_static("x-api-key")
            });
        let mut credential_headers = vec![api_header.clone()];
        let mut credential_cookies = Vec::new();
        for (i, h) in auth.credential_headers.iter().enumerate() {
            let h = h.trim();
            // Cookie names are case-sensitive (`PHPSESSID`); header names are not.
            if let Some(cookie) = h
                .get(..7)
                .filter(|p| p.eq_ignore_ascii_case("cookie:"))
                .map(|_| &h[7..])
            {
                credential_cookies.push(cookie.trim().to_owned());
            } else {
                let h = h.to_ascii_lowercase();
                match HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) if name == header::COOKIE => problems.push((
                        format!("security.auth.credential_headers.{i}"),
                        "name the session cookie (`cookie:<name>`): any cookie at all would keep every browser from the cache".into(),
                    )),
                    Ok(name) => credential_headers.push(name),
                    Err(_) => problems.push((
                        format!("security.auth.credential_headers.{i}"),
                        format!("`{h}` is not a header name"),
                    )),
                }
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Self {
            keys,
            jwks,
            api_header,
            api_keys,
            admin_keys: security
                .admin_keys
                .iter()
                .map(|k| (digest(k.key.as_bytes()), k.role))
                .collect(),
            verified: quick_cache::sync::Cache::new(VERIFIED_TOKENS),
            credential_headers,
            credential_cookies,
            trust_tenant_header: auth.trust_tenant_header,
            clock,
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
        })
    }

    fn key_source(
        config: &LoadedConfig,
        k: &JwtKeyConfig,
        algorithms: &[Algorithm],
    ) -> Result<Source, (&'static str, String)> {
        match (&k.secret, &k.public_key_file, &k.jwks) {
            (Some(secret), None, None) => {
                if algorithms
                    .iter()
                    .any(|a| !matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
                {
                    return Err((
                        "algorithms",
                        "a `secret` verifies HS* algorithms only (an RS/ES key with a secret invites algorithm confusion)".into(),
                    ));
                }
                let secret = secret_value(secret).map_err(|e| ("secret", e))?;
                if secret.len() < 32 {
                    return Err((
                        "secret",
                        "an HS* secret shorter than 32 bytes can be guessed; use a long random one"
                            .into(),
                    ));
                }
                Ok(Source::Key(DecodingKey::from_secret(secret.as_bytes())))
            }
            (None, Some(file), None) => {
                let path = resolve(config, file);
                let pem = std::fs::read(&path).map_err(|e| {
                    (
                        "public_key_file",
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                })?;
                let alg = *algorithms.first().ok_or((
                    "algorithms",
                    "name the algorithm this key verifies".to_owned(),
                ))?;
                if algorithms
                    .iter()
                    .any(|a| matches!(a, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512))
                {
                    return Err((
                        "algorithms",
                        "a public key never verifies HS* tokens (that is the RS/HS confusion attack)"
                            .into(),
                    ));
                }
                pem_key(alg, &pem)
                    .map(Source::Key)
                    .map_err(|e| ("public_key_file", e))
            }
            (None, None, Some(jwks)) => {
                if jwks.starts_with("http://") || jwks.starts_with("https://") {
                    let url = reqwest::Url::parse(jwks)
                        .map_err(|e| ("jwks", format!("not a URL: {e}")))?;
                    let host = url.host_str().unwrap_or("").trim_matches(['[', ']']);
                    let loopback = host.eq_ignore_ascii_case("localhost")
                        || host
                            .parse::<std::net::IpAddr>()
                            .is_ok_and(|ip| ip.is_loopback());
                    if url.scheme() == "http" && !loopback {
                        return Err((
                            "jwks",
                            "fetch the JWKS over https: over http anyone on the path can hand the server their own keys (http is accepted for loopback only)".into(),
                        ));
                    }
                    Ok(Source::Jwks(jwks.clone()))
                } else {
                    let path = resolve(config, Path::new(jwks));
                    if !path.is_file() {
                        return Err(("jwks", format!("no JWKS file at `{}`", path.display())));
                    }
                    Ok(Source::Jwks(path.display().to_string()))
                }
            }
            _ => Err((
                "algorithms",
                "give each JWT key exactly one of `secret`, `public_key_file` and `jwks`".into(),
            )),
        }
    }

    /// Fetches every JWKS source now (at start, on schedule, for an unknown `kid`). A failed
    /// fetch keeps the keys already known and is logged.
    pub(crate) async fn refresh_jwks(&self, forced: bool) {
        for jwks in &self.jwks {
            {
                let mut last = jwks.last_fetch.lock();
                let now = tokio::time::Instant::now();
                if let Some(at) = *last {
                    let wait = if forced { jwks.cooldown } else { jwks.refresh };
                    // A forced fetch (an unknown kid) waits out the cooldown even with no
                    // keys at all: a failing key server must not be asked once per request.
                    if now.duration_since(at) < wait && (forced || !jwks.keys.load().is_empty()) {
                        continue;
                    }
                }
                *last = Some(now);
            }
            let text = if jwks.source.starts_with("http") {
                match self.client.get(&jwks.source).send().await {
                    Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
                    Ok(r) => Err(format!("answered {}", r.status())),
                    Err(e) => Err(e.to_string()),
                }
            } else {
                tokio::fs::read_to_string(&jwks.source)
                    .await
                    .map_err(|e| e.to_string())
            };
            match text.and_then(|t| {
                serde_json::from_str::<jsonwebtoken::jwk::JwkSet>(&t).map_err(|e| e.to_string())
            }) {
                Ok(set) => {
                    let keys = jwk_keys(&set, jwks);
                    tracing::info!(source = %jwks.source, keys = keys.len(), "JWKS loaded");
                    jwks.keys.store(Arc::new(keys));
                }
                Err(e) => tracing::warn!(
                    source = %jwks.source,
                    error = %e,
                    "JWKS fetch failed; the keys already known stay in use"
                ),
            }
        }
    }

    /// Refreshes JWKS URLs on their interval until `shutdown`.
    pub(crate) fn schedule(
        self: &Arc<Self>,
        tasks: &tokio_util::task::TaskTracker,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let Some(every) = self.jwks.iter().map(|j| j.refresh).min() else {
            return;
        };
        let auth = self.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tick.tick() => auth.refresh_jwks(false).await,
                }
            }
        });
    }

    /// Whether a request carries credentials (verified or not).
    /// Whether the request carries a credential besides `Authorization` (which the caller
    /// has looked at already): the API-key header, a configured one, a named cookie.
    fn credentialed(&self, req: &Request) -> bool {
        let headers = req.headers();
        self.credential_headers
            .iter()
            .any(|h| headers.contains_key(h))
            || (!self.credential_cookies.is_empty()
                && headers.get_all(header::COOKIE).iter().any(|c| {
                    c.to_str().is_ok_and(|c| {
                        c.split(';').any(|pair| {
                            let name = pair.split('=').next().unwrap_or("").trim();
                            self.credential_cookies.iter().any(|n| n == name)
                        })
                    })
                }))
    }

    /// The authentication phase: who the request is, from its credentials alone.
    pub(crate) fn authenticate(&self, req: &Request) -> Verdict {
        let known = |principal| {
            Verdict::Known(Identity {
                principal: Some(principal),
                credentialed: true,
            })
        };
        if let Some(warm) = req.extensions().get::<super::WarmAs>() {
            return known(warm.0.clone());
        }
        // Every request comes through here, hits included: each header is looked up once,
        // by a prepared name.
        let headers = req.headers();
        if let Some(key) = headers.get(&X_ADMIN_KEY) {
            return match self.admin(key.as_bytes()) {
                Some(admin) => known(admin),
                None => Verdict::Refused(Refused(
                    "the `x-admin-key` header holds no admin key".into(),
                )),
            };
        }
        let authorization = headers.get(header::AUTHORIZATION);
        // The scheme is case-insensitive (RFC 9110); another scheme (Basic, ...) is a
        // credential this server does not verify: the request is credentialed, and an API
        // key beside it still counts.
        let bearer = authorization
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                v.get(..7)
                    .is_some_and(|s| s.eq_ignore_ascii_case("bearer "))
            })
            .map(|v| v[7..].trim());
        if let Some(token) = bearer {
            // A token verified before (only JWTs are remembered) skips the admin keys'
            // digest as well as the signature check.
            if let Some(principal) = self.remembered(token) {
                return known(principal);
            }
            if let Some(admin) = self.admin(token.as_bytes()) {
                return known(admin);
            }
            if !self.keys.is_empty() || !self.jwks.is_empty() {
                return match self.jwt(token) {
                    Ok(p) => known(p),
                    Err(JwtError::Refused(r)) => Verdict::Refused(r),
                    Err(JwtError::UnknownKid) => Verdict::UnknownKid,
                };
            }
        }
        if !self.api_keys.is_empty()
            && let Some(key) = headers.get(&self.api_header)
        {
            return match self
                .api_keys
                .iter()
                .find(|k| same_secret(&k.digest, key.as_bytes()))
            {
                Some(k) => known(Arc::new(Principal {
                    user: format!("key:{}", k.name),
                    tenant: k.tenant.clone(),
                    permissions: k.permissions.clone(),
                    kind: PrincipalKind::ApiKey,
                })),
                None => Verdict::Refused(Refused(format!(
                    "the `{}` header holds no known API key",
                    self.api_header
                ))),
            };
        }
        Verdict::Known(Identity {
            principal: None,
            credentialed: authorization.is_some() || self.credentialed(req),
        })
    }

    fn admin(&self, presented: &[u8]) -> Option<Arc<Principal>> {
        if self.admin_keys.is_empty() {
            return None;
        }
        // Every key is compared, so timing says nothing about which one matched.
        let presented = digest(presented);
        let role = self
            .admin_keys
            .iter()
            .filter(|(d, _)| bool::from(d.ct_eq(&presented)))
            .map(|(_, r)| *r)
            .max()?;
        let mut permissions = vec![CACHE_READ.to_owned()];
        if role == AdminRole::Write {
            permissions.push(CACHE_MANAGE.to_owned());
        }
        Some(Arc::new(Principal {
            user: format!(
                "admin:{}",
                if role == AdminRole::Write {
                    "write"
                } else {
                    "read"
                }
            ),
            tenant: None,
            permissions,
            kind: PrincipalKind::Admin,
        }))
    }

    /// The tenant a request's policy keys and limits use: the principal's own, else (only
    /// behind a trusted gateway) `X-Tenant-Id`.
    pub(crate) fn tenant<'a>(
        &self,
        principal: Option<&'a Principal>,
        req: &'a Request,
    ) -> Option<&'a str> {
        principal
            .and_then(|p| p.tenant.as_deref())
            .or_else(|| {
                self.trust_tenant_header
                    .then(|| req.headers().get("x-tenant-id")?.to_str().ok())
                    .flatten()
            })
            .filter(|t| !t.is_empty())
    }

    fn now_secs(&self) -> i64 {
        (self.clock.now_ms() / 1000) as i64
    }

    /// The principal of a JWT verified earlier and not expired since.
    fn remembered(&self, token: &str) -> Option<Arc<Principal>> {
        if self.keys.is_empty() && self.jwks.is_empty() {
            return None;
        }
        let (p, exp) = self.verified.get(token)?;
        (self.now_secs() < exp).then_some(p)
    }

    fn jwt(&self, token: &str) -> Result<Arc<Principal>, JwtError> {
        let now = self.now_secs();
        let refused = |m: String| JwtError::Refused(Refused(m));
        let head = jsonwebtoken::decode_header(token).map_err(|e| {
            if unsigned(token) {
                refused("unsigned tokens (`alg: none`) are refused".into())
            } else {
                refused(format!("malformed token: {}", describe(e.kind())))
            }
        })?;
        let jwks_keys: Vec<Arc<Vec<Arc<JwtKey>>>> =
            self.jwks.iter().map(|j| j.keys.load_full()).collect();
        let candidates: Vec<&Arc<JwtKey>> = self
            .keys
            .iter()
            .chain(jwks_keys.iter().flat_map(|k| k.iter()))
            .filter(|k| match (&head.kid, &k.kid) {
                (Some(want), Some(have)) => want == have,
                (Some(_), None) => true,
                (None, _) => true,
            })
            .collect();
        if candidates.is_empty() {
            if head.kid.is_some() && !self.jwks.is_empty() {
                return Err(JwtError::UnknownKid);
            }
            return Err(refused(format!(
                "no key verifies this token (kid {})",
                head.kid.as_deref().unwrap_or("none")
            )));
        }
        let allowed: Vec<&&Arc<JwtKey>> = candidates
            .iter()
            .filter(|k| k.algorithms.contains(&head.alg))
            .collect();
        let Some(first) = allowed.first() else {
            return Err(refused(format!(
                "algorithm {:?} is not allowed for this key",
                head.alg
            )));
        };
        let mut last = None;
        for key in std::iter::once(first).chain(allowed.iter().skip(1)) {
            match verify(key, token, head.alg, now) {
                Ok((principal, exp)) => {
                    let principal = Arc::new(principal);
                    self.verified.insert(token.into(), (principal.clone(), exp));
                    return Ok(principal);
                }
                Err(e) => last = Some(e),
            }
        }
        Err(refused(last.unwrap_or_else(|| "bad signature".into())))
    }
}

/// Whether a token's header says `alg: none` (jsonwebtoken has no such algorithm, so it
/// fails as "unknown algorithm"; the client deserves the real reason).
fn unsigned(token: &str) -> bool {
    use base64::Engine;
    let Some(head) = token.split('.').next() else {
        return false;
    };
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(head.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|h| {
            h.get("alg")?
                .as_str()
                .map(|a| a.eq_ignore_ascii_case("none"))
        })
        .unwrap_or(false)
}

enum Source {
    Key(DecodingKey),
    Jwks(String),
}

enum JwtError {
    Refused(Refused),
    UnknownKid,
}

fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidIssuer => "wrong issuer (`iss`)".into(),
        ErrorKind::InvalidAudience => "wrong audience (`aud`)".into(),
        ErrorKind::InvalidAlgorithm => "algorithm not allowed for this key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("the `{c}` claim is missing"),
        ErrorKind::InvalidToken => "not a JWT (three base64url parts)".into(),
        ErrorKind::Base64(_) => "a part is not base64url".into(),
        ErrorKind::Json(_) => "a part is not JSON".into(),
        ErrorKind::Utf8(_) => "a part is not UTF-8".into(),
        ErrorKind::InvalidAlgorithmName => "unknown algorithm".into(),
        other => format!("{other:?}"),
    }
}

/// Checks one token with one key; the principal and its expiry (unix seconds).
fn verify(key: &JwtKey, token: &str, alg: Algorithm, now: i64) -> Result<(Principal, i64), String> {
    let mut validation = Validation::new(alg);
    validation.algorithms = vec![alg];
    // Time is checked below against the server's clock (`server.clock_start` moves it).
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.required_spec_claims.clear();
    let rules = &key.rules;
    match &rules.issuer {
        Some(iss) => validation.set_issuer(&[iss]),
        None => validation.iss = None,
    }
    match &rules.audience {
        Some(aud) => validation.set_audience(&[aud]),
        None => validation.validate_aud = false,
    }
    let data = jsonwebtoken::decode::<serde_json::Map<String, Value>>(token, &key.key, &validation)
        .map_err(|e| describe(e.kind()))?;
    let claims = data.claims;
    if rules.issuer.is_some() && !claims.contains_key("iss") {
        return Err("the `iss` claim is missing".into());
    }
    if rules.audience.is_some() && !claims.contains_key("aud") {
        return Err("the `aud` claim is missing".into());
    }
    let leeway = rules.leeway as i64;
    let exp = claims
        .get("exp")
        .and_then(Value::as_i64)
        .ok_or("the `exp` claim is missing: tokens must expire")?;
    if now > exp + leeway {
        return Err(format!("expired {} s ago", now - exp));
    }
    if let Some(nbf) = claims.get("nbf").and_then(Value::as_i64)
        && now + leeway < nbf
    {
        return Err(format!("not valid for another {} s (`nbf`)", nbf - now));
    }
    let text = |v: &Value| match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    };
    let user = claims
        .get(&rules.claims.user)
        .and_then(text)
        .filter(|u| !u.is_empty())
        .ok_or_else(|| format!("the `{}` claim (the user) is missing", rules.claims.user))?;
    let tenant = claims.get(&rules.claims.tenant).and_then(text);
    let permissions = match claims.get(&rules.claims.permissions) {
        Some(Value::Array(items)) => items.iter().filter_map(text).collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    };
    let user = match claims.get("iss").and_then(text) {
        Some(iss) if rules.by_issuer => format!("jwt:{iss}/{user}"),
        _ => format!("jwt:{user}"),
    };
    Ok((
        Principal {
            user,
            tenant,
            permissions,
            kind: PrincipalKind::Jwt,
        },
        exp + leeway,
    ))
}

/// The `401` for refused or missing credentials, with `WWW-Authenticate`.
pub(crate) fn unauthorized(message: String, invalid: bool) -> poem::Response {
    let challenge = if invalid {
        format!(
            "Bearer realm=\"larder\", error=\"invalid_token\", error_description=\"{}\"",
            message.replace('"', "'")
        )
    } else {
        "Bearer realm=\"larder\"".to_owned()
    };
    let mut resp = crate::http::error::ApiError::new(
        if invalid {
            "invalid_credentials"
        } else {
            "unauthorized"
        },
        message,
    )
    .respond(poem::http::StatusCode::UNAUTHORIZED);
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}
