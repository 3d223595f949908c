//! `google.protobuf.Timestamp` ⇄ `DateTime<Utc>` at microsecond precision.

use chrono::{DateTime, Utc};

use crate::status::FieldViolation;

/// The earliest time a request may carry: 2000-01-01T00:00:00Z.
pub const EARLIEST_SECONDS: i64 = 946_684_800;
/// The first time a request may not carry: 2100-01-01T00:00:00Z.
pub const END_SECONDS: i64 = 4_102_444_800;

/// Converts a request timestamp; sub-microsecond digits are dropped (storage
/// keeps microseconds). Every date the business uses lies in 2000–2099;
/// anything else names the field. (A subscription starting in year 9999 once
/// had a period end no Timestamp can hold, and broke every JSON client.)
pub fn from_proto(
    timestamp: &prost_types::Timestamp,
    field: &str,
) -> Result<DateTime<Utc>, FieldViolation> {
    let nanos = u32::try_from(timestamp.nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or_else(|| FieldViolation::new(field, "nanos must be between 0 and 999,999,999"))?;
    DateTime::from_timestamp(timestamp.seconds, nanos - nanos % 1_000)
        .filter(|t| (EARLIEST_SECONDS..END_SECONDS).contains(&t.timestamp()))
        .ok_or_else(|| FieldViolation::new(field, "must be in the years 2000 to 2099 (UTC)"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_years_2000_to_2099_are_accepted() {
        let at = |seconds| from_proto(&prost_types::Timestamp { seconds, nanos: 0 }, "start_time");
        assert!(at(EARLIEST_SECONDS).is_ok());
        assert!(at(END_SECONDS - 1).is_ok());
        assert_eq!(at(EARLIEST_SECONDS - 1).unwrap_err().field, "start_time");
        assert!(at(END_SECONDS).is_err());
        assert!(at(253_402_300_799).is_err());
        assert!(at(i64::MIN).is_err());
        assert_eq!(
            DateTime::from_timestamp(EARLIEST_SECONDS, 0)
                .unwrap()
                .to_rfc3339(),
            "2000-01-01T00:00:00+00:00"
        );
        assert_eq!(
            DateTime::from_timestamp(END_SECONDS, 0)
                .unwrap()
                .to_rfc3339(),
            "2100-01-01T00:00:00+00:00"
        );
    }
}
