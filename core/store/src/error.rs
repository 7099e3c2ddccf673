//! The crate's error type.

use crate::entry::DecodeError;

/// Why a store operation failed. The engine never surfaces these to HTTP clients: a
/// failing L2 degrades to L1 or the origin. They reach callers of the admin-style
/// operations (purge, keys) and the logs.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Redis is unreachable or the breaker is open; retry later or rely on L1.
    #[error("redis unavailable: {0}")]
    Unavailable(String),
    /// Redis answered with an error (or a timeout); details in the message.
    #[error("redis error: {0}")]
    Redis(#[from] fred::error::Error),
    /// A stored value is not a valid entry; it has been deleted.
    #[error("corrupt cache entry: {0}")]
    Corrupt(#[from] DecodeError),
    /// The configuration cannot work (bad URL, bad prefix); fix the config file.
    #[error("invalid cache configuration: {0}")]
    Config(String),
}
