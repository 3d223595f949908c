//! The one host every service runs in.
//!
//! A service declares only what differs ([`Service`]: its name, its
//! migrations, its state, its routes and its background jobs); [`Host`] does
//! the rest the same way for all of them: connect and migrate, bind, serve
//! health and reflection (listing only the services of that port), the auth
//! interceptor, limits, metrics and trace layers, run the jobs on the same
//! shutdown signal, drain, close the database.
//!
//! The pod binaries call [`main`]; `billing up` and the tests call
//! [`Host::build`] and [`Host::run_until`] with their own shutdown future.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use billing_db::{Db, Migrations};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use tonic::service::Routes;

use crate::app::AppError;
use crate::auth::AuthInterceptor;
use crate::clock::Clock;
use crate::config::Settings;
use crate::metrics::Metrics;
use crate::serve::serve;

/// A background loop: runs until the receiver turns `true`, then returns at
/// a safe point.
pub type Job = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The turned-on stop signal a [`Job`] watches.
pub type Stop = watch::Receiver<bool>;

/// A port's routes and the fully qualified names of the services in them
/// (health and reflection list exactly these).
pub type Served = (Routes, Vec<&'static str>);

/// What the host hands a service to build its state from.
#[derive(Debug)]
pub struct Parts {
    /// The connected, migrated database (the host closes it at the end).
    pub db: Db,
    /// The clock.
    pub clock: Clock,
    /// Where the service registers its business counters.
    pub metrics: Metrics,
}

/// What the routes of a port are built with.
#[derive(Debug, Clone)]
pub struct Serving {
    /// Authenticates every call; wrap each service in it.
    pub auth: AuthInterceptor,
    /// Turns true when shutdown begins (before the drain): long-lived
    /// streams end then, so the drain does not wait on them.
    pub draining: Stop,
}

/// What a service adds to the host.
pub trait Service: Sized + Send + Sync + 'static {
    /// Its whole configuration.
    type Config: Settings;
    /// What its handlers and jobs share (the use cases over store and clock).
    type State: Clone + Send + Sync + 'static;

    /// The binary's name, for logs (`credit-ledger`).
    const NAME: &'static str;
    /// Its embedded migrations, run at start-up.
    const MIGRATIONS: &'static Migrations;

    /// The clock a pod runs on (the system clock unless a test clock is configured).
    fn clock(_config: &Self::Config) -> Clock {
        Clock::system()
    }

    /// Start-up warnings about the configuration, logged by the pod binary.
    fn warnings(_config: &Self::Config) -> Vec<&'static str> {
        Vec::new()
    }

    /// Builds the state over a migrated database.
    fn state(config: &Self::Config, parts: Parts) -> Result<Self::State, AppError>;

    /// The gRPC routes of this port, each wrapped in `serving.auth`.
    fn routes(state: &Self::State, config: &Self::Config, serving: &Serving) -> Served;

    /// Background loops, started when serving starts and stopped after the drain.
    fn jobs(_state: &Self::State, _config: &Self::Config, _stop: &Stop) -> Vec<Job> {
        Vec::new()
    }
}

/// A ready-to-run service: database migrated, listeners bound.
pub struct Host<S: Service> {
    db: Db,
    listener: TcpListener,
    metrics_listener: Option<TcpListener>,
    metrics: Metrics,
    state: S::State,
    config: S::Config,
}

impl<S: Service> std::fmt::Debug for Host<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("service", &S::NAME)
            .field("listener", &self.listener)
            .finish_non_exhaustive()
    }
}

impl<S: Service> Host<S> {
    /// Connects, migrates and binds. With port 0 the OS picks a free port.
    pub async fn build(config: S::Config, clock: Clock) -> Result<Self, AppError> {
        Self::build_with(config, clock, None).await
    }

    /// Like [`Host::build`], serving on `listener`, already bound (its
    /// address is known before the service is built: tests whose services
    /// name each other), instead of binding the configured address.
    pub async fn build_on(
        config: S::Config,
        clock: Clock,
        listener: std::net::TcpListener,
    ) -> Result<Self, AppError> {
        Self::build_with(config, clock, Some(listener)).await
    }

    async fn build_with(
        config: S::Config,
        clock: Clock,
        listener: Option<std::net::TcpListener>,
    ) -> Result<Self, AppError> {
        let shared = config.service();
        let db = Db::connect(&shared.database_url, &shared.db).await?;
        match &shared.migration_url {
            // Straight to PostgreSQL, past a pooler (docs/operations.md).
            Some(url) => {
                let options = billing_db::DbOptions {
                    postgres_max_connections: 1,
                    ..billing_db::DbOptions::default()
                };
                let direct = Db::connect(url, &options).await?;
                let migrated = direct.migrate(S::MIGRATIONS).await;
                direct.close().await;
                migrated?;
            }
            None => db.migrate(S::MIGRATIONS).await?,
        }
        let listener = match listener {
            None => bind(shared.listen_addr).await?,
            Some(listener) => {
                let addr = listener.local_addr().unwrap_or(shared.listen_addr);
                listener
                    .set_nonblocking(true)
                    .and_then(|()| TcpListener::from_std(listener))
                    .map_err(|source| AppError::Bind { addr, source })?
            }
        };
        let metrics_listener = match shared.metrics_addr {
            Some(addr) => Some(bind(addr).await?),
            None => None,
        };
        let metrics = Metrics::new();
        let parts = Parts {
            db: db.clone(),
            clock,
            metrics: metrics.clone(),
        };
        let state = S::state(&config, parts)?;
        Ok(Self {
            db,
            listener,
            metrics_listener,
            metrics,
            state,
            config,
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

    /// The service's state (tests drive jobs and read the store through it).
    pub fn state(&self) -> &S::State {
        &self.state
    }

    /// Serves until `shutdown` resolves, then drains, stops the jobs at a
    /// safe point and closes the database.
    pub async fn run_until(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), AppError> {
        let shared = self.config.service();
        let (start_draining, draining) = watch::channel(false);
        let serving = Serving {
            auth: AuthInterceptor::new(Arc::new(shared.api_keys.clone())),
            draining,
        };
        let (routes, names) = S::routes(&self.state, &self.config, &serving);
        // Each open event watch holds one more receiver than this.
        let idle_receivers = start_draining.receiver_count();
        if let Ok(addr) = self.listener.local_addr() {
            tracing::info!(service = S::NAME, %addr, services = ?names, "serving");
        }
        let (stop_jobs, stop) = watch::channel(false);
        let jobs: Vec<_> = S::jobs(&self.state, &self.config, &stop)
            .into_iter()
            .map(tokio::spawn)
            .collect();
        let served = serve(
            routes,
            &names,
            self.listener,
            &shared.server,
            &self.metrics,
            self.metrics_listener,
            async move {
                shutdown.await;
                // Nobody may be listening: no stream is open.
                let _ = start_draining.send(true);
                // Open event watches end with UNAVAILABLE as soon as
                // draining starts. Let those last frames reach their
                // clients before the server sends GOAWAY and closes
                // connections: a socket closed with the client's frames
                // still unread is reset, and the client would see a broken
                // pipe instead of "resume from your last cursor".
                if start_draining.receiver_count() > idle_receivers {
                    tokio::time::sleep(STREAMS_END_GRACE).await;
                }
            },
        )
        .await;
        // Nobody may be listening any more: that is fine, the jobs are stopping.
        let _ = stop_jobs.send(true);
        for job in jobs {
            if let Err(error) = job.await {
                tracing::error!(service = S::NAME, %error, "a background job panicked");
            }
        }
        self.db.close().await;
        served.map_err(AppError::from)
    }
}

/// How long open streams get to deliver their final status before the
/// server stops (see `run_until`).
const STREAMS_END_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// Binds a listener; port 0 lets the OS pick (tests).
async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// A pod binary's whole life: telemetry, configuration from the environment,
/// build, serve until SIGTERM or Ctrl-C, drain, flush telemetry.
pub async fn main<S: Service>() -> Result<(), AppError> {
    let telemetry = billing_telemetry::init(S::NAME);
    let result = run_pod::<S>().await;
    telemetry.shutdown().await;
    result
}

async fn run_pod<S: Service>() -> Result<(), AppError> {
    let config = S::Config::from_env().map_err(|e| AppError::Config(e.to_string()))?;
    if config.service().api_keys.is_empty() {
        tracing::warn!("BILLING_API_KEYS is empty: every RPC will be UNAUTHENTICATED");
    }
    for warning in S::warnings(&config) {
        tracing::warn!("{warning}");
    }
    let clock = S::clock(&config);
    let host = Host::<S>::build(config, clock).await?;
    if let Some(addr) = host.metrics_addr() {
        println!("{} metrics at http://{addr}/metrics", S::NAME);
    }
    println!("{} listening on {}", S::NAME, host.local_addr()?);
    host.run_until(crate::serve::shutdown_signal()).await
}
