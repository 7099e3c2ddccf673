//! # `booking`: barbershop booking with exact, event-driven invalidation
//!
//! The built-in plugin behind `/api/v2` (SPEC 2.4, seed 004): barbers, services, working
//! hours and time off, appointments, payments and clients in an embedded SQLite database that
//! is created and filled with a generated dataset on first start.
//!
//! ## Layout
//! - [`config`]: typed settings (`plugins.booking.settings`).
//! - [`db`]: the database: schema, a read pool and one writer, all off the async runtime.
//! - [`generate`]: the deterministic dataset of a fresh database.
//! - [`time`], [`slots`]: strict date/time parsing and pure slot arithmetic.
//! - [`store`]: booking operations (slots, appointments, payments, profiles) over one
//!   connection; every write checks and changes in one `BEGIN IMMEDIATE` transaction.
//! - [`analytics`]: dashboard, revenue and client reports.
//! - [`events`]: the events emitted after each commit, which the policy's `triggers:` map to
//!   exact purges.
//! - [`api`]: the routes, one module per group, with JSON error bodies that name the field.
//!
//! ## Flow
//! A request reaches a route of [`api`] (through the core's cache layer, which applies
//! `policies/booking.yaml`); the handler runs its [`store`] operation on the blocking pool via
//! [`db::Db`]; a write commits, then emits its event; the core runs the policy triggers for
//! that event before the response is sent, so no client sees a booked slot as free after the
//! booking's 2xx.

pub mod analytics;
pub mod api;
pub mod config;
pub mod db;
pub mod error;
pub mod events;
pub mod generate;
pub mod model;
pub mod slots;
pub mod store;
pub mod time;

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use larder_plugin::{
    CACHE_MANAGE, CACHE_READ, EventSpec, HttpDefaults, OperationLimit, Plugin, PluginApi,
    PluginContext, PluginError, PluginInit, RoutePermission, WarmRequest, WarmSource,
    WarmSourceSpec,
};

pub use config::BookingConfig;
pub use error::BookingError;

use crate::db::Db;
use crate::slots::Interval;
use crate::store::{Now, Rules};
use crate::time::ShopClock;

/// Warm source: every active barber's slots for today and the next six days.
pub const WARM_SLOTS_NEXT_7_DAYS: WarmSource = WarmSource::new(
    "slots_next_7_days",
    "GET /api/v2/barbers/{id}/slots?date=D for every active barber and each day from today \
     to today + 6 (up to the booking horizon).",
);
/// Warm source: every active barber's weekly availability for this week and the next.
pub const WARM_AVAILABILITY_TWO_WEEKS: WarmSource = WarmSource::new(
    "availability_two_weeks",
    "GET /api/v2/barbers/{id}/availability/weekly?week_start=M for every active barber, this \
     week and next (when the booking horizon reaches it).",
);

/// The plugin.
pub struct BookingPlugin {
    state: Arc<State>,
}

/// What every route shares.
pub struct State {
    /// The settings.
    pub config: BookingConfig,
    /// Booking rules derived from the settings.
    pub rules: Rules,
    /// The shop's opening hours.
    pub opening: Interval,
    /// The shop's clock.
    pub clock: ShopClock,
    /// The database.
    pub db: Db,
    /// The core's services.
    pub ctx: PluginContext,
    /// The last benchmark run, for the performance report.
    pub last_benchmark: Mutex<Option<serde_json::Value>>,
}

impl State {
    /// "Now" in the shop.
    pub fn now(&self) -> Now {
        Now::at(&self.clock.zoned(), self.rules.min_notice)
    }

    /// The days the slots and weekly availability routes answer for when the shop's date is
    /// `today`: `lookback_days` back to the booking horizon ahead. Each day answered is a
    /// cache entry (per barber and service), so a client walking the calendar must stop.
    pub fn date_window_at(&self, today: jiff::civil::Date) -> time::DateWindow {
        time::DateWindow::around(
            today,
            self.config.lookback_days,
            self.config.max_advance_days,
        )
    }

    /// Nothing if the window holds `date`; otherwise a 400 naming `field` and the window.
    pub fn check_day(&self, field: &str, date: jiff::civil::Date) -> Result<(), BookingError> {
        let today = self.clock.today();
        let w = self.date_window_at(today);
        if w.contains(date) {
            return Ok(());
        }
        Err(BookingError::invalid(
            field,
            "date_out_of_range",
            format!(
                "{field} must be between {} and {} ({} days back to {} days ahead of the \
                 shop's today, {today}); got {date}",
                w.first, w.last, self.config.lookback_days, self.config.max_advance_days
            ),
        ))
    }

    /// Nothing if `monday`'s week overlaps the window; otherwise a 400 naming `field`.
    pub fn check_week(&self, field: &str, monday: jiff::civil::Date) -> Result<(), BookingError> {
        let today = self.clock.today();
        let w = self.date_window_at(today).mondays();
        if w.contains(monday) {
            return Ok(());
        }
        Err(BookingError::invalid(
            field,
            "date_out_of_range",
            format!(
                "{field} must be a Monday between {} and {} (the weeks from {} days back to \
                 {} days ahead of the shop's today, {today}); got {monday}",
                w.first, w.last, self.config.lookback_days, self.config.max_advance_days
            ),
        ))
    }
}

fn setting(path: &str, message: impl Into<String>) -> PluginError {
    PluginError::Config {
        path: path.into(),
        message: message.into(),
    }
}

impl BookingPlugin {
    /// The shared state (for tests and embedding).
    pub fn state(&self) -> &Arc<State> {
        &self.state
    }

    /// The requests a warm source stands for now. Days and weeks past the booking horizon
    /// (a horizon under a week) are left out: the routes refuse them.
    pub async fn warm_requests(&self, name: &str) -> Result<Vec<WarmRequest>, BookingError> {
        let state = self.state.clone();
        let today = state.clock.today();
        let window = state.date_window_at(today);
        let barbers = state.db.read(store::active_barber_ids).await?;
        match name {
            n if n == WARM_SLOTS_NEXT_7_DAYS.name => {
                let days: Vec<_> = (0..7)
                    .map(|i| time::add_days(today, i))
                    .filter(|d| window.contains(*d))
                    .collect();
                Ok(barbers
                    .iter()
                    .flat_map(|b| {
                        days.iter().map(move |d| {
                            WarmRequest::get(format!("/api/v2/barbers/{b}/slots?date={d}"))
                        })
                    })
                    .collect())
            }
            n if n == WARM_AVAILABILITY_TWO_WEEKS.name => {
                let monday = time::week_start(today);
                let weeks: Vec<_> = [0, 7]
                    .map(|i| time::add_days(monday, i))
                    .into_iter()
                    .filter(|m| window.mondays().contains(*m))
                    .collect();
                Ok(barbers
                    .iter()
                    .flat_map(|b| {
                        weeks.iter().map(move |m| {
                            WarmRequest::get(format!(
                                "/api/v2/barbers/{b}/availability/weekly?week_start={m}"
                            ))
                        })
                    })
                    .collect())
            }
            other => Err(BookingError::not_found(
                "source",
                format!(
                    "plugin `booking` has no warm source `{other}`; it has `{}` and `{}`",
                    WARM_SLOTS_NEXT_7_DAYS.name, WARM_AVAILABILITY_TWO_WEEKS.name
                ),
            )),
        }
    }
}

impl Plugin for BookingPlugin {
    type Config = BookingConfig;
    const NAME: &'static str = "booking";
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str =
        "Barbershop booking: slots, appointments, payments, profiles and analytics.";
    // The shipped policy, kept in the repository's policy folder where operators read it.
    const DEFAULT_POLICY: Option<&'static str> =
        Some(include_str!("../../../policies/booking.yaml"));

    async fn new(init: PluginInit<BookingConfig>) -> Result<Self, PluginError> {
        let config = init.config;
        let ctx = init.context.clone();
        let clock = ShopClock::new(&config.timezone, Arc::new(move || ctx.now()))
            .map_err(|e| setting("timezone", e))?;
        let opening = time::parse_range(&config.default_opening)
            .map_err(|e| setting("default_opening", e))?;
        if !(5..=120).contains(&config.slot_minutes) {
            return Err(setting("slot_minutes", "must be between 5 and 120"));
        }
        if !(5..=480).contains(&config.default_duration_minutes) {
            return Err(setting(
                "default_duration_minutes",
                "must be between 5 and 480",
            ));
        }
        if config.dataset.barbers == 0 || config.dataset.clients == 0 {
            return Err(setting(
                "dataset",
                "the dataset needs at least one barber and one client",
            ));
        }
        if !(0.0..=1.0).contains(&config.dataset.occupancy) {
            return Err(setting("dataset.occupancy", "must be between 0.0 and 1.0"));
        }
        // Inspected (`larder check`, ...): an empty database in memory, so checking leaves no
        // file behind; the routes are the same.
        let inspecting = init.context.inspecting();
        let path = if inspecting {
            PathBuf::from("file:larder-booking-inspect?mode=memory&cache=shared")
        } else {
            config.database.clone()
        };
        let readers = config.read_connections.clamp(1, 32) as usize;
        let gen_config = config.clone();
        let today = clock.today();
        let db = tokio::task::spawn_blocking(move || -> Result<Db, BookingError> {
            let db = Db::open_blocking(&path, readers)?;
            Ok(db)
        })
        .await
        .map_err(|e| PluginError::failed(format!("booking: opening the database failed: {e}")))?
        .map_err(|e| PluginError::failed(format!("booking: {e}")))?;
        let generated = if inspecting {
            None
        } else {
            db.write(move |conn| generate::fill(conn, &gen_config, today))
                .await
                .map_err(|e| PluginError::failed(format!("booking: filling the database: {e}")))?
        };
        if let Some(stats) = generated {
            tracing::info!(
                database = %db.path().display(),
                barbers = stats.barbers,
                clients = stats.clients,
                appointments = stats.appointments,
                payments = stats.payments,
                "booking: generated a fresh dataset"
            );
        }
        let rules = Rules {
            step: config.slot_minutes,
            default_duration: config.default_duration_minutes,
            min_notice: config.min_notice_minutes,
            max_advance_days: config.max_advance_days,
        };
        Ok(Self {
            state: Arc::new(State {
                config,
                rules,
                opening,
                clock,
                db,
                ctx: init.context,
                last_benchmark: Mutex::new(None),
            }),
        })
    }

    fn api(&self) -> PluginApi {
        api::build(self.state.clone())
    }

    fn events(&self) -> Vec<EventSpec> {
        events::specs()
    }

    /// The seed's cache aliases need the core's admin keys (or the permissions).
    fn permissions(&self) -> Vec<RoutePermission> {
        vec![
            RoutePermission::new("cache_health", &[CACHE_READ]),
            RoutePermission::new("cache_metrics", &[CACHE_READ]),
            RoutePermission::new("cache_performance_report", &[CACHE_READ]),
            RoutePermission::new("cache_warm", &[CACHE_MANAGE]),
            RoutePermission::new("cache_invalidate", &[CACHE_MANAGE]),
            RoutePermission::new("cache_benchmark", &[CACHE_MANAGE]),
        ]
    }

    /// The shop's zone: the policy's `query.date == today` is the shop's today.
    fn timezone(&self) -> Option<String> {
        Some(self.state().config.timezone.clone())
    }

    /// The benchmark alias burns CPU by design: a few runs a minute at most.
    fn http_defaults(&self) -> HttpDefaults {
        HttpDefaults {
            operation_limits: vec![OperationLimit {
                operation: "cache_benchmark".into(),
                per_second: None,
                per_minute: Some(6),
            }],
            ..HttpDefaults::default()
        }
    }

    fn warm_sources(&self) -> Vec<WarmSourceSpec> {
        vec![
            WARM_SLOTS_NEXT_7_DAYS.spec(),
            WARM_AVAILABILITY_TWO_WEEKS.spec(),
        ]
    }

    async fn warm_source(&self, name: &str) -> Result<Vec<WarmRequest>, PluginError> {
        self.warm_requests(name)
            .await
            .map_err(|e| PluginError::failed(e.to_string()))
    }
}
