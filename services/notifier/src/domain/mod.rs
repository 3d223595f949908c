//! The notifier's rules, free of I/O: endpoints and their checks, event
//! type matching, the retry schedule, and which addresses a delivery may
//! reach.

pub mod address;
pub mod endpoint;
pub mod schedule;
