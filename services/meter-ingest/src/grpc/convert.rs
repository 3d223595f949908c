//! Proto ⇄ domain conversions for the meter service.

use billing_money::FieldViolation;
use billing_proto::meter::v1 as pb;
use billing_server::time::{from_proto, to_proto};

use crate::domain::event::{EventInput, Outcome};
use crate::domain::meter::{
    Aggregation, DEFAULT_CUSTOMER_KEY, DEFAULT_VALUE_KEY, DISPLAY_NAME_CHARS_MAX,
    EVENT_NAME_CHARS_MAX, Meter, PAYLOAD_KEY_CHARS_MAX,
};
use crate::domain::usage::{Grouping, Window};
use crate::ops::{NewMeter, Usage};

fn check_text(value: &str, field: &str, max: usize, out: &mut Vec<FieldViolation>) {
    if value.trim().is_empty() {
        out.push(FieldViolation::new(field, "is required"));
    } else if value.chars().count() > max {
        out.push(FieldViolation::new(
            field,
            format!("must be at most {max} characters"),
        ));
    }
}

/// A display name (UpdateMeter).
pub fn display_name(value: &str) -> Result<String, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_text(value, "display_name", DISPLAY_NAME_CHARS_MAX, &mut out);
    if out.is_empty() {
        Ok(value.to_owned())
    } else {
        Err(out)
    }
}

/// CreateMeter's fields.
pub fn new_meter(request: &pb::CreateMeterRequest) -> Result<NewMeter, Vec<FieldViolation>> {
    let mut out = Vec::new();
    check_text(
        &request.event_name,
        "event_name",
        EVENT_NAME_CHARS_MAX,
        &mut out,
    );
    if request.event_name.chars().any(char::is_whitespace) {
        out.push(FieldViolation::new("event_name", "must not contain spaces"));
    }
    check_text(
        &request.display_name,
        "display_name",
        DISPLAY_NAME_CHARS_MAX,
        &mut out,
    );
    let aggregation = match pb::Aggregation::try_from(request.aggregation) {
        Ok(pb::Aggregation::Count) => Some(Aggregation::Count),
        Ok(pb::Aggregation::Sum) => Some(Aggregation::Sum),
        Ok(pb::Aggregation::Max) => Some(Aggregation::Max),
        Ok(pb::Aggregation::Last) => Some(Aggregation::Last),
        _ => {
            out.push(FieldViolation::new(
                "aggregation",
                "must be COUNT, SUM, MAX or LAST",
            ));
            None
        }
    };
    let key = |given: Option<&str>, default: &str, field: &str, out: &mut Vec<FieldViolation>| {
        let key = given
            .filter(|k| !k.is_empty())
            .unwrap_or(default)
            .to_owned();
        if key.chars().count() > PAYLOAD_KEY_CHARS_MAX {
            out.push(FieldViolation::new(
                field,
                format!("must be at most {PAYLOAD_KEY_CHARS_MAX} characters"),
            ));
        }
        key
    };
    let customer_key = key(
        request
            .customer_mapping
            .as_ref()
            .map(|m| m.event_payload_key.as_str()),
        DEFAULT_CUSTOMER_KEY,
        "customer_mapping.event_payload_key",
        &mut out,
    );
    let value_key = key(
        request
            .value_settings
            .as_ref()
            .map(|v| v.event_payload_key.as_str()),
        DEFAULT_VALUE_KEY,
        "value_settings.event_payload_key",
        &mut out,
    );
    if customer_key == value_key {
        out.push(FieldViolation::new(
            "value_settings.event_payload_key",
            "must differ from the customer key",
        ));
    }
    match aggregation {
        Some(aggregation) if out.is_empty() => Ok(NewMeter {
            event_name: request.event_name.clone(),
            display_name: request.display_name.clone(),
            aggregation,
            customer_key,
            value_key,
        }),
        _ => Err(out),
    }
}

/// A meter for a response.
pub fn meter(meter: &Meter) -> pb::Meter {
    pb::Meter {
        id: meter.id.clone(),
        event_name: meter.event_name.clone(),
        display_name: meter.display_name.clone(),
        aggregation: aggregation(meter.aggregation).into(),
        customer_mapping: Some(pb::CustomerMapping {
            event_payload_key: meter.customer_key.clone(),
        }),
        value_settings: Some(pb::ValueSettings {
            event_payload_key: meter.value_key.clone(),
        }),
        status: if meter.active {
            pb::MeterStatus::Active
        } else {
            pb::MeterStatus::Inactive
        }
        .into(),
        created: Some(to_proto(meter.created)),
        updated: Some(to_proto(meter.updated)),
    }
}

fn aggregation(aggregation: Aggregation) -> pb::Aggregation {
    match aggregation {
        Aggregation::Count => pb::Aggregation::Count,
        Aggregation::Sum => pb::Aggregation::Sum,
        Aggregation::Max => pb::Aggregation::Max,
        Aggregation::Last => pb::Aggregation::Last,
    }
}

/// Events of a batch; an unusable timestamp becomes a per-event rejection later.
pub fn events(events: Vec<pb::MeterEvent>) -> Vec<EventInput> {
    events
        .into_iter()
        .map(|e| EventInput {
            timestamp: e
                .timestamp
                .as_ref()
                .and_then(|t| from_proto(t, "timestamp").ok()),
            event_name: e.event_name,
            identifier: e.identifier,
            payload: e.payload,
        })
        .collect()
}

/// Per-event results.
pub fn results(inputs: &[EventInput], outcomes: &[Outcome]) -> Vec<pb::EventResult> {
    inputs
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (input, outcome))| {
            let (code, reason, field) = match outcome {
                Outcome::Accepted => (pb::EventOutcome::Accepted, String::new(), String::new()),
                Outcome::Duplicate => (pb::EventOutcome::Duplicate, String::new(), String::new()),
                Outcome::Rejected(r) => (
                    pb::EventOutcome::Rejected,
                    r.reason.clone(),
                    r.field.clone(),
                ),
            };
            pb::EventResult {
                index: i32::try_from(index).unwrap_or(i32::MAX),
                identifier: input.identifier.clone(),
                outcome: code.into(),
                reason,
                field,
            }
        })
        .collect()
}

/// (accepted, duplicate, rejected) counts.
pub fn counts(outcomes: &[Outcome]) -> (i32, i32, i32) {
    let count = |f: fn(&Outcome) -> bool| {
        i32::try_from(outcomes.iter().filter(|o| f(o)).count()).unwrap_or(i32::MAX)
    };
    (
        count(|o| matches!(o, Outcome::Accepted)),
        count(|o| matches!(o, Outcome::Duplicate)),
        count(|o| matches!(o, Outcome::Rejected(_))),
    )
}

/// GetUsage's grouping.
pub fn grouping(value: i32) -> Result<Grouping, Vec<FieldViolation>> {
    match pb::GroupingWindow::try_from(value) {
        Ok(pb::GroupingWindow::Unspecified) => Ok(Grouping::None),
        Ok(pb::GroupingWindow::Hour) => Ok(Grouping::Hour),
        Ok(pb::GroupingWindow::Day) => Ok(Grouping::Day),
        Err(_) => Err(vec![FieldViolation::new(
            "grouping_window",
            "must be HOUR, DAY or unset",
        )]),
    }
}

fn window(window: &Window, aggregation: Aggregation) -> pb::UsageWindow {
    pb::UsageWindow {
        start_time: Some(to_proto(window.start)),
        end_time: Some(to_proto(window.end)),
        value: window.aggregate.value(aggregation).to_string(),
        event_count: window.aggregate.count,
    }
}

/// GetUsage's response.
pub fn usage(usage: &Usage) -> pb::GetUsageResponse {
    pb::GetUsageResponse {
        aggregation: aggregation(usage.aggregation).into(),
        total: Some(window(&usage.total, usage.aggregation)),
        windows: usage
            .windows
            .iter()
            .map(|w| window(w, usage.aggregation))
            .collect(),
    }
}
