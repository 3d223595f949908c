//! Invoicing: customers, metered prices, subscriptions, invoices, and the
//! exactly-once finalize saga (issue 4).
//!
//! Layout so far:
//! - [`domain::pricing`]: how a period's usage becomes an invoice line's
//!   amount (per-unit, graduated and volume tiers, `transform_quantity`),
//!   rounded once per line. No I/O.
//!
//! The gRPC service, storage and the saga are not built yet.

pub mod domain;
