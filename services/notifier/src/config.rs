//! Configuration: the shared service settings plus where the feeds are,
//! which URLs deliveries may go to, the retry schedule and the sink.

use std::net::SocketAddr;
use std::time::Duration;

use billing_server::config::{ServiceConfig, Settings, parse, var};

pub use billing_server::config::ConfigError;

use crate::domain::schedule::RetrySchedule;

/// Default listen address of the pod binary.
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50054";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/notifier.db";

/// One service whose feed the notifier follows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// `ledger`, `meter` or `invoicing`: names the cursor.
    pub name: &'static str,
    /// Its gRPC URL.
    pub url: String,
}

/// Everything the notifier needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, address, keys, limits.
    pub service: ServiceConfig,
    /// The feeds followed.
    pub sources: Vec<Source>,
    /// A key with the `internal` scope on the sources.
    pub internal_api_key: String,
    /// The accounts followed: `NOTIFIER_ACCOUNTS`, else every account of
    /// `BILLING_API_KEYS`.
    pub accounts: Vec<String>,
    /// `http://` URLs allowed (development and tests only).
    pub allow_insecure_urls: bool,
    /// Loopback, private, link-local and metadata addresses allowed.
    pub allow_private_urls: bool,
    /// When failed attempts are retried.
    pub retry_schedule: RetrySchedule,
    /// Deliveries in flight at once.
    pub delivery_concurrency: usize,
    /// How often the delivery worker looks for due deliveries.
    pub delivery_interval: Duration,
    /// JetStream sink, when set.
    pub nats_url: Option<String>,
}

impl Config {
    /// Defaults with the given database, address and sources; no keys.
    pub fn new(
        database_url: impl Into<String>,
        listen_addr: SocketAddr,
        sources: Vec<Source>,
    ) -> Self {
        Self {
            service: ServiceConfig::new(database_url, listen_addr),
            sources,
            internal_api_key: String::new(),
            accounts: Vec::new(),
            allow_insecure_urls: false,
            allow_private_urls: false,
            retry_schedule: RetrySchedule::default(),
            delivery_concurrency: 32,
            delivery_interval: Duration::from_millis(200),
            nats_url: None,
        }
    }

    /// The shared variables plus `LEDGER_URL`, `METER_URL`, `INVOICING_URL`,
    /// `NOTIFIER_INTERNAL_API_KEY`, `NOTIFIER_ACCOUNTS`,
    /// `NOTIFIER_ALLOW_INSECURE_URLS`, `NOTIFIER_ALLOW_PRIVATE_URLS`,
    /// `NOTIFIER_RETRY_SCHEDULE`, `NOTIFIER_DELIVERY_CONCURRENCY` and
    /// `NOTIFIER_NATS_URL`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let source = |name: &'static str, variable: &str, default: &str| Source {
            name,
            url: var(variable).unwrap_or_else(|| default.to_owned()),
        };
        let sources = vec![
            source("ledger", "LEDGER_URL", "http://127.0.0.1:50052"),
            source("meter", "METER_URL", "http://127.0.0.1:50051"),
            source("invoicing", "INVOICING_URL", "http://127.0.0.1:50053"),
        ];
        let service = ServiceConfig::from_env(DEFAULT_DATABASE_URL, DEFAULT_LISTEN_ADDR)?;
        let mut config = Self::new("", service.listen_addr, sources);
        config.accounts = match var("NOTIFIER_ACCOUNTS") {
            Some(list) => list
                .split(',')
                .map(str::trim)
                .filter(|a| !a.is_empty())
                .map(str::to_owned)
                .collect(),
            None => service.api_keys.accounts(),
        };
        config.service = service;
        config.internal_api_key = var("NOTIFIER_INTERNAL_API_KEY").unwrap_or_default();
        if let Some(value) = var("NOTIFIER_ALLOW_INSECURE_URLS") {
            config.allow_insecure_urls = parse("NOTIFIER_ALLOW_INSECURE_URLS", &value)?;
        }
        if let Some(value) = var("NOTIFIER_ALLOW_PRIVATE_URLS") {
            config.allow_private_urls = parse("NOTIFIER_ALLOW_PRIVATE_URLS", &value)?;
        }
        if let Some(value) = var("NOTIFIER_RETRY_SCHEDULE") {
            config.retry_schedule =
                RetrySchedule::parse(&value).map_err(|problem| ConfigError::Invalid {
                    name: "NOTIFIER_RETRY_SCHEDULE",
                    problem,
                })?;
        }
        if let Some(value) = var("NOTIFIER_DELIVERY_CONCURRENCY") {
            config.delivery_concurrency = parse("NOTIFIER_DELIVERY_CONCURRENCY", &value)?;
        }
        config.nats_url = var("NOTIFIER_NATS_URL");
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
