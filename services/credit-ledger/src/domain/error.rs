//! The ledger's error type; `grpc::status` maps it to `tonic::Status` in one place.

use billing_server::status::FieldViolation;

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
    Storage(#[from] sqlx::Error),
    /// A stored record could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
}

/// The reasons of FAILED_PRECONDITION conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConflictReason {
    /// VoidCreditGrant on a grant that was applied.
    GrantAlreadyApplied,
    /// An operation on a voided grant.
    GrantVoided,
    /// ExpireCreditGrant or UpdateCreditGrant(expires_at) on an expired grant.
    GrantAlreadyExpired,
    /// ApplyCredits for an invoice already applied with other lines.
    InvoiceAlreadyApplied,
}

impl ConflictReason {
    /// The UPPER_SNAKE reason of the ErrorInfo.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantAlreadyApplied => "GRANT_ALREADY_APPLIED",
            Self::GrantVoided => "GRANT_VOIDED",
            Self::GrantAlreadyExpired => "GRANT_ALREADY_EXPIRED",
            Self::InvoiceAlreadyApplied => "INVOICE_ALREADY_APPLIED",
        }
    }
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

impl From<billing_db::idempotency::IdempotencyError> for LedgerError {
    fn from(error: billing_db::idempotency::IdempotencyError) -> Self {
        use billing_db::idempotency::IdempotencyError;
        match error {
            IdempotencyError::Reused => Self::IdempotencyKeyReused,
            IdempotencyError::Sqlx(error) => Self::Storage(error),
            IdempotencyError::Corrupt(detail) => Self::Corrupt(detail),
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
