//! The routes (SPEC 2.1, at the seed's paths) and how each one gets its data.
//!
//! Cached routes get their data through [`PluginContext::get_or_load`] under a named rule
//! (see [`rules`]); `metadata.cache_hit` is exactly the returned `cache_hit`. A loader
//! that fails returns an error (the cache engine may then serve a stale entry inside the
//! rule's `stale_if_error` window); it never substitutes mock data.

use larder_plugin::{JsonBody, NamedRule};
use std::future::Future;
use std::sync::{Arc, Mutex, OnceLock};

use larder_plugin::{CachedBytes, Invalidation, LoadedValue, PluginContext, PluginError};
use poem::Request;
use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};
use poem_openapi::payload::Json;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::client::UpstreamError;
use crate::config::Settings;
use crate::model::{
    AffiliateLinks, CacheCleared, CacheStats, Capabilities, Categories, Category, CategoryChildren,
    DetailsRequest, LinksRequest, Performance, Product, ProductDetails, ProductPage, SearchRequest,
    Sort, Status, Text, default_page_no, default_page_size,
};
use crate::query::{self, Invalid, ProductQuery, digest};
use crate::reply::{ApiError, Reply, finish};
use crate::source::Source;

/// Names of the policy rules this plugin caches under (see `policies/aliexpress.yaml`).
pub mod rules {
    use larder_plugin::NamedRule;

    /// Product searches (GET/POST `/api/products/search`, GET/POST `/api/products`).
    pub const SEARCH: NamedRule = NamedRule::new("aliexpress-search");
    /// The category list.
    pub const CATEGORIES: NamedRule = NamedRule::new("aliexpress-categories");
    /// Children of one category.
    pub const CATEGORY_CHILDREN: NamedRule = NamedRule::new("aliexpress-category-children");
    /// Products by id.
    pub const PRODUCT_DETAILS: NamedRule = NamedRule::new("aliexpress-product-details");
    /// Hot products.
    pub const HOT_PRODUCTS: NamedRule = NamedRule::new("aliexpress-hot-products");
    /// Affiliate links.
    pub const AFFILIATE_LINKS: NamedRule = NamedRule::new("aliexpress-affiliate-links");
}

/// Everything the routes share.
pub struct State {
    /// Resolved settings.
    pub settings: Settings,
    /// Real gateway or mock catalog.
    pub source: Source,
    /// The core's services.
    pub context: PluginContext,
    /// `/openapi-gpt.json` without its `servers`, built on first use.
    pub gpt_document: OnceLock<serde_json::Value>,
}

impl State {
    /// `get_or_load` under `rule`, keeping the loader's own error (the gateway's code and
    /// message) rather than the string the cache boundary carries.
    pub async fn cached<T, F, Fut>(
        self: &Arc<Self>,
        rule: &NamedRule,
        key: String,
        load: F,
    ) -> Result<LoadedValue<T>, ApiError>
    where
        T: Serialize + DeserializeOwned + Send + 'static,
        F: FnOnce(Arc<State>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let cached = self.cached_json(rule, key, load).await?;
        let value = serde_json::from_slice(&cached.bytes)
            .map_err(|e| ApiError::Internal(format!("cached value does not decode: {e}")))?;
        Ok(LoadedValue {
            value,
            cache_hit: cached.cache_hit,
        })
    }

    /// [`Self::cached`] without decoding: the value's JSON as cached, for an answer that
    /// splices it into the envelope ([`Reply::cached`]).
    pub async fn cached_json<T, F, Fut>(
        self: &Arc<Self>,
        rule: &NamedRule,
        key: String,
        load: F,
    ) -> Result<CachedBytes, ApiError>
    where
        T: Serialize + Send + 'static,
        F: FnOnce(Arc<State>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, ApiError>> + Send + 'static,
    {
        let failure: Arc<Mutex<Option<ApiError>>> = Arc::default();
        let slot = failure.clone();
        let state = self.clone();
        let result = self
            .context
            .get_or_load_json(rule, key, move || async move {
                load(state).await.map_err(|e| {
                    let message = e.to_string();
                    *slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                    PluginError::failed(message)
                })
            })
            .await;
        result.map_err(|e| {
            let ours = failure.lock().unwrap_or_else(|p| p.into_inner()).take();
            // No error of ours: this caller waited on another caller's load (coalesced) or
            // the cache itself failed. Still an upstream-side failure for the client.
            ours.unwrap_or_else(|| match e {
                PluginError::Failed(message) => {
                    ApiError::Upstream(UpstreamError::Unavailable(message))
                }
                other => ApiError::Internal(other.to_string()),
            })
        })
    }

    fn lang_currency(&self) -> String {
        format!(
            "{}:{}:{}",
            self.settings.integration(),
            self.settings.language,
            self.settings.currency
        )
    }

    /// This plugin's cache statistics in the seed's shape and the core's.
    pub async fn stats(&self, redis_connected: bool) -> CacheStats {
        let core = self.context.cache_stats().await;
        CacheStats::from_core(core, redis_connected, rules::SEARCH.name)
    }

    /// Key of the category list.
    pub fn categories_key(&self) -> String {
        format!(
            "categories:{}:{}",
            self.settings.integration(),
            self.settings.language
        )
    }

    /// Every category (top-level and children), through the cache.
    pub async fn all_categories(self: &Arc<Self>) -> Result<LoadedValue<Vec<Category>>, ApiError> {
        self.cached(&rules::CATEGORIES, self.categories_key(), |s| async move {
            Ok(s.source.categories(&s.settings).await?)
        })
        .await
    }

    async fn search(self: &Arc<Self>, req: SearchRequest) -> Result<Reply<ProductPage>, ApiError> {
        let query = ProductQuery::from_request(&req, true)?;
        let key = query.cache_key("search", &self.settings);
        let loaded = self
            .cached_json(&rules::SEARCH, key, move |s| async move {
                Ok(s.source.search(&query, &s.settings).await?)
            })
            .await?;
        Ok(Reply::cached(loaded.bytes, loaded.cache_hit, true))
    }

    async fn hot(self: &Arc<Self>, req: SearchRequest) -> Result<Reply<ProductPage>, ApiError> {
        let query = ProductQuery::from_request(&req, false)?;
        let key = query.cache_key("hot", &self.settings);
        let loaded = self
            .cached_json(&rules::HOT_PRODUCTS, key, move |s| async move {
                Ok(s.source.hot(&query, &s.settings).await?)
            })
            .await?;
        Ok(Reply::cached(loaded.bytes, loaded.cache_hit, true))
    }

    async fn details(
        self: &Arc<Self>,
        ids: &[String],
        field: &str,
    ) -> Result<Reply<ProductDetails>, ApiError> {
        let canonical = query::product_ids(ids, field)?;
        let key = format!("details:{}:{}", self.lang_currency(), canonical.join(","));
        let loaded = self
            .cached(&rules::PRODUCT_DETAILS, key, move |s| async move {
                Ok(s.source.details(&canonical, &s.settings).await?)
            })
            .await?;
        let found: Vec<Product> = in_request_order(ids, &loaded.value, |p| &p.product_id);
        if field == "id" && found.is_empty() {
            return Err(ApiError::NotFound(format!(
                "no product with id {}",
                ids.first().map(String::as_str).unwrap_or_default()
            )));
        }
        let requested = ids.len();
        Ok(Reply::ok(
            ProductDetails {
                found: found.len(),
                products: found,
                requested,
            },
            loaded.cache_hit,
            true,
        ))
    }

    async fn links(
        self: &Arc<Self>,
        urls: &[String],
        field: &str,
    ) -> Result<Reply<AffiliateLinks>, ApiError> {
        let canonical = query::urls(urls, field)?;
        let key = format!(
            "affiliate-links:{}:{}",
            self.settings.integration(),
            digest(&[
                ("tracking_id", self.settings.tracking_id.as_str()),
                ("urls", &canonical.join("\n")),
            ])
        );
        let loaded = self
            .cached(&rules::AFFILIATE_LINKS, key, move |s| async move {
                Ok(s.source.links(&canonical, &s.settings).await?)
            })
            .await?;
        let trimmed: Vec<String> = urls.iter().map(|u| u.trim().to_owned()).collect();
        let links = in_request_order(&trimmed, &loaded.value, |l| &l.original_url);
        Ok(Reply::ok(
            AffiliateLinks {
                processed_urls: links.len(),
                generated_links: links.iter().filter(|l| l.affiliate_url.is_some()).count(),
                affiliate_links: links,
            },
            loaded.cache_hit,
            true,
        ))
    }
}

/// Items of `loaded` in the order `asked` names them, each once.
fn in_request_order<T: Clone>(
    asked: &[String],
    loaded: &[T],
    id: impl Fn(&T) -> &String,
) -> Vec<T> {
    let mut seen = std::collections::HashSet::new();
    asked
        .iter()
        .map(|a| a.trim())
        .filter(|a| seen.insert(a.to_owned()))
        .filter_map(|a| loaded.iter().find(|item| id(item) == a).cloned())
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn search_request(
    keywords: Option<String>,
    category_ids: Option<String>,
    page_no: u32,
    page_size: u32,
    sort: Sort,
    min_sale_price: Option<f64>,
    max_sale_price: Option<f64>,
) -> SearchRequest {
    SearchRequest {
        keywords: keywords.map(Text),
        category_ids: category_ids.map(Text),
        page_no,
        page_size,
        sort,
        min_sale_price,
        max_sale_price,
    }
}

fn example_keywords() -> Option<String> {
    Some("wireless earbuds".into())
}

fn example_product_id() -> String {
    "1005006543210987".into()
}

fn example_parent_id() -> String {
    "44".into()
}

fn example_url() -> String {
    "https://www.aliexpress.com/item/1005006543210987.html".into()
}

/// The plugin's routes.
pub struct AliexpressApi {
    /// Shared state.
    pub state: Arc<State>,
}

#[OpenApi]
impl AliexpressApi {
    /// Search products
    ///
    /// Searches AliExpress products by keywords and/or categories, with price range and
    /// sort. Cached for 1 hour; the POST form of the same search shares the entry.
    #[oai(
        path = "/api/products/search",
        method = "get",
        operation_id = "search_products"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn search_get(
        &self,
        /// Words to search for. Required unless `category_ids` is given.
        #[oai(example = "example_keywords", validator(max_length = 200))]
        keywords: Query<Option<String>>,
        /// Comma-separated category ids, e.g. `44,509`.
        #[oai(validator(pattern = r"^\s*\d+\s*(,\s*\d+\s*)*$", max_length = 200))]
        category_ids: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(
            default = "default_page_no",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        page_no: Query<u32>,
        /// Results per page, 1–50.
        #[oai(
            default = "default_page_size",
            validator(minimum(value = "1"), maximum(value = "50"))
        )]
        page_size: Query<u32>,
        /// Sort order.
        #[oai(default)]
        sort: Query<Sort>,
        /// Lowest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        min_sale_price: Query<Option<f64>>,
        /// Highest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        max_sale_price: Query<Option<f64>>,
    ) -> Reply<ProductPage> {
        let req = search_request(
            keywords.0,
            category_ids.0,
            page_no.0,
            page_size.0,
            sort.0,
            min_sale_price.0,
            max_sale_price.0,
        );
        finish(self.state.search(req).await)
    }

    /// Search products (JSON body)
    ///
    /// The same search as `GET /api/products/search`, with the parameters in a JSON body.
    /// Cached for 1 hour, sharing entries with the GET form.
    #[oai(
        path = "/api/products/search",
        method = "post",
        operation_id = "search_products_post"
    )]
    async fn search_post(&self, body: JsonBody<SearchRequest>) -> Reply<ProductPage> {
        finish(self.state.search(body.0).await)
    }

    /// Search products without the cache
    ///
    /// Always asks AliExpress (or the mock catalog) directly and does not store the result.
    /// For testing freshness; `cache_hit` is always false.
    #[oai(
        path = "/api/products/search/no-cache",
        method = "post",
        operation_id = "search_products_no_cache"
    )]
    async fn search_no_cache(&self, body: JsonBody<SearchRequest>) -> Reply<ProductPage> {
        let state = &self.state;
        finish(
            async {
                let query = ProductQuery::from_request(&body.0, true)?;
                let page = state.source.search(&query, &state.settings).await?;
                Ok(Reply::ok(page, false, false))
            }
            .await,
        )
    }

    /// List products
    ///
    /// Products by query parameters: the seed's alternative to the POST search. Same
    /// parameters, same cache entries as `GET /api/products/search`.
    #[oai(path = "/api/products", method = "get", operation_id = "list_products")]
    #[allow(clippy::too_many_arguments)]
    async fn products_get(
        &self,
        /// Words to search for. Required unless `category_ids` is given.
        #[oai(example = "example_keywords", validator(max_length = 200))]
        keywords: Query<Option<String>>,
        /// Comma-separated category ids, e.g. `44,509`.
        #[oai(validator(pattern = r"^\s*\d+\s*(,\s*\d+\s*)*$", max_length = 200))]
        category_ids: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(
            default = "default_page_no",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        page_no: Query<u32>,
        /// Results per page, 1–50.
        #[oai(
            default = "default_page_size",
            validator(minimum(value = "1"), maximum(value = "50"))
        )]
        page_size: Query<u32>,
        /// Sort order.
        #[oai(default)]
        sort: Query<Sort>,
        /// Lowest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        min_sale_price: Query<Option<f64>>,
        /// Highest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        max_sale_price: Query<Option<f64>>,
    ) -> Reply<ProductPage> {
        let req = search_request(
            keywords.0,
            category_ids.0,
            page_no.0,
            page_size.0,
            sort.0,
            min_sale_price.0,
            max_sale_price.0,
        );
        finish(self.state.search(req).await)
    }

    /// List products (JSON body)
    ///
    /// The POST form of `GET /api/products`; same cache entries as the search.
    #[oai(
        path = "/api/products",
        method = "post",
        operation_id = "list_products_post"
    )]
    async fn products_post(&self, body: JsonBody<SearchRequest>) -> Reply<ProductPage> {
        finish(self.state.search(body.0).await)
    }

    /// Get one product
    ///
    /// Full details of one product by its numeric id. Cached for 24 hours.
    #[oai(
        path = "/api/products/details/:id",
        method = "get",
        operation_id = "get_product_details"
    )]
    async fn details_get(
        &self,
        /// Numeric product id.
        #[oai(example = "example_product_id", validator(pattern = r"^\d{1,20}$"))]
        id: Path<String>,
    ) -> Reply<ProductDetails> {
        finish(self.state.details(&[id.0], "id").await)
    }

    /// Get several products
    ///
    /// Details of 1–20 products by numeric id, in the order asked. Cached for 24 hours.
    #[oai(
        path = "/api/products/details",
        method = "post",
        operation_id = "get_products_details"
    )]
    async fn details_post(&self, body: JsonBody<DetailsRequest>) -> Reply<ProductDetails> {
        finish(self.state.details(&body.0.product_ids, "product_ids").await)
    }

    /// Hot products
    ///
    /// Trending products with high commission, optionally filtered by keywords, categories
    /// and price. Cached for 30 minutes.
    #[oai(
        path = "/api/products/hot",
        method = "get",
        operation_id = "hot_products"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn hot_get(
        &self,
        /// Words to filter by.
        #[oai(example = "example_keywords", validator(max_length = 200))]
        keywords: Query<Option<String>>,
        /// Comma-separated category ids, e.g. `44,509`.
        #[oai(validator(pattern = r"^\s*\d+\s*(,\s*\d+\s*)*$", max_length = 200))]
        category_ids: Query<Option<String>>,
        /// Page number, from 1.
        #[oai(
            default = "default_page_no",
            validator(minimum(value = "1"), maximum(value = "1000"))
        )]
        page_no: Query<u32>,
        /// Results per page, 1–50.
        #[oai(
            default = "default_page_size",
            validator(minimum(value = "1"), maximum(value = "50"))
        )]
        page_size: Query<u32>,
        /// Sort order.
        #[oai(default)]
        sort: Query<Sort>,
        /// Lowest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        min_sale_price: Query<Option<f64>>,
        /// Highest price, in the configured currency.
        #[oai(validator(minimum(value = "0")))]
        max_sale_price: Query<Option<f64>>,
    ) -> Reply<ProductPage> {
        let req = search_request(
            keywords.0,
            category_ids.0,
            page_no.0,
            page_size.0,
            sort.0,
            min_sale_price.0,
            max_sale_price.0,
        );
        finish(self.state.hot(req).await)
    }

    /// Hot products (JSON body)
    ///
    /// The POST form of `GET /api/products/hot`; shares its cache entries.
    #[oai(
        path = "/api/products/hot",
        method = "post",
        operation_id = "hot_products_post"
    )]
    async fn hot_post(&self, body: JsonBody<SearchRequest>) -> Reply<ProductPage> {
        finish(self.state.hot(body.0).await)
    }

    /// List categories
    ///
    /// Top-level product categories. Cached for 2 hours and warmed at start-up.
    #[oai(
        path = "/api/categories",
        method = "get",
        operation_id = "list_categories"
    )]
    async fn categories(&self) -> Reply<Categories> {
        finish(
            async {
                let loaded = self.state.all_categories().await?;
                let top: Vec<Category> = loaded
                    .value
                    .into_iter()
                    .filter(|c| c.parent_category_id.is_none())
                    .collect();
                Ok(Reply::ok(
                    Categories {
                        total_categories: top.len(),
                        categories: top,
                    },
                    loaded.cache_hit,
                    true,
                ))
            }
            .await,
        )
    }

    /// List subcategories
    ///
    /// The direct children of a category, by the parent's numeric id. Cached for 2 hours.
    #[oai(
        path = "/api/categories/:parent_id/children",
        method = "get",
        operation_id = "list_category_children"
    )]
    async fn category_children(
        &self,
        /// Numeric id of the parent category.
        #[oai(example = "example_parent_id", validator(pattern = r"^\d{1,20}$"))]
        parent_id: Path<String>,
    ) -> Reply<CategoryChildren> {
        // A string checked numeric (not `u64`): poem-openapi reports a failed integer parse of
        // a path parameter under its position, not its name.
        let parent_id = parent_id.0;
        let state = &self.state;
        finish(
            async {
                let key = format!(
                    "category-children:{}:{}:{parent_id}",
                    state.settings.integration(),
                    state.settings.language
                );
                let wanted = parent_id.clone();
                let loaded = state
                    .cached(&rules::CATEGORY_CHILDREN, key, move |s| async move {
                        let all = s.all_categories().await?.value;
                        let Some(parent) = all.iter().find(|c| c.category_id == wanted).cloned()
                        else {
                            return Ok(None);
                        };
                        let children: Vec<Category> = all
                            .into_iter()
                            .filter(|c| c.parent_category_id.as_deref() == Some(&wanted))
                            .collect();
                        Ok(Some(CategoryChildren {
                            parent,
                            total_children: children.len(),
                            children,
                        }))
                    })
                    .await?;
                match loaded.value {
                    Some(children) => Ok(Reply::ok(children, loaded.cache_hit, true)),
                    None => Err(ApiError::NotFound(format!(
                        "no category with id {parent_id}"
                    ))),
                }
            }
            .await,
        )
    }

    /// Get an affiliate link
    ///
    /// Turns one AliExpress URL into a tracked affiliate link. Cached for 30 minutes.
    #[oai(
        path = "/api/affiliate/link",
        method = "get",
        operation_id = "get_affiliate_link"
    )]
    async fn link(
        &self,
        /// The AliExpress product URL.
        #[oai(example = "example_url", validator(max_length = 2048))]
        url: Query<String>,
    ) -> Reply<AffiliateLinks> {
        finish(self.state.links(&[url.0], "url").await)
    }

    /// Generate affiliate links
    ///
    /// Turns 1–50 AliExpress URLs into tracked affiliate links, in the order given.
    /// Cached for 30 minutes.
    #[oai(
        path = "/api/affiliate/links",
        method = "post",
        operation_id = "generate_affiliate_links"
    )]
    async fn links(&self, body: JsonBody<LinksRequest>) -> Reply<AffiliateLinks> {
        finish(self.state.links(&body.0.urls, "urls").await)
    }

    /// Plugin status
    ///
    /// Integration mode (real or mock), configuration without secrets, and cache statistics.
    #[oai(path = "/api/status", method = "get", operation_id = "get_status")]
    async fn status(&self) -> Reply<Status> {
        let s = &self.state.settings;
        let health = self.state.context.cache_health().await;
        let stats = self.state.stats(health.redis_connected).await;
        let status = Status {
            api_status: "operational".into(),
            integration_mode: s.integration().into(),
            version: env!("CARGO_PKG_VERSION").into(),
            gateway: match &self.state.source {
                Source::Real(client) => Some(client.sync_url().to_owned()),
                Source::Mock(_) => None,
            },
            tracking_id: s.tracking_id.clone(),
            language: s.language.clone(),
            currency: s.currency.clone(),
            internal_key_required: s.internal_key.is_some(),
            cache: self.state.context.cache_stats().await,
            capabilities: Capabilities {
                intelligent_caching: true,
                redis_caching: health.redis_configured,
                memory_fallback: true,
            },
            performance: Performance {
                caching_enabled: true,
                cache_hit_rate: format!("{:.2}%", stats.cache_stats.hit_rate_percent),
            },
            cache_performance: stats,
        };
        Reply::ok(status, false, false)
    }

    /// Cache statistics
    ///
    /// This plugin's cache statistics (hits, misses, entries…), as the core reports them.
    #[oai(
        path = "/api/cache/stats",
        method = "get",
        operation_id = "get_cache_stats"
    )]
    async fn cache_stats(&self) -> Reply<CacheStats> {
        let health = self.state.context.cache_health().await;
        Reply::ok(self.state.stats(health.redis_connected).await, false, false)
    }

    /// Clear the cache
    ///
    /// Drops this plugin's cache entries: all of them, or those whose key contains
    /// `pattern` (globs `*` and `?` allowed). A bare `*` is refused: omit the pattern.
    #[oai(
        path = "/api/cache/clear",
        method = "post",
        operation_id = "clear_cache"
    )]
    async fn cache_clear(
        &self,
        /// Part of the key to match, e.g. `search` or `details:*1005006543210987*`.
        pattern: Query<Option<String>>,
    ) -> Reply<CacheCleared> {
        finish(
            async {
                let (targets, shown) = clear_target(pattern.0)?;
                let mut cleared = 0;
                for what in targets {
                    cleared += self
                        .state
                        .context
                        .invalidate(what)
                        .await
                        .map_err(|e| ApiError::Internal(format!("cache clear failed: {e}")))?;
                }
                Ok(Reply::ok(
                    CacheCleared {
                        cleared_entries: cleared,
                        pattern: shown,
                    },
                    false,
                    false,
                ))
            }
            .await,
        )
    }

    /// OpenAPI document for GPT Actions
    ///
    /// An OpenAPI 3 document of the `/api/*` routes that a custom GPT can import.
    #[oai(
        path = "/openapi-gpt.json",
        method = "get",
        operation_id = "get_gpt_openapi"
    )]
    async fn gpt_openapi(&self, req: &Request) -> GptDocument {
        let doc = crate::gpt::document_for(&self.state, req);
        // Without `public_url` the server URL is read from the request's forwarding
        // headers, so a shared cache in front must not hand one client's answer to another.
        let vary = self
            .state
            .settings
            .public_url
            .is_none()
            .then(|| "Host, X-Forwarded-Host, X-Forwarded-Proto".to_owned());
        GptDocument::Ok(Json(doc), vary)
    }
}

/// The GPT Actions document.
#[derive(poem_openapi::ApiResponse)]
pub enum GptDocument {
    /// The document, its `servers` URL from `public_url` or else from the request.
    #[oai(status = 200)]
    Ok(
        Json<serde_json::Value>,
        /// The request headers the `servers` URL was read from, when it was.
        #[oai(header = "vary")]
        Option<String>,
    ),
}

/// The seed's key families (its keys were `aliexpress:{family}:{md5}`), as the patterns of
/// ours: its clients' `?pattern=products` must clear what it cleared there.
const SEED_FAMILIES: &[(&str, &[&str])] = &[
    ("products", &["search:*", "hot:*", "details:*"]),
    ("product", &["search:*", "hot:*", "details:*"]),
    ("product_details", &["details:*"]),
    ("hot_products", &["hot:*"]),
    ("affiliate", &["affiliate-links:*"]),
    ("affiliate_links", &["affiliate-links:*"]),
    ("links", &["affiliate-links:*"]),
];

/// What `/api/cache/clear?pattern=` drops, and how the reply names it: everything, a
/// seed family (`products`, `affiliate_links`…), or the entries whose key contains the
/// pattern (globs allowed).
pub fn clear_target(pattern: Option<String>) -> Result<(Vec<Invalidation>, String), ApiError> {
    let Some(pattern) = pattern else {
        return Ok((vec![Invalidation::All], "all".into()));
    };
    let pattern = pattern.trim().to_owned();
    let invalid = |message: &str| {
        ApiError::Invalid(Invalid {
            field: "pattern".into(),
            message: message.into(),
        })
    };
    if larder_plugin::is_wildcard_only(&pattern) {
        return Err(invalid(
            "a pattern of only wildcards would clear everything: omit `pattern` to clear all",
        ));
    }
    if let Some((_, globs)) = SEED_FAMILIES
        .iter()
        .find(|(family, _)| family.eq_ignore_ascii_case(&pattern))
    {
        let targets = globs
            .iter()
            .map(|g| Invalidation::Pattern((*g).to_owned()))
            .collect();
        return Ok((targets, pattern));
    }
    let glob = if pattern.contains(['*', '?']) {
        pattern.clone()
    } else {
        format!("*{pattern}*")
    };
    Ok((vec![Invalidation::Pattern(glob)], pattern))
}
