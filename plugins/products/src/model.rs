//! What the routes answer. Each type is both a poem-openapi schema (for the document) and a
//! serde type (what a cache entry holds: `get_or_load` stores the JSON of a loaded value).
//! Schema names carry a `Products` prefix where another plugin could use the plain name.

use poem_openapi::Object;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A category of the catalog.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsCategory")]
pub struct Category {
    /// Identifier used by `GET /products?category=`.
    pub slug: String,
    /// Display name.
    pub name: String,
    /// One line about it.
    pub description: String,
    /// Products in it.
    pub product_count: i64,
}

/// Every category, with its product count.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsCategoryList")]
pub struct CategoryList {
    /// The categories, by slug.
    pub categories: Vec<Category>,
    /// Products in all of them.
    pub total_products: i64,
}

/// A product's description texts.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsProductDescription")]
pub struct ProductDescription {
    /// One sentence.
    pub summary: String,
    /// The full description.
    pub body: String,
    /// Selling points.
    pub features: Vec<String>,
}

/// One product with its description.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsProduct")]
pub struct Product {
    /// Product id.
    pub id: i64,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category slug.
    pub category: String,
    /// Price in minor units (cents).
    pub price_cents: i64,
    /// ISO 4217 currency of the price.
    pub currency: String,
    /// Units in stock.
    pub stock: i64,
    /// Mean customer rating, 1–5.
    pub rating: f64,
    /// Colour, material, weight, warranty...
    pub attributes: Value,
    /// Description texts.
    pub description: ProductDescription,
    /// Incremented by every update.
    pub version: i64,
    /// Last change, RFC 3339.
    pub updated_at: String,
}

/// A product as a catalog page lists it.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsProductSummary")]
pub struct ProductSummary {
    /// Product id.
    pub id: i64,
    /// Stock-keeping unit.
    pub sku: String,
    /// Display name.
    pub name: String,
    /// Category slug.
    pub category: String,
    /// Price in minor units (cents).
    pub price_cents: i64,
    /// ISO 4217 currency of the price.
    pub currency: String,
    /// Mean customer rating, 1–5.
    pub rating: f64,
    /// Units in stock.
    pub stock: i64,
    /// The description's one sentence.
    pub summary: String,
}

/// One page of the catalog.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsCatalogPage")]
pub struct CatalogPage {
    /// The products of this page.
    pub items: Vec<ProductSummary>,
    /// Page number, from 1.
    pub page: u32,
    /// Products per page.
    pub page_size: u32,
    /// Products matching the filter.
    pub total: i64,
    /// Pages in all (at least 1).
    pub pages: u32,
    /// The category filter, `all` for none.
    pub category: String,
    /// The order: `id`, `name`, `price`, `-price`, `rating` or `newest`.
    pub sort: String,
}

/// A user's preferences.
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsPreferences")]
pub struct Preferences {
    /// The user (the verified principal's user).
    pub user_id: String,
    /// Language code, e.g. `en`.
    pub language: String,
    /// ISO 4217 currency.
    pub currency: String,
    /// Catalog page size the user prefers.
    pub page_size: u32,
    /// Category slugs.
    pub favourite_categories: Vec<String>,
    /// Whether the user gets the newsletter.
    pub newsletter: bool,
    /// `light`, `dark` or `system`.
    pub theme: String,
    /// Whether these were saved by the user (`false`: the defaults of a user who never
    /// saved any).
    pub stored: bool,
    /// Last change, RFC 3339; absent for defaults.
    #[oai(skip_serializing_if_is_none)]
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub updated_at: Option<String>,
}

/// A static-data entry (seed 003's `StaticDataCache`).
#[derive(Object, Serialize, Deserialize, Debug, Clone, PartialEq)]
#[oai(rename = "ProductsStaticEntry")]
pub struct StaticEntry {
    /// Its key, e.g. `app_config`.
    pub key: String,
    /// The stored JSON value.
    pub value: Value,
    /// Last change, RFC 3339.
    pub updated_at: String,
}
