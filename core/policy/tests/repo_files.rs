//! Every YAML file under the repository's `policies/` and `examples/` is a valid policy (or
//! at least valid YAML, for files that are not policies). No catalog exists in this crate,
//! so this checks syntax, structure and every in-file reference; the core adds the
//! catalog-aware check against the real plugins.

use larder_policy::PolicySet;
use std::path::{Path, PathBuf};

fn yaml_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            if p.file_name()
                .is_some_and(|n| n == "target" || n.to_string_lossy().starts_with('.'))
            {
                continue;
            }
            yaml_files(&p, out);
        } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
            out.push(p);
        }
    }
}

/// A policy file says `version:` and one of the policy sections at its top level.
fn looks_like_policy(text: &str) -> bool {
    text.lines().any(|l| l.starts_with("version:"))
        && text.lines().any(|l| {
            [
                "rules:",
                "triggers:",
                "warming:",
                "ttl_classes:",
                "defaults:",
                "compression:",
            ]
            .iter()
            .any(|s| l.starts_with(s))
        })
}

#[test]
fn repository_yaml_files_are_valid() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let mut files = Vec::new();
    yaml_files(&root.join("policies"), &mut files);
    yaml_files(&root.join("examples"), &mut files);
    files.sort();
    let mut problems = Vec::new();
    let mut policy_dirs: Vec<PathBuf> = Vec::new();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        if looks_like_policy(&text) {
            // Each file alone: syntax, schema, TTL classes it defines, templates...
            let dir = f.parent().unwrap().to_path_buf();
            if !policy_dirs.contains(&dir) {
                policy_dirs.push(dir);
            }
        } else if let Err(e) = serde_saphyr::from_str::<serde_json::Value>(&text) {
            problems.push(format!("{}: invalid YAML: {e}", f.display()));
        }
    }
    // Files of one folder form one policy set (shared TTL classes, unique names).
    for dir in &policy_dirs {
        let set: Vec<PathBuf> = files
            .iter()
            .filter(|f| f.parent() == Some(dir.as_path()))
            .filter(|f| looks_like_policy(&std::fs::read_to_string(f).unwrap()))
            .cloned()
            .collect();
        if let Err(d) = PolicySet::load_files(&set, None) {
            problems.push(d.to_string());
        }
    }
    assert!(
        problems.is_empty(),
        "invalid YAML under policies/ or examples/:\n{}",
        problems.join("\n\n")
    );
}

/// The worked examples of `policies/README.md` (every ```yaml block that starts with
/// `version: 1`) load together as one policy set.
#[test]
fn readme_examples_load() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/README.md");
    let text = std::fs::read_to_string(&readme).unwrap();
    let mut sources = Vec::new();
    let mut in_block = false;
    let mut block = String::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```yaml") {
            in_block = true;
            block.clear();
        } else if in_block && line.trim_start().starts_with("```") {
            in_block = false;
            if block.starts_with("version: 1") {
                sources.push((
                    PathBuf::from(format!("README.md#example{}", sources.len() + 1)),
                    block.clone(),
                ));
            }
        } else if in_block {
            block.push_str(line);
            block.push('\n');
        }
    }
    assert!(
        sources.len() >= 5,
        "expected the worked examples in policies/README.md"
    );
    if let Err(d) = PolicySet::load_sources(&sources, None) {
        panic!("policies/README.md examples do not load:\n{d}");
    }
}
