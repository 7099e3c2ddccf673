//! The merged OpenAPI document tells the truth: schemathesis fuzzes the real server from
//! its own `/openapi.json` — every operation, through its examples, boundary values,
//! generated inputs and chains of calls — and checks every answer against the document:
//! no 5xx, a declared status, the declared content type, headers and body schema.
//!
//! Two passes, each against its own server (memory cache, the repository's policies, a
//! fixed `server.clock_start`, a small analytics dataset and products catalog):
//! 1. credentials: rate limits off, a write admin key for the admin API and a JWT with every
//!    permission the document names for the other secured routes, so the handlers are
//!    reached;
//! 2. anonymous, on the embedded defaults (the plugins' rate limits on): the refusals —
//!    401s for the credentials schemathesis makes up, 429s with `Retry-After`.
//!
//! Schemathesis comes from `LARDER_SCHEMATHESIS`, else a venv the test makes in the target
//! directory ([`larder_testkit::schemathesis`]).

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use larder_testkit::auth;
use larder_testkit::schemathesis;
use larder_testkit::server::{ANALYTICS_SMALL, Larder, LarderOptions, PRODUCTS_SMALL};
use serde_json::{Value, json};

const ADMIN_KEY: &str = "conformance-admin-key-0123456789abcdef";

/// What every answer is checked for.
const CHECKS: &str = "not_a_server_error,status_code_conformance,content_type_conformance,\
                      response_schema_conformance,response_headers_conformance";

/// Far above what a pass takes (about 20 s alone): a hang fails the test rather than the
/// run.
const DEADLINE: Duration = Duration::from_secs(300);

/// A server on `config` (YAML after the clock), with a small analytics dataset and a small
/// products catalog.
fn start(config: &str) -> Larder {
    Larder::start_with(LarderOptions {
        config: Some(format!(
            "server: {{ clock_start: \"{}\" }}\n{config}",
            auth::NOW_TEXT
        )),
        env: ANALYTICS_SMALL
            .iter()
            .chain(PRODUCTS_SMALL)
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        policies: None,
    })
    .expect("larder starts")
}

/// A server whose handlers every request reaches: rate limits off, a write admin key
/// ([`ADMIN_KEY`]) and HS256 bearer tokens ([`auth::HS_SECRET`]).
fn start_open() -> Larder {
    let off = "{ per_second: 0, per_minute: 0 }";
    start(&format!(
        "plugins:\n  aliexpress: {{ rate_limit: {off} }}\n  analytics: {{ rate_limit: {off} }}\n  \
         products: {{ rate_limit: {off} }}\n  booking:\n    rate_limit: {off}\n    route_limits: {{ \"POST /api/v2/cache/benchmark/{{target}}\": {off} }}\n\
         security:\n  admin_keys: [ {{ key: \"{ADMIN_KEY}\", role: write }} ]\n  \
         auth: {{ jwt: [ {{ algorithms: [HS256], secret: \"{}\" }} ] }}\n",
        auth::HS_SECRET
    ))
}

async fn document(larder: &Larder) -> Value {
    reqwest::get(larder.url("/openapi.json"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// How many operations the document has.
fn operations(doc: &Value) -> usize {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum()
}

/// Every permission some operation of the document asks a JWT for.
fn permissions(doc: &Value) -> BTreeSet<String> {
    doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|p| p.as_object().unwrap().values())
        .filter_map(|op| op["security"].as_array())
        .flatten()
        .filter_map(|alternative| alternative["BearerJwt"].as_array())
        .flatten()
        .filter_map(|p| p.as_str().map(str::to_owned))
        .collect()
}

/// Runs schemathesis over `larder`'s document with `config` (its TOML) and returns its
/// output; panics with the output unless every test case passed and every operation was
/// tested.
fn fuzz(st: &Path, larder: &Larder, config: &str, extra: &[&str], operations: usize) -> String {
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("schemathesis.toml");
    std::fs::write(&config_file, config).unwrap();
    let mut cmd = schemathesis::no_fake_clock(Command::new(st));
    cmd.current_dir(dir.path())
        .arg("--no-color")
        .arg("--config-file")
        .arg(&config_file)
        .args(["run", &larder.url("/openapi.json")])
        .args(["--checks", &CHECKS.replace(' ', "")])
        .args(["--seed", "1234", "--generation-database", "none"])
        .args(["--max-examples", "30", "--workers", "2"])
        .args(["--request-timeout", "20", "--continue-on-failure"])
        .args([
            "--suppress-health-check",
            "all",
            "--output-truncate",
            "false",
        ])
        .args(extra)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null());
    let out = finish(cmd);
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "schemathesis found answers the document does not declare ({}):\n{text}\n\
         server log:\n{}",
        out.status,
        larder.logs()
    );
    let tested = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("Tested: "))
        .and_then(|n| n.trim().parse::<usize>().ok());
    assert_eq!(
        tested,
        Some(operations),
        "every operation of the document is tested:\n{text}"
    );
    text
}

/// Waits for `cmd` (its output captured) up to [`DEADLINE`], killing it past that.
fn finish(mut cmd: Command) -> Output {
    let child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("schemathesis runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(out) => out.expect("schemathesis' output"),
        Err(_) => {
            // SAFETY: kill(2) on the child this test spawned and has not reaped.
            unsafe {
                libc::kill(pid as i32, libc::SIGKILL);
            }
            panic!("schemathesis did not finish within {DEADLINE:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuzzing_finds_no_answer_the_document_does_not_declare() {
    let st = schemathesis::st().unwrap_or_else(|e| panic!("{e:#}"));

    // 1. With credentials, rate limits off: the handlers.
    let larder = start_open();
    let doc = document(&larder).await;
    let wanted = permissions(&doc);
    assert!(!wanted.is_empty(), "secured routes ask for permissions");
    let token = auth::hs256(
        &auth::claims("fuzzer", json!({ "tid": "acme", "permissions": wanted })),
        None,
        None,
    );
    // Each secured operation gets the credential its own security scheme names.
    let credentials = format!(
        "[auth.openapi.AdminKeyHeader]\napi_key = \"{ADMIN_KEY}\"\n\n\
         [auth.openapi.BearerJwt]\nbearer = \"{token}\"\n"
    );
    let out = fuzz(
        &st,
        &larder,
        &credentials,
        &["--generation-with-security-parameters", "false"],
        operations(&doc),
    );
    println!("with credentials:\n{out}");
    drop(larder);

    // 2. Anonymous, on the embedded defaults: the refusals.
    let larder = start("");
    let doc = document(&larder).await;
    let out = fuzz(&st, &larder, "", &[], operations(&doc));
    println!("anonymous:\n{out}");
}

const JSON: &str = "application/json; charset=utf-8";

fn schema<'a>(doc: &'a Value, path: &str, method: &str, status: &str) -> &'a Value {
    &doc["paths"][path][method]["responses"][status]["content"][JSON]["schema"]
}

fn reference(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

/// The core's refusals are declared where it gives them, with the body it gives there, and
/// that body has no `null` where the schema has none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cores_refusals_are_declared_with_their_bodies() {
    let larder = start("");
    let doc = document(&larder).await;
    let c = reqwest::Client::new();

    // AliExpress paths: the seed's envelope, and the plugin's 5/s and 60/min.
    let search = "/api/products/search";
    let envelope = reference("AliexpressErrorEnvelope");
    for status in ["400", "401", "413", "429"] {
        assert_eq!(schema(&doc, search, "get", status), &envelope, "{status}");
    }
    let limited = &doc["paths"][search]["get"]["responses"]["429"];
    assert!(
        limited["description"]
            .as_str()
            .unwrap()
            .contains("5 per second and 60 per minute per client IP"),
        "{limited}"
    );
    assert_eq!(limited["headers"]["Retry-After"]["required"], true);
    let r = c
        .post(larder.url(search))
        .header("content-type", "application/json")
        .body(vec![b' '; 2 << 20])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 413);
    // Its body unread, the connection is closed and says so: no client reuses it.
    assert_eq!(r.headers()["connection"], "close");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "payload_too_large", "{body}");
    assert!(
        body["error"].get("field").is_none() && body["error"].get("upstream").is_none(),
        "absent, not null: {body}"
    );

    // Booking: the core's envelope on its own answers; its routes have no rate limit but
    // the benchmark's, and anyone may send an `x-admin-key`.
    let barbers = "/api/v2/barbers";
    assert_eq!(schema(&doc, barbers, "get", "401"), &reference("ApiError"));
    assert!(doc["paths"][barbers]["get"]["responses"]["429"].is_null());
    let bench = &doc["paths"]["/api/v2/cache/benchmark/{target}"]["post"]["responses"];
    assert!(
        bench["429"]["description"]
            .as_str()
            .unwrap()
            .contains("6 per minute per client IP"),
        "{bench}"
    );
    let r = c
        .get(larder.url(barbers))
        .header("x-admin-key", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_credentials", "{body}");
    assert!(body.get("field").is_none(), "{body}");

    // The admin API: no bad_request_handler, so parse failures are the core's 400 and 415.
    let invalidate = "/admin/cache/invalidate";
    for status in ["400", "401", "403", "413", "415"] {
        assert_eq!(
            schema(&doc, invalidate, "post", status),
            &reference("ApiError"),
            "{status}"
        );
    }
    assert!(doc["paths"]["/admin/audit"]["get"]["responses"]["400"].is_object());
}

/// Rate limits the operator turns off are not declared.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_turned_off_declare_no_429() {
    let larder = start(
        "plugins:\n  aliexpress: { rate_limit: { per_second: 0, per_minute: 0 } }\n  \
         booking: { enabled: false }\n  analytics: { enabled: false }\n",
    );
    let doc = document(&larder).await;
    assert!(doc["paths"]["/api/products/search"]["get"]["responses"]["429"].is_null());
}

/// The example of a parameter or body, where the document gives one.
fn example_of(doc: &Value, item: &Value) -> Option<Value> {
    if let Some(e) = item.get("example") {
        return Some(e.clone());
    }
    let schema = item.get("schema")?;
    if let Some(e) = schema.get("example") {
        return Some(e.clone());
    }
    let name = schema["$ref"].as_str()?.rsplit('/').next()?;
    doc["components"]["schemas"][name].get("example").cloned()
}

fn query_value(v: &Value) -> Vec<String> {
    match v {
        Value::Array(items) => items.iter().flat_map(query_value).collect(),
        Value::String(s) => vec![s.clone()],
        other => vec![other.to_string()],
    }
}

/// Swagger UI's "Try it out" sends the document's examples: every operation has one for
/// each input it requires, and sent as documented they are valid requests. A read answers
/// 2xx; a write may find the state changed (404, 409: the example appointment is already
/// cancelled) but is never refused as malformed (400, 415, 422) or fails (5xx).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_documented_example_is_a_valid_request() {
    let larder = start_open();
    let doc = document(&larder).await;
    let token = auth::hs256(
        &auth::claims(
            "examples",
            json!({ "tid": "acme", "permissions": permissions(&doc) }),
        ),
        None,
        None,
    );
    let c = reqwest::Client::new();
    let mut problems = Vec::new();
    let mut sent = 0;
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            let name = format!("{} {template}", method.to_uppercase());
            let mut path = template.clone();
            let mut query: Vec<(String, String)> = Vec::new();
            let mut missing = Vec::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let pname = p["name"].as_str().unwrap();
                match (example_of(&doc, p), p["in"].as_str().unwrap()) {
                    (Some(e), "path") => {
                        path = path.replace(&format!("{{{pname}}}"), &query_value(&e)[0]);
                    }
                    (Some(e), "query") => {
                        query.extend(query_value(&e).into_iter().map(|v| (pname.to_owned(), v)));
                    }
                    (None, "path" | "query") if p["required"] == true => {
                        missing.push(pname.to_owned())
                    }
                    _ => {}
                }
            }
            let body = match op.get("requestBody") {
                None => None,
                Some(rb) => {
                    let media = rb["content"].as_object().unwrap().values().next().unwrap();
                    let example = example_of(&doc, media);
                    if example.is_none() && rb["required"] == true {
                        missing.push("body".into());
                    }
                    example
                }
            };
            if !missing.is_empty() {
                problems.push(format!("{name}: no example for {missing:?}"));
                continue;
            }
            let method: reqwest::Method = method.to_uppercase().parse().unwrap();
            let mut req = c.request(method.clone(), larder.url(&path)).query(&query);
            req = if template.starts_with("/admin") {
                req.header("x-admin-key", ADMIN_KEY)
            } else {
                req.bearer_auth(&token)
            };
            if let Some(b) = &body {
                req = req.json(b);
            }
            let resp = req.send().await.unwrap();
            sent += 1;
            let status = resp.status().as_u16();
            let read = method == reqwest::Method::GET;
            let ok = if read {
                (200..300).contains(&status)
            } else {
                status < 400 || status == 404 || status == 409
            };
            if !ok {
                let text = resp.text().await.unwrap_or_default();
                problems.push(format!("{name} ({path}): {status} {text}"));
            }
        }
    }
    assert!(sent >= 60, "only {sent} operations sent");
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}
