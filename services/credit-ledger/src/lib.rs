//! The credit ledger: grants prepaid and promotional credits and applies them
//! to invoice lines exactly once.
//!
//! Layout:
//! - [`domain`]: the rules (grant order, eligibility, planning, balances,
//!   invariants), no I/O.
//! - [`store`]: SQLite/PostgreSQL persistence; the only sqlx user.
//! - [`ledger`]: the operations, joining domain, store and clock.
//! - [`grpc`]: `billing.ledger.v1.LedgerService`; the only proto user.
//! - [`sweeper`]: records expiries after the grace period, purges old keys.
//! - [`config`]: environment configuration.
//! - [`App`]: builds all of it on a bound listener and runs it until shutdown.

pub mod config;
pub mod domain;
pub mod grpc;
pub mod ledger;
pub mod store;
pub mod sweeper;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use billing_proto::ledger::v1::ledger_service_server::LedgerServiceServer;
use billing_server::auth::AuthInterceptor;
use billing_server::clock::Clock;
use billing_server::metrics::Metrics;
use billing_server::serve::serve;
use sqlx::migrate::Migrator;
use tokio::net::TcpListener;
use tonic::service::Routes;
use tonic::service::interceptor::InterceptedService;

pub use config::Config;
pub use ledger::Ledger;

/// The ledger's migrations, embedded in the binary.
pub static MIGRATOR: Migrator = sqlx::migrate!("./migrations");

/// The fully qualified gRPC service name.
pub const SERVICE_NAME: &str = "billing.ledger.v1.LedgerService";

pub use billing_server::app::AppError;

/// A ready-to-run ledger: database migrated, listener bound.
#[derive(Debug)]
pub struct App {
    listener: TcpListener,
    ledger: Ledger,
    config: Config,
    metrics: Metrics,
    metrics_listener: Option<TcpListener>,
}

impl App {
    /// Connects, migrates and binds. With port 0 the OS picks a free port.
    pub async fn build(config: Config, clock: Clock) -> Result<Self, AppError> {
        let db = billing_db::Db::connect(&config.database_url, &config.db).await?;
        db.migrate(&MIGRATOR).await?;
        let listener = billing_server::app::bind(config.listen_addr).await?;
        let metrics = Metrics::new();
        let ledger = Ledger::new(store::Store::new(db), clock).with_metrics(&metrics);
        let metrics_listener = billing_server::app::bind_metrics(config.metrics_addr).await?;
        Ok(Self {
            listener,
            ledger,
            config,
            metrics,
            metrics_listener,
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> Result<SocketAddr, std::io::Error> {
        self.listener.local_addr()
    }

    /// Where `/metrics` is served, if it is.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// The ledger (tests drive the sweeper through it).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Serves until `shutdown` resolves, then drains, stops the sweeper and
    /// closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let keys = Arc::new(self.config.api_keys.clone());
        let max = self.config.server.max_message_bytes;
        let service = LedgerServiceServer::new(grpc::LedgerGrpc::new(self.ledger.clone()))
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let routes = Routes::new(InterceptedService::new(service, AuthInterceptor::new(keys)));

        let (stop_sweeper, stop) = tokio::sync::watch::channel(false);
        let sweeper = tokio::spawn(sweeper::run(
            self.ledger.clone(),
            self.config.sweeper.clone(),
            stop,
        ));
        let served = serve(
            routes,
            SERVICE_NAME,
            self.listener,
            &self.config.server,
            &self.metrics,
            self.metrics_listener,
            shutdown,
        )
        .await;
        let _ = stop_sweeper.send(true);
        let _ = sweeper.await;
        self.ledger.store().db().close().await;
        served.map_err(AppError::from)
    }
}
