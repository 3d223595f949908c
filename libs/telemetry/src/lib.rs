//! Logging, OpenTelemetry traces and W3C trace context for the binaries.
//!
//! - [`init`]: `RUST_LOG` filtered logs (default `info`); when
//!   `OTEL_EXPORTER_OTLP_ENDPOINT` is set, spans are also exported over OTLP
//!   gRPC (batched; `OTEL_BSP_*` tune it). Without it nothing is exported
//!   and no OpenTelemetry layer is installed.
//! - [`ServerTraceLayer`]: a tower layer giving every RPC a server span named
//!   `package.Service/Method` with the OpenTelemetry RPC attributes, whose
//!   parent is the caller's `traceparent`.
//! - [`ClientTraceLayer`]: a tower layer giving every outgoing RPC a client
//!   span and putting its `traceparent` in the request metadata.

mod layers;

use std::io::IsTerminal;
use std::sync::Arc;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use opentelemetry_sdk::trace::{SdkTracerProvider, SpanData, SpanExporter};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer as _};

pub use layers::{ClientTrace, ClientTraceLayer, ServerTrace, ServerTraceLayer, record_ids};

/// Keeps the exporter alive; [`Telemetry::shutdown`] flushes what is buffered.
#[derive(Debug, Default)]
pub struct Telemetry {
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Flushes and stops the exporter (on a blocking thread: the export runs
    /// on the Tokio runtime this is called from).
    pub async fn shutdown(self) {
        if let Some(provider) = self.provider {
            let _ = tokio::task::spawn_blocking(move || provider.shutdown()).await;
        }
    }
}

/// The log filter without `RUST_LOG`: info, except PostgreSQL's notices
/// (`relation "_sqlx_migrations" already exists, skipping` on every start),
/// which are noise unless they are warnings.
pub const DEFAULT_LOG: &str = "info,sqlx::postgres::notice=warn";

/// Installs the global subscriber for `service_name`. Safe to call more than
/// once (later calls are no-ops), so tests and `billing up` can both call it.
/// Must run inside a Tokio runtime when OTLP export is configured.
pub fn init(service_name: &str) -> Telemetry {
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
    // RUST_LOG filters the logs only: spans are exported whatever the log level.
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG));
    let fmt = tracing_subscriber::fmt::layer()
        .with_target(false)
        // Colour codes only for a person at a terminal, never in log files.
        .with_ansi(std::io::stdout().is_terminal())
        .with_filter(filter);
    let endpoint = std::env::var("OTEL_EXPORTER_OTLP_ENDPOINT").unwrap_or_default();
    if endpoint.is_empty() {
        let _ = tracing_subscriber::registry().with(fmt).try_init();
        return Telemetry::default();
    }
    let exporter = match opentelemetry_otlp::SpanExporter::builder()
        .with_tonic()
        .build()
    {
        Ok(exporter) => exporter,
        Err(error) => {
            let _ = tracing_subscriber::registry().with(fmt).try_init();
            tracing::error!(%error, "OTLP exporter not started; traces are not exported");
            return Telemetry::default();
        }
    };
    let exporter = OnRuntime {
        inner: Arc::new(exporter),
        runtime: tokio::runtime::Handle::try_current().ok(),
    };
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_resource(
            Resource::builder()
                .with_service_name(service_name.to_owned())
                .build(),
        )
        .build();
    let tracer = provider.tracer(service_name.to_owned());
    // The service's own spans (RPCs, handlers), not the libraries' internals.
    let otel = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(LevelFilter::INFO);
    let _ = tracing_subscriber::registry()
        .with(fmt)
        .with(otel)
        .try_init();
    tracing::info!(endpoint, "exporting traces over OTLP");
    Telemetry {
        provider: Some(provider),
    }
}

/// Runs the OTLP exporter's calls on the service's Tokio runtime: the SDK's
/// batch processor exports from its own thread, where tonic finds no reactor.
#[derive(Debug)]
struct OnRuntime<E> {
    inner: Arc<E>,
    runtime: Option<tokio::runtime::Handle>,
}

impl<E: SpanExporter + 'static> SpanExporter for OnRuntime<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let inner = Arc::clone(&self.inner);
        match &self.runtime {
            Some(runtime) => match runtime
                .spawn(async move { inner.export(batch).await })
                .await
            {
                Ok(result) => result,
                Err(error) => Err(opentelemetry_sdk::error::OTelSdkError::InternalFailure(
                    error.to_string(),
                )),
            },
            None => inner.export(batch).await,
        }
    }

    fn shutdown_with_timeout(&self, timeout: std::time::Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.set_resource(resource);
        }
    }
}
