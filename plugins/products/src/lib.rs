//! # `products`: product descriptions, cached from code (seed 003)
//!
//! The built-in plugin behind `/products-api` (SPEC 2.3): products with their descriptions,
//! the catalog, categories, users' preferences and the app configuration, in an embedded
//! SQLite database generated on first start. It is the showcase of the programmatic cache
//! API, where seed 003 was a caching library with decorators:
//!
//! - every read is a service function ([`service`]) cached through
//!   [`PluginContext::get_or_load`] under a named policy rule with an explicit key
//!   (`product:7`, `catalog:audio:price:2:20`), never a hash of the arguments' memory;
//! - writes commit, then emit an event; `policies/products.yaml` maps it to exact purges
//!   (that product's key and the catalog's tag; the categories when a product moves);
//! - a warm source pages the catalog from the database and preloads it at start-up;
//! - static data (seed 003's `StaticDataCache`) lives in the database with a 24 h rule in
//!   front of it, and `/configuration` is its `app_config` entry.
//!
//! The routes mount no HTTP-layer rule: the handlers ask the cache themselves.
//!
//! ## Layout
//! - [`config`]: typed settings (`plugins.products.settings`).
//! - [`db`]: schema, the connection pool, the generated catalog.
//! - [`store`]: queries and writes.
//! - [`service`]: the cached service functions and the writes' events.
//! - [`monitor`]: per-operation timings for `/cache/performance`.
//! - [`api`]: the routes.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod model;
pub mod monitor;
pub mod service;
pub mod store;

use std::collections::BTreeMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, RwLock};

use larder_plugin::{
    CACHE_MANAGE, CACHE_READ, EventKind, EventSpec, NamedRule, NamedRuleSpec, Plugin, PluginApi,
    PluginContext, PluginError, PluginInit, RoutePermission, WarmRequest, WarmSource,
    WarmSourceSpec,
};

pub use config::ProductsConfig;
pub use error::ProductsError;

use crate::db::Db;
use crate::monitor::Monitor;

/// Where the plugin's routes live (the operator's `prefix` goes in front).
pub const BASE: &str = "/products-api";

/// Updates products.
pub const PRODUCTS_WRITE: &str = "products:write";

/// Rule of one product (`product:{id}`), seed 003's `@cached(ttl=300, key_prefix="product")`.
pub const RULE_PRODUCT: NamedRule = NamedRule::new("products-product");
/// Rule of catalog pages (`catalog:{category}:{sort}:{page}:{page_size}`).
pub const RULE_CATALOG: NamedRule = NamedRule::new("products-catalog");
/// Rule of the category list (`categories`).
pub const RULE_CATEGORIES: NamedRule = NamedRule::new("products-categories");
/// Rule of a user's preferences (`user:{id}:preferences`).
pub const RULE_PREFERENCES: NamedRule = NamedRule::new("products-user-preferences");
/// Rule of static data (`static:{key}`), `/configuration` included.
pub const RULE_STATIC: NamedRule = NamedRule::new("products-static");

/// A product changed (any field).
pub const PRODUCT_UPDATED: EventKind = EventKind::new(
    "product.updated",
    &["product_id", "category", "previous_category"],
    "A product's name, price, stock, description, attributes or category changed.",
);
/// A product moved to another category (also emits `product.updated`).
pub const PRODUCT_MOVED: EventKind = EventKind::new(
    "product.moved",
    &["product_id", "category", "previous_category"],
    "A product moved to another category, changing both categories' counts.",
);
/// A user saved preferences.
pub const PREFERENCES_UPDATED: EventKind = EventKind::new(
    "preferences.updated",
    &["user_id"],
    "A user saved their preferences.",
);

/// Warm source: every product, the categories, each category's first catalog page and
/// the configuration.
pub const WARM_CATALOG: WarmSource = WarmSource::new(
    "catalog",
    "Every product (GET /products-api/products/{id}, the ids paged from the database), the \
     categories, the first catalog page of each category and of all, and the configuration.",
);

/// Operation ids of the routes that need `cache:read`.
const CACHE_READ_OPERATIONS: &[&str] = &[
    "products_cache_stats",
    "products_cache_performance",
    "products_static_get",
];
/// Operation ids of the routes that need `cache:manage`.
const CACHE_MANAGE_OPERATIONS: &[&str] = &[
    "products_cache_warm",
    "products_cache_clear",
    "products_static_put",
    "products_static_delete",
    "products_static_refresh",
];

/// The plugin.
pub struct ProductsPlugin {
    state: Arc<State>,
}

/// What every route shares.
pub struct State {
    /// The settings.
    pub config: ProductsConfig,
    /// The database.
    pub db: Db,
    /// The core's services.
    pub ctx: PluginContext,
    /// Per-operation timings.
    pub monitor: Monitor,
    /// Largest product id (products are updated, never added).
    pub max_product_id: i64,
    /// Category slugs, sorted.
    pub categories: Vec<String>,
    /// Products per category slug, and under `""` in all.
    counts: RwLock<BTreeMap<String, i64>>,
    /// Entries this plugin's own purges removed (static data, preferences, `/cache/clear`).
    pub purged: AtomicU64,
}

impl State {
    /// The server's "now" as RFC 3339 (the core's clock, so tests run at a chosen instant).
    pub fn now_text(&self) -> String {
        jiff::Timestamp::try_from(self.ctx.now())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string()
    }

    /// Products in `category` (all with `None`), as this instance last counted them.
    pub fn total(&self, category: Option<&str>) -> i64 {
        let counts = self.counts.read().unwrap_or_else(|p| p.into_inner());
        counts.get(category.unwrap_or("")).copied().unwrap_or(0)
    }

    /// Recounts products per category (after a product moved).
    pub async fn refresh_counts(&self) -> Result<(), ProductsError> {
        let list = self.db.run(|c| store::categories(c)).await?;
        *self.counts.write().unwrap_or_else(|p| p.into_inner()) = counts_of(&list);
        Ok(())
    }
}

fn counts_of(list: &model::CategoryList) -> BTreeMap<String, i64> {
    let mut counts: BTreeMap<String, i64> = list
        .categories
        .iter()
        .map(|c| (c.slug.clone(), c.product_count))
        .collect();
    counts.insert(String::new(), list.total_products);
    counts
}

impl ProductsPlugin {
    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The requests of the catalog warm source. Product ids are read from the database a
    /// page at a time, never the whole table at once.
    pub async fn catalog_requests(&self) -> Result<Vec<WarmRequest>, ProductsError> {
        const PAGE: u32 = 500;
        let mut out = vec![
            WarmRequest::get(format!("{BASE}/categories")),
            WarmRequest::get(format!("{BASE}/configuration")),
            WarmRequest::get(format!("{BASE}/products")),
        ];
        for slug in &self.state.categories {
            out.push(WarmRequest::get(format!("{BASE}/products?category={slug}")));
        }
        let mut after = 0;
        loop {
            let ids = self
                .state
                .db
                .run(move |c| store::product_ids_after(c, after, PAGE))
                .await?;
            let Some(&last) = ids.last() else { break };
            out.extend(
                ids.iter()
                    .map(|id| WarmRequest::get(format!("{BASE}/products/{id}"))),
            );
            after = last;
        }
        Ok(out)
    }
}

impl Plugin for ProductsPlugin {
    type Config = ProductsConfig;
    const NAME: &'static str = "products";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "Product descriptions, catalog, categories, user \
         preferences and static configuration, cached from code under named rules.";
    // The shipped policy, kept in the repository's policy folder where operators read it.
    const DEFAULT_POLICY: Option<&'static str> =
        Some(include_str!("../../../policies/products.yaml"));

    async fn new(init: PluginInit<ProductsConfig>) -> Result<Self, PluginError> {
        let config = init.config;
        let ctx = init.context;
        let size = db::Size {
            products: config.products,
            users: config.users,
        };
        if size.products == 0 {
            return Err(PluginError::Config {
                path: "products".into(),
                message: "the catalog needs at least one product".into(),
            });
        }
        let now = jiff::Timestamp::try_from(ctx.now())
            .unwrap_or(jiff::Timestamp::UNIX_EPOCH)
            .to_string();
        // `larder check`, `explain` and `openapi` build the plugin only to look at it: a
        // small catalog in memory, no file in the working directory.
        let (path, size) = if ctx.inspecting() {
            (
                None,
                db::Size {
                    products: 1,
                    users: 0,
                },
            )
        } else {
            (Some(config.database.clone()), size)
        };
        let (connections, seed) = (config.connections, config.seed);
        let (db, made) = tokio::task::spawn_blocking(move || {
            Db::open_blocking(path.as_deref(), connections, seed, size, &now)
        })
        .await
        .map_err(|e| PluginError::failed(format!("products: start-up task failed: {e}")))?
        .map_err(|e| {
            PluginError::failed(format!(
                "products: cannot open `{}`: {e}",
                config.database.display()
            ))
        })?;
        if let Some(made) = made
            && !ctx.inspecting()
        {
            tracing::info!(
                database = %config.database.display(),
                products = made.products,
                users = made.users,
                "products: generated a fresh catalog"
            );
        }
        let (max_product_id, list, categories) = db
            .run(|c| {
                Ok((
                    store::max_product_id(c)?,
                    store::categories(c)?,
                    store::category_slugs(c)?,
                ))
            })
            .await
            .map_err(|e| PluginError::failed(format!("products: {e}")))?;
        Ok(Self {
            state: Arc::new(State {
                counts: RwLock::new(counts_of(&list)),
                config,
                db,
                ctx,
                monitor: Monitor::new(),
                max_product_id,
                categories,
                purged: AtomicU64::new(0),
            }),
        })
    }

    fn api(&self) -> PluginApi {
        api::routes(self.state.clone())
    }

    fn events(&self) -> Vec<EventSpec> {
        vec![
            PRODUCT_UPDATED
                .spec()
                .emitted_by(&["products_update_product"]),
            PRODUCT_MOVED
                .spec()
                .emitted_by(&["products_update_product"]),
            PREFERENCES_UPDATED
                .spec()
                .emitted_by(&["products_update_preferences"]),
        ]
    }

    fn named_rules(&self) -> Vec<NamedRuleSpec> {
        vec![
            RULE_PRODUCT.spec(&["products_get_product"], "product:<id>"),
            RULE_CATALOG.spec(
                &["products_catalog"],
                "catalog:<category|all>:<sort>:<page>:<page_size>, defaults filled in",
            ),
            RULE_CATEGORIES.spec(&["products_categories"], "categories"),
            RULE_PREFERENCES.spec(
                &["products_user_preferences"],
                "user:<id>:preferences, read only by that verified user",
            ),
            RULE_STATIC.spec(
                &["products_configuration", "products_static_get"],
                "static:<key> (`/configuration` is static:app_config)",
            ),
        ]
    }

    fn permissions(&self) -> Vec<RoutePermission> {
        let mut out = vec![RoutePermission::new(
            "products_update_product",
            &[PRODUCTS_WRITE],
        )];
        out.extend(
            CACHE_READ_OPERATIONS
                .iter()
                .map(|op| RoutePermission::new(op, &[CACHE_READ])),
        );
        out.extend(
            CACHE_MANAGE_OPERATIONS
                .iter()
                .map(|op| RoutePermission::new(op, &[CACHE_MANAGE])),
        );
        out
    }

    fn core_error_body(
        &self,
        _status: u16,
        error: &str,
        message: &str,
    ) -> Option<serde_json::Value> {
        // One error shape on every products path: the plugin's own has `field`, absent here.
        Some(serde_json::json!({ "error": error, "message": message }))
    }

    fn core_error_schema(&self) -> Option<String> {
        Some("ProductsError".into())
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![WARM_CATALOG.spec()]
    }

    async fn warm_source(&self, name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        if name != WARM_CATALOG.name {
            return Err(PluginError::failed(format!(
                "plugin `products` has no warm source `{name}`; it has `{}`",
                WARM_CATALOG.name
            )));
        }
        self.catalog_requests()
            .await
            .map_err(|e| PluginError::failed(e.to_string()))
    }
}
