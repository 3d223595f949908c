//! What the ledger's rules refuse; `crate::error` turns it into the
//! service's error.

use billing_money::FieldViolation;

/// Why a rule refused a change. Nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// Invalid fields, each named by its path.
    #[error("invalid request: {0:?}")]
    Invalid(Vec<FieldViolation>),
    /// A state conflict (FAILED_PRECONDITION with an ErrorInfo reason).
    #[error("{message}")]
    Conflict {
        /// The reason, e.g. GRANT_ALREADY_APPLIED.
        reason: ConflictReason,
        /// Explanation for the client developer.
        message: String,
    },
    /// A sum of amounts does not fit in i64 (named by what was summed).
    #[error("{0} overflows i64")]
    Overflow(&'static str),
    /// A plan names a grant the transaction did not lock: a bug, never skipped.
    #[error("grant {0} was planned but not locked")]
    NotLocked(String),
}

impl RuleError {
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
    /// CreateCreditHold for more than the free credits.
    InsufficientCredits,
}

impl ConflictReason {
    /// The UPPER_SNAKE reason of the ErrorInfo.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::GrantAlreadyApplied => "GRANT_ALREADY_APPLIED",
            Self::GrantVoided => "GRANT_VOIDED",
            Self::GrantAlreadyExpired => "GRANT_ALREADY_EXPIRED",
            Self::InvoiceAlreadyApplied => "INVOICE_ALREADY_APPLIED",
            Self::InsufficientCredits => "INSUFFICIENT_CREDITS",
        }
    }
}
