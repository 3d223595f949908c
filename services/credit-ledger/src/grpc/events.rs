//! The ledger's event feed: its stored grants as `CreditGrant` messages,
//! balance alert crossings as `CreditBalanceAlertEvent`s.

use billing_db::events::StoredEvent;
use billing_proto::events::v1::event;
use billing_server::events::EventData;
use billing_server::time::from_micros;

use crate::domain::alert::AlertEvent;
use crate::domain::grant::Grant;

/// Turns the ledger's stored event data into proto messages.
#[derive(Debug, Clone, Copy)]
pub struct LedgerEvents;

impl EventData for LedgerEvents {
    fn data(&self, event: &StoredEvent) -> Result<Option<event::Data>, String> {
        if event.event_type.starts_with("customer.credit_balance_") {
            let alert: AlertEvent = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
            return Ok(Some(event::Data::CreditBalanceAlert(
                super::alerts::alert_event(&alert),
            )));
        }
        if !event.event_type.starts_with("credit_balance.") {
            return Err(format!("unknown ledger event type {:?}", event.event_type));
        }
        let grant: Grant = serde_json::from_str(&event.data).map_err(|e| e.to_string())?;
        // The grant's state as of the event, not as of the read.
        let at = from_micros(event.created_us);
        Ok(Some(event::Data::CreditGrant(super::convert::grant(
            &grant, at,
        ))))
    }
}
