//! The notifier's error type; `grpc::status` maps it in one place.

use billing_server::status::Refusal;

/// Why an operation did not happen. A failed operation wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum NotifierError {
    /// Refused the way every service refuses: bad fields, an unknown id, a
    /// state conflict, a reused `request_id`.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The database refused or failed.
    #[error("storage: {0}")]
    Storage(#[from] crate::store::StoreError),
    /// A stored value could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// The operating system's random source failed (secrets).
    #[error("random source: {0}")]
    Random(String),
}

impl From<serde_json::Error> for NotifierError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}
