//! The transactional outbox every service writes its events to, and the
//! feed read back from it (DESIGN.md §9).
//!
//! Each service's migrations create the same `events` table:
//!
//! ```sql
//! CREATE TABLE events (
//!     account TEXT NOT NULL, position BIGINT NOT NULL, seq BIGINT NOT NULL,
//!     id TEXT NOT NULL, event_type TEXT NOT NULL, subject TEXT NOT NULL,
//!     data TEXT NOT NULL, created_us BIGINT NOT NULL,
//!     PRIMARY KEY (account, position, seq));
//! CREATE INDEX events_by_type ON events (account, event_type, position, seq);
//! ```
//!
//! Pages and resumes compare `(position, seq)` as a row value, which both
//! backends serve from the index (an `OR` of the two columns is not).
//!
//! **The feed never loses an event on resume.** Events are ordered by
//! `(position, seq)`: `seq` counts the events of one transaction, and
//! `position` is the transaction's:
//! - On PostgreSQL it is the transaction id (`pg_current_xact_id()`),
//!   assigned before commit, so transactions become visible out of
//!   `position` order. A reader therefore serves only positions below the
//!   oldest transaction still running (`pg_snapshot_xmin` of its snapshot):
//!   every transaction below that horizon has ended, so no event can appear
//!   later below a cursor already handed out.
//! - On SQLite writers are serialized (one writer connection, `BEGIN
//!   IMMEDIATE`): `position` is one more than the account's largest so
//!   far, taken inside the write transaction, so positions commit in order.
//!
//! A cursor is `{position}_{seq}` of the last event seen; resuming returns
//! the events after it in the same order every time.

use std::fmt;

use sqlx::Row;

use crate::batch::{Batch, Value};
use crate::{Backend, Db, StoreError, Tx};

/// An event to write with a change.
#[derive(Debug, Clone)]
pub struct NewEvent<'a> {
    /// `credit_balance.created`, …
    pub event_type: &'a str,
    /// The id of the object it is about.
    pub subject: &'a str,
    /// The object after the change, in the service's stored (serde JSON)
    /// form; the service's gRPC layer turns it into its proto message.
    pub data: String,
}

/// The events of one write transaction: pushed as the change is made,
/// written with one statement before the transaction commits.
#[derive(Debug, Default)]
#[must_use = "an outbox writes nothing until `write` is called in the transaction"]
pub struct Outbox {
    events: Vec<(String, String, String, String)>,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an event with its id (`evt_…`, made by the caller).
    pub fn push(&mut self, id: String, event: NewEvent<'_>) {
        self.events.push((
            id,
            event.event_type.to_owned(),
            event.subject.to_owned(),
            event.data,
        ));
    }

    /// Writes the events into `tx` (one INSERT; nothing when empty). Call
    /// it once per transaction, last before it commits: events are numbered
    /// within their transaction, so a second outbox in the same transaction
    /// would collide with the first.
    ///
    /// The position is computed by the statement itself, so writing costs
    /// no extra round trip: the transaction id on PostgreSQL, the account's
    /// largest position plus one on SQLite (whose single writer commits
    /// positions in order).
    pub async fn write(
        self,
        tx: &mut Tx,
        backend: Backend,
        account: &str,
        now_us: i64,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new();
        self.add_to(&mut batch, backend, account, now_us);
        batch.run(tx, backend).await?;
        Ok(())
    }

    /// Adds the INSERT of the events to `batch` instead of writing them now
    /// (nothing when there are none): what [`Outbox::write`] does, sent with
    /// the transaction's other writes.
    pub fn add_to(self, batch: &mut Batch, backend: Backend, account: &str, now_us: i64) {
        if self.events.is_empty() {
            return;
        }
        let position = match backend {
            Backend::Postgres => "CAST(CAST(pg_current_xact_id() AS TEXT) AS BIGINT)",
            Backend::Sqlite => {
                "(SELECT COALESCE(MAX(position), 0) + 1 FROM events WHERE account = $1)"
            }
        };
        let rows: Vec<String> = (0..self.events.len())
            .map(|i| {
                let n = 3 + i * 4;
                format!(
                    "($1, {position}, {i}, ${}, ${}, ${}, ${}, $2)",
                    n,
                    n + 1,
                    n + 2,
                    n + 3
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO events (account, position, seq, id, event_type, subject, data, created_us) \
             VALUES {}",
            rows.join(", ")
        );
        let mut values = Vec::with_capacity(2 + self.events.len() * 4);
        values.push(Value::from(account));
        values.push(Value::Int(now_us));
        for (id, event_type, subject, data) in self.events {
            values.extend([
                Value::Text(id),
                Value::Text(event_type),
                Value::Text(subject),
                Value::Text(data),
            ]);
        }
        batch.push(sql, values);
    }
}

/// Where an event sits in the feed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Cursor {
    /// The writing transaction's position.
    pub position: i64,
    /// The event's number within it.
    pub seq: i64,
}

impl Cursor {
    /// Parses `{position}_{seq}`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let (position, seq) = text.split_once('_')?;
        Some(Self {
            position: position.parse().ok().filter(|p: &i64| *p >= 0)?,
            seq: seq.parse().ok().filter(|s: &i64| *s >= 0)?,
        })
    }
}

impl fmt::Display for Cursor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}_{}", self.position, self.seq)
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its place in the feed.
    pub cursor: Cursor,
    /// `evt_…`
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// The object's id.
    pub subject: String,
    /// The object, in the service's stored form.
    pub data: String,
    /// Commit time, microseconds since the epoch.
    pub created_us: i64,
}

const COLUMNS: &str = "position, seq, id, event_type, subject, data, created_us";

fn stored(row: &sqlx::any::AnyRow) -> Result<StoredEvent, StoreError> {
    Ok(StoredEvent {
        cursor: Cursor {
            position: row.try_get(0)?,
            seq: row.try_get(1)?,
        },
        id: row.try_get(2)?,
        event_type: row.try_get(3)?,
        subject: row.try_get(4)?,
        data: row.try_get(5)?,
        created_us: row.try_get(6)?,
    })
}

/// The account's events on one side of a cursor, in one direction.
#[derive(Debug, Clone, Copy)]
enum Side {
    /// After the cursor, oldest first, below the horizon.
    After,
    /// Before the cursor, newest first.
    Before,
}

/// One page of the feed: `$1` account, `$2`/`$3` the cursor, `$4` the
/// limit, then the subject, if any, then the types.
/// Created times `[from µs, until µs)`; everything is `ALL_TIME`.
pub type CreatedRange = (i64, i64);

/// Every creation time.
pub const ALL_TIME: CreatedRange = (i64::MIN, i64::MAX);

async fn page(
    db: &Db,
    account: &str,
    side: Side,
    (position, seq): (i64, i64),
    (subject, types, created): (Option<&str>, &[String], CreatedRange),
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let (comparison, order) = match side {
        Side::After => (">", "position, seq"),
        Side::Before => ("<", "position DESC, seq DESC"),
    };
    // On PostgreSQL, only positions below the oldest running transaction:
    // everything below it has ended (the module's doc).
    let horizon = match (side, db.backend()) {
        (Side::After, Backend::Postgres) => {
            " AND position < CAST(CAST(pg_snapshot_xmin(pg_current_snapshot()) AS TEXT) AS BIGINT)"
        }
        _ => "",
    };
    let subject_condition = if subject.is_some() {
        " AND subject = $7"
    } else {
        ""
    };
    let first_type = if subject.is_some() { 8 } else { 7 };
    let types_condition = if types.is_empty() {
        String::new()
    } else {
        format!(
            " AND event_type IN ({})",
            crate::sql::list(types.len(), first_type)
        )
    };
    let sql = format!(
        "SELECT {COLUMNS} FROM events WHERE account = $1 \
         AND (position, seq) {comparison} ($2, $3) AND created_us >= $5 AND created_us < $6\
         {horizon}{subject_condition}{types_condition} ORDER BY {order} LIMIT $4"
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(account)
        .bind(position)
        .bind(seq)
        .bind(limit)
        .bind(created.0)
        .bind(created.1);
    if let Some(subject) = subject {
        query = query.bind(subject);
    }
    for event_type in types {
        query = query.bind(event_type);
    }
    let rows = query.fetch_all(db.pool()).await?;
    rows.iter().map(stored).collect()
}

/// Up to `limit` of the account's events after `after` (from the start when
/// `None`), oldest first, only those whose transactions have all ended.
pub async fn after(
    db: &Db,
    account: &str,
    after: Option<Cursor>,
    types: &[String],
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let cursor = after.map_or((-1, -1), |c| (c.position, c.seq));
    page(
        db,
        account,
        Side::After,
        cursor,
        (None, types, ALL_TIME),
        limit,
    )
    .await
}

/// Up to `limit` of the account's events before `before` (from the newest
/// when `None`), newest first, of `types` (all when empty) created in
/// `created`.
pub async fn newest(
    db: &Db,
    account: &str,
    before: Option<Cursor>,
    (types, created): (&[String], CreatedRange),
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let cursor = before.map_or((i64::MAX, i64::MAX), |c| (c.position, c.seq));
    page(
        db,
        account,
        Side::Before,
        cursor,
        (None, types, created),
        limit,
    )
    .await
}

/// Like [`newest`], only the events about `subject` (the service needs an
/// index on `(account, subject, position, seq)` to serve it).
pub async fn newest_about(
    db: &Db,
    account: &str,
    subject: &str,
    before: Option<Cursor>,
    types: &[String],
    limit: i64,
) -> Result<Vec<StoredEvent>, StoreError> {
    let cursor = before.map_or((i64::MAX, i64::MAX), |c| (c.position, c.seq));
    page(
        db,
        account,
        Side::Before,
        cursor,
        (Some(subject), types, ALL_TIME),
        limit,
    )
    .await
}

#[cfg(test)]
mod tests {
    use super::Cursor;

    #[test]
    fn cursors_round_trip_and_refuse_anything_else() {
        let cursor = Cursor {
            position: 7_400_123,
            seq: 2,
        };
        assert_eq!(Cursor::parse(&cursor.to_string()), Some(cursor));
        for bad in ["", "1", "1_", "_1", "a_1", "1_-1", "-1_0", "1_2_3"] {
            assert_eq!(Cursor::parse(bad), None, "{bad:?}");
        }
    }
}
