//! Persistence of the ledger: the only module that touches sqlx.
//!
//! Every write runs in one transaction from [`Db::begin_write`]; the grants it
//! changes are locked first (PostgreSQL `SELECT … FOR UPDATE` in id order,
//! SQLite's `BEGIN IMMEDIATE` writer lock), so concurrent writers for one
//! customer serialise and can never overdraw.

mod alerts;
mod apply;
mod audit;
mod grants;
mod holds;
mod pricing_units;
mod report;
mod rollover;
mod rows;
mod transactions;

use billing_db::idempotency::{self, Begun, IdempotencyKey};
use billing_db::{Db, Migrations, Tx};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::LedgerError;

pub use billing_db::StoreError;

impl From<sqlx::Error> for LedgerError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(StoreError::from(error))
    }
}

pub use alerts::AlertStatus;
pub use audit::AuditReport;
pub use pricing_units::{PricingUnit, UnitChanges};
pub use report::{EXPORT_PAGE, ExportCursor, ExportRange};
pub use rollover::{ROLLOVER_GRANTS_MAX, RolledOver};

/// The ledger's migrations, embedded in the binary.
pub static MIGRATIONS: Migrations = Migrations::Shared(&MIGRATOR);
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The ledger's database.
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

    /// Forgets `request_id` keys created before `cutoff_us`; returns how many.
    pub async fn purge_idempotency_keys(&self, cutoff_us: i64) -> Result<u64, LedgerError> {
        Ok(idempotency::purge_before(self.db.pool(), cutoff_us).await?)
    }

    /// Opens a write transaction and checks the idempotency key in it.
    async fn begin<T: DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Begun<T>, LedgerError> {
        Ok(idempotency::begin(&self.db, account, key).await?)
    }

    /// Records the key with `value` and commits (see [`idempotency::finish`]).
    async fn finish<T: Serialize + DeserializeOwned>(
        &self,
        tx: Tx,
        account: &str,
        key: Option<&IdempotencyKey>,
        now_us: i64,
        value: T,
    ) -> Result<T, LedgerError> {
        Ok(idempotency::finish(&self.db, tx, account, key, now_us, value).await?)
    }
}
