//! Loading: files → YAML trees → schema validation → typed specs → compiled [`PolicySet`].
//!
//! Every stage collects problems instead of stopping (Vector's `compile` style): a set with
//! one bad file still reports the other files' mistakes, and one file reports all of its
//! own. Checks that need to know the server (routes, events, warm sources) run only when a
//! [`Catalog`] is given.
//!
//! ## Layout
//! - `parse`: one file → YAML tree → schema check → typed spec.
//! - `defaults`: TTL classes, `defaults` and `compression`, which every rule inherits.
//! - `rule`, `matcher`: each rule and its `match`.
//! - `templates`: templates and conditions, checked against what they may read.
//! - `index`: catalog routes resolved to rules; the set's lookup tables.
//! - `trigger`, `warm`: event-driven purges and warming jobs.
//!
//! `Compiler::compile` runs them in that order: warming comes last because its requests
//! are checked against the resolved routes.

mod defaults;
mod index;
mod matcher;
mod parse;
mod rule;
mod templates;
mod trigger;
mod warm;

pub use defaults::{DEFAULT_MAX_SIZE, DEFAULT_TTL};

use crate::catalog::Catalog;
use crate::diag::{Diagnostic, Diagnostics, Location, did_you_mean};
use crate::policy::PolicySet;
use crate::source::{self, FieldPath, SpannedNode};
use crate::spec::PolicyFile;
use rule::{Purges, RuleContext};
use std::path::{Path, PathBuf};
use std::sync::Arc;

impl PolicySet {
    /// Loads every `*.yaml` / `*.yml` file of `dir` (sorted by name, not recursive).
    pub fn load_dir(dir: &Path, catalog: Option<&Catalog>) -> Result<PolicySet, Diagnostics> {
        let files = policy_files(dir).map_err(|e| {
            Diagnostics(vec![Diagnostic::new(
                dir,
                Location::default(),
                format!("cannot read the policy folder: {e}"),
            )])
        })?;
        Self::load_files(&files, catalog)
    }

    /// Loads the given files.
    pub fn load_files(
        files: &[PathBuf],
        catalog: Option<&Catalog>,
    ) -> Result<PolicySet, Diagnostics> {
        let mut sources = Vec::new();
        let mut diags = Vec::new();
        for f in files {
            match std::fs::read_to_string(f) {
                Ok(text) => sources.push((f.clone(), text)),
                Err(e) => diags.push(Diagnostic::new(
                    f,
                    Location::default(),
                    format!("cannot read file: {e}"),
                )),
            }
        }
        let result = Self::load_sources(&sources, catalog);
        match result {
            Ok(set) if diags.is_empty() => Ok(set),
            Ok(_) => Err(finish(diags)),
            Err(d) => {
                diags.extend(d.0);
                Err(finish(diags))
            }
        }
    }

    /// Loads in-memory sources `(file name, YAML text)`.
    pub fn load_sources(
        sources: &[(PathBuf, String)],
        catalog: Option<&Catalog>,
    ) -> Result<PolicySet, Diagnostics> {
        let mut cx = Compiler::new(catalog);
        for (path, text) in sources {
            cx.parse_file(path, text);
        }
        // A plugin's own policy stands in for the operator's until the operator writes any
        // rule, trigger or warming job naming the plugin.
        if let Some(cat) = catalog {
            let named = cx.plugins_named();
            for (plugin, text) in &cat.default_policies {
                if !named.contains(plugin) {
                    cx.parse_file(&PathBuf::from(format!("<{plugin} default policy>")), text);
                }
            }
        }
        cx.compile()
    }
}

/// The `*.yaml`/`*.yml` files of `dir`, sorted. Symlinks are followed: a Kubernetes
/// ConfigMap mounts each file as `name.yaml -> ..data/name.yaml`.
pub fn policy_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            // Names starting with `..` are the kubelet's own (`..data`, `..2026_12_01_…`,
            // `..data_tmp`): the same files again, or a half-written update.
            let kubelet_internal = p
                .file_name()
                .is_some_and(|n| n.as_encoded_bytes().starts_with(b".."));
            !kubelet_internal
                && p.is_file()
                && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Checks one file on its own (syntax, schema, references inside the file) without a
/// catalog. For editors and repo tests.
pub fn check_file(path: &Path) -> Result<(), Diagnostics> {
    PolicySet::load_files(&[path.to_path_buf()], None).map(|_| ())
}

/// Diagnostics in file and position order, so output is stable whatever order the
/// stages found them in.
fn finish(d: Vec<Diagnostic>) -> Diagnostics {
    let mut d = Diagnostics(d);
    d.sort();
    d
}

/// A file that parsed and passed the schema; the tree stays for positions.
struct File {
    path: PathBuf,
    text: String,
    tree: SpannedNode,
    spec: PolicyFile,
}

/// The loader's state: the parsed files and every problem found so far.
struct Compiler<'c> {
    catalog: Option<&'c Catalog>,
    files: Vec<File>,
    diags: Vec<Diagnostic>,
    /// TTL classes whose definition was reported invalid: a rule naming one is not told
    /// the class is unknown as well (one mistake, one error).
    broken_ttl_classes: std::collections::BTreeSet<String>,
}

/// Where something was defined, for "first defined at" hints.
type Origin = (usize, FieldPath);

impl<'c> Compiler<'c> {
    fn new(catalog: Option<&'c Catalog>) -> Self {
        Compiler {
            catalog,
            files: Vec::new(),
            diags: Vec::new(),
            broken_ttl_classes: Default::default(),
        }
    }

    /// An error in a file that may not have parsed, so positions come from the parser.
    fn diag_at(
        &mut self,
        path: &Path,
        text: &str,
        location: Location,
        message: String,
        hint: Option<String>,
    ) {
        let source_line = (location.line > 0)
            .then(|| {
                text.lines()
                    .nth(location.line as usize - 1)
                    .map(str::to_owned)
            })
            .flatten();
        self.diags.push(Diagnostic {
            file: path.to_path_buf(),
            location,
            message,
            hint,
            source_line,
        });
    }

    /// An error at `path` in file `f`.
    fn err(&mut self, f: usize, at: &FieldPath, message: impl Into<String>, hint: Option<String>) {
        let file = &self.files[f];
        let location = source::locate(&file.tree, at);
        let (p, t) = (file.path.clone(), file.text.clone());
        self.diag_at(&p, &t, location, message.into(), hint);
    }

    fn where_is(&self, o: &Origin) -> String {
        let file = &self.files[o.0];
        let l = source::locate(&file.tree, &o.1);
        format!("{}:{}:{}", file.path.display(), l.line, l.col)
    }

    /// Every plugin the parsed files name: in a rule's `match`, a trigger's `on`, a warming
    /// job's `source` or `plugin`.
    fn plugins_named(&self) -> std::collections::BTreeSet<String> {
        let mut named = std::collections::BTreeSet::new();
        for f in &self.files {
            let spec = &f.spec;
            named.extend(
                spec.rules
                    .iter()
                    .filter_map(|r| r.matcher.as_ref()?.plugin.clone()),
            );
            named.extend(
                spec.triggers
                    .iter()
                    .filter_map(|t| Some(t.on.split_once('.')?.0.to_owned())),
            );
            for w in &spec.warming {
                named.extend(w.plugin.clone());
                named.extend(
                    w.source
                        .as_deref()
                        .and_then(|s| Some(s.split_once('.')?.0.to_owned())),
                );
            }
        }
        named
    }

    /// Whether the catalog offers `plugin`. A plugin the operator disabled answers `false`
    /// without an error, so turning a plugin off does not break the policy files that
    /// name it: what they say about it is dropped.
    fn check_plugin(&mut self, f: usize, at: &FieldPath, plugin: &str) -> bool {
        let Some(cat) = self.catalog else { return true };
        if cat.has_plugin(plugin) {
            return true;
        }
        if cat.disabled_plugins.iter().any(|p| p == plugin) {
            return false;
        }
        let plugins = cat.plugins();
        let hint = did_you_mean(plugin, plugins.iter().copied())
            .or_else(|| Some(format!("known plugins: {}", plugins.join(", "))));
        self.err(f, at, format!("unknown plugin `{plugin}`"), hint);
        false
    }

    /// Compiles the parsed files into a set, reporting every problem at once.
    fn compile(mut self) -> Result<PolicySet, Diagnostics> {
        for f in 0..self.files.len() {
            if self.files[f].spec.version != 1 {
                let v = self.files[f].spec.version;
                self.err(
                    f,
                    &FieldPath::root().at("version"),
                    format!("unsupported policy version {v}"),
                    Some("this Larder reads `version: 1`".into()),
                );
            }
        }
        let classes = self.ttl_classes();
        let defaults_file = self.singleton(|s| s.defaults.is_some(), "defaults");
        let compression_file = self.singleton(|s| s.compression.is_some(), "compression");
        let defaults = self.resolve_defaults(defaults_file, &classes);
        let compression = Arc::new(self.global_compression(compression_file));
        let routes = self.catalog_routes();
        let purges = Purges::of(&self.files.iter().map(|f| &f.spec).collect::<Vec<_>>());
        let rules = self.compile_rules(&RuleContext {
            defaults: &defaults,
            classes: &classes,
            compression: &compression,
            routes: &routes,
            purges: &purges,
        });
        let mut set = PolicySet {
            files: self.files.iter().map(|f| f.path.clone()).collect(),
            ttl_classes: classes,
            compression,
            catalog: self.catalog.cloned().unwrap_or_default(),
            ..PolicySet::default()
        };
        self.index_rules(&mut set, rules, &routes);
        self.compile_triggers(&mut set);
        self.compile_warming(&mut set, defaults.timezone.as_ref());
        if self.diags.is_empty() {
            Ok(set)
        } else {
            Err(finish(self.diags))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::policy_files;

    /// A ConfigMap volume as the kubelet lays it out: the visible name is a symlink through
    /// `..data` into a timestamped folder.
    #[cfg(unix)]
    #[test]
    fn a_configmap_folder_lists_each_file_once_through_its_symlink() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        std::fs::create_dir(d.join("..2026_12_01_a")).unwrap();
        std::fs::write(d.join("..2026_12_01_a/shop.yaml"), "version: 1\n").unwrap();
        symlink("..2026_12_01_a", d.join("..data")).unwrap();
        symlink("..data/shop.yaml", d.join("shop.yaml")).unwrap();
        // A stray file with a kubelet-style name is not a policy either.
        std::fs::write(d.join("..stray.yaml"), "version: 1\n").unwrap();
        assert_eq!(policy_files(d).unwrap(), vec![d.join("shop.yaml")]);
    }
}
