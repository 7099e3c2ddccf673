//! Mock mode: a deterministic, finite generated catalog, so every route works with no
//! credentials and no network, and answers agree with each other: a product found by a
//! search has the same title and prices in its details, a sale price is never above the
//! original price, and an id outside the catalog is a 404. Every value derives from an
//! xxh3 digest of the product's index, so the catalog is the same on every machine, and
//! responses say `api_integration: "mock"`.

use std::collections::HashMap;
use std::sync::LazyLock;

use xxhash_rust::xxh3::xxh3_64;

use crate::model::{AffiliateLink, Category, Product, ProductPage, Sort};
use crate::query::ProductQuery;

const TOP_LEVEL: &[(u32, &str, &[&str])] = &[
    (
        3,
        "Apparel & Accessories",
        &["Men's Clothing", "Women's Clothing", "Sportswear"],
    ),
    (
        34,
        "Automobiles & Motorcycles",
        &[
            "Car Electronics",
            "Interior Accessories",
            "Motorcycle Parts",
        ],
    ),
    (
        44,
        "Consumer Electronics",
        &[
            "Earphones & Headphones",
            "Smart Electronics",
            "Camera & Photo",
            "Portable Audio",
        ],
    ),
    (
        13,
        "Home Improvement",
        &["Lighting", "Tools", "Electrical Equipment"],
    ),
    (
        15,
        "Home & Garden",
        &["Kitchen, Dining & Bar", "Home Decor", "Garden Supplies"],
    ),
    (
        509,
        "Cellphones & Telecommunications",
        &["Phone Cases", "Chargers", "Cables"],
    ),
    (
        7,
        "Computer & Office",
        &["Keyboards & Mice", "Storage Devices", "Office Electronics"],
    ),
    (
        18,
        "Sports & Entertainment",
        &["Fitness & Body Building", "Cycling", "Camping & Hiking"],
    ),
];

const ADJECTIVES: &[&str] = &[
    "Portable",
    "Wireless",
    "Compact",
    "Premium",
    "Smart",
    "Foldable",
    "Waterproof",
    "Ultra-Slim",
    "Magnetic",
    "Rechargeable",
    "Adjustable",
    "Mini",
];
const NOUNS: &[&str] = &[
    "Bluetooth Earbuds",
    "LED Desk Lamp",
    "Phone Holder",
    "USB-C Cable",
    "Power Bank",
    "Mechanical Keyboard",
    "Fitness Tracker",
    "Camping Lantern",
    "Car Charger",
    "Backpack",
    "Kitchen Scale",
    "Smart Plug",
];

fn pick<'a>(list: &[&'a str], n: u64) -> &'a str {
    list[(n % list.len() as u64) as usize]
}

fn price(cents: i64) -> String {
    format!("{}.{:02}", cents / 100, cents % 100)
}

/// Products per second-level category.
const PER_CATEGORY: usize = 60;
/// The ids the OpenAPI document's examples use: the catalog's first two products.
pub const EXAMPLE_IDS: [&str; 2] = ["1005006543210987", "1005001234567890"];
/// Ids of the other products: this base plus a multiple of a prime, so they look like
/// AliExpress ids (16 digits, `1005…`) and do not cluster.
const ID_BASE: u64 = 1_005_007_000_000_000;
const ID_STEP: u64 = 7_919;
/// A search matches at most this many products, like the gateway's capped result counts.
const MAX_RESULTS: usize = 240;

/// One product as generated, before the currency and tracking id of a request.
#[derive(Debug, Clone)]
struct Item {
    id: String,
    title: String,
    /// Lower-case title and category names, for keyword matching.
    words: String,
    sale_cents: i64,
    discount: u64,
    volume: i64,
    evaluate_rate: String,
    commission_rate: String,
    shop: u64,
    /// Top-level category id and name.
    top: (u32, &'static str),
    /// Second-level category id.
    leaf: String,
}

struct Catalog {
    items: Vec<Item>,
    by_id: HashMap<String, usize>,
}

static CATALOG: LazyLock<Catalog> = LazyLock::new(|| {
    let mut items = Vec::new();
    for (top_id, top_name, children) in TOP_LEVEL {
        for (c, child) in children.iter().enumerate() {
            let leaf = leaf_id(*top_id, c);
            for _ in 0..PER_CATEGORY {
                let i = items.len();
                let h = xxh3_64(format!("mock-product#{i}").as_bytes());
                let id = match EXAMPLE_IDS.get(i) {
                    Some(id) => (*id).to_owned(),
                    None => (ID_BASE + i as u64 * ID_STEP).to_string(),
                };
                let title = format!("{} {}", pick(ADJECTIVES, h >> 4), pick(NOUNS, h >> 12));
                let words = format!("{title} {child} {top_name}").to_lowercase();
                items.push(Item {
                    id,
                    title,
                    words,
                    sale_cents: 199 + (h >> 8) as i64 % 9_800,
                    discount: 5 + (h >> 24) % 60,
                    volume: ((h >> 52) % 5_000) as i64,
                    evaluate_rate: format!("{}.{}%", 90 + (h >> 40) % 10, (h >> 44) % 10),
                    commission_rate: format!("{}.0%", 3 + (h >> 48) % 8),
                    shop: 900_000 + (h >> 32) % 100_000,
                    top: (*top_id, *top_name),
                    leaf: leaf.clone(),
                });
            }
        }
    }
    let by_id = items
        .iter()
        .enumerate()
        .map(|(i, p)| (p.id.clone(), i))
        .collect();
    Catalog { items, by_id }
});

fn leaf_id(top: u32, child: usize) -> String {
    (200_000_000 + top * 1000 + child as u32 + 1).to_string()
}

impl Item {
    fn product(&self, currency: &str, tracking_id: &str) -> Product {
        let id = &self.id;
        // The original price is the sale price before the discount, rounded up: never below
        // the sale price.
        let original = (self.sale_cents as u64 * 100).div_ceil(100 - self.discount) as i64;
        Product {
            product_id: id.clone(),
            product_title: self.title.clone(),
            product_url: format!("https://www.aliexpress.com/item/{id}.html"),
            promotion_link: Some(format!(
                "https://s.click.aliexpress.com/e/_mock{:08x}?tracking_id={tracking_id}",
                xxh3_64(id.as_bytes()) as u32
            )),
            app_sale_price: price(self.sale_cents),
            original_price: price(original),
            currency: currency.to_owned(),
            discount: format!("{}%", self.discount),
            evaluate_rate: self.evaluate_rate.clone(),
            commission_rate: self.commission_rate.clone(),
            volume: Some(self.volume),
            product_main_image_url: Some(format!("https://ae01.alicdn.com/kf/mock-{id}.jpg")),
            product_small_image_urls: (1..=3)
                .map(|i| format!("https://ae01.alicdn.com/kf/mock-{id}-{i}.jpg"))
                .collect(),
            shop_id: self.shop.to_string(),
            shop_url: Some(format!("https://www.aliexpress.com/store/{}", self.shop)),
            first_level_category_id: Some(self.top.0.to_string()),
            first_level_category_name: Some(self.top.1.to_owned()),
        }
    }
}

/// The generated catalog (built once, shared).
#[derive(Debug, Clone, Default)]
pub struct MockCatalog;

impl MockCatalog {
    /// Every category: top-level ones and their children.
    pub fn categories(&self) -> Vec<Category> {
        let mut out = Vec::new();
        for (id, name, children) in TOP_LEVEL {
            out.push(Category {
                category_id: id.to_string(),
                category_name: (*name).to_owned(),
                parent_category_id: None,
            });
            for (i, child) in children.iter().enumerate() {
                out.push(Category {
                    category_id: leaf_id(*id, i),
                    category_name: (*child).to_owned(),
                    parent_category_id: Some(id.to_string()),
                });
            }
        }
        out
    }

    /// How many products the catalog holds.
    pub fn len(&self) -> usize {
        CATALOG.items.len()
    }

    /// Whether the catalog is empty (it never is).
    pub fn is_empty(&self) -> bool {
        CATALOG.items.is_empty()
    }

    /// The product with this id, if the catalog has it.
    pub fn product(&self, id: &str, currency: &str, tracking_id: &str) -> Option<Product> {
        let i = *CATALOG.by_id.get(id)?;
        Some(CATALOG.items[i].product(currency, tracking_id))
    }

    /// The catalog's products matching a query: in the asked categories (top-level or
    /// second-level ids) and price range, and whose title or category holds a keyword (all
    /// of them, in an order seeded by the query, when none does), at most
    /// [`MAX_RESULTS`], sorted as asked.
    fn page(
        &self,
        seed: &str,
        query: &ProductQuery,
        currency: &str,
        tracking_id: &str,
    ) -> ProductPage {
        let categories: Vec<&str> = query
            .category_ids
            .as_deref()
            .map(|c| c.split(',').map(str::trim).collect())
            .unwrap_or_default();
        let words: Vec<String> = query
            .keywords
            .as_deref()
            .unwrap_or("")
            .split_whitespace()
            .map(str::to_lowercase)
            .filter(|w| w.len() >= 3)
            .collect();
        let (lo, hi) = (
            query.min_price_cents.unwrap_or(0),
            query.max_price_cents.unwrap_or(i64::MAX),
        );
        let mut matched: Vec<(usize, u64, &Item)> = CATALOG
            .items
            .iter()
            .filter(|p| {
                categories.is_empty()
                    || categories
                        .iter()
                        .any(|c| *c == p.leaf || *c == p.top.0.to_string())
            })
            .filter(|p| (lo..=hi).contains(&p.sale_cents))
            .map(|p| {
                let hits = words
                    .iter()
                    .filter(|w| p.words.contains(w.as_str()))
                    .count();
                let order = xxh3_64(format!("{seed}|{}", p.id).as_bytes());
                (hits, order, p)
            })
            .collect();
        // Keyword matches only, when there are some; else the catalog stands in for a
        // gateway's loose matches, so a demo search never comes back empty.
        if matched.iter().any(|m| m.0 > 0) {
            matched.retain(|m| m.0 > 0);
        }
        matched.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
        matched.truncate(MAX_RESULTS);
        let mut all: Vec<Product> = matched
            .into_iter()
            .map(|(_, _, p)| p.product(currency, tracking_id))
            .collect();
        let price_of = |p: &Product| p.app_sale_price.parse::<f64>().unwrap_or_default();
        match query.sort {
            Sort::SalePriceAsc => all.sort_by(|a, b| price_of(a).total_cmp(&price_of(b))),
            Sort::SalePriceDesc => all.sort_by(|a, b| price_of(b).total_cmp(&price_of(a))),
            Sort::LastVolumeAsc => all.sort_by_key(|p| p.volume),
            Sort::LastVolumeDesc => all.sort_by_key(|p| std::cmp::Reverse(p.volume)),
        }
        let total = all.len() as i64;
        let start = (query.page_no.max(1) as usize - 1) * query.page_size as usize;
        let products = all
            .into_iter()
            .skip(start)
            .take(query.page_size as usize)
            .collect();
        ProductPage {
            products,
            total_results: total,
            current_page: query.page_no,
            page_size: query.page_size,
        }
    }

    /// One page of search results.
    pub fn search(&self, query: &ProductQuery, currency: &str, tracking_id: &str) -> ProductPage {
        let seed = format!(
            "search|{}|{}",
            query.keywords.as_deref().unwrap_or(""),
            query.category_ids.as_deref().unwrap_or("")
        );
        self.page(&seed, query, currency, tracking_id)
    }

    /// One page of hot products.
    pub fn hot(&self, query: &ProductQuery, currency: &str, tracking_id: &str) -> ProductPage {
        let seed = format!(
            "hot|{}|{}",
            query.keywords.as_deref().unwrap_or(""),
            query.category_ids.as_deref().unwrap_or("")
        );
        self.page(&seed, query, currency, tracking_id)
    }

    /// Affiliate links for URLs.
    pub fn links(&self, urls: &[String], tracking_id: &str) -> Vec<AffiliateLink> {
        urls.iter()
            .map(|url| AffiliateLink {
                original_url: url.clone(),
                affiliate_url: Some(format!(
                    "https://s.click.aliexpress.com/e/_mock{:08x}?tracking_id={tracking_id}",
                    xxh3_64(format!("{tracking_id}|{url}").as_bytes()) as u32
                )),
                tracking_id: tracking_id.to_owned(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(keywords: &str) -> ProductQuery {
        ProductQuery {
            keywords: Some(keywords.into()),
            category_ids: None,
            page_no: 1,
            page_size: 50,
            sort: Sort::SalePriceAsc,
            min_price_cents: None,
            max_price_cents: None,
        }
    }

    fn cents(p: &str) -> i64 {
        let (units, frac) = p.split_once('.').unwrap();
        units.parse::<i64>().unwrap() * 100 + frac.parse::<i64>().unwrap()
    }

    #[test]
    fn catalog_is_deterministic_and_hierarchical() {
        let m = MockCatalog;
        let id = EXAMPLE_IDS[0];
        assert_eq!(m.product(id, "USD", "t"), m.product(id, "USD", "t"));
        let cats = m.categories();
        let top = cats
            .iter()
            .filter(|c| c.parent_category_id.is_none())
            .count();
        assert_eq!(top, TOP_LEVEL.len());
        assert!(
            cats.iter()
                .any(|c| c.parent_category_id.as_deref() == Some("44"))
        );
    }

    /// Every product: a sale price at or below the original price, with the discount that
    /// separates them; both example ids exist and an id outside the catalog does not.
    #[test]
    fn prices_agree_and_the_catalog_is_finite() {
        let m = MockCatalog;
        assert!(m.len() > 1_000);
        for item in &CATALOG.items {
            let p = item.product("USD", "t");
            let (sale, original) = (cents(&p.app_sale_price), cents(&p.original_price));
            assert!(sale <= original, "{p:?}");
            let discount: i64 = p.discount.trim_end_matches('%').parse().unwrap();
            // The stated discount, give or take the rounding of cents.
            let implied = (original - sale) * 100 / original;
            assert!((implied - discount).abs() <= 1, "{p:?}");
        }
        for id in EXAMPLE_IDS {
            assert!(m.product(id, "USD", "t").is_some(), "{id}");
        }
        assert!(m.product("1005000000000001", "USD", "t").is_none());
        assert!(m.product("9123", "USD", "t").is_none());
    }

    /// What a search shows is what the product's details say.
    #[test]
    fn search_results_are_catalog_products() {
        let m = MockCatalog;
        let page = m.search(&query("desk lamp"), "USD", "t");
        assert_eq!(page.products.len(), 50);
        // Matches come first, then the page is sorted by price: the matches are in it.
        assert!(
            page.products
                .iter()
                .any(|p| p.product_title.contains("Lamp"))
        );
        for p in &page.products {
            assert_eq!(Some(p), m.product(&p.product_id, "USD", "t").as_ref());
        }
    }

    #[test]
    fn pages_respect_category_price_range_and_sort() {
        let q = ProductQuery {
            keywords: Some("lamp".into()),
            category_ids: Some("13".into()),
            page_no: 1,
            page_size: 20,
            sort: Sort::SalePriceAsc,
            min_price_cents: Some(1000),
            max_price_cents: Some(6000),
        };
        let page = MockCatalog.search(&q, "USD", "t");
        assert!(!page.products.is_empty());
        assert!(
            page.products
                .iter()
                .all(|p| p.first_level_category_id.as_deref() == Some("13"))
        );
        let prices: Vec<i64> = page
            .products
            .iter()
            .map(|p| cents(&p.app_sale_price))
            .collect();
        assert!(
            prices.iter().all(|p| (1000..=6000).contains(p)),
            "{prices:?}"
        );
        assert!(prices.windows(2).all(|w| w[0] <= w[1]));
        // Past the last page: empty, with the same total.
        let last = MockCatalog.search(&ProductQuery { page_no: 50, ..q }, "USD", "t");
        assert!(last.products.is_empty());
        assert_eq!(last.total_results, page.total_results);
    }
}
