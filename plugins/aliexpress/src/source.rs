//! Where data comes from: the real gateway (and parsing its results into this API's types)
//! or the mock catalog. Handlers call these only inside cache loaders (or directly for
//! `/no-cache`); a gateway failure is returned as an error, never replaced by mock data.

use serde_json::Value;

use crate::client::{GatewayClient, UpstreamError};
use crate::config::Settings;
use crate::mock::MockCatalog;
use crate::model::{AffiliateLink, Category, Product, ProductPage};
use crate::query::ProductQuery;

/// Gateway method names.
pub mod methods {
    /// Product search.
    pub const PRODUCT_QUERY: &str = "aliexpress.affiliate.product.query";
    /// Product details by id.
    pub const PRODUCT_DETAIL: &str = "aliexpress.affiliate.productdetail.get";
    /// Hot products.
    pub const HOT_PRODUCTS: &str = "aliexpress.affiliate.hotproduct.query";
    /// Every category.
    pub const CATEGORIES: &str = "aliexpress.affiliate.category.get";
    /// Affiliate links.
    pub const LINK_GENERATE: &str = "aliexpress.affiliate.link.generate";
}

/// The data source: real or mock, fixed at start.
#[derive(Debug)]
pub enum Source {
    /// The AliExpress gateway.
    Real(GatewayClient),
    /// The generated catalog.
    Mock(MockCatalog),
}

fn text(value: Option<&Value>) -> Option<String> {
    match value? {
        Value::String(s) if s.is_empty() => None,
        Value::String(s) => Some(s.clone()),
        Value::Null => None,
        other => Some(other.to_string()),
    }
}

/// `{"<outer>":{"<inner>":[…]}}` → the list (the gateway's XML-shaped JSON). A single
/// object instead of a list is accepted too.
fn nested_list<'a>(result: &'a Value, outer: &str, inner: &str) -> Vec<&'a Value> {
    match result.get(outer).and_then(|o| o.get(inner)) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(item @ Value::Object(_)) => vec![item],
        _ => Vec::new(),
    }
}

fn parse_product(p: &Value, currency: &str) -> Product {
    let get = |name: &str| text(p.get(name));
    Product {
        product_id: get("product_id").unwrap_or_default(),
        product_title: get("product_title").unwrap_or_default(),
        product_url: get("product_detail_url").unwrap_or_default(),
        promotion_link: get("promotion_link"),
        app_sale_price: get("target_sale_price")
            .or_else(|| get("sale_price"))
            .unwrap_or_else(|| "0.00".into()),
        original_price: get("target_original_price")
            .or_else(|| get("original_price"))
            .unwrap_or_else(|| "0.00".into()),
        currency: get("target_sale_price_currency").unwrap_or_else(|| currency.to_owned()),
        discount: get("discount").unwrap_or_else(|| "0%".into()),
        evaluate_rate: get("evaluate_rate").unwrap_or_else(|| "0%".into()),
        commission_rate: get("commission_rate").unwrap_or_else(|| "0%".into()),
        volume: p.get("lastest_volume").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        }),
        product_main_image_url: get("product_main_image_url"),
        product_small_image_urls: nested_list(p, "product_small_image_urls", "string")
            .into_iter()
            .filter_map(|v| text(Some(v)))
            .collect(),
        shop_id: get("shop_id").unwrap_or_default(),
        shop_url: get("shop_url"),
        first_level_category_id: get("first_level_category_id"),
        first_level_category_name: get("first_level_category_name"),
    }
}

fn parse_page(result: &Value, query: &ProductQuery, currency: &str) -> ProductPage {
    let products: Vec<Product> = nested_list(result, "products", "product")
        .into_iter()
        .map(|p| parse_product(p, currency))
        .collect();
    let total = result
        .get("total_record_count")
        .and_then(Value::as_i64)
        .unwrap_or(products.len() as i64);
    ProductPage {
        products,
        total_results: total,
        current_page: query.page_no,
        page_size: query.page_size,
    }
}

impl Source {
    /// A product search.
    pub async fn search(
        &self,
        query: &ProductQuery,
        settings: &Settings,
    ) -> Result<ProductPage, UpstreamError> {
        match self {
            Source::Mock(m) => Ok(m.search(query, &settings.currency, &settings.tracking_id)),
            Source::Real(c) => {
                let result = c
                    .call(methods::PRODUCT_QUERY, &query.params(settings))
                    .await?;
                Ok(parse_page(&result, query, &settings.currency))
            }
        }
    }

    /// Hot products.
    pub async fn hot(
        &self,
        query: &ProductQuery,
        settings: &Settings,
    ) -> Result<ProductPage, UpstreamError> {
        match self {
            Source::Mock(m) => Ok(m.hot(query, &settings.currency, &settings.tracking_id)),
            Source::Real(c) => {
                let result = c
                    .call(methods::HOT_PRODUCTS, &query.params(settings))
                    .await?;
                Ok(parse_page(&result, query, &settings.currency))
            }
        }
    }

    /// Products by id (sorted, de-duplicated ids); those the gateway does not know are
    /// missing from the result.
    pub async fn details(
        &self,
        ids: &[String],
        settings: &Settings,
    ) -> Result<Vec<Product>, UpstreamError> {
        match self {
            Source::Mock(m) => Ok(ids
                .iter()
                .filter_map(|id| m.product(id, &settings.currency, &settings.tracking_id))
                .collect()),
            Source::Real(c) => {
                let params = [
                    ("product_ids", ids.join(",")),
                    ("target_currency", settings.currency.clone()),
                    ("target_language", settings.language.clone()),
                    ("tracking_id", settings.tracking_id.clone()),
                ];
                let result = c.call(methods::PRODUCT_DETAIL, &params).await?;
                Ok(nested_list(&result, "products", "product")
                    .into_iter()
                    .map(|p| parse_product(p, &settings.currency))
                    .collect())
            }
        }
    }

    /// Every category, top-level and children.
    pub async fn categories(&self, settings: &Settings) -> Result<Vec<Category>, UpstreamError> {
        match self {
            Source::Mock(m) => Ok(m.categories()),
            Source::Real(c) => {
                let params = [("target_language", settings.language.clone())];
                let result = c.call(methods::CATEGORIES, &params).await?;
                Ok(nested_list(&result, "categories", "category")
                    .into_iter()
                    .filter_map(|c| {
                        Some(Category {
                            category_id: text(c.get("category_id"))?,
                            category_name: text(c.get("category_name")).unwrap_or_default(),
                            parent_category_id: text(c.get("parent_category_id"))
                                .filter(|p| p != "0"),
                        })
                    })
                    .collect())
            }
        }
    }

    /// Affiliate links for URLs (sorted, de-duplicated).
    pub async fn links(
        &self,
        urls: &[String],
        settings: &Settings,
    ) -> Result<Vec<AffiliateLink>, UpstreamError> {
        match self {
            Source::Mock(m) => Ok(m.links(urls, &settings.tracking_id)),
            Source::Real(c) => {
                let params = [
                    ("promotion_link_type", "0".to_owned()),
                    ("source_values", urls.join(",")),
                    ("tracking_id", settings.tracking_id.clone()),
                ];
                let result = c.call(methods::LINK_GENERATE, &params).await?;
                let generated: Vec<(String, String)> =
                    nested_list(&result, "promotion_links", "promotion_link")
                        .into_iter()
                        .filter_map(|l| {
                            Some((text(l.get("source_value"))?, text(l.get("promotion_link"))?))
                        })
                        .collect();
                Ok(urls
                    .iter()
                    .map(|url| AffiliateLink {
                        original_url: url.clone(),
                        affiliate_url: generated
                            .iter()
                            .find(|(source, _)| source == url)
                            .map(|(_, link)| link.clone()),
                        tracking_id: settings.tracking_id.clone(),
                    })
                    .collect())
            }
        }
    }

    /// `real` or `mock`.
    pub fn integration(&self) -> &'static str {
        match self {
            Source::Real(_) => "real",
            Source::Mock(_) => "mock",
        }
    }
}
