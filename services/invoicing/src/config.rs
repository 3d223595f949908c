//! Configuration: the shared service settings, the other services, the
//! finalize grace period, the worker and the test clock.

use std::net::SocketAddr;
use std::time::Duration;

use billing_server::config::{ServiceConfig, Settings, parse, var};
use chrono::TimeDelta;

pub use billing_server::config::ConfigError;

use crate::upstream::UpstreamConfig;

/// Default listen address of the pod binary (all interfaces, port 50053).
pub const DEFAULT_LISTEN_ADDR: &str = "0.0.0.0:50053";
/// Default database: an embedded SQLite file.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://data/invoicing.db";

/// Everything invoicing needs to run.
#[derive(Debug, Clone)]
pub struct Config {
    /// Database, address, keys, limits.
    pub service: ServiceConfig,
    /// The ledger and meter-ingest.
    pub upstream: UpstreamConfig,
    /// A draft finalizes by itself this long after its period closed.
    pub finalize_grace: TimeDelta,
    /// How often the worker looks for work.
    pub worker_interval: Duration,
    /// Invoices the worker resumes at once (`INVOICING_WORKER_CONCURRENCY`).
    pub worker_concurrency: usize,
    /// Serve `TestClockService` over a manual clock (tests only).
    pub test_clock: bool,
    /// This replica's name, under which it claims invoices' sagas
    /// (`INVOICING_INSTANCE`, else `HOSTNAME`: the pod's name, kept across
    /// a container restart; else `local`).
    pub instance: String,
}

impl Config {
    /// Defaults with the given database, address and peers, no keys.
    pub fn new(
        database_url: impl Into<String>,
        listen_addr: SocketAddr,
        upstream: UpstreamConfig,
    ) -> Self {
        Self {
            service: ServiceConfig::new(database_url, listen_addr),
            upstream,
            finalize_grace: TimeDelta::hours(1),
            worker_interval: Duration::from_secs(10),
            worker_concurrency: crate::jobs::worker::WorkerOptions::default().concurrency,
            test_clock: false,
            instance: "local".to_owned(),
        }
    }

    /// The shared variables plus `LEDGER_URL`, `METER_URL`,
    /// `INVOICING_INTERNAL_API_KEY`, `INVOICING_UPSTREAM_DEADLINE_MS`,
    /// `INVOICING_FINALIZE_GRACE_SECONDS`, `INVOICING_WORKER_INTERVAL_SECONDS`
    /// `INVOICING_WORKER_CONCURRENCY`, `INVOICING_TEST_CLOCK` and
    /// `INVOICING_INSTANCE`.
    pub fn from_env() -> Result<Self, ConfigError> {
        let upstream = UpstreamConfig {
            ledger_url: var("LEDGER_URL").unwrap_or_else(|| "http://127.0.0.1:50052".into()),
            meter_url: var("METER_URL").unwrap_or_else(|| "http://127.0.0.1:50051".into()),
            internal_api_key: var("INVOICING_INTERNAL_API_KEY").unwrap_or_default(),
            deadline: Duration::from_millis(match var("INVOICING_UPSTREAM_DEADLINE_MS") {
                Some(value) => parse("INVOICING_UPSTREAM_DEADLINE_MS", &value)?,
                None => 5_000,
            }),
        };
        let mut config = Self {
            service: ServiceConfig::from_env(DEFAULT_DATABASE_URL, DEFAULT_LISTEN_ADDR)?,
            ..Self::new("", SocketAddr::from(([0, 0, 0, 0], 0)), upstream)
        };
        if let Some(value) = var("INVOICING_FINALIZE_GRACE_SECONDS") {
            config.finalize_grace =
                TimeDelta::seconds(parse("INVOICING_FINALIZE_GRACE_SECONDS", &value)?);
        }
        if let Some(value) = var("INVOICING_WORKER_INTERVAL_SECONDS") {
            config.worker_interval =
                Duration::from_secs(parse("INVOICING_WORKER_INTERVAL_SECONDS", &value)?);
        }
        if let Some(value) = var("INVOICING_WORKER_CONCURRENCY") {
            let concurrency: usize = parse("INVOICING_WORKER_CONCURRENCY", &value)?;
            if concurrency == 0 {
                return Err(ConfigError::Invalid {
                    name: "INVOICING_WORKER_CONCURRENCY",
                    problem: "must be at least 1".into(),
                });
            }
            config.worker_concurrency = concurrency;
        }
        config.instance = billing_server::config::instance_name("INVOICING_INSTANCE");
        if let Some(value) = var("INVOICING_TEST_CLOCK") {
            config.test_clock = parse("INVOICING_TEST_CLOCK", &value)?;
            if config.test_clock && !TEST_CLOCK_BUILT_IN {
                return Err(ConfigError::Invalid {
                    name: "INVOICING_TEST_CLOCK",
                    problem: "the test clock is a development tool; this release build refuses it \
                              (build with --features test-clock, or use a debug build)"
                        .into(),
                });
            }
        }
        Ok(config)
    }
}

/// Whether this build may serve the test clock: debug builds (tests,
/// `cargo run`) and builds with the `test-clock` feature. Release images
/// are built without it, so no production pod can serve it.
pub const TEST_CLOCK_BUILT_IN: bool = cfg!(any(debug_assertions, feature = "test-clock"));

impl Settings for Config {
    fn service(&self) -> &ServiceConfig {
        &self.service
    }

    fn from_env() -> Result<Self, ConfigError> {
        Self::from_env()
    }
}
