//! The plugin's one error type. Each variant maps to one HTTP status in [`crate::api`].

/// Why an analytics operation failed. Messages are written for the API consumer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AnalyticsError {
    /// The input is malformed (400). `field` names the input.
    #[error("{message}")]
    Invalid {
        /// The request field at fault (`start_date`, `items[0].quantity`, ...).
        field: String,
        /// Machine-readable code, e.g. `invalid_date`.
        code: &'static str,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// Something the request names does not exist for this tenant (404).
    #[error("{message}")]
    NotFound {
        /// The request field that names it.
        field: String,
        /// Which thing was not found.
        message: String,
    },
    /// The caller may not see this (403), e.g. a principal without a tenant.
    #[error("{message}")]
    Forbidden {
        /// Machine-readable code.
        code: &'static str,
        /// Why.
        message: String,
    },
    /// The request conflicts with the current state (409), e.g. an alert already resolved.
    #[error("{message}")]
    Conflict {
        /// Machine-readable code.
        code: &'static str,
        /// What it conflicts with.
        message: String,
    },
    /// The database or the plugin failed (500).
    #[error("{0}")]
    Internal(String),
}

impl AnalyticsError {
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

impl From<rusqlite::Error> for AnalyticsError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(format!("database error: {e}"))
    }
}
