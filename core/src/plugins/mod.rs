//! Finding, loading and building plugins: built-in ones compiled into the binary and
//! dynamic ones loaded from a `cdylib` named in the config.

pub(crate) mod host;
pub(crate) mod openapi;
pub(crate) mod record;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use larder_plugin::abi::{DECLARATION_SYMBOL, HostHandles, PluginDeclaration};
use larder_plugin::{
    DynPlugin, EventSpec, Host, NamedRuleSpec, Plugin, PluginContext, PluginError, PluginFactory,
    RoutePermission, WarmSourceSpec, factory,
};
use serde::Serialize;

use crate::config::LoadedConfig;
use larder_policy::diag::did_you_mean;
use larder_policy::{Diagnostic, Diagnostics};

/// The plugin kinds this binary knows: the built-ins its `main` registers, plus dynamic
/// ones added while loading.
#[derive(Default)]
pub struct PluginRegistry {
    builtins: BTreeMap<&'static str, fn() -> Box<dyn PluginFactory>>,
}

impl PluginRegistry {
    /// No plugins at all (tests, embedding).
    pub fn empty() -> Self {
        Self {
            builtins: BTreeMap::new(),
        }
    }

    /// Registers a built-in plugin type.
    pub fn register<P: Plugin>(&mut self) -> &mut Self {
        self.builtins.insert(P::NAME, factory::<P>);
        self
    }

    /// Names of the built-in plugins.
    pub fn builtin_names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.builtins.keys().copied()
    }
}

/// Where a plugin came from.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum PluginSource {
    /// Compiled into the binary.
    Builtin,
    /// Loaded from a dynamic library.
    Dynamic {
        /// The library's path.
        library: PathBuf,
    },
}

/// A plugin that was built and is about to be (or is) serving.
pub struct LoadedPlugin {
    /// Name (config key, OpenAPI tag, policy `plugin`).
    pub name: &'static str,
    /// The plugin's version.
    pub version: &'static str,
    /// One-line description.
    pub description: &'static str,
    /// Built-in or dynamic.
    pub source: PluginSource,
    /// Mount prefix ("" for none).
    pub prefix: String,
    /// The running plugin.
    pub plugin: Arc<dyn DynPlugin>,
    /// Events it declared.
    pub events: Vec<EventSpec>,
    /// Warm sources it offers.
    pub warm_sources: Vec<WarmSourceSpec>,
    /// Rules it caches under from code.
    pub named_rules: Vec<NamedRuleSpec>,
    /// What its routes need.
    pub permissions: Vec<RoutePermission>,
    /// The zone its days are in, if not UTC.
    pub timezone: Option<String>,
    /// The policy it ships, for when the operator's policy folder names nothing of it.
    pub default_policy: Option<&'static str>,
}

/// Loads a dynamic plugin library and returns its factory, after checking its declaration.
///
/// The library is never unloaded: code from it may still be referenced by spawned tasks,
/// tracing callsites or vtables until the process exits.
pub fn load_library(path: &Path) -> Result<Box<dyn PluginFactory>, String> {
    let shown = path.display();
    // SAFETY: loading runs the library's initialisers. Larder plugins are Rust cdylibs,
    // which have none beyond std's; a foreign library is refused below before any call.
    let lib = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot load plugin library `{shown}`: {e}"))?;
    // SAFETY: we only take the symbol's address here; `check` reads it field by field.
    let decl: *const PluginDeclaration = unsafe {
        match lib.get::<*const PluginDeclaration>(DECLARATION_SYMBOL) {
            Ok(symbol) => *symbol,
            Err(_) => {
                return Err(format!(
                    "`{shown}` is not a Larder plugin: it exports no `LARDER_PLUGIN_DECLARATION` \
                     (add `larder_plugin::export_plugin!(YourPlugin);`)"
                ));
            }
        }
    };
    // SAFETY: `decl` is the exported symbol's address; `check` reads the magic first.
    if let Err(diffs) = unsafe { PluginDeclaration::check(decl) } {
        return Err(format!(
            "refusing plugin library `{shown}`: its declaration does not match this Larder \
             build: {}",
            diffs.join("; ")
        ));
    }
    let handles = HostHandles {
        runtime: tokio::runtime::Handle::current(),
        dispatch: tracing::dispatcher::get_default(Clone::clone),
    };
    // SAFETY: every field of the declaration matched the host's, so the entry point has the
    // signature and ABI we expect.
    let factory = unsafe { ((*decl).entry)(&handles) }
        .map_err(|e| format!("plugin library `{shown}` failed to initialise: {e}"))?;
    std::mem::forget(lib);
    Ok(factory)
}

/// A plugin chosen to run: its factory, where it came from, its prefix and raw settings.
pub type Resolved = (
    Box<dyn PluginFactory>,
    PluginSource,
    String,
    serde_json::Value,
);

/// Resolves the config's plugin entries against the registry: which plugins run, from which
/// factory, with which settings. Collects every problem.
pub fn resolve(
    config: &LoadedConfig,
    registry: &PluginRegistry,
) -> Result<Vec<Resolved>, Diagnostics> {
    let mut out = Vec::new();
    let mut errors = Vec::new();
    let entries = &config.config.plugins;
    for (name, make) in &registry.builtins {
        let entry = entries.get(*name).cloned().unwrap_or_default();
        if entry.enabled && entry.library.is_none() {
            out.push((make(), PluginSource::Builtin, entry.prefix, entry.settings));
        }
    }
    for (name, entry) in entries {
        if !entry.enabled {
            continue;
        }
        let Some(library) = &entry.library else {
            if !registry.builtins.contains_key(name.as_str()) {
                let d = config.diagnostic_at_key(
                    &format!("plugins.{name}"),
                    format!("unknown plugin `{name}`: it is not built in and has no `library`"),
                );
                let mut candidates: Vec<&str> = registry.builtin_names().collect();
                candidates.extend(
                    entries
                        .iter()
                        .filter(|(_, e)| e.library.is_some())
                        .map(|(n, _)| n.as_str()),
                );
                errors.push(d.hint(did_you_mean(name, candidates).unwrap_or_else(|| {
                    "set `library: path/to/libplugin.so` for a dynamic plugin".to_owned()
                })));
            }
            continue;
        };
        match load_library(library) {
            Ok(factory) if factory.name() != name => errors.push(config.diagnostic(
                &format!("plugins.{name}.library"),
                format!(
                    "library `{}` holds plugin `{}`, but the config entry is named `{name}`",
                    library.display(),
                    factory.name()
                ),
            )),
            Ok(factory) => out.push((
                factory,
                PluginSource::Dynamic {
                    library: library.clone(),
                },
                entry.prefix.clone(),
                entry.settings.clone(),
            )),
            Err(message) => {
                errors.push(config.diagnostic(&format!("plugins.{name}.library"), message))
            }
        }
    }
    for (factory, _, _, settings) in &out {
        // The settings schema first: every field's mistake at its own line; the plugin's
        // own checks (and serde) only for settings that fit it.
        let problems = config.check_settings(factory.name(), &factory.config_schema());
        if !problems.is_empty() {
            errors.extend(problems);
        } else if let Err(e) = factory.validate(settings) {
            errors.push(settings_diagnostic(config, factory.name(), &e));
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(Diagnostics(errors))
    }
}

/// A plugin's refusal of its settings, at the field it names.
fn settings_diagnostic(config: &LoadedConfig, plugin: &str, e: &PluginError) -> Diagnostic {
    match e {
        PluginError::Config { path, message } => {
            let at = if path.is_empty() {
                format!("plugins.{plugin}.settings")
            } else {
                format!("plugins.{plugin}.settings.{path}")
            };
            config.diagnostic(
                &at,
                if path.is_empty() {
                    format!("plugin `{plugin}` settings: {message}")
                } else {
                    format!("plugin `{plugin}` setting `{path}`: {message}")
                },
            )
        }
        other => config.diagnostic(
            &format!("plugins.{plugin}"),
            format!("plugin `{plugin}`: {other}"),
        ),
    }
}

/// Builds every resolved plugin; stops at the first that fails, naming it.
pub async fn build(
    config: &LoadedConfig,
    resolved: Vec<Resolved>,
    host: Arc<dyn Host>,
) -> Result<Vec<LoadedPlugin>, Diagnostics> {
    let mut plugins = Vec::new();
    for (factory, source, prefix, settings) in resolved {
        let name = factory.name();
        let context = PluginContext::new(name, host.clone());
        let plugin = factory
            .create(settings, context)
            .await
            .map_err(|e| Diagnostics(vec![settings_diagnostic(config, name, &e)]))?;
        plugins.push(LoadedPlugin {
            name,
            version: factory.version(),
            description: factory.description(),
            source,
            prefix,
            events: plugin.events(),
            warm_sources: plugin.warm_sources(),
            named_rules: plugin.named_rules(),
            permissions: plugin.permissions(),
            timezone: plugin.timezone(),
            default_policy: factory.default_policy(),
            plugin,
        });
    }
    Ok(plugins)
}
