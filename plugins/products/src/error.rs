//! The plugin's one error type. Each variant maps to one HTTP status in [`crate::api`].

/// Why a products operation failed. Messages are written for the API consumer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProductsError {
    /// The input is malformed (400). `field` names it.
    #[error("{message}")]
    Invalid {
        /// The request parameter or body field at fault.
        field: String,
        /// What is wrong and what would be accepted.
        message: String,
    },
    /// The caller may not do this (403): another user's preferences.
    #[error("{0}")]
    Forbidden(String),
    /// The request has no verified principal where one is needed (401).
    #[error("{0}")]
    Unauthorized(String),
    /// Something the request names does not exist (404).
    #[error("{message}")]
    NotFound {
        /// The request field that names it.
        field: String,
        /// Which thing was not found.
        message: String,
    },
    /// The database or the cache failed (500).
    #[error("{0}")]
    Internal(String),
}

impl ProductsError {
    /// A 400 naming `field`.
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.to_owned(),
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

    /// A 500.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal(message.into())
    }
}

impl From<rusqlite::Error> for ProductsError {
    fn from(e: rusqlite::Error) -> Self {
        Self::Internal(format!("database error: {e}"))
    }
}

impl From<r2d2::Error> for ProductsError {
    fn from(e: r2d2::Error) -> Self {
        Self::Internal(format!("no database connection: {e}"))
    }
}

impl From<serde_json::Error> for ProductsError {
    fn from(e: serde_json::Error) -> Self {
        Self::Internal(format!("stored JSON does not parse: {e}"))
    }
}
