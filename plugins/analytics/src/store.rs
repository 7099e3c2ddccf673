//! The queries behind every route: real SQL aggregations over the generated data, each
//! scoped to one tenant. Functions take a connection (SQLite or PostgreSQL, one SQL text for
//! both) and run on the blocking pool. Sums are cast to BIGINT and averages to DOUBLE
//! PRECISION: PostgreSQL's NUMERIC results would otherwise need a decimal type.

use jiff::ToSpan;
use jiff::civil::Date;
use serde_json::{Value, json};

use crate::args;
use crate::error::AnalyticsError;
use crate::model::{money, risk_level, round, segment_of};
use crate::sql::{Arg, Conn, Dialect};

/// Reference data loaded once at start: ids by slug.
#[derive(Debug, Clone, Default)]
pub struct Reference {
    /// `(id, slug)` of every tenant.
    pub tenants: Vec<(i64, String)>,
    /// `(id, code)` of every region.
    pub regions: Vec<(i64, String)>,
    /// `(id, slug)` of every category.
    pub categories: Vec<(i64, String)>,
}

impl Reference {
    /// Reads the reference tables.
    pub fn load(conn: &mut dyn Conn) -> Result<Self, AnalyticsError> {
        let mut pairs = |sql: &str| -> Result<Vec<(i64, String)>, AnalyticsError> {
            conn.query(sql, &[])?
                .iter()
                .map(|r| Ok((r.int(0)?, r.text(1)?)))
                .collect()
        };
        Ok(Self {
            tenants: pairs("SELECT id, slug FROM tenants ORDER BY id")?,
            regions: pairs("SELECT id, code FROM regions ORDER BY id")?,
            categories: pairs("SELECT id, slug FROM categories ORDER BY id")?,
        })
    }

    fn find(
        list: &[(i64, String)],
        field: &str,
        what: &str,
        v: &str,
    ) -> Result<i64, AnalyticsError> {
        list.iter()
            .find(|(_, s)| s == v)
            .map(|(id, _)| *id)
            .ok_or_else(|| {
                let known: Vec<&str> = list.iter().map(|(_, s)| s.as_str()).collect();
                AnalyticsError::invalid(
                    field,
                    "unknown_value",
                    format!("unknown {what} `{v}`; known: {}", known.join(", ")),
                )
            })
    }

    /// The region id for an optional filter (`all` or absent: none).
    pub fn region(&self, v: Option<&str>) -> Result<Option<i64>, AnalyticsError> {
        match v {
            None | Some("all") => Ok(None),
            Some(v) => Self::find(&self.regions, "region", "region", v).map(Some),
        }
    }

    /// The category id for an optional filter (`all` or absent: none).
    pub fn category(&self, v: Option<&str>) -> Result<Option<i64>, AnalyticsError> {
        match v {
            None | Some("all") => Ok(None),
            Some(v) => Self::find(&self.categories, "category", "category", v).map(Some),
        }
    }

    /// A region's code.
    pub fn region_code(&self, id: i64) -> &str {
        self.regions
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("?", |(_, s)| s)
    }

    /// A category's slug.
    pub fn category_slug(&self, id: i64) -> &str {
        self.categories
            .iter()
            .find(|(i, _)| *i == id)
            .map_or("?", |(_, s)| s)
    }
}

/// Revenue buckets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Granularity {
    /// One bucket per day.
    Daily,
    /// Weeks from Monday.
    Weekly,
    /// Calendar months.
    Monthly,
}

impl Granularity {
    fn bucket(self, dialect: Dialect, column: &str) -> String {
        match self {
            Self::Daily => column.to_owned(),
            Self::Weekly => dialect.week_start(column),
            Self::Monthly => format!("substr({column}, 1, 7)"),
        }
    }

    /// The name used in keys and answers.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Daily => "daily",
            Self::Weekly => "weekly",
            Self::Monthly => "monthly",
        }
    }
}

/// ` AND column = ?N` for each optional filter that is set, its value appended to `args`
/// (so `N` is its position).
fn and_equal<T: Into<Arg>>(
    filters: impl IntoIterator<Item = (&'static str, Option<T>)>,
    args: &mut Vec<Arg>,
) -> String {
    let mut sql = String::new();
    for (column, v) in filters {
        if let Some(v) = v {
            args.push(v.into());
            sql.push_str(&format!(" AND {column} = ?{}", args.len()));
        }
    }
    sql
}

/// Revenue per period over a date range.
#[allow(clippy::too_many_arguments)]
pub fn revenue(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    granularity: Granularity,
    start: Date,
    end: Date,
    region: Option<i64>,
    category: Option<i64>,
) -> Result<Value, AnalyticsError> {
    let mut args = args![tenant, start.to_string(), end.to_string()].to_vec();
    let extra = and_equal(
        [("region_id", region), ("category_id", category)],
        &mut args,
    );
    // Days first, then buckets of days: an order has one date, so its day's distinct orders
    // add up to the bucket's, and the bucket expression runs once a day rather than once a
    // line.
    let sql = format!(
        "SELECT {b} AS period, CAST(SUM(revenue) AS BIGINT), CAST(SUM(orders) AS BIGINT),
                CAST(SUM(units) AS BIGINT)
         FROM (SELECT order_date, SUM(quantity * unit_price_cents) AS revenue,
                      COUNT(DISTINCT order_id) AS orders, SUM(quantity) AS units
               FROM order_lines
               WHERE tenant_id = ?1 AND order_date BETWEEN ?2 AND ?3{extra}
               GROUP BY order_date) AS days
         GROUP BY period ORDER BY period",
        b = granularity.bucket(conn.dialect(), "order_date")
    );
    let mut series = Vec::new();
    let (mut revenue, mut orders, mut units) = (0i64, 0i64, 0i64);
    for r in conn.query(&sql, &args)? {
        let (period, rev, ord, un) = (r.text(0)?, r.int(1)?, r.int(2)?, r.int(3)?);
        revenue += rev;
        orders += ord;
        units += un;
        series.push(json!({
            "period": period,
            "revenue": money(rev),
            "orders": ord,
            "units": un,
            "average_order_value": if ord > 0 { round(money(rev) / ord as f64, 2) } else { 0.0 },
        }));
    }
    Ok(json!({
        "granularity": granularity.as_str(),
        "start_date": start.to_string(),
        "end_date": end.to_string(),
        "region": region.map_or("all", |r| reference.region_code(r)),
        "category": category.map_or("all", |c| reference.category_slug(c)),
        "currency": "USD",
        "totals": {
            "revenue": money(revenue),
            "orders": orders,
            "units": units,
            "average_order_value": if orders > 0 { round(money(revenue) / orders as f64, 2) } else { 0.0 },
        },
        "series": series,
    }))
}

/// Customer segmentation of one kind, with optional churn predictions.
pub fn segments(
    conn: &mut dyn Conn,
    tenant: i64,
    segment_type: &str,
    predictions: bool,
    today: Date,
) -> Result<Value, AnalyticsError> {
    let d = conn.dialect();
    let since_last = d.days_between("CAST(?2 AS TEXT)", "last_order_date");
    let group = match segment_type {
        "rfm" => "segment".to_owned(),
        "value" => "CASE WHEN lifetime_value_cents >= 200000 THEN 'high_value'
                         WHEN lifetime_value_cents >= 50000 THEN 'mid_value'
                         WHEN lifetime_value_cents > 0 THEN 'low_value'
                         ELSE 'no_purchase' END"
            .to_owned(),
        "behavior" => "CASE WHEN orders_count >= 10 THEN 'frequent'
                            WHEN orders_count >= 2 THEN 'repeat'
                            WHEN orders_count = 1 THEN 'one_time'
                            ELSE 'browser' END"
            .to_owned(),
        _ => format!(
            "CASE WHEN last_order_date IS NULL THEN 'never_ordered'
                  WHEN {since_last} <= 30 THEN 'active'
                  WHEN {since_last} <= 120 THEN 'lapsing'
                  ELSE 'churned' END"
        ),
    };
    // The parameter is named in every query (PostgreSQL types a parameter from its use, and
    // refuses one that is never used).
    let sql = format!(
        "SELECT {group} AS seg, COUNT(*), CAST(SUM(lifetime_value_cents) AS BIGINT),
                CAST(AVG(orders_count) AS DOUBLE PRECISION),
                CAST(AVG(CASE WHEN last_order_date IS NULL OR {since_last} > 90
                              THEN 1.0 ELSE 0.0 END) AS DOUBLE PRECISION)
         FROM customers WHERE tenant_id = ?1 GROUP BY seg ORDER BY 2 DESC, seg"
    );
    let rows = conn
        .query(&sql, args![tenant, today.to_string()])?
        .iter()
        .map(|r| Ok((r.text(0)?, r.int(1)?, r.int(2)?, r.real(3)?, r.real(4)?)))
        .collect::<Result<Vec<_>, AnalyticsError>>()?;
    let total: i64 = rows.iter().map(|r| r.1).sum();
    let segments: Vec<Value> = rows
        .iter()
        .map(|(seg, n, value, avg_orders, churn)| {
            let mut v = json!({
                "segment": seg,
                "customers": n,
                "share_percent": round(100.0 * *n as f64 / total.max(1) as f64, 2),
                "revenue": money(*value),
                "average_lifetime_value": round(money(*value) / (*n).max(1) as f64, 2),
                "average_orders": round(*avg_orders, 2),
            });
            if predictions {
                v["predicted_churn_rate"] = json!(round(*churn, 4));
            }
            v
        })
        .collect();
    Ok(json!({
        "segment_type": segment_type,
        "include_predictions": predictions,
        "as_of": today.to_string(),
        "total_customers": total,
        "segments": segments,
    }))
}

/// Days a `time_range` (`7d`, `30d`, `90d`, `1y`) covers.
pub fn range_days(time_range: &str) -> i64 {
    match time_range {
        "7d" => 7,
        "30d" => 30,
        "90d" => 90,
        _ => 365,
    }
}

/// Top products over a window, with growth against the window before.
#[allow(clippy::too_many_arguments)]
pub fn product_performance(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    category: Option<i64>,
    sort_by: &str,
    time_range: &str,
    recommendations: bool,
    today: Date,
) -> Result<Value, AnalyticsError> {
    let days = range_days(time_range);
    let current = today.checked_sub((days - 1).days()).unwrap_or(today);
    let previous = current.checked_sub(days.days()).unwrap_or(current);
    let (p, c, t) = (previous.to_string(), current.to_string(), today.to_string());
    let mut args = args![tenant, p, c, t].to_vec();
    let extra = and_equal([("category_id", category)], &mut args);
    let order = match sort_by {
        "units" => "units DESC",
        "growth" => "growth DESC",
        _ => "revenue DESC",
    };
    let sql = format!(
        "SELECT l.product_id, p.name, p.category_id, revenue, units, prev_revenue,
                CASE WHEN prev_revenue > 0
                     THEN CAST(revenue - prev_revenue AS DOUBLE PRECISION) / prev_revenue
                     ELSE NULL END AS growth
         FROM (SELECT product_id,
                      CAST(SUM(CASE WHEN order_date >= ?3 THEN quantity * unit_price_cents ELSE 0 END) AS BIGINT) AS revenue,
                      CAST(SUM(CASE WHEN order_date >= ?3 THEN quantity ELSE 0 END) AS BIGINT) AS units,
                      CAST(SUM(CASE WHEN order_date < ?3 THEN quantity * unit_price_cents ELSE 0 END) AS BIGINT) AS prev_revenue
               FROM order_lines
               WHERE tenant_id = ?1 AND order_date BETWEEN ?2 AND ?4{extra}
               GROUP BY product_id) AS l
         JOIN products p ON p.id = l.product_id
         ORDER BY {order} NULLS LAST, l.product_id LIMIT 50"
    );
    let mut products = Vec::new();
    for r in conn.query(&sql, &args)? {
        let (id, name, cat, rev, units, prev, growth) = (
            r.int(0)?,
            r.text(1)?,
            r.int(2)?,
            r.int(3)?,
            r.int(4)?,
            r.int(5)?,
            r.opt_real(6)?,
        );
        let mut v = json!({
            "product_id": id,
            "name": name,
            "category": reference.category_slug(cat),
            "revenue": money(rev),
            "units": units,
            "previous_revenue": money(prev),
            "growth_percent": growth.map(|g| round(g * 100.0, 2)),
        });
        if recommendations {
            let advice = match growth {
                Some(g) if g > 0.25 => "growing fast: raise stock and feature it",
                Some(g) if g < -0.25 => "declining: review price or promote it",
                None => "new in this window: watch its first weeks",
                _ => "steady: keep as is",
            };
            v["recommendation"] = json!(advice);
        }
        products.push(v);
    }
    Ok(json!({
        "category": category.map_or("all", |c| reference.category_slug(c)),
        "sort_by": sort_by,
        "time_range": time_range,
        "window": { "start_date": current.to_string(), "end_date": today.to_string() },
        "include_recommendations": recommendations,
        "products": products,
    }))
}

/// Cohorts of customers by their first order's period, and what each cohort did after.
pub fn cohorts(
    conn: &mut dyn Conn,
    tenant: i64,
    cohort_type: &str,
    start: Date,
    end: Date,
    metric: &str,
) -> Result<Value, AnalyticsError> {
    let g = if cohort_type == "weekly" {
        Granularity::Weekly
    } else {
        Granularity::Monthly
    };
    let sql = format!(
        "WITH cohort AS (
             SELECT id AS customer_id, {cb} AS c FROM customers
             WHERE tenant_id = ?1 AND first_order_date BETWEEN ?2 AND ?3)
         SELECT cohort.c, {pb} AS p, COUNT(DISTINCT o.customer_id), CAST(SUM(o.total_cents) AS BIGINT)
         FROM orders o JOIN cohort ON cohort.customer_id = o.customer_id
         WHERE o.tenant_id = ?1 AND o.order_date >= ?2
         GROUP BY cohort.c, p ORDER BY cohort.c, p",
        cb = g.bucket(conn.dialect(), "first_order_date"),
        pb = g.bucket(conn.dialect(), "o.order_date"),
    );
    let rows = conn.query(&sql, args![tenant, start.to_string(), end.to_string()])?;
    let offset = |c: &str, p: &str| -> i64 {
        if g == Granularity::Monthly {
            let ym = |s: &str| {
                s.get(..4).and_then(|y| y.parse::<i64>().ok()).unwrap_or(0) * 12
                    + s.get(5..7).and_then(|m| m.parse::<i64>().ok()).unwrap_or(0)
            };
            ym(p) - ym(c)
        } else {
            match (c.parse::<Date>(), p.parse::<Date>()) {
                (Ok(c), Ok(p)) => (p - c).get_days() as i64 / 7,
                _ => 0,
            }
        }
    };
    let mut cohorts: Vec<Value> = Vec::new();
    let mut current: Option<(String, i64, Vec<Value>)> = None;
    for r in rows {
        let (c, p, active, value) = (r.text(0)?, r.text(1)?, r.int(2)?, r.int(3)?);
        if current.as_ref().is_none_or(|(name, _, _)| *name != c) {
            if let Some((name, size, periods)) = current.take() {
                cohorts.push(json!({ "cohort": name, "customers": size, "periods": periods }));
            }
            current = Some((c.clone(), active, Vec::new()));
        }
        let (_, size, periods) = current.as_mut().expect("set above");
        let v = if metric == "revenue" {
            json!({ "offset": offset(&c, &p), "period": p, "revenue": money(value) })
        } else {
            json!({
                "offset": offset(&c, &p),
                "period": p,
                "active_customers": active,
                "retention_percent": round(100.0 * active as f64 / (*size).max(1) as f64, 2),
            })
        };
        periods.push(v);
    }
    if let Some((name, size, periods)) = current.take() {
        cohorts.push(json!({ "cohort": name, "customers": size, "periods": periods }));
    }
    Ok(json!({
        "cohort_type": cohort_type,
        "metric": metric,
        "start_date": start.to_string(),
        "end_date": end.to_string(),
        "cohorts": cohorts,
    }))
}

/// The purchase funnel (view → cart → checkout → order) over a date range.
pub fn funnel(
    conn: &mut dyn Conn,
    tenant: i64,
    funnel_type: &str,
    start: Date,
    end: Date,
    segment: Option<&str>,
) -> Result<Value, AnalyticsError> {
    let join = if segment.is_some() {
        " JOIN customers c ON c.id = s.customer_id AND c.segment = ?4"
    } else {
        ""
    };
    let reached = |stage: u8| format!("COUNT(*) FILTER (WHERE s.stage >= {stage})");
    let sql = format!(
        "SELECT {}, {}, {}, {}
         FROM sessions s{join} WHERE s.tenant_id = ?1 AND s.day BETWEEN ?2 AND ?3",
        reached(1),
        reached(2),
        reached(3),
        reached(4),
    );
    let (s, e) = (start.to_string(), end.to_string());
    let mut args = args![tenant, &s, &e].to_vec();
    if let Some(v) = segment {
        args.push(v.into());
    }
    let r = conn.query_one(&sql, &args)?;
    let counts: [i64; 4] = [r.int(0)?, r.int(1)?, r.int(2)?, r.int(3)?];
    let names = ["view", "cart", "checkout", "order"];
    let from = if funnel_type == "checkout" { 1 } else { 0 };
    let first = counts[from].max(1) as f64;
    let mut steps = Vec::new();
    for i in from..4 {
        let prev = if i == from { counts[i] } else { counts[i - 1] };
        steps.push(json!({
            "step": names[i],
            "sessions": counts[i],
            "conversion_from_previous_percent": round(100.0 * counts[i] as f64 / prev.max(1) as f64, 2),
            "conversion_overall_percent": round(100.0 * counts[i] as f64 / first, 2),
            "drop_off": prev - counts[i],
        }));
    }
    Ok(json!({
        "funnel_type": funnel_type,
        "start_date": s,
        "end_date": e,
        "segment": segment.unwrap_or("all"),
        "steps": steps,
        "overall_conversion_percent": round(100.0 * counts[3] as f64 / first, 2),
    }))
}

/// A page request: by offset (page, size) or after a keyset cursor.
#[derive(Debug, Clone)]
pub enum PageAt {
    /// 1-based page.
    Page(u64),
    /// After this `(sort value, id)`.
    After(Option<i64>, i64),
}

/// Sort keys of the customer list: column, descending?
pub fn customer_sort(dialect: Dialect, sort_by: &str) -> (String, bool) {
    match sort_by {
        "lifetime_value" => ("lifetime_value_cents".into(), true),
        "orders" => ("orders_count".into(), true),
        // Days since 1970: the same number in both engines, so cursors are portable.
        "recent" => (dialect.epoch_day("last_order_date"), true),
        _ => ("id".into(), false),
    }
}

/// A page of customers: the items, how many match in all, and the last item's keyset
/// position (sort value, id).
pub type CustomerPage = (Vec<Value>, u64, Option<(Option<i64>, i64)>);

/// One page of customers, and the total matching.
#[allow(clippy::too_many_arguments)]
pub fn customers(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    segment: Option<&str>,
    risk: Option<&str>,
    sort_by: &str,
    at: &PageAt,
    size: u64,
) -> Result<CustomerPage, AnalyticsError> {
    let (col, desc) = customer_sort(conn.dialect(), sort_by);
    let mut args = args![tenant].to_vec();
    let where_ = format!(
        "tenant_id = ?1{}",
        and_equal([("segment", segment), ("risk_level", risk)], &mut args)
    );
    let total = conn
        .query_one(
            &format!("SELECT COUNT(*) FROM customers WHERE {where_}"),
            &args,
        )?
        .int(0)? as u64;
    // NULL sort values (never ordered) sort last, as -1 in the keyset.
    let sort_expr = format!("COALESCE({col}, -1)");
    let dir = if desc { "DESC" } else { "ASC" };
    let mut sql = format!(
        "SELECT id, name, region_id, segment, risk_level, lifetime_value_cents, orders_count,
                last_order_date, {sort_expr} FROM customers WHERE {where_}"
    );
    match at {
        PageAt::After(value, id) if col != "id" => {
            let cmp = if desc { "<" } else { ">" };
            args.push(Arg::Int(value.unwrap_or(-1)));
            args.push(Arg::Int(*id));
            let n = args.len();
            sql.push_str(&format!(" AND ({sort_expr}, id) {cmp} (?{}, ?{n})", n - 1));
        }
        PageAt::After(_, id) => {
            args.push(Arg::Int(*id));
            sql.push_str(&format!(" AND id > ?{}", args.len()));
        }
        PageAt::Page(_) => {}
    }
    let id_dir = if desc { "DESC" } else { "ASC" };
    args.push(Arg::Int(size as i64));
    sql.push_str(&format!(
        " ORDER BY {sort_expr} {dir}, id {id_dir} LIMIT ?{}",
        args.len()
    ));
    if let PageAt::Page(p) = at {
        args.push(Arg::Int(((p - 1) * size) as i64));
        sql.push_str(&format!(" OFFSET ?{}", args.len()));
    }
    let mut items = Vec::new();
    let mut last = None;
    for r in conn.query(&sql, &args)? {
        let (id, name, region, seg, risk, value, orders, last_order, sort) = (
            r.int(0)?,
            r.text(1)?,
            r.int(2)?,
            r.text(3)?,
            r.text(4)?,
            r.int(5)?,
            r.int(6)?,
            r.opt_text(7)?,
            r.int(8)?,
        );
        last = Some((if col == "id" { None } else { Some(sort) }, id));
        items.push(json!({
            "id": id,
            "name": name,
            "region": reference.region_code(region),
            "segment": seg,
            "risk_level": risk,
            "lifetime_value": money(value),
            "orders_count": orders,
            "last_order_date": last_order,
        }));
    }
    Ok((items, total, last))
}

/// Masks an e-mail address: the answer is cached, the address is not.
fn mask_email(email: &str) -> String {
    match email.split_once('@') {
        Some((user, domain)) => {
            format!("{}***@{domain}", user.chars().next().unwrap_or('*'))
        }
        None => "***".into(),
    }
}

/// One customer with recent orders, or `None` when the tenant has no such customer.
pub fn customer(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    id: i64,
) -> Result<Option<Value>, AnalyticsError> {
    let Some(r) = conn.query_opt(
        "SELECT id, name, email, region_id, signup_date, segment, risk_level,
                lifetime_value_cents, orders_count, first_order_date, last_order_date
         FROM customers WHERE tenant_id = ?1 AND id = ?2",
        args![tenant, id],
    )?
    else {
        return Ok(None);
    };
    let mut customer = json!({
        "id": r.int(0)?,
        "name": r.text(1)?,
        "email": mask_email(&r.text(2)?),
        "region": reference.region_code(r.int(3)?),
        "signup_date": r.text(4)?,
        "segment": r.text(5)?,
        "risk_level": r.text(6)?,
        "lifetime_value": money(r.int(7)?),
        "orders_count": r.int(8)?,
        "first_order_date": r.opt_text(9)?,
        "last_order_date": r.opt_text(10)?,
    });
    let recent = conn
        .query(
            "SELECT id, order_date, total_cents FROM orders WHERE customer_id = ?1
             ORDER BY order_date DESC, id DESC LIMIT 10",
            args![id],
        )?
        .iter()
        .map(|r| {
            Ok(json!({
                "order_id": r.int(0)?,
                "order_date": r.text(1)?,
                "total": money(r.int(2)?),
            }))
        })
        .collect::<Result<Vec<Value>, AnalyticsError>>()?;
    let open_alerts = conn
        .query_one(
            "SELECT COUNT(*) FROM fraud_alerts WHERE customer_id = ?1 AND status IN ('open', 'investigating')",
            args![id],
        )?
        .int(0)?;
    customer["recent_orders"] = json!(recent);
    customer["open_fraud_alerts"] = json!(open_alerts);
    Ok(Some(customer))
}

/// Recommendations for one customer, or `None` when the tenant has no such customer.
pub fn recommendations(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    id: i64,
    kind: &str,
    today: Date,
) -> Result<Option<Value>, AnalyticsError> {
    let Some(r) = conn.query_opt(
        "SELECT segment, last_order_date, orders_count FROM customers WHERE tenant_id = ?1 AND id = ?2",
        args![tenant, id],
    )?
    else {
        return Ok(None);
    };
    let (segment, last, orders) = (r.text(0)?, r.opt_text(1)?, r.int(2)?);
    let items: Vec<Value> = match kind {
        "products" => {
            // Best sellers of the last 90 days in the customer's favourite categories that
            // the customer has not bought.
            let since = today.checked_sub(89.days()).unwrap_or(today).to_string();
            conn.query(
                "WITH fav AS (
                     SELECT category_id FROM order_lines l JOIN orders o ON o.id = l.order_id
                     WHERE o.customer_id = ?2 GROUP BY category_id ORDER BY SUM(quantity) DESC LIMIT 3),
                 bought AS (
                     SELECT DISTINCT product_id FROM order_lines l JOIN orders o ON o.id = l.order_id
                     WHERE o.customer_id = ?2)
                 SELECT l.product_id, p.name, p.category_id, p.price_cents, CAST(SUM(l.quantity) AS BIGINT) AS units
                 FROM order_lines l JOIN products p ON p.id = l.product_id
                 WHERE l.tenant_id = ?1 AND l.order_date >= ?3
                   AND (NOT EXISTS (SELECT 1 FROM fav) OR l.category_id IN (SELECT category_id FROM fav))
                   AND l.product_id NOT IN (SELECT product_id FROM bought)
                 GROUP BY l.product_id, p.name, p.category_id, p.price_cents
                 ORDER BY units DESC, l.product_id LIMIT 10",
                args![tenant, id, since],
            )?
            .iter()
            .map(|r| {
                Ok(json!({
                    "product_id": r.int(0)?,
                    "name": r.text(1)?,
                    "category": reference.category_slug(r.int(2)?),
                    "price": money(r.int(3)?),
                    "units_sold_90d": r.int(4)?,
                }))
            })
            .collect::<Result<_, AnalyticsError>>()?
        }
        "offers" => {
            let offer = match segment.as_str() {
                "champions" => ("early_access", "Early access to new arrivals", 0),
                "loyal" => ("loyalty_points", "Double loyalty points this month", 0),
                "at_risk" | "hibernating" => ("win_back", "15% off the next order", 15),
                "new" | "prospect" => ("welcome", "Free shipping on the second order", 0),
                _ => ("bundle", "10% off bundles", 10),
            };
            vec![json!({ "offer": offer.0, "description": offer.1, "discount_percent": offer.2 })]
        }
        _ => {
            let days = last
                .as_deref()
                .and_then(|d| d.parse::<Date>().ok())
                .map(|d| (today - d).get_days());
            let (risk, action) = match days {
                None => ("unknown", "send the onboarding series"),
                Some(d) if d > 120 => ("high", "personal win-back offer and survey"),
                Some(d) if d > 60 => ("medium", "reminder with recommendations"),
                _ => ("low", "no action needed"),
            };
            vec![json!({
                "churn_risk": risk,
                "days_since_last_order": days,
                "orders_count": orders,
                "action": action,
            })]
        }
    };
    Ok(Some(json!({
        "customer_id": id,
        "type": kind,
        "segment": segment,
        "recommendations": items,
    })))
}

/// One page of fraud alerts, newest first, and the total matching.
#[allow(clippy::too_many_arguments)]
pub fn fraud_alerts(
    conn: &mut dyn Conn,
    tenant: i64,
    status: Option<&str>,
    priority: Option<&str>,
    alert_type: Option<&str>,
    page: u64,
    size: u64,
) -> Result<(Vec<Value>, u64), AnalyticsError> {
    let mut args = args![tenant].to_vec();
    let where_ = format!(
        "tenant_id = ?1{}",
        and_equal(
            [
                ("status", status),
                ("priority", priority),
                ("alert_type", alert_type),
            ],
            &mut args
        )
    );
    let total = conn
        .query_one(
            &format!("SELECT COUNT(*) FROM fraud_alerts WHERE {where_}"),
            &args,
        )?
        .int(0)?;
    args.push(Arg::Int(size as i64));
    args.push(Arg::Int(((page - 1) * size) as i64));
    let n = args.len();
    let items = conn
        .query(
            &format!(
                "SELECT id, customer_id, order_id, alert_type, priority, status, score, amount_cents,
                        created_at, resolved_at, resolution
                 FROM fraud_alerts WHERE {where_} ORDER BY created_at DESC, id DESC
                 LIMIT ?{} OFFSET ?{n}",
                n - 1
            ),
            &args,
        )?
        .iter()
        .map(|r| {
            Ok(json!({
                "id": r.int(0)?,
                "customer_id": r.int(1)?,
                "order_id": r.opt_int(2)?,
                "alert_type": r.text(3)?,
                "priority": r.text(4)?,
                "status": r.text(5)?,
                "score": r.real(6)?,
                "amount": money(r.int(7)?),
                "created_at": r.text(8)?,
                "resolved_at": r.opt_text(9)?,
                "resolution": r.opt_text(10)?,
            }))
        })
        .collect::<Result<_, AnalyticsError>>()?;
    Ok((items, total as u64))
}

/// The fraud dashboard over a window ending now.
pub fn fraud_dashboard(
    conn: &mut dyn Conn,
    tenant: i64,
    time_range: &str,
    since: &str,
) -> Result<Value, AnalyticsError> {
    let mut group = |col: &str| -> Result<Value, AnalyticsError> {
        let map = conn
            .query(
                &format!(
                    "SELECT {col}, COUNT(*) FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2
                     GROUP BY {col} ORDER BY {col}"
                ),
                args![tenant, since],
            )?
            .iter()
            .map(|r| Ok((r.text(0)?, json!(r.int(1)?))))
            .collect::<Result<serde_json::Map<String, Value>, AnalyticsError>>()?;
        Ok(Value::Object(map))
    };
    let (by_status, by_priority, by_type) =
        (group("status")?, group("priority")?, group("alert_type")?);
    let r = conn.query_one(
        "SELECT COUNT(*), CAST(AVG(score) AS DOUBLE PRECISION),
                CAST(SUM(CASE WHEN status IN ('open', 'investigating') THEN amount_cents END) AS BIGINT),
                COUNT(*) FILTER (WHERE status IN ('open', 'investigating'))
         FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2",
        args![tenant, since],
    )?;
    let (total, avg_score, at_risk, open) = (r.int(0)?, r.opt_real(1)?, r.opt_int(2)?, r.int(3)?);
    let orders = conn
        .query_one(
            "SELECT COUNT(*) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
            args![tenant, since],
        )?
        .int(0)?;
    let top = conn
        .query(
            "SELECT customer_id, COUNT(*), CAST(SUM(amount_cents) AS BIGINT) FROM fraud_alerts
             WHERE tenant_id = ?1 AND created_at >= ?2 GROUP BY customer_id
             ORDER BY COUNT(*) DESC, SUM(amount_cents) DESC, customer_id LIMIT 5",
            args![tenant, since],
        )?
        .iter()
        .map(|r| {
            Ok(json!({
                "customer_id": r.int(0)?,
                "alerts": r.int(1)?,
                "amount": money(r.int(2)?),
            }))
        })
        .collect::<Result<Vec<Value>, AnalyticsError>>()?;
    Ok(json!({
        "time_range": time_range,
        "since": since,
        "total_alerts": total,
        "open_alerts": open,
        "alert_rate_percent": round(100.0 * total as f64 / orders.max(1) as f64, 3),
        "average_score": avg_score.map(|s| round(s, 3)),
        "amount_at_risk": money(at_risk.unwrap_or(0)),
        "by_status": by_status,
        "by_priority": by_priority,
        "by_type": by_type,
        "top_customers": top,
    }))
}

/// Counts for a live stream over the window since `since`.
pub fn stream_metrics(
    conn: &mut dyn Conn,
    tenant: i64,
    stream_type: &str,
    time_window: &str,
    since: &str,
    minutes: f64,
) -> Result<Value, AnalyticsError> {
    let (sql, unit) = match stream_type {
        "payments" => (
            "SELECT COUNT(*), CAST(COALESCE(SUM(total_cents), 0) AS BIGINT) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
            "payments",
        ),
        "fraud" => (
            "SELECT COUNT(*), CAST(COALESCE(SUM(amount_cents), 0) AS BIGINT) FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2",
            "alerts",
        ),
        _ => (
            "SELECT COUNT(*), CAST(COALESCE(SUM(total_cents), 0) AS BIGINT) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
            "orders",
        ),
    };
    let r = conn.query_one(sql, args![tenant, since])?;
    let (count, amount) = (r.int(0)?, r.int(1)?);
    Ok(json!({
        "stream_type": stream_type,
        "time_window": time_window,
        "since": since,
        "events": count,
        "unit": unit,
        "per_minute": round(count as f64 / minutes, 3),
        "amount": money(amount),
    }))
}

/// Headline business figures over the window since `since` (a timestamp) / `since_day`.
pub fn business_metrics(
    conn: &mut dyn Conn,
    tenant: i64,
    time_window: &str,
    since: &str,
    since_day: &str,
) -> Result<Value, AnalyticsError> {
    let r = conn.query_one(
        "SELECT COUNT(*), CAST(COALESCE(SUM(total_cents), 0) AS BIGINT), COUNT(DISTINCT customer_id)
         FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
        args![tenant, since],
    )?;
    let (orders, revenue, buyers) = (r.int(0)?, r.int(1)?, r.int(2)?);
    let new_customers = conn
        .query_one(
            "SELECT COUNT(*) FROM customers WHERE tenant_id = ?1 AND first_order_date >= ?2",
            args![tenant, since_day],
        )?
        .int(0)?;
    let r = conn.query_one(
        "SELECT COUNT(*), COUNT(*) FILTER (WHERE stage = 4) FROM sessions
         WHERE tenant_id = ?1 AND day >= ?2",
        args![tenant, since_day],
    )?;
    let (sessions, ordered) = (r.int(0)?, r.int(1)?);
    let open_alerts = conn
        .query_one(
            "SELECT COUNT(*) FROM fraud_alerts WHERE tenant_id = ?1 AND status IN ('open', 'investigating')",
            args![tenant],
        )?
        .int(0)?;
    Ok(json!({
        "time_window": time_window,
        "since": since,
        "orders": orders,
        "revenue": money(revenue),
        "average_order_value": if orders > 0 { round(money(revenue) / orders as f64, 2) } else { 0.0 },
        "buyers": buyers,
        "new_customers": new_customers,
        "conversion_rate_percent": round(100.0 * ordered as f64 / sessions.max(1) as f64, 2),
        "open_fraud_alerts": open_alerts,
    }))
}

/// A line of a new order.
#[derive(Debug, Clone)]
pub struct NewLine {
    /// Product id.
    pub product_id: i64,
    /// Units.
    pub quantity: i64,
    /// Price per unit in cents; `None` takes the product's price.
    pub unit_price_cents: Option<i64>,
}

/// What an order write made, for the answer and the event.
#[derive(Debug, Clone)]
pub struct CreatedOrder {
    /// The answer body.
    pub body: Value,
    /// Order id.
    pub order_id: i64,
    /// Customer id.
    pub customer_id: i64,
    /// Region code.
    pub region: String,
    /// Category slugs of its lines.
    pub categories: Vec<String>,
    /// The customer's segment before the order, and after.
    pub segments: (String, String),
}

/// Records an order in one transaction: the order, its lines, its funnel session and the
/// customer's totals and segment. Checks everything before writing anything.
#[allow(clippy::too_many_arguments)]
pub fn create_order(
    conn: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    customer_id: i64,
    region: Option<&str>,
    lines: &[NewLine],
    today: Date,
    created_at: &str,
) -> Result<CreatedOrder, AnalyticsError> {
    conn.transaction(|tx| {
        create_order_in(
            tx,
            reference,
            tenant,
            customer_id,
            region,
            lines,
            today,
            created_at,
        )
    })
}

#[allow(clippy::too_many_arguments)]
fn create_order_in(
    tx: &mut dyn Conn,
    reference: &Reference,
    tenant: i64,
    customer_id: i64,
    region: Option<&str>,
    lines: &[NewLine],
    today: Date,
    created_at: &str,
) -> Result<CreatedOrder, AnalyticsError> {
    // Two orders of one customer must not both add to the totals read here.
    let lock = tx.dialect().lock_rows();
    let customer = tx.query_opt(
        &format!(
            "SELECT region_id, signup_date, orders_count, lifetime_value_cents, first_order_date,
                    segment
             FROM customers WHERE tenant_id = ?1 AND id = ?2{lock}"
        ),
        args![tenant, customer_id],
    )?;
    let Some(r) = customer else {
        return Err(AnalyticsError::invalid(
            "customer_id",
            "unknown_customer",
            format!("no customer {customer_id} in this tenant"),
        ));
    };
    let (home_region, signup, count, value, first, old_segment) = (
        r.int(0)?,
        r.text(1)?,
        r.int(2)?,
        r.int(3)?,
        r.opt_text(4)?,
        r.text(5)?,
    );
    let region_id = match region {
        None => home_region,
        Some(r) => reference.region(Some(r))?.unwrap_or(home_region),
    };
    let mut priced = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let product = tx.query_opt(
            "SELECT category_id, price_cents FROM products WHERE tenant_id = ?1 AND id = ?2",
            args![tenant, l.product_id],
        )?;
        let Some(product) = product else {
            return Err(AnalyticsError::invalid(
                &format!("items[{i}].product_id"),
                "unknown_product",
                format!("no product {} in this tenant", l.product_id),
            ));
        };
        priced.push((
            l.product_id,
            product.int(0)?,
            l.unit_price_cents.map_or_else(|| product.int(1), Ok)?,
            l.quantity,
        ));
    }
    let total: i64 = priced.iter().map(|(_, _, p, q)| p * q).sum();
    let day = today.to_string();
    let order_id = tx
        .query_one(
            "INSERT INTO orders (tenant_id, customer_id, region_id, order_date, created_at, total_cents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING id",
            args![tenant, customer_id, region_id, &day, created_at, total],
        )?
        .int(0)?;
    let mut items = Vec::new();
    let mut categories = Vec::new();
    for (pid, cat, price, q) in &priced {
        tx.execute(
            "INSERT INTO order_lines (order_id, tenant_id, product_id, category_id, region_id,
                 order_date, quantity, unit_price_cents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            args![order_id, tenant, *pid, *cat, region_id, &day, *q, *price],
        )?;
        let slug = reference.category_slug(*cat).to_owned();
        if !categories.contains(&slug) {
            categories.push(slug.clone());
        }
        items.push(json!({
            "product_id": pid,
            "category": slug,
            "quantity": q,
            "unit_price": money(*price),
            "line_total": money(price * q),
        }));
    }
    tx.execute(
        "INSERT INTO sessions (tenant_id, customer_id, day, stage) VALUES (?1, ?2, ?3, 4)",
        args![tenant, customer_id, &day],
    )?;
    let first = first
        .as_deref()
        .and_then(|d| d.parse::<Date>().ok())
        .unwrap_or(today);
    let signup = signup.parse::<Date>().unwrap_or(today);
    let segment = segment_of(
        count as u32 + 1,
        value + total,
        Some(first),
        Some(today),
        signup,
        today,
    );
    tx.execute(
        "UPDATE customers SET orders_count = orders_count + 1,
             lifetime_value_cents = lifetime_value_cents + ?2,
             first_order_date = COALESCE(first_order_date, ?3), last_order_date = ?3, segment = ?4
         WHERE id = ?1",
        args![customer_id, total, &day, segment],
    )?;
    let region = reference.region_code(region_id).to_owned();
    Ok(CreatedOrder {
        body: json!({
            "order_id": order_id,
            "customer_id": customer_id,
            "order_date": day,
            "created_at": created_at,
            "region": region,
            "total": money(total),
            "items": items,
        }),
        order_id,
        customer_id,
        region,
        categories,
        segments: (old_segment, segment.to_owned()),
    })
}

/// What resolving an alert changed.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The alert after the change.
    pub body: Value,
    /// The alert's customer.
    pub customer_id: i64,
    /// Whether the customer's risk level changed.
    pub risk_changed: bool,
}

/// Resolves an open alert and recomputes its customer's risk level, in one transaction.
pub fn resolve_alert(
    conn: &mut dyn Conn,
    tenant: i64,
    alert_id: i64,
    resolution: &str,
    note: Option<&str>,
    at: &str,
) -> Result<Resolved, AnalyticsError> {
    conn.transaction(|tx| resolve_alert_in(tx, tenant, alert_id, resolution, note, at))
}

fn resolve_alert_in(
    tx: &mut dyn Conn,
    tenant: i64,
    alert_id: i64,
    resolution: &str,
    note: Option<&str>,
    at: &str,
) -> Result<Resolved, AnalyticsError> {
    let lock = tx.dialect().lock_rows();
    let row = tx.query_opt(
        &format!(
            "SELECT customer_id, status FROM fraud_alerts WHERE tenant_id = ?1 AND id = ?2{lock}"
        ),
        args![tenant, alert_id],
    )?;
    let Some(row) = row else {
        return Err(AnalyticsError::not_found(
            "alert_id",
            format!("no fraud alert {alert_id} in this tenant"),
        ));
    };
    let (customer_id, status) = (row.int(0)?, row.text(1)?);
    if status == "resolved" || status == "false_positive" {
        return Err(AnalyticsError::conflict(
            "already_resolved",
            format!("fraud alert {alert_id} is already closed ({status})"),
        ));
    }
    let new_status = if resolution == "false_positive" {
        "false_positive"
    } else {
        "resolved"
    };
    tx.execute(
        "UPDATE fraud_alerts SET status = ?2, resolved_at = ?3, resolution = ?4, note = ?5 WHERE id = ?1",
        args![alert_id, new_status, at, resolution, note],
    )?;
    let open = tx
        .query_one(
            "SELECT COUNT(*) FROM fraud_alerts WHERE customer_id = ?1 AND status IN ('open', 'investigating')",
            args![customer_id],
        )?
        .int(0)?;
    let new_risk = risk_level(open as u32);
    let changed = tx.execute(
        "UPDATE customers SET risk_level = ?2 WHERE id = ?1 AND risk_level <> ?2",
        args![customer_id, new_risk],
    )? > 0;
    Ok(Resolved {
        body: json!({
            "id": alert_id,
            "customer_id": customer_id,
            "status": new_status,
            "resolution": resolution,
            "note": note,
            "resolved_at": at,
            "customer_risk_level": new_risk,
        }),
        customer_id,
        risk_changed: changed,
    })
}
