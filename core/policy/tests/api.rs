//! The surface the core uses: per-rule settings, sharing, events.

use larder_policy::{Catalog, Clock, PolicySet, Request, Scope, Size, Store};
use std::path::PathBuf;
use std::sync::Arc;

const POLICY: &str = r#"
version: 1
defaults: { store: memory, max_size: 1MiB }
rules:
  - name: revenue
    match: { plugin: analytics, operation: revenue }
    statuses: [200, 203]
    max_size: 2MiB
    store: redis
    scope: tenant
    json: { compact: true, strip_nulls: true }
    ignore_origin_no_store: true
  - name: customers
    match: { plugin: analytics, operation: list_customers }
"#;

fn set() -> PolicySet {
    let catalog = Catalog::default()
        .route("analytics", "revenue", "GET", "/api/v1/analytics/revenue")
        .route("analytics", "list_customers", "GET", "/api/v1/customers");
    PolicySet::load_sources(
        &[(PathBuf::from("a.yaml"), POLICY.to_owned())],
        Some(&catalog),
    )
    .unwrap()
}

#[test]
fn rule_settings_resolve_over_defaults() {
    let set = set();
    let r = set.rule_for_route("analytics", "revenue").unwrap();
    assert!(r.caches_status(203) && !r.caches_status(404));
    assert!(r.fits(2 << 20) && !r.fits((2 << 20) + 1));
    assert_eq!((r.store, r.scope), (Store::Redis, Scope::Tenant));
    assert!(r.json.compact && r.json.strip_nulls && r.ignore_origin_no_store);
    assert!(r.caches_method("get") && !r.caches_method("POST"));
    let c = set.rule_for_route("analytics", "list_customers").unwrap();
    assert_eq!(
        (c.store, c.max_size, c.statuses.clone()),
        (Store::Memory, Size::from_bytes(1 << 20), vec![200])
    );
    assert!(!c.json.compact);
    assert_eq!(
        set.rule_for_route("analytics", "nope")
            .map(|r| r.name.clone()),
        None
    );
}

#[test]
fn policy_set_is_shareable_and_events_without_listeners_purge_nothing() {
    fn shareable<T: Send + Sync + 'static>(_: &T) {}
    let set = Arc::new(set());
    shareable(&set);
    let inv = set.on_event("analytics", "order_created", &serde_json::json!({}));
    assert!(inv.is_empty());
    assert!(!set.listens_to("analytics", "order_created"));
}

#[test]
fn explain_renders_for_a_cached_route() {
    let set = set();
    let mut req = Request::new("GET", "/api/v1/customers?page=2");
    req.tenant = Some("t1".into());
    let text = set.explain(&req, Clock::at(0)).to_string();
    assert!(
        text.contains("route:   analytics.list_customers (GET /api/v1/customers)"),
        "{text}"
    );
    assert!(
        text.contains("key:     analytics:list_customers:/api/v1/customers:page=2"),
        "{text}"
    );
    assert!(
        text.contains(
            "revenue: matches analytics.revenue; this request is analytics.list_customers"
        ),
        "{text}"
    );
}

/// No value a client sends can spell another rule's key plus another principal's suffix:
/// `#` and `:` in values are escaped, and `#` is refused in a key's own text.
#[test]
fn a_crafted_value_cannot_reach_a_scoped_entry() {
    let catalog = Catalog::default()
        .route("shop", "search", "GET", "/search")
        .route("shop", "mine", "GET", "/mine");
    let policy = r#"
version: 1
rules:
  - name: search
    match: { plugin: shop, operation: search }
    key: "shop:search:{query.q}"
  - name: mine
    match: { plugin: shop, operation: mine }
    key: "shop:search:mine"
    scope: user
"#;
    let set = PolicySet::load_sources(
        &[(PathBuf::from("a.yaml"), policy.to_owned())],
        Some(&catalog),
    )
    .unwrap();
    let key = |mut req: Request| {
        let m = set.match_request(&req.method, &req.path).unwrap();
        req.path_params = m.params;
        let route = m.route.unwrap();
        req.plugin = Some(route.plugin.clone());
        req.operation = Some(route.operation.clone());
        let rule = set.rule_for_route("shop", &route.operation).unwrap();
        rule.decide(&req, Clock::at(0)).unwrap().key
    };
    let mut alice = Request::new("GET", "/mine");
    alice.user = Some("jwt:alice".into());
    let alices = key(alice);
    let forged = key(Request::new("GET", "/search?q=mine%23u%3Djwt%3Aalice"));
    assert_ne!(forged, alices);
    assert_eq!(alices, "shop:search:mine#u=jwt%3Aalice");
    assert_eq!(forged, "shop:search:mine%23u=jwt%3Aalice");

    let bad = policy.replace("shop:search:mine", "shop:search:mine#u=x");
    let err = PolicySet::load_sources(&[(PathBuf::from("a.yaml"), bad)], Some(&catalog))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`#` is reserved in keys"), "{err}");
}

/// A tag with `if` is attached only when its condition holds for the request being stored;
/// `today` is the clock's day, not the wall clock's.
#[test]
fn conditional_tags_follow_their_condition_at_store_time() {
    let policy = r#"
version: 1
rules:
  - name: revenue
    match: { plugin: analytics, operation: revenue }
    scope: tenant
    tags:
      - "revenue:{tenant}"
      - { tag: "revenue-open:{tenant}", if: "query.end_date >= today" }
"#;
    let catalog = Catalog::default().route("analytics", "revenue", "GET", "/revenue");
    let set = PolicySet::load_sources(
        &[(PathBuf::from("a.yaml"), policy.to_owned())],
        Some(&catalog),
    )
    .unwrap();
    let rule = set.rule_for_route("analytics", "revenue").unwrap();
    let request = |end_date: &str| {
        let mut req = Request::new("GET", &format!("/revenue?end_date={end_date}"));
        req.tenant = Some("acme".into());
        req
    };
    // 2025-01-10T12:00:00Z
    let clock = Clock::at(1_736_510_400);

    let open = request("2025-01-10");
    assert_eq!(
        rule.tags(&open, clock),
        ["revenue:acme", "revenue-open:acme"]
    );
    let closed = request("2025-01-09");
    assert_eq!(rule.tags(&closed, clock), ["revenue:acme"]);
    // The same closed range was still open the day before: the clock decides, not the date
    // the test runs.
    assert_eq!(
        rule.tags(&closed, Clock::at(1_736_510_400 - 86_400)),
        ["revenue:acme", "revenue-open:acme"]
    );

    let text = set.explain(&open, clock).to_string();
    assert!(
        text.contains(
            "tags:    revenue:acme, revenue-open:acme (if query.end_date >= today: holds)"
        ),
        "{text}"
    );
    let text = set.explain(&closed, clock).to_string();
    assert!(
        text.contains(
            "tags:    revenue:acme, revenue-open:acme (if query.end_date >= today: does not hold, left out)"
        ),
        "{text}"
    );
}

/// A warming job of plain requests says its plugin: its requests must reach that plugin's
/// routes, and when the operator disables the plugin the job is left out, not an error.
#[test]
fn a_request_job_names_its_plugin_and_goes_with_it() {
    let policy = r#"
version: 1
warming:
  - name: shop-catalog
    plugin: shop
    requests: ["GET /services", "GET /settings"]
"#;
    let load = |catalog: &Catalog| {
        PolicySet::load_sources(
            &[(PathBuf::from("w.yaml"), policy.to_owned())],
            Some(catalog),
        )
        .map_err(|d| d.to_string())
    };
    let both = Catalog::default()
        .route("shop", "services", "GET", "/services")
        .route("shop", "settings", "GET", "/settings")
        .route("lab", "runs", "GET", "/runs");
    let set = load(&both).unwrap();
    assert_eq!(set.warm_job("shop-catalog").unwrap().request_count(), 2);

    let mut disabled = Catalog::default().route("lab", "runs", "GET", "/runs");
    disabled.disabled_plugins = vec!["shop".into()];
    let set = load(&disabled).unwrap();
    assert!(set.warm_job("shop-catalog").is_none());

    // `/settings` belongs to another plugin here: named, with the job's plugin.
    let elsewhere = Catalog::default()
        .route("shop", "services", "GET", "/services")
        .route("lab", "settings", "GET", "/settings");
    let err = load(&elsewhere).unwrap_err();
    assert!(
        err.contains("no route of plugin `shop` matches `GET /settings`"),
        "{err}"
    );
}
