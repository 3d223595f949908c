//! Writing a batch of valid events and their bucket deltas in one transaction.
//!
//! Dedupe is the primary key on (account, identifier): `ON CONFLICT DO
//! NOTHING RETURNING identifier` tells which events are new. On PostgreSQL a
//! concurrent batch holding the same identifier makes ours wait for its
//! commit, then see a conflict, so every identifier counts exactly once.
//! Rows are written in key order so concurrent batches never deadlock.

use std::collections::{BTreeMap, HashMap, HashSet};

use billing_db::Backend;
use billing_server::time::to_micros;
use chrono::{DateTime, Utc};
use sqlx::Row;

use super::{Store, decimal};
use crate::domain::event::ValidEvent;
use crate::domain::usage::{self, Aggregate, BucketKey};
use crate::error::MeterError;

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
        let series = self.series_of(account, events).await?;
        match self.db.backend() {
            Backend::Postgres => self.ingest_postgres(account, events, &series, now).await,
            Backend::Sqlite => self.ingest_sqlite(account, events, &series, now).await,
        }
    }

    /// The series id of each event, in the events' order.
    async fn series_of(
        &self,
        account: &str,
        events: &[ValidEvent],
    ) -> Result<Vec<i64>, MeterError> {
        let mut pairs: Vec<(&str, &str)> = events
            .iter()
            .map(|e| (e.meter_id.as_str(), e.customer.as_str()))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        let ids = self.series_ids(account, &pairs).await?;
        let by_pair: HashMap<(&str, &str), i64> = pairs.into_iter().zip(ids).collect();
        events
            .iter()
            .map(|e| {
                by_pair
                    .get(&(e.meter_id.as_str(), e.customer.as_str()))
                    .copied()
                    .ok_or_else(|| MeterError::Corrupt("event without a series id".into()))
            })
            .collect()
    }

    async fn ingest_postgres(
        &self,
        account: &str,
        events: &[ValidEvent],
        series: &[i64],
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
            "INSERT INTO meter_events (series_id, timestamp_us, created_us, account, identifier, value, payload) \
             SELECT s, t, $7, $1, i, v::numeric, p \
             FROM UNNEST($2::text[], $3::int8[], $4::text[], $5::int8[], $6::text[]) AS u(i, s, v, t, p) \
             ON CONFLICT (account, identifier) DO NOTHING RETURNING identifier",
        )
        .bind(account)
        .bind(events.iter().map(|e| e.identifier.as_str()).collect::<Vec<_>>())
        .bind(series)
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
        let deltas = deltas_of(events, series, &accepted)?;
        if !deltas.is_empty() {
            let (mut series_ids, mut buckets, mut counts) = (vec![], vec![], vec![]);
            let (mut sums, mut maxes, mut last_ts, mut last_ids, mut last_values) =
                (vec![], vec![], vec![], vec![], vec![]);
            for ((series_id, bucket), aggregate) in &deltas {
                series_ids.push(*series_id);
                buckets.push(*bucket);
                counts.push(aggregate.count);
                sums.push(aggregate.sum.to_string());
                maxes.push(aggregate.max.to_string());
                last_ts.push(aggregate.last.0);
                last_ids.push(aggregate.last.1.as_str());
                last_values.push(aggregate.last.2.to_string());
            }
            sqlx::query(
                "INSERT INTO usage_buckets AS b (series_id, bucket_us, event_count, value_sum, value_max, \
                 last_ts_us, last_identifier, last_value) \
                 SELECT r, k, n, s::numeric, x::numeric, lt, li, lv::numeric \
                 FROM UNNEST($1::int8[], $2::int8[], $3::int8[], $4::text[], $5::text[], $6::int8[], \
                 $7::text[], $8::text[]) AS u(r, k, n, s, x, lt, li, lv) \
                 ON CONFLICT (series_id, bucket_us) DO UPDATE SET \
                 event_count = b.event_count + EXCLUDED.event_count, \
                 value_sum = b.value_sum + EXCLUDED.value_sum, \
                 value_max = GREATEST(b.value_max, EXCLUDED.value_max), \
                 last_value = CASE WHEN (EXCLUDED.last_ts_us, EXCLUDED.last_identifier) > (b.last_ts_us, b.last_identifier) \
                   THEN EXCLUDED.last_value ELSE b.last_value END, \
                 last_identifier = CASE WHEN (EXCLUDED.last_ts_us, EXCLUDED.last_identifier) > (b.last_ts_us, b.last_identifier) \
                   THEN EXCLUDED.last_identifier ELSE b.last_identifier END, \
                 last_ts_us = GREATEST(b.last_ts_us, EXCLUDED.last_ts_us)",
            )
            .bind(series_ids)
            .bind(buckets)
            .bind(counts)
            .bind(sums)
            .bind(maxes)
            .bind(last_ts)
            .bind(last_ids)
            .bind(last_values)
            .execute(&mut *tx)
            .await?;
            let late = late_series(deltas.keys(), now);
            if !late.is_empty() {
                sqlx::query(
                    "UPDATE meter_series SET late_version = late_version + 1 WHERE id = ANY($1::int8[])",
                )
                .bind(late)
                .execute(&mut *tx)
                .await?;
            }
        }
        tx.commit().await?;
        Ok(accepted)
    }

    async fn ingest_sqlite(
        &self,
        account: &str,
        events: &[ValidEvent],
        series: &[i64],
        now: DateTime<Utc>,
    ) -> Result<HashSet<String>, MeterError> {
        let mut tx = self.db.begin_write().await?;
        let mut accepted = HashSet::with_capacity(events.len());
        for (chunk, chunk_series) in events
            .chunks(SQLITE_ROWS_MAX)
            .zip(series.chunks(SQLITE_ROWS_MAX))
        {
            let sql = format!(
                "INSERT INTO meter_events (series_id, timestamp_us, created_us, account, identifier, value, payload) \
                 VALUES {} ON CONFLICT (account, identifier) DO NOTHING RETURNING identifier",
                billing_db::sql::values_rows(chunk.len(), 7, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for (event, series_id) in chunk.iter().zip(chunk_series) {
                query = query
                    .bind(*series_id)
                    .bind(to_micros(event.timestamp))
                    .bind(to_micros(now))
                    .bind(account)
                    .bind(&event.identifier)
                    .bind(event.value.to_string())
                    .bind(serde_json::to_string(&event.payload)?);
            }
            for row in query.fetch_all(&mut *tx).await? {
                accepted.insert(row.try_get::<String, _>(0)?);
            }
        }
        let deltas: Vec<(BucketKey, Aggregate)> =
            deltas_of(events, series, &accepted)?.into_iter().collect();
        for chunk in deltas.chunks(SQLITE_ROWS_MAX) {
            let mut merged = self.read_buckets(&mut tx, chunk).await?;
            for (key, delta) in chunk {
                merged
                    .entry(*key)
                    .or_insert_with(Aggregate::empty)
                    .merge(delta)
                    .map_err(|e| MeterError::Corrupt(e.to_string()))?;
            }
            let sql = format!(
                "INSERT INTO usage_buckets (series_id, bucket_us, event_count, value_sum, value_max, \
                 last_ts_us, last_identifier, last_value) VALUES {} \
                 ON CONFLICT (series_id, bucket_us) DO UPDATE SET event_count = excluded.event_count, \
                 value_sum = excluded.value_sum, value_max = excluded.value_max, last_ts_us = excluded.last_ts_us, \
                 last_identifier = excluded.last_identifier, last_value = excluded.last_value",
                billing_db::sql::values_rows(merged.len(), 8, 1)
            );
            let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
            for ((series_id, bucket), aggregate) in merged {
                query = query
                    .bind(series_id)
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
        let late = late_series(deltas.iter().map(|(key, _)| key), now);
        if !late.is_empty() {
            bump_late(&mut tx, &late).await?;
        }
        tx.commit().await?;
        Ok(accepted)
    }

    /// The current aggregates of these buckets (SQLite path, under its writer lock).
    async fn read_buckets(
        &self,
        tx: &mut billing_db::Tx,
        keys: &[(BucketKey, Aggregate)],
    ) -> Result<BTreeMap<BucketKey, Aggregate>, MeterError> {
        let sql = format!(
            // A join from the keys, so SQLite probes the primary key once per
            // key instead of scanning the table for a row-value IN list.
            "WITH k(r, b) AS (VALUES {}) \
             SELECT u.series_id, u.bucket_us, u.event_count, CAST(u.value_sum AS TEXT), \
             CAST(u.value_max AS TEXT), u.last_ts_us, u.last_identifier, CAST(u.last_value AS TEXT) \
             FROM k JOIN usage_buckets u ON u.series_id = k.r AND u.bucket_us = k.b",
            billing_db::sql::values_rows(keys.len(), 2, 1)
        );
        let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
        for ((series_id, bucket), _) in keys {
            query = query.bind(*series_id).bind(*bucket);
        }
        let mut out = BTreeMap::new();
        for row in query.fetch_all(&mut **tx).await? {
            let key = (row.try_get(0)?, row.try_get(1)?);
            out.insert(key, bucket_row(&row, 2)?);
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

/// The series of `keys` with a bucket that ended more than an hour
/// before `now`: readers may have cached it (see `ops::usage_cache`), so
/// the change must bump the series' `late_version`. Sorted, distinct.
fn late_series<'a>(keys: impl IntoIterator<Item = &'a BucketKey>, now: DateTime<Utc>) -> Vec<i64> {
    let cutoff = usage::bucket_of(to_micros(now)) - usage::BUCKET_US;
    let mut late: Vec<i64> = keys
        .into_iter()
        .filter(|(_, bucket)| *bucket < cutoff)
        .map(|(series, _)| *series)
        .collect();
    late.sort_unstable();
    late.dedup();
    late
}

/// Bumps the `late_version` of `series` (sorted) in `tx`.
pub(super) async fn bump_late(tx: &mut billing_db::Tx, series: &[i64]) -> Result<(), MeterError> {
    let sql = format!(
        "UPDATE meter_series SET late_version = late_version + 1 WHERE id IN ({})",
        billing_db::sql::list(series.len(), 1)
    );
    let mut query = sqlx::query(sqlx::AssertSqlSafe(sql));
    for id in series {
        query = query.bind(*id);
    }
    query.execute(&mut **tx).await?;
    Ok(())
}

fn deltas_of(
    events: &[ValidEvent],
    series: &[i64],
    accepted: &HashSet<String>,
) -> Result<BTreeMap<BucketKey, Aggregate>, MeterError> {
    usage::deltas(
        series
            .iter()
            .copied()
            .zip(events)
            .filter(|(_, e)| accepted.contains(&e.identifier)),
    )
    .map_err(|e| MeterError::Corrupt(e.to_string()))
}
