//! Start-up pieces every service's `App` shares.

use std::net::SocketAddr;

use tokio::net::TcpListener;

use crate::serve::ServeError;

/// Why a service could not start, or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Database connection or migration.
    #[error("database: {0}")]
    Db(#[from] billing_db::DbError),
    /// Binding the listener.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// Serving.
    #[error(transparent)]
    Serve(#[from] ServeError),
    /// A setting that only shows it is wrong at start-up.
    #[error("configuration: {0}")]
    Config(String),
}

/// Binds the service's listener; port 0 lets the OS pick (tests).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, AppError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| AppError::Bind { addr, source })
}

/// Binds the `/metrics` listener when an address is configured.
pub async fn bind_metrics(addr: Option<SocketAddr>) -> Result<Option<TcpListener>, AppError> {
    match addr {
        Some(addr) => bind(addr).await.map(Some),
        None => Ok(None),
    }
}
