//! The configuration every service reads the same way: defaults, then
//! `DATABASE_URL`, `LISTEN_ADDR`, `BILLING_API_KEYS`, `DATABASE_MAX_CONNECTIONS`,
//! `DATABASE_MIGRATION_URL`, `GRPC_MAX_CONNECTION_AGE_SECONDS`,
//! `GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS`.

use std::net::SocketAddr;

use crate::auth::{ApiKeys, AuthConfigError};
use crate::serve::ServerOptions;

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

/// A service's whole configuration: the shared part and how to read it all
/// from the environment. The host needs nothing else of it.
pub trait Settings: Sized + Send + Sync + 'static {
    /// The shared part (database, address, keys, limits).
    fn service(&self) -> &ServiceConfig;
    /// Reads the configuration from the environment (pod binaries).
    fn from_env() -> Result<Self, ConfigError>;
}

/// What every service needs to run.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// `sqlite://…` or `postgres://…`.
    pub database_url: String,
    /// Where to run the migrations when not at `database_url`
    /// (`DATABASE_MIGRATION_URL`): PostgreSQL itself when `database_url`
    /// goes through a pooler in transaction mode, because sqlx's migrator
    /// holds a session-level advisory lock (docs/operations.md).
    pub migration_url: Option<String>,
    /// Where to listen; port 0 picks a free one (tests).
    pub listen_addr: SocketAddr,
    /// Accepted API keys.
    pub api_keys: ApiKeys,
    /// Pool sizes and timeouts.
    pub db: billing_db::DbOptions,
    /// Server limits.
    pub server: ServerOptions,
    /// Where `/metrics` is served; None: not served.
    pub metrics_addr: Option<SocketAddr>,
}

impl ServiceConfig {
    /// Defaults with the given database and address, no keys.
    pub fn new(database_url: impl Into<String>, listen_addr: SocketAddr) -> Self {
        Self {
            database_url: database_url.into(),
            migration_url: None,
            listen_addr,
            api_keys: ApiKeys::default(),
            db: billing_db::DbOptions::default(),
            server: ServerOptions::default(),
            metrics_addr: None,
        }
    }

    /// Reads the shared variables over the service's defaults.
    pub fn from_env(
        default_database_url: &str,
        default_listen_addr: &str,
    ) -> Result<Self, ConfigError> {
        let database_url = var("DATABASE_URL").unwrap_or_else(|| default_database_url.to_owned());
        let listen_addr = parse(
            "LISTEN_ADDR",
            &var("LISTEN_ADDR").unwrap_or_else(|| default_listen_addr.to_owned()),
        )?;
        let mut config = Self::new(database_url, listen_addr);
        config.migration_url = var("DATABASE_MIGRATION_URL");
        config.api_keys = ApiKeys::parse(&var("BILLING_API_KEYS").unwrap_or_default())?;
        // `METRICS_ADDR=off` disables the endpoint.
        let metrics = var("METRICS_ADDR").unwrap_or_else(|| "0.0.0.0:9090".to_owned());
        if metrics != "off" {
            config.metrics_addr = Some(parse("METRICS_ADDR", &metrics)?);
        }
        if let Some(value) = var("DATABASE_MAX_CONNECTIONS") {
            config.db.postgres_max_connections = parse("DATABASE_MAX_CONNECTIONS", &value)?;
        }
        // 0 turns ageing off.
        if let Some(value) = var("GRPC_MAX_CONNECTION_AGE_SECONDS") {
            let seconds: u64 = parse("GRPC_MAX_CONNECTION_AGE_SECONDS", &value)?;
            config.server.max_connection_age =
                (seconds > 0).then(|| std::time::Duration::from_secs(seconds));
        }
        if let Some(value) = var("GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS") {
            let seconds: u64 = parse("GRPC_MAX_CONNECTION_AGE_GRACE_SECONDS", &value)?;
            config.server.max_connection_age_grace = std::time::Duration::from_secs(seconds);
        }
        Ok(config)
    }
}

/// A non-empty environment variable.
pub fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// This replica's name, under which it leases background work (issue 19):
/// the variable `name` (e.g. `LEDGER_INSTANCE`), else `HOSTNAME` (the pod's
/// name, kept across a container restart, so a restarted pod takes its
/// predecessor's leases back at once), else `local`. Two live processes of
/// one service must not share a name.
pub fn instance_name(name: &str) -> String {
    var(name)
        .or_else(|| var("HOSTNAME"))
        .unwrap_or_else(|| "local".to_owned())
}

/// Parses a variable's value, naming the variable on failure.
pub fn parse<T: std::str::FromStr>(name: &'static str, value: &str) -> Result<T, ConfigError>
where
    T::Err: std::fmt::Display,
{
    value.parse().map_err(|e: T::Err| ConfigError::Invalid {
        name,
        problem: format!("{value:?}: {e}"),
    })
}
