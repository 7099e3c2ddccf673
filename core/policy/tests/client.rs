//! What downstream caches are told (`client`): the safe defaults and the refusals.

use larder_policy::{Catalog, ClientCache, Duration, PolicySet};
use std::path::PathBuf;

fn catalog() -> Catalog {
    Catalog::default()
        .route("shop", "item", "GET", "/items/{id}")
        .route("shop", "me", "GET", "/me")
        .route("shop", "org", "GET", "/org")
        .route("shop", "prices", "GET", "/prices")
        .route("shop", "news", "GET", "/news")
        .route("shop", "put_item", "PUT", "/items/{id}")
}

fn load(policy: &str) -> Result<PolicySet, String> {
    PolicySet::load_sources(
        &[(PathBuf::from("shop.yaml"), policy.to_owned())],
        Some(&catalog()),
    )
    .map_err(|d| d.to_string())
}

fn client(set: &PolicySet, operation: &str) -> ClientCache {
    set.rule_for_route("shop", operation).unwrap().client
}

#[test]
fn defaults_are_private_for_scoped_rules_and_revalidate_purgeable_ones() {
    let set = load(
        r#"version: 1
rules:
  - name: item
    match: { plugin: shop, operation: item }
    key: "shop:item:{path.id}"
    tags: ["item:{path.id}"]
  - name: me
    match: { plugin: shop, operation: me }
    key: "shop:me"
    scope: user
  - name: org
    match: { plugin: shop, operation: org }
    key: "shop:org"
    scope: tenant
    tags: [org]
  - name: prices
    match: { plugin: shop, operation: prices }
    key: "shop:prices:{query.page|1}"
  - name: news
    match: { plugin: shop, operation: news }
    key: "news:{query.page|1}"
  - name: put
    match: { plugin: shop, operation: put_item }
    invalidate: { patterns: ["shop:prices:*"] }
"#,
    )
    .unwrap();
    let open = ClientCache::default();
    // Tagged: purged by tag, so clients revalidate.
    assert_eq!(
        client(&set, "item"),
        ClientCache {
            revalidate: true,
            ..open
        }
    );
    // User scope: private, and nothing purges it.
    assert_eq!(
        client(&set, "me"),
        ClientCache {
            private: true,
            ..open
        }
    );
    assert_eq!(
        client(&set, "org"),
        ClientCache {
            private: true,
            max_age: None,
            revalidate: true
        }
    );
    // A pattern purge can reach its keys.
    assert!(client(&set, "prices").revalidate);
    // Nothing can purge `news:` entries: the plain public form.
    assert_eq!(client(&set, "news"), open);
}

#[test]
fn a_rule_can_ask_for_a_max_age_or_no_store_like_answers() {
    let set = load(
        r#"version: 1
rules:
  - name: item
    match: { plugin: shop, operation: item }
    key: "shop:item:{path.id}"
    tags: ["item:{path.id}"]
    client: { max_age: 30s }
  - name: news
    match: { plugin: shop, operation: news }
    key: "news"
    client: { max_age: 0s, private: true }
  - name: prices
    match: { plugin: shop, operation: prices }
    key: "prices"
    client: { revalidate: true }
"#,
    )
    .unwrap();
    let item = client(&set, "item");
    assert_eq!(
        (item.max_age, item.revalidate, item.private),
        (Some(Duration::from_secs(30)), false, false)
    );
    let news = client(&set, "news");
    assert_eq!((news.max_age, news.private), (Some(Duration::ZERO), true));
    assert!(client(&set, "prices").revalidate);
}

#[test]
fn a_scoped_rule_cannot_be_made_public_downstream() {
    let err = load(
        r#"version: 1
rules:
  - name: me
    match: { plugin: shop, operation: me }
    key: "shop:me"
    scope: user
    client: { private: false, max_age: 10s, revalidate: true }
"#,
    )
    .unwrap_err();
    assert!(
        err.contains("shop.yaml:7:24")
            && err.contains("a `user`-scoped rule's answers belong to one principal"),
        "{err}"
    );
    assert!(
        err.contains("shop.yaml:7:57") && err.contains("set `max_age` or `revalidate: true`"),
        "{err}"
    );
}
