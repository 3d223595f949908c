//! meter-ingest: meters, idempotent high-volume usage ingestion, and exact,
//! immediately consistent usage queries.
//!
//! Layout:
//! - [`domain`]: meters, event checks and batch dedupe, hourly buckets and
//!   windows; no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence (PostgreSQL batch path with
//!   `UNNEST`); the only sqlx user.
//! - [`metering`]: the operations.
//! - [`grpc`]: `billing.meter.v1.MeterService`; the only proto user.
//! - [`config`], [`App`]: configuration, build and run until shutdown.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod metering;
pub mod store;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use billing_db::Backend;
use billing_proto::meter::v1::meter_service_server::MeterServiceServer;
use billing_server::auth::AuthInterceptor;
use billing_server::clock::Clock;
use billing_server::metrics::Metrics;
use billing_server::serve::serve;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;
pub use metering::Metering;

/// SQLite migrations, embedded.
pub static SQLITE_MIGRATOR: Migrator = sqlx::migrate!("./migrations/sqlite");
/// PostgreSQL migrations, embedded.
pub static POSTGRES_MIGRATOR: Migrator = sqlx::migrate!("./migrations/postgres");

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.meter.v1.MeterService";

/// Runs the migrations for the database's backend.
pub async fn migrate(db: &billing_db::Db) -> Result<(), billing_db::DbError> {
    match db.backend() {
        Backend::Sqlite => db.migrate(&SQLITE_MIGRATOR).await,
        Backend::Postgres => db.migrate(&POSTGRES_MIGRATOR).await,
    }
}

pub use billing_server::app::AppError;

/// A ready-to-run meter service: database migrated, listener bound.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    metering: Metering,
    config: Config,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Connects, migrates and binds.
    pub async fn build(config: Config, clock: Clock) -> Result<Self, AppError> {
        let db = billing_db::Db::connect(&config.database_url, &config.db).await?;
        migrate(&db).await?;
        let listener = billing_server::app::bind(config.listen_addr).await?;
        let metrics = Metrics::new();
        let metering = Metering::new(store::Store::new(db), clock).with_metrics(&metrics);
        let metrics_listener = billing_server::app::bind_metrics(config.metrics_addr).await?;
        Ok(Self {
            listener,
            metering,
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
    pub fn metering(&self) -> &Metering {
        &self.metering
    }

    /// Serves until `shutdown`, then drains and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let keys = Arc::new(self.config.api_keys.clone());
        let max = self.config.server.max_message_bytes;
        let service = MeterServiceServer::new(grpc::MeterGrpc::new(self.metering.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let routes = Routes::new(InterceptedService::new(service, AuthInterceptor::new(keys)));
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
        self.metering.store().db().close().await;
        served.map_err(AppError::from)
    }
}
