//! # The Larder plugin API
//!
//! A plugin is one type implementing [`Plugin`]. It brings its routes (a poem-openapi API),
//! names the events it emits and the warm sources it offers, and gets a [`PluginContext`]
//! from the core: its typed settings, the cache, an event emitter and a spawner.
//!
//! - [`plugin`]: the [`Plugin`] trait (what a plugin author implements) and its type-erased
//!   form the core drives.
//! - [`api`]: [`PluginApi`], a poem-openapi API erased so that the core can merge every
//!   plugin's routes and schemas into one OpenAPI document.
//! - [`context`]: [`PluginContext`] and the [`Host`] services behind it.
//! - [`body`]: [`JsonBody`], a JSON request body whose parse errors name the field.
//! - [`identity`]: the verified [`Principal`] of a request and the permissions routes need.
//! - [`abi`]: the `#[repr(C)]` declaration a dynamic plugin exports, the checks the loader
//!   makes before calling anything, and [`export_plugin!`].
//!
//! Built-in plugins register with one line in the `larder` binary's `main`
//! (`registry.register::<MyPlugin>()`);
//! a dynamic plugin adds `larder_plugin::export_plugin!(MyPlugin);` and builds as a `cdylib`.

pub mod abi;
pub mod api;
pub mod body;
pub mod context;
pub mod identity;
pub mod plugin;

pub use api::PluginApi;
pub use body::JsonBody;
pub use context::{
    CacheHealth, CachedBytes, Event, EventKind, EventSpec, Host, HttpDefaults, Invalidation,
    KeyListing, ListedKey, LoadedValue, NamedRule, NamedRuleSpec, OperationLimit, PluginContext,
    RuleCounts, WarmRequest, WarmRun, WarmSource, WarmSourceSpec, is_wildcard_only, rule_counts,
    rule_hits_and_misses,
};
pub use identity::{
    CACHE_MANAGE, CACHE_READ, Principal, PrincipalKind, RoutePermission, principal_of,
};
pub use plugin::{DynPlugin, Plugin, PluginError, PluginFactory, PluginInit, factory};

/// Re-exports plugin crates need in the exact versions the host was built with.
pub mod reexports {
    pub use poem;
    pub use poem_openapi;
    pub use schemars;
    pub use serde;
    pub use serde_json;
    pub use tokio;
    pub use tracing;
}
