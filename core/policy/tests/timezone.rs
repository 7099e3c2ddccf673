//! `today` in the zone a rule names, its plugin runs in, or `defaults` sets — checked on
//! both sides of midnight in New York and in UTC, at instants the test chooses.

use larder_policy::{Catalog, Clock, Duration, PolicySet, Request};
use std::path::PathBuf;

/// 2026-12-01T23:30:00Z: 18:30 on 12-01 in New York, the last half hour of 12-01 in UTC.
const BEFORE_UTC_MIDNIGHT: i64 = 1_796_167_800;
/// 2026-12-02T00:30:00Z: 19:30 on 12-01 in New York (the seed's evening), 12-02 in UTC.
const AFTER_UTC_MIDNIGHT: i64 = BEFORE_UTC_MIDNIGHT + 3_600;
/// 2026-12-02T04:30:00Z: 23:30 on 12-01 in New York.
const BEFORE_NY_MIDNIGHT: i64 = BEFORE_UTC_MIDNIGHT + 5 * 3_600;
/// 2026-12-02T05:30:00Z: 00:30 on 12-02 in New York.
const AFTER_NY_MIDNIGHT: i64 = BEFORE_NY_MIDNIGHT + 3_600;

fn catalog() -> Catalog {
    Catalog::default()
        .route("shop", "slots", "GET", "/shop/slots")
        .route("lab", "runs", "GET", "/lab/runs")
        .time_zone("shop", "America/New_York")
}

const POLICY: &str = r#"version: 1
rules:
  - name: shop-slots
    match: { plugin: shop, operation: slots }
    key: "slots:{query.date}"
    ttl:
      duration: 5m
      when:
        - { if: "query.date < today", ttl: 1d }
        - { if: "query.date == today", ttl: 1m }
  - name: lab-runs
    match: { plugin: lab, operation: runs }
    key: "runs:{query.date}"
    ttl:
      duration: 5m
      when:
        - { if: "query.date < today", ttl: 1d }
        - { if: "query.date == today", ttl: 1m }
"#;

fn load(policy: &str, catalog: &Catalog) -> Result<PolicySet, String> {
    PolicySet::load_sources(
        &[(PathBuf::from("zones.yaml"), policy.to_owned())],
        Some(catalog),
    )
    .map_err(|d| d.to_string())
}

fn ttl(set: &PolicySet, path: &str, at: i64) -> Duration {
    let m = set.match_request("GET", path.split('?').next().unwrap());
    let rule = m.expect("a rule").rule;
    let req = Request::new("GET", path);
    rule.ttl(&req, Clock::at(at), None, "k").base
}

const ONE_MINUTE: Duration = Duration::from_secs(60);
const ONE_DAY: Duration = Duration::from_secs(86_400);
const FIVE_MINUTES: Duration = Duration::from_secs(300);

/// The shop's rule reads New York's date, the lab's UTC's: across UTC midnight only the
/// lab's today moves; across New York's midnight only the shop's does.
#[test]
fn today_moves_at_midnight_in_the_rules_zone() {
    let set = load(POLICY, &catalog()).unwrap();
    let shop = |date: &str, at| ttl(&set, &format!("/shop/slots?date={date}"), at);
    let lab = |date: &str, at| ttl(&set, &format!("/lab/runs?date={date}"), at);

    // Before UTC midnight both days are 12-01.
    assert_eq!(shop("2026-12-01", BEFORE_UTC_MIDNIGHT), ONE_MINUTE);
    assert_eq!(lab("2026-12-01", BEFORE_UTC_MIDNIGHT), ONE_MINUTE);
    assert_eq!(shop("2026-12-02", BEFORE_UTC_MIDNIGHT), FIVE_MINUTES);

    // 19:30 in New York: the shop's today is still 12-01 (the seed's bug gave it a day),
    // and its tomorrow is not yet today (the bug gave it a minute). UTC has moved on.
    assert_eq!(shop("2026-12-01", AFTER_UTC_MIDNIGHT), ONE_MINUTE);
    assert_eq!(shop("2026-12-02", AFTER_UTC_MIDNIGHT), FIVE_MINUTES);
    assert_eq!(lab("2026-12-01", AFTER_UTC_MIDNIGHT), ONE_DAY);
    assert_eq!(lab("2026-12-02", AFTER_UTC_MIDNIGHT), ONE_MINUTE);

    // Last minutes of 12-01 in New York, then 12-02 begins there too.
    assert_eq!(shop("2026-12-01", BEFORE_NY_MIDNIGHT), ONE_MINUTE);
    assert_eq!(shop("2026-12-01", AFTER_NY_MIDNIGHT), ONE_DAY);
    assert_eq!(shop("2026-12-02", AFTER_NY_MIDNIGHT), ONE_MINUTE);
    assert_eq!(lab("2026-12-02", AFTER_NY_MIDNIGHT), ONE_MINUTE);
}

/// A rule's own `timezone` beats its plugin's, which beats `defaults.timezone`; without
/// any, dates are UTC's. `larder explain` says which date `today` is and where the zone
/// came from.
#[test]
fn the_rule_then_the_plugin_then_defaults_choose_the_zone() {
    let policy = r#"version: 1
defaults: { timezone: Asia/Tokyo }
rules:
  - name: shop-slots
    match: { plugin: shop, operation: slots }
    timezone: UTC
    key: "slots:{query.date}"
    ttl: { duration: 5m, when: [ { if: "query.date == today", ttl: 1m } ] }
  - name: lab-runs
    match: { plugin: lab, operation: runs }
    key: "runs:{query.date}"
    ttl: { duration: 5m, when: [ { if: "query.date == today", ttl: 1m } ] }
"#;
    let set = load(policy, &catalog()).unwrap();
    // 23:30 UTC on 12-01 is 08:30 on 12-02 in Tokyo.
    assert_eq!(
        ttl(&set, "/shop/slots?date=2026-12-01", BEFORE_UTC_MIDNIGHT),
        ONE_MINUTE
    );
    assert_eq!(
        ttl(&set, "/lab/runs?date=2026-12-02", BEFORE_UTC_MIDNIGHT),
        ONE_MINUTE
    );

    let explain = |path: &str| {
        set.explain(&Request::new("GET", path), Clock::at(BEFORE_UTC_MIDNIGHT))
            .to_string()
    };
    let text = explain("/shop/slots?date=2026-12-01");
    assert!(
        text.contains("today:   2026-12-01 in UTC (from rule)"),
        "{text}"
    );
    let text = explain("/lab/runs?date=2026-12-01");
    assert!(
        text.contains("today:   2026-12-02 in Asia/Tokyo (from defaults)"),
        "{text}"
    );

    // Without `defaults`, the plugin's zone; a plugin with none is in UTC.
    let set = load(POLICY, &catalog()).unwrap();
    let text = set
        .explain(
            &Request::new("GET", "/shop/slots?date=2026-12-01"),
            Clock::at(AFTER_UTC_MIDNIGHT),
        )
        .to_string();
    assert!(
        text.contains("today:   2026-12-01 in America/New_York (from plugin shop)"),
        "{text}"
    );
    let text = set
        .explain(
            &Request::new("GET", "/lab/runs?date=2026-12-01"),
            Clock::at(AFTER_UTC_MIDNIGHT),
        )
        .to_string();
    assert!(text.contains("today:   2026-12-02 in UTC\n"), "{text}");
}

/// Conditional tags and `bypass.when` read the same local date as the TTL.
#[test]
fn tags_and_bypass_read_the_local_date() {
    let policy = r#"version: 1
rules:
  - name: shop-slots
    match: { plugin: shop, operation: slots }
    key: "slots:{query.date}"
    tags: [ { tag: "open", if: "query.date >= today" } ]
    bypass: { when: "query.date == today" }
"#;
    let set = load(policy, &catalog()).unwrap();
    let rule = set.rule_for_route("shop", "slots").unwrap();
    let req = Request::new("GET", "/shop/slots?date=2026-12-01");
    // 19:30 in New York: still the shop's today although UTC's is 12-02.
    assert_eq!(rule.tags(&req, Clock::at(AFTER_UTC_MIDNIGHT)), ["open"]);
    assert!(rule.decide(&req, Clock::at(AFTER_UTC_MIDNIGHT)).is_err());
    assert!(rule.tags(&req, Clock::at(AFTER_NY_MIDNIGHT)).is_empty());
    assert!(rule.decide(&req, Clock::at(AFTER_NY_MIDNIGHT)).is_ok());
}

/// Warming's `days` count from the warmed plugin's today.
#[test]
fn warming_days_start_at_the_plugins_today() {
    let policy = r#"version: 1
warming:
  - name: shop-week
    requests: ["GET /shop/slots?date={date}"]
    params: { date: { days: 2 } }
  - name: lab-week
    requests: ["GET /lab/runs?date={date}"]
    params: { date: { days: 2 } }
  - name: lab-in-new-york
    timezone: America/New_York
    requests: ["GET /lab/runs?date={date}"]
    params: { date: { days: 1 } }
"#;
    let set = load(policy, &catalog()).unwrap();
    let dates = |job: &str| -> Vec<String> {
        set.warm_job(job)
            .unwrap()
            .expand(Clock::at(AFTER_UTC_MIDNIGHT))
            .into_iter()
            .map(|r| r.query[0].1.clone())
            .collect()
    };
    assert_eq!(dates("shop-week"), ["2026-12-01", "2026-12-02"]);
    assert_eq!(dates("lab-week"), ["2026-12-02", "2026-12-03"]);
    assert_eq!(dates("lab-in-new-york"), ["2026-12-01"]);
}

/// An unknown zone is an error at its line, with the nearest real name.
#[test]
fn an_unknown_zone_names_the_nearest_one() {
    let policy = r#"version: 1
rules:
  - name: shop-slots
    match: { plugin: shop, operation: slots }
    timezone: America/New_Yrok
"#;
    let err = load(policy, &catalog()).unwrap_err();
    assert!(
        err.contains("zones.yaml:5:15") && err.contains("unknown time zone `America/New_Yrok`"),
        "{err}"
    );
    assert!(err.contains("did you mean `America/New_York`?"), "{err}");
}
