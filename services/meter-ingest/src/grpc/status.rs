//! The one place meter errors become gRPC statuses.

use billing_server::status;
use tonic::{Code, Status};

use crate::error::MeterError;

/// google.rpc.ErrorInfo domain of the meter service's reasons.
pub const ERROR_DOMAIN: &str = "meter.billing";

/// Maps an error; unexpected ones are logged and returned as opaque INTERNAL
/// (UNAVAILABLE when the database is unreachable: retryable).
pub fn to_status(error: MeterError) -> Status {
    match error {
        MeterError::Invalid(violations) => status::invalid_argument(&violations),
        MeterError::NotFound { kind, id } => status::not_found(kind, &id),
        MeterError::Conflict { reason, message } => {
            status::with_reason(Code::FailedPrecondition, reason, ERROR_DOMAIN, message)
        }
        MeterError::EventNameInUse(name) => status::with_reason(
            Code::AlreadyExists,
            "EVENT_NAME_IN_USE",
            ERROR_DOMAIN,
            format!("an active meter already uses event_name {name:?}"),
        ),
        MeterError::IdempotencyKeyReused => status::with_reason(
            Code::AlreadyExists,
            "IDEMPOTENCY_KEY_REUSED",
            ERROR_DOMAIN,
            "request_id was already used with a different request",
        ),
        MeterError::Storage(error) if error.is_unavailable() => {
            tracing::warn!(%error, "database unavailable");
            Status::unavailable("the meter database is unavailable; retry")
        }
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<MeterError> for Status {
    fn from(error: MeterError) -> Self {
        to_status(error)
    }
}
