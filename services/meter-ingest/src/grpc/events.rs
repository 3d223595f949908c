//! meter-ingest's event feed: its stored meters as `Meter` messages, and
//! unattributed usage as `UnattributedUsage`.

use billing_db::events::StoredEvent;
use billing_proto::events::v1::event;
use billing_server::events::EventData;

use billing_server::time::{from_micros, to_proto};

use crate::domain::meter::Meter;
use crate::store::{DAY_US, USAGE_UNATTRIBUTED, UnattributedUsage};

/// Turns meter-ingest's stored event data into proto messages.
#[derive(Debug, Clone, Copy)]
pub struct MeterEvents;

impl EventData for MeterEvents {
    fn data(&self, event: &StoredEvent) -> Result<Option<event::Data>, String> {
        if event.event_type == USAGE_UNATTRIBUTED {
            let usage: UnattributedUsage =
                serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            return Ok(Some(event::Data::UnattributedUsage(
                billing_proto::meter::v1::UnattributedUsage {
                    meter: usage.meter,
                    customer: usage.customer,
                    day: Some(to_proto(from_micros(usage.day.saturating_mul(DAY_US)))),
                    last_usage_hour: Some(to_proto(from_micros(usage.last_usage_hour_us))),
                },
            )));
        }
        if !event.event_type.starts_with("meter.") {
            return Err(format!("unknown meter event type {:?}", event.event_type));
        }
        let meter: Meter = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        Ok(Some(event::Data::Meter(super::convert::meter(&meter))))
    }
}
