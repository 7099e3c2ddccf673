//! The committed JSON Schema (`policies/policy.schema.json`) matches the policy types.

use std::path::PathBuf;

fn schema_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../policies/policy.schema.json")
}

#[test]
fn committed_schema_is_up_to_date() {
    let mut text = serde_json::to_string_pretty(&larder_policy::json_schema()).unwrap();
    text.push('\n');
    let path = schema_path();
    if std::env::var_os("LARDER_UPDATE_SCHEMA").is_some() {
        std::fs::write(&path, &text).unwrap();
        return;
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == text,
        "policies/policy.schema.json is out of date with the policy types in core/policy/src/spec.rs.\n\
         Regenerate it with:\n    LARDER_UPDATE_SCHEMA=1 cargo nextest run -p larder-policy --test schema"
    );
}

#[test]
fn schema_carries_field_docs() {
    let s = larder_policy::json_schema();
    let rule = &s["$defs"]["RuleSpec"]["properties"];
    assert!(
        rule["key"]["description"]
            .as_str()
            .unwrap()
            .contains("Cache key template")
    );
    assert_eq!(s["$defs"]["Duration"]["format"], "duration");
}
