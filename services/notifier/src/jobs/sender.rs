//! Sending one delivery over HTTP: Standard Webhooks headers, a 15 s
//! timeout, no redirects, at most 64 KiB of the answer read, and never to
//! an address of the notifier's own network unless allowed (the resolver
//! refuses them, so a name cannot be re-pointed between check and connect).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::domain::address::refused;
use crate::store::{Outcome, Target};

/// Longest wait for an answer.
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);
/// Most bytes of an answer read.
pub const RESPONSE_BYTES_MAX: usize = 64 * 1024;

/// A resolver that drops forbidden addresses (and fails when none is left).
#[derive(Debug)]
struct Guard;

impl Resolve for Guard {
    fn resolve(&self, name: Name) -> Resolving {
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .iter()
                .copied()
                .filter(|a| refused(a.ip()).is_none())
                .collect();
            if allowed.is_empty() {
                let why = found
                    .first()
                    .and_then(|a| refused(a.ip()))
                    .unwrap_or("no address");
                return Err(format!("{host} resolves to a refused address ({why})").into());
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP side of deliveries.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    allow_private: bool,
}

/// Why the client could not be built.
#[derive(Debug, thiserror::Error)]
#[error("http client: {0}")]
pub struct SenderError(String);

impl Sender {
    /// A client; `allow_private` lets deliveries reach private addresses,
    /// `allow_insecure` lets them use `http://`.
    pub fn new(allow_private: bool, allow_insecure: bool) -> Result<Self, SenderError> {
        // reqwest is built without a crypto provider: ring, shared with
        // the NATS client. Installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = reqwest::Client::builder()
            .timeout(ATTEMPT_TIMEOUT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .https_only(!allow_insecure)
            .user_agent(concat!("billing-notifier/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(64);
        if !allow_private {
            builder = builder.dns_resolver(Arc::new(Guard));
        }
        let client = builder.build().map_err(|e| SenderError(e.to_string()))?;
        Ok(Self {
            client,
            allow_private,
        })
    }

    /// One attempt at `target`, signed at `now`.
    pub async fn send(&self, target: &Target, now: DateTime<Utc>) -> Outcome {
        // A literal IP is never resolved, so the guard would not see it.
        if !self.allow_private
            && let Some(why) = literal_ip(&target.url).and_then(refused)
        {
            return Outcome::Failed {
                status: 0,
                error: format!("the URL's address is refused ({why})"),
            };
        }
        let timestamp = now.timestamp();
        let signature =
            super::signature::header(&target.secrets, &target.event, timestamp, &target.body);
        let sent = self
            .client
            .post(&target.url)
            .header("content-type", "application/json")
            .header("webhook-id", &target.event)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(target.body.clone())
            .send()
            .await;
        let mut response = match sent {
            Ok(response) => response,
            Err(error) => {
                return Outcome::Failed {
                    status: 0,
                    error: describe(&error),
                };
            }
        };
        let status = response.status().as_u16();
        // Read (and drop) at most 64 KiB: the connection is reused only
        // when the body was read, and a huge body must not cost more.
        let mut read = 0;
        while read < RESPONSE_BYTES_MAX {
            match response.chunk().await {
                Ok(Some(chunk)) => read += chunk.len(),
                _ => break,
            }
        }
        match status {
            200..=299 => Outcome::Delivered { status },
            410 => Outcome::Gone,
            _ => Outcome::Failed {
                status,
                error: format!("the endpoint answered HTTP {status}"),
            },
        }
    }
}

/// The host of `url` when it is an IP address.
fn literal_ip(url: &str) -> Option<IpAddr> {
    let parsed = url::Url::parse(url).ok()?;
    match parsed.host()? {
        url::Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        url::Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        url::Host::Domain(_) => None,
    }
}

/// A transport error in a sentence (reqwest's Display hides the cause).
fn describe(error: &reqwest::Error) -> String {
    let kind = if error.is_timeout() {
        "timed out"
    } else if error.is_connect() {
        "could not connect"
    } else {
        "request failed"
    };
    let mut text = kind.to_owned();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
