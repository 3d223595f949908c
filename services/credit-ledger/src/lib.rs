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
//! - [`upstream`]: asks invoicing whether a grant's customer exists.
//! - [`config`], [`error`]: configuration and the service's error.
//!
//! [`LedgerService`] declares the service to the shared host; [`App`] is
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
use billing_server::host::{Host, Job, Parts, Served, Service, Serving, Stop};

pub use config::Config;
pub use error::LedgerError;
pub use grpc::SERVICE_NAME;
pub use ops::Ledger;
pub use store::MIGRATIONS;

/// The credit ledger, as the host runs it.
pub type App = Host<LedgerService>;

/// What the ledger adds to the shared host.
#[derive(Debug)]
pub struct LedgerService;

impl Service for LedgerService {
    type Config = Config;
    type State = Ledger;
    const NAME: &'static str = "credit-ledger";
    const MIGRATIONS: &'static billing_db::Migrations = &store::MIGRATIONS;

    fn state(config: &Config, parts: Parts) -> Result<Ledger, AppError> {
        let mut ledger = Ledger::new(store::Store::new(parts.db), parts.clock);
        if let Some(customers) = &config.customers {
            let customers = upstream::Customers::new(customers).map_err(|e| {
                AppError::Config(format!(
                    "LEDGER_INVOICING_URL, LEDGER_INTERNAL_API_KEY: {e}"
                ))
            })?;
            ledger = ledger.with_customers(customers);
        }
        Ok(ledger.with_metrics(&parts.metrics))
    }

    fn warnings(config: &Config) -> Vec<&'static str> {
        match &config.customers {
            None => vec![
                "LEDGER_INVOICING_URL is unset: grants are not checked against invoicing's customers",
            ],
            Some(customers) if customers.internal_api_key.is_empty() => {
                vec!["LEDGER_INTERNAL_API_KEY is empty: every customer check will be refused"]
            }
            Some(_) => Vec::new(),
        }
    }

    fn routes(ledger: &Ledger, config: &Config, serving: &Serving) -> Served {
        grpc::routes(ledger, config.service.server.max_message_bytes, serving)
    }

    /// The expiry sweeper.
    fn jobs(ledger: &Ledger, config: &Config, stop: &Stop) -> Vec<Job> {
        let sweeper = jobs::sweeper::run(ledger.clone(), config.sweeper.clone(), stop.clone());
        vec![Box::pin(sweeper)]
    }
}

/// Benchmark builds only (feature `bench-no-events`): the switch the
/// outbox benchmark flips between slices of one run, so both sides share
/// one process, database and hour (`just bench-outbox`).
#[cfg(feature = "bench-no-events")]
#[doc(hidden)]
pub mod bench {
    use std::sync::atomic::{AtomicBool, Ordering};

    static SKIP_GRANT_EVENTS: AtomicBool = AtomicBool::new(false);

    /// Whether grant changes write their `credit_balance.*` events.
    pub fn write_grant_events(on: bool) {
        SKIP_GRANT_EVENTS.store(!on, Ordering::SeqCst);
    }

    pub(crate) fn grant_events_skipped() -> bool {
        SKIP_GRANT_EVENTS.load(Ordering::Relaxed)
    }
}
