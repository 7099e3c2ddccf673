//! The SQLite database: schema, and connections kept off the async runtime.
//!
//! Reads use a small pool of connections; writes use one dedicated connection behind an
//! async mutex, so writers queue without busy-waiting and each write runs its checks and its
//! change in one `BEGIN IMMEDIATE` transaction. Every call runs on tokio's blocking pool, never
//! on a runtime worker. The database is in WAL mode, so reads never wait for the writer.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OpenFlags};
use tokio::sync::Semaphore;

use crate::error::BookingError;

/// The schema. `appointments_one_start` is the last line of defence against a double
/// booking (two live appointments of one barber starting at the same minute); overlaps with
/// different starts are refused by the check in the write transaction.
const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS barbers (
    id               INTEGER PRIMARY KEY,
    name             TEXT NOT NULL,
    email            TEXT NOT NULL UNIQUE,
    phone            TEXT NOT NULL,
    bio              TEXT NOT NULL,
    specialties      TEXT NOT NULL,
    years_experience INTEGER NOT NULL,
    rating           REAL NOT NULL,
    active           INTEGER NOT NULL DEFAULT 1,
    updated_at       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS working_hours (
    barber_id INTEGER NOT NULL REFERENCES barbers(id),
    weekday   INTEGER NOT NULL CHECK (weekday BETWEEN 0 AND 6),
    start_min INTEGER NOT NULL,
    end_min   INTEGER NOT NULL,
    CHECK (start_min < end_min),
    PRIMARY KEY (barber_id, weekday, start_min)
);
CREATE TABLE IF NOT EXISTS time_off (
    id         INTEGER PRIMARY KEY,
    barber_id  INTEGER NOT NULL REFERENCES barbers(id),
    start_date TEXT NOT NULL,
    end_date   TEXT NOT NULL,
    start_min  INTEGER,
    end_min    INTEGER,
    reason     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS time_off_barber ON time_off (barber_id, start_date);
CREATE TABLE IF NOT EXISTS services (
    id           INTEGER PRIMARY KEY,
    name         TEXT NOT NULL UNIQUE,
    category     TEXT NOT NULL,
    description  TEXT NOT NULL,
    duration_min INTEGER NOT NULL CHECK (duration_min > 0),
    price_cents  INTEGER NOT NULL CHECK (price_cents >= 0),
    active       INTEGER NOT NULL DEFAULT 1,
    updated_at   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS clients (
    id                  INTEGER PRIMARY KEY,
    first_name          TEXT NOT NULL,
    last_name           TEXT NOT NULL,
    email               TEXT NOT NULL UNIQUE,
    phone               TEXT NOT NULL,
    preferred_barber_id INTEGER REFERENCES barbers(id),
    notes               TEXT NOT NULL DEFAULT '',
    marketing_opt_in    INTEGER NOT NULL DEFAULT 0,
    created_at          TEXT NOT NULL,
    updated_at          TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS appointments (
    id           INTEGER PRIMARY KEY,
    barber_id    INTEGER NOT NULL REFERENCES barbers(id),
    client_id    INTEGER NOT NULL REFERENCES clients(id),
    service_id   INTEGER NOT NULL REFERENCES services(id),
    date         TEXT NOT NULL,
    start_min    INTEGER NOT NULL,
    end_min      INTEGER NOT NULL,
    status       TEXT NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled', 'no_show')),
    price_cents  INTEGER NOT NULL,
    created_at   TEXT NOT NULL,
    cancelled_at TEXT,
    CHECK (start_min < end_min)
);
CREATE INDEX IF NOT EXISTS appointments_barber_day ON appointments (barber_id, date, start_min);
CREATE INDEX IF NOT EXISTS appointments_client ON appointments (client_id, date);
CREATE INDEX IF NOT EXISTS appointments_day ON appointments (date);
CREATE UNIQUE INDEX IF NOT EXISTS appointments_one_start
    ON appointments (barber_id, date, start_min) WHERE status <> 'cancelled';
CREATE TABLE IF NOT EXISTS payments (
    id             INTEGER PRIMARY KEY,
    appointment_id INTEGER NOT NULL REFERENCES appointments(id),
    amount_cents   INTEGER NOT NULL CHECK (amount_cents > 0),
    tip_cents      INTEGER NOT NULL DEFAULT 0 CHECK (tip_cents >= 0),
    method         TEXT NOT NULL,
    created_at     TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS payments_appointment ON payments (appointment_id);
CREATE INDEX IF NOT EXISTS payments_created ON payments (created_at);
"#;

/// Handle to the database; cheap to clone.
#[derive(Clone)]
pub struct Db {
    inner: Arc<Inner>,
}

struct Inner {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    permits: Semaphore,
    writer: Arc<tokio::sync::Mutex<Connection>>,
}

/// How long a connection waits for another process's lock.
const BUSY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

fn configure(conn: &Connection, writer: bool) -> rusqlite::Result<()> {
    // The writer mutex serialises our own writes; the timeout only covers another process.
    conn.busy_timeout(BUSY_TIMEOUT)?;
    if writer {
        // Switching a new file to WAL takes an exclusive lock, and SQLite answers BUSY at once,
        // without its busy handler, when another process holds one (two servers creating one
        // file): wait for it here. WAL is a property of the file, so readers need not ask.
        let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
        loop {
            match conn.execute_batch("PRAGMA journal_mode = WAL;") {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::DatabaseBusy
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                other => break other?,
            }
        }
    }
    conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")
}

fn open_conn(path: &Path, flags: OpenFlags) -> Result<Connection, BookingError> {
    let conn = Connection::open_with_flags(path, flags).map_err(|e| {
        BookingError::internal(format!("cannot open database `{}`: {e}", path.display()))
    })?;
    configure(&conn, !flags.contains(OpenFlags::SQLITE_OPEN_READ_ONLY))?;
    Ok(conn)
}

impl Db {
    /// Opens (creating when missing) the database at `path` with `readers` read connections
    /// and applies the schema. Blocking: call it from a blocking context.
    pub fn open_blocking(path: &Path, readers: usize) -> Result<Db, BookingError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                BookingError::internal(format!(
                    "cannot create the database folder `{}`: {e}",
                    dir.display()
                ))
            })?;
        }
        let writer = open_conn(path, OpenFlags::default())?;
        // One immediate transaction: statement-by-statement autocommit lets two processes
        // creating one new file meet a lock upgrade that SQLite refuses at once (BUSY without
        // the busy handler); BEGIN IMMEDIATE waits for the other instead.
        writer.execute_batch(&format!("BEGIN IMMEDIATE;\n{SCHEMA}\nCOMMIT;"))?;
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
            | OpenFlags::SQLITE_OPEN_URI;
        let readers = readers.max(1);
        let pool = (0..readers)
            .map(|_| open_conn(path, flags))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Db {
            inner: Arc::new(Inner {
                path: path.to_owned(),
                readers: Mutex::new(pool),
                permits: Semaphore::new(readers),
                writer: Arc::new(tokio::sync::Mutex::new(writer)),
            }),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.inner.path
    }

    /// Runs `f` on a read connection, on the blocking pool.
    pub async fn read<T, F>(&self, f: F) -> Result<T, BookingError>
    where
        T: Send + 'static,
        F: FnOnce(&Connection) -> Result<T, BookingError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| BookingError::internal("database closed"))?;
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            // A permit guarantees a free connection.
            let conn = inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .pop()
                .ok_or_else(|| BookingError::internal("no free database connection"))?;
            let result = f(&conn);
            inner
                .readers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(conn);
            result
        })
        .await
        .map_err(|e| BookingError::internal(format!("database task failed: {e}")))?
    }

    /// Runs `f` on the write connection, on the blocking pool, one writer at a time.
    /// `f` opens its own transaction (`BEGIN IMMEDIATE` for read-check-write sequences).
    pub async fn write<T, F>(&self, f: F) -> Result<T, BookingError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> Result<T, BookingError> + Send + 'static,
    {
        let mut guard = self.inner.writer.clone().lock_owned().await;
        tokio::task::spawn_blocking(move || f(&mut guard))
            .await
            .map_err(|e| BookingError::internal(format!("database task failed: {e}")))?
    }
}
