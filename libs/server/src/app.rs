//! Start-up pieces every service's `App` shares.

use std::net::SocketAddr;

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
    /// Reading the bound address.
    #[error("listener: {0}")]
    Io(#[from] std::io::Error),
    /// A setting that only shows it is wrong at start-up.
    #[error("configuration: {0}")]
    Config(String),
}
