//! Credentials for tests: JWTs signed with test keys, and the config that verifies them.

pub use jsonwebtoken::Algorithm;
use jsonwebtoken::{EncodingKey, Header};
use serde_json::{Value, json};

/// The HS256 secret test servers verify with.
pub const HS_SECRET: &str = "test-hs256-secret-0123456789abcdef0123456789";

/// Unix seconds the test servers' clock starts at (`server.clock_start`), so token expiry
/// never depends on the day the tests run: 2026-03-04T15:00:00Z.
pub const NOW: u64 = 1_772_636_400;
/// [`NOW`] as `server.clock_start` takes it.
pub const NOW_TEXT: &str = "2026-03-04T15:00:00Z";

/// Claims for `sub`, valid from an hour before [`NOW`] to an hour after, with extra fields.
pub fn claims(sub: &str, extra: Value) -> Value {
    let mut c = json!({ "sub": sub, "iat": NOW - 3600, "nbf": NOW - 3600, "exp": NOW + 3600 });
    if let (Some(c), Value::Object(extra)) = (c.as_object_mut(), extra) {
        c.extend(extra);
    }
    c
}

/// An HS256 token over `claims`, signed with [`HS_SECRET`] (or `secret`).
pub fn hs256(claims: &Value, secret: Option<&str>, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_secret(secret.unwrap_or(HS_SECRET).as_bytes()),
    )
    .expect("encodes")
}

/// A token signed with an RSA private key (PEM) using `alg` (RS256, PS256, ...).
pub fn rsa(claims: &Value, private_pem: &str, alg: Algorithm, kid: Option<&str>) -> String {
    let mut header = Header::new(alg);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(private_pem.as_bytes()).expect("an RSA key"),
    )
    .expect("encodes")
}

/// A token signed with an EC (P-256) private key (PEM, PKCS#8) using ES256.
pub fn es256(claims: &Value, private_pem: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::ES256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ec_pem(private_pem.as_bytes()).expect("an EC key"),
    )
    .expect("encodes")
}

/// A token signed with an Ed25519 private key (PEM, PKCS#8) using EdDSA.
pub fn eddsa(claims: &Value, private_pem: &str, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(private_pem.as_bytes()).expect("an Ed25519 key"),
    )
    .expect("encodes")
}

/// `header.payload.` with `alg: none`: what a forger sends.
pub fn unsigned(claims: &Value) -> String {
    use base64::Engine;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    format!(
        "{}.{}.",
        b64(br#"{"alg":"none","typ":"JWT"}"#),
        b64(claims.to_string().as_bytes())
    )
}
