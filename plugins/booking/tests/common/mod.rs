//! Test support: the plugin in the whole application (`larder_core::testing::mount`: the
//! request pipeline, `policies/booking.yaml` as the plugin ships it, the memory cache, the
//! real host) over a real SQLite file in a temporary folder, with the server's clock
//! started at a chosen instant.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use larder_booking::config::DatasetConfig;
use larder_booking::{BookingConfig, BookingPlugin};
use larder_core::testing::{Mount, Mounted, mount};
use larder_plugin::Event;
use poem::test::TestResponse;

/// The instant the tests run at unless they choose another: Wednesday 2026-03-04, 15:00 UTC
/// (the test shop's zone). Tests never read the wall clock.
pub const NOW: &str = "2026-03-04T15:00:00Z";

/// The core's admin key: the cache aliases (`/api/v2/cache/*`) need `cache:read` or
/// `cache:manage`, which an admin key grants.
pub const ADMIN_KEY: &str = "admin-key-for-the-tests";

pub fn instant(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|e| panic!("`{s}`: {e}"))
}

/// An event as the plugin emitted it, and whether its change was already committed then.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: Event,
    /// For appointment and payment events: the row was visible to a fresh connection when
    /// the event was emitted (so the change was committed before the emit).
    pub committed: Option<bool>,
}

/// What the test checked at each emit, in order.
type Emitted = Arc<Mutex<Vec<Seen>>>;

/// Whether the change an event names is visible in the database file now.
fn committed(db: &Path, event: &Event) -> Option<bool> {
    let conn = rusqlite::Connection::open(db).ok()?;
    let field = |k: &str| event.fields.get(k).and_then(|v| v.as_i64());
    match event.name.as_str() {
        "appointment.created" | "appointment.cancelled" => {
            let want = if event.name == "appointment.created" {
                "booked"
            } else {
                "cancelled"
            };
            let status: Option<String> = conn
                .query_row(
                    "SELECT status FROM appointments WHERE id = ?1",
                    [field("appointment_id")?],
                    |r| r.get(0),
                )
                .ok();
            Some(status.as_deref() == Some(want))
        }
        "payment.recorded" => Some(
            conn.query_row(
                "SELECT COUNT(*) FROM payments WHERE id = ?1",
                [field("payment_id")?],
                |r| r.get::<_, i64>(0),
            )
            .ok()?
                == 1,
        ),
        _ => None,
    }
}

/// A small dataset: quick to generate, still realistic.
pub fn small_config(dir: &Path) -> BookingConfig {
    BookingConfig {
        database: dir.join("booking.db"),
        seed: 7,
        timezone: "UTC".into(),
        dataset: DatasetConfig {
            barbers: 3,
            clients: 60,
            past_weeks: 3,
            future_weeks: 2,
            occupancy: 0.6,
        },
        ..BookingConfig::default()
    }
}

pub struct App {
    /// The application around the plugin; shared, so concurrent tasks can send requests.
    pub m: Arc<Mounted>,
    pub db_path: PathBuf,
    emitted: Emitted,
    pub _dir: tempfile::TempDir,
}

impl App {
    /// The events named `name` the plugin emitted, with whether each one's change was
    /// committed at the emit.
    pub fn events_named(&self, name: &str) -> Vec<Seen> {
        self.emitted
            .lock()
            .unwrap()
            .iter()
            .filter(|s| s.event.name == name)
            .cloned()
            .collect()
    }

    /// A request to a cache alias, with the core's admin key.
    pub fn admin(
        &self,
        method: poem::http::Method,
        uri: &str,
    ) -> poem::test::TestRequestBuilder<'_, Arc<larder_core::http::pipeline::Server>> {
        self.m
            .client
            .request(method, uri)
            .header("x-admin-key", ADMIN_KEY)
    }

    /// The answer's `Cache-Status`.
    pub fn cache_status(&self, resp: &TestResponse) -> String {
        self.m.cache_status(resp)
    }
}

pub async fn app() -> App {
    app_at(instant(NOW)).await
}

/// The plugin over a fresh database, the server's clock started at `now` (the data is
/// generated relative to that instant).
pub async fn app_at(now: jiff::Timestamp) -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    app_with_at(dir, config, now).await
}

pub async fn app_with(dir: tempfile::TempDir, config: BookingConfig) -> App {
    app_with_at(dir, config, instant(NOW)).await
}

/// The plugin with `config` as its settings (its database inside `dir`, which the app
/// keeps), the server's clock started at `now`.
pub async fn app_with_at(
    dir: tempfile::TempDir,
    config: BookingConfig,
    now: jiff::Timestamp,
) -> App {
    let db_path = config.database.clone();
    let m = mount::<BookingPlugin>(Mount {
        settings: serde_json::to_value(&config).expect("settings are JSON"),
        config: format!(
            "server: {{ clock_start: \"{now}\" }}\n\
             security: {{ admin_keys: [{{ key: \"{ADMIN_KEY}\", role: write }}] }}\n"
        ),
        ..Mount::default()
    })
    .await;
    let emitted = Emitted::default();
    let (seen, db) = (emitted.clone(), db_path.clone());
    m.on_event(move |event| {
        let committed = committed(&db, event);
        seen.lock().unwrap().push(Seen {
            event: event.clone(),
            committed,
        });
    });
    App {
        m: Arc::new(m),
        db_path,
        emitted,
        _dir: dir,
    }
}

/// Test barber 100: works 09:00–12:00 and 13:00–17:00 every day but `day_off` (0 = Monday).
pub fn add_test_barber(db: &Path, day_off: u32) {
    let conn = rusqlite::Connection::open(db).unwrap();
    conn.execute(
        "INSERT INTO barbers (id, name, email, phone, bio, specialties, years_experience, rating, active, updated_at)
         VALUES (100, 'Test Barber', 'test@example.com', '+1-555-0000', 'Tests.', 'fades', 5, 4.5, 1, '2025-01-01T00:00:00')",
        [],
    )
    .unwrap();
    for wd in 0..7 {
        if wd == day_off {
            continue;
        }
        for (a, b) in [(540, 720), (780, 1020)] {
            conn.execute(
                "INSERT INTO working_hours (barber_id, weekday, start_min, end_min) VALUES (100, ?1, ?2, ?3)",
                [wd, a, b],
            )
            .unwrap();
        }
    }
}

/// Runs SQL on the database file, behind the plugin's back: no event, so no purge.
pub fn sql(db: &Path, statement: &str) {
    rusqlite::Connection::open(db)
        .unwrap()
        .execute_batch(statement)
        .unwrap();
}

/// The day of [`NOW`] (UTC, the test shop's zone) plus `days`.
pub fn day(days: i64) -> jiff::civil::Date {
    let today = instant(NOW).to_zoned(jiff::tz::TimeZone::UTC).date();
    larder_booking::time::add_days(today, days)
}
