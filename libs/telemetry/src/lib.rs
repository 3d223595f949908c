//! Logging setup shared by the binaries.
//!
//! `RUST_LOG` filters (default `info`). OpenTelemetry export and W3C trace
//! context propagation are added by the operability work (issue 5); the
//! `tracing` spans the services already emit are what it will export.

use tracing_subscriber::EnvFilter;

/// Installs the global subscriber. Safe to call more than once (later calls
/// are no-ops), so tests and `billing up` can both call it.
pub fn init() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .try_init();
}
