//! What `larder check` shows for broken policies: every mistake at once, each with
//! file:line:col and a hint.

use larder_policy::{Catalog, PolicySet};
use std::path::PathBuf;

fn catalog() -> Catalog {
    Catalog::default()
        .route(
            "booking",
            "available_slots",
            "GET",
            "/api/v2/barbers/{barber_id}/slots",
        )
        .route(
            "booking",
            "create_appointment",
            "POST",
            "/api/v2/appointments",
        )
        .event("booking", "appointment_created", &["barber_id", "date"])
}

/// One file, three different kinds of mistake: a misspelt field (schema), a bad duration
/// (format), and a path parameter the route does not have (catalog).
const THREE_MISTAKES: &str = r#"version: 1
ttl_classes: { real_time: 60s }
rules:
  - name: available-slots
    match: { plugin: booking, operation: available_slots }
    key: "booking:slots:{path.barber}:{query.date}"
    tll: real_time
  - name: create-appointment
    match: { plugin: booking, operation: create_appointment }
    cache: false
    stale_if_error: 10 minutes
    invalidate: { tags: ["slots:{body.barber_id}:{body.date}"] }
"#;

#[test]
fn three_mistakes_reported_at_once() {
    let sources = vec![(
        PathBuf::from("policies/booking.yaml"),
        THREE_MISTAKES.to_owned(),
    )];
    let diags = PolicySet::load_sources(&sources, Some(&catalog())).unwrap_err();
    insta::assert_snapshot!(diags.to_string(), @r#"
    policies/booking.yaml:6:10: error: `{path.barber}` in `booking:slots:{path.barber}:{query.date}`: route booking.available_slots (GET /api/v2/barbers/{barber_id}/slots) has no path parameter `barber`
      |
    6 |     key: "booking:slots:{path.barber}:{query.date}"
      |          ^
      = hint: did you mean `barber_id`?

    policies/booking.yaml:7:5: error: unknown field `tll` in `rules[0]`
      |
    7 |     tll: real_time
      |     ^
      = hint: did you mean `ttl`?

    policies/booking.yaml:11:21: error: unknown duration unit `minutes` in `10 minutes`; use ms, s, m, h or d
       |
    11 |     stale_if_error: 10 minutes
       |                     ^
       = hint: did you mean `10m`?

    3 errors found
    "#);
    // The schema mistakes do not hide the catalog one: the loader drops what failed the
    // schema and still compiles the rest of the file.
    assert_eq!(diags.len(), 3);
    assert!(diags.iter().all(|d| d.hint.is_some()));
}

#[test]
fn all_three_kinds_across_files() {
    // Schema-level mistakes stop serde for that file only; other files are still compiled,
    // so catalog-level mistakes elsewhere are reported in the same run.
    let sources = vec![
        (PathBuf::from("policies/a.yaml"), "version: 1\nrules:\n  - name: a\n    match: { plugin: booking }\n    tll: 5m\n    ttl: 30\n".to_owned()),
        (PathBuf::from("policies/b.yaml"), "version: 1\nrules:\n  - name: b\n    match: { plugin: booking, operation: available_slots }\n    key: \"s:{path.barber}\"\n".to_owned()),
    ];
    let diags = PolicySet::load_sources(&sources, Some(&catalog())).unwrap_err();
    let heads: Vec<String> = diags.iter().map(|d| d.headline()).collect();
    assert_eq!(
        heads,
        vec![
            "policies/a.yaml:5:5: error: unknown field `tll` in `rules[0]`",
            "policies/a.yaml:6:10: error: expected a TTL (a duration such as `5m`, or a class name) or a map, found an integer",
            "policies/b.yaml:5:10: error: `{path.barber}` in `s:{path.barber}`: route booking.available_slots (GET /api/v2/barbers/{barber_id}/slots) has no path parameter `barber`",
        ]
    );
    let hints: Vec<Option<String>> = diags.iter().map(|d| d.hint.clone()).collect();
    assert_eq!(
        hints,
        vec![
            Some("did you mean `ttl`?".to_owned()),
            Some("durations carry a unit: write `30s`".to_owned()),
            Some("did you mean `barber_id`?".to_owned()),
        ]
    );
}

#[test]
fn yaml_syntax_errors_have_positions() {
    let sources = vec![(PathBuf::from("p.yaml"), "version: 1\nrules: [\n".to_owned())];
    let d = PolicySet::load_sources(&sources, None).unwrap_err();
    let head = d.iter().next().unwrap().headline();
    assert!(
        head.starts_with("p.yaml:2:") && head.contains("invalid YAML"),
        "{head}"
    );
}

/// A conditional tag is checked like a `ttl.when` item: its keys, its template and its
/// condition, each reported where it is written.
#[test]
fn conditional_tag_mistakes_have_positions() {
    let bad_condition = r#"version: 1
rules:
  - name: slots
    match: { plugin: booking, operation: available_slots }
    tags:
      - "slots:{path.barber_id}"
      - { tag: "slots-open:{path.barber_id}", if: "query.date => today" }
      - { tag: "slots:{query.date}", iff: "query.date < today" }
"#;
    let sources = vec![(
        PathBuf::from("policies/booking.yaml"),
        bad_condition.to_owned(),
    )];
    let diags = PolicySet::load_sources(&sources, Some(&catalog())).unwrap_err();
    insta::assert_snapshot!(diags.to_string(), @r#"
    policies/booking.yaml:7:51: error: bad condition `query.date => today`: `=` is not an operator; write `==` to compare (at character 12)
      |
    7 |       - { tag: "slots-open:{path.barber_id}", if: "query.date => today" }
      |                                                   ^

    policies/booking.yaml:8:9: error: missing field `if` in `rules[0].tags[2]`
      |
    8 |       - { tag: "slots:{query.date}", iff: "query.date < today" }
      |         ^

    policies/booking.yaml:8:38: error: unknown field `iff` in `rules[0].tags[2]`
      |
    8 |       - { tag: "slots:{query.date}", iff: "query.date < today" }
      |                                      ^
      = hint: did you mean `if`?

    3 errors found
    "#);
}

/// The other ways a conditional tag goes wrong: no `tag`, a condition on event fields (a rule
/// has a request, not an event), a template left unquoted (YAML reads `{x}` as a map), and
/// path parameters the route lacks, in the tag and in the condition.
#[test]
fn conditional_tags_need_a_tag_and_a_request_condition() {
    let sources = vec![
        (
            PathBuf::from("policies/a.yaml"),
            "version: 1\nrules:\n  - name: a\n    match: { plugin: booking, operation: available_slots }\n    tags: [ { if: \"exists query.date\" } ]\n".to_owned(),
        ),
        (
            PathBuf::from("policies/b.yaml"),
            "version: 1\nrules:\n  - name: b\n    match: { plugin: booking, operation: available_slots }\n    tags:\n      - { tag: slots, if: \"event.date == today\" }\n      - {path.barber_id}\n".to_owned(),
        ),
        (
            PathBuf::from("policies/c.yaml"),
            "version: 1\nrules:\n  - name: c\n    match: { plugin: booking, operation: available_slots }\n    tags:\n      - { tag: \"slots:{path.barber}\", if: \"path.barber_id == 7\" }\n      - { tag: slots, if: \"path.barber == 7\" }\n".to_owned(),
        ),
    ];
    let diags = PolicySet::load_sources(&sources, Some(&catalog())).unwrap_err();
    let got: Vec<(String, Option<String>)> = diags
        .iter()
        .map(|d| (d.headline(), d.hint.clone()))
        .collect();
    let want = [
        (
            "policies/a.yaml:5:13: error: missing field `tag` in `rules[0].tags[0]`",
            None,
        ),
        (
            "policies/b.yaml:6:27: error: bad condition `event.date == today`: `event.date` cannot be compared; name one value, e.g. `query.date`, `body.id`, `path.id` (at character 1)",
            None,
        ),
        (
            "policies/b.yaml:7:9: error: expected a template string, found a map",
            Some("quote text that starts with `{`: YAML reads `{...}` as a map"),
        ),
        (
            "policies/c.yaml:6:16: error: `{path.barber}` in `slots:{path.barber}`: route booking.available_slots (GET /api/v2/barbers/{barber_id}/slots) has no path parameter `barber`",
            Some("did you mean `barber_id`?"),
        ),
        (
            "policies/c.yaml:7:27: error: `{path.barber}` in `path.barber == 7`: route booking.available_slots (GET /api/v2/barbers/{barber_id}/slots) has no path parameter `barber`",
            Some("did you mean `barber_id`?"),
        ),
    ];
    let want: Vec<(String, Option<String>)> = want
        .iter()
        .map(|(h, hint)| (h.to_string(), hint.map(str::to_owned)))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn one_bad_ttl_class_is_one_error_and_the_other_classes_still_work() {
    let text = r#"version: 1
ttl_classes:
  short: 5 minutes
  long: 1h
rules:
  - name: slots
    match: { plugin: booking, operation: available_slots }
    ttl: short
  - name: services
    match: { plugin: booking, operation: list_services }
    ttl: short
  - name: barbers
    match: { plugin: booking, operation: list_barbers }
    ttl: lnog
"#;
    let sources = vec![(PathBuf::from("policies/p.yaml"), text.to_owned())];
    let catalog = catalog()
        .route("booking", "list_services", "GET", "/api/v2/services")
        .route("booking", "list_barbers", "GET", "/api/v2/barbers");
    let diags = PolicySet::load_sources(&sources, Some(&catalog)).unwrap_err();
    // The bad value is reported once, not again at each rule that names `short`; `long`
    // survives, so a misspelling of it is still caught, with the right suggestion.
    let messages: Vec<String> = diags.iter().map(|d| d.message.clone()).collect();
    assert_eq!(
        messages,
        vec![
            "unknown duration unit `minutes` in `5 minutes`; use ms, s, m, h or d".to_owned(),
            "unknown TTL class `lnog`".to_owned(),
        ],
        "{diags}"
    );
    assert_eq!(
        diags.iter().nth(1).and_then(|d| d.hint.clone()).as_deref(),
        Some("did you mean `long`?")
    );
}
