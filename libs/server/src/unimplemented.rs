//! UNIMPLEMENTED that says what a port serves.
//!
//! tonic answers a call to a service or method a port does not serve with
//! UNIMPLEMENTED and no message, which leaves a client that dialled the
//! wrong port (the ledger's instead of invoicing's) guessing. This layer
//! adds a message naming the path (clipped) and the services the port does
//! serve. The services never answer UNIMPLEMENTED themselves with an empty
//! message, so only tonic's routing refusals are rewritten.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;

use crate::status::{ECHO_CHARS_MAX, clip};

/// Adds the port's services to tonic's empty UNIMPLEMENTED answers.
#[derive(Clone, Debug)]
pub struct NameServicesLayer {
    served: Arc<str>,
}

impl NameServicesLayer {
    /// For a port serving `services` (fully qualified names).
    pub fn new(services: &[&str]) -> Self {
        Self {
            served: services.join(", ").into(),
        }
    }
}

impl<S> tower::Layer<S> for NameServicesLayer {
    type Service = NameServices<S>;
    fn layer(&self, inner: S) -> Self::Service {
        NameServices {
            inner,
            served: Arc::clone(&self.served),
        }
    }
}

/// The service [`NameServicesLayer`] makes.
#[derive(Clone, Debug)]
pub struct NameServices<S> {
    inner: S,
    served: Arc<str>,
}

impl<S, B, R> tower::Service<http::Request<B>> for NameServices<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        // A clone of the URI shares its bytes: nothing is allocated unless
        // the answer is UNIMPLEMENTED.
        let uri = request.uri().clone();
        let served = Arc::clone(&self.served);
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let unimplemented = headers
                .get("grpc-status")
                .is_some_and(|status| status.as_bytes() == b"12");
            if unimplemented
                && !headers.contains_key("grpc-message")
                && let Ok(message) =
                    HeaderValue::from_str(&message(&clip(uri.path(), ECHO_CHARS_MAX), &served))
            {
                headers.insert("grpc-message", message);
            }
            Ok(response)
        })
    }
}

/// The message: printable ASCII only, so it needs no percent-encoding.
fn message(path: &str, served: &str) -> String {
    let path: String = path
        .chars()
        .map(|c| {
            if c == ' ' || c.is_ascii_graphic() && c != '%' {
                c
            } else {
                '?'
            }
        })
        .collect();
    format!("{path} is not served on this port; it serves {served}")
}

#[cfg(test)]
mod tests {
    use super::message;

    #[test]
    fn the_message_is_a_valid_grpc_message_header() {
        let text = message("/x.Y/Z%20\u{e9}", "billing.ledger.v1.LedgerService");
        assert_eq!(
            text,
            "/x.Y/Z?20? is not served on this port; it serves billing.ledger.v1.LedgerService"
        );
        assert!(http::HeaderValue::from_str(&text).is_ok());
    }
}
