//! Events received from the feeds, the feeds' cursors, and the JetStream
//! sink's progress.

use billing_db::events::Cursor;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::Store;
use super::endpoints::{COLUMNS, endpoint};
use crate::error::NotifierError;

/// An event as received from a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// `evt_…`
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// When the service committed it.
    pub created: DateTime<Utc>,
    /// The webhook body: the event as proto3 JSON.
    pub body: String,
}

/// An event the JetStream sink has not published yet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unpublished {
    /// Its account.
    pub account: String,
    /// `evt_…`
    pub id: String,
    /// Its type.
    pub event_type: String,
    /// The body.
    pub body: String,
}

/// Rows of one multi-row INSERT at most (bounded parameters on both backends).
const ROWS_PER_INSERT: usize = 500;

/// Inserts the events and a delivery per event and endpoint that receives
/// it, a few statements per batch; returns the deliveries created.
async fn insert_batch(
    tx: &mut billing_db::Tx,
    account: &str,
    source: &str,
    events: &[Received],
    (sink, now_us): (bool, i64),
    endpoints: &[crate::domain::endpoint::Endpoint],
) -> Result<usize, NotifierError> {
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let sql = format!(
            "INSERT INTO inbox (account, id, source, event_type, body, created_us, received_us, published_us) \
             VALUES {} ON CONFLICT (account, id) DO NOTHING",
            billing_db::sql::values_rows(chunk.len(), 8, 1)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for event in chunk {
            query = query
                .bind(account)
                .bind(&event.id)
                .bind(source)
                .bind(&event.event_type)
                .bind(&event.body)
                .bind(to_micros(event.created))
                .bind(now_us)
                .bind((!sink).then_some(now_us));
        }
        query.execute(&mut **tx).await?;
    }
    // Endpoints receive the events created from their own creation on.
    let pairs: Vec<(&str, &Received)> = events
        .iter()
        .flat_map(|event| {
            endpoints
                .iter()
                .filter(|e| e.receives(&event.event_type) && e.created <= event.created)
                .map(move |e| (e.id.as_str(), event))
        })
        .collect();
    let mut created = 0;
    for chunk in pairs.chunks(ROWS_PER_INSERT) {
        created += super::deliveries::insert_many(tx, account, chunk, now_us).await?;
    }
    Ok(created)
}

impl Store {
    /// Where the account's feed of `source` was read to (empty: from the start).
    pub async fn cursor(&self, account: &str, source: &str) -> Result<String, NotifierError> {
        let cursor: Option<String> = sqlx::query_scalar(
            "SELECT cursor FROM feed_cursors WHERE account = $1 AND source = $2",
        )
        .bind(account)
        .bind(source)
        .fetch_optional(self.db.pool())
        .await?;
        Ok(cursor.unwrap_or_default())
    }

    /// Stores a batch read from the account's feed of `source`, a delivery
    /// per event and enabled endpoint that receives it (endpoints receive
    /// events created from their own creation on), and the feed's new
    /// cursor, in one transaction. Reading a batch again changes nothing
    /// (the event id and the endpoint and event pair are unique). With
    /// `sink` false, events count as published at once. Returns the number
    /// of deliveries created.
    pub async fn receive(
        &self,
        (account, source): (&str, &str),
        events: &[Received],
        cursor: &str,
        sink: bool,
        now: DateTime<Utc>,
    ) -> Result<usize, NotifierError> {
        let now_us = to_micros(now);
        let mut tx = self.db.begin_write().await?;
        let sql = format!(
            "SELECT {COLUMNS} FROM webhook_endpoints WHERE account = $1 AND disabled_reason IS NULL"
        );
        let endpoints = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .fetch_all(&mut *tx)
            .await?
            .iter()
            .map(endpoint)
            .collect::<Result<Vec<_>, _>>()?;
        let created =
            insert_batch(&mut tx, account, source, events, (sink, now_us), &endpoints).await?;
        // The cursor only moves forward: a second replica that read the same
        // batch later (or an older one) leaves it where it is.
        let sql = format!(
            "SELECT cursor FROM feed_cursors WHERE account = $1 AND source = $2{}",
            self.db.for_update()
        );
        let current: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
            .bind(account)
            .bind(source)
            .fetch_optional(&mut *tx)
            .await?;
        let newer = match current.as_deref().and_then(Cursor::parse) {
            Some(current) => Cursor::parse(cursor).is_some_and(|new| new > current),
            None => true,
        };
        if newer {
            sqlx::query(
                "INSERT INTO feed_cursors (account, source, cursor, updated_us) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (account, source) DO UPDATE SET cursor = excluded.cursor, updated_us = excluded.updated_us",
            )
            .bind(account)
            .bind(source)
            .bind(cursor)
            .bind(now_us)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(created)
    }

    /// Up to `limit` events not yet published, oldest received first.
    pub async fn unpublished(&self, limit: i64) -> Result<Vec<Unpublished>, NotifierError> {
        let rows = sqlx::query(
            "SELECT account, id, event_type, body FROM inbox WHERE published_us IS NULL \
             ORDER BY received_us LIMIT $1",
        )
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter()
            .map(|row| {
                Ok(Unpublished {
                    account: row.try_get(0)?,
                    id: row.try_get(1)?,
                    event_type: row.try_get(2)?,
                    body: row.try_get(3)?,
                })
            })
            .collect()
    }

    /// Records that the sink published an event.
    pub async fn mark_published(
        &self,
        account: &str,
        id: &str,
        now: DateTime<Utc>,
    ) -> Result<(), NotifierError> {
        sqlx::query("UPDATE inbox SET published_us = $1 WHERE account = $2 AND id = $3")
            .bind(to_micros(now))
            .bind(account)
            .bind(id)
            .execute(self.db.pool())
            .await?;
        Ok(())
    }
}
