//! Configuration: defaults, then environment variables.

use std::net::SocketAddr;

use billing_server::auth::{ApiKeys, AuthConfigError};
use billing_server::serve::ServerOptions;

/// Default listen address of the pod binary.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50051";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/meter.db";

/// Why the configuration is unusable.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A variable has an unusable value.
    #[error("{name}: {problem}")]
    Invalid {
        /// The variable.
        name: &'static str,
        /// What is wrong.
        problem: String,
    },
    /// BILLING_API_KEYS is malformed.
    #[error("BILLING_API_KEYS: {0}")]
    ApiKeys(#[from] AuthConfigError),
}

/// Everything meter-ingest needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Where to listen; port 0 picks a free one.
    pub listen_addr: SocketAddr,
    /// Accepted API keys.
    pub api_keys: ApiKeys,
    /// Pool sizes and timeouts.
    pub db: billing_db::DbOptions,
    /// Server limits.
    pub server: ServerOptions,
}

impl Config {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        // Batch ingestion on PostgreSQL binds arrays (UNNEST): native pool.
        let db = billing_db::DbOptions {
            native_postgres: true,
            ..Default::default()
        };
        Self {
            database_url: database_url.into(),
            listen_addr,
            api_keys: ApiKeys::default(),
            db,
            server: ServerOptions::default(),
        }
    }

    /// Reads `DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`, `DATABASE_MAX_CONNECTIONS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let listen = var("LISTEN_ADDR").unwrap_or_else(|| DEFAULT_LISTEN_ADDR.to_owned());
        let listen_addr = listen.parse().map_err(|e| ConfigError::Invalid {
            name: "LISTEN_ADDR",
            problem: format!("{listen:?}: {e}"),
        })?;
        let mut config = Self::new(database_url, listen_addr);
        config.api_keys = ApiKeys::parse(&var("BILLING_API_KEYS").unwrap_or_default())?;
        if let Some(value) = var("DATABASE_MAX_CONNECTIONS") {
            config.db.postgres_max_connections =
                value.parse().map_err(|e| ConfigError::Invalid {
                    name: "DATABASE_MAX_CONNECTIONS",
                    problem: format!("{value:?}: {e}"),
                })?;
        }
        Ok(config)
    }
}
