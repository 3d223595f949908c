//! meter-ingest: meters, idempotent high-volume usage ingestion, and exact,
//! immediately consistent usage queries.
//!
//! Layout (the same floors in every service; see ARCHITECTURE.md):
//! - [`grpc`]: `billing.meter.v1.MeterService`; transport only, the only
//!   proto user.
//! - [`ops`]: the use cases ([`Metering`]).
//! - [`domain`]: meters, event checks and batch dedupe, hourly buckets and
//!   windows; no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence (PostgreSQL batch path with
//!   `UNNEST`); the only sqlx user.
//! - [`config`], [`error`]: configuration and the service's error.
//!
//! [`MeterIngest`] declares the service to the shared host; [`App`] is that
//! host. meter-ingest has no background jobs.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod ops;
pub mod store;

use billing_db::{Db, DbError};
use billing_server::app::AppError;
use billing_server::auth::AuthInterceptor;
use billing_server::clock::Clock;
use billing_server::config::{ConfigError, ServiceConfig};
use billing_server::host::{Host, Routes, Service};
use billing_server::metrics::Metrics;

pub use config::Config;
pub use grpc::SERVICE_NAME;
pub use ops::Metering;
pub use store::migrate;

/// meter-ingest, as the host runs it.
pub type App = Host<MeterIngest>;

/// What meter-ingest adds to the shared host.
#[derive(Debug)]
pub struct MeterIngest;

impl Service for MeterIngest {
    type Config = Config;
    type State = Metering;
    const NAME: &'static str = "meter-ingest";

    fn service_config(config: &Config) -> &ServiceConfig {
        &config.service
    }

    fn from_env() -> Result<Config, ConfigError> {
        Config::from_env()
    }

    async fn migrate(db: &Db) -> Result<(), DbError> {
        store::migrate(db).await
    }

    fn state(_: &Config, db: Db, clock: Clock, metrics: &Metrics) -> Result<Metering, AppError> {
        Ok(Metering::new(store::Store::new(db), clock).with_metrics(metrics))
    }

    fn routes(
        metering: &Metering,
        config: &Config,
        auth: AuthInterceptor,
    ) -> (Routes, Vec<&'static str>) {
        grpc::routes(metering, config.service.server.max_message_bytes, auth)
    }

    fn db(metering: &Metering) -> &Db {
        metering.store().db()
    }
}
