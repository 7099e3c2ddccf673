//! The generated dataset a fresh database is filled with.
//!
//! Deterministic: one seed, one size and one anchor day ("today" when the file is made) give
//! the same rows on every machine (ChaCha8, whose output for a seed is fixed by its
//! specification). Everything is inserted in one transaction — with prepared statements into
//! SQLite, with `COPY` into PostgreSQL — and the indexes are built afterwards; the `meta` row
//! [`crate::db::COMPLETE`] is written in the same transaction, so a database cut short by a
//! crash has no marker and is rebuilt.

use std::time::Instant;

use crate::args;
use crate::config::DatasetConfig;
use crate::db::{COMPLETE, INDEXES};
use crate::error::AnalyticsError;
use crate::model::{risk_level, segment_of};
use crate::sql::{Arg, Conn, Dialect, PgConn, SqliteRef};
use jiff::ToSpan;
use jiff::civil::Date;
use rand::{Rng as _, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Tenant ids, in the order tenants are generated.
pub const TENANTS: &[(&str, &str)] = &[
    ("acme", "Acme Retail"),
    ("globex", "Globex Shop"),
    ("initech", "Initech Store"),
    ("umbrella", "Umbrella Market"),
    ("hooli", "Hooli Goods"),
    ("stark", "Stark Outfitters"),
    ("wayne", "Wayne Supplies"),
    ("wonka", "Wonka Treats"),
];

/// Regions, shared by every tenant.
pub const REGIONS: &[(&str, &str)] = &[
    ("na", "North America"),
    ("eu", "Europe"),
    ("apac", "Asia Pacific"),
    ("latam", "Latin America"),
];

/// Product categories, shared by every tenant: slug, name, price range in cents.
pub const CATEGORIES: &[(&str, &str, u32, u32)] = &[
    ("electronics", "Electronics", 1_999, 129_900),
    ("home", "Home & Kitchen", 499, 39_900),
    ("fashion", "Fashion", 999, 24_900),
    ("sports", "Sports & Outdoors", 799, 59_900),
    ("beauty", "Beauty", 399, 9_900),
    ("toys", "Toys & Games", 599, 14_900),
    ("books", "Books", 499, 6_900),
    ("grocery", "Grocery", 199, 4_900),
];

/// Alert types of generated and resolved fraud alerts.
pub const ALERT_TYPES: &[&str] = &[
    "velocity",
    "amount_anomaly",
    "geo_mismatch",
    "card_testing",
    "account_takeover",
];

const FIRST: &[&str] = &[
    "Ava", "Ben", "Chloe", "Dev", "Elena", "Farid", "Grace", "Hiro", "Ines", "Jamal", "Kira",
    "Liam", "Maya", "Noah", "Olga", "Priya", "Quinn", "Rosa", "Sam", "Tariq", "Uma", "Victor",
    "Wen", "Ximena", "Yusuf", "Zoe",
];
const LAST: &[&str] = &[
    "Smith", "Garcia", "Chen", "Okafor", "Müller", "Rossi", "Tanaka", "Novak", "Silva", "Khan",
    "Dubois", "Larsen", "Kowalski", "Nguyen", "Haddad", "Ivanova", "Moreno", "Schmidt", "Patel",
    "Costa",
];
const ADJECTIVES: &[&str] = &[
    "Classic",
    "Smart",
    "Eco",
    "Pro",
    "Ultra",
    "Compact",
    "Deluxe",
    "Essential",
    "Premium",
    "Travel",
];
const NOUNS: &[&str] = &[
    "Kit",
    "Set",
    "Pack",
    "Edition",
    "Bundle",
    "Model",
    "Series",
    "Collection",
];

/// The tables filled in bulk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Table {
    /// `products`.
    Products,
    /// `customers`.
    Customers,
    /// `orders`.
    Orders,
    /// `order_lines`.
    OrderLines,
    /// `sessions` (ids assigned by the database).
    Sessions,
    /// `fraud_alerts`.
    FraudAlerts,
}

impl Table {
    const ALL: [Table; 6] = [
        Table::Products,
        Table::Customers,
        Table::Orders,
        Table::OrderLines,
        Table::Sessions,
        Table::FraudAlerts,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::Products => "products",
            Self::Customers => "customers",
            Self::Orders => "orders",
            Self::OrderLines => "order_lines",
            Self::Sessions => "sessions",
            Self::FraudAlerts => "fraud_alerts",
        }
    }

    fn columns(self) -> &'static str {
        match self {
            Self::Products => "id, tenant_id, category_id, sku, name, price_cents",
            Self::Customers => {
                "id, tenant_id, name, email, region_id, signup_date, segment, risk_level, \
                 lifetime_value_cents, orders_count, first_order_date, last_order_date"
            }
            Self::Orders => {
                "id, tenant_id, customer_id, region_id, order_date, created_at, total_cents"
            }
            Self::OrderLines => {
                "id, order_id, tenant_id, product_id, category_id, region_id, order_date, \
                 quantity, unit_price_cents"
            }
            Self::Sessions => "tenant_id, customer_id, day, stage",
            Self::FraudAlerts => {
                "id, tenant_id, customer_id, order_id, alert_type, priority, status, score, \
                 amount_cents, created_at, resolved_at, resolution, note"
            }
        }
    }

    fn insert_sql(self) -> String {
        let n = self.columns().split(',').count();
        let params: Vec<String> = (1..=n).map(|i| format!("?{i}")).collect();
        format!(
            "INSERT INTO {} ({}) VALUES ({})",
            self.name(),
            self.columns(),
            params.join(", ")
        )
    }
}

/// Where generated rows go: one engine's fastest way in.
pub trait Bulk {
    /// The connection, for the schema, reference rows, indexes and the marker.
    fn conn(&mut self) -> &mut dyn Conn;
    /// Adds one row to `table`.
    fn row(&mut self, table: Table, row: &[Arg]) -> Result<(), AnalyticsError>;
    /// Sends whatever is still buffered.
    fn flush(&mut self) -> Result<(), AnalyticsError>;
}

/// Prepared inserts into SQLite (inside the generation's transaction, they cost microseconds),
/// one statement per table held for the whole load.
pub struct SqliteBulk<'a> {
    conn: SqliteRef<'a>,
    statements: Vec<rusqlite::Statement<'a>>,
}

impl<'a> SqliteBulk<'a> {
    /// Inserts through `conn`; the tables are created first, so the inserts can be prepared.
    pub fn new(conn: &'a rusqlite::Connection) -> Result<Self, AnalyticsError> {
        conn.execute_batch(crate::db::SCHEMA)?;
        let statements = Table::ALL
            .iter()
            .map(|t| conn.prepare(&t.insert_sql()))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            conn: SqliteRef(conn),
            statements,
        })
    }
}

impl Bulk for SqliteBulk<'_> {
    fn conn(&mut self) -> &mut dyn Conn {
        &mut self.conn
    }

    fn row(&mut self, table: Table, row: &[Arg]) -> Result<(), AnalyticsError> {
        self.statements[table as usize].execute(rusqlite::params_from_iter(row))?;
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AnalyticsError> {
        Ok(())
    }
}

/// `COPY … FROM STDIN` into PostgreSQL, a few megabytes per table at a time (one COPY at a
/// time per connection, so each table keeps its own buffer).
pub struct PgBulk<'a> {
    conn: &'a mut PgConn,
    buffers: Vec<Vec<u8>>,
}

/// Bytes a table's buffer holds before it is sent.
const COPY_CHUNK: usize = 4 << 20;

impl<'a> PgBulk<'a> {
    /// Copies through `conn`.
    pub fn new(conn: &'a mut PgConn) -> Self {
        Self {
            conn,
            buffers: vec![Vec::new(); Table::ALL.len()],
        }
    }

    fn send(&mut self, table: Table) -> Result<(), AnalyticsError> {
        let buf = std::mem::take(&mut self.buffers[table as usize]);
        if !buf.is_empty() {
            self.conn.copy_in(table.name(), table.columns(), &buf)?;
        }
        Ok(())
    }
}

impl Bulk for PgBulk<'_> {
    fn conn(&mut self) -> &mut dyn Conn {
        self.conn
    }

    fn row(&mut self, table: Table, row: &[Arg]) -> Result<(), AnalyticsError> {
        use std::io::Write as _;
        let buf = &mut self.buffers[table as usize];
        for (i, v) in row.iter().enumerate() {
            if i > 0 {
                buf.push(b'\t');
            }
            // COPY's text format: `\N` is NULL; backslash, tab and line breaks are escaped.
            let _ = match v {
                Arg::Null => buf.write_all(b"\\N"),
                Arg::Int(n) => write!(buf, "{n}"),
                Arg::Real(x) => write!(buf, "{x}"),
                Arg::Text(t) => {
                    for b in t.bytes() {
                        match b {
                            b'\\' => buf.extend_from_slice(b"\\\\"),
                            b'\t' => buf.extend_from_slice(b"\\t"),
                            b'\n' => buf.extend_from_slice(b"\\n"),
                            b'\r' => buf.extend_from_slice(b"\\r"),
                            _ => buf.push(b),
                        }
                    }
                    Ok(())
                }
            };
        }
        buf.push(b'\n');
        if buf.len() >= COPY_CHUNK {
            self.send(table)?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), AnalyticsError> {
        for t in Table::ALL {
            self.send(t)?;
        }
        Ok(())
    }
}

/// Bumped whenever the generator makes different rows for the same settings.
const GENERATOR_VERSION: u32 = 1;

/// What decides the rows, as stored in `meta.dataset`: a database whose fingerprint differs
/// from the config's was made for other settings (or by another generator) and is rebuilt.
pub fn fingerprint(seed: u64, config: &DatasetConfig) -> String {
    format!(
        "generator {GENERATOR_VERSION}, seed {seed}, {} tenants, {} customers and {} products per tenant, {} order lines, {} days",
        config.tenants,
        config.customers_per_tenant,
        config.products_per_tenant,
        config.order_lines,
        config.days
    )
}

/// What a generation made, for the start-up log.
#[derive(Debug, Clone, Copy)]
pub struct Generated {
    /// Tenants.
    pub tenants: u64,
    /// Customers over all tenants.
    pub customers: u64,
    /// Orders.
    pub orders: u64,
    /// Order lines.
    pub order_lines: u64,
    /// Funnel sessions.
    pub sessions: u64,
    /// Fraud alerts.
    pub fraud_alerts: u64,
    /// Seconds it took.
    pub seconds: f64,
}

#[derive(Clone, Copy, Default)]
struct CustomerAgg {
    orders: u32,
    value: i64,
    first: Option<Date>,
    last: Option<Date>,
    open_alerts: u32,
}

/// Fills an empty database (schema already applied or not) with the dataset for `config`,
/// anchored at `today` with `now_secs` seconds of it elapsed, in one transaction. Progress
/// goes to the log.
pub fn fill(
    bulk: &mut dyn Bulk,
    seed: u64,
    config: &DatasetConfig,
    today: Date,
    now_secs: u32,
) -> Result<Generated, AnalyticsError> {
    let dialect = bulk.conn().dialect();
    bulk.conn().batch("BEGIN")?;
    if dialect == Dialect::Postgres {
        bulk.conn()
            .batch("SET LOCAL maintenance_work_mem = '256MB'")?;
    }
    match fill_rows(bulk, seed, config, today, now_secs) {
        Ok(made) => {
            bulk.conn().batch("COMMIT")?;
            // PostgreSQL: VACUUM also marks the pages all-visible, so the covering indexes
            // answer without reading the table.
            // SQLite: fold the write-ahead log (as big as the file by now) back in, so
            // the dataset takes its size once on disk.
            bulk.conn().batch(match dialect {
                Dialect::Sqlite => "ANALYZE; PRAGMA wal_checkpoint(TRUNCATE);",
                Dialect::Postgres => "VACUUM ANALYZE",
            })?;
            Ok(made)
        }
        Err(e) => {
            if let Err(r) = bulk.conn().batch("ROLLBACK") {
                tracing::error!(error = %r, "analytics: rolling back a failed generation failed");
            }
            Err(e)
        }
    }
}

fn fill_rows(
    bulk: &mut dyn Bulk,
    seed: u64,
    config: &DatasetConfig,
    today: Date,
    now_secs: u32,
) -> Result<Generated, AnalyticsError> {
    let started = Instant::now();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let tenants = (config.tenants as usize).clamp(1, TENANTS.len());
    let customers_per = u64::from(config.customers_per_tenant.max(10));
    let products_per = u64::from(config.products_per_tenant.max(10));
    let days = i64::from(config.days.max(7));
    let first_day = today
        .checked_sub((days - 1).days())
        .map_err(|e| AnalyticsError::internal(format!("dataset start: {e}")))?;
    let lines_target = config.order_lines.max(100);
    let lines_per_tenant = lines_target.div_ceil(tenants as u64);

    let dialect = bulk.conn().dialect();
    bulk.conn().batch(crate::db::schema(dialect))?;
    let conn = bulk.conn();
    for (i, (slug, name)) in TENANTS.iter().take(tenants).enumerate() {
        conn.execute(
            "INSERT INTO tenants (id, slug, name) VALUES (?1, ?2, ?3)",
            args![i as i64 + 1, *slug, *name],
        )?;
    }
    for (i, (code, name)) in REGIONS.iter().enumerate() {
        conn.execute(
            "INSERT INTO regions (id, code, name) VALUES (?1, ?2, ?3)",
            args![i as i64 + 1, *code, *name],
        )?;
    }
    for (i, (slug, name, _, _)) in CATEGORIES.iter().enumerate() {
        conn.execute(
            "INSERT INTO categories (id, slug, name) VALUES (?1, ?2, ?3)",
            args![i as i64 + 1, *slug, *name],
        )?;
    }

    let mut out = Generated {
        tenants: tenants as u64,
        customers: 0,
        orders: 0,
        order_lines: 0,
        sessions: 0,
        fraud_alerts: 0,
        seconds: 0.0,
    };
    let mut last_report = Instant::now();
    {
        let mut product_id = 0i64;
        let mut customer_id = 0i64;
        let mut order_id = 0i64;
        let mut line_id = 0i64;
        let mut alert_id = 0i64;
        // The dates of the range as text, made once.
        let day_text: Vec<String> = (0..days)
            .map(|i| {
                first_day
                    .checked_add(i.days())
                    .map(|d| d.to_string())
                    .unwrap_or_default()
            })
            .collect();
        let day_dates: Vec<Date> = (0..days)
            .map(|i| first_day.checked_add(i.days()).unwrap_or(first_day))
            .collect();

        for (t, (tenant_slug, _)) in TENANTS.iter().enumerate().take(tenants) {
            let tenant = t as i64 + 1;
            // Products: (id, category id, price).
            let mut products = Vec::with_capacity(products_per as usize);
            for p in 0..products_per {
                product_id += 1;
                let c = rng.random_range(0..CATEGORIES.len());
                let (slug, _, lo, hi) = CATEGORIES[c];
                let price = i64::from(rng.random_range(lo..=hi) / 100 * 100 + 99);
                let name = format!(
                    "{} {} {}",
                    ADJECTIVES[rng.random_range(0..ADJECTIVES.len())],
                    CATEGORIES[c].1,
                    NOUNS[rng.random_range(0..NOUNS.len())]
                );
                bulk.row(
                    Table::Products,
                    args![
                        product_id,
                        tenant,
                        c as i64 + 1,
                        format!("{tenant_slug}-{slug}-{:05}", p + 1),
                        name,
                        price
                    ],
                )?;
                products.push((product_id, c as i64 + 1, price));
            }
            // Customers: signed up over the range (a quarter before it), each in a region.
            let first_customer = customer_id + 1;
            let mut signup: Vec<i64> = Vec::with_capacity(customers_per as usize);
            let mut region: Vec<i64> = Vec::with_capacity(customers_per as usize);
            for _ in 0..customers_per {
                signup.push(rng.random_range(-days / 4..days));
                region.push(pick_region(&mut rng));
            }
            customer_id += customers_per as i64;
            let mut aggs = vec![CustomerAgg::default(); customers_per as usize];

            let mut lines = 0u64;
            while lines < lines_per_tenant {
                order_id += 1;
                // Customers and products are skewed: a few buy most, a few sell most.
                let ci = (customers_per as f64 * rng.random::<f64>().powi(2)) as usize;
                let ci = ci.min(customers_per as usize - 1);
                // Recent days carry more orders (the shop grows).
                let mut d = days - 1 - (days as f64 * rng.random::<f64>().powf(1.3)) as i64;
                d = d.clamp(signup[ci].max(0), days - 1);
                let secs = if d == days - 1 {
                    rng.random_range(0..=now_secs)
                } else {
                    rng.random_range(0..86_400)
                };
                let created_at = format!(
                    "{}T{:02}:{:02}:{:02}Z",
                    day_text[d as usize],
                    secs / 3600,
                    secs / 60 % 60,
                    secs % 60
                );
                let n = rng.random_range(1..=5u32);
                let mut total = 0i64;
                let mut picked = [(0i64, 0i64, 0i64, 0i64); 5];
                for slot in picked.iter_mut().take(n as usize) {
                    let pi = (products_per as f64 * rng.random::<f64>().powf(1.6)) as usize;
                    let (pid, cat, price) = products[pi.min(products.len() - 1)];
                    let q = if rng.random_bool(0.8) {
                        1
                    } else {
                        rng.random_range(2..=4)
                    };
                    total += q * price;
                    *slot = (pid, cat, price, q);
                }
                let cust = first_customer + ci as i64;
                bulk.row(
                    Table::Orders,
                    args![
                        order_id,
                        tenant,
                        cust,
                        region[ci],
                        &day_text[d as usize],
                        &created_at,
                        total
                    ],
                )?;
                for &(pid, cat, price, q) in picked.iter().take(n as usize) {
                    line_id += 1;
                    bulk.row(
                        Table::OrderLines,
                        args![
                            line_id,
                            order_id,
                            tenant,
                            pid,
                            cat,
                            region[ci],
                            &day_text[d as usize],
                            q,
                            price
                        ],
                    )?;
                }
                lines += u64::from(n);
                out.order_lines += u64::from(n);
                out.orders += 1;
                let a = &mut aggs[ci];
                a.orders += 1;
                a.value += total;
                let date = day_dates[d as usize];
                a.first = Some(a.first.map_or(date, |f| f.min(date)));
                a.last = Some(a.last.map_or(date, |l| l.max(date)));
                // The session that ended in this order, and others that stopped earlier.
                bulk.row(
                    Table::Sessions,
                    args![tenant, cust, &day_text[d as usize], 4],
                )?;
                out.sessions += 1;
                for stage in [3, 2, 1] {
                    let p = match stage {
                        3 => 0.3,
                        2 => 0.6,
                        _ => 1.0,
                    };
                    if rng.random_bool(p) {
                        bulk.row(
                            Table::Sessions,
                            args![tenant, cust, &day_text[d as usize], stage],
                        )?;
                        out.sessions += 1;
                    }
                }
                if rng.random_bool(0.01) {
                    alert_id += 1;
                    let score: f64 = 0.5 + rng.random::<f64>() * 0.5;
                    let priority = match score {
                        s if s > 0.95 => "critical",
                        s if s > 0.85 => "high",
                        s if s > 0.7 => "medium",
                        _ => "low",
                    };
                    // Old alerts were handled; the last weeks' are still being looked at.
                    let age = days - 1 - d;
                    let (status, resolved_at, resolution) = if age > 14 || rng.random_bool(0.3) {
                        if rng.random_bool(0.7) {
                            (
                                "false_positive",
                                Some(created_at.clone()),
                                Some("false_positive"),
                            )
                        } else {
                            (
                                "resolved",
                                Some(created_at.clone()),
                                Some("confirmed_fraud"),
                            )
                        }
                    } else if rng.random_bool(0.5) {
                        ("open", None, None)
                    } else {
                        ("investigating", None, None)
                    };
                    if resolved_at.is_none() {
                        a.open_alerts += 1;
                    }
                    bulk.row(
                        Table::FraudAlerts,
                        args![
                            alert_id,
                            tenant,
                            cust,
                            order_id,
                            ALERT_TYPES[rng.random_range(0..ALERT_TYPES.len())],
                            priority,
                            status,
                            (score * 1000.0).round() / 1000.0,
                            total,
                            created_at,
                            resolved_at,
                            resolution,
                            Option::<String>::None
                        ],
                    )?;
                    out.fraud_alerts += 1;
                }
                if last_report.elapsed().as_secs_f64() >= 2.0 {
                    last_report = Instant::now();
                    let rate = out.order_lines as f64 / started.elapsed().as_secs_f64();
                    let left = lines_target.saturating_sub(out.order_lines) as f64;
                    tracing::info!(
                        order_lines = out.order_lines,
                        of = lines_target,
                        lines_per_s = rate.round() as u64,
                        eta_s = (left / rate.max(1.0)).round() as u64,
                        "analytics: generating the dataset"
                    );
                }
            }
            for (i, a) in aggs.iter().enumerate() {
                let id = first_customer + i as i64;
                let name = format!(
                    "{} {}",
                    FIRST[rng.random_range(0..FIRST.len())],
                    LAST[rng.random_range(0..LAST.len())]
                );
                let email = format!("customer{id}@{tenant_slug}.example");
                let signup_day = first_day.checked_add(signup[i].days()).unwrap_or(first_day);
                let segment = segment_of(a.orders, a.value, a.first, a.last, signup_day, today);
                bulk.row(
                    Table::Customers,
                    args![
                        id,
                        tenant,
                        name,
                        email,
                        region[i],
                        signup_day.to_string(),
                        segment,
                        risk_level(a.open_alerts),
                        a.value,
                        a.orders,
                        a.first.map(|d| d.to_string()),
                        a.last.map(|d| d.to_string())
                    ],
                )?;
            }
            out.customers += customers_per;
        }
    }
    bulk.flush()?;
    tracing::info!("analytics: building indexes");
    let conn = bulk.conn();
    conn.batch(INDEXES)?;
    if dialect == Dialect::Postgres {
        // The rows came with their ids: later inserts continue after the largest.
        for table in ["orders", "order_lines", "sessions", "fraud_alerts"] {
            conn.query(
                &format!(
                    "SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT COALESCE(MAX(id), 0) + 1 FROM {table}), false)"
                ),
                &[],
            )?;
        }
    }
    conn.execute(
        "INSERT INTO meta (key, value) VALUES ('seed', ?1), ('anchor_day', ?2), ('order_lines', ?3), ('dataset', ?4)",
        args![
            seed.to_string(),
            today.to_string(),
            out.order_lines.to_string(),
            fingerprint(seed, config)
        ],
    )?;
    conn.execute(
        "INSERT INTO meta (key, value) VALUES (?1, 'yes')",
        args![COMPLETE],
    )?;
    out.seconds = started.elapsed().as_secs_f64();
    Ok(out)
}

fn pick_region(rng: &mut ChaCha8Rng) -> i64 {
    match rng.random_range(0..100) {
        0..45 => 1,
        45..75 => 2,
        75..92 => 3,
        _ => 4,
    }
}
