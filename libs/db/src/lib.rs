//! Storage plumbing shared by every service.
//!
//! Layout:
//! - [`Db`]: a connection pool over SQLite (embedded default) or PostgreSQL,
//!   chosen by the URL, with the pragmas and pool sizes each needs.
//! - [`Db::begin_write`]: the one way to start a writing transaction
//!   (`BEGIN IMMEDIATE` on SQLite so writers queue instead of failing on lock
//!   upgrade; plain READ COMMITTED `BEGIN` on PostgreSQL).
//! - [`idempotency`]: the `request_id` table helpers (AIP-155).
//! - [`lease`]: leases on background work items, so replicas split it.
//! - [`StoreError`]: what a service's store returns when the database fails,
//!   classified (unavailable, CHECK violation) so callers never see sqlx.
//! - [`sql`]: small helpers to build portable multi-row statements.
//! - [`testing`]: a fresh, uniquely named database per test, dropped afterwards.
//!
//! All SQL is written once for both backends: `$N` placeholders, integer
//! timestamps in microseconds, `TEXT` and `BIGINT` columns only.

pub mod batch;
pub mod events;
pub mod idempotency;
pub mod lease;
pub mod sql;
mod store_error;
pub mod testing;
mod tx;

pub use store_error::StoreError;
pub use tx::Tx;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

pub use sqlx;

/// A service's embedded migrations: one set for both backends, or one per
/// backend (when the schemas must differ, as meter-ingest's `NUMERIC`).
#[derive(Debug)]
pub enum Migrations {
    /// The same migrations on SQLite and PostgreSQL.
    Shared(&'static Migrator),
    /// Different migrations per backend.
    PerBackend {
        /// For SQLite.
        sqlite: &'static Migrator,
        /// For PostgreSQL.
        postgres: &'static Migrator,
    },
}

impl Migrations {
    /// The migrator for `backend`.
    pub fn for_backend(&self, backend: Backend) -> &'static Migrator {
        match (self, backend) {
            (Self::Shared(migrator), _) => migrator,
            (Self::PerBackend { sqlite, .. }, Backend::Sqlite) => sqlite,
            (Self::PerBackend { postgres, .. }, Backend::Postgres) => postgres,
        }
    }
}

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite file (WAL, synchronous=FULL).
    Sqlite,
    /// PostgreSQL or a compatible engine.
    Postgres,
}

/// Why the database could not be reached or prepared.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `sqlite:` nor `postgres:`.
    #[error("unsupported database URL scheme in {0:?}: expected sqlite:// or postgres://")]
    UnsupportedUrl(String),
    /// The SQLite file's directory could not be created.
    #[error("cannot create the directory for the SQLite database: {0}")]
    CreateDir(#[from] std::io::Error),
    /// Connecting or a query failed.
    #[error(transparent)]
    Sqlx(#[from] sqlx::Error),
    /// A migration failed.
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by another service (or another program).
    #[error(
        "this database holds another schema: its migration {version} is {found:?}, where this \
         service's migration {version} is {expected:?}; give each service its own database"
    )]
    ForeignSchema {
        /// The first version that differs.
        version: i64,
        /// Its description in the database.
        found: String,
        /// Its description in this service's migrations.
        expected: String,
    },
}

/// Pool options; explicit so that nothing depends on sqlx defaults.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Connections for PostgreSQL: the service's whole budget, every pool
    /// it opens included (docs/operations.md).
    pub postgres_max_connections: u32,
    /// Connections for SQLite: readers run in parallel under WAL, writers queue.
    pub sqlite_max_connections: u32,
    /// How long to wait for a pooled connection.
    pub acquire_timeout: Duration,
    /// Also open a native PostgreSQL pool, for statements the `Any` driver
    /// cannot express (array binds for `UNNEST` batch writes).
    pub native_postgres: bool,
}

impl Default for DbOptions {
    fn default() -> Self {
        Self {
            // Four services of one replica each stay under PostgreSQL's
            // default max_connections of 100.
            postgres_max_connections: 20,
            sqlite_max_connections: 8,
            acquire_timeout: Duration::from_secs(10),
            native_postgres: false,
        }
    }
}

/// A pool on one of the two backends.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    /// SQLite only: the connection every write transaction goes through
    /// (see [`tx`]).
    sqlite_writer: Option<tx::SqliteWriter>,
    backend: Backend,
    native_postgres: Option<sqlx::PgPool>,
}

impl Db {
    /// Connects to `url` (`sqlite://path` or `postgres://…`).
    ///
    /// For SQLite the file and its directory are created if missing.
    pub async fn connect(url: &str, options: &DbOptions) -> Result<Self, DbError> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let (url, max_connections) = match backend {
            Backend::Sqlite => (prepare_sqlite_url(url)?, options.sqlite_max_connections),
            Backend::Postgres => (url.to_owned(), options.postgres_max_connections),
        };
        let connect_options = AnyConnectOptions::from_str(&url)?;
        // The native pool's connections come out of the same budget.
        let native = match backend {
            Backend::Postgres if options.native_postgres => (max_connections / 2).max(1),
            _ => 0,
        };
        let pool = pool_options(
            backend,
            max_connections.saturating_sub(native).max(1),
            options,
        )
        .connect_with(connect_options.clone())
        .await?;
        let sqlite_writer = match backend {
            Backend::Sqlite => {
                Some(tx::SqliteWriter::connect(connect_options, options.acquire_timeout).await?)
            }
            Backend::Postgres => None,
        };
        let native_postgres = if backend == Backend::Postgres && options.native_postgres {
            Some(
                sqlx::postgres::PgPoolOptions::new()
                    .max_connections(native)
                    .acquire_timeout(options.acquire_timeout)
                    .test_before_acquire(false)
                    .connect(&url)
                    .await?,
            )
        } else {
            None
        };
        Ok(Self {
            pool,
            sqlite_writer,
            backend,
            native_postgres,
        })
    }

    /// Runs the service's embedded migrations for this database's backend,
    /// after checking that the migrations already applied are this
    /// service's (sqlx alone reports another schema as a checksum mismatch).
    pub async fn migrate(&self, migrations: &Migrations) -> Result<(), DbError> {
        let migrator = migrations.for_backend(self.backend);
        self.check_schema_owner(migrator).await?;
        migrator.run(&self.pool).await?;
        Ok(())
    }

    async fn check_schema_owner(&self, migrator: &Migrator) -> Result<(), DbError> {
        // No table yet: a fresh database.
        let Ok(applied) = sqlx::query_as::<_, (i64, String)>(
            "SELECT version, description FROM _sqlx_migrations ORDER BY version",
        )
        .fetch_all(&self.pool)
        .await
        else {
            return Ok(());
        };
        for (version, found) in applied {
            // A version this binary does not know is a newer binary's
            // migration: sqlx reports that one itself.
            let Some(expected) = migrator.iter().find(|m| m.version == version) else {
                continue;
            };
            if expected.description != found {
                return Err(DbError::ForeignSchema {
                    version,
                    found,
                    expected: expected.description.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Runs the migrations up to and including `version` (upgrade tests).
    pub async fn migrate_to(&self, migrations: &Migrations, version: i64) -> Result<(), DbError> {
        migrations
            .for_backend(self.backend)
            .run_to(version, &self.pool)
            .await?;
        Ok(())
    }

    /// The pool, for reads.
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// The native PostgreSQL pool, when asked for in [`DbOptions`].
    pub fn native_postgres(&self) -> Option<&sqlx::PgPool> {
        self.native_postgres.as_ref()
    }

    /// Which backend this is.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// `" FOR UPDATE"` on PostgreSQL, nothing on SQLite: appended to a SELECT
    /// inside [`Db::begin_write`]'s transaction, it locks the rows read
    /// (SQLite's writer lock already excludes every other writer).
    pub fn for_update(&self) -> &'static str {
        match self.backend {
            Backend::Postgres => " FOR UPDATE",
            Backend::Sqlite => "",
        }
    }

    /// Starts a transaction that will write.
    pub async fn begin_write(&self) -> Result<Tx, sqlx::Error> {
        match self.backend {
            Backend::Sqlite => match &self.sqlite_writer {
                Some(writer) => writer.begin().await,
                None => Err(sqlx::Error::PoolClosed),
            },
            Backend::Postgres => self.pool.begin().await.map(Tx::pooled),
        }
    }

    /// Starts a transaction that only reads (any pooled connection; on
    /// SQLite it does not wait for the writer).
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
        self.pool.begin().await.map(Tx::pooled)
    }

    /// Starts a read-only transaction whose statements all see one
    /// snapshot (REPEATABLE READ on PostgreSQL; a SQLite read transaction
    /// keeps its snapshot from its first read): for reports that sum the
    /// same rows several ways and must agree.
    pub async fn begin_snapshot(&self) -> Result<Tx, sqlx::Error> {
        let mut tx = self.begin_read().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                .execute(&mut *tx)
                .await?;
        }
        Ok(tx)
    }

    /// Closes the pool, waiting for connections to be returned.
    pub async fn close(&self) {
        self.pool.close().await;
        if let Some(writer) = &self.sqlite_writer {
            writer.close().await;
        }
        if let Some(pool) = &self.native_postgres {
            pool.close().await;
        }
    }
}

/// Every SQLite connection's settings. synchronous=FULL: an acknowledged
/// commit survives power loss.
const SQLITE_PRAGMAS: &str = "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; \
     PRAGMA busy_timeout = 10000; PRAGMA foreign_keys = ON;";

/// The pool of reads and PostgreSQL writes. Connections are not pinged
/// before each use (sqlx's default): the ping was a second round trip for
/// every statement, a third of a real-time check's database time. A
/// connection that died while idle fails its next statement instead, which
/// every service answers UNAVAILABLE (retryable), and sqlx drops it.
fn pool_options(backend: Backend, max_connections: u32, options: &DbOptions) -> AnyPoolOptions {
    AnyPoolOptions::new()
        .max_connections(max_connections)
        .acquire_timeout(options.acquire_timeout)
        .test_before_acquire(false)
        .after_connect(move |conn, _meta| {
            Box::pin(async move {
                if backend == Backend::Sqlite {
                    conn.execute(SQLITE_PRAGMAS).await?;
                }
                Ok(())
            })
        })
}

/// Tells the backend from the URL's scheme.
pub fn backend_of(url: &str) -> Result<Backend, DbError> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
        Ok(Backend::Postgres)
    } else {
        Err(DbError::UnsupportedUrl(url.to_owned()))
    }
}

/// Creates the SQLite file's directory and asks sqlx to create the file.
fn prepare_sqlite_url(url: &str) -> Result<String, DbError> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    let parent = Path::new(path)
        .parent()
        .filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent.filter(|_| path != ":memory:") {
        std::fs::create_dir_all(parent)?;
    }
    if query.contains("mode=") {
        return Ok(url.to_owned());
    }
    let separator = if query.is_empty() { "?" } else { "&" };
    Ok(format!("{url}{separator}mode=rwc"))
}

/// Whether the error is a unique-constraint violation (a lost race on insert).
pub fn is_unique_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_unique_violation())
}

/// Whether the error means the database could not be reached (retryable:
/// gRPC UNAVAILABLE), as opposed to a refused or failed statement.
pub fn is_unavailable(error: &sqlx::Error) -> bool {
    matches!(
        error,
        sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
    )
}

/// Whether the error is a CHECK-constraint violation (a last-line invariant).
pub fn is_check_violation(error: &sqlx::Error) -> bool {
    error
        .as_database_error()
        .is_some_and(|e| e.is_check_violation())
}
