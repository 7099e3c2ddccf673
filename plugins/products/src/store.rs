//! The queries and the writes. Plain functions over a connection, run by [`crate::db::Db`]
//! on the blocking pool; the cached service functions in [`crate::service`] call them.

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::ProductsError;
use crate::model::{
    CatalogPage, Category, CategoryList, Preferences, Product, ProductDescription, ProductSummary,
    StaticEntry,
};

/// Catalog page size when the request names none.
pub const DEFAULT_PAGE_SIZE: u32 = 20;
/// Largest catalog page.
pub const MAX_PAGE_SIZE: u32 = 100;
/// The static-data key `/configuration` serves.
pub const APP_CONFIG: &str = "app_config";

/// Catalog orders, as the `sort` parameter names them, and their SQL.
pub const SORTS: &[(&str, &str)] = &[
    ("id", "p.id"),
    ("name", "p.name, p.id"),
    ("price", "p.price_cents, p.id"),
    ("-price", "p.price_cents DESC, p.id"),
    ("rating", "p.rating DESC, p.id"),
    ("newest", "p.updated_at DESC, p.id DESC"),
];

/// One catalog page, canonical: every field has its value (defaults filled in), so one
/// page has one cache key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CatalogQuery {
    /// Category slug, `None` for all.
    pub category: Option<String>,
    /// One of [`SORTS`].
    pub sort: &'static str,
    /// From 1.
    pub page: u32,
    /// 1 to [`MAX_PAGE_SIZE`].
    pub page_size: u32,
}

impl CatalogQuery {
    /// The cache key (without the plugin's namespace, which the core adds).
    pub fn key(&self) -> String {
        format!(
            "catalog:{}:{}:{}:{}",
            self.category.as_deref().unwrap_or("all"),
            self.sort,
            self.page,
            self.page_size
        )
    }
}

fn product_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Product> {
    let attributes: String = r.get("attributes")?;
    let features: String = r.get("features")?;
    Ok(Product {
        id: r.get("id")?,
        sku: r.get("sku")?,
        name: r.get("name")?,
        category: r.get("slug")?,
        price_cents: r.get("price_cents")?,
        currency: r.get("currency")?,
        stock: r.get("stock")?,
        rating: r.get("rating")?,
        attributes: serde_json::from_str(&attributes).unwrap_or(Value::Null),
        description: ProductDescription {
            summary: r.get("summary")?,
            body: r.get("body")?,
            features: serde_json::from_str(&features).unwrap_or_default(),
        },
        version: r.get("version")?,
        updated_at: r.get("updated_at")?,
    })
}

/// One product with its description.
pub fn product(c: &Connection, id: i64) -> Result<Option<Product>, ProductsError> {
    Ok(c.query_row(
        "SELECT p.*, c.slug, d.summary, d.body, d.features
         FROM products p JOIN categories c ON c.id = p.category_id
         JOIN descriptions d ON d.product_id = p.id
         WHERE p.id = ?1",
        [id],
        product_row,
    )
    .optional()?)
}

/// The largest product id: ids above it are answered 404 without a cache entry.
pub fn max_product_id(c: &Connection) -> Result<i64, ProductsError> {
    Ok(
        c.query_row("SELECT COALESCE(MAX(id), 0) FROM products", [], |r| {
            r.get(0)
        })?,
    )
}

/// Product ids after `after`, at most `limit`, in id order: the warm source pages the
/// catalog with it instead of reading every row at once.
pub fn product_ids_after(
    c: &Connection,
    after: i64,
    limit: u32,
) -> Result<Vec<i64>, ProductsError> {
    let mut stmt =
        c.prepare_cached("SELECT id FROM products WHERE id > ?1 ORDER BY id LIMIT ?2")?;
    let ids = stmt
        .query_map(params![after, limit], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(ids)
}

/// Category slugs, in order.
pub fn category_slugs(c: &Connection) -> Result<Vec<String>, ProductsError> {
    let mut stmt = c.prepare("SELECT slug FROM categories ORDER BY slug")?;
    let slugs = stmt
        .query_map([], |r| r.get(0))?
        .collect::<Result<_, _>>()?;
    Ok(slugs)
}

/// Every category with its product count.
pub fn categories(c: &Connection) -> Result<CategoryList, ProductsError> {
    let mut stmt = c.prepare(
        "SELECT c.slug, c.name, c.description, COUNT(p.id)
         FROM categories c LEFT JOIN products p ON p.category_id = c.id
         GROUP BY c.id ORDER BY c.slug",
    )?;
    let categories: Vec<Category> = stmt
        .query_map([], |r| {
            Ok(Category {
                slug: r.get(0)?,
                name: r.get(1)?,
                description: r.get(2)?,
                product_count: r.get(3)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let total_products = categories.iter().map(|c| c.product_count).sum();
    Ok(CategoryList {
        categories,
        total_products,
    })
}

/// Products matching the query's category.
pub fn catalog_total(c: &Connection, category: Option<&str>) -> Result<i64, ProductsError> {
    Ok(match category {
        Some(slug) => c.query_row(
            "SELECT COUNT(*) FROM products p JOIN categories c ON c.id = p.category_id WHERE c.slug = ?1",
            [slug],
            |r| r.get(0),
        )?,
        None => c.query_row("SELECT COUNT(*) FROM products", [], |r| r.get(0))?,
    })
}

/// Pages of `page_size` needed for `total` products (at least one, possibly empty).
pub fn page_count(total: i64, page_size: u32) -> u32 {
    let size = i64::from(page_size.max(1));
    ((total + size - 1) / size).max(1) as u32
}

/// One catalog page. The caller has checked that the page exists.
pub fn catalog(c: &Connection, q: &CatalogQuery) -> Result<CatalogPage, ProductsError> {
    let order = SORTS
        .iter()
        .find(|(name, _)| *name == q.sort)
        .map_or("p.id", |(_, sql)| sql);
    let total = catalog_total(c, q.category.as_deref())?;
    // `order` comes from the fixed table above, never from the request.
    let sql = format!(
        "SELECT p.id, p.sku, p.name, c.slug, p.price_cents, p.currency, p.rating, p.stock, d.summary
         FROM products p JOIN categories c ON c.id = p.category_id
         JOIN descriptions d ON d.product_id = p.id
         WHERE (?1 IS NULL OR c.slug = ?1)
         ORDER BY {order} LIMIT ?2 OFFSET ?3"
    );
    let mut stmt = c.prepare_cached(&sql)?;
    let offset = i64::from(q.page - 1) * i64::from(q.page_size);
    let items = stmt
        .query_map(params![q.category, q.page_size, offset], |r| {
            Ok(ProductSummary {
                id: r.get(0)?,
                sku: r.get(1)?,
                name: r.get(2)?,
                category: r.get(3)?,
                price_cents: r.get(4)?,
                currency: r.get(5)?,
                rating: r.get(6)?,
                stock: r.get(7)?,
                summary: r.get(8)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(CatalogPage {
        items,
        page: q.page,
        page_size: q.page_size,
        total,
        pages: page_count(total, q.page_size),
        category: q.category.clone().unwrap_or_else(|| "all".into()),
        sort: q.sort.to_owned(),
    })
}

/// What a product update changes; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct ProductPatch {
    /// New name.
    pub name: Option<String>,
    /// New price, cents.
    pub price_cents: Option<i64>,
    /// New stock.
    pub stock: Option<i64>,
    /// New category slug (checked to exist by the caller).
    pub category: Option<String>,
    /// New summary sentence.
    pub summary: Option<String>,
    /// New description body.
    pub body: Option<String>,
    /// Attributes merged into the stored ones (a `null` value removes one).
    pub attributes: Option<std::collections::BTreeMap<String, Value>>,
}

/// Applies `patch` to product `id` in one transaction; returns the updated product and the
/// category it had before, or `None` when there is no such product.
pub fn update_product(
    c: &mut Connection,
    id: i64,
    patch: &ProductPatch,
    now: &str,
) -> Result<Option<(Product, String)>, ProductsError> {
    let tx = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let Some(before) = product(&tx, id)? else {
        return Ok(None);
    };
    let mut attributes = match before.attributes.clone() {
        Value::Object(m) => m,
        _ => serde_json::Map::new(),
    };
    if let Some(changes) = &patch.attributes {
        for (k, v) in changes {
            if v.is_null() {
                attributes.remove(k);
            } else {
                attributes.insert(k.clone(), v.clone());
            }
        }
    }
    tx.execute(
        "UPDATE products SET
            name = COALESCE(?2, name),
            price_cents = COALESCE(?3, price_cents),
            stock = COALESCE(?4, stock),
            category_id = COALESCE((SELECT id FROM categories WHERE slug = ?5), category_id),
            attributes = ?6,
            version = version + 1,
            updated_at = ?7
         WHERE id = ?1",
        params![
            id,
            patch.name,
            patch.price_cents,
            patch.stock,
            patch.category,
            Value::Object(attributes).to_string(),
            now
        ],
    )?;
    tx.execute(
        "UPDATE descriptions SET summary = COALESCE(?2, summary), body = COALESCE(?3, body)
         WHERE product_id = ?1",
        params![id, patch.summary, patch.body],
    )?;
    let after = product(&tx, id)?.ok_or_else(|| ProductsError::internal("product vanished"))?;
    tx.commit()?;
    Ok(Some((after, before.category)))
}

/// The defaults of a user who never saved preferences.
pub fn default_preferences(user: &str) -> Preferences {
    Preferences {
        user_id: user.to_owned(),
        language: "en".into(),
        currency: "USD".into(),
        page_size: DEFAULT_PAGE_SIZE,
        favourite_categories: Vec::new(),
        newsletter: false,
        theme: "system".into(),
        stored: false,
        updated_at: None,
    }
}

/// A user's saved preferences, or the defaults.
pub fn preferences(c: &Connection, user: &str) -> Result<Preferences, ProductsError> {
    let row = c
        .query_row(
            "SELECT language, currency, page_size, favourite_categories, newsletter, theme, updated_at
             FROM user_preferences WHERE user_id = ?1",
            [user],
            |r| {
                let favourites: String = r.get(3)?;
                Ok(Preferences {
                    user_id: user.to_owned(),
                    language: r.get(0)?,
                    currency: r.get(1)?,
                    page_size: r.get(2)?,
                    favourite_categories: serde_json::from_str(&favourites).unwrap_or_default(),
                    newsletter: r.get(4)?,
                    theme: r.get(5)?,
                    stored: true,
                    updated_at: Some(r.get(6)?),
                })
            },
        )
        .optional()?;
    Ok(row.unwrap_or_else(|| default_preferences(user)))
}

/// Saves a user's preferences whole.
pub fn save_preferences(c: &Connection, p: &Preferences, now: &str) -> Result<(), ProductsError> {
    c.execute(
        "INSERT INTO user_preferences (user_id, language, currency, page_size, favourite_categories, newsletter, theme, updated_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)
         ON CONFLICT (user_id) DO UPDATE SET language = ?2, currency = ?3, page_size = ?4,
            favourite_categories = ?5, newsletter = ?6, theme = ?7, updated_at = ?8",
        params![
            p.user_id,
            p.language,
            p.currency,
            p.page_size,
            serde_json::to_string(&p.favourite_categories)?,
            p.newsletter,
            p.theme,
            now
        ],
    )?;
    Ok(())
}

/// A static-data entry.
pub fn static_get(c: &Connection, key: &str) -> Result<Option<StaticEntry>, ProductsError> {
    let row: Option<(String, String)> = c
        .query_row(
            "SELECT value, updated_at FROM static_data WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    row.map(|(value, updated_at)| {
        Ok(StaticEntry {
            key: key.to_owned(),
            value: serde_json::from_str(&value)?,
            updated_at,
        })
    })
    .transpose()
}

/// Stores a static-data entry (replacing one of the same key).
pub fn static_put(
    c: &Connection,
    key: &str,
    value: &Value,
    now: &str,
) -> Result<(), ProductsError> {
    c.execute(
        "INSERT INTO static_data (key, value, updated_at) VALUES (?1, ?2, ?3)
         ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3",
        params![key, value.to_string(), now],
    )?;
    Ok(())
}

/// Removes a static-data entry; whether there was one.
pub fn static_delete(c: &Connection, key: &str) -> Result<bool, ProductsError> {
    Ok(c.execute("DELETE FROM static_data WHERE key = ?1", [key])? > 0)
}
