//! The database: schema, the completeness marker, and connections kept off the async
//! runtime — an embedded SQLite file by default, or a PostgreSQL schema when the config names
//! a database URL.
//!
//! Reads use a small pool of connections; writes use one dedicated connection behind an
//! async mutex, so writers queue without busy-waiting. Every call runs on tokio's blocking
//! pool. SQLite runs in WAL mode, so reads never wait for the writer (PostgreSQL's MVCC gives
//! the same).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::error::AnalyticsError;
use crate::sql::{Conn, Dialect, PgConn};

/// SQLite tables. Indexes come after the bulk load ([`INDEXES`]): building them once over sorted
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

/// PostgreSQL tables: the SQLite schema's columns with PostgreSQL's types. Integers are all
/// BIGINT (one Rust type binds to every one of them); text sorts bytewise (`COLLATE "C"`), as
/// SQLite's does, so both engines list ties and names in the same order.
pub const PG_SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT COLLATE "C" PRIMARY KEY,
    value TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS tenants (
    id   BIGINT PRIMARY KEY,
    slug TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS regions (
    id   BIGINT PRIMARY KEY,
    code TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS categories (
    id   BIGINT PRIMARY KEY,
    slug TEXT COLLATE "C" NOT NULL UNIQUE,
    name TEXT COLLATE "C" NOT NULL
);
CREATE TABLE IF NOT EXISTS products (
    id          BIGINT PRIMARY KEY,
    tenant_id   BIGINT NOT NULL REFERENCES tenants(id),
    category_id BIGINT NOT NULL REFERENCES categories(id),
    sku         TEXT COLLATE "C" NOT NULL,
    name        TEXT COLLATE "C" NOT NULL,
    price_cents BIGINT NOT NULL CHECK (price_cents > 0)
);
CREATE TABLE IF NOT EXISTS customers (
    id                   BIGINT PRIMARY KEY,
    tenant_id            BIGINT NOT NULL REFERENCES tenants(id),
    name                 TEXT COLLATE "C" NOT NULL,
    email                TEXT COLLATE "C" NOT NULL,
    region_id            BIGINT NOT NULL REFERENCES regions(id),
    signup_date          TEXT COLLATE "C" NOT NULL,
    segment              TEXT COLLATE "C" NOT NULL DEFAULT 'new',
    risk_level           TEXT COLLATE "C" NOT NULL DEFAULT 'low',
    lifetime_value_cents BIGINT NOT NULL DEFAULT 0,
    orders_count         BIGINT NOT NULL DEFAULT 0,
    first_order_date     TEXT COLLATE "C",
    last_order_date      TEXT COLLATE "C"
);
CREATE TABLE IF NOT EXISTS orders (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    region_id   BIGINT NOT NULL,
    order_date  TEXT COLLATE "C" NOT NULL,
    created_at  TEXT COLLATE "C" NOT NULL,
    total_cents BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS order_lines (
    id               BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    order_id         BIGINT NOT NULL,
    tenant_id        BIGINT NOT NULL,
    product_id       BIGINT NOT NULL,
    category_id      BIGINT NOT NULL,
    region_id        BIGINT NOT NULL,
    order_date       TEXT COLLATE "C" NOT NULL,
    quantity         BIGINT NOT NULL CHECK (quantity > 0),
    unit_price_cents BIGINT NOT NULL CHECK (unit_price_cents >= 0)
);
CREATE TABLE IF NOT EXISTS sessions (
    id          BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id   BIGINT NOT NULL,
    customer_id BIGINT NOT NULL,
    day         TEXT COLLATE "C" NOT NULL,
    stage       BIGINT NOT NULL CHECK (stage BETWEEN 1 AND 4)
);
CREATE TABLE IF NOT EXISTS fraud_alerts (
    id           BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,
    tenant_id    BIGINT NOT NULL,
    customer_id  BIGINT NOT NULL,
    order_id     BIGINT,
    alert_type   TEXT COLLATE "C" NOT NULL,
    priority     TEXT COLLATE "C" NOT NULL,
    status       TEXT COLLATE "C" NOT NULL,
    score        DOUBLE PRECISION NOT NULL,
    amount_cents BIGINT NOT NULL,
    created_at   TEXT COLLATE "C" NOT NULL,
    resolved_at  TEXT COLLATE "C",
    resolution   TEXT COLLATE "C",
    note         TEXT COLLATE "C"
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

const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, AnalyticsError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        AnalyticsError::internal(format!("cannot open database `{}`: {e}", path.display()))
    })?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536;")?;
    Ok(conn)
}

/// The tables of the dialect.
pub fn schema(dialect: Dialect) -> &'static str {
    match dialect {
        Dialect::Sqlite => SCHEMA,
        Dialect::Postgres => PG_SCHEMA,
    }
}

/// Whether the database holds a finished generation. An empty one is not finished.
pub fn is_complete(conn: &mut dyn Conn) -> Result<bool, AnalyticsError> {
    let has_meta = match conn.dialect() {
        Dialect::Sqlite => conn
            .query_one(
                "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta')",
                &[],
            )?
            .int(0)?,
        // The schema is the connection's search path.
        Dialect::Postgres => conn
            .query_one(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM information_schema.tables
                 WHERE table_schema = current_schema() AND table_name = 'meta'",
                &[],
            )?
            .int(0)?,
    };
    if has_meta == 0 {
        return Ok(false);
    }
    Ok(conn
        .query_opt(
            "SELECT value FROM meta WHERE key = ?1",
            crate::args![COMPLETE],
        )?
        .is_some())
}

/// A `meta` value, when the database has it.
pub fn meta(conn: &mut dyn Conn, key: &str) -> Result<Option<String>, AnalyticsError> {
    conn.query_opt("SELECT value FROM meta WHERE key = ?1", crate::args![key])?
        .map(|r| r.text(0))
        .transpose()
}

/// Drops the tables of a PostgreSQL schema left half-filled (the generation runs in one
/// transaction, so only a schema from elsewhere or an older version gets here).
pub fn clear_pg_schema(conn: &mut dyn Conn) -> Result<(), AnalyticsError> {
    conn.batch(
        "DROP TABLE IF EXISTS meta, tenants, regions, categories, products, customers, orders,
             order_lines, sessions, fraud_alerts CASCADE",
    )
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

/// Where the data lives, for `/api/v1/realtime/system-health` and the logs.
#[derive(Debug, Clone)]
pub enum Location {
    /// A SQLite file.
    Sqlite(std::path::PathBuf),
    /// A PostgreSQL schema (the URL without its password).
    Postgres {
        /// `host:port/database`.
        server: String,
        /// The schema.
        schema: String,
    },
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Sqlite(p) => write!(f, "sqlite:{}", p.display()),
            Self::Postgres { server, schema } => write!(f, "postgres://{server} schema {schema}"),
        }
    }
}

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

type BoxConn = Box<dyn Conn + Send>;

struct Inner {
    location: Location,
    dialect: Dialect,
    readers: Mutex<Vec<BoxConn>>,
    permits: Semaphore,
    writer: Arc<tokio::sync::Mutex<BoxConn>>,
}

impl Db {
    /// Wraps the (filled) SQLite writer connection and opens `readers` read connections.
    pub fn sqlite(path: &Path, writer: Connection, readers: usize) -> Result<Db, AnalyticsError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let pool = (0..readers.max(1))
            .map(|_| open_conn(path, flags).map(|c| Box::new(c) as BoxConn))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with(
            Location::Sqlite(path.to_owned()),
            Box::new(writer),
            pool,
        ))
    }

    /// Wraps the (filled) PostgreSQL writer connection and opens `readers` more.
    pub fn postgres(
        config: &postgres::Config,
        schema: &str,
        writer: PgConn,
        readers: usize,
    ) -> Result<Db, AnalyticsError> {
        let pool = (0..readers.max(1))
            .map(|_| PgConn::connect(config, schema).map(|c| Box::new(c) as BoxConn))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self::with(
            Location::Postgres {
                server: pg_server(config),
                schema: schema.to_owned(),
            },
            Box::new(writer),
            pool,
        ))
    }

    fn with(location: Location, writer: BoxConn, readers: Vec<BoxConn>) -> Db {
        let dialect = writer.dialect();
        let n = readers.len();
        Db {
            inner: Arc::new(Inner {
                location,
                dialect,
                readers: Mutex::new(readers),
                permits: Semaphore::new(n),
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
            }),
        }
    }

    /// Where the data lives.
    pub fn location(&self) -> &Location {
        &self.inner.location
    }

    /// The engine.
    pub fn dialect(&self) -> Dialect {
        self.inner.dialect
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, AnalyticsError>
    where
        T: Send + 'static,
        F: FnOnce(&mut dyn Conn) -> Result<T, AnalyticsError> + Send + 'static,
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
            let mut conn = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| AnalyticsError::internal("no free database connection"))?;
            let result = f(conn.as_mut());
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
        F: FnOnce(&mut dyn Conn) -> Result<T, AnalyticsError> + Send + 'static,
    {
        let mut guard = self.inner.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(guard.as_mut()))
            .await
            .map_err(|e| AnalyticsError::internal(format!("database task failed: {e}")))?
    }
}

/// `host:port/database` of a PostgreSQL config, for logs (never the password).
pub fn pg_server(config: &postgres::Config) -> String {
    let host = config
        .get_hosts()
        .first()
        .map(|h| match h {
            postgres::config::Host::Tcp(h) => h.clone(),
            postgres::config::Host::Unix(p) => p.display().to_string(),
        })
        .unwrap_or_else(|| "localhost".into());
    let port = config.get_ports().first().copied().unwrap_or(5432);
    format!(
        "{host}:{port}/{}",
        config.get_dbname().unwrap_or("(default database)")
    )
}
