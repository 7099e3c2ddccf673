//! Barbers, services, booking settings, slots and weekly availability.

use larder_plugin::JsonBody;
use std::sync::Arc;

use poem_openapi::OpenApi;
use poem_openapi::param::{Path, Query};

use super::{BarberId, Day, Id, PathId, Reply, ServiceId};
use crate::State;
use crate::error::BookingError;
use crate::events;
use crate::model::{
    Barber, BookingSettings, Service, ServiceUpdate, SlotList, Span, WeeklyAvailability,
};
use crate::store;
use crate::time::{hhmm, weekday_name};

/// Catalog and availability routes.
pub struct CatalogApi(pub Arc<State>);

#[OpenApi(prefix_path = "/api/v2")]
impl CatalogApi {
    /// List barbers
    ///
    /// Every barber with specialties and rating; active ones first.
    #[oai(path = "/barbers", method = "get", operation_id = "list_barbers")]
    async fn list_barbers(&self) -> Reply<Vec<Barber>> {
        self.0.db.read(store::list_barbers).await.into()
    }

    /// Available slots of a barber on a day
    ///
    /// Computed from the barber's weekly hours minus time off and existing appointments,
    /// cut into starts on the shop's slot grid. With `service_id` the slots have that
    /// service's duration; without, the default duration. Past days have no slots; today's
    /// slots respect the minimum notice. Days from `lookback_days` back to the booking
    /// horizon (`max_advance_days`) are answered; others are refused with 400 naming `date`.
    #[oai(
        path = "/barbers/:barber_id/slots",
        method = "get",
        operation_id = "available_slots"
    )]
    async fn available_slots(
        &self,
        /// The barber.
        barber_id: Path<PathId<BarberId>>,
        /// The day, `YYYY-MM-DD`, within the window the settings give.
        date: Query<Day>,
        /// Size the slots for this service.
        service_id: Query<Option<Id>>,
    ) -> Reply<SlotList> {
        let (barber, date, service) = (barber_id.0.0, date.0.0, service_id.0.map(|s| s.0));
        if let Err(e) = self.0.check_day("date", date) {
            return Err(e).into();
        }
        let (rules, now) = (self.0.rules, self.0.now());
        self.0
            .db
            .read(move |c| store::slots_for(c, &rules, now, barber, date, service))
            .await
            .into()
    }

    /// Weekly availability of a barber
    ///
    /// Seven days from `week_start` (a Monday): working hours, booked and free minutes, and
    /// the bookable slots of each day. Weeks overlapping `lookback_days` back to the booking
    /// horizon are answered; others are refused with 400 naming `week_start`.
    #[oai(
        path = "/barbers/:barber_id/availability/weekly",
        method = "get",
        operation_id = "weekly_availability"
    )]
    async fn weekly_availability(
        &self,
        /// The barber.
        barber_id: Path<PathId<BarberId>>,
        /// The Monday the week starts on, `YYYY-MM-DD`, within the window the settings give.
        week_start: Query<Day>,
        /// Size the slots for this service.
        service_id: Query<Option<Id>>,
    ) -> Reply<WeeklyAvailability> {
        let monday = week_start.0.0;
        if crate::time::weekday_index(monday) != 0 {
            return Reply::from(Err::<WeeklyAvailability, _>(BookingError::invalid(
                "week_start",
                "not_a_monday",
                format!(
                    "week_start must be a Monday; {monday} is a {}, its week starts on {}",
                    weekday_name(monday),
                    crate::time::week_start(monday)
                ),
            )));
        }
        if let Err(e) = self.0.check_week("week_start", monday) {
            return Err(e).into();
        }
        let (rules, now) = (self.0.rules, self.0.now());
        let (barber, service) = (barber_id.0.0, service_id.0.map(|s| s.0));
        self.0
            .db
            .read(move |c| store::weekly(c, &rules, now, barber, monday, service))
            .await
            .into()
    }

    /// Service catalog
    ///
    /// Bookable services with duration and price; `include_inactive=true` lists retired
    /// ones too.
    #[oai(path = "/services", method = "get", operation_id = "list_services")]
    async fn list_services(
        &self,
        /// Also list services no longer offered.
        #[oai(default)]
        include_inactive: Query<bool>,
    ) -> Reply<Vec<Service>> {
        let all = include_inactive.0;
        self.0
            .db
            .read(move |c| store::list_services(c, all))
            .await
            .into()
    }

    /// Change a service
    ///
    /// Name, description, duration, price or whether it is offered. Emits `service.changed`
    /// after the change is stored, which purges the cached catalog and the slots sized by
    /// this service.
    #[oai(
        path = "/services/:service_id",
        method = "put",
        operation_id = "update_service"
    )]
    async fn update_service(
        &self,
        /// The service.
        service_id: Path<PathId<ServiceId>>,
        body: JsonBody<ServiceUpdate>,
    ) -> Reply<Service> {
        let id = service_id.0.0;
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| store::update_service(c, id, &body.0, &stamp))
            .await;
        if result.is_ok() {
            events::service_changed(&self.0.ctx, id);
        }
        result.into()
    }

    /// Booking settings
    ///
    /// The rules clients book under: time zone, slot grid, notice, horizon, opening hours.
    #[oai(
        path = "/settings",
        method = "get",
        operation_id = "get_booking_settings"
    )]
    async fn get_booking_settings(&self) -> Reply<BookingSettings> {
        let state = self.0.clone();
        state
            .db
            .read({
                let state = state.clone();
                move |c| {
                    let count = |sql: &str| -> Result<u32, BookingError> {
                        Ok(c.query_row(sql, [], |r| r.get(0))?)
                    };
                    let cfg = &state.config;
                    Ok(BookingSettings {
                        shop_name: cfg.shop_name.clone(),
                        timezone: cfg.timezone.clone(),
                        currency: "USD".into(),
                        slot_minutes: cfg.slot_minutes,
                        default_duration_minutes: cfg.default_duration_minutes,
                        min_notice_minutes: cfg.min_notice_minutes,
                        max_advance_days: cfg.max_advance_days,
                        lookback_days: cfg.lookback_days,
                        cancellation_notice_hours: cfg.cancellation_notice_hours,
                        opening_hours: Span {
                            start: hhmm(state.opening.0),
                            end: hhmm(state.opening.1),
                        },
                        active_services: count("SELECT COUNT(*) FROM services WHERE active = 1")?,
                        active_barbers: count("SELECT COUNT(*) FROM barbers WHERE active = 1")?,
                    })
                }
            })
            .await
            .into()
    }
}
