//! The meter service's error type; `grpc::status` maps it in one place.

use billing_server::status::Refusal;

/// Why an operation did not happen. A failed operation wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum MeterError {
    /// Refused the way every service refuses: bad fields, an unknown id, a
    /// state conflict, a reused `request_id`.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// Another active meter already uses the event name.
    #[error("an active meter already uses event_name {0:?}")]
    EventNameInUse(String),
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
