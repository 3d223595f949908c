//! The one place invoicing errors become gRPC statuses.

use billing_server::status;
use tonic::{Code, Status};

use crate::error::InvoicingError;

/// google.rpc.ErrorInfo domain of the invoicing service's reasons.
pub const ERROR_DOMAIN: &str = "invoicing.billing";

/// Maps an error; unexpected ones are logged and returned as opaque INTERNAL.
pub fn to_status(error: InvoicingError) -> Status {
    match error {
        InvoicingError::Refused(refusal) => refusal.into_status(ERROR_DOMAIN),
        InvoicingError::ExternalIdInUse(id) => status::with_reason(
            Code::AlreadyExists,
            "EXTERNAL_ID_IN_USE",
            ERROR_DOMAIN,
            format!("external_id {id:?} is already used by another customer"),
        ),
        InvoicingError::Upstream { service, status } if status.code.is_key_refusal() => {
            // Our configuration, not the caller's request: never hand the
            // caller a PERMISSION_DENIED about a key it did not send.
            tracing::error!(
                service,
                code = %status.code.name(),
                message = %status.message,
                "upstream refused invoicing's internal key: check INVOICING_INTERNAL_API_KEY \
                 and the peer's BILLING_API_KEYS (the key needs the internal and apply_credits scopes)"
            );
            status::with_reason(
                Code::Internal,
                "UPSTREAM_KEY_REFUSED",
                ERROR_DOMAIN,
                format!(
                    "{service} refused invoicing's internal key ({}); an operator must fix the \
                     service keys; the refusal is logged",
                    status.code.name()
                ),
            )
        }
        InvoicingError::Upstream { service, status } => {
            tracing::warn!(service, code = %status.code.name(), message = %status.message, "upstream refused");
            Status::new(
                Code::from(status.code.0),
                format!("{service}: {}", status.message),
            )
        }
        InvoicingError::Unavailable {
            service,
            detail,
            invoice,
            ..
        } => {
            tracing::warn!(service, detail, ?invoice, "upstream unavailable");
            let message = match invoice {
                Some(id) => format!(
                    "{service} is unavailable ({detail}); invoice {id} was saved mid-saga and completes \
                     by itself when {service} is back, exactly once; retrying is safe"
                ),
                None => format!("{service} is unavailable ({detail}); nothing was written; retry"),
            };
            status::with_reason(
                Code::Unavailable,
                "UPSTREAM_UNAVAILABLE",
                ERROR_DOMAIN,
                message,
            )
        }
        InvoicingError::Busy(id) => status::with_reason(
            Code::Aborted,
            "INVOICE_BUSY",
            ERROR_DOMAIN,
            format!(
                "invoice {id} is being finalized or voided by another call (or a replica's \
                 recovery worker); retry in a moment: it completes exactly once"
            ),
        ),
        InvoicingError::Storage(error) => status::storage_status(error, "invoicing", ERROR_DOMAIN),
        other => {
            tracing::error!(error = %other, "internal error");
            Status::internal("internal error")
        }
    }
}

impl From<InvoicingError> for Status {
    fn from(error: InvoicingError) -> Self {
        to_status(error)
    }
}
