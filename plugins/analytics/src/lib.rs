//! # `analytics`: multi-tenant e-commerce analytics with exact, event-driven invalidation
//!
//! The built-in plugin behind `/api/v1` (SPEC 2.2, seed 002): revenue, segments, product
//! performance, cohorts, funnels, customers, fraud alerts and real-time figures, each an SQL
//! aggregation over a generated dataset of a million order lines in an embedded SQLite
//! database, each scoped to the caller's verified tenant.
//!
//! ## Layout
//! - [`config`]: typed settings (`plugins.analytics.settings`).
//! - [`db`]: schema, the completeness marker, a read pool and one writer, off the runtime;
//!   SQLite by default, PostgreSQL when `database_url` is set.
//! - [`sql`]: one query interface over both engines (parameters, rows, transactions, the
//!   few expressions they spell differently).
//! - [`generate`]: the deterministic dataset of a fresh database.
//! - [`model`]: the segment and risk rules shared by the generator and the writes; strict
//!   date parsing.
//! - [`store`]: the queries and the two writes.
//! - [`events`]: the events emitted after each commit, which `policies/analytics.yaml` maps
//!   to exact purges.
//! - [`api`]: the routes, with JSON error bodies that name the field.
//!
//! ## Flow
//! The core authenticates the caller and checks the route's permission before the cache is
//! looked at; the policy keys every entry by the verified tenant (`scope: tenant`). On a miss
//! the handler resolves the tenant from the same verified principal, runs its query on the
//! blocking pool, and answers; a write commits, then emits its event, whose triggers purge
//! exactly what it changed before the write's response is sent.

pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod generate;
pub mod model;
pub mod sql;
pub mod store;

use std::sync::Arc;
use std::time::Instant;

use jiff::Timestamp;
use jiff::civil::Date;
use larder_plugin::{
    CACHE_MANAGE, EventSpec, HttpDefaults, Plugin, PluginApi, PluginContext, PluginError,
    PluginInit, RoutePermission, WarmRequest, WarmSource, WarmSourceSpec,
};

pub use config::AnalyticsConfig;
pub use error::AnalyticsError;

use crate::db::Db;
use crate::store::Reference;

/// Reads the plugin's data routes.
pub const ANALYTICS_READ: &str = "analytics:read";
/// Records orders and resolves fraud alerts.
pub const ANALYTICS_WRITE: &str = "analytics:write";

/// Warm source: revenue for the last 7 and 30 days at each granularity, per tenant.
pub const WARM_REVENUE: WarmSource = WarmSource::new(
    "revenue_recent",
    "GET /api/v1/analytics/revenue for the last 7 and 30 days at each granularity, for every \
     tenant (made as that tenant).",
);
/// Warm source: the dashboards (fraud, business, segments, products, first customer page).
pub const WARM_DASHBOARDS: WarmSource = WarmSource::new(
    "dashboards",
    "Fraud dashboard (24h, 7d), business metrics (24h), system health, segments, product \
     performance and the first customer page, for every tenant (made as that tenant).",
);

/// The plugin.
pub struct AnalyticsPlugin {
    state: Arc<State>,
}

/// What every route shares.
pub struct State {
    /// The settings.
    pub config: AnalyticsConfig,
    /// The database.
    pub db: Db,
    /// Tenants, regions and categories.
    pub reference: Reference,
    /// The core's services.
    pub ctx: PluginContext,
    /// When the plugin started, for the health figures.
    pub started: Instant,
}

impl State {
    /// The server's "now" (the core's clock, so tests run at a chosen instant).
    pub fn now(&self) -> Timestamp {
        Timestamp::try_from(self.ctx.now()).unwrap_or(Timestamp::UNIX_EPOCH)
    }

    /// Today, in UTC: the day orders are recorded on and policies' `today`.
    pub fn today(&self) -> Date {
        self.now().to_zoned(jiff::tz::TimeZone::UTC).date()
    }
}

fn setting(path: &str, message: impl Into<String>) -> PluginError {
    PluginError::Config {
        path: path.into(),
        message: message.into(),
    }
}

/// Operation ids of the data routes (each needs [`ANALYTICS_READ`]).
pub const READ_OPERATIONS: &[&str] = &[
    "analytics_revenue",
    "customer_segments",
    "product_performance",
    "cohort_analysis",
    "funnel_analysis",
    "list_customers",
    "get_customer",
    "customer_recommendations",
    "list_fraud_alerts",
    "fraud_dashboard",
    "system_health",
    "stream_metrics",
    "business_metrics",
];

/// Operation ids of the cache-admin aliases (each needs `cache:manage`).
pub const CACHE_OPERATIONS: &[&str] = &[
    "analytics_cache_stats",
    "analytics_cache_keys",
    "analytics_cache_health",
    "analytics_cache_invalidate_group",
    "analytics_cache_invalidate_pattern",
];

impl AnalyticsPlugin {
    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The requests a warm source stands for now, one set per tenant, made as that tenant.
    pub fn warm_requests(&self, name: &str) -> Result<Vec<WarmRequest>, AnalyticsError> {
        let today = self.state.today();
        let day = |back: i64| {
            today
                .checked_sub(jiff::ToSpan::days(back))
                .unwrap_or(today)
                .to_string()
        };
        let mut out = Vec::new();
        for (_, tenant) in &self.state.reference.tenants {
            let get = |path: String| {
                WarmRequest::get(path).as_principal(
                    "warming:analytics",
                    Some(tenant),
                    &[ANALYTICS_READ],
                )
            };
            match name {
                n if n == WARM_REVENUE.name => {
                    for back in [6, 29] {
                        for g in ["daily", "weekly", "monthly"] {
                            out.push(get(format!(
                                "/api/v1/analytics/revenue?granularity={g}&start_date={}&end_date={}",
                                day(back),
                                day(0)
                            )));
                        }
                    }
                }
                n if n == WARM_DASHBOARDS.name => {
                    for path in [
                        "/api/v1/fraud/dashboard?time_range=24h",
                        "/api/v1/fraud/dashboard?time_range=7d",
                        "/api/v1/realtime/business-metrics?time_window=24h",
                        "/api/v1/realtime/system-health",
                        "/api/v1/analytics/customers/segments",
                        "/api/v1/analytics/products/performance",
                        "/api/v1/customers",
                    ] {
                        out.push(get(path.to_owned()));
                    }
                }
                other => {
                    return Err(AnalyticsError::not_found(
                        "source",
                        format!(
                            "plugin `analytics` has no warm source `{other}`; it has `{}` and `{}`",
                            WARM_REVENUE.name, WARM_DASHBOARDS.name
                        ),
                    ));
                }
            }
        }
        Ok(out)
    }
}

/// Opens the configured database — the PostgreSQL schema when `database_url` is set, else
/// the SQLite file — generating the dataset when it is new or was left half-filled.
fn open(config: &AnalyticsConfig, today: Date, now_secs: u32) -> Result<Db, AnalyticsError> {
    let readers = config.read_connections.clamp(1, 32) as usize;
    let (db, made) = match &config.database_url {
        Some(url) => open_postgres(config, url, readers, today, now_secs)?,
        None => open_sqlite(config, readers, today, now_secs)?,
    };
    if let Some(made) = made {
        tracing::info!(
            database = %db.location(),
            tenants = made.tenants,
            customers = made.customers,
            orders = made.orders,
            order_lines = made.order_lines,
            sessions = made.sessions,
            fraud_alerts = made.fraud_alerts,
            seconds = format!("{:.1}", made.seconds),
            lines_per_s = (made.order_lines as f64 / made.seconds.max(0.001)).round() as u64,
            "analytics: generated a fresh dataset"
        );
    }
    Ok(db)
}

/// An empty database in memory, for a plugin that is only inspected (`larder check`, ...):
/// the same routes, and no file, no generation, no connection to a server.
fn open_empty() -> Result<Db, AnalyticsError> {
    let path = std::path::Path::new("file:larder-analytics-inspect?mode=memory&cache=shared");
    let conn = db::open_writer(path)?;
    conn.execute_batch(db::SCHEMA)?;
    Db::sqlite(path, conn, 1)
}

/// Whether an existing database can be served: completely generated, for these settings.
/// Says why when it cannot (it is then rebuilt), and warns when its rows end days before
/// today (it is kept: it may hold orders written since).
fn usable(
    conn: &mut dyn sql::Conn,
    config: &AnalyticsConfig,
    today: Date,
    location: &dyn std::fmt::Display,
) -> Result<bool, AnalyticsError> {
    if !db::is_complete(conn)? {
        tracing::warn!(
            database = %location,
            "analytics: the database holds no completely generated dataset (an interrupted start?); rebuilding it"
        );
        return Ok(false);
    }
    let want = generate::fingerprint(config.seed, &config.dataset);
    let have = db::meta(conn, "dataset")?.unwrap_or_else(|| "(not recorded)".into());
    if have != want {
        tracing::warn!(
            database = %location,
            made_for = %have,
            settings = %want,
            "analytics: the database was generated for other settings; rebuilding it"
        );
        return Ok(false);
    }
    if let Some(anchor) = db::meta(conn, "anchor_day")?.and_then(|d| d.parse::<Date>().ok())
        && anchor < today
    {
        tracing::warn!(
            database = %location,
            generated_on = %anchor,
            days_ago = (today - anchor).get_days(),
            "analytics: the generated rows end on the day the database was made; later days hold only orders written since (remove the database to generate one ending today)"
        );
    }
    Ok(true)
}

fn generating(location: &dyn std::fmt::Display, config: &AnalyticsConfig) {
    tracing::info!(
        database = %location,
        order_lines = config.dataset.order_lines,
        "analytics: generating the dataset (first start)"
    );
}

type Opened = (Db, Option<generate::Generated>);

fn open_sqlite(
    config: &AnalyticsConfig,
    readers: usize,
    today: Date,
    now_secs: u32,
) -> Result<Opened, AnalyticsError> {
    let path = &config.database;
    if path.exists() {
        let mut conn = db::open_writer(path)?;
        let location = path.display();
        if usable(&mut conn, config, today, &location)? {
            return Ok((Db::sqlite(path, conn, readers)?, None));
        }
        drop(conn);
        db::remove_files(path)?;
    }
    let conn = db::open_writer(path)?;
    generating(&path.display(), config);
    let made = generate::fill(
        &mut generate::SqliteBulk::new(&conn)?,
        config.seed,
        &config.dataset,
        today,
        now_secs,
    )?;
    Ok((Db::sqlite(path, conn, readers)?, Some(made)))
}

fn open_postgres(
    config: &AnalyticsConfig,
    url: &str,
    readers: usize,
    today: Date,
    now_secs: u32,
) -> Result<Opened, AnalyticsError> {
    let pg: postgres::Config = url.parse().map_err(|e| {
        AnalyticsError::invalid(
            "database_url",
            "invalid_url",
            format!("`database_url` is not a PostgreSQL URL: {e}"),
        )
    })?;
    let schema = &config.database_schema;
    let mut conn = sql::PgConn::connect(&pg, schema)?;
    let location = db::Location::Postgres {
        server: db::pg_server(&pg),
        schema: schema.clone(),
    };
    if usable(&mut conn, config, today, &location)? {
        return Ok((Db::postgres(&pg, schema, conn, readers)?, None));
    }
    db::clear_pg_schema(&mut conn)?;
    generating(&location, config);
    let made = generate::fill(
        &mut generate::PgBulk::new(&mut conn),
        config.seed,
        &config.dataset,
        today,
        now_secs,
    )?;
    Ok((Db::postgres(&pg, schema, conn, readers)?, Some(made)))
}

impl Plugin for AnalyticsPlugin {
    type Config = AnalyticsConfig;
    const NAME: &'static str = "analytics";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "E-commerce analytics per merchant: revenue, segments, \
         products, cohorts, funnels, customers, fraud and real-time figures.";
    // The shipped policy, kept in the repository's policy folder where operators read it.
    const DEFAULT_POLICY: Option<&'static str> =
        Some(include_str!("../../../policies/analytics.yaml"));

    async fn new(init: PluginInit<AnalyticsConfig>) -> Result<Self, PluginError> {
        let config = init.config;
        if config.dataset.tenants == 0 || config.dataset.tenants as usize > generate::TENANTS.len()
        {
            return Err(setting(
                "dataset.tenants",
                format!("must be between 1 and {}", generate::TENANTS.len()),
            ));
        }
        if config.dataset.customers_per_tenant < 10 || config.dataset.products_per_tenant < 10 {
            return Err(setting(
                "dataset",
                "the dataset needs at least 10 customers and 10 products per tenant",
            ));
        }
        let schema = &config.database_schema;
        if schema.is_empty()
            || schema.len() > 63
            || schema.starts_with(|c: char| c.is_ascii_digit())
            || !schema
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return Err(setting(
                "database_schema",
                format!(
                    "`{schema}` is not a plain PostgreSQL name (letters, digits and `_`, at most 63, not starting with a digit)"
                ),
            ));
        }
        if let Some(url) = &config.database_url {
            url.parse::<postgres::Config>().map_err(|e| {
                setting(
                    "database_url",
                    format!("not a PostgreSQL connection URL: {e}"),
                )
            })?;
        }
        let now = Timestamp::try_from(init.context.now()).unwrap_or(Timestamp::UNIX_EPOCH);
        let zoned = now.to_zoned(jiff::tz::TimeZone::UTC);
        let today = zoned.date();
        let now_secs = zoned.time().hour() as u32 * 3600
            + zoned.time().minute() as u32 * 60
            + zoned.time().second() as u32;
        let open_config = config.clone();
        let inspecting = init.context.inspecting();
        let db = tokio::task::spawn_blocking(move || {
            if inspecting {
                open_empty()
            } else {
                open(&open_config, today, now_secs)
            }
        })
        .await
        .map_err(|e| PluginError::failed(format!("analytics: opening the database failed: {e}")))?
        .map_err(|e| PluginError::failed(format!("analytics: {e}")))?;
        let reference = db
            .read(Reference::load)
            .await
            .map_err(|e| PluginError::failed(format!("analytics: {e}")))?;
        Ok(Self {
            state: Arc::new(State {
                config,
                db,
                reference,
                ctx: init.context,
                started: Instant::now(),
            }),
        })
    }

    fn api(&self) -> PluginApi {
        api::build(self.state.clone())
    }

    fn events(&self) -> Vec<EventSpec> {
        events::specs()
    }

    /// The seed's limit: 100 requests a minute per client (its IP unless the operator's
    /// `rate_limit.per` says otherwise), answered 429 with `Retry-After`; an uncached query
    /// costs tens to hundreds of milliseconds of database time.
    fn http_defaults(&self) -> HttpDefaults {
        HttpDefaults {
            rate_per_minute: Some(100),
            ..HttpDefaults::default()
        }
    }

    fn permissions(&self) -> Vec<RoutePermission> {
        let mut out: Vec<RoutePermission> = READ_OPERATIONS
            .iter()
            .map(|op| RoutePermission::new(op, &[ANALYTICS_READ]))
            .collect();
        out.push(RoutePermission::new("create_order", &[ANALYTICS_WRITE]));
        out.push(RoutePermission::new(
            "resolve_fraud_alert",
            &[ANALYTICS_WRITE],
        ));
        out.extend(
            CACHE_OPERATIONS
                .iter()
                .map(|op| RoutePermission::new(op, &[CACHE_MANAGE])),
        );
        out
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![WARM_REVENUE.spec(), WARM_DASHBOARDS.spec()]
    }

    async fn warm_source(&self, name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        self.warm_requests(name)
            .map_err(|e| PluginError::failed(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DatasetConfig;

    fn small() -> AnalyticsConfig {
        AnalyticsConfig {
            dataset: DatasetConfig {
                tenants: 2,
                customers_per_tenant: 50,
                products_per_tenant: 20,
                order_lines: 3_000,
                days: 60,
            },
            ..AnalyticsConfig::default()
        }
    }

    fn fingerprint(path: &std::path::Path) -> (i64, i64, i64, i64) {
        let c = rusqlite::Connection::open(path).unwrap();
        c.query_row(
            "SELECT (SELECT COUNT(*) FROM order_lines), (SELECT SUM(quantity * unit_price_cents) FROM order_lines),
                    (SELECT COUNT(*) FROM sessions), (SELECT SUM(lifetime_value_cents) FROM customers)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
    }

    #[test]
    fn one_seed_gives_the_same_rows_and_a_half_filled_file_is_rebuilt() {
        let dir = tempfile::tempdir().unwrap();
        let today: Date = "2026-03-04".parse().unwrap();
        let mut a = small();
        a.database = dir.path().join("a.db");
        let mut b = small();
        b.database = dir.path().join("b.db");
        drop(open(&a, today, 36_000).unwrap());
        drop(open(&b, today, 36_000).unwrap());
        let first = fingerprint(&a.database);
        assert!(first.0 >= 3_000, "{first:?}");
        assert_eq!(first, fingerprint(&b.database));

        // A start cut short: tables and some rows, no completion marker.
        let mut cut = small();
        cut.database = dir.path().join("cut.db");
        {
            let c = rusqlite::Connection::open(&cut.database).unwrap();
            c.execute_batch(db::SCHEMA).unwrap();
            c.execute_batch(
                "INSERT INTO order_lines (order_id, tenant_id, product_id, category_id, region_id, order_date, quantity, unit_price_cents)
                 VALUES (1, 1, 1, 1, 1, '2026-03-01', 999, 1)",
            )
            .unwrap();
        }
        drop(open(&cut, today, 36_000).unwrap());
        assert_eq!(fingerprint(&cut.database), first);
        let mut c = rusqlite::Connection::open(&cut.database).unwrap();
        assert!(db::is_complete(&mut c).unwrap());

        // The same file opened with other settings is rebuilt for them, not served as is.
        let mut bigger = a.clone();
        bigger.dataset.order_lines = 4_000;
        drop(open(&bigger, today, 36_000).unwrap());
        let rebuilt = fingerprint(&a.database);
        assert!(rebuilt.0 >= 4_000 && rebuilt != first, "{rebuilt:?}");
        // Opened again with those settings, it is kept (with what was written since).
        rusqlite::Connection::open(&a.database)
            .unwrap()
            .execute_batch("INSERT INTO meta (key, value) VALUES ('written_since', 'yes')")
            .unwrap();
        drop(open(&bigger, today, 36_000).unwrap());
        let mut c = rusqlite::Connection::open(&a.database).unwrap();
        assert_eq!(
            db::meta(&mut c, "written_since").unwrap().as_deref(),
            Some("yes")
        );
    }
}
