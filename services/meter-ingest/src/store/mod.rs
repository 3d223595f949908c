//! Persistence of meters, events and usage buckets: the only sqlx user.
//!
//! Events and buckets are keyed by integer series ids (`series`). Reads and
//! meter writes use one SQL text for both backends through the `Any` pool. Ingestion differs by backend: PostgreSQL writes a batch with
//! one `UNNEST` statement per table on the native pool, adding to buckets
//! with `NUMERIC` arithmetic in SQL (safe under concurrent batches);
//! SQLite, whose single writer serialises batches, merges buckets in Rust.

mod attribution;
mod cancel;
mod ingest;
mod meters;
mod series;
mod usage;

use std::sync::Arc;

use billing_db::{Backend, Db, Migrations};

pub use attribution::{DAY_US, USAGE_UNATTRIBUTED, UnattributedUsage};
pub use billing_db::StoreError;

use crate::error::MeterError;

/// meter-ingest's migrations, embedded: one set per backend, because usage
/// values are `NUMERIC` on PostgreSQL and decimal `TEXT` on SQLite.
pub static MIGRATIONS: Migrations = Migrations::PerBackend {
    sqlite: &SQLITE_MIGRATOR,
    postgres: &POSTGRES_MIGRATOR,
};
static SQLITE_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations/postgres");

impl From<sqlx::Error> for MeterError {
    fn from(error: sqlx::Error) -> Self {
        Self::Storage(StoreError::from(error))
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
