//! The services the console is a client of, called with the signed-in
//! session's key (so every answer is scoped to that key's account).

use std::time::Duration;

use billing_proto::invoicing::v1::invoicing_service_client::InvoicingServiceClient;
use billing_proto::ledger::v1::ledger_service_client::LedgerServiceClient;
use billing_proto::webhooks::v1::webhook_service_client::WebhookServiceClient;
use billing_server::peer::{PeerChannel, channel};

use crate::config::Config;

/// Why an upstream address is unusable.
#[derive(Debug, thiserror::Error)]
#[error("{name}: {source}")]
pub struct UpstreamError {
    name: &'static str,
    source: tonic::transport::Error,
}

/// Lazily connected, traced channels to the ledger, invoicing and the
/// notifier (the suite's peer channels).
#[derive(Debug, Clone)]
pub struct Upstreams {
    ledger: PeerChannel,
    invoicing: PeerChannel,
    notifier: PeerChannel,
    deadline: Duration,
}

impl Upstreams {
    /// Channels to the configured addresses (connected on first use).
    pub fn new(config: &Config) -> Result<Self, UpstreamError> {
        let connect = |name: &'static str, url: &str| {
            channel(url).map_err(|source| UpstreamError { name, source })
        };
        Ok(Self {
            ledger: connect("LEDGER_URL", &config.ledger_url)?,
            invoicing: connect("INVOICING_URL", &config.invoicing_url)?,
            notifier: connect("NOTIFIER_URL", &config.notifier_url)?,
            deadline: config.deadline,
        })
    }

    /// A ledger client.
    pub fn ledger(&self) -> LedgerServiceClient<PeerChannel> {
        LedgerServiceClient::new(self.ledger.clone())
    }

    /// An invoicing client.
    pub fn invoicing(&self) -> InvoicingServiceClient<PeerChannel> {
        InvoicingServiceClient::new(self.invoicing.clone())
    }

    /// A notifier client.
    pub fn notifier(&self) -> WebhookServiceClient<PeerChannel> {
        WebhookServiceClient::new(self.notifier.clone())
    }

    /// `message` with the key's `authorization` header and the deadline.
    pub fn request<T>(&self, api_key: &str, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.set_timeout(self.deadline);
        // A key with characters metadata cannot carry is refused by the
        // service as unauthenticated, like any other wrong key.
        if let Ok(value) = format!("Bearer {api_key}").parse() {
            request.metadata_mut().insert("authorization", value);
        }
        request
    }
}
