//! Invoicing rules, free of I/O.

pub mod pricing;
