//! Persistence of customers, prices, subscriptions, invoices and the outbox:
//! the only sqlx user. One SQL text serves SQLite and PostgreSQL.
//!
//! Saga transitions are conditional updates (`… WHERE status = 'draft'`):
//! whoever moves an invoice first wins, and every other caller sees zero rows
//! changed and reads the winner's result. No lock is held across a call to
//! another service.

mod customers;
mod invoices;
mod prices;
mod subscriptions;

use billing_db::Db;

pub use invoices::{InvoiceFilter, WorkItem};
pub use subscriptions::Closing;

use crate::domain::InvoicingError;

/// The invoicing database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

impl Store {
    /// A store over a connected, migrated database.
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }
}

/// Parses a stored decimal.
fn decimal(text: &str) -> Result<billing_money::Decimal, InvoicingError> {
    billing_money::parse_decimal(text).map_err(|e| InvoicingError::Corrupt(e.to_string()))
}

/// Appends an outbox event in the caller's transaction.
async fn outbox(
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
