//! The server on its embedded defaults and with config files: health, docs, admin auth,
//! config errors, graceful shutdown. Every test runs the real `larder` binary.

use std::time::{Duration, Instant};

use larder_testkit::server::{Larder, LarderOptions, artifacts, run_larder};
use serde_json::Value;

const WRITE_KEY: &str = "write-key-0123456789abcdef";
const READ_KEY: &str = "read-key-0123456789abcdef";

async fn get_json(url: &str) -> (u16, Value) {
    let resp = reqwest::get(url).await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn embedded_defaults_serve_health_ready_openapi_and_docs() {
    let larder = Larder::start_with(LarderOptions::default()).unwrap();

    let (status, body) = get_json(&larder.url("/health")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));
    let (status, body) = get_json(&larder.url("/ready")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ready")));

    let (status, doc) = get_json(&larder.url("/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for path in ["/health", "/ready", "/admin/plugins"] {
        assert!(
            paths.contains_key(path),
            "{path} missing from {:?}",
            paths.keys()
        );
    }
    assert_eq!(
        doc["paths"]["/admin/plugins"]["get"]["tags"][0].as_str(),
        Some("admin")
    );

    let yaml = reqwest::get(larder.url("/openapi.yaml")).await.unwrap();
    assert_eq!(yaml.status(), 200);
    let yaml = yaml.text().await.unwrap();
    assert!(yaml.starts_with("openapi: \"3."), "{}", &yaml[..80]);

    let docs = reqwest::get(larder.url("/docs")).await.unwrap();
    assert_eq!(docs.status(), 200);
    let html = docs.text().await.unwrap();
    assert!(html.to_lowercase().contains("swagger"), "not Swagger UI");

    let (status, body) = get_json(&larder.url("/no/such/route")).await;
    assert_eq!(status, 404);
    assert_eq!(body["error"], "not_found");
}

#[tokio::test]
async fn admin_needs_a_key_and_accepts_header_or_bearer() {
    let larder = Larder::start_with(LarderOptions {
        env: vec![
            ("LARDER_ADMIN_KEY".into(), WRITE_KEY.into()),
            ("LARDER_ADMIN_READ_KEY".into(), READ_KEY.into()),
        ],
        ..Default::default()
    })
    .unwrap();
    let client = reqwest::Client::new();
    let url = larder.url("/admin/plugins");

    let resp = client.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"], "unauthorized");

    let resp = client
        .get(&url)
        .header("x-admin-key", "not-a-key")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    let resp = client
        .get(&url)
        .header("x-admin-key", WRITE_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let resp = client.get(&url).bearer_auth(READ_KEY).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.unwrap().is_array());
}

#[test]
fn bad_config_reports_every_error_with_file_line_col() {
    let dir = tempfile_dir();
    let path = dir.join("larder.yaml");
    std::fs::write(
        &path,
        "listen: nowhere\nplugins:\n  helo:\n    prefix: shop/\n  booking:\n    settings:\n      timezon: UTC\n      dataset:\n        barbers: many\n",
    )
    .unwrap();
    let file = path.to_str().unwrap();

    for args in [["check", "--config", file], ["serve", "--config", file]] {
        let out = run_larder(&args, &[]).unwrap();
        assert!(!out.status.success(), "{args:?} must fail");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for expected in [
            format!("{file}:1:9: error: `nowhere` is not an address:port"),
            format!("{file}:3:3: error: unknown plugin `helo`"),
            format!("{file}:4:13: error: prefix `shop/` must start with `/`"),
            // A plugin's settings are checked against its schema, each field at its line.
            format!("{file}:7:7: error: plugin `booking` settings: unknown field `timezon`"),
            "= hint: did you mean `timezone`?".to_owned(),
            format!(
                "{file}:9:18: error: plugin `booking` settings `dataset.barbers`: expected an integer"
            ),
        ] {
            assert!(
                stderr.contains(&expected),
                "{args:?}: missing `{expected}` in:\n{stderr}"
            );
        }
    }

    std::fs::write(&path, "plugins:\n  x:\n    enabeld: true\n").unwrap();
    let out = run_larder(&["check", "--config", file], &[]).unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{file}:3:5: error: unknown field `enabeld`"))
            && stderr.contains("did you mean `enabled`?"),
        "{stderr}"
    );

    std::fs::write(&path, "listen: 127.0.0.1:0\n").unwrap();
    let out = run_larder(&["check", "--config", file], &[]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish_then_exits_zero() {
    let hello = artifacts().cdylib("hello-plugin");
    let mut larder = Larder::start(&format!(
        "plugins:\n  hello:\n    library: {}\n    settings: {{ delay_ms: 1500 }}\n",
        hello.display()
    ))
    .unwrap();
    let url = larder.url("/greetings/slow");
    let request = tokio::spawn(async move { reqwest::get(url).await.map(|r| r.status()) });

    // The handler logs when it starts; signal only once the request is in flight (the
    // plugin's start-up warming job computes other greetings first).
    let deadline = Instant::now() + Duration::from_secs(20);
    while !larder
        .logs()
        .lines()
        .any(|l| l.contains("hello: computing greeting") && l.contains("name=slow"))
    {
        assert!(
            Instant::now() < deadline,
            "request never reached the handler"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    larder.signal(libc_sigterm());

    let status = request.await.unwrap().expect("in-flight request completes");
    assert_eq!(status, 200);
    let exit = larder.wait_exit(Duration::from_secs(20)).unwrap();
    assert_eq!(exit.code(), Some(0), "logs:\n{}", larder.logs());
    assert!(larder.logs().contains("shutdown requested"));
}

fn libc_sigterm() -> i32 {
    15
}

fn tempfile_dir() -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("larder-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn a_reader_that_stops_early_is_not_an_error() {
    use std::io::Read as _;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(&artifacts().larder)
        .arg("openapi")
        .current_dir(dir.path())
        .env("LARDER_PLUGINS__ANALYTICS__ENABLED", "false")
        .env_remove("LARDER_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `larder openapi | head -c 16`: the document (over 200 KB, past any pipe buffer) is cut
    // off after a few bytes.
    let mut first = [0u8; 16];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{:?}: {stderr}", out.status);
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(String::from_utf8_lossy(&first).contains("openapi"));
}

/// An access line of the test's own requests (warming jobs' requests are logged too, inside
/// their job's span).
fn client_access(line: &str) -> bool {
    line.contains("larder::access")
        && line.contains("/api/v2/services")
        && !line.contains("cache.warm")
}

/// `telemetry.access_log` writes one line per request (method, path, status, cache
/// outcome, duration); logs into a pipe or a file carry no colour codes.
#[tokio::test]
async fn the_access_log_has_a_line_per_request_and_piped_logs_no_colour() {
    let larder = Larder::start_with(LarderOptions {
        config: Some(
            "telemetry: { access_log: true }\nplugins:\n  aliexpress: { enabled: false }\n  analytics: { enabled: false }\n".into(),
        ),
        ..LarderOptions::default()
    })
    .unwrap();
    let c = reqwest::Client::new();
    for _ in 0..2 {
        let r = c.get(larder.url("/api/v2/services")).send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let logs = loop {
        let logs = larder.logs();
        let lines = logs.lines().filter(|l| client_access(l)).count();
        if lines >= 2 || std::time::Instant::now() > deadline {
            break logs;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    let lines: Vec<&str> = logs.lines().filter(|l| client_access(l)).collect();
    assert_eq!(lines.len(), 2, "{logs}");
    assert!(
        lines[0].contains("method=GET") && lines[0].contains("status=200"),
        "{}",
        lines[0]
    );
    assert!(lines[1].contains("cache=\"hit;"), "{}", lines[1]);
    assert!(lines[1].contains("duration_ms="), "{}", lines[1]);
    assert!(
        !logs.contains('\u{1b}'),
        "colour codes in piped logs: {logs}"
    );
}

/// Reads from `stream` until the server closes it (EOF or reset) or `deadline` passes;
/// whether it closed.
async fn closed_by_server(stream: &mut tokio::net::TcpStream, deadline: Instant) -> bool {
    use tokio::io::AsyncReadExt;
    let mut buf = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, stream.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A 408 or similar before closing is fine: keep reading to the close.
            Ok(Ok(_)) => {}
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_while_others_are_served() {
    use tokio::io::AsyncWriteExt;
    let larder = Larder::start("server:\n  header_read_timeout_seconds: 1\n").unwrap();
    let addr = larder.addr;
    // 100 idle connections that never send a byte, and a slowloris client that sends one
    // header line every 300 ms and never ends its head.
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    let mut slow = tokio::net::TcpStream::connect(addr).await.unwrap();
    slow.write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let trickle = tokio::spawn(async move {
        for i in 0.. {
            // The client's own pace, not a wait for the server.
            tokio::time::sleep(Duration::from_millis(300)).await;
            if slow
                .write_all(format!("X-Slow-{i}: 1\r\n").as_bytes())
                .await
                .is_err()
            {
                return (i, started.elapsed());
            }
        }
        unreachable!()
    });
    // Meanwhile a well-behaved client is answered at once.
    let (status, body) = get_json(&larder.url("/health")).await;
    assert_eq!((status, body["status"].as_str()), (200, Some("ok")));

    let deadline = Instant::now() + Duration::from_secs(10);
    for conn in &mut idle {
        assert!(
            closed_by_server(conn, deadline).await,
            "an idle connection stayed open"
        );
    }
    let (lines, after) = tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("the slow client was cut off")
        .unwrap();
    // Cut off for its head taking too long, though it kept sending.
    assert!(lines >= 2, "{lines} lines in {after:?}");
    let (status, _) = get_json(&larder.url("/health")).await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn at_the_connection_cap_new_clients_wait_for_a_free_slot() {
    let larder =
        Larder::start("server:\n  max_connections: 4\n  header_read_timeout_seconds: 60\n")
            .unwrap();
    let addr = larder.addr;
    let mut held = Vec::new();
    for _ in 0..4 {
        held.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    // The kernel completes the handshake (backlog), the server does not take the request.
    let url = larder.url("/health");
    let waiting = tokio::spawn(async move {
        let c = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .build()
            .unwrap();
        c.get(url).send().await.map(|r| r.status().as_u16())
    });
    let until = Instant::now() + Duration::from_millis(500);
    while Instant::now() < until {
        assert!(!waiting.is_finished(), "answered past the cap");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // One held connection closes: the waiting client gets its slot and its answer.
    drop(held.pop());
    let status = tokio::time::timeout(Duration::from_secs(10), waiting)
        .await
        .expect("served once a slot freed")
        .unwrap()
        .unwrap();
    assert_eq!(status, 200);
    assert!(
        larder.logs().contains("max_connections=4"),
        "{}",
        larder.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chunked_body_over_the_limit_is_refused_on_routes_without_a_rule() {
    let larder = Larder::start_with(LarderOptions {
        config: Some(format!(
            "limits: {{ request_body_bytes: 65536 }}\nsecurity:\n  admin_keys: [ {{ key: \"{WRITE_KEY}\", role: write }} ]\n"
        )),
        ..LarderOptions::default()
    })
    .unwrap();
    // An AliExpress route (cached from code: no HTTP rule reads the body first) and an
    // admin route, each sent 64 MiB in 1 MiB chunks with no Content-Length.
    for (path, key) in [
        ("/api/products/search", ""),
        ("/admin/cache/invalidate", WRITE_KEY),
    ] {
        let status = chunked_post(larder.addr, path, key, 64).await;
        assert_eq!(
            status, 413,
            "{path}: a 64 MiB chunked body answered {status}"
        );
    }
    let (status, _) = get_json(&larder.url("/health")).await;
    assert_eq!(status, 200);
}

/// Sends `POST path` with a chunked body of `mib` 1 MiB chunks (stopping when the server
/// stops reading) and returns the answer's status.
async fn chunked_post(addr: std::net::SocketAddr, path: &str, admin_key: &str, mib: usize) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = stream.into_split();
    let key = if admin_key.is_empty() {
        String::new()
    } else {
        format!("x-admin-key: {admin_key}\r\n")
    };
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{key}Transfer-Encoding: chunked\r\n\r\n"
    );
    let writer = tokio::spawn(async move {
        wr.write_all(head.as_bytes()).await?;
        let chunk = vec![b' '; 1 << 20];
        for _ in 0..mib {
            wr.write_all(b"100000\r\n").await?;
            wr.write_all(&chunk).await?;
            wr.write_all(b"\r\n").await?;
        }
        wr.write_all(b"0\r\n\r\n").await
    });
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tokio::time::timeout(Duration::from_secs(30), rd.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => panic!("no answer to the chunked POST of {path}"),
        }
    }
    writer.abort();
    let text = String::from_utf8_lossy(&answer);
    text.split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{path}: no status in {text:?}"))
}
