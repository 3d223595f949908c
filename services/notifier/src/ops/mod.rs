//! The notifier's operations: what the gRPC layer calls.

mod url_policy;

pub use url_policy::UrlPolicy;

use base64::Engine;
use billing_db::idempotency::IdempotencyKey;
use billing_server::clock::Clock;
use billing_server::page::PageRequest;
use billing_server::status::Refuse;

use crate::domain::endpoint::{Endpoint, TEST_EVENT_TYPE};
use crate::error::NotifierError;
use crate::store::{Delivery, DeliveryFilter, EndpointChanges, Store};

/// What CreateWebhookEndpoint asks for, checked.
#[derive(Debug, Clone)]
pub struct NewEndpoint {
    /// The URL.
    pub url: String,
    /// The types.
    pub enabled_events: Vec<String>,
    /// Free text.
    pub description: String,
    /// Metadata.
    pub metadata: std::collections::BTreeMap<String, String>,
}

/// The use cases over the store and the clock.
#[derive(Debug, Clone)]
pub struct Notifier {
    store: Store,
    clock: Clock,
    urls: UrlPolicy,
}

/// A new signing secret: `whsec_` and the base64 of 32 random bytes.
fn new_secret() -> Result<String, NotifierError> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).map_err(|e| NotifierError::Random(e.to_string()))?;
    Ok(format!(
        "whsec_{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

impl Notifier {
    /// Over a store and a clock, accepting URLs by `urls`.
    pub fn new(store: Store, clock: Clock, urls: UrlPolicy) -> Self {
        Self { store, clock, urls }
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The clock.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Creates an endpoint; returns it with its secret.
    pub async fn create_endpoint(
        &self,
        account: &str,
        new: NewEndpoint,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Endpoint, String), NotifierError> {
        let url = self.urls.check(&new.url).await?;
        let now = self.clock.now();
        let endpoint = Endpoint {
            id: billing_server::ids::new_id("we"),
            url,
            enabled_events: new.enabled_events,
            description: new.description,
            metadata: new.metadata,
            disabled_reason: None,
            failing_since: None,
            created: now,
            updated: now,
        };
        let secret = new_secret()?;
        self.store
            .create_endpoint(account, endpoint, &secret, key)
            .await
    }

    /// One endpoint.
    pub async fn endpoint(&self, account: &str, id: &str) -> Result<Endpoint, NotifierError> {
        self.store
            .endpoint(account, id)
            .await?
            .ok_or_else(|| NotifierError::not_found("webhook endpoint", id))
    }

    /// The endpoint, which must be enabled to be sent anything
    /// (FAILED_PRECONDITION `ENDPOINT_DISABLED` otherwise).
    async fn enabled_endpoint(&self, account: &str, id: &str) -> Result<Endpoint, NotifierError> {
        let endpoint = self.endpoint(account, id).await?;
        match &endpoint.disabled_reason {
            None => Ok(endpoint),
            Some(reason) => Err(NotifierError::conflict(
                "ENDPOINT_DISABLED",
                format!("webhook endpoint {id} is disabled ({reason}); enable it first"),
            )),
        }
    }

    /// A page of endpoints.
    pub async fn list_endpoints(
        &self,
        account: &str,
        page: &PageRequest,
    ) -> Result<(Vec<Endpoint>, String), NotifierError> {
        self.store.list_endpoints(account, page).await
    }

    /// Changes an endpoint (a new `url` is checked like a new endpoint's).
    pub async fn update_endpoint(
        &self,
        account: &str,
        id: &str,
        (url, change): (Option<&str>, EndpointChanges),
        key: Option<&IdempotencyKey>,
    ) -> Result<Endpoint, NotifierError> {
        let change: EndpointChanges = match url {
            Some(url) => {
                let url = self.urls.check(url).await?;
                Box::new(move |endpoint: &mut Endpoint| {
                    endpoint.url = url;
                    change(endpoint);
                })
            }
            None => change,
        };
        let now = self.clock.now();
        self.store
            .update_endpoint(account, id, change, key, now)
            .await
    }

    /// Deletes an endpoint.
    pub async fn delete_endpoint(
        &self,
        account: &str,
        id: &str,
    ) -> Result<Endpoint, NotifierError> {
        self.store.delete_endpoint(account, id).await
    }

    /// Rotates an endpoint's secret; returns the new one.
    pub async fn rotate_secret(
        &self,
        account: &str,
        id: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<(Endpoint, String), NotifierError> {
        let secret = new_secret()?;
        self.store
            .rotate_secret(account, id, &secret, key, self.clock.now())
            .await
    }

    /// A page of deliveries.
    pub async fn list_deliveries(
        &self,
        account: &str,
        filter: &DeliveryFilter,
        page: &PageRequest,
    ) -> Result<(Vec<Delivery>, String), NotifierError> {
        self.store.list_deliveries(account, filter, page).await
    }

    /// Sends a delivery again now; its endpoint must be enabled.
    pub async fn retry(&self, account: &str, id: &str) -> Result<Delivery, NotifierError> {
        let delivery = self
            .store
            .delivery(account, id)
            .await?
            .ok_or_else(|| NotifierError::not_found("webhook delivery", id))?;
        self.enabled_endpoint(account, &delivery.endpoint).await?;
        self.store.retry(account, id, self.clock.now()).await
    }

    /// The id and time a test event gets.
    pub fn test_event(&self) -> (String, chrono::DateTime<chrono::Utc>) {
        (billing_server::ids::new_id("evt"), self.clock.now())
    }

    /// Queues a test event (its body made by the caller) to one endpoint.
    pub async fn send_test(
        &self,
        account: &str,
        endpoint: &str,
        (event, body): (&str, &str),
    ) -> Result<Delivery, NotifierError> {
        self.enabled_endpoint(account, endpoint).await?;
        self.store
            .test_delivery(
                account,
                endpoint,
                (event, TEST_EVENT_TYPE, body),
                self.clock.now(),
            )
            .await
    }
}
