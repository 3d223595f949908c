//! Calling another service of the suite: a lazily connected, traced
//! channel, and requests made with the caller's internal key on behalf of
//! an account (`x-billing-account`), spread over every replica of the peer
//! (`balance`). Invoicing calls the ledger and meter-ingest this way; the
//! ledger and meter-ingest call invoicing; the notifier and the console
//! call the others.

use std::time::Duration;

use billing_telemetry::{ClientTrace, ClientTraceLayer};
use tonic::Request;
use tonic::metadata::{AsciiMetadataValue, MetadataValue};
use tonic::transport::Endpoint;

use crate::auth::ACCOUNT_METADATA_KEY;
pub use crate::balance::Balanced;

/// A channel to a peer whose calls are client spans carrying `traceparent`.
pub type PeerChannel = ClientTrace<Balanced>;

/// How often the peers' names are resolved again.
pub const RESOLVE_EVERY: Duration = Duration::from_secs(15);

/// A channel to the peer at `urls`: one URL, or several separated by
/// commas (`http://10.0.0.5:50052,http://10.0.0.6:50052`).
///
/// Every name is resolved to all its addresses (a Kubernetes headless
/// Service's name gives one per ready pod), again every
/// [`RESOLVE_EVERY`], and calls are spread over the addresses
/// ([`Balanced`]). Connections are made on first use, so a service starts
/// (and serves what it can) while its peer is still down.
///
/// Outside a Tokio runtime (nothing to resolve on) each URL is one member
/// as it is.
pub fn channel(urls: &str) -> Result<PeerChannel, tonic::transport::Error> {
    let mut endpoints = urls
        .split(',')
        .map(str::trim)
        .filter(|url| !url.is_empty())
        .map(|url| Ok((url.to_owned(), endpoint(url)?)))
        .collect::<Result<Vec<_>, tonic::transport::Error>>()?;
    if endpoints.is_empty() {
        // An empty list: the URL's own error.
        endpoints.push((urls.to_owned(), endpoint(urls)?));
    }
    let balanced = Balanced::default();
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            // Until the first resolution, the URLs as they are.
            balanced.set(endpoints.clone());
            runtime.spawn(resolve(endpoints, balanced.clone()));
        }
        Err(_) => balanced.set(endpoints),
    }
    Ok(tower::Layer::layer(&ClientTraceLayer, balanced))
}

fn endpoint(url: &str) -> Result<Endpoint, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .tcp_nodelay(true)
        .connect_timeout(Duration::from_secs(2)))
}

/// Keeps `balanced`'s members equal to what `endpoints` resolve to, until
/// the channel is no longer used.
async fn resolve(endpoints: Vec<(String, Endpoint)>, balanced: Balanced) {
    loop {
        let mut found: Vec<(String, Endpoint)> = Vec::new();
        for (url, target) in &endpoints {
            let uri = target.uri();
            let Some(host) = uri.host() else { continue };
            let port = uri.port_u16().unwrap_or(80);
            let host = host.trim_start_matches('[').trim_end_matches(']');
            match tokio::net::lookup_host((host, port)).await {
                Ok(addresses) => {
                    // A name with IPv4 addresses (`localhost`: 127.0.0.1 and
                    // ::1) keeps only those: a server listening on one family
                    // would fail every call sent to the other.
                    let addresses: Vec<_> = addresses.collect();
                    let v4 = addresses.iter().any(std::net::SocketAddr::is_ipv4);
                    for address in addresses.into_iter().filter(|a| !v4 || a.is_ipv4()) {
                        let scheme = uri.scheme_str().unwrap_or("http");
                        if let Ok(at) = endpoint(&format!("{scheme}://{address}")) {
                            let key = address.to_string();
                            if !found.iter().any(|(k, _)| *k == key) {
                                found.push((key, at));
                            }
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, url, "a peer's name did not resolve"),
            }
        }
        // No answer at all (DNS down, no ready pod): keep what was known.
        if !found.is_empty() {
            balanced.set(found);
        }
        tokio::time::sleep(RESOLVE_EVERY).await;
        if !balanced.in_use() {
            return;
        }
    }
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
