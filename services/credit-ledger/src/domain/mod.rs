//! The ledger's rules, free of I/O: grants and their derived state, the
//! order and eligibility of grants for an invoice line, the planning of an
//! application, balances, and the invariants the audit checks.
//!
//! Everything here is tested without a database.

pub mod alert;
pub mod apply;
pub mod balance;
pub mod error;
pub mod grant;
pub mod hold;
pub mod invariants;
pub mod report;
pub mod rollover;
pub mod transaction;
pub mod validate;
