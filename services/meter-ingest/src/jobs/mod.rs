//! meter-ingest's background work.

pub mod attribution;
