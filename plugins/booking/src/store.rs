//! Booking operations over one SQLite connection: reads, and writes that check and change in
//! one `BEGIN IMMEDIATE` transaction.
//!
//! Functions here are blocking; [`crate::db::Db`] runs them on the blocking pool.

use jiff::civil::Date;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};

use crate::error::BookingError;
use crate::model::{
    Appointment, AppointmentPage, AppointmentStatus, Barber, BarberProfile, BarberUpdate,
    DayAvailability, NewPayment, Payment, Service, ServiceUpdate, Slot, SlotList, Span, TimeOff,
    UserProfile, UserUpdate, WeeklyAvailability, WorkingDay,
};
use crate::slots::{self, Interval};
use crate::time::{add_days, hhmm, weekday_index, weekday_name};

/// The booking rules from the settings.
#[derive(Debug, Clone, Copy)]
pub struct Rules {
    /// Start times are multiples of this many minutes.
    pub step: u32,
    /// Slot length without a service.
    pub default_duration: u32,
    /// Same-day notice, minutes.
    pub min_notice: u32,
    /// Booking horizon, days.
    pub max_advance_days: u32,
}

/// "Now" in the shop: today, the minute of the day, and how much of today is still bookable.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    /// Today's date.
    pub today: Date,
    /// Minutes since midnight.
    pub minute: u32,
    /// The first minute of today a booking may start: now plus the minimum notice, counted
    /// in real time (on a DST change day that is not `minute + notice`), or a whole day when
    /// the notice reaches past midnight.
    pub earliest_today: u32,
}

impl Now {
    /// The shop's "now" at the zoned instant `at`, with `min_notice` minutes of notice.
    pub fn at(at: &jiff::Zoned, min_notice: u32) -> Now {
        let minute_of = |z: &jiff::Zoned| z.hour() as u32 * 60 + z.minute() as u32;
        let notice = at
            .checked_add(jiff::Span::new().minutes(i64::from(min_notice)))
            .unwrap_or_else(|_| at.clone());
        let earliest_today = if notice.date() == at.date() {
            minute_of(&notice)
        } else {
            24 * 60
        };
        Now {
            today: at.date(),
            minute: minute_of(at),
            earliest_today,
        }
    }

    /// The earliest minute a slot on `date` may start, or `None` when nothing on that date can
    /// be booked (past, or beyond the horizon).
    fn earliest(&self, rules: &Rules, date: Date) -> Option<u32> {
        if date < self.today || date > add_days(self.today, i64::from(rules.max_advance_days)) {
            None
        } else if date == self.today {
            Some(self.earliest_today)
        } else {
            Some(0)
        }
    }
}

/// A rating to one decimal: the generator's sums of tenths (3.8 + 0.6) are not exact in
/// binary and would print as `4.3999999999999995`.
fn tenths(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn money(cents: i64) -> f64 {
    cents as f64 / 100.0
}

fn cents(amount: f64) -> i64 {
    (amount * 100.0).round() as i64
}

fn span((a, b): Interval) -> Span {
    Span {
        start: hhmm(a),
        end: hhmm(b),
    }
}

fn slot((a, b): Interval) -> Slot {
    Slot {
        start: hhmm(a),
        end: hhmm(b),
    }
}

fn spans_text(spans: &[Interval]) -> String {
    spans
        .iter()
        .map(|&(a, b)| format!("{}–{}", hhmm(a), hhmm(b)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Checks that an active barber exists.
pub fn require_barber(conn: &Connection, id: i64) -> Result<(), BookingError> {
    let active: Option<bool> = conn
        .query_row("SELECT active FROM barbers WHERE id = ?1", [id], |r| {
            r.get(0)
        })
        .optional()?;
    match active {
        Some(true) => Ok(()),
        Some(false) => Err(BookingError::not_found(
            "barber_id",
            format!("barber {id} no longer takes bookings"),
        )),
        None => Err(BookingError::not_found(
            "barber_id",
            format!("no barber with id {id}"),
        )),
    }
}

fn service_row(conn: &Connection, id: i64) -> Result<(u32, i64, bool), BookingError> {
    conn.query_row(
        "SELECT duration_min, price_cents, active FROM services WHERE id = ?1",
        [id],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .optional()?
    .ok_or_else(|| BookingError::not_found("service_id", format!("no service with id {id}")))
}

/// One barber's day: weekly hours, time off and live appointments.
#[derive(Debug, Clone, Default)]
pub struct DayPlan {
    /// Weekly working hours of that weekday.
    pub hours: Vec<Interval>,
    /// Time off that day (a whole day is `00:00–24:00`).
    pub off: Vec<Interval>,
    /// Appointments that are not cancelled.
    pub booked: Vec<Interval>,
}

impl DayPlan {
    /// Working hours minus time off.
    pub fn working(&self) -> Vec<Interval> {
        slots::subtract(&self.hours, &self.off)
    }
}

/// Loads what decides a barber's slots on `date`.
pub fn day_plan(conn: &Connection, barber: i64, date: Date) -> Result<DayPlan, BookingError> {
    let day = date.to_string();
    let mut plan = DayPlan::default();
    let mut st = conn.prepare_cached(
        "SELECT start_min, end_min FROM working_hours WHERE barber_id = ?1 AND weekday = ?2 ORDER BY start_min",
    )?;
    for r in st.query_map(params![barber, weekday_index(date)], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })? {
        plan.hours.push(r?);
    }
    let mut st = conn.prepare_cached(
        "SELECT start_min, end_min FROM time_off WHERE barber_id = ?1 AND start_date <= ?2 AND end_date >= ?2",
    )?;
    for r in st.query_map(params![barber, day], |r| {
        Ok((r.get::<_, Option<u32>>(0)?, r.get::<_, Option<u32>>(1)?))
    })? {
        plan.off.push(match r? {
            (Some(a), Some(b)) => (a, b),
            _ => (0, 24 * 60),
        });
    }
    let mut st = conn.prepare_cached(
        "SELECT start_min, end_min FROM appointments
         WHERE barber_id = ?1 AND date = ?2 AND status <> 'cancelled' ORDER BY start_min",
    )?;
    for r in st.query_map(params![barber, day], |r| Ok((r.get(0)?, r.get(1)?)))? {
        plan.booked.push(r?);
    }
    Ok(plan)
}

/// The free slots of `barber` on `date`, sized by `service` or the default duration.
pub fn slots_for(
    conn: &Connection,
    rules: &Rules,
    now: Now,
    barber: i64,
    date: Date,
    service: Option<i64>,
) -> Result<SlotList, BookingError> {
    require_barber(conn, barber)?;
    let duration = match service {
        Some(id) => {
            let (minutes, _, active) = service_row(conn, id)?;
            if !active {
                return Err(BookingError::not_found(
                    "service_id",
                    format!("service {id} is no longer offered"),
                ));
            }
            minutes
        }
        None => rules.default_duration,
    };
    let slots = match now.earliest(rules, date) {
        None => Vec::new(),
        Some(not_before) => {
            let plan = day_plan(conn, barber, date)?;
            slots::compute(
                &plan.working(),
                &plan.booked,
                duration,
                rules.step,
                not_before,
            )
        }
    };
    Ok(SlotList {
        barber_id: barber,
        date: date.to_string(),
        service_id: service,
        duration_minutes: duration,
        slots: slots.into_iter().map(slot).collect(),
    })
}

/// Seven days of availability from `monday`.
pub fn weekly(
    conn: &Connection,
    rules: &Rules,
    now: Now,
    barber: i64,
    monday: Date,
    service: Option<i64>,
) -> Result<WeeklyAvailability, BookingError> {
    let first = slots_for(conn, rules, now, barber, monday, service)?;
    let duration = first.duration_minutes;
    let mut days = Vec::with_capacity(7);
    let mut total = 0;
    for i in 0..7 {
        let date = add_days(monday, i);
        let plan = day_plan(conn, barber, date)?;
        let working = plan.working();
        let free = slots::subtract(&working, &plan.booked);
        let slots = match now.earliest(rules, date) {
            None => Vec::new(),
            Some(not_before) => {
                slots::compute(&working, &plan.booked, duration, rules.step, not_before)
            }
        };
        total += slots.len() as u32;
        days.push(DayAvailability {
            date: date.to_string(),
            weekday: weekday_name(date).into(),
            hours: working.iter().copied().map(span).collect(),
            time_off: !plan.off.is_empty(),
            booked_minutes: slots::minutes(&plan.booked),
            free_minutes: slots::minutes(&free),
            slots: slots.into_iter().map(slot).collect(),
        });
    }
    Ok(WeeklyAvailability {
        barber_id: barber,
        week_start: monday.to_string(),
        duration_minutes: duration,
        days,
        total_slots: total,
    })
}

fn split_list(s: String) -> Vec<String> {
    s.split(',')
        .filter(|x| !x.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Every barber, active ones first.
pub fn list_barbers(conn: &Connection) -> Result<Vec<Barber>, BookingError> {
    let mut st = conn.prepare_cached(
        "SELECT id, name, specialties, years_experience, rating, active FROM barbers ORDER BY active DESC, id",
    )?;
    let rows = st.query_map([], |r| {
        Ok(Barber {
            id: r.get(0)?,
            name: r.get(1)?,
            specialties: split_list(r.get(2)?),
            years_experience: r.get(3)?,
            rating: tenths(r.get(4)?),
            active: r.get(5)?,
        })
    })?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Ids of barbers taking bookings.
pub fn active_barber_ids(conn: &Connection) -> Result<Vec<i64>, BookingError> {
    let mut st = conn.prepare_cached("SELECT id FROM barbers WHERE active = 1 ORDER BY id")?;
    let rows = st.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// A barber's profile with weekly hours and upcoming time off.
pub fn barber_profile(
    conn: &Connection,
    id: i64,
    today: Date,
) -> Result<BarberProfile, BookingError> {
    let mut profile = conn
        .query_row(
            "SELECT id, name, email, phone, bio, specialties, years_experience, rating, active, updated_at
             FROM barbers WHERE id = ?1",
            [id],
            |r| {
                Ok(BarberProfile {
                    id: r.get(0)?,
                    name: r.get(1)?,
                    email: r.get(2)?,
                    phone: r.get(3)?,
                    bio: r.get(4)?,
                    specialties: split_list(r.get(5)?),
                    years_experience: r.get(6)?,
                    rating: tenths(r.get(7)?),
                    active: r.get(8)?,
                    working_hours: Vec::new(),
                    upcoming_time_off: Vec::new(),
                    updated_at: r.get(9)?,
                })
            },
        )
        .optional()?
        .ok_or_else(|| BookingError::not_found("barber_id", format!("no barber with id {id}")))?;
    let mut st = conn.prepare_cached(
        "SELECT weekday, start_min, end_min FROM working_hours WHERE barber_id = ?1 ORDER BY weekday, start_min",
    )?;
    let mut week: Vec<WorkingDay> = Vec::new();
    for r in st.query_map([id], |r| Ok((r.get::<_, u32>(0)?, r.get(1)?, r.get(2)?)))? {
        let (wd, a, b) = r?;
        // 2024-01-01 was a Monday.
        let name = weekday_name(add_days(
            Date::new(2024, 1, 1).unwrap_or_default(),
            i64::from(wd),
        ));
        match week.last_mut() {
            Some(d) if d.weekday == name => d.hours.push(span((a, b))),
            _ => week.push(WorkingDay {
                weekday: name.into(),
                hours: vec![span((a, b))],
            }),
        }
    }
    profile.working_hours = week;
    let mut st = conn.prepare_cached(
        "SELECT start_date, end_date, start_min, end_min, reason FROM time_off
         WHERE barber_id = ?1 AND end_date >= ?2 ORDER BY start_date",
    )?;
    for r in st.query_map(params![id, today.to_string()], |r| {
        let (a, b): (Option<u32>, Option<u32>) = (r.get(2)?, r.get(3)?);
        Ok(TimeOff {
            start_date: r.get(0)?,
            end_date: r.get(1)?,
            hours: a.zip(b).map(span),
            reason: r.get(4)?,
        })
    })? {
        profile.upcoming_time_off.push(r?);
    }
    Ok(profile)
}

/// Applies a profile change to a barber.
/// An update body with none of its fields set (`{}`, or only fields it does not have:
/// unknown fields are ignored, as the seed's clients may send extra ones) changes nothing,
/// so it is refused before it can emit an event and purge entries.
fn nothing_to_update(set: &[bool], fields: &str) -> Result<(), BookingError> {
    if set.iter().any(|s| *s) {
        return Ok(());
    }
    Err(BookingError::invalid(
        "body",
        "nothing_to_update",
        format!("nothing to update: send at least one of {fields}"),
    ))
}

pub fn update_barber(
    conn: &mut Connection,
    id: i64,
    update: &BarberUpdate,
    stamp: &str,
) -> Result<(), BookingError> {
    let fields = [
        update.name.is_some(),
        update.phone.is_some(),
        update.bio.is_some(),
        update.specialties.is_some(),
    ];
    nothing_to_update(&fields, "name, phone, bio, specialties")?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let exists: Option<i64> = tx
        .query_row("SELECT id FROM barbers WHERE id = ?1", [id], |r| r.get(0))
        .optional()?;
    if exists.is_none() {
        return Err(BookingError::not_found(
            "barber_id",
            format!("no barber with id {id}"),
        ));
    }
    let specialties = update.specialties.as_ref().map(|s| {
        s.iter()
            .map(|x| x.trim().replace(',', " "))
            .filter(|x| !x.is_empty())
            .collect::<Vec<_>>()
            .join(",")
    });
    tx.execute(
        "UPDATE barbers SET name = COALESCE(?2, name), phone = COALESCE(?3, phone),
             bio = COALESCE(?4, bio), specialties = COALESCE(?5, specialties), updated_at = ?6
         WHERE id = ?1",
        params![
            id,
            update.name,
            update.phone,
            update.bio,
            specialties,
            stamp
        ],
    )?;
    tx.commit()?;
    Ok(())
}

fn service_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Service> {
    Ok(Service {
        id: r.get(0)?,
        name: r.get(1)?,
        category: r.get(2)?,
        description: r.get(3)?,
        duration_minutes: r.get(4)?,
        price: money(r.get(5)?),
        active: r.get(6)?,
    })
}

const SERVICE_COLUMNS: &str =
    "id, name, category, description, duration_min, price_cents, active FROM services";

/// The service catalog.
pub fn list_services(conn: &Connection, all: bool) -> Result<Vec<Service>, BookingError> {
    let sql = if all {
        format!("SELECT {SERVICE_COLUMNS} ORDER BY category, price_cents, id")
    } else {
        format!("SELECT {SERVICE_COLUMNS} WHERE active = 1 ORDER BY category, price_cents, id")
    };
    let mut st = conn.prepare_cached(&sql)?;
    let rows = st.query_map([], service_from_row)?;
    Ok(rows.collect::<Result<_, _>>()?)
}

/// Changes a service and returns it.
pub fn update_service(
    conn: &mut Connection,
    id: i64,
    update: &ServiceUpdate,
    stamp: &str,
) -> Result<Service, BookingError> {
    let fields = [
        update.name.is_some(),
        update.description.is_some(),
        update.duration_minutes.is_some(),
        update.price.is_some(),
        update.active.is_some(),
    ];
    nothing_to_update(
        &fields,
        "name, description, duration_minutes, price, active",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let n = tx.execute(
        "UPDATE services SET name = COALESCE(?2, name), description = COALESCE(?3, description),
             duration_min = COALESCE(?4, duration_min), price_cents = COALESCE(?5, price_cents),
             active = COALESCE(?6, active), updated_at = ?7
         WHERE id = ?1",
        params![
            id,
            update.name,
            update.description,
            update.duration_minutes,
            update.price.map(cents),
            update.active,
            stamp
        ],
    );
    let n = match n {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(BookingError::conflict(
                "duplicate_name",
                "another service already has that name",
            ));
        }
        other => other?,
    };
    if n == 0 {
        return Err(BookingError::not_found(
            "service_id",
            format!("no service with id {id}"),
        ));
    }
    let service = tx.query_row(
        &format!("SELECT {SERVICE_COLUMNS} WHERE id = ?1"),
        [id],
        service_from_row,
    )?;
    tx.commit()?;
    Ok(service)
}

const APPOINTMENT_COLUMNS: &str = "id, barber_id, client_id, service_id, date, start_min, end_min, status, price_cents, created_at FROM appointments";

fn appointment_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Appointment> {
    Ok(Appointment {
        id: r.get(0)?,
        barber_id: r.get(1)?,
        client_id: r.get(2)?,
        service_id: r.get(3)?,
        date: r.get(4)?,
        start: hhmm(r.get(5)?),
        end: hhmm(r.get(6)?),
        status: AppointmentStatus::parse(&r.get::<_, String>(7)?),
        price: money(r.get(8)?),
        created_at: r.get(9)?,
    })
}

/// One appointment.
pub fn get_appointment(conn: &Connection, id: i64) -> Result<Appointment, BookingError> {
    conn.query_row(
        &format!("SELECT {APPOINTMENT_COLUMNS} WHERE id = ?1"),
        [id],
        appointment_from_row,
    )
    .optional()?
    .ok_or_else(|| {
        BookingError::not_found("appointment_id", format!("no appointment with id {id}"))
    })
}

/// A validated booking request.
#[derive(Debug, Clone, Copy)]
pub struct Booking {
    /// Barber.
    pub barber_id: i64,
    /// Service.
    pub service_id: i64,
    /// Client.
    pub client_id: i64,
    /// Day.
    pub date: Date,
    /// Start, minutes from midnight.
    pub start: u32,
}

/// Books an appointment, or says exactly why not. The checks and the insert run in one
/// `BEGIN IMMEDIATE` transaction, so two requests for one slot cannot both pass the checks.
pub fn create_appointment(
    conn: &mut Connection,
    rules: &Rules,
    now: Now,
    b: Booking,
    stamp: &str,
) -> Result<Appointment, BookingError> {
    if !b.start.is_multiple_of(rules.step) {
        return Err(BookingError::invalid(
            "start",
            "off_grid",
            format!(
                "start {} is not on the {}-minute grid; pick a start from the slots list",
                hhmm(b.start),
                rules.step
            ),
        ));
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    require_barber(&tx, b.barber_id)?;
    let (duration, price, active) = service_row(&tx, b.service_id)?;
    if !active {
        return Err(BookingError::not_found(
            "service_id",
            format!("service {} is no longer offered", b.service_id),
        ));
    }
    let client: Option<i64> = tx
        .query_row("SELECT id FROM clients WHERE id = ?1", [b.client_id], |r| {
            r.get(0)
        })
        .optional()?;
    if client.is_none() {
        return Err(BookingError::not_found(
            "client_id",
            format!("no client with id {}", b.client_id),
        ));
    }
    if b.date < now.today {
        return Err(BookingError::invalid(
            "date",
            "date_in_past",
            format!("{} is in the past (today is {})", b.date, now.today),
        ));
    }
    let horizon = add_days(now.today, i64::from(rules.max_advance_days));
    if b.date > horizon {
        return Err(BookingError::invalid(
            "date",
            "beyond_horizon",
            format!(
                "bookings are taken up to {} days ahead (until {horizon})",
                rules.max_advance_days
            ),
        ));
    }
    if b.date == now.today && b.start < now.earliest_today {
        let first = now.earliest_today.div_ceil(rules.step) * rules.step;
        let left = if first < 24 * 60 {
            format!("the earliest start today is {}", hhmm(first))
        } else {
            "no start is left today".to_owned()
        };
        return Err(BookingError::invalid(
            "start",
            "too_soon",
            format!(
                "same-day bookings need {} minutes' notice; {left}",
                rules.min_notice
            ),
        ));
    }
    let end = b.start + duration;
    let plan = day_plan(&tx, b.barber_id, b.date)?;
    if !slots::within(&plan.hours, b.start, duration) {
        let message = if plan.hours.is_empty() {
            format!(
                "barber {} does not work on {}s",
                b.barber_id,
                weekday_name(b.date)
            )
        } else {
            format!(
                "{}–{} is outside barber {}'s working hours on {} ({})",
                hhmm(b.start),
                hhmm(end),
                b.barber_id,
                b.date,
                spans_text(&plan.hours)
            )
        };
        return Err(BookingError::invalid(
            "start",
            "outside_working_hours",
            message,
        ));
    }
    if let Some(off) = slots::first_overlap(&plan.off, b.start, end) {
        let what = if off == (0, 24 * 60) {
            format!("is off on {}", b.date)
        } else {
            format!("is off {} on {}", spans_text(&[off]), b.date)
        };
        return Err(BookingError::conflict(
            "barber_unavailable",
            format!("barber {} {what}", b.barber_id),
        ));
    }
    if let Some(taken) = slots::first_overlap(&plan.booked, b.start, end) {
        return Err(BookingError::conflict(
            "slot_taken",
            format!(
                "{}–{} overlaps an appointment at {} with barber {} on {}",
                hhmm(b.start),
                hhmm(end),
                spans_text(&[taken]),
                b.barber_id,
                b.date
            ),
        ));
    }
    tx.execute(
        "INSERT INTO appointments (barber_id, client_id, service_id, date, start_min, end_min, status, price_cents, created_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, 'booked', ?7, ?8)",
        params![b.barber_id, b.client_id, b.service_id, b.date.to_string(), b.start, end, price, stamp],
    )?;
    let id = tx.last_insert_rowid();
    let appointment = tx.query_row(
        &format!("SELECT {APPOINTMENT_COLUMNS} WHERE id = ?1"),
        [id],
        appointment_from_row,
    )?;
    tx.commit()?;
    Ok(appointment)
}

/// Cancels a booked appointment; its slot is free again.
pub fn cancel_appointment(
    conn: &mut Connection,
    id: i64,
    stamp: &str,
) -> Result<Appointment, BookingError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current = get_appointment(&tx, id)?;
    match current.status {
        AppointmentStatus::Booked => {}
        AppointmentStatus::Cancelled => {
            return Err(BookingError::conflict(
                "already_cancelled",
                format!("appointment {id} is already cancelled"),
            ));
        }
        other => {
            return Err(BookingError::conflict(
                "not_cancellable",
                format!(
                    "appointment {id} is {} and can no longer be cancelled",
                    other.as_str()
                ),
            ));
        }
    }
    tx.execute(
        "UPDATE appointments SET status = 'cancelled', cancelled_at = ?2 WHERE id = ?1",
        params![id, stamp],
    )?;
    let appointment = get_appointment(&tx, id)?;
    tx.commit()?;
    Ok(appointment)
}

/// Filters of the appointments list.
#[derive(Debug, Clone, Default)]
pub struct AppointmentFilter {
    /// Only this barber.
    pub barber_id: Option<i64>,
    /// Only this client.
    pub client_id: Option<i64>,
    /// From this day (inclusive).
    pub from: Option<Date>,
    /// To this day (inclusive).
    pub to: Option<Date>,
    /// Only this status.
    pub status: Option<AppointmentStatus>,
    /// Page, from 1.
    pub page: u32,
    /// Page size.
    pub size: u32,
}

/// A page of appointments matching `f`.
pub fn list_appointments(
    conn: &Connection,
    f: &AppointmentFilter,
) -> Result<AppointmentPage, BookingError> {
    let from = f.from.map(|d| d.to_string());
    let to = f.to.map(|d| d.to_string());
    let status = f.status.map(|s| s.as_str());
    let filter = "WHERE (?1 IS NULL OR barber_id = ?1) AND (?2 IS NULL OR client_id = ?2)
                  AND (?3 IS NULL OR date >= ?3) AND (?4 IS NULL OR date <= ?4)
                  AND (?5 IS NULL OR status = ?5)";
    let total: u64 = conn.query_row(
        &format!("SELECT COUNT(*) FROM appointments {filter}"),
        params![f.barber_id, f.client_id, from, to, status],
        |r| r.get(0),
    )?;
    let mut st = conn.prepare_cached(&format!(
        "SELECT {APPOINTMENT_COLUMNS} {filter} ORDER BY date, start_min, barber_id LIMIT ?6 OFFSET ?7"
    ))?;
    let offset = u64::from(f.page.saturating_sub(1)) * u64::from(f.size);
    let items = st
        .query_map(
            params![f.barber_id, f.client_id, from, to, status, f.size, offset],
            appointment_from_row,
        )?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(AppointmentPage {
        items,
        page: f.page,
        size: f.size,
        total_items: total,
        total_pages: total.div_ceil(u64::from(f.size.max(1))),
    })
}

/// Records a payment; returns it with the appointment's barber and day (for the event).
pub fn record_payment(
    conn: &mut Connection,
    p: &NewPayment,
    stamp: &str,
) -> Result<(Payment, Appointment), BookingError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let appointment = get_appointment(&tx, p.appointment_id)?;
    if appointment.status == AppointmentStatus::Cancelled {
        return Err(BookingError::conflict(
            "appointment_cancelled",
            format!(
                "appointment {} was cancelled; nothing to pay for",
                p.appointment_id
            ),
        ));
    }
    let method = p.method.map(|m| m.as_str()).unwrap_or("card");
    let (amount, tip) = (cents(p.amount), cents(p.tip.unwrap_or(0.0)));
    if amount <= 0 {
        return Err(BookingError::invalid(
            "amount",
            "invalid_amount",
            "amount must be at least 0.01",
        ));
    }
    tx.execute(
        "INSERT INTO payments (appointment_id, amount_cents, tip_cents, method, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![p.appointment_id, amount, tip, method, stamp],
    )?;
    let payment = Payment {
        id: tx.last_insert_rowid(),
        appointment_id: p.appointment_id,
        amount: money(amount),
        tip: money(tip),
        method: method.into(),
        created_at: stamp.into(),
    };
    tx.commit()?;
    Ok((payment, appointment))
}

/// A client's profile with visit statistics. It holds nothing a booking or a payment
/// changes, so that only `profile.updated` needs to purge it.
pub fn user_profile(conn: &Connection, id: i64, today: Date) -> Result<UserProfile, BookingError> {
    conn.query_row(
        "SELECT c.id, c.first_name, c.last_name, c.email, c.phone, c.preferred_barber_id, c.notes,
                c.marketing_opt_in, c.created_at, c.updated_at,
                (SELECT COUNT(*) FROM appointments a WHERE a.client_id = c.id AND a.status = 'completed'),
                (SELECT MAX(date) FROM appointments a WHERE a.client_id = c.id AND a.status = 'completed'
                   AND a.date <= ?2)
         FROM clients c WHERE c.id = ?1",
        params![id, today.to_string()],
        |r| {
            Ok(UserProfile {
                id: r.get(0)?,
                first_name: r.get(1)?,
                last_name: r.get(2)?,
                email: r.get(3)?,
                phone: r.get(4)?,
                preferred_barber_id: r.get(5)?,
                notes: r.get(6)?,
                marketing_opt_in: r.get(7)?,
                created_at: r.get(8)?,
                updated_at: r.get(9)?,
                visits: r.get(10)?,
                last_visit: r.get(11)?,
            })
        },
    )
    .optional()?
    .ok_or_else(|| BookingError::not_found("user_id", format!("no user with id {id}")))
}

/// Applies a profile change to a client.
pub fn update_user(
    conn: &mut Connection,
    id: i64,
    u: &UserUpdate,
    stamp: &str,
) -> Result<(), BookingError> {
    let fields = [
        u.first_name.is_some(),
        u.last_name.is_some(),
        u.email.is_some(),
        u.phone.is_some(),
        u.preferred_barber_id.is_some(),
        u.notes.is_some(),
        u.marketing_opt_in.is_some(),
    ];
    nothing_to_update(
        &fields,
        "first_name, last_name, email, phone, preferred_barber_id, notes, marketing_opt_in",
    )?;
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    if let Some(b) = u.preferred_barber_id {
        let found: Option<i64> = tx
            .query_row("SELECT id FROM barbers WHERE id = ?1", [b], |r| r.get(0))
            .optional()?;
        if found.is_none() {
            return Err(BookingError::not_found(
                "preferred_barber_id",
                format!("no barber with id {b}"),
            ));
        }
    }
    let result = tx.execute(
        "UPDATE clients SET first_name = COALESCE(?2, first_name), last_name = COALESCE(?3, last_name),
             email = COALESCE(?4, email), phone = COALESCE(?5, phone),
             preferred_barber_id = COALESCE(?6, preferred_barber_id), notes = COALESCE(?7, notes),
             marketing_opt_in = COALESCE(?8, marketing_opt_in), updated_at = ?9
         WHERE id = ?1",
        params![
            id,
            u.first_name,
            u.last_name,
            u.email,
            u.phone,
            u.preferred_barber_id,
            u.notes,
            u.marketing_opt_in,
            stamp
        ],
    );
    let n = match result {
        Err(rusqlite::Error::SqliteFailure(e, _))
            if e.code == rusqlite::ErrorCode::ConstraintViolation =>
        {
            return Err(BookingError::conflict(
                "email_taken",
                "another user already has that email",
            ));
        }
        other => other?,
    };
    if n == 0 {
        return Err(BookingError::not_found(
            "user_id",
            format!("no user with id {id}"),
        ));
    }
    tx.commit()?;
    Ok(())
}
