//! What the running server offers, as the policy validator needs to know it.
//!
//! The core builds a [`Catalog`] from its plugins (routes with operation ids, events with
//! their fields, warm sources) and passes it to the loader, which then rejects policies that
//! name things that do not exist.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// Routes, events and warm sources of every enabled plugin.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    /// Every route.
    #[serde(default)]
    pub routes: Vec<CatalogRoute>,
    /// Every event a plugin may emit.
    #[serde(default)]
    pub events: Vec<CatalogEvent>,
    /// Every named warm source.
    #[serde(default)]
    pub warm_sources: Vec<CatalogWarmSource>,
    /// Rules plugins cache under from code, and the routes using them.
    #[serde(default)]
    pub named_rules: Vec<CatalogNamedRule>,
    /// Plugins that exist but are switched off: rules, triggers and warming jobs naming them
    /// are left out quietly instead of being errors, so the shipped policies keep loading
    /// when an operator disables a built-in plugin.
    #[serde(default)]
    pub disabled_plugins: Vec<String>,
    /// The IANA time zone a plugin's business days are in (a shop's local day), by plugin:
    /// its rules' conditions read `today` there unless a rule names another zone.
    #[serde(default)]
    pub time_zones: BTreeMap<String, String>,
    /// The policy each plugin ships (YAML), by plugin: loaded when the operator's files
    /// name nothing of that plugin.
    #[serde(default)]
    pub default_policies: BTreeMap<String, String>,
}

/// One route.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogRoute {
    /// Plugin name.
    pub plugin: String,
    /// Operation id, unique within the plugin.
    pub operation: String,
    /// Upper-case HTTP method.
    pub method: String,
    /// Full path template with the plugin's prefix, parameters as `{name}`.
    pub path: String,
}

/// One event.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEvent {
    /// Plugin name.
    pub plugin: String,
    /// Event name (policies write `plugin.name`).
    pub name: String,
    /// Field names the event carries.
    #[serde(default)]
    pub fields: Vec<String>,
    /// Operation ids of the routes that emit it.
    #[serde(default)]
    pub emitted_by: Vec<String>,
}

/// A rule a plugin caches under from its own code.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogNamedRule {
    /// Plugin name.
    pub plugin: String,
    /// Rule name.
    pub rule: String,
    /// Operation ids of the routes whose handlers use it.
    #[serde(default)]
    pub operations: Vec<String>,
    /// How the plugin builds the key, in words.
    #[serde(default)]
    pub key: String,
}

/// One warm source.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogWarmSource {
    /// Plugin name.
    pub plugin: String,
    /// Source name (policies write `plugin.name`).
    pub name: String,
}

impl Catalog {
    /// Adds a route.
    pub fn route(mut self, plugin: &str, operation: &str, method: &str, path: &str) -> Self {
        self.routes.push(CatalogRoute {
            plugin: plugin.into(),
            operation: operation.into(),
            method: method.to_ascii_uppercase(),
            path: path.into(),
        });
        self
    }

    /// Adds an event.
    pub fn event(mut self, plugin: &str, name: &str, fields: &[&str]) -> Self {
        self.events.push(CatalogEvent {
            plugin: plugin.into(),
            name: name.into(),
            fields: fields.iter().map(|f| f.to_string()).collect(),
            emitted_by: Vec::new(),
        });
        self
    }

    /// Records that `operations` of `plugin` emit `event` (added before).
    pub fn emitted_by(mut self, plugin: &str, event: &str, operations: &[&str]) -> Self {
        if let Some(e) = self
            .events
            .iter_mut()
            .find(|e| e.plugin == plugin && e.name == event)
        {
            e.emitted_by = operations.iter().map(|o| o.to_string()).collect();
        }
        self
    }

    /// Adds a rule `plugin` caches under from code in the handlers of `operations`.
    pub fn named_rule(mut self, plugin: &str, rule: &str, operations: &[&str], key: &str) -> Self {
        self.named_rules.push(CatalogNamedRule {
            plugin: plugin.into(),
            rule: rule.into(),
            operations: operations.iter().map(|o| o.to_string()).collect(),
            key: key.into(),
        });
        self
    }

    /// Adds a warm source.
    pub fn warm_source(mut self, plugin: &str, name: &str) -> Self {
        self.warm_sources.push(CatalogWarmSource {
            plugin: plugin.into(),
            name: name.into(),
        });
        self
    }

    /// Says that `plugin`'s days are in `zone`.
    pub fn time_zone(mut self, plugin: &str, zone: &str) -> Self {
        self.time_zones.insert(plugin.into(), zone.into());
        self
    }

    /// Gives `plugin` the policy it ships.
    pub fn default_policy(mut self, plugin: &str, yaml: &str) -> Self {
        self.default_policies.insert(plugin.into(), yaml.into());
        self
    }

    /// The route of `plugin` with `operation`.
    pub fn find_route(&self, plugin: &str, operation: &str) -> Option<&CatalogRoute> {
        self.routes
            .iter()
            .find(|r| r.plugin == plugin && r.operation == operation)
    }

    pub(crate) fn has_plugin(&self, plugin: &str) -> bool {
        self.routes.iter().any(|r| r.plugin == plugin)
            || self.events.iter().any(|e| e.plugin == plugin)
            || self.warm_sources.iter().any(|w| w.plugin == plugin)
    }

    /// Every plugin named by a route, event or warm source.
    pub fn plugins(&self) -> Vec<&str> {
        let mut v: Vec<&str> = self
            .routes
            .iter()
            .map(|r| r.plugin.as_str())
            .chain(self.events.iter().map(|e| e.plugin.as_str()))
            .chain(self.warm_sources.iter().map(|w| w.plugin.as_str()))
            .collect();
        v.sort_unstable();
        v.dedup();
        v
    }
}
