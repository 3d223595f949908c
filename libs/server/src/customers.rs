//! Whether invoicing knows a customer: asked by the ledger before a grant
//! gives a customer money, and by meter-ingest to report usage nobody will
//! bill (`meter.usage_unattributed`).
//!
//! Customers are never deleted, so a positive answer is cached for the life
//! of the process (bounded: the cache starts over past `CACHE_MAX`); a
//! negative one is not, so a customer created a moment later is found.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use billing_proto::invoicing::v1 as invoicing;
use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use tonic::Code;

use crate::peer::{self, InternalCaller, PeerChannel};

/// Positive answers kept before the cache starts over.
const CACHE_MAX: usize = 100_000;

/// Where invoicing is and how to call it.
#[derive(Debug, Clone)]
pub struct DirectoryConfig {
    /// `http://host:port` of invoicing.
    pub invoicing_url: String,
    /// A key with the `internal` scope on invoicing.
    pub internal_api_key: String,
    /// Deadline of each call.
    pub deadline: Duration,
}

/// Why the directory cannot be set up.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryConfigError {
    /// The URL does not parse.
    #[error("invoicing URL: {0}")]
    Url(#[from] tonic::transport::Error),
    /// The key has characters metadata cannot carry.
    #[error("the internal API key is not a valid header value")]
    Key,
}

/// Why invoicing could not say.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{detail}")]
pub struct LookupFailed {
    /// Invoicing refused the internal key (a configuration fault).
    pub key_refused: bool,
    /// The code and message.
    pub detail: String,
}

/// Asks invoicing whether customers exist.
#[derive(Debug, Clone)]
pub struct CustomerDirectory {
    client: InvoicingServiceClient<PeerChannel>,
    caller: InternalCaller,
    known: Arc<Mutex<HashSet<(String, String)>>>,
}

impl CustomerDirectory {
    /// A client that connects on first use (the caller starts while
    /// invoicing is still down).
    pub fn new(config: &DirectoryConfig) -> Result<Self, DirectoryConfigError> {
        Ok(Self {
            client: InvoicingServiceClient::new(peer::channel(&config.invoicing_url)?),
            caller: InternalCaller::new(&config.internal_api_key, config.deadline)
                .ok_or(DirectoryConfigError::Key)?,
            known: Arc::default(),
        })
    }

    /// Whether invoicing knows `customer` (a `cus_…` id) in `account`.
    pub async fn knows(&self, account: &str, customer: &str) -> Result<bool, LookupFailed> {
        let entry = (account.to_owned(), customer.to_owned());
        if self.known().contains(&entry) {
            return Ok(true);
        }
        let request = self
            .caller
            .request(
                account,
                invoicing::GetCustomerRequest {
                    id: customer.to_owned(),
                },
            )
            .ok_or_else(|| LookupFailed {
                key_refused: false,
                detail: format!("account {account:?} cannot be sent"),
            })?;
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
                Ok(true)
            }
            Ok(_) => Ok(false),
            Err(status) if status.code() == Code::NotFound => Ok(false),
            Err(status) => Err(LookupFailed {
                key_refused: matches!(
                    status.code(),
                    Code::Unauthenticated | Code::PermissionDenied
                ),
                detail: format!("{:?}: {}", status.code(), status.message()),
            }),
        }
    }

    fn known(&self) -> std::sync::MutexGuard<'_, HashSet<(String, String)>> {
        // A poisoned lock only means another lookup panicked mid-insert:
        // the set itself is still a valid cache.
        self.known
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
