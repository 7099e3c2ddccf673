//! The events the plugin emits, and their fields. Policy `triggers:` turn them into exact
//! invalidations (see `policies/booking.yaml`). Every event is emitted after its change is
//! committed.

use larder_plugin::{EventKind, EventSpec, PluginContext};
use serde_json::json;

use crate::model::{Appointment, Payment};
use crate::time::{parse_date, week_start};

/// An appointment was booked.
pub const APPOINTMENT_CREATED: EventKind = EventKind::new(
    "appointment.created",
    APPOINTMENT_FIELDS,
    "An appointment was booked: the barber's slots on `date` and availability of the \
             week starting `week_start` changed.",
);
/// An appointment was cancelled; its slot is free again.
pub const APPOINTMENT_CANCELLED: EventKind = EventKind::new(
    "appointment.cancelled",
    APPOINTMENT_FIELDS,
    "An appointment was cancelled: its slot on `date` is free again.",
);
/// A payment was recorded.
pub const PAYMENT_RECORDED: EventKind = EventKind::new(
    "payment.recorded",
    &[
        "payment_id",
        "appointment_id",
        "amount",
        "barber_id",
        "date",
    ],
    "A payment was recorded for an appointment: revenue analytics changed.",
);
/// A service of the catalog changed (name, duration, price, active).
pub const SERVICE_CHANGED: EventKind = EventKind::new(
    "service.changed",
    &["service_id"],
    "A service's name, duration, price or availability changed.",
);
/// A user's or a barber's profile changed.
pub const PROFILE_UPDATED: EventKind = EventKind::new(
    "profile.updated",
    &["kind", "id"],
    "A profile changed; `kind` is `user` or `barber`.",
);

const APPOINTMENT_FIELDS: &[&str] = &[
    "appointment_id",
    "barber_id",
    "client_id",
    "service_id",
    "date",
    "start",
    "week_start",
];

/// Declarations for [`larder_plugin::Plugin::events`].
pub fn specs() -> Vec<EventSpec> {
    vec![
        APPOINTMENT_CREATED
            .spec()
            .emitted_by(&["create_appointment"]),
        APPOINTMENT_CANCELLED
            .spec()
            .emitted_by(&["cancel_appointment"]),
        PAYMENT_RECORDED.spec().emitted_by(&["record_payment"]),
        SERVICE_CHANGED.spec().emitted_by(&["update_service"]),
        PROFILE_UPDATED
            .spec()
            .emitted_by(&["update_user_profile", "update_barber_profile"]),
    ]
}

fn appointment_fields(a: &Appointment) -> serde_json::Value {
    let week = parse_date(&a.date)
        .map(|d| week_start(d).to_string())
        .unwrap_or_default();
    json!({
        "appointment_id": a.id,
        "barber_id": a.barber_id,
        "client_id": a.client_id,
        "service_id": a.service_id,
        "date": a.date,
        "start": a.start,
        "week_start": week,
    })
}

/// Emits `appointment.created`.
pub fn appointment_created(ctx: &PluginContext, a: &Appointment) {
    ctx.emit(&APPOINTMENT_CREATED, appointment_fields(a));
}

/// Emits `appointment.cancelled`.
pub fn appointment_cancelled(ctx: &PluginContext, a: &Appointment) {
    ctx.emit(&APPOINTMENT_CANCELLED, appointment_fields(a));
}

/// Emits `payment.recorded`.
pub fn payment_recorded(ctx: &PluginContext, p: &Payment, a: &Appointment) {
    ctx.emit(
        &PAYMENT_RECORDED,
        json!({
            "payment_id": p.id,
            "appointment_id": p.appointment_id,
            "amount": p.amount,
            "barber_id": a.barber_id,
            "date": a.date,
        }),
    );
}

/// Emits `service.changed`.
pub fn service_changed(ctx: &PluginContext, service_id: i64) {
    ctx.emit(&SERVICE_CHANGED, json!({ "service_id": service_id }));
}

/// Emits `profile.updated`.
pub fn profile_updated(ctx: &PluginContext, kind: &str, id: i64) {
    ctx.emit(&PROFILE_UPDATED, json!({ "kind": kind, "id": id }));
}
