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
        LedgerError::Refused(refusal) => refusal.into_status(ERROR_DOMAIN),
        LedgerError::PermissionDenied(method) => status::with_reason(
            Code::PermissionDenied,
            "SCOPE_REQUIRED",
            ERROR_DOMAIN,
            format!("this API key may not call {method}: it needs the apply_credits scope"),
        ),
        LedgerError::Storage(error) if error.is_check_violation() => {
            tracing::error!(%error, "a ledger CHECK constraint fired: invariant protected");
            Status::aborted("the ledger refused a write that would break an invariant; retry")
        }
        LedgerError::Storage(error) => status::storage_status(error, "ledger", ERROR_DOMAIN),
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
