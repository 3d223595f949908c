//! The one place ledger errors become gRPC statuses.

use billing_server::status;
use tonic::{Code, Status};

use crate::error::LedgerError;

/// google.rpc.ErrorInfo domain of the ledger's reasons.
pub const ERROR_DOMAIN: &str = "ledger.billing";

/// Maps an error; unexpected ones are logged and returned as opaque INTERNAL
/// (or UNAVAILABLE when the database is unreachable, which is retryable).
pub fn to_status(error: LedgerError) -> Status {
    match error {
        LedgerError::Invalid(violations) => status::invalid_argument(&violations),
        LedgerError::NotFound { kind, id } => status::not_found(kind, &id),
        LedgerError::Conflict { reason, message } => status::with_reason(
            Code::FailedPrecondition,
            reason.as_str(),
            ERROR_DOMAIN,
            message,
        ),
        LedgerError::IdempotencyKeyReused => status::with_reason(
            Code::AlreadyExists,
            "IDEMPOTENCY_KEY_REUSED",
            ERROR_DOMAIN,
            "request_id was already used with a different request",
        ),
        LedgerError::PermissionDenied(method) => status::with_reason(
            Code::PermissionDenied,
            "SCOPE_REQUIRED",
            ERROR_DOMAIN,
            format!("this API key may not call {method}: it needs the apply_credits scope"),
        ),
        LedgerError::Storage(error) if error.is_unavailable() => {
            tracing::warn!(%error, "database unavailable");
            Status::unavailable("the ledger database is unavailable; retry")
        }
        LedgerError::Storage(error) if error.is_check_violation() => {
            tracing::error!(%error, "a ledger CHECK constraint fired: invariant protected");
            Status::aborted("the ledger refused a write that would break an invariant; retry")
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<LedgerError> for Status {
    fn from(error: LedgerError) -> Self {
        to_status(error)
    }
}
