//! Persistence of endpoints, received events, feed cursors and deliveries:
//! the only sqlx user. One SQL text serves SQLite and PostgreSQL.

mod deliveries;
mod endpoints;
mod inbox;

use billing_db::{Db, Migrations};

pub use billing_db::StoreError;
pub use deliveries::{Claimed, Delivery, DeliveryFilter, Outcome, Target};
pub use endpoints::{EndpointChanges, Secrets};
pub use inbox::{Received, Unpublished};

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
    /// deliveries and received events nothing pending needs.
    pub async fn purge(&self, cutoff_us: i64) -> Result<u64, crate::error::NotifierError> {
        let mut purged = billing_db::idempotency::purge_before(self.db.pool(), cutoff_us).await?;
        purged += sqlx::query(
            "DELETE FROM webhook_deliveries WHERE created_us < $1 AND status <> 'pending'",
        )
        .bind(cutoff_us)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        purged += sqlx::query(
            "DELETE FROM inbox WHERE received_us < $1 AND published_us IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM webhook_deliveries d WHERE d.account = inbox.account AND d.event = inbox.id)",
        )
        .bind(cutoff_us)
        .execute(self.db.pool())
        .await?
        .rows_affected();
        Ok(purged)
    }
}
