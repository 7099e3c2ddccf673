//! The data routes: every answer is one tenant's, computed by SQL over the dataset.

use std::sync::Arc;

use base64::Engine as _;
use poem_openapi::param::{Path, Query};
use poem_openapi::{Enum, OpenApi};
use serde_json::{Value, json};

use super::schema::{
    AlertPage, BusinessMetrics, CohortReport, CustomerDetail, CustomerPage, FraudDashboard,
    FunnelReport, ProductReport, RecommendationReport, RevenueReport, SegmentReport, StreamMetrics,
    SystemHealth,
};
use super::{Reply, envelope, page_params, reply, tenant_of};
use crate::State;
use crate::error::AnalyticsError;
use crate::model::{RISK_LEVELS, SEGMENTS, parse_range};
use crate::store::{self, Granularity, PageAt};

/// Longest date range a query may cover, in days.
pub const MAX_RANGE_DAYS: i32 = 3 * 366;

/// Revenue buckets.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum GranularityParam {
    /// One point per day.
    Daily,
    /// Weeks from Monday.
    Weekly,
    /// Calendar months.
    Monthly,
}

/// How customers are segmented.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum SegmentType {
    /// Recency, frequency, monetary value (the customer's segment).
    Rfm,
    /// Lifetime value bands.
    Value,
    /// Ordering habits.
    Behavior,
    /// Active, lapsing, churned.
    Lifecycle,
}

/// Product ranking.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum ProductSort {
    /// Revenue in the window.
    Revenue,
    /// Units sold in the window.
    Units,
    /// Revenue growth against the window before.
    Growth,
}

/// A window ending today.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeRange {
    /// Last 7 days.
    #[oai(rename = "7d")]
    D7,
    /// Last 30 days.
    #[oai(rename = "30d")]
    D30,
    /// Last 90 days.
    #[oai(rename = "90d")]
    D90,
    /// Last 365 days.
    #[oai(rename = "1y")]
    Y1,
}

/// Cohort periods.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum CohortType {
    /// By first order's month.
    Monthly,
    /// By first order's week.
    Weekly,
}

/// What a cohort table shows.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum CohortMetric {
    /// Share of the cohort ordering in each period.
    Retention,
    /// Revenue of the cohort in each period.
    Revenue,
}

/// Funnel shapes.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum FunnelType {
    /// view → cart → checkout → order.
    Purchase,
    /// cart → checkout → order.
    Checkout,
}

/// Customer list order.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum CustomerSort {
    /// By id, ascending.
    Id,
    /// Highest lifetime value first.
    LifetimeValue,
    /// Most orders first.
    Orders,
    /// Most recent order first.
    Recent,
}

/// Recommendation kinds.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum RecommendationType {
    /// Products to show.
    Products,
    /// Offers to send.
    Offers,
    /// Retention actions.
    Retention,
}

/// Fraud alert states.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum AlertStatus {
    /// New.
    Open,
    /// Being looked at.
    Investigating,
    /// Closed as fraud or handled.
    Resolved,
    /// Closed as not fraud.
    FalsePositive,
}

/// Fraud alert priorities.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum AlertPriority {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

/// Fraud alert types.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "snake_case")]
pub enum AlertType {
    /// Many orders in little time.
    Velocity,
    /// An unusual amount.
    AmountAnomaly,
    /// Shipping and payment far apart.
    GeoMismatch,
    /// Small charges probing a card.
    CardTesting,
    /// A login from a new device followed by changes.
    AccountTakeover,
}

/// Windows of the fraud dashboard and business metrics.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Window {
    /// Last hour.
    #[oai(rename = "1h")]
    H1,
    /// Last 24 hours.
    #[oai(rename = "24h")]
    H24,
    /// Last 7 days.
    #[oai(rename = "7d")]
    D7,
    /// Last 30 days.
    #[oai(rename = "30d")]
    D30,
}

/// Live streams.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
#[oai(rename_all = "lowercase")]
pub enum StreamType {
    /// Orders recorded.
    Orders,
    /// Money taken.
    Payments,
    /// Fraud alerts raised.
    Fraud,
}

/// Windows of the live streams.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamWindow {
    /// Last minute.
    #[oai(rename = "1m")]
    M1,
    /// Last 5 minutes.
    #[oai(rename = "5m")]
    M5,
    /// Last 15 minutes.
    #[oai(rename = "15m")]
    M15,
    /// Last hour.
    #[oai(rename = "1h")]
    H1,
}

fn enum_text<T: poem_openapi::types::ToJSON>(v: &T) -> String {
    v.to_json()
        .and_then(|j| j.as_str().map(str::to_owned))
        .unwrap_or_default()
}

/// A keyset cursor: the sort it was made for, the filters, and the last row's position.
#[derive(serde::Serialize, serde::Deserialize)]
struct Cursor {
    s: String,
    f: String,
    v: Option<i64>,
    id: i64,
}

fn encode_cursor(c: &Cursor) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD
        .encode(serde_json::to_vec(c).unwrap_or_default())
}

fn decode_cursor(text: &str, sort: &str, filters: &str) -> Result<Cursor, AnalyticsError> {
    let bad = |why: &str| {
        AnalyticsError::invalid(
            "cursor",
            "invalid_cursor",
            format!("`cursor` {why}; pass the `pagination.next_cursor` of a previous answer"),
        )
    };
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(text)
        .map_err(|_| bad("is not a cursor this API made"))?;
    let c: Cursor =
        serde_json::from_slice(&bytes).map_err(|_| bad("is not a cursor this API made"))?;
    if c.s != sort || c.f != filters {
        return Err(bad("was made for another sort or other filters"));
    }
    Ok(c)
}

fn one_of(
    field: &str,
    v: Option<String>,
    allowed: &[&str],
) -> Result<Option<String>, AnalyticsError> {
    match v.as_deref() {
        None | Some("all") => Ok(None),
        Some(x) if allowed.contains(&x) => Ok(Some(x.to_owned())),
        Some(x) => Err(AnalyticsError::invalid(
            field,
            "unknown_value",
            format!("unknown {field} `{x}`; known: {}", allowed.join(", ")),
        )),
    }
}

fn required(field: &str, v: Option<String>) -> Result<String, AnalyticsError> {
    v.ok_or_else(|| {
        AnalyticsError::invalid(
            field,
            "missing",
            format!("`{field}` is required (YYYY-MM-DD)"),
        )
    })
}

/// A range Swagger UI's "Try it out" can send as is (any past range answers; the dates
/// need not hold orders).
fn example_start_date() -> Option<String> {
    Some("2026-01-01".into())
}

fn example_end_date() -> Option<String> {
    Some("2026-01-31".into())
}

/// The first customer of every tenant.
fn example_customer_id() -> i64 {
    1
}

/// The required `start_date`/`end_date` pair, checked.
fn date_range(
    start: Option<String>,
    end: Option<String>,
) -> Result<(jiff::civil::Date, jiff::civil::Date), AnalyticsError> {
    parse_range(
        &required("start_date", start)?,
        &required("end_date", end)?,
        MAX_RANGE_DAYS,
    )
}

/// Data routes.
pub struct DataApi(pub Arc<State>);

impl DataApi {
    async fn read<F>(&self, f: F) -> Result<Value, AnalyticsError>
    where
        F: FnOnce(&mut dyn crate::sql::Conn, &State) -> Result<Value, AnalyticsError>
            + Send
            + 'static,
    {
        let state = self.0.clone();
        self.0.db.read(move |c| f(c, &state)).await
    }

    fn since(&self, seconds: i64) -> (String, String) {
        let now = self.0.now();
        let since = now
            .checked_sub(jiff::SignedDuration::from_secs(seconds))
            .unwrap_or(now);
        let text = since.strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
        let day = since.to_zoned(jiff::tz::TimeZone::UTC).date().to_string();
        (text, day)
    }
}

#[OpenApi]
impl DataApi {
    /// Revenue per day, week or month over a date range, optionally for one region and one
    /// category. Cached 5 minutes per tenant (closed ranges 1 hour); an order purges only
    /// the ranges that hold its day.
    #[oai(
        path = "/api/v1/analytics/revenue",
        method = "get",
        operation_id = "analytics_revenue"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn revenue(
        &self,
        req: &poem::Request,
        /// First day, `YYYY-MM-DD` (required).
        #[oai(example = "example_start_date")]
        start_date: Query<Option<String>>,
        /// Last day (inclusive), `YYYY-MM-DD` (required).
        #[oai(example = "example_end_date")]
        end_date: Query<Option<String>>,
        /// Bucket size (default `daily`).
        granularity: Query<Option<GranularityParam>>,
        /// Region code (`na`, `eu`, `apac`, `latam`) or `all` (default).
        region: Query<Option<String>>,
        /// Category slug (`electronics`, `home`, ...) or `all` (default).
        category: Query<Option<String>>,
    ) -> Reply<RevenueReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let (s, e) = date_range(start_date.0, end_date.0)?;
            let g = match granularity.0.unwrap_or(GranularityParam::Daily) {
                GranularityParam::Daily => Granularity::Daily,
                GranularityParam::Weekly => Granularity::Weekly,
                GranularityParam::Monthly => Granularity::Monthly,
            };
            let region = self.0.reference.region(region.0.as_deref())?;
            let category = self.0.reference.category(category.0.as_deref())?;
            self.read(move |c, st| {
                store::revenue(c, &st.reference, tenant, g, s, e, region, category)
            })
            .await
        };
        reply(run.await)
    }

    /// Customers grouped by segment, with counts, value and (optionally) predicted churn.
    #[oai(
        path = "/api/v1/analytics/customers/segments",
        method = "get",
        operation_id = "customer_segments"
    )]
    async fn segments(
        &self,
        req: &poem::Request,
        /// How to segment (default `rfm`).
        segment_type: Query<Option<SegmentType>>,
        /// Add each segment's predicted churn rate (default false).
        include_predictions: Query<Option<bool>>,
    ) -> Reply<SegmentReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let kind = enum_text(&segment_type.0.unwrap_or(SegmentType::Rfm));
            let predictions = include_predictions.0.unwrap_or(false);
            let today = self.0.today();
            self.read(move |c, _| store::segments(c, tenant, &kind, predictions, today))
                .await
        };
        reply(run.await)
    }

    /// The top 50 products over a window ending today, with growth against the window
    /// before and (optionally) a recommendation each.
    #[oai(
        path = "/api/v1/analytics/products/performance",
        method = "get",
        operation_id = "product_performance"
    )]
    async fn products(
        &self,
        req: &poem::Request,
        /// Category slug or `all` (default).
        category: Query<Option<String>>,
        /// Ranking (default `revenue`).
        sort_by: Query<Option<ProductSort>>,
        /// Window (default `30d`).
        time_range: Query<Option<TimeRange>>,
        /// Add a recommendation per product (default false).
        include_recommendations: Query<Option<bool>>,
    ) -> Reply<ProductReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let category = self.0.reference.category(category.0.as_deref())?;
            let sort = enum_text(&sort_by.0.unwrap_or(ProductSort::Revenue));
            let range = enum_text(&time_range.0.unwrap_or(TimeRange::D30));
            let recs = include_recommendations.0.unwrap_or(false);
            let today = self.0.today();
            self.read(move |c, st| {
                store::product_performance(
                    c,
                    &st.reference,
                    tenant,
                    category,
                    &sort,
                    &range,
                    recs,
                    today,
                )
            })
            .await
        };
        reply(run.await)
    }

    /// Cohorts of customers by their first order's month or week, and their retention or
    /// revenue in each later period.
    #[oai(
        path = "/api/v1/analytics/cohort-analysis",
        method = "get",
        operation_id = "cohort_analysis"
    )]
    async fn cohorts(
        &self,
        req: &poem::Request,
        /// First day of first orders, `YYYY-MM-DD` (required).
        #[oai(example = "example_start_date")]
        start_date: Query<Option<String>>,
        /// Last day of first orders, `YYYY-MM-DD` (required).
        #[oai(example = "example_end_date")]
        end_date: Query<Option<String>>,
        /// Cohort period (default `monthly`).
        cohort_type: Query<Option<CohortType>>,
        /// What to show (default `retention`).
        metric: Query<Option<CohortMetric>>,
    ) -> Reply<CohortReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let (s, e) = date_range(start_date.0, end_date.0)?;
            let kind = enum_text(&cohort_type.0.unwrap_or(CohortType::Monthly));
            let metric = enum_text(&metric.0.unwrap_or(CohortMetric::Retention));
            self.read(move |c, _| store::cohorts(c, tenant, &kind, s, e, &metric))
                .await
        };
        reply(run.await)
    }

    /// The purchase funnel over a date range, optionally for one customer segment.
    #[oai(
        path = "/api/v1/analytics/funnels",
        method = "get",
        operation_id = "funnel_analysis"
    )]
    async fn funnels(
        &self,
        req: &poem::Request,
        /// First day, `YYYY-MM-DD` (required).
        #[oai(example = "example_start_date")]
        start_date: Query<Option<String>>,
        /// Last day, `YYYY-MM-DD` (required).
        #[oai(example = "example_end_date")]
        end_date: Query<Option<String>>,
        /// Funnel shape (default `purchase`).
        funnel_type: Query<Option<FunnelType>>,
        /// Customer segment or `all` (default).
        segment: Query<Option<String>>,
    ) -> Reply<FunnelReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let (s, e) = date_range(start_date.0, end_date.0)?;
            let kind = enum_text(&funnel_type.0.unwrap_or(FunnelType::Purchase));
            let segment = one_of("segment", segment.0, SEGMENTS)?;
            self.read(move |c, _| store::funnel(c, tenant, &kind, s, e, segment.as_deref()))
                .await
        };
        reply(run.await)
    }

    /// Customers, paginated: by `page`/`size` (the seed's envelope) or, for deep pages, by
    /// `cursor` (`pagination.next_cursor` of the previous answer). Pages past the end are
    /// empty, not 404.
    #[oai(
        path = "/api/v1/customers",
        method = "get",
        operation_id = "list_customers"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn customers(
        &self,
        req: &poem::Request,
        /// Segment or `all` (default).
        segment: Query<Option<String>>,
        /// Risk level (`low`, `medium`, `high`) or `all` (default).
        risk_level: Query<Option<String>>,
        /// Order (default `id`).
        sort_by: Query<Option<CustomerSort>>,
        /// Page from 1 (default 1).
        page: Query<Option<u64>>,
        /// Items per page, 1–1000 (default 100).
        size: Query<Option<u64>>,
        /// Continue after this cursor instead of using `page`.
        cursor: Query<Option<String>>,
    ) -> Reply<CustomerPage> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let segment = one_of("segment", segment.0, SEGMENTS)?;
            let risk = one_of("risk_level", risk_level.0, RISK_LEVELS)?;
            let sort = enum_text(&sort_by.0.unwrap_or(CustomerSort::Id));
            if cursor.0.is_some() && page.0.is_some() {
                return Err(AnalyticsError::invalid(
                    "cursor",
                    "page_and_cursor",
                    "give `page` or `cursor`, not both",
                ));
            }
            let (page_no, size) = page_params(page.0, size.0)?;
            let filters = format!(
                "{}|{}",
                segment.as_deref().unwrap_or("all"),
                risk.as_deref().unwrap_or("all")
            );
            let at = match cursor.0.as_deref() {
                Some(text) => {
                    let c = decode_cursor(text, &sort, &filters)?;
                    PageAt::After(c.v, c.id)
                }
                None => PageAt::Page(page_no),
            };
            let deep = self.0.config.deep_page_offset;
            let (sort2, filters2, at2) = (sort.clone(), filters.clone(), at.clone());
            let (items, total, last) = self
                .0
                .db
                .read({
                    let state = self.0.clone();
                    move |c| {
                        store::customers(
                            c,
                            &state.reference,
                            tenant,
                            segment.as_deref(),
                            risk.as_deref(),
                            &sort2,
                            &at2,
                            size,
                        )
                    }
                })
                .await?;
            let full = items.len() as u64 == size;
            let next_cursor = last.filter(|_| full).map(|(v, id)| {
                encode_cursor(&Cursor {
                    s: sort.clone(),
                    f: filters2.clone(),
                    v,
                    id,
                })
            });
            let mut body = match at {
                PageAt::Page(p) => {
                    let mut body = envelope(items, total, p, size);
                    let offset = (p - 1) * size;
                    if offset >= deep {
                        body["warnings"] = json!([format!(
                            "page {p} starts at row {offset}: offset pages scan every row before them; \
                             follow `pagination.next_cursor` instead"
                        )]);
                        body["suggestion"] = json!({ "use": "cursor", "parameter": "cursor" });
                    }
                    body
                }
                PageAt::After(..) => {
                    let count = items.len();
                    json!({
                        "items": items,
                        "pagination": {
                            "mode": "cursor",
                            "size": size,
                            "total_items": total,
                            "has_next": next_cursor.is_some(),
                            "has_previous": true,
                        },
                        "summary": { "total_items": total, "current_page_items": count },
                    })
                }
            };
            body["pagination"]["next_cursor"] = json!(next_cursor);
            body["filters"] = json!({
                "segment": filters.split('|').next(),
                "risk_level": filters.split('|').nth(1),
                "sort_by": sort,
            });
            Ok(body)
        };
        reply(run.await)
    }

    /// One customer of the caller's tenant, with recent orders. The e-mail is masked.
    #[oai(
        path = "/api/v1/customers/:customer_id",
        method = "get",
        operation_id = "get_customer"
    )]
    async fn customer(
        &self,
        req: &poem::Request,
        /// The customer, by id within the tenant.
        #[oai(example = "example_customer_id")]
        customer_id: Path<i64>,
    ) -> Reply<CustomerDetail> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let id = customer_id.0;
            self.read(move |c, st| {
                store::customer(c, &st.reference, tenant, id)?.ok_or_else(|| {
                    AnalyticsError::not_found(
                        "customer_id",
                        format!("no customer {id} in this tenant"),
                    )
                })
            })
            .await
        };
        reply(run.await)
    }

    /// Recommendations for one customer: products, offers or retention actions.
    #[oai(
        path = "/api/v1/customers/:customer_id/recommendations",
        method = "get",
        operation_id = "customer_recommendations"
    )]
    async fn recommendations(
        &self,
        req: &poem::Request,
        /// The customer, by id within the tenant.
        #[oai(example = "example_customer_id")]
        customer_id: Path<i64>,
        /// Kind (default `products`).
        #[oai(name = "type")]
        kind: Query<Option<RecommendationType>>,
    ) -> Reply<RecommendationReport> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let id = customer_id.0;
            let kind = enum_text(&kind.0.unwrap_or(RecommendationType::Products));
            let today = self.0.today();
            self.read(move |c, st| {
                store::recommendations(c, &st.reference, tenant, id, &kind, today)?.ok_or_else(
                    || {
                        AnalyticsError::not_found(
                            "customer_id",
                            format!("no customer {id} in this tenant"),
                        )
                    },
                )
            })
            .await
        };
        reply(run.await)
    }

    /// Fraud alerts, newest first, in the seed's pagination envelope.
    #[oai(
        path = "/api/v1/fraud/alerts",
        method = "get",
        operation_id = "list_fraud_alerts"
    )]
    async fn alerts(
        &self,
        req: &poem::Request,
        /// State filter.
        status: Query<Option<AlertStatus>>,
        /// Priority filter.
        priority: Query<Option<AlertPriority>>,
        /// Type filter.
        alert_type: Query<Option<AlertType>>,
        /// Page from 1 (default 1).
        page: Query<Option<u64>>,
        /// Items per page, 1–1000 (default 100).
        size: Query<Option<u64>>,
    ) -> Reply<AlertPage> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let (page, size) = page_params(page.0, size.0)?;
            let status = status.0.map(|v| enum_text(&v));
            let priority = priority.0.map(|v| enum_text(&v));
            let kind = alert_type.0.map(|v| enum_text(&v));
            let (items, total) = self
                .0
                .db
                .read(move |c| {
                    store::fraud_alerts(
                        c,
                        tenant,
                        status.as_deref(),
                        priority.as_deref(),
                        kind.as_deref(),
                        page,
                        size,
                    )
                })
                .await?;
            Ok(envelope(items, total, page, size))
        };
        reply(run.await)
    }

    /// Fraud figures over a window ending now: counts by status, priority and type, amount
    /// at risk, the customers with most alerts.
    #[oai(
        path = "/api/v1/fraud/dashboard",
        method = "get",
        operation_id = "fraud_dashboard"
    )]
    async fn fraud_dashboard(
        &self,
        req: &poem::Request,
        /// Window (default `24h`).
        time_range: Query<Option<Window>>,
    ) -> Reply<FraudDashboard> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let w = time_range.0.unwrap_or(Window::H24);
            let (since, _) = self.since(window_secs(w));
            let name = enum_text(&w);
            self.read(move |c, _| store::fraud_dashboard(c, tenant, &name, &since))
                .await
        };
        reply(run.await)
    }

    /// The service's own health: database latency, cache store, uptime.
    #[oai(
        path = "/api/v1/realtime/system-health",
        method = "get",
        operation_id = "system_health"
    )]
    async fn system_health(&self, req: &poem::Request) -> Reply<SystemHealth> {
        let run = async {
            tenant_of(&self.0, req)?;
            let started = std::time::Instant::now();
            let db_ok = self
                .0
                .db
                .read(|c| c.query_one("SELECT COUNT(*) FROM tenants", &[])?.int(0))
                .await
                .is_ok();
            let db_ms = started.elapsed().as_secs_f64() * 1000.0;
            let cache = self.0.ctx.cache_health().await;
            Ok(json!({
                "status": if db_ok { "healthy" } else { "unhealthy" },
                "database": { "ok": db_ok, "latency_ms": crate::model::round(db_ms, 3) },
                "cache": {
                    "mode": cache.mode,
                    "redis_connected": cache.redis_connected,
                    "ping_ms": cache.ping_ms,
                },
                "uptime_seconds": self.0.started.elapsed().as_secs(),
                "checked_at": self.0.now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
            }))
        };
        reply(run.await)
    }

    /// Events per minute on a live stream over a short window ending now.
    #[oai(
        path = "/api/v1/realtime/stream-metrics",
        method = "get",
        operation_id = "stream_metrics"
    )]
    async fn stream_metrics(
        &self,
        req: &poem::Request,
        /// Stream (default `orders`).
        stream_type: Query<Option<StreamType>>,
        /// Window (default `5m`).
        time_window: Query<Option<StreamWindow>>,
    ) -> Reply<StreamMetrics> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let w = time_window.0.unwrap_or(StreamWindow::M5);
            let secs = match w {
                StreamWindow::M1 => 60,
                StreamWindow::M5 => 300,
                StreamWindow::M15 => 900,
                StreamWindow::H1 => 3600,
            };
            let (since, _) = self.since(secs);
            let kind = enum_text(&stream_type.0.unwrap_or(StreamType::Orders));
            let name = enum_text(&w);
            self.read(move |c, _| {
                store::stream_metrics(c, tenant, &kind, &name, &since, secs as f64 / 60.0)
            })
            .await
        };
        reply(run.await)
    }

    /// Headline figures over a window ending now: orders, revenue, buyers, new customers,
    /// conversion, open fraud alerts.
    #[oai(
        path = "/api/v1/realtime/business-metrics",
        method = "get",
        operation_id = "business_metrics"
    )]
    async fn business_metrics(
        &self,
        req: &poem::Request,
        /// Window (default `24h`).
        time_window: Query<Option<Window>>,
    ) -> Reply<BusinessMetrics> {
        let run = async {
            let (tenant, _) = tenant_of(&self.0, req)?;
            let w = time_window.0.unwrap_or(Window::H24);
            let (since, since_day) = self.since(window_secs(w));
            let name = enum_text(&w);
            self.read(move |c, _| store::business_metrics(c, tenant, &name, &since, &since_day))
                .await
        };
        reply(run.await)
    }
}

fn window_secs(w: Window) -> i64 {
    match w {
        Window::H1 => 3600,
        Window::H24 => 86_400,
        Window::D7 => 7 * 86_400,
        Window::D30 => 30 * 86_400,
    }
}
