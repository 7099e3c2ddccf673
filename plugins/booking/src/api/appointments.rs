//! Appointments (list, read, create, cancel) and payments.

use larder_plugin::JsonBody;
use std::sync::Arc;

use poem_openapi::param::{Path, Query};
use poem_openapi::types::Example;
use poem_openapi::{Object, OpenApi};

use super::{AppointmentId, Created, Day, Id, PathId, Reply, field_parser};
use crate::State;
use crate::error::BookingError;
use crate::events;
use crate::model::{Appointment, AppointmentPage, AppointmentStatus, Payment, PaymentMethod};
use crate::store::{self, AppointmentFilter, Booking};
use crate::time::{parse_date, parse_hhmm};

field_parser!(barber_id_field, "barber_id", i64);
field_parser!(service_id_field, "service_id", i64);
field_parser!(client_id_field, "client_id", i64);
field_parser!(date_field, "date", String);
field_parser!(start_field, "start", String);
field_parser!(appointment_id_field, "appointment_id", i64);
field_parser!(amount_field, "amount", f64);

/// A booking request.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct BookingRequest {
    /// The barber.
    #[oai(deserialize_with = "barber_id_field", validator(minimum(value = "1")))]
    pub barber_id: i64,
    /// The service; its duration sizes the appointment.
    #[oai(deserialize_with = "service_id_field", validator(minimum(value = "1")))]
    pub service_id: i64,
    /// The client.
    #[oai(deserialize_with = "client_id_field", validator(minimum(value = "1")))]
    pub client_id: i64,
    /// The day, `YYYY-MM-DD`.
    #[oai(deserialize_with = "date_field")]
    pub date: String,
    /// The start, `HH:MM`: one of the barber's free slots that day.
    #[oai(deserialize_with = "start_field")]
    pub start: String,
}

impl Example for BookingRequest {
    fn example() -> Self {
        BookingRequest {
            barber_id: 1,
            service_id: 1,
            client_id: 42,
            date: super::example_day().to_string(),
            start: "10:30".into(),
        }
    }
}

/// A payment to record.
#[derive(Object, Debug, Clone)]
#[oai(example)]
pub struct PaymentRequest {
    /// The appointment paid for.
    #[oai(
        deserialize_with = "appointment_id_field",
        validator(minimum(value = "1"))
    )]
    pub appointment_id: i64,
    /// Amount in the shop's currency, tip excluded.
    #[oai(
        deserialize_with = "amount_field",
        validator(minimum(value = "0", exclusive = true), maximum(value = "100000"))
    )]
    pub amount: f64,
    /// Tip on top of the amount.
    #[oai(validator(minimum(value = "0"), maximum(value = "100000")))]
    pub tip: Option<f64>,
    /// `card` (default), `cash` or `wallet`.
    pub method: Option<PaymentMethod>,
}

impl Example for PaymentRequest {
    fn example() -> Self {
        PaymentRequest {
            appointment_id: 1,
            amount: 35.0,
            tip: Some(5.0),
            method: Some(PaymentMethod::Card),
        }
    }
}

/// Appointment and payment routes.
pub struct AppointmentsApi(pub Arc<State>);

#[OpenApi(prefix_path = "/api/v2")]
impl AppointmentsApi {
    /// List appointments
    ///
    /// Filtered by barber, client, day range and status; ordered by day and start; paged.
    #[oai(
        path = "/appointments",
        method = "get",
        operation_id = "list_appointments"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list_appointments(
        &self,
        /// Only this barber.
        barber_id: Query<Option<Id>>,
        /// Only this client.
        client_id: Query<Option<Id>>,
        /// From this day, inclusive.
        from: Query<Option<Day>>,
        /// To this day, inclusive.
        to: Query<Option<Day>>,
        /// Only this status.
        status: Query<Option<AppointmentStatus>>,
        /// Page number, from 1.
        #[oai(default = "default_page", validator(minimum(value = "1")))]
        page: Query<u32>,
        /// Page size, 1–200.
        #[oai(
            default = "default_size",
            validator(minimum(value = "1"), maximum(value = "200"))
        )]
        size: Query<u32>,
    ) -> Reply<AppointmentPage> {
        let filter = AppointmentFilter {
            barber_id: barber_id.0.map(|x| x.0),
            client_id: client_id.0.map(|x| x.0),
            from: from.0.map(|d| d.0),
            to: to.0.map(|d| d.0),
            status: status.0,
            page: page.0,
            size: size.0,
        };
        self.0
            .db
            .read(move |c| store::list_appointments(c, &filter))
            .await
            .into()
    }

    /// One appointment
    #[oai(
        path = "/appointments/:appointment_id",
        method = "get",
        operation_id = "get_appointment"
    )]
    async fn get_appointment(
        &self,
        /// The appointment.
        appointment_id: Path<PathId<AppointmentId>>,
    ) -> Reply<Appointment> {
        let id = appointment_id.0.0;
        self.0
            .db
            .read(move |c| store::get_appointment(c, id))
            .await
            .into()
    }

    /// Book an appointment
    ///
    /// Books `start` on `date` with the barber for the service's duration. The slot must lie
    /// in the barber's working hours (400 otherwise), outside time off and free of other
    /// appointments (409 otherwise; never a double booking, concurrent requests included).
    /// Emits `appointment.created` after the booking is stored.
    #[oai(
        path = "/appointments",
        method = "post",
        operation_id = "create_appointment"
    )]
    async fn create_appointment(&self, body: JsonBody<BookingRequest>) -> Created<Appointment> {
        let req = body.0;
        let date = match parse_date(&req.date) {
            Ok(d) => d,
            Err(e) => {
                return Err(BookingError::invalid("date", "invalid_date", e)).into();
            }
        };
        let start = match parse_hhmm(&req.start) {
            Ok(s) => s,
            Err(e) => {
                return Err(BookingError::invalid("start", "invalid_time", e)).into();
            }
        };
        let booking = Booking {
            barber_id: req.barber_id,
            service_id: req.service_id,
            client_id: req.client_id,
            date,
            start,
        };
        let (rules, now) = (self.0.rules, self.0.now());
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| store::create_appointment(c, &rules, now, booking, &stamp))
            .await;
        if let Ok(appointment) = &result {
            events::appointment_created(&self.0.ctx, appointment);
        }
        result.into()
    }

    /// Cancel an appointment
    ///
    /// Frees its slot. 409 when it is already cancelled or has taken place. Emits
    /// `appointment.cancelled` after the change is stored.
    #[oai(
        path = "/appointments/:appointment_id",
        method = "delete",
        operation_id = "cancel_appointment"
    )]
    async fn cancel_appointment(
        &self,
        /// The appointment.
        appointment_id: Path<PathId<AppointmentId>>,
    ) -> Reply<Appointment> {
        let id = appointment_id.0.0;
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| store::cancel_appointment(c, id, &stamp))
            .await;
        if let Ok(appointment) = &result {
            events::appointment_cancelled(&self.0.ctx, appointment);
        }
        result.into()
    }

    /// Record a payment
    ///
    /// For an appointment that is not cancelled. Emits `payment.recorded` after the payment
    /// is stored, which purges revenue analytics (and nothing else).
    #[oai(path = "/payments", method = "post", operation_id = "record_payment")]
    async fn record_payment(&self, body: JsonBody<PaymentRequest>) -> Created<Payment> {
        let req = body.0;
        let payment = crate::model::NewPayment {
            appointment_id: req.appointment_id,
            amount: req.amount,
            tip: req.tip,
            method: req.method,
        };
        let stamp = self.0.clock.local_stamp();
        let result = self
            .0
            .db
            .write(move |c| store::record_payment(c, &payment, &stamp))
            .await;
        match result {
            Ok((payment, appointment)) => {
                events::payment_recorded(&self.0.ctx, &payment, &appointment);
                Ok(payment).into()
            }
            Err(e) => Err(e).into(),
        }
    }
}

fn default_page() -> u32 {
    1
}

fn default_size() -> u32 {
    50
}
