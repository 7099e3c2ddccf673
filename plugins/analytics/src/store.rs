//! The queries behind every route: real SQL aggregations over the generated data, each
//! scoped to one tenant. Functions take a connection and run on the blocking pool.

use jiff::ToSpan;
use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, ToSql, params, params_from_iter};
use serde_json::{Value, json};

use crate::error::AnalyticsError;
use crate::model::{money, risk_level, round, segment_of};

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
    pub fn load(conn: &Connection) -> Result<Self, AnalyticsError> {
        let pairs = |sql: &str| -> Result<Vec<(i64, String)>, AnalyticsError> {
            let mut st = conn.prepare(sql)?;
            let rows = st.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?;
            Ok(rows.collect::<Result<_, _>>()?)
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
    fn bucket(self, column: &str) -> String {
        match self {
            Self::Daily => column.to_owned(),
            // SQLite's `weekday 1` moves forward to the next Monday (or stays): back 7 days first.
            Self::Weekly => format!("date({column}, '-6 days', 'weekday 1')"),
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

fn filters(region: Option<i64>, category: Option<i64>) -> (String, Vec<i64>) {
    let mut sql = String::new();
    let mut args = Vec::new();
    if let Some(r) = region {
        sql.push_str(" AND region_id = ?");
        args.push(r);
    }
    if let Some(c) = category {
        sql.push_str(" AND category_id = ?");
        args.push(c);
    }
    (sql, args)
}

/// Revenue per period over a date range.
#[allow(clippy::too_many_arguments)]
pub fn revenue(
    conn: &Connection,
    reference: &Reference,
    tenant: i64,
    granularity: Granularity,
    start: Date,
    end: Date,
    region: Option<i64>,
    category: Option<i64>,
) -> Result<Value, AnalyticsError> {
    let (extra, extra_args) = filters(region, category);
    let sql = format!(
        "SELECT {b} AS period, SUM(quantity * unit_price_cents), COUNT(DISTINCT order_id), SUM(quantity)
         FROM order_lines
         WHERE tenant_id = ? AND order_date BETWEEN ? AND ?{extra}
         GROUP BY period ORDER BY period",
        b = granularity.bucket("order_date")
    );
    let (s, e) = (start.to_string(), end.to_string());
    let mut args: Vec<&dyn ToSql> = vec![&tenant, &s, &e];
    for a in &extra_args {
        args.push(a);
    }
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
    let mut series = Vec::new();
    let (mut revenue, mut orders, mut units) = (0i64, 0i64, 0i64);
    for row in rows {
        let (period, rev, ord, un) = row?;
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
    conn: &Connection,
    tenant: i64,
    segment_type: &str,
    predictions: bool,
    today: Date,
) -> Result<Value, AnalyticsError> {
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
        _ => "CASE WHEN last_order_date IS NULL THEN 'never_ordered'
                   WHEN julianday(?2) - julianday(last_order_date) <= 30 THEN 'active'
                   WHEN julianday(?2) - julianday(last_order_date) <= 120 THEN 'lapsing'
                   ELSE 'churned' END"
            .to_owned(),
    };
    let sql = format!(
        "SELECT {group} AS seg, COUNT(*), SUM(lifetime_value_cents), AVG(orders_count),
                AVG(CASE WHEN last_order_date IS NULL OR julianday(?2) - julianday(last_order_date) > 90
                         THEN 1.0 ELSE 0.0 END)
         FROM customers WHERE tenant_id = ?1 GROUP BY seg ORDER BY 2 DESC"
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![tenant, today.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, i64>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, f64>(3)?,
            r.get::<_, f64>(4)?,
        ))
    })?;
    let rows: Vec<_> = rows.collect::<Result<_, _>>()?;
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
    conn: &Connection,
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
    let (extra, extra_args) = filters(None, category);
    let order = match sort_by {
        "units" => "units DESC",
        "growth" => "growth DESC",
        _ => "revenue DESC",
    };
    let sql = format!(
        "SELECT l.product_id, p.name, p.category_id, revenue, units, prev_revenue,
                CASE WHEN prev_revenue > 0 THEN (revenue - prev_revenue) * 1.0 / prev_revenue ELSE NULL END AS growth
         FROM (SELECT product_id,
                      SUM(CASE WHEN order_date >= ?3 THEN quantity * unit_price_cents ELSE 0 END) AS revenue,
                      SUM(CASE WHEN order_date >= ?3 THEN quantity ELSE 0 END) AS units,
                      SUM(CASE WHEN order_date < ?3 THEN quantity * unit_price_cents ELSE 0 END) AS prev_revenue
               FROM order_lines
               WHERE tenant_id = ?1 AND order_date BETWEEN ?2 AND ?4{extra}
               GROUP BY product_id) AS l
         JOIN products p ON p.id = l.product_id
         ORDER BY {order} NULLS LAST, l.product_id LIMIT 50"
    )
    .replace("AND category_id = ?", "AND category_id = ?5");
    let (p, c, t) = (previous.to_string(), current.to_string(), today.to_string());
    let mut args: Vec<&dyn ToSql> = vec![&tenant, &p, &c, &t];
    for a in &extra_args {
        args.push(a);
    }
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
            r.get::<_, i64>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, Option<f64>>(6)?,
        ))
    })?;
    let mut products = Vec::new();
    for row in rows {
        let (id, name, cat, rev, units, prev, growth) = row?;
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
    conn: &Connection,
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
         SELECT cohort.c, {pb} AS p, COUNT(DISTINCT o.customer_id), SUM(o.total_cents)
         FROM orders o JOIN cohort ON cohort.customer_id = o.customer_id
         WHERE o.tenant_id = ?1 AND o.order_date >= ?2
         GROUP BY cohort.c, p ORDER BY cohort.c, p",
        cb = g.bucket("first_order_date"),
        pb = g.bucket("o.order_date"),
    );
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params![tenant, start.to_string(), end.to_string()], |r| {
        Ok((
            r.get::<_, String>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, i64>(3)?,
        ))
    })?;
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
    for row in rows {
        let (c, p, active, value) = row?;
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
    conn: &Connection,
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
    let sql = format!(
        "SELECT SUM(s.stage >= 1), SUM(s.stage >= 2), SUM(s.stage >= 3), SUM(s.stage >= 4)
         FROM sessions s{join} WHERE s.tenant_id = ?1 AND s.day BETWEEN ?2 AND ?3"
    );
    let (s, e) = (start.to_string(), end.to_string());
    let mut args: Vec<&dyn ToSql> = vec![&tenant, &s, &e];
    let seg;
    if let Some(v) = segment {
        seg = v.to_owned();
        args.push(&seg);
    }
    let counts: [i64; 4] = conn.query_row(&sql, params_from_iter(args), |r| {
        Ok([
            r.get::<_, Option<i64>>(0)?.unwrap_or(0),
            r.get::<_, Option<i64>>(1)?.unwrap_or(0),
            r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            r.get::<_, Option<i64>>(3)?.unwrap_or(0),
        ])
    })?;
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
pub fn customer_sort(sort_by: &str) -> (&'static str, bool) {
    match sort_by {
        "lifetime_value" => ("lifetime_value_cents", true),
        "orders" => ("orders_count", true),
        "recent" => ("CAST(julianday(last_order_date) AS INTEGER)", true),
        _ => ("id", false),
    }
}

/// A page of customers: the items, how many match in all, and the last item's keyset
/// position (sort value, id).
pub type CustomerPage = (Vec<Value>, u64, Option<(Option<i64>, i64)>);

/// One page of customers, and the total matching.
#[allow(clippy::too_many_arguments)]
pub fn customers(
    conn: &Connection,
    reference: &Reference,
    tenant: i64,
    segment: Option<&str>,
    risk: Option<&str>,
    sort_by: &str,
    at: &PageAt,
    size: u64,
) -> Result<CustomerPage, AnalyticsError> {
    let (col, desc) = customer_sort(sort_by);
    let mut where_ = String::from("tenant_id = ?");
    let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(tenant)];
    if let Some(s) = segment {
        where_.push_str(" AND segment = ?");
        args.push(Box::new(s.to_owned()));
    }
    if let Some(r) = risk {
        where_.push_str(" AND risk_level = ?");
        args.push(Box::new(r.to_owned()));
    }
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM customers WHERE {where_}"),
        params_from_iter(args.iter().map(|a| a.as_ref())),
        |r| r.get::<_, i64>(0),
    )? as u64;
    // NULL sort values (never ordered) sort last, as -1 in the keyset.
    let sort_expr = format!("COALESCE({col}, -1)");
    let dir = if desc { "DESC" } else { "ASC" };
    let mut sql = format!(
        "SELECT id, name, region_id, segment, risk_level, lifetime_value_cents, orders_count,
                last_order_date, {sort_expr} FROM customers WHERE {where_}"
    );
    match at {
        PageAt::After(value, id) if col != "id" => {
            let v = value.unwrap_or(-1);
            let cmp = if desc { "<" } else { ">" };
            sql.push_str(&format!(" AND ({sort_expr}, id) {cmp} (?, ?)"));
            args.push(Box::new(v));
            args.push(Box::new(*id));
        }
        PageAt::After(_, id) => {
            sql.push_str(" AND id > ?");
            args.push(Box::new(*id));
        }
        PageAt::Page(_) => {}
    }
    let id_dir = if desc { "DESC" } else { "ASC" };
    sql.push_str(&format!(" ORDER BY {sort_expr} {dir}, id {id_dir} LIMIT ?"));
    args.push(Box::new(size as i64));
    if let PageAt::Page(p) = at {
        sql.push_str(" OFFSET ?");
        args.push(Box::new(((p - 1) * size) as i64));
    }
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map(params_from_iter(args.iter().map(|a| a.as_ref())), |r| {
        Ok((
            r.get::<_, i64>(0)?,
            r.get::<_, String>(1)?,
            r.get::<_, i64>(2)?,
            r.get::<_, String>(3)?,
            r.get::<_, String>(4)?,
            r.get::<_, i64>(5)?,
            r.get::<_, i64>(6)?,
            r.get::<_, Option<String>>(7)?,
            r.get::<_, i64>(8)?,
        ))
    })?;
    let mut items = Vec::new();
    let mut last = None;
    for row in rows {
        let (id, name, region, seg, risk, value, orders, last_order, sort) = row?;
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
    conn: &Connection,
    reference: &Reference,
    tenant: i64,
    id: i64,
) -> Result<Option<Value>, AnalyticsError> {
    let row = conn
        .query_row(
            "SELECT id, name, email, region_id, signup_date, segment, risk_level,
                    lifetime_value_cents, orders_count, first_order_date, last_order_date
             FROM customers WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, id],
            |r| {
                Ok(json!({
                    "id": r.get::<_, i64>(0)?,
                    "name": r.get::<_, String>(1)?,
                    "email": mask_email(&r.get::<_, String>(2)?),
                    "region": reference.region_code(r.get::<_, i64>(3)?),
                    "signup_date": r.get::<_, String>(4)?,
                    "segment": r.get::<_, String>(5)?,
                    "risk_level": r.get::<_, String>(6)?,
                    "lifetime_value": money(r.get::<_, i64>(7)?),
                    "orders_count": r.get::<_, i64>(8)?,
                    "first_order_date": r.get::<_, Option<String>>(9)?,
                    "last_order_date": r.get::<_, Option<String>>(10)?,
                }))
            },
        )
        .optional()?;
    let Some(mut customer) = row else {
        return Ok(None);
    };
    let mut st = conn.prepare_cached(
        "SELECT id, order_date, total_cents FROM orders WHERE customer_id = ?1
         ORDER BY order_date DESC, id DESC LIMIT 10",
    )?;
    let recent: Vec<Value> = st
        .query_map(params![id], |r| {
            Ok(json!({
                "order_id": r.get::<_, i64>(0)?,
                "order_date": r.get::<_, String>(1)?,
                "total": money(r.get::<_, i64>(2)?),
            }))
        })?
        .collect::<Result<_, _>>()?;
    let open_alerts: i64 = conn.query_row(
        "SELECT COUNT(*) FROM fraud_alerts WHERE customer_id = ?1 AND status IN ('open', 'investigating')",
        params![id],
        |r| r.get(0),
    )?;
    customer["recent_orders"] = json!(recent);
    customer["open_fraud_alerts"] = json!(open_alerts);
    Ok(Some(customer))
}

/// Recommendations for one customer, or `None` when the tenant has no such customer.
pub fn recommendations(
    conn: &Connection,
    reference: &Reference,
    tenant: i64,
    id: i64,
    kind: &str,
    today: Date,
) -> Result<Option<Value>, AnalyticsError> {
    let row: Option<(String, Option<String>, i64)> = conn
        .query_row(
            "SELECT segment, last_order_date, orders_count FROM customers WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((segment, last, orders)) = row else {
        return Ok(None);
    };
    let items: Vec<Value> = match kind {
        "products" => {
            // Best sellers of the last 90 days in the customer's favourite categories that
            // the customer has not bought.
            let since = today.checked_sub(89.days()).unwrap_or(today).to_string();
            let mut st = conn.prepare_cached(
                "WITH fav AS (
                     SELECT category_id FROM order_lines l JOIN orders o ON o.id = l.order_id
                     WHERE o.customer_id = ?2 GROUP BY category_id ORDER BY SUM(quantity) DESC LIMIT 3),
                 bought AS (
                     SELECT DISTINCT product_id FROM order_lines l JOIN orders o ON o.id = l.order_id
                     WHERE o.customer_id = ?2)
                 SELECT l.product_id, p.name, p.category_id, p.price_cents, SUM(l.quantity) AS units
                 FROM order_lines l JOIN products p ON p.id = l.product_id
                 WHERE l.tenant_id = ?1 AND l.order_date >= ?3
                   AND (NOT EXISTS (SELECT 1 FROM fav) OR l.category_id IN (SELECT category_id FROM fav))
                   AND l.product_id NOT IN (SELECT product_id FROM bought)
                 GROUP BY l.product_id ORDER BY units DESC, l.product_id LIMIT 10",
            )?;
            st.query_map(params![tenant, id, since], |r| {
                Ok(json!({
                    "product_id": r.get::<_, i64>(0)?,
                    "name": r.get::<_, String>(1)?,
                    "category": reference.category_slug(r.get::<_, i64>(2)?),
                    "price": money(r.get::<_, i64>(3)?),
                    "units_sold_90d": r.get::<_, i64>(4)?,
                }))
            })?
            .collect::<Result<_, _>>()?
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
    conn: &Connection,
    tenant: i64,
    status: Option<&str>,
    priority: Option<&str>,
    alert_type: Option<&str>,
    page: u64,
    size: u64,
) -> Result<(Vec<Value>, u64), AnalyticsError> {
    let mut where_ = String::from("tenant_id = ?");
    let mut args: Vec<Box<dyn ToSql>> = vec![Box::new(tenant)];
    for (col, v) in [
        ("status", status),
        ("priority", priority),
        ("alert_type", alert_type),
    ] {
        if let Some(v) = v {
            where_.push_str(&format!(" AND {col} = ?"));
            args.push(Box::new(v.to_owned()));
        }
    }
    let total: i64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM fraud_alerts WHERE {where_}"),
        params_from_iter(args.iter().map(|a| a.as_ref())),
        |r| r.get(0),
    )?;
    args.push(Box::new(size as i64));
    args.push(Box::new(((page - 1) * size) as i64));
    let mut st = conn.prepare_cached(&format!(
        "SELECT id, customer_id, order_id, alert_type, priority, status, score, amount_cents,
                created_at, resolved_at, resolution
         FROM fraud_alerts WHERE {where_} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?"
    ))?;
    let items = st
        .query_map(params_from_iter(args.iter().map(|a| a.as_ref())), |r| {
            Ok(json!({
                "id": r.get::<_, i64>(0)?,
                "customer_id": r.get::<_, i64>(1)?,
                "order_id": r.get::<_, Option<i64>>(2)?,
                "alert_type": r.get::<_, String>(3)?,
                "priority": r.get::<_, String>(4)?,
                "status": r.get::<_, String>(5)?,
                "score": r.get::<_, f64>(6)?,
                "amount": money(r.get::<_, i64>(7)?),
                "created_at": r.get::<_, String>(8)?,
                "resolved_at": r.get::<_, Option<String>>(9)?,
                "resolution": r.get::<_, Option<String>>(10)?,
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok((items, total as u64))
}

/// The fraud dashboard over a window ending now.
pub fn fraud_dashboard(
    conn: &Connection,
    tenant: i64,
    time_range: &str,
    since: &str,
) -> Result<Value, AnalyticsError> {
    let group = |col: &str| -> Result<Value, AnalyticsError> {
        let mut st = conn.prepare_cached(&format!(
            "SELECT {col}, COUNT(*) FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2
             GROUP BY {col} ORDER BY {col}"
        ))?;
        let map: serde_json::Map<String, Value> = st
            .query_map(params![tenant, since], |r| {
                Ok((r.get::<_, String>(0)?, json!(r.get::<_, i64>(1)?)))
            })?
            .collect::<Result<_, _>>()?;
        Ok(Value::Object(map))
    };
    let (total, avg_score, at_risk, open): (i64, Option<f64>, Option<i64>, Option<i64>) = conn
        .query_row(
            "SELECT COUNT(*), AVG(score),
                    SUM(CASE WHEN status IN ('open', 'investigating') THEN amount_cents END),
                    SUM(status IN ('open', 'investigating'))
             FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2",
            params![tenant, since],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )?;
    let orders: i64 = conn.query_row(
        "SELECT COUNT(*) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
        params![tenant, since],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare_cached(
        "SELECT customer_id, COUNT(*), SUM(amount_cents) FROM fraud_alerts
         WHERE tenant_id = ?1 AND created_at >= ?2 GROUP BY customer_id
         ORDER BY COUNT(*) DESC, SUM(amount_cents) DESC LIMIT 5",
    )?;
    let top: Vec<Value> = st
        .query_map(params![tenant, since], |r| {
            Ok(json!({
                "customer_id": r.get::<_, i64>(0)?,
                "alerts": r.get::<_, i64>(1)?,
                "amount": money(r.get::<_, i64>(2)?),
            }))
        })?
        .collect::<Result<_, _>>()?;
    Ok(json!({
        "time_range": time_range,
        "since": since,
        "total_alerts": total,
        "open_alerts": open.unwrap_or(0),
        "alert_rate_percent": round(100.0 * total as f64 / orders.max(1) as f64, 3),
        "average_score": avg_score.map(|s| round(s, 3)),
        "amount_at_risk": money(at_risk.unwrap_or(0)),
        "by_status": group("status")?,
        "by_priority": group("priority")?,
        "by_type": group("alert_type")?,
        "top_customers": top,
    }))
}

/// Counts for a live stream over the window since `since`.
pub fn stream_metrics(
    conn: &Connection,
    tenant: i64,
    stream_type: &str,
    time_window: &str,
    since: &str,
    minutes: f64,
) -> Result<Value, AnalyticsError> {
    let (sql, unit) = match stream_type {
        "payments" => (
            "SELECT COUNT(*), COALESCE(SUM(total_cents), 0) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
            "payments",
        ),
        "fraud" => (
            "SELECT COUNT(*), COALESCE(SUM(amount_cents), 0) FROM fraud_alerts WHERE tenant_id = ?1 AND created_at >= ?2",
            "alerts",
        ),
        _ => (
            "SELECT COUNT(*), COALESCE(SUM(total_cents), 0) FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
            "orders",
        ),
    };
    let (count, amount): (i64, i64) =
        conn.query_row(sql, params![tenant, since], |r| Ok((r.get(0)?, r.get(1)?)))?;
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
    conn: &Connection,
    tenant: i64,
    time_window: &str,
    since: &str,
    since_day: &str,
) -> Result<Value, AnalyticsError> {
    let (orders, revenue, buyers): (i64, i64, i64) = conn.query_row(
        "SELECT COUNT(*), COALESCE(SUM(total_cents), 0), COUNT(DISTINCT customer_id)
         FROM orders WHERE tenant_id = ?1 AND created_at >= ?2",
        params![tenant, since],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    let new_customers: i64 = conn.query_row(
        "SELECT COUNT(*) FROM customers WHERE tenant_id = ?1 AND first_order_date >= ?2",
        params![tenant, since_day],
        |r| r.get(0),
    )?;
    let (sessions, ordered): (i64, Option<i64>) = conn.query_row(
        "SELECT COUNT(*), SUM(stage = 4) FROM sessions WHERE tenant_id = ?1 AND day >= ?2",
        params![tenant, since_day],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let open_alerts: i64 = conn.query_row(
        "SELECT COUNT(*) FROM fraud_alerts WHERE tenant_id = ?1 AND status IN ('open', 'investigating')",
        params![tenant],
        |r| r.get(0),
    )?;
    Ok(json!({
        "time_window": time_window,
        "since": since,
        "orders": orders,
        "revenue": money(revenue),
        "average_order_value": if orders > 0 { round(money(revenue) / orders as f64, 2) } else { 0.0 },
        "buyers": buyers,
        "new_customers": new_customers,
        "conversion_rate_percent": round(100.0 * ordered.unwrap_or(0) as f64 / sessions.max(1) as f64, 2),
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
    conn: &mut Connection,
    reference: &Reference,
    tenant: i64,
    customer_id: i64,
    region: Option<&str>,
    lines: &[NewLine],
    today: Date,
    created_at: &str,
) -> Result<CreatedOrder, AnalyticsError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    type CustomerRow = (
        i64,
        String,
        i64,
        i64,
        Option<String>,
        Option<String>,
        String,
    );
    let customer: Option<CustomerRow> = tx
        .query_row(
            "SELECT region_id, signup_date, orders_count, lifetime_value_cents, first_order_date,
                    last_order_date, segment
             FROM customers WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, customer_id],
            |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            },
        )
        .optional()?;
    let Some((home_region, signup, count, value, first, _last, old_segment)) = customer else {
        return Err(AnalyticsError::invalid(
            "customer_id",
            "unknown_customer",
            format!("no customer {customer_id} in this tenant"),
        ));
    };
    let region_id = match region {
        None => home_region,
        Some(r) => reference.region(Some(r))?.unwrap_or(home_region),
    };
    let mut priced = Vec::with_capacity(lines.len());
    for (i, l) in lines.iter().enumerate() {
        let product: Option<(i64, i64)> = tx
            .query_row(
                "SELECT category_id, price_cents FROM products WHERE tenant_id = ?1 AND id = ?2",
                params![tenant, l.product_id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        let Some((category, price)) = product else {
            return Err(AnalyticsError::invalid(
                &format!("items[{i}].product_id"),
                "unknown_product",
                format!("no product {} in this tenant", l.product_id),
            ));
        };
        priced.push((
            l.product_id,
            category,
            l.unit_price_cents.unwrap_or(price),
            l.quantity,
        ));
    }
    let total: i64 = priced.iter().map(|(_, _, p, q)| p * q).sum();
    let day = today.to_string();
    tx.execute(
        "INSERT INTO orders (tenant_id, customer_id, region_id, order_date, created_at, total_cents)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        params![tenant, customer_id, region_id, day, created_at, total],
    )?;
    let order_id = tx.last_insert_rowid();
    let mut items = Vec::new();
    let mut categories = Vec::new();
    for (pid, cat, price, q) in &priced {
        tx.execute(
            "INSERT INTO order_lines (order_id, tenant_id, product_id, category_id, region_id,
                 order_date, quantity, unit_price_cents)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            params![order_id, tenant, pid, cat, region_id, day, q, price],
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
        params![tenant, customer_id, day],
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
        params![customer_id, total, day, segment],
    )?;
    tx.commit()?;
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
    conn: &mut Connection,
    tenant: i64,
    alert_id: i64,
    resolution: &str,
    note: Option<&str>,
    at: &str,
) -> Result<Resolved, AnalyticsError> {
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let row: Option<(i64, String)> = tx
        .query_row(
            "SELECT customer_id, status FROM fraud_alerts WHERE tenant_id = ?1 AND id = ?2",
            params![tenant, alert_id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((customer_id, status)) = row else {
        return Err(AnalyticsError::not_found(
            "alert_id",
            format!("no fraud alert {alert_id} in this tenant"),
        ));
    };
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
        params![alert_id, new_status, at, resolution, note],
    )?;
    let open: i64 = tx.query_row(
        "SELECT COUNT(*) FROM fraud_alerts WHERE customer_id = ?1 AND status IN ('open', 'investigating')",
        params![customer_id],
        |r| r.get(0),
    )?;
    let new_risk = risk_level(open as u32);
    let changed = tx.execute(
        "UPDATE customers SET risk_level = ?2 WHERE id = ?1 AND risk_level <> ?2",
        params![customer_id, new_risk],
    )? > 0;
    tx.commit()?;
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
