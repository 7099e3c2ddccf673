//! The caching layer end to end: the real binary, the hello plugin as a real `.so` with a
//! slow origin, real redis-server instances on free ports.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::time::{Duration, Instant};

use larder_testkit::auth;
use larder_testkit::redis::RedisServer;
use larder_testkit::server::{Larder, LarderOptions, artifacts, workspace_root};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

const KEY: &str = "write-key-0123456789abcdef";
const READ_KEY: &str = "read-key-0123456789abcdef";

/// A policy folder holding the hello plugin's shipped policy (plus `extra` files).
fn policy_dir(extra: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // The example's rules without its start-up warming job: these tests count requests,
    // entries and origin calls from a cold cache.
    let policy =
        std::fs::read_to_string(workspace_root().join("examples/hello-plugin/policy.yaml"))
            .unwrap();
    let rules = policy.split("\nwarming:").next().unwrap();
    std::fs::write(dir.path().join("hello.yaml"), rules).unwrap();
    for (name, text) in extra {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn config(policies: &std::path::Path, delay_ms: u64, storage: &str) -> String {
    format!(
        "policies: {}\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n  hello:\n    library: {}\n    settings: {{ delay_ms: {delay_ms} }}\n{storage}",
        policies.display(),
        artifacts().cdylib("hello-plugin").display()
    )
}

fn start(policies: &std::path::Path, delay_ms: u64, storage: &str) -> Larder {
    Larder::start_with(LarderOptions {
        config: Some(config(policies, delay_ms, storage)),
        env: vec![
            ("LARDER_ADMIN_KEY".into(), KEY.into()),
            ("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into()),
        ],
        policies: Some(PathBuf::from(policies)),
    })
    .unwrap()
}

fn status(h: &HeaderMap) -> String {
    h.get("cache-status")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default()
}

async fn get(c: &reqwest::Client, url: &str) -> (u16, HeaderMap, String) {
    let r = c.get(url).send().await.unwrap();
    let s = r.status().as_u16();
    let h = r.headers().clone();
    (s, h, r.text().await.unwrap())
}

/// A GET of an admin route with the read key, as JSON.
async fn admin_get(c: &reqwest::Client, l: &Larder, path: &str) -> Value {
    c.get(l.url(path))
        .header("x-admin-key", READ_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

async fn admin_stats(c: &reqwest::Client, l: &Larder) -> Value {
    admin_get(c, l, "/admin/cache/stats").await
}

#[tokio::test]
async fn miss_then_hit_with_headers_304_and_exact_invalidation() {
    let dir = policy_dir(&[]);
    let larder = start(dir.path(), 50, "");
    let c = reqwest::Client::new();
    let url = larder.url("/greetings/ada");

    let (s, h, body) = get(&c, &url).await;
    assert_eq!(s, 200);
    assert!(
        status(&h).starts_with("larder; fwd=uri-miss; stored"),
        "{}",
        status(&h)
    );
    assert!(h["server-timing"].to_str().unwrap().contains("origin;dur="));
    let etag = h["etag"].to_str().unwrap().to_owned();

    let (s, h, body2) = get(&c, &url).await;
    assert_eq!(s, 200);
    assert!(
        status(&h).starts_with("larder; hit;") && status(&h).ends_with("detail=l1"),
        "{}",
        status(&h)
    );
    assert_eq!(body, body2);
    assert_eq!(h["etag"].to_str().unwrap(), etag);
    assert!(h["age"].to_str().unwrap().parse::<u64>().is_ok());
    // The rule has tags: clients may keep the answer but must revalidate each reuse.
    assert_eq!(h["cache-control"], "public, no-cache");
    assert!(!h["server-timing"].to_str().unwrap().contains("origin"));

    let r = c
        .get(&url)
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 304);
    assert_eq!(r.headers()["etag"].to_str().unwrap(), etag);
    assert!(r.text().await.unwrap().is_empty());

    // Another name is another entry: still cached after the purge below.
    get(&c, &larder.url("/greetings/bob")).await;

    let r = c
        .put(&url)
        .json(&json!({"greeting": "Good evening"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, h, body) = get(&c, &url).await;
    assert!(
        status(&h).contains("fwd=uri-miss"),
        "purged entry was served: {}",
        status(&h)
    );
    assert!(body.contains("Good evening"), "{body}");
    let (_, h, _) = get(&c, &larder.url("/greetings/bob")).await;
    assert!(
        status(&h).contains("hit"),
        "an unrelated entry was purged: {}",
        status(&h)
    );

    let audit: Value = admin_get(&c, &larder, "/admin/audit").await;
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["source"] == "route hello.put_greeting"
                && e["target"] == "tags hello/greeting:ada, hello/greetings"),
        "{audit}"
    );
}

#[tokio::test]
async fn thousand_concurrent_requests_on_a_cold_key_make_one_origin_call() {
    let dir = policy_dir(&[]);
    let larder = start(dir.path(), 300, "");
    let c = reqwest::Client::builder()
        .pool_max_idle_per_host(1000)
        .build()
        .unwrap();
    let url = larder.url("/greetings/stampede");
    let tasks: Vec<_> = (0..1000)
        .map(|_| {
            let (c, url) = (c.clone(), url.clone());
            tokio::spawn(async move { c.get(url).send().await.map(|r| r.status().as_u16()) })
        })
        .collect();
    for t in tasks {
        assert_eq!(t.await.unwrap().unwrap(), 200);
    }
    let stats = admin_stats(&c, &larder).await;
    assert_eq!(
        stats["rules"]["hello-greeting"]["origin_calls"], 1,
        "{stats}"
    );
}

#[tokio::test]
async fn compression_is_negotiated_and_done_once() {
    let dir = policy_dir(&[]);
    let larder = start(dir.path(), 0, "");
    // reqwest is built without decompression here: we see the bytes as sent.
    let c = reqwest::Client::new();
    let url = larder.url("/greetings?count=200");
    let plain: Vec<Value> = {
        let r = c.get(&url).send().await.unwrap();
        assert!(status(r.headers()).contains("stored"));
        assert!(
            r.headers().get("content-encoding").is_none(),
            "no Accept-Encoding: identity"
        );
        r.json().await.unwrap()
    };
    assert_eq!(plain.len(), 200);
    // The entry is stored brotli-compressed; answering that first client without `br`
    // decoded it once, and L1 keeps (and weighs) the identity form beside it.
    let plain_len = serde_json::to_vec(&plain).unwrap().len() as u64;
    let l1_bytes = admin_stats(&c, &larder).await["l1_bytes"].as_u64().unwrap();
    assert!(
        l1_bytes > plain_len + 500,
        "L1 weighs both forms: {l1_bytes} bytes, {plain_len} decoded"
    );
    // What each client gets: the stored coding if it takes it, else the rule's preferred
    // algorithm it takes (br, zstd, gzip by default), else identity.
    let cases = [
        ("br", Some("br")),
        ("gzip, br;q=0.5", Some("br")),
        ("gzip;q=1, br;q=0", Some("gzip")),
        ("gzip, deflate", Some("gzip")),
        ("identity", None),
        ("*", Some("br")),
        ("zstd", Some("zstd")),
        ("deflate", None),
    ];
    let decode = |coding: Option<&str>, bytes: &[u8]| -> Vec<Value> {
        let plain = match coding {
            None => bytes.to_vec(),
            Some("gzip") => {
                let mut out = Vec::new();
                std::io::Read::read_to_end(&mut flate2::read::GzDecoder::new(bytes), &mut out)
                    .unwrap();
                out
            }
            Some("zstd") => zstd::decode_all(bytes).unwrap(),
            Some(other) => panic!("no decoder for {other} here"),
        };
        serde_json::from_slice(&plain).unwrap()
    };
    let mut l1_after_first_pass = 0;
    for pass in 0..2 {
        for (accept, expect) in cases {
            let r = c
                .get(&url)
                .header("accept-encoding", accept)
                .send()
                .await
                .unwrap();
            assert!(status(r.headers()).contains("hit"), "{accept}");
            let enc = r
                .headers()
                .get("content-encoding")
                .map(|v| v.to_str().unwrap().to_owned());
            assert_eq!(enc.as_deref(), expect, "Accept-Encoding: {accept}");
            assert_eq!(r.headers()["vary"].to_str().unwrap(), "Accept-Encoding");
            // Strong for the stored bytes, weak for another coding of them.
            let etag = r.headers()["etag"].to_str().unwrap().to_owned();
            assert_eq!(
                etag.starts_with("W/"),
                expect != Some("br"),
                "{accept}: {etag}"
            );
            let again = c
                .get(&url)
                .header("accept-encoding", accept)
                .header("if-none-match", &etag)
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 304, "{accept}: {etag}");
            assert_eq!(again.headers()["etag"].to_str().unwrap(), etag);
            let bytes = r.bytes().await.unwrap();
            if expect.is_some() {
                assert!(bytes.len() < serde_json::to_vec(&plain).unwrap().len() / 3);
            }
            if expect != Some("br") {
                assert_eq!(decode(expect, &bytes), plain, "as sent for {accept}");
            }
        }
        let l1 = admin_stats(&c, &larder).await["l1_bytes"].as_u64().unwrap();
        if pass == 0 {
            assert!(
                l1 > l1_bytes + 400,
                "the gzip and zstd forms are kept and weighed: {l1} after, {l1_bytes} before"
            );
            l1_after_first_pass = l1;
        } else {
            assert_eq!(l1, l1_after_first_pass, "the second pass made nothing new");
        }
    }
    let stats = admin_stats(&c, &larder).await;
    assert_eq!(
        stats["rules"]["hello-greetings"]["origin_calls"], 1,
        "{stats}"
    );
    // One recoding per coding asked for (identity, gzip, zstd), not one per hit.
    let metrics = c
        .get(larder.url("/metrics"))
        .header("x-admin-key", READ_KEY)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics
            .lines()
            .any(|l| l == "larder_cache_variants_made_total 3"),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("variants"))
            .collect::<Vec<_>>()
            .join("\n")
    );
    // A purge takes both forms: the next identity client finds nothing.
    let purged = c
        .post(larder.url("/admin/cache/invalidate"))
        .header("x-admin-key", KEY)
        .json(&serde_json::json!({ "keys": ["hello:greetings:200"] }))
        .send()
        .await
        .unwrap();
    assert!(purged.status().is_success(), "{}", purged.status());
    let r = c.get(&url).send().await.unwrap();
    assert!(
        status(r.headers()).contains("stored"),
        "{}",
        status(r.headers())
    );
}

/// The `security` block of a server verifying HS256 tokens, its clock at the tokens' `NOW`.
fn jwt_security(extra: &str) -> String {
    format!(
        "server: {{ clock_start: \"{}\" }}\nsecurity:\n  auth:\n    jwt: [{{ algorithms: [HS256], secret: \"{}\" }}]\n{extra}",
        auth::NOW_TEXT,
        auth::HS_SECRET
    )
}

#[tokio::test]
async fn credentials_never_share_an_entry() {
    let user_rule = "version: 1\nrules:\n  - name: hello-greeting-user\n    match: { plugin: hello, operation: get_greeting }\n    key: \"hello:private:{path.name}\"\n    scope: user\n    ttl: 5m\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("user.yaml"), user_rule).unwrap();
    let larder = start(dir.path(), 0, &jwt_security(""));
    let c = reqwest::Client::new();
    let url = larder.url("/greetings/me");
    let as_token = |token: String| {
        let (c, url) = (c.clone(), url.clone());
        async move {
            let r = c.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), status(r.headers()))
        }
    };
    let alice = auth::hs256(&auth::claims("alice", json!({})), None, None);
    let bob = auth::hs256(&auth::claims("bob", json!({})), None, None);
    assert!(as_token(alice.clone()).await.1.contains("stored"));
    assert!(
        as_token(bob.clone()).await.1.contains("stored"),
        "bob was served alice's entry"
    );
    assert!(as_token(alice.clone()).await.1.contains("hit"));
    assert!(as_token(bob).await.1.contains("hit"));
    // Another token for alice is still alice: the key is the verified user, not the header.
    let alice_again = auth::hs256(&auth::claims("alice", json!({"jti": "2"})), None, None);
    assert!(as_token(alice_again).await.1.contains("hit"));
    // A token nobody signed is refused, never keyed.
    let forged = auth::hs256(
        &auth::claims("alice", json!({})),
        Some("not-the-secret-but-as-long-as-it-is-0123"),
        None,
    );
    let (code, _) = as_token(forged).await;
    assert_eq!(code, 401);
    // No credentials: a user-scoped rule has no principal to key by, so no cache at all.
    let (_, h, _) = get(&c, &url).await;
    assert!(status(&h).contains("detail=principal"), "{}", status(&h));
}

#[tokio::test]
async fn public_rule_never_serves_or_stores_credentialed_requests() {
    let dir = policy_dir(&[]);
    let larder = start(
        dir.path(),
        0,
        &jwt_security("    credential_headers: [\"cookie:session\"]\n"),
    );
    let c = reqwest::Client::new();
    let url = larder.url("/greetings/shared");
    // The session cookie is a credential: the answer is neither served from nor stored
    // in the shared entry.
    let r = c
        .get(&url)
        .header("cookie", "theme=dark; session=abc")
        .send()
        .await
        .unwrap();
    assert!(status(r.headers()).contains("bypass; detail=credentials"));
    let (_, h, _) = get(&c, &url).await;
    assert!(
        status(&h).contains("stored"),
        "the credentialed response was stored: {}",
        status(&h)
    );
    // A verified token on a public rule bypasses too.
    let token = auth::hs256(&auth::claims("alice", json!({})), None, None);
    let r = c.get(&url).bearer_auth(token).send().await.unwrap();
    assert!(status(r.headers()).contains("bypass; detail=credentials"));
    // Any other cookie (analytics, preferences) is not a credential: served from cache.
    let r = c
        .get(&url)
        .header("cookie", "_ga=GA1.2.3; theme=dark")
        .send()
        .await
        .unwrap();
    assert!(
        status(r.headers()).contains("hit"),
        "{}",
        status(r.headers())
    );
}

/// Polls fresh greetings (with a deadline) until they are cached for at most 42 s, the TTL
/// an edit put in the policy; how long that took.
async fn ttl_of_42s_applies(
    c: &reqwest::Client,
    larder: &Larder,
    within: Duration,
    what: &str,
) -> Duration {
    let since = Instant::now();
    for n in 0.. {
        let (_, h, _) = get(c, &larder.url(&format!("/greetings/after{n}"))).await;
        if max_age(&h) <= 42 {
            break;
        }
        assert!(since.elapsed() < within, "{what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    since.elapsed()
}

/// Polls `/admin/policies` (with a deadline) until the last reload is reported refused, and
/// checks it names `hello.yaml` and the misspelt `tll`.
async fn refused_reload(c: &reqwest::Client, larder: &Larder, within: Duration, what: &str) {
    let deadline = Instant::now() + within;
    let policies = loop {
        let p: Value = admin_get(c, larder, "/admin/policies").await;
        if p["last_reload"]["ok"] == false {
            break p;
        }
        assert!(Instant::now() < deadline, "{what}: {p}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let errors = policies["last_reload"]["errors"].to_string();
    assert!(
        errors.contains("hello.yaml") && errors.contains("unknown field `tll`"),
        "{errors}"
    );
}

/// Waits (with a deadline) until the server's Redis connection is up and its breaker closed:
/// on a loaded machine the first connection can take longer than start-up.
async fn wait_for_redis(c: &reqwest::Client, l: &Larder) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = admin_stats(c, l).await;
        // Connected, L2 in use, and listening to the other instances' invalidations.
        if stats["redis"]["connected"] == true
            && stats["redis"]["breaker_open"] == false
            && stats["redis"]["subscribed"] == true
        {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Redis never came up: {}",
            stats["redis"]
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_l2_entry_survives_a_restart_of_larder() {
    let redis = RedisServer::spawn().unwrap();
    let dir = policy_dir(&[]);
    let storage = format!(
        "storage:\n  mode: hybrid\n  redis:\n    url: {}\n",
        redis.url()
    );
    let c = reqwest::Client::new();
    {
        let larder = start(dir.path(), 0, &storage);
        wait_for_redis(&c, &larder).await;
        let (_, h, _) = get(&c, &larder.url("/greetings/persist")).await;
        assert!(status(&h).contains("stored"));
        // The L2 write happens after the response: wait until Redis has it.
        let deadline = Instant::now() + Duration::from_secs(10);
        // The raw RESP reply: `:0` until the entry (and its tag sets, one atomic script) land.
        while redis.command("DBSIZE").unwrap().trim() == ":0" {
            assert!(Instant::now() < deadline, "entry never reached Redis");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
    let larder = start(dir.path(), 0, &storage);
    wait_for_redis(&c, &larder).await;
    let (_, h, body) = get(&c, &larder.url("/greetings/persist")).await;
    assert!(
        status(&h).ends_with("detail=l2"),
        "{}\nstats: {}\nlogs: {}",
        status(&h),
        admin_stats(&c, &larder).await,
        larder.logs()
    );
    assert!(body.contains("persist"));
    let (_, h, _) = get(&c, &larder.url("/greetings/persist")).await;
    assert!(
        status(&h).ends_with("detail=l1"),
        "promoted into L1: {}",
        status(&h)
    );
}

#[tokio::test]
async fn an_invalidation_on_one_instance_reaches_the_others_l1() {
    let redis = RedisServer::spawn().unwrap();
    let dir = policy_dir(&[]);
    let storage = format!(
        "storage:\n  mode: hybrid\n  redis:\n    url: {}\n",
        redis.url()
    );
    let a = start(dir.path(), 0, &storage);
    let b = start(dir.path(), 0, &storage);
    let c = reqwest::Client::new();
    wait_for_redis(&c, &a).await;
    wait_for_redis(&c, &b).await;
    get(&c, &b.url("/greetings/sync")).await;
    let (_, h, _) = get(&c, &b.url("/greetings/sync")).await;
    assert!(status(&h).ends_with("detail=l1"));
    let purged = Instant::now();
    let r = c
        .post(a.url("/admin/cache/invalidate"))
        .header("x-admin-key", KEY)
        .json(&json!({"tags": ["greeting:sync"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, h, _) = get(&c, &b.url("/greetings/sync")).await;
        if status(&h).contains("fwd=uri-miss") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "instance B kept serving its L1 copy"
        );
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    println!(
        "cross-instance invalidation seen after {:?}",
        purged.elapsed()
    );
}

#[tokio::test]
async fn redis_dying_under_load_fails_no_request() {
    let mut redis = RedisServer::spawn().unwrap();
    let dir = policy_dir(&[]);
    let storage = format!(
        "storage:\n  mode: hybrid\n  redis:\n    url: {}\n",
        redis.url()
    );
    let larder = start(dir.path(), 1, &storage);
    let c = reqwest::Client::new();
    let done = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let load = {
        let (c, base, done, stop) = (c.clone(), larder.url(""), done.clone(), stop.clone());
        tokio::spawn(async move {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::Relaxed) {
                let n = done.load(Ordering::Relaxed);
                let t = Instant::now();
                let r = c
                    .get(format!("{base}/greetings/u{}", n % 50))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200, "a request failed during the outage");
                worst = worst.max(t.elapsed());
                done.fetch_add(1, Ordering::Relaxed);
            }
            worst
        })
    };
    // Each phase lasts until the load has made progress in it (polled, with a deadline).
    let progress = |at_least: u32| {
        let done = done.clone();
        async move {
            let deadline = Instant::now() + Duration::from_secs(20);
            while done.load(Ordering::Relaxed) < at_least {
                assert!(Instant::now() < deadline, "the load stalled");
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    progress(200).await;
    let mut redis = tokio::task::spawn_blocking(move || {
        redis.kill();
        redis
    })
    .await
    .unwrap();
    let killed_at = done.load(Ordering::Relaxed);
    progress(killed_at + 500).await;
    tokio::task::spawn_blocking(move || {
        redis.restart().unwrap();
        redis
    })
    .await
    .unwrap();
    let back_at = done.load(Ordering::Relaxed);
    progress(back_at + 500).await;
    stop.store(true, Ordering::Relaxed);
    let worst = load.await.unwrap();
    let n = done.load(Ordering::Relaxed);
    println!(
        "{n} requests, {} while Redis was down, none failed; slowest {worst:?}",
        back_at - killed_at
    );
}

#[tokio::test]
async fn policy_edits_apply_within_two_seconds_and_bad_edits_keep_the_old_policy() {
    let dir = policy_dir(&[]);
    // Clients are told the TTL (`max-age`), which is how this test sees the policy.
    let file = dir.path().join("hello.yaml");
    let text = std::fs::read_to_string(&file).unwrap().replacen(
        "stale_while_revalidate: 30s",
        "stale_while_revalidate: 30s\n    client: { revalidate: false }",
        1,
    );
    std::fs::write(&file, text).unwrap();
    let larder = start(dir.path(), 0, "");
    let c = reqwest::Client::new();
    let (_, h, _) = get(&c, &larder.url("/greetings/before")).await;
    assert!(max_age(&h) > 200, "{h:?}");

    let text = std::fs::read_to_string(&file).unwrap();
    std::fs::write(&file, text.replacen("ttl: 5m", "ttl: 42s", 1)).unwrap();
    let took = ttl_of_42s_applies(
        &c,
        &larder,
        Duration::from_secs(2),
        "the new TTL did not apply within 2s",
    )
    .await;
    println!("TTL edit applied after {took:?}");

    std::fs::write(&file, text.replacen("ttl: 5m", "tll: 5m", 1)).unwrap();
    refused_reload(
        &c,
        &larder,
        Duration::from_secs(5),
        "the bad edit was never reported",
    )
    .await;
    let (_, h, _) = get(&c, &larder.url("/greetings/still-old")).await;
    assert!(max_age(&h) <= 42, "the last good policy stays in force");

    let r = c
        .post(larder.url("/admin/policies/reload"))
        .header("x-admin-key", READ_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403, "a read key cannot reload");
    let r = c
        .post(larder.url("/admin/policies/reload"))
        .header("x-admin-key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 422);
}

/// The `max-age` clients are told, which is how the reload tests see the rule's TTL.
fn max_age(h: &HeaderMap) -> u64 {
    let cc = h["cache-control"].to_str().unwrap();
    cc.split("max-age=")
        .nth(1)
        .unwrap_or_else(|| panic!("no max-age in {cc}"))
        .split(',')
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// A Kubernetes ConfigMap volume: the kubelet writes each version into a timestamped folder
/// and points `..data` at it; the visible `hello.yaml` is a symlink through `..data`.
struct ConfigMapVolume {
    dir: tempfile::TempDir,
    current: String,
}

impl ConfigMapVolume {
    fn new(version: &str, hello_yaml: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let folder = format!("..{version}");
        std::fs::create_dir(dir.path().join(&folder)).unwrap();
        std::fs::write(dir.path().join(&folder).join("hello.yaml"), hello_yaml).unwrap();
        std::os::unix::fs::symlink(&folder, dir.path().join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/hello.yaml", dir.path().join("hello.yaml")).unwrap();
        Self {
            dir,
            current: folder,
        }
    }

    /// An update as the kubelet's atomic writer makes it: the new version's folder, a
    /// temporary symlink to it renamed over `..data`, then the old folder removed.
    fn update(&mut self, version: &str, hello_yaml: &str) {
        let d = self.dir.path();
        let folder = format!("..{version}");
        std::fs::create_dir(d.join(&folder)).unwrap();
        std::fs::write(d.join(&folder).join("hello.yaml"), hello_yaml).unwrap();
        std::os::unix::fs::symlink(&folder, d.join("..data_tmp")).unwrap();
        std::fs::rename(d.join("..data_tmp"), d.join("..data")).unwrap();
        std::fs::remove_dir_all(d.join(&self.current)).unwrap();
        self.current = folder;
    }
}

#[tokio::test]
async fn a_configmap_update_reloads_the_policies_and_a_bad_one_keeps_the_old() {
    let shipped = std::fs::read_to_string(policy_dir(&[]).path().join("hello.yaml")).unwrap();
    let v1 = shipped.replacen(
        "stale_while_revalidate: 30s",
        "stale_while_revalidate: 30s\n    client: { revalidate: false }",
        1,
    );
    let mut volume = ConfigMapVolume::new("2026_12_01_10_00_00.1", &v1);
    let larder = start(volume.dir.path(), 0, "");
    let c = reqwest::Client::new();
    let (_, h, _) = get(&c, &larder.url("/greetings/before")).await;
    // A fresh entry's max-age is its TTL less the time storing it took (299 or 300).
    assert!(max_age(&h) > 200, "the mounted policy applies: {h:?}");
    let policies: Value = admin_get(&c, &larder, "/admin/policies").await;
    let files: Vec<&str> = policies["files"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|f| f.as_str())
        .filter(|f| f.contains("hello"))
        .collect();
    assert_eq!(
        files,
        [volume.dir.path().join("hello.yaml").to_str().unwrap()],
        "the kubelet's own folders are not policies"
    );

    volume.update(
        "2026_12_01_10_05_00.2",
        &v1.replacen("ttl: 5m", "ttl: 42s", 1),
    );
    let took = ttl_of_42s_applies(
        &c,
        &larder,
        Duration::from_secs(10),
        "the swapped-in TTL did not apply within 10s",
    )
    .await;
    println!("ConfigMap swap applied after {took:?}");
    let policies: Value = admin_get(&c, &larder, "/admin/policies").await;
    assert_eq!(
        policies["last_reload"]["trigger"], "file change",
        "{policies}"
    );
    assert_eq!(policies["last_reload"]["ok"], true, "{policies}");

    volume.update(
        "2026_12_01_10_10_00.3",
        &v1.replacen("ttl: 5m", "tll: 5m", 1),
    );
    refused_reload(
        &c,
        &larder,
        Duration::from_secs(10),
        "the bad update was never reported",
    )
    .await;
    let (_, h, _) = get(&c, &larder.url("/greetings/still-42")).await;
    assert!(
        (1..=42).contains(&max_age(&h)),
        "the last good policy stays in force: {h:?}"
    );
}

#[tokio::test]
async fn admin_routes_need_keys_roles_and_are_documented() {
    let dir = policy_dir(&[]);
    let larder = start(dir.path(), 0, "");
    let c = reqwest::Client::new();
    let r = c
        .get(larder.url("/admin/cache/stats"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = c
        .post(larder.url("/admin/cache/invalidate"))
        .header("x-admin-key", READ_KEY)
        .json(&json!({"all": true}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = c
        .post(larder.url("/admin/cache/invalidate"))
        .header("x-admin-key", KEY)
        .json(&json!({"pattern": "*"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("all"), "{body}");
    let r = c
        .post(larder.url("/admin/cache/invalidate"))
        .header("x-admin-key", KEY)
        .json(&json!({"plugin": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let doc: Value = reqwest::get(larder.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    for path in [
        "/admin/cache/stats",
        "/admin/cache/keys",
        "/admin/cache/invalidate",
        "/admin/cache/warm",
        "/admin/cache/jobs",
        "/admin/cache/health",
        "/admin/cache/report",
        "/admin/policies",
        "/admin/policies/reload",
        "/admin/audit",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from /openapi.json"
        );
    }
    for path in [
        "/admin/cache/health",
        "/admin/cache/report",
        "/admin/cache/jobs",
        "/admin/cache/keys?pattern=hello:*",
    ] {
        let r = c
            .get(larder.url(path))
            .header("x-admin-key", READ_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path}");
    }
}

/// Every sample line is `name{labels} value` with a float value.
fn parse_prometheus(text: &str) -> Vec<(String, f64)> {
    let mut out = Vec::new();
    for line in text
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (series, value) = line
            .rsplit_once(' ')
            .unwrap_or_else(|| panic!("bad line: {line}"));
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value: {line}"));
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
            "bad metric name: {line}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "bad labels: {line}");
        }
        out.push((series.to_owned(), value));
    }
    out
}

#[tokio::test]
async fn metrics_parse_and_hit_counters_move() {
    let dir = policy_dir(&[]);
    let larder = start(dir.path(), 0, "");
    let c = reqwest::Client::new();
    let sample = |text: &str, series: &str| -> f64 {
        parse_prometheus(text)
            .into_iter()
            .find(|(s, _)| s == series)
            .map(|(_, v)| v)
            .unwrap_or(0.0)
    };
    let hits = r#"larder_cache_rule_results_total{rule="hello-greeting",result="hit_l1"}"#;
    let ok = r#"larder_http_requests_total{plugin="hello",method="GET",route="/greetings/{name}",status="2xx"}"#;
    let before = reqwest::get(larder.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for _ in 0..3 {
        get(&c, &larder.url("/greetings/metrics")).await;
    }
    let after = reqwest::get(larder.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(sample(&after, hits) - sample(&before, hits), 2.0, "{after}");
    assert_eq!(sample(&after, ok) - sample(&before, ok), 3.0);
    assert!(sample(&after, "larder_cache_l1_entries") >= 1.0);
    assert!(after.contains("larder_http_request_duration_seconds_bucket"));
    // Every family says what it counts; a memory-only server shows no Redis series, and no
    // route shows a 1xx series it could never count.
    for line in after.lines().filter(|l| l.starts_with("# TYPE ")) {
        let name = line.split(' ').nth(2).unwrap();
        assert!(
            after.contains(&format!("# HELP {name} ")),
            "no # HELP for {name}"
        );
    }
    for never in [
        "layer=\"l2\"",
        "status=\"1xx\"",
        "larder_redis_",
        "invalidations_published",
    ] {
        assert!(!after.contains(never), "{never} on a memory-only server");
    }
}

#[tokio::test]
async fn each_coding_is_stored_once_and_served_to_clients_that_accept_it() {
    for alg in ["br", "zstd", "gzip"] {
        let dir = tempfile::tempdir().unwrap();
        let policy = format!(
            "version: 1\nrules:\n  - name: list-{alg}\n    match: {{ plugin: hello, operation: list_greetings }}\n    key: \"hello:list:{{query.count|10}}\"\n    ttl: 5m\n    compression: {{ algorithms: [{alg}], min_size: 1KiB }}\n"
        );
        std::fs::write(dir.path().join("p.yaml"), policy).unwrap();
        let larder = start(dir.path(), 0, "");
        let c = reqwest::Client::new();
        let url = larder.url("/greetings?count=300");
        let metric = |text: &str| -> f64 {
            parse_prometheus(text)
                .into_iter()
                .find(|(s, _)| s == "larder_cache_compressions_total")
                .map(|(_, v)| v)
                .unwrap_or(0.0)
        };
        let first = c
            .get(&url)
            .header("accept-encoding", alg)
            .send()
            .await
            .unwrap();
        assert!(status(first.headers()).contains("stored"));
        assert_eq!(first.headers()["content-encoding"], alg);
        let compressed_after_miss = metric(
            &reqwest::get(larder.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        for accept in [
            alg.to_owned(),
            format!("identity;q=0.5, {alg};q=0.9"),
            "*".to_owned(),
        ] {
            for _ in 0..20 {
                let r = c
                    .get(&url)
                    .header("accept-encoding", &accept)
                    .send()
                    .await
                    .unwrap();
                assert!(status(r.headers()).contains("hit"));
                assert_eq!(
                    r.headers()["content-encoding"],
                    alg,
                    "Accept-Encoding: {accept}"
                );
            }
        }
        let r = c
            .get(&url)
            .header("accept-encoding", format!("{alg};q=0"))
            .send()
            .await
            .unwrap();
        assert!(
            r.headers().get("content-encoding").is_none(),
            "{alg};q=0 must get identity"
        );
        let list: Vec<Value> = r.json().await.unwrap();
        assert_eq!(list.len(), 300);
        let after = metric(
            &reqwest::get(larder.url("/metrics"))
                .await
                .unwrap()
                .text()
                .await
                .unwrap(),
        );
        assert_eq!(
            after, compressed_after_miss,
            "{alg}: a hit compressed again"
        );
        assert!(after >= 1.0);
    }
}

#[tokio::test]
async fn responses_that_set_cookies_are_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("p.yaml"),
        "version: 1\nrules:\n  - name: cookie\n    match: { plugin: faulty, operation: faulty_cookie }\n    key: \"faulty:cookie\"\n    ttl: 5m\n",
    )
    .unwrap();
    let larder = Larder::start_with(LarderOptions {
        config: Some(format!(
            "policies: {}\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n  faulty:\n    library: {}\n",
            dir.path().display(),
            artifacts().cdylib("faulty-plugin").display()
        )),
        env: vec![],
        policies: Some(dir.path().to_owned()),
    })
    .unwrap();
    let c = reqwest::Client::new();
    for _ in 0..3 {
        let r = c.get(larder.url("/cookie")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(
            r.headers().contains_key("set-cookie"),
            "the handler's cookie was lost"
        );
        let s = status(r.headers());
        assert!(s.contains("fwd=uri-miss") && !s.contains("stored"), "{s}");
    }
}

/// Two answers to the same request carry the same header names, and the same
/// representation headers.
fn assert_same_headers(a: &HeaderMap, b: &HeaderMap) {
    let names = |h: &HeaderMap| {
        let mut n: Vec<String> = h.keys().map(|k| k.as_str().to_owned()).collect();
        n.sort();
        n
    };
    assert_eq!(names(a), names(b));
    for name in ["content-type", "etag", "vary"] {
        assert_eq!(a.get(name), b.get(name), "{name}");
    }
}

/// A hit passes admission like every request: the route's rate limit is charged once per
/// request, before the cache is consulted, and a refused request is neither served nor
/// counted as a hit. Hits are metered like misses.
#[tokio::test]
async fn hits_are_admitted_charged_and_counted_like_every_request() {
    let dir = policy_dir(&[]);
    let larder = Larder::start_with(LarderOptions {
        config: Some(format!(
            "policies: {}\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n  hello:\n    library: {}\n    settings: {{ delay_ms: 0 }}\n    rate_limit: {{ per_second: 0, per_minute: 5 }}\n",
            dir.path().display(),
            artifacts().cdylib("hello-plugin").display()
        )),
        env: vec![("LARDER_ADMIN_KEY".into(), KEY.into())],
        policies: Some(dir.path().to_owned()),
    })
    .unwrap();
    let c = reqwest::Client::new();
    let url = larder.url("/greetings/admitted");
    let series = |class: &str| {
        format!(
            r#"larder_http_requests_total{{plugin="hello",method="GET",route="/greetings/{{name}}",status="{class}"}}"#
        )
    };
    let metric = |text: &str, class: &str| -> f64 {
        parse_prometheus(text)
            .into_iter()
            .find(|(s, _)| *s == series(class))
            .map_or(0.0, |(_, v)| v)
    };

    // 1: the miss. 2, 3: hits, answered alike.
    let (s, h, body) = get(&c, &url).await;
    assert_eq!(s, 200);
    assert!(status(&h).contains("stored"), "{}", status(&h));
    let (s2, h2, body2) = get(&c, &url).await;
    let (s3, h3, body3) = get(&c, &url).await;
    assert_eq!((s2, s3), (200, 200));
    assert_eq!(
        (body2.as_str(), body3.as_str()),
        (body.as_str(), body.as_str())
    );
    assert_same_headers(&h2, &h3);
    // The TTL may cross a second between the two; the rest of the header must agree.
    let no_ttl = |h: &HeaderMap| {
        status(h)
            .split("; ")
            .filter(|p| !p.starts_with("ttl="))
            .collect::<Vec<_>>()
            .join("; ")
    };
    assert_eq!(no_ttl(&h2), "larder; hit; detail=l1");
    assert_eq!(no_ttl(&h3), no_ttl(&h2));
    assert!(
        h2["server-timing"]
            .to_str()
            .unwrap()
            .starts_with("cache;dur="),
        "{:?}",
        h2["server-timing"]
    );

    // 4, 5: hits within the allowance; 6: a hit the cache could serve, but over it.
    assert_eq!(get(&c, &url).await.0, 200);
    assert_eq!(get(&c, &url).await.0, 200);
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    let refused: Value = r.json().await.unwrap();
    assert_eq!(refused["error"], "rate_limited");

    let text = reqwest::get(larder.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(metric(&text, "2xx"), 5.0, "{text}");
    assert_eq!(metric(&text, "4xx"), 1.0, "{text}");
    let hits = r#"larder_cache_rule_results_total{rule="hello-greeting",result="hit_l1"}"#;
    assert_eq!(
        parse_prometheus(&text)
            .into_iter()
            .find(|(s, _)| s == hits)
            .map(|(_, v)| v),
        Some(4.0),
        "the refused request is not a hit: {text}"
    );
}

/// With a Redis-only rule every hit is one Redis read, and a miss reads Redis once too: the
/// lookup hands what it read to the load, which does not read again. The route's rate limit
/// is charged once per request, hit or miss. Larder runs on one worker thread here (the
/// current-thread scheduler it picks on a single core).
#[tokio::test(flavor = "multi_thread")]
async fn l2_hits_and_misses_read_redis_once_and_are_charged_once() {
    // Counts the entry reads Redis serves. The cross-instance lock (on by default) adds its
    // own read of the lock key on a miss, inside the unlock script, which Redis counts as a
    // GET too; it is off here so the count is the entries'.
    let redis = RedisServer::spawn().unwrap();
    let rule = "version: 1\nrules:\n  - name: hello-greeting\n    match: { plugin: hello, operation: get_greeting }\n    key: \"hello:greeting:{path.name}\"\n    ttl: 5m\n    store: redis\n    tags: [\"greeting:{path.name}\"]\n";
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hello.yaml"), rule).unwrap();
    let larder = Larder::start_with(LarderOptions {
        config: Some(format!(
            "policies: {}\nplugins:\n  aliexpress: {{ enabled: false }}\n  booking: {{ enabled: false }}\n  hello:\n    library: {}\n    settings: {{ delay_ms: 0 }}\n    rate_limit: {{ per_second: 0, per_minute: 6 }}\nstorage:\n  mode: hybrid\n  redis:\n    url: {}\n    lock: {{ enabled: false }}\n",
            dir.path().display(),
            artifacts().cdylib("hello-plugin").display(),
            redis.url()
        )),
        env: vec![
            ("LARDER_ADMIN_KEY".into(), KEY.into()),
            ("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into()),
            ("TOKIO_WORKER_THREADS".into(), "1".into()),
        ],
        policies: Some(dir.path().to_owned()),
    })
    .unwrap();
    let c = reqwest::Client::new();
    wait_for_redis(&c, &larder).await;
    let url = larder.url("/greetings/redis-only");
    let counter = |text: &str, series: &str| -> f64 {
        parse_prometheus(text)
            .into_iter()
            .find(|(s, _)| s == series)
            .map_or(0.0, |(_, v)| v)
    };
    // The raw INFO reply; Redis counts every GET it served.
    let redis_gets = || -> u64 {
        let info = redis.command("INFO commandstats").unwrap();
        info.lines()
            .find_map(|l| l.strip_prefix("cmdstat_get:calls="))
            .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
    };
    let wait_for_entry = || async {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !redis
            .command("KEYS *:e:hello:greeting:redis-only")
            .unwrap()
            .contains("redis-only")
        {
            assert!(Instant::now() < deadline, "entry never reached Redis");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };

    // 1: the miss (its L2 write lands after the answer). 2, 3: L2 hits, one GET each.
    let (s, h, body) = get(&c, &url).await;
    assert_eq!(s, 200);
    assert!(status(&h).contains("stored"), "{}", status(&h));
    wait_for_entry().await;
    let gets = redis_gets();
    let (s2, h2, body2) = get(&c, &url).await;
    let (s3, h3, body3) = get(&c, &url).await;
    assert_eq!(redis_gets() - gets, 2, "one Redis read per hit");
    assert_eq!((s2, s3), (200, 200));
    assert_eq!(
        (body2.as_str(), body3.as_str()),
        (body.as_str(), body.as_str())
    );
    assert_same_headers(&h2, &h3);
    assert!(status(&h2).ends_with("detail=l2"), "{}", status(&h2));

    // 4: after a purge the lookup finds nothing and the load goes on from what it read:
    // one GET in all, not two.
    let purge = c
        .post(larder.url("/admin/cache/invalidate"))
        .header("x-admin-key", KEY)
        .json(&json!({"tags": ["greeting:redis-only"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(purge.status(), 200, "{}", purge.text().await.unwrap());
    let gets = redis_gets();
    let (s, h, _) = get(&c, &url).await;
    assert_eq!(s, 200);
    assert!(status(&h).contains("stored"), "{}", status(&h));
    assert_eq!(redis_gets() - gets, 1, "Redis read once");
    // 5, 6: hits, the last requests the allowance covers; 7: over it.
    wait_for_entry().await;
    assert_eq!(get(&c, &url).await.0, 200);
    assert_eq!(get(&c, &url).await.0, 200, "every request was charged once");
    let r = c.get(&url).send().await.unwrap();
    assert_eq!(r.status(), 429, "an L2 hit is charged like any request");

    let text = reqwest::get(larder.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let hits = r#"larder_cache_rule_results_total{rule="hello-greeting",result="hit_l2"}"#;
    assert_eq!(counter(&text, hits), 4.0, "{text}");
}

/// An instance started while Redis is down says so in its health — including that it does
/// not hear other instances' purges — until Redis is up and it has subscribed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_is_degraded_until_other_instances_purges_are_heard() {
    let mut redis = RedisServer::spawn().unwrap();
    redis.kill();
    let dir = policy_dir(&[]);
    let storage = format!(
        "storage:\n  mode: hybrid\n  redis:\n    url: {}\n",
        redis.url()
    );
    let larder = start(dir.path(), 0, &storage);
    let c = reqwest::Client::new();
    let health = admin_get(&c, &larder, "/admin/cache/health").await;
    assert_eq!(health["status"], "degraded", "{health}");
    assert_eq!(health["cache"]["redis"]["subscribed"], false, "{health}");
    let problems = health["problems"].to_string();
    assert!(
        problems.contains("unreachable") && problems.contains("other instances' purges"),
        "{problems}"
    );

    redis.restart().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let health = admin_get(&c, &larder, "/admin/cache/health").await;
        if health["status"] == "ok" {
            assert_eq!(health["cache"]["redis"]["subscribed"], true, "{health}");
            assert_eq!(health["problems"], serde_json::json!([]), "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "still degraded: {health}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The issue's lost purge, end to end. Two instances share Redis and both hold a greeting;
/// Redis stalls (SIGSTOP); a PUT on A answers 200. B cannot hear the purge, so it stops
/// serving its copy once the unsubscribed window has passed; when Redis answers again A
/// replays the purge: Redis no longer holds the entry, a new instance C does not read it
/// back, and B is subscribed again with nothing pending.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_purge_made_while_redis_is_paused_reaches_every_instance() {
    let redis = RedisServer::spawn().unwrap();
    let dir = policy_dir(&[]);
    let window = Duration::from_secs(2);
    let storage = format!(
        "storage:\n  mode: hybrid\n  redis:\n    url: {}\n    unsubscribed_l1_window_ms: {}\n",
        redis.url(),
        window.as_millis()
    );
    let a = start(dir.path(), 0, &storage);
    let b = start(dir.path(), 0, &storage);
    let c = reqwest::Client::new();
    wait_for_redis(&c, &a).await;
    wait_for_redis(&c, &b).await;
    let in_redis = || {
        let reply = redis.command("KEYS larder:*:e:hello:greeting:ada").unwrap();
        !reply.starts_with("*0")
    };
    let (_, h, _) = get(&c, &a.url("/greetings/ada")).await;
    assert!(status(&h).contains("stored"), "{}", status(&h));
    let deadline = Instant::now() + Duration::from_secs(10);
    while !in_redis() {
        assert!(Instant::now() < deadline, "the entry never reached Redis");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    get(&c, &b.url("/greetings/ada")).await;
    let (_, h, _) = get(&c, &b.url("/greetings/ada")).await;
    assert!(status(&h).ends_with("detail=l1"), "{}", status(&h));

    redis.pause();
    let paused = Instant::now();
    let r = c
        .put(a.url("/greetings/ada"))
        .json(&json!({"greeting": "Good evening"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "a write answers while Redis is stalled");
    let written = Instant::now();
    let health = admin_get(&c, &a, "/admin/cache/health").await;
    // The route's invalidation and the plugin's `greeting.updated` trigger: one purge each.
    assert_eq!(health["cache"]["pending_purges"], 2, "{health}");
    assert!(
        health["problems"].to_string().contains("not replayed yet"),
        "{health}"
    );
    // B answers every request meanwhile, from its L1 copy until the window (counted from
    // its last contact with Redis, before the pause) has passed.
    let deadline = paused + window + Duration::from_millis(500);
    let mut stale_answers = 0;
    let stopped = loop {
        let sent = Instant::now();
        let (code, h, _) = get(&c, &b.url("/greetings/ada")).await;
        assert_eq!(code, 200);
        if !status(&h).contains("detail=l1") {
            break sent;
        }
        stale_answers += 1;
        assert!(
            sent < deadline,
            "B still served its L1 copy {:?} after Redis paused",
            sent - paused
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    println!(
        "B stopped serving the purged entry {:?} after Redis paused ({:?} after the write's 200; window {window:?}); {stale_answers} answers from L1 before",
        stopped - paused,
        stopped.saturating_duration_since(written),
    );

    redis.resume();
    let resumed = Instant::now();
    let deadline = resumed + Duration::from_secs(15);
    loop {
        let health = admin_get(&c, &a, "/admin/cache/health").await;
        if health["cache"]["pending_purges"] == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "A never replayed: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    println!(
        "A's queued purge replayed {:?} after Redis resumed",
        resumed.elapsed()
    );
    assert!(!in_redis(), "Redis still holds the purged entry");
    let fresh = start(dir.path(), 0, &storage);
    wait_for_redis(&c, &fresh).await;
    let (_, h, _) = get(&c, &fresh.url("/greetings/ada")).await;
    assert!(
        status(&h).contains("fwd=uri-miss"),
        "a new instance read the purged entry back: {}",
        status(&h)
    );
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let health = admin_get(&c, &b, "/admin/cache/health").await;
        if health["status"] == "ok" {
            assert_eq!(health["cache"]["redis"]["subscribed"], true, "{health}");
            assert_eq!(health["cache"]["pending_purges"], 0, "{health}");
            break;
        }
        assert!(Instant::now() < deadline, "B never caught up: {health}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
