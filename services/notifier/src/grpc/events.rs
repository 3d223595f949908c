//! The notifier's own feed: `webhook_endpoint.disabled` with the endpoint.

use billing_db::events::StoredEvent;
use billing_proto::events::v1::event;
use billing_server::events::EventData;

use crate::domain::endpoint::Endpoint;

/// Turns the notifier's stored event data into proto messages.
#[derive(Debug, Clone, Copy)]
pub struct NotifierEvents;

impl EventData for NotifierEvents {
    fn data(&self, event: &StoredEvent) -> Result<Option<event::Data>, String> {
        if !event.event_type.starts_with("webhook_endpoint.") {
            return Err(format!(
                "unknown notifier event type {:?}",
                event.event_type
            ));
        }
        let endpoint: Endpoint = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        Ok(Some(event::Data::WebhookEndpoint(
            super::convert::endpoint(&endpoint),
        )))
    }
}
