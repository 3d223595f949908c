//! Persistence of customers, prices, subscriptions, invoices and the outbox:
//! the only sqlx user. One SQL text serves SQLite and PostgreSQL.
//!
//! Saga transitions are conditional updates (`… WHERE status = 'draft'`):
//! whoever moves an invoice first wins, and every other caller sees zero rows
//! changed and reads the winner's result. No lock is held across a call to
//! another service.

mod customers;
mod events;
mod invoices;
mod prices;
mod subscriptions;

use billing_db::Db;

pub use events::EventFilter;
use events::outbox;
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
