//! The plugin's one error type. Each variant maps to one HTTP status in [`crate::api`].

/// Why a booking operation failed. Messages are written for the API consumer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum BookingError {
    /// The input is malformed or breaks a booking rule (400). `field` names the input.
    #[error("{message}")]
    Invalid {
        /// The request field at fault (`date`, `start`, `patterns[0]`, ...).
        field: String,
        /// Machine-readable code, e.g. `invalid_date`.
        code: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// Something the request names does not exist (404).
    #[error("{message}")]
    NotFound {
        /// The request field that names it.
        field: String,
        /// Which thing was not found.
        message: String,
    },
    /// The request conflicts with the current state (409): a taken slot, time off, an
    /// appointment already cancelled.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code, e.g. `slot_taken`.
        code: &'static str,
        /// What it conflicts with.
        message: String,
    },
    /// The database or the plugin failed (500).
    #[error("{0}")]
    Internal(String),
}

impl BookingError {
    /// A 400 naming `field`.
    pub fn invalid(field: &str, code: &'static str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
            code,
            message: message.into(),
        }
    }

    /// A 404 naming `field`.
    pub fn not_found(field: &str, message: impl Into<String>) -> Self {
        Self::NotFound {
            field: field.to_owned(),
            message: message.into(),
        }
    }

    /// A 409.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            code,
            message: message.into(),
        }
    }

    /// A 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl From<rusqlite::Error> for BookingError {
    fn from(e: rusqlite::Error) -> Self {
        if let rusqlite::Error::SqliteFailure(err, _) = &e
            && err.code == rusqlite::ErrorCode::ConstraintViolation
            && e.to_string().contains("appointments")
        {
            // The unique index on (barber, date, start) caught a double booking.
            return Self::conflict("slot_taken", "that slot was just booked by someone else");
        }
        Self::Internal(format!("database error: {e}"))
    }
}
