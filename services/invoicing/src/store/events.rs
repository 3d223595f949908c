//! Invoicing's events (DESIGN.md §9): written to the shared `events` table
//! (`billing_db::events`) in the change's own transaction, with the object
//! after the change as data; `ListInvoiceEvents` and `EventService` read
//! them back.

use billing_db::events::{self, Cursor, NewEvent, Outbox};
use billing_server::page::PageRequest;
use billing_server::status::Refusal;
use billing_server::time::from_micros;

use super::Store;
use crate::domain::invoice::{Invoice, InvoiceEvent};
use crate::error::InvoicingError;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this invoice's.
    pub invoice: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
}

/// Adds one event about `subject` with `data` (the object after the
/// change, in its stored serde form) to the transaction's outbox.
pub(super) fn push(
    outbox: &mut Outbox,
    (event_type, subject): (&str, &str),
    data: &impl serde::Serialize,
) -> Result<(), InvoicingError> {
    outbox.push(
        billing_server::ids::new_id("evt"),
        NewEvent {
            event_type,
            subject,
            data: serde_json::to_string(data)?,
        },
    );
    Ok(())
}

/// Adds `event_type` about the invoice `id` as it stands in `tx` (after the
/// change the transaction made).
pub(super) async fn push_invoice(
    tx: &mut billing_db::Tx,
    outbox: &mut Outbox,
    account: &str,
    (event_type, id): (&str, &str),
) -> Result<(), InvoicingError> {
    let invoice: Invoice = super::invoices::load(tx, account, id)
        .await?
        .ok_or_else(|| InvoicingError::Corrupt(format!("invoice {id} vanished in its change")))?;
    push(outbox, (event_type, id), &invoice)
}

/// Writes a transaction's one event: the outbox must be written once per
/// transaction (its events are numbered within it).
pub(super) async fn write_one(
    tx: &mut billing_db::Tx,
    backend: billing_db::Backend,
    account: &str,
    event: (&str, &str),
    data: &impl serde::Serialize,
    now_us: i64,
) -> Result<(), InvoicingError> {
    let mut outbox = Outbox::new();
    push(&mut outbox, event, data)?;
    outbox.write(tx, backend, account, now_us).await?;
    Ok(())
}

impl Store {
    /// A page of the account's invoice events, newest first.
    pub async fn list_events(
        &self,
        account: &str,
        filter: &EventFilter,
        page: &PageRequest,
    ) -> Result<(Vec<InvoiceEvent>, String), InvoicingError> {
        let before = match &page.before_id {
            Some(token) => Some(Cursor::parse(token).ok_or_else(|| {
                Refusal::invalid("page_token", "is not a token returned by this list")
            })?),
            None => None,
        };
        let types: Vec<String> = match &filter.event_type {
            Some(t) => vec![t.clone()],
            // Only the invoice events: the feed also holds customers' and
            // subscriptions'.
            None => crate::domain::invoice::EVENT_TYPES
                .iter()
                .map(|t| (*t).to_owned())
                .collect(),
        };
        let limit = page.fetch_limit();
        let rows = match &filter.invoice {
            Some(invoice) => {
                events::newest_about(&self.db, account, invoice, before, &types, limit).await?
            }
            None => {
                events::newest(&self.db, account, before, (&types, events::ALL_TIME), limit).await?
            }
        };
        let rows: Vec<(String, InvoiceEvent)> = rows
            .into_iter()
            .map(|row| {
                let event = InvoiceEvent {
                    id: row.id,
                    event_type: row.event_type,
                    invoice: row.subject,
                    created: from_micros(row.created_us),
                };
                (row.cursor.to_string(), event)
            })
            .collect();
        let (rows, token) = page.finish(rows, |(cursor, _)| cursor.as_str());
        Ok((rows.into_iter().map(|(_, e)| e).collect(), token))
    }
}
