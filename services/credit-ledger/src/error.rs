//! The ledger's error type; `grpc::status` maps it to `tonic::Status` in one place.

use billing_server::status::Refusal;

pub use crate::domain::error::ConflictReason;
use crate::domain::error::RuleError;
use crate::store::StoreError;

/// Why a ledger operation did not happen. A failed operation wrote nothing.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    /// Refused the way every service refuses: bad fields, an unknown id, a
    /// state conflict, a reused `request_id`.
    #[error(transparent)]
    Refused(#[from] Refusal),
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
    /// Invoicing does not know the customer a grant names.
    #[error("no customer with id {0:?}")]
    UnknownCustomer(String),
    /// Invoicing could not say whether the customer exists (unreachable,
    /// or it refused the ledger's key): nothing was written.
    #[error("invoicing could not confirm the customer ({detail})")]
    CustomerCheckFailed {
        /// Invoicing refused the ledger's internal key (an operator's fix).
        key_refused: bool,
        /// Its code and message.
        detail: String,
    },
    /// A stored record could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

impl LedgerError {
    /// A conflict with its typed reason and message.
    pub fn conflict(reason: ConflictReason, message: impl Into<String>) -> Self {
        Refusal::conflict(reason.as_str(), message).into()
    }
}

impl From<RuleError> for LedgerError {
    fn from(error: RuleError) -> Self {
        match error {
            RuleError::Invalid(violations) => Refusal::Invalid(violations).into(),
            RuleError::Conflict { reason, message } => Self::conflict(reason, message),
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
