//! The credit ledger: grants prepaid and promotional credits and applies them
//! to invoice lines exactly once.
//!
//! Layout (the same floors in every service; see ARCHITECTURE.md):
//! - [`grpc`]: `billing.ledger.v1.LedgerService`; transport only, the only
//!   proto user.
//! - [`ops`]: the use cases ([`Ledger`]), joining domain, store and clock.
//! - [`domain`]: the rules (grant order, eligibility, planning, balances,
//!   invariants); no I/O, no clock, no ids.
//! - [`store`]: SQLite/PostgreSQL persistence; the only sqlx user.
//! - [`jobs`]: the sweeper (expiries after the grace period, old keys).
//! - [`config`], [`error`]: configuration and the service's error.
//!
//! [`LedgerService`] declares the service to the shared host; [`App`] is
//! that host.

pub mod config;
pub mod domain;
pub mod error;
pub mod grpc;
pub mod jobs;
pub mod ops;
pub mod store;

use billing_db::{Db, DbError};
use billing_server::app::AppError;
use billing_server::auth::AuthInterceptor;
use billing_server::clock::Clock;
use billing_server::config::{ConfigError, ServiceConfig};
use billing_server::host::{Host, Job, Routes, Service, Stop};
use billing_server::metrics::Metrics;

pub use config::Config;
pub use grpc::SERVICE_NAME;
pub use ops::Ledger;
pub use store::migrate;

/// The credit ledger, as the host runs it.
pub type App = Host<LedgerService>;

/// What the ledger adds to the shared host.
#[derive(Debug)]
pub struct LedgerService;

impl Service for LedgerService {
    type Config = Config;
    type State = Ledger;
    const NAME: &'static str = "credit-ledger";

    fn service_config(config: &Config) -> &ServiceConfig {
        &config.service
    }

    fn from_env() -> Result<Config, ConfigError> {
        Config::from_env()
    }

    async fn migrate(db: &Db) -> Result<(), DbError> {
        store::migrate(db).await
    }

    fn state(_: &Config, db: Db, clock: Clock, metrics: &Metrics) -> Result<Ledger, AppError> {
        Ok(Ledger::new(store::Store::new(db), clock).with_metrics(metrics))
    }

    fn routes(
        ledger: &Ledger,
        config: &Config,
        auth: AuthInterceptor,
    ) -> (Routes, Vec<&'static str>) {
        grpc::routes(ledger, config.service.server.max_message_bytes, auth)
    }

    fn jobs(ledger: &Ledger, config: &Config, stop: &Stop) -> Vec<Job> {
        vec![Box::pin(jobs::sweeper::run(
            ledger.clone(),
            config.sweeper.clone(),
            stop.clone(),
        ))]
    }

    fn db(ledger: &Ledger) -> &Db {
        ledger.store().db()
    }
}
