//! `policies/booking.yaml` loads against this plugin's real routes, events and warm sources
//! (the catalog the server builds from the mounted plugin), and its triggers are exact: an
//! event purges the entries it should and no others.

mod common;

use std::path::PathBuf;

use larder_policy::{Clock, PolicySet, Request};
use serde_json::json;

fn policy_file() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/booking.yaml")
}

async fn load() -> (PolicySet, common::App) {
    let app = common::app().await;
    let catalog = app.m.app.engine.catalog();
    let set = PolicySet::load_files(&[policy_file()], Some(catalog))
        .unwrap_or_else(|d| panic!("policies/booking.yaml does not load:\n{d}"));
    (set, app)
}

/// Key and tags the slots rule gives a request.
fn decide(set: &PolicySet, target: &str) -> (String, Vec<String>) {
    let path = target.split('?').next().unwrap();
    let m = set.match_request("GET", path).expect("a rule covers it");
    let mut req = Request::new("GET", target);
    req.path_params = m.params.clone();
    let clock = Clock::parse(common::NOW).unwrap();
    let d = m.rule.decide(&req, clock).expect("cached");
    (d.key, m.rule.tags(&req, clock))
}

fn purged(set: &PolicySet, event: &str, fields: serde_json::Value) -> Vec<String> {
    let inv = set.on_event("booking", event, &fields);
    assert!(
        inv.keys.is_empty() && inv.patterns.is_empty() && !inv.all,
        "{inv:?}"
    );
    inv.tags
}

#[tokio::test]
async fn policy_loads_with_every_route_covered() {
    // Alone (as `larder check` and the repository-files test see it) and against the catalog.
    PolicySet::load_files(&[policy_file()], None).unwrap_or_else(|d| panic!("{d}"));
    let (set, app) = load().await;
    let routes: Vec<&str> = app
        .m
        .app
        .operations
        .iter()
        .filter(|op| op.plugin == "booking")
        .map(|op| {
            op.operation_id
                .as_deref()
                .expect("every route has an operation id")
        })
        .collect();
    assert!(routes.len() > 20, "{routes:?}");
    for id in routes {
        assert!(
            set.rule_for_route("booking", id).is_some(),
            "{id} has no rule"
        );
    }
    // The policy the plugin ships is that file: the server uses it as it is.
    let served = app.m.app.engine.policy();
    assert!(
        served
            .rule_for_route("booking", "available_slots")
            .is_some(),
        "the server runs booking.yaml's rules"
    );
    assert_eq!(
        set.rule_for_route("booking", "available_slots")
            .unwrap()
            .name,
        "booking-slots"
    );
    assert!(
        !set.rule_for_route("booking", "create_appointment")
            .unwrap()
            .cache
    );
    let jobs: Vec<&str> = set.warm_jobs().iter().map(|j| j.name.as_str()).collect();
    assert!(jobs.contains(&"booking-slots-next-7-days"), "{jobs:?}");
}

#[tokio::test]
async fn an_appointment_purges_only_its_barber_date_and_week() {
    let (set, _app) = load().await;
    let (key, mine) = decide(&set, "/api/v2/barbers/3/slots?date=2030-01-09");
    assert_eq!(key, "booking:slots:3:2030-01-09:any");
    let (_, sized) = decide(&set, "/api/v2/barbers/3/slots?date=2030-01-09&service_id=2");
    let (_, other_barber) = decide(&set, "/api/v2/barbers/4/slots?date=2030-01-09");
    let (_, other_day) = decide(&set, "/api/v2/barbers/3/slots?date=2030-01-10");
    let (_, week) = decide(
        &set,
        "/api/v2/barbers/3/availability/weekly?week_start=2030-01-07",
    );
    let (_, next_week) = decide(
        &set,
        "/api/v2/barbers/3/availability/weekly?week_start=2030-01-14",
    );
    let (_, catalog) = decide(&set, "/api/v2/services");
    let (_, dashboard) = decide(&set, "/api/v2/analytics/dashboard");

    let fields = json!({"appointment_id": 1, "barber_id": 3, "client_id": 9, "service_id": 2,
                        "date": "2030-01-09", "start": "10:00", "week_start": "2030-01-07"});
    for event in ["appointment.created", "appointment.cancelled"] {
        let tags = purged(&set, event, fields.clone());
        let hits = |entry: &[String]| entry.iter().any(|t| tags.contains(t));
        assert!(
            hits(&mine) && hits(&sized) && hits(&week),
            "{event}: {tags:?}"
        );
        assert!(
            !hits(&other_barber) && !hits(&other_day) && !hits(&next_week),
            "{event}: {tags:?}"
        );
        assert!(!hits(&catalog) && !hits(&dashboard), "{event}: {tags:?}");
    }

    // A payment purges analytics and nothing else.
    let tags = purged(
        &set,
        "payment.recorded",
        json!({"payment_id": 1, "appointment_id": 1, "amount": 35.0, "barber_id": 3, "date": "2030-01-09"}),
    );
    assert!(dashboard.iter().any(|t| tags.contains(t)));
    for entry in [&mine, &week, &catalog] {
        assert!(!entry.iter().any(|t| tags.contains(t)), "{tags:?}");
    }
    let (_, revenue) = decide(&set, "/api/v2/analytics/revenue?granularity=week");
    assert!(revenue.iter().any(|t| tags.contains(t)));

    // A service change purges the catalog and slots sized by that service only.
    let tags = purged(&set, "service.changed", json!({"service_id": 2}));
    assert!(catalog.iter().any(|t| tags.contains(t)));
    assert!(sized.iter().any(|t| tags.contains(t)));
    assert!(!mine.iter().any(|t| tags.contains(t)), "{tags:?}");

    // A profile update purges that profile only.
    let (_, user3) = decide(&set, "/api/v2/users/3");
    let (_, user4) = decide(&set, "/api/v2/users/4");
    let tags = purged(&set, "profile.updated", json!({"kind": "user", "id": 3}));
    assert!(user3.iter().any(|t| tags.contains(t)));
    assert!(!user4.iter().any(|t| tags.contains(t)));
    let (_, barbers) = decide(&set, "/api/v2/barbers");
    assert!(!barbers.iter().any(|t| tags.contains(t)));
    let tags = purged(&set, "profile.updated", json!({"kind": "barber", "id": 3}));
    assert!(barbers.iter().any(|t| tags.contains(t)));
}
