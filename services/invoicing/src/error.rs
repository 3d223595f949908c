//! The invoicing service's error type; `grpc::status` maps it in one place.

use billing_money::FieldViolation;

use crate::store::StoreError;
use crate::upstream::{PeerCode, PeerStatus};

/// Why an operation did not happen. A failed operation wrote nothing, except
/// where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    /// Invalid fields.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// No such object in the caller's account.
    #[error("no {kind} with id {id:?}")]
    NotFound {
        /// "customer", "price", "subscription", "invoice".
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
    /// The external id is taken by another customer.
    #[error("external_id {0:?} is already used by another customer")]
    ExternalIdInUse(String),
    /// The same `request_id` with another payload.
    #[error("request_id was already used with a different request")]
    IdempotencyKeyReused,
    /// Another service answered with an error the caller should see as is
    /// (NOT_FOUND meter, INVALID_ARGUMENT from the ledger, …).
    #[error("{service}: {status}")]
    Upstream {
        /// "credit-ledger" or "meter-ingest".
        service: &'static str,
        /// What it said.
        status: PeerStatus,
    },
    /// Another service is unreachable or timed out. For a finalize or void,
    /// the invoice's saga state was saved and the recovery worker completes it.
    #[error("{service} is unavailable: {detail}")]
    Unavailable {
        /// "credit-ledger" or "meter-ingest".
        service: &'static str,
        /// The peer's code (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN).
        code: PeerCode,
        /// What went wrong.
        detail: String,
        /// The invoice left in `finalizing`/`voiding`, if any.
        invoice: Option<String>,
    },
    /// The database refused or failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A sum of money does not fit in i64 (named by what was summed): the
    /// operation stopped, nothing was written.
    #[error("{0} overflows i64")]
    Overflow(&'static str),
    /// A stored value could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl InvoicingError {
    /// Shorthand for a one-field INVALID_ARGUMENT.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }

    /// Shorthand for NOT_FOUND.
    pub fn not_found(kind: &'static str, id: &str) -> Self {
        Self::NotFound {
            kind,
            id: id.to_owned(),
        }
    }

    /// Shorthand for a FAILED_PRECONDITION.
    pub fn conflict(reason: &'static str, message: impl Into<String>) -> Self {
        Self::Conflict {
            reason,
            message: message.into(),
        }
    }
}

impl From<serde_json::Error> for InvoicingError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl From<billing_money::MoneyError> for InvoicingError {
    fn from(error: billing_money::MoneyError) -> Self {
        Self::Corrupt(error.to_string())
    }
}
