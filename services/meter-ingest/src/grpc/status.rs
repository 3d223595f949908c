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
        MeterError::Refused(refusal) => refusal.into_status(ERROR_DOMAIN),
        MeterError::EventNameInUse(name) => status::with_reason(
            Code::AlreadyExists,
            "EVENT_NAME_IN_USE",
            ERROR_DOMAIN,
            format!("an active meter already uses event_name {name:?}"),
        ),
        MeterError::Storage(error) => status::storage_status(error, "meter", ERROR_DOMAIN),
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
