//! The balanced channel's tests: header handling, and on loopback, the
//! repeats of calls whose connection was lost.

use std::time::Duration;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{parse_timeout, timed_out, timeout_value, worth_sending_again};

/// An error with a cause, as tonic's transport errors wrap theirs.
#[derive(Debug)]
struct Wrapped(Box<dyn std::error::Error + Send + Sync>);

impl std::fmt::Display for Wrapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("wrapped")
    }
}

impl std::error::Error for Wrapped {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(self.0.as_ref())
    }
}

#[test]
fn a_passed_deadline_is_told_apart_from_a_lost_connection() {
    assert!(timed_out(&tonic::TimeoutExpired(())));
    assert!(timed_out(&Wrapped(Box::new(tonic::TimeoutExpired(())))));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert!(!timed_out(&Wrapped(Box::new(reset))));
    let reset = std::io::Error::from(std::io::ErrorKind::ConnectionReset);
    assert!(worth_sending_again(&Wrapped(Box::new(reset))));
    let unknown = tonic::Status::unavailable("no address of the peer is known yet");
    assert!(!worth_sending_again(&unknown));
}

#[test]
fn a_repeat_gets_what_is_left_of_the_deadline() {
    let value = |text: &'static str| http::HeaderValue::from_static(text);
    assert_eq!(parse_timeout(&value("30S")), Some(Duration::from_secs(30)));
    assert_eq!(parse_timeout(&value("2M")), Some(Duration::from_secs(120)));
    assert_eq!(
        parse_timeout(&value("1H")),
        Some(Duration::from_secs(3_600))
    );
    assert_eq!(
        parse_timeout(&value("250m")),
        Some(Duration::from_millis(250))
    );
    assert_eq!(parse_timeout(&value("7u")), Some(Duration::from_micros(7)));
    assert_eq!(parse_timeout(&value("9n")), Some(Duration::from_nanos(9)));
    for bad in ["", "S", "123456789S", "12x", "-1S", "1.5S"] {
        assert_eq!(parse_timeout(&value(bad)), None, "{bad:?}");
    }
    for left in [
        Duration::from_micros(1),
        Duration::from_millis(29_999),
        Duration::from_secs(100_000),
        Duration::from_secs(200_000_000),
    ] {
        let sent = parse_timeout(&timeout_value(left).unwrap()).unwrap();
        assert!(sent <= left, "{left:?} sent as {sent:?}");
        assert!(left - sent < Duration::from_secs(1) || left > Duration::from_secs(99_999_999));
    }
    assert_eq!(
        timeout_value(Duration::from_millis(1_500)).unwrap(),
        "1500000u"
    );
}

/// On loopback: the peer's first connection is dropped at once (a pod
/// gone), so the call is sent again; the peer sees the repeat with
/// less than the caller's 10 s, not the 10 s again.
#[tokio::test]
async fn a_repeat_reaches_the_peer_with_what_is_left_of_the_deadline() {
    use std::sync::{Arc, Mutex};

    use tonic::service::interceptor::InterceptedService;
    use tonic_health::pb::HealthCheckRequest;
    use tonic_health::pb::health_client::HealthClient;

    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let record = Arc::clone(&seen);
    let (_reporter, health) = tonic_health::server::health_reporter();
    let health = InterceptedService::new(health, move |request: tonic::Request<()>| {
        if let Some(value) = request.metadata().get("grpc-timeout") {
            record
                .lock()
                .unwrap()
                .push(value.to_str().unwrap().to_owned());
        }
        Ok(request)
    });
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(health)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(server)),
    );
    // Drops the first connection it accepts; forwards the others.
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    tokio::spawn(async move {
        let mut first = true;
        while let Ok((mut inbound, _)) = proxy.accept().await {
            if std::mem::take(&mut first) {
                drop(inbound);
                continue;
            }
            tokio::spawn(async move {
                let mut outbound = tokio::net::TcpStream::connect(server_addr).await.unwrap();
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            });
        }
    });

    let channel = crate::peer::channel(&format!("http://{proxy_addr}")).unwrap();
    let mut request = tonic::Request::new(HealthCheckRequest::default());
    request.set_timeout(Duration::from_secs(10));
    HealthClient::new(channel).check(request).await.unwrap();

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let left = parse_timeout(&http::HeaderValue::from_str(&seen[0]).unwrap()).unwrap();
    assert!(
        left < Duration::from_secs(10) && left > Duration::from_secs(5),
        "the repeat carried {left:?}"
    );
}

/// A stand-in EventService: ListEvents answers an empty page and
/// counts its calls.
struct Feed(Arc<AtomicUsize>);

#[tonic::async_trait]
impl billing_proto::events::v1::event_service_server::EventService for Feed {
    async fn list_events(
        &self,
        _request: tonic::Request<billing_proto::events::v1::ListEventsRequest>,
    ) -> Result<tonic::Response<billing_proto::events::v1::ListEventsResponse>, tonic::Status> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(tonic::Response::new(Default::default()))
    }

    type WatchEventsStream = futures_util::stream::Empty<
        Result<billing_proto::events::v1::WatchEventsResponse, tonic::Status>,
    >;

    async fn watch_events(
        &self,
        _request: tonic::Request<billing_proto::events::v1::WatchEventsRequest>,
    ) -> Result<tonic::Response<Self::WatchEventsStream>, tonic::Status> {
        Err(tonic::Status::unimplemented("not here"))
    }
}

/// Copies HTTP/2 frames both ways; the first HEADERS frame of a stream
/// from the server (an answer's headers) that finds `cut` unset sets it
/// and ends the connection there: that answer's message never arrives.
async fn cut_once_after_headers(
    mut inbound: tokio::net::TcpStream,
    mut outbound: tokio::net::TcpStream,
    cut: Arc<std::sync::atomic::AtomicBool>,
) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let (mut from_client, mut to_client) = inbound.split();
    let (mut from_server, mut to_server) = outbound.split();
    let upstream = tokio::io::copy(&mut from_client, &mut to_server);
    let downstream = async {
        let mut header = [0_u8; 9];
        loop {
            from_server.read_exact(&mut header).await?;
            let length =
                usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
            let mut payload = vec![0_u8; length];
            from_server.read_exact(&mut payload).await?;
            to_client.write_all(&header).await?;
            to_client.write_all(&payload).await?;
            let stream =
                u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
            if header[3] == 0x1 && stream != 0 && !cut.swap(true, Ordering::SeqCst) {
                return Ok::<(), std::io::Error>(());
            }
        }
    };
    tokio::select! {
        _ = upstream => {}
        _ = downstream => {}
    }
}

/// On loopback: the connection is cut after the answer's headers (as
/// an ageing server's close can cut it), so the unary call is sent
/// again on a new connection and succeeds; the server saw both.
#[tokio::test]
async fn an_answer_cut_after_its_headers_is_sent_again() {
    use billing_proto::events::v1::event_service_client::EventServiceClient;
    use billing_proto::events::v1::event_service_server::EventServiceServer;

    let calls = Arc::new(AtomicUsize::new(0));
    let server = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = server.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(EventServiceServer::new(Feed(Arc::clone(&calls))))
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(server)),
    );
    let proxy = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let proxy_addr = proxy.local_addr().unwrap();
    let cut = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let proxy_cut = Arc::clone(&cut);
    tokio::spawn(async move {
        while let Ok((inbound, _)) = proxy.accept().await {
            let outbound = tokio::net::TcpStream::connect(server_addr).await.unwrap();
            tokio::spawn(cut_once_after_headers(
                inbound,
                outbound,
                Arc::clone(&proxy_cut),
            ));
        }
    });

    let channel = crate::peer::channel(&format!("http://{proxy_addr}")).unwrap();
    EventServiceClient::new(channel)
        .list_events(billing_proto::events::v1::ListEventsRequest::default())
        .await
        .unwrap();
    assert!(cut.load(Ordering::SeqCst), "no answer was cut");
    assert_eq!(
        calls.load(Ordering::SeqCst),
        2,
        "the cut call and its repeat"
    );
}
