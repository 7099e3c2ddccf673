//! The plugin's typed settings (`plugins.analytics.settings` in the server config).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the `analytics` plugin. Every field has a default, so the plugin runs with no
/// settings block at all.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct AnalyticsConfig {
    /// SQLite database file, relative to the working directory. Created and filled with a
    /// generated dataset on first start; a file whose generation did not finish is rebuilt.
    pub database: PathBuf,
    /// PostgreSQL instead of SQLite: `postgres://user[:password]@host[:port]/database` (or
    /// the `host=… dbname=…` form). The dataset lives in [`Self::database_schema`] of that
    /// database and is generated there on first start. Unencrypted connections only: run it
    /// on a private network or a local socket.
    pub database_url: Option<String>,
    /// The PostgreSQL schema the plugin owns (created when missing; its tables are dropped and
    /// rebuilt when they hold no complete dataset). Letters, digits and `_`.
    pub database_schema: String,
    /// Seed of the dataset generator: one seed, one size and one anchor day always give the
    /// same rows.
    pub seed: u64,
    /// Size of the generated dataset.
    pub dataset: DatasetConfig,
    /// SQLite connections used for reads (writes use one dedicated connection).
    #[schemars(range(min = 1, max = 32))]
    pub read_connections: u32,
    /// Offset (`(page - 1) * size`) from which a page answer carries a hint to use the
    /// cursor instead: an offset page costs a scan of every row before it.
    pub deep_page_offset: u64,
}

/// Size of the generated dataset.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Merchants (tenants); their ids are `acme`, `globex`, `initech`, ... in this order.
    #[schemars(range(min = 1, max = 8))]
    pub tenants: u32,
    /// Customers per tenant.
    #[schemars(range(min = 10, max = 1_000_000))]
    pub customers_per_tenant: u32,
    /// Products per tenant.
    #[schemars(range(min = 10, max = 100_000))]
    pub products_per_tenant: u32,
    /// Order lines in total, over all tenants (orders have 1 to 5 lines).
    #[schemars(range(min = 100, max = 50_000_000))]
    pub order_lines: u64,
    /// Days of history before the anchor day (today when the file is generated).
    #[schemars(range(min = 7, max = 3650))]
    pub days: u32,
}

impl Default for AnalyticsConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("data/analytics.db"),
            database_url: None,
            database_schema: "larder_analytics".into(),
            seed: 2,
            dataset: DatasetConfig::default(),
            read_connections: 4,
            deep_page_offset: 10_000,
        }
    }
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            tenants: 4,
            customers_per_tenant: 25_000,
            products_per_tenant: 2_000,
            order_lines: 1_000_000,
            days: 365,
        }
    }
}
