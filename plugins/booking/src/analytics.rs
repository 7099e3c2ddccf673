//! Business analytics over appointments and payments: the dashboard, revenue and clients.
//!
//! Real aggregation queries over the whole history, which is why their routes are cached
//! (business_intel / analytics TTL classes) and purged by `payment.recorded`.

use jiff::civil::Date;
use poem_openapi::{Enum, Object};
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::error::BookingError;
use crate::slots;
use crate::store::{self, day_plan};
use crate::time::add_days;

/// Revenue buckets.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
pub enum Granularity {
    /// One bucket per day.
    #[default]
    Day,
    /// One bucket per week (Monday start).
    Week,
    /// One bucket per calendar month.
    Month,
}

/// A count for one day.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct TodaySummary {
    /// The shop's today.
    pub date: String,
    /// Appointments today (not cancelled).
    pub appointments: u32,
    /// Already completed.
    pub completed: u32,
    /// Still to come.
    pub upcoming: u32,
}

/// Load of the coming week.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct WeekAhead {
    /// Booked appointments in the next 7 days (today included).
    pub appointments: u32,
    /// Booked minutes.
    pub booked_minutes: u32,
    /// Working minutes of every active barber, time off excluded.
    pub working_minutes: u32,
    /// Booked share of working time, in percent.
    pub utilization_percent: f64,
}

/// A ranked service.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct ServiceRank {
    /// Service.
    pub service_id: i64,
    /// Name.
    pub name: String,
    /// Completed appointments.
    pub appointments: u32,
    /// Revenue (tips excluded).
    pub revenue: f64,
}

/// A ranked barber.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct BarberRank {
    /// Barber.
    pub barber_id: i64,
    /// Name.
    pub name: String,
    /// Completed appointments.
    pub appointments: u32,
    /// Revenue (tips excluded).
    pub revenue: f64,
    /// Tips.
    pub tips: f64,
}

/// The shop at a glance.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct Dashboard {
    /// Today.
    pub today: TodaySummary,
    /// The next seven days.
    pub week_ahead: WeekAhead,
    /// Payments this calendar month (tips excluded).
    pub revenue_this_month: f64,
    /// Payments last calendar month.
    pub revenue_last_month: f64,
    /// Share of past appointments of the last 90 days that were no-shows, percent.
    pub no_show_rate_percent: f64,
    /// Share of appointments of the last 90 days that were cancelled, percent.
    pub cancellation_rate_percent: f64,
    /// Clients whose first visit was in the last 30 days.
    pub new_clients_30d: u32,
    /// Best services of the last 30 days.
    pub top_services_30d: Vec<ServiceRank>,
    /// Barbers of the last 30 days by revenue.
    pub barbers_30d: Vec<BarberRank>,
}

/// One revenue bucket.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct RevenuePoint {
    /// `YYYY-MM-DD` (day, week's Monday) or `YYYY-MM`.
    pub period: String,
    /// Payments, tips excluded.
    pub revenue: f64,
    /// Tips.
    pub tips: f64,
    /// Number of payments.
    pub payments: u32,
}

/// Revenue over a period.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct RevenueReport {
    /// First day (inclusive).
    pub start: String,
    /// Last day (inclusive).
    pub end: String,
    /// Bucket size.
    pub granularity: Granularity,
    /// Only this barber, if set.
    pub barber_id: Option<i64>,
    /// Buckets in time order (empty buckets left out).
    pub series: Vec<RevenuePoint>,
    /// Total revenue, tips excluded.
    pub total_revenue: f64,
    /// Total tips.
    pub total_tips: f64,
    /// Number of payments.
    pub payments: u32,
    /// Revenue per payment.
    pub average_ticket: f64,
    /// Revenue by service.
    pub by_service: Vec<ServiceRank>,
}

/// Clients in a visit-count bucket.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct FrequencyBucket {
    /// `1`, `2-3`, `4-6` or `7+` visits in the window.
    pub visits: String,
    /// Clients.
    pub clients: u32,
}

/// A client ranked by spend.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct ClientRank {
    /// Client.
    pub client_id: i64,
    /// Name.
    pub name: String,
    /// Completed visits in the window.
    pub visits: u32,
    /// Paid in the window, tips included.
    pub spent: f64,
}

/// Client behaviour over a window of days.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct ClientReport {
    /// Window length in days, ending today.
    pub window_days: u32,
    /// Every client.
    pub total_clients: u32,
    /// Clients with a completed visit in the window.
    pub active_clients: u32,
    /// Active clients whose first visit was in the window.
    pub new_clients: u32,
    /// Active clients who had visited before the window.
    pub returning_clients: u32,
    /// Returning share of active clients, percent.
    pub retention_rate_percent: f64,
    /// Visits per active client.
    pub average_visits: f64,
    /// Paid per completed visit, tips included.
    pub average_spend_per_visit: f64,
    /// Clients with 3+ visits whose last visit was over 60 days ago.
    pub at_risk_clients: u32,
    /// How often active clients came.
    pub visit_frequency: Vec<FrequencyBucket>,
    /// Top 10 clients by spend in the window.
    pub top_clients: Vec<ClientRank>,
}

fn pct(part: f64, whole: f64) -> f64 {
    if whole <= 0.0 {
        0.0
    } else {
        (part * 1000.0 / whole).round() / 10.0
    }
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

/// The dashboard as of `today` (minute of day decides what is "upcoming").
pub fn dashboard(conn: &Connection, today: Date, minute: u32) -> Result<Dashboard, BookingError> {
    let d = today.to_string();
    let (appointments, completed, upcoming): (u32, u32, u32) = conn.query_row(
        "SELECT COUNT(*),
                COALESCE(SUM(status = 'completed'), 0),
                COALESCE(SUM(status = 'booked' AND start_min >= ?2), 0)
         FROM appointments WHERE date = ?1 AND status <> 'cancelled'",
        params![d, minute],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;

    let mut booked = 0u32;
    let mut working = 0u32;
    let mut week_appts = 0u32;
    for barber in store::active_barber_ids(conn)? {
        for i in 0..7 {
            let plan = day_plan(conn, barber, add_days(today, i))?;
            working += slots::minutes(&plan.working());
            booked += slots::minutes(&plan.booked);
            week_appts += plan.booked.len() as u32;
        }
    }

    let month_start = today.first_of_month();
    let last_month_start = add_days(month_start, -1).first_of_month();
    let revenue = |from: Date, to: Date| -> Result<i64, BookingError> {
        Ok(conn.query_row(
            "SELECT COALESCE(SUM(amount_cents), 0) FROM payments
             WHERE created_at >= ?1 AND created_at < ?2",
            params![from.to_string(), to.to_string()],
            |r| r.get(0),
        )?)
    };
    let this_month = revenue(month_start, add_days(today, 1))?;
    let last_month = revenue(last_month_start, month_start)?;

    let since90 = add_days(today, -90).to_string();
    let (past_total, no_shows, all90, cancelled): (u32, u32, u32, u32) = conn.query_row(
        "SELECT COALESCE(SUM(date < ?2 AND status IN ('completed', 'no_show')), 0),
                COALESCE(SUM(date < ?2 AND status = 'no_show'), 0),
                COUNT(*),
                COALESCE(SUM(status = 'cancelled'), 0)
         FROM appointments WHERE date >= ?1 AND date <= ?2",
        params![since90, d],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;

    let since30 = add_days(today, -30).to_string();
    let new_clients: u32 = conn.query_row(
        "SELECT COUNT(*) FROM (
             SELECT client_id, MIN(date) AS first FROM appointments
             WHERE status = 'completed' GROUP BY client_id
         ) WHERE first >= ?1 AND first <= ?2",
        params![since30, d],
        |r| r.get(0),
    )?;

    let mut st = conn.prepare_cached(
        "SELECT s.id, s.name, COUNT(*), SUM(a.price_cents) FROM appointments a
         JOIN services s ON s.id = a.service_id
         WHERE a.status = 'completed' AND a.date >= ?1 AND a.date <= ?2
         GROUP BY s.id ORDER BY SUM(a.price_cents) DESC, s.id LIMIT 5",
    )?;
    let top_services = st
        .query_map(params![since30, d], |r| {
            Ok(ServiceRank {
                service_id: r.get(0)?,
                name: r.get(1)?,
                appointments: r.get(2)?,
                revenue: money(r.get(3)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    let mut st = conn.prepare_cached(
        "SELECT b.id, b.name, COUNT(*), COALESCE(SUM(p.amount_cents), 0), COALESCE(SUM(p.tip_cents), 0)
         FROM appointments a JOIN barbers b ON b.id = a.barber_id
         LEFT JOIN payments p ON p.appointment_id = a.id
         WHERE a.status = 'completed' AND a.date >= ?1 AND a.date <= ?2
         GROUP BY b.id ORDER BY 4 DESC, b.id",
    )?;
    let barbers = st
        .query_map(params![since30, d], |r| {
            Ok(BarberRank {
                barber_id: r.get(0)?,
                name: r.get(1)?,
                appointments: r.get(2)?,
                revenue: money(r.get(3)?),
                tips: money(r.get(4)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;

    Ok(Dashboard {
        today: TodaySummary {
            date: d,
            appointments,
            completed,
            upcoming,
        },
        week_ahead: WeekAhead {
            appointments: week_appts,
            booked_minutes: booked,
            working_minutes: working,
            utilization_percent: pct(f64::from(booked), f64::from(working)),
        },
        revenue_this_month: money(this_month),
        revenue_last_month: money(last_month),
        no_show_rate_percent: pct(f64::from(no_shows), f64::from(past_total)),
        cancellation_rate_percent: pct(f64::from(cancelled), f64::from(all90)),
        new_clients_30d: new_clients,
        top_services_30d: top_services,
        barbers_30d: barbers,
    })
}

/// Revenue between two days (inclusive), bucketed.
pub fn revenue(
    conn: &Connection,
    start: Date,
    end: Date,
    granularity: Granularity,
    barber: Option<i64>,
) -> Result<RevenueReport, BookingError> {
    let period = match granularity {
        Granularity::Day => "substr(p.created_at, 1, 10)",
        Granularity::Week => "date(substr(p.created_at, 1, 10), 'weekday 0', '-6 days')",
        Granularity::Month => "substr(p.created_at, 1, 7)",
    };
    let (from, to) = (start.to_string(), add_days(end, 1).to_string());
    let filter = "FROM payments p JOIN appointments a ON a.id = p.appointment_id
                  WHERE p.created_at >= ?1 AND p.created_at < ?2 AND (?3 IS NULL OR a.barber_id = ?3)";
    let mut st = conn.prepare_cached(&format!(
        "SELECT {period} AS period, SUM(p.amount_cents), SUM(p.tip_cents), COUNT(*) {filter}
         GROUP BY period ORDER BY period"
    ))?;
    let series = st
        .query_map(params![from, to, barber], |r| {
            Ok(RevenuePoint {
                period: r.get(0)?,
                revenue: money(r.get(1)?),
                tips: money(r.get(2)?),
                payments: r.get(3)?,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT s.id, s.name, COUNT(*), SUM(p.amount_cents) {filter_s}
         GROUP BY s.id ORDER BY 4 DESC, s.id",
        filter_s = filter.replace(
            "FROM payments p JOIN appointments a ON a.id = p.appointment_id",
            "FROM payments p JOIN appointments a ON a.id = p.appointment_id JOIN services s ON s.id = a.service_id",
        )
    ))?;
    let by_service = st
        .query_map(params![from, to, barber], |r| {
            Ok(ServiceRank {
                service_id: r.get(0)?,
                name: r.get(1)?,
                appointments: r.get(2)?,
                revenue: money(r.get(3)?),
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let total: f64 = series.iter().map(|p| p.revenue).sum();
    let tips: f64 = series.iter().map(|p| p.tips).sum();
    let payments: u32 = series.iter().map(|p| p.payments).sum();
    Ok(RevenueReport {
        start: start.to_string(),
        end: end.to_string(),
        granularity,
        barber_id: barber,
        series,
        total_revenue: (total * 100.0).round() / 100.0,
        total_tips: (tips * 100.0).round() / 100.0,
        payments,
        average_ticket: if payments == 0 {
            0.0
        } else {
            (total * 100.0 / f64::from(payments)).round() / 100.0
        },
        by_service,
    })
}

/// Client behaviour over the `window` days ending `today`.
pub fn clients(conn: &Connection, today: Date, window: u32) -> Result<ClientReport, BookingError> {
    let since = add_days(today, -i64::from(window)).to_string();
    let d = today.to_string();
    let total_clients: u32 = conn.query_row("SELECT COUNT(*) FROM clients", [], |r| r.get(0))?;
    // Per active client: visits in the window, first visit ever, spend in the window.
    let mut st = conn.prepare_cached(
        "WITH visits AS (
             SELECT client_id, COUNT(*) AS n FROM appointments
             WHERE status = 'completed' AND date >= ?1 AND date <= ?2 GROUP BY client_id
         ), firsts AS (
             SELECT client_id, MIN(date) AS first FROM appointments
             WHERE status = 'completed' GROUP BY client_id
         ), spend AS (
             SELECT a.client_id, SUM(p.amount_cents + p.tip_cents) AS cents FROM payments p
             JOIN appointments a ON a.id = p.appointment_id
             WHERE a.date >= ?1 AND a.date <= ?2 GROUP BY a.client_id
         )
         SELECT v.client_id, v.n, f.first, COALESCE(s.cents, 0), c.first_name || ' ' || c.last_name
         FROM visits v JOIN firsts f USING (client_id) JOIN clients c ON c.id = v.client_id
         LEFT JOIN spend s USING (client_id)",
    )?;
    let rows = st
        .query_map(params![since, d], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, u32>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, String>(4)?,
            ))
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let active = rows.len() as u32;
    let new_clients = rows.iter().filter(|r| r.2 >= since).count() as u32;
    let visits: u32 = rows.iter().map(|r| r.1).sum();
    let spent: i64 = rows.iter().map(|r| r.3).sum();
    let mut buckets = [0u32; 4];
    for r in &rows {
        let i = match r.1 {
            1 => 0,
            2..=3 => 1,
            4..=6 => 2,
            _ => 3,
        };
        buckets[i] += 1;
    }
    let mut top: Vec<_> = rows.iter().collect();
    top.sort_by(|a, b| b.3.cmp(&a.3).then(a.0.cmp(&b.0)));
    let top_clients = top
        .into_iter()
        .take(10)
        .map(|r| ClientRank {
            client_id: r.0,
            name: r.4.clone(),
            visits: r.1,
            spent: money(r.3),
        })
        .collect();
    let at_risk: u32 = conn.query_row(
        "SELECT COUNT(*) FROM (
             SELECT client_id FROM appointments WHERE status = 'completed'
             GROUP BY client_id HAVING COUNT(*) >= 3 AND MAX(date) < ?1
         )",
        params![add_days(today, -60).to_string()],
        |r| r.get(0),
    )?;
    let returning = active - new_clients;
    Ok(ClientReport {
        window_days: window,
        total_clients,
        active_clients: active,
        new_clients,
        returning_clients: returning,
        retention_rate_percent: pct(f64::from(returning), f64::from(active)),
        average_visits: if active == 0 {
            0.0
        } else {
            (f64::from(visits) * 100.0 / f64::from(active)).round() / 100.0
        },
        average_spend_per_visit: if visits == 0 {
            0.0
        } else {
            (spent as f64 / f64::from(visits)).round() / 100.0
        },
        at_risk_clients: at_risk,
        visit_frequency: ["1", "2-3", "4-6", "7+"]
            .iter()
            .zip(buckets)
            .map(|(v, n)| FrequencyBucket {
                visits: (*v).into(),
                clients: n,
            })
            .collect(),
        top_clients,
    })
}
