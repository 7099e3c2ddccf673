//! The plugin's typed settings (`plugins.products.settings` in the server config).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the `products` plugin. Every field has a default, so the plugin runs with no
/// settings block at all.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct ProductsConfig {
    /// SQLite database file, relative to the working directory. Created and filled with a
    /// generated catalog on first start.
    pub database: PathBuf,
    /// Seed of the catalog generator: one seed and one size always give the same rows.
    pub seed: u64,
    /// Products generated on first start.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub products: u32,
    /// Users with stored preferences generated on first start: JWT subjects `user-1` …
    /// `user-N` (principals `jwt:user-1` …).
    #[schemars(range(min = 0, max = 1_000_000))]
    pub users: u32,
    /// Read connections to the database (writes share the pool; SQLite serialises them).
    #[schemars(range(min = 1, max = 32))]
    pub connections: u32,
    /// Alert thresholds of `GET /cache/performance` (seed 003's values by default).
    pub alerts: AlertThresholds,
}

/// When `GET /cache/performance` raises an alert.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AlertThresholds {
    /// Alert when the hit rate (0–1) of this plugin's rules is below this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_hit_rate: f64,
    /// Alert when the share (0–1) of failed operations is above this.
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_error_rate: f64,
    /// Alert when an operation's mean duration, in milliseconds, is above this.
    pub max_response_ms: f64,
}

impl Default for ProductsConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("data/products.db"),
            seed: 3,
            products: 5_000,
            users: 500,
            connections: 4,
            alerts: AlertThresholds::default(),
        }
    }
}

impl Default for AlertThresholds {
    fn default() -> Self {
        Self {
            min_hit_rate: 0.8,
            max_error_rate: 0.1,
            max_response_ms: 100.0,
        }
    }
}
