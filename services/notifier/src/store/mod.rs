//! Persistence of endpoints, received events, feed cursors and deliveries:
//! the only sqlx user. One SQL text serves SQLite and PostgreSQL.

mod attempts;
mod deliveries;
mod endpoints;
mod inbox;

use billing_db::{Db, Migrations};

pub use attempts::{Attempt, Outcome};
pub use billing_db::StoreError;
pub use deliveries::{Claimed, Delivery, DeliveryFilter, Target};
pub use endpoints::{EndpointChanges, Secrets};
pub use inbox::Received;

impl From<sqlx::Error> for crate::error::NotifierError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(StoreError::from(error))
    }
}

/// The notifier's migrations (the same for both backends), embedded.
pub static MIGRATIONS: Migrations = Migrations::Shared(&MIGRATOR);
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// The notifier's database.
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

    /// Forgets what is older than `cutoff_us`: idempotency keys, finished
    /// deliveries and received events nothing pending needs; in batches of
    /// [`PURGE_BATCH`] rows, each statement bounded whatever the backlog.
    pub async fn purge(&self, cutoff_us: i64) -> Result<u64, crate::error::NotifierError> {
        let mut purged = billing_db::idempotency::purge_before(self.db.pool(), cutoff_us).await?;
        for sql in [
            "DELETE FROM webhook_deliveries WHERE (account, id) IN (SELECT account, id FROM webhook_deliveries \
             WHERE created_us < $1 AND status <> 'pending' ORDER BY created_us LIMIT $2)",
            "DELETE FROM inbox WHERE (account, id) IN (SELECT i.account, i.id FROM inbox i \
             WHERE i.received_us < $1 AND i.published_us IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.account = i.account AND d.event = i.id) \
             ORDER BY i.received_us LIMIT $2)",
        ] {
            loop {
                let deleted = sqlx::query(sql)
                    .bind(cutoff_us)
                    .bind(PURGE_BATCH)
                    .execute(self.db.pool())
                    .await?
                    .rows_affected();
                purged += deleted;
                if deleted < PURGE_BATCH.unsigned_abs() {
                    break;
                }
            }
        }
        Ok(purged)
    }
}

/// Rows one purge statement deletes at most.
pub const PURGE_BATCH: i64 = 1000;
