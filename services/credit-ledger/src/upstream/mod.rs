//! The one call the ledger makes to another service: whether invoicing
//! knows a customer, before a grant gives that customer money
//! (`billing_server::customers`, which caches positive answers).
//! Without `LEDGER_INVOICING_URL` the ledger runs alone and checks only the
//! id's form (a warning says so at start-up).

use billing_server::customers::{CustomerDirectory, DirectoryConfigError};

pub use billing_server::customers::DirectoryConfig as CustomerCheckConfig;

use crate::error::LedgerError;

/// Asks invoicing whether customers exist.
#[derive(Debug, Clone)]
pub struct Customers {
    directory: CustomerDirectory,
}

impl Customers {
    /// A client that connects on first use (the ledger starts while
    /// invoicing is still down).
    pub fn new(config: &CustomerCheckConfig) -> Result<Self, DirectoryConfigError> {
        Ok(Self {
            directory: CustomerDirectory::new(config)?,
        })
    }

    /// Ok when invoicing knows `customer` in `account`; NOT_FOUND when it
    /// does not; UNAVAILABLE (nothing written, retry) when it cannot say.
    pub async fn check(&self, account: &str, customer: &str) -> Result<(), LedgerError> {
        match self.directory.knows(account, customer).await {
            Ok(true) => Ok(()),
            Ok(false) => Err(LedgerError::UnknownCustomer(customer.to_owned())),
            Err(failed) => Err(LedgerError::CustomerCheckFailed {
                key_refused: failed.key_refused,
                detail: failed.detail,
            }),
        }
    }
}
