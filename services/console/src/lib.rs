//! The operator console: seed 000's Dashboard flows as server-rendered HTML
//! (no JavaScript needed, none shipped), a client of the services' gRPC APIs
//! with the signed-in account's key. It keeps no state of its own beyond
//! in-memory sessions (DESIGN.md §14).
//!
//! Layout:
//! - [`config`]: listen address, upstream addresses, session limits.
//! - [`app`]: the routes, security headers, serving until shutdown.
//! - [`session`]: sessions (the key stays server-side), cookies, CSRF tokens.
//! - [`upstream`]: the ledger, invoicing and notifier clients.
//! - [`pages`]: one module per page, over a shared [`pages::layout`].
//! - [`form`]: form fields, and the services' field errors mapped onto them.
//! - [`format`], [`chart`]: how amounts and times read; the burn-down SVG.
//! - [`error`]: the one place a failure becomes a response.

pub mod app;
pub mod chart;
pub mod config;
pub mod error;
pub mod form;
pub mod format;
pub mod pages;
pub mod session;
pub mod upstream;

pub use app::Console;
pub use config::Config;
