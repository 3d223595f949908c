//! The one place notifier errors become gRPC statuses.

use billing_server::status;
use tonic::Status;

use crate::error::NotifierError;

/// google.rpc.ErrorInfo domain of the notifier's reasons.
pub const ERROR_DOMAIN: &str = "notifier.billing";

/// Maps an error; unexpected ones are logged and returned as opaque INTERNAL
/// (UNAVAILABLE when the database is unreachable: retryable).
pub fn to_status(error: NotifierError) -> Status {
    match error {
        NotifierError::Refused(refusal) => refusal.into_status(ERROR_DOMAIN),
        NotifierError::Storage(error) => status::storage_status(error, "notifier", ERROR_DOMAIN),
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<NotifierError> for Status {
    fn from(error: NotifierError) -> Self {
        to_status(error)
    }
}
