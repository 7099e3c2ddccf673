//! Normalised inputs and the cache keys built from them.
//!
//! Keys are canonical: the search key hashes the sorted, non-empty parameters (after
//! defaults), so `GET ?keywords=x` and `POST {"keywords":"x","page_no":1}` share one entry.
//! The digest is xxh3-128, stable across processes and machines (never a randomised
//! hasher). Every key starts with the integration mode so mock and real data never share
//! an entry, and includes the language and currency the data was fetched in.

use xxhash_rust::xxh3::xxh3_128;

use crate::config::Settings;
use crate::model::{SearchRequest, Sort};

/// An input that fails validation beyond what the schema checks.
#[derive(Debug, Clone, PartialEq)]
pub struct Invalid {
    /// The field, as the client named it (`urls[2]`, `max_sale_price`).
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl Invalid {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// A product query (search or hot products), normalised.
#[derive(Debug, Clone, PartialEq)]
pub struct ProductQuery {
    /// Trimmed keywords, `None` when empty.
    pub keywords: Option<String>,
    /// Category ids without spaces, `None` when empty.
    pub category_ids: Option<String>,
    /// Page, from 1.
    pub page_no: u32,
    /// Page size, 1–50.
    pub page_size: u32,
    /// Sort order.
    pub sort: Sort,
    /// Lowest price in cents.
    pub min_price_cents: Option<i64>,
    /// Highest price in cents.
    pub max_price_cents: Option<i64>,
}

fn cents(price: f64) -> i64 {
    (price * 100.0).round() as i64
}

impl ProductQuery {
    /// Normalises a request. `require_filter`: searches need keywords or categories; the hot
    /// list does not.
    pub fn from_request(req: &SearchRequest, require_filter: bool) -> Result<Self, Invalid> {
        let keywords = req
            .keywords
            .as_deref()
            .map(|k| k.split_whitespace().collect::<Vec<_>>().join(" "))
            .filter(|k| !k.is_empty());
        let category_ids = req
            .category_ids
            .as_deref()
            .map(|c| c.chars().filter(|c| !c.is_whitespace()).collect::<String>())
            .filter(|c| !c.is_empty());
        if require_filter && keywords.is_none() && category_ids.is_none() {
            return Err(Invalid::new(
                "keywords",
                "give `keywords` (or `category_ids`) to search for",
            ));
        }
        for (field, value) in [
            ("min_sale_price", req.min_sale_price),
            ("max_sale_price", req.max_sale_price),
        ] {
            if value.is_some_and(|v| !v.is_finite() || v > 1e9) {
                return Err(Invalid::new(field, "must be a price between 0 and 1e9"));
            }
        }
        let min_price_cents = req.min_sale_price.map(cents);
        let max_price_cents = req.max_sale_price.map(cents);
        if let (Some(min), Some(max)) = (min_price_cents, max_price_cents)
            && min > max
        {
            return Err(Invalid::new(
                "max_sale_price",
                "must not be lower than `min_sale_price`",
            ));
        }
        Ok(Self {
            keywords,
            category_ids,
            page_no: req.page_no,
            page_size: req.page_size,
            sort: req.sort,
            min_price_cents,
            max_price_cents,
        })
    }

    /// The gateway parameters of this query (prices in cents), sorted by name, empty ones
    /// left out. Also the canonical form the cache key hashes.
    pub fn params(&self, settings: &Settings) -> Vec<(&'static str, String)> {
        let mut params = vec![
            (
                "category_ids",
                self.category_ids.clone().unwrap_or_default(),
            ),
            ("keywords", self.keywords.clone().unwrap_or_default()),
            (
                "max_sale_price",
                self.max_price_cents
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            (
                "min_sale_price",
                self.min_price_cents
                    .map(|c| c.to_string())
                    .unwrap_or_default(),
            ),
            ("page_no", self.page_no.to_string()),
            ("page_size", self.page_size.to_string()),
            ("sort", self.sort.as_str().to_owned()),
            ("target_currency", settings.currency.clone()),
            ("target_language", settings.language.clone()),
            ("tracking_id", settings.tracking_id.clone()),
        ];
        params.retain(|(_, v)| !v.is_empty());
        params
    }

    /// `<kind>:<mode>:<xxh3-128 of the canonical parameters>`.
    pub fn cache_key(&self, kind: &str, settings: &Settings) -> String {
        format!(
            "{kind}:{}:{}",
            settings.integration(),
            digest(&self.params(settings))
        )
    }
}

/// Hex xxh3-128 of a list of pairs, encoded unambiguously (as a JSON array).
pub fn digest<K: serde::Serialize, V: serde::Serialize>(pairs: &[(K, V)]) -> String {
    let encoded = serde_json::to_vec(pairs).unwrap_or_default();
    format!("{:032x}", xxh3_128(&encoded))
}

/// Sorted, de-duplicated product ids, checked numeric.
pub fn product_ids(ids: &[String], field: &str) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::with_capacity(ids.len());
    for (i, id) in ids.iter().enumerate() {
        let id = id.trim();
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            let name = if ids.len() == 1 && field == "id" {
                field.to_owned()
            } else {
                format!("{field}[{i}]")
            };
            return Err(Invalid::new(name, "a product id is 1–20 digits"));
        }
        out.push(id.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

/// Checks every URL is http(s); returns them sorted and de-duplicated (the key's form).
pub fn urls(urls: &[String], field: &str) -> Result<Vec<String>, Invalid> {
    let mut out = Vec::with_capacity(urls.len());
    for (i, url) in urls.iter().enumerate() {
        let url = url.trim();
        let ok = (url.starts_with("https://") || url.starts_with("http://"))
            && url.len() > "https://".len()
            && url.len() <= 2048
            && !url.chars().any(char::is_whitespace);
        if !ok {
            let name = if field == "url" {
                field.to_owned()
            } else {
                format!("{field}[{i}]")
            };
            return Err(Invalid::new(name, "must be an http(s) URL"));
        }
        out.push(url.to_owned());
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AliexpressConfig;

    fn settings() -> Settings {
        Settings::resolve(AliexpressConfig::default(), &|_| None).unwrap()
    }

    fn request(keywords: &str) -> SearchRequest {
        SearchRequest {
            keywords: Some(keywords.into()),
            page_no: 1,
            page_size: 10,
            ..Default::default()
        }
    }

    #[test]
    fn equivalent_searches_share_a_key() {
        let s = settings();
        let a = ProductQuery::from_request(&request("  usb   cable "), true).unwrap();
        let mut b = request("usb cable");
        b.category_ids = Some(" ".into());
        let b = ProductQuery::from_request(&b, true).unwrap();
        assert_eq!(a.cache_key("search", &s), b.cache_key("search", &s));
        let c = ProductQuery::from_request(&request("usb cables"), true).unwrap();
        assert_ne!(a.cache_key("search", &s), c.cache_key("search", &s));
    }

    #[test]
    fn key_is_stable_across_processes() {
        // A fixed digest: a randomised or platform-dependent hasher would fail this.
        let q = ProductQuery::from_request(&request("usb cable"), true).unwrap();
        let key = q.cache_key("search", &settings());
        assert!(key.starts_with("search:mock:"), "{key}");
        assert_eq!(key, q.cache_key("search", &settings()));
        assert_eq!(
            digest(&[("a", "1"), ("b", "2")]),
            format!("{:032x}", xxh3_128(br#"[["a","1"],["b","2"]]"#))
        );
    }

    #[test]
    fn prices_go_upstream_in_cents() {
        let mut r = request("lamp");
        r.min_sale_price = Some(12.5);
        r.max_sale_price = Some(99.99);
        let q = ProductQuery::from_request(&r, true).unwrap();
        let params = q.params(&settings());
        assert!(params.contains(&("min_sale_price", "1250".into())));
        assert!(params.contains(&("max_sale_price", "9999".into())));
        r.min_sale_price = Some(100.0);
        let err = ProductQuery::from_request(&r, true).unwrap_err();
        assert_eq!(err.field, "max_sale_price");
    }

    #[test]
    fn ids_and_urls_are_checked_and_canonical() {
        assert_eq!(
            product_ids(&["2".into(), "1".into(), "2".into()], "product_ids").unwrap(),
            vec!["1", "2"]
        );
        assert_eq!(
            product_ids(&["1".into(), "x".into()], "product_ids")
                .unwrap_err()
                .field,
            "product_ids[1]"
        );
        assert_eq!(
            urls(&["ftp://a".into()], "urls").unwrap_err().field,
            "urls[0]"
        );
    }
}
