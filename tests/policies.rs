//! The policy tooling against the real plugins: `larder check` validates every shipped
//! policy file against the routes, events and warm sources that actually exist, and
//! `larder explain` answers for a route of each built-in plugin.

use larder_testkit::server::{artifacts, run_larder, workspace_root};

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn shipped_policies_load_against_the_real_catalog() {
    let policies = workspace_root().join("policies");
    let out = run_larder(&["check", policies.to_str().unwrap()], &[]).unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stdout(&out).contains("ok"), "{}", stdout(&out));

    // Switching a built-in plugin off must not break the shipped policies.
    for plugin in ["BOOKING", "ALIEXPRESS"] {
        let var = format!("LARDER_PLUGINS__{plugin}__ENABLED");
        let out = run_larder(&["check"], &[(&var, "false")]).unwrap();
        assert!(out.status.success(), "{plugin} off: {}", stderr(&out));
    }
}

#[test]
fn the_example_plugins_policy_loads_with_the_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("larder.yaml");
    std::fs::write(
        &config,
        format!(
            "plugins:\n  hello:\n    library: {}\n",
            artifacts().cdylib("hello-plugin").display()
        ),
    )
    .unwrap();
    let example = workspace_root().join("examples/hello-plugin/policy.yaml");
    let out = run_larder(
        &[
            "check",
            "--config",
            config.to_str().unwrap(),
            example.to_str().unwrap(),
        ],
        &[],
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn three_mistakes_are_all_reported_with_positions_and_hints() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.yaml");
    std::fs::write(
        &file,
        "version: 1\nrules:\n  - name: slots\n    match: { plugin: booking, operation: available_slots }\n    key: \"booking:slots:{path.barber}:{query.date}\"\n    tll: 5m\n  - name: services\n    match: { plugin: booking, operation: list_services }\n    ttl: 5x\n",
    )
    .unwrap();
    let out = run_larder(&["check", file.to_str().unwrap()], &[]).unwrap();
    assert!(!out.status.success());
    let err = stderr(&out);
    let f = file.display().to_string();
    for expected in [
        format!("{f}:5:10: error: `{{path.barber}}`"),
        format!("{f}:6:5: error: unknown field `tll`"),
        format!("{f}:9:10: error: unknown duration unit `x`"),
    ] {
        assert!(err.contains(&expected), "missing `{expected}` in:\n{err}");
    }
    assert!(err.contains("did you mean `barber_id`?"), "{err}");
    assert!(err.contains("did you mean `ttl`?"), "{err}");
    assert!(err.contains("3 errors"), "{err}");
}

#[test]
fn explain_answers_for_a_route_of_each_built_in_plugin() {
    // `today` in conditions is read from the server's clock, started at a chosen instant.
    let slots_at = |clock_start: &str| {
        run_larder(
            &[
                "explain",
                "GET",
                "/api/v2/barbers/3/slots",
                "--query",
                "date=2031-06-02",
            ],
            &[("LARDER_SERVER__CLOCK_START", clock_start)],
        )
        .unwrap()
    };
    let out = slots_at("2031-05-30T12:00:00Z");
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("rule:    booking-slots"), "{text}");
    assert!(
        text.contains("key:     booking:slots:3:2031-06-02"),
        "{text}"
    );
    assert!(text.contains("slots:3:2031-06-02"), "{text}");
    assert!(text.contains("ttl:     5m (class booking_slots)"), "{text}");
    // Purged by tags: clients revalidate.
    assert!(
        text.contains("clients: Cache-Control: public, no-cache"),
        "{text}"
    );
    let text = stdout(&slots_at("2031-06-03T12:00:00Z"));
    assert!(
        text.contains("ttl:     1d (when `query.date < today`)"),
        "{text}"
    );

    let out = run_larder(
        &[
            "explain",
            "POST",
            "/api/v2/appointments",
            "--body",
            r#"{"barber_id": 3, "date": "2031-06-02"}"#,
        ],
        &[],
    )
    .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(
        text.contains("emits:   booking.appointment.created on success; its triggers purge tags [slots:{event.barber_id}:{event.date}, availability:{event.barber_id}:{event.week_start}]"),
        "{text}"
    );

    let out = run_larder(&["explain", "GET", "/api/categories"], &[]).unwrap();
    let text = stdout(&out);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(text.contains("aliexpress.list_categories"), "{text}");
    // Cached from the plugin's code, not by a rule on the route.
    assert!(
        text.contains("rule:    (none for the route: its handler caches from code)"),
        "{text}"
    );
    assert!(
        text.contains("by code: aliexpress-categories (ttl 2h, store Hybrid); key built by the plugin: `categories:{real|mock}:{language}`"),
        "{text}"
    );
}

#[test]
fn outside_the_repository_the_compiled_in_policies_apply() {
    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(&artifacts().larder)
        .arg("check")
        .current_dir(dir.path())
        .env_remove("LARDER_POLICIES")
        .env_remove("LARDER_CONFIG")
        // Every built-in plugin, analytics on its small dataset (its full one takes seconds).
        .envs(larder_testkit::server::ANALYTICS_SMALL.iter().copied())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let rules: usize = text
        .split(" rules")
        .next()
        .and_then(|s| s.rsplit('(').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    assert!(rules >= 10, "the shipped rules were not loaded: {text}");
}

#[test]
fn checking_explaining_and_documenting_leave_no_trace() {
    // Every built-in plugin on its default settings — analytics even on a PostgreSQL URL
    // nothing answers at — and each inspecting command: no database file is created, no
    // dataset generated, no server connected to.
    let dir = tempfile::tempdir().unwrap();
    for args in [
        &["check"][..],
        &["explain", "GET", "/api/v2/services"],
        &["openapi"],
    ] {
        let out = std::process::Command::new(&artifacts().larder)
            .args(args)
            .current_dir(dir.path())
            .env_remove("LARDER_CONFIG")
            .env("LARDER_POLICIES", workspace_root().join("policies"))
            .env(
                "LARDER_PLUGINS__ANALYTICS__SETTINGS__DATABASE_URL",
                "postgres://nobody@127.0.0.1:1/nothing",
            )
            .output()
            .unwrap();
        assert!(out.status.success(), "{args:?}: {}", stderr(&out));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}

/// The example configs under `examples/config/` pass `larder check` as they are in the
/// repository (the dynamic plugin's library is the one the workspace builds).
#[test]
fn the_example_configs_pass_check() {
    artifacts(); // builds the hello plugin the dynamic-plugin example loads
    let dir = workspace_root().join("examples/config");
    let mut configs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    configs.sort();
    assert!(configs.len() >= 5, "{configs:?}");
    for config in configs {
        let out = run_larder(&["check", "--config", config.to_str().unwrap()], &[]).unwrap();
        assert!(
            out.status.success(),
            "{}: {}{}",
            config.display(),
            stdout(&out),
            stderr(&out)
        );
        assert!(stdout(&out).contains(": ok"), "{}", stdout(&out));
    }
}
