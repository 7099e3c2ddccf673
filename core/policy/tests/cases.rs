//! Data-driven policy tests: one folder per case under `tests/cases/`.
//!
//! A case folder holds:
//! - `policy.yaml` (or several `*.policy.yaml` files): the policies under test;
//! - `catalog.yaml` (optional): the routes, events and warm sources the server offers;
//! - `expect.yaml`: requests with the key/TTL/tags they must get, route lookups, events,
//!   warming expansions and compression decisions; or
//! - `errors.txt`: the exact diagnostics loading must produce (for invalid policies).
//!
//! Run one case with `cargo nextest run -p larder-policy cases`; a failure names the case
//! and the item.

use larder_policy::{Catalog, Clock, Duration, PolicySet, Request};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Expect {
    /// Evaluation instant, RFC 3339.
    now: Option<String>,
    #[serde(default)]
    requests: Vec<RequestCase>,
    #[serde(default)]
    routes: Vec<RouteCase>,
    #[serde(default)]
    events: Vec<EventCase>,
    #[serde(default)]
    warming: Vec<WarmCase>,
    #[serde(default)]
    compression: Vec<CompressionCase>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestCase {
    /// `METHOD /path?query`.
    request: String,
    #[serde(default)]
    headers: BTreeMap<String, String>,
    body: Option<serde_json::Value>,
    tenant: Option<String>,
    user: Option<String>,
    /// The handler's `Cache-Control: max-age`.
    origin_max_age: Option<String>,
    /// Expected rule name; `~` for "no rule".
    rule: Option<Option<String>>,
    key: Option<String>,
    /// Another request that must produce the same key.
    same_key_as: Option<String>,
    ttl: Option<String>,
    /// Inclusive bounds for a jittered TTL.
    ttl_between: Option<(String, String)>,
    tags: Option<Vec<String>>,
    /// Expected skip reason: `disabled`, `method`, `no_principal`, `bypass`.
    skip: Option<String>,
    invalidate: Option<InvalidateExpect>,
    /// Substrings the `explain` text must contain.
    #[serde(default)]
    explain_contains: Vec<String>,
}

#[derive(Deserialize, Default, Debug, PartialEq)]
#[serde(deny_unknown_fields)]
struct InvalidateExpect {
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    keys: Vec<String>,
    #[serde(default)]
    patterns: Vec<String>,
    #[serde(default)]
    all: bool,
    #[serde(default)]
    skipped: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RouteCase {
    /// `plugin.operation`.
    route: String,
    rule: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventCase {
    /// `plugin.event`.
    event: String,
    fields: serde_json::Value,
    invalidate: InvalidateExpect,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct WarmCase {
    job: String,
    at_startup: Option<bool>,
    every: Option<String>,
    concurrency: Option<u32>,
    batch_size: Option<u32>,
    /// `plugin.source` for plugin-sourced jobs.
    source: Option<String>,
    /// Expanded requests as `METHOD /path?query` (query sorted as written), with ` body=JSON`
    /// appended when there is a body.
    requests: Option<Vec<String>>,
    batches: Option<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CompressionCase {
    /// Rule name; absent for the global settings.
    rule: Option<String>,
    content_type: String,
    size: u64,
    compress: bool,
    algorithms: Option<Vec<String>>,
    level: Option<u32>,
    accept_encoding: Option<String>,
    negotiated: Option<Option<String>>,
}

fn case_dirs() -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)
        .expect("tests/cases exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .collect();
    dirs.sort();
    dirs
}

fn policy_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().to_string();
            n == "policy.yaml" || n.ends_with(".policy.yaml")
        })
        .collect();
    v.sort();
    v
}

fn build_request(rc: &RequestCase) -> Request {
    let (method, target) = rc
        .request
        .split_once(' ')
        .expect("request is `METHOD /path`");
    let mut r = Request::new(method, target);
    for (k, v) in &rc.headers {
        r = r.with_header(k, v);
    }
    r.body = rc.body.clone();
    r.tenant = rc.tenant.clone();
    r.user = rc.user.clone();
    r
}

fn dur(s: &str) -> Duration {
    s.parse()
        .unwrap_or_else(|e| panic!("bad duration `{s}` in expect.yaml: {e}"))
}

/// Fills path params, plugin and operation the way the HTTP layer would.
fn routed(set: &PolicySet, mut r: Request) -> Request {
    if let Some(m) = set.match_request(&r.method, &r.path) {
        r.path_params = m.params;
        if let Some(route) = m.route {
            r.plugin = Some(route.plugin.clone());
            r.operation = Some(route.operation.clone());
        }
    }
    r
}

fn run_case(dir: &Path) -> Result<(), String> {
    let name = dir.file_name().unwrap().to_string_lossy().to_string();
    let catalog: Option<Catalog> = std::fs::read_to_string(dir.join("catalog.yaml"))
        .ok()
        .map(|t| serde_saphyr::from_str(&t).map_err(|e| format!("catalog.yaml: {e}")))
        .transpose()?;
    let files = policy_files(dir);
    // Diagnostics name files relative to the case folder, so expectations are portable.
    let sources: Vec<(PathBuf, String)> = files
        .iter()
        .map(|f| {
            (
                PathBuf::from(f.file_name().unwrap()),
                std::fs::read_to_string(f).unwrap(),
            )
        })
        .collect();
    let loaded = PolicySet::load_sources(&sources, catalog.as_ref());
    let errors_path = dir.join("errors.txt");
    if errors_path.exists() {
        let want = std::fs::read_to_string(&errors_path).unwrap();
        let got = match &loaded {
            Ok(_) => return Err(format!("{name}: loaded, but errors.txt expects failures")),
            Err(d) => d.to_string(),
        };
        if got.trim_end() != want.trim_end() {
            if std::env::var_os("LARDER_UPDATE_CASES").is_some() {
                std::fs::write(&errors_path, format!("{}\n", got.trim_end())).unwrap();
                return Ok(());
            }
            return Err(format!(
                "{name}: diagnostics differ (LARDER_UPDATE_CASES=1 rewrites errors.txt)\n--- want\n{want}\n--- got\n{got}"
            ));
        }
        return Ok(());
    }
    let set = loaded.map_err(|d| format!("{name}: policies did not load:\n{d}"))?;
    let expect: Expect = serde_saphyr::from_str(
        &std::fs::read_to_string(dir.join("expect.yaml"))
            .map_err(|e| format!("{name}: expect.yaml: {e}"))?,
    )
    .map_err(|e| format!("{name}: expect.yaml: {e}"))?;
    let clock = expect
        .now
        .as_deref()
        .map(|s| Clock::parse(s).expect("`now` is RFC 3339"))
        .unwrap_or(Clock::at(1_736_510_400)); // 2025-01-10T12:00:00Z

    let mut failures = Vec::new();
    let mut check = |what: String, ok: bool| {
        if !ok {
            failures.push(what);
        }
    };

    for rc in &expect.requests {
        let req = routed(&set, build_request(rc));
        let m = set.match_request(&req.method, &req.path);
        let label = format!("{name}: {}", rc.request);
        if let Some(want) = &rc.rule {
            let got = m.as_ref().map(|m| m.rule.name.clone());
            check(
                format!("{label}: rule {got:?}, want {want:?}"),
                got == *want,
            );
        }
        let Some(m) = m else { continue };
        let rule = &m.rule;
        let decision = rule.decide(&req, clock);
        if let Some(want) = &rc.skip {
            let got = decision
                .as_ref()
                .err()
                .map(|s| format!("{s:?}").to_lowercase());
            let want_norm = want.replace('_', "");
            check(
                format!("{label}: skip {got:?}, want {want}"),
                got.as_deref() == Some(want_norm.as_str()),
            );
        }
        let key = rule.key(&req).ok();
        if let Some(want) = &rc.key {
            check(
                format!("{label}: key {key:?}, want {want:?}"),
                key.as_deref() == Some(want.as_str()),
            );
        }
        if let Some(other) = &rc.same_key_as {
            let (om, ot) = other.split_once(' ').unwrap();
            let mut o = Request::new(om, ot);
            if other.contains(" body=") {
                let (t, b) = ot.split_once(" body=").unwrap();
                o = Request::new(om, t).with_body(serde_json::from_str(b).unwrap());
            }
            let o = routed(&set, o);
            let okey = set
                .match_request(&o.method, &o.path)
                .and_then(|m| m.rule.key(&o).ok());
            check(
                format!("{label}: key {key:?} differs from {other}'s {okey:?}"),
                key.is_some() && key == okey,
            );
        }
        let origin = rc.origin_max_age.as_deref().map(dur);
        let ttl = rule.ttl(&req, clock, origin, key.as_deref().unwrap_or(""));
        if let Some(want) = &rc.ttl {
            check(
                format!("{label}: ttl {} ({}), want {want}", ttl.ttl(), ttl.reason),
                ttl.ttl() == dur(want),
            );
        }
        if let Some((lo, hi)) = &rc.ttl_between {
            let t = ttl.ttl();
            check(
                format!("{label}: ttl {t} not within [{lo}, {hi}]"),
                t >= dur(lo) && t <= dur(hi),
            );
        }
        if let Some(want) = &rc.tags {
            let got = rule.tags(&req, clock);
            check(
                format!("{label}: tags {got:?}, want {want:?}"),
                got == *want,
            );
        }
        if let Some(want) = &rc.invalidate {
            let got = rule.invalidation(&req).unwrap_or_default();
            let got = InvalidateExpect {
                tags: got.tags,
                keys: got.keys,
                patterns: got.patterns,
                all: got.all,
                skipped: got.skipped,
            };
            check(
                format!("{label}: invalidation {got:?}, want {want:?}"),
                got == *want,
            );
        }
        if !rc.explain_contains.is_empty() {
            let text = set.explain(&build_request(rc), clock).to_string();
            for s in &rc.explain_contains {
                check(
                    format!("{label}: explain lacks {s:?}:\n{text}"),
                    text.contains(s.as_str()),
                );
            }
        }
    }

    for rc in &expect.routes {
        let (p, o) = rc.route.split_once('.').unwrap();
        let got = set.rule_for_route(p, o).map(|r| r.name.clone());
        check(
            format!(
                "{name}: route {}: rule {got:?}, want {:?}",
                rc.route, rc.rule
            ),
            got == rc.rule,
        );
    }

    for ev in &expect.events {
        let (p, e) = ev.event.split_once('.').unwrap();
        let got = set.on_event(p, e, &ev.fields);
        let got = InvalidateExpect {
            tags: got.tags,
            keys: got.keys,
            patterns: got.patterns,
            all: got.all,
            skipped: got.skipped,
        };
        check(
            format!(
                "{name}: event {}: {got:?}, want {:?}",
                ev.event, ev.invalidate
            ),
            got == ev.invalidate,
        );
    }

    for wc in &expect.warming {
        let Some(job) = set.warm_job(&wc.job) else {
            check(format!("{name}: no warming job `{}`", wc.job), false);
            continue;
        };
        let label = format!("{name}: job {}", wc.job);
        if let Some(v) = wc.at_startup {
            check(
                format!("{label}: at_startup {}", job.at_startup),
                job.at_startup == v,
            );
        }
        if let Some(v) = &wc.every {
            check(
                format!("{label}: every {:?}", job.every),
                job.every == Some(dur(v)),
            );
        }
        if let Some(v) = wc.concurrency {
            check(
                format!("{label}: concurrency {}", job.concurrency),
                job.concurrency == v,
            );
        }
        if let Some(v) = wc.batch_size {
            check(
                format!("{label}: batch_size {}", job.batch_size),
                job.batch_size == v,
            );
        }
        if let Some(v) = &wc.source {
            let got = match &job.source {
                larder_policy::WarmSource::Plugin { plugin, name } => {
                    Some(format!("{plugin}.{name}"))
                }
                _ => None,
            };
            check(
                format!("{label}: source {got:?}"),
                got.as_deref() == Some(v.as_str()),
            );
        }
        if let Some(want) = &wc.requests {
            let got: Vec<String> = job
                .expand(clock)
                .iter()
                .map(|r| {
                    let mut s = format!("{} {}", r.method, r.path);
                    if !r.query.is_empty() {
                        let q: Vec<String> =
                            r.query.iter().map(|(k, v)| format!("{k}={v}")).collect();
                        s.push('?');
                        s.push_str(&q.join("&"));
                    }
                    if let Some(b) = &r.body {
                        s.push_str(&format!(" body={b}"));
                    }
                    s
                })
                .collect();
            check(
                format!("{label}: requests\n got {got:#?}\nwant {want:#?}"),
                got == *want,
            );
            check(
                format!("{label}: request_count {}", job.request_count()),
                job.request_count() == want.len(),
            );
        }
        if let Some(n) = wc.batches {
            let got = job.batches(clock).len();
            check(format!("{label}: {got} batches, want {n}"), got == n);
        }
    }

    for cc in &expect.compression {
        let c = match &cc.rule {
            Some(r) => set.rule(r).expect("rule exists").compression.clone(),
            None => set.compression().clone(),
        };
        let label = format!(
            "{name}: compression {:?} {} {}",
            cc.rule, cc.content_type, cc.size
        );
        let got = c.should_compress(&cc.content_type, cc.size);
        check(format!("{label}: compress {got}"), got == cc.compress);
        if let Some(a) = &cc.algorithms {
            let got: Vec<&str> = c.algorithms.iter().map(|a| a.token()).collect();
            check(format!("{label}: algorithms {got:?}"), got == *a);
        }
        if let Some(l) = cc.level {
            check(format!("{label}: level {}", c.level), c.level == l);
        }
        if let (Some(ae), Some(want)) = (&cc.accept_encoding, &cc.negotiated) {
            let got = c.negotiate(ae).map(|a| a.token().to_owned());
            check(
                format!("{label}: negotiated {got:?} for {ae:?}"),
                got == *want,
            );
        }
    }

    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("\n"))
    }
}

#[test]
fn cases() {
    let dirs = case_dirs();
    assert!(
        dirs.len() >= 10,
        "expected the case folders under tests/cases"
    );
    let failures: Vec<String> = dirs.iter().filter_map(|d| run_case(d).err()).collect();
    assert!(
        failures.is_empty(),
        "{} case(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}
