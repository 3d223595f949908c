//! Persistence of meters, events and usage buckets: the only sqlx user.
//!
//! Events and buckets are keyed by integer series ids (`series`). Reads and
//! meter writes use one SQL text for both backends through the `Any` pool. Ingestion differs by backend: PostgreSQL writes a batch with
//! one `UNNEST` statement per table on the native pool, adding to buckets
//! with `NUMERIC` arithmetic in SQL (safe under concurrent batches);
//! SQLite, whose single writer serialises batches, merges buckets in Rust.

mod cancel;
mod ingest;
mod meters;
mod series;
mod usage;

use std::sync::Arc;

use billing_db::idempotency::IdempotencyError;
use billing_db::{Backend, Db, DbError};

pub use billing_db::StoreError;
pub use usage::UsageData;

use crate::error::MeterError;

/// SQLite migrations, embedded.
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
/// PostgreSQL migrations, embedded.
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

/// Runs the migrations for the database's backend.
pub async fn migrate(db: &Db) -> Result<(), DbError> {
    match db.backend() {
        Backend::Sqlite => db.migrate(&SQLITE_MIGRATOR).await,
        Backend::Postgres => db.migrate(&POSTGRES_MIGRATOR).await,
    }
}

/// Runs the migrations of one backend up to `version` (upgrade tests).
pub async fn migrate_to(db: &Db, version: i64) -> Result<(), DbError> {
    let migrator = match db.backend() {
        Backend::Sqlite => &SQLITE_MIGRATOR,
        Backend::Postgres => &POSTGRES_MIGRATOR,
    };
    db.migrate_to(migrator, version).await
}

impl From<sqlx::Error> for MeterError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(StoreError::from(error))
    }
}

impl From<IdempotencyError> for MeterError {
    fn from(error: IdempotencyError) -> Self {
        match error {
            IdempotencyError::Reused => Self::IdempotencyKeyReused,
            IdempotencyError::Store(error) => Self::Storage(error),
            IdempotencyError::Corrupt(detail) => Self::Corrupt(detail),
        }
    }
}

/// The meter service's database.
#[derive(Debug, Clone)]
pub struct Store {
    db: Db,
    series: Arc<series::SeriesCache>,
}

impl Store {
    /// A store over a connected, migrated database (PostgreSQL needs the
    /// native pool: `DbOptions::native_postgres`).
    pub fn new(db: Db) -> Self {
        Self {
            db,
            series: Arc::default(),
        }
    }

    /// The database.
    pub fn db(&self) -> &Db {
        &self.db
    }

    /// A decimal parameter: bound as text, stored as NUMERIC on PostgreSQL.
    fn decimal_param(&self, n: usize) -> String {
        match self.db.backend() {
            Backend::Postgres => format!("CAST(${n} AS NUMERIC)"),
            Backend::Sqlite => format!("${n}"),
        }
    }
}

/// Parses a stored decimal.
fn decimal(text: &str) -> Result<billing_money::Decimal, crate::error::MeterError> {
    billing_money::parse_decimal(text).map_err(|e| crate::error::MeterError::Corrupt(e.to_string()))
}
