//! Invoicing's event feed: its stored customers, subscriptions and
//! invoices as their proto messages.

use billing_db::events::StoredEvent;
use billing_proto::events::v1::event;
use billing_server::events::EventData;

use crate::domain::customer::Customer;
use crate::domain::invoice::Invoice;
use crate::domain::purchase::CreditPurchase;
use crate::domain::subscription::Subscription;
use crate::domain::top_up::TopUpEvent;

/// Turns invoicing's stored event data into proto messages.
#[derive(Debug, Clone, Copy)]
pub struct InvoicingEvents;

fn parse<T: serde::de::DeserializeOwned>(data: &str) -> Result<T, String> {
    serde_json::from_str(data).map_err(|e| e.to_string())
}

impl EventData for InvoicingEvents {
    fn data(&self, event: &StoredEvent) -> Result<Option<event::Data>, String> {
        // Invoice events written before the shared feed carry no object
        // (migration 0007).
        if event.data.is_empty() {
            return Ok(None);
        }
        if event.event_type == crate::domain::realtime::USAGE_EXCEEDED_THRESHOLD {
            return Ok(Some(event::Data::UsageThresholdCrossing(
                super::realtime::crossing(&parse(&event.data)?),
            )));
        }
        let kind = event.event_type.split('.').next().unwrap_or_default();
        Ok(Some(match kind {
            "customer" => {
                event::Data::Customer(super::convert::customer(&parse::<Customer>(&event.data)?))
            }
            "subscription" => {
                event::Data::Subscription(super::convert::subscription(&parse::<Subscription>(
                    &event.data,
                )?))
            }
            "credit_purchase" => {
                event::Data::CreditPurchase(super::purchases::purchase(&parse::<CreditPurchase>(
                    &event.data,
                )?))
            }
            "auto_top_up" => {
                event::Data::AutoTopUp(super::top_ups::top_up_event(&parse::<TopUpEvent>(
                    &event.data,
                )?))
            }
            "invoice" => event::Data::Invoice(
                super::convert::invoice(&parse::<Invoice>(&event.data)?)
                    .map_err(|e| e.to_string())?,
            ),
            _ => {
                return Err(format!(
                    "unknown invoicing event type {:?}",
                    event.event_type
                ));
            }
        }))
    }
}
