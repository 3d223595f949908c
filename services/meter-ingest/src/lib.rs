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
pub(crate) mod domain;
pub(crate) mod error;
pub(crate) mod grpc;
pub(crate) mod ops;
pub(crate) mod store;

use billing_server::app::AppError;
use billing_server::host::{Host, Parts, Served, Service, Serving};

pub use config::Config;
pub use error::MeterError;
pub use grpc::SERVICE_NAME;
pub use ops::Metering;
pub use store::MIGRATIONS;

/// meter-ingest, as the host runs it.
pub type App = Host<MeterIngest>;

/// What meter-ingest adds to the shared host: no background jobs.
#[derive(Debug)]
pub struct MeterIngest;

impl Service for MeterIngest {
    const NAME: &'static str = "meter-ingest";
    const MIGRATIONS: &'static billing_db::Migrations = &store::MIGRATIONS;
    type Config = Config;
    type State = Metering;

    fn routes(metering: &Metering, config: &Config, serving: &Serving) -> Served {
        let max = config.service.server.max_message_bytes;
        grpc::routes(metering, max, serving)
    }

    fn state(_: &Config, Parts { db, clock, metrics }: Parts) -> Result<Metering, AppError> {
        Ok(Metering::new(store::Store::new(db), clock).with_metrics(&metrics))
    }
}
