//! The documented shapes of the answers, for the OpenAPI document.
//!
//! The queries build JSON; each answer is read into its type here before it leaves
//! ([`super::reply`]), so the document cannot drift from what is sent: an answer that does
//! not fit its type is a 500 naming the field, and the end-to-end tests call every route.
//! Money is in the currency's units (two decimals), dates are `YYYY-MM-DD`, times RFC 3339
//! UTC.

use std::collections::BTreeMap;

use poem_openapi::Object;
use poem_openapi::types::MaybeUndefined;

/// Revenue per period over a date range.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsRevenueReport", deny_unknown_fields)]
pub struct RevenueReport {
    /// `daily`, `weekly` (weeks from Monday) or `monthly`.
    pub granularity: String,
    /// First day of the range.
    pub start_date: String,
    /// Last day of the range (included).
    pub end_date: String,
    /// Region code, or `all`.
    pub region: String,
    /// Category slug, or `all`.
    pub category: String,
    /// Always `USD`.
    pub currency: String,
    /// Over the whole range.
    pub totals: RevenueFigures,
    /// One entry per period with sales, in order.
    pub series: Vec<RevenuePeriod>,
}

/// Revenue figures.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct RevenueFigures {
    /// Sales.
    pub revenue: f64,
    /// Orders.
    pub orders: i64,
    /// Units sold.
    pub units: i64,
    /// Revenue per order.
    pub average_order_value: f64,
}

/// One period of a revenue series.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct RevenuePeriod {
    /// The day, the Monday of the week, or `YYYY-MM` for a month.
    pub period: String,
    /// Sales.
    pub revenue: f64,
    /// Orders.
    pub orders: i64,
    /// Units sold.
    pub units: i64,
    /// Revenue per order.
    pub average_order_value: f64,
}

/// Customers grouped one way.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct SegmentReport {
    /// `rfm`, `value`, `behavior` or `lifecycle`.
    pub segment_type: String,
    /// Whether `predicted_churn_rate` is given.
    pub include_predictions: bool,
    /// The day the figures are for.
    pub as_of: String,
    /// Customers of the tenant.
    pub total_customers: i64,
    /// Largest first.
    pub segments: Vec<Segment>,
}

/// One segment.
#[derive(Object, Debug, Clone)]
#[oai(rename = "CustomerSegment", deny_unknown_fields)]
pub struct Segment {
    /// Its name.
    pub segment: String,
    /// Customers in it.
    pub customers: i64,
    /// Its share of all customers, in percent.
    pub share_percent: f64,
    /// Their lifetime revenue.
    pub revenue: f64,
    /// Lifetime revenue per customer.
    pub average_lifetime_value: f64,
    /// Orders per customer.
    pub average_orders: f64,
    /// Share of customers without an order in 90 days (0–1), with `include_predictions`.
    #[oai(skip_serializing_if_is_none)]
    pub predicted_churn_rate: Option<f64>,
}

/// Top products over a window, with growth against the window before.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct ProductReport {
    /// Category slug, or `all`.
    pub category: String,
    /// `revenue`, `units` or `growth`.
    pub sort_by: String,
    /// `7d`, `30d`, `90d` or `1y`.
    pub time_range: String,
    /// The days counted.
    pub window: DateWindow,
    /// Whether each product carries a `recommendation`.
    pub include_recommendations: bool,
    /// Up to 50.
    pub products: Vec<ProductFigures>,
}

/// A range of days.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsDateWindow", deny_unknown_fields)]
pub struct DateWindow {
    /// First day.
    pub start_date: String,
    /// Last day (included).
    pub end_date: String,
}

/// One product's figures.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct ProductFigures {
    /// Product id.
    pub product_id: i64,
    /// Name.
    pub name: String,
    /// Category slug.
    pub category: String,
    /// Sales in the window.
    pub revenue: f64,
    /// Units in the window.
    pub units: i64,
    /// Sales in the window before.
    pub previous_revenue: f64,
    /// Change against the window before, in percent; absent when it sold nothing then.
    #[oai(skip_serializing_if_is_none)]
    pub growth_percent: Option<f64>,
    /// What to do about it, with `include_recommendations`.
    #[oai(skip_serializing_if_is_none)]
    pub recommendation: Option<String>,
}

/// Customers by the period of their first order, and what each cohort did after.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CohortReport {
    /// `monthly` or `weekly`.
    pub cohort_type: String,
    /// `retention` or `revenue`.
    pub metric: String,
    /// First day of the first cohort.
    pub start_date: String,
    /// Last day of the last cohort.
    pub end_date: String,
    /// In order.
    pub cohorts: Vec<Cohort>,
}

/// One cohort.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct Cohort {
    /// Its period (`YYYY-MM`, or the Monday of its week).
    pub cohort: String,
    /// Customers whose first order fell in it.
    pub customers: i64,
    /// From its own period on.
    pub periods: Vec<CohortPeriod>,
}

/// One period after a cohort's first.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CohortPeriod {
    /// Periods since the cohort's (0: its own).
    pub offset: i64,
    /// The period.
    pub period: String,
    /// Customers who ordered in it (metric `retention`).
    #[oai(skip_serializing_if_is_none)]
    pub active_customers: Option<i64>,
    /// Their share of the cohort, in percent (metric `retention`).
    #[oai(skip_serializing_if_is_none)]
    pub retention_percent: Option<f64>,
    /// What the cohort spent in it (metric `revenue`).
    #[oai(skip_serializing_if_is_none)]
    pub revenue: Option<f64>,
}

/// The purchase funnel over a date range.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct FunnelReport {
    /// `purchase` (from views) or `checkout` (from carts).
    pub funnel_type: String,
    /// First day.
    pub start_date: String,
    /// Last day (included).
    pub end_date: String,
    /// Segment filter, or `all`.
    pub segment: String,
    /// In funnel order.
    pub steps: Vec<FunnelStep>,
    /// Orders per session at the funnel's first step, in percent.
    pub overall_conversion_percent: f64,
}

/// One funnel step.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct FunnelStep {
    /// `view`, `cart`, `checkout` or `order`.
    pub step: String,
    /// Sessions that reached it.
    pub sessions: i64,
    /// Against the step before, in percent.
    pub conversion_from_previous_percent: f64,
    /// Against the first step, in percent.
    pub conversion_overall_percent: f64,
    /// Sessions lost since the step before.
    pub drop_off: i64,
}

/// A page of customers.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CustomerPage {
    /// The customers.
    pub items: Vec<CustomerSummary>,
    /// Where this page is.
    pub pagination: Pagination,
    /// Counts.
    pub summary: PageSummary,
    /// The filters and order applied.
    pub filters: CustomerFilters,
    /// Advice, e.g. to follow the cursor instead of deep offsets.
    #[oai(skip_serializing_if_is_none)]
    pub warnings: Option<Vec<String>>,
    /// What to use instead, with `warnings`.
    #[oai(skip_serializing_if_is_none)]
    pub suggestion: Option<Suggestion>,
}

/// A customer in a list.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CustomerSummary {
    /// Customer id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Region code.
    pub region: String,
    /// Segment.
    pub segment: String,
    /// `low`, `medium` or `high`.
    pub risk_level: String,
    /// Lifetime revenue.
    pub lifetime_value: f64,
    /// Orders.
    pub orders_count: i64,
    /// Day of the last order; absent when none.
    #[oai(skip_serializing_if_is_none)]
    pub last_order_date: Option<String>,
}

/// Where a page is. Offset pages (`mode` absent) give `page`, `total_pages` and
/// `next_page`/`previous_page` (`null` at the ends); cursor pages give `mode: cursor`.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsPagination", deny_unknown_fields)]
pub struct Pagination {
    /// `cursor` for a page reached by cursor.
    #[oai(skip_serializing_if_is_none)]
    pub mode: Option<String>,
    /// The page number, from 1.
    #[oai(skip_serializing_if_is_none)]
    pub page: Option<u64>,
    /// Items per page.
    pub size: u64,
    /// Items matching in all.
    pub total_items: u64,
    /// Pages in all.
    #[oai(skip_serializing_if_is_none)]
    pub total_pages: Option<u64>,
    /// Whether a next page exists.
    pub has_next: bool,
    /// Whether a previous page exists.
    pub has_previous: bool,
    /// The next page number, `null` on the last (offset pages).
    pub next_page: MaybeUndefined<u64>,
    /// The previous page number, `null` on the first (offset pages).
    pub previous_page: MaybeUndefined<u64>,
    /// Opaque; pass it as `cursor` for the next page. Absent after the last.
    #[oai(skip_serializing_if_is_none)]
    pub next_cursor: Option<String>,
}

/// Counts of a page.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsPageSummary", deny_unknown_fields)]
pub struct PageSummary {
    /// Items matching in all.
    pub total_items: u64,
    /// Items on this page.
    pub current_page_items: u64,
    /// The page number (offset pages).
    #[oai(skip_serializing_if_is_none)]
    pub page: Option<u64>,
    /// Pages in all (offset pages).
    #[oai(skip_serializing_if_is_none)]
    pub total_pages: Option<u64>,
}

/// The filters of a customer list.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CustomerFilters {
    /// Segment, or `all`.
    pub segment: String,
    /// Risk level, or `all`.
    pub risk_level: String,
    /// Order.
    pub sort_by: String,
}

/// What to use instead.
#[derive(Object, Debug, Clone)]
#[oai(rename = "PagingSuggestion", deny_unknown_fields)]
pub struct Suggestion {
    /// `cursor`.
    #[oai(rename = "use")]
    pub use_: String,
    /// The parameter to send.
    pub parameter: String,
}

/// One customer with recent orders.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct CustomerDetail {
    /// Customer id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// Masked e-mail address (`a***@example.com`).
    pub email: String,
    /// Region code.
    pub region: String,
    /// Day of sign-up.
    pub signup_date: String,
    /// Segment.
    pub segment: String,
    /// `low`, `medium` or `high`.
    pub risk_level: String,
    /// Lifetime revenue.
    pub lifetime_value: f64,
    /// Orders.
    pub orders_count: i64,
    /// Day of the first order; absent when none.
    #[oai(skip_serializing_if_is_none)]
    pub first_order_date: Option<String>,
    /// Day of the last order; absent when none.
    #[oai(skip_serializing_if_is_none)]
    pub last_order_date: Option<String>,
    /// The last ten, newest first.
    pub recent_orders: Vec<RecentOrder>,
    /// Alerts open or under investigation.
    pub open_fraud_alerts: i64,
}

/// An order in a customer's history.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct RecentOrder {
    /// Order id.
    pub order_id: i64,
    /// Its day.
    pub order_date: String,
    /// Its total.
    pub total: f64,
}

/// Recommendations for one customer.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct RecommendationReport {
    /// Customer id.
    pub customer_id: i64,
    /// `products`, `offers` or `retention`.
    #[oai(rename = "type")]
    pub kind: String,
    /// The customer's segment.
    pub segment: String,
    /// Fields by `type`: products give `product_id`, `name`, `category`, `price`,
    /// `units_sold_90d`; offers `offer`, `description`, `discount_percent`; retention
    /// `churn_risk`, `days_since_last_order`, `orders_count`, `action`.
    pub recommendations: Vec<Recommendation>,
}

/// One recommendation; which fields it has depends on the report's `type`.
#[derive(Object, Debug, Clone)]
#[oai(rename = "CustomerRecommendation", deny_unknown_fields)]
pub struct Recommendation {
    /// Product id (products).
    #[oai(skip_serializing_if_is_none)]
    pub product_id: Option<i64>,
    /// Product name (products).
    #[oai(skip_serializing_if_is_none)]
    pub name: Option<String>,
    /// Category slug (products).
    #[oai(skip_serializing_if_is_none)]
    pub category: Option<String>,
    /// Price (products).
    #[oai(skip_serializing_if_is_none)]
    pub price: Option<f64>,
    /// Units the tenant sold in 90 days (products).
    #[oai(skip_serializing_if_is_none)]
    pub units_sold_90d: Option<i64>,
    /// Offer code (offers).
    #[oai(skip_serializing_if_is_none)]
    pub offer: Option<String>,
    /// Offer text (offers).
    #[oai(skip_serializing_if_is_none)]
    pub description: Option<String>,
    /// Discount (offers).
    #[oai(skip_serializing_if_is_none)]
    pub discount_percent: Option<i64>,
    /// `unknown`, `low`, `medium` or `high` (retention).
    #[oai(skip_serializing_if_is_none)]
    pub churn_risk: Option<String>,
    /// Days since the last order; absent when none (retention).
    #[oai(skip_serializing_if_is_none)]
    pub days_since_last_order: Option<i64>,
    /// Orders so far (retention).
    #[oai(skip_serializing_if_is_none)]
    pub orders_count: Option<i64>,
    /// What to do (retention).
    #[oai(skip_serializing_if_is_none)]
    pub action: Option<String>,
}

/// A page of fraud alerts, newest first.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct AlertPage {
    /// The alerts.
    pub items: Vec<FraudAlert>,
    /// Where this page is.
    pub pagination: Pagination,
    /// Counts.
    pub summary: PageSummary,
}

/// A fraud alert.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct FraudAlert {
    /// Alert id.
    pub id: i64,
    /// The customer.
    pub customer_id: i64,
    /// The order that raised it, when one did.
    #[oai(skip_serializing_if_is_none)]
    pub order_id: Option<i64>,
    /// Kind.
    pub alert_type: String,
    /// `low`, `medium`, `high` or `critical`.
    pub priority: String,
    /// `open`, `investigating`, `resolved` or `false_positive`.
    pub status: String,
    /// Model score, 0.5–1.
    pub score: f64,
    /// Amount concerned.
    pub amount: f64,
    /// When it was raised.
    pub created_at: String,
    /// When it was closed.
    #[oai(skip_serializing_if_is_none)]
    pub resolved_at: Option<String>,
    /// How it was closed.
    #[oai(skip_serializing_if_is_none)]
    pub resolution: Option<String>,
}

/// Fraud figures over a window ending now.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct FraudDashboard {
    /// The window.
    pub time_range: String,
    /// Its start.
    pub since: String,
    /// Alerts raised in it.
    pub total_alerts: i64,
    /// Of those, open or under investigation.
    pub open_alerts: i64,
    /// Alerts per order, in percent.
    pub alert_rate_percent: f64,
    /// Mean score; absent without alerts.
    #[oai(skip_serializing_if_is_none)]
    pub average_score: Option<f64>,
    /// Amount of the open alerts.
    pub amount_at_risk: f64,
    /// Alerts per status.
    pub by_status: BTreeMap<String, i64>,
    /// Alerts per priority.
    pub by_priority: BTreeMap<String, i64>,
    /// Alerts per type.
    pub by_type: BTreeMap<String, i64>,
    /// The customers with most alerts, up to five.
    pub top_customers: Vec<AlertedCustomer>,
}

/// A customer with alerts.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct AlertedCustomer {
    /// Customer id.
    pub customer_id: i64,
    /// Alerts in the window.
    pub alerts: i64,
    /// Their amount.
    pub amount: f64,
}

/// The service's own health.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsSystemHealth", deny_unknown_fields)]
pub struct SystemHealth {
    /// `healthy` or `unhealthy`.
    pub status: String,
    /// The database.
    pub database: DatabaseHealth,
    /// The cache store.
    pub cache: CacheState,
    /// Since the plugin started.
    pub uptime_seconds: u64,
    /// When this was measured.
    pub checked_at: String,
}

/// The database's health.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsDatabaseHealth", deny_unknown_fields)]
pub struct DatabaseHealth {
    /// Whether a query answered.
    pub ok: bool,
    /// How long it took.
    pub latency_ms: f64,
}

/// The cache store's state.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsCacheState", deny_unknown_fields)]
pub struct CacheState {
    /// `memory`, `redis` or `hybrid`.
    pub mode: String,
    /// Whether Redis answers.
    pub redis_connected: bool,
    /// Redis round trip; absent without Redis.
    #[oai(skip_serializing_if_is_none)]
    pub ping_ms: Option<f64>,
}

/// Events of one stream over a window ending now.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct StreamMetrics {
    /// `orders`, `payments` or `fraud`.
    pub stream_type: String,
    /// The window.
    pub time_window: String,
    /// Its start.
    pub since: String,
    /// Events in it.
    pub events: i64,
    /// What an event is.
    pub unit: String,
    /// Events per minute.
    pub per_minute: f64,
    /// Their amount.
    pub amount: f64,
}

/// Headline business figures over a window ending now.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct BusinessMetrics {
    /// The window.
    pub time_window: String,
    /// Its start.
    pub since: String,
    /// Orders.
    pub orders: i64,
    /// Sales.
    pub revenue: f64,
    /// Revenue per order.
    pub average_order_value: f64,
    /// Customers who ordered.
    pub buyers: i64,
    /// Customers whose first order fell in the window.
    pub new_customers: i64,
    /// Sessions that ended in an order, in percent.
    pub conversion_rate_percent: f64,
    /// Alerts open or under investigation now.
    pub open_fraud_alerts: i64,
}

/// An order as recorded.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct OrderReceipt {
    /// Order id.
    pub order_id: i64,
    /// The customer.
    pub customer_id: i64,
    /// Its day (the server's today).
    pub order_date: String,
    /// When it was recorded.
    pub created_at: String,
    /// Region code.
    pub region: String,
    /// Its total.
    pub total: f64,
    /// Its lines.
    pub items: Vec<OrderLine>,
}

/// A line of an order.
#[derive(Object, Debug, Clone)]
#[oai(rename = "AnalyticsOrderLine", deny_unknown_fields)]
pub struct OrderLine {
    /// Product id.
    pub product_id: i64,
    /// Category slug.
    pub category: String,
    /// Units.
    pub quantity: i64,
    /// Price per unit.
    pub unit_price: f64,
    /// `unit_price × quantity`.
    pub line_total: f64,
}

/// A fraud alert after resolution.
#[derive(Object, Debug, Clone)]
#[oai(deny_unknown_fields)]
pub struct ResolvedAlert {
    /// Alert id.
    pub id: i64,
    /// The customer.
    pub customer_id: i64,
    /// `resolved` or `false_positive`.
    pub status: String,
    /// As given.
    pub resolution: String,
    /// As given.
    #[oai(skip_serializing_if_is_none)]
    pub note: Option<String>,
    /// When.
    pub resolved_at: String,
    /// The customer's risk level after it.
    pub customer_risk_level: String,
}
