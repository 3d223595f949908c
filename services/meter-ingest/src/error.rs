//! The meter service's error type; `grpc::status` maps it in one place.

use billing_money::FieldViolation;

/// Why an operation did not happen. A failed operation wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// Invalid fields.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// No such object in the caller's account.
    #[error("no {kind} with id {id:?}")]
    NotFound {
        /// "meter", "event".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A state conflict (FAILED_PRECONDITION with a reason).
    #[error("{message}")]
    Conflict {
        /// UPPER_SNAKE reason.
        reason: &'static str,
        /// Explanation.
        message: String,
    },
    /// Another active meter already uses the event name.
    #[error("an active meter already uses event_name {0:?}")]
    EventNameInUse(String),
    /// The same `request_id` with another payload.
    #[error("request_id was already used with a different request")]
    IdempotencyKeyReused,
    /// The database refused or failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::store::StoreError),
    /// A stored value could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl From<serde_json::Error> for MeterError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}
