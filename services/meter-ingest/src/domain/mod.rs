//! The metering rules, free of I/O: meters, event validation and batch
//! dedupe, hourly bucketing, and folding buckets and edge events into windows.

pub mod event;
pub mod meter;
pub mod usage;
