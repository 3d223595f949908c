//! The outbox: every invoice change writes its event in the change's own
//! transaction; `ListInvoiceEvents` reads it back newest first.

use billing_db::sql::Conditions;
use billing_server::page::PageRequest;
use billing_server::time::from_micros;
use sqlx::Row;

use super::Store;
use crate::domain::invoice::InvoiceEvent;
use crate::error::InvoicingError;

/// Which events to list.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this invoice's.
    pub invoice: Option<String>,
    /// Only this type.
    pub event_type: Option<String>,
}

/// Appends an outbox event in the caller's transaction.
pub(super) async fn outbox(
    tx: &mut billing_db::Tx,
    account: &str,
    event_type: &str,
    subject: &str,
    payload: &impl serde::Serialize,
    now_us: i64,
) -> Result<(), InvoicingError> {
    sqlx::query(
        "INSERT INTO outbox (id, account, event_type, subject, payload, created_us) VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(billing_server::ids::new_id("evt"))
    .bind(account)
    .bind(event_type)
    .bind(subject)
    .bind(serde_json::to_string(payload)?)
    .bind(now_us)
    .execute(&mut **tx)
    .await?;
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
        let rows = Conditions::new("account", account)
            .eq("subject", filter.invoice.as_deref())
            .eq("event_type", filter.event_type.as_deref())
            .newest_first(
                "SELECT id, event_type, subject, created_us FROM outbox",
                "id",
                page.before_id.as_deref(),
                page.fetch_limit(),
            )
            .fetch_all(self.db.pool())
            .await?;
        let events = rows
            .iter()
            .map(|row| {
                Ok(InvoiceEvent {
                    id: row.try_get(0)?,
                    event_type: row.try_get(1)?,
                    invoice: row.try_get(2)?,
                    created: from_micros(row.try_get(3)?),
                })
            })
            .collect::<Result<Vec<_>, InvoicingError>>()?;
        Ok(page.finish(events, |e| &e.id))
    }
}
