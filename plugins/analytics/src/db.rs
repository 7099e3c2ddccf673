//! The SQLite database: schema, the completeness marker, and connections kept off the async
//! runtime.
//!
//! Reads use a small pool of connections; writes use one dedicated connection behind an
//! async mutex, so writers queue without busy-waiting. Every call runs on tokio's blocking
//! pool. The database is in WAL mode, so reads never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags, OptionalExtension};
use tokio::sync::Semaphore;

use crate::error::AnalyticsError;

/// Tables. Indexes come after the bulk load ([`INDEXES`]): building them once over sorted
/// data is several times faster than maintaining them row by row.
pub const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    id   INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS regions (
    id   INTEGER PRIMARY KEY,
    code TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS categories (
    id   INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL REFERENCES tenants(id),
    category_id INTEGER NOT NULL REFERENCES categories(id),
    sku         TEXT NOT NULL,
    name        TEXT NOT NULL,
    price_cents INTEGER NOT NULL CHECK (price_cents > 0)
);
CREATE TABLE IF NOT EXISTS customers (
    id                   INTEGER PRIMARY KEY,
    tenant_id            INTEGER NOT NULL REFERENCES tenants(id),
    name                 TEXT NOT NULL,
    email                TEXT NOT NULL,
    region_id            INTEGER NOT NULL REFERENCES regions(id),
    signup_date          TEXT NOT NULL,
    segment              TEXT NOT NULL DEFAULT 'new',
    risk_level           TEXT NOT NULL DEFAULT 'low',
    lifetime_value_cents INTEGER NOT NULL DEFAULT 0,
    orders_count         INTEGER NOT NULL DEFAULT 0,
    first_order_date     TEXT,
    last_order_date      TEXT
);
CREATE TABLE IF NOT EXISTS orders (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    region_id   INTEGER NOT NULL,
    order_date  TEXT NOT NULL,
    created_at  TEXT NOT NULL,
    total_cents INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
    id               INTEGER PRIMARY KEY,
    order_id         INTEGER NOT NULL,
    tenant_id        INTEGER NOT NULL,
    product_id       INTEGER NOT NULL,
    category_id      INTEGER NOT NULL,
    region_id        INTEGER NOT NULL,
    order_date       TEXT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_cents INTEGER NOT NULL CHECK (unit_price_cents >= 0)
);
-- One row per shopping session, with the furthest funnel step it reached:
-- 1 view, 2 cart, 3 checkout, 4 order.
CREATE TABLE IF NOT EXISTS sessions (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    day         TEXT NOT NULL,
    stage       INTEGER NOT NULL CHECK (stage BETWEEN 1 AND 4)
);
CREATE TABLE IF NOT EXISTS fraud_alerts (
    id          INTEGER PRIMARY KEY,
    tenant_id   INTEGER NOT NULL,
    customer_id INTEGER NOT NULL,
    order_id    INTEGER,
    alert_type  TEXT NOT NULL,
    priority    TEXT NOT NULL,
    status      TEXT NOT NULL,
    score       REAL NOT NULL,
    amount_cents INTEGER NOT NULL,
    created_at  TEXT NOT NULL,
    resolved_at TEXT,
    resolution  TEXT,
    note        TEXT
);
"#;

/// Indexes, built once the generated rows are in. Covering indexes for the aggregations:
/// revenue reads `order_lines` by tenant and date without touching the table.
pub const INDEXES: &str = r#"
CREATE INDEX IF NOT EXISTS order_lines_tenant_date
    ON order_lines (tenant_id, order_date, region_id, category_id, quantity, unit_price_cents, order_id);
CREATE INDEX IF NOT EXISTS order_lines_tenant_product
    ON order_lines (tenant_id, product_id, order_date);
CREATE INDEX IF NOT EXISTS orders_tenant_date ON orders (tenant_id, order_date);
CREATE INDEX IF NOT EXISTS orders_tenant_created ON orders (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS orders_customer ON orders (customer_id, order_date);
CREATE INDEX IF NOT EXISTS customers_tenant_segment ON customers (tenant_id, segment, risk_level);
CREATE INDEX IF NOT EXISTS customers_tenant_value ON customers (tenant_id, lifetime_value_cents, id);
CREATE INDEX IF NOT EXISTS customers_tenant_orders ON customers (tenant_id, orders_count, id);
CREATE INDEX IF NOT EXISTS customers_tenant_recent ON customers (tenant_id, last_order_date, id);
CREATE INDEX IF NOT EXISTS products_tenant ON products (tenant_id, category_id);
CREATE INDEX IF NOT EXISTS sessions_tenant_day ON sessions (tenant_id, day, stage, customer_id);
CREATE INDEX IF NOT EXISTS fraud_tenant_created ON fraud_alerts (tenant_id, created_at);
CREATE INDEX IF NOT EXISTS fraud_tenant_status ON fraud_alerts (tenant_id, status, priority);
CREATE INDEX IF NOT EXISTS fraud_customer ON fraud_alerts (customer_id, status);
"#;

/// The `meta` key written last by a finished generation; a file without it was cut short.
pub const COMPLETE: &str = "generation_complete";

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
    writer: Arc<tokio::sync::Mutex<Connection>>,
}

const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, AnalyticsError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        AnalyticsError::internal(format!("cannot open database `{}`: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")?;
    Ok(conn)
}

/// Whether the file at `path` holds a finished generation. A missing file is not finished.
pub fn is_complete(conn: &Connection) -> Result<bool, AnalyticsError> {
    let has_meta: bool = conn.query_row(
        "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
        [],
        |r| r.get(0),
    )?;
    if !has_meta {
        return Ok(false);
    }
    Ok(conn
        .query_row("SELECT value FROM meta WHERE key = ?1", [COMPLETE], |r| {
            r.get::<_, String>(0)
        })
        .optional()?
        .is_some())
}

/// Removes a database file and its WAL companions.
pub fn remove_files(path: &Path) -> Result<(), AnalyticsError> {
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(AnalyticsError::internal(format!(
                    "cannot remove `{}`: {e}",
                    Path::new(&p).display()
                )));
            }
        }
    }
    Ok(())
}

/// Opens the writer connection for `path` (creating the folder and the file), in WAL mode.
pub fn open_writer(path: &Path) -> Result<Connection, AnalyticsError> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            AnalyticsError::internal(format!(
                "cannot create the database folder `{}`: {e}",
                dir.display()
            ))
        })?;
    }
    let conn = open_conn(path, OpenFlags::default())?;
    conn.execute_batch("PRAGMA journal_mode = WAL;")?;
    Ok(conn)
}

impl Db {
    /// Wraps the (filled) writer connection and opens `readers` read connections.
    pub fn new(path: &Path, writer: Connection, readers: usize) -> Result<Db, AnalyticsError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let readers = readers.max(1);
        let pool = (0..readers)
            .map(|_| open_conn(path, flags))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers: Mutex::new(pool),
                permits: Semaphore::new(readers),
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, AnalyticsError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, AnalyticsError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| AnalyticsError::internal("database closed"))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A permit guarantees a free connection.
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| AnalyticsError::internal("no free database connection"))?;
            let result = f(&conn);
            inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| AnalyticsError::internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` on the write connection, on the blocking pool, one writer at a time.
    pub async fn write<T, F>(&self, f: F) -> Result<T, AnalyticsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, AnalyticsError> + Send + 'static,
    {
        let mut guard = self.inner.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|e| AnalyticsError::internal(format!("database task failed: {e}")))?
    }
}
