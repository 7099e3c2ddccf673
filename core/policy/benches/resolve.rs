//! Per-request policy cost: rule resolution + key/tags/TTL rendering.
//!
//! `cargo bench -p larder-policy --bench resolve`

use criterion::{Criterion, criterion_group, criterion_main};
use larder_policy::{Catalog, Clock, PolicySet, Request};
use std::hint::black_box;
use std::path::PathBuf;

const POLICY: &str = r#"
version: 1
ttl_classes: { real_time: 60s, static: 1h }
rules:
  - name: slots
    match: { plugin: booking, operation: available_slots }
    key: "booking:slots:{path.barber_id}:{query.date|today}"
    ttl: { class: real_time, when: [ { if: "query.date < today", ttl: 1d } ] }
    tags: ["slots:{path.barber_id}", "slots:{path.barber_id}:{query.date}"]
  - name: search
    match: { path: /api/products/search }
    methods: [GET, POST]
    key: "aliexpress:search:{hash(params)}"
    ttl: 1h
  - name: booking
    match: { plugin: booking }
    ttl: static
"#;

fn set() -> PolicySet {
    let mut catalog = Catalog::default()
        .route(
            "booking",
            "available_slots",
            "GET",
            "/api/v2/barbers/{barber_id}/slots",
        )
        .route("aliexpress", "search", "GET", "/api/products/search");
    // A realistic number of routes, so the trie is not trivially small.
    for i in 0..200 {
        catalog = catalog.route(
            "booking",
            &format!("op{i}"),
            "GET",
            &format!("/api/v2/things{i}/{{id}}"),
        );
    }
    PolicySet::load_sources(
        &[(PathBuf::from("bench.yaml"), POLICY.to_owned())],
        Some(&catalog),
    )
    .unwrap()
}

fn bench(c: &mut Criterion) {
    let set = set();
    let clock = Clock::at(1_736_510_400);
    let mut slots = Request::new("GET", "/api/v2/barbers/7/slots?date=2025-01-11");
    slots.path_params.push(("barber_id".into(), "7".into()));
    let search = Request::new(
        "GET",
        "/api/products/search?keywords=phone&page_no=2&sort=price_asc&min_price=10",
    );

    let rule = set.rule_for_route("booking", "available_slots").unwrap();
    c.bench_function("decide (pre-resolved rule): key + tags + ttl", |b| {
        b.iter(|| black_box(rule.decide(black_box(&slots), clock).unwrap()))
    });
    c.bench_function("key only (pre-resolved rule)", |b| {
        b.iter(|| black_box(rule.key(black_box(&slots)).unwrap()))
    });
    c.bench_function("match_request + decide (slots)", |b| {
        b.iter(|| {
            let m = set
                .match_request("GET", black_box("/api/v2/barbers/7/slots"))
                .unwrap();
            black_box(m.rule.decide(&slots, clock).unwrap())
        })
    });
    c.bench_function("match_request + key hash(params) (search)", |b| {
        b.iter(|| {
            let m = set
                .match_request("GET", black_box("/api/products/search"))
                .unwrap();
            black_box(m.rule.key(&search).unwrap())
        })
    });
    c.bench_function("rule_for_route", |b| {
        b.iter(|| black_box(set.rule_for_route(black_box("booking"), black_box("available_slots"))))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
