//! Client-side balancing over a peer's replicas.
//!
//! A gRPC channel is one long-lived HTTP/2 connection, so a Kubernetes
//! ClusterIP Service pins all of a client's calls to one pod. A [`Balanced`]
//! channel keeps one lazily connected tonic channel per address of the
//! peer and sends each call to the less busy (fewest calls in flight) of
//! two members picked at random ("power of two choices"). A member whose
//! call fails at the transport level (refused, reset: the pod is gone) is
//! left out for [`EJECT_FOR`], unless every member is; its channel
//! reconnects by itself when it is used again. gRPC errors are answers,
//! not failures.
//!
//! A call that fails at the transport level is sent again (up to
//! [`ATTEMPTS`] times in all), to a member picked again. The main cause is
//! connection ageing: a tonic client keeps sending on a connection the
//! server has told to go away until the server closes it, and under load
//! some calls are on it at that moment (with eight callers, several at
//! each close: `internal_calls_ride_over_connection_ageing`). Sending again
//! is safe because every call the suite makes to a peer is a read or takes
//! a request id (or an invoice, for ApplyCredits and ReverseCredits) that
//! makes a repeat a replay. A call whose deadline passed is not sent again
//! (the peer may only be slow), and a repeat carries what is left of the
//! caller's deadline (`grpc-timeout`), not the whole of it again. To send
//! a request twice its body is buffered first: the suite's peer calls all
//! have unary requests (one message, at most [`REQUEST_BYTES_MAX`]); a
//! client-streaming call must not go through this channel.
//!
//! A unary answer is read whole before the call counts as answered, so a
//! connection lost after the answer's headers but before its message
//! (the server closed it with the client's next request unread, and the
//! reset threw away what was still in flight) is a transport failure like
//! the others, sent again. Answers that are streams (the methods the
//! suite's descriptors mark `stream`, and any method they do not list)
//! are handed on as they come.
//!
//! tower's `Balance` was the first choice, but it drops a failed endpoint
//! for good (until discovery inserts it again) and waits, rather than
//! fails, when none is left: a peer restarting would stall calls until
//! their deadline instead of failing fast with UNAVAILABLE.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, LengthLimitError};
use tonic::body::Body;
use tonic::transport::{Channel, Endpoint};
use tower::{Service, ServiceExt};

/// How long a member whose call failed at the transport level is left out.
pub const EJECT_FOR: Duration = Duration::from_secs(5);

/// How many times a call is sent at most when it fails at the transport
/// level. A channel notices its connection is gone only when it next
/// tries to use it, so a call sent again at once can still meet the dead
/// connection ("connection closed") before one to a fresh connection.
pub const ATTEMPTS: u32 = 3;

/// The largest request body the channel buffers: the servers' own limit on
/// a message (`serve::ServeOptions::max_message_bytes`' default).
pub const REQUEST_BYTES_MAX: usize = 4 * 1024 * 1024;

/// The largest unary answer the channel reads whole: tonic's default limit
/// on a decoded message, plus gRPC's 5-byte frame header. A larger one is
/// refused (and not sent again), as tonic's decoder would refuse it.
pub const RESPONSE_BYTES_MAX: usize = 4 * 1024 * 1024 + 5;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// A channel spreading calls over the members [`Balanced::set`] gives it.
#[derive(Clone, Default)]
pub struct Balanced {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Balanced {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Balanced")
            .field("members", &self.keys())
            .finish()
    }
}

#[derive(Default)]
struct Shared {
    members: RwLock<Vec<Arc<Member>>>,
    random: AtomicU64,
}

struct Member {
    key: String,
    channel: Channel,
    in_flight: AtomicUsize,
    ejected_until: Mutex<Option<Instant>>,
}

impl Member {
    fn ejected(&self, now: Instant) -> bool {
        self.ejected_until
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some_and(|until| until > now)
    }
}

/// Takes one call off a member's count when the call ends, however it ends.
struct InFlight(Arc<Member>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Balanced {
    /// Makes the members exactly `endpoints` (by key, e.g. an address):
    /// members that stay keep their connections.
    pub fn set(&self, endpoints: Vec<(String, Endpoint)>) {
        let mut members = self
            .shared
            .members
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let mut old: HashMap<String, Arc<Member>> =
            members.drain(..).map(|m| (m.key.clone(), m)).collect();
        for (key, endpoint) in endpoints {
            let member = old.remove(&key).unwrap_or_else(|| {
                Arc::new(Member {
                    channel: endpoint.connect_lazy(),
                    key,
                    in_flight: AtomicUsize::new(0),
                    ejected_until: Mutex::new(None),
                })
            });
            members.push(member);
        }
    }

    /// The members' keys (addresses), for logs.
    pub fn keys(&self) -> Vec<String> {
        self.shared
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|m| m.key.clone())
            .collect()
    }

    /// Whether the channel is still used (the resolver stops when not).
    pub fn in_use(&self) -> bool {
        Arc::strong_count(&self.shared) > 1
    }

    fn random(&self) -> u64 {
        // xorshift64*: cheap and good enough to pick two members.
        let mut x = self.shared.random.load(Ordering::Relaxed);
        if x == 0 {
            x = 0x9E37_79B9_7F4A_7C15;
        }
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.shared.random.store(x, Ordering::Relaxed);
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn pick(&self) -> Option<Arc<Member>> {
        let members = self
            .shared
            .members
            .read()
            .unwrap_or_else(PoisonError::into_inner);
        let now = Instant::now();
        let healthy = members.iter().filter(|m| !m.ejected(now)).count();
        // Every member failed lately: try them all rather than fail.
        let all = healthy == 0;
        let candidates = || members.iter().filter(move |m| all || !m.ejected(now));
        let n = u64::try_from(if all { members.len() } else { healthy }).ok()?;
        if n == 0 {
            return None;
        }
        let first = candidates().nth(usize::try_from(self.random() % n).ok()?)?;
        let second = candidates().nth(usize::try_from(self.random() % n).ok()?)?;
        let busy = |m: &Member| m.in_flight.load(Ordering::Relaxed);
        Some(Arc::clone(if busy(second) < busy(first) {
            second
        } else {
            first
        }))
    }
}

impl Service<http::Request<Body>> for Balanced {
    type Response = http::Response<Body>;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        // Each call waits on its member's own channel.
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let (mut parts, body) = request.into_parts();
            let began = Instant::now();
            let body = http_body_util::Limited::new(body, REQUEST_BYTES_MAX)
                .collect()
                .await?
                .to_bytes();
            let mut attempt = 1;
            loop {
                match this.send(parts.clone(), body.clone()).await {
                    Err(error) if attempt < ATTEMPTS && worth_sending_again(error.as_ref()) => {
                        // The caller's deadline counts from its first attempt: a
                        // repeat gets what is left of it, and none when nothing is.
                        // (Read only here: the usual call never needs it.)
                        if let Some(deadline) =
                            parts.headers.get(GRPC_TIMEOUT).and_then(parse_timeout)
                        {
                            match deadline.checked_sub(began.elapsed()) {
                                Some(left) if !left.is_zero() => {
                                    if let Some(value) = timeout_value(left) {
                                        parts.headers.insert(GRPC_TIMEOUT, value);
                                    }
                                }
                                _ => return Err(error),
                            }
                        }
                        tracing::debug!(%error, attempt, "a peer call failed at the transport level: sent again");
                        attempt += 1;
                    }
                    answer => return answer,
                }
            }
        })
    }
}

impl Balanced {
    /// Sends one request to a member picked now; a transport failure
    /// leaves the member out for [`EJECT_FOR`].
    async fn send(
        &self,
        parts: http::request::Parts,
        body: tonic::codegen::Bytes,
    ) -> Result<http::Response<Body>, BoxError> {
        let Some(member) = self.pick() else {
            return Err(tonic::Status::unavailable("no address of the peer is known yet").into());
        };
        member.in_flight.fetch_add(1, Ordering::Relaxed);
        let guard = InFlight(member);
        let unary = billing_proto::descriptors::is_unary(parts.uri.path());
        let request = http::Request::from_parts(parts, Body::new(http_body_util::Full::new(body)));
        let answer: Result<_, BoxError> = match guard.0.channel.clone().oneshot(request).await {
            Ok(response) if unary => read_whole(response).await,
            answer => answer.map_err(Into::into),
        };
        if answer.as_ref().is_err_and(|e| !e.is::<LengthLimitError>()) {
            *guard
                .0
                .ejected_until
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(Instant::now() + EJECT_FOR);
        }
        drop(guard);
        answer
    }
}

/// Reads a unary answer whole (see the module's doc): its message and
/// trailers, or the transport failure that cut it off.
async fn read_whole(response: http::Response<Body>) -> Result<http::Response<Body>, BoxError> {
    let (parts, body) = response.into_parts();
    let whole = http_body_util::Limited::new(body, RESPONSE_BYTES_MAX)
        .collect()
        .await
        .map_err(|error| -> BoxError {
            if error.is::<LengthLimitError>() {
                error
            } else {
                Box::new(AnswerCut(error))
            }
        })?;
    Ok(http::Response::from_parts(parts, Body::new(whole)))
}

/// The connection failed while an answer was being read. tonic reports
/// that as a `Status`, which would otherwise read as the peer's answer.
#[derive(Debug, thiserror::Error)]
#[error("the connection was lost while the answer was read: {0}")]
struct AnswerCut(#[source] BoxError);

/// The gRPC deadline header: the client's channel times the call by it, and
/// the server learns how long its caller waits.
const GRPC_TIMEOUT: &str = "grpc-timeout";

/// Reads a `grpc-timeout` value (at most 8 digits and a unit, gRPC's HTTP/2
/// protocol); `None` for anything else, which is sent on as it came.
fn parse_timeout(value: &http::HeaderValue) -> Option<Duration> {
    let text = value.to_str().ok()?;
    let digits = text.get(..text.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    match text.get(text.len() - 1..)? {
        "H" => Some(Duration::from_secs(n.checked_mul(3_600)?)),
        "M" => Some(Duration::from_secs(n.checked_mul(60)?)),
        "S" => Some(Duration::from_secs(n)),
        "m" => Some(Duration::from_millis(n)),
        "u" => Some(Duration::from_micros(n)),
        "n" => Some(Duration::from_nanos(n)),
        _ => None,
    }
}

/// `left` as a `grpc-timeout` value, written by tonic's own encoder (the
/// finest unit whose count fits in 8 digits, rounded down).
fn timeout_value(left: Duration) -> Option<http::HeaderValue> {
    let mut request = tonic::Request::new(());
    request.set_timeout(left);
    request.into_parts().0.into_headers().remove(GRPC_TIMEOUT)
}

/// Whether a failed call is sent again: not when no member is known (a
/// `Status` of this channel's own), nor when its deadline passed.
fn worth_sending_again(error: &(dyn std::error::Error + 'static)) -> bool {
    !error.is::<tonic::Status>() && !error.is::<LengthLimitError>() && !timed_out(error)
}

/// Whether a call failed because its deadline passed: not sent again, as
/// the peer may be slow rather than gone, and a repeat would add to its
/// load and stretch the caller's deadline.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(error) = next {
        if error.is::<tonic::TimeoutExpired>() {
            return true;
        }
        next = error.source();
    }
    false
}

#[cfg(test)]
mod tests;
