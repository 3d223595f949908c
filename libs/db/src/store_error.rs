//! The error a service's `store/` hands upward: a database failure, already
//! classified, so that no layer above the store needs to know sqlx.

/// The database refused or failed a statement.
#[derive(Debug, thiserror::Error)]
#[error(transparent)]
pub struct StoreError(#[from] sqlx::Error);

impl StoreError {
    /// The database could not be reached (retryable: gRPC UNAVAILABLE), as
    /// opposed to a refused or failed statement.
    pub fn is_unavailable(&self) -> bool {
        crate::is_unavailable(&self.0)
    }

    /// A CHECK constraint fired: a last-line invariant stopped the write.
    pub fn is_check_violation(&self) -> bool {
        crate::is_check_violation(&self.0)
    }

    /// A unique constraint fired (a lost race on insert).
    pub fn is_unique_violation(&self) -> bool {
        crate::is_unique_violation(&self.0)
    }
}
