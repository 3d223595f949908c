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
//! - [`jobs`]: the attribution job (usage for customers invoicing does not
//!   know: `meter.usage_unattributed`).
//!
//! [`MeterIngest`] declares the service to the shared host; [`App`] is that
//! host.

pub mod config;
pub(crate) mod domain;
pub(crate) mod error;
pub(crate) mod grpc;
pub mod jobs;
pub(crate) mod ops;
pub(crate) mod store;

use billing_server::app::AppError;
use billing_server::customers::CustomerDirectory;
use billing_server::host::{Host, Job, Parts, Served, Service, Serving, Stop};

pub use config::Config;
pub use error::MeterError;
pub use grpc::SERVICE_NAME;
pub use ops::Metering;
pub use store::MIGRATIONS;

/// meter-ingest, as the host runs it.
pub type App = Host<MeterIngest>;

/// What meter-ingest adds to the shared host: the attribution job.
#[derive(Debug)]
pub struct MeterIngest;

/// What the handlers and the job share.
#[derive(Debug, Clone)]
pub struct State {
    /// The use cases.
    pub metering: Metering,
    /// Invoicing's customers, when configured.
    pub customers: Option<CustomerDirectory>,
}

impl Service for MeterIngest {
    const NAME: &'static str = "meter-ingest";
    const MIGRATIONS: &'static billing_db::Migrations = &store::MIGRATIONS;
    type Config = Config;
    type State = State;

    fn warnings(config: &Config) -> Vec<&'static str> {
        match &config.customers {
            None => {
                vec!["METER_INVOICING_URL is unset: usage for unknown customers is not reported"]
            }
            Some(customers) if customers.internal_api_key.is_empty() => {
                vec!["METER_INTERNAL_API_KEY is empty: every customer check will be refused"]
            }
            Some(_) => Vec::new(),
        }
    }

    fn routes(state: &State, config: &Config, serving: &Serving) -> Served {
        let max = config.service.server.max_message_bytes;
        grpc::routes(&state.metering, max, serving)
    }

    fn state(config: &Config, Parts { db, clock, metrics }: Parts) -> Result<State, AppError> {
        let customers = match &config.customers {
            Some(directory) => Some(CustomerDirectory::new(directory).map_err(|e| {
                AppError::Config(format!("METER_INVOICING_URL, METER_INTERNAL_API_KEY: {e}"))
            })?),
            None => None,
        };
        Ok(State {
            metering: Metering::new(store::Store::new(db), clock).with_metrics(&metrics),
            customers,
        })
    }

    /// The attribution job, when invoicing is configured.
    fn jobs(state: &State, config: &Config, stop: &Stop) -> Vec<Job> {
        match &state.customers {
            Some(directory) => vec![Box::pin(jobs::attribution::run(
                state.metering.clone(),
                directory.clone(),
                config.attribution_interval,
                stop.clone(),
            ))],
            None => Vec::new(),
        }
    }
}
