//! Invoicing rules, free of I/O.

pub mod allocation;
pub mod customer;
pub mod invoice;
pub mod price;
pub mod pricing;
pub mod purchase;
pub mod realtime;
pub mod subscription;
pub mod top_up;
