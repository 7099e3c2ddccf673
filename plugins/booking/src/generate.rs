//! The generated dataset a fresh database is filled with.
//!
//! Deterministic: one seed and one anchor day ("today" at generation) give the same rows,
//! byte for byte, on every machine. The random source is a SplitMix64 written out here rather
//! than a crate, so that a dependency upgrade can never change the data behind a seed.

use jiff::civil::Date;
use rusqlite::{Connection, params};

use crate::config::{BookingConfig, DatasetConfig};
use crate::error::BookingError;
use crate::slots::{self, Interval};
use crate::time::{add_days, hhmm, parse_range, weekday_index};

/// SplitMix64: tiny, fast, and fully specified.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `[lo, hi]`.
    pub fn range(&mut self, lo: u32, hi: u32) -> u32 {
        lo + (self.next_u64() % u64::from(hi - lo + 1)) as u32
    }

    /// True with probability `p`.
    pub fn chance(&mut self, p: f64) -> bool {
        self.unit() < p
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[(self.next_u64() % items.len() as u64) as usize]
    }
}

const FIRST_NAMES: &[&str] = &[
    "James", "Michael", "Robert", "David", "William", "Daniel", "Anthony", "Marcus", "Andre",
    "Luis", "Carlos", "Kevin", "Jamal", "Tyrone", "Ethan", "Noah", "Liam", "Mason", "Lucas",
    "Elijah", "Aiden", "Mateo", "Omar", "Darnell", "Jordan", "Isaiah", "Sofia", "Maya", "Aaliyah",
    "Emma", "Olivia", "Ava", "Chloe", "Grace", "Zoe", "Nia", "Camila", "Priya", "Hannah", "Leah",
];
const LAST_NAMES: &[&str] = &[
    "Smith",
    "Johnson",
    "Williams",
    "Brown",
    "Jones",
    "Garcia",
    "Miller",
    "Davis",
    "Rodriguez",
    "Martinez",
    "Hernandez",
    "Lopez",
    "Gonzalez",
    "Wilson",
    "Anderson",
    "Thomas",
    "Taylor",
    "Moore",
    "Jackson",
    "Martin",
    "Lee",
    "Perez",
    "Thompson",
    "White",
    "Harris",
    "Clark",
    "Lewis",
    "Robinson",
    "Walker",
    "Young",
    "Allen",
    "King",
    "Wright",
    "Scott",
    "Green",
    "Baker",
    "Adams",
];
const SPECIALTIES: &[&str] = &[
    "fades",
    "beard sculpting",
    "hot towel shaves",
    "scissor cuts",
    "kids cuts",
    "color",
    "textured hair",
    "line ups",
    "long hair",
    "gray blending",
];
const TIME_OFF_REASONS: &[&str] = &["doctor's appointment", "training", "family", "errand"];
const PAYMENT_METHODS: &[(&str, f64)] = &[("card", 0.68), ("cash", 0.2), ("wallet", 0.12)];

/// Service catalog: name, category, minutes, price in cents, booking weight, description.
const SERVICES: &[(&str, &str, u32, i64, u32, &str)] = &[
    (
        "Classic Haircut",
        "haircut",
        30,
        3500,
        30,
        "Clipper and scissor cut, washed and styled.",
    ),
    (
        "Skin Fade",
        "haircut",
        45,
        4500,
        22,
        "Bald or skin fade blended to any length on top.",
    ),
    (
        "Scissor Cut",
        "haircut",
        45,
        4500,
        8,
        "Scissor-only cut for medium and long hair.",
    ),
    (
        "Buzz Cut",
        "haircut",
        15,
        2000,
        6,
        "One guard all over, neck tidied.",
    ),
    ("Kids Cut", "haircut", 30, 2500, 7, "For clients under 12."),
    (
        "Beard Trim",
        "beard",
        15,
        2000,
        10,
        "Shape and length, neckline cleaned.",
    ),
    (
        "Beard Sculpt & Oil",
        "beard",
        30,
        3000,
        4,
        "Detailed shaping with hot towel and oil.",
    ),
    (
        "Hot Towel Shave",
        "shave",
        30,
        4000,
        5,
        "Straight-razor shave with hot towels.",
    ),
    (
        "Haircut & Beard",
        "combo",
        60,
        6000,
        14,
        "Classic haircut plus beard trim.",
    ),
    (
        "Line Up",
        "haircut",
        15,
        1500,
        5,
        "Edges and hairline only.",
    ),
    (
        "Gray Blending",
        "color",
        45,
        5500,
        2,
        "Subtle color to soften gray.",
    ),
    (
        "Hair Color",
        "color",
        90,
        8500,
        2,
        "Full single-process color.",
    ),
];

/// Fills the database unless it is already filled; `None` when it was. Runs in one
/// `BEGIN IMMEDIATE` transaction that re-checks first: a crash leaves no half dataset, and
/// two processes starting on the same new file fill it once.
pub fn fill(
    conn: &mut Connection,
    cfg: &BookingConfig,
    today: Date,
) -> Result<Option<Stats>, BookingError> {
    let opening = parse_range(&cfg.default_opening)
        .map_err(|e| BookingError::internal(format!("setting `default_opening`: {e}")))?;
    let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
    let filled: Option<String> = rusqlite::OptionalExtension::optional(tx.query_row(
        "SELECT value FROM meta WHERE key = 'generated_for'",
        [],
        |r| r.get(0),
    ))?;
    if filled.is_some() {
        return Ok(None);
    }
    let stats = fill_tx(
        &tx,
        &cfg.dataset,
        cfg.seed,
        cfg.slot_minutes,
        opening,
        today,
    )?;
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('seed', ?1), ('generated_for', ?2)",
        params![cfg.seed.to_string(), today.to_string()],
    )?;
    tx.commit()?;
    Ok(Some(stats))
}

/// What was generated.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Barbers.
    pub barbers: u32,
    /// Clients.
    pub clients: u32,
    /// Appointments, every status.
    pub appointments: u32,
    /// Payments.
    pub payments: u32,
}

fn fill_tx(
    tx: &rusqlite::Transaction<'_>,
    ds: &DatasetConfig,
    seed: u64,
    step: u32,
    opening: Interval,
    today: Date,
) -> Result<Stats, BookingError> {
    let mut rng = Rng::new(seed);
    let mut stats = Stats::default();
    let stamp = format!("{today}T08:00:00");
    let step = step.clamp(5, 60);

    // Services.
    for (name, category, minutes, price, _, description) in SERVICES {
        tx.execute(
            "INSERT INTO services (name, category, description, duration_min, price_cents, active, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6)",
            params![name, category, description, minutes, price, stamp],
        )?;
    }
    let weight_total: u32 = SERVICES.iter().map(|s| s.4).sum();

    // Barbers, their weekly hours and time off.
    let start_day = add_days(today, -7 * i64::from(ds.past_weeks));
    let end_day = add_days(today, 7 * i64::from(ds.future_weeks));
    let span_days = (7 * (ds.past_weeks + ds.future_weeks)).max(1);
    let mut hours: Vec<[Vec<Interval>; 7]> = Vec::new();
    let mut offs: Vec<Vec<(Date, Date, Option<Interval>)>> = Vec::new();
    for b in 1..=ds.barbers {
        let first = *rng.pick(FIRST_NAMES);
        let last = *rng.pick(LAST_NAMES);
        let mut specialties: Vec<&str> = Vec::new();
        while specialties.len() < 3 {
            let s = *rng.pick(SPECIALTIES);
            if !specialties.contains(&s) {
                specialties.push(s);
            }
        }
        let years = rng.range(1, 25);
        let rating = 3.8 + f64::from(rng.range(0, 12)) / 10.0;
        tx.execute(
            "INSERT INTO barbers (id, name, email, phone, bio, specialties, years_experience, rating, active, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 1, ?9)",
            params![
                b,
                format!("{first} {last}"),
                format!("{}.{}{b}@larder-barbers.example", first.to_lowercase(), last.to_lowercase()),
                format!("+1-555-01{:02}", b % 100),
                format!("{years} years behind the chair; known for {}.", specialties[0]),
                specialties.join(","),
                years,
                rating.min(5.0),
                stamp,
            ],
        )?;
        // Five or six working days; Sunday mostly off.
        let day_off = rng.range(0, 5);
        let works_sunday = rng.chance(0.15);
        let mut week: [Vec<Interval>; 7] = Default::default();
        for (wd, day) in week.iter_mut().enumerate() {
            let wd = wd as u32;
            if wd == day_off || (wd == 6 && !works_sunday) {
                continue;
            }
            let start = opening.0 + 30 * rng.range(0, 2);
            let end = opening.1 - 30 * rng.range(0, 2);
            let lunch = (start + end) / 2 / 30 * 30;
            let lunch_len = 30 * rng.range(1, 2);
            day.push((start, lunch));
            day.push((lunch + lunch_len, end));
            for &(s, e) in day.iter() {
                tx.execute(
                    "INSERT INTO working_hours (barber_id, weekday, start_min, end_min) VALUES (?1, ?2, ?3, ?4)",
                    params![b, wd, s, e],
                )?;
            }
        }
        hours.push(week);

        let mut off = Vec::new();
        for _ in 0..rng.range(1, 2) {
            let from = add_days(start_day, i64::from(rng.range(0, span_days - 1)));
            let to = add_days(from, i64::from(rng.range(2, 6)));
            off.push((from, to, None));
        }
        for _ in 0..rng.range(2, 4) {
            let day = add_days(start_day, i64::from(rng.range(0, span_days - 1)));
            let s = opening.0 + 60 * rng.range(1, 5);
            off.push((day, day, Some((s, s + 60 * rng.range(1, 3)))));
        }
        for (from, to, part) in &off {
            tx.execute(
                "INSERT INTO time_off (barber_id, start_date, end_date, start_min, end_min, reason)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    b,
                    from.to_string(),
                    to.to_string(),
                    part.map(|p| p.0),
                    part.map(|p| p.1),
                    if part.is_some() {
                        *rng.pick(TIME_OFF_REASONS)
                    } else {
                        "vacation"
                    },
                ],
            )?;
        }
        offs.push(off);
    }
    stats.barbers = ds.barbers;

    // Clients.
    for c in 1..=ds.clients {
        let first = *rng.pick(FIRST_NAMES);
        let last = *rng.pick(LAST_NAMES);
        let joined = add_days(start_day, -i64::from(rng.range(0, 365)));
        let preferred = rng.chance(0.4).then(|| rng.range(1, ds.barbers));
        tx.execute(
            "INSERT INTO clients (id, first_name, last_name, email, phone, preferred_barber_id, notes, marketing_opt_in, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, '', ?7, ?8, ?8)",
            params![
                c,
                first,
                last,
                format!("{}.{}{c}@example.com", first.to_lowercase(), last.to_lowercase()),
                format!("+1-555-{:04}", 1000 + c % 9000),
                preferred,
                rng.chance(0.35),
                format!("{joined}T12:00:00"),
            ],
        )?;
    }
    stats.clients = ds.clients;

    // Appointments and payments, day by day, barber by barber.
    let mut insert_appt = tx.prepare(
        "INSERT INTO appointments (barber_id, client_id, service_id, date, start_min, end_min, status, price_cents, created_at, cancelled_at)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut insert_pay = tx.prepare(
        "INSERT INTO payments (appointment_id, amount_cents, tip_cents, method, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    let mut day = start_day;
    while day <= end_day {
        let past = day < today;
        let ahead = (day - today).get_days().max(0) as f64;
        // Upcoming weeks fill up less the further out they are.
        let occupancy = if past {
            ds.occupancy
        } else {
            ds.occupancy * 0.6 / (1.0 + ahead / 10.0)
        };
        let wd = weekday_index(day) as usize;
        for b in 0..ds.barbers as usize {
            let working = &hours[b][wd];
            let mut busy: Vec<Interval> = Vec::new();
            for (from, to, part) in &offs[b] {
                if *from <= day && day <= *to {
                    busy.push(part.unwrap_or((0, 24 * 60)));
                }
            }
            let free = slots::subtract(working, &busy);
            for (start, end) in free {
                let mut t = start.div_ceil(step) * step;
                while t < end {
                    if !rng.chance(occupancy) {
                        t += step;
                        continue;
                    }
                    let mut w = rng.range(0, weight_total - 1);
                    let mut service = 0;
                    for (i, s) in SERVICES.iter().enumerate() {
                        if w < s.4 {
                            service = i;
                            break;
                        }
                        w -= s.4;
                    }
                    let (_, _, minutes, price, _, _) = SERVICES[service];
                    if t + minutes > end {
                        t += step;
                        continue;
                    }
                    let client = rng.range(1, ds.clients);
                    let roll = rng.unit();
                    let status = match (past, roll) {
                        (true, r) if r < 0.06 => "cancelled",
                        (true, r) if r < 0.10 => "no_show",
                        (true, _) => "completed",
                        (false, r) if r < 0.04 => "cancelled",
                        (false, _) => "booked",
                    };
                    let booked_on = add_days(day, -i64::from(rng.range(0, 21)));
                    let cancelled_at =
                        (status == "cancelled").then(|| format!("{}T18:00:00", add_days(day, -1)));
                    insert_appt.execute(params![
                        b as u32 + 1,
                        client,
                        service as u32 + 1,
                        day.to_string(),
                        t,
                        t + minutes,
                        status,
                        price,
                        format!("{booked_on}T10:00:00"),
                        cancelled_at,
                    ])?;
                    stats.appointments += 1;
                    if status == "completed" {
                        let id = tx.last_insert_rowid();
                        let tip = if rng.chance(0.7) {
                            price * i64::from(rng.range(10, 25)) / 100
                        } else {
                            0
                        };
                        let mut m = rng.unit();
                        let mut method = PAYMENT_METHODS[0].0;
                        for (name, p) in PAYMENT_METHODS {
                            if m < *p {
                                method = name;
                                break;
                            }
                            m -= p;
                        }
                        insert_pay.execute(params![
                            id,
                            price,
                            tip,
                            method,
                            format!("{day}T{}:00", hhmm(t + minutes)),
                        ])?;
                        stats.payments += 1;
                    }
                    // A cancelled slot stays free in the data, as it would in the shop.
                    t += if status == "cancelled" { step } else { minutes };
                }
            }
        }
        day = add_days(day, 1);
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::Rng;

    #[test]
    fn rng_is_splitmix64() {
        // Reference values of SplitMix64 for seed 0.
        let mut r = Rng::new(0);
        assert_eq!(r.next_u64(), 0xE220_A839_7B1D_CDAF);
        assert_eq!(r.next_u64(), 0x6E78_9E6A_A1B9_65F4);
    }
}
