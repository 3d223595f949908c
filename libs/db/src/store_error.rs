//! The error a service's `store/` hands upward: a database failure, already
//! classified, or a refusal the storage layer itself decides (a reused
//! `request_id`), so that no layer above the store needs to know sqlx.

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or failed a statement.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// The `request_id` was used before with another request (AIP-155).
    #[error("request_id was already used with a different request")]
    KeyReused,
    /// A stored record or response could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for StoreError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl StoreError {
    /// The database could not be reached (retryable: gRPC UNAVAILABLE), as
    /// opposed to a refused or failed statement.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Database(error) if crate::is_unavailable(error))
    }

    /// A CHECK constraint fired: a last-line invariant stopped the write.
    pub fn is_check_violation(&self) -> bool {
        matches!(self, Self::Database(error) if crate::is_check_violation(error))
    }
}
