//! The plugin's data types: request bodies, the data each route returns (also what is
//! cached, hence serde as well as poem-openapi), and the response envelope.
//!
//! Schema names carry an `Aliexpress` prefix so they never clash with another plugin's in
//! the merged OpenAPI document.

use poem_openapi::types::{ParseFromJSON, ToJSON};
use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

/// Sort order of a product query, as the gateway names it.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[oai(rename = "AliexpressSort", rename_all = "SCREAMING_SNAKE_CASE")]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Sort {
    /// Cheapest first (the default).
    #[default]
    SalePriceAsc,
    /// Most expensive first.
    SalePriceDesc,
    /// Fewest recent sales first.
    LastVolumeAsc,
    /// Best sellers first.
    LastVolumeDesc,
}

impl Sort {
    /// The gateway's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Sort::SalePriceAsc => "SALE_PRICE_ASC",
            Sort::SalePriceDesc => "SALE_PRICE_DESC",
            Sort::LastVolumeAsc => "LAST_VOLUME_ASC",
            Sort::LastVolumeDesc => "LAST_VOLUME_DESC",
        }
    }
}

/// A body field that must be a JSON string. poem-openapi's `String` also takes a number or
/// a boolean and turns it into text; SPEC 1.7 wants `{"keywords": 123}` refused.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text(pub String);

impl std::ops::Deref for Text {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

impl From<&str> for Text {
    fn from(s: &str) -> Self {
        Self(s.to_owned())
    }
}

impl poem_openapi::types::Type for Text {
    const IS_REQUIRED: bool = true;
    type RawValueType = String;
    type RawElementValueType = String;

    fn name() -> std::borrow::Cow<'static, str> {
        String::name()
    }

    fn schema_ref() -> poem_openapi::registry::MetaSchemaRef {
        String::schema_ref()
    }

    fn as_raw_value(&self) -> Option<&String> {
        Some(&self.0)
    }

    fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a String> + 'a> {
        Box::new(std::iter::once(&self.0))
    }
}

impl poem_openapi::types::ParseFromJSON for Text {
    fn parse_from_json(value: Option<serde_json::Value>) -> poem_openapi::types::ParseResult<Self> {
        match value.unwrap_or_default() {
            serde_json::Value::String(s) => Ok(Self(s)),
            other => Err(poem_openapi::types::ParseError::expected_type(other)),
        }
    }
}

impl poem_openapi::types::ToJSON for Text {
    fn to_json(&self) -> Option<serde_json::Value> {
        Some(serde_json::Value::String(self.0.clone()))
    }
}

/// A product search (also the hot-products query).
#[derive(Object, Debug, Clone, Default)]
// Only the document's example is ever written out: it shows the fields it sets.
#[oai(
    rename = "AliexpressSearchRequest",
    example,
    skip_serializing_if_is_none
)]
pub struct SearchRequest {
    /// Words to search for. Required unless `category_ids` is given.
    #[oai(validator(max_length = 200))]
    pub keywords: Option<Text>,
    /// Comma-separated category ids to search in, e.g. `"44,509"`; empty is the same as
    /// absent.
    #[oai(validator(pattern = r"^(\s*\d+\s*(,\s*\d+\s*)*)?$", max_length = 200))]
    pub category_ids: Option<Text>,
    /// Page number, from 1.
    #[oai(
        default = "default_page_no",
        validator(minimum(value = "1"), maximum(value = "1000"))
    )]
    pub page_no: u32,
    /// Results per page, 1–50.
    #[oai(
        default = "default_page_size",
        validator(minimum(value = "1"), maximum(value = "50"))
    )]
    pub page_size: u32,
    /// Sort order (default `SALE_PRICE_ASC`).
    #[oai(default)]
    pub sort: Sort,
    /// Lowest price, in the configured currency (e.g. `9.99`).
    #[oai(validator(minimum(value = "0")))]
    pub min_sale_price: Option<f64>,
    /// Highest price, in the configured currency.
    #[oai(validator(minimum(value = "0")))]
    pub max_sale_price: Option<f64>,
}

/// Default `page_no`.
pub fn default_page_no() -> u32 {
    1
}

/// Default `page_size`.
pub fn default_page_size() -> u32 {
    10
}

impl poem_openapi::types::Example for SearchRequest {
    fn example() -> Self {
        SearchRequest {
            keywords: Some("wireless earbuds".into()),
            category_ids: None,
            page_no: 1,
            page_size: 10,
            sort: Sort::SalePriceAsc,
            min_sale_price: Some(5.0),
            max_sale_price: Some(50.0),
        }
    }
}

/// Product ids to look up.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressDetailsRequest", example)]
pub struct DetailsRequest {
    /// 1–20 numeric product ids.
    #[oai(validator(min_items = 1, max_items = 20, pattern = r"^\d{1,20}$"))]
    pub product_ids: Vec<String>,
}

impl poem_openapi::types::Example for DetailsRequest {
    fn example() -> Self {
        DetailsRequest {
            product_ids: vec!["1005006543210987".into(), "1005001234567890".into()],
        }
    }
}

/// Product URLs to turn into affiliate links.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressLinksRequest", example)]
pub struct LinksRequest {
    /// 1–50 AliExpress URLs (http or https).
    #[oai(validator(min_items = 1, max_items = 50, max_length = 2048))]
    pub urls: Vec<String>,
}

impl poem_openapi::types::Example for LinksRequest {
    fn example() -> Self {
        LinksRequest {
            urls: vec!["https://www.aliexpress.com/item/1005006543210987.html".into()],
        }
    }
}

/// A product as this API returns it (the seed's field names).
#[derive(Object, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[oai(rename = "AliexpressProduct")]
pub struct Product {
    /// Product id.
    pub product_id: String,
    /// Title, in the configured language.
    pub product_title: String,
    /// Product page.
    pub product_url: String,
    /// Affiliate link to the product, carrying the tracking id.
    #[oai(nullable)]
    pub promotion_link: Option<String>,
    /// Sale price, in `currency`.
    pub app_sale_price: String,
    /// Price before discount, in `currency`.
    pub original_price: String,
    /// Currency of the prices.
    pub currency: String,
    /// Discount, e.g. `"35%"`.
    pub discount: String,
    /// Share of positive ratings, e.g. `"97.8%"`.
    pub evaluate_rate: String,
    /// Affiliate commission, e.g. `"7.0%"`.
    pub commission_rate: String,
    /// Sales in the last 30 days.
    #[oai(nullable)]
    pub volume: Option<i64>,
    /// Main image.
    #[oai(nullable)]
    pub product_main_image_url: Option<String>,
    /// Further images.
    pub product_small_image_urls: Vec<String>,
    /// Shop id.
    pub shop_id: String,
    /// Shop page.
    #[oai(nullable)]
    pub shop_url: Option<String>,
    /// Top-level category id.
    #[oai(nullable)]
    pub first_level_category_id: Option<String>,
    /// Top-level category name.
    #[oai(nullable)]
    pub first_level_category_name: Option<String>,
}

/// One page of products.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(rename = "AliexpressProductPage")]
pub struct ProductPage {
    /// The products.
    pub products: Vec<Product>,
    /// Matching products in total.
    pub total_results: i64,
    /// This page's number.
    pub current_page: u32,
    /// Requested page size.
    pub page_size: u32,
}

/// Products looked up by id.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(rename = "AliexpressProductDetails")]
pub struct ProductDetails {
    /// The products found, in the order asked.
    pub products: Vec<Product>,
    /// Ids asked for.
    pub requested: usize,
    /// Ids found.
    pub found: usize,
}

/// A product category.
#[derive(Object, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[oai(rename = "AliexpressCategory")]
pub struct Category {
    /// Category id.
    pub category_id: String,
    /// Name, in the configured language.
    pub category_name: String,
    /// Parent category id; `null` for top-level categories.
    #[oai(nullable)]
    pub parent_category_id: Option<String>,
}

/// Top-level categories.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(rename = "AliexpressCategories")]
pub struct Categories {
    /// Top-level categories.
    pub categories: Vec<Category>,
    /// How many.
    pub total_categories: usize,
}

/// The children of one category.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(rename = "AliexpressCategoryChildren")]
pub struct CategoryChildren {
    /// The parent category.
    pub parent: Category,
    /// Its direct children.
    pub children: Vec<Category>,
    /// How many children.
    pub total_children: usize,
}

/// A generated affiliate link.
#[derive(Object, Debug, Clone, PartialEq, Serialize, Deserialize)]
#[oai(rename = "AliexpressAffiliateLink")]
pub struct AffiliateLink {
    /// The URL asked for.
    pub original_url: String,
    /// The tracked link; `null` when the gateway could not convert this URL.
    #[oai(nullable)]
    pub affiliate_url: Option<String>,
    /// Tracking id the link carries.
    pub tracking_id: String,
}

/// Generated affiliate links.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
#[oai(rename = "AliexpressAffiliateLinks")]
pub struct AffiliateLinks {
    /// One entry per URL asked for, in the order asked.
    pub affiliate_links: Vec<AffiliateLink>,
    /// URLs asked for.
    pub processed_urls: usize,
    /// Links generated.
    pub generated_links: usize,
}

/// What `/api/cache/clear` removed.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressCacheCleared")]
pub struct CacheCleared {
    /// Entries removed.
    pub cleared_entries: u64,
    /// The pattern used (`all` when none was given).
    pub pattern: String,
}

/// Plugin status.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressStatus")]
pub struct Status {
    /// Always `operational` when the route answers.
    pub api_status: String,
    /// `real` (the AliExpress gateway) or `mock` (generated catalog).
    pub integration_mode: String,
    /// Plugin version.
    pub version: String,
    /// Gateway endpoint; `null` in mock mode.
    #[oai(nullable)]
    pub gateway: Option<String>,
    /// Tracking id in use.
    pub tracking_id: String,
    /// `target_language`.
    pub language: String,
    /// `target_currency`.
    pub currency: String,
    /// Whether `/api/*` requires `x-internal-key`.
    pub internal_key_required: bool,
    /// This plugin's cache statistics, as the core reports them.
    pub cache: serde_json::Value,
    /// What this deployment can do (seed 000's status).
    pub capabilities: Capabilities,
    /// Whether caching is on and how well it does (seed 000's status).
    pub performance: Performance,
    /// The same statistics as `/api/cache/stats` (seed 000's `cache_performance`).
    pub cache_performance: CacheStats,
}

/// What this deployment can do.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressCapabilities")]
pub struct Capabilities {
    /// Responses are cached by policy (always true).
    pub intelligent_caching: bool,
    /// Entries are shared through Redis (a Redis is configured).
    pub redis_caching: bool,
    /// The in-process cache answers when Redis is down or absent (always true).
    pub memory_fallback: bool,
}

/// Caching at a glance.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressPerformance")]
pub struct Performance {
    /// Always true: every product, category and link route caches.
    pub caching_enabled: bool,
    /// Hits over hits and misses, as `"85.71%"`.
    pub cache_hit_rate: String,
}

/// This plugin's cache statistics: the seed's three blocks, then the core's own figures.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressCacheStats")]
pub struct CacheStats {
    /// Hits and misses summed over this plugin's rules.
    pub cache_stats: HitCounts,
    /// How the cache is set up.
    pub cache_config: CacheConfig,
    /// What the cache saved.
    pub performance_impact: PerformanceImpact,
    /// Plugin name.
    pub plugin: String,
    /// Per-rule counters and TTLs, as the core reports them.
    pub rules: serde_json::Value,
    /// The in-process cache's entries and bytes (every plugin's).
    pub l1: serde_json::Value,
}

/// Hits and misses.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressHitCounts")]
pub struct HitCounts {
    /// Answers served from the cache (either layer, or stale).
    pub hits: u64,
    /// Answers the cache could not give.
    pub misses: u64,
    /// `hits / (hits + misses)` in percent, two decimals; 0 before any request.
    pub hit_rate_percent: f64,
    /// `hits + misses`.
    pub total_requests: u64,
}

/// How the cache is set up.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressCacheConfig")]
pub struct CacheConfig {
    /// Whether Redis answered just now (false when none is configured).
    pub redis_connected: bool,
    /// The search TTL in seconds (the seed's default TTL).
    pub default_ttl: u64,
    /// Entries in the in-process cache.
    pub memory_cache_size: u64,
}

/// What the cache saved.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressPerformanceImpact")]
pub struct PerformanceImpact {
    /// Gateway calls the cache answered instead (hits and coalesced waits).
    pub estimated_api_calls_saved: u64,
    /// `high` (hit rate ≥ 80 %), `medium` (≥ 50 %), `low`, or `none` before any request.
    pub cache_efficiency: String,
}

impl CacheStats {
    /// The seed's view of the core's `cache_stats()` answer and `cache_health()`.
    pub fn from_core(stats: serde_json::Value, redis_connected: bool, search_rule: &str) -> Self {
        let (hits, misses) = larder_plugin::rule_hits_and_misses(&stats);
        let total = hits + misses;
        let rate = if total == 0 {
            0.0
        } else {
            (hits as f64 * 10_000.0 / total as f64).round() / 100.0
        };
        let rules = stats.get("rules").cloned().unwrap_or_default();
        let coalesced: u64 = rules
            .as_object()
            .into_iter()
            .flat_map(|r| r.values())
            .filter_map(|r| r["coalesced_waits"].as_u64())
            .sum();
        let efficiency = match (total, rate) {
            (0, _) => "none",
            (_, r) if r >= 80.0 => "high",
            (_, r) if r >= 50.0 => "medium",
            _ => "low",
        };
        let l1 = stats.get("l1").cloned().unwrap_or_default();
        CacheStats {
            cache_stats: HitCounts {
                hits,
                misses,
                hit_rate_percent: rate,
                total_requests: total,
            },
            cache_config: CacheConfig {
                redis_connected,
                default_ttl: rules[search_rule]["ttl_secs"].as_u64().unwrap_or(0),
                memory_cache_size: l1["entries"].as_u64().unwrap_or(0),
            },
            performance_impact: PerformanceImpact {
                estimated_api_calls_saved: hits + coalesced,
                cache_efficiency: efficiency.into(),
            },
            plugin: stats["plugin"].as_str().unwrap_or_default().to_owned(),
            rules,
            l1,
        }
    }
}

/// Facts about how a response was produced.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressMetadata")]
pub struct Metadata {
    /// True exactly when `data` came from the cache.
    pub cache_hit: bool,
    /// Whether this route caches at all (false for `/no-cache` and admin routes).
    pub cache_enabled: bool,
    /// Time spent in the handler, in milliseconds.
    pub processing_time_ms: f64,
    /// `real` or `mock`: where the data came from. Mock data is never labelled real.
    pub api_integration: String,
    /// The request's `x-request-id`, or one generated for it.
    pub request_id: String,
    /// When the response was made (RFC 3339, UTC).
    pub timestamp: String,
}

/// A successful response.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressEnvelope")]
pub struct Envelope<T: ParseFromJSON + ToJSON> {
    /// Always `true`.
    pub success: bool,
    /// The result.
    pub data: T,
    /// How it was produced.
    pub metadata: Metadata,
}

/// What went wrong upstream, as the gateway said it.
#[derive(Object, Debug, Clone, PartialEq)]
#[oai(rename = "AliexpressUpstreamError")]
pub struct UpstreamDetail {
    /// The gateway's code (`error_response.code`, or `resp_result.resp_code`), or
    /// `timeout`/`unavailable`/`http_<status>` when it did not answer properly.
    pub code: String,
    /// The gateway's message.
    pub msg: String,
    /// `error_response.sub_code`, when the gateway gave one.
    #[oai(skip_serializing_if_is_none)]
    pub sub_code: Option<String>,
    /// `error_response.sub_msg`, when the gateway gave one.
    #[oai(skip_serializing_if_is_none)]
    pub sub_msg: Option<String>,
}

/// An error.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressError")]
pub struct ErrorBody {
    /// `validation_error`, `unauthorized`, `not_found`, `upstream_error`, `internal_error`.
    pub code: String,
    /// What happened and what to do.
    pub message: String,
    /// The offending input field, for validation errors (absent otherwise).
    #[oai(skip_serializing_if_is_none)]
    pub field: Option<String>,
    /// The gateway's own error, for upstream errors (absent otherwise).
    #[oai(skip_serializing_if_is_none)]
    pub upstream: Option<UpstreamDetail>,
}

/// A failed response.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AliexpressErrorEnvelope")]
pub struct ErrorEnvelope {
    /// Always `false`.
    pub success: bool,
    /// What went wrong.
    pub error: ErrorBody,
    /// How the response was produced.
    pub metadata: Metadata,
}
