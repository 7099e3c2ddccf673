//! Identity and access, end to end: the real binary, real signed tokens (HS256; RS256,
//! PS256, ES256 and EdDSA from PEM files; RS256 from a JWKS served by a local HTTP server),
//! API keys and admin keys; every answer checked for whose data it carries.
//!
//! The servers' clock starts at `auth::NOW` (`server.clock_start`), so the tokens' `exp`
//! and `nbf` hold whatever the day the tests run.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use larder_testkit::auth::{
    self, Algorithm, NOW, NOW_TEXT, claims, eddsa, es256, hs256, rsa, unsigned,
};
use larder_testkit::server::{Larder, LarderOptions, artifacts, workspace_root};
use poem::listener::{Acceptor, Listener, TcpListener};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const ISSUER: &str = "https://issuer.test";
const AUDIENCE: &str = "larder";
const WRITE_KEY: &str = "write-key-0123456789abcdef";
const READ_KEY: &str = "read-key-0123456789abcdef";
/// Given to the server through `SVC_A_KEY`.
const SVC_A: &str = "svc-a-key-0123456789abcdef";
/// Listed by digest: `printf %s svc-b-key-0123456789abcdef | sha256sum`.
const SVC_B: &str = "svc-b-key-0123456789abcdef";
const SVC_B_SHA256: &str = "2776aedfd9f1bfa58f43791ac3e13690e67310fcafcce677523a1fc43d16209b";

fn key_file(name: &str) -> PathBuf {
    workspace_root().join("tests/fixtures/keys").join(name)
}

fn pem(name: &str) -> String {
    std::fs::read_to_string(key_file(name)).unwrap()
}

/// A token from the HS256 key (`kid: hs`) with the issuer and audience the server wants.
fn token(sub: &str, extra: Value) -> String {
    let mut c = claims(sub, extra);
    c["iss"] = json!(ISSUER);
    c["aud"] = json!(AUDIENCE);
    hs256(&c, None, Some("hs"))
}

fn bearer(token: &str) -> (String, String) {
    ("authorization".into(), format!("Bearer {token}"))
}

/// The `security` section every server here runs with; `jwks` is the JWKS URL.
fn security(jwks: &str, extra: &str) -> String {
    format!(
        r#"security:
  auth:
    jwt:
      - {{ kid: hs, algorithms: [HS256], secret: "{secret}", issuer: "{ISSUER}", audience: "{AUDIENCE}" }}
      - {{ kid: rs, algorithms: [RS256, PS256], public_key_file: "{rs}", issuer: "{ISSUER}", audience: "{AUDIENCE}" }}
      - {{ kid: ec, algorithms: [ES256], public_key_file: "{ec}", issuer: "{ISSUER}", audience: "{AUDIENCE}" }}
      - {{ kid: ed, algorithms: [EdDSA], public_key_file: "{ed}", issuer: "{ISSUER}", audience: "{AUDIENCE}" }}
      - {{ algorithms: [RS256], jwks: "{jwks}", jwks_cooldown_seconds: 0, issuer: "{ISSUER}", audience: "{AUDIENCE}" }}
    api_keys:
      keys:
        - {{ name: svc-a, env: SVC_A_KEY, tenant: t2 }}
        - {{ name: svc-b, sha256: "{SVC_B_SHA256}" }}
{extra}"#,
        secret = auth::HS_SECRET,
        rs = key_file("rsa-public.pem").display(),
        ec = key_file("ec-public.pem").display(),
        ed = key_file("ed-public.pem").display(),
    )
}

/// A document server for the JWKS: answers whatever `doc` holds now.
struct JwksServer {
    addr: SocketAddr,
    doc: Arc<Mutex<String>>,
    fetches: Arc<std::sync::atomic::AtomicUsize>,
}

impl JwksServer {
    fn start() -> Self {
        let doc = Arc::new(Mutex::new(
            std::fs::read_to_string(key_file("jwks-1.json")).unwrap(),
        ));
        let served = doc.clone();
        let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = fetches.clone();
        let route = poem::endpoint::make_sync(move |_| {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            poem::Response::builder()
                .content_type("application/json")
                .body(served.lock().unwrap().clone())
        });
        // Its own thread and runtime: the server under test fetches it while starting,
        // when the test's runtime is blocked waiting for that start.
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let acceptor = TcpListener::bind("127.0.0.1:0")
                    .into_acceptor()
                    .await
                    .unwrap();
                let addr = *acceptor.local_addr()[0].as_socket_addr().unwrap();
                tx.send(addr).unwrap();
                let _ = poem::Server::new_with_acceptor(acceptor).run(route).await;
            });
        });
        let addr = rx.recv().unwrap();
        Self { addr, doc, fetches }
    }

    fn url(&self) -> String {
        format!("http://{}/jwks.json", self.addr)
    }

    fn fetches(&self) -> usize {
        self.fetches.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn rotate(&self) {
        *self.doc.lock().unwrap() = std::fs::read_to_string(key_file("jwks-2.json")).unwrap();
    }

    /// The key server answers garbage from now on.
    fn break_down(&self) {
        *self.doc.lock().unwrap() = "<html>502 Bad Gateway</html>".into();
    }
}

fn start(config: String, policies: &Path) -> Larder {
    Larder::start_with(LarderOptions {
        config: Some(format!(
            "server: {{ clock_start: \"{NOW_TEXT}\" }}\n{config}"
        )),
        env: vec![
            ("SVC_A_KEY".into(), SVC_A.into()),
            ("LARDER_ADMIN_KEY".into(), WRITE_KEY.into()),
            ("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into()),
        ],
        policies: Some(policies.to_owned()),
    })
    .unwrap()
}

/// Plugins: hello (dynamic, its `/me` says who asks), booking on a fresh database,
/// AliExpress in mock mode with room in its rate limits.
fn plugins(db: &Path) -> String {
    format!(
        "plugins:\n  hello:\n    library: {}\n    settings: {{ delay_ms: 0 }}\n  booking:\n    settings: {{ database: {} }}\n  aliexpress:\n    rate_limit: {{ per_second: 1000, per_minute: 100000 }}\n",
        artifacts().cdylib("hello-plugin").display(),
        db.display()
    )
}

async fn send(
    c: &reqwest::Client,
    method: reqwest::Method,
    url: String,
    headers: &[(String, String)],
    body: Option<Value>,
) -> (u16, HeaderMap, Value) {
    let mut r = c.request(method, url);
    for (k, v) in headers {
        r = r.header(k, v);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let text = r.text().await.unwrap();
    (
        status,
        headers,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// One caller of the leak matrix: what it sends and who the server must take it for.
struct Caller {
    name: &'static str,
    headers: Vec<(String, String)>,
    /// The verified user (`None`: anonymous) and tenant.
    user: Option<&'static str>,
    tenant: Option<&'static str>,
}

fn callers() -> Vec<Caller> {
    let caller = |name, headers: Vec<(String, String)>, user, tenant| Caller {
        name,
        headers,
        user,
        tenant,
    };
    let tenant_header = |t: &str| ("x-tenant-id".to_owned(), t.to_owned());
    vec![
        caller("anonymous", vec![], None, None),
        caller(
            "alice (t1)",
            vec![bearer(&token("alice", json!({"tid": "t1"})))],
            Some("jwt:alice"),
            Some("t1"),
        ),
        caller(
            "bob (t1)",
            vec![bearer(&token("bob", json!({"tid": "t1"})))],
            Some("jwt:bob"),
            Some("t1"),
        ),
        caller(
            "carol (t2)",
            vec![bearer(&token("carol", json!({"tid": "t2"})))],
            Some("jwt:carol"),
            Some("t2"),
        ),
        // A valid token for t2 claiming t1 in the header: keyed by the token's tenant.
        caller(
            "carol (t2) saying t1",
            vec![
                bearer(&token("carol", json!({"tid": "t2"}))),
                tenant_header("t1"),
            ],
            Some("jwt:carol"),
            Some("t2"),
        ),
        caller("anonymous saying t1", vec![tenant_header("t1")], None, None),
        caller(
            "api key svc-a (t2)",
            vec![("x-api-key".into(), SVC_A.into())],
            Some("key:svc-a"),
            Some("t2"),
        ),
        caller(
            "api key svc-b",
            vec![("x-api-key".into(), SVC_B.into())],
            Some("key:svc-b"),
            None,
        ),
        // An analytics cookie is no credential: a browser like any anonymous client.
        caller(
            "anonymous with a cookie",
            vec![("cookie".into(), "_ga=GA1.2.3; theme=dark".into())],
            None,
            None,
        ),
        caller(
            "dave (t1) by RS256",
            vec![bearer(&rsa(
                &with_iss_aud(claims("dave", json!({"tid": "t1"}))),
                &pem("rsa-private.pem"),
                Algorithm::RS256,
                Some("rs"),
            ))],
            Some("jwt:dave"),
            Some("t1"),
        ),
        caller(
            "erin (t2) by ES256",
            vec![bearer(&es256(
                &with_iss_aud(claims("erin", json!({"tid": "t2"}))),
                &pem("ec-private.pem"),
                Some("ec"),
            ))],
            Some("jwt:erin"),
            Some("t2"),
        ),
        caller(
            "frank (t1) by PS256",
            vec![bearer(&rsa(
                &with_iss_aud(claims("frank", json!({"tid": "t1"}))),
                &pem("rsa-private.pem"),
                Algorithm::PS256,
                Some("rs"),
            ))],
            Some("jwt:frank"),
            Some("t1"),
        ),
        caller(
            "grace (t2) by EdDSA",
            vec![bearer(&eddsa(
                &with_iss_aud(claims("grace", json!({"tid": "t2"}))),
                &pem("ed-private.pem"),
                Some("ed"),
            ))],
            Some("jwt:grace"),
            Some("t2"),
        ),
    ]
}

fn with_iss_aud(mut c: Value) -> Value {
    c["iss"] = json!(ISSUER);
    c["aud"] = json!(AUDIENCE);
    c
}

/// Every caller, in three orders (so each is sometimes first to a key, sometimes after
/// another), under `scope`: no answer carries another principal's entry.
async fn leak_matrix(scope: &str) {
    let jwks = JwksServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("me.yaml"),
        format!(
            "version: 1\nrules:\n  - name: me\n    match: {{ plugin: hello, operation: get_me }}\n    key: \"hello:me\"\n    ttl: 5m\n    scope: {scope}\n"
        ),
    )
    .unwrap();
    let larder = start(
        format!(
            "{}{}",
            security(&jwks.url(), ""),
            plugins(&dir.path().join("b.db"))
        ),
        dir.path(),
    );
    let c = reqwest::Client::new();
    let all = callers();
    // The entry a caller may be served under this scope (`None`: never cached).
    let entry_of = |caller: &Caller| -> Option<String> {
        match scope {
            "public" => caller.user.is_none().then(|| "anonymous".to_owned()),
            "tenant" => caller.tenant.map(str::to_owned),
            _ => caller
                .user
                .map(|u| format!("{u}@{}", caller.tenant.unwrap_or("-"))),
        }
    };
    let forward: Vec<usize> = (0..all.len()).collect();
    let backward: Vec<usize> = forward.iter().rev().copied().collect();
    // Which computation each entry holds, once stored.
    let mut entries: std::collections::HashMap<String, u64> = Default::default();
    let mut hits = 0;
    for (round, order) in [&forward, &backward, &forward].into_iter().enumerate() {
        for &i in order {
            let caller = &all[i];
            let (status, h, body) = send(
                &c,
                reqwest::Method::GET,
                larder.url("/me"),
                &caller.headers,
                None,
            )
            .await;
            let what = format!("{scope}, round {round}, {}: {body}", caller.name);
            assert_eq!(status, 200, "{what}");
            let cache = h["cache-status"].to_str().unwrap().to_owned();
            let computed = body["computed"].as_u64().unwrap();
            let (served_user, served_tenant) = (body["user"].as_str(), body["tenant"].as_str());
            match entry_of(caller) {
                Some(entry) => {
                    // Whoever filled the entry shares the caller's scope: same user (user
                    // scope), same verified tenant (tenant scope), nobody (public).
                    match scope {
                        "public" => assert_eq!(served_user, None, "{what}"),
                        "tenant" => assert_eq!(served_tenant, caller.tenant, "{what}"),
                        _ => {
                            assert_eq!(served_user, caller.user, "{what}");
                            assert_eq!(served_tenant, caller.tenant, "{what}");
                        }
                    }
                    match entries.get(&entry) {
                        Some(first) => {
                            assert_eq!(computed, *first, "{what}: not served its entry ({cache})");
                            assert!(cache.contains("; hit"), "{what} {cache}");
                            hits += 1;
                        }
                        None => {
                            entries.insert(entry, computed);
                        }
                    }
                }
                None => {
                    // Not cached for this caller: its own, fresh answer.
                    assert_eq!(served_user, caller.user, "{what}");
                    assert_eq!(served_tenant, caller.tenant, "{what}");
                    assert!(!cache.contains("; hit"), "{what} {cache}");
                    assert!(entries.values().all(|v| *v != computed), "{what}");
                }
            }
        }
    }
    let expected = match scope {
        // anonymous, anonymous saying t1, anonymous with a cookie: 9 requests, one miss.
        "public" => 8,
        // t1: alice, bob, dave, frank; t2: carol (twice), svc-a, erin, grace: 27 requests,
        // 2 misses.
        "tenant" => 25,
        // 10 credentialed callers a round: 30 requests, 9 entries (carol's two share one).
        _ => 21,
    };
    assert_eq!(hits, expected, "{scope}");
}

#[tokio::test]
async fn no_caller_is_served_another_principals_entry_public_scope() {
    leak_matrix("public").await;
}

#[tokio::test]
async fn no_caller_is_served_another_principals_entry_tenant_scope() {
    leak_matrix("tenant").await;
}

#[tokio::test]
async fn no_caller_is_served_another_principals_entry_user_scope() {
    leak_matrix("user").await;
}

/// Each way a token can be wrong is a 401 naming the check that failed, with
/// `WWW-Authenticate`; none is a 5xx. A key rotated into the JWKS is fetched on its first
/// use.
#[tokio::test]
async fn bad_tokens_are_refused_with_the_reason() {
    let jwks = JwksServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        workspace_root().join("examples/hello-plugin/policy.yaml"),
        dir.path().join("hello.yaml"),
    )
    .unwrap();
    let larder = start(
        format!(
            "{}{}",
            security(&jwks.url(), ""),
            plugins(&dir.path().join("b.db"))
        ),
        dir.path(),
    );
    let c = reqwest::Client::new();
    let good = || with_iss_aud(claims("alice", json!({"tid": "t1"})));
    let mut expired = good();
    expired["exp"] = json!(NOW - 3600);
    let mut early = good();
    early["nbf"] = json!(NOW + 3600);
    let mut wrong_iss = good();
    wrong_iss["iss"] = json!("https://elsewhere.test");
    let mut wrong_aud = good();
    wrong_aud["aud"] = json!("another-api");
    let mut no_exp = good();
    no_exp.as_object_mut().unwrap().remove("exp");
    let rs2 = |c: &Value| rsa(c, &pem("rsa2-private.pem"), Algorithm::RS256, Some("rs-2"));
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "forged signature",
            hs256(&good(), Some("not-the-secret-0123456789abcdef"), Some("hs")),
            "bad signature",
        ),
        ("alg none", unsigned(&good()), "`alg: none`"),
        (
            "HS256 signed with the RS256 public key",
            hs256(&good(), Some(&pem("rsa-public.pem")), Some("rs")),
            "algorithm HS256 is not allowed",
        ),
        ("expired", hs256(&expired, None, Some("hs")), "expired"),
        (
            "not yet valid",
            hs256(&early, None, Some("hs")),
            "not valid for another",
        ),
        (
            "wrong issuer",
            hs256(&wrong_iss, None, Some("hs")),
            "wrong issuer",
        ),
        (
            "wrong audience",
            hs256(&wrong_aud, None, Some("hs")),
            "wrong audience",
        ),
        (
            "no expiry",
            hs256(&no_exp, None, Some("hs")),
            "tokens must expire",
        ),
        ("unknown kid", rs2(&good()), "no key has this token's `kid`"),
        ("malformed", "abc.def".into(), "malformed token"),
        ("not base64", "!!!.???.***".into(), "malformed token"),
    ];
    for (name, token, reason) in &cases {
        let (status, h, body) = send(
            &c,
            reqwest::Method::GET,
            larder.url("/greetings/ada"),
            &[bearer(token)],
            None,
        )
        .await;
        assert_eq!(status, 401, "{name}: {body}");
        let message = body["message"].as_str().unwrap_or_default();
        assert!(message.contains(reason), "{name}: {body}");
        let challenge = h["www-authenticate"].to_str().unwrap();
        assert!(
            challenge.starts_with("Bearer realm=\"larder\", error=\"invalid_token\""),
            "{name}: {challenge}"
        );
    }
    // A wrong API key is refused too, not taken as anonymous.
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/greetings/ada"),
        &[("x-api-key".into(), "guess".into())],
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("no known API key")
    );

    // The key server rotates `rs-2` in: the next token naming it makes the server fetch
    // the JWKS again, and it verifies.
    jwks.rotate();
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/me"),
        &[bearer(&rs2(&good()))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user"], "jwt:alice");

    // The key server breaks; a token naming a new kid makes the server fetch again, which
    // fails: that token is refused, and the keys already known keep working.
    jwks.break_down();
    let mut rs3 = good();
    rs3["sub"] = json!("mallory");
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/me"),
        &[bearer(&rsa(
            &rs3,
            &pem("rsa2-private.pem"),
            Algorithm::RS256,
            Some("rs-3"),
        ))],
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");
    let mut later = good();
    later["sub"] = json!("bob");
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/me"),
        &[bearer(&rs2(&later))],
        None,
    )
    .await;
    assert_eq!(status, 200, "the last good key set was dropped: {body}");
    assert_eq!(body["user"], "jwt:bob");
}

/// Plugins' cache-admin aliases need the core's admin keys or `cache:manage`; a plugin's
/// alias purges only that plugin's entries; the audit log names who purged.
#[tokio::test]
async fn cache_admin_aliases_need_keys_and_stay_in_their_plugin() {
    let jwks = JwksServer::start();
    let dir = tempfile::tempdir().unwrap();
    let larder = start(
        format!(
            "{}{}",
            security(&jwks.url(), ""),
            plugins(&dir.path().join("b.db"))
        ),
        &workspace_root().join("policies"),
    );
    let c = reqwest::Client::new();
    let ops = token(
        "ops",
        json!({"permissions": ["cache:read", "cache:manage"]}),
    );
    let alice = token("alice", json!({"tid": "t1", "scope": "analytics:read"}));
    let invalidate = larder.url("/api/v2/cache/invalidate");
    let post = |headers: Vec<(String, String)>, body: Value| {
        let (c, url) = (c.clone(), invalidate.clone());
        async move { send(&c, reqwest::Method::POST, url, &headers, Some(body)).await }
    };
    let admin = |key: &str| vec![("x-admin-key".to_owned(), key.to_owned())];

    let (status, h, body) = post(vec![], json!({"all": true})).await;
    assert_eq!(status, 401, "{body}");
    assert!(h.contains_key("www-authenticate"));
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("needs credentials"),
        "{body}"
    );
    let (status, _, body) = post(admin(READ_KEY), json!({"all": true})).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("cache:manage"),
        "{body}"
    );
    let (status, _, body) = post(vec![bearer(&alice)], json!({"all": true})).await;
    assert_eq!(status, 403, "{body}");

    // An AliExpress entry, then a booking alias asked to purge AliExpress's tag.
    // (AliExpress caches from its code; its envelope says whether the cache answered.)
    let categories = larder.url("/api/categories");
    let cached = || {
        let (c, url) = (c.clone(), categories.clone());
        async move {
            let (_, _, body) = send(&c, reqwest::Method::GET, url, &[], None).await;
            body["metadata"]["cache_hit"] == true
        }
    };
    cached().await;
    assert!(cached().await);
    let (status, _, body) = post(vec![bearer(&ops)], json!({"tags": ["plugin:aliexpress"]})).await;
    assert_eq!(status, 200, "{body}");
    assert!(cached().await, "booking's alias purged AliExpress entries");
    let (status, _, body) = post(admin(WRITE_KEY), json!({"all": true})).await;
    assert_eq!(status, 200, "{body}");
    assert!(cached().await, "booking's `all` reached AliExpress");

    // Reading statistics: a read key or `cache:read`; nobody else.
    let metrics = larder.url("/api/v2/cache/metrics");
    let (status, _, _) = send(&c, reqwest::Method::GET, metrics.clone(), &[], None).await;
    assert_eq!(status, 401);
    let (status, _, _) = send(
        &c,
        reqwest::Method::GET,
        metrics.clone(),
        &admin(READ_KEY),
        None,
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/api/cache/stats"),
        &[],
        None,
    )
    .await;
    assert_eq!(status, 401, "AliExpress's stats alias");

    // The expensive benchmark: write only, and at most 6 a minute.
    let bench = larder.url("/api/v2/cache/benchmark/dashboard?iterations=1");
    let (status, _, _) = send(
        &c,
        reqwest::Method::POST,
        bench.clone(),
        &admin(READ_KEY),
        None,
    )
    .await;
    assert_eq!(status, 403);
    let mut codes = Vec::new();
    for _ in 0..7 {
        let (status, h, _) = send(
            &c,
            reqwest::Method::POST,
            bench.clone(),
            &admin(WRITE_KEY),
            None,
        )
        .await;
        if status == 429 {
            assert!(h.contains_key("retry-after"));
        }
        codes.push(status);
    }
    assert_eq!(codes, [200, 200, 200, 200, 200, 200, 429]);

    // The audit log says who purged.
    let (_, _, audit) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/admin/audit"),
        &admin(READ_KEY),
        None,
    )
    .await;
    let text = audit.to_string();
    assert!(text.contains("for jwt:ops"), "{text}");
    assert!(text.contains("for admin:write"), "{text}");
}

/// CORS never refuses: a listed origin gets the headers, another gets none and still its
/// answer; Swagger UI's same-origin POST works. Proxy headers are not believed unless the
/// operator says so. `/metrics` can require a key.
#[tokio::test]
async fn cors_answers_and_forwarded_headers_and_metrics_key() {
    let jwks = JwksServer::start();
    let dir = tempfile::tempdir().unwrap();
    let larder = start(
        format!(
            "{}{}",
            security(&jwks.url(), "  metrics_requires_key: true\n"),
            plugins(&dir.path().join("b.db"))
        ),
        &workspace_root().join("policies"),
    );
    let c = reqwest::Client::new();
    let origin = |o: &str| vec![("origin".to_owned(), o.to_owned())];
    let url = larder.url("/api/categories");

    let (status, h, _) = send(
        &c,
        reqwest::Method::GET,
        url.clone(),
        &origin("https://chatgpt.com"),
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert_eq!(h["access-control-allow-origin"], "https://chatgpt.com");
    assert!(h["vary"].to_str().unwrap().contains("Origin"));

    let (status, h, _) = send(
        &c,
        reqwest::Method::GET,
        url.clone(),
        &origin("https://evil.test"),
        None,
    )
    .await;
    assert_eq!(status, 200, "an unlisted origin is not refused");
    assert!(!h.contains_key("access-control-allow-origin"));
    assert!(h["vary"].to_str().unwrap().contains("Origin"));

    let preflight = vec![
        ("origin".to_owned(), "https://chatgpt.com".to_owned()),
        (
            "access-control-request-method".to_owned(),
            "POST".to_owned(),
        ),
        (
            "access-control-request-headers".to_owned(),
            "content-type, x-internal-key".to_owned(),
        ),
    ];
    let (status, h, _) = send(
        &c,
        reqwest::Method::OPTIONS,
        larder.url("/api/products/search"),
        &preflight,
        None,
    )
    .await;
    assert!(status == 200 || status == 204, "{status}");
    assert_eq!(h["access-control-allow-origin"], "https://chatgpt.com");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("POST"),
        "{h:?}"
    );

    // Swagger UI on /docs posts with its own origin.
    let own = format!("http://{}", larder.addr);
    let (status, _, body) = send(
        &c,
        reqwest::Method::POST,
        larder.url("/api/products/search"),
        &[
            ("origin".into(), own.clone()),
            ("referer".into(), format!("{own}/docs")),
        ],
        Some(json!({"keywords": "lamp"})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["success"], true, "{body}");

    // Without trusted proxies, a client's X-Forwarded-Host does not become the GPT
    // document's server.
    let (_, _, doc) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/openapi-gpt.json"),
        &[
            ("x-forwarded-host".into(), "evil.test".into()),
            ("x-forwarded-proto".into(), "https".into()),
        ],
        None,
    )
    .await;
    assert_eq!(
        doc["servers"][0]["url"],
        format!("http://{}", larder.addr),
        "{doc}"
    );

    let (status, h, _) = send(&c, reqwest::Method::GET, larder.url("/metrics"), &[], None).await;
    assert_eq!(status, 401);
    assert!(h.contains_key("www-authenticate"));
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/metrics"),
        &[("x-admin-key".into(), READ_KEY.into())],
        None,
    )
    .await;
    assert_eq!(status, 200);
    assert!(body.as_str().unwrap().contains("larder_"), "{body}");

    // The document declares how to authenticate and what each locked route needs.
    let (_, _, doc) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/openapi.json"),
        &[],
        None,
    )
    .await;
    let schemes = &doc["components"]["securitySchemes"];
    assert_eq!(schemes["BearerJwt"]["bearerFormat"], "JWT");
    assert_eq!(schemes["ApiKey"]["name"], "x-api-key");
    let op = &doc["paths"]["/api/v2/cache/invalidate"]["post"];
    assert_eq!(
        op["security"][0],
        json!({"BearerJwt": ["cache:manage"]}),
        "{op}"
    );
    assert!(op["responses"]["403"].is_object());
    assert!(
        doc["paths"]["/api/v2/services"]["get"]
            .get("security")
            .is_none()
    );
}

/// Behind a trusted proxy, its headers count.
#[tokio::test]
async fn a_trusted_proxys_host_names_the_gpt_server() {
    let dir = tempfile::tempdir().unwrap();
    let larder = start(
        format!(
            "security: {{ trust_forwarded_for: true }}\n{}",
            plugins(&dir.path().join("b.db"))
        ),
        &workspace_root().join("policies"),
    );
    let c = reqwest::Client::new();
    let (_, _, doc) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/openapi-gpt.json"),
        &[
            ("x-forwarded-host".into(), "api.example.test".into()),
            ("x-forwarded-proto".into(), "https".into()),
        ],
        None,
    )
    .await;
    assert_eq!(
        doc["servers"][0]["url"], "https://api.example.test",
        "{doc}"
    );
}

/// `larder check` (and `serve`) name every mistake in `security.auth` at its line, and a
/// typo'd field gets a suggestion.
#[test]
fn auth_config_mistakes_are_located() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("larder.yaml");
    std::fs::write(
        &path,
        r#"security:
  auth:
    jwt:
      - kid: a
        algorithms: [HS257]
        secret: "short"
      - kid: b
        algorithms: [RS256]
        public_key_file: missing.pem
      - algorithms: [none]
        jwks: "keys.json"
        isuer: https://issuer.test
      - algorithms: [RS256]
        jwks: "http://keys.example.com/jwks.json"
    api_keys:
      keys:
        - { name: k1, sha256: "zz" }
        - { name: k2, env: LARDER_TEST_UNSET_VARIABLE }
"#,
    )
    .unwrap();
    let file = path.to_str().unwrap();
    for command in ["check", "serve"] {
        let out = larder_testkit::server::run_larder(&[command, "--config", file], &[]).unwrap();
        assert!(!out.status.success(), "{command} accepted it");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in [
            format!("{file}:5:22: error: `HS257` is not a JWT algorithm"),
            format!("{file}:6:17: error: an HS* secret shorter than 32 bytes"),
            format!("{file}:9:26: error: cannot read `"),
            format!("{file}:10:22: error: `none` (unsigned tokens) is never accepted"),
            format!("{file}:12:9: error: unknown field `isuer`"),
            "did you mean `issuer`?".to_owned(),
            format!("{file}:14:15: error: fetch the JWKS over https"),
            format!("{file}:17:31: error: not a hex SHA-256"),
            format!(
                "{file}:18:28: error: environment variable `LARDER_TEST_UNSET_VARIABLE` is not set"
            ),
        ] {
            assert!(
                stderr.contains(&expected),
                "{command}: missing `{expected}` in:\n{stderr}"
            );
        }
    }

    // A permission for a route that does not exist would protect nothing.
    std::fs::write(
        &path,
        "security:\n  permissions:\n    \"GET /api/v2/service\": [catalog:read]\n",
    )
    .unwrap();
    let out = larder_testkit::server::run_larder(&["check", "--config", file], &[]).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "{file}:3:5: error: no route `GET /api/v2/service`"
        )) && stderr.contains("did you mean `GET /api/v2/services`?"),
        "{stderr}"
    );
}

/// The operator's word wins: `security.permissions` locks a route the plugin left open, and
/// behind a gateway (`trust_tenant_header`) `X-Tenant-Id` gives a tenant to callers whose
/// credential names none.
#[tokio::test]
async fn configured_permissions_and_a_trusted_tenant_header() {
    let jwks = JwksServer::start();
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("me.yaml"),
        "version: 1\nrules:\n  - name: me\n    match: { plugin: hello, operation: get_me }\n    key: \"hello:me\"\n    ttl: 5m\n    scope: tenant\n  - name: greeting\n    match: { plugin: hello, operation: get_greeting }\n    key: \"hello:greeting:{path.name}\"\n",
    )
    .unwrap();
    let security = security(&jwks.url(), "  permissions:\n    \"GET /me\": [me:read]\n")
        .replace(
            "    api_keys:",
            "    trust_tenant_header: true\n    credential_headers: [\"cookie:PHPSESSID\"]\n    api_keys:",
        )
        // A second identity provider: a `sub` is unique only within its issuer.
        .replace(
            "    trust_tenant_header: true",
            &format!(
                "      - {{ kid: other, algorithms: [HS256], secret: \"{}\", issuer: \"https://other.test\", audience: \"{AUDIENCE}\" }}\n    trust_tenant_header: true",
                auth::HS_SECRET
            ),
        );
    let larder = start(
        format!("{security}{}", plugins(&dir.path().join("b.db"))),
        dir.path(),
    );
    let c = reqwest::Client::new();
    let me = |headers: Vec<(String, String)>| {
        let (c, url) = (c.clone(), larder.url("/me"));
        async move { send(&c, reqwest::Method::GET, url, &headers, None).await }
    };
    let (status, h, body) = me(vec![]).await;
    assert_eq!(status, 401, "{body}");
    assert!(h.contains_key("www-authenticate"));
    let (status, _, body) = me(vec![bearer(&token("alice", json!({"tid": "t1"})))]).await;
    assert_eq!(status, 403, "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("me:read"),
        "{body}"
    );

    // A token without a tenant: the gateway's header gives it one.
    let reader = token("reader", json!({"permissions": ["me:read"]}));
    let (status, h, body) = me(vec![bearer(&reader)]).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        h["cache-status"]
            .to_str()
            .unwrap()
            .contains("detail=principal"),
        "no tenant, not cached: {:?}",
        h["cache-status"]
    );
    let gateway = |t: &str| ("x-tenant-id".to_owned(), t.to_owned());
    let (_, h, first) = me(vec![bearer(&reader), gateway("t9")]).await;
    assert!(
        h["cache-status"].to_str().unwrap().contains("stored"),
        "{h:?}"
    );
    let (_, h, again) = me(vec![bearer(&reader), gateway("t9")]).await;
    assert!(
        h["cache-status"].to_str().unwrap().contains("; hit"),
        "{h:?}"
    );
    assert_eq!(first["computed"], again["computed"]);
    let (_, h, other) = me(vec![bearer(&reader), gateway("t8")]).await;
    assert!(
        h["cache-status"].to_str().unwrap().contains("stored"),
        "{h:?}"
    );
    assert_ne!(other["computed"], first["computed"]);
    // A tenant in the token wins over the header.
    let carol = token("carol", json!({"tid": "t2", "permissions": ["me:read"]}));
    let (_, _, body) = me(vec![bearer(&carol), gateway("t9")]).await;
    assert_eq!(body["tenant"], "t2");
    assert_ne!(
        body["computed"], first["computed"],
        "served t9's entry to t2"
    );

    // Two issuers' `carol` are two users (no tenant, so the answers are not cached and
    // show who the handler saw).
    let mut ours = claims("carol", json!({"permissions": ["me:read"]}));
    ours["iss"] = json!(ISSUER);
    ours["aud"] = json!(AUDIENCE);
    let mut theirs = ours.clone();
    theirs["iss"] = json!("https://other.test");
    let (_, _, ours) = me(vec![bearer(&hs256(&ours, None, Some("hs")))]).await;
    let (status, _, theirs) = me(vec![bearer(&hs256(&theirs, None, Some("other")))]).await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(ours["user"], format!("jwt:{ISSUER}/carol"));
    assert_eq!(theirs["user"], "jwt:https://other.test/carol");

    // The scheme's case does not matter; another scheme beside an API key leaves the key
    // in charge; a wrong admin key is refused, not taken for nobody.
    let (status, _, body) = me(vec![(
        "authorization".into(),
        format!(
            "BEARER {}",
            token("carol", json!({"tid": "t2", "permissions": ["me:read"]}))
        ),
    )])
    .await;
    assert_eq!(
        (status, body["tenant"].as_str()),
        (200, Some("t2")),
        "{body}"
    );
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/greetings/ada"),
        &[
            ("authorization".into(), "Basic dXNlcjpwYXNz".into()),
            ("x-api-key".into(), "guess".into()),
        ],
        None,
    )
    .await;
    assert_eq!(
        status, 401,
        "the API key beside Basic was not checked: {body}"
    );
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/greetings/ada"),
        &[("x-admin-key".into(), "not-a-key".into())],
        None,
    )
    .await;
    assert_eq!(status, 401, "{body}");

    // A session cookie named in the config makes a request credentialed, in its own case.
    let greeting = |cookie: &'static str| {
        let (c, url) = (c.clone(), larder.url("/greetings/ada"));
        async move {
            let (_, h, _) = send(
                &c,
                reqwest::Method::GET,
                url,
                &[("cookie".into(), cookie.into())],
                None,
            )
            .await;
            h["cache-status"].to_str().unwrap().to_owned()
        }
    };
    assert!(
        greeting("PHPSESSID=abc")
            .await
            .contains("detail=credentials")
    );
    assert!(
        !greeting("_ga=1; phpsessid=abc")
            .await
            .contains("credentials")
    );
}

/// A key server that fails from the start leaves the JWKS key set empty; tokens naming
/// made-up key ids must still not make the server ask it once per request.
#[tokio::test]
async fn a_failing_key_server_is_not_asked_per_request() {
    let jwks = JwksServer::start();
    jwks.break_down();
    let dir = tempfile::tempdir().unwrap();
    let security = security(&jwks.url(), "")
        .replace("jwks_cooldown_seconds: 0", "jwks_cooldown_seconds: 3600");
    let larder = start(
        format!("{security}{}", plugins(&dir.path().join("b.db"))),
        &workspace_root().join("policies"),
    );
    let c = reqwest::Client::new();
    let at_start = jwks.fetches();
    assert!(
        at_start >= 1,
        "the server did not try the key server at start"
    );
    for kid in ["k1", "k2", "k3", "k4", "k5", "k6"] {
        let forged = rsa(
            &with_iss_aud(claims("mallory", json!({}))),
            &pem("rsa2-private.pem"),
            Algorithm::RS256,
            Some(kid),
        );
        let (status, _, body) = send(
            &c,
            reqwest::Method::GET,
            larder.url("/api/v2/services"),
            &[bearer(&forged)],
            None,
        )
        .await;
        assert_eq!(status, 401, "{body}");
    }
    assert!(
        jwks.fetches() <= at_start + 1,
        "{} fetches for 6 made-up key ids",
        jwks.fetches() - at_start
    );
    // The keys that need no key server still work.
    let (status, _, body) = send(
        &c,
        reqwest::Method::GET,
        larder.url("/api/v2/services"),
        &[bearer(&token("alice", json!({})))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
}
