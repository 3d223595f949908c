//! Configuration: the shared service settings plus the expiry sweeper's.

use std::net::SocketAddr;
use std::time::Duration;

use billing_server::config::{ServiceConfig, Settings, parse, var};
use chrono::TimeDelta;

pub use billing_server::config::ConfigError;

use crate::jobs::sweeper::SweeperOptions;
use crate::upstream::CustomerCheckConfig;

/// Default listen address of the pod binary (all interfaces, port 50052).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50052";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/ledger.db";

/// Everything the ledger needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, address, keys, limits.
    pub service: ServiceConfig,
    /// Expiry sweeper.
    pub sweeper: SweeperOptions,
    /// Invoicing, asked whether a grant's customer exists; `None`: the
    /// ledger runs alone and checks only the id's form.
    pub customers: Option<CustomerCheckConfig>,
}

impl Config {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self {
            service: ServiceConfig::new(database_url, listen_addr),
            sweeper: SweeperOptions::default(),
            customers: None,
        }
    }

    /// The shared variables (`DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`,
    /// `DATABASE_MAX_CONNECTIONS`) plus `LEDGER_EXPIRY_GRACE_SECONDS`,
    /// `LEDGER_SWEEP_INTERVAL_SECONDS`, `LEDGER_INVOICING_URL`,
    /// `LEDGER_INTERNAL_API_KEY`, `LEDGER_UPSTREAM_DEADLINE_MS` and
    /// `LEDGER_INSTANCE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self {
            service: ServiceConfig::from_env(DEFAULT_DATABASE_URL, DEFAULT_LISTEN_ADDR)?,
            sweeper: SweeperOptions {
                instance: billing_server::config::instance_name("LEDGER_INSTANCE"),
                ..SweeperOptions::default()
            },
            customers: None,
        };
        if let Some(invoicing_url) = var("LEDGER_INVOICING_URL") {
            config.customers = Some(CustomerCheckConfig {
                invoicing_url,
                internal_api_key: var("LEDGER_INTERNAL_API_KEY").unwrap_or_default(),
                deadline: Duration::from_millis(match var("LEDGER_UPSTREAM_DEADLINE_MS") {
                    Some(value) => parse("LEDGER_UPSTREAM_DEADLINE_MS", &value)?,
                    None => 5_000,
                }),
            });
        }
        if let Some(value) = var("LEDGER_EXPIRY_GRACE_SECONDS") {
            config.sweeper.grace =
                TimeDelta::seconds(parse("LEDGER_EXPIRY_GRACE_SECONDS", &value)?);
        }
        if let Some(value) = var("LEDGER_SWEEP_INTERVAL_SECONDS") {
            config.sweeper.interval =
                Duration::from_secs(parse("LEDGER_SWEEP_INTERVAL_SECONDS", &value)?);
        }
        Ok(config)
    }
}

impl Settings for Config {
    fn service(&self) -> &ServiceConfig {
        &self.service
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_env()
    }
}
