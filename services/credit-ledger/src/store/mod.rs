//! Persistence of the ledger: the only module that touches sqlx.
//!
//! Every write runs in one transaction from [`Db::begin_write`]; the grants it
//! changes are locked first (PostgreSQL `SELECT … FOR UPDATE` in id order,
//! SQLite's `BEGIN IMMEDIATE` writer lock), so concurrent writers for one
//! customer serialise and can never overdraw.

mod apply;
mod audit;
mod grants;
mod pricing_units;
mod rows;
mod transactions;

use billing_db::idempotency::{self, IdempotencyKey, Prior};
use billing_db::{Backend, Db, Tx};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::domain::LedgerError;

pub use apply::ApplyWrite;
pub use audit::AuditReport;
pub use grants::GrantUpdate;
pub use pricing_units::PricingUnit;

/// The ledger's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
}

/// The start of an idempotent write: either a transaction to do the work in,
/// or the stored response of an earlier identical request.
pub(crate) enum Begun<T> {
    Fresh(Tx),
    Replay(T),
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

    /// `FOR UPDATE` on PostgreSQL; nothing on SQLite, whose writer lock
    /// (taken by `BEGIN IMMEDIATE`) already excludes other writers.
    fn for_update(&self) -> &'static str {
        match self.db.backend() {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Opens a write transaction and checks the idempotency key in it.
    async fn begin<T: DeserializeOwned>(
        &self,
        account: &str,
        key: Option<&IdempotencyKey>,
    ) -> Result<Begun<T>, LedgerError> {
        let mut tx = self.db.begin_write().await?;
        if let Some(key) = key {
            match idempotency::lookup(&mut tx, account, key).await? {
                Prior::None => {}
                Prior::Replay(response) => {
                    return Ok(Begun::Replay(serde_json::from_str(&response)?));
                }
                Prior::Reused => return Err(LedgerError::IdempotencyKeyReused),
            }
        }
        Ok(Begun::Fresh(tx))
    }

    /// Records the key with `value` and commits. When a concurrent request
    /// with the same key committed first, returns that request's response.
    async fn finish<T: Serialize + DeserializeOwned>(
        &self,
        mut tx: Tx,
        account: &str,
        key: Option<&IdempotencyKey>,
        now_us: i64,
        value: T,
    ) -> Result<T, LedgerError> {
        if let Some(key) = key {
            let response = serde_json::to_string(&value)?;
            if let Err(error) = idempotency::record(&mut tx, account, key, &response, now_us).await
            {
                if !billing_db::is_unique_violation(&error) {
                    return Err(error.into());
                }
                tx.rollback().await?;
                return match self.begin::<T>(account, Some(key)).await? {
                    Begun::Replay(stored) => Ok(stored),
                    Begun::Fresh(_) => Err(LedgerError::Corrupt("idempotency key vanished".into())),
                };
            }
        }
        tx.commit().await?;
        Ok(value)
    }
}
