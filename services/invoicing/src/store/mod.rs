//! Persistence of customers, prices, subscriptions, invoices and their events:
//! the only sqlx user. One SQL text serves SQLite and PostgreSQL.
//!
//! Saga transitions are conditional updates (`… WHERE status = 'draft'`):
//! whoever moves an invoice first wins, and every other caller sees zero rows
//! changed and reads the winner's result. No lock is held across a call to
//! another service.

mod allocations;
mod claims;
mod customers;
mod events;
mod invoices;
mod prices;
mod purchases;
mod saga;
mod subscriptions;
mod thresholds;
mod top_ups;

use billing_db::idempotency::{self, IdempotencyKey, Prior};
use billing_db::{Db, Migrations};

pub use billing_db::StoreError;

pub use allocations::AllocationPeriod;
pub use claims::{ClaimTerms, RunOutcome};
pub use events::EventFilter;
pub use invoices::{InvoiceFilter, WorkItem};
pub use subscriptions::Closing;
pub use top_ups::LEDGER_FEED;

use crate::error::InvoicingError;

/// Invoicing's migrations (the same for both backends), embedded.
pub static MIGRATIONS: Migrations = Migrations::Shared(&MIGRATOR);
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

impl From<sqlx::Error> for InvoicingError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(StoreError::from(error))
    }
}

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

    /// The stored response of an earlier request with this key (the saga
    /// RPCs look first, because their work spans several transactions and a
    /// call to the ledger; they [`Store::remember`] the response at the end).
    pub async fn replay<T: serde::de::DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Option<T>, InvoicingError> {
        let Some(key) = key else { return Ok(None) };
        let mut tx = self.db.begin_read().await?;
        let prior = idempotency::lookup(&mut tx, account, key).await?;
        tx.rollback().await?;
        match prior {
            Prior::None => Ok(None),
            Prior::Replay(stored) => Ok(Some(serde_json::from_str(&stored)?)),
            Prior::Reused => Err(StoreError::KeyReused.into()),
        }
    }

    /// Records the response under the key (the first recorded one wins and
    /// is returned).
    pub async fn remember<T: serde::Serialize + serde::de::DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
        now_us: i64,
        value: T,
    ) -> Result<T, InvoicingError> {
        if key.is_none() {
            return Ok(value);
        }
        let tx = self.db.begin_write().await?;
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, value).await?)
    }

    /// Forgets `request_id` keys created before `cutoff_us`; returns how many.
    pub async fn purge_idempotency_keys(&self, cutoff_us: i64) -> Result<u64, InvoicingError> {
        Ok(idempotency::purge_before(self.db.pool(), cutoff_us).await?)
    }
}

/// Parses a stored decimal.
fn decimal(text: &str) -> Result<billing_money::Decimal, InvoicingError> {
    billing_money::parse_decimal(text).map_err(|e| InvoicingError::Corrupt(e.to_string()))
}
