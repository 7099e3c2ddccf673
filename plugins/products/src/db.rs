//! The SQLite database: schema, a pool of connections kept off the async runtime, and the
//! generated catalog of a first start.
//!
//! Every call runs on tokio's blocking pool, never on a runtime worker. The database is in
//! WAL mode, so reads never wait for a write, and two servers may share one file (the
//! cross-instance test does).

use std::path::Path;
use std::time::Duration;

use r2d2_sqlite::SqliteConnectionManager;
use rand::{Rng as _, SeedableRng};
use rusqlite::{Connection, params};

use crate::error::ProductsError;

/// The schema; `meta.generated` marks a catalog whose generation finished.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS categories (
    id          INTEGER PRIMARY KEY,
    slug        TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    description TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id          INTEGER PRIMARY KEY,
    sku         TEXT NOT NULL UNIQUE,
    name        TEXT NOT NULL,
    category_id INTEGER NOT NULL REFERENCES categories(id),
    price_cents INTEGER NOT NULL CHECK (price_cents >= 0),
    currency    TEXT NOT NULL,
    stock       INTEGER NOT NULL CHECK (stock >= 0),
    rating      REAL NOT NULL,
    attributes  TEXT NOT NULL,
    version     INTEGER NOT NULL DEFAULT 1,
    updated_at  TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS products_category ON products (category_id, id);
CREATE TABLE IF NOT EXISTS descriptions (
    product_id INTEGER PRIMARY KEY REFERENCES products(id),
    summary    TEXT NOT NULL,
    body       TEXT NOT NULL,
    features   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS user_preferences (
    user_id              TEXT PRIMARY KEY,
    language             TEXT NOT NULL,
    currency             TEXT NOT NULL,
    page_size            INTEGER NOT NULL,
    favourite_categories TEXT NOT NULL,
    newsletter           INTEGER NOT NULL,
    theme                TEXT NOT NULL,
    updated_at           TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS static_data (
    key        TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"#;

/// How long a statement waits for another connection's (or process's) write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    pool: r2d2::Pool<SqliteConnectionManager>,
}

impl Db {
    /// Opens (creating when missing) the database at `path`, applies the schema and, when
    /// the file holds no finished catalog, generates one; `None` makes a private in-memory
    /// one (a server built only to be inspected). Blocking: call it from a blocking
    /// context.
    pub fn open_blocking(
        path: Option<&Path>,
        connections: u32,
        seed: u64,
        size: Size,
        now: &str,
    ) -> Result<(Db, Option<Size>), ProductsError> {
        let Some(path) = path else {
            // One private in-memory database per connection: keep exactly one.
            let manager = SqliteConnectionManager::memory();
            let pool = r2d2::Pool::builder().max_size(1).build(manager)?;
            return Self::prepare(pool, seed, size, now);
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                ProductsError::internal(format!(
                    "cannot create the database folder `{}`: {e}",
                    dir.display()
                ))
            })?;
        }
        let manager = SqliteConnectionManager::file(path).with_init(|c| {
            c.busy_timeout(BUSY_TIMEOUT)?;
            c.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
        });
        let pool = r2d2::Pool::builder()
            .max_size(connections.clamp(1, 32))
            .connection_timeout(BUSY_TIMEOUT)
            .build(manager)
            .map_err(|e| {
                ProductsError::internal(format!("cannot open database `{}`: {e}", path.display()))
            })?;
        Self::prepare(pool, seed, size, now)
    }

    fn prepare(
        pool: r2d2::Pool<SqliteConnectionManager>,
        seed: u64,
        size: Size,
        now: &str,
    ) -> Result<(Db, Option<Size>), ProductsError> {
        let mut conn = pool.get()?;
        // WAL is a property of the file; a second server opening it finds it set.
        conn.query_row("PRAGMA journal_mode = WAL", [], |_| Ok(()))?;
        // One immediate transaction, so two servers starting on one new file take turns:
        // the second finds the first's finished catalog.
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        tx.execute_batch(SCHEMA)?;
        let generated: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'generated'", [], |r| {
                r.get(0)
            })
            .ok();
        let made = if generated.is_none() {
            generate(&tx, seed, size, now)?;
            Some(size)
        } else {
            None
        };
        tx.commit()?;
        drop(conn);
        Ok((Db { pool }, made))
    }

    /// Runs `f` on a pooled connection, on the blocking pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T, ProductsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, ProductsError> + Send + 'static,
    {
        let pool = self.pool.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = pool.get()?;
            f(&mut conn)
        })
        .await
        .map_err(|e| ProductsError::internal(format!("database task failed: {e}")))?
    }
}

/// How much a first start generates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size {
    /// Products.
    pub products: u32,
    /// Users with stored preferences.
    pub users: u32,
}

/// The categories of the generated catalog: slug, name, description, the nouns its
/// products are named after.
const CATEGORIES: &[(&str, &str, &str, &[&str])] = &[
    (
        "audio",
        "Audio",
        "Headphones, speakers and microphones.",
        &["Headphones", "Speaker", "Earbuds", "Microphone", "Soundbar"],
    ),
    (
        "cameras",
        "Cameras",
        "Cameras, lenses and tripods.",
        &["Camera", "Lens", "Tripod", "Action Cam", "Gimbal"],
    ),
    (
        "computers",
        "Computers",
        "Laptops, desktops and their parts.",
        &["Laptop", "Monitor", "Keyboard", "Mouse", "Dock"],
    ),
    (
        "phones",
        "Phones",
        "Phones, cases and chargers.",
        &["Phone", "Case", "Charger", "Power Bank", "Cable"],
    ),
    (
        "kitchen",
        "Kitchen",
        "Cookware and small appliances.",
        &["Kettle", "Blender", "Pan", "Knife Set", "Toaster"],
    ),
    (
        "home",
        "Home",
        "Furniture, lighting and decoration.",
        &["Lamp", "Chair", "Shelf", "Rug", "Clock"],
    ),
    (
        "garden",
        "Garden",
        "Tools and outdoor living.",
        &["Hose", "Planter", "Shears", "Bench", "Lantern"],
    ),
    (
        "sports",
        "Sports",
        "Fitness and outdoor gear.",
        &["Yoga Mat", "Dumbbell", "Bottle", "Backpack", "Tent"],
    ),
    (
        "toys",
        "Toys",
        "Games and toys for every age.",
        &["Puzzle", "Board Game", "Robot Kit", "Plush", "Kite"],
    ),
    (
        "books",
        "Books",
        "Printed books and journals.",
        &["Cookbook", "Novel", "Atlas", "Journal", "Guide"],
    ),
    (
        "beauty",
        "Beauty",
        "Skin care and grooming.",
        &["Trimmer", "Hair Dryer", "Brush", "Mirror", "Kit"],
    ),
    (
        "office",
        "Office",
        "Desks, paper and organisers.",
        &["Desk", "Notebook", "Pen Set", "Organizer", "Stapler"],
    ),
];

const ADJECTIVES: &[&str] = &[
    "Compact",
    "Pro",
    "Classic",
    "Ultra",
    "Eco",
    "Smart",
    "Travel",
    "Deluxe",
    "Mini",
    "Studio",
    "Rugged",
    "Wireless",
    "Premium",
    "Essential",
    "Quiet",
];
const MATERIALS: &[&str] = &[
    "aluminium",
    "recycled plastic",
    "oak",
    "steel",
    "bamboo",
    "glass",
    "silicone",
    "cotton",
];
const COLOURS: &[&str] = &[
    "black",
    "white",
    "graphite",
    "sand",
    "forest green",
    "navy",
    "red",
    "silver",
];
const FEATURES: &[&str] = &[
    "Two-year warranty",
    "Free returns within 30 days",
    "Ships in recyclable packaging",
    "Replacement parts available",
    "Dishwasher safe",
    "USB-C charging",
    "Water resistant",
    "Tool-free assembly",
    "Energy efficient",
    "Fits in carry-on luggage",
];
const LANGUAGES: &[&str] = &["en", "de", "fr", "es", "it", "pt", "ja"];
const CURRENCIES: &[&str] = &["USD", "EUR", "GBP", "JPY"];
const THEMES: &[&str] = &["light", "dark", "system"];

fn pick<'a, T>(rng: &mut rand_chacha::ChaCha8Rng, items: &'a [T]) -> &'a T {
    &items[rng.random_range(0..items.len())]
}

/// Fills an empty database: categories, products with descriptions, users' preferences and
/// the app configuration. Deterministic for a seed and a size; `now` dates the rows.
fn generate(
    tx: &rusqlite::Transaction<'_>,
    seed: u64,
    size: Size,
    now: &str,
) -> Result<(), ProductsError> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    for (i, (slug, name, description, _)) in CATEGORIES.iter().enumerate() {
        tx.execute(
            "INSERT INTO categories (id, slug, name, description) VALUES (?1, ?2, ?3, ?4)",
            params![i as i64 + 1, slug, name, description],
        )?;
    }
    {
        let mut product = tx.prepare(
            "INSERT INTO products (id, sku, name, category_id, price_cents, currency, stock, rating, attributes, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 'USD', ?6, ?7, ?8, ?9)",
        )?;
        let mut description = tx.prepare(
            "INSERT INTO descriptions (product_id, summary, body, features) VALUES (?1, ?2, ?3, ?4)",
        )?;
        for id in 1..=i64::from(size.products) {
            let c = rng.random_range(0..CATEGORIES.len());
            let (slug, cat_name, _, nouns) = CATEGORIES[c];
            let adjective = *pick(&mut rng, ADJECTIVES);
            let noun = *pick(&mut rng, nouns);
            let name = format!("{adjective} {noun} {}", rng.random_range(100..1000));
            let material = *pick(&mut rng, MATERIALS);
            let colour = *pick(&mut rng, COLOURS);
            let price = rng.random_range(499..150_000i64);
            let stock = rng.random_range(0..500i64);
            let rating = f64::from(rng.random_range(25..=50u32)) / 10.0;
            let weight = rng.random_range(80..9_000u32);
            let attributes = serde_json::json!({
                "colour": colour,
                "material": material,
                "weight_g": weight,
                "warranty_months": *pick(&mut rng, &[12u32, 24, 36]),
            });
            let mut features: Vec<&str> = Vec::new();
            while features.len() < 3 {
                let f = *pick(&mut rng, FEATURES);
                if !features.contains(&f) {
                    features.push(f);
                }
            }
            let summary = format!(
                "The {name} is a {} {} in {colour} {material}.",
                adjective.to_lowercase(),
                noun.to_lowercase()
            );
            let body = format!(
                "{summary} Designed for everyday use, it belongs to our {cat_name} range and \
                 weighs {weight} g. {} customers rate it {rating:.1} out of 5. \
                 Every {noun} is inspected before it ships, and its {material} finish is \
                 chosen to last: wipe it clean with a damp cloth. {}.",
                rng.random_range(3..4_000u32),
                features.join(". "),
            );
            product.execute(params![
                id,
                format!("{}-{id:06}", &slug[..3].to_uppercase()),
                name,
                c as i64 + 1,
                price,
                stock,
                rating,
                attributes.to_string(),
                now,
            ])?;
            description.execute(params![
                id,
                summary,
                body,
                serde_json::to_string(&features)?
            ])?;
        }
        let mut prefs = tx.prepare(
            "INSERT INTO user_preferences (user_id, language, currency, page_size, favourite_categories, newsletter, theme, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
        )?;
        for u in 1..=size.users {
            let favourites: Vec<&str> = (0..rng.random_range(0..4))
                .map(|_| CATEGORIES[rng.random_range(0..CATEGORIES.len())].0)
                .collect();
            prefs.execute(params![
                format!("jwt:user-{u}"),
                *pick(&mut rng, LANGUAGES),
                *pick(&mut rng, CURRENCIES),
                *pick(&mut rng, &[10i64, 20, 50]),
                serde_json::to_string(&favourites)?,
                rng.random_bool(0.4),
                *pick(&mut rng, THEMES),
                now,
            ])?;
        }
    }
    // Seed 003's example configuration, as the static entry `/configuration` serves.
    let config = serde_json::json!({
        "api_version": "1.0.0",
        "features": ["caching", "monitoring", "warming", "static_data"],
        "default_currency": "USD",
        "default_language": "en",
        "page_size": { "default": crate::store::DEFAULT_PAGE_SIZE, "max": crate::store::MAX_PAGE_SIZE },
    });
    tx.execute(
        "INSERT INTO static_data (key, value, updated_at) VALUES (?1, ?2, ?3)",
        params![crate::store::APP_CONFIG, config.to_string(), now],
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('generated', ?1)",
        params![format!(
            "seed={seed} products={} users={}",
            size.products, size.users
        )],
    )?;
    Ok(())
}
