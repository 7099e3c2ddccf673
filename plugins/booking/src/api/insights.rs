//! Analytics routes: dashboard, revenue, clients.

use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::Query;

use super::{Day, Id, Reply};
use crate::State;
use crate::analytics::{self, ClientReport, Dashboard, Granularity, RevenueReport};
use crate::error::BookingError;
use crate::time::add_days;

/// Analytics routes.
pub struct InsightsApi(pub Arc<State>);

#[OpenApi(prefix_path = "/api/v2")]
impl InsightsApi {
    /// Analytics dashboard
    ///
    /// Today's appointments, the coming week's utilization, month-to-date revenue, no-show
    /// and cancellation rates, new clients, best services and barbers of the last 30 days.
    #[oai(
        path = "/analytics/dashboard",
        method = "get",
        operation_id = "analytics_dashboard"
    )]
    async fn analytics_dashboard(&self) -> Reply<Dashboard> {
        let now = self.0.now();
        self.0
            .db
            .read(move |c| analytics::dashboard(c, now.today, now.minute))
            .await
            .into()
    }

    /// Revenue analytics
    ///
    /// Payments between `start` and `end` (inclusive; default the last 30 days), bucketed by
    /// day, week or month, optionally for one barber, with totals and revenue by service.
    #[oai(
        path = "/analytics/revenue",
        method = "get",
        operation_id = "revenue_analytics"
    )]
    async fn revenue_analytics(
        &self,
        /// First day, `YYYY-MM-DD` (default: 30 days ago).
        start: Query<Option<Day>>,
        /// Last day, `YYYY-MM-DD` (default: today).
        end: Query<Option<Day>>,
        /// Bucket size (default `day`).
        #[oai(default)]
        granularity: Query<Granularity>,
        /// Only this barber.
        barber_id: Query<Option<Id>>,
    ) -> Reply<RevenueReport> {
        let today = self.0.clock.today();
        let end = end.0.map(|d| d.0).unwrap_or(today);
        let start = start.0.map(|d| d.0).unwrap_or_else(|| add_days(end, -30));
        if start > end {
            return Err(BookingError::invalid(
                "start",
                "invalid_range",
                format!("start {start} is after end {end}"),
            ))
            .into();
        }
        if (end - start).get_days() > 3 * 366 {
            return Err(BookingError::invalid(
                "start",
                "range_too_long",
                "a revenue report covers at most three years",
            ))
            .into();
        }
        let (granularity, barber) = (granularity.0, barber_id.0.map(|b| b.0));
        self.0
            .db
            .read(move |c| analytics::revenue(c, start, end, granularity, barber))
            .await
            .into()
    }

    /// Client analytics
    ///
    /// Active, new and returning clients over a window ending today, retention, visit
    /// frequency, clients at risk of churning and the top spenders.
    #[oai(
        path = "/analytics/clients",
        method = "get",
        operation_id = "client_analytics"
    )]
    async fn client_analytics(
        &self,
        /// Window length in days, 7–365 (default 90).
        #[oai(
            default = "default_window",
            validator(minimum(value = "7"), maximum(value = "365"))
        )]
        window_days: Query<u32>,
    ) -> Reply<ClientReport> {
        let (today, window) = (self.0.clock.today(), window_days.0);
        self.0
            .db
            .read(move |c| analytics::clients(c, today, window))
            .await
            .into()
    }
}

fn default_window() -> u32 {
    90
}
