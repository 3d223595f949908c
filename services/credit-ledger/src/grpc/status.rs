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
        LedgerError::UnknownCustomer(id) => status::not_found("customer", &id),
        LedgerError::CustomerCheckFailed {
            key_refused: true,
            detail,
        } => {
            tracing::error!(
                detail,
                "invoicing refused the ledger's internal key: check LEDGER_INTERNAL_API_KEY \
                 and invoicing's BILLING_API_KEYS (the key needs the internal scope)"
            );
            status::with_reason(
                Code::Internal,
                "UPSTREAM_KEY_REFUSED",
                ERROR_DOMAIN,
                "invoicing refused the ledger's internal key, so the customer could not be \
                 checked; nothing was written; an operator must fix the service keys",
            )
        }
        LedgerError::CustomerCheckFailed { detail, .. } => {
            tracing::warn!(detail, "customer check failed");
            status::with_reason(
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
                ERROR_DOMAIN,
                format!(
                    "invoicing could not confirm the customer ({}); nothing was written; retry",
                    status::clip(&detail, 200)
                ),
            )
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
