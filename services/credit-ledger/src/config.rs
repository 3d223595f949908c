//! Configuration: defaults, then environment variables.

use std::net::SocketAddr;
use std::time::Duration;

use billing_server::auth::{ApiKeys, AuthConfigError};
use billing_server::serve::ServerOptions;
use chrono::TimeDelta;

use crate::sweeper::SweeperOptions;

/// Default listen address of the pod binary (all interfaces, port 50052).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50052";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/ledger.db";

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

/// Everything the ledger needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Where to listen; port 0 picks a free one (tests).
    pub listen_addr: SocketAddr,
    /// Accepted API keys.
    pub api_keys: ApiKeys,
    /// Pool sizes and timeouts.
    pub db: billing_db::DbOptions,
    /// Server limits.
    pub server: ServerOptions,
    /// Expiry sweeper.
    pub sweeper: SweeperOptions,
}

impl Config {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self {
            database_url: database_url.into(),
            listen_addr,
            api_keys: ApiKeys::default(),
            db: billing_db::DbOptions::default(),
            server: ServerOptions::default(),
            sweeper: SweeperOptions::default(),
        }
    }

    /// Reads `DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`,
    /// `DATABASE_MAX_CONNECTIONS`, `LEDGER_EXPIRY_GRACE_SECONDS`,
    /// `LEDGER_SWEEP_INTERVAL_SECONDS`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let database_url = var("DATABASE_URL").unwrap_or_else(|| DEFAULT_DATABASE_URL.to_owned());
        let listen_addr = parse(
            "LISTEN_ADDR",
            var("LISTEN_ADDR").as_deref().unwrap_or(DEFAULT_LISTEN_ADDR),
        )?;
        let mut config = Self::new(database_url, listen_addr);
        config.api_keys = ApiKeys::parse(&var("BILLING_API_KEYS").unwrap_or_default())?;
        if let Some(value) = var("DATABASE_MAX_CONNECTIONS") {
            config.db.postgres_max_connections = parse("DATABASE_MAX_CONNECTIONS", &value)?;
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

fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Invalid {
        name,
        problem: format!("{value:?}: {e}"),
    })
}
