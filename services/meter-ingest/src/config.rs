//! Configuration: the shared service settings, with the native PostgreSQL
//! pool that batch ingestion needs.

use std::net::SocketAddr;
use std::time::Duration;

use billing_server::config::{ServiceConfig, Settings, parse, var};
use billing_server::customers::DirectoryConfig;

pub use billing_server::config::ConfigError;

/// Default listen address of the pod binary.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50051";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/meter.db";

/// Everything meter-ingest needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, address, keys, limits.
    pub service: ServiceConfig,
    /// Invoicing, asked whose usage nobody will bill; `None`: not checked.
    pub customers: Option<DirectoryConfig>,
    /// How often the attribution job runs.
    pub attribution_interval: Duration,
}

impl Config {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self::with_native_postgres(ServiceConfig::new(database_url, listen_addr))
    }

    /// The shared variables (`DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`,
    /// `DATABASE_MAX_CONNECTIONS`) plus `METER_INVOICING_URL`,
    /// `METER_INTERNAL_API_KEY` and `METER_ATTRIBUTION_INTERVAL_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let mut config = Self::with_native_postgres(ServiceConfig::from_env(
            DEFAULT_DATABASE_URL,
            DEFAULT_LISTEN_ADDR,
        )?);
        if let Some(invoicing_url) = var("METER_INVOICING_URL") {
            config.customers = Some(DirectoryConfig {
                invoicing_url,
                internal_api_key: var("METER_INTERNAL_API_KEY").unwrap_or_default(),
                deadline: Duration::from_secs(5),
            });
        }
        if let Some(value) = var("METER_ATTRIBUTION_INTERVAL_SECONDS") {
            config.attribution_interval =
                Duration::from_secs(parse("METER_ATTRIBUTION_INTERVAL_SECONDS", &value)?);
        }
        Ok(config)
    }

    /// Batch ingestion on PostgreSQL binds arrays (UNNEST): native pool.
    fn with_native_postgres(mut service: ServiceConfig) -> Self {
        service.db.native_postgres = true;
        Self {
            service,
            customers: None,
            attribution_interval: Duration::from_secs(60),
        }
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
