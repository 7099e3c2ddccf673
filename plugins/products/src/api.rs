//! The plugin's HTTP API under [`crate::BASE`]. Handlers parse and check their input, then
//! call the cached service functions of [`crate::service`].
//!
//! Every route answers errors as JSON `{"error", "message", "field"}`; malformed input that
//! poem-openapi rejects before the handler runs gets the same shape, naming the parameter
//! or body field.

use std::sync::Arc;

use larder_plugin::{Invalidation, JsonBody, PluginApi, RuleCounts, principal_of};
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use poem_openapi::types::ToJSON;
use poem_openapi::{ApiResponse, Object, OpenApi};
use serde_json::{Value, json};

use crate::error::ProductsError;
use crate::model::{CatalogPage, CategoryList, Preferences, Product, StaticEntry};
use crate::monitor::OperationMetrics;
use crate::store::{self, CatalogQuery, ProductPatch};
use crate::{State, WARM_CATALOG};

/// The body of every error response.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsError")]
pub struct ErrorBody {
    /// Machine-readable code: `invalid_request`, `not_found`, `forbidden`, ...
    pub error: String,
    /// What is wrong, for a human.
    pub message: String,
    /// The request parameter or body field at fault, when one is.
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
}

/// A 200 reply with the plugin's error responses.
#[derive(ApiResponse)]
#[oai(bad_request_handler = "bad_request")]
pub enum Reply<T: ToJSON> {
    /// Done.
    #[oai(status = 200)]
    Ok(Json<T>),
    /// The input is malformed; `field` names it.
    #[oai(status = 400)]
    BadRequest(Json<ErrorBody>),
    /// The route needs a verified user (preferences).
    #[oai(status = 401)]
    Unauthorized(Json<ErrorBody>),
    /// The verified user may not do this (another user's preferences).
    #[oai(status = 403)]
    Forbidden(Json<ErrorBody>),
    /// Something the request names does not exist.
    #[oai(status = 404)]
    NotFound(Json<ErrorBody>),
    /// The server failed.
    #[oai(status = 500)]
    Internal(Json<ErrorBody>),
}

fn bad_request<T: ToJSON>(err: poem::Error) -> Reply<T> {
    let failure = larder_plugin::body::parse_failure(&err);
    Reply::BadRequest(Json(ErrorBody {
        error: "invalid_request".into(),
        message: failure.message,
        field: failure.field,
    }))
}

fn body(error: &str, message: String, field: Option<String>) -> Json<ErrorBody> {
    Json(ErrorBody {
        error: error.into(),
        message,
        field,
    })
}

impl<T: ToJSON> From<Result<T, ProductsError>> for Reply<T> {
    fn from(r: Result<T, ProductsError>) -> Self {
        match r {
            Ok(v) => Reply::Ok(Json(v)),
            Err(ProductsError::Invalid { field, message }) => {
                Reply::BadRequest(body("invalid_request", message, Some(field)))
            }
            Err(ProductsError::Unauthorized(m)) => {
                Reply::Unauthorized(body("unauthorized", m, None))
            }
            Err(ProductsError::Forbidden(m)) => Reply::Forbidden(body("forbidden", m, None)),
            Err(ProductsError::NotFound { field, message }) => {
                Reply::NotFound(body("not_found", message, Some(field)))
            }
            Err(ProductsError::Internal(m)) => {
                tracing::error!(plugin = "products", error = %m, "request failed");
                Reply::Internal(body("internal_error", m, None))
            }
        }
    }
}

/// A product id as the path writes it: a positive integer without leading zeros, so one
/// product has one key.
fn product_id(text: &str) -> Result<i64, ProductsError> {
    let canonical = !text.is_empty()
        && text.len() <= 18
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if !canonical {
        return Err(ProductsError::invalid(
            "id",
            format!("expected a positive integer id without leading zeros, got `{text}`"),
        ));
    }
    text.parse()
        .map_err(|e| ProductsError::invalid("id", format!("`{text}`: {e}")))
}

/// A user id (a JWT's user, or `key:<name>` for an API key) or a static-data key: 1–64 of
/// `A-Z a-z 0-9 _ . @ : -`.
fn name(field: &str, text: &str) -> Result<(), ProductsError> {
    let ok = (1..=64).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'@' | b'-' | b':'));
    if ok {
        Ok(())
    } else {
        Err(ProductsError::invalid(
            field,
            format!("`{text}` must be 1 to 64 letters, digits, `_`, `.`, `@`, `:` or `-`"),
        ))
    }
}

/// The verified user, who must be `user` (`me` names the caller): preferences are per user
/// and checked before the cache is asked, so no entry is ever served to another user.
/// Users are named as the core verifies them: `jwt:<subject>`, `key:<api key name>`.
fn own(req: &poem::Request, user: &str) -> Result<String, ProductsError> {
    let Some(principal) = principal_of(req) else {
        return Err(ProductsError::Unauthorized(
            "preferences are per user: send a bearer token or API key of that user".into(),
        ));
    };
    if user != "me" && principal.user != user {
        return Err(ProductsError::Forbidden(format!(
            "`{}` may read and change only their own preferences (`/user/me/preferences`), not `{user}`'s",
            principal.user
        )));
    }
    Ok(principal.user.clone())
}

fn example_product_id() -> String {
    "7".into()
}

fn example_user() -> String {
    "me".into()
}

fn example_static_key() -> String {
    store::APP_CONFIG.into()
}

fn example_new_static_key() -> String {
    "banner".into()
}

/// A static-data value to store.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsStaticBody", example)]
pub struct StaticBody {
    /// Any JSON value (not `null`).
    pub value: Value,
}

impl poem_openapi::types::Example for StaticBody {
    fn example() -> Self {
        StaticBody {
            value: json!({ "text": "Winter sale: 20% off everything", "until": "2027-01-06" }),
        }
    }
}

/// What a product update changes. Every field is optional; at least one must be given.
#[derive(Object, Debug, Clone, Default)]
#[oai(rename = "ProductsProductUpdate")]
#[oai(example)]
pub struct ProductUpdate {
    /// New name (1–200 characters).
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    /// New price in cents.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000000")))]
    pub price_cents: Option<i64>,
    /// New stock.
    #[oai(validator(minimum(value = "0"), maximum(value = "1000000000")))]
    pub stock: Option<i64>,
    /// New category slug (one of `GET /categories`).
    pub category: Option<String>,
    /// New one-sentence summary.
    #[oai(validator(min_length = 1, max_length = 500))]
    pub summary: Option<String>,
    /// New description body.
    #[oai(validator(min_length = 1, max_length = 20000))]
    pub body: Option<String>,
    /// Attributes to set (a `null` value removes one); others stay.
    pub attributes: Option<std::collections::BTreeMap<String, Value>>,
}

impl poem_openapi::types::Example for ProductUpdate {
    fn example() -> Self {
        ProductUpdate {
            price_cents: Some(2499),
            stock: Some(40),
            ..Default::default()
        }
    }
}

/// What a preferences update changes; others stay.
#[derive(Object, Debug, Clone, Default)]
#[oai(example)]
#[oai(rename = "ProductsPreferencesUpdate")]
pub struct PreferencesUpdate {
    /// Language code, e.g. `en`.
    #[oai(validator(min_length = 2, max_length = 8))]
    pub language: Option<String>,
    /// ISO 4217 currency, e.g. `EUR`.
    #[oai(validator(min_length = 3, max_length = 3))]
    pub currency: Option<String>,
    /// Catalog page size, 1 to 100.
    #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
    pub page_size: Option<u32>,
    /// Category slugs.
    #[oai(validator(max_items = 20))]
    pub favourite_categories: Option<Vec<String>>,
    /// Newsletter subscription.
    pub newsletter: Option<bool>,
    /// `light`, `dark` or `system`.
    pub theme: Option<String>,
}

impl poem_openapi::types::Example for PreferencesUpdate {
    fn example() -> Self {
        PreferencesUpdate {
            theme: Some("dark".into()),
            page_size: Some(50),
            ..Default::default()
        }
    }
}

/// Seed 003's `CacheStats` for this plugin's rules, with `evictions` added.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsCacheStats")]
pub struct CacheStats {
    /// Lookups answered from the cache (L1, L2, or stale).
    pub hits: u64,
    /// Lookups that loaded.
    pub misses: u64,
    /// Values loaded and stored.
    pub sets: u64,
    /// Entries this plugin's own purges removed (static data, preferences, `/cache/clear`);
    /// purges of its writes' triggers are in `/admin/audit`.
    pub deletes: u64,
    /// Loads that failed.
    pub errors: u64,
    /// L1 entries evicted to stay within the byte budget (the L1 is shared by every plugin).
    pub evictions: u64,
    /// `hits / total_requests`, a fraction 0–1 (seed 003's unit); 0 with no traffic.
    pub hit_rate: f64,
    /// `hits + misses`.
    pub total_requests: u64,
}

/// Seed 003's performance report.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsPerformanceReport")]
pub struct PerformanceReport {
    /// The cache counters.
    pub cache_stats: CacheStats,
    /// Rates, sizes and per-operation timings.
    pub performance_metrics: PerformanceMetrics,
    /// Thresholds crossed, in words.
    pub alerts: Vec<String>,
    /// What to do about them.
    pub recommendations: Vec<String>,
    /// The thresholds the alerts use (`plugins.products.settings.alerts`).
    pub thresholds: Thresholds,
}

/// Rates, sizes and timings.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsPerformanceMetrics")]
pub struct PerformanceMetrics {
    /// Hits over lookups, 0–1.
    pub hit_rate: f64,
    /// Misses over lookups, 0–1.
    pub miss_rate: f64,
    /// Failed service calls over all, 0–1.
    pub error_rate: f64,
    /// Entries in L1 (every plugin's).
    pub l1_entries: u64,
    /// Bytes in L1 (every plugin's).
    pub l1_bytes: u64,
    /// Hit rate per rule of this plugin (rules with traffic).
    pub rule_hit_rates: Value,
    /// The service functions' timings, milliseconds.
    pub operations: Vec<OperationMetrics>,
}

/// The alert thresholds.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsThresholds")]
pub struct Thresholds {
    /// Alert below this hit rate (0–1).
    pub min_hit_rate: f64,
    /// Alert above this error rate (0–1).
    pub max_error_rate: f64,
    /// Alert when an operation's mean is above this, ms.
    pub max_response_ms: f64,
}

/// What a warm run did.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsWarmReport")]
pub struct WarmReport {
    /// The source, `products.catalog`.
    pub source: String,
    /// The warming job that ran it (the policy's `products-catalog` when present).
    pub job: String,
    /// Requests answered 2xx: entries now warm.
    pub entries: u64,
    /// Requests that failed.
    pub errors: u64,
    /// The first failures.
    pub error_samples: Vec<String>,
    /// How long it took, ms.
    pub duration_ms: u64,
}

/// What a clear removed.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsClearReport")]
pub struct ClearReport {
    /// Seed 003's `clear() -> bool`: true once the purge ran.
    pub cleared: bool,
    /// Entries removed (this plugin's only).
    pub entries: u64,
}

/// What a static-data delete did.
#[derive(Object, Debug, Clone)]
#[oai(rename = "ProductsDeleteReport")]
pub struct DeleteReport {
    /// The key.
    pub key: String,
    /// Seed 003's `invalidate_static_data() -> bool`: whether there was an entry.
    pub deleted: bool,
}

fn stats_of(stats: &Value, purged: u64) -> CacheStats {
    let sum = larder_plugin::rule_counts(stats).into_iter().fold(
        RuleCounts::default(),
        |mut sum, (_, c)| {
            sum.hits += c.hits;
            sum.misses += c.misses;
            sum.loads += c.loads;
            sum.load_errors += c.load_errors;
            sum
        },
    );
    let total = sum.hits + sum.misses;
    CacheStats {
        hits: sum.hits,
        misses: sum.misses,
        sets: sum.loads.saturating_sub(sum.load_errors),
        deletes: purged,
        errors: sum.load_errors,
        evictions: stats["l1"]["evictions"].as_u64().unwrap_or(0),
        hit_rate: rate(sum.hits, total),
        total_requests: total,
    }
}

/// `part / whole` to four decimals; 0 when `whole` is.
fn rate(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        (part as f64 / whole as f64 * 10_000.0).round() / 10_000.0
    }
}

/// Hit rate per rule with traffic, and the lowest one.
fn rule_rates(stats: &Value) -> (serde_json::Map<String, Value>, Option<(String, f64)>) {
    let mut rates = serde_json::Map::new();
    let mut lowest: Option<(String, f64)> = None;
    for (name, c) in larder_plugin::rule_counts(stats) {
        let total = c.hits + c.misses;
        if total == 0 {
            continue;
        }
        let r = rate(c.hits, total);
        rates.insert(name.clone(), json!(r));
        if lowest.as_ref().is_none_or(|(_, l)| r < *l) {
            lowest = Some((name, r));
        }
    }
    (rates, lowest)
}

/// The plugin's routes.
pub struct ProductsApi(pub Arc<State>);

/// The routes, erased for the core.
pub fn routes(state: Arc<State>) -> PluginApi {
    PluginApi::new(ProductsApi(state))
}

#[OpenApi(prefix_path = "/products-api")]
impl ProductsApi {
    /// One product
    ///
    /// The product with its description. Cached under rule `products-product` (5 min), key
    /// `product:{id}`; an update purges it.
    #[oai(
        path = "/products/:id",
        method = "get",
        operation_id = "products_get_product"
    )]
    async fn get_product(
        &self,
        #[oai(example = "example_product_id")] id: Path<String>,
    ) -> Reply<Product> {
        let r = async {
            let id = product_id(&id)?;
            Ok(self.0.product(id).await?.value)
        };
        r.await.into()
    }

    /// Update a product
    ///
    /// Changes the given fields; needs `products:write`. Emits `product.updated` (and
    /// `product.moved` when the category changes): the policy purges that product and the
    /// catalog pages before this answer is sent; other products stay cached.
    #[oai(
        path = "/products/:id",
        method = "put",
        operation_id = "products_update_product"
    )]
    async fn update_product(
        &self,
        #[oai(example = "example_product_id")] id: Path<String>,
        update: JsonBody<ProductUpdate>,
    ) -> Reply<Product> {
        let r = async {
            let id = product_id(&id)?;
            let u = update.0;
            if u.name.is_none()
                && u.price_cents.is_none()
                && u.stock.is_none()
                && u.category.is_none()
                && u.summary.is_none()
                && u.body.is_none()
                && u.attributes.is_none()
            {
                return Err(ProductsError::invalid(
                    "body",
                    "no field to change: give at least one of name, price_cents, stock, category, summary, body, attributes",
                ));
            }
            self.0
                .update_product(
                    id,
                    ProductPatch {
                        name: u.name,
                        price_cents: u.price_cents,
                        stock: u.stock,
                        category: u.category,
                        summary: u.summary,
                        body: u.body,
                        attributes: u.attributes,
                    },
                )
                .await
        };
        r.await.into()
    }

    /// Catalog
    ///
    /// A page of products, optionally of one category. Cached under rule
    /// `products-catalog` (10 min), key `catalog:{category}:{sort}:{page}:{page_size}` with
    /// the defaults filled in; any product update purges every page (tag `catalog`).
    #[oai(path = "/products", method = "get", operation_id = "products_catalog")]
    async fn catalog(
        &self,
        /// Category slug (see `GET /categories`); all when absent.
        category: Query<Option<String>>,
        /// `id` (default), `name`, `price`, `-price`, `rating` or `newest`.
        sort: Query<Option<String>>,
        /// Page, from 1.
        #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
        page: Query<Option<u32>>,
        /// Products per page, 1 to 100 (default 20).
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))]
        page_size: Query<Option<u32>>,
    ) -> Reply<CatalogPage> {
        let r = async {
            let sort = match sort.0.as_deref() {
                None => "id",
                Some(s) => store::SORTS
                    .iter()
                    .map(|(name, _)| *name)
                    .find(|name| *name == s)
                    .ok_or_else(|| {
                        ProductsError::invalid(
                            "sort",
                            format!(
                                "unknown sort `{s}`; one of: {}",
                                store::SORTS
                                    .iter()
                                    .map(|(n, _)| *n)
                                    .collect::<Vec<_>>()
                                    .join(", ")
                            ),
                        )
                    })?,
            };
            let q = CatalogQuery {
                category: category.0.clone(),
                sort,
                page: page.0.unwrap_or(1),
                page_size: page_size.0.unwrap_or(store::DEFAULT_PAGE_SIZE),
            };
            Ok(self.0.catalog(q).await?.value)
        };
        r.await.into()
    }

    /// Categories
    ///
    /// Every category with its product count. Cached under rule `products-categories`
    /// (30 min); purged when a product moves to another category.
    #[oai(
        path = "/categories",
        method = "get",
        operation_id = "products_categories"
    )]
    async fn categories(&self) -> Reply<CategoryList> {
        let r = async { Ok(self.0.categories().await?.value) };
        r.await.into()
    }

    /// A user's preferences
    ///
    /// Only the verified user themselves may read them (401 without credentials, 403 for
    /// another user), checked before the cache. `{id}` is the user as the server verified
    /// them (`jwt:<subject>`, `key:<api key name>`), or `me`. Cached under rule
    /// `products-user-preferences` (2 min), key `user:{id}:preferences`. A user who never
    /// saved any gets the defaults (`stored: false`).
    #[oai(
        path = "/user/:id/preferences",
        method = "get",
        operation_id = "products_user_preferences"
    )]
    async fn preferences(
        &self,
        req: &poem::Request,
        #[oai(example = "example_user")] id: Path<String>,
    ) -> Reply<Preferences> {
        let r = async {
            name("id", &id)?;
            let user = own(req, &id)?;
            Ok(self.0.preferences(&user).await?.value)
        };
        r.await.into()
    }

    /// Save a user's preferences
    ///
    /// The verified user changes their own preferences (given fields only). Their cached
    /// preferences are purged before the answer; `preferences.updated` is emitted for the
    /// operator's own triggers.
    #[oai(
        path = "/user/:id/preferences",
        method = "put",
        operation_id = "products_update_preferences"
    )]
    async fn update_preferences(
        &self,
        req: &poem::Request,
        #[oai(example = "example_user")] id: Path<String>,
        update: JsonBody<PreferencesUpdate>,
    ) -> Reply<Preferences> {
        let r = async {
            name("id", &id)?;
            let user = own(req, &id)?;
            let u = update.0;
            let mut p = self.0.db.run(move |c| store::preferences(c, &user)).await?;
            if let Some(theme) = &u.theme
                && !["light", "dark", "system"].contains(&theme.as_str())
            {
                return Err(ProductsError::invalid(
                    "theme",
                    format!("unknown theme `{theme}`; one of: light, dark, system"),
                ));
            }
            for slug in u.favourite_categories.iter().flatten() {
                self.0.known_category("favourite_categories", slug)?;
            }
            if let Some(v) = u.language {
                p.language = v;
            }
            if let Some(v) = u.currency {
                p.currency = v.to_uppercase();
            }
            if let Some(v) = u.page_size {
                p.page_size = v;
            }
            if let Some(v) = u.favourite_categories {
                p.favourite_categories = v;
            }
            if let Some(v) = u.newsletter {
                p.newsletter = v;
            }
            if let Some(v) = u.theme {
                p.theme = v;
            }
            self.0.save_preferences(p).await
        };
        r.await.into()
    }

    /// Configuration
    ///
    /// The app configuration: static entry `app_config`, cached under rule
    /// `products-static` (24 h, served stale for 7 days if the database fails).
    #[oai(
        path = "/configuration",
        method = "get",
        operation_id = "products_configuration"
    )]
    async fn configuration(&self) -> Reply<Value> {
        let r = async { Ok(self.0.static_data(store::APP_CONFIG).await?.value.value) };
        r.await.into()
    }

    /// Warm the catalog
    ///
    /// Runs warm source `products.catalog` now through the server (the policy's
    /// `products-catalog` job, with its batch size and concurrency). Needs `cache:manage`.
    #[oai(
        path = "/cache/warm",
        method = "post",
        operation_id = "products_cache_warm"
    )]
    async fn warm(&self) -> Reply<WarmReport> {
        let r = async {
            let runs = self
                .0
                .ctx
                .warm(&[WARM_CATALOG.name])
                .await
                .map_err(|e| ProductsError::internal(e.to_string()))?;
            let run = runs.into_iter().next().unwrap_or_default();
            Ok(WarmReport {
                source: run.source,
                job: run.job,
                entries: run.entries,
                errors: run.errors,
                error_samples: run.error_samples,
                duration_ms: run.duration_ms,
            })
        };
        r.await.into()
    }

    /// Read static data
    ///
    /// Seed 003's `get_static_data`. Needs `cache:read`.
    #[oai(
        path = "/cache/static/:key",
        method = "get",
        operation_id = "products_static_get"
    )]
    async fn static_get(
        &self,
        #[oai(example = "example_static_key")] key: Path<String>,
    ) -> Reply<StaticEntry> {
        let r = async {
            name("key", &key)?;
            Ok(self.0.static_data(&key).await?.value)
        };
        r.await.into()
    }

    /// Store static data
    ///
    /// Seed 003's `cache_static_data`: `value` (any JSON but `null`) is stored under the
    /// key and its cached copy dropped. Needs `cache:manage`.
    #[oai(
        path = "/cache/static/:key",
        method = "post",
        operation_id = "products_static_put"
    )]
    async fn static_put(
        &self,
        #[oai(example = "example_new_static_key")] key: Path<String>,
        body: JsonBody<StaticBody>,
    ) -> Reply<StaticEntry> {
        let r = async {
            name("key", &key)?;
            let value = body.0.value;
            if value.is_null() {
                return Err(ProductsError::invalid(
                    "value",
                    "give the JSON value to store (use DELETE to remove an entry)",
                ));
            }
            self.0.put_static(&key, value).await
        };
        r.await.into()
    }

    /// Delete static data
    ///
    /// Seed 003's `invalidate_static_data`: removes the entry and its cached copy;
    /// `deleted` says whether there was one. Needs `cache:manage`.
    #[oai(
        path = "/cache/static/:key",
        method = "delete",
        operation_id = "products_static_delete"
    )]
    async fn static_delete(
        &self,
        #[oai(example = "example_new_static_key")] key: Path<String>,
    ) -> Reply<DeleteReport> {
        let r = async {
            name("key", &key)?;
            let deleted = self.0.delete_static(&key).await?;
            Ok(DeleteReport {
                key: key.0.clone(),
                deleted,
            })
        };
        r.await.into()
    }

    /// Refresh static data
    ///
    /// Seed 003's `refresh_static_data`: drops the cached copy and loads the stored one.
    /// Needs `cache:manage`.
    #[oai(
        path = "/cache/static/:key/refresh",
        method = "post",
        operation_id = "products_static_refresh"
    )]
    async fn static_refresh(
        &self,
        #[oai(example = "example_static_key")] key: Path<String>,
    ) -> Reply<StaticEntry> {
        let r = async {
            name("key", &key)?;
            self.0.refresh_static(&key).await
        };
        r.await.into()
    }

    /// Cache statistics
    ///
    /// Seed 003's `CacheStats` over this plugin's rules, with `evictions`. Needs
    /// `cache:read`.
    #[oai(
        path = "/cache/stats",
        method = "get",
        operation_id = "products_cache_stats"
    )]
    async fn stats(&self) -> Reply<CacheStats> {
        let stats = self.0.ctx.cache_stats().await;
        let purged = self.0.purged.load(std::sync::atomic::Ordering::Relaxed);
        Reply::Ok(Json(stats_of(&stats, purged)))
    }

    /// Performance report
    ///
    /// Statistics, rates, per-operation timings, alerts (hit rate below 80 %, error rate
    /// above 10 %, mean response above 100 ms, by default) and recommendations. Needs
    /// `cache:read`.
    #[oai(
        path = "/cache/performance",
        method = "get",
        operation_id = "products_cache_performance"
    )]
    async fn performance(&self) -> Reply<PerformanceReport> {
        let stats = self.0.ctx.cache_stats().await;
        let purged = self.0.purged.load(std::sync::atomic::Ordering::Relaxed);
        let cache_stats = stats_of(&stats, purged);
        let limits = &self.0.config.alerts;
        let operations = self.0.monitor.snapshot();
        let calls: u64 = operations.iter().map(|o| o.count).sum();
        let failures: u64 = operations.iter().map(|o| o.failures).sum();
        let error_rate = rate(failures, calls);
        let (rates, lowest) = rule_rates(&stats);
        let mut alerts = Vec::new();
        let mut recommendations = Vec::new();
        if cache_stats.total_requests > 0 && cache_stats.hit_rate < limits.min_hit_rate {
            alerts.push(format!(
                "hit rate {:.1}% is below {:.0}%",
                cache_stats.hit_rate * 100.0,
                limits.min_hit_rate * 100.0
            ));
            if let Some((rule, rate)) = &lowest {
                recommendations.push(format!(
                    "rule `{rule}` hits {:.1}%: lengthen its TTL in policies/products.yaml, or warm it (POST {}/cache/warm)",
                    rate * 100.0,
                    crate::BASE
                ));
            }
        }
        if error_rate > limits.max_error_rate {
            alerts.push(format!(
                "error rate {:.1}% is above {:.0}% ({failures} of {calls} operations failed)",
                error_rate * 100.0,
                limits.max_error_rate * 100.0
            ));
            recommendations.push(format!(
                "check the database `{}` and the server log for `products` errors",
                self.0.config.database.display()
            ));
        }
        for op in operations.iter().filter(|o| o.count > 0) {
            if op.avg_ms > limits.max_response_ms {
                alerts.push(format!(
                    "`{}` takes {:.1} ms on average (over {:.0} ms)",
                    op.operation, op.avg_ms, limits.max_response_ms
                ));
                recommendations.push(format!(
                    "`{}` is slow on loads ({} of {} calls hit the cache): warm it, or lengthen its rule's TTL",
                    op.operation, op.cache_hits, op.count
                ));
            }
        }
        if cache_stats.evictions > 0 {
            recommendations.push(format!(
                "L1 evicted {} entries: raise `cache.l1_capacity_bytes` if hot entries are among them",
                cache_stats.evictions
            ));
        }
        if cache_stats.total_requests == 0 {
            recommendations.push(format!(
                "no lookups yet: send traffic or POST {}/cache/warm",
                crate::BASE
            ));
        }
        let l1 = |k: &str| stats["l1"][k].as_u64().unwrap_or(0);
        Reply::Ok(Json(PerformanceReport {
            performance_metrics: PerformanceMetrics {
                hit_rate: cache_stats.hit_rate,
                miss_rate: rate(cache_stats.misses, cache_stats.total_requests),
                error_rate: rate(failures, calls),
                l1_entries: l1("entries"),
                l1_bytes: l1("bytes"),
                rule_hit_rates: Value::Object(rates),
                operations,
            },
            cache_stats,
            alerts,
            recommendations,
            thresholds: Thresholds {
                min_hit_rate: limits.min_hit_rate,
                max_error_rate: limits.max_error_rate,
                max_response_ms: limits.max_response_ms,
            },
        }))
    }

    /// Clear this plugin's cache
    ///
    /// Seed 003's `clear()`, scoped: removes every entry of this plugin and no other's.
    /// Needs `cache:manage`.
    #[oai(
        path = "/cache/clear",
        method = "delete",
        operation_id = "products_cache_clear"
    )]
    async fn clear(&self) -> Reply<ClearReport> {
        let r = async {
            let entries = self.0.purge(Invalidation::All).await?;
            Ok(ClearReport {
                cleared: true,
                entries,
            })
        };
        r.await.into()
    }
}
