//! The parts every billing gRPC server shares.
//!
//! Layout:
//! - [`alloc`]: the memory allocator of every binary that links this crate.
//! - [`auth`]: API keys (SHA-256 hashes from `BILLING_API_KEYS`), the
//!   interceptor that turns a bearer token into a [`auth::Principal`].
//! - [`handler`]: the one shape of a unary handler (caller, body,
//!   idempotency key → answer or status).
//! - [`host`]: the one host every service runs in (connect, migrate, bind,
//!   serve, background jobs, drain); a service declares only what differs.
//! - [`serve`]: runs a service's routes with health, reflection (v1 and
//!   v1alpha), message-size, concurrency and time limits, and a graceful,
//!   bounded drain on shutdown.
//! - [`leases`]: a replica's leases on its background work items.
//! - [`status`]: builders for `tonic::Status` with google.rpc details
//!   (BadRequest field violations, ErrorInfo reasons).
//! - [`ids`], [`page`], [`time`], [`clock`], [`fingerprint`]: prefixed ids,
//!   AIP-158 pagination, timestamp conversion, an injectable clock, and the
//!   request fingerprint used for idempotency.

pub mod alloc;
pub mod amount;
pub mod app;
pub mod auth;
pub mod balance;
pub mod clock;
pub mod config;
pub mod customers;
pub mod events;
pub mod fingerprint;
pub mod handler;
pub mod host;
pub mod idempotent;
pub mod ids;
pub mod leases;
pub mod metrics;
pub mod page;
pub mod peer;
pub mod serve;
pub mod status;
pub mod time;
pub mod unimplemented;
