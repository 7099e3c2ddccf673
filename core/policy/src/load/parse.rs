//! One file: YAML → tree → schema check → typed spec.

use super::{Compiler, File};
use crate::diag::Location;
use crate::source::{self, FieldPath};
use crate::spec::{self, PolicyFile};
use std::path::Path;

impl Compiler<'_> {
    /// Parses one file; a file that cannot become a spec leaves only diagnostics.
    pub(super) fn parse_file(&mut self, path: &Path, text: &str) {
        let tree = match source::parse(text) {
            Ok(t) => t,
            Err(e) => {
                return self.diag_at(
                    path,
                    text,
                    e.location,
                    format!("invalid YAML: {}", e.message),
                    None,
                );
            }
        };
        if matches!(tree.value, source::Node::Null) {
            return self.diag_at(
                path,
                text,
                Location { line: 1, col: 1 },
                "empty policy file".into(),
                Some("start the file with `version: 1`".into()),
            );
        }
        let schema = spec::json_schema();
        let violations = crate::schema::validate(&tree, &schema);
        let mut tree = tree;
        if !violations.is_empty() {
            let paths: Vec<(FieldPath, Option<String>)> = violations
                .iter()
                .map(|v| (v.path.clone(), v.unknown_field.clone()))
                .collect();
            for (p, unknown) in &paths {
                if let (None, [source::Seg::Key(s), source::Seg::Key(name), ..]) =
                    (unknown, p.0.as_slice())
                    && s == "ttl_classes"
                {
                    self.broken_ttl_classes.insert(name.clone());
                }
            }
            for v in violations {
                self.diag_at(path, text, v.location, v.message, v.hint);
            }
            // Compile what is left so its own mistakes are reported too; the load fails
            // anyway because diagnostics exist.
            if !source::prune(&mut tree, &paths)
                || !crate::schema::validate(&tree, &schema).is_empty()
            {
                return;
            }
        }
        let partial = !self.diags.is_empty();
        match serde_json::from_value::<PolicyFile>(source::to_json(&tree.value)) {
            Err(_) if partial => {}
            Ok(spec) => self.files.push(File {
                path: path.to_path_buf(),
                text: text.to_owned(),
                tree,
                spec,
            }),
            Err(e) => self.diag_at(
                path,
                text,
                Location { line: 1, col: 1 },
                e.to_string(),
                None,
            ),
        }
    }
}
