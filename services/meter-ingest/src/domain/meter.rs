//! Meters.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Longest event name.
pub const EVENT_NAME_CHARS_MAX: usize = 100;
/// Longest display name.
pub const DISPLAY_NAME_CHARS_MAX: usize = 250;
/// Longest payload key a meter may name.
pub const PAYLOAD_KEY_CHARS_MAX: usize = 100;
/// Default payload key of the customer.
pub const DEFAULT_CUSTOMER_KEY: &str = "customer";
/// Default payload key of the value.
pub const DEFAULT_VALUE_KEY: &str = "value";

/// How a meter aggregates values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Aggregation {
    /// Number of events.
    Count,
    /// Sum of values.
    Sum,
    /// Largest value.
    Max,
    /// Latest value (by timestamp, then identifier).
    Last,
}

impl Aggregation {
    /// Storage form.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Count => "count",
            Self::Sum => "sum",
            Self::Max => "max",
            Self::Last => "last",
        }
    }

    /// From the storage form.
    pub fn parse(text: &str) -> Option<Self> {
        [Self::Count, Self::Sum, Self::Max, Self::Last]
            .into_iter()
            .find(|a| a.as_str() == text)
    }
}

/// A meter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meter {
    /// `mtr_…`
    pub id: String,
    /// Events with this name feed it.
    pub event_name: String,
    /// Display name.
    pub display_name: String,
    /// Aggregation.
    pub aggregation: Aggregation,
    /// Payload key of the customer.
    pub customer_key: String,
    /// Payload key of the value.
    pub value_key: String,
    /// Accepts events.
    pub active: bool,
    /// Created.
    pub created: DateTime<Utc>,
    /// Last changed.
    pub updated: DateTime<Utc>,
}
