//! Test harness: the plugin built over a real SQLite file in a temp dir, its routes mounted the
//! way the core mounts them (from `PluginApi::into_routes`), and a [`TestHost`] that records
//! events and invalidations and answers `get_or_load` from a small in-memory map.

#![allow(dead_code)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use larder_booking::config::DatasetConfig;
use larder_booking::{BookingConfig, BookingPlugin};
use larder_plugin::context::{BytesLoader, CachedBytes};
use larder_plugin::{Event, Host, Invalidation, Plugin, PluginContext, PluginError, PluginInit};
use poem::test::TestClient;
use poem::{Route, RouteMethod};

/// An event as the host saw it, and whether its change was already committed then.
#[derive(Debug, Clone)]
pub struct Seen {
    pub event: Event,
    /// For appointment and payment events: the row was visible to a fresh connection when
    /// the event arrived (so the change was committed before the emit).
    pub committed: Option<bool>,
}

/// The instant the tests run at unless they choose another: Wednesday 2026-03-04, 15:00 UTC
/// (the test shop's zone). Tests never read the wall clock.
pub const NOW: &str = "2026-03-04T15:00:00Z";

pub fn instant(s: &str) -> jiff::Timestamp {
    s.parse().unwrap_or_else(|e| panic!("`{s}`: {e}"))
}

#[derive(Default)]
pub struct TestHost {
    /// What the plugin's clock reads ([`NOW`] unless the test chose another instant).
    pub now: Mutex<Option<jiff::Timestamp>>,
    pub events: Mutex<Vec<Seen>>,
    pub invalidations: Mutex<Vec<Invalidation>>,
    /// Warm sources the plugin asked the core to run.
    pub warmed: Mutex<Vec<String>>,
    cache: Arc<Mutex<HashMap<String, bytes::Bytes>>>,
    db: Mutex<Option<PathBuf>>,
}

impl TestHost {
    pub fn events(&self) -> Vec<Seen> {
        self.events.lock().unwrap().clone()
    }

    pub fn events_named(&self, name: &str) -> Vec<Seen> {
        self.events()
            .into_iter()
            .filter(|s| s.event.name == name)
            .collect()
    }

    fn committed(&self, event: &Event) -> Option<bool> {
        let path = self.db.lock().unwrap().clone()?;
        let conn = rusqlite::Connection::open(path).ok()?;
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
}

impl Host for TestHost {
    /// The core sends the requests through the server; here each source "warms" nothing.
    fn warm(
        &self,
        plugin: &str,
        sources: Vec<String>,
    ) -> futures::future::BoxFuture<
        'static,
        Result<Vec<larder_plugin::WarmRun>, larder_plugin::PluginError>,
    > {
        self.warmed.lock().unwrap().extend(sources.iter().cloned());
        let runs = sources
            .into_iter()
            .map(|s| larder_plugin::WarmRun {
                source: format!("{plugin}.{s}"),
                job: format!("{plugin}.{s}"),
                ..Default::default()
            })
            .collect();
        Box::pin(async move { Ok(runs) })
    }

    fn now(&self) -> std::time::SystemTime {
        self.now
            .lock()
            .unwrap()
            .unwrap_or_else(|| instant(NOW))
            .into()
    }

    fn get_or_load(
        &self,
        plugin: &str,
        _rule: &str,
        key: String,
        load: BytesLoader,
    ) -> BoxFuture<'static, Result<CachedBytes, PluginError>> {
        let key = format!("{plugin}:{key}");
        let cache = self.cache.clone();
        Box::pin(async move {
            if let Some(bytes) = cache.lock().unwrap().get(&key).cloned() {
                return Ok(CachedBytes {
                    bytes,
                    cache_hit: true,
                });
            }
            let bytes = load.await?;
            cache.lock().unwrap().insert(key, bytes.clone());
            Ok(CachedBytes {
                bytes,
                cache_hit: false,
            })
        })
    }

    fn invalidate(
        &self,
        _plugin: &str,
        what: Invalidation,
    ) -> BoxFuture<'static, Result<u64, PluginError>> {
        self.invalidations.lock().unwrap().push(what);
        Box::pin(async { Ok(1) })
    }

    fn cache_stats(&self, plugin: &str) -> BoxFuture<'static, serde_json::Value> {
        let entries = self.cache.lock().unwrap().len();
        let plugin = plugin.to_owned();
        Box::pin(async move {
            // The core's shape: counters per rule, none at the top level.
            serde_json::json!({
                "plugin": plugin,
                "entries": entries,
                "rules": {
                    "booking-slots": { "hits_l1": 2, "hits_l2": 0, "stale_served": 0, "misses": 1 },
                    "booking-services": { "hits_l1": 0, "hits_l2": 1, "stale_served": 0, "misses": 0 },
                },
            })
        })
    }

    fn emit(&self, event: Event) {
        let committed = self.committed(&event);
        self.events.lock().unwrap().push(Seen { event, committed });
    }

    fn spawn(&self, task: BoxFuture<'static, ()>) {
        tokio::spawn(task);
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
    pub client: Arc<TestClient<Route>>,
    pub host: Arc<TestHost>,
    pub plugin: BookingPlugin,
    pub db_path: PathBuf,
    pub _dir: tempfile::TempDir,
}

pub async fn app() -> App {
    app_at(instant(NOW)).await
}

/// The plugin over a fresh database, its clock started at `now` (the data is generated
/// relative to that instant).
pub async fn app_at(now: jiff::Timestamp) -> App {
    let dir = tempfile::tempdir().unwrap();
    let config = small_config(dir.path());
    app_with_at(dir, config, now).await
}

pub async fn app_with(dir: tempfile::TempDir, config: BookingConfig) -> App {
    app_with_at(dir, config, instant(NOW)).await
}

pub async fn app_with_at(
    dir: tempfile::TempDir,
    config: BookingConfig,
    now: jiff::Timestamp,
) -> App {
    let host = Arc::new(TestHost::default());
    *host.now.lock().unwrap() = Some(now);
    let db_path = config.database.clone();
    *host.db.lock().unwrap() = Some(db_path.clone());
    let context = PluginContext::new("booking", host.clone());
    let plugin = BookingPlugin::new(PluginInit { config, context })
        .await
        .expect("plugin starts");
    let table = plugin.api().into_routes("booking").unwrap();
    let mut route = Route::new();
    for (path, methods) in table {
        let mut rm = RouteMethod::new();
        for (method, ep) in methods {
            rm = rm.method(method, ep);
        }
        route = route.at(path, rm);
    }
    App {
        client: Arc::new(TestClient::new(route)),
        host,
        plugin,
        db_path,
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
