//! The objects the API reads and writes (poem-openapi schemas; serde for cached values).

use poem_openapi::{Enum, Object};
use serde::{Deserialize, Serialize};

/// A bookable slot.
#[derive(Object, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Slot {
    /// Start, `HH:MM` in the shop's time zone.
    pub start: String,
    /// End (exclusive), `HH:MM`.
    pub end: String,
}

/// Free slots of one barber on one day.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct SlotList {
    /// The barber.
    pub barber_id: i64,
    /// The day, `YYYY-MM-DD`.
    pub date: String,
    /// The service whose duration sized the slots, when one was given.
    pub service_id: Option<i64>,
    /// Length of each slot in minutes.
    pub duration_minutes: u32,
    /// Free slots in time order.
    pub slots: Vec<Slot>,
}

/// A `[start, end)` span of working time.
#[derive(Object, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Span {
    /// `HH:MM`.
    pub start: String,
    /// `HH:MM`.
    pub end: String,
}

/// One day of a barber's week.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct DayAvailability {
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `monday` ... `sunday`.
    pub weekday: String,
    /// Working hours that day, after whole-day time off.
    pub hours: Vec<Span>,
    /// Whether any time off falls on that day.
    pub time_off: bool,
    /// Minutes already booked.
    pub booked_minutes: u32,
    /// Free working minutes.
    pub free_minutes: u32,
    /// Bookable slots (sized by the service, or the default duration).
    pub slots: Vec<Slot>,
}

/// A barber's week.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct WeeklyAvailability {
    /// The barber.
    pub barber_id: i64,
    /// The Monday the week starts on.
    pub week_start: String,
    /// Slot length in minutes.
    pub duration_minutes: u32,
    /// Seven days from Monday.
    pub days: Vec<DayAvailability>,
    /// Bookable slots in the week.
    pub total_slots: u32,
}

/// A barber as listed.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct Barber {
    /// Id.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// What they are known for.
    pub specialties: Vec<String>,
    /// Years of experience.
    pub years_experience: u32,
    /// Average rating, 1–5.
    pub rating: f64,
    /// Whether the barber takes bookings.
    pub active: bool,
}

/// Weekly working hours of one weekday.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct WorkingDay {
    /// `monday` ... `sunday`.
    pub weekday: String,
    /// Working spans (a gap is a break).
    pub hours: Vec<Span>,
}

/// A barber's full profile.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct BarberProfile {
    /// Id.
    pub id: i64,
    /// Full name.
    pub name: String,
    /// Contact email.
    pub email: String,
    /// Contact phone.
    pub phone: String,
    /// Short biography.
    pub bio: String,
    /// What they are known for.
    pub specialties: Vec<String>,
    /// Years of experience.
    pub years_experience: u32,
    /// Average rating, 1–5.
    pub rating: f64,
    /// Whether the barber takes bookings.
    pub active: bool,
    /// Weekly working hours.
    pub working_hours: Vec<WorkingDay>,
    /// Time off from today on.
    pub upcoming_time_off: Vec<TimeOff>,
    /// Last change.
    pub updated_at: String,
}

/// A period a barber does not work.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct TimeOff {
    /// First day.
    pub start_date: String,
    /// Last day (inclusive).
    pub end_date: String,
    /// Part of the day, when not the whole day.
    pub hours: Option<Span>,
    /// Why.
    pub reason: String,
}

/// Changes to a barber's profile; absent fields stay as they are.
#[derive(Object, Debug, Clone, Default)]
#[oai(example, skip_serializing_if_is_none)]
pub struct BarberUpdate {
    /// Full name.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: Option<String>,
    /// Contact phone.
    #[oai(validator(min_length = 3, max_length = 30))]
    pub phone: Option<String>,
    /// Short biography.
    #[oai(validator(max_length = 2000))]
    pub bio: Option<String>,
    /// What they are known for.
    #[oai(validator(max_items = 20))]
    pub specialties: Option<Vec<String>>,
}

/// A service of the catalog.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct Service {
    /// Id.
    pub id: i64,
    /// Name.
    pub name: String,
    /// `haircut`, `beard`, `shave`, `combo`, `color`.
    pub category: String,
    /// What is included.
    pub description: String,
    /// Duration in minutes.
    pub duration_minutes: u32,
    /// Price in the shop's currency.
    pub price: f64,
    /// Whether it can be booked.
    pub active: bool,
}

/// Changes to a service; absent fields stay as they are.
#[derive(Object, Debug, Clone, Default)]
#[oai(example, skip_serializing_if_is_none)]
pub struct ServiceUpdate {
    /// Name.
    #[oai(validator(min_length = 1, max_length = 100))]
    pub name: Option<String>,
    /// What is included.
    #[oai(validator(max_length = 2000))]
    pub description: Option<String>,
    /// Duration in minutes (a multiple of 5).
    #[oai(validator(minimum(value = "5"), maximum(value = "480"), multiple_of = "5"))]
    pub duration_minutes: Option<u32>,
    /// Price.
    #[oai(validator(minimum(value = "0"), maximum(value = "10000")))]
    pub price: Option<f64>,
    /// Whether it can be booked.
    pub active: Option<bool>,
}

/// The booking rules clients see.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct BookingSettings {
    /// Shop name.
    pub shop_name: String,
    /// IANA time zone all dates and times are in.
    pub timezone: String,
    /// Currency of prices and payments.
    pub currency: String,
    /// Start times are multiples of this many minutes.
    pub slot_minutes: u32,
    /// Slot length when no service is chosen.
    pub default_duration_minutes: u32,
    /// Earliest start from now for same-day bookings, in minutes.
    pub min_notice_minutes: u32,
    /// How many days ahead bookings are taken; slots and availability are answered up to
    /// that day.
    pub max_advance_days: u32,
    /// How many days back slots and availability are answered.
    pub lookback_days: u32,
    /// Free cancellation up to this many hours before the start.
    pub cancellation_notice_hours: u32,
    /// The shop's opening hours.
    pub opening_hours: Span,
    /// Bookable services.
    pub active_services: u32,
    /// Barbers taking bookings.
    pub active_barbers: u32,
}

/// State of an appointment.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    /// Upcoming.
    Booked,
    /// Took place.
    Completed,
    /// Cancelled; its slot is free again.
    Cancelled,
    /// The client did not come.
    NoShow,
}

impl AppointmentStatus {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Booked => "booked",
            Self::Completed => "completed",
            Self::Cancelled => "cancelled",
            Self::NoShow => "no_show",
        }
    }

    /// Parses the database spelling.
    pub fn parse(s: &str) -> Self {
        match s {
            "completed" => Self::Completed,
            "cancelled" => Self::Cancelled,
            "no_show" => Self::NoShow,
            _ => Self::Booked,
        }
    }
}

/// An appointment.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct Appointment {
    /// Id.
    pub id: i64,
    /// The barber.
    pub barber_id: i64,
    /// The client.
    pub client_id: i64,
    /// The service.
    pub service_id: i64,
    /// Day, `YYYY-MM-DD`.
    pub date: String,
    /// Start, `HH:MM`.
    pub start: String,
    /// End, `HH:MM`.
    pub end: String,
    /// State.
    pub status: AppointmentStatus,
    /// Price at booking time.
    pub price: f64,
    /// When it was booked (shop time).
    pub created_at: String,
}

/// A page of appointments.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct AppointmentPage {
    /// The appointments, by date and start.
    pub items: Vec<Appointment>,
    /// Page number, from 1.
    pub page: u32,
    /// Page size.
    pub size: u32,
    /// Matching appointments over all pages.
    pub total_items: u64,
    /// Number of pages.
    pub total_pages: u64,
}

/// A validated payment to record.
#[derive(Debug, Clone)]
pub struct NewPayment {
    /// The appointment paid for.
    pub appointment_id: i64,
    /// Amount, in the shop's currency (cents are kept).
    pub amount: f64,
    /// Tip on top of the amount.
    pub tip: Option<f64>,
    /// `card`, `cash` or `wallet` (default `card`).
    pub method: Option<PaymentMethod>,
}

/// How a payment was made.
#[derive(Enum, Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[oai(rename_all = "snake_case")]
pub enum PaymentMethod {
    /// Card.
    Card,
    /// Cash.
    Cash,
    /// Phone wallet.
    Wallet,
}

impl PaymentMethod {
    /// The database spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Card => "card",
            Self::Cash => "cash",
            Self::Wallet => "wallet",
        }
    }
}

/// A recorded payment.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct Payment {
    /// Id.
    pub id: i64,
    /// The appointment paid for.
    pub appointment_id: i64,
    /// Amount.
    pub amount: f64,
    /// Tip.
    pub tip: f64,
    /// `card`, `cash` or `wallet`.
    pub method: String,
    /// When (shop time).
    pub created_at: String,
}

/// A client's profile.
#[derive(Object, Debug, Clone, Serialize, Deserialize)]
pub struct UserProfile {
    /// Id.
    pub id: i64,
    /// First name.
    pub first_name: String,
    /// Last name.
    pub last_name: String,
    /// Email.
    pub email: String,
    /// Phone.
    pub phone: String,
    /// Barber booked by default.
    pub preferred_barber_id: Option<i64>,
    /// Notes for the barber.
    pub notes: String,
    /// Accepts marketing messages.
    pub marketing_opt_in: bool,
    /// Client since.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// Completed visits.
    pub visits: u32,
    /// Day of the last completed visit.
    pub last_visit: Option<String>,
}

/// Changes to a client's profile; absent fields stay as they are.
#[derive(Object, Debug, Clone, Default)]
#[oai(example, skip_serializing_if_is_none)]
pub struct UserUpdate {
    /// First name.
    #[oai(validator(min_length = 1, max_length = 60))]
    pub first_name: Option<String>,
    /// Last name.
    #[oai(validator(min_length = 1, max_length = 60))]
    pub last_name: Option<String>,
    /// Email.
    #[oai(validator(
        min_length = 3,
        max_length = 120,
        pattern = r"^[^@\s]+@[^@\s]+\.[^@\s]+$"
    ))]
    pub email: Option<String>,
    /// Phone.
    #[oai(validator(min_length = 3, max_length = 30))]
    pub phone: Option<String>,
    /// Barber booked by default.
    #[oai(validator(minimum(value = "1")))]
    pub preferred_barber_id: Option<i64>,
    /// Notes for the barber.
    #[oai(validator(max_length = 2000))]
    pub notes: Option<String>,
    /// Accepts marketing messages.
    pub marketing_opt_in: Option<bool>,
}

// The documents' examples: one field each, so "Try it out" changes little.

impl poem_openapi::types::Example for BarberUpdate {
    fn example() -> Self {
        BarberUpdate {
            bio: Some("Classic cuts and hot towel shaves since 2012.".into()),
            ..Default::default()
        }
    }
}

impl poem_openapi::types::Example for ServiceUpdate {
    fn example() -> Self {
        ServiceUpdate {
            price: Some(35.0),
            ..Default::default()
        }
    }
}

impl poem_openapi::types::Example for UserUpdate {
    fn example() -> Self {
        UserUpdate {
            marketing_opt_in: Some(false),
            ..Default::default()
        }
    }
}
