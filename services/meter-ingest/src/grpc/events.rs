//! meter-ingest's event feed: its stored meters as `Meter` messages.

use billing_db::events::StoredEvent;
use billing_proto::events::v1::event;
use billing_server::events::EventData;

use crate::domain::meter::Meter;

/// Turns meter-ingest's stored event data into proto messages.
#[derive(Debug, Clone, Copy)]
pub struct MeterEvents;

impl EventData for MeterEvents {
    fn data(&self, event: &StoredEvent) -> Result<Option<event::Data>, String> {
        if !event.event_type.starts_with("meter.") {
            return Err(format!("unknown meter event type {:?}", event.event_type));
        }
        let meter: Meter = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        Ok(Some(event::Data::Meter(super::convert::meter(&meter))))
    }
}
