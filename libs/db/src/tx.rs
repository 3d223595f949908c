//! Write transactions, and SQLite's one writer connection.
//!
//! SQLite admits one writer at a time. Every write transaction goes through
//! one dedicated connection behind a FIFO lock ([`SqliteWriter`]), so writers
//! queue in arrival order instead of spinning in SQLite's busy handler
//! (which sleeps up to 100 ms between retries). A one-connection sqlx pool
//! did the same job before, but a pool pings the connection on every release
//! and every acquire and returns it from a spawned task: on the writer, whose
//! turnaround is the throughput of every write path, that was a third of
//! each ApplyCredits' time (docs/BENCHMARKS.md).

use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::time::Duration;

use sqlx::AnyConnection;
use sqlx::any::AnyConnectOptions;
use sqlx::{Connection, Executor};
use tokio::sync::{Mutex, OwnedMutexGuard};

/// A transaction on either backend: a pooled sqlx transaction, or SQLite's
/// writer connection inside `BEGIN IMMEDIATE`.
///
/// It dereferences to the connection, so `&mut *tx` is an executor. Dropped
/// without [`Tx::commit`], it rolls back: a pooled transaction at once (sqlx),
/// the writer before the next transaction begins on it.
#[derive(Debug)]
pub struct Tx {
    inner: Inner,
}

#[derive(Debug)]
enum Inner {
    Pooled(sqlx::Transaction<'static, sqlx::Any>),
    Writer(WriterTx),
}

impl Tx {
    pub(crate) fn pooled(tx: sqlx::Transaction<'static, sqlx::Any>) -> Self {
        Self {
            inner: Inner::Pooled(tx),
        }
    }

    /// Commits the transaction.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self.inner {
            Inner::Pooled(tx) => tx.commit().await,
            Inner::Writer(mut tx) => tx.finish("COMMIT").await,
        }
    }

    /// Rolls the transaction back.
    pub async fn rollback(self) -> Result<(), sqlx::Error> {
        match self.inner {
            Inner::Pooled(tx) => tx.rollback().await,
            Inner::Writer(mut tx) => tx.finish("ROLLBACK").await,
        }
    }
}

impl Deref for Tx {
    type Target = AnyConnection;

    fn deref(&self) -> &AnyConnection {
        match &self.inner {
            Inner::Pooled(tx) => tx,
            Inner::Writer(tx) => &tx.guard.conn,
        }
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut AnyConnection {
        match &mut self.inner {
            Inner::Pooled(tx) => tx,
            Inner::Writer(tx) => &mut tx.guard.conn,
        }
    }
}

/// SQLite's writer connection and whether a transaction was left open on it.
struct Writer {
    conn: AnyConnection,
    /// A transaction was dropped without commit or rollback (an error
    /// returned early, or the request was cancelled): roll back first.
    open: bool,
    /// [`SqliteWriter::close`] was called.
    closed: bool,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("open", &self.open)
            .field("closed", &self.closed)
            .finish()
    }
}

/// The writer connection held for one transaction.
#[derive(Debug)]
struct WriterTx {
    guard: OwnedMutexGuard<Writer>,
    /// The lock itself, to roll back a transaction dropped open.
    writer: Arc<Mutex<Writer>>,
}

impl WriterTx {
    async fn finish(&mut self, statement: &'static str) -> Result<(), sqlx::Error> {
        self.guard.conn.execute(statement).await?;
        self.guard.open = false;
        Ok(())
    }
}

impl Drop for WriterTx {
    fn drop(&mut self) {
        // `finish` clears the flag only once its statement succeeded. A
        // transaction dropped open (an early error return, a cancelled
        // request, a failed COMMIT) still holds SQLite's write lock: roll it
        // back as soon as the lock is free, so that nothing outside this
        // writer (a pool connection's write) waits on it. Whoever takes the
        // writer first rolls back; the other finds nothing open.
        if !self.guard.open {
            return;
        }
        let writer = self.writer.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                let mut guard = writer.lock_owned().await;
                if guard.open && guard.conn.execute("ROLLBACK").await.is_ok() {
                    guard.open = false;
                }
            });
        }
    }
}

/// SQLite's one writer: a dedicated connection behind a FIFO lock.
#[derive(Debug, Clone)]
pub(crate) struct SqliteWriter {
    writer: Arc<Mutex<Writer>>,
    options: AnyConnectOptions,
    acquire_timeout: Duration,
}

impl SqliteWriter {
    /// Opens the writer connection.
    pub(crate) async fn connect(
        options: AnyConnectOptions,
        acquire_timeout: Duration,
    ) -> Result<Self, sqlx::Error> {
        let conn = open(&options).await?;
        Ok(Self {
            writer: Arc::new(Mutex::new(Writer {
                conn,
                open: false,
                closed: false,
            })),
            options,
            acquire_timeout,
        })
    }

    /// Waits for the writer (at most the acquire timeout: then
    /// `PoolTimedOut`, as a pool would say) and begins `BEGIN IMMEDIATE`.
    pub(crate) async fn begin(&self) -> Result<Tx, sqlx::Error> {
        let mut guard =
            tokio::time::timeout(self.acquire_timeout, self.writer.clone().lock_owned())
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)?;
        if guard.closed {
            return Err(sqlx::Error::PoolClosed);
        }
        if guard.open {
            // The last holder left a transaction open. A connection that
            // cannot even roll back is replaced.
            if guard.conn.execute("ROLLBACK").await.is_err() {
                guard.conn = open(&self.options).await?;
            }
            guard.open = false;
        }
        // Marked open before BEGIN is sent: a request cancelled while BEGIN
        // runs leaves SQLite inside the transaction, and the flag (with the
        // drop below) is what rolls it back. If BEGIN did not run after all,
        // that ROLLBACK fails and the connection is replaced.
        guard.open = true;
        let mut tx = WriterTx {
            guard,
            writer: self.writer.clone(),
        };
        if let Err(error) = tx.guard.conn.execute("BEGIN IMMEDIATE").await {
            // Refused (busy): no transaction is open.
            tx.guard.open = false;
            return Err(error);
        }
        Ok(Tx {
            inner: Inner::Writer(tx),
        })
    }

    /// Refuses new write transactions (`PoolClosed`) once the current one
    /// is done; the connection closes when the last handle on it drops.
    pub(crate) async fn close(&self) {
        self.writer.lock().await.closed = true;
    }
}

/// A new SQLite connection with the writer's pragmas.
async fn open(options: &AnyConnectOptions) -> Result<AnyConnection, sqlx::Error> {
    let mut conn = AnyConnection::connect_with(options).await?;
    conn.execute(crate::SQLITE_PRAGMAS).await?;
    Ok(conn)
}
