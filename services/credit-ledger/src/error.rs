//! The ledger's error type; `grpc::status` maps it to `tonic::Status` in one place.

use billing_money::FieldViolation;

pub use crate::domain::error::ConflictReason;
use crate::domain::error::RuleError;
use crate::store::StoreError;

/// Why a ledger operation did not happen. A failed operation wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Invalid fields, each named by its path.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// No such object in the caller's account.
    #[error("no {kind} with id {id:?}")]
    NotFound {
        /// "credit grant", "pricing unit", "invoice".
        kind: &'static str,
        /// The id asked for.
        id: String,
    },
    /// A state conflict (FAILED_PRECONDITION with an ErrorInfo reason).
    #[error("{message}")]
    Conflict {
        /// The reason, e.g. GRANT_ALREADY_APPLIED.
        reason: ConflictReason,
        /// Explanation for the client developer.
        message: String,
    },
    /// The same `request_id` was used with another payload.
    #[error("request_id was already used with a different request")]
    IdempotencyKeyReused,
    /// The key lacks the `apply_credits` scope.
    #[error("this API key may not call {0}: it needs the apply_credits scope")]
    PermissionDenied(&'static str),
    /// The database refused or failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A rule of the ledger would have been broken (overflow, a planned grant
    /// that was not locked): the operation stopped, nothing was written.
    #[error("invariant: {0}")]
    Invariant(String),
    /// A stored record could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl LedgerError {
    /// A conflict with its reason and message.
    pub fn conflict(reason: ConflictReason, message: impl Into<String>) -> Self {
        Self::Conflict {
            reason,
            message: message.into(),
        }
    }

    /// One invalid field.
    pub fn invalid(field: &str, description: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldViolation::new(field, description)])
    }
}

impl From<RuleError> for LedgerError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Invalid(violations) => Self::Invalid(violations),
            RuleError::Conflict { reason, message } => Self::Conflict { reason, message },
            RuleError::Overflow(what) => Self::Invariant(format!("{what} overflows i64")),
            RuleError::NotLocked(grant) => Self::Invariant(format!(
                "grant {grant} was planned but not locked by the transaction"
            )),
        }
    }
}

impl From<serde_json::Error> for LedgerError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl From<billing_money::MoneyError> for LedgerError {
    fn from(error: billing_money::MoneyError) -> Self {
        Self::Corrupt(error.to_string())
    }
}
