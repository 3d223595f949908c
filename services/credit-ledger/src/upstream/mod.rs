//! The one call the ledger makes to another service: whether invoicing
//! knows a customer, before a grant gives that customer money.
//!
//! Customers are never deleted, so a positive answer is cached for the life
//! of the process (bounded: the cache starts over past `CACHE_MAX`); a
//! negative one is not, so a customer created a moment later is found.
//! Without `LEDGER_INVOICING_URL` the ledger runs alone and checks only the
//! id's form (a warning says so at start-up).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billing_proto::invoicing::v1 as invoicing;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_server::peer::{self, InternalCaller, PeerChannel};
use tonic::Code;

use crate::error::LedgerError;

/// Positive answers kept before the cache starts over.
const CACHE_MAX: usize = 100_000;

/// Where invoicing is and how to call it.
#[derive(Debug, Clone)]
pub struct CustomerCheckConfig {
    /// `http://host:port` of invoicing.
    pub invoicing_url: String,
    /// A key with the `internal` scope on invoicing.
    pub internal_api_key: String,
    /// Deadline of each call.
    pub deadline: Duration,
}

/// Why the customer check cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum CustomerCheckConfigError {
    /// The URL does not parse.
    #[error("LEDGER_INVOICING_URL: {0}")]
    Url(#[from] tonic::transport::Error),
    /// The key has characters metadata cannot carry.
    #[error("LEDGER_INTERNAL_API_KEY is not a valid header value")]
    Key,
}

/// Asks invoicing whether customers exist.
#[derive(Debug, Clone)]
pub struct Customers {
    client: InvoicingServiceClient<PeerChannel>,
    caller: InternalCaller,
    known: Arc<Mutex<HashSet<(String, String)>>>,
}

impl Customers {
    /// A client that connects on first use (the ledger starts while
    /// invoicing is still down).
    pub fn new(config: &CustomerCheckConfig) -> Result<Self, CustomerCheckConfigError> {
        Ok(Self {
            client: InvoicingServiceClient::new(peer::channel(&config.invoicing_url)?),
            caller: InternalCaller::new(&config.internal_api_key, config.deadline)
                .ok_or(CustomerCheckConfigError::Key)?,
            known: Arc::default(),
        })
    }

    /// Ok when invoicing knows `customer` in `account`; NOT_FOUND when it
    /// does not; UNAVAILABLE (nothing written, retry) when it cannot say.
    pub async fn check(&self, account: &str, customer: &str) -> Result<(), LedgerError> {
        let entry = (account.to_owned(), customer.to_owned());
        if self.known().contains(&entry) {
            return Ok(());
        }
        let request = self
            .caller
            .request(
                account,
                invoicing::GetCustomerRequest {
                    id: customer.to_owned(),
                },
            )
            .ok_or_else(|| LedgerError::Corrupt(format!("account {account:?}")))?;
        match self.client.clone().get_customer(request).await {
            // GetCustomer also accepts external ids: only a `cus_…` answer
            // for the same id proves the customer.
            Ok(found)
                if found
                    .get_ref()
                    .customer
                    .as_ref()
                    .is_some_and(|c| c.id == customer) =>
            {
                let mut known = self.known();
                if known.len() >= CACHE_MAX {
                    known.clear();
                }
                known.insert(entry);
                Ok(())
            }
            Ok(_) => Err(LedgerError::UnknownCustomer(customer.to_owned())),
            Err(status) if status.code() == Code::NotFound => {
                Err(LedgerError::UnknownCustomer(customer.to_owned()))
            }
            Err(status) => Err(LedgerError::CustomerCheckFailed {
                key_refused: matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                detail: format!("{:?}: {}", status.code(), status.message()),
            }),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        // A poisoned lock only means another check panicked mid-insert: the
        // set itself is still a valid cache.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
