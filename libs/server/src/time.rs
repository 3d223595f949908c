//! `google.protobuf.Timestamp` ⇄ `DateTime<Utc>` at microsecond precision.

use chrono::{DateTime, Utc};

use crate::status::FieldViolation;

/// Converts a request timestamp; sub-microsecond digits are dropped (storage
/// keeps microseconds) and out-of-range values name the field.
pub fn from_proto(
    timestamp: &prost_types::Timestamp,
    field: &str,
) -> Result<DateTime<Utc>, FieldViolation> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldViolation::new(field, "nanos must be between 0 and 999,999,999"))?;
    DateTime::from_timestamp(timestamp.seconds, nanos - nanos % 1_000)
        .filter(|t| (0..=253_402_300_799).contains(&t.timestamp()))
        .ok_or_else(|| FieldViolation::new(field, "must be between 1970 and 9999"))
}

/// Converts for a response.
pub fn to_proto(time: DateTime<Utc>) -> prost_types::Timestamp {
    prost_types::Timestamp {
        seconds: time.timestamp(),
        nanos: i32::try_from(time.timestamp_subsec_nanos()).unwrap_or(0),
    }
}

/// Microseconds since the epoch, the storage form.
pub fn to_micros(time: DateTime<Utc>) -> i64 {
    time.timestamp_micros()
}

/// From the storage form. Stored values were written by [`to_micros`], so
/// they are always in range; an impossible value maps to the epoch.
pub fn from_micros(micros: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(micros).unwrap_or_default()
}
