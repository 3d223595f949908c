//! Writing a batch of valid events and their bucket deltas in one transaction.
//!
//! Dedupe is the primary key on (account, identifier): `ON CONFLICT DO
//! NOTHING RETURNING identifier` tells which events are new. On PostgreSQL a
//! concurrent batch holding the same identifier makes ours wait for its
//! commit, then see a conflict, so every identifier counts exactly once.
//! Rows are written in key order so concurrent batches never deadlock.

use std::collections::{BTreeMap, HashSet};

use billing_db::Backend;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, decimal};
use crate::domain::MeterError;
use crate::domain::event::ValidEvent;
use crate::domain::usage::{self, Aggregate, BucketKey};

/// Rows per multi-row statement on SQLite: a whole batch, so each table gets
/// one statement per batch (10 columns × 1,000 rows stays far below
/// SQLite's 32,766 parameters).
const SQLITE_ROWS_MAX: usize = crate::domain::event::BATCH_MAX;

impl Store {
    /// Stores `events` (distinct identifiers, any order) and returns the
    /// identifiers that were new; the others were already accepted.
    pub async fn ingest(
        &self,
        account: &str,
        events: &mut [ValidEvent],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, MeterError> {
        if events.is_empty() {
            return Ok(HashSet::new());
        }
        events.sort_by(|a, b| a.identifier.cmp(&b.identifier));
        match self.db.backend() {
            Backend::Postgres => self.ingest_postgres(account, events, now).await,
            Backend::Sqlite => self.ingest_sqlite(account, events, now).await,
        }
    }

    async fn ingest_postgres(
        &self,
        account: &str,
        events: &[ValidEvent],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, MeterError> {
        let pool = self.db.native_postgres().ok_or_else(|| {
            MeterError::Corrupt("PostgreSQL ingestion needs the native pool".into())
        })?;
        let mut tx = pool.begin().await?;
        let payloads = events
            .iter()
            .map(|e| serde_json::to_string(&e.payload))
            .collect::<Result<Vec<_>, _>>()?;
        let rows = sqlx::query(
            "INSERT INTO meter_events (account, identifier, meter_id, customer, value, timestamp_us, payload, created_us) \
             SELECT $1, i, m, c, v::numeric, t, p, $8 \
             FROM UNNEST($2::text[], $3::text[], $4::text[], $5::text[], $6::int8[], $7::text[]) AS u(i, m, c, v, t, p) \
             ON CONFLICT (account, identifier) DO NOTHING RETURNING identifier",
        )
        .bind(account)
        .bind(events.iter().map(|e| e.identifier.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.meter_id.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.customer.as_str()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| e.value.to_string()).collect::<Vec<_>>())
        .bind(events.iter().map(|e| to_micros(e.timestamp)).collect::<Vec<_>>())
        .bind(payloads)
        .bind(to_micros(now))
        .fetch_all(&mut *tx)
        .await?;
        let accepted: HashSet<String> = rows
            .iter()
            .map(|r| r.try_get(0))
            .collect::<Result<_, _>>()?;
        let deltas = deltas_of(events, &accepted)?;
        if !deltas.is_empty() {
            let (mut meters, mut customers, mut buckets, mut counts) =
                (vec![], vec![], vec![], vec![]);
            let (mut sums, mut maxes, mut last_ts, mut last_ids, mut last_values) =
                (vec![], vec![], vec![], vec![], vec![]);
            for ((meter, customer, bucket), aggregate) in &deltas {
                meters.push(meter.as_str());
                customers.push(customer.as_str());
                buckets.push(*bucket);
                counts.push(aggregate.count);
                sums.push(aggregate.sum.to_string());
                maxes.push(aggregate.max.to_string());
                last_ts.push(aggregate.last.0);
                last_ids.push(aggregate.last.1.as_str());
                last_values.push(aggregate.last.2.to_string());
            }
            sqlx::query(
                "INSERT INTO usage_buckets AS b (account, meter_id, customer, bucket_us, event_count, value_sum, \
                 value_max, last_ts_us, last_identifier, last_value) \
                 SELECT $1, m, c, k, n, s::numeric, x::numeric, lt, li, lv::numeric \
                 FROM UNNEST($2::text[], $3::text[], $4::int8[], $5::int8[], $6::text[], $7::text[], $8::int8[], \
                 $9::text[], $10::text[]) AS u(m, c, k, n, s, x, lt, li, lv) \
                 ON CONFLICT (account, meter_id, customer, bucket_us) DO UPDATE SET \
                 event_count = b.event_count + EXCLUDED.event_count, \
                 value_sum = b.value_sum + EXCLUDED.value_sum, \
                 value_max = GREATEST(b.value_max, EXCLUDED.value_max), \
                 last_value = CASE WHEN (EXCLUDED.last_ts_us, EXCLUDED.last_identifier) > (b.last_ts_us, b.last_identifier) \
                   THEN EXCLUDED.last_value ELSE b.last_value END, \
                 last_identifier = CASE WHEN (EXCLUDED.last_ts_us, EXCLUDED.last_identifier) > (b.last_ts_us, b.last_identifier) \
                   THEN EXCLUDED.last_identifier ELSE b.last_identifier END, \
                 last_ts_us = GREATEST(b.last_ts_us, EXCLUDED.last_ts_us)",
            )
            .bind(account)
            .bind(meters)
            .bind(customers)
            .bind(buckets)
            .bind(counts)
            .bind(sums)
            .bind(maxes)
            .bind(last_ts)
            .bind(last_ids)
            .bind(last_values)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn ingest_sqlite(
        &self,
        account: &str,
        events: &[ValidEvent],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, MeterError> {
        let mut tx = self.db.begin_write().await?;
        let mut accepted = HashSet::with_capacity(events.len());
        for chunk in events.chunks(SQLITE_ROWS_MAX) {
            let sql = format!(
                "INSERT INTO meter_events (account, identifier, meter_id, customer, value, timestamp_us, payload, \
                 created_us) VALUES {} ON CONFLICT (account, identifier) DO NOTHING RETURNING identifier",
                billing_db::sql::values_rows(chunk.len(), 8, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for event in chunk {
                query = query
                    .bind(account)
                    .bind(&event.identifier)
                    .bind(&event.meter_id)
                    .bind(&event.customer)
                    .bind(event.value.to_string())
                    .bind(to_micros(event.timestamp))
                    .bind(serde_json::to_string(&event.payload)?)
                    .bind(to_micros(now));
            }
            for row in query.fetch_all(&mut *tx).await? {
                accepted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let deltas: Vec<(BucketKey, Aggregate)> =
            deltas_of(events, &accepted)?.into_iter().collect();
        for chunk in deltas.chunks(SQLITE_ROWS_MAX) {
            let mut merged = self.read_buckets(&mut tx, account, chunk).await?;
            for (key, delta) in chunk {
                merged
                    .entry(key.clone())
                    .or_insert_with(Aggregate::empty)
                    .merge(delta)
                    .map_err(|e| MeterError::Corrupt(e.to_string()))?;
            }
            let sql = format!(
                "INSERT INTO usage_buckets (account, meter_id, customer, bucket_us, event_count, value_sum, value_max, \
                 last_ts_us, last_identifier, last_value) VALUES {} \
                 ON CONFLICT (account, meter_id, customer, bucket_us) DO UPDATE SET event_count = excluded.event_count, \
                 value_sum = excluded.value_sum, value_max = excluded.value_max, last_ts_us = excluded.last_ts_us, \
                 last_identifier = excluded.last_identifier, last_value = excluded.last_value",
                billing_db::sql::values_rows(merged.len(), 10, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((meter, customer, bucket), aggregate) in merged {
                query = query
                    .bind(account)
                    .bind(meter)
                    .bind(customer)
                    .bind(bucket)
                    .bind(aggregate.count)
                    .bind(aggregate.sum.to_string())
                    .bind(aggregate.max.to_string())
                    .bind(aggregate.last.0)
                    .bind(aggregate.last.1)
                    .bind(aggregate.last.2.to_string());
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(accepted)
    }

    /// The current aggregates of these buckets (SQLite path, under its writer lock).
    async fn read_buckets(
        &self,
        tx: &mut billing_db::Tx,
        account: &str,
        keys: &[(BucketKey, Aggregate)],
    ) -> Result<BTreeMap<BucketKey, Aggregate>, MeterError> {
        let sql = format!(
            // A join from the keys, so SQLite probes the primary key once per
            // key instead of scanning the table for a row-value IN list.
            "WITH k(m, c, b) AS (VALUES {}) \
             SELECT u.meter_id, u.customer, u.bucket_us, u.event_count, CAST(u.value_sum AS TEXT), \
             CAST(u.value_max AS TEXT), u.last_ts_us, u.last_identifier, CAST(u.last_value AS TEXT) \
             FROM k JOIN usage_buckets u ON u.account = $1 AND u.meter_id = k.m AND u.customer = k.c \
             AND u.bucket_us = k.b",
            billing_db::sql::values_rows(keys.len(), 3, 2)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql)).bind(account);
        for ((meter, customer, bucket), _) in keys {
            query = query.bind(meter).bind(customer).bind(*bucket);
        }
        let mut out = BTreeMap::new();
        for row in query.fetch_all(&mut **tx).await? {
            let key = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
            out.insert(key, bucket_row(&row, 3)?);
        }
        Ok(out)
    }
}

/// Reads an aggregate from `event_count, sum, max, last_ts, last_id, last_value` at `first`.
pub(super) fn bucket_row(row: &sqlx::any::AnyRow, first: usize) -> Result<Aggregate, MeterError> {
    Ok(Aggregate {
        count: row.try_get(first)?,
        sum: decimal(&row.try_get::<String, _>(first + 1)?)?,
        max: decimal(&row.try_get::<String, _>(first + 2)?)?,
        last: (
            row.try_get(first + 3)?,
            row.try_get(first + 4)?,
            decimal(&row.try_get::<String, _>(first + 5)?)?,
        ),
    })
}

fn deltas_of(
    events: &[ValidEvent],
    accepted: &HashSet<String>,
) -> Result<BTreeMap<BucketKey, Aggregate>, MeterError> {
    usage::deltas(events.iter().filter(|e| accepted.contains(&e.identifier)))
        .map_err(|e| MeterError::Corrupt(e.to_string()))
}
