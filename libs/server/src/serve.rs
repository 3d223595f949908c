//! Runs a service's routes as a production gRPC server.
//!
//! Adds `grpc.health.v1.Health` and server reflection (v1 and v1alpha) to the
//! service's routes, bounds message size (set on the service by the caller),
//! concurrency and request time, and drains gracefully: when `shutdown`
//! resolves, health turns NOT_SERVING, new connections are refused, in-flight
//! RPCs finish within `drain_timeout`. Connections are aged out
//! (`max_connection_age`): a client reconnects and lands on whatever
//! replica its balancer picks then.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Notify;
use tonic::service::Routes;
use tonic::transport::Server;
use tonic::transport::server::TcpIncoming;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::metrics::{Metrics, MetricsLayer};

/// Limits of one server; explicit so nothing rests on library defaults.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// Largest request or response message.
    pub max_message_bytes: usize,
    /// RPCs served at once across all connections; more wait.
    pub concurrency_limit: usize,
    /// Longest an RPC may run before it fails with CANCELLED.
    pub request_timeout: Duration,
    /// Longest the drain waits for in-flight RPCs after shutdown begins.
    pub drain_timeout: Duration,
    /// HTTP/2 streams (concurrent RPCs) one connection may open.
    pub max_concurrent_streams: u32,
    /// A connection older than this is asked to go away (HTTP/2 GOAWAY),
    /// so clients behind an L4 balancer reconnect and spread over new
    /// replicas; None: connections live as long as the client wants.
    pub max_connection_age: Option<Duration>,
    /// How long an aged connection's RPCs may still run before it is
    /// closed.
    pub max_connection_age_grace: Duration,
}

impl Default for ServerOptions {
    fn default() -> Self {
        Self {
            max_message_bytes: 4 * 1024 * 1024,
            concurrency_limit: 256,
            request_timeout: Duration::from_secs(30),
            drain_timeout: Duration::from_secs(20),
            max_concurrent_streams: 100,
            max_connection_age: Some(Duration::from_secs(300)),
            max_connection_age_grace: Duration::from_secs(30),
        }
    }
}

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The reflection descriptor could not be loaded.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// The transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// Serves `routes` plus health and reflection on `listener` until `shutdown`,
/// recording every RPC in `metrics`, served on `metrics_listener` if any.
///
/// `service_names` are the fully qualified gRPC names of the services in
/// `routes` (e.g. `billing.ledger.v1.LedgerService`): health reports each,
/// and reflection lists exactly these plus health and reflection.
pub async fn serve(
    routes: Routes,
    service_names: &[&'static str],
    listener: TcpListener,
    options: &ServerOptions,
    metrics: &Metrics,
    metrics_listener: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), ServeError> {
    let metrics_task = metrics_listener
        .map(|listener| tokio::spawn(crate::metrics::serve_metrics(listener, metrics.clone())));
    let (reporter, health_service) = tonic_health::server::health_reporter();
    let service_names: Arc<[&'static str]> = service_names.into();
    set_status(&reporter, &service_names, ServingStatus::Serving).await;

    let reflection_v1 = reflection(&service_names).build_v1()?;
    let reflection_v1alpha = reflection(&service_names).build_v1alpha()?;
    let routes = routes
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);

    let draining = Arc::new(Notify::new());
    let signal = {
        let draining = Arc::clone(&draining);
        let reporter = reporter.clone();
        let service_names = Arc::clone(&service_names);
        async move {
            shutdown.await;
            tracing::info!("shutdown requested: health NOT_SERVING, draining in-flight RPCs");
            set_status(&reporter, &service_names, ServingStatus::NotServing).await;
            draining.notify_one();
        }
    };

    let mut builder = Server::builder();
    if let Some(age) = options.max_connection_age {
        builder = builder
            .max_connection_age(age)
            .max_connection_age_grace(options.max_connection_age_grace);
    }
    let server = builder
        .timeout(options.request_timeout)
        .max_concurrent_streams(Some(options.max_concurrent_streams))
        .layer(billing_telemetry::ServerTraceLayer)
        .layer(MetricsLayer::new(metrics.clone()))
        .layer(tower::limit::GlobalConcurrencyLimitLayer::new(
            options.concurrency_limit,
        ))
        .layer(tower::util::MapResponseLayer::new(
            oversize_is_resource_exhausted::<tonic::body::Body>,
        ))
        .layer(crate::unimplemented::NameServicesLayer::new(
            &service_names
                .iter()
                .chain(INFRASTRUCTURE_SERVICES.iter())
                .copied()
                .collect::<Vec<_>>(),
        ))
        .add_routes(routes)
        // TCP_NODELAY: without it small responses wait on delayed ACKs (~40 ms).
        .serve_with_incoming_shutdown(
            TcpIncoming::from(listener)
                .with_nodelay(Some(true))
                .with_keepalive(Some(Duration::from_secs(60))),
            signal,
        );

    let drain_timeout = options.drain_timeout;
    let result = tokio::select! {
        result = server => result.map_err(ServeError::from),
        () = async {
            draining.notified().await;
            tokio::time::sleep(drain_timeout).await;
        } => {
            tracing::warn!(?drain_timeout, "drain timed out; remaining RPCs are dropped");
            Ok(())
        }
    };
    if let Some(task) = metrics_task {
        task.abort();
    }
    result
}

/// tonic refuses a request larger than `max_message_bytes` with OUT_OF_RANGE
/// ("decoded message length too large … the limit is N bytes"); gRPC's code
/// for a request over a size limit is RESOURCE_EXHAUSTED. The services never
/// answer OUT_OF_RANGE themselves, so every one in a trailers-only response
/// (a refused unary request) is that refusal.
fn oversize_is_resource_exhausted<B>(mut response: http::Response<B>) -> http::Response<B> {
    // Runs on every response: compare and write static header values only.
    const OUT_OF_RANGE: &[u8] = b"11";
    let headers = response.headers_mut();
    if headers
        .get("grpc-status")
        .is_some_and(|status| status.as_bytes() == OUT_OF_RANGE)
    {
        headers.insert("grpc-status", http::HeaderValue::from_static("8"));
    }
    response
}

async fn set_status(reporter: &HealthReporter, service_names: &[&str], status: ServingStatus) {
    reporter.set_service_status("", status).await;
    for name in service_names {
        reporter.set_service_status(*name, status).await;
    }
}

/// The health and reflection services themselves, listed beside the port's own.
const INFRASTRUCTURE_SERVICES: [&str; 3] = [
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// A reflection builder that knows every descriptor but lists only the
/// services of this port (a client must not see services it cannot call here).
fn reflection(service_names: &[&'static str]) -> tonic_reflection::server::Builder<'static> {
    let mut builder = tonic_reflection::server::Builder::configure()
        .include_reflection_service(false)
        .register_encoded_file_descriptor_set(billing_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(billing_proto::GOOGLE_RPC_FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET);
    for name in service_names.iter().chain(INFRASTRUCTURE_SERVICES.iter()) {
        builder = builder.with_service_name(*name);
    }
    builder
}

/// Resolves on SIGTERM or Ctrl-C: the production shutdown signal.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
