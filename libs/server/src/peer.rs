//! Calling another service of the suite: a lazily connected, traced
//! channel, and requests made with the caller's internal key on behalf of
//! an account (`x-billing-account`). Invoicing calls the ledger and
//! meter-ingest this way; the ledger calls invoicing.

use std::time::Duration;

use billing_telemetry::{ClientTrace, ClientTraceLayer};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::{Channel, Endpoint};

use crate::auth::ACCOUNT_METADATA_KEY;

/// A channel to a peer whose calls are client spans carrying `traceparent`.
pub type PeerChannel = ClientTrace<Channel>;

/// A channel to `url` that connects on first use, so a service starts (and
/// serves what it can) while its peer is still down.
pub fn channel(url: &str) -> Result<PeerChannel, tonic::transport::Error> {
    let endpoint = Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2));
    Ok(tower::Layer::layer(
        &ClientTraceLayer,
        endpoint.connect_lazy(),
    ))
}

/// The credentials and deadline of a service's calls to its peers.
#[derive(Debug, Clone)]
pub struct InternalCaller {
    authorization: AsciiMetadataValue,
    deadline: Duration,
}

impl InternalCaller {
    /// With `internal_api_key` (a key with the `internal` scope on the
    /// peer); `None` when the key cannot be carried in metadata.
    pub fn new(internal_api_key: &str, deadline: Duration) -> Option<Self> {
        let authorization = MetadataValue::try_from(format!("Bearer {internal_api_key}")).ok()?;
        Some(Self {
            authorization,
            deadline,
        })
    }

    /// `message` as a call for `account`: the key, the account, the
    /// deadline. `None` when the account cannot be carried in metadata
    /// (account names are validated long before, so that is corruption).
    pub fn request<T>(&self, account: &str, message: T) -> Option<Request<T>> {
        let mut request = self.stream_request(account, message)?;
        request.set_timeout(self.deadline);
        Some(request)
    }

    /// Like [`InternalCaller::request`] without the deadline: for a
    /// server stream that follows a feed for as long as it runs.
    pub fn stream_request<T>(&self, account: &str, message: T) -> Option<Request<T>> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        let account = MetadataValue::try_from(account).ok()?;
        request.metadata_mut().insert(ACCOUNT_METADATA_KEY, account);
        Some(request)
    }
}
