//! Usage events: validation, in-batch dedupe, outcomes.

use std::collections::{BTreeMap, HashMap, HashSet};

use billing_money::Decimal;
use chrono::{DateTime, TimeDelta, Utc};

use super::meter::{Aggregation, Meter};

/// Most events in one IngestEvents call or one streamed batch.
pub const BATCH_MAX: usize = 1_000;
/// Longest identifier.
pub const IDENTIFIER_CHARS_MAX: usize = 100;
/// Longest customer id taken from a payload.
pub const CUSTOMER_CHARS_MAX: usize = 100;
/// Most payload entries.
pub const PAYLOAD_KEYS_MAX: usize = 50;
/// Largest magnitude of one value: keeps every aggregate within rust_decimal's
/// 28 significant digits for any realistic number of events.
pub const VALUE_ABS_MAX: i64 = 1_000_000_000_000_000;
/// Most decimal places of one value.
pub const VALUE_SCALE_MAX: u32 = 12;

/// Oldest accepted timestamp, relative to now.
pub fn max_age() -> TimeDelta {
    TimeDelta::days(35)
}

/// Furthest-ahead accepted timestamp, relative to now.
pub fn max_ahead() -> TimeDelta {
    TimeDelta::minutes(5)
}

/// An event as received (the timestamp already converted, or absent/invalid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventInput {
    /// The meter's event name.
    pub event_name: String,
    /// Client idempotency key.
    pub identifier: String,
    /// None when missing or out of the representable range.
    pub timestamp: Option<DateTime<Utc>>,
    /// Payload.
    pub payload: BTreeMap<String, String>,
}

/// A valid event, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidEvent {
    /// Identifier.
    pub identifier: String,
    /// The meter it feeds.
    pub meter_id: String,
    /// The customer from the payload.
    pub customer: String,
    /// The value (1 for count meters without one).
    pub value: Decimal,
    /// When.
    pub timestamp: DateTime<Utc>,
    /// Payload, kept for audit.
    pub payload: BTreeMap<String, String>,
}

/// Why one event was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// Field path within the event (`payload.value`).
    pub field: String,
    /// What is wrong.
    pub reason: String,
}

fn reject(field: impl Into<String>, reason: impl Into<String>) -> Rejection {
    Rejection {
        field: field.into(),
        reason: reason.into(),
    }
}

/// What happened to one event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored and counted.
    Accepted,
    /// Already accepted before (or earlier in the same batch).
    Duplicate,
    /// Refused.
    Rejected(Rejection),
}

/// Longest payload value, in bytes.
pub const PAYLOAD_VALUE_BYTES_MAX: usize = 1024;

/// Refuses NUL and other control characters (tab, CR and LF allowed) and
/// event names or keys longer than 4 KiB.
fn check_text(text: &str, field: &str) -> Result<(), Rejection> {
    if text.len() > 4096 {
        return Err(reject(field, "is longer than 4096 bytes"));
    }
    if text
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\t' | '\n' | '\r'))
    {
        return Err(reject(
            field,
            "contains a NUL or other control character (only tab, CR and LF are allowed)",
        ));
    }
    Ok(())
}

/// Whether `name` could be an active meter's event name (1 to 100
/// characters, no control character): only such names are looked up.
pub fn could_be_event_name(name: &str) -> bool {
    !name.is_empty()
        && name.chars().count() <= super::meter::EVENT_NAME_CHARS_MAX
        && check_text(name, "event_name").is_ok()
}

/// Checks one event against the account's active meters (by event name).
pub fn check(
    input: &EventInput,
    meters: &HashMap<String, Meter>,
    now: DateTime<Utc>,
) -> Result<ValidEvent, Rejection> {
    if input.identifier.is_empty() || input.identifier.chars().count() > IDENTIFIER_CHARS_MAX {
        return Err(reject(
            "identifier",
            format!("must be 1 to {IDENTIFIER_CHARS_MAX} characters"),
        ));
    }
    // The whole request's strings are checked before any handler, except an
    // ingest batch's events: a bad event is rejected alone (as here), never
    // its siblings. PostgreSQL cannot store NUL; both backends refuse alike.
    check_text(&input.identifier, "identifier")?;
    check_text(&input.event_name, "event_name")?;
    let meter = meters
        .get(&input.event_name)
        .ok_or_else(|| reject("event_name", "no active meter has this event_name"))?;
    let timestamp = input
        .timestamp
        .ok_or_else(|| reject("timestamp", "is required"))?;
    if timestamp < now - max_age() {
        return Err(reject("timestamp", "is more than 35 days in the past"));
    }
    if timestamp > now + max_ahead() {
        return Err(reject("timestamp", "is more than 5 minutes in the future"));
    }
    if input.payload.len() > PAYLOAD_KEYS_MAX {
        return Err(reject(
            "payload",
            format!("at most {PAYLOAD_KEYS_MAX} entries"),
        ));
    }
    for (key, value) in &input.payload {
        check_text(key, "payload")?;
        if value.len() > PAYLOAD_VALUE_BYTES_MAX {
            return Err(reject(
                "payload",
                format!("values are at most {PAYLOAD_VALUE_BYTES_MAX} bytes"),
            ));
        }
        check_text(value, "payload")?;
    }
    let customer_field = format!("payload.{}", meter.customer_key);
    let customer = input
        .payload
        .get(&meter.customer_key)
        .filter(|c| !c.is_empty())
        .ok_or_else(|| reject(&customer_field, "is required: the customer id"))?;
    if customer.chars().count() > CUSTOMER_CHARS_MAX || customer.chars().any(char::is_whitespace) {
        return Err(reject(
            customer_field,
            format!("must be at most {CUSTOMER_CHARS_MAX} characters without spaces"),
        ));
    }
    let value_field = format!("payload.{}", meter.value_key);
    let value = match (input.payload.get(&meter.value_key), meter.aggregation) {
        (None, Aggregation::Count) => Decimal::ONE,
        (None, _) => return Err(reject(value_field, "is required: a decimal number")),
        (Some(text), _) => {
            let value = billing_money::parse_decimal(text)
                .map_err(|_| reject(&value_field, "must be a decimal number such as \"12.5\""))?;
            if value.abs() >= Decimal::from(VALUE_ABS_MAX)
                || value.normalize().scale() > VALUE_SCALE_MAX
            {
                return Err(reject(
                    value_field,
                    format!(
                        "must be below 10^15 in magnitude with at most {VALUE_SCALE_MAX} decimal places"
                    ),
                ));
            }
            value.normalize()
        }
    };
    Ok(ValidEvent {
        identifier: input.identifier.clone(),
        meter_id: meter.id.clone(),
        customer: customer.clone(),
        value,
        timestamp,
        payload: input.payload.clone(),
    })
}

/// A batch after validation: the events to store, and the outcome of every
/// event decided without the database (rejections, in-batch duplicates).
#[derive(Debug, Default)]
pub struct CheckedBatch {
    /// Valid, first occurrences, with their index in the batch.
    pub valid: Vec<(usize, ValidEvent)>,
    /// Known outcomes by index; the valid ones are filled in after storing.
    pub outcomes: Vec<Option<Outcome>>,
}

/// Checks a batch: a bad event never affects its siblings; a repeated
/// identifier within the batch is a duplicate of its first valid occurrence.
pub fn check_batch(
    inputs: &[EventInput],
    meters: &HashMap<String, Meter>,
    now: DateTime<Utc>,
) -> CheckedBatch {
    let mut batch = CheckedBatch {
        valid: Vec::with_capacity(inputs.len()),
        outcomes: vec![None; inputs.len()],
    };
    let mut seen: HashSet<&str> = HashSet::with_capacity(inputs.len());
    for (index, input) in inputs.iter().enumerate() {
        match check(input, meters, now) {
            Err(rejection) => batch.outcomes[index] = Some(Outcome::Rejected(rejection)),
            Ok(_) if seen.contains(input.identifier.as_str()) => {
                batch.outcomes[index] = Some(Outcome::Duplicate)
            }
            Ok(event) => {
                seen.insert(input.identifier.as_str());
                batch.valid.push((index, event));
            }
        }
    }
    batch
}
