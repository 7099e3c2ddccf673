//! Dynamic plugins: a real `.so` built from `examples/hello-plugin` and the fixtures under
//! `tests/plugins/`, loaded by the real binary.

use std::time::{Duration, Instant};

use larder_testkit::server::{Larder, artifacts};
use serde_json::{Value, json};

fn hello_config(prefix: &str) -> String {
    format!(
        "plugins:\n  hello:\n    library: {}\n    prefix: {prefix}\n    settings: {{ default_greeting: Hi, delay_ms: 30 }}\n",
        artifacts().cdylib("hello-plugin").display()
    )
}

/// `GET /hello/languages`, whose `cached` says whether `get_or_load` found it.
async fn languages(larder: &Larder) -> Value {
    reqwest::get(larder.url("/hello/languages"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Two GETs of `path`: the first is stored, the second is a hit.
async fn stored_then_hit(larder: &Larder, path: &str) {
    let c = reqwest::Client::new();
    let status = |r: &reqwest::Response| r.headers()["cache-status"].to_str().unwrap().to_owned();
    let first = c.get(larder.url(path)).send().await.unwrap();
    assert!(
        status(&first).contains("stored"),
        "{path}: {}",
        status(&first)
    );
    let again = c.get(larder.url(path)).send().await.unwrap();
    assert!(status(&again).contains("hit"), "{path}: {}", status(&again));
}

#[tokio::test]
async fn hello_plugin_is_loaded_documented_and_answers() {
    let larder = Larder::start(&hello_config("/hello")).unwrap();
    let client = reqwest::Client::new();

    let doc: Value = client
        .get(larder.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let op = &doc["paths"]["/hello/greetings/{name}"];
    assert_eq!(op["get"]["operationId"], "get_greeting", "{doc}");
    assert_eq!(op["put"]["operationId"], "put_greeting");
    assert_eq!(op["get"]["tags"], json!(["hello"]));
    assert!(
        doc["tags"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["name"] == "hello")
    );
    assert!(doc["components"]["schemas"]["NewGreeting"].is_object());

    // The handler sleeps with tokio inside the library: timers work across the boundary.
    let started = Instant::now();
    let resp = client
        .get(larder.url("/hello/greetings/ada"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(started.elapsed() >= Duration::from_millis(30));
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"name": "ada", "message": "Hi, ada!", "custom": false})
    );

    let resp = client
        .put(larder.url("/hello/greetings/ada"))
        .json(&json!({"greeting": "Good morning"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap()["message"],
        "Good morning, ada!"
    );

    // Typed validation happens in the plugin and answers 400 with a JSON body naming the field.
    let resp = client
        .put(larder.url("/hello/greetings/ada"))
        .json(&json!({"greeting": ""}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["message"].as_str().unwrap().contains("greeting"),
        "{body}"
    );

    // The plugin's tracing events reach the host's log inside the request span, and the
    // task it spawned through the context ran.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let logs = larder.logs();
        if logs
            .contains("request{method=GET path=/hello/greetings/ada route=/hello/greetings/{name}}")
            && logs.contains("hello: computing greeting")
            && logs.contains("hello plugin started")
        {
            break;
        }
        assert!(Instant::now() < deadline, "plugin logs missing:\n{logs}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let line = larder
        .logs()
        .lines()
        // The warming job's greetings are logged too, inside its span.
        .find(|l| l.contains("hello: computing greeting") && l.contains("name=ada"))
        .unwrap()
        .to_owned();
    assert!(
        line.contains(
            "request{method=GET path=/hello/greetings/ada route=/hello/greetings/{name}}"
        ),
        "{line}"
    );
}

#[test]
fn a_library_with_a_mismatched_declaration_is_refused_by_name() {
    let bad = artifacts().cdylib("bad-abi-plugin");
    let err = Larder::start(&format!(
        "plugins:\n  bad:\n    library: {}\n",
        bad.display()
    ))
    .err()
    .expect("the server must refuse to start");
    let text = err.to_string();
    assert!(text.contains("refusing plugin library"), "{text}");
    assert!(
        text.contains("plugin API version: library has `0.0.1+api.0`"),
        "{text}"
    );
    assert!(text.contains("type fingerprint"), "{text}");
    assert!(text.contains(":3:14: error:"), "position missing: {text}");
}

#[tokio::test]
async fn a_panicking_handler_is_a_500_and_the_server_keeps_serving() {
    let faulty = artifacts().cdylib("faulty-plugin");
    let larder = Larder::start(&format!(
        "plugins:\n  faulty:\n    library: {}\n    prefix: /faulty\n",
        faulty.display()
    ))
    .unwrap();
    for _ in 0..3 {
        let resp = reqwest::get(larder.url("/faulty/boom")).await.unwrap();
        assert_eq!(resp.status(), 500);
        let body: Value = resp.json().await.unwrap();
        assert_eq!(body["error"], "internal_error");
        let resp = reqwest::get(larder.url("/faulty/ok")).await.unwrap();
        assert_eq!(resp.status(), 200);
        assert_eq!(resp.text().await.unwrap(), "still here");
    }
    let resp = reqwest::get(larder.url("/health")).await.unwrap();
    assert_eq!(resp.status(), 200);
}

/// A plugin's own policy applies with nothing copied into the policy folder (here the
/// repository's, which names only the built-in plugins); once the folder names the plugin,
/// the folder's rules replace it whole.
#[tokio::test]
async fn a_plugins_shipped_policy_applies_until_the_folder_names_the_plugin() {
    let larder = Larder::start(&hello_config("/hello")).unwrap();
    stored_then_hit(&larder, "/hello/greetings/bob").await;

    let folder = tempfile::tempdir().unwrap();
    std::fs::write(
        folder.path().join("mine.yaml"),
        "version: 1\nrules:\n  - name: my-greeting\n    match: { plugin: hello, operation: get_greeting }\n    ttl: 1m\n",
    )
    .unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    let config = elsewhere.path().join("larder.yaml");
    std::fs::write(&config, hello_config("/hello")).unwrap();
    let policies = folder.path().to_str().unwrap().to_owned();
    let out = larder_testkit::server::run_larder(
        &[
            "explain",
            "GET",
            "/hello/greetings/bob",
            "--config",
            config.to_str().unwrap(),
        ],
        &[("LARDER_POLICIES", policies.as_str())],
    )
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("rule:    my-greeting"), "{text}");
    assert!(
        !text.contains("hello-greetings"),
        "the shipped policy still loaded: {text}"
    );
}

/// The example shows the rest of the API a plugin has: its warm source runs at start
/// through the policy it ships, `GET /languages` caches a value from code under a rule
/// named in that policy, and its `http_defaults` allow a local front end (CORS).
#[tokio::test]
async fn the_example_warms_caches_from_code_and_allows_its_front_end() {
    const KEY: &str = "read-key-0123456789abcdef";
    let larder =
        larder_testkit::server::Larder::start_with(larder_testkit::server::LarderOptions {
            config: Some(hello_config("/hello")),
            env: vec![("LARDER_ADMIN_READ_KEY".into(), KEY.into())],
            ..Default::default()
        })
        .unwrap();
    let c = reqwest::Client::new();
    let job = larder
        .warm_job_after_first_run(KEY, "hello-greetings", Duration::from_secs(10))
        .await;
    assert_eq!(job["last_entries"], 2, "{job}");
    let r = c
        .get(larder.url("/hello/greetings/world"))
        .send()
        .await
        .unwrap();
    let status = r.headers()["cache-status"].to_str().unwrap().to_owned();
    assert!(status.contains("hit"), "warmed, yet {status}");

    let first = languages(&larder).await;
    assert_eq!(first["cached"], false, "{first}");
    assert_eq!(first["languages"].as_array().unwrap().len(), 4);
    let second = languages(&larder).await;
    assert_eq!(second["cached"], true, "{second}");

    let preflight = c
        .request(reqwest::Method::OPTIONS, larder.url("/hello/greetings/ada"))
        .header("origin", "http://localhost:3000")
        .header("access-control-request-method", "GET")
        .send()
        .await
        .unwrap();
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "http://localhost:3000"
    );
}

/// The block of `text` that follows `heading` and opens with ```` ```lang ````.
fn block_after<'a>(text: &'a str, heading: &str, lang: &str) -> &'a str {
    let from = text
        .find(heading)
        .unwrap_or_else(|| panic!("no `{heading}`"));
    let open = format!("```{lang}\n");
    let start = from + text[from..].find(&open).expect("a code block") + open.len();
    let end = start + text[start..].find("```").expect("a closed block");
    &text[start..end]
}

/// `examples/hello-plugin/README.md` step by step: its build command is the one the tests
/// build with, its config passes `larder check` as written (the library path relative to
/// the config file, next to `target/`), and the server answers its requests as its
/// comments say.
#[tokio::test]
async fn the_hello_readme_works_as_written() {
    let readme = std::fs::read_to_string(
        larder_testkit::server::workspace_root().join("examples/hello-plugin/README.md"),
    )
    .unwrap();
    // 3. Build: the testkit builds these two packages (and the test fixtures) in one go.
    assert!(
        block_after(&readme, "## 3.", "sh").contains("cargo build -p larder -p hello-plugin"),
        "the README's build command changed; update the testkit's"
    );
    let art = artifacts();

    // 4. The config, written next to a `target/` like the README's, checked as is.
    let config = block_after(&readme, "## 4.", "yaml");
    let dir = tempfile::tempdir().unwrap();
    let target = art.dir.parent().unwrap();
    std::os::unix::fs::symlink(target, dir.path().join("target")).unwrap();
    let file = dir.path().join("larder.yaml");
    std::fs::write(&file, config).unwrap();
    let out =
        larder_testkit::server::run_larder(&["check", "--config", file.to_str().unwrap()], &[])
            .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // 5. Served (the same config, its library path resolved as the config file does).
    let served = config.replace(
        "target/debug/libhello_plugin.so",
        art.cdylib("hello-plugin").to_str().unwrap(),
    );
    let larder = Larder::start(&served).unwrap();
    stored_then_hit(&larder, "/hello/greetings/ada").await;
    let c = reqwest::Client::new();
    assert_eq!(languages(&larder).await["cached"], false);
    assert_eq!(languages(&larder).await["cached"], true);
    let put = c
        .put(larder.url("/hello/greetings/ada"))
        .json(&json!({"greeting": "Good morning"}))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let after: Value = c
        .get(larder.url("/hello/greetings/ada"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        after["message"], "Good morning, ada!",
        "the PUT purged the greeting"
    );
}
