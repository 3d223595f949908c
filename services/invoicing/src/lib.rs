//! Invoicing: customers, metered prices, subscriptions, invoices, and the
//! exactly-once finalize saga.
//!
//! Layout:
//! - [`domain`]: customers, prices and pricing, subscriptions and periods,
//!   invoices and totals; no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence and the saga transitions; the
//!   only sqlx user.
//! - [`upstream`]: the ledger and meter-ingest, through their gRPC APIs.
//! - [`ops`]: the operations, including the finalize and void sagas.
//! - [`worker`]: period close, auto-finalize, saga recovery.
//! - [`grpc`]: `billing.invoicing.v1.InvoicingService` (and the test clock);
//!   the only proto user besides [`upstream`].
//! - [`config`], [`App`]: configuration, build and run until shutdown.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod ops;
pub mod store;
pub mod upstream;
pub mod worker;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use billing_proto::invoicing::v1::invoicing_service_server::InvoicingServiceServer;
use billing_proto::invoicing::v1::test_clock_service_server::TestClockServiceServer;
use billing_server::auth::AuthInterceptor;
use billing_server::clock::Clock;
use billing_server::metrics::Metrics;
use billing_server::serve::serve;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

pub use billing_server::app::AppError;
pub use config::Config;
pub use ops::Invoicing;
pub use worker::Worker;

/// Migrations for both backends, embedded.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.invoicing.v1.InvoicingService";

/// A ready-to-run invoicing service: database migrated, listener bound.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    invoicing: Invoicing,
    config: Config,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Connects, migrates and binds. With `config.test_clock` the clock
    /// given here should be manual (the test clock moves it).
    pub async fn build(config: Config, clock: Clock) -> Result<Self, AppError> {
        let db = billing_db::Db::connect(&config.database_url, &config.db).await?;
        db.migrate(&MIGRATOR).await?;
        let upstream = upstream::Upstream::new(&config.upstream)
            .map_err(|e| AppError::Config(e.to_string()))?;
        let listener = billing_server::app::bind(config.listen_addr).await?;
        let metrics = Metrics::new();
        let invoicing = Invoicing::new(
            store::Store::new(db),
            upstream,
            clock,
            config.finalize_grace,
        )
        .with_metrics(&metrics);
        let metrics_listener = billing_server::app::bind_metrics(config.metrics_addr).await?;
        Ok(Self {
            listener,
            invoicing,
            config,
            metrics,
            metrics_listener,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The operations (tests).
    pub fn invoicing(&self) -> &Invoicing {
        &self.invoicing
    }

    /// Serves until `shutdown`, then drains, stops the worker at a safe point
    /// and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let keys = Arc::new(self.config.api_keys.clone());
        let max = self.config.server.max_message_bytes;
        let worker = Worker::new(self.invoicing.clone());
        let service = InvoicingServiceServer::new(grpc::InvoicingGrpc::new(self.invoicing.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let mut routes = Routes::new(InterceptedService::new(
            service,
            AuthInterceptor::new(keys.clone()),
        ));
        if self.config.test_clock {
            tracing::warn!(
                "INVOICING_TEST_CLOCK is on: the clock only moves through TestClockService"
            );
            let clock = TestClockServiceServer::new(grpc::test_clock::TestClockGrpc::new(
                self.invoicing.clock().clone(),
                worker.clone(),
            ));
            routes = routes.add_service(InterceptedService::new(clock, AuthInterceptor::new(keys)));
        }
        let (stop_worker, stop) = tokio::sync::watch::channel(false);
        let worker_task = tokio::spawn(worker.run(self.config.worker_interval, stop));
        let served = serve(
            routes,
            SERVICE_NAME,
            self.listener,
            &self.config.server,
            &self.metrics,
            self.metrics_listener,
            shutdown,
        )
        .await;
        let _ = stop_worker.send(true);
        let _ = worker_task.await;
        self.invoicing.store().db().close().await;
        served.map_err(AppError::from)
    }
}
