//! Invoicing: customers, metered prices, subscriptions, invoices, and the
//! exactly-once finalize saga.
//!
//! Layout (the same floors in every service; see ARCHITECTURE.md):
//! - [`grpc`]: `billing.invoicing.v1.InvoicingService` (and the test clock);
//!   transport only.
//! - [`ops`]: the use cases ([`Invoicing`]), including the finalize and void
//!   sagas.
//! - [`domain`]: customers, prices and pricing, subscriptions and periods,
//!   invoices and totals; no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence and the saga transitions; the
//!   only sqlx user.
//! - [`upstream`]: the ledger and meter-ingest, through their gRPC APIs; the
//!   only place that builds their protos.
//! - [`jobs`]: the worker (period close, auto-finalize, saga recovery).
//! - [`config`], [`error`]: configuration and the service's error.
//!
//! [`InvoicingService`] declares the service to the shared host; [`App`] is
//! that host.

pub mod config;
pub(crate) mod domain;
pub(crate) mod error;
pub(crate) mod grpc;
pub mod jobs;
pub(crate) mod ops;
pub(crate) mod store;
pub mod upstream;

use billing_server::app::AppError;
use billing_server::clock::Clock;
use billing_server::host::{Host, Job, Parts, Served, Service, Serving, Stop};

pub use config::Config;
pub use error::InvoicingError;
pub use grpc::SERVICE_NAME;
pub use jobs::worker::Worker;
pub use ops::Invoicing;
pub use store::{ClaimTerms, MIGRATIONS};

/// Invoicing, as the host runs it.
pub type App = Host<InvoicingService>;

/// What the handlers and the worker share.
#[derive(Debug, Clone)]
pub struct State {
    /// The use cases.
    pub invoicing: Invoicing,
    /// The worker: ticked by its timer and by the test clock, one tick at a time.
    pub worker: Worker,
}

/// What invoicing adds to the shared host.
#[derive(Debug)]
pub struct InvoicingService;

impl Service for InvoicingService {
    type Config = Config;
    type State = State;
    const NAME: &'static str = "invoicing";
    const MIGRATIONS: &'static billing_db::Migrations = &store::MIGRATIONS;

    /// A manual clock (moved only by `TestClockService`) when the test clock is on.
    fn clock(config: &Config) -> Clock {
        if config.test_clock {
            Clock::manual(Clock::system().now())
        } else {
            Clock::system()
        }
    }

    fn warnings(config: &Config) -> Vec<&'static str> {
        let mut warnings = Vec::new();
        if config.upstream.internal_api_key.is_empty() {
            warnings.push(
                "INVOICING_INTERNAL_API_KEY is empty: calls to the ledger and meter-ingest will fail",
            );
        }
        if config.test_clock {
            warnings
                .push("INVOICING_TEST_CLOCK is on: the clock only moves through TestClockService");
        }
        warnings
    }

    fn state(config: &Config, parts: Parts) -> Result<State, AppError> {
        let upstream = upstream::Upstream::new(&config.upstream)
            .map_err(|e| AppError::Config(e.to_string()))?;
        let store = store::Store::new(parts.db);
        let invoicing = Invoicing::new(store, upstream, parts.clock, config.finalize_grace)
            .with_instance(&config.instance)
            .with_metrics(&parts.metrics);
        let options = jobs::worker::WorkerOptions {
            concurrency: config.worker_concurrency,
            ..jobs::worker::WorkerOptions::default()
        };
        let worker = Worker::with_options(invoicing.clone(), options);
        Ok(State { invoicing, worker })
    }

    fn routes(state: &State, config: &Config, serving: &Serving) -> Served {
        grpc::routes(state, config, serving)
    }

    /// The worker, on its timer.
    fn jobs(state: &State, config: &Config, stop: &Stop) -> Vec<Job> {
        let worker = state.worker.clone();
        vec![Box::pin(worker.run(config.worker_interval, stop.clone()))]
    }
}
