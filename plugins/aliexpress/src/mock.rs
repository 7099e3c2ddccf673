//! Mock mode: a deterministic generated catalog, so every route works with no credentials
//! and no network. The same input always gives the same output (every value derives from
//! an xxh3 digest of the input), and responses say `api_integration: "mock"`.

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

/// The generated catalog. Stateless: everything is computed from the request.
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
                    category_id: (200_000_000 + id * 1000 + i as u32 + 1).to_string(),
                    category_name: (*child).to_owned(),
                    parent_category_id: Some(id.to_string()),
                });
            }
        }
        out
    }

    /// The product with this id. Every numeric id exists in the mock catalog.
    pub fn product(&self, id: &str, currency: &str, tracking_id: &str) -> Product {
        let h = xxh3_64(id.as_bytes());
        let (cat_id, cat_name, _) = TOP_LEVEL[(h % TOP_LEVEL.len() as u64) as usize];
        let sale = 199 + (h >> 8) as i64 % 9_800;
        let discount = 5 + (h >> 24) % 60;
        let original = sale * 100 / (100 - discount as i64);
        let shop = 900_000 + (h >> 32) % 100_000;
        Product {
            product_id: id.to_owned(),
            product_title: format!("{} {}", pick(ADJECTIVES, h >> 4), pick(NOUNS, h >> 12)),
            product_url: format!("https://www.aliexpress.com/item/{id}.html"),
            promotion_link: Some(format!(
                "https://s.click.aliexpress.com/e/_mock{:08x}?tracking_id={tracking_id}",
                h as u32
            )),
            app_sale_price: price(sale),
            original_price: price(original),
            currency: currency.to_owned(),
            discount: format!("{discount}%"),
            evaluate_rate: format!("{}.{}%", 90 + (h >> 40) % 10, (h >> 44) % 10),
            commission_rate: format!("{}.0%", 3 + (h >> 48) % 8),
            volume: Some(((h >> 52) % 5_000) as i64),
            product_main_image_url: Some(format!("https://ae01.alicdn.com/kf/mock-{id}.jpg")),
            product_small_image_urls: (1..=3)
                .map(|i| format!("https://ae01.alicdn.com/kf/mock-{id}-{i}.jpg"))
                .collect(),
            shop_id: shop.to_string(),
            shop_url: Some(format!("https://www.aliexpress.com/store/{shop}")),
            first_level_category_id: Some(cat_id.to_string()),
            first_level_category_name: Some(cat_name.to_owned()),
        }
    }

    fn page(
        &self,
        seed: &str,
        query: &ProductQuery,
        currency: &str,
        tracking_id: &str,
    ) -> ProductPage {
        const TOTAL: i64 = 240;
        let start = i64::from(query.page_no - 1) * i64::from(query.page_size);
        let count = (TOTAL - start).clamp(0, i64::from(query.page_size));
        let mut products: Vec<Product> = (0..count)
            .map(|i| {
                let h = xxh3_64(format!("{seed}#{}", start + i).as_bytes());
                let id = format!("10050{:011}", h % 100_000_000_000);
                let mut p = self.product(&id, currency, tracking_id);
                if let Some(k) = &query.keywords {
                    p.product_title = format!("{} – {}", title_case(k), p.product_title);
                }
                // Keep generated prices inside the asked range.
                let (lo, hi) = (
                    query.min_price_cents.unwrap_or(0),
                    query.max_price_cents.unwrap_or(i64::MAX),
                );
                let mut cents = 199 + (h >> 20) as i64 % 9_800;
                if cents < lo || cents > hi {
                    let span = (hi.min(lo + 10_000) - lo).max(0) + 1;
                    cents = lo + (h >> 20) as i64 % span;
                }
                p.app_sale_price = price(cents);
                p
            })
            .collect();
        let price_of = |p: &Product| p.app_sale_price.parse::<f64>().unwrap_or_default();
        match query.sort {
            Sort::SalePriceAsc => products.sort_by(|a, b| price_of(a).total_cmp(&price_of(b))),
            Sort::SalePriceDesc => products.sort_by(|a, b| price_of(b).total_cmp(&price_of(a))),
            Sort::LastVolumeAsc => products.sort_by_key(|p| p.volume),
            Sort::LastVolumeDesc => products.sort_by_key(|p| std::cmp::Reverse(p.volume)),
        }
        ProductPage {
            products,
            total_results: TOTAL,
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

fn title_case(words: &str) -> String {
    words
        .split(' ')
        .map(|w| {
            let mut chars = w.chars();
            match chars.next() {
                Some(first) => first.to_uppercase().chain(chars).collect(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_deterministic_and_hierarchical() {
        let m = MockCatalog;
        assert_eq!(m.product("42", "USD", "t"), m.product("42", "USD", "t"));
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

    #[test]
    fn pages_respect_price_range_and_sort() {
        let q = ProductQuery {
            keywords: Some("lamp".into()),
            category_ids: None,
            page_no: 2,
            page_size: 20,
            sort: Sort::SalePriceAsc,
            min_price_cents: Some(1000),
            max_price_cents: Some(2000),
        };
        let page = MockCatalog.search(&q, "USD", "t");
        assert_eq!(page.products.len(), 20);
        let prices: Vec<f64> = page
            .products
            .iter()
            .map(|p| p.app_sale_price.parse().unwrap())
            .collect();
        assert!(
            prices.iter().all(|p| (10.0..=20.0).contains(p)),
            "{prices:?}"
        );
        assert!(prices.windows(2).all(|w| w[0] <= w[1]));
    }
}
