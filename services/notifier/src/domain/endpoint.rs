//! Webhook endpoints: what they receive, and the checks of their fields
//! that need no parsing library (the URL is parsed at the edge).

use std::collections::BTreeMap;

use billing_money::FieldViolation;
use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};

/// Most event types one endpoint lists.
pub const EVENTS_MAX: usize = 50;
/// Longest event type.
pub const EVENT_TYPE_CHARS_MAX: usize = 100;
/// Longest description.
pub const DESCRIPTION_CHARS_MAX: usize = 500;
/// Longest URL.
pub const URL_CHARS_MAX: usize = 2048;
/// How long a rotated-out secret keeps signing beside the new one.
pub const OLD_SECRET_GRACE: TimeDelta = TimeDelta::hours(24);
/// An endpoint whose deliveries all fail for this long is disabled.
pub const FAILING_DISABLE_AFTER: TimeDelta = TimeDelta::days(3);
/// The event type of SendTestWebhook.
pub const TEST_EVENT_TYPE: &str = "webhook_endpoint.test";
/// The notifier's own event when it disables a failing endpoint.
pub const ENDPOINT_DISABLED: &str = "webhook_endpoint.disabled";

/// An endpoint of an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// `we_…`
    pub id: String,
    /// Where deliveries go.
    pub url: String,
    /// Types it receives, or `["*"]`.
    pub enabled_events: Vec<String>,
    /// Free text.
    pub description: String,
    /// Free-form metadata.
    pub metadata: BTreeMap<String, String>,
    /// Why it is disabled, when it is.
    pub disabled_reason: Option<String>,
    /// Since when every delivery has failed.
    pub failing_since: Option<DateTime<Utc>>,
    /// Creation time: it receives events created from then on.
    pub created: DateTime<Utc>,
    /// Last change.
    pub updated: DateTime<Utc>,
}

impl Endpoint {
    /// Whether it receives events of `event_type`.
    pub fn receives(&self, event_type: &str) -> bool {
        self.enabled_events
            .iter()
            .any(|t| t == "*" || t == event_type)
    }

    /// Whether it is enabled.
    pub fn enabled(&self) -> bool {
        self.disabled_reason.is_none()
    }
}

/// Checks a list of event types (`field` names it).
pub fn check_events(events: &[String], field: &str, out: &mut Vec<FieldViolation>) {
    if events.is_empty() || events.len() > EVENTS_MAX {
        out.push(FieldViolation::new(
            field,
            format!("list 1 to {EVENTS_MAX} event types, or \"*\""),
        ));
    }
    for (i, event) in events.iter().enumerate() {
        let well_formed = event == "*"
            || (!event.is_empty()
                && event.len() <= EVENT_TYPE_CHARS_MAX
                && event.contains('.')
                && event
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b == b'_' || b == b'.'));
        if !well_formed {
            out.push(FieldViolation::new(
                format!("{field}[{i}]"),
                "must be an event type such as customer.credit_balance_depleted, or \"*\"",
            ));
        }
    }
}

/// Checks a description.
pub fn check_description(description: &str, out: &mut Vec<FieldViolation>) {
    if description.chars().count() > DESCRIPTION_CHARS_MAX {
        out.push(FieldViolation::new(
            "description",
            format!("at most {DESCRIPTION_CHARS_MAX} characters"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_lists_are_bounded_and_well_formed() {
        let mut out = Vec::new();
        check_events(
            &["*".into(), "invoice.paid".into()],
            "enabled_events",
            &mut out,
        );
        assert!(out.is_empty());
        check_events(&[], "enabled_events", &mut out);
        check_events(&["Invoice.Paid".into(), "paid".into()], "e", &mut out);
        let fields: Vec<&str> = out.iter().map(|v| v.field.as_str()).collect();
        assert_eq!(fields, ["enabled_events", "e[0]", "e[1]"]);
    }
}
