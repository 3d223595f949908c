//! The invoicing service's error type; `grpc::status` maps it in one place.

use billing_server::status::Refusal;

use crate::store::StoreError;
use crate::upstream::{PeerCode, PeerStatus};

/// Why an operation did not happen. A failed operation wrote nothing, except
/// where a variant says otherwise.
#[derive(Debug, thiserror::Error)]
pub enum InvoicingError {
    /// Refused the way every service refuses: bad fields, an unknown id, a
    /// state conflict, a reused `request_id`.
    #[error(transparent)]
    Refused(#[from] Refusal),
    /// The external id is taken by another customer.
    #[error("external_id {0:?} is already used by another customer")]
    ExternalIdInUse(String),
    /// Another service answered with an error the caller should see as is
    /// (NOT_FOUND meter, INVALID_ARGUMENT from the ledger, …).
    #[error("{service}: {status}")]
    Upstream {
        /// "credit-ledger" or "meter-ingest".
        service: &'static str,
        /// What it said.
        status: PeerStatus,
    },
    /// Another service is unreachable or timed out. For a finalize or void,
    /// the invoice's saga state was saved and the recovery worker completes it.
    #[error("{service} is unavailable: {detail}")]
    Unavailable {
        /// "credit-ledger" or "meter-ingest".
        service: &'static str,
        /// The peer's code (UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, UNKNOWN).
        code: PeerCode,
        /// What went wrong.
        detail: String,
        /// The invoice left in `finalizing`/`voiding`, if any.
        invoice: Option<String>,
    },
    /// The database refused or failed.
    #[error("storage: {0}")]
    Storage(#[from] StoreError),
    /// A sum of money does not fit in i64 (named by what was summed): the
    /// operation stopped, nothing was written.
    #[error(transparent)]
    Overflow(#[from] crate::domain::invoice::TotalOverflow),
    /// A stored value could not be read back.
    #[error("stored record is unreadable: {0}")]
    Corrupt(String),
    /// Another saga run holds the invoice's claim (ops/claims.rs).
    #[error("invoice {0} is being worked on by another call")]
    Busy(String),
}

impl From<serde_json::Error> for InvoicingError {
    fn from(error: serde_json::Error) -> Self {
        Self::Corrupt(error.to_string())
    }
}

impl From<billing_money::MoneyError> for InvoicingError {
    fn from(error: billing_money::MoneyError) -> Self {
        Self::Corrupt(error.to_string())
    }
}
