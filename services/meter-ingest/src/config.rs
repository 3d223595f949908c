//! Configuration: the shared service settings, with the native PostgreSQL
//! pool that batch ingestion needs.

use std::net::SocketAddr;

use billing_server::config::{ServiceConfig, Settings};

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
}

impl Config {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self::with_native_postgres(ServiceConfig::new(database_url, listen_addr))
    }

    /// The shared variables: `DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`,
    /// `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        Ok(Self::with_native_postgres(ServiceConfig::from_env(
            DEFAULT_DATABASE_URL,
            DEFAULT_LISTEN_ADDR,
        )?))
    }

    /// Batch ingestion on PostgreSQL binds arrays (UNNEST): native pool.
    fn with_native_postgres(mut service: ServiceConfig) -> Self {
        service.db.native_postgres = true;
        Self { service }
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
