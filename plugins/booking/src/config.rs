//! The plugin's typed settings (`plugins.booking.settings` in the server config).

use std::path::PathBuf;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Settings of the `booking` plugin. Every field has a default, so the plugin runs with no
/// settings block at all.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct BookingConfig {
    /// SQLite database file, relative to the working directory. Created and filled with a
    /// generated dataset on first start when it does not exist.
    pub database: PathBuf,
    /// Seed of the dataset generator: one seed and one start date always give the same data.
    pub seed: u64,
    /// IANA time zone of the shop (`America/New_York`). "Today" and "now" for booking rules
    /// are taken in this zone.
    pub timezone: String,
    /// Shop name, shown in the booking settings.
    pub shop_name: String,
    /// Slot granularity in minutes: offered start times are multiples of it from midnight.
    #[schemars(range(min = 5, max = 120))]
    pub slot_minutes: u32,
    /// Length of a slot when the request names no service, in minutes.
    #[schemars(range(min = 5, max = 480))]
    pub default_duration_minutes: u32,
    /// Earliest start, in minutes from now, of a slot offered or booked for today.
    pub min_notice_minutes: u32,
    /// How many days ahead clients may book. Also the last day the slots and weekly
    /// availability routes answer for.
    #[schemars(range(min = 1, max = 365))]
    pub max_advance_days: u32,
    /// How many days back the slots and weekly availability routes answer for (past days
    /// have no slots; their hours and booked time still show). Earlier dates, like dates
    /// past `max_advance_days`, are refused with 400: every date answered is a cache entry,
    /// so this window bounds what clients can make the cache hold.
    #[schemars(range(max = 3650))]
    pub lookback_days: u32,
    /// Clients may cancel up to this many hours before the start (shown in the settings;
    /// the API itself lets staff cancel any time).
    pub cancellation_notice_hours: u32,
    /// Opening hours used for generated barbers, as `HH:MM-HH:MM`.
    pub default_opening: String,
    /// Size of the generated dataset.
    pub dataset: DatasetConfig,
    /// SQLite connections used for reads (writes use one dedicated connection).
    #[schemars(range(min = 1, max = 32))]
    pub read_connections: u32,
}

/// Size of the generated dataset.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct DatasetConfig {
    /// Number of barbers.
    #[schemars(range(min = 1, max = 200))]
    pub barbers: u32,
    /// Number of clients.
    #[schemars(range(min = 1, max = 1_000_000))]
    pub clients: u32,
    /// Weeks of history (appointments before today, mostly completed and paid).
    #[schemars(range(max = 520))]
    pub past_weeks: u32,
    /// Weeks of upcoming appointments after today.
    #[schemars(range(max = 52))]
    pub future_weeks: u32,
    /// Share of working time booked in the past, 0.0–1.0 (the future gets about half of it).
    pub occupancy: f64,
}

impl Default for BookingConfig {
    fn default() -> Self {
        Self {
            database: PathBuf::from("data/booking.db"),
            seed: 4,
            timezone: "America/New_York".into(),
            shop_name: "Larder Barbershop".into(),
            slot_minutes: 15,
            default_duration_minutes: 30,
            min_notice_minutes: 60,
            max_advance_days: 90,
            lookback_days: 365,
            cancellation_notice_hours: 24,
            default_opening: "09:00-18:00".into(),
            dataset: DatasetConfig::default(),
            read_connections: 4,
        }
    }
}

impl Default for DatasetConfig {
    fn default() -> Self {
        Self {
            barbers: 8,
            clients: 2_000,
            past_weeks: 26,
            future_weeks: 4,
            occupancy: 0.7,
        }
    }
}
